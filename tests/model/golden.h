/* golden.h - readers for the llama.cpp golden files of the model tests.
 *
 * The files (tests/data/golden/STEM.{greedy,ppl}.txt, written by tests/model/gen_goldens.py)
 * are plain text: whitespace-separated words, and a '#' at the start of a word skips to the
 * end of its line (comments). A reader takes words in order and checks every key it
 * expects, so a file of another layout fails loudly instead of being misread. The tests run
 * with the source root as working directory (meson's workdir), where the paths resolve.
 *
 * Everything is static inline so that a test using only some of it compiles warning-free. */
#ifndef LLM_TEST_GOLDEN_H
#define LLM_TEST_GOLDEN_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

#define GOLDEN_DIR "tests/data/golden"

/* The models the goldens cover, by file stem (the file is STEM.gguf). */
static const char *const golden_models[] = {
    "SmolLM2-135M-Instruct.Q4_1",
    "gemma-3-270m-q4_k_m",
};
#define GOLDEN_N_MODELS ((int)(sizeof golden_models / sizeof golden_models[0]))

typedef struct golden_reader {
    FILE *f;
    const char *path;
    int bad; /* set on the first error; later reads return zeros */
} golden_reader;

static inline int golden_open(golden_reader *r, const char *path)
{
    r->path = path;
    r->bad = 0;
    r->f = fopen(path, "r");
    if (!r->f) {
        fprintf(stderr, "  golden: cannot open %s: %s (run from the source root)\n", path,
                strerror(errno));
        r->bad = 1;
        return -1;
    }
    return 0;
}

static inline void golden_close(golden_reader *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
}

/* Reads the next word into buf; returns 0 at end of file or on error. */
static inline int golden_word(golden_reader *r, char *buf, size_t cap)
{
    int c;
    size_t n = 0;
    if (r->bad)
        return 0;
    for (;;) {
        c = fgetc(r->f);
        if (c == EOF)
            return 0;
        if (c == '#') {
            while (c != EOF && c != '\n')
                c = fgetc(r->f);
            continue;
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
    }
    while (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
        if (n + 1 >= cap) {
            fprintf(stderr, "  golden: %s: word too long\n", r->path);
            r->bad = 1;
            return 0;
        }
        buf[n++] = (char)c;
        c = fgetc(r->f);
    }
    buf[n] = '\0';
    return 1;
}

static inline void golden_expect(golden_reader *r, const char *key)
{
    char w[256];
    if (r->bad)
        return;
    if (!golden_word(r, w, sizeof w) || strcmp(w, key) != 0) {
        if (!r->bad)
            fprintf(stderr, "  golden: %s: expected '%s', found '%s'\n", r->path, key,
                    feof(r->f) ? "end of file" : w);
        r->bad = 1;
    }
}

static inline long long golden_int(golden_reader *r)
{
    char w[64], *end;
    long long v;
    if (!golden_word(r, w, sizeof w)) {
        if (!r->bad)
            fprintf(stderr, "  golden: %s: unexpected end of file\n", r->path);
        r->bad = 1;
        return 0;
    }
    errno = 0;
    v = strtoll(w, &end, 10);
    if (*end || errno) {
        fprintf(stderr, "  golden: %s: '%s' is not an integer\n", r->path, w);
        r->bad = 1;
        return 0;
    }
    return v;
}

static inline double golden_double(golden_reader *r)
{
    char w[64], *end;
    double v;
    if (!golden_word(r, w, sizeof w)) {
        if (!r->bad)
            fprintf(stderr, "  golden: %s: unexpected end of file\n", r->path);
        r->bad = 1;
        return 0;
    }
    v = strtod(w, &end);
    if (*end) {
        fprintf(stderr, "  golden: %s: '%s' is not a number\n", r->path, w);
        r->bad = 1;
        return 0;
    }
    return v;
}

/* "key N": returns N, checked to lie in [lo, hi]. */
static inline long long golden_key_int(golden_reader *r, const char *key, long long lo,
                                       long long hi)
{
    long long v;
    golden_expect(r, key);
    v = golden_int(r);
    if (!r->bad && (v < lo || v > hi)) {
        fprintf(stderr, "  golden: %s: %s %lld out of range [%lld, %lld]\n", r->path, key, v,
                lo, hi);
        r->bad = 1;
    }
    return r->bad ? 0 : v;
}

static inline void golden_key_word(golden_reader *r, const char *key, char *buf, size_t cap)
{
    golden_expect(r, key);
    if (!golden_word(r, buf, cap) && !r->bad) {
        fprintf(stderr, "  golden: %s: no value for %s\n", r->path, key);
        r->bad = 1;
    }
}

/* Reads n token ids in [0, n_vocab) into a new array (NULL on error). */
static inline int32_t *golden_ids(golden_reader *r, int32_t n, int32_t n_vocab)
{
    int32_t *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    if (!ids) {
        r->bad = 1;
        return NULL;
    }
    for (int32_t i = 0; i < n && !r->bad; i++) {
        long long v = golden_int(r);
        if (!r->bad && (v < 0 || v >= n_vocab)) {
            fprintf(stderr, "  golden: %s: token id %lld out of range\n", r->path, v);
            r->bad = 1;
        }
        ids[i] = (int32_t)v;
    }
    return ids;
}

/* ---- greedy goldens: STEM.greedy.txt ------------------------------------------------ */

typedef struct golden_prompt {
    char name[64];
    int32_t n_prompt;
    int32_t *prompt;     /* [n_prompt] the prompt's ids, BOS included when the model adds it */
    int32_t n_gen;
    int32_t *gen;        /* [n_gen] llama.cpp's greedy continuation */
    float *top2;         /* [n_gen][2] best and second-best logit at each generated step */
    int32_t n_topk;
    int32_t *topk_id;    /* [n_topk] the last prompt position's largest logits, largest first */
    float *topk_logit;   /* [n_topk] */
} golden_prompt;

typedef struct golden_greedy {
    char model[256];
    int32_t n_vocab;
    int32_t n_prompts;
    golden_prompt *prompts; /* [n_prompts] */
} golden_greedy;

static inline void golden_greedy_free(golden_greedy *g)
{
    for (int32_t i = 0; g->prompts && i < g->n_prompts; i++) {
        golden_prompt *p = &g->prompts[i];
        free(p->prompt);
        free(p->gen);
        free(p->top2);
        free(p->topk_id);
        free(p->topk_logit);
    }
    free(g->prompts);
    memset(g, 0, sizeof *g);
}

/* Loads STEM.greedy.txt from GOLDEN_DIR. Returns 0, or -1 with a message on stderr. */
static inline int golden_greedy_load(const char *stem, golden_greedy *g)
{
    char path[512];
    golden_reader r;
    memset(g, 0, sizeof *g);
    snprintf(path, sizeof path, "%s/%s.greedy.txt", GOLDEN_DIR, stem);
    if (golden_open(&r, path))
        return -1;
    if (golden_key_int(&r, "libllm-golden-greedy", 1, 1) != 1)
        goto fail;
    golden_key_word(&r, "model", g->model, sizeof g->model);
    g->n_vocab = (int32_t)golden_key_int(&r, "n_vocab", 1, 1 << 24);
    g->n_prompts = (int32_t)golden_key_int(&r, "n_prompts", 1, 1000);
    if (r.bad)
        goto fail;
    g->prompts = calloc((size_t)g->n_prompts, sizeof *g->prompts);
    if (!g->prompts)
        goto fail;
    for (int32_t i = 0; i < g->n_prompts && !r.bad; i++) {
        golden_prompt *p = &g->prompts[i];
        golden_key_word(&r, "prompt", p->name, sizeof p->name);
        p->n_prompt = (int32_t)golden_key_int(&r, "n_prompt", 1, 1 << 20);
        if (r.bad)
            break;
        p->prompt = golden_ids(&r, p->n_prompt, g->n_vocab);
        p->n_gen = (int32_t)golden_key_int(&r, "n_gen", 1, 1 << 20);
        if (r.bad)
            break;
        p->gen = golden_ids(&r, p->n_gen, g->n_vocab);
        golden_expect(&r, "top2");
        p->top2 = calloc((size_t)p->n_gen * 2, sizeof *p->top2);
        if (!p->top2)
            r.bad = 1;
        for (int32_t k = 0; k < 2 * p->n_gen && !r.bad; k++)
            p->top2[k] = (float)golden_double(&r);
        p->n_topk = (int32_t)golden_key_int(&r, "topk", 10, g->n_vocab);
        if (r.bad)
            break;
        p->topk_id = calloc((size_t)p->n_topk, sizeof *p->topk_id);
        p->topk_logit = calloc((size_t)p->n_topk, sizeof *p->topk_logit);
        if (!p->topk_id || !p->topk_logit)
            r.bad = 1;
        for (int32_t k = 0; k < p->n_topk && !r.bad; k++) {
            p->topk_id[k] = (int32_t)golden_int(&r);
            p->topk_logit[k] = (float)golden_double(&r);
            if (p->topk_id[k] < 0 || p->topk_id[k] >= g->n_vocab)
                r.bad = 1;
        }
        golden_expect(&r, "end");
    }
    if (r.bad)
        goto fail;
    golden_close(&r);
    return 0;
fail:
    fprintf(stderr, "  golden: cannot read %s\n", path);
    golden_close(&r);
    golden_greedy_free(g);
    return -1;
}

/* ---- perplexity goldens: STEM.ppl.txt ------------------------------------------------ */

typedef struct golden_ppl {
    char model[256];
    int32_t n_vocab;
    int32_t n_ctx;       /* chunk length */
    int32_t add_bos;     /* 1: the first token of every chunk is replaced by bos */
    int32_t bos;
    int32_t n_chunks;
    int32_t n_tokens;    /* n_chunks * n_ctx */
    int32_t *tokens;     /* [n_tokens] the text's ids as tokenized */
    double *chunk_nll;   /* [n_chunks] NLL summed over the chunk's scored tokens */
    int32_t *chunk_count; /* [n_chunks] tokens scored in the chunk */
    double ppl;
} golden_ppl;

static inline void golden_ppl_free(golden_ppl *g)
{
    free(g->tokens);
    free(g->chunk_nll);
    free(g->chunk_count);
    memset(g, 0, sizeof *g);
}

static inline int golden_ppl_load(const char *stem, golden_ppl *g)
{
    char path[512];
    golden_reader r;
    memset(g, 0, sizeof *g);
    snprintf(path, sizeof path, "%s/%s.ppl.txt", GOLDEN_DIR, stem);
    if (golden_open(&r, path))
        return -1;
    if (golden_key_int(&r, "libllm-golden-ppl", 1, 1) != 1)
        goto fail;
    golden_key_word(&r, "model", g->model, sizeof g->model);
    g->n_vocab = (int32_t)golden_key_int(&r, "n_vocab", 1, 1 << 24);
    g->n_ctx = (int32_t)golden_key_int(&r, "n_ctx", 4, 1 << 16);
    g->add_bos = (int32_t)golden_key_int(&r, "add_bos", 0, 1);
    g->bos = (int32_t)golden_key_int(&r, "bos", -1, g->n_vocab - 1);
    g->n_chunks = (int32_t)golden_key_int(&r, "n_chunks", 1, 100000);
    g->n_tokens = (int32_t)golden_key_int(&r, "n_tokens", 1, 1 << 28);
    golden_expect(&r, "tokens");
    if (r.bad)
        goto fail;
    if ((long long)g->n_tokens != (long long)g->n_chunks * g->n_ctx) {
        fprintf(stderr, "  golden: %s: n_tokens != n_chunks * n_ctx\n", path);
        goto fail;
    }
    g->tokens = golden_ids(&r, g->n_tokens, g->n_vocab);
    g->chunk_nll = calloc((size_t)g->n_chunks, sizeof *g->chunk_nll);
    g->chunk_count = calloc((size_t)g->n_chunks, sizeof *g->chunk_count);
    if (!g->chunk_nll || !g->chunk_count)
        goto fail;
    for (int32_t c = 0; c < g->n_chunks && !r.bad; c++) {
        if (golden_key_int(&r, "chunk", c, c) != c)
            break;
        g->chunk_nll[c] = golden_double(&r);
        g->chunk_count[c] = (int32_t)golden_int(&r);
    }
    golden_expect(&r, "ppl");
    g->ppl = golden_double(&r);
    golden_expect(&r, "end");
    if (r.bad)
        goto fail;
    golden_close(&r);
    return 0;
fail:
    fprintf(stderr, "  golden: cannot read %s\n", path);
    golden_close(&r);
    golden_ppl_free(g);
    return -1;
}

/* ---- models --------------------------------------------------------------------------- */

/* Path of STEM.gguf (test_model_path); returns 0 when the file is missing. */
static inline int golden_model_file(const char *stem, char *buf, size_t cap)
{
    char file[300];
    snprintf(file, sizeof file, "%s.gguf", stem);
    test_model_path(file, buf, cap);
    return access(buf, R_OK) == 0;
}

/* Index of the largest value, the lowest index among equal ones (numpy argmax, as the
 * goldens). NaN never wins. */
static inline int32_t golden_argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i]))
            best = i;
    return best;
}

/* Number of entries that are NaN or infinite. */
static inline int32_t golden_count_nonfinite(const float *x, int32_t n)
{
    int32_t bad = 0;
    for (int32_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            bad++;
    return bad;
}

#endif
