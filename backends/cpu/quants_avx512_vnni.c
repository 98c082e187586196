/* quants_avx512_vnni.c - the kernels of quants_avx512.c built with AVX512_VNNI as well
 * (-mavx512vnni), where the integer dots become vpdpbusd and vpdpwssd; they give the same
 * bits as the plain AVX-512 and the AVX2 kernels. Gives llm__quant_avx512vnni_fill. */
#define LLM_AVX512_VNNI 1
#include "quants_avx512.c"
