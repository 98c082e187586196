/* onednn.h - float matmuls through oneDNN where it is faster than the tile kernels.
 *
 * oneDNN's matmul runs BF16 weights on the CPU's matrix units (AMX) or its BF16 dot
 * instructions, several times the tiles' rate on prompts. It blocks and sums in its own
 * order, which differs between one token and many, so a token's result then depends on its
 * batch: the CPU backend uses it only for prompts of at least LLM_DNNL_MIN_TOKENS tokens
 * and not when LLM_CPU_BATCH_INVARIANT=1 (docs/architecture.md). Built when libdnnl is
 * found (LLM_HAVE_DNNL); otherwise every call declines. Private. */
#ifndef LLM_CPU_ONEDNN_H
#define LLM_CPU_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

#define LLM_DNNL_MIN_TOKENS 32

typedef struct llm_dnnl llm_dnnl;

/* NULL when oneDNN is not built in or cannot start on this CPU. */
llm_dnnl *llm__dnnl_create(void);
void llm__dnnl_free(llm_dnnl *d);

/* y[t * ldy + r] = row r of w (n_rows rows of k bf16, w_row bytes apart) · row t of x (n
 * rows of k bf16, contiguous), on n_threads threads. Returns 0 when oneDNN declines the
 * shape (the caller then takes its own kernels), 1 when y is written. */
int llm__dnnl_matmul_bf16(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                          int64_t n_rows, const void *x, int64_t k, int64_t n, int n_threads);
/* The same for f32 weights and f32 activations (rows of x ldx floats apart). */
int llm__dnnl_matmul_f32(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                         int64_t n_rows, const float *x, int64_t ldx, int64_t k, int64_t n,
                         int n_threads);
/* F16 weights as f32 (oneDNN here has no f16 matmul): panel_rows rows at a time widened
 * into panel (panel_rows * k floats) on oneDNN's threads, then that f32 matmul. */
int llm__dnnl_matmul_f16(llm_dnnl *d, float *y, int64_t ldy, const void *w, size_t w_row,
                         int64_t n_rows, const float *x, int64_t ldx, int64_t k, int64_t n,
                         int n_threads, float *panel, int64_t panel_rows);

#endif
