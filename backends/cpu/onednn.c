/* onednn.c - oneDNN's matmul for BF16, F32 and F16 weights (see onednn.h). */
#include "onednn.h"
#include "quants.h"

#include <stdlib.h>
#include <string.h>

#ifdef LLM_HAVE_DNNL

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

/* Primitives are made per shape (a few ms each) and kept: a model has a handful of weight
 * shapes, and prompts come in n_batch chunks plus one shorter chunk. */
#define DNNL_CACHE 64

typedef struct {
    int64_t n, k, rows, ldy, ldx;
    size_t w_row;
    int f32;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src, wei, dst;
    uint64_t used;
} dnnl_entry;

struct llm_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_entry cache[DNNL_CACHE];
    int n_cache;
    uint64_t clock;
};

llm_dnnl *llm__dnnl_create(void)
{
    if (getenv("LLM_CPU_NO_DNNL"))
        return NULL;
    llm_dnnl *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (dnnl_engine_create(&d->engine, dnnl_cpu, 0) != dnnl_success) {
        free(d);
        return NULL;
    }
    if (dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(d->engine);
        free(d);
        return NULL;
    }
    return d;
}

void llm__dnnl_free(llm_dnnl *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n_cache; i++)
        dnnl_primitive_destroy(d->cache[i].prim);
    dnnl_stream_destroy(d->stream);
    dnnl_engine_destroy(d->engine);
    free(d);
}

/* The primitive for this shape, made on first use; NULL when oneDNN has no implementation
 * that is not its reference one (those are slower than the tiles). */
static dnnl_entry *entry(llm_dnnl *d, int f32, int64_t n, int64_t k, int64_t ldx, int64_t rows,
                         int64_t ldy, size_t w_row)
{
    for (int i = 0; i < d->n_cache; i++) {
        dnnl_entry *e = &d->cache[i];
        if (e->f32 == f32 && e->n == n && e->k == k && e->ldx == ldx && e->rows == rows &&
            e->ldy == ldy && e->w_row == w_row) {
            e->used = ++d->clock;
            return e->prim ? e : NULL;
        }
    }
    dnnl_entry *e;
    if (d->n_cache < DNNL_CACHE) {
        e = &d->cache[d->n_cache++];
    } else { /* the least recently used */
        e = &d->cache[0];
        for (int i = 1; i < DNNL_CACHE; i++)
            if (d->cache[i].used < e->used)
                e = &d->cache[i];
        if (e->prim)
            dnnl_primitive_destroy(e->prim);
    }
    memset(e, 0, sizeof *e);
    e->f32 = f32, e->n = n, e->k = k, e->ldx = ldx, e->rows = rows, e->ldy = ldy;
    e->w_row = w_row;
    e->used = ++d->clock;
    /* src [n][k] with rows ldx apart; weights [k][rows] seen through the file's [rows][k]
     * (stride w_row bytes between rows); dst [n][rows] f32 with rows ldy apart */
    const dnnl_data_type_t dt = f32 ? dnnl_f32 : dnnl_bf16;
    const size_t es = f32 ? 4 : 2;
    const dnnl_dims_t sd = {n, k}, wd = {k, rows}, dd = {n, rows};
    const dnnl_dims_t ss = {ldx, 1}, ws = {1, (int64_t)(w_row / es)}, ds = {ldy, 1};
    if (w_row % es || dnnl_memory_desc_init_by_strides(&e->src, 2, sd, dt, ss) ||
        dnnl_memory_desc_init_by_strides(&e->wei, 2, wd, dt, ws) ||
        dnnl_memory_desc_init_by_strides(&e->dst, 2, dd, dnnl_f32, ds))
        return NULL;
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_matmul_desc_init(&md, &e->src, &e->wei, NULL, &e->dst) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &md, NULL, d->engine, NULL) != dnnl_success)
        return NULL;
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (!impl || strstr(impl, "ref") || dnnl_primitive_create(&e->prim, pd) != dnnl_success)
        e->prim = NULL;
    dnnl_primitive_desc_destroy(pd);
    return e->prim ? e : NULL;
}

static int matmul(llm_dnnl *d, int f32, float *y, int64_t ldy, const void *w, size_t w_row,
                  int64_t n_rows, const void *x, int64_t ldx, int64_t k, int64_t n, int n_threads)
{
    if (!d)
        return 0;
    dnnl_entry *e = entry(d, f32, n, k, ldx, n_rows, ldy, w_row);
    if (!e)
        return 0;
    dnnl_memory_t ms = NULL, mw = NULL, mdst = NULL;
    int ok = dnnl_memory_create(&ms, &e->src, d->engine, (void *)x) == dnnl_success &&
             dnnl_memory_create(&mw, &e->wei, d->engine, (void *)w) == dnnl_success &&
             dnnl_memory_create(&mdst, &e->dst, d->engine, y) == dnnl_success;
    if (ok) {
        /* oneDNN's OpenMP threads: as many as the pool has (its workers wait meanwhile) */
        omp_set_num_threads(n_threads);
        const dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mdst}};
        ok = dnnl_primitive_execute(e->prim, d->stream, 3, args) == dnnl_success &&
             dnnl_stream_wait(d->stream) == dnnl_success;
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(mdst);
    return ok;
}

int llm__dnnl_matmul_bf16(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                          int64_t n_rows, const void *x, int64_t k, int64_t n, int n_threads)
{
    return matmul(d, 0, y, ldy, w, w_row, n_rows, x, k, k, n, n_threads);
}

int llm__dnnl_matmul_f32(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                         int64_t n_rows, const float *x, int64_t ldx, int64_t k, int64_t n,
                         int n_threads)
{
    return matmul(d, 1, y, ldy, w, w_row, n_rows, x, ldx, k, n, n_threads);
}

int llm__dnnl_matmul_f16(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                         int64_t n_rows, const float *x, int64_t ldx, int64_t k, int64_t n,
                         int n_threads, float *panel, int64_t panel_rows)
{
    if (!d)
        return 0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += panel_rows) {
        const int64_t nr = n_rows - r0 < panel_rows ? n_rows - r0 : panel_rows;
        const char *src = (const char *)w + (size_t)r0 * w_row;
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t r = 0; r < nr; r++)
            llm__f16_to_f32_row((const llm_f16 *)(src + (size_t)r * w_row), panel + r * k, k);
        if (!matmul(d, 1, y + r0, ldy, panel, (size_t)k * sizeof(float), nr, x, ldx, k, n,
                    n_threads))
            return 0;
    }
    return 1;
}

#else /* built without oneDNN */

llm_dnnl *llm__dnnl_create(void)
{
    return NULL;
}

void llm__dnnl_free(llm_dnnl *d)
{
    (void)d;
}

int llm__dnnl_matmul_bf16(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                          int64_t n_rows, const void *x, int64_t k, int64_t n, int n_threads)
{
    (void)d, (void)y, (void)ldy, (void)w, (void)w_row, (void)n_rows, (void)x, (void)k,
        (void)n, (void)n_threads;
    return 0;
}

int llm__dnnl_matmul_f32(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                         int64_t n_rows, const float *x, int64_t ldx, int64_t k, int64_t n,
                         int n_threads)
{
    (void)d, (void)y, (void)ldy, (void)w, (void)w_row, (void)n_rows, (void)x, (void)ldx,
        (void)k, (void)n, (void)n_threads;
    return 0;
}

int llm__dnnl_matmul_f16(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                         int64_t n_rows, const float *x, int64_t ldx, int64_t k, int64_t n,
                         int n_threads, float *panel, int64_t panel_rows)
{
    (void)d, (void)y, (void)ldy, (void)w, (void)w_row, (void)n_rows, (void)x, (void)ldx,
        (void)k, (void)n, (void)n_threads, (void)panel, (void)panel_rows;
    return 0;
}

#endif
