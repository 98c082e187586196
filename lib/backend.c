/* backend.c - the backend registry. The CPU backend is always built in; GPU backends
 * register here as they are added (loadable modules come with the first of them). */
#include <stdio.h>
#include <string.h>

#include "backend.h"

const struct llm_backend_ops *llm__backend_find(const char *name)
{
    const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
    if (!name || !*name || strcmp(name, "auto") == 0 || strcmp(name, cpu->name) == 0)
        return cpu;
    return NULL;
}

const char *llm_build_info(void)
{
    static char info[256];
    static int done;
    if (!done) {
        const struct llm_backend_ops *cpu = llm__backend_cpu_ops();
        snprintf(info, sizeof info, "libllm %s backends=%s cpu=%s", llm_version_string(),
                 cpu->name, cpu->features());
        done = 1;
    }
    return info;
}
