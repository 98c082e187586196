/* gguf.h - GGUF file reader over mmap (or a caller's memory buffer).
 *
 * Every count, string length, offset, size and alignment is checked against the file
 * with overflow-safe arithmetic before use; a malformed file gives LLM_ERR_INVALID_MODEL
 * and a message (llm__fail) naming what is wrong and where. Private; never installed. */
#ifndef LLM_GGUF_H
#define LLM_GGUF_H

#include "internal.h"

enum llm_gguf_type {
    LLM_GGUF_UINT8 = 0,
    LLM_GGUF_INT8 = 1,
    LLM_GGUF_UINT16 = 2,
    LLM_GGUF_INT16 = 3,
    LLM_GGUF_UINT32 = 4,
    LLM_GGUF_INT32 = 5,
    LLM_GGUF_FLOAT32 = 6,
    LLM_GGUF_BOOL = 7,
    LLM_GGUF_STRING = 8,
    LLM_GGUF_ARRAY = 9,
    LLM_GGUF_UINT64 = 10,
    LLM_GGUF_INT64 = 11,
    LLM_GGUF_FLOAT64 = 12
};

/* A string inside the file: not NUL-terminated. */
typedef struct llm_gguf_str {
    const char *ptr;
    uint64_t len;
} llm_gguf_str;

typedef struct llm_gguf_kv {
    llm_gguf_str key;
    uint32_t type; /* enum llm_gguf_type */
    union {
        uint64_t u64;  /* UINT8..UINT64 and BOOL, zero-extended */
        int64_t i64;   /* INT8..INT64, sign-extended */
        double f64;    /* FLOAT32, FLOAT64 */
        llm_gguf_str str;
        struct {
            uint32_t type;       /* element type (never ARRAY: nested arrays are rejected) */
            uint64_t n;          /* element count */
            const void *data;    /* numeric arrays: the packed elements in the file */
            llm_gguf_str *strs;  /* string arrays: n entries, owned by the reader */
        } arr;
    } v;
} llm_gguf_kv;

typedef struct llm_gguf_tensor {
    llm_gguf_str name;
    uint32_t n_dims;     /* 1..4 */
    int64_t ne[4];       /* elements per dimension, ne[0] fastest; unused dims are 1 */
    uint32_t type;       /* enum llm_dtype */
    uint64_t offset;     /* from the start of the data section */
    uint64_t nbytes;
    const void *data;    /* start of the tensor's bytes, inside the mapping */
} llm_gguf_tensor;

typedef struct llm_gguf llm_gguf;

/* Opens and validates a file. use_mmap = 0 reads it into memory instead. */
LLM_INTERNAL llm_status llm__gguf_open(const char *path, int use_mmap, llm_gguf **out);

/* Parses a buffer the caller keeps alive for the reader's lifetime (tests, fuzzing). */
LLM_INTERNAL llm_status llm__gguf_open_memory(const void *data, size_t size, llm_gguf **out);

LLM_INTERNAL void llm__gguf_close(llm_gguf *g); /* NULL is a no-op */

LLM_INTERNAL uint32_t llm__gguf_version(const llm_gguf *g);
LLM_INTERNAL uint64_t llm__gguf_file_size(const llm_gguf *g);

LLM_INTERNAL int64_t llm__gguf_n_kv(const llm_gguf *g);
LLM_INTERNAL const llm_gguf_kv *llm__gguf_kv_at(const llm_gguf *g, int64_t i);
/* The pair with this key, or NULL. */
LLM_INTERNAL const llm_gguf_kv *llm__gguf_find(const llm_gguf *g, const char *key);

/* Typed getters: 1 when found and convertible (any integer type that fits, float from any
 * numeric), 0 when missing (out untouched), -1 when present with an incompatible type or
 * value (the error is set). */
LLM_INTERNAL int llm__gguf_get_u32(const llm_gguf *g, const char *key, uint32_t *out);
LLM_INTERNAL int llm__gguf_get_i32(const llm_gguf *g, const char *key, int32_t *out);
LLM_INTERNAL int llm__gguf_get_f32(const llm_gguf *g, const char *key, float *out);
LLM_INTERNAL int llm__gguf_get_bool(const llm_gguf *g, const char *key, int *out);
/* Returns a NUL-terminated copy owned by the reader (lives as long as g). */
LLM_INTERNAL int llm__gguf_get_str(const llm_gguf *g, const char *key, const char **out);

LLM_INTERNAL int64_t llm__gguf_n_tensors(const llm_gguf *g);
LLM_INTERNAL const llm_gguf_tensor *llm__gguf_tensor_at(const llm_gguf *g, int64_t i);
/* The tensor with this name, or NULL. Names are unique (duplicates are rejected at open). */
LLM_INTERNAL const llm_gguf_tensor *llm__gguf_find_tensor(const llm_gguf *g, const char *name);

#endif
