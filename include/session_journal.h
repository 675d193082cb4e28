/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session journal: the FUSE session kept in shared memory that the VMM holds for us (the
 * in-flight memfd of VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, beyond its in-flight area), so that
 * a daemon restarted after a crash, a kill or an upgrade finds every nodeid, lookup count,
 * open handle, lock and the INIT results again, and the guest never notices.
 *
 * What a request changes is appended as a record tagged with the request's in-flight counter
 * (fuse_req_ctx.tag: queue, head, counter) before its reply is published. A restarted daemon replays the records,
 * leaving out those of requests still in flight (the guest never saw their replies: they run
 * again, resubmitted), and installs the result through the same model as a migration LOAD
 * (pt_state.h). The area is the VMM's memory as well as ours: on attach everything in it is
 * hostile input, bounded and checked, and anything unusable means a fresh session (one log line).
 */
#ifndef VFS_SESSION_JOURNAL_H
#define VFS_SESSION_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fuse_session;
struct fuse_req_tag;

/* Bytes of the memfd the journal takes after the in-flight area: reserved, not used until
 * written (a memfd's pages are allocated when first touched). */
#define SJ_AREA_SIZE ((size_t)128 << 20)

/*
 * Whether the request a tag names is still in flight: at attach, after a restart (the guest
 * has not seen its reply), and while serving (for compaction: a record of a request not yet
 * answered must stay a record of its own). Valid from attach to detach.
 */
struct sj_inflight {
    bool (*in_flight)(void *opaque, const struct fuse_req_tag *tag);
    void *opaque;
};

/*
 * Attaches the area (len bytes, mapped shared and writable; it stays mapped until
 * fuse_session_journal_detach). With no request in flight and the session fresh (after
 * fuse_session_reset). If the area holds a journal of this share, the session it records is
 * restored: 1. Otherwise (zeros: a new VM; or a journal that fails a check, of another share,
 * of a format we do not know) the area is formatted anew and the session stays fresh, waiting
 * for FUSE_INIT: 0, and a journal that was there but unusable is logged in one line with the
 * reason. A negative errno only when journaling cannot work at all (then it is off).
 */
int fuse_session_journal_attach(struct fuse_session *se, void *area, size_t len,
                                const struct sj_inflight *inflight);

/* Stops journaling; the area may be unmapped afterwards. With no request in flight. */
void fuse_session_journal_detach(struct fuse_session *se);

#endif
