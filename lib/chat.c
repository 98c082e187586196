/* chat.c - chat templates: render a conversation with the model's Jinja template.
 *
 * The template sees what Hugging Face's apply_chat_template passes: `messages` (a list
 * of {role, content}), `add_generation_prompt`, the special tokens `bos_token` and
 * `eos_token` (left undefined when the model has none), and `tools` / `documents` set to
 * None. The interpreter is lib/jinja.c. */
#include <string.h>

#include "chat.h"
#include "jinja.h"

/* Gemma 3's template as Google ships it in tokenizer_config.json: a system message is
 * folded into the first user turn; roles user/model; bos_token first. The GGUF files of
 * Gemma 3 often carry no template, so the model falls back to this text. Kept identical
 * to tests/data/templates/gemma3.jinja (test_chat checks). */
static const char gemma3_template[] =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate "
    "user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n";

/* Gemma and Gemma 2: no system role, user/model turns. Kept identical to
 * tests/data/templates/gemma2.jinja. */
static const char gemma2_template[] =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
    "not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must "
    "alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == "
    "'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% "
    "endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
    "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>"
    "model\\n'}}{% endif %}\n";

const char *llm__chat_builtin_template(const char *arch)
{
    if (!arch)
        return NULL;
    if (!strcmp(arch, "gemma3") || !strcmp(arch, "gemma3n"))
        return gemma3_template;
    if (!strcmp(arch, "gemma2") || !strcmp(arch, "gemma"))
        return gemma2_template;
    return NULL;
}

/* The variables of the conversation; NULL strings become None (content) or stay
 * undefined (special tokens the model does not have). */
static llm_status build_context(llm__jinja_ctx *c, const llm_chat_message *msgs,
                                int32_t n_msgs, int add_generation_prompt,
                                const char *bos_token, const char *eos_token)
{
    llm__jinja_val *list = llm__jinja_list(c);
    if (!list)
        return llm__fail(LLM_ERR_NO_MEMORY, "chat template: out of memory");
    for (int32_t i = 0; i < n_msgs; i++) {
        llm__jinja_val *d = llm__jinja_dict(c);
        const char *role = msgs[i].role, *content = msgs[i].content;
        llm__jinja_val *r = role ? llm__jinja_str(c, role, strlen(role), 1) : llm__jinja_none(c);
        llm__jinja_val *t =
            content ? llm__jinja_str(c, content, strlen(content), 1) : llm__jinja_none(c);
        if (!d || !r || !t)
            return llm__fail(LLM_ERR_NO_MEMORY, "chat template: out of memory");
        llm_status st = llm__jinja_dict_set(c, d, "role", r);
        if (!st)
            st = llm__jinja_dict_set(c, d, "content", t);
        if (!st)
            st = llm__jinja_list_push(c, list, d);
        if (st)
            return st;
    }
    llm__jinja_val *agp = llm__jinja_bool(c, add_generation_prompt != 0);
    llm__jinja_val *none = llm__jinja_none(c);
    if (!agp || !none)
        return llm__fail(LLM_ERR_NO_MEMORY, "chat template: out of memory");
    llm_status st = llm__jinja_set(c, "messages", list);
    if (!st)
        st = llm__jinja_set(c, "add_generation_prompt", agp);
    if (!st)
        st = llm__jinja_set(c, "tools", none);
    if (!st)
        st = llm__jinja_set(c, "documents", none);
    if (!st && bos_token) {
        llm__jinja_val *v = llm__jinja_str(c, bos_token, strlen(bos_token), 1);
        st = v ? llm__jinja_set(c, "bos_token", v)
               : llm__fail(LLM_ERR_NO_MEMORY, "chat template: out of memory");
    }
    if (!st && eos_token) {
        llm__jinja_val *v = llm__jinja_str(c, eos_token, strlen(eos_token), 1);
        st = v ? llm__jinja_set(c, "eos_token", v)
               : llm__fail(LLM_ERR_NO_MEMORY, "chat template: out of memory");
    }
    return st;
}

int32_t llm__chat_render(const char *tmpl, const llm_chat_message *msgs, int32_t n_msgs,
                         int add_generation_prompt, const char *bos_token,
                         const char *eos_token, char *buf, int32_t cap)
{
    if (!tmpl || n_msgs < 0 || (n_msgs > 0 && !msgs) || cap < 0 || (cap > 0 && !buf)) {
        llm__fail(LLM_ERR_INVALID_ARG, "chat template: invalid argument (template %s, "
                  "%d messages, buffer capacity %d)", tmpl ? "set" : "NULL", (int)n_msgs,
                  (int)cap);
        return INT32_MIN;
    }
    llm__jinja_tmpl *t = NULL;
    llm__jinja_ctx *c = NULL;
    char *text = NULL;
    size_t len = 0;
    int32_t ret = INT32_MIN;
    llm_status st = llm__jinja_parse(tmpl, strlen(tmpl), &t);
    if (!st)
        st = llm__jinja_ctx_create(&c);
    if (!st)
        st = build_context(c, msgs, n_msgs, add_generation_prompt, bos_token, eos_token);
    if (!st)
        st = llm__jinja_render(t, c, &text, &len);
    if (!st) {
        if (len >= (size_t)INT32_MAX) {
            llm__fail(LLM_ERR_TEMPLATE, "chat template: output of %zu bytes is too long", len);
        } else if ((size_t)cap < len + 1) {
            ret = -(int32_t)(len + 1);
        } else {
            memcpy(buf, text, len + 1);
            ret = (int32_t)len;
        }
    }
    llm__free(text);
    llm__jinja_ctx_free(c);
    llm__jinja_tmpl_free(t);
    return ret;
}
