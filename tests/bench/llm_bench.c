/* llm_bench.c - throughput of a model on a backend, through the public API only.
 *
 *   llm_bench MODEL BACKEND [REPS]        prompt (pp512) and decode (tg128) rates
 *   llm_bench MODEL BACKEND batch N       N requests of 128 prompt + 128 generated tokens
 *                                         through the request engine (aggregate output rate)
 *   llm_bench MODEL BACKEND depth D [REPS]  tg128 after a D-token prompt (not timed), as
 *                                         llama-bench -d D measures it: long-context decoding
 *
 * pp512: one llm_decode of 512 tokens into an empty cache. tg128: 128 llm_decode calls of
 * one token each after a one-token prompt. Each is run REPS times (default 5) after one
 * warm-up; the line printed gives the median and the spread (min..max) in tokens/s. The
 * token ids are fixed pseudo-random ids: the rate does not depend on the text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "llm_bench: %s: %s\n", what, msg);
    exit(1);
}

static llm_context *context(llm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_seq)
{
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_seq_max = n_seq;
    llm_context *c = NULL;
    if (llm_context_create(m, &cp, &c) != LLM_OK)
        die("context", llm_last_error());
    return c;
}

static double run_pp(llm_model *m, const llm_token *toks, int32_t n)
{
    llm_context *c = context(m, 1024, n, 1);
    llm_batch b;
    llm_batch_init(&b);
    b.n_tokens = n;
    b.tokens = toks;
    double t0 = now();
    if (llm_decode(c, &b) != LLM_OK)
        die("decode", llm_context_last_error(c));
    double dt = now() - t0;
    llm_context_free(c);
    return n / dt;
}

static double run_tg(llm_model *m, const llm_token *toks, int32_t n)
{
    llm_context *c = context(m, 1024, 512, 1);
    llm_batch b;
    llm_batch_init(&b);
    b.n_tokens = 1;
    b.tokens = toks;
    if (llm_decode(c, &b) != LLM_OK)
        die("decode", llm_context_last_error(c));
    double t0 = now();
    for (int32_t i = 1; i <= n; i++) {
        b.tokens = toks + i;
        if (llm_decode(c, &b) != LLM_OK)
            die("decode", llm_context_last_error(c));
    }
    double dt = now() - t0;
    llm_context_free(c);
    return n / dt;
}

static int32_t g_depth; /* the depth mode's D */

static double run_tg_depth(llm_model *m, const llm_token *toks, int32_t n)
{
    llm_context *c = context(m, g_depth + n + 64, 512, 1);
    llm_batch b;
    llm_batch_init(&b);
    for (int32_t i = 0; i < g_depth; i += 512) {
        b.n_tokens = g_depth - i < 512 ? g_depth - i : 512;
        b.tokens = toks + i;
        if (llm_decode(c, &b) != LLM_OK)
            die("decode", llm_context_last_error(c));
    }
    b.n_tokens = 1;
    double t0 = now();
    for (int32_t i = 0; i < n; i++) {
        b.tokens = toks + g_depth + i;
        if (llm_decode(c, &b) != LLM_OK)
            die("decode", llm_context_last_error(c));
    }
    double dt = now() - t0;
    llm_context_free(c);
    return n / dt;
}

static double run_batch(llm_model *m, const llm_token *toks, int32_t n_req)
{
    llm_context *c = context(m, n_req * 272, 2048, n_req);
    llm_request_params rp;
    for (int32_t r = 0; r < n_req; r++) {
        llm_request_params_init(&rp);
        rp.tokens = toks + r % 64; /* distinct prompts: no prefix sharing */
        rp.n_tokens = 128;
        rp.max_tokens = 128;
        rp.ignore_eos = 1;
        llm_request_id id;
        if (llm_request_submit(c, &rp, &id) != LLM_OK)
            die("submit", llm_context_last_error(c));
    }
    llm_event ev[256];
    static char text[1 << 20];
    int64_t generated = 0;
    double t0 = now();
    while (llm_pending(c) > 0) {
        if (llm_step(c) != LLM_OK)
            die("step", llm_context_last_error(c));
        int32_t k;
        while ((k = llm_poll(c, ev, 256, text, (int32_t)sizeof text)) > 0)
            for (int32_t i = 0; i < k; i++)
                generated += ev[i].type == LLM_EVENT_TOKEN;
    }
    double dt = now() - t0;
    llm_context_free(c);
    return (double)generated / dt;
}

static void report(const char *name, double (*fn)(llm_model *, const llm_token *, int32_t),
                   llm_model *m, const llm_token *toks, int32_t n, int reps)
{
    double r[64];
    fn(m, toks, n); /* warm-up */
    for (int i = 0; i < reps; i++)
        r[i] = fn(m, toks, n);
    qsort(r, (size_t)reps, sizeof r[0], cmp);
    printf("%s %.1f tok/s (median of %d; %.1f..%.1f)\n", name, r[reps / 2], reps, r[0],
           r[reps - 1]);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: llm_bench MODEL BACKEND [REPS | batch N | depth D [REPS]]\n");
        return 2;
    }
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.backend = argv[2];
    llm_model *m = NULL;
    double t0 = now();
    if (llm_model_load(argv[1], &mp, &m) != LLM_OK)
        die(argv[1], llm_last_error());
    printf("model %s (%s, %.2f B params) on %s, loaded in %.1f s\n", argv[1],
           llm_model_architecture(m), (double)llm_model_n_params(m) * 1e-9, llm_model_backend(m),
           now() - t0);
    const int depth = argc >= 5 && strcmp(argv[3], "depth") == 0;
    if (depth) {
        g_depth = atoi(argv[4]);
        if (g_depth < 0 || g_depth > (1 << 20))
            die("depth", "D must be 0..1048576");
    }
    const int32_t n_toks = 1024 + g_depth;
    llm_token *toks = malloc((size_t)n_toks * sizeof *toks);
    if (!toks)
        die("tokens", "out of memory");
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < n_toks; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        toks[i] = (llm_token)(100 + s % (uint64_t)(llm_model_n_vocab(m) - 200));
    }
    if (argc >= 5 && strcmp(argv[3], "batch") == 0) {
        const int32_t n = atoi(argv[4]);
        if (n < 1 || n > 4096)
            die("batch", "N must be 1..4096");
        char name[64];
        snprintf(name, sizeof name, "batch%d", n);
        report(name, run_batch, m, toks, n, 3);
    } else if (depth) {
        int reps = argc >= 6 ? atoi(argv[5]) : 3;
        reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
        char name[64];
        snprintf(name, sizeof name, "tg128@d%d", (int)g_depth);
        report(name, run_tg_depth, m, toks, 128, reps);
    } else {
        int reps = argc >= 4 ? atoi(argv[3]) : 5;
        reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
        report("pp512", run_pp, m, toks, 512, reps);
        report("tg128", run_tg, m, toks, 128, reps);
    }
    free(toks);
    llm_model_free(m);
    return 0;
}
