/* jinja_int.h - what the parts of the Jinja interpreter share: lib/jinja.c (lexer, parser,
 * evaluator, the parse/render entry points), lib/jinja_builtins.c (Python semantics of
 * values, dict/list methods, filters, tests, global functions, context values and JSON)
 * and lib/jinja_str.c (UTF-8, Unicode case mapping, string building, str's methods).
 * Private to those files; the rest of lib/ uses jinja.h.
 *
 * Every function here that takes a jm reports errors by longjmp to the entry point that
 * set m->jb (llm__j_fail, llm__j_nomem), so none of them returns a status. */
#ifndef LLM_JINJA_INT_H
#define LLM_JINJA_INT_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jinja.h"

#define MAX_DEPTH 400 /* nested evaluation frames in a render (macros, values) */

/* ---- arena (jinja.c) -------------------------------------------------------------- */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct arena {
    ablock *head;
    size_t total, limit;
} arena;

/* n bytes, 16-aligned, or NULL past the arena's limit or when memory runs out. */
LLM_INTERNAL void *llm__j_arena_alloc(arena *a, size_t n);

/* ---- values ----------------------------------------------------------------------- */

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FN, V_LOOP };

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfn jfn;
typedef struct jloop jloop;
typedef struct node node;   /* AST node, below */
typedef struct scope scope; /* variables of a render (jinja.c) */

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

/* A call's arguments: positional values, and keyword values with their names. */
typedef struct jargs {
    jv *pos;
    int np;
    jv *kv;
    const node **kn; /* N_KWARG nodes: names */
    int nk;
} jargs;

struct jloop {
    jlist *items;
    size_t i;
};

static const jv UNDEF = {V_UNDEF, 0, {0}};
static const jv NONE = {V_NONE, 0, {0}};

static inline jv mk_bool(int b)
{
    jv v = {V_BOOL, 0, {0}};
    v.u.i = b != 0;
    return v;
}
static inline jv mk_int(int64_t i)
{
    jv v = {V_INT, 0, {0}};
    v.u.i = i;
    return v;
}
static inline jv mk_float(double f)
{
    jv v = {V_FLOAT, 0, {0}};
    v.u.f = f;
    return v;
}
static inline jv mk_str(const char *p, size_t n)
{
    jv v = {V_STR, 0, {0}};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline jv mk_undef(const char *name, size_t n)
{
    jv v = UNDEF;
    v.u.s.p = name;
    v.u.s.n = n;
    return v;
}

static inline jv mk_list(jlist *l, int sub)
{
    jv v = {V_LIST, 0, {0}};
    v.sub = (uint8_t)sub;
    v.u.l = l;
    return v;
}
static inline jv mk_dict(jdict *d, int ns)
{
    jv v = {V_DICT, 0, {0}};
    v.t = ns ? V_NS : V_DICT;
    v.u.d = d;
    return v;
}

/* ---- the machine state of one parse or render -------------------------------------- */

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

/* Errors: the message (with "line N: " when line > 0) goes to m->msg and the machine
 * unwinds to its entry point. */
LLM_INTERNAL _Noreturn void llm__j_fail(jm *m, int line, const char *fmt, ...) LLM_PRINTF(3, 4);
LLM_INTERNAL _Noreturn void llm__j_nomem(jm *m);

/* Allocation in the machine's arena; never NULL (out of memory unwinds). */
LLM_INTERNAL void *llm__j_alloc(jm *m, size_t n);
LLM_INTERNAL size_t llm__j_mul_size(jm *m, size_t a, size_t b); /* a * b, or out of memory */
LLM_INTERNAL char *llm__j_strdup(jm *m, const char *s, size_t n);
LLM_INTERNAL jlist *llm__j_new_list(jm *m, size_t cap);
LLM_INTERNAL void llm__j_list_push(jm *m, jlist *l, jv v);
LLM_INTERNAL jdict *llm__j_new_dict(jm *m);
LLM_INTERNAL jv llm__j_mk_fn(jm *m, int kind, const char *name, size_t nn);

/* ---- lexer and AST (jinja.c) ------------------------------------------------------ */

enum {
    OP_NONE, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
    OP_ASSIGN, OP_LPAREN, OP_RPAREN, OP_LBRACKET, OP_RBRACKET, OP_LBRACE, OP_RBRACE,
    OP_COMMA, OP_DOT, OP_COLON, OP_PIPE, OP_SEMI
};
/* Source text of each OP_*, for messages. */
LLM_INTERNAL extern const char *const llm__j_op_text[];

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
enum {
    TS_BOOLEAN, TS_CALLABLE, TS_DEFINED, TS_DIVISIBLEBY, TS_EQ, TS_EQUALTO, TS_EQSIGN,
    TS_ESCAPED, TS_EVEN, TS_FALSE, TS_FILTER, TS_FLOAT, TS_GE, TS_GESIGN, TS_GREATERTHAN,
    TS_GT, TS_GTSIGN, TS_IN, TS_INTEGER, TS_ITERABLE, TS_LE, TS_LESIGN, TS_LESSTHAN,
    TS_LOWER, TS_LT, TS_LTSIGN, TS_MAPPING, TS_NE, TS_NESIGN, TS_NONE, TS_NUMBER, TS_ODD,
    TS_SAMEAS, TS_SEQUENCE, TS_STRING, TS_TEST, TS_TRUE, TS_UNDEFINED, TS_UPPER, TS_COUNT_
};
/* Index of a filter / test / global function name; -1 when there is none. */
LLM_INTERNAL int llm__j_filter_id(const char *s, size_t n);
LLM_INTERNAL int llm__j_test_id(const char *s, size_t n);
LLM_INTERNAL int llm__j_global_id(const char *name, size_t n);

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline int streq(const char *s, size_t n, const char *z)
{
    return strlen(z) == n && !memcmp(s, z, n);
}

/* Positional argument i or keyword `kw` of a call; NULL when absent. */
static inline jv *arg(jargs *a, int i, const char *kw)
{
    if (i >= 0 && i < a->np)
        return &a->pos[i];
    for (int k = 0; kw && k < a->nk; k++)
        if (streq(a->kn[k]->s, a->kn[k]->sn, kw))
            return &a->kv[k];
    return NULL;
}

static inline jv argv_or(jargs *a, int i, const char *kw, jv def)
{
    jv *v = arg(a, i, kw);
    return v ? *v : def;
}

/* ---- text (jinja_str.c) ----------------------------------------------------------- */

/* Decodes one code point at s[*i] and advances *i; an invalid byte b comes back as
 * 0xDC00 + b (Python's surrogateescape), which llm__j_u8enc writes back as that byte. */
LLM_INTERNAL uint32_t llm__j_u8dec(const char *s, size_t n, size_t *i);
LLM_INTERNAL size_t llm__j_u8enc(uint32_t c, char *o);
LLM_INTERNAL size_t llm__j_u8len(const char *s, size_t n); /* in code points */

/* Code point classes and simple case mapping, as Python's str methods see them. */
LLM_INTERNAL int llm__j_py_space(uint32_t c);     /* str.isspace() */
LLM_INTERNAL int llm__j_cp_word(uint32_t c);      /* \w of Python's re */
LLM_INTERNAL int llm__j_cp_printable(uint32_t c); /* str.isprintable() */
LLM_INTERNAL uint32_t llm__j_cp_upper(uint32_t c);
LLM_INTERNAL uint32_t llm__j_cp_lower(uint32_t c);

/* Strings built in the arena. */
typedef struct sb {
    char *p;
    size_t n, cap;
} sb;

LLM_INTERNAL void llm__j_sb_put(jm *m, sb *b, const char *s, size_t n);
LLM_INTERNAL void llm__j_sb_c(jm *m, sb *b, char c);
LLM_INTERNAL void llm__j_sb_s(jm *m, sb *b, const char *s);
LLM_INTERNAL void llm__j_sb_cp(jm *m, sb *b, uint32_t c); /* UTF-8 of c */
LLM_INTERNAL void llm__j_sb_f(jm *m, sb *b, const char *fmt, ...) LLM_PRINTF(3, 4);

static inline jv sb_val(sb *b)
{
    return mk_str(b->n ? b->p : "", b->n);
}

/* str's methods and the helpers filters share with them. */
LLM_INTERNAL jv llm__j_str_method(jm *m, jv s, const char *name, size_t n, jargs *a, int line);
/* mode: 0 lower, 1 upper, 2 capitalize, 3 title */
LLM_INTERNAL jv llm__j_s_case(jm *m, jv s, int mode);
/* str.strip (which = 3), lstrip (1), rstrip (2); chars: a str, or None for whitespace. */
LLM_INTERNAL jv llm__j_s_strip(jv s, jv chars, int which);
/* str.replace(old, new, count); count < 0 replaces all. */
LLM_INTERNAL jv llm__j_s_replace(jm *m, jv s, jv old, jv new_, int64_t count);
/* *v when it is a str; fails naming `what` when it is absent or another type. */
LLM_INTERNAL jv llm__j_need_str(jm *m, jv *v, int line, const char *what);

/* ---- Python semantics of values (jinja_builtins.c) -------------------------------- */

static inline int is_num(jv v)
{
    return v.t == V_BOOL || v.t == V_INT || v.t == V_FLOAT;
}

LLM_INTERNAL const char *llm__j_type_name(jv v);
LLM_INTERNAL _Noreturn void llm__j_fail_undef(jm *m, int line, jv v);
/* One more nested frame (m->depth), failing past MAX_DEPTH; the caller decrements. */
LLM_INTERNAL void llm__j_enter(jm *m, int line);
LLM_INTERNAL int llm__j_truthy(jv v);
LLM_INTERNAL void llm__j_put_str(jm *m, sb *b, jv v); /* str(v) */
LLM_INTERNAL jv llm__j_to_str(jm *m, jv v);
LLM_INTERNAL int llm__j_hashable(jv v);
LLM_INTERNAL int llm__j_veq(jm *m, jv a, jv b);                      /* a == b */
LLM_INTERNAL int llm__j_vorder(jm *m, int op, jv a, jv b, int line); /* a <op> b */
LLM_INTERNAL int llm__j_vcontains(jm *m, jv hay, jv x, int line);    /* x in hay */
LLM_INTERNAL jv llm__j_arith(jm *m, int op, jv a, jv b, int line);
LLM_INTERNAL long llm__j_dict_find(jm *m, const jdict *d, jv key); /* index or -1 */
LLM_INTERNAL void llm__j_dict_set(jm *m, jdict *d, jv key, jv val);
/* The items a for loop over v visits (a dict's keys, a string's characters, ...). */
LLM_INTERNAL jlist *llm__j_iter_items(jm *m, jv v, int line);
LLM_INTERNAL jv llm__j_get_attr(jm *m, jv obj, const char *name, size_t n, int line);
LLM_INTERNAL jv llm__j_get_item(jm *m, jv obj, jv key, int line);
/* An int (or bool) argument; fails naming `what` otherwise. */
LLM_INTERNAL int64_t llm__j_int_arg(jm *m, jv v, int line, const char *what);
LLM_INTERNAL jv llm__j_do_slice(jm *m, jv obj, jv a, jv b, jv c, int line, int folded);

/* ---- calls, filters, tests (jinja_builtins.c) ------------------------------------- */

LLM_INTERNAL jv llm__j_call_method(jm *m, jfn *f, jargs *a, int line);
LLM_INTERNAL jv llm__j_call_builtin(jm *m, jfn *f, jargs *a, int line);
LLM_INTERNAL jv llm__j_apply_filter(jm *m, int id, const char *name, size_t nl, jv v, jargs *a,
                                    int line);
LLM_INTERNAL int llm__j_run_test(jm *m, int id, const char *name, size_t nl, jv v, jargs *a,
                                 int line);

#endif
