/* repack_neon.c - 8-row interleaved layouts (repack.h) for Q4_0, Q4_1, Q8_0 and Q4_K, and
 * their NEON kernels (64-bit ARM).
 *
 * Built twice like quants_neon.c: plain Armv8-A (llm__repack_neon_traits) and with the
 * dot-product instructions (repack_neon_dotprod.c, llm__repack_neon_dotprod_traits); cpu.c
 * takes the one matching the level llm__quant_init chose.
 *
 * A group block (8 rows, block i of each) holds f32 d[8], for Q4_1 f32 m[8], then the
 * quants in chunks of 4 elements: chunk k is 32 bytes, 4 bytes per row (rows 0-3 in the
 * first 16, rows 4-7 in the second), so that one SDOT by lane k of the activation block
 * adds the 4-element dot of 4 rows into their int32 lanes. Q8_0 stores the 8 chunks as
 * they are (256 bytes); Q4_0/Q4_1 store chunk k (k < 4) in the low nibbles and chunk k + 4
 * in the high nibbles of 128 bytes. Q4_0's unsigned nibbles are corrected by 8 times the
 * activation block's sum.
 *
 * Per block and token each lane then holds the exact integer dot of its row with the
 * activation block, and one fma per token adds d_row * d_act times it (Q4_1: a second one
 * adds m_row * s_act). The integer sums equal those of the reference; only the float
 * accumulation order differs. The plain build forms the same lanes (the products of the
 * same 4 bytes, see quants_neon.c), so the two builds give the same bits. */
#include "repack.h"

#include <stddef.h>
#include <string.h>

#include "quants.h"

#if defined(__aarch64__) && defined(__ARM_NEON) && \
    (!defined(LLM_NEON_DOTPROD) || defined(__ARM_FEATURE_DOTPROD))

#include <arm_neon.h>

#ifdef LLM_NEON_DOTPROD
#define TRAITS_FN llm__repack_neon_dotprod_traits
#define DOT_LANE(acc, w, a, l) vdotq_laneq_s32(acc, w, a, l)
#else
#define TRAITS_FN llm__repack_neon_traits
/* lane i += sum over j < 4 of w[4i + j] * b[4i + j], as SDOT */
static inline int32x4_t dot4(int32x4_t acc, int8x16_t w, int8x16_t b)
{
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(w, b));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
}
#define DOT_LANE(acc, w, a, l) \
    dot4(acc, w, vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(a), l)))
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define TILE_TOKENS 4

static inline float h2f(llm_f16 h)
{
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

enum { R_Q4_0, R_Q4_1, R_Q8_0 };

/* f32 d[8] (and m[8]), then the quants */
#define Q40_GB REPACK_Q40_GB
#define Q41_GB REPACK_Q41_GB
#define Q80_GB REPACK_Q80_GB

/* s0/s1 (rows 0-3/4-7) += the dots of the 8 chunks v[k][half] with the activation block
 * a0 (elements 0-15, chunks 0-3) and a1 (16-31, chunks 4-7) */
#define DOT8(s0, s1, v, a0, a1)                                                             \
    do {                                                                                    \
        s0 = DOT_LANE(s0, v[0][0], a0, 0);                                                  \
        s1 = DOT_LANE(s1, v[0][1], a0, 0);                                                  \
        s0 = DOT_LANE(s0, v[1][0], a0, 1);                                                  \
        s1 = DOT_LANE(s1, v[1][1], a0, 1);                                                  \
        s0 = DOT_LANE(s0, v[2][0], a0, 2);                                                  \
        s1 = DOT_LANE(s1, v[2][1], a0, 2);                                                  \
        s0 = DOT_LANE(s0, v[3][0], a0, 3);                                                  \
        s1 = DOT_LANE(s1, v[3][1], a0, 3);                                                  \
        s0 = DOT_LANE(s0, v[4][0], a1, 0);                                                  \
        s1 = DOT_LANE(s1, v[4][1], a1, 0);                                                  \
        s0 = DOT_LANE(s0, v[5][0], a1, 1);                                                  \
        s1 = DOT_LANE(s1, v[5][1], a1, 1);                                                  \
        s0 = DOT_LANE(s0, v[6][0], a1, 2);                                                  \
        s1 = DOT_LANE(s1, v[6][1], a1, 2);                                                  \
        s0 = DOT_LANE(s0, v[7][0], a1, 3);                                                  \
        s1 = DOT_LANE(s1, v[7][1], a1, 3);                                                  \
    } while (0)

/* One group of 8 rows against RN tokens. */
static ALWAYS_INLINE void group_tile(int kind, int RN, int64_t nb, float *s, size_t bs,
                                     const uint8_t *w, const char *y, size_t by,
                                     const int32_t *ysum)
{
    const size_t gb = kind == R_Q4_0 ? Q40_GB : kind == R_Q4_1 ? Q41_GB : Q80_GB;
    const size_t ysz = kind == R_Q4_1 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t yqs = kind == R_Q4_1 ? offsetof(block_q8_1, qs) : offsetof(block_q8_0, qs);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc[TILE_TOKENS][2];
    for (int c = 0; c < RN; c++)
        acc[c][0] = acc[c][1] = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < nb; i++, w += gb) {
        int8x16_t v[8][2];
        if (kind == R_Q8_0) {
            for (int k = 0; k < 8; k++) {
                v[k][0] = vld1q_s8((const int8_t *)(w + 32 + 32 * k));
                v[k][1] = vld1q_s8((const int8_t *)(w + 48 + 32 * k));
            }
        } else {
            const uint8_t *q = w + (kind == R_Q4_1 ? 64 : 32);
            for (int k = 0; k < 4; k++) {
                for (int h = 0; h < 2; h++) {
                    const uint8x16_t p = vld1q_u8(q + 32 * k + 16 * h);
                    v[k][h] = vreinterpretq_s8_u8(vandq_u8(p, m4));
                    v[k + 4][h] = vreinterpretq_s8_u8(vshrq_n_u8(p, 4));
                }
            }
        }
        const float32x4_t d0 = vld1q_f32((const float *)w), d1 = vld1q_f32((const float *)w + 4);
        for (int c = 0; c < RN; c++) {
            const char *yb = y + c * by + (size_t)i * ysz;
            const int8x16_t a0 = vld1q_s8((const int8_t *)(yb + yqs));
            const int8x16_t a1 = vld1q_s8((const int8_t *)(yb + yqs + 16));
            int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
            DOT8(s0, s1, v, a0, a1);
            if (kind == R_Q4_0) {
                const int32x4_t corr = vdupq_n_s32(8 * ysum[c * nb + i]);
                s0 = vsubq_s32(s0, corr);
                s1 = vsubq_s32(s1, corr);
            }
            llm_f16 dh;
            memcpy(&dh, yb, sizeof dh);
            const float da = h2f(dh);
            acc[c][0] = vfmaq_f32(acc[c][0], vcvtq_f32_s32(s0), vmulq_n_f32(d0, da));
            acc[c][1] = vfmaq_f32(acc[c][1], vcvtq_f32_s32(s1), vmulq_n_f32(d1, da));
            if (kind == R_Q4_1) {
                llm_f16 sh;
                memcpy(&sh, yb + sizeof(llm_f16), sizeof sh);
                const float sa = h2f(sh);
                acc[c][0] = vfmaq_n_f32(acc[c][0], vld1q_f32((const float *)w + 8), sa);
                acc[c][1] = vfmaq_n_f32(acc[c][1], vld1q_f32((const float *)w + 12), sa);
            }
        }
    }
    for (int c = 0; c < RN; c++) {
        vst1q_f32(s + c * bs, acc[c][0]);
        vst1q_f32(s + c * bs + 4, acc[c][1]);
    }
}

/* Q4_K, per super-block of 256: f32 d[8], f32 dmin[8], the 6-bit scales and mins as int16
 * [group][row], then each group of 32 packed like a Q4_0 block (128 bytes). Per group the
 * rows' integer dots are scaled by their group scales in the int32 lanes; the min term
 * is min[group][row] times the activation's bsum pair of the group. */
#define Q4K_GB (64 + 128 + 128 + 8 * 128)

static size_t q4_K_group_bytes(int64_t k)
{
    return (size_t)(k / QK_K) * Q4K_GB;
}

static void q4_K_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / QK_K; i++, out += Q4K_GB) {
        float dd[2 * REPACK_ROWS];
        int16_t sc[8][REPACK_ROWS], mins[8][REPACK_ROWS];
        uint8_t vals[REPACK_ROWS][8][32];
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q4_K *b = (const block_q4_K *)((const char *)src + r * row_bytes) + i;
            dd[r] = h2f(b->d);
            dd[REPACK_ROWS + r] = h2f(b->dmin);
            for (int g = 0; g < 8; g++) {
                int s_, m_;
                llm__k4_scale_min(g, b->scales, &s_, &m_);
                sc[g][r] = (int16_t)s_, mins[g][r] = (int16_t)m_;
                for (int l = 0; l < 32; l++)
                    vals[r][g][l] = (b->qs[32 * (g / 2) + l] >> (4 * (g & 1))) & 0x0f;
            }
        }
        memcpy(out, dd, sizeof dd);
        memcpy(out + 64, sc, sizeof sc);
        memcpy(out + 192, mins, sizeof mins);
        uint8_t *q = out + 320;
        for (int g = 0; g < 8; g++)
            for (int kk = 0; kk < 4; kk++)
                for (int r = 0; r < REPACK_ROWS; r++)
                    for (int j = 0; j < 4; j++)
                        q[128 * g + 32 * kk + 4 * r + j] =
                            (uint8_t)(vals[r][g][4 * kk + j] | vals[r][g][4 * (kk + 4) + j] << 4);
    }
}

static ALWAYS_INLINE void group_tile_q4_K(int RN, int64_t nb, float *s, size_t bs,
                                          const uint8_t *w, const char *y, size_t by)
{
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc[TILE_TOKENS][2];
    for (int c = 0; c < RN; c++)
        acc[c][0] = acc[c][1] = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < nb; i++, w += Q4K_GB) {
        const block_q8_K *yb[TILE_TOKENS];
        int32x4_t isum[TILE_TOKENS][2], msum[TILE_TOKENS][2];
        for (int c = 0; c < RN; c++) {
            yb[c] = (const block_q8_K *)(y + c * by) + i;
            isum[c][0] = isum[c][1] = msum[c][0] = msum[c][1] = vdupq_n_s32(0);
        }
        const int16_t *sc = (const int16_t *)(w + 64), *mins = (const int16_t *)(w + 192);
        const uint8_t *q = w + 320;
        for (int g = 0; g < 8; g++, q += 128) {
            int8x16_t v[8][2];
            for (int k = 0; k < 4; k++) {
                for (int h = 0; h < 2; h++) {
                    const uint8x16_t p = vld1q_u8(q + 32 * k + 16 * h);
                    v[k][h] = vreinterpretq_s8_u8(vandq_u8(p, m4));
                    v[k + 4][h] = vreinterpretq_s8_u8(vshrq_n_u8(p, 4));
                }
            }
            const int16x8_t sc16 = vld1q_s16(sc + 8 * g), m16 = vld1q_s16(mins + 8 * g);
            const int32x4_t sc0 = vmovl_s16(vget_low_s16(sc16)), sc1 = vmovl_high_s16(sc16);
            for (int c = 0; c < RN; c++) {
                const int8x16_t a0 = vld1q_s8(yb[c]->qs + 32 * g);
                const int8x16_t a1 = vld1q_s8(yb[c]->qs + 32 * g + 16);
                int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
                DOT8(s0, s1, v, a0, a1);
                isum[c][0] = vmlaq_s32(isum[c][0], s0, sc0);
                isum[c][1] = vmlaq_s32(isum[c][1], s1, sc1);
                const int16_t pair = (int16_t)(yb[c]->bsums[2 * g] + yb[c]->bsums[2 * g + 1]);
                msum[c][0] = vmlal_n_s16(msum[c][0], vget_low_s16(m16), pair);
                msum[c][1] = vmlal_high_n_s16(msum[c][1], m16, pair);
            }
        }
        const float *dd = (const float *)w;
        const float32x4_t d0 = vld1q_f32(dd), d1 = vld1q_f32(dd + 4);
        const float32x4_t dm0 = vld1q_f32(dd + 8), dm1 = vld1q_f32(dd + 12);
        for (int c = 0; c < RN; c++) {
            const float yd = yb[c]->d;
            acc[c][0] = vfmaq_f32(acc[c][0], vcvtq_f32_s32(isum[c][0]), vmulq_n_f32(d0, yd));
            acc[c][1] = vfmaq_f32(acc[c][1], vcvtq_f32_s32(isum[c][1]), vmulq_n_f32(d1, yd));
            acc[c][0] = vfmsq_f32(acc[c][0], vcvtq_f32_s32(msum[c][0]), vmulq_n_f32(dm0, yd));
            acc[c][1] = vfmsq_f32(acc[c][1], vcvtq_f32_s32(msum[c][1]), vmulq_n_f32(dm1, yd));
        }
    }
    for (int c = 0; c < RN; c++) {
        vst1q_f32(s + c * bs, acc[c][0]);
        vst1q_f32(s + c * bs + 4, acc[c][1]);
    }
}

/* Every group of 8 rows against the tokens in tiles of TILE_TOKENS (the last smaller). */
#define GEMM(name, TILE)                                                                    \
    static void name(int64_t k, float *s, size_t bs, const void *w, size_t gstride,        \
                     int64_t n_groups, const void *y, size_t by, const int32_t *ysum,      \
                     const int32_t *aux, int64_t nc)                                        \
    {                                                                                       \
        const int64_t nb = k / 32;                                                          \
        (void)nb;                                                                           \
        (void)aux;                                                                          \
        for (int64_t g = 0; g < n_groups; g++) {                                            \
            const uint8_t *wg = (const uint8_t *)w + g * gstride;                           \
            float *sg = s + g * REPACK_ROWS;                                                \
            int64_t c = 0;                                                                  \
            for (; c + TILE_TOKENS <= nc; c += TILE_TOKENS)                                 \
                TILE(TILE_TOKENS, sg + c * bs, wg, (const char *)y + c * by,                \
                     ysum ? ysum + c * nb : NULL);                                          \
            const char *yc = (const char *)y + c * by;                                      \
            const int32_t *ys = ysum ? ysum + c * nb : NULL;                                \
            switch (nc - c) {                                                               \
            case 3: TILE(3, sg + c * bs, wg, yc, ys); break;                                \
            case 2: TILE(2, sg + c * bs, wg, yc, ys); break;                                \
            case 1: TILE(1, sg + c * bs, wg, yc, ys); break;                                \
            default: break;                                                                 \
            }                                                                               \
        }                                                                                   \
    }
#define TILE_Q4_0(RN, s_, w_, y_, ysum_) group_tile(R_Q4_0, RN, nb, s_, bs, w_, y_, by, ysum_)
#define TILE_Q4_1(RN, s_, w_, y_, ysum_) group_tile(R_Q4_1, RN, nb, s_, bs, w_, y_, by, ysum_)
#define TILE_Q8_0(RN, s_, w_, y_, ysum_) group_tile(R_Q8_0, RN, nb, s_, bs, w_, y_, by, ysum_)
#define TILE_Q4_K(RN, s_, w_, y_, ysum_) \
    ((void)(ysum_), group_tile_q4_K(RN, nb / 8, s_, bs, w_, y_, by))

GEMM(gemm_q4_0_x8, TILE_Q4_0)
GEMM(gemm_q4_1_x8, TILE_Q4_1)
GEMM(gemm_q8_0_x8, TILE_Q8_0)
GEMM(gemm_q4_K_x8, TILE_Q4_K)

static const llm_repack_traits q4_0_x8 = {llm__repack_q4_0_bytes, llm__repack_q4_0_pack, gemm_q4_0_x8, 1, NULL};
static const llm_repack_traits q4_1_x8 = {llm__repack_q4_1_bytes, llm__repack_q4_1_pack, gemm_q4_1_x8, 0, NULL};
static const llm_repack_traits q8_0_x8 = {llm__repack_q8_0_bytes, llm__repack_q8_0_pack, gemm_q8_0_x8, 0, NULL};
static const llm_repack_traits q4_K_x8 = {q4_K_group_bytes, q4_K_pack, gemm_q4_K_x8, 0, NULL};

const llm_repack_traits *TRAITS_FN(uint32_t dtype)
{
    switch (dtype) {
    case LLM_DT_Q4_0: return &q4_0_x8;
    case LLM_DT_Q4_1: return &q4_1_x8;
    case LLM_DT_Q8_0: return &q8_0_x8;
    case LLM_DT_Q4_K: return &q4_K_x8;
    default: return NULL;
    }
}

#else /* not aarch64, or the dotprod build without the instructions */

#ifdef LLM_NEON_DOTPROD
const llm_repack_traits *llm__repack_neon_dotprod_traits(uint32_t dtype)
#else
const llm_repack_traits *llm__repack_neon_traits(uint32_t dtype)
#endif
{
    (void)dtype;
    return NULL;
}

#endif
