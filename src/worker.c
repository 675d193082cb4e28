/* SPDX-License-Identifier: Apache-2.0 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <urcu.h>

#include "cpu_relax.h"
#include "fuse_server.h"
#include "guest_mem.h"
#include "idle_mem.h"
#include "log.h"
#include "thread_pool.h"
#include "virtqueue.h"

/* Without a kick fd (the front-end asked for polling) we look at the ring this often. */
#define POLL_INTERVAL_MS 10
/* A worker with nothing to do for this long gives memory back (idle_mem.h), once. */
#define IDLE_RELEASE_MS 5000

struct late_reply {
    struct late_reply *next;
    uint64_t unique;
    uint32_t gen;
    uint16_t head;
    int error;
    bool written; /* a pool thread wrote the reply already: push head with len */
    uint32_t len;
};

/* A queue of the device and its ring; see worker.h for who may change it. */
struct vu_queue {
    /* What the front-end configured, through the vu_queue_set_* functions below. */
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
    struct guest_log *const *log; /* the same: the dirty-page log while logging is on */
    struct fuse_session *fuse;

    /*
     * In-flight tracking (inflight.h): the queue's part of the front-end's region, set while
     * the queue is stopped and copied into the ring at each start. After a (re)connection the
     * region is recovered once the ring can be read (recover_pending), and the heads it had
     * in flight are served again, oldest first, before anything new is popped; held keeps
     * the queue from starting until the device has recovered every queue (vu_queue_hold).
     */
    struct inflight_queue iq;
    bool recover_pending;
    bool held;
    struct inflight_resubmit *resubmit; /* room for the ring's size */
    unsigned n_resubmit, resubmit_pos;
    /* A planned upgrade's heads (vu_queue_import): what the old process left waiting, to be
     * served again at the start, unless the in-flight region listed them already. */
    uint16_t *handed;
    unsigned n_handed;
};

/* A request handed to the thread pool: the ring as it was when the chain was popped. */
struct pool_job {
    struct tpool_job base;
    struct vu_queue *q;
    uint32_t gen;
    uint16_t head;
    uint64_t counter; /* in the in-flight region; 0: not tracked */
    bool resubmitted;
    unsigned num;
    uint64_t desc_uva, avail_uva, used_uva;
};

/* A pool thread's buffers. */
struct pool_ctx {
    struct fuse_scratch *scratch;
    struct vq_elem elem;
};

/* A thread serving a list of queues. */
struct vu_worker {
    struct vu_workers *set;
    unsigned index;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    int wake_fd;             /* eventfd: to stop, or to serve late replies */
    struct vu_queue *queues; /* the queues it serves; changed only while it is paused */
    struct pollfd *pfds;     /* one per queue, plus wake_fd */
    struct vu_queue **pfd_queue;
    struct fuse_scratch *scratch;
    struct vq_elem *elem;
    unsigned poll_misses, poll_skips; /* adaptive polling state, worker thread only */
    bool mem_released; /* idle_mem_release ran since it last served; worker thread only */
};

struct vu_workers {
    unsigned nthreads;
    unsigned ncpus;
    unsigned poll_us;
    bool poll_when_crowded;
    atomic_uint running; /* worker threads running */
    struct vu_worker w[];
};

static void late_done(struct fuse_late_sink *sink, uint64_t cookie, uint64_t unique, int error);

struct vu_queue *vu_queue_new(unsigned index, struct guest_mem *const *mem,
                              struct guest_log *const *log, struct fuse_session *fuse,
                              struct vu_worker *worker, struct tpool *pool)
{
    struct vu_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->index = index;
    q->worker = worker;
    q->kick_fd = q->call_fd = q->err_fd = -1;
    pthread_mutex_init(&q->call_lock, NULL);
    pthread_mutex_init(&q->late_lock, NULL);
    pthread_cond_init(&q->drained, NULL);
    atomic_init(&q->late_pending, false);
    q->mem = mem;
    q->log = log;
    q->fuse = fuse;
    q->pool = pool;
    q->late_sink.done = late_done;
    return q;
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
    vu_queue_set_call(q, -1);
    q->started = false;
    q->enabled = false;
    vq_clear(&q->vq);
    q->n_handed = 0;
    /* The ring is gone: what was sized for it, or used only while it was stopped, goes with
     * it (vu_queue_start allocates again). */
    free(q->stop_elem);
    q->stop_elem = NULL;
    free(q->jobs);
    q->jobs = NULL;
    q->jobs_num = 0;
    pthread_mutex_lock(&q->late_lock);
    q->gen++;
    free_late(q->late);
    q->late = NULL;
    pthread_mutex_unlock(&q->late_lock);
}

void vu_queue_free(struct vu_queue *q)
{
    if (!q)
        return;
    vu_queue_stop(q);
    vu_queue_reset(q);
    pthread_mutex_destroy(&q->call_lock);
    pthread_mutex_destroy(&q->late_lock);
    pthread_cond_destroy(&q->drained);
    free(q->jobs);
    free(q->stop_elem);
    free(q->resubmit);
    free(q->handed);
    free(q);
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
    pthread_mutex_unlock(&q->late_lock);
    free(r); /* the ring was reset meanwhile: nobody waits for this reply */
    if (eventfd_write(q->worker->wake_fd, 1) < 0)
        log_warn("queue %u: waking the worker failed: %m", q->index);
}

/*
 * A request the FUSE layer answers later carries a cookie it hands back untouched: the chain's
 * head, and the generation of the ring it was popped from, so that a reply meant for an
 * earlier life of the ring is dropped (queue_late) rather than pushed onto the new one.
 */
static struct fuse_req_ctx req_ctx(struct vu_queue *q, uint32_t gen, uint16_t head,
                                   uint64_t counter, bool resubmitted)
{
    return (struct fuse_req_ctx){
        .late = {.sink = &q->late_sink, .cookie = ((uint64_t)gen << 16) | head},
        .tag = {.counter = counter, .queue = (uint16_t)q->index, .head = head},
        .resubmitted = resubmitted};
}

static uint32_t cookie_gen(uint64_t cookie)
{
    return (uint32_t)(cookie >> 16);
}

static uint16_t cookie_head(uint64_t cookie)
{
    return (uint16_t)(cookie & 0xffff);
}

/* fuse_late_sink.done: a request answered on another thread (a lock wait). */
static void late_done(struct fuse_late_sink *sink, uint64_t cookie, uint64_t unique, int error)
{
    struct vu_queue *q = caa_container_of(sink, struct vu_queue, late_sink);
    struct late_reply *r = malloc(sizeof(*r));
    if (!r) {
        log_error("queue %u: out of memory for the reply to request %llu", q->index,
                  (unsigned long long)unique);
        return;
    }
    *r = (struct late_reply){
        .unique = unique, .gen = cookie_gen(cookie), .head = cookie_head(cookie), .error = error};
    queue_late(q, r);
}

/* The ring in guest memory for one read-side section: its addresses through the memory table
 * in force, and the dirty-page log (NULL unless logging is on) its writes are logged to. */
static int map_ring(struct vu_queue *q, struct guest_mem *mem)
{
    q->vq.log = rcu_dereference(*q->log);
    return mem ? vq_map(&q->vq, mem) : -EFAULT;
}

/*
 * Dirty-page logging of a reply: the one place where what a request wrote into guest memory
 * is logged, whichever thread served it and whenever (a late reply too), before its head
 * is pushed. The used length is exactly what was written into the chain. With logging off
 * this is one predicted branch. Under the caller's read-side section.
 */
static uint32_t log_reply(struct vu_queue *q, const struct vq_elem *elem, uint32_t len)
{
    struct guest_log *log = rcu_dereference(*q->log);
    if (__builtin_expect(log != NULL, 0) && len != FUSE_REPLY_LATER)
        vq_log_reply(log, elem, len);
    return len;
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
    for (struct late_reply *r = list; r && map_ring(q, mem) == 0; r = r->next) {
        if (r->gen != q->gen)
            continue;
        /* The chain is walked again: the memory table may have changed since it was popped. */
        uint32_t len = r->len;
        if (r->written)
            ; /* a pool thread wrote it, and logged it */
        else if (vq_walk(&q->vq, mem, r->head, elem) == 0)
            len = log_reply(q, elem, fuse_reply_late(elem, r->unique, r->error));
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
    /* After a fault guest memory reads as zeros: nothing there is a request any more. */
    if (mem && !guest_mem_faulted() && vq_map(&ring, mem) == 0 &&
        vq_walk(&ring, mem, job->head, &ctx->elem) == 0) {
        const struct fuse_req_ctx rc =
            req_ctx(q, job->gen, job->head, job->counter, job->resubmitted);
        len =
            log_reply(q, &ctx->elem, fuse_session_process(q->fuse, ctx->scratch, &ctx->elem, &rc));
    }
    rcu_read_unlock();
    fuse_session_quiescent(q->fuse);
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

static void hand_out(struct vu_queue *q, uint16_t head, uint64_t counter, bool resubmitted)
{
    /* Free: vq_pop hands a head out again only after its used entry was pushed, which
     * happens after run_job's last use of the job (it queues that entry as its last act). A
     * job submitted while still queued would loop the pool's job list. */
    struct pool_job *job = &q->jobs[head];
    *job = (struct pool_job){.base.run = run_job,
                             .q = q,
                             .gen = q->gen,
                             .head = head,
                             .counter = counter,
                             .resubmitted = resubmitted,
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
    if (map_ring(q, mem) < 0) {
        rcu_read_unlock();
        log_error("queue %u: ring addresses are not in guest memory", q->index);
        return -EFAULT;
    }
    int r = vq_pop(vq, mem, elem);
    if (r > 0 && q->pool) {
        hand_out(q, elem->head, elem->counter, false);
    } else if (r != 0) {
        const struct fuse_req_ctx rc = req_ctx(q, q->gen, elem->head, elem->counter, false);
        /* A chain we could not walk still goes back to the driver, empty. */
        uint32_t len =
            r > 0 ? log_reply(q, elem, fuse_session_process(q->fuse, scratch, elem, &rc)) : 0;
        if (len != FUSE_REPLY_LATER)
            vq_push(vq, elem->head, len);
        q->served++;
    }
    rcu_read_unlock();
    if (r > 0 && !q->pool)
        fuse_session_quiescent(q->fuse);
    return r != 0;
}

/*
 * Serves a request in flight before a restart again (oldest first, before anything new is
 * popped): its head is out again until pushed, and the FUSE layer learns it may have run
 * already. A chain that no longer walks is answered empty, as a popped one. Returns 1 when
 * one was served, 0 when none is left, -EFAULT when the ring is unusable.
 */
static int serve_resubmitted(struct vu_queue *q, struct fuse_scratch *scratch, struct vq_elem *elem)
{
    if (q->resubmit_pos >= q->n_resubmit)
        return 0;
    const struct inflight_resubmit *rs = &q->resubmit[q->resubmit_pos++];
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    if (map_ring(q, mem) < 0) {
        rcu_read_unlock();
        return -EFAULT;
    }
    vq_mark_out(&q->vq, rs->head);
    if (q->pool) {
        hand_out(q, rs->head, rs->counter, true);
    } else {
        uint32_t len = 0;
        if (vq_walk(&q->vq, mem, rs->head, elem) == 0) {
            const struct fuse_req_ctx rc = req_ctx(q, q->gen, rs->head, rs->counter, true);
            len = log_reply(q, elem, fuse_session_process(q->fuse, scratch, elem, &rc));
        }
        if (len != FUSE_REPLY_LATER)
            vq_push(&q->vq, rs->head, len);
        q->served++;
    }
    rcu_read_unlock();
    if (!q->pool)
        fuse_session_quiescent(q->fuse);
    return 1;
}

/* Notification-related ring accesses, each under its own read-side section. */
static bool ring_op(struct vu_queue *q, bool (*op)(struct virtqueue *))
{
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    bool ret = map_ring(q, mem) == 0 && op(&q->vq);
    rcu_read_unlock();
    return ret;
}

static bool disable_notify(struct virtqueue *vq)
{
    vq_disable_notify(vq);
    return true;
}

/* A worker serves at most this many requests of one queue in a row, so that a queue the
 * driver keeps full cannot starve the other queues of its worker. */
#define BATCH_MAX 64

/*
 * Serves what is available on the ring, up to BATCH_MAX requests, with kicks off, and signals
 * the guest once for them if the driver wants it. Kicks stay off: the worker turns them back
 * on only when it is about to sleep (arm_rings), so a driver adding requests while the worker
 * is busy or polling need not kick. Returns 0 when the ring is drained, 1 when the budget ran
 * out first, -EFAULT when the ring cannot be used.
 */
static int process_ring(struct vu_worker *w, struct vu_queue *q)
{
    bool pushed = serve_late(q, w->elem);
    unsigned budget = BATCH_MAX;
    int r = 0;
    ring_op(q, disable_notify);
    while (budget > 0 && !atomic_load(&w->stop) &&
           (r = serve_resubmitted(q, w->scratch, w->elem)) > 0) {
        pushed = true;
        budget--;
    }
    while (budget > 0 && !atomic_load(&w->stop) && r >= 0 &&
           (r = serve_one(q, w->scratch, w->elem)) > 0) {
        pushed = true;
        budget--;
    }
    if (r < 0)
        return -EFAULT;
    if (pushed && ring_op(q, vq_should_notify))
        signal_guest(q);
    /* The replies are out: what waits for a grace period (released handles' fds) goes now,
     * once per batch rather than per request, and without delaying the batch's signal. Not
     * with a pool: the grace period would wait for the pool's requests in progress, and the
     * pool threads close what they released themselves (fuse_session_quiescent). */
    if (pushed && q->fuse && !q->pool)
        fuse_session_idle(q->fuse);
    return budget == 0;
}

/* Turns kicks back on before the worker sleeps; marks the queues whose driver added requests
 * meanwhile (they would get no kick) due. Returns true if any did. */
static bool arm_rings(struct vu_worker *w)
{
    bool found = false;
    for (struct vu_queue *q = w->queues; q; q = q->next) {
        if (!q->broken && ring_op(q, vq_enable_notify)) {
            q->due = true;
            found = true;
        }
    }
    return found;
}

/* Whether the worker should look at q this round. */
static bool queue_due(const struct vu_queue *q)
{
    /* Without a kick fd the front-end expects the ring to be polled. */
    return q->due || q->kick_fd < 0 || atomic_load(&q->late_pending);
}

/*
 * One round over the worker's queues. Returns false when none is usable any more; *busy says
 * whether one still has work (its budget ran out) so the worker must not sleep.
 */
static bool serve_round(struct vu_worker *w, bool *busy)
{
    bool usable = false;
    *busy = false;
    for (struct vu_queue *q = w->queues; q; q = q->next) {
        if (q->broken)
            continue;
        if (queue_due(q)) {
            int r = process_ring(w, q);
            if (r < 0) {
                q->broken = true; /* logged by serve_one; the other queues go on */
                continue;
            }
            q->due = r > 0;
            *busy |= q->due;
        }
        usable = true;
    }
    return usable;
}

/* Waits for a kick on any of the worker's queues, a late reply or a stop request; marks the
 * kicked queues due. Returns false to stop. */
static bool wait_kicks(struct vu_worker *w)
{
    nfds_t n = 0;
    int timeout = -1;
    /* Nothing to serve: what waits for a quiet moment (released handles' fds) goes now. */
    for (struct vu_queue *q = w->queues; q; q = q->next)
        if (!q->broken && q->fuse) {
            fuse_session_idle(q->fuse);
            break; /* the queues of a device share one session */
        }
    w->pfds[n] = (struct pollfd){.fd = w->wake_fd, .events = POLLIN};
    w->pfd_queue[n++] = NULL;
    for (struct vu_queue *q = w->queues; q; q = q->next) {
        if (q->broken)
            continue;
        if (q->kick_fd < 0) {
            timeout = POLL_INTERVAL_MS;
            continue;
        }
        w->pfds[n] = (struct pollfd){.fd = q->kick_fd, .events = POLLIN};
        w->pfd_queue[n++] = q;
    }
    for (;;) {
        if (atomic_load(&w->stop))
            return false;
        /* A guest connected but idle leaves the daemon as small as between sessions: the
         * heap's free pages and the code and constants the work mapped go back (idle_mem.h;
         * safe while other threads run: those pages fault back in). */
        bool release_after = timeout < 0 && !w->mem_released;
        int r = poll(w->pfds, n, release_after ? IDLE_RELEASE_MS : timeout);
        if (r == 0 && release_after) {
            idle_mem_release();
            w->mem_released = true;
            continue;
        }
        if (r >= 0)
            break;
        if (errno != EINTR) {
            log_error("worker %u: poll failed: %m", w->index);
            return false;
        }
    }
    if (atomic_load(&w->stop))
        return false;
    w->mem_released = false;
    for (nfds_t i = 0; i < n; i++) {
        if (!w->pfds[i].revents)
            continue;
        eventfd_t v;
        if (eventfd_read(w->pfds[i].fd, &v) < 0 && errno != EAGAIN)
            log_warn("worker %u: reading %s fd failed: %m", w->index, i ? "a kick" : "its wake-up");
        if (w->pfd_queue[i])
            w->pfd_queue[i]->due = true;
    }
    return true;
}

static bool has_avail(struct virtqueue *vq)
{
    return vq_has_avail(vq);
}

/* Marks the queues with work due; true if any has. */
static bool look_at_rings(struct vu_worker *w)
{
    bool found = false;
    for (struct vu_queue *q = w->queues; q; q = q->next) {
        if (!q->broken && (atomic_load(&q->late_pending) || ring_op(q, has_avail))) {
            q->due = true;
            found = true;
        }
    }
    return found;
}

/* Whether watching idle rings pays: a polling worker keeps a CPU busy, so it is left to
 * workers that leave at least half the CPUs to the guest's vCPUs (or to whoever submits). */
static bool may_poll(const struct vu_worker *w)
{
    const struct vu_workers *ws = w->set;
    if (ws->poll_us == 0)
        return false;
    return ws->poll_when_crowded || 2 * atomic_load(&ws->running) <= ws->ncpus;
}

/*
 * A driver that keeps requests in flight usually adds the next one within microseconds of a
 * completion; watching the rings that long saves the kick, the sleep and the wake-up.
 * Adaptive: after a few polls in a row that found nothing (a driver with one request at a
 * time, an idle guest) only every 64th wake-up polls, so a quiet worker costs next to no CPU.
 * Returns true when work arrived within the poll time.
 */
static bool poll_rings(struct vu_worker *w)
{
    enum { MAX_MISSES = 4, PROBE_EVERY = 64 };
    if (!may_poll(w) || (w->poll_misses >= MAX_MISSES && ++w->poll_skips % PROBE_EVERY))
        return false;
    uint64_t limit_ns = (uint64_t)w->set->poll_us * 1000u;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        if (atomic_load(&w->stop))
            return false;
        if (look_at_rings(w)) {
            w->poll_misses = 0;
            return true;
        }
        cpu_relax();
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((uint64_t)(now.tv_sec - start.tv_sec) * 1000000000u +
                 (uint64_t)(now.tv_nsec - start.tv_nsec) <
             limit_ns);
    if (w->poll_misses < MAX_MISSES)
        w->poll_misses++;
    return false;
}

static void *worker_main(void *arg)
{
    struct vu_worker *w = arg;
    /* Named for top -H and /proc/PID/task/TID/comm (best effort). */
    char name[16];
    snprintf(name, sizeof(name), "queue-worker-%u", w->index);
    (void)prctl(PR_SET_NAME, name);
    rcu_register_thread();
    /* Every queue starts due: buffers may have been queued before the kick fd arrived.
     * After a fault on guest memory (guest_mem.h) the rings read as zeros: the worker leaves
     * them alone, as broken ones, until the control thread ends the session. */
    bool busy;
    while (serve_round(w, &busy) && !atomic_load(&w->stop) && !guest_mem_faulted() &&
           (busy || poll_rings(w) || arm_rings(w) || wait_kicks(w)))
        ;
    rcu_unregister_thread();
    return NULL;
}

/* Stops the worker's thread; the requests in progress finish first. */
static void worker_pause(struct vu_worker *w)
{
    if (!w->running)
        return;
    atomic_store(&w->stop, true);
    if (eventfd_write(w->wake_fd, 1) < 0)
        log_warn("worker %u: waking it failed: %m", w->index);
    pthread_join(w->thread, NULL);
    w->running = false;
    atomic_fetch_sub(&w->set->running, 1);
    eventfd_t v;
    (void)eventfd_read(w->wake_fd, &v); /* drain for the next start */
}

/* Starts the worker's thread if it has queues to serve. */
static int worker_resume(struct vu_worker *w)
{
    if (w->running || !w->queues)
        return 0;
    /* The buffers come with the first queue: a worker that never serves costs nothing. */
    if (!w->scratch && !(w->scratch = fuse_scratch_new()))
        return -ENOMEM;
    if (!w->elem && !(w->elem = malloc(sizeof(*w->elem))))
        return -ENOMEM;
    for (struct vu_queue *q = w->queues; q; q = q->next)
        q->due = true;
    atomic_store(&w->stop, false);
    atomic_fetch_add(&w->set->running, 1);
    int ret = pthread_create(&w->thread, NULL, worker_main, w);
    if (ret != 0) {
        atomic_fetch_sub(&w->set->running, 1);
        return -ret;
    }
    w->running = true;
    return 0;
}

static void unlink_queue(struct vu_queue *q)
{
    for (struct vu_queue **p = &q->worker->queues; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    q->next = NULL;
    q->running = false;
}

/* The queue is off its worker: the control thread puts the queued late replies in the used
 * ring itself (a broken ring, or guest memory that faulted, is left alone). */
static void push_late_stopped(struct vu_queue *q)
{
    if (q->broken || guest_mem_faulted())
        return;
    if (!q->stop_elem && !(q->stop_elem = malloc(sizeof(*q->stop_elem))))
        return;
    if (serve_late(q, q->stop_elem) && ring_op(q, vq_should_notify))
        signal_guest(q);
}

/*
 * The queue is off its worker: wait for the requests it handed to the pool and put their
 * replies in the used ring, as a worker serving them itself finishes the one in progress.
 */
static void finish_pool_jobs(struct vu_queue *q)
{
    /* Bounded: each job serves one request and returns; what may wait long (a SETLKW for a
     * lock) answers later from another thread, and its reply is dropped if the ring was reset
     * meanwhile. Only a host filesystem call that hangs keeps us here, as it would keep a
     * worker serving without the pool: say so, once a second. */
    pthread_mutex_lock(&q->late_lock);
    while (q->inflight) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (pthread_cond_timedwait(&q->drained, &q->late_lock, &until) == ETIMEDOUT)
            log_warn("queue %u: stopping, still waiting for %u requests in the thread pool",
                     q->index, q->inflight);
    }
    pthread_mutex_unlock(&q->late_lock);
    push_late_stopped(q);
}

/*
 * The first start after the front-end gave an in-flight region: the region is made to agree
 * with the ring (inflight_recover), the requests it had in flight are listed to be served
 * again, and the ring goes on from the avail entry after the last one popped — not from the
 * base the front-end set: cloud-hypervisor sets the driver's avail index, which would skip
 * requests published but not yet popped. The ring is mapped (vq_map).
 */
static int recover_ring(struct vu_queue *q)
{
    if (!q->recover_pending)
        return 0;
    q->recover_pending = false;
    q->n_resubmit = q->resubmit_pos = 0;
    if (!q->iq.r)
        return 0;
    if (q->vq.num > q->iq.capacity) {
        log_error("queue %u: size %u, but the in-flight region was made for %u; not tracked",
                  q->index, q->vq.num, q->iq.capacity);
        q->iq.r = NULL;
        return 1;
    }
    free(q->resubmit);
    q->resubmit = calloc(q->vq.num, sizeof(*q->resubmit));
    if (!q->resubmit)
        return -ENOMEM;
    uint16_t used = __atomic_load_n(&q->vq.used->idx, __ATOMIC_ACQUIRE);
    uint16_t avail = __atomic_load_n(&q->vq.avail->idx, __ATOMIC_ACQUIRE);
    uint16_t next;
    bool usable = inflight_recover(&q->iq, q->index, q->vq.num, used, avail, q->resubmit,
                                   &q->n_resubmit, &next);
    q->vq.last_avail_idx = next;
    q->vq.avail_seen = next;
    q->vq.used_idx = used;
    if (usable)
        q->n_handed = 0; /* the region lists them, with their counters */
    return usable ? 0 : 1;
}

/*
 * The heads a planned upgrade's old process left out (requests waiting for a lock, which it
 * never answered) are served again first, as requests in flight before a restart are: with
 * counter 0 without an in-flight region, which would otherwise have listed them.
 */
static int adopt_handed(struct vu_queue *q)
{
    if (!q->n_handed)
        return 0;
    free(q->resubmit);
    q->resubmit = calloc(q->vq.num, sizeof(*q->resubmit));
    if (!q->resubmit)
        return -ENOMEM;
    q->n_resubmit = q->resubmit_pos = 0;
    /* Checked against the size the old process had (vu_queue_import); a front-end that
     * resized the ring since made them meaningless, and they are dropped. */
    for (unsigned i = 0; i < q->n_handed; i++)
        if (q->handed[i] < q->vq.num) /* distinct (checked): at most num of them */
            q->resubmit[q->n_resubmit++] =
                (struct inflight_resubmit){.head = q->handed[i], .counter = 0};
    log_info("queue %u: %u requests the old process left waiting, served again", q->index,
             q->n_resubmit);
    q->n_handed = 0;
    return 0;
}

/* Ring state for a fresh start: the used index the driver sees, as the ring was left. */
static int prepare_ring(struct vu_queue *q)
{
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    int ret = mem ? vq_map(&q->vq, mem) : -EFAULT;
    if (ret == 0)
        q->vq.used_idx = __atomic_load_n(&q->vq.used->idx, __ATOMIC_RELAXED);
    if (ret == 0 && (recover_ring(q) < 0 || adopt_handed(q) < 0))
        ret = -ENOMEM;
    rcu_read_unlock();
    if (ret == -ENOMEM) {
        log_error("queue %u: cannot start, out of memory", q->index);
        return ret;
    }
    if (ret < 0) {
        log_error("queue %u: cannot start, ring outside guest memory", q->index);
        return ret;
    }
    q->vq.inflight = q->iq;
    q->vq.signalled_used_valid = false;
    if (q->pool && q->jobs_num != q->vq.num) { /* no job is out: vu_queue_stop drained them */
        free(q->jobs);
        q->jobs = calloc(q->vq.num, sizeof(*q->jobs));
        q->jobs_num = q->jobs ? q->vq.num : 0;
        if (!q->jobs)
            return -ENOMEM;
    }
    return 0;
}

/* Hands the queue to its worker if it is started, enabled and sized and not running yet. */
static int vu_queue_start(struct vu_queue *q)
{
    if (q->running || q->held || !q->started || !q->enabled || q->vq.num == 0)
        return 0;
    int ret = prepare_ring(q);
    if (ret < 0)
        return ret;
    struct vu_worker *w = q->worker;
    worker_pause(w);
    q->next = w->queues;
    w->queues = q;
    q->running = true;
    q->broken = false;
    q->served = 0;
    ret = worker_resume(w);
    if (ret < 0) {
        unlink_queue(q);
        log_error("queue %u: cannot start worker %u: %s", q->index, w->index, strerror(-ret));
        if (worker_resume(w) < 0)
            log_error("worker %u: cannot restart it for its other queues", w->index);
        return ret;
    }
    log_debug("queue %u: started on worker %u", q->index, w->index);
    return 0;
}

void vu_queue_stop(struct vu_queue *q)
{
    if (!q->running)
        return;
    struct vu_worker *w = q->worker;
    worker_pause(w);
    unlink_queue(q);
    log_debug("queue %u: stopped, %llu requests served", q->index, (unsigned long long)q->served);
    int ret = worker_resume(w);
    if (ret < 0)
        log_error("worker %u: cannot restart it for its other queues: %s", w->index,
                  strerror(-ret));
    if (q->pool)
        finish_pool_jobs(q);
}

/* ---- what the front-end configures --------------------------------------------------------
 *
 * Each change to a ring's configuration is made with the queue off its worker and hands it
 * back afterwards, so that the worker never sees a ring half configured.
 */

int vu_queue_set_size(struct vu_queue *q, unsigned num)
{
    vu_queue_stop(q);
    q->vq.num = num;
    return vu_queue_start(q);
}

int vu_queue_set_addr(struct vu_queue *q, const struct vu_ring_addr *a)
{
    vu_queue_stop(q);
    q->vq.desc_uva = a->desc_uva;
    q->vq.avail_uva = a->avail_uva;
    q->vq.used_uva = a->used_uva;
    q->vq.log_used = a->log_used;
    q->vq.log_used_gpa = a->log_used_gpa;
    return vu_queue_start(q);
}

int vu_queue_set_base(struct vu_queue *q, uint16_t idx)
{
    vu_queue_stop(q);
    q->vq.last_avail_idx = idx;
    q->vq.used_idx = idx;
    return vu_queue_start(q);
}

uint16_t vu_queue_get_base(struct vu_queue *q)
{
    /* The worker finishes the request in hand and lets go of the ring. */
    vu_queue_stop(q);
    /*
     * A request still waiting (a SETLKW) would be answered after the reset below, and that
     * reply dropped: the guest's caller would wait forever, and after a migration nobody
     * would answer it at all. It ends now with EINTR, and its reply goes into the used ring
     * before the base is reported, so the used index the front-end reads (and migrates)
     * covers it. No new one can start: the queue is stopped.
     */
    fuse_session_end_waits(q->fuse, &q->late_sink);
    push_late_stopped(q);
    uint16_t base = q->vq.last_avail_idx;
    unsigned num = q->vq.num;
    const struct virtqueue kept = q->vq;
    vu_queue_reset(q);
    /* A front-end may restart the ring with only a new base and kick. */
    q->vq.num = num;
    q->vq.desc_uva = kept.desc_uva;
    q->vq.avail_uva = kept.avail_uva;
    q->vq.used_uva = kept.used_uva;
    q->vq.log_used = kept.log_used;
    q->vq.log_used_gpa = kept.log_used_gpa;
    q->vq.event_idx = kept.event_idx;
    return base;
}

void vu_queue_quiesce(struct vu_queue *q)
{
    /*
     * Not fuse_session_end_waits, as vu_queue_get_base: an EINTR for a lock wait that was
     * not interrupted reaches the guest's caller as ERESTARTSYS (errno 512). The waits stay;
     * their heads go to the new process (vu_queue_export), which serves them again.
     */
    vu_queue_stop(q);
    push_late_stopped(q);
}

void vu_queue_let_go(struct vu_queue *q)
{
    /* As vu_queue_reset does for its ring, but the ring stays as it is: it is not ours. */
    pthread_mutex_lock(&q->late_lock);
    q->gen++;
    free_late(q->late);
    q->late = NULL;
    pthread_mutex_unlock(&q->late_lock);
}

int vu_queue_export(const struct vu_queue *q, struct vu_queue_image *img)
{
    uint16_t *out = q->vq.num ? malloc(q->vq.num * sizeof(*out)) : NULL;
    if (q->vq.num && !out)
        return -ENOMEM;
    *img = (struct vu_queue_image){.num = q->vq.num,
                                   .desc_uva = q->vq.desc_uva,
                                   .avail_uva = q->vq.avail_uva,
                                   .used_uva = q->vq.used_uva,
                                   .log_used = q->vq.log_used,
                                   .log_used_gpa = q->vq.log_used_gpa,
                                   .last_avail_idx = q->vq.last_avail_idx,
                                   .used_idx = q->vq.used_idx,
                                   .started = q->started,
                                   .enabled = q->enabled,
                                   .event_idx = q->vq.event_idx,
                                   .kick_fd = q->kick_fd,
                                   .call_fd = q->call_fd,
                                   .err_fd = q->err_fd,
                                   .out = out,
                                   .n_out = out ? vq_out_heads(&q->vq, out) : 0};
    return 0;
}

/* The heads img says are out, for a ring of img->num: each below the size and named once. */
static int check_heads(const struct vu_queue_image *img)
{
    if (img->n_out > img->num || (img->n_out && !img->out))
        return -EINVAL;
    uint64_t *seen = calloc((img->num + 63) / 64 + 1, sizeof(*seen));
    if (!seen)
        return -ENOMEM;
    int ret = 0;
    for (unsigned i = 0; i < img->n_out && ret == 0; i++) {
        unsigned h = img->out[i];
        if (h >= img->num || (seen[h / 64] >> (h % 64)) & 1)
            ret = -EINVAL;
        else
            seen[h / 64] |= 1ull << (h % 64);
    }
    free(seen);
    return ret;
}

/* A duplicate of a handed-over fd, or -1 for none. */
static int dup_image_fd(int fd, int *out)
{
    *out = -1;
    if (fd < 0)
        return 0;
    *out = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return *out < 0 ? -errno : 0;
}

int vu_queue_import(struct vu_queue *q, const struct vu_queue_image *img)
{
    if (img->num > VQ_MAX_SIZE || (img->num & (img->num - 1)))
        return -EINVAL;
    int ret = check_heads(img);
    if (ret < 0)
        return ret;
    vu_queue_stop(q);
    vu_queue_reset(q);
    free(q->handed);
    q->handed = NULL;
    if (img->n_out && !(q->handed = malloc(img->n_out * sizeof(*q->handed))))
        return -ENOMEM;
    if (img->n_out)
        memcpy(q->handed, img->out, img->n_out * sizeof(*q->handed));
    int kick = -1, call = -1, err = -1;
    ret = dup_image_fd(img->kick_fd, &kick);
    if (ret == 0 && (ret = dup_image_fd(img->call_fd, &call)) < 0)
        close_fd(&kick);
    if (ret == 0 && (ret = dup_image_fd(img->err_fd, &err)) < 0) {
        close_fd(&kick);
        close_fd(&call);
    }
    if (ret < 0)
        return ret;
    q->vq.num = img->num;
    q->vq.desc_uva = img->desc_uva;
    q->vq.avail_uva = img->avail_uva;
    q->vq.used_uva = img->used_uva;
    q->vq.log_used = img->log_used;
    q->vq.log_used_gpa = img->log_used_gpa;
    q->vq.last_avail_idx = img->last_avail_idx;
    q->vq.avail_seen = img->last_avail_idx;
    q->vq.used_idx = img->used_idx;
    q->vq.event_idx = img->event_idx;
    q->kick_fd = kick;
    q->err_fd = err;
    vu_queue_set_call(q, call);
    q->started = img->started;
    q->enabled = img->enabled;
    q->held = true;
    q->n_handed = img->n_out;
    return 0;
}

bool vu_queue_running(const struct vu_queue *q)
{
    return q->running;
}

bool vu_queue_ready(const struct vu_queue *q)
{
    return q->started && q->enabled && q->vq.num != 0;
}

void vu_queue_set_inflight(struct vu_queue *q, const struct inflight_queue *iq, bool hold)
{
    vu_queue_stop(q);
    q->iq = iq ? *iq : (struct inflight_queue){0};
    q->vq.inflight = (struct inflight_queue){0}; /* the ring takes it at its next start */
    q->recover_pending = iq != NULL;
    q->n_resubmit = q->resubmit_pos = 0;
    q->held = hold;
}

int vu_queue_recover(struct vu_queue *q)
{
    if (!q->recover_pending || q->vq.num == 0 || q->running)
        return 0;
    rcu_read_lock();
    struct guest_mem *mem = rcu_dereference(*q->mem);
    int ret = mem ? vq_map(&q->vq, mem) : -EFAULT;
    if (ret == 0)
        ret = recover_ring(q);
    rcu_read_unlock();
    return ret == -EFAULT || ret == -EINVAL ? 0 : ret; /* no ring yet: at its start */
}

int vu_queue_hold(struct vu_queue *q, bool hold)
{
    q->held = hold;
    return hold ? 0 : vu_queue_start(q);
}

int vu_queue_set_kick(struct vu_queue *q, int fd, bool enable)
{
    vu_queue_stop(q);
    close_fd(&q->kick_fd);
    q->kick_fd = fd;
    q->started = true;
    if (enable)
        q->enabled = true;
    return vu_queue_start(q);
}

void vu_queue_set_err(struct vu_queue *q, int fd)
{
    /* Only stored (and closed with the queue): the worker never reports through it. */
    close_fd(&q->err_fd);
    q->err_fd = fd;
}

int vu_queue_enable(struct vu_queue *q, bool enable)
{
    if (!enable) {
        vu_queue_stop(q);
        q->enabled = false;
        return 0;
    }
    q->enabled = true;
    return vu_queue_start(q);
}

void vu_queue_set_event_idx(struct vu_queue *q, bool on)
{
    bool was_running = q->running;
    vu_queue_stop(q);
    q->vq.event_idx = on;
    /* Only a queue that was served is handed back; one that cannot be stays stopped, and
     * the features still apply to the others. */
    if (was_running)
        (void)vu_queue_start(q);
}

/* ---- the set of workers ----------------------------------------------------------------- */

/* The CPUs this process may run on (its affinity mask, which cpusets and taskset narrow). */
static unsigned usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

struct vu_workers *vu_workers_new(const struct vu_workers_config *cfg)
{
    unsigned ncpus = usable_cpus();
    unsigned requests = cfg->queues > 1 ? cfg->queues - 1 : 1;
    unsigned n = cfg->threads ? cfg->threads : ncpus;
    if (n > requests)
        n = requests;
    struct vu_workers *ws = calloc(1, sizeof(*ws) + n * sizeof(ws->w[0]));
    if (!ws)
        return NULL;
    ws->nthreads = n;
    ws->ncpus = ncpus;
    ws->poll_us = cfg->poll_us;
    ws->poll_when_crowded = cfg->poll_when_crowded;
    atomic_init(&ws->running, 0);
    for (unsigned i = 0; i < n; i++) {
        struct vu_worker *w = &ws->w[i];
        w->set = ws;
        w->index = i;
        atomic_init(&w->stop, false);
        w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        w->pfds = calloc(cfg->queues + 1, sizeof(*w->pfds));
        w->pfd_queue = calloc(cfg->queues + 1, sizeof(*w->pfd_queue));
        if (w->wake_fd < 0 || !w->pfds || !w->pfd_queue) {
            ws->nthreads = i + 1;
            vu_workers_free(ws);
            return NULL;
        }
    }
    return ws;
}

void vu_workers_free(struct vu_workers *ws)
{
    if (!ws)
        return;
    for (unsigned i = 0; i < ws->nthreads; i++) {
        struct vu_worker *w = &ws->w[i];
        worker_pause(w);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        free(w->pfds);
        free(w->pfd_queue);
        free(w->elem);
        fuse_scratch_free(w->scratch);
    }
    free(ws);
}

void vu_workers_release_buffers(struct vu_workers *ws)
{
    for (unsigned i = 0; i < ws->nthreads; i++) {
        struct vu_worker *w = &ws->w[i];
        if (w->running) /* cannot be: its queues stopped */
            continue;
        free(w->elem);
        w->elem = NULL;
        fuse_scratch_free(w->scratch);
        w->scratch = NULL;
    }
}

struct vu_worker *vu_workers_for_queue(struct vu_workers *ws, unsigned index)
{
    return &ws->w[index == 0 ? 0 : (index - 1) % ws->nthreads];
}

unsigned vu_workers_threads(const struct vu_workers *ws)
{
    return ws->nthreads;
}
