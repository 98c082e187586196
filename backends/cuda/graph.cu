/* graph.cu - decode steps replayed as CUDA graphs.
 *
 * A decode step is some 500 small kernels whose arguments are the same from one step to
 * the next: the tokens, positions, KV slots and block tables change, but they live in
 * device buffers the core uploads before the step, at the same addresses each time. So the
 * ops are not launched as they come: each op of the table this file hands out only records
 * its arguments (a "segment" of ops), and the segment runs when anything else happens — an
 * upload, a download, a synchronize, an allocation. Then:
 *  - a segment equal, byte for byte, to one captured before replays that graph: one launch;
 *  - a segment equal to one of the last few that ran op by op is captured into a graph
 *    (stream capture of the plain ops, so the graph holds exactly the kernels the ops would
 *    have launched) and launched; up to GRAPH_CACHE graphs are kept, the least recently
 *    used one updated in place (cudaGraphExecUpdate) when the new one has its shape;
 *  - anything else runs op by op, as without graphs (prompts: a segment seen once).
 * The results are the same bits as op by op: the same kernels run on the same data.
 *
 * What a graph holds that its recorded arguments do not show: the backend's own buffers
 * (scratch, act, route). They only ever grow, and a growth forgets every graph (cu_buffer).
 * A capture that fails (an op that cannot be captured, a growth during the capture) leaves
 * nothing behind: the segment then runs op by op and is not captured again.
 *
 * LLM_CUDA_GRAPHS=0 (read when an instance is created) runs every op at once, as the
 * plain table does. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <tuple>

#include "common.cuh"

#define GRAPH_CACHE 8
#define GRAPH_SEEN 8

typedef void (*run_fn)(llm_backend *be, const char *args);

/* a recorded op: this header, then its arguments, each at a multiple of 8 bytes, with
 * every padding byte zero so that segments compare with memcmp */
struct rec_hdr {
    run_fn run;
    uint64_t size; /* of the arguments */
};

struct seg {
    char *p;
    size_t len, cap;
};

struct cached_graph {
    seg ops; /* the segment it was captured from */
    cudaGraphExec_t exec;
    uint64_t used;
};

/* a segment that ran op by op: its hash, to be captured when it comes again */
struct seen_seg {
    uint64_t hash;
    size_t len;
    int bad; /* its capture failed: it runs op by op from now on */
};

struct graph_state {
    seg cur; /* recorded, not yet run */
    seen_seg seen[GRAPH_SEEN];
    int seen_next;
    cached_graph cache[GRAPH_CACHE];
    uint64_t clock;
    long replays, captures, plain; /* counts for the debug log */
};

static const struct llm_backend_ops *plain;

static constexpr size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }

static bool seg_put(seg *s, const char *p, size_t n)
{
    if (s->cap < n) {
        char *q = (char *)realloc(s->p, n);
        if (!q)
            return false;
        s->p = q;
        s->cap = n;
    }
    memcpy(s->p, p, n);
    s->len = n;
    return true;
}

/* segments are whole 8-byte words */
static uint64_t seg_hash(const seg *s)
{
    uint64_t h = s->len;
    for (size_t i = 0; i + 8 <= s->len; i += 8) {
        uint64_t w;
        memcpy(&w, s->p + i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h;
}

static bool seg_eq(const seg *a, const seg *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static graph_state *gs(llm_backend *be)
{
    if (!be->graph)
        be->graph = (graph_state *)calloc(1, sizeof(graph_state));
    return be->graph;
}

/* Runs the recorded ops on the stream, op by op (or into a capture). */
static void run_ops(llm_backend *be, const seg *s)
{
    for (size_t off = 0; off < s->len;) {
        const rec_hdr *h = (const rec_hdr *)(s->p + off);
        h->run(be, s->p + off + sizeof *h);
        off += sizeof *h + h->size;
    }
}

void cu_graph_forget(llm_backend *be)
{
    graph_state *g = be->graph;
    if (!g)
        return;
    for (int i = 0; i < GRAPH_CACHE; i++) {
        if (g->cache[i].exec)
            cudaGraphExecDestroy(g->cache[i].exec);
        g->cache[i].exec = NULL;
        g->cache[i].ops.len = 0;
    }
    memset(g->seen, 0, sizeof g->seen);
}

/* After a failed capture: the held-back op and the cached activations the captured ops
 * left behind never ran; the segment starts again from a clean state. */
static void capture_undone(llm_backend *be)
{
    be->pend.kind = PEND_NONE;
    be->act_q8.valid = 0;
}

/* Captures the current segment into a graph of the cache and launches it; false (with
 * nothing run and the backend's state as before) when it cannot be captured. */
static bool capture(llm_backend *be, graph_state *g)
{
    if (be->err != LLM_OK ||
        cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    be->capturing = 1;
    run_ops(be, &g->cur);
    act_stale(be); /* the held-back op belongs to the segment */
    be->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(be->stream, &graph);
    if (e != cudaSuccess || be->err != LLM_OK) {
        if (graph)
            cudaGraphDestroy(graph);
        cudaGetLastError();
        be->err = LLM_OK; /* the capture's error: the ops run op by op instead */
        capture_undone(be);
        return false;
    }
    cached_graph *c = &g->cache[0];
    for (int i = 1; i < GRAPH_CACHE && c->exec; i++)
        if (!g->cache[i].exec || g->cache[i].used < c->used)
            c = &g->cache[i];
    if (c->exec && !llm_graph_update(c->exec, graph)) {
        cudaGetLastError();
        cudaGraphExecDestroy(c->exec);
        c->exec = NULL;
    }
    if (!c->exec && cudaGraphInstantiate(&c->exec, graph, 0) != cudaSuccess) {
        cudaGetLastError();
        c->exec = NULL;
        c->ops.len = 0;
        cudaGraphDestroy(graph);
        capture_undone(be);
        return false;
    }
    cudaGraphDestroy(graph);
    if (!seg_put(&c->ops, g->cur.p, g->cur.len)) {
        c->ops.len = 0; /* launched this once, never found again */
    }
    c->used = ++g->clock;
    g->captures++;
    cu_check(be, cudaGraphLaunch(c->exec, be->stream), "graph launch");
    return true;
}

/* Runs the recorded segment: a graph's replay, a capture, or op by op. */
static void seg_run(llm_backend *be)
{
    graph_state *g = be->graph;
    if (!g || !g->cur.len)
        return;
    for (int i = 0; i < GRAPH_CACHE; i++) {
        cached_graph *c = &g->cache[i];
        if (c->exec && seg_eq(&c->ops, &g->cur)) {
            act_stale(be);
            cu_check(be, cudaGraphLaunch(c->exec, be->stream), "graph launch");
            c->used = ++g->clock;
            g->replays++;
            g->cur.len = 0;
            return;
        }
    }
    /* seen before (by its hash; a collision costs a capture, never a wrong replay)? */
    const uint64_t h = seg_hash(&g->cur);
    seen_seg *sn = NULL;
    for (int i = 0; i < GRAPH_SEEN && !sn; i++)
        if (g->seen[i].len == g->cur.len && g->seen[i].hash == h)
            sn = &g->seen[i];
    if (!sn) {
        sn = &g->seen[g->seen_next];
        g->seen_next = (g->seen_next + 1) % GRAPH_SEEN;
        sn->hash = h, sn->len = g->cur.len, sn->bad = 0;
    } else if (!sn->bad) {
        if (capture(be, g)) {
            g->cur.len = 0;
            return;
        }
        sn->bad = 1;
    }
    run_ops(be, &g->cur);
    g->plain++;
    g->cur.len = 0;
}

/* Room for one more op of `size` argument bytes (zeroed), or NULL when memory is short:
 * the segment has then been run and the caller runs its op at once. */
static char *rec_op(llm_backend *be, run_fn run, size_t size)
{
    graph_state *g = be->graphs ? gs(be) : NULL;
    if (!g)
        return NULL;
    seg *s = &g->cur;
    const size_t need = s->len + sizeof(rec_hdr) + size;
    if (need > s->cap) {
        const size_t cap = need > 2 * s->cap ? need : 2 * s->cap;
        char *p = (char *)realloc(s->p, cap);
        if (!p) {
            seg_run(be);
            return NULL;
        }
        s->p = p;
        s->cap = cap;
    }
    char *p = s->p + s->len;
    memset(p, 0, sizeof(rec_hdr) + size);
    rec_hdr h = {run, size};
    memcpy(p, &h, sizeof h);
    s->len = need;
    return p + sizeof h;
}

/* ---- the recording ops ------------------------------------------------------------------
 * One template per op of the table: its arguments are stored by value, in order. */

template <auto M>
struct op_rec;

template <typename... A, void (*llm_backend_ops::*M)(llm_backend *, A...)>
struct op_rec<M> {
    static constexpr size_t bytes = (size_t(0) + ... + round8(sizeof(A)));

    static void run(llm_backend *be, const char *p)
    {
        std::tuple<A...> t;
        size_t off = 0;
        std::apply([&](A &...a) { ((memcpy(&a, p + off, sizeof a), off += round8(sizeof a)), ...); },
                   t);
        std::apply([&](A... a) { (plain->*M)(be, a...); }, t);
    }

    static void rec(llm_backend *be, A... a)
    {
        char *p = rec_op(be, run, bytes);
        if (!p) {
            (plain->*M)(be, a...);
            return;
        }
        size_t off = 0;
        ((memcpy(p + off, &a, sizeof a), off += round8(sizeof a)), ...);
    }
};

/* The ops that take the address of a struct the caller may reuse at once (a KV layer, the
 * attention arguments) keep a copy, field by field so that padding stays zero. */
static void kv_copy(llm_kv_layer *d, const llm_kv_layer *s)
{
    static_assert(sizeof(llm_kv_layer) == 32, "kv_copy copies every field of llm_kv_layer");
    memset(d, 0, sizeof *d);
    d->k = s->k, d->v = s->v, d->dtype = s->dtype;
    d->n_head_kv = s->n_head_kv, d->head_dim = s->head_dim;
}

struct rec_att {
    llm_attention_args a;
    llm_kv_layer kv;
};

static void run_attention(llm_backend *be, const char *p)
{
    rec_att r;
    memcpy(&r, p, sizeof r);
    r.a.kv = &r.kv;
    plain->attention(be, &r.a);
}

static void rec_attention(llm_backend *be, const llm_attention_args *a)
{
    /* a field added to the struct (even into padding) must be copied below */
    static_assert(sizeof(llm_attention_args) == 88 &&
                      offsetof(llm_attention_args, max_keys) + sizeof(int32_t) == 88,
                  "rec_attention copies every field of llm_attention_args");
    char *p = rec_op(be, run_attention, round8(sizeof(rec_att)));
    if (!p) {
        plain->attention(be, a);
        return;
    }
    rec_att r;
    memset(&r, 0, sizeof r);
    r.a.out = a->out, r.a.q = a->q, r.a.kv = NULL, r.a.n_tokens = a->n_tokens;
    r.a.n_head = a->n_head, r.a.block_size = a->block_size, r.a.q_pos = a->q_pos;
    r.a.q_seq = a->q_seq, r.a.block_tables = a->block_tables, r.a.max_blocks = a->max_blocks;
    r.a.scale = a->scale, r.a.softcap = a->softcap, r.a.window = a->window;
    r.a.n_runs = a->n_runs;
    /* the hint grows every step: recorded as the least value that splits the same way, so
     * that decode steps stay identical between the few steps that change the split */
    r.a.max_keys = cu_attention_keys_class(be, a->max_keys);
    kv_copy(&r.kv, a->kv);
    memcpy(p, &r, sizeof r);
}

struct rec_kvw {
    llm_kv_layer kv;
    const float *k, *v;
    const int32_t *slots;
    int64_t n_tokens;
};

static void run_kv_write(llm_backend *be, const char *p)
{
    rec_kvw r;
    memcpy(&r, p, sizeof r);
    plain->kv_write(be, &r.kv, r.k, r.v, r.slots, r.n_tokens);
}

static void rec_kv_write(llm_backend *be, const llm_kv_layer *kv, const float *k, const float *v,
                         const int32_t *slots, int64_t n_tokens)
{
    char *p = rec_op(be, run_kv_write, sizeof(rec_kvw));
    if (!p) {
        plain->kv_write(be, kv, k, v, slots, n_tokens);
        return;
    }
    rec_kvw r;
    memset(&r, 0, sizeof r);
    kv_copy(&r.kv, kv);
    r.k = k, r.v = v, r.slots = slots, r.n_tokens = n_tokens;
    memcpy(p, &r, sizeof r);
}

struct rec_kvc {
    llm_kv_layer kv;
    int32_t block_size, dst, src, pad;
};

static void run_kv_copy_block(llm_backend *be, const char *p)
{
    rec_kvc r;
    memcpy(&r, p, sizeof r);
    plain->kv_copy_block(be, &r.kv, r.block_size, r.dst, r.src);
}

static void rec_kv_copy_block(llm_backend *be, const llm_kv_layer *kv, int32_t block_size,
                              int32_t dst, int32_t src)
{
    char *p = rec_op(be, run_kv_copy_block, sizeof(rec_kvc));
    if (!p) {
        plain->kv_copy_block(be, kv, block_size, dst, src);
        return;
    }
    rec_kvc r;
    memset(&r, 0, sizeof r);
    kv_copy(&r.kv, kv);
    r.block_size = block_size, r.dst = dst, r.src = src;
    memcpy(p, &r, sizeof r);
}

/* ---- the ops that end a segment ---------------------------------------------------------- */

static void g_destroy(llm_backend *be)
{
    if (!be)
        return;
    graph_state *g = be->graph;
    if (g) {
        cudaStreamSynchronize(be->stream); /* before its graphs go */
        cu_graph_forget(be);
        cu_host->log(LLM_LOG_DEBUG, "cuda: graphs: %ld segments replayed, %ld captured, "
                     "%ld run op by op", g->replays, g->captures, g->plain);
        free(g->cur.p);
        for (int i = 0; i < GRAPH_CACHE; i++)
            free(g->cache[i].ops.p);
        free(g);
        be->graph = NULL;
    }
    plain->destroy(be);
}

static void *g_alloc(llm_backend *be, size_t n)
{
    seg_run(be);
    return plain->alloc(be, n);
}

static void g_free(llm_backend *be, void *p)
{
    seg_run(be);
    plain->free(be, p);
    cu_graph_forget(be); /* a graph may hold the address */
}

static void g_upload(llm_backend *be, void *dst, const void *src, size_t n)
{
    seg_run(be);
    plain->upload(be, dst, src, n);
}

static llm_status g_download(llm_backend *be, void *dst, const void *src, size_t n)
{
    seg_run(be);
    return plain->download(be, dst, src, n);
}

static llm_status g_prepare_weight(llm_backend *be, llm_tensor *w)
{
    seg_run(be);
    return plain->prepare_weight(be, w);
}

static void g_release_weight(llm_backend *be, llm_tensor *w)
{
    seg_run(be);
    plain->release_weight(be, w);
    cu_graph_forget(be);
}

static llm_status g_synchronize(llm_backend *be)
{
    seg_run(be);
    return plain->synchronize(be);
}

static struct llm_backend_ops graph_ops;

const struct llm_backend_ops *cu_graph_ops(const struct llm_backend_ops *base)
{
    plain = base;
    graph_ops = *base;
    graph_ops.destroy = g_destroy;
    graph_ops.alloc = g_alloc;
    graph_ops.free = g_free;
    graph_ops.upload = g_upload;
    graph_ops.download = g_download;
    graph_ops.prepare_weight = g_prepare_weight;
    graph_ops.release_weight = g_release_weight;
    graph_ops.synchronize = g_synchronize;
    graph_ops.matmul = op_rec<&llm_backend_ops::matmul>::rec;
    graph_ops.get_rows = op_rec<&llm_backend_ops::get_rows>::rec;
    graph_ops.rms_norm = op_rec<&llm_backend_ops::rms_norm>::rec;
    graph_ops.rope = op_rec<&llm_backend_ops::rope>::rec;
    graph_ops.glu = op_rec<&llm_backend_ops::glu>::rec;
    graph_ops.copy_rows = op_rec<&llm_backend_ops::copy_rows>::rec;
    graph_ops.add = op_rec<&llm_backend_ops::add>::rec;
    graph_ops.scale = op_rec<&llm_backend_ops::scale>::rec;
    graph_ops.add_bias = op_rec<&llm_backend_ops::add_bias>::rec;
    graph_ops.softcap = op_rec<&llm_backend_ops::softcap>::rec;
    graph_ops.moe_route = op_rec<&llm_backend_ops::moe_route>::rec;
    graph_ops.matmul_id = op_rec<&llm_backend_ops::matmul_id>::rec;
    graph_ops.moe_combine = op_rec<&llm_backend_ops::moe_combine>::rec;
    graph_ops.kv_write = rec_kv_write;
    graph_ops.kv_copy_block = rec_kv_copy_block;
    graph_ops.attention = rec_attention;
    graph_ops.top_k = op_rec<&llm_backend_ops::top_k>::rec;
    graph_ops.penalize = op_rec<&llm_backend_ops::penalize>::rec;
    graph_ops.row_sumexp = op_rec<&llm_backend_ops::row_sumexp>::rec;
    return &graph_ops;
}
