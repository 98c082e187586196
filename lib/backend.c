/* backend.c - the backend registry and the module loader. The CPU backend is built in;
 * GPU backends are shared modules (libllm-cuda.so) opened with dlopen the first time a
 * model asks for one, and kept open for the rest of the process (prepared weights and
 * contexts point into them). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* the modules this build made, as ",cuda" (set by meson) */
#ifndef LLM_MODULES
#define LLM_MODULES ""
#endif

const struct llm_backend_ops *llm__backend_find(const char *name)
{
    const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
    if (!name || !*name || strcmp(name, "auto") == 0 || strcmp(name, cpu->name) == 0)
        return cpu;
    return NULL;
}

/* ---- modules ------------------------------------------------------------------------ */

static const llm_backend_host host = {
    .abi_version = LLM_BACKEND_ABI_VERSION,
    .size = sizeof(llm_backend_host),
    .fail = llm__fail,
    .log = llm__log,
};

/* Module names the loader knows; each slot remembers the outcome of the first attempt. */
static const char *const module_names[] = {"cuda"};
#define N_MODULES (sizeof module_names / sizeof module_names[0])
static struct {
    int tried;
    const struct llm_backend_ops *ops;
    char why[512]; /* why it did not load */
} modules[N_MODULES];
static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;

/* The directory holding libllm itself (or the program it is linked into), with a
 * trailing slash; "" when unknown. */
static void self_dir(char *buf, size_t cap)
{
    Dl_info info;
    buf[0] = '\0';
    if (!dladdr((void *)&llm__backend_find, &info) || !info.dli_fname)
        return;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash)
        return;
    size_t n = (size_t)(slash - info.dli_fname) + 1;
    if (n < cap)
        snprintf(buf, cap, "%.*s", (int)n, info.dli_fname);
}

/* Opens one candidate file; returns the handle or NULL, appending dlerror's text to why. */
static void *try_open(const char *path, char *why, size_t cap)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        /* messages longer than the buffer are cut: the first attempts matter most */
        const char *e = dlerror();
        size_t used = strlen(why);
        if (used && used + 2 < cap) {
            memcpy(why + used, "; ", 3);
            used += 2;
        }
        if (used + 1 < cap) {
            size_t n = strlen(e ? e : path);
            n = n < cap - used - 1 ? n : cap - used - 1;
            memcpy(why + used, e ? e : path, n);
            why[used + n] = '\0';
        }
    }
    return h;
}

static const struct llm_backend_ops *open_module(const char *name, char *why, size_t cap)
{
    char file[64], path[4096];
    snprintf(file, sizeof file, "libllm-%s.so", name);
    void *h = NULL;
    /* LLM_BACKEND_PATH: directories separated by ':' */
    const char *env = getenv("LLM_BACKEND_PATH");
    while (!h && env && *env) {
        const char *end = strchr(env, ':');
        size_t n = end ? (size_t)(end - env) : strlen(env);
        if (n > 0 && n + strlen(file) + 2 < sizeof path) {
            snprintf(path, sizeof path, "%.*s/%s", (int)n, env, file);
            h = try_open(path, why, cap);
        }
        env = end ? end + 1 : NULL;
    }
    if (!h) {
        char dir[4096 - 64];
        self_dir(dir, sizeof dir);
        if (dir[0]) {
            snprintf(path, sizeof path, "%s%s", dir, file);
            h = try_open(path, why, cap);
        }
    }
    if (!h)
        h = try_open(file, why, cap);
    if (!h)
        return NULL;
    llm_backend_entry_fn entry;
    void *sym = dlsym(h, LLM_BACKEND_ENTRY);
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, as POSIX allows */
    const struct llm_backend_ops *ops = entry ? entry(&host) : NULL;
    const char *bad = NULL;
    if (!entry)
        bad = "it has no entry symbol " LLM_BACKEND_ENTRY;
    else if (!ops)
        bad = "its entry refused this libllm";
    else if (ops->abi_version != LLM_BACKEND_ABI_VERSION || ops->size != sizeof *ops)
        bad = "it was built for another backend ABI";
    else if (!ops->name || strcmp(ops->name, name) != 0)
        bad = "it names another backend";
    if (bad) {
        if (ops && ops->abi_version != LLM_BACKEND_ABI_VERSION)
            snprintf(why, cap, "%s: %s (ABI %u, size %u; libllm has ABI %d, size %zu)", file,
                     bad, ops->abi_version, ops->size, LLM_BACKEND_ABI_VERSION, sizeof *ops);
        else
            snprintf(why, cap, "%s: %s", file, bad);
        dlclose(h);
        return NULL;
    }
    return ops; /* the handle stays open for the life of the process */
}

const struct llm_backend_ops *llm__backend_module(const char *name)
{
    size_t i = 0;
    while (i < N_MODULES && strcmp(module_names[i], name) != 0)
        i++;
    if (i == N_MODULES) {
        llm__fail(LLM_ERR_INVALID_ARG, "backend: unknown backend '%s' (known: cpu, cuda, auto)",
                  name);
        return NULL;
    }
    pthread_mutex_lock(&modules_lock);
    if (!modules[i].tried) {
        modules[i].ops = open_module(name, modules[i].why, sizeof modules[i].why);
        modules[i].tried = 1;
    }
    const struct llm_backend_ops *ops = modules[i].ops;
    pthread_mutex_unlock(&modules_lock);
    if (!ops)
        llm__fail(LLM_ERR_UNSUPPORTED, "backend: cannot load the %s module: %s", name,
                  modules[i].why);
    return ops;
}

llm_status llm__backend_open(const char *name, const llm_backend_config *cfg,
                            const struct llm_backend_ops **ops, llm_backend **be)
{
    *ops = NULL;
    *be = NULL;
    const int is_auto = !name || !*name || strcmp(name, "auto") == 0;
    const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
    if (cfg->device < 0)
        return llm__fail(LLM_ERR_INVALID_ARG, "backend: device index %d is negative",
                         cfg->device);
    if (!is_auto && strcmp(name, cpu->name) != 0) {
        const struct llm_backend_ops *gpu = llm__backend_module(name);
        if (!gpu)
            return strcmp(name, "cuda") == 0 ? LLM_ERR_UNSUPPORTED : LLM_ERR_INVALID_ARG;
        llm_status st = gpu->create(cfg, be);
        if (st != LLM_OK)
            return st;
        *ops = gpu;
        return LLM_OK;
    }
    if (is_auto) {
        const struct llm_backend_ops *gpu = llm__backend_module("cuda");
        if (gpu && gpu->create(cfg, be) == LLM_OK) {
            llm__info("backend: auto chose cuda (device %d)", cfg->device);
            *ops = gpu;
            llm__clear_error();
            return LLM_OK;
        }
        llm__info("backend: auto chose cpu (%s)", llm_last_error());
        llm__clear_error();
    }
    llm_status st = cpu->create(cfg, be);
    if (st == LLM_OK)
        *ops = cpu;
    return st;
}

const char *llm_build_info(void)
{
    static char info[256];
    static int done;
    if (!done) {
        const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
        snprintf(info, sizeof info, "libllm %s backends=%s%s cpu=%s", llm_version_string(),
                 cpu->name, LLM_MODULES, cpu->features());
        done = 1;
    }
    return info;
}
