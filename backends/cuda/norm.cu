/* norm.cu - RMS normalization, alone or together with the residual add before it (cuda.cu
 * defers an add so that the norm of its output can take it in; see "deferred ops" there).
 *
 * One block per row; thread t holds elements t + i * blockDim.x (i < VPT) in registers,
 * row and weight loaded before the reduction so that their latencies overlap. The sum of
 * squares is added in the same order whether or not the add is fused, so a row's bits
 * never depend on it. */
#include <type_traits>

#include "common.cuh"

/* Sum over the block (blockDim.x a multiple of the warp width, at most 1024). */
static __device__ float block_sum(float v)
{
    __shared__ float part[1024 / LLM_WARP_SIZE];
    for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
        v += LLM_SHFL_XOR(v, o);
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x / LLM_WARP_SIZE;
    v = lane < n_warps ? part[lane] : 0.0f;
    for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
        v += LLM_SHFL_XOR(v, o);
    __syncthreads(); /* part may be reused by the caller's next call */
    return v;
}

/* Rows longer than 16 * 512: the plain two-pass form, never fused. */
static __global__ void k_rms_norm(float *y, const float *x, const float *w, int64_t dim,
                                  float eps)
{
    const float *xr = x + blockIdx.x * dim;
    float *yr = y + blockIdx.x * dim;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        s += xr[i] * xr[i];
    s = block_sum(s);
    const float scale = 1.0f / sqrtf(s / (float)dim + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = w ? (xr[i] * scale) * w[i] : xr[i] * scale;
}

/* Row blockIdx.x of y = x / rms(x) * w, where with ADD x is first
 * computed as a + b and written. Leaves thread t's normalized elements t + i * blockDim.x
 * (i < VPT; 0 past dim) in v. x and y are not restrict: y may be b and x may be a (every
 * element is read and written by one thread, reads first). */
template <int VPT, bool ADD>
static __device__ __forceinline__ void norm_row(float *y, float *x, const float *a,
                                                const float *b, const float *__restrict__ w,
                                                int64_t dim, float eps, float (&v)[VPT])
{
    const int64_t r = blockIdx.x;
    x += r * dim, y += r * dim;
    if (ADD)
        a += r * dim, b += r * dim;
    float wv[VPT];
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        const int64_t j = threadIdx.x + (int64_t)i * blockDim.x;
        v[i] = j < dim ? (ADD ? a[j] + b[j] : x[j]) : 0.0f;
        wv[i] = w && j < dim ? w[j] : 1.0f;
    }
    if (ADD)
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            const int64_t j = threadIdx.x + (int64_t)i * blockDim.x;
            if (j < dim)
                x[j] = v[i];
        }
    float sq = 0.0f;
#pragma unroll
    for (int i = 0; i < VPT; i++)
        sq += v[i] * v[i];
    sq = block_sum(sq);
    const float scale = 1.0f / sqrtf(sq / (float)dim + eps);
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        const int64_t j = threadIdx.x + (int64_t)i * blockDim.x;
        v[i] = w ? (v[i] * scale) * wv[i] : v[i] * scale;
        if (j < dim)
            y[j] = v[i];
    }
}

/* H: also y rounded to __half or __nv_bfloat16 in h16 (float: not). */
template <int VPT, bool ADD, typename H>
static __global__ void k_norm(float *y, float *x, const float *a, const float *b,
                              const float *__restrict__ w, int64_t dim, float eps,
                              H *__restrict__ h16)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    float v[VPT];
    norm_row<VPT, ADD>(y, x, a, b, w, dim, eps, v);
    if constexpr (!std::is_same_v<H, float>) {
        const int64_t r = blockIdx.x;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            const int64_t j = threadIdx.x + (int64_t)i * blockDim.x;
            if (j < dim) {
                if constexpr (std::is_same_v<H, __half>)
                    h16[r * dim + j] = __float2half_rn(v[i]);
                else
                    h16[r * dim + j] = __float2bfloat16_rn(v[i]);
            }
        }
    }
}

/* The norm, then its output quantized as k_act_q8 (mmvq.cu) quantizes it, from the
 * registers: element t + i * blockDim.x of thread t, so at each i a group of 32 threads
 * holds one 32-block (Q8_0) and eight groups one 256-block (Q8_K; blockDim.x is 256 or
 * 512 then, dim a multiple of 256). A Q8_K block's maximum is the first element of the largest
 * magnitude, found as q8k_block_max_reg finds it. Each block's scale and its inverse are
 * computed once (by one lane, or one thread of the block) and shared: the divisions are
 * most of the work when a thread holds several elements. */
template <int VPT, bool ADD>
static __global__ void k_norm_q8(float *y, float *x, const float *a, const float *b,
                                 const float *__restrict__ w, int64_t dim, float eps, int mode,
                                 int8_t *__restrict__ q, float *__restrict__ d,
                                 int *__restrict__ s)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    float v[VPT];
    norm_row<VPT, ADD>(y, x, a, b, w, dim, eps, v);
    const int64_t r = blockIdx.x, nb = dim / 32;
    /* 32-element groups, whatever the warp width (g32_* work on 32 lanes) */
    const int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    float dv[VPT];
    int qi[VPT];
    if (mode == ACT_Q8_0) {
        float am[VPT];
#pragma unroll
        for (int i = 0; i < VPT; i++)
            am[i] = g32_max(fabsf(v[i]));
        /* lane i < VPT: the factors of the group's block i */
        float mine = am[0];
#pragma unroll
        for (int i = 1; i < VPT; i++)
            mine = lane == i ? am[i] : mine;
        const float dd = mine / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        const float dh = __half2float(__float2half_rn(dd));
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            qi[i] = (int)roundf(v[i] * LLM_SHFL(id, i, 32));
            dv[i] = LLM_SHFL(dh, i, 32);
        }
    } else {
        __shared__ float s_abs[16][16], s_val[16][16]; /* [i][32-group] */
        __shared__ float s_is[16][2], s_dv[16][2];     /* [i][256-block of the i-th part] */
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            const int64_t j = threadIdx.x + (int64_t)i * blockDim.x;
            const bool in = j < dim;
            const float f = in ? fabsf(v[i]) : 0.0f;
            const float am = g32_max(f);
            const int first = g32_first(f == am);
            const float val = LLM_SHFL(in ? v[i] : 0.0f, first < 0 ? 0 : first, 32);
            if (lane == 0)
                s_abs[i][grp] = am, s_val[i][grp] = val;
        }
        __syncthreads();
        const int ng = (int)blockDim.x / 256; /* 256-blocks per i: 1 or 2 */
        if ((int)threadIdx.x < VPT * ng) {
            const int i = (int)threadIdx.x / ng, g = (int)threadIdx.x % ng, g0 = 8 * g;
            float ba = s_abs[i][g0], mx = s_val[i][g0];
            for (int e = 1; e < 8; e++)
                if (s_abs[i][g0 + e] > ba)
                    ba = s_abs[i][g0 + e], mx = s_val[i][g0 + e];
            mx = ba > 0.0f ? mx : 0.0f;
            const float iscale = mx != 0.0f ? -127.0f / mx : 0.0f;
            s_is[i][g] = iscale;
            s_dv[i][g] = mx != 0.0f ? 1.0f / iscale : 0.0f;
        }
        __syncthreads();
        const int g = grp / 8;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            const float iscale = s_is[i][g];
            /* a block of zeros has iscale 0 and gives 0 as k_act_q8 does */
            qi[i] = (int)fminf(rintf(iscale * v[i]), 127.0f);
            dv[i] = s_dv[i][g];
        }
    }
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        const int64_t j = threadIdx.x + (int64_t)i * blockDim.x;
        const int sum = g32_sum(qi[i]);
        if (j < dim) {
            q[r * dim + j] = (int8_t)qi[i];
            if (lane == 0) {
                d[r * nb + j / 32] = dv[i];
                s[r * nb + j / 32] = sum;
            }
        }
    }
}

static int norm_threads(int64_t dim) { return dim >= 1024 ? 512 : dim >= 256 ? 256 : 64; }

int cu_norm_fusable(int64_t dim) { return dim > 0 && dim <= 16 * (int64_t)norm_threads(dim); }

template <int VPT, typename H>
static void launch_norm_h(llm_backend *be, float *y, float *x, const float *a, const float *b,
                          const float *w, int64_t rows, int64_t dim, float eps, void *h16)
{
    const unsigned g = (unsigned)rows;
    const int th = norm_threads(dim);
    if (a)
        cu_launch(be, k_norm<VPT, true, H>, g, th, 0, y, x, a, b, w, dim, eps, (H *)h16);
    else
        cu_launch(be, k_norm<VPT, false, H>, g, th, 0, y, x, a, b, w, dim, eps, (H *)h16);
}

template <int VPT>
static void launch_norm(llm_backend *be, float *y, float *x, const float *a, const float *b,
                        const float *w, int64_t rows, int64_t dim, float eps, uint32_t t16,
                        void *h16)
{
    if (!h16)
        launch_norm_h<VPT, float>(be, y, x, a, b, w, rows, dim, eps, NULL);
    else if (t16 == LLM_DT_BF16)
        launch_norm_h<VPT, __nv_bfloat16>(be, y, x, a, b, w, rows, dim, eps, h16);
    else
        launch_norm_h<VPT, __half>(be, y, x, a, b, w, rows, dim, eps, h16);
}

void cu_norm(llm_backend *be, float *y, float *x, const float *a, const float *b,
             const float *w, int64_t rows, int64_t dim, float eps)
{
    cu_norm16(be, y, x, a, b, w, rows, dim, eps, 0, NULL);
}

void cu_norm16(llm_backend *be, float *y, float *x, const float *a, const float *b,
               const float *w, int64_t rows, int64_t dim, float eps, uint32_t t16, void *h16)
{
    if (rows <= 0)
        return;
    if (rows > 0x7fffffff) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: rms_norm of %lld rows", (long long)rows);
        return;
    }
    const int th = norm_threads(dim);
    if (!cu_norm_fusable(dim)) {
        /* long rows: the plain kernel (callers fuse an add or a conversion only where
         * fusable) */
        if (a || h16)
            cu_record(be, LLM_ERR_INTERNAL, "cuda: fused add and norm of rows of %lld",
                      (long long)dim);
        else
            k_rms_norm<<<(unsigned)rows, th, 0, be->stream>>>(y, x, w, dim, eps);
    } else if (dim <= th) {
        launch_norm<1>(be, y, x, a, b, w, rows, dim, eps, t16, h16);
    } else if (dim <= 2 * th) {
        launch_norm<2>(be, y, x, a, b, w, rows, dim, eps, t16, h16);
    } else if (dim <= 4 * th) {
        launch_norm<4>(be, y, x, a, b, w, rows, dim, eps, t16, h16);
    } else if (dim <= 8 * th) {
        launch_norm<8>(be, y, x, a, b, w, rows, dim, eps, t16, h16);
    } else {
        launch_norm<16>(be, y, x, a, b, w, rows, dim, eps, t16, h16);
    }
    CU_LAUNCHED(be, "rms_norm");
}

template <int VPT>
static void launch_norm_q8(llm_backend *be, float *y, float *x, const float *a, const float *b,
                           const float *w, int64_t rows, int64_t dim, float eps, int mode,
                           int8_t *q, float *d, int *s)
{
    const unsigned g = (unsigned)rows;
    const int th = norm_threads(dim);
    if (a)
        cu_launch(be, k_norm_q8<VPT, true>, g, th, 0, y, x, a, b, w, dim, eps, mode, q, d, s);
    else
        cu_launch(be, k_norm_q8<VPT, false>, g, th, 0, y, x, a, b, w, dim, eps, mode, q, d, s);
}

void cu_norm_q8(llm_backend *be, float *y, float *x, const float *a, const float *b,
                const float *w, int64_t rows, int64_t dim, float eps, int mode, int8_t *q,
                float *d, int *s)
{
    const int th = norm_threads(dim);
    if (rows <= 0)
        return;
    if (!cu_norm_fusable(dim) || rows > 0x7fffffff || dim % 32 != 0 ||
        (mode == ACT_Q8_K && (dim % 256 != 0 || th < 256))) {
        cu_record(be, LLM_ERR_INTERNAL, "cuda: norm and quantization of %lld rows of %lld",
                  (long long)rows, (long long)dim);
        return;
    }
    if (dim <= th)
        launch_norm_q8<1>(be, y, x, a, b, w, rows, dim, eps, mode, q, d, s);
    else if (dim <= 2 * th)
        launch_norm_q8<2>(be, y, x, a, b, w, rows, dim, eps, mode, q, d, s);
    else if (dim <= 4 * th)
        launch_norm_q8<4>(be, y, x, a, b, w, rows, dim, eps, mode, q, d, s);
    else if (dim <= 8 * th)
        launch_norm_q8<8>(be, y, x, a, b, w, rows, dim, eps, mode, q, d, s);
    else
        launch_norm_q8<16>(be, y, x, a, b, w, rows, dim, eps, mode, q, d, s);
    CU_LAUNCHED(be, "rms_norm");
}
