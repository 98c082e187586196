/* tiny_model.h - writes a tiny random-weight Llama model (GGUF, f32 weights) with a
 * SentencePiece vocabulary, for tests that need a whole model but not a real one: fast
 * under sanitizers, and any shape. Header-only; include once per test program. */
#ifndef TINY_MODEL_H
#define TINY_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tiny_buf {
    uint8_t *b;
    size_t n, cap;
} tiny_buf;

static void tiny_bytes(tiny_buf *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 4096;
        w->b = realloc(w->b, w->cap);
        if (!w->b)
            abort();
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void tiny_le(tiny_buf *w, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    tiny_bytes(w, t, (size_t)n);
}

static void tiny_str(tiny_buf *w, const char *s)
{
    tiny_le(w, strlen(s), 8);
    tiny_bytes(w, s, strlen(s));
}

static void tiny_key_u32(tiny_buf *w, const char *k, uint32_t v)
{
    tiny_str(w, k);
    tiny_le(w, 4, 4); /* uint32 */
    tiny_le(w, v, 4);
}

static void tiny_key_f32(tiny_buf *w, const char *k, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    tiny_str(w, k);
    tiny_le(w, 6, 4); /* float32 */
    tiny_le(w, u, 4);
}

static void tiny_key_str(tiny_buf *w, const char *k, const char *v)
{
    tiny_str(w, k);
    tiny_le(w, 8, 4); /* string */
    tiny_str(w, v);
}

typedef struct tiny_shape {
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    uint64_t seed;
} tiny_shape;

/* Vocabulary: <unk> <s> </s>, the 256 byte tokens, then words and word pieces. */
#define W "\xe2\x96\x81"
static const char *const tiny_words[] = {
    W "the", W "a", W "cat", W "dog", W "sat",
    W "on", W "mat", W "hello", W "world", W "",
    "he", "llo", "ing", "er", W "is", W "and", W "of", "to", "in",
    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xe4\xbd\xa0\xe5\xa5\xbd", "STOP", "ST",
    "OP", ".", ",", "!", "?"};
#define TINY_N_WORDS ((int)(sizeof tiny_words / sizeof tiny_words[0]))
#define TINY_N_VOCAB (3 + 256 + TINY_N_WORDS)

static uint64_t tiny_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Writes the model to path; returns 0 on success. */
static int tiny_model_write(const char *path, const tiny_shape *sh)
{
    const int E = sh->n_embd, L = sh->n_layer, H = sh->n_head, KV = sh->n_head_kv, F = sh->n_ff;
    const int hd = E / H, V = TINY_N_VOCAB;
    tiny_buf w = {0};
    /* tensors: name, ne0, ne1 */
    char names[16 + 9 * 64][48];
    int64_t ne[16 + 9 * 64][2];
    int nt = 0;
#define T(nm, a, b) (snprintf(names[nt], sizeof names[nt], "%s", nm), ne[nt][0] = (a), ne[nt][1] = (b), nt++)
    T("token_embd.weight", E, V);
    T("output_norm.weight", E, 1);
    T("output.weight", E, V);
    for (int l = 0; l < L; l++) {
        char b[48];
#define TL(sfx, a, bb) (snprintf(b, sizeof b, "blk.%d.%s", l, sfx), T(b, a, bb))
        TL("attn_norm.weight", E, 1);
        TL("attn_q.weight", E, H * hd);
        TL("attn_k.weight", E, KV * hd);
        TL("attn_v.weight", E, KV * hd);
        TL("attn_output.weight", H * hd, E);
        TL("ffn_norm.weight", E, 1);
        TL("ffn_gate.weight", E, F);
        TL("ffn_up.weight", E, F);
        TL("ffn_down.weight", F, E);
#undef TL
    }
#undef T
    tiny_bytes(&w, "GGUF", 4);
    tiny_le(&w, 3, 4);
    tiny_le(&w, (uint64_t)nt, 8);
    tiny_le(&w, 18, 8); /* metadata pairs */
    tiny_key_str(&w, "general.architecture", "llama");
    tiny_key_str(&w, "general.name", "tiny-test");
    tiny_key_u32(&w, "llama.context_length", (uint32_t)sh->n_ctx);
    tiny_key_u32(&w, "llama.embedding_length", (uint32_t)E);
    tiny_key_u32(&w, "llama.block_count", (uint32_t)L);
    tiny_key_u32(&w, "llama.feed_forward_length", (uint32_t)F);
    tiny_key_u32(&w, "llama.attention.head_count", (uint32_t)H);
    tiny_key_u32(&w, "llama.attention.head_count_kv", (uint32_t)KV);
    tiny_key_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    tiny_key_f32(&w, "llama.rope.freq_base", 10000.0f);
    tiny_key_str(&w, "tokenizer.ggml.model", "llama");
    /* tokens, scores, types */
    tiny_str(&w, "tokenizer.ggml.tokens");
    tiny_le(&w, 9, 4);
    tiny_le(&w, 8, 4);
    tiny_le(&w, (uint64_t)V, 8);
    tiny_str(&w, "<unk>");
    tiny_str(&w, "<s>");
    tiny_str(&w, "</s>");
    for (int i = 0; i < 256; i++) {
        char b[8];
        snprintf(b, sizeof b, "<0x%02X>", i);
        tiny_str(&w, b);
    }
    for (int i = 0; i < TINY_N_WORDS; i++)
        tiny_str(&w, tiny_words[i]);
    tiny_str(&w, "tokenizer.ggml.scores");
    tiny_le(&w, 9, 4);
    tiny_le(&w, 6, 4);
    tiny_le(&w, (uint64_t)V, 8);
    for (int i = 0; i < V; i++) {
        float f = i < 259 ? 0.0f : -(float)(i - 259) * 0.1f;
        uint32_t u;
        memcpy(&u, &f, 4);
        tiny_le(&w, u, 4);
    }
    tiny_str(&w, "tokenizer.ggml.token_type");
    tiny_le(&w, 9, 4);
    tiny_le(&w, 5, 4);
    tiny_le(&w, (uint64_t)V, 8);
    for (int i = 0; i < V; i++)
        tiny_le(&w, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1, 4);
    tiny_key_u32(&w, "tokenizer.ggml.bos_token_id", 1);
    tiny_key_u32(&w, "tokenizer.ggml.eos_token_id", 2);
    tiny_key_u32(&w, "tokenizer.ggml.unknown_token_id", 0);
    tiny_str(&w, "tokenizer.ggml.add_bos_token");
    tiny_le(&w, 7, 4);
    tiny_le(&w, 1, 1);
    /* tensor infos */
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        tiny_str(&w, names[i]);
        const int nd = ne[i][1] == 1 ? 1 : 2;
        tiny_le(&w, (uint64_t)nd, 4);
        for (int d = 0; d < nd; d++)
            tiny_le(&w, (uint64_t)ne[i][d], 8);
        tiny_le(&w, 0, 4); /* f32 */
        tiny_le(&w, off, 8);
        off += (uint64_t)(ne[i][0] * ne[i][1]) * 4;
        off = (off + 31) / 32 * 32;
    }
    while (w.n % 32)
        tiny_le(&w, 0, 1);
    /* data: norms near 1, matrices small and random */
    uint64_t rng = sh->seed;
    for (int i = 0; i < nt; i++) {
        const int64_t n = ne[i][0] * ne[i][1];
        const int is_norm = ne[i][1] == 1;
        const float scale = is_norm ? 0.1f : 1.0f / (float)ne[i][0] * 3.0f;
        for (int64_t j = 0; j < n; j++) {
            const float u = (float)(tiny_rng(&rng) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
            const float f = is_norm ? 1.0f + u * scale : u * scale * 4.0f;
            uint32_t b;
            memcpy(&b, &f, 4);
            tiny_le(&w, b, 4);
        }
        while (w.n % 32)
            tiny_le(&w, 0, 1);
    }
    FILE *fp = fopen(path, "wb");
    int rc = !fp || fwrite(w.b, 1, w.n, fp) != w.n;
    if (fp)
        rc |= fclose(fp) != 0;
    free(w.b);
    return rc;
}

#endif
