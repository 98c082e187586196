/* test_generate.c - greedy generation of the real models against llama.cpp.
 *
 * For each model and each golden prompt (tests/data/golden/STEM.greedy.txt, made by
 * gen_goldens.py with llama.cpp): clear the cache, decode the prompt's token ids in one
 * llm_decode, then take 64 steps of one llm_decode each, each step's pick the argmax of
 * llm_context_logits. Every step feeds llama.cpp's token (teacher forcing): up to the first
 * difference that is exactly free-running greedy generation, and past it every step is still
 * compared on the same context. Checks, per prompt:
 *  - the first step where our argmax differs from llama.cpp's id must be one where llama.cpp's
 *    own best two logits were within GEN_TIE (a tie that rounding may break either way);
 *  - at every step llama.cpp's id must be within GEN_MARGIN of our best logit;
 * and per model, our argmax must equal llama.cpp's id at >= GEN_AGREE_MIN of all steps.
 *
 * Why the tie is 1.0 and not 1e-3 (measured with gen_goldens.py's reference, llama.cpp
 * 0c1e570, against itself): running llama.cpp with flash attention on, or feeding the prompt
 * one token at a time instead of as one batch (which changes its matmul kernels), already
 * makes its own greedy output leave the golden one in 14 of these 16 prompts (7 of 8 per
 * model, under one variant or the other), at steps where the golden top-2 gap was 0.0024 to
 * 0.814. These are 4-bit models whose activations are quantised to 8 bits for every
 * matmul, so a rounding change anywhere flips later roundings. Teacher-forced on the golden
 * ids, llama.cpp's variants agreed with the golden argmax at 60..64 of 64 steps per prompt
 * (96.9% worst over a model) and put the golden id at most 0.609 below their best logit.
 * So GEN_TIE = GEN_MARGIN = 1.0 and GEN_AGREE_MIN = 0.94 keep headroom over that noise, while
 * a real bug (a wrong norm, rope or mask) moves logits by several units and fails. The strict
 * 1e-3 verdict is printed too, for information.
 * Uses only llm.h. A missing model file is skipped (exit 77 when none is there). */
#include <stdint.h>
#include <time.h>

#include "llm.h"

#include "golden.h"

#define GEN_TIE 1.0f
#define GEN_MARGIN 1.0f
#define GEN_AGREE_MIN 0.94
#define STRICT_TIE 1e-3f

static int n_models_run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static llm_status decode_tokens(llm_context *ctx, const llm_token *toks, int32_t n)
{
    llm_batch b;
    llm_batch_init(&b);
    b.n_tokens = n;
    b.tokens = toks;
    return llm_decode(ctx, &b); /* positions continue seq 0; logits for the last token only */
}

typedef struct prompt_result {
    int32_t first_diff; /* first step whose argmax differs from llama.cpp's; n_gen if none */
    int32_t n_agree;    /* steps whose argmax equals llama.cpp's id */
    float max_margin;   /* largest (our best logit - our logit of llama.cpp's id) */
    int32_t margin_step;
    int decoded;        /* all decodes succeeded */
} prompt_result;

static void run_prompt(llm_context *ctx, const char *stem, const golden_prompt *p, int32_t n_vocab,
                       prompt_result *r)
{
    llm_status st;
    memset(r, 0, sizeof *r);
    r->first_diff = p->n_gen;
    llm_kv_clear(ctx);
    CHECK_EQ_INT(llm_kv_seq_length(ctx, 0), 0);
    st = decode_tokens(ctx, p->prompt, p->n_prompt);
    CHECK_MSG(st == LLM_OK, "%s/%s: prompt decode: %s: %s", stem, p->name, llm_status_str(st),
              llm_context_last_error(ctx));
    if (st != LLM_OK)
        return;
    CHECK_EQ_INT(llm_kv_seq_length(ctx, 0), p->n_prompt);
    for (int32_t step = 0; step < p->n_gen; step++) {
        const float *logits = llm_context_logits(ctx, -1);
        const int32_t gold = p->gen[step];
        int32_t ours, bad;
        float margin;
        CHECK_MSG(logits != NULL, "%s/%s: no logits at step %d", stem, p->name, step);
        if (!logits)
            return;
        bad = golden_count_nonfinite(logits, n_vocab);
        CHECK_MSG(bad == 0, "%s/%s: %d non-finite logits at step %d", stem, p->name, bad, step);
        if (bad)
            return;
        ours = golden_argmax(logits, n_vocab);
        margin = logits[ours] - logits[gold];
        if (margin > r->max_margin) {
            r->max_margin = margin;
            r->margin_step = step;
        }
        if (ours == gold) {
            r->n_agree++;
        } else if (r->first_diff == p->n_gen) {
            float g1 = p->top2[2 * step], g2 = p->top2[2 * step + 1];
            r->first_diff = step;
            printf("  %s/%s: first difference at step %d (after %d prompt tokens): ours %d "
                   "(our logit %.5f), llama.cpp %d (our logit %.5f); llama.cpp's top-2 logits "
                   "%.5f %.5f (gap %.5f): %s; strictly (gap <= %g): %s\n",
                   stem, p->name, step, p->n_prompt, ours, logits[ours], gold, logits[gold], g1,
                   g2, g1 - g2, g1 - g2 <= GEN_TIE ? "a tie within rounding noise" : "NOT a tie",
                   (double)STRICT_TIE, g1 - g2 <= STRICT_TIE ? "tie" : "not a tie");
            CHECK_MSG(g1 - g2 <= GEN_TIE,
                      "%s/%s: generated id %d != llama.cpp's %d at step %d, gap %.5f > %.2f",
                      stem, p->name, ours, gold, step, g1 - g2, GEN_TIE);
        }
        if (step + 1 < p->n_gen) {
            st = decode_tokens(ctx, &gold, 1);
            CHECK_MSG(st == LLM_OK, "%s/%s: decode at step %d: %s: %s", stem, p->name, step,
                      llm_status_str(st), llm_context_last_error(ctx));
            if (st != LLM_OK)
                return;
        }
    }
    CHECK_MSG(r->max_margin <= GEN_MARGIN,
              "%s/%s: at step %d llama.cpp's id is %.5f below our best logit (limit %.2f)", stem,
              p->name, r->margin_step, r->max_margin, GEN_MARGIN);
    r->decoded = 1;
}

static void run_model(const char *stem)
{
    char path[1024];
    golden_greedy g;
    llm_model *model = NULL;
    llm_context *ctx = NULL;
    llm_context_params cp;
    llm_status st;
    int n_agree = 0, n_steps = 0, n_tokens = 0;
    double t0;

    if (!golden_model_file(stem, path, sizeof path)) {
        printf("SKIP %s: model file %s not found\n", stem, path);
        return;
    }
    n_models_run++;
    CHECK(golden_greedy_load(stem, &g) == 0);
    if (test_case_failed)
        return;
    st = llm_model_load(path, NULL, &model);
    CHECK_MSG(st == LLM_OK, "load %s: %s: %s", path, llm_status_str(st), llm_last_error());
    if (st != LLM_OK)
        goto done;
    CHECK_EQ_INT(llm_model_n_vocab(model), g.n_vocab);
    if (llm_model_n_vocab(model) != g.n_vocab)
        goto done;
    llm_context_params_init(&cp);
    cp.n_ctx = 1024;
    cp.n_batch = 512;
    st = llm_context_create(model, &cp, &ctx);
    CHECK_MSG(st == LLM_OK, "context: %s: %s", llm_status_str(st), llm_last_error());
    if (st != LLM_OK)
        goto done;

    t0 = now_s();
    for (int32_t i = 0; i < g.n_prompts; i++) {
        const golden_prompt *p = &g.prompts[i];
        prompt_result r;
        run_prompt(ctx, stem, p, g.n_vocab, &r);
        n_agree += r.n_agree;
        n_steps += p->n_gen;
        n_tokens += p->n_prompt + p->n_gen;
        printf("  %-28s %-8s greedy equal for %2d/%d ids; teacher-forced argmax agrees %2d/%d, "
               "largest margin %.4f%s\n",
               stem, p->name, r.first_diff, p->n_gen, r.n_agree, p->n_gen, r.max_margin,
               r.decoded ? "" : "  (decode failed)");
    }
    printf("  %s: argmax agrees with llama.cpp at %d/%d steps (%.1f%%, need %.0f%%); %.1f s for "
           "%d tokens\n",
           stem, n_agree, n_steps, 100.0 * n_agree / n_steps, 100.0 * GEN_AGREE_MIN, now_s() - t0,
           n_tokens);
    CHECK_MSG(n_agree >= GEN_AGREE_MIN * n_steps, "%s: argmax agreement %d/%d below %.0f%%", stem,
              n_agree, n_steps, 100.0 * GEN_AGREE_MIN);
done:
    llm_context_free(ctx);
    llm_model_free(model);
    golden_greedy_free(&g);
}

static void test_generate_smollm2(void) { run_model(golden_models[0]); }
static void test_generate_gemma3(void) { run_model(golden_models[1]); }

int main(void)
{
    TEST_RUN(test_generate_smollm2);
    TEST_RUN(test_generate_gemma3);
    if (n_models_run == 0) {
        printf("SKIP: no model files (see tests/unit/test.h test_model_path)\n");
        return 77;
    }
    return test_summary();
}
