/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session journal: the FUSE session kept in shared memory that the VMM holds for us (the
 * in-flight memfd of VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, beyond its in-flight area), so that
 * a daemon restarted after a crash, a kill or an upgrade finds every nodeid, lookup count,
 * open handle, lock and the INIT results again, and the guest never notices.
 *
 * What a request changes is appended as a record tagged with the request's in-flight counter
 * (fuse_req_ctx.tag: queue, head, counter) before its reply is published. A restarted daemon
 * replays the records, leaving out those of requests still in flight (the guest never saw their
 * replies: they run again, resubmitted), and installs the result through the same model as a
 * migration LOAD (pt_state.h). The area is the VMM's memory as well as ours: on attach everything
 * in it is hostile input, bounded and checked, and anything unusable means a fresh session (one log
 * line).
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
    /* Not NULL: what is in flight cannot be known (an in-flight region was unusable), so the
     * journal is not replayed: a fresh session, logged with this reason. */
    const char *refuse;
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

/*
 * What fuse_server.c records, through the journal its session holds (fuse_session_journal;
 * NULL: none, and nothing is recorded). Each call appends one record (BATCH_FORGET and
 * READDIRPLUS a few) under the journal's mutex, tagged with the request's tag; each is made
 * after the op succeeded and before fuse_session_process returns, so before the used entry
 * that lets the guest see the reply. Names are the request's, checked by the op already.
 * Inside rcu_read_lock (sj_entry looks the inode up).
 */
struct sj;
struct pt_fs;
struct fuse_session_init;
struct fuse_entry_out;

/* An entry handed to the guest: +1 lookup of e->nodeid, found as name in parent (name NULL
 * or "."/"..": no name, the count only). */
void sj_entry(struct sj *j, const struct fuse_req_tag *tag, struct pt_fs *fs, uint64_t parent,
              const char *name, uint64_t nodeid);
/* READDIRPLUS: every entry of a reply of len bytes of fuse_direntplus records. */
void sj_direntplus(struct sj *j, const struct fuse_req_tag *tag, struct pt_fs *fs, uint64_t parent,
                   const void *buf, size_t len);
void sj_forget(struct sj *j, const struct fuse_req_tag *tag, uint64_t nodeid, uint64_t nlookup);
/* BATCH_FORGET: count fuse_forget_one records at p (unaligned). */
void sj_forget_batch(struct sj *j, const struct fuse_req_tag *tag, const void *p, uint32_t count);
void sj_open(struct sj *j, const struct fuse_req_tag *tag, struct pt_fs *fs, uint64_t nodeid,
             uint64_t fh, bool dir);
void sj_release(struct sj *j, const struct fuse_req_tag *tag, uint64_t fh);
void sj_unlink(struct sj *j, const struct fuse_req_tag *tag, uint64_t parent, const char *name);
void sj_rename(struct sj *j, const struct fuse_req_tag *tag, uint64_t olddir, const char *oldname,
               uint64_t newdir, const char *newname, uint32_t flags);
/*
 * A request that must not run twice (CREATE, MKDIR, MKNOD, SYMLINK, LINK, UNLINK, RMDIR,
 * RENAME, RENAME2, an appending WRITE) is about to run: recorded before it does, so that
 * after a restart its resubmission (same tag) can tell whether its effect is already there.
 */
struct sj_intent {
    uint32_t opcode;
    uint32_t flags;    /* RENAME2: its flags */
    uint64_t nodeid;   /* the request's nodeid: the parent, the old directory, the file written */
    uint64_t nodeid2;  /* RENAME: the new directory; LINK: the inode linked */
    uint64_t unique;   /* the request's (a resubmission is the same request) */
    uint64_t size;     /* WRITE: the file's size before it */
    uint64_t dev, ino; /* RENAME, LINK: the source's identity (0: unknown) */
    const char *name;  /* the entry's name (RENAME: the old one); NULL: none */
    const char *name2; /* RENAME: the new name */
};
void sj_intent(struct sj *j, const struct fuse_req_tag *tag, const struct sj_intent *in);
/* The intent the first run of a resubmitted request recorded (names NULL), if it got that
 * far before the restart: true once per restart and tag. */
bool sj_intent_take(struct sj *j, const struct fuse_req_tag *tag, struct sj_intent *out);
/* A SETLK/SETLKW that succeeded (POSIX, or flock with FUSE_LK_FLOCK): before its reply. */
struct fuse_lk_in;
void sj_lock(struct sj *j, const struct fuse_req_tag *tag, uint64_t nodeid,
             const struct fuse_lk_in *in);
/* A FLUSH of lock owner owner on nodeid: the lock layer dropped the owner's locks there. */
void sj_unlock_owner(struct sj *j, const struct fuse_req_tag *tag, uint64_t nodeid, uint64_t fh,
                     uint64_t owner);
/* A new mount (INIT agreed init) or none (DESTROY, a failed INIT: init NULL): the journal
 * starts anew with it. */
void sj_new_mount(struct sj *j, const struct fuse_req_tag *tag,
                  const struct fuse_session_init *init);

#endif
