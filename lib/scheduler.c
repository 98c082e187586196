/* scheduler.c - the request engine: requests, the scheduler that builds one batch per
 * step (continuous batching with chunked prefill over the paged KV cache, prefix caching,
 * preemption by recompute), sampling, text release, events, and the worker thread.
 *
 * State is split in two. What any thread may touch (the inbox of new requests, pending
 * cancels, the event queue, counters) lives under `mu`; what only the stepping thread
 * touches (waiting and running requests, the KV cache, samplers) needs no lock. A step
 * starts by taking the inbox and the cancels, so that submit, cancel and poll never wait
 * for a step.
 *
 * One step:
 *   1. every running completion needs at least one more token of cache (its next decode,
 *      or the next token of its prompt); while the free blocks cannot hold that, the
 *      running request of the lowest priority admitted last is preempted: its blocks are
 *      released (full ones stay in the prefix cache) and it goes back to the queue with
 *      its output so far, to be recomputed later;
 *   2. running completions get their tokens in order of priority, then admission: one
 *      each when decoding, a chunk of the prompt otherwise, within the step's token
 *      budget (n_batch) and the free blocks;
 *   3. if nothing was preempted, waiting requests are admitted in order (priority, then
 *      arrival) while sequence slots and blocks suffice (keeping a watermark of free
 *      blocks), each reusing the longest cached prefix of its tokens, and get the first
 *      chunk of their prompt;
 *   4. one llm_decode over the batch; full blocks are registered in the prefix cache;
 *      completions whose tokens are all computed sample their next token.
 * A request with n > 1 completions computes its prompt once on its first sequence,
 * which is then forked (the blocks are shared, copy-on-write) into the n - 1 others. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "sampler.h"
#include "stream.h"

#define MAX_STOP 16
#define MAX_STOP_LEN 256
#define LLM_MAX_SEQ_PER_REQ 64

enum { REQ_WAITING = 0, REQ_RUNNING = 1 };

typedef struct eng_seq {
    int32_t index;
    int32_t slot;          /* KV sequence id, -1 when not resident */
    llm_token *toks;       /* prompt, then generated tokens */
    int32_t n_toks, cap_toks;
    int32_t n_cached;      /* leading tokens whose keys and values are in the cache */
    int32_t n_committed;   /* leading full blocks registered in the prefix cache */
    uint64_t last_hash;    /* chain hash of block n_committed - 1 (the seed when none) */
    int32_t n_gen;
    llm_sampler *sampler;
    llm_stream text;
    int done;
    int pen_dev;           /* this step's row had its penalties applied by the backend */
} eng_seq;

typedef struct eng_req {
    llm_request_id id;
    void *user;
    int32_t priority;
    uint64_t arrival, admitted;
    int state;
    int32_t n_prompt, n_reused;
    int32_t n, n_live;
    int forked;            /* n > 1: the prompt was computed and shared with every completion */
    int counted_prefix;    /* the first admission updated the prefix counters */
    int32_t max_tokens, logprobs, ignore_eos;
    char *stop[MAX_STOP];
    size_t stop_len[MAX_STOP];
    int32_t n_stop;
    llm_token *stop_tokens;
    int32_t n_stop_tokens;
    eng_seq *seqs;
    struct eng_req *next;  /* inbox link */
} eng_req;

typedef struct ev_rec {
    llm_event ev;
    size_t text_off;
} ev_rec;

/* Candidates per row the backend's top_k brings back for sampling (covers the default
 * top-k of 40); a request whose sampler needs more reads its whole row. */
#define ENGINE_CAND_K 64

struct llm_engine {
    llm_context *ctx;
    int32_t cand_k; /* 0: sample from whole rows of logits */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* ---- under mu ---- */
    eng_req *inbox, *inbox_tail;
    int32_t n_inbox;
    llm_request_id *cancels;
    int32_t n_cancels, cap_cancels;
    llm_request_id *live;  /* ids submitted and not finished */
    int32_t n_live, cap_live;
    ev_rec *evs;
    int32_t n_evs, head_evs, cap_evs;
    char *arena;
    size_t arena_len, arena_cap;
    llm_engine_stats snap; /* counters as of the end of the last step */
    llm_request_id next_id;
    uint64_t next_arrival;
    int worker, stop;
    pthread_t thread;
    llm_event_fn cb;
    void *cb_user;
    /* ---- the stepping thread's ---- */
    eng_req **waiting, **running;
    int32_t n_waiting, n_running, cap_reqs;
    uint8_t *slot_used;
    int32_t n_slots_free;
    llm_token *b_tokens;
    int32_t *b_seq;
    int8_t *b_logits;
    eng_seq **chunk_seq;   /* per chunk of the batch: its completion, its length */
    int32_t *chunk_len;
    eng_req **chunk_req;
    int32_t n_chunks;
    int32_t n_batch_tokens; /* tokens in the batch being built */
    uint64_t next_admit;
    llm_engine_stats st;
};

/* ---- small helpers ---------------------------------------------------------------- */

static int32_t block_size(const llm_engine *e) { return e->ctx->block_size; }

static int grow_array(void **p, int32_t *cap, int32_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    int32_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = llm__realloc(*p, (size_t)c * elem);
    if (!q)
        return 0;
    *p = q;
    *cap = c;
    return 1;
}

static void seq_free(eng_seq *s)
{
    llm__free(s->toks);
    llm_sampler_free(s->sampler);
    llm__stream_free(&s->text);
}

static void req_free(eng_req *r)
{
    if (!r)
        return;
    for (int32_t i = 0; r->seqs && i < r->n; i++)
        seq_free(&r->seqs[i]);
    llm__free(r->seqs);
    for (int32_t i = 0; i < r->n_stop; i++)
        llm__free(r->stop[i]);
    llm__free(r->stop_tokens);
    llm__free(r);
}

static int seq_push_token(eng_seq *s, llm_token t)
{
    if (!grow_array((void **)&s->toks, &s->cap_toks, s->n_toks + 1, sizeof(llm_token)))
        return 0;
    s->toks[s->n_toks++] = t;
    return 1;
}

/* ---- events ----------------------------------------------------------------------- */

/* Delivers one event: to the callback, or to the queue that llm_poll reads. */
static void emit(llm_engine *e, llm_event *ev, const char *text, size_t len)
{
    ev->text = text;
    ev->text_len = (int32_t)len;
    pthread_mutex_lock(&e->mu);
    llm_event_fn cb = e->cb;
    void *cb_user = e->cb_user;
    if (!cb) {
        int ok = grow_array((void **)&e->evs, &e->cap_evs, e->n_evs + 1, sizeof(ev_rec));
        if (ok && e->arena_len + len > e->arena_cap) {
            size_t cap = e->arena_cap ? e->arena_cap : 4096;
            while (cap < e->arena_len + len)
                cap *= 2;
            char *a = llm__realloc(e->arena, cap);
            if (a) {
                e->arena = a;
                e->arena_cap = cap;
            } else {
                ok = 0;
            }
        }
        if (ok) {
            ev_rec *rec = &e->evs[e->n_evs++];
            rec->ev = *ev;
            rec->ev.text = NULL;
            rec->text_off = e->arena_len;
            if (len)
                memcpy(e->arena + e->arena_len, text, len);
            e->arena_len += len;
        } else {
            llm__warn("request %llu: event dropped (out of memory)", (unsigned long long)ev->id);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (cb)
        cb(ev, cb_user);
}

static void event_init(llm_event *ev, int type, const eng_req *r, const eng_seq *s)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->id = r->id;
    ev->user = r->user;
    ev->index = s ? s->index : 0;
    ev->token = -1;
}

/* ---- request lifetime -------------------------------------------------------------- */

static void release_slot(llm_engine *e, eng_seq *s)
{
    if (s->slot < 0)
        return;
    llm__kv_seq_truncate(e->ctx->kv, s->slot, 0);
    e->slot_used[s->slot] = 0;
    e->n_slots_free++;
    s->slot = -1;
    s->n_cached = 0;
    s->n_committed = 0;
    s->last_hash = e->ctx->prefix_seed;
}

static void remove_from(eng_req **list, int32_t *n, eng_req *r)
{
    for (int32_t i = 0; i < *n; i++)
        if (list[i] == r) {
            memmove(list + i, list + i + 1, (size_t)(*n - i - 1) * sizeof *list);
            (*n)--;
            return;
        }
}

/* Called when the request's last completion ended: forget it. */
static void req_retire(llm_engine *e, eng_req *r)
{
    for (int32_t i = 0; i < r->n; i++)
        release_slot(e, &r->seqs[i]);
    if (r->state == REQ_RUNNING)
        remove_from(e->running, &e->n_running, r);
    else
        remove_from(e->waiting, &e->n_waiting, r);
    pthread_mutex_lock(&e->mu);
    for (int32_t i = 0; i < e->n_live; i++)
        if (e->live[i] == r->id) {
            e->live[i] = e->live[--e->n_live];
            break;
        }
    pthread_mutex_unlock(&e->mu);
    req_free(r);
}

/* Ends one completion: a FINISHED event carrying the text still held (flush) or none
 * (a stop string matched), its cache released. Retires the request after its last. */
static void finish_seq(llm_engine *e, eng_req *r, eng_seq *s, int reason, int flush)
{
    if (s->done)
        return;
    llm_event ev;
    event_init(&ev, LLM_EVENT_FINISHED, r, s);
    ev.finish_reason = reason;
    ev.n_prompt_tokens = r->n_prompt;
    ev.n_cached_tokens = r->n_reused;
    ev.n_generated = s->n_gen;
    emit(e, &ev, s->text.buf, flush ? s->text.len : 0);
    s->done = 1;
    release_slot(e, s);
    e->st.n_finished++;
    if (--r->n_live == 0)
        req_retire(e, r);
}

static void fail_req(llm_engine *e, eng_req *r, llm_status st, const char *msg)
{
    for (int32_t i = 0; i < r->n; i++) {
        eng_seq *s = &r->seqs[i];
        if (s->done)
            continue;
        llm_event ev;
        event_init(&ev, LLM_EVENT_ERROR, r, s);
        ev.status = st;
        emit(e, &ev, msg, strlen(msg));
        s->done = 1;
        release_slot(e, s);
        e->st.n_finished++;
    }
    r->n_live = 0;
    req_retire(e, r);
}

static void cancel_req(llm_engine *e, eng_req *r)
{
    /* the request is freed when its last live completion ends: stop there */
    for (int32_t i = 0, left = r->n_live; left > 0; i++)
        if (!r->seqs[i].done) {
            left--;
            finish_seq(e, r, &r->seqs[i], LLM_FINISH_CANCELLED, 1);
        }
}

/* Precedence: higher priority first, then earlier admission (running) or arrival. */
static int before(const eng_req *a, const eng_req *b, int running)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return running ? a->admitted < b->admitted : a->arrival < b->arrival;
}

/* Both request lists get room for every request, so moving one never allocates. */
static int reserve_reqs(llm_engine *e, int32_t need)
{
    if (need <= e->cap_reqs)
        return 1;
    int32_t cap = e->cap_reqs ? 2 * e->cap_reqs : 16;
    while (cap < need)
        cap *= 2;
    eng_req **w = llm__realloc(e->waiting, (size_t)cap * sizeof *w);
    if (!w)
        return 0;
    e->waiting = w;
    eng_req **r = llm__realloc(e->running, (size_t)cap * sizeof *r);
    if (!r)
        return 0;
    e->running = r;
    e->cap_reqs = cap;
    return 1;
}

static int add_waiting(llm_engine *e, eng_req *r)
{
    if (!reserve_reqs(e, e->n_running + e->n_waiting + 1))
        return 0;
    int32_t i = e->n_waiting;
    while (i > 0 && before(r, e->waiting[i - 1], 0)) {
        e->waiting[i] = e->waiting[i - 1];
        i--;
    }
    e->waiting[i] = r;
    e->n_waiting++;
    r->state = REQ_WAITING;
    return 1;
}

static void preempt(llm_engine *e, eng_req *r)
{
    for (int32_t i = 0; i < r->n; i++)
        release_slot(e, &r->seqs[i]);
    remove_from(e->running, &e->n_running, r);
    add_waiting(e, r); /* cannot fail: the arrays hold every request */
    e->st.n_preemptions++;
}

/* The completions of r that take part in scheduling now. */
static int32_t active_seqs(const eng_req *r, eng_seq **out)
{
    int32_t n = 0;
    for (int32_t i = 0; i < (r->forked ? r->n : 1); i++)
        if (!r->seqs[i].done)
            out[n++] = &r->seqs[i];
    return n;
}

/* ---- text, logprobs, sampling ------------------------------------------------------- */

static void top_logprobs(llm_engine *e, const eng_req *r, const float *logits, llm_token tok,
                         llm_event *ev)
{
    const int32_t n_vocab = e->ctx->model->hp.n_vocab;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - mx);
    const float lse = mx + (float)log(sum);
    ev->logprob = logits[tok] - lse;
    const int32_t k = r->logprobs < n_vocab ? r->logprobs : n_vocab;
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (n == k && logits[i] <= logits[ev->top_tokens[n - 1]])
            continue;
        int32_t j = n < k ? n++ : n - 1;
        while (j > 0 && logits[ev->top_tokens[j - 1]] < logits[i]) {
            ev->top_tokens[j] = ev->top_tokens[j - 1];
            j--;
        }
        ev->top_tokens[j] = i;
    }
    ev->n_top = n;
    for (int32_t i = 0; i < n; i++)
        ev->top_logprobs[i] = logits[ev->top_tokens[i]] - lse;
}

/* Samples the next token of s from row `row` of the step's logits (from its candidates
 * when the sampler can use them, else from the whole row) and emits what follows from it.
 * Returns 0 when that retired r (its last completion ended). */
static int sample_seq(llm_engine *e, eng_req *r, eng_seq *s, int32_t row)
{
    llm_context *c = e->ctx;
    const llm_model *m = c->model;
    const float *logits = NULL;
    llm_token tok;
    const int32_t k = e->cand_k; /* the decode brought back candidates (context.h) */
    const int pen = s->pen_dev;
    s->pen_dev = 0;
    const float *z = c->cand_want_z && c->ops->row_sumexp ? c->cand_z + row : NULL;
    if (!k || r->logprobs > 0 ||
        !llm__sampler_sample_top(s->sampler, c->cand_ids + (int64_t)row * k,
                                 c->cand_vals + (int64_t)row * k, k, pen, z, &tok)) {
        if (!(logits = llm__context_row(c, row))) {
            fail_req(e, r, LLM_ERR_BACKEND, c->err);
            return 0;
        }
        /* a row the backend penalised is not penalised again */
        tok = pen ? llm__sampler_sample_penalized(s->sampler, logits)
                  : llm_sampler_sample(s->sampler, logits);
    }
    int stop = tok < 0;
    if (!r->ignore_eos && llm__tokenizer_is_eog(m->tok, tok))
        stop = 1;
    for (int32_t i = 0; i < r->n_stop_tokens && !stop; i++)
        stop = r->stop_tokens[i] == tok;
    if (stop) {
        const int last = r->n_live == 1;
        finish_seq(e, r, s, LLM_FINISH_STOP, 1);
        return !last;
    }
    if (!seq_push_token(s, tok)) {
        fail_req(e, r, LLM_ERR_NO_MEMORY, "out of memory");
        return 0;
    }
    s->n_gen++;
    e->st.tokens_generated++;
    llm_event ev;
    event_init(&ev, LLM_EVENT_TOKEN, r, s);
    ev.token = tok;
    if (r->logprobs > 0)
        top_logprobs(e, r, logits, tok, &ev);
    char small[256], *piece = small;
    int32_t n = llm__token_to_piece(m->tok, tok, small, sizeof small, 0);
    if (n < 0 && n != INT32_MIN) {
        piece = llm__malloc((size_t)-n);
        n = piece ? llm__token_to_piece(m->tok, tok, piece, -n, 0) : -1;
    }
    size_t release = 0;
    const int matched = n < 0 ? -1 : llm__stream_push(&s->text, piece, (size_t)n, &release);
    if (piece != small)
        llm__free(piece);
    if (matched < 0) {
        fail_req(e, r, LLM_ERR_NO_MEMORY, "out of memory");
        return 0;
    }
    emit(e, &ev, s->text.buf, release);
    llm__stream_consume(&s->text, release);
    const int last = r->n_live == 1;
    if (matched)
        finish_seq(e, r, s, LLM_FINISH_STOP, 0);
    else if ((r->max_tokens > 0 && s->n_gen >= r->max_tokens) || s->n_toks >= e->ctx->n_ctx)
        finish_seq(e, r, s, LLM_FINISH_LENGTH, 1);
    else
        return 1;
    return !last;
}

/* ---- scheduling ---------------------------------------------------------------------- */

static int32_t avail_blocks(const llm_engine *e, int32_t reserved)
{
    return llm__kv_n_free(e->ctx->kv) - reserved;
}

/* The most tokens (<= want) of s that fit in `avail` more blocks. */
static int32_t fit_tokens(const llm_engine *e, const eng_seq *s, int32_t want, int32_t avail)
{
    const llm_kv_cache *kv = e->ctx->kv;
    if (llm__kv_blocks_needed(kv, s->slot, s->n_cached + want) <= avail)
        return want;
    int32_t lo = 0, hi = want; /* blocks needed grow with the token count */
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) / 2;
        if (llm__kv_blocks_needed(kv, s->slot, s->n_cached + mid) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* What the backend computes for the rows this step will sample from candidates, so that
 * they need not come back whole (context.h): their mass when one has top-p without top-k;
 * the penalties of those with a history (a sequence alone on its row, no logprobs, a chain
 * that takes candidates), applied before top_k. A row that cannot have them (no memory)
 * is sampled from its whole row, as without. */
static void plan_candidates(llm_engine *e)
{
    llm_context *c = e->ctx;
    const int have_z = c->ops->row_sumexp != NULL;
    c->n_pen = 0;
    c->cand_want_z = 0;
    int32_t row = 0;
    for (int32_t i = 0; i < e->n_chunks; i++) {
        eng_seq *s = e->chunk_seq[i];
        eng_req *r = e->chunk_req[i];
        s->pen_dev = 0;
        if (s->n_cached + e->chunk_len[i] < s->n_toks)
            continue;
        const int32_t i_row = row++;
        if (r->logprobs > 0 || !llm__sampler_top_ok(s->sampler, e->cand_k, have_z))
            continue;
        c->cand_want_z |= have_z && llm__sampler_wants_z(s->sampler);
        if (!c->ops->penalize || (!r->forked && r->n > 1))
            continue;
        const int32_t m = llm__sampler_penalty_max(s->sampler);
        if (m == 0)
            continue;
        if (c->n_pen + m > c->cap_pen) {
            const int32_t cap = 2 * (c->n_pen + m);
            llm_penalty *p = llm__realloc(c->pen, (size_t)cap * sizeof *p);
            if (!p)
                continue;
            c->pen = p;
            c->cap_pen = cap;
        }
        c->n_pen += llm__sampler_penalties(s->sampler, i_row, c->pen + c->n_pen);
        s->pen_dev = 1;
    }
}

/* Adds up to *budget of s's uncomputed tokens to the batch. */
static int add_chunk(llm_engine *e, eng_req *r, eng_seq *s, int32_t *budget, int32_t *reserved)
{
    const int32_t want = s->n_toks - s->n_cached < *budget ? s->n_toks - s->n_cached : *budget;
    if (want <= 0)
        return 1;
    const int32_t n = fit_tokens(e, s, want, avail_blocks(e, *reserved));
    if (n == 0)
        return 1;
    *reserved += llm__kv_blocks_needed(e->ctx->kv, s->slot, s->n_cached + n);
    const int32_t base = e->n_batch_tokens;
    for (int32_t i = 0; i < n; i++) {
        e->b_tokens[base + i] = s->toks[s->n_cached + i];
        e->b_seq[base + i] = s->slot;
        e->b_logits[base + i] = 0;
    }
    e->b_logits[base + n - 1] = s->n_cached + n == s->n_toks;
    e->chunk_seq[e->n_chunks] = s;
    e->chunk_req[e->n_chunks] = r;
    e->chunk_len[e->n_chunks] = n;
    e->n_chunks++;
    e->n_batch_tokens += n;
    *budget -= n;
    if (s->n_cached + n < s->n_toks)
        e->st.tokens_prefilled += n;
    else
        e->st.tokens_prefilled += n - 1; /* the last one is a decode or the prompt's end */
    return 1;
}

/* Looks up the longest cached prefix of s (at most all but its last token). */
static int32_t prefix_match(llm_engine *e, eng_seq *s, int32_t *blocks, uint64_t *last)
{
    const int32_t bs = block_size(e);
    uint64_t h = e->ctx->prefix_seed;
    int32_t n = 0;
    *last = h;
    if (e->ctx->flags & LLM_CONTEXT_NO_PREFIX_CACHE)
        return 0;
    for (int32_t i = 0; (i + 1) * bs <= s->n_toks - 1; i++) {
        const uint64_t hi = llm__kv_hash_block(h, s->toks + i * bs, bs);
        const int32_t b = llm__kv_lookup(e->ctx->kv, hi, h, s->toks + i * bs);
        if (b < 0)
            break;
        blocks[n++] = b;
        h = hi;
    }
    *last = h;
    return n;
}

static int32_t take_slot(llm_engine *e)
{
    for (int32_t i = 0; i < e->ctx->n_seq; i++)
        if (!e->slot_used[i]) {
            e->slot_used[i] = 1;
            e->n_slots_free--;
            return i;
        }
    return -1;
}

/* Tries to admit r; returns 0 when it does not fit now. */
static int admit(llm_engine *e, eng_req *r, int32_t *budget, int32_t *reserved)
{
    eng_seq *act[LLM_MAX_SEQ_PER_REQ];
    const int32_t n_act = active_seqs(r, act);
    const int32_t slots = r->forked ? n_act : r->n;
    if (slots > e->n_slots_free)
        return 0;
    const int32_t bs = block_size(e), n_blocks = llm__kv_n_blocks(e->ctx->kv);
    const int32_t watermark = n_blocks / 100 > 1 ? n_blocks / 100 : 1;
    int32_t *match = llm__malloc((size_t)n_blocks * sizeof(int32_t) * (size_t)n_act);
    uint64_t last[LLM_MAX_SEQ_PER_REQ];
    int32_t n_match[LLM_MAX_SEQ_PER_REQ];
    if (!match)
        return 0;
    int32_t need = 0;
    for (int32_t i = 0; i < n_act; i++) {
        const int32_t *mi = match + (size_t)i * n_blocks;
        n_match[i] = prefix_match(e, act[i], match + (size_t)i * n_blocks, &last[i]);
        need += (act[i]->n_toks + bs - 1) / bs - n_match[i];
        for (int32_t k = 0; k < n_match[i]; k++)
            need += llm__kv_block_refs(e->ctx->kv, mi[k]) == 0; /* revived from the cache */
    }
    /* the whole of the known tokens must fit, beside a watermark of free blocks, so that
     * an admitted request is not preempted at once */
    if (avail_blocks(e, *reserved) - need < watermark && e->n_running > 0) {
        llm__free(match);
        return 0;
    }
    if (avail_blocks(e, *reserved) - need < 0) {
        llm__free(match);
        if (e->n_running == 0 && *reserved == 0 && n_act > 0) {
            /* it cannot fit even alone (completions that grew long): end its last one */
            const int last = r->n_live == 1;
            finish_seq(e, r, act[n_act - 1], LLM_FINISH_LENGTH, 1);
            return !last; /* try again, unless it is gone */
        }
        return 0;
    }
    remove_from(e->waiting, &e->n_waiting, r);
    e->running[e->n_running++] = r;
    r->state = REQ_RUNNING;
    r->admitted = e->next_admit++;
    int32_t reused = 0;
    for (int32_t i = 0; i < n_act; i++) {
        eng_seq *s = act[i];
        s->slot = take_slot(e);
        llm__kv_seq_attach(e->ctx->kv, s->slot, match + (size_t)i * n_blocks, n_match[i]);
        s->n_cached = n_match[i] * bs;
        s->n_committed = n_match[i];
        s->last_hash = last[i];
        reused += s->n_cached;
    }
    if (!r->forked)
        for (int32_t i = 1; i < r->n; i++)
            r->seqs[i].slot = take_slot(e); /* reserved for the fork */
    llm__free(match);
    if (!(e->ctx->flags & LLM_CONTEXT_NO_PREFIX_CACHE)) {
        e->st.prefix_queries++;
        e->st.prefix_hits += reused > 0;
        e->st.prefix_tokens_reused += reused;
    }
    if (!r->counted_prefix) {
        r->n_reused = reused;
        r->counted_prefix = 1;
    }
    for (int32_t i = 0; i < n_act; i++)
        add_chunk(e, r, act[i], budget, reserved);
    return 1;
}

/* Registers the full blocks of s computed so far in the prefix cache. */
static void commit_blocks(llm_engine *e, eng_seq *s)
{
    if (e->ctx->flags & LLM_CONTEXT_NO_PREFIX_CACHE)
        return;
    const int32_t bs = block_size(e);
    while ((s->n_committed + 1) * bs <= s->n_cached) {
        const llm_token *t = s->toks + (size_t)s->n_committed * bs;
        const uint64_t h = llm__kv_hash_block(s->last_hash, t, bs);
        llm__kv_commit(e->ctx->kv, llm__kv_seq_block(e->ctx->kv, s->slot, s->n_committed), h,
                       s->last_hash, t);
        s->last_hash = h;
        s->n_committed++;
    }
}

/* Shares the computed prompt of r's first completion with the others. */
static int fork_req(llm_engine *e, eng_req *r)
{
    eng_seq *s0 = &r->seqs[0];
    for (int32_t i = 1; i < r->n; i++) {
        eng_seq *s = &r->seqs[i];
        if (!grow_array((void **)&s->toks, &s->cap_toks, s0->n_toks, sizeof(llm_token)))
            return 0;
        memcpy(s->toks, s0->toks, (size_t)s0->n_toks * sizeof(llm_token));
        s->n_toks = s0->n_toks;
        llm__kv_seq_fork(e->ctx->kv, s->slot, s0->slot);
        s->n_cached = s0->n_cached;
        s->n_committed = s0->n_committed;
        s->last_hash = s0->last_hash;
    }
    r->forked = 1;
    return 1;
}

static void take_inbox(llm_engine *e)
{
    pthread_mutex_lock(&e->mu);
    eng_req *list = e->inbox;
    e->inbox = e->inbox_tail = NULL;
    e->n_inbox = 0;
    llm_request_id cancels[64];
    int32_t nc = e->n_cancels < 64 ? e->n_cancels : 64;
    if (nc > 0) {
        memcpy(cancels, e->cancels, (size_t)nc * sizeof *cancels);
        memmove(e->cancels, e->cancels + nc, (size_t)(e->n_cancels - nc) * sizeof *cancels);
        e->n_cancels -= nc;
    }
    pthread_mutex_unlock(&e->mu);
    while (list) {
        eng_req *r = list;
        list = r->next;
        if (!add_waiting(e, r)) {
            r->state = REQ_WAITING; /* in no list: retiring removes nothing */
            fail_req(e, r, LLM_ERR_NO_MEMORY, "out of memory");
        }
    }
    for (int32_t c = 0; c < nc; c++) {
        eng_req *r = NULL;
        for (int32_t i = 0; i < e->n_running && !r; i++)
            if (e->running[i]->id == cancels[c])
                r = e->running[i];
        for (int32_t i = 0; i < e->n_waiting && !r; i++)
            if (e->waiting[i]->id == cancels[c])
                r = e->waiting[i];
        if (r)
            cancel_req(e, r);
    }
}

static void publish_stats(llm_engine *e)
{
    const llm_kv_cache *kv = e->ctx->kv;
    e->st.n_waiting = e->n_waiting;
    e->st.n_running = e->n_running;
    e->st.kv_blocks = llm__kv_n_blocks(kv);
    e->st.kv_blocks_free = llm__kv_n_free(kv);
    e->st.kv_blocks_cached = llm__kv_n_cached(kv);
    e->st.block_size = block_size(e);
    pthread_mutex_lock(&e->mu);
    e->snap = e->st;
    pthread_mutex_unlock(&e->mu);
}

static llm_status engine_step(llm_engine *e)
{
    llm_context *c = e->ctx;
    take_inbox(e);
    if (e->n_running == 0 && e->n_waiting == 0) {
        publish_stats(e);
        return LLM_OK;
    }
    e->st.n_steps++;
    eng_seq *act[LLM_MAX_SEQ_PER_REQ];

    /* 1. make room for one more token of every running completion */
    int preempted = 0;
    for (;;) {
        int32_t need = 0;
        for (int32_t i = 0; i < e->n_running; i++) {
            const int32_t n = active_seqs(e->running[i], act);
            for (int32_t j = 0; j < n; j++)
                need += llm__kv_blocks_needed(c->kv, act[j]->slot, act[j]->n_cached + 1);
        }
        if (need <= llm__kv_n_free(c->kv))
            break;
        eng_req *victim = NULL;
        for (int32_t i = 0; i < e->n_running; i++)
            if (!victim || before(victim, e->running[i], 1))
                victim = e->running[i];
        if (e->n_running > 1) {
            preempt(e, victim);
            preempted = 1;
            continue;
        }
        /* alone and still no room: its completions have filled the cache */
        const int32_t n = active_seqs(victim, act);
        finish_seq(e, victim, act[n - 1], LLM_FINISH_LENGTH, 1);
        if (e->n_running == 0)
            break;
    }

    /* 2. running completions, by precedence */
    for (int32_t i = 1; i < e->n_running; i++) {
        eng_req *r = e->running[i];
        int32_t j = i;
        while (j > 0 && before(r, e->running[j - 1], 1)) {
            e->running[j] = e->running[j - 1];
            j--;
        }
        e->running[j] = r;
    }
    int32_t budget = c->n_batch, reserved = 0;
    e->n_chunks = 0;
    e->n_batch_tokens = 0;
    for (int32_t i = 0; i < e->n_running && budget > 0; i++) {
        const int32_t n = active_seqs(e->running[i], act);
        for (int32_t j = 0; j < n && budget > 0; j++)
            add_chunk(e, e->running[i], act[j], &budget, &reserved);
    }

    /* 3. admissions */
    while (!preempted && budget > 0 && e->n_waiting > 0)
        if (!admit(e, e->waiting[0], &budget, &reserved))
            break;

    /* 4. decode */
    const int32_t n_tokens = e->n_batch_tokens;
    if (n_tokens == 0) {
        publish_stats(e);
        return LLM_OK;
    }
    llm_batch b;
    llm_batch_init(&b);
    b.n_tokens = n_tokens;
    b.tokens = e->b_tokens;
    b.seq_ids = e->b_seq;
    b.logits = e->b_logits;
    c->cand_k = e->cand_k;
    if (e->cand_k)
        plan_candidates(e);
    llm_status st = llm__context_decode(c, &b);
    c->cand_k = 0;
    c->n_pen = 0;
    if (st != LLM_OK) {
        char msg[sizeof c->err];
        snprintf(msg, sizeof msg, "%s", c->err);
        for (int32_t i = 0; i < e->n_chunks; i++) {
            eng_req *r = e->chunk_req[i];
            int alive = 0; /* a request may have several chunks */
            for (int32_t k = 0; k < e->n_running; k++)
                alive |= e->running[k] == r;
            if (alive)
                fail_req(e, r, st, msg);
        }
        publish_stats(e);
        return st;
    }
    int32_t row = 0;
    for (int32_t i = 0; i < e->n_chunks; i++) {
        eng_seq *s = e->chunk_seq[i];
        eng_req *r = e->chunk_req[i];
        s->n_cached += e->chunk_len[i];
        commit_blocks(e, s);
        if (s->n_cached < s->n_toks)
            continue;
        const int32_t i_row = row++;
        if (!r->forked && r->n > 1) {
            if (!fork_req(e, r)) {
                fail_req(e, r, LLM_ERR_NO_MEMORY, "out of memory");
                continue;
            }
            int alive = 1;
            for (int32_t k = r->n - 1; k >= 1 && alive; k--)
                alive = sample_seq(e, r, &r->seqs[k], i_row);
            if (!alive)
                continue;
        }
        sample_seq(e, r, s, i_row); /* may retire r: the last use of r and s */
    }
    publish_stats(e);
    return LLM_OK;
}

/* ---- the engine object ----------------------------------------------------------------- */

static llm_status engine_get(llm_context *c, llm_engine **out)
{
    if (c->engine) {
        *out = c->engine;
        return LLM_OK;
    }
    llm_engine *e = llm__calloc(1, sizeof *e);
    if (!e)
        return llm__fail(LLM_ERR_NO_MEMORY, "out of memory");
    e->ctx = c;
    e->next_id = 1;
    int want = c->engine_cand;
    const char *env = getenv("LLM_ENGINE_CANDIDATES");
    if (want == 0 && env && (*env == '0' || *env == '1'))
        want = *env == '1' ? 1 : -1;
    if (c->ops->top_k && (want > 0 || (want == 0 && !c->host_memory)))
        e->cand_k = ENGINE_CAND_K;
    const int32_t nb = c->n_batch;
    e->slot_used = llm__calloc((size_t)c->n_seq, 1);
    e->n_slots_free = c->n_seq;
    e->b_tokens = llm__malloc((size_t)nb * sizeof(llm_token));
    e->b_seq = llm__malloc((size_t)nb * sizeof(int32_t));
    e->b_logits = llm__malloc((size_t)nb);
    e->chunk_seq = llm__malloc((size_t)nb * sizeof(eng_seq *));
    e->chunk_req = llm__malloc((size_t)nb * sizeof(eng_req *));
    e->chunk_len = llm__malloc((size_t)nb * sizeof(int32_t));
    if (!e->slot_used || !e->b_tokens || !e->b_seq || !e->b_logits || !e->chunk_seq ||
        !e->chunk_req || !e->chunk_len) {
        llm__engine_free(e);
        return llm__fail(LLM_ERR_NO_MEMORY, "out of memory");
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    c->engine = e;
    *out = e;
    return LLM_OK;
}

void llm__engine_free(llm_engine *e)
{
    if (!e)
        return;
    if (e->ctx && e->ctx->engine == e)
        llm_context_stop_worker(e->ctx);
    while (e->n_running > 0)
        req_retire(e, e->running[e->n_running - 1]);
    while (e->n_waiting > 0)
        req_retire(e, e->waiting[e->n_waiting - 1]);
    for (eng_req *r = e->inbox; r;) {
        eng_req *next = r->next;
        req_free(r);
        r = next;
    }
    void *ps[] = {e->cancels, e->live, e->evs, e->arena, e->waiting, e->running, e->slot_used,
                  e->b_tokens, e->b_seq, e->b_logits, e->chunk_seq, e->chunk_req, e->chunk_len};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        llm__free(ps[i]);
    if (e->ctx && e->ctx->engine == e) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        e->ctx->engine = NULL;
    }
    llm__free(e);
}

int llm__engine_busy(llm_context *c)
{
    llm_engine *e = c->engine;
    if (!e)
        return 0;
    pthread_mutex_lock(&e->mu);
    const int busy = e->n_live > 0 || e->worker;
    pthread_mutex_unlock(&e->mu);
    return busy;
}

/* ---- public calls ------------------------------------------------------------------------ */

static int worker_running(llm_engine *e)
{
    pthread_mutex_lock(&e->mu);
    const int worker = e->worker;
    pthread_mutex_unlock(&e->mu);
    return worker;
}

/* LLM_ERR_INVALID_ARG when llm_decode left tokens in a sequence the engine would use (only
 * checked while the engine is idle: then no step runs and its own sequences are empty). */
static llm_status check_no_decode_seqs(llm_context *c, const char *fn)
{
    if (llm__engine_busy(c))
        return LLM_OK;
    for (int32_t s = 0; s < c->n_seq; s++)
        if (llm__kv_seq_len(c->kv, s) > 0)
            return llm__fail(LLM_ERR_INVALID_ARG, "%s: sequence %d holds tokens from "
                             "llm_decode; clear it first (llm_kv_clear)", fn, s);
    return LLM_OK;
}

static llm_status sub_fail(llm_engine *e, llm_status st)
{
    return worker_running(e) ? st : llm__context_fail(e->ctx, st);
}

/* The prompt of p as tokens, in a new array. */
static llm_status prompt_tokens(llm_context *c, const llm_request_params *p, llm_token **out,
                                int32_t *n_out)
{
    const llm_model *m = c->model;
    char *text = NULL;
    const char *src = p->prompt;
    size_t len = src ? strlen(src) : 0;
    if (p->messages) {
        int32_t n = llm_chat_apply(m, NULL, p->messages, p->n_messages, 1, NULL, 0);
        if (n == INT32_MIN)
            return LLM_ERR_TEMPLATE;
        text = llm__malloc((size_t)(-n));
        if (!text)
            return llm__fail(LLM_ERR_NO_MEMORY, "llm_request_submit: out of memory");
        if (llm_chat_apply(m, NULL, p->messages, p->n_messages, 1, text, -n) < 0) {
            llm__free(text);
            return LLM_ERR_TEMPLATE;
        }
        src = text;
        len = strlen(text);
    }
    if (!src) { /* tokens as given */
        llm_token *t = llm__malloc((size_t)p->n_tokens * sizeof(llm_token));
        if (!t)
            return llm__fail(LLM_ERR_NO_MEMORY, "llm_request_submit: out of memory");
        memcpy(t, p->tokens, (size_t)p->n_tokens * sizeof(llm_token));
        *out = t;
        *n_out = p->n_tokens;
        return LLM_OK;
    }
    const uint32_t flags = LLM_TOKENIZE_ADD_SPECIAL | LLM_TOKENIZE_PARSE_SPECIAL;
    int32_t n = llm_tokenize(m, src, len, NULL, 0, flags);
    llm_token *t = NULL;
    if (n == INT32_MIN || n == 0) {
        llm__free(text);
        return n == 0 ? llm__fail(LLM_ERR_INVALID_ARG, "llm_request_submit: the prompt gives "
                                  "no tokens")
                      : LLM_ERR_INVALID_ARG;
    }
    const int32_t cap = n < 0 ? -n : n;
    t = llm__malloc((size_t)cap * sizeof(llm_token));
    if (!t) {
        llm__free(text);
        return llm__fail(LLM_ERR_NO_MEMORY, "llm_request_submit: out of memory");
    }
    n = llm_tokenize(m, src, len, t, cap, flags);
    llm__free(text);
    if (n < 0) {
        llm__free(t);
        return llm__fail(LLM_ERR_INTERNAL, "llm_request_submit: tokenization changed");
    }
    /* a template that writes BOS itself gives it twice: keep one */
    const llm_token bos = llm_model_token(m, LLM_TOKEN_BOS);
    if (bos >= 0 && n >= 2 && t[0] == bos && t[1] == bos) {
        memmove(t, t + 1, (size_t)(n - 1) * sizeof(llm_token));
        n--;
    }
    *out = t;
    *n_out = n;
    return LLM_OK;
}

static llm_status check_params(const llm_context *c, const llm_request_params *p)
{
    const char *fn = "llm_request_submit";
    const int inputs = (p->prompt != NULL) + (p->tokens != NULL) + (p->messages != NULL);
    if (inputs != 1)
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: give exactly one of prompt, tokens and "
                         "messages (%d given)", fn, inputs);
    if (p->tokens && (p->n_tokens < 1 || p->n_tokens > c->n_ctx))
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: n_tokens %d is outside [1, %d]", fn,
                         p->n_tokens, c->n_ctx);
    if (p->messages && p->n_messages < 1)
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: n_messages is %d", fn, p->n_messages);
    if (p->n < 0 || p->n > LLM_MAX_SEQ_PER_REQ || p->n > c->n_seq)
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: n = %d completions, but at most %d fit "
                         "(n_seq_max %d)", fn, p->n,
                         c->n_seq < LLM_MAX_SEQ_PER_REQ ? c->n_seq : LLM_MAX_SEQ_PER_REQ,
                         c->n_seq);
    if (p->max_tokens < 0)
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: max_tokens %d is negative", fn, p->max_tokens);
    if (p->logprobs < 0 || p->logprobs > LLM_MAX_LOGPROBS)
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: logprobs %d is outside [0, %d]", fn,
                         p->logprobs, LLM_MAX_LOGPROBS);
    if (p->n_stop < 0 || p->n_stop > MAX_STOP || (p->n_stop > 0 && !p->stop))
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: %d stop strings (at most %d)", fn, p->n_stop,
                         MAX_STOP);
    for (int32_t i = 0; i < p->n_stop; i++) {
        const size_t n = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (n < 1 || n > MAX_STOP_LEN)
            return llm__fail(LLM_ERR_INVALID_ARG, "%s: stop string %d has %zu bytes (1..%d)", fn,
                             i, n, MAX_STOP_LEN);
    }
    if (p->n_stop_tokens < 0 || (p->n_stop_tokens > 0 && !p->stop_tokens) ||
        p->n_stop_tokens > 1024)
        return llm__fail(LLM_ERR_INVALID_ARG, "%s: bad stop tokens (%d)", fn, p->n_stop_tokens);
    for (int32_t i = 0; i < p->n_stop_tokens; i++)
        if (p->stop_tokens[i] < 0 || p->stop_tokens[i] >= c->model->hp.n_vocab)
            return llm__fail(LLM_ERR_INVALID_ARG, "%s: stop token %d is outside the vocabulary",
                             fn, p->stop_tokens[i]);
    for (int32_t i = 0; p->tokens && i < p->n_tokens; i++)
        if (p->tokens[i] < 0 || p->tokens[i] >= c->model->hp.n_vocab)
            return llm__fail(LLM_ERR_INVALID_ARG, "%s: token %d at index %d is outside the "
                             "vocabulary (%d)", fn, p->tokens[i], i, c->model->hp.n_vocab);
    return LLM_OK;
}

llm_status llm_request_submit(llm_context *c, const llm_request_params *params,
                              llm_request_id *id)
{
    llm__clear_error();
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_request_submit: ctx is NULL");
    if (id)
        *id = 0;
    llm_engine *e = NULL;
    llm_status st = engine_get(c, &e);
    if (st != LLM_OK)
        return llm__context_fail(c, st);
    if (!params || !id || params->size < sizeof(size_t))
        return sub_fail(e, llm__fail(LLM_ERR_INVALID_ARG, "llm_request_submit: %s",
                                     !params ? "params is NULL" : !id ? "id is NULL"
                                     : "params->size is not set (llm_request_params_init)"));
    llm_request_params p;
    llm_request_params_init(&p);
    memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if ((st = check_params(c, &p)) != LLM_OK)
        return sub_fail(e, st);
    if ((st = check_no_decode_seqs(c, "llm_request_submit")) != LLM_OK)
        return sub_fail(e, st);
    eng_req *r = llm__calloc(1, sizeof *r);
    if (!r)
        return sub_fail(e, llm__fail(LLM_ERR_NO_MEMORY, "llm_request_submit: out of memory"));
    r->n = p.n ? p.n : 1;
    r->n_live = r->n;
    r->user = p.user;
    r->priority = p.priority;
    r->max_tokens = p.max_tokens;
    r->logprobs = p.logprobs;
    r->ignore_eos = p.ignore_eos;
    r->seqs = llm__calloc((size_t)r->n, sizeof(eng_seq));
    if (!r->seqs)
        goto oom;
    for (int32_t i = 0; i < p.n_stop; i++) {
        r->stop_len[i] = strlen(p.stop[i]);
        if (!(r->stop[i] = llm__strndup(p.stop[i], r->stop_len[i])))
            goto oom;
        r->n_stop++;
    }
    if (p.n_stop_tokens > 0) {
        r->stop_tokens = llm__malloc((size_t)p.n_stop_tokens * sizeof(llm_token));
        if (!r->stop_tokens)
            goto oom;
        memcpy(r->stop_tokens, p.stop_tokens, (size_t)p.n_stop_tokens * sizeof(llm_token));
        r->n_stop_tokens = p.n_stop_tokens;
    }
    llm_sampler_params sp;
    llm_sampler_params_init(&sp);
    if (p.sampling) {
        if (p.sampling->size < sizeof(size_t)) {
            req_free(r);
            return sub_fail(e, llm__fail(LLM_ERR_INVALID_ARG, "llm_request_submit: "
                                         "sampling->size is not set"));
        }
        memcpy(&sp, p.sampling, p.sampling->size < sizeof sp ? p.sampling->size : sizeof sp);
        sp.size = sizeof sp;
    } else {
        sp.temperature = 0.0f;
        sp.top_k = 0;
        sp.top_p = 1.0f;
        sp.min_p = 0.0f;
    }
    eng_seq *s0 = &r->seqs[0];
    if ((st = prompt_tokens(c, &p, &s0->toks, &s0->n_toks)) != LLM_OK) {
        req_free(r);
        return sub_fail(e, st);
    }
    s0->cap_toks = s0->n_toks;
    r->n_prompt = s0->n_toks;
    if (s0->n_toks > c->n_ctx) {
        req_free(r);
        return sub_fail(e, llm__fail(LLM_ERR_INVALID_ARG, "llm_request_submit: the prompt has "
                                     "%d tokens, more than the context holds (%d)",
                                     r->n_prompt, c->n_ctx));
    }
    for (int32_t i = 0; i < r->n; i++) {
        eng_seq *s = &r->seqs[i];
        s->index = i;
        s->slot = -1;
        s->last_hash = c->prefix_seed;
        s->text.stop = r->stop;
        s->text.stop_len = r->stop_len;
        s->text.n_stop = r->n_stop;
        llm_sampler_params si = sp;
        si.seed = sp.seed + (uint64_t)i;
        if ((st = llm_sampler_create(c->model, &si, &s->sampler)) != LLM_OK) {
            req_free(r);
            return sub_fail(e, st);
        }
        for (int32_t k = 0; k < s0->n_toks; k++)
            llm_sampler_accept(s->sampler, s0->toks[k]);
    }
    pthread_mutex_lock(&e->mu);
    int ok = grow_array((void **)&e->live, &e->cap_live, e->n_live + 1, sizeof(llm_request_id));
    if (ok) {
        r->id = e->next_id++;
        r->arrival = e->next_arrival++;
        e->live[e->n_live++] = r->id;
        if (e->inbox_tail)
            e->inbox_tail->next = r;
        else
            e->inbox = r;
        e->inbox_tail = r;
        e->n_inbox++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (!ok)
        goto oom;
    *id = r->id;
    return LLM_OK;
oom:
    req_free(r);
    return sub_fail(e, llm__fail(LLM_ERR_NO_MEMORY, "llm_request_submit: out of memory"));
}

llm_status llm_request_cancel(llm_context *c, llm_request_id id)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_request_cancel: ctx is NULL");
    llm_engine *e = c->engine;
    if (!e)
        return llm__context_fail(c, llm__fail(LLM_ERR_NOT_FOUND, "llm_request_cancel: no "
                                              "request %llu", (unsigned long long)id));
    pthread_mutex_lock(&e->mu);
    int found = 0;
    for (int32_t i = 0; i < e->n_live && !found; i++)
        found = e->live[i] == id;
    for (int32_t i = 0; i < e->n_cancels && found; i++)
        found = e->cancels[i] != id; /* already being cancelled */
    int ok = found && grow_array((void **)&e->cancels, &e->cap_cancels, e->n_cancels + 1,
                                 sizeof(llm_request_id));
    if (ok) {
        e->cancels[e->n_cancels++] = id;
        pthread_cond_signal(&e->cv);
    }
    const int worker = e->worker;
    pthread_mutex_unlock(&e->mu);
    if (!found) {
        llm__fail(LLM_ERR_NOT_FOUND, "llm_request_cancel: no request %llu (unknown or finished)",
                  (unsigned long long)id);
        return worker ? LLM_ERR_NOT_FOUND : llm__context_fail(c, LLM_ERR_NOT_FOUND);
    }
    if (!ok) {
        llm__fail(LLM_ERR_NO_MEMORY, "llm_request_cancel: out of memory");
        return worker ? LLM_ERR_NO_MEMORY : llm__context_fail(c, LLM_ERR_NO_MEMORY);
    }
    if (!worker) { /* this thread is the stepping thread: release at once */
        take_inbox(e);
        publish_stats(e);
    }
    return LLM_OK;
}

llm_status llm_step(llm_context *c)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_step: ctx is NULL");
    llm_engine *e = NULL;
    llm_status st = engine_get(c, &e);
    if (st != LLM_OK)
        return llm__context_fail(c, st);
    if (worker_running(e))
        return llm__context_fail(c, llm__fail(LLM_ERR_INVALID_ARG, "llm_step: a worker thread "
                                              "runs this context"));
    return engine_step(e);
}

int32_t llm_pending(llm_context *c)
{
    if (!c || !c->engine)
        return 0;
    pthread_mutex_lock(&c->engine->mu);
    const int32_t n = c->engine->n_live;
    pthread_mutex_unlock(&c->engine->mu);
    return n;
}

int32_t llm_poll(llm_context *c, llm_event *events, int32_t max_events, char *text_buf,
                 int32_t text_cap)
{
    if (!c || max_events < 0 || (max_events > 0 && !events) || text_cap < 0 ||
        (text_cap > 0 && !text_buf)) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_poll: invalid arguments");
        return INT32_MIN;
    }
    llm_engine *e = c->engine;
    if (!e)
        return 0;
    pthread_mutex_lock(&e->mu);
    int32_t n = 0;
    size_t used = 0;
    while (n < max_events && e->head_evs < e->n_evs) {
        ev_rec *rec = &e->evs[e->head_evs];
        const size_t len = (size_t)rec->ev.text_len;
        if (used + len > (size_t)text_cap) {
            if (n == 0) {
                pthread_mutex_unlock(&e->mu);
                return len > INT32_MAX ? INT32_MIN + 1 : -(int32_t)len;
            }
            break;
        }
        events[n] = rec->ev;
        if (len)
            memcpy(text_buf + used, e->arena + rec->text_off, len);
        events[n].text = text_buf ? text_buf + used : NULL;
        used += len;
        n++;
        e->head_evs++;
    }
    if (e->head_evs == e->n_evs) {
        e->head_evs = e->n_evs = 0;
        e->arena_len = 0;
    } else if (e->head_evs > 256 && e->head_evs * 2 > e->n_evs) {
        const size_t off = e->evs[e->head_evs].text_off;
        memmove(e->arena, e->arena + off, e->arena_len - off);
        e->arena_len -= off;
        memmove(e->evs, e->evs + e->head_evs, (size_t)(e->n_evs - e->head_evs) * sizeof(ev_rec));
        e->n_evs -= e->head_evs;
        e->head_evs = 0;
        for (int32_t i = 0; i < e->n_evs; i++)
            e->evs[i].text_off -= off;
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

llm_status llm_context_set_event_callback(llm_context *c, llm_event_fn fn, void *user)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_set_event_callback: ctx is NULL");
    llm_engine *e = NULL;
    llm_status st = engine_get(c, &e);
    if (st != LLM_OK)
        return llm__context_fail(c, st);
    pthread_mutex_lock(&e->mu);
    const int worker = e->worker;
    if (!worker) {
        e->cb = fn;
        e->cb_user = user;
    }
    pthread_mutex_unlock(&e->mu);
    if (worker)
        return llm__context_fail(c, llm__fail(LLM_ERR_INVALID_ARG, "llm_context_set_event_"
                                              "callback: stop the worker first"));
    return LLM_OK;
}

static void *worker_main(void *arg)
{
    llm_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->inbox && e->n_cancels == 0 && e->n_running == 0 &&
               e->n_waiting == 0)
            pthread_cond_wait(&e->cv, &e->mu);
        const int stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop)
            break;
        const llm_status st = engine_step(e);
        if (st != LLM_OK)
            llm__warn("request engine: step failed: %s", llm_last_error());
    }
    return NULL;
}

llm_status llm_context_start_worker(llm_context *c)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_start_worker: ctx is NULL");
    llm_engine *e = NULL;
    llm_status st = engine_get(c, &e);
    if (st != LLM_OK)
        return llm__context_fail(c, st);
    if ((st = check_no_decode_seqs(c, "llm_context_start_worker")) != LLM_OK)
        return llm__context_fail(c, st);
    pthread_mutex_lock(&e->mu);
    if (e->worker) {
        pthread_mutex_unlock(&e->mu);
        return llm__context_fail(c, llm__fail(LLM_ERR_INVALID_ARG, "llm_context_start_worker: "
                                              "a worker already runs"));
    }
    e->stop = 0;
    e->worker = 1;
    if (pthread_create(&e->thread, NULL, worker_main, e) != 0) {
        e->worker = 0;
        pthread_mutex_unlock(&e->mu);
        return llm__context_fail(c, llm__fail(LLM_ERR_NO_MEMORY, "llm_context_start_worker: "
                                              "cannot start a thread"));
    }
    pthread_mutex_unlock(&e->mu);
    return LLM_OK;
}

void llm_context_stop_worker(llm_context *c)
{
    if (!c || !c->engine)
        return;
    llm_engine *e = c->engine;
    pthread_mutex_lock(&e->mu);
    const int worker = e->worker;
    e->stop = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (worker)
        pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->mu);
    e->worker = 0;
    e->stop = 0;
    pthread_mutex_unlock(&e->mu);
}

llm_status llm_engine_stats_get(llm_context *c, llm_engine_stats *out)
{
    if (!c || !out || out->size < sizeof(size_t))
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_engine_stats_get: %s",
                         !c ? "ctx is NULL" : !out ? "stats is NULL" : "stats->size is not set");
    llm_engine_stats s;
    memset(&s, 0, sizeof s);
    if (c->engine) {
        pthread_mutex_lock(&c->engine->mu);
        s = c->engine->snap;
        s.n_waiting += c->engine->n_inbox;
        pthread_mutex_unlock(&c->engine->mu);
    } else {
        s.kv_blocks = llm__kv_n_blocks(c->kv);
        s.kv_blocks_free = llm__kv_n_free(c->kv);
        s.kv_blocks_cached = llm__kv_n_cached(c->kv);
        s.block_size = c->block_size;
    }
    const size_t n = out->size < sizeof s ? out->size : sizeof s;
    s.size = out->size;
    memcpy(out, &s, n);
    return LLM_OK;
}
