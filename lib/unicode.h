/* unicode.h - the little Unicode the tokenizers need: UTF-8 decoding with llama.cpp's
 * leniency, code point classes (Unicode 15.1, as llama.cpp's tables), the White_Space set,
 * and GPT-2's byte <-> code point mapping. Private; never installed. */
#ifndef LLM_UNICODE_H
#define LLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Major general-category classes; the values are those in lib/unicode_table.h. */
enum llm_ucat {
    LLM_UCAT_OTHER = 0, /* C*, Z* and unassigned */
    LLM_UCAT_NUMBER = 1,
    LLM_UCAT_LETTER = 2,
    LLM_UCAT_PUNCT = 3,
    LLM_UCAT_MARK = 4,
    LLM_UCAT_SYMBOL = 5
};

/* Byte length of a UTF-8 sequence from its first byte alone (1 for stray continuation
 * bytes), as llama.cpp splits text into symbols. */
static inline size_t llm__utf8_len(unsigned char lead)
{
    static const unsigned char n[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return n[lead >> 4];
}

/* Decodes one code point at s[*pos] (pos < len) and advances *pos. Follows llama.cpp: the
 * lead byte decides the length and only continuation bytes are checked, so overlong forms
 * and surrogates pass; anything else gives U+FFFD and advances one byte. Values above
 * U+10FFFF (lead bytes F5..F7) also become U+FFFD. */
uint32_t llm__utf8_decode(const char *s, size_t len, size_t *pos);

/* Writes cp (<= 0x10FFFF) as 1..4 bytes; returns the count. */
size_t llm__utf8_encode(uint32_t cp, char out[4]);

enum llm_ucat llm__ucat(uint32_t cp);
int llm__is_space(uint32_t cp); /* Unicode White_Space */

/* GPT-2's reversible byte -> printable code point mapping, and back (-1 when cp is not
 * the image of any byte). */
uint32_t llm__gpt2_byte_to_cp(unsigned char b);
int llm__gpt2_cp_to_byte(uint32_t cp);

#endif
