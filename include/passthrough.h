/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem: FUSE operations served from a directory on the host.
 *
 * Calling convention: fuse_server.c decodes and size-checks each request, NUL-terminates
 * names, and calls one pt_* function. Each returns 0 (or a byte count) on success and a
 * negative errno on failure; out-structs are filled only on success.
 *
 * Threads: op functions may run concurrently on several worker threads. Every calling
 * thread is registered with liburcu (rcu_register_thread()), and each op call is made inside
 * rcu_read_lock()/rcu_read_unlock(), which is what keeps inodes and handles found in the
 * lock-free tables alive for the duration of the op. pt_reset() and pt_free() are called
 * only when no op is in flight.
 *
 * Confinement: no op ever resolves a path outside the shared directory. Names containing
 * '/' are rejected with -EINVAL, "." and ".." are handled so that ".." of the root is the
 * root, and no symlink is ever followed on the host.
 */
#ifndef VFS_PASSTHROUGH_H
#define VFS_PASSTHROUGH_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "idmap.h"

struct xattrmap;

enum cache_mode {
    CACHE_NEVER,    /* no caching in the guest: timeouts 0, direct I/O */
    CACHE_METADATA, /* attributes and entries cached, file data not */
    CACHE_AUTO,     /* short (1 s) timeouts, page cache dropped on open when changed */
    CACHE_ALWAYS,   /* long timeouts, page cache kept across opens */
};

/*
 * --inode-file-handles: what inodes the guest holds keep open on the host. Inodes that keep
 * O_PATH fds do so within the fd budget: beyond it the fd cache closes the fds of those used
 * least lately and opens them again by name when needed (inode_table.h), so no mode runs the
 * daemon out of fds.
 */
enum inode_fh_mode {
    FH_NEVER, /* an O_PATH fd per inode (also what a zeroed pt_config means) */
    /* The default: on a share that is a whole file system as mounted, fds up to half of
     * RLIMIT_NOFILE, then handles; on a share inside a larger file system (where a handle
     * could name any file of that file system, fh_policy.h) always fds. */
    FH_AUTO,
    FH_PREFER,    /* a file handle where the file system gives one, else an fd */
    FH_MANDATORY, /* a file handle always; a lookup fails where there is none */
};

/* --migration-mode: how SAVE tells the destination where each inode is. */
enum pt_migration_mode {
    MIGRATION_FIND_PATHS,   /* a path from the share's root (the default) */
    MIGRATION_FILE_HANDLES, /* a file handle too (keeps CAP_DAC_READ_SEARCH; pt_state.h) */
};

/* --migration-on-error: what an inode or handle that cannot be saved or found again costs. */
enum pt_migration_on_error {
    MIGRATION_ERROR_ABORT,       /* the whole SAVE or LOAD fails (the default) */
    MIGRATION_ERROR_GUEST_ERROR, /* it is "lost": requests on it answer EIO */
};

/* --migration-format: the state stream a SAVE writes (a LOAD reads either, told by its header). */
enum pt_migration_format {
    MIGRATION_FORMAT_OURS, /* this daemon's own (src/session_state.c; the default) */
    MIGRATION_FORMAT_RUST, /* the Rust virtiofsd 1.13's (src/state_rust.c): no locks */
};

struct pt_config {
    const char *shared_dir;
    enum cache_mode cache;
    bool xattr;              /* serve *XATTR ops; ENOSYS otherwise */
    bool readdirplus;        /* offer READDIRPLUS */
    bool writeback;          /* offer the writeback cache */
    bool allow_direct_io;    /* honour O_DIRECT from the guest with FOPEN_DIRECT_IO */
    bool announce_submounts; /* flag mount points with FUSE_ATTR_SUBMOUNT */
    bool readonly;           /* every modification fails with EROFS */
    bool killpriv_v2;        /* offer FUSE_HANDLE_KILLPRIV_V2 */
    bool preserve_noatime;   /* keep O_NOATIME from the guest (dropped by default) */
    bool posix_locks;        /* offer FUSE_POSIX_LOCKS (host OFD locks, one fd per owner) */
    bool flock_locks;        /* offer FUSE_FLOCK_LOCKS (host flock on the open file) */
    bool posix_acl;          /* offer FUSE_POSIX_ACL (with FUSE_DONT_MASK, FUSE_SETXATTR_EXT) */
    bool security_label;     /* offer FUSE_SECURITY_CTX: label new inodes as the guest asks */
    bool allow_mmap;         /* offer FUSE_DIRECT_IO_ALLOW_MMAP (shared mmap of direct I/O) */
    bool allow_idmap;        /* offer FUSE_ALLOW_IDMAP (--allow-idmap; see fuse_server.c) */
    /* --xattrmap: xattr names translated between guest and host; NULL: passed unchanged.
     * Borrowed, not copied: it must outlive the pt_fs. */
    const struct xattrmap *xattrmap;
    /* --translate-uid / --translate-gid: caller ids guest->host, attributes host->guest.
     * Empty (all zero): ids pass unchanged. pt_new takes its own copy. */
    struct idmap uid_map;
    struct idmap gid_map;
    enum inode_fh_mode inode_file_handles;
    enum pt_migration_mode migration_mode;
    enum pt_migration_on_error migration_on_error;
    enum pt_migration_format migration_format;
    /* --migration-verify-handles: LOAD requires each inode's st_dev/st_ino to be the saved
     * ones (the same file system, e.g. a local migration), not only its file type. */
    bool migration_verify_handles;
};

/*
 * A security context the guest kernel sent with a request creating an inode (FUSE_SECURITY_CTX):
 * the xattr name (e.g. "security.selinux", NUL-terminated) and its value.
 */
struct pt_secctx {
    const char *name;
    const void *value;
    size_t size;
};

/* The caller of one request, from fuse_in_header, and the request's extensions. */
struct pt_ctx {
    uint32_t uid, gid, pid;
    /* CREATE, MKDIR, MKNOD, SYMLINK, TMPFILE: set on the new inode, which is removed again if
     * that fails (--security-label). NULL: none. */
    const struct pt_secctx *secctx;
};

struct pt_fs;

/*
 * The process-wide set-up serving needs, once at start-up before the first pt_fs (main.c calls
 * it; pt_new does it too): umask 0; as root, no supplementary groups and this thread's
 * filesystem ids root; the handler of the signal that wakes waiting lock requests; and
 * /proc/self/fd as the working directory for the process's life (see fd_name in pt_core.h).
 * proc_self_fd: an O_PATH fd of /proc/self/fd (the sandbox opens it before the root moves into
 * the share), taken over even on failure; -1 to open it here. Returns that fd, for
 * pt_new_with_proc, or -errno (logged).
 */
int pt_process_setup(int proc_self_fd);
/*
 * Opens the shared directory (nodeid FUSE_ROOT_ID) with proc_self_fd from pt_process_setup
 * (taken over even on failure). Changes nothing process-wide.
 */
int pt_new_with_proc(const struct pt_config *cfg, int proc_self_fd, struct pt_fs **out);
/* pt_process_setup(-1), then pt_new_with_proc: for tests and tools that make one pt_fs. */
int pt_new(const struct pt_config *cfg, struct pt_fs **out);
void pt_free(struct pt_fs *fs);
/*
 * Decides, with the process's final capabilities (call it after dropping them), whether
 * inodes may use file handles under cfg.inode_file_handles: a handle of the shared directory
 * must open again. If it does not (no CAP_DAC_READ_SEARCH, a file system without handles),
 * FH_AUTO quietly keeps fds, FH_PREFER keeps fds with a warning, and FH_MANDATORY fails
 * with a logged error (-errno). Until called, every inode keeps an fd.
 */
int pt_setup_file_handles(struct pt_fs *fs);
const struct pt_config *pt_get_config(const struct pt_fs *fs);

/* FUSE INIT completed with these negotiated FUSE_* flags (e.g. FUSE_WRITEBACK_CACHE). */
void pt_init(struct pt_fs *fs, uint64_t negotiated_flags);
/* Drops every inode but the root and every open handle (DESTROY, a new INIT, a disconnect). */
void pt_reset(struct pt_fs *fs);
/*
 * Between requests, outside any RCU read-side section, on a registered thread: closes the
 * inode fds the fd cache set aside to stay within the open-file budget (inode_table.h), and
 * the fds of released handles (handle_table.h). Costs a few loads when there is nothing to
 * do; else waits for a grace period.
 */
void pt_quiescent(struct pt_fs *fs);
/* The same when the worker has a moment (its replies are signalled, or it is about to wait
 * for work): released handles' fds close now, however few. */
void pt_idle(struct pt_fs *fs);

/*
 * FUSE requests carry the caller's uid and gid but not its supplementary groups, so the host
 * refuses what the caller may do only through one of them (an open of a group-readable
 * file, a create in a group-writable directory, a chown to one of its groups). The guest
 * kernel checked that already (virtiofs always mounts with default_permissions). For a
 * request the host refused, these are the host groups that may have made the difference:
 * the groups of the inodes involved (nodeid, nodeid2 when nonzero), with FUSE_POSIX_ACL also
 * the groups their access ACLs name, and the group a SETATTR (sa, or NULL) asks for; the
 * request is then tried once more with them as supplementary groups. Returns how many were
 * put in out; 0 when a retry cannot help (a caller with the daemon's own privileges, or no
 * credential switching) or would not be sound: when ids are translated (--translate-uid/gid)
 * or mapped by a user namespace, a hostile guest kernel could otherwise gain groups its mapped
 * host identity does not have (see pt_group_retry_sound in pt_core.c).
 */
#define PT_RETRY_GROUPS_MAX 16
int pt_retry_groups(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t nodeid2,
                    const struct fuse_setattr_in *sa, gid_t out[PT_RETRY_GROUPS_MAX]);

/* Entries (fuse_entry_out: nodeid, generation, timeouts, attr). */
int pt_lookup(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              struct fuse_entry_out *out);
void pt_forget(struct pt_fs *fs, uint64_t nodeid, uint64_t nlookup);
int pt_getattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_getattr_in *in, struct fuse_attr_out *out);
int pt_setattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_setattr_in *in, struct fuse_attr_out *out);
/* Returns the target length written to buf (not NUL-terminated). */
ssize_t pt_readlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, char *buf,
                    size_t size);
int pt_symlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
               const char *target, struct fuse_entry_out *out);
int pt_mknod(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
             const struct fuse_mknod_in *in, struct fuse_entry_out *out);
int pt_mkdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
             const struct fuse_mkdir_in *in, struct fuse_entry_out *out);
/* The hidden names of deferred removal (pt_core.h): the prefix, then 16 hex digits. */
#define PT_HIDDEN_PREFIX   ".virtiofsd-unlinked."
#define PT_HIDDEN_NAME_MAX (sizeof(PT_HIDDEN_PREFIX) + 16)
/*
 * hidden (PT_HIDDEN_NAME_MAX bytes, or NULL) asks for deferred removal (pt_core.h; the session
 * journal's): a regular file the guest still holds a lookup of is kept under a hidden name in
 * the share's root instead of being removed. On success hidden holds that name, or "" when the
 * file was removed (or kept a name of its own) as usual. NULL: removed as usual.
 */
int pt_unlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              char *hidden);
int pt_rmdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name);
/* flags: 0 or RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT (renameat2). hidden: as for
 * pt_unlink, for the file the rename replaces (it had newname in newdir). */
int pt_rename(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t olddir, const char *oldname,
              uint64_t newdir, const char *newname, uint32_t flags, char *hidden);
int pt_link(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t newparent,
            const char *newname, struct fuse_entry_out *out);
/*
 * What name in directory parent is now (not followed if a symlink), as the inode table keys
 * files: its st_dev and st_ino. No inode is made. 0 or -errno (-ENOENT: no such name). For
 * the session journal's intents (whether a RENAME or an UNLINK already ran).
 */
int pt_name_ids(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
                uint64_t *dev, uint64_t *ino);

/* Files. */
int pt_open(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
            const struct fuse_open_in *in, struct fuse_open_out *out);
int pt_create(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              const struct fuse_create_in *in, struct fuse_entry_out *entry,
              struct fuse_open_out *open);
/* An unnamed file in the directory parent (O_TMPFILE), opened; LINK can name it later. */
int pt_tmpfile(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
               const struct fuse_create_in *in, struct fuse_entry_out *entry,
               struct fuse_open_out *open);
/* Reads up to in->size bytes straight into iov (guest memory); returns bytes read. */
ssize_t pt_read(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                const struct fuse_read_in *in, const struct iovec *iov, int iovcnt);
/* Writes the data in iov (guest memory, in->size bytes) at in->offset; returns bytes written. */
ssize_t pt_write(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                 const struct fuse_write_in *in, const struct iovec *iov, int iovcnt);
/*
 * Whether a WRITE through handle fh appends (the host file is open with O_APPEND, so the
 * offset is ignored and running it twice writes twice): 1 with the file's size in *size, 0
 * if it does not, -errno. Two system calls; for the session journal's intents.
 */
int pt_write_appends(struct pt_fs *fs, uint64_t nodeid, uint64_t fh, uint64_t *size);
int pt_flush(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_flush_in *in);
int pt_release(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_release_in *in);
int pt_fsync(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_fsync_in *in);
int pt_fallocate(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                 const struct fuse_fallocate_in *in);
int pt_lseek(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_lseek_in *in, struct fuse_lseek_out *out);
/* nodeid is the source (fh_in/off_in); the destination is in->nodeid_out/fh_out. */
ssize_t pt_copy_file_range(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                           const struct fuse_copy_file_range_in *in);

/* Directories. */
int pt_opendir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_open_in *in, struct fuse_open_out *out);
/*
 * Fills buf (at most in->size bytes) with fuse_dirent records, or fuse_direntplus records
 * when plus (each one a lookup reference the guest will FORGET), starting at in->offset.
 * Returns the bytes filled; 0 at the end of the directory.
 */
ssize_t pt_readdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                   const struct fuse_read_in *in, bool plus, void *buf);
int pt_releasedir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                  const struct fuse_release_in *in);
int pt_fsyncdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                const struct fuse_fsync_in *in);

/* Whole filesystem and permissions. */
int pt_statfs(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
              struct fuse_statfs_out *out);
int pt_access(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
              const struct fuse_access_in *in);
int pt_syncfs(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid);

/*
 * Locks: POSIX record locks (GETLK, SETLK, SETLKW) and flock (SETLK/SETLKW with FUSE_LK_FLOCK),
 * see pt_lock.c. A lock request that has to wait does so on a thread of its own and
 * reports through a pt_async; the queue worker that received it goes on serving.
 */
struct pt_async {
    /* Called exactly once, on the waiting thread, with 0 or a negative errno. */
    void (*done)(const struct pt_async *a, int result);
    void *opaque;    /* for done */
    uint64_t unique; /* the request's id: FUSE_INTERRUPT names it */
    uint64_t tag;    /* for done */
    void *note;      /* for done (the lock layer never reads it) */
};
#define PT_PENDING 1 /* pt_setlk: the result will arrive through the pt_async */

int pt_getlk(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_lk_in *in, struct fuse_lk_out *out);
/* SETLK, or SETLKW when async is given: may then return PT_PENDING. */
int pt_setlk(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_lk_in *in, const struct pt_async *async);
/* FUSE_INTERRUPT: a lock wait for request unique ends with -EINTR. False if none is waiting. */
bool pt_lock_interrupt(struct pt_fs *fs, uint64_t unique);
/*
 * Every lock wait whose pt_async.opaque is opaque ends with -EINTR (the rings it would answer
 * on are stopping): returns once each one's done() was called. Safe with ops in flight.
 */
void pt_lock_end_waits(struct pt_fs *fs, const void *opaque);
/* Whether the lock layer has POSIX lock owner owner on nodeid (a FLUSH of it drops its
 * locks: the session journal records that only then). No mutex until locks were ever used. */
bool pt_lock_owner_known(struct pt_fs *fs, uint64_t nodeid, uint64_t owner);

/*
 * Extended attributes (ENOSYS unless cfg->xattr). system.posix_acl_access and
 * system.posix_acl_default are served only once FUSE_POSIX_ACL is agreed; before that they
 * are refused with ENOTSUP and left out of lists, as the Rust virtiofsd does.
 */
int pt_setxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                const void *value, size_t size, uint32_t flags);
/* The same with fuse_setxattr_in.setxattr_flags (FUSE_SETXATTR_EXT): FUSE_SETXATTR_ACL_KILL_SGID
 * clears the set-group-ID bit when an access ACL is set. */
int pt_setxattr_ext(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                    const void *value, size_t size, uint32_t flags, uint32_t setxattr_flags);
/* size 0: returns the size needed; otherwise copies the value and returns its size. */
ssize_t pt_getxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                    void *buf, size_t size);
ssize_t pt_listxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, void *buf,
                     size_t size);
int pt_removexattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name);

#endif
