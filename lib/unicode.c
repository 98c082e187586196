/* unicode.c - code point classes and UTF-8 helpers for the tokenizers (see unicode.h). */
#include "unicode.h"

#include "unicode_table.h"

uint32_t llm__utf8_decode(const char *s, size_t len, size_t *pos)
{
    const unsigned char *p = (const unsigned char *)s + *pos;
    size_t left = len - *pos;
    uint32_t b0 = p[0];
    size_t n;
    uint32_t cp;

    if (b0 < 0x80) {
        *pos += 1;
        return b0;
    }
    if ((b0 & 0x40) == 0)
        goto invalid; /* stray continuation byte */
    if ((b0 & 0x20) == 0) {
        n = 2;
        cp = b0 & 0x1f;
    } else if ((b0 & 0x10) == 0) {
        n = 3;
        cp = b0 & 0x0f;
    } else if ((b0 & 0x08) == 0) {
        n = 4;
        cp = b0 & 0x07;
    } else {
        goto invalid;
    }
    if (left < n)
        goto invalid;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            goto invalid;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    *pos += n;
    return cp <= 0x10ffff ? cp : 0xfffd;
invalid:
    *pos += 1;
    return 0xfffd;
}

size_t llm__utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

enum llm_ucat llm__ucat(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return LLM_UCAT_LETTER;
        if (cp >= '0' && cp <= '9')
            return LLM_UCAT_NUMBER;
        switch (cp) {
        case '$': case '+': case '<': case '=': case '>': case '^': case '`': case '|':
        case '~':
            return LLM_UCAT_SYMBOL;
        }
        if (cp > 0x20 && cp < 0x7f)
            return LLM_UCAT_PUNCT;
        return LLM_UCAT_OTHER;
    }
    if (cp > 0x10ffff)
        return LLM_UCAT_OTHER;
    /* Last run whose first code point is <= cp. */
    size_t lo = 0, hi = sizeof ucat_runs / sizeof ucat_runs[0];
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((ucat_runs[mid] >> 8) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (enum llm_ucat)(ucat_runs[lo] & 0xff);
}

int llm__is_space(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20;
    switch (cp) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f:
    case 0x3000:
        return 1;
    }
    return cp >= 0x2000 && cp <= 0x200a;
}

/* GPT-2 keeps the printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) as their own
 * code points and numbers the other 68 bytes, in byte order, from U+0100 on. */
static int gpt2_keeps(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

uint32_t llm__gpt2_byte_to_cp(unsigned char b)
{
    if (gpt2_keeps(b))
        return b;
    /* Bytes below b that are remapped: those < 0x21, plus 0x7F..0xA0 and 0xAD. */
    unsigned n;
    if (b <= 0x20)
        n = b;
    else if (b <= 0xa0)
        n = 0x21 + (b - 0x7f);
    else
        n = 0x21 + 0x22; /* 0xAD */
    return 0x100 + n;
}

int llm__gpt2_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return gpt2_keeps(cp) ? (int)cp : -1;
    if (cp < 0x100 + 0x21)
        return (int)(cp - 0x100);
    if (cp < 0x100 + 0x21 + 0x22)
        return (int)(cp - 0x100 - 0x21 + 0x7f);
    if (cp == 0x100 + 0x43)
        return 0xad;
    return -1;
}
