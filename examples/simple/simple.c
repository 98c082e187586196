/* simple.c - the smallest complete libllm program: load a model, decode a prompt, then
 * generate 32 tokens greedily and print them.   usage: simple MODEL.gguf [PROMPT] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llm.h>

static int fail(const char *what, llm_status st, const char *msg)
{
    fprintf(stderr, "simple: %s: %s: %s\n", what, llm_status_str(st), msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT]\n", argv[0]);
        return 1;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    llm_model *model = NULL;
    llm_context *ctx = NULL;
    llm_sampler *smpl = NULL;
    llm_token tokens[512];
    int rc = 1;

    llm_status st = llm_model_load(argv[1], NULL, &model);
    if (st != LLM_OK)
        return fail("load", st, llm_last_error());
    if ((st = llm_context_create(model, NULL, &ctx)) != LLM_OK) {
        rc = fail("context", st, llm_last_error());
        goto done;
    }
    llm_sampler_params sp;
    llm_sampler_params_init(&sp);
    sp.temperature = 0.0f; /* greedy */
    if ((st = llm_sampler_create(model, &sp, &smpl)) != LLM_OK) {
        rc = fail("sampler", st, llm_last_error());
        goto done;
    }

    int32_t n = llm_tokenize(model, prompt, strlen(prompt), tokens, 512,
                             LLM_TOKENIZE_ADD_SPECIAL | LLM_TOKENIZE_PARSE_SPECIAL);
    if (n <= 0) {
        rc = fail("tokenize", LLM_ERR_INVALID_ARG,
                  n == INT32_MIN ? llm_last_error() : n < 0 ? "prompt too long" : "empty prompt");
        goto done;
    }
    printf("%s", prompt);
    llm_batch batch;
    llm_batch_init(&batch);
    batch.tokens = tokens;
    batch.n_tokens = n; /* the whole prompt, then one token at a time */
    for (int i = 0; i < 32; i++) {
        if ((st = llm_decode(ctx, &batch)) != LLM_OK) {
            rc = fail("decode", st, llm_context_last_error(ctx));
            goto done;
        }
        llm_token t = llm_sampler_sample(smpl, llm_context_logits(ctx, -1));
        if (t < 0) {
            rc = fail("sample", LLM_ERR_INTERNAL, llm_last_error());
            goto done;
        }
        if (llm_model_token_is_eog(model, t))
            break;
        char piece[256];
        int32_t len = llm_token_to_piece(model, t, piece, sizeof piece, 0);
        if (len > 0)
            fwrite(piece, 1, (size_t)len, stdout);
        fflush(stdout);
        tokens[0] = t;
        batch.n_tokens = 1;
    }
    printf("\n");
    rc = 0;
done:
    llm_sampler_free(smpl);
    llm_context_free(ctx);
    llm_model_free(model);
    return rc;
}
