/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue workers: threads that wait for kicks, pop chains, serve them through the FUSE session
 * and signal the guest once per batch. Each queue is served by one worker, fixed when the
 * device is made; a worker serves one queue or several. With no more queues than CPUs every
 * request queue gets a thread of its own; with more, queues share threads rather than threads
 * fighting over the CPUs. Workers share nothing with each other on the request path but
 * lock-free tables.
 *
 * A queue's state is this module's alone: vhost_user.c decodes and checks the front-end's
 * messages and calls the vu_queue_set_* functions below, which take the queue from its worker
 * around the change, so no other thread ever writes a queue that a worker serves.
 */
#ifndef VFS_WORKER_H
#define VFS_WORKER_H

#include <stdbool.h>
#include <stdint.h>

struct fuse_session;
struct guest_log;
struct guest_mem;
struct tpool;
struct vu_queue;
struct vu_worker;
struct vu_workers;

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
/* The session ended (every queue stopped and reset): the workers' request buffers go, and
 * come back with the next queue that starts (some 170 KiB a worker). */
void vu_workers_release_buffers(struct vu_workers *ws);
/* The worker that serves queue index: the high-priority queue (0) shares the first request
 * queue's worker; request queue i goes to worker (i - 1) mod threads. */
struct vu_worker *vu_workers_for_queue(struct vu_workers *ws, unsigned index);
unsigned vu_workers_threads(const struct vu_workers *ws);

/*
 * A queue of the device, served by worker (vu_workers_for_queue). mem is the device's
 * RCU-protected memory table, log its RCU-protected dirty-page log (NULL while logging is
 * off); pool (vu_pool_new) serves the queue's requests, or NULL for the worker to serve them
 * itself. NULL when out of memory.
 */
struct vu_queue *vu_queue_new(unsigned index, struct guest_mem *const *mem,
                              struct guest_log *const *log, struct fuse_session *fuse,
                              struct vu_worker *worker, struct tpool *pool);
/* Stops the queue and frees it with its fds; NULL is a no-op. */
void vu_queue_free(struct vu_queue *q);

/* A pool (--thread-pool-size) whose threads have the buffers to serve queue requests. */
int vu_pool_new(unsigned nthreads, struct tpool **out);

/*
 * What the front-end configures, one function per vhost-user message; the caller checked the
 * message. A queue is served while it has a kick fd (or was told to poll), is enabled and has
 * a size: each function takes the queue from its worker for the change when the worker could
 * see it, and hands it back when it can be served. Those returning int return 0 or the
 * negative errno of a queue that could not be handed back (logged).
 */
int vu_queue_set_size(struct vu_queue *q, unsigned num);
/* SET_VRING_ADDR: the rings' front-end addresses, and where used-ring writes are logged. */
struct vu_ring_addr {
    uint64_t desc_uva, avail_uva, used_uva;
    bool log_used;         /* VHOST_VRING_F_LOG */
    uint64_t log_used_gpa; /* log_guest_addr: the used ring's first byte, for the log */
};
int vu_queue_set_addr(struct vu_queue *q, const struct vu_ring_addr *a);
/* The next avail entry to read and used entry to fill. */
int vu_queue_set_base(struct vu_queue *q, uint16_t idx);
/* Stops the queue and returns the next avail entry it would have read; requests of it still
 * waiting (SETLKW) are answered EINTR first, their replies in the used ring; its fds and base
 * are dropped, its size, addresses and EVENT_IDX stay for a restart. */
uint16_t vu_queue_get_base(struct vu_queue *q);
/* Takes ownership of fd (-1: the front-end asked for polling); enable: the queue is enabled
 * by its kick as well, as without VHOST_USER_F_PROTOCOL_FEATURES. */
int vu_queue_set_kick(struct vu_queue *q, int fd, bool enable);
/* Replaces the call fd (takes ownership of fd; -1 for none). The worker keeps running: QEMU
 * replaces it while the guest masks the vector. */
void vu_queue_set_call(struct vu_queue *q, int fd);
/* Replaces the error fd (takes ownership of fd; -1 for none). */
void vu_queue_set_err(struct vu_queue *q, int fd);
int vu_queue_enable(struct vu_queue *q, bool enable);
/* VIRTIO_RING_F_EVENT_IDX agreed or not. A queue that cannot be handed back is logged only:
 * the features apply to every queue. */
void vu_queue_set_event_idx(struct vu_queue *q, bool on);

/* True while a worker serves the queue. */
bool vu_queue_running(const struct vu_queue *q);
/* True when the queue has what it needs to be served (a kick, enabled, a size). */
bool vu_queue_ready(const struct vu_queue *q);

/*
 * In-flight tracking (inflight.h). set_inflight: the queue's part of the front-end's region
 * (NULL: none), recovered at the queue's next start, or earlier by vu_queue_recover; with
 * hold, the queue does not start until vu_queue_hold(q, false), so that a device can recover
 * every queue (and restore the session from what they had in flight) before any runs.
 * vu_queue_recover: recovers now if the ring can be read (else at its start); 0, 1 when the
 * region was unusable (what was in flight is unknown), or -ENOMEM.
 * vu_queue_hold(false) starts the queue if it is ready (0, or the error of vu_queue_start).
 */
struct inflight_queue;
void vu_queue_set_inflight(struct vu_queue *q, const struct inflight_queue *iq, bool hold);
int vu_queue_recover(struct vu_queue *q);
int vu_queue_hold(struct vu_queue *q, bool hold);
/*
 * A planned upgrade (handover.h): a stopped queue's whole configuration and position, for a
 * new process to go on with the same ring. The fds are the queue's own (borrowed: export
 * hands them out without giving them up; import duplicates what it keeps). out lists the
 * heads the old process popped and has not answered (requests waiting for a lock): the new
 * process serves them again before anything new, unless the queue's in-flight region lists
 * them (with their counters) already.
 */
struct vu_queue_image {
    uint32_t num;
    uint64_t desc_uva, avail_uva, used_uva;
    bool log_used;
    uint64_t log_used_gpa;
    uint16_t last_avail_idx; /* what GET_VRING_BASE would return */
    uint16_t used_idx;
    bool started, enabled, event_idx;
    int kick_fd, call_fd, err_fd; /* -1: none */
    uint16_t *out;                /* n_out heads; export allocates, the image's owner frees */
    unsigned n_out;
};
/* The queue must be stopped (vu_queue_quiesce); its configuration stays as it is. 0, or
 * -ENOMEM (img->out is then NULL). */
int vu_queue_export(const struct vu_queue *q, struct vu_queue_image *img);
/*
 * Stops the queue for a handover: as vu_queue_stop, and the replies of waits that ended
 * already go into the used ring. Requests still waiting (SETLKW) are not answered: their
 * heads stay out, listed by vu_queue_export. Should the handover fail, the queue restarts
 * and answers them when their waits end; once it succeeded, vu_queue_let_go makes sure it
 * never does.
 */
void vu_queue_quiesce(struct vu_queue *q);
/* The handover succeeded: the ring is the new process's. Late replies (a wait ending now)
 * are dropped from here on, as after a reset, without touching the ring. */
void vu_queue_let_go(struct vu_queue *q);
/* Configures a queue of a fresh device from img, held (vu_queue_hold) until the device lets
 * it go: 0, or a negative errno (-EINVAL for a size the ring cannot have or heads out that it
 * cannot have out: one past the size, one twice, more than the size; -errno of a dup). */
int vu_queue_import(struct vu_queue *q, const struct vu_queue_image *img);

/* Takes the queue from its worker, letting the request in progress finish; no-op when not
 * running. The worker's other queues pause only for that moment. */
void vu_queue_stop(struct vu_queue *q);
/* Closes the queue's fds and forgets its ring, configuration included, and its pending late
 * replies; the queue must be stopped. */
void vu_queue_reset(struct vu_queue *q);

#endif
