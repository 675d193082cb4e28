/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue workers: one thread per started and enabled virtqueue. Each waits for kicks, pops
 * chains, serves them through the FUSE session and signals the guest once per batch.
 * Workers share nothing with each other on the request path but lock-free tables.
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

    /* Worker thread state. */
    bool running;
    atomic_bool stop;
    int stop_fd; /* eventfd that wakes the worker: to stop, or to send late replies */

    /* Replies of requests that finished on another thread (a SETLKW that waited), queued for
     * the worker: only it touches the rings. gen counts ring resets; a late reply for an
     * earlier ring is dropped. */
    pthread_mutex_t late_lock;
    struct late_reply *late;
    atomic_bool late_pending;
    uint32_t gen;

    /* --thread-pool-size: the worker hands requests to the pool, whose threads serve them
     * and queue the replies as late replies. */
    struct tpool *pool;    /* NULL: the worker serves requests itself */
    struct pool_job *jobs; /* one per descriptor head (a head is out at most once) */
    unsigned jobs_num;
    unsigned inflight;         /* jobs handed out and not finished; under late_lock */
    pthread_cond_t drained;    /* inflight reached 0 */
    struct vq_elem *stop_elem; /* for pushing late replies while the worker is stopped */
    pthread_t thread;
    struct guest_mem *const *mem; /* RCU-protected pointer owned by the device */
    struct fuse_session *fuse;
    unsigned poll_us; /* look at an idle ring this long before sleeping (0: never) */
    unsigned poll_misses, poll_skips; /* adaptive polling state, worker thread only */
    uint64_t served; /* requests served since the worker started (logged when it stops) */
};

void vu_queue_init(struct vu_queue *q, unsigned index, struct guest_mem *const *mem,
                   struct fuse_session *fuse);
/* Closes the queue's fds and resets its ring state; the worker must be stopped. */
void vu_queue_reset(struct vu_queue *q);
void vu_queue_destroy(struct vu_queue *q);
/* Replaces the call fd (takes ownership of fd; -1 for none). */
void vu_queue_set_call(struct vu_queue *q, int fd);

/* A pool (--thread-pool-size) whose threads have the buffers to serve queue requests. */
int vu_pool_new(unsigned nthreads, struct tpool **out);

/* Starts the worker if the queue is started and enabled and not running yet. */
int vu_queue_start(struct vu_queue *q);
/* Stops the worker, letting the request in progress finish; no-op when not running. */
void vu_queue_stop(struct vu_queue *q);

#endif
