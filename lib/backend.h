/* backend.h - THE backend vtable: what a compute backend (cpu, cuda, rocm) provides.
 *
 * The core (lib/) drives every computation through these function pointers and knows no
 * backend's internals; a backend includes only this header. Every pointer an op takes
 * points into memory the backend allocated (alloc): activations (plain f32, row-major,
 * one row per token), the per-step index arrays (tokens, positions, sequence ids, KV
 * slots, block tables, output rows) and the KV pools. The core fills index arrays with
 * upload and reads results back with download; a backend whose memory is host memory
 * sets LLM_BACKEND_HOST_MEMORY and the core then reads and writes it directly. Weights
 * (matrices and the f32 vectors: norms, rope frequency factors) are llm_tensor views of
 * the model file that the backend prepares once (copies to the device, repacks) and
 * finds again through the tensor's `extra`. Ops may be queued: they return nothing, and
 * synchronize reports the first error. Private; never installed. */
#ifndef LLM_BACKEND_H
#define LLM_BACKEND_H

#include "dtype.h"

#define LLM_BACKEND_ABI_VERSION 5

/* One penalised logit of the penalize op: x[row * n + token] becomes
 * (v > 0 ? v / repeat : v * repeat) - sub, the sampler's arithmetic (lib/sampler.c). */
typedef struct llm_penalty {
    int32_t row, token;
    float repeat, sub;
} llm_penalty;

/* Largest k of the top_k op. */
#define LLM_TOP_K_MAX 256

/* Largest attention head the backends must handle (models are checked at load). */
#define LLM_MAX_HEAD_DIM 512

/* A weight matrix: ne[1] rows of ne[0] elements of dtype, rows `row_bytes` apart. */
typedef struct llm_tensor {
    char name[96];
    uint32_t dtype;     /* enum llm_dtype */
    int64_t ne[2];      /* [row length, rows]; vectors have ne[1] == 1 */
    size_t row_bytes;
    const void *data;   /* host bytes (the mapped file) */
    void *extra;        /* owned by the backend that prepared the tensor */
} llm_tensor;

typedef struct llm_backend llm_backend;

enum llm_act { LLM_ACT_SILU = 0, LLM_ACT_GELU_TANH = 1 };
enum llm_rope_mode { LLM_ROPE_NORM = 0, LLM_ROPE_NEOX = 2 };

/* One layer's paged KV cache: K and V pools of n_blocks blocks, each block_size token
 * slots holding a row of n_head_kv * head_dim elements of dtype (f16, bf16, or q8_0 in
 * blocks of 32 along the row; head_dim is then a multiple of 32). Token slot s of block
 * b starts at byte (b * block_size + s) * row_bytes, row_bytes = the dtype's size of a
 * row of n_head_kv * head_dim elements. */
typedef struct llm_kv_layer {
    void *k, *v;
    uint32_t dtype;     /* LLM_DT_F16, LLM_DT_BF16 or LLM_DT_Q8_0 */
    int32_t n_head_kv;
    int32_t head_dim;
} llm_kv_layer;

/* Attention of a batch of query tokens over the paged cache (which already holds the
 * batch's own keys and values). Query i belongs to sequence q_seq[i] at position q_pos[i]
 * and attends to that sequence's keys at positions [max(0, q_pos[i] - window + 1),
 * q_pos[i]] (window 0: no limit). Sequence s's position p lives in block
 * block_tables[s * max_blocks + p / block_size], slot p % block_size. */
typedef struct llm_attention_args {
    float *out;                 /* [n_tokens, n_head * head_dim] */
    const float *q;             /* [n_tokens, n_head * head_dim] */
    const llm_kv_layer *kv;
    int64_t n_tokens;
    int32_t n_head;
    int32_t block_size;
    const int32_t *q_pos;
    const int32_t *q_seq;
    const int32_t *block_tables;
    int32_t max_blocks;
    float scale;                /* applied to q·k */
    float softcap;              /* 0: none; else s = softcap * tanh(s / softcap) */
    int32_t window;             /* sliding window in tokens; 0: none */
    /* maximal runs of consecutive queries of one sequence in the batch (a prompt of 512
     * tokens: 1; 64 decoding sequences: 64); 0: not known. A hint for choosing a kernel. */
    int32_t n_runs;
    /* the most keys a query of the batch attends to (its position + 1, or the window if
     * smaller); 0: not known. A hint for splitting a query's keys between blocks. */
    int32_t max_keys;
} llm_attention_args;

typedef struct llm_backend_config {
    int32_t n_threads; /* 0: the backend's default */
    int32_t device;    /* device index for GPU backends */
} llm_backend_config;

/* llm_backend_ops.flags */
#define LLM_BACKEND_HOST_MEMORY 1u /* alloc returns host memory the core may use directly */

struct llm_backend_ops {
    uint32_t abi_version;
    uint32_t size; /* sizeof(struct llm_backend_ops) the backend was built with */
    const char *name;
    uint32_t flags; /* LLM_BACKEND_* */

    llm_status (*create)(const llm_backend_config *cfg, llm_backend **out);
    void (*destroy)(llm_backend *be);
    llm_status (*set_threads)(llm_backend *be, int32_t n_threads);

    /* memory for activations and the KV cache; alloc returns NULL on failure */
    void *(*alloc)(llm_backend *be, size_t nbytes);
    void (*free)(llm_backend *be, void *p);
    /* copies n bytes from host memory src into backend memory dst, in order with the
     * ops; src must stay unchanged until the next synchronize */
    void (*upload)(llm_backend *be, void *dst, const void *src, size_t n);
    /* copies n bytes from backend memory src to host memory dst after all queued work;
     * returns LLM_OK or the first error of the queued work */
    llm_status (*download)(llm_backend *be, void *dst, const void *src, size_t n);
    /* LLM_OK or LLM_ERR_UNSUPPORTED (dtype) with a message */
    llm_status (*prepare_weight)(llm_backend *be, llm_tensor *w);
    void (*release_weight)(llm_backend *be, llm_tensor *w);
    /* whether matmul/get_rows accept this weight dtype */
    int (*supports_dtype)(llm_backend *be, uint32_t dtype);

    /* y[j*ldy + r] = dot(x[j*ldx ...], row r of w) for j < n, r < w->ne[1] */
    void (*matmul)(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w, const float *x,
                   int64_t ldx, int64_t n);
    /* y[j] = row ids[j] of w as f32 */
    void (*get_rows)(llm_backend *be, float *y, const llm_tensor *w, const int32_t *ids,
                     int64_t n);
    /* each of n_rows rows of dim: y = x / rms(x) * w (w NULL or w->data NULL: no weight;
     * else an f32 vector of dim); y may be x */
    void (*rms_norm)(llm_backend *be, float *y, const float *x, const llm_tensor *w,
                     int64_t n_rows, int64_t dim, float eps);
    /* rotary embedding in place on x [n_tokens, n_heads, head_dim], first n_rot dims;
     * freq_factors (NULL or data NULL: none) is an f32 vector of n_rot / 2 divisors */
    void (*rope)(llm_backend *be, float *x, int64_t n_tokens, int32_t n_heads, int32_t head_dim,
                 int32_t n_rot, const int32_t *pos, float freq_base, float freq_scale,
                 const llm_tensor *freq_factors, int mode);
    /* y = act(gate) * up over n elements */
    void (*glu)(llm_backend *be, float *y, const float *gate, const float *up, int64_t n,
                int act);
    /* y[i] = x[rows[i]] for i < n, rows of dim floats (y must not alias x) */
    void (*copy_rows)(llm_backend *be, float *y, const float *x, int64_t dim,
                      const int32_t *rows, int64_t n);
    /* y = a + b over n elements (y may alias a) */
    void (*add)(llm_backend *be, float *y, const float *a, const float *b, int64_t n);
    /* y = x * s over n elements (in place allowed) */
    void (*scale)(llm_backend *be, float *y, const float *x, float s, int64_t n);
    /* each of n_rows rows of b->ne[0] floats: y[r] += b (an f32 vector: attention biases) */
    void (*add_bias)(llm_backend *be, float *y, const llm_tensor *b, int64_t n_rows);
    /* y = cap * tanh(x / cap) over n elements (in place allowed): logit soft-capping */
    void (*softcap)(llm_backend *be, float *y, const float *x, float cap, int64_t n);
    /* Mixture-of-experts routing of n tokens: p = softmax(logits[t]) over n_expert, then
     * the k largest: ids[t * k + j] (descending), weights[t * k + j] = p[id], divided by
     * their sum when norm is set. */
    void (*moe_route)(llm_backend *be, int32_t *ids, float *weights, const float *logits,
                      int64_t n, int32_t n_expert, int32_t k, int norm);
    /* Expert matmul: w holds n_expert matrices of R = w->ne[1] / n_expert rows each. For
     * token t < n and choice j < k, with e = ids[t * k + j]:
     *   y[(t * k + j) * R + r] = dot(x + t * ldx + j * ldx_k, row e * R + r of w)
     * (ldx_k 0: every choice reads the token's row). Only chosen experts are computed. */
    void (*matmul_id)(llm_backend *be, float *y, const llm_tensor *w, int32_t n_expert,
                      const float *x, int64_t ldx, int64_t ldx_k, const int32_t *ids,
                      int32_t k, int64_t n);
    /* y[t] = sum over j < k of weights[t * k + j] * x[t * k + j], rows of dim floats, summed
     * in the order of j */
    void (*moe_combine)(llm_backend *be, float *y, const float *x, const float *weights,
                        int64_t n, int32_t k, int64_t dim);
    /* writes n_tokens rows of k and v [n_tokens, n_head_kv * head_dim] to their slots:
     * token i goes to global slot slots[i] (block * block_size + offset) */
    void (*kv_write)(llm_backend *be, const llm_kv_layer *kv, const float *k, const float *v,
                     const int32_t *slots, int64_t n_tokens);
    /* copies whole KV blocks (copy-on-write of shared blocks) */
    void (*kv_copy_block)(llm_backend *be, const llm_kv_layer *kv, int32_t block_size,
                          int32_t dst, int32_t src);
    void (*attention)(llm_backend *be, const llm_attention_args *a);
    /* what the backend runs on, e.g. "avx2,fma,f16c" (static text) */
    const char *(*features)(void);
    /* waits for queued work; returns LLM_OK or the first asynchronous error */
    llm_status (*synchronize)(llm_backend *be);
    /* The k (1..LLM_TOP_K_MAX) largest of each of n_rows rows of n floats at x, for
     * sampling without copying whole rows of logits to the host: ids[r * k + j] and
     * vals[r * k + j] in descending order, equal values by lower index. NaN and -inf are
     * never chosen and +inf counts as FLT_MAX (the sampler's rules); a row with fewer than
     * k other values fills the rest with id -1 and value -inf. NULL: not provided. */
    void (*top_k)(llm_backend *be, int32_t *ids, float *vals, const float *x, int64_t n_rows,
                  int64_t n, int32_t k);
    /* The sampler's penalties in place, before top_k: n_pen entries (in backend memory) on
     * rows of n floats at x; no two entries name the same logit; rows and tokens are in
     * range (the caller's promise). NULL: not provided. */
    void (*penalize)(llm_backend *be, float *x, int64_t n, const llm_penalty *pen,
                     int64_t n_pen);
    /* z[r] = the sum over the values v of row r (n floats at x) of exp(v - max), max the
     * row's largest, NaN and -inf left out and +inf counted as FLT_MAX (the sampler's
     * rules); 0 for a row with no valid value: the mass top-p needs, for sampling from
     * top_k's candidates. NULL: not provided. */
    void (*row_sumexp)(llm_backend *be, float *z, const float *x, int64_t n_rows, int64_t n);
};

/* ---- loadable backend modules ----------------------------------------------------------
 * A GPU backend is a shared module (libllm-cuda.so) opened at run time, so that a program
 * linked against libllm runs where no GPU driver exists. The module exports one symbol,
 * LLM_BACKEND_ENTRY, of type llm_backend_entry_fn: given what libllm offers it (its error
 * and log functions, since the module cannot link libllm's hidden symbols), it returns
 * its ops, or NULL when it cannot serve this libllm (the entry protocol's version). The
 * loader checks abi_version and size before using them. */
typedef struct llm_backend_host {
    uint32_t abi_version; /* LLM_BACKEND_ABI_VERSION */
    uint32_t size;        /* sizeof(struct llm_backend_host) */
    /* sets the calling thread's last error (llm_last_error) and returns st */
    llm_status (*fail)(llm_status st, const char *fmt, ...) LLM_PRINTF(2, 3);
    /* one line through the application's log sink */
    void (*log)(llm_log_level level, const char *fmt, ...) LLM_PRINTF(2, 3);
} llm_backend_host;

#define LLM_BACKEND_ENTRY "llm_backend_entry_v1"
typedef const struct llm_backend_ops *(*llm_backend_entry_fn)(const llm_backend_host *host);

/* The backend registry. */
typedef struct llm_backend_handle {
    const struct llm_backend_ops *ops;
    llm_backend *be;
} llm_backend_handle;

LLM_INTERNAL const struct llm_backend_ops *llm__backend_cpu_ops(void);
/* The backend by name ("cpu", or NULL for the default); NULL if unknown. */
LLM_INTERNAL const struct llm_backend_ops *llm__backend_find(const char *name);
/* The ops of module libllm-<name>.so (opened once per process, looked for on
 * LLM_BACKEND_PATH, then beside libllm, then on the loader's search path); NULL with a
 * message (llm_last_error) when it cannot be opened or does not match this libllm. */
LLM_INTERNAL const struct llm_backend_ops *llm__backend_module(const char *name);
/* Chooses a backend by name and creates an instance: "cpu"; "cuda" (the module, on
 * cfg->device); "auto", "" or NULL: the CUDA module when it loads and the device exists,
 * else the CPU, saying which through the log. An explicit GPU backend that cannot start
 * is an error (LLM_ERR_UNSUPPORTED); an unknown name is LLM_ERR_INVALID_ARG. */
LLM_INTERNAL llm_status llm__backend_open(const char *name, const llm_backend_config *cfg,
                                         const struct llm_backend_ops **ops,
                                         llm_backend **be);

#endif
