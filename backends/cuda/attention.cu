/* attention.cu - causal attention of a batch of queries over the paged KV cache (f16,
 * bf16 or q8_0 rows).
 *
 * One block per (query token, head). Its warps split the query's keys between them (key
 * kp goes to warp kp mod ATT_WARPS); each warp keeps, in the manner of flash attention,
 * a running maximum, a running sum and an f32 accumulator of the value rows, its lanes
 * holding interleaved elements of the head. The block then merges its warps' partial
 * results. Keys are found through the sequence's block table, so a sequence's cache is
 * never gathered; grouped-query heads share a KV head by index (h / group). */
#include <math.h>

#include "common.cuh"

#define ATT_WARPS 4
#define ATT_PER_LANE (LLM_MAX_HEAD_DIM / LLM_WARP_SIZE)

struct att_params {
    float *out;
    const float *q;
    const char *k, *v;
    size_t row_bytes, head_bytes; /* of a cache row, of one head in it */
    const int32_t *q_pos, *q_seq, *block_tables;
    int32_t n_head, group, head_dim, block_size, max_blocks, window;
    float scale, softcap;
};

/* element d of one head of a cache row */
template <int KT>
static __device__ __forceinline__ float kv_at(const char *head, int d)
{
    if (KT == LLM_DT_F16)
        return __half2float(((const __half *)head)[d]);
    if (KT == LLM_DT_BF16)
        return __uint_as_float((uint32_t)((const uint16_t *)head)[d] << 16);
    const char *b = head + (d / 32) * 34;
    return __half2float(*(const __half *)b) * (float)((const int8_t *)b)[2 + d % 32];
}

template <int KT>
static __global__ void __launch_bounds__(ATT_WARPS *LLM_WARP_SIZE) k_attention(att_params a)
{
    const int64_t t = blockIdx.x;
    const int h = blockIdx.y, kh = h / a.group, hd = a.head_dim;
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    const int32_t p = a.q_pos[t];
    const int32_t *bt = a.block_tables + (int64_t)a.q_seq[t] * a.max_blocks;
    const int32_t p0 = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    const float *q = a.q + (t * a.n_head + h) * hd;

    float qr[ATT_PER_LANE], acc[ATT_PER_LANE];
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        const int d = lane + j * LLM_WARP_SIZE;
        qr[j] = d < hd ? q[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int32_t kp = p0 + warp; kp <= p; kp += ATT_WARPS) {
        const int64_t slot = (int64_t)bt[kp / a.block_size] * a.block_size + kp % a.block_size;
        const char *kr = a.k + slot * a.row_bytes + kh * a.head_bytes;
        const char *vr = a.v + slot * a.row_bytes + kh * a.head_bytes;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < ATT_PER_LANE; j++) {
            const int d = lane + j * LLM_WARP_SIZE;
            if (d < hd)
                s += qr[j] * kv_at<KT>(kr, d);
        }
#pragma unroll
        for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
            s += LLM_SHFL_XOR(s, o);
        s *= a.scale;
        if (a.softcap > 0.0f)
            s = a.softcap * tanhf(s / a.softcap);
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new), e = expf(s - m_new);
        l = l * corr + e;
#pragma unroll
        for (int j = 0; j < ATT_PER_LANE; j++) {
            const int d = lane + j * LLM_WARP_SIZE;
            if (d < hd)
                acc[j] = acc[j] * corr + e * kv_at<KT>(vr, d);
        }
        m = m_new;
    }

    /* merge the warps: out = sum_w acc_w e^(m_w - M) / sum_w l_w e^(m_w - M) */
    __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS];
    __shared__ float s_acc[ATT_WARPS][LLM_MAX_HEAD_DIM];
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        const int d = lane + j * LLM_WARP_SIZE;
        if (d < hd)
            s_acc[warp][d] = acc[j];
    }
    __syncthreads();
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++)
        M = fmaxf(M, s_m[w]);
    float f[ATT_WARPS], L = 0.0f;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++) {
        f[w] = s_l[w] > 0.0f ? expf(s_m[w] - M) : 0.0f;
        L += s_l[w] * f[w];
    }
    const float inv = 1.0f / L;
    float *out = a.out + (t * a.n_head + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; w++)
            o += s_acc[w][d] * f[w];
        out[d] = o * inv;
    }
}

void cu_attention(llm_backend *be, const llm_attention_args *a)
{
    if (a->n_tokens <= 0)
        return;
    const llm_kv_layer *kv = a->kv;
    const size_t rb = kv_bytes(kv->dtype, (int64_t)kv->n_head_kv * kv->head_dim);
    if (!rb) {
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: attention over a KV cache of type %u",
                  kv->dtype);
        return;
    }
    if (kv->head_dim > LLM_MAX_HEAD_DIM || kv->n_head_kv <= 0 || a->n_head % kv->n_head_kv) {
        cu_record(be, LLM_ERR_INVALID_ARG, "cuda: attention with %d heads over %d KV heads of "
                  "width %d", a->n_head, kv->n_head_kv, kv->head_dim);
        return;
    }
    att_params p;
    p.out = a->out;
    p.q = a->q;
    p.k = (const char *)kv->k;
    p.v = (const char *)kv->v;
    p.row_bytes = rb;
    p.head_bytes = kv_bytes(kv->dtype, kv->head_dim);
    p.q_pos = a->q_pos;
    p.q_seq = a->q_seq;
    p.block_tables = a->block_tables;
    p.n_head = a->n_head;
    p.group = a->n_head / kv->n_head_kv;
    p.head_dim = kv->head_dim;
    p.block_size = a->block_size;
    p.max_blocks = a->max_blocks;
    p.window = a->window;
    p.scale = a->scale;
    p.softcap = a->softcap;
    const dim3 grid((unsigned)a->n_tokens, (unsigned)a->n_head);
    const int threads = ATT_WARPS * LLM_WARP_SIZE;
    if (kv->dtype == LLM_DT_F16)
        k_attention<LLM_DT_F16><<<grid, threads, 0, be->stream>>>(p);
    else if (kv->dtype == LLM_DT_BF16)
        k_attention<LLM_DT_BF16><<<grid, threads, 0, be->stream>>>(p);
    else
        k_attention<LLM_DT_Q8_0><<<grid, threads, 0, be->stream>>>(p);
    CU_LAUNCHED(be, "attention");
}
