/* SPDX-License-Identifier: Apache-2.0 */
/* Shared state and helpers of the passthrough filesystem (src/passthrough*.c) only. */
#ifndef VFS_PASSTHROUGH_INTERNAL_H
#define VFS_PASSTHROUGH_INTERNAL_H

#include "file_handle.h"
#include "handle_table.h"
#include "inode_table.h"
#include "passthrough.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

struct pt_fs {
    struct pt_config cfg; /* shared_dir points at our own copy */
    struct itab *inodes;
    struct htab *handles;
    struct pt_inode *root;
    int proc_self_fd;       /* /proc/self/fd, to reopen O_PATH fds with real access modes */
    struct pt_locks *locks; /* lock owners and waiting lock requests (passthrough_lock.c) */
    bool switch_creds;      /* running as root: act with each caller's fsuid/fsgid */
    bool group_retry;       /* pt_retry_groups may add groups (group_retry_sound) */
    uint64_t timeout;       /* entry and attribute timeout, seconds */
    /* From pt_init; read by concurrent ops, written only while none is in flight. */
    bool writeback;
    bool submounts;
    bool dont_mask;
    /* --inode-file-handles as pt_setup_file_handles decided it (FH_NEVER until then). */
    enum inode_fh_mode fh_mode;
    unsigned long fd_budget;     /* FH_AUTO: inodes with an fd before new ones get handles */
    struct fh_mounts mounts;     /* mount fds for open_by_handle_at */
    struct fh_mount *root_mount; /* the share's own mount, pinned while file handles are used */
    bool posix_acl; /* FUSE_POSIX_ACL: ACL xattrs served, the host applies umask or default ACL */
};

/* The name "N" of fd N in /proc/self/fd, for *at calls on fs->proc_self_fd. */
struct fd_path {
    char s[32];
};

/*
 * The working directory is also /proc/self/fd for the daemon's life (pt_new sets it), so the
 * same relative name serves path-only calls (the xattr ones) too, even after the sandbox has
 * pivoted the root into the share, where no /proc path exists.
 */
static inline const char *fd_name(int fd, struct fd_path *p)
{
    snprintf(p->s, sizeof(p->s), "%d", fd);
    return p->s;
}

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
 * The one way ops reach an inode's O_PATH fd: the fd the inode keeps, or for a handle-only
 * inode one opened by handle (-ESTALE once the file is gone on the host). Returns the fd or
 * -errno; every success is paired with pt_inode_fd_put. Valid until then (and at most until
 * the op's rcu_read_unlock).
 */
static inline int pt_inode_fd(struct pt_fs *fs, const struct pt_inode *inode, struct pt_fdref *ref)
{
    ref->fd = inode->fd;
    ref->owned = false;
    if (__builtin_expect(inode->fd >= 0, 1))
        return inode->fd;
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
 * Switches to the caller's credentials (a no-op unless running as root), translated to host
 * ids by --translate-uid/gid; ctx NULL: the daemon's own (root). -EPERM if a forbid-guest rule
 * covers the caller's uid or gid: such a caller has no host identity to act with.
 */
int pt_enter(struct pt_fs *fs, const struct pt_ctx *ctx);

/* pt_enter, then finds the live inode nodeid names (-EBADF if none). */
int pt_begin(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, struct pt_inode **inode);

/* The live inode nodeid names, or NULL. */
struct pt_inode *pt_inode_get(struct pt_fs *fs, uint64_t nodeid);

/*
 * Reopens an fd (typically an inode's O_PATH fd) through /proc/self/fd with real access flags
 * (O_CLOEXEC and O_NOCTTY added). Following that magic link lands on the inode itself, never
 * on a symlink's target: a symlink yields -ELOOP. Returns the new fd or -errno. Callers open
 * only regular files and directories (checking the type first) or ask for O_PATH (which opens
 * nothing): opening a device node reaches the host device, opening a FIFO may block.
 */
int pt_reopen(struct pt_fs *fs, int path_fd, int flags);

/* statx of an O_PATH fd, without following symlinks. Returns 0 or -errno. */
int pt_statx(int fd, struct statx *stx);

/*
 * fuse_attr from statx, owner and group translated to the guest's ids (--translate-uid/gid);
 * flags gets FUSE_ATTR_SUBMOUNT etc. from the caller.
 */
void pt_fill_attr(const struct pt_fs *fs, const struct statx *stx, struct fuse_attr *attr);

/*
 * Builds the entry for an O_PATH fd (consumed) in parent: takes a lookup reference on the
 * (possibly new) inode. Returns 0 or -errno.
 */
int pt_entry_from_fd(struct pt_fs *fs, const struct pt_inode *parent, int fd,
                     struct fuse_entry_out *out);

/* Looks name up in parent and builds the entry. Returns 0 or -errno. */
int pt_do_lookup(struct pt_fs *fs, struct pt_inode *parent, const char *name,
                 struct fuse_entry_out *out);
/* The same with an fd of parent already at hand (pt_inode_fd's, or an open directory's). */
int pt_do_lookup_at(struct pt_fs *fs, struct pt_inode *parent, int parent_fd, const char *name,
                    struct fuse_entry_out *out);

/* 0 if name is a single path component; -EINVAL / -ENAMETOOLONG otherwise. */
int pt_check_name(const char *name);

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

/* Host open flags for a guest OPEN/CREATE (writeback and O_DIRECT rules applied). */
int pt_open_flags(const struct pt_fs *fs, uint32_t guest_flags);

/* FOPEN_* flags for a new handle under the cache mode. */
uint32_t pt_fopen_flags(const struct pt_fs *fs, bool dir, uint32_t guest_flags);

/* Drops S_ISUID (and S_ISGID if group-executable) of a regular file, like the kernel does on
 * writes by an unprivileged caller. fd: an open fd of inode, or -1. Best effort. */
void pt_kill_suidgid(struct pt_fs *fs, const struct pt_inode *inode, int fd);

/* FSYNC and FSYNCDIR on the handle in->fh. */
int pt_fsync_handle(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                    const struct fuse_fsync_in *in);

/* Lock state (passthrough_lock.c). reset ends every wait and drops every lock. */
struct pt_locks;
int pt_locks_new(struct pt_locks **out);
void pt_locks_free(struct pt_locks *l);
void pt_locks_reset(struct pt_locks *l);
/* FLUSH by owner: its POSIX locks on the inode go, and its waits there end. */
void pt_locks_flush(struct pt_fs *fs, uint64_t nodeid, uint64_t owner);
/* RELEASE of fh: flock waits on it end, and the POSIX lock owners that last locked through it
 * (their FLUSH did not come) go. */
void pt_locks_release(struct pt_fs *fs, uint64_t fh);
/* After a FORGET of nodeid: if that removed the inode, every lock owner on it goes. */
void pt_locks_forget(struct pt_fs *fs, uint64_t nodeid);

static inline bool pt_wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

#endif
