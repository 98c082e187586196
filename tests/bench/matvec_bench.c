/* matvec_bench.c - the CUDA backend's matmul for few tokens, one weight shape at a time.
 *
 *   matvec_bench [TYPE ...]        (default: q4_K q6_K q8_0 q4_0 bf16)
 *
 * For each type and each matrix shape of a Llama-3.1-8B layer and its output matrix, a
 * random weight is prepared on the device and multiplied with n = 1, 2, 4, 8 random
 * activation rows, 200 times back to back after a warm-up; the line gives the time per
 * call and the weight bytes read per second. The weight alone is counted: activations are
 * a few KB and stay in cache. Calls after the first reuse the quantized activations (as
 * the k, v and up matmuls of a layer do), so the time is the product kernel's alone.
 * MATVEC_SHAPE=WORD keeps the shapes whose name contains WORD (e.g. "gate"), MATVEC_MAX_N=N
 * the token counts up to N, at most 8 (for a profiler that should see a few launches).
 * Uses the internal backend API (tests only). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "dtype.h"

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const struct {
    const char *what;
    int64_t k, rows;
} shapes[] = {{"q/o 4096x4096", 4096, 4096}, {"k/v 1024x4096", 4096, 1024},
              {"gate/up 14336x4096", 4096, 14336}, {"down 4096x14336", 14336, 4096},
              {"output 128256x4096", 4096, 128256}};

int main(int argc, char **argv)
{
    const struct llm_backend_ops *gpu = llm__backend_module("cuda");
    llm_backend *be = NULL;
    llm_backend_config cfg = {.n_threads = 1};
    if (!gpu || gpu->create(&cfg, &be) != LLM_OK) {
        printf("SKIP: no CUDA backend: %s\n", llm_last_error());
        return 77;
    }
    const char *deflt[] = {"q4_K", "q6_K", "q8_0", "q4_0", "bf16"};
    const char **names = argc > 1 ? (const char **)argv + 1 : deflt;
    const int n_names = argc > 1 ? argc - 1 : 5;
    uint64_t rng = 12345;
    const char *only = getenv("MATVEC_SHAPE");
    int max_n = getenv("MATVEC_MAX_N") ? atoi(getenv("MATVEC_MAX_N")) : 8;
    max_n = max_n > 8 ? 8 : max_n; /* the buffers hold 8 rows */
    for (int ti = 0; ti < n_names; ti++) {
        uint32_t t = LLM_DT_COUNT;
        for (uint32_t i = 0; i < LLM_DT_COUNT; i++) {
            const llm_dtype_info *di = llm__dtype_info(i);
            if (di && di->name && strcmp(di->name, names[ti]) == 0)
                t = i;
        }
        if (t == LLM_DT_COUNT) {
            printf("unknown type %s\n", names[ti]);
            continue;
        }
        const llm_dtype_info *info = llm__dtype_info(t);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            if (only && !strstr(shapes[si].what, only))
                continue;
            const int64_t k = shapes[si].k, rows = shapes[si].rows;
            const size_t rb = llm__dtype_row_size(t, k), bytes = rb * (size_t)rows;
            uint8_t *h = malloc(bytes);
            for (size_t i = 0; i < bytes; i++)
                h[i] = (uint8_t)rnd(&rng);
            /* no f16 field infinite or NaN (the time does not depend on the values) */
            for (size_t i = 0; i + 1 < bytes; i += 2)
                if ((h[i + 1] & 0x7c) == 0x7c)
                    h[i + 1] &= 0x3b;
            llm_tensor w = {.dtype = t, .ne = {k, rows}, .row_bytes = rb, .data = h};
            snprintf(w.name, sizeof w.name, "w");
            if (gpu->prepare_weight(be, &w) != LLM_OK) {
                printf("%s: %s\n", info->name, llm_last_error());
                free(h);
                continue;
            }
            float *xh = malloc((size_t)(8 * k) * sizeof(float));
            for (int64_t i = 0; i < 8 * k; i++)
                xh[i] = (float)(rnd(&rng) >> 40) / (float)(1 << 23) - 1.0f;
            float *x = gpu->alloc(be, (size_t)(8 * k) * sizeof(float));
            float *y = gpu->alloc(be, (size_t)(8 * rows) * sizeof(float));
            gpu->upload(be, x, xh, (size_t)(8 * k) * sizeof(float));
            for (int n = 1; n <= max_n; n *= 2) {
                const int reps = 200;
                for (int i = 0; i < 5; i++)
                    gpu->matmul(be, y, rows, &w, x, k, n);
                gpu->synchronize(be);
                const double t0 = now();
                for (int i = 0; i < reps; i++)
                    gpu->matmul(be, y, rows, &w, x, k, n);
                const llm_status st = gpu->synchronize(be);
                const double us = (now() - t0) / reps * 1e6;
                printf("%-5s %-20s n=%d %8.2f us  %7.1f GB/s%s\n", info->name, shapes[si].what,
                       n, us, (double)bytes / us * 1e-3, st == LLM_OK ? "" : "  (error)");
            }
            fflush(stdout);
            gpu->free(be, x), gpu->free(be, y);
            gpu->release_weight(be, &w);
            free(h), free(xh);
        }
    }
    gpu->destroy(be);
    return 0;
}
