/* model.c - model loading (GGUF -> hyper-parameters, weights, tokenizer), the
 * architecture table, and the public model, tokenizer and chat-template calls. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"
#include "model.h"

static const llm_arch *const archs[] = {
    &llm__arch_llama, &llm__arch_qwen2,  &llm__arch_qwen3, &llm__arch_qwen3moe,
    &llm__arch_phi3,  &llm__arch_gemma2, &llm__arch_gemma3,
};

/* ---- helpers for lib/models/ ------------------------------------------------------- */

static llm_status register_tensor(llm_model *m, llm_tensor *t)
{
    if (m->n_tensors == m->cap_tensors) {
        const int32_t cap = m->cap_tensors ? 2 * m->cap_tensors : 64;
        llm_tensor **p = llm__realloc(m->tensors, (size_t)cap * sizeof *p);
        if (!p)
            return llm__fail(LLM_ERR_NO_MEMORY, "model: out of memory");
        m->tensors = p;
        m->cap_tensors = cap;
    }
    m->tensors[m->n_tensors++] = t;
    return LLM_OK;
}

llm_status llm__model_tensor(llm_model *m, llm_tensor *t, const char *name, int64_t ne0,
                             int64_t ne1, int required)
{
    memset(t, 0, sizeof *t);
    const llm_gguf_tensor *gt = llm__gguf_find_tensor(m->gguf, name);
    if (!gt) {
        if (required)
            return llm__fail(LLM_ERR_INVALID_MODEL, "model: tensor '%s' is missing", name);
        return LLM_OK;
    }
    int64_t rows = 1;
    for (uint32_t d = 1; d < gt->n_dims; d++)
        rows *= gt->ne[d];
    if (gt->ne[0] != ne0 || rows != ne1)
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "model: tensor '%s' has shape [%" PRId64 ", %" PRId64 "], expected "
                         "[%" PRId64 ", %" PRId64 "]",
                         name, gt->ne[0], rows, ne0, ne1);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = gt->type;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->row_bytes = llm__dtype_row_size(gt->type, ne0);
    t->data = gt->data;
    /* norms and other vectors are f32 for every backend op that takes them */
    if (ne1 == 1 && gt->type != LLM_DT_F32)
        return llm__fail(LLM_ERR_UNSUPPORTED, "model: vector tensor '%s' must be f32", name);
    return register_tensor(m, t);
}

llm_status llm__layer_tensor(llm_model *m, llm_tensor *t, int il, const char *suffix,
                             int64_t ne0, int64_t ne1, int required)
{
    char name[sizeof(((llm_tensor *)0)->name)];
    if (snprintf(name, sizeof name, "blk.%d.%s", il, suffix) >= (int)sizeof name)
        return llm__fail(LLM_ERR_INTERNAL, "model: tensor name blk.%d.%s is too long", il, suffix);
    return llm__model_tensor(m, t, name, ne0, ne1, required);
}

llm_status llm__layer_tensor_split(llm_model *m, int il, const char *suffix, int64_t ne0,
                                   int n_parts, llm_tensor *const *parts, const int64_t *rows,
                                   int required)
{
    int64_t total = 0;
    for (int i = 0; i < n_parts; i++)
        total += rows[i];
    llm_status st = llm__layer_tensor(m, parts[0], il, suffix, ne0, total, required);
    if (st != LLM_OK || !parts[0]->data)
        return st;
    const llm_tensor whole = *parts[0];
    int64_t r0 = 0;
    for (int i = 0; i < n_parts; i++) {
        llm_tensor *t = parts[i];
        *t = whole;
        snprintf(t->name, sizeof t->name, "%.80s[%d]", whole.name, i);
        t->ne[1] = rows[i];
        t->data = (const char *)whole.data + (size_t)r0 * whole.row_bytes;
        r0 += rows[i];
        if (i > 0 && (st = register_tensor(m, t)) != LLM_OK)
            return st;
    }
    return LLM_OK;
}

llm_status llm__model_u32(llm_model *m, const char *key, int32_t *out, int required)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", m->arch_name, key);
    uint32_t v;
    int r = llm__gguf_get_u32(m->gguf, full, &v);
    if (r < 0)
        return LLM_ERR_INVALID_MODEL;
    if (r == 0)
        return required ? llm__fail(LLM_ERR_INVALID_MODEL, "model: key '%s' is missing", full)
                        : LLM_OK;
    if (v > (uint32_t)INT32_MAX)
        return llm__fail(LLM_ERR_INVALID_MODEL, "model: key '%s' = %u is out of range", full, v);
    *out = (int32_t)v;
    return LLM_OK;
}

llm_status llm__model_f32(llm_model *m, const char *key, float *out, int required)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", m->arch_name, key);
    float v;
    int r = llm__gguf_get_f32(m->gguf, full, &v);
    if (r < 0)
        return LLM_ERR_INVALID_MODEL;
    if (r == 0)
        return required ? llm__fail(LLM_ERR_INVALID_MODEL, "model: key '%s' is missing", full)
                        : LLM_OK;
    if (!isfinite(v))
        return llm__fail(LLM_ERR_INVALID_MODEL, "model: key '%s' is not finite", full);
    *out = v;
    return LLM_OK;
}

llm_status llm__model_common_hparams(llm_model *m)
{
    llm_hparams *hp = &m->hp;
    llm_status st;
    if ((st = llm__model_u32(m, "context_length", &hp->n_ctx_train, 0)) ||
        (st = llm__model_u32(m, "embedding_length", &hp->n_embd, 1)) ||
        (st = llm__model_u32(m, "block_count", &hp->n_layer, 1)) ||
        (st = llm__model_u32(m, "feed_forward_length", &hp->n_ff, 1)) ||
        (st = llm__model_u32(m, "attention.head_count", &hp->n_head, 1)) ||
        (st = llm__model_f32(m, "rope.freq_base", &hp->rope_base, 0)) ||
        (st = llm__model_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 0)))
        return st;
    if (hp->n_head < 1 || hp->n_embd < 1)
        return llm__fail(LLM_ERR_INVALID_MODEL, "%s: %d heads over an embedding of %d",
                         m->arch_name, hp->n_head, hp->n_embd);
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = llm__model_u32(m, "attention.head_count_kv", &hp->n_head_kv, 0)) ||
        (st = llm__model_u32(m, "attention.key_length", &hp->head_dim, 0)))
        return st;
    hp->n_rot = hp->head_dim;
    return llm__model_u32(m, "rope.dimension_count", &hp->n_rot, 0);
}

llm_status llm__model_bind_io(llm_model *m)
{
    llm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    const llm_gguf_tensor *emb = llm__gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->ne[0] != E || emb->ne[1] > INT32_MAX)
        return llm__fail(LLM_ERR_INVALID_MODEL, "%s: token_embd.weight missing or misshapen",
                         m->arch_name);
    hp->n_vocab = (int32_t)emb->ne[1]; /* the vocabulary size is the embedding's row count */
    llm_status st;
    if ((st = llm__model_tensor(m, &m->tok_embd, "token_embd.weight", E, hp->n_vocab, 1)) ||
        (st = llm__model_tensor(m, &m->output_norm, "output_norm.weight", E, 1, 1)) ||
        (st = llm__model_tensor(m, &m->output, "output.weight", E, hp->n_vocab, 0)))
        return st;
    if (!m->output.data) {
        m->output = m->tok_embd; /* tied embeddings */
        m->output_tied = 1;
    }
    m->layers = llm__calloc((size_t)hp->n_layer, sizeof(llm_layer));
    if (!m->layers)
        return llm__fail(LLM_ERR_NO_MEMORY, "%s: out of memory", m->arch_name);
    return LLM_OK;
}

/* ---- load ---------------------------------------------------------------------------- */

/* The optional backend ops this model's forward pass calls: a backend without one of them
 * cannot run it (refused here rather than failing in the middle of a decode). */
static llm_status check_ops(const llm_model *m)
{
    const struct llm_backend_ops *o = m->ops;
    const char *missing = NULL, *why = NULL;
    int biases = 0;
    for (int il = 0; il < m->hp.n_layer; il++)
        biases |= m->layers[il].bq.data || m->layers[il].bk.data || m->layers[il].bv.data;
    if (biases && !o->add_bias)
        missing = "add_bias", why = "attention biases";
    else if (m->hp.final_softcap > 0.0f && !o->softcap)
        missing = "softcap", why = "logit soft-capping";
    else if (m->hp.n_expert > 0 && (!o->moe_route || !o->matmul_id || !o->moe_combine))
        missing = "moe_route/matmul_id/moe_combine", why = "mixture of experts";
    if (missing)
        return llm__fail(LLM_ERR_UNSUPPORTED, "model: backend '%s' has no %s op, which %s "
                         "(%s) needs", o->name, missing, m->arch_name, why);
    return LLM_OK;
}

static llm_status prepare_weights(llm_model *m, const llm_model_params *p)
{
    /* progress counts bytes: the large matrices are what takes the time */
    uint64_t total = 0, done = 0;
    for (int32_t i = 0; i < m->n_tensors; i++)
        total += (uint64_t)m->tensors[i]->row_bytes * (uint64_t)m->tensors[i]->ne[1];
    for (int32_t i = 0; i < m->n_tensors; i++) {
        llm_tensor *t = m->tensors[i];
        llm_status st = m->ops->prepare_weight(m->be, t);
        if (st != LLM_OK)
            return st;
        done += (uint64_t)t->row_bytes * (uint64_t)t->ne[1];
        if (p && p->progress && t->ne[1] > 1 &&
            p->progress(total ? (float)((double)done / (double)total) : 1.0f, p->progress_user))
            return llm__fail(LLM_ERR_CANCELLED, "model load cancelled");
    }
    if (m->output_tied)
        m->output = m->tok_embd; /* shares the prepared embedding */
    return LLM_OK;
}

static void read_params(llm_model_params *dst, const llm_model_params *src)
{
    llm_model_params_init(dst);
    if (src) {
        size_t n = src->size < sizeof *dst ? src->size : sizeof *dst;
        memcpy(dst, src, n);
        dst->size = sizeof *dst;
    }
}

llm_status llm_model_load(const char *path, const llm_model_params *params, llm_model **out)
{
    llm__clear_error();
    if (!out)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_load: out is NULL");
    *out = NULL;
    if (!path)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_load: path is NULL");
    if (params && params->size < sizeof(size_t))
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_load: params->size is not set "
                         "(call llm_model_params_init)");
    llm_model_params p;
    read_params(&p, params);

    llm_model *m = llm__calloc(1, sizeof *m);
    if (!m)
        return llm__fail(LLM_ERR_NO_MEMORY, "llm_model_load: out of memory");
    llm_status st = llm__gguf_open(path, !(p.flags & LLM_MODEL_NO_MMAP), &m->gguf);
    if (st != LLM_OK)
        goto fail;
    if (llm__gguf_get_str(m->gguf, "general.architecture", &m->arch_name) != 1) {
        st = llm__fail(LLM_ERR_INVALID_MODEL, "model: '%s' has no general.architecture", path);
        goto fail;
    }
    if (llm__gguf_get_str(m->gguf, "general.name", &m->name) != 1)
        m->name = "";
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i]->name, m->arch_name) == 0)
            m->arch = archs[i];
    if (!m->arch) {
        st = llm__fail(LLM_ERR_UNSUPPORTED, "model: architecture '%s' is not supported "
                       "(supported: llama, qwen2, qwen3, qwen3moe, phi3, gemma2, gemma3)", m->arch_name);
        goto fail;
    }
    st = llm__tokenizer_create(m->gguf, &m->tok);
    if (st != LLM_OK)
        goto fail;
    m->device = p.device;
    llm_backend_config cfg = {.n_threads = p.n_threads, .device = p.device};
    st = llm__backend_open(p.backend, &cfg, &m->ops, &m->be);
    if (st != LLM_OK)
        goto fail;
    st = m->arch->load(m);
    if (st == LLM_OK)
        st = check_ops(m);
    if (st != LLM_OK)
        goto fail;
    if (m->hp.n_layer < 1 || m->hp.n_layer > LLM_MAX_LAYERS || m->hp.n_head < 1 ||
        m->hp.n_head_kv < 1 || m->hp.n_head % m->hp.n_head_kv != 0 || m->hp.head_dim < 2 ||
        m->hp.head_dim > LLM_MAX_HEAD_DIM || m->hp.n_rot > m->hp.head_dim ||
        m->hp.n_rot % 2 != 0) {
        st = llm__fail(LLM_ERR_INVALID_MODEL, "model: inconsistent attention shape (%d layers, "
                       "%d heads, %d kv heads, head dim %d, rope dims %d)",
                       m->hp.n_layer, m->hp.n_head, m->hp.n_head_kv, m->hp.head_dim,
                       m->hp.n_rot);
        goto fail;
    }
    if (m->hp.n_vocab != llm__tokenizer_n_vocab(m->tok)) {
        st = llm__fail(LLM_ERR_INVALID_MODEL, "model: embedding has %d rows but the vocabulary "
                       "%d tokens", m->hp.n_vocab, llm__tokenizer_n_vocab(m->tok));
        goto fail;
    }
    st = prepare_weights(m, &p);
    if (st != LLM_OK)
        goto fail;
    for (int64_t i = 0; i < llm__gguf_n_tensors(m->gguf); i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(m->gguf, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n *= (uint64_t)t->ne[d];
        m->n_params += n;
    }
    if (llm__gguf_get_str(m->gguf, "tokenizer.chat_template", &m->chat_template) != 1)
        m->chat_template = llm__chat_builtin_template(m->arch_name);
    *out = m;
    return LLM_OK;
fail:
    llm_model_free(m);
    return st;
}

void llm_model_free(llm_model *m)
{
    if (!m)
        return;
    if (m->be) {
        for (int32_t i = 0; i < m->n_tensors; i++)
            m->ops->release_weight(m->be, m->tensors[i]);
        m->ops->destroy(m->be);
    }
    llm__free(m->layers);
    llm__free(m->tensors);
    llm__tokenizer_free(m->tok);
    llm__gguf_close(m->gguf);
    llm__free(m);
}

/* ---- getters ------------------------------------------------------------------------ */

const char *llm_model_architecture(const llm_model *m) { return m ? m->arch_name : ""; }
const char *llm_model_name(const llm_model *m) { return m ? m->name : ""; }
uint64_t llm_model_n_params(const llm_model *m) { return m ? m->n_params : 0; }
int32_t llm_model_n_vocab(const llm_model *m) { return m ? m->hp.n_vocab : 0; }
int32_t llm_model_n_ctx_train(const llm_model *m) { return m ? m->hp.n_ctx_train : 0; }
int32_t llm_model_n_embd(const llm_model *m) { return m ? m->hp.n_embd : 0; }
int32_t llm_model_n_layer(const llm_model *m) { return m ? m->hp.n_layer : 0; }
const char *llm_model_chat_template(const llm_model *m) { return m ? m->chat_template : NULL; }
uint64_t llm_model_file_size(const llm_model *m) { return m ? llm__gguf_file_size(m->gguf) : 0; }
int32_t llm_model_n_tensors(const llm_model *m)
{
    return m ? (int32_t)llm__gguf_n_tensors(m->gguf) : 0;
}

llm_status llm_model_tensor_info(const llm_model *m, int32_t i, const char **type_name,
                                 uint64_t *n_elements, uint64_t *n_bytes)
{
    if (!m || i < 0 || i >= llm_model_n_tensors(m))
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_tensor_info: no tensor %d", i);
    const llm_gguf_tensor *t = llm__gguf_tensor_at(m->gguf, i);
    const llm_dtype_info *info = llm__dtype_info(t->type);
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        n *= (uint64_t)t->ne[d];
    if (type_name)
        *type_name = info ? info->name : "unknown";
    if (n_elements)
        *n_elements = n;
    if (n_bytes)
        *n_bytes = t->nbytes;
    return LLM_OK;
}
const char *llm_model_backend(const llm_model *m) { return m && m->ops ? m->ops->name : ""; }

llm_token llm_model_token(const llm_model *m, llm_special_token which)
{
    if (!m || (int)which < 0 || which > LLM_TOKEN_PAD)
        return -1;
    return llm__tokenizer_special(m->tok, (int)which);
}

int llm_model_token_is_eog(const llm_model *m, llm_token token)
{
    return m ? llm__tokenizer_is_eog(m->tok, token) : 0;
}

static int32_t put_text(const char *s, size_t n, char *buf, int32_t cap)
{
    if (n >= (size_t)INT32_MAX)
        return INT32_MIN;
    if (!buf || cap < 0 || (size_t)cap < n + 1)
        return -(int32_t)(n + 1);
    memcpy(buf, s, n);
    buf[n] = '\0';
    return (int32_t)n;
}

int32_t llm_model_meta(const llm_model *m, const char *key, char *buf, int32_t cap)
{
    if (!m || !key)
        return INT32_MIN;
    const llm_gguf_kv *kv = llm__gguf_find(m->gguf, key);
    if (!kv)
        return INT32_MIN;
    char tmp[64];
    switch (kv->type) {
    case LLM_GGUF_STRING:
        return put_text(kv->v.str.ptr, (size_t)kv->v.str.len, buf, cap);
    case LLM_GGUF_ARRAY:
        snprintf(tmp, sizeof tmp, "[array of %" PRIu64 "]", kv->v.arr.n);
        break;
    case LLM_GGUF_BOOL:
        snprintf(tmp, sizeof tmp, "%s", kv->v.u64 ? "true" : "false");
        break;
    case LLM_GGUF_FLOAT32:
    case LLM_GGUF_FLOAT64:
        snprintf(tmp, sizeof tmp, "%g", kv->v.f64);
        break;
    case LLM_GGUF_INT8:
    case LLM_GGUF_INT16:
    case LLM_GGUF_INT32:
    case LLM_GGUF_INT64:
        snprintf(tmp, sizeof tmp, "%" PRId64, kv->v.i64);
        break;
    default:
        snprintf(tmp, sizeof tmp, "%" PRIu64, kv->v.u64);
        break;
    }
    return put_text(tmp, strlen(tmp), buf, cap);
}

/* ---- tokenizer and chat --------------------------------------------------------------- */

int32_t llm_tokenize(const llm_model *m, const char *text, size_t len, llm_token *out,
                     int32_t cap, uint32_t flags)
{
    if (!m || (!text && len) || cap < 0 || (!out && cap > 0)) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_tokenize: invalid arguments");
        return INT32_MIN;
    }
    return llm__tokenize(m->tok, text ? text : "", text ? len : 0, out, cap, flags);
}

int32_t llm_token_to_piece(const llm_model *m, llm_token token, char *buf, int32_t cap,
                           uint32_t flags)
{
    if (!m || cap < 0 || (!buf && cap > 0))
        return INT32_MIN;
    return llm__token_to_piece(m->tok, token, buf, cap, flags);
}

int32_t llm_detokenize(const llm_model *m, const llm_token *tokens, int32_t n, char *buf,
                       int32_t cap, uint32_t flags)
{
    if (!m || n < 0 || (!tokens && n > 0) || cap < 0 || (!buf && cap > 0))
        return INT32_MIN;
    return llm__detokenize(m->tok, tokens, n, buf, cap, flags);
}

int32_t llm_chat_apply(const llm_model *m, const char *tmpl, const llm_chat_message *msgs,
                       int32_t n_msgs, int add_generation_prompt, char *buf, int32_t cap)
{
    if (n_msgs < 0 || (!msgs && n_msgs > 0) || cap < 0 || (!buf && cap > 0)) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_chat_apply: invalid arguments");
        return INT32_MIN;
    }
    for (int32_t i = 0; i < n_msgs; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            llm__fail(LLM_ERR_INVALID_ARG, "llm_chat_apply: message %d has a NULL field", i);
            return INT32_MIN;
        }
    }
    /* a model without BOS/EOS leaves them undefined in the template, as transformers does */
    const char *bos = NULL, *eos = NULL;
    if (m) {
        if (!tmpl)
            tmpl = m->chat_template;
        bos = llm__tokenizer_text(m->tok, llm__tokenizer_special(m->tok, LLM_TOKEN_BOS));
        eos = llm__tokenizer_text(m->tok, llm__tokenizer_special(m->tok, LLM_TOKEN_EOS));
    }
    if (!tmpl) {
        llm__fail(LLM_ERR_TEMPLATE, "llm_chat_apply: the model has no chat template; pass one");
        return INT32_MIN;
    }
    return llm__chat_render(tmpl, msgs, n_msgs, add_generation_prompt, bos, eos, buf, cap);
}
