/* cuda.cu - the CUDA backend: the module's entry point, the backend instance (one stream
 * and one cuBLAS handle each), memory, weight preparation, and the element-wise ops. The
 * matmuls live in matmul.cu, attention in attention.cu.
 *
 * Every op is queued on the instance's stream and returns at once; launch failures and
 * runtime errors are recorded and reported by the next synchronize (or download). Weights
 * are prepared once by the model's instance and used by every context's instance: a
 * prepared weight is plain device memory, reachable from any stream of the device. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

const llm_backend_host *cu_host;

struct prof_state;
static void prof_collect(llm_backend *be);

/* ---- errors -------------------------------------------------------------------------- */

void cu_record(llm_backend *be, llm_status st, const char *fmt, ...)
{
    if (be->err != LLM_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->err_msg, sizeof be->err_msg, fmt, ap);
    va_end(ap);
    be->err = st;
}

int cu_check(llm_backend *be, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 1;
    cu_record(be, e == cudaErrorMemoryAllocation ? LLM_ERR_NO_MEMORY : LLM_ERR_BACKEND,
              "cuda: %s: %s", what, cudaGetErrorString(e));
    return 0;
}

/* Hands the recorded error to libllm's error slot and clears it. */
static llm_status take_error(llm_backend *be)
{
    llm_status st = be->err;
    if (st != LLM_OK) {
        cu_host->fail(st, "%s", be->err_msg);
        be->err = LLM_OK;
    }
    return st;
}

void *cu_buffer(llm_backend *be, void **buf, size_t *cap, size_t n)
{
    if (*cap >= n)
        return *buf;
    if (be->capturing) {
        cu_record(be, LLM_ERR_BACKEND, "cuda: a buffer would grow during a graph capture");
        return NULL;
    }
    /* a held-back op may read the old buffer: launched now, and waited for with the rest */
    act_stale(be);
    if (!cu_check(be, cudaStreamSynchronize(be->stream), "synchronize before growing a buffer"))
        return NULL;
    cu_graph_forget(be); /* graphs that use the old buffer */
    cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    size_t want = n < ((size_t)4 << 20) ? ((size_t)4 << 20) : n;
    if (!cu_check(be, cudaMalloc(buf, want), "scratch allocation"))
        return NULL;
    *cap = want;
    return *buf;
}

/* ---- instance -------------------------------------------------------------------------- */

static llm_status cu_create(const llm_backend_config *cfg, llm_backend **out)
{
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear it */
        return cu_host->fail(LLM_ERR_UNSUPPORTED, "cuda: no usable driver or device (%s)",
                             cudaGetErrorString(e));
    }
    const int dev = cfg ? cfg->device : 0;
    if (dev < 0 || dev >= count)
        return cu_host->fail(LLM_ERR_UNSUPPORTED, "cuda: device %d does not exist (%d found)",
                             dev, count);
    if ((e = cudaSetDevice(dev)) != cudaSuccess)
        return cu_host->fail(LLM_ERR_BACKEND, "cuda: cannot use device %d: %s", dev,
                             cudaGetErrorString(e));
    llm_backend *be = (llm_backend *)calloc(1, sizeof *be);
    if (!be)
        return cu_host->fail(LLM_ERR_NO_MEMORY, "cuda: out of memory");
    be->device = dev;
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        free(be);
        return cu_host->fail(LLM_ERR_BACKEND, "cuda: device %d: %s", dev, cudaGetErrorString(e));
    }
    be->n_sm = prop.multiProcessorCount;
    be->cc = prop.major * 10 + prop.minor;
    const char *flash = getenv("LLM_CUDA_FLASH");
    be->flash = flash && *flash ? (int)strtol(flash, NULL, 0) & FLASH_ALL : FLASH_PROMPT;
    const char *inv = getenv("LLM_CUDA_BATCH_INVARIANT");
    be->batch_invariant = inv && *inv && strcmp(inv, "0") != 0;
    const char *nomq = getenv("LLM_CUDA_NO_MMVQ");
    be->no_mmvq = nomq && *nomq && strcmp(nomq, "0") != 0;
    const char *pdl = getenv("LLM_CUDA_PDL");
    be->pdl = prop.major >= 9 && !(pdl && strcmp(pdl, "0") == 0);
    const char *early = getenv("LLM_CUDA_EARLY");
    be->early = be->pdl && !(early && strcmp(early, "0") == 0);
    const char *fuse = getenv("LLM_CUDA_FUSE"); /* 0: none; else a mask of FUSE_* bits */
    be->fuse = fuse && *fuse ? (int)strtol(fuse, NULL, 0) & FUSE_ALL : FUSE_ALL;
    const char *graphs = getenv("LLM_CUDA_GRAPHS");
    be->graphs = !(graphs && strcmp(graphs, "0") == 0);
    const char *split = getenv("LLM_CUDA_ATT_SPLIT");
    be->att_split = split && *split ? (int)strtol(split, NULL, 10) : ATT_SPLIT_DEFAULT;
    be->att_split = be->att_split < 1 ? 1 : be->att_split > ATT_SPLIT_MAX ? ATT_SPLIT_MAX
                                                                         : be->att_split;
    const char *kgs = getenv("LLM_CUDA_ATT_KG");
    be->att_kg = !(kgs && strcmp(kgs, "0") == 0);
    const char *smin = getenv("LLM_CUDA_ATT_SPLIT_MIN");
    be->att_split_min = smin && *smin ? (int)strtol(smin, NULL, 10) : ATT_SPLIT_MIN;
    be->att_split_min = be->att_split_min < 1 ? 1 : be->att_split_min;
    const char *f16w = getenv("LLM_CUDA_F16_WEIGHTS");
    be->no_f16_weights = f16w && strcmp(f16w, "0") == 0;
    if (cublasCreate(&be->blas) != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(be->stream);
        free(be);
        return cu_host->fail(LLM_ERR_BACKEND, "cuda: cuBLAS cannot start on device %d", dev);
    }
    cublasSetStream(be->blas, be->stream);
    cu_host->log(LLM_LOG_DEBUG, "cuda: device %d: %s, compute %d.%d, %d SMs, %.1f GiB", dev,
                 prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                 (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    *out = be;
    return LLM_OK;
}

static void cu_destroy(llm_backend *be)
{
    if (!be)
        return;
    cudaSetDevice(be->device);
    cudaStreamSynchronize(be->stream);
    cudaFree(be->scratch);
    cudaFree(be->act);
    cudaFree(be->route);
    cudaFree(be->att_part);
    cudaFree(be->att_cnt);
    cublasDestroy(be->blas);
    cudaStreamDestroy(be->stream);
    free(be);
}

static llm_status cu_set_threads(llm_backend *be, int32_t n)
{
    (void)be;
    if (n < 1 || n > 1024)
        return cu_host->fail(LLM_ERR_INVALID_ARG, "cuda backend: n_threads %d out of range", n);
    return LLM_OK; /* host threads play no part */
}

static void *cu_alloc(llm_backend *be, size_t n)
{
    act_stale(be);
    void *p = NULL;
    cudaSetDevice(be->device);
    if (cudaMalloc(&p, n ? n : 256) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_free(llm_backend *be, void *p)
{
    act_stale(be);
    if (!p)
        return;
    cudaSetDevice(be->device);
    cudaFree(p);
}

static void cu_upload(llm_backend *be, void *dst, const void *src, size_t n)
{
    act_stale(be);
    if (n)
        cu_check(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, be->stream), "upload");
}

static llm_status cu_download(llm_backend *be, void *dst, const void *src, size_t n)
{
    act_stale(be);
    if (n)
        cu_check(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, be->stream),
                 "download");
    cu_check(be, cudaStreamSynchronize(be->stream), "queued work");
    return take_error(be);
}

static int cu_supports_dtype(llm_backend *be, uint32_t t)
{
    (void)be;
    return cu_dtype_supported(t);
}

static llm_status cu_prepare_weight(llm_backend *be, llm_tensor *w)
{
    if (!w->data)
        return LLM_OK;
    if (!cu_dtype_supported(w->dtype))
        return cu_host->fail(LLM_ERR_UNSUPPORTED, "cuda backend: tensor '%s' has type %u, "
                             "which the CUDA backend does not support", w->name, w->dtype);
    const size_t bytes = w->row_bytes * (size_t)w->ne[1];
    cu_weight *cw = (cu_weight *)calloc(1, sizeof *cw);
    if (!cw)
        return cu_host->fail(LLM_ERR_NO_MEMORY, "cuda backend: out of memory");
    cudaSetDevice(be->device);
    /* WEIGHT_PAD bytes after the rows: kernels read 2-byte aligned blocks as the aligned
     * words around them (mmvq.cu), up to 2 bytes past the last block */
    cudaError_t e = cudaMalloc(&cw->data, bytes + WEIGHT_PAD);
    if (e == cudaSuccess)
        e = cudaMemset(cw->data, 0, bytes + WEIGHT_PAD);
    if (e == cudaSuccess)
        e = cudaMemcpy(cw->data, w->data, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaFree(cw->data);
        free(cw);
        return cu_host->fail(e == cudaErrorMemoryAllocation ? LLM_ERR_NO_MEMORY : LLM_ERR_BACKEND,
                             "cuda backend: tensor '%s' (%zu bytes): %s", w->name, bytes,
                             cudaGetErrorString(e));
    }
    cw->device = be->device;
    w->extra = cw;
    return LLM_OK;
}

static void cu_release_weight(llm_backend *be, llm_tensor *w)
{
    cu_weight *cw = (cu_weight *)w->extra;
    if (!cw)
        return;
    cudaSetDevice(be->device);
    cudaFree(cw->data);
    cudaFree(cw->f16);
    free(cw);
    w->extra = NULL;
}

/* ---- element-wise ops ------------------------------------------------------------------ */

#define THREADS 256

/* ---- deferred ops ----------------------------------------------------------------------
 * A decoder layer's add and glu move a few kilobytes each at decode, and each costs a
 * kernel and the gap before the next one. So they are held back (be->pend) for the op
 * after them: an add followed by the norm of its output becomes one kernel, and a glu
 * whose output the next matmul quantizes (mmvq.cu) or converts to 16 bits (matmul.cu)
 * is computed by that kernel; the ropes of q and k and the KV write of k and v become
 * one kernel; a norm or a decode attention whose output the next matmul converts to 16
 * bits writes the conversion itself; matrix-vector products of the same activations are launched
 * together (cu_mq_queue, mmvq.cu).
 * Any other op launches the deferred one first (act_stale), so the order of effects is
 * the plain one; each fused kernel computes the same bits as the kernels it replaces
 * (test_cuda_ops compares them). A held norm whose output the next matmul quantizes for
 * the 8-bit kernels does that quantization itself (cu_norm_q8, norm.cu): one block per
 * row, which measured slower than two kernels until each block's scale was computed once
 * and the matrix-vector kernels loaded their first weights before waiting
 * (docs/perf/cuda.md). */

static void cu_rms_norm(llm_backend *be, float *y, const float *x, const llm_tensor *w,
                        int64_t n_rows, int64_t dim, float eps)
{
    if (n_rows <= 0)
        return;
    const float *a = NULL, *b = NULL;
    if (be->pend.kind == PEND_ADD && be->pend.y == x && be->pend.n == n_rows * dim &&
        cu_norm_fusable(dim)) {
        a = be->pend.a, b = be->pend.b; /* the add that made x goes into the norm */
        be->pend.kind = PEND_NONE;
    }
    act_stale(be);
    if ((be->fuse & FUSE_NORM_CVT) && cu_norm_fusable(dim) && n_rows <= 0x7fffffff) {
        /* held for a 16-bit matmul of y, whose conversion it then writes (matmul.cu) */
        auto &p = be->pend.norm;
        p.y = y, p.x = (float *)x, p.a = a, p.b = b, p.w = (const float *)wdata(w);
        p.rows = n_rows, p.dim = dim, p.eps = eps;
        be->pend.kind = PEND_NORM;
        return;
    }
    cu_norm(be, y, (float *)x, a, b, (const float *)wdata(w), n_rows, dim, eps);
}

/* The cosine and sine of pair i's angle at position p, the angle built as the CPU backend
 * builds it, a running product in float, so that both agree to rounding. */
static __device__ __forceinline__ void rope_angle(int32_t p, int i, float theta_scale,
                                                  float freq_scale, const float *ff, float *c,
                                                  float *s)
{
    float theta = (float)p;
    for (int k = 0; k < i; k++)
        theta *= theta_scale;
    const float th = freq_scale * (theta / (ff ? ff[i] : 1.0f));
    *c = cosf(th);
    *s = sinf(th);
}

/* Rotates pair i of head v by the angle of cosine c and sine s. */
static __device__ __forceinline__ void rope_pair(float *v, int i, int half, int neox, float c,
                                                 float s)
{
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float a = v[i0], b = v[i1];
    v[i0] = a * c - b * s;
    v[i1] = a * s + b * c;
}

/* Rotates one head v of the token at position p; thread i of the block rotates pair i. */
static __device__ __forceinline__ void rope_head(float *v, int32_t p, int32_t n_rot,
                                                 float theta_scale, float freq_scale,
                                                 const float *ff, int neox)
{
    const int half = n_rot / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float c, s;
        rope_angle(p, i, theta_scale, freq_scale, ff, &c, &s);
        rope_pair(v, i, half, neox, c, s);
    }
}

/* One block per (token, head). */
static __global__ void k_rope(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot,
                              const int32_t *pos, float theta_scale, float freq_scale,
                              const float *ff, int neox)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    const int64_t t = blockIdx.x / n_heads;
    rope_head(x + (int64_t)blockIdx.x * head_dim, pos[t], n_rot, theta_scale, freq_scale, ff,
              neox);
}

static int rope_threads(int32_t n_rot) { return n_rot / 2 >= 64 ? 64 : 32; }

static void rope_now(llm_backend *be, float *x, int64_t n_tokens, int32_t n_heads)
{
    const auto &r = be->pend.rope;
    cu_launch(be, k_rope, (unsigned)(n_tokens * n_heads), rope_threads(r.n_rot), 0, x, n_heads,
              r.head_dim, r.n_rot, r.pos, r.theta_scale, r.freq_scale, r.ff, r.neox);
    CU_LAUNCHED(be, "rope");
}

/* The ropes of q and k are held back (up to two of the same tokens and angles) for the KV
 * write of k that follows them in a decoder layer (cu_kv_write). */
static void cu_rope(llm_backend *be, float *x, int64_t n_tokens, int32_t n_heads,
                    int32_t head_dim, int32_t n_rot, const int32_t *pos, float freq_base,
                    float freq_scale, const llm_tensor *ff, int mode)
{
    if (n_tokens <= 0 || n_rot <= 0 || n_heads <= 0) {
        act_stale(be);
        return;
    }
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    const float *ffd = (const float *)wdata(ff);
    const int neox = mode == LLM_ROPE_NEOX;
    auto &r = be->pend.rope;
    if (be->pend.kind == PEND_ROPE && r.n_x == 1 && r.n_tokens == n_tokens &&
        r.head_dim == head_dim && r.n_rot == n_rot && r.pos == pos &&
        r.theta_scale == theta_scale && r.freq_scale == freq_scale && r.ff == ffd &&
        r.neox == neox && r.x[0] != x) {
        r.x[1] = x, r.heads[1] = n_heads, r.n_x = 2; /* k after q */
        return;
    }
    act_stale(be);
    r.x[0] = x, r.heads[0] = n_heads, r.n_x = 1;
    r.n_tokens = n_tokens, r.head_dim = head_dim, r.n_rot = n_rot, r.pos = pos;
    r.theta_scale = theta_scale, r.freq_scale = freq_scale, r.ff = ffd, r.neox = neox;
    if (!(be->fuse & FUSE_ROPE_KV)) {
        rope_now(be, x, n_tokens, n_heads);
        return;
    }
    be->pend.kind = PEND_ROPE;
}

static __global__ void k_glu(float *y, const float *gate, const float *up, int64_t n, int act)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = glu_value(gate[i], up[i], act);
}

static unsigned grid_for(const llm_backend *be, int64_t n)
{
    const int64_t cap = (int64_t)be->n_sm * 16;
    const int64_t blocks = (n + THREADS - 1) / THREADS;
    return (unsigned)(blocks < cap ? blocks : cap);
}

static void glu_now(llm_backend *be, float *y, const float *gate, const float *up, int64_t n,
                    int act)
{
    cu_launch(be, k_glu, grid_for(be, n), THREADS, 0, y, gate, up, n, act);
    CU_LAUNCHED(be, "glu");
}

static void cu_glu(llm_backend *be, float *y, const float *gate, const float *up, int64_t n,
                   int act)
{
    act_stale(be);
    if (n <= 0)
        return;
    if (!(be->fuse & FUSE_GLU_Q8)) {
        glu_now(be, y, gate, up, n, act);
        return;
    }
    be->pend.kind = PEND_GLU;
    be->pend.y = y, be->pend.a = gate, be->pend.b = up;
    be->pend.n = n, be->pend.act = act;
}

static __global__ void k_add(float *y, const float *a, const float *b, int64_t n)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}

static void add_now(llm_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    cu_launch(be, k_add, grid_for(be, n), THREADS, 0, y, a, b, n);
    CU_LAUNCHED(be, "add");
}

static void cu_add(llm_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    act_stale(be);
    if (n <= 0)
        return;
    if (!(be->fuse & FUSE_ADD_NORM)) {
        add_now(be, y, a, b, n);
        return;
    }
    be->pend.kind = PEND_ADD;
    be->pend.y = y, be->pend.a = a, be->pend.b = b;
    be->pend.n = n;
}

void cu_flush(llm_backend *be)
{
    const auto p = be->pend;
    be->pend.kind = PEND_NONE;
    switch (p.kind) {
    case PEND_ADD: add_now(be, p.y, p.a, p.b, p.n); break;
    case PEND_GLU: glu_now(be, p.y, p.a, p.b, p.n, p.act); break;
    case PEND_ROPE:
        for (int i = 0; i < p.rope.n_x; i++)
            rope_now(be, p.rope.x[i], p.rope.n_tokens, p.rope.heads[i]);
        break;
    case PEND_MMVQ: cu_mmvq_launch(be, p.mq); break;
    case PEND_GEMM: cu_gemm_launch(be, p.gemm); break;
    case PEND_ATT: cu_attention_launch(be, p.att.p, p.att.n_tokens, p.att.per, p.att.dtype); break;
    case PEND_NORM:
        cu_norm(be, p.norm.y, p.norm.x, p.norm.a, p.norm.b, p.norm.w, p.norm.rows, p.norm.dim,
                p.norm.eps);
        break;
    default: break;
    }
}

static __global__ void k_scale(float *y, const float *x, float s, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = x[i] * s;
}

static void cu_scale(llm_backend *be, float *y, const float *x, float s, int64_t n)
{
    act_stale(be);
    if (n <= 0)
        return;
    k_scale<<<grid_for(be, n), THREADS, 0, be->stream>>>(y, x, s, n);
    CU_LAUNCHED(be, "scale");
}

static __global__ void k_copy_rows(float *y, const float *x, int64_t dim, const int32_t *rows)
{
    const float *src = x + (int64_t)rows[blockIdx.x] * dim;
    float *dst = y + (int64_t)blockIdx.x * dim;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        dst[i] = src[i];
}

static void cu_copy_rows(llm_backend *be, float *y, const float *x, int64_t dim,
                         const int32_t *rows, int64_t n)
{
    act_stale(be);
    if (n <= 0)
        return;
    k_copy_rows<<<(unsigned)n, THREADS, 0, be->stream>>>(y, x, dim, rows);
    CU_LAUNCHED(be, "copy_rows");
}

/* ---- biases, soft-capping, mixture of experts ------------------------------------------ */

static __global__ void k_add_bias(float *y, const float *b, int64_t dim)
{
    float *yr = y + (int64_t)blockIdx.y * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < dim;
         i += (int64_t)gridDim.x * blockDim.x)
        yr[i] += b[i];
}

static void cu_add_bias(llm_backend *be, float *y, const llm_tensor *b, int64_t n_rows)
{
    act_stale(be);
    if (n_rows <= 0)
        return;
    const float *bd = (const float *)wdata(b);
    if (!bd) {
        cu_record(be, LLM_ERR_INTERNAL, "cuda: add_bias with tensor '%s', which was not "
                  "prepared", b->name);
        return;
    }
    const dim3 grid(cdiv(b->ne[0], THREADS), (unsigned)n_rows);
    k_add_bias<<<grid, THREADS, 0, be->stream>>>(y, bd, b->ne[0]);
    CU_LAUNCHED(be, "add_bias");
}

/* scale, tanh, scale, in the CPU backend's order */
static __global__ void k_softcap(float *y, const float *x, float cap, float inv, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = tanhf(x[i] * inv) * cap;
}

static void cu_softcap(llm_backend *be, float *y, const float *x, float cap, int64_t n)
{
    act_stale(be);
    if (n <= 0)
        return;
    k_softcap<<<grid_for(be, n), THREADS, 0, be->stream>>>(y, x, cap, 1.0f / cap, n);
    CU_LAUNCHED(be, "softcap");
}

/* One thread per token: softmax over the experts (sum in double, as the CPU does), then
 * the k largest by selection, ties to the lower id; at most 1024 experts (checked at
 * load), kept in the thread's slice of global scratch. */
static __global__ void k_moe_route(int32_t *ids, float *weights, const float *logits, int64_t n,
                                   int32_t n_expert, int32_t k, int norm, float *scratch)
{
    const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= n)
        return;
    const float *l = logits + t * n_expert;
    float *p = scratch + t * n_expert;
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

static void cu_moe_route(llm_backend *be, int32_t *ids, float *weights, const float *logits,
                         int64_t n, int32_t n_expert, int32_t k, int norm)
{
    act_stale(be);
    if (n <= 0)
        return;
    float *scratch = (float *)cu_buffer(be, &be->route, &be->route_cap,
                                        (size_t)(n * n_expert) * sizeof(float));
    if (!scratch)
        return;
    k_moe_route<<<cdiv(n, 64), 64, 0, be->stream>>>(ids, weights, logits, n, n_expert, k, norm,
                                                   scratch);
    CU_LAUNCHED(be, "moe_route");
}

static __global__ void k_moe_combine(float *y, const float *x, const float *weights, int32_t k,
                                     int64_t dim)
{
    const int64_t t = blockIdx.y;
    float *yr = y + t * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < dim;
         i += (int64_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int32_t j = 0; j < k; j++) {
            const float v = x[(t * k + j) * dim + i] * weights[t * k + j];
            acc = j == 0 ? v : acc + v;
        }
        yr[i] = acc;
    }
}

static void cu_moe_combine(llm_backend *be, float *y, const float *x, const float *weights,
                           int64_t n, int32_t k, int64_t dim)
{
    act_stale(be);
    if (n <= 0)
        return;
    const dim3 grid(cdiv(dim, THREADS), (unsigned)n);
    k_moe_combine<<<grid, THREADS, 0, be->stream>>>(y, x, weights, k, dim);
    CU_LAUNCHED(be, "moe_combine");
}

/* ---- KV cache -------------------------------------------------------------------------- */

/* One thread per element of a row; q8_0 rows are blocks of 32 (an f16 scale d = amax/127,
 * then q = roundf(x / d)), each made by 32 consecutive threads, with the CPU's arithmetic. */
static __device__ __forceinline__ void kv_store(uint32_t dtype, char *row, int64_t i, float x,
                                                bool in)
{
    if (dtype == LLM_DT_F16) {
        if (in)
            ((__half *)row)[i] = __float2half_rn(x);
    } else if (dtype == LLM_DT_BF16) {
        const uint32_t u = __float_as_uint(x);
        const uint16_t h = (u & 0x7fffffffu) > 0x7f800000u
                               ? (uint16_t)((u >> 16) | 64)
                               : (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
        if (in)
            ((uint16_t *)row)[i] = h;
    } else {
        float amax = in ? fabsf(x) : 0.0f;
        for (int o = 16; o > 0; o >>= 1)
            amax = fmaxf(amax, LLM_SHFL_XOR(amax, o));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        char *b = row + (i / 32) * 34;
        if (in) {
            b[2 + i % 32] = (char)(int)roundf(x * id);
            if (i % 32 == 0)
                *(__half *)b = __float2half_rn(d);
        }
    }
}

static __global__ void k_kv_write(char *kc, char *vc, uint32_t dtype, const float *k,
                                  const float *v, const int32_t *slots, int64_t row,
                                  size_t row_bytes)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    const int64_t t = blockIdx.y;
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const bool in = i < row;
    const size_t dst = (size_t)slots[t] * row_bytes;
    kv_store(dtype, kc + dst, i, in ? k[t * row + i] : 0.0f, in);
    kv_store(dtype, vc + dst, i, in ? v[t * row + i] : 0.0f, in);
}

/* The deferred ropes of q (h1 heads, x1) and k (the cache's heads, x2) and the KV write of
 * that k and v in one kernel, in one of two shapes with the same bits:
 *  - k_rope_kv_heads, for few tokens: one block per (token, head of q then of k); a k
 *    block rotates its head, then stores it and the same head of v into the cache row;
 *  - k_rope_kv_tokens, for many tokens: one block per token, which builds the token's
 *    angles once (ROPE_KV_MAX_PAIRS at most) for all its heads, then stores k and v.
 * The block size is a multiple of 32 and head_dim of 32 for q8_0 caches: each warp's
 * stores are whole blocks of the row. */
static __global__ void k_rope_kv_heads(float *x1, int32_t h1, float *x2, const float *v,
                                       char *kc, char *vc, uint32_t dtype,
                                       const int32_t *slots, int32_t n_kv, int32_t head_dim,
                                       int32_t n_rot, const int32_t *pos, float theta_scale,
                                       float freq_scale, const float *ff, int neox,
                                       size_t row_bytes)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    const int64_t t = blockIdx.y;
    const int32_t h = blockIdx.x;
    if (h < h1) {
        rope_head(x1 + (t * h1 + h) * head_dim, pos[t], n_rot, theta_scale, freq_scale, ff,
                  neox);
        return;
    }
    const int32_t kh = h - h1;
    const int64_t off = (t * n_kv + kh) * head_dim;
    rope_head(x2 + off, pos[t], n_rot, theta_scale, freq_scale, ff, neox);
    __syncthreads(); /* the rotated head is read back by other threads */
    const size_t dst = (size_t)slots[t] * row_bytes;
    for (int32_t e = threadIdx.x; e < head_dim; e += blockDim.x) {
        const int64_t i = (int64_t)kh * head_dim + e;
        kv_store(dtype, kc + dst, i, x2[off + e], true);
        kv_store(dtype, vc + dst, i, v[off + e], true);
    }
}

#define ROPE_KV_THREADS 256
#define ROPE_KV_MAX_PAIRS 256
static __global__ void __launch_bounds__(ROPE_KV_THREADS)
k_rope_kv_tokens(float *x1, int32_t h1, float *x2, const float *v, char *kc, char *vc,
                 uint32_t dtype, const int32_t *slots, int32_t n_kv, int32_t head_dim,
                 int32_t n_rot, const int32_t *pos, float theta_scale, float freq_scale,
                 const float *ff, int neox, size_t row_bytes)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    __shared__ float cs[2][ROPE_KV_MAX_PAIRS];
    const int64_t t = blockIdx.x;
    const int half = n_rot / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x)
        rope_angle(pos[t], i, theta_scale, freq_scale, ff, &cs[0][i], &cs[1][i]);
    __syncthreads();
    for (int j = threadIdx.x; j < (h1 + n_kv) * half; j += blockDim.x) {
        const int h = j / half, i = j % half;
        float *hv = h < h1 ? x1 + (t * h1 + h) * head_dim : x2 + (t * n_kv + h - h1) * head_dim;
        rope_pair(hv, i, half, neox, cs[0][i], cs[1][i]);
    }
    __syncthreads(); /* the rotated k is read back by other threads */
    const size_t dst = (size_t)slots[t] * row_bytes;
    const int64_t row = (int64_t)n_kv * head_dim, off = t * row;
    for (int64_t e = threadIdx.x; e < row; e += blockDim.x) {
        kv_store(dtype, kc + dst, e, x2[off + e], true);
        kv_store(dtype, vc + dst, e, v[off + e], true);
    }
}

static void cu_kv_write(llm_backend *be, const llm_kv_layer *kv, const float *k, const float *v,
                        const int32_t *slots, int64_t n_tokens)
{
    const int64_t row = (int64_t)kv->n_head_kv * kv->head_dim;
    const size_t rb = kv_bytes(kv->dtype, row);
    const auto &r = be->pend.rope;
    const bool by_token = n_tokens >= be->n_sm && n_tokens <= 0x7fffffff &&
                          r.n_rot / 2 <= ROPE_KV_MAX_PAIRS;
    if (be->pend.kind == PEND_ROPE && r.n_x == 2 && r.x[1] == k && r.n_tokens == n_tokens &&
        r.heads[1] == kv->n_head_kv && r.head_dim == kv->head_dim && rb &&
        (kv->dtype != LLM_DT_Q8_0 || kv->head_dim % 32 == 0) &&
        (by_token || n_tokens <= 65535)) {
        be->pend.kind = PEND_NONE;
        if (by_token)
            cu_launch(be, k_rope_kv_tokens, (unsigned)n_tokens, ROPE_KV_THREADS, 0, r.x[0],
                      r.heads[0], r.x[1], v, (char *)kv->k, (char *)kv->v, kv->dtype, slots,
                      kv->n_head_kv, r.head_dim, r.n_rot, r.pos, r.theta_scale, r.freq_scale,
                      r.ff, r.neox, rb);
        else
            cu_launch(be, k_rope_kv_heads, dim3((unsigned)(r.heads[0] + r.heads[1]),
                                                (unsigned)n_tokens),
                      rope_threads(r.n_rot), 0, r.x[0], r.heads[0], r.x[1], v, (char *)kv->k,
                      (char *)kv->v, kv->dtype, slots, kv->n_head_kv, r.head_dim, r.n_rot,
                      r.pos, r.theta_scale, r.freq_scale, r.ff, r.neox, rb);
        CU_LAUNCHED(be, "rope and kv_write");
        act_stale(be);
        return;
    }
    act_stale(be);
    if (n_tokens <= 0)
        return;
    if (!rb) {
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: KV cache of type %u", kv->dtype);
        return;
    }
    dim3 grid(cdiv(row, THREADS), (unsigned)n_tokens);
    cu_launch(be, k_kv_write, grid, THREADS, 0, (char *)kv->k, (char *)kv->v, kv->dtype, k, v,
              slots, row, rb);
    CU_LAUNCHED(be, "kv_write");
}

static void cu_kv_copy_block(llm_backend *be, const llm_kv_layer *kv, int32_t block_size,
                             int32_t dst, int32_t src)
{
    act_stale(be);
    const size_t bytes =
        (size_t)block_size * kv_bytes(kv->dtype, (int64_t)kv->n_head_kv * kv->head_dim);
    if (!bytes) {
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: KV cache of type %u", kv->dtype);
        return;
    }
    cu_check(be, cudaMemcpyAsync((char *)kv->k + (size_t)dst * bytes,
                                 (const char *)kv->k + (size_t)src * bytes, bytes,
                                 cudaMemcpyDeviceToDevice, be->stream), "kv_copy_block");
    cu_check(be, cudaMemcpyAsync((char *)kv->v + (size_t)dst * bytes,
                                 (const char *)kv->v + (size_t)src * bytes, bytes,
                                 cudaMemcpyDeviceToDevice, be->stream), "kv_copy_block");
}

/* ---- synchronisation ------------------------------------------------------------------- */

static const char *cu_features(void)
{
    return "cuda";
}

static llm_status cu_synchronize(llm_backend *be)
{
    act_stale(be);
    cu_check(be, cudaStreamSynchronize(be->stream), "queued work");
    prof_collect(be);
    return take_error(be);
}

static const struct llm_backend_ops cuda_ops = {
    .abi_version = LLM_BACKEND_ABI_VERSION,
    .size = sizeof(struct llm_backend_ops),
    .name = "cuda",
    .flags = 0, /* device memory: the core uploads and downloads */
    .create = cu_create,
    .destroy = cu_destroy,
    .set_threads = cu_set_threads,
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .prepare_weight = cu_prepare_weight,
    .release_weight = cu_release_weight,
    .supports_dtype = cu_supports_dtype,
    .matmul = cu_matmul,
    .get_rows = cu_get_rows,
    .rms_norm = cu_rms_norm,
    .rope = cu_rope,
    .glu = cu_glu,
    .copy_rows = cu_copy_rows,
    .add = cu_add,
    .scale = cu_scale,
    .add_bias = cu_add_bias,
    .softcap = cu_softcap,
    .moe_route = cu_moe_route,
    .matmul_id = cu_matmul_id,
    .moe_combine = cu_moe_combine,
    .kv_write = cu_kv_write,
    .kv_copy_block = cu_kv_copy_block,
    .attention = cu_attention,
    .features = cu_features,
    .synchronize = cu_synchronize,
    .top_k = cu_top_k,
    .penalize = cu_penalize,
    .row_sumexp = cu_row_sumexp,
};

/* ---- per-op timings (LLM_CUDA_PROFILE=1) -------------------------------------------------
 * With the variable set, the entry hands out a table whose ops bracket the real ones with
 * CUDA events; synchronize adds the elapsed times up per op kind (matmuls by weight type
 * and path), and destroy prints the totals to stderr. Diagnostics only: the events cost
 * launch time of their own. */

#define PROF_EVENTS 8192
#define PROF_KINDS 64

struct prof_state {
    cudaEvent_t ev[2 * PROF_EVENTS];
    const char *label[PROF_EVENTS];
    int n;
    const char *kind[PROF_KINDS];
    double ms[PROF_KINDS];
    long count[PROF_KINDS];
    int n_kinds;
};

static prof_state *prof_of(llm_backend *be)
{
    if (!be->prof) {
        be->prof = (prof_state *)calloc(1, sizeof(prof_state));
        if (be->prof)
            for (int i = 0; i < 2 * PROF_EVENTS; i++)
                cudaEventCreate(&be->prof->ev[i]);
    }
    return be->prof;
}

static void prof_begin(llm_backend *be)
{
    prof_state *p = prof_of(be);
    if (p && p->n < PROF_EVENTS)
        cudaEventRecord(p->ev[2 * p->n], be->stream);
}

static void prof_end(llm_backend *be, const char *label)
{
    prof_state *p = be->prof;
    if (p && p->n < PROF_EVENTS) {
        cudaEventRecord(p->ev[2 * p->n + 1], be->stream);
        p->label[p->n++] = label;
    }
}

static void prof_collect(llm_backend *be)
{
    prof_state *p = be->prof;
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]);
        int k = 0;
        while (k < p->n_kinds && strcmp(p->kind[k], p->label[i]) != 0)
            k++;
        if (k == p->n_kinds && k < PROF_KINDS)
            p->kind[p->n_kinds++] = p->label[i];
        if (k < PROF_KINDS)
            p->ms[k] += ms, p->count[k]++;
    }
    p->n = 0;
}

static void prof_print(llm_backend *be)
{
    prof_state *p = be->prof;
    if (!p)
        return;
    double total = 0;
    for (int k = 0; k < p->n_kinds; k++)
        total += p->ms[k];
    if (total > 0) {
        fprintf(stderr, "cuda profile (device %d): %.3f ms in ops\n", be->device, total);
        for (int k = 0; k < p->n_kinds; k++)
            fprintf(stderr, "  %-24s %8ld calls %10.3f ms %5.1f%% %8.2f us/call\n", p->kind[k],
                    p->count[k], p->ms[k], 100.0 * p->ms[k] / total,
                    1e3 * p->ms[k] / (double)p->count[k]);
    }
    for (int i = 0; i < 2 * PROF_EVENTS; i++)
        cudaEventDestroy(p->ev[i]);
    free(p);
    be->prof = NULL;
}

static const char *matmul_label(const llm_tensor *w, int64_t n)
{
    /* per weight type: one token or a few (matvec), a decode batch, a prompt-sized batch */
#define LABELS(t) {"matvec " t, "gemm " t " n<=256", "gemm " t " n>256"}
    static const char *names[][3] = {
        LABELS("f32"),  LABELS("f16"),  LABELS("bf16"), LABELS("q4_0"), LABELS("q4_1"),
        LABELS("q5_0"), LABELS("q5_1"), LABELS("q8_0"), LABELS("q2_K"), LABELS("q3_K"),
        LABELS("q4_K"), LABELS("q5_K"), LABELS("q6_K"), LABELS("?")};
#undef LABELS
    static const uint32_t types[] = {LLM_DT_F32,  LLM_DT_F16,  LLM_DT_BF16, LLM_DT_Q4_0,
                                     LLM_DT_Q4_1, LLM_DT_Q5_0, LLM_DT_Q5_1, LLM_DT_Q8_0,
                                     LLM_DT_Q2_K, LLM_DT_Q3_K, LLM_DT_Q4_K, LLM_DT_Q5_K,
                                     LLM_DT_Q6_K};
    int i = 0;
    while (i < 13 && types[i] != w->dtype)
        i++;
    return names[i][n <= 8 ? 0 : n <= 256 ? 1 : 2];
}

static const char *attention_label(const llm_attention_args *a)
{
    return a->n_tokens <= 8 ? "attention decode" : a->n_tokens <= 256 ? "attention n<=256"
                                                                        : "attention n>256";
}

#define PROF_OP(name, label, params, args)                                                  \
    static void prof_##name params                                                           \
    {                                                                                        \
        prof_begin(be);                                                                      \
        cu_##name args;                                                                      \
        prof_end(be, label);                                                                 \
    }

PROF_OP(upload, "upload", (llm_backend *be, void *dst, const void *src, size_t n), (be, dst, src, n))
PROF_OP(matmul, matmul_label(w, n), (llm_backend *be, float *y, int64_t ldy, const llm_tensor *w,
        const float *x, int64_t ldx, int64_t n), (be, y, ldy, w, x, ldx, n))
PROF_OP(get_rows, "get_rows", (llm_backend *be, float *y, const llm_tensor *w,
        const int32_t *ids, int64_t n), (be, y, w, ids, n))
PROF_OP(rms_norm, "rms_norm", (llm_backend *be, float *y, const float *x, const llm_tensor *w,
        int64_t n_rows, int64_t dim, float eps), (be, y, x, w, n_rows, dim, eps))
PROF_OP(rope, "rope", (llm_backend *be, float *x, int64_t n_tokens, int32_t n_heads,
        int32_t head_dim, int32_t n_rot, const int32_t *pos, float freq_base, float freq_scale,
        const llm_tensor *ff, int mode), (be, x, n_tokens, n_heads, head_dim, n_rot, pos,
        freq_base, freq_scale, ff, mode))
PROF_OP(glu, "glu", (llm_backend *be, float *y, const float *gate, const float *up, int64_t n,
        int act), (be, y, gate, up, n, act))
PROF_OP(copy_rows, "copy_rows", (llm_backend *be, float *y, const float *x, int64_t dim,
        const int32_t *rows, int64_t n), (be, y, x, dim, rows, n))
PROF_OP(add, "add", (llm_backend *be, float *y, const float *a, const float *b, int64_t n),
        (be, y, a, b, n))
PROF_OP(scale, "scale", (llm_backend *be, float *y, const float *x, float s, int64_t n),
        (be, y, x, s, n))
PROF_OP(kv_write, "kv_write", (llm_backend *be, const llm_kv_layer *kv, const float *k,
        const float *v, const int32_t *slots, int64_t n_tokens), (be, kv, k, v, slots, n_tokens))
PROF_OP(attention, attention_label(a),
        (llm_backend *be, const llm_attention_args *a), (be, a))

PROF_OP(top_k, "top_k", (llm_backend *be, int32_t *ids, float *vals, const float *x,
        int64_t n_rows, int64_t n, int32_t k), (be, ids, vals, x, n_rows, n, k))

static llm_status prof_download(llm_backend *be, void *dst, const void *src, size_t n)
{
    prof_begin(be);
    if (n)
        cu_check(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, be->stream),
                 "download");
    prof_end(be, "download");
    return cu_synchronize(be);
}

static void prof_destroy(llm_backend *be)
{
    if (be) {
        cudaStreamSynchronize(be->stream);
        prof_collect(be);
        prof_print(be);
    }
    cu_destroy(be);
}

static struct llm_backend_ops prof_ops;

/* The module's one exported symbol (LLM_BACKEND_ENTRY). */
extern "C" __attribute__((visibility("default"))) const struct llm_backend_ops *
llm_backend_entry_v1(const llm_backend_host *host)
{
    if (!host || host->abi_version != LLM_BACKEND_ABI_VERSION || host->size < sizeof *host)
        return NULL;
    cu_host = host;
    const char *prof = getenv("LLM_CUDA_PROFILE");
    if (prof && *prof && strcmp(prof, "0") != 0) {
        prof_ops = cuda_ops;
        prof_ops.upload = prof_upload;
        prof_ops.download = prof_download;
        prof_ops.matmul = prof_matmul;
        prof_ops.get_rows = prof_get_rows;
        prof_ops.rms_norm = prof_rms_norm;
        prof_ops.rope = prof_rope;
        prof_ops.glu = prof_glu;
        prof_ops.copy_rows = prof_copy_rows;
        prof_ops.add = prof_add;
        prof_ops.scale = prof_scale;
        prof_ops.kv_write = prof_kv_write;
        prof_ops.attention = prof_attention;
        prof_ops.top_k = prof_top_k;
        prof_ops.destroy = prof_destroy;
        return &prof_ops;
    }
    return cu_graph_ops(&cuda_ops);
}
