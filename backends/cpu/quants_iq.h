/* quants_iq.h - the i-quant GGUF formats (IQ1_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
 * IQ4_NL, IQ4_XS): block layouts, lookup tables, and the scalar reference kernels that
 * quants.c puts into its tables. IQ4_NL dots against Q8_0 activations, the others against
 * Q8_K. Private to backends/cpu. */
#ifndef LLM_CPU_QUANTS_IQ_H
#define LLM_CPU_QUANTS_IQ_H

#include "quants.h"

#define QK4_NL 32

typedef struct { llm_f16 d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
typedef struct { llm_f16 d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } block_iq4_xs;
typedef struct { llm_f16 d; uint16_t qs[QK_K / 8]; } block_iq2_xxs;
typedef struct { llm_f16 d; uint16_t qs[QK_K / 8]; uint8_t scales[QK_K / 32]; } block_iq2_xs;
typedef struct { llm_f16 d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t scales[QK_K / 32]; } block_iq2_s;
typedef struct { llm_f16 d; uint8_t qs[3 * QK_K / 8]; } block_iq3_xxs;
typedef struct { llm_f16 d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t signs[QK_K / 8]; uint8_t scales[QK_K / 64]; } block_iq3_s;
typedef struct { llm_f16 d; uint8_t qs[QK_K / 8]; uint16_t qh[QK_K / 32]; } block_iq1_s;

/* Lattice points (magnitudes; IQ1_S: -1/0/1), the 7-bit -> 8-bit even-parity sign
 * patterns, and IQ4's 16 non-linear levels (quants_iq_tables.c, generated). */
extern const uint8_t llm__iq2xxs_grid[256][8];
extern const uint8_t llm__iq2xs_grid[512][8];
extern const uint8_t llm__iq2s_grid[1024][8];
extern const uint8_t llm__iq3xxs_grid[256][4];
extern const uint8_t llm__iq3s_grid[512][4];
extern const int8_t llm__iq1s_grid[2048][8];
extern const uint8_t llm__iq_ksigns[128];
extern const int8_t llm__iq4nl_values[16];

#define IQ1S_DELTA 0.125f

void llm__iq4_nl_to_float(const void *src, float *y, int64_t n);
void llm__iq4_xs_to_float(const void *src, float *y, int64_t n);
void llm__iq2_xxs_to_float(const void *src, float *y, int64_t n);
void llm__iq2_xs_to_float(const void *src, float *y, int64_t n);
void llm__iq2_s_to_float(const void *src, float *y, int64_t n);
void llm__iq3_xxs_to_float(const void *src, float *y, int64_t n);
void llm__iq3_s_to_float(const void *src, float *y, int64_t n);
void llm__iq1_s_to_float(const void *src, float *y, int64_t n);

void llm__iq4_nl_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq4_xs_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq2_xxs_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq2_xs_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq2_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq3_xxs_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq3_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy);
void llm__iq1_s_vec_dot(int64_t n, float *s, const void *vx, const void *vy);

/* The table entries, for quants.c's reference initializer. */
#define LLM_IQ_REF_ENTRIES                                                                     \
    [LLM_DT_IQ4_NL] = {llm__iq4_nl_to_float, NULL, llm__iq4_nl_vec_dot, LLM_DT_Q8_0},          \
    [LLM_DT_IQ4_XS] = {llm__iq4_xs_to_float, NULL, llm__iq4_xs_vec_dot, LLM_DT_Q8_K},          \
    [LLM_DT_IQ2_XXS] = {llm__iq2_xxs_to_float, NULL, llm__iq2_xxs_vec_dot, LLM_DT_Q8_K},       \
    [LLM_DT_IQ2_XS] = {llm__iq2_xs_to_float, NULL, llm__iq2_xs_vec_dot, LLM_DT_Q8_K},          \
    [LLM_DT_IQ2_S] = {llm__iq2_s_to_float, NULL, llm__iq2_s_vec_dot, LLM_DT_Q8_K},             \
    [LLM_DT_IQ3_XXS] = {llm__iq3_xxs_to_float, NULL, llm__iq3_xxs_vec_dot, LLM_DT_Q8_K},       \
    [LLM_DT_IQ3_S] = {llm__iq3_s_to_float, NULL, llm__iq3_s_vec_dot, LLM_DT_Q8_K},             \
    [LLM_DT_IQ1_S] = {llm__iq1_s_to_float, NULL, llm__iq1_s_vec_dot, LLM_DT_Q8_K},

/* Puts the AVX2 i-quant kernels into table; 0 (nothing changed) when quants_iq_avx2.c was
 * built without AVX2. The caller checks the CPU. */
int llm__quant_iq_avx2_fill(llm_quant_traits *table);

#endif
