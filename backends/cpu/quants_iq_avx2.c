/* quants_iq_avx2.c - AVX2 dot products for the i-quant formats.
 *
 * Each kernel builds the 32 weights of a sub-block as unsigned magnitudes (grid rows
 * gathered from the tables, or IQ4's levels through a byte shuffle), moves the signs onto
 * the activations (_mm256_sign_epi8), and multiplies in 8-bit with 16/32-bit sums. The
 * integer sum of a super-block is exact, so applying the float scales in the reference's
 * order (quants_iq.c) gives its result bit for bit. Compiled with -mavx2 -mfma -mf16c;
 * chosen at run time. */
#include "quants_iq.h"

#include <string.h>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>

#define F16(h) _cvtsh_ss(h)

static inline uint64_t row8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t row4(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* Bytes of -1 where bit j of `bits` is set, +1 elsewhere (bit j for byte j). */
static inline __m256i signs_from_bits(uint32_t bits)
{
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_or_si256(v, _mm256_set1_epi8(1));
}

/* sum over 32 bytes of mag[j] * q8[j] * sign[j], as 16 int16 pair sums */
static inline __m256i dot32(__m256i mag, __m256i q8, uint32_t sign_bits)
{
    return _mm256_maddubs_epi16(mag, _mm256_sign_epi8(q8, signs_from_bits(sign_bits)));
}

/* ---- IQ4 ---------------------------------------------------------------------------- */

static inline __m256i iq4_levels(const uint8_t *qs16)
{
    const __m128i table = _mm_loadu_si128((const __m128i *)llm__iq4nl_values);
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs16);
    const __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0xf));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0xf));
    return _mm256_set_m128i(_mm_shuffle_epi8(table, hi), _mm_shuffle_epi8(table, lo));
}

/* signed by signed: |w| times q8 carrying w's sign */
static inline __m256i dot32_signed(__m256i w, __m256i q8)
{
    return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q8, w));
}

static void iq4_nl_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const __m256i ones = _mm256_set1_epi16(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256i p = _mm256_madd_epi16(dot32_signed(iq4_levels(x[i].qs), q8), ones);
        sum += F16(x[i].d) * F16(y[i].d) * (float)hsum_i32(p);
    }
    *s = sum;
}

static void iq4_xs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int ls = (((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                            (((x[i].scales_h >> 2 * ib) & 3) << 4)) - 32;
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            const __m256i p = dot32_signed(iq4_levels(x[i].qs + 16 * ib), q8);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)ls)));
        }
        sum += F16(x[i].d) * y[i].d * (float)hsum_i32(acc);
    }
    *s = sum;
}

/* ---- IQ2 ------------------------------------------------------------------------------ */

static void iq2_xxs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_xxs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *idx = (const uint8_t *)(x[i].qs + 4 * ib);
            const uint32_t aux = row4(x[i].qs + 4 * ib + 2);
            const __m256i mag = _mm256_set_epi64x(
                (long long)row8(llm__iq2xxs_grid[idx[3]]), (long long)row8(llm__iq2xxs_grid[idx[2]]),
                (long long)row8(llm__iq2xxs_grid[idx[1]]), (long long)row8(llm__iq2xxs_grid[idx[0]]));
            const uint32_t signs = llm__iq_ksigns[aux & 127] |
                                   (uint32_t)llm__iq_ksigns[(aux >> 7) & 127] << 8 |
                                   (uint32_t)llm__iq_ksigns[(aux >> 14) & 127] << 16 |
                                   (uint32_t)llm__iq_ksigns[(aux >> 21) & 127] << 24;
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            const short ls = (short)(2 * (aux >> 28) + 1);
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(dot32(mag, q8, signs), _mm256_set1_epi16(ls)));
        }
        sum += F16(x[i].d) * y[i].d * (float)hsum_i32(acc);
    }
    *s = 0.125f * sum;
}

/* scale ls_lo for the first 16 elements, ls_hi for the second */
static inline __m256i scales16(int ls_lo, int ls_hi)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)ls_hi), _mm_set1_epi16((short)ls_lo));
}

static void iq2_xs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint16_t *q = x[i].qs + 4 * ib;
            const __m256i mag = _mm256_set_epi64x(
                (long long)row8(llm__iq2xs_grid[q[3] & 511]), (long long)row8(llm__iq2xs_grid[q[2] & 511]),
                (long long)row8(llm__iq2xs_grid[q[1] & 511]), (long long)row8(llm__iq2xs_grid[q[0] & 511]));
            const uint32_t signs = llm__iq_ksigns[q[0] >> 9] |
                                   (uint32_t)llm__iq_ksigns[q[1] >> 9] << 8 |
                                   (uint32_t)llm__iq_ksigns[q[2] >> 9] << 16 |
                                   (uint32_t)llm__iq_ksigns[q[3] >> 9] << 24;
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            const int sc = x[i].scales[ib];
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(dot32(mag, q8, signs),
                                                          scales16(2 * (sc & 0xf) + 1,
                                                                   2 * (sc >> 4) + 1)));
        }
        sum += F16(x[i].d) * y[i].d * (float)hsum_i32(acc);
    }
    *s = 0.125f * sum;
}

static void iq2_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        const uint8_t *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 4 * ib;
            const int qh = x[i].qh[ib];
            const __m256i mag = _mm256_set_epi64x(
                (long long)row8(llm__iq2s_grid[q[3] | ((qh << 2) & 0x300)]),
                (long long)row8(llm__iq2s_grid[q[2] | ((qh << 4) & 0x300)]),
                (long long)row8(llm__iq2s_grid[q[1] | ((qh << 6) & 0x300)]),
                (long long)row8(llm__iq2s_grid[q[0] | ((qh << 8) & 0x300)]));
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            const int sc = x[i].scales[ib];
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(dot32(mag, q8, row4(signs + 4 * ib)),
                                                          scales16(2 * (sc & 0xf) + 1,
                                                                   2 * (sc >> 4) + 1)));
        }
        sum += F16(x[i].d) * y[i].d * (float)hsum_i32(acc);
    }
    *s = 0.125f * sum;
}

/* ---- IQ3 ------------------------------------------------------------------------------ */

static void iq3_xxs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq3_xxs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 8 * ib;
            const uint32_t aux = row4(x[i].qs + QK_K / 4 + 4 * ib);
            const __m256i mag = _mm256_set_epi32(
                (int)row4(llm__iq3xxs_grid[q[7]]), (int)row4(llm__iq3xxs_grid[q[6]]),
                (int)row4(llm__iq3xxs_grid[q[5]]), (int)row4(llm__iq3xxs_grid[q[4]]),
                (int)row4(llm__iq3xxs_grid[q[3]]), (int)row4(llm__iq3xxs_grid[q[2]]),
                (int)row4(llm__iq3xxs_grid[q[1]]), (int)row4(llm__iq3xxs_grid[q[0]]));
            const uint32_t signs = llm__iq_ksigns[aux & 127] |
                                   (uint32_t)llm__iq_ksigns[(aux >> 7) & 127] << 8 |
                                   (uint32_t)llm__iq_ksigns[(aux >> 14) & 127] << 16 |
                                   (uint32_t)llm__iq_ksigns[(aux >> 21) & 127] << 24;
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            const short ls = (short)(2 * (aux >> 28) + 1);
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(dot32(mag, q8, signs), _mm256_set1_epi16(ls)));
        }
        sum += F16(x[i].d) * y[i].d * (float)hsum_i32(acc);
    }
    *s = 0.25f * sum;
}

static void iq3_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq3_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 8 * ib;
            const int qh = x[i].qh[ib];
            int g[8];
            for (int k = 0; k < 8; k++)
                g[k] = (int)row4(llm__iq3s_grid[q[k] | ((qh << (8 - k)) & 256)]);
            const __m256i mag = _mm256_set_epi32(g[7], g[6], g[5], g[4], g[3], g[2], g[1], g[0]);
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            const short ls = (short)(1 + 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0xf));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(dot32(mag, q8, row4(x[i].signs + 4 * ib)),
                                                          _mm256_set1_epi16(ls)));
        }
        sum += F16(x[i].d) * y[i].d * (float)hsum_i32(acc);
    }
    *s = sum;
}

/* ---- IQ1_S ------------------------------------------------------------------------------ */

static void iq1_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq1_s *x = vx;
    const block_q8_K *y = vy;
    const __m256i ones8 = _mm256_set1_epi8(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        int sumi1 = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 4 * ib;
            const int qh = x[i].qh[ib];
            const __m256i grid = _mm256_set_epi64x(
                (long long)row8((const uint8_t *)llm__iq1s_grid[q[3] | (((qh >> 9) & 7) << 8)]),
                (long long)row8((const uint8_t *)llm__iq1s_grid[q[2] | (((qh >> 6) & 7) << 8)]),
                (long long)row8((const uint8_t *)llm__iq1s_grid[q[1] | (((qh >> 3) & 7) << 8)]),
                (long long)row8((const uint8_t *)llm__iq1s_grid[q[0] | ((qh & 7) << 8)]));
            const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
            /* grid points are -1, 0, 1: the product is q8 with the grid's sign */
            const __m256i p = _mm256_maddubs_epi16(ones8, _mm256_sign_epi8(q8, grid));
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)ls)));
            sumi1 += ls * (qh & 0x8000 ? -1 : 1) * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        sum += F16(x[i].d) * y[i].d * ((float)hsum_i32(acc) + IQ1S_DELTA * (float)sumi1);
    }
    *s = sum;
}

int llm__quant_iq_avx2_fill(llm_quant_traits *t)
{
    t[LLM_DT_IQ4_NL].vec_dot = iq4_nl_vec_dot;
    t[LLM_DT_IQ4_XS].vec_dot = iq4_xs_vec_dot;
    t[LLM_DT_IQ2_XXS].vec_dot = iq2_xxs_vec_dot;
    t[LLM_DT_IQ2_XS].vec_dot = iq2_xs_vec_dot;
    t[LLM_DT_IQ2_S].vec_dot = iq2_s_vec_dot;
    t[LLM_DT_IQ3_XXS].vec_dot = iq3_xxs_vec_dot;
    t[LLM_DT_IQ3_S].vec_dot = iq3_s_vec_dot;
    t[LLM_DT_IQ1_S].vec_dot = iq1_s_vec_dot;
    return 1;
}

#else

int llm__quant_iq_avx2_fill(llm_quant_traits *t)
{
    (void)t;
    return 0;
}

#endif
