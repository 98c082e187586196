/* quants_avx512_bf16.c - the BF16 dot and its tiles (gemm) with AVX512_BF16
 * (-mavx512bf16): vdpbf16ps multiplies pairs of bf16 and adds both products into an f32
 * lane, 32 elements per instruction.
 *
 * Not bit-identical with the other levels: each lane adds its two products one after the
 * other (and the tail goes through masked loads rather than a double sum), and the
 * instruction treats subnormal inputs and results as zero. bf16 weights and activations of
 * real models are far from subnormal, and the sum agrees with the reference to float
 * rounding (test_quants checks 1e-5 of sum |x*y|). */
#include "quants.h"
#include "float_tiles.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)

#include <immintrin.h>

static void bf16_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const llm_bf16 *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(x + i),
                              (__m512bh)_mm512_loadu_si512(y + i));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(x + i + 32),
                              (__m512bh)_mm512_loadu_si512(y + i + 32));
    }
    for (; i < n; i += 32) {
        /* zeros past the end add nothing */
        const __mmask32 m = n - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (n - i)) - 1);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m, x + i),
                              (__m512bh)_mm512_maskz_loadu_epi16(m, y + i));
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Tiles of up to 4 rows by 3 tokens (gemm), bf16 activations: each pair keeps the dot's
 * two accumulators with the same vdpbf16ps steps in the same order and the same final
 * reduction, so every result has the dot's bits. Rows of other than a multiple of 32 go
 * through the dot itself. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE __m512bh bh_load(const char *p, int64_t i)
{
    return (__m512bh)_mm512_loadu_si512((const llm_bf16 *)p + i);
}

static ALWAYS_INLINE void bf16_tile(int R, int T, int64_t n, float *s, size_t bs, const char *x,
                                    size_t bx, const char *y, size_t by)
{
    __m512 acc[FT_RM][FT_TM][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512bh wv[FT_RM], yv[FT_TM];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                wv[r] = bh_load(x + (size_t)r * bx, i + 32 * h);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                yv[t] = bh_load(y + (size_t)t * by, i + 32 * h);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    acc[r][t][h] = _mm512_dpbf16_ps(acc[r][t][h], wv[r], yv[t]);
        }
    }
    if (i < n) { /* the dot's last 32 elements, into its first accumulator */
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[r][t][0] = _mm512_dpbf16_ps(acc[r][t][0], bh_load(x + (size_t)r * bx, i),
                                                bh_load(y + (size_t)t * by, i));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            s[(size_t)t * bs + (size_t)r] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

static void gemm_bf16(int64_t n, float *s, size_t bs, const void *vx, size_t bx, const void *vy,
                      size_t by, int64_t nr, int64_t nc)
{
    const char *x = vx, *y = vy;
    if (n % 32) { /* the dot's masked tail: no tiles */
        for (int64_t c = 0; c < nc; c++)
            for (int64_t r = 0; r < nr; r++)
                bf16_dot(n, s + (size_t)c * bs + (size_t)r, x + (size_t)r * bx,
                         y + (size_t)c * by);
        return;
    }
#define BF16_TILE(R, T, o, xr, yc) bf16_tile(R, T, n, o, bs, xr, bx, yc, by)
    FT_FOR_TILES(s, bs, x, bx, y, by, nr, nc, BF16_TILE)
#undef BF16_TILE
}

int llm__quant_avx512bf16_fill(llm_quant_traits *t)
{
    t[LLM_DT_BF16].vec_dot = bf16_dot;
    t[LLM_DT_BF16].gemm = gemm_bf16;
    t[LLM_DT_BF16].gemm_f32_act = 0; /* bf16 activations, as the dot takes them */
    t[LLM_DT_BF16].gemm_one = 1;
    return 1;
}

#else

int llm__quant_avx512bf16_fill(llm_quant_traits *t)
{
    (void)t;
    return 0;
}

#endif
