/* tokenizer.c - byte-level BPE and SentencePiece-style tokenizers from GGUF metadata.
 *
 * The reference is llama.cpp's llama-vocab.cpp: for the same vocabulary, every input must
 * give the same token ids. The pieces of that behaviour, in the order a call runs them:
 *
 * 1. Special tokens. Vocabulary entries of type CONTROL, USER_DEFINED or UNKNOWN are cut out
 *    of the raw text first: USER_DEFINED always, CONTROL and UNKNOWN only with
 *    LLM_TOKENIZE_PARSE_SPECIAL. llama.cpp takes the special tokens one at a time, longest
 *    first, and cuts every leftmost non-overlapping occurrence from the text left over by
 *    the tokens before it. We get the same cuts in one pass: a trie finds every occurrence
 *    of every special token, the occurrences are ordered by (token priority, position) with
 *    a counting sort, and each is accepted when it overlaps none accepted before it.
 * 2. BPE ("gpt2"): each remaining fragment is decoded to code points and split into words
 *    by the pre-tokenizer regexes that tokenizer.ggml.pre names; each regex splits every
 *    piece left by the one before, and unmatched stretches stay pieces of their own.
 *    llama.cpp runs regexes that use \p{..} classes on a "collapsed" string holding one byte
 *    per code point (the ASCII byte itself, or a byte standing for the code point's class),
 *    with \p{..} rewritten to byte classes; we do the same with PCRE2, so that its Unicode
 *    tables (Unicode 15.1, White_Space for \s) decide, not PCRE2's. Regexes without \p{..}
 *    run in PCRE2's UTF mode on the text with non-ASCII spaces turned into VT, as llama.cpp
 *    does. Each word is mapped byte by byte to GPT-2's printable code points and merged by
 *    merge rank (lowest first, leftmost on ties).
 * 3. SentencePiece ("llama"): spaces become U+2581 (with a leading one when
 *    add_space_prefix asks and the fragment follows a special token or starts the text),
 *    the fragment is split into UTF-8 characters, and adjacent symbols whose concatenation
 *    is a vocabulary entry are merged, highest score first (leftmost on ties). Symbols left
 *    that are not entries become byte tokens <0xXX>, or the unknown token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"
#include "unicode.h"

enum { TOK_BPE = 1, TOK_SPM = 2 };

/* Token attributes, from tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control,
 * 4 user defined, 5 unused, 6 byte; 0 and others: undefined = no bits). */
enum {
    ATTR_UNKNOWN = 1,
    ATTR_UNUSED = 2,
    ATTR_NORMAL = 4,
    ATTR_CONTROL = 8,
    ATTR_USER_DEFINED = 16,
    ATTR_BYTE = 32,
};

enum { PRE_IGNORE_MERGES = 1, PRE_ADD_BOS = 2, PRE_NO_BOS = 4 };

#define MAX_REGEX 8

typedef struct pre_regex {
    pcre2_code *code;
    int collapsed; /* runs on the one-byte-per-code-point class string */
} pre_regex;

typedef struct trie_node {
    int32_t child;   /* first child, -1 if none */
    int32_t sibling; /* next sibling, -1 if none */
    int32_t special; /* index into special[] of the token ending here, or -1 */
    unsigned char byte;
} trie_node;

struct llm_tokenizer {
    int type;
    int32_t n_vocab;

    char *blob;        /* all token texts, each NUL-terminated */
    size_t *text_off;  /* [n_vocab] */
    uint32_t *text_len; /* [n_vocab] */
    float *scores;     /* [n_vocab] */
    uint8_t *attr;     /* [n_vocab] */
    uint8_t *eog;      /* [n_vocab] */
    int32_t *vocab_ht; /* open addressing: text -> id, -1 empty */
    size_t vocab_mask;

    /* BPE merges: "first second" split at the first space after the first byte; the rank
     * is the line number. */
    int32_t n_merges;
    char *merge_blob;
    size_t *merge_off;      /* [n_merges] start of "first second" */
    uint32_t *merge_first;  /* [n_merges] length of first */
    uint32_t *merge_second; /* [n_merges] length of second */
    int32_t *merge_ht;
    size_t merge_mask;

    /* Special tokens in priority order (longest text first, then lower id). */
    int32_t n_special;
    int32_t *special;
    trie_node *trie;
    int32_t root[256]; /* trie roots by first byte, -1 if none */

    pre_regex regex[MAX_REGEX];
    int n_regex;
    int any_collapsed, any_utf;
    int ignore_merges;

    int add_bos, add_eos, add_space_prefix;
    llm_token bos, eos, eot, unk, pad;
    llm_token byte_tok[256]; /* SPM byte fallback ids, -1 if none */
};

/* ---- small helpers ------------------------------------------------------------------ */

typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = llm__realloc(a->v, cap * sizeof *v);
        if (!v)
            return 0;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 1;
}

/* A growable byte buffer. */
typedef struct bbuf {
    char *p;
    size_t n, cap;
} bbuf;

static int bbuf_reserve(bbuf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra)
        cap *= 2;
    char *p = llm__realloc(b->p, cap);
    if (!p)
        return 0;
    b->p = p;
    b->cap = cap;
    return 1;
}

static int bbuf_put(bbuf *b, const void *s, size_t n)
{
    if (!bbuf_reserve(b, n))
        return 0;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 1;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static size_t ht_slot(uint64_t h, size_t mask)
{
    return (size_t)(h ^ (h >> 29)) & mask;
}

static size_t ht_size_for(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

static const char *tok_text(const llm_tokenizer *t, int32_t id)
{
    return t->blob + t->text_off[id];
}

static int32_t vocab_find(const llm_tokenizer *t, const char *s, size_t n)
{
    size_t i = ht_slot(fnv(FNV_INIT, s, n), t->vocab_mask);
    for (;;) {
        int32_t id = t->vocab_ht[i];
        if (id < 0)
            return -1;
        if (t->text_len[id] == n && memcmp(tok_text(t, id), s, n) == 0)
            return id;
        i = (i + 1) & t->vocab_mask;
    }
}

static uint64_t merge_hash(const char *a, size_t na, const char *b, size_t nb)
{
    uint64_t h = fnv(FNV_INIT, a, na);
    h = fnv(h ^ 0xff, "\xff", 1);
    return fnv(h, b, nb);
}

/* Rank of the merge (a, b), or -1. */
static int32_t merge_rank(const llm_tokenizer *t, const char *a, size_t na, const char *b,
                          size_t nb)
{
    if (!t->merge_ht)
        return -1;
    size_t i = ht_slot(merge_hash(a, na, b, nb), t->merge_mask);
    for (;;) {
        int32_t r = t->merge_ht[i];
        if (r < 0)
            return -1;
        const char *m = t->merge_blob + t->merge_off[r];
        size_t nf = t->merge_first[r];
        if (nf == na && t->merge_second[r] == nb && memcmp(m, a, na) == 0 &&
            memcmp(m + nf + 1, b, nb) == 0)
            return r;
        i = (i + 1) & t->merge_mask;
    }
}

/* ---- pre-tokenizers ----------------------------------------------------------------- */

/* The regexes llama.cpp uses for each tokenizer.ggml.pre value (ECMAScript syntax there;
 * these patterns mean the same under PCRE2 with DOLLAR_ENDONLY). */
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                          \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                           \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"      \
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN35                                                                          \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"                            \
                    "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_DEEPSEEK3_MAIN                                                                  \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"          \
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
#define RE_PORO " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"
#define RE_GPT4O_WORDS(mark)                                                               \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}" mark "])([^a-z]))*((?=[\\p{L}" mark "])([^A-Z]))+"     \
    RE_CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}" mark "])([^a-z]))+"                 \
    "((?=[\\p{L}" mark "])([^A-Z]))*" RE_CONTRACTIONS "?|\\p{N}{1,3}"                        \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const re_llama3[] = {RE_LLAMA3, NULL};
static const char *const re_jais2[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                    "|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)"
                    "|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)"
                    "|\\s{1,2}(?!\\S)|\\s{1}",
    NULL};
/* deepseek-llm: Latin/Greek/Cyrillic/... letter ranges spelled out, as in its tokenizer. */
static const char *const re_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf"
    "\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd"
    "\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-"
    "\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1"
    "\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf"
    "\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8"
    "\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1"
    "\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1"
    "\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1"
    "\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1"
    "\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2"
    "\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2"
    "\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2"
    "\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2"
    "\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2"
    "\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea"
    "\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef"
    "\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0"
    "\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90"
    "\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2"
    "\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f"
    "\xe3\x80\x80-\xe3\x80\x82]+",
    "\\s+$",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
    "\\p{N}+",
    NULL};
static const char *const re_deepseek_coder[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", "\\p{N}",
    NULL};
static const char *const re_deepseek3[] = {
    "\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    RE_DEEPSEEK3_MAIN, NULL};
static const char *const re_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]", NULL};
static const char *const re_starcoder[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const re_gpt2[] = {RE_GPT2, NULL};
static const char *const re_qwen2[] = {RE_QWEN2, NULL};
static const char *const re_qwen35[] = {RE_QWEN35, NULL};
static const char *const re_poro[] = {RE_PORO, NULL};
static const char *const re_viking[] = {RE_PORO, "\\p{N}", NULL};
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
    "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_chameleon[] = {
    "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL};
static const char *const re_gpt4o[] = {RE_GPT4O_WORDS(""), NULL};
static const char *const re_granite_emb[] = {RE_GPT4O_WORDS("\\p{M}"), NULL};
static const char *const re_seed_coder[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+"
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_bailingmoe[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_ufakzeka[] = {
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_laguna[] = {"[^\\n]+|[\\n]+", RE_QWEN2, NULL};
static const char *const re_exaone_moe[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}"
                    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_minicpm5[] = {
    "\\p{N}{1,3}",
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};

typedef struct pre_def {
    const char *name;
    const char *const *regex;
    int flags;
} pre_def;

/* tokenizer.ggml.pre values llama.cpp knows, with its regexes and defaults. */
static const pre_def pre_defs[] = {
    {"default", re_default, 0},
    {"llama3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-v3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-bpe", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon-h1", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"pixtral", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"midm-2.0", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"lfm2", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"jina-v5-nano", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"dbrx", re_llama3, 0},
    {"smaug-bpe", re_llama3, 0},
    {"jais-2", re_jais2, 0},
    {"deepseek-llm", re_deepseek_llm, 0},
    {"deepseek-coder", re_deepseek_coder, 0},
    {"deepseek-v3", re_deepseek3, 0},
    {"hunyuan-dense", re_deepseek3, 0},
    {"joyai-llm", re_deepseek3, 0},
    {"hy_v4", re_deepseek3, 0},
    {"falcon", re_falcon, 0},
    {"starcoder", re_starcoder, 0},
    {"refact", re_starcoder, 0},
    {"command-r", re_starcoder, 0},
    {"smollm", re_starcoder, 0},
    {"codeshell", re_starcoder, 0},
    {"exaone", re_starcoder, 0},
    {"minerva-7b", re_starcoder, 0},
    {"mellum2", re_starcoder, 0},
    {"gpt-2", re_gpt2, 0},
    {"phi-2", re_gpt2, 0},
    {"jina-es", re_gpt2, 0},
    {"jina-de", re_gpt2, 0},
    {"gigachat", re_gpt2, 0},
    {"jina-v2-es", re_gpt2, 0},
    {"jina-v2-de", re_gpt2, 0},
    {"jina-v1-en", re_gpt2, 0},
    {"jina-v2-code", re_gpt2, 0},
    {"roberta-bpe", re_gpt2, 0},
    {"a.x-4.0", re_gpt2, 0},
    {"mellum", re_gpt2, 0},
    {"modern-bert", re_gpt2, 0},
    {"mpt", re_gpt2, 0},
    {"olmo", re_gpt2, 0},
    {"jais", re_gpt2, 0},
    {"trillion", re_gpt2, 0},
    {"granite-docling", re_gpt2, 0},
    {"exaone4", re_gpt2, 0},
    {"qwen2", re_qwen2, 0},
    {"deepseek-r1-qwen", re_qwen2, 0},
    {"kormo", re_qwen2, 0},
    {"f2llmv2", re_qwen2, 0},
    {"megrez", re_qwen2, 0},
    {"stablelm2", re_qwen2, 0},
    {"hunyuan", re_qwen2, 0},
    {"solar-open", re_qwen2, 0},
    {"grok-2", re_qwen2, 0},
    {"qwen35", re_qwen35, 0},
    {"poro-chat", re_poro, 0},
    {"bloom", re_poro, 0},
    {"gpt3-finnish", re_poro, 0},
    {"viking", re_viking, 0},
    {"chatglm-bpe", re_llama3, PRE_NO_BOS},
    {"glm4", re_llama3, PRE_NO_BOS | PRE_IGNORE_MERGES},
    {"glm5", re_llama3, PRE_NO_BOS | PRE_IGNORE_MERGES},
    {"tekken", re_tekken, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"chameleon", re_chameleon, PRE_ADD_BOS},
    {"gpt-4o", re_gpt4o, 0},
    {"llama4", re_gpt4o, 0},
    {"kanana2", re_gpt4o, 0},
    {"talkie", re_gpt4o, 0},
    {"minimax-m2", re_gpt4o, 0},
    {"granite-embed-multi-97m", re_granite_emb, PRE_IGNORE_MERGES},
    {"seed-coder", re_seed_coder, 0},
    {"bailingmoe", re_bailingmoe, 0},
    {"bailingmoe2", re_bailingmoe, 0},
    {"llada-moe", re_bailingmoe, 0},
    {"ufakzeka", re_ufakzeka, 0},
    {"laguna", re_laguna, 0},
    {"exaone-moe", re_exaone_moe, 0},
    {"minicpm5", re_minicpm5, PRE_IGNORE_MERGES},
};

/* The byte standing for a code point in the collapsed string (llama.cpp's choice):
 * ASCII as itself, spaces as VT, the classes as 0xD1..0xD5, anything else 0xD0. */
static unsigned char collapse_cp(uint32_t cp)
{
    if (cp < 0x80)
        return (unsigned char)cp;
    if (llm__is_space(cp))
        return 0x0b;
    switch (llm__ucat(cp)) {
    case LLM_UCAT_NUMBER: return 0xd1;
    case LLM_UCAT_LETTER: return 0xd2;
    case LLM_UCAT_PUNCT: return 0xd3;
    case LLM_UCAT_MARK: return 0xd4;
    case LLM_UCAT_SYMBOL: return 0xd5;
    default: return 0xd0;
    }
}

/* \p{..} names llama.cpp rewrites, with the byte class each becomes: the collapsed byte and
 * the ASCII members of the class. */
static const struct {
    const char *name;
    const char *cls;
} ucat_classes[] = {
    {"\\p{N}", "\xd1" "0-9"},
    {"\\p{L}", "\xd2" "A-Za-z"},
    {"\\p{P}", "\xd3" "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {"\\p{M}", "\xd4"},
    {"\\p{S}", "\xd5" "\\$\\+<->\\^`\\|~"},
    {"\\p{Lu}", "\xd2" "A-Za-z"},
    {"\\p{Ll}", "\xd2" "A-Za-z"},
    {"\\p{Lt}", "\xd2" "A-Za-z"},
    {"\\p{Lm}", "\xd2" "A-Za-z"},
    {"\\p{Lo}", "\xd2" "A-Za-z"},
};

/* Rewrites the \p{..} classes of re into byte classes over the collapsed string; returns
 * NULL on allocation failure. *uses set when re had any. */
static char *collapse_regex(const char *re, int *uses)
{
    size_t n = strlen(re);
    bbuf out = {0};
    int inside = 0;
    *uses = 0;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '[' && (i == 0 || re[i - 1] != '\\')) {
            inside = 1;
        } else if (inside && c == ']' && re[i - 1] != '\\') {
            inside = 0;
        } else if (c == '\\' && i + 3 < n && re[i + 1] == 'p' && re[i + 2] == '{') {
            size_t k;
            for (k = 0; k < sizeof ucat_classes / sizeof ucat_classes[0]; k++) {
                size_t ln = strlen(ucat_classes[k].name);
                if (strncmp(re + i, ucat_classes[k].name, ln) == 0)
                    break;
            }
            if (k < sizeof ucat_classes / sizeof ucat_classes[0]) {
                const char *cls = ucat_classes[k].cls;
                if ((!inside && !bbuf_put(&out, "[", 1)) || !bbuf_put(&out, cls, strlen(cls)) ||
                    (!inside && !bbuf_put(&out, "]", 1)))
                    goto oom;
                i += strlen(ucat_classes[k].name) - 1;
                *uses = 1;
                continue;
            }
        }
        if (!bbuf_put(&out, &c, 1))
            goto oom;
    }
    if (!bbuf_put(&out, "", 1))
        goto oom;
    return out.p;
oom:
    llm__free(out.p);
    return NULL;
}

static llm_status compile_regexes(llm_tokenizer *t, const char *const *list)
{
    for (int i = 0; list[i]; i++) {
        LLM_CHECK(i < MAX_REGEX);
        int collapsed;
        char *pat = collapse_regex(list[i], &collapsed);
        if (!pat)
            return llm__fail(LLM_ERR_NO_MEMORY, "tokenizer: out of memory");
        uint32_t opts = PCRE2_DOLLAR_ENDONLY | (collapsed ? 0 : PCRE2_UTF);
        int err;
        PCRE2_SIZE erroff;
        pcre2_code *code =
            pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &erroff, NULL);
        llm__free(pat);
        if (!code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return llm__fail(LLM_ERR_INTERNAL, "tokenizer: pre-tokenizer regex %d: %s at %zu",
                             i, (const char *)msg, (size_t)erroff);
        }
        /* JIT is optional: without it (or when it fails) the interpreter runs. */
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
        t->regex[i].code = code;
        t->regex[i].collapsed = collapsed;
        t->n_regex = i + 1;
        if (collapsed)
            t->any_collapsed = 1;
        else
            t->any_utf = 1;
    }
    return LLM_OK;
}

/* ---- per-call work space -------------------------------------------------------------- */

typedef struct work {
    ivec out;          /* tokens produced */
    uint32_t *cps;     /* code points of the fragment */
    unsigned char *collapsed;
    bbuf utf;          /* UTF-8 subject for regexes without \p{..} */
    uint32_t *utf_off; /* [n_cp + 1] byte offset of each code point in utf */
    int32_t *byte_cp;  /* [utf.n + 1] code point index of each byte offset */
    size_t cap_cp, cap_bytes;
    ivec chunks, chunks2; /* word lengths in code points */
    pcre2_match_data *md;
    bbuf word;         /* a word, byte-encoded, or an SPM fragment */
    struct sym {
        int32_t prev, next;
        uint32_t start, n;
    } *sym;
    size_t cap_sym;
    struct bigram {
        int32_t left, right;
        float score;  /* SPM */
        int32_t rank; /* BPE */
        uint32_t size;
    } *heap;
    size_t n_heap, cap_heap;
} work;

static void work_free(work *w)
{
    llm__free(w->out.v);
    llm__free(w->cps);
    llm__free(w->collapsed);
    llm__free(w->utf.p);
    llm__free(w->utf_off);
    llm__free(w->byte_cp);
    llm__free(w->chunks.v);
    llm__free(w->chunks2.v);
    if (w->md)
        pcre2_match_data_free(w->md);
    llm__free(w->word.p);
    llm__free(w->sym);
    llm__free(w->heap);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = llm__realloc(*p, c * elem);
    if (!q)
        return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* Heap order: BPE wants the lowest rank, SPM the highest score; both the leftmost pair on
 * ties, as llama.cpp's priority queues do. */
static int bigram_before(int spm, const struct bigram *a, const struct bigram *b)
{
    if (spm) {
        if (a->score != b->score)
            return a->score > b->score;
    } else if (a->rank != b->rank) {
        return a->rank < b->rank;
    }
    return a->left < b->left;
}

static int heap_push(work *w, int spm, struct bigram bg)
{
    if (!grow((void **)&w->heap, &w->cap_heap, w->n_heap + 1, sizeof *w->heap))
        return 0;
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(spm, &bg, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = bg;
    return 1;
}

static struct bigram heap_pop(work *w, int spm)
{
    struct bigram top = w->heap[0];
    struct bigram last = w->heap[--w->n_heap];
    size_t n = w->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bigram_before(spm, &w->heap[c + 1], &w->heap[c]))
            c++;
        if (!bigram_before(spm, &w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

/* Splits word into symbols of one UTF-8 character each (by lead byte, as llama.cpp). */
static int make_symbols(work *w, const char *s, size_t n, size_t *n_sym)
{
    size_t k = 0;
    if (!grow((void **)&w->sym, &w->cap_sym, n + 1, sizeof *w->sym))
        return 0;
    for (size_t off = 0; off < n; k++) {
        size_t len = llm__utf8_len((unsigned char)s[off]);
        if (len > n - off)
            len = n - off;
        w->sym[k].start = (uint32_t)off;
        w->sym[k].n = (uint32_t)len;
        w->sym[k].prev = (int32_t)k - 1;
        off += len;
        w->sym[k].next = off == n ? -1 : (int32_t)k + 1;
    }
    *n_sym = k;
    return 1;
}

/* ---- BPE ---------------------------------------------------------------------------- */

static int bpe_add_bigram(const llm_tokenizer *t, work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 1;
    const struct sym *a = &w->sym[left], *b = &w->sym[right];
    int32_t rank = merge_rank(t, w->word.p + a->start, a->n, w->word.p + b->start, b->n);
    if (rank < 0)
        return 1;
    struct bigram bg = {left, right, 0.0f, rank, a->n + b->n};
    return heap_push(w, 0, bg);
}

/* Merges one byte-encoded word (in w->word) and appends its tokens. */
static int bpe_word(const llm_tokenizer *t, work *w)
{
    const char *s = w->word.p;
    size_t n = w->word.n, n_sym;
    if (n == 0)
        return 1;
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, s, n);
        if (id >= 0)
            return ivec_push(&w->out, id);
    }
    if (!make_symbols(w, s, n, &n_sym))
        return 0;
    w->n_heap = 0;
    for (size_t i = 1; i < n_sym; i++)
        if (!bpe_add_bigram(t, w, (int32_t)i - 1, (int32_t)i))
            return 0;
    while (w->n_heap) {
        struct bigram bg = heap_pop(w, 0);
        struct sym *a = &w->sym[bg.left], *b = &w->sym[bg.right];
        /* Stale when either side has changed since the pair was queued. */
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size || a->next != bg.right)
            continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            w->sym[b->next].prev = bg.left;
        if (!bpe_add_bigram(t, w, a->prev, bg.left) || !bpe_add_bigram(t, w, bg.left, a->next))
            return 0;
    }
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        const struct sym *y = &w->sym[i];
        int32_t id = vocab_find(t, s + y->start, y->n);
        if (id >= 0) {
            if (!ivec_push(&w->out, id))
                return 0;
            continue;
        }
        /* Not a token: llama.cpp looks each byte of the encoded text up on its own. */
        for (uint32_t j = 0; j < y->n; j++) {
            id = vocab_find(t, s + y->start + j, 1);
            if (id >= 0 && !ivec_push(&w->out, id))
                return 0;
        }
    }
    return 1;
}

/* Matches re on the chunk [start, start+len) of the subject and appends the pieces (matches
 * and the stretches between them) to dst as lengths in code points. */
static int split_chunk(work *w, const pre_regex *re, size_t start, size_t len, ivec *dst)
{
    const unsigned char *subj;
    size_t n, base;
    if (re->collapsed) {
        subj = w->collapsed + start;
        n = len;
        base = 0;
    } else {
        base = w->utf_off[start];
        subj = (const unsigned char *)w->utf.p + base;
        n = w->utf_off[start + len] - base;
    }
    size_t pos = 0, prev = 0;
    uint32_t opts = re->collapsed ? 0 : PCRE2_NO_UTF_CHECK;
    while (pos <= n) {
        int rc = pcre2_match(re->code, subj, n, pos, opts, w->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, subj, n, pos, opts | PCRE2_NO_JIT, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            llm__fail(LLM_ERR_INTERNAL, "tokenizer: pre-tokenizer regex failed: %s",
                      (const char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            /* An empty match makes no piece; step over one character. */
            if (ms >= n)
                break;
            pos = ms + 1;
            while (!re->collapsed && pos < n && (subj[pos] & 0xc0) == 0x80)
                pos++;
            continue;
        }
        if (ms > prev) {
            size_t a = re->collapsed ? prev : (size_t)w->byte_cp[base + prev];
            size_t b = re->collapsed ? ms : (size_t)w->byte_cp[base + ms];
            if (!ivec_push(dst, (int32_t)(b - a)))
                return 0;
        }
        size_t a = re->collapsed ? ms : (size_t)w->byte_cp[base + ms];
        size_t b = re->collapsed ? me : (size_t)w->byte_cp[base + me];
        if (!ivec_push(dst, (int32_t)(b - a)))
            return 0;
        prev = pos = me;
    }
    if (prev < n) {
        size_t a = re->collapsed ? prev : (size_t)w->byte_cp[base + prev];
        size_t b = re->collapsed ? n : (size_t)w->byte_cp[base + n];
        if (!ivec_push(dst, (int32_t)(b - a)))
            return 0;
    }
    return 1;
}

/* Tokenizes one fragment of raw text with byte-level BPE. Returns 1, 0 on allocation
 * failure, -1 on another error (message set). */
static int bpe_fragment(const llm_tokenizer *t, work *w, const char *text, size_t len)
{
    /* Decode. */
    if (!grow((void **)&w->cps, &w->cap_cp, len + 1, sizeof *w->cps))
        return 0;
    size_t n_cp = 0;
    for (size_t pos = 0; pos < len;)
        w->cps[n_cp++] = llm__utf8_decode(text, len, &pos);

    /* The subjects the regexes run on. */
    if (t->any_collapsed) {
        llm__free(w->collapsed);
        w->collapsed = llm__malloc(n_cp + 1);
        if (!w->collapsed)
            return 0;
        for (size_t i = 0; i < n_cp; i++)
            w->collapsed[i] = collapse_cp(w->cps[i]);
    }
    if (t->any_utf) {
        w->utf.n = 0;
        llm__free(w->utf_off);
        w->utf_off = llm__malloc((n_cp + 1) * sizeof *w->utf_off);
        if (!w->utf_off || !bbuf_reserve(&w->utf, 4 * n_cp + 1))
            return 0;
        for (size_t i = 0; i < n_cp; i++) {
            uint32_t cp = w->cps[i];
            if (cp > 0x7f && llm__is_space(cp))
                cp = 0x0b; /* llama.cpp: std::wregex's \s misses non-ASCII spaces */
            else if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd; /* keep the subject valid UTF-8 for PCRE2 */
            w->utf_off[i] = (uint32_t)w->utf.n;
            w->utf.n += llm__utf8_encode(cp, w->utf.p + w->utf.n);
        }
        w->utf_off[n_cp] = (uint32_t)w->utf.n;
        llm__free(w->byte_cp);
        w->byte_cp = llm__malloc((w->utf.n + 1) * sizeof *w->byte_cp);
        if (!w->byte_cp)
            return 0;
        for (size_t i = 0; i <= n_cp; i++)
            w->byte_cp[w->utf_off[i]] = (int32_t)i;
    }

    /* Split: each regex refines the pieces of the one before. */
    w->chunks.n = 0;
    if (!ivec_push(&w->chunks, (int32_t)n_cp))
        return 0;
    for (int r = 0; r < t->n_regex; r++) {
        size_t start = 0;
        w->chunks2.n = 0;
        for (size_t c = 0; c < w->chunks.n; c++) {
            size_t clen = (size_t)w->chunks.v[c];
            int rc = split_chunk(w, &t->regex[r], start, clen, &w->chunks2);
            if (rc <= 0)
                return rc;
            start += clen;
        }
        ivec tmp = w->chunks;
        w->chunks = w->chunks2;
        w->chunks2 = tmp;
    }

    /* Encode and merge each word. */
    size_t start = 0;
    for (size_t c = 0; c < w->chunks.n; c++) {
        size_t clen = (size_t)w->chunks.v[c];
        w->word.n = 0;
        if (!bbuf_reserve(&w->word, clen * 8))
            return 0;
        for (size_t i = start; i < start + clen; i++) {
            char u[4];
            size_t nu = llm__utf8_encode(w->cps[i], u);
            for (size_t k = 0; k < nu; k++)
                w->word.n += llm__utf8_encode(llm__gpt2_byte_to_cp((unsigned char)u[k]),
                                              w->word.p + w->word.n);
        }
        if (!bpe_word(t, w))
            return 0;
        start += clen;
    }
    return 1;
}

/* ---- SentencePiece -------------------------------------------------------------------- */

static int spm_add_bigram(const llm_tokenizer *t, work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 1;
    const struct sym *a = &w->sym[left], *b = &w->sym[right];
    uint32_t size = a->n + b->n;
    int32_t id = vocab_find(t, w->word.p + a->start, size);
    if (id < 0)
        return 1;
    struct bigram bg = {left, right, t->scores[id], 0, size};
    return heap_push(w, 1, bg);
}

/* Tokenizes the escaped fragment in w->word. */
static int spm_fragment(const llm_tokenizer *t, work *w)
{
    const char *s = w->word.p;
    size_t n_sym;
    if (w->word.n == 0)
        return 1;
    if (!make_symbols(w, s, w->word.n, &n_sym))
        return 0;
    w->n_heap = 0;
    for (size_t i = 1; i < n_sym; i++)
        if (!spm_add_bigram(t, w, (int32_t)i - 1, (int32_t)i))
            return 0;
    while (w->n_heap) {
        struct bigram bg = heap_pop(w, 1);
        struct sym *a = &w->sym[bg.left], *b = &w->sym[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size)
            continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            w->sym[b->next].prev = bg.left;
        if (!spm_add_bigram(t, w, a->prev, bg.left) || !spm_add_bigram(t, w, bg.left, a->next))
            return 0;
    }
    /* Every merge made a vocabulary entry, so a symbol that is not one is a single
     * character missing from the vocabulary: its bytes become byte tokens. */
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        const struct sym *y = &w->sym[i];
        int32_t id = vocab_find(t, s + y->start, y->n);
        if (id >= 0) {
            if (!ivec_push(&w->out, id))
                return 0;
            continue;
        }
        for (uint32_t j = 0; j < y->n; j++) {
            id = t->byte_tok[(unsigned char)s[y->start + j]];
            if (id < 0)
                id = t->unk;
            if (id >= 0 && !ivec_push(&w->out, id))
                return 0;
        }
    }
    return 1;
}

/* ---- special tokens ------------------------------------------------------------------- */

/* Finds where special tokens cut the text (see the file comment). Returns an array of
 * len+1 entries: at the start of each accepted occurrence, its index in t->special plus 1;
 * -1 inside an occurrence; 0 in plain text. NULL when nothing matched (*err = 0) or on
 * allocation failure (*err = 1). */
static int32_t *find_specials(const llm_tokenizer *t, const char *text, size_t len,
                              int parse_special, int *err)
{
    int32_t *start = NULL, *pos = NULL, *mark = NULL;
    *err = 0;
    if (t->n_special == 0 || len == 0)
        return NULL;
    /* Two walks of the trie over the text: the first counts the occurrences of each
     * special token, the second files their positions by token priority (a counting
     * sort), in increasing position order within each token. */
    start = llm__calloc((size_t)t->n_special + 1, sizeof *start);
    if (!start)
        goto oom;
    size_t n_cand = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t p = 0; p < len; p++) {
            int32_t node = t->root[(unsigned char)text[p]];
            size_t q = p + 1;
            while (node >= 0) {
                int32_t sp = t->trie[node].special;
                if (sp >= 0 && (parse_special ||
                                !(t->attr[t->special[sp]] & (ATTR_CONTROL | ATTR_UNKNOWN)))) {
                    if (pass == 0)
                        start[sp + 1]++;
                    else
                        pos[start[sp]++] = (int32_t)p;
                }
                if (q >= len)
                    break;
                unsigned char c = (unsigned char)text[q++];
                for (node = t->trie[node].child; node >= 0 && t->trie[node].byte != c;
                     node = t->trie[node].sibling) {
                }
            }
        }
        if (pass == 0) {
            for (int32_t sp = 0; sp < t->n_special; sp++)
                start[sp + 1] += start[sp];
            n_cand = (size_t)start[t->n_special];
            if (n_cand == 0) {
                llm__free(start);
                return NULL;
            }
            pos = llm__malloc(n_cand * sizeof *pos);
            if (!pos)
                goto oom;
        }
    }
    /* After the second pass start[sp] is where token sp's positions end, and start[sp - 1]
     * where they begin. Accept each occurrence that overlaps none accepted before it. */
    mark = llm__calloc(len + 1, sizeof *mark);
    if (!mark)
        goto oom;
    int any = 0;
    for (int32_t sp = 0; sp < t->n_special; sp++) {
        size_t n = t->text_len[t->special[sp]];
        for (int32_t k = sp ? start[sp - 1] : 0; k < start[sp]; k++) {
            size_t p = (size_t)pos[k], j;
            for (j = 0; j < n && mark[p + j] == 0; j++) {
            }
            if (j < n)
                continue;
            mark[p] = sp + 1;
            for (j = 1; j < n; j++)
                mark[p + j] = -1;
            any = 1;
        }
    }
    llm__free(start);
    llm__free(pos);
    if (!any) {
        llm__free(mark);
        return NULL;
    }
    return mark;
oom:
    llm__free(start);
    llm__free(pos);
    llm__free(mark);
    *err = 1;
    return NULL;
}

/* Tokenizes one stretch of raw text (no special tokens in it). */
static int raw_fragment(const llm_tokenizer *t, work *w, const char *s, size_t n, int prev_special)
{
    if (t->type == TOK_BPE)
        return bpe_fragment(t, w, s, n);
    /* SPM: escape spaces as U+2581, with the optional leading one. */
    w->word.n = 0;
    if (!bbuf_reserve(&w->word, 3 * n + 3))
        return 0;
    if (t->add_space_prefix && prev_special) {
        memcpy(w->word.p, "\xe2\x96\x81", 3);
        w->word.n = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->word.p + w->word.n, "\xe2\x96\x81", 3);
            w->word.n += 3;
        } else {
            w->word.p[w->word.n++] = s[i];
        }
    }
    return spm_fragment(t, w);
}

/* ---- public entry points -------------------------------------------------------------- */

int32_t llm__tokenize(const llm_tokenizer *t, const char *text, size_t len, llm_token *out,
                      int32_t cap, uint32_t flags)
{
    if (!t || (!text && len > 0) || cap < 0 || (!out && cap > 0)) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_tokenize: invalid argument");
        return INT32_MIN;
    }
    if (len > (size_t)INT32_MAX) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_tokenize: text of %zu bytes is too long", len);
        return INT32_MIN;
    }
    work w = {0};
    int32_t *mark = NULL;
    int rc = 1, err;
    if (flags & LLM_TOKENIZE_ADD_SPECIAL && t->add_bos && t->bos >= 0)
        rc = ivec_push(&w.out, t->bos);
    if (rc && t->type == TOK_BPE && t->any_collapsed + t->any_utf) {
        w.md = pcre2_match_data_create(16, NULL);
        rc = w.md != NULL;
    }
    if (rc) {
        mark = find_specials(t, text, len, (flags & LLM_TOKENIZE_PARSE_SPECIAL) != 0, &err);
        rc = !err;
    }
    /* Walk the text: plain stretches between the accepted special tokens. */
    int prev_special = 1;
    for (size_t p = 0; rc > 0 && p < len;) {
        if (mark && mark[p] > 0) {
            int32_t id = t->special[mark[p] - 1];
            rc = ivec_push(&w.out, id);
            p += t->text_len[id];
            prev_special = 1;
            continue;
        }
        size_t q = p + 1;
        while (q < len && !(mark && mark[q] > 0))
            q++;
        rc = raw_fragment(t, &w, text + p, q - p, prev_special);
        prev_special = 0;
        p = q;
    }
    if (rc > 0 && flags & LLM_TOKENIZE_ADD_SPECIAL && t->add_eos && t->eos >= 0)
        rc = ivec_push(&w.out, t->eos);
    llm__free(mark);

    int32_t result;
    if (rc == 0) {
        llm__fail(LLM_ERR_NO_MEMORY, "llm_tokenize: out of memory");
        result = INT32_MIN;
    } else if (rc < 0) {
        result = INT32_MIN;
    } else if (w.out.n > (size_t)INT32_MAX) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_tokenize: more than INT32_MAX tokens");
        result = INT32_MIN;
    } else if (w.out.n > (size_t)cap) {
        result = -(int32_t)w.out.n;
    } else {
        if (w.out.n)
            memcpy(out, w.out.v, w.out.n * sizeof *out);
        result = (int32_t)w.out.n;
    }
    work_free(&w);
    return result;
}

/* Output of a piece: bytes go to buf while they fit, and all are counted. */
typedef struct sink {
    char *buf;
    size_t cap, n;
    int lstrip; /* drop one leading space (llama.cpp's detokenize, first token) */
} sink;

static void emit(sink *o, const char *p, size_t n)
{
    if (o->lstrip && n && p[0] == ' ') {
        p++;
        n--;
    }
    o->lstrip = 0;
    for (size_t i = 0; i < n; i++, o->n++)
        if (o->n < o->cap)
            o->buf[o->n] = p[i];
}

/* Writes the piece of token id into buf (up to cap bytes); returns its full length. */
static int32_t piece(const llm_tokenizer *t, llm_token id, char *buf, int32_t cap,
                     uint32_t flags, int lstrip)
{
    uint8_t a = t->attr[id];
    const char *s = tok_text(t, id);
    size_t n = t->text_len[id];
    sink o = {buf, (size_t)cap, 0, lstrip};
    char byte;

    if (!(flags & LLM_DETOKENIZE_RENDER_SPECIAL) && (a & (ATTR_UNKNOWN | ATTR_CONTROL)))
        return 0;
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
        emit(&o, s, n);
    } else if (a & ATTR_NORMAL) {
        if (t->type == TOK_SPM) {
            for (size_t i = 0; i < n;) {
                if (n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    emit(&o, " ", 1);
                    i += 3;
                } else {
                    emit(&o, s + i, 1);
                    i++;
                }
            }
        } else {
            /* Undo GPT-2's byte mapping; a code point outside it is kept as it is. */
            for (size_t i = 0; i < n;) {
                size_t start = i;
                int b = llm__gpt2_cp_to_byte(llm__utf8_decode(s, n, &i));
                if (b >= 0) {
                    byte = (char)b;
                    emit(&o, &byte, 1);
                } else {
                    emit(&o, s + start, i - start);
                }
            }
        }
    } else if (a & ATTR_BYTE) {
        if (n == 6 && memcmp(s, "<0x", 3) == 0) { /* "<0xXX>" */
            byte = (char)strtol(s + 3, NULL, 16);
            emit(&o, &byte, 1);
        }
    }
    return (int32_t)o.n;
}

int32_t llm__token_to_piece(const llm_tokenizer *t, llm_token id, char *buf, int32_t cap,
                            uint32_t flags)
{
    if (!t || id < 0 || id >= t->n_vocab || cap < 0 || (!buf && cap > 0)) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_token_to_piece: invalid token %d or buffer",
                  (int)id);
        return INT32_MIN;
    }
    int32_t n = piece(t, id, buf, cap, flags, 0);
    return n <= cap ? n : -n;
}

int32_t llm__detokenize(const llm_tokenizer *t, const llm_token *ids, int32_t n, char *buf,
                        int32_t cap, uint32_t flags)
{
    if (!t || n < 0 || (!ids && n > 0) || cap < 0 || (!buf && cap > 0)) {
        llm__fail(LLM_ERR_INVALID_ARG, "llm_detokenize: invalid argument");
        return INT32_MIN;
    }
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            llm__fail(LLM_ERR_INVALID_ARG, "llm_detokenize: invalid token %d at %d",
                      (int)ids[i], (int)i);
            return INT32_MIN;
        }
        /* llama.cpp drops the space that add_space_prefix put before the first word. */
        size_t room = total < (size_t)cap ? (size_t)cap - total : 0;
        int32_t k = piece(t, ids[i], buf ? buf + (total < (size_t)cap ? total : 0) : NULL,
                          (int32_t)room, flags, i == 0 && t->add_space_prefix);
        total += (size_t)k;
        if (total > (size_t)INT32_MAX) {
            llm__fail(LLM_ERR_INVALID_ARG, "llm_detokenize: text longer than INT32_MAX");
            return INT32_MIN;
        }
    }
    if (total > (size_t)cap)
        return -(int32_t)total;
    if (total < (size_t)cap)
        buf[total] = '\0';
    return (int32_t)total;
}

int32_t llm__tokenizer_n_vocab(const llm_tokenizer *t)
{
    return t ? t->n_vocab : 0;
}

llm_token llm__tokenizer_special(const llm_tokenizer *t, int which)
{
    if (!t)
        return -1;
    switch (which) {
    case LLM_TOKEN_BOS: return t->bos;
    case LLM_TOKEN_EOS: return t->eos;
    case LLM_TOKEN_EOT: return t->eot;
    case LLM_TOKEN_UNK: return t->unk;
    case LLM_TOKEN_PAD: return t->pad;
    }
    return -1;
}

int llm__tokenizer_is_eog(const llm_tokenizer *t, llm_token id)
{
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}

const char *llm__tokenizer_text(const llm_tokenizer *t, llm_token id)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return NULL;
    return tok_text(t, id);
}

/* ---- construction --------------------------------------------------------------------- */

void llm__tokenizer_free(llm_tokenizer *t)
{
    if (!t)
        return;
    llm__free(t->blob);
    llm__free(t->text_off);
    llm__free(t->text_len);
    llm__free(t->scores);
    llm__free(t->attr);
    llm__free(t->eog);
    llm__free(t->vocab_ht);
    llm__free(t->merge_blob);
    llm__free(t->merge_off);
    llm__free(t->merge_first);
    llm__free(t->merge_second);
    llm__free(t->merge_ht);
    llm__free(t->special);
    llm__free(t->trie);
    for (int i = 0; i < t->n_regex; i++)
        pcre2_code_free(t->regex[i].code);
    llm__free(t);
}

/* The array under key with elements of one of the given types, or NULL when absent.
 * *st is set to an error when the key exists with another shape. */
static const llm_gguf_kv *find_array(const llm_gguf *g, const char *key, uint32_t type1,
                                     uint32_t type2, llm_status *st)
{
    const llm_gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv)
        return NULL;
    if (kv->type != LLM_GGUF_ARRAY || (kv->v.arr.type != type1 && kv->v.arr.type != type2)) {
        *st = llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: '%s' has the wrong type", key);
        return NULL;
    }
    return kv;
}

static llm_status load_vocab(llm_tokenizer *t, const llm_gguf *g)
{
    llm_status st = LLM_OK;
    const llm_gguf_kv *tokens =
        find_array(g, "tokenizer.ggml.tokens", LLM_GGUF_STRING, LLM_GGUF_STRING, &st);
    if (st)
        return st;
    if (!tokens)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: no tokenizer.ggml.tokens");
    uint64_t n = tokens->v.arr.n;
    if (n == 0 || n > (uint64_t)INT32_MAX)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: %llu tokens",
                         (unsigned long long)n);
    const llm_gguf_kv *scores = find_array(g, "tokenizer.ggml.scores", LLM_GGUF_FLOAT32,
                                           LLM_GGUF_INT32, &st);
    if (st)
        return st;
    const llm_gguf_kv *types =
        find_array(g, "tokenizer.ggml.token_type", LLM_GGUF_INT32, LLM_GGUF_INT32, &st);
    if (st)
        return st;
    if (scores && scores->v.arr.n < n)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: %llu scores for %llu tokens",
                         (unsigned long long)scores->v.arr.n, (unsigned long long)n);
    if (types && types->v.arr.n < n)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: %llu token types for %llu tokens",
                         (unsigned long long)types->v.arr.n, (unsigned long long)n);

    t->n_vocab = (int32_t)n;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = tokens->v.arr.strs[i].len;
        if (len > UINT32_MAX - 1)
            return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: token %llu is too long",
                             (unsigned long long)i);
        total += (len ? len : 24) + 1;
    }
    t->blob = llm__malloc(total);
    t->text_off = llm__malloc(n * sizeof *t->text_off);
    t->text_len = llm__malloc(n * sizeof *t->text_len);
    t->scores = llm__calloc(n, sizeof *t->scores);
    t->attr = llm__malloc(n);
    t->eog = llm__calloc(n, 1);
    size_t ht = ht_size_for(n);
    t->vocab_ht = llm__malloc(ht * sizeof *t->vocab_ht);
    if (!t->blob || !t->text_off || !t->text_len || !t->scores || !t->attr || !t->eog ||
        !t->vocab_ht)
        return llm__fail(LLM_ERR_NO_MEMORY, "tokenizer: out of memory");
    t->vocab_mask = ht - 1;
    memset(t->vocab_ht, 0xff, ht * sizeof *t->vocab_ht);

    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const llm_gguf_str *s = &tokens->v.arr.strs[i];
        t->text_off[i] = off;
        if (s->len == 0) {
            /* llama.cpp names empty entries so that they stay distinct. */
            llm__warn("tokenizer: empty token at index %llu", (unsigned long long)i);
            int k = snprintf(t->blob + off, 24, "[EMPTY_%llu]", (unsigned long long)i);
            t->text_len[i] = (uint32_t)k;
        } else {
            memcpy(t->blob + off, s->ptr, s->len);
            t->text_len[i] = (uint32_t)s->len;
        }
        off += t->text_len[i];
        t->blob[off++] = '\0';

        if (scores) {
            const unsigned char *p = (const unsigned char *)scores->v.arr.data + 4 * i;
            if (scores->v.arr.type == LLM_GGUF_FLOAT32) {
                memcpy(&t->scores[i], p, 4);
            } else {
                int32_t v;
                memcpy(&v, p, 4);
                t->scores[i] = (float)v;
            }
        }
        int32_t type = 1;
        if (types)
            memcpy(&type, (const unsigned char *)types->v.arr.data + 4 * i, 4);
        switch (type) {
        case 1: t->attr[i] = ATTR_NORMAL; break;
        case 2: t->attr[i] = ATTR_UNKNOWN; break;
        case 3: t->attr[i] = ATTR_CONTROL; break;
        case 4: t->attr[i] = ATTR_USER_DEFINED; break;
        case 5: t->attr[i] = ATTR_UNUSED; break;
        case 6: t->attr[i] = ATTR_BYTE; break;
        default: t->attr[i] = 0; break;
        }

        /* text -> id; a later duplicate replaces an earlier one, as in llama.cpp. */
        const char *txt = t->blob + t->text_off[i];
        size_t j = ht_slot(fnv(FNV_INIT, txt, t->text_len[i]), t->vocab_mask);
        for (;;) {
            int32_t id = t->vocab_ht[j];
            if (id < 0 || (t->text_len[id] == t->text_len[i] &&
                           memcmp(tok_text(t, id), txt, t->text_len[i]) == 0)) {
                t->vocab_ht[j] = (int32_t)i;
                break;
            }
            j = (j + 1) & t->vocab_mask;
        }
    }
    return LLM_OK;
}

static llm_status load_merges(llm_tokenizer *t, const llm_gguf *g)
{
    llm_status st = LLM_OK;
    const llm_gguf_kv *kv =
        find_array(g, "tokenizer.ggml.merges", LLM_GGUF_STRING, LLM_GGUF_STRING, &st);
    if (st)
        return st;
    if (!kv)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: BPE vocabulary without merges");
    uint64_t n = kv->v.arr.n;
    if (n > (uint64_t)INT32_MAX)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: too many merges");
    t->n_merges = (int32_t)n;
    size_t total = 1;
    for (uint64_t i = 0; i < n; i++) {
        if (kv->v.arr.strs[i].len > UINT32_MAX / 2)
            return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: merge %llu is too long",
                             (unsigned long long)i);
        total += kv->v.arr.strs[i].len + 1;
    }
    size_t ht = ht_size_for(n);
    t->merge_blob = llm__malloc(total);
    t->merge_off = llm__malloc((n ? n : 1) * sizeof *t->merge_off);
    t->merge_first = llm__malloc((n ? n : 1) * sizeof *t->merge_first);
    t->merge_second = llm__malloc((n ? n : 1) * sizeof *t->merge_second);
    t->merge_ht = llm__malloc(ht * sizeof *t->merge_ht);
    if (!t->merge_blob || !t->merge_off || !t->merge_first || !t->merge_second || !t->merge_ht)
        return llm__fail(LLM_ERR_NO_MEMORY, "tokenizer: out of memory");
    t->merge_mask = ht - 1;
    memset(t->merge_ht, 0xff, ht * sizeof *t->merge_ht);
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const llm_gguf_str *s = &kv->v.arr.strs[i];
        memcpy(t->merge_blob + off, s->ptr, s->len);
        t->merge_blob[off + s->len] = '\0';
        t->merge_off[i] = off;
        /* Split at the first space after the first byte; without one, llama.cpp keys the
         * merge as ("", ""). */
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', s->len - 1) : NULL;
        uint32_t nf = 0, ns = 0;
        if (sp) {
            nf = (uint32_t)(sp - s->ptr);
            ns = (uint32_t)(s->len - nf - 1);
        } else {
            t->merge_blob[off] = ' '; /* first "" then the separator, second "" */
        }
        t->merge_first[i] = nf;
        t->merge_second[i] = ns;
        off += s->len + 1;

        const char *m = t->merge_blob + t->merge_off[i];
        size_t j = ht_slot(merge_hash(m, nf, m + nf + 1, ns), t->merge_mask);
        for (;;) {
            int32_t r = t->merge_ht[j];
            if (r < 0) {
                t->merge_ht[j] = (int32_t)i;
                break;
            }
            const char *o = t->merge_blob + t->merge_off[r];
            if (t->merge_first[r] == nf && t->merge_second[r] == ns && memcmp(o, m, nf) == 0 &&
                memcmp(o + nf + 1, m + nf + 1, ns) == 0)
                break; /* the first rank of a repeated merge stays */
            j = (j + 1) & t->merge_mask;
        }
    }
    return LLM_OK;
}

static int32_t find_text(const llm_tokenizer *t, const char *s)
{
    return vocab_find(t, s, strlen(s));
}

/* The first of these texts (in list order) present in the vocabulary, or -1. */
static int32_t find_first(const llm_tokenizer *t, const char *const *texts)
{
    for (int i = 0; texts[i]; i++) {
        int32_t id = find_text(t, texts[i]);
        if (id >= 0)
            return id;
    }
    return -1;
}

static void mark_control(llm_tokenizer *t, int32_t id)
{
    if (id >= 0)
        t->attr[id] |= ATTR_CONTROL;
}

/* Reads an optional token id key into *id; out-of-range values are ignored with a warning,
 * as llama.cpp does. */
static llm_status read_id(llm_tokenizer *t, const llm_gguf *g, const char *key, llm_token *id)
{
    uint32_t v;
    int rc = llm__gguf_get_u32(g, key, &v);
    if (rc < 0)
        llm__warn("tokenizer: ignoring %s: %s", key, llm_last_error());
    if (rc <= 0)
        return LLM_OK;
    if (v >= (uint32_t)t->n_vocab)
        llm__warn("tokenizer: %s = %u is out of range; using %d", key, v, (int)*id);
    else
        *id = (llm_token)v;
    return LLM_OK;
}

static llm_status read_flag(const llm_gguf *g, const char *key, int *flag)
{
    if (llm__gguf_get_bool(g, key, flag) < 0)
        llm__warn("tokenizer: ignoring %s: %s", key, llm_last_error());
    return LLM_OK;
}

/* Special ids, flags, end-of-generation set and the special-token matcher. */
static llm_status setup_specials(llm_tokenizer *t, const llm_gguf *g, int pre_flags)
{
    llm_token eom = -1, sep = -1, mask = -1;
    llm_token fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    llm_status st;

    /* Defaults of llama.cpp for the vocabulary type. */
    t->eot = t->pad = -1;
    if (t->type == TOK_SPM) {
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_bos = 1;
        t->add_space_prefix = 1;
    } else {
        t->bos = pre_flags & PRE_NO_BOS ? -1 : 11;
        t->eos = 11;
        t->unk = -1;
        t->add_bos = (pre_flags & PRE_ADD_BOS) != 0;
        t->add_space_prefix = 0;
    }
    t->add_eos = 0;
    if (t->bos >= t->n_vocab)
        t->bos = -1;
    if (t->eos >= t->n_vocab)
        t->eos = -1;
    if (t->unk >= t->n_vocab)
        t->unk = -1;

    static const struct {
        const char *key;
        size_t field;
    } keys[] = {
        {"tokenizer.ggml.bos_token_id", 0},       {"tokenizer.ggml.eos_token_id", 1},
        {"tokenizer.ggml.eot_token_id", 2},       {"tokenizer.ggml.eom_token_id", 3},
        {"tokenizer.ggml.unknown_token_id", 4},   {"tokenizer.ggml.seperator_token_id", 5},
        {"tokenizer.ggml.padding_token_id", 6},   {"tokenizer.ggml.mask_token_id", 7},
        {"tokenizer.ggml.fim_pre_token_id", 8},   {"tokenizer.ggml.fim_suf_token_id", 9},
        {"tokenizer.ggml.fim_mid_token_id", 10},  {"tokenizer.ggml.fim_pad_token_id", 11},
        {"tokenizer.ggml.fim_rep_token_id", 12},  {"tokenizer.ggml.fim_sep_token_id", 13},
        {"tokenizer.ggml.prefix_token_id", 8},    {"tokenizer.ggml.suffix_token_id", 9},
        {"tokenizer.ggml.middle_token_id", 10},
    };
    llm_token *fields[] = {&t->bos, &t->eos, &t->eot, &eom, &t->unk, &sep, &t->pad, &mask,
                           &fim_pre, &fim_suf, &fim_mid, &fim_pad, &fim_rep, &fim_sep};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if ((st = read_id(t, g, keys[i].key, fields[keys[i].field])) != LLM_OK)
            return st;
    if ((st = read_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
        (st = read_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos)) ||
        (st = read_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)))
        return st;

    /* llama.cpp recognises these by their text when the metadata does not name them, and
     * makes them control tokens. */
    static const char *const eot_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
        "<end_of_utterance>", NULL};
    static const char *const eom_texts[] = {"<|eom_id|>", NULL};
    static const char *const fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                                "[PAD]", NULL};
    static const char *const fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                "<REPO>", "<reponame>", NULL};
    static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};
    static const char *const fim_other_texts[] = {
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xe2\x96\x81<PRE>",
        "<|code_prefix|>", "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
        "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", "<|fim_middle|>",
        "<fim-middle>", "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>",
        "<|middle|>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
        "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
        NULL};
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>",
        "<|tool_response>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
        "[e~[", NULL};
    if (t->eot < 0) {
        t->eot = find_first(t, eot_texts);
        mark_control(t, t->eot);
    }
    if (eom < 0) {
        eom = find_first(t, eom_texts);
        mark_control(t, eom);
    }
    if (fim_pad < 0) {
        fim_pad = find_first(t, fim_pad_texts);
        mark_control(t, fim_pad);
    }
    if (fim_rep < 0) {
        fim_rep = find_first(t, fim_rep_texts);
        mark_control(t, fim_rep);
    }
    if (fim_sep < 0) {
        fim_sep = find_first(t, fim_sep_texts);
        mark_control(t, fim_sep);
    }
    if (fim_pre < 0 || fim_suf < 0 || fim_mid < 0) {
        /* Only their control type matters here. */
        for (int i = 0; fim_other_texts[i]; i++)
            mark_control(t, find_text(t, fim_other_texts[i]));
    }

    llm_token eog_ids[] = {fim_pad, fim_rep, fim_sep, t->eos, t->eot, eom};
    for (size_t i = 0; i < sizeof eog_ids / sizeof eog_ids[0]; i++)
        if (eog_ids[i] >= 0)
            t->eog[eog_ids[i]] = 1;
    for (int i = 0; eog_texts[i]; i++) {
        int32_t id = find_text(t, eog_texts[i]);
        if (id >= 0) {
            t->eog[id] = 1;
            mark_control(t, id);
        }
    }
    /* gpt-oss: these are rendered like user-defined tokens. */
    static const char *const harmony[] = {"<|channel|>", "<|message|>", "<|start|>",
                                          "<|constrain|>", NULL};
    for (int i = 0; harmony[i]; i++) {
        int32_t id = find_text(t, harmony[i]);
        if (id >= 0)
            t->attr[id] = ATTR_USER_DEFINED;
    }
    /* o200k_harmony and solar-open: "<|end|>" ends a message, not generation, when the
     * vocabulary also has "<|return|>"/"<|call|>" or "<|calls|>"/"<|flush|>". */
    int32_t end = find_text(t, "<|end|>");
    if (end >= 0 && t->eog[end]) {
        int ret = find_text(t, "<|return|>") >= 0;
        int call = find_text(t, "<|call|>") >= 0 || find_text(t, "<|calls|>") >= 0;
        int flush = find_text(t, "<|flush|>") >= 0;
        if ((ret && call) || (call && flush)) {
            t->eog[end] = 0;
            t->attr[end] = ATTR_USER_DEFINED;
        }
    }
    /* gemma4 and plamo: "</s>" is an ordinary token there. */
    int32_t s_end = find_text(t, "</s>");
    if (s_end >= 0 && t->eog[s_end]) {
        int32_t a = find_text(t, "<|tool_response>"), b = find_text(t, "<|plamo:eos|>");
        if ((a >= 0 && t->eog[a]) || (b >= 0 && t->eog[b])) {
            t->eog[s_end] = 0;
            t->attr[s_end] = ATTR_NORMAL;
        }
    }

    /* SPM byte fallback: "<0xXX>", else the byte itself as a token. */
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = find_text(t, hex);
        if (id < 0) {
            char one = (char)b;
            id = vocab_find(t, &one, 1);
        }
        t->byte_tok[b] = id;
    }
    return LLM_OK;
}

static int special_cmp(const void *pa, const void *pb, void *ctx)
{
    const llm_tokenizer *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (t->text_len[a] != t->text_len[b])
        return t->text_len[a] > t->text_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* The priority list and trie of special tokens. */
static llm_status build_specials(llm_tokenizer *t)
{
    int32_t n = 0;
    size_t n_nodes = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) {
            n++;
            n_nodes += t->text_len[i];
        }
    for (int b = 0; b < 256; b++)
        t->root[b] = -1;
    if (n == 0)
        return LLM_OK;
    t->special = llm__malloc((size_t)n * sizeof *t->special);
    t->trie = llm__malloc(n_nodes * sizeof *t->trie);
    if (!t->special || !t->trie)
        return llm__fail(LLM_ERR_NO_MEMORY, "tokenizer: out of memory");
    n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
            t->special[n++] = i;
    qsort_r(t->special, (size_t)n, sizeof *t->special, special_cmp, t);
    t->n_special = n;

    int32_t used = 0;
    for (int32_t s = 0; s < n; s++) {
        const unsigned char *txt = (const unsigned char *)tok_text(t, t->special[s]);
        uint32_t len = t->text_len[t->special[s]];
        int32_t *link = &t->root[txt[0]];
        int32_t node = -1;
        for (uint32_t k = 0; k < len; k++) {
            int32_t c = *link;
            while (c >= 0 && t->trie[c].byte != txt[k])
                c = t->trie[c].sibling;
            if (c < 0) {
                c = used++;
                t->trie[c].child = -1;
                t->trie[c].special = -1;
                t->trie[c].byte = txt[k];
                t->trie[c].sibling = k == 0 ? -1 : *link;
                *link = c;
            }
            node = c;
            link = &t->trie[c].child;
        }
        /* A repeated text keeps its first (higher priority) token, which is also the only
         * one llama.cpp could ever cut. */
        if (t->trie[node].special < 0)
            t->trie[node].special = s;
    }
    return LLM_OK;
}

llm_status llm__tokenizer_create(const llm_gguf *g, llm_tokenizer **out)
{
    const char *model = NULL, *pre = NULL;
    llm_status st;
    if (!g || !out)
        return llm__fail(LLM_ERR_INVALID_ARG, "tokenizer: invalid argument");
    *out = NULL;
    int rc = llm__gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc < 0)
        return LLM_ERR_INVALID_MODEL;
    if (rc == 0)
        return llm__fail(LLM_ERR_INVALID_MODEL, "tokenizer: no tokenizer.ggml.model");
    if (llm__gguf_get_str(g, "tokenizer.ggml.pre", &pre) < 0)
        return LLM_ERR_INVALID_MODEL;

    llm_tokenizer *t = llm__calloc(1, sizeof *t);
    if (!t)
        return llm__fail(LLM_ERR_NO_MEMORY, "tokenizer: out of memory");
    int pre_flags = 0;
    if (strcmp(model, "gpt2") == 0) {
        t->type = TOK_BPE;
        const pre_def *def = NULL;
        for (size_t i = 0; pre && i < sizeof pre_defs / sizeof pre_defs[0]; i++)
            if (strcmp(pre, pre_defs[i].name) == 0)
                def = &pre_defs[i];
        if (!def) {
            llm__warn("tokenizer: %s pre-tokenizer '%s'; using the default one: the tokens "
                      "may differ from the model's own tokenizer",
                      pre ? "unknown" : "no", pre ? pre : "");
            def = &pre_defs[0];
        }
        pre_flags = def->flags;
        t->ignore_merges = (def->flags & PRE_IGNORE_MERGES) != 0;
        if ((st = compile_regexes(t, def->regex)) != LLM_OK)
            goto fail;
    } else if (strcmp(model, "llama") == 0) {
        t->type = TOK_SPM;
    } else {
        st = llm__fail(LLM_ERR_UNSUPPORTED, "tokenizer: unsupported tokenizer model '%s'",
                       model);
        goto fail;
    }
    if ((st = load_vocab(t, g)) != LLM_OK)
        goto fail;
    if (t->type == TOK_BPE && (st = load_merges(t, g)) != LLM_OK)
        goto fail;
    if ((st = setup_specials(t, g, pre_flags)) != LLM_OK)
        goto fail;
    if ((st = build_specials(t)) != LLM_OK)
        goto fail;
    *out = t;
    return LLM_OK;
fail:
    llm__tokenizer_free(t);
    return st;
}
