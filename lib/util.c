/* util.c - errors, logging, allocation and version queries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- errors ---------------------------------------------------------------------- */

static _Thread_local char last_error[1024];

llm_status llm__fail(llm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

void llm__clear_error(void)
{
    last_error[0] = '\0';
}

const char *llm_last_error(void)
{
    return last_error;
}

const char *llm_status_str(llm_status s)
{
    switch (s) {
    case LLM_OK: return "ok";
    case LLM_ERR_INVALID_ARG: return "invalid argument";
    case LLM_ERR_NO_MEMORY: return "out of memory";
    case LLM_ERR_IO: return "i/o error";
    case LLM_ERR_INVALID_MODEL: return "invalid model file";
    case LLM_ERR_UNSUPPORTED: return "unsupported";
    case LLM_ERR_CANCELLED: return "cancelled";
    case LLM_ERR_CONTEXT_FULL: return "context full";
    case LLM_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case LLM_ERR_TEMPLATE: return "chat template error";
    case LLM_ERR_BACKEND: return "backend error";
    case LLM_ERR_INTERNAL: return "internal error";
    case LLM_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

/* ---- logging --------------------------------------------------------------------- */

static llm_log_fn log_fn;
static void *log_user;
static llm_log_level log_max = LLM_LOG_WARN;

void llm_log_set(llm_log_fn fn, llm_log_level max_level, void *user)
{
    log_fn = fn;
    log_user = user;
    log_max = fn ? max_level : LLM_LOG_WARN;
}

void llm__log(llm_log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, buf, log_user);
    } else {
        static const char *names[] = {"error", "warning", "info", "debug"};
        fprintf(stderr, "libllm %s: %s\n", names[level], buf);
    }
}

/* ---- allocation -------------------------------------------------------------------- */

/* Fault injection for tests: LLM_FAIL_ALLOC_AFTER=N makes the (N+1)-th allocation fail. */
static long alloc_countdown = -1;
static int alloc_init;

static int alloc_should_fail(void)
{
    if (!alloc_init) {
        const char *e = getenv("LLM_FAIL_ALLOC_AFTER");
        alloc_countdown = e ? atol(e) : -1;
        alloc_init = 1;
    }
    if (alloc_countdown < 0)
        return 0;
    if (alloc_countdown == 0)
        return 1;
    alloc_countdown--;
    return 0;
}

void *llm__malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *llm__calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *llm__realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}

void llm__free(void *p)
{
    free(p);
}

char *llm__strndup(const char *s, size_t n)
{
    char *r = llm__malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

/* ---- version ----------------------------------------------------------------------- */

uint32_t llm_version_number(void)
{
    return LLM_VERSION_NUMBER;
}

const char *llm_version_string(void)
{
    return "1.0.0";
}
