/* test_perplexity.c - perplexity of the real models against llama.cpp's, on the same tokens.
 *
 * The method is llama.cpp's tools/perplexity at n_ctx 512, on the token ids stored in
 * tests/data/golden/STEM.ppl.txt (the text of tests/data/ppl/, tokenized by llama.cpp):
 * chunks of 512 tokens; when the model adds BOS, each chunk's first token is replaced by BOS;
 * each chunk is one llm_decode on a cleared cache, with logits asked only for the scored
 * positions; the logits at position i predict token i+1 for i in [256, 511); the NLL comes
 * from a max-shifted log-softmax in double; ppl = exp(sum NLL / count). Ours must be within
 * PPL_REL of llama.cpp's.
 *
 * LLM_PPL_CHUNKS=N limits the run to the first N chunks (a quicker check while developing;
 * llama.cpp's ppl over the same chunks comes from the golden per-chunk sums). Measured:
 * single chunks of libllm differed from llama.cpp's by up to 2.6% while the 40-chunk ppl
 * agreed within 0.1% (rounding noise that averages out), so a shorter run's limit is
 * PPL_REL * sqrt(40 / N), as the spread of a mean of N chunks shrinks.
 * Uses only llm.h. A missing model file is skipped (exit 77 when none is there). */
#include <stdint.h>
#include <time.h>

#include "llm.h"

#include "golden.h"

#define PPL_REL 0.005

static int n_models_run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* -log softmax(x)[target], with the sum taken in double. */
static double nll_of(const float *x, int32_t n, int32_t target)
{
    float mx = x[0];
    double sum = 0.0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)x[i] - (double)mx);
    return log(sum) - ((double)x[target] - (double)mx);
}

static void run_model(const char *stem)
{
    char path[1024];
    golden_ppl g;
    llm_model *model = NULL;
    llm_context *ctx = NULL;
    llm_context_params cp;
    llm_status st;
    llm_token *chunk = NULL;
    int8_t *want = NULL;
    int32_t n_chunks, first, n_vocab;
    double nll_ours = 0.0, nll_ref = 0.0, worst_chunk_rel = 0.0, t0;
    long long count = 0, count_ref = 0;
    const char *env = getenv("LLM_PPL_CHUNKS");

    if (!golden_model_file(stem, path, sizeof path)) {
        printf("SKIP %s: model file %s not found\n", stem, path);
        return;
    }
    n_models_run++;
    CHECK(golden_ppl_load(stem, &g) == 0);
    if (test_case_failed)
        return;
    n_chunks = g.n_chunks;
    if (env && atoi(env) > 0 && atoi(env) < n_chunks)
        n_chunks = atoi(env);
    first = g.n_ctx / 2;

    st = llm_model_load(path, NULL, &model);
    CHECK_MSG(st == LLM_OK, "load %s: %s: %s", path, llm_status_str(st), llm_last_error());
    if (st != LLM_OK)
        goto done;
    n_vocab = llm_model_n_vocab(model);
    CHECK_EQ_INT(n_vocab, g.n_vocab);
    if (g.add_bos)
        CHECK_EQ_INT(llm_model_token(model, LLM_TOKEN_BOS), g.bos);
    if (test_case_failed)
        goto done;
    llm_context_params_init(&cp);
    cp.n_ctx = g.n_ctx;
    cp.n_batch = g.n_ctx; /* one chunk is one batch */
    st = llm_context_create(model, &cp, &ctx);
    CHECK_MSG(st == LLM_OK, "context: %s: %s", llm_status_str(st), llm_last_error());
    if (st != LLM_OK)
        goto done;

    chunk = malloc((size_t)g.n_ctx * sizeof *chunk);
    want = calloc((size_t)g.n_ctx, sizeof *want);
    CHECK(chunk && want);
    if (!chunk || !want)
        goto done;
    for (int32_t i = first; i < g.n_ctx - 1; i++)
        want[i] = 1;

    t0 = now_s();
    for (int32_t c = 0; c < n_chunks; c++) {
        llm_batch b;
        double nll = 0.0, rel;
        int32_t n_scored = 0;
        memcpy(chunk, g.tokens + (size_t)c * g.n_ctx, (size_t)g.n_ctx * sizeof *chunk);
        if (g.add_bos)
            chunk[0] = g.bos;
        llm_kv_clear(ctx);
        llm_batch_init(&b);
        b.n_tokens = g.n_ctx;
        b.tokens = chunk;
        b.logits = want;
        st = llm_decode(ctx, &b);
        CHECK_MSG(st == LLM_OK, "%s chunk %d: decode: %s: %s", stem, c, llm_status_str(st),
                  llm_context_last_error(ctx));
        if (st != LLM_OK)
            goto done;
        /* Logit rows count only the tokens that asked: row j is position first + j. */
        for (int32_t i = first; i < g.n_ctx - 1; i++) {
            const float *row = llm_context_logits(ctx, i - first);
            CHECK_MSG(row != NULL, "%s chunk %d: no logits row %d", stem, c, i - first);
            if (!row)
                goto done;
            nll += nll_of(row, n_vocab, chunk[i + 1]);
            n_scored++;
        }
        CHECK_EQ_INT(n_scored, g.chunk_count[c]);
        CHECK_MSG(nll == nll, "%s chunk %d: NLL is NaN", stem, c);
        nll_ours += nll;
        count += n_scored;
        nll_ref += g.chunk_nll[c];
        count_ref += g.chunk_count[c];
        rel = exp(nll / n_scored) / exp(g.chunk_nll[c] / g.chunk_count[c]) - 1.0;
        if (fabs(rel) > fabs(worst_chunk_rel))
            worst_chunk_rel = rel;
        printf("  %s chunk %2d: ppl %.4f (llama.cpp %.4f, %+.3f%%) [%.1f s]\n", stem, c,
               exp(nll / n_scored), exp(g.chunk_nll[c] / g.chunk_count[c]), 100.0 * rel,
               now_s() - t0);
        fflush(stdout);
    }
    {
        double ours = exp(nll_ours / (double)count);
        double ref = n_chunks == g.n_chunks ? g.ppl : exp(nll_ref / (double)count_ref);
        double rel = ours / ref - 1.0;
        double limit = PPL_REL * sqrt((double)g.n_chunks / n_chunks);
        printf("  %s: ppl ours %.4f, llama.cpp %.4f (%+.3f%%) over %d chunks of %d (%lld tokens "
               "scored); worst chunk %+.3f%%; %.1f s\n",
               stem, ours, ref, 100.0 * rel, n_chunks, g.n_ctx, count, 100.0 * worst_chunk_rel,
               now_s() - t0);
        CHECK_MSG(fabs(rel) < limit, "%s: ppl %.4f vs llama.cpp's %.4f: %+.3f%% (limit %.2f%%)",
                  stem, ours, ref, 100.0 * rel, 100.0 * limit);
    }
done:
    free(chunk);
    free(want);
    llm_context_free(ctx);
    llm_model_free(model);
    golden_ppl_free(&g);
}

static void test_perplexity_smollm2(void) { run_model(golden_models[0]); }
static void test_perplexity_gemma3(void) { run_model(golden_models[1]); }

int main(void)
{
    TEST_RUN(test_perplexity_smollm2);
    TEST_RUN(test_perplexity_gemma3);
    if (n_models_run == 0) {
        printf("SKIP: no model files (see tests/unit/test.h test_model_path)\n");
        return 77;
    }
    return test_summary();
}
