/* gemma3.c - Gemma 3: scaled embeddings, RMS norms around both sub-blocks (pre and post),
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
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../model.h"

/* Every SWA_PATTERN-th layer attends globally; the others use the sliding window. */
#define SWA_PATTERN 6

static llm_status gemma3_load(llm_model *m)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    hp->n_ctx_train = 32768;
    hp->rope_base = 1000000.0f;
    hp->rope_base_swa = 10000.0f;
    hp->rope_scale = 1.0f;
    hp->norm_eps = 1e-6f;
    if ((st = llm__model_common_hparams(m)) ||
        (st = llm__model_u32(m, "attention.sliding_window", &hp->swa_window, 0)))
        return st;
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
        hp->rope_scale = 1.0f / factor; /* linear scaling, global layers only */

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
            (st = llm__layer_tensor(m, &l->q_norm, il, "attn_q_norm.weight", D, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->k_norm, il, "attn_k_norm.weight", D, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->wo, il, "attn_output.weight", H, E, 1)) ||
            (st = llm__layer_tensor(m, &l->post_attn_norm, il, "post_attention_norm.weight", E,
                                    1, 1)) ||
            (st = llm__layer_tensor(m, &l->ffn_norm, il, "ffn_norm.weight", E, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->w_gate, il, "ffn_gate.weight", E, F, 1)) ||
            (st = llm__layer_tensor(m, &l->w_up, il, "ffn_up.weight", E, F, 1)) ||
            (st = llm__layer_tensor(m, &l->w_down, il, "ffn_down.weight", F, E, 1)) ||
            (st = llm__layer_tensor(m, &l->post_ffn_norm, il, "post_ffw_norm.weight", E, 1, 1)))
            return st;
        const int global = (il % SWA_PATTERN) == SWA_PATTERN - 1;
        l->window = global ? 0 : hp->swa_window;
        l->rope_base = global ? hp->rope_base : hp->rope_base_swa;
    }
    return LLM_OK;
}

static llm_status gemma3_forward(const llm_model *m, const llm_ubatch *s)
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
        const float rope_scale = l->window ? 1.0f : hp->rope_scale;
        /* attention */
        ops->rms_norm(be, s->h, s->x, &l->attn_norm, n, E, eps);
        ops->matmul(be, s->q, H, &l->wq, s->h, E, n);  /* q: [n, H] */
        ops->matmul(be, s->k, KV, &l->wk, s->h, E, n); /* k: [n, KV] */
        ops->matmul(be, s->v, KV, &l->wv, s->h, E, n); /* v: [n, KV] */
        ops->rms_norm(be, s->q, s->q, &l->q_norm, n * hp->n_head, hp->head_dim, eps);
        ops->rms_norm(be, s->k, s->k, &l->k_norm, n * hp->n_head_kv, hp->head_dim, eps);
        ops->rope(be, s->q, n, hp->n_head, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  rope_scale, NULL, LLM_ROPE_NEOX);
        ops->rope(be, s->k, n, hp->n_head_kv, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  rope_scale, NULL, LLM_ROPE_NEOX);
        ops->scale(be, s->q, s->q, 1.0f / sqrtf((float)hp->head_dim), n * H);
        ops->kv_write(be, &s->kv[il], s->k, s->v, s->slots, n);
        llm_attention_args a = {
            .out = s->att, .q = s->q, .kv = &s->kv[il], .n_tokens = n, .n_head = hp->n_head,
            .block_size = s->block_size, .q_pos = s->pos, .q_seq = s->seq,
            .block_tables = s->block_tables, .max_blocks = s->max_blocks, .scale = 1.0f,
            .softcap = hp->attn_softcap, .window = l->window,
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
    return ops->synchronize(be);
}

const llm_arch llm__arch_gemma3 = {
    .name = "gemma3",
    .load = gemma3_load,
    .forward = gemma3_forward,
};
