/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough's part of a migration (src/pt_state.c): every inode the guest knows and
 * every open handle, collected from a pt_fs (SAVE) or installed into a fresh one (LOAD), as
 * plain structs. The byte format is session_state.c's; this module knows the file system.
 *
 * It sits beside the op files: it calls the core (pt_core.h) and the tables, and no op file
 * calls it. Both directions run with the rings stopped: no op is in flight.
 */
#ifndef VFS_PT_STATE_H
#define VFS_PT_STATE_H

#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "passthrough.h"

/* Bounds a LOAD checks before it allocates anything for a count the stream claims. */
#define PT_STATE_MAX_INODES  (1u << 24)
#define PT_STATE_MAX_HANDLES (1u << 24)
/* Largest id counter accepted: far from wrapping to 0 however long the session goes on. */
#define PT_STATE_MAX_ID (UINT64_C(1) << 62)

struct pt_state_inode {
    uint64_t nodeid;
    uint64_t nlookup; /* the guest's lookup count (FORGETs still to come) */
    uint32_t type; /* S_IFMT bits; 0: unknown (the Rust format's), the LOAD takes what it finds */
    bool lost;     /* not found: after LOAD every request on it answers EIO */
    uint64_t dev, ino;
    size_t path_off; /* in pt_state.paths: NUL-terminated, relative to the share's root,
                      * components joined by '/'; "" for the root; unused when lost */
    size_t fh;       /* 1 + its index in pt_state.fhs (pt_state_check links them); 0: none */
    size_t passed;   /* 1 + its index in pt_state.passed (pt_state_check links them); 0: none */
};

/*
 * --migration-mode=file-handles: an inode's file handle (name_to_handle_at), opened again on
 * the destination with open_by_handle_at on the share's own mount. The bytes are the kernel's
 * and the file system's: opaque here, and hostile on LOAD (the kernel validates them; LOAD
 * checks the inode they open is beneath the share).
 */
#define PT_STATE_FH_MAX 128 /* MAX_HANDLE_SZ */
struct pt_state_fh {
    uint64_t nodeid;
    int32_t type; /* the file handle's handle_type, >= 0 */
    uint32_t len; /* bytes, 1..PT_STATE_FH_MAX */
    size_t off;   /* in pt_state.fh_bytes */
};

struct pt_state_handle {
    uint64_t fh;
    uint64_t nodeid;
    uint32_t flags; /* the host open flags (O_ACCMODE, O_APPEND, O_DIRECT, ...) */
    bool dir;
};

/*
 * Locks. A POSIX lock owner (a guest process, on one inode) with the ranges it holds; each
 * range [start, end] inclusive, end PT_STATE_LOCK_EOF meaning to the end of the file (as in
 * FUSE's fuse_file_lock). An flock is held by one open handle.
 */
#define PT_STATE_LOCK_EOF   ((uint64_t)INT64_MAX)
#define PT_STATE_MAX_OWNERS 4096u      /* the lock layer's own bound on owners per session */
#define PT_STATE_MAX_RANGES (1u << 20) /* ranges of all owners together */

struct pt_state_range {
    uint64_t start, end;
    bool write; /* else a read lock */
};

struct pt_state_owner {
    uint64_t nodeid;
    uint64_t owner;  /* the guest's lock owner id */
    uint64_t fh;     /* the handle it last locked through (RELEASE of it drops the owner) */
    uint32_t pid;    /* the guest pid GETLK reports for its locks */
    size_t first, n; /* its ranges: pt_state.ranges[first .. first + n) */
};

struct pt_state_flock {
    uint64_t fh;
    uint64_t nodeid; /* its handle's inode (not in the stream: pt_state_check fills it in) */
    bool write;      /* LOCK_EX, else LOCK_SH */
};

/*
 * A planned upgrade on the same host (handover.c): an inode that has no path in the share
 * (a file the guest holds that was unlinked, or moved out of the share) travels as its own
 * O_PATH fd beside the stream, named by its index in the list of those fds. Never in a
 * migration: no fd can go to another host, and no VMM passes fds with DEVICE_STATE.
 */
#define PT_STATE_MAX_PASSED_FDS 65536u
struct pt_state_passed {
    uint64_t nodeid; /* a saved inode without a path (lost as far as paths go), not the root */
    uint32_t index;  /* in pt_state.fds */
};

struct pt_state {
    uint64_t last_nodeid, last_fh; /* the id counters: the last ids handed out */
    struct pt_state_owner *owners;
    size_t n_owners, cap_owners;
    struct pt_state_range *ranges;
    size_t n_ranges, cap_ranges;
    struct pt_state_flock *flocks;
    size_t n_flocks, cap_flocks;
    struct pt_state_inode *inodes;
    size_t n_inodes, cap_inodes;
    struct pt_state_handle *handles;
    size_t n_handles, cap_handles;
    char *paths; /* every inode's path, back to back */
    size_t paths_len, paths_cap;
    /* File handles (--migration-mode=file-handles), with the file system's id (statfs'
     * f_fsid) they belong to; has_fhs false when the stream had none. */
    bool has_fhs;
    bool fsid_unknown; /* the Rust format's handles: no fsid, no root handle to check */
    uint64_t fsid;
    struct pt_state_fh *fhs;
    size_t n_fhs, cap_fhs;
    uint8_t *fh_bytes;
    size_t fh_bytes_len, fh_bytes_cap;
    /*
     * The session journal's restores (session_journal.c) on the same host: verify_ids checks
     * every reopened inode's st_dev/st_ino against the saved ones (as
     * --migration-verify-handles does), and lose_unfound installs an inode that is not found
     * (or is another file now) as lost, and drops its handles, whatever
     * --migration-on-error says: one renamed file must not cost the whole session.
     */
    bool verify_ids, lose_unfound;
    /*
     * Inodes passed as fds (a handover's SAVE and LOAD only). SAVE with pass_fds set gives
     * each inode it finds no path for (instead of walking the share for it) a dup of its
     * O_PATH fd in fds, owned: the caller takes them (pt_state_take_fds) or pt_state_free
     * closes them. LOAD with fds_given set: fds are the fds that came beside the stream,
     * borrowed (never closed here; each inode installed from one gets a dup), and only such
     * a LOAD accepts passed inodes at all.
     */
    bool pass_fds, fds_given;
    struct pt_state_passed *passed;
    size_t n_passed, cap_passed;
    int *fds;
    size_t n_fds, cap_fds;
    /* Why the last failed call failed (for the one log line of the caller). */
    char why[256];
};

/* Open flags a saved handle may carry (anything else is refused on LOAD). O_CREAT, O_EXCL
 * and O_TRUNC are accepted and dropped: reopening must neither create nor truncate. */
#define PT_STATE_OPEN_FLAGS                                                                        \
    (O_ACCMODE | O_APPEND | O_DIRECT | O_DSYNC | O_SYNC | O_NOATIME | O_NONBLOCK | O_LARGEFILE |   \
     O_DIRECTORY)
#define PT_STATE_OPEN_DROPPED (O_CREAT | O_EXCL | O_TRUNC)

/* A file type a state may name: one of the S_IFMT kinds (0, "unknown", is the caller's). */
bool pt_state_type_valid(uint32_t type);

void pt_state_init(struct pt_state *st);
void pt_state_free(struct pt_state *st);
/* Appends an inode; path (len bytes, NULL when lost) is copied. 0 or -ENOMEM. */
int pt_state_add_inode(struct pt_state *st, const struct pt_state_inode *in, const char *path,
                       size_t len);
int pt_state_add_handle(struct pt_state *st, const struct pt_state_handle *h);
/* Appends a file handle (fh->off is set; bytes copied). 0, -EINVAL (bad type or length) or
 * -ENOMEM. */
int pt_state_add_fh(struct pt_state *st, const struct pt_state_fh *fh, const void *bytes);
/* Appends an owner with no ranges yet; pt_state_add_range appends one to the last owner. */
int pt_state_add_owner(struct pt_state *st, const struct pt_state_owner *o);
int pt_state_add_range(struct pt_state *st, const struct pt_state_range *r);
int pt_state_add_flock(struct pt_state *st, const struct pt_state_flock *f);
/* Appends a passed inode's record (LOAD's parser; SAVE adds them itself). 0 or -ENOMEM. */
int pt_state_add_passed(struct pt_state *st, const struct pt_state_passed *p);
/* SAVE with pass_fds: hands the fds over to the caller (who closes them); their count. */
size_t pt_state_take_fds(struct pt_state *st, int **fds);
static inline const char *pt_state_path(const struct pt_state *st, const struct pt_state_inode *i)
{
    return i->lost ? NULL : st->paths + i->path_off;
}

/*
 * SAVE: every inode of fs with its path (--migration-mode=find-paths: the inode's fd read back
 * through /proc/self/fd, then confirmed by resolving it again; a walk of the share for those
 * not found so), every handle with its flags, the counters. An inode found nowhere fails the
 * whole SAVE, or with --migration-on-error=guest-error is saved as lost. 0 or -errno (and
 * st->why).
 *
 * With st->pass_fds (a handover to a new process on the same host, never a migration), an
 * inode without a path (an unlinked one at once, another after the walk) gets a dup of its
 * O_PATH fd in st->fds and a record in st->passed, at most PT_STATE_MAX_PASSED_FDS of them
 * (beyond that the SAVE fails); the inode itself is saved as lost (no path). One that has no
 * fd either (a file handle that no longer opens: gone from the host) is saved lost, and
 * does not fail the SAVE: it is as dead in this process already.
 */
int pt_state_collect(struct pt_fs *fs, struct pt_state *st);
/*
 * With --migration-mode=file-handles, SAVE also adds each inode's file handle (the root's
 * too) and the file system's id; an inode /proc/self/fd gives no path for is then not
 * walked for but saved with its handle only (lost as far as paths go). A file system that
 * gives no handles fails the SAVE.
 *
 * LOAD with --migration-mode=file-handles opens each inode that has a handle by it (and the
 * others by their paths): the stream's fsid must be this share's file system's, the root's
 * handle must open the share's root, and every inode a handle opens must be beneath the
 * share (its /proc/self/fd name, resolved again beneath the root without following
 * symlinks, must lead to the very same inode; a handle can name any inode of the file
 * system). In find-paths mode the handles are ignored and the paths used.
 */

/*
 * LOAD, before anything is changed: the state is consistent (the root is nodeid 1 with the
 * empty path, no nodeid or fh twice, no nodeid 0, every handle's inode present and of the
 * handle's kind, paths made of plain names, counters not behind any id; every lock owner on a
 * saved inode through a saved handle of it, no owner twice, ranges with start <= end <=
 * PT_STATE_LOCK_EOF, a write range only where the guest has the inode open for writing and a
 * read range only where for reading, at most one flock per saved handle, the counts within
 * their bounds; each passed inode a saved one without a path, of a known type, not the root,
 * once, and only with st->fds_given, its index one of the n_fds given, each used once and
 * all of them used). 0 or -EINVAL (and st->why).
 */
int pt_state_check(struct pt_state *st);

/*
 * LOAD: installs a checked state into fs, which must be fresh (pt_reset): each inode found
 * again beneath the share under its saved path, compared by file type (and st_dev/st_ino with
 * --migration-verify-handles), inserted with its nodeid and lookup count; each handle reopened
 * and inserted with its fh; the counters set. An inode not found fails it, or is installed as
 * lost with --migration-on-error=guest-error (its handles are then dropped). 0 or -errno (and
 * st->why); on failure the caller resets fs.
 *
 * A LOAD with st->fds_given (a handover's) installs an inode saved lost and not passed as
 * lost, whatever --migration-on-error says: it was gone in the old process already.
 *
 * A passed inode is installed from a dup of its fd, which must be an O_PATH fd of the very
 * inode saved (st_dev, st_ino and type), on the share's file system (st_dev of the share's
 * root or of an inode found beneath the share): the fd came from our predecessor, which had
 * it from a LOOKUP beneath the share, so no path is resolved for it; it keeps its fd (no
 * file handle replaces it: an unlinked file lives only as long as an fd holds it).
 */
int pt_state_install(struct pt_fs *fs, struct pt_state *st);

/*
 * For the session journal, while serving (inside rcu_read_lock, on the request's thread):
 * what identifies inode nodeid on the host (st_dev, st_ino, S_IFMT bits), and the host open
 * flags of handle fh of nodeid (PT_STATE_OPEN_FLAGS bits; one fcntl). 0 or -ENOENT/-EBADF.
 */
int pt_state_inode_ids(struct pt_fs *fs, uint64_t nodeid, uint64_t *dev, uint64_t *ino,
                       uint32_t *type);
int pt_state_handle_flags(struct pt_fs *fs, uint64_t fh, uint64_t nodeid, uint32_t *flags);
/* The share root's st_dev and st_ino (which share a journal belongs to). */
void pt_state_share_id(struct pt_fs *fs, uint64_t *dev, uint64_t *ino);
/* What path (plain names joined by '/', beneath the share, no symlink followed) names now:
 * its st_dev and st_ino. 0 or -errno. For a restore deciding whether a RENAME in flight ran. */
int pt_state_path_ids(struct pt_fs *fs, const char *path, uint64_t *dev, uint64_t *ino);

/*
 * Deferred removal (pt_core.h), when a journaled session starts (fresh, or restored: after
 * pt_state_install), with no request in flight: every hidden name in the share's root that
 * an inode of fs needs (the file's only name; the guest holds a lookup of it) is kept and its
 * inode marked hidden; every other one is removed (left by a crash: the guest that unlinked
 * the file is gone, or never saw the unlink). 0 or -errno (the root unreadable; logged).
 */
int pt_state_sweep_hidden(struct pt_fs *fs);

/*
 * The locks (src/pt_lock.c implements these: it owns the lock state; session_state.c calls
 * them after pt_state_collect and pt_state_install).
 *
 * SAVE: every lock owner with the ranges it holds, read back from the kernel's own view of
 * its host file (the "lock:" lines of /proc/self/fdinfo), and every handle's flock the same
 * way; locks a LOAD is still waiting for (below) are saved as held. 0 or -errno (st->why).
 *
 * LOAD, into the fs pt_state_install filled: each owner's file reopened from its handle, each
 * range taken with F_OFD_SETLK, each flock with flock(LOCK_NB). A lock held by someone else
 * (on a shared file system: the source daemon, until its session ends) is taken by a
 * background wait instead; meanwhile the guest's own conflicting requests are refused or
 * wait, as if it held the lock. 0 or -errno (st->why): the owner bound, no memory, a lock the
 * guest cannot hold here (locks not offered, a file that does not support them).
 */
int pt_locks_collect(struct pt_fs *fs, struct pt_state *st);
int pt_locks_install(struct pt_fs *fs, struct pt_state *st);

#endif
