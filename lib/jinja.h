/* jinja.h - a small Jinja2 interpreter, enough of the language for chat templates.
 * Private; never installed.
 *
 * The behaviour reproduced is that of jinja2 as Hugging Face's apply_chat_template sets it
 * up: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 * extensions=[loopcontrols]), with the globals raise_exception() and strftime_now() and
 * HF's own tojson filter (json.dumps with ensure_ascii=False). Undefined names render as
 * "" and are false, as with jinja2's default Undefined.
 *
 * Use: parse a template once (llm__jinja_parse), then for each render build a context of
 * values (llm__jinja_ctx_*) and call llm__jinja_render. A parsed template is immutable
 * and may be rendered by several threads at once; a context is read-only during a render,
 * so it too may be shared by concurrent renders once built.
 *
 * Errors (syntax, unknown filter, type errors, raise_exception, limits) return
 * LLM_ERR_TEMPLATE with "template: line N: what" in llm_last_error(); allocation failure
 * returns LLM_ERR_NO_MEMORY. Nothing aborts: recursion depth, output size, memory and the
 * number of executed statements are bounded. */
#ifndef LLM_JINJA_H
#define LLM_JINJA_H

#include "internal.h"

typedef struct llm__jinja_tmpl llm__jinja_tmpl;
typedef struct llm__jinja_ctx llm__jinja_ctx;
/* A value held by a context; lives as long as the context. */
typedef struct llm__jinja_val llm__jinja_val;

/* Parses `len` bytes of template text. The source is copied; *out is freed with
 * llm__jinja_tmpl_free. */
LLM_INTERNAL llm_status llm__jinja_parse(const char *src, size_t len, llm__jinja_tmpl **out);
LLM_INTERNAL void llm__jinja_tmpl_free(llm__jinja_tmpl *t);

/* A context: the global variables one render sees, and the limits it runs under. */
LLM_INTERNAL llm_status llm__jinja_ctx_create(llm__jinja_ctx **out);
LLM_INTERNAL void llm__jinja_ctx_free(llm__jinja_ctx *c);

/* Limits of a render under this context; 0 keeps the default (64 MiB of output, 256 MiB
 * of working memory, 20 million executed statements and loop iterations). */
LLM_INTERNAL void llm__jinja_ctx_limits(llm__jinja_ctx *c, size_t max_output,
                                        size_t max_memory, uint64_t max_steps);

/* Value constructors; NULL when memory runs out. llm__jinja_str copies the bytes unless
 * `borrow` is set, in which case they must outlive every render with this context. */
LLM_INTERNAL llm__jinja_val *llm__jinja_none(llm__jinja_ctx *c);
LLM_INTERNAL llm__jinja_val *llm__jinja_bool(llm__jinja_ctx *c, int b);
LLM_INTERNAL llm__jinja_val *llm__jinja_int(llm__jinja_ctx *c, int64_t i);
LLM_INTERNAL llm__jinja_val *llm__jinja_float(llm__jinja_ctx *c, double f);
LLM_INTERNAL llm__jinja_val *llm__jinja_str(llm__jinja_ctx *c, const char *s, size_t n,
                                            int borrow);
LLM_INTERNAL llm__jinja_val *llm__jinja_list(llm__jinja_ctx *c);
LLM_INTERNAL llm__jinja_val *llm__jinja_dict(llm__jinja_ctx *c);
/* Parses JSON text (RFC 8259) into a value: objects become dicts (key order kept),
 * integers that fit int64 become ints. NULL with the message in llm_last_error(). */
LLM_INTERNAL llm__jinja_val *llm__jinja_json(llm__jinja_ctx *c, const char *json, size_t n);

/* Appends to a list / sets a key of a dict (both made by this context). */
LLM_INTERNAL llm_status llm__jinja_list_push(llm__jinja_ctx *c, llm__jinja_val *list,
                                             const llm__jinja_val *v);
LLM_INTERNAL llm_status llm__jinja_dict_set(llm__jinja_ctx *c, llm__jinja_val *dict,
                                            const char *key, const llm__jinja_val *v);

/* Defines (or replaces) a global variable. */
LLM_INTERNAL llm_status llm__jinja_set(llm__jinja_ctx *c, const char *name,
                                       const llm__jinja_val *v);

/* Defines each key of a dict (e.g. one made by llm__jinja_json) as a global variable. */
LLM_INTERNAL llm_status llm__jinja_set_all(llm__jinja_ctx *c, const llm__jinja_val *dict);

/* Renders. On success *out holds NUL-terminated text of *out_len bytes, allocated with
 * llm__malloc (free with llm__free). */
LLM_INTERNAL llm_status llm__jinja_render(const llm__jinja_tmpl *t, const llm__jinja_ctx *c,
                                          char **out, size_t *out_len);

/* For tests: makes strftime_now() on this thread format the fixed time `t` (seconds since
 * the epoch, as UTC) instead of the local clock; t < 0 restores the clock. */
LLM_INTERNAL void llm__jinja_fix_time(int64_t t);

#endif
