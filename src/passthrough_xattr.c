/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem: extended attributes.
 *
 * Regular files and directories are reopened read-only and use the f*xattr calls. Where that
 * is impossible (symlinks and special files cannot be opened safely, and a caller may be
 * allowed an xattr operation without read permission, e.g. listxattr or setxattr on a
 * write-only file) the non-l calls go through the name "N" in /proc/self/fd (the working
 * directory): following that magic link lands on the inode itself (a symlink included) and is never
 * followed further.
 */
#include "passthrough_internal.h"

#include <errno.h>
#include <sys/xattr.h>
#include <unistd.h>

enum xattr_op { XA_GET, XA_SET, XA_LIST, XA_REMOVE };

struct xattr_args {
    enum xattr_op op;
    const char *name;
    void *buf; /* XA_GET, XA_LIST: out; XA_SET: the value */
    size_t size;
    int flags;
};

static ssize_t xattr_fd(int fd, const struct xattr_args *a)
{
    switch (a->op) {
    case XA_GET:
        return fgetxattr(fd, a->name, a->buf, a->size);
    case XA_SET:
        return fsetxattr(fd, a->name, a->buf, a->size, a->flags);
    case XA_LIST:
        return flistxattr(fd, a->buf, a->size);
    case XA_REMOVE:
        return fremovexattr(fd, a->name);
    }
    errno = EINVAL;
    return -1;
}

static ssize_t xattr_path(const char *path, const struct xattr_args *a)
{
    switch (a->op) {
    case XA_GET:
        return getxattr(path, a->name, a->buf, a->size);
    case XA_SET:
        return setxattr(path, a->name, a->buf, a->size, a->flags);
    case XA_LIST:
        return listxattr(path, a->buf, a->size);
    case XA_REMOVE:
        return removexattr(path, a->name);
    }
    errno = EINVAL;
    return -1;
}

static ssize_t do_xattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                        const struct xattr_args *a)
{
    struct pt_inode *inode;
    struct fd_path p;
    ssize_t n;
    int fd = -1, ret;

    if (!fs->cfg.xattr)
        return -ENOSYS;
    if (fs->cfg.readonly && (a->op == XA_SET || a->op == XA_REMOVE))
        return -EROFS;
    ret = pt_begin(fs, ctx, nodeid, &inode);
    if (ret < 0)
        return ret;
    if (S_ISREG(inode->type) || S_ISDIR(inode->type))
        fd = pt_reopen(fs, inode->fd, O_RDONLY | O_NONBLOCK);
    if (fd >= 0) {
        n = xattr_fd(fd, a);
        if (n < 0)
            n = -errno;
        close(fd);
        return n;
    }
    /* Reopening failed (e.g. no read permission): the path call makes the real check. */
    n = xattr_path(fd_name(inode->fd, &p), a);
    return n < 0 ? -errno : n;
}

int pt_setxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                const void *value, size_t size, uint32_t flags)
{
    struct xattr_args a = {XA_SET, name, (void *)value, size, (int)flags};

    return (int)do_xattr(fs, ctx, nodeid, &a);
}

ssize_t pt_getxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                    void *buf, size_t size)
{
    struct xattr_args a = {XA_GET, name, size ? buf : NULL, size, 0};

    return do_xattr(fs, ctx, nodeid, &a);
}

ssize_t pt_listxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, void *buf,
                     size_t size)
{
    struct xattr_args a = {XA_LIST, NULL, size ? buf : NULL, size, 0};

    return do_xattr(fs, ctx, nodeid, &a);
}

int pt_removexattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name)
{
    struct xattr_args a = {XA_REMOVE, name, NULL, 0, 0};

    return (int)do_xattr(fs, ctx, nodeid, &a);
}
