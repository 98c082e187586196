/* internal.h - helpers shared by every module of lib/: errors, logging, checked arithmetic.
 * Private; never installed. */
#ifndef LLM_INTERNAL_H
#define LLM_INTERNAL_H

#include "llm.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define LLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LLM_PRINTF(a, b)
#endif

/* Internal symbols that cross files carry the llm__ prefix and hidden visibility. */
#define LLM_INTERNAL __attribute__((visibility("hidden")))

/* Sets this thread's last error (read by llm_last_error) and returns `st`, so that
 * `return llm__fail(LLM_ERR_IO, "cannot open '%s'", path);` reads naturally. */
LLM_INTERNAL llm_status llm__fail(llm_status st, const char *fmt, ...) LLM_PRINTF(2, 3);
LLM_INTERNAL void llm__clear_error(void);

/* Logging through the sink set by llm_log_set. */
LLM_INTERNAL void llm__log(llm_log_level level, const char *fmt, ...) LLM_PRINTF(2, 3);
#define llm__warn(...) llm__log(LLM_LOG_WARN, __VA_ARGS__)
#define llm__info(...) llm__log(LLM_LOG_INFO, __VA_ARGS__)
#define llm__debug(...) llm__log(LLM_LOG_DEBUG, __VA_ARGS__)

/* Checked arithmetic: return 0 on overflow, 1 on success. */
static inline int llm__mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int llm__add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Invariant check: traps in debug builds, returns LLM_ERR_INTERNAL in release. */
#ifdef NDEBUG
#define LLM_CHECK(cond)                                                                  \
    do {                                                                                 \
        if (!(cond))                                                                     \
            return llm__fail(LLM_ERR_INTERNAL, "internal error: %s (%s:%d)", #cond,     \
                             __FILE__, __LINE__);                                        \
    } while (0)
#else
#define LLM_CHECK(cond)                                                                  \
    do {                                                                                 \
        if (!(cond))                                                                     \
            __builtin_trap();                                                            \
    } while (0)
#endif

/* Memory: every allocation of the library goes through these so that tests can inject
 * failures: the environment variable LLM_FAIL_ALLOC_AFTER=N makes the (N+1)-th fail. */
LLM_INTERNAL void *llm__malloc(size_t n);
LLM_INTERNAL void *llm__calloc(size_t n, size_t size);
LLM_INTERNAL void *llm__realloc(void *p, size_t n);
LLM_INTERNAL void llm__free(void *p);
LLM_INTERNAL char *llm__strndup(const char *s, size_t n);

#endif
