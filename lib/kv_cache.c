/* kv_cache.c - block allocation for the paged KV cache (see kv_cache.h). */
#include <string.h>

#include "kv_cache.h"

struct llm_kv_cache {
    int32_t n_blocks, block_size, n_seq, max_blocks;
    int32_t *tables;    /* [n_seq][max_blocks] */
    int32_t *seq_len;   /* [n_seq] */
    int32_t *refs;      /* [n_blocks] */
    int32_t *free_list; /* stack of free block ids */
    int32_t n_free;
};

llm_status llm__kv_create(int32_t n_blocks, int32_t block_size, int32_t n_seq,
                          llm_kv_cache **out)
{
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || n_seq < 1)
        return llm__fail(LLM_ERR_INVALID_ARG, "kv cache: bad geometry (%d blocks of %d, %d seqs)",
                         n_blocks, block_size, n_seq);
    llm_kv_cache *kv = llm__calloc(1, sizeof *kv);
    if (!kv)
        return llm__fail(LLM_ERR_NO_MEMORY, "kv cache: out of memory");
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_seq = n_seq;
    kv->max_blocks = n_blocks;
    kv->tables = llm__malloc((size_t)n_seq * (size_t)n_blocks * sizeof(int32_t));
    kv->seq_len = llm__calloc((size_t)n_seq, sizeof(int32_t));
    kv->refs = llm__calloc((size_t)n_blocks, sizeof(int32_t));
    kv->free_list = llm__malloc((size_t)n_blocks * sizeof(int32_t));
    if (!kv->tables || !kv->seq_len || !kv->refs || !kv->free_list) {
        llm__kv_free(kv);
        return llm__fail(LLM_ERR_NO_MEMORY, "kv cache: out of memory");
    }
    memset(kv->tables, 0xff, (size_t)n_seq * (size_t)n_blocks * sizeof(int32_t));
    /* pop order 0, 1, 2, ...: the stack holds ids in reverse */
    for (int32_t i = 0; i < n_blocks; i++)
        kv->free_list[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return LLM_OK;
}

void llm__kv_free(llm_kv_cache *kv)
{
    if (!kv)
        return;
    llm__free(kv->tables);
    llm__free(kv->seq_len);
    llm__free(kv->refs);
    llm__free(kv->free_list);
    llm__free(kv);
}

int32_t llm__kv_n_blocks(const llm_kv_cache *kv) { return kv->n_blocks; }
int32_t llm__kv_block_size(const llm_kv_cache *kv) { return kv->block_size; }
int32_t llm__kv_n_seq(const llm_kv_cache *kv) { return kv->n_seq; }
int32_t llm__kv_n_free(const llm_kv_cache *kv) { return kv->n_free; }
int32_t llm__kv_seq_len(const llm_kv_cache *kv, int32_t seq) { return kv->seq_len[seq]; }
const int32_t *llm__kv_block_tables(const llm_kv_cache *kv) { return kv->tables; }
int32_t llm__kv_max_blocks(const llm_kv_cache *kv) { return kv->max_blocks; }

static void release_block(llm_kv_cache *kv, int32_t b)
{
    if (--kv->refs[b] == 0)
        kv->free_list[kv->n_free++] = b;
}

static int32_t take_block(llm_kv_cache *kv)
{
    int32_t b = kv->free_list[--kv->n_free];
    kv->refs[b] = 1;
    return b;
}

static int32_t blocks_for(const llm_kv_cache *kv, int32_t len)
{
    return (len + kv->block_size - 1) / kv->block_size;
}

llm_status llm__kv_seq_grow(llm_kv_cache *kv, int32_t seq, int32_t new_len, llm_kv_copy_fn copy,
                            void *user)
{
    int32_t len = kv->seq_len[seq];
    if (new_len <= len)
        return LLM_OK;
    int32_t *table = kv->tables + (size_t)seq * kv->max_blocks;
    int32_t have = blocks_for(kv, len), need = blocks_for(kv, new_len);
    if (need > kv->max_blocks)
        return llm__fail(LLM_ERR_CONTEXT_FULL,
                         "kv cache full: sequence %d would need %d tokens, more than the "
                         "cache holds (%d)",
                         seq, new_len, kv->max_blocks * kv->block_size);
    /* a partly filled last block that another sequence shares must be copied first */
    int cow = len % kv->block_size != 0 && kv->refs[table[have - 1]] > 1;
    if (need - have + cow > kv->n_free)
        return llm__fail(LLM_ERR_CONTEXT_FULL,
                         "kv cache full: sequence %d needs %d more blocks of %d tokens, %d free",
                         seq, need - have + cow, kv->block_size, kv->n_free);
    if (cow) {
        int32_t src = table[have - 1], dst = take_block(kv);
        if (copy)
            copy(user, dst, src);
        release_block(kv, src);
        table[have - 1] = dst;
    }
    for (int32_t i = have; i < need; i++)
        table[i] = take_block(kv);
    kv->seq_len[seq] = new_len;
    return LLM_OK;
}

void llm__kv_seq_truncate(llm_kv_cache *kv, int32_t seq, int32_t new_len)
{
    if (new_len < 0)
        new_len = 0;
    int32_t len = kv->seq_len[seq];
    if (new_len >= len)
        return;
    int32_t *table = kv->tables + (size_t)seq * kv->max_blocks;
    for (int32_t i = blocks_for(kv, new_len); i < blocks_for(kv, len); i++) {
        release_block(kv, table[i]);
        table[i] = -1;
    }
    kv->seq_len[seq] = new_len;
}

void llm__kv_seq_fork(llm_kv_cache *kv, int32_t dst, int32_t src)
{
    if (dst == src)
        return;
    llm__kv_seq_truncate(kv, dst, 0);
    const int32_t *ts = kv->tables + (size_t)src * kv->max_blocks;
    int32_t *td = kv->tables + (size_t)dst * kv->max_blocks;
    int32_t n = blocks_for(kv, kv->seq_len[src]);
    for (int32_t i = 0; i < n; i++) {
        td[i] = ts[i];
        kv->refs[ts[i]]++;
    }
    kv->seq_len[dst] = kv->seq_len[src];
}

int32_t llm__kv_slot(const llm_kv_cache *kv, int32_t seq, int32_t pos)
{
    const int32_t *table = kv->tables + (size_t)seq * kv->max_blocks;
    return table[pos / kv->block_size] * kv->block_size + pos % kv->block_size;
}
