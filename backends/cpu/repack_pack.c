/* repack_pack.c - packing weights into the 8-row layouts of repack.h that the AVX2 and NEON
 * kernels share (Q4_0, Q4_1, Q5_0, Q8_0): plain C, run once at load. The layouts are
 * described with the kernels (repack_avx2.c). */
#include <string.h>

#include "quants.h"
#include "repack.h"

int64_t llm__repack_pf_dist = 1024;

/* nibble value of element e (0..31) of a 32-block's 16 quant bytes */
static inline uint8_t nib(const uint8_t *qs, int e)
{
    return e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4;
}

/* byte 4r+j of vector k: element 4k+j of row r (low nibble), element 4(k+4)+j (high) */
static void pack_nibbles(uint8_t *q, const uint8_t *const qs[REPACK_ROWS])
{
    for (int k = 0; k < 4; k++)
        for (int r = 0; r < REPACK_ROWS; r++)
            for (int j = 0; j < 4; j++)
                q[32 * k + 4 * r + j] =
                    (uint8_t)(nib(qs[r], 4 * k + j) | nib(qs[r], 4 * (k + 4) + j) << 4);
}

size_t llm__repack_q4_0_bytes(int64_t k) { return (size_t)(k / 32) * REPACK_Q40_GB; }
size_t llm__repack_q4_1_bytes(int64_t k) { return (size_t)(k / 32) * REPACK_Q41_GB; }
size_t llm__repack_q5_0_bytes(int64_t k) { return (size_t)(k / 32) * REPACK_Q50_GB; }
size_t llm__repack_q8_0_bytes(int64_t k) { return (size_t)(k / 32) * REPACK_Q80_GB; }

void llm__repack_q4_0_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / 32; i++, out += REPACK_Q40_GB) {
        const uint8_t *qs[REPACK_ROWS];
        float d[REPACK_ROWS];
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q4_0 *b = (const block_q4_0 *)((const char *)src + r * row_bytes) + i;
            d[r] = llm__f16_to_f32(b->d);
            qs[r] = b->qs;
        }
        memcpy(out, d, sizeof d);
        pack_nibbles(out + 32, qs);
    }
}

void llm__repack_q4_1_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / 32; i++, out += REPACK_Q41_GB) {
        const uint8_t *qs[REPACK_ROWS];
        float dm[2 * REPACK_ROWS];
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q4_1 *b = (const block_q4_1 *)((const char *)src + r * row_bytes) + i;
            dm[r] = llm__f16_to_f32(b->d);
            dm[REPACK_ROWS + r] = llm__f16_to_f32(b->m);
            qs[r] = b->qs;
        }
        memcpy(out, dm, sizeof dm);
        pack_nibbles(out + 64, qs);
    }
}

void llm__repack_q5_0_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / 32; i++, out += REPACK_Q50_GB) {
        float d[REPACK_ROWS];
        uint8_t *q = out + 32;
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q5_0 *b = (const block_q5_0 *)((const char *)src + r * row_bytes) + i;
            d[r] = llm__f16_to_f32(b->d);
            uint32_t qh;
            memcpy(&qh, b->qh, sizeof qh);
            for (int e = 0; e < 32; e++)
                q[32 * (e / 4) + 4 * r + e % 4] = (uint8_t)(nib(b->qs, e) | ((qh >> e) & 1) << 4);
        }
        memcpy(out, d, sizeof d);
    }
}

void llm__repack_q8_0_pack(void *dst, const void *src, size_t row_bytes, int64_t k)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < k / 32; i++, out += REPACK_Q80_GB) {
        float d[REPACK_ROWS];
        int8_t *q = (int8_t *)(out + 32);
        for (int r = 0; r < REPACK_ROWS; r++) {
            const block_q8_0 *b = (const block_q8_0 *)((const char *)src + r * row_bytes) + i;
            d[r] = llm__f16_to_f32(b->d);
            for (int kk = 0; kk < 8; kk++)
                for (int j = 0; j < 4; j++)
                    q[32 * kk + 4 * r + j] = b->qs[4 * kk + j];
        }
        memcpy(out, d, sizeof d);
    }
}
