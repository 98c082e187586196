/* test_kv_cache.c - block bookkeeping of the paged KV cache. */
#include "kv_cache.h"
#include "test.h"

/* Every block is either free or referenced by the tables the right number of times. */
static int invariants_hold(llm_kv_cache *kv)
{
    int32_t nb = llm__kv_n_blocks(kv), bs = llm__kv_block_size(kv), ns = llm__kv_n_seq(kv);
    int32_t mb = llm__kv_max_blocks(kv);
    const int32_t *t = llm__kv_block_tables(kv);
    int32_t *count = calloc((size_t)nb, sizeof(int32_t));
    int used = 0;
    for (int32_t s = 0; s < ns; s++) {
        int32_t len = llm__kv_seq_len(kv, s), need = (len + bs - 1) / bs;
        for (int32_t i = 0; i < mb; i++) {
            if (i < need) {
                if (t[s * mb + i] < 0 || t[s * mb + i] >= nb)
                    return free(count), 0;
                count[t[s * mb + i]]++;
            } else if (t[s * mb + i] != -1) {
                return free(count), 0;
            }
        }
    }
    for (int32_t b = 0; b < nb; b++)
        used += count[b] > 0;
    free(count);
    return used + llm__kv_n_free(kv) == nb;
}

static int copies;
static void count_copy(void *user, int32_t dst, int32_t src)
{
    (void)user;
    (void)dst;
    (void)src;
    copies++;
}

static void test_grow_truncate(void)
{
    llm_kv_cache *kv;
    CHECK_EQ_INT(llm__kv_create(8, 16, 2, &kv), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 17, NULL, NULL), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_len(kv, 0), 17);
    CHECK_EQ_INT(llm__kv_n_free(kv), 6);
    /* positions map to block * 16 + offset; distinct positions have distinct slots */
    CHECK(llm__kv_slot(kv, 0, 16) / 16 != llm__kv_slot(kv, 0, 0) / 16);
    CHECK_EQ_INT(llm__kv_slot(kv, 0, 5) % 16, 5);
    llm__kv_seq_truncate(kv, 0, 16);
    CHECK_EQ_INT(llm__kv_n_free(kv), 7);
    llm__kv_seq_truncate(kv, 0, 0);
    CHECK_EQ_INT(llm__kv_n_free(kv), 8);
    CHECK(invariants_hold(kv));
    llm__kv_free(kv);
}

static void test_full_changes_nothing(void)
{
    llm_kv_cache *kv;
    CHECK_EQ_INT(llm__kv_create(4, 16, 2, &kv), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 40, NULL, NULL), LLM_OK); /* 3 blocks */
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 1, 33, NULL, NULL), LLM_ERR_CONTEXT_FULL);
    CHECK_EQ_INT(llm__kv_seq_len(kv, 1), 0);
    CHECK_EQ_INT(llm__kv_n_free(kv), 1);
    CHECK(strstr(llm_last_error(), "full") != NULL);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 65, NULL, NULL), LLM_ERR_CONTEXT_FULL);
    CHECK_EQ_INT(llm__kv_seq_len(kv, 0), 40);
    CHECK(invariants_hold(kv));
    llm__kv_free(kv);
}

static void test_fork_copy_on_write(void)
{
    llm_kv_cache *kv;
    CHECK_EQ_INT(llm__kv_create(8, 16, 3, &kv), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 20, NULL, NULL), LLM_OK); /* 2 blocks, last partial */
    llm__kv_seq_fork(kv, 1, 0);
    CHECK_EQ_INT(llm__kv_seq_len(kv, 1), 20);
    CHECK_EQ_INT(llm__kv_n_free(kv), 6);
    CHECK_EQ_INT(llm__kv_slot(kv, 1, 3), llm__kv_slot(kv, 0, 3));
    copies = 0;
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 1, 21, count_copy, NULL), LLM_OK);
    CHECK_EQ_INT(copies, 1); /* the shared partial block was copied */
    CHECK_EQ_INT(llm__kv_slot(kv, 1, 3), llm__kv_slot(kv, 0, 3)); /* full block still shared */
    CHECK(llm__kv_slot(kv, 1, 17) != llm__kv_slot(kv, 0, 17));
    CHECK_EQ_INT(llm__kv_n_free(kv), 5);
    llm__kv_seq_truncate(kv, 0, 0);
    llm__kv_seq_truncate(kv, 1, 0);
    CHECK_EQ_INT(llm__kv_n_free(kv), 8);
    CHECK(invariants_hold(kv));
    llm__kv_free(kv);
}

static void test_random_ops(void)
{
    llm_kv_cache *kv;
    unsigned long long rng = 0x9e3779b97f4a7c15ULL;
    CHECK_EQ_INT(llm__kv_create(32, 8, 5, &kv), LLM_OK);
    for (int it = 0; it < 20000; it++) {
        int32_t s = (int32_t)(test_rand_u64(&rng) % 5);
        int op = (int)(test_rand_u64(&rng) % 4);
        int32_t len = llm__kv_seq_len(kv, s);
        if (op == 0 || op == 1) {
            llm_status st = llm__kv_seq_grow(kv, s, len + 1 + (int32_t)(test_rand_u64(&rng) % 20),
                                             count_copy, NULL);
            CHECK(st == LLM_OK || st == LLM_ERR_CONTEXT_FULL);
            if (st != LLM_OK)
                CHECK_EQ_INT(llm__kv_seq_len(kv, s), len);
        } else if (op == 2) {
            llm__kv_seq_truncate(kv, s, len ? (int32_t)(test_rand_u64(&rng) % (uint64_t)len) : 0);
        } else {
            llm__kv_seq_fork(kv, s, (int32_t)(test_rand_u64(&rng) % 5));
        }
        if (!invariants_hold(kv)) {
            CHECK_MSG(0, "invariants broken at iteration %d", it);
            break;
        }
    }
    for (int32_t s = 0; s < 5; s++)
        llm__kv_seq_truncate(kv, s, 0);
    CHECK_EQ_INT(llm__kv_n_free(kv), 32);
    llm__kv_free(kv);
}

/* Registers the full blocks of seq (tokens toks) as the scheduler does. */
static void commit_seq(llm_kv_cache *kv, int32_t seq, const int32_t *toks, int32_t len)
{
    int32_t bs = llm__kv_block_size(kv);
    uint64_t parent = 42;
    for (int32_t i = 0; i < len / bs; i++) {
        uint64_t h = llm__kv_hash_block(parent, toks + i * bs, bs);
        llm__kv_commit(kv, llm__kv_seq_block(kv, seq, i), h, parent, toks + i * bs);
        parent = h;
    }
}

static void test_prefix_cache(void)
{
    llm_kv_cache *kv;
    int32_t toks[64], other[64];
    for (int i = 0; i < 64; i++)
        toks[i] = i * 7 + 1, other[i] = i * 7 + 2;
    CHECK_EQ_INT(llm__kv_create(6, 16, 3, &kv), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 40, NULL, NULL), LLM_OK); /* 2 full + 1 partial */
    commit_seq(kv, 0, toks, 40);
    int32_t b0 = llm__kv_seq_block(kv, 0, 0), b1 = llm__kv_seq_block(kv, 0, 1);
    llm__kv_seq_truncate(kv, 0, 0);
    /* released registered blocks are cached, not lost: still counted as available */
    CHECK_EQ_INT(llm__kv_n_cached(kv), 2);
    CHECK_EQ_INT(llm__kv_n_free(kv), 6);
    uint64_t h0 = llm__kv_hash_block(42, toks, 16), h1 = llm__kv_hash_block(h0, toks + 16, 16);
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, toks), b0);
    CHECK_EQ_INT(llm__kv_lookup(kv, h1, h0, toks + 16), b1);
    /* same hash inputs but other tokens, or another parent: no match */
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, other), -1);
    CHECK_EQ_INT(llm__kv_lookup(kv, h1, 43, toks + 16), -1);
    /* attaching revives them with one reference each */
    int32_t blocks[2] = {b0, b1};
    llm__kv_seq_attach(kv, 1, blocks, 2);
    CHECK_EQ_INT(llm__kv_seq_len(kv, 1), 32);
    CHECK_EQ_INT(llm__kv_n_cached(kv), 0);
    CHECK_EQ_INT(llm__kv_block_refs(kv, b0), 1);
    CHECK(invariants_hold(kv));
    /* a second sequence shares them; free blocks are used before cached ones are evicted */
    llm__kv_seq_attach(kv, 2, blocks, 1);
    CHECK_EQ_INT(llm__kv_block_refs(kv, b0), 2);
    llm__kv_seq_truncate(kv, 1, 0);
    llm__kv_seq_truncate(kv, 2, 0);
    CHECK_EQ_INT(llm__kv_n_cached(kv), 2);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 64, NULL, NULL), LLM_OK); /* takes the 4 free ones */
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, toks), b0);
    CHECK_EQ_INT(llm__kv_lookup(kv, h1, h0, toks + 16), b1);
    /* the next allocation evicts the least recently released: b1 went back before b0
     * (a truncation releases the last block first) */
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 1, 1, NULL, NULL), LLM_OK);
    CHECK_EQ_INT(llm__kv_lookup(kv, h1, h0, toks + 16), -1);
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, toks), b0);
    CHECK_EQ_INT(llm__kv_seq_block(kv, 1, 0), b1);
    CHECK(invariants_hold(kv));
    llm__kv_seq_truncate(kv, 0, 0);
    llm__kv_seq_truncate(kv, 1, 0);
    /* a registered block cut short and written again is unregistered first */
    llm__kv_seq_attach(kv, 2, blocks, 1);
    llm__kv_seq_truncate(kv, 2, 10);
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, toks), b0);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 2, 11, NULL, NULL), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_block(kv, 2, 0), b0);
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, toks), -1);
    /* committing content that another block already holds keeps the first one */
    llm__kv_seq_truncate(kv, 2, 0);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 0, 0, NULL, NULL), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 1, 16, NULL, NULL), LLM_OK);
    CHECK_EQ_INT(llm__kv_seq_grow(kv, 2, 16, NULL, NULL), LLM_OK);
    commit_seq(kv, 1, toks, 16);
    commit_seq(kv, 2, toks, 16);
    CHECK_EQ_INT(llm__kv_lookup(kv, h0, 42, toks), llm__kv_seq_block(kv, 1, 0));
    llm__kv_seq_truncate(kv, 0, 0);
    llm__kv_seq_truncate(kv, 1, 0);
    llm__kv_seq_truncate(kv, 2, 0);
    CHECK_EQ_INT(llm__kv_n_cached(kv), 1);
    CHECK_EQ_INT(llm__kv_n_free(kv), 6);
    CHECK(invariants_hold(kv));
    llm__kv_free(kv);
}

static void test_bad_geometry(void)
{
    llm_kv_cache *kv = (llm_kv_cache *)1;
    CHECK_EQ_INT(llm__kv_create(0, 16, 1, &kv), LLM_ERR_INVALID_ARG);
    CHECK(kv == NULL);
}

int main(void)
{
    TEST_RUN(test_grow_truncate);
    TEST_RUN(test_full_changes_nothing);
    TEST_RUN(test_fork_copy_on_write);
    TEST_RUN(test_random_ops);
    TEST_RUN(test_prefix_cache);
    TEST_RUN(test_bad_geometry);
    return test_summary();
}
