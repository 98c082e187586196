/* chat.h - chat templates: a small Jinja interpreter running the template stored in a
 * GGUF file (tokenizer.chat_template). Private; never installed. */
#ifndef LLM_CHAT_H
#define LLM_CHAT_H

#include "internal.h"

/* Renders messages with a Jinja template. The template sees `messages` (a list of
 * {role, content}), `add_generation_prompt`, `bos_token`, `eos_token`, and the functions
 * real templates use (raise_exception, strftime_now). Same return contract as the public
 * llm_chat_apply; on failure returns INT32_MIN and sets the error (LLM_ERR_TEMPLATE) with
 * the template line and what went wrong. */
LLM_INTERNAL int32_t llm__chat_render(const char *tmpl, const llm_chat_message *msgs,
                                      int32_t n_msgs, int add_generation_prompt,
                                      const char *bos_token, const char *eos_token, char *buf,
                                      int32_t cap);

/* The standard chat template of an architecture whose GGUF files usually carry none
 * ("gemma3": Google's Gemma 3 template; "gemma2" / "gemma": the Gemma template), or NULL.
 * The text is static. */
LLM_INTERNAL const char *llm__chat_builtin_template(const char *arch);

#endif
