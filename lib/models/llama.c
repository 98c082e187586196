/* llama.c - the Llama family (Llama 2/3, Mistral, SmolLM): pre-norm decoder blocks with
 * grouped-query attention, rotary embeddings on interleaved pairs, and a SwiGLU FFN.
 *
 *   x = embed(tokens)
 *   for each layer:
 *       h = rms_norm(x) * attn_norm
 *       q, k, v = h·Wq, h·Wk, h·Wv;  rope(q), rope(k);  cache(k, v)
 *       x = x + attention(q, cache)·Wo
 *       h = rms_norm(x) * ffn_norm
 *       x = x + (silu(h·Wgate) * h·Wup)·Wdown
 *   logits = (rms_norm(x) * output_norm)·Wout   (only for the rows that want logits)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../model.h"

static llm_status llama_load(llm_model *m)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    hp->n_ctx_train = 4096;
    hp->rope_base = 10000.0f;
    hp->rope_scale = 1.0f;
    hp->norm_eps = 1e-5f;
    if ((st = llm__model_common_hparams(m)))
        return st;
    float factor = 0.0f;
    if ((st = llm__model_f32(m, "rope.scaling.factor", &factor, 0)))
        return st;
    const char *kind = NULL;
    char key[96];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    if (llm__gguf_get_str(m->gguf, key, &kind) == 1 && strcmp(kind, "linear") == 0 && factor > 0)
        hp->rope_scale = 1.0f / factor;
    hp->rope_base_swa = hp->rope_base;

    const int64_t E = hp->n_embd, H = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    if ((st = llm__model_bind_io(m)) ||
        (st = llm__model_tensor(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 1, 0)))
        return st;
    for (int il = 0; il < hp->n_layer; il++) {
        llm_layer *l = &m->layers[il];
        if ((st = llm__layer_tensor(m, &l->attn_norm, il, "attn_norm.weight", E, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->wq, il, "attn_q.weight", E, H, 1)) ||
            (st = llm__layer_tensor(m, &l->wk, il, "attn_k.weight", E, KV, 1)) ||
            (st = llm__layer_tensor(m, &l->wv, il, "attn_v.weight", E, KV, 1)) ||
            (st = llm__layer_tensor(m, &l->wo, il, "attn_output.weight", H, E, 1)) ||
            (st = llm__layer_tensor(m, &l->ffn_norm, il, "ffn_norm.weight", E, 1, 1)) ||
            (st = llm__layer_tensor(m, &l->w_gate, il, "ffn_gate.weight", E, F, 1)) ||
            (st = llm__layer_tensor(m, &l->w_up, il, "ffn_up.weight", E, F, 1)) ||
            (st = llm__layer_tensor(m, &l->w_down, il, "ffn_down.weight", F, E, 1)))
            return st;
        l->rope_base = hp->rope_base;
    }
    return LLM_OK;
}

static llm_status llama_forward(const llm_model *m, const llm_ubatch *s)
{
    const llm_hparams *hp = &m->hp;
    const struct llm_backend_ops *ops = s->ops;
    llm_backend *be = s->be;
    const int64_t n = s->n, E = hp->n_embd, H = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const llm_tensor *freq_factors = &m->rope_freqs;

    ops->get_rows(be, s->x, &m->tok_embd, s->tokens, n); /* x: [n, E] */
    for (int il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        /* attention */
        ops->rms_norm(be, s->h, s->x, &l->attn_norm, n, E, hp->norm_eps);
        ops->matmul(be, s->q, H, &l->wq, s->h, E, n);  /* q: [n, H] */
        ops->matmul(be, s->k, KV, &l->wk, s->h, E, n); /* k: [n, KV] */
        ops->matmul(be, s->v, KV, &l->wv, s->h, E, n); /* v: [n, KV] */
        ops->rope(be, s->q, n, hp->n_head, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  hp->rope_scale, freq_factors, LLM_ROPE_NORM);
        ops->rope(be, s->k, n, hp->n_head_kv, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  hp->rope_scale, freq_factors, LLM_ROPE_NORM);
        ops->kv_write(be, &s->kv[il], s->k, s->v, s->slots, n);
        llm_attention_args a = {
            .out = s->att, .q = s->q, .kv = &s->kv[il], .n_tokens = n, .n_head = hp->n_head,
            .block_size = s->block_size, .q_pos = s->pos, .q_seq = s->seq,
            .block_tables = s->block_tables, .max_blocks = s->max_blocks,
            .scale = 1.0f / sqrtf((float)hp->head_dim), .softcap = hp->attn_softcap,
            .window = l->window,
        };
        ops->attention(be, &a);                           /* att: [n, H] */
        ops->matmul(be, s->h, E, &l->wo, s->att, H, n);   /* h: [n, E] */
        ops->add(be, s->x, s->x, s->h, n * E);
        /* feed-forward */
        ops->rms_norm(be, s->h, s->x, &l->ffn_norm, n, E, hp->norm_eps);
        ops->matmul(be, s->gate, F, &l->w_gate, s->h, E, n); /* gate: [n, F] */
        ops->matmul(be, s->up, F, &l->w_up, s->h, E, n);     /* up: [n, F] */
        ops->glu(be, s->gate, s->gate, s->up, n * F, LLM_ACT_SILU);
        ops->matmul(be, s->h, E, &l->w_down, s->gate, F, n);
        ops->add(be, s->x, s->x, s->h, n * E);
    }
    /* final norm and logits for the rows that asked */
    ops->copy_rows(be, s->h, s->x, E, s->out_rows, s->n_out);
    ops->rms_norm(be, s->h, s->h, &m->output_norm, s->n_out, E, hp->norm_eps);
    ops->matmul(be, s->logits, hp->n_vocab, &m->output, s->h, E, s->n_out);
    return ops->synchronize(be);
}

const llm_arch llm__arch_llama = {
    .name = "llama",
    .load = llama_load,
    .forward = llama_forward,
};
