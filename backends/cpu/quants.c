/* quants.c - reference (scalar) kernels for the GGUF block formats, the half-precision
 * conversions, and the run-time choice of the fastest kernels (llm__quant_best).
 *
 * The block layouts are ggml's. The activation quantisers (Q8_0, Q8_1, Q8_K) follow
 * llama.cpp's reference semantics exactly (scale choice, rounding, the Q8_1 `s` field, the
 * Q8_K bsums), and each vec_dot forms the same integer sums per block as llama.cpp's generic
 * code and combines them with the block scales in the same float order, so that a matmul
 * here agrees with llama.cpp's to float rounding. The SIMD kernels in quants_avx2.c are
 * tested against these. */
#include "quants.h"
#include "quants_iq.h"
#include "repack.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The bit-exact results (dequantisation equal to ggml's and numpy's, quantisers equal to
 * ggml's) need every multiply and add rounded on its own: no contraction into FMA, even in
 * builds with -march=native and GNU C's default -ffp-contract=fast. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- half precision ------------------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* NaNs come out quiet with their payload kept (shifted), as the F16C instructions do, so
 * that the scalar and SIMD row conversions give identical bits for every input. */
float llm__f16_to_f32(llm_f16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f)
        return bits_f32(sign | 0x7f800000u | (mant ? 0x400000u | (mant << 13) : 0));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: mant * 2^-24; normalise so the leading bit becomes implicit */
        uint32_t e = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        return bits_f32(sign | (e << 23) | ((mant & 0x3ff) << 13));
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round to nearest, ties to even; overflow gives inf, tiny values give subnormals or 0. */
llm_f16 llm__f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet, payload truncated */
        return (llm_f16)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    if (ax >= 0x477ff000u) /* >= 65520 rounds past the largest half (65504) */
        return (llm_f16)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below 2^-14: a half subnormal, in units of 2^-24 */
        if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero (the tie goes to even 0) */
            return (llm_f16)sign;
        uint32_t e = ax >> 23;
        uint32_t mant = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (llm_f16)(sign | r);
    }
    uint32_t h = (ax >> 13) - (112u << 10);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* a carry into the exponent is the right answer */
    return (llm_f16)(sign | h);
}

float llm__bf16_to_f32(llm_bf16 h)
{
    return bits_f32((uint32_t)h << 16);
}

/* ggml's rounding: NaNs forced quiet, everything else to nearest even. */
llm_bf16 llm__f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (llm_bf16)((u >> 16) | 64);
    return (llm_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#define F16(h) llm__f16_to_f32(h)

/* ---- to_float ------------------------------------------------------------------- */

/* Written as two separate roundings (multiply, then add) like ggml and numpy, so the
 * output is bit-exact with both; this file is compiled without FMA contraction. */

static void f32_to_float(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n)
{
    const llm_f16 *x = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = llm__f16_to_f32(x[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n)
{
    const llm_bf16 *x = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = llm__bf16_to_f32(x[i]);
}

static void q4_0_to_float(const void *src, float *y, int64_t n)
{
    const block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void q4_1_to_float(const void *src, float *y, int64_t n)
{
    const block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            float v0 = (float)(x[i].qs[j] & 0x0f) * d;
            float v1 = (float)(x[i].qs[j] >> 4) * d;
            y[j] = v0 + m;
            y[j + QK4_1 / 2] = v1 + m;
        }
    }
}

static void q5_0_to_float(const void *src, float *y, int64_t n)
{
    const block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = F16(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int v0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int v1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)(v0 - 16) * d;
            y[j + QK5_0 / 2] = (float)(v1 - 16) * d;
        }
    }
}

static void q5_1_to_float(const void *src, float *y, int64_t n)
{
    const block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int v0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int v1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            float p0 = (float)v0 * d, p1 = (float)v1 * d;
            y[j] = p0 + m;
            y[j + QK5_1 / 2] = p1 + m;
        }
    }
}

static void q8_0_to_float(const void *src, float *y, int64_t n)
{
    const block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

static void q8_1_to_float(const void *src, float *y, int64_t n)
{
    const block_q8_1 *x = src;
    for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK8_1; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

static void q8_K_to_float(const void *src, float *y, int64_t n)
{
    const block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++)
            y[j] = (float)x[i].qs[j] * x[i].d;
}

/* Q2_K: 16 groups of 16; scales[g] holds a 4-bit scale (low) and a 4-bit min (high).
 * Element 128*h + 32*s + l (l < 32) is bits 2s..2s+1 of qs[32*h + l]. */
static void q2_K_to_float(const void *src, float *y, int64_t n)
{
    const block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, s = (e % 128) / 32, l = e % 32, g = e / 16;
            float dl = d * (float)(x[i].scales[g] & 0xf);
            float ml = dmin * (float)(x[i].scales[g] >> 4);
            float q = (float)((x[i].qs[32 * h + l] >> (2 * s)) & 3);
            float p = dl * q;
            *y++ = p - ml;
        }
    }
}

/* The 16 six-bit Q3_K scales: the low 4 bits of scale j sit in byte j%8 (low nibble for
 * j < 8, high nibble after), the high 2 bits in byte 8 + j%4 at bit 2*(j/4). */
static void q3_K_scales(const uint8_t *s, int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* Q3_K element 128*h + 32*s + l: low 2 bits from qs[32*h + l] at bit 2s, and 4 is
 * subtracted when bit 4h+s of hmask[l] is clear. */
static int q3_K_value(const block_q3_K *b, int e)
{
    int h = e / 128, s = (e % 128) / 32, l = e % 32;
    int lo = (b->qs[32 * h + l] >> (2 * s)) & 3;
    return lo - ((b->hmask[l] >> (4 * h + s)) & 1 ? 0 : 4);
}

static void q3_K_to_float(const void *src, float *y, int64_t n)
{
    const block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        int8_t sc[16];
        q3_K_scales(x[i].scales, sc);
        for (int e = 0; e < QK_K; e++) {
            float dl = d * (float)sc[e / 16];
            *y++ = dl * (float)q3_K_value(&x[i], e);
        }
    }
}

/* Element 64*c + 32*u + l is the low (u = 0) or high (u = 1) nibble of qs[32*c + l]; Q5_K
 * adds 16 when bit 2c+u of qh[l] is set. */
static void q4_K_to_float(const void *src, float *y, int64_t n)
{
    const block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int g = 0; g < 8; g++) {
            int sc, m;
            llm__k4_scale_min(g, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            const uint8_t *q = x[i].qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                float p = d1 * (float)((q[l] >> (4 * (g & 1))) & 0xf);
                *y++ = p - m1;
            }
        }
    }
}

static void q5_K_to_float(const void *src, float *y, int64_t n)
{
    const block_q5_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int g = 0; g < 8; g++) {
            int sc, m;
            llm__k4_scale_min(g, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            const uint8_t *q = x[i].qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> (4 * (g & 1))) & 0xf) | (((x[i].qh[l] >> g) & 1) << 4);
                float p = d1 * (float)v;
                *y++ = p - m1;
            }
        }
    }
}

/* Q6_K element 128*h + 32*s + l: low 4 bits are the low (s < 2) or high (s >= 2) nibble
 * of ql[64*h + 32*(s&1) + l], high 2 bits are bits 2s..2s+1 of qh[32*h + l]; minus 32. */
static int q6_K_value(const block_q6_K *b, int e)
{
    int h = e / 128, s = (e % 128) / 32, l = e % 32;
    int lo = (b->ql[64 * h + 32 * (s & 1) + l] >> (4 * (s >> 1))) & 0xf;
    int hi = (b->qh[32 * h + l] >> (2 * s)) & 3;
    return (lo | (hi << 4)) - 32;
}

static void q6_K_to_float(const void *src, float *y, int64_t n)
{
    const block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int e = 0; e < QK_K; e++) {
            float dl = d * (float)x[i].scales[e / 16];
            *y++ = dl * (float)q6_K_value(&x[i], e);
        }
    }
}

/* ---- from_float ----------------------------------------------------------------- */

static void f32_from_float(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_from_float(const float *src, void *dst, int64_t n)
{
    llm_f16 *y = dst;
    for (int64_t i = 0; i < n; i++)
        y[i] = llm__f32_to_f16(src[i]);
}

static void bf16_from_float(const float *src, void *dst, int64_t n)
{
    llm_bf16 *y = dst;
    for (int64_t i = 0; i < n; i++)
        y[i] = llm__f32_to_bf16(src[i]);
}

static float absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

/* Q8_0: d = amax/127, q = roundf(x/d) (halves away from zero), x/d computed as x * (1/d). */
static void q8_0_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float d = absmax(x, QK8_0) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = llm__f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Q8_1 is Q8_0 plus s = d * sum(q), with the unrounded d; the Q4_1/Q5_1 dots use it for the
 * min term. */
static void q8_1_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float d = absmax(x, QK8_1) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        y[i].d = llm__f32_to_f16(d);
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = llm__f32_to_f16((float)sum * d);
    }
}

/* ggml's nearest_int: adding 1.5*2^23 rounds to an integer in the current rounding mode
 * (to nearest even by default), as the SIMD conversion instructions do. */
static int nearest_int(float f)
{
    float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Q8_K: the element of largest magnitude (the first one, on ties) maps to -127, so d can be
 * negative; q = nearest_int(x * (-127/max)) capped at 127; bsums are the sums of each 16. */
static void q8_K_from_float(const float *x, void *dst, int64_t n)
{
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* Weight quantisers for the simple 32-blocks (ggml's quantize_row_*_ref), for tools and
 * tests; the K-quant weight quantisers (ggml's make_qkx2_quants search) are not here. */
static void q4_0_from_float(const float *x, void *dst, int64_t n)
{
    block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = llm__f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const float x0 = x[j] * id, x1 = x[j + QK4_0 / 2] * id;
            int v0 = (int8_t)(x0 + 8.5f), v1 = (int8_t)(x1 + 8.5f);
            y[i].qs[j] = (uint8_t)((v0 < 15 ? v0 : 15) | ((v1 < 15 ? v1 : 15) << 4));
        }
    }
}

static void q4_1_from_float(const float *x, void *dst, int64_t n)
{
    block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK4_1; j++) {
            min = x[j] < min ? x[j] : min;
            max = x[j] > max ? x[j] : max;
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = llm__f32_to_f16(d);
        y[i].m = llm__f32_to_f16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[j + QK4_1 / 2] - min) * id;
            int v0 = (int8_t)(x0 + 0.5f), v1 = (int8_t)(x1 + 0.5f);
            y[i].qs[j] = (uint8_t)((v0 < 15 ? v0 : 15) | ((v1 < 15 ? v1 : 15) << 4));
        }
    }
}

static void q5_0_from_float(const float *x, void *dst, int64_t n)
{
    block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        y[i].d = llm__f32_to_f16(d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const float x0 = x[j] * id, x1 = x[j + QK5_0 / 2] * id;
            int v0 = (int8_t)(x0 + 16.5f), v1 = (int8_t)(x1 + 16.5f);
            v0 = v0 < 31 ? v0 : 31;
            v1 = v1 < 31 ? v1 : 31;
            y[i].qs[j] = (uint8_t)((v0 & 0xf) | ((v1 & 0xf) << 4));
            qh |= (uint32_t)((v0 >> 4) & 1) << j;
            qh |= (uint32_t)((v1 >> 4) & 1) << (j + 16);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

static void q5_1_from_float(const float *x, void *dst, int64_t n)
{
    block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK5_1; j++) {
            min = x[j] < min ? x[j] : min;
            max = x[j] > max ? x[j] : max;
        }
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        y[i].d = llm__f32_to_f16(d);
        y[i].m = llm__f32_to_f16(min);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[j + QK5_1 / 2] - min) * id;
            int v0 = (int)(x0 + 0.5f), v1 = (int)(x1 + 0.5f);
            y[i].qs[j] = (uint8_t)((v0 & 0xf) | ((v1 & 0xf) << 4));
            qh |= (uint32_t)((v0 >> 4) & 1) << j;
            qh |= (uint32_t)((v1 >> 4) & 1) << (j + 16);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

/* ---- vec_dot -------------------------------------------------------------------- */

/* The float rows accumulate in double, as ggml's generic ggml_vec_dot_f32/f16/bf16. */
static void f32_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}


static void bf16_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const llm_bf16 *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(llm__bf16_to_f32(x[i]) * llm__bf16_to_f32(y[i]));
    *s = (float)sum;
}

static float f16_dot_scalar(int64_t n, const llm_f16 *x, const llm_f16 *y)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(F16(x[i]) * F16(y[i]));
    return (float)sum;
}

static void f16_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    *s = f16_dot_scalar(n, vx, vy);
}

static void q4_0_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            sumi += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK8_0 / 2];
        }
        sum += (float)sumi * F16(x[i].d) * F16(y[i].d);
    }
    *s = sum;
}

static void q4_1_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            sumi += (x[i].qs[j] & 0x0f) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + QK8_1 / 2];
        }
        sum += (F16(x[i].d) * F16(y[i].d)) * (float)sumi + F16(x[i].m) * F16(y[i].s);
    }
    *s = sum;
}

static void q5_0_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        int sumi = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            int v0 = ((x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4)) - 16;
            int v1 = ((x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
            sumi += v0 * y[i].qs[j] + v1 * y[i].qs[j + QK8_0 / 2];
        }
        sum += (F16(x[i].d) * F16(y[i].d)) * (float)sumi;
    }
    *s = sum;
}

static void q5_1_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        int sumi = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            int v0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int v1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            sumi += v0 * y[i].qs[j] + v1 * y[i].qs[j + QK8_1 / 2];
        }
        sum += (F16(x[i].d) * F16(y[i].d)) * (float)sumi + F16(x[i].m) * F16(y[i].s);
    }
    *s = sum;
}

static void q8_0_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++)
            sumi += x[i].qs[j] * y[i].qs[j];
        sum += (float)sumi * (F16(x[i].d) * F16(y[i].d));
    }
    *s = sum;
}

/* Q3_K to Q6_K: ggml's generic code keeps 8 integer lanes per super-block (element e goes to
 * lane e % 8, weighted by its group scale) and 8 float lanes across super-blocks, summed at
 * the end; doing the same gives its float results bit for bit. */
static float lanes_sum(const float sums[8], float start)
{
    for (int l = 0; l < 8; l++)
        start += sums[l];
    return start;
}

static void q2_K_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int summs = 0, isum = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            summs += y[i].bsums[g] * (x[i].scales[g] >> 4);
            int isuml = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) {
                int h = e / 128, sh = (e % 128) / 32, l = e % 32;
                isuml += y[i].qs[e] * ((x[i].qs[32 * h + l] >> (2 * sh)) & 3);
            }
            isum += (x[i].scales[g] & 0xf) * isuml;
        }
        const float dall = y[i].d * F16(x[i].d);
        const float dmin = y[i].d * F16(x[i].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

static void q3_K_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sums[8] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        int32_t lane[8] = {0};
        q3_K_scales(x[i].scales, sc);
        for (int e = 0; e < QK_K; e++)
            lane[e % 8] += sc[e / 16] * (y[i].qs[e] * q3_K_value(&x[i], e));
        const float d = F16(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            sums[l] += d * (float)lane[l];
    }
    *s = lanes_sum(sums, 0.0f);
}

static void q4_K_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sums[8] = {0};
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t lane[8] = {0};
        int summs = 0;
        for (int g = 0; g < 8; g++) {
            int sc, m;
            llm__k4_scale_min(g, x[i].scales, &sc, &m);
            summs += (y[i].bsums[2 * g] + y[i].bsums[2 * g + 1]) * m;
            const uint8_t *q = x[i].qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> (4 * (g & 1))) & 0xf;
                lane[l % 8] += sc * (y[i].qs[32 * g + l] * v);
            }
        }
        const float d = F16(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            sums[l] += d * (float)lane[l];
        const float dmin = F16(x[i].dmin) * y[i].d;
        sum -= dmin * (float)summs;
    }
    *s = lanes_sum(sums, sum);
}

static void q5_K_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sums[8] = {0};
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t lane[8] = {0};
        int summs = 0;
        for (int g = 0; g < 8; g++) {
            int sc, m;
            llm__k4_scale_min(g, x[i].scales, &sc, &m);
            summs += (y[i].bsums[2 * g] + y[i].bsums[2 * g + 1]) * m;
            const uint8_t *q = x[i].qs + 32 * (g / 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> (4 * (g & 1))) & 0xf) | (((x[i].qh[l] >> g) & 1) << 4);
                lane[l % 8] += sc * (y[i].qs[32 * g + l] * v);
            }
        }
        const float d = F16(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            sums[l] += d * (float)lane[l];
        const float dmin = F16(x[i].dmin) * y[i].d;
        sum -= dmin * (float)summs;
    }
    *s = lanes_sum(sums, sum);
}

static void q6_K_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sums[8] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t lane[8] = {0};
        for (int e = 0; e < QK_K; e++)
            lane[e % 8] += x[i].scales[e / 16] * (y[i].qs[e] * q6_K_value(&x[i], e));
        const float d = F16(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            sums[l] += d * (float)lane[l];
    }
    *s = lanes_sum(sums, 0.0f);
}

/* ---- tables --------------------------------------------------------------------- */

/* One initializer for both tables, so that llm__quant_best is usable (as the reference)
 * even before llm__quant_init() runs. */
#define REF_TABLE                                                                           \
    {                                                                                       \
        [LLM_DT_F32] = {f32_to_float, f32_from_float, f32_vec_dot, LLM_DT_F32},             \
        [LLM_DT_F16] = {f16_to_float, f16_from_float, f16_vec_dot, LLM_DT_F16},             \
        [LLM_DT_BF16] = {bf16_to_float, bf16_from_float, bf16_vec_dot, LLM_DT_BF16},        \
        [LLM_DT_Q4_0] = {q4_0_to_float, q4_0_from_float, q4_0_vec_dot, LLM_DT_Q8_0},        \
        [LLM_DT_Q4_1] = {q4_1_to_float, q4_1_from_float, q4_1_vec_dot, LLM_DT_Q8_1},        \
        [LLM_DT_Q5_0] = {q5_0_to_float, q5_0_from_float, q5_0_vec_dot, LLM_DT_Q8_0},        \
        [LLM_DT_Q5_1] = {q5_1_to_float, q5_1_from_float, q5_1_vec_dot, LLM_DT_Q8_1},        \
        [LLM_DT_Q8_0] = {q8_0_to_float, q8_0_from_float, q8_0_vec_dot, LLM_DT_Q8_0},        \
        [LLM_DT_Q8_1] = {q8_1_to_float, q8_1_from_float, NULL, LLM_DT_Q8_1},                \
        [LLM_DT_Q2_K] = {q2_K_to_float, NULL, q2_K_vec_dot, LLM_DT_Q8_K},                   \
        [LLM_DT_Q3_K] = {q3_K_to_float, NULL, q3_K_vec_dot, LLM_DT_Q8_K},                   \
        [LLM_DT_Q4_K] = {q4_K_to_float, NULL, q4_K_vec_dot, LLM_DT_Q8_K},                   \
        [LLM_DT_Q5_K] = {q5_K_to_float, NULL, q5_K_vec_dot, LLM_DT_Q8_K},                   \
        [LLM_DT_Q6_K] = {q6_K_to_float, NULL, q6_K_vec_dot, LLM_DT_Q8_K},                   \
        [LLM_DT_Q8_K] = {q8_K_to_float, q8_K_from_float, NULL, LLM_DT_Q8_K},                \
        LLM_IQ_REF_ENTRIES                                                                  \
    }

const llm_quant_traits llm__quant_ref[LLM_DT_COUNT] = REF_TABLE;
llm_quant_traits llm__quant_best[LLM_DT_COUNT] = REF_TABLE;

/* ---- row helpers and dispatch --------------------------------------------------- */

static void f32_to_f16_row_scalar(const float *x, llm_f16 *y, int64_t n)
{
    f16_from_float(x, y, n);
}

static void f16_to_f32_row_scalar(const llm_f16 *x, float *y, int64_t n)
{
    f16_to_float(x, y, n);
}

static float dot_f32_f16_scalar(int64_t n, const float *x, const llm_f16 *y)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * llm__f16_to_f32(y[i]);
    return s;
}

static void axpy_f16_scalar(int64_t n, float *y, float a, const llm_f16 *x)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * llm__f16_to_f32(x[i]);
}

const uint64_t llm__exp2_tab[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull,
};

/* One e^x in glibc expf's steps: x / ln2 * 32 split into an integer k and a remainder r,
 * 2^(k/32) from the table (its exponent added as k << 47), a cubic in r. */
static float exp_one(float x)
{
    if (x != x)
        return x;
    if (x < LLM_EXP_MIN)
        return 0.0f;
    const double z = LLM_EXP_INV_LN2_N * (double)x;
    double kd = z + LLM_EXP_SHIFT;
    uint64_t ki;
    memcpy(&ki, &kd, sizeof ki);
    kd -= LLM_EXP_SHIFT;
    const double r = z - kd;
    const uint64_t t = llm__exp2_tab[ki % 32] + (ki << 47);
    double sc;
    memcpy(&sc, &t, sizeof sc);
    const double p = LLM_EXP_C0 * r + LLM_EXP_C1, r2 = r * r;
    const double y = (p * r2 + (LLM_EXP_C2 * r + 1.0)) * sc;
    return (float)y;
}

static void exp_row_scalar(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = exp_one(x[i]);
}

/* The attention block helpers as the single-key helpers of the level in use (a level
 * with fused kernels puts its own over these) */
void llm__attn_scores_f16_generic(int32_t hd, int32_t nh, const float *q,
                                  const llm_f16 *const *k, int nk, float *sc)
{
    for (int32_t h = 0; h < nh; h++)
        for (int u = 0; u < nk; u++)
            sc[h * LLM_ATT_BLOCK + u] = llm__dot_f32_f16(hd, q + (size_t)h * hd, k[u]);
}

void llm__attn_accum_f16_generic(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v,
                                 int nk, const float *ms, const float *vs)
{
    for (int32_t h = 0; h < nh; h++) {
        float *a = acc + (size_t)h * hd;
        for (int u = 0; u < nk; u++) {
            const float m = ms[h * LLM_ATT_BLOCK + u];
            if (m != 1.0f)
                for (int32_t d = 0; d < hd; d++)
                    a[d] *= m;
            llm__axpy_f16(hd, a, vs[h * LLM_ATT_BLOCK + u], v[u]);
        }
    }
}

void llm__attn_softmax_generic(int32_t nh, int nk, const float *sc, float scale, float softcap,
                               float *m, float *sum, float *ms, float *vs)
{
    float arg[LLM_ATT_BLOCK], e[LLM_ATT_BLOCK];
    int raise[LLM_ATT_BLOCK];
    for (int32_t h = 0; h < nh; h++) {
        const int o = h * LLM_ATT_BLOCK;
        float mm = m[h];
        for (int u = 0; u < nk; u++) {
            float s = sc[o + u] * scale;
            if (softcap > 0.0f)
                s = softcap * tanhf(s / softcap);
            raise[u] = s > mm;
            arg[u] = raise[u] ? mm - s : s - mm;
            mm = raise[u] ? s : mm;
        }
        llm__exp_row(nk, arg, e);
        float sm = sum[h];
        for (int u = 0; u < nk; u++) {
            ms[o + u] = raise[u] ? e[u] : 1.0f;
            vs[o + u] = raise[u] ? 1.0f : e[u];
            sm = sm * ms[o + u] + vs[o + u];
        }
        m[h] = mm, sum[h] = sm;
    }
}

#define SCALAR_ROW_FNS                                                                      \
    {f32_to_f16_row_scalar, f16_to_f32_row_scalar, f16_dot_scalar, dot_f32_f16_scalar,       \
     axpy_f16_scalar, exp_row_scalar, llm__attn_scores_f16_generic,                         \
     llm__attn_accum_f16_generic,                                                           \
     llm__attn_softmax_generic}
static const llm_quant_row_fns scalar_row_fns = SCALAR_ROW_FNS;
/* The row helpers go through these, switched to SIMD by llm__quant_init(). */
static llm_quant_row_fns row_fns = SCALAR_ROW_FNS;
static const char *features = "scalar";

void llm__f32_to_f16_row(const float *x, llm_f16 *y, int64_t n)
{
    row_fns.f32_to_f16_row(x, y, n);
}

void llm__f16_to_f32_row(const llm_f16 *x, float *y, int64_t n)
{
    row_fns.f16_to_f32_row(x, y, n);
}

float llm__dot_f16(int64_t n, const llm_f16 *x, const llm_f16 *y)
{
    return row_fns.dot_f16(n, x, y);
}

float llm__dot_f32_f16(int64_t n, const float *x, const llm_f16 *y)
{
    return row_fns.dot_f32_f16(n, x, y);
}

void llm__axpy_f16(int64_t n, float *y, float a, const llm_f16 *x)
{
    row_fns.axpy_f16(n, y, a, x);
}

void llm__exp_row(int64_t n, const float *x, float *y)
{
    row_fns.exp_row(n, x, y);
}

void llm__attn_scores_f16(int32_t hd, int32_t nh, const float *q, const llm_f16 *const *k,
                          int nk, float *sc)
{
    row_fns.attn_scores_f16(hd, nh, q, k, nk, sc);
}

void llm__attn_softmax(int32_t nh, int nk, const float *sc, float scale, float softcap,
                       float *m, float *sum, float *ms, float *vs)
{
    row_fns.attn_softmax(nh, nk, sc, scale, softcap, m, sum, ms, vs);
}

void llm__attn_accum_f16(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v, int nk,
                         const float *ms, const float *vs)
{
    row_fns.attn_accum_f16(hd, nh, acc, v, nk, ms, vs);
}

const char *llm__cpu_features(void)
{
    return features;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* AVX2, FMA and F16C present, and the OS saving the YMM registers (XCR0 bits 1-2).
 * cpuid directly rather than __builtin_cpu_supports, which older clangs lack for f16c. */
static int cpu_has_avx2_fma_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    /* fma, osxsave, avx, f16c */
    const unsigned need = (1u << 12) | (1u << 27) | (1u << 28) | (1u << 29);
    if ((c & need) != need)
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6 || __get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1; /* avx2 */
}

/* AVX-512 F, DQ, BW and VL (cpuid leaf 7 EBX bits 16, 17, 30, 31), and the OS saving the
 * opmask and ZMM state (XCR0 bits 5-7, besides SSE and AVX in bits 1-2). *vnni: AVX512_VNNI
 * (leaf 7 ECX bit 11); *bf16: AVX512_BF16 (leaf 7 subleaf 1 EAX bit 5). Call only after
 * cpu_has_avx2_fma_f16c() said yes (it checked OSXSAVE and the maximum leaf). */
static int cpu_has_avx512(int *vnni, int *bf16)
{
    unsigned a, b, c, d, lo, hi;
    *vnni = *bf16 = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6) != 0xe6)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
    if ((b & need) != need)
        return 0;
    *vnni = (c >> 11) & 1;
    if (a >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        *bf16 = (a1 >> 5) & 1;
    }
    return 1;
}
#endif

#if defined(__aarch64__)
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

/* The dot-product instructions (SDOT), as the kernel reports them. NEON itself is part of
 * every 64-bit ARM CPU. */
static int cpu_has_dotprod(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}
#endif

int llm__quant_select(const char *isa)
{
    enum { SCALAR, AVX2, AVX512, NEON, NATIVE } level;
    if (strcmp(isa, "scalar") == 0)
        level = SCALAR;
    else if (strcmp(isa, "avx2") == 0)
        level = AVX2;
    else if (strcmp(isa, "avx512") == 0)
        level = AVX512;
    else if (strcmp(isa, "neon") == 0)
        level = NEON;
    else if (strcmp(isa, "native") == 0)
        level = NATIVE;
    else
        return 0;
    llm_quant_traits t[LLM_DT_COUNT];
    memcpy(t, llm__quant_ref, sizeof t);
    llm_quant_row_fns rows = scalar_row_fns;
    const char *feat = "scalar";
    int have = 0; /* the highest level this CPU (and this build) supports */
#if defined(__x86_64__) || defined(__i386__)
    /* fills a scratch table first: llm__quant_best changes only if the level is there */
    int vnni = 0, bf16 = 0;
    {
        /* the one-token kernels' prefetch distance: 4096 bytes on Intel, 1024 elsewhere */
        unsigned a, b, c, d;
        __cpuid(0, a, b, c, d);
        llm__repack_pf_dist = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu ? 4096
                                                                                       : 1024;
    }
    if (level >= AVX2 && cpu_has_avx2_fma_f16c() && llm__quant_avx2_fill(t, &rows)) {
        llm__quant_iq_avx2_fill(t);
        feat = "avx2,fma,f16c";
        have = AVX2;
        if (level >= AVX512 && cpu_has_avx512(&vnni, &bf16) && llm__quant_avx512_fill(t, &rows)) {
#define AVX512_FEATURES "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl"
            feat = AVX512_FEATURES;
            have = AVX512;
            if (level == NATIVE) {
                vnni = vnni && llm__quant_avx512vnni_fill(t, &rows);
                bf16 = bf16 && llm__quant_avx512bf16_fill(t);
                if (vnni && bf16)
                    feat = AVX512_FEATURES ",avx512vnni,avx512bf16";
                else if (vnni)
                    feat = AVX512_FEATURES ",avx512vnni";
                else if (bf16)
                    feat = AVX512_FEATURES ",avx512bf16";
            }
#undef AVX512_FEATURES
        }
    }
#endif
#if defined(__aarch64__)
    /* "neon": the plain Armv8-A build; "native": the dot-product one where the CPU has it */
    if (level == NEON || level == NATIVE) {
        if (level == NATIVE && cpu_has_dotprod() && llm__quant_neon_dotprod_fill(t, &rows)) {
            feat = "neon,dotprod";
            have = NATIVE;
        } else if (llm__quant_neon_fill(t, &rows)) {
            feat = "neon";
            have = NEON;
        }
    }
#endif
    if (level != NATIVE && have < (int)level)
        return 0;
    row_fns = rows;
    memcpy(llm__quant_best, t, sizeof t);
    features = feat;
    return 1;
}

/* LLM_CPU_ISA (scalar, avx2, avx512, neon, native) caps the kernels chosen, e.g. to compare the
 * levels on one machine; a level the CPU lacks, or an unknown name, gives the native one. */
static void quant_init_once(void)
{
    const char *isa = getenv("LLM_CPU_ISA");
    if (!isa || !*isa || !llm__quant_select(isa))
        llm__quant_select("native");
}

void llm__quant_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, quant_init_once);
}
