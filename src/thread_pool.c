/* SPDX-License-Identifier: Apache-2.0 */
/* The optional request thread pool; see include/thread_pool.h. */
#include "thread_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <urcu.h>

#include "log.h"

/* A pool thread with nothing to do for this long goes away (its buffers with it). */
#define IDLE_EXIT_SECS 10

struct tpool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or stop */
    pthread_cond_t idle; /* the last job finished, or the last thread left */
    struct tpool_job *head, **tail;
    unsigned running;  /* jobs taken and not finished */
    unsigned nthreads; /* threads alive */
    unsigned waiting;  /* of them, waiting for a job */
    unsigned max;      /* --thread-pool-size */
    bool stop;
    void *(*init)(void);
    void (*fini)(void *);
};

/* The next job, or NULL when the pool stops or the thread waited IDLE_EXIT_SECS for one (then
 * it no longer counts as alive). */
static struct tpool_job *take(struct tpool *p)
{
    struct timespec deadline;
    int ret = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += IDLE_EXIT_SECS;
    pthread_mutex_lock(&p->mu);
    p->waiting++;
    while (!p->head && !p->stop && ret != ETIMEDOUT)
        ret = pthread_cond_timedwait(&p->work, &p->mu, &deadline);
    p->waiting--;
    struct tpool_job *job = p->head;
    if (job) {
        p->head = job->next;
        if (!p->head)
            p->tail = &p->head;
        p->running++;
    } else if (--p->nthreads == 0) {
        pthread_cond_broadcast(&p->idle); /* tpool_free waits for the last one */
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

/*
 * A pool thread. Started on demand by tpool_submit (on a queue worker, in the serving process
 * after its lockdown): it inherits the seccomp filter, the bounding and permitted capabilities
 * and the namespaces like every thread of the process, and its filesystem ids are set by
 * creds.c before each request it serves (a new thread's cache of them starts unknown, so
 * whatever ids the worker that created it had are never trusted).
 */
static void *pool_main(void *arg)
{
    struct tpool *p = arg;
    /* Once take() says to leave, p may be freed at any moment: nothing of it is used then. */
    void (*fini)(void *) = p->fini;
    (void)prctl(PR_SET_NAME, "pool-worker"); /* for top -H (best effort) */
    void *ctx = p->init ? p->init() : NULL;
    rcu_register_thread();
    if (p->init && !ctx)
        log_error("thread pool: out of memory for a thread's buffers; it serves nothing");
    bool usable = !p->init || ctx;
    for (struct tpool_job *job; (job = take(p));) {
        if (usable)
            job->run(job, ctx);
        finished(p);
    }
    rcu_unregister_thread();
    if (fini && ctx)
        fini(ctx);
    return NULL;
}

int tpool_new(unsigned nthreads, void *(*init)(void), void (*fini)(void *), struct tpool **out)
{
    struct tpool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->idle, NULL);
    p->tail = &p->head;
    p->init = init;
    p->fini = fini;
    p->max = nthreads ? nthreads : 1;
    *out = p;
    return 0;
}

/* One more thread, detached (it leaves by itself). Under mu. */
static void start_thread(struct tpool *p)
{
    pthread_attr_t attr;
    pthread_t t;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, pool_main, p) == 0)
        p->nthreads++;
    else if (p->nthreads == 0)
        log_error("thread pool: cannot start a thread; requests wait for one");
    pthread_attr_destroy(&attr);
}

void tpool_submit(struct tpool *p, struct tpool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    *p->tail = job;
    p->tail = &job->next;
    /* Threads only when there is work: one more while every thread is busy. */
    if (p->waiting == 0 && p->nthreads < p->max)
        start_thread(p);
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
    while (p->nthreads)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
