/* jinja_builtins.c - what the values of the Jinja interpreter (lib/jinja.c) do.
 *
 * Python's semantics as jinja2 exposes them to templates: str() and repr(), truth,
 * equality and ordering, arithmetic, attribute and item access, slicing; the methods of
 * dict and list that templates call (str's are in lib/jinja_str.c); jinja2's filters and
 * tests and the global functions HF's chat templates see; the values a context is built
 * from, and JSON in and out. Each follows the CPython or jinja2 code it stands for, byte
 * for byte where the output is visible. Errors unwind through llm__j_fail (see
 * lib/jinja_int.h).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja_int.h"

/* ---- names of filters, tests and global functions --------------------------------- */

static const char *const filter_names[] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "first", "float", "format", "indent", "int", "items", "join", "last", "length", "list",
    "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round",
    "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
    "truncate", "unique", "upper", "wordcount"};

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

int llm__j_filter_id(const char *s, size_t n)
{
    return name_index(filter_names, F_COUNT_, s, n);
}

int llm__j_test_id(const char *s, size_t n)
{
    return name_index(test_names, TS_COUNT_, s, n);
}

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT_ };
static const char *const global_names[] = {"range", "namespace", "dict", "raise_exception",
                                           "strftime_now"};


int llm__j_global_id(const char *name, size_t n)
{
    for (int g = 0; g < G_COUNT_; g++)
        if (streq(name, n, global_names[g]))
            return g;
    return -1;
}

/* ---- Python semantics of values --------------------------------------------------- */

const char *llm__j_type_name(jv v)
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

_Noreturn void llm__j_fail_undef(jm *m, int line, jv v)
{
    if (v.u.s.n)
        llm__j_fail(m, line, "'%.*s' is undefined", (int)v.u.s.n, v.u.s.p);
    llm__j_fail(m, line, "undefined value");
}

void llm__j_enter(jm *m, int line)
{
    if (++m->depth > MAX_DEPTH)
        llm__j_fail(m, line, "maximum recursion depth exceeded");
}

int llm__j_truthy(jv v)
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
    llm__j_sb_c(m, b, q);
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = llm__j_u8dec(s, n, &i);
        if (c == (uint32_t)q || c == '\\') {
            llm__j_sb_c(m, b, '\\');
            llm__j_sb_c(m, b, (char)c);
        } else if (c == '\n') {
            llm__j_sb_s(m, b, "\\n");
        } else if (c == '\r') {
            llm__j_sb_s(m, b, "\\r");
        } else if (c == '\t') {
            llm__j_sb_s(m, b, "\\t");
        } else if (c >= 0xDC80 && c <= 0xDCFF) {
            llm__j_sb_f(m, b, "\\udc%02x", (unsigned)(c - 0xDC00));
        } else if (!llm__j_cp_printable(c)) {
            if (c < 0x100)
                llm__j_sb_f(m, b, "\\x%02x", (unsigned)c);
            else if (c < 0x10000)
                llm__j_sb_f(m, b, "\\u%04x", (unsigned)c);
            else
                llm__j_sb_f(m, b, "\\U%08x", (unsigned)c);
        } else {
            llm__j_sb_put(m, b, s + st, i - st);
        }
    }
    llm__j_sb_c(m, b, q);
}

/* str(v), as {{ v }} prints it. */
void llm__j_put_str(jm *m, sb *b, jv v)
{
    char t[48];
    switch (v.t) {
    case V_UNDEF: return;
    case V_NONE: llm__j_sb_s(m, b, "None"); return;
    case V_BOOL: llm__j_sb_s(m, b, v.u.i ? "True" : "False"); return;
    case V_INT: llm__j_sb_f(m, b, "%lld", (long long)v.u.i); return;
    case V_FLOAT: fmt_float(v.u.f, t, 0); llm__j_sb_s(m, b, t); return;
    case V_STR: llm__j_sb_put(m, b, v.u.s.p, v.u.s.n); return;
    default: put_repr(m, b, v); return;
    }
}

static void put_repr(jm *m, sb *b, jv v)
{
    llm__j_enter(m, 0);
    switch (v.t) {
    case V_UNDEF: llm__j_sb_s(m, b, "Undefined"); break;
    case V_STR: put_repr_str(m, b, v.u.s.p, v.u.s.n); break;
    case V_LIST:
        if (v.sub == SUB_GEN) {
            llm__j_sb_s(m, b, "<generator object>");
            break;
        }
        if (v.sub >= SUB_KEYS) {
            llm__j_sb_s(m, b, llm__j_type_name(v));
            llm__j_sb_c(m, b, '(');
        }
        llm__j_sb_c(m, b, v.sub == SUB_TUPLE ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                llm__j_sb_s(m, b, ", ");
            put_repr(m, b, v.u.l->v[i]);
        }
        if (v.sub == SUB_TUPLE && v.u.l->n == 1)
            llm__j_sb_c(m, b, ',');
        llm__j_sb_c(m, b, v.sub == SUB_TUPLE ? ')' : ']');
        if (v.sub >= SUB_KEYS)
            llm__j_sb_c(m, b, ')');
        break;
    case V_DICT:
    case V_NS:
        llm__j_sb_s(m, b, v.t == V_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                llm__j_sb_s(m, b, ", ");
            put_repr(m, b, v.u.d->k[i]);
            llm__j_sb_s(m, b, ": ");
            put_repr(m, b, v.u.d->v[i]);
        }
        llm__j_sb_s(m, b, v.t == V_NS ? "}>" : "}");
        break;
    case V_FN:
        if (v.u.fn->kind == FN_METHOD)
            llm__j_sb_f(m, b, "<built-in method %.*s of %s object at 0x0>", (int)v.u.fn->nn,
                        v.u.fn->name, llm__j_type_name(v.u.fn->self));
        else
            llm__j_sb_f(m, b, "<function %.*s at 0x0>", (int)v.u.fn->nn, v.u.fn->name);
        break;
    case V_LOOP: llm__j_sb_s(m, b, "<LoopContext>"); break;
    default: llm__j_put_str(m, b, v); break;
    }
    m->depth--;
}

jv llm__j_to_str(jm *m, jv v)
{
    if (v.t == V_STR)
        return v;
    sb b = {0};
    llm__j_put_str(m, &b, v);
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
    llm__j_sb_c(m, b, '"');
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = llm__j_u8dec(s, n, &i);
        switch (c) {
        case '"': llm__j_sb_s(m, b, "\\\""); continue;
        case '\\': llm__j_sb_s(m, b, "\\\\"); continue;
        case '\n': llm__j_sb_s(m, b, "\\n"); continue;
        case '\r': llm__j_sb_s(m, b, "\\r"); continue;
        case '\t': llm__j_sb_s(m, b, "\\t"); continue;
        case '\b': llm__j_sb_s(m, b, "\\b"); continue;
        case '\f': llm__j_sb_s(m, b, "\\f"); continue;
        default: break;
        }
        if (c < 0x20 || (ascii && c >= 0x7F)) {
            if (c >= 0x10000) {
                uint32_t x = c - 0x10000;
                llm__j_sb_f(m, b, "\\u%04x\\u%04x", 0xD800 + (x >> 10), 0xDC00 + (x & 0x3FF));
            } else {
                llm__j_sb_f(m, b, "\\u%04x", (unsigned)c);
            }
        } else {
            llm__j_sb_put(m, b, s + st, i - st);
        }
    }
    llm__j_sb_c(m, b, '"');
}

static void json_nl(jm *m, sb *b, const jsonopt *o, int level)
{
    llm__j_sb_c(m, b, '\n');
    for (int i = 0; i < level; i++)
        llm__j_sb_put(m, b, o->indent.u.s.p, o->indent.u.s.n);
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
    llm__j_enter(m, line);
    switch (v.t) {
    case V_NONE: llm__j_sb_s(m, b, "null"); break;
    case V_BOOL: llm__j_sb_s(m, b, v.u.i ? "true" : "false"); break;
    case V_INT: llm__j_sb_f(m, b, "%lld", (long long)v.u.i); break;
    case V_FLOAT: fmt_float(v.u.f, t, 1); llm__j_sb_s(m, b, t); break;
    case V_STR: put_json_str(m, b, v.u.s.p, v.u.s.n, o->ensure_ascii); break;
    case V_LIST:
        if (v.sub > SUB_TUPLE)
            llm__j_fail(m, line, "Object of type %s is not JSON serializable", llm__j_type_name(v));
        if (!v.u.l->n) {
            llm__j_sb_s(m, b, "[]");
            break;
        }
        llm__j_sb_c(m, b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                llm__j_sb_put(m, b, o->item_sep.u.s.p, o->item_sep.u.s.n);
            if (o->has_indent)
                json_nl(m, b, o, level + 1);
            put_json(m, b, v.u.l->v[i], o, level + 1, line);
        }
        if (o->has_indent)
            json_nl(m, b, o, level);
        llm__j_sb_c(m, b, ']');
        break;
    case V_DICT: {
        jdict *d = v.u.d;
        if (!d->n) {
            llm__j_sb_s(m, b, "{}");
            break;
        }
        /* key order: insertion, or sorted (a stable insertion sort of indexes) */
        size_t *ord = llm__j_alloc(m, llm__j_mul_size(m, d->n, sizeof(size_t)));
        for (size_t i = 0; i < d->n; i++) {
            ord[i] = i;
            if (o->sort_keys) {
                if (d->k[i].t != V_STR)
                    llm__j_fail(m, line, "tojson: sort_keys needs string keys");
                for (size_t j = i; j > 0 && str_cmp(d->k[ord[j - 1]], d->k[i]) > 0; j--) {
                    ord[j] = ord[j - 1];
                    ord[j - 1] = i;
                }
            }
        }
        llm__j_sb_c(m, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->k[ord[i]];
            if (i)
                llm__j_sb_put(m, b, o->item_sep.u.s.p, o->item_sep.u.s.n);
            if (o->has_indent)
                json_nl(m, b, o, level + 1);
            if (k.t == V_STR) {
                put_json_str(m, b, k.u.s.p, k.u.s.n, o->ensure_ascii);
            } else if (k.t == V_NONE || k.t == V_BOOL || k.t == V_INT || k.t == V_FLOAT) {
                sb s2 = {0};
                put_json(m, &s2, k, o, level, line);
                llm__j_sb_c(m, b, '"');
                llm__j_sb_put(m, b, s2.p, s2.n);
                llm__j_sb_c(m, b, '"');
            } else {
                llm__j_fail(m, line, "keys must be str, int, float, bool or None, not %s",
                            llm__j_type_name(k));
            }
            llm__j_sb_put(m, b, o->key_sep.u.s.p, o->key_sep.u.s.n);
            put_json(m, b, d->v[ord[i]], o, level + 1, line);
        }
        if (o->has_indent)
            json_nl(m, b, o, level);
        llm__j_sb_c(m, b, '}');
        break;
    }
    default:
        llm__j_fail(m, line, "Object of type %s is not JSON serializable", llm__j_type_name(v));
    }
    m->depth--;
}

int llm__j_hashable(jv v)
{
    if (v.t == V_LIST) {
        if (v.sub == SUB_GEN)
            return 1;
        if (v.sub != SUB_TUPLE)
            return 0;
        for (size_t i = 0; i < v.u.l->n; i++)
            if (!llm__j_hashable(v.u.l->v[i]))
                return 0;
        return 1;
    }
    return v.t != V_DICT;
}

/* Python ==. Numbers compare by value across bool/int/float; list != tuple. */
int llm__j_veq(jm *m, jv a, jv b)
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
        llm__j_enter(m, 0);
        for (size_t i = 0; r && i < a.u.l->n; i++)
            r = llm__j_veq(m, a.u.l->v[i], b.u.l->v[i]);
        m->depth--;
        return r;
    }
    case V_DICT: {
        if (a.u.d->n != b.u.d->n)
            return 0;
        int r = 1;
        llm__j_enter(m, 0);
        for (size_t i = 0; r && i < a.u.d->n; i++) {
            r = 0;
            for (size_t j = 0; j < b.u.d->n; j++) {
                if (llm__j_veq(m, a.u.d->k[i], b.u.d->k[j])) {
                    r = llm__j_veq(m, a.u.d->v[i], b.u.d->v[j]);
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
        llm__j_fail_undef(m, line, a);
    if (b.t == V_UNDEF)
        llm__j_fail_undef(m, line, b);
    llm__j_fail(m, line, "'%s' not supported between instances of '%s' and '%s'",
                llm__j_op_text[op], llm__j_type_name(a), llm__j_type_name(b));
}

/* Python <, <=, >, >= */
int llm__j_vorder(jm *m, int op, jv a, jv b, int line)
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
        while (i < a.u.l->n && i < b.u.l->n && llm__j_veq(m, a.u.l->v[i], b.u.l->v[i]))
            i++;
        if (i < a.u.l->n && i < b.u.l->n) {
            llm__j_enter(m, line);
            int r = llm__j_vorder(m, op, a.u.l->v[i], b.u.l->v[i], line);
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

long llm__j_dict_find(jm *m, const jdict *d, jv key)
{
    if (key.t == V_STR) {
        for (size_t i = 0; i < d->n; i++)
            if (d->k[i].t == V_STR && d->k[i].u.s.n == key.u.s.n &&
                !memcmp(d->k[i].u.s.p, key.u.s.p, key.u.s.n))
                return (long)i;
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (llm__j_veq(m, d->k[i], key))
            return (long)i;
    return -1;
}

void llm__j_dict_set(jm *m, jdict *d, jv key, jv val)
{
    long i = llm__j_dict_find(m, d, key);
    if (i >= 0) {
        d->v[i] = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = llm__j_alloc(m, llm__j_mul_size(m, cap, sizeof(jv)));
        jv *v = llm__j_alloc(m, llm__j_mul_size(m, cap, sizeof(jv)));
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
    long i = llm__j_dict_find(m, d, mk_str(k, kn));
    return i >= 0 ? d->v[i] : mk_undef(k, kn);
}

static jlist *gen_force(jm *m, const struct lazy *z);

/* The items a for loop visits: list items, dict keys, the characters of a string. */
jlist *llm__j_iter_items(jm *m, jv v, int line)
{
    switch (v.t) {
    case V_UNDEF: return llm__j_new_list(m, 0);
    case V_LIST:
        if (v.sub == SUB_GEN) {
            if (v.u.l->spent)
                return llm__j_new_list(m, 0);
            v.u.l->spent = 1;
            if (v.u.l->lazy)
                return gen_force(m, v.u.l->lazy);
        }
        return v.u.l;
    case V_DICT: {
        jlist *l = llm__j_new_list(m, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            llm__j_list_push(m, l, v.u.d->k[i]);
        return l;
    }
    case V_STR: {
        jlist *l = llm__j_new_list(m, v.u.s.n);
        for (size_t i = 0; i < v.u.s.n;) {
            size_t st = i;
            llm__j_u8dec(v.u.s.p, v.u.s.n, &i);
            llm__j_list_push(m, l, mk_str(v.u.s.p + st, i - st));
        }
        return l;
    }
    default:
        llm__j_fail(m, line, "'%s' object is not iterable", llm__j_type_name(v));
    }
}

int llm__j_vcontains(jm *m, jv hay, jv x, int line)
{
    if (hay.t == V_STR) {
        if (x.t != V_STR)
            llm__j_fail(m, line, "'in <string>' requires string as left operand, not %s",
                        llm__j_type_name(x));
        if (!x.u.s.n)
            return 1;
        return memmem(hay.u.s.p, hay.u.s.n, x.u.s.p, x.u.s.n) != NULL;
    }
    if (hay.t == V_DICT) {
        if (!llm__j_hashable(x))
            llm__j_fail(m, line, "unhashable type: '%s'", llm__j_type_name(x));
        return llm__j_dict_find(m, hay.u.d, x) >= 0;
    }
    if (hay.t == V_LIST || hay.t == V_UNDEF) {
        jlist *l = llm__j_iter_items(m, hay, line);
        for (size_t i = 0; i < l->n; i++)
            if (llm__j_veq(m, l->v[i], x))
                return 1;
        return 0;
    }
    llm__j_fail(m, line, "argument of type '%s' is not iterable", llm__j_type_name(hay));
}

/* Arguments of a call: positional values, and keyword values with their names. */

static jv f_format(jm *m, jv fmt, jargs *a, int line);

jv llm__j_arith(jm *m, int op, jv a, jv b, int line)
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
        llm__j_fail_undef(m, line, a);
    if (b.t == V_UNDEF)
        llm__j_fail_undef(m, line, b);
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
                    llm__j_fail(m, line, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1)
                    goto ovf;
                r = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0)))
                    r--;
                return mk_int(op == OP_FLOORDIV ? r : x - r * y);
            case OP_POW:
                if (y < 0) {
                    if (x == 0)
                        llm__j_fail(m, line, "0.0 cannot be raised to a negative power");
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
                llm__j_fail(m, line, "division by zero");
            return mk_float(x / y);
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0)
                llm__j_fail(m, line, "float divmod()");
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
                llm__j_fail(m, line, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y))
                llm__j_fail(m, line,
                            "negative number raised to a fractional power (complex result)");
            double r = pow(x, y);
            if (isinf(r) && isfinite(x) && isfinite(y))
                llm__j_fail(m, line, "(34, 'Numerical result out of range')");
            return mk_float(r);
        }
        default: break;
        }
    }
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
        sb s = {0};
        llm__j_sb_put(m, &s, a.u.s.p, a.u.s.n);
        llm__j_sb_put(m, &s, b.u.s.p, b.u.s.n);
        return sb_val(&s);
    }
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.sub == b.sub && a.sub <= SUB_TUPLE) {
        jlist *l = llm__j_new_list(m, a.u.l->n + b.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            llm__j_list_push(m, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            llm__j_list_push(m, l, b.u.l->v[i]);
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
                llm__j_nomem(m);
            sb s = {0};
            for (int64_t i = 0; i < k; i++)
                llm__j_sb_put(m, &s, a.u.s.p, a.u.s.n);
            return sb_val(&s);
        }
        if (a.u.l->n && (uint64_t)k > m->ar->limit / (a.u.l->n * sizeof(jv)))
            llm__j_nomem(m);
        jlist *l = llm__j_new_list(m, 0);
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < a.u.l->n; j++)
                llm__j_list_push(m, l, a.u.l->v[j]);
        return mk_list(l, a.sub);
    }
    llm__j_fail(m, line, "unsupported operand type(s) for %s: '%s' and '%s'", llm__j_op_text[op],
                llm__j_type_name(a), llm__j_type_name(b));
ovf:
    llm__j_fail(m, line, "integer overflow");
}

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
    jv f = llm__j_mk_fn(m, FN_METHOD, name, n);
    f.u.fn->self = self;
    return f;
}

/* jinja2's environment.getattr: a Python attribute first, then an item. */
jv llm__j_get_attr(jm *m, jv obj, const char *name, size_t n, int line)
{
    switch (obj.t) {
    case V_UNDEF:
        llm__j_fail_undef(m, line, obj);
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
    size_t k = 0, *off = llm__j_alloc(m, llm__j_mul_size(m, n + 1, sizeof(size_t)));
    for (size_t i = 0; i < n;) {
        off[k++] = i;
        llm__j_u8dec(s, n, &i);
    }
    off[k] = n;
    *count = k;
    return off;
}

/* jinja2's environment.getitem: an item first, then an attribute for string keys. */
jv llm__j_get_item(jm *m, jv obj, jv key, int line)
{
    switch (obj.t) {
    case V_UNDEF:
        llm__j_fail_undef(m, line, obj);
    case V_LIST: {
        long i = obj.sub <= SUB_TUPLE ? seq_index(key, obj.u.l->n) : -1;
        if (i >= 0)
            return obj.u.l->v[i];
        break;
    }
    case V_STR: { /* the i-th code point, found without an offsets table */
        int neg = (key.t == V_INT || key.t == V_BOOL) && key.u.i < 0;
        long i = seq_index(key, neg ? llm__j_u8len(obj.u.s.p, obj.u.s.n) : SIZE_MAX / 2);
        size_t at = 0, k = 0;
        while (i >= 0 && at < obj.u.s.n && k < (size_t)i) {
            llm__j_u8dec(obj.u.s.p, obj.u.s.n, &at);
            k++;
        }
        if (i >= 0 && at < obj.u.s.n) {
            size_t st = at;
            llm__j_u8dec(obj.u.s.p, obj.u.s.n, &at);
            return mk_str(obj.u.s.p + st, at - st);
        }
        break;
    }
    case V_DICT:
    case V_NS:
        if (!llm__j_hashable(key))
            llm__j_fail(m, line, "unhashable type: '%s'", llm__j_type_name(key));
        long i = llm__j_dict_find(m, obj.u.d, key);
        if (i >= 0)
            return obj.u.d->v[i];
        break;
    default:
        break;
    }
    if (key.t == V_STR && obj.t != V_NS)
        return llm__j_get_attr(m, obj, key.u.s.p, key.u.s.n, line);
    return mk_undef("", 0);
}

int64_t llm__j_int_arg(jm *m, jv v, int line, const char *what)
{
    if (v.t == V_INT || v.t == V_BOOL)
        return v.u.i;
    llm__j_fail(m, line, "%s must be an integer, not %s", what, llm__j_type_name(v));
}

/* Python slice semantics over n items: fills the selected indexes. */
static size_t slice_idx(jm *m, jv start, jv stop, jv step, size_t n, size_t **out, int line)
{
    int64_t st =
        step.t == V_NONE || step.t == V_UNDEF ? 1 : llm__j_int_arg(m, step, line, "slice step");
    if (st == 0)
        llm__j_fail(m, line, "slice step cannot be zero");
    int64_t len = (int64_t)n, a, b;
    int has_a = !(start.t == V_NONE || start.t == V_UNDEF);
    int has_b = !(stop.t == V_NONE || stop.t == V_UNDEF);
    a = has_a ? llm__j_int_arg(m, start, line, "slice index") : (st > 0 ? 0 : len - 1);
    b = has_b ? llm__j_int_arg(m, stop, line, "slice index") : (st > 0 ? len : -1);
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
    size_t k = 0, *idx = llm__j_alloc(m, llm__j_mul_size(m, n + 1, sizeof(size_t)));
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        idx[k++] = (size_t)i;
    *out = idx;
    return k;
}

jv llm__j_do_slice(jm *m, jv obj, jv a, jv b, jv c, int line, int folded)
{
    size_t *idx, k;
    if (obj.t == V_UNDEF)
        llm__j_fail_undef(m, line, obj);
    if (obj.t == V_LIST && obj.sub <= SUB_TUPLE) {
        k = slice_idx(m, a, b, c, obj.u.l->n, &idx, line);
        jlist *l = llm__j_new_list(m, k);
        for (size_t i = 0; i < k; i++)
            llm__j_list_push(m, l, obj.u.l->v[idx[i]]);
        return mk_list(l, obj.sub);
    }
    if (obj.t == V_STR) {
        size_t cnt, *off = cp_offsets(m, obj.u.s.p, obj.u.s.n, &cnt);
        k = slice_idx(m, a, b, c, cnt, &idx, line);
        sb s = {0};
        for (size_t i = 0; i < k; i++)
            llm__j_sb_put(m, &s, obj.u.s.p + off[idx[i]], off[idx[i] + 1] - off[idx[i]]);
        return sb_val(&s);
    }
    /* jinja2 slices with Python's [] directly, without its getitem fallback */
    if (folded)
        return mk_undef("", 0);
    llm__j_fail(m, line, "'%s' object is not subscriptable", llm__j_type_name(obj));
}

jv llm__j_call_method(jm *m, jfn *f, jargs *a, int line)
{
    jv self = f->self;
    const char *name = f->name;
    size_t n = f->nn;
    if (self.t == V_STR)
        return llm__j_str_method(m, self, name, n, a, line);
    if (self.t == V_DICT) {
        jdict *d = self.u.d;
        if (streq(name, n, "get")) {
            jv *k = arg(a, 0, NULL);
            if (!k)
                llm__j_fail(m, line, "get expected at least 1 argument, got 0");
            if (!llm__j_hashable(*k))
                llm__j_fail(m, line, "unhashable type: '%s'", llm__j_type_name(*k));
            long i = llm__j_dict_find(m, d, *k);
            return i >= 0 ? d->v[i] : argv_or(a, 1, NULL, NONE);
        }
        if (streq(name, n, "items") || streq(name, n, "keys") || streq(name, n, "values")) {
            jlist *l = llm__j_new_list(m, d->n);
            for (size_t i = 0; i < d->n; i++) {
                if (name[0] == 'k') {
                    llm__j_list_push(m, l, d->k[i]);
                } else if (name[0] == 'v') {
                    llm__j_list_push(m, l, d->v[i]);
                } else {
                    jlist *p = llm__j_new_list(m, 2);
                    llm__j_list_push(m, p, d->k[i]);
                    llm__j_list_push(m, p, d->v[i]);
                    llm__j_list_push(m, l, mk_list(p, SUB_TUPLE));
                }
            }
            return mk_list(l, name[0] == 'k' ? SUB_KEYS : name[0] == 'v' ? SUB_VALUES : SUB_ITEMS);
        }
        if (streq(name, n, "copy")) {
            jdict *c = llm__j_new_dict(m);
            for (size_t i = 0; i < d->n; i++)
                llm__j_dict_set(m, c, d->k[i], d->v[i]);
            return mk_dict(c, 0);
        }
    }
    if (self.t == V_LIST) {
        jlist *l = self.u.l;
        if (streq(name, n, "count") || streq(name, n, "index")) {
            jv *x = arg(a, 0, NULL);
            if (!x)
                llm__j_fail(m, line, "%.*s() takes exactly one argument", (int)n, name);
            int64_t k = 0;
            for (size_t i = 0; i < l->n; i++) {
                if (llm__j_veq(m, l->v[i], *x)) {
                    if (name[0] == 'i')
                        return mk_int((int64_t)i);
                    k++;
                }
            }
            if (name[0] == 'i')
                llm__j_fail(m, line, "value is not in list");
            return mk_int(k);
        }
        if (streq(name, n, "copy"))
            return mk_list(l, 0);
    }
    if (self.t == V_LOOP && streq(name, n, "cycle")) {
        if (!a->np)
            llm__j_fail(m, line, "no items for cycling given");
        return a->pos[self.u.loop->i % (size_t)a->np];
    }
    llm__j_fail(m, line, "access to attribute '%.*s' of '%s' object is unsafe", (int)n, name,
                llm__j_type_name(self));
}

/* ---- filters ---------------------------------------------------------------------- */

/* jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0. */
static jv attr_path(jm *m, jv item, jv attr, int line)
{
    if (attr.t != V_STR)
        return llm__j_get_item(m, item, attr, line);
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
        item = llm__j_get_item(m, item, key, line);
        if (!dot)
            return item;
        p = dot + 1;
    }
}

static jv lower_key(jm *m, jv v, int case_sensitive)
{
    return (!case_sensitive && v.t == V_STR) ? llm__j_s_case(m, v, 0) : v;
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
    jv *ti = llm__j_alloc(m, llm__j_mul_size(m, n, sizeof(jv))),
       *tk = llm__j_alloc(m, llm__j_mul_size(m, n, sizeof(jv)));
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        /* jinja2 sorts by [key] lists, which compare equal items without '<' */
        int take_right = !llm__j_veq(m, keys[i], keys[j]) &&
                         (reverse ? llm__j_vorder(m, OP_LT, keys[i], keys[j], line)
                                  : llm__j_vorder(m, OP_LT, keys[j], keys[i], line));
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


/* select / reject / selectattr / rejectattr */
static jv f_select(jm *m, jv seq, jargs *a, int with_attr, int keep, int line)
{
    jlist *in = llm__j_iter_items(m, seq, line), *out = llm__j_new_list(m, 0);
    int first = with_attr ? 1 : 0;
    jv *attr = with_attr ? arg(a, 0, NULL) : NULL;
    if (with_attr && !attr)
        llm__j_fail(m, line, "missing parameter for attribute name");
    jv *tn = arg(a, first, NULL);
    int tid = -1;
    if (tn) {
        llm__j_need_str(m, tn, line, "test name");
        tid = name_index(test_names, TS_COUNT_, tn->u.s.p, tn->u.s.n);
        if (tid < 0)
            llm__j_fail(m, line, "no test named '%.*s'", (int)tn->u.s.n, tn->u.s.p);
    }
    jargs ta = {0};
    if (a->np > first + 1) {
        ta.pos = a->pos + first + 1;
        ta.np = a->np - first - 1;
    }
    for (size_t i = 0; i < in->n; i++) {
        jv x = attr ? attr_path(m, in->v[i], *attr, line) : in->v[i];
        int ok =
            tn ? llm__j_run_test(m, tid, tn->u.s.p, tn->u.s.n, x, &ta, line) : llm__j_truthy(x);
        if (ok == keep)
            llm__j_list_push(m, out, in->v[i]);
    }
    return mk_list(out, SUB_GEN);
}

static jv html_escape(jm *m, jv s)
{
    sb b = {0};
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        switch (c) {
        case '&': llm__j_sb_s(m, &b, "&amp;"); break;
        case '<': llm__j_sb_s(m, &b, "&lt;"); break;
        case '>': llm__j_sb_s(m, &b, "&gt;"); break;
        case '"': llm__j_sb_s(m, &b, "&#34;"); break;
        case '\'': llm__j_sb_s(m, &b, "&#39;"); break;
        default: llm__j_sb_c(m, &b, c);
        }
    }
    return sb_val(&b);
}

/* Python's int(str, base) and float(str); 0 when the text is not a number. */
static int parse_pyint(jv s, int base, int64_t *out)
{
    jv t = llm__j_s_strip(s, NONE, 3);
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
    jv t = llm__j_s_strip(s, NONE, 3);
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
    int64_t prec = llm__j_int_arg(m, argv_or(a, 0, "precision", mk_int(0)), line, "precision");
    jv meth = argv_or(a, 1, "method", mk_str("common", 6));
    if (!is_num(v))
        llm__j_fail(m, line, "type %s doesn't define __round__ method", llm__j_type_name(v));
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
        llm__j_fail(m, line, "method must be common, ceil or floor");
    double p10 = pow(10.0, (double)prec), x = num_f(v) * p10;
    return mk_float((ceil_ ? ceil(x) : floor(x)) / p10);
}

static jv f_indent(jm *m, jv s, jargs *a, int line)
{
    jv w = argv_or(a, 0, "width", mk_int(4));
    int first = llm__j_truthy(argv_or(a, 1, "first", mk_bool(0)));
    int blank = llm__j_truthy(argv_or(a, 2, "blank", mk_bool(0)));
    sb ind = {0};
    if (w.t == V_STR)
        llm__j_sb_put(m, &ind, w.u.s.p, w.u.s.n);
    else
        for (int64_t i = llm__j_int_arg(m, w, line, "width"); i > 0; i--)
            llm__j_sb_c(m, &ind, ' ');
    /* jinja2 appends "\n" and then uses str.splitlines(), so a trailing newline
     * yields one more (empty) line */
    sb t = {0};
    llm__j_sb_put(m, &t, s.u.s.p, s.u.s.n);
    llm__j_sb_c(m, &t, '\n');
    jargs none = {0};
    jlist *lines = llm__j_str_method(m, sb_val(&t), "splitlines", 10, &none, line).u.l;
    sb b = {0};
    for (size_t i = 0; i < lines->n; i++) {
        jv l = lines->v[i];
        if (i)
            llm__j_sb_c(m, &b, '\n');
        if ((i > 0 || first) && (blank || l.u.s.n))
            llm__j_sb_put(m, &b, ind.p, ind.n);
        else if (i == 0 && first)
            llm__j_sb_put(m, &b, ind.p, ind.n);
        llm__j_sb_put(m, &b, l.u.s.p, l.u.s.n);
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
            llm__j_sb_c(m, &b, *p++);
            continue;
        }
        const char *st = p++;
        while (p < e && strchr("-+ 0#", *p))
            p++;
        while (p < e && (is_digit(*p) || *p == '.'))
            p++;
        if (p >= e)
            llm__j_fail(m, line, "incomplete format");
        char conv = *p++;
        if (conv == '%') {
            llm__j_sb_c(m, &b, '%');
            continue;
        }
        if (ai >= a->np)
            llm__j_fail(m, line, "not enough arguments for format string");
        jv v = a->pos[ai++];
        char spec[32], out[512];
        size_t sl = (size_t)(p - st - 1);
        if (sl > 20)
            llm__j_fail(m, line, "format specification too long");
        memcpy(spec, st, sl);
        if (conv == 's' || conv == 'r') {
            sb t = {0};
            if (conv == 's')
                llm__j_put_str(m, &t, v);
            else
                put_repr(m, &t, v);
            spec[sl] = '\0';
            if (sl == 1) {
                llm__j_sb_put(m, &b, t.p, t.n);
            } else {
                memcpy(spec + sl, ".*s", 4);
                snprintf(out, sizeof out, spec, (int)t.n, t.p ? t.p : "");
                llm__j_sb_s(m, &b, out);
            }
        } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
            if (!is_num(v))
                llm__j_fail(m, line, "%%%c format: a real number is required, not %s", conv,
                            llm__j_type_name(v));
            memcpy(spec + sl, "ll", 2);
            spec[sl + 2] = conv == 'i' ? 'd' : conv;
            spec[sl + 3] = '\0';
            snprintf(out, sizeof out, spec, (long long)(v.t == V_FLOAT ? (int64_t)v.u.f : v.u.i));
            llm__j_sb_s(m, &b, out);
        } else if (conv == 'f' || conv == 'e' || conv == 'g' || conv == 'F' || conv == 'E') {
            if (!is_num(v))
                llm__j_fail(m, line, "must be real number, not %s", llm__j_type_name(v));
            spec[sl] = conv;
            spec[sl + 1] = '\0';
            snprintf(out, sizeof out, spec, num_f(v));
            llm__j_sb_s(m, &b, out);
        } else {
            llm__j_fail(m, line, "unsupported format character '%c'", conv);
        }
    }
    if (ai < a->np)
        llm__j_fail(m, line, "not all arguments converted during string formatting");
    return sb_val(&b);
}

static jv f_tojson(jm *m, jv v, jargs *a, int line)
{
    jsonopt o;
    memset(&o, 0, sizeof o);
    o.ensure_ascii = llm__j_truthy(argv_or(a, 0, "ensure_ascii", mk_bool(0)));
    jv ind = argv_or(a, 1, "indent", NONE);
    jv seps = argv_or(a, 2, "separators", NONE);
    o.sort_keys = llm__j_truthy(argv_or(a, 3, "sort_keys", mk_bool(0)));
    if (ind.t != V_NONE) {
        o.has_indent = 1;
        if (ind.t == V_STR) {
            o.indent = ind;
        } else {
            sb s = {0};
            for (int64_t i = llm__j_int_arg(m, ind, line, "indent"); i > 0; i--)
                llm__j_sb_c(m, &s, ' ');
            o.indent = sb_val(&s);
        }
    }
    o.item_sep = o.has_indent ? mk_str(",", 1) : mk_str(", ", 2);
    o.key_sep = mk_str(": ", 2);
    if (seps.t != V_NONE) {
        if (seps.t != V_LIST || seps.u.l->n != 2 || seps.u.l->v[0].t != V_STR ||
            seps.u.l->v[1].t != V_STR)
            llm__j_fail(m, line, "tojson: separators must be a pair of strings");
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
jv llm__j_apply_filter(jm *m, int id, const char *name, size_t nl, jv v, jargs *a, int line)
{
    if (is_gen_filter(id)) {
        struct lazy *z = llm__j_alloc(m, sizeof *z);
        z->id = id;
        z->line = line;
        z->in = v;
        z->args = *a;
        jlist *l = llm__j_new_list(m, 0);
        l->lazy = z;
        return mk_list(l, SUB_GEN);
    }
    switch (id) {
    case F_ABS:
        if (v.t == V_FLOAT)
            return mk_float(fabs(v.u.f));
        if (v.t == V_INT || v.t == V_BOOL) {
            if (v.u.i == INT64_MIN)
                llm__j_fail(m, line, "integer overflow");
            return mk_int(v.u.i < 0 ? -v.u.i : v.u.i);
        }
        llm__j_fail(m, line, "bad operand type for abs(): '%s'", llm__j_type_name(v));
    case F_ATTR: {
        jv nm = llm__j_to_str(m, argv_or(a, 0, "name", mk_str("", 0)));
        if (v.t == V_DICT && !in_names(dict_methods, nm.u.s.p, nm.u.s.n))
            return mk_undef(nm.u.s.p, nm.u.s.n);
        return llm__j_get_attr(m, v, nm.u.s.p, nm.u.s.n, line);
    }
    case F_CAPITALIZE: return llm__j_s_case(m, llm__j_to_str(m, v), 2);
    case F_CENTER: {
        jv s = llm__j_to_str(m, v);
        int64_t w = llm__j_int_arg(m, argv_or(a, 0, "width", mk_int(80)), line, "width");
        int64_t len = (int64_t)llm__j_u8len(s.u.s.p, s.u.s.n);
        if (w <= len)
            return s;
        if (w > (int64_t)m->max_output)
            llm__j_nomem(m);
        int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
        sb b = {0};
        for (int64_t i = 0; i < pad; i++) {
            if (i == left)
                llm__j_sb_put(m, &b, s.u.s.p, s.u.s.n);
            llm__j_sb_c(m, &b, ' ');
        }
        if (left == pad)
            llm__j_sb_put(m, &b, s.u.s.p, s.u.s.n);
        return sb_val(&b);
    }
    case F_COUNT:
    case F_LENGTH:
        switch (v.t) {
        case V_UNDEF: return mk_int(0);
        case V_STR: return mk_int((int64_t)llm__j_u8len(v.u.s.p, v.u.s.n));
        case V_LIST:
            if (v.sub == SUB_GEN)
                break;
            return mk_int((int64_t)v.u.l->n);
        case V_DICT: return mk_int((int64_t)v.u.d->n);
        default: break;
        }
        llm__j_fail(m, line, "object of type '%s' has no len()", llm__j_type_name(v));
    case F_D:
    case F_DEFAULT: {
        int boolean = llm__j_truthy(argv_or(a, 1, "boolean", mk_bool(0)));
        if (v.t == V_UNDEF || (boolean && !llm__j_truthy(v)))
            return argv_or(a, 0, "default_value", mk_str("", 0));
        return v;
    }
    case F_DICTSORT: {
        if (v.t != V_DICT)
            llm__j_fail(m, line, "dictsort needs a mapping, not %s", llm__j_type_name(v));
        int cs = llm__j_truthy(argv_or(a, 0, "case_sensitive", mk_bool(0)));
        jv by = argv_or(a, 1, "by", mk_str("key", 3));
        int rev = llm__j_truthy(argv_or(a, 2, "reverse", mk_bool(0)));
        int pos = by.t == V_STR && streq(by.u.s.p, by.u.s.n, "value");
        if (!pos && !(by.t == V_STR && streq(by.u.s.p, by.u.s.n, "key")))
            llm__j_fail(m, line, "You can only sort by either \"key\" or \"value\"");
        size_t n = v.u.d->n;
        jv *items = llm__j_alloc(m, llm__j_mul_size(m, n + 1, sizeof(jv)));
        jv *keys = llm__j_alloc(m, llm__j_mul_size(m, n + 1, sizeof(jv)));
        for (size_t i = 0; i < n; i++) {
            jlist *p = llm__j_new_list(m, 2);
            llm__j_list_push(m, p, v.u.d->k[i]);
            llm__j_list_push(m, p, v.u.d->v[i]);
            items[i] = mk_list(p, 1);
            keys[i] = lower_key(m, pos ? v.u.d->v[i] : v.u.d->k[i], cs);
        }
        sort_vals(m, items, keys, n, rev, line);
        jlist *l = llm__j_new_list(m, n);
        for (size_t i = 0; i < n; i++)
            llm__j_list_push(m, l, items[i]);
        return mk_list(l, 0);
    }
    case F_E:
    case F_ESCAPE: return html_escape(m, llm__j_to_str(m, v));
    case F_FIRST:
    case F_LAST: {
        jlist *l = llm__j_iter_items(m, v, line);
        if (!l->n)
            return mk_undef("", 0);
        return l->v[id == F_FIRST ? 0 : l->n - 1];
    }
    case F_FLOAT: {
        jv def = argv_or(a, 0, "default", mk_float(0.0));
        double f;
        if (v.t == V_UNDEF)
            llm__j_fail_undef(m, line, v);
        if (is_num(v))
            return mk_float(num_f(v));
        if (v.t == V_STR && parse_pyfloat(v, &f))
            return mk_float(f);
        return def;
    }
    case F_FORMAT: return f_format(m, llm__j_to_str(m, v), a, line);
    case F_INDENT:
        /* jinja2 appends "\n" to the value itself, so only strings work */
        if (v.t == V_UNDEF)
            llm__j_fail_undef(m, line, v);
        if (v.t != V_STR)
            llm__j_fail(m, line, "unsupported operand type(s) for +=: '%s' and 'str'",
                        llm__j_type_name(v));
        return f_indent(m, v, a, line);
    case F_INT: {
        jv def = argv_or(a, 0, "default", mk_int(0));
        int64_t base = llm__j_int_arg(m, argv_or(a, 1, "base", mk_int(10)), line, "base"), i;
        double f;
        if (v.t == V_UNDEF)
            llm__j_fail_undef(m, line, v);
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
        jv d = llm__j_to_str(m, argv_or(a, 0, "d", mk_str("", 0)));
        jv *attr = arg(a, 1, "attribute");
        jlist *l = llm__j_iter_items(m, v, line);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                llm__j_sb_put(m, &b, d.u.s.p, d.u.s.n);
            llm__j_put_str(m, &b, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i]);
        }
        return sb_val(&b);
    }
    case F_LIST: {
        jlist *l = llm__j_iter_items(m, v, line), *c = llm__j_new_list(m, l->n);
        for (size_t i = 0; i < l->n; i++)
            llm__j_list_push(m, c, l->v[i]);
        return mk_list(c, 0);
    }
    case F_LOWER: return llm__j_s_case(m, llm__j_to_str(m, v), 0);
    case F_UPPER: return llm__j_s_case(m, llm__j_to_str(m, v), 1);
    case F_MAX:
    case F_MIN: {
        int cs = llm__j_truthy(argv_or(a, 0, "case_sensitive", mk_bool(0)));
        jv *attr = arg(a, 1, "attribute");
        jlist *l = llm__j_iter_items(m, v, line);
        if (!l->n)
            return mk_undef("", 0);
        size_t best = 0;
        jv bk = lower_key(m, attr ? attr_path(m, l->v[0], *attr, line) : l->v[0], cs);
        for (size_t i = 1; i < l->n; i++) {
            jv k = lower_key(m, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], cs);
            if (llm__j_vorder(m, OP_LT, id == F_MAX ? bk : k, id == F_MAX ? k : bk, line)) {
                best = i;
                bk = k;
            }
        }
        return l->v[best];
    }
    case F_REPLACE: {
        jv *o0 = arg(a, 0, "old"), *w0 = arg(a, 1, "new");
        if (!o0 || !w0)
            llm__j_fail(m, line, "replace() needs the arguments 'old' and 'new'");
        jv o = llm__j_to_str(m, *o0), w = llm__j_to_str(m, *w0);
        jv c = argv_or(a, 2, "count", NONE);
        return llm__j_s_replace(m, llm__j_to_str(m, v), o, w,
                                c.t == V_NONE ? -1 : llm__j_int_arg(m, c, line, "count"));
    }
    case F_REVERSE: {
        if (v.t == V_STR) {
            size_t cnt, *off = cp_offsets(m, v.u.s.p, v.u.s.n, &cnt);
            sb b = {0};
            for (size_t i = cnt; i-- > 0;)
                llm__j_sb_put(m, &b, v.u.s.p + off[i], off[i + 1] - off[i]);
            return sb_val(&b);
        }
        jlist *l = llm__j_iter_items(m, v, line), *r = llm__j_new_list(m, l->n);
        for (size_t i = l->n; i-- > 0;)
            llm__j_list_push(m, r, l->v[i]);
        return mk_list(r, SUB_GEN); /* reversed(): an iterator */
    }
    case F_ROUND: return f_round(m, v, a, line);
    case F_SAFE:
    case F_STRING: return llm__j_to_str(m, v);
    case F_SORT: {
        int rev = llm__j_truthy(argv_or(a, 0, "reverse", mk_bool(0)));
        int cs = llm__j_truthy(argv_or(a, 1, "case_sensitive", mk_bool(0)));
        jv *attr = arg(a, 2, "attribute");
        jlist *l = llm__j_iter_items(m, v, line);
        size_t n = l->n;
        jv *items = llm__j_alloc(m, llm__j_mul_size(m, n + 1, sizeof(jv)));
        jv *keys = llm__j_alloc(m, llm__j_mul_size(m, n + 1, sizeof(jv)));
        for (size_t i = 0; i < n; i++) {
            items[i] = l->v[i];
            keys[i] = lower_key(m, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], cs);
        }
        sort_vals(m, items, keys, n, rev, line);
        jlist *r = llm__j_new_list(m, n);
        for (size_t i = 0; i < n; i++)
            llm__j_list_push(m, r, items[i]);
        return mk_list(r, 0);
    }
    case F_SUM: {
        jv *attr = arg(a, 0, "attribute");
        jv acc = argv_or(a, 1, "start", mk_int(0));
        jlist *l = llm__j_iter_items(m, v, line);
        for (size_t i = 0; i < l->n; i++)
            acc = llm__j_arith(m, OP_ADD, acc, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i],
                               line);
        return acc;
    }
    case F_TITLE: {
        /* jinja2 capitalizes each word split at runs of [-\s({[<] */
        jv s = llm__j_to_str(m, v);
        sb b = {0};
        int at_start = 1;
        for (size_t i = 0; i < s.u.s.n;) {
            uint32_t c = llm__j_u8dec(s.u.s.p, s.u.s.n, &i);
            int sep =
                llm__j_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
            llm__j_sb_cp(m, &b, sep ? c : at_start ? llm__j_cp_upper(c) : llm__j_cp_lower(c));
            at_start = sep;
        }
        return sb_val(&b);
    }
    case F_TOJSON: return f_tojson(m, v, a, line);
    case F_TRIM: {
        jv ch = argv_or(a, 0, "chars", NONE);
        if (ch.t != V_NONE)
            llm__j_need_str(m, &ch, line, "chars");
        return llm__j_s_strip(llm__j_to_str(m, v), ch, 3);
    }
    case F_TRUNCATE: {
        /* jinja2 measures the value itself; only strings get cut */
        int64_t len = llm__j_int_arg(m, argv_or(a, 0, "length", mk_int(255)), line, "length");
        int killwords = llm__j_truthy(argv_or(a, 1, "killwords", mk_bool(0)));
        jv end = llm__j_to_str(m, argv_or(a, 2, "end", mk_str("...", 3)));
        jv lw = argv_or(a, 3, "leeway", NONE);
        int64_t leeway = lw.t == V_NONE ? 5 : llm__j_int_arg(m, lw, line, "leeway");
        int64_t endn = (int64_t)llm__j_u8len(end.u.s.p, end.u.s.n);
        if (len < endn)
            llm__j_fail(m, line, "expected length >= %lld, got %lld", (long long)endn,
                        (long long)len);
        if (leeway < 0)
            llm__j_fail(m, line, "expected leeway >= 0, got %lld", (long long)leeway);
        if (v.t == V_UNDEF)
            return v;
        if ((v.t == V_LIST && v.sub != SUB_GEN) || v.t == V_DICT) {
            int64_t n = v.t == V_DICT ? (int64_t)v.u.d->n : (int64_t)v.u.l->n;
            if (n <= len + leeway)
                return v;
            llm__j_fail(m, line, "'%s' object has no attribute 'rsplit'", llm__j_type_name(v));
        }
        if (v.t != V_STR)
            llm__j_fail(m, line, "object of type '%s' has no len()", llm__j_type_name(v));
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
        llm__j_sb_put(m, &b, v.u.s.p, cut);
        llm__j_sb_put(m, &b, end.u.s.p, end.u.s.n);
        return sb_val(&b);
    }
    case F_WORDCOUNT: {
        jv s = llm__j_to_str(m, v);
        int64_t k = 0;
        int in = 0;
        for (size_t i = 0; i < s.u.s.n;) {
            int w = llm__j_cp_word(llm__j_u8dec(s.u.s.p, s.u.s.n, &i));
            k += w && !in;
            in = w;
        }
        return mk_int(k);
    }
    default:
        llm__j_fail(m, line, "no filter named '%.*s'", (int)nl, name);
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
        jlist *l = llm__j_iter_items(m, v, line), *out = llm__j_new_list(m, l->n);
        jv *attr = arg(a, -1, "attribute");
        if (attr) {
            jv *def = arg(a, -1, "default");
            for (size_t i = 0; i < l->n; i++) {
                jv x = attr_path(m, l->v[i], *attr, line);
                llm__j_list_push(m, out, (x.t == V_UNDEF && def) ? *def : x);
            }
            return mk_list(out, SUB_GEN);
        }
        jv fname = llm__j_need_str(m, arg(a, 0, NULL), line, "map filter name");
        int fid = name_index(filter_names, F_COUNT_, fname.u.s.p, fname.u.s.n);
        if (fid < 0)
            llm__j_fail(m, line, "no filter named '%.*s'", (int)fname.u.s.n, fname.u.s.p);
        jargs rest = *a;
        rest.pos++;
        rest.np--;
        for (size_t i = 0; i < l->n; i++) {
            jv r = llm__j_apply_filter(m, fid, fname.u.s.p, fname.u.s.n, l->v[i], &rest, line);
            llm__j_list_push(m, out, r);
        }
        return mk_list(out, SUB_GEN);
    }
    case F_UNIQUE: {
        int cs = llm__j_truthy(argv_or(a, 0, "case_sensitive", mk_bool(0)));
        jv *attr = arg(a, 1, "attribute");
        jlist *l = llm__j_iter_items(m, v, line), *out = llm__j_new_list(m, 0),
              *seen = llm__j_new_list(m, 0);
        for (size_t i = 0; i < l->n; i++) {
            jv k = lower_key(m, attr ? attr_path(m, l->v[i], *attr, line) : l->v[i], cs);
            if (!llm__j_hashable(k))
                llm__j_fail(m, line, "unhashable type: '%s'", llm__j_type_name(k));
            if (!llm__j_vcontains(m, mk_list(seen, 0), k, line)) {
                llm__j_list_push(m, seen, k);
                llm__j_list_push(m, out, l->v[i]);
            }
        }
        return mk_list(out, SUB_GEN);
    }
    case F_ITEMS: {
        if (v.t == V_UNDEF)
            return mk_list(llm__j_new_list(m, 0), SUB_GEN);
        if (v.t != V_DICT)
            llm__j_fail(m, line, "Can only get item pairs from a mapping.");
        jfn f = {FN_METHOD, 0, NULL, NULL, v, "items", 5};
        jargs none = {0};
        jv r = llm__j_call_method(m, &f, &none, line);
        r.sub = SUB_GEN;
        return r;
    }
    default:
        llm__j_fail(m, line, "internal error: not a generator filter");
    }
}

/* ---- tests ------------------------------------------------------------------------ */

int llm__j_run_test(jm *m, int id, const char *name, size_t nl, jv v, jargs *a, int line)
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
        jv s = llm__j_to_str(m, v);
        jargs none = {0};
        return llm__j_truthy(
            llm__j_str_method(m, s, id == TS_LOWER ? "islower" : "isupper", 7, &none, line));
    }
    case TS_EVEN:
    case TS_ODD: {
        jv r = llm__j_arith(m, OP_MOD, v, mk_int(2), line);
        return num_f(r) == (id == TS_ODD ? 1 : 0);
    }
    default:
        break;
    }
    if (!x)
        llm__j_fail(m, line, "test '%.*s' needs an argument", (int)nl, name);
    switch (id) {
    case TS_DIVISIBLEBY: return num_f(llm__j_arith(m, OP_MOD, v, *x, line)) == 0;
    case TS_EQ: case TS_EQUALTO: case TS_EQSIGN: return llm__j_veq(m, v, *x);
    case TS_NE: case TS_NESIGN: return !llm__j_veq(m, v, *x);
    case TS_LT: case TS_LTSIGN: case TS_LESSTHAN: return llm__j_vorder(m, OP_LT, v, *x, line);
    case TS_LE: case TS_LESIGN: return llm__j_vorder(m, OP_LE, v, *x, line);
    case TS_GT: case TS_GTSIGN: case TS_GREATERTHAN: return llm__j_vorder(m, OP_GT, v, *x, line);
    case TS_GE: case TS_GESIGN: return llm__j_vorder(m, OP_GE, v, *x, line);
    case TS_IN: return llm__j_vcontains(m, *x, v, line);
    case TS_SAMEAS:
        if (v.t != x->t)
            return 0;
        if (v.t == V_LIST)
            return v.u.l == x->u.l;
        if (v.t == V_DICT || v.t == V_NS)
            return v.u.d == x->u.d;
        return llm__j_veq(m, v, *x);
    default:
        llm__j_fail(m, line, "no test named '%.*s'", (int)nl, name);
    }
}

/* ---- global functions ----------------------------------------------------------- */

#define MAX_RANGE 100000       /* jinja2's sandbox refuses larger range() calls too */

static _Thread_local int64_t fixed_time = -1;

void llm__jinja_fix_time(int64_t t)
{
    fixed_time = t;
}

jv llm__j_call_builtin(jm *m, jfn *f, jargs *a, int line)
{
    switch (f->builtin) {
    case G_RANGE: {
        if (a->np < 1 || a->np > 3 || a->nk)
            llm__j_fail(m, line, "range expected 1 to 3 integer arguments");
        int64_t st = 0, en, step = 1;
        if (a->np == 1) {
            en = llm__j_int_arg(m, a->pos[0], line, "range argument");
        } else {
            st = llm__j_int_arg(m, a->pos[0], line, "range argument");
            en = llm__j_int_arg(m, a->pos[1], line, "range argument");
            if (a->np == 3)
                step = llm__j_int_arg(m, a->pos[2], line, "range argument");
        }
        if (step == 0)
            llm__j_fail(m, line, "range() arg 3 must not be zero");
        double cnt = step > 0 ? ceil(((double)en - (double)st) / (double)step)
                              : ceil(((double)st - (double)en) / (double)-step);
        if (cnt > MAX_RANGE)
            llm__j_fail(m, line,
                        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
                        MAX_RANGE);
        jlist *l = llm__j_new_list(m, cnt > 0 ? (size_t)cnt : 0);
        for (int64_t i = st; step > 0 ? i < en : i > en; i += step)
            llm__j_list_push(m, l, mk_int(i));
        return mk_list(l, 0);
    }
    case G_NAMESPACE:
    case G_DICT: {
        jdict *d = llm__j_new_dict(m);
        for (int i = 0; i < a->np; i++) {
            if (a->pos[i].t != V_DICT && a->pos[i].t != V_NS)
                llm__j_fail(m, line, "%s() takes mappings and keyword arguments",
                            global_names[f->builtin]);
            for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                llm__j_dict_set(m, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]);
        }
        for (int k = 0; k < a->nk; k++)
            llm__j_dict_set(m, d, mk_str(a->kn[k]->s, a->kn[k]->sn), a->kv[k]);
        return mk_dict(d, f->builtin == G_NAMESPACE);
    }
    case G_RAISE: {
        jv msg = llm__j_to_str(m, argv_or(a, 0, "message", mk_str("", 0)));
        llm__j_fail(m, line, "%.*s", (int)(msg.u.s.n > 700 ? 700 : msg.u.s.n), msg.u.s.p);
    }
    case G_STRFTIME: {
        jv fmt = llm__j_need_str(m, arg(a, 0, NULL), line, "strftime_now format");
        struct tm tmv;
        time_t now = fixed_time >= 0 ? (time_t)fixed_time : time(NULL);
        if (fixed_time >= 0)
            gmtime_r(&now, &tmv);
        else
            localtime_r(&now, &tmv);
        char *z = llm__j_strdup(m, fmt.u.s.p, fmt.u.s.n);
        for (size_t cap = 256; cap <= 65536; cap *= 4) {
            char *buf = llm__j_alloc(m, cap);
            size_t k = strftime(buf, cap, z, &tmv);
            if (k > 0 || fmt.u.s.n == 0)
                return mk_str(buf, k);
        }
        return mk_str("", 0);
    }
    default:
        llm__j_fail(m, line, "unknown function");
    }
}

static llm__jinja_val *ctx_val(llm__jinja_ctx *c, jv v)
{
    llm__jinja_val *r = llm__j_arena_alloc(&c->ar, sizeof *r);
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
    char *p = llm__j_arena_alloc(&c->ar, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return ctx_val(c, mk_str(p, n));
}

llm__jinja_val *llm__jinja_list(llm__jinja_ctx *c)
{
    jlist *l = llm__j_arena_alloc(&c->ar, sizeof *l);
    if (!l)
        return NULL;
    memset(l, 0, sizeof *l);
    return ctx_val(c, mk_list(l, 0));
}

llm__jinja_val *llm__jinja_dict(llm__jinja_ctx *c)
{
    jdict *d = llm__j_arena_alloc(&c->ar, sizeof *d);
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
    llm__j_list_push(m, list->v.u.l, v->v);
    return ctx_done(m, 0);
}

llm_status llm__jinja_dict_set(llm__jinja_ctx *c, llm__jinja_val *dict, const char *key,
                               const llm__jinja_val *v)
{
    if (!c || !dict || !key || !v || dict->v.t != V_DICT)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: dict_set needs a dict, key and value");
    CTX_TRY(c, m)
    llm__j_dict_set(m, dict->v.u.d, mk_str(llm__j_strdup(m, key, strlen(key)), strlen(key)), v->v);
    return ctx_done(m, 0);
}

llm_status llm__jinja_set(llm__jinja_ctx *c, const char *name, const llm__jinja_val *v)
{
    if (!c || !name || !v)
        return llm__fail(LLM_ERR_INVALID_ARG, "template: set needs a name and a value");
    CTX_TRY(c, m)
    llm__j_dict_set(m, &c->globals, mk_str(llm__j_strdup(m, name, strlen(name)), strlen(name)),
                    v->v);
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
            llm__j_dict_set(m, &c->globals, d->k[i], d->v[i]);
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
    llm__j_fail(p->m, 0, "JSON: %s at offset %zu", what, p->i);
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
            llm__j_sb_c(p->m, &b, c);
            continue;
        }
        if (p->i >= p->n)
            js_fail(p, "unterminated string");
        c = p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/': llm__j_sb_c(p->m, &b, c); break;
        case 'b': llm__j_sb_c(p->m, &b, '\b'); break;
        case 'f': llm__j_sb_c(p->m, &b, '\f'); break;
        case 'n': llm__j_sb_c(p->m, &b, '\n'); break;
        case 'r': llm__j_sb_c(p->m, &b, '\r'); break;
        case 't': llm__j_sb_c(p->m, &b, '\t'); break;
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
            size_t k = (u >= 0xDC80 && u <= 0xDCFF) ? 0 : llm__j_u8enc(u, t);
            if (!k) {
                t[0] = (char)0xED;
                t[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                t[2] = (char)(0x80 | (u & 0x3F));
                k = 3;
            }
            llm__j_sb_put(p->m, &b, t, k);
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
        jdict *d = obj ? llm__j_new_dict(p->m) : NULL;
        jlist *l = obj ? NULL : llm__j_new_list(p->m, 0);
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
                    llm__j_dict_set(p->m, d, k, js_value(p));
                } else {
                    llm__j_list_push(p->m, l, js_value(p));
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
    llm__jinja_val *r = llm__j_alloc(m, sizeof *r);
    r->v = v;
    llm__free(p);
    ctx_done(m, 0);
    return r;
}

