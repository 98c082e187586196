/* test_tokenize.c - the tokenizers of the real models against llama.cpp's ids.
 *
 * tests/data/tokenize_golden_<model>.bin (written by tests/model/gen_tokenize_goldens.py)
 * holds every string of tests/data/tokenize_corpus.json with the ids that llama.cpp gives
 * (plain, with special tokens parsed, and with BOS/EOS added) and, where they loaded, other
 * references (Hugging Face, SentencePiece). Every llama.cpp list must be matched exactly;
 * the others are counted and reported, since their conversions from GGUF only approximate
 * some tokenizers (see the generator). detokenize(tokenize(s)) must give s back.
 * tokenize_golden_pre.bin covers the other pre-tokenizers: SmolLM2's vocabulary with
 * tokenizer.ggml.pre set to one name of each of llama.cpp's regex families. A model file
 * that is missing is skipped; with none present the program exits 77 (skipped). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "test.h"
#include "tokenizer.h"

#define MAX_REFS 32

typedef struct ref {
    char name[32];
    uint32_t flags;
} ref;

typedef struct golden {
    char *data;
    size_t size, pos;
    int n_refs;
    ref refs[MAX_REFS];
    uint32_t n_cases;
} golden;

static int rd_u32(golden *g, uint32_t *v)
{
    if (g->size - g->pos < 4)
        return 0;
    memcpy(v, g->data + g->pos, 4);
    g->pos += 4;
    return 1;
}

static int load_golden(const char *path, golden *g)
{
    FILE *f = fopen(path, "rb");
    uint32_t n;
    memset(g, 0, sizeof *g);
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    g->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->data = malloc(g->size ? g->size : 1);
    if (!g->data || fread(g->data, 1, g->size, f) != g->size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    if (g->size < 12 || memcmp(g->data, "LLMTOKG1", 8) != 0)
        return 0;
    g->pos = 8;
    if (!rd_u32(g, &n) || n > g->size - g->pos)
        return 0;
    g->pos += n; /* JSON header: versions, printed by the generator */
    uint32_t n_refs;
    if (!rd_u32(g, &n_refs) || n_refs > MAX_REFS)
        return 0;
    g->n_refs = (int)n_refs;
    for (uint32_t i = 0; i < n_refs; i++) {
        if (!rd_u32(g, &g->refs[i].flags) || !rd_u32(g, &n) || n >= sizeof g->refs[i].name ||
            n > g->size - g->pos)
            return 0;
        memcpy(g->refs[i].name, g->data + g->pos, n);
        g->pos += n;
    }
    return rd_u32(g, &g->n_cases);
}

static void print_escaped(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n && i < 80; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf(n > 80 ? "\"..." : "\"");
}

static void print_ids(const char *label, const int32_t *ids, int32_t n)
{
    printf("    %s (%d):", label, (int)n);
    for (int32_t i = 0; i < n && i < 40; i++)
        printf(" %d", (int)ids[i]);
    printf(n > 40 ? " ...\n" : "\n");
}

static int32_t *tokenize_alloc(const llm_tokenizer *t, const char *s, size_t n, uint32_t flags,
                               int32_t *count)
{
    int32_t k = llm__tokenize(t, s, n, NULL, 0, flags);
    CHECK_MSG(k != INT32_MIN, "tokenize failed: %s", llm_last_error());
    if (k == INT32_MIN)
        return NULL;
    int32_t need = k < 0 ? -k : k;
    int32_t *ids = malloc(sizeof *ids * (size_t)(need + 1));
    int32_t k2 = llm__tokenize(t, s, n, ids, need, flags);
    CHECK_EQ_INT(k2, need);
    *count = need;
    return ids;
}

/* detokenize(ids) == s. */
static int round_trips(const llm_tokenizer *t, const int32_t *ids, int32_t n, const char *s,
                       size_t len, uint32_t flags)
{
    int32_t k = llm__detokenize(t, ids, n, NULL, 0, flags);
    if (k == INT32_MIN)
        return 0;
    int32_t need = k < 0 ? -k : k;
    char *buf = malloc((size_t)need + 1);
    k = llm__detokenize(t, ids, n, buf, need + 1, flags);
    int ok = k == need && (size_t)k == len && memcmp(buf, s, len) == 0 && buf[k] == '\0';
    free(buf);
    return ok;
}

static int n_models_run;

static void check_model(const char *file, const char *golden_path)
{
    char path[1024];
    test_model_path(file, path, sizeof path);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        printf("SKIP %s: model file %s not found\n", file, path);
        return;
    }
    fclose(probe);
    n_models_run++;

    golden g;
    CHECK_MSG(load_golden(golden_path, &g), "cannot read %s", golden_path);
    if (!g.data || g.n_cases == 0) {
        free(g.data);
        return;
    }
    llm_gguf *gf = NULL;
    llm_tokenizer *t = NULL;
    llm_status st = llm__gguf_open(path, 1, &gf);
    CHECK_MSG(st == LLM_OK, "gguf open: %s", llm_last_error());
    if (st == LLM_OK) {
        st = llm__tokenizer_create(gf, &t);
        CHECK_MSG(st == LLM_OK, "tokenizer: %s", llm_last_error());
        llm__gguf_close(gf); /* the tokenizer keeps no pointer into the file */
    }
    if (!t) {
        free(g.data);
        return;
    }

    int match[MAX_REFS] = {0}, present[MAX_REFS] = {0}, shown = 0;
    int rt_plain = 0, rt_special = 0;
    size_t total_bytes = 0;
    char *all = malloc(g.size); /* the corpus texts, concatenated */
    for (uint32_t c = 0; c < g.n_cases; c++) {
        uint32_t len;
        if (!rd_u32(&g, &len) || len > g.size - g.pos) {
            CHECK_MSG(0, "golden file truncated at case %u", c);
            break;
        }
        const char *s = g.data + g.pos;
        g.pos += len;
        memcpy(all + total_bytes, s, len);
        total_bytes += len;
        for (int r = 0; r < g.n_refs; r++) {
            uint32_t n;
            if (!rd_u32(&g, &n)) {
                CHECK_MSG(0, "golden file truncated at case %u", c);
                break;
            }
            if ((int32_t)n < 0)
                continue; /* this reference did not load */
            if (n > (g.size - g.pos) / 4) {
                CHECK_MSG(0, "golden file truncated at case %u", c);
                break;
            }
            int32_t *want = malloc(4 * (size_t)n + 4);
            memcpy(want, g.data + g.pos, 4 * (size_t)n);
            g.pos += 4 * (size_t)n;
            present[r]++;
            int32_t got_n = 0;
            int32_t *got = tokenize_alloc(t, s, len, g.refs[r].flags, &got_n);
            int same = got && got_n == (int32_t)n && memcmp(got, want, 4 * (size_t)n) == 0;
            match[r] += same;
            if (!same && strcmp(g.refs[r].name, "llama.cpp") == 0) {
                CHECK_MSG(0, "%s case %u flags %u differs from llama.cpp", file, c,
                          g.refs[r].flags);
                if (shown++ < 10) {
                    printf("  case %u flags %u: ", c, g.refs[r].flags);
                    print_escaped(s, len);
                    printf("\n");
                    print_ids("llama.cpp", want, (int32_t)n);
                    if (got)
                        print_ids("libllm   ", got, got_n);
                }
            }
            if (got && r == 0)
                rt_plain += round_trips(t, got, got_n, s, len, 0);
            if (got && g.refs[r].flags == LLM_TOKENIZE_PARSE_SPECIAL &&
                strcmp(g.refs[r].name, "llama.cpp") == 0)
                rt_special += round_trips(t, got, got_n, s, len, LLM_DETOKENIZE_RENDER_SPECIAL);
            free(got);
            free(want);
        }
    }
    for (int r = 0; r < g.n_refs; r++) {
        if (!present[r])
            printf("%s: %-13s flags=%u: reference absent (see the golden header)\n", file,
                   g.refs[r].name, g.refs[r].flags);
        else
            printf("%s: %-13s flags=%u: %d/%d match\n", file, g.refs[r].name, g.refs[r].flags,
                   match[r], present[r]);
    }
    printf("%s: round trip detokenize(tokenize(s)) == s: %d/%u plain, %d/%u with special "
           "tokens parsed and rendered\n",
           file, rt_plain, g.n_cases, rt_special, g.n_cases);
    CHECK_EQ_INT(rt_plain, g.n_cases);
    CHECK_EQ_INT(rt_special, g.n_cases);

    /* Speed: well under a second for 100 KB of mixed text (the corpus, repeated). */
    size_t big_n = 0;
    char *big = malloc(100 * 1024 + total_bytes);
    while (total_bytes && big_n < 100 * 1024) {
        memcpy(big + big_n, all, total_bytes);
        big_n += total_bytes;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0); /* CPU time: the machine may be busy */
    int32_t n_big = 0;
    int32_t *ids = tokenize_alloc(t, big, big_n, LLM_TOKENIZE_PARSE_SPECIAL, &n_big);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%s: %zu bytes -> %d tokens in %.3f s of CPU time\n", file, big_n, (int)n_big, sec);
    CHECK(sec < 1.0);
    CHECK(ids && round_trips(t, ids, n_big, big, big_n, LLM_DETOKENIZE_RENDER_SPECIAL));
    free(ids);
    free(big);
    free(all);

    llm__tokenizer_free(t);
    free(g.data);
}

/* ---- SmolLM2's vocabulary under other pre-tokenizers ----------------------------------- */

typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
} wbuf;

static void wput(wbuf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void wstr(wbuf *b, const char *s, uint64_t n)
{
    wput(b, &n, 8);
    wput(b, s, (size_t)n);
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

/* A metadata-only GGUF with the tokenizer.ggml.* pairs of g, pre replaced. */
static wbuf gguf_with_pre(const llm_gguf *g, const char *pre)
{
    wbuf kv = {0}, f = {0};
    uint64_t n_kv = 0;
    for (int64_t i = 0; i < llm__gguf_n_kv(g); i++) {
        const llm_gguf_kv *p = llm__gguf_kv_at(g, i);
        if (p->key.len < 15 || memcmp(p->key.ptr, "tokenizer.ggml.", 15) != 0 ||
            (p->key.len == 18 && memcmp(p->key.ptr, "tokenizer.ggml.pre", 18) == 0))
            continue;
        wstr(&kv, p->key.ptr, p->key.len);
        wput(&kv, &p->type, 4);
        n_kv++;
        if (p->type == LLM_GGUF_STRING) {
            wstr(&kv, p->v.str.ptr, p->v.str.len);
        } else if (p->type == LLM_GGUF_ARRAY) {
            wput(&kv, &p->v.arr.type, 4);
            wput(&kv, &p->v.arr.n, 8);
            if (p->v.arr.type == LLM_GGUF_STRING)
                for (uint64_t j = 0; j < p->v.arr.n; j++)
                    wstr(&kv, p->v.arr.strs[j].ptr, p->v.arr.strs[j].len);
            else
                wput(&kv, p->v.arr.data, (size_t)p->v.arr.n * scalar_size(p->v.arr.type));
        } else if (p->type == LLM_GGUF_FLOAT32) {
            float v = (float)p->v.f64;
            wput(&kv, &v, 4);
        } else if (p->type == LLM_GGUF_FLOAT64) {
            wput(&kv, &p->v.f64, 8);
        } else {
            wput(&kv, &p->v.u64, scalar_size(p->type)); /* little-endian: low bytes first */
        }
    }
    wstr(&kv, "tokenizer.ggml.pre", 18);
    uint32_t type = LLM_GGUF_STRING, version = 3;
    wput(&kv, &type, 4);
    wstr(&kv, pre, strlen(pre));
    n_kv++;
    uint64_t n_tensors = 0;
    wput(&f, "GGUF", 4);
    wput(&f, &version, 4);
    wput(&f, &n_tensors, 8);
    wput(&f, &n_kv, 8);
    wput(&f, kv.p, kv.n);
    while (f.n % 32)
        wput(&f, "", 1);
    free(kv.p);
    return f;
}

static void test_pre_tokenizers(void)
{
    char path[1024];
    test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path);
    llm_gguf *g = NULL;
    if (llm__gguf_open(path, 1, &g) != LLM_OK) {
        printf("SKIP pre-tokenizers: %s not found\n", path);
        return;
    }
    golden gd;
    CHECK_MSG(load_golden("tests/data/tokenize_golden_pre.bin", &gd), "cannot read pre goldens");
    llm_tokenizer *tok[MAX_REFS] = {0};
    wbuf files[MAX_REFS] = {{0}};
    for (int r = 0; r < gd.n_refs; r++) {
        files[r] = gguf_with_pre(g, gd.refs[r].name);
        llm_gguf *mg = NULL;
        llm_status st = llm__gguf_open_memory(files[r].p, files[r].n, &mg);
        if (st == LLM_OK)
            st = llm__tokenizer_create(mg, &tok[r]);
        CHECK_MSG(st == LLM_OK, "pre '%s': %s", gd.refs[r].name, llm_last_error());
        llm__gguf_close(mg);
    }
    int match[MAX_REFS] = {0}, shown = 0;
    for (uint32_t c = 0; c < gd.n_cases && gd.data; c++) {
        uint32_t len, n;
        if (!rd_u32(&gd, &len) || len > gd.size - gd.pos)
            break;
        const char *s = gd.data + gd.pos;
        gd.pos += len;
        for (int r = 0; r < gd.n_refs; r++) {
            if (!rd_u32(&gd, &n) || n > (gd.size - gd.pos) / 4)
                break;
            int32_t *want = malloc(4 * (size_t)n + 4); /* the file's ids may be unaligned */
            memcpy(want, gd.data + gd.pos, 4 * (size_t)n);
            gd.pos += 4 * (size_t)n;
            int32_t got_n = 0;
            int32_t *got = tok[r] ? tokenize_alloc(tok[r], s, len, gd.refs[r].flags, &got_n) : NULL;
            int same = got && got_n == (int32_t)n && memcmp(got, want, 4 * (size_t)n) == 0;
            match[r] += same;
            if (!same && shown++ < 10) {
                printf("  pre '%s' case %u: ", gd.refs[r].name, c);
                print_escaped(s, len);
                printf("\n");
                print_ids("llama.cpp", want, (int32_t)n);
                if (got)
                    print_ids("libllm   ", got, got_n);
            }
            free(got);
            free(want);
        }
    }
    int total = 0;
    for (int r = 0; r < gd.n_refs; r++) {
        printf("pre-tokenizer %-24s %d/%u match llama.cpp\n", gd.refs[r].name, match[r],
               gd.n_cases);
        CHECK_EQ_INT(match[r], gd.n_cases);
        total += match[r];
        llm__tokenizer_free(tok[r]);
        free(files[r].p);
    }
    printf("pre-tokenizers: %d/%u match llama.cpp\n", total, gd.n_cases * (uint32_t)gd.n_refs);
    free(gd.data);
    llm__gguf_close(g);
}

static void test_smollm2(void)
{
    check_model("SmolLM2-135M-Instruct.Q4_1.gguf", "tests/data/tokenize_golden_smollm2.bin");
}

static void test_gemma3(void)
{
    check_model("gemma-3-270m-q4_k_m.gguf", "tests/data/tokenize_golden_gemma3.bin");
}

int main(void)
{
    TEST_RUN(test_smollm2);
    TEST_RUN(test_gemma3);
    TEST_RUN(test_pre_tokenizers);
    if (n_models_run == 0) {
        printf("SKIP: no model files (set LLM_MODEL_DIR or put them in ~/.cache/libllm/models)\n");
        return 77;
    }
    return test_summary();
}
