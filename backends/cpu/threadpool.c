/* threadpool.c - a persistent pool: a job is published by bumping a generation counter;
 * workers spin on it for a short while (a decode step issues hundreds of small jobs, and
 * waking a sleeping thread costs more than most of them), then block on a condition
 * variable. Completion is an atomic countdown the caller spins on. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef LLM_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "../../lib/internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long a waiting thread spins before it gives the core away: long enough to bridge the
 * gap between two ops of a decode step, short enough not to starve other processes when
 * the machine is oversubscribed. */
#define SPIN_ITERS 20000

struct llm_pool {
    int n;
#ifdef LLM_HAVE_HWLOC
    hwloc_topology_t topo; /* NULL: threads are not pinned */
#endif
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;      /* bumped once per job */
    atomic_int pending;   /* workers still running the current job */
    atomic_int sleepers;
    atomic_int stop;
    llm_pool_fn fn;
    void *arg;
};

typedef struct worker_arg {
    llm_pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *varg)
{
    worker_arg wa = *(worker_arg *)varg;
    llm__free(varg);
    llm_pool *p = wa.p;
#ifdef LLM_HAVE_HWLOC
    /* worker i on core i (the caller's thread, 0, stays where the application put it);
     * a failed binding only costs speed */
    if (p->topo) {
        hwloc_obj_t core = hwloc_get_obj_by_type(p->topo, HWLOC_OBJ_CORE, (unsigned)wa.ith);
        if (core && core->cpuset)
            hwloc_set_cpubind(p->topo, core->cpuset, HWLOC_CPUBIND_THREAD);
    }
#endif
    /* jobs are counted from 0 at creation: a job published before this thread got here
     * must still be run */
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            if (atomic_load(&p->stop))
                return NULL;
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

llm_pool *llm__pool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    llm_pool *p = llm__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#ifdef LLM_HAVE_HWLOC
    /* Pin only when there is a core for every thread; LLM_CPU_PIN=0 turns pinning off
     * (e.g. when other processes share the cores). */
    const char *pin = getenv("LLM_CPU_PIN");
    if (n_threads > 1 && !(pin && pin[0] == '0') && hwloc_topology_init(&p->topo) == 0) {
        if (hwloc_topology_load(p->topo) != 0 ||
            hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_CORE) < n_threads) {
            hwloc_topology_destroy(p->topo);
            p->topo = NULL;
        }
    }
#endif
    if (n_threads > 1) {
        p->threads = llm__calloc((size_t)n_threads, sizeof(pthread_t));
        if (!p->threads)
            goto fail;
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = llm__malloc(sizeof *wa);
            if (!wa) {
                p->n = i;
                goto fail;
            }
            wa->p = p;
            wa->ith = i;
            if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
                llm__free(wa);
                p->n = i;
                goto fail;
            }
        }
    }
    return p;
fail:
    llm__pool_destroy(p);
    return NULL;
}

void llm__pool_destroy(llm_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#ifdef LLM_HAVE_HWLOC
    if (p->topo)
        hwloc_topology_destroy(p->topo);
#endif
    llm__free(p->threads);
    llm__free(p);
}

int llm__pool_size(const llm_pool *p)
{
    return p->n;
}

void llm__pool_run(llm_pool *p, llm_pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers check */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    /* a worker that was preempted needs the core we would spin on: yield after a while */
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERS)
            cpu_relax();
        else
            sched_yield();
    }
}

int llm__cpu_cores(void)
{
#ifdef LLM_HAVE_HWLOC
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) == 0) {
        int n = -1;
        if (hwloc_topology_load(topo) == 0)
            n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
        hwloc_topology_destroy(topo);
        if (n > 0)
            return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
