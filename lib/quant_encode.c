/* quant_encode.c - float rows to GGUF block formats, for the quantizer (quantize.c).
 *
 * Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 follow ggml's reference quantisers exactly (same scale
 * choice and rounding), so their output equals llama.cpp's and the gguf package's byte for
 * byte. The k-quants search their scales: every sub-block gets the scale (and minimum) that
 * minimise a weighted squared error over a sweep of candidate scales, each refined by a
 * least-squares fit to the levels it produces; the weights favour large values (w = rms +
 * |x|, or x^2 for the symmetric formats), as llama.cpp's reference quantisers do. Then the
 * sub-block scales are themselves quantised against the super-block's f16 scales and the
 * values re-quantised with the scales they will be read back with. */
#include <math.h>
#include <string.h>

#include "quant_encode.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

#define QK 32
#define QK_K 256

uint16_t llm__fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    uint32_t mag = x & 0x7fffffff;
    if (mag >= 0x7f800000) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (mag > 0x7f800000 ? 0x200 : 0));
    if (mag >= 0x477ff000) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (mag < 0x38800000) { /* subnormal half (or zero): h = value / 2^-24, rounded */
        const uint32_t e = mag >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        const uint32_t total = 126 - e; /* 14..24 */
        const uint32_t m = (mag & 0x7fffff) | 0x800000;
        uint32_t h = m >> total;
        const uint32_t rem = m & ((1u << total) - 1), half = 1u << (total - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* normal: rebias and round to nearest even on the 13 dropped bits */
    uint32_t h = ((mag >> 13) - (112 << 10));
    const uint32_t rem = mag & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float llm__fp16_to_fp32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else { /* subnormal: normalise */
            e = 113;
            while (!(m & 0x400)) {
                m <<= 1;
                e--;
            }
            x = sign | (e << 23) | ((m & 0x3ff) << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000 | (m << 13);
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static void put_f16(uint8_t *p, float f)
{
    const uint16_t h = llm__fp32_to_fp16(f);
    memcpy(p, &h, 2);
}

/* ---- ggml's simple formats ------------------------------------------------------------ */

/* Q4_0 / Q5_0: d = the value of largest magnitude / -(2^(bits-1)), q = x/d + offset, truncated. */
static void enc_q4_0(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < QK / 2; j++) {
            const int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            y[2 + j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

static void enc_q4_1(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 20) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK; j++) {
            mn = x[j] < mn ? x[j] : mn;
            mx = x[j] > mx ? x[j] : mx;
        }
        const float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        put_f16(y + 2, mn);
        for (int j = 0; j < QK / 2; j++) {
            const int q0 = (int)(int8_t)((x[j] - mn) * id + 0.5f);
            const int q1 = (int)(int8_t)((x[j + 16] - mn) * id + 0.5f);
            y[4 + j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

static void enc_q5_0(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 16.5f), q1 = (int)(int8_t)(x[j + 16] * id + 16.5f);
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            y[6 + j] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        memcpy(y + 2, &qh, 4);
    }
}

static void enc_q5_1(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 24) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK; j++) {
            mn = x[j] < mn ? x[j] : mn;
            mx = x[j] > mx ? x[j] : mx;
        }
        const float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        put_f16(y + 2, mn);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int q0 = (int)(int8_t)((x[j] - mn) * id + 0.5f);
            const int q1 = (int)(int8_t)((x[j + 16] - mn) * id + 0.5f);
            y[8 + j] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        memcpy(y + 4, &qh, 4);
    }
}

static void enc_q8_0(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < QK; j++)
            y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* ---- scale searches for the k-quants ---------------------------------------------------- */

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Error of x ~ s q with q = round(x / s) clamped to [qmin, qmax]. */
static double sym_error(const float *x, const float *w, int n, int qmin, int qmax, float s)
{
    double err = 0;
    for (int i = 0; i < n; i++) {
        const int q = clampi((int)lrintf(x[i] / s), qmin, qmax);
        const double e = x[i] - (double)s * q;
        err += w[i] * e * e;
    }
    return err;
}

/* Symmetric levels q in [qmin, qmax] (qmin = -qmax - 1): the scale minimising
 * sum w (x - s q)^2. The value of largest magnitude goes to the longer, negative end (the
 * scale takes the opposite sign), candidates sweep that end by +-1.2 levels, and each is
 * refined by alternating level rounding and a least-squares scale. */
static float fit_sym(const float *x, const float *w, int n, int qmin, int qmax)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-30f)
        return 0.0f;
    float best_s = max / (float)qmin;
    double best_err = sym_error(x, w, n, qmin, qmax, best_s);
    for (int k = -12; k <= 12; k++) {
        float s = max / ((float)qmin - 0.1f * (float)k);
        for (int it = 0; it < 3; it++) {
            double sxq = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                const int q = clampi((int)lrintf(x[i] / s), qmin, qmax);
                sxq += (double)w[i] * x[i] * q;
                sqq += (double)w[i] * q * q;
            }
            if (sqq <= 0)
                break;
            s = (float)(sxq / sqq);
            const double err = sym_error(x, w, n, qmin, qmax, s);
            if (err < best_err) {
                best_err = err;
                best_s = s;
            }
        }
    }
    return best_s;
}

static double affine_error(const float *x, const float *w, int n, int qmax, double s, double off)
{
    double err = 0;
    for (int i = 0; i < n; i++) {
        const int q = clampi((int)lrint((x[i] - off) / s), 0, qmax);
        const double e = x[i] - (s * q + off);
        err += w[i] * e * e;
    }
    return err;
}

/* Affine levels x ~ s q - m, q in [0, qmax], m >= 0: scale and minimum minimising
 * sum w (x - s q + m)^2. Candidate scales sweep +-1 level around (max - min) / qmax; each
 * is refined by alternating level rounding and a weighted least-squares fit of (s, m). */
static float fit_affine(const float *x, const float *w, int n, int qmax, float *the_min)
{
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    if (mn > 0)
        mn = 0;
    if (mx <= mn) {
        *the_min = -mn;
        return 0.0f;
    }
    double best_s = (mx - mn) / (double)qmax, best_off = mn;
    double best_err = affine_error(x, w, n, qmax, best_s, best_off);
    for (int k = -10; k <= 10; k++) {
        double s = (mx - mn) / ((double)qmax + 0.1 * k), off = mn;
        for (int it = 0; it < 3; it++) {
            double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
            for (int i = 0; i < n; i++) {
                const int q = clampi((int)lrint((x[i] - off) / s), 0, qmax);
                sw += w[i];
                sq += w[i] * q;
                sqq += (double)w[i] * q * q;
                sx += w[i] * x[i];
                sxq += (double)w[i] * x[i] * q;
            }
            const double det = sw * sqq - sq * sq;
            if (det <= 0)
                break;
            double ns = (sw * sxq - sq * sx) / det, noff = (sqq * sx - sq * sxq) / det;
            if (noff > 0) { /* the minimum must not be positive: fit the scale alone */
                noff = 0;
                ns = sqq > 0 ? sxq / sqq : 0;
            }
            if (!(ns > 0))
                break;
            s = ns;
            off = noff;
            const double err = affine_error(x, w, n, qmax, s, off);
            if (err < best_err) {
                best_err = err;
                best_s = s;
                best_off = off;
            }
        }
    }
    *the_min = (float)-best_off;
    return (float)best_s;
}

static void weights_rms_abs(const float *x, float *w, int n)
{
    double s2 = 0;
    for (int i = 0; i < n; i++)
        s2 += (double)x[i] * x[i];
    const float av = (float)sqrt(s2 / n);
    for (int i = 0; i < n; i++)
        w[i] = av + fabsf(x[i]);
}

static void weights_sq(const float *x, float *w, int n)
{
    for (int i = 0; i < n; i++)
        w[i] = x[i] * x[i] + 1e-30f;
}

/* Quantises the sub-block scales (and minimums) to `bits` unsigned levels against one
 * super-block scale each; returns the f16-rounded super scale. */
static float quant_scales(const float *v, int n, int levels, uint8_t *out)
{
    float mx = 0.0f;
    for (int i = 0; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    const float d = llm__fp16_to_fp32(llm__fp32_to_fp16(mx / (float)levels));
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t)(d > 0 ? clampi((int)lrintf(v[i] / d), 0, levels) : 0);
    return d;
}

/* After the sub-block scales are rounded to the super-block's grid: each sub-block tries
 * its neighbours on that grid (scale and minimum +-1 step) and keeps the pair with the
 * smallest error. */
static void refine_affine(const float *x, const float *w, int n, int qmax, float d, float dmin,
                          int levels, uint8_t *sc, uint8_t *mq)
{
    double best = affine_error(x, w, n, qmax, (double)(d * sc[0]), -(double)(dmin * mq[0]));
    const int s0 = sc[0], m0 = mq[0];
    for (int ds = -1; ds <= 1; ds++)
        for (int dm = -1; dm <= 1; dm++) {
            const int a = s0 + ds, b = m0 + dm;
            if (a < 1 || a > levels || b < 0 || b > levels || (!ds && !dm))
                continue;
            const double e = affine_error(x, w, n, qmax, (double)(d * a), -(double)(dmin * b));
            if (e < best) {
                best = e;
                sc[0] = (uint8_t)a;
                mq[0] = (uint8_t)b;
            }
        }
}

/* The same for symmetric scales (int8 steps of d within [lo, hi]). */
static void refine_sym(const float *x, const float *w, int n, int qmin, int qmax, float d,
                       int lo, int hi, int *sc)
{
    if (d == 0.0f)
        return;
    double best = sc[0] ? sym_error(x, w, n, qmin, qmax, d * sc[0]) : INFINITY;
    const int s0 = sc[0];
    for (int ds = -1; ds <= 1; ds += 2) {
        const int a = s0 + ds;
        if (a < lo || a > hi || a == 0)
            continue;
        const double e = sym_error(x, w, n, qmin, qmax, d * a);
        if (e < best) {
            best = e;
            sc[0] = a;
        }
    }
}

/* ---- Q4_K, Q5_K: 8 x 32, 6-bit scales and minimums --------------------------------------- */

static void pack_k4_scales(const uint8_t *sc, const uint8_t *m, uint8_t *s)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = sc[j];
            s[j + 4] = m[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0xf) | ((m[j] & 0xf) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

static void enc_qk_affine(const float *x, uint8_t *y, int qmax, int with_high_bit)
{
    /* y: d, dmin, scales[12], (qh[32] for Q5_K), qs[128] */
    float scales[8], mins[8], w[8][32];
    for (int j = 0; j < 8; j++) {
        weights_rms_abs(x + 32 * j, w[j], 32);
        scales[j] = fit_affine(x + 32 * j, w[j], 32, qmax, &mins[j]);
    }
    uint8_t sc[8], mq[8];
    const float d = quant_scales(scales, 8, 63, sc), dmin = quant_scales(mins, 8, 63, mq);
    for (int j = 0; j < 8; j++)
        refine_affine(x + 32 * j, w[j], 32, qmax, d, dmin, 63, &sc[j], &mq[j]);
    put_f16(y, d);
    put_f16(y + 2, dmin);
    memset(y + 4, 0, 12);
    pack_k4_scales(sc, mq, y + 4);
    uint8_t *qh = with_high_bit ? y + 16 : NULL, *qs = y + 16 + (with_high_bit ? 32 : 0);
    if (qh)
        memset(qh, 0, 32);
    uint8_t L[QK_K];
    for (int j = 0; j < 8; j++) {
        const float s = d * sc[j], m = dmin * mq[j];
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)(s > 0 ? clampi((int)lrintf((x[32 * j + i] + m) / s), 0, qmax) : 0);
    }
    /* 64 values per 32 bytes: low nibbles the first 32, high nibbles the next */
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < 32; i++) {
            const int a = L[64 * g + i], b = L[64 * g + 32 + i];
            qs[32 * g + i] = (uint8_t)((a & 15) | ((b & 15) << 4));
            if (qh)
                qh[i] |= (uint8_t)(((a >> 4) << (2 * g)) | ((b >> 4) << (2 * g + 1)));
        }
}

static void enc_q4_K(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++)
        enc_qk_affine(x + b * QK_K, y + b * 144, 15, 0);
}

static void enc_q5_K(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++)
        enc_qk_affine(x + b * QK_K, y + b * 176, 31, 1);
}

/* ---- Q6_K: 16 x 16, int8 scales, levels -32..31 ------------------------------------------ */

static void enc_q6_K(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K, y += 210) {
        float scales[16], w[16][16], amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 16; j++) {
            weights_sq(x + 16 * j, w[j], 16);
            scales[j] = fit_sym(x + 16 * j, w[j], 16, -32, 31);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max = scales[j];
            }
        }
        uint8_t *ql = y, *qh = y + 128;
        int8_t *sc = (int8_t *)(y + 192);
        memset(y, 0, 210);
        float d = 0.0f;
        if (amax > 0) {
            d = llm__fp16_to_fp32(llm__fp32_to_fp16(max / -128.0f));
            for (int j = 0; j < 16; j++) {
                int v = clampi((int)lrintf(scales[j] / d), -128, 127);
                refine_sym(x + 16 * j, w[j], 16, -32, 31, d, -128, 127, &v);
                sc[j] = (int8_t)v;
            }
        }
        put_f16(y + 208, d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            const float s = d * sc[j];
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (uint8_t)(clampi(s != 0 ? (int)lrintf(x[16 * j + i] / s) : 0, -32, 31) + 32);
        }
        /* 128 values per half: ql holds 4 low bits of (l, l+32) and (l+64, l+96), qh 2 high
         * bits of each */
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *Lh = L + 128 * h;
                const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[64 * h + l] = (uint8_t)((q1 & 15) | ((q3 & 15) << 4));
                ql[64 * h + l + 32] = (uint8_t)((q2 & 15) | ((q4 & 15) << 4));
                qh[32 * h + l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) |
                                           ((q4 >> 4) << 6));
            }
    }
}

/* ---- Q3_K: 16 x 16, 6-bit signed scales, levels -4..3 -------------------------------------- */

static void enc_q3_K(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K, y += 110) {
        float scales[16], w[16][16], amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 16; j++) {
            weights_sq(x + 16 * j, w[j], 16);
            scales[j] = fit_sym(x + 16 * j, w[j], 16, -4, 3);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max = scales[j];
            }
        }
        uint8_t *hmask = y, *qs = y + 32, *s = y + 96;
        memset(y, 0, 110);
        int sc[16] = {0};
        float d = 0.0f;
        if (amax > 0) {
            d = llm__fp16_to_fp32(llm__fp32_to_fp16(max / -32.0f));
            for (int j = 0; j < 16; j++) {
                sc[j] = clampi((int)lrintf(scales[j] / d), -32, 31);
                refine_sym(x + 16 * j, w[j], 16, -4, 3, d, -32, 31, &sc[j]);
            }
        }
        /* 6-bit scales stored +32: low 4 bits in bytes 0..7, high 2 bits in bytes 8..11 */
        for (int j = 0; j < 16; j++) {
            const int v = sc[j] + 32;
            if (j < 8)
                s[j] = (uint8_t)(v & 15);
            else
                s[j - 8] |= (uint8_t)((v & 15) << 4);
            s[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        }
        put_f16(y + 108, d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            const float sj = d * sc[j];
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (uint8_t)(clampi(sj != 0 ? (int)lrintf(x[16 * j + i] / sj) : 0, -4, 3) + 4);
        }
        /* levels 0..7: two low bits in qs (4 per byte, 32 apart, per 128), the third in hmask */
        for (int e = 0; e < QK_K; e++) {
            if (L[e] > 3)
                hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            const int h = e / 128, r = e % 128;
            qs[32 * h + r % 32] |= (uint8_t)((L[e] & 3) << (2 * (r / 32)));
        }
    }
}

/* ---- Q2_K: 16 x 16, 4-bit scales and minimums, levels 0..3 --------------------------------- */

static void enc_q2_K(const float *x, uint8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K, y += 84) {
        float scales[16], mins[16], w[16][16];
        for (int j = 0; j < 16; j++) {
            for (int i = 0; i < 16; i++)
                w[j][i] = fabsf(x[16 * j + i]);
            scales[j] = fit_affine(x + 16 * j, w[j], 16, 3, &mins[j]);
        }
        uint8_t sc[16], mq[16];
        const float d = quant_scales(scales, 16, 15, sc), dmin = quant_scales(mins, 16, 15, mq);
        for (int j = 0; j < 16; j++)
            refine_affine(x + 16 * j, w[j], 16, 3, d, dmin, 15, &sc[j], &mq[j]);
        memset(y, 0, 84);
        for (int j = 0; j < 16; j++)
            y[j] = (uint8_t)(sc[j] | (mq[j] << 4));
        uint8_t *qs = y + 16;
        for (int e = 0; e < QK_K; e++) {
            const int j = e / 16;
            const float s = d * sc[j], m = dmin * mq[j];
            const int q = s > 0 ? clampi((int)lrintf((x[e] + m) / s), 0, 3) : 0;
            const int h = e / 128, r = e % 128;
            qs[32 * h + r % 32] |= (uint8_t)(q << (2 * (r / 32)));
        }
        put_f16(y + 80, d);
        put_f16(y + 82, dmin);
    }
}

llm_quant_encode_fn llm__quant_encoder(uint32_t dtype)
{
    switch (dtype) {
    case LLM_DT_Q4_0: return enc_q4_0;
    case LLM_DT_Q4_1: return enc_q4_1;
    case LLM_DT_Q5_0: return enc_q5_0;
    case LLM_DT_Q5_1: return enc_q5_1;
    case LLM_DT_Q8_0: return enc_q8_0;
    case LLM_DT_Q2_K: return enc_q2_K;
    case LLM_DT_Q3_K: return enc_q3_K;
    case LLM_DT_Q4_K: return enc_q4_K;
    case LLM_DT_Q5_K: return enc_q5_K;
    case LLM_DT_Q6_K: return enc_q6_K;
    default: return NULL;
    }
}
