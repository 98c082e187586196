/* flash.cu - attention of prompts on tensor cores, in the manner of flash attention.
 *
 * A block of 4 warps takes 16 * QT consecutive queries of the batch and GH query heads of
 * one KV head (QT * GH = 4: each warp one head and 16 queries), so that the key and value
 * tiles it loads serve every warp. It walks the keys in tiles of BN rows found through the
 * sequence's block table, copied to shared memory in 16-bit form (f16; bf16 for a bf16
 * cache; a q8_0 cache is expanded to f16). Per tile each warp computes its 16 x BN scores
 * with WMMA (f32 accumulation), applies soft-capping and the causal / sliding-window mask,
 * updates a running maximum and sum per query in f32, rounds the probabilities to 16 bits
 * and adds probabilities x values to an f32 accumulator: WMMA fragments in registers up to
 * head_dim 128 (a rescaling finds each element's row through a fragment loaded from a
 * matrix of row numbers), shared memory at 256.
 *
 * The queries of a block normally belong to one sequence; where a block straddles several
 * (the end of one prompt and the start of the next) it takes them one after the other,
 * each pass with the rows of the others masked out, so any order of tokens is correct. The
 * caller only picks this kernel when runs of one sequence are long on average
 * (llm_attention_args.n_runs): a batch of one-token decodes would make one pass per row.
 *
 * Q and P are rounded to 16 bits (Q after the softmax scale), so the result differs from
 * attention.cu's f32 kernel by about the rounding of those: relative errors against the
 * CPU's f32 attention up to 2.5e-4 with an f16 or q8_0 cache, 1.3e-3 with bf16
 * (tests/unit/test_cuda_ops.c, test_flash_attention). Not used in batch-invariant mode.
 * A second kernel below (off by default) takes decode batches. */
#include <limits.h>
#include <math.h>

#include "common.cuh"

#if !defined(LLM_HIP)
#include <mma.h>
#define FLASH_WMMA 1
#else
#define FLASH_WMMA 0 /* rocWMMA would take the same shape; not written yet */
#endif

#if FLASH_WMMA
using namespace nvcuda;

#define FLASH_WARPS 4

template <int KT> struct flash_type {
    typedef __half T;
    static __device__ __forceinline__ __half of(float x) { return __float2half_rn(x); }
    static __device__ __forceinline__ float to(__half x) { return __half2float(x); }
};
template <> struct flash_type<LLM_DT_BF16> {
    typedef __nv_bfloat16 T;
    static __device__ __forceinline__ __nv_bfloat16 of(float x) { return __float2bfloat16_rn(x); }
    static __device__ __forceinline__ float to(__nv_bfloat16 x) { return __bfloat162float(x); }
};

/* The shared memory layout of one block: strides padded by 16 bytes against bank
 * conflicts; every WMMA tile starts 32-byte aligned. */
template <int D> struct flash_shape {
    static constexpr int BN = D >= 256 ? 32 : 64; /* keys per tile */
    static constexpr int LDQ = D + 8;             /* Q, K, V rows (16-bit elements) */
    static constexpr int LDS = BN + 4;            /* scores (f32) */
    static constexpr int LDP = BN + 8;            /* probabilities (16-bit) */
    static constexpr int LDO = D + 4;             /* output accumulator (f32) */
    /* the accumulator stays in registers (WMMA fragments) up to D = 128; at 256 it would
     * take 128 registers a thread, so it lives in shared memory */
    static constexpr bool RACC = D <= 128;
    static constexpr size_t Q = (size_t)FLASH_WARPS * 16 * LDQ * 2;
    static constexpr size_t KV = (size_t)BN * LDQ * 2;
    static constexpr size_t S = (size_t)FLASH_WARPS * 16 * LDS * 4;
    static constexpr size_t P = (size_t)FLASH_WARPS * 16 * LDP * 2;
    static constexpr size_t O = RACC ? 0 : (size_t)FLASH_WARPS * 16 * LDO * 4;
    static constexpr size_t bytes = Q + 2 * KV + S + P + O;
};

/* Copies key rows [k0, k0 + BN) of one KV head (rows past kmax repeat row kmax: they are
 * masked) into dst in 16-bit form. */
template <int KT, int D>
static __device__ __forceinline__ void flash_tile(typename flash_type<KT>::T *dst,
                                                  const char *pool, const att_params &a,
                                                  const int32_t *bt, int kh, int k0, int kmax)
{
    typedef flash_shape<D> S;
    if constexpr (KT == LLM_DT_Q8_0) {
        constexpr int NB = D / 32;
        for (int i = threadIdx.x; i < S::BN * NB; i += FLASH_WARPS * LLM_WARP_SIZE) {
            const int r = i / NB, b = i % NB, kp = k0 + r <= kmax ? k0 + r : kmax;
            const int64_t slot = (int64_t)bt[kp / a.block_size] * a.block_size + kp % a.block_size;
            const char *src = pool + slot * a.row_bytes + kh * a.head_bytes + b * 34;
            const float d = __half2float(*(const __half *)src);
            __half *o = dst + r * S::LDQ + b * 32;
#pragma unroll 8
            for (int j = 0; j < 32; j++)
                o[j] = __float2half_rn(d * (float)((const int8_t *)src)[2 + j]);
        }
    } else {
        constexpr int CPR = D / 8; /* 16-byte pieces per row */
        for (int i = threadIdx.x; i < S::BN * CPR; i += FLASH_WARPS * LLM_WARP_SIZE) {
            const int r = i / CPR, c = i % CPR, kp = k0 + r <= kmax ? k0 + r : kmax;
            const int64_t slot = (int64_t)bt[kp / a.block_size] * a.block_size + kp % a.block_size;
            const uint4 *src = (const uint4 *)(pool + slot * a.row_bytes + kh * a.head_bytes);
            ((uint4 *)(dst + r * S::LDQ))[c] = src[c];
        }
    }
}

/* Multiplies row r of a warp's register accumulators fo by f, which lanes 2r and 2r + 1 both
 * hold (`writer` for one of them): through rowf, the warp's 16 row factors in shared
 * memory, and frow, the row of each fragment element (loaded from a matrix of row
 * numbers). */
template <int N>
static __device__ __forceinline__ void flash_scale_rows(
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&fo)[N],
    const wmma::fragment<wmma::accumulator, 16, 16, 16, float> &frow, float *rowf, int r,
    bool writer, float f)
{
    if (writer)
        rowf[r] = f;
    __syncwarp();
#pragma unroll
    for (int e = 0; e < frow.num_elements; e++) {
        const float c = rowf[(int)frow.x[e]];
#pragma unroll
        for (int j = 0; j < N; j++)
            fo[j].x[e] *= c;
    }
}

template <int KT, int D, int GH>
static __global__ void __launch_bounds__(FLASH_WARPS *LLM_WARP_SIZE)
    k_flash(att_params a, int64_t n_tokens)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
#if __CUDA_ARCH__ >= 800
    typedef flash_type<KT> F;
    typedef typename F::T T;
    typedef flash_shape<D> S;
    constexpr int BN = S::BN, QT = FLASH_WARPS / GH, R = 16 * QT;
    constexpr int LDQ = S::LDQ, LDS = S::LDS, LDP = S::LDP, LDO = S::LDO;
    extern __shared__ __align__(128) char smem[];
    T *sq = (T *)smem, *sk = (T *)(smem + S::Q), *sv = (T *)(smem + S::Q + S::KV);
    float *ss = (float *)(smem + S::Q + 2 * S::KV);
    T *sp = (T *)(smem + S::Q + 2 * S::KV + S::S);
    float *so = (float *)(smem + S::Q + 2 * S::KV + S::S + S::P);
    __shared__ int s_seq[R], s_pos[R], s_p0[R];
    __shared__ int s_cur, s_kmin, s_kmax;
    __shared__ unsigned long long s_left;

    const int tid = threadIdx.x, lane = tid % LLM_WARP_SIZE, warp = tid / LLM_WARP_SIZE;
    const int qt = warp / GH, heads = a.group / GH;
    const int kh = blockIdx.y / heads, h = kh * a.group + (blockIdx.y % heads) * GH + warp % GH;
    const int64_t t0 = (int64_t)blockIdx.x * R;
    if (tid < R) {
        const int64_t t = t0 + tid;
        int seq = -1, p = 0;
        if (t < n_tokens)
            seq = a.q_seq[t], p = a.q_pos[t];
        s_seq[tid] = seq;
        s_pos[tid] = p;
        s_p0[tid] = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    }
    /* this warp's 16 queries of head h, scaled, and its accumulator cleared */
    T *qw = sq + warp * 16 * LDQ;
    float *ow = so + warp * 16 * LDO;
    T *pw = sp + warp * 16 * LDP;
    float *sw = ss + warp * 16 * LDS;
    for (int i = lane; i < 16 * D; i += LLM_WARP_SIZE) {
        const int r = i / D, d = i % D;
        const int64_t t = t0 + qt * 16 + r;
        qw[r * LDQ + d] = F::of(t < n_tokens ? a.q[(t * a.n_head + h) * D + d] * a.scale : 0.0f);
    }
    constexpr bool RACC = S::RACC;
    constexpr int NO = RACC ? D / 16 : 1;
    /* the register accumulator, and which row of the 16 each of a fragment's elements is
     * (loaded from a matrix of row numbers: the layout is the implementation's) */
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fo[NO], frow;
    __shared__ float s_rowf[FLASH_WARPS][16]; /* a factor per row: rescaling, then 1 / sum */
    if constexpr (RACC) {
        for (int i = lane; i < 16 * 16; i += LLM_WARP_SIZE)
            sw[(i / 16) * LDS + i % 16] = (float)(i / 16);
        __syncwarp();
        wmma::load_matrix_sync(frow, sw, LDS, wmma::mem_row_major);
#pragma unroll
        for (int jd = 0; jd < NO; jd++)
            wmma::fill_fragment(fo[jd], 0.0f);
    } else {
        for (int i = lane; i < 16 * LDO; i += LLM_WARP_SIZE)
            ow[i] = 0.0f;
    }
    __syncthreads();
    if (tid == 0) {
        unsigned long long left = 0;
        for (int i = 0; i < R; i++)
            left |= (unsigned long long)(s_seq[i] >= 0) << i;
        s_left = left;
    }

    /* lanes 2r and 2r + 1 hold query r's running maximum and sum and split its columns */
    const int r = lane / 2, half = lane % 2, br = qt * 16 + r;
    float m = -INFINITY, l = 0.0f;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa, fp[BN / 16];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fk;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fv;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    for (;;) {
        /* the next sequence among the block's queries, and the keys its queries see */
        __syncthreads();
        if (tid == 0) {
            unsigned long long left = s_left;
            int cur = -1, kmin = INT_MAX, kmax = -1;
            if (left) {
                cur = s_seq[__ffsll((long long)left) - 1];
                for (int i = 0; i < R; i++)
                    if (((left >> i) & 1) && s_seq[i] == cur) {
                        kmin = min(kmin, s_p0[i]);
                        kmax = max(kmax, s_pos[i]);
                        left &= ~(1ull << i);
                    }
            }
            s_left = left, s_cur = cur, s_kmin = kmin, s_kmax = kmax;
        }
        __syncthreads();
        const int cur = s_cur, kmin = s_kmin, kmax = s_kmax;
        if (cur < 0)
            break;
        const bool act = s_seq[br] == cur;
        const int rp = act ? s_pos[br] : -1, rp0 = act ? s_p0[br] : INT_MAX;
        int wmax = rp, wmin = rp0; /* the keys any of this warp's queries sees */
#pragma unroll
        for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1) {
            wmax = max(wmax, LLM_SHFL_XOR(wmax, o));
            wmin = min(wmin, LLM_SHFL_XOR(wmin, o));
        }
        const int32_t *bt = a.block_tables + (int64_t)cur * a.max_blocks;
        for (int k0 = kmin; k0 <= kmax; k0 += BN) {
            __syncthreads(); /* every warp is done with the last tile */
            flash_tile<KT, D>(sk, a.k, a, bt, kh, k0, kmax);
            flash_tile<KT, D>(sv, a.v, a, bt, kh, k0, kmax);
            __syncthreads();
            if (k0 > wmax || k0 + BN - 1 < wmin)
                continue;
            /* scores: Q (16 x D) x K^T (D x BN) */
#pragma unroll
            for (int j = 0; j < BN / 16; j++) {
                wmma::fill_fragment(fc, 0.0f);
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    wmma::load_matrix_sync(fa, qw + kk * 16, LDQ);
                    wmma::load_matrix_sync(fk, sk + j * 16 * LDQ + kk * 16, LDQ);
                    wmma::mma_sync(fc, fa, fk, fc);
                }
                wmma::store_matrix_sync(sw + j * 16, fc, LDS, wmma::mem_row_major);
            }
            __syncwarp();
            /* online softmax of query r over its half of the columns */
            constexpr int HC = BN / 2;
            float s[HC], mx = -INFINITY;
#pragma unroll
            for (int c = 0; c < HC; c++) {
                const int col = half * HC + c, kp = k0 + col;
                float x = sw[r * LDS + col];
                if (a.softcap > 0.0f)
                    x = a.softcap * tanhf(x / a.softcap);
                s[c] = kp < rp0 || kp > rp ? -INFINITY : x;
                mx = fmaxf(mx, s[c]);
            }
            mx = fmaxf(mx, LLM_SHFL_XOR(mx, 1));
            const float mn = fmaxf(m, mx);
            const float corr = mn == -INFINITY ? 1.0f : expf(m - mn);
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < HC; c++) {
                const T e = F::of(s[c] == -INFINITY ? 0.0f : expf(s[c] - mn));
                pw[r * LDP + half * HC + c] = e;
                sum += F::to(e); /* the sum of what the product below adds up */
            }
            sum += LLM_SHFL_XOR(sum, 1);
            l = l * corr + sum;
            m = mn;
            if constexpr (RACC) {
                flash_scale_rows(fo, frow, s_rowf[warp], r, half == 0, corr);
            } else if (corr != 1.0f) {
                for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++)
                    ow[r * LDO + d] *= corr;
            }
            __syncwarp();
            /* accumulator += P (16 x BN) x V (BN x D) */
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++)
                wmma::load_matrix_sync(fp[kk], pw + kk * 16, LDP);
            if constexpr (RACC) {
#pragma unroll
                for (int jd = 0; jd < NO; jd++)
#pragma unroll
                    for (int kk = 0; kk < BN / 16; kk++) {
                        wmma::load_matrix_sync(fv, sv + kk * 16 * LDQ + jd * 16, LDQ);
                        wmma::mma_sync(fo[jd], fp[kk], fv, fo[jd]);
                    }
            } else {
#pragma unroll 4
                for (int jd = 0; jd < D / 16; jd++) {
                    wmma::load_matrix_sync(fc, ow + jd * 16, LDO, wmma::mem_row_major);
#pragma unroll
                    for (int kk = 0; kk < BN / 16; kk++) {
                        wmma::load_matrix_sync(fv, sv + kk * 16 * LDQ + jd * 16, LDQ);
                        wmma::mma_sync(fc, fp[kk], fv, fc);
                    }
                    wmma::store_matrix_sync(ow + jd * 16, fc, LDO, wmma::mem_row_major);
                }
                __syncwarp();
            }
        }
    }
    /* out = accumulator / sum, a row at a time across the warp */
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    if constexpr (RACC) {
        flash_scale_rows(fo, frow, s_rowf[warp], r, half == 0, inv);
        /* through the scores' tile, 16 columns at a time */
#pragma unroll
        for (int jd = 0; jd < NO; jd++) {
            wmma::store_matrix_sync(sw, fo[jd], LDS, wmma::mem_row_major);
            __syncwarp();
            for (int i = lane; i < 16 * 16; i += LLM_WARP_SIZE) {
                const int64_t t = t0 + qt * 16 + i / 16;
                if (t < n_tokens)
                    a.out[(t * a.n_head + h) * D + jd * 16 + i % 16] = sw[(i / 16) * LDS + i % 16];
            }
            __syncwarp();
        }
    } else {
        for (int rr = 0; rr < 16; rr++) {
            const float iv = LLM_SHFL(inv, 2 * rr, LLM_WARP_SIZE);
            const int64_t t = t0 + qt * 16 + rr;
            if (t >= n_tokens)
                break;
            float *o = a.out + (t * a.n_head + h) * D;
            for (int d = lane; d < D; d += LLM_WARP_SIZE)
                o[d] = ow[rr * LDO + d] * iv;
        }
    }
#endif
}

template <int KT, int D, int GH>
static void flash_launch(llm_backend *be, const att_params &p, int64_t n_tokens)
{
    constexpr size_t smem = flash_shape<D>::bytes;
    /* the opt-in to more than 48 KiB of shared memory, once per device */
    static bool sized[64];
    if (be->device >= 64 || !sized[be->device]) {
        cu_check(be, cudaFuncSetAttribute(k_flash<KT, D, GH>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)smem), "flash attention shared memory");
        if (be->device < 64)
            sized[be->device] = true;
    }
    constexpr int R = 16 * (FLASH_WARPS / GH);
    const dim3 grid((unsigned)((n_tokens + R - 1) / R),
                    (unsigned)(p.n_head / p.group * (p.group / GH)));
    cu_launch(be, k_flash<KT, D, GH>, grid, FLASH_WARPS * LLM_WARP_SIZE, smem, p, n_tokens);
}

template <int KT, int D>
static void flash_heads(llm_backend *be, const att_params &p, int64_t n_tokens)
{
    if (p.group % 4 == 0)
        flash_launch<KT, D, 4>(be, p, n_tokens);
    else if (p.group % 2 == 0)
        flash_launch<KT, D, 2>(be, p, n_tokens);
    else
        flash_launch<KT, D, 1>(be, p, n_tokens);
}

template <int KT>
static void flash_dims(llm_backend *be, const att_params &p, int64_t n_tokens)
{
    if (p.head_dim == 64)
        flash_heads<KT, 64>(be, p, n_tokens);
    else if (p.head_dim == 128)
        flash_heads<KT, 128>(be, p, n_tokens);
    else
        flash_heads<KT, 256>(be, p, n_tokens);
}

/* ---- decode batches -------------------------------------------------------------------
 * One warp per (query token, KV head): the group's query heads are the rows of a 16-row
 * tile (rows past the group are zero), so a key tile serves them all in one product. Key
 * tiles of 16 rows start at multiples of 16, so each lies in one cache block (block_size
 * is a multiple of 16) and is read by WMMA straight from the cache with the row stride as
 * leading dimension; the tile that holds the query's own position is copied to shared
 * memory with the rows after it zeroed (slots not yet written may hold anything, and a
 * zero probability times a NaN is NaN). The accumulator stays in registers: each row's
 * rescaling finds the rows of a fragment's elements through a fragment loaded from a
 * matrix of row numbers. */
#define FD_WARPS 4

template <int D> struct fd_shape {
    static constexpr int LDQ = D + 8, LDS = 16 + 4, LDP = 16 + 8, LDO = D + 4;
    /* per warp: Q and the staged value tile side by side (the output staging reuses them),
     * scores, probabilities, row factors */
    static constexpr size_t QV = (size_t)2 * 16 * LDQ * 2;
    static constexpr size_t bytes = QV + 16 * LDS * 4 + 16 * LDP * 2 + 16 * 4;
    static_assert(16 * LDO * 4 <= QV, "output staging fits");
};

template <int KT, int D>
static __global__ void __launch_bounds__(FD_WARPS *LLM_WARP_SIZE)
    k_flash_decode(att_params a, int64_t n_tokens)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
#if __CUDA_ARCH__ >= 800
    typedef flash_type<KT> F;
    typedef typename F::T T;
    typedef fd_shape<D> S;
    constexpr int LDQ = S::LDQ, LDS = S::LDS, LDP = S::LDP, LDO = S::LDO;
    __shared__ __align__(128) char smem[FD_WARPS * S::bytes];
    __shared__ __align__(32) float s_rows[16 * 16];
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        s_rows[i] = (float)(i / 16);
    char *ws = smem + warp * S::bytes;
    T *qw = (T *)ws, *vw = qw + 16 * LDQ;
    float *sw = (float *)(ws + S::QV);
    T *pw = (T *)(sw + 16 * LDS);
    float *cw = (float *)(pw + 16 * LDP);
    __syncthreads();
    const int64_t item = (int64_t)blockIdx.x * FD_WARPS + warp;
    const int n_kv = a.n_head / a.group;
    if (item >= n_tokens * n_kv)
        return; /* the whole warp; no block-wide barrier follows */
    const int64_t t = item / n_kv;
    const int kh = (int)(item % n_kv), g = a.group;
    const int p = a.q_pos[t];
    const int p0 = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    const int32_t *bt = a.block_tables + (int64_t)a.q_seq[t] * a.max_blocks;
    const int ld = (int)(a.row_bytes / 2); /* elements between cache rows */
    for (int i = lane; i < 16 * D; i += LLM_WARP_SIZE) {
        const int r = i / D, d = i % D;
        qw[r * LDQ + d] =
            F::of(r < g ? a.q[(t * a.n_head + kh * g + r) * D + d] * a.scale : 0.0f);
    }
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fo[D / 16], fs, frow;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fk;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fv;
    wmma::load_matrix_sync(frow, s_rows, 16, wmma::mem_row_major);
#pragma unroll
    for (int j = 0; j < D / 16; j++)
        wmma::fill_fragment(fo[j], 0.0f);
    __syncwarp();
    const int r = lane / 2, half = lane % 2;
    float m = -INFINITY, l = 0.0f;
    for (int k0 = p0 / 16 * 16; k0 <= p; k0 += 16) {
        const int64_t slot = (int64_t)bt[k0 / a.block_size] * a.block_size + k0 % a.block_size;
        const T *kt = (const T *)(a.k + slot * a.row_bytes + kh * a.head_bytes);
        const T *vt = (const T *)(a.v + slot * a.row_bytes + kh * a.head_bytes);
        const bool last = k0 + 15 > p;
        if (last) { /* rows up to p, then zeros */
            for (int i = lane; i < 16 * (D / 8); i += LLM_WARP_SIZE) {
                const int kr = i / (D / 8), c = i % (D / 8);
                uint4 u = make_uint4(0, 0, 0, 0);
                if (k0 + kr <= p)
                    u = ((const uint4 *)(vt + (int64_t)kr * ld))[c];
                ((uint4 *)(vw + kr * LDQ))[c] = u;
            }
        }
        wmma::fill_fragment(fs, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            wmma::load_matrix_sync(fa, qw + kk * 16, LDQ);
            wmma::load_matrix_sync(fk, kt + kk * 16, ld);
            wmma::mma_sync(fs, fa, fk, fs);
        }
        wmma::store_matrix_sync(sw, fs, LDS, wmma::mem_row_major);
        __syncwarp();
        float sv[8], mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            const int kp = k0 + half * 8 + c;
            float x = sw[r * LDS + half * 8 + c];
            if (a.softcap > 0.0f)
                x = a.softcap * tanhf(x / a.softcap);
            sv[c] = r >= g || kp < p0 || kp > p ? -INFINITY : x;
            mx = fmaxf(mx, sv[c]);
        }
        mx = fmaxf(mx, LLM_SHFL_XOR(mx, 1));
        const float mn = fmaxf(m, mx);
        const float corr = mn == -INFINITY ? 1.0f : expf(m - mn);
        float sum = 0.0f;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            const T e = F::of(sv[c] == -INFINITY ? 0.0f : expf(sv[c] - mn));
            pw[r * LDP + half * 8 + c] = e;
            sum += F::to(e);
        }
        sum += LLM_SHFL_XOR(sum, 1);
        l = l * corr + sum;
        m = mn;
        if (half == 0)
            cw[r] = corr;
        __syncwarp();
        float cr[frow.num_elements];
#pragma unroll
        for (int i = 0; i < frow.num_elements; i++)
            cr[i] = cw[(int)frow.x[i]];
        wmma::load_matrix_sync(fa, pw, LDP);
#pragma unroll
        for (int j = 0; j < D / 16; j++) {
#pragma unroll
            for (int i = 0; i < fo[j].num_elements; i++)
                fo[j].x[i] *= cr[i];
            if (last)
                wmma::load_matrix_sync(fv, vw + j * 16, LDQ);
            else
                wmma::load_matrix_sync(fv, vt + j * 16, ld);
            wmma::mma_sync(fo[j], fa, fv, fo[j]);
        }
        __syncwarp(); /* before the next tile overwrites the scores and probabilities */
    }
    /* out = accumulator / sum for the group's rows */
    if (half == 0)
        cw[r] = l > 0.0f ? 1.0f / l : 0.0f;
    __syncwarp();
    float *ow = (float *)ws; /* over Q and the value tile, no longer read */
#pragma unroll
    for (int j = 0; j < D / 16; j++) {
#pragma unroll
        for (int i = 0; i < fo[j].num_elements; i++)
            fo[j].x[i] *= cw[(int)frow.x[i]];
        wmma::store_matrix_sync(ow + j * 16, fo[j], LDO, wmma::mem_row_major);
    }
    __syncwarp();
    for (int rr = 0; rr < g; rr++) {
        float *o = a.out + (t * a.n_head + kh * g + rr) * D;
        for (int d = lane; d < D; d += LLM_WARP_SIZE)
            o[d] = ow[rr * LDO + d];
    }
#endif
}

template <int KT>
static void flash_decode_launch(llm_backend *be, const att_params &p, int64_t n_tokens)
{
    const int64_t items = n_tokens * (p.n_head / p.group);
    const unsigned grid = (unsigned)((items + FD_WARPS - 1) / FD_WARPS);
    if (p.head_dim == 64)
        cu_launch(be, k_flash_decode<KT, 64>, grid, FD_WARPS * LLM_WARP_SIZE, 0, p, n_tokens);
    else
        cu_launch(be, k_flash_decode<KT, 128>, grid, FD_WARPS * LLM_WARP_SIZE, 0, p, n_tokens);
}
#endif

/* Runs of at least this many queries of one sequence on average (prompts) go to the
 * tensor-core kernel; decode batches stay with attention.cu's. */
#define FLASH_MIN_RUN 16

int cu_flash_attention(llm_backend *be, const llm_attention_args *a, const att_params &p)
{
#if FLASH_WMMA
    if (be->batch_invariant || be->cc < 80)
        return 0;
    const int64_t n_kv = p.n_head / p.group;
    if ((be->flash & FLASH_DECODE) && a->kv->dtype != LLM_DT_Q8_0 &&
        (p.head_dim == 64 || p.head_dim == 128) && p.group <= 16 && p.block_size % 16 == 0 &&
        a->n_tokens * n_kv >= (int64_t)be->n_sm &&
        (a->n_runs <= 0 || a->n_tokens < (int64_t)FLASH_MIN_RUN * a->n_runs)) {
        if (a->kv->dtype == LLM_DT_F16)
            flash_decode_launch<LLM_DT_F16>(be, p, a->n_tokens);
        else
            flash_decode_launch<LLM_DT_BF16>(be, p, a->n_tokens);
        CU_LAUNCHED(be, "flash attention (decode)");
        return 1;
    }
    if (!(be->flash & FLASH_PROMPT) || a->n_runs <= 0 ||
        a->n_tokens < (int64_t)FLASH_MIN_RUN * a->n_runs ||
        (p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256))
        return 0;
    if (a->kv->dtype == LLM_DT_F16)
        flash_dims<LLM_DT_F16>(be, p, a->n_tokens);
    else if (a->kv->dtype == LLM_DT_BF16)
        flash_dims<LLM_DT_BF16>(be, p, a->n_tokens);
    else
        flash_dims<LLM_DT_Q8_0>(be, p, a->n_tokens);
    CU_LAUNCHED(be, "flash attention");
    return 1;
#else
    (void)be, (void)a, (void)p;
    return 0;
#endif
}
