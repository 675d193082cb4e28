/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Up to --thread-pool-size threads serving jobs from one FIFO, started when jobs wait and every
 * thread is busy, gone after a while without work (threads only when there is work). Opt-in, for
 * slow backing storage: with it a queue's worker only pops requests and hands them out, so several
 * requests of one queue wait on the storage at once. By default each queue's worker serves
 * its requests itself, which is faster when the storage answers in microseconds.
 *
 * Pool threads are registered with liburcu.
 */
#ifndef VFS_THREAD_POOL_H
#define VFS_THREAD_POOL_H

struct tpool_job {
    struct tpool_job *next;
    /* Runs on a pool thread; ctx is that thread's context from the pool's init. */
    void (*run)(struct tpool_job *job, void *ctx);
};

struct tpool;

/* A pool of up to nthreads threads (none yet); init/fini make and free each one's context
 * (may be NULL). */
int tpool_new(unsigned nthreads, void *(*init)(void), void (*fini)(void *), struct tpool **out);
void tpool_submit(struct tpool *p, struct tpool_job *job);
/* Waits until every submitted job has finished running. */
void tpool_drain(struct tpool *p);
/* Drains, then stops the threads and waits until they have left. */
void tpool_free(struct tpool *p);

#endif
