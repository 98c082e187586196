/* bench.c - `llm-bench`: prompt-processing and generation speed of a model.
 *
 *   llm-bench -m MODEL [-p 512] [-n 128] [-t THREADS] [-r 5] [-B SEQS] [-o table|json]
 *
 * Tests (each repeated -r times after one untimed warm-up run, on a fresh cache):
 *   ppN   one prompt of N random tokens through llm_decode in batches of n_batch tokens,
 *         logits for the last token only: N / seconds.
 *   tgN   N tokens decoded one call each (the token fed back is random, so sampling costs
 *         nothing): N / seconds.
 *   bS    S sequences together: each gets a prompt of --bp tokens (all S prompts in one
 *         batched prefill), then --bg steps that each decode one token of every sequence
 *         in a single llm_decode call. Reports the decode steps' aggregate tokens/s
 *         (S * bg / seconds) and, separately, the prefill's.
 * Each result is the mean and the sample standard deviation of the per-run tokens/s.
 *
 * Uses only the public API (llm.h). Every failure prints the status and the library's
 * message and exits 1. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <llm.h>

#define MAX_LIST 16

typedef struct int_list {
    int32_t v[MAX_LIST];
    int n;
} int_list;

typedef struct options {
    const char *model;
    int_list prompt, gen, threads, seqs;
    int32_t reps, warmup, n_batch, batch_prompt, batch_gen;
    uint64_t seed;
    int json;
    int verbose;
} options;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "llm-bench: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void check(llm_status st, const char *what, llm_context *ctx)
{
    if (st == LLM_OK)
        return;
    const char *msg = ctx ? llm_context_last_error(ctx) : llm_last_error();
    die("%s: %s%s%s", what, llm_status_str(st), msg && *msg ? ": " : "", msg ? msg : "");
}

static const char *usage =
    "usage: llm-bench -m MODEL [options]\n"
    "  -m, --model FILE      GGUF model\n"
    "  -p, --n-prompt LIST   prompt lengths for ppN tests (comma-separated; 0: none) [512]\n"
    "  -n, --n-gen LIST      generated tokens for tgN tests (0: none) [128]\n"
    "  -t, --threads LIST    thread counts (0: one per core) [0]\n"
    "  -B, --batched LIST    sequences decoding together for bS tests [none]\n"
    "      --bp N            prompt tokens per sequence in bS tests [128]\n"
    "      --bg N            new tokens per sequence in bS tests [64]\n"
    "  -b, --batch-size N    most tokens per llm_decode call (n_batch) [512]\n"
    "  -r, --repetitions N   timed runs per test [5]\n"
    "  -w, --warmup N        untimed runs before them [1]\n"
    "  -s, --seed N          seed of the random tokens [42]\n"
    "  -o, --output FMT      table or json [table]\n"
    "  -v, --verbose         library log messages to stderr\n"
    "  -h, --help\n";

static long parse_int(const char *s, const char *opt, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    return v;
}

static void parse_list(const char *s, const char *opt, int_list *out, long lo, long hi)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        die("%s: list too long", opt);
    strcpy(buf, s);
    out->n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (out->n == MAX_LIST)
            die("%s: more than %d values", opt, MAX_LIST);
        out->v[out->n++] = (int32_t)parse_int(tok, opt, lo, hi);
    }
    if (out->n == 0)
        die("%s: empty list", opt);
}

static void parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->prompt = (int_list){{512}, 1};
    o->gen = (int_list){{128}, 1};
    o->threads = (int_list){{0}, 1};
    o->reps = 5;
    o->warmup = 1;
    o->n_batch = 512;
    o->batch_prompt = 128;
    o->batch_gen = 64;
    o->seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
            continue;
        }
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt"))
            parse_list(v, a, &o->prompt, 0, 1 << 20);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen"))
            parse_list(v, a, &o->gen, 0, 1 << 20);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            parse_list(v, a, &o->threads, 0, 1024);
        else if (!strcmp(a, "-B") || !strcmp(a, "--batched"))
            parse_list(v, a, &o->seqs, 1, 4096);
        else if (!strcmp(a, "--bp"))
            o->batch_prompt = (int32_t)parse_int(v, a, 1, 1 << 20);
        else if (!strcmp(a, "--bg"))
            o->batch_gen = (int32_t)parse_int(v, a, 1, 1 << 20);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size"))
            o->n_batch = (int32_t)parse_int(v, a, 1, 1 << 20);
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions"))
            o->reps = (int32_t)parse_int(v, a, 1, 100000);
        else if (!strcmp(a, "-w") || !strcmp(a, "--warmup"))
            o->warmup = (int32_t)parse_int(v, a, 0, 100000);
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed"))
            o->seed = (uint64_t)parse_int(v, a, 0, INT32_MAX);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!strcmp(v, "json"))
                o->json = 1;
            else if (strcmp(v, "table"))
                die("--output: '%s' is neither table nor json", v);
        } else
            die("unknown option '%s' (see --help)", a);
    }
    if (!o->model)
        die("no model given (-m FILE)");
}

/* ---- timing and random tokens --------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state;

static llm_token random_token(int32_t n_vocab)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (llm_token)(z % (uint64_t)n_vocab);
}

/* ---- the tests ------------------------------------------------------------------------ */

typedef enum test_kind { TEST_PP, TEST_TG, TEST_BATCHED } test_kind;

typedef struct bench {
    llm_model *model;
    llm_context *ctx;
    int32_t n_vocab;
    llm_token *tokens;
    int32_t *seq_ids;
    int8_t *logits;
    int32_t cap;
} bench;

static void ensure_cap(bench *b, int32_t n)
{
    if (n <= b->cap)
        return;
    b->tokens = realloc(b->tokens, (size_t)n * sizeof *b->tokens);
    b->seq_ids = realloc(b->seq_ids, (size_t)n * sizeof *b->seq_ids);
    b->logits = realloc(b->logits, (size_t)n);
    if (!b->tokens || !b->seq_ids || !b->logits)
        die("out of memory");
    b->cap = n;
}

static double run_pp(bench *b, int32_t n)
{
    ensure_cap(b, n);
    for (int32_t i = 0; i < n; i++)
        b->tokens[i] = random_token(b->n_vocab);
    llm_batch batch;
    llm_batch_init(&batch);
    batch.n_tokens = n;
    batch.tokens = b->tokens;
    llm_kv_clear(b->ctx);
    const double t0 = now_s();
    check(llm_decode(b->ctx, &batch), "llm_decode", b->ctx);
    return now_s() - t0;
}

static double run_tg(bench *b, int32_t n)
{
    llm_batch batch;
    llm_batch_init(&batch);
    batch.n_tokens = 1;
    llm_kv_clear(b->ctx);
    llm_token tok = random_token(b->n_vocab);
    batch.tokens = &tok;
    const double t0 = now_s();
    for (int32_t i = 0; i < n; i++) {
        check(llm_decode(b->ctx, &batch), "llm_decode", b->ctx);
        tok = random_token(b->n_vocab);
    }
    return now_s() - t0;
}

/* S sequences: one batched prefill of all prompts (its time in *prefill_s), then gen steps
 * of S tokens each. Returns the seconds of the decode steps. */
static double run_batched(bench *b, int32_t S, int32_t prompt, int32_t gen, double *prefill_s)
{
    const int32_t n = S * prompt > S ? S * prompt : S;
    ensure_cap(b, n);
    llm_kv_clear(b->ctx);
    llm_batch batch;
    llm_batch_init(&batch);
    for (int32_t s = 0; s < S; s++) {
        for (int32_t i = 0; i < prompt; i++) {
            b->tokens[s * prompt + i] = random_token(b->n_vocab);
            b->seq_ids[s * prompt + i] = s;
            b->logits[s * prompt + i] = i == prompt - 1;
        }
    }
    batch.n_tokens = S * prompt;
    batch.tokens = b->tokens;
    batch.seq_ids = b->seq_ids;
    batch.logits = b->logits;
    double t0 = now_s();
    check(llm_decode(b->ctx, &batch), "llm_decode (batched prefill)", b->ctx);
    *prefill_s = now_s() - t0;
    for (int32_t s = 0; s < S; s++) {
        b->seq_ids[s] = s;
        b->logits[s] = 1;
    }
    batch.n_tokens = S;
    t0 = now_s();
    for (int32_t g = 0; g < gen; g++) {
        for (int32_t s = 0; s < S; s++)
            b->tokens[s] = random_token(b->n_vocab);
        check(llm_decode(b->ctx, &batch), "llm_decode (batched step)", b->ctx);
    }
    return now_s() - t0;
}

typedef struct result {
    char name[32];
    test_kind kind;
    int32_t n_prompt, n_gen, n_seq, n_threads;
    int reps;
    double *ts;      /* tokens/s per run */
    double *ts_pre;  /* batched: prefill tokens/s per run */
    double mean, sd, mean_pre, sd_pre;
} result;

static void mean_sd(const double *v, int n, double *mean, double *sd)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    double q = 0.0;
    for (int i = 0; i < n; i++)
        q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

static void run_test(bench *b, const options *o, result *r)
{
    r->ts = calloc((size_t)o->reps, sizeof *r->ts);
    r->ts_pre = calloc((size_t)o->reps, sizeof *r->ts_pre);
    if (!r->ts || !r->ts_pre)
        die("out of memory");
    r->reps = o->reps;
    for (int i = -o->warmup; i < o->reps; i++) {
        double secs, pre = 0.0, tokens;
        switch (r->kind) {
        case TEST_PP:
            secs = run_pp(b, r->n_prompt);
            tokens = r->n_prompt;
            break;
        case TEST_TG:
            secs = run_tg(b, r->n_gen);
            tokens = r->n_gen;
            break;
        default:
            secs = run_batched(b, r->n_seq, r->n_prompt, r->n_gen, &pre);
            tokens = (double)r->n_seq * r->n_gen;
            break;
        }
        if (i >= 0) {
            r->ts[i] = tokens / secs;
            r->ts_pre[i] = pre > 0 ? (double)r->n_seq * r->n_prompt / pre : 0.0;
        }
    }
    mean_sd(r->ts, r->reps, &r->mean, &r->sd);
    mean_sd(r->ts_pre, r->reps, &r->mean_pre, &r->sd_pre);
}

static void make_context(bench *b, const options *o, int32_t threads, int32_t n_ctx,
                         int32_t n_seq)
{
    llm_context_free(b->ctx);
    b->ctx = NULL;
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = o->n_batch;
    cp.n_seq_max = n_seq;
    cp.n_threads = threads;
    check(llm_context_create(b->model, &cp, &b->ctx), "llm_context_create", NULL);
}

/* ---- output --------------------------------------------------------------------------- */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_array(const char *key, const double *v, int n)
{
    printf(", \"%s\": [", key);
    for (int i = 0; i < n; i++)
        printf("%s%.3f", i ? ", " : "", v[i]);
    putchar(']');
}

static void print_json(const options *o, const char *name, const char *arch, long long size,
                       uint64_t params, const result *rs, int n)
{
    printf("[\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        printf("  {\"engine\": \"libllm\", \"version\": ");
        json_string(llm_version_string());
        printf(", \"build_info\": ");
        json_string(llm_build_info());
        printf(", \"model_file\": ");
        json_string(o->model);
        printf(", \"model_name\": ");
        json_string(name);
        printf(", \"arch\": ");
        json_string(arch);
        printf(", \"model_size\": %lld, \"n_params\": %" PRIu64 ", \"n_threads\": %d, "
               "\"n_batch\": %d, \"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
               "\"n_seq\": %d, \"reps\": %d, \"avg_ts\": %.3f, \"stddev_ts\": %.3f",
               size, params, r->n_threads, o->n_batch, r->name, r->n_prompt, r->n_gen,
               r->n_seq, r->reps, r->mean, r->sd);
        json_array("samples_ts", r->ts, r->reps);
        if (r->kind == TEST_BATCHED) {
            printf(", \"prefill_avg_ts\": %.3f, \"prefill_stddev_ts\": %.3f", r->mean_pre,
                   r->sd_pre);
            json_array("prefill_samples_ts", r->ts_pre, r->reps);
        }
        printf("}%s\n", i + 1 < n ? "," : "");
    }
    printf("]\n");
}

static void print_table(const char *name, long long size, uint64_t params, const result *rs,
                        int n)
{
    printf("| %-28s | %9s | %8s | %7s | %-14s | %22s |\n", "model", "size", "params", "threads",
           "test", "t/s");
    printf("| %.28s | %.9s | %.8s | %.7s | %.14s | %.22s |\n",
           "------------------------------", "----------", "---------", "--------",
           "---------------", "-----------------------");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        char sz[32], pr[32], t[64];
        snprintf(sz, sizeof sz, "%.1f MiB", (double)size / (1024.0 * 1024.0));
        snprintf(pr, sizeof pr, "%.1f M", (double)params / 1e6);
        snprintf(t, sizeof t, "%.2f ± %.2f", r->mean, r->sd);
        printf("| %-28.28s | %9s | %8s | %7d | %-14s | %22s |\n", name, sz, pr, r->n_threads,
               r->name, t);
        if (r->kind == TEST_BATCHED) {
            char nm[48];
            snprintf(nm, sizeof nm, "%s prefill", r->name);
            snprintf(t, sizeof t, "%.2f ± %.2f", r->mean_pre, r->sd_pre);
            printf("| %-28.28s | %9s | %8s | %7d | %-14s | %22s |\n", name, sz, pr,
                   r->n_threads, nm, t);
        }
    }
}

static void log_stderr(llm_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    if (o.verbose)
        llm_log_set(log_stderr, LLM_LOG_DEBUG, NULL);
    rng_state = o.seed;

    struct stat stt;
    if (stat(o.model, &stt) != 0)
        die("%s: %s", o.model, strerror(errno));
    bench b = {0};
    check(llm_model_load(o.model, NULL, &b.model), "llm_model_load", NULL);
    b.n_vocab = llm_model_n_vocab(b.model);
    const char *name = llm_model_name(b.model);
    if (!*name)
        name = llm_model_architecture(b.model);

    const int max_tests = o.threads.n * (o.prompt.n + o.gen.n + o.seqs.n);
    result *rs = calloc((size_t)max_tests, sizeof *rs);
    if (!rs)
        die("out of memory");
    int nr = 0;
    for (int ti = 0; ti < o.threads.n; ti++) {
        const int32_t th = o.threads.v[ti];
        for (int i = 0; i < o.prompt.n; i++) {
            if (!o.prompt.v[i])
                continue;
            result *r = &rs[nr++];
            r->n_threads = th; /* 0: the library's default, one per core */
            r->kind = TEST_PP;
            r->n_prompt = o.prompt.v[i];
            r->n_seq = 1;
            snprintf(r->name, sizeof r->name, "pp%d", r->n_prompt);
            make_context(&b, &o, th, r->n_prompt, 1);
            run_test(&b, &o, r);
        }
        for (int i = 0; i < o.gen.n; i++) {
            if (!o.gen.v[i])
                continue;
            result *r = &rs[nr++];
            r->n_threads = th; /* 0: the library's default, one per core */
            r->kind = TEST_TG;
            r->n_gen = o.gen.v[i];
            r->n_seq = 1;
            snprintf(r->name, sizeof r->name, "tg%d", r->n_gen);
            make_context(&b, &o, th, r->n_gen, 1);
            run_test(&b, &o, r);
        }
        for (int i = 0; i < o.seqs.n; i++) {
            result *r = &rs[nr++];
            r->n_threads = th; /* 0: the library's default, one per core */
            r->kind = TEST_BATCHED;
            r->n_seq = o.seqs.v[i];
            r->n_prompt = o.batch_prompt;
            r->n_gen = o.batch_gen;
            snprintf(r->name, sizeof r->name, "b%d pp%d+tg%d", r->n_seq, r->n_prompt, r->n_gen);
            /* every sequence may need a partly filled block of its own */
            const int32_t per_seq = r->n_prompt + r->n_gen + 16;
            if ((int64_t)per_seq * r->n_seq > INT32_MAX)
                die("-B %d with --bp %d --bg %d needs too large a cache", r->n_seq, r->n_prompt,
                    r->n_gen);
            make_context(&b, &o, th, per_seq * r->n_seq, r->n_seq);
            run_test(&b, &o, r);
        }
    }
    if (o.json)
        print_json(&o, name, llm_model_architecture(b.model), (long long)stt.st_size,
                   llm_model_n_params(b.model), rs, nr);
    else
        print_table(name, (long long)stt.st_size, llm_model_n_params(b.model), rs, nr);

    for (int i = 0; i < nr; i++) {
        free(rs[i].ts);
        free(rs[i].ts_pre);
    }
    free(rs);
    llm_context_free(b.ctx);
    llm_model_free(b.model);
    free(b.tokens);
    free(b.seq_ids);
    free(b.logits);
    return 0;
}
