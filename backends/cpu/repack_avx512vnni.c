/* repack_avx512vnni.c - the repacked kernels of repack_avx2.c built with AVX512_VNNI and
 * AVX512VL (256-bit vpdpbusd): the same layout, bit-identical results, fewer instructions
 * per block. Gives llm__repack_avx512vnni_traits. */
#define LLM_REPACK_VNNI 1
#include "repack_avx2.c"
