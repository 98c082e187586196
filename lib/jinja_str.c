/* jinja_str.c - text for the Jinja interpreter: UTF-8, the bits of Unicode that Python's
 * str methods need (simple case mapping, SpecialCasing's one-to-many forms, \\w, isspace,
 * isprintable), strings built in a render's arena, and str's methods as templates call
 * them. Split out of lib/jinja_builtins.c, which uses these for filters and repr(); the
 * shared declarations are in lib/jinja_int.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"
#include "unicode.h"

/* ---- UTF-8 and the bits of Unicode that str methods need ------------------------- */

/* Decodes one code point at s[*i]; an invalid byte b comes back as 0xDC00 + b (Python's
 * surrogateescape) so that it re-encodes to itself. */
uint32_t llm__j_u8dec(const char *s, size_t n, size_t *i)
{
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t left = n - *i;
    uint32_t c = p[0];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (c >= 0xF5)
        len = 0;
    if (len == 0 || (size_t)len > left)
        goto bad;
    uint32_t cp = c & (0xFF >> (len + 1));
    for (int k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80)
            goto bad;
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        goto bad;
    *i += (size_t)len;
    return cp;
bad:
    *i += 1;
    return 0xDC00 + c;
}

size_t llm__j_u8enc(uint32_t c, char *o)
{
    if (c >= 0xDC80 && c <= 0xDCFF) {
        o[0] = (char)(c - 0xDC00);
        return 1;
    }
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

size_t llm__j_u8len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        llm__j_u8dec(s, n, &i);
        k++;
    }
    return k;
}

/* Python's str.isspace(). */
int llm__j_py_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Ranges where upper and lower case alternate: [lo, hi] with the upper case at the even
 * (or, `odd_upper`, the odd) code points. */
static const struct {
    uint32_t lo, hi;
    int odd_upper;
} case_pairs[] = {
    {0x100, 0x12F, 0}, {0x132, 0x137, 0}, {0x139, 0x148, 1}, {0x14A, 0x177, 0},
    {0x179, 0x17E, 1}, {0x1CD, 0x1DC, 1}, {0x1DE, 0x1EF, 0}, {0x1F8, 0x21F, 0},
    {0x222, 0x233, 0}, {0x460, 0x481, 0}, {0x48A, 0x4BF, 0}, {0x4C1, 0x4CE, 1},
    {0x4D0, 0x52F, 0}, {0x1E00, 0x1E95, 0}, {0x1EA0, 0x1EFF, 0}};

/* -1: not in a pair range; else 1 when c is the upper case of its pair. */
static int pair_upper(uint32_t c)
{
    for (size_t i = 0; i < sizeof case_pairs / sizeof case_pairs[0]; i++)
        if (c >= case_pairs[i].lo && c <= case_pairs[i].hi)
            return (int)((c & 1) == (uint32_t)case_pairs[i].odd_upper);
    return -1;
}

/* Simple case mapping for Latin, Greek, Cyrillic, Armenian and fullwidth Latin; other
 * scripts are left as they are. */
uint32_t llm__j_cp_upper(uint32_t c)
{
    if (c >= 'a' && c <= 'z')
        return c - 32;
    if (c < 0x80)
        return c;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7))
        return c - 0x20;
    if (c == 0xFF)
        return 0x178;
    int pu = pair_upper(c);
    if (pu >= 0)
        return pu ? c : c - 1;
    if (c == 0x1C5 || c == 0x1C6 || c == 0x1C8 || c == 0x1C9 || c == 0x1CB || c == 0x1CC)
        return c == 0x1C5 || c == 0x1C8 || c == 0x1CB ? c - 1 : c - 2;
    if (c == 0x1F2 || c == 0x1F3)
        return 0x1F1;
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2)
        return c - 0x20;
    if (c == 0x3C2)
        return 0x3A3;
    if (c == 0x3AC)
        return 0x386;
    if (c >= 0x3AD && c <= 0x3AF)
        return c - 0x25;
    if (c == 0x3CC)
        return 0x38C;
    if (c == 0x3CD || c == 0x3CE)
        return c - 0x3F;
    if (c >= 0x430 && c <= 0x44F)
        return c - 0x20;
    if (c >= 0x450 && c <= 0x45F)
        return c - 0x50;
    if (c >= 0x561 && c <= 0x586)
        return c - 0x30;
    if (c >= 0xFF41 && c <= 0xFF5A)
        return c - 0x20;
    return c;
}

uint32_t llm__j_cp_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c + 32;
    if (c < 0x80)
        return c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return c + 0x20;
    if (c == 0x178)
        return 0xFF;
    int pu = pair_upper(c);
    if (pu >= 0)
        return pu ? c + 1 : c;
    if (c == 0x1C4 || c == 0x1C5 || c == 0x1C7 || c == 0x1C8 || c == 0x1CA || c == 0x1CB)
        return c == 0x1C4 || c == 0x1C7 || c == 0x1CA ? c + 2 : c + 1;
    if (c == 0x1F1 || c == 0x1F2)
        return 0x1F3;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
        return c + 0x20;
    if (c == 0x386)
        return 0x3AC;
    if (c >= 0x388 && c <= 0x38A)
        return c + 0x25;
    if (c == 0x38C)
        return 0x3CC;
    if (c == 0x38E || c == 0x38F)
        return c + 0x3F;
    if (c >= 0x410 && c <= 0x42F)
        return c + 0x20;
    if (c >= 0x400 && c <= 0x40F)
        return c + 0x50;
    if (c >= 0x531 && c <= 0x556)
        return c + 0x30;
    if (c >= 0xFF21 && c <= 0xFF3A)
        return c + 0x20;
    return c;
}

static int cp_cased(uint32_t c)
{
    return llm__j_cp_upper(c) != c || llm__j_cp_lower(c) != c || c == 0xDF || c == 0x138;
}

/* \w of Python's re for str patterns: letters, numbers and underscore. */
int llm__j_cp_word(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (c >= 0xDC80 && c <= 0xDCFF) /* a raw byte of invalid UTF-8 */
        return 0;
    enum llm_ucat k = llm__ucat(c);
    return k == LLM_UCAT_LETTER || k == LLM_UCAT_NUMBER;
}

/* Python's str.isprintable() per code point: not a control, format, surrogate, private
 * use, unassigned or separator character (the space excepted). Used by repr(). */
int llm__j_cp_printable(uint32_t c)
{
    if (c < 0x80)
        return c >= 0x20 && c < 0x7F;
    if (c >= 0xDC80 && c <= 0xDCFF)
        return 0;
    return llm__ucat(c) != LLM_UCAT_OTHER;
}

/* ---- string building (in the arena) -------------------------------------------- */


void llm__j_sb_put(jm *m, sb *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 4)
                llm__j_nomem(m);
            cap *= 2;
        }
        char *p = llm__j_alloc(m, cap);
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

void llm__j_sb_c(jm *m, sb *b, char c)
{
    llm__j_sb_put(m, b, &c, 1);
}

void llm__j_sb_s(jm *m, sb *b, const char *s)
{
    llm__j_sb_put(m, b, s, strlen(s));
}

void llm__j_sb_cp(jm *m, sb *b, uint32_t c)
{
    char t[4];
    llm__j_sb_put(m, b, t, llm__j_u8enc(c, t));
}

LLM_PRINTF(3, 4) void llm__j_sb_f(jm *m, sb *b, const char *fmt, ...)
{
    char t[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    llm__j_sb_put(m, b, t, k < 0 ? 0 : (size_t)k < sizeof t ? (size_t)k : sizeof t - 1);
}

/* ---- string helpers shared by methods and filters ------------------------------- */

/* The one-to-many mappings of Unicode's SpecialCasing that are not language-specific
 * and that Python applies: ß, the Latin ligatures, ŉ, and İ. */
static const char *special_case(uint32_t c, int upper, int title)
{
    if (upper) {
        switch (c) {
        case 0xDF: return title ? "Ss" : "SS";
        case 0x149: return "\xCA\xBCN";
        case 0xFB00: return title ? "Ff" : "FF";
        case 0xFB01: return title ? "Fi" : "FI";
        case 0xFB02: return title ? "Fl" : "FL";
        case 0xFB03: return title ? "Ffi" : "FFI";
        case 0xFB04: return title ? "Ffl" : "FFL";
        case 0xFB05: case 0xFB06: return title ? "St" : "ST";
        default: return NULL;
        }
    }
    return c == 0x130 ? "i\xCC\x87" : NULL;
}

jv llm__j_s_case(jm *m, jv s, int mode) /* 0 lower, 1 upper, 2 capitalize, 3 title */
{
    sb b = {0};
    int prev_cased = 0, first = 1;
    for (size_t i = 0; i < s.u.s.n;) {
        uint32_t c = llm__j_u8dec(s.u.s.p, s.u.s.n, &i);
        int up = mode == 1 || (mode == 2 && first) || (mode == 3 && !prev_cased);
        const char *sp = special_case(c, up, mode >= 2);
        if (sp) {
            llm__j_sb_s(m, &b, sp);
            prev_cased = 1;
            first = 0;
            continue;
        }
        if (c == 0x3A3 && !up && prev_cased) {
            /* final sigma: after a cased letter and not before one */
            size_t j = i;
            int next_cased = j < s.u.s.n && cp_cased(llm__j_u8dec(s.u.s.p, s.u.s.n, &j));
            if (!next_cased) {
                llm__j_sb_cp(m, &b, 0x3C2);
                first = 0;
                continue;
            }
        }
        uint32_t o = c;
        if (mode == 0)
            o = llm__j_cp_lower(c);
        else if (mode == 1)
            o = llm__j_cp_upper(c);
        else if (mode == 2)
            o = first ? llm__j_cp_upper(c) : llm__j_cp_lower(c);
        else
            o = prev_cased ? llm__j_cp_lower(c) : llm__j_cp_upper(c);
        prev_cased = cp_cased(c);
        first = 0;
        llm__j_sb_cp(m, &b, o);
    }
    return sb_val(&b);
}

static int in_chars(uint32_t c, jv chars)
{
    if (chars.t != V_STR)
        return llm__j_py_space(c);
    for (size_t i = 0; i < chars.u.s.n;)
        if (llm__j_u8dec(chars.u.s.p, chars.u.s.n, &i) == c)
            return 1;
    return 0;
}

/* str.strip family; which: 1 left, 2 right, 3 both. */
jv llm__j_s_strip(jv s, jv chars, int which)
{
    const char *p = s.u.s.p;
    size_t a = 0, b = s.u.s.n;
    if (which & 1) {
        while (a < b) {
            size_t i = a;
            if (!in_chars(llm__j_u8dec(p, b, &i), chars))
                break;
            a = i;
        }
    }
    if (which & 2) {
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80 && b - st < 4)
                st--;
            size_t i = st;
            uint32_t c = llm__j_u8dec(p, b, &i);
            if (i != b) { /* not one whole code point: treat the last byte alone */
                st = b - 1;
                i = st;
                c = llm__j_u8dec(p, b, &i);
            }
            if (!in_chars(c, chars))
                break;
            b = st;
        }
    }
    return mk_str(p + a, b - a);
}

static jv s_split(jm *m, jv s, jv sep, int64_t maxsplit, int line)
{
    jlist *l = llm__j_new_list(m, 0);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (sep.t == V_STR) {
        if (!sep.u.s.n)
            llm__j_fail(m, line, "empty separator");
        size_t st = 0;
        for (;;) {
            const char *f = maxsplit != 0 ? memmem(p + st, n - st, sep.u.s.p, sep.u.s.n) : NULL;
            if (!f)
                break;
            llm__j_list_push(m, l, mk_str(p + st, (size_t)(f - (p + st))));
            st = (size_t)(f - p) + sep.u.s.n;
            if (maxsplit > 0)
                maxsplit--;
        }
        llm__j_list_push(m, l, mk_str(p + st, n - st));
        return mk_list(l, 0);
    }
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (i < n) { /* skip whitespace */
            j = i;
            if (!llm__j_py_space(llm__j_u8dec(p, n, &j)))
                break;
            i = j;
        }
        if (i >= n)
            break;
        if (maxsplit == 0) {
            size_t e = n; /* the rest, without trailing whitespace */
            jv r = llm__j_s_strip(mk_str(p + i, e - i), NONE, 2);
            llm__j_list_push(m, l, r);
            break;
        }
        size_t st = i;
        while (i < n) {
            j = i;
            if (llm__j_py_space(llm__j_u8dec(p, n, &j)))
                break;
            i = j;
        }
        llm__j_list_push(m, l, mk_str(p + st, i - st));
        if (maxsplit > 0)
            maxsplit--;
    }
    return mk_list(l, 0);
}

jv llm__j_s_replace(jm *m, jv s, jv old, jv new_, int64_t count)
{
    sb b = {0};
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    if (!old.u.s.n) { /* Python inserts `new` before each code point and at the end */
        while (count != 0 && i <= n) {
            llm__j_sb_put(m, &b, new_.u.s.p, new_.u.s.n);
            if (count > 0)
                count--;
            if (i == n) {
                i++;
                break;
            }
            size_t st = i;
            llm__j_u8dec(p, n, &i);
            llm__j_sb_put(m, &b, p + st, i - st);
        }
        if (i <= n)
            llm__j_sb_put(m, &b, p + i, n - i);
        return sb_val(&b);
    }
    while (count != 0) {
        const char *f = memmem(p + i, n - i, old.u.s.p, old.u.s.n);
        if (!f)
            break;
        llm__j_sb_put(m, &b, p + i, (size_t)(f - (p + i)));
        llm__j_sb_put(m, &b, new_.u.s.p, new_.u.s.n);
        i = (size_t)(f - p) + old.u.s.n;
        if (count > 0)
            count--;
    }
    llm__j_sb_put(m, &b, p + i, n - i);
    return sb_val(&b);
}

static int64_t s_count(jv s, jv sub)
{
    if (!sub.u.s.n)
        return (int64_t)llm__j_u8len(s.u.s.p, s.u.s.n) + 1;
    int64_t k = 0;
    const char *p = s.u.s.p, *e = p + s.u.s.n, *f;
    while ((f = memmem(p, (size_t)(e - p), sub.u.s.p, sub.u.s.n))) {
        k++;
        p = f + sub.u.s.n;
    }
    return k;
}

jv llm__j_need_str(jm *m, jv *v, int line, const char *what)
{
    if (!v || v->t != V_STR)
        llm__j_fail(m, line, "%s must be str, not %s", what, v ? llm__j_type_name(*v) : "nothing");
    return *v;
}

static int affix(jm *m, jv s, jv x, int end, int line)
{
    if (x.t == V_LIST && x.sub == SUB_TUPLE) {
        for (size_t i = 0; i < x.u.l->n; i++)
            if (affix(m, s, x.u.l->v[i], end, line))
                return 1;
        return 0;
    }
    llm__j_need_str(m, &x, line, end ? "endswith argument" : "startswith argument");
    if (x.u.s.n > s.u.s.n)
        return 0;
    return !memcmp(s.u.s.p + (end ? s.u.s.n - x.u.s.n : 0), x.u.s.p, x.u.s.n);
}

/* str.format with {} / {0} / {name} fields and {{ }} escapes; no format specs. */
static jv s_format(jm *m, jv s, jargs *a, int line)
{
    sb b = {0};
    const char *p = s.u.s.p, *e = p + s.u.s.n;
    int auto_idx = 0, manual = 0, automatic = 0;
    while (p < e) {
        char c = *p++;
        if (c == '}') {
            if (p < e && *p == '}')
                p++;
            else
                llm__j_fail(m, line, "Single '}' encountered in format string");
            llm__j_sb_c(m, &b, '}');
            continue;
        }
        if (c != '{') {
            llm__j_sb_c(m, &b, c);
            continue;
        }
        if (p < e && *p == '{') {
            llm__j_sb_c(m, &b, *p++);
            continue;
        }
        const char *f = p;
        while (p < e && *p != '}')
            p++;
        if (p >= e)
            llm__j_fail(m, line, "Single '{' encountered in format string");
        size_t fl = (size_t)(p++ - f);
        if (memchr(f, ':', fl) || memchr(f, '!', fl) || memchr(f, '.', fl) || memchr(f, '[', fl))
            llm__j_fail(m, line, "str.format: conversions and format specs are not supported");
        jv *v;
        if (fl == 0 || is_digit(f[0])) {
            long i = fl ? strtol(f, NULL, 10) : auto_idx++;
            if (fl)
                manual = 1;
            else
                automatic = 1;
            if (manual && automatic)
                llm__j_fail(m, line,
                            "cannot switch from manual field specification to automatic "
                            "field numbering");
            v = i < a->np ? &a->pos[i] : NULL;
            if (!v)
                llm__j_fail(m, line, "Replacement index %ld out of range for positional args tuple",
                            i);
        } else {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(fl < 63 ? fl : 63), f);
            v = arg(a, -1, key);
            if (!v)
                llm__j_fail(m, line, "KeyError: '%s'", key);
        }
        llm__j_put_str(m, &b, *v);
    }
    return sb_val(&b);
}

/* The str methods templates call, with Python's semantics (a table, hence long). */
jv llm__j_str_method(jm *m, jv s, const char *name, size_t n, jargs *a, int line)
{
    jv a0 = argv_or(a, 0, NULL, NONE);
    if (streq(name, n, "strip") || streq(name, n, "lstrip") || streq(name, n, "rstrip")) {
        jv ch = argv_or(a, 0, "chars", NONE);
        if (ch.t != V_NONE)
            llm__j_need_str(m, &ch, line, "strip argument");
        return llm__j_s_strip(s, ch, name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3);
    }
    if (streq(name, n, "split") || streq(name, n, "rsplit")) {
        jv sep = argv_or(a, 0, "sep", NONE);
        jv ms = argv_or(a, 1, "maxsplit", mk_int(-1));
        if (sep.t != V_NONE)
            llm__j_need_str(m, &sep, line, "separator");
        int64_t k = llm__j_int_arg(m, ms, line, "maxsplit");
        if (name[0] == 'r' && k >= 0) {
            /* rsplit with a limit: split all, then rejoin the leading parts */
            jv all = s_split(m, s, sep, -1, line);
            jlist *l = all.u.l;
            if ((int64_t)l->n <= k + 1)
                return all;
            jlist *r = llm__j_new_list(m, (size_t)k + 1);
            size_t head = l->n - (size_t)k;
            if (sep.t == V_STR) {
                const char *e = l->v[head - 1].u.s.p + l->v[head - 1].u.s.n;
                llm__j_list_push(m, r, mk_str(s.u.s.p, (size_t)(e - s.u.s.p)));
            } else {
                const char *e = l->v[head - 1].u.s.p + l->v[head - 1].u.s.n;
                llm__j_list_push(m, r,
                                 llm__j_s_strip(mk_str(s.u.s.p, (size_t)(e - s.u.s.p)), NONE, 1));
            }
            for (size_t i = head; i < l->n; i++)
                llm__j_list_push(m, r, l->v[i]);
            return mk_list(r, 0);
        }
        return s_split(m, s, sep, k, line);
    }
    if (streq(name, n, "splitlines")) {
        jlist *l = llm__j_new_list(m, 0);
        const char *p = s.u.s.p;
        size_t i = 0, st = 0, len = s.u.s.n;
        int keep = llm__j_truthy(argv_or(a, 0, "keepends", mk_bool(0)));
        while (i < len) {
            size_t j = i;
            uint32_t c = llm__j_u8dec(p, len, &j);
            if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) ||
                c == 0x85 || c == 0x2028 || c == 0x2029) {
                if (c == '\r' && j < len && p[j] == '\n')
                    j++;
                llm__j_list_push(m, l, mk_str(p + st, (keep ? j : i) - st));
                st = j;
            }
            i = j;
        }
        if (st < len)
            llm__j_list_push(m, l, mk_str(p + st, len - st));
        return mk_list(l, 0);
    }
    if (streq(name, n, "startswith") || streq(name, n, "endswith")) {
        if (!a->np)
            llm__j_fail(m, line, "%.*s() takes at least 1 argument", (int)n, name);
        return mk_bool(affix(m, s, a0, name[0] == 'e', line));
    }
    if (streq(name, n, "upper")) return llm__j_s_case(m, s, 1);
    if (streq(name, n, "lower") || streq(name, n, "casefold")) return llm__j_s_case(m, s, 0);
    if (streq(name, n, "capitalize")) return llm__j_s_case(m, s, 2);
    if (streq(name, n, "title")) return llm__j_s_case(m, s, 3);
    if (streq(name, n, "replace")) {
        jv o = llm__j_need_str(m, arg(a, 0, NULL), line, "replace argument 1");
        jv w = llm__j_need_str(m, arg(a, 1, NULL), line, "replace argument 2");
        return llm__j_s_replace(
            m, s, o, w, llm__j_int_arg(m, argv_or(a, 2, "count", mk_int(-1)), line, "count"));
    }
    if (streq(name, n, "find") || streq(name, n, "rfind") || streq(name, n, "index") ||
        streq(name, n, "rindex")) {
        jv sub = llm__j_need_str(m, arg(a, 0, NULL), line, "substring");
        const char *f = NULL, *p = s.u.s.p;
        if (name[0] == 'r') {
            for (size_t i = s.u.s.n + 1; i-- > 0;)
                if (i + sub.u.s.n <= s.u.s.n && !memcmp(p + i, sub.u.s.p, sub.u.s.n)) {
                    f = p + i;
                    break;
                }
        } else {
            f = sub.u.s.n ? memmem(p, s.u.s.n, sub.u.s.p, sub.u.s.n) : p;
        }
        if (!f) {
            if (name[n - 1] == 'x')
                llm__j_fail(m, line, "substring not found");
            return mk_int(-1);
        }
        return mk_int((int64_t)llm__j_u8len(p, (size_t)(f - p)));
    }
    if (streq(name, n, "count"))
        return mk_int(s_count(s, llm__j_need_str(m, arg(a, 0, NULL), line, "substring")));
    if (streq(name, n, "join")) {
        jlist *l = llm__j_iter_items(m, a0, line);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].t != V_STR)
                llm__j_fail(m, line, "sequence item %zu: expected str instance, %s found", i,
                            llm__j_type_name(l->v[i]));
            if (i)
                llm__j_sb_put(m, &b, s.u.s.p, s.u.s.n);
            llm__j_sb_put(m, &b, l->v[i].u.s.p, l->v[i].u.s.n);
        }
        return sb_val(&b);
    }
    if (streq(name, n, "removeprefix") || streq(name, n, "removesuffix")) {
        jv x = llm__j_need_str(m, arg(a, 0, NULL), line, "affix");
        int end = name[6] == 's';
        if (!affix(m, s, x, end, line))
            return s;
        return mk_str(s.u.s.p + (end ? 0 : x.u.s.n), s.u.s.n - x.u.s.n);
    }
    if (n > 2 && name[0] == 'i' && name[1] == 's') {
        /* isdigit, isalpha, isspace, ...: over the code points, as Python defines them */
        int any = 0, all = 1, cased = 0, upper = 0, lower = 0;
        for (size_t i = 0; i < s.u.s.n;) {
            uint32_t c = llm__j_u8dec(s.u.s.p, s.u.s.n, &i);
            int ok;
            any = 1;
            if (streq(name, n, "isdigit") || streq(name, n, "isdecimal"))
                ok = c >= '0' && c <= '9';
            else if (streq(name, n, "isnumeric"))
                ok = c < 0x80 ? (c >= '0' && c <= '9') : llm__ucat(c) == LLM_UCAT_NUMBER;
            else if (streq(name, n, "isalpha"))
                ok = c < 0x80 ? ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
                              : llm__ucat(c) == LLM_UCAT_LETTER;
            else if (streq(name, n, "isalnum"))
                ok = llm__j_cp_word(c) && c != '_';
            else if (streq(name, n, "isspace"))
                ok = llm__j_py_space(c);
            else if (streq(name, n, "isascii"))
                ok = c < 0x80;
            else
                ok = 1;
            all &= ok;
            if (cp_cased(c)) {
                cased = 1;
                upper |= llm__j_cp_lower(c) != c;
                lower |= llm__j_cp_upper(c) != c;
            }
        }
        if (streq(name, n, "isupper"))
            return mk_bool(cased && !lower);
        if (streq(name, n, "islower"))
            return mk_bool(cased && !upper);
        if (streq(name, n, "isascii"))
            return mk_bool(all);
        return mk_bool(any && all);
    }
    if (streq(name, n, "format"))
        return s_format(m, s, a, line);
    llm__j_fail(m, line, "str.%.*s() is not supported", (int)n, name);
}
