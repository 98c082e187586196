/* matmul.cu - y = x·Wᵀ for every weight type the CPU backend reads, and get_rows.
 *
 * Few tokens (decode): for the quantized types the 8-bit kernel of mmvq.cu; for the float
 * types (and every type with LLM_CUDA_NO_MMVQ=1) a matrix-vector kernel that reads the
 * blocks directly, one warp per weight row, each lane dequantizing chunks of 8 consecutive
 * elements and dotting them with up to 8 activation rows in f32. The weights are read once per call,
 * which is what bounds decoding.
 * Many tokens (prompts): the weight is expanded to f16 in slices that fit the scratch,
 * the activations are rounded to f16 (bf16 for BF16 weights), and cuBLAS multiplies them
 * with f32 accumulation; F32 weights go through SGEMM unchanged.
 *
 * In batch-invariant mode (LLM_CUDA_BATCH_INVARIANT=1) every matmul takes the first path,
 * in tiles of 8 tokens: a token's result then never depends on how many tokens share its
 * batch (the CPU backend's guarantee, which the request engine's tests check), at the cost
 * of prompt speed. The matrix-vector kernel's sums for one token do not depend on the tile
 * size, so decode steps of 1 token and prompts of 512 give the same bits.
 *
 * Both paths first round the activations as the CPU backend (and llama.cpp) does before
 * its dot products: to the weight type's vec_dot_type, Q8_0/Q8_1 blocks of 32 or Q8_K
 * blocks of 256, with the same arithmetic, so the two backends differ only in how the
 * products are summed. Without this, greedy decoding on the two would part wherever the
 * two best logits lie within the ~0.2 that 8-bit activations move them. */
#include <pthread.h>

#include "common.cuh"

/* more tokens than this take the cuBLAS path */
#define MATVEC_MAX_TOKENS 8
/* weight rows expanded to f16 at a time on the cuBLAS path */
#define SLICE_BYTES ((size_t)64 << 20)

int cu_dtype_supported(uint32_t t)
{
    switch (t) {
    case LLM_DT_F32: case LLM_DT_F16: case LLM_DT_BF16:
    case LLM_DT_Q4_0: case LLM_DT_Q4_1: case LLM_DT_Q5_0: case LLM_DT_Q5_1: case LLM_DT_Q8_0:
    case LLM_DT_Q2_K: case LLM_DT_Q3_K: case LLM_DT_Q4_K: case LLM_DT_Q5_K: case LLM_DT_Q6_K:
    case LLM_DT_IQ4_NL: case LLM_DT_IQ4_XS:
        return 1;
    default:
        return 0;
    }
}

static bool is_float_type(uint32_t t)
{
    return t == LLM_DT_F32 || t == LLM_DT_F16 || t == LLM_DT_BF16;
}

/* ---- dequantization ------------------------------------------------------------------ *
 * deq8<T>(row, c, v): elements 8c .. 8c+7 of a row of type T. The block layouts are
 * GGUF's (see backends/cpu/quants.h); offsets are in bytes from the block start. All f16
 * fields sit at even offsets of blocks of even size, so 2-byte loads are aligned. */

static __device__ __forceinline__ float bf16_bits(uint16_t u)
{
    return __uint_as_float((uint32_t)u << 16);
}

/* the 16 non-linear levels of IQ4_NL and IQ4_XS */
static __constant__ int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};

/* 8 bytes from a 2-byte aligned address, in 4 loads instead of 8 */
static __device__ __forceinline__ uint2 ld8(const uint8_t *p)
{
    const uint16_t *q = (const uint16_t *)p;
    uint2 r;
    r.x = (uint32_t)q[0] | (uint32_t)q[1] << 16;
    r.y = (uint32_t)q[2] | (uint32_t)q[3] << 16;
    return r;
}

/* byte i (a compile-time constant after unrolling) of 8 loaded bytes */
static __device__ __forceinline__ int byte_at(uint2 v, int i)
{
    return (int)(((i < 4 ? v.x : v.y) >> (8 * (i & 3))) & 0xff);
}

/* Q4_K/Q5_K: the 6-bit scale and min of group g (0..7), packed in 12 bytes. */
static __device__ __forceinline__ void k4_scale_min(int g, const uint8_t *q, int &sc, int &m)
{
    if (g < 4) {
        sc = q[g] & 63;
        m = q[g + 4] & 63;
    } else {
        sc = (q[g + 4] & 0xf) | ((q[g - 4] >> 6) << 4);
        m = (q[g + 4] >> 4) | ((q[g] >> 6) << 4);
    }
}

template <int T>
static __device__ __forceinline__ void deq8(const uint8_t *row, int64_t c, float v[8])
{
    /* rows of the float types are 16-byte aligned when their length is a multiple of 8 */
    if (T == LLM_DT_F32) {
        const float4 a = ((const float4 *)row)[2 * c], b = ((const float4 *)row)[2 * c + 1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z;
        v[7] = b.w;
    } else if (T == LLM_DT_F16) {
        const uint4 u = ((const uint4 *)row)[c];
        const __half2 *h = (const __half2 *)&u;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __half22float2(h[i]);
            v[2 * i] = f.x, v[2 * i + 1] = f.y;
        }
    } else if (T == LLM_DT_BF16) {
        const uint4 u = ((const uint4 *)row)[c];
        const uint32_t w4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __uint_as_float(w4[i] << 16);
            v[2 * i + 1] = __uint_as_float(w4[i] & 0xffff0000u);
        }
    } else if (T == LLM_DT_Q4_0 || T == LLM_DT_Q4_1) {
        const int bsz = T == LLM_DT_Q4_0 ? 18 : 20;
        const uint8_t *b = row + (c >> 2) * bsz;
        const int s = (int)(c & 3), j0 = (s & 1) * 8, sh = (s >> 1) * 4;
        const float d = f16at(b);
        const uint2 qs = ld8(b + (T == LLM_DT_Q4_0 ? 2 : 4) + j0);
        const float m = T == LLM_DT_Q4_1 ? f16at(b + 2) : 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = (byte_at(qs, i) >> sh) & 0xf;
            v[i] = T == LLM_DT_Q4_0 ? (float)(q - 8) * d : (float)q * d + m;
        }
    } else if (T == LLM_DT_Q5_0 || T == LLM_DT_Q5_1) {
        const int bsz = T == LLM_DT_Q5_0 ? 22 : 24;
        const uint8_t *b = row + (c >> 2) * bsz;
        const int s = (int)(c & 3), j0 = (s & 1) * 8, sh = (s >> 1) * 4;
        const float d = f16at(b);
        const uint8_t *qh = b + (T == LLM_DT_Q5_0 ? 2 : 4);
        const uint2 qs = ld8(qh + 4 + j0);
        const float m = T == LLM_DT_Q5_1 ? f16at(b + 2) : 0.0f;
        const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                           (uint32_t)qh[3] << 24;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int e = s * 8 + i;
            const int q = ((byte_at(qs, i) >> sh) & 0xf) | (int)(((h >> e) & 1) << 4);
            v[i] = T == LLM_DT_Q5_0 ? (float)(q - 16) * d : (float)q * d + m;
        }
    } else if (T == LLM_DT_Q8_0) {
        const uint8_t *b = row + (c >> 2) * 34;
        const float d = f16at(b);
        const uint2 qs = ld8(b + 2 + (c & 3) * 8);
#pragma unroll
        for (int i = 0; i < 8; i++)
            v[i] = (float)(int8_t)byte_at(qs, i) * d;
    } else if (T == LLM_DT_Q2_K) {
        const uint8_t *b = row + (c >> 5) * 84;
        const int e0 = (int)(c & 31) * 8, h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32;
        const int sc = b[e0 / 16];
        const float dl = f16at(b + 80) * (float)(sc & 0xf);
        const float ml = f16at(b + 82) * (float)(sc >> 4);
        const uint2 qs = ld8(b + 16 + 32 * h + l0);
#pragma unroll
        for (int i = 0; i < 8; i++)
            v[i] = dl * (float)((byte_at(qs, i) >> (2 * s)) & 3) - ml;
    } else if (T == LLM_DT_Q3_K) {
        const uint8_t *b = row + (c >> 5) * 110;
        const int e0 = (int)(c & 31) * 8, h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32;
        const uint8_t *sb = b + 96;
        const int j = e0 / 16;
        const int lo = j < 8 ? (sb[j] & 0xf) : (sb[j - 8] >> 4);
        const int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
        const float dl = f16at(b + 108) * (float)((lo | (hi << 4)) - 32);
        const uint2 hm = ld8(b + l0), qs = ld8(b + 32 + 32 * h + l0);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = ((byte_at(qs, i) >> (2 * s)) & 3) -
                          (((byte_at(hm, i) >> (4 * h + s)) & 1) ? 0 : 4);
            v[i] = dl * (float)q;
        }
    } else if (T == LLM_DT_Q4_K || T == LLM_DT_Q5_K) {
        const int bsz = T == LLM_DT_Q4_K ? 144 : 176;
        const uint8_t *b = row + (c >> 5) * bsz;
        const int e0 = (int)(c & 31) * 8, g = e0 / 32, l0 = e0 % 32;
        int sc, m;
        k4_scale_min(g, b + 4, sc, m);
        const float d1 = f16at(b) * (float)sc, m1 = f16at(b + 2) * (float)m;
        /* 144- and 176-byte blocks: these 8 bytes are 8-byte aligned */
        const uint2 qs = *(const uint2 *)(b + (T == LLM_DT_Q4_K ? 16 : 48) + 32 * (g / 2) + l0);
        const uint2 qh = T == LLM_DT_Q5_K ? *(const uint2 *)(b + 16 + l0) : make_uint2(0, 0);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int q = (byte_at(qs, i) >> (4 * (g & 1))) & 0xf;
            if (T == LLM_DT_Q5_K)
                q |= ((byte_at(qh, i) >> g) & 1) << 4;
            v[i] = d1 * (float)q - m1;
        }
    } else if (T == LLM_DT_IQ4_NL) {
        const uint8_t *b = row + (c >> 2) * 18;
        const int s = (int)(c & 3), j0 = (s & 1) * 8, sh = (s >> 1) * 4;
        const float d = f16at(b);
        const uint2 qs = ld8(b + 2 + j0);
#pragma unroll
        for (int i = 0; i < 8; i++)
            v[i] = d * (float)iq4nl_values[(byte_at(qs, i) >> sh) & 0xf];
    } else if (T == LLM_DT_IQ4_XS) {
        /* d, scales_h (2 bits per group of 32), scales_l (4 bits per group), 128 bytes of
         * nibbles laid out per group as in IQ4_NL */
        const uint8_t *b = row + (c >> 5) * 136;
        const int e0 = (int)(c & 31) * 8, ib = e0 / 32, s = (e0 % 32) / 8;
        const int j0 = (s & 1) * 8, sh = (s >> 1) * 4;
        const int sc_h = *(const uint16_t *)(b + 2);
        const int ls = ((b[4 + ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sc_h >> 2 * ib) & 3) << 4);
        const float dl = f16at(b) * (float)(ls - 32);
        const uint2 qs = ld8(b + 8 + 16 * ib + j0);
#pragma unroll
        for (int i = 0; i < 8; i++)
            v[i] = dl * (float)iq4nl_values[(byte_at(qs, i) >> sh) & 0xf];
    } else if (T == LLM_DT_Q6_K) {
        const uint8_t *b = row + (c >> 5) * 210;
        const int e0 = (int)(c & 31) * 8, h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32;
        const float dl = f16at(b + 208) * (float)((const int8_t *)(b + 192))[e0 / 16];
        const uint2 ql = ld8(b + 64 * h + 32 * (s & 1) + l0), qh = ld8(b + 128 + 32 * h + l0);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int lo = (byte_at(ql, i) >> (4 * (s >> 1))) & 0xf;
            const int hi = (byte_at(qh, i) >> (2 * s)) & 3;
            v[i] = dl * (float)((lo | (hi << 4)) - 32);
        }
    }
}

/* One element of a float-typed row (rows whose length is not a multiple of 8). */
template <int T>
static __device__ __forceinline__ float deq1(const uint8_t *row, int64_t i)
{
    if (T == LLM_DT_F32)
        return ((const float *)row)[i];
    if (T == LLM_DT_F16)
        return __half2float(((const __half *)row)[i]);
    return bf16_bits(((const uint16_t *)row)[i]);
}

/* ---- activation rounding ------------------------------------------------------------- */

enum { ROUND_NONE, ROUND_F16, ROUND_BF16, ROUND_Q8_0, ROUND_Q8_K };

static int rounding_of(uint32_t t)
{
    switch (t) {
    case LLM_DT_F32: return ROUND_NONE;
    case LLM_DT_F16: return ROUND_F16;
    case LLM_DT_BF16: return ROUND_BF16;
    case LLM_DT_Q2_K: case LLM_DT_Q3_K: case LLM_DT_Q4_K: case LLM_DT_Q5_K: case LLM_DT_Q6_K:
    case LLM_DT_IQ4_XS:
        return ROUND_Q8_K;
    default: return ROUND_Q8_0; /* Q8_0 and Q8_1 hold the same values */
    }
}

static __device__ float bf16_round(float x)
{
    const uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return x;
    return __uint_as_float(((u + (0x7fffu + ((u >> 16) & 1))) >> 16) << 16);
}

static __device__ __forceinline__ void store16(__half *p, float v) { *p = __float2half_rn(v); }
static __device__ __forceinline__ void store16(__nv_bfloat16 *p, float v)
{
    *p = __float2bfloat16_rn(v);
}
static __device__ __forceinline__ void store_act(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store_act(__half *p, float v) { store16(p, v); }

/* One block of 256 threads per (256 elements, activation row): writes the rounded row to
 * out [n][k]. Q8_0: per 32, d = amax/127 (stored as f16), q = roundf(x / d). Q8_K: per
 * 256, the first element of largest magnitude maps to -127, q = rint(x * -127/max). */
template <typename O>
static __global__ void __launch_bounds__(256)
k_round_act(const float *__restrict__ x, int64_t ldx, int32_t kc, int64_t ldx_k, int64_t k,
            int mode, O *__restrict__ out)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    /* row j of the output is row j / kc of x, choice j % kc (ldx_k apart): the rows of
     * matmul_id's (token, choice) pairs; kc = 1 otherwise */
    const int64_t j = blockIdx.y, i = (int64_t)blockIdx.x * 256 + threadIdx.x;
    x += j / kc * ldx + j % kc * ldx_k;
    const bool in = i < k;
    const float v = in ? x[i] : 0.0f;
    float r = v;
    if (mode == ROUND_F16) {
        r = __half2float(__float2half_rn(v));
    } else if (mode == ROUND_BF16) {
        r = bf16_round(v);
    } else if (mode == ROUND_Q8_0) {
        float amax = fabsf(v);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) /* groups of 32 lanes (two per warp on 64-wide) */
            amax = fmaxf(amax, LLM_SHFL_XOR(amax, o));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        r = roundf(v * id) * __half2float(__float2half_rn(d));
    } else if (mode == ROUND_Q8_K) {
        const float mx = q8k_block_max(x + (int64_t)blockIdx.x * 256, v, in);
        if (mx == 0.0f) {
            r = 0.0f;
        } else {
            const float iscale = -127.0f / mx;
            const float q = fminf(rintf(iscale * v), 127.0f);
            r = q * (1.0f / iscale);
        }
    }
    if (in)
        store_act(out + j * k + i, r);
}

/* The activations rounded for weight type t, as [n][k] in the backend's activation
 * buffer; x itself for F32 weights. NULL (error recorded) when memory runs out. */
static const float *round_activations(llm_backend *be, uint32_t t, const float *x, int64_t ldx,
                                      int64_t k, int64_t n, int64_t *ld_out)
{
    const int mode = rounding_of(t);
    *ld_out = ldx;
    if (mode == ROUND_NONE)
        return x;
    float *out = (float *)cu_buffer(be, &be->act, &be->act_cap, (size_t)(n * k) * sizeof(float));
    if (!out)
        return NULL;
    const dim3 grid(cdiv(k, 256), (unsigned)n);
    k_round_act<float><<<grid, 256, 0, be->stream>>>(x, ldx, 1, 0, k, mode, out);
    if (!CU_LAUNCHED(be, "activation rounding"))
        return NULL;
    *ld_out = k;
    return out;
}

/* ---- matrix-vector (few tokens) -------------------------------------------------------- */

#define MV_WARPS 4
#define MV_UNROLL 4

/* This lane's share of the dots of one weight row with n <= NT activation rows (x, ldx
 * floats apart), added to acc. The order of the sums for one activation row does not
 * depend on NT or n: a token's result is the same in any tile. */
template <int T, int NT>
static __device__ __forceinline__ void row_dots(const uint8_t *__restrict__ row, int64_t k,
                                                const float *__restrict__ x, int64_t ldx, int n,
                                                bool xvec, int lane, float acc[NT])
{
    /* float rows of a length that is no multiple of 8 are not 16-byte aligned: the tail
     * loop below takes them element by element */
    const bool float_type = T == LLM_DT_F32 || T == LLM_DT_F16 || T == LLM_DT_BF16;
    const int64_t nc = float_type && k % 8 ? 0 : k / 8;
    /* MV_UNROLL chunks per lane per pass: their loads are all in flight before the first
     * product needs them */
    for (int64_t c0 = lane; c0 < nc; c0 += MV_UNROLL * LLM_WARP_SIZE) {
        float v[MV_UNROLL][8];
#pragma unroll
        for (int u = 0; u < MV_UNROLL; u++)
            if (c0 + u * LLM_WARP_SIZE < nc)
                deq8<T>(row, c0 + u * LLM_WARP_SIZE, v[u]);
#pragma unroll
        for (int u = 0; u < MV_UNROLL; u++) {
            const int64_t c = c0 + u * LLM_WARP_SIZE;
            if (c >= nc)
                break;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (j < n) {
                    const float *xj = x + j * ldx + 8 * c;
                    float xv[8];
                    if (xvec) {
                        const float4 a = ((const float4 *)xj)[0], b = ((const float4 *)xj)[1];
                        xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w;
                        xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
                    } else {
#pragma unroll
                        for (int i = 0; i < 8; i++)
                            xv[i] = xj[i];
                    }
#pragma unroll
                    for (int i = 0; i < 8; i++)
                        acc[j] += v[u][i] * xv[i];
                }
            }
        }
    }
    if (T == LLM_DT_F32 || T == LLM_DT_F16 || T == LLM_DT_BF16) {
        for (int64_t i = nc * 8 + lane; i < k; i += LLM_WARP_SIZE) {
            const float wv = deq1<T>(row, i);
#pragma unroll
            for (int j = 0; j < NT; j++)
                if (j < n)
                    acc[j] += wv * x[j * ldx + i];
        }
    }
}

template <int T, int NT>
static __global__ void __launch_bounds__(MV_WARPS *LLM_WARP_SIZE)
k_matvec(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t k,
         const float *__restrict__ x, int64_t ldx, float *__restrict__ y, int64_t ldy, int n,
         bool xvec)
{
    const int lane = threadIdx.x % LLM_WARP_SIZE;
    const int64_t r = (int64_t)blockIdx.x * MV_WARPS + threadIdx.x / LLM_WARP_SIZE;
    if (r >= rows)
        return; /* the whole warp leaves together */
    /* blockIdx.y: a tile of NT tokens (more than MATVEC_MAX_TOKENS in batch-invariant mode) */
    x += (int64_t)blockIdx.y * NT * ldx;
    y += (int64_t)blockIdx.y * NT * ldy;
    n = n - (int)blockIdx.y * NT < NT ? n - (int)blockIdx.y * NT : NT;
    float acc[NT];
#pragma unroll
    for (int j = 0; j < NT; j++)
        acc[j] = 0.0f;
    row_dots<T, NT>(w + r * row_bytes, k, x, ldx, n, xvec, lane, acc);
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float s = warp_sum(acc[j]);
        if (j < n && lane == 0)
            y[j * ldy + r] = s;
    }
}

/* Expert rows: blockIdx.y is a (token, choice) pair c, whose expert is ids[c]; its
 * activation row is x[c] (one row per pair) or x[c / k] (one per token). */
template <int T>
static __global__ void __launch_bounds__(MV_WARPS *LLM_WARP_SIZE)
k_matvec_id(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t k,
            const float *__restrict__ x, int per_choice, int32_t kc,
            const int32_t *__restrict__ ids, float *__restrict__ y)
{
    const int lane = threadIdx.x % LLM_WARP_SIZE;
    const int64_t r = (int64_t)blockIdx.x * MV_WARPS + threadIdx.x / LLM_WARP_SIZE;
    if (r >= rows)
        return;
    const int64_t c = blockIdx.y;
    const int64_t e = ids[c];
    float acc[1] = {0.0f};
    row_dots<T, 1>(w + (e * rows + r) * row_bytes, k, x + (per_choice ? c : c / kc) * k, k, 1,
                   k % 4 == 0, lane, acc);
    const float s = warp_sum(acc[0]);
    if (lane == 0)
        y[c * rows + r] = s;
}

template <int T>
static void matvec(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w, const uint8_t *wd,
                   const float *x, int64_t ldx, int n)
{
    const dim3 grid(cdiv(w->ne[1], MV_WARPS), cdiv(n, MATVEC_MAX_TOKENS)),
        block(MV_WARPS * LLM_WARP_SIZE);
    const int64_t rows = w->ne[1], k = w->ne[0];
    const size_t rb = w->row_bytes;
    /* activation rows as float4 when aligned (always for the rounded copies) */
    const bool xvec = ((uintptr_t)x % 16) == 0 && ldx % 4 == 0;
    if (n == 1)
        k_matvec<T, 1><<<grid, block, 0, be->stream>>>(wd, rb, rows, k, x, ldx, y, ldy, n,
                                                                 xvec);
    else if (n == 2)
        k_matvec<T, 2><<<grid, block, 0, be->stream>>>(wd, rb, rows, k, x, ldx, y, ldy, n,
                                                                 xvec);
    else if (n <= 4)
        k_matvec<T, 4><<<grid, block, 0, be->stream>>>(wd, rb, rows, k, x, ldx, y, ldy, n,
                                                                 xvec);
    else
        k_matvec<T, 8><<<grid, block, 0, be->stream>>>(wd, rb, rows, k, x, ldx, y, ldy, n,
                                                                 xvec);
}

/* ---- dequantize + cuBLAS (many tokens) ------------------------------------------------- */

/* rows [r0, r0 + nr) of w as f16, row-major [nr][k] */
template <int T>
static __global__ void k_dequant_f16(const uint8_t *__restrict__ w, size_t row_bytes, int64_t k,
                                     int64_t r0, int64_t nr, __half *__restrict__ out)
{
    const int64_t per_row = k / 8, total = nr * per_row;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / per_row, c = i % per_row;
        float v[8];
        deq8<T>(w + (r0 + r) * row_bytes, c, v);
        __half2 h[4];
#pragma unroll
        for (int e = 0; e < 4; e++)
            h[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
        *(uint4 *)(out + r * k + 8 * c) = *(const uint4 *)h;
    }
}

/* activations [n][ldx] f32 -> [n][k] f16 or bf16 */
template <typename H>
static __global__ void k_to_half(const float *__restrict__ x, int64_t ldx, int64_t k, int64_t n,
                                 H *__restrict__ out)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    const int64_t total = n * k;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = i / k, e = i % k;
        store16(out + i, x[j * ldx + e]);
    }
}

/* the deferred glu (cuda.cu) of n elements, written to y and converted to out */
template <typename H>
static __global__ void k_glu_to_half(float *__restrict__ y, const float *__restrict__ gate,
                                     const float *__restrict__ up, int act, int64_t n,
                                     H *__restrict__ out)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float v = glu_value(gate[i], up[i], act);
        y[i] = v;
        store16(out + i, v);
    }
}

static unsigned grid_cap(const llm_backend *be, int64_t items, int threads)
{
    const int64_t blocks = (items + threads - 1) / threads, cap = (int64_t)be->n_sm * 32;
    return (unsigned)(blocks < cap ? blocks : cap);
}

/* ---- f16 and bf16 weights, few tokens ------------------------------------------------
 * The activations are converted once to the weight's 16-bit type (the CPU's rounding for
 * these types), so a lane reads 16 bytes of weights and 16 of activations per 8 elements.
 * Each warp takes MV16_ROWS rows, the activation chunk loaded once for them, with
 * MV16_UNROLL chunks of each row in flight (long rows: KS warps, a contiguous part of the
 * row each, their sums then added in order). A product of two 16-bit values is exact in
 * f32; a lane adds its chunks in order, then the warp adds its lanes: the same for every
 * token of any tile. */
#define MV16_ROWS 2
#define MV16_UNROLL 4

template <int T>
static __device__ __forceinline__ void cvt8(const uint4 &u, float v[8])
{
    const uint32_t w4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (T == LLM_DT_F16) {
            const float2 f = __half22float2(*(const __half2 *)&w4[i]);
            v[2 * i] = f.x, v[2 * i + 1] = f.y;
        } else {
            v[2 * i] = __uint_as_float(w4[i] << 16);
            v[2 * i + 1] = __uint_as_float(w4[i] & 0xffff0000u);
        }
    }
}

template <int T, int NT, int ROWS, int UNR, int KS>
static __global__ void __launch_bounds__(MV_WARPS *LLM_WARP_SIZE)
k_mv16(const mq_set S, size_t row_bytes, int64_t k, const uint16_t *__restrict__ xh, int n,
       int early)
{
    /* started early, the first weight loads go out before the wait (k_mmvq, mmvq.cu) */
    bool waited = false;
    if (!early)
        pdl_wait_once(waited);
    const mq_one mo = mq_pick(S);
    const uint8_t *__restrict__ w = mo.w;
    float *__restrict__ y = mo.y;
    const int64_t ldy = mo.ldy, rows = mo.rows;
    const unsigned bx = mo.bx;
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    const int slice = warp % KS;
    const int64_t r0 = ((int64_t)bx * (MV_WARPS / KS) + warp / KS) * ROWS;
    if (KS == 1 && r0 >= rows)
        return; /* the whole warp leaves together (with KS > 1 it meets a barrier below) */
    xh += (int64_t)blockIdx.y * NT * k;
    y += (int64_t)blockIdx.y * NT * ldy;
    n = n - (int)blockIdx.y * NT < NT ? n - (int)blockIdx.y * NT : NT;
    const uint4 *row[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; i++)
        row[i] = (const uint4 *)(w + (r0 + i < rows ? r0 + i : rows - 1) * row_bytes);
    /* warp `slice` of a row's KS takes the slice-th contiguous part of its chunks */
    const int64_t nc = k / 8, cb = nc * slice / KS;
    const int64_t ce = r0 < rows ? nc * (slice + 1) / KS : cb;
    float acc[ROWS][NT];
#pragma unroll
    for (int i = 0; i < ROWS; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
            acc[i][j] = 0.0f;
    for (int64_t c0 = cb + lane; c0 < ce; c0 += UNR * LLM_WARP_SIZE) {
        uint4 wv[UNR][ROWS];
#pragma unroll
        for (int u = 0; u < UNR; u++)
            if (c0 + u * LLM_WARP_SIZE < ce)
#pragma unroll
                for (int i = 0; i < ROWS; i++)
                    wv[u][i] = row[i][c0 + u * LLM_WARP_SIZE];
        pdl_wait_once(waited);
#pragma unroll
        for (int u = 0; u < UNR; u++) {
            const int64_t c = c0 + u * LLM_WARP_SIZE;
            if (c >= ce)
                break;
            float wf[ROWS][8];
#pragma unroll
            for (int i = 0; i < ROWS; i++)
                cvt8<T>(wv[u][i], wf[i]);
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (j < n) {
                    float xf[8];
                    cvt8<T>(((const uint4 *)(xh + j * k))[c], xf);
#pragma unroll
                    for (int i = 0; i < ROWS; i++)
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            acc[i][j] = __fmaf_rn(wf[i][e], xf[e], acc[i][j]);
                }
            }
        }
    }
    pdl_wait_once(waited); /* a thread without a chunk waits here */
    rows_store<MV_WARPS, ROWS, NT, KS>(acc, lane, warp, r0, rows, y, ldy, n);
}

template <int T, int NT, int KS>
static void launch_mv16_ks(llm_backend *be, const mq_pend &p)
{
    mq_set S;
    const unsigned blocks = mq_set_of(p, (MV_WARPS / KS) * MV16_ROWS, &S);
    const dim3 grid(blocks, cdiv(p.n, MATVEC_MAX_TOKENS));
    cu_launch(be, k_mv16<T, NT, MV16_ROWS, MV16_UNROLL, KS>, grid, MV_WARPS * LLM_WARP_SIZE, 0,
              S, p.rb, p.k, (const uint16_t *)p.q, (int)p.n, be->early);
}

/* Rows of 8192 elements or more take four warps each, each a contiguous quarter of the
 * row (by shape only, never by token count: batch invariance). Measured on an H200
 * (matvec_bench, the 8B down matrix 4096 x 14336): one token 40.6 -> 32.1 us (2.89 -> 3.66
 * TB/s), four tokens 112 -> 68 us; two warps: 32.4 and 104 us. */
template <int T, int NT>
static void launch_mv16(llm_backend *be, const mq_pend &p)
{
    if (p.k >= 8192)
        launch_mv16_ks<T, NT, 4>(be, p);
    else
        launch_mv16_ks<T, NT, 1>(be, p);
}

/* Held-back 16-bit products (cu_mq_queue) as one launch. */
void cu_mv16_launch(llm_backend *be, const mq_pend &p)
{
    const int nt = p.n < MATVEC_MAX_TOKENS ? (int)p.n : MATVEC_MAX_TOKENS;
#define MV16_CASE(T)                                                                          \
    if (nt == 1)                                                                              \
        launch_mv16<T, 1>(be, p);                                                             \
    else if (nt == 2)                                                                         \
        launch_mv16<T, 2>(be, p);                                                             \
    else if (nt <= 4)                                                                         \
        launch_mv16<T, 4>(be, p);                                                             \
    else                                                                                      \
        launch_mv16<T, 8>(be, p);
    if (p.t == LLM_DT_BF16) {
        MV16_CASE(LLM_DT_BF16)
    } else {
        MV16_CASE(LLM_DT_F16)
    }
#undef MV16_CASE
}

/* The activations x (n rows of k, stride ldx) as [n][k] 16-bit values in the act buffer,
 * for a product with weights of type t: converted to t for F16 and BF16 weights, rounded
 * as the CPU rounds them (rounding_of) and stored as f16 for the others (the cuBLAS path's
 * expanded weights). Once for consecutive matmuls of the same rows (act_q8 in common.cuh);
 * a deferred glu, decode attention or norm (cuda.cu) whose output x is writes the
 * conversion itself. NULL (error recorded) on failure. */
static const uint16_t *act16(llm_backend *be, uint32_t t, const float *x, int64_t ldx,
                             int64_t k, int64_t n)
{
    const bool f16 = t == LLM_DT_F16 || t == LLM_DT_BF16;
    const int round = rounding_of(t);
    const int mode = t == LLM_DT_BF16 ? ACT_BF16 : t == LLM_DT_F16 ? ACT_F16
                     : round == ROUND_Q8_K                       ? ACT_Q8_K_H
                                                                 : ACT_Q8_0_H;
    const bool same = act_cached(be, x, ldx, k, n, mode);
    uint16_t *xh = (uint16_t *)cu_buffer(be, &be->act, &be->act_cap, (size_t)(n * k) * 2);
    if (!xh || same)
        return xh;
    const unsigned gx = grid_cap(be, n * k, 256);
    const auto p = be->pend;
    if (!f16) {
        act_stale(be);
        if (n > 65535) {
            cu_record(be, LLM_ERR_INVALID_ARG, "cuda: matmul of %lld tokens", (long long)n);
            return NULL;
        }
        const dim3 grid(cdiv(k, 256), (unsigned)n);
        cu_launch(be, k_round_act<__half>, grid, 256, 0, x, ldx, 1, (int64_t)0, k, round,
                  (__half *)xh);
    } else if (p.kind == PEND_GLU && p.y == x && ldx == k && p.n == n * k) {
        be->pend.kind = PEND_NONE; /* the deferred glu, computed here */
        if (t == LLM_DT_BF16)
            cu_launch(be, k_glu_to_half<__nv_bfloat16>, gx, 256, 0, p.y, p.a, p.b, p.act, p.n,
                      (__nv_bfloat16 *)xh);
        else
            cu_launch(be, k_glu_to_half<__half>, gx, 256, 0, p.y, p.a, p.b, p.act, p.n,
                      (__half *)xh);
    } else if (p.kind == PEND_ATT && p.att.p.out == x && ldx == k &&
               (int64_t)p.att.p.n_head * p.att.p.head_dim == k && p.att.n_tokens == n) {
        be->pend.kind = PEND_NONE; /* the deferred attention, converting as it writes */
        att_params ap = p.att.p;
        ap.h16 = xh, ap.t16 = t;
        cu_attention_launch(be, ap, n, p.att.per, p.att.dtype);
    } else if (p.kind == PEND_NORM && p.norm.y == x && ldx == k && p.norm.dim == k &&
               p.norm.rows == n) {
        be->pend.kind = PEND_NONE; /* the deferred norm, converting as it writes */
        cu_norm16(be, p.norm.y, p.norm.x, p.norm.a, p.norm.b, p.norm.w, n, k, p.norm.eps, t,
                  xh);
    } else {
        act_stale(be);
        if (t == LLM_DT_BF16)
            cu_launch(be, k_to_half<__nv_bfloat16>, gx, 256, 0, x, ldx, k, n,
                      (__nv_bfloat16 *)xh);
        else
            cu_launch(be, k_to_half<__half>, gx, 256, 0, x, ldx, k, n, (__half *)xh);
    }
    if (!CU_LAUNCHED(be, "activation conversion")) {
        act_stale(be);
        return NULL;
    }
    act_keep(be, x, ldx, k, n, mode);
    return xh;
}

/* y = x·Wᵀ for F16 and BF16 weights whose rows are a multiple of 8 long, n tokens in tiles
 * of MATVEC_MAX_TOKENS; 0 when w is not such a weight (nothing done). */
static int mv16(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w, const uint8_t *wd,
                const float *x, int64_t ldx, int64_t n)
{
    const uint32_t t = w->dtype;
    const int64_t k = w->ne[0], rows = w->ne[1];
    if ((t != LLM_DT_F16 && t != LLM_DT_BF16) || k % 8 != 0 || w->row_bytes % 16 != 0)
        return 0;
    if ((int64_t)cdiv(n, MATVEC_MAX_TOKENS) > 65535) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: matmul of %lld tokens", (long long)n);
        return 1;
    }
    const uint16_t *xh = act16(be, t, x, ldx, k, n);
    if (!xh)
        return 1;
    act_written(be, y, ldy, rows, x, ldx, k, n);
    cu_mq_queue(be, t, k, n, w->row_bytes, xh, NULL, NULL, wd, y, ldy, rows);
    return 1;
}

static int blas_ok(llm_backend *be, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return 1;
    cu_record(be, LLM_ERR_BACKEND, "cuda: %s failed (cuBLAS status %d)", what, (int)st);
    return 0;
}

template <int T>
static void dequant_slice(llm_backend *be, const uint8_t *wd, size_t row_bytes, int64_t k,
                          int64_t r0, int64_t nr, __half *out)
{
    k_dequant_f16<T><<<grid_cap(be, nr * k / 8, 256), 256, 0, be->stream>>>(wd, row_bytes, k, r0,
                                                                            nr, out);
}

static void dequant_dispatch(llm_backend *be, uint32_t t, const uint8_t *wd, size_t rb,
                             int64_t k, int64_t r0, int64_t nr, __half *out)
{
    switch (t) {
    case LLM_DT_Q4_0: dequant_slice<LLM_DT_Q4_0>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q4_1: dequant_slice<LLM_DT_Q4_1>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q5_0: dequant_slice<LLM_DT_Q5_0>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q5_1: dequant_slice<LLM_DT_Q5_1>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q8_0: dequant_slice<LLM_DT_Q8_0>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q2_K: dequant_slice<LLM_DT_Q2_K>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q3_K: dequant_slice<LLM_DT_Q3_K>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q4_K: dequant_slice<LLM_DT_Q4_K>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q5_K: dequant_slice<LLM_DT_Q5_K>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_Q6_K: dequant_slice<LLM_DT_Q6_K>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_IQ4_NL: dequant_slice<LLM_DT_IQ4_NL>(be, wd, rb, k, r0, nr, out); break;
    case LLM_DT_IQ4_XS: dequant_slice<LLM_DT_IQ4_XS>(be, wd, rb, k, r0, nr, out); break;
    default: break;
    }
}

/* The whole of quantized weight w expanded to f16, made on its first use here when the
 * device keeps F16_RESERVE free after it (the KV cache and activations are allocated when
 * a context is created, before any matmul runs); NULL when it was not made. Several
 * contexts may share a model from different threads: one makes it, on its own stream,
 * and waits for it before anyone may use it. */
#define F16_RESERVE_MIN ((size_t)2 << 30)

static pthread_mutex_t f16_mu = PTHREAD_MUTEX_INITIALIZER;

static const __half *f16_weight(llm_backend *be, const llm_tensor *w, const uint8_t *wd)
{
    cu_weight *cw = (cu_weight *)w->extra;
    const int st = __atomic_load_n(&cw->f16_state, __ATOMIC_ACQUIRE);
    if (st != 0 || be->no_f16_weights || be->capturing) /* making it waits for the stream */
        return st > 0 ? (const __half *)cw->f16 : NULL;
    const int64_t k = w->ne[0], rows = w->ne[1];
    const size_t need = (size_t)rows * (size_t)k * 2;
    pthread_mutex_lock(&f16_mu);
    if (cw->f16_state == 0) {
        cudaSetDevice(be->device);
        size_t free_b = 0, total = 0;
        void *p = NULL;
        int made = 0;
        if (cudaMemGetInfo(&free_b, &total) == cudaSuccess &&
            free_b >= need + (total / 10 > F16_RESERVE_MIN ? total / 10 : F16_RESERVE_MIN) &&
            cudaMalloc(&p, need) == cudaSuccess) {
            dequant_dispatch(be, w->dtype, wd, w->row_bytes, k, 0, rows, (__half *)p);
            made = cudaGetLastError() == cudaSuccess &&
                   cudaStreamSynchronize(be->stream) == cudaSuccess;
        }
        cudaGetLastError(); /* a failed allocation is not an error: the slices remain */
        if (!made && p)
            cudaFree(p);
        cw->f16 = made ? p : NULL;
        __atomic_store_n(&cw->f16_state, made ? 1 : -1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&f16_mu);
    return (const __half *)cw->f16;
}

void cu_gemm_launch(llm_backend *be, const gemm_pend &g)
{
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType_t ht = g.bf16 ? CUDA_R_16BF : CUDA_R_16F;
    if (g.count == 1)
        blas_ok(be, cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)g.rows, (int)g.n,
                                 (int)g.k, &one, g.w, ht, (int)g.ldw, g.x, ht, (int)g.k, &zero,
                                 g.y, CUDA_R_32F, (int)g.ldy, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT),
                "GEMM");
    else
        blas_ok(be, cublasGemmStridedBatchedEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)g.rows,
                                               (int)g.n, (int)g.k, &one, g.w, ht, (int)g.ldw,
                                               g.dw, g.x, ht, (int)g.k, 0, &zero, g.y,
                                               CUDA_R_32F, (int)g.ldy, g.dy, g.count,
                                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                "batched GEMM");
}

/* Holds a cuBLAS product back, or runs it with the held-back one as a batch of two when
 * both read the same activations and have the same shape (k and v; gate and up): small
 * products fill the GPU together, large ones waste less of their last wave. The batch
 * needs the second weight and output at a fixed distance after the first's, which any
 * two do whose outputs do not overlap (the order is swapped when the second lies lower). */
static void gemm_queue(llm_backend *be, const gemm_pend &g)
{
    if (be->pend.kind == PEND_GEMM) {
        gemm_pend p = be->pend.gemm;
        be->pend.kind = PEND_NONE;
        const int64_t dw = ((const char *)g.w - (const char *)p.w) / 2;
        const int64_t dy = g.y - p.y, span = (g.n - 1) * g.ldy + g.rows;
        if (p.count == 1 && p.x == g.x && p.rows == g.rows && p.k == g.k && p.n == g.n &&
            p.ldw == g.ldw && p.ldy == g.ldy && p.bf16 == g.bf16 &&
            ((const char *)g.w - (const char *)p.w) % 2 == 0 &&
            ((dw > 0 && dy >= span) || (dw < 0 && -dy >= span))) {
            gemm_pend b = dw > 0 ? p : g;
            b.dw = dw > 0 ? dw : -dw, b.dy = dy > 0 ? dy : -dy, b.count = 2;
            cu_gemm_launch(be, b);
            return;
        }
        cu_gemm_launch(be, p);
    }
    if (!(be->fuse & FUSE_GEMM)) {
        cu_gemm_launch(be, g);
        return;
    }
    be->pend.kind = PEND_GEMM;
    be->pend.gemm = g;
}

/* y = x·Wᵀ through cuBLAS (n > MATVEC_MAX_TOKENS): F32 weights by SGEMM; F16 and BF16
 * weights as they are, the activations converted to their type; quantized weights
 * expanded to f16 (kept whole when the device has room, else a slice of rows at a time),
 * the activations rounded as the CPU rounds them and stored as f16. */
static void gemm(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w, const uint8_t *wd,
                 const float *x, int64_t ldx, int64_t n)
{
    const int64_t k = w->ne[0], rows = w->ne[1];
    const float one = 1.0f, zero = 0.0f;
    if (w->dtype == LLM_DT_F32) {
        act_stale(be);
        blas_ok(be, cublasSgemm(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)k,
                                &one, (const float *)wd, (int)(w->row_bytes / 4), x, (int)ldx,
                                &zero, y, (int)ldy),
                "SGEMM");
        return;
    }
    const bool f16 = is_float_type(w->dtype);
    const __half *whole = f16 ? NULL : f16_weight(be, w, wd);
    int64_t slice = rows;
    __half *wh = NULL;
    if (!f16 && !whole) {
        slice = (int64_t)(SLICE_BYTES / ((size_t)k * 2));
        slice = slice < 1 ? 1 : slice > rows ? rows : slice;
        act_stale(be); /* a scratch that grows waits for the deferred op */
        wh = (__half *)cu_scratch(be, (size_t)slice * (size_t)k * 2);
        if (!wh)
            return;
    }
    const uint16_t *xh = act16(be, w->dtype, x, ldx, k, n);
    if (!xh)
        return;
    if (be->pend.kind != PEND_NONE && be->pend.kind != PEND_GEMM)
        cu_flush(be); /* a held-back op not taken in: launched first, the activations kept */
    act_written(be, y, ldy, rows, x, ldx, k, n);
    if (f16 || whole) {
        gemm_pend g = {};
        g.w = f16 ? (const void *)wd : (const void *)whole, g.x = xh, g.y = y;
        g.rows = rows, g.k = k, g.n = n, g.ldw = f16 ? (int64_t)(w->row_bytes / 2) : k;
        g.ldy = ldy, g.bf16 = w->dtype == LLM_DT_BF16, g.count = 1;
        gemm_queue(be, g);
        return;
    }
    /* nothing is held back here: act_stale ran before the scratch was taken */
    for (int64_t r0 = 0; r0 < rows; r0 += slice) {
        const int64_t nr = rows - r0 < slice ? rows - r0 : slice;
        dequant_dispatch(be, w->dtype, wd, w->row_bytes, k, r0, nr, wh);
        if (!CU_LAUNCHED(be, "weight expansion"))
            return;
        if (!blas_ok(be, cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, (int)n, (int)k,
                                      &one, wh, CUDA_R_16F, (int)k, xh, CUDA_R_16F, (int)k,
                                      &zero, y + r0, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT),
                     "GEMM"))
            return;
    }
}

void cu_matmul(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w, const float *x,
               int64_t ldx, int64_t n)
{
    if (n <= 0 || w->ne[1] <= 0)
        return;
    const uint8_t *wd = (const uint8_t *)wdata(w);
    if (!wd) {
        cu_record(be, LLM_ERR_INTERNAL, "cuda: matmul with tensor '%s', which was not prepared",
                  w->name);
        return;
    }
    /* the 8- and 16-bit kernels take a deferred op in or launch it first themselves */
    if ((n <= MATVEC_MAX_TOKENS || be->batch_invariant) && !be->no_mmvq &&
        (cu_mmvq(be, y, ldy, w, wd, x, ldx, n) || mv16(be, y, ldy, w, wd, x, ldx, n)))
        return;
    if (n > MATVEC_MAX_TOKENS && !be->batch_invariant) {
        gemm(be, y, ldy, w, wd, x, ldx, n);
        return;
    }
    act_stale(be); /* the paths below use the act buffer or write where it came from */
    x = round_activations(be, w->dtype, x, ldx, w->ne[0], n, &ldx);
    if (!x)
        return;
    if (n > MATVEC_MAX_TOKENS && (int64_t)cdiv(n, MATVEC_MAX_TOKENS) > 65535) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: matmul of %lld tokens", (long long)n);
        return;
    }
    switch (w->dtype) {
    case LLM_DT_F32: matvec<LLM_DT_F32>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_F16: matvec<LLM_DT_F16>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_BF16: matvec<LLM_DT_BF16>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q4_0: matvec<LLM_DT_Q4_0>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q4_1: matvec<LLM_DT_Q4_1>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q5_0: matvec<LLM_DT_Q5_0>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q5_1: matvec<LLM_DT_Q5_1>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q8_0: matvec<LLM_DT_Q8_0>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q2_K: matvec<LLM_DT_Q2_K>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q3_K: matvec<LLM_DT_Q3_K>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q4_K: matvec<LLM_DT_Q4_K>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q5_K: matvec<LLM_DT_Q5_K>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_Q6_K: matvec<LLM_DT_Q6_K>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_IQ4_NL: matvec<LLM_DT_IQ4_NL>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    case LLM_DT_IQ4_XS: matvec<LLM_DT_IQ4_XS>(be, y, ldy, w, wd, x, ldx, (int)n); break;
    default:
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: matmul with type %u", w->dtype);
        return;
    }
    CU_LAUNCHED(be, "matmul");
}

/* ---- expert matmul ------------------------------------------------------------------- */

template <int T>
static void matvec_id(llm_backend *be, float *y, const uint8_t *wd, size_t rb, int64_t rows,
                      int64_t k, const float *x, int per_choice, int32_t kc, const int32_t *ids,
                      int64_t pairs)
{
    const dim3 grid(cdiv(rows, MV_WARPS), (unsigned)pairs), block(MV_WARPS * LLM_WARP_SIZE);
    k_matvec_id<T><<<grid, block, 0, be->stream>>>(wd, rb, rows, k, x, per_choice, kc, ids, y);
}

/* The chosen experts only: the activation rows are gathered and rounded once, then one
 * warp per (expert row, token choice). */
void cu_matmul_id(llm_backend *be, float *y, const llm_tensor *w, int32_t n_expert,
                  const float *x, int64_t ldx, int64_t ldx_k, const int32_t *ids, int32_t k,
                  int64_t n)
{
    act_stale(be);
    if (n <= 0 || k <= 0)
        return;
    const uint8_t *wd = (const uint8_t *)wdata(w);
    if (!wd || n_expert <= 0 || w->ne[1] % n_expert) {
        cu_record(be, LLM_ERR_INTERNAL, "cuda: matmul_id with tensor '%s' (%d experts)",
                  w->name, n_expert);
        return;
    }
    if (n * k > 65535) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: matmul_id of %lld token choices",
                  (long long)(n * k));
        return;
    }
    const int64_t K = w->ne[0], R = w->ne[1] / n_expert;
    const int per_choice = ldx_k != 0;
    const int64_t n_rows = per_choice ? n * k : n;
    float *xr = (float *)cu_buffer(be, &be->act, &be->act_cap, (size_t)(n_rows * K) * 4);
    if (!xr)
        return;
    const dim3 grid(cdiv(K, 256), (unsigned)n_rows);
    k_round_act<float><<<grid, 256, 0, be->stream>>>(x, ldx, per_choice ? k : 1, ldx_k, K,
                                                     rounding_of(w->dtype), xr);
    if (!CU_LAUNCHED(be, "activation rounding"))
        return;
    const size_t rb = w->row_bytes;
    const int64_t pairs = n * k;
    switch (w->dtype) {
    case LLM_DT_F32: matvec_id<LLM_DT_F32>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_F16: matvec_id<LLM_DT_F16>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_BF16: matvec_id<LLM_DT_BF16>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q4_0: matvec_id<LLM_DT_Q4_0>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q4_1: matvec_id<LLM_DT_Q4_1>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q5_0: matvec_id<LLM_DT_Q5_0>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q5_1: matvec_id<LLM_DT_Q5_1>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q8_0: matvec_id<LLM_DT_Q8_0>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q2_K: matvec_id<LLM_DT_Q2_K>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q3_K: matvec_id<LLM_DT_Q3_K>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q4_K: matvec_id<LLM_DT_Q4_K>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q5_K: matvec_id<LLM_DT_Q5_K>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_Q6_K: matvec_id<LLM_DT_Q6_K>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_IQ4_NL: matvec_id<LLM_DT_IQ4_NL>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    case LLM_DT_IQ4_XS: matvec_id<LLM_DT_IQ4_XS>(be, y, wd, rb, R, K, xr, per_choice, k, ids, pairs); break;
    default:
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: matmul_id with type %u", w->dtype);
        return;
    }
    CU_LAUNCHED(be, "matmul_id");
}

/* ---- get_rows ----------------------------------------------------------------------- */

template <int T>
static __global__ void k_get_rows(float *__restrict__ y, const uint8_t *__restrict__ w,
                                  size_t row_bytes, int64_t k, const int32_t *__restrict__ ids)
{
    const uint8_t *row = w + (int64_t)ids[blockIdx.y] * row_bytes;
    float *out = y + (int64_t)blockIdx.y * k;
    if (k % 8 == 0) {
        for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < k / 8;
             c += (int64_t)gridDim.x * blockDim.x) {
            float v[8];
            deq8<T>(row, c, v);
#pragma unroll
            for (int i = 0; i < 8; i++)
                out[8 * c + i] = v[i];
        }
    } else if (T == LLM_DT_F32 || T == LLM_DT_F16 || T == LLM_DT_BF16) {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < k;
             i += (int64_t)gridDim.x * blockDim.x)
            out[i] = deq1<T>(row, i);
    }
}

template <int T>
static void get_rows(llm_backend *be, float *y, const llm_tensor *w, const uint8_t *wd,
                     const int32_t *ids, int64_t n)
{
    const dim3 grid(cdiv(w->ne[0] % 8 == 0 ? w->ne[0] / 8 : w->ne[0], 128), (unsigned)n);
    k_get_rows<T><<<grid, 128, 0, be->stream>>>(y, wd, w->row_bytes, w->ne[0], ids);
}

void cu_get_rows(llm_backend *be, float *y, const llm_tensor *w, const int32_t *ids, int64_t n)
{
    act_stale(be);
    if (n <= 0)
        return;
    const uint8_t *wd = (const uint8_t *)wdata(w);
    if (!wd) {
        cu_record(be, LLM_ERR_INTERNAL, "cuda: get_rows of tensor '%s', which was not prepared",
                  w->name);
        return;
    }
    switch (w->dtype) {
    case LLM_DT_F32: get_rows<LLM_DT_F32>(be, y, w, wd, ids, n); break;
    case LLM_DT_F16: get_rows<LLM_DT_F16>(be, y, w, wd, ids, n); break;
    case LLM_DT_BF16: get_rows<LLM_DT_BF16>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q4_0: get_rows<LLM_DT_Q4_0>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q4_1: get_rows<LLM_DT_Q4_1>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q5_0: get_rows<LLM_DT_Q5_0>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q5_1: get_rows<LLM_DT_Q5_1>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q8_0: get_rows<LLM_DT_Q8_0>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q2_K: get_rows<LLM_DT_Q2_K>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q3_K: get_rows<LLM_DT_Q3_K>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q4_K: get_rows<LLM_DT_Q4_K>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q5_K: get_rows<LLM_DT_Q5_K>(be, y, w, wd, ids, n); break;
    case LLM_DT_Q6_K: get_rows<LLM_DT_Q6_K>(be, y, w, wd, ids, n); break;
    case LLM_DT_IQ4_NL: get_rows<LLM_DT_IQ4_NL>(be, y, w, wd, ids, n); break;
    case LLM_DT_IQ4_XS: get_rows<LLM_DT_IQ4_XS>(be, y, w, wd, ids, n); break;
    default:
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: get_rows with type %u", w->dtype);
        return;
    }
    CU_LAUNCHED(be, "get_rows");
}
