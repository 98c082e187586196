/* test_sampler.c - the sampler chain against brute-force references: greedy, seeding,
 * top-k/top-p/min-p candidate sets, penalties, the draw's distribution, params. */
#include <float.h>
#include <time.h>

#include "sampler.h"
#include "test.h"
#include "../unit/topk_ref.h"

static llm_sampler *make(int32_t n_vocab, float temp, int32_t top_k, float top_p, float min_p,
                         uint64_t seed)
{
    llm_sampler_params p;
    llm_sampler_params_init(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    llm_sampler *s = NULL;
    llm_status st = llm__sampler_create_n(n_vocab, &p, &s);
    CHECK_MSG(st == LLM_OK && s, "create: %s", llm_last_error());
    return s;
}

static void fill_random(float *x, int32_t n, unsigned long long *rs, float lo, float hi)
{
    for (int32_t i = 0; i < n; i++)
        x[i] = test_rand_f32(rs, lo, hi);
}

static int32_t ref_argmax(const float *x, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* ---- reference chain: full sort, double precision ----------------------------------- */

typedef struct {
    double l;
    int32_t id;
} ref_cand;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_cand *a = pa, *b = pb;
    if (a->l != b->l)
        return a->l > b->l ? -1 : 1;
    return a->id - b->id;
}

/* Marks keep[i] for the tokens that top-k, top-p and min-p keep. */
static void ref_filter(const float *x, int32_t n, int32_t top_k, float top_p, float min_p,
                       unsigned char *keep)
{
    ref_cand *c = malloc((size_t)n * sizeof *c);
    for (int32_t i = 0; i < n; i++) {
        c[i].l = x[i];
        c[i].id = i;
    }
    qsort(c, (size_t)n, sizeof *c, ref_cmp);
    int32_t m = top_k > 0 && top_k < n ? top_k : n;
    if (top_p < 1.0f) {
        double z = 0, cum = 0;
        for (int32_t i = 0; i < m; i++)
            z += exp(c[i].l - c[0].l);
        for (int32_t i = 0; i < m; i++) {
            cum += exp(c[i].l - c[0].l);
            if (cum >= top_p * z) {
                m = i + 1;
                break;
            }
        }
    }
    if (min_p > 0.0f) {
        int32_t k = 1;
        while (k < m && exp(c[k].l - c[0].l) >= min_p)
            k++;
        m = k;
    }
    for (int32_t i = 0; i < n; i++)
        keep[i] = 0;
    for (int32_t i = 0; i < m; i++)
        keep[c[i].id] = 1;
    free(c);
}

/* Compares the sampler's candidate set with the reference's; returns mismatches. */
static int compare_sets(llm_sampler *s, const float *x, int32_t n, int32_t top_k, float top_p,
                        float min_p, int32_t *n_kept)
{
    llm_token *ids = malloc((size_t)n * sizeof *ids);
    float *probs = malloc((size_t)n * sizeof *probs);
    unsigned char *keep = malloc((size_t)n), *got = calloc((size_t)n, 1);
    int32_t k = llm__sampler_candidates(s, x, ids, probs);
    ref_filter(x, n, top_k, top_p, min_p, keep);
    double sum = 0;
    for (int32_t i = 0; i < k; i++) {
        got[ids[i]] = 1;
        sum += probs[i];
    }
    int bad = fabs(sum - 1.0) > 1e-4;
    for (int32_t i = 0; i < n; i++)
        bad += keep[i] != got[i];
    *n_kept = k;
    free(ids);
    free(probs);
    free(keep);
    free(got);
    return bad;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_greedy(void)
{
    unsigned long long rs = 1;
    const int32_t n = 5000;
    float *x = malloc(n * sizeof *x);
    llm_sampler *s = make(n, 0.0f, 40, 0.95f, 0.05f, 1);
    for (int t = 0; t < 50; t++) {
        fill_random(x, n, &rs, -10, 10);
        CHECK_EQ_INT(llm_sampler_sample(s, x), ref_argmax(x, n));
    }
    /* Ties go to the lowest id; NaN is never picked; negative temperature is greedy too. */
    for (int32_t i = 0; i < n; i++)
        x[i] = -1.0f;
    x[17] = x[4000] = x[99] = 3.0f;
    x[5] = NAN;
    CHECK_EQ_INT(llm_sampler_sample(s, x), 17);
    llm_sampler_free(s);
    s = make(n, -1.0f, 0, 1.0f, 0.0f, 1);
    CHECK_EQ_INT(llm_sampler_sample(s, x), 17);
    /* Every logit -inf or NaN: no token. */
    for (int32_t i = 0; i < n; i++)
        x[i] = i % 2 ? -INFINITY : NAN;
    CHECK_EQ_INT(llm_sampler_sample(s, x), -1);
    CHECK(llm_last_error()[0] != '\0');
    CHECK_EQ_INT(llm_sampler_sample(s, NULL), -1);
    CHECK_EQ_INT(llm_sampler_sample(NULL, x), -1);
    llm_sampler_free(s);
    free(x);
}

static void draw_seq(uint64_t seed, const float *x, int32_t n, llm_token *out, int count)
{
    llm_sampler *s = make(n, 1.0f, 0, 1.0f, 0.0f, seed);
    for (int i = 0; i < count; i++)
        out[i] = llm_sampler_sample(s, x);
    llm_sampler_free(s);
}

static void test_seed(void)
{
    enum { N = 300, COUNT = 200 };
    unsigned long long rs = 7;
    float x[N];
    fill_random(x, N, &rs, -1, 1);
    llm_token a[COUNT], b[COUNT], c[COUNT];
    draw_seq(42, x, N, a, COUNT);
    draw_seq(42, x, N, b, COUNT);
    draw_seq(43, x, N, c, COUNT);
    CHECK(memcmp(a, b, sizeof a) == 0);
    int differ = 0;
    for (int i = 0; i < COUNT; i++)
        differ += a[i] != c[i];
    CHECK_MSG(differ > COUNT / 2, "only %d of %d draws differ", differ, COUNT);
    for (int i = 0; i < COUNT; i++)
        CHECK(a[i] >= 0 && a[i] < N);

    /* reset re-seeds: the same sequence again. */
    llm_sampler *s = make(N, 1.0f, 0, 1.0f, 0.0f, 42);
    for (int i = 0; i < 10; i++)
        llm_sampler_sample(s, x);
    llm_sampler_reset(s);
    int same = 1;
    for (int i = 0; i < COUNT; i++)
        same &= llm_sampler_sample(s, x) == a[i];
    CHECK(same);
    llm_sampler_free(s);

    /* The generator is part of the contract (same output on every platform): pin the
     * first draws of seed 42 so that a change of generator or of the draw is noticed. */
    float y[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    llm_token d[12];
    draw_seq(42, y, 4, d, 12);
    /* With four equal logits the draw is floor(4u): checked against an independent
     * implementation of splitmix64 + xoshiro256**. */
    static const llm_token pinned[12] = {0, 1, 2, 3, 3, 3, 2, 3, 3, 2, 2, 1};
    CHECK(memcmp(d, pinned, sizeof d) == 0);
}

static void test_top_k_1_is_greedy(void)
{
    unsigned long long rs = 3;
    const int32_t n = 20000;
    float *x = malloc(n * sizeof *x);
    llm_sampler *s = make(n, 1.5f, 1, 0.95f, 0.0f, 9);
    for (int t = 0; t < 100; t++) {
        fill_random(x, n, &rs, -3, 3);
        CHECK_EQ_INT(llm_sampler_sample(s, x), ref_argmax(x, n));
    }
    llm_sampler_free(s);
    free(x);
}

/* Draws many tokens and compares the counts with the softmax at the temperature:
 * Pearson's chi-square must stay below a bound that a correct sampler exceeds with
 * probability ~1e-4 (and the seed is fixed, so the test is deterministic). */
static double chi_square(int32_t top_k, float temp, int draws, double *bound)
{
    enum { N = 10 };
    static const float x[N] = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.25f, 1.75f, -2.0f};
    int32_t k = top_k > 0 ? top_k : N;
    unsigned char keep[N];
    ref_filter(x, N, k, 1.0f, 0.0f, keep);
    double p[N], z = 0;
    for (int i = 0; i < N; i++) {
        p[i] = keep[i] ? exp((double)x[i] / temp) : 0.0;
        z += p[i];
    }
    llm_sampler *s = make(N, temp, top_k, 1.0f, 0.0f, 1234);
    long count[N] = {0};
    for (int i = 0; i < draws; i++) {
        llm_token t = llm_sampler_sample(s, x);
        if (t >= 0 && t < N)
            count[t]++;
    }
    llm_sampler_free(s);
    double chi = 0;
    int dof = -1;
    for (int i = 0; i < N; i++) {
        if (!keep[i]) {
            CHECK_EQ_INT(count[i], 0);
            continue;
        }
        double e = draws * p[i] / z;
        chi += (count[i] - e) * (count[i] - e) / e;
        dof++;
    }
    /* chi-square quantile ~1e-4 upper tail: dof + 6*sqrt(2*dof) is a generous cover. */
    *bound = dof + 6.0 * sqrt(2.0 * dof) + 5.0;
    return chi;
}

static void test_distribution(void)
{
    double bound, chi;
    chi = chi_square(0, 1.0f, 200000, &bound);
    CHECK_MSG(chi < bound, "T=1: chi2 %.2f >= %.2f", chi, bound);
    chi = chi_square(0, 0.6f, 200000, &bound);
    CHECK_MSG(chi < bound, "T=0.6: chi2 %.2f >= %.2f", chi, bound);
    chi = chi_square(0, 2.5f, 200000, &bound);
    CHECK_MSG(chi < bound, "T=2.5: chi2 %.2f >= %.2f", chi, bound);
    chi = chi_square(4, 0.8f, 200000, &bound);
    CHECK_MSG(chi < bound, "top-k 4, T=0.8: chi2 %.2f >= %.2f", chi, bound);
    /* A wrong temperature must be caught: the draws at T=1 against a T=0.9 softmax. */
    enum { N = 10 };
    static const float x[N] = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.25f, 1.75f, -2.0f};
    llm_sampler *s = make(N, 1.0f, 0, 1.0f, 0.0f, 5);
    long count[N] = {0};
    for (int i = 0; i < 200000; i++)
        count[llm_sampler_sample(s, x)]++;
    llm_sampler_free(s);
    double z = 0, wrong = 0;
    for (int i = 0; i < N; i++)
        z += exp(x[i] / 0.9);
    for (int i = 0; i < N; i++) {
        double e = 200000 * exp(x[i] / 0.9) / z;
        wrong += (count[i] - e) * (count[i] - e) / e;
    }
    CHECK_MSG(wrong > 100, "chi2 against the wrong temperature only %.1f", wrong);
}

/* Top-p and min-p against the full-sort reference, on small and on 262144-token
 * vocabularies, with and without top-k (the paths without top-k avoid the full sort). */
static void test_filters_exact(void)
{
    unsigned long long rs = 11;
    const int32_t sizes[] = {50, 1000, 262144};
    static const float top_ps[] = {0.5f, 0.9f, 0.95f, 1.0f, 0.3f};
    static const float min_ps[] = {0.0f, 0.05f, 0.2f, 0.0f, 0.01f};
    static const int32_t top_ks[] = {0, 40, 0, 5, 1000};
    for (int si = 0; si < 3; si++) {
        int32_t n = sizes[si];
        float *x = malloc((size_t)n * sizeof *x);
        for (int trial = 0; trial < 10; trial++) {
            /* Peaked logits, like a language model's: a few high, a long tail. */
            fill_random(x, n, &rs, -8, 2);
            for (int j = 0; j < 30; j++)
                x[test_rand_u64(&rs) % (unsigned)n] = test_rand_f32(&rs, 2, 9);
            if (trial == 9) /* masked tokens are never candidates */
                for (int32_t i = 0; i < n; i += 3)
                    x[i] = -INFINITY;
            for (int c = 0; c < 5; c++) {
                llm_sampler *s = make(n, 0.7f, top_ks[c], top_ps[c], min_ps[c], 1);
                int32_t kept = 0;
                int bad = compare_sets(s, x, n, top_ks[c], top_ps[c], min_ps[c], &kept);
                CHECK_MSG(bad == 0, "n=%d trial %d: top_k %d top_p %.2f min_p %.2f: %d wrong",
                          n, trial, top_ks[c], top_ps[c], min_ps[c], bad);
                CHECK(kept >= 1);
                llm_sampler_free(s);
            }
        }
        free(x);
    }

    /* A hand-made case: probabilities 0.5, 0.2, 0.15, 0.1, 0.05. */
    float x[5];
    static const float pr[5] = {0.2f, 0.05f, 0.5f, 0.1f, 0.15f};
    for (int i = 0; i < 5; i++)
        x[i] = logf(pr[i]);
    llm_token ids[5];
    float probs[5];
    llm_sampler *s = make(5, 1.0f, 0, 0.8f, 0.0f, 1); /* 0.5+0.2 < 0.8 <= 0.5+0.2+0.15 */
    int32_t k = llm__sampler_candidates(s, x, ids, probs);
    CHECK_EQ_INT(k, 3);
    int mask = 0;
    for (int i = 0; i < k; i++) {
        mask |= 1 << ids[i];
        if (ids[i] == 2) /* renormalised over the three */
            CHECK(fabsf(probs[i] - 0.5f / 0.85f) < 1e-5f);
    }
    CHECK_EQ_INT(mask, (1 << 2) | (1 << 0) | (1 << 4));
    llm_sampler_free(s);
    s = make(5, 1.0f, 0, 1.0f, 0.25f, 1); /* keep p >= 0.125: 0.5, 0.2, 0.15 */
    k = llm__sampler_candidates(s, x, ids, probs);
    CHECK_EQ_INT(k, 3);
    mask = 0;
    for (int i = 0; i < k; i++)
        mask |= 1 << ids[i];
    CHECK_EQ_INT(mask, (1 << 2) | (1 << 0) | (1 << 4));
    llm_sampler_free(s);
    /* min-p = 1 keeps only the maximum; top-p tiny keeps only the maximum. */
    s = make(5, 1.0f, 0, 1.0f, 1.0f, 1);
    CHECK_EQ_INT(llm__sampler_candidates(s, x, ids, probs), 1);
    CHECK_EQ_INT(ids[0], 2);
    llm_sampler_free(s);
    s = make(5, 1.0f, 0, 0.01f, 0.0f, 1);
    CHECK_EQ_INT(llm__sampler_candidates(s, x, ids, probs), 1);
    CHECK_EQ_INT(ids[0], 2);
    llm_sampler_free(s);
}

static void test_penalties(void)
{
    enum { N = 10 };
    llm_sampler_params p;
    llm_sampler_params_init(&p);
    p.temperature = 0.0f;
    p.repeat_penalty = 1.5f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.penalty_last_n = 3;
    llm_sampler *s = NULL;
    CHECK_EQ_INT(llm__sampler_create_n(N, &p, &s), LLM_OK);
    float x[N] = {0.5f, 2.0f, -1.0f, 3.0f, 0.0f, 1.0f, -2.0f, 2.5f, 1.5f, -0.5f};
    float y[N];
    llm__sampler_penalized(s, x, y);
    CHECK(memcmp(x, y, sizeof x) == 0); /* empty history: unchanged */

    llm_sampler_accept(s, 3);
    llm_sampler_accept(s, 1);
    llm_sampler_accept(s, 2);
    llm_sampler_accept(s, 1); /* window of 3: token 3 drops out; now {1, 2, 1} */
    llm_sampler_accept(s, -5); /* ignored */
    llm_sampler_accept(s, N);  /* ignored */
    llm__sampler_penalized(s, x, y);
    CHECK(fabsf(y[1] - (2.0f / 1.5f - (2 * 0.25f + 0.5f))) < 1e-6f);
    CHECK(fabsf(y[2] - (-1.0f * 1.5f - (0.25f + 0.5f))) < 1e-6f);
    CHECK(y[3] == 3.0f);
    for (int i = 4; i < N; i++)
        CHECK(y[i] == x[i]);
    CHECK(y[0] == x[0]);
    /* The argmax is still 3 (not penalised). Penalise it and the argmax moves to 7. */
    CHECK_EQ_INT(llm_sampler_sample(s, x), 3); /* history now {2, 1, 3} */
    llm__sampler_penalized(s, x, y);
    CHECK(fabsf(y[3] - (3.0f / 1.5f - 0.75f)) < 1e-6f);
    CHECK(fabsf(y[1] - (2.0f / 1.5f - 0.75f)) < 1e-6f);
    CHECK_EQ_INT(llm_sampler_sample(s, x), 7);

    /* reset clears the history. */
    llm_sampler_reset(s);
    llm__sampler_penalized(s, x, y);
    CHECK(memcmp(x, y, sizeof x) == 0);
    llm_sampler_free(s);

    /* Defaults have no penalties: history changes nothing. */
    s = make(N, 0.0f, 0, 1.0f, 0.0f, 1);
    llm_sampler_accept(s, 3);
    llm__sampler_penalized(s, x, y);
    CHECK(memcmp(x, y, sizeof x) == 0);
    CHECK_EQ_INT(llm_sampler_sample(s, x), 3);
    llm_sampler_free(s);
}

/* Sampling from a row's top 64 (what the request engine does on a GPU) draws exactly what
 * sampling from the whole row draws, for every chain that depends only on those 64; and
 * refuses, changing nothing, for those that do not. */
static void test_sample_top(void)
{
    enum { N = 5000, K = 64, STEPS = 40 };
    static const struct { float temp; int32_t top_k; float top_p, min_p, rep; int ok; } cfg[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 1},     {0.0f, 40, 0.95f, 0.05f, 1.0f, 1},
        {0.8f, 40, 0.95f, 0.05f, 1.0f, 1},  {1.5f, 64, 1.0f, 0.0f, 1.0f, 1},
        {0.7f, 1, 0.9f, 0.0f, 1.0f, 1},     {2.0f, 10, 0.5f, 0.2f, 1.0f, 1},
        {0.8f, 0, 0.95f, 0.05f, 1.0f, 0},   {0.8f, 65, 1.0f, 0.0f, 1.0f, 0},
        {0.0f, 0, 1.0f, 0.0f, 1.3f, 0},     {0.8f, 40, 0.95f, 0.05f, 1.1f, 0},
    };
    unsigned long long rs = 77;
    float *x = malloc(N * sizeof(float));
    int32_t ids[K];
    float vals[K];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        llm_sampler_params p;
        llm_sampler_params_init(&p);
        p.temperature = cfg[c].temp;
        p.top_k = cfg[c].top_k;
        p.top_p = cfg[c].top_p;
        p.min_p = cfg[c].min_p;
        p.repeat_penalty = cfg[c].rep;
        p.seed = 1000 + c;
        llm_sampler *full = NULL, *top = NULL;
        CHECK_EQ_INT(llm__sampler_create_n(N, &p, &full), LLM_OK);
        CHECK_EQ_INT(llm__sampler_create_n(N, &p, &top), LLM_OK);
        int same = 1, refused = 0;
        for (int step = 0; step < STEPS; step++) {
            topk_fill(x, N, step % 6 == 3 ? 0 : step, &rs); /* not the all-equal row */
            topk_ref(x, N, K, ids, vals);
            const llm_token want = llm_sampler_sample(full, x);
            llm_token got = -9;
            if (!llm__sampler_sample_top(top, ids, vals, K, 0, NULL, &got)) {
                refused++;
                got = llm_sampler_sample(top, x); /* as the engine falls back */
            }
            same &= got == want;
        }
        /* penalties refuse only once there is a history: every step but the first */
        const int want_refused = cfg[c].ok ? 0 : cfg[c].rep != 1.0f ? STEPS - 1 : STEPS;
        CHECK_MSG(same, "config %zu: a different token", c);
        CHECK_MSG(refused == want_refused, "config %zu: refused %d of %d steps, expected %d", c,
                  refused, STEPS, want_refused);
        llm_sampler_free(full);
        llm_sampler_free(top);
    }
    /* a row with no valid value: -1 with an error, as from the whole row */
    llm_sampler *s = make(N, 0.8f, 40, 0.95f, 0.05f, 1);
    for (int i = 0; i < K; i++)
        ids[i] = -1, vals[i] = -INFINITY;
    llm_token t = 0;
    CHECK_EQ_INT(llm__sampler_sample_top(s, ids, vals, K, 0, NULL, &t), 1);
    CHECK_EQ_INT(t, -1);
    llm_sampler_free(s);
    free(x);
}

/* Top-p (and min-p) without top-k from a row's 64 best and its mass z (the backend's
 * row_sumexp, the CPU's here): where the 64 settle the prefix, the draw is exactly the
 * whole row's; where they do not (a flat row), the sampler refuses and the whole row is
 * used. Both must happen over the steps. */
static void test_top_p_from_top(void)
{
    enum { N = 4000, K = 64, STEPS = 80 };
    static const struct { float temp, top_p, min_p; } cfg[] = {
        {0.8f, 0.9f, 0.0f}, {1.0f, 0.5f, 0.0f}, {1.3f, 0.95f, 0.05f}, {0.7f, 1.0f, 0.1f},
        {0.9f, 0.7f, 0.3f},
    };
    const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
    llm_backend *be = NULL;
    llm_backend_config bc = {.n_threads = 1};
    CHECK_EQ_INT(cpu->create(&bc, &be), LLM_OK);
    unsigned long long rs = 4242;
    float *x = malloc(N * sizeof(float));
    int32_t ids[K];
    float vals[K];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        llm_sampler *full = make(N, cfg[c].temp, 0, cfg[c].top_p, cfg[c].min_p, 900 + c);
        llm_sampler *top = make(N, cfg[c].temp, 0, cfg[c].top_p, cfg[c].min_p, 900 + c);
        CHECK(llm__sampler_top_ok(top, K, 1));
        int same = 1, taken = 0, refused = 0;
        for (int step = 0; step < STEPS; step++) {
            /* peaked rows (a few to a few dozen tokens well above the rest; ties among
             * them at times) and, every fourth step, a flat one */
            const int peak = 1 + step % 40;
            for (int i = 0; i < N; i++)
                x[i] = test_rand_f32(&rs, -4.0f, 0.0f);
            if (step % 4 != 3)
                for (int i = 0; i < peak; i++)
                    x[(i * 101 + step) % N] = step % 5 == 0 ? 9.0f : test_rand_f32(&rs, 6.0f, 12.0f);
            if (step % 7 == 2)
                x[17] = NAN, x[18] = -INFINITY;
            float z = 0.0f;
            cpu->row_sumexp(be, &z, x, 1, N);
            topk_ref(x, N, K, ids, vals);
            const llm_token want = llm_sampler_sample(full, x);
            llm_token got = -9;
            if (llm__sampler_sample_top(top, ids, vals, K, 0, &z, &got)) {
                taken++;
            } else {
                refused++;
                got = llm_sampler_sample(top, x);
            }
            same &= got == want;
        }
        CHECK_MSG(same, "config %zu: a different token", c);
        CHECK_MSG(taken > 0 && refused > 0, "config %zu: %d steps from the 64, %d refused", c,
                  taken, refused);
        llm_sampler_free(full);
        llm_sampler_free(top);
    }
    /* the sum itself: the sampler's rules for NaN and infinities */
    const float row[6] = {1.0f, NAN, -INFINITY, 0.0f, 1.0f, -1.0f};
    float z = -1.0f;
    cpu->row_sumexp(be, &z, row, 1, 6);
    CHECK(fabsf(z - (2.0f + expf(-1.0f) + expf(-2.0f))) < 1e-6f);
    const float none[2] = {NAN, -INFINITY}, inf[3] = {INFINITY, 0.0f, INFINITY};
    cpu->row_sumexp(be, &z, none, 1, 2);
    CHECK(z == 0.0f);
    cpu->row_sumexp(be, &z, inf, 1, 3);
    CHECK(z == 2.0f);
    cpu->destroy(be);
    free(x);
}

/* Penalties applied by a backend's penalize op (the CPU backend's here) before its top_k,
 * as the request engine does on a GPU: the entries llm__sampler_penalties gives, applied
 * to the row, give exactly the logits the sampler's own penalties give, and sampling from
 * the penalised row's top 64 draws what sampling from the whole raw row draws, at every
 * step (the history grows with each draw). */
static void test_penalties_on_backend(void)
{
    enum { N = 3000, K = 64, STEPS = 60 };
    static const struct { float temp, rep, pres, freq; int32_t top_k, last_n; } cfg[] = {
        {0.0f, 1.3f, 0.0f, 0.0f, 0, 64},  {0.8f, 1.1f, 0.5f, 0.2f, 40, 64},
        {1.2f, 1.0f, 1.5f, 0.0f, 64, 16}, {0.0f, 0.8f, -0.5f, 0.3f, 0, 32},
        {0.7f, 1.0f, 0.0f, 2.0f, 8, 64},
    };
    const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
    llm_backend *be = NULL;
    llm_backend_config bc = {.n_threads = 1};
    CHECK_EQ_INT(cpu->create(&bc, &be), LLM_OK);
    unsigned long long rs = 91;
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    float *z = malloc(N * sizeof(float));
    llm_penalty pen[64];
    int32_t ids[K];
    float vals[K];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        llm_sampler_params p;
        llm_sampler_params_init(&p);
        p.temperature = cfg[c].temp;
        p.top_k = cfg[c].top_k;
        p.top_p = 1.0f;
        p.min_p = 0.0f;
        p.repeat_penalty = cfg[c].rep;
        p.presence_penalty = cfg[c].pres;
        p.frequency_penalty = cfg[c].freq;
        p.penalty_last_n = cfg[c].last_n;
        p.seed = 500 + c;
        llm_sampler *full = NULL, *top = NULL;
        CHECK_EQ_INT(llm__sampler_create_n(N, &p, &full), LLM_OK);
        CHECK_EQ_INT(llm__sampler_create_n(N, &p, &top), LLM_OK);
        int same = 1, same_logits = 1, most = 0;
        for (int step = 0; step < STEPS; step++) {
            /* a row whose few large values the penalties keep hitting */
            topk_fill(x, N, step + 1, &rs);
            for (int i = 0; i < 12; i++)
                x[(i * 37) % N] += 6.0f;
            llm__sampler_penalized(full, x, z);
            memcpy(y, x, N * sizeof(float));
            CHECK(llm__sampler_penalty_max(top) <= 64);
            const int32_t n = llm__sampler_penalties(top, 0, pen);
            most = n > most ? n : most;
            cpu->penalize(be, y, N, pen, n);
            same_logits &= memcmp(y, z, N * sizeof(float)) == 0;
            topk_ref(y, N, K, ids, vals);
            const llm_token want = llm_sampler_sample(full, x);
            llm_token got = -9;
            CHECK(llm__sampler_top_ok(top, K, 0));
            CHECK(llm__sampler_sample_top(top, ids, vals, K, 1, NULL, &got));
            same &= got == want;
        }
        CHECK_MSG(same_logits, "config %zu: the backend's penalties differ", c);
        CHECK_MSG(same, "config %zu: a different token", c);
        CHECK_MSG(most > 1, "config %zu: at most %d penalties", c, most);
        llm_sampler_free(full);
        llm_sampler_free(top);
    }
    cpu->destroy(be);
    free(x), free(y), free(z);
}

static llm_status try_params(const llm_sampler_params *p)
{
    llm_sampler *s = (llm_sampler *)&s; /* must be reset to NULL on failure */
    llm__clear_error();
    llm_status st = llm__sampler_create_n(100, p, &s);
    if (st != LLM_OK) {
        CHECK(s == NULL);
        CHECK(llm_last_error()[0] != '\0');
    }
    llm_sampler_free(st == LLM_OK ? s : NULL);
    return st;
}

static void test_invalid_params(void)
{
    llm_sampler_params p;
#define BAD(field, value)                                                                  \
    do {                                                                                   \
        llm_sampler_params_init(&p);                                                       \
        p.field = value;                                                                   \
        CHECK_EQ_INT(try_params(&p), LLM_ERR_INVALID_ARG);                                 \
    } while (0)
    BAD(temperature, NAN);
    BAD(temperature, INFINITY);
    BAD(top_p, NAN);
    BAD(top_p, -0.5f);
    BAD(min_p, NAN);
    BAD(min_p, 1.5f);
    BAD(repeat_penalty, NAN);
    BAD(repeat_penalty, -1.0f);
    BAD(repeat_penalty, INFINITY);
    BAD(presence_penalty, NAN);
    BAD(frequency_penalty, NAN);
    BAD(penalty_last_n, -1);
    BAD(size, 0);
#undef BAD
    /* Documented settings are accepted. */
    llm_sampler_params_init(&p);
    p.temperature = -1.0f;
    p.top_k = -3;
    p.min_p = -1.0f;
    p.top_p = 7.0f;
    p.presence_penalty = -0.5f;
    CHECK_EQ_INT(try_params(&p), LLM_OK);
    CHECK_EQ_INT(try_params(NULL), LLM_OK);

    llm_sampler *s = (llm_sampler *)&s;
    CHECK_EQ_INT(llm__sampler_create_n(0, NULL, &s), LLM_ERR_INVALID_ARG);
    CHECK(s == NULL);
    CHECK_EQ_INT(llm__sampler_create_n(10, NULL, NULL), LLM_ERR_INVALID_ARG);
    CHECK_EQ_INT(llm_sampler_create(NULL, NULL, &s), LLM_ERR_INVALID_ARG);
    CHECK(s == NULL);
    llm_sampler_free(NULL);
    llm_sampler_reset(NULL);
    llm_sampler_accept(NULL, 1);

    /* A newer caller's larger struct: a zero tail is fine, a non-zero one is refused. */
    struct {
        llm_sampler_params p;
        uint64_t future[2];
    } big;
    memset(&big, 0, sizeof big);
    llm_sampler_params_init(&big.p);
    big.p.size = sizeof big;
    CHECK_EQ_INT(try_params(&big.p), LLM_OK);
    big.future[1] = 1;
    CHECK_EQ_INT(try_params(&big.p), LLM_ERR_INVALID_ARG);
}

static void test_old_caller(void)
{
    /* An old binary whose struct ended after min_p: the rest, even garbage beyond its
     * size, must be ignored and defaulted. */
    llm_sampler_params p;
    memset(&p, 0xff, sizeof p); /* NaN floats, -1 ints, as garbage */
    p.size = offsetof(llm_sampler_params, min_p) + sizeof p.min_p;
    p.temperature = 0.5f;
    p.top_k = 7;
    p.top_p = 0.5f;
    p.min_p = 0.1f;
    llm_sampler *s = NULL;
    CHECK_EQ_INT(llm__sampler_create_n(100, &p, &s), LLM_OK);
    if (s) {
        const llm_sampler_params *q = llm__sampler_params(s);
        CHECK(q->temperature == 0.5f && q->top_k == 7 && q->top_p == 0.5f && q->min_p == 0.1f);
        CHECK(q->repeat_penalty == 1.0f && q->presence_penalty == 0.0f);
        CHECK(q->frequency_penalty == 0.0f && q->penalty_last_n == 64 && q->seed == 0);
        float x[100];
        unsigned long long rs = 5;
        fill_random(x, 100, &rs, -2, 2);
        llm_token t = llm_sampler_sample(s, x);
        CHECK(t >= 0 && t < 100);
    }
    llm_sampler_free(s);

    /* Only the size field: everything defaults (init's values). */
    llm_sampler_params tiny;
    memset(&tiny, 0xff, sizeof tiny);
    tiny.size = sizeof(size_t);
    CHECK_EQ_INT(llm__sampler_create_n(100, &tiny, &s), LLM_OK);
    if (s) {
        const llm_sampler_params *q = llm__sampler_params(s);
        CHECK(q->temperature == 0.8f && q->top_k == 40 && q->top_p == 0.95f);
        CHECK(q->min_p == 0.05f && q->penalty_last_n == 64);
    }
    llm_sampler_free(s);

    /* Zero where zero is not a documented setting means the default. */
    llm_sampler_params z;
    memset(&z, 0, sizeof z);
    z.size = sizeof z;
    CHECK_EQ_INT(llm__sampler_create_n(100, &z, &s), LLM_OK);
    if (s) {
        const llm_sampler_params *q = llm__sampler_params(s);
        CHECK(q->temperature == 0.0f && q->top_k == 0 && q->min_p == 0.0f);
        CHECK(q->top_p == 0.95f && q->repeat_penalty == 1.0f && q->penalty_last_n == 64);
    }
    llm_sampler_free(s);
}

typedef struct {
    float l;
    int32_t id;
} cand_sort;

static int sort_cmp(const void *pa, const void *pb)
{
    const cand_sort *a = pa, *b = pb;
    if (a->l != b->l)
        return a->l > b->l ? -1 : 1;
    return a->id - b->id;
}

/* A 262144-token vocabulary must sample fast with every configuration. */
static void test_speed(void)
{
    const int32_t n = 262144;
    float *x = malloc((size_t)n * sizeof *x);
    unsigned long long rs = 99;
    fill_random(x, n, &rs, -10, 5);
    for (int j = 0; j < 50; j++)
        x[test_rand_u64(&rs) % (unsigned)n] = test_rand_f32(&rs, 5, 15);
    /* The yardstick, measured now so that a loaded machine slows both alike: sorting the
     * whole vocabulary, which the sampler must avoid. */
    cand_sort *srt = malloc((size_t)n * sizeof *srt);
    for (int32_t i = 0; i < n; i++) {
        srt[i].l = x[i];
        srt[i].id = i;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qsort(srt, (size_t)n, sizeof *srt, sort_cmp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sort_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("     262144 vocab, full sort: %.3f ms\n", sort_ms);
    free(srt);
    static const int32_t ks[] = {40, 0, 0, 0};
    static const float ps[] = {0.95f, 0.95f, 1.0f, 1.0f};
    static const float ms[] = {0.05f, 0.0f, 0.05f, 0.0f};
    for (int c = 0; c < 4; c++) {
        llm_sampler_params p;
        llm_sampler_params_init(&p);
        p.top_k = ks[c];
        p.top_p = ps[c];
        p.min_p = ms[c];
        p.repeat_penalty = 1.1f;
        llm_sampler *s = NULL;
        CHECK_EQ_INT(llm__sampler_create_n(n, &p, &s), LLM_OK);
        if (!s)
            continue;
        const int reps = 50;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < reps; r++)
            CHECK(llm_sampler_sample(s, x) >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms_per = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / reps;
        printf("     262144 vocab, top_k %d top_p %.2f min_p %.2f: %.3f ms/sample\n", ks[c],
               ps[c], ms[c], ms_per);
        /* Typically 10-50 times faster than the sort with optimisation, ~4 times at -O0
         * (qsort itself stays optimised); a sampler that sorted would take longer than
         * the sort alone, so half of it still tells the two apart. */
        CHECK_MSG(ms_per < sort_ms / 2, "%.2f ms per sample, sort %.2f ms", ms_per, sort_ms);
        llm_sampler_free(s);
    }
    free(x);
}

int main(void)
{
    TEST_RUN(test_greedy);
    TEST_RUN(test_seed);
    TEST_RUN(test_top_k_1_is_greedy);
    TEST_RUN(test_distribution);
    TEST_RUN(test_filters_exact);
    TEST_RUN(test_penalties);
    TEST_RUN(test_sample_top);
    TEST_RUN(test_penalties_on_backend);
    TEST_RUN(test_top_p_from_top);
    TEST_RUN(test_invalid_params);
    TEST_RUN(test_old_caller);
    TEST_RUN(test_speed);
    return test_summary();
}
