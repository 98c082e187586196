/* main.c - `llm`, the command-line tool: run a prompt, chat, or describe a model.
 *
 *   llm run  -m MODEL -p PROMPT [options]   generate from a prompt, streamed to stdout
 *   llm chat -m MODEL [-s SYSTEM] [options] interactive chat (stdin may be a pipe)
 *   llm info MODEL                          what the model file holds
 *
 * Uses only the public API (llm.h). Every failure prints the status and the library's
 * message and exits 1. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llm.h>

/* ---- options ---------------------------------------------------------------------- */

typedef struct options {
    const char *model;
    const char *prompt;
    const char *prompt_file;
    const char *system;
    const char *chat_template; /* overrides the model's */
    int chat;                  /* run: wrap the prompt as one user message */
    int32_t threads;
    const char *backend; /* "auto", "cpu", "cuda" */
    int32_t device;
    int have_seed;
    uint64_t seed;
    float temp, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
    int32_t top_k, repeat_last_n;
    int32_t max_tokens; /* < 0: until end of generation or a full context */
    int32_t n_ctx, n_batch, kv_type;
    int quiet, verbose;
} options;

static const char *prog = "llm";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: error: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* A failed library call: status text and the library's message. */
static void die_status(const char *what, llm_status st, const char *msg)
{
    die("%s: %s%s%s", what, llm_status_str(st), msg && *msg ? ": " : "", msg ? msg : "");
}

static void *xrealloc(void *p, size_t n)
{
    void *r = realloc(p, n ? n : 1);
    if (!r)
        die("out of memory (%zu bytes)", n);
    return r;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

static const char *usage_main =
    "usage: llm <command> [options]\n"
    "\n"
    "commands:\n"
    "  run   -m MODEL -p PROMPT   generate text from a prompt\n"
    "  chat  -m MODEL             chat interactively (reads lines from stdin)\n"
    "  info  MODEL                show what a model file holds\n"
    "\n"
    "`llm <command> --help` lists the command's options. `llm --version` prints the\n"
    "library version and build.\n";

static const char *usage_common =
    "model and context:\n"
    "  -m, --model FILE        GGUF model file (required)\n"
    "  -t, --threads N         compute threads (default: one per core)\n"
    "      --backend NAME      auto, cpu or cuda; auto takes the GPU when the CUDA module\n"
    "                          and a device are there (default: auto)\n"
    "      --device N          GPU index for the cuda backend (default: 0)\n"
    "  -c, --ctx-size N        context size in tokens (default: min(4096, trained))\n"
    "  -b, --batch-size N      prompt tokens decoded per batch (default: 512)\n"
    "      --kv-type T         KV cache type: f16, bf16 or q8_0 (default: f16)\n"
    "sampling:\n"
    "      --temp T            temperature; <= 0 is greedy (default: 0.8)\n"
    "      --top-k N           keep the N most likely tokens; 0 = off (default: 40)\n"
    "      --top-p P           nucleus sampling; 1 = off (default: 0.95)\n"
    "      --min-p P           drop tokens below P x the best; 0 = off (default: 0.05)\n"
    "      --repeat-penalty R  penalise repeated tokens; 1 = off (default: 1)\n"
    "      --repeat-last-n N   tokens looked back by the penalties (default: 64)\n"
    "      --presence-penalty P, --frequency-penalty F   OpenAI-style (default: 0)\n"
    "      --seed N            random seed (default: from the clock)\n"
    "  -n, --max-tokens N      most tokens generated (per reply in chat); -1 = until the\n"
    "                          end-of-generation token or a full context (default: -1)\n"
    "output:\n"
    "  -q, --quiet             no progress bar, no statistics, no warnings\n"
    "  -v, --verbose           library info messages on stderr\n"
    "  -h, --help              this help\n";

static const char *usage_run =
    "usage: llm run -m MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates text from a prompt and streams it to stdout; statistics go to stderr.\n"
    "\n"
    "  -p, --prompt TEXT       the prompt (special tokens such as <|im_start|> are parsed)\n"
    "  -f, --file FILE         read the prompt from FILE ('-' for stdin)\n"
    "      --chat, -cnv        wrap the prompt in the model's chat template as one user\n"
    "                          message, ready for the assistant's answer\n"
    "      --system TEXT       with --chat: a system message first\n"
    "      --chat-template T   use template text T instead of the model's\n"
    "  -s, --seed N            random seed\n";

static const char *usage_chat =
    "usage: llm chat -m MODEL [-s SYSTEM] [options]\n"
    "\n"
    "Chats with the model: each line read from stdin is a user message; the assistant's\n"
    "reply streams to stdout. The whole conversation is rendered with the model's chat\n"
    "template each turn and only its new tokens are decoded. `/exit` or end of input quits.\n"
    "\n"
    "  -s, --system TEXT       system prompt (in chat, -s is the system prompt; use --seed)\n"
    "      --chat-template T   use template text T instead of the model's\n";

static const char *usage_info =
    "usage: llm info MODEL\n"
    "\n"
    "Prints the architecture, name, size, vocabulary, context length, layers, embedding\n"
    "width, special tokens and chat template of a model file.\n"
    "\n"
    "  -q, --quiet             no progress bar\n"
    "  -h, --help              this help\n";

static void print_usage(const char *cmd, FILE *f)
{
    if (!cmd) {
        fputs(usage_main, f);
    } else if (!strcmp(cmd, "info")) {
        fputs(usage_info, f);
    } else {
        fputs(!strcmp(cmd, "run") ? usage_run : usage_chat, f);
        fputc('\n', f);
        fputs(usage_common, f);
    }
}

static int64_t parse_int(const char *opt, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        die("%s: '%s' is not an integer in [%lld, %lld]", opt, v, (long long)lo, (long long)hi);
    return x;
}

static float parse_float(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        die("%s: '%s' is not a number", opt, v);
    return x;
}

static uint64_t parse_seed(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        die("%s: '%s' is not a non-negative integer", opt, v);
    return x;
}

static int is_opt(const char *a, const char *s1, const char *s2)
{
    return !strcmp(a, s1) || (s2 && !strcmp(a, s2));
}

/* The value of option `opt`: the text after '=' or the next argument. */
static const char *opt_value(const char *opt, const char *inline_val, int *i, int argc,
                             char **argv)
{
    if (inline_val)
        return inline_val;
    if (*i + 1 >= argc)
        die("option %s needs a value", opt);
    return argv[++*i];
}

/* Parses the arguments after the subcommand into *o. "--opt=value" and "--opt value"
 * both work. */
static void parse_args(const char *cmd, int argc, char **argv, options *o)
{
    int is_chat = !strcmp(cmd, "chat"), is_info = !strcmp(cmd, "info");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char name[64];
        const char *eq = a[0] == '-' && a[1] == '-' ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            val = eq + 1;
            a = name;
        }
#define IS(s1, s2) is_opt(a, s1, s2)
#define VALUE() opt_value(a, val, &i, argc, argv)
        if (IS("-h", "--help")) {
            print_usage(cmd, stdout);
            exit(0);
        } else if (a[0] != '-' && is_info && !o->model) {
            o->model = a;
        } else if (IS("-m", "--model")) {
            o->model = VALUE();
        } else if (IS("-q", "--quiet")) {
            o->quiet = 1;
        } else if (IS("-v", "--verbose")) {
            o->verbose = 1;
        } else if (is_info) {
            die("info: unknown option '%s' (see llm info --help)", a);
        } else if (IS("-p", "--prompt") && !is_chat) {
            o->prompt = VALUE();
        } else if (IS("-f", "--file") && !is_chat) {
            o->prompt_file = VALUE();
        } else if (IS("--chat", "-cnv") && !is_chat) {
            o->chat = 1;
        } else if (IS("--system", "-sys") || (is_chat && IS("-s", NULL))) {
            o->system = VALUE();
        } else if (IS("--chat-template", NULL)) {
            o->chat_template = VALUE();
        } else if (IS("-t", "--threads")) {
            o->threads = (int32_t)parse_int(a, VALUE(), 1, 4096);
        } else if (IS("--backend", NULL)) {
            o->backend = VALUE();
        } else if (IS("--device", NULL)) {
            o->device = (int32_t)parse_int(a, VALUE(), 0, 1024);
        } else if (IS("--seed", NULL) || IS("-s", NULL)) {
            o->seed = parse_seed(a, VALUE());
            o->have_seed = 1;
        } else if (IS("--temp", "--temperature")) {
            o->temp = parse_float(a, VALUE());
        } else if (IS("--top-k", NULL)) {
            o->top_k = (int32_t)parse_int(a, VALUE(), 0, INT32_MAX);
        } else if (IS("--top-p", NULL)) {
            o->top_p = parse_float(a, VALUE());
        } else if (IS("--min-p", NULL)) {
            o->min_p = parse_float(a, VALUE());
        } else if (IS("--repeat-penalty", NULL)) {
            o->repeat_penalty = parse_float(a, VALUE());
        } else if (IS("--repeat-last-n", NULL)) {
            o->repeat_last_n = (int32_t)parse_int(a, VALUE(), 1, INT32_MAX);
        } else if (IS("--presence-penalty", NULL)) {
            o->presence_penalty = parse_float(a, VALUE());
        } else if (IS("--frequency-penalty", NULL)) {
            o->frequency_penalty = parse_float(a, VALUE());
        } else if (IS("-n", "--max-tokens") || IS("--n-predict", NULL)) {
            o->max_tokens = (int32_t)parse_int(a, VALUE(), -1, INT32_MAX);
        } else if (IS("-c", "--ctx-size")) {
            o->n_ctx = (int32_t)parse_int(a, VALUE(), 0, INT32_MAX);
        } else if (IS("-b", "--batch-size")) {
            o->n_batch = (int32_t)parse_int(a, VALUE(), 0, INT32_MAX);
        } else if (IS("--kv-type", NULL)) {
            const char *v = VALUE();
            if (!strcmp(v, "f16"))
                o->kv_type = LLM_KV_F16;
            else if (!strcmp(v, "bf16"))
                o->kv_type = LLM_KV_BF16;
            else if (!strcmp(v, "q8_0"))
                o->kv_type = LLM_KV_Q8_0;
            else
                die("%s: --kv-type must be f16, bf16 or q8_0, not '%s'", cmd, v);
        } else {
            die("%s: unknown option or argument '%s' (see llm %s --help)", cmd, argv[i], cmd);
        }
#undef IS
#undef VALUE
    }
    if (!o->model)
        die("%s: no model given (-m MODEL)", cmd);
}

/* ---- small utilities -------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A growable byte string. */
typedef struct strbuf {
    char *p;
    size_t n, cap;
} strbuf;

static void sb_add(strbuf *s, const char *p, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->p = xrealloc(s->p, s->cap);
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

/* A growable token array. */
typedef struct tokvec {
    llm_token *p;
    int32_t n, cap;
} tokvec;

static void tv_reserve(tokvec *v, int32_t cap)
{
    if (cap > v->cap) {
        v->p = xrealloc(v->p, (size_t)cap * sizeof *v->p);
        v->cap = cap;
    }
}

static void tv_push(tokvec *v, llm_token t)
{
    if (v->n == v->cap)
        tv_reserve(v, v->cap ? v->cap * 2 : 256);
    v->p[v->n++] = t;
}

static char *read_file(const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        die("cannot open '%s': %s", path, strerror(errno));
    strbuf s = {0};
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sb_add(&s, buf, k);
    if (ferror(f))
        die("cannot read '%s': %s", path, strerror(errno));
    if (f != stdin)
        fclose(f);
    sb_add(&s, "", 0);
    return s.p;
}

/* ---- model loading with a progress bar -------------------------------------------- */

static int progress_shown;

static int on_progress(float p, void *user)
{
    int *last = user;
    int pct = (int)(p * 100.0f + 0.5f);
    if (pct == *last)
        return 0;
    *last = pct;
    const int width = 40;
    int fill = pct * width / 100;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\rloading [%s] %3d%%", bar, pct);
    fflush(stderr);
    progress_shown = 1;
    return 0;
}

static void on_log(llm_log_level level, const char *msg, void *user)
{
    (void)user;
    static const char *names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "llm %s: %s\n", names[level], msg);
}

static llm_model *load_model(const options *o)
{
    if (o->quiet)
        llm_log_set(on_log, LLM_LOG_ERROR, NULL);
    else if (o->verbose)
        llm_log_set(on_log, LLM_LOG_INFO, NULL);
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.n_threads = o->threads;
    mp.backend = o->backend;
    mp.device = o->device;
    int last = -1;
    if (!o->quiet && isatty(STDERR_FILENO)) {
        mp.progress = on_progress;
        mp.progress_user = &last;
    }
    llm_model *model = NULL;
    llm_status st = llm_model_load(o->model, &mp, &model);
    if (progress_shown) {
        fputs("\r\033[K", stderr); /* erase the bar */
        fflush(stderr);
    }
    if (st != LLM_OK)
        die_status(o->model, st, llm_last_error());
    return model;
}

static llm_context *make_context(llm_model *model, const options *o)
{
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = o->n_ctx;
    cp.n_batch = o->n_batch;
    cp.n_threads = o->threads;
    cp.kv_type = o->kv_type;
    llm_context *ctx = NULL;
    llm_status st = llm_context_create(model, &cp, &ctx);
    if (st != LLM_OK)
        die_status("creating the context", st, llm_last_error());
    return ctx;
}

static llm_sampler *make_sampler(const llm_model *model, const options *o)
{
    llm_sampler_params sp;
    llm_sampler_params_init(&sp);
    sp.temperature = o->temp;
    sp.top_k = o->top_k;
    sp.top_p = o->top_p;
    sp.min_p = o->min_p;
    sp.repeat_penalty = o->repeat_penalty;
    sp.presence_penalty = o->presence_penalty;
    sp.frequency_penalty = o->frequency_penalty;
    sp.penalty_last_n = o->repeat_last_n;
    sp.seed = o->have_seed ? o->seed
                           : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
                                 (uint64_t)(now_s() * 1e9);
    llm_sampler *s = NULL;
    llm_status st = llm_sampler_create(model, &sp, &s);
    if (st != LLM_OK)
        die_status("creating the sampler", st, llm_last_error());
    return s;
}

/* ---- tokens and text -------------------------------------------------------------- */

/* Tokenizes text into v (replacing its contents), parsing special tokens and adding BOS
 * when the model wants it. A chat template that writes the BOS text itself would then
 * give two BOS tokens; the duplicate is dropped. */
static void tokenize(const llm_model *model, const char *text, tokvec *v)
{
    const uint32_t flags = LLM_TOKENIZE_ADD_SPECIAL | LLM_TOKENIZE_PARSE_SPECIAL;
    size_t len = strlen(text);
    if (v->cap < 64)
        tv_reserve(v, 64);
    int32_t n = llm_tokenize(model, text, len, v->p, v->cap, flags);
    if (n < 0 && n != INT32_MIN) {
        tv_reserve(v, -n);
        n = llm_tokenize(model, text, len, v->p, v->cap, flags);
    }
    if (n < 0)
        die_status("tokenize", LLM_ERR_INVALID_ARG, llm_last_error());
    v->n = n;
    llm_token bos = llm_model_token(model, LLM_TOKEN_BOS);
    if (bos >= 0 && n >= 2 && v->p[0] == bos && v->p[1] == bos) {
        memmove(v->p, v->p + 1, (size_t)(n - 1) * sizeof *v->p);
        v->n--;
    }
}

/* Renders a conversation with the chat template (two-call pattern). */
static char *render_chat(const llm_model *model, const char *tmpl, const llm_chat_message *msgs,
                         int32_t n)
{
    int32_t cap = 4096;
    char *buf = xrealloc(NULL, (size_t)cap);
    int32_t r = llm_chat_apply(model, tmpl, msgs, n, 1, buf, cap);
    if (r < 0 && r != INT32_MIN) {
        cap = -r;
        buf = xrealloc(buf, (size_t)cap);
        r = llm_chat_apply(model, tmpl, msgs, n, 1, buf, cap);
    }
    if (r < 0) {
        free(buf);
        die_status("chat template", LLM_ERR_TEMPLATE,
                   r == INT32_MIN ? llm_last_error() : "the rendering changed size");
    }
    return buf;
}

/* Streams bytes to stdout, holding back a trailing incomplete UTF-8 sequence until the
 * next piece completes it (byte-level tokens split multi-byte characters). */
typedef struct utf8_out {
    char pending[4];
    int n_pending;
    int last; /* last byte written, for the final newline */
} utf8_out;

/* Length of the incomplete UTF-8 sequence at the end of p[0..n), 0 if none. */
static size_t utf8_incomplete_tail(const unsigned char *p, size_t n)
{
    for (size_t k = 1; k <= 4 && k <= n; k++) {
        unsigned char b = p[n - k];
        if ((b & 0xc0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
        return need > k && b >= 0xc0 && b < 0xf8 ? k : 0;
    }
    return 0; /* no lead byte within reach: invalid text, let it through */
}

static void out_put(utf8_out *u, const char *piece, size_t n)
{
    char stackbuf[512];
    size_t total = (size_t)u->n_pending + n;
    char *tmp = total <= sizeof stackbuf ? stackbuf : xrealloc(NULL, total);
    memcpy(tmp, u->pending, (size_t)u->n_pending);
    memcpy(tmp + u->n_pending, piece, n);
    size_t hold = utf8_incomplete_tail((const unsigned char *)tmp, total);
    size_t emit = total - hold;
    if (emit) {
        fwrite(tmp, 1, emit, stdout);
        u->last = (unsigned char)tmp[emit - 1];
    }
    memcpy(u->pending, tmp + emit, hold);
    u->n_pending = (int)hold;
    fflush(stdout);
    if (tmp != stackbuf)
        free(tmp);
}

/* End of the text: a sequence still incomplete was cut by the token limit; it is dropped
 * rather than written, so that the output stays valid UTF-8. */
static void out_finish(utf8_out *u)
{
    u->n_pending = 0;
    fflush(stdout);
}

/* The text of one token into s (replacing its contents). */
static void token_piece(const llm_model *model, llm_token t, strbuf *s)
{
    if (s->cap < 256) {
        s->cap = 256;
        s->p = xrealloc(s->p, s->cap);
    }
    int32_t n = llm_token_to_piece(model, t, s->p, (int32_t)s->cap, 0);
    if (n < 0 && n != INT32_MIN) {
        s->cap = (size_t)-n + 1;
        s->p = xrealloc(s->p, s->cap);
        n = llm_token_to_piece(model, t, s->p, (int32_t)s->cap, 0);
    }
    if (n < 0)
        die_status("detokenize", LLM_ERR_INVALID_ARG, llm_last_error());
    s->n = (size_t)n;
}

/* ---- decoding and generation ------------------------------------------------------ */

/* Decodes tokens[0..n) into sequence 0 in batches of n_batch, logits for the last only. */
static void decode_tokens(llm_context *ctx, const llm_token *tokens, int32_t n, int32_t n_batch)
{
    for (int32_t i = 0; i < n; i += n_batch) {
        llm_batch b;
        llm_batch_init(&b);
        b.tokens = tokens + i;
        b.n_tokens = n - i < n_batch ? n - i : n_batch;
        llm_status st = llm_decode(ctx, &b);
        if (st != LLM_OK)
            die_status("decode", st, llm_context_last_error(ctx));
    }
}

typedef struct gen_stats {
    int32_t n_prompt, n_gen;
    double t_prompt, t_gen;
} gen_stats;

static void print_stats(const gen_stats *s)
{
    fprintf(stderr, "prompt: %d tokens, %.2f tokens/s | generated: %d tokens, %.2f tokens/s\n",
            (int)s->n_prompt, s->t_prompt > 0 ? s->n_prompt / s->t_prompt : 0.0, (int)s->n_gen,
            s->t_gen > 0 ? s->n_gen / s->t_gen : 0.0);
}

/* Generates from the logits of the last decode until an end-of-generation token,
 * max_tokens, or a full context. Streams the text to stdout, appends it to reply (if
 * given) and every token it decodes to cached. */
static void generate(llm_context *ctx, const llm_model *model, llm_sampler *smpl,
                     const options *o, tokvec *cached, strbuf *reply, gen_stats *stats)
{
    const int32_t n_ctx = llm_context_n_ctx(ctx);
    utf8_out out = {{0}, 0, '\n'};
    strbuf piece = {0};
    double t0 = now_s();
    int32_t n_gen = 0;
    for (;;) {
        if (o->max_tokens >= 0 && n_gen >= o->max_tokens)
            break;
        const float *logits = llm_context_logits(ctx, -1);
        if (!logits)
            die("no logits after decode: %s", llm_context_last_error(ctx));
        llm_token t = llm_sampler_sample(smpl, logits);
        if (t < 0)
            die_status("sample", LLM_ERR_INVALID_ARG, llm_last_error());
        if (llm_model_token_is_eog(model, t))
            break;
        n_gen++;
        token_piece(model, t, &piece);
        out_put(&out, piece.p, piece.n);
        if (reply)
            sb_add(reply, piece.p, piece.n);
        if (o->max_tokens >= 0 && n_gen >= o->max_tokens)
            break; /* no need to decode a token nothing will follow */
        if (llm_kv_seq_length(ctx, 0) >= n_ctx) {
            out_finish(&out);
            if (!o->quiet)
                fprintf(stderr, "\n%s: the context is full (%d tokens); stopping\n", prog,
                        (int)n_ctx);
            break;
        }
        llm_batch b;
        llm_batch_init(&b);
        b.tokens = &t;
        b.n_tokens = 1;
        llm_status st = llm_decode(ctx, &b);
        if (st != LLM_OK)
            die_status("decode", st, llm_context_last_error(ctx));
        tv_push(cached, t);
    }
    out_finish(&out);
    if (reply) { /* the same text as printed */
        reply->n -= utf8_incomplete_tail((const unsigned char *)reply->p, reply->n);
        reply->p[reply->n] = '\0';
    }
    if (out.last != '\n')
        fputc('\n', stdout);
    fflush(stdout);
    stats->n_gen = n_gen;
    stats->t_gen = now_s() - t0;
    free(piece.p);
}

/* ---- commands --------------------------------------------------------------------- */

static int cmd_run(const options *o)
{
    if (!o->prompt && !o->prompt_file)
        die("run: no prompt (-p PROMPT or -f FILE)");
    if (o->prompt && o->prompt_file)
        die("run: give either -p or -f, not both");
    char *text = o->prompt_file ? read_file(o->prompt_file) : xstrdup(o->prompt);

    llm_model *model = load_model(o);
    if (o->chat) {
        llm_chat_message msgs[2];
        int32_t n = 0;
        if (o->system)
            msgs[n++] = (llm_chat_message){"system", o->system};
        msgs[n++] = (llm_chat_message){"user", text};
        char *rendered = render_chat(model, o->chat_template, msgs, n);
        free(text);
        text = rendered;
    }
    llm_context *ctx = make_context(model, o);
    llm_sampler *smpl = make_sampler(model, o);
    const int32_t n_batch = o->n_batch > 0 ? o->n_batch : 512;

    tokvec prompt = {0};
    tokenize(model, text, &prompt);
    if (prompt.n == 0)
        die("run: the prompt is empty");
    if (prompt.n > llm_context_n_ctx(ctx))
        die("run: the prompt has %d tokens; the context holds %d (see -c)", (int)prompt.n,
            (int)llm_context_n_ctx(ctx));
    for (int32_t i = 0; i < prompt.n; i++)
        llm_sampler_accept(smpl, prompt.p[i]);

    gen_stats stats = {0};
    double t0 = now_s();
    decode_tokens(ctx, prompt.p, prompt.n, n_batch);
    stats.n_prompt = prompt.n;
    stats.t_prompt = now_s() - t0;
    generate(ctx, model, smpl, o, &prompt, NULL, &stats);
    if (!o->quiet)
        print_stats(&stats);

    free(prompt.p);
    free(text);
    llm_sampler_free(smpl);
    llm_context_free(ctx);
    llm_model_free(model);
    return 0;
}

static int cmd_chat(const options *o)
{
    llm_model *model = load_model(o);
    llm_context *ctx = make_context(model, o);
    llm_sampler *smpl = make_sampler(model, o);
    const int32_t n_batch = o->n_batch > 0 ? o->n_batch : 512;
    const int32_t n_ctx = llm_context_n_ctx(ctx);
    const int interactive = isatty(STDIN_FILENO);

    llm_chat_message *msgs = NULL;
    int32_t n_msgs = 0, cap_msgs = 0;
    if (o->system) {
        cap_msgs = 8;
        msgs = xrealloc(NULL, (size_t)cap_msgs * sizeof *msgs);
        msgs[n_msgs++] = (llm_chat_message){"system", xstrdup(o->system)};
    }
    /* Check the template before the first turn, so a missing one fails at once; with a
     * user turn, since templates may index messages[0]. */
    {
        llm_chat_message probe[2] = {{"user", "hi"}, {"user", "hi"}};
        if (n_msgs)
            probe[0] = msgs[0];
        free(render_chat(model, o->chat_template, probe, n_msgs + 1));
    }

    tokvec cached = {0}, tokens = {0}; /* cached: what the KV cache holds, in order */
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!strcmp(line, "/exit"))
            break;
        if (len == 0)
            continue;

        if (n_msgs + 2 > cap_msgs) {
            cap_msgs = cap_msgs ? cap_msgs * 2 : 8;
            msgs = xrealloc(msgs, (size_t)cap_msgs * sizeof *msgs);
        }
        msgs[n_msgs++] = (llm_chat_message){"user", xstrdup(line)};
        char *text = render_chat(model, o->chat_template, msgs, n_msgs);
        tokenize(model, text, &tokens);
        free(text);
        if (tokens.n == 0)
            die("chat: the chat template rendered nothing");
        if (tokens.n > n_ctx)
            die("chat: the conversation has %d tokens; the context holds %d (see -c)",
                (int)tokens.n, (int)n_ctx);

        /* Reuse the cached prefix; rewind the cache where the new rendering departs from
         * it (e.g. the reply re-tokenized differently), keeping at least one token to
         * decode so that there are logits to sample from. */
        int32_t keep = 0;
        while (keep < cached.n && keep < tokens.n && cached.p[keep] == tokens.p[keep])
            keep++;
        if (keep == tokens.n)
            keep--;
        if (keep < cached.n) {
            llm_status st = llm_kv_seq_truncate(ctx, 0, keep);
            if (st != LLM_OK)
                die_status("rewinding the cache", st, llm_context_last_error(ctx));
            cached.n = keep;
        }
        gen_stats stats = {0};
        double t0 = now_s();
        decode_tokens(ctx, tokens.p + keep, tokens.n - keep, n_batch);
        for (int32_t i = keep; i < tokens.n; i++) {
            tv_push(&cached, tokens.p[i]);
            llm_sampler_accept(smpl, tokens.p[i]);
        }
        stats.n_prompt = tokens.n - keep;
        stats.t_prompt = now_s() - t0;

        strbuf reply = {0};
        sb_add(&reply, "", 0);
        generate(ctx, model, smpl, o, &cached, &reply, &stats);
        msgs[n_msgs++] = (llm_chat_message){"assistant", reply.p};
        if (!o->quiet)
            print_stats(&stats);
    }
    if (interactive)
        fputc('\n', stdout);

    for (int32_t i = 0; i < n_msgs; i++)
        free((char *)msgs[i].content);
    free(msgs);
    free(line);
    free(cached.p);
    free(tokens.p);
    llm_sampler_free(smpl);
    llm_context_free(ctx);
    llm_model_free(model);
    return 0;
}

/* llama.cpp's general.file_type numbers: the dominant weight type of the file. */
static const char *file_type_name(long t)
{
    static const struct {
        long id;
        const char *name;
    } names[] = {{0, "F32"},     {1, "F16"},     {2, "Q4_0"},     {3, "Q4_1"},   {7, "Q8_0"},
                 {8, "Q5_0"},    {9, "Q5_1"},    {10, "Q2_K"},    {11, "Q3_K_S"}, {12, "Q3_K_M"},
                 {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"},  {16, "Q5_K_S"}, {17, "Q5_K_M"},
                 {18, "Q6_K"},   {32, "BF16"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].id == t)
            return names[i].name;
    return NULL;
}

/* Prints a metadata value if the file has the key. */
static void print_meta(const llm_model *model, const char *label, const char *key)
{
    char buf[256];
    int32_t n = llm_model_meta(model, key, buf, sizeof buf);
    if (n == INT32_MIN)
        return;
    if (n < 0) { /* longer than buf: print what fits */
        buf[sizeof buf - 4] = '\0';
        strcat(buf, "...");
    }
    const char *ftype = NULL;
    if (!strcmp(key, "general.file_type"))
        ftype = file_type_name(strtol(buf, NULL, 10));
    if (ftype)
        printf("%-16s %s (%s)\n", label, ftype, buf);
    else
        printf("%-16s %s\n", label, buf);
}

static void print_special(const llm_model *model, const char *label, llm_special_token which)
{
    llm_token t = llm_model_token(model, which);
    if (t < 0)
        return;
    char buf[128];
    int32_t n = llm_token_to_piece(model, t, buf, sizeof buf - 1, LLM_DETOKENIZE_RENDER_SPECIAL);
    buf[n > 0 ? n : 0] = '\0';
    printf("  %-14s %d '%s'\n", label, (int)t, buf);
}

static int cmd_info(const options *o)
{
    llm_model *model = load_model(o);
    uint64_t np = llm_model_n_params(model);
    printf("%-16s %s\n", "file", o->model);
    printf("%-16s %s\n", "architecture", llm_model_architecture(model));
    printf("%-16s %s\n", "name", llm_model_name(model));
    print_meta(model, "size label", "general.size_label");
    printf("%-16s %" PRIu64 " (%.2f %s)\n", "parameters", np,
           np >= 1000000000ull ? np / 1e9 : np / 1e6, np >= 1000000000ull ? "B" : "M");
    print_meta(model, "file type", "general.file_type");
    printf("%-16s %d\n", "vocabulary", (int)llm_model_n_vocab(model));
    print_meta(model, "tokenizer", "tokenizer.ggml.model");
    print_meta(model, "pre-tokenizer", "tokenizer.ggml.pre");
    printf("%-16s %d\n", "context length", (int)llm_model_n_ctx_train(model));
    printf("%-16s %d\n", "layers", (int)llm_model_n_layer(model));
    printf("%-16s %d\n", "embedding width", (int)llm_model_n_embd(model));
    const uint64_t fsize = llm_model_file_size(model);
    printf("%-16s %" PRIu64 " bytes (%.2f MiB, %.2f bits per parameter)\n", "file size", fsize,
           (double)fsize / (1024.0 * 1024.0), np ? 8.0 * (double)fsize / (double)np : 0.0);
    /* tensor types: how many tensors, parameters and bytes of each */
    struct { const char *type; int count; uint64_t n, bytes; } hist[40];
    int n_hist = 0;
    const int32_t nt = llm_model_n_tensors(model);
    for (int32_t i = 0; i < nt; i++) {
        const char *type;
        uint64_t n, bytes;
        if (llm_model_tensor_info(model, i, &type, &n, &bytes) != LLM_OK)
            continue;
        int h = 0;
        while (h < n_hist && strcmp(hist[h].type, type) != 0)
            h++;
        if (h == n_hist) {
            if (n_hist == (int)(sizeof hist / sizeof hist[0]))
                continue;
            hist[n_hist].type = type;
            hist[n_hist].count = 0;
            hist[n_hist].n = hist[n_hist].bytes = 0;
            n_hist++;
        }
        hist[h].count++;
        hist[h].n += n;
        hist[h].bytes += bytes;
    }
    printf("tensor types:    %d tensors\n", (int)nt);
    for (int h = 0; h < n_hist; h++)
        printf("  %-8s %5d tensors %14" PRIu64 " params %10.2f MiB  %5.1f%%\n", hist[h].type,
               hist[h].count, hist[h].n, (double)hist[h].bytes / (1024.0 * 1024.0),
               fsize ? 100.0 * (double)hist[h].bytes / (double)fsize : 0.0);
    printf("special tokens:\n");
    print_special(model, "bos", LLM_TOKEN_BOS);
    print_special(model, "eos", LLM_TOKEN_EOS);
    print_special(model, "eot", LLM_TOKEN_EOT);
    print_special(model, "unk", LLM_TOKEN_UNK);
    print_special(model, "pad", LLM_TOKEN_PAD);
    const char *tmpl = llm_model_chat_template(model);
    if (tmpl) {
        printf("chat template:\n%s", tmpl);
        if (*tmpl && tmpl[strlen(tmpl) - 1] != '\n')
            putchar('\n');
    } else {
        printf("%-16s (none)\n", "chat template");
    }
    llm_model_free(model);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(NULL, stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (argc > 2 && (!strcmp(argv[2], "run") || !strcmp(argv[2], "chat") ||
                         !strcmp(argv[2], "info")))
            print_usage(argv[2], stdout);
        else
            print_usage(NULL, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("llm %s\n%s\n", llm_version_string(), llm_build_info());
        return 0;
    }
    if (strcmp(cmd, "run") && strcmp(cmd, "chat") && strcmp(cmd, "info")) {
        fprintf(stderr, "%s: error: unknown command '%s'\n\n", prog, cmd);
        print_usage(NULL, stderr);
        return 1;
    }
    options o = {0};
    o.temp = 0.8f;
    o.top_k = 40;
    o.top_p = 0.95f;
    o.min_p = 0.05f;
    o.repeat_penalty = 1.0f;
    o.repeat_last_n = 64;
    o.max_tokens = -1;
    parse_args(cmd, argc - 2, argv + 2, &o);
    if (!strcmp(cmd, "run"))
        return cmd_run(&o);
    if (!strcmp(cmd, "chat"))
        return cmd_chat(&o);
    return cmd_info(&o);
}
