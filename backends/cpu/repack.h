/* repack.h - weights repacked at load into groups of 8 interleaved rows, and the kernels
 * that read them.
 *
 * In a group, block i of all 8 rows is stored together: the 8 scales (as f32), for Q4_1
 * the 8 mins, then the quants laid out so that one 32-byte vector holds 4 consecutive
 * elements of each of the 8 rows. A vector of 8 int32 lanes then accumulates 8 rows' dot
 * products at once against an activation row whose 4-byte groups are broadcast: no
 * horizontal sums, and the float work per block (convert, scale, accumulate) is shared by
 * 8 rows. The same kernel serves one token (generation) and many (prompts), and a row's
 * result does not depend on how many tokens are computed together (each lane's arithmetic
 * is the same), so batching never changes a sequence's logits.
 *
 * The activations are the weight type's usual vec_dot_type blocks (Q8_0 for Q4_0 and Q5_0,
 * Q8_1 for Q4_1) quantised by the usual from_float; Q4_0 and Q5_0 also need each activation
 * block's integer sum (the kernel multiplies unsigned values and takes 8 resp. 16 * sum
 * out afterwards). Private. */
#ifndef LLM_CPU_REPACK_H
#define LLM_CPU_REPACK_H

#include <stddef.h>
#include <stdint.h>

#define REPACK_ROWS 8

/* How far ahead (bytes) the x86 one-token kernels prefetch their weight stream: set by
 * llm__quant_select from the CPU's vendor. docs/perf/cpu.md (changes 5 and 16): on Zen 1
 * 512-1024 bytes measured best and 2048-4096 worse; on the AVX-512 Xeon 4096 measured
 * 3-5% faster generation than 1024. */
extern int64_t llm__repack_pf_dist;

/* s[c * bs + r] = dot(row r, activation row c) for r < 8 * n_groups, c < nc. The groups lie
 * gstride bytes apart from w; activation row c at y + c * by, its block sums (Q4_0 only) at
 * ysum + c * nbk (nbk = k / 32), what the traits' fill_aux derived from it (if they have one)
 * at aux + c * REPACK_AUX_PER_BLOCK * nbk. */
typedef void (*llm_repack_gemm_fn)(int64_t k, float *s, size_t bs, const void *w,
                                   size_t gstride, int64_t n_groups, const void *y, size_t by,
                                   const int32_t *ysum, const int32_t *aux, int64_t nc);

/* int32 per activation block of 32 that fill_aux may write */
#define REPACK_AUX_PER_BLOCK 2

typedef struct llm_repack_traits {
    /* bytes of one group of 8 rows of k elements */
    size_t (*group_bytes)(int64_t k);
    /* packs 8 rows (src, row_bytes apart) of k elements into one group */
    void (*pack)(void *dst, const void *src, size_t row_bytes, int64_t k);
    llm_repack_gemm_fn gemm;
    int needs_ysum; /* the kernel reads the activation blocks' integer sums */
    /* NULL, or what the kernel reads besides the activation row, derived from it once per
     * matmul (k elements in the vec_dot type -> REPACK_AUX_PER_BLOCK * k / 32 int32):
     * scales as f32 bits, sums times the weight type's offset, ready to broadcast. sums:
     * the row's block sums (llm__q8_0_block_sums) when needs_ysum, else NULL. */
    void (*fill_aux)(const void *row, const int32_t *sums, int64_t k, int32_t *aux);
} llm_repack_traits;

/* The AVX2 kernels for a weight dtype, or NULL; call only on a CPU with AVX2, FMA and
 * F16C (llm__quant_init found them). */
const llm_repack_traits *llm__repack_avx2_traits(uint32_t dtype);
/* The same layout with AVX512_VNNI kernels (repack_avx512vnni.c), bit-identical with the
 * AVX2 ones; call only when llm__cpu_features() names avx512vnni. NULL when built without. */
const llm_repack_traits *llm__repack_avx512vnni_traits(uint32_t dtype);

/* 8-row groups for Q4_0, Q4_1, Q8_0 and Q4_K with NEON kernels (repack_neon.c, 64-bit ARM):
 * plain, and with the dot-product instructions (call only when llm__cpu_features() names
 * dotprod); NULL on other machines and for the other types. */
const llm_repack_traits *llm__repack_neon_traits(uint32_t dtype);
const llm_repack_traits *llm__repack_neon_dotprod_traits(uint32_t dtype);

/* Group-block sizes and packers shared by the AVX2 and NEON kernels (repack_pack.c): per 32
 * elements of 8 rows, f32 scales (and Q4_1's f32 mins) then the quants:
 *  - Q4_0/Q4_1: 128 bytes as 4 vectors, byte 4r+j of vector k holding element 4k+j of row r
 *    in its low nibble and element 4(k+4)+j in its high nibble;
 *  - Q5_0: 256 bytes as 8 vectors, byte 4r+j of vector k = element 4k+j of row r as its
 *    unsigned 5-bit value (0..31);
 *  - Q8_0: the same 8 vectors of the signed values. */
#define REPACK_Q40_GB (8 * 4 + 128)
#define REPACK_Q41_GB (16 * 4 + 128)
#define REPACK_Q50_GB (8 * 4 + 256)
#define REPACK_Q80_GB (8 * 4 + 256)
size_t llm__repack_q4_0_bytes(int64_t k);
size_t llm__repack_q4_1_bytes(int64_t k);
size_t llm__repack_q5_0_bytes(int64_t k);
size_t llm__repack_q8_0_bytes(int64_t k);
void llm__repack_q4_0_pack(void *dst, const void *src, size_t row_bytes, int64_t k);
void llm__repack_q4_1_pack(void *dst, const void *src, size_t row_bytes, int64_t k);
void llm__repack_q5_0_pack(void *dst, const void *src, size_t row_bytes, int64_t k);
void llm__repack_q8_0_pack(void *dst, const void *src, size_t row_bytes, int64_t k);

/* Integer sums of the qs of nb consecutive Q8_0 blocks. */
void llm__q8_0_block_sums(const void *blocks, int64_t nb, int32_t *out);

#endif
