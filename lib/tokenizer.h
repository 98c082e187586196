/* tokenizer.h - tokenizers built from a GGUF file's tokenizer.ggml.* metadata:
 * byte-level BPE (tokenizer.ggml.model = "gpt2", pre-tokenizer regex chosen by
 * tokenizer.ggml.pre, run with PCRE2) and SentencePiece-style ("llama": score-driven
 * merges with byte fallback). Private; never installed. */
#ifndef LLM_TOKENIZER_H
#define LLM_TOKENIZER_H

#include "gguf.h"

typedef struct llm_tokenizer llm_tokenizer;

/* Builds the tokenizer; LLM_ERR_INVALID_MODEL / LLM_ERR_UNSUPPORTED with a message when
 * the metadata is missing or inconsistent or names an unknown tokenizer model. An unknown
 * pre-tokenizer name falls back to the default regex with a warning.
 * The tokenizer copies what it needs: it does not borrow g after returning. */
LLM_INTERNAL llm_status llm__tokenizer_create(const llm_gguf *g, llm_tokenizer **out);
LLM_INTERNAL void llm__tokenizer_free(llm_tokenizer *t);

LLM_INTERNAL int32_t llm__tokenizer_n_vocab(const llm_tokenizer *t);
/* Special ids (enum llm_special_token), -1 when absent. */
LLM_INTERNAL llm_token llm__tokenizer_special(const llm_tokenizer *t, int which);
LLM_INTERNAL int llm__tokenizer_is_eog(const llm_tokenizer *t, llm_token id);
/* The vocabulary entry's raw text (NUL-terminated), or NULL for an invalid id. */
LLM_INTERNAL const char *llm__tokenizer_text(const llm_tokenizer *t, llm_token id);

/* Same contracts as the public llm_tokenize, llm_token_to_piece and llm_detokenize. */
LLM_INTERNAL int32_t llm__tokenize(const llm_tokenizer *t, const char *text, size_t len,
                                   llm_token *out, int32_t cap, uint32_t flags);
LLM_INTERNAL int32_t llm__token_to_piece(const llm_tokenizer *t, llm_token id, char *buf,
                                         int32_t cap, uint32_t flags);
LLM_INTERNAL int32_t llm__detokenize(const llm_tokenizer *t, const llm_token *ids, int32_t n,
                                     char *buf, int32_t cap, uint32_t flags);

#endif
