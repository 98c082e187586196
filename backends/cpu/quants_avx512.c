/* quants_avx512.c - AVX-512 (F, BW, DQ, VL) kernels for the GGUF block formats.
 *
 * Compiled twice: as itself with -mavx512f -mavx512bw -mavx512dq -mavx512vl (plus the AVX2
 * set), giving llm__quant_avx512_fill, and through quants_avx512_vnni.c with -mavx512vnni
 * as well, giving llm__quant_avx512vnni_fill, where the integer dots are vpdpbusd and
 * vpdpwssd. quants.c installs one of them over the AVX2 kernels only after cpuid and XGETBV
 * said the CPU and the OS support those instructions.
 *
 * Every kernel here gives the same bits as its AVX2 twin in quants_avx2.c, so the level
 * chosen never changes a result: the integer sums per block are exact either way, a 512-bit
 * float accumulator holds in its two halves what the AVX2 code keeps in two 256-bit ones
 * (even and odd blocks, or elements 0-15 and 16-31 of a 32-element step), and the halves
 * are added in the AVX2 order before the same horizontal sum. The K-quants fold their
 * 16 int32 lanes to the 8 of the AVX2 code (integer adds, exact) before converting. That is
 * also why the AVX2 tile kernels (gemm) stay in the table: they remain bit-identical with
 * these vec_dots, which test_quants checks. The activation quantisers give the reference's
 * blocks bit for bit. Only the BF16 dot with AVX512_BF16 (quants_avx512_bf16.c) differs in
 * the last bits.
 *
 * Here: the F32 and BF16 dots, tiles (gemm) for F32, F16 and BF16 weights, the 32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), Q5_K and Q6_K,
 * the Q8_0/Q8_1 quantisers and the f16 row helpers. The F16 and Q4_K dots, the Q8_K
 * quantiser, Q2_K, Q3_K and the i-quants keep their AVX2 kernels: 512-bit versions of the
 * first three measured no faster (tests/bench/isa_bench on a Sapphire Rapids Xeon: Q4_K
 * 0.85x with the rows in cache, 1.00x streamed). */
#include "quants.h"
#include "float_tiles.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) &&               \
    defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) &&  \
    (!defined(LLM_AVX512_VNNI) || defined(__AVX512VNNI__))

#include <math.h>
#include <immintrin.h>
#include <string.h>

#ifdef LLM_AVX512_VNNI
#define FILL_FN llm__quant_avx512vnni_fill
#else
#define FILL_FN llm__quant_avx512_fill
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

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

static inline __m256 lo_ps(__m512 v)
{
    return _mm512_castps512_ps256(v);
}

static inline __m256 hi_ps(__m512 v)
{
    return _mm512_extractf32x8_ps(v, 1);
}

/* the AVX2 code's hsum_ps(acc0 + acc1), with acc0 and acc1 the two halves of v */
static inline float hsum_halves(__m512 v)
{
    return hsum_ps(_mm256_add_ps(lo_ps(v), hi_ps(v)));
}

/* 16 int32 lanes -> 8: lane l + lane l + 8 */
static inline __m256i fold_epi32(__m512i v)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

static inline float h2f(llm_f16 h)
{
    return _cvtsh_ss(h);
}

static inline float tf(llm_f16 h)
{
    return llm__f16_table[h];
}

static inline __m512i load2x32(const void *a, const void *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* Sums of 4 neighbouring products of unsigned x and signed y bytes, as 16 int32. No pair
 * sum of maddubs can saturate for these formats (see quants_avx2.c), so both forms give
 * the same integers. */
static inline __m512i dot4_u8s8(__m512i x, __m512i y)
{
#ifdef LLM_AVX512_VNNI
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(x, y), _mm512_set1_epi16(1));
#endif
}

/* The same for two signed byte vectors. With VNNI: x + 128 is unsigned (x ^ 0x80), and the
 * 128 * sum(y) it adds is taken out with a second vpdpbusd (which does not saturate).
 * Without: |x| times y negated where x < 0 (maddubs would saturate on x + 128). */
static inline __m512i dot4_s8s8(__m512i x, __m512i y)
{
#ifdef LLM_AVX512_VNNI
    const __m512i z = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char)0x80);
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, _mm512_xor_si512(x, bias), y),
                            _mm512_dpbusd_epi32(z, bias, y));
#else
    const __mmask64 neg = _mm512_movepi8_mask(x);
    return dot4_u8s8(_mm512_abs_epi8(x), _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y));
#endif
}

/* sum((u - off) * y) per 4 bytes, for unsigned u and a byte offset off: the offset comes out
 * as off * sum(y), fewer instructions than making u - off signed. */
static inline __m512i dot4_off_s8(__m512i u, __m512i y, char off)
{
#ifdef LLM_AVX512_VNNI
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, u, y),
                            _mm512_dpbusd_epi32(z, _mm512_set1_epi8(off), y));
#else
    const __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(u, y),
                                       _mm512_maddubs_epi16(_mm512_set1_epi8(off), y));
    return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
#endif
}

/* acc + the int16 pair products of p and the int16 scales sc, as 16 int32 */
static inline __m512i madd_acc(__m512i acc, __m512i sc, __m512i p)
{
#ifdef LLM_AVX512_VNNI
    return _mm512_dpwssd_epi32(acc, sc, p);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(sc, p));
#endif
}

/* ---- vec_dot: the 32-blocks ----------------------------------------------------- */

/* One 512-bit vector holds blocks i and i + 1: its low half is the AVX2 code's acc0 (even
 * blocks), its high half acc1 (odd blocks); an odd last block goes to the low half alone. */

enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

/* 16 bytes of packed nibbles of two blocks -> 64 bytes in element order: a's low nibbles,
 * a's high ones, then b's. */
static inline __m512i nibbles2(const uint8_t *a, const uint8_t *b)
{
    const __m256i t = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
        _mm_loadu_si128((const __m128i *)b), 1);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}

/* the 64 high bits of Q5_0/Q5_1 blocks a and b, bit j for element j */
static inline __mmask64 qh2(const uint8_t *a, const uint8_t *b)
{
    uint32_t ha, hb;
    memcpy(&ha, a, 4);
    memcpy(&hb, b, 4);
    return (__mmask64)ha | (__mmask64)hb << 32;
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

/* the 64 values of two blocks: signed for Q8_0; unsigned for the others, where Q4_0 and Q5_0
 * stand 8 and 16 above the weights */
static ALWAYS_INLINE __m512i blk32_values2(int kind, const void *a, const void *b)
{
    switch (kind) {
    case K_Q4_0: return nibbles2(((const block_q4_0 *)a)->qs, ((const block_q4_0 *)b)->qs);
    case K_Q4_1: return nibbles2(((const block_q4_1 *)a)->qs, ((const block_q4_1 *)b)->qs);
    case K_Q5_0: {
        const block_q5_0 *x = a, *y = b;
        const __m512i nib = nibbles2(x->qs, y->qs);
        return _mm512_mask_add_epi8(nib, qh2(x->qh, y->qh), nib, _mm512_set1_epi8(0x10));
    }
    case K_Q5_1: {
        const block_q5_1 *x = a, *y = b;
        const __m512i nib = nibbles2(x->qs, y->qs);
        return _mm512_mask_add_epi8(nib, qh2(x->qh, y->qh), nib, _mm512_set1_epi8(0x10));
    }
    default: return load2x32(((const block_q8_0 *)a)->qs, ((const block_q8_0 *)b)->qs);
    }
}

/* d is the first member of every 32-block; m the second of Q4_1/Q5_1 (s of Q8_1). */
static ALWAYS_INLINE llm_f16 blk32_f16(const void *b, int i)
{
    return ((const llm_f16 *)b)[i];
}

static ALWAYS_INLINE __m512i blk32_dot(int kind, __m512i q, __m512i yq)
{
    switch (kind) {
    case K_Q4_0: return dot4_off_s8(q, yq, 8);
    case K_Q5_0: return dot4_off_s8(q, yq, 16);
    case K_Q8_0: return dot4_s8s8(q, yq);
    default: return dot4_u8s8(q, yq);
    }
}

static ALWAYS_INLINE void dot32(int kind, int64_t n, float *s, const void *vx, const void *vy)
{
    const int has_min = kind == K_Q4_1 || kind == K_Q5_1;
    const size_t xsz = blk32_size(kind);
    const size_t ysz = has_min ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t yoff = has_min ? 4 : 2;
    const char *x = vx, *y = vy;
    const int64_t nb = n / 32;
    __m512 acc = _mm512_setzero_ps();
    float summs = 0.0f;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const char *x0 = x + (size_t)i * xsz, *x1 = x0 + xsz;
        const char *y0 = y + (size_t)i * ysz, *y1 = y0 + ysz;
        const __m512i q = blk32_values2(kind, x0, x1);
        const __m512i yq = load2x32(y0 + yoff, y1 + yoff);
        const __m512i p = blk32_dot(kind, q, yq);
        const float d0 = tf(blk32_f16(x0, 0)) * tf(blk32_f16(y0, 0));
        const float d1 = tf(blk32_f16(x1, 0)) * tf(blk32_f16(y1, 0));
        const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
        if (has_min)
            summs += tf(blk32_f16(x0, 1)) * tf(blk32_f16(y0, 1)) +
                     tf(blk32_f16(x1, 1)) * tf(blk32_f16(y1, 1));
    }
    if (i < nb) {
        const char *x0 = x + (size_t)i * xsz, *y0 = y + (size_t)i * ysz;
        const __m512i q = blk32_values2(kind, x0, x0);
        const __m512i yq = load2x32(y0 + yoff, y0 + yoff);
        const __m512i p = blk32_dot(kind, q, yq);
        const __m512 d = _mm512_set1_ps(tf(blk32_f16(x0, 0)) * tf(blk32_f16(y0, 0)));
        acc = _mm512_mask3_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc, 0x00ff);
        if (has_min)
            summs += tf(blk32_f16(x0, 1)) * tf(blk32_f16(y0, 1));
    }
    *s = has_min ? hsum_halves(acc) + summs : hsum_halves(acc);
}

static void q4_0_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    dot32(K_Q4_0, n, s, vx, vy);
}

static void q4_1_q8_1(int64_t n, float *s, const void *vx, const void *vy)
{
    dot32(K_Q4_1, n, s, vx, vy);
}

static void q5_0_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    dot32(K_Q5_0, n, s, vx, vy);
}

static void q5_1_q8_1(int64_t n, float *s, const void *vx, const void *vy)
{
    dot32(K_Q5_1, n, s, vx, vy);
}

static void q8_0_q8_0(int64_t n, float *s, const void *vx, const void *vy)
{
    dot32(K_Q8_0, n, s, vx, vy);
}

/* ---- vec_dot: the K-quants ------------------------------------------------------ */

/* permutexvar indices that spread int16 scales over a vector of maddubs pairs. Q5_K
 * vector j: scale 2j over the low 32 bytes, 2j + 1 over the high ones. Q6_K vector g: scales
 * 4g .. 4g + 3, one per 16 bytes. */
#define I8(v) v, v, v, v, v, v, v, v
#define I16(v) I8(v), I8(v)
static const int16_t sidx_q5_K[4][32] __attribute__((aligned(64))) = {
    {I16(0), I16(1)}, {I16(2), I16(3)}, {I16(4), I16(5)}, {I16(6), I16(7)}};
static const int16_t sidx_q6_K[4][32] __attribute__((aligned(64))) = {
    {I8(0), I8(1), I8(2), I8(3)}, {I8(4), I8(5), I8(6), I8(7)},
    {I8(8), I8(9), I8(10), I8(11)}, {I8(12), I8(13), I8(14), I8(15)}};
#undef I16
#undef I8

static inline __m512i spread_scales(const int16_t idx[32], __m512i sc)
{
    return _mm512_permutexvar_epi16(_mm512_load_si512(idx), sc);
}

/* The 8 six-bit scales and 8 mins of Q5_K (as in quants_avx2.c): out[0..1] = scales
 * 0-3, 4-7; out[2..3] = mins 0-3, 4-7. */
static inline void k4_unpack(const uint8_t *p, uint32_t out[4])
{
    uint32_t w[3];
    memcpy(w, p, 12);
    out[0] = w[0] & 0x3f3f3f3f;
    out[1] = (w[2] & 0x0f0f0f0f) | ((w[0] >> 2) & 0x30303030);
    out[2] = w[1] & 0x3f3f3f3f;
    out[3] = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 2) & 0x30303030);
}

static inline __m128i k4_mins_dot(const __m256i ms16, const int16_t *bsums)
{
    const __m256i b = _mm256_loadu_si256((const __m256i *)bsums);
    const __m128i pairs =
        _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(ms16, 1), pairs);
}

/* Q5_K: 64 bytes of activations (groups 2j and 2j + 1) meet one vector of the low nibbles
 * of qs[32j..32j+31] followed by their high nibbles, each with its fifth bit from qh. (The
 * same for Q4_K, without qh, measured no faster than AVX2 and is left out.) */
static void q5_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m1 = _mm512_set1_epi8(1);
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
        const __m512i sc = _mm512_castsi256_si512(ms16);
        const __m256i h = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 1), 1);
        /* two chains: vpdpwssd's latency would otherwise serialise the four steps */
        __m512i sumi[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(bits),
                                           _mm256_srli_epi16(bits, 4), 1);
            q = _mm512_and_si512(q, m4);
            q = _mm512_or_si512(q, _mm512_slli_epi16(_mm512_and_si512(hb, m1), 4));
            hb = _mm512_srli_epi16(hb, 2);
            const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(y[i].qs + 64 * j));
            sumi[j & 1] = madd_acc(sumi[j & 1], spread_scales(sidx_q5_K[j], sc), p);
        }
        const __m256i s8 = fold_epi32(_mm512_add_epi32(sumi[0], sumi[1]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s8), acc);
    }
    *s = hsum_ps(acc) + hsum_ps128(accm);
}

/* Q6_K: v = low4 | high2 << 4 in 0..63, weight v - 32, the offset taken out once per
 * super-block as 32 * sum(scale * bsum). Vector g covers elements 64g .. 64g + 63: for
 * g = 2h + p, the low (p = 0) or high (p = 1) nibbles of ql[64h .. 64h + 63], with bit pairs
 * 2p and 2p + 1 (first half) or 2p + 2 and 2p + 3 (second half) of qh[32h .. 32h + 31]. */
static void q6_K_q8_K(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m2 = _mm512_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i sumi8 = _mm256_slli_epi32(
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums)), 5);
        sumi8 = _mm256_sub_epi32(_mm256_setzero_si256(), sumi8);
        const __m512i sc = _mm512_castsi256_si512(sc16);
        __m512i sumi0 = _mm512_setzero_si512(), sumi1 = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
            const __m256i hbits = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m512i h2 = _mm512_inserti64x4(_mm512_castsi256_si512(hbits),
                                                  _mm256_srli_epi16(hbits, 2), 1);
            const __m512i q0 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                               _mm512_slli_epi16(_mm512_and_si512(h2, m2), 4));
            const __m512i q1 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h2, 4), m2), 4));
            const int8_t *q8 = y[i].qs + 128 * h;
            const __m512i p0 = _mm512_maddubs_epi16(q0, _mm512_loadu_si512(q8));
            const __m512i p1 = _mm512_maddubs_epi16(q1, _mm512_loadu_si512(q8 + 64));
            sumi0 = madd_acc(sumi0, spread_scales(sidx_q6_K[2 * h], sc), p0);
            sumi1 = madd_acc(sumi1, spread_scales(sidx_q6_K[2 * h + 1], sc), p1);
        }
        sumi8 = _mm256_add_epi32(sumi8, fold_epi32(_mm512_add_epi32(sumi0, sumi1)));
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi8), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- float rows ----------------------------------------------------------------- */

/* The AVX2 code's four 8-lane accumulators a0..a3 over 32-element steps are the halves of
 * two 16-lane ones here (a0|a1, a2|a3), summed as (a0 + a1) + (a2 + a3). */
static inline float sum4(__m512 a01, __m512 a23)
{
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(lo_ps(a01), hi_ps(a01)),
                                 _mm256_add_ps(lo_ps(a23), hi_ps(a23))));
}

static inline __m512 load_f16x16(const llm_f16 *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16x16(const llm_bf16 *p)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

static void f32_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m512 a01 = _mm512_setzero_ps(), a23 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a01 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a01);
        a23 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a23);
    }
    /* the AVX2 code's 8-element steps into a0 */
    for (; i + 8 <= n; i += 8)
        a01 = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(0xff, x + i),
                                    _mm512_maskz_loadu_ps(0xff, y + i), a01, 0xff);
    double sum = sum4(a01, a23);
    for (; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

static void bf16_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const llm_bf16 *x = vx, *y = vy;
    __m512 a01 = _mm512_setzero_ps(), a23 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a01 = _mm512_fmadd_ps(load_bf16x16(x + i), load_bf16x16(y + i), a01);
        a23 = _mm512_fmadd_ps(load_bf16x16(x + i + 16), load_bf16x16(y + i + 16), a23);
    }
    double sum = sum4(a01, a23);
    for (; i < n; i++)
        sum += (double)(llm__bf16_to_f32(x[i]) * llm__bf16_to_f32(y[i]));
    *s = (float)sum;
}

/* ---- float tiles (gemm) ----------------------------------------------------------
 * F32, F16 and BF16 weights against activations given as f32 rows (for F16 and BF16 the
 * values of the vec_dot type, widened once per matmul by the backend: gemm_f32_act). Per
 * (row, token) the two 512-bit accumulators hold what the dot's two (or AVX2's four)
 * accumulators hold, each lane the same fused multiply-adds in the same order, finished by
 * the same sum4: every result has the dot's bits, so a token's logits do not depend on its
 * batch. n is a multiple of 32 (the backend's condition); the dot's 8-element and scalar
 * tails never occur. A tile is up to 4 weight rows by 3 tokens: 24 accumulators, 4 row and
 * 3 token registers per half step; each weight vector is converted once for 3 tokens. */

static ALWAYS_INLINE __m512 ft_load(int type, const char *row, int64_t i)
{
    if (type == FT_F16)
        return load_f16x16((const llm_f16 *)row + i);
    if (type == FT_BF16)
        return load_bf16x16((const llm_bf16 *)row + i);
    return _mm512_loadu_ps((const float *)row + i);
}

static ALWAYS_INLINE void ft_tile(int type, int R, int T, int64_t n, float *s, size_t bs,
                                  const char *x, size_t bx, const char *y, size_t by)
{
    __m512 acc[FT_RM][FT_TM][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512 wv[FT_RM], yv[FT_TM];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                wv[r] = ft_load(type, x + (size_t)r * bx, i + 16 * h);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                yv[t] = _mm512_loadu_ps((const float *)(y + (size_t)t * by) + i + 16 * h);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    acc[r][t][h] = _mm512_fmadd_ps(wv[r], yv[t], acc[r][t][h]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            s[(size_t)t * bs + (size_t)r] = (float)(double)sum4(acc[r][t][0], acc[r][t][1]);
}

static ALWAYS_INLINE void ft_gemm(int type, int64_t n, float *s, size_t bs, const void *x,
                                  size_t bx, const void *y, size_t by, int64_t nr, int64_t nc)
{
#define FT_TILE(R, T, o, xr, yc) ft_tile(type, R, T, n, o, bs, xr, bx, yc, by)
    FT_FOR_TILES(s, bs, x, bx, y, by, nr, nc, FT_TILE)
#undef FT_TILE
}

FT_DEFINE_GEMMS(ft_gemm)

/* mask of the first r (< 16) lanes, or all 16 */
static inline __mmask16 first_lanes(int64_t r)
{
    return r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1);
}

static void bf16_to_float(const void *vx, float *y, int64_t n)
{
    const llm_bf16 *x = vx;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
}

/* Every element converted by the same instruction, tails through masked loads and stores. */
static void f32_to_f16_row(const float *x, llm_f16 *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                          _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

static void f16_to_f32_row(const llm_f16 *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
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

/* Attention helpers, in the AVX2 code's order: 4 x 8 lanes, then 8-element steps into a0,
 * then a float tail; axpy is elementwise (fma on the vector part, a multiply and an add on
 * the tail of fewer than 8). */
static float dot_f32_f16(int64_t n, const float *x, const llm_f16 *y)
{
    __m512 a01 = _mm512_setzero_ps(), a23 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a01 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load_f16x16(y + i), a01);
        a23 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load_f16x16(y + i + 16), a23);
    }
    for (; i + 8 <= n; i += 8)
        a01 = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(0xff, x + i),
                                    _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(0xff, y + i)),
                                    a01, 0xff);
    float s = sum4(a01, a23);
    for (; i < n; i++)
        s += x[i] * h2f(y[i]);
    return s;
}

static void axpy_f16(int64_t n, float *y, float a, const llm_f16 *x)
{
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, load_f16x16(x + i), _mm512_loadu_ps(y + i)));
    if (i + 8 <= n) {
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_set1_ps(a), v, _mm256_loadu_ps(y + i)));
        i += 8;
    }
    for (; i < n; i++)
        y[i] += a * h2f(x[i]);
}

/* Attention blocks (llm__attn_scores_f16, llm__attn_accum_f16): per head, dot_f32_f16's and
 * axpy_f16's operations for a head of whole 32-element steps, each key and value row
 * converted once for NH heads, the accumulators in registers over the block. */
static ALWAYS_INLINE void attn_scores_nh(int NH, int32_t hd, const float *q,
                                         const llm_f16 *const *k, int nk, float *sc)
{
    for (int u = 0; u < nk; u++) {
        __m512 a01[4], a23[4];
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
            a01[h] = a23[h] = _mm512_setzero_ps();
        const llm_f16 *kr = k[u];
        for (int32_t i = 0; i < hd; i += 32) {
            const __m512 k0 = load_f16x16(kr + i), k1 = load_f16x16(kr + i + 16);
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++) {
                const float *qh = q + (size_t)h * hd + i;
                a01[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qh), k0, a01[h]);
                a23[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16), k1, a23[h]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
            sc[h * LLM_ATT_BLOCK + u] = sum4(a01[h], a23[h]);
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
    for (; h + 4 <= nh; h += 4)
        attn_scores_nh(4, hd, q + (size_t)h * hd, k, nk, sc + h * LLM_ATT_BLOCK);
    const float *qh = q + (size_t)h * hd;
    float *sh = sc + h * LLM_ATT_BLOCK;
    switch (nh - h) { /* the rest together too (a group of 3, 6 or 7 heads) */
    case 3: attn_scores_nh(3, hd, qh, k, nk, sh); break;
    case 2: attn_scores_nh(2, hd, qh, k, nk, sh); break;
    case 1: attn_scores_nh(1, hd, qh, k, nk, sh); break;
    default: break;
    }
}

/* NH heads of V vectors of 16 each (NH * V <= 16 accumulators) */
static ALWAYS_INLINE void attn_accum_nh(int NH, int V, float *acc, const llm_f16 *const *v,
                                        int nk, const float *ms, const float *vs)
{
    __m512 a[4][16];
#pragma GCC unroll 4
    for (int h = 0; h < NH; h++)
#pragma GCC unroll 16
        for (int j = 0; j < V; j++)
            a[h][j] = _mm512_loadu_ps(acc + (size_t)h * V * 16 + 16 * j);
    for (int u = 0; u < nk; u++) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++) {
            const float m = ms[h * LLM_ATT_BLOCK + u];
            if (m != 1.0f) {
                const __m512 mv = _mm512_set1_ps(m);
#pragma GCC unroll 16
                for (int j = 0; j < V; j++)
                    a[h][j] = _mm512_mul_ps(a[h][j], mv);
            }
            w[h] = _mm512_set1_ps(vs[h * LLM_ATT_BLOCK + u]);
        }
        const llm_f16 *vr = v[u];
#pragma GCC unroll 16
        for (int j = 0; j < V; j++) {
            const __m512 x = load_f16x16(vr + 16 * j);
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++)
                a[h][j] = _mm512_fmadd_ps(w[h], x, a[h][j]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < NH; h++)
#pragma GCC unroll 16
        for (int j = 0; j < V; j++)
            _mm512_storeu_ps(acc + (size_t)h * V * 16 + 16 * j, a[h][j]);
}

static void attn_accum_f16(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v, int nk,
                           const float *ms, const float *vs)
{
#define ATT_ACC(V, NH)                                                                      \
    case V: {                                                                               \
        int32_t h = 0;                                                                      \
        for (; h + (NH) <= nh; h += (NH))                                                   \
            attn_accum_nh(NH, V, acc + (size_t)h * hd, v, nk, ms + h * LLM_ATT_BLOCK,       \
                          vs + h * LLM_ATT_BLOCK);                                          \
        float *ar = acc + (size_t)h * hd;                                                   \
        const float *mr = ms + h * LLM_ATT_BLOCK, *vr = vs + h * LLM_ATT_BLOCK;             \
        /* the rest together too (a group of 3, 6 or 7 heads) */                            \
        if ((NH) > 3 && nh - h == 3)                                                        \
            attn_accum_nh((NH) > 3 ? 3 : 1, V, ar, v, nk, mr, vr);                          \
        else if ((NH) > 2 && nh - h == 2)                                                   \
            attn_accum_nh((NH) > 2 ? 2 : 1, V, ar, v, nk, mr, vr);                          \
        else if (nh - h == 1)                                                               \
            attn_accum_nh(1, V, ar, v, nk, mr, vr);                                         \
        return;                                                                             \
    }
    if (hd % 32 == 0) {
        switch (hd / 16) {
            ATT_ACC(2, 4)
            ATT_ACC(4, 4)
            ATT_ACC(6, 2)
            ATT_ACC(8, 2)
            ATT_ACC(10, 1)
            ATT_ACC(12, 1)
            ATT_ACC(14, 1)
            ATT_ACC(16, 1)
        default: break;
        }
    }
#undef ATT_ACC
    llm__attn_accum_f16_generic(hd, nh, acc, v, nk, ms, vs);
}

/* llm__exp_row, sixteen lanes as two halves of eight doubles: the steps of quants_avx2.c's
 * exp4 (and of quants.c's exp_one), so the same bits */
static ALWAYS_INLINE __m256 exp8_pd(__m256 x)
{
    const __m512d z = _mm512_mul_pd(_mm512_set1_pd(LLM_EXP_INV_LN2_N), _mm512_cvtps_pd(x));
    __m512d kd = _mm512_add_pd(z, _mm512_set1_pd(LLM_EXP_SHIFT));
    const __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, _mm512_set1_pd(LLM_EXP_SHIFT));
    const __m512d r = _mm512_sub_pd(z, kd);
    const __m512i idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    const __m512i tab = _mm512_i64gather_epi64(idx, (const long long *)llm__exp2_tab, 8);
    const __m512d sc = _mm512_castsi512_pd(_mm512_add_epi64(tab, _mm512_slli_epi64(ki, 47)));
    const __m512d p = _mm512_add_pd(_mm512_mul_pd(_mm512_set1_pd(LLM_EXP_C0), r),
                                    _mm512_set1_pd(LLM_EXP_C1));
    const __m512d r2 = _mm512_mul_pd(r, r);
    const __m512d q = _mm512_add_pd(_mm512_mul_pd(_mm512_set1_pd(LLM_EXP_C2), r),
                                    _mm512_set1_pd(1.0));
    return _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_add_pd(_mm512_mul_pd(p, r2), q), sc));
}

static ALWAYS_INLINE __m512 exp16(__m512 x)
{
    __m512 out = _mm512_insertf32x8(_mm512_castps256_ps512(exp8_pd(lo_ps(x))), exp8_pd(hi_ps(x)),
                                    1);
    /* below the threshold: 0; NaN stays NaN */
    out = _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(x, _mm512_set1_ps(LLM_EXP_MIN), _CMP_LT_OQ),
                              out);
    return _mm512_mask_mov_ps(out, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

static void exp_row(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* lanes moved up by k (lane u gets lane u - k), the first k lanes fill */
static ALWAYS_INLINE __m512 lanes_up(__m512 v, int k, __m512 fill)
{
    const __m512i idx = _mm512_sub_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(k));
    return _mm512_mask_permutexvar_ps(fill, (__mmask16)(0xffffu << k), idx, v);
}

/* x (+) y = y > x ? y : x, x the earlier: the key that raises the running maximum */
static ALWAYS_INLINE __m512 raise_op(__m512 x, __m512 y)
{
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(y, x, _CMP_GT_OQ), y);
}

/* llm__attn_softmax: a head's running maxima before each key by a prefix scan over the
 * block (the operation above is associative without NaNs: it picks the first of the
 * largest, as the one-key-at-a-time loop does), the rest lane by lane; the sums in key
 * order. Softcap and NaN scores take the scalar form. */
static void attn_softmax(int32_t nh, int nk, const float *sc, float scale, float softcap,
                         float *m, float *sum, float *ms, float *vs)
{
    if (softcap > 0.0f) {
        llm__attn_softmax_generic(nh, nk, sc, scale, softcap, m, sum, ms, vs);
        return;
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY), one = _mm512_set1_ps(1.0f);
    const __mmask16 km = first_lanes(nk);
    for (int32_t h0 = 0; h0 < nh; h0 += 32) {
        const int32_t h1 = nh - h0 > 32 ? h0 + 32 : nh;
        uint32_t scalar = 0; /* heads done by the scalar form, sums included */
        uint32_t raised = 0; /* heads with a key that raises the maximum */
        for (int32_t h = h0; h < h1; h++) {
            const int o = h * LLM_ATT_BLOCK;
            const __m512 s = _mm512_mask_mov_ps(
                ninf, km,
                _mm512_mul_ps(_mm512_maskz_loadu_ps(km, sc + o), _mm512_set1_ps(scale)));
            if ((_mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q) & km) || m[h] != m[h]) {
                llm__attn_softmax_generic(1, nk, sc + o, scale, softcap, m + h, sum + h, ms + o,
                                          vs + o);
                scalar |= 1u << (h - h0);
                continue;
            }
            const __m512 mv = _mm512_set1_ps(m[h]);
            __m512 f = s;
            f = raise_op(lanes_up(f, 1, ninf), f);
            f = raise_op(lanes_up(f, 2, ninf), f);
            f = raise_op(lanes_up(f, 4, ninf), f);
            f = raise_op(lanes_up(f, 8, ninf), f);
            f = raise_op(mv, f);                      /* the maximum up to each key */
            const __m512 before = lanes_up(f, 1, mv); /* and before it */
            const __mmask16 raise = _mm512_cmp_ps_mask(s, before, _CMP_GT_OQ) & km;
            raised |= (uint32_t)(raise != 0) << (h - h0);
            const __m512 arg = _mm512_maskz_mov_ps(
                km, _mm512_mask_mov_ps(_mm512_sub_ps(s, before), raise, _mm512_sub_ps(before, s)));
            const __m512 e = exp16(arg);
            _mm512_storeu_ps(ms + o, _mm512_mask_mov_ps(one, raise, e));
            _mm512_storeu_ps(vs + o, _mm512_mask_mov_ps(e, raise, one));
            float fl[16];
            _mm512_storeu_ps(fl, f);
            m[h] = fl[nk - 1];
        }
        llm__attn_block_sums(h0, h1, nk, ms, vs, sum, scalar, raised);
    }
}

/* ---- activation quantisers ------------------------------------------------------ */

/* roundf() on 16 lanes, as quants_avx2.c's round_away: truncate, then step away from zero
 * when the dropped fraction is at least one half. */
static inline __m512i round_away(__m512 v)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    const __mmask16 ge = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_or_ps(_mm512_and_ps(v, sign), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, ge, t, step));
}

static inline float absmax32(const float *x)
{
    const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x));
    const __m512 b = _mm512_abs_ps(_mm512_loadu_ps(x + 16));
    return _mm512_reduce_max_ps(_mm512_max_ps(a, b));
}

/* One 32-block: scale d from the absolute maximum, values round(x / d) into qs; returns d
 * and, through *sum, the sum of the values. */
static inline float q8_block(const float *x, int8_t *qs, int *sum)
{
    const float d = absmax32(x) / 127.0f;
    const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    const __m512i q0 = round_away(_mm512_mul_ps(_mm512_loadu_ps(x), id));
    const __m512i q1 = round_away(_mm512_mul_ps(_mm512_loadu_ps(x + 16), id));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(q1));
    if (sum)
        *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    return d;
}

static void q8_0_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0)
        y[i].d = _cvtss_sh(q8_block(x, y[i].qs, NULL), _MM_FROUND_TO_NEAREST_INT);
}

static void q8_1_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        int sum;
        const float d = q8_block(x, y[i].qs, &sum);
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        y[i].s = _cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT);
    }
}

/* ---- registration --------------------------------------------------------------- */

int FILL_FN(llm_quant_traits *t, llm_quant_row_fns *rows)
{
    /* the scale table (llm__f16_table) was filled by llm__quant_avx2_fill */
    t[LLM_DT_F32].vec_dot = f32_dot;
    t[LLM_DT_F16].from_float = f16_from_float;
    t[LLM_DT_F16].to_float = f16_to_float;
    t[LLM_DT_BF16].vec_dot = bf16_dot;
    t[LLM_DT_BF16].to_float = bf16_to_float;
    t[LLM_DT_F32].gemm = gemm_f32;
    t[LLM_DT_F16].gemm = gemm_f16;
    t[LLM_DT_BF16].gemm = gemm_bf16;
    t[LLM_DT_F32].gemm_f32_act = t[LLM_DT_F16].gemm_f32_act = t[LLM_DT_BF16].gemm_f32_act = 1;
    t[LLM_DT_F32].gemm_one = t[LLM_DT_F16].gemm_one = t[LLM_DT_BF16].gemm_one = 1;
    t[LLM_DT_Q4_0].vec_dot = q4_0_q8_0;
    t[LLM_DT_Q4_1].vec_dot = q4_1_q8_1;
    t[LLM_DT_Q5_0].vec_dot = q5_0_q8_0;
    t[LLM_DT_Q5_1].vec_dot = q5_1_q8_1;
    t[LLM_DT_Q8_0].vec_dot = q8_0_q8_0;
    t[LLM_DT_Q5_K].vec_dot = q5_K_q8_K;
    t[LLM_DT_Q6_K].vec_dot = q6_K_q8_K;
    t[LLM_DT_Q8_0].from_float = q8_0_from_float;
    t[LLM_DT_Q8_1].from_float = q8_1_from_float;
    rows->f32_to_f16_row = f32_to_f16_row;
    rows->f16_to_f32_row = f16_to_f32_row;
    rows->dot_f32_f16 = dot_f32_f16;
    rows->axpy_f16 = axpy_f16;
    rows->attn_scores_f16 = attn_scores_f16;
    rows->attn_accum_f16 = attn_accum_f16;
    rows->attn_softmax = attn_softmax;
    rows->exp_row = exp_row;
    return 1;
}

#else /* built without the AVX-512 instruction sets */

#ifdef LLM_AVX512_VNNI
int llm__quant_avx512vnni_fill(llm_quant_traits *table, llm_quant_row_fns *rows)
#else
int llm__quant_avx512_fill(llm_quant_traits *table, llm_quant_row_fns *rows)
#endif
{
    (void)table;
    (void)rows;
    return 0;
}

#endif
