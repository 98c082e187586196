/* test_engine.c - the request engine on a tiny random-weight model: text release (stop
 * strings, UTF-8), concurrent runs equal to one-at-a-time runs, preemption, prefix
 * caching, forks, cancellation, a randomized property test, steps that fail in the backend
 * and a multi-threaded storm against the worker thread. Built also under AddressSanitizer
 * and ThreadSanitizer by scripts/test. */
#include <pthread.h>
#include <unistd.h>

#include "context.h"
#include "engine_util.h"
#include "stream.h"
#include "test.h"
#include "tiny_model.h"

static llm_model *model;
static char model_path[256];

static int32_t kv_type = LLM_KV_F16; /* of the contexts make_ctx creates */

static llm_context *make_ctx(int32_t n_ctx, int32_t n_seq, int32_t n_batch, int32_t block,
                             uint32_t flags)
{
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    cp.n_batch = n_batch;
    cp.block_size = block;
    cp.n_threads = 1;
    cp.flags = flags;
    cp.kv_type = kv_type;
    llm_context *ctx = NULL;
    if (llm_context_create(model, &cp, &ctx) != LLM_OK) {
        fprintf(stderr, "context: %s\n", llm_last_error());
        abort();
    }
    return ctx;
}

static uint64_t rng_state = 12345;
static uint32_t rnd(uint32_t n)
{
    return (uint32_t)(tiny_rng(&rng_state) % n);
}

/* a prompt of n tokens drawn from the word tokens (ids 259..), BOS first */
static void make_prompt(llm_token *t, int32_t n, uint64_t seed)
{
    uint64_t s = seed;
    t[0] = 1;
    for (int32_t i = 1; i < n; i++)
        t[i] = 259 + (llm_token)(tiny_rng(&s) % TINY_N_WORDS);
}

static int blocks_all_free(llm_context *ctx)
{
    llm_engine_stats st = {.size = sizeof st};
    if (llm_engine_stats_get(ctx, &st) != LLM_OK)
        return 0;
    return st.kv_blocks_free == st.kv_blocks && st.n_running == 0 && st.n_waiting == 0;
}

/* ---- text release ------------------------------------------------------------------ */

static void push_all(llm_stream *s, const char *const *pieces, int n, char *out, int *stopped)
{
    size_t len = 0;
    *stopped = 0;
    for (int i = 0; i < n && !*stopped; i++) {
        size_t rel = 0;
        int m = llm__stream_push(s, pieces[i], strlen(pieces[i]), &rel);
        CHECK(m >= 0);
        memcpy(out + len, s->buf, rel);
        len += rel;
        llm__stream_consume(s, rel);
        *stopped = m == 1;
    }
    if (!*stopped) { /* end of generation: the rest goes out */
        memcpy(out + len, s->buf, s->len);
        len += s->len;
    }
    out[len] = 0;
}

static void test_stream(void)
{
    char *stops[2] = {"</end>", "XY"};
    size_t lens[2] = {6, 2};
    llm_stream s = {.stop = stops, .stop_len = lens, .n_stop = 2};
    char out[256];
    int stopped;
    /* a stop string across three pieces: nothing of it leaks, text before it does */
    const char *a[] = {"hello </", "en", "d> after"};
    push_all(&s, a, 3, out, &stopped);
    CHECK(stopped);
    CHECK(strcmp(out, "hello ") == 0);
    /* a false start is released once ruled out */
    llm__stream_consume(&s, s.len);
    size_t rel;
    CHECK_EQ_INT(llm__stream_push(&s, "ab</e", 5, &rel), 0);
    CHECK_EQ_INT(rel, 2); /* "</e" held */
    llm__stream_consume(&s, rel);
    CHECK_EQ_INT(llm__stream_push(&s, "x", 1, &rel), 0);
    CHECK_EQ_INT(rel, 4); /* "</ex" can no longer become "</end>" */
    llm__stream_consume(&s, rel);
    /* the earliest of two stop strings wins */
    const char *b[] = {"1 X", "Y 2 </end>"};
    push_all(&s, b, 2, out, &stopped);
    CHECK(stopped);
    CHECK(strcmp(out, "1 ") == 0);
    llm__stream_consume(&s, s.len);
    /* UTF-8: a character split over pieces is held until complete */
    const char euro[] = "\xe2\x82\xac";
    CHECK_EQ_INT(llm__stream_push(&s, "a\xe2", 2, &rel), 0);
    CHECK_EQ_INT(rel, 1);
    llm__stream_consume(&s, rel);
    CHECK_EQ_INT(llm__stream_push(&s, "\x82", 1, &rel), 0);
    CHECK_EQ_INT(rel, 0);
    CHECK_EQ_INT(llm__stream_push(&s, "\xac", 1, &rel), 0);
    CHECK_EQ_INT(rel, 3);
    CHECK(memcmp(s.buf, euro, 3) == 0);
    llm__stream_consume(&s, rel);
    /* a 4-byte emoji in four pieces */
    const char *emoji[] = {"\xf0", "\x9f", "\x98", "\x80"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(llm__stream_push(&s, emoji[i], 1, &rel), 0);
        CHECK_EQ_INT(rel, i == 3 ? 4 : 0);
    }
    llm__stream_consume(&s, rel);
    /* stray continuation bytes are not waited for */
    CHECK_EQ_INT(llm__stream_push(&s, "\x80\x80", 2, &rel), 0);
    CHECK_EQ_INT(rel, 2);
    llm__stream_free(&s);
}

/* ---- the engine ----------------------------------------------------------------------- */

#define N_REQ 32

typedef struct req_spec {
    llm_token prompt[200];
    int32_t n_prompt, max_tokens;
} req_spec;

static void make_specs(req_spec *r, int n, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        r[i].n_prompt = 3 + (int32_t)(tiny_rng(&s) % 60);
        r[i].max_tokens = 1 + (int32_t)(tiny_rng(&s) % 40);
        make_prompt(r[i].prompt, r[i].n_prompt, tiny_rng(&s));
    }
}

/* Each request alone, in a fresh context with room to spare. */
static void run_alone(const req_spec *r, int n, eu_out *ref)
{
    for (int i = 0; i < n; i++) {
        llm_context *ctx = make_ctx(512, 1, 64, 16, LLM_CONTEXT_NO_PREFIX_CACHE);
        eu_log log = {0};
        llm_request_id id;
        CHECK_EQ_INT(eu_submit_tokens(ctx, r[i].prompt, r[i].n_prompt, r[i].max_tokens, &id),
                     LLM_OK);
        CHECK_EQ_INT(eu_run(ctx, &log, 10000), LLM_OK);
        CHECK_EQ_INT(log.n, 1);
        ref[i] = log.outs[0];
        ref[i].text = NULL;
        eu_free(&log);
        llm_context_free(ctx);
    }
}

static void check_same(const eu_out *a, const eu_out *b, const char *what, int i)
{
    CHECK_MSG(a->n_tokens == b->n_tokens && memcmp(a->tokens, b->tokens,
              (size_t)a->n_tokens * sizeof(llm_token)) == 0,
              "%s: request %d differs (%d vs %d tokens)", what, i, a->n_tokens, b->n_tokens);
    CHECK_EQ_INT(a->finish_reason, b->finish_reason);
    CHECK_EQ_INT(a->n_final, 1);
    CHECK(!a->after_final);
}

static void concurrent_case(int32_t n_ctx, int32_t n_batch, uint32_t flags, int min_preempt)
{
    static req_spec r[N_REQ];
    static eu_out ref[N_REQ];
    make_specs(r, N_REQ, 99);
    run_alone(r, N_REQ, ref);
    llm_context *ctx = make_ctx(n_ctx, N_REQ, n_batch, 8, flags);
    eu_log log = {0};
    llm_request_id ids[N_REQ];
    for (int i = 0; i < N_REQ; i++)
        CHECK_EQ_INT(eu_submit_tokens(ctx, r[i].prompt, r[i].n_prompt, r[i].max_tokens, &ids[i]),
                     LLM_OK);
    CHECK_EQ_INT(eu_run(ctx, &log, 100000), LLM_OK);
    CHECK_EQ_INT(log.n, N_REQ);
    for (int i = 0; i < N_REQ; i++)
        check_same(eu_find(&log, ids[i], 0), &ref[i], "concurrent", i);
    llm_engine_stats st = {.size = sizeof st};
    CHECK_EQ_INT(llm_engine_stats_get(ctx, &st), LLM_OK);
    CHECK_MSG(st.n_preemptions >= min_preempt, "%lld preemptions, expected at least %d",
              (long long)st.n_preemptions, min_preempt);
    CHECK(blocks_all_free(ctx));
    printf("     n_ctx %d: %lld steps, %lld preemptions, %lld prefix tokens reused\n", n_ctx,
           (long long)st.n_steps, (long long)st.n_preemptions,
           (long long)st.prefix_tokens_reused);
    eu_free(&log);
    llm_context_free(ctx);
}

static void test_concurrent_equals_alone(void)
{
    concurrent_case(4096, 128, 0, 0);
}

static void test_preemption_equals_alone(void)
{
    /* 12 blocks of 8: the requests need up to 13 blocks each; many are preempted */
    concurrent_case(104, 32, LLM_CONTEXT_NO_PREFIX_CACHE, 5);
    concurrent_case(104, 32, 0, 5);
}

/* The same with the cache in bf16 and q8_0: copy-on-write, preemption and batching must
 * not change results in any cache type. */
static void test_kv_types(void)
{
    const int32_t types[] = {LLM_KV_BF16, LLM_KV_Q8_0};
    for (int i = 0; i < 2; i++) {
        kv_type = types[i];
        concurrent_case(104, 32, 0, 5);
    }
    kv_type = LLM_KV_F16;
    /* a bad type is refused */
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.kv_type = 7;
    llm_context *ctx = NULL;
    CHECK_EQ_INT(llm_context_create(model, &cp, &ctx), LLM_ERR_INVALID_ARG);
    CHECK(ctx == NULL);
}

static void test_prefix_cache_same_logits(void)
{
    llm_token prompt[100];
    make_prompt(prompt, 100, 7);
    /* without the cache */
    llm_context *plain = make_ctx(1024, 4, 64, 16, LLM_CONTEXT_NO_PREFIX_CACHE);
    llm_context *cached = make_ctx(1024, 4, 64, 16, 0);
    eu_log a = {0}, b = {0};
    llm_request_params p;
    llm_request_params_init(&p);
    p.tokens = prompt;
    p.n_tokens = 100;
    p.max_tokens = 8;
    p.logprobs = 4;
    llm_request_id id_plain, id_first, id_second;
    CHECK_EQ_INT(llm_request_submit(plain, &p, &id_plain), LLM_OK);
    CHECK_EQ_INT(eu_run(plain, &a, 1000), LLM_OK);
    CHECK_EQ_INT(llm_request_submit(cached, &p, &id_first), LLM_OK);
    CHECK_EQ_INT(eu_run(cached, &b, 1000), LLM_OK);
    CHECK_EQ_INT(llm_request_submit(cached, &p, &id_second), LLM_OK);
    CHECK_EQ_INT(eu_run(cached, &b, 1000), LLM_OK);
    eu_out *o0 = eu_find(&a, id_plain, 0), *o1 = eu_find(&b, id_first, 0),
           *o2 = eu_find(&b, id_second, 0);
    CHECK_EQ_INT(o1->n_cached, 0);
    CHECK_EQ_INT(o2->n_cached, 96); /* 6 full blocks; the last token is always computed */
    CHECK_EQ_INT(o0->n_tokens, 8);
    for (const eu_out *o = o1; o; o = o == o1 ? o2 : NULL) {
        CHECK_EQ_INT(o->n_tokens, 8);
        CHECK(memcmp(o->tokens, o0->tokens, 8 * sizeof(llm_token)) == 0);
        /* the same log-probabilities, bit for bit */
        CHECK(memcmp(o->logprob, o0->logprob, 8 * sizeof(float)) == 0);
        CHECK(memcmp(o->top_lp, o0->top_lp, sizeof o->top_lp) == 0);
        CHECK(memcmp(o->top_tok, o0->top_tok, sizeof o->top_tok) == 0);
    }
    llm_engine_stats st = {.size = sizeof st};
    CHECK_EQ_INT(llm_engine_stats_get(cached, &st), LLM_OK);
    CHECK_EQ_INT(st.prefix_hits, 1);
    CHECK_EQ_INT(st.prefix_tokens_reused, 96);
    CHECK(st.kv_blocks_cached > 0); /* kept after the requests ended */
    CHECK(blocks_all_free(cached));
    /* logprobs are log-probabilities: top-1 is the greedy token, values <= 0, sorted */
    CHECK_EQ_INT(o0->top_tok[0], o0->tokens[0]);
    CHECK(o0->top_lp[0] <= 0 && o0->top_lp[1] <= o0->top_lp[0] && o0->top_lp[3] <= o0->top_lp[2]);
    eu_free(&a);
    eu_free(&b);
    llm_context_free(plain);
    llm_context_free(cached);
}

static void test_fork_n_completions(void)
{
    llm_token prompt[40];
    make_prompt(prompt, 40, 11);
    llm_sampler_params sp;
    llm_sampler_params_init(&sp);
    sp.temperature = 1.5f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 1000;
    llm_request_params p;
    llm_request_params_init(&p);
    p.tokens = prompt;
    p.n_tokens = 40;
    p.max_tokens = 20;
    p.sampling = &sp;
    p.n = 4;
    llm_context *ctx = make_ctx(1024, 8, 64, 16, LLM_CONTEXT_NO_PREFIX_CACHE);
    eu_log log = {0};
    llm_request_id id;
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &id), LLM_OK);
    CHECK_EQ_INT(eu_run(ctx, &log, 1000), LLM_OK);
    CHECK_EQ_INT(log.n, 4);
    llm_engine_stats st = {.size = sizeof st};
    llm_engine_stats_get(ctx, &st);
    /* the prompt was computed once: 39 prompt tokens, not 4 x 39 */
    CHECK_MSG(st.tokens_prefilled == 39, "prefilled %lld", (long long)st.tokens_prefilled);
    CHECK(blocks_all_free(ctx));
    /* completion i equals a single request seeded with seed + i */
    int differ = 0;
    for (int i = 0; i < 4; i++) {
        eu_out *o = eu_find(&log, id, i);
        llm_sampler_params si = sp;
        si.seed = sp.seed + (uint64_t)i;
        llm_request_params q = p;
        q.n = 1;
        q.sampling = &si;
        eu_log one = {0};
        llm_request_id id1;
        CHECK_EQ_INT(llm_request_submit(ctx, &q, &id1), LLM_OK);
        CHECK_EQ_INT(eu_run(ctx, &one, 1000), LLM_OK);
        check_same(o, eu_find(&one, id1, 0), "fork", i);
        if (i > 0)
            differ |= o->n_tokens != eu_find(&log, id, 0)->n_tokens ||
                      memcmp(o->tokens, eu_find(&log, id, 0)->tokens,
                             (size_t)o->n_tokens * sizeof(llm_token)) != 0;
        eu_free(&one);
    }
    CHECK(differ); /* different seeds gave different samples */
    eu_free(&log);
    llm_context_free(ctx);
}

static void test_stop_strings_and_tokens(void)
{
    llm_token prompt[30];
    make_prompt(prompt, 30, 21);
    llm_context *ctx = make_ctx(1024, 4, 64, 16, 0);
    eu_log log = {0};
    llm_request_id id;
    CHECK_EQ_INT(eu_submit_tokens(ctx, prompt, 30, 40, &id), LLM_OK);
    CHECK_EQ_INT(eu_run(ctx, &log, 1000), LLM_OK);
    eu_out *full = eu_find(&log, id, 0);
    CHECK(full->n_tokens >= 10);
    CHECK(full->text_len >= 10);
    /* a stop string made of the end of one piece and the start of the next (random
     * weights can generate NUL bytes: pick a place without) */
    char piece[64], stop[4] = {0};
    size_t end = 0;
    for (int k = 0; k + 1 < full->n_tokens && !stop[0]; k++) {
        end += (size_t)llm_token_to_piece(model, full->tokens[k], piece, sizeof piece, 0);
        if (k >= 2 && end >= 1 && end + 2 <= full->text_len &&
            memchr(full->text + end - 1, 0, 3) == NULL)
            memcpy(stop, full->text + end - 1, 3);
    }
    CHECK(stop[0] != 0);
    const char *first = NULL;
    for (size_t i = 0; i + 3 <= full->text_len && !first; i++)
        if (memcmp(full->text + i, stop, 3) == 0)
            first = full->text + i;
    CHECK(first != NULL);
    llm_request_params p;
    llm_request_params_init(&p);
    p.tokens = prompt;
    p.n_tokens = 30;
    p.max_tokens = 40;
    const char *stops[1] = {stop};
    p.stop = stops;
    p.n_stop = 1;
    llm_request_id id2;
    CHECK_MSG(llm_request_submit(ctx, &p, &id2) == LLM_OK, "%s", llm_context_last_error(ctx));
    CHECK_EQ_INT(eu_run(ctx, &log, 1000), LLM_OK);
    eu_out *cut = eu_find(&log, id2, 0);
    CHECK_EQ_INT(cut->finish_reason, LLM_FINISH_STOP);
    CHECK_EQ_INT(cut->text_len, (size_t)(first - full->text));
    CHECK(cut->text_len == 0 || memcmp(cut->text, full->text, cut->text_len) == 0);
    /* a stop token ends the completion before it */
    p.stop = NULL;
    p.n_stop = 0;
    p.stop_tokens = &full->tokens[7];
    p.n_stop_tokens = 1;
    llm_request_id id3;
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &id3), LLM_OK);
    CHECK_EQ_INT(eu_run(ctx, &log, 1000), LLM_OK);
    eu_out *st = eu_find(&log, id3, 0);
    CHECK_EQ_INT(st->finish_reason, LLM_FINISH_STOP);
    int first_at = 0;
    while (full->tokens[first_at] != full->tokens[7])
        first_at++;
    CHECK_EQ_INT(st->n_tokens, first_at);
    /* max_tokens ends with LENGTH, and text is the concatenation of the pieces */
    CHECK_EQ_INT(full->finish_reason, LLM_FINISH_LENGTH);
    CHECK_EQ_INT(full->n_generated, 40);
    CHECK(!full->bad_utf8_split);
    eu_free(&log);
    llm_context_free(ctx);
}

static void test_cancel_and_errors(void)
{
    llm_token prompt[50];
    make_prompt(prompt, 50, 31);
    llm_context *ctx = make_ctx(1024, 4, 16, 16, 0);
    eu_log log = {0};
    llm_request_id a, b;
    CHECK_EQ_INT(eu_submit_tokens(ctx, prompt, 50, 100, &a), LLM_OK);
    CHECK_EQ_INT(eu_submit_tokens(ctx, prompt, 20, 5, &b), LLM_OK);
    /* the context serves requests now: the low-level calls are refused */
    llm_batch batch;
    llm_batch_init(&batch);
    batch.n_tokens = 1;
    batch.tokens = prompt;
    CHECK_EQ_INT(llm_decode(ctx, &batch), LLM_ERR_INVALID_ARG);
    CHECK(strstr(llm_context_last_error(ctx), "requests") != NULL);
    CHECK_EQ_INT(llm_kv_seq_truncate(ctx, 0, 0), LLM_ERR_INVALID_ARG);
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(llm_step(ctx), LLM_OK);
    eu_drain(ctx, &log);
    CHECK_EQ_INT(llm_request_cancel(ctx, a), LLM_OK);
    eu_drain(ctx, &log);
    eu_out *oa = eu_find(&log, a, 0);
    CHECK_EQ_INT(oa->finish_reason, LLM_FINISH_CANCELLED);
    CHECK_EQ_INT(oa->n_final, 1);
    CHECK_EQ_INT(llm_request_cancel(ctx, a), LLM_ERR_NOT_FOUND);
    CHECK_EQ_INT(llm_request_cancel(ctx, 999999), LLM_ERR_NOT_FOUND);
    CHECK_EQ_INT(eu_run(ctx, &log, 1000), LLM_OK);
    CHECK_EQ_INT(eu_find(&log, b, 0)->finish_reason, LLM_FINISH_LENGTH);
    CHECK(blocks_all_free(ctx));
    CHECK_EQ_INT(llm_pending(ctx), 0);
    /* all finished: llm_decode works again */
    CHECK_EQ_INT(llm_decode(ctx, &batch), LLM_OK);
    llm_request_id c;
    CHECK_EQ_INT(eu_submit_tokens(ctx, prompt, 10, 1, &c), LLM_ERR_INVALID_ARG); /* seq 0 busy */
    llm_kv_clear(ctx);
    /* bad parameters */
    llm_request_params p;
    llm_request_params_init(&p);
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG); /* no input */
    p.tokens = prompt;
    p.n_tokens = 10;
    p.prompt = "x";
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG); /* two inputs */
    p.prompt = NULL;
    p.n = 5; /* n_seq_max is 4 */
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG);
    CHECK(strstr(llm_context_last_error(ctx), "completions") != NULL);
    p.n = 1;
    p.logprobs = 21;
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG);
    p.logprobs = 0;
    const char *empty[1] = {""};
    p.stop = empty;
    p.n_stop = 1;
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG);
    p.stop = NULL;
    p.n_stop = 0;
    llm_token bad = TINY_N_VOCAB;
    p.tokens = &bad;
    p.n_tokens = 1;
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG);
    static llm_token longp[1100];
    make_prompt(longp, 1100, 3);
    p.tokens = longp;
    p.n_tokens = 1100; /* more than n_ctx */
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_ERR_INVALID_ARG);
    CHECK_EQ_INT(llm_pending(ctx), 0);
    /* a prompt as text goes through the tokenizer */
    p.tokens = NULL;
    p.n_tokens = 0;
    p.prompt = "the cat sat on the mat";
    p.max_tokens = 3;
    CHECK_EQ_INT(llm_request_submit(ctx, &p, &c), LLM_OK);
    CHECK_EQ_INT(eu_run(ctx, &log, 100), LLM_OK);
    CHECK_EQ_INT(eu_find(&log, c, 0)->n_prompt,
                 llm_tokenize(model, p.prompt, strlen(p.prompt), NULL, 0,
                              LLM_TOKENIZE_ADD_SPECIAL | LLM_TOKENIZE_PARSE_SPECIAL) * -1);
    /* poll with too small a text buffer asks for more */
    CHECK_EQ_INT(llm_poll(ctx, NULL, 1, NULL, 0), INT32_MIN);
    eu_free(&log);
    llm_context_free(ctx);
}

/* Random arrivals, lengths, priorities, forks, seeds and cancels over a small cache; every
 * completion ends exactly once, uncancelled greedy ones equal their runs alone, and the
 * cache is empty at the end. */
static void test_random_property(void)
{
    enum { N = 60 };
    static req_spec r[N];
    static eu_out ref[N];
    make_specs(r, N, 4242);
    run_alone(r, N, ref);
    llm_context *ctx = make_ctx(160, 12, 24, 8, 0);
    eu_log log = {0};
    llm_request_id ids[N];
    int cancelled[N] = {0}, kind[N];
    int submitted = 0;
    rng_state = 777;
    for (int step = 0; step < 20000 && (submitted < N || llm_pending(ctx) > 0); step++) {
        if (submitted < N && rnd(3) == 0) {
            const int i = submitted++;
            llm_request_params p;
            llm_request_params_init(&p);
            p.tokens = r[i].prompt;
            p.n_tokens = r[i].n_prompt;
            p.max_tokens = r[i].max_tokens;
            p.priority = (int32_t)rnd(3);
            kind[i] = (int)rnd(4);
            llm_sampler_params sp;
            llm_sampler_params_init(&sp);
            sp.seed = rnd(1000);
            if (kind[i] == 1)
                p.sampling = &sp; /* sampled */
            if (kind[i] == 2)
                p.n = 2 + (int32_t)rnd(3), p.sampling = &sp; /* forks */
            if (kind[i] == 3)
                p.logprobs = 1 + (int32_t)rnd(LLM_MAX_LOGPROBS);
            CHECK_EQ_INT(llm_request_submit(ctx, &p, &ids[i]), LLM_OK);
        }
        if (submitted > 0 && rnd(25) == 0) {
            const int i = (int)rnd((uint32_t)submitted);
            if (llm_request_cancel(ctx, ids[i]) == LLM_OK)
                cancelled[i] = 1;
        }
        CHECK_EQ_INT(llm_step(ctx), LLM_OK);
        eu_drain(ctx, &log);
    }
    CHECK_EQ_INT(submitted, N);
    CHECK_EQ_INT(llm_pending(ctx), 0);
    CHECK(blocks_all_free(ctx));
    int compared = 0;
    for (int i = 0; i < log.n; i++) {
        CHECK_EQ_INT(log.outs[i].n_final, 1);
        CHECK(!log.outs[i].after_final);
        CHECK(!log.outs[i].bad_utf8_split);
        CHECK_EQ_INT(log.outs[i].error, LLM_OK);
        if (log.outs[i].finish_reason != LLM_FINISH_CANCELLED)
            CHECK_EQ_INT(log.outs[i].n_generated, log.outs[i].n_tokens);
    }
    for (int i = 0; i < N; i++) {
        eu_out *o = eu_find(&log, ids[i], 0);
        if (kind[i] == 0 || kind[i] == 3) {
            if (cancelled[i] && o->finish_reason == LLM_FINISH_CANCELLED) {
                CHECK(o->n_tokens <= ref[i].n_tokens);
                CHECK(memcmp(o->tokens, ref[i].tokens, (size_t)o->n_tokens * sizeof(llm_token)) == 0);
            } else {
                check_same(o, &ref[i], "random", i);
                compared++;
            }
        }
    }
    llm_engine_stats st = {.size = sizeof st};
    llm_engine_stats_get(ctx, &st);
    printf("     %d compared, %lld preemptions, %lld prefix hits, %lld steps\n", compared,
           (long long)st.n_preemptions, (long long)st.prefix_hits, (long long)st.n_steps);
    CHECK(st.n_preemptions > 0);
    CHECK(compared >= 10);
    eu_free(&log);
    llm_context_free(ctx);
}

/* ---- a backend that fails steps ------------------------------------------------------- *
 * The context's ops are swapped for a copy whose synchronize (the end of every forward
 * pass) reports a backend error on every fail_every-th call. The requests of a failed step
 * must end once each with LLM_EVENT_ERROR; every other request must go on as if nothing
 * happened (greedy ones equal to their runs alone), and every block must come back. */

static const struct llm_backend_ops *real_ops;
static struct llm_backend_ops failing_ops;
static int sync_calls, fail_every;

static llm_status failing_synchronize(llm_backend *be)
{
    const llm_status st = real_ops->synchronize(be);
    if (st == LLM_OK && fail_every && ++sync_calls % fail_every == 0)
        return llm__fail(LLM_ERR_BACKEND, "injected backend failure %d", sync_calls);
    return st;
}

static void backend_failures_case(int32_t cand)
{
    enum { N = 40 };
    static req_spec r[N];
    static eu_out ref[N];
    make_specs(r, N, 5151);
    run_alone(r, N, ref);
    llm_context *ctx = make_ctx(160, 8, 24, 8, 0);
    ctx->engine_cand = cand;
    real_ops = ctx->ops;
    failing_ops = *real_ops;
    failing_ops.synchronize = failing_synchronize;
    ctx->ops = &failing_ops;
    sync_calls = 0;
    fail_every = 40;
    eu_log log = {0};
    llm_request_id ids[N];
    int kind[N], submitted = 0, failed_steps = 0;
    rng_state = 99;
    for (int step = 0; step < 20000 && (submitted < N || llm_pending(ctx) > 0); step++) {
        if (submitted < N && rnd(2) == 0) {
            const int i = submitted++;
            llm_request_params p;
            llm_request_params_init(&p);
            p.tokens = r[i].prompt;
            p.n_tokens = r[i].n_prompt;
            p.max_tokens = r[i].max_tokens;
            kind[i] = (int)rnd(3);
            llm_sampler_params sp;
            llm_sampler_params_init(&sp);
            sp.seed = 5;
            if (kind[i] == 1)
                p.n = 2, p.sampling = &sp; /* forks */
            if (kind[i] == 2)
                p.logprobs = 3;
            CHECK_EQ_INT(llm_request_submit(ctx, &p, &ids[i]), LLM_OK);
        }
        const llm_status st = llm_step(ctx);
        CHECK(st == LLM_OK || st == LLM_ERR_BACKEND);
        failed_steps += st != LLM_OK;
        eu_drain(ctx, &log);
    }
    CHECK_EQ_INT(submitted, N);
    CHECK_EQ_INT(llm_pending(ctx), 0);
    CHECK(blocks_all_free(ctx));
    int errors = 0, compared = 0;
    for (int i = 0; i < log.n; i++) {
        CHECK_EQ_INT(log.outs[i].n_final, 1);
        CHECK(!log.outs[i].after_final);
        errors += log.outs[i].error != LLM_OK;
        if (log.outs[i].error != LLM_OK)
            CHECK_EQ_INT(log.outs[i].error, LLM_ERR_BACKEND);
    }
    for (int i = 0; i < N; i++) {
        eu_out *o = eu_find(&log, ids[i], 0);
        if (kind[i] != 1 && o->error == LLM_OK) {
            check_same(o, &ref[i], "beside failures", i);
            compared++;
        }
    }
    printf("     %d failed steps, %d completions ended by an error, %d others compared\n",
           failed_steps, errors, compared);
    CHECK(failed_steps > 0 && errors > 0 && compared >= 5);
    /* and the context works normally again */
    fail_every = 0;
    llm_request_id id;
    CHECK_EQ_INT(eu_submit_tokens(ctx, r[0].prompt, r[0].n_prompt, r[0].max_tokens, &id), LLM_OK);
    while (llm_pending(ctx) > 0)
        CHECK_EQ_INT(llm_step(ctx), LLM_OK);
    eu_drain(ctx, &log);
    check_same(eu_find(&log, id, 0), &ref[0], "after failures", 0);
    ctx->ops = real_ops;
    eu_free(&log);
    llm_context_free(ctx);
}

static void test_backend_failures(void)
{
    backend_failures_case(0);
    backend_failures_case(1); /* sampling from the backend's top_k candidates */
}

/* ---- sampling from candidates --------------------------------------------------------- *
 * On a backend that keeps logits in its own memory the engine brings back each row's 64
 * best logits (the top_k op) and samples from them when the chain allows it, reading the
 * whole row only when it does not (no top-k, top-k above 64, logprobs, an unforked request
 * of several completions); penalties with a history are applied by the backend first (the
 * penalize op). Here the CPU backend is made to take that path: every request, with every
 * kind of chain, must give exactly the tokens and log-probabilities of whole-row sampling. */
static struct llm_backend_ops counting_ops;
static int64_t top_k_rows, penalized;

static void counting_penalize(llm_backend *be, float *x, int64_t n, const llm_penalty *pen,
                              int64_t n_pen)
{
    penalized += n_pen;
    real_ops->penalize(be, x, n, pen, n_pen);
}

static void counting_top_k(llm_backend *be, int32_t *ids, float *vals, const float *x,
                           int64_t n_rows, int64_t n, int32_t k)
{
    top_k_rows += n_rows;
    real_ops->top_k(be, ids, vals, x, n_rows, n, k);
}

static void test_candidates_equal_rows(void)
{
    enum { N = 17 };
    static const struct {
        float temp;
        int32_t top_k;
        float top_p, min_p, rep, pres, freq;
        int n, lp;
    } cfg[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 0, 0, 1, 0},    {0.8f, 40, 0.95f, 0.05f, 1.0f, 0, 0, 1, 0},
        {1.5f, 64, 1.0f, 0.0f, 1.0f, 0, 0, 1, 0},   {1.2f, 8, 0.9f, 0.1f, 1.0f, 0, 0, 3, 0},
        {0.9f, 0, 0.95f, 0.0f, 1.0f, 0, 0, 1, 0},   {0.8f, 100, 1.0f, 0.0f, 1.0f, 0, 0, 1, 0},
        {0.8f, 40, 0.95f, 0.05f, 1.3f, 0, 0, 1, 0}, {0.0f, 0, 1.0f, 0.0f, 1.0f, 0, 0, 1, 3},
        {0.7f, 20, 1.0f, 0.0f, 1.0f, 0, 0, 2, 2},   {0.0f, 0, 1.0f, 0.0f, 1.2f, 0, 0, 1, 0},
        {2.0f, 64, 0.99f, 0.0f, 1.0f, 0, 0, 1, 0},  {0.6f, 1, 1.0f, 0.0f, 1.0f, 0, 0, 1, 0},
        /* presence and frequency penalties; with several completions; with logprobs */
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 1.5f, 0.5f, 1, 0}, {0.9f, 30, 1.0f, 0.0f, 1.1f, 0.4f, 0.3f, 2, 0},
        {0.0f, 0, 1.0f, 0.0f, 1.4f, 0.0f, 0.2f, 1, 2},
        /* top-p or min-p without top-k (from the candidates where they settle it) */
        {0.8f, 0, 0.3f, 0.0f, 1.2f, 0, 0, 1, 0},    {1.1f, 0, 1.0f, 0.3f, 1.0f, 0, 0, 1, 0},
    };
    static req_spec r[N];
    make_specs(r, N, 4242);
    top_k_rows = penalized = 0;
    eu_log logs[2] = {{0}, {0}};
    llm_request_id ids[2][N];
    for (int pass = 0; pass < 2; pass++) {
        llm_context *ctx = make_ctx(2048, 16, 48, 8, LLM_CONTEXT_NO_PREFIX_CACHE);
        ctx->engine_cand = pass == 0 ? -1 : 1;
        real_ops = ctx->ops;
        counting_ops = *real_ops;
        counting_ops.top_k = counting_top_k;
        counting_ops.penalize = counting_penalize;
        ctx->ops = &counting_ops;
        for (int i = 0; i < N; i++) {
            llm_sampler_params sp;
            llm_sampler_params_init(&sp);
            sp.temperature = cfg[i].temp;
            sp.top_k = cfg[i].top_k;
            sp.top_p = cfg[i].top_p;
            sp.min_p = cfg[i].min_p;
            sp.repeat_penalty = cfg[i].rep;
            sp.presence_penalty = cfg[i].pres;
            sp.frequency_penalty = cfg[i].freq;
            sp.seed = 300 + (uint64_t)i;
            llm_request_params p;
            llm_request_params_init(&p);
            p.tokens = r[i].prompt;
            p.n_tokens = r[i].n_prompt;
            p.max_tokens = 24;
            p.sampling = &sp;
            p.n = cfg[i].n;
            p.logprobs = cfg[i].lp;
            CHECK_EQ_INT(llm_request_submit(ctx, &p, &ids[pass][i]), LLM_OK);
        }
        CHECK_EQ_INT(eu_run(ctx, &logs[pass], 100000), LLM_OK);
        CHECK(blocks_all_free(ctx));
        if (pass == 0)
            CHECK_EQ_INT(top_k_rows + penalized, 0);
        ctx->ops = real_ops;
        llm_context_free(ctx);
    }
    int compared = 0, sampled_differ = 0;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < cfg[i].n; j++) {
            eu_out *a = eu_find(&logs[0], ids[0][i], j), *b = eu_find(&logs[1], ids[1][i], j);
            CHECK_MSG(a && b, "request %d completion %d missing", i, j);
            if (!a || !b)
                continue;
            check_same(b, a, "candidates", i);
            CHECK(memcmp(a->logprob, b->logprob, (size_t)a->n_tokens * sizeof(float)) == 0);
            CHECK(memcmp(a->top_tok, b->top_tok, sizeof a->top_tok) == 0);
            compared++;
            if (j > 0) /* forks draw differently from each other */
                sampled_differ |= memcmp(a->tokens, eu_find(&logs[0], ids[0][i], 0)->tokens,
                                         (size_t)a->n_tokens * sizeof(llm_token)) != 0;
        }
    }
    printf("     %d completions equal with and without candidates (%lld rows of candidates, "
           "%lld penalties applied by the backend)\n", compared, (long long)top_k_rows,
           (long long)penalized);
    CHECK(compared == 21 && sampled_differ && top_k_rows >= 100 && penalized >= 100);
    eu_free(&logs[0]);
    eu_free(&logs[1]);
}

/* ---- the worker thread under a storm of submit / poll / cancel from several threads ---- */

typedef struct storm_arg {
    llm_context *ctx;
    int thread;
    int submitted, finals, cancels_ok;
    eu_log log;
} storm_arg;

static pthread_mutex_t storm_mu = PTHREAD_MUTEX_INITIALIZER;
static eu_log storm_log;

static void *storm_main(void *p)
{
    storm_arg *a = p;
    uint64_t s = 1000 + (uint64_t)a->thread;
    llm_request_id mine[40];
    for (int i = 0; i < 40; i++) {
        llm_token prompt[64];
        const int32_t n = 2 + (int32_t)(tiny_rng(&s) % 60);
        make_prompt(prompt, n, tiny_rng(&s));
        llm_request_params q;
        llm_request_params_init(&q);
        q.tokens = prompt;
        q.n_tokens = n;
        q.max_tokens = 1 + (int32_t)(tiny_rng(&s) % 30);
        q.n = 1 + (int32_t)(tiny_rng(&s) % 2);
        if (llm_request_submit(a->ctx, &q, &mine[i]) == LLM_OK)
            a->submitted++;
        if (tiny_rng(&s) % 4 == 0 && llm_request_cancel(a->ctx, mine[tiny_rng(&s) % (uint64_t)(i + 1)]) == LLM_OK)
            a->cancels_ok++;
        /* poll from every thread: events of any request (poll and record under one lock:
         * else another thread could record a request's later events before these) */
        llm_event evs[8];
        char text[4096];
        pthread_mutex_lock(&storm_mu);
        int32_t got = llm_poll(a->ctx, evs, 8, text, sizeof text);
        for (int32_t k = 0; k < got; k++)
            eu_record(&storm_log, &evs[k]);
        pthread_mutex_unlock(&storm_mu);
        llm_engine_stats st = {.size = sizeof st};
        llm_engine_stats_get(a->ctx, &st);
        if (tiny_rng(&s) % 8 == 0)
            usleep(1000);
    }
    return NULL;
}

static void test_worker_storm(void)
{
    llm_context *ctx = make_ctx(256, 16, 32, 8, 0);
    CHECK_EQ_INT(llm_context_start_worker(ctx), LLM_OK);
    CHECK_EQ_INT(llm_context_start_worker(ctx), LLM_ERR_INVALID_ARG);
    CHECK_EQ_INT(llm_step(ctx), LLM_ERR_INVALID_ARG);
    enum { T = 4 };
    pthread_t th[T];
    storm_arg args[T];
    memset(args, 0, sizeof args);
    for (int i = 0; i < T; i++) {
        args[i].ctx = ctx;
        args[i].thread = i;
        pthread_create(&th[i], NULL, storm_main, &args[i]);
    }
    int submitted = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        submitted += args[i].submitted;
    }
    /* wait for the worker to finish everything (bounded) */
    for (int i = 0; i < 6000 && llm_pending(ctx) > 0; i++)
        usleep(5000);
    CHECK_EQ_INT(llm_pending(ctx), 0);
    llm_event evs[64];
    static char text[1 << 16];
    int32_t got;
    while ((got = llm_poll(ctx, evs, 64, text, sizeof text)) > 0)
        for (int32_t k = 0; k < got; k++)
            eu_record(&storm_log, &evs[k]);
    llm_context_stop_worker(ctx);
    CHECK_EQ_INT(submitted, T * 40);
    /* every completion of every request ended exactly once */
    int finals = 0;
    for (int i = 0; i < storm_log.n; i++) {
        CHECK_EQ_INT(storm_log.outs[i].n_final, 1);
        CHECK(!storm_log.outs[i].after_final);
        finals += storm_log.outs[i].n_final;
    }
    llm_engine_stats st = {.size = sizeof st};
    llm_engine_stats_get(ctx, &st);
    CHECK_EQ_INT(st.n_finished, finals);
    CHECK(blocks_all_free(ctx));
    /* the context can be stepped by hand again */
    llm_request_id id;
    llm_token p[3] = {1, 270, 271};
    CHECK_EQ_INT(eu_submit_tokens(ctx, p, 3, 2, &id), LLM_OK);
    eu_log log = {0};
    CHECK_EQ_INT(eu_run(ctx, &log, 100), LLM_OK);
    CHECK_EQ_INT(eu_find(&log, id, 0)->n_tokens, 2);
    eu_free(&log);
    eu_free(&storm_log);
    /* freeing a context with a running worker and pending requests is clean */
    CHECK_EQ_INT(llm_context_start_worker(ctx), LLM_OK);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(eu_submit_tokens(ctx, p, 3, 200, &id), LLM_OK);
    llm_context_free(ctx);
}

/* Events can go to a callback instead of the queue. */
static int cb_count;
static void on_event(const llm_event *ev, void *user)
{
    (void)user;
    cb_count += ev->type == LLM_EVENT_TOKEN;
}

static void test_callback(void)
{
    llm_context *ctx = make_ctx(256, 2, 32, 16, 0);
    CHECK_EQ_INT(llm_context_set_event_callback(ctx, on_event, NULL), LLM_OK);
    llm_token p[3] = {1, 270, 271};
    llm_request_id id;
    CHECK_EQ_INT(eu_submit_tokens(ctx, p, 3, 7, &id), LLM_OK);
    eu_log log = {0};
    CHECK_EQ_INT(eu_run(ctx, &log, 100), LLM_OK);
    CHECK_EQ_INT(cb_count, 7);
    CHECK_EQ_INT(log.n, 0); /* nothing queued */
    eu_free(&log);
    llm_context_free(ctx);
}

int main(void)
{
    /* The bit-exact properties tested here (a cached prefix gives the uncached logits,
     * concurrent equals alone) hold for this f32 model on the CPU, and where "auto" takes a
     * GPU, in the batch-invariant modes only (docs/architecture.md, "Batch invariance": the
     * CPU sends float prompts to oneDNN otherwise): asked for unless the caller chose. */
    setenv("LLM_CUDA_BATCH_INVARIANT", "1", 0);
    setenv("LLM_CPU_BATCH_INVARIANT", "1", 0);
    snprintf(model_path, sizeof model_path, "/tmp/libllm-tiny-%d.gguf", (int)getpid());
    tiny_shape sh = {.n_embd = 64, .n_layer = 2, .n_head = 2, .n_head_kv = 1, .n_ff = 128,
                     .n_ctx = 2048, .seed = 5};
    if (tiny_model_write(model_path, &sh) != 0) {
        fprintf(stderr, "cannot write %s\n", model_path);
        return 1;
    }
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.n_threads = 1;
    if (llm_model_load(model_path, &mp, &model) != LLM_OK) {
        fprintf(stderr, "load: %s\n", llm_last_error());
        remove(model_path);
        return 1;
    }
    /* LLM_TEST_ONLY=name runs one case (the ThreadSanitizer build runs the storm only) */
    const char *only = getenv("LLM_TEST_ONLY");
#define RUN(fn) do { if (!only || strcmp(only, #fn) == 0) TEST_RUN(fn); } while (0)
    RUN(test_stream);
    RUN(test_concurrent_equals_alone);
    RUN(test_preemption_equals_alone);
    RUN(test_kv_types);
    RUN(test_prefix_cache_same_logits);
    RUN(test_fork_n_completions);
    RUN(test_stop_strings_and_tokens);
    RUN(test_cancel_and_errors);
    RUN(test_callback);
    RUN(test_random_property);
    RUN(test_backend_failures);
    RUN(test_candidates_equal_rows);
    RUN(test_worker_storm);
#undef RUN
    llm_model_free(model);
    if (!getenv("KEEP_TINY")) remove(model_path);
    return test_summary();
}
