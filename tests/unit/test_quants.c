/* test_quants.c - the CPU quantisation kernels (backends/cpu/quants.c, quants_avx2.c,
 * quants_neon.c).
 *
 * (a) to_float of every type is bit-exact with gguf-py's dequantize, and (b) the reference
 * from_float with gguf-py's quantize, on the golden vectors of tests/data/quant_vectors.bin
 * (written by tests/unit/gen_quant_vectors.py); (c) every kernel of llm__quant_best agrees
 * with the reference on many random rows (vec_dot to 1e-5 of the sum of |terms|, from_float
 * and the half conversions bit for bit), at every instruction-set level this CPU has (AVX2,
 * AVX-512, AVX-512 with VNNI/BF16: isa_levels.h), and the levels agree with each other bit
 * for bit; (d) the reference vec_dot agrees with a float64 dot
 * of the dequantised rows, and with the dot of the unquantised activations within the bound
 * that activation quantisation allows.
 *
 * LLM_QUANT_BENCH=1 also prints a micro-benchmark (ns per row) of every vec_dot.
 *
 * LLM_GGML_CPU_LIB=/path/to/libggml-cpu.so (e.g. the one inside llama-cpp-python) adds a
 * direct comparison with llama.cpp's own kernels: the reference here against ggml's generic
 * (scalar) functions bit for bit, the fast paths against ggml's SIMD ones, and ggml's SIMD
 * vec_dots in the benchmark. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#include "isa_levels.h"
#include "quants.h"
#include "test.h"

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rand_u32(void)
{
    return (uint32_t)(test_rand_u64(&rng) >> 32);
}

static float rand_f(float lo, float hi)
{
    return test_rand_f32(&rng, lo, hi);
}

/* A Gaussian-ish value in (-3, 3): the sum of three uniforms. */
static float rand_act(void)
{
    float g = rand_f(-1, 1) + rand_f(-1, 1) + rand_f(-1, 1);
    return g;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static const char *dt_name(uint32_t t)
{
    const llm_dtype_info *info = llm__dtype_info(t);
    return info ? info->name : "?";
}

static int block_of(uint32_t t)
{
    return llm__dtype_info(t)->block;
}

static size_t row_bytes(uint32_t t, int64_t n)
{
    return llm__dtype_row_size(t, n);
}

/* ---- golden vectors ------------------------------------------------------------- */

static unsigned char *read_vectors(size_t *len)
{
    return (unsigned char *)test_read_source("tests/data/quant_vectors.bin", len);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walks the records; for each calls fn(kind, type, n, bytes, nbytes, floats). Returns the
 * number of records, or -1 if the file is missing or malformed. */
typedef void (*record_fn)(uint32_t kind, uint32_t type, uint32_t n, const unsigned char *bytes,
                          uint32_t nbytes, const float *floats, void *user);

static int for_each_record(record_fn fn, void *user)
{
    size_t len = 0;
    unsigned char *buf = read_vectors(&len);
    if (!buf) {
        fprintf(stderr, "  cannot find tests/data/quant_vectors.bin (run from the source root "
                        "or set LLM_SOURCE_ROOT)\n");
        return -1;
    }
    int count = -1;
    if (len >= 12 && memcmp(buf, "LLMQVEC1", 8) == 0) {
        uint32_t nrec = rd32(buf + 8);
        size_t off = 12;
        count = 0;
        for (uint32_t r = 0; r < nrec; r++) {
            if (off + 16 > len) {
                count = -1;
                break;
            }
            uint32_t kind = rd32(buf + off), type = rd32(buf + off + 4);
            uint32_t n = rd32(buf + off + 8), nbytes = rd32(buf + off + 12);
            off += 16;
            if (off + nbytes + (size_t)n * 4 > len) {
                count = -1;
                break;
            }
            float *floats = xmalloc((size_t)n * sizeof(float));
            memcpy(floats, buf + off + nbytes, (size_t)n * sizeof(float));
            fn(kind, type, n, buf + off, nbytes, floats, user);
            free(floats);
            off += nbytes + (size_t)n * 4;
            count++;
        }
    }
    free(buf);
    return count;
}

static int same_bits(const float *a, const float *b, size_t n, size_t *first)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &a[i], 4);
        memcpy(&ub, &b[i], 4);
        if (ua != ub) {
            *first = i;
            return 0;
        }
    }
    return 1;
}

struct golden_seen {
    int to_float[LLM_DT_COUNT];
    int from_float[LLM_DT_COUNT];
};

static void check_record(uint32_t kind, uint32_t type, uint32_t n, const unsigned char *bytes,
                         uint32_t nbytes, const float *floats, void *user)
{
    struct golden_seen *seen = user;
    CHECK_MSG(type < LLM_DT_COUNT && llm__quant_ref[type].to_float, "type %u", type);
    if (type >= LLM_DT_COUNT || !llm__quant_ref[type].to_float)
        return;
    CHECK_EQ_INT(row_bytes(type, n), nbytes);
    if (kind == 0) {
        /* to_float: reference and fast table, bit for bit */
        float *out = xmalloc((size_t)n * sizeof(float));
        const llm_quant_traits *tables[2] = {&llm__quant_ref[type], &llm__quant_best[type]};
        for (int t = 0; t < 2; t++) {
            memset(out, 0x7f, (size_t)n * sizeof(float)); /* poison */
            tables[t]->to_float(bytes, out, n);
            size_t at = 0;
            CHECK_MSG(same_bits(out, floats, n, &at), "%s to_float (%s) element %zu: %.9g != %.9g",
                      dt_name(type), t ? "best" : "ref", at, out[at], floats[at]);
        }
        free(out);
        seen->to_float[type]++;
    } else {
        /* from_float: the reference (and the fast path where there is one) */
        unsigned char *out = xmalloc(nbytes);
        const llm_quant_traits *tables[2] = {&llm__quant_ref[type], &llm__quant_best[type]};
        for (int t = 0; t < 2; t++) {
            if (!tables[t]->from_float)
                continue;
            memset(out, 0xa5, nbytes);
            tables[t]->from_float(floats, out, n);
            size_t at = 0;
            while (at < nbytes && out[at] == bytes[at])
                at++;
            CHECK_MSG(at == nbytes, "%s from_float (%s) differs at byte %zu (block %zu)",
                      dt_name(type), t ? "best" : "ref", at,
                      at / (size_t)llm__dtype_info(type)->type_size);
        }
        free(out);
        seen->from_float[type]++;
    }
}

static void test_golden_vectors(void)
{
    struct golden_seen seen;
    memset(&seen, 0, sizeof seen);
    int n = for_each_record(check_record, &seen);
    CHECK(n > 0);
    static const uint32_t all[] = {LLM_DT_F32,  LLM_DT_F16,  LLM_DT_BF16, LLM_DT_Q4_0, LLM_DT_Q4_1,
                                   LLM_DT_Q5_0, LLM_DT_Q5_1, LLM_DT_Q8_0, LLM_DT_Q8_1, LLM_DT_Q2_K,
                                   LLM_DT_Q3_K, LLM_DT_Q4_K, LLM_DT_Q5_K, LLM_DT_Q6_K, LLM_DT_Q8_K};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        CHECK_MSG(seen.to_float[all[i]] > 0, "no to_float vectors for %s", dt_name(all[i]));
    static const uint32_t quantised[] = {LLM_DT_Q8_0, LLM_DT_Q4_0, LLM_DT_Q4_1, LLM_DT_Q5_0,
                                         LLM_DT_Q5_1, LLM_DT_F16, LLM_DT_BF16};
    for (size_t i = 0; i < sizeof quantised / sizeof quantised[0]; i++)
        CHECK_MSG(seen.from_float[quantised[i]] > 0, "no from_float vectors for %s",
                  dt_name(quantised[i]));
}

/* ---- half conversions ----------------------------------------------------------- */

static void test_f16_conversions(void)
{
    /* every half: scalar vs the row helper (F16C when available), bit for bit, and back */
    llm_f16 *h = xmalloc(65536 * sizeof(llm_f16));
    float *f = xmalloc(65536 * sizeof(float));
    for (int i = 0; i < 65536; i++)
        h[i] = (llm_f16)i;
    llm__f16_to_f32_row(h, f, 65536);
    int bad = 0, bad_back = 0;
    for (int i = 0; i < 65536; i++) {
        float s = llm__f16_to_f32((llm_f16)i);
        if (memcmp(&s, &f[i], 4) != 0)
            bad++;
        if (llm__f32_to_f16(s) != (llm_f16)i && !((i & 0x7c00) == 0x7c00 && (i & 0x3ff)))
            bad_back++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(bad_back, 0);
    CHECK(llm__f16_to_f32(0x3c00) == 1.0f);
    CHECK(llm__f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(llm__f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(llm__f16_to_f32(0xfc00)) && llm__f16_to_f32(0xfc00) < 0);
    CHECK(isnan(llm__f16_to_f32(0x7e00)));

    /* f32 -> f16: scalar vs the row helper on random bit patterns (NaN, inf, subnormal
     * included), in rows of odd lengths so the tails are exercised */
    const int N = 1 << 20;
    float *x = xmalloc((size_t)N * sizeof(float));
    llm_f16 *y = xmalloc((size_t)N * sizeof(llm_f16));
    for (int i = 0; i < N; i++) {
        uint32_t u = rand_u32();
        if (i % 4 == 1) /* concentrate on the half range: exponents 100..145 */
            u = (u & 0x807fffff) | ((100u + rand_u32() % 46) << 23);
        if (i % 4 == 2) /* exact ties between two halves */
            u = (u & 0xffffe000u) | 0x1000;
        memcpy(&x[i], &u, 4);
    }
    int64_t done = 0;
    while (done < N) {
        int64_t len = 1 + rand_u32() % 77;
        if (done + len > N)
            len = N - done;
        llm__f32_to_f16_row(x + done, y + done, len);
        done += len;
    }
    bad = 0;
    for (int i = 0; i < N; i++)
        if (y[i] != llm__f32_to_f16(x[i]))
            bad++;
    CHECK_EQ_INT(bad, 0);
    /* rounding spot checks against hand-computed halves */
    CHECK_EQ_INT(llm__f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);     /* tie -> even */
    CHECK_EQ_INT(llm__f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02); /* tie -> even */
    CHECK_EQ_INT(llm__f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(llm__f32_to_f16(65519.996f), 0x7bff);
    CHECK_EQ_INT(llm__f32_to_f16(ldexpf(1.0f, -25)), 0x0000);
    CHECK_EQ_INT(llm__f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    CHECK_EQ_INT(llm__f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 ulp -> even 2 */
    CHECK_EQ_INT(llm__f32_to_f16(-0.0f), 0x8000);

    /* the f16 to_float/from_float entries of both tables agree on a row of odd length */
    float *back = xmalloc(1001 * sizeof(float));
    llm__quant_best[LLM_DT_F16].from_float(x, y, 1001);
    llm__quant_best[LLM_DT_F16].to_float(y, back, 1001);
    for (int i = 0; i < 1001; i++) {
        float r = llm__f16_to_f32(llm__f32_to_f16(x[i]));
        if (memcmp(&r, &back[i], 4) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);

    /* bf16 */
    CHECK_EQ_INT(llm__f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    CHECK_EQ_INT(llm__f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    CHECK(llm__bf16_to_f32(0x3f80) == 1.0f);
    CHECK_EQ_INT(llm__f32_to_bf16(NAN) & 0x7fc0, 0x7fc0);
    free(back);
    free(x);
    free(y);
    free(h);
    free(f);
}

/* ---- random rows ---------------------------------------------------------------- */

static llm_f16 rand_scale_f16(float lo, float hi)
{
    float m = expf(rand_f(logf(lo), logf(hi)));
    return llm__f32_to_f16(rand_u32() & 1 ? -m : m);
}

/* A weight row of type t: random bytes for the quants, sane random scales. */
static void random_weights(uint32_t t, void *buf, int64_t n)
{
    size_t bytes = row_bytes(t, n);
    unsigned char *p = buf;
    for (size_t i = 0; i < bytes; i++)
        p[i] = (unsigned char)rand_u32();
    int64_t nb = n / block_of(t);
    for (int64_t i = 0; i < nb; i++) {
        switch (t) {
        case LLM_DT_F32: ((float *)buf)[i] = rand_act(); break;
        case LLM_DT_F16: ((llm_f16 *)buf)[i] = llm__f32_to_f16(rand_act()); break;
        case LLM_DT_BF16: ((llm_bf16 *)buf)[i] = llm__f32_to_bf16(rand_act()); break;
        case LLM_DT_Q4_0: ((block_q4_0 *)buf)[i].d = rand_scale_f16(1e-3f, 1); break;
        case LLM_DT_Q4_1:
            ((block_q4_1 *)buf)[i].d = rand_scale_f16(1e-3f, 1);
            ((block_q4_1 *)buf)[i].m = rand_scale_f16(1e-3f, 8);
            break;
        case LLM_DT_Q5_0: ((block_q5_0 *)buf)[i].d = rand_scale_f16(1e-3f, 1); break;
        case LLM_DT_Q5_1:
            ((block_q5_1 *)buf)[i].d = rand_scale_f16(1e-3f, 1);
            ((block_q5_1 *)buf)[i].m = rand_scale_f16(1e-3f, 16);
            break;
        case LLM_DT_Q8_0: ((block_q8_0 *)buf)[i].d = rand_scale_f16(1e-3f, 1); break;
        case LLM_DT_Q2_K:
            ((block_q2_K *)buf)[i].d = rand_scale_f16(1e-3f, 1);
            ((block_q2_K *)buf)[i].dmin = rand_scale_f16(1e-3f, 1);
            break;
        case LLM_DT_Q3_K: ((block_q3_K *)buf)[i].d = rand_scale_f16(1e-3f, 1); break;
        case LLM_DT_Q4_K:
            ((block_q4_K *)buf)[i].d = rand_scale_f16(1e-3f, 1);
            ((block_q4_K *)buf)[i].dmin = rand_scale_f16(1e-3f, 1);
            break;
        case LLM_DT_Q5_K:
            ((block_q5_K *)buf)[i].d = rand_scale_f16(1e-3f, 1);
            ((block_q5_K *)buf)[i].dmin = rand_scale_f16(1e-3f, 1);
            break;
        case LLM_DT_Q6_K: ((block_q6_K *)buf)[i].d = rand_scale_f16(1e-3f, 1); break;
        default: break;
        }
    }
}

/* Activations: per-32 magnitudes spread over 1e-3..1e2, a few outliers. */
static void random_acts(float *x, int64_t n)
{
    float mag = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0)
            mag = expf(rand_f(logf(1e-3f), logf(1e2f)));
        x[i] = rand_act() * mag * (rand_u32() % 64 == 0 ? 20.0f : 1.0f);
    }
}

static int64_t random_length(uint32_t t)
{
    int b = block_of(t);
    if (b == 1)
        return 1 + rand_u32() % 4096; /* float rows: any length, tails included */
    if (b == 32)
        return 32 * (1 + rand_u32() % 128); /* odd block counts included */
    return 256 * (1 + rand_u32() % 16);
}

static const uint32_t weight_types[] = {LLM_DT_F32,  LLM_DT_F16,  LLM_DT_BF16, LLM_DT_Q4_0,
                                        LLM_DT_Q4_1, LLM_DT_Q5_0, LLM_DT_Q5_1, LLM_DT_Q8_0,
                                        LLM_DT_Q2_K, LLM_DT_Q3_K, LLM_DT_Q4_K, LLM_DT_Q5_K,
                                        LLM_DT_Q6_K};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

/* ---- (c) fast kernels vs the reference ------------------------------------------ */

static void test_vec_dot_fast_vs_ref(void)
{
    const int64_t NMAX = 4096;
    void *w = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    void *a = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    float *act = xmalloc(NMAX * sizeof(float));
    float *wf = xmalloc(NMAX * sizeof(float)), *af = xmalloc(NMAX * sizeof(float));
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const uint32_t t = weight_types[ti];
        const llm_quant_traits *ref = &llm__quant_ref[t], *best = &llm__quant_best[t];
        const uint32_t vt = ref->vec_dot_type;
        CHECK_EQ_INT(best->vec_dot_type, vt);
        double worst = 0, worst_rel = 0;
        int fails = 0;
        for (int r = 0; r < 300; r++) {
            int64_t n = random_length(t);
            random_weights(t, w, n);
            random_acts(act, n);
            llm__quant_ref[vt].from_float(act, a, n);
            float s_ref = NAN, s_best = NAN;
            ref->vec_dot(n, &s_ref, w, a);
            best->vec_dot(n, &s_best, w, a);
            /* scale of the sum: sum of |x_i * y_i| over the dequantised rows */
            ref->to_float(w, wf, n);
            llm__quant_ref[vt].to_float(a, af, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++)
                mag += fabs((double)wf[i] * af[i]);
            double err = fabs((double)s_ref - s_best) / (mag > 0 ? mag : 1);
            if (!(err <= 1e-5)) {
                if (fails++ < 3)
                    fprintf(stderr, "  %s n=%lld: ref %.9g best %.9g (err %.3g of sum|xy| %.3g)\n",
                            dt_name(t), (long long)n, s_ref, s_best, err, mag);
            }
            if (err > worst)
                worst = err;
            double rel = fabs((double)s_ref - s_best) / fabs((double)s_ref);
            if (rel > worst_rel && isfinite(rel))
                worst_rel = rel;
        }
        CHECK_MSG(fails == 0, "%s: %d of 300 rows beyond 1e-5", dt_name(t), fails);
        printf("     %-5s fast vs ref: max |diff|/sum|xy| %.2e, max |diff|/|ref| %.2e\n",
               dt_name(t), worst, worst_rel);
    }
    free(w);
    free(a);
    free(act);
    free(wf);
    free(af);
}

/* The gemm tiles of llm__quant_best against the reference vec_dot of every pair (to 1e-5 of
 * sum|xy|) and against the fast vec_dot bit for bit (a token's logits must not depend on
 * how the tokens were batched), on odd row and token counts (the edge tiles), padded
 * strides between rows, and an output stride wider than the row count (the gaps must stay
 * untouched). Tiles that take f32 activations (gemm_f32_act: the float weight types) get
 * the vec_dot type's rows widened, and lengths that are multiples of 32. */
static void test_gemm_vs_ref(void)
{
    const int64_t NMAX = 4096, RMAX = 11, CMAX = 9, PAD = 40;
    int n_types = 0;
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const uint32_t t = weight_types[ti];
        const llm_quant_traits *ref = &llm__quant_ref[t], *best = &llm__quant_best[t];
        if (!best->gemm)
            continue;
        n_types++;
        const uint32_t vt = ref->vec_dot_type;
        const size_t wmax = row_bytes(t, NMAX) + PAD, amax = row_bytes(vt, NMAX) + PAD;
        unsigned char *w = xmalloc(wmax * RMAX), *a = xmalloc(amax * CMAX);
        float *act = xmalloc(NMAX * sizeof(float));
        float *wf = xmalloc(NMAX * sizeof(float)), *af = xmalloc(NMAX * sizeof(float));
        float *s = xmalloc((size_t)(RMAX + 3) * CMAX * sizeof(float));
        float *a32 = xmalloc((size_t)(NMAX + PAD) * CMAX * sizeof(float));
        double worst = 0;
        int fails = 0, gaps = 0, pairs = 0, inexact = 0;
        for (int it = 0; it < 60; it++) {
            int64_t n = random_length(t);
            if (best->gemm_f32_act)
                n = n < 32 ? 32 : n / 32 * 32;
            const int64_t nr = 1 + rand_u32() % RMAX, nc = 1 + rand_u32() % CMAX;
            const size_t bx = row_bytes(t, n) + rand_u32() % PAD;
            const size_t by = row_bytes(vt, n) + rand_u32() % PAD;
            const size_t bs = (size_t)nr + rand_u32() % 4;
            for (int64_t r = 0; r < nr; r++)
                random_weights(t, w + r * bx, n);
            for (int64_t c = 0; c < nc; c++) {
                random_acts(act, n);
                llm__quant_ref[vt].from_float(act, a + c * by, n);
            }
            for (size_t i = 0; i < bs * (size_t)nc; i++)
                s[i] = -12345.0f;
            if (best->gemm_f32_act) {
                const size_t by32 = (size_t)n + rand_u32() % PAD; /* floats */
                for (int64_t c = 0; c < nc; c++)
                    llm__quant_ref[vt].to_float(a + c * by, a32 + c * by32, n);
                best->gemm(n, s, bs, w, bx, a32, by32 * sizeof(float), nr, nc);
            } else {
                best->gemm(n, s, bs, w, bx, a, by, nr, nc);
            }
            for (int64_t c = 0; c < nc; c++) {
                llm__quant_ref[vt].to_float(a + c * by, af, n);
                for (size_t r = 0; r < bs; r++) {
                    const float got = s[c * bs + r];
                    if ((int64_t)r >= nr) {
                        gaps += got != -12345.0f;
                        continue;
                    }
                    float want = NAN, fast = NAN;
                    ref->vec_dot(n, &want, w + r * bx, a + c * by);
                    best->vec_dot(n, &fast, w + r * bx, a + c * by);
                    inexact += memcmp(&fast, &got, sizeof got) != 0;
                    ref->to_float(w + r * bx, wf, n);
                    double mag = 0;
                    for (int64_t i = 0; i < n; i++)
                        mag += fabs((double)wf[i] * af[i]);
                    const double err = fabs((double)want - got) / (mag > 0 ? mag : 1);
                    if (!(err < 1e-5) && fails++ < 3)
                        fprintf(stderr, "  %s n=%lld %lldx%lld (%lld,%lld): ref %.9g gemm %.9g\n",
                                dt_name(t), (long long)n, (long long)nr, (long long)nc,
                                (long long)r, (long long)c, want, got);
                    if (err > worst || err != err)
                        worst = err;
                    pairs++;
                }
            }
        }
        CHECK_MSG(fails == 0, "%s: %d of %d pairs beyond 1e-5", dt_name(t), fails, pairs);
        CHECK_MSG(gaps == 0, "%s: %d output gaps written", dt_name(t), gaps);
        CHECK_MSG(inexact == 0, "%s: %d of %d pairs differ from vec_dot", dt_name(t), inexact,
                  pairs);
        printf("     %-5s gemm vs ref: %d pairs, max |diff|/sum|xy| %.2e\n", dt_name(t), pairs,
               worst);
        free(w), free(a), free(act), free(wf), free(af), free(s), free(a32);
    }
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    /* with AVX2 every type of our models has a tile kernel */
    if (strncmp(llm__cpu_features(), "avx2,fma,f16c", 13) == 0) {
        const uint32_t need[] = {LLM_DT_Q4_0, LLM_DT_Q4_1, LLM_DT_Q5_0, LLM_DT_Q5_1,
                                 LLM_DT_Q8_0, LLM_DT_Q4_K, LLM_DT_Q5_K, LLM_DT_Q6_K};
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
            CHECK_MSG(llm__quant_best[need[i]].gemm != NULL, "%s", dt_name(need[i]));
        const uint32_t floats[] = {LLM_DT_F32, LLM_DT_F16, LLM_DT_BF16};
        for (size_t i = 0; i < 3; i++)
            CHECK_MSG(llm__quant_best[floats[i]].gemm != NULL, "%s", dt_name(floats[i]));
        CHECK(n_types >= 11);
    }
#endif
#if defined(__aarch64__)
    CHECK(n_types == 10); /* NEON: tiles for the 32-blocks and every K-quant */
#endif
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++)
        CHECK(llm__quant_ref[weight_types[ti]].gemm == NULL); /* the reference is per pair */
}

static void test_from_float_fast_vs_ref(void)
{
    const int64_t NMAX = 4096;
    float *x = xmalloc(NMAX * sizeof(float));
    void *q_ref = xmalloc(row_bytes(LLM_DT_F32, NMAX)); /* the largest of the types below */
    void *q_best = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    static const uint32_t types[] = {LLM_DT_Q8_0, LLM_DT_Q8_1, LLM_DT_Q8_K, LLM_DT_F16};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        int diff_rows = 0;
        for (int r = 0; r < 400; r++) {
            int64_t n = 256 * (1 + rand_u32() % 16);
            random_acts(x, n);
            if (r % 4 == 1) {
                /* exact halves: with a block maximum of 127 the scale is exactly 1 (Q8_0,
                 * Q8_1) or -1 (Q8_K), so x.5 values are rounding ties */
                for (int64_t i = 0; i < n; i++)
                    x[i] = (float)((int)(rand_u32() % 253) - 126) + 0.5f;
                for (int64_t i = 0; i < n; i += 32)
                    x[i] = 127.0f;
            }
            if (r % 4 == 2) {
                /* largest magnitude present with both signs: Q8_K must take the first */
                for (int64_t i = 0; i < n; i += 256) {
                    x[i + 3 + rand_u32() % 100] = -150.0f;
                    x[i + 110 + rand_u32() % 100] = 150.0f;
                }
            }
            if (r == 3)
                memset(x, 0, 256 * sizeof(float)); /* an all-zero block */
            size_t bytes = row_bytes(t, n);
            memset(q_ref, 0x5a, bytes);
            memset(q_best, 0xa5, bytes);
            llm__quant_ref[t].from_float(x, q_ref, n);
            llm__quant_best[t].from_float(x, q_best, n);
            if (memcmp(q_ref, q_best, bytes) != 0)
                diff_rows++;
        }
        CHECK_MSG(diff_rows == 0, "%s from_float: %d of 400 rows differ from the reference",
                  dt_name(t), diff_rows);
    }
    free(x);
    free(q_ref);
    free(q_best);
}

/* Every level gives the AVX2 kernels' bits (vec_dot, from_float, to_float and the f16 row
 * helpers), so the level a CPU picks never changes a result; the one exception is the BF16
 * dot with AVX512_BF16, compared to 1e-5 of sum|xy| like the other fast paths. On 64-bit
 * ARM the same holds for the dotprod build against the plain NEON one. */
/* llm__exp_row (attention's softmax weights) against the C library's expf over every
 * 127th float of [-104, 0] and the edges. Its steps are glibc's, so with glibc the bits
 * must be equal; elsewhere within 1 ulp. */
static void test_exp_row(void)
{
    enum { N = 4096 };
    static float x[N], y[N];
    long n = 0, differ = 0, far = 0;
    uint32_t u = 0x80000000u; /* -0 */
    const uint32_t end = 0xC2D00000u; /* -104 */
    while (u <= end) {
        int m = 0;
        for (; m < N - 16 && u <= end; u += 127)
            memcpy(&x[m++], &u, sizeof u);
        const float edge[] = {0.0f, -0.0f, -INFINITY, NAN, -0x1.9fe368p6f, -0x1.9fe366p6f,
                              -0x1.9fe36ap6f, -1e-30f, -87.0f, -103.9f};
        for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
            x[m++] = edge[i];
        llm__exp_row(m, x, y);
        for (int i = 0; i < m; i++) {
            const float want = expf(x[i]);
            n++;
            if (isnan(want) && isnan(y[i]))
                continue;
            if (memcmp(&want, &y[i], sizeof want) != 0) {
                differ++;
                uint32_t a, b;
                memcpy(&a, &want, 4), memcpy(&b, &y[i], 4);
                far += (a > b ? a - b : b - a) > 1;
                if (differ <= 3)
                    printf("     exp(%a): %a, expf %a\n", x[i], y[i], want);
            }
        }
    }
    printf("     %ld inputs, %ld differ from expf (%ld by more than 1 ulp)\n", n, differ, far);
#ifdef __GLIBC__
    CHECK(differ == 0);
#else
    CHECK(far == 0);
#endif
}

static void test_exp_row_scalar(void)
{
    CHECK(llm__quant_select("scalar"));
    test_exp_row();
    isa_restore();
}

static void test_isa_levels_agree(void)
{
#if defined(__aarch64__)
    /* 64-bit ARM: the dot-product build against the plain NEON one */
    const char *const base = "neon";
    static const char *const levels[] = {"native"};
#else
    const char *const base = "avx2";
    static const char *const levels[] = {"avx512", "native"};
#endif
    const size_t n_levels = sizeof levels / sizeof levels[0];
    if (!llm__quant_select(base)) {
        printf("     no %s on this CPU: one level only\n", base);
        return;
    }
    const int64_t NMAX = 4096;
    void *w = xmalloc(row_bytes(LLM_DT_F32, NMAX)), *a = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    float *act = xmalloc(NMAX * sizeof(float));
    float *o2 = xmalloc(NMAX * sizeof(float)), *o = xmalloc(NMAX * sizeof(float));
    void *q2 = xmalloc(row_bytes(LLM_DT_F32, NMAX)), *q = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    const char *prev = llm__cpu_features();
    int compared = 0;
    for (size_t l = 0; l < n_levels; l++) {
        if (!llm__quant_select(levels[l]) || strcmp(llm__cpu_features(), prev) == 0)
            continue;
        prev = llm__cpu_features();
        const int bf16_ext = strstr(prev, "avx512bf16") != NULL;
        int differ = 0, cases = 0;
        for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            const uint32_t t = weight_types[ti];
            const uint32_t vt = llm__quant_ref[t].vec_dot_type;
            int type_differ = 0;
            for (int r = 0; r < 100; r++) {
                const int64_t n = random_length(t);
                random_weights(t, w, n);
                random_acts(act, n);
                llm__quant_ref[vt].from_float(act, a, n);
                float s2 = NAN, s = NAN;
                llm__quant_select(base);
                llm__quant_best[t].vec_dot(n, &s2, w, a);
                llm__quant_best[t].to_float(w, o2, n);
                const int64_t nq = n / 256 * 256;
                if (llm__quant_best[vt].from_float && nq)
                    llm__quant_best[vt].from_float(act, q2, nq);
                llm__quant_select(levels[l]);
                llm__quant_best[t].vec_dot(n, &s, w, a);
                llm__quant_best[t].to_float(w, o, n);
                if (llm__quant_best[vt].from_float && nq) {
                    llm__quant_best[vt].from_float(act, q, nq);
                    type_differ += memcmp(q, q2, row_bytes(vt, nq)) != 0;
                }
                type_differ += memcmp(o, o2, (size_t)n * sizeof(float)) != 0;
                if (t == LLM_DT_BF16 && bf16_ext)
                    continue; /* vdpbf16ps: checked against the reference elsewhere */
                if (memcmp(&s, &s2, sizeof s) != 0 && type_differ++ < 3)
                    fprintf(stderr, "  %s %s n=%lld: %s %.9g, this level %.9g\n", prev,
                            dt_name(t), (long long)n, base, s2, s);
                cases++;
            }
            CHECK_MSG(type_differ == 0, "%s: %s differs from %s in %d cases", prev, dt_name(t),
                      base, type_differ);
            differ += type_differ;
        }
        /* the f16 row helpers of attention and the KV cache */
        for (int r = 0; r < 200; r++) {
            const int64_t n = 1 + rand_u32() % 1000;
            llm_f16 *h = q, *h2 = q2;
            for (int64_t i = 0; i < n; i++)
                act[i] = rand_f(-3.0f, 3.0f);
            llm__quant_select(base);
            llm__f32_to_f16_row(act, h2, n);
            const float d2 = llm__dot_f16(n, h2, h2), e2 = llm__dot_f32_f16(n, act, h2);
            for (int64_t i = 0; i < n; i++)
                o2[i] = act[i];
            llm__axpy_f16(n, o2, 0.37f, h2);
            llm__quant_select(levels[l]);
            llm__f32_to_f16_row(act, h, n);
            const float d = llm__dot_f16(n, h, h), e = llm__dot_f32_f16(n, act, h);
            for (int64_t i = 0; i < n; i++)
                o[i] = act[i];
            llm__axpy_f16(n, o, 0.37f, h);
            const int bad = memcmp(h, h2, (size_t)n * 2) != 0 || memcmp(&d, &d2, 4) != 0 ||
                            memcmp(&e, &e2, 4) != 0 || memcmp(o, o2, (size_t)n * 4) != 0;
            CHECK_MSG(!bad, "%s: f16 row helpers differ from %s at n=%lld", prev, base,
                      (long long)n);
            differ += bad;
        }
        printf("     %s: %d vec_dots (and to_float, from_float, f16 rows) equal to %s's: %s\n",
               prev, cases, base, differ ? "NO" : "yes");
        compared++;
    }
    if (!compared)
        printf("     no level above %s on this CPU: nothing to compare\n", base);
    isa_restore();
    free(w), free(a), free(act), free(o2), free(o), free(q2), free(q);
}

/* ---- semantics of the activation quantisers ------------------------------------- */

static void test_q8_semantics(void)
{
    const int64_t n = 2048;
    float *x = xmalloc(n * sizeof(float));
    block_q8_0 *q0 = xmalloc(row_bytes(LLM_DT_Q8_0, n));
    block_q8_1 *q1 = xmalloc(row_bytes(LLM_DT_Q8_1, n));
    block_q8_K *qk = xmalloc(row_bytes(LLM_DT_Q8_K, n));
    for (int r = 0; r < 50; r++) {
        random_acts(x, n);
        if (r == 1)
            for (int i = 0; i < 256; i++)
                x[i] = i == 77 ? -9.0f : (i == 200 ? 9.0f : x[i] * 1e-3f); /* tie of |max| */
        llm__quant_ref[LLM_DT_Q8_0].from_float(x, q0, n);
        llm__quant_ref[LLM_DT_Q8_1].from_float(x, q1, n);
        llm__quant_ref[LLM_DT_Q8_K].from_float(x, qk, n);
        int bad = 0;
        /* Q8_1 = Q8_0 plus s = fp16(d * sum(q)), d unrounded = amax / 127 */
        for (int64_t b = 0; b < n / 32; b++) {
            float amax = 0;
            int sum = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[32 * b + j]));
            for (int j = 0; j < 32; j++)
                sum += q1[b].qs[j];
            if (q1[b].d != q0[b].d || memcmp(q1[b].qs, q0[b].qs, 32) != 0)
                bad++;
            if (q1[b].s != llm__f32_to_f16((float)sum * (amax / 127.0f)))
                bad++;
        }
        /* Q8_K, recomputed independently with rintf (round half to even) */
        for (int64_t b = 0; b < n / 256; b++) {
            const float *xb = x + 256 * b;
            float max = 0;
            for (int j = 0; j < 256; j++)
                if (fabsf(xb[j]) > fabsf(max))
                    max = xb[j];
            const float iscale = -127.0f / max;
            for (int j = 0; j < 256; j++) {
                float v = rintf(iscale * xb[j]);
                if (v > 127)
                    v = 127;
                if (qk[b].qs[j] != (int8_t)v)
                    bad++;
            }
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int j = 0; j < 16; j++)
                    s += qk[b].qs[16 * g + j];
                if (qk[b].bsums[g] != s)
                    bad++;
            }
            if (qk[b].d != 1.0f / iscale)
                bad++;
            if (r == 1 && b == 0 && !(qk[b].qs[77] == -127 && qk[b].qs[200] == 127 && qk[b].d > 0))
                bad++; /* the first of the two maxima (-9) is the one that maps to -127 */
        }
        CHECK_MSG(bad == 0, "row %d: %d mismatches", r, bad);
    }
    free(x);
    free(q0);
    free(q1);
    free(qk);
}

/* ---- (d) reference vec_dot vs float64 ------------------------------------------- */

/* Bound on |y - dequant(quant(y))| for element i of a row quantised to type vt. */
static double act_err_bound(uint32_t vt, const float *y, int64_t i, const void *q)
{
    const double hu = ldexp(1.0, -11); /* half an f16 ulp, relative */
    switch (vt) {
    case LLM_DT_F32: return 0;
    case LLM_DT_F16: return fabs(y[i]) * hu + ldexp(1.0, -25);
    case LLM_DT_BF16: return fabs(y[i]) * ldexp(1.0, -8);
    case LLM_DT_Q8_0:
    case LLM_DT_Q8_1: {
        /* q = round(y/d) with d = amax/127, stored as D = fp16(d): |y - D q| <= d/2 +
         * 127 |d - D|, with slack for the float arithmetic */
        int64_t b = i / 32;
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(y[32 * b + j]));
        double d = amax / 127.0;
        double D = vt == LLM_DT_Q8_0 ? llm__f16_to_f32(((const block_q8_0 *)q)[b].d)
                                     : llm__f16_to_f32(((const block_q8_1 *)q)[b].d);
        return d * (0.5 + 1e-5) + 127 * fabs(d - D);
    }
    case LLM_DT_Q8_K: return fabs(((const block_q8_K *)q)[i / 256].d) * (0.5 + 1e-5);
    }
    return INFINITY;
}

static void test_vec_dot_ref_vs_f64(void)
{
    const int64_t NMAX = 4096;
    void *w = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    void *a = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    float *act = xmalloc(NMAX * sizeof(float));
    float *wf = xmalloc(NMAX * sizeof(float)), *af = xmalloc(NMAX * sizeof(float));
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const uint32_t t = weight_types[ti];
        const llm_quant_traits *ref = &llm__quant_ref[t];
        const uint32_t vt = ref->vec_dot_type;
        int fail_q = 0, fail_f = 0, fail_b = 0;
        double worst_q = 0, worst_f = 0;
        for (int r = 0; r < 200; r++) {
            int64_t n = random_length(t);
            random_weights(t, w, n);
            random_acts(act, n);
            llm__quant_ref[vt].from_float(act, a, n);
            float s = NAN;
            ref->vec_dot(n, &s, w, a);
            ref->to_float(w, wf, n);
            llm__quant_ref[vt].to_float(a, af, n);
            double dot_q = 0, dot_f = 0, mag = 0, qbound = 0;
            for (int64_t i = 0; i < n; i++) {
                dot_q += (double)wf[i] * af[i];
                dot_f += (double)wf[i] * act[i];
                mag += fabs((double)wf[i] * af[i]);
                double e = act_err_bound(vt, act, i, a);
                if (fabs((double)act[i] - af[i]) > e)
                    fail_b++; /* the activation quantiser itself is off */
                qbound += fabs((double)wf[i]) * e;
            }
            /* Q4_1/Q5_1 use s = fp16(d * sum q) for the min term instead of the sum of
             * the dequantised q8 values: allow for that rounding */
            double sterm = 0;
            if (t == LLM_DT_Q4_1 || t == LLM_DT_Q5_1) {
                const block_q8_1 *yb = a;
                for (int64_t b = 0; b < n / 32; b++) {
                    float m = t == LLM_DT_Q4_1 ? llm__f16_to_f32(((const block_q4_1 *)w)[b].m)
                                               : llm__f16_to_f32(((const block_q5_1 *)w)[b].m);
                    float ysum = 0;
                    for (int j = 0; j < 32; j++)
                        ysum += af[32 * b + j];
                    sterm += fabs((double)m) * (fabs(llm__f16_to_f32(yb[b].s) - (double)ysum) +
                                                1e-6 * fabs(ysum));
                }
            }
            double tol = 1e-5 * mag + sterm;
            double eq = fabs(s - dot_q), ef = fabs(s - dot_f);
            if (!(eq <= tol) && fail_q++ < 3)
                fprintf(stderr, "  %s n=%lld: vec_dot %.9g, f64 of dequantised %.9g (tol %.3g)\n",
                        dt_name(t), (long long)n, s, dot_q, tol);
            if (!(ef <= tol + qbound) && fail_f++ < 3)
                fprintf(stderr, "  %s n=%lld: vec_dot %.9g, f64 of floats %.9g (bound %.3g)\n",
                        dt_name(t), (long long)n, s, dot_f, tol + qbound);
            if (mag > 0 && eq / mag > worst_q)
                worst_q = eq / mag;
            if (mag > 0 && ef / mag > worst_f)
                worst_f = ef / mag;
        }
        CHECK_MSG(fail_q == 0, "%s: vec_dot vs f64 of the dequantised rows: %d rows", dt_name(t),
                  fail_q);
        CHECK_MSG(fail_f == 0, "%s: vec_dot vs f64 of the float activations: %d rows",
                  dt_name(t), fail_f);
        CHECK_MSG(fail_b == 0, "%s: %d activations beyond the quantisation bound", dt_name(vt),
                  fail_b);
        printf("     %-5s ref vs f64: dequantised %.2e, float acts %.2e (of sum|xy|)\n",
               dt_name(t), worst_q, worst_f);
    }
    free(w);
    free(a);
    free(act);
    free(wf);
    free(af);
}

/* The tables: every supported type has the entries its role needs. */
static void test_tables(void)
{
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const uint32_t t = weight_types[ti];
        const llm_quant_traits *r = &llm__quant_ref[t], *b = &llm__quant_best[t];
        CHECK_MSG(r->to_float && r->vec_dot && b->to_float && b->vec_dot, "%s", dt_name(t));
        CHECK_MSG(llm__quant_ref[r->vec_dot_type].from_float &&
                      llm__quant_best[r->vec_dot_type].from_float,
                  "%s", dt_name(t));
    }
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q4_0].vec_dot_type, LLM_DT_Q8_0);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q5_0].vec_dot_type, LLM_DT_Q8_0);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q8_0].vec_dot_type, LLM_DT_Q8_0);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q4_1].vec_dot_type, LLM_DT_Q8_1);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q5_1].vec_dot_type, LLM_DT_Q8_1);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q2_K].vec_dot_type, LLM_DT_Q8_K);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_Q6_K].vec_dot_type, LLM_DT_Q8_K);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_F16].vec_dot_type, LLM_DT_F16);
    CHECK_EQ_INT(llm__quant_ref[LLM_DT_F32].vec_dot_type, LLM_DT_F32);
    CHECK(llm__quant_ref[LLM_DT_IQ1_M].to_float == NULL); /* no kernels for it yet */
    const char *feat = llm__cpu_features();
    CHECK(feat != NULL && feat[0] != '\0');
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
    const char *cap = getenv("LLM_CPU_ISA"); /* a lower level asked for */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c") && (!cap || !*cap || strcmp(cap, "scalar") != 0)) {
        CHECK(strncmp(feat, "avx2,fma,f16c", 13) == 0);
        CHECK(llm__quant_best[LLM_DT_Q4_K].vec_dot != llm__quant_ref[LLM_DT_Q4_K].vec_dot);
    }
#endif
#if defined(__aarch64__) && defined(__linux__)
    /* NEON is in every 64-bit ARM CPU; the dot-product build where the kernel reports it
     * (under qemu-user, QEMU_CPU=cortex-a72 gives a CPU without) unless LLM_CPU_ISA=neon */
    const int dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
    const char *isa = getenv("LLM_CPU_ISA");
    if (!isa || !*isa || strcmp(isa, "scalar") != 0) {
        const int plain = !dotprod || (isa && strcmp(isa, "neon") == 0);
        CHECK(strcmp(feat, plain ? "neon" : "neon,dotprod") == 0);
        for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++)
            CHECK_MSG(llm__quant_best[weight_types[ti]].vec_dot !=
                          llm__quant_ref[weight_types[ti]].vec_dot,
                      "%s", dt_name(weight_types[ti]));
        static const uint32_t acts[] = {LLM_DT_Q8_0, LLM_DT_Q8_1, LLM_DT_Q8_K, LLM_DT_F16};
        for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
            CHECK(llm__quant_best[acts[i]].from_float != llm__quant_ref[acts[i]].from_float);
    }
#endif
    printf("     cpu features: %s\n", feat);
    check_required_isa();

    /* llm__quant_select: unknown names change nothing; "scalar" is the reference table */
    CHECK_EQ_INT(llm__quant_select("avx3"), 0);
    CHECK(strcmp(llm__cpu_features(), feat) == 0);
    CHECK_EQ_INT(llm__quant_select("scalar"), 1);
    CHECK(strcmp(llm__cpu_features(), "scalar") == 0);
    CHECK(memcmp(llm__quant_best, llm__quant_ref, sizeof llm__quant_ref) == 0);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                     __builtin_cpu_supports("f16c");
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                       __builtin_cpu_supports("avx512vl");
    CHECK_EQ_INT(llm__quant_select("avx2"), avx2);
    CHECK_EQ_INT(llm__quant_select("avx512"), avx512);
    if (avx512)
        CHECK(strstr(llm__cpu_features(), "avx512bw") != NULL);
#endif
#if defined(__aarch64__) && defined(__linux__)
    CHECK_EQ_INT(llm__quant_select("avx2"), 0);
    CHECK_EQ_INT(llm__quant_select("neon"), 1);
    CHECK(strcmp(llm__cpu_features(), "neon") == 0);
    CHECK_EQ_INT(llm__quant_select("native"), 1);
    CHECK(strcmp(llm__cpu_features(), dotprod ? "neon,dotprod" : "neon") == 0);
#else
    CHECK_EQ_INT(llm__quant_select("neon"), 0);
#endif
    CHECK_EQ_INT(llm__quant_select("native"), 1);
    isa_restore();
    CHECK(strcmp(llm__cpu_features(), feat) == 0);
}

/* ---- llama.cpp's kernels, when a libggml-cpu is given -------------------------- */

typedef void (*ggml_vec_dot_fn)(int n, float *s, size_t bs, const void *x, size_t bx,
                                const void *y, size_t by, int nrc);
typedef void (*ggml_from_float_fn)(const float *x, void *y, int64_t k);
typedef void (*ggml_to_float_fn)(const void *x, float *y, int64_t k);

struct ggml_kernels {
    ggml_vec_dot_fn dot, dot_generic;
    ggml_to_float_fn to_float;
};

static void *ggml_lib;
static struct ggml_kernels ggml_k[LLM_DT_COUNT];
static ggml_from_float_fn ggml_q8[LLM_DT_COUNT][2]; /* [type][0 = generic, 1 = SIMD] */

static void *sym(const char *name)
{
    return ggml_lib ? dlsym(ggml_lib, name) : NULL;
}

static int load_ggml(void)
{
    const char *path = getenv("LLM_GGML_CPU_LIB");
    if (!path || !*path)
        return 0;
    if (!ggml_lib) {
        ggml_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!ggml_lib) {
            fprintf(stderr, "  cannot load %s: %s\n", path, dlerror());
            return -1;
        }
        void (*init)(void) = (void (*)(void))sym("ggml_cpu_init");
        if (init)
            init();
        static const struct { uint32_t t; const char *dot, *deq; } map[] = {
            {LLM_DT_Q4_0, "ggml_vec_dot_q4_0_q8_0", "dequantize_row_q4_0"},
            {LLM_DT_Q4_1, "ggml_vec_dot_q4_1_q8_1", "dequantize_row_q4_1"},
            {LLM_DT_Q5_0, "ggml_vec_dot_q5_0_q8_0", "dequantize_row_q5_0"},
            {LLM_DT_Q5_1, "ggml_vec_dot_q5_1_q8_1", "dequantize_row_q5_1"},
            {LLM_DT_Q8_0, "ggml_vec_dot_q8_0_q8_0", "dequantize_row_q8_0"},
            {LLM_DT_Q2_K, "ggml_vec_dot_q2_K_q8_K", "dequantize_row_q2_K"},
            {LLM_DT_Q3_K, "ggml_vec_dot_q3_K_q8_K", "dequantize_row_q3_K"},
            {LLM_DT_Q4_K, "ggml_vec_dot_q4_K_q8_K", "dequantize_row_q4_K"},
            {LLM_DT_Q5_K, "ggml_vec_dot_q5_K_q8_K", "dequantize_row_q5_K"},
            {LLM_DT_Q6_K, "ggml_vec_dot_q6_K_q8_K", "dequantize_row_q6_K"},
            {LLM_DT_Q8_K, NULL, "dequantize_row_q8_K"},
            {LLM_DT_F16, "ggml_vec_dot_f16", NULL},
            {LLM_DT_BF16, "ggml_vec_dot_bf16", NULL},
            {LLM_DT_F32, "ggml_vec_dot_f32", NULL},
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
            char name[128];
            struct ggml_kernels *k = &ggml_k[map[i].t];
            if (map[i].dot) {
                k->dot = (ggml_vec_dot_fn)sym(map[i].dot);
                snprintf(name, sizeof name, "%s_generic", map[i].dot);
                k->dot_generic = (ggml_vec_dot_fn)sym(name);
            }
            if (map[i].deq)
                k->to_float = (ggml_to_float_fn)sym(map[i].deq);
        }
        static const struct { uint32_t t; const char *name; } q8[] = {
            {LLM_DT_Q8_0, "quantize_row_q8_0"}, {LLM_DT_Q8_1, "quantize_row_q8_1"},
            {LLM_DT_Q8_K, "quantize_row_q8_K"}};
        for (size_t i = 0; i < 3; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s_generic", q8[i].name);
            ggml_q8[q8[i].t][0] = (ggml_from_float_fn)sym(name);
            ggml_q8[q8[i].t][1] = (ggml_from_float_fn)sym(q8[i].name);
        }
    }
    return 1;
}

static void test_vs_ggml(void)
{
    int st = load_ggml();
    CHECK(st >= 0);
    if (st <= 0) {
        printf("     (skipped: set LLM_GGML_CPU_LIB to a libggml-cpu.so to compare with "
               "llama.cpp)\n");
        return;
    }
    const int64_t NMAX = 4096;
    void *w = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    void *a = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    void *a2 = xmalloc(row_bytes(LLM_DT_F32, NMAX));
    float *act = xmalloc(NMAX * sizeof(float));
    float *f1 = xmalloc(NMAX * sizeof(float)), *f2 = xmalloc(NMAX * sizeof(float));

    /* activation quantisers: ggml's generic = our reference, bit for bit; ggml's SIMD
     * Q8_0/Q8_1 round x.5 to even and compute 1/d as 127/amax, so a quant may differ by
     * one there */
    static const uint32_t q8types[] = {LLM_DT_Q8_0, LLM_DT_Q8_1, LLM_DT_Q8_K};
    for (size_t ti = 0; ti < 3; ti++) {
        const uint32_t t = q8types[ti];
        int gen_diff = 0, simd_blocks = 0, simd_far = 0, checked = 0;
        for (int r = 0; r < 200; r++) {
            int64_t n = 256 * (1 + rand_u32() % 16);
            random_acts(act, n);
            size_t bytes = row_bytes(t, n);
            llm__quant_ref[t].from_float(act, a, n);
            if (ggml_q8[t][0]) {
                memset(a2, 0x33, bytes);
                ggml_q8[t][0](act, a2, n);
                gen_diff += memcmp(a, a2, bytes) != 0;
                checked++;
            }
            if (ggml_q8[t][1] && t != LLM_DT_Q8_K) {
                memset(a2, 0x33, bytes);
                ggml_q8[t][1](act, a2, n);
                const int bs = t == LLM_DT_Q8_0 ? 34 : 36, off = t == LLM_DT_Q8_0 ? 2 : 4;
                for (int64_t b = 0; b < n / 32; b++) {
                    const int8_t *p = (const int8_t *)a + b * bs, *q = (const int8_t *)a2 + b * bs;
                    if (memcmp(p, q, (size_t)bs) == 0)
                        continue;
                    simd_blocks++;
                    if (memcmp(p, q, 2) != 0) /* d must agree */
                        simd_far++;
                    for (int j = off; j < bs; j++)
                        if (abs(p[j] - q[j]) > 1)
                            simd_far++;
                }
            }
        }
        CHECK_MSG(checked > 0, "%s: no ggml generic quantiser", dt_name(t));
        CHECK_MSG(gen_diff == 0, "%s: %d of 200 rows differ from ggml's generic quantiser",
                  dt_name(t), gen_diff);
        CHECK_MSG(simd_far == 0, "%s: %d blocks differ from ggml's SIMD quantiser by more than "
                                 "a tie", dt_name(t), simd_far);
        printf("     %-5s from_float: ref == ggml generic on 200 rows; blocks differing from "
               "ggml SIMD by a rounding tie: %d\n", dt_name(t), simd_blocks);
    }

    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const uint32_t t = weight_types[ti];
        const struct ggml_kernels *k = &ggml_k[t];
        const uint32_t vt = llm__quant_ref[t].vec_dot_type;
        int deq_diff = 0, gen_same = 0, gen_fail = 0, simd_fail = 0, best_fail = 0;
        double worst = 0, worst_gen = 0;
        for (int r = 0; r < 200; r++) {
            int64_t n = random_length(t);
            if (llm__dtype_info(t)->block == 1)
                n = 32 * (1 + rand_u32() % 128); /* ggml's float dots step in 32s */
            random_weights(t, w, n);
            random_acts(act, n);
            llm__quant_ref[vt].from_float(act, a, n);
            if (k->to_float) {
                llm__quant_ref[t].to_float(w, f1, n);
                k->to_float(w, f2, n);
                size_t at;
                deq_diff += !same_bits(f1, f2, (size_t)n, &at);
            }
            llm__quant_ref[t].to_float(w, f1, n);
            llm__quant_ref[vt].to_float(a, f2, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++)
                mag += fabs((double)f1[i] * f2[i]);
            float s_ref, s_best, s_g = NAN, s_gs = NAN;
            llm__quant_ref[t].vec_dot(n, &s_ref, w, a);
            llm__quant_best[t].vec_dot(n, &s_best, w, a);
            if (k->dot_generic) {
                /* Same integer sums and combination order; llama.cpp's build may contract
                 * a*b+c into FMAs (-march=native, GNU C), which moves the last bits. */
                k->dot_generic((int)n, &s_g, 0, w, 0, a, 0, 1);
                double e = fabs((double)s_g - s_ref) / mag;
                gen_same += memcmp(&s_g, &s_ref, 4) == 0;
                gen_fail += !(e <= 1e-6);
                if (e > worst_gen)
                    worst_gen = e;
            }
            if (k->dot) {
                k->dot((int)n, &s_gs, 0, w, 0, a, 0, 1);
                double e = fabs((double)s_gs - s_ref) / mag;
                simd_fail += !(e <= 1e-5);
                best_fail += !(fabs((double)s_gs - s_best) / mag <= 1e-5);
                if (e > worst)
                    worst = e;
            }
        }
        if (t != LLM_DT_F32 && t != LLM_DT_F16 && t != LLM_DT_BF16) /* no float generics */
            CHECK_MSG(k->dot_generic && k->to_float, "%s: ggml symbols missing", dt_name(t));
        CHECK_MSG(deq_diff == 0, "%s: to_float differs from ggml on %d rows", dt_name(t), deq_diff);
        CHECK_MSG(gen_fail == 0, "%s: ref vec_dot beyond 1e-6 of ggml generic on %d rows",
                  dt_name(t), gen_fail);
        CHECK_MSG(simd_fail == 0 && best_fail == 0, "%s: ggml SIMD vec_dot differs on %d/%d rows",
                  dt_name(t), simd_fail, best_fail);
        if (k->dot_generic)
            printf("     %-5s vs ggml: to_float bit-exact; ref vs generic: %3d/200 rows identical, "
                   "max %.1e; SIMD vs ref max %.1e\n", dt_name(t), gen_same, worst_gen, worst);
        else
            printf("     %-5s vs ggml: SIMD vs ref max %.1e\n", dt_name(t), worst);
    }
    free(w);
    free(a);
    free(a2);
    free(act);
    free(f1);
    free(f2);
}

/* ---- micro-benchmark ------------------------------------------------------------ */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* ns per row of vec_dot over `rows` distinct weight rows (as in a matmul) against one
 * activation row. */
static double bench_vec_dot(const llm_quant_traits *tr, uint32_t t, int64_t n, int rows)
{
    size_t rb = row_bytes(t, n);
    unsigned char *w = xmalloc(rb * (size_t)rows);
    void *a = xmalloc(row_bytes(LLM_DT_F32, n));
    float *act = xmalloc(n * sizeof(float));
    for (int r = 0; r < rows; r++)
        random_weights(t, w + rb * (size_t)r, n);
    random_acts(act, n);
    llm__quant_ref[tr->vec_dot_type].from_float(act, a, n);
    volatile float sink = 0;
    float s;
    int reps = 1;
    double best = 1e30;
    for (;;) {
        double t0 = now_ns();
        for (int k = 0; k < reps; k++)
            for (int r = 0; r < rows; r++) {
                tr->vec_dot(n, &s, w + rb * (size_t)r, a);
                sink += s;
            }
        double el = now_ns() - t0;
        if (el < 2e7) {
            reps *= 2;
            continue;
        }
        double per = el / ((double)reps * rows);
        if (per < best)
            best = per;
        static int rounds;
        if (++rounds % 3 == 0)
            break;
    }
    (void)sink;
    free(w);
    free(a);
    free(act);
    return best;
}

static double bench_from_float(const llm_quant_traits *tr, int64_t n)
{
    float *x = xmalloc(n * sizeof(float));
    void *q = xmalloc(row_bytes(LLM_DT_F32, n));
    random_acts(x, n);
    int reps = 1000;
    double t0 = now_ns();
    for (int k = 0; k < reps; k++)
        tr->from_float(x, q, n);
    double el = now_ns() - t0;
    free(x);
    free(q);
    return el / reps;
}

static ggml_vec_dot_fn bench_ggml_fn;

static void ggml_dot_wrap(int64_t n, float *s, const void *x, const void *y)
{
    bench_ggml_fn((int)n, s, 0, x, 0, y, 0, 1);
}

static void run_bench(void)
{
    const int have_ggml = load_ggml() > 0;
    printf("\nvec_dot micro-benchmark: ns per row (64 distinct weight rows, one activation "
           "row), best of 3\n");
    printf("%-6s %6s %10s %10s %8s %12s %10s\n", "type", "n", "ref", "best", "speedup",
           "best/256el", have_ggml ? "ggml-simd" : "");
    static const int64_t lens[] = {576, 1024, 1536, 2048};
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const uint32_t t = weight_types[ti];
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int64_t n = lens[li];
            if (n % block_of(t))
                continue;
            double r = bench_vec_dot(&llm__quant_ref[t], t, n, 64);
            double b = bench_vec_dot(&llm__quant_best[t], t, n, 64);
            printf("%-6s %6lld %10.1f %10.1f %7.1fx %12.2f", dt_name(t), (long long)n, r, b,
                   r / b, b * 256.0 / (double)n);
            if (have_ggml && ggml_k[t].dot) {
                llm_quant_traits g = llm__quant_ref[t];
                bench_ggml_fn = ggml_k[t].dot;
                g.vec_dot = ggml_dot_wrap;
                printf(" %10.1f", bench_vec_dot(&g, t, n, 64));
            }
            printf("\n");
        }
    }
    printf("\nfrom_float: ns per 2048-element row\n");
    static const uint32_t acts[] = {LLM_DT_Q8_0, LLM_DT_Q8_1, LLM_DT_Q8_K, LLM_DT_F16};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        printf("%-6s ref %8.1f  best %8.1f\n", dt_name(acts[i]),
               bench_from_float(&llm__quant_ref[acts[i]], 2048),
               bench_from_float(&llm__quant_best[acts[i]], 2048));
}

int main(void)
{
    llm__quant_init();
    llm__quant_init(); /* idempotent */
    TEST_RUN(test_tables);
    TEST_RUN(test_q8_semantics);
    const char *prev = NULL;
    for (size_t l = 0; isa_next(&l, &prev); l++) {
        TEST_RUN(test_golden_vectors);
        TEST_RUN(test_f16_conversions);
        TEST_RUN(test_from_float_fast_vs_ref);
        TEST_RUN(test_vec_dot_fast_vs_ref);
        TEST_RUN(test_gemm_vs_ref);
        TEST_RUN(test_exp_row);
    }
    TEST_RUN(test_exp_row_scalar);
    TEST_RUN(test_isa_levels_agree);
    TEST_RUN(test_vec_dot_ref_vs_f64);
    TEST_RUN(test_vs_ggml);
    const char *bench = getenv("LLM_QUANT_BENCH");
    if (bench && *bench && strcmp(bench, "0") != 0)
        run_bench();
    printf("instruction sets tested: %s\n", isa_tested[0] ? isa_tested : "scalar only");
    return test_summary();
}
