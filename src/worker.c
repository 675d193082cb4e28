/* SPDX-License-Identifier: Apache-2.0 */
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <urcu.h>

#include "log.h"
#include "thread_pool.h"

/* Without a kick fd (the front-end asked for polling) we look at the ring this often. */
#define POLL_INTERVAL_MS 10

struct late_reply {
    struct late_reply *next;
    uint64_t unique;
    uint32_t gen;
    uint16_t head;
    int error;
    bool written; /* a pool thread wrote the reply already: push head with len */
    uint32_t len;
};

/* A request handed to the thread pool: the ring as it was when the chain was popped. */
struct pool_job {
    struct tpool_job base;
    struct vu_queue *q;
    uint32_t gen;
    uint16_t head;
    unsigned num;
    uint64_t desc_uva, avail_uva, used_uva;
};

/* A pool thread's buffers. */
struct pool_ctx {
    struct fuse_scratch *scratch;
    struct vq_elem elem;
};

void vu_queue_init(struct vu_queue *q, unsigned index, struct guest_mem *const *mem,
                   struct fuse_session *fuse)
{
    memset(q, 0, sizeof(*q));
    q->index = index;
    q->kick_fd = q->call_fd = q->err_fd = q->stop_fd = -1;
    pthread_mutex_init(&q->call_lock, NULL);
    pthread_mutex_init(&q->late_lock, NULL);
    pthread_cond_init(&q->drained, NULL);
    atomic_init(&q->late_pending, false);
    atomic_init(&q->stop, false);
    q->mem = mem;
    q->fuse = fuse;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void vu_queue_set_call(struct vu_queue *q, int fd)
{
    pthread_mutex_lock(&q->call_lock);
    close_fd(&q->call_fd);
    q->call_fd = fd;
    pthread_mutex_unlock(&q->call_lock);
}

/* Takes the queued late replies (the caller frees them). */
static struct late_reply *take_late(struct vu_queue *q)
{
    if (!atomic_exchange(&q->late_pending, false))
        return NULL;
    pthread_mutex_lock(&q->late_lock);
    struct late_reply *list = q->late;
    q->late = NULL;
    pthread_mutex_unlock(&q->late_lock);
    return list;
}

static void free_late(struct late_reply *r)
{
    while (r) {
        struct late_reply *next = r->next;
        free(r);
        r = next;
    }
}

void vu_queue_reset(struct vu_queue *q)
{
    close_fd(&q->kick_fd);
    close_fd(&q->err_fd);
    /* stop_fd stays: a late reply may still be signalled through it; it lives until destroy. */
    vu_queue_set_call(q, -1);
    q->started = false;
    q->enabled = false;
    memset(&q->vq, 0, sizeof(q->vq));
    pthread_mutex_lock(&q->late_lock);
    q->gen++;
    free_late(q->late);
    q->late = NULL;
    pthread_mutex_unlock(&q->late_lock);
}

void vu_queue_destroy(struct vu_queue *q)
{
    vu_queue_stop(q);
    vu_queue_reset(q);
    close_fd(&q->stop_fd);
    pthread_mutex_destroy(&q->call_lock);
    pthread_mutex_destroy(&q->late_lock);
    pthread_cond_destroy(&q->drained);
    free(q->jobs);
    free(q->stop_elem);
}

/* Queues a late reply (taking r) for the worker and wakes it. Any thread. */
static void queue_late(struct vu_queue *q, struct late_reply *r)
{
    pthread_mutex_lock(&q->late_lock);
    if (r->gen == q->gen) {
        r->next = q->late;
        q->late = r;
        atomic_store(&q->late_pending, true);
        r = NULL;
    }
    int fd = q->stop_fd;
    pthread_mutex_unlock(&q->late_lock);
    free(r); /* the ring was reset meanwhile: nobody waits for this reply */
    if (fd >= 0 && eventfd_write(fd, 1) < 0)
        log_warn("queue %u: waking the worker failed: %m", q->index);
}

/* fuse_sink.done: a request answered on another thread (a lock wait). */
static void late_done(const struct pt_async *a, int result)
{
    struct vu_queue *q = a->opaque;
    struct late_reply *r = malloc(sizeof(*r));
    if (!r) {
        log_error("queue %u: out of memory for the reply to request %llu", q->index,
                  (unsigned long long)a->unique);
        return;
    }
    *r = (struct late_reply){.unique = a->unique,
                             .gen = FUSE_LATE_GEN(a->tag),
                             .head = FUSE_LATE_HEAD(a->tag),
                             .error = result};
    queue_late(q, r);
}

/* Puts the late replies into the used ring; true if any was. */
static bool serve_late(struct vu_queue *q, struct vq_elem *elem)
{
    struct late_reply *list = take_late(q);
    if (!list)
        return false;
    bool pushed = false;
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    for (struct late_reply *r = list; r && mem && vq_map(&q->vq, mem) == 0; r = r->next) {
        if (r->gen != q->gen)
            continue;
        /* The chain is walked again: the memory table may have changed since it was popped. */
        uint32_t len = r->len;
        if (r->written)
            ; /* a pool thread wrote it */
        else if (vq_walk(&q->vq, mem, r->head, elem) == 0)
            len = fuse_reply_late(elem, r->unique, r->error);
        else
            log_error("queue %u: the chain of request %llu is no longer valid", q->index,
                      (unsigned long long)r->unique);
        vq_push(&q->vq, r->head, len);
        pushed = true;
    }
    rcu_read_unlock();
    free_late(list);
    return pushed;
}

static void signal_guest(struct vu_queue *q)
{
    pthread_mutex_lock(&q->call_lock);
    if (q->call_fd >= 0 && eventfd_write(q->call_fd, 1) < 0)
        log_warn("queue %u: signalling the guest failed: %m", q->index);
    pthread_mutex_unlock(&q->call_lock);
}

/* ---- the thread pool ------------------------------------------------------------------ */

/* Runs on a pool thread: walks the chain again under this thread's own read-side section
 * (the worker's has ended; the memory table may have changed), serves it, and queues the
 * used-ring entry for the worker, the only thread that touches the ring. */
static void run_job(struct tpool_job *base, void *arg)
{
    struct pool_job *job = (struct pool_job *)base;
    struct pool_ctx *ctx = arg;
    struct vu_queue *q = job->q;
    struct virtqueue ring = {.num = job->num,
                             .desc_uva = job->desc_uva,
                             .avail_uva = job->avail_uva,
                             .used_uva = job->used_uva};
    uint32_t len = 0;
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    if (mem && vq_map(&ring, mem) == 0 && vq_walk(&ring, mem, job->head, &ctx->elem) == 0) {
        const struct fuse_sink sink = {.done = late_done, .opaque = q, .gen = job->gen};
        len = fuse_session_process(q->fuse, ctx->scratch, &ctx->elem, &sink);
    }
    rcu_read_unlock();
    struct late_reply *r = len == FUSE_REPLY_LATER ? NULL : malloc(sizeof(*r));
    if (r) {
        *r = (struct late_reply){.gen = job->gen, .head = job->head, .written = true, .len = len};
        queue_late(q, r);
    } else if (len != FUSE_REPLY_LATER) {
        log_error("queue %u: out of memory for a used-ring entry", q->index);
    }
    pthread_mutex_lock(&q->late_lock);
    if (--q->inflight == 0)
        pthread_cond_broadcast(&q->drained);
    pthread_mutex_unlock(&q->late_lock);
}

static void hand_out(struct vu_queue *q, uint16_t head)
{
    struct pool_job *job = &q->jobs[head];
    *job = (struct pool_job){.base.run = run_job,
                             .q = q,
                             .gen = q->gen,
                             .head = head,
                             .num = q->vq.num,
                             .desc_uva = q->vq.desc_uva,
                             .avail_uva = q->vq.avail_uva,
                             .used_uva = q->vq.used_uva};
    pthread_mutex_lock(&q->late_lock);
    q->inflight++;
    pthread_mutex_unlock(&q->late_lock);
    tpool_submit(q->pool, &job->base);
}

static void *pool_ctx_new(void)
{
    struct pool_ctx *c = malloc(sizeof(*c));
    if (c && !(c->scratch = fuse_scratch_new())) {
        free(c);
        c = NULL;
    }
    return c;
}

static void pool_ctx_free(void *arg)
{
    struct pool_ctx *c = arg;
    fuse_scratch_free(c->scratch);
    free(c);
}

int vu_pool_new(unsigned nthreads, struct tpool **out)
{
    return tpool_new(nthreads, pool_ctx_new, pool_ctx_free, out);
}

/*
 * Serves one chain. The RCU read-side section covers exactly one request: it keeps the
 * memory table (and the inodes and handles the request uses) alive, and ending it after each
 * request lets forgotten inodes and old memory tables be reclaimed on a busy queue too.
 * Returns 1 when a chain was served, 0 when the ring is empty, -EFAULT when it is unusable.
 */
static int serve_one(struct vu_queue *q, struct fuse_scratch *scratch, struct vq_elem *elem)
{
    struct virtqueue *vq = &q->vq;
    rcu_read_lock();
    /* The rings are re-derived from the table in force for this request: a new table may
     * have been published since the last one, and the old one unmapped. */
    struct guest_mem *mem = rcu_dereference(*q->mem);
    if (!mem || vq_map(vq, mem) < 0) {
        rcu_read_unlock();
        log_error("queue %u: ring addresses are not in guest memory", q->index);
        return -EFAULT;
    }
    int r = vq_pop(vq, mem, elem);
    if (r > 0 && q->pool) {
        hand_out(q, elem->head);
    } else if (r != 0) {
        const struct fuse_sink sink = {.done = late_done, .opaque = q, .gen = q->gen};
        /* A chain we could not walk still goes back to the driver, empty. */
        uint32_t len = r > 0 ? fuse_session_process(q->fuse, scratch, elem, &sink) : 0;
        if (len != FUSE_REPLY_LATER)
            vq_push(vq, elem->head, len);
        q->served++;
    }
    rcu_read_unlock();
    return r != 0;
}

/* Notification-related ring accesses, each under its own read-side section. */
static bool ring_op(struct vu_queue *q, bool (*op)(struct virtqueue *))
{
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    bool ret = mem && vq_map(&q->vq, mem) == 0 && op(&q->vq);
    rcu_read_unlock();
    return ret;
}

static bool disable_notify(struct virtqueue *vq)
{
    vq_disable_notify(vq);
    return true;
}

/* Serves everything available on the ring; returns false if the ring cannot be used. */
static bool process_ring(struct vu_queue *q, struct fuse_scratch *scratch, struct vq_elem *elem)
{
    bool pushed = serve_late(q, elem);
    do {
        ring_op(q, disable_notify);
        int r;
        while (!atomic_load(&q->stop) && (r = serve_one(q, scratch, elem)) != 0) {
            if (r < 0)
                return false;
            pushed = true;
        }
    } while (!atomic_load(&q->stop) && ring_op(q, vq_enable_notify));

    /* One interrupt per batch, if the driver wants it. */
    if (pushed && ring_op(q, vq_should_notify))
        signal_guest(q);
    return true;
}

/* Waits for a kick or a stop request; returns false to stop. */
static bool wait_kick(struct vu_queue *q)
{
    struct pollfd fds[2] = {{.fd = q->stop_fd, .events = POLLIN},
                            {.fd = q->kick_fd, .events = POLLIN}};
    int nfds = q->kick_fd >= 0 ? 2 : 1;
    int timeout = q->kick_fd >= 0 ? -1 : POLL_INTERVAL_MS;
    for (;;) {
        if (atomic_load(&q->stop))
            return false;
        int n = poll(fds, (nfds_t)nfds, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_error("queue %u: poll failed: %m", q->index);
            return false;
        }
        if (atomic_load(&q->stop))
            return false;
        eventfd_t v;
        if ((fds[0].revents & POLLIN) && eventfd_read(q->stop_fd, &v) < 0 && errno != EAGAIN)
            log_warn("queue %u: reading the wake-up fd failed: %m", q->index);
        if (nfds == 2 && (fds[1].revents & POLLIN)) {
            if (eventfd_read(q->kick_fd, &v) < 0 && errno != EAGAIN)
                log_warn("queue %u: reading the kick fd failed: %m", q->index);
        }
        return true;
    }
}

static bool has_avail(struct virtqueue *vq)
{
    return vq_has_avail(vq);
}

/*
 * A driver that keeps requests in flight usually adds the next one within microseconds of a
 * completion; watching the ring that long saves the kick, the sleep and the wake-up. Adaptive:
 * after a few polls in a row that found nothing (a driver with one request at a time, an idle
 * guest) only every 64th wake-up polls, so a quiet queue costs next to no CPU.
 * Returns true when work arrived within q->poll_us.
 */
static bool poll_ring(struct vu_queue *q)
{
    enum { MAX_MISSES = 4, PROBE_EVERY = 64 };
    if (q->poll_us == 0 || (q->poll_misses >= MAX_MISSES && ++q->poll_skips % PROBE_EVERY))
        return false;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        if (atomic_load(&q->stop))
            return false;
        if (atomic_load(&q->late_pending) || ring_op(q, has_avail)) {
            q->poll_misses = 0;
            return true;
        }
        __builtin_ia32_pause();
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((uint64_t)(now.tv_sec - start.tv_sec) * 1000000000u +
                 (uint64_t)(now.tv_nsec - start.tv_nsec) <
             (uint64_t)q->poll_us * 1000u);
    if (q->poll_misses < MAX_MISSES)
        q->poll_misses++;
    return false;
}

static void *worker_main(void *arg)
{
    struct vu_queue *q = arg;
    struct fuse_scratch *scratch = fuse_scratch_new();
    struct vq_elem *elem = malloc(sizeof(*elem));
    rcu_register_thread();
    if (!scratch || !elem) {
        log_error("queue %u: out of memory starting the worker", q->index);
        goto out;
    }
    q->served = 0;
    log_debug("queue %u: worker started", q->index);
    /* Buffers may have been queued before the kick fd arrived: look before sleeping. */
    while (process_ring(q, scratch, elem) && (poll_ring(q) || wait_kick(q)))
        ;
    log_debug("queue %u: worker stopped, %llu requests served", q->index,
              (unsigned long long)q->served);
out:
    rcu_unregister_thread();
    free(elem);
    fuse_scratch_free(scratch);
    return NULL;
}

/*
 * The worker is stopped: wait for the requests it handed to the pool and put their replies in
 * the used ring, as a worker serving them itself finishes the one in progress before it stops.
 */
static void finish_pool_jobs(struct vu_queue *q)
{
    pthread_mutex_lock(&q->late_lock);
    while (q->inflight)
        pthread_cond_wait(&q->drained, &q->late_lock);
    pthread_mutex_unlock(&q->late_lock);
    if (!q->stop_elem && !(q->stop_elem = malloc(sizeof(*q->stop_elem))))
        return;
    if (serve_late(q, q->stop_elem) && ring_op(q, vq_should_notify))
        signal_guest(q);
}

int vu_queue_start(struct vu_queue *q)
{
    if (q->running || !q->started || !q->enabled || q->vq.num == 0)
        return 0;
    if (q->stop_fd < 0) {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            return -errno;
        pthread_mutex_lock(&q->late_lock); /* late_done reads it from other threads */
        q->stop_fd = fd;
        pthread_mutex_unlock(&q->late_lock);
    }
    /* A fresh start takes the used index the driver sees, as the ring was left. */
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    int ret = mem ? vq_map(&q->vq, mem) : -EFAULT;
    if (ret == 0)
        q->vq.used_idx = __atomic_load_n(&q->vq.used->idx, __ATOMIC_RELAXED);
    rcu_read_unlock();
    if (ret < 0) {
        log_error("queue %u: cannot start, ring outside guest memory", q->index);
        return ret;
    }
    q->vq.signalled_used_valid = false;
    if (q->pool && q->jobs_num != q->vq.num) { /* no job is out: vu_queue_stop drained them */
        free(q->jobs);
        q->jobs = calloc(q->vq.num, sizeof(*q->jobs));
        q->jobs_num = q->jobs ? q->vq.num : 0;
        if (!q->jobs)
            return -ENOMEM;
    }
    atomic_store(&q->stop, false);
    ret = pthread_create(&q->thread, NULL, worker_main, q);
    if (ret != 0)
        return -ret;
    q->running = true;
    return 0;
}

void vu_queue_stop(struct vu_queue *q)
{
    if (!q->running)
        return;
    atomic_store(&q->stop, true);
    if (eventfd_write(q->stop_fd, 1) < 0)
        log_warn("queue %u: waking the worker failed: %m", q->index);
    pthread_join(q->thread, NULL);
    eventfd_t v;
    (void)eventfd_read(q->stop_fd, &v); /* drain for the next start */
    q->running = false;
    if (q->pool)
        finish_pool_jobs(q);
}
