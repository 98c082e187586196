/* cpu.c - the CPU backend: the vtable's ops as plain C over the quant kernels of
 * quants.c, split across the persistent thread pool.
 *
 * Numerics follow llama.cpp's CPU backend where that decides results: activations are
 * quantised once per matmul to the weight type's vec_dot_type and RMS norm accumulates in
 * double. The KV cache is f16; attention reads it with f32 accumulators. */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/backend.h"
#include "quants.h"
#include "onednn.h"
#include "repack.h"
#include "threadpool.h"

#define CACHE_LINE 64

struct llm_backend {
    llm_pool *pool;
    /* quantised activations of the current matmul, and their block sums */
    void *xq;
    size_t xq_cap;
    int32_t *xsum;
    size_t xsum_cap;
    int32_t *xaux; /* what the repacked kernel's fill_aux derives from the activations */
    size_t xaux_cap;
    float *xf; /* the activations widened back to f32, for the float tiles (gemm_f32_act) */
    size_t xf_cap;
    float *wf; /* a panel of F16 weight rows widened to f32, for oneDNN */
    size_t wf_cap;
    llm_dnnl *dnnl;     /* oneDNN for float prompts (onednn.h), made on first use */
    int dnnl_tried;
    int batch_invariant; /* LLM_CPU_BATCH_INVARIANT=1: never oneDNN */
    llm_status err;
};

static void *aligned_alloc_bytes(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, CACHE_LINE, n ? n : CACHE_LINE) != 0)
        return NULL;
    return p;
}

static llm_status cpu_create(const llm_backend_config *cfg, llm_backend **out)
{
    *out = NULL;
    llm__quant_init();
    llm_backend *be = llm__calloc(1, sizeof *be);
    if (!be)
        return llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory");
    int n = cfg && cfg->n_threads > 0 ? cfg->n_threads : llm__cpu_cores();
    be->pool = llm__pool_create(n);
    if (!be->pool) {
        llm__free(be);
        return llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: cannot start %d threads", n);
    }
    const char *inv = getenv("LLM_CPU_BATCH_INVARIANT");
    be->batch_invariant = inv && *inv && strcmp(inv, "0") != 0;
    *out = be;
    return LLM_OK;
}

static void cpu_destroy(llm_backend *be)
{
    if (!be)
        return;
    llm__pool_destroy(be->pool);
    free(be->xq);
    free(be->xsum);
    free(be->xaux);
    free(be->xf);
    free(be->wf);
    llm__dnnl_free(be->dnnl);
    llm__free(be);
}

static llm_status cpu_set_threads(llm_backend *be, int32_t n)
{
    if (n < 1 || n > 1024)
        return llm__fail(LLM_ERR_INVALID_ARG, "cpu backend: n_threads %d out of range", n);
    if (n == llm__pool_size(be->pool))
        return LLM_OK;
    llm_pool *p = llm__pool_create(n);
    if (!p)
        return llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: cannot start %d threads", n);
    llm__pool_destroy(be->pool);
    be->pool = p;
    return LLM_OK;
}

static void *cpu_alloc(llm_backend *be, size_t n)
{
    (void)be;
    return aligned_alloc_bytes(n);
}

static void cpu_free(llm_backend *be, void *p)
{
    (void)be;
    free(p);
}

static void cpu_upload(llm_backend *be, void *dst, const void *src, size_t n)
{
    (void)be;
    if (n)
        memcpy(dst, src, n);
}

static llm_status cpu_download(llm_backend *be, void *dst, const void *src, size_t n)
{
    (void)be;
    if (n)
        memcpy(dst, src, n);
    return LLM_OK;
}

static int cpu_supports_dtype(llm_backend *be, uint32_t t)
{
    (void)be;
    if (t >= LLM_DT_COUNT)
        return 0;
    const llm_quant_traits *tr = &llm__quant_best[t];
    return tr->to_float && tr->vec_dot;
}

/* A weight repacked into groups of 8 interleaved rows (repack.h), kept in w->extra. */
typedef struct cpu_weight {
    const llm_repack_traits *tr;
    size_t group_bytes;
    void *data;
} cpu_weight;

static const llm_repack_traits *repack_traits(const llm_tensor *w)
{
    const char *feat = llm__cpu_features();
    const int have_avx2 = strncmp(feat, "avx2", 4) == 0;
    const int have_neon = strncmp(feat, "neon", 4) == 0;
    if ((!have_avx2 && !have_neon) || getenv("LLM_CPU_NO_REPACK"))
        return NULL;
    if (w->ne[1] < REPACK_ROWS || w->ne[1] % REPACK_ROWS || w->ne[0] % 32)
        return NULL;
    /* expert matrices go through matmul_id, which reads the file's layout */
    if (strstr(w->name, "_exps"))
        return NULL;
#if defined(__aarch64__)
    /* 64-bit ARM: the dotprod kernels give the plain ones' bits */
    if (have_neon)
        return strstr(feat, "dotprod") ? llm__repack_neon_dotprod_traits(w->dtype)
                                       : llm__repack_neon_traits(w->dtype);
#endif
    /* the VNNI kernels give the AVX2 ones' bits */
    const llm_repack_traits *vnni = strstr(llm__cpu_features(), "avx512vnni")
                                        ? llm__repack_avx512vnni_traits(w->dtype)
                                        : NULL;
    return vnni ? vnni : llm__repack_avx2_traits(w->dtype);
}

typedef struct pack_job {
    const llm_tensor *w;
    cpu_weight *cw;
    atomic_long next;
} pack_job;

static void pack_groups(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    pack_job *j = arg;
    const int64_t groups = j->w->ne[1] / REPACK_ROWS;
    for (;;) {
        const int64_t g = atomic_fetch_add(&j->next, 1);
        if (g >= groups)
            break;
        j->cw->tr->pack((char *)j->cw->data + (size_t)g * j->cw->group_bytes,
                        (const char *)j->w->data + (size_t)g * REPACK_ROWS * j->w->row_bytes,
                        j->w->row_bytes, j->w->ne[0]);
    }
}

static llm_status cpu_prepare_weight(llm_backend *be, llm_tensor *w)
{
    if (!cpu_supports_dtype(be, w->dtype)) {
        const llm_dtype_info *info = llm__dtype_info(w->dtype);
        return llm__fail(LLM_ERR_UNSUPPORTED, "cpu backend: tensor '%s' has type %s (%u), "
                         "which the CPU backend does not support", w->name,
                         info ? info->name : "unknown", w->dtype);
    }
    const llm_repack_traits *tr = repack_traits(w);
    if (!tr)
        return LLM_OK;
    cpu_weight *cw = llm__calloc(1, sizeof *cw);
    if (!cw)
        return llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory for '%s'", w->name);
    cw->tr = tr;
    cw->group_bytes = tr->group_bytes(w->ne[0]);
    cw->data = aligned_alloc_bytes(cw->group_bytes * (size_t)(w->ne[1] / REPACK_ROWS));
    if (!cw->data) {
        llm__free(cw);
        return llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory repacking '%s'",
                         w->name);
    }
    pack_job j = {.w = w, .cw = cw};
    atomic_init(&j.next, 0);
    llm__pool_run(be->pool, pack_groups, &j);
    w->extra = cw;
    return LLM_OK;
}

static void cpu_release_weight(llm_backend *be, llm_tensor *w)
{
    (void)be;
    cpu_weight *cw = w->extra;
    if (cw) {
        free(cw->data);
        llm__free(cw);
    }
    w->extra = NULL;
}

static int ensure_buf(void **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 1;
    void *p = aligned_alloc_bytes(need);
    if (!p)
        return 0;
    free(*buf);
    *buf = p;
    *cap = need;
    return 1;
}

/* ---- matmul ------------------------------------------------------------------------ */

typedef struct matmul_job {
    float *y;
    int64_t ldy;
    const llm_tensor *w;
    const float *x;
    int64_t ldx;
    int64_t n;
    const void *xq;     /* activations in the vec_dot type */
    size_t xq_row;      /* bytes per activation row */
    llm_vec_dot_fn dot;
    llm_gemm_fn gemm;   /* NULL, or tiles of rows x tokens when n >= 2 */
    llm_from_float_fn quant;
    const cpu_weight *cw; /* repacked weight, or NULL */
    int32_t *xsum;      /* activation block sums (repacked kernels that need them) */
    int32_t *xaux;      /* the repacked kernel's fill_aux of each activation row, or NULL */
    float *xf;          /* NULL, or [n][k]: the quantised rows widened (gemm_f32_act) */
    llm_to_float_fn widen;
    int64_t chunk;      /* rows per chunk, a multiple of 16 */
    int64_t own;        /* chunks each thread takes first without the atomic (see below) */
    atomic_long next;   /* next row chunk to take */
} matmul_job;

static void quantize_rows(void *arg, int ith, int nth)
{
    matmul_job *j = arg;
    const int64_t nb = j->w->ne[0] / 32;
    for (int64_t r = ith; r < j->n; r += nth) {
        j->quant(j->x + r * j->ldx, (char *)j->xq + (size_t)r * j->xq_row, j->w->ne[0]);
        const int32_t *sums = NULL;
        if (j->xsum) {
            llm__q8_0_block_sums((char *)j->xq + (size_t)r * j->xq_row, nb, j->xsum + r * nb);
            sums = j->xsum + r * nb;
        }
        if (j->xaux)
            j->cw->tr->fill_aux((char *)j->xq + (size_t)r * j->xq_row, sums, j->w->ne[0],
                                j->xaux + r * REPACK_AUX_PER_BLOCK * nb);
        if (j->xf)
            j->widen((char *)j->xq + (size_t)r * j->xq_row, j->xf + r * j->w->ne[0], j->w->ne[0]);
    }
}

#define ROWS_PER_CHUNK 16
#define TOKENS_PER_TILE 32

/* rows [r0, r1) of the job's product */
static void matmul_chunk(const matmul_job *j, int64_t r0, int64_t r1)
{
    const int64_t k = j->w->ne[0];
    if (j->cw) {
        /* whole groups of 8 rows: rows and the chunk are multiples of 8 */
        const int64_t nb = k / 32;
        for (int64_t t0 = 0; t0 < j->n; t0 += TOKENS_PER_TILE) {
            int64_t t1 = t0 + TOKENS_PER_TILE < j->n ? t0 + TOKENS_PER_TILE : j->n;
            j->cw->tr->gemm(k, j->y + t0 * j->ldy + r0, (size_t)j->ldy,
                            (const char *)j->cw->data + (size_t)(r0 / REPACK_ROWS) *
                                                            j->cw->group_bytes,
                            j->cw->group_bytes, (r1 - r0) / REPACK_ROWS,
                            (const char *)j->xq + (size_t)t0 * j->xq_row, j->xq_row,
                            j->xsum ? j->xsum + t0 * nb : NULL,
                            j->xaux ? j->xaux + t0 * REPACK_AUX_PER_BLOCK * nb : NULL, t1 - t0);
        }
        return;
    }
    const char *wd = j->w->data;
    const size_t wrow = j->w->row_bytes;
    /* a weight row is reused across a tile of tokens while it sits in L1 */
    for (int64_t t0 = 0; t0 < j->n; t0 += TOKENS_PER_TILE) {
        int64_t t1 = t0 + TOKENS_PER_TILE < j->n ? t0 + TOKENS_PER_TILE : j->n;
        if (j->gemm) {
            j->gemm(k, j->y + t0 * j->ldy + r0, (size_t)j->ldy, wd + (size_t)r0 * wrow, wrow,
                    (const char *)j->xq + (size_t)t0 * j->xq_row, j->xq_row, r1 - r0, t1 - t0);
            continue;
        }
        for (int64_t r = r0; r < r1; r++) {
            const void *wr = wd + (size_t)r * wrow;
            for (int64_t t = t0; t < t1; t++) {
                float s;
                j->dot(k, &s, wr, (const char *)j->xq + (size_t)t * j->xq_row);
                j->y[t * j->ldy + r] = s;
            }
        }
    }
}

/* Thread ith first takes its own j->own consecutive chunks, then chunks from the shared
 * counter until none are left: the counter balances what the threads' speeds leave
 * uneven, and its atomic (a cache line both cores write) is paid for fewer chunks. */
static void matmul_rows(void *arg, int ith, int nth)
{
    (void)nth;
    matmul_job *j = arg;
    const int64_t rows = j->w->ne[1];
    for (int64_t c = ith * j->own; c < (ith + 1) * j->own; c++)
        matmul_chunk(j, c * j->chunk, (c + 1) * j->chunk < rows ? (c + 1) * j->chunk : rows);
    for (;;) {
        const int64_t r0 = atomic_fetch_add(&j->next, j->chunk);
        if (r0 >= rows)
            break;
        matmul_chunk(j, r0, r0 + j->chunk < rows ? r0 + j->chunk : rows);
    }
}

typedef void (*range_fn)(const void *arg, int64_t i0, int64_t i1);
static void run_range(llm_backend *be, range_fn fn, const void *arg, int64_t n, int64_t align,
                      int64_t elems);

typedef struct to_bf16_job {
    const float *x;
    int64_t ldx, k;
    llm_bf16 *y;
} to_bf16_job;

static void to_bf16_range(const void *arg, int64_t t0, int64_t t1)
{
    const to_bf16_job *j = arg;
    for (int64_t t = t0; t < t1; t++)
        llm__quant_best[LLM_DT_BF16].from_float(j->x + t * j->ldx, j->y + t * j->k, j->k);
}

/* Activations rounded to f16 (the F16 dot's activation type) and widened back */
typedef struct round_f16_job {
    const float *x;
    int64_t ldx, k;
    llm_f16 *h; /* [n][k] halves */
    float *y;   /* [n][k] */
} round_f16_job;

static void round_f16_range(const void *arg, int64_t t0, int64_t t1)
{
    const round_f16_job *j = arg;
    for (int64_t t = t0; t < t1; t++) {
        llm__f32_to_f16_row(j->x + t * j->ldx, j->h + t * j->k, j->k);
        llm__f16_to_f32_row(j->h + t * j->k, j->y + t * j->k, j->k);
    }
}

/* F16 rows per oneDNN call: panels of at most this many bytes as f32 */
#ifndef DNNL_F16_PANEL_BYTES
#define DNNL_F16_PANEL_BYTES (8u << 20)
#endif

/* A BF16, F32 or F16 prompt through oneDNN (onednn.h); 0 when it declines. F16 weights go
 * as f32 (oneDNN here has no f16 matmul), widened a panel of rows at a time, with the
 * activations rounded to f16 as the F16 dot rounds them. */
static int matmul_dnnl(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w,
                       const float *x, int64_t ldx, int64_t n)
{
    if (!be->dnnl_tried) {
        be->dnnl = llm__dnnl_create();
        be->dnnl_tried = 1;
    }
    if (!be->dnnl)
        return 0;
    const int64_t k = w->ne[0], rows = w->ne[1];
    const int threads = llm__pool_size(be->pool);
    if (w->dtype == LLM_DT_F32)
        return llm__dnnl_matmul_f32(be->dnnl, y, ldy, w->data, w->row_bytes, rows, x, ldx, k, n,
                                    threads);
    if (w->dtype == LLM_DT_F16) {
        int64_t panel = (int64_t)(DNNL_F16_PANEL_BYTES / ((size_t)k * sizeof(float))) / 16 * 16;
        panel = panel < 16 ? 16 : panel > rows ? rows : panel;
        if (!ensure_buf(&be->xq, &be->xq_cap, (size_t)(n * k) * sizeof(llm_f16)) ||
            !ensure_buf((void **)&be->xf, &be->xf_cap, (size_t)(n * k) * sizeof(float)) ||
            !ensure_buf((void **)&be->wf, &be->wf_cap, (size_t)(panel * k) * sizeof(float)))
            return 0;
        const round_f16_job rj = {x, ldx, k, be->xq, be->xf};
        run_range(be, round_f16_range, &rj, n, 1, n * k);
        return llm__dnnl_matmul_f16(be->dnnl, y, ldy, w->data, w->row_bytes, rows, be->xf, k, k,
                                    n, threads, be->wf, panel);
    }
    if (!ensure_buf(&be->xq, &be->xq_cap, (size_t)(n * k) * sizeof(llm_bf16)))
        return 0;
    const to_bf16_job cj = {x, ldx, k, be->xq};
    run_range(be, to_bf16_range, &cj, n, 1, n * k);
    return llm__dnnl_matmul_bf16(be->dnnl, y, ldy, w->data, w->row_bytes, rows, be->xq, k, n,
                                 threads);
}

static void cpu_matmul(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w,
                       const float *x, int64_t ldx, int64_t n)
{
    /* float prompts: oneDNN's matmul (AMX, BF16 dots, its blocked f32 GEMM), faster than
     * the tiles, where the batch need not be invariant */
    if ((w->dtype == LLM_DT_BF16 || w->dtype == LLM_DT_F32 || w->dtype == LLM_DT_F16) &&
        n >= LLM_DNNL_MIN_TOKENS && !be->batch_invariant && matmul_dnnl(be, y, ldy, w, x, ldx, n))
        return;
    const llm_quant_traits *tr = &llm__quant_best[w->dtype];
    /* one token (generation) keeps the per-row path where a tile kernel gains nothing there
     * (the quantised types); the float types' tiles serve it too (gemm_one) */
    matmul_job j = {.y = y, .ldy = ldy, .w = w, .x = x, .ldx = ldx, .n = n, .dot = tr->vec_dot,
                    .gemm = n >= 2 || tr->gemm_one ? tr->gemm : NULL, .cw = w->extra};
    /* the float tiles take whole 32-element steps only (their dots' tails are not mirrored) */
    if (tr->gemm_f32_act && w->ne[0] % 32)
        j.gemm = NULL;
    /* A chunk's rows all meet one tile of activations while it sits in L1: larger chunks
     * for prompts reuse it more, as long as every thread still gets about four chunks.
     * Chunks are whole pairs of 8-row groups (the AVX-512 kernels take two at once). */
    j.chunk = ROWS_PER_CHUNK;
    if (n < 8) {
        /* few tokens: each chunk costs an atomic on a line both cores write; a large
         * matrix (an output matrix of 262144 rows) in about 16 chunks per thread instead
         * of 16 rows each (perf: the atomic was 5-7% of Gemma 3's generation) */
        const int64_t per = w->ne[1] / (16 * llm__pool_size(be->pool)) / 16 * 16;
        j.chunk = per > ROWS_PER_CHUNK ? per : ROWS_PER_CHUNK;
        /* three quarters of the chunks handed out in advance, the rest through the
         * counter (perf: its atomic was 3.4% of SmolLM2's generation) */
        const int64_t chunks = (w->ne[1] + j.chunk - 1) / j.chunk;
        j.own = chunks * 3 / 4 / llm__pool_size(be->pool);
    } else {
        const int64_t per = w->ne[1] / (4 * llm__pool_size(be->pool)) / 16 * 16;
        j.chunk = per > 64 ? 64 : per > ROWS_PER_CHUNK ? per : ROWS_PER_CHUNK;
    }
    atomic_init(&j.next, j.own * llm__pool_size(be->pool) * j.chunk);
    if (tr->vec_dot_type == LLM_DT_F32) {
        j.xq = x;
        j.xq_row = (size_t)ldx * sizeof(float);
    } else {
        j.quant = llm__quant_best[tr->vec_dot_type].from_float;
        j.xq_row = llm__dtype_row_size(tr->vec_dot_type, w->ne[0]);
        if (!ensure_buf(&be->xq, &be->xq_cap, j.xq_row * (size_t)n)) {
            be->err = llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory in matmul");
            return;
        }
        j.xq = be->xq;
        if (j.cw && j.cw->tr->needs_ysum) {
            const size_t need = (size_t)n * (size_t)(w->ne[0] / 32) * sizeof(int32_t);
            if (!ensure_buf((void **)&be->xsum, &be->xsum_cap, need)) {
                be->err = llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory in matmul");
                return;
            }
            j.xsum = be->xsum;
        }
        if (j.cw && j.cw->tr->fill_aux) {
            const size_t need =
                (size_t)n * (size_t)(REPACK_AUX_PER_BLOCK * w->ne[0] / 32) * sizeof(int32_t);
            if (!ensure_buf((void **)&be->xaux, &be->xaux_cap, need)) {
                be->err = llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory in matmul");
                return;
            }
            j.xaux = be->xaux;
        }
        if (j.gemm && tr->gemm_f32_act) {
            /* F16 / BF16 weights: the tiles read the rounded activations as f32, widened
             * once here instead of in every tile */
            const size_t need = (size_t)n * (size_t)w->ne[0] * sizeof(float);
            if (!ensure_buf((void **)&be->xf, &be->xf_cap, need)) {
                be->err = llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory in matmul");
                return;
            }
            j.xf = be->xf;
            j.widen = llm__quant_best[tr->vec_dot_type].to_float;
        }
        if (n * w->ne[0] < 65536)
            quantize_rows(&j, 0, 1);
        else
            llm__pool_run(be->pool, quantize_rows, &j);
        if (j.xf) {
            j.xq = j.xf;
            j.xq_row = (size_t)w->ne[0] * sizeof(float);
        }
    }
    llm__pool_run(be->pool, matmul_rows, &j);
}

/* ---- small ops ----------------------------------------------------------------------- */

static void cpu_get_rows(llm_backend *be, float *y, const llm_tensor *w, const int32_t *ids,
                         int64_t n)
{
    (void)be;
    llm_to_float_fn to_float = llm__quant_best[w->dtype].to_float;
    for (int64_t i = 0; i < n; i++)
        to_float((const char *)w->data + (size_t)ids[i] * w->row_bytes, y + i * w->ne[0],
                 w->ne[0]);
}

/* The small ops run on the calling thread below this many elements (a pool round, publish
 * and barrier, costs more than it saves there) and split over the pool above it: a prompt's
 * norms, rope, GLU and adds would otherwise leave every other thread waiting. Each item
 * (row, token, element) is computed as on one thread, so the split never changes a bit. */
#define PAR_MIN_ELEMS 16384

typedef struct range_job {
    range_fn fn;
    const void *arg;
    int64_t n;     /* items */
    int64_t align; /* split points are multiples of this */
} range_job;

static void range_worker(void *p, int ith, int nth)
{
    const range_job *j = p;
    const int64_t i0 = j->n * ith / nth / j->align * j->align;
    const int64_t i1 = ith + 1 == nth ? j->n : j->n * (ith + 1) / nth / j->align * j->align;
    if (i1 > i0)
        j->fn(j->arg, i0, i1);
}

/* fn over items [0, n), which are elems elements in all */
static void run_range(llm_backend *be, range_fn fn, const void *arg, int64_t n, int64_t align,
                      int64_t elems)
{
    if (elems < PAR_MIN_ELEMS || llm__pool_size(be->pool) < 2) {
        fn(arg, 0, n);
        return;
    }
    range_job j = {fn, arg, n, align};
    llm__pool_run(be->pool, range_worker, &j);
}

typedef struct rms_norm_args {
    float *y;
    const float *x, *w;
    int64_t dim;
    float eps;
} rms_norm_args;

static void rms_norm_range(const void *arg, int64_t r0, int64_t r1)
{
    const rms_norm_args *a = arg;
    const int64_t dim = a->dim;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = a->x + r * dim;
        float *yr = a->y + r * dim;
        double sum = 0.0;
        for (int64_t i = 0; i < dim; i++)
            sum += (double)(xr[i] * xr[i]);
        const float mean = (float)(sum / (double)dim);
        const float scale = 1.0f / sqrtf(mean + a->eps);
        if (a->w) {
            for (int64_t i = 0; i < dim; i++)
                yr[i] = (xr[i] * scale) * a->w[i];
        } else {
            for (int64_t i = 0; i < dim; i++)
                yr[i] = xr[i] * scale;
        }
    }
}

static void cpu_rms_norm(llm_backend *be, float *y, const float *x, const llm_tensor *wt,
                         int64_t n_rows, int64_t dim, float eps)
{
    const rms_norm_args a = {y, x, wt ? wt->data : NULL, dim, eps};
    run_range(be, rms_norm_range, &a, n_rows, 1, n_rows * dim);
}

typedef struct rope_args {
    float *x;
    const int32_t *pos;
    const float *freq_factors;
    int32_t n_heads, head_dim, n_rot;
    float theta_scale, freq_scale;
    int mode;
} rope_args;

static void rope_range(const void *arg, int64_t t0, int64_t t1)
{
    const rope_args *a = arg;
    float cache[1024]; /* cos, sin pairs for n_rot <= 512 */
    const int32_t n_rot = a->n_rot;
    for (int64_t t = t0; t < t1; t++) {
        /* the angle table is built as llama.cpp builds it: a running product in float */
        float theta = (float)a->pos[t];
        for (int32_t i = 0; i < n_rot; i += 2) {
            const float ff = a->freq_factors ? a->freq_factors[i / 2] : 1.0f;
            const float th = a->freq_scale * (theta / ff);
            cache[i] = cosf(th);
            cache[i + 1] = sinf(th);
            theta *= a->theta_scale;
        }
        for (int32_t h = 0; h < a->n_heads; h++) {
            float *v = a->x + (t * a->n_heads + h) * a->head_dim;
            if (a->mode == LLM_ROPE_NEOX) {
                const int32_t half = n_rot / 2;
                for (int32_t i = 0; i < half; i++) {
                    const float c = cache[2 * i], s = cache[2 * i + 1];
                    const float x0 = v[i], x1 = v[i + half];
                    v[i] = x0 * c - x1 * s;
                    v[i + half] = x0 * s + x1 * c;
                }
            } else {
                for (int32_t i = 0; i < n_rot; i += 2) {
                    const float c = cache[i], s = cache[i + 1];
                    const float x0 = v[i], x1 = v[i + 1];
                    v[i] = x0 * c - x1 * s;
                    v[i + 1] = x0 * s + x1 * c;
                }
            }
        }
    }
}

static void cpu_rope(llm_backend *be, float *x, int64_t n_tokens, int32_t n_heads,
                     int32_t head_dim, int32_t n_rot, const int32_t *pos, float freq_base,
                     float freq_scale, const llm_tensor *ff_t, int mode)
{
    const rope_args a = {.x = x,
                         .pos = pos,
                         .freq_factors = ff_t ? ff_t->data : NULL,
                         .n_heads = n_heads,
                         .head_dim = head_dim,
                         .n_rot = n_rot,
                         .theta_scale = powf(freq_base, -2.0f / (float)n_rot),
                         .freq_scale = freq_scale,
                         .mode = mode};
    run_range(be, rope_range, &a, n_tokens, 1, n_tokens * n_heads * head_dim);
}

/* GELU (tanh form), looked up through an f16 table as llama.cpp's CPU backend does. */
static float gelu_table[1 << 16];
static atomic_int gelu_ready;

static void gelu_init(void)
{
    if (atomic_load(&gelu_ready))
        return;
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int i = 0; i < (1 << 16); i++) {
        float x = llm__f16_to_f32((llm_f16)i);
        float g = 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
        gelu_table[i] = llm__f16_to_f32(llm__f32_to_f16(g));
    }
    atomic_store(&gelu_ready, 1);
}

/* Element-wise ops over [i0, i1): y, a, b and one float parameter. */
typedef struct elem_args {
    float *y;
    const float *a, *b;
    float f;
    int act;
} elem_args;

#define GLU_CHUNK 256

static void glu_range(const void *arg, int64_t i0, int64_t i1)
{
    const elem_args *e = arg;
    if (e->act == LLM_ACT_GELU_TANH) {
        /* the gate's f16 keys a chunk at a time through the row converter (F16C where
         * there is one): the same round-to-nearest-even as llm__f32_to_f16 */
        llm_f16 h[GLU_CHUNK];
        for (int64_t c0 = i0; c0 < i1; c0 += GLU_CHUNK) {
            const int64_t m = i1 - c0 < GLU_CHUNK ? i1 - c0 : GLU_CHUNK;
            const float *g = e->a + c0;
            llm__f32_to_f16_row(g, h, m);
            for (int64_t i = 0; i < m; i++) {
                const float x = g[i];
                const float v = x <= -10.0f ? 0.0f : x >= 10.0f ? x : gelu_table[h[i]];
                e->y[c0 + i] = v * e->b[c0 + i];
            }
        }
    } else {
        /* expf of a chunk at a time through llm__exp_row (vectorised, equal to expf to the
         * bit), then the same float steps per element */
        float t[GLU_CHUNK], ex[GLU_CHUNK];
        for (int64_t c0 = i0; c0 < i1; c0 += GLU_CHUNK) {
            const int64_t m = i1 - c0 < GLU_CHUNK ? i1 - c0 : GLU_CHUNK;
            const float *g = e->a + c0;
            for (int64_t i = 0; i < m; i++)
                t[i] = -g[i];
            llm__exp_row(m, t, ex);
            for (int64_t i = 0; i < m; i++) {
                /* llm__exp_row serves arguments up to 88 (no overflow handling) */
                const float x = t[i] > 88.0f ? expf(t[i]) : ex[i];
                e->y[c0 + i] = (g[i] / (1.0f + x)) * e->b[c0 + i];
            }
        }
    }
}

static void cpu_glu(llm_backend *be, float *y, const float *gate, const float *up, int64_t n,
                    int act)
{
    if (act == LLM_ACT_GELU_TANH)
        gelu_init();
    const elem_args e = {.y = y, .a = gate, .b = up, .act = act};
    run_range(be, glu_range, &e, n, 64, n);
}

static void cpu_copy_rows(llm_backend *be, float *y, const float *x, int64_t dim,
                          const int32_t *rows, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        memcpy(y + i * dim, x + (int64_t)rows[i] * dim, (size_t)dim * sizeof(float));
}

static void add_range(const void *arg, int64_t i0, int64_t i1)
{
    const elem_args *e = arg;
    for (int64_t i = i0; i < i1; i++)
        e->y[i] = e->a[i] + e->b[i];
}

static void cpu_add(llm_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    const elem_args e = {.y = y, .a = a, .b = b};
    run_range(be, add_range, &e, n, 64, n);
}

static void scale_range(const void *arg, int64_t i0, int64_t i1)
{
    const elem_args *e = arg;
    for (int64_t i = i0; i < i1; i++)
        e->y[i] = e->a[i] * e->f;
}

static void cpu_scale(llm_backend *be, float *y, const float *x, float s, int64_t n)
{
    const elem_args e = {.y = y, .a = x, .f = s};
    run_range(be, scale_range, &e, n, 64, n);
}

static void cpu_add_bias(llm_backend *be, float *y, const llm_tensor *b, int64_t n_rows)
{
    (void)be;
    const float *bv = b->data;
    const int64_t dim = b->ne[0];
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t i = 0; i < dim; i++)
            y[r * dim + i] += bv[i];
}

/* scale, tanh, scale: the three ops llama.cpp's graph uses, in its order */
static void softcap_range(const void *arg, int64_t i0, int64_t i1)
{
    const elem_args *e = arg;
    const float inv = 1.0f / e->f;
    for (int64_t i = i0; i < i1; i++)
        e->y[i] = tanhf(e->a[i] * inv) * e->f;
}

static void cpu_softcap(llm_backend *be, float *y, const float *x, float cap, int64_t n)
{
    const elem_args e = {.y = y, .a = x, .f = cap};
    /* tanhf costs tens of additions: split from a sixteenth of the usual size */
    run_range(be, softcap_range, &e, n, 64, n * 16);
}

/* ---- mixture of experts -------------------------------------------------------------- */

static void cpu_moe_route(llm_backend *be, int32_t *ids, float *weights, const float *logits,
                          int64_t n, int32_t n_expert, int32_t k, int norm)
{
    (void)be;
    float p[1024]; /* n_expert <= 1024, checked at load */
    for (int64_t t = 0; t < n; t++) {
        const float *l = logits + t * n_expert;
        float mx = -INFINITY;
        for (int32_t e = 0; e < n_expert; e++)
            mx = l[e] > mx ? l[e] : mx;
        double sum = 0.0;
        for (int32_t e = 0; e < n_expert; e++) {
            p[e] = expf(l[e] - mx);
            sum += (double)p[e];
        }
        const float inv = (float)(1.0 / sum);
        for (int32_t e = 0; e < n_expert; e++)
            p[e] *= inv;
        /* top k by selection; ties go to the lower expert id */
        int32_t *id = ids + t * k;
        float *w = weights + t * k;
        for (int32_t j = 0; j < k; j++) {
            int32_t best = -1;
            for (int32_t e = 0; e < n_expert; e++) {
                int taken = 0;
                for (int32_t i = 0; i < j; i++)
                    taken |= id[i] == e;
                if (!taken && (best < 0 || p[e] > p[best]))
                    best = e;
            }
            id[j] = best;
            w[j] = p[best];
        }
        if (norm) {
            double ws = 0.0;
            for (int32_t j = 0; j < k; j++)
                ws += (double)w[j];
            float fs = (float)ws;
            fs = fs < 6.103515625e-5f ? 6.103515625e-5f : fs; /* the smallest normal f16 */
            for (int32_t j = 0; j < k; j++)
                w[j] /= fs;
        }
    }
}

typedef struct matmul_id_job {
    float *y;
    const llm_tensor *w;
    int64_t rows;        /* per expert */
    const int32_t *ids;
    int32_t k;
    int64_t n;
    const char *xq;      /* activation rows in the vec_dot type (or f32) */
    size_t xq_row;
    int per_choice;      /* xq holds one row per (token, choice), else one per token */
    llm_vec_dot_fn dot;
    int64_t chunks;      /* per expert */
    atomic_long next;
} matmul_id_job;

/* Work items are (expert, chunk of its rows); each runs over the tokens that chose it, so
 * an expert's rows are read once per matmul and unchosen experts never. */
static void matmul_id_rows(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    matmul_id_job *j = arg;
    const int64_t kk = j->w->ne[0], items = (int64_t)j->w->ne[1] / j->rows * j->chunks;
    for (;;) {
        const int64_t it = atomic_fetch_add(&j->next, 1);
        if (it >= items)
            break;
        const int32_t e = (int32_t)(it / j->chunks);
        const int64_t r0 = it % j->chunks * ROWS_PER_CHUNK;
        const int64_t r1 = r0 + ROWS_PER_CHUNK < j->rows ? r0 + ROWS_PER_CHUNK : j->rows;
        for (int64_t c = 0; c < j->n * j->k; c++) {
            if (j->ids[c] != e)
                continue;
            const char *xr = j->xq + (size_t)(j->per_choice ? c : c / j->k) * j->xq_row;
            for (int64_t r = r0; r < r1; r++) {
                const char *wr = (const char *)j->w->data + (size_t)(e * j->rows + r) *
                                 j->w->row_bytes;
                j->dot(kk, &j->y[c * j->rows + r], wr, xr);
            }
        }
    }
}

static void cpu_matmul_id(llm_backend *be, float *y, const llm_tensor *w, int32_t n_expert,
                          const float *x, int64_t ldx, int64_t ldx_k, const int32_t *ids,
                          int32_t k, int64_t n)
{
    const llm_quant_traits *tr = &llm__quant_best[w->dtype];
    const int64_t K = w->ne[0];
    matmul_id_job j = {.y = y, .w = w, .rows = w->ne[1] / n_expert, .ids = ids, .k = k,
                       .n = n, .per_choice = ldx_k != 0, .dot = tr->vec_dot};
    j.chunks = (j.rows + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
    atomic_init(&j.next, 0);
    const int64_t n_rows = j.per_choice ? n * k : n;
    const int is_f32 = tr->vec_dot_type == LLM_DT_F32;
    j.xq_row = is_f32 ? (size_t)K * sizeof(float) : llm__dtype_row_size(tr->vec_dot_type, K);
    if (!ensure_buf(&be->xq, &be->xq_cap, j.xq_row * (size_t)n_rows)) {
        be->err = llm__fail(LLM_ERR_NO_MEMORY, "cpu backend: out of memory in matmul_id");
        return;
    }
    /* the activation rows, packed and in the weight's vec_dot type, once per matmul */
    for (int64_t i = 0; i < n_rows; i++) {
        const float *xr = j.per_choice ? x + i / k * ldx + i % k * ldx_k : x + i * ldx;
        char *dst = (char *)be->xq + (size_t)i * j.xq_row;
        if (is_f32)
            memcpy(dst, xr, (size_t)K * sizeof(float));
        else
            llm__quant_best[tr->vec_dot_type].from_float(xr, dst, K);
    }
    j.xq = be->xq;
    llm__pool_run(be->pool, matmul_id_rows, &j);
}

static void cpu_moe_combine(llm_backend *be, float *y, const float *x, const float *weights,
                            int64_t n, int32_t k, int64_t dim)
{
    (void)be;
    for (int64_t t = 0; t < n; t++) {
        float *yr = y + t * dim;
        for (int32_t j = 0; j < k; j++) {
            const float *xr = x + (t * k + j) * dim;
            const float w = weights[t * k + j];
            for (int64_t i = 0; i < dim; i++)
                yr[i] = j == 0 ? xr[i] * w : yr[i] + xr[i] * w;
        }
    }
}

/* ---- KV cache and attention -------------------------------------------------------- */

/* The cache holds one row of n_head_kv * head_dim elements per token slot, in f16, bf16
 * or q8_0 (blocks of 32 along the row, so a head of a multiple of 32 is whole blocks). */
static size_t kv_row_bytes(const llm_kv_layer *kv)
{
    return llm__dtype_row_size(kv->dtype, (int64_t)kv->n_head_kv * kv->head_dim);
}

static void kv_store_row(uint32_t dtype, const float *x, void *dst, int64_t n)
{
    if (dtype == LLM_DT_F16) {
        llm__f32_to_f16_row(x, dst, n);
    } else if (dtype == LLM_DT_BF16) {
        llm_bf16 *y = dst;
        for (int64_t i = 0; i < n; i++)
            y[i] = llm__f32_to_bf16(x[i]);
    } else {
        llm__quant_ref[LLM_DT_Q8_0].from_float(x, dst, n);
    }
}

typedef struct kv_write_args {
    const llm_kv_layer *kv;
    const float *k, *v;
    const int32_t *slots;
} kv_write_args;

static void kv_write_range(const void *arg, int64_t t0, int64_t t1)
{
    const kv_write_args *a = arg;
    const llm_kv_layer *kv = a->kv;
    const int64_t row = (int64_t)kv->n_head_kv * kv->head_dim;
    const size_t rb = kv_row_bytes(kv);
    for (int64_t i = t0; i < t1; i++) {
        kv_store_row(kv->dtype, a->k + i * row, (char *)kv->k + (size_t)a->slots[i] * rb, row);
        kv_store_row(kv->dtype, a->v + i * row, (char *)kv->v + (size_t)a->slots[i] * rb, row);
    }
}

static void cpu_kv_write(llm_backend *be, const llm_kv_layer *kv, const float *k,
                         const float *v, const int32_t *slots, int64_t n_tokens)
{
    const kv_write_args a = {kv, k, v, slots};
    run_range(be, kv_write_range, &a, n_tokens, 1,
              2 * n_tokens * (int64_t)kv->n_head_kv * kv->head_dim);
}

static void cpu_kv_copy_block(llm_backend *be, const llm_kv_layer *kv, int32_t block_size,
                              int32_t dst, int32_t src)
{
    (void)be;
    const size_t bytes = (size_t)block_size * kv_row_bytes(kv);
    memcpy((char *)kv->k + (size_t)dst * bytes, (char *)kv->k + (size_t)src * bytes, bytes);
    memcpy((char *)kv->v + (size_t)dst * bytes, (char *)kv->v + (size_t)src * bytes, bytes);
}

/* q·k and acc += a·v over one head of a bf16 or q8_0 cache row (f16 has SIMD kernels) */
static float dot_f32_bf16(int64_t n, const float *x, const void *y)
{
    const llm_bf16 *b = y;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * llm__bf16_to_f32(b[i]);
    return s;
}

static void axpy_bf16(int64_t n, float *y, float a, const void *x)
{
    const llm_bf16 *b = x;
    for (int64_t i = 0; i < n; i++)
        y[i] += a * llm__bf16_to_f32(b[i]);
}

static float dot_f32_q8_0(int64_t n, const float *x, const void *y)
{
    const block_q8_0 *b = y;
    float s = 0.0f;
    for (int64_t j = 0; j < n / QK8_0; j++) {
        float bs = 0.0f;
        for (int i = 0; i < QK8_0; i++)
            bs += x[j * QK8_0 + i] * (float)b[j].qs[i];
        s += bs * llm__f16_to_f32(b[j].d);
    }
    return s;
}

static void axpy_q8_0(int64_t n, float *y, float a, const void *x)
{
    const block_q8_0 *b = x;
    for (int64_t j = 0; j < n / QK8_0; j++) {
        const float ad = a * llm__f16_to_f32(b[j].d);
        for (int i = 0; i < QK8_0; i++)
            y[j * QK8_0 + i] += ad * (float)b[j].qs[i];
    }
}

typedef struct attn_job {
    const llm_attention_args *a;
    int32_t hp;      /* query heads per item, at most ATT_HEADS */
    int32_t n_chunk; /* items per token and KV head: the group's heads in hp's */
    atomic_long next;
} attn_job;

#define ATT_BLOCK LLM_ATT_BLOCK
#define ATT_HEADS 8

typedef float (*attn_dot_fn)(int64_t, const float *, const void *);
typedef void (*attn_axpy_fn)(int64_t, float *, float, const void *);

/* One item: query heads h0..h0+nh-1 of token t, all of one KV head, over their keys in a
 * single pass with an online softmax (running maximum and sum) per head, in f32
 * throughout; only the cache itself is f16, bf16 or q8_0. The heads share the keys (same
 * token, same KV head), so the f16 kernels read each key and value row once for all of
 * them; per head the operations are those of one head alone. */
static void attention_item(const llm_attention_args *a, int64_t t, int32_t kh, int32_t h0,
                           int32_t nh, attn_dot_fn dot, attn_axpy_fn axpy)
{
    const llm_kv_layer *kv = a->kv;
    const int32_t hd = kv->head_dim, n_head = a->n_head;
    const int32_t group = n_head / kv->n_head_kv, bs = a->block_size;
    const size_t row_bytes = kv_row_bytes(kv);
    const size_t head_bytes = llm__dtype_row_size(kv->dtype, hd);
    const int32_t p = a->q_pos[t];
    const int32_t *bt = a->block_tables + (int64_t)a->q_seq[t] * a->max_blocks;
    const int32_t p0 = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    const float *q = a->q + (t * n_head + (int64_t)kh * group + h0) * hd;
    float acc[ATT_HEADS * LLM_MAX_HEAD_DIM];
    float m[ATT_HEADS], sum[ATT_HEADS];
    memset(acc, 0, (size_t)(nh * hd) * sizeof(float));
    for (int32_t h = 0; h < nh; h++)
        m[h] = -INFINITY, sum[h] = 0.0f;
    /* keys in blocks of ATT_BLOCK: their scores first, then per head the running maximum
     * tells each key's exponent (a rescale of what came before when it raises the maximum,
     * else its own weight), all of them taken in one call, then the sums in key order: the
     * same operations as one key at a time. The slots follow the block table without a
     * division per key; a block's rows are located (and prefetched) while the block before
     * it is worked on. */
    const char *rows[2][2][ATT_BLOCK]; /* [which block][k, v][key] */
    int32_t b = p0 / bs, o = p0 % bs;
    for (int32_t k0 = p0 - ATT_BLOCK, cur = 1; k0 <= p; k0 += ATT_BLOCK, cur ^= 1) {
        const int32_t n1 = p - (k0 + ATT_BLOCK) + 1;
        for (int u = 0; u < (n1 < ATT_BLOCK ? n1 : ATT_BLOCK); u++) {
            const int64_t slot = (int64_t)bt[b] * bs + o;
            if (++o == bs)
                o = 0, b++;
            const size_t off = (size_t)slot * row_bytes + (size_t)kh * head_bytes;
            rows[cur ^ 1][0][u] = (const char *)kv->k + off;
            rows[cur ^ 1][1][u] = (const char *)kv->v + off;
            for (size_t l = 0; l < head_bytes; l += 64) {
                __builtin_prefetch(rows[cur ^ 1][0][u] + l);
                __builtin_prefetch(rows[cur ^ 1][1][u] + l);
            }
        }
        if (k0 < p0)
            continue;
        const int nk = p - k0 + 1 < ATT_BLOCK ? p - k0 + 1 : ATT_BLOCK;
        const char *const *kr = rows[cur][0], *const *vr = rows[cur][1];
        float sc[ATT_HEADS * ATT_BLOCK], ms[ATT_HEADS * ATT_BLOCK], vs[ATT_HEADS * ATT_BLOCK];
        if (!dot) {
            llm__attn_scores_f16(hd, nh, q, (const llm_f16 *const *)kr, nk, sc);
        } else {
            for (int32_t h = 0; h < nh; h++)
                for (int u = 0; u < nk; u++)
                    sc[h * ATT_BLOCK + u] = dot(hd, q + (size_t)h * hd, kr[u]);
        }
        llm__attn_softmax(nh, nk, sc, a->scale, a->softcap, m, sum, ms, vs);
        if (!axpy) {
            llm__attn_accum_f16(hd, nh, acc, (const llm_f16 *const *)vr, nk, ms, vs);
        } else {
            for (int32_t h = 0; h < nh; h++) {
                float *ah = acc + (size_t)h * hd;
                for (int u = 0; u < nk; u++) {
                    const int i = h * ATT_BLOCK + u;
                    if (ms[i] != 1.0f)
                        for (int32_t d = 0; d < hd; d++)
                            ah[d] *= ms[i];
                    axpy(hd, ah, vs[i], vr[u]);
                }
            }
        }
    }
    for (int32_t h = 0; h < nh; h++) {
        float *out = a->out + (t * n_head + (int64_t)kh * group + h0 + h) * hd;
        const float inv = 1.0f / sum[h];
        for (int32_t d = 0; d < hd; d++)
            out[d] = acc[(size_t)h * hd + d] * inv;
    }
}

static void attention_rows(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    attn_job *j = arg;
    const llm_attention_args *a = j->a;
    const llm_kv_layer *kv = a->kv;
    const int32_t group = a->n_head / kv->n_head_kv;
    /* NULL: the f16 block kernels */
    attn_dot_fn dot = NULL;
    attn_axpy_fn axpy = NULL;
    if (kv->dtype == LLM_DT_BF16)
        dot = dot_f32_bf16, axpy = axpy_bf16;
    else if (kv->dtype == LLM_DT_Q8_0)
        dot = dot_f32_q8_0, axpy = axpy_q8_0;
    const int64_t per_token = (int64_t)kv->n_head_kv * j->n_chunk;
    const int64_t items = a->n_tokens * per_token;
    for (;;) {
        const int64_t it = atomic_fetch_add(&j->next, 1);
        if (it >= items)
            break;
        const int64_t t = it / per_token;
        const int32_t kh = (int32_t)(it % per_token / j->n_chunk);
        const int32_t h0 = (int32_t)(it % j->n_chunk) * j->hp;
        attention_item(a, t, kh, h0, group - h0 < j->hp ? group - h0 : j->hp, dot, axpy);
    }
}

static void cpu_attention(llm_backend *be, const llm_attention_args *a)
{
    attn_job j = {.a = a};
    /* up to ATT_HEADS heads of a KV head per item, fewer where that would leave too few
     * items for the threads (one token, few KV heads); the results do not depend on it */
    const int32_t group = a->n_head / a->kv->n_head_kv;
    const int64_t want = 4 * (int64_t)llm__pool_size(be->pool);
    j.hp = group < ATT_HEADS ? group : ATT_HEADS;
    for (;;) {
        j.n_chunk = (group + j.hp - 1) / j.hp;
        if (j.hp == 1 || a->n_tokens * a->kv->n_head_kv * j.n_chunk >= want)
            break;
        j.hp = (j.hp + 1) / 2;
    }
    atomic_init(&j.next, 0);
    llm__pool_run(be->pool, attention_rows, &j);
}

/* ---- top_k: a k-entry min-heap per row (ranked by value, then lower index), sorted at
 * the end; rows split over the pool. */

typedef struct topk_job {
    int32_t *ids;
    float *vals;
    const float *x;
    int64_t n_rows, n;
    int32_t k;
    atomic_int next;
} topk_job;

/* whether (va, ia) ranks below (vb, ib) */
static inline int tk_worse(float va, int32_t ia, float vb, int32_t ib)
{
    return va < vb || (va == vb && ia > ib);
}

static void tk_sift_down(float *v, int32_t *id, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, m = i;
        if (l < n && tk_worse(v[l], id[l], v[m], id[m]))
            m = l;
        if (l + 1 < n && tk_worse(v[l + 1], id[l + 1], v[m], id[m]))
            m = l + 1;
        if (m == i)
            return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[m], id[i] = id[m];
        v[m] = tv, id[m] = ti;
        i = m;
    }
}

static void topk_rows(void *arg, int ith, int nth)
{
    (void)ith, (void)nth;
    topk_job *j = arg;
    const int32_t k = j->k;
    int64_t r;
    while ((r = atomic_fetch_add(&j->next, 1)) < j->n_rows) {
        const float *x = j->x + r * j->n;
        float *v = j->vals + r * k;
        int32_t *id = j->ids + r * k;
        int32_t m = 0;
        for (int64_t i = 0; i < j->n; i++) {
            float a = x[i];
            if (a != a || a == -INFINITY)
                continue;
            a = a > FLT_MAX ? FLT_MAX : a;
            if (m < k) { /* sift up */
                int32_t c = m++;
                v[c] = a, id[c] = (int32_t)i;
                while (c > 0 && tk_worse(v[c], id[c], v[(c - 1) / 2], id[(c - 1) / 2])) {
                    const int32_t p = (c - 1) / 2;
                    float tv = v[c];
                    int32_t ti = id[c];
                    v[c] = v[p], id[c] = id[p];
                    v[p] = tv, id[p] = ti;
                    c = p;
                }
            } else if (a > v[0]) { /* indices rise: an equal value never displaces one */
                v[0] = a, id[0] = (int32_t)i;
                tk_sift_down(v, id, m, 0);
            }
        }
        /* heap sort: the worst to the back, leaving descending order */
        for (int32_t e = m - 1; e > 0; e--) {
            float tv = v[0];
            int32_t ti = id[0];
            v[0] = v[e], id[0] = id[e];
            v[e] = tv, id[e] = ti;
            tk_sift_down(v, id, e, 0);
        }
        for (int32_t i = m; i < k; i++)
            v[i] = -INFINITY, id[i] = -1;
    }
}

static void cpu_top_k(llm_backend *be, int32_t *ids, float *vals, const float *x,
                      int64_t n_rows, int64_t n, int32_t k)
{
    if (k < 1 || k > LLM_TOP_K_MAX || n_rows < 0 || n < 0 || n > INT32_MAX) {
        if (be->err == LLM_OK)
            be->err = llm__fail(LLM_ERR_INVALID_ARG, "cpu backend: top_k of k %d over %lld "
                                "rows of %lld", k, (long long)n_rows, (long long)n);
        return;
    }
    topk_job j = {.ids = ids, .vals = vals, .x = x, .n_rows = n_rows, .n = n, .k = k};
    atomic_init(&j.next, 0);
    llm__pool_run(be->pool, topk_rows, &j);
}

static void cpu_penalize(llm_backend *be, float *x, int64_t n, const llm_penalty *pen,
                         int64_t n_pen)
{
    (void)be;
    for (int64_t i = 0; i < n_pen; i++) {
        float *p = x + (int64_t)pen[i].row * n + pen[i].token;
        const float v = *p > 0.0f ? *p / pen[i].repeat : *p * pen[i].repeat;
        *p = v - pen[i].sub;
    }
}

static void cpu_row_sumexp(llm_backend *be, float *z, const float *x, int64_t n_rows,
                           int64_t n)
{
    (void)be;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * n;
        float max = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            const float v = row[i] != row[i] ? -INFINITY : row[i] > FLT_MAX ? FLT_MAX : row[i];
            max = v > max ? v : max;
        }
        double sum = 0.0;
        if (max > -INFINITY)
            for (int64_t i = 0; i < n; i++) {
                const float v = row[i] > FLT_MAX ? FLT_MAX : row[i];
                if (v == v && v > -INFINITY)
                    sum += expf(v - max);
            }
        z[r] = (float)sum;
    }
}

static llm_status cpu_synchronize(llm_backend *be)
{
    llm_status st = be->err;
    be->err = LLM_OK;
    return st;
}

static const struct llm_backend_ops cpu_ops = {
    .abi_version = LLM_BACKEND_ABI_VERSION,
    .size = sizeof(struct llm_backend_ops),
    .name = "cpu",
    .flags = LLM_BACKEND_HOST_MEMORY,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .set_threads = cpu_set_threads,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .prepare_weight = cpu_prepare_weight,
    .release_weight = cpu_release_weight,
    .supports_dtype = cpu_supports_dtype,
    .matmul = cpu_matmul,
    .get_rows = cpu_get_rows,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .glu = cpu_glu,
    .copy_rows = cpu_copy_rows,
    .add = cpu_add,
    .scale = cpu_scale,
    .add_bias = cpu_add_bias,
    .softcap = cpu_softcap,
    .moe_route = cpu_moe_route,
    .matmul_id = cpu_matmul_id,
    .moe_combine = cpu_moe_combine,
    .kv_write = cpu_kv_write,
    .kv_copy_block = cpu_kv_copy_block,
    .attention = cpu_attention,
    .features = llm__cpu_features,
    .synchronize = cpu_synchronize,
    .top_k = cpu_top_k,
    .penalize = cpu_penalize,
    .row_sumexp = cpu_row_sumexp,
};

const struct llm_backend_ops *llm__backend_cpu_ops(void)
{
    return &cpu_ops;
}
