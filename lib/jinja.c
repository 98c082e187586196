/* jinja.c - a small Jinja2 interpreter for chat templates.
 *
 * Chat templates are Jinja2 programs written for Hugging Face's apply_chat_template, which
 * runs them in ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 * extensions=[loopcontrols]) with raise_exception, strftime_now and its own tojson. The
 * goal here is the same output, byte for byte, for the part of the language templates use
 * (tests/unit/test_chat.c and test_jinja.c compare against jinja2 itself).
 *
 * Shape: the lexer applies Jinja's whitespace rules (trim/lstrip blocks, "-" markers)
 * while it cuts the source into tokens; a recursive-descent parser that follows jinja2's
 * grammar and precedence builds an AST in the template's arena; the renderer walks it.
 * Values are Python-like (None, bool, int, float, str, list/tuple, dict, namespace) and
 * live in a per-render arena freed at the end, so no value has an owner. Errors unwind
 * with longjmp to the entry point; that is safe because everything a parse or render
 * allocates belongs to its arena or to the output buffer the entry point frees.
 *
 * This file holds the lexer, the parser and the evaluator; lib/jinja_builtins.c holds
 * what values do (Python's operators, dict/list methods, filters, tests, the global
 * functions, context values and JSON), lib/jinja_str.c the text side (UTF-8, case
 * mapping, str's methods); lib/jinja_int.h is what they share.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

#define MAX_PARSE_DEPTH 100    /* nested brackets / blocks in the source */
#define DEF_MAX_OUTPUT ((size_t)64 << 20)
#define DEF_MAX_MEMORY ((size_t)256 << 20)
#define DEF_MAX_STEPS 20000000u

/* ---- arena ---------------------------------------------------------------------- */

void *llm__j_arena_alloc(arena *a, size_t n)
{
    if (n > a->limit)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    ablock *b = a->head;
    if (b && b->cap - b->used >= n) {
        void *p = (char *)b->data + b->used;
        b->used += n;
        return p;
    }
    size_t cap = n > 16384 ? n : 16384;
    if (a->total > a->limit || cap > a->limit - a->total)
        return NULL;
    b = llm__malloc(sizeof(ablock) + cap);
    if (!b)
        return NULL;
    a->total += cap;
    b->cap = cap;
    b->used = n;
    /* A big allocation goes behind the current block so that block's room is kept. */
    if (a->head && n > 4096) {
        b->next = a->head->next;
        a->head->next = b;
    } else {
        b->next = a->head;
        a->head = b;
    }
    return b->data;
}

static void arena_free(arena *a)
{
    for (ablock *b = a->head, *nx; b; b = nx) {
        nx = b->next;
        llm__free(b);
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- the machine state of one parse or render ------------------------------------ */

_Noreturn LLM_PRINTF(3, 4) void llm__j_fail(jm *m, int line, const char *fmt, ...)
{
    char tmp[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(m->msg, sizeof m->msg, "line %d: %s", line, tmp);
    else
        snprintf(m->msg, sizeof m->msg, "%s", tmp);
    m->st = LLM_ERR_TEMPLATE;
    longjmp(m->jb, 1);
}

_Noreturn void llm__j_nomem(jm *m)
{
    snprintf(m->msg, sizeof m->msg, "out of memory (limit %zu bytes)", m->ar->limit);
    m->st = LLM_ERR_NO_MEMORY;
    longjmp(m->jb, 1);
}

void *llm__j_alloc(jm *m, size_t n)
{
    void *p = llm__j_arena_alloc(m->ar, n);
    if (!p)
        llm__j_nomem(m);
    return p;
}

size_t llm__j_mul_size(jm *m, size_t a, size_t b)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        llm__j_nomem(m);
    return r;
}

char *llm__j_strdup(jm *m, const char *s, size_t n)
{
    char *p = llm__j_alloc(m, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

jlist *llm__j_new_list(jm *m, size_t cap)
{
    jlist *l = llm__j_alloc(m, sizeof *l);
    l->n = 0;
    l->spent = 0;
    l->lazy = NULL;
    l->cap = cap;
    l->v = cap ? llm__j_alloc(m, llm__j_mul_size(m, cap, sizeof(jv))) : NULL;
    return l;
}

void llm__j_list_push(jm *m, jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jv *nv = llm__j_alloc(m, llm__j_mul_size(m, cap, sizeof(jv)));
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}


jdict *llm__j_new_dict(jm *m)
{
    jdict *d = llm__j_alloc(m, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

/* ---- lexer ---------------------------------------------------------------------- */

enum { T_EOF, T_DATA, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };


const char *const llm__j_op_text[] = {
    "", "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=", "in",
    "not in", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";"};

typedef struct tok {
    uint8_t type, op;
    int line;
    const char *p; /* source text; for T_STR the decoded value */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct lexer {
    jm *m;
    const char *s;
    size_t n, pos;
    int line;
    tok *t;
    size_t nt, cap;
} lexer;

static tok *lx_emit(lexer *L, int type, int line)
{
    if (L->nt == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        tok *nt = llm__j_alloc(L->m, llm__j_mul_size(L->m, cap, sizeof(tok)));
        if (L->nt)
            memcpy(nt, L->t, L->nt * sizeof(tok));
        L->t = nt;
        L->cap = cap;
    }
    tok *t = &L->t[L->nt++];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    t->line = line;
    return t;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}


static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static void lx_lines(lexer *L, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        L->line += L->s[i] == '\n';
}

/* jinja2's lexer matches whitespace with Python's \s, which takes Unicode spaces too:
 * the byte length of the whitespace code point at s[i] (ending at s[end]), or 0. */
static size_t ws_at(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    if ((unsigned char)s[i] < 0x80)
        return is_ws(s[i]) || (s[i] >= 0x1c && s[i] <= 0x1f);
    size_t j = i;
    return llm__j_py_space(llm__j_u8dec(s, n, &j)) ? j - i : 0;
}

static size_t ws_before(const char *s, size_t from, size_t end)
{
    for (size_t k = 1; k <= 3 && k <= end - from; k++)
        if (ws_at(s, end, end - k) == k)
            return k;
    return 0;
}

static void lx_skip_ws(lexer *L)
{
    size_t k;
    while ((k = ws_at(L->s, L->n, L->pos)) > 0) {
        L->line += L->s[L->pos] == '\n';
        L->pos += k;
    }
}

/* Text before a tag, after the tag's whitespace control: "-" strips all whitespace
 * before the tag; otherwise lstrip_blocks removes the spaces and tabs that begin the
 * tag's line, for block and comment tags not marked "+". `line_starting` says the
 * previous token ended a line (jinja2 uses that for text without a newline). */
static void lx_data(lexer *L, size_t from, size_t to, char sign, int lstrip, int line_starting)
{
    const char *s = L->s;
    size_t end = to;
    if (sign == '-') {
        size_t k;
        while (end > from && (k = ws_before(s, from, end)) > 0)
            end -= k;
    } else if (sign != '+' && lstrip) {
        size_t l = end, k = 0, w;
        while (l > from && s[l - 1] != '\n')
            l--;
        if (l > from || line_starting) {
            for (k = l; k < end && (w = ws_at(s, end, k)) > 0;)
                k += w;
            if (k == end)
                end = l;
        }
    }
    if (end > from) {
        tok *t = lx_emit(L, T_DATA, L->line);
        t->p = s + from;
        t->n = end - from;
    }
    lx_lines(L, from, to);
}


/* A string literal, decoded as jinja2 does it: Python's unicode-escape codec. */
static void lx_string(lexer *L)
{
    jm *m = L->m;
    const char *s = L->s;
    char q = s[L->pos];
    int line = L->line;
    size_t i = L->pos + 1;
    while (i < L->n && s[i] != q)
        i += s[i] == '\\' ? 2 : 1;
    if (i >= L->n)
        llm__j_fail(m, line, "unexpected end of string literal");
    size_t a = L->pos + 1, b = i;
    char *o = llm__j_alloc(m, b - a + 16);
    size_t k = 0;
    for (size_t j = a; j < b;) {
        char c = s[j];
        if (c != '\\') {
            o[k++] = c;
            j++;
            continue;
        }
        char e = s[j + 1];
        j += 2;
        uint32_t cp;
        int nd;
        switch (e) {
        case '\n': continue;
        case '\\': o[k++] = '\\'; continue;
        case '\'': o[k++] = '\''; continue;
        case '"': o[k++] = '"'; continue;
        case 'a': o[k++] = '\a'; continue;
        case 'b': o[k++] = '\b'; continue;
        case 'f': o[k++] = '\f'; continue;
        case 'n': o[k++] = '\n'; continue;
        case 'r': o[k++] = '\r'; continue;
        case 't': o[k++] = '\t'; continue;
        case 'v': o[k++] = '\v'; continue;
        case 'x': nd = 2; goto hex;
        case 'u': nd = 4; goto hex;
        case 'U': nd = 8; goto hex;
        default: break;
        }
        if (e >= '0' && e <= '7') {
            cp = (uint32_t)(e - '0');
            for (int d = 0; d < 2 && j < b && s[j] >= '0' && s[j] <= '7'; d++)
                cp = cp * 8 + (uint32_t)(s[j++] - '0');
            k += llm__j_u8enc(cp, o + k);
            continue;
        }
        if ((unsigned char)e >= 0x80) {
            /* jinja2 first turns non-ASCII into \xNN / \uNNNN / \UNNNNNNNN text, so
             * "\é" ends up as a backslash followed by that text. */
            size_t jj = j - 1;
            uint32_t c2 = llm__j_u8dec(s, b, &jj);
            j = jj;
            int w = c2 < 0x100 ? 2 : c2 < 0x10000 ? 4 : 8;
            k += (size_t)sprintf(o + k, "\\%c%0*x", w == 2 ? 'x' : w == 4 ? 'u' : 'U', w,
                                 (unsigned)c2);
            continue;
        }
        o[k++] = '\\'; /* unknown escapes stay as they are */
        o[k++] = e;
        continue;
    hex:
        cp = 0;
        for (int d = 0; d < nd; d++) {
            int h = j < b ? hexval(s[j]) : -1;
            if (h < 0)
                llm__j_fail(m, line, "truncated \\%c escape in string literal", e);
            cp = cp * 16 + (uint32_t)h;
            j++;
        }
        if (cp > 0x10FFFF)
            llm__j_fail(m, line, "illegal Unicode character in string literal");
        k += llm__j_u8enc(cp, o + k);
    }
    o[k] = '\0';
    tok *t = lx_emit(L, T_STR, line);
    t->p = o;
    t->n = k;
    lx_lines(L, L->pos, i + 1);
    L->pos = i + 1;
}

/* Digits with single underscores between them, as jinja2's number patterns allow. */
static size_t lx_digits(const char *s, size_t n, size_t i, int (*ok)(char))
{
    size_t st = i;
    if (i >= n || !ok(s[i]))
        return st;
    while (i < n) {
        if (ok(s[i]))
            i++;
        else if (s[i] == '_' && i + 1 < n && ok(s[i + 1]))
            i++;
        else
            break;
    }
    return i;
}

static int ok_dec(char c) { return is_digit(c); }
static int ok_hex(char c) { return hexval(c) >= 0; }
static int ok_oct(char c) { return c >= '0' && c <= '7'; }
static int ok_bin(char c) { return c == '0' || c == '1'; }

static void lx_number(lexer *L)
{
    jm *m = L->m;
    const char *s = L->s;
    size_t n = L->n, p = L->pos;
    char buf[128];
    size_t k = 0;
    /* float: digits ((.digits)? e[+-]?digits | .digits), not right after a '.' */
    size_t e1 = lx_digits(s, n, p, ok_dec), fe = 0;
    if (!(p > 0 && s[p - 1] == '.')) {
        size_t q = e1;
        if (q + 1 < n && s[q] == '.' && is_digit(s[q + 1]))
            q = lx_digits(s, n, q + 1, ok_dec);
        size_t r = q;
        if (r < n && (s[r] == 'e' || s[r] == 'E')) {
            size_t r2 = r + 1;
            if (r2 < n && (s[r2] == '+' || s[r2] == '-'))
                r2++;
            size_t r3 = lx_digits(s, n, r2, ok_dec);
            if (r3 > r2)
                fe = r3;
        }
        if (!fe && q > e1)
            fe = q;
    }
    if (fe) {
        for (size_t i = p; i < fe && k < sizeof buf - 1; i++)
            if (s[i] != '_')
                buf[k++] = s[i];
        buf[k] = '\0';
        tok *t = lx_emit(L, T_FLOAT, L->line);
        t->f = strtod(buf, NULL);
        L->pos = fe;
        return;
    }
    int base = 10;
    size_t end;
    if (s[p] == '0' && p + 1 < n && (s[p + 1] | 0x20) == 'x') {
        base = 16;
        end = lx_digits(s, n, p + 2 + (p + 2 < n && s[p + 2] == '_'), ok_hex);
    } else if (s[p] == '0' && p + 1 < n && (s[p + 1] | 0x20) == 'o') {
        base = 8;
        end = lx_digits(s, n, p + 2 + (p + 2 < n && s[p + 2] == '_'), ok_oct);
    } else if (s[p] == '0' && p + 1 < n && (s[p + 1] | 0x20) == 'b') {
        base = 2;
        end = lx_digits(s, n, p + 2 + (p + 2 < n && s[p + 2] == '_'), ok_bin);
    } else if (s[p] == '0') {
        end = p + 1; /* "0", "0_0"...: a leading zero stands alone */
        while (end + 1 < n && (s[end] == '0' || (s[end] == '_' && s[end + 1] == '0')))
            end++;
    } else {
        end = e1;
    }
    if (base != 10 && end <= p + 2)
        llm__j_fail(m, L->line, "invalid integer literal");
    for (size_t i = base == 10 ? p : p + 2; i < end && k < sizeof buf - 1; i++)
        if (s[i] != '_')
            buf[k++] = s[i];
    buf[k] = '\0';
    char *ep;
    errno = 0;
    unsigned long long v = strtoull(buf, &ep, base);
    if (errno || v > (unsigned long long)INT64_MAX)
        llm__j_fail(m, L->line, "integer literal too large");
    tok *t = lx_emit(L, T_INT, L->line);
    t->i = (int64_t)v;
    L->pos = end;
}

/* The tokens of one {{ }} or {% %} tag, up to and including its end marker. */
static void lx_tag(lexer *L, int block)
{
    jm *m = L->m;
    const char *s = L->s;
    size_t n = L->n;
    char stack[MAX_PARSE_DEPTH];
    int bal = 0;
    for (;;) {
        lx_skip_ws(L);
        size_t p = L->pos;
        if (p >= n)
            llm__j_fail(m, L->line, "unexpected end of template, expected '%s'",
                        block ? "%}" : "}}");
        if (bal == 0) {
            if (block && s[p] == '-' && p + 2 < n && s[p + 1] == '%' && s[p + 2] == '}') {
                lx_emit(L, T_BEND, L->line);
                L->pos = p + 3;
                lx_skip_ws(L);
                return;
            }
            if (block && s[p] == '+' && p + 2 < n && s[p + 1] == '%' && s[p + 2] == '}') {
                lx_emit(L, T_BEND, L->line);
                L->pos = p + 3;
                return;
            }
            if (block && s[p] == '%' && p + 1 < n && s[p + 1] == '}') {
                lx_emit(L, T_BEND, L->line);
                L->pos = p + 2;
                if (L->pos < n && s[L->pos] == '\n') { /* trim_blocks */
                    L->pos++;
                    L->line++;
                }
                return;
            }
            if (!block && s[p] == '-' && p + 2 < n && s[p + 1] == '}' && s[p + 2] == '}') {
                lx_emit(L, T_VEND, L->line);
                L->pos = p + 3;
                lx_skip_ws(L);
                return;
            }
            if (!block && s[p] == '}' && p + 1 < n && s[p + 1] == '}') {
                lx_emit(L, T_VEND, L->line);
                L->pos = p + 2;
                return;
            }
        }
        char c = s[p];
        if (is_digit(c)) {
            lx_number(L);
            continue;
        }
        if (is_alpha_(c)) {
            size_t e = p;
            while (e < n && (is_alpha_(s[e]) || is_digit(s[e])))
                e++;
            tok *t = lx_emit(L, T_NAME, L->line);
            t->p = s + p;
            t->n = e - p;
            L->pos = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            lx_string(L);
            continue;
        }
        static const struct {
            const char *s;
            int op;
        } ops[] = {{"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE},
                   {"<=", OP_LE}, {">=", OP_GE}, {"+", OP_ADD}, {"-", OP_SUB}, {"*", OP_MUL},
                   {"/", OP_DIV}, {"%", OP_MOD}, {"~", OP_TILDE}, {"<", OP_LT}, {">", OP_GT},
                   {"=", OP_ASSIGN}, {"(", OP_LPAREN}, {")", OP_RPAREN}, {"[", OP_LBRACKET},
                   {"]", OP_RBRACKET}, {"{", OP_LBRACE}, {"}", OP_RBRACE}, {",", OP_COMMA},
                   {".", OP_DOT}, {":", OP_COLON}, {"|", OP_PIPE}, {";", OP_SEMI}};
        int op = 0;
        size_t ol = 0;
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            size_t l = strlen(ops[k].s);
            if (p + l <= n && !memcmp(s + p, ops[k].s, l)) {
                op = ops[k].op;
                ol = l;
                break;
            }
        }
        if (!op)
            llm__j_fail(m, L->line, "unexpected char '%c'", c);
        if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
            if (bal >= MAX_PARSE_DEPTH)
                llm__j_fail(m, L->line, "brackets nested too deeply");
            stack[bal++] = (char)op;
        } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
            int want = op == OP_RPAREN ? OP_LPAREN : op == OP_RBRACKET ? OP_LBRACKET : OP_LBRACE;
            if (bal == 0)
                llm__j_fail(m, L->line, "unexpected '%s'", llm__j_op_text[op]);
            if (stack[bal - 1] != want)
                llm__j_fail(m, L->line, "unexpected '%s'", llm__j_op_text[op]);
            bal--;
        }
        tok *t = lx_emit(L, T_OP, L->line);
        t->op = (uint8_t)op;
        t->p = s + p;
        t->n = ol;
        L->pos = p + ol;
    }
}

/* Matches "{%[-+]? raw [-]?%}" at p (jinja2's raw_begin); returns the end or 0. */
static size_t lx_raw_begin(const char *s, size_t n, size_t p, const char *word)
{
    size_t i = p + 2;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && is_ws(s[i]))
        i++;
    size_t wl = strlen(word);
    if (i + wl > n || memcmp(s + i, word, wl))
        return 0;
    i += wl;
    if (i < n && (is_alpha_(s[i]) || is_digit(s[i])))
        return 0;
    while (i < n && is_ws(s[i]))
        i++;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    if (i + 1 < n && s[i] == '%' && s[i + 1] == '}')
        return i + 2;
    return 0;
}

static void lex(jm *m, const char *s, size_t n, tok **out, size_t *nout)
{
    lexer L = {m, s, n, 0, 1, NULL, 0, 0};
    int line_starting = 1;
    while (L.pos < n) {
        size_t k = L.pos;
        char kind = 0;
        for (; k + 1 < n; k++) {
            if (s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#')) {
                kind = s[k + 1];
                break;
            }
        }
        if (!kind) {
            lx_data(&L, L.pos, n, 0, 0, 0);
            L.pos = n;
            break;
        }
        char sign = (k + 2 < n && (s[k + 2] == '-' || s[k + 2] == '+')) ? s[k + 2] : 0;
        size_t rawend = kind == '%' ? lx_raw_begin(s, n, k, "raw") : 0;
        lx_data(&L, L.pos, k, sign, kind != '{', line_starting);
        L.pos = k + 2 + (sign ? 1 : 0);
        if (rawend) {
            /* {% raw %}: text up to {% endraw %}, with the same whitespace rules */
            if (s[rawend - 3] == '-')
                while (ws_at(s, n, rawend))
                    rawend += ws_at(s, n, rawend);
            lx_lines(&L, L.pos, rawend);
            size_t j = rawend, e = 0;
            for (; j + 1 < n; j++)
                if (s[j] == '{' && s[j + 1] == '%' && (e = lx_raw_begin(s, n, j, "endraw")))
                    break;
            if (!e)
                llm__j_fail(m, L.line, "missing end of raw directive");
            char rs = (s[j + 2] == '-' || s[j + 2] == '+') ? s[j + 2] : 0;
            lx_data(&L, rawend, j, rs, 1, s[rawend - 1] == '\n');
            lx_lines(&L, j, e);
            L.pos = e;
            if (s[e - 3] == '-') {
                lx_skip_ws(&L);
            } else if (s[e - 3] != '+' && L.pos < n && s[L.pos] == '\n') {
                L.pos++;
                L.line++;
            }
        } else if (kind == '#') {
            size_t j = L.pos;
            while (j + 1 < n && !(s[j] == '#' && s[j + 1] == '}'))
                j++;
            if (j + 1 >= n)
                llm__j_fail(m, L.line, "missing end of comment tag");
            lx_lines(&L, L.pos, j + 2);
            char es = j > L.pos ? s[j - 1] : 0;
            L.pos = j + 2;
            if (es == '-') {
                lx_skip_ws(&L);
            } else if (es != '+' && L.pos < n && s[L.pos] == '\n') {
                L.pos++;
                L.line++;
            }
        } else {
            lx_emit(&L, kind == '%' ? T_BBEGIN : T_VBEGIN, L.line);
            lx_tag(&L, kind == '%');
        }
        line_starting = L.pos > 0 && s[L.pos - 1] == '\n';
    }
    lx_emit(&L, T_EOF, L.line);
    *out = L.t;
    *nout = L.nt;
}

/* ---- AST ------------------------------------------------------------------------ */

/* ---- parser (jinja2's grammar and precedence) -------------------------------------- */

typedef struct parser {
    jm *m;
    tok *t;
    size_t i, n;
    int depth;   /* nesting of expressions and blocks */
    int in_loop; /* break/continue allowed */
} parser;

typedef struct nvec {
    node **v;
    int n, cap;
} nvec;

static void nv_push(jm *m, nvec *v, node *x)
{
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        node **nv = llm__j_alloc(m, (size_t)cap * sizeof(node *));
        if (v->n)
            memcpy(nv, v->v, (size_t)v->n * sizeof(node *));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
}

static tok *cur(parser *p)
{
    return &p->t[p->i];
}

static tok *peek(parser *p, size_t k)
{
    size_t j = p->i + k;
    return &p->t[j < p->n ? j : p->n - 1];
}

static void adv(parser *p)
{
    if (p->t[p->i].type != T_EOF)
        p->i++;
}

static int is_name(const tok *t, const char *s)
{
    return t->type == T_NAME && t->n == strlen(s) && !memcmp(t->p, s, t->n);
}

static int is_op(const tok *t, int op)
{
    return t->type == T_OP && t->op == op;
}

static const char *tok_desc(const tok *t, char *buf, size_t cap)
{
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VBEGIN: return "begin of print statement";
    case T_VEND: return "end of print statement";
    case T_BBEGIN: return "begin of statement block";
    case T_BEND: return "end of statement block";
    case T_STR: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    default: break;
    }
    snprintf(buf, cap, "%.*s", (int)(t->n > 40 ? 40 : t->n), t->p);
    return buf;
}

static _Noreturn void p_unexpected(parser *p, const char *want)
{
    char b[64];
    tok *t = cur(p);
    if (want)
        llm__j_fail(p->m, t->line, "expected %s, got '%s'", want, tok_desc(t, b, sizeof b));
    llm__j_fail(p->m, t->line, "unexpected '%s'", tok_desc(t, b, sizeof b));
}

static void expect_op(parser *p, int op)
{
    if (!is_op(cur(p), op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", llm__j_op_text[op]);
        p_unexpected(p, w);
    }
    adv(p);
}

static void expect_type(parser *p, int type, const char *want)
{
    if (cur(p)->type != type)
        p_unexpected(p, want);
    adv(p);
}

static node *nn(parser *p, int k, int line)
{
    node *x = llm__j_alloc(p->m, sizeof *x);
    memset(x, 0, sizeof *x);
    x->k = (uint8_t)k;
    x->line = line;
    return x;
}

static void p_enter(parser *p)
{
    if (++p->depth > MAX_PARSE_DEPTH)
        llm__j_fail(p->m, cur(p)->line, "template nested too deeply");
}

static node *p_expr(parser *p, int with_cond);
static node *p_unary(parser *p, int with_filter);
static node *p_tuple(parser *p, int with_cond, const char *extra_end, int explicit_parens);
static node *p_primary(parser *p);
static node *p_postfix(parser *p, node *x);

static node *p_call(parser *p, node *callee, int kind)
{
    node *x = nn(p, kind, cur(p)->line);
    x->a = callee;
    nvec args = {0};
    int seen_kw = 0;
    expect_op(p, OP_LPAREN);
    while (!is_op(cur(p), OP_RPAREN)) {
        if (args.n) {
            expect_op(p, OP_COMMA);
            if (is_op(cur(p), OP_RPAREN))
                break;
        }
        if (is_op(cur(p), OP_MUL) || is_op(cur(p), OP_POW))
            llm__j_fail(p->m, cur(p)->line, "*args and **kwargs are not supported");
        if (cur(p)->type == T_NAME && is_op(peek(p, 1), OP_ASSIGN)) {
            node *kw = nn(p, N_KWARG, cur(p)->line);
            kw->s = cur(p)->p;
            kw->sn = cur(p)->n;
            adv(p);
            adv(p);
            kw->a = p_expr(p, 1);
            nv_push(p->m, &args, kw);
            seen_kw = 1;
        } else {
            if (seen_kw)
                llm__j_fail(p->m, cur(p)->line, "positional argument follows keyword argument");
            nv_push(p->m, &args, p_expr(p, 1));
        }
    }
    adv(p);
    x->kids = args.v;
    x->nk = args.n;
    return x;
}

/* "|name(args)|name2..." after x; start_inline: the first filter has no '|'. */
static node *p_filters(parser *p, node *x, int start_inline)
{
    while (is_op(cur(p), OP_PIPE) || start_inline) {
        if (!start_inline)
            adv(p);
        start_inline = 0;
        tok *t = cur(p);
        if (t->type != T_NAME)
            p_unexpected(p, "filter name");
        node *f = nn(p, N_FILTER, t->line);
        f->s = t->p;
        f->sn = t->n;
        adv(p);
        while (is_op(cur(p), OP_DOT) && peek(p, 1)->type == T_NAME) { /* "a.b": never ours */
            f->sn = (size_t)(peek(p, 1)->p + peek(p, 1)->n - f->s);
            adv(p);
            adv(p);
        }
        f->id = (int16_t)llm__j_filter_id(f->s, f->sn);
        if (is_op(cur(p), OP_LPAREN)) {
            node *c = p_call(p, NULL, N_CALL);
            f->kids = c->kids;
            f->nk = c->nk;
        }
        f->a = x;
        x = f;
    }
    return x;
}

static node *p_test(parser *p, node *x)
{
    int line = cur(p)->line;
    adv(p); /* is */
    node *t = nn(p, N_TEST, line);
    if (is_name(cur(p), "not")) {
        t->flag = 1;
        adv(p);
    }
    tok *nm = cur(p);
    if (nm->type != T_NAME)
        p_unexpected(p, "test name");
    t->s = nm->p;
    t->sn = nm->n;
    adv(p);
    while (is_op(cur(p), OP_DOT) && peek(p, 1)->type == T_NAME) {
        t->sn = (size_t)(peek(p, 1)->p + peek(p, 1)->n - t->s);
        adv(p);
        adv(p);
    }
    t->id = (int16_t)llm__j_test_id(t->s, t->sn);
    tok *c = cur(p);
    if (is_op(c, OP_LPAREN)) {
        node *call = p_call(p, NULL, N_CALL);
        t->kids = call->kids;
        t->nk = call->nk;
    } else if ((c->type == T_NAME || c->type == T_STR || c->type == T_INT ||
                c->type == T_FLOAT || is_op(c, OP_LBRACKET) || is_op(c, OP_LBRACE)) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is"))
            llm__j_fail(p->m, c->line, "You cannot chain multiple tests with is");
        node *arg = p_postfix(p, p_primary(p));
        t->kids = llm__j_alloc(p->m, sizeof(node *));
        t->kids[0] = arg;
        t->nk = 1;
    }
    t->a = x;
    return t;
}

static node *p_filter_expr(parser *p, node *x)
{
    for (;;) {
        if (is_op(cur(p), OP_PIPE))
            x = p_filters(p, x, 0);
        else if (is_name(cur(p), "is"))
            x = p_test(p, x);
        else if (is_op(cur(p), OP_LPAREN))
            x = p_call(p, x, N_CALL);
        else
            return x;
    }
}

static node *p_subscript(parser *p, node *obj)
{
    int line = cur(p)->line;
    adv(p); /* [ */
    node *start = NULL, *stop = NULL, *step = NULL;
    if (is_op(cur(p), OP_RBRACKET)) { /* x[]: jinja2 reads an empty tuple key */
        adv(p);
        node *x = nn(p, N_ITEM, line);
        x->a = obj;
        x->b = nn(p, N_TUPLE, line);
        return x;
    }
    if (!is_op(cur(p), OP_COLON)) {
        start = p_expr(p, 1);
        if (!is_op(cur(p), OP_COLON)) {
            if (is_op(cur(p), OP_COMMA)) {
                /* x[a, b]: the key is a tuple */
                node *tu = nn(p, N_TUPLE, line);
                nvec v = {0};
                nv_push(p->m, &v, start);
                while (is_op(cur(p), OP_COMMA)) {
                    adv(p);
                    if (is_op(cur(p), OP_RBRACKET))
                        break;
                    nv_push(p->m, &v, p_expr(p, 1));
                }
                tu->kids = v.v;
                tu->nk = v.n;
                start = tu;
            }
            expect_op(p, OP_RBRACKET);
            node *x = nn(p, N_ITEM, line);
            x->a = obj;
            x->b = start;
            return x;
        }
    }
    adv(p); /* : */
    if (!is_op(cur(p), OP_RBRACKET) && !is_op(cur(p), OP_COMMA) && !is_op(cur(p), OP_COLON))
        stop = p_expr(p, 1);
    if (is_op(cur(p), OP_COLON)) {
        adv(p);
        if (!is_op(cur(p), OP_RBRACKET) && !is_op(cur(p), OP_COMMA))
            step = p_expr(p, 1);
    }
    expect_op(p, OP_RBRACKET);
    node *x = nn(p, N_SLICE, line);
    x->a = obj;
    x->b = start;
    x->c = stop;
    x->d = step;
    return x;
}

static node *p_postfix(parser *p, node *x)
{
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, OP_DOT)) {
            adv(p);
            tok *a = cur(p);
            if (a->type == T_NAME) {
                node *y = nn(p, N_ATTR, t->line);
                y->a = x;
                y->s = a->p;
                y->sn = a->n;
                adv(p);
                x = y;
            } else if (a->type == T_INT) {
                node *y = nn(p, N_ITEM, t->line);
                y->a = x;
                y->b = nn(p, N_CONST, a->line);
                y->b->val = mk_int(a->i);
                adv(p);
                x = y;
            } else {
                p_unexpected(p, "name or number");
            }
        } else if (is_op(t, OP_LBRACKET)) {
            x = p_subscript(p, x);
        } else if (is_op(t, OP_LPAREN)) {
            x = p_call(p, x, N_CALL);
        } else {
            return x;
        }
    }
}

static node *p_primary(parser *p)
{
    tok *t = cur(p);
    node *x;
    if (t->type == T_NAME) {
        x = nn(p, N_CONST, t->line);
        if (is_name(t, "true") || is_name(t, "True"))
            x->val = mk_bool(1);
        else if (is_name(t, "false") || is_name(t, "False"))
            x->val = mk_bool(0);
        else if (is_name(t, "none") || is_name(t, "None"))
            x->val = NONE;
        else {
            x->k = N_NAME;
            x->s = t->p;
            x->sn = t->n;
        }
        adv(p);
        return x;
    }
    if (t->type == T_STR) {
        x = nn(p, N_CONST, t->line);
        x->val = mk_str(t->p, t->n);
        adv(p);
        if (cur(p)->type == T_STR) { /* adjacent literals concatenate */
            sb b = {0};
            llm__j_sb_put(p->m, &b, x->val.u.s.p, x->val.u.s.n);
            while (cur(p)->type == T_STR) {
                llm__j_sb_put(p->m, &b, cur(p)->p, cur(p)->n);
                adv(p);
            }
            x->val = sb_val(&b);
        }
        return x;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        x = nn(p, N_CONST, t->line);
        x->val = t->type == T_INT ? mk_int(t->i) : mk_float(t->f);
        adv(p);
        return x;
    }
    if (is_op(t, OP_LPAREN)) {
        adv(p);
        p_enter(p);
        x = p_tuple(p, 1, NULL, 1);
        p->depth--;
        expect_op(p, OP_RPAREN);
        return x;
    }
    if (is_op(t, OP_LBRACKET) || is_op(t, OP_LBRACE)) {
        int dict = is_op(t, OP_LBRACE);
        int close = dict ? OP_RBRACE : OP_RBRACKET;
        x = nn(p, dict ? N_DICT : N_LIST, t->line);
        adv(p);
        p_enter(p);
        nvec keys = {0}, vals = {0};
        while (!is_op(cur(p), close)) {
            if (keys.n) {
                expect_op(p, OP_COMMA);
                if (is_op(cur(p), close))
                    break;
            }
            nv_push(p->m, &keys, p_expr(p, 1));
            if (dict) {
                expect_op(p, OP_COLON);
                nv_push(p->m, &vals, p_expr(p, 1));
            }
        }
        p->depth--;
        adv(p);
        x->kids = keys.v;
        x->nk = keys.n;
        x->kids2 = vals.v;
        x->nk2 = vals.n;
        return x;
    }
    p_unexpected(p, NULL);
}

static node *p_unary(parser *p, int with_filter)
{
    tok *t = cur(p);
    node *x;
    p_enter(p);
    if (is_op(t, OP_SUB) || is_op(t, OP_ADD)) {
        adv(p);
        x = nn(p, is_op(t, OP_SUB) ? N_NEG : N_POS, t->line);
        x->a = p_unary(p, 0);
    } else {
        x = p_primary(p);
    }
    x = p_postfix(p, x);
    if (with_filter)
        x = p_filter_expr(p, x);
    p->depth--;
    return x;
}

static node *p_bin(parser *p, int op, node *a, node *b, int line)
{
    node *x = nn(p, N_BIN, line);
    x->op = (uint8_t)op;
    x->a = a;
    x->b = b;
    return x;
}

static node *p_pow(parser *p)
{
    node *x = p_unary(p, 1);
    while (is_op(cur(p), OP_POW)) {
        int line = cur(p)->line;
        adv(p);
        x = p_bin(p, OP_POW, x, p_unary(p, 1), line);
    }
    return x;
}

static node *p_math2(parser *p)
{
    node *x = p_pow(p);
    for (;;) {
        tok *t = cur(p);
        if (!(is_op(t, OP_MUL) || is_op(t, OP_DIV) || is_op(t, OP_FLOORDIV) || is_op(t, OP_MOD)))
            return x;
        adv(p);
        x = p_bin(p, t->op, x, p_pow(p), t->line);
    }
}

static node *p_concat(parser *p)
{
    node *x = p_math2(p);
    if (!is_op(cur(p), OP_TILDE))
        return x;
    node *c = nn(p, N_CONCAT, cur(p)->line);
    nvec v = {0};
    nv_push(p->m, &v, x);
    while (is_op(cur(p), OP_TILDE)) {
        adv(p);
        nv_push(p->m, &v, p_math2(p));
    }
    c->kids = v.v;
    c->nk = v.n;
    return c;
}

static node *p_math1(parser *p)
{
    node *x = p_concat(p);
    for (;;) {
        tok *t = cur(p);
        if (!(is_op(t, OP_ADD) || is_op(t, OP_SUB)))
            return x;
        adv(p);
        x = p_bin(p, t->op, x, p_concat(p), t->line);
    }
}

static node *p_compare(parser *p)
{
    node *x = p_math1(p);
    nvec ops = {0};
    for (;;) {
        tok *t = cur(p);
        int op = 0;
        if (t->type == T_OP && t->op >= OP_EQ && t->op <= OP_GE) {
            op = t->op;
            adv(p);
        } else if (is_name(t, "in")) {
            op = OP_IN;
            adv(p);
        } else if (is_name(t, "not") && is_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            adv(p);
            adv(p);
        } else {
            break;
        }
        node *o = nn(p, N_CMPOP, t->line);
        o->op = (uint8_t)op;
        o->a = p_math1(p);
        nv_push(p->m, &ops, o);
    }
    if (!ops.n)
        return x;
    node *c = nn(p, N_CMP, x->line);
    c->a = x;
    c->kids = ops.v;
    c->nk = ops.n;
    return c;
}

static node *p_not(parser *p)
{
    if (is_name(cur(p), "not")) {
        node *x = nn(p, N_NOT, cur(p)->line);
        adv(p);
        p_enter(p);
        x->a = p_not(p);
        p->depth--;
        return x;
    }
    return p_compare(p);
}

static node *p_and(parser *p)
{
    node *x = p_not(p);
    while (is_name(cur(p), "and")) {
        node *y = nn(p, N_AND, cur(p)->line);
        adv(p);
        y->a = x;
        y->b = p_not(p);
        x = y;
    }
    return x;
}

static node *p_or(parser *p)
{
    node *x = p_and(p);
    while (is_name(cur(p), "or")) {
        node *y = nn(p, N_OR, cur(p)->line);
        adv(p);
        y->a = x;
        y->b = p_and(p);
        x = y;
    }
    return x;
}

static node *p_condexpr(parser *p)
{
    node *x = p_or(p);
    while (is_name(cur(p), "if")) {
        node *c = nn(p, N_COND, cur(p)->line);
        adv(p);
        c->a = p_or(p);
        c->b = x;
        if (is_name(cur(p), "else")) {
            adv(p);
            c->c = p_condexpr(p);
        }
        x = c;
    }
    return x;
}

static node *p_expr(parser *p, int with_cond)
{
    p_enter(p);
    node *x = with_cond ? p_condexpr(p) : p_or(p);
    p->depth--;
    return x;
}

static int tuple_end(parser *p, const char *extra)
{
    tok *t = cur(p);
    return t->type == T_VEND || t->type == T_BEND || is_op(t, OP_RPAREN) ||
           (extra && is_name(t, extra));
}

/* Expressions separated by commas: one expression, or a tuple when there is a comma. */
static node *p_tuple(parser *p, int with_cond, const char *extra_end, int explicit_parens)
{
    int line = cur(p)->line;
    nvec v = {0};
    int is_tuple = 0;
    for (;;) {
        if (v.n)
            expect_op(p, OP_COMMA);
        if (tuple_end(p, extra_end))
            break;
        nv_push(p->m, &v, p_expr(p, with_cond));
        if (is_op(cur(p), OP_COMMA))
            is_tuple = 1;
        else
            break;
    }
    if (!is_tuple) {
        if (v.n)
            return v.v[0];
        if (!explicit_parens)
            p_unexpected(p, "an expression");
    }
    node *x = nn(p, N_TUPLE, line);
    x->kids = v.v;
    x->nk = v.n;
    return x;
}

static node *p_target1(parser *p)
{
    tok *t = cur(p);
    if (is_op(t, OP_LPAREN)) {
        adv(p);
        nvec v = {0};
        while (!is_op(cur(p), OP_RPAREN)) {
            if (v.n) {
                expect_op(p, OP_COMMA);
                if (is_op(cur(p), OP_RPAREN))
                    break;
            }
            nv_push(p->m, &v, p_target1(p));
        }
        adv(p);
        node *x = nn(p, N_TUPLE, t->line);
        x->kids = v.v;
        x->nk = v.n;
        return x;
    }
    if (t->type != T_NAME || is_name(t, "true") || is_name(t, "false") ||
        is_name(t, "none") || is_name(t, "True") || is_name(t, "False") || is_name(t, "None"))
        p_unexpected(p, "a name to assign to");
    node *x = nn(p, N_NAME, t->line);
    x->s = t->p;
    x->sn = t->n;
    adv(p);
    return x;
}

/* Assignment target: a name, names separated by commas, or ns.attr (with_ns). */
static node *p_target(parser *p, int with_ns)
{
    tok *t = cur(p);
    if (with_ns && t->type == T_NAME && is_op(peek(p, 1), OP_DOT) &&
        peek(p, 2)->type == T_NAME) {
        node *x = nn(p, N_ATTR, t->line);
        x->a = nn(p, N_NAME, t->line);
        x->a->s = t->p;
        x->a->sn = t->n;
        x->s = peek(p, 2)->p;
        x->sn = peek(p, 2)->n;
        adv(p);
        adv(p);
        adv(p);
        return x;
    }
    node *first = p_target1(p);
    if (!is_op(cur(p), OP_COMMA))
        return first;
    nvec v = {0};
    nv_push(p->m, &v, first);
    while (is_op(cur(p), OP_COMMA)) {
        adv(p);
        if (cur(p)->type != T_NAME && !is_op(cur(p), OP_LPAREN))
            break;
        if (is_name(cur(p), "in"))
            break;
        nv_push(p->m, &v, p_target1(p));
    }
    node *x = nn(p, N_TUPLE, t->line);
    x->kids = v.v;
    x->nk = v.n;
    return x;
}

static void p_body(parser *p, nvec *out, const char *const *ends);

/* Parses a body up to one of `ends` and consumes that end tag's name; returns which. */
static int p_block(parser *p, nvec *out, const char *const *ends)
{
    p_body(p, out, ends);
    int which = 0;
    for (int i = 0; ends[i]; i++)
        if (is_name(cur(p), ends[i]))
            which = i;
    adv(p);
    return which;
}

static void set_body(node *x, nvec *v, int second)
{
    if (second) {
        x->kids2 = v->v;
        x->nk2 = v->n;
    } else {
        x->kids = v->v;
        x->nk = v->n;
    }
}

/* A {% tag %} statement, the parser at its name: one branch per tag jinja2 knows
 * (for, if, set, macro, break, continue, filter, with) plus HF's generation block. */
static node *p_stmt(parser *p)
{
    tok *t = cur(p);
    int line = t->line;
    jm *m = p->m;
    node *x;
    p_enter(p);
    if (is_name(t, "for")) {
        adv(p);
        x = nn(p, S_FOR, line);
        x->a = p_target(p, 0);
        if (!is_name(cur(p), "in"))
            p_unexpected(p, "'in'");
        adv(p);
        x->b = p_tuple(p, 0, "recursive", 0);
        if (is_name(cur(p), "if")) {
            adv(p);
            x->c = p_expr(p, 1);
        }
        if (is_name(cur(p), "recursive"))
            llm__j_fail(m, line, "recursive loops are not supported");
        expect_type(p, T_BEND, "end of statement block");
        static const char *const e1[] = {"endfor", "else", NULL};
        static const char *const e2[] = {"endfor", NULL};
        nvec body = {0}, els = {0};
        p->in_loop++;
        int w = p_block(p, &body, e1);
        p->in_loop--;
        expect_type(p, T_BEND, "end of statement block");
        if (w == 1) {
            p_block(p, &els, e2);
            expect_type(p, T_BEND, "end of statement block");
        }
        set_body(x, &body, 0);
        set_body(x, &els, 1);
    } else if (is_name(t, "if")) {
        static const char *const e1[] = {"endif", "elif", "else", NULL};
        static const char *const e2[] = {"endif", NULL};
        adv(p);
        x = nn(p, S_IF, line);
        node *c = x;
        for (;;) {
            c->a = p_tuple(p, 0, NULL, 0);
            expect_type(p, T_BEND, "end of statement block");
            nvec body = {0};
            int w = p_block(p, &body, e1);
            set_body(c, &body, 0);
            if (w == 1) {
                node *e = nn(p, S_IF, cur(p)->line);
                c->kids2 = llm__j_alloc(m, sizeof(node *));
                c->kids2[0] = e;
                c->nk2 = 1;
                c = e;
                continue;
            }
            expect_type(p, T_BEND, "end of statement block");
            if (w == 2) {
                nvec els = {0};
                p_block(p, &els, e2);
                set_body(c, &els, 1);
                expect_type(p, T_BEND, "end of statement block");
            }
            break;
        }
    } else if (is_name(t, "set")) {
        adv(p);
        node *tgt = p_target(p, 1);
        if (is_op(cur(p), OP_ASSIGN)) {
            adv(p);
            x = nn(p, S_SET, line);
            x->a = tgt;
            x->b = p_tuple(p, 1, NULL, 0);
            expect_type(p, T_BEND, "end of statement block");
        } else {
            static const char *const e[] = {"endset", NULL};
            x = nn(p, S_SETBLOCK, line);
            x->a = tgt;
            if (is_op(cur(p), OP_PIPE))
                x->c = p_filters(p, nn(p, N_PLACEHOLDER, line), 0);
            expect_type(p, T_BEND, "end of statement block");
            int saved = p->in_loop;
            p->in_loop = 0;
            nvec body = {0};
            p_block(p, &body, e);
            p->in_loop = saved;
            set_body(x, &body, 0);
            expect_type(p, T_BEND, "end of statement block");
        }
    } else if (is_name(t, "macro")) {
        static const char *const e[] = {"endmacro", NULL};
        adv(p);
        x = nn(p, S_MACRO, line);
        if (cur(p)->type != T_NAME)
            p_unexpected(p, "macro name");
        x->s = cur(p)->p;
        x->sn = cur(p)->n;
        adv(p);
        expect_op(p, OP_LPAREN);
        nvec params = {0};
        while (!is_op(cur(p), OP_RPAREN)) {
            if (params.n)
                expect_op(p, OP_COMMA);
            if (cur(p)->type != T_NAME)
                p_unexpected(p, "parameter name");
            node *pa = nn(p, N_PARAM, cur(p)->line);
            pa->s = cur(p)->p;
            pa->sn = cur(p)->n;
            adv(p);
            if (is_op(cur(p), OP_ASSIGN)) {
                adv(p);
                pa->a = p_expr(p, 1);
            } else if (params.n && params.v[params.n - 1]->a) {
                llm__j_fail(m, pa->line, "non-default argument follows default argument");
            }
            nv_push(m, &params, pa);
        }
        adv(p);
        expect_type(p, T_BEND, "end of statement block");
        int saved = p->in_loop;
        p->in_loop = 0;
        nvec body = {0};
        p_block(p, &body, e);
        p->in_loop = saved;
        expect_type(p, T_BEND, "end of statement block");
        set_body(x, &params, 0);
        set_body(x, &body, 1);
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        if (!p->in_loop)
            llm__j_fail(m, line, "'%.*s' outside of a loop", (int)t->n, t->p);
        x = nn(p, is_name(t, "break") ? S_BREAK : S_CONTINUE, line);
        adv(p);
        expect_type(p, T_BEND, "end of statement block");
    } else if (is_name(t, "filter")) {
        static const char *const e[] = {"endfilter", NULL};
        adv(p);
        x = nn(p, S_FILTERBLOCK, line);
        x->c = p_filters(p, nn(p, N_PLACEHOLDER, line), 1);
        expect_type(p, T_BEND, "end of statement block");
        nvec body = {0};
        p_block(p, &body, e);
        expect_type(p, T_BEND, "end of statement block");
        set_body(x, &body, 0);
    } else if (is_name(t, "with")) {
        static const char *const e[] = {"endwith", NULL};
        adv(p);
        x = nn(p, S_WITH, line);
        nvec sets = {0}, body = {0};
        while (cur(p)->type != T_BEND) {
            if (sets.n)
                expect_op(p, OP_COMMA);
            node *s = nn(p, S_SET, cur(p)->line);
            s->a = p_target(p, 0);
            expect_op(p, OP_ASSIGN);
            s->b = p_expr(p, 1);
            nv_push(m, &sets, s);
        }
        adv(p);
        p_block(p, &body, e);
        expect_type(p, T_BEND, "end of statement block");
        set_body(x, &sets, 0);
        set_body(x, &body, 1);
    } else if (is_name(t, "generation")) {
        /* HF's AssistantTracker extension: marks assistant text, renders as is */
        static const char *const e[] = {"endgeneration", NULL};
        adv(p);
        expect_type(p, T_BEND, "end of statement block");
        x = nn(p, S_BODY, line);
        nvec body = {0};
        p_block(p, &body, e);
        expect_type(p, T_BEND, "end of statement block");
        set_body(x, &body, 0);
    } else {
        llm__j_fail(m, line, "unknown tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
    }
    p->depth--;
    return x;
}

/* Template data, {{ }} and statements up to a {% tag %} named in `ends` (NULL: the end
 * of the template); leaves the parser at that tag's name. */
static void p_body(parser *p, nvec *out, const char *const *ends)
{
    for (;;) {
        tok *t = cur(p);
        if (t->type == T_EOF) {
            if (ends)
                llm__j_fail(p->m, t->line, "unexpected end of template, expected '%s'", ends[0]);
            return;
        }
        if (t->type == T_DATA) {
            node *x = nn(p, S_DATA, t->line);
            x->s = t->p;
            x->sn = t->n;
            nv_push(p->m, out, x);
            adv(p);
        } else if (t->type == T_VBEGIN) {
            adv(p);
            node *x = nn(p, S_OUTPUT, t->line);
            x->a = p_tuple(p, 1, NULL, 0);
            expect_type(p, T_VEND, "end of print statement");
            nv_push(p->m, out, x);
        } else if (t->type == T_BBEGIN) {
            tok *nm = peek(p, 1);
            if (nm->type != T_NAME) {
                adv(p);
                p_unexpected(p, "a tag name");
            }
            for (int i = 0; ends && ends[i]; i++) {
                if (is_name(nm, ends[i])) {
                    adv(p);
                    return;
                }
            }
            adv(p);
            nv_push(p->m, out, p_stmt(p));
        } else {
            p_unexpected(p, NULL);
        }
    }
}

#define MAX_AST_DEPTH 2000 /* operator chains nest the tree without nesting the source */

/* Marks the expressions made of literals only (x->lit), bottom-up. jinja2 folds those at
 * compile time, and its folding slices through environment.getitem (undefined on
 * failure) where the running template slices with Python's [] (an error). Filters that
 * take jinja2's context (map, select, ...) are never folded. */
static int mark_literals(jm *m, node *x, int depth)
{
    if (!x)
        return 1;
    if (depth > MAX_AST_DEPTH)
        llm__j_fail(m, x->line, "expression too deeply nested");
    int lit = mark_literals(m, x->a, depth + 1) & mark_literals(m, x->b, depth + 1) &
              mark_literals(m, x->c, depth + 1) & mark_literals(m, x->d, depth + 1);
    for (int i = 0; i < x->nk; i++)
        lit &= mark_literals(m, x->kids[i], depth + 1);
    for (int i = 0; i < x->nk2; i++)
        lit &= mark_literals(m, x->kids2[i], depth + 1);
    switch (x->k) {
    case N_NAME: case N_CALL: case N_PLACEHOLDER: lit = 0; break;
    case N_FILTER:
        if (x->id < 0 || x->id == F_MAP || x->id == F_SELECT || x->id == F_REJECT ||
            x->id == F_SELECTATTR || x->id == F_REJECTATTR)
            lit = 0;
        break;
    case N_TEST: if (x->id < 0) lit = 0; break;
    case S_OUTPUT: x->flag = x->a->lit; break; /* a literal {{ }} is folded whatever it gives */
    default: break;
    }
    if (x->k >= S_DATA)
        lit = 0;
    x->lit = (uint8_t)lit;
    return lit;
}

/* jinja2 rejects unknown filters and tests when it compiles the template, except inside
 * an if statement or an inline if, where they fail only when they run. */
static void check_names(jm *m, const node *x, int soft, int depth)
{
    if (!x)
        return;
    if (depth > MAX_AST_DEPTH)
        llm__j_fail(m, x->line, "expression too deeply nested");
    if (x->k == S_IF || x->k == N_COND) {
        soft = 1;
    } else if (x->k == S_FOR || x->k == S_MACRO || x->k == S_SETBLOCK ||
               x->k == S_FILTERBLOCK || x->k == S_WITH) {
        /* the header (target, iterable, filters) belongs to this frame, except a for
         * loop's condition; the bodies get frames of their own, which are never soft */
        check_names(m, x->a, soft, depth + 1);
        check_names(m, x->b, soft, depth + 1);
        check_names(m, x->c, x->k == S_FOR ? 0 : soft, depth + 1);
        for (int i = 0; i < x->nk; i++)
            check_names(m, x->kids[i], 0, depth + 1);
        for (int i = 0; i < x->nk2; i++)
            check_names(m, x->kids2[i], 0, depth + 1);
        return;
    }
    if (!soft && x->k == N_FILTER && x->id < 0)
        llm__j_fail(m, x->line, "no filter named '%.*s'", (int)x->sn, x->s);
    if (!soft && x->k == N_TEST && x->id < 0)
        llm__j_fail(m, x->line, "no test named '%.*s'", (int)x->sn, x->s);
    check_names(m, x->a, soft, depth + 1);
    check_names(m, x->b, soft, depth + 1);
    check_names(m, x->c, soft, depth + 1);
    check_names(m, x->d, soft, depth + 1);
    for (int i = 0; i < x->nk; i++)
        check_names(m, x->kids[i], soft, depth + 1);
    for (int i = 0; i < x->nk2; i++)
        check_names(m, x->kids2[i], soft, depth + 1);
}

/* ---- scopes, callables, loop objects ---------------------------------------------- */

typedef struct svar {
    struct svar *next;
    const char *name;
    size_t n;
    jv v;
} svar;

struct scope {
    svar *vars;
    scope *parent;
};



jv llm__j_mk_fn(jm *m, int kind, const char *name, size_t nn)
{
    jfn *f = llm__j_alloc(m, sizeof *f);
    memset(f, 0, sizeof *f);
    f->kind = (uint8_t)kind;
    f->name = name;
    f->nn = nn;
    jv v = {V_FN, 0, {0}};
    v.u.fn = f;
    return v;
}

static jv lookup(jm *m, scope *sc, const char *name, size_t n)
{
    for (; sc; sc = sc->parent)
        for (svar *v = sc->vars; v; v = v->next)
            if (v->n == n && !memcmp(v->name, name, n))
                return v->v;
    long i = llm__j_dict_find(m, &m->ctx->globals, mk_str(name, n));
    if (i >= 0)
        return m->ctx->globals.v[i];
    int g = llm__j_global_id(name, n);
    if (g >= 0) {
        jv f = llm__j_mk_fn(m, FN_BUILTIN, name, n);
        f.u.fn->builtin = (uint8_t)g;
        return f;
    }
    return mk_undef(name, n);
}

/* Scopes live in the render's arena, never on the C stack: a macro defined inside a loop
 * or block keeps its scope and may be called after that loop or block is gone. */
static scope *new_scope(jm *m, scope *parent)
{
    scope *s = llm__j_alloc(m, sizeof *s);
    s->vars = NULL;
    s->parent = parent;
    return s;
}

static void scope_set(jm *m, scope *sc, const char *name, size_t n, jv val)
{
    for (svar *v = sc->vars; v; v = v->next) {
        if (v->n == n && !memcmp(v->name, name, n)) {
            v->v = val;
            return;
        }
    }
    svar *v = llm__j_alloc(m, sizeof *v);
    v->name = name;
    v->n = n;
    v->v = val;
    v->next = sc->vars;
    sc->vars = v;
}

/* Methods of str, dict and list that templates may call; the mutating ones exist but
 * fail, as jinja2's immutable sandbox makes them. */
/* ---- call arguments ------------------------------------------------------------- */

static jv ev(jm *m, const node *x, scope *sc);

static void eval_args(jm *m, node **kids, int n, scope *sc, jargs *a)
{
    memset(a, 0, sizeof *a);
    if (!n)
        return;
    a->pos = llm__j_alloc(m, (size_t)n * sizeof(jv));
    a->kv = llm__j_alloc(m, (size_t)n * sizeof(jv));
    a->kn = llm__j_alloc(m, (size_t)n * sizeof(node *));
    for (int i = 0; i < n; i++) {
        if (kids[i]->k == N_KWARG) {
            a->kn[a->nk] = kids[i];
            a->kv[a->nk++] = ev(m, kids[i]->a, sc);
        } else {
            a->pos[a->np++] = ev(m, kids[i], sc);
        }
    }
}

/* ---- calls ---------------------------------------------------------------------- */


static int ex_body(jm *m, node **body, int n, scope *sc);

/* Output written by `fn` while it runs, taken back out of the output buffer. */
static jv capture(jm *m, node **body, int n, scope *sc)
{
    size_t start = m->on;
    ex_body(m, body, n, sc);
    jv s = mk_str(llm__j_strdup(m, m->out + start, m->on - start), m->on - start);
    m->on = start;
    return s;
}

static jv call_macro(jm *m, jfn *f, jargs *a, int line)
{
    const node *mac = f->macro;
    scope *s = new_scope(m, f->closure);
    if (a->np > mac->nk)
        llm__j_fail(m, line, "macro '%.*s' takes not more than %d argument(s)", (int)mac->sn,
                    mac->s, mac->nk);
    for (int k = 0; k < a->nk; k++) {
        int found = 0;
        for (int i = 0; i < mac->nk; i++)
            found |= mac->kids[i]->sn == a->kn[k]->sn &&
                     !memcmp(mac->kids[i]->s, a->kn[k]->s, a->kn[k]->sn);
        if (!found)
            llm__j_fail(m, line, "macro '%.*s' takes no keyword argument '%.*s'", (int)mac->sn,
                        mac->s, (int)a->kn[k]->sn, a->kn[k]->s);
    }
    for (int i = 0; i < mac->nk; i++) {
        const node *pa = mac->kids[i];
        jv v;
        jv *given = i < a->np ? &a->pos[i] : NULL;
        for (int k = 0; !given && k < a->nk; k++)
            if (a->kn[k]->sn == pa->sn && !memcmp(a->kn[k]->s, pa->s, pa->sn))
                given = &a->kv[k];
        if (given)
            v = *given;
        else if (pa->a)
            v = ev(m, pa->a, s);
        else
            v = mk_undef(pa->s, pa->sn);
        scope_set(m, s, pa->s, pa->sn, v);
    }
    return capture(m, mac->kids2, mac->nk2, s);
}


static jv call(jm *m, jv fn, jargs *a, int line)
{
    if (fn.t == V_UNDEF)
        llm__j_fail_undef(m, line, fn);
    if (fn.t != V_FN)
        llm__j_fail(m, line, "'%s' object is not callable", llm__j_type_name(fn));
    jfn *f = fn.u.fn;
    if (f->kind == FN_MACRO)
        return call_macro(m, f, a, line);
    if (f->kind == FN_BUILTIN)
        return llm__j_call_builtin(m, f, a, line);
    return llm__j_call_method(m, f, a, line);
}

/* ---- evaluation ------------------------------------------------------------------- */

/* Values jinja2's constant folding keeps (its has_safe_repr). */
static int safe_repr(jv v)
{
    if (v.t == V_LIST) {
        if (v.sub > SUB_TUPLE)
            return 0;
        for (size_t i = 0; i < v.u.l->n; i++)
            if (!safe_repr(v.u.l->v[i]))
                return 0;
        return 1;
    }
    if (v.t == V_DICT) {
        for (size_t i = 0; i < v.u.d->n; i++)
            if (!safe_repr(v.u.d->k[i]) || !safe_repr(v.u.d->v[i]))
                return 0;
        return 1;
    }
    return v.t >= V_NONE && v.t <= V_STR;
}

static jv ev_node(jm *m, const node *x, scope *sc);

/* A literal expression is folded by jinja2 when it compiles the template, and the folded
 * value is kept if it is a plain value; folding slices differently from run time (see
 * llm__j_do_slice), so such expressions are evaluated both ways here. */
static jv ev(jm *m, const node *x, scope *sc)
{
    if (!x->lit || m->folding || x->k == N_CONST)
        return ev_node(m, x, sc);
    m->folding = 1;
    jv r = ev_node(m, x, sc);
    m->folding = 0;
    return safe_repr(r) ? r : ev_node(m, x, sc);
}

/* One case per expression kind; long because it is the whole expression language. */
static jv ev_node(jm *m, const node *x, scope *sc)
{
    jv r, a, b;
    jargs args;
    llm__j_enter(m, x->line);
    switch (x->k) {
    case N_CONST: r = x->val; break;
    case N_NAME: r = lookup(m, sc, x->s, x->sn); break;
    case N_PLACEHOLDER: r = m->placeholder; break;
    case N_LIST:
    case N_TUPLE: {
        jlist *l = llm__j_new_list(m, (size_t)x->nk);
        for (int i = 0; i < x->nk; i++)
            llm__j_list_push(m, l, ev(m, x->kids[i], sc));
        r = mk_list(l, x->k == N_TUPLE);
        break;
    }
    case N_DICT: {
        jdict *d = llm__j_new_dict(m);
        for (int i = 0; i < x->nk; i++) {
            jv k = ev(m, x->kids[i], sc);
            if (!llm__j_hashable(k))
                llm__j_fail(m, x->line, "unhashable type: '%s'", llm__j_type_name(k));
            llm__j_dict_set(m, d, k, ev(m, x->kids2[i], sc));
        }
        r = mk_dict(d, 0);
        break;
    }
    case N_ATTR: r = llm__j_get_attr(m, ev(m, x->a, sc), x->s, x->sn, x->line); break;
    case N_ITEM:
        a = ev(m, x->a, sc);
        r = llm__j_get_item(m, a, ev(m, x->b, sc), x->line);
        break;
    case N_SLICE: {
        a = ev(m, x->a, sc);
        jv s0 = x->b ? ev(m, x->b, sc) : NONE, s1 = x->c ? ev(m, x->c, sc) : NONE;
        jv s2 = x->d ? ev(m, x->d, sc) : NONE;
        r = llm__j_do_slice(m, a, s0, s1, s2, x->line, m->folding);
        break;
    }
    case N_CALL:
        a = ev(m, x->a, sc);
        eval_args(m, x->kids, x->nk, sc, &args);
        r = call(m, a, &args, x->line);
        break;
    case N_FILTER:
        a = ev(m, x->a, sc);
        eval_args(m, x->kids, x->nk, sc, &args);
        r = llm__j_apply_filter(m, x->id, x->s, x->sn, a, &args, x->line);
        break;
    case N_TEST:
        a = ev(m, x->a, sc);
        eval_args(m, x->kids, x->nk, sc, &args);
        r = mk_bool(llm__j_run_test(m, x->id, x->s, x->sn, a, &args, x->line) != x->flag);
        break;
    case N_NEG:
    case N_POS:
        a = ev(m, x->a, sc);
        if (a.t == V_UNDEF)
            llm__j_fail_undef(m, x->line, a);
        if (!is_num(a))
            llm__j_fail(m, x->line, "bad operand type for unary %c: '%s'",
                        x->k == N_NEG ? '-' : '+', llm__j_type_name(a));
        if (x->k == N_POS)
            r = a.t == V_FLOAT ? a : mk_int(a.u.i);
        else if (a.t == V_FLOAT)
            r = mk_float(-a.u.f);
        else if (a.u.i == INT64_MIN)
            llm__j_fail(m, x->line, "integer overflow");
        else
            r = mk_int(-a.u.i);
        break;
    case N_BIN:
        a = ev(m, x->a, sc);
        r = llm__j_arith(m, x->op, a, ev(m, x->b, sc), x->line);
        break;
    case N_AND:
        a = ev(m, x->a, sc);
        r = llm__j_truthy(a) ? ev(m, x->b, sc) : a;
        break;
    case N_OR:
        a = ev(m, x->a, sc);
        r = llm__j_truthy(a) ? a : ev(m, x->b, sc);
        break;
    case N_NOT: r = mk_bool(!llm__j_truthy(ev(m, x->a, sc))); break;
    case N_CMP: {
        a = ev(m, x->a, sc);
        int ok = 1;
        for (int i = 0; ok && i < x->nk; i++) {
            const node *o = x->kids[i];
            b = ev(m, o->a, sc);
            switch (o->op) {
            case OP_EQ: ok = llm__j_veq(m, a, b); break;
            case OP_NE: ok = !llm__j_veq(m, a, b); break;
            case OP_IN: ok = llm__j_vcontains(m, b, a, o->line); break;
            case OP_NOTIN: ok = !llm__j_vcontains(m, b, a, o->line); break;
            default: ok = llm__j_vorder(m, o->op, a, b, o->line); break;
            }
            a = b;
        }
        r = mk_bool(ok);
        break;
    }
    case N_COND:
        if (llm__j_truthy(ev(m, x->a, sc)))
            r = ev(m, x->b, sc);
        else
            r = x->c ? ev(m, x->c, sc) : mk_undef("", 0);
        break;
    case N_CONCAT: {
        sb s = {0};
        for (int i = 0; i < x->nk; i++)
            llm__j_put_str(m, &s, ev(m, x->kids[i], sc));
        r = sb_val(&s);
        break;
    }
    default:
        llm__j_fail(m, x->line, "internal error: bad expression node %d", x->k);
    }
    m->depth--;
    return r;
}

/* ---- statements ----------------------------------------------------------------- */

enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

static void out_put(jm *m, const char *s, size_t n)
{
    if (!n)
        return;
    if (n > m->max_output - m->on)
        llm__j_fail(m, 0, "output exceeds %zu bytes", m->max_output);
    if (n > m->ocap - m->on) {
        size_t cap = m->ocap ? m->ocap : 4096;
        while (cap - m->on < n)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *p = llm__realloc(m->out, cap);
        if (!p)
            llm__j_nomem(m);
        m->out = p;
        m->ocap = cap;
    }
    memcpy(m->out + m->on, s, n);
    m->on += n;
}

static void assign(jm *m, const node *t, jv v, scope *sc)
{
    if (t->k == N_NAME) {
        scope_set(m, sc, t->s, t->sn, v);
    } else if (t->k == N_TUPLE) {
        jlist *l = llm__j_iter_items(m, v, t->line);
        if (l->n != (size_t)t->nk)
            llm__j_fail(m, t->line, "%s values to unpack (expected %d, got %zu)",
                        l->n > (size_t)t->nk ? "too many" : "not enough", t->nk, l->n);
        for (int i = 0; i < t->nk; i++)
            assign(m, t->kids[i], l->v[i], sc);
    } else { /* ns.attr */
        jv ns = lookup(m, sc, t->a->s, t->a->sn);
        if (ns.t != V_NS)
            llm__j_fail(m, t->line, "cannot assign attribute on non-namespace object");
        llm__j_dict_set(m, ns.u.d, mk_str(t->s, t->sn), v);
    }
}

static jv run_filters(jm *m, const node *chain, jv v, scope *sc)
{
    jv saved = m->placeholder;
    m->placeholder = v;
    jv r = ev(m, chain, sc);
    m->placeholder = saved;
    return r;
}

static int ex_for(jm *m, const node *x, scope *sc)
{
    jlist *items = llm__j_iter_items(m, ev(m, x->b, sc), x->line);
    if (x->c) { /* loop filter: {% for a in b if cond %} */
        jlist *kept = llm__j_new_list(m, 0);
        for (size_t i = 0; i < items->n; i++) {
            scope *s = new_scope(m, sc);
            assign(m, x->a, items->v[i], s);
            if (llm__j_truthy(ev(m, x->c, s)))
                llm__j_list_push(m, kept, items->v[i]);
        }
        items = kept;
    }
    int completed = 0;
    jloop *L = llm__j_alloc(m, sizeof *L);
    L->items = items;
    jv lv = {V_LOOP, 0, {0}};
    lv.u.loop = L;
    for (size_t i = 0; i < items->n; i++) {
        if (++m->steps > m->max_steps)
            llm__j_fail(m, x->line, "template ran too long (more than %llu steps)",
                        (unsigned long long)m->max_steps);
        L->i = i;
        scope *s = new_scope(m, sc); /* each iteration starts afresh, as in jinja2 */
        assign(m, x->a, items->v[i], s);
        scope_set(m, s, "loop", 4, lv);
        int ctl = ex_body(m, x->kids, x->nk, s);
        if (ctl == CTL_NONE)
            completed = 1;
        if (ctl == CTL_BREAK)
            break;
    }
    /* jinja2 clears its "no iteration" flag at the end of the body, so an else block
     * also runs when every iteration left through continue or break */
    if (!completed)
        ex_body(m, x->kids2, x->nk2, new_scope(m, sc));
    return CTL_NONE;
}

static int ex(jm *m, const node *x, scope *sc)
{
    int ctl = CTL_NONE;
    if (++m->steps > m->max_steps)
        llm__j_fail(m, x->line, "template ran too long (more than %llu steps)",
                    (unsigned long long)m->max_steps);
    llm__j_enter(m, x->line);
    switch (x->k) {
    case S_DATA: out_put(m, x->s, x->sn); break;
    case S_OUTPUT: {
        m->folding = x->flag;
        jv v = ev(m, x->a, sc);
        m->folding = 0;
        if (v.t == V_STR) {
            out_put(m, v.u.s.p, v.u.s.n);
        } else {
            sb s = {0};
            llm__j_put_str(m, &s, v);
            out_put(m, s.p, s.n);
        }
        break;
    }
    case S_IF:
        if (llm__j_truthy(ev(m, x->a, sc)))
            ctl = ex_body(m, x->kids, x->nk, sc);
        else
            ctl = ex_body(m, x->kids2, x->nk2, sc);
        break;
    case S_FOR: ctl = ex_for(m, x, sc); break;
    case S_SET: assign(m, x->a, ev(m, x->b, sc), sc); break;
    case S_SETBLOCK: {
        jv v = capture(m, x->kids, x->nk, new_scope(m, sc));
        if (x->c)
            v = run_filters(m, x->c, v, sc);
        assign(m, x->a, v, sc);
        break;
    }
    case S_MACRO: {
        jv f = llm__j_mk_fn(m, FN_MACRO, x->s, x->sn);
        f.u.fn->macro = x;
        f.u.fn->closure = sc;
        scope_set(m, sc, x->s, x->sn, f);
        break;
    }
    case S_BREAK: ctl = CTL_BREAK; break;
    case S_CONTINUE: ctl = CTL_CONTINUE; break;
    case S_FILTERBLOCK: {
        jv v = llm__j_to_str(
            m, run_filters(m, x->c, capture(m, x->kids, x->nk, new_scope(m, sc)), sc));
        out_put(m, v.u.s.p, v.u.s.n);
        break;
    }
    case S_WITH: {
        scope *s = new_scope(m, sc);
        for (int i = 0; i < x->nk; i++)
            assign(m, x->kids[i]->a, ev(m, x->kids[i]->b, sc), s);
        ctl = ex_body(m, x->kids2, x->nk2, s);
        break;
    }
    case S_BODY: ctl = ex_body(m, x->kids, x->nk, sc); break;
    default: llm__j_fail(m, x->line, "internal error: bad statement node %d", x->k);
    }
    m->depth--;
    return ctl;
}

static int ex_body(jm *m, node **body, int n, scope *sc)
{
    for (int i = 0; i < n; i++) {
        int c = ex(m, body[i], sc);
        if (c)
            return c;
    }
    return CTL_NONE;
}

/* ---- the interface -------------------------------------------------------------- */

llm_status llm__jinja_parse(const char *src, size_t len, llm__jinja_tmpl **out)
{
    if (!out || (!src && len))
        return llm__fail(LLM_ERR_INVALID_ARG, "template: NULL argument");
    *out = NULL;
    llm__jinja_tmpl *t = llm__calloc(1, sizeof *t);
    if (!t)
        return llm__fail(LLM_ERR_NO_MEMORY, "template: out of memory");
    t->ar.limit = DEF_MAX_MEMORY;
    jm *m = llm__calloc(1, sizeof *m);
    if (!m) {
        llm__free(t);
        return llm__fail(LLM_ERR_NO_MEMORY, "template: out of memory");
    }
    m->ar = &t->ar;
    if (setjmp(m->jb)) {
        llm_status st = llm__fail(m->st, "template: %s", m->msg);
        llm__free(m);
        llm__jinja_tmpl_free(t);
        return st;
    }
    /* jinja2 reads "\r\n" and "\r" as "\n" and drops one final newline */
    char *s = llm__j_alloc(m, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n')
        n--;
    s[n] = '\0';
    parser p = {m, NULL, 0, 0, 0, 0};
    lex(m, s, n, &p.t, &p.n);
    nvec body = {0};
    p_body(&p, &body, NULL);
    for (int i = 0; i < body.n; i++) {
        check_names(m, body.v[i], 0, 0);
        mark_literals(m, body.v[i], 0);
    }
    t->body = body.v;
    t->n = body.n;
    llm__free(m);
    *out = t;
    return LLM_OK;
}

void llm__jinja_tmpl_free(llm__jinja_tmpl *t)
{
    if (!t)
        return;
    arena_free(&t->ar);
    llm__free(t);
}

llm_status llm__jinja_ctx_create(llm__jinja_ctx **out)
{
    llm__jinja_ctx *c = llm__calloc(1, sizeof *c);
    *out = c;
    if (!c)
        return llm__fail(LLM_ERR_NO_MEMORY, "template: out of memory");
    c->max_output = DEF_MAX_OUTPUT;
    c->max_memory = DEF_MAX_MEMORY;
    c->max_steps = DEF_MAX_STEPS;
    c->ar.limit = DEF_MAX_MEMORY;
    return LLM_OK;
}

void llm__jinja_ctx_free(llm__jinja_ctx *c)
{
    if (!c)
        return;
    arena_free(&c->ar);
    llm__free(c);
}

void llm__jinja_ctx_limits(llm__jinja_ctx *c, size_t max_output, size_t max_memory,
                           uint64_t max_steps)
{
    c->max_output = max_output ? max_output : DEF_MAX_OUTPUT;
    c->max_memory = max_memory ? max_memory : DEF_MAX_MEMORY;
    c->ar.limit = c->max_memory;
    c->max_steps = max_steps ? max_steps : DEF_MAX_STEPS;
}

llm_status llm__jinja_render(const llm__jinja_tmpl *t, const llm__jinja_ctx *c, char **out,
                             size_t *out_len)
{
    if (!t || !c || !out || !out_len)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: NULL argument");
    *out = NULL;
    *out_len = 0;
    jm *m = llm__calloc(1, sizeof *m);
    if (!m)
        return llm__fail(LLM_ERR_NO_MEMORY, "template: out of memory");
    m->own.limit = c->max_memory;
    m->ar = &m->own;
    m->ctx = c;
    m->max_output = c->max_output;
    m->max_steps = c->max_steps;
    if (setjmp(m->jb)) {
        llm_status st = llm__fail(m->st, "template: %s", m->msg);
        llm__free(m->out);
        arena_free(&m->own);
        llm__free(m);
        return st;
    }
    ex_body(m, t->body, t->n, new_scope(m, NULL));
    out_put(m, "", 0);
    char *r = llm__realloc(m->out, m->on + 1);
    if (!r)
        llm__j_nomem(m);
    r[m->on] = '\0';
    *out = r;
    *out_len = m->on;
    arena_free(&m->own);
    llm__free(m);
    return LLM_OK;
}
