/* attention.cu - causal attention of a batch of queries over the paged KV cache (f16,
 * bf16 or q8_0 rows).
 *
 * One block per (query token, head), or per (query token, up to 4 heads of one KV head)
 * when the batch is large enough (see launch). Its warps split the query's keys between
 * them (key kp goes to warp (kp / AK) mod the block's warps, AK keys per step, their key
 * and value rows loaded together); each warp keeps, in the manner of flash attention, a
 * running maximum, a running sum and an f32 accumulator of the value rows, its lanes
 * holding interleaved elements of the head. The block then merges its warps' partial
 * results. Keys are found through the sequence's block table, so a sequence's cache is
 * never gathered; grouped-query heads share a KV head by index (h / group).
 *
 * Split-K (flash-decoding): when the batch gives too few blocks to fill the GPU (decoding
 * one or a few sequences), each (query, heads) pair's keys are also split between n_split
 * blocks (blockIdx.z), each taking a contiguous range of them. A block writes its partial
 * result (maximum, sum, unnormalised outputs) to a scratch buffer and counts itself done;
 * the last block of the pair merges the partials in split order, so the result does not
 * depend on which block finished last. The split count depends only on the batch's shape
 * and on whether its queries attend to at least LLM_CUDA_ATT_SPLIT_MIN keys (a hint from
 * the core), and each block works out its range from the query's position on the device,
 * so a captured decode step stays valid as the context grows. */
#include <math.h>

#include "common.cuh"

#define ATT_WARPS 4
#define ATT_WIDE 16
/* keys per warp step: ATT_KEYS in the variants that must give the same bits (grouped heads
 * or not), ATT_KEYS_WIDE in the wide one for few queries (more loads in flight) */
#define ATT_KEYS 4
#define ATT_KEYS_WIDE 8
#define ATT_PER_LANE (LLM_MAX_HEAD_DIM / LLM_WARP_SIZE)

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

/* PER consecutive elements of a f16 or bf16 head starting at element lane * PER, in
 * vector loads (the offset is a multiple of the load width: heads are 2 * 32 * PER bytes) */
template <int KT, int PER>
static __device__ __forceinline__ void kv_lane(const char *head, int lane, float *out)
{
    const char *p = head + lane * PER * 2;
    uint32_t w[PER / 2];
    if constexpr (PER >= 8) {
#pragma unroll
        for (int i = 0; i < PER / 8; i++) {
            const uint4 u = ((const uint4 *)p)[i];
            w[4 * i] = u.x, w[4 * i + 1] = u.y, w[4 * i + 2] = u.z, w[4 * i + 3] = u.w;
        }
    } else if constexpr (PER == 4) {
        const uint2 u = *(const uint2 *)p;
        w[0] = u.x, w[1] = u.y;
    } else {
        w[0] = *(const uint32_t *)p;
    }
#pragma unroll
    for (int i = 0; i < PER / 2; i++) {
        if (KT == LLM_DT_F16) {
            const float2 f = __half22float2(*(const __half2 *)&w[i]);
            out[2 * i] = f.x, out[2 * i + 1] = f.y;
        } else {
            out[2 * i] = __uint_as_float(w[i] << 16);
            out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
}

/* a score q.k made the logit the softmax takes: scaled, then soft-capped */
static __device__ __forceinline__ float att_logit(const att_params &a, float s)
{
    s = __fmul_rn(s, a.scale);
    return a.softcap > 0.0f ? __fmul_rn(a.softcap, tanhf(__fdiv_rn(s, a.softcap))) : s;
}

/* writes element i of the output, and its 16-bit copy when the matmul after it wants one */
static __device__ __forceinline__ void att_store(const att_params &a, int64_t i, float o)
{
    a.out[i] = o;
    if (a.h16) { /* the conversion of the 16-bit matmul after it */
        if (a.t16 == LLM_DT_BF16)
            ((__nv_bfloat16 *)a.h16)[i] = __float2bfloat16_rn(o);
        else
            ((__half *)a.h16)[i] = __float2half_rn(o);
    }
}

/* Split-K: counts the block done; the last of the n_split blocks of its (query, heads) pair
 * merges their partial results for heads h0 .. h0 + ng - 1:
 * out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), a warp per head working out the
 * weights e^(m_s - M) and the sum, then every thread outputs in split order; and resets
 * the counter. The same bits whichever block merges. Needs GM <= the block's warps. */
template <int GM>
static __device__ void split_merge(const att_params &a, int64_t t, int h0, int ng)
{
    constexpr int PL = ATT_SPLIT_MAX / LLM_WARP_SIZE; /* splits per lane */
    __shared__ int s_last;
    __shared__ float s_f[GM][ATT_SPLIT_MAX], s_inv[GM];
    __threadfence(); /* this block's partials are visible before it counts itself done */
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t *c = a.cnt + t * gridDim.y + blockIdx.y;
        s_last = atomicAdd(c, 1) == a.n_split - 1;
        if (s_last)
            *c = 0; /* every other block of the pair has counted: zero for the next launch */
    }
    __syncthreads();
    if (!s_last)
        return;
    __threadfence();
    const int hd = a.head_dim, ns = a.n_split, stride = hd + 2;
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    if (warp < ng) {
        const float *pp = a.part + (t * a.n_head + h0 + warp) * ns * stride;
        float mv[PL], lv[PL], M = -INFINITY;
#pragma unroll
        for (int i = 0; i < PL; i++) {
            const int sp = lane + i * LLM_WARP_SIZE;
            mv[i] = sp < ns ? LLM_LDCG(pp + sp * stride) : -INFINITY;
            lv[i] = sp < ns ? LLM_LDCG(pp + sp * stride + 1) : 0.0f;
            M = fmaxf(M, mv[i]);
        }
#pragma unroll
        for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
            M = fmaxf(M, LLM_SHFL_XOR(M, o));
        float L = 0.0f;
#pragma unroll
        for (int i = 0; i < PL; i++) {
            const int sp = lane + i * LLM_WARP_SIZE;
            const float f = lv[i] > 0.0f ? expf(__fsub_rn(mv[i], M)) : 0.0f;
            if (sp < ns)
                s_f[warp][sp] = f;
            L = __fmaf_rn(lv[i], f, L);
        }
#pragma unroll
        for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
            L = __fadd_rn(L, LLM_SHFL_XOR(L, o));
        if (lane == 0)
            s_inv[warp] = __fdiv_rn(1.0f, L);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < ng * hd; i += blockDim.x) {
        const int g = i / hd, d = i % hd;
        const int64_t head = t * a.n_head + h0 + g;
        const float *pp = a.part + head * ns * stride + 2 + d;
        float o = 0.0f;
        int sp = 0;
        for (; sp + 8 <= ns; sp += 8) { /* the loads first, so that they overlap */
            float v[8];
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[j] = LLM_LDCG(pp + (sp + j) * stride);
#pragma unroll
            for (int j = 0; j < 8; j++)
                o = __fmaf_rn(v[j], s_f[g][sp + j], o);
        }
        for (; sp < ns; sp++)
            o = __fmaf_rn(LLM_LDCG(pp + sp * stride), s_f[g][sp], o);
        att_store(a, head * hd + d, __fmul_rn(o, s_inv[g]));
    }
}

/* The arithmetic is written out as rounded operations (__fmaf_rn and the like) so that the
 * compiler cannot contract it differently in the kernel's variants: a head gives the same
 * bits whichever variant computed it.
 * PER > 0: the head width is 32 * PER and lane l holds elements [l * PER, l * PER + PER),
 * read with vector loads; PER == 0: any width, lane l holds elements l, l + 32, ...
 * GM: query heads per block, all of one KV head (grouped-query attention), so that each key
 * and value row is read once for GM heads; every head's arithmetic is the same as alone. */
template <int KT, int PER, int GM, int W, int AK, bool SPLIT>
static __global__ void __launch_bounds__(W *LLM_WARP_SIZE) k_attention(att_params a)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    constexpr int NJ = PER ? PER : ATT_PER_LANE;
    constexpr bool VEC = PER > 0 && KT != LLM_DT_Q8_0;
    const int64_t t = blockIdx.x;
    const int chunks = (a.group + GM - 1) / GM, c = blockIdx.y % chunks;
    const int kh = blockIdx.y / chunks, h0 = kh * a.group + c * GM, hd = a.head_dim;
    const int ng = a.group - c * GM < GM ? a.group - c * GM : GM; /* heads of this block */
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    const int32_t p = a.q_pos[t];
    const int32_t *bt = a.block_tables + (int64_t)a.q_seq[t] * a.max_blocks;
    const int32_t p0 = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    /* the keys [kb, ke] this block takes: all, or its split's share in whole warp steps */
    int32_t kb = p0, ke = p;
    if constexpr (SPLIT) {
        const int32_t step = W * AK;
        int32_t chunk = (p - p0 + 1 + a.n_split - 1) / a.n_split;
        chunk = (chunk + step - 1) / step * step;
        kb = p0 + (int32_t)blockIdx.z * chunk;
        ke = kb + chunk - 1 < p ? kb + chunk - 1 : p;
    }

#define DIM(j) (PER ? lane * PER + (j) : lane + (j) * LLM_WARP_SIZE)
    float qr[GM][NJ], acc[GM][NJ], m[GM], l[GM];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        const float *q = a.q + (t * a.n_head + h0 + (g < ng ? g : 0)) * hd;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int d = DIM(j);
            qr[g][j] = PER || d < hd ? q[d] : 0.0f;
            acc[g][j] = 0.0f;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    /* each warp takes AK consecutive keys at a time, so that their loads and their
     * reductions overlap */
    for (int32_t k0 = kb + warp * AK; k0 <= ke; k0 += W * AK) {
        float s[GM][AK];
        const char *vr[AK];
        float vv[VEC ? AK : 1][NJ]; /* the value rows, loaded with the keys */
#pragma unroll
        for (int u = 0; u < AK; u++) {
            const int32_t kp = k0 + u <= ke ? k0 + u : ke;
            const int64_t slot =
                (int64_t)bt[kp / a.block_size] * a.block_size + kp % a.block_size;
            const char *kr = a.k + slot * a.row_bytes + kh * a.head_bytes;
            vr[u] = a.v + slot * a.row_bytes + kh * a.head_bytes;
#pragma unroll
            for (int g = 0; g < GM; g++)
                s[g][u] = 0.0f;
            if constexpr (VEC) {
                float kv[NJ];
                kv_lane<KT, NJ>(kr, lane, kv);
                kv_lane<KT, NJ>(vr[u], lane, vv[u]);
#pragma unroll
                for (int g = 0; g < GM; g++)
#pragma unroll
                    for (int j = 0; j < NJ; j++)
                        s[g][u] = __fmaf_rn(qr[g][j], kv[j], s[g][u]);
            } else {
#pragma unroll
                for (int j = 0; j < NJ; j++) {
                    const int d = DIM(j);
                    if (PER || d < hd) {
                        const float kd = kv_at<KT>(kr, d);
#pragma unroll
                        for (int g = 0; g < GM; g++)
                            s[g][u] = __fmaf_rn(qr[g][j], kd, s[g][u]);
                    }
                }
            }
        }
#pragma unroll
        for (int o = LLM_WARP_SIZE / 2; o > 0; o >>= 1)
#pragma unroll
            for (int g = 0; g < GM; g++)
#pragma unroll
                for (int u = 0; u < AK; u++)
                    s[g][u] = __fadd_rn(s[g][u], LLM_SHFL_XOR(s[g][u], o));
        float e[GM][AK];
#pragma unroll
        for (int g = 0; g < GM; g++) {
            float m_new = m[g];
#pragma unroll
            for (int u = 0; u < AK; u++) {
                s[g][u] = att_logit(a, s[g][u]);
                if (k0 + u <= ke)
                    m_new = fmaxf(m_new, s[g][u]);
            }
            const float corr = expf(__fsub_rn(m[g], m_new));
            l[g] = __fmul_rn(l[g], corr);
#pragma unroll
            for (int j = 0; j < NJ; j++)
                acc[g][j] = __fmul_rn(acc[g][j], corr);
#pragma unroll
            for (int u = 0; u < AK; u++) {
                e[g][u] = k0 + u <= ke ? expf(__fsub_rn(s[g][u], m_new)) : 0.0f;
                l[g] = __fadd_rn(l[g], e[g][u]);
            }
            m[g] = m_new;
        }
#pragma unroll
        for (int u = 0; u < AK; u++) {
            if (k0 + u > ke)
                break;
            if constexpr (VEC) {
#pragma unroll
                for (int g = 0; g < GM; g++)
#pragma unroll
                    for (int j = 0; j < NJ; j++)
                        acc[g][j] = __fmaf_rn(e[g][u], vv[u][j], acc[g][j]);
            } else {
#pragma unroll
                for (int j = 0; j < NJ; j++) {
                    const int d = DIM(j);
                    if (PER || d < hd) {
                        const float vd = kv_at<KT>(vr[u], d);
#pragma unroll
                        for (int g = 0; g < GM; g++)
                            acc[g][j] = __fmaf_rn(e[g][u], vd, acc[g][j]);
                    }
                }
            }
        }
    }

    /* merge the warps, head by head: out = sum_w acc_w e^(m_w - M) / sum_w l_w e^(m_w - M) */
    __shared__ float s_m[W], s_l[W];
    __shared__ float s_acc[W][LLM_MAX_HEAD_DIM];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        if (g >= ng)
            break;
        if (lane == 0) {
            s_m[warp] = m[g];
            s_l[warp] = l[g];
        }
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int d = DIM(j);
            if (PER || d < hd)
                s_acc[warp][d] = acc[g][j];
        }
        __syncthreads();
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < W; w++)
            M = fmaxf(M, s_m[w]);
        float f[W], L = 0.0f;
#pragma unroll
        for (int w = 0; w < W; w++) {
            f[w] = s_l[w] > 0.0f ? expf(__fsub_rn(s_m[w], M)) : 0.0f;
            L = __fmaf_rn(s_l[w], f[w], L);
        }
        const int64_t head = t * a.n_head + h0 + g;
        if constexpr (SPLIT) { /* this split's partial result; an empty split's is l = 0 */
            float *pp = a.part + (head * a.n_split + blockIdx.z) * (hd + 2);
            if (threadIdx.x == 0)
                pp[0] = M, pp[1] = L;
            for (int d = threadIdx.x; d < hd; d += blockDim.x) {
                float o = 0.0f;
#pragma unroll
                for (int w = 0; w < W; w++)
                    o = __fmaf_rn(s_acc[w][d], f[w], o);
                pp[2 + d] = o;
            }
        } else {
            const float inv = __fdiv_rn(1.0f, L);
            for (int d = threadIdx.x; d < hd; d += blockDim.x) {
                float o = 0.0f;
#pragma unroll
                for (int w = 0; w < W; w++)
                    o = __fmaf_rn(s_acc[w][d], f[w], o);
                att_store(a, head * hd + d, __fmul_rn(o, inv));
            }
        }
        __syncthreads(); /* before the next head overwrites the shared partials */
    }
    if constexpr (SPLIT)
        split_merge<GM>(a, t, h0, ng);
#undef DIM
}

/* ---- key groups: a key per group of lanes --------------------------------------------
 * The variant for f16 and bf16 caches with heads of 64, 128 or 256 values, outside
 * batch-invariant mode: a key's row is read by LK = D / 8 lanes, 16 bytes each, so that a
 * warp takes 32 / LK keys at once (KG_U per lane group per step) and reduces a score over
 * LK lanes (log2 LK shuffles, shared by the warp's keys) rather than over the whole warp,
 * as k_attention does. Each lane group keeps its own running maximum, sum and accumulator
 * of its 8 values of each head; the block merges them at the end. GM and SPLIT as in
 * k_attention. LLM_CUDA_ATT_KG=0 leaves every case to k_attention. */
#define KG_U 2
template <int KT, int D, int GM, bool SPLIT>
static __global__ void __launch_bounds__(ATT_WARPS *LLM_WARP_SIZE) k_att_kg(att_params a)
{
    LLM_PDL_WAIT();
    LLM_PDL_TRIGGER();
    constexpr int W = ATT_WARPS, LK = D / 8, G = LLM_WARP_SIZE / LK, NP = W * G;
    constexpr int STEP = NP * KG_U; /* keys per block step */
    const int64_t t = blockIdx.x;
    const int chunks = (a.group + GM - 1) / GM, c = blockIdx.y % chunks;
    const int kh = blockIdx.y / chunks, h0 = kh * a.group + c * GM;
    const int ng = a.group - c * GM < GM ? a.group - c * GM : GM;
    const int lane = threadIdx.x % LLM_WARP_SIZE, warp = threadIdx.x / LLM_WARP_SIZE;
    const int grp = lane / LK, li = lane % LK, part = warp * G + grp;
    const int32_t p = a.q_pos[t];
    const int32_t *bt = a.block_tables + (int64_t)a.q_seq[t] * a.max_blocks;
    const int32_t p0 = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    int32_t kb = p0, ke = p;
    if constexpr (SPLIT) {
        int32_t chunk = (p - p0 + 1 + a.n_split - 1) / a.n_split;
        chunk = (chunk + STEP - 1) / STEP * STEP;
        kb = p0 + (int32_t)blockIdx.z * chunk;
        ke = kb + chunk - 1 < p ? kb + chunk - 1 : p;
    }
    float qr[GM][8], acc[GM][8], m[GM], l[GM];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        const float *q = a.q + (t * a.n_head + h0 + (g < ng ? g : 0)) * D + li * 8;
#pragma unroll
        for (int j = 0; j < 8; j++)
            qr[g][j] = q[j], acc[g][j] = 0.0f;
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    /* the warp steps together (its shuffles need every lane); a group's keys past ke are
     * masked */
    for (int32_t kw = kb + warp * G * KG_U; kw <= ke; kw += STEP) {
        const int32_t k0 = kw + grp * KG_U;
        float s[GM][KG_U], vv[KG_U][8];
#pragma unroll
        for (int u = 0; u < KG_U; u++) {
            const int32_t kp = k0 + u <= ke ? k0 + u : ke;
            const int64_t slot =
                (int64_t)bt[kp / a.block_size] * a.block_size + kp % a.block_size;
            const char *kr = a.k + slot * a.row_bytes + kh * a.head_bytes;
            const char *vr = a.v + slot * a.row_bytes + kh * a.head_bytes;
            float kv[8];
            kv_lane<KT, 8>(kr, li, kv);
            kv_lane<KT, 8>(vr, li, vv[u]);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                float d = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++)
                    d = __fmaf_rn(qr[g][j], kv[j], d);
                s[g][u] = d;
            }
        }
#pragma unroll
        for (int o = LK / 2; o > 0; o >>= 1)
#pragma unroll
            for (int g = 0; g < GM; g++)
#pragma unroll
                for (int u = 0; u < KG_U; u++)
                    s[g][u] = __fadd_rn(s[g][u], LLM_SHFL_XOR(s[g][u], o));
#pragma unroll
        for (int g = 0; g < GM; g++) {
            float m_new = m[g], e[KG_U];
#pragma unroll
            for (int u = 0; u < KG_U; u++) {
                s[g][u] = att_logit(a, s[g][u]);
                if (k0 + u <= ke)
                    m_new = fmaxf(m_new, s[g][u]);
            }
            const float corr = m_new == -INFINITY ? 1.0f : expf(__fsub_rn(m[g], m_new));
            l[g] = __fmul_rn(l[g], corr);
#pragma unroll
            for (int u = 0; u < KG_U; u++) {
                e[u] = k0 + u <= ke ? expf(__fsub_rn(s[g][u], m_new)) : 0.0f;
                l[g] = __fadd_rn(l[g], e[u]);
            }
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float v = __fmul_rn(acc[g][j], corr);
#pragma unroll
                for (int u = 0; u < KG_U; u++)
                    v = __fmaf_rn(e[u], vv[u][j], v);
                acc[g][j] = v;
            }
            m[g] = m_new;
        }
    }

    /* merge the lane groups of every warp: out = sum_p acc_p e^(m_p - M) / sum_p l_p e^(m_p - M) */
    __shared__ float s_m[NP][GM], s_l[NP][GM];
    __shared__ float s_acc[NP][GM][D];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        if (li == 0)
            s_m[part][g] = m[g], s_l[part][g] = l[g];
#pragma unroll
        for (int j = 0; j < 8; j++)
            s_acc[part][g][li * 8 + j] = acc[g][j];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < ng * D; i += blockDim.x) {
        const int g = i / D, d = i % D;
        float M = -INFINITY;
#pragma unroll
        for (int q = 0; q < NP; q++)
            M = fmaxf(M, s_m[q][g]);
        float L = 0.0f, o = 0.0f;
#pragma unroll
        for (int q = 0; q < NP; q++) {
            const float f = s_l[q][g] > 0.0f ? expf(__fsub_rn(s_m[q][g], M)) : 0.0f;
            L = __fmaf_rn(s_l[q][g], f, L);
            o = __fmaf_rn(s_acc[q][g][d], f, o);
        }
        const int64_t head = t * a.n_head + h0 + g;
        if constexpr (SPLIT) {
            float *pp = a.part + (head * a.n_split + blockIdx.z) * (D + 2);
            if (d == 0)
                pp[0] = M, pp[1] = L;
            pp[2 + d] = o;
        } else {
            att_store(a, head * D + d, __fmul_rn(o, __fdiv_rn(1.0f, L)));
        }
    }
    if constexpr (SPLIT) {
        __syncthreads();
        split_merge<GM>(a, t, h0, ng);
    }
}

template <int KT, int GM, bool SPLIT>
static void launch_kg(llm_backend *be, dim3 grid, int hd, const att_params &p)
{
    const int threads = ATT_WARPS * LLM_WARP_SIZE;
    if (hd == 64)
        cu_launch(be, k_att_kg<KT, 64, GM, SPLIT>, grid, threads, 0, p);
    else if (hd == 128)
        cu_launch(be, k_att_kg<KT, 128, GM, SPLIT>, grid, threads, 0, p);
    else
        cu_launch(be, k_att_kg<KT, 256, GM, SPLIT>, grid, threads, 0, p);
}

template <int KT, int GM, int W, int AK, bool SPLIT>
static void launch_k(llm_backend *be, dim3 grid, int per, const att_params &p)
{
    const int threads = W * LLM_WARP_SIZE;
    switch (LLM_WARP_SIZE == 32 ? per : 0) {
    case 2: cu_launch(be, k_attention<KT, 2, GM, W, AK, SPLIT>, grid, threads, 0, p); break;
    case 4: cu_launch(be, k_attention<KT, 4, GM, W, AK, SPLIT>, grid, threads, 0, p); break;
    case 8: cu_launch(be, k_attention<KT, 8, GM, W, AK, SPLIT>, grid, threads, 0, p); break;
    case 16: cu_launch(be, k_attention<KT, 16, GM, W, AK, SPLIT>, grid, threads, 0, p); break;
    default: cu_launch(be, k_attention<KT, 0, GM, W, AK, SPLIT>, grid, threads, 0, p); break;
    }
}

template <int KT, int GM, int W>
static void launch_g(llm_backend *be, dim3 grid, int per, const att_params &p)
{
    launch_k<KT, GM, W, W == ATT_WIDE ? ATT_KEYS_WIDE : ATT_KEYS, false>(be, grid, per, p);
}

/* The split of the work, by the size of the batch (f16 and bf16 caches with heads of 64,
 * 128 or 256 take k_att_kg in place of k_attention for the first, second and fourth case,
 * outside batch-invariant mode):
 *  - split-K (p.n_split > 1, chosen by cu_attention when the batch gives fewer than two
 *    blocks per SM, never in batch-invariant mode): blocks of ATT_WARPS warps over a range
 *    of the keys, the query heads of a KV head together as below;
 *  - enough blocks for two per SM when the query heads of a KV head go together
 *    (ATT_GROUP at a time): grouped, each cache row read once for the group; every head
 *    gets the same bits as alone;
 *  - fewer (query, head) pairs than SMs (decoding one or a few sequences): ATT_WIDE warps
 *    per block share the keys, so that the few blocks finish sooner; the sums are then
 *    split differently, so not in batch-invariant mode, where a token's result must not
 *    depend on its batch;
 *  - else ATT_WARPS warps per (query, head). */
#define ATT_GROUP 4

template <int KT>
static void launch(llm_backend *be, int64_t n_tokens, int n_head, int group, int per,
                   const att_params &p)
{
    const int64_t n_kv = n_head / group, chunks = (group + ATT_GROUP - 1) / ATT_GROUP;
    if constexpr (KT == LLM_DT_F16 || KT == LLM_DT_BF16) {
        const int kg = be->att_kg && !be->batch_invariant && LLM_WARP_SIZE == 32 &&
                       (p.head_dim == 64 || p.head_dim == 128 || p.head_dim == 256);
        const dim3 grouped((unsigned)n_tokens, (unsigned)(n_kv * chunks), (unsigned)p.n_split);
        const dim3 single((unsigned)n_tokens, (unsigned)n_head, (unsigned)p.n_split);
        if (kg && p.n_split > 1 && group > 1)
            return launch_kg<KT, ATT_GROUP, true>(be, grouped, p.head_dim, p);
        if (kg && p.n_split > 1)
            return launch_kg<KT, 1, true>(be, single, p.head_dim, p);
        if (kg && group > 1 && n_tokens * n_kv * chunks >= 2 * (int64_t)be->n_sm)
            return launch_kg<KT, ATT_GROUP, false>(be, grouped, p.head_dim, p);
        if (kg && group == 1 && n_tokens * n_head >= 2 * (int64_t)be->n_sm)
            return launch_kg<KT, 1, false>(be, single, p.head_dim, p);
    }
    if (p.n_split > 1 && group > 1)
        launch_k<KT, ATT_GROUP, ATT_WARPS, ATT_KEYS, true>(
            be, dim3((unsigned)n_tokens, (unsigned)(n_kv * chunks), (unsigned)p.n_split), per, p);
    else if (p.n_split > 1)
        launch_k<KT, 1, ATT_WARPS, ATT_KEYS, true>(
            be, dim3((unsigned)n_tokens, (unsigned)n_head, (unsigned)p.n_split), per, p);
    else if (group > 1 && n_tokens * n_kv * chunks >= 2 * (int64_t)be->n_sm)
        launch_g<KT, ATT_GROUP, ATT_WARPS>(be, dim3((unsigned)n_tokens,
                                                    (unsigned)(n_kv * chunks)), per, p);
    else if (!be->batch_invariant && n_tokens * n_head < be->n_sm)
        launch_g<KT, 1, ATT_WIDE>(be, dim3((unsigned)n_tokens, (unsigned)n_head), per, p);
    else
        launch_g<KT, 1, ATT_WARPS>(be, dim3((unsigned)n_tokens, (unsigned)n_head), per, p);
}

/* Split-K's share, when the batch gives fewer than two blocks per SM (blocks of the query
 * heads of one KV head, as launch groups them) and its queries attend to at least
 * be->att_split_min keys (by the hint max_keys; 0: not known, taken as long): about four
 * blocks per SM in all, at most be->att_split per (query, heads) pair, rounded down to a
 * power of two. Shorter contexts keep the unsplit kernel, whose wide blocks finish them
 * sooner than split blocks and their merge (docs/perf/cuda.md). With its scratch; 0 when
 * that cannot be had (recorded). */
static int split_setup(llm_backend *be, int64_t n_tokens, int32_t max_keys, att_params &p)
{
    const int64_t chunks = (p.group + ATT_GROUP - 1) / ATT_GROUP;
    const int64_t rows = p.group > 1 ? (int64_t)(p.n_head / p.group) * chunks : p.n_head;
    const int64_t blocks = n_tokens * rows;
    if (be->batch_invariant || be->att_split <= 1 || blocks >= 2 * (int64_t)be->n_sm)
        return 1;
    int64_t want = (4 * (int64_t)be->n_sm + blocks - 1) / blocks;
    want = want < be->att_split ? want : be->att_split;
    if (max_keys > 0 && max_keys < be->att_split_min)
        return 1;
    int32_t ns = 1;
    while (2 * ns <= want)
        ns *= 2;
    if (ns <= 1)
        return 1;
    const size_t part = (size_t)(n_tokens * p.n_head * ns) * (size_t)(p.head_dim + 2) * 4;
    float *pp = (float *)cu_buffer(be, &be->att_part, &be->att_part_cap, part);
    const size_t cap0 = be->att_cnt_cap;
    int32_t *cnt = (int32_t *)cu_buffer(be, &be->att_cnt, &be->att_cnt_cap,
                                        (size_t)blocks * sizeof(int32_t));
    if (!pp || !cnt)
        return 0;
    if (be->att_cnt_cap != cap0 &&
        !cu_check(be, cudaMemsetAsync(cnt, 0, be->att_cnt_cap, be->stream), "split counters"))
        return 0;
    p.part = pp;
    p.cnt = cnt;
    p.n_split = ns;
    return 1;
}

int32_t cu_attention_keys_class(const llm_backend *be, int32_t max_keys)
{
    if (max_keys <= 0)
        return 0;
    /* split_setup only asks whether it reaches att_split_min */
    return max_keys < be->att_split_min ? 1 : be->att_split_min;
}

void cu_attention(llm_backend *be, const llm_attention_args *a)
{
    act_stale(be);
    if (a->n_tokens <= 0)
        return;
    const llm_kv_layer *kv = a->kv;
    const size_t rb = kv_bytes(kv->dtype, (int64_t)kv->n_head_kv * kv->head_dim);
    if (!rb) {
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: attention over a KV cache of type %u",
                  kv->dtype);
        return;
    }
    if (kv->head_dim > LLM_MAX_HEAD_DIM || kv->n_head_kv <= 0 || a->n_head % kv->n_head_kv ||
        !kv_bytes(kv->dtype, kv->head_dim)) {
        cu_record(be, LLM_ERR_UNSUPPORTED, "cuda: attention with %d heads over %d KV heads of "
                  "width %d in a cache of type %u", a->n_head, kv->n_head_kv, kv->head_dim,
                  kv->dtype);
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
    p.h16 = NULL;
    p.t16 = 0;
    p.part = NULL;
    p.cnt = NULL;
    p.n_split = 1;
    if (cu_flash_attention(be, a, p))
        return;
    if (!split_setup(be, a->n_tokens, a->max_keys, p))
        return;
    const int per = kv->head_dim % LLM_WARP_SIZE == 0 ? kv->head_dim / LLM_WARP_SIZE : 0;
    if (be->fuse & FUSE_ATT_CVT) {
        /* held for a 16-bit matmul of the output, whose conversion it then writes */
        auto &h = be->pend.att;
        h.p = p, h.n_tokens = a->n_tokens, h.per = per, h.dtype = kv->dtype;
        be->pend.kind = PEND_ATT;
        return;
    }
    cu_attention_launch(be, p, a->n_tokens, per, kv->dtype);
}

void cu_attention_launch(llm_backend *be, const att_params &p, int64_t n_tokens, int per,
                         uint32_t dtype)
{
    if (dtype == LLM_DT_F16)
        launch<LLM_DT_F16>(be, n_tokens, p.n_head, p.group, per, p);
    else if (dtype == LLM_DT_BF16)
        launch<LLM_DT_BF16>(be, n_tokens, p.n_head, p.group, per, p);
    else
        launch<LLM_DT_Q8_0>(be, n_tokens, p.n_head, p.group, per, p);
    CU_LAUNCHED(be, "attention");
}
