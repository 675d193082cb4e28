/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FUSE over virtio: decodes one request from a descriptor chain, dispatches it through the
 * opcode table to the passthrough filesystem, and writes the reply into the chain's
 * device-writable buffers.
 */
#ifndef VFS_FUSE_SERVER_H
#define VFS_FUSE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "passthrough.h"
#include "virtqueue.h"

#define FUSE_MAX_WRITE (1u << 20) /* max_write and max_read offered at INIT */

struct fuse_session;
/* Per-thread scratch buffers; one per worker so requests never share memory. */
struct fuse_scratch;

struct fuse_session *fuse_session_new(struct pt_fs *fs);
void fuse_session_free(struct fuse_session *se);
/* Forgets the negotiated state and every inode and handle: the next request must be INIT.
 * Called with no request in flight (e.g. after a disconnect). */
void fuse_session_reset(struct fuse_session *se);
/*
 * The device was reset (vhost-user RESET_DEVICE) and its driver starts over: the session ends
 * as a FUSE_DESTROY ends it, and the journal attached (if any) records that, so a restart
 * restores no session. fuse_session_reset follows. With no request in flight.
 */
void fuse_session_ended(struct fuse_session *se);
bool fuse_session_initialized(const struct fuse_session *se);

/* The passthrough the session serves. */
struct pt_fs *fuse_session_fs(struct fuse_session *se);

/*
 * The session journal (session_journal.c) the session records what requests change into
 * (session_journal.h); NULL: none. Set by fuse_session_journal_attach/detach, with no request
 * in flight. fuse_server.c calls the journal's record functions (sj_*) through it: the one
 * place the FUSE layer calls its neighbour, which sits beside it as session_state.c does.
 */
struct sj;
void fuse_session_set_journal(struct fuse_session *se, struct sj *j);
struct sj *fuse_session_journal(const struct fuse_session *se);

/*
 * What FUSE INIT agreed, for a migration (session_state.c): the guest does not send INIT
 * again, so the destination's session must go on with the source's results.
 */
struct fuse_session_init {
    uint32_t major, minor; /* the protocol version agreed */
    uint64_t flags;        /* the FUSE_* flags agreed */
    uint32_t max_write;    /* as the reply told the guest */
    uint32_t max_pages;
};
/* The session's INIT results; false (and *out zeroed) before INIT. */
bool fuse_session_get_init(const struct fuse_session *se, struct fuse_session_init *out);
/*
 * 0 if this daemon can go on with what an INIT on another one agreed: FUSE 7.x no older than
 * it accepts and no newer than it speaks, only flags it would offer itself with its options
 * (a guest told of a feature this daemon does not serve would misbehave), limits no larger
 * than its own; else -EPROTO (logged at debug level only: the caller names the reason).
 */
int fuse_session_check_init(const struct fuse_session *se, const struct fuse_session_init *init);
/* The FUSE_* flags this daemon offers at INIT with its options (what a saved INIT may hold). */
uint64_t fuse_session_offer(const struct fuse_session *se);
/* Installs checked INIT results: the session is initialized as if that INIT had come here.
 * With no request in flight. */
void fuse_session_install_init(struct fuse_session *se, const struct fuse_session_init *init);

struct fuse_scratch *fuse_scratch_new(void);
void fuse_scratch_free(struct fuse_scratch *s);

/*
 * Requests that finish later (a SETLKW that has to wait) are answered through a sink the
 * transport owns. With each request the transport may give a route: its sink, and a cookie
 * of its choosing that names the request in the transport's terms (where its reply goes).
 * The FUSE layer never interprets the cookie; when such a request finishes, on another
 * thread, it calls sink->done once with the cookie, the request's unique id and its result
 * (0 or -errno), and the transport writes the reply with fuse_reply_late().
 */
struct fuse_late_sink {
    void (*done)(struct fuse_late_sink *sink, uint64_t cookie, uint64_t unique, int error);
};
struct fuse_late_route {
    struct fuse_late_sink *sink; /* must outlive every request it is given with */
    uint64_t cookie;
};
#define FUSE_REPLY_LATER UINT32_MAX

/*
 * A request's identity in the in-flight region (include/inflight.h): the queue and descriptor
 * head it was popped as, and the queue's counter at the pop, which never repeats for the life
 * of the region (across restarts of the daemon). counter 0: in-flight tracking is off.
 */
struct fuse_req_tag {
    uint64_t counter;
    uint16_t queue, head;
};

/*
 * What the transport tells the FUSE layer about one request besides its chain.
 *  - late: where a reply that has to wait goes (late.sink NULL: nothing may wait).
 *  - tag: the session journal (include/session_journal.h) tags what the request changes with
 *    it, so that a restarted daemon can tell what a request the guest never saw answered did.
 *  - resubmitted: the request was popped before the daemon (or its connection) restarted and
 *    is served again, with its tag of then: it may have run already, wholly or in part.
 */
struct fuse_req_ctx {
    struct fuse_late_route late;
    struct fuse_req_tag tag;
    bool resubmitted;
};

/*
 * Every request still waiting to be answered through sink (a SETLKW) ends now with EINTR:
 * sink->done has been called for each when this returns. For a transport that stops the
 * queue behind sink and must not leave a request unanswered across the stop.
 */
void fuse_session_end_waits(struct fuse_session *se, struct fuse_late_sink *sink);

/* After a request, outside its RCU read-side section: the filesystem's between-requests
 * work (pt_quiescent). */
void fuse_session_quiescent(struct fuse_session *se);
/* The same when the worker has a moment: after it signalled a batch of replies, and before
 * it waits for work (pt_idle). */
void fuse_session_idle(struct fuse_session *se);

/*
 * Serves the request in elem (a chain popped from a virtqueue) and returns the number of
 * bytes written to its device-writable part: the length to put in the used ring. A request
 * that cannot be answered at all (no room for a reply header) returns 0, logged.
 * FUSE_REPLY_LATER: the request will be answered through ctx->late's sink, and the chain must not
 * be returned yet. ctx NULL (or no sink): nothing may wait; a SETLKW is then tried once, as a
 * SETLK.
 */
uint32_t fuse_session_process(struct fuse_session *se, struct fuse_scratch *s,
                              const struct vq_elem *elem, const struct fuse_req_ctx *ctx);

/* Writes the reply (header only, error 0 or -errno) of a request answered late into elem,
 * the chain walked again; returns the used length as fuse_session_process does. */
uint32_t fuse_reply_late(const struct vq_elem *elem, uint64_t unique, int error);

#endif
