/* engine_util.h - drives the request engine in tests and records what each completion
 * produced: its tokens, its text, how it ended, and the log-probabilities reported. Uses
 * only llm.h. Header-only. */
#ifndef ENGINE_UTIL_H
#define ENGINE_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "llm.h"

#define EU_MAX_TOKENS 1024

typedef struct eu_out {
    llm_request_id id;
    int32_t index;
    llm_token tokens[EU_MAX_TOKENS];
    float logprob[EU_MAX_TOKENS];
    int32_t n_tokens;
    char *text;
    size_t text_len;
    int n_final;         /* FINISHED or ERROR events seen (must end at 1) */
    int finish_reason;
    llm_status error;
    int32_t n_generated, n_prompt, n_cached;
    int bad_utf8_split;  /* an event's text ended inside a character the next one completed */
    int tail_need;       /* continuation bytes the last text's end waits for */
    int after_final;     /* events after the final one */
    float top_lp[4];     /* first token's alternatives */
    llm_token top_tok[4];
} eu_out;

typedef struct eu_log {
    eu_out *outs;
    int32_t n, cap;
} eu_log;

static inline eu_out *eu_find(eu_log *log, llm_request_id id, int32_t index)
{
    for (int32_t i = 0; i < log->n; i++)
        if (log->outs[i].id == id && log->outs[i].index == index)
            return &log->outs[i];
    if (log->n == log->cap) {
        log->cap = log->cap ? 2 * log->cap : 64;
        log->outs = realloc(log->outs, (size_t)log->cap * sizeof *log->outs);
        if (!log->outs)
            abort();
    }
    eu_out *o = &log->outs[log->n++];
    memset(o, 0, sizeof *o);
    o->id = id;
    o->index = index;
    return o;
}

/* Continuation bytes that the end of p[0..n) waits for (0: it ends a character). */
static inline int eu_tail_need(const char *p, int32_t n)
{
    for (int32_t back = 1; back <= 4 && back <= n; back++) {
        const unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xc0) == 0x80)
            continue;
        const int need = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                       : (c & 0xf8) == 0xf0 ? 4 : 1;
        return need > back ? need - back : 0;
    }
    return 0;
}

static inline void eu_record(eu_log *log, const llm_event *ev)
{
    eu_out *o = eu_find(log, ev->id, ev->index);
    if (o->n_final)
        o->after_final = 1;
    if (ev->text_len > 0) {
        /* a character split between events: the previous text waited for bytes that
         * this one starts with */
        if (o->tail_need > 0 && ev->text_len >= o->tail_need) {
            int cont = 1;
            for (int i = 0; i < o->tail_need; i++)
                cont &= ((unsigned char)ev->text[i] & 0xc0) == 0x80;
            o->bad_utf8_split |= cont;
        }
        o->tail_need = eu_tail_need(ev->text, ev->text_len);
        o->text = realloc(o->text, o->text_len + (size_t)ev->text_len + 1);
        if (!o->text)
            abort();
        memcpy(o->text + o->text_len, ev->text, (size_t)ev->text_len);
        o->text_len += (size_t)ev->text_len;
        o->text[o->text_len] = 0;
    }
    if (ev->type == LLM_EVENT_TOKEN) {
        if (o->n_tokens < EU_MAX_TOKENS) {
            if (o->n_tokens == 0)
                for (int i = 0; i < 4 && i < ev->n_top; i++)
                    o->top_lp[i] = ev->top_logprobs[i], o->top_tok[i] = ev->top_tokens[i];
            o->logprob[o->n_tokens] = ev->logprob;
            o->tokens[o->n_tokens++] = ev->token;
        }
    } else {
        o->n_final++;
        o->finish_reason = ev->finish_reason;
        o->error = ev->type == LLM_EVENT_ERROR ? ev->status : LLM_OK;
        o->n_generated = ev->n_generated;
        o->n_prompt = ev->n_prompt_tokens;
        o->n_cached = ev->n_cached_tokens;
    }
}

/* Takes every queued event into the log; returns how many. */
static inline int eu_drain(llm_context *ctx, eu_log *log)
{
    static llm_event evs[64];
    static char text[1 << 16];
    int total = 0;
    for (;;) {
        int32_t n = llm_poll(ctx, evs, 64, text, (int32_t)sizeof text);
        if (n <= 0)
            return total;
        for (int32_t i = 0; i < n; i++)
            eu_record(log, &evs[i]);
        total += n;
    }
}

/* Steps until nothing is pending (or a step fails, or max_steps). Returns the status of
 * the last step. */
static inline llm_status eu_run(llm_context *ctx, eu_log *log, int64_t max_steps)
{
    llm_status st = LLM_OK;
    for (int64_t i = 0; i < max_steps && llm_pending(ctx) > 0; i++) {
        st = llm_step(ctx);
        eu_drain(ctx, log);
        if (st != LLM_OK)
            break;
    }
    eu_drain(ctx, log);
    return st;
}

static inline void eu_free(eu_log *log)
{
    for (int32_t i = 0; i < log->n; i++)
        free(log->outs[i].text);
    free(log->outs);
    memset(log, 0, sizeof *log);
}

static inline llm_status eu_submit_tokens(llm_context *ctx, const llm_token *toks, int32_t n,
                                   int32_t max_tokens, llm_request_id *id)
{
    llm_request_params p;
    llm_request_params_init(&p);
    p.tokens = toks;
    p.n_tokens = n;
    p.max_tokens = max_tokens;
    return llm_request_submit(ctx, &p, id);
}

#endif
