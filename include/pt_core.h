/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough core: what every operation uses (src/pt_core.c), and the filesystem's state.
 *
 * Layers, calls going one way only:
 *   op files (pt_attr.c, pt_entry.c, pt_file.c, pt_dir.c, pt_xattr.c, pt_lock.c)
 *     -> core (pt_core.c, fh_policy.c, creds.c)
 *       -> tables and mechanisms (inode_table.c, handle_table.c, file_handle.c, idmap.c,
 *          xattrmap.c)
 * pt_lifetime.c sits beside the op files: the only place that creates the tables and the lock
 * state, and that wires the lock layer's hooks into the core (struct pt_close_hooks). No op
 * file calls another op file, and the core calls none: it builds as its own static library,
 * which test_pt_core links alone.
 */
#ifndef VFS_PT_CORE_H
#define VFS_PT_CORE_H

#include "fh_policy.h"
#include "file_handle.h"
#include "handle_table.h"
#include "inode_table.h"
#include "passthrough.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* What FUSE INIT agreed (pt_init); read by concurrent ops, written only while none is in
 * flight. The options asked for stay in pt_fs.cfg: these are what the guest accepted. */
struct pt_agreed {
    bool writeback;
    bool submounts;
    bool dont_mask;
    bool posix_acl; /* FUSE_POSIX_ACL: ACL xattrs served, the host applies umask or default ACL */
};

/*
 * What the lock layer must hear of (pt_lock.c provides it, pt_lifetime.c installs it): the
 * core forwards these events through it, so that neither the core nor an op file calls the
 * lock file. NULL (in a core-only build): nothing listens.
 */
struct pt_close_hooks {
    /* FLUSH by owner: its POSIX locks on the inode go, and its waits there end. */
    void (*flushed)(struct pt_fs *fs, uint64_t nodeid, uint64_t owner);
    /* RELEASE of fh: flock waits on it end, and the POSIX lock owners that last locked
     * through it (their FLUSH did not come) go. */
    void (*released)(struct pt_fs *fs, uint64_t fh);
    /* After a FORGET of nodeid: if that removed the inode, every lock owner on it goes. */
    void (*forgotten)(struct pt_fs *fs, uint64_t nodeid);
};

struct pt_locks;

struct pt_fs {
    struct pt_config cfg; /* as asked for; shared_dir points at our own copy */
    struct pt_agreed agreed;
    struct itab *inodes;
    struct htab *handles;
    struct pt_inode *root;
    int proc_self_fd;       /* /proc/self/fd, to reopen O_PATH fds with real access modes */
    struct pt_locks *locks; /* lock owners and waiting lock requests (pt_lock.c) */
    const struct pt_close_hooks *hooks;
    bool switch_creds;   /* running as root: act with each caller's fsuid/fsgid */
    bool group_retry;    /* pt_retry_groups may add groups (pt_group_retry_sound) */
    uint64_t timeout;    /* entry and attribute timeout, seconds */
    struct fh_policy fh; /* --inode-file-handles (fh_policy.h) */
    /* The fds the guest's inodes and open handles may hold together (pt_lifetime.c's
     * fd_budget); the rest of RLIMIT_NOFILE is the daemon's reserve. 0: no bound. */
    unsigned long guest_fds;
    unsigned long peak_inodes; /* the most live inodes since the heap was last trimmed */
    bool trim_queued;          /* a trim waits on the call_rcu thread (pt_core.c); atomic */
    struct rcu_head trim_rcu;
};

/* The name "N" of fd N in /proc/self/fd, for *at calls on fs->proc_self_fd. */
struct fd_path {
    char s[32];
};

/*
 * The working directory is also /proc/self/fd for the daemon's life (pt_process_setup sets
 * it), so the same relative name serves path-only calls (the xattr ones) too, even after the
 * sandbox has pivoted the root into the share, where no /proc path exists.
 */
static inline const char *fd_name(int fd, struct fd_path *p)
{
    snprintf(p->s, sizeof(p->s), "%d", fd);
    return p->s;
}

/* ---- the per-request entry -------------------------------------------------------------- */

/*
 * Whether an op may change the share, declared at its entry (pt_begin, pt_begin_dir,
 * pt_begin_handle): --readonly is applied there and nowhere else. The check is the entry's
 * last step, once the caller and the inode (or handle) were found.
 */
enum pt_intent {
    PT_READS,
    PT_MODIFIES,
    /* ACCESS with W_OK: a write is refused on a read-only share, except on a symlink (whose
     * permission bits mean nothing). */
    PT_MODIFIES_UNLESS_SYMLINK,
};

/*
 * Switches to the caller's credentials (a no-op unless running as root), translated to host
 * ids by --translate-uid/gid; ctx NULL: the daemon's own (root). -EPERM if a forbid-guest rule
 * covers the caller's uid or gid: such a caller has no host identity to act with.
 */
int pt_enter(struct pt_fs *fs, const struct pt_ctx *ctx);

/* pt_enter, then the live inode nodeid names (-EBADF if none), then the --readonly rule
 * (-EROFS). */
int pt_begin(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, enum pt_intent intent,
             struct pt_inode **inode);
/* pt_begin for a directory that names are resolved in (-ENOTDIR otherwise). */
int pt_begin_dir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, enum pt_intent intent,
                 struct pt_inode **dir);
/* pt_enter, then the open handle fh of nodeid, a directory's if dir (-EBADF if none or of the
 * other kind), then the --readonly rule. */
int pt_begin_handle(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t fh,
                    bool dir, enum pt_intent intent, struct pt_handle **h);

/* The live inode nodeid names, or NULL. */
struct pt_inode *pt_inode_get(struct pt_fs *fs, uint64_t nodeid);

/* ---- inode fds ---------------------------------------------------------------------------- */

/*
 * An O_PATH fd of an inode for the op in progress (pt_inode_fd): the inode's own (owned false,
 * no syscall), or one opened from its file handle for this op (owned true, closed by put).
 */
struct pt_fdref {
    int fd;
    bool owned;
};

int pt_inode_fd_open(struct pt_fs *fs, const struct pt_inode *inode, struct pt_fdref *ref);

/*
 * The one way ops reach an inode's O_PATH fd: the fd the inode keeps; for a handle-only inode
 * one opened by handle (-ESTALE once the file is gone on the host); for one whose fd the fd
 * cache closed (inode_table.h), the fd opened again where the inode was last seen (-ESTALE if
 * that name leads elsewhere now); -EIO for an inode a migration lost, which has neither.
 * Returns the fd or -errno; every success is paired with pt_inode_fd_put. Valid until then
 * (and at most until the op's rcu_read_unlock).
 */
static inline int pt_inode_fd(struct pt_fs *fs, const struct pt_inode *inode, struct pt_fdref *ref)
{
    /* The fd and the clock's used bit are the cache's, not the inode's identity: an op holding
     * a const inode still marks it used and may have its fd opened again. */
    int fd = itab_inode_fd((struct pt_inode *)inode);

    ref->fd = fd;
    ref->owned = false;
    if (__builtin_expect(fd >= 0, 1))
        return fd;
    return pt_inode_fd_open(fs, inode, ref);
}

static inline void pt_inode_fd_put(struct pt_fdref *ref)
{
    if (ref->owned)
        close(ref->fd);
    ref->owned = false;
    ref->fd = -1;
}

/* Declares a pt_fdref that is put automatically when it goes out of scope. */
#define PT_FDREF(name) struct pt_fdref name __attribute__((cleanup(pt_inode_fd_put))) = {-1, false}

/*
 * Reopens an fd (typically an inode's O_PATH fd) through /proc/self/fd with real access flags
 * (O_CLOEXEC and O_NOCTTY added). Following that magic link lands on the inode itself, never
 * on a symlink's target: a symlink yields -ELOOP. Returns the new fd or -errno. Callers open
 * only regular files and directories (checking the type first) or ask for O_PATH (which opens
 * nothing): opening a device node reaches the host device, opening a FIFO may block.
 */
int pt_reopen(struct pt_fs *fs, int path_fd, int flags);

/*
 * Room for one more open handle (OPEN, CREATE, OPENDIR) within fs->guest_fds: inodes' cached
 * fds are closed to make it; -EMFILE once the guest's open handles fill all but an eighth of
 * the budget (the guest's open() fails with "Too many open files", and nothing else does).
 */
int pt_handle_room(struct pt_fs *fs);

/* ---- names -------------------------------------------------------------------------------- */

/* What a name from the guest is for: the one table of errors (pt_check_name). */
enum pt_name_use {
    PT_NAME_LOOKUP, /* resolved: "." and ".." allowed (".." of the root is the root) */
    PT_NAME_NEW,    /* created, renamed to or linked: "." and ".." are EINVAL */
    PT_NAME_REMOVE, /* removed or renamed from: "." and ".." are EINVAL */
    PT_NAME_CREATE, /* CREATE (an open): "." and ".." are EISDIR, as open(2) answers */
};

/*
 * 0 if name is a single path component usable for use; otherwise (the errno table):
 *   NULL, empty, or containing '/'    -EINVAL
 *   longer than NAME_MAX              -ENAMETOOLONG
 *   "." or ".."                       0 (LOOKUP), -EINVAL (NEW, REMOVE), -EISDIR (CREATE)
 * No operation that creates, removes or renames can thus act on the share's parent.
 *
 * pt_check_name_in adds the row that depends on the directory, once it is known:
 *   a hidden name (PT_HIDDEN_PREFIX...) in the share's root
 *                                     -ENOENT (LOOKUP, REMOVE: it does not exist for the
 *                                     guest), -EPERM (NEW, CREATE: the name is the daemon's)
 * READDIR leaves such names out (pt_name_hidden_in).
 */
int pt_check_name(const char *name, enum pt_name_use use);

/* 0 if path is "" or plain names (as pt_check_name allows for LOOKUP, dots excluded) joined by
 * single '/'; -EINVAL or -ENAMETOOLONG otherwise. */
int pt_check_path(const char *path);

/*
 * An O_PATH fd of what path (checked by pt_check_path) names beneath the directory dir_fd
 * (-1: the share's root), resolved one name at a time without following any symlink. -errno
 * if a component is missing or is not a directory (a symlink included).
 */
int pt_open_beneath(struct pt_fs *fs, int dir_fd, const char *path);
int pt_check_name_in(const struct pt_fs *fs, const struct pt_inode *dir, const char *name,
                     enum pt_name_use use);

/* ---- deferred removal: files the guest unlinked while it still uses them -------------------- */

/*
 * While the session is journaled (session_journal.h), a regular file the guest unlinks (or
 * renames another file over) while it still holds a lookup of it is not removed: the daemon
 * first links it into the share's root as PT_HIDDEN_PREFIX followed by its inode number in
 * 16 hex digits, then the guest's own unlink (or rename) runs with the guest's credentials.
 * The file thus outlives a crash of the daemon (its only other references were the daemon's
 * fds), and a restarted daemon finds it again at its hidden name. The guest sees an unlink:
 * the name is gone, GETATTR says st_nlink 0 (pt_attr_out), LINK of it fails with ENOENT, the
 * hidden name can be neither seen nor touched (pt_check_name_in). The hidden name goes when
 * the guest forgets the inode (pt_inode_forget), and a new or restored session removes those
 * it does not need (pt_state_sweep_hidden).
 *
 * Why the daemon's credentials are safe here: the link adds a name only for the inode the
 * guest's request named for removal (a regular file it holds a nodeid of), only in the share's
 * root, only under a name reserved for the daemon (the guest cannot create, look up, read,
 * rename or remove it); if the guest's own unlink then fails, the link is undone. Nothing is
 * opened for I/O, and the guest reaches the file only through the nodeid it already had. The
 * removals as the daemon act only on such reserved names, and only when the name still leads
 * to the very inode (st_dev, st_ino) the daemon hid.
 */
/* PT_HIDDEN_PREFIX and PT_HIDDEN_NAME_MAX: passthrough.h. */

/* The hidden name of the file with inode number ino (into buf, PT_HIDDEN_NAME_MAX bytes). */
void pt_hidden_name(uint64_t ino, char *buf);
/* True if name (len bytes) is a hidden name exactly as pt_hidden_name makes them. */
bool pt_is_hidden_name(const char *name, size_t len);
/* True if name (len bytes) in dir is one the guest must not see (pt_check_name_in's row). */
bool pt_name_hidden_in(const struct pt_fs *fs, const struct pt_inode *dir, const char *name,
                       size_t len);
/*
 * Links the regular file fd (an O_PATH fd) into the share's root under its hidden name (into
 * name), as the daemon. 0 or -errno (EXDEV: another file system or mount; EEXIST: the name
 * is taken).
 */
int pt_hide(struct pt_fs *fs, int fd, const struct statx *stx, char *name);
/* Removes the hidden name of (dev, ino) if it still names that file, as the daemon. */
void pt_unhide(struct pt_fs *fs, uint64_t dev, uint64_t ino);

/* 1 for ".", 2 for "..", 0 for any other name of len bytes. */
int pt_dots(const char *name, size_t len);

/* ---- attributes and entries ----------------------------------------------------------------- */

/* statx of an O_PATH fd, without following symlinks. Returns 0 or -errno. */
int pt_statx(int fd, struct statx *stx);

/* The inode table's key of what statx describes. */
void pt_key_from_statx(const struct statx *stx, struct itab_key *key);

/*
 * fuse_attr from statx, owner and group translated to the guest's ids (--translate-uid/gid);
 * flags gets FUSE_ATTR_SUBMOUNT etc. from the caller.
 */
void pt_fill_attr(const struct pt_fs *fs, const struct statx *stx, struct fuse_attr *attr);

/* The attribute reply from pfd, inode's O_PATH fd (a hidden inode's st_nlink without its
 * hidden name: 0, as the guest unlinked it). */
int pt_attr_out(struct pt_fs *fs, const struct pt_inode *inode, int pfd, struct fuse_attr_out *out);

/*
 * Builds the entry for an O_PATH fd (consumed) in parent: takes a lookup reference on the
 * (possibly new) inode, which keeps an fd or a file handle as fh_policy decides. Returns 0 or
 * -errno.
 */
int pt_entry_from_fd(struct pt_fs *fs, const struct pt_inode *parent, int fd, const char *name,
                     struct fuse_entry_out *out);

/*
 * Before the guest's call removes name in directory fd d (UNLINK, RMDIR, RENAME over it): if
 * the guest holds that inode and the fd cache could close its fd, it keeps its fd from now on
 * (no name will lead to it). After a RENAME: pt_inode_moved gives the moved inode its new
 * place. Both are best effort: an inode whose place is wrong answers ESTALE until the guest's
 * next LOOKUP of it.
 */
void pt_inode_keep_fd(struct pt_fs *fs, int d, const char *name);
void pt_inode_moved(struct pt_fs *fs, int d, uint64_t newparent, const char *newname);

/* Looks name up in parent and builds the entry. Returns 0 or -errno. */
int pt_do_lookup(struct pt_fs *fs, struct pt_inode *parent, const char *name,
                 struct fuse_entry_out *out);
/* The same with an fd of parent already at hand (pt_inode_fd's, or an open directory's). */
int pt_do_lookup_at(struct pt_fs *fs, struct pt_inode *parent, int parent_fd, const char *name,
                    struct fuse_entry_out *out);

/* Drops nlookup references of nodeid (FORGET, or an entry the guest never saw), telling the
 * lock layer when that removed the inode. */
void pt_inode_forget(struct pt_fs *fs, uint64_t nodeid, uint64_t nlookup);

/* ---- creating inodes ---------------------------------------------------------------------- */

/*
 * The mode to create an inode with, from the guest's mode and umask; pt_umask_end() after the
 * creating call. Without FUSE_DONT_MASK the guest kernel applied its umask already. With
 * FUSE_POSIX_ACL (which brings FUSE_DONT_MASK) it applied neither the umask nor the parent's
 * default ACL: the host kernel applies whichever holds, as for a local caller, with the umask
 * set as this thread's own until pt_umask_end (as the Rust virtiofsd does).
 */
mode_t pt_umask_begin(struct pt_fs *fs, uint32_t mode, uint32_t umask_bits);
void pt_umask_end(struct pt_fs *fs);

/*
 * --security-label: sets ctx->secctx (if any) on the inode just created, path_fd its O_PATH
 * fd, with the daemon's own credentials, the name translated by --xattrmap (as the Rust
 * virtiofsd does, after creating the inode). 0 or -errno: the caller then removes the inode.
 */
int pt_apply_secctx(struct pt_fs *fs, const struct pt_ctx *ctx, int path_fd);

/* ---- xattr names (the ACL rule and --xattrmap, for pt_xattr.c and pt_apply_secctx) --------- */

#define PT_ACL_ACCESS  "system.posix_acl_access"
#define PT_ACL_DEFAULT "system.posix_acl_default"

/* True if the xattr name of len bytes (a trailing NUL not counted) is hidden: an ACL name
 * while FUSE_POSIX_ACL is not agreed. */
bool pt_xattr_hidden(const struct pt_fs *fs, const char *name, size_t len);

/*
 * The host name of the guest's xattr *name (replaced by buf when the map translates it). A
 * hidden ACL name is -ENOTSUP; a name the map refuses is -EPERM, or -ENODATA for a get (reads
 * as absent, as the Rust and QEMU daemons answer).
 */
int pt_xattr_name_to_host(const struct pt_fs *fs, const char **name, bool get, char *buf,
                          size_t size);

/* ---- changing modes ------------------------------------------------------------------------ */

/* chmod of an inode: pfd its O_PATH fd, fd an open fd of it or -1. Returns 0 or -errno. */
int pt_set_mode(struct pt_fs *fs, int pfd, int fd, mode_t mode);

/* Drops S_ISUID (and S_ISGID if group-executable) of a regular file, like the kernel does on
 * writes by an unprivileged caller. fd: an open fd of inode, or -1. Best effort. */
void pt_kill_suidgid(struct pt_fs *fs, const struct pt_inode *inode, int fd);
/* The same with the inode's O_PATH fd (pfd) at hand; statx on fd when open. */
void pt_kill_suidgid_at(struct pt_fs *fs, const struct pt_inode *inode, int pfd, int fd);

/* ---- handles -------------------------------------------------------------------------------- */

/* FOPEN_* flags for a new handle under the cache mode. */
uint32_t pt_fopen_flags(const struct pt_fs *fs, bool dir, uint32_t guest_flags);

/* FSYNC and FSYNCDIR on the handle in->fh. */
int pt_fsync_handle(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                    const struct fuse_fsync_in *in);

/* FLUSH by owner and RELEASE of fh, told to the lock layer (struct pt_close_hooks). */
void pt_note_flush(struct pt_fs *fs, uint64_t nodeid, uint64_t owner);
void pt_note_release(struct pt_fs *fs, uint64_t fh);

/* ---- credentials ---------------------------------------------------------------------------- */

/*
 * THE rule for the supplementary-group retry (pt_retry_groups), decided once at construction;
 * see pt_core.c.
 */
bool pt_group_retry_sound(struct pt_fs *fs);

#endif
