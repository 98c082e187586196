/* llm-quantize - writes a quantized copy of an F32/F16/BF16 GGUF model.
 *
 *   llm-quantize [-t THREADS] IN.gguf OUT.gguf TYPE
 *
 * TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K
 * (case-insensitive). A progress bar goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "llm.h"

static const char *usage =
    "usage: llm-quantize [-t THREADS] IN.gguf OUT.gguf TYPE\n"
    "  TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K\n"
    "  -t THREADS   encoding threads (default: one per CPU)\n";

static int progress_bar(float p, void *user)
{
    (void)user;
    const int width = 40, filled = (int)(p * (float)width + 0.5f);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %3d%%", bar, (int)(p * 100.0f + 0.5f));
    fflush(stderr);
    return 0;
}

static double file_mib(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size / (1024.0 * 1024.0) : 0.0;
}

int main(int argc, char **argv)
{
    llm_quantize_params p;
    llm_quantize_params_init(&p);
    const char *pos[3];
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            p.n_threads = atoi(argv[++i]);
            if (p.n_threads < 1) {
                fprintf(stderr, "llm-quantize: -t needs a positive number\n");
                return 2;
            }
        } else if (n_pos < 3 && argv[i][0] != '-') {
            pos[n_pos++] = argv[i];
        } else {
            fprintf(stderr, "llm-quantize: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (n_pos != 3) {
        fputs(usage, stderr);
        return 2;
    }
    p.ftype = llm_ftype_from_name(pos[2]);
    if (p.ftype < 0) {
        fprintf(stderr, "llm-quantize: unknown type '%s'\n%s", pos[2], usage);
        return 2;
    }
    p.progress = progress_bar;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    llm_status st = llm_model_quantize(pos[0], pos[1], &p);
    clock_gettime(CLOCK_MONOTONIC, &b);
    fputc('\n', stderr);
    if (st != LLM_OK) {
        fprintf(stderr, "llm-quantize: %s\n", llm_last_error());
        return 1;
    }
    fprintf(stderr, "%s: %.1f MiB -> %s: %.1f MiB (%s) in %.1f s\n", pos[0], file_mib(pos[0]),
            pos[1], file_mib(pos[1]), llm_ftype_name(p.ftype),
            (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9);
    return 0;
}
