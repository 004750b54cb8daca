/*
 * pool.c - a tiny persistent thread pool per model: pnn__parallel runs a task
 * on m->threads threads (the caller is thread 0) and returns when all are
 * done. Used to split convolution and pooling work across images, each thread
 * calling a single-threaded GEMM (never nested with OpenBLAS threads).
 */
#include "nn_int.h"

#include <pthread.h>
#include <stdlib.h>

struct nn_pool {
    int n; /* worker threads (excluding the caller) */
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;
    int pending, stop;
    nn_task_fn fn;
    void *ctx;
    int nthreads;
};

typedef struct worker_arg {
    struct nn_pool *p;
    int id;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    struct nn_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->stop) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        nn_task_fn fn = p->fn;
        void *ctx = p->ctx;
        int nt = p->nthreads;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, id, nt);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

void pnn__pool_free(pnn_model *m)
{
    struct nn_pool *p = m->pool;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
    m->pool = NULL;
}

static struct nn_pool *pool_new(int n)
{
    struct nn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->tid = calloc((size_t)n, sizeof *p->tid);
    if (!p->tid) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        wa->p = p;
        wa->id = i + 1;
        if (pthread_create(&p->tid[p->n], NULL, worker, wa) != 0) {
            free(wa);
            break;
        }
        p->n++;
    }
    return p;
}

int pnn__parallel(pnn_model *m, nn_task_fn fn, void *ctx)
{
    int want = m->threads - 1;
    if (want > 0 && (!m->pool || m->pool->n != want)) {
        pnn__pool_free(m);
        m->pool = pool_new(want);
    }
    struct nn_pool *p = m->pool;
    if (want <= 0 || !p || p->n == 0) {
        fn(ctx, 0, 1); /* no pool (1 thread, or threads could not start): run inline */
        return 1;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->nthreads = p->n + 1;
    p->pending = p->n;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n + 1);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return p->n + 1;
}
