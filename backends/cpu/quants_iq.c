/* quants_iq.c - scalar reference kernels for the i-quant formats: dequantisation (equal to
 * the gguf package's numpy code bit for bit) and dot products with Q8_0/Q8_K activation
 * rows.
 *
 * The formats: IQ4_NL/IQ4_XS store 4-bit indices into 16 non-linear levels (IQ4_XS with a
 * 6-bit scale per 32 and a half scale per 256). The IQ2/IQ3 formats store groups of 8 (or
 * 4) magnitudes as an index into a lattice grid, a sign pattern per 8 (7 bits naming an
 * even-parity byte through the ksigns table, or a plain sign byte in IQ2_S/IQ3_S), and a
 * 4-bit scale per 16 or 32; IQ1_S stores -1/0/1 grid points plus a shared +-1/8 shift.
 *
 * Each dot product forms exact integer sums per sub-block, weights them with the integer
 * sub-block scales, and applies the float scales once per super-block, in the order of
 * llama.cpp's generic code. The AVX2 kernels (quants_iq_avx2.c) are tested against these. */
#include "quants_iq.h"

#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

#define F16(h) llm__f16_to_f32(h)

static uint32_t load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float sign_of(uint32_t bits, int j)
{
    return (bits >> j) & 1 ? -1.0f : 1.0f;
}

static inline int isign_of(uint32_t bits, int j)
{
    return (bits >> j) & 1 ? -1 : 1;
}

/* ---- IQ4_NL, IQ4_XS ------------------------------------------------------------------ */

void llm__iq4_nl_to_float(const void *src, float *y, int64_t n)
{
    const block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * (float)llm__iq4nl_values[x[i].qs[j] & 0xf];
            y[j + QK4_NL / 2] = d * (float)llm__iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

void llm__iq4_nl_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int s1 = 0, s2 = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            s1 += y[i].qs[j] * llm__iq4nl_values[x[i].qs[j] & 0xf];
            s2 += y[i].qs[j + QK4_NL / 2] * llm__iq4nl_values[x[i].qs[j] >> 4];
        }
        sum += F16(x[i].d) * F16(y[i].d) * (float)(s1 + s2);
    }
    *s = sum;
}

static int iq4_xs_scale(const block_iq4_xs *b, int ib)
{
    return (((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4)) -
           32;
}

void llm__iq4_xs_to_float(const void *src, float *y, int64_t n)
{
    const block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32) {
            const float dl = d * (float)iq4_xs_scale(&x[i], ib);
            const uint8_t *q = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)llm__iq4nl_values[q[j] & 0xf];
                y[j + 16] = dl * (float)llm__iq4nl_values[q[j] >> 4];
            }
        }
    }
}

void llm__iq4_xs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 16 * ib;
            const int8_t *q8 = y[i].qs + 32 * ib;
            int s1 = 0, s2 = 0;
            for (int j = 0; j < 16; j++) {
                s1 += q8[j] * llm__iq4nl_values[q[j] & 0xf];
                s2 += q8[j + 16] * llm__iq4nl_values[q[j] >> 4];
            }
            sumi += iq4_xs_scale(&x[i], ib) * (s1 + s2);
        }
        sum += F16(x[i].d) * y[i].d * (float)sumi;
    }
    *s = sum;
}

/* ---- IQ2_XXS, IQ2_XS, IQ2_S ------------------------------------------------------------ */

/* IQ2_XXS: per 32 elements, 4 grid bytes then a word of 4 x 7 sign bits and a 4-bit scale. */
void llm__iq2_xxs_to_float(const void *src, float *y, int64_t n)
{
    const block_iq2_xxs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *idx = (const uint8_t *)(x[i].qs + 4 * ib);
            const uint32_t aux = load_u32(x[i].qs + 4 * ib + 2);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t *g = llm__iq2xxs_grid[idx[l]];
                const uint32_t signs = llm__iq_ksigns[(aux >> 7 * l) & 127];
                for (int j = 0; j < 8; j++)
                    y[j] = db * (float)g[j] * sign_of(signs, j);
            }
        }
    }
}

void llm__iq2_xxs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_xxs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *idx = (const uint8_t *)(x[i].qs + 4 * ib);
            const uint32_t aux = load_u32(x[i].qs + 4 * ib + 2);
            int sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint8_t *g = llm__iq2xxs_grid[idx[l]];
                const uint32_t signs = llm__iq_ksigns[(aux >> 7 * l) & 127];
                for (int j = 0; j < 8; j++)
                    sumi += g[j] * q8[j] * isign_of(signs, j);
            }
            bsum += sumi * (int)(2 * (aux >> 28) + 1);
        }
        sum += F16(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sum;
}

/* IQ2_XS: 16-bit words of a 9-bit grid index and a 7-bit sign index; a scale per 16. */
void llm__iq2_xs_to_float(const void *src, float *y, int64_t n)
{
    const block_iq2_xs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint16_t q = x[i].qs[4 * ib + l];
                const uint8_t *g = llm__iq2xs_grid[q & 511];
                const uint32_t signs = llm__iq_ksigns[q >> 9];
                for (int j = 0; j < 8; j++)
                    y[j] = db[l / 2] * (float)g[j] * sign_of(signs, j);
            }
        }
    }
}

void llm__iq2_xs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int sumi[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint16_t q = x[i].qs[4 * ib + l];
                const uint8_t *g = llm__iq2xs_grid[q & 511];
                const uint32_t signs = llm__iq_ksigns[q >> 9];
                for (int j = 0; j < 8; j++)
                    sumi[l / 2] += g[j] * q8[j] * isign_of(signs, j);
            }
            bsum += sumi[0] * (2 * (x[i].scales[ib] & 0xf) + 1) +
                    sumi[1] * (2 * (x[i].scales[ib] >> 4) + 1);
        }
        sum += F16(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sum;
}

/* IQ2_S: 10-bit grid indices (low bytes, then 2 high bits each in qh) and a plain sign
 * byte per 8 elements; a scale per 16. */
static int iq2_s_index(const block_iq2_s *b, int ib, int l)
{
    return b->qs[4 * ib + l] | ((b->qh[ib] << (8 - 2 * l)) & 0x300);
}

void llm__iq2_s_to_float(const void *src, float *y, int64_t n)
{
    const block_iq2_s *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t *g = llm__iq2s_grid[iq2_s_index(&x[i], ib, l)];
                for (int j = 0; j < 8; j++)
                    y[j] = db[l / 2] * (float)g[j] * sign_of(signs[4 * ib + l], j);
            }
        }
    }
}

void llm__iq2_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq2_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *signs = x[i].qs + QK_K / 8;
        int bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int sumi[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint8_t *g = llm__iq2s_grid[iq2_s_index(&x[i], ib, l)];
                for (int j = 0; j < 8; j++)
                    sumi[l / 2] += g[j] * q8[j] * isign_of(signs[4 * ib + l], j);
            }
            bsum += sumi[0] * (2 * (x[i].scales[ib] & 0xf) + 1) +
                    sumi[1] * (2 * (x[i].scales[ib] >> 4) + 1);
        }
        sum += F16(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sum;
}

/* ---- IQ3_XXS, IQ3_S ------------------------------------------------------------------- */

/* IQ3_XXS: 64 grid bytes (4 magnitudes each), then per 32 a word of 4 x 7 sign bits and a
 * 4-bit scale. */
void llm__iq3_xxs_to_float(const void *src, float *y, int64_t n)
{
    const block_iq3_xxs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *q3 = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint32_t aux = load_u32(x[i].qs + QK_K / 4 + 4 * ib);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8, q3 += 2) {
                const uint8_t *g1 = llm__iq3xxs_grid[q3[0]], *g2 = llm__iq3xxs_grid[q3[1]];
                const uint32_t signs = llm__iq_ksigns[(aux >> 7 * l) & 127];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (float)g1[j] * sign_of(signs, j);
                    y[j + 4] = db * (float)g2[j] * sign_of(signs, j + 4);
                }
            }
        }
    }
}

void llm__iq3_xxs_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq3_xxs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *q3 = x[i].qs;
        int bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint32_t aux = load_u32(x[i].qs + QK_K / 4 + 4 * ib);
            int sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8, q3 += 2) {
                const uint8_t *g1 = llm__iq3xxs_grid[q3[0]], *g2 = llm__iq3xxs_grid[q3[1]];
                const uint32_t signs = llm__iq_ksigns[(aux >> 7 * l) & 127];
                for (int j = 0; j < 4; j++) {
                    sumi += g1[j] * q8[j] * isign_of(signs, j);
                    sumi += g2[j] * q8[j + 4] * isign_of(signs, j + 4);
                }
            }
            bsum += sumi * (int)(2 * (aux >> 28) + 1);
        }
        sum += F16(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.25f * sum;
}

/* IQ3_S: 9-bit grid indices (bytes plus a high bit each in qh), a plain sign byte per 8,
 * and a 4-bit odd scale (1 + 2s) per 32. */
static void iq3_s_group(const block_iq3_s *b, int ib, int l, const uint8_t **g1,
                        const uint8_t **g2)
{
    const uint8_t *qs = b->qs + 8 * ib;
    const int qh = b->qh[ib];
    *g1 = llm__iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)];
    *g2 = llm__iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)];
}

void llm__iq3_s_to_float(const void *src, float *y, int64_t n)
{
    const block_iq3_s *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float db = d * (float)(1 + 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0xf));
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t *g1, *g2;
                iq3_s_group(&x[i], ib, l, &g1, &g2);
                const uint32_t signs = x[i].signs[4 * ib + l];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (float)g1[j] * sign_of(signs, j);
                    y[j + 4] = db * (float)g2[j] * sign_of(signs, j + 4);
                }
            }
        }
    }
}

void llm__iq3_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq3_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint8_t *g1, *g2;
                iq3_s_group(&x[i], ib, l, &g1, &g2);
                const uint32_t signs = x[i].signs[4 * ib + l];
                for (int j = 0; j < 4; j++) {
                    sumi += g1[j] * q8[j] * isign_of(signs, j);
                    sumi += g2[j] * q8[j + 4] * isign_of(signs, j + 4);
                }
            }
            bsum += sumi * (1 + 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0xf));
        }
        sum += F16(x[i].d) * y[i].d * (float)bsum;
    }
    *s = sum;
}

/* ---- IQ1_S ------------------------------------------------------------------------------ */

/* Per 32 elements a 16-bit word: 4 x 3 high index bits, a 3-bit scale, the shift's sign. */
void llm__iq1_s_to_float(const void *src, float *y, int64_t n)
{
    const block_iq1_s *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int qh = x[i].qh[ib];
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -IQ1S_DELTA : IQ1S_DELTA;
            for (int l = 0; l < 4; l++, y += 8) {
                const int8_t *g = llm__iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> 3 * l) & 7) << 8)];
                for (int j = 0; j < 8; j++)
                    y[j] = dl * ((float)g[j] + delta);
            }
        }
    }
}

void llm__iq1_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy)
{
    const block_iq1_s *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int sumi = 0, sumi1 = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int qh = x[i].qh[ib];
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            const int delta = qh & 0x8000 ? -1 : 1;
            int lsum = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                const int8_t *g = llm__iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> 3 * l) & 7) << 8)];
                for (int j = 0; j < 8; j++)
                    lsum += q8[j] * g[j];
            }
            sumi += ls * lsum;
            sumi1 += ls * delta * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        sum += F16(x[i].d) * y[i].d * ((float)sumi + IQ1S_DELTA * (float)sumi1);
    }
    *s = sum;
}
