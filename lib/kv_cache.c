/* kv_cache.c - block allocation for the paged KV cache, with prefix caching (see
 * kv_cache.h).
 *
 * A block is in one of three states: in use (refs > 0), free (on the free stack), or
 * cached (refs == 0 but still registered under its hash, on an LRU list). Allocation
 * takes a free block first and otherwise evicts the least recently released cached
 * block; so cached blocks cost nothing until the space is needed. */
#include <string.h>

#include "kv_cache.h"

struct llm_kv_cache {
    int32_t n_blocks, block_size, n_seq, max_blocks;
    int32_t *tables;    /* [n_seq][max_blocks] */
    int32_t *seq_len;   /* [n_seq] */
    int32_t *refs;      /* [n_blocks] */
    int32_t *free_list; /* stack of free (unregistered) block ids */
    int32_t n_free;
    /* prefix cache: registered full blocks, found by hash through bucket chains */
    uint8_t *hashed;     /* [n_blocks] */
    uint64_t *hash;      /* [n_blocks] chain hash of the block */
    uint64_t *parent;    /* [n_blocks] chain hash of the block before it (the seed first) */
    int32_t *tokens;     /* [n_blocks][block_size] the tokens the block holds */
    int32_t *bucket;     /* [n_buckets] first block of the chain, -1 */
    int32_t *hnext;      /* [n_blocks] next block in the bucket chain */
    uint32_t n_buckets;
    /* LRU of cached blocks (hashed, refs == 0): head is the oldest */
    int32_t *lru_prev, *lru_next;
    int32_t lru_head, lru_tail, n_cached;
};

llm_status llm__kv_create(int32_t n_blocks, int32_t block_size, int32_t n_seq,
                          llm_kv_cache **out)
{
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || n_seq < 1 || n_blocks > (1 << 24))
        return llm__fail(LLM_ERR_INVALID_ARG, "kv cache: bad geometry (%d blocks of %d, %d seqs)",
                         n_blocks, block_size, n_seq);
    llm_kv_cache *kv = llm__calloc(1, sizeof *kv);
    if (!kv)
        return llm__fail(LLM_ERR_NO_MEMORY, "kv cache: out of memory");
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_seq = n_seq;
    kv->max_blocks = n_blocks;
    kv->n_buckets = 1;
    while (kv->n_buckets < (uint32_t)n_blocks)
        kv->n_buckets <<= 1;
    const size_t nb = (size_t)n_blocks;
    kv->tables = llm__malloc((size_t)n_seq * nb * sizeof(int32_t));
    kv->seq_len = llm__calloc((size_t)n_seq, sizeof(int32_t));
    kv->refs = llm__calloc(nb, sizeof(int32_t));
    kv->free_list = llm__malloc(nb * sizeof(int32_t));
    kv->hashed = llm__calloc(nb, 1);
    kv->hash = llm__calloc(nb, sizeof(uint64_t));
    kv->parent = llm__calloc(nb, sizeof(uint64_t));
    kv->tokens = llm__malloc(nb * (size_t)block_size * sizeof(int32_t));
    kv->bucket = llm__malloc(kv->n_buckets * sizeof(int32_t));
    kv->hnext = llm__malloc(nb * sizeof(int32_t));
    kv->lru_prev = llm__malloc(nb * sizeof(int32_t));
    kv->lru_next = llm__malloc(nb * sizeof(int32_t));
    if (!kv->tables || !kv->seq_len || !kv->refs || !kv->free_list || !kv->hashed ||
        !kv->hash || !kv->parent || !kv->tokens || !kv->bucket || !kv->hnext ||
        !kv->lru_prev || !kv->lru_next) {
        llm__kv_free(kv);
        return llm__fail(LLM_ERR_NO_MEMORY, "kv cache: out of memory (%d blocks)", n_blocks);
    }
    memset(kv->tables, 0xff, (size_t)n_seq * nb * sizeof(int32_t));
    memset(kv->bucket, 0xff, kv->n_buckets * sizeof(int32_t));
    /* pop order 0, 1, 2, ...: the stack holds ids in reverse */
    for (int32_t i = 0; i < n_blocks; i++)
        kv->free_list[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    kv->lru_head = kv->lru_tail = -1;
    *out = kv;
    return LLM_OK;
}

void llm__kv_free(llm_kv_cache *kv)
{
    if (!kv)
        return;
    void *ps[] = {kv->tables, kv->seq_len, kv->refs, kv->free_list, kv->hashed, kv->hash,
                  kv->parent, kv->tokens, kv->bucket, kv->hnext, kv->lru_prev, kv->lru_next};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        llm__free(ps[i]);
    llm__free(kv);
}

int32_t llm__kv_n_blocks(const llm_kv_cache *kv) { return kv->n_blocks; }
int32_t llm__kv_block_size(const llm_kv_cache *kv) { return kv->block_size; }
int32_t llm__kv_n_seq(const llm_kv_cache *kv) { return kv->n_seq; }
int32_t llm__kv_n_free(const llm_kv_cache *kv) { return kv->n_free + kv->n_cached; }
int32_t llm__kv_n_cached(const llm_kv_cache *kv) { return kv->n_cached; }
int32_t llm__kv_seq_len(const llm_kv_cache *kv, int32_t seq) { return kv->seq_len[seq]; }
const int32_t *llm__kv_block_tables(const llm_kv_cache *kv) { return kv->tables; }
int32_t llm__kv_max_blocks(const llm_kv_cache *kv) { return kv->max_blocks; }
int32_t llm__kv_block_refs(const llm_kv_cache *kv, int32_t b) { return kv->refs[b]; }

/* ---- hashing --------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint64_t llm__kv_hash_block(uint64_t parent, const int32_t *tokens, int32_t n)
{
    uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ull);
    for (int32_t i = 0; i < n; i++)
        h = mix64(h ^ ((uint64_t)(uint32_t)tokens[i] + 0x632be59bd9b4e019ull * (uint64_t)(i + 1)));
    return h;
}

static uint32_t bucket_of(const llm_kv_cache *kv, uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32)) & (kv->n_buckets - 1);
}

static void lru_remove(llm_kv_cache *kv, int32_t b)
{
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0)
        kv->lru_next[p] = n;
    else
        kv->lru_head = n;
    if (n >= 0)
        kv->lru_prev[n] = p;
    else
        kv->lru_tail = p;
    kv->n_cached--;
}

static void lru_push(llm_kv_cache *kv, int32_t b)
{
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = -1;
    if (kv->lru_tail >= 0)
        kv->lru_next[kv->lru_tail] = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

/* Removes b from the hash index (it stays wherever its refs put it). */
static void unhash(llm_kv_cache *kv, int32_t b)
{
    if (!kv->hashed[b])
        return;
    int32_t *link = &kv->bucket[bucket_of(kv, kv->hash[b])];
    while (*link != b)
        link = &kv->hnext[*link];
    *link = kv->hnext[b];
    kv->hashed[b] = 0;
}

int32_t llm__kv_lookup(const llm_kv_cache *kv, uint64_t hash, uint64_t parent,
                       const int32_t *tokens)
{
    for (int32_t b = kv->bucket[bucket_of(kv, hash)]; b >= 0; b = kv->hnext[b])
        if (kv->hash[b] == hash && kv->parent[b] == parent &&
            memcmp(kv->tokens + (size_t)b * kv->block_size, tokens,
                   (size_t)kv->block_size * sizeof(int32_t)) == 0)
            return b;
    return -1;
}

void llm__kv_commit(llm_kv_cache *kv, int32_t b, uint64_t hash, uint64_t parent,
                    const int32_t *tokens)
{
    if (kv->hashed[b] || llm__kv_lookup(kv, hash, parent, tokens) >= 0)
        return; /* already registered, or another block holds the same tokens */
    kv->hash[b] = hash;
    kv->parent[b] = parent;
    memcpy(kv->tokens + (size_t)b * kv->block_size, tokens,
           (size_t)kv->block_size * sizeof(int32_t));
    uint32_t k = bucket_of(kv, hash);
    kv->hnext[b] = kv->bucket[k];
    kv->bucket[k] = b;
    kv->hashed[b] = 1;
}

/* ---- blocks ---------------------------------------------------------------------- */

static void release_block(llm_kv_cache *kv, int32_t b)
{
    if (--kv->refs[b] > 0)
        return;
    if (kv->hashed[b])
        lru_push(kv, b); /* stays findable until its space is needed */
    else
        kv->free_list[kv->n_free++] = b;
}

static int32_t take_block(llm_kv_cache *kv)
{
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_list[--kv->n_free];
    } else {
        b = kv->lru_head; /* evict the least recently used cached block */
        lru_remove(kv, b);
        unhash(kv, b);
    }
    kv->refs[b] = 1;
    return b;
}

static int32_t blocks_for(const llm_kv_cache *kv, int32_t len)
{
    return (len + kv->block_size - 1) / kv->block_size;
}

int32_t llm__kv_blocks_needed(const llm_kv_cache *kv, int32_t seq, int32_t new_len)
{
    const int32_t len = kv->seq_len[seq];
    if (new_len <= len)
        return 0;
    const int32_t *table = kv->tables + (size_t)seq * kv->max_blocks;
    const int32_t have = blocks_for(kv, len);
    const int cow = len % kv->block_size != 0 && kv->refs[table[have - 1]] > 1;
    return blocks_for(kv, new_len) - have + cow;
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
    const int partial = len % kv->block_size != 0;
    const int cow = partial && kv->refs[table[have - 1]] > 1;
    if (need - have + cow > llm__kv_n_free(kv))
        return llm__fail(LLM_ERR_CONTEXT_FULL,
                         "kv cache full: sequence %d needs %d more blocks of %d tokens, %d free",
                         seq, need - have + cow, kv->block_size, llm__kv_n_free(kv));
    if (cow) {
        int32_t src = table[have - 1], dst = take_block(kv);
        if (copy)
            copy(user, dst, src);
        release_block(kv, src);
        table[have - 1] = dst;
    } else if (partial) {
        /* a registered block cut short by a truncation is about to change */
        unhash(kv, table[have - 1]);
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
    /* later blocks are released first, so that they are evicted before their prefixes */
    for (int32_t i = blocks_for(kv, len) - 1; i >= blocks_for(kv, new_len); i--) {
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

void llm__kv_seq_attach(llm_kv_cache *kv, int32_t seq, const int32_t *blocks, int32_t n)
{
    llm__kv_seq_truncate(kv, seq, 0);
    int32_t *table = kv->tables + (size_t)seq * kv->max_blocks;
    for (int32_t i = 0; i < n; i++) {
        const int32_t b = blocks[i];
        if (kv->refs[b]++ == 0)
            lru_remove(kv, b); /* revived from the cache */
        table[i] = b;
    }
    kv->seq_len[seq] = n * kv->block_size;
}

int32_t llm__kv_seq_block(const llm_kv_cache *kv, int32_t seq, int32_t i)
{
    return kv->tables[(size_t)seq * kv->max_blocks + i];
}

int32_t llm__kv_slot(const llm_kv_cache *kv, int32_t seq, int32_t pos)
{
    const int32_t *table = kv->tables + (size_t)seq * kv->max_blocks;
    return table[pos / kv->block_size] * kv->block_size + pos % kv->block_size;
}
