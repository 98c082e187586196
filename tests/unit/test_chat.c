/* test_chat.c - chat templates against jinja2's own output.
 *
 * tests/data/chat_goldens.txt holds, for 16 template families (tests/data/templates/),
 * the text Python's jinja2 renders in Hugging Face's apply_chat_template environment for
 * 33 conversations with and without add_generation_prompt
 * (tests/unit/gen_chat_goldens.py writes it). Every case must come out byte-identical
 * through llm__chat_render, or fail the way jinja2 failed. Plus the error cases and the
 * buffer contract. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "jinja.h"
#include "test.h"

#define FIXED_TIME 1721952000 /* the generator pins strftime_now() to this (UTC) */

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
    const char *probe = "chat_goldens.txt";
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

static char *slurp_data(const char *rel, size_t *n)
{
    char p[1000];
    snprintf(p, sizeof p, "%s/%s", data_dir, rel);
    return test_read_file(p, n);
}

/* ---- the golden file: "KEY LEN\n<LEN bytes>\n" records ------------------------------ */

typedef struct rec {
    char key;
    int none; /* "KEY -" */
    char *val; /* NUL-terminated copy */
    size_t len;
} rec;

typedef struct reader {
    const char *p, *end;
} reader;

static int next_rec(reader *r, rec *out)
{
    while (r->p < r->end && *r->p == '#') {
        const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
        r->p = nl ? nl + 1 : r->end;
    }
    if (r->p >= r->end)
        return 0;
    const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    if (!nl || nl - r->p < 3 || r->p[1] != ' ')
        return -1;
    out->key = r->p[0];
    out->none = r->p[2] == '-';
    out->len = out->none ? 0 : strtoul(r->p + 2, NULL, 10);
    r->p = nl + 1;
    if (out->none) {
        out->val = NULL;
        return 1;
    }
    if ((size_t)(r->end - r->p) < out->len + 1 || r->p[out->len] != '\n')
        return -1;
    out->val = malloc(out->len + 1);
    memcpy(out->val, r->p, out->len);
    out->val[out->len] = '\0';
    r->p += out->len + 1;
    return 1;
}

/* ---- golden cases ------------------------------------------------------------------ */

#define MAX_MSGS 64

typedef struct fam_stats {
    char name[64];
    int pass, fail;
} fam_stats;

static int n_cases_total, n_cases_pass;

/* Renders one case and compares: output (O), raise_exception message (X), other error (Y). */
static int run_case(const char *tmpl, const char *bos, const char *eos, int agp,
                    const llm_chat_message *msgs, int n, char kind, const char *want,
                    size_t want_len, const char *cname)
{
    char probe[1];
    int32_t r = llm__chat_render(tmpl, msgs, n, agp, bos, eos, probe, 0);
    if (kind != 'O') {
        if (r != INT32_MIN) {
            fprintf(stderr, "  %s: expected an error (%s), got %d\n", cname, want, (int)r);
            return 0;
        }
        if (kind == 'X' && !strstr(llm_last_error(), want)) {
            fprintf(stderr, "  %s: error '%s' lacks '%s'\n", cname, llm_last_error(), want);
            return 0;
        }
        return 1;
    }
    if (r != -(int32_t)(want_len + 1)) {
        fprintf(stderr, "  %s: size query gave %d, want %d (%s)\n", cname, (int)r,
                -(int)(want_len + 1), r == INT32_MIN ? llm_last_error() : "");
        return 0;
    }
    char *buf = malloc(want_len + 1);
    r = llm__chat_render(tmpl, msgs, n, agp, bos, eos, buf, (int32_t)(want_len + 1));
    int ok = r == (int32_t)want_len && !memcmp(buf, want, want_len) && buf[want_len] == '\0';
    if (!ok) {
        size_t i = 0;
        while (r >= 0 && i < want_len && i < (size_t)r && buf[i] == want[i])
            i++;
        fprintf(stderr, "  %s: output differs at byte %zu (got %d bytes, want %zu)\n", cname, i,
                (int)r, want_len);
        fprintf(stderr, "    want: ...%.60s\n    got:  ...%.60s\n", want + i,
                r >= 0 ? buf + i : "");
    }
    free(buf);
    return ok;
}

static void test_goldens(void)
{
    size_t n;
    char *file = slurp_data("chat_goldens.txt", &n);
    CHECK_MSG(file != NULL, "cannot read %s/chat_goldens.txt", data_dir);
    if (!file)
        return;
    llm__jinja_fix_time(FIXED_TIME);
    reader rd = {file, file + n};
    rec r;
    char *tmpl = NULL, *bos = NULL, *eos = NULL, *cname = NULL;
    char *roles[MAX_MSGS], *contents[MAX_MSGS];
    int nm = 0, agp = 0, rc;
    fam_stats fams[32];
    int nf = 0;
    while ((rc = next_rec(&rd, &r)) > 0) {
        switch (r.key) {
        case 'T': {
            free(tmpl);
            char rel[256];
            snprintf(rel, sizeof rel, "templates/%s", r.val);
            tmpl = slurp_data(rel, NULL);
            CHECK_MSG(tmpl != NULL, "cannot read template %s", r.val);
            if (nf < 32) {
                snprintf(fams[nf].name, sizeof fams[nf].name, "%s", r.val);
                fams[nf].pass = fams[nf].fail = 0;
                nf++;
            }
            free(r.val);
            break;
        }
        case 'B': free(bos); bos = r.val; break;
        case 'E': free(eos); eos = r.val; break;
        case 'C':
            free(cname);
            cname = r.val;
            for (int i = 0; i < nm; i++) {
                free(roles[i]);
                free(contents[i]);
            }
            nm = 0;
            break;
        case 'G': agp = r.val[0] == '1'; free(r.val); break;
        case 'R':
            if (nm < MAX_MSGS)
                roles[nm] = r.val;
            break;
        case 'M':
            if (nm < MAX_MSGS)
                contents[nm++] = r.val;
            break;
        case 'O':
        case 'X':
        case 'Y': {
            llm_chat_message msgs[MAX_MSGS];
            for (int i = 0; i < nm; i++) {
                msgs[i].role = roles[i];
                msgs[i].content = contents[i];
            }
            int ok = tmpl && run_case(tmpl, bos, eos, agp, msgs, nm, r.key, r.val ? r.val : "",
                                      r.len, cname ? cname : "?");
            n_cases_total++;
            n_cases_pass += ok;
            if (nf) {
                fams[nf - 1].pass += ok;
                fams[nf - 1].fail += !ok;
            }
            CHECK_MSG(ok, "golden case %s", cname ? cname : "?");
            free(r.val);
            break;
        }
        default:
            CHECK_MSG(0, "unknown record key '%c'", r.key);
            free(r.val);
        }
    }
    CHECK_MSG(rc == 0, "malformed golden file");
    for (int i = 0; i < nm; i++) {
        free(roles[i]);
        free(contents[i]);
    }
    for (int i = 0; i < nf; i++)
        printf("     %-20s %3d/%d\n", fams[i].name, fams[i].pass, fams[i].pass + fams[i].fail);
    printf("     golden cases: %d/%d identical to jinja2\n", n_cases_pass, n_cases_total);
    CHECK(n_cases_total >= 16 * 60);
    CHECK(nf >= 16);
    free(tmpl);
    free(bos);
    free(eos);
    free(cname);
    free(file);
    llm__jinja_fix_time(-1);
}

/* ---- templates carried by models ------------------------------------------------------ */

/* The tiny models of tests/data/arch/ (tests/model/gen_arch_models.py) carry the templates
 * of other families, and their vocabularies those families' BOS and EOS texts. Every golden
 * case of a model's template is rendered the way an application does it: llm_chat_apply
 * with the model and no template of its own (the GGUF's template, BOS/EOS from the
 * tokenizer). */
static const struct {
    const char *model, *tmpl;
} carried[] = {
    {"llama", "mistral.jinja"},       {"mixtral", "mistral-v3.jinja"},
    {"llama3", "llama3.1.jinja"},     {"llama-linear", "llama3.2.jinja"},
    {"qwen2", "qwen2.5.jinja"},       {"qwen3", "qwen3.jinja"},
    {"qwen3moe", "chatml.jinja"},     {"phi3", "phi3.jinja"},
    {"gemma2", "gemma2.jinja"},
};

static int apply_case(const llm_model *m, int agp, const llm_chat_message *msgs, int n,
                      char kind, const char *want, size_t want_len, const char *cname)
{
    int32_t r = llm_chat_apply(m, NULL, msgs, n, agp, NULL, 0);
    if (kind != 'O') {
        if (r != INT32_MIN)
            fprintf(stderr, "  %s: expected an error (%s), got %d\n", cname, want, (int)r);
        return r == INT32_MIN && (kind != 'X' || strstr(llm_last_error(), want));
    }
    if (r != -(int32_t)(want_len + 1)) {
        fprintf(stderr, "  %s: size query gave %d, want %d (%s)\n", cname, (int)r,
                -(int)(want_len + 1), r == INT32_MIN ? llm_last_error() : "");
        return 0;
    }
    char *buf = malloc(want_len + 1);
    r = llm_chat_apply(m, NULL, msgs, n, agp, buf, (int32_t)(want_len + 1));
    const int ok = r == (int32_t)want_len && !memcmp(buf, want, want_len);
    if (!ok)
        fprintf(stderr, "  %s: output differs from jinja2's\n", cname);
    free(buf);
    return ok;
}

static void test_templates_in_models(void)
{
    size_t n;
    char *file = slurp_data("chat_goldens.txt", &n);
    CHECK(file != NULL);
    if (!file)
        return;
    llm__jinja_fix_time(FIXED_TIME);
    int families = 0, total = 0, passed = 0;
    for (size_t k = 0; k < sizeof carried / sizeof carried[0]; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/arch/%s.gguf", data_dir, carried[k].model);
        llm_model_params mp;
        llm_model_params_init(&mp);
        mp.n_threads = 1;
        llm_model *m = NULL;
        CHECK_MSG(llm_model_load(path, &mp, &m) == LLM_OK, "%s: %s", path, llm_last_error());
        if (!m)
            continue;
        char rel[256];
        snprintf(rel, sizeof rel, "templates/%s", carried[k].tmpl);
        char *want_tmpl = slurp_data(rel, NULL);
        const char *have = llm_model_chat_template(m);
        CHECK_MSG(want_tmpl && have && !strcmp(want_tmpl, have), "%s carries %s",
                  carried[k].model, carried[k].tmpl);
        free(want_tmpl);
        char bos[64] = "", eos[64] = "";
        llm_token_to_piece(m, llm_model_token(m, LLM_TOKEN_BOS), bos, sizeof bos, LLM_DETOKENIZE_RENDER_SPECIAL);
        llm_token_to_piece(m, llm_model_token(m, LLM_TOKEN_EOS), eos, sizeof eos, LLM_DETOKENIZE_RENDER_SPECIAL);
        /* the golden cases of this template */
        reader rd = {file, file + n};
        rec r;
        int in_family = 0, nm = 0, agp = 0, cases = 0, ok_cases = 0;
        char *roles[MAX_MSGS], *contents[MAX_MSGS], *cname = NULL;
        while (next_rec(&rd, &r) > 0) {
            if (r.key == 'T') {
                in_family = !strcmp(r.val, carried[k].tmpl);
            } else if (in_family && (r.key == 'B' || r.key == 'E')) {
                /* the goldens' BOS/EOS are the model's (an undefined BOS is unused) */
                CHECK_MSG(r.none || !strcmp(r.val, r.key == 'B' ? bos : eos), "%s: %c '%s'",
                          carried[k].model, r.key, r.val ? r.val : "-");
            } else if (r.key == 'C') {
                free(cname);
                cname = r.val;
                r.val = NULL;
                for (int i = 0; i < nm; i++) {
                    free(roles[i]);
                    free(contents[i]);
                }
                nm = 0;
            } else if (r.key == 'G') {
                agp = r.val && r.val[0] == '1';
            } else if (r.key == 'R' && nm < MAX_MSGS) {
                roles[nm] = r.val;
                r.val = NULL;
            } else if (r.key == 'M' && nm < MAX_MSGS) {
                contents[nm++] = r.val;
                r.val = NULL;
            } else if (in_family && (r.key == 'O' || r.key == 'X' || r.key == 'Y')) {
                llm_chat_message msgs[MAX_MSGS];
                for (int i = 0; i < nm; i++) {
                    msgs[i].role = roles[i];
                    msgs[i].content = contents[i];
                }
                const int ok = apply_case(m, agp, msgs, nm, r.key, r.val ? r.val : "", r.len,
                                          cname ? cname : "?");
                cases++;
                ok_cases += ok;
            }
            free(r.val);
        }
        for (int i = 0; i < nm; i++) {
            free(roles[i]);
            free(contents[i]);
        }
        free(cname);
        printf("     %-13s %-17s %3d/%d\n", carried[k].model, carried[k].tmpl, ok_cases, cases);
        CHECK_MSG(cases >= 60 && ok_cases == cases, "%s: %d of %d cases", carried[k].model,
                  ok_cases, cases);
        families += cases >= 60;
        total += cases;
        passed += ok_cases;
        llm_model_free(m);
    }
    printf("     templates in models: %d/%d cases identical to jinja2 over %d models\n", passed,
           total, families);
    CHECK(families == (int)(sizeof carried / sizeof carried[0]));
    llm__jinja_fix_time(-1);
    free(file);
}

/* ---- the models we ship for ---------------------------------------------------------- */

static void test_smollm2(void)
{
    /* SmolLM2-135M-Instruct's template as its GGUF carries it */
    char *t = slurp_data("templates/smollm2.jinja", NULL);
    CHECK(t != NULL);
    if (!t)
        return;
    llm_chat_message m[] = {{"user", "Hi there"}};
    char buf[512];
    int32_t r = llm__chat_render(t, m, 1, 1, "<|im_start|>", "<|im_end|>", buf, sizeof buf);
    const char *want = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                       "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                       "<|im_start|>assistant\n";
    CHECK_EQ_INT(r, (int32_t)strlen(want));
    CHECK(r > 0 && !strcmp(buf, want));
    llm_chat_message m2[] = {{"system", "Be terse."}, {"user", "Q"}, {"assistant", "A"}};
    r = llm__chat_render(t, m2, 3, 0, "<|im_start|>", "<|im_end|>", buf, sizeof buf);
    want = "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
           "<|im_start|>assistant\nA<|im_end|>\n";
    CHECK(r > 0 && !strcmp(buf, want));
    free(t);
}

/* The models we ship for: SmolLM2's GGUF carries the template the goldens use; Gemma 3's
 * carries none, so the model falls back to llm__chat_builtin_template("gemma3"). Skipped
 * (with a message) when the model files are not there. */
static void test_model_files(void)
{
    char path[1024];
    llm_gguf *g = NULL;
    test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path);
    if (llm__gguf_open(path, 1, &g) != LLM_OK) {
        printf("     skipped: %s not found\n", path);
        return;
    }
    const char *t = NULL;
    CHECK_EQ_INT(llm__gguf_get_str(g, "tokenizer.chat_template", &t), 1);
    char *f = slurp_data("templates/smollm2.jinja", NULL);
    CHECK(t && f && !strcmp(t, f));
    free(f);
    llm__gguf_close(g);
    g = NULL;
    test_model_path("gemma-3-270m-q4_k_m.gguf", path, sizeof path);
    if (llm__gguf_open(path, 1, &g) != LLM_OK) {
        printf("     skipped: %s not found\n", path);
        return;
    }
    const char *arch = NULL;
    CHECK_EQ_INT(llm__gguf_get_str(g, "general.architecture", &arch), 1);
    CHECK(arch && !strcmp(arch, "gemma3"));
    CHECK(llm__gguf_find(g, "tokenizer.chat_template") == NULL);
    CHECK(arch && llm__chat_builtin_template(arch) != NULL);
    llm__gguf_close(g);
}

static void test_gemma3_builtin(void)
{
    const char *b = llm__chat_builtin_template("gemma3");
    CHECK(b != NULL);
    CHECK(llm__chat_builtin_template("gemma2") != NULL);
    CHECK(llm__chat_builtin_template("gemma") == llm__chat_builtin_template("gemma2"));
    CHECK(llm__chat_builtin_template("llama") == NULL);
    CHECK(llm__chat_builtin_template(NULL) == NULL);
    /* the test data file is the same text, so the goldens cover the builtin */
    char *f = slurp_data("templates/gemma3.jinja", NULL);
    CHECK(f && b && !strcmp(f, b));
    free(f);
    f = slurp_data("templates/gemma2.jinja", NULL);
    CHECK(f && !strcmp(f, llm__chat_builtin_template("gemma2")));
    free(f);
    if (!b)
        return;
    llm_chat_message m[] = {{"system", "You are kind."}, {"user", "  Hello  "},
                            {"assistant", "Hi!"}, {"user", "Bye"}};
    char buf[512];
    int32_t r = llm__chat_render(b, m, 4, 1, "<bos>", "<eos>", buf, sizeof buf);
    const char *want = "<bos><start_of_turn>user\nYou are kind.\n\nHello<end_of_turn>\n"
                       "<start_of_turn>model\nHi!<end_of_turn>\n<start_of_turn>user\nBye"
                       "<end_of_turn>\n<start_of_turn>model\n";
    CHECK_EQ_INT(r, (int32_t)strlen(want));
    CHECK(r > 0 && !strcmp(buf, want));
    /* roles must alternate: the template raises */
    llm_chat_message bad[] = {{"user", "a"}, {"user", "b"}};
    r = llm__chat_render(b, bad, 2, 1, "<bos>", "<eos>", buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    CHECK(strstr(llm_last_error(), "Conversation roles must alternate") != NULL);
}

/* ---- errors and the buffer contract ------------------------------------------------ */

static void test_errors(void)
{
    llm_chat_message m[] = {{"user", "hi"}};
    char buf[256];
    /* syntax error, with its line */
    int32_t r = llm__chat_render("line one\n{% if x %}\n{{ 1 + }}\n{% endif %}", m, 1, 0, NULL,
                                 NULL, buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    CHECK_MSG(strstr(llm_last_error(), "line 3") != NULL, "%s", llm_last_error());
    /* raise_exception: its message */
    r = llm__chat_render("\n{{ raise_exception('Only user roles, got ' + messages[0].role) }}", m,
                         1, 0, NULL, NULL, buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    CHECK_MSG(strstr(llm_last_error(), "line 2: Only user roles, got user") != NULL, "%s",
              llm_last_error());
    /* unknown filter */
    r = llm__chat_render("{{ messages | frobnicate }}", m, 1, 0, NULL, NULL, buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    CHECK_MSG(strstr(llm_last_error(), "frobnicate") != NULL, "%s", llm_last_error());
    /* type error */
    r = llm__chat_render("{{ messages + 1 }}", m, 1, 0, NULL, NULL, buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    CHECK(strstr(llm_last_error(), "unsupported operand") != NULL);
    /* unterminated tags */
    r = llm__chat_render("{% for m in messages %}{{ m.role }}", m, 1, 0, NULL, NULL, buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    CHECK(strstr(llm_last_error(), "endfor") != NULL);
    r = llm__chat_render("{{ messages", m, 1, 0, NULL, NULL, buf, sizeof buf);
    CHECK_EQ_INT(r, INT32_MIN);
    /* invalid arguments */
    CHECK_EQ_INT(llm__chat_render(NULL, m, 1, 0, NULL, NULL, buf, sizeof buf), INT32_MIN);
    CHECK_EQ_INT(llm__chat_render("x", NULL, 1, 0, NULL, NULL, buf, sizeof buf), INT32_MIN);
    CHECK_EQ_INT(llm__chat_render("x", m, -1, 0, NULL, NULL, buf, sizeof buf), INT32_MIN);
    CHECK_EQ_INT(llm__chat_render("x", m, 1, 0, NULL, NULL, NULL, 5), INT32_MIN);
    CHECK_EQ_INT(llm__chat_render("x", m, 1, 0, NULL, NULL, buf, -1), INT32_MIN);
    /* zero messages and NULL strings are fine */
    CHECK_EQ_INT(llm__chat_render("[{{ messages | length }}]", NULL, 0, 0, NULL, NULL, buf,
                                  sizeof buf), 3);
    llm_chat_message nul[] = {{NULL, NULL}};
    r = llm__chat_render("{{ messages[0].role is none }}{{ messages[0].content is none }}"
                         "{{ bos_token is defined }}", nul, 1, 0, NULL, NULL, buf, sizeof buf);
    CHECK(r > 0 && !strcmp(buf, "TrueTrueFalse"));
}

static void test_buffer_contract(void)
{
    const char *t = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    llm_chat_message m[] = {{"user", "hello"}, {"assistant", "wörld"}};
    const char *want = "<user>hello<assistant>wörld";
    int32_t len = (int32_t)strlen(want);
    char buf[64];
    memset(buf, 'Z', sizeof buf);
    /* size query with no buffer */
    CHECK_EQ_INT(llm__chat_render(t, m, 2, 0, NULL, NULL, NULL, 0), -(len + 1));
    /* too small by one: room for the text but not the NUL */
    CHECK_EQ_INT(llm__chat_render(t, m, 2, 0, NULL, NULL, buf, len), -(len + 1));
    CHECK(buf[0] == 'Z'); /* nothing written */
    /* exact fill */
    CHECK_EQ_INT(llm__chat_render(t, m, 2, 0, NULL, NULL, buf, len + 1), len);
    CHECK(!memcmp(buf, want, (size_t)len + 1));
    CHECK(buf[len + 1] == 'Z');
    /* larger */
    CHECK_EQ_INT(llm__chat_render(t, m, 2, 0, NULL, NULL, buf, sizeof buf), len);
    CHECK(!strcmp(buf, want));
    /* empty output */
    CHECK_EQ_INT(llm__chat_render("{# nothing #}", m, 2, 0, NULL, NULL, NULL, 0), -1);
    char one[1] = {'Z'};
    CHECK_EQ_INT(llm__chat_render("{# nothing #}", m, 2, 0, NULL, NULL, one, 1), 0);
    CHECK(one[0] == '\0');
}

static void test_add_generation_prompt_and_tokens(void)
{
    const char *t = "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|"
                    "{{ documents }}";
    llm_chat_message m[] = {{"user", "x"}};
    char buf[128];
    CHECK(llm__chat_render(t, m, 1, 1, "<s>", "</s>", buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "<s>|</s>|True|None|None"));
    CHECK(llm__chat_render(t, m, 1, 0, NULL, NULL, buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "||False|None|None"));
    CHECK(llm__chat_render(t, m, 1, 7, "", "", buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "||True|None|None"));
}

int main(void)
{
    if (!find_data_dir()) {
        fprintf(stderr, "test_chat: cannot find tests/data (set LLM_TEST_DATA)\n");
        return 1;
    }
    TEST_RUN(test_goldens);
    TEST_RUN(test_smollm2);
    TEST_RUN(test_templates_in_models);
    TEST_RUN(test_model_files);
    TEST_RUN(test_gemma3_builtin);
    TEST_RUN(test_errors);
    TEST_RUN(test_buffer_contract);
    TEST_RUN(test_add_generation_prompt_and_tokens);
    return test_summary();
}
