/* quant_encode.h - float rows to GGUF block formats (the quantizer's encoders) and the
 * f16 conversions they need. Private; never installed. */
#ifndef LLM_QUANT_ENCODE_H
#define LLM_QUANT_ENCODE_H

#include "dtype.h"

/* Encodes n floats (a multiple of the type's block) into blocks at y. */
typedef void (*llm_quant_encode_fn)(const float *x, uint8_t *y, int64_t n);

/* The encoder of a type, or NULL for a type the quantizer does not write. */
LLM_INTERNAL llm_quant_encode_fn llm__quant_encoder(uint32_t dtype);

LLM_INTERNAL uint16_t llm__fp32_to_fp16(float f); /* round to nearest even */
LLM_INTERNAL float llm__fp16_to_fp32(uint16_t h);

#endif
