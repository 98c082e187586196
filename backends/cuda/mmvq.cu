/* mmvq.cu - the quantized matrix-vector product for decode: 8-bit activations, integer
 * dot products.
 *
 * The activations are quantized once per matmul to int8 in blocks of 32 with one float
 * scale and one integer sum per block (act_q8), with exactly the rounding the CPU backend
 * (and llama.cpp) applies before its dot products: Q8_0 blocks (scale amax/127 rounded to
 * f16) for the 32-element types, Q8_K blocks of 256 (one scale per 256, repeated in each
 * of its eight 32-blocks) for the k-quants. The weight blocks are read in their GGUF
 * layout with 4-byte loads (2-byte aligned blocks are read as the aligned words around
 * them and shifted), unpacked to bytes, and multiplied with dp4a; the integer sum of a
 * unit is exact, so the result differs from the float path's only in how the units' scaled
 * sums are added.
 *
 * Work split: up to four warps per weight row, each taking every fourth run of 32 units;
 * a lane takes one "unit" (32 or 64 weights, the smallest piece whose scales are
 * self-contained) at a time. A group of warps takes R rows (4 or 2 for the large Q4_K,
 * Q6_K and Q8_0 matrices, see launch_v; else 1); one unit per lane in flight (two measured
 * slower end to end). Consecutive matmuls of the same activations (q, k and v after one
 * norm; gate and up) quantize them once (act_q8 in common.cuh), a deferred glu is
 * computed by that quantization (cuda.cu), and a deferred norm does the quantization
 * itself (cu_norm_q8, norm.cu). Started early (PDL), a kernel issues its first weight
 * loads before it waits for the kernel before it. A token's result depends only on its own
 * activations and this fixed order, never on how many tokens share the launch (the
 * batch-invariance matmul.cu promises).
 *
 * Every quantized type the backend takes has a kernel here (Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS); the float types stay on matmul.cu's float kernel. */
#include <limits.h>

#include "common.cuh"

#define MQ_WARPS 4
#define MQ_MAX_TOKENS 8


/* ---- loads ---------------------------------------------------------------------------- */

/* N consecutive 32-bit words from a 2-byte aligned address: the aligned words around them,
 * shifted. Reads up to 2 bytes past the last word (weights are allocated with padding). */
template <int N>
static __device__ __forceinline__ void ld_words_b2(const uint8_t *p, int v[N])
{
    const uint32_t *a = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
    const int sh = (int)((uintptr_t)p & 2) * 8;
    uint32_t w[N + 1];
#pragma unroll
    for (int i = 0; i <= N; i++)
        w[i] = a[i];
#pragma unroll
    for (int i = 0; i < N; i++)
        v[i] = (int)(uint32_t)((((uint64_t)w[i + 1] << 32) | w[i]) >> sh);
}

/* N words from a 4-byte aligned address */
template <int N>
static __device__ __forceinline__ void ld_words_b4(const uint8_t *p, int v[N])
{
    const int *a = (const int *)p;
#pragma unroll
    for (int i = 0; i < N; i++)
        v[i] = a[i];
}

/* N words (N a multiple of 4) from a 16-byte aligned address */
template <int N>
static __device__ __forceinline__ void ld_words_b16(const uint8_t *p, int v[N])
{
    const int4 *a = (const int4 *)p;
#pragma unroll
    for (int i = 0; i < N / 4; i++) {
        const int4 t = a[i];
        v[4 * i] = t.x, v[4 * i + 1] = t.y, v[4 * i + 2] = t.z, v[4 * i + 3] = t.w;
    }
}

/* bits 0..3 of b spread to bit 4 of each byte (the fifth bit of four 5-bit values) */
static __device__ __forceinline__ int spread4(uint32_t b)
{
    return (int)(((b & 1) << 4) | ((b & 2) << 11) | ((b & 4) << 18) | ((b & 8) << 25));
}


/* ---- units -----------------------------------------------------------------------------
 * unit_dot<T>(row, u, x, j...): the weights of unit u of a row against one token's
 * activations. Unit sizes: 32 weights for the 32-element block types (one block), 64 for
 * Q4_K/Q5_K (a pair of 32-weight groups) and Q6_K (two 32-weight groups that share their
 * bytes). Weights are unpacked once per unit (Wu), then dotted with every token. */

template <int T> struct unit_of;
template <> struct unit_of<LLM_DT_Q4_0> { static const int n = 32; };
template <> struct unit_of<LLM_DT_Q4_1> { static const int n = 32; };
template <> struct unit_of<LLM_DT_Q5_0> { static const int n = 32; };
template <> struct unit_of<LLM_DT_Q5_1> { static const int n = 32; };
template <> struct unit_of<LLM_DT_Q8_0> { static const int n = 32; };
template <> struct unit_of<LLM_DT_Q4_K> { static const int n = 64; };
template <> struct unit_of<LLM_DT_Q5_K> { static const int n = 64; };
template <> struct unit_of<LLM_DT_Q6_K> { static const int n = 64; };
template <> struct unit_of<LLM_DT_Q2_K> { static const int n = 32; };
template <> struct unit_of<LLM_DT_Q3_K> { static const int n = 32; };
template <> struct unit_of<LLM_DT_IQ4_NL> { static const int n = 32; };
template <> struct unit_of<LLM_DT_IQ4_XS> { static const int n = 32; };

#define PACK4(a, b, c, d)                                                                   \
    ((uint32_t)(uint8_t)(a) | (uint32_t)(uint8_t)(b) << 8 | (uint32_t)(uint8_t)(c) << 16 |  \
     (uint32_t)(uint8_t)(d) << 24)

/* The IQ4 levels of four 4-bit indices (one per byte): the low three bits pick a byte of
 * the lower or upper eight levels, the fourth bit chooses between the two. */
static __device__ __forceinline__ int iq4_levels(uint32_t q)
{
    const uint32_t sel = (q & 0x7) | ((q >> 4) & 0x70) | ((q >> 8) & 0x700) | ((q >> 12) & 0x7000);
    const uint32_t lo = __byte_perm(PACK4(-127, -104, -83, -65), PACK4(-49, -35, -22, -10), sel);
    const uint32_t hi = __byte_perm(PACK4(1, 13, 25, 38), PACK4(53, 69, 89, 113), sel);
    const uint32_t m = ((q >> 3) & 0x01010101u) * 0xffu;
    return (int)((lo & ~m) | (hi & m));
}

/* A unit's unpacked weights: bytes as words q[16] (32 or 64 values; 64-weight units use
 * all 16), integer scales / mins per 32 (or 16) weights, float factors. */
struct Wu {
    int q[16];
    int sc[4];
    int mn[2];
    float d, m;
};

template <int T>
static __device__ __forceinline__ void unit_load(const uint8_t *__restrict__ row, int u, Wu &w)
{
    if (T == LLM_DT_Q4_0 || T == LLM_DT_Q8_0 || T == LLM_DT_Q5_0) {
        const int bs = T == LLM_DT_Q4_0 ? 18 : T == LLM_DT_Q5_0 ? 22 : 34;
        const uint8_t *b = row + (size_t)u * bs;
        w.d = f16at(b);
        if (T == LLM_DT_Q8_0) {
            ld_words_b2<8>(b + 2, w.q);
        } else {
            int qs[4];
            if (T == LLM_DT_Q4_0) {
                ld_words_b2<4>(b + 2, qs);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    w.q[i] = qs[i] & 0x0f0f0f0f;
                    w.q[4 + i] = (qs[i] >> 4) & 0x0f0f0f0f;
                }
            } else {
                int h[1];
                ld_words_b2<1>(b + 2, h);
                ld_words_b2<4>(b + 6, qs);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    w.q[i] = (qs[i] & 0x0f0f0f0f) | spread4((uint32_t)h[0] >> (4 * i));
                    w.q[4 + i] =
                        ((qs[i] >> 4) & 0x0f0f0f0f) | spread4((uint32_t)h[0] >> (16 + 4 * i));
                }
            }
        }
    } else if (T == LLM_DT_Q4_1 || T == LLM_DT_Q5_1) {
        const int bs = T == LLM_DT_Q4_1 ? 20 : 24;
        const uint8_t *b = row + (size_t)u * bs;
        w.d = f16at(b);
        w.m = f16at(b + 2);
        int qs[4];
        if (T == LLM_DT_Q4_1) {
            ld_words_b4<4>(b + 4, qs);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                w.q[i] = qs[i] & 0x0f0f0f0f;
                w.q[4 + i] = (qs[i] >> 4) & 0x0f0f0f0f;
            }
        } else {
            const uint32_t h = *(const uint32_t *)(b + 4);
            ld_words_b4<4>(b + 8, qs);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                w.q[i] = (qs[i] & 0x0f0f0f0f) | spread4(h >> (4 * i));
                w.q[4 + i] = ((qs[i] >> 4) & 0x0f0f0f0f) | spread4(h >> (16 + 4 * i));
            }
        }
    } else if (T == LLM_DT_Q4_K || T == LLM_DT_Q5_K) {
        /* unit = group pair gp of super-block sb: groups 2gp (low nibbles) and 2gp+1 */
        const int bs = T == LLM_DT_Q4_K ? 144 : 176;
        const int sb = u >> 2, gp = u & 3;
        const uint8_t *b = row + (size_t)sb * bs;
        /* d, dmin and the twelve scale bytes in one 16-byte load; the 6-bit scales and
         * mins of all eight groups unpacked four at a time as bytes of a word (groups 0-3:
         * low 6 bits of bytes 0-3 and 4-7; groups 4-7: nibbles of bytes 8-11 with the top
         * 2 bits of bytes 0-3 and 4-7), the same for every lane (no divergent branch) */
        const uint4 h = *(const uint4 *)b;
        const __half2 h2 = *(const __half2 *)&h.x;
        w.d = __low2float(h2);
        w.m = __high2float(h2);
        const uint32_t sc = gp < 2 ? h.y & 0x3f3f3f3fu
                                   : (h.w & 0x0f0f0f0fu) | ((h.y >> 2) & 0x30303030u);
        const uint32_t mn = gp < 2 ? h.z & 0x3f3f3f3fu
                                   : ((h.w >> 4) & 0x0f0f0f0fu) | ((h.z >> 2) & 0x30303030u);
        const int sh = 16 * (gp & 1); /* groups 2gp and 2gp+1: bytes 2(gp&1) and 2(gp&1)+1 */
        w.sc[0] = (int)((sc >> sh) & 0xff), w.sc[1] = (int)((sc >> (sh + 8)) & 0xff);
        w.mn[0] = (int)((mn >> sh) & 0xff), w.mn[1] = (int)((mn >> (sh + 8)) & 0xff);
        int qs[8];
        ld_words_b16<8>(b + (T == LLM_DT_Q4_K ? 16 : 48) + 32 * gp, qs);
        if (T == LLM_DT_Q4_K) {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                w.q[i] = qs[i] & 0x0f0f0f0f;
                w.q[8 + i] = (qs[i] >> 4) & 0x0f0f0f0f;
            }
        } else {
            int qh[8];
            ld_words_b16<8>(b + 16, qh);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                w.q[i] = (qs[i] & 0x0f0f0f0f) | (((qh[i] >> (2 * gp)) & 0x01010101) << 4);
                w.q[8 + i] =
                    ((qs[i] >> 4) & 0x0f0f0f0f) | (((qh[i] >> (2 * gp + 1)) & 0x01010101) << 4);
            }
        }
    } else if (T == LLM_DT_Q6_K) {
        /* unit t of super-block sb: half h = t/2, the 32-byte ql run s0 = t&1, whose low
         * nibbles are group s0 and high nibbles group s0+2 of that half */
        const int sb = u >> 2, t = u & 3, h = t >> 1, s0 = t & 1;
        const uint8_t *b = row + (size_t)sb * 210;
        w.d = f16at(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * h;
        w.sc[0] = sc[2 * s0], w.sc[1] = sc[2 * s0 + 1];
        w.sc[2] = sc[2 * s0 + 4], w.sc[3] = sc[2 * s0 + 5];
        int ql[8], qh[8];
        ld_words_b2<8>(b + 64 * h + 32 * s0, ql);
        ld_words_b2<8>(b + 128 + 32 * h, qh);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int lo = (ql[i] & 0x0f0f0f0f) | (((qh[i] >> (2 * s0)) & 0x03030303) << 4);
            const int hi =
                ((ql[i] >> 4) & 0x0f0f0f0f) | (((qh[i] >> (2 * s0 + 4)) & 0x03030303) << 4);
            /* bytes 0..63 to -32..31: +0x60 never carries out of a byte, then flip bit 7 */
            w.q[i] = (int)(((uint32_t)lo + 0x60606060u) ^ 0x80808080u);
            w.q[8 + i] = (int)(((uint32_t)hi + 0x60606060u) ^ 0x80808080u);
        }
    } else if (T == LLM_DT_Q2_K || T == LLM_DT_Q3_K) {
        /* unit = 32 weights, group g = 4h + s of super-block sb: 2-bit values at bit 2s of
         * qs[32h + l]; two 16-weight halves with a scale each */
        const int sb = u >> 3, g = u & 7, h = g >> 2, sh = 2 * (g & 3);
        if (T == LLM_DT_Q2_K) {
            const uint8_t *b = row + (size_t)sb * 84;
            const uint32_t dm = *(const uint32_t *)(b + 80);
            const __half2 h2 = *(const __half2 *)&dm;
            w.d = __low2float(h2);
            w.m = __high2float(h2);
            const int s0 = b[2 * g], s1 = b[2 * g + 1];
            w.sc[0] = s0 & 0xf, w.mn[0] = s0 >> 4;
            w.sc[1] = s1 & 0xf, w.mn[1] = s1 >> 4;
            int qs[8];
            ld_words_b4<8>(b + 16 + 32 * h, qs);
#pragma unroll
            for (int i = 0; i < 8; i++)
                w.q[i] = (qs[i] >> sh) & 0x03030303;
        } else {
            const uint8_t *b = row + (size_t)sb * 110;
            w.d = f16at(b + 108);
            const uint8_t *sc = b + 96;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = 2 * g + e;
                const int lo = j < 8 ? (sc[j] & 0xf) : (sc[j - 8] >> 4);
                const int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
                w.sc[e] = (lo | (hi << 4)) - 32;
            }
            int qs[8], hm[8];
            ld_words_b2<8>(b + 32 + 32 * h, qs);
            ld_words_b2<8>(b, hm);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                /* 0..3, plus 4 where the high bit is set; then -4: +0x7c never carries */
                const uint32_t v = (uint32_t)((qs[i] >> sh) & 0x03030303) |
                                   (((uint32_t)(hm[i] >> (4 * h + (g & 3))) & 0x01010101u) << 2);
                w.q[i] = (int)((v + 0x7c7c7c7cu) ^ 0x80808080u);
            }
        }
    } else if (T == LLM_DT_IQ4_NL || T == LLM_DT_IQ4_XS) {
        int qs[4];
        if (T == LLM_DT_IQ4_NL) {
            const uint8_t *b = row + (size_t)u * 18;
            w.d = f16at(b);
            ld_words_b2<4>(b + 2, qs);
        } else {
            /* group ib of super-block sb: 6-bit scale from scales_l and scales_h */
            const int sb = u >> 3, ib = u & 7;
            const uint8_t *b = row + (size_t)sb * 136;
            const int sc_h = *(const uint16_t *)(b + 2);
            const int ls =
                ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) | (((sc_h >> (2 * ib)) & 3) << 4);
            w.d = f16at(b) * (float)(ls - 32);
            ld_words_b4<4>(b + 8 + 16 * ib, qs);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w.q[i] = iq4_levels((uint32_t)qs[i] & 0x0f0f0f0fu);
            w.q[4 + i] = iq4_levels(((uint32_t)qs[i] >> 4) & 0x0f0f0f0fu);
        }
    }
}

/* The activation words a unit meets (one token): 64-weight units 16 words, others 8.
 * Q6_K's two groups lie 64 elements apart. */
template <int T>
static __device__ __forceinline__ void unit_x(int u, const int8_t *__restrict__ xq, int x[16])
{
    if (T == LLM_DT_Q4_K || T == LLM_DT_Q5_K) {
        ld_words_b16<16>((const uint8_t *)(xq + (size_t)u * 64), x);
    } else if (T == LLM_DT_Q6_K) {
        const int sb = u >> 2, t = u & 3, h = t >> 1, s0 = t & 1;
        const size_t base = (size_t)sb * 256 + 128 * h + 32 * s0;
        ld_words_b16<8>((const uint8_t *)(xq + base), x);
        ld_words_b16<8>((const uint8_t *)(xq + base + 64), x + 8);
    } else {
        ld_words_b16<8>((const uint8_t *)(xq + (size_t)u * 32), x);
    }
}

/* The unit's weights against one token's activation words x; xd / xs the scale and the
 * integer sum of each 32-block of that token's activations (indices of the whole row). */
template <int T>
static __device__ __forceinline__ float unit_dot(const Wu &w, int u, const int x[16],
                                                 const float *__restrict__ xd,
                                                 const int *__restrict__ xs)
{
    if (T == LLM_DT_Q4_K || T == LLM_DT_Q5_K) {
        int d0 = 0, d1 = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            d0 = llm_dp4a(w.q[i], x[i], d0);
            d1 = llm_dp4a(w.q[8 + i], x[8 + i], d1);
        }
        const int b32 = 2 * u;
        const int isum = w.sc[0] * d0 + w.sc[1] * d1;
        const int msum = w.mn[0] * xs[b32] + w.mn[1] * xs[b32 + 1];
        return xd[b32] * (w.d * (float)isum - w.m * (float)msum);
    } else if (T == LLM_DT_Q6_K) {
        int dd[4] = {0, 0, 0, 0};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            dd[0] = llm_dp4a(w.q[i], x[i], dd[0]);
            dd[1] = llm_dp4a(w.q[4 + i], x[4 + i], dd[1]);
            dd[2] = llm_dp4a(w.q[8 + i], x[8 + i], dd[2]);
            dd[3] = llm_dp4a(w.q[12 + i], x[12 + i], dd[3]);
        }
        const int isum = w.sc[0] * dd[0] + w.sc[1] * dd[1] + w.sc[2] * dd[2] + w.sc[3] * dd[3];
        return xd[(u >> 2) * 8] * w.d * (float)isum;
    } else if (T == LLM_DT_Q2_K || T == LLM_DT_Q3_K) {
        int d0 = 0, d1 = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            d0 = llm_dp4a(w.q[i], x[i], d0);
            d1 = llm_dp4a(w.q[4 + i], x[4 + i], d1);
        }
        const int isum = w.sc[0] * d0 + w.sc[1] * d1;
        if (T == LLM_DT_Q3_K)
            return xd[u] * w.d * (float)isum;
        /* the mins meet the sums of each 16 activations */
        int s0 = 0, s1 = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s0 = llm_dp4a(x[i], 0x01010101, s0);
            s1 = llm_dp4a(x[4 + i], 0x01010101, s1);
        }
        const int msum = w.mn[0] * s0 + w.mn[1] * s1;
        return xd[u] * (w.d * (float)isum - w.m * (float)msum);
    } else {
        int d = 0;
#pragma unroll
        for (int i = 0; i < 8; i++)
            d = llm_dp4a(w.q[i], x[i], d);
        if (T == LLM_DT_Q4_0)
            return w.d * xd[u] * (float)(d - 8 * xs[u]);
        if (T == LLM_DT_Q5_0)
            return w.d * xd[u] * (float)(d - 16 * xs[u]);
        if (T == LLM_DT_Q4_1 || T == LLM_DT_Q5_1)
            return w.d * xd[u] * (float)d + w.m * xd[u] * (float)xs[u];
        return w.d * xd[u] * (float)d; /* Q8_0, IQ4_NL, IQ4_XS (scale in w.d) */
    }
}

/* y[j][r] = row r · token j, for the NT tokens of tile blockIdx.y. The block's warps form
 * groups of KS warps; a group takes R rows (activations loaded once for them), its warps
 * every KS-th run of 32 units, a lane one unit at a time; the KS partial sums of a row are
 * added in warp order, so a token's result never depends on NT. */
/* One token: at least five blocks per SM. The early weight loads (below) keep every
 * row's loaded words live across the wait, which took the four-row Q4_K kernel from 72 to
 * 122 registers (four blocks); bounded, the one-token kernels in use have 96 and spill
 * nothing. Measured on an H200 (docs/perf/cuda.md): 8B Q4_K_M tg128 +3%, Q8_0 +2-4%; six
 * blocks (80 registers) spill and lose 5%. More tokens would spill under the bound. */
template <int T, int NT, int R, int KS>
static __global__ void __launch_bounds__(MQ_WARPS *LLM_WARP_SIZE, NT == 1 ? 5 : 1)
k_mmvq(const mq_set S, size_t row_bytes, int64_t k, const int8_t *__restrict__ xq,
       const float *__restrict__ xd, const int *__restrict__ xs, int n, int early)
{
    /* Started early (PDL), a block first issues the loads of its first units' weights,
     * which no kernel writes, and only then waits for the kernel before it, whose output
     * (the activations) it reads next: the blocks resident during that kernel's last
     * microseconds have their weights on the way meanwhile. */
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
    const int64_t r0 = ((int64_t)bx * (MQ_WARPS / KS) + warp / KS) * R;
    const bool active = r0 < rows; /* no early return: the block meets at a barrier below */
    const int64_t nb = k / 32;
    xq += (int64_t)blockIdx.y * NT * k;
    xd += (int64_t)blockIdx.y * NT * nb;
    xs += (int64_t)blockIdx.y * NT * nb;
    y += (int64_t)blockIdx.y * NT * ldy;
    n = n - (int)blockIdx.y * NT < NT ? n - (int)blockIdx.y * NT : NT;
    /* the last group may have fewer rows: it repeats its last row and does not store it */
    const uint8_t *row[R];
#pragma unroll
    for (int i = 0; i < R; i++)
        row[i] = w + (r0 + i < rows ? r0 + i : rows - 1) * row_bytes;
    const int nu = active ? (int)(k / unit_of<T>::n) : 0;
    float acc[R][NT];
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
            acc[i][j] = 0.0f;
    const int step = LLM_WARP_SIZE * KS;
    for (int u = slice * LLM_WARP_SIZE + lane; u < nu; u += step) {
        /* every load of the unit's R rows is issued before the first use */
        Wu wu[R];
#pragma unroll
        for (int i = 0; i < R; i++)
            unit_load<T>(row[i], u, wu[i]);
        pdl_wait_once(waited);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            if (j < n) {
                int x[16];
                unit_x<T>(u, xq + j * k, x);
#pragma unroll
                for (int i = 0; i < R; i++)
                    acc[i][j] += unit_dot<T>(wu[i], u, x, xd + j * nb, xs + j * nb);
            }
        }
    }
    pdl_wait_once(waited); /* a thread without a unit waits here */
    rows_store<MQ_WARPS, R, NT, KS>(acc, lane, warp, r0, rows, y, ldy, n);
}

/* ---- activation quantization ------------------------------------------------------------
 * One block of 256 threads per (256 elements, activation row); k is a multiple of 32 (of
 * 256 for ACT_Q8_K). Q8_0: per 32, d = amax/127, q = roundf(x / d), the stored scale d
 * rounded to f16. Q8_K: per 256, the first element of largest magnitude maps to -127,
 * q = min(rint(x * -127/max), 127), scale 1/iscale. Writes q [n][k], d and s [n][k/32].
 * GLU: the values are first computed as glu(gate, up) and written to gy (= x). */
template <bool GLU>
static __global__ void __launch_bounds__(256)
k_act_q8(const float *x, int64_t ldx, int64_t k, int mode, int8_t *__restrict__ q,
         float *__restrict__ d, int *__restrict__ s, float *gy,
         const float *__restrict__ gate, const float *__restrict__ up, int act)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    const int64_t j = blockIdx.y, i = (int64_t)blockIdx.x * 256 + threadIdx.x;
    x += j * ldx;
    const bool in = i < k;
    float v = 0.0f;
    if (GLU) {
        /* the deferred glu (ldx == k): its value, written where the glu would write it */
        if (in) {
            v = glu_value(gate[j * k + i], up[j * k + i], act);
            gy[j * k + i] = v;
        }
    } else if (in) {
        v = x[i];
    }
    int qi = 0;
    float dv = 0.0f;
    if (mode == ACT_Q8_0) {
        const float amax = g32_max(fabsf(v));
        const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        qi = (int)roundf(v * id);
        dv = __half2float(__float2half_rn(dd));
    } else {
        const float mx = q8k_block_max_reg(v, in);
        if (mx != 0.0f) {
            const float iscale = -127.0f / mx;
            qi = (int)fminf(rintf(iscale * v), 127.0f);
            dv = 1.0f / iscale;
        }
    }
    const int sum = g32_sum(qi);
    if (in) {
        q[j * k + i] = (int8_t)qi;
        if (i % 32 == 0) {
            d[j * (k / 32) + i / 32] = dv;
            s[j * (k / 32) + i / 32] = sum;
        }
    }
}

/* ---- entry ------------------------------------------------------------------------------ */

int cu_mmvq_supported(uint32_t t)
{
    switch (t) {
    case LLM_DT_Q4_0: case LLM_DT_Q4_1: case LLM_DT_Q5_0: case LLM_DT_Q5_1: case LLM_DT_Q8_0:
    case LLM_DT_Q4_K: case LLM_DT_Q5_K: case LLM_DT_Q6_K:
    case LLM_DT_Q2_K: case LLM_DT_Q3_K: case LLM_DT_IQ4_NL: case LLM_DT_IQ4_XS:
        return 1;
    default:
        return 0;
    }
}

template <int T, int NT, int R, int KS>
static void launch(llm_backend *be, const mq_pend &p)
{
    mq_set S;
    const unsigned blocks = mq_set_of(p, (MQ_WARPS / KS) * R, &S);
    const dim3 grid(blocks, cdiv(p.n, MQ_MAX_TOKENS));
    cu_launch(be, k_mmvq<T, NT, R, KS>, grid, MQ_WARPS * LLM_WARP_SIZE, 0, S, p.rb, p.k,
              (const int8_t *)p.q, (const float *)p.d, (const int *)p.s, (int)p.n, be->early);
}

/* The work split, by row length only (never by token count: a token's sums must not
 * depend on its batch): rows of at least 128 units take four warps each, of 64 two, else
 * one. Measured on an H200 against one or two rows per warp (docs/perf/cuda.md): decode of
 * an 8B model 214 -> 221 tok/s in Q4_K_M, 213 -> 227 in Q8_0; the small matrices gain most. */
template <int T, int NT, int R>
static void launch_r(llm_backend *be, const mq_pend &p)
{
    const int64_t nu = p.k / unit_of<T>::n;
    if (nu >= 4 * LLM_WARP_SIZE)
        launch<T, NT, R, 4>(be, p);
    else if (nu >= 2 * LLM_WARP_SIZE)
        launch<T, NT, R, 2>(be, p);
    else
        launch<T, NT, R, 1>(be, p);
}

/* Rows per warp group (R), by type and shape only: the activations a group loads serve R
 * rows, and a row's sums are the same whatever R. Measured on an H200 (matvec_bench, one
 * token, 8B shapes; docs/perf/cuda.md): Q4_K gate/up 16.2 -> 14.5 us with 4 rows, q/o
 * 6.5 -> 5.4; Q6_K output 159.5 -> 133.7 with 2; Q8_0 q/o 6.7 -> 5.9 with 4; matrices of
 * fewer than 2048 rows lose a little (fewer blocks) and keep one. */
template <int T, int NT>
static void launch_v(llm_backend *be, const mq_pend &p)
{
    int64_t rows = 0; /* of the launch's largest matrix */
    for (int m = 0; m < p.nm; m++)
        rows = p.rows[m] > rows ? p.rows[m] : rows;
    if (rows >= 2048) {
        if (T == LLM_DT_Q4_K || (T == LLM_DT_Q8_0 && p.k <= 4096))
            return launch_r<T, NT, 4>(be, p);
        if (T == LLM_DT_Q6_K)
            return launch_r<T, NT, 2>(be, p);
    }
    launch_r<T, NT, 1>(be, p);
}

template <int T>
static void mmvq(llm_backend *be, const mq_pend &p)
{
    if (p.n == 1)
        launch_v<T, 1>(be, p);
    else if (p.n == 2)
        launch_v<T, 2>(be, p);
    else if (p.n <= 4)
        launch_v<T, 4>(be, p);
    else
        launch_v<T, 8>(be, p);
}

void cu_mmvq_launch(llm_backend *be, const mq_pend &p)
{
    switch (p.t) {
    case LLM_DT_Q4_0: mmvq<LLM_DT_Q4_0>(be, p); break;
    case LLM_DT_Q4_1: mmvq<LLM_DT_Q4_1>(be, p); break;
    case LLM_DT_Q5_0: mmvq<LLM_DT_Q5_0>(be, p); break;
    case LLM_DT_Q5_1: mmvq<LLM_DT_Q5_1>(be, p); break;
    case LLM_DT_Q8_0: mmvq<LLM_DT_Q8_0>(be, p); break;
    case LLM_DT_Q4_K: mmvq<LLM_DT_Q4_K>(be, p); break;
    case LLM_DT_Q5_K: mmvq<LLM_DT_Q5_K>(be, p); break;
    case LLM_DT_Q6_K: mmvq<LLM_DT_Q6_K>(be, p); break;
    case LLM_DT_Q2_K: mmvq<LLM_DT_Q2_K>(be, p); break;
    case LLM_DT_Q3_K: mmvq<LLM_DT_Q3_K>(be, p); break;
    case LLM_DT_IQ4_NL: mmvq<LLM_DT_IQ4_NL>(be, p); break;
    case LLM_DT_IQ4_XS: mmvq<LLM_DT_IQ4_XS>(be, p); break;
    case LLM_DT_F16: case LLM_DT_BF16: cu_mv16_launch(be, p); break;
    default: break;
    }
    CU_LAUNCHED(be, "matmul");
}

/* whether byte ranges [a, a + na) and [b, b + nb) meet */
static bool meet(const void *a, size_t na, const void *b, size_t nb)
{
    const char *x = (const char *)a, *y = (const char *)b;
    return x < y + nb && y < x + na;
}

/* y = x·Wᵀ for n tokens through the kernels above (tiles of MQ_MAX_TOKENS). Returns 0 when
 * the weight's type has no kernel here (nothing done), 1 when launched or failed with an
 * error recorded. */
int cu_mmvq(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w, const uint8_t *wd,
            const float *x, int64_t ldx, int64_t n)
{
    const uint32_t t = w->dtype;
    if (!cu_mmvq_supported(t))
        return 0;
    const int64_t k = w->ne[0], rows = w->ne[1];
    const int mode = t == LLM_DT_Q2_K || t == LLM_DT_Q3_K || t == LLM_DT_Q4_K ||
                             t == LLM_DT_Q5_K || t == LLM_DT_Q6_K || t == LLM_DT_IQ4_XS
                         ? ACT_Q8_K
                         : ACT_Q8_0;
    if (k % (mode == ACT_Q8_K ? 256 : 32) != 0) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: matmul of rows of %lld elements with '%s'",
                  (long long)k, w->name);
        return 1;
    }
    if ((int64_t)cdiv(n, MQ_MAX_TOKENS) > 65535) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: matmul of %lld tokens", (long long)n);
        return 1;
    }
    /* q [n][k] int8, then d and s [n][k/32]; every part 16-byte aligned */
    const size_t qb = ((size_t)(n * k) + 15) & ~(size_t)15;
    const size_t db = ((size_t)(n * (k / 32)) * 4 + 15) & ~(size_t)15;
    char *buf = (char *)cu_buffer(be, &be->act, &be->act_cap, qb + 2 * db);
    if (!buf)
        return 1;
    int8_t *q = (int8_t *)buf;
    float *d = (float *)(buf + qb);
    int *s = (int *)(buf + qb + db);
    const bool same = act_cached(be, x, ldx, k, n, mode);
    if (!same) {
        const auto p = be->pend;
        if (p.kind == PEND_GLU && p.y == x && ldx == k && p.n == n * k) {
            /* the deferred glu, computed here and written as it would have written it */
            be->pend.kind = PEND_NONE;
            cu_launch(be, k_act_q8<true>, dim3(cdiv(k, 256), (unsigned)n), 256, 0, x, ldx, k,
                      mode, q, d, s, p.y, p.a, p.b, p.act);
        } else if (p.kind == PEND_NORM && (be->fuse & FUSE_NORM_Q8) && p.norm.y == x &&
                   ldx == k && p.norm.dim == k && p.norm.rows == n) {
            /* the deferred norm (and the add it took in), quantizing as it writes */
            be->pend.kind = PEND_NONE;
            cu_norm_q8(be, p.norm.y, p.norm.x, p.norm.a, p.norm.b, p.norm.w, n, k, p.norm.eps,
                       mode, q, d, s);
        } else {
            act_stale(be); /* launches a deferred op that this one cannot take in */
            cu_launch(be, k_act_q8<false>, dim3(cdiv(k, 256), (unsigned)n), 256, 0, x, ldx, k,
                      mode, q, d, s, NULL, NULL, NULL, 0);
        }
        if (!CU_LAUNCHED(be, "activation quantization")) {
            act_stale(be);
            return 1;
        }
        act_keep(be, x, ldx, k, n, mode);
    }
    act_written(be, y, ldy, rows, x, ldx, k, n);
    cu_mq_queue(be, t, k, n, w->row_bytes, q, d, s, wd, y, ldy, rows);
    return 1;
}

void cu_mq_queue(llm_backend *be, uint32_t t, int64_t k, int64_t n, size_t rb, const void *q,
                 const void *d, const void *s, const uint8_t *wd, float *y, int64_t ldy,
                 int64_t rows)
{
    /* held back, with the products of the same activations before it when they match: one
     * launch for all (the bits are the same: a row's sums do not depend on its launch) */
    mq_pend &p = be->pend.mq;
    const size_t ybytes = (size_t)(((n - 1) * ldy + rows) * 4);
    if (be->pend.kind != PEND_NONE && be->pend.kind != PEND_MMVQ)
        cu_flush(be); /* a held-back op of another kind (the activations stay valid) */
    if (be->pend.kind == PEND_MMVQ) {
        bool join = p.t == t && p.k == k && p.n == n && p.q == q && p.nm < MQ_MATS;
        for (int m = 0; m < p.nm && join; m++)
            join = !meet(p.y[m], (size_t)(((n - 1) * p.ldy[m] + p.rows[m]) * 4), y, ybytes);
        if (join) {
            p.w[p.nm] = wd, p.y[p.nm] = y, p.ldy[p.nm] = ldy, p.rows[p.nm] = rows, p.nm++;
            return;
        }
        cu_flush(be); /* the activations stay valid */
    }
    mq_pend np = {};
    np.t = t, np.k = k, np.n = n, np.rb = rb, np.q = q, np.d = d, np.s = s;
    np.nm = 1, np.w[0] = wd, np.y[0] = y, np.ldy[0] = ldy, np.rows[0] = rows;
    if (!(be->fuse & FUSE_MMVQ)) {
        cu_mmvq_launch(be, np);
        return;
    }
    be->pend.kind = PEND_MMVQ;
    p = np;
}
