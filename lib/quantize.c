/* quantize.c - llm_model_quantize: an F32/F16/BF16 GGUF to a quantized GGUF.
 *
 * Every metadata pair is copied (general.file_type and general.quantization_version are
 * set to what the output holds), tensors keep their order, names and shapes. Which type a
 * tensor gets follows llama.cpp's choices for the presets (llama-quant.cpp): vectors,
 * routers and matrices whose rows do not fit a block stay or fall back, the output matrix
 * gets Q6_K, and the "_M" mixes spend more bits on attn_v and ffn_down in the layers
 * use_more_bits() picks. Rows of a tensor are encoded by n_threads threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "quant_encode.h"

typedef struct ftype_info {
    int32_t ftype;
    const char *name;
    uint32_t base;
} ftype_info;

static const ftype_info ftypes[] = {
    {LLM_FTYPE_Q4_0, "Q4_0", LLM_DT_Q4_0},     {LLM_FTYPE_Q4_1, "Q4_1", LLM_DT_Q4_1},
    {LLM_FTYPE_Q5_0, "Q5_0", LLM_DT_Q5_0},     {LLM_FTYPE_Q5_1, "Q5_1", LLM_DT_Q5_1},
    {LLM_FTYPE_Q8_0, "Q8_0", LLM_DT_Q8_0},     {LLM_FTYPE_Q2_K, "Q2_K", LLM_DT_Q2_K},
    {LLM_FTYPE_Q3_K_S, "Q3_K_S", LLM_DT_Q3_K}, {LLM_FTYPE_Q3_K_M, "Q3_K_M", LLM_DT_Q3_K},
    {LLM_FTYPE_Q3_K_L, "Q3_K_L", LLM_DT_Q3_K}, {LLM_FTYPE_Q4_K_S, "Q4_K_S", LLM_DT_Q4_K},
    {LLM_FTYPE_Q4_K_M, "Q4_K_M", LLM_DT_Q4_K}, {LLM_FTYPE_Q5_K_S, "Q5_K_S", LLM_DT_Q5_K},
    {LLM_FTYPE_Q5_K_M, "Q5_K_M", LLM_DT_Q5_K}, {LLM_FTYPE_Q6_K, "Q6_K", LLM_DT_Q6_K},
};
#define N_FTYPES ((int)(sizeof ftypes / sizeof ftypes[0]))

static const ftype_info *find_ftype(int32_t ftype)
{
    for (int i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype)
            return &ftypes[i];
    return NULL;
}

int32_t llm_ftype_from_name(const char *name)
{
    for (int i = 0; name && i < N_FTYPES; i++)
        if (strcasecmp(name, ftypes[i].name) == 0)
            return ftypes[i].ftype;
    return -1;
}

const char *llm_ftype_name(int32_t ftype)
{
    const ftype_info *f = find_ftype(ftype);
    return f ? f->name : NULL;
}

/* ---- type choice ----------------------------------------------------------------------- */

typedef struct plan {
    const ftype_info *ft;
    int n_layer;          /* from <arch>.block_count, 0 if unknown */
    int n_attn_v, i_attn_v;
    int n_ffn_down, i_ffn_down;
    int tied;             /* no output.weight: token_embd serves as the output */
    int gqa;              /* heads per kv head */
} plan;

static int ends_with(const char *s, size_t n, const char *suffix)
{
    const size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int name_has(const llm_gguf_str *name, const char *part)
{
    const size_t k = strlen(part);
    for (uint64_t i = 0; i + k <= name->len; i++)
        if (memcmp(name->ptr + i, part, k) == 0)
            return 1;
    return 0;
}

static int use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* A type whose block does not divide the rows falls back as llama.cpp's does. */
static uint32_t fit_rows(uint32_t t, int64_t ne0)
{
    const llm_dtype_info *info = llm__dtype_info(t);
    if (info && ne0 % info->block == 0)
        return t;
    switch (t) {
    case LLM_DT_Q2_K:
    case LLM_DT_Q3_K: t = LLM_DT_Q4_0; break;
    case LLM_DT_Q4_K: t = LLM_DT_Q5_0; break;
    case LLM_DT_Q5_K: t = LLM_DT_Q5_1; break;
    case LLM_DT_Q6_K: t = LLM_DT_Q8_0; break;
    default: break;
    }
    return ne0 % 32 == 0 ? t : LLM_DT_F16;
}

/* The type tensor t gets, or its own type when it is not to be quantized. */
static uint32_t choose_type(plan *p, const llm_gguf_tensor *t)
{
    const llm_gguf_str *nm = &t->name;
    const int is_float = t->type == LLM_DT_F32 || t->type == LLM_DT_F16 || t->type == LLM_DT_BF16;
    if (!is_float || t->n_dims < 2 || !ends_with(nm->ptr, nm->len, "weight") ||
        name_has(nm, "ffn_gate_inp") || name_has(nm, "rope_") || name_has(nm, "pos_embd"))
        return t->type;
    const int32_t f = p->ft->ftype;
    uint32_t nt = p->ft->base;
    int il = -1;
    if (nm->len > 4 && memcmp(nm->ptr, "blk.", 4) == 0)
        il = atoi(nm->ptr + 4);
    const int n = p->n_layer > 0 ? p->n_layer : 1;
    const int is_output = (nm->len == 13 && memcmp(nm->ptr, "output.weight", 13) == 0) ||
                          (p->tied && name_has(nm, "token_embd.weight"));
    if (is_output) {
        nt = nt == LLM_DT_Q8_0 ? LLM_DT_Q8_0 : LLM_DT_Q6_K;
    } else if (name_has(nm, "attn_v.weight")) {
        const int i = p->i_attn_v++;
        if (f == LLM_FTYPE_Q2_K)
            nt = p->gqa >= 4 ? LLM_DT_Q4_K : LLM_DT_Q3_K;
        else if (f == LLM_FTYPE_Q3_K_M)
            nt = i < 2 ? LLM_DT_Q5_K : LLM_DT_Q4_K;
        else if (f == LLM_FTYPE_Q3_K_L)
            nt = LLM_DT_Q5_K;
        else if ((f == LLM_FTYPE_Q4_K_M || f == LLM_FTYPE_Q5_K_M) &&
                 use_more_bits(i, p->n_attn_v))
            nt = LLM_DT_Q6_K;
        else if (f == LLM_FTYPE_Q4_K_S && i < 4)
            nt = LLM_DT_Q5_K;
    } else if (name_has(nm, "ffn_down")) {
        const int i = il >= 0 ? il : p->i_ffn_down;
        p->i_ffn_down++;
        if (f == LLM_FTYPE_Q2_K)
            nt = LLM_DT_Q3_K;
        else if (f == LLM_FTYPE_Q3_K_M)
            nt = i < n / 16 ? LLM_DT_Q5_K : LLM_DT_Q4_K;
        else if (f == LLM_FTYPE_Q3_K_L)
            nt = LLM_DT_Q5_K;
        else if (f == LLM_FTYPE_Q4_K_M && use_more_bits(i, n))
            nt = LLM_DT_Q6_K;
        else if (f == LLM_FTYPE_Q4_K_S && i < n / 8)
            nt = LLM_DT_Q5_K;
        else if (f == LLM_FTYPE_Q5_K_M && use_more_bits(i, n))
            nt = LLM_DT_Q6_K;
    } else if (name_has(nm, "attn_output.weight")) {
        if (f == LLM_FTYPE_Q2_K)
            nt = LLM_DT_Q3_K;
        else if (f == LLM_FTYPE_Q3_K_M)
            nt = LLM_DT_Q4_K;
        else if (f == LLM_FTYPE_Q3_K_L)
            nt = LLM_DT_Q5_K;
    }
    return fit_rows(nt, t->ne[0]);
}

/* ---- output --------------------------------------------------------------------------- */

typedef struct writer {
    FILE *f;
    int err;
} writer;

static void put(writer *w, const void *p, size_t n)
{
    if (!w->err && n && fwrite(p, 1, n, w->f) != n)
        w->err = 1;
}

static void put_u32(writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(writer *w, uint64_t v) { put(w, &v, 8); }

static void put_str(writer *w, const char *s, uint64_t n)
{
    put_u64(w, n);
    put(w, s, (size_t)n);
}

static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case LLM_GGUF_UINT8: case LLM_GGUF_INT8: case LLM_GGUF_BOOL: return 1;
    case LLM_GGUF_UINT16: case LLM_GGUF_INT16: return 2;
    case LLM_GGUF_UINT32: case LLM_GGUF_INT32: case LLM_GGUF_FLOAT32: return 4;
    default: return 8;
    }
}

static void put_scalar(writer *w, uint32_t type, const llm_gguf_kv *kv)
{
    switch (type) {
    case LLM_GGUF_FLOAT32: {
        const float f = (float)kv->v.f64;
        put(w, &f, 4);
        break;
    }
    case LLM_GGUF_FLOAT64: put(w, &kv->v.f64, 8); break;
    case LLM_GGUF_INT8: case LLM_GGUF_INT16: case LLM_GGUF_INT32: case LLM_GGUF_INT64:
        put(w, &kv->v.i64, scalar_size(type)); /* little endian: the low bytes */
        break;
    default: put(w, &kv->v.u64, scalar_size(type)); break;
    }
}

static void put_kv(writer *w, const llm_gguf_kv *kv)
{
    put_str(w, kv->key.ptr, kv->key.len);
    put_u32(w, kv->type);
    if (kv->type == LLM_GGUF_STRING) {
        put_str(w, kv->v.str.ptr, kv->v.str.len);
    } else if (kv->type == LLM_GGUF_ARRAY) {
        put_u32(w, kv->v.arr.type);
        put_u64(w, kv->v.arr.n);
        if (kv->v.arr.type == LLM_GGUF_STRING)
            for (uint64_t i = 0; i < kv->v.arr.n; i++)
                put_str(w, kv->v.arr.strs[i].ptr, kv->v.arr.strs[i].len);
        else
            put(w, kv->v.arr.data, (size_t)(kv->v.arr.n * scalar_size(kv->v.arr.type)));
    } else {
        put_scalar(w, kv->type, kv);
    }
}

static void put_u32_kv(writer *w, const char *key, uint32_t v)
{
    put_str(w, key, strlen(key));
    put_u32(w, LLM_GGUF_UINT32);
    put_u32(w, v);
}

static void pad_to(writer *w, uint64_t *pos, uint64_t align)
{
    static const char zeros[256];
    while (*pos % align) {
        const uint64_t k = align - *pos % align;
        const size_t c = k < sizeof zeros ? (size_t)k : sizeof zeros;
        put(w, zeros, c);
        *pos += c;
    }
}

/* ---- threaded encoding ------------------------------------------------------------------ */

typedef struct job {
    const llm_gguf_tensor *t;
    int64_t rows, ne0;
    uint32_t out_type;
    uint8_t *out;
    size_t out_row;
    int n_threads;
    int fail;
} job;

typedef struct worker_arg {
    job *j;
    int ith;
} worker_arg;

static void row_to_f32(const llm_gguf_tensor *t, int64_t r, float *x, int64_t n)
{
    if (t->type == LLM_DT_F32) {
        memcpy(x, (const float *)t->data + r * n, (size_t)n * sizeof(float));
    } else if (t->type == LLM_DT_F16) {
        const uint16_t *h = (const uint16_t *)t->data + r * n;
        for (int64_t i = 0; i < n; i++)
            x[i] = llm__fp16_to_fp32(h[i]);
    } else { /* bf16 */
        const uint16_t *h = (const uint16_t *)t->data + r * n;
        for (int64_t i = 0; i < n; i++) {
            const uint32_t u = (uint32_t)h[i] << 16;
            memcpy(&x[i], &u, 4);
        }
    }
}

static void *encode_rows(void *arg)
{
    worker_arg *a = arg;
    job *j = a->j;
    float *x = malloc((size_t)j->ne0 * sizeof(float));
    if (!x) {
        j->fail = 1;
        return NULL;
    }
    llm_quant_encode_fn enc = llm__quant_encoder(j->out_type);
    for (int64_t r = a->ith; r < j->rows; r += j->n_threads) {
        row_to_f32(j->t, r, x, j->ne0);
        uint8_t *dst = j->out + (size_t)r * j->out_row;
        if (enc) {
            enc(x, dst, j->ne0);
        } else if (j->out_type == LLM_DT_F16) {
            for (int64_t i = 0; i < j->ne0; i++) {
                const uint16_t h = llm__fp32_to_fp16(x[i]);
                memcpy(dst + 2 * i, &h, 2);
            }
        } else { /* F32 */
            memcpy(dst, x, (size_t)j->ne0 * sizeof(float));
        }
    }
    free(x);
    return NULL;
}

static int encode_tensor(job *j)
{
    pthread_t th[64];
    worker_arg args[64];
    int started = 0;
    for (int i = 1; i < j->n_threads; i++) {
        args[i] = (worker_arg){j, i};
        if (pthread_create(&th[i], NULL, encode_rows, &args[i]) != 0)
            break;
        started = i;
    }
    if (started != j->n_threads - 1) { /* fewer threads than asked: redo with what runs */
        for (int i = 1; i <= started; i++)
            pthread_join(th[i], NULL);
        j->n_threads = 1;
        started = 0;
    }
    args[0] = (worker_arg){j, 0};
    encode_rows(&args[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    return j->fail ? -1 : 0;
}

/* ---- the call --------------------------------------------------------------------------- */

static void read_qparams(llm_quantize_params *dst, const llm_quantize_params *src)
{
    llm_quantize_params_init(dst);
    if (src) {
        size_t n = src->size < sizeof *dst ? src->size : sizeof *dst;
        memcpy(dst, src, n);
        dst->size = sizeof *dst;
    }
}

llm_status llm_model_quantize(const char *in_path, const char *out_path,
                              const llm_quantize_params *params)
{
    llm__clear_error();
    if (!in_path || !out_path)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_quantize: a path is NULL");
    if (params && params->size < sizeof(size_t))
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_quantize: params->size is not set "
                         "(call llm_quantize_params_init)");
    llm_quantize_params p;
    read_qparams(&p, params);
    plan pl = {.ft = find_ftype(p.ftype)};
    if (!pl.ft)
        return llm__fail(LLM_ERR_INVALID_ARG, "llm_model_quantize: unknown target type %d",
                         p.ftype);
    int n_threads = p.n_threads > 0 ? p.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    n_threads = n_threads < 1 ? 1 : n_threads > 64 ? 64 : n_threads;

    llm_gguf *g = NULL;
    llm_status st = llm__gguf_open(in_path, 1, &g);
    if (st != LLM_OK)
        return st;
    const char *arch = "";
    llm__gguf_get_str(g, "general.architecture", &arch);
    char key[160];
    uint32_t u = 0, heads = 0, heads_kv = 0;
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (llm__gguf_get_u32(g, key, &u) == 1)
        pl.n_layer = (int)u;
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    llm__gguf_get_u32(g, key, &heads);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    if (llm__gguf_get_u32(g, key, &heads_kv) != 1)
        heads_kv = heads;
    pl.gqa = heads_kv ? (int)(heads / heads_kv) : 1;
    pl.tied = llm__gguf_find_tensor(g, "output.weight") == NULL;
    uint32_t alignment = 32;
    llm__gguf_get_u32(g, "general.alignment", &alignment);
    if (alignment == 0 || (alignment & (alignment - 1)))
        alignment = 32;

    const int64_t nt = llm__gguf_n_tensors(g);
    uint32_t *types = calloc((size_t)(nt ? nt : 1), sizeof *types);
    uint64_t *offsets = calloc((size_t)(nt ? nt : 1), sizeof *offsets);
    FILE *f = NULL;
    uint8_t *buf = NULL;
    if (!types || !offsets) {
        st = llm__fail(LLM_ERR_NO_MEMORY, "llm_model_quantize: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < nt; i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(g, i);
        if (name_has(&t->name, "attn_v.weight"))
            pl.n_attn_v++;
        if (name_has(&t->name, "ffn_down"))
            pl.n_ffn_down++;
    }
    /* types and the data layout */
    uint64_t data_size = 0, total_in = 0;
    for (int64_t i = 0; i < nt; i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(g, i);
        types[i] = choose_type(&pl, t);
        uint64_t rows = 1;
        for (uint32_t d = 1; d < t->n_dims; d++)
            rows *= (uint64_t)t->ne[d];
        const uint64_t bytes = types[i] == t->type
                                   ? t->nbytes
                                   : rows * llm__dtype_row_size(types[i], t->ne[0]);
        data_size = (data_size + alignment - 1) / alignment * alignment;
        offsets[i] = data_size;
        data_size += bytes;
        total_in += t->nbytes;
    }

    f = fopen(out_path, "wb");
    if (!f) {
        st = llm__fail(LLM_ERR_IO, "llm_model_quantize: cannot create '%s'", out_path);
        goto done;
    }
    writer w = {.f = f};
    /* header and metadata: every pair but the two this call sets */
    const int64_t nkv = llm__gguf_n_kv(g);
    int64_t kept = 0;
    for (int64_t i = 0; i < nkv; i++) {
        const llm_gguf_kv *kv = llm__gguf_kv_at(g, i);
        const int replaced = (kv->key.len == 17 && !memcmp(kv->key.ptr, "general.file_type", 17)) ||
                             (kv->key.len == 28 &&
                              !memcmp(kv->key.ptr, "general.quantization_version", 28));
        kept += !replaced;
    }
    put(&w, "GGUF", 4);
    put_u32(&w, 3);
    put_u64(&w, (uint64_t)nt);
    put_u64(&w, (uint64_t)(kept + 2));
    for (int64_t i = 0; i < nkv; i++) {
        const llm_gguf_kv *kv = llm__gguf_kv_at(g, i);
        const int replaced = (kv->key.len == 17 && !memcmp(kv->key.ptr, "general.file_type", 17)) ||
                             (kv->key.len == 28 &&
                              !memcmp(kv->key.ptr, "general.quantization_version", 28));
        if (!replaced)
            put_kv(&w, kv);
    }
    put_u32_kv(&w, "general.quantization_version", 2);
    put_u32_kv(&w, "general.file_type", (uint32_t)pl.ft->ftype);
    for (int64_t i = 0; i < nt; i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(g, i);
        put_str(&w, t->name.ptr, t->name.len);
        put_u32(&w, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_u64(&w, (uint64_t)t->ne[d]);
        put_u32(&w, types[i]);
        put_u64(&w, offsets[i]);
    }
    uint64_t pos = (uint64_t)ftell(f);
    pad_to(&w, &pos, alignment);
    const uint64_t data_start = pos;
    uint64_t done_in = 0;
    for (int64_t i = 0; i < nt && !w.err; i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(g, i);
        uint64_t at = pos - data_start;
        pad_to(&w, &at, alignment);
        pos = data_start + at;
        if (types[i] == t->type) {
            put(&w, t->data, (size_t)t->nbytes);
            pos += t->nbytes;
        } else {
            int64_t rows = 1;
            for (uint32_t d = 1; d < t->n_dims; d++)
                rows *= t->ne[d];
            job j = {.t = t, .rows = rows, .ne0 = t->ne[0], .out_type = types[i],
                     .out_row = llm__dtype_row_size(types[i], t->ne[0]), .n_threads = n_threads};
            const size_t bytes = (size_t)rows * j.out_row;
            uint8_t *nb = realloc(buf, bytes ? bytes : 1);
            if (!nb) {
                st = llm__fail(LLM_ERR_NO_MEMORY, "llm_model_quantize: out of memory for "
                               "tensor '%.*s'", (int)t->name.len, t->name.ptr);
                goto done;
            }
            buf = nb;
            j.out = buf;
            if (encode_tensor(&j) != 0) {
                st = llm__fail(LLM_ERR_NO_MEMORY, "llm_model_quantize: out of memory");
                goto done;
            }
            put(&w, buf, bytes);
            pos += bytes;
        }
        done_in += t->nbytes;
        if (p.progress && p.progress(total_in ? (float)((double)done_in / (double)total_in) : 1.0f,
                                     p.progress_user)) {
            st = llm__fail(LLM_ERR_CANCELLED, "llm_model_quantize: cancelled");
            goto done;
        }
    }
    if (w.err || fflush(f) != 0) {
        st = llm__fail(LLM_ERR_IO, "llm_model_quantize: write to '%s' failed", out_path);
        goto done;
    }
    st = LLM_OK;
done:
    if (f && fclose(f) != 0 && st == LLM_OK)
        st = llm__fail(LLM_ERR_IO, "llm_model_quantize: write to '%s' failed", out_path);
    if (st != LLM_OK && f)
        remove(out_path);
    free(buf);
    free(types);
    free(offsets);
    llm__gguf_close(g);
    return st;
}
