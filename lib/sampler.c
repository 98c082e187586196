/* sampler.c - the sampler chain: penalties, top-k, top-p, min-p, temperature, draw.
 *
 * The chain follows llama.cpp's semantics so that results can be compared with it:
 *  - penalties look at the last penalty_last_n accepted tokens; a token seen c > 0 times
 *    has its logit divided by repeat_penalty when positive (multiplied when not), then
 *    reduced by presence_penalty + c * frequency_penalty;
 *  - top-k keeps the k largest logits (ties: the lowest ids);
 *  - top-p keeps the shortest prefix, in descending order, whose softmax mass (at
 *    temperature 1, over the tokens top-k kept) reaches top_p;
 *  - min-p keeps the tokens whose probability is at least min_p times the largest one;
 *  - temperature divides the logits; the draw takes a token from their softmax using a
 *    private xoshiro256** generator, so one seed gives one sequence on every platform.
 * Temperature <= 0 skips the filters (none of them can remove the argmax) and returns the
 * argmax of the penalised logits, the lowest id among equals.
 *
 * Speed matters for 262144-token vocabularies, and nothing is allocated per call:
 *  - with top-k, one pass keeps a k-entry min-heap (most tokens are rejected by one
 *    comparison with its root), then only k entries are sorted;
 *  - without top-k, top-p avoids sorting the vocabulary: one pass sums the softmax mass
 *    into a fine histogram of distances from the maximum logit, which tells in which
 *    bucket the top-p prefix ends; only that bucket's tokens are sorted. min-p is a
 *    plain threshold on the logit (logit >= max + ln(min_p));
 *  - penalties touch only the history's tokens, in a copy of the logits.
 * NaN logits count as -inf (never drawn) and +inf as the largest finite float. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

/* Histogram for bounding top-p: buckets of width 1/64 nat over distances [0, 64) from the
 * maximum logit; the last bucket also takes everything farther (mass below e^-64). */
#define HIST_N 4096
#define HIST_SCALE 64.0f

typedef struct cand {
    float logit;
    llm_token id;
} cand;

struct llm_sampler {
    int32_t n_vocab;
    llm_sampler_params p; /* in effect, after defaults */
    int penalties;        /* any penalty active: keep the history */
    float *work;          /* [n_vocab] penalised copy of the logits (penalties only) */
    int32_t *counts;      /* [n_vocab] occurrences of each token in the history */
    llm_token *ring;      /* [penalty_last_n] the history, oldest at ring_head */
    int32_t ring_head, ring_len;
    int32_t cap;          /* entries of cand: top_k when set, else n_vocab */
    cand *cand;
    uint64_t rng[4];
    double hist[HIST_N]; /* top-p mass by distance from the maximum logit */
    int prepenalized;    /* the logits being sampled have the penalties applied already */
};

/* ---- random numbers: xoshiro256**, seeded through splitmix64 ------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t r[4], uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t r[4])
{
    uint64_t result = rotl(r[1] * 5, 7) * 9;
    uint64_t t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t r[4])
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- parameters ------------------------------------------------------------------- */

#define COVERS(sz, field)                                                                  \
    ((sz) >= offsetof(llm_sampler_params, field) + sizeof(((llm_sampler_params *)0)->field))

/* Reads the caller's params (only the fields its size covers), defaults the rest and the
 * zero fields whose zero is not documented as a setting, and validates. */
static llm_status read_params(const llm_sampler_params *in, llm_sampler_params *p)
{
    llm_sampler_params_init(p);
    if (in) {
        size_t sz = in->size;
        if (sz < sizeof(size_t))
            return llm__fail(LLM_ERR_INVALID_ARG,
                             "sampler: params->size is %zu (fill with llm_sampler_params_init)",
                             sz);
        if (sz > sizeof *p) {
            /* A newer caller: fields this library does not know must be zero (unset). */
            const unsigned char *b = (const unsigned char *)in;
            for (size_t i = sizeof *p; i < sz; i++)
                if (b[i])
                    return llm__fail(LLM_ERR_INVALID_ARG,
                                     "sampler: params has unknown non-zero fields at byte %zu "
                                     "(built against a newer libllm?)",
                                     i);
        }
        if (COVERS(sz, temperature))
            p->temperature = in->temperature;
        if (COVERS(sz, top_k))
            p->top_k = in->top_k;
        if (COVERS(sz, top_p))
            p->top_p = in->top_p == 0.0f ? 0.95f : in->top_p;
        if (COVERS(sz, min_p))
            p->min_p = in->min_p;
        if (COVERS(sz, repeat_penalty))
            p->repeat_penalty = in->repeat_penalty == 0.0f ? 1.0f : in->repeat_penalty;
        if (COVERS(sz, presence_penalty))
            p->presence_penalty = in->presence_penalty;
        if (COVERS(sz, frequency_penalty))
            p->frequency_penalty = in->frequency_penalty;
        if (COVERS(sz, penalty_last_n))
            p->penalty_last_n = in->penalty_last_n == 0 ? 64 : in->penalty_last_n;
        if (COVERS(sz, seed))
            p->seed = in->seed;
        p->size = sizeof *p;
    }
    /* Negative temperature, top_k and min_p are documented settings ("<= 0: off/greedy");
     * presence and frequency penalties may be negative (they then favour repetition, as
     * in the OpenAI API). Everything else negative, and every NaN, is a mistake. */
    if (isnan(p->temperature) || p->temperature == INFINITY)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: temperature %g is not a finite number",
                         (double)p->temperature);
    if (isnan(p->top_p) || p->top_p < 0.0f)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: top_p %g is not in [0, 1]",
                         (double)p->top_p);
    if (isnan(p->min_p) || p->min_p > 1.0f)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: min_p %g is not in [0, 1]",
                         (double)p->min_p);
    if (!isfinite(p->repeat_penalty) || p->repeat_penalty < 0.0f)
        return llm__fail(LLM_ERR_INVALID_ARG,
                         "sampler: repeat_penalty %g is not a positive number",
                         (double)p->repeat_penalty);
    if (!isfinite(p->presence_penalty))
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: presence_penalty %g is not finite",
                         (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: frequency_penalty %g is not finite",
                         (double)p->frequency_penalty);
    if (p->penalty_last_n < 0)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: penalty_last_n %d is negative",
                         (int)p->penalty_last_n);
    return LLM_OK;
}

/* ---- create / free ---------------------------------------------------------------- */

llm_status llm__sampler_create_n(int32_t n_vocab, const llm_sampler_params *params,
                                 llm_sampler **out)
{
    if (!out)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: out is NULL");
    *out = NULL;
    if (n_vocab < 1)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: vocabulary size %d", (int)n_vocab);
    llm_sampler_params p;
    llm_status st = read_params(params, &p);
    if (st != LLM_OK)
        return st;

    llm_sampler *s = llm__calloc(1, sizeof *s);
    if (!s)
        return llm__fail(LLM_ERR_NO_MEMORY, "sampler: out of memory");
    s->n_vocab = n_vocab;
    s->p = p;
    s->penalties = p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f ||
                   p.frequency_penalty != 0.0f;
    s->cap = p.top_k > 0 && p.top_k < n_vocab ? p.top_k : n_vocab;
    s->cand = llm__malloc((size_t)s->cap * sizeof *s->cand);
    int ok = s->cand != NULL;
    if (ok && s->penalties) {
        s->work = llm__malloc((size_t)n_vocab * sizeof *s->work);
        s->counts = llm__calloc((size_t)n_vocab, sizeof *s->counts);
        s->ring = llm__malloc((size_t)p.penalty_last_n * sizeof *s->ring);
        ok = s->work && s->counts && s->ring;
    }
    if (!ok) {
        llm_sampler_free(s);
        return llm__fail(LLM_ERR_NO_MEMORY, "sampler: out of memory (vocabulary of %d)",
                         (int)n_vocab);
    }
    rng_seed(s->rng, p.seed);
    *out = s;
    return LLM_OK;
}

llm_status llm_sampler_create(const llm_model *model, const llm_sampler_params *params,
                              llm_sampler **out)
{
    if (out)
        *out = NULL;
    if (!model)
        return llm__fail(LLM_ERR_INVALID_ARG, "sampler: model is NULL");
    return llm__sampler_create_n(llm_model_n_vocab(model), params, out);
}

void llm_sampler_free(llm_sampler *s)
{
    if (!s)
        return;
    llm__free(s->cand);
    llm__free(s->work);
    llm__free(s->counts);
    llm__free(s->ring);
    llm__free(s);
}

const llm_sampler_params *llm__sampler_params(const llm_sampler *s)
{
    return &s->p;
}

/* ---- history ---------------------------------------------------------------------- */

void llm_sampler_accept(llm_sampler *s, llm_token token)
{
    if (!s || token < 0 || token >= s->n_vocab || !s->penalties)
        return;
    int32_t cap = s->p.penalty_last_n;
    if (s->ring_len == cap) {
        s->counts[s->ring[s->ring_head]]--;
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % cap;
    } else {
        s->ring[(s->ring_head + s->ring_len) % cap] = token;
        s->ring_len++;
    }
    s->counts[token]++;
}

void llm_sampler_reset(llm_sampler *s)
{
    if (!s)
        return;
    for (int32_t i = 0; i < s->ring_len; i++)
        s->counts[s->ring[i]] = 0;
    s->ring_head = s->ring_len = 0;
    rng_seed(s->rng, s->p.seed);
}

/* The logits the filters see: the caller's, or a copy with the history's penalties. */
/* what a token seen c times loses after the repeat penalty (llm_penalty.sub) */
static float penalty_sub(int32_t c, float freq, float pres)
{
    return (float)c * freq + pres;
}

static const float *penalize(llm_sampler *s, const float *logits)
{
    if (!s->penalties || s->ring_len == 0 || s->prepenalized)
        return logits;
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *logits);
    const float rp = s->p.repeat_penalty, pres = s->p.presence_penalty;
    const float freq = s->p.frequency_penalty;
    /* Each distinct token once: its count is negated after use, then restored. */
    for (int32_t i = 0; i < s->ring_len; i++) {
        llm_token t = s->ring[i];
        int32_t c = s->counts[t];
        if (c <= 0)
            continue;
        float v = s->work[t];
        v = v > 0.0f ? v / rp : v * rp;
        s->work[t] = v - penalty_sub(c, freq, pres);
        s->counts[t] = -c;
    }
    for (int32_t i = 0; i < s->ring_len; i++) {
        llm_token t = s->ring[i];
        if (s->counts[t] < 0)
            s->counts[t] = -s->counts[t];
    }
    return s->work;
}

int32_t llm__sampler_penalties(llm_sampler *s, int32_t row, llm_penalty *out)
{
    if (!s->penalties)
        return 0;
    int32_t n = 0;
    for (int32_t i = 0; i < s->ring_len; i++) { /* each distinct token once, as penalize */
        llm_token t = s->ring[i];
        int32_t c = s->counts[t];
        if (c <= 0)
            continue;
        out[n].row = row;
        out[n].token = t;
        out[n].repeat = s->p.repeat_penalty;
        out[n].sub = penalty_sub(c, s->p.frequency_penalty, s->p.presence_penalty);
        n++;
        s->counts[t] = -c;
    }
    for (int32_t i = 0; i < s->ring_len; i++)
        if (s->counts[s->ring[i]] < 0)
            s->counts[s->ring[i]] = -s->counts[s->ring[i]];
    return n;
}

int32_t llm__sampler_penalty_max(const llm_sampler *s)
{
    return s->penalties ? s->ring_len : 0;
}

int llm__sampler_top_ok(const llm_sampler *s, int32_t k, int have_z)
{
    if (s->p.temperature <= 0.0f || (s->cap < s->n_vocab && s->cap <= k))
        return 1;
    return s->cap >= s->n_vocab &&
           ((s->p.top_p < 1.0f && have_z) || (s->p.top_p >= 1.0f && s->p.min_p > 0.0f));
}

int llm__sampler_wants_z(const llm_sampler *s)
{
    return s->p.temperature > 0.0f && s->cap >= s->n_vocab && s->p.top_p < 1.0f;
}

llm_token llm__sampler_sample_penalized(llm_sampler *s, const float *logits)
{
    s->prepenalized = 1;
    const llm_token t = llm_sampler_sample(s, logits);
    s->prepenalized = 0;
    return t;
}

void llm__sampler_penalized(llm_sampler *s, const float *logits, float *out)
{
    const float *x = penalize(s, logits);
    memcpy(out, x, (size_t)s->n_vocab * sizeof *out);
}

/* ---- filters ---------------------------------------------------------------------- */

static inline float sanitize(float v)
{
    if (v != v)
        return -INFINITY;
    return v > FLT_MAX ? FLT_MAX : v;
}

/* Argmax, lowest id among equals; -1 when every value is -inf or NaN. */
static llm_token argmax(const float *x, int32_t n)
{
    llm_token best = -1;
    float bv = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        float v = sanitize(x[i]);
        if (v > bv) {
            bv = v;
            best = i;
        }
    }
    return best;
}

/* Whether a ranks below b: a lower logit, or an equal one with a higher id. */
static inline int worse(const cand *a, const cand *b)
{
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void sift_down(cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, m = i;
        if (l < n && worse(&h[l], &h[m]))
            m = l;
        if (l + 1 < n && worse(&h[l + 1], &h[m]))
            m = l + 1;
        if (m == i)
            return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(cand *h, int32_t i)
{
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!worse(&h[i], &h[parent]))
            return;
        cand t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* The k best finite-or-+inf tokens into h (a min-heap on the way), unsorted. Tokens come
 * in id order, so an equal logit never displaces a kept one: ties keep the lowest ids. */
static int32_t select_top_k(const float *x, int32_t n_vocab, int32_t k, cand *h)
{
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        float v = sanitize(x[i]);
        if (v == -INFINITY)
            continue;
        if (n < k) {
            h[n].logit = v;
            h[n].id = i;
            sift_up(h, n++);
        } else if (v > h[0].logit) {
            h[0].logit = v;
            h[0].id = i;
            sift_down(h, n, 0);
        }
    }
    return n;
}

static int cmp_desc(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->logit != b->logit)
        return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int cmp_id(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* Length of the top-p prefix of c (sorted descending, c[0] holding the maximum) when the
 * whole distribution's mass relative to exp(max) is z. */
static int32_t top_p_prefix(const cand *c, int32_t n, float top_p, double z)
{
    const double target = (double)top_p * z;
    const float max = c[0].logit;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += expf(c[i].logit - max);
        if (cum >= target)
            return i + 1;
    }
    return n;
}

static inline int32_t hist_bucket(float d)
{
    return d < (float)HIST_N / HIST_SCALE ? (int32_t)(d * HIST_SCALE) : HIST_N - 1;
}

/* Top-p and min-p over the n > 0 top-k survivors in s->cand, sorted in descending order;
 * returns how many remain and the largest logit in *max_out. */
static int32_t filter_top_k(llm_sampler *s, int32_t n, float *max_out)
{
    cand *c = s->cand;
    if (s->p.top_p < 1.0f) {
        double z = 0.0;
        for (int32_t i = 0; i < n; i++)
            z += expf(c[i].logit - c[0].logit);
        n = top_p_prefix(c, n, s->p.top_p, z);
    }
    if (s->p.min_p > 0.0f) {
        const float thr = c[0].logit + logf(s->p.min_p);
        int32_t m = 1;
        while (m < n && c[m].logit >= thr)
            m++;
        n = m;
    }
    *max_out = c[0].logit;
    return n;
}

/* Runs penalties, top-k, top-p and min-p, leaving the survivors in s->cand; returns their
 * count (0 when no token has a finite logit) and their largest logit in *max_out. */
static int32_t filter(llm_sampler *s, const float *logits, float *max_out)
{
    const float *x = penalize(s, logits);
    const int32_t nv = s->n_vocab;
    const int top_p_on = s->p.top_p < 1.0f;
    const int min_p_on = s->p.min_p > 0.0f;
    cand *c = s->cand;
    int32_t n;

    if (s->cap < nv) {
        n = select_top_k(x, nv, s->cap, c);
        if (n == 0)
            return 0;
        qsort(c, (size_t)n, sizeof *c, cmp_desc);
        return filter_top_k(s, n, max_out);
    }

    float max = -INFINITY;
    for (int32_t i = 0; i < nv; i++) {
        float v = sanitize(x[i]);
        max = v > max ? v : max;
    }
    if (max == -INFINITY)
        return 0;
    *max_out = max;

    const float thr = min_p_on ? max + logf(s->p.min_p) : -INFINITY;
    if (!top_p_on) {
        n = 0;
        for (int32_t i = 0; i < nv; i++) {
            float v = sanitize(x[i]);
            if (v == -INFINITY || v < thr)
                continue;
            c[n].logit = v;
            c[n].id = i;
            n++;
        }
        return n;
    }

    /* Top-p without top-k. The histogram of softmax mass by distance from the maximum
     * finds the bucket `cut` where the cumulative mass reaches top_p: every token of a
     * nearer bucket is in the prefix, no token of a farther one is, and only the tokens
     * of bucket `cut` need sorting to find where in it the prefix ends. */
    double *hist = s->hist, z = 0.0;
    memset(hist, 0, HIST_N * sizeof *hist);
    for (int32_t i = 0; i < nv; i++) {
        float v = sanitize(x[i]);
        if (v == -INFINITY)
            continue;
        float e = expf(v - max);
        z += e;
        hist[hist_bucket(max - v)] += e;
    }
    const double target = (double)s->p.top_p * z;
    double cum = 0.0;
    int32_t cut = HIST_N - 1;
    for (int32_t b = 0; b < HIST_N; b++) {
        if (cum + hist[b] >= target) {
            cut = b;
            break;
        }
        cum += hist[b];
    }
    /* Nearer buckets fill c from the front, bucket `cut` from the back. */
    int32_t nb = 0;
    n = 0;
    for (int32_t i = 0; i < nv; i++) {
        float v = sanitize(x[i]);
        if (v == -INFINITY)
            continue;
        int32_t b = hist_bucket(max - v);
        if (b < cut && v >= thr) {
            c[n].logit = v;
            c[n].id = i;
            n++;
        } else if (b == cut) {
            nb++;
            c[nv - nb].logit = v;
            c[nv - nb].id = i;
        }
    }
    cand *cb = c + nv - nb;
    qsort(cb, (size_t)nb, sizeof *cb, cmp_desc);
    for (int32_t i = 0; i < nb && cb[i].logit >= thr; i++) {
        c[n++] = cb[i];
        cum += expf(cb[i].logit - max);
        if (cum >= target)
            break;
    }
    return n;
}

/* Turns the survivors' logits into unnormalised weights at the sampler's temperature,
 * in place; returns their sum. */
static double weigh(cand *c, int32_t n, float max, float temp)
{
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float w = expf((c[i].logit - max) / temp);
        c[i].logit = w;
        sum += w;
    }
    return sum;
}

/* ---- sampling --------------------------------------------------------------------- */

/* Draws one of the n survivors in s->cand (largest logit max) at the sampler's
 * temperature; -1 when n is 0. */
static llm_token draw(llm_sampler *s, int32_t n, float max)
{
    if (n <= 0)
        return -1;
    cand *c = s->cand;
    double sum = weigh(c, n, max, s->p.temperature);
    double u = rng_uniform(s->rng) * sum, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += c[i].logit;
        if (u < cum)
            return c[i].id;
    }
    return c[n - 1].id; /* if rounding leaves u at the very top */
}

/* Accepts tok, or reports that nothing could be drawn (tok < 0). */
static llm_token finish(llm_sampler *s, llm_token tok)
{
    if (tok < 0) {
        llm__fail(LLM_ERR_INVALID_ARG, "sampler: every logit is -inf or NaN");
        return -1;
    }
    llm_sampler_accept(s, tok);
    return tok;
}

llm_token llm_sampler_sample(llm_sampler *s, const float *logits)
{
    if (!s || !logits) {
        llm__fail(LLM_ERR_INVALID_ARG, "sampler: %s is NULL", s ? "logits" : "sampler");
        return -1;
    }
    llm_token tok;
    if (s->p.temperature <= 0.0f) {
        tok = argmax(penalize(s, logits), s->n_vocab);
    } else {
        float max = 0.0f;
        const int32_t n = filter(s, logits, &max);
        tok = draw(s, n, max);
    }
    return finish(s, tok);
}

/* Top-p and / or min-p without top-k, from the n valid of the row's k best logits (ids,
 * vals: descending) and z, the whole row's mass relative to its maximum: leaves in s->cand
 * exactly the survivors filter() would, in the order it leaves them, and returns how many;
 * -1 when the k do not settle it: the top-p prefix reaches past them, or the target lies
 * within TOP_P_MARGIN of a prefix sum (z comes from the backend, summed in another order,
 * its exponentials within a few ulps of these), or min-p alone may keep more than k. */
#define TOP_P_MARGIN 1e-4
static int32_t filter_from_top(llm_sampler *s, const llm_token *ids, const float *vals,
                               int32_t n, int32_t k, float z)
{
    const int top_p_on = s->p.top_p < 1.0f;
    const float max = vals[0];
    const float thr = s->p.min_p > 0.0f ? max + logf(s->p.min_p) : -INFINITY;
    int32_t j = 0; /* the top-p prefix (all when top-p is off) */
    if (top_p_on) {
        if (!(z > 0.0f) || z == INFINITY)
            return -1;
        const double target = (double)s->p.top_p * (double)z;
        double cum = 0.0, prev = 0.0;
        for (j = 0; j < n && cum < target; j++) {
            prev = cum;
            cum += expf(vals[j] - max);
        }
        /* not reached within the k, or too close to call either way */
        if (cum < target * (1.0 + TOP_P_MARGIN) || prev >= target * (1.0 - TOP_P_MARGIN))
            return -1;
    } else {
        while (j < n && vals[j] >= thr)
            j++;
        if (j == k)
            return -1; /* the k-th is kept: more may follow */
    }
    int32_t m = 0; /* min-p keeps a prefix of the prefix */
    while (m < j && vals[m] >= thr)
        m++;
    cand *c = s->cand;
    if (!top_p_on) { /* filter() keeps them in index order */
        for (int32_t i = 0; i < m; i++)
            c[i].logit = vals[i], c[i].id = ids[i];
        qsort(c, (size_t)m, sizeof *c, cmp_id);
        return m;
    }
    /* filter(): the tokens of buckets nearer than the last one's in index order, then that
     * bucket's in descending order */
    const int32_t cut = hist_bucket(max - vals[j - 1]);
    int32_t nn = 0;
    for (int32_t i = 0; i < m; i++)
        if (hist_bucket(max - vals[i]) < cut)
            c[nn].logit = vals[i], c[nn].id = ids[i], nn++;
    qsort(c, (size_t)nn, sizeof *c, cmp_id);
    for (int32_t i = 0; i < m; i++)
        if (hist_bucket(max - vals[i]) == cut)
            c[nn].logit = vals[i], c[nn].id = ids[i], nn++;
    return nn;
}

int llm__sampler_sample_top(llm_sampler *s, const llm_token *ids, const float *vals,
                            int32_t k, int penalized, const float *z, llm_token *out)
{
    if (s->penalties && s->ring_len > 0 && !penalized)
        return 0; /* penalties may lift a token from below the k into the top */
    int32_t n = 0; /* the valid prefix */
    while (n < k && ids[n] >= 0)
        n++;
    llm_token tok;
    if (s->p.temperature <= 0.0f) {
        tok = n > 0 ? ids[0] : -1;
    } else if (s->cap >= s->n_vocab) { /* no top-k: top-p or min-p may still settle it */
        if ((s->p.top_p >= 1.0f && s->p.min_p <= 0.0f) || (s->p.top_p < 1.0f && !z) || n == 0)
            return 0;
        const int32_t m = filter_from_top(s, ids, vals, n, k, z ? *z : 0.0f);
        if (m < 0)
            return 0;
        tok = draw(s, m, vals[0]);
    } else {
        if (s->cap > k)
            return 0;
        n = n < s->cap ? n : s->cap;
        for (int32_t i = 0; i < n; i++) {
            s->cand[i].logit = vals[i];
            s->cand[i].id = ids[i];
        }
        float max = 0.0f;
        if (n > 0)
            n = filter_top_k(s, n, &max);
        tok = draw(s, n, max);
    }
    *out = finish(s, tok);
    return 1;
}

int32_t llm__sampler_candidates(llm_sampler *s, const float *logits, llm_token *ids,
                                float *probs)
{
    if (s->p.temperature <= 0.0f) {
        llm_token t = argmax(penalize(s, logits), s->n_vocab);
        if (t < 0)
            return 0;
        ids[0] = t;
        probs[0] = 1.0f;
        return 1;
    }
    float max = 0.0f;
    int32_t n = filter(s, logits, &max);
    double sum = weigh(s->cand, n, max, s->p.temperature);
    for (int32_t i = 0; i < n; i++) {
        ids[i] = s->cand[i].id;
        probs[i] = (float)(s->cand[i].logit / sum);
    }
    return n;
}
