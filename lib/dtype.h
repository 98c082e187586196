/* dtype.h - tensor element types as numbered in GGUF files, with their block layout.
 * Private; never installed. */
#ifndef LLM_DTYPE_H
#define LLM_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Values are the GGUF (ggml) type ids: they appear in files and never change. */
enum llm_dtype {
    LLM_DT_F32 = 0,
    LLM_DT_F16 = 1,
    LLM_DT_Q4_0 = 2,
    LLM_DT_Q4_1 = 3,
    LLM_DT_Q5_0 = 6,
    LLM_DT_Q5_1 = 7,
    LLM_DT_Q8_0 = 8,
    LLM_DT_Q8_1 = 9,
    LLM_DT_Q2_K = 10,
    LLM_DT_Q3_K = 11,
    LLM_DT_Q4_K = 12,
    LLM_DT_Q5_K = 13,
    LLM_DT_Q6_K = 14,
    LLM_DT_Q8_K = 15,
    LLM_DT_IQ2_XXS = 16,
    LLM_DT_IQ2_XS = 17,
    LLM_DT_IQ3_XXS = 18,
    LLM_DT_IQ1_S = 19,
    LLM_DT_IQ4_NL = 20,
    LLM_DT_IQ3_S = 21,
    LLM_DT_IQ2_S = 22,
    LLM_DT_IQ4_XS = 23,
    LLM_DT_I8 = 24,
    LLM_DT_I16 = 25,
    LLM_DT_I32 = 26,
    LLM_DT_I64 = 27,
    LLM_DT_F64 = 28,
    LLM_DT_IQ1_M = 29,
    LLM_DT_BF16 = 30,
    LLM_DT_TQ1_0 = 34,
    LLM_DT_TQ2_0 = 35,
    LLM_DT_MXFP4 = 39,
    LLM_DT_COUNT = 40
};

typedef struct llm_dtype_info {
    const char *name;   /* "q4_K" */
    int32_t block;      /* elements per block */
    int32_t type_size;  /* bytes per block */
} llm_dtype_info;

/* Layout of a type, or NULL for an id this build does not know. */
LLM_INTERNAL const llm_dtype_info *llm__dtype_info(uint32_t t);

/* Bytes of a row of n elements; 0 if the type is unknown or n is not a multiple of the
 * block size. */
LLM_INTERNAL size_t llm__dtype_row_size(uint32_t t, int64_t n);

#endif
