/* context.c - the public context: a paged KV cache, scratch memory sized once at
 * creation, and llm_decode, which splits a batch into micro-batches and runs the
 * architecture's forward pass over them. */
#include <stdio.h>
#include <string.h>

#include "context.h"



llm_status llm__context_fail(llm_context *c, llm_status st)
{
    snprintf(c->err, sizeof c->err, "%s", llm_last_error());
    return st;
}

static void read_params(llm_context_params *dst, const llm_context_params *src)
{
    llm_context_params_init(dst);
    if (src) {
        size_t n = src->size < sizeof *dst ? src->size : sizeof *dst;
        memcpy(dst, src, n);
        dst->size = sizeof *dst;
    }
}

/* block tables up to this size are uploaded whole at each llm_decode; larger ones only in
 * the columns used, at least TABLE_MIN_COLS of them */
#define TABLE_FULL_BYTES ((size_t)16 << 10)
#define TABLE_MIN_COLS 16

static void copy_block(void *user, int32_t dst, int32_t src)
{
    llm_context *c = user;
    for (int il = 0; il < c->model->hp.n_layer; il++)
        c->ops->kv_copy_block(c->be, &c->layers[il], c->block_size, dst, src);
}

llm_status llm_context_create(llm_model *model, const llm_context_params *params,
                              llm_context **out)
{
    llm__clear_error();
    if (!out)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_create: out is NULL");
    *out = NULL;
    if (!model)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_create: model is NULL");
    if (params && params->size < sizeof(size_t))
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_create: params->size is not set "
                         "(call llm_context_params_init)");
    llm_context_params p;
    read_params(&p, params);
    const llm_hparams *hp = &model->hp;
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_seq_max < 0 || p.n_threads < 0 ||
        p.block_size < 0 || p.block_size > 1024 || p.n_seq_max > 65536 || p.n_threads > 1024 ||
        p.kv_type < 0 || p.kv_type > LLM_KV_Q8_0)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_create: a parameter is out of range "
                         "(n_ctx %d, n_batch %d, n_seq_max %d, n_threads %d, block_size %d, "
                         "kv_type %d)", p.n_ctx, p.n_batch, p.n_seq_max, p.n_threads,
                         p.block_size, p.kv_type);
    static const uint32_t kv_dtypes[] = {LLM_DT_F16, LLM_DT_BF16, LLM_DT_Q8_0};
    const uint32_t kv_dtype = kv_dtypes[p.kv_type];
    if (kv_dtype == LLM_DT_Q8_0 && model->hp.head_dim % 32 != 0)
        return llm__fail(LLM_ERR_UNSUPPORTED, "llm_context_create: a q8_0 KV cache needs a head "
                         "width that is a multiple of 32 (this model's is %d)",
                         model->hp.head_dim);
    llm_context *c = llm__calloc(1, sizeof *c);
    if (!c)
        return llm__fail(LLM_ERR_NO_MEMORY, "llm_context_create: out of memory");
    c->model = model;
    c->ops = model->ops;
    c->block_size = p.block_size ? p.block_size : 16;
    c->n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_ctx = (c->n_ctx + c->block_size - 1) / c->block_size * c->block_size;
    c->n_batch = p.n_batch ? p.n_batch : 512;
    c->n_seq = p.n_seq_max ? p.n_seq_max : 1;
    c->n_threads = p.n_threads;
    c->host_memory = (c->ops->flags & LLM_BACKEND_HOST_MEMORY) != 0;
    c->flags = p.flags;
    /* the prefix-cache chain starts from a hash of what makes the model this model */
    {
        uint64_t h = 1469598103934665603ull;
        const char *parts[] = {model->arch_name, model->name};
        for (int i = 0; i < 2; i++)
            for (const char *q = parts[i]; q && *q; q++)
                h = (h ^ (uint8_t)*q) * 1099511628211ull;
        const uint64_t nums[] = {model->n_params, (uint64_t)hp->n_vocab, (uint64_t)hp->n_layer,
                                 (uint64_t)hp->n_embd, (uint64_t)llm__gguf_n_tensors(model->gguf)};
        for (int i = 0; i < 5; i++)
            h = (h ^ nums[i]) * 1099511628211ull;
        c->prefix_seed = h;
    }

    llm_status st;
    llm_backend_config cfg = {.n_threads = p.n_threads, .device = model->device};
    if ((st = c->ops->create(&cfg, &c->be)) != LLM_OK)
        goto fail;
    if ((st = llm__kv_create(c->n_ctx / c->block_size, c->block_size, c->n_seq, &c->kv)))
        goto fail;
    c->layers = llm__calloc((size_t)hp->n_layer, sizeof(llm_kv_layer));
    if (!c->layers)
        goto oom;
    const size_t kv_row = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
    const size_t pool_bytes = (size_t)c->n_ctx * llm__dtype_row_size(kv_dtype, (int64_t)kv_row);
    for (int il = 0; il < hp->n_layer; il++) {
        llm_kv_layer *l = &c->layers[il];
        l->dtype = kv_dtype;
        l->n_head_kv = hp->n_head_kv;
        l->head_dim = hp->head_dim;
        l->k = c->ops->alloc(c->be, pool_bytes);
        l->v = c->ops->alloc(c->be, pool_bytes);
        if (!l->k || !l->v)
            goto oom;
    }
    const size_t nb = (size_t)c->n_batch;
    const size_t E = (size_t)hp->n_embd, H = (size_t)hp->n_head * (size_t)hp->head_dim,
                 KV = kv_row, F_exp = (size_t)hp->n_expert_used * (size_t)hp->n_ff_exp,
                 F = (size_t)hp->n_ff > F_exp ? (size_t)hp->n_ff : F_exp;
    float **bufs[] = {&c->x, &c->h, &c->q, &c->k, &c->v, &c->att, &c->gate, &c->up};
    const size_t widths[] = {E, E > H ? E : H, H, KV, KV, H, F, F};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i] = c->ops->alloc(c->be, nb * widths[i] * sizeof(float));
        if (!*bufs[i])
            goto oom;
    }
    if (hp->n_expert > 0) {
        const size_t k = (size_t)hp->n_expert_used;
        c->moe_logits = c->ops->alloc(c->be, nb * (size_t)hp->n_expert * sizeof(float));
        c->moe_weights = c->ops->alloc(c->be, nb * k * sizeof(float));
        c->moe_out = c->ops->alloc(c->be, nb * k * E * sizeof(float));
        c->moe_ids = c->ops->alloc(c->be, nb * k * sizeof(int32_t));
        if (!c->moe_logits || !c->moe_weights || !c->moe_out || !c->moe_ids)
            goto oom;
    }
    int32_t **ints[] = {&c->tokens, &c->pos, &c->seq, &c->slots, &c->out_rows};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        *ints[i] = llm__malloc(nb * sizeof(int32_t));
        if (!*ints[i])
            goto oom;
    }
    if (!c->host_memory) {
        const size_t n_ints = 5 * nb + (size_t)c->n_seq * (size_t)llm__kv_max_blocks(c->kv);
        c->d_ints = c->ops->alloc(c->be, n_ints * sizeof(int32_t));
        c->tables = llm__malloc((size_t)c->n_seq * (size_t)llm__kv_max_blocks(c->kv) *
                                sizeof(int32_t));
        if (!c->d_ints || !c->tables)
            goto oom;
    }
    c->seq_len0 = llm__calloc((size_t)c->n_seq, sizeof(int32_t));
    c->seq_count = llm__calloc((size_t)c->n_seq, sizeof(int32_t));
    if (!c->seq_len0 || !c->seq_count)
        goto oom;
    *out = c;
    return LLM_OK;
oom:
    st = llm__fail(LLM_ERR_NO_MEMORY, "llm_context_create: out of memory (n_ctx %d, n_batch %d)",
                   c->n_ctx, c->n_batch);
fail:
    llm_context_free(c);
    return st;
}

void llm_context_free(llm_context *c)
{
    if (!c)
        return;
    llm__engine_free(c->engine); /* stops its worker first */
    if (c->be) {
        for (int il = 0; c->layers && il < c->model->hp.n_layer; il++) {
            c->ops->free(c->be, c->layers[il].k);
            c->ops->free(c->be, c->layers[il].v);
        }
        float *bufs[] = {c->x,        c->h,          c->q,           c->k,
                         c->v,        c->att,        c->gate,        c->up,
                         c->d_logits, c->moe_logits, c->moe_weights, c->moe_out};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            c->ops->free(c->be, bufs[i]);
        c->ops->free(c->be, c->d_ints);
        c->ops->free(c->be, c->d_cand);
        c->ops->free(c->be, c->d_pen);
        c->ops->free(c->be, c->moe_ids);
        c->ops->destroy(c->be);
    }
    llm__free(c->layers);
    if (!c->host_memory) {
        llm__free(c->logits);
        llm__free(c->cand_ids);
        llm__free(c->cand_vals);
        llm__free(c->cand_z);
    }
    llm__free(c->pen);
    llm__free(c->row_ready);
    llm__kv_free(c->kv);
    int32_t *ints[] = {c->tokens, c->pos, c->seq, c->slots, c->out_rows, c->seq_len0,
                       c->seq_count, c->tables};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        llm__free(ints[i]);
    llm__free(c);
}

const char *llm_context_last_error(const llm_context *c)
{
    return c ? c->err : "";
}

int32_t llm_context_n_ctx(const llm_context *c)
{
    return c ? c->n_ctx : 0;
}

llm_status llm_context_set_threads(llm_context *c, int32_t n_threads)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_context_set_threads: ctx is NULL");
    llm_status st = c->ops->set_threads(c->be, n_threads);
    return st == LLM_OK ? st : llm__context_fail(c, st);
}

int32_t llm_kv_seq_length(const llm_context *c, int32_t seq_id)
{
    if (!c || seq_id < 0 || seq_id >= c->n_seq)
        return -1;
    return llm__kv_seq_len(c->kv, seq_id);
}

llm_status llm_kv_seq_truncate(llm_context *c, int32_t seq_id, int32_t p0)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_kv_seq_truncate: ctx is NULL");
    if (llm__engine_busy(c))
        return llm__context_fail(c, llm__fail(LLM_ERR_INVALID_ARG, "llm_kv_seq_truncate: the "
                                              "context is serving requests"));
    if (seq_id < -1 || seq_id >= c->n_seq || p0 < 0) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_kv_seq_truncate: sequence %d / position %d out of "
                  "range (%d sequences)", seq_id, p0, c->n_seq);
        return llm__context_fail(c, LLM_ERR_INVALID_ARG);
    }
    for (int32_t s = 0; s < c->n_seq; s++)
        if (seq_id == -1 || s == seq_id)
            llm__kv_seq_truncate(c->kv, s, p0);
    return LLM_OK;
}

void llm_kv_clear(llm_context *c)
{
    if (c)
        llm_kv_seq_truncate(c, -1, 0);
}

const float *llm__context_row(llm_context *c, int32_t i)
{
    float *row = c->logits + (int64_t)i * c->model->hp.n_vocab;
    if (c->rows_deferred && !c->row_ready[i]) {
        const size_t n = (size_t)c->model->hp.n_vocab;
        llm_status st = c->ops->download(c->be, row, c->d_logits + (int64_t)i * (int64_t)n,
                                         n * sizeof(float));
        if (st != LLM_OK) {
            llm__context_fail(c, st);
            return NULL;
        }
        c->row_ready[i] = 1;
    }
    return row;
}

const float *llm_context_logits(llm_context *c, int32_t i)
{
    if (!c || c->n_logits == 0)
        return NULL;
    if (i < 0)
        i += c->n_logits;
    if (i < 0 || i >= c->n_logits)
        return NULL;
    return llm__context_row(c, i);
}

/* Room for the candidates of n_out rows (see cand_k in context.h). */
static llm_status cand_reserve(llm_context *c, int64_t n_out)
{
    if (n_out <= c->cand_rows && c->cand_k <= c->cand_kalloc)
        return LLM_OK;
    const size_t n = (size_t)n_out * (size_t)c->cand_k;
    /* ids, values, then each row's z (row_sumexp) */
    void *d = c->ops->alloc(c->be, n * (sizeof(int32_t) + sizeof(float)) +
                                       (size_t)n_out * sizeof(float));
    uint8_t *ready = llm__malloc((size_t)n_out);
    int32_t *ids = c->host_memory ? d : llm__malloc(n * sizeof(int32_t));
    float *vals = c->host_memory ? (d ? (float *)((int32_t *)d + n) : NULL)
                                 : llm__malloc(n * sizeof(float));
    float *z = c->host_memory ? (d ? (float *)((int32_t *)d + n) + n : NULL)
                              : llm__malloc((size_t)n_out * sizeof(float));
    if (!d || !ready || !ids || !vals || !z) {
        if (!c->host_memory) {
            llm__free(ids);
            llm__free(vals);
            llm__free(z);
        }
        llm__free(ready);
        if (d)
            c->ops->free(c->be, d);
        return llm__fail(LLM_ERR_NO_MEMORY, "llm_decode: no memory for the candidates of "
                         "%lld rows of logits", (long long)n_out);
    }
    c->ops->free(c->be, c->d_cand);
    if (!c->host_memory) {
        llm__free(c->cand_ids);
        llm__free(c->cand_vals);
        llm__free(c->cand_z);
    }
    llm__free(c->row_ready);
    c->d_cand = d;
    c->cand_ids = ids;
    c->cand_vals = vals;
    c->cand_z = z;
    c->row_ready = ready;
    c->cand_rows = (int32_t)n_out;
    c->cand_kalloc = c->cand_k;
    return LLM_OK;
}

/* Checks the batch and assigns each token its sequence and position. */
static llm_status check_batch(llm_context *c, const llm_batch *b)
{
    if (b->size < offsetof(llm_batch, logits) + sizeof(b->logits))
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: batch->size %zu is too small "
                         "(call llm_batch_init)", b->size);
    if (b->n_tokens < 1 || !b->tokens)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: the batch has no tokens");
    const int32_t n_vocab = c->model->hp.n_vocab;
    for (int32_t s = 0; s < c->n_seq; s++) {
        c->seq_len0[s] = llm__kv_seq_len(c->kv, s);
        c->seq_count[s] = 0;
    }
    for (int32_t i = 0; i < b->n_tokens; i++) {
        const int32_t s = b->seq_ids ? b->seq_ids[i] : 0;
        if (b->tokens[i] < 0 || b->tokens[i] >= n_vocab)
            return llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: token %d at batch index %d is "
                             "outside the vocabulary (%d)", b->tokens[i], i, n_vocab);
        if (s < 0 || s >= c->n_seq)
            return llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: sequence id %d at batch index %d "
                             "is outside [0, %d) (n_seq_max)", s, i, c->n_seq);
        const int32_t expect = c->seq_len0[s] + c->seq_count[s]++;
        if (b->positions && b->positions[i] != expect)
            return llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: token at batch index %d has "
                             "position %d, but sequence %d continues at %d", i,
                             b->positions[i], s, expect);
    }
    return LLM_OK;
}

llm_status llm_decode(llm_context *c, const llm_batch *b)
{
    if (!c)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: ctx is NULL");
    if (llm__engine_busy(c))
        return llm__context_fail(c, llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: the context is "
                                              "serving requests (llm_request_submit)"));
    return llm__context_decode(c, b);
}

/* The entries of c->pen for rows [out_done, out_done + n_rows) (from *next on; they are in
 * row order), applied by the backend to this micro-batch's logits. */
static llm_status apply_penalties(llm_context *c, int32_t *next, int64_t out_done,
                                  int64_t n_rows, float *logits)
{
    const int32_t i0 = *next;
    int32_t i1 = i0;
    while (i1 < c->n_pen && c->pen[i1].row < out_done + n_rows)
        c->pen[i1].row -= (int32_t)out_done, i1++;
    *next = i1;
    if (i1 == i0)
        return LLM_OK;
    if (i1 - i0 > c->d_pen_cap) {
        const int32_t cap = c->n_pen > 256 ? c->n_pen : 256;
        llm_penalty *d = c->ops->alloc(c->be, (size_t)cap * sizeof *d);
        if (!d)
            return llm__fail(LLM_ERR_NO_MEMORY, "llm_decode: no backend memory for %d "
                             "penalties", c->n_pen);
        c->ops->free(c->be, c->d_pen);
        c->d_pen = d;
        c->d_pen_cap = cap;
    }
    c->ops->upload(c->be, c->d_pen, c->pen + i0, (size_t)(i1 - i0) * sizeof *c->pen);
    c->ops->penalize(c->be, logits, c->model->hp.n_vocab, c->d_pen, i1 - i0);
    return LLM_OK; /* errors come with the next synchronize or download */
}

llm_status llm__context_decode(llm_context *c, const llm_batch *b)
{
    if (!b)
        return llm__context_fail(c, llm__fail(LLM_ERR_INVALID_ARG, "llm_decode: batch is NULL"));
    c->n_logits = 0;
    c->rows_deferred = 0;
    const int cand = c->cand_k > 0 && c->ops->top_k;
    llm_status st = check_batch(c, b);
    if (st != LLM_OK)
        return llm__context_fail(c, st);
    /* reserve cache blocks for every sequence first, so a full cache changes nothing */
    for (int32_t s = 0; s < c->n_seq; s++) {
        if (!c->seq_count[s])
            continue;
        st = llm__kv_seq_grow(c->kv, s, c->seq_len0[s] + c->seq_count[s], copy_block, c);
        if (st != LLM_OK)
            goto rollback;
    }
    /* logits rows */
    const int32_t n_vocab = c->model->hp.n_vocab;
    int64_t n_out = 0;
    for (int32_t i = 0; i < b->n_tokens; i++)
        n_out += b->logits ? b->logits[i] != 0 : i == b->n_tokens - 1;
    if (n_out > c->logits_cap) {
        const size_t bytes = (size_t)n_out * (size_t)n_vocab * sizeof(float);
        float *d = c->ops->alloc(c->be, bytes);
        float *h = c->host_memory ? d : llm__malloc(bytes);
        if (!d || !h) {
            if (d)
                c->ops->free(c->be, d);
            st = llm__fail(LLM_ERR_NO_MEMORY, "llm_decode: no memory for %lld rows of logits",
                           (long long)n_out);
            goto rollback;
        }
        c->ops->free(c->be, c->d_logits);
        if (!c->host_memory)
            llm__free(c->logits);
        c->d_logits = d;
        c->logits = h;
        c->logits_cap = n_out;
    }
    if (cand && n_out > 0 && (st = cand_reserve(c, n_out)) != LLM_OK)
        goto rollback;
    const int32_t *tables = llm__kv_block_tables(c->kv);
    int32_t max_blocks = llm__kv_max_blocks(c->kv);
    int32_t *d_tokens = c->tokens, *d_pos = c->pos, *d_seq = c->seq, *d_slots = c->slots,
            *d_out_rows = c->out_rows;
    const int32_t *d_tables = tables;
    if (!c->host_memory) {
        /* The block tables are final for the whole call: uploaded once. Where they are
         * large (256 sequences of a large cache: megabytes at every step), only the
         * columns the call's sequences reach go, a power of two of them (at least
         * TABLE_MIN_COLS) so that decode steps keep their CUDA graphs for many steps; the
         * attention ops take that width as the tables' row stride. */
        int32_t used = max_blocks;
        if ((size_t)c->n_seq * (size_t)max_blocks * sizeof(int32_t) > TABLE_FULL_BYTES) {
            int32_t need = 1;
            for (int32_t s = 0; s < c->n_seq; s++)
                if (c->seq_count[s]) {
                    const int32_t nb_s =
                        (c->seq_len0[s] + c->seq_count[s] + c->block_size - 1) / c->block_size;
                    need = nb_s > need ? nb_s : need;
                }
            used = TABLE_MIN_COLS;
            while (used < need && used < max_blocks)
                used *= 2;
            used = used < max_blocks ? used : max_blocks;
        }
        const int32_t *up = tables;
        if (used < max_blocks) {
            for (int32_t s = 0; s < c->n_seq; s++)
                memcpy(c->tables + (size_t)s * (size_t)used,
                       tables + (size_t)s * (size_t)max_blocks, (size_t)used * sizeof(int32_t));
            up = c->tables;
            max_blocks = used;
        }
        const size_t nb = (size_t)c->n_batch;
        d_tokens = c->d_ints, d_pos = d_tokens + nb, d_seq = d_pos + nb, d_slots = d_seq + nb;
        d_out_rows = d_slots + nb;
        d_tables = d_out_rows + nb;
        c->ops->upload(c->be, d_out_rows + nb, up,
                       (size_t)c->n_seq * (size_t)max_blocks * sizeof(int32_t));
    }
    /* micro-batches of at most n_batch tokens */
    for (int32_t s = 0; s < c->n_seq; s++)
        c->seq_count[s] = 0;
    int64_t out_done = 0;
    int32_t pen_next = 0; /* the first entry of c->pen not yet applied */
    for (int32_t i0 = 0; i0 < b->n_tokens; i0 += c->n_batch) {
        const int32_t n = b->n_tokens - i0 < c->n_batch ? b->n_tokens - i0 : c->n_batch;
        int64_t n_out_ub = 0;
        int32_t n_runs = 0, max_pos = 0;
        for (int32_t j = 0; j < n; j++) {
            const int32_t i = i0 + j, s = b->seq_ids ? b->seq_ids[i] : 0;
            n_runs += j == 0 || s != c->seq[j - 1];
            c->tokens[j] = b->tokens[i];
            c->seq[j] = s;
            c->pos[j] = c->seq_len0[s] + c->seq_count[s]++;
            max_pos = c->pos[j] > max_pos ? c->pos[j] : max_pos;
            c->slots[j] = llm__kv_slot(c->kv, s, c->pos[j]);
            if (b->logits ? b->logits[i] != 0 : i == b->n_tokens - 1)
                c->out_rows[n_out_ub++] = j;
        }
        if (!c->host_memory) {
            const size_t bytes = (size_t)n * sizeof(int32_t);
            c->ops->upload(c->be, d_tokens, c->tokens, bytes);
            c->ops->upload(c->be, d_pos, c->pos, bytes);
            c->ops->upload(c->be, d_seq, c->seq, bytes);
            c->ops->upload(c->be, d_slots, c->slots, bytes);
            c->ops->upload(c->be, d_out_rows, c->out_rows, (size_t)n_out_ub * sizeof(int32_t));
        }
        llm_ubatch step = {
            .ops = c->ops, .be = c->be, .n = n, .n_runs = n_runs, .max_pos = max_pos,
            .tokens = d_tokens, .pos = d_pos, .seq = d_seq, .slots = d_slots,
            .block_tables = d_tables, .max_blocks = max_blocks, .block_size = c->block_size,
            .kv = c->layers, .n_out = n_out_ub, .out_rows = d_out_rows,
            .logits = c->d_logits + out_done * n_vocab, .x = c->x, .h = c->h, .q = c->q,
            .k = c->k, .v = c->v, .att = c->att, .gate = c->gate, .up = c->up,
            .moe_logits = c->moe_logits, .moe_weights = c->moe_weights, .moe_out = c->moe_out,
            .moe_ids = c->moe_ids,
        };
        st = c->model->arch->forward(c->model, &step);
        if (st == LLM_OK && cand && n_out_ub && pen_next < c->n_pen)
            st = apply_penalties(c, &pen_next, out_done, n_out_ub, step.logits);
        if (st == LLM_OK && cand && n_out_ub) {
            /* each row's best cand_k; the rows stay where they are until asked for */
            const int64_t k = c->cand_k, n_ids = (int64_t)c->cand_rows * c->cand_kalloc;
            int32_t *d_ids = (int32_t *)c->d_cand + out_done * k;
            float *d_vals = (float *)((int32_t *)c->d_cand + n_ids) + out_done * k;
            const size_t nb = (size_t)(n_out_ub * k) * sizeof(int32_t);
            c->ops->top_k(c->be, d_ids, d_vals, step.logits, n_out_ub, n_vocab, (int32_t)k);
            float *d_z = (float *)((int32_t *)c->d_cand + 2 * n_ids) + out_done;
            const int z = c->cand_want_z && c->ops->row_sumexp;
            if (z)
                c->ops->row_sumexp(c->be, d_z, step.logits, n_out_ub, n_vocab);
            if (c->host_memory) {
                st = c->ops->synchronize(c->be);
            } else {
                st = c->ops->download(c->be, c->cand_ids + out_done * k, d_ids, nb);
                if (st == LLM_OK)
                    st = c->ops->download(c->be, c->cand_vals + out_done * k, d_vals, nb);
                if (st == LLM_OK && z)
                    st = c->ops->download(c->be, c->cand_z + out_done, d_z,
                                          (size_t)n_out_ub * sizeof(float));
            }
            memset(c->row_ready + out_done, c->host_memory, (size_t)n_out_ub);
        } else if (st == LLM_OK && !c->host_memory && n_out_ub) {
            st = c->ops->download(c->be, c->logits + out_done * n_vocab, step.logits,
                                  (size_t)n_out_ub * (size_t)n_vocab * sizeof(float));
        }
        if (st != LLM_OK)
            goto rollback;
        out_done += n_out_ub;
    }
    c->n_logits = (int32_t)n_out;
    c->rows_deferred = cand && !c->host_memory;
    return LLM_OK;
rollback:
    for (int32_t s = 0; s < c->n_seq; s++)
        llm__kv_seq_truncate(c->kv, s, c->seq_len0[s]);
    c->n_logits = 0;
    return llm__context_fail(c, st);
}
