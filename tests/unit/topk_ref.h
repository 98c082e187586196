/* topk_ref.h - inputs and the brute-force answer for the backends' top_k op (shared by
 * test_cpu_ops.c and test_cuda_ops.c). */
#ifndef LLM_TEST_TOPK_REF_H
#define LLM_TEST_TOPK_REF_H

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "test.h"

/* Row r of a batch meant to be hard: kind r % 6 gives plain random values, values on a
 * coarse grid (many ties), a few valid values among NaN and -inf (fewer than k), one value
 * everywhere, +inf/-inf/NaN/±0 sprinkled over random values, and a descending ramp. */
static inline void topk_fill(float *x, int64_t n, int r, unsigned long long *rs)
{
    for (int64_t i = 0; i < n; i++) {
        const float u = test_rand_f32(rs, -8.0f, 8.0f);
        switch (r % 6) {
        case 0: x[i] = u; break;
        case 1: x[i] = roundf(u) * 0.5f; break;
        case 2: x[i] = i % 97 == 5 ? u : (i % 2 ? NAN : -INFINITY); break;
        case 3: x[i] = 1.25f; break;
        case 4: {
            const unsigned long long v = test_rand_u64(rs) % 16;
            x[i] = v == 0 ? INFINITY : v == 1 ? -INFINITY : v == 2 ? NAN : v == 3 ? -0.0f
                 : v == 4 ? 0.0f : v == 5 ? FLT_MAX : u;
            break;
        }
        default: x[i] = 100.0f - (float)i * 1e-3f; break;
        }
    }
}

typedef struct topk_e {
    float v;
    int32_t id;
} topk_e;

static inline int topk_cmp(const void *pa, const void *pb)
{
    const topk_e *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* The expected answer for one row: valid values (not NaN, not -inf; +inf as FLT_MAX) sorted
 * by value, then index; the first k, the rest id -1 / -inf. */
static inline void topk_ref(const float *x, int64_t n, int32_t k, int32_t *ids, float *vals)
{
    topk_e *e = malloc((size_t)(n > 0 ? n : 1) * sizeof *e);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (v != v || v == -INFINITY)
            continue;
        e[m].v = v > FLT_MAX ? FLT_MAX : v;
        e[m++].id = (int32_t)i;
    }
    qsort(e, (size_t)m, sizeof *e, topk_cmp);
    for (int32_t j = 0; j < k; j++) {
        ids[j] = j < m ? e[j].id : -1;
        vals[j] = j < m ? e[j].v : -INFINITY;
    }
    free(e);
}

/* Whether got equals the reference (values compared with ==, so 0 and -0 agree). */
static inline int topk_same(const int32_t *ids, const float *vals, const int32_t *want_ids,
                            const float *want_vals, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] != want_ids[i] || !(vals[i] == want_vals[i]))
            return 0;
    return 1;
}

/* Checks every one of `rows` rows of n floats at x against what the backend gave (ids and
 * vals, k per row); returns the number of rows checked. */
static inline int topk_check_rows(const float *x, int64_t n, int rows, int32_t k,
                                  const int32_t *ids, const float *vals)
{
    int32_t *want_i = malloc((size_t)k * sizeof(int32_t));
    float *want_v = malloc((size_t)k * sizeof(float));
    for (int r = 0; r < rows; r++) {
        topk_ref(x + r * n, n, k, want_i, want_v);
        CHECK_MSG(topk_same(ids + r * k, vals + r * k, want_i, want_v, k),
                  "n %lld, k %d, row %d (kind %d)", (long long)n, k, r, r % 6);
    }
    free(want_i), free(want_v);
    return rows;
}

#endif
