/* argmax_dump.c - teacher-forced argmax of a model at every position of a text, for
 * comparing implementations (scripts/argmax-agreement).
 *
 *   argmax_dump MODEL TEXT N BACKEND [one]    writes "pos token argmax margin" lines
 *
 * The text's first N tokens (with the model's special tokens) are decoded with logits at
 * every position, in one batch, or one token per llm_decode with "one". The margin is the
 * gap between the best and the second-best logit. LLM_CPU_ISA picks the CPU kernels'
 * instruction-set level (scalar, avx2, avx512, neon, native). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "llm.h"

#include "test_io.h"

static void put(const float *l, int32_t nv, int32_t pos, llm_token tok)
{
    int32_t best = 0;
    for (int32_t v = 1; v < nv; v++)
        if (l[v] > l[best])
            best = v;
    float second = -INFINITY;
    for (int32_t v = 0; v < nv; v++)
        if (v != best && l[v] > second)
            second = l[v];
    printf("%d %d %d %.5f\n", pos, tok, best, l[best] - second);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: argmax_dump MODEL TEXT N BACKEND [one]\n");
        return 2;
    }
    const int32_t n = atoi(argv[3]);
    const int one = argc > 5 && strcmp(argv[5], "one") == 0;
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.backend = argv[4];
    llm_model *m = NULL;
    if (llm_model_load(argv[1], &mp, &m) != LLM_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], llm_last_error());
        return 1;
    }
    char *text = test_read_file(argv[2], NULL);
    llm_token *toks = malloc(65536 * sizeof *toks);
    const int32_t nt =
        text && toks ? llm_tokenize(m, text, strlen(text), toks, 65536, LLM_TOKENIZE_ADD_SPECIAL)
                     : -1;
    if (n <= 0 || nt < n) {
        fprintf(stderr, "%s: %d tokens, %d asked\n", argv[2], nt, n);
        return 1;
    }
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = n;
    cp.n_batch = one ? 1 : n;
    llm_context *c = NULL;
    if (llm_context_create(m, &cp, &c) != LLM_OK) {
        fprintf(stderr, "context: %s\n", llm_last_error());
        return 1;
    }
    const int32_t nv = llm_model_n_vocab(m);
    int8_t *want = malloc((size_t)n);
    memset(want, 1, (size_t)n);
    for (int32_t i0 = 0; i0 < n; i0 += one ? 1 : n) {
        llm_batch b;
        llm_batch_init(&b);
        b.n_tokens = one ? 1 : n;
        b.tokens = toks + i0;
        b.logits = want;
        if (llm_decode(c, &b) != LLM_OK) {
            fprintf(stderr, "decode: %s\n", llm_context_last_error(c));
            return 1;
        }
        for (int32_t i = 0; i < b.n_tokens; i++)
            put(llm_context_logits(c, i), nv, i0 + i, toks[i0 + i]);
    }
    free(want);
    llm_context_free(c);
    llm_model_free(m);
    free(toks);
    free(text);
    return 0;
}
