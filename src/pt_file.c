/* SPDX-License-Identifier: Apache-2.0 */
/* The passthrough filesystem: open files and their I/O. */
#include "pt_core.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "iov.h"
#include "log.h"

/* Open flags passed through to the host; anything else (O_PATH, O_TMPFILE, ...) is dropped. */
#define GUEST_OPEN_FLAGS                                                                           \
    (O_ACCMODE | O_APPEND | O_TRUNC | O_DIRECT | O_DSYNC | O_SYNC | O_NOATIME | O_LARGEFILE |      \
     O_NONBLOCK)

static bool wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Host open flags for a guest OPEN/CREATE (writeback and O_DIRECT rules applied). */
static int open_flags(const struct pt_fs *fs, uint32_t guest_flags)
{
    int flags = (int)guest_flags & GUEST_OPEN_FLAGS;

    if (fs->agreed.writeback) {
        /* The guest page cache may read to fill partly written pages. */
        if ((flags & O_ACCMODE) == O_WRONLY)
            flags = (flags & ~O_ACCMODE) | O_RDWR;
        /* The guest kernel computes append offsets itself; host O_APPEND would ignore them. */
        flags &= ~O_APPEND;
    }
    if (!fs->cfg.allow_direct_io)
        flags &= ~O_DIRECT;
    /* The guest kernel already checked the caller may use O_NOATIME; on the host it could
     * fail for want of ownership or CAP_FOWNER (as the Rust virtiofsd, unless asked). */
    if (!fs->cfg.preserve_noatime)
        flags &= ~O_NOATIME;
    return flags | O_CLOEXEC;
}

/*
 * Reopens path_fd with flags. If the writeback cache turned the guest's O_WRONLY into O_RDWR
 * and the caller may only write, falls back to O_WRONLY rather than failing the open.
 */
static int reopen_for_guest(struct pt_fs *fs, int path_fd, int flags, uint32_t guest_flags)
{
    int fd = pt_reopen(fs, path_fd, flags);

    if (fd == -EACCES && (guest_flags & O_ACCMODE) == O_WRONLY && (flags & O_ACCMODE) == O_RDWR)
        fd = pt_reopen(fs, path_fd, (flags & ~O_ACCMODE) | O_WRONLY);
    return fd;
}

/* Registers fd (consumed) as a handle and fills the OPEN reply. */
static int add_handle(struct pt_fs *fs, uint64_t nodeid, int fd, uint32_t guest_flags,
                      struct fuse_open_out *out)
{
    uint64_t fh;
    int ret = htab_add(fs->handles, nodeid, fd, false, &fh);

    if (ret < 0)
        return ret;
    memset(out, 0, sizeof(*out));
    out->fh = fh;
    out->open_flags = pt_fopen_flags(fs, false, guest_flags);
    return 0;
}

int pt_open(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
            const struct fuse_open_in *in, struct fuse_open_out *out)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    int fd, flags = open_flags(fs, in->flags);
    int ret = pt_begin(fs, ctx, nodeid, wants_write(flags) ? PT_MODIFIES : PT_READS, &inode);

    if (ret < 0)
        return ret;
    /*
     * The guest uses OPENDIR for directories and serves FIFOs, sockets and devices itself;
     * opening those on the host could block a worker or reach a host device.
     */
    if (!S_ISREG(inode->type))
        return S_ISDIR(inode->type) ? -EISDIR : -EINVAL;
    ret = pt_handle_room(fs);
    if (ret == 0)
        ret = pt_inode_fd(fs, inode, &r);
    if (ret < 0)
        return ret;
    fd = reopen_for_guest(fs, r.fd, flags, in->flags);
    if (fd < 0)
        return fd;
    if ((in->open_flags & FUSE_OPEN_KILL_SUIDGID) && (flags & O_TRUNC))
        pt_kill_suidgid(fs, inode, fd);
    return add_handle(fs, nodeid, fd, in->flags, out);
}

/*
 * CREATE without O_EXCL of a name that exists: open exactly the inode the name refers to, and
 * only a regular file (O_CREAT would otherwise open a FIFO or device, or follow nothing but
 * fail on a symlink). Returns the fd and its O_PATH fd in *path_fd.
 */
static int open_existing(struct pt_fs *fs, int dir_fd, const char *name, int flags,
                         uint32_t guest_flags, int *path_fd)
{
    struct statx stx;
    int fd, pfd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int ret = pfd < 0 ? -errno : pt_statx(pfd, &stx);

    if (ret == 0 && !S_ISREG(stx.stx_mode))
        ret = S_ISDIR(stx.stx_mode) ? -EISDIR : S_ISLNK(stx.stx_mode) ? -ELOOP : -EINVAL;
    if (ret < 0) {
        if (pfd >= 0)
            close(pfd);
        return ret;
    }
    fd = reopen_for_guest(fs, pfd, flags, guest_flags);
    if (fd < 0) {
        close(pfd);
        return fd;
    }
    *path_fd = pfd;
    return fd;
}

/*
 * Creates (or opens) name; returns the open fd and an O_PATH fd of the same inode. A file it
 * creates gets the request's security context, or is removed again.
 */
static int create_file(struct pt_fs *fs, const struct pt_ctx *ctx, int dir_fd, const char *name,
                       const struct fuse_create_in *in, int *path_fd)
{
    int flags = open_flags(fs, in->flags);
    mode_t mode = pt_umask_begin(fs, in->mode, in->umask) & 07777;
    int fd = openat(dir_fd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    int ret = fd < 0 ? -errno : 0;

    pt_umask_end(fs);
    if (fd < 0) {
        if (ret != -EEXIST || (in->flags & O_EXCL))
            return ret;
        return open_existing(fs, dir_fd, name, flags, in->flags, path_fd);
    }
    *path_fd = pt_reopen(fs, fd, O_PATH);
    ret = *path_fd < 0 ? *path_fd : pt_apply_secctx(fs, ctx, *path_fd);
    if (ret < 0) {
        close(fd);
        if (*path_fd >= 0) {
            close(*path_fd);
            unlinkat(dir_fd, name, 0); /* created, but not labelled */
        }
        return ret;
    }
    return fd;
}

/* The entry and the handle of a file just created as name (NULL: an unnamed O_TMPFILE);
 * takes fd and path_fd. */
static int finish_create(struct pt_fs *fs, struct pt_inode *dir, const char *name, int fd,
                         int path_fd, uint32_t flags, struct fuse_entry_out *entry,
                         struct fuse_open_out *open)
{
    int ret = pt_entry_from_fd(fs, dir, path_fd, name, entry);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    ret = add_handle(fs, entry->nodeid, fd, flags, open);
    if (ret < 0)
        pt_inode_forget(fs, entry->nodeid, 1); /* the guest never saw the entry */
    return ret;
}

int pt_tmpfile(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
               const struct fuse_create_in *in, struct fuse_entry_out *entry,
               struct fuse_open_out *open)
{
    struct pt_inode *dir;
    int ret = pt_begin_dir(fs, ctx, parent, PT_MODIFIES, &dir);
    PT_FDREF(d);
    if (ret == 0)
        ret = pt_handle_room(fs);
    if (ret == 0)
        ret = pt_inode_fd(fs, dir, &d);
    if (ret < 0)
        return ret;
    /* O_TMPFILE includes O_DIRECTORY; the access mode and O_EXCL are the guest's. */
    int flags = open_flags(fs, in->flags & ~(O_TMPFILE | O_CREAT)) | O_TMPFILE;
    mode_t mode = pt_umask_begin(fs, in->mode, in->umask) & 07777;
    int fd = openat(d.fd, ".", flags | O_CLOEXEC, mode);
    ret = fd < 0 ? -errno : 0;
    pt_umask_end(fs);
    if (fd < 0)
        return ret;
    int path_fd = pt_reopen(fs, fd, O_PATH);
    ret = path_fd < 0 ? path_fd : pt_apply_secctx(fs, ctx, path_fd);
    if (ret < 0) { /* an unnamed file vanishes with its last fd */
        close(fd);
        if (path_fd >= 0)
            close(path_fd);
        return ret;
    }
    return finish_create(fs, dir, NULL, fd, path_fd, in->flags, entry, open);
}

int pt_create(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              const struct fuse_create_in *in, struct fuse_entry_out *entry,
              struct fuse_open_out *open)
{
    struct pt_inode *dir;
    PT_FDREF(d);
    int fd, path_fd = -1, ret = pt_check_name(name, PT_NAME_CREATE);

    if (ret == 0)
        ret = pt_begin_dir(fs, ctx, parent, PT_MODIFIES, &dir);
    if (ret == 0)
        ret = pt_check_name_in(fs, dir, name, PT_NAME_CREATE);
    if (ret == 0)
        ret = pt_handle_room(fs);
    if (ret < 0)
        return ret;
    ret = pt_inode_fd(fs, dir, &d);
    if (ret < 0)
        return ret;
    fd = create_file(fs, ctx, d.fd, name, in, &path_fd);
    if (fd < 0)
        return fd;
    return finish_create(fs, dir, name, fd, path_fd, in->flags, entry, open);
}

/* A handle of a regular file (not a directory). */
static int begin_file(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t fh,
                      enum pt_intent intent, struct pt_handle **h)
{
    return pt_begin_handle(fs, ctx, nodeid, fh, false, intent, h);
}

/* The part of an iovec array not yet transferred, limited to a byte count. */
struct iov_cursor {
    struct iovec *v;    /* the remaining entries */
    unsigned cnt;       /* how many */
    struct iovec *base; /* what to free (NULL when stack is used) */
    struct iovec stack[16];
};

static int cursor_init(struct iov_cursor *c, const struct iovec *iov, unsigned iovcnt, size_t size)
{
    unsigned n = iov_slice(iov, iovcnt, 0, size, NULL, 0);

    c->base = NULL;
    c->v = c->stack;
    if (n > sizeof(c->stack) / sizeof(c->stack[0])) {
        c->v = c->base = malloc((size_t)n * sizeof(*c->v));
        if (!c->v)
            return -ENOMEM;
    }
    c->cnt = iov_slice(iov, iovcnt, 0, size, c->v, n);
    return 0;
}

/*
 * preadv/pwritev straight on the guest's buffers. Writes loop until everything is written;
 * reads stop at a short read (end of file). A failure after some progress returns the
 * progress, as read(2) and write(2) do.
 */
static ssize_t do_io(int fd, bool write, const struct iovec *iov, int iovcnt, size_t size,
                     uint64_t offset)
{
    struct iov_cursor c = {.base = NULL};
    size_t total = 0;
    ssize_t ret = 0;

    if (offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    ret = iovcnt < 0 ? -EINVAL : cursor_init(&c, iov, (unsigned)iovcnt, size);
    while (ret == 0 && c.cnt > 0) {
        int cnt = c.cnt < IOV_MAX ? (int)c.cnt : IOV_MAX;
        size_t want = iov_size(c.v, (unsigned)cnt);
        off_t off = (off_t)(offset + total);
        ssize_t n = write ? pwritev(fd, c.v, cnt, off) : preadv(fd, c.v, cnt, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = total ? 0 : -errno;
            break;
        }
        total += (size_t)n;
        if (n == 0 || (!write && (size_t)n < want))
            break;
        iov_discard_front(&c.v, &c.cnt, (size_t)n);
    }
    free(c.base);
    return ret < 0 ? ret : (ssize_t)total;
}

ssize_t pt_read(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                const struct fuse_read_in *in, const struct iovec *iov, int iovcnt)
{
    struct pt_handle *h;
    int ret = begin_file(fs, ctx, nodeid, in->fh, PT_READS, &h);

    if (ret < 0)
        return ret;
    return do_io(h->fd, false, iov, iovcnt, in->size, in->offset);
}

ssize_t pt_write(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                 const struct fuse_write_in *in, const struct iovec *iov, int iovcnt)
{
    struct pt_inode *inode;
    struct pt_handle *h;
    int ret = begin_file(fs, ctx, nodeid, in->fh, PT_MODIFIES, &h);

    if (ret < 0)
        return ret;
    if (in->write_flags & FUSE_WRITE_KILL_SUIDGID) {
        inode = pt_inode_get(fs, nodeid);
        if (inode)
            pt_kill_suidgid(fs, inode, h->fd);
    }
    return do_io(h->fd, true, iov, iovcnt, in->size, in->offset);
}

int pt_write_appends(struct pt_fs *fs, uint64_t nodeid, uint64_t fh, uint64_t *size)
{
    struct pt_handle *h = htab_get(fs->handles, fh, nodeid);
    struct stat st;
    int flags;

    if (!h || h->dir)
        return -EBADF;
    flags = fcntl(h->fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (!(flags & O_APPEND))
        return 0;
    if (fstat(h->fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 1;
}

int pt_flush(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_flush_in *in)
{
    struct pt_handle *h;
    int fd, ret = begin_file(fs, ctx, nodeid, in->fh, PT_READS, &h);

    if (ret < 0)
        return ret;
    pt_note_flush(fs, nodeid, in->lock_owner);
    /*
     * Every close(2) in the guest sends FLUSH; closing a duplicate releases this process's
     * POSIX locks on the file and reports delayed write errors (NFS), as a close would.
     */
    fd = dup(h->fd);
    if (fd < 0)
        return -errno;
    return close(fd) < 0 ? -errno : 0;
}

int pt_release(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_release_in *in)
{
    struct pt_handle *h;
    /*
     * Closing needs no permission, and a release must not fail for the caller's ids (the
     * guest often sends it as uid 0, which --translate-uid may forbid): the fd would leak.
     */
    int ret = begin_file(fs, NULL, nodeid, in->fh, PT_READS, &h);

    if (ret < 0)
        return ret;
    pt_note_release(fs, in->fh);
    if (in->release_flags & FUSE_RELEASE_FLOCK_UNLOCK)
        flock(h->fd, LOCK_UN);
    return htab_remove(fs->handles, in->fh, nodeid);
}

int pt_fsync(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_fsync_in *in)
{
    return pt_fsync_handle(fs, ctx, nodeid, in);
}

int pt_fallocate(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                 const struct fuse_fallocate_in *in)
{
    struct pt_handle *h;
    int ret = begin_file(fs, ctx, nodeid, in->fh, PT_MODIFIES, &h);

    if (ret < 0)
        return ret;
    if (in->offset > (uint64_t)INT64_MAX || in->length > (uint64_t)INT64_MAX)
        return -EINVAL;
    if (fallocate(h->fd, (int)in->mode, (off_t)in->offset, (off_t)in->length) < 0)
        return -errno;
    return 0;
}

int pt_lseek(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_lseek_in *in, struct fuse_lseek_out *out)
{
    struct pt_handle *h;
    off_t off;
    int ret = begin_file(fs, ctx, nodeid, in->fh, PT_READS, &h);

    if (ret < 0)
        return ret;
    if (in->offset > (uint64_t)INT64_MAX)
        return -ENXIO;
    /* Only the result matters: reads and writes are positional, so the shared offset moving
     * is harmless. */
    off = lseek(h->fd, (off_t)in->offset, (int)in->whence);
    if (off < 0)
        return -errno;
    out->offset = (uint64_t)off;
    return 0;
}

ssize_t pt_copy_file_range(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                           const struct fuse_copy_file_range_in *in)
{
    struct pt_handle *src, *dst;
    loff_t off_in = (loff_t)in->off_in, off_out = (loff_t)in->off_out;
    /* The reply (fuse_write_out.size) has 32 bits; keep whole pages. */
    size_t len = in->len > 0xfffff000u ? 0xfffff000u : (size_t)in->len;
    ssize_t n;
    int ret = begin_file(fs, ctx, nodeid, in->fh_in, PT_READS, &src);

    if (ret == 0)
        ret = begin_file(fs, ctx, in->nodeid_out, in->fh_out, PT_MODIFIES, &dst);
    if (ret < 0)
        return ret;
    if (in->off_in > (uint64_t)INT64_MAX || in->off_out > (uint64_t)INT64_MAX)
        return -EINVAL;
    n = copy_file_range(src->fd, &off_in, dst->fd, &off_out, len, (unsigned int)in->flags);
    return n < 0 ? -errno : n;
}
