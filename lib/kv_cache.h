/* kv_cache.h - the paged KV cache's bookkeeping: which fixed-size block of the per-layer
 * pools holds which positions of which sequence. The pools themselves are backend memory
 * owned by the context; this module deals only in block indices.
 *
 * A sequence's position p lives in block table[p / block_size], slot p % block_size.
 * Blocks are reference-counted: a fork shares all of its source's blocks, and a shared
 * block is copied (copy-on-write) before a sequence writes into it.
 *
 * Prefix caching: a full block can be registered (commit) under a chain hash of its
 * tokens and the hash of the block before it. When its last reference goes, a
 * registered block is not freed but kept, findable (lookup), on an LRU list; it is
 * evicted only when a block is needed and no free one is left. A registered block that a
 * truncation cut short is unregistered before it is written again. Private. */
#ifndef LLM_KV_CACHE_H
#define LLM_KV_CACHE_H

#include "internal.h"

typedef struct llm_kv_cache llm_kv_cache;

/* Called to copy block src into block dst in every layer's pools (copy-on-write). */
typedef void (*llm_kv_copy_fn)(void *user, int32_t dst, int32_t src);

LLM_INTERNAL llm_status llm__kv_create(int32_t n_blocks, int32_t block_size, int32_t n_seq,
                                       llm_kv_cache **out);
LLM_INTERNAL void llm__kv_free(llm_kv_cache *kv);

LLM_INTERNAL int32_t llm__kv_n_blocks(const llm_kv_cache *kv);
LLM_INTERNAL int32_t llm__kv_block_size(const llm_kv_cache *kv);
LLM_INTERNAL int32_t llm__kv_n_seq(const llm_kv_cache *kv);
/* Blocks available to allocate: free ones plus cached ones (registered, unreferenced). */
LLM_INTERNAL int32_t llm__kv_n_free(const llm_kv_cache *kv);
/* Cached blocks: unreferenced but still registered under their hash. */
LLM_INTERNAL int32_t llm__kv_n_cached(const llm_kv_cache *kv);
LLM_INTERNAL int32_t llm__kv_block_refs(const llm_kv_cache *kv, int32_t block);

LLM_INTERNAL int32_t llm__kv_seq_len(const llm_kv_cache *kv, int32_t seq);

/* Makes room for positions [len, new_len) of seq: allocates blocks, and copies a shared
 * last block first (through copy). LLM_ERR_CONTEXT_FULL when blocks run out; then nothing
 * changed. The sequence's length becomes new_len. */
LLM_INTERNAL llm_status llm__kv_seq_grow(llm_kv_cache *kv, int32_t seq, int32_t new_len,
                                         llm_kv_copy_fn copy, void *user);

/* Blocks that growing seq to new_len would take (new blocks plus a copy-on-write). */
LLM_INTERNAL int32_t llm__kv_blocks_needed(const llm_kv_cache *kv, int32_t seq, int32_t new_len);

/* Shortens seq to new_len (<= its length), releasing blocks no longer used. */
LLM_INTERNAL void llm__kv_seq_truncate(llm_kv_cache *kv, int32_t seq, int32_t new_len);

/* Makes dst share all of src's blocks (dst is cleared first). */
LLM_INTERNAL void llm__kv_seq_fork(llm_kv_cache *kv, int32_t dst, int32_t src);

/* Makes seq (cleared first) hold the n full blocks given, taking a reference on each
 * (cached blocks are revived); its length becomes n * block_size. */
LLM_INTERNAL void llm__kv_seq_attach(llm_kv_cache *kv, int32_t seq, const int32_t *blocks,
                                     int32_t n);
/* Block id of seq's i-th block. */
LLM_INTERNAL int32_t llm__kv_seq_block(const llm_kv_cache *kv, int32_t seq, int32_t i);

/* The chain hash of a block of n tokens that follows a block of hash `parent` (the first
 * block follows a seed that names the model). */
LLM_INTERNAL uint64_t llm__kv_hash_block(uint64_t parent, const int32_t *tokens, int32_t n);
/* The registered block with this hash, parent hash and block_size tokens, or -1. */
LLM_INTERNAL int32_t llm__kv_lookup(const llm_kv_cache *kv, uint64_t hash, uint64_t parent,
                                    const int32_t *tokens);
/* Registers full block b under (hash, parent, tokens) unless it already is registered or
 * another block holds the same content. */
LLM_INTERNAL void llm__kv_commit(llm_kv_cache *kv, int32_t b, uint64_t hash, uint64_t parent,
                                 const int32_t *tokens);

/* Global slot (block * block_size + offset) of position pos of seq (pos < length). */
LLM_INTERNAL int32_t llm__kv_slot(const llm_kv_cache *kv, int32_t seq, int32_t pos);

/* Block tables of all sequences, [n_seq][max_blocks]; unused entries are -1. */
LLM_INTERNAL const int32_t *llm__kv_block_tables(const llm_kv_cache *kv);
LLM_INTERNAL int32_t llm__kv_max_blocks(const llm_kv_cache *kv);

#endif
