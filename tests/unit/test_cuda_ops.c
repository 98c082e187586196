/* test_cuda_ops.c - every op of the CUDA backend against the CPU backend (and, for matmul,
 * a float64 evaluation of the same dequantized weights) on fresh random inputs. Outputs on
 * the device are poisoned with NaN before each op, so an unwritten element fails.
 *
 * Without the module (no nvcc at build time) or without a driver and device, the program
 * says why and exits with 77, which meson reports as SKIP. */
#include <math.h>
#include <stdint.h>

#include "backend.h"
#include "quants.h"
#include "test.h"
#include "topk_ref.h"

static const struct llm_backend_ops *cpu, *gpu;
static llm_backend *cbe, *gbe, *gbe_model; /* gbe_model prepares, gbe runs: as a context */
static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static float *rand_buf(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = test_rand_f32(&rng, lo, hi);
    return p;
}

/* device copy of host bytes (waits, so the host buffer may go) */
static void *dev_copy(const void *h, size_t bytes)
{
    void *d = gpu->alloc(gbe, bytes);
    gpu->upload(gbe, d, h, bytes);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    return d;
}

/* device buffer of n floats, all NaN */
static float *dev_poisoned(int64_t n)
{
    float *h = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        h[i] = NAN;
    float *d = dev_copy(h, (size_t)n * sizeof(float));
    free(h);
    return d;
}

static void *host_copy(const void *d, size_t bytes)
{
    void *h = malloc(bytes ? bytes : 1);
    CHECK(gpu->download(gbe, h, d, bytes) == LLM_OK);
    return h;
}

/* ||a - b|| / ||b|| over n elements (rows of `cols` at strides lda, ldb); NaN gives inf */
static double rel_err_strided(const float *a, int64_t lda, const double *b, int64_t ldb,
                              int64_t rows, int64_t cols)
{
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const double x = a[r * lda + c], y = b[r * ldb + c];
            if (isnan(x) || isinf(x))
                return INFINITY;
            num += (x - y) * (x - y);
            den += y * y;
        }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double *bd = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        bd[i] = b[i];
    double e = rel_err_strided(a, n, bd, n, 1, n);
    free(bd);
    return e;
}

/* A second GPU backend instance created with env var name set to value (NULL on failure,
 * with a failed check). */
static llm_backend *gpu_with_env(const char *name, const char *value)
{
    setenv(name, value, 1);
    llm_backend *be = NULL;
    llm_backend_config cfg = {0};
    CHECK(gpu->create(&cfg, &be) == LLM_OK);
    unsetenv(name);
    return be;
}

/* ---- weights ------------------------------------------------------------------------- */

static const uint32_t all_types[] = {LLM_DT_F32,  LLM_DT_F16,  LLM_DT_BF16, LLM_DT_Q4_0,
                                     LLM_DT_Q4_1, LLM_DT_Q5_0, LLM_DT_Q5_1, LLM_DT_Q8_0,
                                     LLM_DT_Q2_K, LLM_DT_Q3_K, LLM_DT_Q4_K, LLM_DT_Q5_K,
                                     LLM_DT_Q6_K, LLM_DT_IQ4_NL, LLM_DT_IQ4_XS};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Random rows of type t: floats for the float types, random bits for the quantized ones
 * with their f16 scales set to sane random values (random bits there would be NaN/inf). */
static void *rand_weight(uint32_t t, int64_t k, int64_t rows, size_t *row_bytes)
{
    const llm_dtype_info *info = llm__dtype_info(t);
    *row_bytes = llm__dtype_row_size(t, k);
    const size_t bytes = *row_bytes * (size_t)rows;
    uint8_t *p = malloc(bytes);
    if (t == LLM_DT_F32 || t == LLM_DT_F16 || t == LLM_DT_BF16) {
        float *f = rand_buf(k * rows, -1, 1);
        for (int64_t i = 0; i < k * rows; i++) {
            if (t == LLM_DT_F32)
                ((float *)p)[i] = f[i];
            else if (t == LLM_DT_F16)
                ((llm_f16 *)p)[i] = llm__f32_to_f16(f[i]);
            else
                ((llm_bf16 *)p)[i] = llm__f32_to_bf16(f[i]);
        }
        free(f);
        return p;
    }
    for (size_t i = 0; i < bytes; i++)
        p[i] = (uint8_t)test_rand_u64(&rng);
    /* offsets of the f16 fields of each block */
    int off[2] = {-1, -1};
    switch (t) {
    case LLM_DT_Q4_0: case LLM_DT_Q5_0: case LLM_DT_Q8_0: case LLM_DT_IQ4_NL:
    case LLM_DT_IQ4_XS: off[0] = 0; break;
    case LLM_DT_Q4_1: case LLM_DT_Q5_1: case LLM_DT_Q4_K: case LLM_DT_Q5_K:
        off[0] = 0, off[1] = 2; break;
    case LLM_DT_Q2_K: off[0] = 80, off[1] = 82; break;
    case LLM_DT_Q3_K: off[0] = 108; break;
    case LLM_DT_Q6_K: off[0] = 208; break;
    default: break;
    }
    const size_t nb = bytes / (size_t)info->type_size;
    for (size_t b = 0; b < nb; b++)
        for (int j = 0; j < 2; j++)
            if (off[j] >= 0) {
                llm_f16 h = llm__f32_to_f16(test_rand_f32(&rng, 0.001f, 0.05f));
                memcpy(p + b * (size_t)info->type_size + off[j], &h, sizeof h);
            }
    return p;
}

/* ---- matmul -------------------------------------------------------------------------- */

static void matmul_case(uint32_t t, int64_t k, int64_t rows, int64_t n)
{
    size_t rb;
    void *wh = rand_weight(t, k, rows, &rb);
    llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = wh};
    snprintf(w.name, sizeof w.name, "w_%s", llm__dtype_info(t)->name);
    CHECK(gpu->prepare_weight(gbe_model, &w) == LLM_OK);
    const int64_t ldx = k + 8, ldy = rows + 5;
    float *x = rand_buf(n * ldx, -1, 1);
    float *dx = dev_copy(x, (size_t)(n * ldx) * sizeof(float));
    float *dy = dev_poisoned(n * ldy);
    gpu->matmul(gbe, dy, ldy, &w, dx, ldx, n);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    float *y = host_copy(dy, (size_t)(n * ldy) * sizeof(float));

    /* float64 over the CPU's dequantized weights and its rounded activations (the weight
     * type's vec_dot_type, as the CPU backend rounds them before its dot products) */
    const uint32_t vt = llm__quant_ref[t].vec_dot_type;
    float *xr = malloc((size_t)(n * k) * sizeof(float));
    void *xq = malloc(llm__dtype_row_size(vt, k));
    for (int64_t j = 0; j < n; j++) {
        llm__quant_ref[vt].from_float(x + j * ldx, xq, k);
        llm__quant_ref[vt].to_float(xq, xr + j * k, k);
    }
    float *wf = malloc((size_t)k * sizeof(float));
    double *ref = malloc((size_t)(n * rows) * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        llm__quant_ref[t].to_float((const char *)wh + (size_t)r * rb, wf, k);
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t i = 0; i < k; i++)
                s += (double)wf[i] * xr[j * k + i];
            ref[j * rows + r] = s;
        }
    }
    /* f32 sums on the decode path; 16-bit operands (bf16: 8 mantissa bits) past 8 tokens */
    const int gemm_path = n > 8 && t != LLM_DT_F32;
    const double tol = !gemm_path ? 1e-5 : t == LLM_DT_BF16 ? 1e-2 : 3e-3;
    const double e = rel_err_strided(y, ldy, ref, rows, n, rows);
    CHECK_MSG(e < tol, "%s k=%lld rows=%lld n=%lld: error %.3g vs float64 (tolerance %g)",
              llm__dtype_info(t)->name, (long long)k, (long long)rows, (long long)n, e, tol);
    /* and the CPU backend itself (integer block sums, another summation order) */
    float *yc = malloc((size_t)(n * ldy) * sizeof(float));
    llm_tensor wc = w;
    wc.extra = NULL; /* the CPU backend's own preparation data would live there */
    cpu->matmul(cbe, yc, ldy, &wc, x, ldx, n);
    double *ycd = malloc((size_t)(n * ldy) * sizeof(double));
    for (int64_t i = 0; i < n * ldy; i++)
        ycd[i] = yc[i];
    const double ec = rel_err_strided(y, ldy, ycd, ldy, n, rows);
    const double tol_cpu = !gemm_path ? 1e-4 : t == LLM_DT_BF16 ? 1e-2 : 3e-3;
    CHECK_MSG(ec < tol_cpu, "%s n=%lld: error %.3g vs the CPU backend (tolerance %g)",
              llm__dtype_info(t)->name, (long long)n, ec, tol_cpu);
    /* the padding between rows stays untouched (NaN) */
    int pad_ok = 1;
    for (int64_t j = 0; j < n; j++)
        for (int64_t r = rows; r < ldy; r++)
            pad_ok &= isnan(y[j * ldy + r]) != 0;
    CHECK_MSG(pad_ok, "%s: matmul wrote past its rows", llm__dtype_info(t)->name);
    gpu->release_weight(gbe_model, &w);
    gpu->free(gbe, dx), gpu->free(gbe, dy);
    free(wh), free(x), free(y), free(wf), free(ref), free(yc), free(ycd), free(xr), free(xq);
}

static void test_matmul(void)
{
    const int64_t ns[] = {1, 2, 3, 5, 8, 9, 40};
    for (size_t i = 0; i < N_TYPES; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            matmul_case(all_types[i], 512, 67, ns[j]);
    /* rows of a length that is not a multiple of 8 (float types only) */
    matmul_case(LLM_DT_F32, 100, 33, 1);
    matmul_case(LLM_DT_F16, 100, 33, 3);
    matmul_case(LLM_DT_BF16, 100, 33, 1);
    matmul_case(LLM_DT_F16, 100, 33, 20);
    /* rows long enough for the 8-bit kernel's two units in flight plus a tail */
    matmul_case(LLM_DT_Q4_K, 4352, 40, 1);
    matmul_case(LLM_DT_Q4_K, 4352, 40, 3);
    matmul_case(LLM_DT_Q5_K, 4352, 40, 2);
    matmul_case(LLM_DT_Q6_K, 4352, 40, 1);
    matmul_case(LLM_DT_Q6_K, 4352, 40, 8);
    matmul_case(LLM_DT_Q8_0, 2080, 40, 5);
    matmul_case(LLM_DT_Q5_0, 2080, 41, 1);
    matmul_case(LLM_DT_Q4_0, 2080, 41, 1);
    /* matrices of 2048 rows or more: several rows per warp group for these types (the
     * row counts leave a last group short) */
    matmul_case(LLM_DT_Q4_K, 512, 2051, 1);
    matmul_case(LLM_DT_Q4_K, 512, 2050, 3);
    matmul_case(LLM_DT_Q6_K, 512, 2049, 2);
    matmul_case(LLM_DT_Q8_0, 512, 2051, 5);
    matmul_case(LLM_DT_Q8_0, 8192, 2049, 1);
    /* long 16-bit rows: two warps per row, an odd number of rows */
    matmul_case(LLM_DT_BF16, 8200, 37, 1);
    matmul_case(LLM_DT_F16, 9000, 35, 3);
    /* a weight larger than one expansion slice of the cuBLAS path (kept expanded here) */
    matmul_case(LLM_DT_Q4_0, 4096, 8300, 16);
}

/* The cuBLAS path with quantized weights expanded slice by slice at every call (as where
 * the device has no room to keep them expanded) instead of once. */
static void test_matmul_slices(void)
{
    llm_backend *keep = gbe, *sl = gpu_with_env("LLM_CUDA_F16_WEIGHTS", "0");
    if (!sl)
        return;
    gbe = sl;
    for (size_t i = 3; i < N_TYPES; i++) /* the quantized types */
        matmul_case(all_types[i], 512, 67, 40);
    matmul_case(LLM_DT_Q4_0, 4096, 8300, 16); /* more than one slice */
    gbe = keep;
    gpu->destroy(sl);
}

/* cuBLAS products (more than 8 tokens) of the same activations and shape run two at a time
 * as one strided batch (k and v; gate and up), in either order of the weights in memory;
 * a product of another shape, or of the same output rows, runs alone. Each output equals
 * a lone product's (LLM_CUDA_FUSE=0) within f32 summation noise, and the padding between
 * output rows stays untouched. */
static void test_gemm_pairs(void)
{
    llm_backend *plain = gpu_with_env("LLM_CUDA_FUSE", "0");
    if (!plain)
        return;
    static const uint32_t types[] = {LLM_DT_BF16, LLM_DT_F16, LLM_DT_Q4_K, LLM_DT_Q8_0};
    enum { NW = 3, NP = 8, NY = 7 };
    const int64_t k = 512, rows = 96, rows_d = 64, ldy = rows + 3;
    /* the products (weight, output): w3 has other rows; (w1, y5) then (w0, y4) lie the
     * other way round in memory (as allocated); y6 is written twice */
    static const int prod[NP][2] = {{0, 0}, {1, 1}, {2, 2}, {3, 3},
                                    {1, 5}, {0, 4}, {2, 6}, {1, 6}};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int64_t n = 40; n <= 300; n += 260) {
            const uint32_t t = types[ti];
            void *wh[NW + 1];
            llm_tensor w[NW + 1];
            for (int i = 0; i <= NW; i++) {
                size_t rb;
                const int64_t r = i == NW ? rows_d : rows;
                wh[i] = rand_weight(t, k, r, &rb);
                w[i] = (llm_tensor){.dtype = t, .ne = {k, r}, .row_bytes = rb, .data = wh[i]};
                snprintf(w[i].name, sizeof w[i].name, "pair.w%d", i);
                CHECK(gpu->prepare_weight(gbe_model, &w[i]) == LLM_OK);
            }
            float *x = rand_buf(n * k, -1, 1), *dx = dev_copy(x, (size_t)(n * k) * 4);
            float *out[2][NY];
            for (int b = 0; b < 2; b++) {
                llm_backend *be = b == 0 ? gbe : plain;
                float *dy[NY];
                for (int i = 0; i < NY; i++)
                    dy[i] = dev_poisoned(n * ldy);
                for (int i = 0; i < NP; i++)
                    gpu->matmul(be, dy[prod[i][1]], ldy, &w[prod[i][0]], dx, k, n);
                CHECK(gpu->synchronize(be) == LLM_OK);
                for (int i = 0; i < NY; i++) {
                    out[b][i] = host_copy(dy[i], (size_t)(n * ldy) * 4);
                    gpu->free(be, dy[i]);
                }
            }
            for (int i = 0; i < NY; i++) {
                const int64_t r = i == 3 ? rows_d : rows;
                double *ref = malloc((size_t)(n * ldy) * sizeof(double));
                int pad_ok = 1, finite = 1;
                for (int64_t e = 0; e < n * ldy; e++) {
                    ref[e] = out[1][i][e];
                    if (e % ldy >= r)
                        pad_ok &= isnan(out[0][i][e]) != 0;
                    else
                        finite &= isfinite(out[0][i][e]) != 0;
                }
                const double err = rel_err_strided(out[0][i], ldy, ref, ldy, n, r);
                CHECK_MSG(pad_ok && finite && err < 1e-5,
                          "%s n=%lld output %d: error %.3g against lone products, padding %s, "
                          "rows %s", llm__dtype_info(t)->name, (long long)n, i, err,
                          pad_ok ? "kept" : "written", finite ? "written" : "NOT written");
                free(ref), free(out[0][i]), free(out[1][i]);
            }
            for (int i = 0; i <= NW; i++) {
                gpu->release_weight(gbe_model, &w[i]);
                free(wh[i]);
            }
            gpu->free(gbe, dx);
            free(x);
        }
    gpu->destroy(plain);
}

/* Matmuls in a row on the same activations (q, k, v; gate, up) share one quantization of
 * them; any op that writes them in between must make the next matmul quantize again. */
static void test_activation_reuse(void)
{
    const int64_t k = 512, rows = 64, n = 2;
    size_t rb0, rb8;
    void *h0 = rand_weight(LLM_DT_Q4_0, k, rows, &rb0);
    void *h8 = rand_weight(LLM_DT_Q8_0, k, rows, &rb8);
    llm_tensor w0 = {.name = "w0", .dtype = LLM_DT_Q4_0, .ne = {k, rows}, .row_bytes = rb0,
                     .data = h0};
    llm_tensor w8 = {.name = "w8", .dtype = LLM_DT_Q8_0, .ne = {k, rows}, .row_bytes = rb8,
                     .data = h8};
    CHECK(gpu->prepare_weight(gbe_model, &w0) == LLM_OK);
    CHECK(gpu->prepare_weight(gbe_model, &w8) == LLM_OK);
    float *x = rand_buf(n * k, -1, 1);
    float *dx = dev_copy(x, (size_t)(n * k) * sizeof(float));
    float *d1 = dev_poisoned(n * rows), *d2 = dev_poisoned(n * rows), *d3 = dev_poisoned(n * rows);
    float *d4 = dev_poisoned(n * rows);
    gpu->matmul(gbe, d1, rows, &w0, dx, k, n);
    gpu->matmul(gbe, d2, rows, &w8, dx, k, n); /* the quantized x of the first */
    gpu->scale(gbe, dx, dx, 2.0f, n * k);      /* x doubled in place */
    gpu->matmul(gbe, d3, rows, &w8, dx, k, n); /* must see the doubled x */
    gpu->matmul(gbe, d4, rows, &w0, dx, k, n);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    float *y1 = host_copy(d1, (size_t)(n * rows) * 4), *y2 = host_copy(d2, (size_t)(n * rows) * 4);
    float *y3 = host_copy(d3, (size_t)(n * rows) * 4), *y4 = host_copy(d4, (size_t)(n * rows) * 4);
    /* doubling x doubles every 8-bit block scale exactly and keeps the integers */
    int same = 1;
    for (int64_t i = 0; i < n * rows; i++)
        same &= y3[i] == 2.0f * y2[i] && y4[i] == 2.0f * y1[i];
    CHECK_MSG(same, "a matmul after an in-place op used the activations from before it");
    /* and the shared quantization gives what a lone matmul gives */
    float *d5 = dev_poisoned(n * rows);
    gpu->matmul(gbe, d5, rows, &w8, dx, k, n);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    float *y5 = host_copy(d5, (size_t)(n * rows) * 4);
    CHECK(memcmp(y5, y3, (size_t)(n * rows) * 4) == 0);
    /* the same for the 16-bit kernel's converted activations (x doubled again) */
    size_t rbb;
    void *hb = rand_weight(LLM_DT_BF16, k, rows, &rbb);
    llm_tensor wb = {.name = "wb", .dtype = LLM_DT_BF16, .ne = {k, rows}, .row_bytes = rbb,
                     .data = hb};
    CHECK(gpu->prepare_weight(gbe_model, &wb) == LLM_OK);
    float *d6 = dev_poisoned(n * rows), *d7 = dev_poisoned(n * rows);
    gpu->matmul(gbe, d6, rows, &wb, dx, k, n);
    gpu->matmul(gbe, d7, rows, &wb, dx, k, n); /* the converted x of the one before */
    gpu->scale(gbe, dx, dx, 2.0f, n * k);
    gpu->matmul(gbe, d5, rows, &wb, dx, k, n); /* must see the doubled x */
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    float *y6 = host_copy(d6, (size_t)(n * rows) * 4), *y7 = host_copy(d7, (size_t)(n * rows) * 4);
    free(y5);
    y5 = host_copy(d5, (size_t)(n * rows) * 4);
    same = memcmp(y6, y7, (size_t)(n * rows) * 4) == 0;
    for (int64_t i = 0; i < n * rows; i++)
        same &= y5[i] == 2.0f * y6[i];
    CHECK_MSG(same, "bf16: a matmul after an in-place op used the activations from before it");
    gpu->release_weight(gbe_model, &wb);
    gpu->free(gbe, d6), gpu->free(gbe, d7);
    free(hb), free(y6), free(y7);
    gpu->release_weight(gbe_model, &w0), gpu->release_weight(gbe_model, &w8);
    gpu->free(gbe, dx), gpu->free(gbe, d1), gpu->free(gbe, d2), gpu->free(gbe, d3);
    gpu->free(gbe, d4), gpu->free(gbe, d5);
    free(h0), free(h8), free(x), free(y1), free(y2), free(y3), free(y4), free(y5);
}

static void test_get_rows(void)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        const uint32_t t = all_types[i];
        const int64_t k = 512, rows = 40, n = 9;
        size_t rb;
        void *wh = rand_weight(t, k, rows, &rb);
        llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = wh};
        CHECK(gpu->prepare_weight(gbe_model, &w) == LLM_OK);
        int32_t ids[9];
        for (int j = 0; j < n; j++)
            ids[j] = (int32_t)(test_rand_u64(&rng) % rows);
        int32_t *dids = dev_copy(ids, sizeof ids);
        float *dy = dev_poisoned(n * k), *yc = malloc((size_t)(n * k) * sizeof(float));
        gpu->get_rows(gbe, dy, &w, dids, n);
        CHECK(gpu->synchronize(gbe) == LLM_OK);
        llm_tensor wc = w;
        wc.extra = NULL;
        cpu->get_rows(cbe, yc, &wc, ids, n);
        float *y = host_copy(dy, (size_t)(n * k) * sizeof(float));
        const double e = rel_err(y, yc, n * k);
        CHECK_MSG(e < 1e-6, "get_rows %s: error %.3g", llm__dtype_info(t)->name, e);
        gpu->release_weight(gbe_model, &w);
        gpu->free(gbe, dids), gpu->free(gbe, dy);
        free(wh), free(yc), free(y);
    }
}

/* ---- element-wise ops ---------------------------------------------------------------- */

static void test_rms_norm(void)
{
    const int64_t rows = 7, dims[] = {576, 64, 4096, 1000, 8192, 12000};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t dim = dims[di];
        float *x = rand_buf(rows * dim, -3, 3), *wv = rand_buf(dim, 0.5f, 1.5f);
        llm_tensor w = {.dtype = LLM_DT_F32, .ne = {dim, 1}, .row_bytes = (size_t)dim * 4,
                        .data = wv};
        CHECK(gpu->prepare_weight(gbe_model, &w) == LLM_OK);
        float *dx = dev_copy(x, (size_t)(rows * dim) * 4), *dy = dev_poisoned(rows * dim);
        float *yc = malloc((size_t)(rows * dim) * 4);
        for (int with_w = 0; with_w < 2; with_w++) {
            gpu->rms_norm(gbe, dy, dx, with_w ? &w : NULL, rows, dim, 1e-5f);
            cpu->rms_norm(cbe, yc, x, with_w ? &w : NULL, rows, dim, 1e-5f);
            float *y = host_copy(dy, (size_t)(rows * dim) * 4);
            CHECK_MSG(rel_err(y, yc, rows * dim) < 1e-6, "rms_norm dim %lld: %.3g",
                      (long long)dim, rel_err(y, yc, rows * dim));
            free(y);
        }
        gpu->rms_norm(gbe, dx, dx, &w, rows, dim, 1e-5f); /* in place */
        float *y = host_copy(dx, (size_t)(rows * dim) * 4);
        CHECK(rel_err(y, yc, rows * dim) < 1e-6);
        gpu->release_weight(gbe_model, &w);
        gpu->free(gbe, dx), gpu->free(gbe, dy);
        free(x), free(wv), free(yc), free(y);
    }
}

static void test_rope(void)
{
    const int64_t n = 6;
    const int32_t heads = 3, hd = 128;
    const int32_t pos[6] = {0, 1, 17, 300, 4095, 70000};
    for (int mode = 0; mode <= LLM_ROPE_NEOX; mode += LLM_ROPE_NEOX)
        for (int n_rot = 64; n_rot <= 128; n_rot += 64)
            for (int with_ff = 0; with_ff < 2; with_ff++) {
                float *x = rand_buf(n * heads * hd, -1, 1), *ffv = rand_buf(n_rot / 2, 1, 8);
                llm_tensor ff = {.dtype = LLM_DT_F32, .ne = {n_rot / 2, 1},
                                 .row_bytes = (size_t)n_rot * 2, .data = ffv};
                CHECK(gpu->prepare_weight(gbe_model, &ff) == LLM_OK);
                float *dx = dev_copy(x, (size_t)(n * heads * hd) * 4);
                int32_t *dpos = dev_copy(pos, sizeof pos);
                gpu->rope(gbe, dx, n, heads, hd, n_rot, dpos, 500000.0f, 0.5f,
                          with_ff ? &ff : NULL, mode);
                cpu->rope(cbe, x, n, heads, hd, n_rot, pos, 500000.0f, 0.5f,
                          with_ff ? &ff : NULL, mode);
                float *y = host_copy(dx, (size_t)(n * heads * hd) * 4);
                const double e = rel_err(y, x, n * heads * hd);
                CHECK_MSG(e < 1e-5, "rope mode %d n_rot %d ff %d: %.3g", mode, n_rot, with_ff, e);
                gpu->release_weight(gbe_model, &ff);
                gpu->free(gbe, dx), gpu->free(gbe, dpos);
                free(x), free(ffv), free(y);
            }
}

static void test_glu_add_scale_copy(void)
{
    const int64_t n = 100003;
    float *g = rand_buf(n, -12, 12), *u = rand_buf(n, -2, 2);
    float *dg = dev_copy(g, (size_t)n * 4), *du = dev_copy(u, (size_t)n * 4);
    float *yc = malloc((size_t)n * 4);
    for (int act = 0; act <= LLM_ACT_GELU_TANH; act++) {
        float *dy = dev_poisoned(n);
        gpu->glu(gbe, dy, dg, du, n, act);
        cpu->glu(cbe, yc, g, u, n, act);
        float *y = host_copy(dy, (size_t)n * 4);
        CHECK_MSG(rel_err(y, yc, n) < 1e-5, "glu act %d: %.3g", act, rel_err(y, yc, n));
        free(y);
        gpu->free(gbe, dy);
    }
    float *dy = dev_poisoned(n);
    gpu->add(gbe, dy, dg, du, n);
    cpu->add(cbe, yc, g, u, n);
    float *y = host_copy(dy, (size_t)n * 4);
    CHECK(memcmp(y, yc, (size_t)n * 4) == 0);
    free(y);
    gpu->add(gbe, dg, dg, du, n); /* in place */
    y = host_copy(dg, (size_t)n * 4);
    CHECK(memcmp(y, yc, (size_t)n * 4) == 0);
    free(y);
    gpu->scale(gbe, dy, du, 0.37f, n);
    cpu->scale(cbe, yc, u, 0.37f, n);
    y = host_copy(dy, (size_t)n * 4);
    CHECK(memcmp(y, yc, (size_t)n * 4) == 0);
    free(y);
    /* copy_rows: rows of 1000 picked in any order */
    const int32_t rows[5] = {99, 3, 3, 0, 50};
    int32_t *drows = dev_copy(rows, sizeof rows);
    float *dc = dev_poisoned(5 * 1000);
    gpu->copy_rows(gbe, dc, du, 1000, drows, 5);
    cpu->copy_rows(cbe, yc, u, 1000, rows, 5);
    y = host_copy(dc, 5 * 1000 * 4);
    CHECK(memcmp(y, yc, 5 * 1000 * 4) == 0);
    free(y);
    gpu->free(gbe, dg), gpu->free(gbe, du), gpu->free(gbe, dy), gpu->free(gbe, drows);
    gpu->free(gbe, dc);
    free(g), free(u), free(yc);
}

/* ---- top_k: against the sorted reference, rows of every hard kind --------------------- */

static void test_top_k(void)
{
    static const int64_t ns[] = {1, 5, 300, 49152, 131075, 262144};
    static const int32_t ks[] = {1, 7, 64, LLM_TOP_K_MAX};
    int checked = 0;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            const int64_t n = ns[a], rows = 12;
            const int32_t k = ks[b];
            float *x = malloc((size_t)(n * rows) * sizeof(float));
            for (int r = 0; r < rows; r++)
                topk_fill(x + r * n, n, r, &rng);
            float *dx = dev_copy(x, (size_t)(n * rows) * sizeof(float));
            float *dv = dev_poisoned(rows * k);
            int32_t *di = (int32_t *)dev_poisoned(rows * k);
            gpu->top_k(gbe, di, dv, dx, rows, n, k);
            int32_t *ids = host_copy(di, (size_t)(rows * k) * sizeof(int32_t));
            float *vals = host_copy(dv, (size_t)(rows * k) * sizeof(float));
            checked += topk_check_rows(x, n, (int)rows, k, ids, vals);
            gpu->free(gbe, dx), gpu->free(gbe, dv), gpu->free(gbe, di);
            free(x), free(ids), free(vals);
        }
    }
    printf("     %d rows equal to the sorted reference\n", checked);
    gpu->top_k(gbe, NULL, NULL, NULL, 1, 10, LLM_TOP_K_MAX + 1);
    CHECK_EQ_INT(gpu->synchronize(gbe), LLM_ERR_INVALID_ARG);
}

/* The sampler's penalties (before top_k): the same bits as the CPU backend's, which
 * test_sampler holds to the sampler's own; logits of both signs, zero, infinities, NaN (a
 * NaN only needs to stay a NaN: its payload is the hardware's). */
static void test_penalize(void)
{
    const int64_t n = 50000, rows = 7, n_pen = 600;
    float *x = malloc((size_t)(n * rows) * sizeof(float));
    for (int r = 0; r < rows; r++)
        topk_fill(x + r * n, n, r, &rng);
    llm_penalty *pen = malloc((size_t)n_pen * sizeof *pen);
    for (int64_t i = 0; i < n_pen; i++) { /* distinct logits: token i * 83 of row i % 7 */
        pen[i].row = (int32_t)(i % rows);
        pen[i].token = (int32_t)((i * 83) % n);
        pen[i].repeat = i % 5 == 0 ? 1.0f : test_rand_f32(&rng, 0.5f, 2.0f);
        pen[i].sub = i % 3 == 0 ? 0.0f : test_rand_f32(&rng, -2.0f, 3.0f);
    }
    float *dx = dev_copy(x, (size_t)(n * rows) * sizeof(float));
    llm_penalty *dp = dev_copy(pen, (size_t)n_pen * sizeof *pen);
    gpu->penalize(gbe, dx, n, dp, n_pen);
    cpu->penalize(cbe, x, n, pen, n_pen);
    float *y = host_copy(dx, (size_t)(n * rows) * sizeof(float));
    int64_t differ = 0;
    for (int64_t i = 0; i < n * rows; i++)
        differ += isnan(x[i]) ? !isnan(y[i]) : memcmp(&x[i], &y[i], sizeof(float)) != 0;
    CHECK_MSG(differ == 0, "%lld logits differ after the penalties", (long long)differ);
    /* each row's mass for top-p: the CPU's within the exponentials' rounding */
    float *dz = dev_poisoned(rows), zc[7];
    gpu->row_sumexp(gbe, dz, dx, rows, n);
    cpu->row_sumexp(cbe, zc, x, rows, n);
    float *zg = host_copy(dz, (size_t)rows * sizeof(float));
    for (int r = 0; r < rows; r++)
        CHECK_MSG(zc[r] == zg[r] || fabs((double)zg[r] - zc[r]) <= 1e-6 * zc[r],
                  "row %d: mass %.9g, the CPU's %.9g", r, zg[r], zc[r]);
    gpu->free(gbe, dz);
    free(zg);
    gpu->free(gbe, dx), gpu->free(gbe, dp);
    free(x), free(y), free(pen);
}

/* ---- biases, soft-capping, mixture of experts ------------------------------------------ */

static void test_bias_softcap(void)
{
    const int64_t rows = 5, dim = 300;
    float *bv = rand_buf(dim, -1, 1), *x = rand_buf(rows * dim, -40, 40);
    llm_tensor b = {.name = "bias", .dtype = LLM_DT_F32, .ne = {dim, 1},
                    .row_bytes = (size_t)dim * 4, .data = bv};
    CHECK(gpu->prepare_weight(gbe_model, &b) == LLM_OK);
    float *dx = dev_copy(x, (size_t)(rows * dim) * 4), *dy = dev_poisoned(rows * dim);
    float *yc = malloc((size_t)(rows * dim) * 4);
    gpu->softcap(gbe, dy, dx, 30.0f, rows * dim);
    cpu->softcap(cbe, yc, x, 30.0f, rows * dim);
    float *y = host_copy(dy, (size_t)(rows * dim) * 4);
    CHECK_MSG(rel_err(y, yc, rows * dim) < 1e-6, "softcap: %.3g", rel_err(y, yc, rows * dim));
    free(y);
    gpu->add_bias(gbe, dx, &b, rows);
    cpu->add_bias(cbe, x, &b, rows);
    y = host_copy(dx, (size_t)(rows * dim) * 4);
    CHECK(memcmp(y, x, (size_t)(rows * dim) * 4) == 0);
    gpu->release_weight(gbe_model, &b);
    gpu->free(gbe, dx), gpu->free(gbe, dy);
    free(bv), free(x), free(yc), free(y);
}

static void test_moe(void)
{
    const int64_t n = 6;
    const int32_t n_expert = 16, k = 4;
    /* routing, with and without renormalised weights */
    for (int norm = 0; norm < 2; norm++) {
        float *l = rand_buf(n * n_expert, -3, 3);
        float *dl = dev_copy(l, (size_t)(n * n_expert) * 4), *dw = dev_poisoned(n * k);
        int32_t *di = (int32_t *)dev_poisoned(n * k);
        int32_t ids[24];
        float w[24];
        gpu->moe_route(gbe, di, dw, dl, n, n_expert, k, norm);
        cpu->moe_route(cbe, ids, w, l, n, n_expert, k, norm);
        int32_t *gi = host_copy(di, sizeof ids);
        float *gw = host_copy(dw, sizeof w);
        CHECK_MSG(memcmp(gi, ids, sizeof ids) == 0, "moe_route ids (norm %d)", norm);
        CHECK_MSG(rel_err(gw, w, n * k) < 1e-6, "moe_route weights: %.3g", rel_err(gw, w, n * k));
        gpu->free(gbe, dl), gpu->free(gbe, dw), gpu->free(gbe, di);
        free(l), free(gi), free(gw);
    }
    /* expert matmuls: one activation row per token, and one per (token, choice) */
    const uint32_t types[] = {LLM_DT_Q4_K, LLM_DT_Q8_0, LLM_DT_F16, LLM_DT_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int per_choice = 0; per_choice < 2; per_choice++) {
            const uint32_t t = types[ti];
            const int64_t K = 512, R = 24, ldx = per_choice ? k * K : K + 4;
            size_t rb;
            void *wh = rand_weight(t, K, R * n_expert, &rb);
            llm_tensor w = {.dtype = t, .ne = {K, R * n_expert}, .row_bytes = rb, .data = wh};
            CHECK(gpu->prepare_weight(gbe_model, &w) == LLM_OK);
            int32_t ids[24];
            for (int64_t i = 0; i < n; i++)
                for (int32_t j = 0; j < k; j++)
                    ids[i * k + j] = (int32_t)((i * 5 + j * 3) % n_expert);
            float *x = rand_buf(n * ldx, -1, 1);
            float *dx = dev_copy(x, (size_t)(n * ldx) * 4), *dy = dev_poisoned(n * k * R);
            int32_t *di = dev_copy(ids, sizeof ids);
            float *yc = malloc((size_t)(n * k * R) * 4);
            gpu->matmul_id(gbe, dy, &w, n_expert, dx, ldx, per_choice ? K : 0, di, k, n);
            llm_tensor wc = w;
            wc.extra = NULL;
            cpu->matmul_id(cbe, yc, &wc, n_expert, x, ldx, per_choice ? K : 0, ids, k, n);
            CHECK(gpu->synchronize(gbe) == LLM_OK);
            float *y = host_copy(dy, (size_t)(n * k * R) * 4);
            const double e = rel_err(y, yc, n * k * R);
            CHECK_MSG(e < 1e-4, "matmul_id %s per_choice %d: %.3g", llm__dtype_info(t)->name,
                      per_choice, e);
            gpu->release_weight(gbe_model, &w);
            gpu->free(gbe, dx), gpu->free(gbe, dy), gpu->free(gbe, di);
            free(wh), free(x), free(yc), free(y);
        }
    /* combining the choices */
    const int64_t dim = 200;
    float *x = rand_buf(n * k * dim, -2, 2), *w = rand_buf(n * k, 0, 1);
    float *dx = dev_copy(x, (size_t)(n * k * dim) * 4), *dw = dev_copy(w, (size_t)(n * k) * 4);
    float *dy = dev_poisoned(n * dim), *yc = malloc((size_t)(n * dim) * 4);
    gpu->moe_combine(gbe, dy, dx, dw, n, k, dim);
    cpu->moe_combine(cbe, yc, x, w, n, k, dim);
    float *y = host_copy(dy, (size_t)(n * dim) * 4);
    CHECK_MSG(rel_err(y, yc, n * dim) < 1e-6, "moe_combine: %.3g", rel_err(y, yc, n * dim));
    gpu->free(gbe, dx), gpu->free(gbe, dw), gpu->free(gbe, dy);
    free(x), free(w), free(yc), free(y);
}

/* ---- KV cache and attention ---------------------------------------------------------- */

#define BS 16
#define N_BLOCKS 40
#define MAX_BLOCKS 12

typedef struct kv_pair {
    llm_kv_layer host, dev;
    size_t bytes;
} kv_pair;

/* pools of random rows of dtype (f16, bf16 or q8_0), the same on host and device */
static kv_pair kv_make_n(uint32_t dtype, int32_t n_kv, int32_t hd, int32_t n_blocks)
{
    kv_pair p = {.host = {.dtype = dtype, .n_head_kv = n_kv, .head_dim = hd}};
    p.dev = p.host;
    const int64_t row = (int64_t)n_kv * hd, rows = (int64_t)n_blocks * BS;
    const size_t rb = llm__dtype_row_size(dtype, row);
    p.bytes = rb * (size_t)rows;
    p.host.k = malloc(p.bytes);
    p.host.v = malloc(p.bytes);
    float *f = malloc((size_t)row * sizeof(float));
    for (int64_t r = 0; r < 2 * rows; r++) {
        for (int64_t i = 0; i < row; i++)
            f[i] = test_rand_f32(&rng, -1, 1);
        char *dst = (char *)(r < rows ? p.host.k : p.host.v) + (size_t)(r % rows) * rb;
        llm__quant_ref[dtype].from_float(f, dst, row);
    }
    free(f);
    p.dev.k = dev_copy(p.host.k, p.bytes);
    p.dev.v = dev_copy(p.host.v, p.bytes);
    return p;
}

static kv_pair kv_make(uint32_t dtype, int32_t n_kv, int32_t hd)
{
    return kv_make_n(dtype, n_kv, hd, N_BLOCKS);
}

/* a shuffled block pool: the block ids 0 .. n - 1 in random order */
static void block_perm(int32_t *t, int n)
{
    for (int i = 0; i < n; i++)
        t[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(test_rand_u64(&rng) % (unsigned)(i + 1)), x = t[i];
        t[i] = t[j], t[j] = x;
    }
}

static void kv_free(kv_pair *p)
{
    gpu->free(gbe, p->dev.k), gpu->free(gbe, p->dev.v);
    free(p->host.k), free(p->host.v);
}

static int kv_same(const kv_pair *p)
{
    void *k = host_copy(p->dev.k, p->bytes), *v = host_copy(p->dev.v, p->bytes);
    int same = memcmp(k, p->host.k, p->bytes) == 0 && memcmp(v, p->host.v, p->bytes) == 0;
    free(k), free(v);
    return same;
}

static const uint32_t kv_types[] = {LLM_DT_F16, LLM_DT_BF16, LLM_DT_Q8_0};

static void kv_write_copy_case(uint32_t dtype)
{
    kv_pair p = kv_make(dtype, 3, 64);
    const int64_t n = 7, row = 3 * 64;
    int32_t slots[7] = {0, 5, 17, 200, 639, 301, 44};
    float *k = rand_buf(n * row, -70000, 70000), *v = rand_buf(n * row, -2, 2);
    float *dk = dev_copy(k, (size_t)(n * row) * 4), *dv = dev_copy(v, (size_t)(n * row) * 4);
    int32_t *ds = dev_copy(slots, sizeof slots);
    gpu->kv_write(gbe, &p.dev, dk, dv, ds, n);
    cpu->kv_write(cbe, &p.host, k, v, slots, n);
    CHECK_MSG(kv_same(&p), "KV cache of type %u", dtype);
    gpu->kv_copy_block(gbe, &p.dev, BS, 7, 12);
    cpu->kv_copy_block(cbe, &p.host, BS, 7, 12);
    gpu->kv_copy_block(gbe, &p.dev, BS, 39, 0);
    cpu->kv_copy_block(cbe, &p.host, BS, 39, 0);
    CHECK_MSG(kv_same(&p), "KV cache of type %u", dtype);
    kv_free(&p);
    gpu->free(gbe, dk), gpu->free(gbe, dv), gpu->free(gbe, ds);
    free(k), free(v);
}

static void test_kv_write_copy(void)
{
    for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++)
        kv_write_copy_case(kv_types[i]);
}

/* reps > 1 repeats the batch of 10 queries (new query vectors) reps times: enough blocks
 * for the kernels that take the query heads of a KV head together (k_attention's grouped
 * variant; outside batch-invariant mode, for f16 and bf16, k_att_kg); in batch-invariant
 * mode the batch must have the same bits as one query at a time (each head alone, the same
 * warps). Run on a backend with the tensor-core kernels off (flash.cu: tested below). */
static llm_backend *gbe_inv, *gbe_noflash;
static void attention_case(uint32_t dtype, int32_t n_head, int32_t n_kv, int32_t hd,
                           int32_t window, float softcap, int reps)
{
    kv_pair p = kv_make(dtype, n_kv, hd);
    /* 3 sequences over a shuffled block pool; the batch mixes their tokens */
    int32_t tables[3 * MAX_BLOCKS], perm[N_BLOCKS];
    block_perm(perm, N_BLOCKS);
    memcpy(tables, perm, sizeof tables);
    const int64_t n = 10 * (int64_t)reps;
    static const int32_t seq10[10] = {0, 0, 0, 1, 2, 2, 2, 2, 1, 0};
    static const int32_t pos10[10] = {30, 31, 32, 150, 0, 1, 2, 3, 151, 33};
    int32_t *q_seq = malloc((size_t)n * sizeof(int32_t)), *q_pos = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++)
        q_seq[i] = seq10[i % 10], q_pos[i] = pos10[i % 10];
    const int64_t H = (int64_t)n_head * hd;
    float *q = rand_buf(n * H, -1, 1), *oc = malloc((size_t)(n * H) * 4);
    float *dq = dev_copy(q, (size_t)(n * H) * 4), *dout = dev_poisoned(n * H);
    int32_t *dseq = dev_copy(q_seq, (size_t)n * 4), *dpos = dev_copy(q_pos, (size_t)n * 4);
    int32_t *dtab = dev_copy(tables, sizeof tables);
    llm_attention_args a = {
        .out = dout, .q = dq, .kv = &p.dev, .n_tokens = n, .n_head = n_head, .block_size = BS,
        .q_pos = dpos, .q_seq = dseq, .block_tables = dtab, .max_blocks = MAX_BLOCKS,
        .scale = 1.0f / sqrtf((float)hd), .softcap = softcap, .window = window,
    };
    gpu->attention(gbe_noflash, &a);
    CHECK(gpu->synchronize(gbe_noflash) == LLM_OK);
    llm_attention_args ac = a;
    ac.out = oc, ac.q = q, ac.kv = &p.host, ac.q_pos = q_pos, ac.q_seq = q_seq;
    ac.block_tables = tables;
    cpu->attention(cbe, &ac);
    float *o = host_copy(dout, (size_t)(n * H) * 4);
    const double e = rel_err(o, oc, n * H);
    CHECK_MSG(e < 1e-5, "attention type %u heads %d/%d dim %d window %d softcap %g: %.3g", dtype,
              n_head, n_kv, hd, window, softcap, e);
    if (reps > 1) { /* in batch-invariant mode, the batch and one query at a time */
        float *d1 = dev_poisoned(n * H), *dn = dev_poisoned(n * H);
        for (int64_t t = 0; t < n; t++) {
            llm_attention_args a1 = a;
            a1.n_tokens = 1, a1.q = dq + t * H, a1.out = d1 + t * H;
            a1.q_pos = dpos + t, a1.q_seq = dseq + t;
            gpu->attention(gbe_inv, &a1);
        }
        llm_attention_args an = a;
        an.out = dn;
        gpu->attention(gbe_inv, &an);
        CHECK(gpu->synchronize(gbe_inv) == LLM_OK);
        float *o1 = host_copy(d1, (size_t)(n * H) * 4), *on = host_copy(dn, (size_t)(n * H) * 4);
        CHECK_MSG(memcmp(on, o1, (size_t)(n * H) * 4) == 0, "attention type %u heads %d/%d "
                  "dim %d: a batch of %lld differs from one query at a time", dtype, n_head,
                  n_kv, hd, (long long)n);
        CHECK_MSG(rel_err(on, oc, n * H) < 1e-5, "attention type %u heads %d/%d dim %d, "
                  "batch-invariant: %.3g", dtype, n_head, n_kv, hd, rel_err(on, oc, n * H));
        gpu->free(gbe, d1), gpu->free(gbe, dn);
        free(o1), free(on);
    }
    free(q_seq), free(q_pos);
    kv_free(&p);
    gpu->free(gbe, dq), gpu->free(gbe, dout), gpu->free(gbe, dseq), gpu->free(gbe, dpos);
    gpu->free(gbe, dtab);
    free(q), free(oc), free(o);
}

/* Long contexts decoded by few queries: split-K (the keys of a query split between blocks,
 * merged by the last; attention.cu). One sequence of LONG_BLOCKS shuffled blocks, 4 queries
 * at positions up to its end, against the CPU; and against the unsplit kernel
 * (LLM_CUDA_ATT_SPLIT=1), from which it must differ in bits somewhere (else it did not run)
 * but not beyond the tolerance. */
#define LONG_BLOCKS 160
static llm_backend *gbe_nosplit;
static void attention_long_case(uint32_t dtype, int32_t n_head, int32_t n_kv, int32_t hd,
                                int32_t window, float softcap, int hint)
{
    kv_pair p = kv_make_n(dtype, n_kv, hd, LONG_BLOCKS);
    int32_t tables[LONG_BLOCKS];
    block_perm(tables, LONG_BLOCKS);
    enum { N = 4 };
    int32_t q_seq[N] = {0, 0, 0, 0}, q_pos[N] = {LONG_BLOCKS * BS - 1, 1234, 17, 0};
    const int64_t H = (int64_t)n_head * hd;
    float *q = rand_buf(N * H, -1, 1), *oc = malloc((size_t)(N * H) * 4);
    float *dq = dev_copy(q, (size_t)(N * H) * 4), *dout = dev_poisoned(N * H);
    float *dout1 = dev_poisoned(N * H);
    int32_t *dseq = dev_copy(q_seq, sizeof q_seq), *dpos = dev_copy(q_pos, sizeof q_pos);
    int32_t *dtab = dev_copy(tables, sizeof tables);
    llm_attention_args a = {
        .out = dout, .q = dq, .kv = &p.dev, .n_tokens = N, .n_head = n_head, .block_size = BS,
        .q_pos = dpos, .q_seq = dseq, .block_tables = dtab, .max_blocks = LONG_BLOCKS,
        .scale = 1.0f / sqrtf((float)hd), .softcap = softcap, .window = window,
        /* the hint, or none (then the split follows the batch's shape alone) */
        .max_keys = hint ? (window > 0 && window < q_pos[0] + 1 ? window : q_pos[0] + 1) : 0,
    };
    gpu->attention(gbe_noflash, &a);
    CHECK(gpu->synchronize(gbe_noflash) == LLM_OK);
    a.out = dout1;
    gpu->attention(gbe_nosplit, &a);
    CHECK(gpu->synchronize(gbe_nosplit) == LLM_OK);
    llm_attention_args ac = a;
    ac.out = oc, ac.q = q, ac.kv = &p.host, ac.q_pos = q_pos, ac.q_seq = q_seq;
    ac.block_tables = tables;
    cpu->attention(cbe, &ac);
    float *o = host_copy(dout, (size_t)(N * H) * 4), *o1 = host_copy(dout1, (size_t)(N * H) * 4);
    const double e = rel_err(o, oc, N * H), e1 = rel_err(o1, oc, N * H);
    CHECK_MSG(e < 1e-5 && e1 < 1e-5, "long attention type %u heads %d/%d dim %d window %d "
              "softcap %g hint %d: split %.3g, unsplit %.3g", dtype, n_head, n_kv, hd, window,
              softcap, hint, e, e1);
    CHECK_MSG(memcmp(o, o1, (size_t)(N * H) * 4) != 0, "long attention type %u heads %d/%d: "
              "the split kernel gave the unsplit one's bits (did it run?)", dtype, n_head, n_kv);
    kv_free(&p);
    gpu->free(gbe, dq), gpu->free(gbe, dout), gpu->free(gbe, dout1);
    gpu->free(gbe, dseq), gpu->free(gbe, dpos), gpu->free(gbe, dtab);
    free(q), free(oc), free(o), free(o1);
}

static void test_attention(void)
{
    gbe_inv = gpu_with_env("LLM_CUDA_BATCH_INVARIANT", "1");
    gbe_noflash = gpu_with_env("LLM_CUDA_FLASH", "0");
    if (!gbe_inv || !gbe_noflash)
        return;
    for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++) {
        const uint32_t t = kv_types[i];
        attention_case(t, 9, 3, 64, 0, 0.0f, 1);   /* SmolLM2's shape */
        attention_case(t, 8, 8, 128, 0, 0.0f, 1);
        attention_case(t, 4, 1, 256, 0, 0.0f, 1);  /* Gemma 3's head width */
        attention_case(t, 8, 2, 128, 20, 0.0f, 1); /* sliding window */
        attention_case(t, 8, 2, 64, 0, 30.0f, 1);  /* soft-capping */
        attention_case(t, 2, 2, 512, 7, 50.0f, 1);
        /* batches large enough for the grouped-heads kernel */
        attention_case(t, 9, 3, 64, 0, 0.0f, 30);   /* 3 heads per KV head */
        attention_case(t, 4, 1, 256, 0, 0.0f, 30);
        attention_case(t, 8, 2, 128, 20, 30.0f, 30);
    }
    attention_case(LLM_DT_F16, 8, 2, 80, 0, 0.0f, 1); /* a width that is no multiple of 32 */
    attention_case(LLM_DT_F16, 8, 2, 80, 0, 0.0f, 30);
    attention_case(LLM_DT_BF16, 14, 2, 64, 0, 0.0f, 30); /* 7 per KV head: two blocks of them */
    gbe_nosplit = gpu_with_env("LLM_CUDA_ATT_SPLIT", "1");
    if (gbe_nosplit) {
        for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++)
            for (int hint = 0; hint < 2; hint++) {
                const uint32_t t = kv_types[i];
                attention_long_case(t, 32, 8, 128, 0, 0.0f, hint); /* Llama 3 8B's shape */
                attention_long_case(t, 9, 3, 64, 0, 0.0f, hint);
                attention_long_case(t, 4, 1, 256, 1000, 0.0f, hint); /* Gemma 3: window */
                attention_long_case(t, 14, 2, 64, 0, 30.0f, hint); /* 7 per KV head, softcap */
                attention_long_case(t, 8, 8, 128, 0, 0.0f, hint);  /* no GQA */
                if (t != LLM_DT_Q8_0) /* q8_0 caches need widths of whole blocks of 32 */
                    attention_long_case(t, 8, 8, 80, 0, 0.0f, hint);
            }
        gpu->destroy(gbe_nosplit);
    }
    gpu->destroy(gbe_inv);
    gpu->destroy(gbe_noflash);
}

/* Prompts through the tensor-core kernel (flash.cu): three sequences, one starting at 0
 * (100 tokens), one continuing at 37 (33 tokens, earlier keys already cached), one of 19;
 * in order, or (shuffled) in any order with n_runs claiming one run, so that blocks take
 * several sequences in turn. Q and the probabilities are rounded to 16 bits there, hence
 * the wider tolerance than attention_case's; the f32 kernel (LLM_CUDA_FLASH=0) must still
 * give its 1e-5, and a result that equals it bit for bit means the kernel did not run. */
static void flash_case(uint32_t dtype, int32_t n_head, int32_t n_kv, int32_t hd, int32_t window,
                       float softcap, int shuffled)
{
    kv_pair p = kv_make(dtype, n_kv, hd);
    int32_t tables[3 * MAX_BLOCKS], perm[N_BLOCKS];
    block_perm(perm, N_BLOCKS);
    memcpy(tables, perm, sizeof tables);
    enum { N = 100 + 33 + 19 };
    int32_t q_seq[N], q_pos[N];
    for (int i = 0; i < N; i++) {
        q_seq[i] = i < 100 ? 0 : i < 133 ? 1 : 2;
        q_pos[i] = i < 100 ? i : i < 133 ? 37 + i - 100 : i - 133;
    }
    for (int i = N - 1; shuffled && i > 0; i--) {
        int j = (int)(test_rand_u64(&rng) % (unsigned)(i + 1)), t = q_seq[i];
        q_seq[i] = q_seq[j], q_seq[j] = t;
        t = q_pos[i], q_pos[i] = q_pos[j], q_pos[j] = t;
    }
    const int64_t H = (int64_t)n_head * hd;
    float *q = rand_buf(N * H, -1, 1), *oc = malloc((size_t)(N * H) * 4);
    float *dq = dev_copy(q, (size_t)(N * H) * 4), *dout = dev_poisoned(N * H);
    float *dout0 = dev_poisoned(N * H);
    int32_t *dseq = dev_copy(q_seq, sizeof q_seq), *dpos = dev_copy(q_pos, sizeof q_pos);
    int32_t *dtab = dev_copy(tables, sizeof tables);
    llm_attention_args a = {
        .out = dout, .q = dq, .kv = &p.dev, .n_tokens = N, .n_head = n_head, .block_size = BS,
        .q_pos = dpos, .q_seq = dseq, .block_tables = dtab, .max_blocks = MAX_BLOCKS,
        .scale = 1.0f / sqrtf((float)hd), .softcap = softcap, .window = window,
        .n_runs = shuffled ? 1 : 3,
    };
    gpu->attention(gbe, &a);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    llm_attention_args a0 = a;
    a0.out = dout0;
    gpu->attention(gbe_noflash, &a0);
    CHECK(gpu->synchronize(gbe_noflash) == LLM_OK);
    llm_attention_args ac = a;
    ac.out = oc, ac.q = q, ac.kv = &p.host, ac.q_pos = q_pos, ac.q_seq = q_seq;
    ac.block_tables = tables;
    cpu->attention(cbe, &ac);
    float *o = host_copy(dout, (size_t)(N * H) * 4), *o0 = host_copy(dout0, (size_t)(N * H) * 4);
    const double e = rel_err(o, oc, N * H), e0 = rel_err(o0, oc, N * H);
    const double tol = dtype == LLM_DT_BF16 ? 8e-3 : 2e-3;
    printf("  flash type %u heads %d/%d dim %d window %d softcap %g%s: %.3g (f32 kernel %.3g)\n",
           dtype, n_head, n_kv, hd, window, softcap, shuffled ? " shuffled" : "", e, e0);
    CHECK_MSG(e < tol && e0 < 1e-5, "flash attention type %u heads %d/%d dim %d window %d "
              "softcap %g: %.3g (f32 kernel %.3g)", dtype, n_head, n_kv, hd, window, softcap, e,
              e0);
    CHECK_MSG(memcmp(o, o0, (size_t)(N * H) * 4) != 0, "flash attention type %u dim %d: the "
              "same bits as the f32 kernel (not run?)", dtype, hd);
    kv_free(&p);
    gpu->free(gbe, dq), gpu->free(gbe, dout), gpu->free(gbe, dout0), gpu->free(gbe, dseq);
    gpu->free(gbe, dpos), gpu->free(gbe, dtab);
    free(q), free(oc), free(o), free(o0);
}

/* Decode batches through the tensor-core kernel (on with LLM_CUDA_FLASH=3): 160 queries,
 * each of a random one of three sequences (150, 40 and 100 tokens cached) at a random
 * position; the cache slots after each sequence's tokens hold NaN, which must not reach
 * any output. */
static llm_backend *gbe_decode;
static void flash_decode_case(uint32_t dtype, int32_t n_head, int32_t n_kv, int32_t hd,
                              int32_t window, float softcap)
{
    kv_pair p = kv_make(dtype, n_kv, hd);
    int32_t tables[3 * MAX_BLOCKS], perm[N_BLOCKS];
    block_perm(perm, N_BLOCKS);
    memcpy(tables, perm, sizeof tables);
    static const int32_t len[3] = {150, 40, 100};
    const size_t rb = llm__dtype_row_size(dtype, (int64_t)n_kv * hd);
    for (int sq = 0; sq < 3; sq++)
        for (int32_t pos = len[sq]; pos < MAX_BLOCKS * BS; pos++) {
            const int64_t slot = (int64_t)tables[sq * MAX_BLOCKS + pos / BS] * BS + pos % BS;
            memset((char *)p.host.k + slot * rb, 0xff, rb); /* NaN in f16 and bf16 */
            memset((char *)p.host.v + slot * rb, 0xff, rb);
        }
    gpu->upload(gbe, p.dev.k, p.host.k, p.bytes);
    gpu->upload(gbe, p.dev.v, p.host.v, p.bytes);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    enum { N = 160 };
    int32_t q_seq[N], q_pos[N];
    for (int i = 0; i < N; i++) {
        q_seq[i] = (int32_t)(test_rand_u64(&rng) % 3);
        q_pos[i] = (int32_t)(test_rand_u64(&rng) % (uint64_t)len[q_seq[i]]);
    }
    const int64_t H = (int64_t)n_head * hd;
    float *q = rand_buf(N * H, -1, 1), *oc = malloc((size_t)(N * H) * 4);
    float *dq = dev_copy(q, (size_t)(N * H) * 4), *dout = dev_poisoned(N * H);
    float *dout0 = dev_poisoned(N * H);
    int32_t *dseq = dev_copy(q_seq, sizeof q_seq), *dpos = dev_copy(q_pos, sizeof q_pos);
    int32_t *dtab = dev_copy(tables, sizeof tables);
    llm_attention_args a = {
        .out = dout, .q = dq, .kv = &p.dev, .n_tokens = N, .n_head = n_head, .block_size = BS,
        .q_pos = dpos, .q_seq = dseq, .block_tables = dtab, .max_blocks = MAX_BLOCKS,
        .scale = 1.0f / sqrtf((float)hd), .softcap = softcap, .window = window, .n_runs = N,
    };
    gpu->attention(gbe_decode, &a);
    CHECK(gpu->synchronize(gbe_decode) == LLM_OK);
    llm_attention_args a0 = a;
    a0.out = dout0;
    gpu->attention(gbe_noflash, &a0);
    CHECK(gpu->synchronize(gbe_noflash) == LLM_OK);
    llm_attention_args ac = a;
    ac.out = oc, ac.q = q, ac.kv = &p.host, ac.q_pos = q_pos, ac.q_seq = q_seq;
    ac.block_tables = tables;
    cpu->attention(cbe, &ac);
    float *o = host_copy(dout, (size_t)(N * H) * 4), *o0 = host_copy(dout0, (size_t)(N * H) * 4);
    const double e = rel_err(o, oc, N * H), e0 = rel_err(o0, oc, N * H);
    const double tol = dtype == LLM_DT_BF16 ? 8e-3 : 2e-3;
    printf("  flash decode type %u heads %d/%d dim %d window %d softcap %g: %.3g (f32 kernel "
           "%.3g)\n", dtype, n_head, n_kv, hd, window, softcap, e, e0);
    CHECK_MSG(e < tol && e0 < 1e-5, "flash decode type %u heads %d/%d dim %d window %d "
              "softcap %g: %.3g (f32 kernel %.3g)", dtype, n_head, n_kv, hd, window, softcap, e,
              e0);
    CHECK_MSG(memcmp(o, o0, (size_t)(N * H) * 4) != 0, "flash decode type %u dim %d: the "
              "same bits as the f32 kernel (not run?)", dtype, hd);
    kv_free(&p);
    gpu->free(gbe, dq), gpu->free(gbe, dout), gpu->free(gbe, dout0), gpu->free(gbe, dseq);
    gpu->free(gbe, dpos), gpu->free(gbe, dtab);
    free(q), free(oc), free(o), free(o0);
}

static void test_flash_attention(void)
{
    gbe_noflash = gpu_with_env("LLM_CUDA_FLASH", "0");
    if (!gbe_noflash)
        return;
    for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++) {
        const uint32_t t = kv_types[i];
        flash_case(t, 9, 3, 64, 0, 0.0f, 0);    /* SmolLM2's shape: one head per block */
        flash_case(t, 32, 8, 128, 0, 0.0f, 0);  /* Llama 3 8B's: four heads per block */
        flash_case(t, 4, 1, 256, 0, 0.0f, 0);   /* Gemma 3 270M's */
        flash_case(t, 4, 1, 256, 40, 0.0f, 0);  /* its sliding-window layers */
        flash_case(t, 8, 4, 128, 20, 30.0f, 0); /* two heads per block, window, soft-capping */
        flash_case(t, 14, 2, 64, 0, 0.0f, 1);   /* any order of tokens */
        flash_case(t, 8, 2, 128, 25, 50.0f, 1);
    }
    const uint32_t dec_types[] = {LLM_DT_F16, LLM_DT_BF16}; /* q8_0: attention.cu's kernel */
    gbe_decode = gpu_with_env("LLM_CUDA_FLASH", "3");
    for (size_t i = 0; gbe_decode && i < 2; i++) {
        const uint32_t t = dec_types[i];
        flash_decode_case(t, 32, 8, 128, 0, 0.0f);  /* Llama 3 8B: 4 heads per KV head */
        flash_decode_case(t, 9, 3, 64, 0, 0.0f);    /* SmolLM2: 3 */
        flash_decode_case(t, 14, 2, 64, 0, 0.0f);   /* Qwen2.5 0.5B: 7 */
        flash_decode_case(t, 16, 1, 128, 33, 0.0f); /* 16 per KV head, sliding window */
        flash_decode_case(t, 8, 8, 128, 0, 30.0f);  /* one per KV head, soft-capping */
    }
    gpu->destroy(gbe_decode);
    gpu->destroy(gbe_noflash);
}

/* ---- batch invariance ------------------------------------------------------------------ */

/* With LLM_CUDA_BATCH_INVARIANT=1 a token's matmul result is the same bits whether it is
 * computed alone or among 37 others; and the same as the default mode's decode path. */
static void test_batch_invariant(void)
{
    llm_backend *inv = gpu_with_env("LLM_CUDA_BATCH_INVARIANT", "1");
    if (!inv)
        return;
    const uint32_t types[] = {LLM_DT_Q4_K, LLM_DT_Q8_0, LLM_DT_BF16, LLM_DT_Q6_K, LLM_DT_F32};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        const int64_t k = 512, rows = 45, n = 37;
        size_t rb;
        void *wh = rand_weight(t, k, rows, &rb);
        llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = wh};
        CHECK(gpu->prepare_weight(gbe_model, &w) == LLM_OK);
        float *x = rand_buf(n * k, -1, 1);
        float *dx = dev_copy(x, (size_t)(n * k) * 4), *dy = dev_poisoned(n * rows);
        float *d1 = dev_poisoned(rows);
        gpu->matmul(inv, dy, rows, &w, dx, k, n);
        CHECK(gpu->synchronize(inv) == LLM_OK);
        float *all = host_copy(dy, (size_t)(n * rows) * 4);
        int same = 1;
        for (int64_t j = 0; j < n; j += 5) {
            gpu->matmul(gbe, d1, rows, &w, dx + j * k, k, 1); /* default mode, one token */
            float *one = host_copy(d1, (size_t)rows * 4);
            same &= memcmp(one, all + j * rows, (size_t)rows * 4) == 0;
            free(one);
        }
        CHECK_MSG(same, "%s: a token's result depends on its batch", llm__dtype_info(t)->name);
        gpu->release_weight(gbe_model, &w);
        gpu->free(gbe, dx), gpu->free(gbe, dy), gpu->free(gbe, d1);
        free(wh), free(x), free(all);
    }
    gpu->destroy(inv);
}

/* ---- deferred and fused ops ------------------------------------------------------------ */

/* Buffers of one run of fused_layer: what each op wrote. */
enum { F_X, F_H, F_Q, F_K, F_G, F_O, F_U, F_V, F_N };

/* A decoder layer's element-wise ops and matmuls in the order the forward pass issues them,
 * plus pairs that cannot fuse (an add followed by something else than the norm of its
 * output, a norm whose output the next matmul does not read). Leaves copies of every
 * buffer in out[]. */
static void fused_layer(llm_backend *be, const llm_tensor *wn, const llm_tensor *wq,
                        const llm_tensor *wk, const llm_tensor *wup, const llm_tensor *wd,
                        const float *x0, const float *h0, int64_t n, float *out[F_N])
{
    const int64_t E = wq->ne[0], R = wq->ne[1], F = wup->ne[1];
    float *x = dev_copy(x0, (size_t)(n * E) * 4), *h = dev_copy(h0, (size_t)(n * E) * 4);
    float *q = dev_poisoned(n * R), *k = dev_poisoned(n * R), *g = dev_poisoned(n * F);
    float *u = dev_poisoned(n * F), *o = dev_poisoned(n * E), *sc = dev_poisoned(n * E);
    float *v = dev_poisoned(n * R);
    gpu->add(be, x, x, h, n * E);                  /* residual, then its norm: one kernel */
    gpu->rms_norm(be, h, x, wn, n, E, 1e-5f);       /* h = norm(x) over the old h */
    gpu->matmul(be, q, R, wq, h, E, n);
    gpu->matmul(be, k, R, wk, h, E, n);            /* reuses the quantized h */
    gpu->matmul(be, v, R, wk, h, E, n);            /* q, k, v: one launch */
    gpu->matmul(be, g, F, wup, h, E, n);
    gpu->matmul(be, u, F, wup, h, E, n);
    gpu->glu(be, g, g, u, n * F, LLM_ACT_SILU);    /* glu + quantization */
    gpu->matmul(be, o, E, wd, g, F, n);
    gpu->add(be, x, x, o, n * E);                  /* an add not followed by its norm */
    gpu->scale(be, sc, x, 0.5f, n * E);
    gpu->rms_norm(be, h, sc, NULL, n, E, 1e-5f);   /* a norm the next matmul does not read */
    gpu->matmul(be, q, R, wq, x, E, n);
    gpu->matmul(be, q, R, wk, x, E, n);            /* the same output: not one launch */
    gpu->matmul(be, k, R, wk, h, E, n);
    gpu->glu(be, u, g, u, n * F, LLM_ACT_GELU_TANH); /* a glu followed by a download */
    CHECK(gpu->synchronize(be) == LLM_OK);
    float *dev[F_N] = {x, h, q, k, g, o, u, v};
    const int64_t len[F_N] = {n * E, n * E, n * R, n * R, n * F, n * E, n * F, n * R};
    for (int i = 0; i < F_N; i++) {
        out[i] = host_copy(dev[i], (size_t)len[i] * 4);
        gpu->free(be, dev[i]);
    }
    gpu->free(be, sc);
}

/* The deferred ops give the same bits as the ops one by one (LLM_CUDA_FUSE=0), for both
 * activation quantizations (Q8_K for Q4_K weights, Q8_0 for Q8_0) and the 16-bit
 * conversions (BF16, F16 weights), rows that fill the
 * norm's threads or not, and rows too long for the fused norm. The norm weight is small
 * so that values stay far from the f16 range of the 8-bit blocks' scales. */
static void test_fused_ops(void)
{
    llm_backend *plain = gpu_with_env("LLM_CUDA_FUSE", "0");
    if (!plain)
        return;
    static const struct {
        uint32_t t;
        int64_t E, F;
    } cases[] = {{LLM_DT_Q4_K, 512, 768}, {LLM_DT_Q4_K, 2304, 512}, {LLM_DT_Q8_0, 640, 96},
                 {LLM_DT_Q4_K, 4096, 256}, {LLM_DT_Q8_0, 12288, 64}, {LLM_DT_Q6_K, 256, 256},
                 {LLM_DT_BF16, 512, 768},  {LLM_DT_F16, 640, 96}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint32_t t = cases[c].t;
        const int64_t E = cases[c].E, F = cases[c].F, R = 96;
        size_t rq, rk, ru, rd;
        void *hq = rand_weight(t, E, R, &rq), *hk = rand_weight(t, E, R, &rk);
        void *hu = rand_weight(t, E, F, &ru), *hd = rand_weight(t, F, E, &rd);
        float *nw = rand_buf(E, 0.005f, 0.015f);
        llm_tensor wn = {.dtype = LLM_DT_F32, .ne = {E, 1}, .row_bytes = (size_t)E * 4,
                         .data = nw};
        llm_tensor wq = {.dtype = t, .ne = {E, R}, .row_bytes = rq, .data = hq};
        llm_tensor wk = {.dtype = t, .ne = {E, R}, .row_bytes = rk, .data = hk};
        llm_tensor wu = {.dtype = t, .ne = {E, F}, .row_bytes = ru, .data = hu};
        llm_tensor wd = {.dtype = t, .ne = {F, E}, .row_bytes = rd, .data = hd};
        CHECK(gpu->prepare_weight(gbe_model, &wn) == LLM_OK);
        CHECK(gpu->prepare_weight(gbe_model, &wq) == LLM_OK);
        CHECK(gpu->prepare_weight(gbe_model, &wk) == LLM_OK);
        CHECK(gpu->prepare_weight(gbe_model, &wu) == LLM_OK);
        CHECK(gpu->prepare_weight(gbe_model, &wd) == LLM_OK);
        for (int64_t n = 1; n <= 8; n += 3) {
            float *x0 = rand_buf(n * E, -2, 2), *h0 = rand_buf(n * E, -2, 2);
            float *a[F_N], *b[F_N];
            fused_layer(gbe, &wn, &wq, &wk, &wu, &wd, x0, h0, n, a);
            fused_layer(plain, &wn, &wq, &wk, &wu, &wd, x0, h0, n, b);
            const int64_t len[F_N] = {n * E, n * E, n * R, n * R, n * F, n * E, n * F, n * R};
            static const char *names[F_N] = {"x", "h", "q", "k", "g", "o", "u", "v"};
            for (int i = 0; i < F_N; i++) {
                int64_t bad = -1;
                for (int64_t e = 0; e < len[i] && bad < 0; e++)
                    if (memcmp(&a[i][e], &b[i][e], 4) != 0 || isnan(a[i][e]))
                        bad = e;
                CHECK_MSG(bad < 0, "%s E %lld n %lld: fused %s[%lld] = %.9g, plain %.9g",
                          llm__dtype_info(t)->name, (long long)E, (long long)n, names[i],
                          (long long)bad, bad < 0 ? 0.0 : a[i][bad], bad < 0 ? 0.0 : b[i][bad]);
                free(a[i]), free(b[i]);
            }
            free(x0), free(h0);
        }
        gpu->release_weight(gbe_model, &wn), gpu->release_weight(gbe_model, &wq);
        gpu->release_weight(gbe_model, &wk), gpu->release_weight(gbe_model, &wu);
        gpu->release_weight(gbe_model, &wd);
        free(hq), free(hk), free(hu), free(hd), free(nw);
    }
    gpu->destroy(plain);
}

/* the most tokens of rope_kv_run, and the cache rows they are spread over */
enum { ROPE_KV_MANY = 400, ROPE_KV_ROWS = 512 };

/* rope(q), rope(k), kv_write(k, v) on backend be; then, when `apart`, an op between the
 * ropes and the write keeps them from fusing. Leaves q, k and both cache arrays in out[]. */
static void rope_kv_run(llm_backend *be, uint32_t dt, int32_t nh, int32_t nkv, int32_t hd,
                        int32_t n_rot, int mode, const llm_tensor *ff, int64_t n,
                        const float *q0, const float *k0, const float *v0, int apart,
                        void *out[4], size_t cache_bytes)
{
    /* 3 tokens at hand-picked positions and slots, or many (one block per token in the fused
     * kernel) at distinct slots of a cache of ROPE_KV_ROWS rows; the first in slot 7 */
    int32_t pos[ROPE_KV_MANY], slots[ROPE_KV_MANY];
    for (int64_t i = 0; i < n; i++) {
        static const int32_t p3[3] = {5, 77, 4000}, s3[3] = {7, 2, 12};
        pos[i] = n <= 3 ? p3[i] : (int32_t)(i * 7919 % 30000);
        slots[i] = n <= 3 ? s3[i] : (int32_t)((7 + i * 11) % ROPE_KV_ROWS);
    }
    float *q = dev_copy(q0, (size_t)(n * nh * hd) * 4), *k = dev_copy(k0, (size_t)(n * nkv * hd) * 4);
    float *v = dev_copy(v0, (size_t)(n * nkv * hd) * 4);
    int32_t *dpos = dev_copy(pos, (size_t)n * 4), *dslots = dev_copy(slots, (size_t)n * 4);
    uint8_t *zero = calloc(1, cache_bytes);
    llm_kv_layer kv = {.k = dev_copy(zero, cache_bytes), .v = dev_copy(zero, cache_bytes),
                       .dtype = dt, .n_head_kv = nkv, .head_dim = hd};
    gpu->rope(be, q, n, nh, hd, n_rot, dpos, 10000.0f, 1.0f, ff, mode);
    gpu->rope(be, k, n, nkv, hd, n_rot, dpos, 10000.0f, 1.0f, ff, mode);
    if (apart)
        gpu->scale(be, v, v, 1.0f, n * nkv * hd);
    gpu->kv_write(be, &kv, k, v, dslots, n);
    CHECK(gpu->synchronize(be) == LLM_OK);
    out[0] = host_copy(q, (size_t)(n * nh * hd) * 4);
    out[1] = host_copy(k, (size_t)(n * nkv * hd) * 4);
    out[2] = host_copy(kv.k, cache_bytes);
    out[3] = host_copy(kv.v, cache_bytes);
    gpu->free(be, q), gpu->free(be, k), gpu->free(be, v), gpu->free(be, dpos);
    gpu->free(be, dslots), gpu->free(be, kv.k), gpu->free(be, kv.v);
    free(zero);
}

/* The ropes of q and k and the KV write after them, deferred into one kernel, give the same
 * bits (q, k and the cache) as the three ops one by one, for every cache type, both rope
 * modes, partial rotation and frequency factors, for a few tokens and for many. */
static void test_fused_rope_kv(void)
{
    llm_backend *plain = gpu_with_env("LLM_CUDA_FUSE", "0");
    if (!plain)
        return;
    static const struct {
        int32_t nh, nkv, hd, n_rot;
    } shapes[] = {{8, 2, 64, 64}, {4, 4, 128, 128}, {6, 2, 64, 32}, {2, 1, 256, 256}};
    for (size_t di = 0; di < sizeof kv_types / sizeof kv_types[0]; di++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (int variant = 0; variant < 5; variant++) {
                const uint32_t dt = kv_types[di];
                const int32_t nh = shapes[si].nh, nkv = shapes[si].nkv, hd = shapes[si].hd;
                const int32_t n_rot = shapes[si].n_rot;
                const int mode = variant & 1 ? LLM_ROPE_NEOX : 0, apart = variant == 3;
                const int64_t n = variant == 2 ? 1 : variant == 4 ? ROPE_KV_MANY : 3;
                float *ffv = rand_buf(n_rot / 2, 1, 8);
                llm_tensor ff = {.dtype = LLM_DT_F32, .ne = {n_rot / 2, 1},
                                 .row_bytes = (size_t)n_rot * 2, .data = ffv};
                CHECK(gpu->prepare_weight(gbe_model, &ff) == LLM_OK);
                const size_t cache_bytes = (n > 3 ? ROPE_KV_ROWS : 16) *
                                           llm__dtype_row_size(dt, (int64_t)nkv * hd);
                float *q0 = rand_buf(n * nh * hd, -2, 2), *k0 = rand_buf(n * nkv * hd, -2, 2);
                float *v0 = rand_buf(n * nkv * hd, -2, 2);
                void *a[4], *b[4];
                const llm_tensor *f = variant == 1 ? NULL : &ff;
                rope_kv_run(gbe, dt, nh, nkv, hd, n_rot, mode, f, n, q0, k0, v0, apart, a,
                            cache_bytes);
                rope_kv_run(plain, dt, nh, nkv, hd, n_rot, mode, f, n, q0, k0, v0, apart, b,
                            cache_bytes);
                const size_t len[4] = {(size_t)(n * nh * hd) * 4, (size_t)(n * nkv * hd) * 4,
                                       cache_bytes, cache_bytes};
                static const char *names[4] = {"q", "k", "cache k", "cache v"};
                /* the rows were written at all: slot 7 (the first token's) is not zero */
                const size_t rb = llm__dtype_row_size(dt, (int64_t)nkv * hd);
                int written = 0;
                for (size_t e = 0; e < rb; e++)
                    written |= ((uint8_t *)a[2])[7 * rb + e] | ((uint8_t *)a[3])[7 * rb + e];
                CHECK_MSG(written, "%s cache: the fused write left the row empty",
                          llm__dtype_info(dt)->name);
                for (int i = 0; i < 4; i++) {
                    CHECK_MSG(memcmp(a[i], b[i], len[i]) == 0,
                              "%s cache, %d/%d heads of %d, n_rot %d, variant %d: fused %s "
                              "differs", llm__dtype_info(dt)->name, nh, nkv, hd, n_rot,
                              variant, names[i]);
                    free(a[i]), free(b[i]);
                }
                gpu->release_weight(gbe_model, &ff);
                free(ffv), free(q0), free(k0), free(v0);
            }
    gpu->destroy(plain);
}

/* ---- decode steps as CUDA graphs ------------------------------------------------------- */

/* The graph counts a backend logs when it is destroyed (graph.cu). */
static long graphs_replayed, graphs_captured;
static void graph_log(llm_log_level level, const char *msg, void *user)
{
    (void)level, (void)user;
    long r, c, p;
    if (sscanf(msg, "cuda: graphs: %ld segments replayed, %ld captured, %ld run op by op", &r,
               &c, &p) == 3)
        graphs_replayed += r, graphs_captured += c;
}

/* One backend's buffers for graph_step: a decoder layer of E = 256, 4 query heads over 2 KV
 * heads of 64, a 512-wide feed-forward, 3 sequences in the KV cache. */
typedef struct gstep {
    float *x, *h, *q, *k, *v, *att, *o, *g, *u, *vals;
    int32_t *pos, *seq, *slots, *tab, *ids;
    kv_pair kv;
} gstep;

enum { GS_E = 256, GS_HQ = 256, GS_HKV = 128, GS_F = 512, GS_MAXN = 4 };

static void gstep_make(gstep *b)
{
    b->x = dev_poisoned(GS_MAXN * GS_E), b->h = dev_poisoned(GS_MAXN * GS_E);
    b->q = dev_poisoned(GS_MAXN * GS_HQ), b->k = dev_poisoned(GS_MAXN * GS_HKV);
    b->v = dev_poisoned(GS_MAXN * GS_HKV), b->att = dev_poisoned(GS_MAXN * GS_HQ);
    b->o = dev_poisoned(GS_MAXN * GS_E), b->g = dev_poisoned(GS_MAXN * GS_F);
    b->u = dev_poisoned(GS_MAXN * GS_F), b->vals = dev_poisoned(GS_MAXN * 8);
    int32_t zero[3 * MAX_BLOCKS] = {0}, tab[3 * MAX_BLOCKS];
    for (int i = 0; i < 3 * MAX_BLOCKS; i++)
        tab[i] = (i * 7) % N_BLOCKS; /* 36 distinct blocks of the 40 */
    b->pos = dev_copy(zero, GS_MAXN * 4), b->seq = dev_copy(zero, GS_MAXN * 4);
    b->slots = dev_copy(zero, GS_MAXN * 4), b->ids = dev_copy(zero, GS_MAXN * 8 * 4);
    b->tab = dev_copy(tab, sizeof tab);
    b->kv = kv_make(LLM_DT_F16, 2, 64);
}

static void gstep_free(gstep *b)
{
    void *ps[] = {b->x, b->h, b->q, b->k, b->v, b->att, b->o, b->g, b->u, b->vals,
                  b->pos, b->seq, b->slots, b->tab, b->ids};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        gpu->free(gbe, ps[i]);
    kv_free(&b->kv);
}

/* A decode step of n tokens of sequences seq[] at positions pos[] through one layer, as the
 * forward pass issues it, with the KV slots uploaded between the ops (which splits the step
 * in two segments); x is carried from step to step. Leaves x, the top-8 ids and values. */
static void graph_step(llm_backend *be, gstep *b, llm_tensor *w, int n, const int32_t *seq,
                       const int32_t *pos, float *x_out, int32_t *ids_out, float *vals_out)
{
    int32_t slots[GS_MAXN];
    for (int i = 0; i < n; i++)
        slots[i] = ((seq[i] * MAX_BLOCKS + pos[i] / BS) * 7 % N_BLOCKS) * BS + pos[i] % BS;
    gpu->upload(be, b->pos, pos, (size_t)n * 4);
    gpu->upload(be, b->seq, seq, (size_t)n * 4);
    gpu->rms_norm(be, b->h, b->x, &w[0], n, GS_E, 1e-5f);
    gpu->matmul(be, b->q, GS_HQ, &w[1], b->h, GS_E, n);
    gpu->matmul(be, b->k, GS_HKV, &w[2], b->h, GS_E, n);
    gpu->matmul(be, b->v, GS_HKV, &w[3], b->h, GS_E, n);
    gpu->rope(be, b->q, n, 4, 64, 64, b->pos, 10000.0f, 1.0f, NULL, LLM_ROPE_NORM);
    gpu->rope(be, b->k, n, 2, 64, 64, b->pos, 10000.0f, 1.0f, NULL, LLM_ROPE_NORM);
    gpu->upload(be, b->slots, slots, (size_t)n * 4); /* a segment ends here */
    gpu->kv_write(be, &b->kv.dev, b->k, b->v, b->slots, n);
    llm_attention_args a = {
        .out = b->att, .q = b->q, .kv = &b->kv.dev, .n_tokens = n, .n_head = 4,
        .block_size = BS, .q_pos = b->pos, .q_seq = b->seq, .block_tables = b->tab,
        .max_blocks = MAX_BLOCKS, .scale = 0.125f, .n_runs = n,
    };
    gpu->attention(be, &a);
    volatile unsigned char *ap = (volatile unsigned char *)&a;
    for (size_t i = 0; i < sizeof a; i++)
        ap[i] = 0x55; /* the op must have kept its own copy */
    gpu->matmul(be, b->o, GS_E, &w[4], b->att, GS_HQ, n);
    gpu->add(be, b->x, b->x, b->o, (int64_t)n * GS_E);
    gpu->rms_norm(be, b->h, b->x, &w[0], n, GS_E, 1e-5f);
    gpu->matmul(be, b->g, GS_F, &w[5], b->h, GS_E, n);
    gpu->matmul(be, b->u, GS_F, &w[6], b->h, GS_E, n);
    gpu->glu(be, b->g, b->g, b->u, (int64_t)n * GS_F, LLM_ACT_SILU);
    gpu->matmul(be, b->o, GS_E, &w[7], b->g, GS_F, n);
    gpu->add(be, b->x, b->x, b->o, (int64_t)n * GS_E);
    gpu->top_k(be, b->ids, b->vals, b->x, n, GS_E, 8);
    CHECK(gpu->synchronize(be) == LLM_OK);
    CHECK(gpu->download(be, x_out, b->x, (size_t)n * GS_E * 4) == LLM_OK);
    CHECK(gpu->download(be, ids_out, b->ids, (size_t)n * 8 * 4) == LLM_OK);
    CHECK(gpu->download(be, vals_out, b->vals, (size_t)n * 8 * 4) == LLM_OK);
}

/* Decode steps on a backend with graphs and fused ops (the default) and one without either
 * (LLM_CUDA_GRAPHS=0, LLM_CUDA_FUSE=0) give the same bits, step after step, while the graphs are replayed with new tokens,
 * positions and KV contents; between the steps, a prompt-sized matmul grows the backend's
 * scratch buffers (the graphs that used the old ones must go) and the batch changes size
 * (a second set of graphs). */
static void test_graphs(void)
{
    /* the reference: no graphs, and every op launched alone (the fused kernels give the
     * same bits) */
    setenv("LLM_CUDA_FUSE", "0", 1);
    llm_backend *gr = NULL, *pl = gpu_with_env("LLM_CUDA_GRAPHS", "0");
    unsetenv("LLM_CUDA_FUSE");
    llm_backend_config cfg = {0};
    CHECK(gpu->create(&cfg, &gr) == LLM_OK);
    if (!gr || !pl)
        return;
    /* q, k, v of one type: one launch; gate and up too */
    static const uint32_t types[8] = {LLM_DT_F32,  LLM_DT_Q4_K, LLM_DT_Q4_K, LLM_DT_Q4_K,
                                      LLM_DT_BF16, LLM_DT_Q8_0, LLM_DT_Q8_0, LLM_DT_Q6_K};
    static const int64_t shape[8][2] = {{GS_E, 1},      {GS_E, GS_HQ}, {GS_E, GS_HKV},
                                        {GS_E, GS_HKV}, {GS_HQ, GS_E}, {GS_E, GS_F},
                                        {GS_E, GS_F},   {GS_F, GS_E}};
    llm_tensor w[8];
    void *wh[8];
    for (int i = 0; i < 8; i++) {
        size_t rb;
        wh[i] = i == 0 ? rand_buf(GS_E, 0.5f, 1.5f) : rand_weight(types[i], shape[i][0],
                                                                 shape[i][1], &rb);
        w[i] = (llm_tensor){.dtype = types[i], .ne = {shape[i][0], shape[i][1]},
                            .row_bytes = i == 0 ? GS_E * 4 : rb, .data = wh[i]};
        snprintf(w[i].name, sizeof w[i].name, "graph.w%d", i);
        CHECK(gpu->prepare_weight(gbe_model, &w[i]) == LLM_OK);
    }
    gstep bg, bp;
    gstep_make(&bg);
    gstep_make(&bp);
    /* both caches start with the same rows */
    gpu->upload(gbe, bp.kv.dev.k, bg.kv.host.k, bg.kv.bytes);
    gpu->upload(gbe, bp.kv.dev.v, bg.kv.host.v, bg.kv.bytes);
    float *x0 = rand_buf(GS_MAXN * GS_E, -1, 1);
    gpu->upload(gbe, bg.x, x0, GS_MAXN * GS_E * 4);
    gpu->upload(gbe, bp.x, x0, GS_MAXN * GS_E * 4);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    /* a big matmul's operands: enough rows that their 16-bit copy outgrows the backend's
     * first activation buffer (4 MiB) */
    const int64_t nb = (4 << 20) / (GS_E * 2) + 64;
    float *bx = rand_buf(nb * GS_E, -1, 1), *dbx = dev_copy(bx, nb * GS_E * 4);
    float *dby = dev_poisoned(nb * GS_F);
    float xg[GS_MAXN * GS_E], xp[GS_MAXN * GS_E], vg[GS_MAXN * 8], vp[GS_MAXN * 8];
    int32_t ig[GS_MAXN * 8], ip[GS_MAXN * 8];
    int32_t seq[GS_MAXN] = {0, 1, 2, 1}, pos[GS_MAXN] = {40, 3, 17, 4};
    for (int step = 0; step < 24; step++) {
        const int n = step < 8 ? 1 : step < 16 ? 3 : step < 20 ? 1 : 4;
        if (step == 12) {
            /* prompt-sized: the cuBLAS path and larger scratch */
            float *yg = malloc(nb * GS_F * 4), *yp = malloc(nb * GS_F * 4);
            gpu->matmul(gr, dby, GS_F, &w[5], dbx, GS_E, nb);
            CHECK(gpu->download(gr, yg, dby, nb * GS_F * 4) == LLM_OK);
            gpu->matmul(pl, dby, GS_F, &w[5], dbx, GS_E, nb);
            CHECK(gpu->download(pl, yp, dby, nb * GS_F * 4) == LLM_OK);
            CHECK(memcmp(yg, yp, nb * GS_F * 4) == 0);
            free(yg), free(yp);
        }
        graph_step(gr, &bg, w, n, seq, pos, xg, ig, vg);
        graph_step(pl, &bp, w, n, seq, pos, xp, ip, vp);
        int64_t bad = -1;
        for (int64_t i = 0; i < (int64_t)n * GS_E && bad < 0; i++)
            if (memcmp(&xg[i], &xp[i], 4) != 0 || isnan(xg[i]))
                bad = i;
        CHECK_MSG(bad < 0, "step %d (%d tokens): x[%lld] = %.9g with graphs, %.9g without",
                  step, n, (long long)bad, bad < 0 ? 0.0 : xg[bad], bad < 0 ? 0.0 : xp[bad]);
        CHECK_MSG(memcmp(ig, ip, (size_t)n * 8 * 4) == 0 && memcmp(vg, vp, (size_t)n * 32) == 0,
                  "step %d: top-k differs with graphs", step);
        for (int i = 0; i < GS_MAXN; i++)
            pos[i]++;
    }
    /* the caches hold the same rows */
    void *kg = host_copy(bg.kv.dev.k, bg.kv.bytes), *kp = host_copy(bp.kv.dev.k, bp.kv.bytes);
    CHECK(memcmp(kg, kp, bg.kv.bytes) == 0);
    free(kg), free(kp);
    gstep_free(&bg);
    gstep_free(&bp);
    gpu->free(gbe, dbx), gpu->free(gbe, dby);
    for (int i = 0; i < 8; i++) {
        gpu->release_weight(gbe_model, &w[i]);
        free(wh[i]);
    }
    free(x0), free(bx);
    graphs_replayed = graphs_captured = 0;
    llm_log_set(graph_log, LLM_LOG_DEBUG, NULL);
    gpu->destroy(pl);
    CHECK_MSG(graphs_replayed == 0 && graphs_captured == 0,
              "LLM_CUDA_GRAPHS=0: %ld graphs replayed", graphs_replayed);
    gpu->destroy(gr);
    llm_log_set(NULL, LLM_LOG_WARN, NULL);
    /* 4 runs of one batch size each, 2 segments per step: most steps are replays */
    CHECK_MSG(graphs_captured >= 8 && graphs_replayed >= 24,
              "graphs: %ld captured, %ld replayed", graphs_captured, graphs_replayed);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_errors(void)
{
    /* an op on a weight that was never prepared is reported by synchronize, once */
    uint8_t bytes[64] = {0};
    llm_tensor w = {.name = "unprepared", .dtype = LLM_DT_F32, .ne = {16, 1}, .row_bytes = 64,
                    .data = bytes};
    float *dx = dev_poisoned(16), *dy = dev_poisoned(1);
    gpu->matmul(gbe, dy, 1, &w, dx, 16, 1);
    CHECK(gpu->synchronize(gbe) != LLM_OK);
    CHECK(strstr(llm_last_error(), "unprepared") != NULL);
    CHECK(gpu->synchronize(gbe) == LLM_OK);
    /* an unsupported type is refused at preparation */
    llm_tensor bad = {.name = "iq2", .dtype = LLM_DT_IQ2_XXS, .ne = {256, 1}, .row_bytes = 66,
                      .data = bytes};
    CHECK(gpu->prepare_weight(gbe_model, &bad) == LLM_ERR_UNSUPPORTED);
    CHECK(!gpu->supports_dtype(gbe, LLM_DT_IQ2_XXS));
    CHECK(gpu->supports_dtype(gbe, LLM_DT_Q6_K));
    /* attention over a q8_0 cache whose heads are not whole blocks of 32 */
    kv_pair p = kv_make(LLM_DT_Q8_0, 2, 80);
    int32_t zero[MAX_BLOCKS] = {0};
    int32_t *dz = dev_copy(zero, sizeof zero);
    float *dq = dev_poisoned(4 * 80), *dout = dev_poisoned(4 * 80);
    llm_attention_args a = {
        .out = dout, .q = dq, .kv = &p.dev, .n_tokens = 1, .n_head = 4, .block_size = BS,
        .q_pos = dz, .q_seq = dz, .block_tables = dz, .max_blocks = MAX_BLOCKS, .scale = 1.0f,
    };
    gpu->attention(gbe, &a);
    CHECK(gpu->synchronize(gbe) == LLM_ERR_UNSUPPORTED);
    CHECK(strstr(llm_last_error(), "width 80") != NULL);
    kv_free(&p);
    gpu->free(gbe, dz), gpu->free(gbe, dq), gpu->free(gbe, dout);
    /* a device that does not exist */
    llm_backend *none = NULL;
    llm_backend_config cfg = {.device = 4096};
    CHECK(gpu->create(&cfg, &none) == LLM_ERR_UNSUPPORTED && none == NULL);
    gpu->free(gbe, dx), gpu->free(gbe, dy);
}

int main(void)
{
    cpu = llm__backend_cpu_ops();
    gpu = llm__backend_module("cuda");
    if (!gpu) {
        printf("SKIP: the CUDA backend module is not available: %s\n", llm_last_error());
        return 77;
    }
    llm_backend_config cfg = {.n_threads = 2};
    if (gpu->create(&cfg, &gbe_model) != LLM_OK) {
        printf("SKIP: no CUDA device: %s\n", llm_last_error());
        return 77;
    }
    if (gpu->create(&cfg, &gbe) != LLM_OK || cpu->create(&cfg, &cbe) != LLM_OK) {
        printf("FAIL: cannot create backends: %s\n", llm_last_error());
        return 1;
    }
    /* LLM_TEST_ONLY=name runs one case (the sanitizer runs) */
    const char *only = getenv("LLM_TEST_ONLY");
#define RUN(fn) do { if (!only || strcmp(only, #fn) == 0) TEST_RUN(fn); } while (0)
    RUN(test_matmul);
    RUN(test_matmul_slices);
    RUN(test_gemm_pairs);
    RUN(test_activation_reuse);
    RUN(test_get_rows);
    RUN(test_rms_norm);
    RUN(test_rope);
    RUN(test_glu_add_scale_copy);
    RUN(test_bias_softcap);
    RUN(test_moe);
    RUN(test_kv_write_copy);
    RUN(test_attention);
    RUN(test_flash_attention);
    RUN(test_batch_invariant);
    RUN(test_top_k);
    RUN(test_penalize);
    RUN(test_fused_ops);
    RUN(test_fused_rope_kv);
    RUN(test_graphs);
    RUN(test_errors);
#undef RUN
    gpu->destroy(gbe);
    gpu->destroy(gbe_model);
    cpu->destroy(cbe);
    return test_summary();
}
