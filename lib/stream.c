/* stream.c - see stream.h. */
#include <string.h>

#include "stream.h"

/* Bytes at the end of p[0..n) that start a UTF-8 character not yet complete. */
static size_t utf8_incomplete_tail(const char *p, size_t n)
{
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        const uint8_t c = (uint8_t)p[n - back];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation byte: look further back for the lead */
        const size_t need = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                          : (c & 0xf8) == 0xf0 ? 4 : 1;
        return need > back ? back : 0;
    }
    return 0; /* only continuation bytes (invalid text): nothing worth waiting for */
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m == 0 || m > n)
        return NULL;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}

int llm__stream_push(llm_stream *s, const char *p, size_t n, size_t *n_release)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n)
            cap *= 2;
        char *b = llm__realloc(s->buf, cap);
        if (!b)
            return -1;
        s->buf = b;
        s->cap = cap;
    }
    if (n)
        memcpy(s->buf + s->len, p, n);
    s->len += n;
    /* the earliest complete stop string wins */
    const char *first = NULL;
    for (int32_t i = 0; i < s->n_stop; i++) {
        const char *m = find_bytes(s->buf, s->len, s->stop[i], s->stop_len[i]);
        if (m && (!first || m < first))
            first = m;
    }
    if (first) {
        *n_release = (size_t)(first - s->buf);
        return 1;
    }
    /* hold back the longest tail that a stop string starts with */
    size_t hold = 0;
    for (int32_t i = 0; i < s->n_stop; i++) {
        const size_t m = s->stop_len[i];
        for (size_t k = (m - 1 < s->len ? m - 1 : s->len); k > hold; k--)
            if (memcmp(s->buf + s->len - k, s->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    const size_t tail = utf8_incomplete_tail(s->buf, s->len);
    if (tail > hold)
        hold = tail;
    *n_release = s->len - hold;
    return 0;
}

void llm__stream_consume(llm_stream *s, size_t n)
{
    if (n >= s->len) {
        s->len = 0;
        return;
    }
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
}

void llm__stream_free(llm_stream *s)
{
    llm__free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}
