/* dtype.c - the table of GGUF tensor types. */
#include "dtype.h"

#define QK_K 256

static const llm_dtype_info dtypes[LLM_DT_COUNT] = {
    [LLM_DT_F32] = {"f32", 1, 4},
    [LLM_DT_F16] = {"f16", 1, 2},
    [LLM_DT_Q4_0] = {"q4_0", 32, 2 + 16},
    [LLM_DT_Q4_1] = {"q4_1", 32, 2 + 2 + 16},
    [LLM_DT_Q5_0] = {"q5_0", 32, 2 + 4 + 16},
    [LLM_DT_Q5_1] = {"q5_1", 32, 2 + 2 + 4 + 16},
    [LLM_DT_Q8_0] = {"q8_0", 32, 2 + 32},
    [LLM_DT_Q8_1] = {"q8_1", 32, 4 + 32},
    [LLM_DT_Q2_K] = {"q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2},
    [LLM_DT_Q3_K] = {"q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2},
    [LLM_DT_Q4_K] = {"q4_K", QK_K, 2 + 2 + 12 + QK_K / 2},
    [LLM_DT_Q5_K] = {"q5_K", QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2},
    [LLM_DT_Q6_K] = {"q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2},
    [LLM_DT_Q8_K] = {"q8_K", QK_K, 4 + QK_K + QK_K / 16 * 2},
    [LLM_DT_IQ2_XXS] = {"iq2_xxs", QK_K, 2 + QK_K / 8 * 2},
    [LLM_DT_IQ2_XS] = {"iq2_xs", QK_K, 2 + QK_K / 8 * 2 + QK_K / 32},
    [LLM_DT_IQ3_XXS] = {"iq3_xxs", QK_K, 2 + QK_K / 4 + QK_K / 8},
    [LLM_DT_IQ1_S] = {"iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 16},
    [LLM_DT_IQ4_NL] = {"iq4_nl", 32, 2 + 16},
    [LLM_DT_IQ3_S] = {"iq3_s", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4},
    [LLM_DT_IQ2_S] = {"iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 16},
    [LLM_DT_IQ4_XS] = {"iq4_xs", QK_K, 2 + 2 + QK_K / 64 + QK_K / 2},
    [LLM_DT_I8] = {"i8", 1, 1},
    [LLM_DT_I16] = {"i16", 1, 2},
    [LLM_DT_I32] = {"i32", 1, 4},
    [LLM_DT_I64] = {"i64", 1, 8},
    [LLM_DT_F64] = {"f64", 1, 8},
    [LLM_DT_IQ1_M] = {"iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},
    [LLM_DT_BF16] = {"bf16", 1, 2},
    [LLM_DT_TQ1_0] = {"tq1_0", QK_K, (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2},
    [LLM_DT_TQ2_0] = {"tq2_0", QK_K, 2 + QK_K / 4},
    [LLM_DT_MXFP4] = {"mxfp4", 32, 1 + 16},
};

const llm_dtype_info *llm__dtype_info(uint32_t t)
{
    if (t >= LLM_DT_COUNT || dtypes[t].name == NULL)
        return NULL;
    return &dtypes[t];
}

size_t llm__dtype_row_size(uint32_t t, int64_t n)
{
    const llm_dtype_info *info = llm__dtype_info(t);
    if (!info || n < 0 || n % info->block != 0)
        return 0;
    return (size_t)(n / info->block) * (size_t)info->type_size;
}
