/* repack_neon_dotprod.c - the kernels of repack_neon.c built with the Armv8.2 dot-product
 * instructions (compiled with +dotprod), as llm__repack_neon_dotprod_traits. */
#define LLM_NEON_DOTPROD 1
#include "repack_neon.c"
