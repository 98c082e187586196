/* test_engine.c - the request engine on the two real models: the greedy outputs of 32
 * different requests run concurrently equal those of the same requests run one at a
 * time, also with a KV cache so small that requests are preempted (and recomputed) many
 * times; and a request that reuses a cached prompt prefix gets the same log-probabilities
 * as without the cache. Only llm.h is used. */
#include <unistd.h>

#include "../unit/engine_util.h"
#include "golden.h"

#define N_REQ 32
#define MAX_NEW 16

static const char *const prompts[N_REQ] = {
    "The capital of France is",
    "Write a haiku about the sea.",
    "def fibonacci(n):",
    "List three prime numbers:",
    "Once upon a time, in a small village,",
    "Translate to German: Good morning, how are you?",
    "The quick brown fox",
    "What is 17 times 23?",
    "Explain photosynthesis in one sentence.",
    "#include <stdio.h>\nint main(void) {",
    "The three laws of thermodynamics are",
    "My favourite book is",
    "SELECT name FROM users WHERE",
    "In 1969, the first humans",
    "Here is a recipe for pancakes:",
    "The mitochondria is",
    "Dear hiring manager,",
    "A list of colours: red, green,",
    "Why is the sky blue?",
    "The opposite of hot is",
    "import numpy as np\nx = np.",
    "Water boils at",
    "Roses are red, violets are blue,",
    "The largest planet in the solar system",
    "To be or not to be,",
    "Summarise the plot of Hamlet:",
    "1, 2, 3, 5, 8, 13,",
    "The best way to learn a language is",
    "class Stack:\n    def __init__(self):",
    "Tokyo is the capital of",
    "An apple a day",
    "The chemical symbol for gold is",
};

static int n_models_run;

static llm_context *make_ctx(llm_model *m, int32_t n_ctx, int32_t n_seq, uint32_t flags)
{
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    cp.n_batch = 256;
    cp.flags = flags;
    llm_context *ctx = NULL;
    if (llm_context_create(m, &cp, &ctx) != LLM_OK) {
        fprintf(stderr, "context: %s\n", llm_last_error());
        return NULL;
    }
    return ctx;
}

static llm_status submit(llm_context *ctx, const char *prompt, int logprobs, llm_request_id *id)
{
    llm_request_params p;
    llm_request_params_init(&p);
    p.prompt = prompt;
    p.max_tokens = MAX_NEW;
    p.logprobs = logprobs;
    p.ignore_eos = 1; /* every request generates MAX_NEW tokens */
    return llm_request_submit(ctx, &p, id);
}

/* Runs all prompts at once in ctx and compares each with ref. */
static void run_concurrent(llm_context *ctx, eu_out *ref, const char *what, int min_preempt)
{
    eu_log log = {0};
    llm_request_id ids[N_REQ];
    for (int i = 0; i < N_REQ; i++)
        CHECK_EQ_INT(submit(ctx, prompts[i], 0, &ids[i]), LLM_OK);
    CHECK_EQ_INT(eu_run(ctx, &log, 100000), LLM_OK);
    int same = 0;
    for (int i = 0; i < N_REQ; i++) {
        eu_out *o = eu_find(&log, ids[i], 0);
        const int eq = o->n_tokens == ref[i].n_tokens &&
                       memcmp(o->tokens, ref[i].tokens, (size_t)o->n_tokens * sizeof(llm_token)) == 0;
        CHECK_MSG(eq, "%s: request %d (\"%s\") differs", what, i, prompts[i]);
        CHECK_EQ_INT(o->n_final, 1);
        CHECK(!o->bad_utf8_split);
        CHECK_MSG(o->text_len == ref[i].text_len && memcmp(o->text, ref[i].text, o->text_len) == 0,
                  "%s: request %d text differs", what, i);
        same += eq;
    }
    llm_engine_stats st = {.size = sizeof st};
    CHECK_EQ_INT(llm_engine_stats_get(ctx, &st), LLM_OK);
    printf("     %s: %d/%d identical, %lld steps, %lld preemptions, %lld prefix tokens reused\n",
           what, same, N_REQ, (long long)st.n_steps, (long long)st.n_preemptions,
           (long long)st.prefix_tokens_reused);
    CHECK_MSG(st.n_preemptions >= min_preempt, "%s: %lld preemptions, expected >= %d", what,
              (long long)st.n_preemptions, min_preempt);
    CHECK_EQ_INT(st.kv_blocks_free, st.kv_blocks);
    eu_free(&log);
}

static void run_model(const char *stem)
{
    char path[512];
    if (!golden_model_file(stem, path, sizeof path)) {
        printf("     %s: model file missing, skipped\n", stem);
        return;
    }
    llm_model *m = NULL;
    if (llm_model_load(path, NULL, &m) != LLM_OK) {
        CHECK_MSG(0, "load %s: %s", path, llm_last_error());
        return;
    }
    n_models_run++;
    /* one at a time */
    static eu_out ref[N_REQ];
    char *ref_text[N_REQ];
    llm_context *alone = make_ctx(m, 512, 1, LLM_CONTEXT_NO_PREFIX_CACHE);
    for (int i = 0; i < N_REQ; i++) {
        eu_log log = {0};
        llm_request_id id;
        CHECK_EQ_INT(submit(alone, prompts[i], 0, &id), LLM_OK);
        CHECK_EQ_INT(eu_run(alone, &log, 1000), LLM_OK);
        ref[i] = *eu_find(&log, id, 0);
        ref_text[i] = ref[i].text;
        log.outs[0].text = NULL;
        CHECK_EQ_INT(ref[i].n_tokens, MAX_NEW);
        eu_free(&log);
    }
    printf("     %s: \"%s\" -> \"%s\"\n", stem, prompts[0], ref_text[0] ? ref_text[0] : "");
    /* all at once, with room for everything */
    llm_context *big = make_ctx(m, 4096, N_REQ, 0);
    run_concurrent(big, ref, "concurrent", 0);
    /* all at once in 12 blocks of 16 tokens: a request needs up to 4 */
    llm_context *tight = make_ctx(m, 192, N_REQ, LLM_CONTEXT_NO_PREFIX_CACHE);
    run_concurrent(tight, ref, "preempting", 8);
    llm_context_free(tight);
    /* a shared prefix: the second request reuses the first one's blocks */
    static char longp[4096];
    snprintf(longp, sizeof longp, "You are a helpful assistant. Answer briefly and precisely, "
             "in plain English, without lists or headings. Be kind. %s %s %s", prompts[5],
             prompts[8], prompts[18]);
    eu_log a = {0}, b = {0};
    llm_request_id ia, ib1, ib2;
    CHECK_EQ_INT(submit(alone, longp, 5, &ia), LLM_OK);
    CHECK_EQ_INT(eu_run(alone, &a, 1000), LLM_OK);
    CHECK_EQ_INT(submit(big, longp, 5, &ib1), LLM_OK);
    CHECK_EQ_INT(eu_run(big, &b, 1000), LLM_OK);
    CHECK_EQ_INT(submit(big, longp, 5, &ib2), LLM_OK);
    CHECK_EQ_INT(eu_run(big, &b, 1000), LLM_OK);
    eu_out *oa = eu_find(&a, ia, 0), *o2 = eu_find(&b, ib2, 0);
    CHECK_MSG(o2->n_cached >= 16 && o2->n_cached == (o2->n_prompt - 1) / 16 * 16,
              "reused %d of %d prompt tokens", o2->n_cached, o2->n_prompt);
    CHECK_EQ_INT(oa->n_tokens, MAX_NEW);
    CHECK(o2->n_tokens == oa->n_tokens &&
          memcmp(o2->tokens, oa->tokens, (size_t)oa->n_tokens * sizeof(llm_token)) == 0);
    CHECK(memcmp(o2->logprob, oa->logprob, (size_t)oa->n_tokens * sizeof(float)) == 0);
    CHECK(memcmp(o2->top_lp, oa->top_lp, sizeof oa->top_lp) == 0);
    printf("     prefix: %d of %d prompt tokens reused, log-probabilities identical: %s\n",
           o2->n_cached, o2->n_prompt,
           memcmp(o2->logprob, oa->logprob, (size_t)oa->n_tokens * sizeof(float)) == 0 ? "yes" : "no");
    eu_free(&a);
    eu_free(&b);
    for (int i = 0; i < N_REQ; i++)
        free(ref_text[i]);
    llm_context_free(big);
    llm_context_free(alone);
    llm_model_free(m);
}

static void test_engine_smollm2(void) { run_model(golden_models[0]); }
static void test_engine_gemma3(void) { run_model(golden_models[1]); }

int main(void)
{
    /* Where "auto" takes a GPU, these bit-exact properties hold in its batch-invariant mode
     * only (docs/architecture.md, "Batch invariance"): asked for unless the caller chose. */
    setenv("LLM_CUDA_BATCH_INVARIANT", "1", 0);
    TEST_RUN(test_engine_smollm2);
    TEST_RUN(test_engine_gemma3);
    if (n_models_run == 0) {
        printf("SKIP: no model files (see tests/unit/test.h test_model_path)\n");
        return 77;
    }
    return test_summary();
}
