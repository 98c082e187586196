/* test_jinja.c - the Jinja interpreter (lib/jinja.c).
 *
 * tests/data/chat_goldens_jinja.txt holds about 300 small templates with JSON contexts
 * (expressions, filters, tests, methods, loops, scoping, whitespace control, errors, and
 * the family templates with tool calls), each rendered by Python's jinja2 in Hugging
 * Face's chat template environment (tests/unit/gen_chat_goldens.py). Each must come out
 * byte-identical here or fail as jinja2 failed. Then hand-written cases for what the
 * goldens cannot show: limits, error lines, the value API, JSON input, threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "test.h"

#define FIXED_TIME 1721952000

static char data_dir[600];

/* Whether `dir` holds the golden file; if so it becomes data_dir. */
static int try_dir(const char *dir, const char *probe)
{
    char p[800];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof data_dir)
        return 0;
    snprintf(p, sizeof p, "%s/%s", dir, probe);
    FILE *f = fopen(p, "rb");
    if (!f)
        return 0;
    fclose(f);
    memcpy(data_dir, dir, n + 1);
    return 1;
}

/* tests/data: $LLM_TEST_DATA, else beside this source file (meson runs tests in the build
 * directory, where __FILE__ is relative to it), else from the working directory. */
static int find_data_dir(void)
{
    const char *probe = "chat_goldens_jinja.txt";
    const char *env = getenv("LLM_TEST_DATA");
    if (env && try_dir(env, probe))
        return 1;
    char here[400];
    snprintf(here, sizeof here, "%s", __FILE__);
    char *slash = strrchr(here, '/');
    if (slash) {
        strcpy(slash, "/../data");
        if (try_dir(here, probe))
            return 1;
    }
    return try_dir("tests/data", probe) || try_dir("../tests/data", probe);
}

/* Renders `tmpl` with the globals of a JSON object. Returns the status; *out (malloc'd by
 * the library) on success. */
static llm_status render_json(const char *tmpl, size_t tn, const char *json, char **out,
                              size_t *on)
{
    llm__jinja_tmpl *t = NULL;
    llm__jinja_ctx *c = NULL;
    *out = NULL;
    *on = 0;
    llm_status st = llm__jinja_parse(tmpl, tn, &t);
    if (st)
        return st;
    st = llm__jinja_ctx_create(&c);
    if (!st) {
        llm__jinja_val *v = llm__jinja_json(c, json, strlen(json));
        st = v ? llm__jinja_set_all(c, v) : LLM_ERR_INVALID_ARG;
    }
    if (!st)
        st = llm__jinja_render(t, c, out, on);
    llm__jinja_ctx_free(c);
    llm__jinja_tmpl_free(t);
    return st;
}

static llm_status render(const char *tmpl, char **out)
{
    size_t n;
    return render_json(tmpl, strlen(tmpl), "{}", out, &n);
}

/* Renders and compares with the expected text; "ERR:..." expects an error containing it. */
static int expect(const char *tmpl, const char *json, const char *want)
{
    char *out;
    size_t n;
    llm_status st = render_json(tmpl, strlen(tmpl), json ? json : "{}", &out, &n);
    int ok;
    if (!strncmp(want, "ERR:", 4)) {
        ok = st != LLM_OK && strstr(llm_last_error(), want + 4) != NULL;
        if (!ok)
            fprintf(stderr, "  %s: want error '%s', got %s '%s'\n", tmpl, want + 4,
                    st ? "error" : "output", st ? llm_last_error() : out);
    } else {
        ok = st == LLM_OK && n == strlen(want) && !memcmp(out, want, n);
        if (!ok)
            fprintf(stderr, "  %s: want '%s', got '%s'\n", tmpl, want,
                    st ? llm_last_error() : out);
    }
    llm__free(out);
    return ok;
}

/* ---- goldens -------------------------------------------------------------------------- */

typedef struct rec {
    char key;
    int none;
    const char *val;
    size_t len;
} rec;

static int next_rec(const char **pp, const char *end, rec *out)
{
    const char *p = *pp;
    while (p < end && *p == '#') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    if (p >= end)
        return 0;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || nl - p < 3 || p[1] != ' ')
        return -1;
    out->key = p[0];
    out->none = p[2] == '-';
    out->len = out->none ? 0 : strtoul(p + 2, NULL, 10);
    p = nl + 1;
    out->val = p;
    if (!out->none) {
        if ((size_t)(end - p) < out->len + 1 || p[out->len] != '\n')
            return -1;
        p += out->len + 1;
    }
    *pp = p;
    return 1;
}

static void test_goldens(void)
{
    char path[700];
    snprintf(path, sizeof path, "%s/chat_goldens_jinja.txt", data_dir);
    size_t n;
    char *file = test_read_file(path, &n);
    CHECK_MSG(file != NULL, "cannot read %s", path);
    if (!file)
        return;
    llm__jinja_fix_time(FIXED_TIME);
    const char *p = file, *end = file + n;
    rec r, name = {0}, tmpl = {0}, json = {0};
    int rc, total = 0, pass = 0, n_out = 0, n_err = 0;
    while ((rc = next_rec(&p, end, &r)) > 0) {
        if (r.key == 'C') {
            name = r;
        } else if (r.key == 'T') {
            tmpl = r;
        } else if (r.key == 'J') {
            json = r;
        } else {
            char *js = strndup(json.val, json.len);
            char *out;
            size_t on;
            llm_status st = render_json(tmpl.val, tmpl.len, js, &out, &on);
            int ok;
            if (r.key == 'O') {
                n_out++;
                ok = st == LLM_OK && on == r.len && !memcmp(out, r.val, on);
                if (!ok) {
                    size_t i = 0;
                    while (!st && i < on && i < r.len && out[i] == r.val[i])
                        i++;
                    fprintf(stderr, "  case '%.*s': differs at byte %zu\n    want: %.*s\n    "
                            "got:  %.*s\n", (int)name.len, name.val, i,
                            (int)(r.len - i > 120 ? 120 : r.len - i), r.val + i,
                            st ? 200 : (int)(on - i > 120 ? 120 : on - i),
                            st ? llm_last_error() : out + i);
                }
            } else {
                n_err++;
                ok = st == LLM_ERR_TEMPLATE;
                /* raise_exception: the message itself */
                if (ok && r.key == 'X') {
                    char *msg = strndup(r.val, r.len);
                    ok = strstr(llm_last_error(), msg) != NULL;
                    free(msg);
                }
                if (!ok)
                    fprintf(stderr, "  case '%.*s': want error (%.*s), got %s: %.*s\n",
                            (int)name.len, name.val, (int)r.len, r.val,
                            st ? "error" : "output", st ? 200 : (int)(on > 200 ? 200 : on),
                            st ? llm_last_error() : out);
            }
            if (!ok)
                fprintf(stderr, "    template: %.*s\n", (int)(tmpl.len > 300 ? 300 : tmpl.len),
                        tmpl.val);
            total++;
            pass += ok;
            CHECK_MSG(ok, "golden case %.*s", (int)name.len, name.val);
            llm__free(out);
            free(js);
        }
    }
    CHECK_MSG(rc == 0, "malformed golden file");
    printf("     jinja goldens: %d/%d as jinja2 (%d outputs, %d errors)\n", pass, total, n_out,
           n_err);
    CHECK(total >= 250);
    free(file);
    llm__jinja_fix_time(-1);
}

/* ---- hand-written cases ----------------------------------------------------------------- */

static void test_expressions(void)
{
    CHECK(expect("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 2 ** 3 ** 2 }}", NULL, "7|9|64"));
    /* jinja2's grammar puts ~ below +, so this is ('a' ~ 1) + 2: a type error */
    CHECK(expect("{{ 'a' ~ 1 + 2 }}", NULL, "ERR:unsupported operand"));
    CHECK(expect("{{ 'a' ~ (1 + 2) }}|{{ 1 ~ 2 * 3 }}", NULL, "a3|16"));
    CHECK(expect("{{ -2 | abs }}", NULL, "2"));               /* filter after unary minus */
    CHECK(expect("{{ not 1 == 2 }}", NULL, "True"));          /* not looser than == */
    CHECK(expect("{{ x.y | default('d') }}", "{\"x\": {}}", "d"));
    CHECK(expect("{{ 'b' if x else 'c' }}", "{\"x\": [0]}", "b"));
    CHECK(expect("{{ [1, 2, 3][-1:] }}{{ 'héllo'[1:3] }}", NULL, "[3]él"));
    CHECK(expect("{{ 0.1 + 0.2 }}|{{ 1e100 }}|{{ 3.0 }}|{{ -1.5e-10 }}", NULL,
                 "0.30000000000000004|1e+100|3.0|-1.5e-10"));
    CHECK(expect("{{ 9223372036854775807 }}", NULL, "9223372036854775807"));
    /* Python's integers are unbounded; here they are 64-bit and overflow is an error */
    CHECK(expect("{{ 9223372036854775807 + 1 }}", NULL, "ERR:integer overflow"));
    CHECK(expect("{{ 99999999999999999999 }}", NULL, "ERR:too large"));
    CHECK(expect("{{ {'a': 1} == {'a': 1.0} }}{{ [1] == (1,) }}", NULL, "TrueFalse"));
}

/* A macro defined inside a loop or block outlives it when a namespace keeps it: its
 * scope must still be there when it runs. (jinja2 itself prints its internal 'missing'
 * marker for i here; the value the loop last bound is what a closure should see.) */
static void test_escaping_macro(void)
{
    CHECK(expect("{% set ns = namespace() %}{% for i in [1, 2] %}{% macro m() %}[{{ i }}]"
                 "{% endmacro %}{% set ns.f = m %}{% endfor %}{{ ns.f() }}{% set b %}"
                 "{% macro k(v=7) %}<{{ v }}>{% endmacro %}{% set ns.g = k %}{% endset %}"
                 "{{ ns.g() }}{{ ns.g(8) }}", NULL, "[2]<7><8>"));
}

static void test_whitespace(void)
{
    /* trim_blocks eats the newline after a block tag; lstrip_blocks the indent before it */
    CHECK(expect("a\n  {% if 1 %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc"));
    CHECK(expect("a  {%- if 1 -%}  b  {%- endif %}", NULL, "ab"));
    CHECK(expect("a\n  {%+ if 1 %}b{% endif %}", NULL, "a\n  b"));
    CHECK(expect("{{ 1 }}\n{{ 2 }}", NULL, "1\n2")); /* no trimming after }} */
    CHECK(expect("x\n", NULL, "x"));                 /* one final newline dropped */
    CHECK(expect("x\r\ny\r", NULL, "x\ny"));
    CHECK(expect("{# c #}\nz", NULL, "z"));
}

static void test_errors_have_lines(void)
{
    char *out;
    CHECK(render("a\nb\n{{ x + }}", &out) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "line 3") != NULL);
    CHECK(render("{% for a in b %}\n\n{% endif %}", &out) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "line 3") != NULL);
    CHECK(render("\n\n\n{{ raise_exception('bad ' ~ 42) }}", &out) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "line 4: bad 42") != NULL);
    CHECK(render("{{ 'x' | nope }}", &out) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "no filter named 'nope'") != NULL);
    CHECK(render("{% if 0 %}{{ 'x' | nope }}{% endif %}ok", &out) == LLM_OK);
    CHECK(out && !strcmp(out, "ok"));
    llm__free(out);
    CHECK(render("{% foo %}", &out) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "unknown tag 'foo'") != NULL);
}

static llm_status parse_s(const char *src, llm__jinja_tmpl **t)
{
    return llm__jinja_parse(src, strlen(src), t);
}

static void test_limits(void)
{
    char *out;
    size_t n;
    /* nesting in the source: an error, not a stack overflow */
    char deep[20000];
    size_t k = 0;
    k += (size_t)sprintf(deep + k, "{{ ");
    for (int i = 0; i < 5000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 5000; i++)
        deep[k++] = ')';
    k += (size_t)sprintf(deep + k, " }}");
    deep[k] = '\0';
    CHECK(render_json(deep, k, "{}", &out, &n) == LLM_ERR_TEMPLATE);
    k = 0;
    for (int i = 0; i < 1500; i++)
        k += (size_t)sprintf(deep + k, "{%% if 1 %%}");
    CHECK(render_json(deep, k, "{}", &out, &n) == LLM_ERR_TEMPLATE);
    k = 0;
    for (int i = 0; i < 5000; i++)
        k += (size_t)sprintf(deep + k, "-");
    k += (size_t)sprintf(deep + k, "1");
    char *t = malloc(k + 16);
    sprintf(t, "{{ %s }}", deep);
    CHECK(render(t, &out) == LLM_ERR_TEMPLATE);
    free(t);
    /* operator chains: the parser builds them without recursion, the tree is deep */
    char *chain = malloc(400010);
    k = (size_t)sprintf(chain, "{{ 1");
    for (int i = 0; i < 100000; i++)
        k += (size_t)sprintf(chain + k, "+1");
    k += (size_t)sprintf(chain + k, " }}");
    CHECK(render_json(chain, k, "{}", &out, &n) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "too deeply nested") != NULL);
    k = (size_t)sprintf(chain, "{{ x");
    for (int i = 0; i < 1000; i++)
        k += (size_t)sprintf(chain + k, "|trim");
    k += (size_t)sprintf(chain + k, " }}");
    CHECK(render_json(chain, k, "{\"x\": \" a \"}", &out, &n) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "recursion") != NULL);
    k = (size_t)sprintf(chain, "{{ x");
    for (int i = 0; i < 100; i++)
        k += (size_t)sprintf(chain + k, "|trim");
    k += (size_t)sprintf(chain + k, " }}");
    CHECK(render_json(chain, k, "{\"x\": \" a \"}", &out, &n) == LLM_OK && !strcmp(out, "a"));
    llm__free(out);
    free(chain);
    /* unbounded recursion at run time */
    CHECK(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", &out) ==
          LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "recursion") != NULL);
    /* a deeply nested value built at run time cannot blow the stack when printed */
    CHECK(render("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}"
                 "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", &out) == LLM_ERR_TEMPLATE);
    /* range is capped as in jinja2's sandbox */
    CHECK(render("{{ range(100001) | length }}", &out) == LLM_ERR_TEMPLATE);
    /* work and output limits of a context */
    llm__jinja_tmpl *tm;
    llm__jinja_ctx *c;
    CHECK(parse_s("{% for i in range(100000) %}{% for j in range(100000) %}"
                           "{% endfor %}{% endfor %}", &tm) == LLM_OK);
    CHECK(llm__jinja_ctx_create(&c) == LLM_OK);
    llm__jinja_ctx_limits(c, 0, 0, 1000000);
    CHECK(llm__jinja_render(tm, c, &out, &n) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "too long") != NULL);
    llm__jinja_tmpl_free(tm);
    CHECK(parse_s("{% for i in range(1000) %}0123456789{% endfor %}", &tm) == LLM_OK);
    llm__jinja_ctx_limits(c, 5000, 0, 0);
    CHECK(llm__jinja_render(tm, c, &out, &n) == LLM_ERR_TEMPLATE);
    CHECK(strstr(llm_last_error(), "output exceeds") != NULL);
    llm__jinja_ctx_limits(c, 10000, 0, 0);
    CHECK(llm__jinja_render(tm, c, &out, &n) == LLM_OK && n == 10000);
    llm__free(out);
    llm__jinja_tmpl_free(tm);
    /* memory: doubling a string runs into the arena limit, as an error */
    CHECK(parse_s("{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                           "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", &tm) == LLM_OK);
    llm__jinja_ctx_limits(c, 0, 1 << 20, 0);
    CHECK(llm__jinja_render(tm, c, &out, &n) == LLM_ERR_NO_MEMORY);
    CHECK(llm__jinja_render(tm, c, &out, &n) == LLM_ERR_NO_MEMORY); /* the context is reusable */
    llm__jinja_tmpl_free(tm);
    llm__jinja_ctx_free(c);
}

/* Running out of memory at every point a render allocates: the render's arena is capped
 * at growing sizes, so each run fails at a later allocation, until one succeeds. Every
 * run must end in LLM_OK or LLM_ERR_NO_MEMORY (the sanitizers check it leaks nothing). */
static void test_out_of_memory_walk(void)
{
    char path[1000];
    snprintf(path, sizeof path, "%s/templates/llama3.1.jinja", data_dir);
    size_t n;
    char *src = test_read_file(path, &n);
    CHECK(src != NULL);
    if (!src)
        return;
    llm__jinja_tmpl *t;
    llm__jinja_ctx *c;
    CHECK(llm__jinja_parse(src, n, &t) == LLM_OK);
    CHECK(llm__jinja_ctx_create(&c) == LLM_OK);
    const char *js = "{\"bos_token\": \"<s>\", \"add_generation_prompt\": true, \"messages\": ["
                     "{\"role\": \"system\", \"content\": \"Be brief.\"},"
                     "{\"role\": \"user\", \"content\": \"Hi\"},"
                     "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}";
    llm__jinja_val *v = llm__jinja_json(c, js, strlen(js));
    CHECK(v && llm__jinja_set_all(c, v) == LLM_OK);
    int fails = 0, ok = 0;
    for (size_t limit = 1; limit < (64u << 20) && !ok; limit += 16384) {
        char *out;
        size_t on;
        llm__jinja_ctx_limits(c, 0, limit, 0);
        llm_status st = llm__jinja_render(t, c, &out, &on);
        if (st == LLM_OK) {
            ok = 1;
            CHECK(strstr(out, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>") != NULL);
            llm__free(out);
        } else {
            CHECK_EQ_INT(st, LLM_ERR_NO_MEMORY);
            fails++;
        }
    }
    CHECK(ok && fails > 0);
    llm__jinja_ctx_free(c);
    llm__jinja_tmpl_free(t);
    free(src);
}

static void test_value_api(void)
{
    llm__jinja_ctx *c;
    CHECK(llm__jinja_ctx_create(&c) == LLM_OK);
    llm__jinja_val *l = llm__jinja_list(c), *d = llm__jinja_dict(c);
    CHECK(llm__jinja_dict_set(c, d, "k", llm__jinja_str(c, "v\"x", 3, 0)) == LLM_OK);
    CHECK(llm__jinja_dict_set(c, d, "n", llm__jinja_int(c, -3)) == LLM_OK);
    CHECK(llm__jinja_dict_set(c, d, "f", llm__jinja_float(c, 0.5)) == LLM_OK);
    CHECK(llm__jinja_dict_set(c, d, "b", llm__jinja_bool(c, 1)) == LLM_OK);
    CHECK(llm__jinja_dict_set(c, d, "z", llm__jinja_none(c)) == LLM_OK);
    CHECK(llm__jinja_list_push(c, l, d) == LLM_OK);
    CHECK(llm__jinja_list_push(c, l, llm__jinja_str(c, "borrowed", 8, 1)) == LLM_OK);
    CHECK(llm__jinja_set(c, "items", l) == LLM_OK);
    CHECK(llm__jinja_list_push(c, d, l) == LLM_ERR_INVALID_ARG); /* not a list */
    CHECK(llm__jinja_set(c, NULL, l) == LLM_ERR_INVALID_ARG);
    llm__jinja_tmpl *t;
    const char *src = "{{ items | tojson }}|{{ items[0].k }}";
    CHECK(llm__jinja_parse(src, strlen(src), &t) == LLM_OK);
    char *out;
    size_t n;
    CHECK(llm__jinja_render(t, c, &out, &n) == LLM_OK);
    CHECK(out && !strcmp(out, "[{\"k\": \"v\\\"x\", \"n\": -3, \"f\": 0.5, \"b\": true, "
                              "\"z\": null}, \"borrowed\"]|v\"x"));
    llm__free(out);
    /* a context may be rendered again, and a template with several contexts */
    CHECK(llm__jinja_render(t, c, &out, &n) == LLM_OK);
    llm__free(out);
    llm__jinja_tmpl_free(t);
    /* JSON input */
    const char *js = "{\"a\": [1, 2.5, \"\\u00e9\\ud83d\\ude00\", true, null]}";
    CHECK(llm__jinja_json(c, js, strlen(js)) != NULL);
    CHECK(llm__jinja_json(c, "{\"a\": }", 7) == NULL);
    CHECK(strstr(llm_last_error(), "JSON") != NULL);
    CHECK(llm__jinja_json(c, "[1, 2] x", 8) == NULL);
    CHECK(llm__jinja_json(c, "\"unterminated", 13) == NULL);
    char deep[1000];
    memset(deep, '[', sizeof deep);
    CHECK(llm__jinja_json(c, deep, sizeof deep) == NULL);
    CHECK(expect("{{ a[2] }}|{{ a[2] | length }}|{{ a | tojson }}",
                 "{\"a\": [1, 2.5, \"\\u00e9\\ud83d\\ude00\", true, null, 12345678901234567890]}",
                 "é😀|2|[1, 2.5, \"é😀\", true, null, 1.2345678901234567e+19]"));
    llm__jinja_ctx_free(c);
    /* NULL arguments */
    CHECK(llm__jinja_parse(NULL, 3, &t) == LLM_ERR_INVALID_ARG);
    CHECK(llm__jinja_render(NULL, NULL, &out, &n) == LLM_ERR_INVALID_ARG);
    llm__jinja_tmpl_free(NULL);
    llm__jinja_ctx_free(NULL);
}

static void test_strftime(void)
{
    llm__jinja_fix_time(0);
    CHECK(expect("{{ strftime_now('%Y-%m-%d %H:%M:%S') }}", NULL, "1970-01-01 00:00:00"));
    llm__jinja_fix_time(FIXED_TIME);
    CHECK(expect("{{ strftime_now('%d %b %Y') }}", NULL, "26 Jul 2024"));
    llm__jinja_fix_time(-1);
    char *out;
    CHECK(render("{{ strftime_now('%Y') }}", &out) == LLM_OK);
    CHECK(out && strlen(out) == 4 && atoi(out) >= 2024);
    llm__free(out);
}

/* One parsed template rendered by several threads at once, each with its own context. */
static llm__jinja_tmpl *shared_tmpl;

static void *render_thread(void *arg)
{
    long id = (long)(intptr_t)arg;
    llm__jinja_ctx *c;
    if (llm__jinja_ctx_create(&c))
        return (void *)1;
    llm__jinja_set(c, "id", llm__jinja_int(c, id));
    long bad = 0;
    for (int i = 0; i < 200; i++) {
        char *out, want[64];
        size_t n;
        if (llm__jinja_render(shared_tmpl, c, &out, &n)) {
            bad++;
            continue;
        }
        snprintf(want, sizeof want, "%ld:0,1,2,3,4,5,6,7,8,9", id);
        bad += strcmp(out, want) != 0;
        llm__free(out);
    }
    llm__jinja_ctx_free(c);
    return (void *)(intptr_t)bad;
}

static void test_threads(void)
{
    const char *src = "{{ id }}:{{ range(10) | join(',') }}";
    CHECK(llm__jinja_parse(src, strlen(src), &shared_tmpl) == LLM_OK);
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, render_thread, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        CHECK(r == NULL);
    }
    llm__jinja_tmpl_free(shared_tmpl);
}

/* Random garbage and random mutations of real templates: errors are fine, crashes not. */
static void test_garbage(void)
{
    static const char *frags[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "if", "for",
                                  "endif", "endfor", "x", "in", "'", "\"", "(", ")", "[", "]",
                                  "{", "}", "|", "upper", "1", "2.5", " ", "\n", "set", "=",
                                  "not", "is", "defined", "loop", ".", ",", ":", "~", "*",
                                  "raw", "endraw", "macro", "else", "\\", "é", "namespace"};
    unsigned long long seed = 12345;
    int rendered = 0, failed = 0;
    for (int it = 0; it < 20000; it++) {
        char src[256];
        size_t k = 0;
        int nf = 1 + (int)(test_rand_u64(&seed) % 30);
        for (int f = 0; f < nf; f++) {
            const char *s = frags[test_rand_u64(&seed) % (sizeof frags / sizeof frags[0])];
            size_t l = strlen(s);
            if (k + l >= sizeof src)
                break;
            memcpy(src + k, s, l);
            k += l;
        }
        src[k] = '\0';
        char *out;
        size_t n;
        llm_status st = render_json(src, k, "{\"x\": [1, \"a\"]}", &out, &n);
        if (st == LLM_OK) {
            rendered++;
            CHECK(out != NULL && strlen(out) == n);
            llm__free(out);
        } else {
            failed++;
            CHECK(st == LLM_ERR_TEMPLATE && llm_last_error()[0]);
        }
    }
    printf("     garbage: %d rendered, %d rejected, none crashed\n", rendered, failed);
    CHECK(rendered > 0 && failed > 0);
}

int main(void)
{
    if (!find_data_dir()) {
        fprintf(stderr, "test_jinja: cannot find tests/data (set LLM_TEST_DATA)\n");
        return 1;
    }
    TEST_RUN(test_goldens);
    TEST_RUN(test_expressions);
    TEST_RUN(test_whitespace);
    TEST_RUN(test_escaping_macro);
    TEST_RUN(test_errors_have_lines);
    TEST_RUN(test_limits);
    TEST_RUN(test_out_of_memory_walk);
    TEST_RUN(test_value_api);
    TEST_RUN(test_strftime);
    TEST_RUN(test_threads);
    TEST_RUN(test_garbage);
    return test_summary();
}
