/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue workers: threads that wait for kicks, pop chains, serve them through the FUSE session
 * and signal the guest once per batch. Each queue is served by one worker, fixed when the
 * device is made; a worker serves one queue or several. With no more queues than CPUs every
 * request queue gets a thread of its own; with more, queues share threads rather than threads
 * fighting over the CPUs. Workers share nothing with each other on the request path but
 * lock-free tables.
 */
#ifndef VFS_WORKER_H
#define VFS_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fuse_server.h"
#include "guest_mem.h"
#include "virtqueue.h"

struct late_reply;
struct pool_job;
struct tpool;
struct vu_worker;
struct vu_workers;

struct vu_queue {
    unsigned index;
    struct virtqueue vq;
    int kick_fd; /* -1 when none */
    int err_fd;
    /* The call fd can be replaced while the worker runs (QEMU does when the guest masks the
     * vector), so the worker takes call_lock only for the moment it signals. */
    pthread_mutex_t call_lock;
    int call_fd;
    bool started; /* a kick fd was given */
    bool enabled; /* SET_VRING_ENABLE, or implicitly without protocol features */

    /* Serving state. The worker is fixed; the rest changes only while the worker is paused. */
    struct vu_worker *worker;
    bool running;          /* on its worker's list */
    struct vu_queue *next; /* next queue on the worker's list */
    bool due;              /* worker thread: look at the ring on the next round */
    bool broken;           /* worker thread: the ring is outside guest memory; left alone */
    uint64_t served;       /* requests served since the queue started (logged when it stops) */

    /* Replies of requests that finished on another thread (a SETLKW that waited), queued for
     * the worker: only it touches the rings. They come back through late_sink, each with the
     * cookie the worker gave the FUSE layer with the request (its head and gen). gen counts
     * ring resets; a late reply for an earlier ring is dropped. */
    struct fuse_late_sink late_sink;
    pthread_mutex_t late_lock;
    struct late_reply *late;
    atomic_bool late_pending;
    uint32_t gen;

    /* --thread-pool-size: the worker hands requests to the pool, whose threads serve them
     * and queue the replies as late replies. */
    struct tpool *pool;    /* NULL: the worker serves requests itself */
    struct pool_job *jobs; /* one per descriptor head (vq_pop never hands one out twice) */
    unsigned jobs_num;
    unsigned inflight;            /* jobs handed out and not finished; under late_lock */
    pthread_cond_t drained;       /* inflight reached 0 */
    struct vq_elem *stop_elem;    /* for pushing late replies while the queue is stopped */
    struct guest_mem *const *mem; /* RCU-protected pointer owned by the device */
    struct fuse_session *fuse;
};

/* How the workers are laid out and when they poll. */
struct vu_workers_config {
    unsigned queues;        /* queues of the device, the high-priority one included */
    unsigned threads;       /* worker threads; 0: one per CPU, at most one per request queue */
    unsigned poll_us;       /* watch an idle ring this long before sleeping (0: never) */
    bool poll_when_crowded; /* poll even when busy workers take more than half the CPUs */
};

/* Makes the workers (no thread runs until a queue starts). NULL when out of memory. */
struct vu_workers *vu_workers_new(const struct vu_workers_config *cfg);
/* Every queue must be stopped. */
void vu_workers_free(struct vu_workers *ws);
/* The worker that serves queue index: the high-priority queue (0) shares the first request
 * queue's worker; request queue i goes to worker (i - 1) mod threads. */
struct vu_worker *vu_workers_for_queue(struct vu_workers *ws, unsigned index);
unsigned vu_workers_threads(const struct vu_workers *ws);

void vu_queue_init(struct vu_queue *q, unsigned index, struct guest_mem *const *mem,
                   struct fuse_session *fuse, struct vu_worker *worker);
/* Closes the queue's fds and resets its ring state; the queue must be stopped. */
void vu_queue_reset(struct vu_queue *q);
void vu_queue_destroy(struct vu_queue *q);
/* Replaces the call fd (takes ownership of fd; -1 for none). */
void vu_queue_set_call(struct vu_queue *q, int fd);

/* A pool (--thread-pool-size) whose threads have the buffers to serve queue requests. */
int vu_pool_new(unsigned nthreads, struct tpool **out);

/* Hands the queue to its worker if it is started and enabled and not running yet. */
int vu_queue_start(struct vu_queue *q);
/* Takes the queue from its worker, letting the request in progress finish; no-op when not
 * running. The worker's other queues pause only for that moment. */
void vu_queue_stop(struct vu_queue *q);

#endif
