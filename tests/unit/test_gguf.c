/* test_gguf.c - the GGUF reader against files built here byte by byte (valid ones, and
 * one malformed variant per check the reader makes), and against the real models. */
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dtype.h"
#include "gguf.h"
#include "test.h"

/* ---- a tiny GGUF writer ------------------------------------------------------------- */

typedef struct wbuf {
    uint8_t *b;
    size_t n, cap;
} wbuf;

static void w_bytes(wbuf *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
        if (!w->b)
            abort();
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_le(wbuf *w, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, t, (size_t)n);
}

static void w_u8(wbuf *w, uint8_t v) { w_le(w, v, 1); }
static void w_u32(wbuf *w, uint32_t v) { w_le(w, v, 4); }
static void w_u64(wbuf *w, uint64_t v) { w_le(w, v, 8); }

static void w_str(wbuf *w, const char *s)
{
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}

static void w_f32(wbuf *w, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    w_u32(w, u);
}

static void w_f64(wbuf *w, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    w_u64(w, u);
}

static void w_pad(wbuf *w, size_t align)
{
    while (w->n % align)
        w_u8(w, 0);
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the reference valid file ------------------------------------------------------- */

/* Offsets of fields in the reference file, so that a malformed case patches exactly one. */
typedef struct layout {
    size_t version, n_tensors, n_kv;
    size_t key_len;         /* length of the first key */
    size_t kv_type;         /* type field of the first pair */
    size_t dup_key_last;    /* last byte of key "dup.k2" */
    size_t bool_val;        /* the byte of the scalar bool */
    size_t align_val;       /* value of general.alignment */
    size_t arr_type, arr_n; /* element type and count of the int32 array */
    size_t sarr_n;          /* count of the string array */
    size_t t_name_last[3];  /* last byte of each tensor name */
    size_t t_ndims[3], t_ne[3][4], t_type[3], t_off[3];
    size_t data;            /* start of the data section */
    size_t t_data[3];       /* each tensor's data, from the file start */
} layout;

static const char *const vocab[] = {"<pad>", "", "hello", " world", "\xe2\x96\x81x"};
#define N_VOCAB 5
static const int32_t iarr[] = {-3, 0, 7, 2147483647};

/* Writes a version-`ver` file with 17 pairs and 3 tensors, aligned to `align`. */
static void build_valid(wbuf *w, layout *o, uint32_t ver, uint32_t align)
{
    memset(o, 0, sizeof *o);
    w->n = 0;
    w_bytes(w, "GGUF", 4);
    o->version = w->n;
    w_u32(w, ver);
    o->n_tensors = w->n;
    w_u64(w, 3);
    o->n_kv = w->n;
    w_u64(w, 17);

    o->key_len = w->n;
    w_str(w, "general.architecture");
    o->kv_type = w->n;
    w_u32(w, LLM_GGUF_STRING);
    w_str(w, "llama");
    w_str(w, "general.alignment");
    w_u32(w, LLM_GGUF_UINT32);
    o->align_val = w->n;
    w_u32(w, align);
    w_str(w, "k.u8");
    w_u32(w, LLM_GGUF_UINT8);
    w_u8(w, 200);
    w_str(w, "k.i8");
    w_u32(w, LLM_GGUF_INT8);
    w_u8(w, 0x80); /* -128 */
    w_str(w, "k.u16");
    w_u32(w, LLM_GGUF_UINT16);
    w_le(w, 65535, 2);
    w_str(w, "k.i16");
    w_u32(w, LLM_GGUF_INT16);
    w_le(w, (uint16_t)-300, 2);
    w_str(w, "k.u32");
    w_u32(w, LLM_GGUF_UINT32);
    w_u32(w, 4000000000u);
    w_str(w, "k.i32");
    w_u32(w, LLM_GGUF_INT32);
    w_u32(w, (uint32_t)-123456);
    w_str(w, "k.f32");
    w_u32(w, LLM_GGUF_FLOAT32);
    w_f32(w, 1e-5f);
    w_str(w, "k.bool");
    w_u32(w, LLM_GGUF_BOOL);
    o->bool_val = w->n;
    w_u8(w, 1);
    w_str(w, "k.u64");
    w_u32(w, LLM_GGUF_UINT64);
    w_u64(w, 1ULL << 40);
    w_str(w, "k.i64");
    w_u32(w, LLM_GGUF_INT64);
    w_u64(w, (uint64_t)-5);
    w_str(w, "k.f64");
    w_u32(w, LLM_GGUF_FLOAT64);
    w_f64(w, 1e300);
    w_str(w, "k.iarr");
    w_u32(w, LLM_GGUF_ARRAY);
    o->arr_type = w->n;
    w_u32(w, LLM_GGUF_INT32);
    o->arr_n = w->n;
    w_u64(w, 4);
    for (int i = 0; i < 4; i++)
        w_u32(w, (uint32_t)iarr[i]);
    w_str(w, "tokenizer.ggml.tokens");
    w_u32(w, LLM_GGUF_ARRAY);
    w_u32(w, LLM_GGUF_STRING);
    o->sarr_n = w->n;
    w_u64(w, N_VOCAB);
    for (int i = 0; i < N_VOCAB; i++)
        w_str(w, vocab[i]);
    w_str(w, "dup.k1");
    w_u32(w, LLM_GGUF_STRING);
    w_str(w, "");
    w_str(w, "dup.k2");
    o->dup_key_last = w->n - 1;
    w_u32(w, LLM_GGUF_BOOL);
    w_u8(w, 0);

    /* Tensors: f32 [8, 3], q4_0 [64, 2] and f16 [4, 1, 2, 3]. */
    static const char *names[3] = {"tensor.a", "tensor.b", "tensor.c"};
    static const uint32_t types[3] = {LLM_DT_F32, LLM_DT_Q4_0, LLM_DT_F16};
    static const uint32_t ndims[3] = {2, 2, 4};
    static const uint64_t ne[3][4] = {{8, 3, 1, 1}, {64, 2, 1, 1}, {4, 1, 2, 3}};
    static const uint64_t nbytes[3] = {8 * 3 * 4, 2 * 2 * 18, 24 * 2};
    uint64_t off = 0;
    uint64_t offs[3];
    for (int t = 0; t < 3; t++) {
        w_str(w, names[t]);
        o->t_name_last[t] = w->n - 1;
        o->t_ndims[t] = w->n;
        w_u32(w, ndims[t]);
        for (uint32_t d = 0; d < ndims[t]; d++) {
            o->t_ne[t][d] = w->n;
            w_u64(w, ne[t][d]);
        }
        o->t_type[t] = w->n;
        w_u32(w, types[t]);
        o->t_off[t] = w->n;
        offs[t] = off;
        w_u64(w, off);
        off = (off + nbytes[t] + align - 1) / align * align;
    }
    w_pad(w, align);
    o->data = w->n;
    for (int t = 0; t < 3; t++) {
        while (w->n < o->data + offs[t])
            w_u8(w, 0);
        o->t_data[t] = w->n;
        for (uint64_t j = 0; j < nbytes[t]; j++)
            w_u8(w, (uint8_t)(17 * t + j));
    }
}

/* Parses a copy of the bytes in an exact-size heap block, so that AddressSanitizer sees
 * any read past the end. */
static llm_status parse_copy(const uint8_t *b, size_t n, llm_gguf **g)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, b, n);
    llm_status st = llm__gguf_open_memory(copy, n, g);
    if (st == LLM_OK) {
        /* The reader borrows the buffer; the checks below only need it on success. */
        llm__gguf_close(*g);
        *g = NULL;
    }
    free(copy);
    return st;
}

/* Expects the patched file to fail with INVALID_MODEL and a message containing `needle`. */
#define CHECK_REJECT(buf, len, needle)                                                  \
    do {                                                                                \
        llm_gguf *g_ = NULL;                                                            \
        llm__clear_error();                                                             \
        llm_status st_ = parse_copy((buf), (len), &g_);                                 \
        CHECK_EQ_INT(st_, LLM_ERR_INVALID_MODEL);                                       \
        CHECK(g_ == NULL);                                                              \
        CHECK_MSG(strstr(llm_last_error(), (needle)) != NULL, "message '%s' lacks '%s'", \
                  llm_last_error(), (needle));                                          \
    } while (0)

/* ---- valid files -------------------------------------------------------------------- */

static void check_valid_contents(const llm_gguf *g, const uint8_t *base, const layout *o,
                                 uint32_t ver)
{
    CHECK_EQ_INT(llm__gguf_version(g), ver);
    CHECK_EQ_INT(llm__gguf_n_kv(g), 17);
    CHECK_EQ_INT(llm__gguf_n_tensors(g), 3);

    const llm_gguf_kv *kv = llm__gguf_kv_at(g, 0);
    CHECK(kv && kv->key.len == 20 && memcmp(kv->key.ptr, "general.architecture", 20) == 0);
    CHECK(llm__gguf_kv_at(g, 17) == NULL && llm__gguf_kv_at(g, -1) == NULL);
    CHECK(llm__gguf_find(g, "k.u8") == llm__gguf_kv_at(g, 2));
    CHECK(llm__gguf_find(g, "k.u") == NULL);
    CHECK(llm__gguf_find(g, "k.u88") == NULL);

    kv = llm__gguf_find(g, "k.u8");
    CHECK(kv && kv->type == LLM_GGUF_UINT8 && kv->v.u64 == 200);
    kv = llm__gguf_find(g, "k.i8");
    CHECK(kv && kv->type == LLM_GGUF_INT8 && kv->v.i64 == -128);
    kv = llm__gguf_find(g, "k.u16");
    CHECK(kv && kv->v.u64 == 65535);
    kv = llm__gguf_find(g, "k.i16");
    CHECK(kv && kv->v.i64 == -300);
    kv = llm__gguf_find(g, "k.i64");
    CHECK(kv && kv->v.i64 == -5);
    kv = llm__gguf_find(g, "k.f64");
    CHECK(kv && kv->type == LLM_GGUF_FLOAT64 && kv->v.f64 == 1e300);

    kv = llm__gguf_find(g, "k.iarr");
    CHECK(kv && kv->type == LLM_GGUF_ARRAY && kv->v.arr.type == LLM_GGUF_INT32 &&
          kv->v.arr.n == 4);
    if (kv && kv->v.arr.data) {
        CHECK((const uint8_t *)kv->v.arr.data == base + o->arr_n + 8);
        int32_t v[4];
        memcpy(v, kv->v.arr.data, sizeof v);
        CHECK(memcmp(v, iarr, sizeof v) == 0);
    }
    kv = llm__gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == LLM_GGUF_ARRAY && kv->v.arr.type == LLM_GGUF_STRING &&
          kv->v.arr.n == N_VOCAB && kv->v.arr.strs);
    if (kv && kv->v.arr.strs)
        for (int i = 0; i < N_VOCAB; i++)
            CHECK_MSG(kv->v.arr.strs[i].len == strlen(vocab[i]) &&
                          memcmp(kv->v.arr.strs[i].ptr, vocab[i], strlen(vocab[i])) == 0,
                      "vocab[%d]", i);

    const char *s = NULL;
    CHECK_EQ_INT(llm__gguf_get_str(g, "general.architecture", &s), 1);
    CHECK(s && strcmp(s, "llama") == 0);
    CHECK_EQ_INT(llm__gguf_get_str(g, "dup.k1", &s), 1);
    CHECK(s && strcmp(s, "") == 0);

    /* Tensors: shapes, sizes, and data pointers into the buffer. */
    static const int64_t ne[3][4] = {{8, 3, 1, 1}, {64, 2, 1, 1}, {4, 1, 2, 3}};
    static const uint64_t nbytes[3] = {96, 72, 48};
    static const uint32_t types[3] = {LLM_DT_F32, LLM_DT_Q4_0, LLM_DT_F16};
    static const uint32_t ndims[3] = {2, 2, 4};
    char name[16];
    for (int t = 0; t < 3; t++) {
        snprintf(name, sizeof name, "tensor.%c", 'a' + t);
        const llm_gguf_tensor *ti = llm__gguf_find_tensor(g, name);
        CHECK(ti == llm__gguf_tensor_at(g, t));
        if (!ti)
            continue;
        CHECK_EQ_INT(ti->n_dims, ndims[t]);
        for (int d = 0; d < 4; d++)
            CHECK_EQ_INT(ti->ne[d], ne[t][d]);
        CHECK_EQ_INT(ti->type, types[t]);
        CHECK_EQ_INT(ti->nbytes, nbytes[t]);
        CHECK_EQ_INT(ti->offset, o->t_data[t] - o->data);
        CHECK((const uint8_t *)ti->data == base + o->t_data[t]);
        CHECK(((const uint8_t *)ti->data)[0] == (uint8_t)(17 * t));
        CHECK(((const uint8_t *)ti->data)[nbytes[t] - 1] == (uint8_t)(17 * t + nbytes[t] - 1));
    }
    CHECK(llm__gguf_find_tensor(g, "tensor.d") == NULL);
    CHECK(llm__gguf_find_tensor(g, "tensor") == NULL);
    CHECK(llm__gguf_tensor_at(g, 3) == NULL);
}

static void test_valid_v3(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open_memory(w.b, w.n, &g), LLM_OK);
    if (g) {
        CHECK_EQ_INT(llm__gguf_file_size(g), w.n);
        check_valid_contents(g, w.b, &o, 3);
        llm__gguf_close(g);
    }
    free(w.b);
}

static void test_valid_v2_align64(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 2, 64);
    CHECK_EQ_INT(o.data % 64, 0);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open_memory(w.b, w.n, &g), LLM_OK);
    if (g) {
        check_valid_contents(g, w.b, &o, 2);
        CHECK_EQ_INT(llm__gguf_find_tensor(g, "tensor.b")->offset, 128);
        llm__gguf_close(g);
    }
    free(w.b);
}

/* A header with no pairs and no tensors is a valid (useless) file. */
static void test_empty(void)
{
    wbuf w = {0};
    w_bytes(&w, "GGUF", 4);
    w_u32(&w, 3);
    w_u64(&w, 0);
    w_u64(&w, 0);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open_memory(w.b, w.n, &g), LLM_OK);
    if (g) {
        CHECK_EQ_INT(llm__gguf_n_kv(g), 0);
        CHECK_EQ_INT(llm__gguf_n_tensors(g), 0);
        CHECK(llm__gguf_find(g, "general.architecture") == NULL);
        CHECK(llm__gguf_find_tensor(g, "x") == NULL);
        llm__gguf_close(g);
    }
    llm__gguf_close(NULL);
    free(w.b);
}

static void test_getters(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open_memory(w.b, w.n, &g), LLM_OK);
    if (!g) {
        free(w.b);
        return;
    }
    uint32_t u = 77;
    int32_t i = 77;
    float f = 77;
    int b = 77;
    const char *s = "untouched";

    /* Missing keys leave the output alone. */
    CHECK_EQ_INT(llm__gguf_get_u32(g, "nope", &u), 0);
    CHECK_EQ_INT(llm__gguf_get_i32(g, "nope", &i), 0);
    CHECK_EQ_INT(llm__gguf_get_f32(g, "nope", &f), 0);
    CHECK_EQ_INT(llm__gguf_get_bool(g, "nope", &b), 0);
    CHECK_EQ_INT(llm__gguf_get_str(g, "nope", &s), 0);
    CHECK(u == 77 && i == 77 && f == 77 && b == 77 && strcmp(s, "untouched") == 0);

    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.u8", &u), 1);
    CHECK_EQ_INT(u, 200);
    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.u32", &u), 1);
    CHECK(u == 4000000000u);
    CHECK_EQ_INT(llm__gguf_get_i32(g, "k.i16", &i), 1);
    CHECK_EQ_INT(i, -300);
    CHECK_EQ_INT(llm__gguf_get_i32(g, "k.u16", &i), 1);
    CHECK_EQ_INT(i, 65535);
    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.u16", &u), 1);
    CHECK_EQ_INT(u, 65535);

    /* Values that do not fit. */
    u = 77;
    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.i8", &u), -1);
    CHECK(strstr(llm_last_error(), "k.i8") != NULL);
    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.u64", &u), -1);
    CHECK_EQ_INT(u, 77);
    CHECK_EQ_INT(llm__gguf_get_i32(g, "k.u32", &i), -1);
    CHECK_EQ_INT(llm__gguf_get_i32(g, "k.i64", &i), 1);
    CHECK_EQ_INT(i, -5);
    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.i64", &u), -1);
    CHECK_EQ_INT(llm__gguf_get_f32(g, "k.f64", &f), -1);
    CHECK(strstr(llm_last_error(), "float32") != NULL);

    /* Incompatible types. */
    CHECK_EQ_INT(llm__gguf_get_u32(g, "general.architecture", &u), -1);
    CHECK(strstr(llm_last_error(), "general.architecture") != NULL);
    CHECK_EQ_INT(llm__gguf_get_i32(g, "k.f32", &i), -1);
    CHECK_EQ_INT(llm__gguf_get_f32(g, "general.architecture", &f), -1);
    CHECK_EQ_INT(llm__gguf_get_str(g, "k.u8", &s), -1);
    CHECK_EQ_INT(llm__gguf_get_bool(g, "k.u8", &b), -1);
    CHECK_EQ_INT(llm__gguf_get_u32(g, "k.iarr", &u), -1);
    CHECK(strstr(llm_last_error(), "array") != NULL);
    CHECK(u == 77 && b == 77);

    /* Floats from floats and from integers. */
    CHECK_EQ_INT(llm__gguf_get_f32(g, "k.f32", &f), 1);
    CHECK(f == 1e-5f);
    CHECK_EQ_INT(llm__gguf_get_f32(g, "k.i32", &f), 1);
    CHECK(f == -123456.0f);
    CHECK_EQ_INT(llm__gguf_get_f32(g, "k.u8", &f), 1);
    CHECK(f == 200.0f);

    CHECK_EQ_INT(llm__gguf_get_bool(g, "k.bool", &b), 1);
    CHECK_EQ_INT(b, 1);
    CHECK_EQ_INT(llm__gguf_get_bool(g, "dup.k2", &b), 1);
    CHECK_EQ_INT(b, 0);
    const char *s1 = NULL, *s2 = NULL;
    CHECK_EQ_INT(llm__gguf_get_str(g, "general.architecture", &s1), 1);
    CHECK_EQ_INT(llm__gguf_get_str(g, "general.architecture", &s2), 1);
    CHECK(s1 && s1 == s2 && strcmp(s1, "llama") == 0);
    llm__gguf_close(g);
    free(w.b);
}

/* A string value with a NUL inside parses, but the C-string getter refuses it. */
static void test_str_with_nul(void)
{
    wbuf w = {0};
    w_bytes(&w, "GGUF", 4);
    w_u32(&w, 3);
    w_u64(&w, 0);
    w_u64(&w, 1);
    w_str(&w, "k");
    w_u32(&w, LLM_GGUF_STRING);
    w_u64(&w, 3);
    w_bytes(&w, "a\0b", 3);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open_memory(w.b, w.n, &g), LLM_OK);
    if (g) {
        const char *s = NULL;
        CHECK_EQ_INT(llm__gguf_get_str(g, "k", &s), -1);
        CHECK(strstr(llm_last_error(), "NUL") != NULL);
        CHECK(llm__gguf_find(g, "k")->v.str.len == 3);
        llm__gguf_close(g);
    }
    free(w.b);
}

/* ---- malformed files ---------------------------------------------------------------- */

/* Every proper prefix of a valid file is invalid, and none may read out of bounds. */
static void test_truncated(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    int n_fail = 0, n_bad_msg = 0;
    for (size_t n = 0; n < w.n; n++) {
        llm_gguf *g = NULL;
        llm__clear_error();
        llm_status st = parse_copy(w.b, n, &g);
        if (st != LLM_ERR_INVALID_MODEL) {
            if (n_fail++ < 5)
                fprintf(stderr, "  prefix %zu: status %d\n", n, (int)st);
        }
        if (llm_last_error()[0] == '\0' || strncmp(llm_last_error(), "gguf: ", 6) != 0)
            n_bad_msg++;
    }
    CHECK_EQ_INT(n_fail, 0);
    CHECK_EQ_INT(n_bad_msg, 0);
    /* A few messages name the cause precisely. */
    CHECK_REJECT(w.b, 2, "too small");
    CHECK_REJECT(w.b, o.t_type[1] + 2, "type of tensor 1 at offset");
    CHECK_REJECT(w.b, o.t_type[1] + 2, "but the file ends");
    CHECK_REJECT(w.b, o.t_data[2] + 10, "lies beyond the file end");
    free(w.b);
}

static void test_bad_header(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    uint8_t *b = malloc(w.n);

    memcpy(b, w.b, w.n);
    b[3] = 'X';
    CHECK_REJECT(b, w.n, "bad magic");

    memcpy(b, w.b, w.n);
    put_le(b + o.version, 1, 4);
    CHECK_REJECT(b, w.n, "version 1");
    put_le(b + o.version, 4, 4);
    CHECK_REJECT(b, w.n, "unsupported version 4");
    put_le(b + o.version, 0, 4);
    CHECK_REJECT(b, w.n, "unsupported version 0");
    put_le(b + o.version, 0x03000000, 4);
    CHECK_REJECT(b, w.n, "big-endian");

    memcpy(b, w.b, w.n);
    put_le(b + o.n_kv, 1ULL << 60, 8);
    CHECK_REJECT(b, w.n, "key/value pairs");
    put_le(b + o.n_kv, UINT64_MAX, 8);
    CHECK_REJECT(b, w.n, "cannot fit");
    /* A count that fits the minimum encoding but not the actual pairs. */
    put_le(b + o.n_kv, 18, 8);
    CHECK_REJECT(b, w.n, "gguf: ");

    memcpy(b, w.b, w.n);
    put_le(b + o.n_tensors, 1ULL << 62, 8);
    CHECK_REJECT(b, w.n, "tensors, which cannot fit");
    put_le(b + o.n_tensors, UINT64_MAX / 32 + 1, 8);
    CHECK_REJECT(b, w.n, "cannot fit");
    free(b);
    free(w.b);
}

static void test_bad_kv(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    uint8_t *b = malloc(w.n);

    memcpy(b, w.b, w.n);
    put_le(b + o.key_len, 1ULL << 62, 8);
    CHECK_REJECT(b, w.n, "has length 4611686018427387904");
    put_le(b + o.key_len, UINT64_MAX, 8);
    CHECK_REJECT(b, w.n, "only");

    memcpy(b, w.b, w.n);
    put_le(b + o.kv_type, 13, 4);
    CHECK_REJECT(b, w.n, "unknown value type 13");
    put_le(b + o.kv_type, 0xffffffffu, 4);
    CHECK_REJECT(b, w.n, "general.architecture");

    memcpy(b, w.b, w.n);
    b[o.dup_key_last] = '1';
    CHECK_REJECT(b, w.n, "duplicate key 'dup.k1'");

    memcpy(b, w.b, w.n);
    b[o.bool_val] = 2;
    CHECK_REJECT(b, w.n, "bool value 2");

    memcpy(b, w.b, w.n);
    put_le(b + o.arr_n, 1ULL << 61, 8);
    CHECK_REJECT(b, w.n, "array of 2305843009213693952 int32 elements cannot fit");
    put_le(b + o.arr_n, UINT64_MAX, 8);
    CHECK_REJECT(b, w.n, "cannot fit");
    put_le(b + o.arr_n, 1000, 8);
    CHECK_REJECT(b, w.n, "k.iarr");

    memcpy(b, w.b, w.n);
    put_le(b + o.sarr_n, 1ULL << 60, 8);
    CHECK_REJECT(b, w.n, "string elements cannot fit");
    /* Count fits the minimum (8 bytes each) but the strings run off the end. */
    put_le(b + o.sarr_n, 40, 8);
    CHECK_REJECT(b, w.n, "tokenizer.ggml.tokens");

    memcpy(b, w.b, w.n);
    put_le(b + o.arr_type, LLM_GGUF_ARRAY, 4);
    CHECK_REJECT(b, w.n, "nested arrays");
    put_le(b + o.arr_type, 13, 4);
    CHECK_REJECT(b, w.n, "unknown array element type 13");

    memcpy(b, w.b, w.n);
    put_le(b + o.align_val, 24, 4);
    CHECK_REJECT(b, w.n, "general.alignment = 24 is not");
    put_le(b + o.align_val, 0, 4);
    CHECK_REJECT(b, w.n, "general.alignment = 0 is not");
    put_le(b + o.align_val, 0x80000001u, 4);
    CHECK_REJECT(b, w.n, "power of two");
    /* 16 is valid: the offsets (multiples of 32) stay aligned, and the data section moves
     * to the first multiple of 16 after the tensor infos. */
    put_le(b + o.align_val, 16, 4);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open_memory(b, w.n, &g), LLM_OK);
    if (g) {
        size_t data16 = (o.t_off[2] + 8 + 15) / 16 * 16;
        CHECK((const uint8_t *)llm__gguf_find_tensor(g, "tensor.b")->data ==
              b + data16 + (o.t_data[1] - o.data));
    }
    llm__gguf_close(g);
    free(b);
    free(w.b);
}

/* general.alignment with a non-integer type is rejected. */
static void test_alignment_type(void)
{
    wbuf w = {0};
    w_bytes(&w, "GGUF", 4);
    w_u32(&w, 3);
    w_u64(&w, 0);
    w_u64(&w, 1);
    w_str(&w, "general.alignment");
    w_u32(&w, LLM_GGUF_STRING);
    w_str(&w, "32");
    CHECK_REJECT(w.b, w.n, "general.alignment has type string");
    free(w.b);
}

static void test_bad_tensor(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    uint8_t *b = malloc(w.n);

    memcpy(b, w.b, w.n);
    b[o.t_name_last[1]] = 'a';
    CHECK_REJECT(b, w.n, "tensor 'tensor.a' (#1): duplicate name");

    memcpy(b, w.b, w.n);
    put_le(b + o.t_ndims[0], 0, 4);
    CHECK_REJECT(b, w.n, "tensor 'tensor.a' (#0): has 0 dimensions");
    put_le(b + o.t_ndims[0], 5, 4);
    CHECK_REJECT(b, w.n, "has 5 dimensions");

    memcpy(b, w.b, w.n);
    put_le(b + o.t_ne[0][1], 0, 8);
    CHECK_REJECT(b, w.n, "dimension 1 has invalid size 0");
    put_le(b + o.t_ne[0][1], 1ULL << 63, 8);
    CHECK_REJECT(b, w.n, "dimension 1 has invalid size");

    /* 2^33 * 2^33 elements overflows int64. */
    memcpy(b, w.b, w.n);
    put_le(b + o.t_ne[1][0], 1ULL << 33, 8);
    put_le(b + o.t_ne[1][1], 1ULL << 33, 8);
    CHECK_REJECT(b, w.n, "tensor 'tensor.b' (#1): element count overflows");
    /* 2^40 * 2^40 overflows uint64. */
    put_le(b + o.t_ne[1][0], 1ULL << 40, 8);
    put_le(b + o.t_ne[1][1], 1ULL << 40, 8);
    CHECK_REJECT(b, w.n, "element count overflows");
    /* Elements fit int64 but the bytes of an f32 tensor do not fit uint64... */
    memcpy(b, w.b, w.n);
    put_le(b + o.t_ne[0][0], 1ULL << 62, 8);
    put_le(b + o.t_ne[0][1], 1, 8);
    CHECK_REJECT(b, w.n, "byte size overflows");
    /* ...and a big tensor whose bytes fit uint64 still lies beyond the file. */
    put_le(b + o.t_ne[0][0], 1ULL << 60, 8);
    CHECK_REJECT(b, w.n, "tensor 'tensor.a' (#0): data [");

    memcpy(b, w.b, w.n);
    put_le(b + o.t_type[1], 4, 4); /* Q4_2: retired */
    CHECK_REJECT(b, w.n, "tensor 'tensor.b' (#1): unknown tensor type id 4");
    put_le(b + o.t_type[1], 1000, 4);
    CHECK_REJECT(b, w.n, "unknown tensor type id 1000");

    /* ne[0] = 8 is not a multiple of q4_0's 32-element block. */
    memcpy(b, w.b, w.n);
    put_le(b + o.t_type[0], LLM_DT_Q4_0, 4);
    CHECK_REJECT(b, w.n, "not a multiple of the q4_0 block size 32");

    memcpy(b, w.b, w.n);
    put_le(b + o.t_off[2], 4, 8);
    CHECK_REJECT(b, w.n, "tensor 'tensor.c' (#2): data offset 0x4 is not a multiple");

    memcpy(b, w.b, w.n);
    put_le(b + o.t_off[2], 1ULL << 20, 8);
    CHECK_REJECT(b, w.n, "lies beyond the file end");
    put_le(b + o.t_off[2], UINT64_MAX - 31, 8);
    CHECK_REJECT(b, w.n, "lies beyond the file end");
    /* The last tensor one alignment step later runs just past the end. */
    put_le(b + o.t_off[2], o.t_data[2] - o.data + 32, 8);
    CHECK_REJECT(b, w.n, "lies beyond the file end");
    free(b);
    free(w.b);
}

/* A huge alignment puts the data section beyond the file end. */
static void test_huge_alignment(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    put_le(w.b + o.align_val, 1u << 31, 4);
    CHECK_REJECT(w.b, w.n, "data section start");
    free(w.b);
}

/* Random byte flips on a valid file: whatever happens, no crash, and a result that is
 * either a valid reader or INVALID_MODEL with a message. */
static void test_random_mutations(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    uint8_t *b = malloc(w.n);
    unsigned long long seed = 0x9e3779b97f4a7c15ULL;
    int n_ok = 0, n_bad = 0, n_other = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(b, w.b, w.n);
        int flips = 1 + (int)(test_rand_u64(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(test_rand_u64(&seed) % w.n);
            b[at] = (uint8_t)test_rand_u64(&seed);
        }
        llm_gguf *g = NULL;
        llm__clear_error();
        llm_status st = llm__gguf_open_memory(b, w.n, &g);
        if (st == LLM_OK) {
            n_ok++;
            for (int64_t t = 0; t < llm__gguf_n_tensors(g); t++) {
                const llm_gguf_tensor *ti = llm__gguf_tensor_at(g, t);
                CHECK((const uint8_t *)ti->data >= b &&
                      (const uint8_t *)ti->data + ti->nbytes <= b + w.n);
            }
            llm__gguf_close(g);
        } else if (st == LLM_ERR_INVALID_MODEL && llm_last_error()[0]) {
            n_bad++;
        } else {
            n_other++;
        }
    }
    printf("  mutations: %d parsed, %d rejected\n", n_ok, n_bad);
    CHECK_EQ_INT(n_other, 0);
    CHECK(n_ok > 0 && n_bad > 0);
    free(b);
    free(w.b);
}

/* ---- files on disk ------------------------------------------------------------------ */

static void test_open_file(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_gguf_%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) {
        free(w.b);
        return;
    }
    fwrite(w.b, 1, w.n, f);
    fclose(f);
    for (int use_mmap = 0; use_mmap <= 1; use_mmap++) {
        llm_gguf *g = NULL;
        CHECK_EQ_INT(llm__gguf_open(path, use_mmap, &g), LLM_OK);
        if (!g)
            continue;
        const llm_gguf_tensor *t = llm__gguf_find_tensor(g, "tensor.a");
        const uint8_t *base = (const uint8_t *)t->data - o.t_data[0];
        check_valid_contents(g, base, &o, 3);
        CHECK(((uintptr_t)t->data & 31) == 0);
        llm__gguf_close(g);
    }
    /* A malformed file names the path. */
    f = fopen(path, "wb");
    fwrite(w.b, 1, 100, f);
    fclose(f);
    llm_gguf *g = NULL;
    CHECK_EQ_INT(llm__gguf_open(path, 1, &g), LLM_ERR_INVALID_MODEL);
    CHECK(strstr(llm_last_error(), path) != NULL);
    /* An empty file. */
    f = fopen(path, "wb");
    fclose(f);
    CHECK_EQ_INT(llm__gguf_open(path, 1, &g), LLM_ERR_INVALID_MODEL);
    CHECK(strstr(llm_last_error(), "too small") != NULL);
    CHECK_EQ_INT(llm__gguf_open(path, 0, &g), LLM_ERR_INVALID_MODEL);
    unlink(path);

    CHECK_EQ_INT(llm__gguf_open(path, 1, &g), LLM_ERR_IO);
    CHECK(strstr(llm_last_error(), "cannot open") != NULL);
    CHECK(g == NULL);
    CHECK_EQ_INT(llm__gguf_open("/tmp", 1, &g), LLM_ERR_IO);
    CHECK(strstr(llm_last_error(), "not a regular file") != NULL);
    free(w.b);
}

/* ---- allocation failures ------------------------------------------------------------ */

/* The allocator's fault injection reads LLM_FAIL_ALLOC_AFTER once per process, so each
 * failure point runs in a fresh child process (this program, re-executed). The child exits
 * 0 only if the open returned OK or NO_MEMORY; under AddressSanitizer a leak on the error
 * path also makes it exit non-zero. */
static int alloc_child(void)
{
    wbuf w = {0};
    layout o;
    build_valid(&w, &o, 3, 32);
    llm_gguf *g = NULL;
    llm_status st = llm__gguf_open_memory(w.b, w.n, &g);
    int rc = 3;
    if (st == LLM_OK) {
        rc = g ? 0 : 3;
        llm__gguf_close(g);
    } else if (st == LLM_ERR_NO_MEMORY && g == NULL &&
               strstr(llm_last_error(), "out of memory")) {
        rc = 2;
    }
    free(w.b);
    return rc;
}

static void test_alloc_failures(void)
{
    int n_nomem = 0, done = 0;
    for (int n = 0; n < 100 && !done; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            char v[16];
            snprintf(v, sizeof v, "%d", n);
            setenv("LLM_FAIL_ALLOC_AFTER", v, 1);
            execl("/proc/self/exe", "test_gguf", "--alloc-child", (char *)NULL);
            _exit(127);
        }
        int ws = 0;
        waitpid(pid, &ws, 0);
        int rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        if (rc == 0)
            done = 1;
        else if (rc == 2)
            n_nomem++;
        else
            CHECK_MSG(0, "allocation failure %d: child exit %d", n, rc);
    }
    printf("  %d allocation sites failed cleanly\n", n_nomem);
    CHECK(done);
    CHECK(n_nomem >= 5);
}

/* ---- real models -------------------------------------------------------------------- */

static int model_present(const char *file)
{
    char path[1024];
    test_model_path(file, path, sizeof path);
    if (access(path, R_OK) == 0)
        return 1;
    printf("SKIP %s: model file %s not present\n", file, path);
    return 0;
}

static llm_gguf *open_model(const char *file, int use_mmap)
{
    char path[1024];
    test_model_path(file, path, sizeof path);
    llm_gguf *g = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    llm_status st = llm__gguf_open(path, use_mmap, &g);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_MSG(st == LLM_OK, "%s: %s", path, llm_last_error());
    printf("  opened %s (%s) in %.1f ms\n", file, use_mmap ? "mmap" : "read",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    return g;
}

static void check_tensor(const llm_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                         uint32_t type, uint64_t offset)
{
    const llm_gguf_tensor *t = llm__gguf_find_tensor(g, name);
    CHECK_MSG(t != NULL, "tensor %s", name);
    if (!t)
        return;
    CHECK_EQ_INT(t->n_dims, 2);
    CHECK_EQ_INT(t->ne[0], ne0);
    CHECK_EQ_INT(t->ne[1], ne1);
    CHECK_EQ_INT(t->type, type);
    CHECK_EQ_INT(t->offset, offset);
    CHECK_EQ_INT(t->nbytes, llm__dtype_row_size(type, ne0) * (uint64_t)ne1);
}

/* Every tensor is found by its own name, lies inside the file, and overlaps no other. */
static void check_all_tensors(const llm_gguf *g)
{
    int64_t n = llm__gguf_n_tensors(g);
    int n_bad = 0;
    const uint8_t *lo = NULL, *hi = NULL;
    for (int64_t i = 0; i < n; i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (llm__gguf_find_tensor(g, name) != t)
            n_bad++;
        const uint8_t *d = t->data;
        if (!lo || d < lo)
            lo = d;
        if (!hi || d + t->nbytes > hi)
            hi = d + t->nbytes;
        for (int64_t j = i + 1; j < n; j++) {
            const llm_gguf_tensor *u = llm__gguf_tensor_at(g, j);
            if (t->offset < u->offset + u->nbytes && u->offset < t->offset + t->nbytes)
                n_bad++;
        }
    }
    CHECK_EQ_INT(n_bad, 0);
    CHECK(lo != NULL && (uint64_t)(hi - lo) <= llm__gguf_file_size(g));
}

static void check_token(const llm_gguf_kv *kv, uint64_t i, const char *want)
{
    CHECK_MSG(kv->v.arr.strs[i].len == strlen(want) &&
                  memcmp(kv->v.arr.strs[i].ptr, want, strlen(want)) == 0,
              "token %llu is not '%s'", (unsigned long long)i, want);
}

static void test_model_smollm(void)
{
    for (int use_mmap = 1; use_mmap >= 0; use_mmap--) {
        llm_gguf *g = open_model("SmolLM2-135M-Instruct.Q4_1.gguf", use_mmap);
        if (!g)
            return;
        CHECK_EQ_INT(llm__gguf_version(g), 3);
        CHECK_EQ_INT(llm__gguf_n_tensors(g), 272);
        CHECK_EQ_INT(llm__gguf_n_kv(g), 33);
        const char *s = NULL;
        CHECK_EQ_INT(llm__gguf_get_str(g, "general.architecture", &s), 1);
        CHECK(s && strcmp(s, "llama") == 0);
        CHECK_EQ_INT(llm__gguf_get_str(g, "tokenizer.ggml.pre", &s), 1);
        CHECK(s && strcmp(s, "smollm") == 0);
        uint32_t u = 0;
        CHECK_EQ_INT(llm__gguf_get_u32(g, "llama.block_count", &u), 1);
        CHECK_EQ_INT(u, 30);
        float f = 0;
        CHECK_EQ_INT(llm__gguf_get_f32(g, "llama.rope.freq_base", &f), 1);
        CHECK(f == 100000.0f);
        int b = -1;
        CHECK_EQ_INT(llm__gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 1);
        CHECK_EQ_INT(b, 0);
        const llm_gguf_kv *kv = llm__gguf_find(g, "tokenizer.ggml.tokens");
        CHECK(kv && kv->type == LLM_GGUF_ARRAY && kv->v.arr.type == LLM_GGUF_STRING &&
              kv->v.arr.n == 49152);
        if (kv && kv->v.arr.n == 49152) {
            check_token(kv, 0, "<|endoftext|>");
            check_token(kv, 2, "<|im_end|>");
            check_token(kv, 49151, "ectable");
        }
        kv = llm__gguf_find(g, "tokenizer.ggml.merges");
        CHECK(kv && kv->v.arr.n == 48900);
        check_tensor(g, "token_embd.weight", 576, 49152, LLM_DT_Q8_0, 0);
        check_tensor(g, "blk.0.ffn_down.weight", 1536, 576, LLM_DT_Q4_1, 31868992 - 1785664);
        check_tensor(g, "blk.0.attn_q.weight", 576, 576, LLM_DT_Q4_1, 33806656 - 1785664);
        const llm_gguf_tensor *t = llm__gguf_find_tensor(g, "output_norm.weight");
        CHECK(t && t->n_dims == 1 && t->ne[0] == 576 && t->ne[1] == 1 && t->type == LLM_DT_F32);
        if (t) {
            /* RMS norm weights of a trained model: finite, not all zero. */
            float w0;
            memcpy(&w0, t->data, 4);
            CHECK(w0 == w0 && w0 != 0.0f && w0 > -100 && w0 < 100);
        }
        check_all_tensors(g);
        llm__gguf_close(g);
    }
}

static void test_model_gemma3(void)
{
    llm_gguf *g = open_model("gemma-3-270m-q4_k_m.gguf", 1);
    if (!g)
        return;
    CHECK_EQ_INT(llm__gguf_n_tensors(g), 236);
    const char *s = NULL;
    CHECK_EQ_INT(llm__gguf_get_str(g, "general.architecture", &s), 1);
    CHECK(s && strcmp(s, "gemma3") == 0);
    CHECK_EQ_INT(llm__gguf_get_str(g, "tokenizer.ggml.model", &s), 1);
    CHECK(s && strcmp(s, "llama") == 0);
    uint32_t u = 0;
    CHECK_EQ_INT(llm__gguf_get_u32(g, "gemma3.attention.sliding_window", &u), 1);
    CHECK_EQ_INT(u, 512);
    int32_t i = 0;
    CHECK_EQ_INT(llm__gguf_get_i32(g, "gemma3.attention.head_count_kv", &i), 1);
    CHECK_EQ_INT(i, 1);
    const llm_gguf_kv *kv = llm__gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->v.arr.type == LLM_GGUF_STRING && kv->v.arr.n == 262144);
    if (kv && kv->v.arr.n == 262144) {
        check_token(kv, 0, "<pad>");
        check_token(kv, 2, "<bos>");
        check_token(kv, 262143, "<unused6241>");
    }
    kv = llm__gguf_find(g, "tokenizer.ggml.scores");
    CHECK(kv && kv->v.arr.type == LLM_GGUF_FLOAT32 && kv->v.arr.n == 262144);
    check_tensor(g, "token_embd.weight", 640, 262144, LLM_DT_Q8_0, 6527680 - 6525120);
    check_tensor(g, "blk.0.attn_q.weight", 640, 1024, LLM_DT_Q5_0, 185270464 - 6525120);
    check_tensor(g, "blk.0.ffn_down.weight", 2048, 640, LLM_DT_Q6_K, 185896128 - 6525120);
    check_all_tensors(g);
    llm__gguf_close(g);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--alloc-child") == 0)
        return alloc_child();
    TEST_RUN(test_valid_v3);
    TEST_RUN(test_valid_v2_align64);
    TEST_RUN(test_empty);
    TEST_RUN(test_getters);
    TEST_RUN(test_str_with_nul);
    TEST_RUN(test_truncated);
    TEST_RUN(test_bad_header);
    TEST_RUN(test_bad_kv);
    TEST_RUN(test_alignment_type);
    TEST_RUN(test_bad_tensor);
    TEST_RUN(test_huge_alignment);
    TEST_RUN(test_random_mutations);
    TEST_RUN(test_open_file);
    TEST_RUN(test_alloc_failures);

    /* Real models: a missing file prints SKIP and counts as neither pass nor fail. */
    if (model_present("SmolLM2-135M-Instruct.Q4_1.gguf"))
        TEST_RUN(test_model_smollm);
    if (model_present("gemma-3-270m-q4_k_m.gguf"))
        TEST_RUN(test_model_gemma3);
    return test_summary();
}
