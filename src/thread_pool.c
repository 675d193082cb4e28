/* SPDX-License-Identifier: Apache-2.0 */
/* The optional request thread pool; see include/thread_pool.h. */
#include "thread_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <urcu.h>

#include "log.h"

struct tpool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or stop */
    pthread_cond_t idle; /* the last job finished */
    struct tpool_job *head, **tail;
    unsigned running; /* jobs taken and not finished */
    bool stop;
    void *(*init)(void);
    void (*fini)(void *);
    unsigned nthreads;
    pthread_t threads[];
};

static struct tpool_job *take(struct tpool *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->stop)
        pthread_cond_wait(&p->work, &p->mu);
    struct tpool_job *job = p->head;
    if (job) {
        p->head = job->next;
        if (!p->head)
            p->tail = &p->head;
        p->running++;
    }
    pthread_mutex_unlock(&p->mu);
    return job;
}

static void finished(struct tpool *p)
{
    pthread_mutex_lock(&p->mu);
    if (--p->running == 0 && !p->head)
        pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
}

static void *pool_main(void *arg)
{
    struct tpool *p = arg;
    (void)prctl(PR_SET_NAME, "pool-worker"); /* for top -H (best effort) */
    void *ctx = p->init ? p->init() : NULL;
    rcu_register_thread();
    if (p->init && !ctx)
        log_error("thread pool: out of memory for a thread's buffers; it serves nothing");
    for (struct tpool_job *job; (job = take(p));) {
        if (!p->init || ctx)
            job->run(job, ctx);
        finished(p);
    }
    rcu_unregister_thread();
    if (p->fini && ctx)
        p->fini(ctx);
    return NULL;
}

int tpool_new(unsigned nthreads, void *(*init)(void), void (*fini)(void *), struct tpool **out)
{
    struct tpool *p = calloc(1, sizeof(*p) + nthreads * sizeof(pthread_t));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->tail = &p->head;
    p->init = init;
    p->fini = fini;
    for (; p->nthreads < nthreads; p->nthreads++) {
        int ret = pthread_create(&p->threads[p->nthreads], NULL, pool_main, p);
        if (ret != 0) {
            tpool_free(p);
            return -ret;
        }
    }
    *out = p;
    return 0;
}

void tpool_submit(struct tpool *p, struct tpool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    *p->tail = job;
    p->tail = &job->next;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

void tpool_drain(struct tpool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->head || p->running)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void tpool_free(struct tpool *p)
{
    if (!p)
        return;
    tpool_drain(p);
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
