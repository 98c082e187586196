/* sampler.h - the sampler chain's interface to the rest of lib/ and to its unit test.
 * Private; never installed. */
#ifndef LLM_SAMPLER_H
#define LLM_SAMPLER_H

#include "backend.h"
#include "internal.h"

/* llm_sampler_create without a model: the vocabulary size is given directly. Same
 * params contract and errors as the public call (n_vocab < 1 is LLM_ERR_INVALID_ARG). */
LLM_INTERNAL llm_status llm__sampler_create_n(int32_t n_vocab, const llm_sampler_params *p,
                                              llm_sampler **out);

/* The parameters in effect after size handling and defaulting. */
LLM_INTERNAL const llm_sampler_params *llm__sampler_params(const llm_sampler *s);

/* Writes into out[0..n_vocab) the logits after the penalties of the current history,
 * exactly as the next llm_sampler_sample would see them. */
LLM_INTERNAL void llm__sampler_penalized(llm_sampler *s, const float *logits, float *out);

/* Runs the chain up to, but not including, the draw: writes the surviving tokens and
 * their final probabilities (after temperature; they sum to 1) into ids/probs, which
 * must hold n_vocab entries, and returns how many survive (0 when every logit is -inf
 * or NaN). With temperature <= 0 the single survivor is the argmax. Changes neither the
 * history nor the generator. */
LLM_INTERNAL int32_t llm__sampler_candidates(llm_sampler *s, const float *logits,
                                             llm_token *ids, float *probs);

/* llm_sampler_sample from the k best logits of the row instead of the whole row: ids and
 * vals as the backends' top_k op gives them (descending, equal values by lower id, id -1
 * past the row's valid values). When the chain's result depends only on those k (no
 * penalty with a history, or penalized: the row had llm__sampler_penalties applied by the
 * backend's penalize op before its top_k; greedy, or top-k of at most k, or no top-k but a
 * top-p or min-p that the k settle, given z: the row's mass relative to its maximum, the
 * backend's row_sumexp, NULL when not known), samples exactly as llm_sampler_sample would
 * from the full row, stores the token (or -1 with the thread's error set, as
 * llm_sampler_sample) in *out and returns 1; else returns 0 and changes nothing. */
LLM_INTERNAL int llm__sampler_sample_top(llm_sampler *s, const llm_token *ids,
                                         const float *vals, int32_t k, int penalized,
                                         const float *z, llm_token *out);

/* Whether llm__sampler_sample_top may take k candidates, penalties aside: the chain is
 * greedy, or its top-k is at most k, or it has none but a top-p (when the row's z will be
 * known: have_z) or a min-p (then it still refuses rows the k do not settle). */
LLM_INTERNAL int llm__sampler_top_ok(const llm_sampler *s, int32_t k, int have_z);
/* Whether sample_top needs the row's z (top-p without top-k). */
LLM_INTERNAL int llm__sampler_wants_z(const llm_sampler *s);
/* llm_sampler_sample of logits that already have the penalties of the current history
 * applied (by the backend's penalize op): the same draw, without penalising again. */
LLM_INTERNAL llm_token llm__sampler_sample_penalized(llm_sampler *s, const float *logits);

/* The penalties the next draw applies to the logits, as entries of the backend's penalize
 * op for logits row `row`: one per distinct token of the history, with exactly the
 * arithmetic of llm_sampler_sample. Writes at most llm__sampler_penalty_max(s) entries to
 * out and returns how many. */
LLM_INTERNAL int32_t llm__sampler_penalties(llm_sampler *s, int32_t row, llm_penalty *out);
LLM_INTERNAL int32_t llm__sampler_penalty_max(const llm_sampler *s);

#endif
