/* quants_neon.c - NEON kernels (64-bit ARM) for the GGUF block formats: vec_dot of every
 * type, tiles (gemm) for the 32-blocks and the K-quants, the activation quantisers and the
 * half-precision row helpers.
 *
 * Built twice: as plain Armv8-A NEON (this file, llm__quant_neon_fill), and with the
 * Armv8.2 dot-product instructions (quants_neon_dotprod.c includes this file with
 * LLM_NEON_DOTPROD set and is compiled with +dotprod; llm__quant_neon_dotprod_fill).
 * quants.c installs the dotprod build only after the kernel reports the feature
 * (HWCAP_ASIMDDP), and the plain one otherwise.
 *
 * As in quants_avx2.c, every kernel forms the same integer sums per block as the
 * reference in quants.c, so results differ from it only in the float rounding of the
 * final combination (the i-quants, as in quants_iq_avx2.c, apply the float scales in the
 * reference's order and equal it bit for bit); the activation quantisers give
 * bit-identical blocks and the half-precision row conversions bit-identical values.
 *
 * The integer core is one operation, dot4: four int32 lanes accumulating the products of
 * two vectors of 16 signed bytes, lane i those of bytes 4i..4i+3. With dotprod it is SDOT;
 * without, two widening multiplies into int16 (no product of these formats exceeds
 * 128 * 128 in magnitude) and pairwise adds that put the same four products into each
 * lane. So every lane holds the same exact integer in both builds, and the two give the
 * same bits (test_quants compares them). */
#include "quants.h"
#include "quants_iq.h"

#if defined(__aarch64__) && defined(__ARM_NEON) && \
    (!defined(LLM_NEON_DOTPROD) || defined(__ARM_FEATURE_DOTPROD))

#include <arm_neon.h>
#include <stddef.h>
#include <string.h>

#ifdef LLM_NEON_DOTPROD
#define NEON_FILL llm__quant_neon_dotprod_fill

static inline int32x4_t dot4(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    return vdotq_s32(acc, a, b);
}
#else
#define NEON_FILL llm__quant_neon_fill

static inline int32x4_t dot4(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(a, b));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
}
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ---- helpers -------------------------------------------------------------------- */

/* Half <-> single with the FCVT instruction (base Armv8-A): round to nearest even, NaNs
 * quietened with their payload kept, exactly as llm__f16_to_f32/llm__f32_to_f16. */
static inline float h2f(llm_f16 h)
{
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

static inline llm_f16 f2h(float f)
{
    __fp16 v = (__fp16)f;
    llm_f16 h;
    memcpy(&h, &v, sizeof h);
    return h;
}

static inline int8x16_t s8(uint8x16_t v)
{
    return vreinterpretq_s8_u8(v);
}

/* dot of 32 signed bytes (two vectors) with 32 bytes at y */
static inline int32x4_t dot32(int8x16_t a0, int8x16_t a1, const int8_t *y)
{
    return dot4(dot4(vdupq_n_s32(0), a0, vld1q_s8(y)), a1, vld1q_s8(y + 16));
}

/* dot of 16 signed bytes with 16 bytes at y */
static inline int32x4_t dot16(int8x16_t a, const int8_t *y)
{
    return dot4(vdupq_n_s32(0), a, vld1q_s8(y));
}

/* The 32-bit mask at p as 32 bytes, 0xff where bit i is set: bits 0-15 in lo, 16-31 in hi. */
static inline void bits32(const uint8_t *p, uint8x16_t *lo, uint8x16_t *hi)
{
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t m = vld1q_u8(bit);
    *lo = vtstq_u8(vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1])), m);
    *hi = vtstq_u8(vcombine_u8(vdup_n_u8(p[2]), vdup_n_u8(p[3])), m);
}

/* ---- vec_dot and gemm: the 32-blocks and the K-quants --------------------------- */

/* For prompt processing the same weight row meets many activation rows. The tiles take
 * one weight row and RN <= 4 activation rows: each weight block is unpacked once for all
 * of them. vec_dot is the tile with RN = 1, so every pair's result in a gemm is bit for
 * bit that of vec_dot (each token goes through the same operations in the same order; the
 * file is compiled without floating-point contraction), and a token's logits do not depend
 * on how the tokens were batched. RN is a constant at every call site (the tiles are
 * always inlined), so the loops over the tokens unroll. */
#define TILE_MAX 4

/* Every weight row against the activation rows in groups of TILE_MAX (the last group
 * smaller). TILE(rn, s, x, y) must expand to a call with a constant rn. */
#define GEMM_DRIVER(TILE)                                                                   \
    do {                                                                                    \
        for (int64_t r = 0; r < nr; r++) {                                                  \
            const char *xr = (const char *)vx + r * bx;                                     \
            int64_t c = 0;                                                                  \
            for (; c + TILE_MAX <= nc; c += TILE_MAX)                                       \
                TILE(TILE_MAX, s + c * bs + r, xr, (const char *)vy + c * by);              \
            switch (nc - c) {                                                               \
            case 3: TILE(3, s + c * bs + r, xr, (const char *)vy + c * by); break;          \
            case 2: TILE(2, s + c * bs + r, xr, (const char *)vy + c * by); break;          \
            case 1: TILE(1, s + c * bs + r, xr, (const char *)vy + c * by); break;          \
            default: break;                                                                 \
            }                                                                               \
        }                                                                                   \
    } while (0)

/* The 32-blocks. Element j of a block pairs the low nibble of qs[j] (j < 16) or the high
 * nibble of qs[j - 16] with y's byte j. Which format, as a constant the inlined tile
 * specialises on. */
enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

/* the block's 32 values as signed bytes: elements 0-15 in w[0], 16-31 in w[1] */
static ALWAYS_INLINE void blk32_values(int kind, const void *b, int8x16_t w[2])
{
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    if (kind == K_Q8_0) {
        const int8_t *q = ((const block_q8_0 *)b)->qs;
        w[0] = vld1q_s8(q);
        w[1] = vld1q_s8(q + 16);
        return;
    }
    const uint8_t *qs = kind == K_Q4_0   ? ((const block_q4_0 *)b)->qs
                        : kind == K_Q4_1 ? ((const block_q4_1 *)b)->qs
                        : kind == K_Q5_0 ? ((const block_q5_0 *)b)->qs
                                         : ((const block_q5_1 *)b)->qs;
    const uint8x16_t v = vld1q_u8(qs);
    uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);
    if (kind == K_Q4_0) {
        w[0] = vsubq_s8(s8(lo), vdupq_n_s8(8));
        w[1] = vsubq_s8(s8(hi), vdupq_n_s8(8));
        return;
    }
    if (kind == K_Q5_0 || kind == K_Q5_1) {
        uint8x16_t h0, h1;
        bits32(kind == K_Q5_0 ? ((const block_q5_0 *)b)->qh : ((const block_q5_1 *)b)->qh,
               &h0, &h1);
        if (kind == K_Q5_0) {
            /* (nibble | hbit << 4) - 16 is, as a signed byte, the nibble with 0xf0 or-ed in
             * where the high bit is clear */
            const uint8x16_t f0 = vdupq_n_u8(0xf0);
            lo = vorrq_u8(lo, vbicq_u8(f0, h0));
            hi = vorrq_u8(hi, vbicq_u8(f0, h1));
        } else {
            const uint8x16_t b4 = vdupq_n_u8(0x10);
            lo = vorrq_u8(lo, vandq_u8(h0, b4));
            hi = vorrq_u8(hi, vandq_u8(h1, b4));
        }
    }
    w[0] = s8(lo);
    w[1] = s8(hi);
}

static ALWAYS_INLINE size_t blk32_size(int kind)
{
    switch (kind) {
    case K_Q4_0: return sizeof(block_q4_0);
    case K_Q4_1: return sizeof(block_q4_1);
    case K_Q5_0: return sizeof(block_q5_0);
    case K_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* The d of a block (all these formats start with it) and, for Q4_1/Q5_1, m after it (s
 * of Q8_1). */
static ALWAYS_INLINE float blk32_f(const void *b, int i)
{
    llm_f16 h;
    memcpy(&h, (const char *)b + i * sizeof(llm_f16), sizeof h);
    return h2f(h);
}

/* Two blocks per step into two accumulators per token, to keep two dependency chains
 * going. Q4_1/Q5_1: sum((d*q + m) * y) = d*dy*sum(q*qy) + m*s, s = dy*sum(qy) from Q8_1. */
static ALWAYS_INLINE void tile32(int kind, int RN, int64_t nb, float *s, size_t bs,
                                 const char *x, const char *y, size_t by)
{
    const int with_min = kind == K_Q4_1 || kind == K_Q5_1;
    const size_t bx = blk32_size(kind);
    const size_t ysz = with_min ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t yqs = with_min ? offsetof(block_q8_1, qs) : offsetof(block_q8_0, qs);
    float32x4_t acc0[TILE_MAX], acc1[TILE_MAX];
    float summs[TILE_MAX];
    for (int c = 0; c < RN; c++) {
        acc0[c] = acc1[c] = vdupq_n_f32(0.0f);
        summs[c] = 0.0f;
    }
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const char *x0 = x + (size_t)i * bx, *x1 = x0 + bx;
        int8x16_t w0[2], w1[2];
        blk32_values(kind, x0, w0);
        blk32_values(kind, x1, w1);
        const float d0 = blk32_f(x0, 0), d1 = blk32_f(x1, 0);
        for (int c = 0; c < RN; c++) {
            const char *y0 = y + c * by + (size_t)i * ysz, *y1 = y0 + ysz;
            const int32x4_t p0 = dot32(w0[0], w0[1], (const int8_t *)(y0 + yqs));
            const int32x4_t p1 = dot32(w1[0], w1[1], (const int8_t *)(y1 + yqs));
            acc0[c] = vfmaq_n_f32(acc0[c], vcvtq_f32_s32(p0), d0 * blk32_f(y0, 0));
            acc1[c] = vfmaq_n_f32(acc1[c], vcvtq_f32_s32(p1), d1 * blk32_f(y1, 0));
            if (with_min)
                summs[c] += blk32_f(x0, 1) * blk32_f(y0, 1) + blk32_f(x1, 1) * blk32_f(y1, 1);
        }
    }
    if (i < nb) {
        const char *x0 = x + (size_t)i * bx;
        int8x16_t w0[2];
        blk32_values(kind, x0, w0);
        const float d0 = blk32_f(x0, 0);
        for (int c = 0; c < RN; c++) {
            const char *y0 = y + c * by + (size_t)i * ysz;
            const int32x4_t p0 = dot32(w0[0], w0[1], (const int8_t *)(y0 + yqs));
            acc0[c] = vfmaq_n_f32(acc0[c], vcvtq_f32_s32(p0), d0 * blk32_f(y0, 0));
            if (with_min)
                summs[c] += blk32_f(x0, 1) * blk32_f(y0, 1);
        }
    }
    for (int c = 0; c < RN; c++)
        s[c * bs] = vaddvq_f32(vaddq_f32(acc0[c], acc1[c])) + summs[c];
}

#define DOT32(name, kind)                                                                   \
    static void name(int64_t n, float *s, const void *vx, const void *vy)                  \
    {                                                                                       \
        tile32(kind, 1, n / 32, s, 1, vx, vy, 0);                                           \
    }                                                                                       \
    static void gemm_##name(int64_t n, float *s, size_t bs, const void *vx, size_t bx,     \
                            const void *vy, size_t by, int64_t nr, int64_t nc)             \
    {                                                                                       \
        const int64_t nb = n / 32;                                                          \
        GEMM_DRIVER(TILE_##name);                                                           \
    }
#define TILE_q4_0_q8_0(rn, s_, x_, y_) tile32(K_Q4_0, rn, nb, s_, bs, x_, y_, by)
#define TILE_q4_1_q8_1(rn, s_, x_, y_) tile32(K_Q4_1, rn, nb, s_, bs, x_, y_, by)
#define TILE_q5_0_q8_0(rn, s_, x_, y_) tile32(K_Q5_0, rn, nb, s_, bs, x_, y_, by)
#define TILE_q5_1_q8_1(rn, s_, x_, y_) tile32(K_Q5_1, rn, nb, s_, bs, x_, y_, by)
#define TILE_q8_0_q8_0(rn, s_, x_, y_) tile32(K_Q8_0, rn, nb, s_, bs, x_, y_, by)

DOT32(q4_0_q8_0, K_Q4_0)
DOT32(q4_1_q8_1, K_Q4_1)
DOT32(q5_0_q8_0, K_Q5_0)
DOT32(q5_1_q8_1, K_Q5_1)
DOT32(q8_0_q8_0, K_Q8_0)

/* The K-quants, one scheme for all: a super-block unpacks into 16 groups of 16 signed
 * values with an integer scale each, so that the integer sum is sum(scale * dot16), plus
 * per group a factor m that the Q8_K bsums are dotted with for the offset or min term. */
enum { K_Q2_K, K_Q3_K, K_Q4_K, K_Q5_K, K_Q6_K };

typedef struct kblock {
    int8x16_t w[16]; /* group g = elements 16g .. 16g + 15 */
    int32_t sc[16];
    int16x8_t m[2];  /* Q2_K: the 4-bit mins; Q3_K: the scales (offset 4); Q4_K/Q5_K: the
                      * 6-bit mins (each for two groups); Q6_K: unused */
    float d, dmin;
} kblock;

/* sum(a[g] * b[g]) over 16 int16 pairs (a in 0..63 or -32..31, b a Q8_K bsum: no overflow) */
static inline int dot16x16(const int16x8_t a[2], const int16_t *b)
{
    const int16x8_t b0 = vld1q_s16(b), b1 = vld1q_s16(b + 8);
    int32x4_t t = vmull_s16(vget_low_s16(a[0]), vget_low_s16(b0));
    t = vmlal_high_s16(t, a[0], b0);
    t = vmlal_s16(t, vget_low_s16(a[1]), vget_low_s16(b1));
    t = vmlal_high_s16(t, a[1], b1);
    return vaddvq_s32(t);
}

/* Q2_K: value 0..3 (element 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]) times a 4-bit
 * scale per group, minus dmin * min * bsum. */
static ALWAYS_INLINE void unpack_q2_K(const block_q2_K *x, kblock *b)
{
    const uint8x16_t m3 = vdupq_n_u8(3);
    const uint8x16_t sm = vld1q_u8(x->scales);
    const uint8x16_t mins = vshrq_n_u8(sm, 4);
    b->m[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
    b->m[1] = vreinterpretq_s16_u16(vmovl_high_u8(mins));
    for (int g = 0; g < 16; g++)
        b->sc[g] = x->scales[g] & 0xf;
    for (int h = 0; h < 2; h++) {
        uint8x16_t b0 = vld1q_u8(x->qs + 32 * h), b1 = vld1q_u8(x->qs + 32 * h + 16);
        for (int k = 0; k < 4; k++) {
            b->w[8 * h + 2 * k] = s8(vandq_u8(b0, m3));
            b->w[8 * h + 2 * k + 1] = s8(vandq_u8(b1, m3));
            b0 = vshrq_n_u8(b0, 2);
            b1 = vshrq_n_u8(b1, 2);
        }
    }
    b->d = h2f(x->d);
    b->dmin = h2f(x->dmin);
}

/* Q3_K: v = low2 | hbit << 2 in 0..7 and the weight is v - 4, so the dot is
 * sum(sc * v * q8) - 4 * sum(sc * bsum). The hmask bit of element 128h + 32k + l is bit
 * 4h + k of hmask[l]. */
static ALWAYS_INLINE void unpack_q3_K(const block_q3_K *x, kblock *b)
{
    const uint8x16_t m3 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);
    uint32_t w[3], u[4];
    memcpy(w, x->scales, 12);
    u[0] = (w[0] & 0x0f0f0f0f) | ((w[2] & 0x03030303) << 4);
    u[1] = (w[1] & 0x0f0f0f0f) | (((w[2] >> 2) & 0x03030303) << 4);
    u[2] = ((w[0] >> 4) & 0x0f0f0f0f) | (((w[2] >> 4) & 0x03030303) << 4);
    u[3] = ((w[1] >> 4) & 0x0f0f0f0f) | (((w[2] >> 6) & 0x03030303) << 4);
    const int8x16_t scv = vsubq_s8(s8(vld1q_u8((const uint8_t *)u)), vdupq_n_s8(32));
    int8_t sc[16];
    vst1q_s8(sc, scv);
    for (int g = 0; g < 16; g++)
        b->sc[g] = sc[g];
    b->m[0] = vmovl_s8(vget_low_s8(scv));
    b->m[1] = vmovl_high_s8(scv);
    uint8x16_t hb0 = vld1q_u8(x->hmask), hb1 = vld1q_u8(x->hmask + 16);
    for (int h = 0; h < 2; h++) {
        uint8x16_t b0 = vld1q_u8(x->qs + 32 * h), b1 = vld1q_u8(x->qs + 32 * h + 16);
        for (int k = 0; k < 4; k++) {
            b->w[8 * h + 2 * k] =
                s8(vorrq_u8(vandq_u8(b0, m3), vshlq_n_u8(vandq_u8(hb0, m1), 2)));
            b->w[8 * h + 2 * k + 1] =
                s8(vorrq_u8(vandq_u8(b1, m3), vshlq_n_u8(vandq_u8(hb1, m1), 2)));
            b0 = vshrq_n_u8(b0, 2);
            b1 = vshrq_n_u8(b1, 2);
            hb0 = vshrq_n_u8(hb0, 1);
            hb1 = vshrq_n_u8(hb1, 1);
        }
    }
    b->d = h2f(x->d);
}

/* Q4_K/Q5_K: element 64j + 32u + l is the low (u = 0) or high (u = 1) nibble of
 * qs[32j + l]; Q5_K adds 16 when bit 2j + u of qh[l] is set. The 8 six-bit scales and 8
 * mins (groups of 32) are unpacked four at a time with word masks. */
static ALWAYS_INLINE void unpack_q4_K(int is_q5, const void *vx, kblock *b)
{
    const block_q4_K *x4 = vx;
    const block_q5_K *x5 = vx;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m1 = vdupq_n_u8(1), m2 = vdupq_n_u8(2);
    uint32_t w[3], u[4];
    memcpy(w, is_q5 ? x5->scales : x4->scales, 12);
    u[0] = w[0] & 0x3f3f3f3f;
    u[1] = (w[2] & 0x0f0f0f0f) | ((w[0] >> 2) & 0x30303030);
    u[2] = w[1] & 0x3f3f3f3f;
    u[3] = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 2) & 0x30303030);
    uint8_t sm[16]; /* scales 0-7, mins 0-7 */
    memcpy(sm, u, 16);
    for (int g = 0; g < 16; g++)
        b->sc[g] = sm[g / 2];
    /* each min twice: group 2j and 2j + 1 of 16 share the min of group j of 32 */
    const uint8x8_t mins = vld1_u8(sm + 8);
    b->m[0] = vreinterpretq_s16_u16(vmovl_u8(vzip1_u8(mins, mins)));
    b->m[1] = vreinterpretq_s16_u16(vmovl_u8(vzip2_u8(mins, mins)));
    const uint8_t *q = is_q5 ? x5->qs : x4->qs;
    uint8x16_t hb0 = vdupq_n_u8(0), hb1 = vdupq_n_u8(0);
    if (is_q5) {
        hb0 = vld1q_u8(x5->qh);
        hb1 = vld1q_u8(x5->qh + 16);
    }
    for (int j = 0; j < 4; j++, q += 32) {
        const uint8x16_t b0 = vld1q_u8(q), b1 = vld1q_u8(q + 16);
        uint8x16_t lo0 = vandq_u8(b0, m4), lo1 = vandq_u8(b1, m4);
        uint8x16_t hi0 = vshrq_n_u8(b0, 4), hi1 = vshrq_n_u8(b1, 4);
        if (is_q5) {
            lo0 = vorrq_u8(lo0, vshlq_n_u8(vandq_u8(hb0, m1), 4));
            lo1 = vorrq_u8(lo1, vshlq_n_u8(vandq_u8(hb1, m1), 4));
            hi0 = vorrq_u8(hi0, vshlq_n_u8(vandq_u8(hb0, m2), 3));
            hi1 = vorrq_u8(hi1, vshlq_n_u8(vandq_u8(hb1, m2), 3));
            hb0 = vshrq_n_u8(hb0, 2);
            hb1 = vshrq_n_u8(hb1, 2);
        }
        b->w[4 * j] = s8(lo0);
        b->w[4 * j + 1] = s8(lo1);
        b->w[4 * j + 2] = s8(hi0);
        b->w[4 * j + 3] = s8(hi1);
    }
    b->d = h2f(is_q5 ? x5->d : x4->d);
    b->dmin = h2f(is_q5 ? x5->dmin : x4->dmin);
}

/* Q6_K: element 128h + 32k + l is (low4 | high2 << 4) - 32, low4 the low (k < 2) or high
 * nibble of ql[64h + 32(k & 1) + l], high2 bits 2k..2k+1 of qh[32h + l]. */
static ALWAYS_INLINE void unpack_q6_K(const block_q6_K *x, kblock *b)
{
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    for (int g = 0; g < 16; g++)
        b->sc[g] = x->scales[g];
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
        const uint8x16_t l[4] = {vld1q_u8(ql), vld1q_u8(ql + 16), vld1q_u8(ql + 32),
                                 vld1q_u8(ql + 48)};
        for (int k = 0; k < 4; k++) {
            const uint8x16_t a = l[2 * (k & 1)], c = l[2 * (k & 1) + 1];
            uint8x16_t lo0 = k < 2 ? vandq_u8(a, m4) : vshrq_n_u8(a, 4);
            uint8x16_t lo1 = k < 2 ? vandq_u8(c, m4) : vshrq_n_u8(c, 4);
            lo0 = vorrq_u8(lo0, vshlq_n_u8(vandq_u8(h0, m3), 4));
            lo1 = vorrq_u8(lo1, vshlq_n_u8(vandq_u8(h1, m3), 4));
            h0 = vshrq_n_u8(h0, 2);
            h1 = vshrq_n_u8(h1, 2);
            b->w[8 * h + 2 * k] = vsubq_s8(s8(lo0), off);
            b->w[8 * h + 2 * k + 1] = vsubq_s8(s8(lo1), off);
        }
    }
    b->d = h2f(x->d);
}

static ALWAYS_INLINE size_t kblock_size(int kind)
{
    switch (kind) {
    case K_Q2_K: return sizeof(block_q2_K);
    case K_Q3_K: return sizeof(block_q3_K);
    case K_Q4_K: return sizeof(block_q4_K);
    case K_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

/* One float sum per token over the super-blocks, combined as the reference does for Q2_K
 * (the others differ from it only in the float rounding). */
static ALWAYS_INLINE void tile_k(int kind, int RN, int64_t nb, float *s, size_t bs,
                                 const char *x, const char *y, size_t by)
{
    const size_t bx = kblock_size(kind);
    float sum[TILE_MAX];
    for (int c = 0; c < RN; c++)
        sum[c] = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const void *xb = x + (size_t)i * bx;
        kblock b;
        switch (kind) {
        case K_Q2_K: unpack_q2_K(xb, &b); break;
        case K_Q3_K: unpack_q3_K(xb, &b); break;
        case K_Q4_K: unpack_q4_K(0, xb, &b); break;
        case K_Q5_K: unpack_q4_K(1, xb, &b); break;
        default: unpack_q6_K(xb, &b); break;
        }
        for (int c = 0; c < RN; c++) {
            const block_q8_K *yb = (const block_q8_K *)(y + c * by) + i;
            int32x4_t acc = vdupq_n_s32(0);
            for (int g = 0; g < 16; g++)
                acc = vmlaq_n_s32(acc, dot16(b.w[g], yb->qs + 16 * g), b.sc[g]);
            const int isum = vaddvq_s32(acc);
            const float d = yb->d * b.d;
            if (kind == K_Q6_K) {
                sum[c] += d * (float)isum;
            } else if (kind == K_Q3_K) {
                sum[c] += d * (float)(isum - 4 * dot16x16(b.m, yb->bsums));
            } else {
                const float dmin = yb->d * b.dmin;
                sum[c] += d * (float)isum - dmin * (float)dot16x16(b.m, yb->bsums);
            }
        }
    }
    for (int c = 0; c < RN; c++)
        s[c * bs] = sum[c];
}

#define DOTK(name, kind)                                                                    \
    static void name(int64_t n, float *s, const void *vx, const void *vy)                  \
    {                                                                                       \
        tile_k(kind, 1, n / QK_K, s, 1, vx, vy, 0);                                         \
    }                                                                                       \
    static void gemm_##name(int64_t n, float *s, size_t bs, const void *vx, size_t bx,     \
                            const void *vy, size_t by, int64_t nr, int64_t nc)             \
    {                                                                                       \
        const int64_t nb = n / QK_K;                                                        \
        GEMM_DRIVER(TILE_##name);                                                           \
    }
#define TILE_q2_K_q8_K(rn, s_, x_, y_) tile_k(K_Q2_K, rn, nb, s_, bs, x_, y_, by)
#define TILE_q3_K_q8_K(rn, s_, x_, y_) tile_k(K_Q3_K, rn, nb, s_, bs, x_, y_, by)
#define TILE_q4_K_q8_K(rn, s_, x_, y_) tile_k(K_Q4_K, rn, nb, s_, bs, x_, y_, by)
#define TILE_q5_K_q8_K(rn, s_, x_, y_) tile_k(K_Q5_K, rn, nb, s_, bs, x_, y_, by)
#define TILE_q6_K_q8_K(rn, s_, x_, y_) tile_k(K_Q6_K, rn, nb, s_, bs, x_, y_, by)

DOTK(q2_K_q8_K, K_Q2_K)
DOTK(q3_K_q8_K, K_Q3_K)
DOTK(q4_K_q8_K, K_Q4_K)
DOTK(q5_K_q8_K, K_Q5_K)
DOTK(q6_K_q8_K, K_Q6_K)

/* ---- float rows ----------------------------------------------------------------- */

static inline float32x4_t load_f16x4(const llm_f16 *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static inline float32x4_t load_bf16x4(const llm_bf16 *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

/* Four 4-lane accumulators over 16-element steps; the leftover elements added in double,
 * like the reference. One loop for the three element types. */
enum { E_F32, E_F16, E_BF16 };

static ALWAYS_INLINE float32x4_t load4(int e, const void *p, int64_t i)
{
    if (e == E_F32)
        return vld1q_f32((const float *)p + i);
    if (e == E_F16)
        return load_f16x4((const llm_f16 *)p + i);
    return load_bf16x4((const llm_bf16 *)p + i);
}

static ALWAYS_INLINE float elem(int e, const void *p, int64_t i)
{
    if (e == E_F32)
        return ((const float *)p)[i];
    if (e == E_F16)
        return h2f(((const llm_f16 *)p)[i]);
    return llm__bf16_to_f32(((const llm_bf16 *)p)[i]);
}

static ALWAYS_INLINE float float_dot(int e, int64_t n, const void *x, const void *y)
{
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, load4(e, x, i), load4(e, y, i));
        a1 = vfmaq_f32(a1, load4(e, x, i + 4), load4(e, y, i + 4));
        a2 = vfmaq_f32(a2, load4(e, x, i + 8), load4(e, y, i + 8));
        a3 = vfmaq_f32(a3, load4(e, x, i + 12), load4(e, y, i + 12));
    }
    for (; i + 4 <= n; i += 4)
        a0 = vfmaq_f32(a0, load4(e, x, i), load4(e, y, i));
    double sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++)
        sum += (double)(elem(e, x, i) * elem(e, y, i));
    return (float)sum;
}

static void f32_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = float_dot(E_F32, n, vx, vy);
}

static float dot_f16(int64_t n, const llm_f16 *x, const llm_f16 *y)
{
    return float_dot(E_F16, n, x, y);
}

static void f16_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = float_dot(E_F16, n, vx, vy);
}

static void bf16_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = float_dot(E_BF16, n, vx, vy);
}

static void bf16_to_float(const void *vx, float *y, int64_t n)
{
    const llm_bf16 *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, load_bf16x4(x + i));
    for (; i < n; i++)
        y[i] = llm__bf16_to_f32(x[i]);
}

/* The tails use the scalar FCVT, which rounds exactly as the vector form. */
static void f32_to_f16_row(const float *x, llm_f16 *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)),
                                                vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++)
        y[i] = f2h(x[i]);
}

static void f16_to_f32_row(const llm_f16 *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(y + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++)
        y[i] = h2f(x[i]);
}

static void f16_from_float(const float *x, void *y, int64_t n)
{
    f32_to_f16_row(x, y, n);
}

static void f16_to_float(const void *x, float *y, int64_t n)
{
    f16_to_f32_row(x, y, n);
}

/* Attention helpers: the order of the sum depends only on n. */
static float dot_f32_f16(int64_t n, const float *x, const llm_f16 *y)
{
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), load_f16x4(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), load_f16x4(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), load_f16x4(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), load_f16x4(y + i + 12));
    }
    for (; i + 4 <= n; i += 4)
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), load_f16x4(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++)
        s += x[i] * h2f(y[i]);
    return s;
}

static void axpy_f16(int64_t n, float *y, float a, const llm_f16 *x)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_f16x4(x + i), a));
    for (; i < n; i++)
        y[i] += a * h2f(x[i]);
}

/* ---- activation quantisers ------------------------------------------------------ */

static inline float absmax32(const float *x)
{
    float32x4_t m = vabsq_f32(vld1q_f32(x));
    for (int k = 4; k < 32; k += 4)
        m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + k)));
    return vmaxvq_f32(m);
}

/* 16 int32 (four vectors) -> 16 int8 in order; the values are in -127..127 already. */
static inline int8x16_t pack16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d)
{
    const int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    const int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

/* q = roundf(x * id): FCVTAS rounds to nearest with ties away from zero, as roundf does.
 * Returns sum(q) for Q8_1. */
static inline int q8_block(const float *x, float id, int8_t *out)
{
    int32x4_t q[8], sum = vdupq_n_s32(0);
    for (int k = 0; k < 8; k++) {
        q[k] = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4 * k), id));
        sum = vaddq_s32(sum, q[k]);
    }
    vst1q_s8(out, pack16(q[0], q[1], q[2], q[3]));
    vst1q_s8(out + 16, pack16(q[4], q[5], q[6], q[7]));
    return vaddvq_s32(sum);
}

static void q8_0_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float d = absmax32(x) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        q8_block(x, id, y[i].qs);
    }
}

static void q8_1_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float d = absmax32(x) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        const int sum = q8_block(x, id, y[i].qs);
        y[i].s = f2h((float)sum * d);
    }
}

/* Q8_K: the reference takes the first element of largest magnitude; it is +max or -max
 * depending on which of the row's maximum and minimum is larger in magnitude, and only an
 * exact tie between the two needs a scan for the first occurrence. FCVTNS rounds to nearest
 * even, like ggml's nearest_int. */
static void q8_K_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float32x4_t vmax = vld1q_f32(x), vmin = vmax;
        for (int j = 4; j < QK_K; j += 4) {
            const float32x4_t v = vld1q_f32(x + j);
            vmax = vmaxq_f32(vmax, v);
            vmin = vminq_f32(vmin, v);
        }
        const float hi = vmaxvq_f32(vmax), lo = -vminvq_f32(vmin);
        const float max = llm__q8k_signed_max(x, QK_K, hi, lo);
        if (max == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        const int32x4_t cap = vdupq_n_s32(127);
        for (int g = 0; g < QK_K / 16; g++) {
            const float *p = x + 16 * g;
            int32x4_t q[4];
            for (int k = 0; k < 4; k++)
                q[k] = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(p + 4 * k), iscale)), cap);
            const int8x16_t v = pack16(q[0], q[1], q[2], q[3]);
            vst1q_s8(y[i].qs + 16 * g, v);
            y[i].bsums[g] = vaddlvq_s8(v);
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- vec_dot: the i-quants ------------------------------------------------------ */

/* As in quants_iq_avx2.c: the weights of a sub-block of 32 as magnitudes gathered from the
 * grids (or IQ4's levels by a table lookup), their signs moved onto the activations, and
 * the integer sum of a super-block exact, so that applying the float scales in the
 * reference's order (quants_iq.c) gives its result bit for bit. */

static inline uint32_t row4(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* y's 32 bytes at q8 with the sign flipped where bit j of signs is set (byte j), as two
 * vectors; the Q8_K values are in -127..127, so the negation cannot overflow. */
static inline void signed_q8(const int8_t *q8, uint32_t signs, int8x16_t out[2])
{
    uint8_t b[4];
    memcpy(b, &signs, 4);
    uint8x16_t m0, m1;
    bits32(b, &m0, &m1);
    const int8x16_t s0 = s8(m0), s1 = s8(m1);
    out[0] = vsubq_s8(veorq_s8(vld1q_s8(q8), s0), s0);
    out[1] = vsubq_s8(veorq_s8(vld1q_s8(q8 + 16), s1), s1);
}

/* two 8-byte grid rows side by side */
static inline int8x16_t rows8(const void *a, const void *b)
{
    return vreinterpretq_s8_u8(vcombine_u8(vld1_u8(a), vld1_u8(b)));
}

/* four 4-byte grid rows side by side */
static inline int8x16_t rows4(const void *a, const void *b, const void *c, const void *d)
{
    const uint32_t v[4] = {row4(a), row4(b), row4(c), row4(d)};
    return vreinterpretq_s8_u32(vld1q_u32(v));
}

static inline uint32_t ksigns4(uint32_t aux)
{
    return llm__iq_ksigns[aux & 127] | (uint32_t)llm__iq_ksigns[(aux >> 7) & 127] << 8 |
           (uint32_t)llm__iq_ksigns[(aux >> 14) & 127] << 16 |
           (uint32_t)llm__iq_ksigns[(aux >> 21) & 127] << 24;
}

/* IQ4's 16 levels of the low (elements 0-15) and high (16-31) nibbles of 16 bytes */
static inline void iq4_levels(const uint8_t *qs, int8x16_t out[2])
{
    const int8x16_t table = vld1q_s8(llm__iq4nl_values);
    const uint8x16_t raw = vld1q_u8(qs);
    out[0] = vqtbl1q_s8(table, vandq_u8(raw, vdupq_n_u8(0x0f)));
    out[1] = vqtbl1q_s8(table, vshrq_n_u8(raw, 4));
}

static void iq4_nl_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int8x16_t w[2];
        iq4_levels(x[i].qs, w);
        const int sumi = vaddvq_s32(dot32(w[0], w[1], y[i].qs));
        sum += h2f(x[i].d) * h2f(y[i].d) * (float)sumi;
    }
    *s = sum;
}

static void iq4_xs_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int ls = (((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                            (((x[i].scales_h >> 2 * ib) & 3) << 4)) - 32;
            int8x16_t w[2];
            iq4_levels(x[i].qs + 16 * ib, w);
            acc = vmlaq_n_s32(acc, dot32(w[0], w[1], y[i].qs + 32 * ib), ls);
        }
        sum += h2f(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

static void iq2_xxs_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_xxs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *idx = (const uint8_t *)(x[i].qs + 4 * ib);
            const uint32_t aux = row4(x[i].qs + 4 * ib + 2);
            int8x16_t q8[2];
            signed_q8(y[i].qs + 32 * ib, ksigns4(aux), q8);
            const int32x4_t p = dot4(
                dot4(vdupq_n_s32(0), rows8(llm__iq2xxs_grid[idx[0]], llm__iq2xxs_grid[idx[1]]),
                     q8[0]),
                rows8(llm__iq2xxs_grid[idx[2]], llm__iq2xxs_grid[idx[3]]), q8[1]);
            acc = vmlaq_n_s32(acc, p, (int32_t)(2 * (aux >> 28) + 1));
        }
        sum += h2f(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = 0.125f * sum;
}

static void iq2_xs_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint16_t *q = x[i].qs + 4 * ib;
            const uint32_t signs = llm__iq_ksigns[q[0] >> 9] |
                                   (uint32_t)llm__iq_ksigns[q[1] >> 9] << 8 |
                                   (uint32_t)llm__iq_ksigns[q[2] >> 9] << 16 |
                                   (uint32_t)llm__iq_ksigns[q[3] >> 9] << 24;
            int8x16_t q8[2];
            signed_q8(y[i].qs + 32 * ib, signs, q8);
            const int sc = x[i].scales[ib];
            const int32x4_t p0 = dot4(
                vdupq_n_s32(0), rows8(llm__iq2xs_grid[q[0] & 511], llm__iq2xs_grid[q[1] & 511]),
                q8[0]);
            const int32x4_t p1 = dot4(
                vdupq_n_s32(0), rows8(llm__iq2xs_grid[q[2] & 511], llm__iq2xs_grid[q[3] & 511]),
                q8[1]);
            acc = vmlaq_n_s32(acc, p0, 2 * (sc & 0xf) + 1);
            acc = vmlaq_n_s32(acc, p1, 2 * (sc >> 4) + 1);
        }
        sum += h2f(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = 0.125f * sum;
}

static void iq2_s_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        const uint8_t *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 4 * ib;
            const int qh = x[i].qh[ib];
            int8x16_t q8[2];
            signed_q8(y[i].qs + 32 * ib, row4(signs + 4 * ib), q8);
            const int sc = x[i].scales[ib];
            const int32x4_t p0 = dot4(vdupq_n_s32(0),
                                      rows8(llm__iq2s_grid[q[0] | ((qh << 8) & 0x300)],
                                            llm__iq2s_grid[q[1] | ((qh << 6) & 0x300)]),
                                      q8[0]);
            const int32x4_t p1 = dot4(vdupq_n_s32(0),
                                      rows8(llm__iq2s_grid[q[2] | ((qh << 4) & 0x300)],
                                            llm__iq2s_grid[q[3] | ((qh << 2) & 0x300)]),
                                      q8[1]);
            acc = vmlaq_n_s32(acc, p0, 2 * (sc & 0xf) + 1);
            acc = vmlaq_n_s32(acc, p1, 2 * (sc >> 4) + 1);
        }
        sum += h2f(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = 0.125f * sum;
}

static void iq3_xxs_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq3_xxs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 8 * ib;
            const uint32_t aux = row4(x[i].qs + QK_K / 4 + 4 * ib);
            int8x16_t q8[2];
            signed_q8(y[i].qs + 32 * ib, ksigns4(aux), q8);
            const int8x16_t g0 = rows4(llm__iq3xxs_grid[q[0]], llm__iq3xxs_grid[q[1]],
                                       llm__iq3xxs_grid[q[2]], llm__iq3xxs_grid[q[3]]);
            const int8x16_t g1 = rows4(llm__iq3xxs_grid[q[4]], llm__iq3xxs_grid[q[5]],
                                       llm__iq3xxs_grid[q[6]], llm__iq3xxs_grid[q[7]]);
            const int32x4_t p = dot4(dot4(vdupq_n_s32(0), g0, q8[0]), g1, q8[1]);
            acc = vmlaq_n_s32(acc, p, (int32_t)(2 * (aux >> 28) + 1));
        }
        sum += h2f(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = 0.25f * sum;
}

static void iq3_s_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq3_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 8 * ib;
            const int qh = x[i].qh[ib];
            const uint8_t *g[8];
            for (int k = 0; k < 8; k++)
                g[k] = llm__iq3s_grid[q[k] | ((qh << (8 - k)) & 256)];
            int8x16_t q8[2];
            signed_q8(y[i].qs + 32 * ib, row4(x[i].signs + 4 * ib), q8);
            const int32x4_t p = dot4(dot4(vdupq_n_s32(0), rows4(g[0], g[1], g[2], g[3]), q8[0]),
                                     rows4(g[4], g[5], g[6], g[7]), q8[1]);
            acc = vmlaq_n_s32(acc, p, 1 + 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0xf));
        }
        sum += h2f(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

static void iq1_s_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq1_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        int sumi1 = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 4 * ib;
            const int qh = x[i].qh[ib];
            /* grid points are -1, 0, 1: signed by signed directly */
            const int8x16_t g0 = rows8(llm__iq1s_grid[q[0] | ((qh & 7) << 8)],
                                       llm__iq1s_grid[q[1] | (((qh >> 3) & 7) << 8)]);
            const int8x16_t g1 = rows8(llm__iq1s_grid[q[2] | (((qh >> 6) & 7) << 8)],
                                       llm__iq1s_grid[q[3] | (((qh >> 9) & 7) << 8)]);
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            acc = vmlaq_n_s32(acc, dot32(g0, g1, y[i].qs + 32 * ib), ls);
            sumi1 += ls * (qh & 0x8000 ? -1 : 1) * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        sum += h2f(x[i].d) * y[i].d * ((float)vaddvq_s32(acc) + IQ1S_DELTA * (float)sumi1);
    }
    *s = sum;
}

/* ---- registration --------------------------------------------------------------- */

int NEON_FILL(llm_quant_traits *t, llm_quant_row_fns *rows)
{
    t[LLM_DT_F32].vec_dot = f32_dot;
    t[LLM_DT_F16].vec_dot = f16_dot;
    t[LLM_DT_F16].from_float = f16_from_float;
    t[LLM_DT_F16].to_float = f16_to_float;
    t[LLM_DT_BF16].vec_dot = bf16_dot;
    t[LLM_DT_BF16].to_float = bf16_to_float;
    t[LLM_DT_Q4_0].vec_dot = q4_0_q8_0;
    t[LLM_DT_Q4_1].vec_dot = q4_1_q8_1;
    t[LLM_DT_Q5_0].vec_dot = q5_0_q8_0;
    t[LLM_DT_Q5_1].vec_dot = q5_1_q8_1;
    t[LLM_DT_Q8_0].vec_dot = q8_0_q8_0;
    t[LLM_DT_Q8_0].from_float = q8_0_from_float;
    t[LLM_DT_Q8_1].from_float = q8_1_from_float;
    t[LLM_DT_Q8_K].from_float = q8_K_from_float;
    t[LLM_DT_Q2_K].vec_dot = q2_K_q8_K;
    t[LLM_DT_Q3_K].vec_dot = q3_K_q8_K;
    t[LLM_DT_Q4_K].vec_dot = q4_K_q8_K;
    t[LLM_DT_Q5_K].vec_dot = q5_K_q8_K;
    t[LLM_DT_Q6_K].vec_dot = q6_K_q8_K;
    t[LLM_DT_Q4_0].gemm = gemm_q4_0_q8_0;
    t[LLM_DT_Q4_1].gemm = gemm_q4_1_q8_1;
    t[LLM_DT_Q5_0].gemm = gemm_q5_0_q8_0;
    t[LLM_DT_Q5_1].gemm = gemm_q5_1_q8_1;
    t[LLM_DT_Q8_0].gemm = gemm_q8_0_q8_0;
    t[LLM_DT_Q2_K].gemm = gemm_q2_K_q8_K;
    t[LLM_DT_Q3_K].gemm = gemm_q3_K_q8_K;
    t[LLM_DT_Q4_K].gemm = gemm_q4_K_q8_K;
    t[LLM_DT_Q5_K].gemm = gemm_q5_K_q8_K;
    t[LLM_DT_Q6_K].gemm = gemm_q6_K_q8_K;
    t[LLM_DT_IQ4_NL].vec_dot = iq4_nl_q8_0;
    t[LLM_DT_IQ4_XS].vec_dot = iq4_xs_q8_K;
    t[LLM_DT_IQ2_XXS].vec_dot = iq2_xxs_q8_K;
    t[LLM_DT_IQ2_XS].vec_dot = iq2_xs_q8_K;
    t[LLM_DT_IQ2_S].vec_dot = iq2_s_q8_K;
    t[LLM_DT_IQ3_XXS].vec_dot = iq3_xxs_q8_K;
    t[LLM_DT_IQ3_S].vec_dot = iq3_s_q8_K;
    t[LLM_DT_IQ1_S].vec_dot = iq1_s_q8_K;
    rows->f32_to_f16_row = f32_to_f16_row;
    rows->f16_to_f32_row = f16_to_f32_row;
    rows->dot_f16 = dot_f16;
    rows->dot_f32_f16 = dot_f32_f16;
    rows->axpy_f16 = axpy_f16;
    return 1;
}

#else /* not aarch64, or the dotprod build without the instructions */

#ifdef LLM_NEON_DOTPROD
#define NEON_FILL llm__quant_neon_dotprod_fill
#else
#define NEON_FILL llm__quant_neon_fill
#endif

int NEON_FILL(llm_quant_traits *table, llm_quant_row_fns *rows)
{
    (void)table;
    (void)rows;
    return 0;
}

#endif
