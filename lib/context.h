/* context.h - the context's internals, shared by context.c (llm_decode) and
 * scheduler.c (the request engine). Private; never installed. */
#ifndef LLM_CONTEXT_H
#define LLM_CONTEXT_H

#include "kv_cache.h"
#include "model.h"

typedef struct llm_engine llm_engine;

struct llm_context {
    llm_model *model;
    const struct llm_backend_ops *ops;
    llm_backend *be;
    int32_t n_ctx, n_batch, n_seq, block_size, n_threads;
    llm_kv_cache *kv;
    llm_kv_layer *layers; /* [n_layer] */
    /* activations for one micro-batch of n_batch tokens */
    float *x, *h, *q, *k, *v, *att, *gate, *up;
    /* mixture of experts only (see llm_ubatch) */
    float *moe_logits, *moe_weights, *moe_out;
    int32_t *moe_ids;
    /* per-token bookkeeping of the current micro-batch, n_batch entries each: built in
     * host memory, then uploaded to the backend's copies (the same arrays when the
     * backend's memory is host memory) */
    int32_t *tokens, *pos, *seq, *slots, *out_rows;
    int32_t *d_ints;   /* backend copy: tokens, pos, seq, slots, out_rows, block tables */
    int32_t *tables;   /* host staging of the block tables' used columns (not host memory) */
    int host_memory;
    /* per-sequence lengths before the current call, for rollback */
    int32_t *seq_len0, *seq_count;
    float *logits;      /* host rows the caller reads */
    float *d_logits;    /* backend rows (== logits for host memory) */
    int64_t logits_cap; /* rows */
    int32_t n_logits;
    /* Candidates instead of rows (the request engine, on a backend with top_k): with
     * cand_k > 0, llm__context_decode leaves the logits rows in backend memory and brings
     * back only each row's cand_k best (cand_ids/cand_vals, [n_logits][cand_k]); a row
     * is copied to the host when first asked for (row_ready). */
    int32_t cand_k;
    int32_t *cand_ids;
    float *cand_vals;
    float *cand_z;       /* [n_logits] each row's mass (row_sumexp), when cand_want_z */
    int cand_want_z;     /* set by the request engine for a step with top-p rows */
    void *d_cand;        /* backend copy: ids then values, cand_rows * cand_kalloc each */
    uint8_t *row_ready;  /* [cand_rows] */
    int rows_deferred;   /* the last decode left its rows in backend memory */
    int32_t cand_rows, cand_kalloc; /* sizes of the candidate buffers */
    /* penalties the backend applies before its top_k (the request engine fills them for
     * the rows it will sample from candidates): n_pen entries in row order, rows counted
     * over the whole batch; llm__context_decode uses them once and clears n_pen */
    llm_penalty *pen;
    int32_t n_pen, cap_pen;
    llm_penalty *d_pen;  /* backend copy */
    int32_t d_pen_cap;
    /* whether the request engine samples from candidates: 0 by the backend (those whose
     * memory is not host memory) unless LLM_ENGINE_CANDIDATES is set to 0 or 1; 1 always
     * (where the backend has top_k); -1 never */
    int32_t engine_cand;
    uint32_t flags;     /* LLM_CONTEXT_* */
    uint64_t prefix_seed; /* names the model in prefix-cache hashes */
    llm_engine *engine; /* the request engine, created on first use */
    char err[1024];
};

/* llm_decode without the request-engine guard: the engine's own way in. */
LLM_INTERNAL llm_status llm__context_decode(llm_context *c, const llm_batch *b);
/* Row i (0 <= i < n_logits) of the last decode's logits in host memory, copied from the
 * backend first when the decode left it there; NULL with the context's error set when that
 * copy fails. */
LLM_INTERNAL const float *llm__context_row(llm_context *c, int32_t i);
/* Copies the thread's last error into the context's message and returns st. */
LLM_INTERNAL llm_status llm__context_fail(llm_context *c, llm_status st);

/* scheduler.c */
LLM_INTERNAL void llm__engine_free(llm_engine *e);
/* Non-zero while the engine holds requests (llm_decode and llm_kv_* are refused). */
LLM_INTERNAL int llm__engine_busy(llm_context *c);

#endif
