/* common.cuh - what the CUDA backend's source files share: the backend instance, the
 * prepared weight, error recording, and the launch helpers. Private to backends/cuda/. */
#ifndef LLM_CUDA_COMMON_CUH
#define LLM_CUDA_COMMON_CUH

#include "compat.h"

extern "C" {
#include "../../lib/backend.h"
}

#define HIDDEN __attribute__((visibility("hidden")))

/* The functions libllm lent the module (errors, logging); set by the entry point. */
extern HIDDEN const llm_backend_host *cu_host;

/* Up to MQ_MATS matrix-vector products of the same quantized activations (the act buffer's
 * q, d, s) with weights of one type and row length, held back to run as one launch (q, k
 * and v after one norm; gate and up): mmvq.cu. */
#define MQ_MATS 3
struct mq_pend {
    uint32_t t;
    int64_t k, n;
    size_t rb;
    const void *q, *d, *s;
    int nm;
    const uint8_t *w[MQ_MATS];
    float *y[MQ_MATS];
    int64_t ldy[MQ_MATS], rows[MQ_MATS];
};

/* cuBLAS products y = x·Wᵀ of 16-bit operands (matmul.cu): held back so that the next of
 * the same activations and shape runs with it as one strided batch; the second's weight
 * and output lie dw elements and dy floats after the first's. */
struct gemm_pend {
    const void *w, *x; /* rows x k (stride ldw), n x k (stride k) */
    float *y;
    int64_t rows, k, n, ldw, ldy, dw, dy;
    int bf16, count;
};

/* The arguments of the attention kernels (attention.cu, flash.cu). */
struct att_params {
    float *out;
    const float *q;
    const char *k, *v;
    size_t row_bytes, head_bytes; /* of a cache row, of one head in it */
    const int32_t *q_pos, *q_seq, *block_tables;
    int32_t n_head, group, head_dim, block_size, max_blocks, window;
    float scale, softcap;
    /* the decode kernel also writes out rounded to 16 bits (t16: LLM_DT_F16 or
     * LLM_DT_BF16) here, for the 16-bit matmul after it; NULL: not */
    void *h16;
    uint32_t t16;
    /* split-K decoding: n_split > 1 blocks share each (query, heads) pair's keys and write
     * partial results (part: per head and split, the maximum, the sum and head_dim
     * unnormalised outputs); the last of them to finish (counted in cnt, one counter per
     * (query, block row), zero between launches) merges them in split order */
    float *part;
    int32_t *cnt;
    int32_t n_split;
};

struct llm_backend {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    llm_status err;           /* first error since the last synchronize */
    char err_msg[512];
    /* scratch for the dequantize + cuBLAS path: f16/bf16 weights and activations */
    void *scratch;
    size_t scratch_cap;
    /* activations rounded as the CPU rounds them before a matmul */
    void *act;
    size_t act_cap;
    /* expert probabilities of moe_route */
    void *route;
    size_t route_cap;
    /* split-K decode attention's partial results and counters (attention.cu) */
    void *att_part, *att_cnt;
    size_t att_part_cap, att_cnt_cap;
    int att_split;      /* most splits of a query's keys (LLM_CUDA_ATT_SPLIT; 1: none) */
    int att_split_min;  /* fewest keys to split (LLM_CUDA_ATT_SPLIT_MIN) */
    int att_kg;         /* the key-group attention kernel (LLM_CUDA_ATT_KG=0: off) */
    int n_sm;
    int batch_invariant;     /* LLM_CUDA_BATCH_INVARIANT: no cuBLAS path (see matmul.cu) */
    int no_mmvq;             /* LLM_CUDA_NO_MMVQ: the float matrix-vector kernel for all types */
    int no_f16_weights;      /* LLM_CUDA_F16_WEIGHTS=0: expand quantized weights per call */
    /* what the act buffer holds when it holds mmvq.cu's quantized activations or the 16-bit
     * kernel's converted ones: the next matmul of the same rows (q, k, v after one norm;
     * gate, up) reuses them. Every other op, and any matmul that writes over those rows,
     * makes them stale. */
    struct {
        const float *x;
        int64_t ldx, k, n;
        int mode, valid;
    } act_q8;
    /* One op held back so that the op after it can take it into its own kernel (see
     * "deferred ops" in cuda.cu): a residual add into the RMS norm after it, a glu into
     * the quantization of the matmul that reads its output, the ropes of q and k into
     * the KV write after them, a norm or a decode attention into the 16-bit conversion
     * after it, matrix-vector products or cuBLAS products into one launch with the next
     * of the same activations (and shape, for cuBLAS). Every other op
     * launches it first (act_stale). LLM_CUDA_FUSE=0 launches each op alone. */
    struct {
        int kind;           /* PEND_NONE, PEND_ADD, PEND_GLU, PEND_ROPE, PEND_MMVQ, PEND_NORM,
                             * PEND_ATT, PEND_GEMM */
        float *y;           /* what the op writes */
        const float *a, *b; /* add: y = a + b; glu: gate, up */
        int64_t n;          /* elements */
        int act;
        struct {            /* PEND_ROPE: one or two ropes (q, then k) of the same tokens */
            float *x[2];
            int32_t heads[2], n_x;
            int64_t n_tokens;
            int32_t head_dim, n_rot;
            const int32_t *pos;
            float theta_scale, freq_scale;
            const float *ff;
            int neox;
        } rope;
        mq_pend mq;         /* PEND_MMVQ: matrix-vector products of the same activations */
        struct {            /* PEND_ATT: decode attention (attention.cu) */
            att_params p;
            int64_t n_tokens;
            int per;
            uint32_t dtype;
        } att;
        struct {            /* PEND_NORM: an RMS norm (with the add it took in: a, b) */
            float *y, *x;
            const float *a, *b, *w;
            int64_t rows, dim;
            float eps;
        } norm;
        gemm_pend gemm;     /* PEND_GEMM: cuBLAS products (matmul.cu) */
    } pend;
    int cc;       /* compute capability, major * 10 + minor */
    int flash;    /* FLASH_* bits: tensor-core attention (flash.cu) for prompts (default), for
                   * decode batches (LLM_CUDA_FLASH=3; slower for now); 0: attention.cu's only */
    int pdl;  /* start the decode kernels early (cu_launch); LLM_CUDA_PDL=0 turns it off */
    int early; /* matrix-vector kernels started early load their first weights before
                * they wait (mmvq.cu); LLM_CUDA_EARLY=0 turns it off */
    int fuse; /* FUSE_* bits: which deferrals are on (LLM_CUDA_FUSE, default all) */
    struct prof_state *prof; /* LLM_CUDA_PROFILE: per-op event timings */
    struct graph_state *graph; /* recorded ops and captured graphs (graph.cu) */
    int capturing;             /* the stream is being captured into a graph */
    int graphs;                /* LLM_CUDA_GRAPHS=0 clears it: every op runs at once */
};

enum { PEND_NONE, PEND_ADD, PEND_GLU, PEND_ROPE, PEND_MMVQ, PEND_NORM, PEND_ATT, PEND_GEMM };
enum { FLASH_PROMPT = 1, FLASH_DECODE = 2, FLASH_ALL = 3 };
enum {
    FUSE_ADD_NORM = 1, FUSE_GLU_Q8 = 2, FUSE_ROPE_KV = 4, FUSE_MMVQ = 8, FUSE_NORM_CVT = 16,
    FUSE_ATT_CVT = 32, FUSE_GEMM = 64, FUSE_NORM_Q8 = 128, FUSE_ALL = 255
};
/* split-K decode attention: splits of a query's keys by default and at most
 * (LLM_CUDA_ATT_SPLIT sets it; 1 turns splitting off), and the fewest keys a batch's
 * queries must attend to for it (LLM_CUDA_ATT_SPLIT_MIN) */
enum { ATT_SPLIT_DEFAULT = 64, ATT_SPLIT_MAX = 128, ATT_SPLIT_MIN = 512 };

/* The op table that replays decode steps as CUDA graphs over the ops of `plain` (graph.cu). */
HIDDEN const struct llm_backend_ops *cu_graph_ops(const struct llm_backend_ops *plain);
/* Drops the captured graphs: a buffer they use was freed. */
HIDDEN void cu_graph_forget(llm_backend *be);

/* Launches the deferred op, if any (cuda.cu). */
HIDDEN void cu_flush(llm_backend *be);
/* Launches held-back matrix-vector products as one kernel (mmvq.cu; the 16-bit ones:
 * cu_mv16_launch, matmul.cu). */
HIDDEN void cu_mmvq_launch(llm_backend *be, const mq_pend &p);
HIDDEN void cu_mv16_launch(llm_backend *be, const mq_pend &p);
/* Launches held-back cuBLAS products (matmul.cu). */
HIDDEN void cu_gemm_launch(llm_backend *be, const gemm_pend &g);
/* Holds back a matrix-vector product of the act buffer's activations (q, d, s) with weight
 * rows wd, joining the held-back ones when it can (FUSE_MMVQ), or launches it. */
HIDDEN void cu_mq_queue(llm_backend *be, uint32_t t, int64_t k, int64_t n, size_t rb,
                        const void *q, const void *d, const void *s, const uint8_t *wd, float *y,
                        int64_t ldy, int64_t rows);

/* The matrices of one launch of held-back products: matrix m takes blocks [first[m],
 * first[m + 1]); an unused slot has first = UINT_MAX. */
struct mq_set {
    const uint8_t *w[MQ_MATS];
    float *y[MQ_MATS];
    int64_t ldy[MQ_MATS], rows[MQ_MATS];
    unsigned first[MQ_MATS];
};
static_assert(MQ_MATS == 3, "mq_pick picks a matrix out of three");

/* The launch's matrices, `per` rows to a block; returns the number of blocks. */
static inline unsigned mq_set_of(const mq_pend &p, int64_t per, mq_set *S)
{
    unsigned blocks = 0;
    for (int m = 0; m < MQ_MATS; m++) {
        const bool on = m < p.nm;
        S->w[m] = on ? p.w[m] : NULL, S->y[m] = on ? p.y[m] : NULL;
        S->ldy[m] = on ? p.ldy[m] : 0, S->rows[m] = on ? p.rows[m] : 0;
        S->first[m] = on ? blocks : 0xffffffffu;
        if (on)
            blocks += (unsigned)((p.rows[m] + per - 1) / per);
    }
    return blocks;
}

/* This block's matrix (selects, not an indexed load of the parameters) and its block
 * index within it. */
struct mq_one {
    const uint8_t *w;
    float *y;
    int64_t ldy, rows;
    unsigned bx;
};
static __device__ __forceinline__ mq_one mq_pick(const mq_set &S)
{
    const unsigned b = blockIdx.x;
    const int m = b >= S.first[2] ? 2 : b >= S.first[1] ? 1 : 0;
    mq_one o;
    o.w = m == 2 ? S.w[2] : m == 1 ? S.w[1] : S.w[0];
    o.y = m == 2 ? S.y[2] : m == 1 ? S.y[1] : S.y[0];
    o.ldy = m == 2 ? S.ldy[2] : m == 1 ? S.ldy[1] : S.ldy[0];
    o.rows = m == 2 ? S.rows[2] : m == 1 ? S.rows[1] : S.rows[0];
    o.bx = b - (m == 2 ? S.first[2] : m == 1 ? S.first[1] : 0u);
    return o;
}

/* Called first by every op that is not a matmul taking the deferred op in: the deferred op
 * is launched, and the act buffer's quantized activations are no longer trusted. */
static inline void act_stale(llm_backend *be)
{
    if (be->pend.kind != PEND_NONE)
        cu_flush(be);
    be->act_q8.valid = 0;
}

/* Whether the act buffer holds rows x (n of k, stride ldx) prepared in this mode. */
static inline bool act_cached(const llm_backend *be, const float *x, int64_t ldx, int64_t k,
                              int64_t n, int mode)
{
    return be->act_q8.valid && be->act_q8.x == x && be->act_q8.ldx == ldx &&
           be->act_q8.k == k && be->act_q8.n == n && be->act_q8.mode == mode;
}

/* Records that the act buffer now holds rows x in this mode. */
static inline void act_keep(llm_backend *be, const float *x, int64_t ldx, int64_t k, int64_t n,
                            int mode)
{
    be->act_q8.x = x, be->act_q8.ldx = ldx, be->act_q8.k = k, be->act_q8.n = n;
    be->act_q8.mode = mode, be->act_q8.valid = 1;
}

/* A product y (n rows of `rows`, stride ldy) written over the rows x it read leaves them
 * stale for the next matmul. */
static inline void act_written(llm_backend *be, const float *y, int64_t ldy, int64_t rows,
                               const float *x, int64_t ldx, int64_t k, int64_t n)
{
    const char *xb = (const char *)x, *xe = (const char *)(x + (n - 1) * ldx + k);
    const char *yb = (const char *)y, *ye = (const char *)(y + (n - 1) * ldy + rows);
    if (yb < xe && xb < ye)
        act_stale(be);
}

/* A prepared weight: the device copy of the tensor's bytes (extra points here). */
typedef struct cu_weight {
    void *data;    /* rows of row_bytes, as in the file, then WEIGHT_PAD zero bytes */
    int device;
    /* the quantized weight expanded to f16 once, for the cuBLAS path (matmul.cu): made on
     * first use where the device has room; state 0 not tried, 1 made, -1 not made */
    void *f16;
    int f16_state;
} cu_weight;

#define WEIGHT_PAD 16

static inline const void *wdata(const llm_tensor *w)
{
    return w && w->data && w->extra ? ((const cu_weight *)w->extra)->data : NULL;
}

/* Records the first error of the queued work (reported by synchronize). */
HIDDEN void cu_record(llm_backend *be, llm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Checks a runtime call or a launch; records a failure with where it happened. */
HIDDEN int cu_check(llm_backend *be, cudaError_t e, const char *what);
#define CU_LAUNCHED(be, what) cu_check((be), cudaGetLastError(), (what))

/* A device buffer of at least n bytes that grows (waiting for queued work that may still
 * read the old one, and forgetting the graphs that use it); NULL with an error recorded on
 * failure, and during a graph capture, which cannot wait. */
HIDDEN void *cu_buffer(llm_backend *be, void **buf, size_t *cap, size_t n);
static inline void *cu_scratch(llm_backend *be, size_t n)
{
    return cu_buffer(be, &be->scratch, &be->scratch_cap, n);
}

/* Launches kernel k on the backend's stream. Where the device allows it (be->pdl), the
 * kernel may start while the one before it is still running, so k must begin with
 * LLM_PDL_WAIT(); LLM_PDL_TRIGGER(); (compat.h). Used for the small kernels of a decode
 * step, whose launch gaps would otherwise add up to a good part of the step. */
template <typename... P, typename... A>
static inline void cu_launch(llm_backend *be, void (*k)(P...), dim3 grid, dim3 block,
                             size_t smem, A... args)
{
#ifndef LLM_HIP
    if (be->pdl) {
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem;
        cfg.stream = be->stream, cfg.attrs = at, cfg.numAttrs = 1;
        (void)cudaLaunchKernelEx(&cfg, k, ((P)args)...);
        return;
    }
#endif
    k<<<grid, block, smem, be->stream>>>(((P)args)...);
}

static inline unsigned cdiv(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }

/* ---- device helpers shared by the kernels of matmul.cu and mmvq.cu -------------------- */

/* A kernel that reads no output of the kernel before it until some point (the matrix-vector
 * kernels' weights) waits there, once: LLM_PDL_WAIT() and LLM_PDL_TRIGGER() the first time
 * it is called with waited false. */
static __device__ __forceinline__ void pdl_wait_once(bool &waited)
{
    if (!waited) {
        LLM_PDL_WAIT();
        LLM_PDL_TRIGGER();
        waited = true;
    }
}

/* what the act buffer holds: activations quantized for mmvq.cu's kernels (see there),
 * converted to f16 / bf16 for the 16-bit kernels and cuBLAS, or rounded to the Q8_0 / Q8_K
 * grid and stored as f16 for cuBLAS with expanded quantized weights (act16, matmul.cu) */
enum { ACT_Q8_0, ACT_Q8_K, ACT_F16, ACT_BF16, ACT_Q8_0_H, ACT_Q8_K_H };

/* GELU (tanh form) of the input rounded to f16, rounded to f16: the CPU backend's table. */
static __device__ __forceinline__ float gelu_f16(float x)
{
    if (x <= -10.0f)
        return 0.0f;
    if (x >= 10.0f)
        return x;
    const float h = __half2float(__float2half_rn(x));
    const float c = 0.7978845608028654f;
    const float g = 0.5f * h * (1.0f + tanhf(c * h * (1.0f + 0.044715f * h * h)));
    return __half2float(__float2half_rn(g));
}

/* one element of glu: act(gate) * up */
static __device__ __forceinline__ float glu_value(float g, float u, int act)
{
    const float a = act == LLM_ACT_GELU_TANH ? gelu_f16(g) : g / (1.0f + expf(-g));
    return a * u;
}

/* the f16 at p (2-byte aligned) */
static __device__ __forceinline__ float f16at(const uint8_t *p)
{
    return __half2float(*(const __half *)p);
}

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
        v += LLM_SHFL_XOR(v, o);
    return v;
}

/* The end of a matrix-vector kernel of W warps whose warp groups of KS take R rows from r0
 * (warp `warp % KS` of a group one part of each row): every warp's sums reduced over its
 * lanes, the KS parts of a row added in part order through shared memory, the rows below
 * `rows` stored for the n tokens by lane 0 of the group's first warp. Every thread of the
 * block calls it (a barrier when KS > 1); the order of the sums never depends on NT. */
template <int W, int R, int NT, int KS>
static __device__ __forceinline__ void rows_store(float (&acc)[R][NT], int lane, int warp,
                                                  int64_t r0, int64_t rows, float *y,
                                                  int64_t ldy, int n)
{
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
            acc[i][j] = warp_sum(acc[i][j]);
    if (KS > 1) {
        __shared__ float part[W][R][NT];
        if (lane == 0)
#pragma unroll
            for (int i = 0; i < R; i++)
#pragma unroll
                for (int j = 0; j < NT; j++)
                    part[warp][i][j] = acc[i][j];
        __syncthreads();
        if (warp % KS != 0)
            return;
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int j = 0; j < NT; j++) {
                float t = part[warp][i][j];
#pragma unroll
                for (int q = 1; q < KS; q++)
                    t += part[warp + q][i][j];
                acc[i][j] = t;
            }
    }
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
            if (j < n && lane == 0 && r0 + i < rows)
                y[j * ldy + r0 + i] = acc[i][j];
}

/* Over 32 consecutive lanes (one Q8 group): the maximum of non-negative floats, the sum
 * of ints, and the first lane whose flag is set (-1 if none). One instruction each where
 * the hardware has warp reductions. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(LLM_HIP)
static __device__ __forceinline__ float g32_max(float a)
{
    return __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(a)));
}
static __device__ __forceinline__ int g32_sum(int v) { return __reduce_add_sync(0xffffffffu, v); }
static __device__ __forceinline__ int g32_first(bool f)
{
    return __ffs(__ballot_sync(0xffffffffu, f)) - 1;
}
#else
static __device__ __forceinline__ float g32_max(float a)
{
#pragma unroll
    for (int m = 16; m > 0; m >>= 1)
        a = fmaxf(a, LLM_SHFL_XOR(a, m));
    return a;
}
static __device__ __forceinline__ int g32_sum(int v)
{
#pragma unroll
    for (int m = 16; m > 0; m >>= 1)
        v += LLM_SHFL_XOR(v, m);
    return v;
}
static __device__ __forceinline__ int g32_first(bool f)
{
    int l = f ? (int)(threadIdx.x % 32) : 32;
#pragma unroll
    for (int m = 16; m > 0; m >>= 1)
        l = min(l, LLM_SHFL_XOR(l, m));
    return l < 32 ? l : -1;
}
#endif

/* Q8_K's reference value of a block of 256 threads from registers: thread i holds v, element
 * i of a 256-block (0 where in is false); the first element of the largest magnitude,
 * signed (0 when all are 0). The block must call it together, once. */
static __device__ __forceinline__ float q8k_block_max_reg(float v, bool in)
{
    __shared__ float s_abs[8], s_val[8];
    const float f = in ? fabsf(v) : 0.0f;
    const float a = g32_max(f);
    const int first = g32_first(f == a);
    const float val = LLM_SHFL(in ? v : 0.0f, first < 0 ? 0 : first, 32);
    const int g = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0)
        s_abs[g] = a, s_val[g] = val;
    __syncthreads();
    float ba = s_abs[0], mx = s_val[0];
#pragma unroll
    for (int e = 1; e < 8; e++)
        if (s_abs[e] > ba)
            ba = s_abs[e], mx = s_val[e];
    return ba > 0.0f ? mx : 0.0f;
}

/* Q8_K's reference value of a block of 256 threads, thread i holding x[i] of one 256-block
 * (in: whether that element exists): the first element of the largest magnitude, signed
 * (0 when all are 0). Every thread gets it; the block must call it together. */
static __device__ __forceinline__ float q8k_block_max(const float *xb, float v, bool in)
{
    __shared__ float s_abs[256 / LLM_WARP_SIZE];
    __shared__ int s_idx[256 / LLM_WARP_SIZE];
    __shared__ float s_max;
    float a = in ? fabsf(v) : -1.0f;
    int idx = (int)threadIdx.x;
#pragma unroll
    for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1) {
        const float a2 = LLM_SHFL_XOR(a, o);
        const int i2 = LLM_SHFL_XOR(idx, o);
        if (a2 > a || (a2 == a && i2 < idx))
            a = a2, idx = i2;
    }
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    if (lane == 0)
        s_abs[warp] = a, s_idx[warp] = idx;
    __syncthreads();
    if (threadIdx.x == 0) {
        float ba = s_abs[0];
        int bi = s_idx[0];
        for (int w = 1; w < 256 / LLM_WARP_SIZE; w++)
            if (s_abs[w] > ba || (s_abs[w] == ba && s_idx[w] < bi))
                ba = s_abs[w], bi = s_idx[w];
        s_max = ba > 0.0f ? xb[bi] : 0.0f;
    }
    __syncthreads();
    return s_max;
}

/* Bytes of n elements of a KV cache row (f16, bf16, or q8_0 blocks of 32); 0 for other
 * types. */
static inline size_t kv_bytes(uint32_t dtype, int64_t n)
{
    if (dtype == LLM_DT_F16 || dtype == LLM_DT_BF16)
        return (size_t)n * 2;
    if (dtype == LLM_DT_Q8_0 && n % 32 == 0)
        return (size_t)(n / 32) * 34;
    return 0;
}

/* What an attention kernel needs (attention.cu, flash.cu): the llm_attention_args with the
 * cache's row geometry worked out and group = query heads per KV head. */
/* ops defined in matmul.cu, attention.cu, flash.cu and topk.cu */
HIDDEN int cu_dtype_supported(uint32_t t);
HIDDEN void cu_matmul(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w,
                      const float *x, int64_t ldx, int64_t n);
HIDDEN void cu_matmul_id(llm_backend *be, float *y, const llm_tensor *w, int32_t n_expert,
                         const float *x, int64_t ldx, int64_t ldx_k, const int32_t *ids,
                         int32_t k, int64_t n);
/* mmvq.cu: the 8-bit-activation matrix-vector product; 0 when w's type has none */
HIDDEN int cu_mmvq_supported(uint32_t dtype);
HIDDEN int cu_mmvq(llm_backend *be, float *y, int64_t ldy, const llm_tensor *w,
                   const uint8_t *wd, const float *x, int64_t ldx, int64_t n);
HIDDEN void cu_get_rows(llm_backend *be, float *y, const llm_tensor *w, const int32_t *ids,
                        int64_t n);
HIDDEN void cu_attention(llm_backend *be, const llm_attention_args *a);
/* max_keys (llm_attention_args) reduced to the least value for which cu_attention splits
 * the keys the same way (0 stays 0: not known) */
HIDDEN int32_t cu_attention_keys_class(const llm_backend *be, int32_t max_keys);
/* Launches the decode attention kernel (held back by cu_attention as PEND_ATT). */
HIDDEN void cu_attention_launch(llm_backend *be, const att_params &p, int64_t n_tokens,
                                int per, uint32_t dtype);
/* flash.cu: attention on tensor cores of long runs of queries of one sequence (prompts),
 * and with LLM_CUDA_FLASH=3 of decode batches; 0 when the arguments are not ones it takes
 * (the caller then uses attention.cu's kernel) */
HIDDEN int cu_flash_attention(llm_backend *be, const llm_attention_args *a,
                              const att_params &p);
/* norm.cu: RMS norm of rows of dim, y = x / rms(x) * w (w may be NULL). With a set, x is
 * first computed as a + b and written (the residual add before the norm), for the dims
 * cu_norm_fusable takes. y may be b, x may be a. */
HIDDEN int cu_norm_fusable(int64_t dim);
HIDDEN void cu_norm(llm_backend *be, float *y, float *x, const float *a, const float *b,
                    const float *w, int64_t rows, int64_t dim, float eps);
/* The same, also writing y rounded to 16 bits (LLM_DT_F16 or LLM_DT_BF16, as the 16-bit
 * matrix-vector kernel's activation conversion rounds it) to h16 [rows][dim]. */
HIDDEN void cu_norm16(llm_backend *be, float *y, float *x, const float *a, const float *b,
                      const float *w, int64_t rows, int64_t dim, float eps, uint32_t t16,
                      void *h16);
/* The same (no 16-bit copy), also quantizing y for the 8-bit matrix-vector kernels as
 * mmvq.cu's activation quantization does (mode ACT_Q8_0 or ACT_Q8_K), into q [rows][dim],
 * d and s [rows][dim / 32]: the same bits as cu_norm followed by that quantization. */
HIDDEN void cu_norm_q8(llm_backend *be, float *y, float *x, const float *a, const float *b,
                       const float *w, int64_t rows, int64_t dim, float eps, int mode,
                       int8_t *q, float *d, int *s);
/* topk.cu */
HIDDEN void cu_top_k(llm_backend *be, int32_t *ids, float *vals, const float *x,
                     int64_t n_rows, int64_t n, int32_t k);
HIDDEN void cu_penalize(llm_backend *be, float *x, int64_t n, const llm_penalty *pen,
                        int64_t n_pen);
HIDDEN void cu_row_sumexp(llm_backend *be, float *z, const float *x, int64_t n_rows, int64_t n);

#endif
