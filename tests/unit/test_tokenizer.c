/* test_tokenizer.c - the tokenizers on small vocabularies built in memory as GGUF files,
 * and the Unicode helpers they rest on. The real models are checked against llama.cpp in
 * tests/model/test_tokenize.c; here each rule is pinned by a case small enough to work
 * out by hand. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "test.h"
#include "tokenizer.h"
#include "unicode.h"

/* ---- a minimal GGUF writer (metadata only) --------------------------------------------- */

typedef struct gbuf {
    unsigned char *p;
    size_t n, cap;
    uint64_t n_kv;
} gbuf;

static void put(gbuf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_key(gbuf *b, const char *key, uint32_t type)
{
    put_str(b, key);
    put_u32(b, type);
    b->n_kv++;
}
static void kv_str(gbuf *b, const char *key, const char *v)
{
    kv_key(b, key, LLM_GGUF_STRING);
    put_str(b, v);
}
static void kv_u32(gbuf *b, const char *key, uint32_t v)
{
    kv_key(b, key, LLM_GGUF_UINT32);
    put_u32(b, v);
}
static void kv_bool(gbuf *b, const char *key, int v)
{
    unsigned char c = (unsigned char)(v != 0);
    kv_key(b, key, LLM_GGUF_BOOL);
    put(b, &c, 1);
}
static void kv_strs(gbuf *b, const char *key, char **v, size_t n)
{
    kv_key(b, key, LLM_GGUF_ARRAY);
    put_u32(b, LLM_GGUF_STRING);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++)
        put_str(b, v[i]);
}
static void kv_arr32(gbuf *b, const char *key, uint32_t type, const void *v, size_t n)
{
    kv_key(b, key, LLM_GGUF_ARRAY);
    put_u32(b, type);
    put_u64(b, n);
    put(b, v, 4 * n);
}

/* Parses the metadata in b and builds a tokenizer; *st gets the status. */
static llm_tokenizer *build(gbuf *b, llm_status *st)
{
    gbuf f = {0};
    put(&f, "GGUF", 4);
    put_u32(&f, 3);
    put_u64(&f, 0);
    put_u64(&f, b->n_kv);
    put(&f, b->p, b->n);
    while (f.n % 32)
        put(&f, "", 1);
    llm_gguf *g = NULL;
    llm_tokenizer *t = NULL;
    *st = llm__gguf_open_memory(f.p, f.n, &g);
    if (*st == LLM_OK) {
        *st = llm__tokenizer_create(g, &t);
        llm__gguf_close(g); /* the tokenizer must not borrow the file */
    }
    memset(f.p, 0xAA, f.n);
    free(f.p);
    free(b->p);
    memset(b, 0, sizeof *b);
    return t;
}

/* ---- vocabularies ---------------------------------------------------------------------- */

/* GPT-2's byte -> code point table, written out independently of lib/unicode.c. */
static uint32_t ref_byte_cp(int b)
{
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae);
        if (c == b)
            return keep ? (uint32_t)c : 256u + (uint32_t)n;
        if (!keep)
            n++;
    }
    return 0;
}

static char *utf8_dup(uint32_t cp)
{
    char *s = calloc(5, 1);
    llm__utf8_encode(cp, s);
    return s;
}

enum {
    B_EOT = 256, B_IM_END, B_USER, B_AB, B_ABC, B_GA, B_BC, B_GW, B_OG, B_12, B_123, B_QS,
    B_QS_UP, B_E_ACUTE, B_45, B_IM_START, B_GG, B_XY, B_YZW, B_N
};

/* Byte-level BPE: the 256 byte characters are ids 0..255 (id = byte value). */
static llm_tokenizer *bpe_vocab(const char *pre, int add_bos)
{
    static const char *extra[] = {
        "<|endoftext|>", "<|im_end|>", "<u>", "ab", "abc", "\xc4\xa0" "a", "bc",
        "\xc4\xa0w", "o\xc4\xa0", "12", "123", "'s", "'S", "\xc3\x83\xc2\xa9", "45",
        "<|im_start|>", "\xc4\xa0\xc4\xa0", "xy", "yzw"};
    static const char *merges[] = {
        "a b", "ab c", "\xc4\xa0 a", "b c", "\xc4\xa0 w", "o \xc4\xa0", "1 2", "12 3", "' s",
        "' S", "\xc3\x83 \xc2\xa9", "4 5", "\xc4\xa0 \xc4\xa0"};
    char *tok[B_N];
    int32_t type[B_N];
    for (int b = 0; b < 256; b++) {
        tok[b] = utf8_dup(ref_byte_cp(b));
        type[b] = 1;
    }
    for (int i = 256; i < B_N; i++) {
        tok[i] = strdup(extra[i - 256]);
        type[i] = 1;
    }
    type[B_EOT] = type[B_IM_START] = 3; /* control */
    type[B_USER] = type[B_XY] = type[B_YZW] = 4; /* user defined */
    gbuf b = {0};
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    if (pre)
        kv_str(&b, "tokenizer.ggml.pre", pre);
    kv_strs(&b, "tokenizer.ggml.tokens", tok, B_N);
    kv_arr32(&b, "tokenizer.ggml.token_type", LLM_GGUF_INT32, type, B_N);
    kv_strs(&b, "tokenizer.ggml.merges", (char **)merges, sizeof merges / sizeof merges[0]);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", B_EOT);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", B_EOT);
    kv_bool(&b, "tokenizer.ggml.add_bos_token", add_bos);
    for (int i = 0; i < B_N; i++)
        free(tok[i]);
    llm_status st;
    llm_tokenizer *t = build(&b, &st);
    CHECK_MSG(st == LLM_OK, "bpe vocab: %s", llm_last_error());
    return t;
}

enum {
    S_UNK = 0, S_BOS, S_EOS, S_BYTE0, S_SPACE = S_BYTE0 + 256, S_A, S_B, S_SA, S_AB, S_SAB, S_C,
    S_BC, S_START, S_NL, S_SS, S_N
};

/* SentencePiece: scores decide the merge order ("bc" beats "ab"; "▁a" beats "ab"). */
static llm_tokenizer *spm_vocab(int space_prefix, int byte_tokens)
{
    char *tok[S_N];
    float score[S_N];
    int32_t type[S_N];
    static const char *named[] = {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab",
                                  "\xe2\x96\x81" "ab", "c", "bc", "<start>", "\n",
                                  "\xe2\x96\x81\xe2\x96\x81"};
    static const float named_score[] = {-1, -2, -3, -4, -5, -6, -7, -0.5f, 0, 0, -8};
    tok[S_UNK] = strdup("<unk>");
    tok[S_BOS] = strdup("<s>");
    tok[S_EOS] = strdup("</s>");
    type[S_UNK] = 2;
    type[S_BOS] = type[S_EOS] = 3;
    score[S_UNK] = score[S_BOS] = score[S_EOS] = 0;
    for (int b = 0; b < 256; b++) {
        tok[S_BYTE0 + b] = malloc(8);
        /* Without byte tokens, these slots hold plain filler tokens. */
        snprintf(tok[S_BYTE0 + b], 8, byte_tokens ? "<0x%02X>" : "#%02x#", b);
        type[S_BYTE0 + b] = byte_tokens ? 6 : 1;
        score[S_BYTE0 + b] = -100;
    }
    for (int i = S_SPACE; i < S_N; i++) {
        tok[i] = strdup(named[i - S_SPACE]);
        score[i] = named_score[i - S_SPACE];
        type[i] = 1;
    }
    type[S_START] = 3;
    type[S_NL] = 4;
    gbuf b = {0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", tok, S_N);
    kv_arr32(&b, "tokenizer.ggml.scores", LLM_GGUF_FLOAT32, score, S_N);
    kv_arr32(&b, "tokenizer.ggml.token_type", LLM_GGUF_INT32, type, S_N);
    kv_bool(&b, "tokenizer.ggml.add_space_prefix", space_prefix);
    for (int i = 0; i < S_N; i++)
        free(tok[i]);
    llm_status st;
    llm_tokenizer *t = build(&b, &st);
    CHECK_MSG(st == LLM_OK, "spm vocab: %s", llm_last_error());
    return t;
}

/* Tokenizes s and compares with the expected ids (terminated by -1). */
static int expect(const llm_tokenizer *t, const char *s, uint32_t flags, const int32_t *want)
{
    int32_t n_want = 0;
    while (want[n_want] >= 0)
        n_want++;
    llm_token got[256];
    int32_t n = llm__tokenize(t, s, strlen(s), got, 256, flags);
    int ok = n == n_want && memcmp(got, want, sizeof *got * (size_t)n_want) == 0;
    if (!ok) {
        printf("  \"%s\" flags %u: got", s, flags);
        for (int32_t i = 0; i < n; i++)
            printf(" %d", (int)got[i]);
        printf(" (n=%d), want", (int)n);
        for (int32_t i = 0; i < n_want; i++)
            printf(" %d", (int)want[i]);
        printf("\n");
    }
    return ok;
}

#define EXPECT(t, s, flags, ...)                                                         \
    do {                                                                                 \
        static const int32_t want_[] = {__VA_ARGS__, -1};                                \
        CHECK(expect(t, s, flags, want_));                                               \
    } while (0)
#define EXPECT_NONE(t, s, flags) CHECK_EQ_INT(llm__tokenize(t, s, strlen(s), NULL, 0, flags), 0)

/* ---- tests ----------------------------------------------------------------------------- */

static void test_utf8(void)
{
    size_t pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("A", 1, &pos), 'A');
    CHECK_EQ_INT(pos, 1);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xc3\xa9", 2, &pos), 0xe9);
    CHECK_EQ_INT(pos, 2);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xe4\xb8\xad", 3, &pos), 0x4e2d);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xf0\x9f\x98\x80", 4, &pos), 0x1f600);
    CHECK_EQ_INT(pos, 4);
    /* llama.cpp's leniency: a stray continuation byte or a cut sequence is U+FFFD and one
     * byte; overlong forms pass; values past U+10FFFF do not. */
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\x80" "a", 2, &pos), 0xfffd);
    CHECK_EQ_INT(pos, 1);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xe4\xb8", 2, &pos), 0xfffd);
    CHECK_EQ_INT(pos, 1);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xc0\x80", 2, &pos), 0);
    CHECK_EQ_INT(pos, 2);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xf5\x80\x80\x80", 4, &pos), 0xfffd);
    pos = 0;
    CHECK_EQ_INT(llm__utf8_decode("\xff", 1, &pos), 0xfffd);
    char out[4];
    CHECK_EQ_INT(llm__utf8_encode(0x10ffff, out), 4);
    CHECK(memcmp(out, "\xf4\x8f\xbf\xbf", 4) == 0);
    CHECK_EQ_INT(llm__utf8_len(0xe4), 3);
    CHECK_EQ_INT(llm__utf8_len(0x80), 1);
}

static void test_unicode_classes(void)
{
    CHECK_EQ_INT(llm__ucat('a'), LLM_UCAT_LETTER);
    CHECK_EQ_INT(llm__ucat('7'), LLM_UCAT_NUMBER);
    CHECK_EQ_INT(llm__ucat('$'), LLM_UCAT_SYMBOL);
    CHECK_EQ_INT(llm__ucat('_'), LLM_UCAT_PUNCT);
    CHECK_EQ_INT(llm__ucat(0x4e2d), LLM_UCAT_LETTER);  /* 中 */
    CHECK_EQ_INT(llm__ucat(0x0663), LLM_UCAT_NUMBER);  /* Arabic-Indic three */
    CHECK_EQ_INT(llm__ucat(0x00bd), LLM_UCAT_NUMBER);  /* ½ */
    CHECK_EQ_INT(llm__ucat(0x0301), LLM_UCAT_MARK);    /* combining acute */
    CHECK_EQ_INT(llm__ucat(0x3002), LLM_UCAT_PUNCT);   /* 。 */
    CHECK_EQ_INT(llm__ucat(0x1f600), LLM_UCAT_SYMBOL); /* 😀 */
    CHECK_EQ_INT(llm__ucat(0x2ffc), LLM_UCAT_SYMBOL);  /* new in Unicode 15.1 */
    CHECK_EQ_INT(llm__ucat(0x10d40), LLM_UCAT_OTHER);  /* only assigned in 16.0 */
    CHECK_EQ_INT(llm__ucat(0x0378), LLM_UCAT_OTHER);   /* unassigned */
    CHECK_EQ_INT(llm__ucat(0xe000), LLM_UCAT_OTHER);   /* private use */
    CHECK_EQ_INT(llm__ucat(0x10ffff), LLM_UCAT_OTHER);
    CHECK(llm__is_space(' ') && llm__is_space('\t') && llm__is_space(0x0b));
    CHECK(llm__is_space(0x85) && llm__is_space(0xa0) && llm__is_space(0x3000));
    CHECK(llm__is_space(0x2000) && llm__is_space(0x200a) && llm__is_space(0x202f));
    CHECK(!llm__is_space(0x200b) && !llm__is_space(0x1c) && !llm__is_space('x'));
}

static void test_gpt2_bytes(void)
{
    int seen[0x200] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = llm__gpt2_byte_to_cp((unsigned char)b);
        CHECK_EQ_INT(cp, ref_byte_cp(b));
        CHECK_EQ_INT(llm__gpt2_cp_to_byte(cp), b);
        CHECK(cp < 0x200 && !seen[cp]);
        seen[cp & 0x1ff] = 1;
    }
    CHECK_EQ_INT(llm__gpt2_byte_to_cp(' '), 0x120);  /* Ġ */
    CHECK_EQ_INT(llm__gpt2_byte_to_cp('\n'), 0x10a); /* Ċ */
    CHECK_EQ_INT(llm__gpt2_byte_to_cp(0xad), 0x143);
    CHECK_EQ_INT(llm__gpt2_cp_to_byte(0x144), -1);
    CHECK_EQ_INT(llm__gpt2_cp_to_byte(0x20), -1);
}

static void test_bpe_merges(void)
{
    llm_tokenizer *t = bpe_vocab("gpt-2", 0);
    if (!t)
        return;
    EXPECT(t, "abc", 0, B_ABC);
    EXPECT(t, "bc", 0, B_BC);
    /* "a b" (rank 0) wins over "Ġ a" (rank 2), and nothing joins "Ġ" to "ab". */
    EXPECT(t, "abc ab", 0, B_ABC, ' ', B_AB); /* id ' ' is the byte token "Ġ" */
    /* Words never merge across the pre-tokenizer's cut: "o" | " w", not "o " | "w". */
    EXPECT(t, "o w", 0, 'o', B_GW);
    EXPECT(t, "123", 0, B_123);
    EXPECT(t, "\xc3\xa9", 0, B_E_ACUTE);
    EXPECT(t, "a's", 0, 'a', B_QS);
    EXPECT(t, "a'S", 0, 'a', '\'', 'S'); /* gpt2's contractions are lowercase only */
    /* \s+(?!\S): of three spaces before a word, two go alone, one joins the word. */
    EXPECT(t, "   w", 0, B_GG, B_GW);
    EXPECT(t, "a\n", 0, 'a', '\n');
    EXPECT_NONE(t, "", 0);
    EXPECT_NONE(t, "", LLM_TOKENIZE_ADD_SPECIAL); /* add_bos_token is false */
    llm__tokenizer_free(t);
}

static void test_bpe_pre_tokenizers(void)
{
    llm_tokenizer *t = bpe_vocab("smollm", 1);
    if (t) {
        EXPECT(t, "123", 0, '1', '2', '3'); /* digits one by one */
        EXPECT(t, "x 45", 0, 'x', ' ', '4', '5');
        EXPECT(t, "abc", LLM_TOKENIZE_ADD_SPECIAL, B_EOT, B_ABC);
        llm__tokenizer_free(t);
    }
    t = bpe_vocab("llama-bpe", 0);
    if (t) {
        EXPECT(t, "12345", 0, B_123, B_45); /* \p{N}{1,3} */
        EXPECT(t, "a'S", 0, 'a', B_QS_UP);   /* contractions of any case */
        llm__tokenizer_free(t);
    }
    t = bpe_vocab("qwen2", 0);
    if (t) {
        EXPECT(t, "123", 0, '1', '2', '3');
        llm__tokenizer_free(t);
    }
    /* Unknown and missing names fall back to the default regexes (with a warning). */
    t = bpe_vocab("no-such-pre", 0);
    if (t) {
        EXPECT(t, "abc", 0, B_ABC);
        EXPECT(t, "a's", 0, 'a', '\'', 's'); /* punctuation is cut out first */
        llm__tokenizer_free(t);
    }
    t = bpe_vocab(NULL, 0);
    CHECK(t != NULL);
    llm__tokenizer_free(t);
}

static void test_bpe_special_tokens(void)
{
    llm_tokenizer *t = bpe_vocab("gpt-2", 0);
    if (!t)
        return;
    /* Control tokens are text unless asked for; user-defined ones always split. */
    EXPECT(t, "<|im_start|>hi", LLM_TOKENIZE_PARSE_SPECIAL, B_IM_START, 'h', 'i');
    EXPECT(t, "<|im_start|>", 0, '<', '|', 'i', 'm', '_', 's', 't', 'a', 'r', 't', '|', '>');
    EXPECT(t, "q<u>q", 0, 'q', B_USER, 'q');
    EXPECT(t, "q<u>q", LLM_TOKENIZE_PARSE_SPECIAL, 'q', B_USER, 'q');
    /* "<|im_end|>" is typed normal in this vocabulary; like llama.cpp we know it by its
     * text: it ends generation and becomes a control token. */
    EXPECT(t, "a<|im_end|>", LLM_TOKENIZE_PARSE_SPECIAL, 'a', B_IM_END);
    CHECK(llm__tokenizer_is_eog(t, B_IM_END));
    CHECK(llm__tokenizer_is_eog(t, B_EOT));
    CHECK(!llm__tokenizer_is_eog(t, B_IM_START));
    CHECK(!llm__tokenizer_is_eog(t, -1));
    CHECK_EQ_INT(llm__tokenizer_special(t, LLM_TOKEN_EOT), B_IM_END);
    CHECK_EQ_INT(llm__tokenizer_special(t, LLM_TOKEN_BOS), B_EOT);
    CHECK_EQ_INT(llm__tokenizer_special(t, LLM_TOKEN_UNK), -1);
    /* Longest special token first, over the whole text: "yzw" is cut before "xy" is
     * looked for, so "xyzw" is x + yzw even though "xy" starts earlier. */
    EXPECT(t, "xyzw", 0, 'x', B_YZW);
    EXPECT(t, "xyxy", 0, B_XY, B_XY);
    CHECK_EQ_INT(llm__tokenizer_n_vocab(t), B_N);
    CHECK(strcmp(llm__tokenizer_text(t, B_USER), "<u>") == 0);
    CHECK(llm__tokenizer_text(t, B_N) == NULL);
    llm__tokenizer_free(t);
}

static void test_bpe_pieces(void)
{
    llm_tokenizer *t = bpe_vocab("gpt-2", 0);
    if (!t)
        return;
    char buf[64];
    CHECK_EQ_INT(llm__token_to_piece(t, B_GA, buf, sizeof buf, 0), 2);
    CHECK(memcmp(buf, " a", 2) == 0);
    CHECK_EQ_INT(llm__token_to_piece(t, B_E_ACUTE, buf, sizeof buf, 0), 2);
    CHECK(memcmp(buf, "\xc3\xa9", 2) == 0);
    CHECK_EQ_INT(llm__token_to_piece(t, 0xc3, buf, sizeof buf, 0), 1); /* half a character */
    CHECK_EQ_INT((unsigned char)buf[0], 0xc3);
    CHECK_EQ_INT(llm__token_to_piece(t, B_IM_START, buf, sizeof buf, 0), 0);
    CHECK_EQ_INT(llm__token_to_piece(t, B_IM_START, buf, sizeof buf,
                                     LLM_DETOKENIZE_RENDER_SPECIAL), 12);
    CHECK_EQ_INT(llm__token_to_piece(t, B_USER, buf, sizeof buf, 0), 3); /* user defined */
    CHECK_EQ_INT(llm__token_to_piece(t, B_ABC, buf, 2, 0), -3);
    CHECK_EQ_INT(llm__token_to_piece(t, B_N, buf, sizeof buf, 0), INT32_MIN);
    CHECK_EQ_INT(llm__token_to_piece(t, -1, buf, sizeof buf, 0), INT32_MIN);

    const char *text = "abc ab \xc3\xa9<|im_start|>x\n";
    llm_token ids[64];
    int32_t n = llm__tokenize(t, text, strlen(text), ids, 64, LLM_TOKENIZE_PARSE_SPECIAL);
    CHECK(n > 0);
    char out[64];
    memset(out, 'Z', sizeof out);
    int32_t k = llm__detokenize(t, ids, n, out, sizeof out, LLM_DETOKENIZE_RENDER_SPECIAL);
    CHECK_EQ_INT(k, (int32_t)strlen(text));
    CHECK(strcmp(out, text) == 0); /* NUL-terminated when room remains */
    k = llm__detokenize(t, ids, n, out, sizeof out, 0);
    CHECK_EQ_INT(k, (int32_t)strlen("abc ab \xc3\xa9x\n"));
    CHECK(memcmp(out, "abc ab \xc3\xa9x\n", (size_t)k) == 0);
    /* Too small: -(needed), and exactly enough: no NUL. */
    CHECK_EQ_INT(llm__detokenize(t, ids, n, out, 3, 0), -k);
    CHECK_EQ_INT(llm__detokenize(t, ids, n, NULL, 0, 0), -k);
    memset(out, 'Z', sizeof out);
    CHECK_EQ_INT(llm__detokenize(t, ids, n, out, k, 0), k);
    CHECK_EQ_INT(out[k], 'Z');
    llm_token bad[2] = {1, B_N};
    CHECK_EQ_INT(llm__detokenize(t, bad, 2, out, sizeof out, 0), INT32_MIN);
    CHECK_EQ_INT(llm__detokenize(t, ids, 0, out, sizeof out, 0), 0);
    CHECK_EQ_INT(out[0], '\0');
    llm__tokenizer_free(t);
}

static void test_tokenize_buffers(void)
{
    llm_tokenizer *t = bpe_vocab("gpt-2", 1);
    if (!t)
        return;
    llm_token ids[8];
    /* BOS + "x" + "y" + "z": four tokens. */
    CHECK_EQ_INT(llm__tokenize(t, "x y", 3, NULL, 0, LLM_TOKENIZE_ADD_SPECIAL), -4);
    CHECK_EQ_INT(llm__tokenize(t, "x y", 3, ids, 3, LLM_TOKENIZE_ADD_SPECIAL), -4);
    CHECK_EQ_INT(llm__tokenize(t, "x y", 3, ids, 4, LLM_TOKENIZE_ADD_SPECIAL), 4);
    CHECK_EQ_INT(ids[0], B_EOT);
    CHECK_EQ_INT(ids[3], 'y');
    /* The length rules, not a NUL: "x\0y" is three bytes of text. */
    CHECK_EQ_INT(llm__tokenize(t, "x\0y", 3, ids, 8, 0), 3);
    CHECK_EQ_INT(ids[1], 0);
    CHECK_EQ_INT(llm__tokenize(t, "xy", 1, ids, 8, 0), 1);
    CHECK_EQ_INT(llm__tokenize(t, NULL, 0, ids, 8, 0), 0);
    CHECK_EQ_INT(llm__tokenize(t, NULL, 1, ids, 8, 0), INT32_MIN);
    CHECK_EQ_INT(llm__tokenize(t, "x", 1, NULL, 8, 0), INT32_MIN);
    CHECK_EQ_INT(llm__tokenize(t, "x", 1, ids, -1, 0), INT32_MIN);
    CHECK_EQ_INT(llm__tokenize(NULL, "x", 1, ids, 8, 0), INT32_MIN);
    /* Invalid UTF-8 goes through as U+FFFD, as in llama.cpp (no crash, no error). */
    CHECK(llm__tokenize(t, "a\xff\xfe" "b", 4, ids, 8, 0) > 0);
    llm__tokenizer_free(t);
}

static void test_spm(void)
{
    llm_tokenizer *t = spm_vocab(0, 1);
    if (!t)
        return;
    EXPECT(t, "ab", 0, S_AB);
    EXPECT(t, "abc", 0, S_A, S_BC); /* "bc" (-0.5) merges before "ab" (-5) */
    EXPECT(t, " ab", 0, S_SAB);     /* "▁a" (-4) first, then "▁ab" */
    EXPECT(t, "  ", 0, S_SS);
    EXPECT(t, "\xc3\xa9", 0, S_BYTE0 + 0xc3, S_BYTE0 + 0xa9); /* byte fallback */
    EXPECT(t, "a\nb", 0, S_A, S_NL, S_B);                     /* user defined */
    EXPECT(t, "<start>ab", 0, '<' + S_BYTE0, 's' + S_BYTE0, 't' + S_BYTE0, S_A,
           'r' + S_BYTE0, 't' + S_BYTE0, '>' + S_BYTE0, S_AB);
    EXPECT(t, "<start>ab", LLM_TOKENIZE_PARSE_SPECIAL, S_START, S_AB);
    /* SPM defaults: BOS is added (id 1) when no add_bos_token key says otherwise. */
    EXPECT(t, "ab", LLM_TOKENIZE_ADD_SPECIAL, S_BOS, S_AB);
    EXPECT(t, "", LLM_TOKENIZE_ADD_SPECIAL, S_BOS);
    CHECK(llm__tokenizer_is_eog(t, S_EOS));

    char buf[16];
    CHECK_EQ_INT(llm__token_to_piece(t, S_SAB, buf, sizeof buf, 0), 3);
    CHECK(memcmp(buf, " ab", 3) == 0);
    CHECK_EQ_INT(llm__token_to_piece(t, S_BYTE0 + 0x41, buf, sizeof buf, 0), 1);
    CHECK_EQ_INT(buf[0], 'A');
    CHECK_EQ_INT(llm__token_to_piece(t, S_UNK, buf, sizeof buf, 0), 0);
    CHECK_EQ_INT(llm__token_to_piece(t, S_UNK, buf, sizeof buf, LLM_DETOKENIZE_RENDER_SPECIAL), 5);
    CHECK_EQ_INT(llm__token_to_piece(t, S_NL, buf, sizeof buf, 0), 1);
    const llm_token ids[] = {S_SAB, S_BYTE0 + 0xc3, S_BYTE0 + 0xa9, S_START, S_NL};
    char out[32];
    CHECK_EQ_INT(llm__detokenize(t, ids, 5, out, sizeof out, 0), 6);
    CHECK(strcmp(out, " ab\xc3\xa9\n") == 0); /* no space prefix: the space stays */
    llm__tokenizer_free(t);

    t = spm_vocab(1, 1);
    if (!t)
        return;
    EXPECT(t, "ab", 0, S_SAB); /* add_space_prefix: "▁ab" */
    /* After a special token the next text gets the prefix again. */
    EXPECT(t, "<start>ab", LLM_TOKENIZE_PARSE_SPECIAL, S_START, S_SAB);
    CHECK_EQ_INT(llm__detokenize(t, (const llm_token[]){S_SAB, S_SAB}, 2, out, sizeof out, 0), 5);
    CHECK(strcmp(out, "ab ab") == 0); /* the first word's prefix space is dropped */
    llm__tokenizer_free(t);

    t = spm_vocab(0, 0);
    if (!t)
        return;
    EXPECT(t, "\xc3\xa9", 0, S_UNK, S_UNK); /* no byte tokens: unknown */
    llm__tokenizer_free(t);
}

static void test_create_errors(void)
{
    llm_status st;
    gbuf b = {0};
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    char *tok[] = {"a", "b"};
    kv_strs(&b, "tokenizer.ggml.tokens", tok, 2);
    CHECK(build(&b, &st) == NULL);
    CHECK_EQ_INT(st, LLM_ERR_INVALID_MODEL); /* BPE without merges */

    kv_str(&b, "tokenizer.ggml.model", "bert");
    kv_strs(&b, "tokenizer.ggml.tokens", tok, 2);
    CHECK(build(&b, &st) == NULL);
    CHECK_EQ_INT(st, LLM_ERR_UNSUPPORTED);
    CHECK(strstr(llm_last_error(), "bert") != NULL);

    kv_str(&b, "tokenizer.ggml.model", "llama");
    CHECK(build(&b, &st) == NULL);
    CHECK_EQ_INT(st, LLM_ERR_INVALID_MODEL); /* no tokens */

    kv_str(&b, "general.name", "x");
    CHECK(build(&b, &st) == NULL);
    CHECK_EQ_INT(st, LLM_ERR_INVALID_MODEL); /* no tokenizer at all */

    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", tok, 2);
    float sc[1] = {0};
    kv_arr32(&b, "tokenizer.ggml.scores", LLM_GGUF_FLOAT32, sc, 1);
    CHECK(build(&b, &st) == NULL);
    CHECK_EQ_INT(st, LLM_ERR_INVALID_MODEL); /* fewer scores than tokens */

    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_u32(&b, "tokenizer.ggml.tokens", 3);
    CHECK(build(&b, &st) == NULL);
    CHECK_EQ_INT(st, LLM_ERR_INVALID_MODEL); /* tokens of the wrong type */

    /* Out-of-range special ids are ignored, as in llama.cpp. */
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", tok, 2);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 99);
    llm_tokenizer *t = build(&b, &st);
    CHECK_EQ_INT(st, LLM_OK);
    CHECK_EQ_INT(llm__tokenizer_special(t, LLM_TOKEN_BOS), 1); /* SPM default */
    CHECK_EQ_INT(llm__tokenizer_special(t, LLM_TOKEN_EOS), -1); /* default 2 is past the end */
    llm__tokenizer_free(t);
    llm__tokenizer_free(NULL);
}

static void test_long_input(void)
{
    /* Long runs of one class must stay linear-ish: 200 KB of spaces, letters, digits. */
    llm_tokenizer *t = bpe_vocab("llama-bpe", 0);
    if (!t)
        return;
    size_t n = 200 * 1024;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = i < n / 3 ? ' ' : i < 2 * n / 3 ? 'a' : '1';
    int32_t k = llm__tokenize(t, s, n, NULL, 0, 0);
    CHECK(k < 0 && k != INT32_MIN);
    llm_token *ids = malloc(sizeof *ids * (size_t)-k);
    CHECK_EQ_INT(llm__tokenize(t, s, n, ids, -k, 0), -k);
    char *back = malloc(n + 1);
    CHECK_EQ_INT(llm__detokenize(t, ids, -k, back, (int32_t)n + 1, 0), (int32_t)n);
    CHECK(memcmp(back, s, n) == 0);
    free(back);
    free(ids);
    free(s);
    llm__tokenizer_free(t);
}

int main(void)
{
    TEST_RUN(test_utf8);
    TEST_RUN(test_unicode_classes);
    TEST_RUN(test_gpt2_bytes);
    TEST_RUN(test_bpe_merges);
    TEST_RUN(test_bpe_pre_tokenizers);
    TEST_RUN(test_bpe_special_tokens);
    TEST_RUN(test_bpe_pieces);
    TEST_RUN(test_tokenize_buffers);
    TEST_RUN(test_spm);
    TEST_RUN(test_create_errors);
    TEST_RUN(test_long_input);
    return test_summary();
}
