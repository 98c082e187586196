/* quants_avx512_bf16.c - the BF16 dot with AVX512_BF16 (-mavx512bf16): vdpbf16ps multiplies
 * pairs of bf16 and adds both products into an f32 lane, 32 elements per instruction.
 *
 * Not bit-identical with the other levels: each lane adds its two products one after the
 * other (and the tail goes through masked loads rather than a double sum), and the
 * instruction treats subnormal inputs and results as zero. bf16 weights and activations of
 * real models are far from subnormal, and the sum agrees with the reference to float
 * rounding (test_quants checks 1e-5 of sum |x*y|). */
#include "quants.h"

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

int llm__quant_avx512bf16_fill(llm_quant_traits *t)
{
    t[LLM_DT_BF16].vec_dot = bf16_dot;
    return 1;
}

#else

int llm__quant_avx512bf16_fill(llm_quant_traits *t)
{
    (void)t;
    return 0;
}

#endif
