/* quants.h - CPU kernels for the quantized GGUF block formats.
 *
 * For each weight type T: to_float (dequantise a row), and vec_dot (dot product of a row
 * of T with a row of activations quantised to T's vec_dot_type). Activations are
 * quantised once per matmul with from_float of the vec_dot_type (Q8_0, Q8_1 or Q8_K),
 * exactly as llama.cpp does, so that results match it closely.
 *
 * Two tables: llm__quant_ref holds plain scalar C (the reference the tests compare
 * against); llm__quant_best holds the fastest kernels this CPU supports (AVX2/FMA/F16C,
 * then AVX-512 with VNNI and BF16 where present; NEON, with the dot-product instructions
 * where present, on 64-bit ARM; chosen at run time), falling back to the
 * reference. Private. */
#ifndef LLM_CPU_QUANTS_H
#define LLM_CPU_QUANTS_H

#include <stddef.h>
#include <stdint.h>

#include "../../lib/dtype.h"

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t llm_f16;  /* IEEE half, as stored */
typedef uint16_t llm_bf16; /* bfloat16, as stored */

typedef struct { llm_f16 d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { llm_f16 d; llm_f16 m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
typedef struct { llm_f16 d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { llm_f16 d; llm_f16 m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { llm_f16 d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { llm_f16 d; llm_f16 s; int8_t qs[QK8_1]; } block_q8_1; /* s = d * sum(qs) */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; llm_f16 d; llm_f16 dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; llm_f16 d; } block_q3_K;
typedef struct { llm_f16 d; llm_f16 dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { llm_f16 d; llm_f16 dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; llm_f16 d; } block_q6_K;
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

/* Dequantise n elements (a multiple of the block size). */
typedef void (*llm_to_float_fn)(const void *src, float *dst, int64_t n);
/* Quantise n floats (a multiple of the block size) into blocks. */
typedef void (*llm_from_float_fn)(const float *src, void *dst, int64_t n);
/* *s = dot(x, y) over n elements; x is a row of the weight type, y of its vec_dot_type. */
typedef void (*llm_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
/* A tile of dots at once: s[c * bs + r] = dot(row r of x, row c of y) over n elements, for
 * r < nr weight rows (bx bytes apart) and c < nc activation rows (by bytes apart). Each
 * weight block is unpacked once for several activation rows, and each activation block
 * loaded once for several weight rows. The integer block sums are those of vec_dot; only
 * the float summation order differs. */
typedef void (*llm_gemm_fn)(int64_t n, float *s, size_t bs, const void *x, size_t bx,
                            const void *y, size_t by, int64_t nr, int64_t nc);

typedef struct llm_quant_traits {
    llm_to_float_fn to_float;     /* NULL: type not supported */
    llm_from_float_fn from_float; /* for the types that serve as vec_dot_type (and F16) */
    llm_vec_dot_fn vec_dot;
    uint32_t vec_dot_type;        /* enum llm_dtype of the activation row */
    llm_gemm_fn gemm;             /* optional (NULL: call vec_dot per pair); SIMD tables only */
    /* gemm takes f32 activation rows holding the vec_dot_type's values (the float weight
     * types: converted once per matmul, not in every tile), and n a multiple of 32 */
    uint8_t gemm_f32_act;
    /* gemm serves one token too: faster than vec_dot there (the float weight types: four
     * rows at once, the activations converted once; 1.7x the dot's generation rate on a
     * 1B F16 or BF16 model), and the same bits */
    uint8_t gemm_one;
} llm_quant_traits;

/* Indexed by enum llm_dtype; entries of unsupported types are all NULL. */
extern const llm_quant_traits llm__quant_ref[LLM_DT_COUNT];
/* Filled by llm__quant_init() from the CPU's features; safe to call many times. */
extern llm_quant_traits llm__quant_best[LLM_DT_COUNT];
void llm__quant_init(void);

/* Half-precision conversions (round-to-nearest-even, like the F16C instructions). */
float llm__f16_to_f32(llm_f16 h);
llm_f16 llm__f32_to_f16(float f);
float llm__bf16_to_f32(llm_bf16 h);
llm_bf16 llm__f32_to_bf16(float f);

/* Q4_K/Q5_K: the 6-bit scale and min of group j (0..7), packed in 12 bytes (ggml's
 * get_scale_min_k4). */
static inline void llm__k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q8_K's reference value of a block of n floats from its largest value hi and the negated
 * smallest lo: the element of largest magnitude, signed, the first one when +m and -m tie
 * (the reference quantiser's choice); 0 when all are 0. */
static inline float llm__q8k_signed_max(const float *x, int n, float hi, float lo)
{
    if (hi > lo)
        return hi;
    if (lo > hi)
        return -lo;
    for (int j = 0; j < n; j++)
        if (x[j] == hi || x[j] == -hi)
            return x[j];
    return 0.0f;
}

/* Row helpers used by attention and the KV cache. */
void llm__f32_to_f16_row(const float *x, llm_f16 *y, int64_t n);
void llm__f16_to_f32_row(const llm_f16 *x, float *y, int64_t n);
/* dot of two f16 rows with float accumulation (llama.cpp's ggml_vec_dot_f16 numerics) */
float llm__dot_f16(int64_t n, const llm_f16 *x, const llm_f16 *y);

/* Attention over the f16 cache: dot of an f32 row with an f16 row (the sum's order depends
 * only on n, so results do not depend on how tokens were batched), and y += a * x. */
float llm__dot_f32_f16(int64_t n, const float *x, const llm_f16 *y);
void llm__axpy_f16(int64_t n, float *y, float a, const llm_f16 *x);

/* Attention over a block of up to LLM_ATT_BLOCK keys of an f16 cache for nh query heads
 * that share one KV head, the same operations as the single-key helpers above, so the
 * same bits (at every level: where a level has no fused kernel, they are those helpers):
 * - scores: sc[h * LLM_ATT_BLOCK + u] = llm__dot_f32_f16(hd, q + h * hd, k[u]);
 * - accumulate: for each head h, for u in order: acc_h *= ms[h][u] unless that is 1, then
 *   llm__axpy_f16(hd, acc_h, vs[h][u], v[u]), with acc_h = acc + h * hd and ms, vs laid out
 *   as sc.
 * The fused kernels convert each key and value row once for all the heads and keep the
 * accumulators in registers over the block. */
#define LLM_ATT_BLOCK 16
/* The softmax bookkeeping of such a block, for nh heads with the running maximum m[h] and
 * sum sum[h] (updated): per head and key u < nk in order, s = sc[h][u] * scale (then
 * softcap * tanhf(s / softcap) when softcap > 0); when s is above the running maximum
 * (the key raises it) the key's ms is e^(max - s) and its vs 1, else ms 1 and vs e^(s - max)
 * (the exponentials by llm__exp_row); sum = sum * ms + vs. Any cache type. */
void llm__attn_softmax(int32_t nh, int nk, const float *sc, float scale, float softcap,
                       float *m, float *sum, float *ms, float *vs);
void llm__attn_scores_f16(int32_t hd, int32_t nh, const float *q, const llm_f16 *const *k,
                          int nk, float *sc);
void llm__attn_accum_f16(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v, int nk,
                         const float *ms, const float *vs);
/* The three as compositions of the single-key helpers of the level in use: what a level
 * without fused kernels has, and what the fused ones fall back to (head sizes they do not
 * take, softcap, NaN scores) */
void llm__attn_scores_f16_generic(int32_t hd, int32_t nh, const float *q,
                                  const llm_f16 *const *k, int nk, float *sc);
void llm__attn_accum_f16_generic(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v,
                                 int nk, const float *ms, const float *vs);
void llm__attn_softmax_generic(int32_t nh, int nk, const float *sc, float scale, float softcap,
                               float *m, float *sum, float *ms, float *vs);

/* The softmax's running sums of heads [h0, h1) over a block of nk keys, each in key order:
 * sum = sum * ms + vs, for the heads whose bit (h - h0) is clear in skip; where a head's
 * bit in raised is clear no key raised its maximum, every ms is 1, and sum * 1 + vs is
 * sum + vs to the bit: plain adds, half the dependent chain. */
static inline void llm__attn_block_sums(int32_t h0, int32_t h1, int nk, const float *ms,
                                        const float *vs, float *sum, uint32_t skip,
                                        uint32_t raised)
{
    for (int32_t h = h0; h < h1; h++) {
        if (skip >> (h - h0) & 1)
            continue;
        const float *mh = ms + h * LLM_ATT_BLOCK, *vh = vs + h * LLM_ATT_BLOCK;
        float sm = sum[h];
        if (raised >> (h - h0) & 1)
            for (int u = 0; u < nk; u++)
                sm = sm * mh[u] + vh[u];
        else
            for (int u = 0; u < nk; u++)
                sm = sm + vh[u];
        sum[h] = sm;
    }
}

/* y[i] = e^x[i] for x[i] <= 0 (attention's softmax weights), n of them: the algorithm of
 * glibc's expf (a 32-entry table of 2^(i/32) and a cubic in double precision), so the
 * result is glibc's expf to the bit on every machine, scalar or SIMD (test_quants checks
 * it). Positive inputs are not supported (no overflow handling). */
void llm__exp_row(int64_t n, const float *x, float *y);
/* Shared by its scalar and SIMD versions: 2^(i/32) as f64 bits, less i << 47, and the
 * constants of the algorithm. */
extern const uint64_t llm__exp2_tab[32];
#define LLM_EXP_INV_LN2_N (0x1.71547652b82fep+0 * 32)
#define LLM_EXP_SHIFT 0x1.8p+52
#define LLM_EXP_C0 (0x1.c6af84b912394p-5 / 32 / 32 / 32)
#define LLM_EXP_C1 (0x1.ebfce50fac4f3p-3 / 32 / 32)
#define LLM_EXP_C2 (0x1.62e42ff0c52d6p-1 / 32)
#define LLM_EXP_MIN (-0x1.9fe368p6f) /* below: 0 */

/* Names of the CPU features in use, e.g. "avx2,fma,f16c"; "scalar" without SIMD. */
const char *llm__cpu_features(void);

/* Between quants.c and quants_avx2.c only: the row helpers behind llm__f32_to_f16_row,
 * llm__f16_to_f32_row and llm__dot_f16, and the function that puts the AVX2/FMA/F16C
 * kernels into a table and a row-helper set. It returns 0 (and changes nothing) when
 * quants_avx2.c was built without those instruction sets; the caller checks the CPU. */
typedef struct llm_quant_row_fns {
    void (*f32_to_f16_row)(const float *x, llm_f16 *y, int64_t n);
    void (*f16_to_f32_row)(const llm_f16 *x, float *y, int64_t n);
    float (*dot_f16)(int64_t n, const llm_f16 *x, const llm_f16 *y);
    float (*dot_f32_f16)(int64_t n, const float *x, const llm_f16 *y);
    void (*axpy_f16)(int64_t n, float *y, float a, const llm_f16 *x);
    void (*exp_row)(int64_t n, const float *x, float *y);
    void (*attn_scores_f16)(int32_t hd, int32_t nh, const float *q, const llm_f16 *const *k,
                            int nk, float *sc);
    void (*attn_accum_f16)(int32_t hd, int32_t nh, float *acc, const llm_f16 *const *v,
                           int nk, const float *ms, const float *vs);
    void (*attn_softmax)(int32_t nh, int nk, const float *sc, float scale, float softcap,
                         float *m, float *sum, float *ms, float *vs);
} llm_quant_row_fns;
int llm__quant_avx2_fill(llm_quant_traits *table, llm_quant_row_fns *rows);
/* The same for the NEON kernels of quants_neon.c (64-bit ARM): plain Armv8-A, and built
 * with the dot-product instructions; both return 0 on other machines. */
int llm__quant_neon_fill(llm_quant_traits *table, llm_quant_row_fns *rows);
int llm__quant_neon_dotprod_fill(llm_quant_traits *table, llm_quant_row_fns *rows);

/* f16 -> f32 of every half, filled by llm__quant_avx2_fill (the SIMD kernels convert the
 * per-block scales by lookup). */
extern float llm__f16_table[1 << 16];

/* The AVX-512 (F, BW, DQ, VL) kernels, put over the AVX2 ones already in the table: built
 * plain (quants_avx512.c) and with VNNI (quants_avx512_vnni.c), and the BF16 dot with
 * AVX512_BF16 (quants_avx512_bf16.c). Each returns 0 (changing nothing) when its file was
 * built without those instruction sets; the caller checks the CPU. */
int llm__quant_avx512_fill(llm_quant_traits *table, llm_quant_row_fns *rows);
int llm__quant_avx512vnni_fill(llm_quant_traits *table, llm_quant_row_fns *rows);
int llm__quant_avx512bf16_fill(llm_quant_traits *table);

/* Instruction-set levels, for LLM_CPU_ISA and the tests: "scalar" (the reference kernels),
 * "avx2" (AVX2, FMA, F16C), "avx512" (adds AVX-512 F/BW/DQ/VL, without VNNI and BF16),
 * "neon" (64-bit ARM: plain Armv8-A NEON, without dotprod) and "native" (everything this
 * CPU has, VNNI and BF16 or dotprod included: the default).
 * llm__quant_select refills llm__quant_best, the row helpers and llm__cpu_features() for a
 * level and returns 1, or returns 0 (changing nothing) for an unknown name or a level this
 * CPU lacks. Not thread-safe: llm__quant_init uses it once; tests call it between cases. */
int llm__quant_select(const char *isa);

#endif
