/* test_quants_iq.c - the i-quant kernels (backends/cpu/quants_iq.c, quants_iq_avx2.c,
 * quants_neon.c).
 *
 * (a) to_float of the reference and of llm__quant_best equals the gguf package's
 *     dequantisation bit for bit on random blocks (tests/data/quant_vectors_iq.bin, written
 *     by tests/unit/gen_quant_vectors_iq.py);
 * (b) the reference vec_dot agrees with a float64 dot of the dequantised weight row and the
 *     dequantised activation row, to 1e-5 of the sum of |terms| (only the float rounding of
 *     the block scales differs);
 * (c) the fast vec_dot equals the reference bit for bit (both form the same exact integer
 *     sums and apply the float scales in the same order);
 * (d) a model whose tensor has a type the CPU backend lacks is refused at load with the
 *     tensor and type named.
 * Rows are random bytes with sane f16 scales, of random lengths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#include "../../backends/cpu/quants_iq.h"
#include "../../lib/backend.h"
#include "test.h"

static const uint32_t iq_types[] = {LLM_DT_IQ4_NL, LLM_DT_IQ4_XS, LLM_DT_IQ2_XXS,
                                    LLM_DT_IQ2_XS, LLM_DT_IQ2_S,  LLM_DT_IQ3_XXS,
                                    LLM_DT_IQ3_S,  LLM_DT_IQ1_S};
#define N_IQ (sizeof iq_types / sizeof iq_types[0])

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rand_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rand_f(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rand_u32() & 0xffffff) / (float)0x1000000;
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

/* ---- (a) golden vectors ----------------------------------------------------------- */

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_golden_dequant(void)
{
    size_t len = 0;
    unsigned char *buf =
        (unsigned char *)test_read_source("tests/data/quant_vectors_iq.bin", &len);
    CHECK_MSG(buf != NULL, "cannot read tests/data/quant_vectors_iq.bin");
    if (!buf)
        return;
    CHECK(len >= 12 && memcmp(buf, "LLMQVEC1", 8) == 0);
    const uint32_t count = rd32(buf + 8);
    size_t at = 12;
    int seen[LLM_DT_COUNT] = {0};
    for (uint32_t r = 0; r < count; r++) {
        if (at + 16 > len)
            break;
        const uint32_t kind = rd32(buf + at), type = rd32(buf + at + 4), n = rd32(buf + at + 8),
                       nbytes = rd32(buf + at + 12);
        at += 16;
        if (kind != 0 || type >= LLM_DT_COUNT || at + nbytes + (size_t)n * 4 > len) {
            CHECK_MSG(0, "malformed record %u", r);
            break;
        }
        const unsigned char *bytes = buf + at;
        float *want = xmalloc((size_t)n * sizeof(float)), *got = xmalloc((size_t)n * sizeof(float));
        memcpy(want, buf + at + nbytes, (size_t)n * sizeof(float));
        at += nbytes + (size_t)n * 4;
        CHECK_EQ_INT(llm__dtype_row_size(type, n), nbytes);
        const llm_quant_traits *tables[2] = {&llm__quant_ref[type], &llm__quant_best[type]};
        for (int t = 0; t < 2; t++) {
            CHECK_MSG(tables[t]->to_float != NULL, "%s has no to_float", dt_name(type));
            if (!tables[t]->to_float)
                continue;
            memset(got, 0xff, (size_t)n * sizeof(float));
            tables[t]->to_float(bytes, got, n);
            uint32_t bad = 0, first = 0;
            for (uint32_t i = 0; i < n; i++)
                if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ == 0)
                    first = i;
            CHECK_MSG(bad == 0, "%s %s: %u of %u values differ, first at %u: %.9g vs %.9g",
                      dt_name(type), t ? "best" : "ref", bad, n, first, got[first], want[first]);
        }
        seen[type] = 1;
        free(want);
        free(got);
    }
    for (size_t i = 0; i < N_IQ; i++)
        CHECK_MSG(seen[iq_types[i]], "no golden record for %s", dt_name(iq_types[i]));
    free(buf);
}

/* ---- (b), (c) dot products ---------------------------------------------------------- */

static void random_row(uint32_t t, void *buf, int64_t n)
{
    const llm_dtype_info *info = llm__dtype_info(t);
    unsigned char *p = buf;
    const size_t bytes = llm__dtype_row_size(t, n);
    for (size_t i = 0; i < bytes; i++)
        p[i] = (unsigned char)rand_u32();
    for (int64_t b = 0; b < n / info->block; b++) {
        const float m = expf(rand_f(logf(1e-3f), logf(1.0f)));
        const llm_f16 d = llm__f32_to_f16(rand_u32() & 1 ? -m : m);
        memcpy(p + (size_t)b * (size_t)info->type_size, &d, sizeof d); /* d comes first */
    }
}

static void test_vec_dot(void)
{
    const int64_t NMAX = 4096;
    void *w = xmalloc(llm__dtype_row_size(LLM_DT_F32, NMAX));
    void *a = xmalloc(llm__dtype_row_size(LLM_DT_F32, NMAX));
    float *act = xmalloc(NMAX * sizeof(float)), *wf = xmalloc(NMAX * sizeof(float)),
          *af = xmalloc(NMAX * sizeof(float));
    for (size_t ti = 0; ti < N_IQ; ti++) {
        const uint32_t t = iq_types[ti];
        const llm_quant_traits *ref = &llm__quant_ref[t], *best = &llm__quant_best[t];
        CHECK(ref->vec_dot && best->vec_dot && ref->vec_dot_type == best->vec_dot_type);
#if defined(__aarch64__)
        /* NEON is in every 64-bit ARM CPU: the fast table holds its kernel (quants_neon.c) */
        CHECK_MSG(best->vec_dot != ref->vec_dot, "%s", dt_name(t));
#endif
        if (!ref->vec_dot || !best->vec_dot)
            continue;
        const uint32_t vt = ref->vec_dot_type;
        const int block = llm__dtype_info(t)->block;
        int worst_ref = 0, inexact = 0;
        double worst = 0.0;
        for (int rep = 0; rep < 60; rep++) {
            const int64_t n = block * (int64_t)(1 + rand_u32() % (NMAX / block));
            random_row(t, w, n);
            float mag = 1.0f;
            for (int64_t i = 0; i < n; i++) {
                if (i % 32 == 0)
                    mag = expf(rand_f(logf(1e-3f), logf(1e2f)));
                act[i] = rand_f(-3, 3) * mag;
            }
            llm__quant_ref[vt].from_float(act, a, n);
            float s_ref = NAN, s_best = NAN;
            ref->vec_dot(n, &s_ref, w, a);
            best->vec_dot(n, &s_best, w, a);
            ref->to_float(w, wf, n);
            llm__quant_ref[vt].to_float(a, af, n);
            double exact = 0.0, mag_sum = 0.0;
            for (int64_t i = 0; i < n; i++) {
                exact += (double)wf[i] * (double)af[i];
                mag_sum += fabs((double)wf[i] * (double)af[i]);
            }
            const double err = fabs((double)s_ref - exact) / (mag_sum > 0 ? mag_sum : 1);
            worst = err > worst ? err : worst;
            worst_ref += !(err <= 1e-5);
            inexact += memcmp(&s_ref, &s_best, sizeof s_ref) != 0;
        }
        CHECK_MSG(worst_ref == 0, "%s: reference dot off the float64 dot by %.3g of sum|xy|",
                  dt_name(t), worst);
        CHECK_MSG(inexact == 0, "%s: fast dot differs from the reference in %d of 60 rows",
                  dt_name(t), inexact);
    }
    free(w);
    free(a);
    free(act);
    free(wf);
    free(af);
}

/* ---- (d) refusal ---------------------------------------------------------------------- */

static void test_unsupported_refused(void)
{
    const struct llm_backend_ops *ops = llm__backend_cpu_ops();
    llm_backend_config cfg = {.n_threads = 1};
    llm_backend *be = NULL;
    CHECK(ops->create(&cfg, &be) == LLM_OK);
    if (!be)
        return;
    for (size_t i = 0; i < N_IQ; i++)
        CHECK_MSG(ops->supports_dtype(be, iq_types[i]), "%s", dt_name(iq_types[i]));
    /* IQ1_M and the ternary types have no kernels here */
    static unsigned char zeros[4096];
    llm_tensor w = {.name = "blk.7.ffn_down.weight", .dtype = LLM_DT_IQ1_M, .ne = {256, 2},
                    .row_bytes = llm__dtype_row_size(LLM_DT_IQ1_M, 256), .data = zeros};
    CHECK(ops->prepare_weight(be, &w) == LLM_ERR_UNSUPPORTED);
    const char *msg = llm_last_error();
    CHECK_MSG(strstr(msg, "blk.7.ffn_down.weight") && strstr(msg, "iq1_m"), "message: %s", msg);
    ops->destroy(be);
}

#if defined(__aarch64__) && defined(__linux__)
/* The run-time choice on 64-bit ARM: the dotprod build exactly when the kernel reports the
 * instructions (scripts/test-aarch64 runs this program on emulated CPUs with and without). */
static void test_neon_dispatch(void)
{
    const int dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
    CHECK(llm__quant_select("native") == 1);
    CHECK_MSG(strcmp(llm__cpu_features(), dotprod ? "neon,dotprod" : "neon") == 0, "%s",
              llm__cpu_features());
    CHECK(llm__quant_select("neon") == 1);
    CHECK(strcmp(llm__cpu_features(), "neon") == 0);
    CHECK(llm__quant_select("avx2") == 0);
    const char *env = getenv("LLM_CPU_ISA");
    if (!env || !*env || !llm__quant_select(env))
        llm__quant_select("native");
}
#endif

int main(void)
{
    llm__quant_init();
    printf("cpu features: %s\n", llm__cpu_features());
    TEST_RUN(test_golden_dequant);
    TEST_RUN(test_vec_dot);
    TEST_RUN(test_unsupported_refused);
#if defined(__aarch64__) && defined(__linux__)
    TEST_RUN(test_neon_dispatch);
#endif
    return test_summary();
}
