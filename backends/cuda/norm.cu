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

/* x and y are not restrict: y may be b and x may be a (every element is read and written
 * by one thread, reads first). H: also y rounded to __half or __nv_bfloat16 in h16 (float:
 * not). */
template <int VPT, bool ADD, typename H>
static __global__ void k_norm(float *y, float *x, const float *a, const float *b,
                              const float *__restrict__ w, int64_t dim, float eps,
                              H *__restrict__ h16)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    const int64_t r = blockIdx.x;
    x += r * dim, y += r * dim;
    if (ADD)
        a += r * dim, b += r * dim;
    float v[VPT], wv[VPT];
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
        if (j < dim) {
            y[j] = v[i];
            if constexpr (std::is_same_v<H, __half>)
                h16[r * dim + j] = __float2half_rn(v[i]);
            else if constexpr (std::is_same_v<H, __nv_bfloat16>)
                h16[r * dim + j] = __float2bfloat16_rn(v[i]);
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
