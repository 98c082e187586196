/* test_archs.c - every supported architecture against llama.cpp on a tiny random-weight
 * model (tests/data/arch/, written by tests/model/gen_arch_models.py).
 *
 * For each model: the golden token sequence is decoded as a prompt batch with logits for
 * every position, then its last N_SINGLE tokens one at a time (the generation path), and
 * each position's logits are compared with llama.cpp's.
 *
 * Tolerance: max |ours - llama.cpp| <= TOL_ABS over all positions and the whole
 * vocabulary (logits here reach |25|). llama.cpp moves by up to 0.023 against itself when
 * only its attention kernel changes (flash attention on vs off; each golden file records
 * that figure for its model), and both engines round activations to f16 or 8 bits in
 * different places, so the bound is about twice llama.cpp's largest self-noise; libllm
 * measured 0.008-0.015. An error in the math (a missing bias, a wrong rope mode, expert
 * weights not renormalised) moves logits by whole units. Every position's argmax must
 * also agree unless llama.cpp's top two are closer than TOL_ABS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "test.h"

#define ARCH_DIR "tests/data/arch"
#define TOL_ABS 0.05f
#define N_SINGLE 8

static const char *const models[] = {
    "llama", "llama3", "llama-linear", "qwen2", "qwen3", "phi3", "gemma2", "mixtral", "qwen3moe",
};

typedef struct golden {
    uint32_t n_tokens, n_vocab;
    int32_t *tokens;
    float *logits;
    float noise;
} golden;

static int read_golden(const char *name, golden *g)
{
    char path[256];
    snprintf(path, sizeof path, ARCH_DIR "/%s.logits.bin", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "  cannot open %s (run from the source root)\n", path);
        return -1;
    }
    char magic[8];
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, "LLMARCH1", 8) == 0 &&
             fread(&g->n_tokens, 4, 1, f) == 1 && fread(&g->n_vocab, 4, 1, f) == 1 &&
             g->n_tokens > N_SINGLE && g->n_tokens < 4096 && g->n_vocab < 1000000;
    if (ok) {
        g->tokens = malloc(g->n_tokens * sizeof(int32_t));
        g->logits = malloc((size_t)g->n_tokens * g->n_vocab * sizeof(float));
        ok = g->tokens && g->logits &&
             fread(g->tokens, 4, g->n_tokens, f) == g->n_tokens &&
             fread(g->logits, 4, (size_t)g->n_tokens * g->n_vocab, f) ==
                 (size_t)g->n_tokens * g->n_vocab &&
             fread(&g->noise, 4, 1, f) == 1;
    }
    fclose(f);
    if (!ok)
        fprintf(stderr, "  %s: not a golden logits file\n", path);
    return ok ? 0 : -1;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* Compares one position; returns its max abs difference and counts argmax mismatches. */
static float compare(const float *ours, const float *ref, int n_vocab, int *bad_argmax)
{
    float d = 0.0f;
    for (int v = 0; v < n_vocab; v++) {
        float e = fabsf(ours[v] - ref[v]);
        d = e > d || isnan(e) ? e : d;
    }
    const int a = argmax(ref, n_vocab), b = argmax(ours, n_vocab);
    if (a != b) {
        float second = -INFINITY;
        for (int v = 0; v < n_vocab; v++)
            if (v != a && ref[v] > second)
                second = ref[v];
        if (ref[a] - second > TOL_ABS)
            (*bad_argmax)++;
    }
    return d;
}

static void run_model(const char *name)
{
    golden g = {0};
    char path[256];
    snprintf(path, sizeof path, ARCH_DIR "/%s.gguf", name);
    CHECK(read_golden(name, &g) == 0);
    if (!g.tokens) {
        free(g.logits);
        return;
    }
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.n_threads = 2;
    llm_model *m = NULL;
    llm_status st = llm_model_load(path, &mp, &m);
    if (st != LLM_OK)
        fprintf(stderr, "  %s: %s\n", name, llm_last_error());
    CHECK(st == LLM_OK);
    if (!m)
        goto out;
    CHECK(llm_model_n_vocab(m) == (int32_t)g.n_vocab);
    /* llm info's data: every tensor is f16 (matrices) or f32 (vectors) here, and together
     * they fill the file but for the header */
    {
        const int32_t nt = llm_model_n_tensors(m);
        uint64_t bytes = 0, f16 = 0;
        CHECK(nt > 4);
        for (int32_t i = 0; i < nt; i++) {
            const char *type = NULL;
            uint64_t n = 0, b = 0;
            CHECK(llm_model_tensor_info(m, i, &type, &n, &b) == LLM_OK);
            CHECK(type && (strcmp(type, "f16") == 0 || strcmp(type, "f32") == 0));
            CHECK(type && b == n * (strcmp(type, "f16") == 0 ? 2u : 4u));
            bytes += b;
            f16 += type && strcmp(type, "f16") == 0;
        }
        CHECK(f16 > 0 && bytes < llm_model_file_size(m) && bytes > llm_model_file_size(m) / 2);
        CHECK(llm_model_tensor_info(m, nt, NULL, NULL, NULL) == LLM_ERR_INVALID_ARG);
    }
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_threads = 2;
    llm_context *c = NULL;
    CHECK(llm_context_create(m, &cp, &c) == LLM_OK);
    if (!c) {
        llm_model_free(m);
        goto out;
    }
    const int n_prompt = (int)g.n_tokens - N_SINGLE, nv = (int)g.n_vocab;
    float worst = 0.0f;
    int bad_argmax = 0;
    llm_batch b;
    llm_batch_init(&b);
    int8_t want[4096];
    memset(want, 1, sizeof want);
    b.tokens = g.tokens;
    b.n_tokens = n_prompt;
    b.logits = want;
    CHECK(llm_decode(c, &b) == LLM_OK);
    for (int i = 0; i < n_prompt; i++) {
        const float *lo = llm_context_logits(c, i);
        CHECK(lo != NULL);
        if (lo) {
            float d = compare(lo, g.logits + (size_t)i * nv, nv, &bad_argmax);
            worst = d > worst || isnan(d) ? d : worst;
        }
    }
    for (int i = n_prompt; i < (int)g.n_tokens; i++) {
        llm_batch_init(&b);
        b.tokens = &g.tokens[i];
        b.n_tokens = 1;
        CHECK(llm_decode(c, &b) == LLM_OK);
        const float *lo = llm_context_logits(c, -1);
        CHECK(lo != NULL);
        if (lo) {
            float d = compare(lo, g.logits + (size_t)i * nv, nv, &bad_argmax);
            worst = d > worst || isnan(d) ? d : worst;
        }
    }
    printf("  %-13s max |diff| %.4f (tolerance %.2f; llama.cpp self-noise %.4f), "
           "argmax mismatches %d\n", name, worst, TOL_ABS, g.noise, bad_argmax);
    CHECK(worst <= TOL_ABS);
    CHECK(bad_argmax == 0);
    llm_context_free(c);
    llm_model_free(m);
out:
    free(g.tokens);
    free(g.logits);
}

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (argc >= 2 && strcmp(argv[1], models[i]) != 0)
            continue;
        test_case_failed = 0;
        run_model(models[i]);
        test_case_failed ? test_n_fail++ : test_n_pass++;
        printf("%s %s\n", test_case_failed ? "FAIL" : "ok  ", models[i]);
        fflush(stdout);
    }
    return test_summary();
}
