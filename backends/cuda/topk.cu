/* topk.cu - the k largest values of each row (the top_k op): how the request engine samples
 * from a batch of logits without copying every row to the host.
 *
 * One block per row. Values become order-preserving 32-bit keys (NaN and -inf are left
 * out, +inf counts as FLT_MAX and -0 as +0, the sampler's rules), then a radix select over
 * four 8-bit digits, most significant first, finds the k-th largest key T and how many keys
 * equal to T belong in the top k: each pass counts the digits of the keys that match the
 * digits found so far (a 256-bin histogram in shared memory). A last pass collects every key
 * above T and, of the keys equal to T, the ones of lowest index: each thread takes a
 * contiguous slice of the row, so an exclusive scan of per-thread counts ranks the equal
 * keys by index. The at most k collected entries are sorted by rank (value, then index). */
#include <float.h>

#include "common.cuh"

#define TK_THREADS 1024

/* the key of v, or 0 (below every valid key) when v is NaN or -inf */
static __device__ __forceinline__ uint32_t tk_key(float v)
{
    if (v != v || v == -INFINITY)
        return 0;
    v = v > FLT_MAX ? FLT_MAX : v == 0.0f ? 0.0f : v;
    const uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ float tk_value(uint32_t key)
{
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

static __global__ void __launch_bounds__(TK_THREADS)
k_top_k(int32_t *__restrict__ ids, float *__restrict__ vals, const float *__restrict__ x,
        int64_t n, int k)
{
    __shared__ int hist[256];
    __shared__ int scan[TK_THREADS];
    __shared__ uint32_t c_key[LLM_TOP_K_MAX];
    __shared__ int c_id[LLM_TOP_K_MAX];
    __shared__ uint32_t s_prefix;
    __shared__ int s_need, s_m;
    const int tid = threadIdx.x;
    const float *row = x + (int64_t)blockIdx.x * n;
    ids += (int64_t)blockIdx.x * k;
    vals += (int64_t)blockIdx.x * k;

    uint32_t prefix = 0, mask = 0;
    int need = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += TK_THREADS)
            hist[i] = 0;
        __syncthreads();
        for (int64_t i = tid; i < n; i += TK_THREADS) {
            const uint32_t key = tk_key(row[i]);
            if (key && (key & mask) == prefix)
                atomicAdd(&hist[(key >> shift) & 255u], 1);
        }
        __syncthreads();
        if (tid == 0) {
            int above = 0, d = 255;
            while (d > 0 && above + hist[d] < need)
                above += hist[d--];
            if (above + hist[d] < need) {
                /* fewer than `need` valid keys at all (first pass only): take them all */
                s_prefix = 0;
                s_need = 0;
            } else {
                s_prefix = prefix | ((uint32_t)d << shift);
                s_need = need - above;
            }
        }
        __syncthreads();
        if (s_prefix == 0 && s_need == 0) {
            prefix = 0, need = 0;
            break;
        }
        prefix = s_prefix, need = s_need;
        mask |= 255u << shift;
        __syncthreads(); /* everyone has read s_prefix before thread 0 writes it again */
    }
    /* prefix is now T (0: take every valid key); need keys equal to T are taken */
    const uint32_t t_key = prefix;
    const int64_t per = (n + TK_THREADS - 1) / TK_THREADS;
    const int64_t i0 = (int64_t)tid * per, i1 = i0 + per < n ? i0 + per : n;
    if (tid == 0)
        s_m = 0;
    __syncthreads();
    int eq = 0;
    for (int64_t i = i0; i < i1; i++) {
        const uint32_t key = tk_key(row[i]);
        if (key > t_key) {
            const int at = atomicAdd(&s_m, 1);
            c_key[at] = key, c_id[at] = (int)i;
        }
        eq += key == t_key && t_key != 0;
    }
    scan[tid] = eq;
    __syncthreads();
    for (int o = 1; o < TK_THREADS; o <<= 1) { /* inclusive scan */
        const int v = tid >= o ? scan[tid - o] : 0;
        __syncthreads();
        scan[tid] += v;
        __syncthreads();
    }
    int rank = scan[tid] - eq; /* equal keys before this thread's slice */
    const int base = s_m;      /* every key above T is in; the equal ones follow */
    for (int64_t i = i0; i < i1 && rank < need; i++)
        if (tk_key(row[i]) == t_key) {
            c_key[base + rank] = t_key, c_id[base + rank] = (int)i;
            rank++;
        }
    __syncthreads();
    const int m = base + need;
    if (tid < m) {
        const uint32_t key = c_key[tid];
        const int id = c_id[tid];
        int r = 0;
        for (int j = 0; j < m; j++)
            r += c_key[j] > key || (c_key[j] == key && c_id[j] < id);
        ids[r] = id;
        vals[r] = tk_value(key);
    } else if (tid < k) {
        ids[tid] = -1;
        vals[tid] = -INFINITY;
    }
}

/* one thread per entry: the sampler's arithmetic, as rounded operations */
static __global__ void k_penalize(float *x, int64_t n, const llm_penalty *pen, int64_t n_pen)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_pen)
        return;
    const llm_penalty e = pen[i];
    float *p = x + (int64_t)e.row * n + e.token;
    const float v = *p > 0.0f ? __fdiv_rn(*p, e.repeat) : __fmul_rn(*p, e.repeat);
    *p = __fsub_rn(v, e.sub);
}

void cu_penalize(llm_backend *be, float *x, int64_t n, const llm_penalty *pen, int64_t n_pen)
{
    act_stale(be);
    if (n_pen <= 0)
        return;
    k_penalize<<<(unsigned)((n_pen + 255) / 256), 256, 0, be->stream>>>(x, n, pen, n_pen);
    CU_LAUNCHED(be, "penalize");
}

/* one block per row: the sanitized maximum, then the sum of exp(v - max) in double */
#define SE_THREADS 256
static __global__ void k_row_sumexp(float *z, const float *x, int64_t n)
{
    const float *row = x + (int64_t)blockIdx.x * n;
    __shared__ float s_max[SE_THREADS];
    __shared__ double s_sum[SE_THREADS];
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += SE_THREADS) {
        const float v = row[i];
        m = v != v ? m : fmaxf(m, fminf(v, FLT_MAX));
    }
    s_max[threadIdx.x] = m;
    __syncthreads();
    for (int o = SE_THREADS / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o)
            s_max[threadIdx.x] = fmaxf(s_max[threadIdx.x], s_max[threadIdx.x + o]);
        __syncthreads();
    }
    const float max = s_max[0];
    double sum = 0.0;
    if (max > -INFINITY)
        for (int64_t i = threadIdx.x; i < n; i += SE_THREADS) {
            const float r = row[i];
            if (r == r && r > -INFINITY)
                sum += (double)expf(fminf(r, FLT_MAX) - max);
        }
    s_sum[threadIdx.x] = sum;
    __syncthreads();
    for (int o = SE_THREADS / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o)
            s_sum[threadIdx.x] += s_sum[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        z[blockIdx.x] = (float)s_sum[0];
}

void cu_row_sumexp(llm_backend *be, float *z, const float *x, int64_t n_rows, int64_t n)
{
    act_stale(be);
    if (n_rows <= 0)
        return;
    k_row_sumexp<<<(unsigned)n_rows, SE_THREADS, 0, be->stream>>>(z, x, n);
    CU_LAUNCHED(be, "row_sumexp");
}

void cu_top_k(llm_backend *be, int32_t *ids, float *vals, const float *x, int64_t n_rows,
              int64_t n, int32_t k)
{
    act_stale(be);
    if (k < 1 || k > LLM_TOP_K_MAX || n_rows < 0 || n < 0 || n > INT32_MAX ||
        n_rows > INT32_MAX) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: top_k of k %d over %lld rows of %lld", k,
                  (long long)n_rows, (long long)n);
        return;
    }
    if (n_rows == 0)
        return;
    k_top_k<<<(unsigned)n_rows, TK_THREADS, 0, be->stream>>>(ids, vals, x, n, k);
    CU_LAUNCHED(be, "top_k");
}
