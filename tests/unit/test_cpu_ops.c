/* test_cpu_ops.c - every op of the CPU backend's vtable against a float64 reference on
 * fresh random inputs, outputs poisoned (NaN) before each op runs; matmul and attention at
 * every instruction-set level of the kernels this CPU has (isa_levels.h). */
#include <math.h>
#include <stdint.h>

#include "backend.h"
#include "isa_levels.h"
#include "onednn.h"
#include "quants.h"
#include "test.h"
#include "topk_ref.h"

static const struct llm_backend_ops *ops;
static llm_backend *be;
static unsigned long long rng = 0x243f6a8885a308d3ULL;

static float *rand_buf(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = test_rand_f32(&rng, lo, hi);
    return p;
}

static float *poisoned(int64_t n)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

/* max |a - b| / max(|b|, floor) */
static double rel_err(const float *a, const double *b, int64_t n, double floor)
{
    double m = 0, scale = floor;
    for (int64_t i = 0; i < n; i++)
        scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(a[i]))
            return INFINITY;
        m = d > m ? d : m;
    }
    return m / scale;
}

static void test_rms_norm(void)
{
    const int64_t rows = 7, dim = 576;
    float *x = rand_buf(rows * dim, -3, 3), *w = rand_buf(dim, 0.5f, 1.5f), *y = poisoned(rows * dim);
    double *ref = malloc((size_t)(rows * dim) * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < dim; i++)
            ss += (double)x[r * dim + i] * x[r * dim + i];
        double sc = 1.0 / sqrt(ss / dim + 1e-5);
        for (int64_t i = 0; i < dim; i++)
            ref[r * dim + i] = x[r * dim + i] * sc * w[i];
    }
    llm_tensor wt = {.dtype = LLM_DT_F32, .ne = {dim, 1}, .row_bytes = (size_t)dim * 4, .data = w};
    ops->rms_norm(be, y, x, &wt, rows, dim, 1e-5f);
    CHECK_MSG(rel_err(y, ref, rows * dim, 1e-6) < 1e-6, "err %g", rel_err(y, ref, rows * dim, 1e-6));
    ops->rms_norm(be, x, x, &wt, rows, dim, 1e-5f); /* in place */
    CHECK(rel_err(x, ref, rows * dim, 1e-6) < 1e-6);
    free(x), free(w), free(y), free(ref);
}

static void rope_case(int mode, const float *ff)
{
    const int64_t n = 5, heads = 3, hd = 64, n_rot = 64;
    const int32_t pos[5] = {0, 1, 17, 300, 4095};
    float *x = rand_buf(n * heads * hd, -1, 1);
    double *ref = malloc((size_t)(n * heads * hd) * sizeof(double));
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < heads; h++) {
            const float *v = x + (t * heads + h) * hd;
            double *o = ref + (t * heads + h) * hd;
            for (int64_t i = 0; i < n_rot / 2; i++) {
                double th = pos[t] * pow(10000.0, -2.0 * i / n_rot) / (ff ? ff[i] : 1.0);
                int64_t a = mode == LLM_ROPE_NEOX ? i : 2 * i;
                int64_t b = mode == LLM_ROPE_NEOX ? i + n_rot / 2 : 2 * i + 1;
                o[a] = v[a] * cos(th) - v[b] * sin(th);
                o[b] = v[a] * sin(th) + v[b] * cos(th);
            }
        }
    llm_tensor fft = {.dtype = LLM_DT_F32, .ne = {n_rot / 2, 1}, .row_bytes = (size_t)n_rot * 2,
                      .data = ff};
    ops->rope(be, x, n, (int32_t)heads, (int32_t)hd, (int32_t)n_rot, pos, 10000.0f, 1.0f,
              ff ? &fft : NULL, mode);
    /* the angle table is a running float product, as in llama.cpp: error grows with pos */
    double e = rel_err(x, ref, n * heads * hd, 1e-3);
    CHECK_MSG(e < 2e-3, "mode %d err %g", mode, e);
    free(x), free(ref);
}

static void test_rope(void)
{
    float ff[32];
    for (int i = 0; i < 32; i++)
        ff[i] = 1.0f + (float)i / 8.0f;
    rope_case(LLM_ROPE_NORM, NULL);
    rope_case(LLM_ROPE_NEOX, NULL);
    rope_case(LLM_ROPE_NORM, ff);
}

static void test_glu_add_scale(void)
{
    const int64_t n = 1000;
    float *g = rand_buf(n, -12, 12), *u = rand_buf(n, -2, 2), *y = poisoned(n);
    double *ref = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    ops->glu(be, y, g, u, n, LLM_ACT_SILU);
    CHECK(rel_err(y, ref, n, 1e-3) < 1e-6);
    for (int64_t i = 0; i < n; i++) {
        double x = g[i];
        ref[i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
    }
    ops->glu(be, y, g, u, n, LLM_ACT_GELU_TANH);
    /* GELU goes through an f16 table (llama.cpp's numerics): f16 precision */
    CHECK_MSG(rel_err(y, ref, n, 1e-3) < 2e-3, "gelu err %g", rel_err(y, ref, n, 1e-3));
    ops->add(be, y, g, u, n);
    for (int64_t i = 0; i < n; i++)
        ref[i] = (double)g[i] + u[i];
    CHECK(rel_err(y, ref, n, 1e-3) < 1e-7);
    ops->scale(be, y, g, 0.125f, n);
    for (int64_t i = 0; i < n; i++)
        ref[i] = g[i] * 0.125;
    CHECK(rel_err(y, ref, n, 1e-3) == 0);
    int32_t rows[3] = {9, 0, 4};
    float *c = poisoned(3 * 100);
    ops->copy_rows(be, c, g, 100, rows, 3);
    CHECK(c[0] == g[900] && c[100] == g[0] && c[299] == g[499]);
    free(g), free(u), free(y), free(ref), free(c);
}

/* matmul of an f32 weight and of quantised weights (against their dequantised values) */
static void test_matmul(void)
{
    check_required_isa();
    const int64_t k = 512, rows = 37, n = 9;
    float *wf = rand_buf(rows * k, -1, 1), *x = rand_buf(n * k, -2, 2);
    const uint32_t types[] = {LLM_DT_F32, LLM_DT_F16, LLM_DT_BF16, LLM_DT_Q8_0, LLM_DT_Q4_1};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        size_t rb = llm__dtype_row_size(t, k);
        void *wq = malloc(rb * (size_t)rows);
        float *deq = malloc((size_t)(rows * k) * sizeof(float));
        if (t == LLM_DT_F32) {
            memcpy(wq, wf, rb * (size_t)rows);
        } else {
            const llm_quant_traits *tr = &llm__quant_ref[t];
            CHECK(tr->from_float != NULL);
            if (!tr->from_float)
                return;
            for (int64_t r = 0; r < rows; r++)
                tr->from_float(wf + r * k, (char *)wq + r * rb, k);
        }
        for (int64_t r = 0; r < rows; r++)
            llm__quant_ref[t].to_float((char *)wq + r * rb, deq + r * k, k);
        llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = wq};
        CHECK_EQ_INT(ops->prepare_weight(be, &w), LLM_OK);
        float *y = poisoned(n * rows);
        double *ref = malloc((size_t)(n * rows) * sizeof(double));
        for (int64_t j = 0; j < n; j++)
            for (int64_t r = 0; r < rows; r++) {
                double s = 0;
                for (int64_t i = 0; i < k; i++)
                    s += (double)deq[r * k + i] * x[j * k + i];
                ref[j * rows + r] = s;
            }
        ops->matmul(be, y, rows, &w, x, k, n);
        /* activations are quantised to 8 bits for quantised weights, rounded to f16 or
         * bf16 for those weights */
        double tol = t == LLM_DT_F32 ? 1e-5 : t == LLM_DT_F16 ? 2e-3 : 2e-2;
        double e = rel_err(y, ref, n * rows, 1.0);
        CHECK_MSG(e < tol, "type %u err %g", t, e);
        /* batch invariance: each token alone (the dot per row) gives the batch's bits (the
         * tile kernels, gemm) */
        float *y1 = poisoned(rows);
        for (int64_t j = 0; j < n; j++) {
            ops->matmul(be, y1, rows, &w, x + j * k, k, 1);
            CHECK_MSG(memcmp(y1, y + j * rows, (size_t)rows * sizeof(float)) == 0,
                      "type %u token %lld: alone differs from batched", t, (long long)j);
        }
        free(y1);
        float *g = poisoned(3 * k);
        int32_t ids[3] = {5, 0, 36};
        ops->get_rows(be, g, &w, ids, 3);
        CHECK(memcmp(g, deq + 5 * k, (size_t)k * 4) == 0 && memcmp(g + 2 * k, deq + 36 * k, (size_t)k * 4) == 0);
        ops->release_weight(be, &w);
        free(wq), free(deq), free(y), free(ref), free(g);
    }
    CHECK_EQ_INT(ops->synchronize(be), LLM_OK);
    free(wf), free(x);
    /* float rows of other lengths than multiples of 32 (no tiles): still batch-invariant */
    const int64_t k2 = 72, rows2 = 5, n2 = 4;
    const uint32_t ftypes[] = {LLM_DT_F32, LLM_DT_F16, LLM_DT_BF16};
    float *w2 = rand_buf(rows2 * k2, -1, 1), *x2 = rand_buf(n2 * k2, -2, 2);
    for (size_t ti = 0; ti < 3; ti++) {
        const uint32_t t = ftypes[ti];
        const size_t rb = llm__dtype_row_size(t, k2);
        char *wq = malloc(rb * (size_t)rows2);
        for (int64_t r = 0; r < rows2; r++)
            llm__quant_ref[t].from_float(w2 + r * k2, wq + r * rb, k2);
        llm_tensor w = {.dtype = t, .ne = {k2, rows2}, .row_bytes = rb, .data = wq};
        CHECK_EQ_INT(ops->prepare_weight(be, &w), LLM_OK);
        float *y = poisoned(n2 * rows2), *y1 = poisoned(rows2);
        ops->matmul(be, y, rows2, &w, x2, k2, n2);
        for (int64_t j = 0; j < n2; j++) {
            ops->matmul(be, y1, rows2, &w, x2 + j * k2, k2, 1);
            CHECK_MSG(memcmp(y1, y + j * rows2, (size_t)rows2 * sizeof(float)) == 0,
                      "type %u k %lld token %lld: alone differs from batched", t,
                      (long long)k2, (long long)j);
        }
        ops->release_weight(be, &w);
        free(wq), free(y), free(y1);
    }
    free(w2), free(x2);
}

/* BF16, F32 and F16 prompts through oneDNN (onednn.h): directly, with a wider output stride
 * (the gaps untouched) and, for f32, activations with a wider row stride, and through the
 * backend's matmul, against the float64 sums of the same values (F16: activations rounded
 * to f16 as the F16 dot rounds them; weights widened in panels, one panel and several);
 * and with
 * LLM_CPU_BATCH_INVARIANT=1 the backend keeps its tiles, whose result for each token
 * equals that token alone. */
static void onednn_case(llm_dnnl *d, uint32_t dtype)
{
    const int64_t k = 512, rows = 37, n = LLM_DNNL_MIN_TOKENS + 8, ldy = rows + 3;
    const int64_t ldx = dtype == LLM_DT_F32 ? k + 16 : k;
    float *wf = rand_buf(rows * k, -1, 1), *x = rand_buf(n * ldx, -2, 2);
    const size_t es = dtype == LLM_DT_F32 ? 4 : 2, rb = (size_t)k * es;
    float *panel = malloc((size_t)(rows * k) * sizeof(float));
    char *wq = malloc(rb * (size_t)rows);
    llm_bf16 *xq = malloc((size_t)(n * k) * sizeof(llm_bf16));
    float *xv = malloc((size_t)(n * k) * sizeof(float)); /* the activations' values used */
    for (int64_t r = 0; r < rows; r++)
        llm__quant_ref[dtype].from_float(wf + r * k, wq + (size_t)r * rb, k);
    for (int64_t t = 0; t < n; t++) {
        llm__quant_ref[LLM_DT_BF16].from_float(x + t * ldx, xq + t * k, k);
        for (int64_t i = 0; i < k; i++)
            xv[t * k + i] = dtype == LLM_DT_F32   ? x[t * ldx + i]
                            : dtype == LLM_DT_F16 ? llm__f16_to_f32(llm__f32_to_f16(x[t * ldx + i]))
                                                  : llm__bf16_to_f32(xq[t * k + i]);
    }
    double *ref = malloc((size_t)(n * rows) * sizeof(double));
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t i = 0; i < k; i++) {
                const void *wr = wq + (size_t)r * rb;
                const float wv = dtype == LLM_DT_F32   ? ((const float *)wr)[i]
                                 : dtype == LLM_DT_F16 ? llm__f16_to_f32(((const llm_f16 *)wr)[i])
                                                       : llm__bf16_to_f32(((const llm_bf16 *)wr)[i]);
                s += (double)wv * xv[t * k + i];
            }
            ref[t * rows + r] = s;
        }
    float *y = poisoned(n * ldy), *packed = poisoned(n * rows);
    if (dtype == LLM_DT_F16) {
        /* several panels, then one (the backend's choice for so few rows) */
        CHECK(llm__dnnl_matmul_f16(d, y, ldy, wq, rb, rows, xv, k, k, n, 2, panel, 16) == 1);
        float *yp = malloc((size_t)(n * rows) * sizeof(float));
        for (int64_t t = 0; t < n; t++)
            memcpy(yp + t * rows, y + t * ldy, (size_t)rows * sizeof(float));
        const double ep = rel_err(yp, ref, n * rows, 1.0);
        CHECK_MSG(ep < 1e-5, "f16 in panels of 16 rows: err %g", ep);
        free(yp);
        for (int64_t i = 0; i < n * ldy; i++)
            y[i] = NAN;
        CHECK(llm__dnnl_matmul_f16(d, y, ldy, wq, rb, rows, xv, k, k, n, 2, panel, rows) == 1);
    } else if (dtype == LLM_DT_F32)
        CHECK(llm__dnnl_matmul_f32(d, y, ldy, wq, rb, rows, x, ldx, k, n, 2) == 1);
    else
        CHECK(llm__dnnl_matmul_bf16(d, y, ldy, wq, rb, rows, xq, k, n, 2) == 1);
    int gaps = 0;
    for (int64_t t = 0; t < n; t++) {
        memcpy(packed + t * rows, y + t * ldy, (size_t)rows * sizeof(float));
        for (int64_t r = rows; r < ldy; r++)
            gaps += !isnan(y[t * ldy + r]);
    }
    CHECK_MSG(gaps == 0, "dtype %u: %d output gaps written", dtype, gaps);
    double e = rel_err(packed, ref, n * rows, 1.0);
    CHECK_MSG(e < 1e-5, "dtype %u: oneDNN err %g", dtype, e);
    /* again with the backend's output stride (oneDNN's f32 kernels sum differently for
     * another one): the bits the backend must give */
    if (dtype == LLM_DT_F16)
        CHECK(llm__dnnl_matmul_f16(d, packed, rows, wq, rb, rows, xv, k, k, n, 2, panel, rows));
    else if (dtype == LLM_DT_F32)
        CHECK(llm__dnnl_matmul_f32(d, packed, rows, wq, rb, rows, x, ldx, k, n, 2));
    else
        CHECK(llm__dnnl_matmul_bf16(d, packed, rows, wq, rb, rows, xq, k, n, 2));
    /* through the backend (for bf16 the activations rounded by it) */
    llm_tensor w = {.dtype = dtype, .ne = {k, rows}, .row_bytes = rb, .data = wq};
    CHECK_EQ_INT(ops->prepare_weight(be, &w), LLM_OK);
    float *yb = poisoned(n * rows);
    ops->matmul(be, yb, rows, &w, x, ldx, n);
    e = rel_err(yb, ref, n * rows, 1.0);
    CHECK_MSG(e < 1e-5, "dtype %u: backend (oneDNN) err %g", dtype, e);
    /* it went through oneDNN: the same bits as the direct call (the tiles sum otherwise) */
    CHECK_MSG(memcmp(yb, packed, (size_t)(n * rows) * sizeof(float)) == 0,
              "dtype %u: the backend did not take oneDNN", dtype);
    ops->release_weight(be, &w);
    /* batch-invariant mode: a backend made with LLM_CPU_BATCH_INVARIANT=1 */
    setenv("LLM_CPU_BATCH_INVARIANT", "1", 1);
    llm_backend *bi = NULL;
    llm_backend_config cfg = {.n_threads = 2};
    CHECK_EQ_INT(ops->create(&cfg, &bi), LLM_OK);
    unsetenv("LLM_CPU_BATCH_INVARIANT");
    if (bi) {
        CHECK_EQ_INT(ops->prepare_weight(bi, &w), LLM_OK);
        float *y1 = poisoned(rows);
        ops->matmul(bi, yb, rows, &w, x, ldx, n);
        int differ = 0;
        for (int64_t t = 0; t < n; t++) {
            ops->matmul(bi, y1, rows, &w, x + t * ldx, ldx, 1);
            differ += memcmp(y1, yb + t * rows, (size_t)rows * sizeof(float)) != 0;
        }
        CHECK_MSG(differ == 0, "dtype %u batch-invariant mode: %d tokens differ alone", dtype,
                  differ);
        ops->release_weight(bi, &w);
        ops->destroy(bi);
        free(y1);
    }
    free(wf), free(x), free(wq), free(xq), free(xv), free(ref), free(y), free(packed), free(yb);
    free(panel);
}

static void test_matmul_onednn(void)
{
    llm_dnnl *d = llm__dnnl_create();
    if (!d) {
        printf("     oneDNN not available (built without libdnnl-dev, or LLM_CPU_NO_DNNL set): NOT TESTED\n");
        return;
    }
    onednn_case(d, LLM_DT_BF16);
    onednn_case(d, LLM_DT_F32);
    onednn_case(d, LLM_DT_F16);
    llm__dnnl_free(d);
}

/* Paged attention over scattered blocks equals dense attention over the same keys. */
/* x rounded to what a cache row of dtype holds */
static void kv_round_trip(uint32_t dtype, float *x, int64_t n)
{
    void *tmp = malloc(llm__dtype_row_size(dtype, n));
    if (dtype == LLM_DT_F16) {
        for (int64_t i = 0; i < n; i++)
            x[i] = llm__f16_to_f32(llm__f32_to_f16(x[i]));
    } else if (dtype == LLM_DT_BF16) {
        for (int64_t i = 0; i < n; i++)
            x[i] = llm__bf16_to_f32(llm__f32_to_bf16(x[i]));
    } else {
        llm__quant_ref[dtype].from_float(x, tmp, n);
        llm__quant_ref[dtype].to_float(tmp, x, n);
    }
    free(tmp);
}

static void attention_case(uint32_t dtype, int32_t window, float softcap)
{
    const int32_t bs = 4, n_blocks = 16, n_kv = 2, hd = 32, n_head = 4, n_seq = 2;
    const int32_t lens[2] = {23, 9};
    llm_kv_layer kv = {.dtype = dtype, .n_head_kv = n_kv, .head_dim = hd};
    const size_t row_bytes = llm__dtype_row_size(dtype, n_kv * hd);
    size_t pool = (size_t)n_blocks * bs * row_bytes;
    kv.k = malloc(pool);
    kv.v = malloc(pool);
    /* block tables: a shuffled assignment of blocks */
    int32_t tables[2 * 16], perm[16];
    for (int i = 0; i < 16; i++)
        perm[i] = i;
    for (int i = 15; i > 0; i--) {
        int j = (int)(test_rand_u64(&rng) % (unsigned)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < 16; i++)
        tables[i] = perm[i < 6 ? i : 0], tables[16 + i] = perm[i < 3 ? 6 + i : 6];
    /* write each sequence's keys and values */
    float *k[2], *v[2];
    for (int s = 0; s < n_seq; s++) {
        k[s] = rand_buf(lens[s] * n_kv * hd, -1, 1);
        v[s] = rand_buf(lens[s] * n_kv * hd, -1, 1);
        int32_t slots[32];
        for (int p = 0; p < lens[s]; p++)
            slots[p] = tables[s * 16 + p / bs] * bs + p % bs;
        ops->kv_write(be, &kv, k[s], v[s], slots, lens[s]);
        /* the reference uses the values the cache can hold */
        for (int p = 0; p < lens[s]; p++) {
            kv_round_trip(dtype, k[s] + p * n_kv * hd, n_kv * hd);
            kv_round_trip(dtype, v[s] + p * n_kv * hd, n_kv * hd);
        }
    }
    /* queries: the last 3 positions of seq 0 and the last 2 of seq 1 */
    const int nq = 5;
    int32_t q_pos[5] = {20, 21, 22, 7, 8}, q_seq[5] = {0, 0, 0, 1, 1};
    float *q = rand_buf(nq * n_head * hd, -2, 2), *out = poisoned(nq * n_head * hd);
    double *ref = malloc((size_t)(nq * n_head * hd) * sizeof(double));
    for (int t = 0; t < nq; t++)
        for (int h = 0; h < n_head; h++) {
            int s = q_seq[t], kh = h / (n_head / n_kv), p = q_pos[t];
            int p0 = window && p - window + 1 > 0 ? p - window + 1 : 0;
            double sc[32], mx = -INFINITY, sum = 0;
            for (int j = p0; j <= p; j++) {
                double d = 0;
                for (int i = 0; i < hd; i++) {
                    float kk = k[s][(j * n_kv + kh) * hd + i];
                    d += (double)q[(t * n_head + h) * hd + i] * kk;
                }
                d *= 0.17;
                if (softcap > 0)
                    d = softcap * tanh(d / softcap);
                sc[j - p0] = d;
                mx = d > mx ? d : mx;
            }
            for (int j = p0; j <= p; j++)
                sum += sc[j - p0] = exp(sc[j - p0] - mx);
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int j = p0; j <= p; j++)
                    o += sc[j - p0] / sum * v[s][(j * n_kv + kh) * hd + i];
                ref[(t * n_head + h) * hd + i] = o;
            }
        }
    llm_attention_args a = {.out = out, .q = q, .kv = &kv, .n_tokens = nq, .n_head = n_head,
                            .block_size = bs, .q_pos = q_pos, .q_seq = q_seq,
                            .block_tables = tables, .max_blocks = 16, .scale = 0.17f,
                            .softcap = softcap, .window = window};
    ops->attention(be, &a);
    /* f32 arithmetic over the cache values */
    double e = rel_err(out, ref, nq * n_head * hd, 0.1);
    CHECK_MSG(e < 1e-5, "dtype %u window %d softcap %g: err %g", dtype, window, softcap, e);
    /* copy-on-write copies a block in both pools */
    ops->kv_copy_block(be, &kv, bs, perm[15], tables[0]);
    const size_t blk = (size_t)bs * row_bytes;
    CHECK(memcmp((char *)kv.k + (size_t)perm[15] * blk, (char *)kv.k + (size_t)tables[0] * blk,
                 blk) == 0);
    CHECK(memcmp((char *)kv.v + (size_t)perm[15] * blk, (char *)kv.v + (size_t)tables[0] * blk,
                 blk) == 0);
    free(kv.k), free(kv.v), free(q), free(out), free(ref);
    for (int s = 0; s < n_seq; s++)
        free(k[s]), free(v[s]);
}

static void test_attention(void)
{
    const uint32_t types[] = {LLM_DT_F16, LLM_DT_BF16, LLM_DT_Q8_0};
    for (int i = 0; i < 3; i++) {
        attention_case(types[i], 0, 0);
        attention_case(types[i], 5, 0);
        attention_case(types[i], 0, 3.0f);
    }
}

/* The f16 attention one key at a time through the level's row helpers (llm__dot_f32_f16,
 * llm__exp_row, llm__axpy_f16): the operations cpu.c's block kernels must repeat for every
 * head, whatever heads and keys they take together. Dense cache: key j of KV head kh at
 * k + (j * n_kv + kh) * hd. */
static void attention_one_key_at_a_time(float *out, const float *q, const llm_f16 *k,
                                        const llm_f16 *v, int32_t hd, int32_t n_head,
                                        int32_t n_kv, int32_t p, int32_t window, float scale,
                                        float softcap)
{
    float acc[512];
    for (int32_t h = 0; h < n_head; h++) {
        const int32_t kh = h / (n_head / n_kv);
        const int32_t p0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
        float m = -INFINITY, sum = 0.0f;
        memset(acc, 0, sizeof acc);
        for (int32_t j = p0; j <= p; j++) {
            float s = llm__dot_f32_f16(hd, q + h * hd, k + ((size_t)j * n_kv + kh) * hd) * scale;
            if (softcap > 0.0f)
                s = softcap * tanhf(s / softcap);
            const int raise = s > m;
            float arg = raise ? m - s : s - m, e, ms = 1.0f, vs = 1.0f;
            llm__exp_row(1, &arg, &e);
            m = raise ? s : m;
            if (raise) {
                ms = e;
                for (int32_t d = 0; d < hd; d++)
                    acc[d] *= ms;
            } else {
                vs = e;
            }
            llm__axpy_f16(hd, acc, vs, v + ((size_t)j * n_kv + kh) * hd);
            sum = sum * ms + vs;
        }
        for (int32_t d = 0; d < hd; d++)
            out[h * hd + d] = acc[d] * (1.0f / sum);
    }
}

/* The f16 cache's block kernels (several heads of a KV head at once, keys in blocks, the
 * accumulators in registers) against one key at a time: the same bits, for head sizes with
 * and without a fused kernel, groups of 1 to 9 heads, softcap and window; and a prompt's
 * tokens all at once the same as each alone (thread count and heads per item vary). */
static void test_attention_blocks_f16(void)
{
    const int32_t hds[] = {32, 64, 96, 128, 256, 80, 40};
    const int32_t groups[] = {1, 3, 4, 7, 8, 9};
    const int32_t n_keys = 45, bs = 16;
    int cases = 0, differ = 0;
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
            const int32_t hd = hds[hi], n_kv = gi % 2 ? 1 : 2, n_head = groups[gi] * n_kv;
            const int variant = (int)((hi + gi) % 3);
            const int32_t window = variant == 1 ? 19 : 0;
            const float softcap = variant == 2 ? 2.5f : 0.0f, scale = 1.0f / sqrtf((float)hd);
            llm_kv_layer kv = {.dtype = LLM_DT_F16, .n_head_kv = n_kv, .head_dim = hd};
            const int64_t row = (int64_t)n_kv * hd;
            kv.k = malloc((size_t)(n_keys * row) * sizeof(llm_f16));
            kv.v = malloc((size_t)(n_keys * row) * sizeof(llm_f16));
            float *kf = rand_buf(n_keys * row, -2, 2), *vf = rand_buf(n_keys * row, -1, 1);
            int32_t slots[45], tables[3] = {0, 1, 2}, q_seq[45], q_pos[45];
            for (int32_t j = 0; j < n_keys; j++)
                slots[j] = j, q_seq[j] = 0, q_pos[j] = j;
            ops->kv_write(be, &kv, kf, vf, slots, n_keys);
            float *q = rand_buf(n_keys * n_head * hd, -2, 2);
            float *all = poisoned(n_keys * n_head * hd), *one = poisoned(n_head * hd);
            float *ref = poisoned(n_head * hd);
            llm_attention_args a = {.out = all, .q = q, .kv = &kv, .n_tokens = n_keys,
                                    .n_head = n_head, .block_size = bs, .q_pos = q_pos,
                                    .q_seq = q_seq, .block_tables = tables, .max_blocks = 3,
                                    .scale = scale, .softcap = softcap, .window = window};
            ops->attention(be, &a);
            for (int32_t t = 0; t < n_keys; t += 11) {
                attention_one_key_at_a_time(ref, q + (size_t)t * n_head * hd, kv.k, kv.v, hd,
                                            n_head, n_kv, t, window, scale, softcap);
                llm_attention_args a1 = a;
                a1.out = one, a1.q = q + (size_t)t * n_head * hd, a1.n_tokens = 1;
                a1.q_pos = q_pos + t, a1.q_seq = q_seq + t;
                ops->attention(be, &a1);
                const size_t bytes = (size_t)(n_head * hd) * sizeof(float);
                int bad = memcmp(all + (size_t)t * n_head * hd, ref, bytes) != 0 ||
                          memcmp(one, ref, bytes) != 0;
                CHECK_MSG(!bad, "hd %d heads %d/%d window %d softcap %g token %d differs", hd,
                          n_head, n_kv, window, softcap, t);
                differ += bad;
                cases++;
            }
            free(kv.k), free(kv.v), free(kf), free(vf), free(q), free(all), free(one), free(ref);
        }
    printf("     %d of %d (head size, group, token) cases differ from one key at a time\n",
           differ, cases);
}

/* llm__attn_softmax of the level in use against its scalar form, bit for bit: blocks of 1
 * to 16 keys with ties (equal scores, +0 and -0), infinities and NaN among the scores, the
 * running maximum starting at -inf, finite or NaN, several heads at once. */
static void test_attn_softmax_level(void)
{
    const int32_t nh = 5;
    int cases = 0, differ = 0;
    for (int round = 0; round < 400; round++) {
        const int nk = 1 + round % LLM_ATT_BLOCK;
        float sc[5 * LLM_ATT_BLOCK];
        float m0[5], s0[5], m1[5], s1[5];
        float ms0[5 * LLM_ATT_BLOCK], vs0[5 * LLM_ATT_BLOCK], ms1[5 * LLM_ATT_BLOCK],
            vs1[5 * LLM_ATT_BLOCK];
        for (int i = 0; i < nh * LLM_ATT_BLOCK; i++) {
            const unsigned r = (unsigned)(test_rand_u64(&rng) % 16);
            /* few distinct values make ties and raises at every position */
            sc[i] = r < 8 ? (float)(r % 4) - 1.5f : test_rand_f32(&rng, -20, 20);
            if (r == 8)
                sc[i] = 0.0f;
            else if (r == 9)
                sc[i] = -0.0f;
            else if (r == 10 && round % 7 == 0)
                sc[i] = -INFINITY;
            else if (r == 11 && round % 11 == 0)
                sc[i] = NAN;
            else if (r == 12 && round % 13 == 0)
                sc[i] = INFINITY;
        }
        for (int h = 0; h < nh; h++) {
            const int k = (round + h) % 5;
            m0[h] = k == 0 ? -INFINITY : k == 4 && round % 9 == 0 ? NAN : (float)k - 2.0f;
            s0[h] = k == 0 ? 0.0f : 1.0f + (float)h;
            m1[h] = m0[h], s1[h] = s0[h];
        }
        const float scale = round % 3 ? 0.7f : 1.0f;
        llm__attn_softmax(nh, nk, sc, scale, 0.0f, m1, s1, ms1, vs1);
        llm__attn_softmax_generic(nh, nk, sc, scale, 0.0f, m0, s0, ms0, vs0);
        int bad = memcmp(m0, m1, sizeof m0) != 0 || memcmp(s0, s1, sizeof s0) != 0;
        for (int h = 0; h < nh; h++)
            bad |= memcmp(ms0 + h * LLM_ATT_BLOCK, ms1 + h * LLM_ATT_BLOCK,
                          (size_t)nk * sizeof(float)) != 0 ||
                   memcmp(vs0 + h * LLM_ATT_BLOCK, vs1 + h * LLM_ATT_BLOCK,
                          (size_t)nk * sizeof(float)) != 0;
        CHECK_MSG(!bad, "round %d (%d keys) differs from the scalar form", round, nk);
        differ += bad;
        cases++;
    }
    printf("     %d of %d blocks differ from the scalar form\n", differ, cases);
}

/* The small ops split over the pool above a size (cpu.c, PAR_MIN_ELEMS): the same bits as
 * the same op called on pieces small enough for one thread; GELU equal bit for bit to its
 * f16-table formula (llama.cpp's). */
static float gelu_f16_expected(float x)
{
    if (x <= -10.0f)
        return 0.0f;
    if (x >= 10.0f)
        return x;
    const float h = llm__f16_to_f32(llm__f32_to_f16(x));
    const float g = 0.5f * h * (1.0f + tanhf(0.7978845608028654f * h * (1.0f + 0.044715f * h * h)));
    return llm__f16_to_f32(llm__f32_to_f16(g));
}

static void test_small_ops_split(void)
{
    const int64_t rows = 64, dim = 576, n = rows * dim, piece = 1000;
    float *x = rand_buf(n, -12, 12), *u = rand_buf(n, -2, 2), *w = rand_buf(dim, 0.5f, 1.5f);
    float *y = poisoned(n), *y1 = poisoned(n);
    const size_t bytes = (size_t)n * sizeof(float);
    llm_tensor wt = {.dtype = LLM_DT_F32, .ne = {dim, 1}, .row_bytes = (size_t)dim * 4, .data = w};
    ops->rms_norm(be, y, x, &wt, rows, dim, 1e-6f);
    for (int64_t r = 0; r < rows; r++)
        ops->rms_norm(be, y1 + r * dim, x + r * dim, &wt, 1, dim, 1e-6f);
    CHECK_MSG(memcmp(y, y1, bytes) == 0, "rms_norm: split differs");
    const int acts[2] = {LLM_ACT_SILU, LLM_ACT_GELU_TANH};
    for (int a = 0; a < 2; a++) {
        ops->glu(be, y, x, u, n, acts[a]);
        for (int64_t i = 0; i < n; i += piece)
            ops->glu(be, y1 + i, x + i, u + i, n - i < piece ? n - i : piece, acts[a]);
        CHECK_MSG(memcmp(y, y1, bytes) == 0, "glu %d: split differs", acts[a]);
    }
    /* SiLU's exponentials come a chunk at a time from llm__exp_row: equal to expf */
    const float extreme[8] = {-200.0f, -103.5f, -88.5f, -87.0f, 87.5f, 88.5f, 89.0f, 150.0f};
    memcpy(x + 100, extreme, sizeof extreme);
    ops->glu(be, y, x, u, n, LLM_ACT_SILU);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float want = (x[i] / (1.0f + expf(-x[i]))) * u[i];
        bad += memcmp(&y[i], &want, sizeof want) != 0;
    }
    CHECK_MSG(bad == 0, "silu: %lld of %lld differ from expf's", (long long)bad, (long long)n);
    ops->glu(be, y, x, u, n, LLM_ACT_GELU_TANH);
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += y[i] != gelu_f16_expected(x[i]) * u[i];
    CHECK_MSG(bad == 0, "gelu: %lld of %lld differ from the f16 table", (long long)bad,
              (long long)n);
    ops->add(be, y, x, u, n);
    for (int64_t i = 0; i < n; i += piece)
        ops->add(be, y1 + i, x + i, u + i, n - i < piece ? n - i : piece);
    CHECK(memcmp(y, y1, bytes) == 0);
    ops->scale(be, y, x, 0.3f, n);
    for (int64_t i = 0; i < n; i += piece)
        ops->scale(be, y1 + i, x + i, 0.3f, n - i < piece ? n - i : piece);
    CHECK(memcmp(y, y1, bytes) == 0);
    ops->softcap(be, y, x, 30.0f, n);
    for (int64_t i = 0; i < n; i += piece)
        ops->softcap(be, y1 + i, x + i, 30.0f, n - i < piece ? n - i : piece);
    CHECK(memcmp(y, y1, bytes) == 0);
    /* rope: 64 tokens of 9 heads of 64 */
    int32_t pos[64];
    for (int t = 0; t < 64; t++)
        pos[t] = (int32_t)(test_rand_u64(&rng) % 8192);
    for (int mode = 0; mode < 2; mode++) {
        const int m = mode ? LLM_ROPE_NEOX : LLM_ROPE_NORM;
        memcpy(y, x, bytes);
        memcpy(y1, x, bytes);
        ops->rope(be, y, rows, 9, 64, 64, pos, 10000.0f, 1.0f, NULL, m);
        for (int64_t t = 0; t < rows; t++)
            ops->rope(be, y1 + t * dim, 1, 9, 64, 64, pos + t, 10000.0f, 1.0f, NULL, m);
        CHECK_MSG(memcmp(y, y1, bytes) == 0, "rope mode %d: split differs", m);
    }
    /* KV write: 64 tokens of 2 x 4 x 64 values into shuffled slots */
    llm_kv_layer kv = {.dtype = LLM_DT_F16, .n_head_kv = 4, .head_dim = 64};
    const size_t kvb = (size_t)rows * 256 * sizeof(llm_f16);
    void *ka = malloc(kvb), *va = malloc(kvb), *kb = malloc(kvb), *vb = malloc(kvb);
    int32_t slots[64];
    for (int t = 0; t < 64; t++)
        slots[t] = (t * 37) % 64;
    kv.k = ka, kv.v = va;
    ops->kv_write(be, &kv, x, u, slots, rows);
    kv.k = kb, kv.v = vb;
    for (int t = 0; t < 64; t++)
        ops->kv_write(be, &kv, x + t * 256, u + t * 256, slots + t, 1);
    CHECK(memcmp(ka, kb, kvb) == 0 && memcmp(va, vb, kvb) == 0);
    free(ka), free(va), free(kb), free(vb);
    free(x), free(u), free(w), free(y), free(y1);
}

/* The repacked weights (8 interleaved rows, repack.h) against the scalar reference vec_dot
 * of every (row, token) pair on the same quantised activations, and the batching property:
 * a token's outputs are bit-identical whether it is computed alone or among others. */
static void test_matmul_repacked(void)
{
    const int64_t k = 768, rows = 48, n = 11;
    const uint32_t types[] = {LLM_DT_Q4_0, LLM_DT_Q4_1, LLM_DT_Q5_0, LLM_DT_Q8_0, LLM_DT_Q4_K,
                              LLM_DT_Q6_K};
    float *wf = rand_buf(rows * k, -1, 1), *x = rand_buf(n * k, -2, 2);
    float *deq = malloc((size_t)(rows * k) * sizeof(float));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        const llm_quant_traits *ref = &llm__quant_ref[t];
        const llm_quant_traits *act = &llm__quant_ref[ref->vec_dot_type];
        const size_t rb = llm__dtype_row_size(t, k), ab = llm__dtype_row_size(ref->vec_dot_type, k);
        char *wq = malloc(rb * (size_t)rows), *xq = malloc(ab * (size_t)n);
        if (ref->from_float) {
            for (int64_t r = 0; r < rows; r++)
                ref->from_float(wf + r * k, wq + r * rb, k);
        } else {
            /* K-quants have no quantiser here: random blocks with sane super-block scales */
            for (size_t i = 0; i < rb * (size_t)rows; i++)
                wq[i] = (char)test_rand_u64(&rng);
            for (int64_t b = 0; b < rows * k / QK_K; b++) {
                if (t == LLM_DT_Q4_K) {
                    block_q4_K *blk = (block_q4_K *)wq + b;
                    blk->d = llm__f32_to_f16(test_rand_f32(&rng, 0.001f, 0.02f));
                    blk->dmin = llm__f32_to_f16(test_rand_f32(&rng, 0.001f, 0.02f));
                } else {
                    block_q6_K *blk = (block_q6_K *)wq + b;
                    blk->d = llm__f32_to_f16(test_rand_f32(&rng, 0.001f, 0.02f));
                }
            }
        }
        for (int64_t r = 0; r < rows; r++)
            ref->to_float(wq + r * rb, deq + r * k, k);
        for (int64_t j = 0; j < n; j++)
            act->from_float(x + j * k, xq + j * ab, k);
        llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = wq};
        CHECK_EQ_INT(ops->prepare_weight(be, &w), LLM_OK);
        /* AVX2 repacks all six; NEON (64-bit ARM) all but Q5_0 and Q6_K */
        if (strncmp(llm__cpu_features(), "avx2", 4) == 0 ||
            (strncmp(llm__cpu_features(), "neon", 4) == 0 && t != LLM_DT_Q6_K &&
             t != LLM_DT_Q5_0))
            CHECK_MSG(w.extra != NULL, "type %u was not repacked", t);
        float *y = poisoned(n * rows), *y1 = poisoned(rows);
        ops->matmul(be, y, rows, &w, x, k, n);
        double worst = 0;
        for (int64_t j = 0; j < n; j++) {
            for (int64_t r = 0; r < rows; r++) {
                float s;
                ref->vec_dot(k, &s, wq + r * rb, xq + j * ab);
                /* the integer sums are exact; only the float accumulation order differs */
                double mag = 0;
                for (int64_t i = 0; i < k; i++)
                    mag += fabs((double)deq[r * k + i] * x[j * k + i]);
                double e = fabs((double)y[j * rows + r] - s) / mag;
                worst = e > worst ? e : worst;
            }
            ops->matmul(be, y1, rows, &w, x + j * k, k, 1);
            CHECK_MSG(memcmp(y1, y + j * rows, (size_t)rows * sizeof(float)) == 0,
                      "type %u token %lld: alone differs from batched", t, (long long)j);
        }
        CHECK_MSG(worst < 1e-5, "type %u: max |diff| / sum|w x| %g", t, worst);
        ops->release_weight(be, &w);
        CHECK(w.extra == NULL);
        free(wq), free(xq), free(y), free(y1);
    }
    free(wf), free(x), free(deq);
}

/* The kernels of every level give the first level's bits (AVX2; on 64-bit ARM plain NEON):
 * the same weights and activations through matmul (repacked or not, one token and several)
 * at each level, compared with memcmp. */
static void test_matmul_levels_agree(void)
{
    const int64_t k = 512, rows = 40, n = 6;
    const uint32_t types[] = {LLM_DT_F32, LLM_DT_F16, LLM_DT_Q4_0, LLM_DT_Q4_1, LLM_DT_Q5_0,
                              LLM_DT_Q8_0, LLM_DT_Q4_K, LLM_DT_Q6_K};
    if (!llm__quant_select(isa_levels[0])) {
        printf("     no %s on this CPU: one level only\n", isa_levels[0]);
        isa_restore();
        return;
    }
    float *x = rand_buf(n * k, -2, 2), *wf = rand_buf(rows * k, -1, 1);
    float *want = poisoned((n + 1) * rows), *got = poisoned((n + 1) * rows);
    int compared = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        const size_t rb = llm__dtype_row_size(t, k);
        char *wq = malloc(rb * (size_t)rows);
        if (t == LLM_DT_F32 || llm__quant_ref[t].from_float) {
            for (int64_t r = 0; r < rows; r++)
                llm__quant_ref[t].from_float(wf + r * k, wq + r * rb, k);
        } else {
            for (size_t i = 0; i < rb * (size_t)rows; i++)
                wq[i] = (char)test_rand_u64(&rng);
            for (int64_t b = 0; b < rows * k / QK_K; b++) {
                const llm_f16 d = llm__f32_to_f16(test_rand_f32(&rng, 0.001f, 0.02f));
                if (t == LLM_DT_Q4_K)
                    ((block_q4_K *)wq)[b].d = ((block_q4_K *)wq)[b].dmin = d;
                else
                    ((block_q6_K *)wq)[b].d = d;
            }
        }
        const char *prev = NULL;
        for (size_t l = 0; l < N_ISA_LEVELS; l++) {
            if (!llm__quant_select(isa_levels[l]) ||
                (prev && strcmp(prev, llm__cpu_features()) == 0))
                continue;
            prev = llm__cpu_features();
            llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = wq};
            CHECK_EQ_INT(ops->prepare_weight(be, &w), LLM_OK);
            float *out = l == 0 ? want : got;
            ops->matmul(be, out, rows, &w, x, k, n);
            ops->matmul(be, out + n * rows, rows, &w, x, k, 1);
            ops->release_weight(be, &w);
            if (l > 0) {
                CHECK_MSG(memcmp(want, got, (size_t)((n + 1) * rows) * sizeof(float)) == 0,
                          "type %u: level %s differs from %s", t, isa_levels[l], isa_levels[0]);
                compared++;
            }
        }
        free(wq);
    }
    printf("     %d (type, level) matmuls equal to %s's bit for bit\n", compared, isa_levels[0]);
    isa_restore();
    free(x), free(wf), free(want), free(got);
}

static void test_top_k(void)
{
    static const int64_t ns[] = {1, 5, 300, 49152, 131075};
    static const int32_t ks[] = {1, 7, 64, LLM_TOP_K_MAX};
    int checked = 0;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            const int64_t n = ns[a], rows = 12;
            const int32_t k = ks[b];
            float *x = malloc((size_t)(n * rows) * sizeof(float));
            for (int r = 0; r < rows; r++)
                topk_fill(x + r * n, n, r, &rng);
            float *vals = poisoned(rows * k);
            int32_t *ids = malloc((size_t)(rows * k) * sizeof(int32_t));
            for (int64_t i = 0; i < rows * k; i++)
                ids[i] = -7;
            ops->top_k(be, ids, vals, x, rows, n, k);
            CHECK_EQ_INT(ops->synchronize(be), LLM_OK);
            checked += topk_check_rows(x, n, (int)rows, k, ids, vals);
            free(x), free(vals), free(ids);
        }
    }
    printf("     %d rows equal to the sorted reference\n", checked);
    int32_t id;
    float v, x = 1.0f;
    ops->top_k(be, &id, &v, &x, 1, 1, 0);
    CHECK_EQ_INT(ops->synchronize(be), LLM_ERR_INVALID_ARG);
    ops->top_k(be, &id, &v, &x, 1, 1, LLM_TOP_K_MAX + 1);
    CHECK_EQ_INT(ops->synchronize(be), LLM_ERR_INVALID_ARG);
}

static void test_threads(void)
{
    CHECK_EQ_INT(ops->set_threads(be, 0), LLM_ERR_INVALID_ARG);
    CHECK_EQ_INT(ops->set_threads(be, 3), LLM_OK);
    test_matmul();
    test_matmul_repacked();
    test_attention();
    test_attention_blocks_f16();
    CHECK_EQ_INT(ops->set_threads(be, 1), LLM_OK);
    test_matmul();
    test_matmul_repacked();
    CHECK_EQ_INT(ops->set_threads(be, 2), LLM_OK);
}

int main(void)
{
    ops = llm__backend_find("cpu");
    llm_backend_config cfg = {.n_threads = 2};
    if (!ops || ops->create(&cfg, &be) != LLM_OK) {
        printf("cannot create the cpu backend\n");
        return 1;
    }
    TEST_RUN(test_rms_norm);
    TEST_RUN(test_rope);
    TEST_RUN(test_glu_add_scale);
    TEST_RUN(test_top_k);
    const char *prev = NULL;
    for (size_t l = 0; isa_next(&l, &prev); l++) {
        TEST_RUN(test_matmul);
        TEST_RUN(test_matmul_repacked);
        TEST_RUN(test_matmul_onednn);
        TEST_RUN(test_attention);
        TEST_RUN(test_attention_blocks_f16);
        TEST_RUN(test_attn_softmax_level);
        TEST_RUN(test_small_ops_split);
    }
    TEST_RUN(test_matmul_levels_agree);
    TEST_RUN(test_threads);
    ops->destroy(be);
    printf("instruction sets tested: %s\n", isa_tested[0] ? isa_tested : "scalar only");
    return test_summary();
}
