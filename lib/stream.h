/* stream.h - releasing generated text safely: whole UTF-8 characters only, and never a
 * byte that could belong to a stop string until the string is ruled out. Private. */
#ifndef LLM_STREAM_H
#define LLM_STREAM_H

#include "internal.h"

typedef struct llm_stream {
    char *buf;          /* bytes generated and not yet released */
    size_t len, cap;
    char **stop;        /* borrowed stop strings */
    size_t *stop_len;
    int32_t n_stop;
} llm_stream;

/* Appends n bytes. Sets *n_release to the number of leading bytes of s->buf that may be
 * released now and returns 1 if a stop string matched (its first byte is at *n_release;
 * the match and everything after it are to be dropped), 0 if not, or -1 when out of
 * memory. */
LLM_INTERNAL int llm__stream_push(llm_stream *s, const char *p, size_t n, size_t *n_release);
/* Drops the first n bytes (after they were released). */
LLM_INTERNAL void llm__stream_consume(llm_stream *s, size_t n);
LLM_INTERNAL void llm__stream_free(llm_stream *s);

#endif
