/* quants_neon_dotprod.c - the kernels of quants_neon.c built with the Armv8.2 dot-product
 * instructions (compiled with +dotprod), as llm__quant_neon_dotprod_fill. */
#define LLM_NEON_DOTPROD 1
#include "quants_neon.c"
