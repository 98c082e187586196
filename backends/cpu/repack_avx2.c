/* repack_avx2.c - the 8-row interleaved layout of repack.h for Q4_0, Q4_1, Q5_0, Q8_0, Q4_K
 * and Q6_K, and its AVX2 kernels (compiled with -mavx2 -mfma -mf16c; cpu.c uses them only on
 * a CPU that has those, see llm__repack_avx2_traits). The Q4_0/Q4_1 layout:
 *
 * A group block (8 rows, block i of each) holds f32 d[8], for Q4_1 f32 m[8], then 128
 * bytes of quants as 4 vectors P0..P3: byte 4r+j of Pk is element 4k+j of row r in its low
 * nibble and element 4(k+4)+j in its high nibble. So P & 0xf and P >> 4 give the vectors
 * V0..V7 where lane r (4 bytes) of Vk is elements 4k..4k+3 of row r, and
 * maddubs(Vk, broadcast(activation bytes 4k..4k+3)) adds two products per int16 for
 * every row at once. The eight int16 pairs of a block sum to at most 8 * 2 * 15 * 127 =
 * 30480, so they are added as int16 before one madd widens them.
 *
 * Per block and token the lanes then hold the integer dot of each row with the activation
 * block (for Q4_0 the unsigned nibbles, corrected by 8 * the activation block's sum), and
 * one fma per token adds d_row * d_act times it (Q4_1: a second one adds m_row * s_act).
 * The integer sums equal those of the reference; only the float accumulation order
 * differs (one chain per row over the blocks).
 *
 * repack_avx512vnni.c compiles this file again with AVX512_VNNI (LLM_REPACK_VNNI): the same
 * layout and the same float steps, the integer dots of each block formed with 256-bit
 * vpdpbusd instead of the maddubs/madd trees. The lanes' integers are the same exact sums,
 * so the results are bit-identical. */
#include "repack.h"

#include <string.h>

#include "quants.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) &&                           \
    (!defined(LLM_REPACK_VNNI) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))

#include <immintrin.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define TILE_TOKENS 4

#ifdef LLM_REPACK_VNNI
#define REPACK_TRAITS_FN llm__repack_avx512vnni_traits
/* sum over k of the 4-byte dots of u[k] (unsigned) and the broadcast activation bytes
 * a[4k..4k+3] (signed) per int32 lane, exact; two chains for vpdpbusd's latency */
static inline __m256i dot8_u8s8(const __m256i u[8], const int32_t *a)
{
    __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u[0], _mm256_set1_epi32(a[0]));
    __m256i s1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u[1], _mm256_set1_epi32(a[1]));
    for (int k = 2; k < 8; k += 2) {
        s0 = _mm256_dpbusd_epi32(s0, u[k], _mm256_set1_epi32(a[k]));
        s1 = _mm256_dpbusd_epi32(s1, u[k + 1], _mm256_set1_epi32(a[k + 1]));
    }
    return _mm256_add_epi32(s0, s1);
}

/* the same over k = k0 .. k0 + 3 */
static inline __m256i dot4_u8s8(const __m256i *u, const int32_t *a)
{
    __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u[0], _mm256_set1_epi32(a[0]));
    __m256i s1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u[1], _mm256_set1_epi32(a[1]));
    s0 = _mm256_dpbusd_epi32(s0, u[2], _mm256_set1_epi32(a[2]));
    s1 = _mm256_dpbusd_epi32(s1, u[3], _mm256_set1_epi32(a[3]));
    return _mm256_add_epi32(s0, s1);
}
#else
#define REPACK_TRAITS_FN llm__repack_avx2_traits
#endif

/* Q4_0 (f32 d[8], 128 quant bytes) and Q4_1 (f32 d[8], f32 m[8], 128 quant bytes): the
 * layout of repack.h, packed by repack_pack.c. */
#define Q40_GB REPACK_Q40_GB
#define Q41_GB REPACK_Q41_GB

/* One-token tiles (RN == 1) read each weight once, a sequential stream that the hardware
 * prefetcher alone kept at about half of this machine's read bandwidth (perf: the loads
 * took the time); each block's lines PF_DIST bytes ahead are prefetched in software.
 * Zen 1, 2 threads (docs/perf/cpu.md): Gemma 3 270M tg +15-20%, SmolLM2 +8-16%, the
 * synthetic 1B Q4_0 +10%, Q4_K_M +14%. The distance depends on the CPU (repack.h). */
#define PF_DIST llm__repack_pf_dist

/* One group of 8 rows against RN tokens. */
static ALWAYS_INLINE void group_tile(int is_q41, int RN, int64_t nb, float *s, size_t bs,
                                     const uint8_t *w, const char *y, size_t by,
                                     const int32_t *ysum)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t gb = is_q41 ? Q41_GB : Q40_GB;
    const size_t yb_size = is_q41 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    __m256 acc[TILE_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += gb) {
        if (RN == 1)
            for (size_t l = 0; l < gb; l += 64)
                _mm_prefetch((const char *)w + PF_DIST + l, _MM_HINT_T0);
        const uint8_t *q = w + (is_q41 ? 64 : 32);
        __m256i v[8];
        for (int k = 0; k < 4; k++) {
            const __m256i p = _mm256_load_si256((const __m256i *)(q + 32 * k));
            v[k] = _mm256_and_si256(p, m4);
            v[k + 4] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
        }
        const __m256 dw = _mm256_load_ps((const float *)w);
        for (int c = 0; c < RN; c++) {
            const char *yb = y + c * by + (size_t)i * yb_size;
            const int32_t *a = (const int32_t *)(yb + (is_q41 ? 4 : 2));
#ifdef LLM_REPACK_VNNI
            (void)ones;
            __m256i s32 = dot8_u8s8(v, a);
#else
            __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(v[0], _mm256_set1_epi32(a[0])),
                                           _mm256_maddubs_epi16(v[1], _mm256_set1_epi32(a[1])));
            __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(v[2], _mm256_set1_epi32(a[2])),
                                           _mm256_maddubs_epi16(v[3], _mm256_set1_epi32(a[3])));
            __m256i s45 = _mm256_add_epi16(_mm256_maddubs_epi16(v[4], _mm256_set1_epi32(a[4])),
                                           _mm256_maddubs_epi16(v[5], _mm256_set1_epi32(a[5])));
            __m256i s67 = _mm256_add_epi16(_mm256_maddubs_epi16(v[6], _mm256_set1_epi32(a[6])),
                                           _mm256_maddubs_epi16(v[7], _mm256_set1_epi32(a[7])));
            __m256i s32 = _mm256_madd_epi16(
                _mm256_add_epi16(_mm256_add_epi16(s01, s23), _mm256_add_epi16(s45, s67)), ones);
#endif
            const __m256 da = _mm256_set1_ps(_cvtsh_ss(*(const uint16_t *)yb));
            if (!is_q41)
                s32 = _mm256_sub_epi32(s32, _mm256_set1_epi32(8 * ysum[c * nb + i]));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(dw, da), acc[c]);
            if (is_q41) {
                const __m256 mw = _mm256_load_ps((const float *)w + 8);
                const __m256 sa = _mm256_set1_ps(_cvtsh_ss(*(const uint16_t *)(yb + 2)));
                acc[c] = _mm256_fmadd_ps(mw, sa, acc[c]);
            }
        }
    }
    for (int c = 0; c < RN; c++)
        _mm256_storeu_ps(s + c * bs, acc[c]);
}

/* Q8_0: f32 d[8], then 8 vectors of 32 signed bytes, lane r of vector k = elements
 * 4k..4k+3 of row r. Products of two signed bytes go through maddubs as |w| times a with
 * w's sign; a pair sum can reach 2 * 127 * 127, so each is widened on its own. */
#define Q80_GB REPACK_Q80_GB

static ALWAYS_INLINE void group_tile_q8_0(int RN, int64_t nb, float *s, size_t bs,
                                          const uint8_t *w, const char *y, size_t by,
                                          const int32_t *ysum)
{
#ifdef LLM_REPACK_VNNI
    /* w + 128 is unsigned (w ^ 0x80); the 128 * sum(a) that adds comes out through the
     * activation block sums */
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256 acc[TILE_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += Q80_GB) {
        if (RN == 1)
            for (int l = 0; l < Q80_GB; l += 64)
                _mm_prefetch((const char *)w + PF_DIST + l, _MM_HINT_T0);
        const __m256 dw = _mm256_load_ps((const float *)w);
        __m256i u[8];
        for (int k = 0; k < 8; k++)
            u[k] = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(w + 32 + 32 * k)), bias);
        for (int c = 0; c < RN; c++) {
            const block_q8_0 *yb = (const block_q8_0 *)(y + c * by) + i;
            const __m256i s32 = _mm256_sub_epi32(dot8_u8s8(u, (const int32_t *)yb->qs),
                                                 _mm256_set1_epi32(128 * ysum[c * nb + i]));
            const __m256 da = _mm256_set1_ps(_cvtsh_ss(yb->d));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(dw, da), acc[c]);
        }
    }
    for (int c = 0; c < RN; c++)
        _mm256_storeu_ps(s + c * bs, acc[c]);
#else
    (void)ysum;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[TILE_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += Q80_GB) {
        if (RN == 1)
            for (int l = 0; l < Q80_GB; l += 64)
                _mm_prefetch((const char *)w + PF_DIST + l, _MM_HINT_T0);
        const __m256 dw = _mm256_load_ps((const float *)w);
        __m256i s32[TILE_TOKENS];
        for (int c = 0; c < RN; c++)
            s32[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m256i q = _mm256_load_si256((const __m256i *)(w + 32 + 32 * k));
            const __m256i aq = _mm256_sign_epi8(q, q);
            for (int c = 0; c < RN; c++) {
                const block_q8_0 *yb = (const block_q8_0 *)(y + c * by) + i;
                const __m256i a = _mm256_set1_epi32(((const int32_t *)yb->qs)[k]);
                const __m256i p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q));
                s32[c] = _mm256_add_epi32(s32[c], _mm256_madd_epi16(p, ones));
            }
        }
        for (int c = 0; c < RN; c++) {
            const block_q8_0 *yb = (const block_q8_0 *)(y + c * by) + i;
            const __m256 da = _mm256_set1_ps(_cvtsh_ss(yb->d));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[c]), _mm256_mul_ps(dw, da), acc[c]);
        }
    }
    for (int c = 0; c < RN; c++)
        _mm256_storeu_ps(s + c * bs, acc[c]);
#endif
}

/* Q5_0: f32 d[8], then 8 vectors of 32 bytes laid out as Q8_0's, each byte an element's
 * unsigned 5-bit value (nibble | high bit << 4, 0..31; the stored value minus the -16
 * offset). Unpacked once at load: 288 bytes per 8 x 32 elements instead of 176, and no bit
 * gathering per block. A pair sum of maddubs reaches 2 * 31 * 127, four of them 31496, so
 * each half of the eight products is added as int16 before one madd; 16 * the activation
 * block's sum takes the offset out. */
#define Q50_GB REPACK_Q50_GB

static ALWAYS_INLINE void group_tile_q5_0(int RN, int64_t nb, float *s, size_t bs,
                                          const uint8_t *w, const char *y, size_t by,
                                          const int32_t *ysum)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[TILE_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += Q50_GB) {
        if (RN == 1)
            for (int l = 0; l < Q50_GB; l += 64)
                _mm_prefetch((const char *)w + PF_DIST + l, _MM_HINT_T0);
        const __m256 dw = _mm256_load_ps((const float *)w);
        __m256i u[8];
        for (int k = 0; k < 8; k++)
            u[k] = _mm256_load_si256((const __m256i *)(w + 32 + 32 * k));
        for (int c = 0; c < RN; c++) {
            const block_q8_0 *yb = (const block_q8_0 *)(y + c * by) + i;
            const int32_t *a = (const int32_t *)yb->qs;
#ifdef LLM_REPACK_VNNI
            (void)ones;
            __m256i s32 = dot8_u8s8(u, a);
#else
            const __m256i lo = _mm256_add_epi16(
                _mm256_add_epi16(_mm256_maddubs_epi16(u[0], _mm256_set1_epi32(a[0])),
                                 _mm256_maddubs_epi16(u[1], _mm256_set1_epi32(a[1]))),
                _mm256_add_epi16(_mm256_maddubs_epi16(u[2], _mm256_set1_epi32(a[2])),
                                 _mm256_maddubs_epi16(u[3], _mm256_set1_epi32(a[3]))));
            const __m256i hi = _mm256_add_epi16(
                _mm256_add_epi16(_mm256_maddubs_epi16(u[4], _mm256_set1_epi32(a[4])),
                                 _mm256_maddubs_epi16(u[5], _mm256_set1_epi32(a[5]))),
                _mm256_add_epi16(_mm256_maddubs_epi16(u[6], _mm256_set1_epi32(a[6])),
                                 _mm256_maddubs_epi16(u[7], _mm256_set1_epi32(a[7]))));
            __m256i s32 = _mm256_add_epi32(_mm256_madd_epi16(lo, ones),
                                           _mm256_madd_epi16(hi, ones));
#endif
            s32 = _mm256_sub_epi32(s32, _mm256_set1_epi32(16 * ysum[c * nb + i]));
            const __m256 da = _mm256_set1_ps(_cvtsh_ss(yb->d));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(dw, da), acc[c]);
        }
    }
    for (int c = 0; c < RN; c++)
        _mm256_storeu_ps(s + c * bs, acc[c]);
}

/* Q4_K, per super-block of 256: f32 d[8], f32 dmin[8]; the 6-bit scales as uint8
 * [group][row][2] (each twice, so that one widening gives the int16 pair a madd needs);
 * the mins as uint8 [pair p][row][2] = (min of group 2p, of group 2p+1); then each group
 * of 32 packed like a Q4_0 block (128 bytes). */
#define Q4K_GB (64 + 128 + 64 + 8 * 128)

static size_t q4_K_group_bytes(int64_t k)
{
    return (size_t)(k / QK_K) * Q4K_GB;
}

static void q4_K_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / QK_K; i++, out += Q4K_GB) {
        float *d = (float *)out, *dmin = d + 8;
        uint8_t *sc = out + 64, *mins = out + 192, *q = out + 256;
        uint8_t vals[REPACK_ROWS][8][32];
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q4_K *b = (const block_q4_K *)((const char *)src + r * row_bytes) + i;
            d[r] = _cvtsh_ss(b->d);
            dmin[r] = _cvtsh_ss(b->dmin);
            for (int g = 0; g < 8; g++) {
                int s_, m_;
                llm__k4_scale_min(g, b->scales, &s_, &m_);
                sc[16 * g + 2 * r] = sc[16 * g + 2 * r + 1] = (uint8_t)s_;
                mins[16 * (g / 2) + 2 * r + (g & 1)] = (uint8_t)m_;
                for (int l = 0; l < 32; l++)
                    vals[r][g][l] = (b->qs[32 * (g / 2) + l] >> (4 * (g & 1))) & 0x0f;
            }
        }
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
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[TILE_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += Q4K_GB) {
        const block_q8_K *yb[TILE_TOKENS];
        __m256i isum[TILE_TOKENS];
        for (int c = 0; c < RN; c++) {
            yb[c] = (const block_q8_K *)(y + c * by) + i;
            isum[c] = _mm256_setzero_si256();
        }
        for (int g = 0; g < 8; g++) {
            const uint8_t *q = w + 256 + 128 * g;
            if (RN == 1) {
                _mm_prefetch((const char *)q + PF_DIST, _MM_HINT_T0);
                _mm_prefetch((const char *)q + PF_DIST + 64, _MM_HINT_T0);
            }
            __m256i v[8];
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_load_si256((const __m256i *)(q + 32 * k));
                v[k] = _mm256_and_si256(p, m4);
                v[k + 4] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
            }
            const __m256i sc = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i *)(w + 64 + 16 * g)));
            for (int c = 0; c < RN; c++) {
                const int32_t *a = (const int32_t *)(yb[c]->qs + 32 * g);
                __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(v[0], _mm256_set1_epi32(a[0])),
                                               _mm256_maddubs_epi16(v[1], _mm256_set1_epi32(a[1])));
                __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(v[2], _mm256_set1_epi32(a[2])),
                                               _mm256_maddubs_epi16(v[3], _mm256_set1_epi32(a[3])));
                __m256i s45 = _mm256_add_epi16(_mm256_maddubs_epi16(v[4], _mm256_set1_epi32(a[4])),
                                               _mm256_maddubs_epi16(v[5], _mm256_set1_epi32(a[5])));
                __m256i s67 = _mm256_add_epi16(_mm256_maddubs_epi16(v[6], _mm256_set1_epi32(a[6])),
                                               _mm256_maddubs_epi16(v[7], _mm256_set1_epi32(a[7])));
                const __m256i s16 =
                    _mm256_add_epi16(_mm256_add_epi16(s01, s23), _mm256_add_epi16(s45, s67));
                isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(s16, sc));
            }
        }
        const __m256 dw = _mm256_load_ps((const float *)w);
        const __m256 mw = _mm256_load_ps((const float *)w + 8);
        for (int c = 0; c < RN; c++) {
            /* sums of the activation's groups of 32 from its sums of 16 */
            const __m256i b16 = _mm256_loadu_si256((const __m256i *)yb[c]->bsums);
            const __m128i b = _mm_hadd_epi16(_mm256_castsi256_si128(b16),
                                             _mm256_extracti128_si256(b16, 1));
            int32_t bp[4];
            _mm_storeu_si128((__m128i *)bp, b);
            __m256i msum = _mm256_setzero_si256();
            for (int p = 0; p < 4; p++) {
                const __m256i mp =
                    _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i *)(w + 192 + 16 * p)));
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp, _mm256_set1_epi32(bp[p])));
            }
            const __m256 dy = _mm256_set1_ps(yb[c]->d);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dw, dy), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(mw, dy), acc[c]);
        }
    }
    for (int c = 0; c < RN; c++)
        _mm256_storeu_ps(s + c * bs, acc[c]);
}

/* Q6_K, per super-block of 256: f32 d[8]; the 16 int8 scales as int8 [group of 16][row][2]
 * (each twice, for madd); then each block of 32 as 4 nibble vectors (the low 4 bits, laid
 * out like Q4_0) and 2 vectors of high bits: byte b of H0 holds the 2 high bits of V0..V3
 * at bits 0-1, 2-3, 4-5, 6-7, H1 those of V4..V7. The values q are 0..63 (the weight is
 * q - 32): a maddubs pair reaches 2 * 63 * 127, so two are added as int16 before madd.
 * The -32 is taken out per super-block as 32 * sum(scale * activation group sum). */
#define Q6K_GB (32 + 256 + 8 * 192)

static size_t q6_K_group_bytes(int64_t k)
{
    return (size_t)(k / QK_K) * Q6K_GB;
}

/* the 256 values of a Q6_K block as 0..63, in element order */
static void q6_values(const block_q6_K *b, uint8_t *v)
{
    for (int h = 0; h < 2; h++, v += 128) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            v[l] = (uint8_t)((ql[l] & 0x0f) | (qh[l] & 3) << 4);
            v[l + 32] = (uint8_t)((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4);
            v[l + 64] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            v[l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
        }
    }
}

static void q6_K_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / QK_K; i++, out += Q6K_GB) {
        float *d = (float *)out;
        int8_t *sc = (int8_t *)(out + 32);
        uint8_t *q = out + 288;
        uint8_t vals[REPACK_ROWS][QK_K];
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q6_K *b = (const block_q6_K *)((const char *)src + r * row_bytes) + i;
            d[r] = _cvtsh_ss(b->d);
            for (int g = 0; g < 16; g++)
                sc[16 * g + 2 * r] = sc[16 * g + 2 * r + 1] = b->scales[g];
            q6_values(b, vals[r]);
        }
        for (int blk = 0; blk < 8; blk++) {
            uint8_t *p = q + 192 * blk;
            memset(p, 0, 192);
            for (int kk = 0; kk < 8; kk++)
                for (int r = 0; r < REPACK_ROWS; r++)
                    for (int j = 0; j < 4; j++) {
                        const uint8_t v = vals[r][32 * blk + 4 * kk + j];
                        const int byte = 4 * r + j;
                        p[32 * (kk % 4) + byte] |= (uint8_t)((v & 0x0f) << (4 * (kk / 4)));
                        p[128 + 32 * (kk / 4) + byte] |= (uint8_t)((v >> 4) << (2 * (kk % 4)));
                    }
        }
    }
}

static ALWAYS_INLINE void group_tile_q6_K(int RN, int64_t nb, float *s, size_t bs,
                                          const uint8_t *w, const char *y, size_t by)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m3 = _mm256_set1_epi8(0x30);
    __m256 acc[TILE_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += Q6K_GB) {
        const block_q8_K *yb[TILE_TOKENS];
        __m256i isum[TILE_TOKENS], offs[TILE_TOKENS];
        for (int c = 0; c < RN; c++) {
            yb[c] = (const block_q8_K *)(y + c * by) + i;
            isum[c] = offs[c] = _mm256_setzero_si256();
        }
        for (int blk = 0; blk < 8; blk++) {
            const uint8_t *q = w + 288 + 192 * blk;
            if (RN == 1)
                for (int l = 0; l < 192; l += 64)
                    _mm_prefetch((const char *)q + PF_DIST + l, _MM_HINT_T0);
            const __m256i h0 = _mm256_load_si256((const __m256i *)(q + 128));
            const __m256i h1 = _mm256_load_si256((const __m256i *)(q + 160));
            __m256i v[8];
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_load_si256((const __m256i *)(q + 32 * k));
                /* high bits k of H0 at bit 2k -> bits 4-5 */
                const __m256i hi0 = k < 2 ? _mm256_slli_epi16(h0, 4 - 2 * k)
                                          : _mm256_srli_epi16(h0, 2 * k - 4);
                const __m256i hi1 = k < 2 ? _mm256_slli_epi16(h1, 4 - 2 * k)
                                          : _mm256_srli_epi16(h1, 2 * k - 4);
                v[k] = _mm256_or_si256(_mm256_and_si256(p, m4), _mm256_and_si256(hi0, m3));
                v[k + 4] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(p, 4), m4),
                                           _mm256_and_si256(hi1, m3));
            }
            const __m256i sc0 = _mm256_cvtepi8_epi16(
                _mm_load_si128((const __m128i *)(w + 32 + 16 * (2 * blk))));
            const __m256i sc1 = _mm256_cvtepi8_epi16(
                _mm_load_si128((const __m128i *)(w + 32 + 16 * (2 * blk + 1))));
#ifdef LLM_REPACK_VNNI
            const __m256i sc0_32 = _mm256_srai_epi32(_mm256_slli_epi32(sc0, 16), 16);
            const __m256i sc1_32 = _mm256_srai_epi32(_mm256_slli_epi32(sc1, 16), 16);
            for (int c = 0; c < RN; c++) {
                const int32_t *a = (const int32_t *)(yb[c]->qs + 32 * blk);
                const __m256i t0 = _mm256_mullo_epi32(dot4_u8s8(v, a), sc0_32);
                const __m256i t1 = _mm256_mullo_epi32(dot4_u8s8(v + 4, a + 4), sc1_32);
                isum[c] = _mm256_add_epi32(isum[c], _mm256_add_epi32(t0, t1));
                const int16_t *bsum = yb[c]->bsums + 2 * blk;
                offs[c] = _mm256_add_epi32(
                    offs[c],
                    _mm256_add_epi32(
                        _mm256_madd_epi16(sc0, _mm256_set1_epi32((uint16_t)bsum[0])),
                        _mm256_madd_epi16(sc1, _mm256_set1_epi32((uint16_t)bsum[1]))));
            }
            continue;
#endif
            for (int c = 0; c < RN; c++) {
                const int32_t *a = (const int32_t *)(yb[c]->qs + 32 * blk);
                const __m256i s01 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(v[0], _mm256_set1_epi32(a[0])),
                    _mm256_maddubs_epi16(v[1], _mm256_set1_epi32(a[1])));
                const __m256i s23 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(v[2], _mm256_set1_epi32(a[2])),
                    _mm256_maddubs_epi16(v[3], _mm256_set1_epi32(a[3])));
                const __m256i s45 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(v[4], _mm256_set1_epi32(a[4])),
                    _mm256_maddubs_epi16(v[5], _mm256_set1_epi32(a[5])));
                const __m256i s67 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(v[6], _mm256_set1_epi32(a[6])),
                    _mm256_maddubs_epi16(v[7], _mm256_set1_epi32(a[7])));
                const __m256i t0 = _mm256_add_epi32(_mm256_madd_epi16(s01, sc0),
                                                    _mm256_madd_epi16(s23, sc0));
                const __m256i t1 = _mm256_add_epi32(_mm256_madd_epi16(s45, sc1),
                                                    _mm256_madd_epi16(s67, sc1));
                isum[c] = _mm256_add_epi32(isum[c], _mm256_add_epi32(t0, t1));
                const int16_t *bsum = yb[c]->bsums + 2 * blk;
                offs[c] = _mm256_add_epi32(
                    offs[c],
                    _mm256_add_epi32(
                        _mm256_madd_epi16(sc0, _mm256_set1_epi32((uint16_t)bsum[0])),
                        _mm256_madd_epi16(sc1, _mm256_set1_epi32((uint16_t)bsum[1]))));
            }
        }
        const __m256 dw = _mm256_load_ps((const float *)w);
        for (int c = 0; c < RN; c++) {
            const __m256i tot = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(offs[c], 5));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot),
                                     _mm256_mul_ps(dw, _mm256_set1_ps(yb[c]->d)), acc[c]);
        }
    }
    for (int c = 0; c < RN; c++)
        _mm256_storeu_ps(s + c * bs, acc[c]);
}

#ifdef LLM_REPACK_VNNI
/* ---- two groups per 512-bit register (AVX-512 VNNI, several tokens) -------------------
 *
 * Two neighbouring groups side by side: group A's 8 rows in the low half of each register,
 * group B's in the high half, so one vpdpbusd serves 16 rows, and a tile of up to
 * PAIR_TOKENS tokens passes over the two groups' weights once (the 256-bit tiles above take
 * 4 tokens and 8 rows). The layout stays the 8-row one; each half is loaded from its group.
 * Per lane the integer sums are the same exact values and the float steps the same
 * operations in the same order as in the 256-bit tiles, so a row's result is bit-identical
 * whichever kernel computes it. A group without a neighbour (an odd count) takes the 256-bit
 * tiles. One token (generation) prefetches both groups' weights as group_tile does: in
 * 512-bit registers it runs about a quarter faster than in 256-bit ones on the 2-core
 * Xeon of docs/perf/cpu.md, half the instructions per weight byte. */
#define PAIR_TOKENS 8

static ALWAYS_INLINE __m512i load2(const uint8_t *a, const uint8_t *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256((const __m256i *)a)),
                              _mm256_load_si256((const __m256i *)b), 1);
}

static ALWAYS_INLINE __m512 load2_ps(const uint8_t *a, const uint8_t *b)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_load_ps((const float *)a)),
                              _mm256_load_ps((const float *)b), 1);
}

/* 16 bytes of each group as one 256-bit register (A low, B high) */
static ALWAYS_INLINE __m256i load2_128(const uint8_t *a, const uint8_t *b)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_load_si128((const __m128i *)a)),
                                   _mm_load_si128((const __m128i *)b), 1);
}

/* What the pair kernels read per activation block besides its quants (fill_aux, once per
 * matmul): broadcast from memory they cost no vector-port work, where converting an f16
 * scale and scaling a sum per block and token took vector instructions beside the eight
 * products (kernel alone, in cache, on the 2-core Xeon: Q4_0 +14%, Q6_K +12%).
 *  - Q8_0 blocks (Q4_0, Q5_0, Q8_0 weights): -offset * sum of the quants, then d as f32;
 *    the sum starts the block's dot chain, so the offset costs nothing.
 *  - Q8_1 blocks (Q4_1): d and s as f32.
 *  - Q8_K for Q4_K: per super-block the 4 int16 pairs of group-of-32 sums that
 *    group_tile_q4_K forms with hadd (16 int32 slots, 4 used; kernel alone +10%).
 *  - Q8_K for Q6_K: per super-block -32 * each of its 16 sums of 16, each starting its
 *    half-block's dot chain. */
static ALWAYS_INLINE int32_t f32_bits(float f)
{
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

static ALWAYS_INLINE void aux_q8_0(const void *row, const int32_t *sums, int64_t k,
                                   int32_t *aux, int32_t offset)
{
    const block_q8_0 *b = row;
    for (int64_t i = 0; i < k / 32; i++) {
        aux[2 * i] = -offset * sums[i];
        aux[2 * i + 1] = f32_bits(_cvtsh_ss(b[i].d));
    }
}

/* Q4_0, Q5_0 and Q8_0 (VNNI) need the block sums, so cpu.c passes them */
static void aux_q4_0(const void *row, const int32_t *sums, int64_t k, int32_t *aux)
{
    aux_q8_0(row, sums, k, aux, 8);
}

static void aux_q5_0(const void *row, const int32_t *sums, int64_t k, int32_t *aux)
{
    aux_q8_0(row, sums, k, aux, 16);
}

static void aux_q8_0_u(const void *row, const int32_t *sums, int64_t k, int32_t *aux)
{
    aux_q8_0(row, sums, k, aux, 128);
}

static void aux_q4_1(const void *row, const int32_t *sums, int64_t k, int32_t *aux)
{
    (void)sums;
    const block_q8_1 *b = row;
    for (int64_t i = 0; i < k / 32; i++) {
        aux[2 * i] = f32_bits(_cvtsh_ss(b[i].d));
        aux[2 * i + 1] = f32_bits(_cvtsh_ss(b[i].s));
    }
}

static void aux_q4_K(const void *row, const int32_t *sums, int64_t k, int32_t *aux)
{
    (void)sums;
    const block_q8_K *b = row;
    for (int64_t i = 0; i < k / QK_K; i++, aux += 16)
        for (int p = 0; p < 4; p++) {
            const int16_t lo = (int16_t)(b[i].bsums[4 * p] + b[i].bsums[4 * p + 1]);
            const int16_t hi = (int16_t)(b[i].bsums[4 * p + 2] + b[i].bsums[4 * p + 3]);
            aux[p] = (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
        }
}

static void aux_q6_K(const void *row, const int32_t *sums, int64_t k, int32_t *aux)
{
    (void)sums;
    const block_q8_K *b = row;
    for (int64_t i = 0; i < k / QK_K; i++, aux += 16)
        for (int j = 0; j < 16; j++)
            aux[j] = -32 * b[i].bsums[j];
}

/* Q4_0, Q4_1, Q5_0 and Q8_0: blocks of 32 with one f32 scale per row (Q4_1: and a min).
 * kind 0: Q4_0 (nibbles, 8 * sum out), 1: Q4_1, 2: Q5_0 (bytes, 16 * sum out), 3: Q8_0
 * (bytes ^ 0x80, 128 * sum out). Integer sums are exact, so their order does not matter. */
static ALWAYS_INLINE void pair_tile(int kind, int RN, int64_t nb, float *s, size_t bs,
                                    const uint8_t *wa, const uint8_t *wb, const char *y,
                                    size_t by, const int32_t *aux)
{
    const size_t gb = kind == 0 ? Q40_GB : kind == 1 ? Q41_GB : kind == 2 ? Q50_GB : Q80_GB;
    const size_t yb_size = kind == 1 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const int qoff = kind == 1 ? 64 : 32;
    const int64_t as = REPACK_AUX_PER_BLOCK * nb; /* a token's aux */
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[PAIR_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, wa += gb, wb += gb) {
        if (RN == 1)
            for (size_t l = 0; l < gb; l += 64) {
                _mm_prefetch((const char *)wa + PF_DIST + l, _MM_HINT_T0);
                _mm_prefetch((const char *)wb + PF_DIST + l, _MM_HINT_T0);
            }
        __m512i u[8];
        if (kind <= 1) {
            for (int k = 0; k < 4; k++) {
                const __m512i p = load2(wa + qoff + 32 * k, wb + qoff + 32 * k);
                u[k] = _mm512_and_si512(p, m4);
                u[k + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
            }
        } else {
            for (int k = 0; k < 8; k++) {
                u[k] = load2(wa + 32 + 32 * k, wb + 32 + 32 * k);
                if (kind == 3)
                    u[k] = _mm512_xor_si512(u[k], bias);
            }
        }
        const __m512 dw = load2_ps(wa, wb);
        for (int c = 0; c < RN; c++) {
            const int32_t *a = (const int32_t *)(y + c * by + (size_t)i * yb_size + (kind == 1 ? 4 : 2));
            const int32_t *ax = aux + c * as + 2 * i;
            /* two chains: eight dependent vpdpbusd a token were slower (their latency) */
            __m512i s0 = kind == 1 ? _mm512_setzero_si512() : _mm512_set1_epi32(ax[0]);
            __m512i s1 = _mm512_setzero_si512();
            for (int k = 0; k < 8; k += 2) {
                s0 = _mm512_dpbusd_epi32(s0, u[k], _mm512_set1_epi32(a[k]));
                s1 = _mm512_dpbusd_epi32(s1, u[k + 1], _mm512_set1_epi32(a[k + 1]));
            }
            const __m512i s32 = _mm512_add_epi32(s0, s1);
            const __m512 da = _mm512_castsi512_ps(_mm512_set1_epi32(ax[kind == 1 ? 0 : 1]));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s32), _mm512_mul_ps(dw, da), acc[c]);
            if (kind == 1) {
                const __m512 mw = load2_ps(wa + 32, wb + 32);
                const __m512 sa = _mm512_castsi512_ps(_mm512_set1_epi32(ax[1]));
                acc[c] = _mm512_fmadd_ps(mw, sa, acc[c]);
            }
        }
    }
    for (int c = 0; c < RN; c++)
        _mm512_storeu_ps(s + c * bs, acc[c]);
}

/* Q4_K: per group of 32 the exact dot of each half (16 elements) as an int16 pair per row,
 * times the row's 6-bit scale stored twice (s, s) and added in one vpdpwssd (kernel alone:
 * +10% over one vpmulld per group); the mins through the activation's group sums (from
 * the aux) once per super-block. The same integers as group_tile_q4_K. */
static ALWAYS_INLINE void pair_tile_q4_K(int RN, int64_t nb, float *s, size_t bs,
                                         const uint8_t *wa, const uint8_t *wb, const char *y,
                                         size_t by, const int32_t *aux)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[PAIR_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, wa += Q4K_GB, wb += Q4K_GB) {
        const block_q8_K *yb[PAIR_TOKENS];
        __m512i isum[PAIR_TOKENS];
        for (int c = 0; c < RN; c++) {
            yb[c] = (const block_q8_K *)(y + c * by) + i;
            isum[c] = _mm512_setzero_si512();
        }
        for (int g = 0; g < 8; g++) {
            if (RN == 1)
                for (int l = 0; l < 128; l += 64) {
                    _mm_prefetch((const char *)wa + 256 + 128 * g + PF_DIST + l, _MM_HINT_T0);
                    _mm_prefetch((const char *)wb + 256 + 128 * g + PF_DIST + l, _MM_HINT_T0);
                }
            __m512i v[8];
            for (int k = 0; k < 4; k++) {
                const __m512i p = load2(wa + 256 + 128 * g + 32 * k, wb + 256 + 128 * g + 32 * k);
                v[k] = _mm512_and_si512(p, m4);
                v[k + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
            }
            /* the scales as int16 pairs (s, s) per row, as stored */
            const __m512i sc = _mm512_cvtepu8_epi16(load2_128(wa + 64 + 16 * g, wb + 64 + 16 * g));
            for (int c = 0; c < RN; c++) {
                /* two chains of 16 elements each, |sum| <= 16 * 15 * 128 < 2^15: one
                 * int16 pair per row, multiplied by (s, s) and added by one vpdpwssd */
                const int32_t *a = (const int32_t *)(yb[c]->qs + 32 * g);
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], _mm512_set1_epi32(a[0]));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[1], _mm512_set1_epi32(a[1]));
                for (int k = 2; k < 8; k += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, v[k], _mm512_set1_epi32(a[k]));
                    s1 = _mm512_dpbusd_epi32(s1, v[k + 1], _mm512_set1_epi32(a[k + 1]));
                }
                const __m512i pair =
                    _mm512_mask_blend_epi16(0xaaaaaaaa, s0, _mm512_slli_epi32(s1, 16));
                isum[c] = _mm512_dpwssd_epi32(isum[c], pair, sc);
            }
        }
        const __m512 dw = load2_ps(wa, wb);
        const __m512 mw = load2_ps(wa + 32, wb + 32);
        __m512i mp[4];
        for (int p = 0; p < 4; p++)
            mp[p] = _mm512_cvtepu8_epi16(load2_128(wa + 192 + 16 * p, wb + 192 + 16 * p));
        for (int c = 0; c < RN; c++) {
            const int32_t *ax = aux + c * (REPACK_AUX_PER_BLOCK * 8 * nb) + 16 * i;
            const __m512i msum = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_madd_epi16(mp[0], _mm512_set1_epi32(ax[0])),
                                 _mm512_madd_epi16(mp[1], _mm512_set1_epi32(ax[1]))),
                _mm512_add_epi32(_mm512_madd_epi16(mp[2], _mm512_set1_epi32(ax[2])),
                                 _mm512_madd_epi16(mp[3], _mm512_set1_epi32(ax[3]))));
            const __m512 dy = _mm512_set1_ps(yb[c]->d);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, dy), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(mw, dy), acc[c]);
        }
    }
    for (int c = 0; c < RN; c++)
        _mm512_storeu_ps(s + c * bs, acc[c]);
}

/* Q6_K: per 16 elements (dot - 32 * activation sum, the aux starting the chain) times the
 * row's int8 scale, summed exactly: the same integer as group_tile_q6_K's
 * isum - 32 * offs. */
static ALWAYS_INLINE void pair_tile_q6_K(int RN, int64_t nb, float *s, size_t bs,
                                         const uint8_t *wa, const uint8_t *wb, const char *y,
                                         size_t by, const int32_t *aux)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m3 = _mm512_set1_epi8(0x30);
    const int64_t as = REPACK_AUX_PER_BLOCK * 8 * nb; /* a token's aux */
    __m512 acc[PAIR_TOKENS];
    for (int c = 0; c < RN; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, wa += Q6K_GB, wb += Q6K_GB) {
        const block_q8_K *yb[PAIR_TOKENS];
        __m512i isum[PAIR_TOKENS];
        for (int c = 0; c < RN; c++) {
            yb[c] = (const block_q8_K *)(y + c * by) + i;
            isum[c] = _mm512_setzero_si512();
        }
        for (int blk = 0; blk < 8; blk++) {
            const uint8_t *qa = wa + 288 + 192 * blk, *qb = wb + 288 + 192 * blk;
            if (RN == 1)
                for (int l = 0; l < 192; l += 64) {
                    _mm_prefetch((const char *)qa + PF_DIST + l, _MM_HINT_T0);
                    _mm_prefetch((const char *)qb + PF_DIST + l, _MM_HINT_T0);
                }
            const __m512i h0 = load2(qa + 128, qb + 128);
            const __m512i h1 = load2(qa + 160, qb + 160);
            __m512i v[8];
            for (int k = 0; k < 4; k++) {
                const __m512i p = load2(qa + 32 * k, qb + 32 * k);
                const __m512i hi0 = k < 2 ? _mm512_slli_epi16(h0, 4 - 2 * k)
                                          : _mm512_srli_epi16(h0, 2 * k - 4);
                const __m512i hi1 = k < 2 ? _mm512_slli_epi16(h1, 4 - 2 * k)
                                          : _mm512_srli_epi16(h1, 2 * k - 4);
                v[k] = _mm512_or_si512(_mm512_and_si512(p, m4), _mm512_and_si512(hi0, m3));
                v[k + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(p, 4), m4),
                                           _mm512_and_si512(hi1, m3));
            }
            /* int8 scales stored twice: the int16 pair s << 8 | (uint8)s, shifted down */
            const __m512i sc0 = _mm512_srai_epi32(
                _mm512_cvtepi16_epi32(load2_128(wa + 32 + 32 * blk, wb + 32 + 32 * blk)), 8);
            const __m512i sc1 = _mm512_srai_epi32(
                _mm512_cvtepi16_epi32(load2_128(wa + 48 + 32 * blk, wb + 48 + 32 * blk)), 8);
            for (int c = 0; c < RN; c++) {
                const int32_t *a = (const int32_t *)(yb[c]->qs + 32 * blk);
                const int32_t *ax = aux + c * as + 16 * i + 2 * blk;
                __m512i d0 = _mm512_set1_epi32(ax[0]), d1 = _mm512_set1_epi32(ax[1]);
                for (int k = 0; k < 4; k++) {
                    d0 = _mm512_dpbusd_epi32(d0, v[k], _mm512_set1_epi32(a[k]));
                    d1 = _mm512_dpbusd_epi32(d1, v[k + 4], _mm512_set1_epi32(a[k + 4]));
                }
                isum[c] = _mm512_add_epi32(
                    isum[c], _mm512_add_epi32(_mm512_mullo_epi32(d0, sc0),
                                              _mm512_mullo_epi32(d1, sc1)));
            }
        }
        const __m512 dw = load2_ps(wa, wb);
        for (int c = 0; c < RN; c++)
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]),
                                     _mm512_mul_ps(dw, _mm512_set1_ps(yb[c]->d)), acc[c]);
    }
    for (int c = 0; c < RN; c++)
        _mm512_storeu_ps(s + c * bs, acc[c]);
}

#define PAIR_Q4_0(RN, s_, a_, b_, y_, aux_) pair_tile(0, RN, nb, s_, bs, a_, b_, y_, by, aux_)
#define PAIR_Q4_1(RN, s_, a_, b_, y_, aux_) pair_tile(1, RN, nb, s_, bs, a_, b_, y_, by, aux_)
#define PAIR_Q5_0(RN, s_, a_, b_, y_, aux_) pair_tile(2, RN, nb, s_, bs, a_, b_, y_, by, aux_)
#define PAIR_Q8_0(RN, s_, a_, b_, y_, aux_) pair_tile(3, RN, nb, s_, bs, a_, b_, y_, by, aux_)
#define PAIR_Q4_K(RN, s_, a_, b_, y_, aux_) pair_tile_q4_K(RN, nb / 8, s_, bs, a_, b_, y_, by, aux_)
#define PAIR_Q6_K(RN, s_, a_, b_, y_, aux_) pair_tile_q6_K(RN, nb / 8, s_, bs, a_, b_, y_, by, aux_)

/* pairs of groups in tiles of PAIR_TOKENS (8) tokens, the rest of the tokens in one
 * smaller tile; RN is a constant in every instance */
#define PAIR_CASE(RN_, PAIR)                                                                \
    case RN_:                                                                               \
        PAIR(RN_, sg + c * bs, wa, wa + gstride, (const char *)y + c * by,                  \
             aux ? aux + c * REPACK_AUX_PER_BLOCK * nb : NULL);                             \
        break;
#define PAIRS(PAIR)                                                                         \
    for (; g + 2 <= n_groups; g += 2) {                                                     \
        const uint8_t *wa = (const uint8_t *)w + g * gstride;                               \
        float *sg = s + g * REPACK_ROWS;                                                    \
        int64_t c = 0;                                                                      \
        for (; c + PAIR_TOKENS <= nc; c += PAIR_TOKENS)                                     \
            PAIR(PAIR_TOKENS, sg + c * bs, wa, wa + gstride, (const char *)y + c * by,      \
                 aux ? aux + c * REPACK_AUX_PER_BLOCK * nb : NULL);                         \
        switch (nc - c) {                                                                   \
            PAIR_CASE(7, PAIR)                                                              \
            PAIR_CASE(6, PAIR)                                                              \
            PAIR_CASE(5, PAIR)                                                              \
            PAIR_CASE(4, PAIR)                                                              \
            PAIR_CASE(3, PAIR)                                                              \
            PAIR_CASE(2, PAIR)                                                              \
            PAIR_CASE(1, PAIR)                                                              \
        default:                                                                            \
            break;                                                                          \
        }                                                                                   \
    }
#endif

#define TILE_Q6_K(RN, s_, w_, y_, ysum_) group_tile_q6_K(RN, nb / 8, s_, bs, w_, y_, by)
#define TILE_Q4_K(RN, s_, w_, y_, ysum_) group_tile_q4_K(RN, nb / 8, s_, bs, w_, y_, by)
#define TILE_Q8_0(RN, s_, w_, y_, ysum_) group_tile_q8_0(RN, nb, s_, bs, w_, y_, by, ysum_)
#define TILE_Q4_0(RN, s_, w_, y_, ysum_) group_tile(0, RN, nb, s_, bs, w_, y_, by, ysum_)
#define TILE_Q4_1(RN, s_, w_, y_, ysum_) group_tile(1, RN, nb, s_, bs, w_, y_, by, ysum_)
#define TILE_Q5_0(RN, s_, w_, y_, ysum_) group_tile_q5_0(RN, nb, s_, bs, w_, y_, by, ysum_)

#ifdef LLM_REPACK_VNNI
#define PAIRS_OF(PAIR) PAIRS(PAIR)
#else
#define PAIRS_OF(PAIR)
#endif

#define GEMM(name, TILE, PAIR)                                                                \
    static void name(int64_t k, float *s, size_t bs, const void *w, size_t gstride,        \
                     int64_t n_groups, const void *y, size_t by, const int32_t *ysum,      \
                     const int32_t *aux, int64_t nc)                                        \
    {                                                                                       \
        const int64_t nb = k / 32;                                                          \
        int64_t g = 0;                                                                      \
        (void)ysum;                                                                         \
        (void)aux;                                                                          \
        PAIRS_OF(PAIR)                                                                      \
        for (; g < n_groups; g++) {                                                         \
            const uint8_t *wg = (const uint8_t *)w + g * gstride;                           \
            float *sg = s + g * REPACK_ROWS;                                                \
            int64_t c = 0;                                                                  \
            for (; c + TILE_TOKENS <= nc; c += TILE_TOKENS)                                 \
                TILE(TILE_TOKENS, sg + c * bs, wg, (const char *)y + c * by,                \
                     ysum ? ysum + c * nb : NULL);                                          \
            switch (nc - c) {                                                               \
            case 3:                                                                         \
                TILE(3, sg + c * bs, wg, (const char *)y + c * by, ysum ? ysum + c * nb : NULL); \
                break;                                                                      \
            case 2:                                                                         \
                TILE(2, sg + c * bs, wg, (const char *)y + c * by, ysum ? ysum + c * nb : NULL); \
                break;                                                                      \
            case 1:                                                                         \
                TILE(1, sg + c * bs, wg, (const char *)y + c * by, ysum ? ysum + c * nb : NULL); \
                break;                                                                      \
            default:                                                                        \
                break;                                                                      \
            }                                                                               \
        }                                                                                   \
    }

GEMM(gemm_q4_0_x8, TILE_Q4_0, PAIR_Q4_0)
GEMM(gemm_q4_1_x8, TILE_Q4_1, PAIR_Q4_1)
GEMM(gemm_q5_0_x8, TILE_Q5_0, PAIR_Q5_0)
GEMM(gemm_q8_0_x8, TILE_Q8_0, PAIR_Q8_0)
GEMM(gemm_q4_K_x8, TILE_Q4_K, PAIR_Q4_K)
GEMM(gemm_q6_K_x8, TILE_Q6_K, PAIR_Q6_K)

#ifdef LLM_REPACK_VNNI
#define AUX(f) f
#else
#define AUX(f) NULL
#endif
static const llm_repack_traits q4_0_x8 = {llm__repack_q4_0_bytes, llm__repack_q4_0_pack, gemm_q4_0_x8, 1, AUX(aux_q4_0)};
static const llm_repack_traits q4_1_x8 = {llm__repack_q4_1_bytes, llm__repack_q4_1_pack, gemm_q4_1_x8, 0, AUX(aux_q4_1)};
static const llm_repack_traits q5_0_x8 = {llm__repack_q5_0_bytes, llm__repack_q5_0_pack, gemm_q5_0_x8, 1, AUX(aux_q5_0)};
#ifdef LLM_REPACK_VNNI
static const llm_repack_traits q8_0_x8 = {llm__repack_q8_0_bytes, llm__repack_q8_0_pack, gemm_q8_0_x8, 1, aux_q8_0_u};
#else
static const llm_repack_traits q8_0_x8 = {llm__repack_q8_0_bytes, llm__repack_q8_0_pack, gemm_q8_0_x8, 0, NULL};
#endif
static const llm_repack_traits q4_K_x8 = {q4_K_group_bytes, q4_K_pack, gemm_q4_K_x8, 0, AUX(aux_q4_K)};
static const llm_repack_traits q6_K_x8 = {q6_K_group_bytes, q6_K_pack, gemm_q6_K_x8, 0, AUX(aux_q6_K)};

const llm_repack_traits *REPACK_TRAITS_FN(uint32_t dtype)
{
    switch (dtype) {
    case LLM_DT_Q4_0: return &q4_0_x8;
    case LLM_DT_Q4_1: return &q4_1_x8;
    case LLM_DT_Q5_0: return &q5_0_x8;
    case LLM_DT_Q8_0: return &q8_0_x8;
    case LLM_DT_Q4_K: return &q4_K_x8;
    case LLM_DT_Q6_K: return &q6_K_x8;
    default: return NULL;
    }
}

#ifndef LLM_REPACK_VNNI
void llm__q8_0_block_sums(const void *blocks, int64_t nb, int32_t *out)
{
    const block_q8_0 *b = blocks;
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < nb; i++) {
        /* sign-extend through maddubs(1, q): pairs of q as int16 */
        __m256i q = _mm256_loadu_si256((const __m256i *)b[i].qs);
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
        out[i] = _mm_cvtsi128_si32(r);
    }
}
#endif

#else /* built without AVX2/FMA/F16C (or, for LLM_REPACK_VNNI, without AVX512_VNNI) */

#ifdef LLM_REPACK_VNNI
const llm_repack_traits *llm__repack_avx512vnni_traits(uint32_t dtype)
#else
const llm_repack_traits *llm__repack_avx2_traits(uint32_t dtype)
#endif
{
    (void)dtype;
    return NULL;
}

#ifndef LLM_REPACK_VNNI
void llm__q8_0_block_sums(const void *blocks, int64_t nb, int32_t *out)
{
    const block_q8_0 *b = blocks;
    for (int64_t i = 0; i < nb; i++) {
        int32_t s = 0;
        for (int j = 0; j < 32; j++)
            s += b[i].qs[j];
        out[i] = s;
    }
}
#endif

#endif
