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
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja.h"
#include "unicode.h"

#define MAX_DEPTH 400          /* nested evaluation frames in a render (macros, values) */
#define MAX_PARSE_DEPTH 100    /* nested brackets / blocks in the source */
#define MAX_RANGE 100000       /* jinja2's sandbox refuses larger range() calls too */
#define DEF_MAX_OUTPUT ((size_t)64 << 20)
#define DEF_MAX_MEMORY ((size_t)256 << 20)
#define DEF_MAX_STEPS 20000000u

/* ---- arena ---------------------------------------------------------------------- */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct arena {
    ablock *head;
    size_t total, limit;
} arena;

static void *arena_alloc(arena *a, size_t n)
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

/* ---- values --------------------------------------------------------------------- */

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FN, V_LOOP };

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfn jfn;
typedef struct jloop jloop;

/* Kinds of V_LIST: Python has several sequence types that templates can tell apart (by
 * printing them, taking len() or testing truth): jinja2's select/map/unique/... filters
 * return one-shot generators, dict methods return views. */
enum { SUB_LIST, SUB_TUPLE, SUB_GEN, SUB_KEYS, SUB_VALUES, SUB_ITEMS };

typedef struct jv {
    uint8_t t;
    uint8_t sub; /* V_LIST: SUB_* */
    union {
        int64_t i; /* V_INT, V_BOOL */
        double f;
        struct {
            const char *p;
            size_t n;
        } s; /* V_STR; V_UNDEF: the name that was looked up, for messages */
        jlist *l;
        jdict *d; /* V_DICT, V_NS */
        jfn *fn;
        jloop *loop;
    } u;
} jv;

struct lazy;

struct jlist {
    jv *v;
    size_t n, cap;
    int spent;                /* a generator that has been iterated: empty from then on */
    const struct lazy *lazy;  /* a generator not run yet: the filter that makes its items */
};
struct jdict {
    jv *k, *v;
    size_t n, cap;
};

struct llm__jinja_val {
    jv v;
};

static const jv UNDEF = {V_UNDEF, 0, {0}};
static const jv NONE = {V_NONE, 0, {0}};

static jv mk_bool(int b)
{
    jv v = {V_BOOL, 0, {0}};
    v.u.i = b != 0;
    return v;
}
static jv mk_int(int64_t i)
{
    jv v = {V_INT, 0, {0}};
    v.u.i = i;
    return v;
}
static jv mk_float(double f)
{
    jv v = {V_FLOAT, 0, {0}};
    v.u.f = f;
    return v;
}
static jv mk_str(const char *p, size_t n)
{
    jv v = {V_STR, 0, {0}};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static jv mk_undef(const char *name, size_t n)
{
    jv v = UNDEF;
    v.u.s.p = name;
    v.u.s.n = n;
    return v;
}

/* ---- the machine state of one parse or render ------------------------------------ */

typedef struct node node;
typedef struct scope scope;

typedef struct jm {
    arena *ar;
    arena own; /* a render's arena (kept here: locals are not reliable after longjmp) */
    jmp_buf jb;
    llm_status st;
    char msg[900];
    /* render only */
    char *out;
    size_t on, ocap, max_output;
    uint64_t steps, max_steps;
    int depth;
    const llm__jinja_ctx *ctx;
    jv placeholder; /* the text a {% filter %} / {% set %} block filters */
    int folding;    /* evaluating a literal {{ }} that jinja2 would fold */
} jm;

enum { FN_BUILTIN, FN_MACRO, FN_METHOD };
enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT_ };
static const char *const global_names[] = {"range", "namespace", "dict", "raise_exception",
                                           "strftime_now"};

struct jfn {
    uint8_t kind;
    uint8_t builtin;
    const node *macro;
    scope *closure;
    jv self; /* FN_METHOD: the object */
    const char *name;
    size_t nn;
};

struct llm__jinja_ctx {
    arena ar;
    jdict globals;
    size_t max_output, max_memory;
    uint64_t max_steps;
};

struct llm__jinja_tmpl {
    arena ar;
    node **body;
    int n;
};

static _Noreturn LLM_PRINTF(3, 4) void jfail(jm *m, int line, const char *fmt, ...)
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

static _Noreturn void jnomem(jm *m)
{
    snprintf(m->msg, sizeof m->msg, "out of memory (limit %zu bytes)", m->ar->limit);
    m->st = LLM_ERR_NO_MEMORY;
    longjmp(m->jb, 1);
}

static void *jalloc(jm *m, size_t n)
{
    void *p = arena_alloc(m->ar, n);
    if (!p)
        jnomem(m);
    return p;
}

static size_t mul_size(jm *m, size_t a, size_t b)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        jnomem(m);
    return r;
}

static char *jstrdup(jm *m, const char *s, size_t n)
{
    char *p = jalloc(m, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static jlist *new_list(jm *m, size_t cap)
{
    jlist *l = jalloc(m, sizeof *l);
    l->n = 0;
    l->spent = 0;
    l->lazy = NULL;
    l->cap = cap;
    l->v = cap ? jalloc(m, mul_size(m, cap, sizeof(jv))) : NULL;
    return l;
}

static void list_push(jm *m, jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jv *nv = jalloc(m, mul_size(m, cap, sizeof(jv)));
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static jv mk_list(jlist *l, int sub)
{
    jv v = {V_LIST, 0, {0}};
    v.sub = (uint8_t)sub;
    v.u.l = l;
    return v;
}

static jdict *new_dict(jm *m)
{
    jdict *d = jalloc(m, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

static jv mk_dict(jdict *d, int ns)
{
    jv v = {V_DICT, 0, {0}};
    v.t = ns ? V_NS : V_DICT;
    v.u.d = d;
    return v;
}

/* ---- UTF-8 and the bits of Unicode that str methods need ------------------------- */

/* Decodes one code point at s[*i]; an invalid byte b comes back as 0xDC00 + b (Python's
 * surrogateescape) so that it re-encodes to itself. */
static uint32_t u8dec(const char *s, size_t n, size_t *i)
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

static size_t u8enc(uint32_t c, char *o)
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

static size_t u8len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        u8dec(s, n, &i);
        k++;
    }
    return k;
}

/* Python's str.isspace(). */
static int py_space(uint32_t c)
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
static uint32_t cp_upper(uint32_t c)
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

static uint32_t cp_lower(uint32_t c)
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
    return cp_upper(c) != c || cp_lower(c) != c || c == 0xDF || c == 0x138;
}

/* \w of Python's re for str patterns: letters, numbers and underscore. */
static int cp_word(uint32_t c)
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
static int cp_printable(uint32_t c)
{
    if (c < 0x80)
        return c >= 0x20 && c < 0x7F;
    if (c >= 0xDC80 && c <= 0xDCFF)
        return 0;
    return llm__ucat(c) != LLM_UCAT_OTHER;
}

/* ---- string building (in the arena) -------------------------------------------- */

typedef struct sb {
    char *p;
    size_t n, cap;
} sb;

static void sb_put(jm *m, sb *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 4)
                jnomem(m);
            cap *= 2;
        }
        char *p = jalloc(m, cap);
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_c(jm *m, sb *b, char c)
{
    sb_put(m, b, &c, 1);
}

static void sb_s(jm *m, sb *b, const char *s)
{
    sb_put(m, b, s, strlen(s));
}

static void sb_cp(jm *m, sb *b, uint32_t c)
{
    char t[4];
    sb_put(m, b, t, u8enc(c, t));
}

static LLM_PRINTF(3, 4) void sb_f(jm *m, sb *b, const char *fmt, ...)
{
    char t[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    sb_put(m, b, t, k < 0 ? 0 : (size_t)k < sizeof t ? (size_t)k : sizeof t - 1);
}

static jv sb_val(sb *b)
{
    return mk_str(b->n ? b->p : "", b->n);
}

/* ---- lexer ---------------------------------------------------------------------- */

enum { T_EOF, T_DATA, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

enum {
    OP_NONE, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
    OP_ASSIGN, OP_LPAREN, OP_RPAREN, OP_LBRACKET, OP_RBRACKET, OP_LBRACE, OP_RBRACE,
    OP_COMMA, OP_DOT, OP_COLON, OP_PIPE, OP_SEMI
};

static const char *const op_text[] = {
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
        tok *nt = jalloc(L->m, mul_size(L->m, cap, sizeof(tok)));
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

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
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
    return py_space(u8dec(s, n, &j)) ? j - i : 0;
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

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
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
        jfail(m, line, "unexpected end of string literal");
    size_t a = L->pos + 1, b = i;
    char *o = jalloc(m, b - a + 16);
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
            k += u8enc(cp, o + k);
            continue;
        }
        if ((unsigned char)e >= 0x80) {
            /* jinja2 first turns non-ASCII into \xNN / \uNNNN / \UNNNNNNNN text, so
             * "\é" ends up as a backslash followed by that text. */
            size_t jj = j - 1;
            uint32_t c2 = u8dec(s, b, &jj);
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
                jfail(m, line, "truncated \\%c escape in string literal", e);
            cp = cp * 16 + (uint32_t)h;
            j++;
        }
        if (cp > 0x10FFFF)
            jfail(m, line, "illegal Unicode character in string literal");
        k += u8enc(cp, o + k);
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
        jfail(m, L->line, "invalid integer literal");
    for (size_t i = base == 10 ? p : p + 2; i < end && k < sizeof buf - 1; i++)
        if (s[i] != '_')
            buf[k++] = s[i];
    buf[k] = '\0';
    char *ep;
    errno = 0;
    unsigned long long v = strtoull(buf, &ep, base);
    if (errno || v > (unsigned long long)INT64_MAX)
        jfail(m, L->line, "integer literal too large");
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
            jfail(m, L->line, "unexpected end of template, expected '%s'", block ? "%}" : "}}");
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
            jfail(m, L->line, "unexpected char '%c'", c);
        if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
            if (bal >= MAX_PARSE_DEPTH)
                jfail(m, L->line, "brackets nested too deeply");
            stack[bal++] = (char)op;
        } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
            int want = op == OP_RPAREN ? OP_LPAREN : op == OP_RBRACKET ? OP_LBRACKET : OP_LBRACE;
            if (bal == 0)
                jfail(m, L->line, "unexpected '%s'", op_text[op]);
            if (stack[bal - 1] != want)
                jfail(m, L->line, "unexpected '%s'", op_text[op]);
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
                jfail(m, L.line, "missing end of raw directive");
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
                jfail(m, L.line, "missing end of comment tag");
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

enum {
    /* expressions */
    N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_KWARG,
    N_FILTER, N_TEST, N_NEG, N_POS, N_BIN, N_AND, N_OR, N_NOT, N_CMP, N_CMPOP, N_COND,
    N_CONCAT, N_PLACEHOLDER, N_PARAM,
    /* statements */
    S_DATA, S_OUTPUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE,
    S_FILTERBLOCK, S_WITH, S_BODY
};

struct node {
    uint8_t k;
    uint8_t op;   /* N_BIN, N_CMPOP, N_NEG: operator */
    uint8_t flag; /* N_TEST: negated; S_OUTPUT: the expression is literal */
    uint8_t lit;  /* made of literals only (see mark_literals) */
    int16_t id;   /* N_FILTER / N_TEST: index in the filter / test table, -1 unknown */
    int line;
    const char *s; /* name, attribute, filter or test name, text of S_DATA */
    size_t sn;
    jv val;                    /* N_CONST */
    node *a, *b, *c, *d;       /* operands, see the parser */
    node **kids, **kids2;      /* arguments, items, bodies */
    int nk, nk2;
};

/* Filters and tests the interpreter knows; names resolve to indexes at parse time. */
enum {
    F_ABS, F_ATTR, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E, F_ESCAPE,
    F_FIRST, F_FLOAT, F_FORMAT, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST,
    F_LOWER, F_MAP, F_MAX, F_MIN, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND,
    F_SAFE, F_SELECT, F_SELECTATTR, F_SORT, F_STRING, F_SUM, F_TITLE, F_TOJSON, F_TRIM,
    F_TRUNCATE, F_UNIQUE, F_UPPER, F_WORDCOUNT, F_COUNT_
};
static const char *const filter_names[] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "first", "float", "format", "indent", "int", "items", "join", "last", "length", "list",
    "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round",
    "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
    "truncate", "unique", "upper", "wordcount"};

enum {
    TS_BOOLEAN, TS_CALLABLE, TS_DEFINED, TS_DIVISIBLEBY, TS_EQ, TS_EQUALTO, TS_EQSIGN,
    TS_ESCAPED, TS_EVEN, TS_FALSE, TS_FILTER, TS_FLOAT, TS_GE, TS_GESIGN, TS_GREATERTHAN,
    TS_GT, TS_GTSIGN, TS_IN, TS_INTEGER, TS_ITERABLE, TS_LE, TS_LESIGN, TS_LESSTHAN,
    TS_LOWER, TS_LT, TS_LTSIGN, TS_MAPPING, TS_NE, TS_NESIGN, TS_NONE, TS_NUMBER, TS_ODD,
    TS_SAMEAS, TS_SEQUENCE, TS_STRING, TS_TEST, TS_TRUE, TS_UNDEFINED, TS_UPPER, TS_COUNT_
};
static const char *const test_names[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped",
    "even", "false", "filter", "float", "ge", ">=", "greaterthan", "gt", ">", "in",
    "integer", "iterable", "le", "<=", "lessthan", "lower", "lt", "<", "mapping", "ne",
    "!=", "none", "number", "odd", "sameas", "sequence", "string", "test", "true",
    "undefined", "upper"};

static int name_index(const char *const *tab, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(tab[i]) == len && !memcmp(tab[i], s, len))
            return i;
    return -1;
}

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
        node **nv = jalloc(m, (size_t)cap * sizeof(node *));
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
        jfail(p->m, t->line, "expected %s, got '%s'", want, tok_desc(t, b, sizeof b));
    jfail(p->m, t->line, "unexpected '%s'", tok_desc(t, b, sizeof b));
}

static void expect_op(parser *p, int op)
{
    if (!is_op(cur(p), op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", op_text[op]);
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
    node *x = jalloc(p->m, sizeof *x);
    memset(x, 0, sizeof *x);
    x->k = (uint8_t)k;
    x->line = line;
    return x;
}

static void p_enter(parser *p)
{
    if (++p->depth > MAX_PARSE_DEPTH)
        jfail(p->m, cur(p)->line, "template nested too deeply");
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
            jfail(p->m, cur(p)->line, "*args and **kwargs are not supported");
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
                jfail(p->m, cur(p)->line, "positional argument follows keyword argument");
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
        f->id = (int16_t)name_index(filter_names, F_COUNT_, f->s, f->sn);
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
    t->id = (int16_t)name_index(test_names, TS_COUNT_, t->s, t->sn);
    tok *c = cur(p);
    if (is_op(c, OP_LPAREN)) {
        node *call = p_call(p, NULL, N_CALL);
        t->kids = call->kids;
        t->nk = call->nk;
    } else if ((c->type == T_NAME || c->type == T_STR || c->type == T_INT ||
                c->type == T_FLOAT || is_op(c, OP_LBRACKET) || is_op(c, OP_LBRACE)) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is"))
            jfail(p->m, c->line, "You cannot chain multiple tests with is");
        node *arg = p_postfix(p, p_primary(p));
        t->kids = jalloc(p->m, sizeof(node *));
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
            sb_put(p->m, &b, x->val.u.s.p, x->val.u.s.n);
            while (cur(p)->type == T_STR) {
                sb_put(p->m, &b, cur(p)->p, cur(p)->n);
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
            jfail(m, line, "recursive loops are not supported");
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
                c->kids2 = jalloc(m, sizeof(node *));
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
                jfail(m, pa->line, "non-default argument follows default argument");
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
            jfail(m, line, "'%.*s' outside of a loop", (int)t->n, t->p);
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
        jfail(m, line, "unknown tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
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
                jfail(p->m, t->line, "unexpected end of template, expected '%s'", ends[0]);
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
        jfail(m, x->line, "expression too deeply nested");
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
        jfail(m, x->line, "expression too deeply nested");
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
        jfail(m, x->line, "no filter named '%.*s'", (int)x->sn, x->s);
    if (!soft && x->k == N_TEST && x->id < 0)
        jfail(m, x->line, "no test named '%.*s'", (int)x->sn, x->s);
    check_names(m, x->a, soft, depth + 1);
    check_names(m, x->b, soft, depth + 1);
    check_names(m, x->c, soft, depth + 1);
    check_names(m, x->d, soft, depth + 1);
    for (int i = 0; i < x->nk; i++)
        check_names(m, x->kids[i], soft, depth + 1);
    for (int i = 0; i < x->nk2; i++)
        check_names(m, x->kids2[i], soft, depth + 1);
}

/* ---- Python semantics of values --------------------------------------------------- */

static const char *type_name(jv v)
{
    switch (v.t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: {
        static const char *const names[] = {"list", "tuple", "generator", "dict_keys",
                                            "dict_values", "dict_items"};
        return names[v.sub];
    }
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_FN: return "function";
    default: return "LoopContext";
    }
}

static _Noreturn void fail_undef(jm *m, int line, jv v)
{
    if (v.u.s.n)
        jfail(m, line, "'%.*s' is undefined", (int)v.u.s.n, v.u.s.p);
    jfail(m, line, "undefined value");
}

static void enter(jm *m, int line)
{
    if (++m->depth > MAX_DEPTH)
        jfail(m, line, "maximum recursion depth exceeded");
}

static int truthy(jv v)
{
    switch (v.t) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0.0;
    case V_STR: return v.u.s.n != 0;
    case V_LIST: return v.sub == SUB_GEN || v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    default: return 1;
    }
}

static int is_num(jv v)
{
    return v.t == V_BOOL || v.t == V_INT || v.t == V_FLOAT;
}

static double num_f(jv v)
{
    return v.t == V_FLOAT ? v.u.f : (double)v.u.i;
}

/* repr(float): the shortest digits that read back to the same double, laid out as
 * Python does (fixed notation for exponents -4..15, else d.ddde+XX). */
static void fmt_float(double d, char *out, int json)
{
    if (isnan(d)) {
        strcpy(out, json ? "NaN" : "nan");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d < 0 ? (json ? "-Infinity" : "-inf") : (json ? "Infinity" : "inf"));
        return;
    }
    char e[48];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, d);
        if (strtod(e, NULL) == d)
            break;
    }
    const char *p = e;
    int neg = *p == '-';
    p += neg;
    char dig[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (is_digit(*p) && nd < 20)
            dig[nd++] = *p;
    int ex = atoi(p + 1);
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    char *o = out;
    if (neg)
        *o++ = '-';
    if (ex >= -4 && ex < 16) {
        if (ex >= 0) {
            for (int i = 0; i <= ex; i++)
                *o++ = i < nd ? dig[i] : '0';
            *o++ = '.';
            if (nd > ex + 1)
                for (int i = ex + 1; i < nd; i++)
                    *o++ = dig[i];
            else
                *o++ = '0';
        } else {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -ex - 1; i++)
                *o++ = '0';
            for (int i = 0; i < nd; i++)
                *o++ = dig[i];
        }
        *o = '\0';
    } else {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++)
                *o++ = dig[i];
        }
        sprintf(o, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    }
}

static void put_repr(jm *m, sb *b, jv v);

/* Python's repr() of a str. */
static void put_repr_str(jm *m, sb *b, const char *s, size_t n)
{
    char q = (memchr(s, '\'', n) && !memchr(s, '"', n)) ? '"' : '\'';
    sb_c(m, b, q);
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = u8dec(s, n, &i);
        if (c == (uint32_t)q || c == '\\') {
            sb_c(m, b, '\\');
            sb_c(m, b, (char)c);
        } else if (c == '\n') {
            sb_s(m, b, "\\n");
        } else if (c == '\r') {
            sb_s(m, b, "\\r");
        } else if (c == '\t') {
            sb_s(m, b, "\\t");
        } else if (c >= 0xDC80 && c <= 0xDCFF) {
            sb_f(m, b, "\\udc%02x", (unsigned)(c - 0xDC00));
        } else if (!cp_printable(c)) {
            if (c < 0x100)
                sb_f(m, b, "\\x%02x", (unsigned)c);
            else if (c < 0x10000)
                sb_f(m, b, "\\u%04x", (unsigned)c);
            else
                sb_f(m, b, "\\U%08x", (unsigned)c);
        } else {
            sb_put(m, b, s + st, i - st);
        }
    }
    sb_c(m, b, q);
}

/* str(v), as {{ v }} prints it. */
static void put_str(jm *m, sb *b, jv v)
{
    char t[48];
    switch (v.t) {
    case V_UNDEF: return;
    case V_NONE: sb_s(m, b, "None"); return;
    case V_BOOL: sb_s(m, b, v.u.i ? "True" : "False"); return;
    case V_INT: sb_f(m, b, "%lld", (long long)v.u.i); return;
    case V_FLOAT: fmt_float(v.u.f, t, 0); sb_s(m, b, t); return;
    case V_STR: sb_put(m, b, v.u.s.p, v.u.s.n); return;
    default: put_repr(m, b, v); return;
    }
}

static void put_repr(jm *m, sb *b, jv v)
{
    enter(m, 0);
    switch (v.t) {
    case V_UNDEF: sb_s(m, b, "Undefined"); break;
    case V_STR: put_repr_str(m, b, v.u.s.p, v.u.s.n); break;
    case V_LIST:
        if (v.sub == SUB_GEN) {
            sb_s(m, b, "<generator object>");
            break;
        }
        if (v.sub >= SUB_KEYS) {
            sb_s(m, b, type_name(v));
            sb_c(m, b, '(');
        }
        sb_c(m, b, v.sub == SUB_TUPLE ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                sb_s(m, b, ", ");
            put_repr(m, b, v.u.l->v[i]);
        }
        if (v.sub == SUB_TUPLE && v.u.l->n == 1)
            sb_c(m, b, ',');
        sb_c(m, b, v.sub == SUB_TUPLE ? ')' : ']');
        if (v.sub >= SUB_KEYS)
            sb_c(m, b, ')');
        break;
    case V_DICT:
    case V_NS:
        sb_s(m, b, v.t == V_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                sb_s(m, b, ", ");
            put_repr(m, b, v.u.d->k[i]);
            sb_s(m, b, ": ");
            put_repr(m, b, v.u.d->v[i]);
        }
        sb_s(m, b, v.t == V_NS ? "}>" : "}");
        break;
    case V_FN:
        if (v.u.fn->kind == FN_METHOD)
            sb_f(m, b, "<built-in method %.*s of %s object at 0x0>", (int)v.u.fn->nn,
                 v.u.fn->name, type_name(v.u.fn->self));
        else
            sb_f(m, b, "<function %.*s at 0x0>", (int)v.u.fn->nn, v.u.fn->name);
        break;
    case V_LOOP: sb_s(m, b, "<LoopContext>"); break;
    default: put_str(m, b, v); break;
    }
    m->depth--;
}

static jv to_str(jm *m, jv v)
{
    if (v.t == V_STR)
        return v;
    sb b = {0};
    put_str(m, &b, v);
    return sb_val(&b);
}

/* json.dumps(v, ensure_ascii, indent, separators, sort_keys) as HF's tojson calls it. */
typedef struct jsonopt {
    int ensure_ascii, sort_keys, has_indent;
    jv indent;            /* str */
    jv item_sep, key_sep; /* str */
} jsonopt;

static void put_json_str(jm *m, sb *b, const char *s, size_t n, int ascii)
{
    sb_c(m, b, '"');
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = u8dec(s, n, &i);
        switch (c) {
        case '"': sb_s(m, b, "\\\""); continue;
        case '\\': sb_s(m, b, "\\\\"); continue;
        case '\n': sb_s(m, b, "\\n"); continue;
        case '\r': sb_s(m, b, "\\r"); continue;
        case '\t': sb_s(m, b, "\\t"); continue;
        case '\b': sb_s(m, b, "\\b"); continue;
        case '\f': sb_s(m, b, "\\f"); continue;
        default: break;
        }
        if (c < 0x20 || (ascii && c >= 0x7F)) {
            if (c >= 0x10000) {
                uint32_t x = c - 0x10000;
                sb_f(m, b, "\\u%04x\\u%04x", 0xD800 + (x >> 10), 0xDC00 + (x & 0x3FF));
            } else {
                sb_f(m, b, "\\u%04x", (unsigned)c);
            }
        } else {
            sb_put(m, b, s + st, i - st);
        }
    }
    sb_c(m, b, '"');
}

static void json_nl(jm *m, sb *b, const jsonopt *o, int level)
{
    sb_c(m, b, '\n');
    for (int i = 0; i < level; i++)
        sb_put(m, b, o->indent.u.s.p, o->indent.u.s.n);
}

static int str_cmp(jv a, jv b)
{
    size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
    int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
}

static void put_json(jm *m, sb *b, jv v, const jsonopt *o, int level, int line)
{
    char t[48];
    enter(m, line);
    switch (v.t) {
    case V_NONE: sb_s(m, b, "null"); break;
    case V_BOOL: sb_s(m, b, v.u.i ? "true" : "false"); break;
    case V_INT: sb_f(m, b, "%lld", (long long)v.u.i); break;
    case V_FLOAT: fmt_float(v.u.f, t, 1); sb_s(m, b, t); break;
    case V_STR: put_json_str(m, b, v.u.s.p, v.u.s.n, o->ensure_ascii); break;
    case V_LIST:
        if (v.sub > SUB_TUPLE)
            jfail(m, line, "Object of type %s is not JSON serializable", type_name(v));
        if (!v.u.l->n) {
            sb_s(m, b, "[]");
            break;
        }
        sb_c(m, b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                sb_put(m, b, o->item_sep.u.s.p, o->item_sep.u.s.n);
            if (o->has_indent)
                json_nl(m, b, o, level + 1);
            put_json(m, b, v.u.l->v[i], o, level + 1, line);
        }
        if (o->has_indent)
            json_nl(m, b, o, level);
        sb_c(m, b, ']');
        break;
    case V_DICT: {
        jdict *d = v.u.d;
        if (!d->n) {
            sb_s(m, b, "{}");
            break;
        }
        /* key order: insertion, or sorted (a stable insertion sort of indexes) */
        size_t *ord = jalloc(m, mul_size(m, d->n, sizeof(size_t)));
        for (size_t i = 0; i < d->n; i++) {
            ord[i] = i;
            if (o->sort_keys) {
                if (d->k[i].t != V_STR)
                    jfail(m, line, "tojson: sort_keys needs string keys");
                for (size_t j = i; j > 0 && str_cmp(d->k[ord[j - 1]], d->k[i]) > 0; j--) {
                    ord[j] = ord[j - 1];
                    ord[j - 1] = i;
                }
            }
        }
        sb_c(m, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->k[ord[i]];
            if (i)
                sb_put(m, b, o->item_sep.u.s.p, o->item_sep.u.s.n);
            if (o->has_indent)
                json_nl(m, b, o, level + 1);
            if (k.t == V_STR) {
                put_json_str(m, b, k.u.s.p, k.u.s.n, o->ensure_ascii);
            } else if (k.t == V_NONE || k.t == V_BOOL || k.t == V_INT || k.t == V_FLOAT) {
                sb s2 = {0};
                put_json(m, &s2, k, o, level, line);
                sb_c(m, b, '"');
                sb_put(m, b, s2.p, s2.n);
                sb_c(m, b, '"');
            } else {
                jfail(m, line, "keys must be str, int, float, bool or None, not %s",
                      type_name(k));
            }
            sb_put(m, b, o->key_sep.u.s.p, o->key_sep.u.s.n);
            put_json(m, b, d->v[ord[i]], o, level + 1, line);
        }
        if (o->has_indent)
            json_nl(m, b, o, level);
        sb_c(m, b, '}');
        break;
    }
    default:
        jfail(m, line, "Object of type %s is not JSON serializable", type_name(v));
    }
    m->depth--;
}

static int hashable(jv v)
{
    if (v.t == V_LIST) {
        if (v.sub == SUB_GEN)
            return 1;
        if (v.sub != SUB_TUPLE)
            return 0;
        for (size_t i = 0; i < v.u.l->n; i++)
            if (!hashable(v.u.l->v[i]))
                return 0;
        return 1;
    }
    return v.t != V_DICT;
}

/* Python ==. Numbers compare by value across bool/int/float; list != tuple. */
static int veq(jm *m, jv a, jv b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT)
            return a.u.i == b.u.i;
        return num_f(a) == num_f(b);
    }
    if (a.t != b.t)
        return 0;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case V_LIST: {
        if (a.sub > SUB_TUPLE || b.sub > SUB_TUPLE) /* generators and views: identity */
            return a.sub == b.sub && a.u.l == b.u.l;
        if (a.sub != b.sub || a.u.l->n != b.u.l->n)
            return 0;
        int r = 1;
        enter(m, 0);
        for (size_t i = 0; r && i < a.u.l->n; i++)
            r = veq(m, a.u.l->v[i], b.u.l->v[i]);
        m->depth--;
        return r;
    }
    case V_DICT: {
        if (a.u.d->n != b.u.d->n)
            return 0;
        int r = 1;
        enter(m, 0);
        for (size_t i = 0; r && i < a.u.d->n; i++) {
            r = 0;
            for (size_t j = 0; j < b.u.d->n; j++) {
                if (veq(m, a.u.d->k[i], b.u.d->k[j])) {
                    r = veq(m, a.u.d->v[i], b.u.d->v[j]);
                    break;
                }
            }
        }
        m->depth--;
        return r;
    }
    case V_NS: return a.u.d == b.u.d;
    case V_FN: return a.u.fn == b.u.fn;
    default: return a.u.loop == b.u.loop;
    }
}

static _Noreturn void fail_cmp(jm *m, int line, int op, jv a, jv b)
{
    if (a.t == V_UNDEF)
        fail_undef(m, line, a);
    if (b.t == V_UNDEF)
        fail_undef(m, line, b);
    jfail(m, line, "'%s' not supported between instances of '%s' and '%s'", op_text[op],
          type_name(a), type_name(b));
}

/* Python <, <=, >, >= */
static int vorder(jm *m, int op, jv a, jv b, int line)
{
    int c;
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT)
            c = a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        else {
            double x = num_f(a), y = num_f(b);
            switch (op) {
            case OP_LT: return x < y;
            case OP_LE: return x <= y;
            case OP_GT: return x > y;
            default: return x >= y;
            }
        }
    } else if (a.t == V_STR && b.t == V_STR) {
        c = str_cmp(a, b); /* UTF-8 byte order is code point order */
    } else if (a.t == V_LIST && b.t == V_LIST && a.sub == b.sub && a.sub <= SUB_TUPLE) {
        size_t i = 0;
        while (i < a.u.l->n && i < b.u.l->n && veq(m, a.u.l->v[i], b.u.l->v[i]))
            i++;
        if (i < a.u.l->n && i < b.u.l->n) {
            enter(m, line);
            int r = vorder(m, op, a.u.l->v[i], b.u.l->v[i], line);
            m->depth--;
            return r;
        }
        c = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    } else {
        fail_cmp(m, line, op, a, b);
    }
    switch (op) {
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default: return c >= 0;
    }
}

static long dict_find(jm *m, const jdict *d, jv key)
{
    if (key.t == V_STR) {
        for (size_t i = 0; i < d->n; i++)
            if (d->k[i].t == V_STR && d->k[i].u.s.n == key.u.s.n &&
                !memcmp(d->k[i].u.s.p, key.u.s.p, key.u.s.n))
                return (long)i;
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (veq(m, d->k[i], key))
            return (long)i;
    return -1;
}

static void dict_set(jm *m, jdict *d, jv key, jv val)
{
    long i = dict_find(m, d, key);
    if (i >= 0) {
        d->v[i] = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = jalloc(m, mul_size(m, cap, sizeof(jv)));
        jv *v = jalloc(m, mul_size(m, cap, sizeof(jv)));
        if (d->n) {
            memcpy(k, d->k, d->n * sizeof(jv));
            memcpy(v, d->v, d->n * sizeof(jv));
        }
        d->k = k;
        d->v = v;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = val;
}

static jv dict_get_s(jm *m, const jdict *d, const char *k, size_t kn)
{
    long i = dict_find(m, d, mk_str(k, kn));
    return i >= 0 ? d->v[i] : mk_undef(k, kn);
}

static jlist *gen_force(jm *m, const struct lazy *z);

/* The items a for loop visits: list items, dict keys, the characters of a string. */
static jlist *iter_items(jm *m, jv v, int line)
{
    switch (v.t) {
    case V_UNDEF: return new_list(m, 0);
    case V_LIST:
        if (v.sub == SUB_GEN) {
            if (v.u.l->spent)
                return new_list(m, 0);
            v.u.l->spent = 1;
            if (v.u.l->lazy)
                return gen_force(m, v.u.l->lazy);
        }
        return v.u.l;
    case V_DICT: {
        jlist *l = new_list(m, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            list_push(m, l, v.u.d->k[i]);
        return l;
    }
    case V_STR: {
        jlist *l = new_list(m, v.u.s.n);
        for (size_t i = 0; i < v.u.s.n;) {
            size_t st = i;
            u8dec(v.u.s.p, v.u.s.n, &i);
            list_push(m, l, mk_str(v.u.s.p + st, i - st));
        }
        return l;
    }
    default:
        jfail(m, line, "'%s' object is not iterable", type_name(v));
    }
}

static int vcontains(jm *m, jv hay, jv x, int line)
{
    if (hay.t == V_STR) {
        if (x.t != V_STR)
            jfail(m, line, "'in <string>' requires string as left operand, not %s",
                  type_name(x));
        if (!x.u.s.n)
            return 1;
        return memmem(hay.u.s.p, hay.u.s.n, x.u.s.p, x.u.s.n) != NULL;
    }
    if (hay.t == V_DICT) {
        if (!hashable(x))
            jfail(m, line, "unhashable type: '%s'", type_name(x));
        return dict_find(m, hay.u.d, x) >= 0;
    }
    if (hay.t == V_LIST || hay.t == V_UNDEF) {
        jlist *l = iter_items(m, hay, line);
        for (size_t i = 0; i < l->n; i++)
            if (veq(m, l->v[i], x))
                return 1;
        return 0;
    }
    jfail(m, line, "argument of type '%s' is not iterable", type_name(hay));
}

/* Arguments of a call: positional values, and keyword values with their names. */
typedef struct jargs {
    jv *pos;
    int np;
    jv *kv;
    const node **kn; /* N_KWARG nodes: names */
    int nk;
} jargs;

static jv f_format(jm *m, jv fmt, jargs *a, int line);

static jv arith(jm *m, int op, jv a, jv b, int line)
{
    if (op == OP_MOD && a.t == V_STR) { /* printf-style formatting */
        jargs fa = {0};
        if (b.t == V_LIST && b.sub == SUB_TUPLE) {
            fa.pos = b.u.l->v;
            fa.np = (int)b.u.l->n;
        } else if ((b.t == V_DICT || b.t == V_UNDEF || (b.t == V_LIST && b.sub == SUB_LIST)) &&
                   !memchr(a.u.s.p, '%', a.u.s.n)) {
            /* an argument with __getitem__ counts as a mapping: nothing to format */
            return a;
        } else {
            fa.pos = &b;
            fa.np = 1;
        }
        return f_format(m, a, &fa, line);
    }
    if (a.t == V_UNDEF)
        fail_undef(m, line, a);
    if (b.t == V_UNDEF)
        fail_undef(m, line, b);
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT && op != OP_DIV) {
            int64_t x = a.u.i, y = b.u.i, r;
            switch (op) {
            case OP_ADD: if (__builtin_add_overflow(x, y, &r)) goto ovf; return mk_int(r);
            case OP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto ovf; return mk_int(r);
            case OP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto ovf; return mk_int(r);
            case OP_FLOORDIV:
            case OP_MOD:
                if (y == 0)
                    jfail(m, line, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1)
                    goto ovf;
                r = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0)))
                    r--;
                return mk_int(op == OP_FLOORDIV ? r : x - r * y);
            case OP_POW:
                if (y < 0) {
                    if (x == 0)
                        jfail(m, line, "0.0 cannot be raised to a negative power");
                    return mk_float(pow((double)x, (double)y));
                }
                r = 1;
                for (int64_t k = 0; k < y; k++) {
                    if (__builtin_mul_overflow(r, x, &r))
                        goto ovf;
                    if (r == 0 || r == 1)
                        break;
                    if (r == -1) {
                        r = ((y - k - 1) % 2) ? -1 : 1;
                        break;
                    }
                }
                return mk_int(r);
            default: break;
            }
        }
        double x = num_f(a), y = num_f(b);
        switch (op) {
        case OP_ADD: return mk_float(x + y);
        case OP_SUB: return mk_float(x - y);
        case OP_MUL: return mk_float(x * y);
        case OP_DIV:
            if (y == 0)
                jfail(m, line, "division by zero");
            return mk_float(x / y);
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0)
                jfail(m, line, "float divmod()");
            /* CPython's float_divmod */
            double mod = fmod(x, y), div = (x - mod) / y, fd;
            if (mod != 0) {
                if ((y < 0) != (mod < 0)) {
                    mod += y;
                    div -= 1.0;
                }
            } else {
                mod = copysign(0.0, y);
            }
            if (div != 0) {
                fd = floor(div);
                if (div - fd > 0.5)
                    fd += 1.0;
            } else {
                fd = copysign(0.0, x / y);
            }
            return mk_float(op == OP_MOD ? mod : fd);
        }
        case OP_POW: {
            if (x == 0 && y < 0)
                jfail(m, line, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y))
                jfail(m, line, "negative number raised to a fractional power (complex result)");
            double r = pow(x, y);
            if (isinf(r) && isfinite(x) && isfinite(y))
                jfail(m, line, "(34, 'Numerical result out of range')");
            return mk_float(r);
        }
        default: break;
        }
    }
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
        sb s = {0};
        sb_put(m, &s, a.u.s.p, a.u.s.n);
        sb_put(m, &s, b.u.s.p, b.u.s.n);
        return sb_val(&s);
    }
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.sub == b.sub && a.sub <= SUB_TUPLE) {
        jlist *l = new_list(m, a.u.l->n + b.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            list_push(m, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            list_push(m, l, b.u.l->v[i]);
        return mk_list(l, a.sub);
    }
    if (op == OP_MUL && (a.t == V_INT || a.t == V_BOOL) && (b.t == V_STR || b.t == V_LIST)) {
        jv t = a;
        a = b;
        b = t;
    }
    if (op == OP_MUL && (a.t == V_STR || (a.t == V_LIST && a.sub <= SUB_TUPLE)) &&
        (b.t == V_INT || b.t == V_BOOL)) {
        int64_t k = b.u.i < 0 ? 0 : b.u.i;
        if (a.t == V_STR) {
            if (a.u.s.n && (uint64_t)k > m->ar->limit / a.u.s.n)
                jnomem(m);
            sb s = {0};
            for (int64_t i = 0; i < k; i++)
                sb_put(m, &s, a.u.s.p, a.u.s.n);
            return sb_val(&s);
        }
        if (a.u.l->n && (uint64_t)k > m->ar->limit / (a.u.l->n * sizeof(jv)))
            jnomem(m);
        jlist *l = new_list(m, 0);
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < a.u.l->n; j++)
                list_push(m, l, a.u.l->v[j]);
        return mk_list(l, a.sub);
    }
    jfail(m, line, "unsupported operand type(s) for %s: '%s' and '%s'", op_text[op],
          type_name(a), type_name(b));
ovf:
    jfail(m, line, "integer overflow");
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

struct jloop {
    jlist *items;
    size_t i;
};

static int streq(const char *s, size_t n, const char *z)
{
    return strlen(z) == n && !memcmp(s, z, n);
}

static jv mk_fn(jm *m, int kind, const char *name, size_t nn)
{
    jfn *f = jalloc(m, sizeof *f);
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
    long i = dict_find(m, &m->ctx->globals, mk_str(name, n));
    if (i >= 0)
        return m->ctx->globals.v[i];
    for (int g = 0; g < G_COUNT_; g++) {
        if (streq(name, n, global_names[g])) {
            jv f = mk_fn(m, FN_BUILTIN, name, n);
            f.u.fn->builtin = (uint8_t)g;
            return f;
        }
    }
    return mk_undef(name, n);
}

/* Scopes live in the render's arena, never on the C stack: a macro defined inside a loop
 * or block keeps its scope and may be called after that loop or block is gone. */
static scope *new_scope(jm *m, scope *parent)
{
    scope *s = jalloc(m, sizeof *s);
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
    svar *v = jalloc(m, sizeof *v);
    v->name = name;
    v->n = n;
    v->v = val;
    v->next = sc->vars;
    sc->vars = v;
}

/* Methods of str, dict and list that templates may call; the mutating ones exist but
 * fail, as jinja2's immutable sandbox makes them. */
static const char *const str_methods[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
    "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
    "join", "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix",
    "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper",
    "zfill", NULL};
static const char *const dict_methods[] = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                           "pop", "popitem", "setdefault", "update", "values",
                                           NULL};
static const char *const list_methods[] = {"append", "clear", "copy", "count", "extend",
                                           "index", "insert", "pop", "remove", "reverse",
                                           "sort", NULL};

static int in_names(const char *const *tab, const char *s, size_t n)
{
    for (int i = 0; tab[i]; i++)
        if (streq(s, n, tab[i]))
            return 1;
    return 0;
}

static jv bound(jm *m, jv self, const char *name, size_t n)
{
    jv f = mk_fn(m, FN_METHOD, name, n);
    f.u.fn->self = self;
    return f;
}

/* jinja2's environment.getattr: a Python attribute first, then an item. */
static jv get_attr(jm *m, jv obj, const char *name, size_t n, int line)
{
    switch (obj.t) {
    case V_UNDEF:
        fail_undef(m, line, obj);
    case V_DICT:
        if (in_names(dict_methods, name, n))
            return bound(m, obj, name, n);
        return dict_get_s(m, obj.u.d, name, n);
    case V_NS:
        return dict_get_s(m, obj.u.d, name, n);
    case V_STR:
        if (in_names(str_methods, name, n))
            return bound(m, obj, name, n);
        break;
    case V_LIST:
        if (obj.sub == SUB_LIST && in_names(list_methods, name, n))
            return bound(m, obj, name, n);
        if (obj.sub == SUB_TUPLE && (streq(name, n, "count") || streq(name, n, "index")))
            return bound(m, obj, name, n);
        break;
    case V_LOOP: {
        jloop *L = obj.u.loop;
        int64_t i = (int64_t)L->i, len = (int64_t)L->items->n;
        if (streq(name, n, "index")) return mk_int(i + 1);
        if (streq(name, n, "index0")) return mk_int(i);
        if (streq(name, n, "revindex")) return mk_int(len - i);
        if (streq(name, n, "revindex0")) return mk_int(len - i - 1);
        if (streq(name, n, "first")) return mk_bool(i == 0);
        if (streq(name, n, "last")) return mk_bool(i == len - 1);
        if (streq(name, n, "length")) return mk_int(len);
        if (streq(name, n, "depth")) return mk_int(1);
        if (streq(name, n, "depth0")) return mk_int(0);
        if (streq(name, n, "previtem"))
            return i > 0 ? L->items->v[i - 1] : mk_undef(name, n);
        if (streq(name, n, "nextitem"))
            return i + 1 < len ? L->items->v[i + 1] : mk_undef(name, n);
        if (streq(name, n, "cycle"))
            return bound(m, obj, name, n);
        break;
    }
    default:
        break;
    }
    return mk_undef(name, n);
}

/* Python index of a sequence of len n; -1 when out of range. */
static long seq_index(jv key, size_t n)
{
    if (key.t != V_INT && key.t != V_BOOL)
        return -1;
    int64_t i = key.u.i;
    if (i < 0)
        i += (int64_t)n;
    return i < 0 || i >= (int64_t)n ? -1 : (long)i;
}

/* Byte offsets of each code point of s (plus the end), for indexing and slicing. */
static size_t *cp_offsets(jm *m, const char *s, size_t n, size_t *count)
{
    size_t k = 0, *off = jalloc(m, mul_size(m, n + 1, sizeof(size_t)));
    for (size_t i = 0; i < n;) {
        off[k++] = i;
        u8dec(s, n, &i);
    }
    off[k] = n;
    *count = k;
    return off;
}

/* jinja2's environment.getitem: an item first, then an attribute for string keys. */
static jv get_item(jm *m, jv obj, jv key, int line)
{
    switch (obj.t) {
    case V_UNDEF:
        fail_undef(m, line, obj);
    case V_LIST: {
        long i = obj.sub <= SUB_TUPLE ? seq_index(key, obj.u.l->n) : -1;
        if (i >= 0)
            return obj.u.l->v[i];
        break;
    }
    case V_STR: { /* the i-th code point, found without an offsets table */
        int neg = (key.t == V_INT || key.t == V_BOOL) && key.u.i < 0;
        long i = seq_index(key, neg ? u8len(obj.u.s.p, obj.u.s.n) : SIZE_MAX / 2);
        size_t at = 0, k = 0;
        while (i >= 0 && at < obj.u.s.n && k < (size_t)i) {
            u8dec(obj.u.s.p, obj.u.s.n, &at);
            k++;
        }
        if (i >= 0 && at < obj.u.s.n) {
            size_t st = at;
            u8dec(obj.u.s.p, obj.u.s.n, &at);
            return mk_str(obj.u.s.p + st, at - st);
        }
        break;
    }
    case V_DICT:
    case V_NS:
        if (!hashable(key))
            jfail(m, line, "unhashable type: '%s'", type_name(key));
        long i = dict_find(m, obj.u.d, key);
        if (i >= 0)
            return obj.u.d->v[i];
        break;
    default:
        break;
    }
    if (key.t == V_STR && obj.t != V_NS)
        return get_attr(m, obj, key.u.s.p, key.u.s.n, line);
    return mk_undef("", 0);
}

static int64_t int_arg(jm *m, jv v, int line, const char *what)
{
    if (v.t == V_INT || v.t == V_BOOL)
        return v.u.i;
    jfail(m, line, "%s must be an integer, not %s", what, type_name(v));
}

/* Python slice semantics over n items: fills the selected indexes. */
static size_t slice_idx(jm *m, jv start, jv stop, jv step, size_t n, size_t **out, int line)
{
    int64_t st = step.t == V_NONE || step.t == V_UNDEF ? 1 : int_arg(m, step, line, "slice step");
    if (st == 0)
        jfail(m, line, "slice step cannot be zero");
    int64_t len = (int64_t)n, a, b;
    int has_a = !(start.t == V_NONE || start.t == V_UNDEF);
    int has_b = !(stop.t == V_NONE || stop.t == V_UNDEF);
    a = has_a ? int_arg(m, start, line, "slice index") : (st > 0 ? 0 : len - 1);
    b = has_b ? int_arg(m, stop, line, "slice index") : (st > 0 ? len : -1);
    if (has_a) {
        if (a < 0)
            a += len;
        if (st > 0)
            a = a < 0 ? 0 : a > len ? len : a;
        else
            a = a < -1 ? -1 : a > len - 1 ? len - 1 : a;
    }
    if (has_b) {
        if (b < 0)
            b += len;
        if (st > 0)
            b = b < 0 ? 0 : b > len ? len : b;
        else
            b = b < -1 ? -1 : b > len - 1 ? len - 1 : b;
    }
    size_t k = 0, *idx = jalloc(m, mul_size(m, n + 1, sizeof(size_t)));
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        idx[k++] = (size_t)i;
    *out = idx;
    return k;
}

static jv do_slice(jm *m, jv obj, jv a, jv b, jv c, int line, int folded)
{
    size_t *idx, k;
    if (obj.t == V_UNDEF)
        fail_undef(m, line, obj);
    if (obj.t == V_LIST && obj.sub <= SUB_TUPLE) {
        k = slice_idx(m, a, b, c, obj.u.l->n, &idx, line);
        jlist *l = new_list(m, k);
        for (size_t i = 0; i < k; i++)
            list_push(m, l, obj.u.l->v[idx[i]]);
        return mk_list(l, obj.sub);
    }
    if (obj.t == V_STR) {
        size_t cnt, *off = cp_offsets(m, obj.u.s.p, obj.u.s.n, &cnt);
        k = slice_idx(m, a, b, c, cnt, &idx, line);
        sb s = {0};
        for (size_t i = 0; i < k; i++)
            sb_put(m, &s, obj.u.s.p + off[idx[i]], off[idx[i] + 1] - off[idx[i]]);
        return sb_val(&s);
    }
    /* jinja2 slices with Python's [] directly, without its getitem fallback */
    if (folded)
        return mk_undef("", 0);
    jfail(m, line, "'%s' object is not subscriptable", type_name(obj));
}

/* ---- call arguments ------------------------------------------------------------- */


/* Positional argument i or keyword `kw`; NULL when absent. */
static jv *arg(jargs *a, int i, const char *kw)
{
    if (i >= 0 && i < a->np)
        return &a->pos[i];
    for (int k = 0; kw && k < a->nk; k++)
        if (streq(a->kn[k]->s, a->kn[k]->sn, kw))
            return &a->kv[k];
    return NULL;
}

static jv argv_or(jargs *a, int i, const char *kw, jv def)
{
    jv *v = arg(a, i, kw);
    return v ? *v : def;
}

static jv ev(jm *m, const node *x, scope *sc);

static void eval_args(jm *m, node **kids, int n, scope *sc, jargs *a)
{
    memset(a, 0, sizeof *a);
    if (!n)
        return;
    a->pos = jalloc(m, (size_t)n * sizeof(jv));
    a->kv = jalloc(m, (size_t)n * sizeof(jv));
    a->kn = jalloc(m, (size_t)n * sizeof(node *));
    for (int i = 0; i < n; i++) {
        if (kids[i]->k == N_KWARG) {
            a->kn[a->nk] = kids[i];
            a->kv[a->nk++] = ev(m, kids[i]->a, sc);
        } else {
            a->pos[a->np++] = ev(m, kids[i], sc);
        }
    }
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

static jv s_case(jm *m, jv s, int mode) /* 0 lower, 1 upper, 2 capitalize, 3 title */
{
    sb b = {0};
    int prev_cased = 0, first = 1;
    for (size_t i = 0; i < s.u.s.n;) {
        uint32_t c = u8dec(s.u.s.p, s.u.s.n, &i);
        int up = mode == 1 || (mode == 2 && first) || (mode == 3 && !prev_cased);
        const char *sp = special_case(c, up, mode >= 2);
        if (sp) {
            sb_s(m, &b, sp);
            prev_cased = 1;
            first = 0;
            continue;
        }
        if (c == 0x3A3 && !up && prev_cased) {
            /* final sigma: after a cased letter and not before one */
            size_t j = i;
            int next_cased = j < s.u.s.n && cp_cased(u8dec(s.u.s.p, s.u.s.n, &j));
            if (!next_cased) {
                sb_cp(m, &b, 0x3C2);
                first = 0;
                continue;
            }
        }
        uint32_t o = c;
        if (mode == 0)
            o = cp_lower(c);
        else if (mode == 1)
            o = cp_upper(c);
        else if (mode == 2)
            o = first ? cp_upper(c) : cp_lower(c);
        else
            o = prev_cased ? cp_lower(c) : cp_upper(c);
        prev_cased = cp_cased(c);
        first = 0;
        sb_cp(m, &b, o);
    }
    return sb_val(&b);
}

static int in_chars(uint32_t c, jv chars)
{
    if (chars.t != V_STR)
        return py_space(c);
    for (size_t i = 0; i < chars.u.s.n;)
        if (u8dec(chars.u.s.p, chars.u.s.n, &i) == c)
            return 1;
    return 0;
}

/* str.strip family; which: 1 left, 2 right, 3 both. */
static jv s_strip(jv s, jv chars, int which)
{
    const char *p = s.u.s.p;
    size_t a = 0, b = s.u.s.n;
    if (which & 1) {
        while (a < b) {
            size_t i = a;
            if (!in_chars(u8dec(p, b, &i), chars))
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
            uint32_t c = u8dec(p, b, &i);
            if (i != b) { /* not one whole code point: treat the last byte alone */
                st = b - 1;
                i = st;
                c = u8dec(p, b, &i);
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
    jlist *l = new_list(m, 0);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (sep.t == V_STR) {
        if (!sep.u.s.n)
            jfail(m, line, "empty separator");
        size_t st = 0;
        for (;;) {
            const char *f = maxsplit != 0 ? memmem(p + st, n - st, sep.u.s.p, sep.u.s.n) : NULL;
            if (!f)
                break;
            list_push(m, l, mk_str(p + st, (size_t)(f - (p + st))));
            st = (size_t)(f - p) + sep.u.s.n;
            if (maxsplit > 0)
                maxsplit--;
        }
        list_push(m, l, mk_str(p + st, n - st));
        return mk_list(l, 0);
    }
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (i < n) { /* skip whitespace */
            j = i;
            if (!py_space(u8dec(p, n, &j)))
                break;
            i = j;
        }
        if (i >= n)
            break;
        if (maxsplit == 0) {
            size_t e = n; /* the rest, without trailing whitespace */
            jv r = s_strip(mk_str(p + i, e - i), NONE, 2);
            list_push(m, l, r);
            break;
        }
        size_t st = i;
        while (i < n) {
            j = i;
            if (py_space(u8dec(p, n, &j)))
                break;
            i = j;
        }
        list_push(m, l, mk_str(p + st, i - st));
        if (maxsplit > 0)
            maxsplit--;
    }
    return mk_list(l, 0);
}

static jv s_replace(jm *m, jv s, jv old, jv new_, int64_t count)
{
    sb b = {0};
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    if (!old.u.s.n) { /* Python inserts `new` before each code point and at the end */
        while (count != 0 && i <= n) {
            sb_put(m, &b, new_.u.s.p, new_.u.s.n);
            if (count > 0)
                count--;
            if (i == n) {
                i++;
                break;
            }
            size_t st = i;
            u8dec(p, n, &i);
            sb_put(m, &b, p + st, i - st);
        }
        if (i <= n)
            sb_put(m, &b, p + i, n - i);
        return sb_val(&b);
    }
    while (count != 0) {
        const char *f = memmem(p + i, n - i, old.u.s.p, old.u.s.n);
        if (!f)
            break;
        sb_put(m, &b, p + i, (size_t)(f - (p + i)));
        sb_put(m, &b, new_.u.s.p, new_.u.s.n);
        i = (size_t)(f - p) + old.u.s.n;
        if (count > 0)
            count--;
    }
    sb_put(m, &b, p + i, n - i);
    return sb_val(&b);
}

static int64_t s_count(jv s, jv sub)
{
    if (!sub.u.s.n)
        return (int64_t)u8len(s.u.s.p, s.u.s.n) + 1;
    int64_t k = 0;
    const char *p = s.u.s.p, *e = p + s.u.s.n, *f;
    while ((f = memmem(p, (size_t)(e - p), sub.u.s.p, sub.u.s.n))) {
        k++;
        p = f + sub.u.s.n;
    }
    return k;
}

static jv need_str(jm *m, jv *v, int line, const char *what)
{
    if (!v || v->t != V_STR)
        jfail(m, line, "%s must be str, not %s", what, v ? type_name(*v) : "nothing");
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
    need_str(m, &x, line, end ? "endswith argument" : "startswith argument");
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
                jfail(m, line, "Single '}' encountered in format string");
            sb_c(m, &b, '}');
            continue;
        }
        if (c != '{') {
            sb_c(m, &b, c);
            continue;
        }
        if (p < e && *p == '{') {
            sb_c(m, &b, *p++);
            continue;
        }
        const char *f = p;
        while (p < e && *p != '}')
            p++;
        if (p >= e)
            jfail(m, line, "Single '{' encountered in format string");
        size_t fl = (size_t)(p++ - f);
        if (memchr(f, ':', fl) || memchr(f, '!', fl) || memchr(f, '.', fl) || memchr(f, '[', fl))
            jfail(m, line, "str.format: conversions and format specs are not supported");
        jv *v;
        if (fl == 0 || is_digit(f[0])) {
            long i = fl ? strtol(f, NULL, 10) : auto_idx++;
            if (fl)
                manual = 1;
            else
                automatic = 1;
            if (manual && automatic)
                jfail(m, line, "cannot switch from manual field specification to automatic "
                      "field numbering");
            v = i < a->np ? &a->pos[i] : NULL;
            if (!v)
                jfail(m, line, "Replacement index %ld out of range for positional args tuple", i);
        } else {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(fl < 63 ? fl : 63), f);
            v = arg(a, -1, key);
            if (!v)
                jfail(m, line, "KeyError: '%s'", key);
        }
        put_str(m, &b, *v);
    }
    return sb_val(&b);
}

/* The str methods templates call, with Python's semantics (a table, hence long). */
static jv str_method(jm *m, jv s, const char *name, size_t n, jargs *a, int line)
{
    jv a0 = argv_or(a, 0, NULL, NONE);
    if (streq(name, n, "strip") || streq(name, n, "lstrip") || streq(name, n, "rstrip")) {
        jv ch = argv_or(a, 0, "chars", NONE);
        if (ch.t != V_NONE)
            need_str(m, &ch, line, "strip argument");
        return s_strip(s, ch, name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3);
    }
    if (streq(name, n, "split") || streq(name, n, "rsplit")) {
        jv sep = argv_or(a, 0, "sep", NONE);
        jv ms = argv_or(a, 1, "maxsplit", mk_int(-1));
        if (sep.t != V_NONE)
            need_str(m, &sep, line, "separator");
        int64_t k = int_arg(m, ms, line, "maxsplit");
        if (name[0] == 'r' && k >= 0) {
            /* rsplit with a limit: split all, then rejoin the leading parts */
            jv all = s_split(m, s, sep, -1, line);
            jlist *l = all.u.l;
            if ((int64_t)l->n <= k + 1)
                return all;
            jlist *r = new_list(m, (size_t)k + 1);
            size_t head = l->n - (size_t)k;
            if (sep.t == V_STR) {
                const char *e = l->v[head - 1].u.s.p + l->v[head - 1].u.s.n;
                list_push(m, r, mk_str(s.u.s.p, (size_t)(e - s.u.s.p)));
            } else {
                const char *e = l->v[head - 1].u.s.p + l->v[head - 1].u.s.n;
                list_push(m, r, s_strip(mk_str(s.u.s.p, (size_t)(e - s.u.s.p)), NONE, 1));
            }
            for (size_t i = head; i < l->n; i++)
                list_push(m, r, l->v[i]);
            return mk_list(r, 0);
        }
        return s_split(m, s, sep, k, line);
    }
    if (streq(name, n, "splitlines")) {
        jlist *l = new_list(m, 0);
        const char *p = s.u.s.p;
        size_t i = 0, st = 0, len = s.u.s.n;
        int keep = truthy(argv_or(a, 0, "keepends", mk_bool(0)));
        while (i < len) {
            size_t j = i;
            uint32_t c = u8dec(p, len, &j);
            if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) ||
                c == 0x85 || c == 0x2028 || c == 0x2029) {
                if (c == '\r' && j < len && p[j] == '\n')
                    j++;
                list_push(m, l, mk_str(p + st, (keep ? j : i) - st));
                st = j;
            }
            i = j;
        }
        if (st < len)
            list_push(m, l, mk_str(p + st, len - st));
        return mk_list(l, 0);
    }
    if (streq(name, n, "startswith") || streq(name, n, "endswith")) {
        if (!a->np)
            jfail(m, line, "%.*s() takes at least 1 argument", (int)n, name);
        return mk_bool(affix(m, s, a0, name[0] == 'e', line));
    }
    if (streq(name, n, "upper")) return s_case(m, s, 1);
    if (streq(name, n, "lower") || streq(name, n, "casefold")) return s_case(m, s, 0);
    if (streq(name, n, "capitalize")) return s_case(m, s, 2);
    if (streq(name, n, "title")) return s_case(m, s, 3);
    if (streq(name, n, "replace")) {
        jv o = need_str(m, arg(a, 0, NULL), line, "replace argument 1");
        jv w = need_str(m, arg(a, 1, NULL), line, "replace argument 2");
        return s_replace(m, s, o, w, int_arg(m, argv_or(a, 2, "count", mk_int(-1)), line, "count"));
    }
    if (streq(name, n, "find") || streq(name, n, "rfind") || streq(name, n, "index") ||
        streq(name, n, "rindex")) {
        jv sub = need_str(m, arg(a, 0, NULL), line, "substring");
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
                jfail(m, line, "substring not found");
            return mk_int(-1);
        }
        return mk_int((int64_t)u8len(p, (size_t)(f - p)));
    }
    if (streq(name, n, "count"))
        return mk_int(s_count(s, need_str(m, arg(a, 0, NULL), line, "substring")));
    if (streq(name, n, "join")) {
        jlist *l = iter_items(m, a0, line);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].t != V_STR)
                jfail(m, line, "sequence item %zu: expected str instance, %s found", i,
                      type_name(l->v[i]));
            if (i)
                sb_put(m, &b, s.u.s.p, s.u.s.n);
            sb_put(m, &b, l->v[i].u.s.p, l->v[i].u.s.n);
        }
        return sb_val(&b);
    }
    if (streq(name, n, "removeprefix") || streq(name, n, "removesuffix")) {
        jv x = need_str(m, arg(a, 0, NULL), line, "affix");
        int end = name[6] == 's';
        if (!affix(m, s, x, end, line))
            return s;
        return mk_str(s.u.s.p + (end ? 0 : x.u.s.n), s.u.s.n - x.u.s.n);
    }
    if (n > 2 && name[0] == 'i' && name[1] == 's') {
        /* isdigit, isalpha, isspace, ...: over the code points, as Python defines them */
        int any = 0, all = 1, cased = 0, upper = 0, lower = 0;
        for (size_t i = 0; i < s.u.s.n;) {
            uint32_t c = u8dec(s.u.s.p, s.u.s.n, &i);
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
                ok = cp_word(c) && c != '_';
            else if (streq(name, n, "isspace"))
                ok = py_space(c);
            else if (streq(name, n, "isascii"))
                ok = c < 0x80;
            else
                ok = 1;
            all &= ok;
            if (cp_cased(c)) {
                cased = 1;
                upper |= cp_lower(c) != c;
                lower |= cp_upper(c) != c;
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
    jfail(m, line, "str.%.*s() is not supported", (int)n, name);
}

static jv call_method(jm *m, jfn *f, jargs *a, int line)
{
    jv self = f->self;
    const char *name = f->name;
    size_t n = f->nn;
    if (self.t == V_STR)
        return str_method(m, self, name, n, a, line);
    if (self.t == V_DICT) {
        jdict *d = self.u.d;
        if (streq(name, n, "get")) {
            jv *k = arg(a, 0, NULL);
            if (!k)
                jfail(m, line, "get expected at least 1 argument, got 0");
            if (!hashable(*k))
                jfail(m, line, "unhashable type: '%s'", type_name(*k));
            long i = dict_find(m, d, *k);
            return i >= 0 ? d->v[i] : argv_or(a, 1, NULL, NONE);
        }
        if (streq(name, n, "items") || streq(name, n, "keys") || streq(name, n, "values")) {
            jlist *l = new_list(m, d->n);
            for (size_t i = 0; i < d->n; i++) {
                if (name[0] == 'k') {
                    list_push(m, l, d->k[i]);
                } else if (name[0] == 'v') {
                    list_push(m, l, d->v[i]);
                } else {
                    jlist *p = new_list(m, 2);
                    list_push(m, p, d->k[i]);
                    list_push(m, p, d->v[i]);
                    list_push(m, l, mk_list(p, SUB_TUPLE));
                }
            }
            return mk_list(l, name[0] == 'k' ? SUB_KEYS : name[0] == 'v' ? SUB_VALUES : SUB_ITEMS);
        }
        if (streq(name, n, "copy")) {
            jdict *c = new_dict(m);
            for (size_t i = 0; i < d->n; i++)
                dict_set(m, c, d->k[i], d->v[i]);
            return mk_dict(c, 0);
        }
    }
    if (self.t == V_LIST) {
        jlist *l = self.u.l;
        if (streq(name, n, "count") || streq(name, n, "index")) {
            jv *x = arg(a, 0, NULL);
            if (!x)
                jfail(m, line, "%.*s() takes exactly one argument", (int)n, name);
            int64_t k = 0;
            for (size_t i = 0; i < l->n; i++) {
                if (veq(m, l->v[i], *x)) {
                    if (name[0] == 'i')
                        return mk_int((int64_t)i);
                    k++;
                }
            }
            if (name[0] == 'i')
                jfail(m, line, "value is not in list");
            return mk_int(k);
        }
        if (streq(name, n, "copy"))
            return mk_list(l, 0);
    }
    if (self.t == V_LOOP && streq(name, n, "cycle")) {
        if (!a->np)
            jfail(m, line, "no items for cycling given");
        return a->pos[self.u.loop->i % (size_t)a->np];
    }
    jfail(m, line, "access to attribute '%.*s' of '%s' object is unsafe", (int)n, name,
          type_name(self));
}

/* ---- filters ---------------------------------------------------------------------- */

/* jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0. */
static jv attr_path(jm *m, jv item, jv attr, int line)
{
    if (attr.t != V_STR)
        return get_item(m, item, attr, line);
    const char *p = attr.u.s.p, *e = p + attr.u.s.n;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(e - p));
        const char *q = dot ? dot : e;
        int digits = q > p;
        for (const char *c = p; c < q; c++)
            digits &= is_digit(*c);
        jv key = mk_str(p, (size_t)(q - p));
        if (digits && q - p < 18)
            key = mk_int(strtoll(p, NULL, 10));
        item = get_item(m, item, key, line);
        if (!dot)
            return item;
        p = dot + 1;
    }
}

static jv lower_key(jm *m, jv v, int case_sensitive)
{
    return (!case_sensitive && v.t == V_STR) ? s_case(m, v, 0) : v;
}

/* Stable merge sort of items by keys, with Python's < (reverse keeps equal items in
 * their order, as sorted(reverse=True) does). */
static void sort_vals(jm *m, jv *items, jv *keys, size_t n, int reverse, int line)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    sort_vals(m, items, keys, h, reverse, line);
    sort_vals(m, items + h, keys + h, n - h, reverse, line);
    jv *ti = jalloc(m, mul_size(m, n, sizeof(jv))), *tk = jalloc(m, mul_size(m, n, sizeof(jv)));
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        /* jinja2 sorts by [key] lists, which compare equal items without '<' */
        int take_right = !veq(m, keys[i], keys[j]) &&
                         (reverse ? vorder(m, OP_LT, keys[i], keys[j], line)
                                  : vorder(m, OP_LT, keys[j], keys[i], line));
        size_t s = take_right ? j++ : i++;
        ti[k] = items[s];
        tk[k++] = keys[s];
    }
    while (i < h) {
        ti[k] = items[i];
        tk[k++] = keys[i++];
    }
    while (j < n) {
        ti[k] = items[j];
        tk[k++] = keys[j++];
    }
    memcpy(items, ti, n * sizeof(jv));
    memcpy(keys, tk, n * sizeof(jv));
}

static int run_test(jm *m, int id, const char *name, size_t nl, jv v, jargs *a, int line);
static jv apply_filter(jm *m, int id, const char *name, size_t nl, jv v, jargs *a, int line);

/* select / reject / selectattr / rejectattr */
static jv f_select(jm *m, jv seq, jargs *a, int with_attr, int keep, int line)
{
    jlist *in = iter_items(m, seq, line), *out = new_list(m, 0);
    int first = with_attr ? 1 : 0;
    jv *attr = with_attr ? arg(a, 0, NULL) : NULL;
    if (with_attr && !attr)
        jfail(m, line, "missing parameter for attribute name");
    jv *tn = arg(a, first, NULL);
    int tid = -1;
    if (tn) {
        need_str(m, tn, line, "test name");
        tid = name_index(test_names, TS_COUNT_, tn->u.s.p, tn->u.s.n);
        if (tid < 0)
            jfail(m, line, "no test named '%.*s'", (int)tn->u.s.n, tn->u.s.p);
    }
    jargs ta = {0};
    if (a->np > first + 1) {
        ta.pos = a->pos + first + 1;
        ta.np = a->np - first - 1;
    }
    for (size_t i = 0; i < in->n; i++) {
        jv x = attr ? attr_path(m, in->v[i], *attr, line) : in->v[i];
        int ok = tn ? run_test(m, tid, tn->u.s.p, tn->u.s.n, x, &ta, line) : truthy(x);
        if (ok == keep)
            list_push(m, out, in->v[i]);
    }
    return mk_list(out, SUB_GEN);
}

static jv html_escape(jm *m, jv s)
{
    sb b = {0};
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        switch (c) {
        case '&': sb_s(m, &b, "&amp;"); break;
        case '<': sb_s(m, &b, "&lt;"); break;
        case '>': sb_s(m, &b, "&gt;"); break;
        case '"': sb_s(m, &b, "&#34;"); break;
        case '\'': sb_s(m, &b, "&#39;"); break;
        default: sb_c(m, &b, c);
        }
    }
    return sb_val(&b);
}

/* Python's int(str, base) and float(str); 0 when the text is not a number. */
static int parse_pyint(jv s, int base, int64_t *out)
{
    jv t = s_strip(s, NONE, 3);
    const char *p = t.u.s.p, *e = p + t.u.s.n;
    int neg = 0;
    if (p < e && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p + 1 < e && *p == '0' &&
        ((base == 16 && (p[1] | 0x20) == 'x') || (base == 8 && (p[1] | 0x20) == 'o') ||
         (base == 2 && (p[1] | 0x20) == 'b'))) {
        p += 2;
        if (p < e && *p == '_')
            p++;
    }
    if (p >= e)
        return 0;
    uint64_t v = 0;
    int prev_us = 1;
    for (; p < e; p++) {
        if (*p == '_') {
            if (prev_us)
                return 0;
            prev_us = 1;
            continue;
        }
        int d = hexval(*p);
        if (d < 0 && ((*p | 0x20) >= 'g' && (*p | 0x20) <= 'z'))
            d = (*p | 0x20) - 'a' + 10;
        if (d < 0 || d >= base)
            return 0;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return 0;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = 0;
    }
    if (prev_us || v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

static int parse_pyfloat(jv s, double *out)
{
    jv t = s_strip(s, NONE, 3);
    char buf[128];
    size_t k = 0;
    const char *p = t.u.s.p, *e = p + t.u.s.n;
    if (t.u.s.n == 0 || t.u.s.n >= sizeof buf)
        return 0;
    const char *q = p;
    if (q < e && (*q == '+' || *q == '-'))
        q++;
    size_t rest = (size_t)(e - q);
    if ((rest == 3 && !strncasecmp(q, "inf", 3)) || (rest == 8 && !strncasecmp(q, "infinity", 8)) ||
        (rest == 3 && !strncasecmp(q, "nan", 3))) {
        memcpy(buf, p, (size_t)(e - p));
        buf[e - p] = '\0';
        *out = strtod(buf, NULL);
        return 1;
    }
    int digits = 0, prev_digit = 0;
    for (const char *c = p; c < e; c++) {
        if (*c == '_') {
            if (!prev_digit || c + 1 >= e || !is_digit(c[1]))
                return 0;
            continue;
        }
        if (!(is_digit(*c) || *c == '.' || *c == 'e' || *c == 'E' || *c == '+' || *c == '-'))
            return 0;
        digits |= is_digit(*c);
        prev_digit = is_digit(*c);
        buf[k++] = *c;
    }
    buf[k] = '\0';
    if (!digits)
        return 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == '\0';
}

static jv f_round(jm *m, jv v, jargs *a, int line)
{
    int64_t prec = int_arg(m, argv_or(a, 0, "precision", mk_int(0)), line, "precision");
    jv meth = argv_or(a, 1, "method", mk_str("common", 6));
    if (!is_num(v))
        jfail(m, line, "type %s doesn't define __round__ method", type_name(v));
    if (meth.t == V_STR && streq(meth.u.s.p, meth.u.s.n, "common")) {
        if (v.t != V_FLOAT)
            return mk_int(v.u.i);
        double x = v.u.f;
        if (!isfinite(x) || prec > 30)
            return v;
        if (prec < 0) {
            double p10 = pow(10.0, (double)-prec);
            return mk_float(nearbyint(x / p10) * p10);
        }
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x); /* correctly rounded, ties to even */
        return mk_float(strtod(buf, NULL));
    }
    int ceil_ = meth.t == V_STR && streq(meth.u.s.p, meth.u.s.n, "ceil");
    if (!ceil_ && !(meth.t == V_STR && streq(meth.u.s.p, meth.u.s.n, "floor")))
        jfail(m, line, "method must be common, ceil or floor");
    double p10 = pow(10.0, (double)prec), x = num_f(v) * p10;
    return mk_float((ceil_ ? ceil(x) : floor(x)) / p10);
}

static jv f_indent(jm *m, jv s, jargs *a, int line)
{
    jv w = argv_or(a, 0, "width", mk_int(4));
    int first = truthy(argv_or(a, 1, "first", mk_bool(0)));
    int blank = truthy(argv_or(a, 2, "blank", mk_bool(0)));
    sb ind = {0};
    if (w.t == V_STR)
        sb_put(m, &ind, w.u.s.p, w.u.s.n);
    else
        for (int64_t i = int_arg(m, w, line, "width"); i > 0; i--)
            sb_c(m, &ind, ' ');
    /* jinja2 appends "\n" and then uses str.splitlines(), so a trailing newline
     * yields one more (empty) line */
    sb t = {0};
    sb_put(m, &t, s.u.s.p, s.u.s.n);
    sb_c(m, &t, '\n');
    jargs none = {0};
    jlist *lines = str_method(m, sb_val(&t), "splitlines", 10, &none, line).u.l;
    sb b = {0};
    for (size_t i = 0; i < lines->n; i++) {
        jv l = lines->v[i];
        if (i)
            sb_c(m, &b, '\n');
        if ((i > 0 || first) && (blank || l.u.s.n))
            sb_put(m, &b, ind.p, ind.n);
        else if (i == 0 && first)
            sb_put(m, &b, ind.p, ind.n);
        sb_put(m, &b, l.u.s.p, l.u.s.n);
    }
    return sb_val(&b);
}

/* Python %-formatting for the format filter: %s %r %d %i %f %x %%, flags, width, .prec */
static jv f_format(jm *m, jv fmt, jargs *a, int line)
{
    sb b = {0};
    int ai = 0;
    const char *p = fmt.u.s.p, *e = p + fmt.u.s.n;
    while (p < e) {
        if (*p != '%') {
            sb_c(m, &b, *p++);
            continue;
        }
        const char *st = p++;
        while (p < e && strchr("-+ 0#", *p))
            p++;
        while (p < e && (is_digit(*p) || *p == '.'))
            p++;
        if (p >= e)
            jfail(m, line, "incomplete format");
        char conv = *p++;
        if (conv == '%') {
            sb_c(m, &b, '%');
            continue;
        }
        if (ai >= a->np)
            jfail(m, line, "not enough arguments for format string");
        jv v = a->pos[ai++];
        char spec[32], out[512];
        size_t sl = (size_t)(p - st - 1);
        if (sl > 20)
            jfail(m, line, "format specification too long");
        memcpy(spec, st, sl);
        if (conv == 's' || conv == 'r') {
            sb t = {0};
            if (conv == 's')
                put_str(m, &t, v);
            else
                put_repr(m, &t, v);
            spec[sl] = '\0';
            if (sl == 1) {
                sb_put(m, &b, t.p, t.n);
            } else {
                memcpy(spec + sl, ".*s", 4);
                snprintf(out, sizeof out, spec, (int)t.n, t.p ? t.p : "");
                sb_s(m, &b, out);
            }
        } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
            if (!is_num(v))
                jfail(m, line, "%%%c format: a real number is required, not %s", conv,
                      type_name(v));
            memcpy(spec + sl, "ll", 2);
            spec[sl + 2] = conv == 'i' ? 'd' : conv;
            spec[sl + 3] = '\0';
            snprintf(out, sizeof out, spec, (long long)(v.t == V_FLOAT ? (int64_t)v.u.f : v.u.i));
            sb_s(m, &b, out);
        } else if (conv == 'f' || conv == 'e' || conv == 'g' || conv == 'F' || conv == 'E') {
            if (!is_num(v))
                jfail(m, line, "must be real number, not %s", type_name(v));
            spec[sl] = conv;
            spec[sl + 1] = '\0';
            snprintf(out, sizeof out, spec, num_f(v));
            sb_s(m, &b, out);
        } else {
            jfail(m, line, "unsupported format character '%c'", conv);
        }
    }
    if (ai < a->np)
        jfail(m, line, "not all arguments converted during string formatting");
    return sb_val(&b);
}

static jv f_tojson(jm *m, jv v, jargs *a, int line)
{
    jsonopt o;
    memset(&o, 0, sizeof o);
    o.ensure_ascii = truthy(argv_or(a, 0, "ensure_ascii", mk_bool(0)));
    jv ind = argv_or(a, 1, "indent", NONE);
    jv seps = argv_or(a, 2, "separators", NONE);
    o.sort_keys = truthy(argv_or(a, 3, "sort_keys", mk_bool(0)));
    if (ind.t != V_NONE) {
        o.has_indent = 1;
        if (ind.t == V_STR) {
            o.indent = ind;
        } else {
            sb s = {0};
            for (int64_t i = int_arg(m, ind, line, "indent"); i > 0; i--)
                sb_c(m, &s, ' ');
            o.indent = sb_val(&s);
        }
    }
    o.item_sep = o.has_indent ? mk_str(",", 1) : mk_str(", ", 2);
    o.key_sep = mk_str(": ", 2);
    if (seps.t != V_NONE) {
        if (seps.t != V_LIST || seps.u.l->n != 2 || seps.u.l->v[0].t != V_STR ||
            seps.u.l->v[1].t != V_STR)
            jfail(m, line, "tojson: separators must be a pair of strings");
        o.item_sep = seps.u.l->v[0];
        o.key_sep = seps.u.l->v[1];
    }
    sb b = {0};
    put_json(m, &b, v, &o, 0, line);
    return sb_val(&b);
}

/* jinja2's select, reject, selectattr, rejectattr, map, unique and items filters are
 * Python generators: they run, and fail, only when something iterates them. */
struct lazy {
    int id, line;
    jv in;
    jargs args;
};

static jv gen_filter(jm *m, int id, jv v, jargs *a, int line);

static jlist *gen_force(jm *m, const struct lazy *z)
{
    jargs a = z->args;
    return gen_filter(m, z->id, z->in, &a, z->line).u.l;
}

static int is_gen_filter(int id)
{
    return id == F_SELECT || id == F_REJECT || id == F_SELECTATTR || id == F_REJECTATTR ||
           id == F_MAP || id == F_UNIQUE || id == F_ITEMS;
}

/* One case per filter, each following jinja2's implementation (jinja2/filters.py); the
 * function is long because it is a table. */
static jv apply_filter(jm *m, int id, const char *name, size_t nl, jv v, jargs *a, int line)
{
    if (is_gen_filter(id)) {
        struct lazy *z = jalloc(m, sizeof *z);
        z->id = id;
        z->line = line;
        z->in = v;
        z->args = *a;
        jlist *l = new_list(m, 0);
        l->lazy = z;
        return mk_list(l, SUB_GEN);
    }
    switch (id) {
    case F_ABS:
        if (v.t == V_FLOAT)
            return mk_float(fabs(v.u.f));
        if (v.t == V_INT || v.t == V_BOOL) {
            if (v.u.i == INT64_MIN)
                jfail(m, line, "integer overflow");
            return mk_int(v.u.i < 0 ? -v.u.i : v.u.i);
        }
        jfail(m, line, "bad operand type for abs(): '%s'", type_name(v));
    case F_ATTR: {
        jv nm = to_str(m, argv_or(a, 0, "name", mk_str("", 0)));
        if (v.t == V_DICT && !in_names(dict_methods, nm.u.s.p, nm.u.s.n))
            return mk_undef(nm.u.s.p, nm.u.s.n);
        return get_attr(m, v, nm.u.s.p, nm.u.s.n, line);
    }
    case F_CAPITALIZE: return s_case(m, to_str(m, v), 2);
    case F_CENTER: {
        jv s = to_str(m, v);
        int64_t w = int_arg(m, argv_or(a, 0, "width", mk_int(80)), line, "width");
        int64_t len = (int64_t)u8len(s.u.s.p, s.u.s.n);
        if (w <= len)
            return s;
        if (w > (int64_t)m->max_output)
            jnomem(m);
        int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
        sb b = {0};
        for (int64_t i = 0; i < pad; i++) {
            if (i == left)
                sb_put(m, &b, s.u.s.p, s.u.s.n);
            sb_c(m, &b, ' ');
        }
        if (left == pad)
            sb_put(m, &b, s.u.s.p, s.u.s.n);
        return sb_val(&b);
    }
    case F_COUNT:
    case F_LENGTH:
        switch (v.t) {
        case V_UNDEF: return mk_int(0);
        case V_STR: return mk_int((int64_t)u8len(v.u.s.p, v.u.s.n));
        case V_LIST:
            if (v.sub == SUB_GEN)
                break;
            return mk_int((int64_t)v.u.l->n);
        case V_DICT: return mk_int((int64_t)v.u.d->n);
        default: break;
        }
        jfail(m, line, "object of type '%s' has no len()", type_name(v));
    case F_D:
    case F_DEFAULT: {
        int boolean = truthy(argv_or(a, 1, "boolean", mk_bool(0)));
        if (v.t == V_UNDEF || (boolean && !truthy(v)))
            return argv_or(a, 0, "default_value", mk_str("", 0));
        return v;
    }
    case F_DICTSORT: {
        if (v.t != V_DICT)
            jfail(m, line, "dictsort needs a mapping, not %s", type_name(v));
        int cs = truthy(argv_or(a, 0, "case_sensitive", mk_bool(0)));
        jv by = argv_or(a, 1, "by", mk_str("key", 3));
        int rev = truthy(argv_or(a, 2, "reverse", mk_bool(0)));
        int pos = by.t == V_STR && streq(by.u.s.p, by.u.s.n, "value");
        if (!pos && !(by.t == V_STR && streq(by.u.s.p, by.u.s.n, "key")))
            jfail(m, line, "You can only sort by either \"key\" or \"value\"");
        size_t n = v.u.d->n;
        jv *items = jalloc(m, mul_size(m, n + 1, sizeof(jv)));
        jv *keys = jalloc(m, mul_size(m, n + 1, sizeof(jv)));
        for (size_t i = 0; i < n; i++) {
            jlist *p = new_list(m, 2);
            list_push(m, p, v.u.d->k[i]);
            list_push(m, p, v.u.d->v[i]);
            items[i] = mk_list(p, 1);
            keys[i] = lower_key(m, pos ? v.u.d->v[i] : v.u.d->k[i], cs);
        }
        sort_vals(m, items, keys, n, rev, line);
        jlist *l = new_list(m, n);
        for (size_t i = 0; i < n; i++)
            list_push(m, l, items[i]);
        return mk_list(l, 0);
    }
    case F_E:
    case F_ESCAPE: return html_escape(m, to_str(m, v));
    case F_FIRST:
    case F_LAST: {
        jlist *l = iter_items(m, v, line);
        if (!l->n)
            return mk_undef("", 0);
        return l->v[id == F_FIRST ? 0 : l->n - 1];
    }
    case F_FLOAT: {
        jv def = argv_or(a, 0, "default", mk_float(0.0));
        double f;
        if (v.t == V_UNDEF)
            fail_undef(m, line, v);
        if (is_num(v))
            return mk_float(num_f(v));
        if (v.t == V_STR && parse_pyfloat(v, &f))
            return mk_float(f);
        return def;
    }
    case F_FORMAT: return f_format(m, to_str(m, v), a, line);
    case F_INDENT:
        /* jinja2 appends "\n" to the value itself, so only strings work */
        if (v.t == V_UNDEF)
            fail_undef(m, line, v);
        if (v.t != V_STR)
            jfail(m, line, "unsupported operand type(s) for +=: '%s' and 'str'", type_name(v));
        return f_indent(m, v, a, line);
    case F_INT: {
        jv def = argv_or(a, 0, "default", mk_int(0));
        int64_t base = int_arg(m, argv_or(a, 1, "base", mk_int(10)), line, "base"), i;
        double f;
        if (v.t == V_UNDEF)
            fail_undef(m, line, v);
        if (v.t == V_INT || v.t == V_BOOL)
            return mk_int(v.u.i);
        if (v.t == V_STR && base >= 2 && base <= 36 && parse_pyint(v, (int)base, &i))
            return mk_int(i);
        if (v.t == V_FLOAT)
            f = v.u.f;
        else if (!(v.t == V_STR && parse_pyfloat(v, &f)))
            return def;
        if (!isfinite(f) || fabs(f) >= 9.2e18)
            return def;
        return mk_int((int64_t)f);
    }
    case F_JOIN: {
        jv d = to_str(m, argv_or(a, 0, "d", mk_str("", 0)));
        jv *attr = arg(a, 1, "attribute");
        jlist *l = iter_items(m, v, line);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                sb_put(m, &b, d.u.s.p, d.u.s.n);
            put_str(m, &b, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i]);
        }
        return sb_val(&b);
    }
    case F_LIST: {
        jlist *l = iter_items(m, v, line), *c = new_list(m, l->n);
        for (size_t i = 0; i < l->n; i++)
            list_push(m, c, l->v[i]);
        return mk_list(c, 0);
    }
    case F_LOWER: return s_case(m, to_str(m, v), 0);
    case F_UPPER: return s_case(m, to_str(m, v), 1);
    case F_MAX:
    case F_MIN: {
        int cs = truthy(argv_or(a, 0, "case_sensitive", mk_bool(0)));
        jv *attr = arg(a, 1, "attribute");
        jlist *l = iter_items(m, v, line);
        if (!l->n)
            return mk_undef("", 0);
        size_t best = 0;
        jv bk = lower_key(m, attr ? attr_path(m, l->v[0], *attr, line) : l->v[0], cs);
        for (size_t i = 1; i < l->n; i++) {
            jv k = lower_key(m, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], cs);
            if (vorder(m, OP_LT, id == F_MAX ? bk : k, id == F_MAX ? k : bk, line)) {
                best = i;
                bk = k;
            }
        }
        return l->v[best];
    }
    case F_REPLACE: {
        jv *o0 = arg(a, 0, "old"), *w0 = arg(a, 1, "new");
        if (!o0 || !w0)
            jfail(m, line, "replace() needs the arguments 'old' and 'new'");
        jv o = to_str(m, *o0), w = to_str(m, *w0);
        jv c = argv_or(a, 2, "count", NONE);
        return s_replace(m, to_str(m, v), o, w, c.t == V_NONE ? -1 : int_arg(m, c, line, "count"));
    }
    case F_REVERSE: {
        if (v.t == V_STR) {
            size_t cnt, *off = cp_offsets(m, v.u.s.p, v.u.s.n, &cnt);
            sb b = {0};
            for (size_t i = cnt; i-- > 0;)
                sb_put(m, &b, v.u.s.p + off[i], off[i + 1] - off[i]);
            return sb_val(&b);
        }
        jlist *l = iter_items(m, v, line), *r = new_list(m, l->n);
        for (size_t i = l->n; i-- > 0;)
            list_push(m, r, l->v[i]);
        return mk_list(r, SUB_GEN); /* reversed(): an iterator */
    }
    case F_ROUND: return f_round(m, v, a, line);
    case F_SAFE:
    case F_STRING: return to_str(m, v);
    case F_SORT: {
        int rev = truthy(argv_or(a, 0, "reverse", mk_bool(0)));
        int cs = truthy(argv_or(a, 1, "case_sensitive", mk_bool(0)));
        jv *attr = arg(a, 2, "attribute");
        jlist *l = iter_items(m, v, line);
        size_t n = l->n;
        jv *items = jalloc(m, mul_size(m, n + 1, sizeof(jv)));
        jv *keys = jalloc(m, mul_size(m, n + 1, sizeof(jv)));
        for (size_t i = 0; i < n; i++) {
            items[i] = l->v[i];
            keys[i] = lower_key(m, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], cs);
        }
        sort_vals(m, items, keys, n, rev, line);
        jlist *r = new_list(m, n);
        for (size_t i = 0; i < n; i++)
            list_push(m, r, items[i]);
        return mk_list(r, 0);
    }
    case F_SUM: {
        jv *attr = arg(a, 0, "attribute");
        jv acc = argv_or(a, 1, "start", mk_int(0));
        jlist *l = iter_items(m, v, line);
        for (size_t i = 0; i < l->n; i++)
            acc = arith(m, OP_ADD, acc, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], line);
        return acc;
    }
    case F_TITLE: {
        /* jinja2 capitalizes each word split at runs of [-\s({[<] */
        jv s = to_str(m, v);
        sb b = {0};
        int at_start = 1;
        for (size_t i = 0; i < s.u.s.n;) {
            uint32_t c = u8dec(s.u.s.p, s.u.s.n, &i);
            int sep = py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
            sb_cp(m, &b, sep ? c : at_start ? cp_upper(c) : cp_lower(c));
            at_start = sep;
        }
        return sb_val(&b);
    }
    case F_TOJSON: return f_tojson(m, v, a, line);
    case F_TRIM: {
        jv ch = argv_or(a, 0, "chars", NONE);
        if (ch.t != V_NONE)
            need_str(m, &ch, line, "chars");
        return s_strip(to_str(m, v), ch, 3);
    }
    case F_TRUNCATE: {
        /* jinja2 measures the value itself; only strings get cut */
        int64_t len = int_arg(m, argv_or(a, 0, "length", mk_int(255)), line, "length");
        int killwords = truthy(argv_or(a, 1, "killwords", mk_bool(0)));
        jv end = to_str(m, argv_or(a, 2, "end", mk_str("...", 3)));
        jv lw = argv_or(a, 3, "leeway", NONE);
        int64_t leeway = lw.t == V_NONE ? 5 : int_arg(m, lw, line, "leeway");
        int64_t endn = (int64_t)u8len(end.u.s.p, end.u.s.n);
        if (len < endn)
            jfail(m, line, "expected length >= %lld, got %lld", (long long)endn, (long long)len);
        if (leeway < 0)
            jfail(m, line, "expected leeway >= 0, got %lld", (long long)leeway);
        if (v.t == V_UNDEF)
            return v;
        if ((v.t == V_LIST && v.sub != SUB_GEN) || v.t == V_DICT) {
            int64_t n = v.t == V_DICT ? (int64_t)v.u.d->n : (int64_t)v.u.l->n;
            if (n <= len + leeway)
                return v;
            jfail(m, line, "'%s' object has no attribute 'rsplit'", type_name(v));
        }
        if (v.t != V_STR)
            jfail(m, line, "object of type '%s' has no len()", type_name(v));
        size_t cnt, *off = cp_offsets(m, v.u.s.p, v.u.s.n, &cnt);
        if ((int64_t)cnt <= len + leeway)
            return v;
        size_t cut = off[len - endn];
        if (!killwords) { /* drop the last, cut word: up to the last space */
            for (size_t i = cut; i-- > 0;) {
                if (v.u.s.p[i] == ' ') {
                    cut = i;
                    break;
                }
            }
        }
        sb b = {0};
        sb_put(m, &b, v.u.s.p, cut);
        sb_put(m, &b, end.u.s.p, end.u.s.n);
        return sb_val(&b);
    }
    case F_WORDCOUNT: {
        jv s = to_str(m, v);
        int64_t k = 0;
        int in = 0;
        for (size_t i = 0; i < s.u.s.n;) {
            int w = cp_word(u8dec(s.u.s.p, s.u.s.n, &i));
            k += w && !in;
            in = w;
        }
        return mk_int(k);
    }
    default:
        jfail(m, line, "no filter named '%.*s'", (int)nl, name);
    }
}

/* The items of a generator filter, computed when it is iterated. */
static jv gen_filter(jm *m, int id, jv v, jargs *a, int line)
{
    switch (id) {
    case F_REJECT: return f_select(m, v, a, 0, 0, line);
    case F_SELECT: return f_select(m, v, a, 0, 1, line);
    case F_REJECTATTR: return f_select(m, v, a, 1, 0, line);
    case F_SELECTATTR: return f_select(m, v, a, 1, 1, line);
    case F_MAP: {
        jlist *l = iter_items(m, v, line), *out = new_list(m, l->n);
        jv *attr = arg(a, -1, "attribute");
        if (attr) {
            jv *def = arg(a, -1, "default");
            for (size_t i = 0; i < l->n; i++) {
                jv x = attr_path(m, l->v[i], *attr, line);
                list_push(m, out, (x.t == V_UNDEF && def) ? *def : x);
            }
            return mk_list(out, SUB_GEN);
        }
        jv fname = need_str(m, arg(a, 0, NULL), line, "map filter name");
        int fid = name_index(filter_names, F_COUNT_, fname.u.s.p, fname.u.s.n);
        if (fid < 0)
            jfail(m, line, "no filter named '%.*s'", (int)fname.u.s.n, fname.u.s.p);
        jargs rest = *a;
        rest.pos++;
        rest.np--;
        for (size_t i = 0; i < l->n; i++)
            list_push(m, out, apply_filter(m, fid, fname.u.s.p, fname.u.s.n, l->v[i], &rest, line));
        return mk_list(out, SUB_GEN);
    }
    case F_UNIQUE: {
        int cs = truthy(argv_or(a, 0, "case_sensitive", mk_bool(0)));
        jv *attr = arg(a, 1, "attribute");
        jlist *l = iter_items(m, v, line), *out = new_list(m, 0), *seen = new_list(m, 0);
        for (size_t i = 0; i < l->n; i++) {
            jv k = lower_key(m, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], cs);
            if (!hashable(k))
                jfail(m, line, "unhashable type: '%s'", type_name(k));
            if (!vcontains(m, mk_list(seen, 0), k, line)) {
                list_push(m, seen, k);
                list_push(m, out, l->v[i]);
            }
        }
        return mk_list(out, SUB_GEN);
    }
    case F_ITEMS: {
        if (v.t == V_UNDEF)
            return mk_list(new_list(m, 0), SUB_GEN);
        if (v.t != V_DICT)
            jfail(m, line, "Can only get item pairs from a mapping.");
        jfn f = {FN_METHOD, 0, NULL, NULL, v, "items", 5};
        jargs none = {0};
        jv r = call_method(m, &f, &none, line);
        r.sub = SUB_GEN;
        return r;
    }
    default:
        jfail(m, line, "internal error: not a generator filter");
    }
}

/* ---- tests ------------------------------------------------------------------------ */

static int run_test(jm *m, int id, const char *name, size_t nl, jv v, jargs *a, int line)
{
    jv *x = arg(a, 0, NULL);
    switch (id) {
    case TS_BOOLEAN: return v.t == V_BOOL;
    case TS_CALLABLE: return v.t == V_FN || v.t == V_UNDEF; /* Undefined has __call__ */
    case TS_DEFINED: return v.t != V_UNDEF;
    case TS_UNDEFINED: return v.t == V_UNDEF;
    case TS_NONE: return v.t == V_NONE;
    case TS_TRUE: return v.t == V_BOOL && v.u.i;
    case TS_FALSE: return v.t == V_BOOL && !v.u.i;
    case TS_STRING: return v.t == V_STR;
    case TS_NUMBER: return is_num(v);
    case TS_INTEGER: return v.t == V_INT;
    case TS_FLOAT: return v.t == V_FLOAT;
    case TS_MAPPING: return v.t == V_DICT;
    case TS_ITERABLE: return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    case TS_SEQUENCE:
        return v.t == V_STR || (v.t == V_LIST && v.sub <= SUB_TUPLE) || v.t == V_DICT ||
               v.t == V_UNDEF;
    case TS_ESCAPED: return 0;
    case TS_FILTER:
    case TS_TEST:
        if (v.t != V_STR)
            return 0;
        return name_index(id == TS_FILTER ? filter_names : test_names,
                          id == TS_FILTER ? F_COUNT_ : TS_COUNT_, v.u.s.p, v.u.s.n) >= 0;
    case TS_LOWER:
    case TS_UPPER: {
        jv s = to_str(m, v);
        jargs none = {0};
        return truthy(str_method(m, s, id == TS_LOWER ? "islower" : "isupper", 7, &none, line));
    }
    case TS_EVEN:
    case TS_ODD: {
        jv r = arith(m, OP_MOD, v, mk_int(2), line);
        return num_f(r) == (id == TS_ODD ? 1 : 0);
    }
    default:
        break;
    }
    if (!x)
        jfail(m, line, "test '%.*s' needs an argument", (int)nl, name);
    switch (id) {
    case TS_DIVISIBLEBY: return num_f(arith(m, OP_MOD, v, *x, line)) == 0;
    case TS_EQ: case TS_EQUALTO: case TS_EQSIGN: return veq(m, v, *x);
    case TS_NE: case TS_NESIGN: return !veq(m, v, *x);
    case TS_LT: case TS_LTSIGN: case TS_LESSTHAN: return vorder(m, OP_LT, v, *x, line);
    case TS_LE: case TS_LESIGN: return vorder(m, OP_LE, v, *x, line);
    case TS_GT: case TS_GTSIGN: case TS_GREATERTHAN: return vorder(m, OP_GT, v, *x, line);
    case TS_GE: case TS_GESIGN: return vorder(m, OP_GE, v, *x, line);
    case TS_IN: return vcontains(m, *x, v, line);
    case TS_SAMEAS:
        if (v.t != x->t)
            return 0;
        if (v.t == V_LIST)
            return v.u.l == x->u.l;
        if (v.t == V_DICT || v.t == V_NS)
            return v.u.d == x->u.d;
        return veq(m, v, *x);
    default:
        jfail(m, line, "no test named '%.*s'", (int)nl, name);
    }
}

/* ---- calls ---------------------------------------------------------------------- */

static _Thread_local int64_t fixed_time = -1;

void llm__jinja_fix_time(int64_t t)
{
    fixed_time = t;
}

static int ex_body(jm *m, node **body, int n, scope *sc);

/* Output written by `fn` while it runs, taken back out of the output buffer. */
static jv capture(jm *m, node **body, int n, scope *sc)
{
    size_t start = m->on;
    ex_body(m, body, n, sc);
    jv s = mk_str(jstrdup(m, m->out + start, m->on - start), m->on - start);
    m->on = start;
    return s;
}

static jv call_macro(jm *m, jfn *f, jargs *a, int line)
{
    const node *mac = f->macro;
    scope *s = new_scope(m, f->closure);
    if (a->np > mac->nk)
        jfail(m, line, "macro '%.*s' takes not more than %d argument(s)", (int)mac->sn, mac->s,
              mac->nk);
    for (int k = 0; k < a->nk; k++) {
        int found = 0;
        for (int i = 0; i < mac->nk; i++)
            found |= mac->kids[i]->sn == a->kn[k]->sn &&
                     !memcmp(mac->kids[i]->s, a->kn[k]->s, a->kn[k]->sn);
        if (!found)
            jfail(m, line, "macro '%.*s' takes no keyword argument '%.*s'", (int)mac->sn,
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

static jv call_builtin(jm *m, jfn *f, jargs *a, int line)
{
    switch (f->builtin) {
    case G_RANGE: {
        if (a->np < 1 || a->np > 3 || a->nk)
            jfail(m, line, "range expected 1 to 3 integer arguments");
        int64_t st = 0, en, step = 1;
        if (a->np == 1) {
            en = int_arg(m, a->pos[0], line, "range argument");
        } else {
            st = int_arg(m, a->pos[0], line, "range argument");
            en = int_arg(m, a->pos[1], line, "range argument");
            if (a->np == 3)
                step = int_arg(m, a->pos[2], line, "range argument");
        }
        if (step == 0)
            jfail(m, line, "range() arg 3 must not be zero");
        double cnt = step > 0 ? ceil(((double)en - (double)st) / (double)step)
                              : ceil(((double)st - (double)en) / (double)-step);
        if (cnt > MAX_RANGE)
            jfail(m, line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
                  MAX_RANGE);
        jlist *l = new_list(m, cnt > 0 ? (size_t)cnt : 0);
        for (int64_t i = st; step > 0 ? i < en : i > en; i += step)
            list_push(m, l, mk_int(i));
        return mk_list(l, 0);
    }
    case G_NAMESPACE:
    case G_DICT: {
        jdict *d = new_dict(m);
        for (int i = 0; i < a->np; i++) {
            if (a->pos[i].t != V_DICT && a->pos[i].t != V_NS)
                jfail(m, line, "%s() takes mappings and keyword arguments", global_names[f->builtin]);
            for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                dict_set(m, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]);
        }
        for (int k = 0; k < a->nk; k++)
            dict_set(m, d, mk_str(a->kn[k]->s, a->kn[k]->sn), a->kv[k]);
        return mk_dict(d, f->builtin == G_NAMESPACE);
    }
    case G_RAISE: {
        jv msg = to_str(m, argv_or(a, 0, "message", mk_str("", 0)));
        jfail(m, line, "%.*s", (int)(msg.u.s.n > 700 ? 700 : msg.u.s.n), msg.u.s.p);
    }
    case G_STRFTIME: {
        jv fmt = need_str(m, arg(a, 0, NULL), line, "strftime_now format");
        struct tm tmv;
        time_t now = fixed_time >= 0 ? (time_t)fixed_time : time(NULL);
        if (fixed_time >= 0)
            gmtime_r(&now, &tmv);
        else
            localtime_r(&now, &tmv);
        char *z = jstrdup(m, fmt.u.s.p, fmt.u.s.n);
        for (size_t cap = 256; cap <= 65536; cap *= 4) {
            char *buf = jalloc(m, cap);
            size_t k = strftime(buf, cap, z, &tmv);
            if (k > 0 || fmt.u.s.n == 0)
                return mk_str(buf, k);
        }
        return mk_str("", 0);
    }
    default:
        jfail(m, line, "unknown function");
    }
}

static jv call(jm *m, jv fn, jargs *a, int line)
{
    if (fn.t == V_UNDEF)
        fail_undef(m, line, fn);
    if (fn.t != V_FN)
        jfail(m, line, "'%s' object is not callable", type_name(fn));
    jfn *f = fn.u.fn;
    if (f->kind == FN_MACRO)
        return call_macro(m, f, a, line);
    if (f->kind == FN_BUILTIN)
        return call_builtin(m, f, a, line);
    return call_method(m, f, a, line);
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
 * do_slice), so such expressions are evaluated both ways here. */
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
    enter(m, x->line);
    switch (x->k) {
    case N_CONST: r = x->val; break;
    case N_NAME: r = lookup(m, sc, x->s, x->sn); break;
    case N_PLACEHOLDER: r = m->placeholder; break;
    case N_LIST:
    case N_TUPLE: {
        jlist *l = new_list(m, (size_t)x->nk);
        for (int i = 0; i < x->nk; i++)
            list_push(m, l, ev(m, x->kids[i], sc));
        r = mk_list(l, x->k == N_TUPLE);
        break;
    }
    case N_DICT: {
        jdict *d = new_dict(m);
        for (int i = 0; i < x->nk; i++) {
            jv k = ev(m, x->kids[i], sc);
            if (!hashable(k))
                jfail(m, x->line, "unhashable type: '%s'", type_name(k));
            dict_set(m, d, k, ev(m, x->kids2[i], sc));
        }
        r = mk_dict(d, 0);
        break;
    }
    case N_ATTR: r = get_attr(m, ev(m, x->a, sc), x->s, x->sn, x->line); break;
    case N_ITEM:
        a = ev(m, x->a, sc);
        r = get_item(m, a, ev(m, x->b, sc), x->line);
        break;
    case N_SLICE: {
        a = ev(m, x->a, sc);
        jv s0 = x->b ? ev(m, x->b, sc) : NONE, s1 = x->c ? ev(m, x->c, sc) : NONE;
        jv s2 = x->d ? ev(m, x->d, sc) : NONE;
        r = do_slice(m, a, s0, s1, s2, x->line, m->folding);
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
        r = apply_filter(m, x->id, x->s, x->sn, a, &args, x->line);
        break;
    case N_TEST:
        a = ev(m, x->a, sc);
        eval_args(m, x->kids, x->nk, sc, &args);
        r = mk_bool(run_test(m, x->id, x->s, x->sn, a, &args, x->line) != x->flag);
        break;
    case N_NEG:
    case N_POS:
        a = ev(m, x->a, sc);
        if (a.t == V_UNDEF)
            fail_undef(m, x->line, a);
        if (!is_num(a))
            jfail(m, x->line, "bad operand type for unary %c: '%s'", x->k == N_NEG ? '-' : '+',
                  type_name(a));
        if (x->k == N_POS)
            r = a.t == V_FLOAT ? a : mk_int(a.u.i);
        else if (a.t == V_FLOAT)
            r = mk_float(-a.u.f);
        else if (a.u.i == INT64_MIN)
            jfail(m, x->line, "integer overflow");
        else
            r = mk_int(-a.u.i);
        break;
    case N_BIN:
        a = ev(m, x->a, sc);
        r = arith(m, x->op, a, ev(m, x->b, sc), x->line);
        break;
    case N_AND:
        a = ev(m, x->a, sc);
        r = truthy(a) ? ev(m, x->b, sc) : a;
        break;
    case N_OR:
        a = ev(m, x->a, sc);
        r = truthy(a) ? a : ev(m, x->b, sc);
        break;
    case N_NOT: r = mk_bool(!truthy(ev(m, x->a, sc))); break;
    case N_CMP: {
        a = ev(m, x->a, sc);
        int ok = 1;
        for (int i = 0; ok && i < x->nk; i++) {
            const node *o = x->kids[i];
            b = ev(m, o->a, sc);
            switch (o->op) {
            case OP_EQ: ok = veq(m, a, b); break;
            case OP_NE: ok = !veq(m, a, b); break;
            case OP_IN: ok = vcontains(m, b, a, o->line); break;
            case OP_NOTIN: ok = !vcontains(m, b, a, o->line); break;
            default: ok = vorder(m, o->op, a, b, o->line); break;
            }
            a = b;
        }
        r = mk_bool(ok);
        break;
    }
    case N_COND:
        if (truthy(ev(m, x->a, sc)))
            r = ev(m, x->b, sc);
        else
            r = x->c ? ev(m, x->c, sc) : mk_undef("", 0);
        break;
    case N_CONCAT: {
        sb s = {0};
        for (int i = 0; i < x->nk; i++)
            put_str(m, &s, ev(m, x->kids[i], sc));
        r = sb_val(&s);
        break;
    }
    default:
        jfail(m, x->line, "internal error: bad expression node %d", x->k);
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
        jfail(m, 0, "output exceeds %zu bytes", m->max_output);
    if (n > m->ocap - m->on) {
        size_t cap = m->ocap ? m->ocap : 4096;
        while (cap - m->on < n)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *p = llm__realloc(m->out, cap);
        if (!p)
            jnomem(m);
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
        jlist *l = iter_items(m, v, t->line);
        if (l->n != (size_t)t->nk)
            jfail(m, t->line, "%s values to unpack (expected %d, got %zu)",
                  l->n > (size_t)t->nk ? "too many" : "not enough", t->nk, l->n);
        for (int i = 0; i < t->nk; i++)
            assign(m, t->kids[i], l->v[i], sc);
    } else { /* ns.attr */
        jv ns = lookup(m, sc, t->a->s, t->a->sn);
        if (ns.t != V_NS)
            jfail(m, t->line, "cannot assign attribute on non-namespace object");
        dict_set(m, ns.u.d, mk_str(t->s, t->sn), v);
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
    jlist *items = iter_items(m, ev(m, x->b, sc), x->line);
    if (x->c) { /* loop filter: {% for a in b if cond %} */
        jlist *kept = new_list(m, 0);
        for (size_t i = 0; i < items->n; i++) {
            scope *s = new_scope(m, sc);
            assign(m, x->a, items->v[i], s);
            if (truthy(ev(m, x->c, s)))
                list_push(m, kept, items->v[i]);
        }
        items = kept;
    }
    int completed = 0;
    jloop *L = jalloc(m, sizeof *L);
    L->items = items;
    jv lv = {V_LOOP, 0, {0}};
    lv.u.loop = L;
    for (size_t i = 0; i < items->n; i++) {
        if (++m->steps > m->max_steps)
            jfail(m, x->line, "template ran too long (more than %llu steps)",
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
        jfail(m, x->line, "template ran too long (more than %llu steps)",
              (unsigned long long)m->max_steps);
    enter(m, x->line);
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
            put_str(m, &s, v);
            out_put(m, s.p, s.n);
        }
        break;
    }
    case S_IF:
        if (truthy(ev(m, x->a, sc)))
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
        jv f = mk_fn(m, FN_MACRO, x->s, x->sn);
        f.u.fn->macro = x;
        f.u.fn->closure = sc;
        scope_set(m, sc, x->s, x->sn, f);
        break;
    }
    case S_BREAK: ctl = CTL_BREAK; break;
    case S_CONTINUE: ctl = CTL_CONTINUE; break;
    case S_FILTERBLOCK: {
        jv v = to_str(m, run_filters(m, x->c, capture(m, x->kids, x->nk, new_scope(m, sc)), sc));
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
    default: jfail(m, x->line, "internal error: bad statement node %d", x->k);
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
    char *s = jalloc(m, len + 1);
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

static llm__jinja_val *ctx_val(llm__jinja_ctx *c, jv v)
{
    llm__jinja_val *r = arena_alloc(&c->ar, sizeof *r);
    if (r)
        r->v = v;
    return r;
}

llm__jinja_val *llm__jinja_none(llm__jinja_ctx *c) { return ctx_val(c, NONE); }
llm__jinja_val *llm__jinja_bool(llm__jinja_ctx *c, int b) { return ctx_val(c, mk_bool(b)); }
llm__jinja_val *llm__jinja_int(llm__jinja_ctx *c, int64_t i) { return ctx_val(c, mk_int(i)); }
llm__jinja_val *llm__jinja_float(llm__jinja_ctx *c, double f) { return ctx_val(c, mk_float(f)); }

llm__jinja_val *llm__jinja_str(llm__jinja_ctx *c, const char *s, size_t n, int borrow)
{
    if (!s)
        s = "", n = 0;
    if (borrow)
        return ctx_val(c, mk_str(s, n));
    char *p = arena_alloc(&c->ar, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return ctx_val(c, mk_str(p, n));
}

llm__jinja_val *llm__jinja_list(llm__jinja_ctx *c)
{
    jlist *l = arena_alloc(&c->ar, sizeof *l);
    if (!l)
        return NULL;
    memset(l, 0, sizeof *l);
    return ctx_val(c, mk_list(l, 0));
}

llm__jinja_val *llm__jinja_dict(llm__jinja_ctx *c)
{
    jdict *d = arena_alloc(&c->ar, sizeof *d);
    if (!d)
        return NULL;
    memset(d, 0, sizeof *d);
    return ctx_val(c, mk_dict(d, 0));
}

/* A machine over the context's arena, for the builders' error path. */
static jm *ctx_machine(llm__jinja_ctx *c)
{
    jm *m = llm__calloc(1, sizeof *m);
    if (m)
        m->ar = &c->ar;
    return m;
}

static llm_status ctx_done(jm *m, int failed)
{
    llm_status st = failed ? llm__fail(m->st, "template: %s", m->msg) : LLM_OK;
    llm__free(m);
    return st;
}

#define CTX_TRY(c, m)                                                                    \
    jm *m = ctx_machine(c);                                                              \
    if (!m)                                                                              \
        return llm__fail(LLM_ERR_NO_MEMORY, "template: out of memory");                 \
    if (setjmp(m->jb))                                                                   \
        return ctx_done(m, 1);

llm_status llm__jinja_list_push(llm__jinja_ctx *c, llm__jinja_val *list, const llm__jinja_val *v)
{
    if (!c || !list || !v || list->v.t != V_LIST)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: list_push needs a list and a value");
    CTX_TRY(c, m)
    list_push(m, list->v.u.l, v->v);
    return ctx_done(m, 0);
}

llm_status llm__jinja_dict_set(llm__jinja_ctx *c, llm__jinja_val *dict, const char *key,
                               const llm__jinja_val *v)
{
    if (!c || !dict || !key || !v || dict->v.t != V_DICT)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: dict_set needs a dict, key and value");
    CTX_TRY(c, m)
    dict_set(m, dict->v.u.d, mk_str(jstrdup(m, key, strlen(key)), strlen(key)), v->v);
    return ctx_done(m, 0);
}

llm_status llm__jinja_set(llm__jinja_ctx *c, const char *name, const llm__jinja_val *v)
{
    if (!c || !name || !v)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: set needs a name and a value");
    CTX_TRY(c, m)
    dict_set(m, &c->globals, mk_str(jstrdup(m, name, strlen(name)), strlen(name)), v->v);
    return ctx_done(m, 0);
}

llm_status llm__jinja_set_all(llm__jinja_ctx *c, const llm__jinja_val *dict)
{
    if (!c || !dict || dict->v.t != V_DICT)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: set_all needs a dict");
    CTX_TRY(c, m)
    const jdict *d = dict->v.u.d;
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR)
            dict_set(m, &c->globals, d->k[i], d->v[i]);
    return ctx_done(m, 0);
}

/* JSON text to values (for contexts built from JSON, e.g. tool definitions). */
typedef struct jsonp {
    jm *m;
    const char *s;
    size_t n, i;
    int depth;
} jsonp;

static void js_ws(jsonp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static _Noreturn void js_fail(jsonp *p, const char *what)
{
    jfail(p->m, 0, "JSON: %s at offset %zu", what, p->i);
}

static uint32_t js_hex4(jsonp *p)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
        if (h < 0)
            js_fail(p, "bad \\u escape");
        v = v * 16 + (uint32_t)h;
        p->i++;
    }
    return v;
}

static jv js_string(jsonp *p)
{
    sb b = {0};
    p->i++; /* " */
    for (;;) {
        if (p->i >= p->n)
            js_fail(p, "unterminated string");
        char c = p->s[p->i++];
        if (c == '"')
            break;
        if ((unsigned char)c < 0x20)
            js_fail(p, "control character in string");
        if (c != '\\') {
            sb_c(p->m, &b, c);
            continue;
        }
        if (p->i >= p->n)
            js_fail(p, "unterminated string");
        c = p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/': sb_c(p->m, &b, c); break;
        case 'b': sb_c(p->m, &b, '\b'); break;
        case 'f': sb_c(p->m, &b, '\f'); break;
        case 'n': sb_c(p->m, &b, '\n'); break;
        case 'r': sb_c(p->m, &b, '\r'); break;
        case 't': sb_c(p->m, &b, '\t'); break;
        case 'u': {
            uint32_t u = js_hex4(p);
            if (u >= 0xD800 && u < 0xDC00 && p->i + 1 < p->n && p->s[p->i] == '\\' &&
                p->s[p->i + 1] == 'u') {
                size_t save = p->i;
                p->i += 2;
                uint32_t lo = js_hex4(p);
                if (lo >= 0xDC00 && lo < 0xE000)
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                else
                    p->i = save;
            }
            char t[4];
            /* lone surrogates are kept as 3-byte sequences (Python keeps them too) */
            size_t k = (u >= 0xDC80 && u <= 0xDCFF) ? 0 : u8enc(u, t);
            if (!k) {
                t[0] = (char)0xED;
                t[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                t[2] = (char)(0x80 | (u & 0x3F));
                k = 3;
            }
            sb_put(p->m, &b, t, k);
            break;
        }
        default: js_fail(p, "bad escape");
        }
    }
    return sb_val(&b);
}

static jv js_value(jsonp *p)
{
    js_ws(p);
    if (p->i >= p->n)
        js_fail(p, "unexpected end");
    if (++p->depth > 200)
        js_fail(p, "nested too deeply");
    char c = p->s[p->i];
    jv r;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        p->i++;
        jdict *d = obj ? new_dict(p->m) : NULL;
        jlist *l = obj ? NULL : new_list(p->m, 0);
        js_ws(p);
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
            p->i++;
        } else {
            for (;;) {
                if (obj) {
                    js_ws(p);
                    if (p->i >= p->n || p->s[p->i] != '"')
                        js_fail(p, "expected a key");
                    jv k = js_string(p);
                    js_ws(p);
                    if (p->i >= p->n || p->s[p->i] != ':')
                        js_fail(p, "expected ':'");
                    p->i++;
                    dict_set(p->m, d, k, js_value(p));
                } else {
                    list_push(p->m, l, js_value(p));
                }
                js_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
                    p->i++;
                    break;
                }
                js_fail(p, "expected ',' or a closing bracket");
            }
        }
        r = obj ? mk_dict(d, 0) : mk_list(l, 0);
    } else if (c == '"') {
        r = js_string(p);
    } else if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "true", 4)) {
        r = mk_bool(1);
        p->i += 4;
    } else if (p->n - p->i >= 5 && !memcmp(p->s + p->i, "false", 5)) {
        r = mk_bool(0);
        p->i += 5;
    } else if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "null", 4)) {
        r = NONE;
        p->i += 4;
    } else if (c == '-' || is_digit(c)) {
        size_t st = p->i;
        int is_float = 0;
        if (p->s[p->i] == '-')
            p->i++;
        while (p->i < p->n && (is_digit(p->s[p->i]) || p->s[p->i] == '.' ||
                               p->s[p->i] == 'e' || p->s[p->i] == 'E' || p->s[p->i] == '+' ||
                               p->s[p->i] == '-')) {
            is_float |= !is_digit(p->s[p->i]);
            p->i++;
        }
        char buf[64];
        if (p->i - st >= sizeof buf)
            js_fail(p, "number too long");
        memcpy(buf, p->s + st, p->i - st);
        buf[p->i - st] = '\0';
        char *e;
        errno = 0;
        long long v = is_float ? 0 : strtoll(buf, &e, 10);
        if (!is_float && !errno && *e == '\0') {
            r = mk_int(v);
        } else {
            r = mk_float(strtod(buf, &e));
            if (*e)
                js_fail(p, "bad number");
        }
    } else {
        js_fail(p, "unexpected character");
    }
    p->depth--;
    return r;
}

llm__jinja_val *llm__jinja_json(llm__jinja_ctx *c, const char *json, size_t n)
{
    if (!c || (!json && n)) {
        llm__fail(LLM_ERR_INVALID_ARG, "template: NULL argument");
        return NULL;
    }
    jm *m = ctx_machine(c);
    if (!m) {
        llm__fail(LLM_ERR_NO_MEMORY, "template: out of memory");
        return NULL;
    }
    jsonp *p = llm__calloc(1, sizeof *p);
    if (!p || setjmp(m->jb)) {
        if (!p)
            m->st = LLM_ERR_NO_MEMORY, snprintf(m->msg, sizeof m->msg, "out of memory");
        llm__free(p);
        ctx_done(m, 1);
        return NULL;
    }
    p->m = m;
    p->s = json;
    p->n = n;
    jv v = js_value(p);
    js_ws(p);
    if (p->i != n)
        js_fail(p, "trailing characters");
    llm__jinja_val *r = jalloc(m, sizeof *r);
    r->v = v;
    llm__free(p);
    ctx_done(m, 0);
    return r;
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
        jnomem(m);
    r[m->on] = '\0';
    *out = r;
    *out_len = m->on;
    arena_free(&m->own);
    llm__free(m);
    return LLM_OK;
}
