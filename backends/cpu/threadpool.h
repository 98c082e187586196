/* threadpool.h - persistent worker threads for the CPU backend.
 * run() executes fn(arg, ith, nth) on every thread (the caller is thread 0) and returns
 * when all are done. Workers spin briefly for the next job, then sleep. Private. */
#ifndef LLM_CPU_THREADPOOL_H
#define LLM_CPU_THREADPOOL_H

typedef struct llm_pool llm_pool;
typedef void (*llm_pool_fn)(void *arg, int ith, int nth);

llm_pool *llm__pool_create(int n_threads); /* NULL on failure */
void llm__pool_destroy(llm_pool *p);
void llm__pool_run(llm_pool *p, llm_pool_fn fn, void *arg);
int llm__pool_size(const llm_pool *p);
/* Physical cores available to the process (hwloc when built with it), at least 1. */
int llm__cpu_cores(void);

#endif
