/* quants_avx2.c - AVX2 + FMA + F16C kernels for the GGUF block formats.
 *
 * Compiled with -mavx2 -mfma -mf16c; quants.c installs these into llm__quant_best only
 * after checking that the CPU has all three. Every kernel forms the same integer sums per
 * block as the reference in quants.c (so the only differences are in the float rounding of
 * the final combination), and the activation quantisers produce bit-identical blocks.
 *
 * The integer core is the usual one for x86: _mm256_maddubs_epi16 multiplies unsigned by
 * signed bytes and adds neighbouring pairs into int16 (signed weights are made unsigned by
 * moving their sign onto the activation with _mm256_sign_epi8), then _mm256_madd_epi16
 * widens to int32, multiplying by ones or by the group scales. None of the pair sums can
 * saturate int16 for these formats (at most 2*63*127 for Q6_K). */
#include "quants.h"
#include "float_tiles.h"

float llm__f16_table[1 << 16];

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------- */

static inline float hsum_ps(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline float hsum_ps128(__m128 r)
{
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline float hmax_ps(__m256 v)
{
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline float hmin_ps(__m256 v)
{
    __m128 r = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_min_ps(r, _mm_movehl_ps(r, r));
    r = _mm_min_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    return _mm_cvtsi128_si32(r);
}

static inline float h2f(llm_f16 h)
{
    return _cvtsh_ss(h);
}

/* f16 -> f32 of the per-block scales of the 32-blocks by table lookup: two plain loads are
 * cheaper there than vcvtph2ps, which competes with the integer multiplies for the same
 * execution ports (about 15% per row on the H200 host's Xeon; llama.cpp uses the same
 * 256 KB table). Filled by llm__quant_avx2_fill before any kernel is published. */
static inline float tf(llm_f16 h)
{
    return llm__f16_table[h];
}

/* dx * dy, broadcast */
static inline __m256 scale_xy(const llm_f16 *dx, const llm_f16 *dy)
{
    return _mm256_set1_ps(tf(*dx) * tf(*dy));
}

static inline __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 16 bytes of packed nibbles -> 32 bytes: the low nibbles first, then the high ones, which
 * is the element order of the 32-blocks. */
static inline __m256i nibbles32(const uint8_t *p)
{
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes, byte i = 0xff where bit i is set. */
static inline __m256i bits32(const uint8_t *p)
{
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                             0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    /* broadcast straight from memory: a load, no shuffle-port work */
    __m256i v = _mm256_shuffle_epi8(_mm256_broadcastd_epi32(_mm_loadu_si32(p)), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* Sums of 4 neighbouring products of unsigned x and signed y bytes, as 8 floats. */
static inline __m256 dot_u8s8(__m256i x, __m256i y)
{
    __m256i p = _mm256_maddubs_epi16(x, y);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* The same for two signed byte vectors. */
static inline __m256 dot_s8s8(__m256i x, __m256i y)
{
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* Shuffle masks that broadcast one int16 of a 128-bit lane to a whole lane. K4: the same
 * scale k in both lanes (Q4_K/Q5_K groups of 32). K16: scale 2k in the low lane and 2k+1 in
 * the high one (the groups of 16 of Q2_K, Q3_K and Q6_K, where one 32-byte vector of
 * maddubs pairs spans two groups). */
static const uint8_t shuf_k4[8][32] __attribute__((aligned(32))) = {
#define R(k) {2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1,         \
              2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1,         \
              2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1, 2*k, 2*k+1}
    R(0), R(1), R(2), R(3), R(4), R(5), R(6), R(7)
#undef R
};
static const uint8_t shuf_k16[4][32] __attribute__((aligned(32))) = {
#define R(k) {4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1,         \
              4*k, 4*k+1, 4*k, 4*k+1, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, \
              4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3}
    R(0), R(1), R(2), R(3)
#undef R
};

static inline __m256i scale_k4(__m256i scales, int k)
{
    return _mm256_shuffle_epi8(scales, _mm256_load_si256((const __m256i *)shuf_k4[k]));
}

static inline __m256i scale_k16(__m256i scales, int k)
{
    return _mm256_shuffle_epi8(scales, _mm256_load_si256((const __m256i *)shuf_k16[k]));
}

/* ---- vec_dot: the 32-blocks ----------------------------------------------------- */

/* Two blocks per iteration into two accumulators, to keep two dependency chains going. */

static void q4_0_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256i q0 = _mm256_sub_epi8(nibbles32(x[i].qs), off);
        __m256i q1 = _mm256_sub_epi8(nibbles32(x[i + 1].qs), off);
        __m256 p0 = dot_s8s8(q0, _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256 p1 = dot_s8s8(q1, _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        acc1 = _mm256_fmadd_ps(scale_xy(&x[i + 1].d, &y[i + 1].d), p1, acc1);
    }
    if (i < nb) {
        __m256i q0 = _mm256_sub_epi8(nibbles32(x[i].qs), off);
        __m256 p0 = dot_s8s8(q0, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* Q4_1 and Q5_1: sum((d*q + m) * y) = d*dy*sum(q*qy) + m*s, with s = dy*sum(qy) from Q8_1. */
static void q4_1_q8_1(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK8_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float summs = 0.0f;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256 p0 = dot_u8s8(nibbles32(x[i].qs), load32(y[i].qs));
        __m256 p1 = dot_u8s8(nibbles32(x[i + 1].qs), load32(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        acc1 = _mm256_fmadd_ps(scale_xy(&x[i + 1].d, &y[i + 1].d), p1, acc1);
        summs += tf(x[i].m) * tf(y[i].s) + tf(x[i + 1].m) * tf(y[i + 1].s);
    }
    if (i < nb) {
        __m256 p0 = dot_u8s8(nibbles32(x[i].qs), load32(y[i].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        summs += tf(x[i].m) * tf(y[i].s);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1)) + summs;
}

/* Q5_0: (nibble | hbit << 4) - 16 is, as a signed byte, the nibble with 0xf0 or-ed in
 * wherever the high bit is clear. */
static inline __m256i q5_0_values(const block_q5_0 *b)
{
    __m256i hi = _mm256_andnot_si256(bits32(b->qh), _mm256_set1_epi8((char)0xf0));
    return _mm256_or_si256(nibbles32(b->qs), hi);
}

static void q5_0_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256 p0 = dot_s8s8(q5_0_values(&x[i]), _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256 p1 = dot_s8s8(q5_0_values(&x[i + 1]),
                             _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        acc1 = _mm256_fmadd_ps(scale_xy(&x[i + 1].d, &y[i + 1].d), p1, acc1);
    }
    if (i < nb) {
        __m256 p0 = dot_s8s8(q5_0_values(&x[i]), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

static inline __m256i q5_1_values(const block_q5_1 *b)
{
    __m256i hi = _mm256_and_si256(bits32(b->qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(b->qs), hi);
}

static void q5_1_q8_1(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK8_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float summs = 0.0f;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256 p0 = dot_u8s8(q5_1_values(&x[i]), load32(y[i].qs));
        __m256 p1 = dot_u8s8(q5_1_values(&x[i + 1]), load32(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        acc1 = _mm256_fmadd_ps(scale_xy(&x[i + 1].d, &y[i + 1].d), p1, acc1);
        summs += tf(x[i].m) * tf(y[i].s) + tf(x[i + 1].m) * tf(y[i + 1].s);
    }
    if (i < nb) {
        __m256 p0 = dot_u8s8(q5_1_values(&x[i]), load32(y[i].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        summs += tf(x[i].m) * tf(y[i].s);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1)) + summs;
}

static void q8_0_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256 p0 = dot_s8s8(_mm256_loadu_si256((const __m256i *)x[i].qs),
                             _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256 p1 = dot_s8s8(_mm256_loadu_si256((const __m256i *)x[i + 1].qs),
                             _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
        acc1 = _mm256_fmadd_ps(scale_xy(&x[i + 1].d, &y[i + 1].d), p1, acc1);
    }
    if (i < nb) {
        __m256 p0 = dot_s8s8(_mm256_loadu_si256((const __m256i *)x[i].qs),
                             _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(scale_xy(&x[i].d, &y[i].d), p0, acc0);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- vec_dot: the K-quants ------------------------------------------------------ */

/* Q2_K: value 0..3 times a 4-bit scale per group of 16, minus dmin * min * sum(q8) where
 * the sum per group comes from the Q8_K bsums. */
static void q2_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float dall = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const __m128i sm = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i prod =
            _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m128i lane = h ? _mm256_extracti128_si256(sc16, 1)
                                   : _mm256_castsi256_si128(sc16);
            const __m256i scales = _mm256_broadcastsi128_si256(lane);
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++, q8 += 32) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)q8));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_k16(scales, k), p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* Q3_K: the 3-bit value v = low2 | hbit << 2 is in 0..7 and the weight is v - 4, so the dot
 * is sum(sc * v * q8) - 4 * sum(sc * bsum) per super-block: no per-element subtraction. */
static void q3_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint32_t w[3], u[4];
        memcpy(w, x[i].scales, 12);
        u[0] = (w[0] & 0x0f0f0f0f) | ((w[2] & 0x03030303) << 4);
        u[1] = (w[1] & 0x0f0f0f0f) | (((w[2] >> 2) & 0x03030303) << 4);
        u[2] = ((w[0] >> 4) & 0x0f0f0f0f) | (((w[2] >> 4) & 0x03030303) << 4);
        u[3] = ((w[1] >> 4) & 0x0f0f0f0f) | (((w[2] >> 6) & 0x03030303) << 4);
        const __m256i sc16 = _mm256_sub_epi16(
            _mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0])),
            _mm256_set1_epi16(32));
        __m256i sumi = _mm256_slli_epi32(
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums)), 2);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);

        __m256i hb = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        const int8_t *q8 = y[i].qs;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m128i lane = h ? _mm256_extracti128_si256(sc16, 1)
                                   : _mm256_castsi256_si128(sc16);
            const __m256i scales = _mm256_broadcastsi128_si256(lane);
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++, q8 += 32) {
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                __m256i hi = _mm256_slli_epi16(_mm256_and_si256(hb, m1), 2);
                hb = _mm256_srli_epi16(hb, 1);
                __m256i q = _mm256_or_si256(lo, hi);
                __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)q8));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_k16(scales, k), p));
            }
        }
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* The 8 six-bit scales and 8 mins of Q4_K/Q5_K, unpacked four at a time with word masks:
 * out[0..1] = scales 0-3, 4-7; out[2..3] = mins 0-3, 4-7. */
static inline void k4_unpack(const uint8_t *p, uint32_t out[4])
{
    uint32_t w[3];
    memcpy(w, p, 12);
    out[0] = w[0] & 0x3f3f3f3f;
    out[1] = (w[2] & 0x0f0f0f0f) | ((w[0] >> 2) & 0x30303030);
    out[2] = w[1] & 0x3f3f3f3f;
    out[3] = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 2) & 0x30303030);
}

/* The min term of Q4_K/Q5_K: sum over groups of min * (bsum pair), as 4 int32 lanes. */
static inline __m128i k4_mins_dot(const __m256i ms16, const int16_t *bsums)
{
    const __m256i b = _mm256_loadu_si256((const __m256i *)bsums);
    const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(ms16, 1), pairs);
}

static void q4_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint32_t u[4];
        k4_unpack(x[i].scales, u);
        const __m256i ms16 = _mm256_cvtepu8_epi16(
            _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_mins_dot(ms16, y[i].bsums)),
                            accm);

        const __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms16));
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            pl = _mm256_madd_epi16(scale_k4(scales, 2 * j), pl);
            ph = _mm256_madd_epi16(scale_k4(scales, 2 * j + 1), ph);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc) + hsum_ps128(accm);
}

static void q5_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint32_t u[4];
        k4_unpack(x[i].scales, u);
        const __m256i ms16 = _mm256_cvtepu8_epi16(
            _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_mins_dot(ms16, y[i].bsums)),
                            accm);

        const __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms16));
        __m256i hb = _mm256_loadu_si256((const __m256i *)x[i].qh);
        const uint8_t *q5 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++, q5 += 32, q8 += 64) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)q5);
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, m1), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 1), m1), 4));
            hb = _mm256_srli_epi16(hb, 2);
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            pl = _mm256_madd_epi16(scale_k4(scales, 2 * j), pl);
            ph = _mm256_madd_epi16(scale_k4(scales, 2 * j + 1), ph);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc) + hsum_ps128(accm);
}

/* Q6_K: v = low4 | high2 << 4 in 0..63, weight v - 32; as for Q3_K the offset is taken out
 * once per super-block as 32 * sum(scale * bsum). */
static void q6_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m256i sc16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i sumi = _mm256_slli_epi32(
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums)), 5);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);

        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const __m128i lane = h ? _mm256_extracti128_si256(sc16, 1)
                                   : _mm256_castsi256_si128(sc16);
            const __m256i scales = _mm256_broadcastsi128_si256(lane);
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hbits = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(hbits, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(hbits, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(hbits, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(hbits, 6), m2), 4));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++, q8 += 32) {
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)q8));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_k16(scales, k), p));
            }
        }
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- gemm: one weight row by several tokens ------------------------------------ */

/* For prompt processing the same weight row meets many activation rows. The tiles below
 * take one weight row and RN <= 4 activation rows: each weight block (and its scales) is
 * unpacked once for all RN tokens, the call and the final reductions are shared, and the
 * 2*RN independent accumulators keep the multiply units busy.
 *
 * Every pair's result is bit for bit that of the vec_dot above: the same integer sums, the
 * same two float chains over the even and the odd blocks (or the same per-super-block
 * fmas), the same scalar products, in the same order. So a token's logits do not depend on
 * how the tokens were batched (test_api checks that with memcmp). This relies on the file
 * being compiled without floating-point contraction, as -std=c11 implies for gcc.
 *
 * RN is a constant at every call site (the tiles are always inlined), so the loops over
 * the tokens unroll and the arrays live in registers. */
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define TILE_MAX 4

/* The 32-blocks. Which format, as a constant the inlined tile specialises on. */
enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

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

/* the block's 32 values: signed for Q4_0, Q5_0, Q8_0; unsigned for Q4_1, Q5_1 */
static ALWAYS_INLINE __m256i blk32_values(int kind, const void *b)
{
    switch (kind) {
    case K_Q4_0:
        return _mm256_sub_epi8(nibbles32(((const block_q4_0 *)b)->qs), _mm256_set1_epi8(8));
    case K_Q4_1: return nibbles32(((const block_q4_1 *)b)->qs);
    case K_Q5_0: return q5_0_values(b);
    case K_Q5_1: return q5_1_values(b);
    default: return load32(((const block_q8_0 *)b)->qs);
    }
}

/* d is the first member of every 32-block; m the second of Q4_1/Q5_1 (s of Q8_1). */
static ALWAYS_INLINE llm_f16 blk32_f16(const void *b, int i)
{
    return ((const llm_f16 *)b)[i];
}

/* One block of the weight row against block i of RN activation rows, into acc[c]. The
 * scale dx * dy is formed as a vector product of two broadcasts (the same rounding as the
 * scalar product of vec_dot): dx once per block, dy straight from the table in memory, so
 * that no shuffle is spent per pair. */
static ALWAYS_INLINE void tile32_block(int kind, int RN, const char *xb, const char *y,
                                       size_t by, int64_t i, __m256 *acc)
{
    const int has_min = kind == K_Q4_1 || kind == K_Q5_1;
    const size_t ysz = has_min ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const __m256i q = blk32_values(kind, xb);
    const __m256i aq = has_min ? q : _mm256_sign_epi8(q, q);
    const __m256 dx = _mm256_set1_ps(tf(blk32_f16(xb, 0)));
    for (int c = 0; c < RN; c++) {
        const char *yb = y + c * by + (size_t)i * ysz;
        const __m256i yq = load32(yb + (has_min ? 4 : 2));
        const __m256 p = dot_u8s8(aq, has_min ? yq : _mm256_sign_epi8(yq, q));
        const __m256 d =
            _mm256_mul_ps(dx, _mm256_broadcast_ss(&llm__f16_table[blk32_f16(yb, 0)]));
        acc[c] = _mm256_fmadd_ps(d, p, acc[c]);
    }
}

/* m * s of block i for the RN tokens, lane c (built in registers: a 16-byte load of four
 * scalars just stored would miss store forwarding) */
static ALWAYS_INLINE __m128 tile32_ms(int RN, const char *xb, const char *y, size_t by, int64_t i)
{
#define S_OF(c) (c < RN ? tf(blk32_f16(y + c * by + (size_t)i * sizeof(block_q8_1), 1)) : 0.0f)
    const __m128 sy = _mm_set_ps(S_OF(3), S_OF(2), S_OF(1), S_OF(0));
#undef S_OF
    return _mm_mul_ps(_mm_set1_ps(tf(blk32_f16(xb, 1))), sy);
}

static ALWAYS_INLINE void tile32(int kind, int RN, int64_t nb, float *s, size_t bs,
                                 const char *x, const char *y, size_t by)
{
    const int has_min = kind == K_Q4_1 || kind == K_Q5_1;
    const size_t xsz = blk32_size(kind);
    __m256 acc0[TILE_MAX], acc1[TILE_MAX];
    __m128 summs = _mm_setzero_ps(); /* lane c: the sum of m * s of token c */
    for (int c = 0; c < RN; c++)
        acc0[c] = acc1[c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const char *xb = x + (size_t)i * xsz;
        tile32_block(kind, RN, xb, y, by, i, acc0);
        tile32_block(kind, RN, xb + xsz, y, by, i + 1, acc1);
        if (has_min)
            summs = _mm_add_ps(summs, _mm_add_ps(tile32_ms(RN, xb, y, by, i),
                                                 tile32_ms(RN, xb + xsz, y, by, i + 1)));
    }
    if (i < nb) {
        const char *xb = x + (size_t)i * xsz;
        tile32_block(kind, RN, xb, y, by, i, acc0);
        if (has_min)
            summs = _mm_add_ps(summs, tile32_ms(RN, xb, y, by, i));
    }
    float m[4];
    _mm_storeu_ps(m, summs);
    for (int c = 0; c < RN; c++) {
        const float d = hsum_ps(_mm256_add_ps(acc0[c], acc1[c]));
        s[c * bs] = has_min ? d + m[c] : d;
    }
}

/* Every weight row against the activation rows in groups of RN (the last group smaller).
 * TILE(rn, s, x, y) must expand to a call with a constant rn. */
#define GEMM_DRIVER(RN, TILE)                                                               \
    do {                                                                                    \
        for (int64_t r = 0; r < nr; r++) {                                                  \
            const char *xr = (const char *)vx + r * bx;                                     \
            int64_t c = 0;                                                                  \
            for (; c + (RN) <= nc; c += (RN))                                               \
                TILE(RN, s + c * bs + r, xr, (const char *)vy + c * by);                    \
            switch (nc - c) {                                                               \
            case 3: TILE(3, s + c * bs + r, xr, (const char *)vy + c * by); break;          \
            case 2: TILE(2, s + c * bs + r, xr, (const char *)vy + c * by); break;          \
            case 1: TILE(1, s + c * bs + r, xr, (const char *)vy + c * by); break;          \
            default: break;                                                                 \
            }                                                                               \
        }                                                                                   \
    } while (0)

#define GEMM32(name, kind, RN)                                                              \
    static void name(int64_t n, float *s, size_t bs, const void *vx, size_t bx,            \
                     const void *vy, size_t by, int64_t nr, int64_t nc)                    \
    {                                                                                       \
        const int64_t nb = n / 32;                                                          \
        GEMM_DRIVER(RN, TILE32_##kind);                                                     \
    }
#define TILE32_K_Q4_0(rn, s_, x_, y_) tile32(K_Q4_0, rn, nb, s_, bs, x_, y_, by)
#define TILE32_K_Q4_1(rn, s_, x_, y_) tile32(K_Q4_1, rn, nb, s_, bs, x_, y_, by)
#define TILE32_K_Q5_0(rn, s_, x_, y_) tile32(K_Q5_0, rn, nb, s_, bs, x_, y_, by)
#define TILE32_K_Q5_1(rn, s_, x_, y_) tile32(K_Q5_1, rn, nb, s_, bs, x_, y_, by)
#define TILE32_K_Q8_0(rn, s_, x_, y_) tile32(K_Q8_0, rn, nb, s_, bs, x_, y_, by)

GEMM32(gemm_q4_0, K_Q4_0, 4)
GEMM32(gemm_q4_1, K_Q4_1, 4)
GEMM32(gemm_q5_0, K_Q5_0, 4)
GEMM32(gemm_q5_1, K_Q5_1, 4)
GEMM32(gemm_q8_0, K_Q8_0, 4)

/* The K-quants: per super-block and token, the integer sum of vec_dot in an int32 vector,
 * then the same fmas with d and dmin as vec_dot. */

static ALWAYS_INLINE void tile_q4_K(int is_q5, int RN, int64_t nb, float *s, size_t bs,
                                    const char *x, const char *y, size_t by)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m1 = _mm256_set1_epi8(1);
    const size_t xsz = is_q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m256 acc[TILE_MAX];
    __m128 accm[TILE_MAX];
    for (int c = 0; c < RN; c++) {
        acc[c] = _mm256_setzero_ps();
        accm[c] = _mm_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        const block_q8_K *yb[TILE_MAX];
        for (int c = 0; c < RN; c++)
            yb[c] = (const block_q8_K *)(y + c * by) + i;
        /* block_q4_K and block_q5_K share d, dmin and scales; Q5_K has qh before qs */
        const block_q4_K *x4 = (const block_q4_K *)(x + (size_t)i * xsz);
        const block_q5_K *x5 = (const block_q5_K *)x4;
        uint32_t u[4];
        k4_unpack(x4->scales, u);
        const __m256i ms16 = _mm256_cvtepu8_epi16(
            _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
        const float dx = h2f(x4->d), mx = h2f(x4->dmin);
        for (int c = 0; c < RN; c++)
            accm[c] = _mm_fmadd_ps(_mm_set1_ps(-yb[c]->d * mx),
                                   _mm_cvtepi32_ps(k4_mins_dot(ms16, yb[c]->bsums)), accm[c]);
        const __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms16));
        const uint8_t *q4 = is_q5 ? x5->qs : x4->qs;
        __m256i hb = is_q5 ? _mm256_loadu_si256((const __m256i *)x5->qh)
                           : _mm256_setzero_si256();
        __m256i sumi[TILE_MAX];
        for (int c = 0; c < RN; c++)
            sumi[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++, q4 += 32) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            if (is_q5) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, m1), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), m1), 4));
                hb = _mm256_srli_epi16(hb, 2);
            }
            const __m256i sl = scale_k4(scales, 2 * j), sh = scale_k4(scales, 2 * j + 1);
            for (int c = 0; c < RN; c++) {
                const int8_t *q8 = yb[c]->qs + 64 * j;
                __m256i pl = _mm256_maddubs_epi16(lo, load32(q8));
                __m256i ph = _mm256_maddubs_epi16(hi, load32(q8 + 32));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(sl, pl),
                                                                     _mm256_madd_epi16(sh, ph)));
            }
        }
        for (int c = 0; c < RN; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(yb[c]->d * dx), _mm256_cvtepi32_ps(sumi[c]),
                                     acc[c]);
    }
    for (int c = 0; c < RN; c++)
        s[c * bs] = hsum_ps(acc[c]) + hsum_ps128(accm[c]);
}

static ALWAYS_INLINE void tile_q6_K(int RN, int64_t nb, float *s, size_t bs, const char *x,
                                    const char *y, size_t by)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256 acc[TILE_MAX];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const block_q8_K *yb[TILE_MAX];
        for (int c = 0; c < RN; c++)
            yb[c] = (const block_q8_K *)(y + c * by) + i;
        const block_q6_K *xb = (const block_q6_K *)x + i;
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)xb->scales));
        __m256i sumi[TILE_MAX];
        /* the offset of 32, taken out once per super-block as in vec_dot */
        for (int c = 0; c < RN; c++)
            sumi[c] = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32(
                    _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)yb[c]->bsums)),
                    5));
        const uint8_t *ql = xb->ql, *qh = xb->qh;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const __m128i lane = h ? _mm256_extracti128_si256(sc16, 1)
                                   : _mm256_castsi256_si128(sc16);
            const __m256i scales = _mm256_broadcastsi128_si256(lane);
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hbits = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(hbits, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(hbits, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(hbits, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(hbits, 6), m2), 4));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i sk = scale_k16(scales, k);
                for (int c = 0; c < RN; c++) {
                    const int8_t *q8 = yb[c]->qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(q[k], load32(q8));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(sk, p));
                }
            }
        }
        const float dx = h2f(xb->d);
        for (int c = 0; c < RN; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(yb[c]->d * dx), _mm256_cvtepi32_ps(sumi[c]),
                                     acc[c]);
    }
    for (int c = 0; c < RN; c++)
        s[c * bs] = hsum_ps(acc[c]);
}

#define GEMMK(name, TILE)                                                                   \
    static void name(int64_t n, float *s, size_t bs, const void *vx, size_t bx,            \
                     const void *vy, size_t by, int64_t nr, int64_t nc)                    \
    {                                                                                       \
        const int64_t nb = n / QK_K;                                                        \
        GEMM_DRIVER(TILE_MAX, TILE);                                                        \
    }
#define TILE_Q4_K(rn, s_, x_, y_) tile_q4_K(0, rn, nb, s_, bs, x_, y_, by)
#define TILE_Q5_K(rn, s_, x_, y_) tile_q4_K(1, rn, nb, s_, bs, x_, y_, by)
#define TILE_Q6_K(rn, s_, x_, y_) tile_q6_K(rn, nb, s_, bs, x_, y_, by)

GEMMK(gemm_q4_K, TILE_Q4_K)
GEMMK(gemm_q5_K, TILE_Q5_K)
GEMMK(gemm_q6_K, TILE_Q6_K)

/* ---- float rows ----------------------------------------------------------------- */

static void f32_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    double sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

static inline __m256 load_f16x8(const llm_f16 *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* Like ggml's AVX path: four 8-wide float accumulators over 32-element steps, the leftover
 * elements added in double. */
static float dot_f16(int64_t n, const llm_f16 *x, const llm_f16 *y)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), a3);
    }
    double sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        sum += (double)(h2f(x[i]) * h2f(y[i]));
    return (float)sum;
}

static void f16_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = dot_f16(n, vx, vy);
}

/* bf16 is the top half of an f32: widen and shift. Same accumulation scheme as dot_f16. */
static inline __m256 load_bf16x8(const llm_bf16 *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static void bf16_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const llm_bf16 *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(x + i + 16), load_bf16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(x + i + 24), load_bf16x8(y + i + 24), a3);
    }
    double sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        sum += (double)(llm__bf16_to_f32(x[i]) * llm__bf16_to_f32(y[i]));
    *s = (float)sum;
}

/* Float tiles (gemm): F32, F16 and BF16 weights against f32 activation rows (for F16 and
 * BF16 the vec_dot type's values, widened once per matmul by the backend: gemm_f32_act).
 * One weight row by up to 3 tokens, each pair with the dot's four accumulators and the
 * same fused multiply-adds in the same order, finished by the same horizontal sum: every
 * result has the dot's bits. n is a multiple of 32 (the backend's condition). Each weight
 * vector is converted once for the 3 tokens. */
static ALWAYS_INLINE __m256 ft_load(int type, const char *row, int64_t i)
{
    if (type == FT_F16)
        return load_f16x8((const llm_f16 *)row + i);
    if (type == FT_BF16)
        return load_bf16x8((const llm_bf16 *)row + i);
    return _mm256_loadu_ps((const float *)row + i);
}

static ALWAYS_INLINE void ft_tile(int type, int T, int64_t n, float *s, size_t bs,
                                  const char *x, const char *y, size_t by)
{
    __m256 acc[3][4];
#pragma GCC unroll 3
    for (int t = 0; t < T; t++)
        acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            const __m256 w = ft_load(type, x, i + 8 * q);
#pragma GCC unroll 3
            for (int t = 0; t < T; t++)
                acc[t][q] = _mm256_fmadd_ps(
                    w, _mm256_loadu_ps((const float *)(y + (size_t)t * by) + i + 8 * q), acc[t][q]);
        }
    }
#pragma GCC unroll 3
    for (int t = 0; t < T; t++)
        s[(size_t)t * bs] = (float)(double)hsum_ps(
            _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3])));
}

static ALWAYS_INLINE void ft_gemm(int type, int64_t n, float *s, size_t bs, const void *vx,
                                  size_t bx, const void *vy, size_t by, int64_t nr, int64_t nc)
{
    const char *x = vx, *y = vy;
    for (int64_t c = 0; c < nc; c += 3) {
        const int T = nc - c >= 3 ? 3 : (int)(nc - c);
        for (int64_t r = 0; r < nr; r++) {
            float *o = s + (size_t)c * bs + (size_t)r;
            const char *xr = x + (size_t)r * bx, *yc = y + (size_t)c * by;
            if (T == 3)
                ft_tile(type, 3, n, o, bs, xr, yc, by);
            else if (T == 2)
                ft_tile(type, 2, n, o, bs, xr, yc, by);
            else
                ft_tile(type, 1, n, o, bs, xr, yc, by);
        }
    }
}

FT_DEFINE_GEMMS(ft_gemm)

static void bf16_to_float(const void *vx, float *y, int64_t n)
{
    const llm_bf16 *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, load_bf16x8(x + i));
    for (; i < n; i++)
        y[i] = llm__bf16_to_f32(x[i]);
}

/* The tails go through an 8-element buffer so that every element is converted by the same
 * instruction. */
static void f32_to_f16_row(const float *x, llm_f16 *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float in[8] = {0};
        llm_f16 out[8];
        memcpy(in, x + i, (size_t)(n - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)out,
                         _mm256_cvtps_ph(_mm256_loadu_ps(in), _MM_FROUND_TO_NEAREST_INT));
        memcpy(y + i, out, (size_t)(n - i) * sizeof(llm_f16));
    }
}

static void f16_to_f32_row(const llm_f16 *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, load_f16x8(x + i));
    if (i < n) {
        llm_f16 in[8] = {0};
        float out[8];
        memcpy(in, x + i, (size_t)(n - i) * sizeof(llm_f16));
        _mm256_storeu_ps(out, load_f16x8(in));
        memcpy(y + i, out, (size_t)(n - i) * sizeof(float));
    }
}

static void f16_from_float(const float *x, void *y, int64_t n)
{
    f32_to_f16_row(x, y, n);
}

static void f16_to_float(const void *x, float *y, int64_t n)
{
    f16_to_f32_row(x, y, n);
}

/* ---- activation quantisers ------------------------------------------------------ */

/* roundf() on 8 lanes: truncate, then step away from zero when the dropped fraction is at
 * least one half. x - trunc(x) is exact, so this matches roundf for every input (the
 * rounding instruction's nearest-even mode would differ on exact halves). */
static inline __m256i round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(ge, step)));
}

/* Four vectors of 8 int32 (elements 0-7, 8-15, ...) -> 32 int8 in element order. */
static inline __m256i pack_i32x4(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b); /* lanes: a0-3 b0-3 | a4-7 b4-7 */
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i v = _mm256_packs_epi16(ab, cd); /* dwords: a0 b0 c0 d0 | a1 b1 c1 d1 */
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float absmax32(const float *x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m0 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x)),
                              _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8)));
    __m256 m1 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)),
                              _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24)));
    return hmax_ps(_mm256_max_ps(m0, m1));
}

static void q8_0_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float d = absmax32(x) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256i q0 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x), id));
        __m256i q1 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
        __m256i q2 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
        __m256i q3 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_i32x4(q0, q1, q2, q3));
    }
}

static void q8_1_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float d = absmax32(x) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256i q0 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x), id));
        __m256i q1 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
        __m256i q2 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
        __m256i q3 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
        int sum = hsum_epi32(
            _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3)));
        y[i].s = _cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_i32x4(q0, q1, q2, q3));
    }
}

/* nearest_int(x * iscale), capped at 127 */
static inline __m256i q8_K_round(__m256 x, __m256 iscale)
{
    __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(x, iscale));
    return _mm256_min_epi32(q, _mm256_set1_epi32(127));
}

/* Q8_K: the reference takes the first element of largest magnitude; it is +max or -max
 * depending on which of the row's maximum and minimum is larger in magnitude, and only an
 * exact tie between the two needs a scan for the first occurrence. The conversion
 * instruction rounds to nearest even in the default mode, like ggml's nearest_int. */
static void q8_K_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 vmax = _mm256_loadu_ps(x), vmin = vmax;
        for (int j = 8; j < QK_K; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            vmax = _mm256_max_ps(vmax, v);
            vmin = _mm256_min_ps(vmin, v);
        }
        const float hi = hmax_ps(vmax), lo = -hmin_ps(vmin);
        const float max = llm__q8k_signed_max(x, QK_K, hi, lo);
        if (max == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i ones8 = _mm256_set1_epi8(1);
        const __m256i ones16 = _mm256_set1_epi16(1);
        __m256i sums[8];
        for (int c = 0; c < 8; c++) {
            const float *p = x + 32 * c;
            __m256i q0 = q8_K_round(_mm256_loadu_ps(p), mul);
            __m256i q1 = q8_K_round(_mm256_loadu_ps(p + 8), mul);
            __m256i q2 = q8_K_round(_mm256_loadu_ps(p + 16), mul);
            __m256i q3 = q8_K_round(_mm256_loadu_ps(p + 24), mul);
            __m256i q = pack_i32x4(q0, q1, q2, q3);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * c), q);
            /* sums of 4 consecutive elements: q0-3, q4-7, q8-11, q12-15 | q16-19 ... */
            sums[c] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
        }
        /* Two rounds of horizontal adds over four chunks give, per 128-bit lane, the sums
         * of 16: low lane = first half of chunks c..c+3, high lane = second half. */
        for (int c = 0; c < 8; c += 4) {
            __m256i h01 = _mm256_hadd_epi32(sums[c], sums[c + 1]);
            __m256i h23 = _mm256_hadd_epi32(sums[c + 2], sums[c + 3]);
            __m256i g = _mm256_hadd_epi32(h01, h23);
            /* g = [c.0 c+1.0 c+2.0 c+3.0 | c.1 c+1.1 c+2.1 c+3.1] (chunk.half) */
            __m128i first = _mm256_castsi256_si128(g), second = _mm256_extracti128_si256(g, 1);
            __m128i lo16 = _mm_packs_epi32(_mm_unpacklo_epi32(first, second),
                                           _mm_unpackhi_epi32(first, second));
            _mm_storeu_si128((__m128i *)(y[i].bsums + 2 * c), lo16);
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- registration --------------------------------------------------------------- */

/* Attention helpers: 4 accumulators of 8 lanes, a scalar tail. */
static float dot_f32_f16(int64_t n, const float *x, const llm_f16 *y)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load_f16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load_f16x8(y + i), a0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += x[i] * h2f(y[i]);
    return s;
}

static void axpy_f16(int64_t n, float *y, float a, const llm_f16 *x)
{
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * h2f(x[i]);
}

/* llm__exp_row, four lanes of doubles at a time: the scalar steps of quants.c's exp_one */
static __m128 exp4(__m128 x)
{
    const __m256d xd = _mm256_cvtps_pd(x);
    const __m256d z = _mm256_mul_pd(_mm256_set1_pd(LLM_EXP_INV_LN2_N), xd);
    __m256d kd = _mm256_add_pd(z, _mm256_set1_pd(LLM_EXP_SHIFT));
    const __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, _mm256_set1_pd(LLM_EXP_SHIFT));
    const __m256d r = _mm256_sub_pd(z, kd);
    const __m256i idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    const __m256i tab = _mm256_i64gather_epi64((const long long *)llm__exp2_tab, idx, 8);
    const __m256d sc = _mm256_castsi256_pd(_mm256_add_epi64(tab, _mm256_slli_epi64(ki, 47)));
    const __m256d p = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(LLM_EXP_C0), r),
                                    _mm256_set1_pd(LLM_EXP_C1));
    const __m256d r2 = _mm256_mul_pd(r, r);
    const __m256d q = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(LLM_EXP_C2), r),
                                    _mm256_set1_pd(1.0));
    const __m256d y = _mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(p, r2), q), sc);
    __m128 out = _mm256_cvtpd_ps(y);
    /* below the threshold: 0; NaN stays NaN */
    const __m128 low = _mm_cmp_ps(x, _mm_set1_ps(LLM_EXP_MIN), _CMP_LT_OQ);
    out = _mm_andnot_ps(low, out);
    const __m128 nan = _mm_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm_blendv_ps(out, x, nan);
}

static void exp_row(int64_t n, const float *x, float *y)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(y + i, exp4(_mm_loadu_ps(x + i)));
    if (i < n) {
        float in[4] = {0, 0, 0, 0}, out[4];
        for (int64_t j = i; j < n; j++)
            in[j - i] = x[j];
        _mm_storeu_ps(out, exp4(_mm_loadu_ps(in)));
        for (int64_t j = i; j < n; j++)
            y[j] = out[j - i];
    }
}

/* Attention blocks (llm__attn_scores_f16, llm__attn_accum_f16, llm__attn_softmax, see
 * quants.h): per head the operations of dot_f32_f16, axpy_f16 and the scalar bookkeeping,
 * without a call per key; each key row converted once for two heads, the value
 * accumulators in registers 64 elements at a time (the elements are independent, so the
 * split does not change a bit). */
static ALWAYS_INLINE void attn_scores_nh(int NH, int32_t hd, const float *q,
                                         const llm_f16 *const *k, int nk, float *sc)
{
    for (int u = 0; u < nk; u++) {
        __m256 a[2][4];
#pragma GCC unroll 2
        for (int h = 0; h < NH; h++)
            a[h][0] = a[h][1] = a[h][2] = a[h][3] = _mm256_setzero_ps();
        const llm_f16 *kr = k[u];
        for (int32_t i = 0; i < hd; i += 32) {
            __m256 kv[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                kv[j] = load_f16x8(kr + i + 8 * j);
#pragma GCC unroll 2
            for (int h = 0; h < NH; h++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    a[h][j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)h * hd + i + 8 * j),
                                              kv[j], a[h][j]);
        }
#pragma GCC unroll 2
        for (int h = 0; h < NH; h++)
            sc[h * LLM_ATT_BLOCK + u] = hsum_ps(
                _mm256_add_ps(_mm256_add_ps(a[h][0], a[h][1]), _mm256_add_ps(a[h][2], a[h][3])));
    }
}

static void attn_scores_f16(int32_t hd, int32_t nh, const float *q, const llm_f16 *const *k,
                            int nk, float *sc)
{
    if (hd % 32) {
        llm__attn_scores_f16_generic(hd, nh, q, k, nk, sc);
        return;
    }
    int32_t h = 0;
    for (; h + 2 <= nh; h += 2)
        attn_scores_nh(2, hd, q + (size_t)h * hd, k, nk, sc + h * LLM_ATT_BLOCK);
    if (h < nh)
        attn_scores_nh(1, hd, q + (size_t)h * hd, k, nk, sc + h * LLM_ATT_BLOCK);
}

/* V vectors of 8 (at most 8) of one head's accumulator over the block */
static ALWAYS_INLINE void attn_accum_part(int V, float *acc, const llm_f16 *const *v,
                                          int64_t off, int nk, const float *ms, const float *vs)
{
    __m256 a[8];
#pragma GCC unroll 8
    for (int j = 0; j < V; j++)
        a[j] = _mm256_loadu_ps(acc + 8 * j);
    for (int u = 0; u < nk; u++) {
        if (ms[u] != 1.0f) {
            const __m256 mv = _mm256_set1_ps(ms[u]);
#pragma GCC unroll 8
            for (int j = 0; j < V; j++)
                a[j] = _mm256_mul_ps(a[j], mv);
        }
        const __m256 w = _mm256_set1_ps(vs[u]);
        const llm_f16 *vr = v[u] + off;
#pragma GCC unroll 8
        for (int j = 0; j < V; j++)
            a[j] = _mm256_fmadd_ps(w, load_f16x8(vr + 8 * j), a[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < V; j++)
        _mm256_storeu_ps(acc + 8 * j, a[j]);
}

static void attn_accum_f16(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v, int nk,
                           const float *ms, const float *vs)
{
    if (hd % 8) {
        llm__attn_accum_f16_generic(hd, nh, acc, v, nk, ms, vs);
        return;
    }
    for (int32_t h = 0; h < nh; h++) {
        float *ah = acc + (size_t)h * hd;
        const float *mh = ms + h * LLM_ATT_BLOCK, *vh = vs + h * LLM_ATT_BLOCK;
        int32_t d = 0;
        for (; d + 64 <= hd; d += 64)
            attn_accum_part(8, ah + d, v, d, nk, mh, vh);
        switch ((hd - d) / 8) {
        case 7: attn_accum_part(7, ah + d, v, d, nk, mh, vh); break;
        case 6: attn_accum_part(6, ah + d, v, d, nk, mh, vh); break;
        case 5: attn_accum_part(5, ah + d, v, d, nk, mh, vh); break;
        case 4: attn_accum_part(4, ah + d, v, d, nk, mh, vh); break;
        case 3: attn_accum_part(3, ah + d, v, d, nk, mh, vh); break;
        case 2: attn_accum_part(2, ah + d, v, d, nk, mh, vh); break;
        case 1: attn_accum_part(1, ah + d, v, d, nk, mh, vh); break;
        default: break;
        }
    }
}

/* x (+) y = y > x ? y : x, x the earlier (the first of the largest) */
static ALWAYS_INLINE __m256 raise_op(__m256 x, __m256 y)
{
    return _mm256_blendv_ps(x, y, _mm256_cmp_ps(y, x, _CMP_GT_OQ));
}

/* lanes moved up by k (lane u gets lane u - k), the first k lanes from fill */
static ALWAYS_INLINE __m256 lanes_up(__m256 v, int k, __m256 fill)
{
    const __m256i idx = _mm256_sub_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm256_set1_epi32(k));
    const __m256 moved = _mm256_permutevar8x32_ps(v, _mm256_and_si256(idx, _mm256_set1_epi32(7)));
    const __m256 first = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(k),
                                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    return _mm256_blendv_ps(moved, fill, first);
}

static ALWAYS_INLINE __m256 scan8(__m256 f, __m256 ninf)
{
    f = raise_op(lanes_up(f, 1, ninf), f);
    f = raise_op(lanes_up(f, 2, ninf), f);
    return raise_op(lanes_up(f, 4, ninf), f);
}

static ALWAYS_INLINE __m256 lane7(__m256 v)
{
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(7));
}

/* llm__attn_softmax: the running maxima before each key by a prefix scan over the block's
 * two halves of 8 lanes (as quants_avx512.c), the exponentials in one exp_row call */
static void attn_softmax(int32_t nh, int nk, const float *sc, float scale, float softcap,
                         float *m, float *sum, float *ms, float *vs)
{
    if (softcap > 0.0f) {
        llm__attn_softmax_generic(nh, nk, sc, scale, softcap, m, sum, ms, vs);
        return;
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    const __m256 sv = _mm256_set1_ps(scale);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 in_lo = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nk), lane));
    const __m256 in_hi = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(nk - 8), lane));
    for (int32_t h0 = 0; h0 < nh; h0 += 32) {
        const int32_t h1 = nh - h0 > 32 ? h0 + 32 : nh;
        uint32_t scalar = 0; /* heads done by the scalar form, sums included */
        uint32_t raised = 0; /* heads with a key that raises the maximum */
        for (int32_t h = h0; h < h1; h++) {
            const int o = h * LLM_ATT_BLOCK;
            float in[LLM_ATT_BLOCK];
            for (int u = 0; u < LLM_ATT_BLOCK; u++)
                in[u] = u < nk ? sc[o + u] : 0.0f;
            const __m256 s_lo = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(in), sv), in_lo);
            const __m256 s_hi =
                _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(in + 8), sv), in_hi);
            const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(s_lo, s_lo, _CMP_UNORD_Q),
                                            _mm256_cmp_ps(s_hi, s_hi, _CMP_UNORD_Q));
            if (_mm256_movemask_ps(nan) || m[h] != m[h]) {
                llm__attn_softmax_generic(1, nk, sc + o, scale, softcap, m + h, sum + h, ms + o,
                                          vs + o);
                scalar |= 1u << (h - h0);
                continue;
            }
            const __m256 mv = _mm256_set1_ps(m[h]);
            __m256 f_lo = scan8(s_lo, ninf), f_hi = scan8(s_hi, ninf);
            f_hi = raise_op(lane7(f_lo), f_hi);
            f_lo = raise_op(mv, f_lo); /* the maximum up to each key */
            f_hi = raise_op(mv, f_hi);
            const __m256 b_lo = lanes_up(f_lo, 1, mv); /* and before it */
            const __m256 b_hi = lanes_up(f_hi, 1, lane7(f_lo));
            const __m256 r_lo = _mm256_and_ps(_mm256_cmp_ps(s_lo, b_lo, _CMP_GT_OQ), in_lo);
            const __m256 r_hi = _mm256_and_ps(_mm256_cmp_ps(s_hi, b_hi, _CMP_GT_OQ), in_hi);
            raised |= (uint32_t)(_mm256_movemask_ps(_mm256_or_ps(r_lo, r_hi)) != 0) << (h - h0);
            float arg[LLM_ATT_BLOCK], e[LLM_ATT_BLOCK];
            _mm256_storeu_ps(arg, _mm256_and_ps(in_lo, _mm256_blendv_ps(_mm256_sub_ps(s_lo, b_lo),
                                                                        _mm256_sub_ps(b_lo, s_lo),
                                                                        r_lo)));
            _mm256_storeu_ps(arg + 8,
                             _mm256_and_ps(in_hi, _mm256_blendv_ps(_mm256_sub_ps(s_hi, b_hi),
                                                                   _mm256_sub_ps(b_hi, s_hi), r_hi)));
            exp_row(LLM_ATT_BLOCK, arg, e);
            const __m256 e_lo = _mm256_loadu_ps(e), e_hi = _mm256_loadu_ps(e + 8);
            _mm256_storeu_ps(ms + o, _mm256_blendv_ps(one, e_lo, r_lo));
            _mm256_storeu_ps(ms + o + 8, _mm256_blendv_ps(one, e_hi, r_hi));
            _mm256_storeu_ps(vs + o, _mm256_blendv_ps(e_lo, one, r_lo));
            _mm256_storeu_ps(vs + o + 8, _mm256_blendv_ps(e_hi, one, r_hi));
            float fl[LLM_ATT_BLOCK];
            _mm256_storeu_ps(fl, f_lo);
            _mm256_storeu_ps(fl + 8, f_hi);
            m[h] = fl[nk - 1];
        }
        llm__attn_block_sums(h0, h1, nk, ms, vs, sum, scalar, raised);
    }
}

int llm__quant_avx2_fill(llm_quant_traits *t, llm_quant_row_fns *rows)
{
    for (int i = 0; i < (1 << 16); i += 8) {
        __m128i h = _mm_add_epi16(_mm_set1_epi16((short)i), _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_storeu_ps(llm__f16_table + i, _mm256_cvtph_ps(h));
    }
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
    t[LLM_DT_Q4_0].gemm = gemm_q4_0;
    t[LLM_DT_Q4_1].gemm = gemm_q4_1;
    t[LLM_DT_Q5_0].gemm = gemm_q5_0;
    t[LLM_DT_Q5_1].gemm = gemm_q5_1;
    t[LLM_DT_Q8_0].gemm = gemm_q8_0;
    t[LLM_DT_Q4_K].gemm = gemm_q4_K;
    t[LLM_DT_Q5_K].gemm = gemm_q5_K;
    t[LLM_DT_Q6_K].gemm = gemm_q6_K;
    t[LLM_DT_F32].gemm = gemm_f32;
    t[LLM_DT_F16].gemm = gemm_f16;
    t[LLM_DT_BF16].gemm = gemm_bf16;
    t[LLM_DT_F32].gemm_f32_act = t[LLM_DT_F16].gemm_f32_act = t[LLM_DT_BF16].gemm_f32_act = 1;
    t[LLM_DT_F32].gemm_one = t[LLM_DT_F16].gemm_one = t[LLM_DT_BF16].gemm_one = 1;
    rows->f32_to_f16_row = f32_to_f16_row;
    rows->f16_to_f32_row = f16_to_f32_row;
    rows->dot_f16 = dot_f16;
    rows->dot_f32_f16 = dot_f32_f16;
    rows->axpy_f16 = axpy_f16;
    rows->exp_row = exp_row;
    rows->attn_scores_f16 = attn_scores_f16;
    rows->attn_accum_f16 = attn_accum_f16;
    rows->attn_softmax = attn_softmax;
    return 1;
}

#else /* built without AVX2/FMA/F16C */

int llm__quant_avx2_fill(llm_quant_traits *table, llm_quant_row_fns *rows)
{
    (void)table;
    (void)rows;
    return 0;
}

#endif
