/* gemma3.c - Gemma 3 and Gemma 2, which differ in data only (struct gemma_kind).
 *
 * Gemma 3: scaled embeddings, RMS norms around both sub-blocks (pre and post),
 * per-head RMS norms on q and k, NEOX-style rotary embeddings with a different base for
 * the sliding-window layers (5 of every 6) and the global ones, and a GeGLU FFN.
 *
 *   x = embed(tokens) * sqrt(n_embd)
 *   for each layer:
 *       h = rms_norm(x) * attn_norm
 *       q, k, v = h·Wq, h·Wk, h·Wv
 *       q = rms_norm_per_head(q) * q_norm;  k = rms_norm_per_head(k) * k_norm
 *       rope(q), rope(k);  q *= 1/sqrt(head_dim);  cache(k, v)
 *       x = x + rms_norm(attention(q, cache; window of the layer)·Wo) * post_attn_norm
 *       h = rms_norm(x) * ffn_norm
 *       x = x + rms_norm((gelu(h·Wgate) * h·Wup)·Wdown) * post_ffn_norm
 *   logits = (rms_norm(x) * output_norm)·Wembᵀ
 * (The GGUF norm weights already include Gemma's "+1".)
 *
 * Gemma 2 has no q/k norms, scales q by attention.scale-like 1/sqrt(head_dim) (1/sqrt(n_embd
 * / n_head) for the 46-layer 27B, as llama.cpp does), soft-caps the attention scores
 * (default 50) and the final logits (default 30), alternates sliding-window and global
 * layers, and uses one rope base for both.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../model.h"

typedef struct gemma_kind {
    int gemma3;      /* q/k norms; separate rope bases; linear rope scaling on global layers */
    int swa_pattern; /* every swa_pattern-th layer attends globally, the others in a window */
} gemma_kind;

static const gemma_kind kind_gemma2 = {.gemma3 = 0, .swa_pattern = 2};
static const gemma_kind kind_gemma3 = {.gemma3 = 1, .swa_pattern = 6};

static llm_status gemma_load(llm_model *m, const gemma_kind *kind)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    hp->n_ctx_train = kind->gemma3 ? 32768 : 8192;
    hp->rope_base = kind->gemma3 ? 1000000.0f : 10000.0f;
    hp->rope_scale = 1.0f;
    hp->norm_eps = 1e-6f;
    hp->swa_window = kind->gemma3 ? 0 : 4096; /* Gemma 2 files may omit it */
    if ((st = llm__model_common_hparams(m)) ||
        (st = llm__model_u32(m, "attention.sliding_window", &hp->swa_window, 0)))
        return st;
    hp->rope_base_swa = kind->gemma3 ? 10000.0f : hp->rope_base;
    if ((st = llm__model_f32(m, "rope.freq_base_swa", &hp->rope_base_swa, 0)))
        return st;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (!kind->gemma3) {
        hp->attn_softcap = 50.0f;
        hp->final_softcap = 30.0f;
        if ((st = llm__model_f32(m, "attn_logit_softcapping", &hp->attn_softcap, 0)) ||
            (st = llm__model_f32(m, "final_logit_softcapping", &hp->final_softcap, 0)))
            return st;
        if (hp->n_layer == 46) /* the 27B */
            hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    }
    int32_t head_dim_v = hp->head_dim;
    if ((st = llm__model_u32(m, "attention.value_length", &head_dim_v, 0)))
        return st;
    if (head_dim_v != hp->head_dim)
        return llm__fail(LLM_ERR_UNSUPPORTED, "gemma3: key and value heads differ (%d, %d)",
                         hp->head_dim, head_dim_v);
    float factor = 0.0f;
    if ((st = llm__model_f32(m, "rope.scaling.factor", &factor, 0)))
        return st;
    if (factor > 0.0f)
        hp->rope_scale = 1.0f / factor; /* linear scaling (Gemma 3: global layers only) */

    const int64_t E = hp->n_embd, H = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, D = hp->head_dim;
    if ((st = llm__model_bind_io(m)))
        return st;
    for (int il = 0; il < hp->n_layer; il++) {
        llm_layer *l = &m->layers[il];
        if ((st = llm__layer_tensor(m, &l->attn_norm, il, "attn_norm.weight", E, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->wq, il, "attn_q.weight", E, H, 1)) ||
            (st = llm__layer_tensor(m, &l->wk, il, "attn_k.weight", E, KV, 1)) ||
            (st = llm__layer_tensor(m, &l->wv, il, "attn_v.weight", E, KV, 1)) ||
            (st = llm__layer_tensor(m, &l->q_norm, il, "attn_q_norm.weight", D, 1,
                                    kind->gemma3)) ||
            (st = llm__layer_tensor(m, &l->k_norm, il, "attn_k_norm.weight", D, 1,
                                    kind->gemma3)) ||
            (st = llm__layer_tensor(m, &l->wo, il, "attn_output.weight", H, E, 1)) ||
            (st = llm__layer_tensor(m, &l->post_attn_norm, il, "post_attention_norm.weight", E,
                                    1, 1)) ||
            (st = llm__layer_tensor(m, &l->ffn_norm, il, "ffn_norm.weight", E, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->w_gate, il, "ffn_gate.weight", E, F, 1)) ||
            (st = llm__layer_tensor(m, &l->w_up, il, "ffn_up.weight", E, F, 1)) ||
            (st = llm__layer_tensor(m, &l->w_down, il, "ffn_down.weight", F, E, 1)) ||
            (st = llm__layer_tensor(m, &l->post_ffn_norm, il, "post_ffw_norm.weight", E, 1, 1)))
            return st;
        const int global = (il % kind->swa_pattern) == kind->swa_pattern - 1;
        l->window = global ? 0 : hp->swa_window;
        l->rope_base = global ? hp->rope_base : hp->rope_base_swa;
    }
    return LLM_OK;
}

static llm_status gemma_forward(const llm_model *m, const llm_ubatch *s, const gemma_kind *kind)
{
    const llm_hparams *hp = &m->hp;
    const struct llm_backend_ops *ops = s->ops;
    llm_backend *be = s->be;
    const int64_t n = s->n, E = hp->n_embd, H = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const float eps = hp->norm_eps;

    ops->get_rows(be, s->x, &m->tok_embd, s->tokens, n); /* x: [n, E] */
    ops->scale(be, s->x, s->x, sqrtf((float)E), n * E);
    for (int il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        const float rope_scale = l->window && kind->gemma3 ? 1.0f : hp->rope_scale;
        /* attention */
        ops->rms_norm(be, s->h, s->x, &l->attn_norm, n, E, eps);
        ops->matmul(be, s->q, H, &l->wq, s->h, E, n);  /* q: [n, H] */
        ops->matmul(be, s->k, KV, &l->wk, s->h, E, n); /* k: [n, KV] */
        ops->matmul(be, s->v, KV, &l->wv, s->h, E, n); /* v: [n, KV] */
        if (l->q_norm.data) {
            ops->rms_norm(be, s->q, s->q, &l->q_norm, n * hp->n_head, hp->head_dim, eps);
            ops->rms_norm(be, s->k, s->k, &l->k_norm, n * hp->n_head_kv, hp->head_dim, eps);
        }
        ops->rope(be, s->q, n, hp->n_head, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  rope_scale, NULL, LLM_ROPE_NEOX);
        ops->rope(be, s->k, n, hp->n_head_kv, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  rope_scale, NULL, LLM_ROPE_NEOX);
        ops->scale(be, s->q, s->q, hp->attn_scale, n * H);
        ops->kv_write(be, &s->kv[il], s->k, s->v, s->slots, n);
        llm_attention_args a = {
            .out = s->att, .q = s->q, .kv = &s->kv[il], .n_tokens = n, .n_head = hp->n_head,
            .block_size = s->block_size, .q_pos = s->pos, .q_seq = s->seq,
            .block_tables = s->block_tables, .max_blocks = s->max_blocks, .scale = 1.0f,
            .softcap = hp->attn_softcap, .window = l->window, .n_runs = s->n_runs,
            .max_keys = llm__max_keys(s, l->window),
        };
        ops->attention(be, &a);                         /* att: [n, H] */
        ops->matmul(be, s->h, E, &l->wo, s->att, H, n); /* h: [n, E] */
        ops->rms_norm(be, s->h, s->h, &l->post_attn_norm, n, E, eps);
        ops->add(be, s->x, s->x, s->h, n * E);
        /* feed-forward */
        ops->rms_norm(be, s->h, s->x, &l->ffn_norm, n, E, eps);
        ops->matmul(be, s->gate, F, &l->w_gate, s->h, E, n); /* gate: [n, F] */
        ops->matmul(be, s->up, F, &l->w_up, s->h, E, n);     /* up: [n, F] */
        ops->glu(be, s->gate, s->gate, s->up, n * F, LLM_ACT_GELU_TANH);
        ops->matmul(be, s->h, E, &l->w_down, s->gate, F, n);
        ops->rms_norm(be, s->h, s->h, &l->post_ffn_norm, n, E, eps);
        ops->add(be, s->x, s->x, s->h, n * E);
    }
    ops->copy_rows(be, s->h, s->x, E, s->out_rows, s->n_out);
    ops->rms_norm(be, s->h, s->h, &m->output_norm, s->n_out, E, eps);
    ops->matmul(be, s->logits, hp->n_vocab, &m->output, s->h, E, s->n_out);
    if (hp->final_softcap > 0.0f)
        ops->softcap(be, s->logits, s->logits, hp->final_softcap, s->n_out * hp->n_vocab);
    return ops->synchronize(be);
}

static llm_status gemma2_load(llm_model *m) { return gemma_load(m, &kind_gemma2); }
static llm_status gemma3_load(llm_model *m) { return gemma_load(m, &kind_gemma3); }
static llm_status gemma2_forward(const llm_model *m, const llm_ubatch *s)
{
    return gemma_forward(m, s, &kind_gemma2);
}
static llm_status gemma3_forward(const llm_model *m, const llm_ubatch *s)
{
    return gemma_forward(m, s, &kind_gemma3);
}

const llm_arch llm__arch_gemma2 = {.name = "gemma2", .load = gemma2_load, .forward = gemma2_forward};
const llm_arch llm__arch_gemma3 = {.name = "gemma3", .load = gemma3_load, .forward = gemma3_forward};
