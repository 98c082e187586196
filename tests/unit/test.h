/* test.h - a minimal test harness for the C unit tests.
 * Each test program calls TEST_RUN(fn) for its cases and returns test_summary(), which
 * prints "N passed, N failed" and gives the exit status. CHECK failures are reported with
 * file and line and mark the running case failed without stopping the program. */
#ifndef LLM_TEST_H
#define LLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_io.h"

static int test_n_pass, test_n_fail, test_case_failed;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            test_case_failed = 1;                                                       \
        }                                                                               \
    } while (0)

#define CHECK_MSG(cond, ...)                                                            \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "  %s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                        \
            test_case_failed = 1;                                                       \
        }                                                                               \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long va_ = (long long)(a), vb_ = (long long)(b);                           \
        if (va_ != vb_) {                                                               \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__,       \
                    __LINE__, #a, #b, va_, vb_);                                        \
            test_case_failed = 1;                                                       \
        }                                                                               \
    } while (0)

#define TEST_RUN(fn)                                                                    \
    do {                                                                                \
        test_case_failed = 0;                                                           \
        fn();                                                                           \
        if (test_case_failed) {                                                         \
            test_n_fail++;                                                              \
            printf("FAIL %s\n", #fn);                                                   \
        } else {                                                                        \
            test_n_pass++;                                                              \
            printf("ok   %s\n", #fn);                                                   \
        }                                                                               \
        fflush(stdout);                                                                 \
    } while (0)

static inline int test_summary(void)
{
    printf("%d passed, %d failed\n", test_n_pass, test_n_fail);
    return test_n_fail ? 1 : 0;
}

/* Deterministic random numbers for tests: xorshift64*. */
static inline unsigned long long test_rand_u64(unsigned long long *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}
static inline float test_rand_f32(unsigned long long *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)((test_rand_u64(s) >> 40) / (double)(1ULL << 24));
}

/* The model files for tests: LLM_MODEL_DIR (set by scripts/test), else the user cache. */
static inline const char *test_model_path(const char *file, char *buf, size_t cap)
{
    const char *dir = getenv("LLM_MODEL_DIR");
    if (dir && *dir)
        snprintf(buf, cap, "%s/%s", dir, file);
    else
        snprintf(buf, cap, "%s/.cache/libllm/models/%s", getenv("HOME") ? getenv("HOME") : ".", file);
    return buf;
}

#endif
