/* isa_bench.c - the CPU kernels of each instruction-set level this machine has (AVX2,
 * AVX-512, AVX-512 with VNNI/BF16) side by side: ns per vec_dot row of 4096 elements, with
 * the weight rows hot in cache (64 rows, many passes) and streamed from memory (about 64 MB
 * of rows, one pass), and ns per from_float row. The levels take turns within each
 * repetition, in a rotating order, each timed over about 20 ms after an untimed warm-up;
 * the median of the repetitions is printed with its ratio to AVX2. One thread. Last, the CPU
 * backend's matmul (4096 x 4096 weights, repacked where the type has it) for 1 and 32
 * tokens, the weights prepared again at each level.
 * Not a test: it checks nothing. Usage: isa_bench [repetitions] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "quants.h"

#define N 4096

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static unsigned long long rng = 0x853c49e6748fea9bULL;

static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *const levels[] = {"avx2", "avx512", "native"};
static llm_quant_traits tables[3][LLM_DT_COUNT];
static const char *names[3];
static int n_levels;

/* random but valid rows: quantised from random floats where there is a quantiser, random
 * bytes with small f16 scales otherwise (K-quants) */
static void fill_rows(uint32_t t, char *w, size_t rb, int64_t rows)
{
    float *x = malloc(N * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int i = 0; i < N; i++)
            x[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
        if (llm__quant_ref[t].from_float) {
            llm__quant_ref[t].from_float(x, w + r * rb, N);
        } else {
            for (size_t i = 0; i < rb; i++)
                w[r * rb + i] = (char)rnd();
            const size_t bsz = rb / (N / QK_K);
            for (int b = 0; b < N / QK_K; b++) {
                char *blk = w + r * rb + b * bsz;
                const llm_f16 d = llm__f32_to_f16(0.01f);
                /* d (and dmin) sit first in Q4_K/Q5_K, last in Q6_K */
                if (t == LLM_DT_Q6_K)
                    memcpy(blk + bsz - 2, &d, 2);
                else
                    memcpy(blk, &d, 2), memcpy(blk + 2, &d, 2);
            }
        }
    }
    free(x);
}

static void bench_dot(uint32_t t, const char *name, int reps)
{
    const uint32_t vt = llm__quant_ref[t].vec_dot_type;
    const size_t rb = llm__dtype_row_size(t, N), ab = llm__dtype_row_size(vt, N);
    const int64_t hot = 64, cold = (int64_t)((64u << 20) / rb);
    char *w = malloc(rb * (size_t)cold), *a = malloc(ab);
    float *x = malloc(N * sizeof(float));
    fill_rows(t, w, rb, cold);
    for (int i = 0; i < N; i++)
        x[i] = (float)((int)(rnd() % 2001) - 1000) / 500.0f;
    llm__quant_ref[vt].from_float(x, a, N);
    double res[2][3][64];
    volatile float sink = 0;
    int passes = 0;
    for (int rep = -1; rep < reps; rep++) {
        for (int k = 0; k < n_levels; k++) {
            const int l = (k + (rep < 0 ? 0 : rep)) % n_levels;
            const llm_vec_dot_fn dot = tables[l][t].vec_dot;
            float s;
            for (int64_t r = 0; r < hot; r++) /* warm-up */
                dot(N, &s, w + r * rb, a), sink += s;
            double t0 = now_ns();
            const int np = passes ? passes : 20;
            for (int pass = 0; pass < np; pass++)
                for (int64_t r = 0; r < hot; r++) {
                    dot(N, &s, w + r * rb, a);
                    sink += s;
                }
            const double per = (now_ns() - t0) / ((double)np * (double)hot);
            if (!passes)
                passes = (int)(20e6 / (per * (double)hot)) + 1;
            t0 = now_ns();
            for (int64_t r = 0; r < cold; r++) {
                dot(N, &s, w + r * rb, a);
                sink += s;
            }
            const double cold_per = (now_ns() - t0) / (double)cold;
            if (rep >= 0) {
                res[0][l][rep] = per;
                res[1][l][rep] = cold_per;
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        printf("%-5s %-4s", name, k ? "mem" : "hot");
        double base = 0;
        for (int l = 0; l < n_levels; l++) {
            qsort(res[k][l], (size_t)reps, sizeof(double), cmp_double);
            const double m = res[k][l][reps / 2];
            if (l == 0)
                base = m;
            printf("  %9.1f ns (%.2fx)", m, base / m);
        }
        printf("\n");
    }
    (void)sink;
    free(w), free(a), free(x);
}

static void bench_from_float(uint32_t t, const char *name, int reps)
{
    float *x = malloc(N * sizeof(float));
    char *q = malloc(llm__dtype_row_size(LLM_DT_F32, N));
    for (int i = 0; i < N; i++)
        x[i] = (float)((int)(rnd() % 2001) - 1000) / 500.0f;
    double res[3][64];
    for (int rep = 0; rep < reps; rep++)
        for (int k = 0; k < n_levels; k++) {
            const int l = (k + rep) % n_levels;
            double t0 = now_ns();
            for (int i = 0; i < 10000; i++)
                tables[l][t].from_float(x, q, N);
            res[l][rep] = (now_ns() - t0) / 10000.0;
        }
    printf("%-5s from_float", name);
    double base = 0;
    for (int l = 0; l < n_levels; l++) {
        qsort(res[l], (size_t)reps, sizeof(double), cmp_double);
        const double m = res[l][reps / 2];
        if (l == 0)
            base = m;
        printf("  %9.1f ns (%.2fx)", m, base / m);
    }
    printf("\n");
    free(x), free(q);
}

/* the CPU backend's matmul, one thread, at each level: ns per call */
static void bench_matmul(uint32_t t, const char *name, int reps)
{
    const struct llm_backend_ops *ops = llm__backend_find("cpu");
    llm_backend_config cfg = {.n_threads = 1};
    llm_backend *be = NULL;
    if (!ops || ops->create(&cfg, &be) != LLM_OK) {
        printf("no cpu backend\n");
        return;
    }
    const int64_t rows = 4096, ntok = 32;
    const size_t rb = llm__dtype_row_size(t, N);
    char *w = malloc(rb * (size_t)rows);
    float *x = malloc((size_t)ntok * N * sizeof(float)), *y = malloc((size_t)ntok * rows * 4);
    fill_rows(t, w, rb, rows);
    for (int64_t i = 0; i < ntok * N; i++)
        x[i] = (float)((int)(rnd() % 2001) - 1000) / 500.0f;
    llm_tensor wt[3];
    for (int l = 0; l < n_levels; l++) {
        llm__quant_select(names[l]);
        wt[l] = (llm_tensor){.dtype = t, .ne = {N, rows}, .row_bytes = rb, .data = w,
                             .name = "blk.0.ffn_up.weight"};
        ops->prepare_weight(be, &wt[l]);
    }
    double res[2][3][64];
    for (int rep = -1; rep < reps; rep++)
        for (int k = 0; k < n_levels; k++) {
            const int l = (k + (rep < 0 ? 0 : rep)) % n_levels;
            llm__quant_select(names[l]);
            for (int m = 0; m < 2; m++) {
                const int64_t nt = m ? ntok : 1;
                const int iters = m ? 2 : 20;
                const double t0 = now_ns();
                for (int it = 0; it < iters; it++)
                    ops->matmul(be, y, rows, &wt[l], x, N, nt);
                if (rep >= 0)
                    res[m][l][rep] = (now_ns() - t0) / iters;
            }
        }
    for (int m = 0; m < 2; m++) {
        printf("%-5s matmul %2d tok", name, m ? (int)ntok : 1);
        double base = 0;
        for (int l = 0; l < n_levels; l++) {
            qsort(res[m][l], (size_t)reps, sizeof(double), cmp_double);
            const double med = res[m][l][reps / 2] / 1e3;
            if (l == 0)
                base = med;
            printf("  %9.1f us (%.2fx)", med, base / med);
        }
        printf("\n");
    }
    for (int l = 0; l < n_levels; l++)
        ops->release_weight(be, &wt[l]);
    ops->destroy(be);
    llm__quant_select("native");
    free(w), free(x), free(y);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    llm__quant_init();
    const char *prev = NULL;
    for (int l = 0; l < 3; l++) {
        if (!llm__quant_select(levels[l]) || (prev && strcmp(prev, llm__cpu_features()) == 0))
            continue;
        prev = llm__cpu_features();
        names[n_levels] = levels[l];
        memcpy(tables[n_levels++], llm__quant_best, sizeof tables[0]);
    }
    llm__quant_select("native"); /* the f16 table stays filled */
    printf("vec_dot of %d elements, median of %d; levels:", N, reps);
    for (int l = 0; l < n_levels; l++)
        printf(" %s", names[l]);
    printf("\n");
    static const struct { uint32_t t; const char *name; } types[] = {
        {LLM_DT_F32, "f32"},   {LLM_DT_F16, "f16"},   {LLM_DT_BF16, "bf16"},
        {LLM_DT_Q4_0, "q4_0"}, {LLM_DT_Q4_1, "q4_1"}, {LLM_DT_Q5_0, "q5_0"},
        {LLM_DT_Q5_1, "q5_1"}, {LLM_DT_Q8_0, "q8_0"}, {LLM_DT_Q4_K, "q4_K"},
        {LLM_DT_Q5_K, "q5_K"}, {LLM_DT_Q6_K, "q6_K"}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        bench_dot(types[i].t, types[i].name, reps);
    bench_from_float(LLM_DT_Q8_0, "q8_0", reps);
    bench_from_float(LLM_DT_Q8_1, "q8_1", reps);
    bench_from_float(LLM_DT_Q8_K, "q8_K", reps);
    bench_matmul(LLM_DT_Q4_0, "q4_0", reps);
    bench_matmul(LLM_DT_Q8_0, "q8_0", reps);
    bench_matmul(LLM_DT_Q4_K, "q4_K", reps);
    bench_matmul(LLM_DT_Q6_K, "q6_K", reps);
    bench_matmul(LLM_DT_Q5_0, "q5_0", reps);
    return 0;
}
