/* llama.c - the Llama block and the decoders that differ from it only in data: Llama 2/3
 * (rope scaling "linear", and "llama3" through the rope_freqs factors the converter
 * writes), Mistral and SmolLM (GGUF architecture "llama"), Mixtral ("llama" with experts),
 * Qwen2/2.5 (q/k/v biases), Qwen3 (per-head q/k norms), Qwen3-MoE, and Phi-3 (fused qkv
 * and gate+up matrices, longrope frequency factors).
 *
 *   x = embed(tokens)
 *   for each layer:
 *       h = rms_norm(x) * attn_norm
 *       q, k, v = h·Wq + bq, h·Wk + bk, h·Wv + bv        (biases: Qwen2)
 *       q, k = rms_norm_per_head(q) * q_norm, ...         (Qwen3)
 *       rope(q), rope(k);  cache(k, v)
 *       x = x + attention(q, cache)·Wo
 *       h = rms_norm(x) * ffn_norm
 *       dense:   x = x + (silu(h·Wgate) * h·Wup)·Wdown
 *       experts: p = softmax(h·Wrouter); the k largest e_j with weights w_j = p_j / sum p
 *                x = x + sum_j w_j * (silu(h·Wgate[e_j]) * h·Wup[e_j])·Wdown[e_j]
 *   logits = (rms_norm(x) * output_norm)·Wout   (only for the rows that want logits)
 *
 * A fused matrix (Phi-3's attn_qkv, and its ffn_up holding gate then up) is bound as views
 * of its row ranges (llm__layer_tensor_split), so the forward pass is the same for every
 * member of the family.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../model.h"

/* The data that tells the family's members apart. */
typedef struct decoder_kind {
    int rope_mode;     /* LLM_ROPE_NORM (Llama) or LLM_ROPE_NEOX */
    int qk_norm;       /* per-head RMS norms on q and k */
    int fused;         /* attn_qkv and a double-height ffn_up (Phi-3) */
    int need_experts;  /* the architecture is only defined with experts (Qwen3-MoE) */
} decoder_kind;

static const decoder_kind kind_llama = {.rope_mode = LLM_ROPE_NORM};
static const decoder_kind kind_qwen2 = {.rope_mode = LLM_ROPE_NEOX};
static const decoder_kind kind_qwen3 = {.rope_mode = LLM_ROPE_NEOX, .qk_norm = 1};
static const decoder_kind kind_qwen3moe = {.rope_mode = LLM_ROPE_NEOX, .qk_norm = 1,
                                           .need_experts = 1};
static const decoder_kind kind_phi3 = {.rope_mode = LLM_ROPE_NEOX, .fused = 1};

static llm_status rope_scaling(llm_model *m, const decoder_kind *kind)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    float factor = 0.0f;
    if ((st = llm__model_f32(m, "rope.scaling.factor", &factor, 0)))
        return st;
    /* as in llama.cpp: no type means linear, "none" ignores the factor */
    const char *type = "linear";
    char key[96];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    if (llm__gguf_get_str(m->gguf, key, &type) < 0)
        return LLM_ERR_INVALID_MODEL;
    if (strcmp(type, "linear") == 0 || (kind->fused && strcmp(type, "longrope") == 0)) {
        if (factor > 0.0f)
            hp->rope_scale = 1.0f / factor;
    } else if (strcmp(type, "none") != 0) {
        return llm__fail(LLM_ERR_UNSUPPORTED, "%s: rope scaling '%s' is not supported",
                         m->arch_name, type);
    }
    /* Llama 3's "llama3" scaling arrives as the rope_freqs factors; Phi-3's longrope as
     * short and long factors, of which llama.cpp uses the short ones up to the original
     * context (libllm: always), and an attention factor that scales cos and sin. */
    if ((st = llm__model_tensor(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 1, 0)))
        return st;
    if (kind->fused && !m->rope_freqs.data &&
        (st = llm__model_tensor(m, &m->rope_freqs, "rope_factors_short.weight", hp->n_rot / 2,
                                1, 0)))
        return st;
    float attn_factor = 1.0f;
    if ((st = llm__model_f32(m, "rope.scaling.attn_factor", &attn_factor, 0)))
        return st;
    /* rotating q and k by cos and sin scaled by a multiplies q·k by its square */
    hp->attn_scale *= attn_factor * attn_factor;
    return LLM_OK;
}

static llm_status experts_hparams(llm_model *m, const decoder_kind *kind)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    hp->n_ff_exp = hp->n_ff;
    if ((st = llm__model_u32(m, "expert_count", &hp->n_expert, 0)) ||
        (st = llm__model_u32(m, "expert_used_count", &hp->n_expert_used, 0)) ||
        (st = llm__model_u32(m, "expert_feed_forward_length", &hp->n_ff_exp, 0)))
        return st;
    if (hp->n_expert == 0 && !kind->need_experts)
        return LLM_OK;
    if (hp->n_expert < 1 || hp->n_expert > 1024 || hp->n_expert_used < 1 ||
        hp->n_expert_used > hp->n_expert || hp->n_ff_exp < 1)
        return llm__fail(LLM_ERR_INVALID_MODEL, "%s: %d experts, %d used, %d rows each",
                         m->arch_name, hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    return LLM_OK;
}

static llm_status bind_attention(llm_model *m, llm_layer *l, int il, const decoder_kind *kind)
{
    const llm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, H = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, D = hp->head_dim;
    llm_status st;
    llm_tensor *const qkv[3] = {&l->wq, &l->wk, &l->wv};
    const int64_t qkv_rows[3] = {H, KV, KV};
    if (kind->fused &&
        (st = llm__layer_tensor_split(m, il, "attn_qkv.weight", E, 3, qkv, qkv_rows, 0)))
        return st;
    if (!l->wq.data && /* not fused */
        ((st = llm__layer_tensor(m, &l->wq, il, "attn_q.weight", E, H, 1)) ||
         (st = llm__layer_tensor(m, &l->wk, il, "attn_k.weight", E, KV, 1)) ||
         (st = llm__layer_tensor(m, &l->wv, il, "attn_v.weight", E, KV, 1))))
        return st;
    if ((st = llm__layer_tensor(m, &l->bq, il, "attn_q.bias", H, 1, 0)) ||
        (st = llm__layer_tensor(m, &l->bk, il, "attn_k.bias", KV, 1, 0)) ||
        (st = llm__layer_tensor(m, &l->bv, il, "attn_v.bias", KV, 1, 0)) ||
        (st = llm__layer_tensor(m, &l->wo, il, "attn_output.weight", H, E, 1)))
        return st;
    if (kind->qk_norm &&
        ((st = llm__layer_tensor(m, &l->q_norm, il, "attn_q_norm.weight", D, 1, 1)) ||
         (st = llm__layer_tensor(m, &l->k_norm, il, "attn_k_norm.weight", D, 1, 1))))
        return st;
    return LLM_OK;
}

static llm_status bind_ffn(llm_model *m, llm_layer *l, int il, const decoder_kind *kind)
{
    const llm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, NE = hp->n_expert, FE = hp->n_ff_exp;
    llm_status st;
    if (NE > 0) {
        if ((st = llm__layer_tensor(m, &l->ffn_gate_inp, il, "ffn_gate_inp.weight", E, NE, 0)))
            return st;
    }
    if (l->ffn_gate_inp.data) {
        if ((st = llm__layer_tensor(m, &l->gate_exps, il, "ffn_gate_exps.weight", E, NE * FE, 1)) ||
            (st = llm__layer_tensor(m, &l->up_exps, il, "ffn_up_exps.weight", E, NE * FE, 1)))
            return st;
        return llm__layer_tensor(m, &l->down_exps, il, "ffn_down_exps.weight", FE, NE * E, 1);
    }
    if (kind->need_experts)
        return llm__fail(LLM_ERR_INVALID_MODEL, "%s: layer %d has no ffn_gate_inp.weight",
                         m->arch_name, il);
    if (kind->fused) {
        llm_tensor *const gate_up[2] = {&l->w_gate, &l->w_up};
        const int64_t rows[2] = {F, F};
        if ((st = llm__layer_tensor_split(m, il, "ffn_up.weight", E, 2, gate_up, rows, 1)))
            return st;
    } else if ((st = llm__layer_tensor(m, &l->w_gate, il, "ffn_gate.weight", E, F, 1)) ||
               (st = llm__layer_tensor(m, &l->w_up, il, "ffn_up.weight", E, F, 1))) {
        return st;
    }
    return llm__layer_tensor(m, &l->w_down, il, "ffn_down.weight", F, E, 1);
}

static llm_status decoder_load(llm_model *m, const decoder_kind *kind)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    hp->n_ctx_train = 4096;
    hp->rope_base = 10000.0f;
    hp->rope_scale = 1.0f;
    hp->norm_eps = 1e-5f;
    if ((st = llm__model_common_hparams(m)))
        return st;
    hp->rope_base_swa = hp->rope_base;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if ((st = llm__model_f32(m, "attention.scale", &hp->attn_scale, 0)) ||
        (st = experts_hparams(m, kind)) || (st = llm__model_bind_io(m)) ||
        (st = rope_scaling(m, kind)))
        return st;
    const int64_t E = hp->n_embd;
    for (int il = 0; il < hp->n_layer; il++) {
        llm_layer *l = &m->layers[il];
        if ((st = llm__layer_tensor(m, &l->attn_norm, il, "attn_norm.weight", E, 1, 1)) ||
            (st = bind_attention(m, l, il, kind)) ||
            (st = llm__layer_tensor(m, &l->ffn_norm, il, "ffn_norm.weight", E, 1, 1)) ||
            (st = bind_ffn(m, l, il, kind)))
            return st;
        l->rope_base = hp->rope_base;
    }
    return LLM_OK;
}

/* h: [n, E] normed input; leaves the FFN output in s->h. */
static void ffn_experts(const llm_model *m, const llm_layer *l, const llm_ubatch *s)
{
    const llm_hparams *hp = &m->hp;
    const struct llm_backend_ops *ops = s->ops;
    llm_backend *be = s->be;
    const int64_t n = s->n, E = hp->n_embd, FE = hp->n_ff_exp;
    const int32_t NE = hp->n_expert, K = hp->n_expert_used;

    ops->matmul(be, s->moe_logits, NE, &l->ffn_gate_inp, s->h, E, n); /* [n, NE] */
    ops->moe_route(be, s->moe_ids, s->moe_weights, s->moe_logits, n, NE, K, 1);
    ops->matmul_id(be, s->gate, &l->gate_exps, NE, s->h, E, 0, s->moe_ids, K, n); /* [n, K, FE] */
    ops->matmul_id(be, s->up, &l->up_exps, NE, s->h, E, 0, s->moe_ids, K, n);     /* [n, K, FE] */
    ops->glu(be, s->gate, s->gate, s->up, n * K * FE, LLM_ACT_SILU);
    ops->matmul_id(be, s->moe_out, &l->down_exps, NE, s->gate, K * FE, FE, s->moe_ids, K,
                   n); /* [n, K, E] */
    ops->moe_combine(be, s->h, s->moe_out, s->moe_weights, n, K, E);
}

static llm_status decoder_forward(const llm_model *m, const llm_ubatch *s,
                                  const decoder_kind *kind)
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
        if (l->bq.data)
            ops->add_bias(be, s->q, &l->bq, n);
        if (l->bk.data)
            ops->add_bias(be, s->k, &l->bk, n);
        if (l->bv.data)
            ops->add_bias(be, s->v, &l->bv, n);
        if (kind->qk_norm) {
            ops->rms_norm(be, s->q, s->q, &l->q_norm, n * hp->n_head, hp->head_dim,
                          hp->norm_eps);
            ops->rms_norm(be, s->k, s->k, &l->k_norm, n * hp->n_head_kv, hp->head_dim,
                          hp->norm_eps);
        }
        ops->rope(be, s->q, n, hp->n_head, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  hp->rope_scale, freq_factors, kind->rope_mode);
        ops->rope(be, s->k, n, hp->n_head_kv, hp->head_dim, hp->n_rot, s->pos, l->rope_base,
                  hp->rope_scale, freq_factors, kind->rope_mode);
        ops->kv_write(be, &s->kv[il], s->k, s->v, s->slots, n);
        llm_attention_args a = {
            .out = s->att, .q = s->q, .kv = &s->kv[il], .n_tokens = n, .n_head = hp->n_head,
            .block_size = s->block_size, .q_pos = s->pos, .q_seq = s->seq,
            .block_tables = s->block_tables, .max_blocks = s->max_blocks,
            .scale = hp->attn_scale, .softcap = hp->attn_softcap, .window = l->window,
            .n_runs = s->n_runs, .max_keys = llm__max_keys(s, l->window),
        };
        ops->attention(be, &a);                           /* att: [n, H] */
        ops->matmul(be, s->h, E, &l->wo, s->att, H, n);   /* h: [n, E] */
        ops->add(be, s->x, s->x, s->h, n * E);
        /* feed-forward */
        ops->rms_norm(be, s->h, s->x, &l->ffn_norm, n, E, hp->norm_eps);
        if (l->ffn_gate_inp.data) {
            ffn_experts(m, l, s);
        } else {
            ops->matmul(be, s->gate, F, &l->w_gate, s->h, E, n); /* gate: [n, F] */
            ops->matmul(be, s->up, F, &l->w_up, s->h, E, n);     /* up: [n, F] */
            ops->glu(be, s->gate, s->gate, s->up, n * F, LLM_ACT_SILU);
            ops->matmul(be, s->h, E, &l->w_down, s->gate, F, n);
        }
        ops->add(be, s->x, s->x, s->h, n * E);
    }
    /* final norm and logits for the rows that asked */
    ops->copy_rows(be, s->h, s->x, E, s->out_rows, s->n_out);
    ops->rms_norm(be, s->h, s->h, &m->output_norm, s->n_out, E, hp->norm_eps);
    ops->matmul(be, s->logits, hp->n_vocab, &m->output, s->h, E, s->n_out);
    return ops->synchronize(be);
}

/* One load and forward entry per architecture name. */
static llm_status llama_load(llm_model *m) { return decoder_load(m, &kind_llama); }
static llm_status llama_forward(const llm_model *m, const llm_ubatch *s)
{
    return decoder_forward(m, s, &kind_llama);
}
const llm_arch llm__arch_llama = {.name = "llama", .load = llama_load, .forward = llama_forward};

static llm_status qwen2_load(llm_model *m) { return decoder_load(m, &kind_qwen2); }
static llm_status qwen2_forward(const llm_model *m, const llm_ubatch *s)
{
    return decoder_forward(m, s, &kind_qwen2);
}
const llm_arch llm__arch_qwen2 = {.name = "qwen2", .load = qwen2_load, .forward = qwen2_forward};

static llm_status qwen3_load(llm_model *m) { return decoder_load(m, &kind_qwen3); }
static llm_status qwen3_forward(const llm_model *m, const llm_ubatch *s)
{
    return decoder_forward(m, s, &kind_qwen3);
}
const llm_arch llm__arch_qwen3 = {.name = "qwen3", .load = qwen3_load, .forward = qwen3_forward};

static llm_status qwen3moe_load(llm_model *m) { return decoder_load(m, &kind_qwen3moe); }
static llm_status qwen3moe_forward(const llm_model *m, const llm_ubatch *s)
{
    return decoder_forward(m, s, &kind_qwen3moe);
}
const llm_arch llm__arch_qwen3moe = {.name = "qwen3moe", .load = qwen3moe_load, .forward = qwen3moe_forward};

static llm_status phi3_load(llm_model *m) { return decoder_load(m, &kind_phi3); }
static llm_status phi3_forward(const llm_model *m, const llm_ubatch *s)
{
    return decoder_forward(m, s, &kind_phi3);
}
const llm_arch llm__arch_phi3 = {.name = "phi3", .load = phi3_load, .forward = phi3_forward};
