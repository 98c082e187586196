/* fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input with llm__gguf_open_memory and, when it is accepted, reads everything
 * the reader hands out: every pair (strings, array elements, string-array entries), the
 * typed getters, and the first and last byte of every tensor, so that AddressSanitizer
 * catches a pointer or length that escapes the buffer. A rejected input must leave a
 * message. Built by scripts/fuzz (libFuzzer) and by meson with replay_main.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* Keeps the compiler from dropping reads whose results are otherwise unused. */
static volatile uint8_t sink;

static void touch(const void *p, uint64_t n)
{
    if (n == 0)
        return;
    sink ^= ((const volatile uint8_t *)p)[0];
    sink ^= ((const volatile uint8_t *)p)[n - 1];
}

static uint64_t elem_size(uint32_t t)
{
    switch (t) {
    case LLM_GGUF_UINT8: case LLM_GGUF_INT8: case LLM_GGUF_BOOL: return 1;
    case LLM_GGUF_UINT16: case LLM_GGUF_INT16: return 2;
    case LLM_GGUF_UINT32: case LLM_GGUF_INT32: case LLM_GGUF_FLOAT32: return 4;
    case LLM_GGUF_UINT64: case LLM_GGUF_INT64: case LLM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static void walk_kv(const llm_gguf *g, const llm_gguf_kv *kv)
{
    touch(kv->key.ptr, kv->key.len);
    /* Look the pair up by name where the key is a C string (no NUL inside). */
    if (kv->key.len < 256 && !memchr(kv->key.ptr, '\0', kv->key.len)) {
        char key[256];
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = '\0';
        if (llm__gguf_find(g, key) != kv)
            abort(); /* keys are unique, so lookup must give this very pair */
        uint32_t u;
        int32_t i;
        float f;
        int b;
        const char *s;
        (void)llm__gguf_get_u32(g, key, &u);
        (void)llm__gguf_get_i32(g, key, &i);
        (void)llm__gguf_get_f32(g, key, &f);
        (void)llm__gguf_get_bool(g, key, &b);
        if (llm__gguf_get_str(g, key, &s) == 1 && strlen(s) != kv->v.str.len)
            abort();
    }
    if (kv->type == LLM_GGUF_STRING)
        touch(kv->v.str.ptr, kv->v.str.len);
    if (kv->type != LLM_GGUF_ARRAY)
        return;
    if (kv->v.arr.type == LLM_GGUF_STRING) {
        for (uint64_t j = 0; j < kv->v.arr.n; j++)
            touch(kv->v.arr.strs[j].ptr, kv->v.arr.strs[j].len);
    } else {
        touch(kv->v.arr.data, kv->v.arr.n * elem_size(kv->v.arr.type));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    llm_gguf *g = NULL;
    llm__clear_error();
    llm_status st = llm__gguf_open_memory(data, size, &g);
    if (st != LLM_OK) {
        if (g != NULL || llm_last_error()[0] == '\0')
            abort(); /* a failure must leave no reader and a message */
        return 0;
    }
    for (int64_t i = 0; i < llm__gguf_n_kv(g); i++)
        walk_kv(g, llm__gguf_kv_at(g, i));
    for (int64_t i = 0; i < llm__gguf_n_tensors(g); i++) {
        const llm_gguf_tensor *t = llm__gguf_tensor_at(g, i);
        touch(t->name.ptr, t->name.len);
        touch(t->data, t->nbytes);
        const uint8_t *d = t->data;
        if (d < data || d + t->nbytes > data + size || t->nbytes == 0)
            abort();
    }
    llm__gguf_close(g);
    return 0;
}
