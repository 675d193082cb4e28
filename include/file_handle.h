/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File handles for inodes that keep no fd (--inode-file-handles).
 *
 * name_to_handle_at gives a handle and a mount id for a file; open_by_handle_at opens the file
 * again from the handle and any fd on that mount (not O_PATH: the kernel refuses those). So
 * the table below keeps one O_RDONLY "mount fd" per mount id, opened from the first directory
 * (or regular file) seen on the mount and reference-counted by the handles that use it: when
 * the last inode on a mount is forgotten its fd is closed, and the mount can be unmounted on
 * the host again. A mount where handles cannot be opened (a file system that encodes but does
 * not decode them, no CAP_DAC_READ_SEARCH, ...) is remembered as such, once.
 *
 * open_by_handle_at needs CAP_DAC_READ_SEARCH in the effective set, which the kernel drops
 * while the thread's fsuid is not 0; fh_open and the mount fd opening therefore act as the daemon
 * for the one call (CREDS_AS_DAEMON) and only ever open O_PATH fds (mount fds aside), so every
 * permission check of the operation itself still happens with the caller's ids.
 *
 * This is the mechanism; when inodes use handles at all is src/fh_policy.c's to decide.
 */
#ifndef VFS_FILE_HANDLE_H
#define VFS_FILE_HANDLE_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* A handle as name_to_handle_at returns it (on the stack). */
struct fh_buf {
    int mnt_id;
    union {
        struct file_handle h;
        char raw[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } u;
};

struct fh_mounts;

/* One mount's fd for open_by_handle_at. */
struct fh_mount {
    int mnt_id;
    int fd;             /* O_RDONLY on the mount; -1 when handles do not work there */
    int err;            /* why not (a positive errno), else 0 */
    unsigned long refs; /* handles (and pins) using fd; under the table's lock */
    struct fh_mounts *table;
    struct fh_mount *next;
};

struct fh_mounts {
    pthread_mutex_t lock;
    struct fh_mount *list;
};

/* An inode's handle: the mount it opens on (one reference held) and the handle itself, in one
 * allocation as small as the handle (a daemon may hold millions). */
struct pt_fhandle {
    struct fh_mount *mount;
    /* A struct file_handle and its handle_bytes of f_handle (8-byte aligned after mount). */
    unsigned char h[];
};

/* The handle of an fd (O_PATH is fine). 0 or -errno: -EOPNOTSUPP when the file system gives
 * none, -EOVERFLOW when it would not fit MAX_HANDLE_SZ. */
int fh_encode(int fd, struct fh_buf *out);

/* True if fh is the handle in b (same mount, type and bytes). */
bool fh_same(const struct pt_fhandle *fh, const struct fh_buf *b);

void fh_mounts_init(struct fh_mounts *t);
/* Closes every mount fd. No handle may be in use any more. */
void fh_mounts_destroy(struct fh_mounts *t);

/*
 * A referenced mount entry for b's mount, to open b with. The first time a mount is seen its
 * fd is opened by reopening src_fd (an O_PATH fd of a directory or regular file on that mount)
 * through /proc/self/fd (proc_self_fd), and b is opened once to check that handles work there.
 * *created is set when this call made the entry (so the caller can log a failure once).
 * Returns 0, or -errno: the mount's failure (remembered), or -EIO when src_fd is -1 and the
 * mount is not known yet.
 */
int fh_mount_get(struct fh_mounts *t, const struct fh_buf *b, int src_fd, int proc_self_fd,
                 struct fh_mount **out, bool *created);

/* Remembers that handles do not work on mount mnt_id (err > 0); true the first time. */
bool fh_mount_fail(struct fh_mounts *t, int mnt_id, int err);

/* Drops a reference from fh_mount_get; the fd is closed with the last one. */
void fh_mount_put(struct fh_mount *m);

/* A handle for b using m (whose reference it takes over); NULL when out of memory. */
struct pt_fhandle *fh_new(struct fh_mount *m, const struct fh_buf *b);
void fh_free(struct pt_fhandle *fh);

/* open_by_handle_at as the daemon (see above). The fd, or -errno (-ESTALE: the file is gone). */
int fh_open(const struct pt_fhandle *fh, int flags);

#endif
