/* engine_bench.c - llm-engine-bench: serving throughput and latency of the request engine.
 *
 * Keeps C requests in flight (continuous refill) until N requests have finished, each a
 * prompt from a file (one per line) and G generated tokens (greedy, end-of-generation
 * ignored), and reports aggregate generated tokens/s, time to first token and time per
 * output token (mean, p50, p99), as text or JSON. Uses only llm.h.
 *
 *   llm-engine-bench -m MODEL -f PROMPTS [-c 16] [-n 64] [-g 64] [-t 0] [--ctx N]
 *                    [--system FILE] [--no-prefix-cache] [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct req {
    llm_request_id id;
    double t_submit, t_first, t_end;
    int n_tokens;
    int done;
} req;

static req *reqs;
static int n_reqs;

static req *find(llm_request_id id)
{
    for (int i = 0; i < n_reqs; i++)
        if (reqs[i].id == id)
            return &reqs[i];
    return NULL;
}

static void on_event(const llm_event *ev, void *user)
{
    (void)user;
    req *r = find(ev->id);
    if (!r)
        return;
    const double t = now();
    if (ev->type == LLM_EVENT_TOKEN) {
        if (r->n_tokens++ == 0)
            r->t_first = t;
    } else {
        r->t_end = t;
        r->done = 1;
        if (ev->type == LLM_EVENT_ERROR)
            fprintf(stderr, "request %llu failed: %.*s\n", (unsigned long long)ev->id,
                    ev->text_len, ev->text);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    return b;
}

static void usage(void)
{
    fprintf(stderr, "usage: llm-engine-bench -m MODEL -f PROMPTS [-c concurrency] [-n requests] "
                    "[-g tokens] [-t threads] [--ctx N] [--system FILE] [--no-prefix-cache] "
                    "[--json]\n");
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *prompts_path = NULL, *system_path = NULL;
    int conc = 16, n_total = 64, gen = 64, threads = 0, n_ctx = 0, json = 0;
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && v) model_path = argv[++i];
        else if (!strcmp(a, "-f") && v) prompts_path = argv[++i];
        else if (!strcmp(a, "-c") && v) conc = atoi(argv[++i]);
        else if (!strcmp(a, "-n") && v) n_total = atoi(argv[++i]);
        else if (!strcmp(a, "-g") && v) gen = atoi(argv[++i]);
        else if (!strcmp(a, "-t") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--ctx") && v) n_ctx = atoi(argv[++i]);
        else if (!strcmp(a, "--system") && v) system_path = argv[++i];
        else if (!strcmp(a, "--no-prefix-cache")) flags |= LLM_CONTEXT_NO_PREFIX_CACHE;
        else if (!strcmp(a, "--json")) json = 1;
        else { usage(); return 2; }
    }
    if (!model_path || !prompts_path || conc < 1 || n_total < 1 || gen < 1) {
        usage();
        return 2;
    }
    char *text = read_file(prompts_path);
    char *sys = system_path ? read_file(system_path) : NULL;
    if (!text || (system_path && !sys)) {
        fprintf(stderr, "cannot read %s\n", !text ? prompts_path : system_path);
        return 1;
    }
    char **lines = NULL;
    int n_lines = 0;
    for (char *p = strtok(text, "\n"); p; p = strtok(NULL, "\n")) {
        lines = realloc(lines, (size_t)(n_lines + 1) * sizeof *lines);
        lines[n_lines++] = p;
    }
    if (n_lines == 0) {
        fprintf(stderr, "no prompts in %s\n", prompts_path);
        return 1;
    }
    llm_model *model = NULL;
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.n_threads = threads;
    if (llm_model_load(model_path, &mp, &model) != LLM_OK) {
        fprintf(stderr, "load: %s\n", llm_last_error());
        return 1;
    }
    llm_context_params cp;
    llm_context_params_init(&cp);
    cp.n_seq_max = conc;
    cp.n_threads = threads;
    cp.n_ctx = n_ctx;
    cp.flags = flags;
    llm_context *ctx = NULL;
    if (llm_context_create(model, &cp, &ctx) != LLM_OK) {
        fprintf(stderr, "context: %s\n", llm_last_error());
        return 1;
    }
    llm_context_set_event_callback(ctx, on_event, NULL);
    reqs = calloc((size_t)n_total, sizeof *reqs);
    size_t cap = 1 << 16;
    char *prompt = malloc(cap);
    int submitted = 0, finished = 0;
    const double t0 = now();
    while (finished < n_total) {
        while (submitted < n_total && submitted - finished < conc) {
            const char *line = lines[submitted % n_lines];
            size_t need = strlen(line) + (sys ? strlen(sys) : 0) + 2;
            if (need > cap) {
                cap = need;
                prompt = realloc(prompt, cap);
            }
            snprintf(prompt, cap, "%s%s", sys ? sys : "", line);
            llm_request_params p;
            llm_request_params_init(&p);
            p.prompt = prompt;
            p.max_tokens = gen;
            p.ignore_eos = 1;
            req *r = &reqs[submitted];
            r->t_submit = now();
            if (llm_request_submit(ctx, &p, &r->id) != LLM_OK) {
                fprintf(stderr, "submit: %s\n", llm_context_last_error(ctx));
                return 1;
            }
            n_reqs = ++submitted;
        }
        if (llm_step(ctx) != LLM_OK) {
            fprintf(stderr, "step: %s\n", llm_context_last_error(ctx));
            return 1;
        }
        finished = 0;
        for (int i = 0; i < submitted; i++)
            finished += reqs[i].done;
    }
    const double wall = now() - t0;
    double *ttft = malloc((size_t)n_total * sizeof(double)),
           *tpot = malloc((size_t)n_total * sizeof(double));
    long long tokens = 0;
    double sum_ttft = 0, sum_tpot = 0;
    int n_tpot = 0;
    for (int i = 0; i < n_total; i++) {
        tokens += reqs[i].n_tokens;
        ttft[i] = reqs[i].t_first - reqs[i].t_submit;
        sum_ttft += ttft[i];
        if (reqs[i].n_tokens > 1) {
            tpot[n_tpot] = (reqs[i].t_end - reqs[i].t_first) / (reqs[i].n_tokens - 1);
            sum_tpot += tpot[n_tpot++];
        }
    }
    llm_engine_stats st = {.size = sizeof st};
    llm_engine_stats_get(ctx, &st);
    const double mean_ttft = sum_ttft / n_total, mean_tpot = n_tpot ? sum_tpot / n_tpot : 0;
    const double p50_ttft = pct(ttft, n_total, 0.5), p99_ttft = pct(ttft, n_total, 0.99);
    const double p50_tpot = pct(tpot, n_tpot, 0.5), p99_tpot = pct(tpot, n_tpot, 0.99);
    if (json) {
        printf("{\"engine\": \"libllm\", \"concurrency\": %d, \"requests\": %d, \"gen\": %d, "
               "\"wall_s\": %.4f, \"tokens\": %lld, \"tok_per_s\": %.3f, "
               "\"ttft_mean_ms\": %.2f, \"ttft_p50_ms\": %.2f, \"ttft_p99_ms\": %.2f, "
               "\"tpot_mean_ms\": %.2f, \"tpot_p50_ms\": %.2f, \"tpot_p99_ms\": %.2f, "
               "\"prefix_tokens_reused\": %lld, \"preemptions\": %lld, \"steps\": %lld}\n",
               conc, n_total, gen, wall, tokens, (double)tokens / wall, 1e3 * mean_ttft,
               1e3 * p50_ttft, 1e3 * p99_ttft, 1e3 * mean_tpot, 1e3 * p50_tpot, 1e3 * p99_tpot,
               (long long)st.prefix_tokens_reused, (long long)st.n_preemptions,
               (long long)st.n_steps);
    } else {
        printf("concurrency %d, %d requests x %d tokens: %.1f tok/s (%.2f s)\n", conc, n_total,
               gen, (double)tokens / wall, wall);
        printf("  time to first token ms: mean %.1f p50 %.1f p99 %.1f\n", 1e3 * mean_ttft,
               1e3 * p50_ttft, 1e3 * p99_ttft);
        printf("  time per output token ms: mean %.2f p50 %.2f p99 %.2f\n", 1e3 * mean_tpot,
               1e3 * p50_tpot, 1e3 * p99_tpot);
        printf("  prefix tokens reused %lld, preemptions %lld, steps %lld\n",
               (long long)st.prefix_tokens_reused, (long long)st.n_preemptions,
               (long long)st.n_steps);
    }
    llm_context_free(ctx);
    llm_model_free(model);
    free(ttft);
    free(tpot);
    free(reqs);
    free(prompt);
    free(lines);
    free(text);
    free(sys);
    return 0;
}
