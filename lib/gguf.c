/* gguf.c - GGUF v2/v3 reader.
 *
 * Layout of a file (all integers little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
 *   padding to general.alignment (default 32), then the data section.
 * A string is u64 length + bytes (no NUL); an array value is u32 element type, u64 count,
 * then the elements.
 *
 * The reader never trusts a number from the file: every length and count is compared with
 * the bytes that remain before it is used to index or to size an allocation, and every
 * product or sum of file values goes through llm__mul_u64/llm__add_u64. The parsed
 * structures point into the mapping; only the tables (pairs, tensors, string-array indexes,
 * hash indexes, NUL-terminated copies of string values) are allocated. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "gguf.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* The smallest encodings, used to reject counts that the remaining bytes cannot hold
 * before anything proportional to a count is allocated. */
#define GGUF_MIN_KV_BYTES (8 + 4 + 1)          /* empty key, type, one-byte value */
#define GGUF_MIN_TENSOR_BYTES (8 + 4 + 8 + 4 + 8) /* empty name, n_dims, one dim, type, offset */

/* Open-addressing hash index from a name to a position in a table; -1 marks a free slot. */
typedef struct name_index {
    int64_t *slots;
    uint64_t mask;
} name_index;

struct llm_gguf {
    const uint8_t *base; /* the file's bytes */
    uint64_t size;
    void *map;           /* mmap'ed region, or NULL */
    size_t map_len;
    void *owned;         /* read-into-memory buffer, or NULL */

    uint32_t version;
    uint64_t alignment;
    uint64_t data_off;   /* start of the data section */

    int64_t n_kv;
    llm_gguf_kv *kvs;
    char **kv_cstr;      /* per pair: NUL-terminated copy of a STRING value, else NULL */
    name_index kv_index;

    int64_t n_tensors;
    llm_gguf_tensor *tensors;
    name_index tensor_index;
};

/* ---- messages ------------------------------------------------------------------------ */

/* A short printable rendering of a name from the file for error messages: names are
 * attacker-controlled, so they are clipped and their control bytes replaced. */
typedef struct safe_name {
    char s[80];
} safe_name;

static const char *show(safe_name *b, const char *p, uint64_t len)
{
    size_t cap = sizeof b->s - 4, n = 0;
    for (uint64_t i = 0; i < len && n < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        b->s[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > cap) {
        memcpy(b->s + n, "...", 3);
        n += 3;
    }
    b->s[n] = '\0';
    return b->s;
}

static const char *type_name(uint32_t t)
{
    static const char *names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                  "int32", "float32", "bool",  "string", "array",
                                  "uint64", "int64", "float64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ---- hash index ---------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, uint64_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (uint64_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static llm_status index_init(name_index *ix, int64_t n)
{
    uint64_t cap = 8;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    ix->slots = llm__malloc(cap * sizeof *ix->slots);
    if (!ix->slots)
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory for a %llu-entry index",
                         (unsigned long long)cap);
    memset(ix->slots, 0xff, cap * sizeof *ix->slots); /* all -1 */
    ix->mask = cap - 1;
    return LLM_OK;
}

/* Looks a name up; `name_of(i)` gives the name of table entry i. Returns the slot holding
 * it, or the free slot where it would go (*found = 0). */
typedef const llm_gguf_str *(*name_of_fn)(const llm_gguf *g, int64_t i);

static uint64_t index_probe(const llm_gguf *g, const name_index *ix, name_of_fn name_of,
                            const char *p, uint64_t len, int *found)
{
    uint64_t s = hash_bytes(p, len) & ix->mask;
    for (;;) {
        int64_t i = ix->slots[s];
        if (i < 0) {
            *found = 0;
            return s;
        }
        const llm_gguf_str *n = name_of(g, i);
        if (n->len == len && memcmp(n->ptr, p, len) == 0) {
            *found = 1;
            return s;
        }
        s = (s + 1) & ix->mask;
    }
}

static const llm_gguf_str *kv_name(const llm_gguf *g, int64_t i)
{
    return &g->kvs[i].key;
}

static const llm_gguf_str *tensor_name(const llm_gguf *g, int64_t i)
{
    return &g->tensors[i].name;
}

/* ---- cursor -------------------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *base;
    uint64_t pos, size;
} cursor;

static uint64_t remaining(const cursor *c)
{
    return c->size - c->pos;
}

/* Reads n bytes; `what` names the field for the message when the file ends first. */
static llm_status take(cursor *c, uint64_t n, const void **out, const char *what)
{
    if (n > remaining(c))
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: %s at offset 0x%llx needs %llu bytes but the file ends at 0x%llx",
                         what, (unsigned long long)c->pos, (unsigned long long)n,
                         (unsigned long long)c->size);
    *out = c->base + c->pos;
    c->pos += n;
    return LLM_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static llm_status read_u32(cursor *c, uint32_t *v, const char *what)
{
    const void *p = NULL;
    llm_status st = take(c, 4, &p, what);
    if (st == LLM_OK)
        *v = (uint32_t)le(p, 4);
    return st;
}

static llm_status read_u64(cursor *c, uint64_t *v, const char *what)
{
    const void *p = NULL;
    llm_status st = take(c, 8, &p, what);
    if (st == LLM_OK)
        *v = le(p, 8);
    return st;
}

static llm_status read_str(cursor *c, llm_gguf_str *s, const char *what)
{
    uint64_t len;
    const void *p = NULL;
    llm_status st = read_u64(c, &len, what);
    if (st != LLM_OK)
        return st;
    if (len > remaining(c))
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: %s at offset 0x%llx has length %llu but only %llu bytes remain",
                         what, (unsigned long long)(c->pos - 8), (unsigned long long)len,
                         (unsigned long long)remaining(c));
    st = take(c, len, &p, what);
    s->ptr = p;
    s->len = len;
    return st;
}

/* Bytes of one element of a fixed-size type, 0 for STRING and ARRAY, -1 if unknown. */
static int scalar_size(uint32_t t)
{
    switch (t) {
    case LLM_GGUF_UINT8: case LLM_GGUF_INT8: case LLM_GGUF_BOOL: return 1;
    case LLM_GGUF_UINT16: case LLM_GGUF_INT16: return 2;
    case LLM_GGUF_UINT32: case LLM_GGUF_INT32: case LLM_GGUF_FLOAT32: return 4;
    case LLM_GGUF_UINT64: case LLM_GGUF_INT64: case LLM_GGUF_FLOAT64: return 8;
    case LLM_GGUF_STRING: case LLM_GGUF_ARRAY: return 0;
    default: return -1;
    }
}

/* ---- key/value pairs ----------------------------------------------------------------- */

static llm_status bad_kv(int64_t i, const llm_gguf_kv *kv, const char *fmt_what, uint64_t off)
{
    safe_name b;
    return llm__fail(LLM_ERR_INVALID_MODEL, "gguf: key '%s' (pair %lld, offset 0x%llx): %s",
                     show(&b, kv->key.ptr, kv->key.len), (long long)i, (unsigned long long)off,
                     fmt_what);
}

static void set_scalar(llm_gguf_kv *kv, uint32_t t, const uint8_t *p)
{
    switch (t) {
    case LLM_GGUF_UINT8: case LLM_GGUF_UINT16: case LLM_GGUF_UINT32: case LLM_GGUF_UINT64:
    case LLM_GGUF_BOOL:
        kv->v.u64 = le(p, scalar_size(t));
        break;
    case LLM_GGUF_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case LLM_GGUF_INT16: kv->v.i64 = (int16_t)(uint16_t)le(p, 2); break;
    case LLM_GGUF_INT32: kv->v.i64 = (int32_t)(uint32_t)le(p, 4); break;
    case LLM_GGUF_INT64: kv->v.i64 = (int64_t)le(p, 8); break;
    case LLM_GGUF_FLOAT32: {
        uint32_t u = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        kv->v.f64 = f;
        break;
    }
    case LLM_GGUF_FLOAT64: {
        uint64_t u = le(p, 8);
        memcpy(&kv->v.f64, &u, 8);
        break;
    }
    default: break;
    }
}

static llm_status read_array(cursor *c, int64_t i, llm_gguf_kv *kv)
{
    uint64_t off = c->pos;
    uint32_t et;
    uint64_t n;
    llm_status st = read_u32(c, &et, "array element type");
    if (st == LLM_OK)
        st = read_u64(c, &n, "array length");
    if (st != LLM_OK)
        return st;
    kv->v.arr.type = et;
    kv->v.arr.n = n;
    char msg[160];
    int es = scalar_size(et);
    if (es < 0) {
        snprintf(msg, sizeof msg, "unknown array element type %u", et);
        return bad_kv(i, kv, msg, off);
    }
    if (et == LLM_GGUF_ARRAY)
        return bad_kv(i, kv, "nested arrays are not supported", off);
    /* Each element takes at least es bytes (8 for a string's length). */
    uint64_t min_bytes;
    if (!llm__mul_u64(n, es ? (uint64_t)es : 8, &min_bytes) || min_bytes > remaining(c)) {
        snprintf(msg, sizeof msg,
                 "array of %llu %s elements cannot fit in the %llu bytes that remain",
                 (unsigned long long)n, type_name(et), (unsigned long long)remaining(c));
        return bad_kv(i, kv, msg, off);
    }
    if (es > 0) {
        const void *p = NULL;
        st = take(c, min_bytes, &p, "array data");
        if (st != LLM_OK)
            return st;
        kv->v.arr.data = p;
        if (et == LLM_GGUF_BOOL) {
            for (uint64_t j = 0; j < n; j++) {
                if (((const uint8_t *)p)[j] > 1) {
                    snprintf(msg, sizeof msg, "bool element %llu has value %u (not 0 or 1)",
                             (unsigned long long)j, ((const uint8_t *)p)[j]);
                    return bad_kv(i, kv, msg, off);
                }
            }
        }
        return LLM_OK;
    }
    /* Strings: index them once here so that users (the vocabulary) get O(1) access. */
    kv->v.arr.data = c->base + c->pos;
    kv->v.arr.strs = llm__malloc((n ? n : 1) * sizeof *kv->v.arr.strs);
    if (!kv->v.arr.strs)
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory indexing %llu strings",
                         (unsigned long long)n);
    for (uint64_t j = 0; j < n; j++) {
        st = read_str(c, &kv->v.arr.strs[j], "string array element");
        if (st != LLM_OK) {
            safe_name b;
            /* Prefix the cursor's message with the pair it came from. */
            char inner[512];
            snprintf(inner, sizeof inner, "%s", llm_last_error());
            return llm__fail(st, "%s (element %llu of key '%s')", inner, (unsigned long long)j,
                             show(&b, kv->key.ptr, kv->key.len));
        }
    }
    return LLM_OK;
}

static llm_status read_kv(llm_gguf *g, cursor *c, int64_t i)
{
    llm_gguf_kv *kv = &g->kvs[i];
    uint64_t off = c->pos;
    char what[64];
    snprintf(what, sizeof what, "key of pair %lld", (long long)i);
    llm_status st = read_str(c, &kv->key, what);
    if (st != LLM_OK)
        return st;

    int found;
    uint64_t slot = index_probe(g, &g->kv_index, kv_name, kv->key.ptr, kv->key.len, &found);
    if (found) {
        safe_name b;
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: duplicate key '%s' (pairs %lld and %lld, offset 0x%llx)",
                         show(&b, kv->key.ptr, kv->key.len),
                         (long long)g->kv_index.slots[slot], (long long)i,
                         (unsigned long long)off);
    }
    g->kv_index.slots[slot] = i;

    uint64_t toff = c->pos;
    snprintf(what, sizeof what, "value type of pair %lld", (long long)i);
    if ((st = read_u32(c, &kv->type, what)) != LLM_OK)
        return st;
    int es = scalar_size(kv->type);
    char msg[96];
    if (es < 0) {
        snprintf(msg, sizeof msg, "unknown value type %u", kv->type);
        return bad_kv(i, kv, msg, toff);
    }
    if (es > 0) {
        const void *p = NULL;
        snprintf(what, sizeof what, "%s value of pair %lld", type_name(kv->type), (long long)i);
        if ((st = take(c, (uint64_t)es, &p, what)) != LLM_OK)
            return st;
        if (kv->type == LLM_GGUF_BOOL && *(const uint8_t *)p > 1) {
            snprintf(msg, sizeof msg, "bool value %u is not 0 or 1", *(const uint8_t *)p);
            return bad_kv(i, kv, msg, toff + 4);
        }
        set_scalar(kv, kv->type, p);
        return LLM_OK;
    }
    if (kv->type == LLM_GGUF_STRING) {
        snprintf(what, sizeof what, "string value of pair %lld", (long long)i);
        if ((st = read_str(c, &kv->v.str, what)) != LLM_OK)
            return st;
        /* The getter hands out C strings; make the copy now so that a shared, const reader
         * never writes after open. */
        g->kv_cstr[i] = llm__strndup(kv->v.str.ptr, kv->v.str.len);
        if (!g->kv_cstr[i])
            return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory copying a string value");
        return LLM_OK;
    }
    return read_array(c, i, kv);
}

/* ---- tensors ------------------------------------------------------------------------- */

static llm_status bad_tensor(const llm_gguf_tensor *t, int64_t i, const char *fmt_what)
{
    safe_name b;
    return llm__fail(LLM_ERR_INVALID_MODEL, "gguf: tensor '%s' (#%lld): %s",
                     show(&b, t->name.ptr, t->name.len), (long long)i, fmt_what);
}

static llm_status read_tensor_info(llm_gguf *g, cursor *c, int64_t i)
{
    llm_gguf_tensor *t = &g->tensors[i];
    uint64_t off = c->pos;
    char what[64], msg[200];
    snprintf(what, sizeof what, "name of tensor %lld", (long long)i);
    llm_status st = read_str(c, &t->name, what);
    if (st != LLM_OK)
        return st;

    int found;
    uint64_t slot = index_probe(g, &g->tensor_index, tensor_name, t->name.ptr, t->name.len,
                                &found);
    if (found) {
        snprintf(msg, sizeof msg, "duplicate name (also tensor #%lld; info at offset 0x%llx)",
                 (long long)g->tensor_index.slots[slot], (unsigned long long)off);
        return bad_tensor(t, i, msg);
    }
    g->tensor_index.slots[slot] = i;

    snprintf(what, sizeof what, "n_dims of tensor %lld", (long long)i);
    if ((st = read_u32(c, &t->n_dims, what)) != LLM_OK)
        return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        snprintf(msg, sizeof msg, "has %u dimensions (1..%d allowed)", t->n_dims,
                 GGUF_MAX_DIMS);
        return bad_tensor(t, i, msg);
    }
    uint64_t n_elem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if ((uint32_t)d < t->n_dims) {
            snprintf(what, sizeof what, "ne[%d] of tensor %lld", d, (long long)i);
            if ((st = read_u64(c, &ne, what)) != LLM_OK)
                return st;
            if (ne == 0 || ne > (uint64_t)INT64_MAX) {
                snprintf(msg, sizeof msg, "dimension %d has invalid size %llu", d,
                         (unsigned long long)ne);
                return bad_tensor(t, i, msg);
            }
        }
        if (!llm__mul_u64(n_elem, ne, &n_elem) || n_elem > (uint64_t)INT64_MAX) {
            snprintf(msg, sizeof msg, "element count overflows at dimension %d", d);
            return bad_tensor(t, i, msg);
        }
        t->ne[d] = (int64_t)ne;
    }
    snprintf(what, sizeof what, "type of tensor %lld", (long long)i);
    if ((st = read_u32(c, &t->type, what)) != LLM_OK)
        return st;
    const llm_dtype_info *info = llm__dtype_info(t->type);
    if (!info) {
        snprintf(msg, sizeof msg, "unknown tensor type id %u", t->type);
        return bad_tensor(t, i, msg);
    }
    if (t->ne[0] % info->block != 0) {
        snprintf(msg, sizeof msg, "ne[0] = %lld is not a multiple of the %s block size %d",
                 (long long)t->ne[0], info->name, info->block);
        return bad_tensor(t, i, msg);
    }
    /* nbytes = (n_elem / block) * type_size; n_elem is a multiple of block since ne[0] is. */
    if (!llm__mul_u64(n_elem / (uint64_t)info->block, (uint64_t)info->type_size, &t->nbytes)) {
        snprintf(msg, sizeof msg, "byte size overflows (%llu elements of %s)",
                 (unsigned long long)n_elem, info->name);
        return bad_tensor(t, i, msg);
    }
    snprintf(what, sizeof what, "offset of tensor %lld", (long long)i);
    return read_u64(c, &t->offset, what);
}

/* Called once the data section's start is known. */
static llm_status place_tensor(llm_gguf *g, int64_t i)
{
    llm_gguf_tensor *t = &g->tensors[i];
    char msg[200];
    if (t->offset % g->alignment != 0) {
        snprintf(msg, sizeof msg, "data offset 0x%llx is not a multiple of the alignment %llu",
                 (unsigned long long)t->offset, (unsigned long long)g->alignment);
        return bad_tensor(t, i, msg);
    }
    uint64_t start, end;
    if (!llm__add_u64(g->data_off, t->offset, &start) ||
        !llm__add_u64(start, t->nbytes, &end) || end > g->size) {
        /* Print the range even when it wrapped: the raw numbers say what is wrong. */
        snprintf(msg, sizeof msg, "data [0x%llx,0x%llx) lies beyond the file end (0x%llx)",
                 (unsigned long long)(g->data_off + t->offset),
                 (unsigned long long)(g->data_off + t->offset + t->nbytes),
                 (unsigned long long)g->size);
        return bad_tensor(t, i, msg);
    }
    t->data = g->base + start;
    return LLM_OK;
}

/* ---- open ---------------------------------------------------------------------------- */

static llm_status read_alignment(llm_gguf *g)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const llm_gguf_kv *kv = llm__gguf_find(g, "general.alignment");
    if (!kv)
        return LLM_OK;
    uint64_t a;
    int neg = 0;
    switch (kv->type) {
    case LLM_GGUF_UINT8: case LLM_GGUF_UINT16: case LLM_GGUF_UINT32: case LLM_GGUF_UINT64:
        a = kv->v.u64;
        break;
    case LLM_GGUF_INT8: case LLM_GGUF_INT16: case LLM_GGUF_INT32: case LLM_GGUF_INT64:
        neg = kv->v.i64 < 0;
        a = (uint64_t)kv->v.i64;
        break;
    default:
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: general.alignment has type %s; an integer is required",
                         type_name(kv->type));
    }
    if (neg || a == 0 || (a & (a - 1)) != 0) {
        if (neg)
            return llm__fail(LLM_ERR_INVALID_MODEL,
                             "gguf: general.alignment = %lld is not a positive power of two",
                             (long long)kv->v.i64);
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: general.alignment = %llu is not a nonzero power of two",
                         (unsigned long long)a);
    }
    g->alignment = a;
    return LLM_OK;
}

static llm_status parse(llm_gguf *g)
{
    cursor c = {g->base, 0, g->size};
    const void *p = NULL;
    llm_status st;

    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) {
        if (g->size < 4)
            return llm__fail(LLM_ERR_INVALID_MODEL,
                             "gguf: file of %llu bytes is too small to hold the GGUF magic",
                             (unsigned long long)g->size);
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: bad magic %02x %02x %02x %02x at offset 0 (expected \"GGUF\")",
                         g->base[0], g->base[1], g->base[2], g->base[3]);
    }
    (void)take(&c, 4, &p, "magic");
    if ((st = read_u32(&c, &g->version, "version")) != LLM_OK)
        return st;
    if (g->version == 1)
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: version 1 files (32-bit counts, before August 2023) are not "
                         "supported; convert the model again with current tools");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && (g->version >> 16) != 0)
            return llm__fail(LLM_ERR_INVALID_MODEL,
                             "gguf: version field 0x%08x looks byte-swapped: big-endian files "
                             "are not supported",
                             g->version);
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: unsupported version %u (this reader knows versions 2 and 3)",
                         g->version);
    }
    uint64_t n_tensors, n_kv;
    if ((st = read_u64(&c, &n_tensors, "tensor count")) != LLM_OK ||
        (st = read_u64(&c, &n_kv, "key/value count")) != LLM_OK)
        return st;

    /* Both tables must fit in what remains, with each entry at its smallest encoding. */
    uint64_t kv_min, t_min, all_min;
    if (!llm__mul_u64(n_kv, GGUF_MIN_KV_BYTES, &kv_min) ||
        !llm__mul_u64(n_tensors, GGUF_MIN_TENSOR_BYTES, &t_min) ||
        !llm__add_u64(kv_min, t_min, &all_min) || all_min > remaining(&c))
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: header claims %llu key/value pairs and %llu tensors, which "
                         "cannot fit in the %llu bytes after the header",
                         (unsigned long long)n_kv, (unsigned long long)n_tensors,
                         (unsigned long long)remaining(&c));
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;

    g->kvs = llm__calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    g->kv_cstr = llm__calloc(n_kv ? n_kv : 1, sizeof *g->kv_cstr);
    g->tensors = llm__calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kvs || !g->kv_cstr || !g->tensors)
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory for %llu pairs and %llu tensors",
                         (unsigned long long)n_kv, (unsigned long long)n_tensors);
    if ((st = index_init(&g->kv_index, g->n_kv)) != LLM_OK ||
        (st = index_init(&g->tensor_index, g->n_tensors)) != LLM_OK)
        return st;

    for (int64_t i = 0; i < g->n_kv; i++)
        if ((st = read_kv(g, &c, i)) != LLM_OK)
            return st;
    if ((st = read_alignment(g)) != LLM_OK)
        return st;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if ((st = read_tensor_info(g, &c, i)) != LLM_OK)
            return st;

    /* The data section starts at the next multiple of the alignment. */
    uint64_t end;
    if (!llm__add_u64(c.pos, g->alignment - 1, &end))
        return llm__fail(LLM_ERR_INVALID_MODEL, "gguf: data section offset overflows");
    g->data_off = end & ~(g->alignment - 1);
    if (g->n_tensors > 0 && g->data_off > g->size)
        return llm__fail(LLM_ERR_INVALID_MODEL,
                         "gguf: data section start 0x%llx (header end 0x%llx aligned to %llu) "
                         "lies beyond the file end (0x%llx)",
                         (unsigned long long)g->data_off, (unsigned long long)c.pos,
                         (unsigned long long)g->alignment, (unsigned long long)g->size);
    for (int64_t i = 0; i < g->n_tensors; i++)
        if ((st = place_tensor(g, i)) != LLM_OK)
            return st;
    return LLM_OK;
}

static llm_status finish_open(llm_gguf *g, llm_gguf **out)
{
    llm_status st = parse(g);
    if (st != LLM_OK) {
        llm__gguf_close(g);
        return st;
    }
    *out = g;
    return LLM_OK;
}

llm_status llm__gguf_open_memory(const void *data, size_t size, llm_gguf **out)
{
    if (!out)
        return llm__fail(LLM_ERR_INVALID_ARG, "gguf: out is NULL");
    *out = NULL;
    if (!data && size)
        return llm__fail(LLM_ERR_INVALID_ARG, "gguf: NULL buffer of %zu bytes", size);
    llm_gguf *g = llm__calloc(1, sizeof *g);
    if (!g)
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory");
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    return finish_open(g, out);
}

/* Reads the whole file into a buffer whose start is 64-byte aligned, so tensor data keeps
 * the alignment it has in the file, as with mmap. */
static llm_status read_whole(int fd, const char *path, size_t size, llm_gguf *g)
{
    if (size > SIZE_MAX - 64)
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: '%s' is too large to read", path);
    g->owned = llm__malloc(size + 64);
    if (!g->owned)
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory reading '%s' (%zu bytes)",
                         path, size);
    uint8_t *buf = (uint8_t *)(((uintptr_t)g->owned + 63) & ~(uintptr_t)63);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return llm__fail(LLM_ERR_IO, "gguf: read '%s' at offset %zu: %s", path, got,
                             strerror(errno));
        if (r == 0)
            return llm__fail(LLM_ERR_IO, "gguf: '%s' shrank while being read (%zu of %zu bytes)",
                             path, got, size);
        got += (size_t)r;
    }
    g->base = buf;
    return LLM_OK;
}

llm_status llm__gguf_open(const char *path, int use_mmap, llm_gguf **out)
{
    if (!out)
        return llm__fail(LLM_ERR_INVALID_ARG, "gguf: out is NULL");
    *out = NULL;
    if (!path)
        return llm__fail(LLM_ERR_INVALID_ARG, "gguf: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return llm__fail(LLM_ERR_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return llm__fail(LLM_ERR_IO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return llm__fail(LLM_ERR_IO, "gguf: '%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return llm__fail(LLM_ERR_IO, "gguf: '%s' is too large to map", path);
    }
    llm_gguf *g = llm__calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return llm__fail(LLM_ERR_NO_MEMORY, "gguf: out of memory");
    }
    size_t size = (size_t)sb.st_size;
    g->size = size;
    g->base = (const uint8_t *)"";
    llm_status st = LLM_OK;
    if (size == 0) {
        /* mmap rejects a zero length; parse() reports the empty file. */
    } else if (use_mmap) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            st = llm__fail(LLM_ERR_IO, "gguf: cannot mmap '%s' (%zu bytes): %s", path, size,
                           strerror(errno));
        } else {
            g->map = m;
            g->map_len = size;
            g->base = m;
        }
    } else {
        st = read_whole(fd, path, size, g);
    }
    close(fd);
    if (st != LLM_OK) {
        llm__gguf_close(g);
        return st;
    }
    st = parse(g);
    if (st != LLM_OK) {
        /* Name the file: the parser's messages only know offsets. */
        char inner[768];
        snprintf(inner, sizeof inner, "%s", llm_last_error());
        llm__gguf_close(g);
        return llm__fail(st, "%s (in '%s')", inner, path);
    }
    *out = g;
    return LLM_OK;
}

void llm__gguf_close(llm_gguf *g)
{
    if (!g)
        return;
    if (g->kvs) {
        for (int64_t i = 0; i < g->n_kv; i++)
            if (g->kvs[i].type == LLM_GGUF_ARRAY)
                llm__free(g->kvs[i].v.arr.strs);
    }
    if (g->kv_cstr)
        for (int64_t i = 0; i < g->n_kv; i++)
            llm__free(g->kv_cstr[i]);
    llm__free(g->kv_cstr);
    llm__free(g->kvs);
    llm__free(g->tensors);
    llm__free(g->kv_index.slots);
    llm__free(g->tensor_index.slots);
    if (g->map)
        munmap(g->map, g->map_len);
    llm__free(g->owned);
    llm__free(g);
}

/* ---- queries ------------------------------------------------------------------------- */

uint32_t llm__gguf_version(const llm_gguf *g)
{
    return g->version;
}

uint64_t llm__gguf_file_size(const llm_gguf *g)
{
    return g->size;
}

int64_t llm__gguf_n_kv(const llm_gguf *g)
{
    return g->n_kv;
}

const llm_gguf_kv *llm__gguf_kv_at(const llm_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const llm_gguf_kv *llm__gguf_find(const llm_gguf *g, const char *key)
{
    if (!key || !g->kv_index.slots)
        return NULL;
    int found;
    uint64_t s = index_probe(g, &g->kv_index, kv_name, key, strlen(key), &found);
    return found ? &g->kvs[g->kv_index.slots[s]] : NULL;
}

int64_t llm__gguf_n_tensors(const llm_gguf *g)
{
    return g->n_tensors;
}

const llm_gguf_tensor *llm__gguf_tensor_at(const llm_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const llm_gguf_tensor *llm__gguf_find_tensor(const llm_gguf *g, const char *name)
{
    if (!name || !g->tensor_index.slots)
        return NULL;
    int found;
    uint64_t s = index_probe(g, &g->tensor_index, tensor_name, name, strlen(name), &found);
    return found ? &g->tensors[g->tensor_index.slots[s]] : NULL;
}

/* ---- typed getters ------------------------------------------------------------------- */

static int is_uint(uint32_t t)
{
    return t == LLM_GGUF_UINT8 || t == LLM_GGUF_UINT16 || t == LLM_GGUF_UINT32 ||
           t == LLM_GGUF_UINT64;
}

static int is_sint(uint32_t t)
{
    return t == LLM_GGUF_INT8 || t == LLM_GGUF_INT16 || t == LLM_GGUF_INT32 ||
           t == LLM_GGUF_INT64;
}

static int wrong_type(const char *key, uint32_t t, const char *want)
{
    llm__fail(LLM_ERR_INVALID_MODEL, "gguf: key '%s' has type %s; expected %s", key,
              type_name(t), want);
    return -1;
}

/* An integer value as a sign and magnitude wide enough for every integer type. */
static int get_int(const llm_gguf *g, const char *key, int *neg, uint64_t *mag,
                   const llm_gguf_kv **kvp)
{
    const llm_gguf_kv *kv = llm__gguf_find(g, key);
    *kvp = kv;
    if (!kv)
        return 0;
    if (is_uint(kv->type)) {
        *neg = 0;
        *mag = kv->v.u64;
    } else if (is_sint(kv->type)) {
        *neg = kv->v.i64 < 0;
        *mag = *neg ? (uint64_t)0 - (uint64_t)kv->v.i64 : (uint64_t)kv->v.i64;
    } else {
        return wrong_type(key, kv->type, "an integer");
    }
    return 1;
}

int llm__gguf_get_u32(const llm_gguf *g, const char *key, uint32_t *out)
{
    int neg;
    uint64_t mag;
    const llm_gguf_kv *kv;
    int r = get_int(g, key, &neg, &mag, &kv);
    if (r != 1)
        return r;
    if (neg || mag > UINT32_MAX) {
        llm__fail(LLM_ERR_INVALID_MODEL, "gguf: key '%s' = %s%llu does not fit in uint32", key,
                  neg ? "-" : "", (unsigned long long)mag);
        return -1;
    }
    *out = (uint32_t)mag;
    return 1;
}

int llm__gguf_get_i32(const llm_gguf *g, const char *key, int32_t *out)
{
    int neg;
    uint64_t mag;
    const llm_gguf_kv *kv;
    int r = get_int(g, key, &neg, &mag, &kv);
    if (r != 1)
        return r;
    if (neg ? mag > (uint64_t)INT32_MAX + 1 : mag > INT32_MAX) {
        llm__fail(LLM_ERR_INVALID_MODEL, "gguf: key '%s' = %s%llu does not fit in int32", key,
                  neg ? "-" : "", (unsigned long long)mag);
        return -1;
    }
    *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return 1;
}

int llm__gguf_get_f32(const llm_gguf *g, const char *key, float *out)
{
    const llm_gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv)
        return 0;
    double v;
    if (kv->type == LLM_GGUF_FLOAT32 || kv->type == LLM_GGUF_FLOAT64)
        v = kv->v.f64;
    else if (is_uint(kv->type))
        v = (double)kv->v.u64;
    else if (is_sint(kv->type))
        v = (double)kv->v.i64;
    else
        return wrong_type(key, kv->type, "a number");
    /* A finite double beyond float's range would become infinity: refuse it. */
    if (v == v && v - v == 0 && (v > 3.4028234663852886e38 || v < -3.4028234663852886e38)) {
        llm__fail(LLM_ERR_INVALID_MODEL, "gguf: key '%s' = %g does not fit in float32", key, v);
        return -1;
    }
    *out = (float)v;
    return 1;
}

int llm__gguf_get_bool(const llm_gguf *g, const char *key, int *out)
{
    const llm_gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != LLM_GGUF_BOOL)
        return wrong_type(key, kv->type, "bool");
    *out = kv->v.u64 != 0;
    return 1;
}

int llm__gguf_get_str(const llm_gguf *g, const char *key, const char **out)
{
    const llm_gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != LLM_GGUF_STRING)
        return wrong_type(key, kv->type, "string");
    /* A NUL inside would silently cut the C string short. */
    if (memchr(kv->v.str.ptr, '\0', kv->v.str.len)) {
        llm__fail(LLM_ERR_INVALID_MODEL, "gguf: string value of key '%s' contains a NUL byte",
                  key);
        return -1;
    }
    *out = g->kv_cstr[kv - g->kvs];
    return 1;
}
