/* isa_levels.h - runs test cases at every instruction-set level of the CPU kernels that
 * this machine has (llm__quant_select in backends/cpu/quants.h): "avx2", "avx512" (F, BW,
 * DQ, VL) and "native" (with VNNI and BF16 where present), or on 64-bit ARM "neon" and
 * "native" (with dotprod where present), each distinct set once, and says
 * which ran (LLM_CPU_ISA, read by llm__quant_init, is left to the cases outside these loops,
 * e.g. the benchmark of test_quants). LLM_TEST_ISA=<level> makes a missing level a failure,
 * so that a run meant to cover AVX-512 cannot quietly fall back to AVX2. */
#ifndef LLM_TEST_ISA_LEVELS_H
#define LLM_TEST_ISA_LEVELS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quants.h"
#include "test.h"

#if defined(__aarch64__)
static const char *const isa_levels[] = {"neon", "native"}; /* native: with dotprod */
#else
static const char *const isa_levels[] = {"avx2", "avx512", "native"};
#endif
#define N_ISA_LEVELS (sizeof isa_levels / sizeof isa_levels[0])
static char isa_tested[512];

/* Back to the level llm__quant_init chose (LLM_CPU_ISA, or native). */
static void isa_restore(void)
{
    const char *env = getenv("LLM_CPU_ISA");
    if (!env || !*env || !llm__quant_select(env))
        llm__quant_select("native");
}

/* Selects level i and prints it; 0 when this CPU lacks it or it gives the same kernels as
 * the level before (native on a CPU without VNNI and BF16). */
static int isa_level_enter(size_t i, const char **prev)
{
    if (!llm__quant_select(isa_levels[i])) {
        printf("     isa %s: not on this CPU, not tested\n", isa_levels[i]);
        return 0;
    }
    const char *feat = llm__cpu_features();
    if (*prev && strcmp(*prev, feat) == 0)
        return 0;
    *prev = feat;
    printf("  == isa %s: %s\n", isa_levels[i], feat);
    if (!strstr(isa_tested, feat)) {
        snprintf(isa_tested + strlen(isa_tested), sizeof isa_tested - strlen(isa_tested),
                 "%s%s", isa_tested[0] ? " | " : "", feat);
    }
    return 1;
}

/* Selects the next level present from *l on:
 *     const char *prev = NULL;
 *     for (size_t l = 0; isa_next(&l, &prev); l++) { cases }
 * runs the cases at every level; at the end it returns to the level chosen at start-up. */
static int isa_next(size_t *l, const char **prev)
{
    for (; *l < N_ISA_LEVELS; (*l)++)
        if (isa_level_enter(*l, prev))
            return 1;
    isa_restore();
    return 0;
}

/* LLM_TEST_ISA names a level that must be present (checked by the caller's first case). */
static void check_required_isa(void)
{
    const char *need = getenv("LLM_TEST_ISA");
    if (need && *need) {
        CHECK_MSG(llm__quant_select(need), "LLM_TEST_ISA=%s: this CPU (or build) lacks it",
                  need);
        isa_restore();
    }
}

#endif
