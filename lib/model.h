/* model.h - the loaded model: hyper-parameters, weights bound to backend tensors, the
 * tokenizer, and the architecture table that maps a GGUF architecture name to the code
 * in lib/models/. Private; never installed. */
#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include "backend.h"
#include "gguf.h"
#include "tokenizer.h"

#define LLM_MAX_LAYERS 512

typedef struct llm_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;     /* key/query head width */
    int32_t n_ff;
    int32_t n_rot;        /* rotary dimensions per head */
    float norm_eps;
    float rope_base;      /* global layers */
    float rope_base_swa;  /* sliding-window layers */
    float rope_scale;     /* linear position scale (1: none) */
    int32_t swa_window;   /* 0: no sliding window */
    float final_softcap;  /* 0: none */
    float attn_softcap;   /* 0: none */
    float attn_scale;     /* q·k scale; 0: 1/sqrt(head_dim) */
    int32_t n_expert;     /* mixture of experts: experts per layer (0: dense FFN) */
    int32_t n_expert_used;
    int32_t n_ff_exp;     /* rows of one expert's gate/up */
} llm_hparams;

typedef struct llm_layer {
    llm_tensor attn_norm;      /* [n_embd] */
    llm_tensor wq;             /* [n_embd, n_head*head_dim] */
    llm_tensor wk;             /* [n_embd, n_head_kv*head_dim] */
    llm_tensor wv;             /* [n_embd, n_head_kv*head_dim] */
    llm_tensor wo;             /* [n_head*head_dim, n_embd] */
    llm_tensor bq;             /* [n_head*head_dim], optional (qwen2) */
    llm_tensor bk;             /* [n_head_kv*head_dim], optional */
    llm_tensor bv;             /* [n_head_kv*head_dim], optional */
    llm_tensor q_norm;         /* [head_dim], gemma3/qwen3 */
    llm_tensor k_norm;         /* [head_dim] */
    llm_tensor post_attn_norm; /* [n_embd], gemma2/3 */
    llm_tensor ffn_norm;       /* [n_embd] */
    llm_tensor w_gate;         /* [n_embd, n_ff] */
    llm_tensor w_up;           /* [n_embd, n_ff] */
    llm_tensor w_down;         /* [n_ff, n_embd] */
    llm_tensor post_ffn_norm;  /* [n_embd], gemma2/3 */
    llm_tensor ffn_gate_inp;   /* [n_embd, n_expert]: the router */
    llm_tensor gate_exps;      /* [n_embd, n_expert*n_ff_exp] */
    llm_tensor up_exps;        /* [n_embd, n_expert*n_ff_exp] */
    llm_tensor down_exps;      /* [n_ff_exp, n_expert*n_embd] */
    int32_t window;            /* sliding window of this layer; 0: full attention */
    float rope_base;
} llm_layer;

typedef struct llm_context_impl llm_context_impl;

/* Everything one forward pass over a micro-batch needs; filled by the context. */
typedef struct llm_ubatch {
    const struct llm_backend_ops *ops;
    llm_backend *be;
    int64_t n;                   /* tokens */
    int32_t n_runs;              /* runs of consecutive tokens of one sequence */
    int32_t max_pos;             /* the largest position in the micro-batch */
    const int32_t *tokens;       /* [n] */
    const int32_t *pos;          /* [n] */
    const int32_t *seq;          /* [n] sequence ids (rows of the block tables) */
    const int32_t *slots;        /* [n] KV slots the tokens are written to */
    const int32_t *block_tables; /* [n_seq][max_blocks] */
    int32_t max_blocks, block_size;
    const llm_kv_layer *kv;      /* [n_layer] */
    int64_t n_out;               /* rows that want logits */
    const int32_t *out_rows;     /* [n_out] indices into the batch */
    float *logits;               /* [n_out, n_vocab] */
    /* scratch, each sized for the largest micro-batch */
    float *x, *h, *q, *k, *v, *att, *gate, *up, *out;
    /* mixture of experts (NULL for dense models): router logits [n, n_expert], chosen
     * experts and their weights [n, n_expert_used], expert outputs [n, n_expert_used,
     * n_embd]; gate and up then hold [n, n_expert_used, n_ff_exp] */
    float *moe_logits, *moe_weights, *moe_out;
    int32_t *moe_ids;
} llm_ubatch;

/* llm_attention_args.max_keys of a layer with sliding window `window` (0: none) */
static inline int32_t llm__max_keys(const llm_ubatch *s, int32_t window)
{
    const int32_t n = s->max_pos + 1;
    return window > 0 && window < n ? window : n;
}

typedef struct llm_arch {
    const char *name;
    /* reads hyper-parameters and binds the layer tensors */
    llm_status (*load)(llm_model *m);
    llm_status (*forward)(const llm_model *m, const llm_ubatch *s);
} llm_arch;

struct llm_model {
    llm_gguf *gguf;
    const llm_arch *arch;
    const char *arch_name;
    const char *name;
    llm_hparams hp;
    llm_tensor tok_embd;    /* [n_embd, n_vocab] */
    llm_tensor output_norm; /* [n_embd] */
    llm_tensor output;      /* [n_embd, n_vocab]; the embedding when tied */
    llm_tensor rope_freqs;  /* [n_rot/2] optional frequency factors */
    llm_layer *layers;
    int output_tied;        /* output is tok_embd (copied again after preparation) */
    /* every tensor bound by llm__model_tensor, in binding order: what the backend
     * prepares at load and releases at free */
    llm_tensor **tensors;
    int32_t n_tensors, cap_tensors;
    uint64_t n_params;
    llm_tokenizer *tok;
    const char *chat_template;
    const struct llm_backend_ops *ops;
    llm_backend *be; /* owns prepared weights */
    int32_t device;  /* the GPU the weights live on; contexts create their backends there */
};

/* Binds tensor `name` into *t, checking its shape [ne0, ne1] (ne1 = 1 for a vector), and
 * registers it for preparation by the backend (t must live in the model: m->layers or a
 * field of m). required = 0: a missing tensor leaves t->data NULL and succeeds. */
LLM_INTERNAL llm_status llm__model_tensor(llm_model *m, llm_tensor *t, const char *name,
                                          int64_t ne0, int64_t ne1, int required);
/* Same with "blk.%d.<suffix>". */
LLM_INTERNAL llm_status llm__layer_tensor(llm_model *m, llm_tensor *t, int il, const char *suffix,
                                          int64_t ne0, int64_t ne1, int required);
/* A fused matrix "blk.%d.<suffix>" of rows[0] + ... + rows[n_parts - 1] rows, bound as
 * n_parts matrices (row-range views, each registered for preparation). required = 0: a
 * missing tensor leaves parts[0]->data NULL and succeeds. */
LLM_INTERNAL llm_status llm__layer_tensor_split(llm_model *m, int il, const char *suffix,
                                                int64_t ne0, int n_parts,
                                                llm_tensor *const *parts, const int64_t *rows,
                                                int required);
/* Reads "<arch>.<key>" into *out; required = 0 keeps *out when missing. */
LLM_INTERNAL llm_status llm__model_u32(llm_model *m, const char *key, int32_t *out, int required);
LLM_INTERNAL llm_status llm__model_f32(llm_model *m, const char *key, float *out, int required);

/* Reads the hyper-parameters every decoder shares ("<arch>.context_length" ...); defaults
 * set in m->hp beforehand stay where a key is missing. head_dim defaults to
 * n_embd / n_head and n_rot to head_dim. */
LLM_INTERNAL llm_status llm__model_common_hparams(llm_model *m);
/* Binds token_embd (setting n_vocab), output_norm and output (tied to the embedding when
 * absent), and allocates m->layers. */
LLM_INTERNAL llm_status llm__model_bind_io(llm_model *m);

extern const llm_arch llm__arch_llama;
extern const llm_arch llm__arch_qwen2;
extern const llm_arch llm__arch_qwen3;
extern const llm_arch llm__arch_qwen3moe;
extern const llm_arch llm__arch_phi3;
extern const llm_arch llm__arch_gemma2;
extern const llm_arch llm__arch_gemma3;

#endif
