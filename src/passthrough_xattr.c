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
 *
 * With --xattrmap (cfg.xattrmap) guest names are translated before they reach the host, and
 * host names listed by LISTXATTR are translated (or hidden) before the guest sees them.
 */
#include "passthrough_internal.h"
#include "xattrmap.h"

#include <errno.h>
#include <linux/limits.h>
#include <stdlib.h>
#include <string.h>
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

/* Where an op runs: an fd opened on the inode, or (fd < 0) its name in /proc/self/fd. */
struct xattr_target {
    int fd;
    const char *path;
};

static ssize_t xattr_run(const struct xattr_target *t, const struct xattr_args *a)
{
    ssize_t n = t->fd >= 0 ? xattr_fd(t->fd, a) : xattr_path(t->path, a);
    return n < 0 ? -errno : n;
}

/*
 * LISTXATTR through the map. The guest's list differs in length from the host's, so the
 * whole host list is read (no listxattr returns more than XATTR_LIST_MAX), mapped, and only
 * then sized against the caller's buffer: a size-0 probe gets the mapped length.
 */
static ssize_t list_mapped(const struct pt_fs *fs, const struct xattr_target *t,
                           const struct xattr_args *a)
{
    char *list = malloc(XATTR_LIST_MAX);
    struct xattr_args all = {XA_LIST, NULL, list, XATTR_LIST_MAX, 0};
    ssize_t n = list ? xattr_run(t, &all) : -ENOMEM;

    if (n > 0)
        n = (ssize_t)xattrmap_list_to_guest(fs->cfg.xattrmap, list, (size_t)n);
    if (n > 0 && a->size && (size_t)n > a->size)
        n = -ERANGE;
    else if (n > 0 && a->size)
        memcpy(a->buf, list, (size_t)n);
    free(list);
    return n;
}

/*
 * Replaces a->name by its host name (in buf) under the map. A refused name reads as absent
 * on GETXATTR (ENODATA, as the Rust and QEMU daemons answer), so a guest probing for it just
 * finds no value; SETXATTR and REMOVEXATTR get the refusal itself (EPERM).
 */
static int map_name(const struct pt_fs *fs, struct xattr_args *a, char *buf, size_t size)
{
    if (!a->name || !fs->cfg.xattrmap)
        return 0;
    int ret = xattrmap_to_host(fs->cfg.xattrmap, a->name, buf, size);
    if (ret == -EPERM && a->op == XA_GET)
        return -ENODATA;
    if (ret == 0)
        a->name = buf;
    return ret;
}

static ssize_t do_xattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                        const struct xattr_args *guest)
{
    char host_name[XATTR_NAME_MAX + 1];
    struct xattr_args a = *guest;
    struct pt_inode *inode;
    struct fd_path p;
    ssize_t n;
    int ret;

    if (!fs->cfg.xattr)
        return -ENOSYS;
    if (fs->cfg.readonly && (a.op == XA_SET || a.op == XA_REMOVE))
        return -EROFS;
    ret = map_name(fs, &a, host_name, sizeof(host_name));
    if (ret == 0)
        ret = pt_begin(fs, ctx, nodeid, &inode);
    if (ret < 0)
        return ret;
    struct xattr_target t = {-1, fd_name(inode->fd, &p)};
    /* Reopening may fail (e.g. no read permission): the path call then makes the real check. */
    if (S_ISREG(inode->type) || S_ISDIR(inode->type))
        t.fd = pt_reopen(fs, inode->fd, O_RDONLY | O_NONBLOCK);
    if (a.op == XA_LIST && fs->cfg.xattrmap)
        n = list_mapped(fs, &t, &a);
    else
        n = xattr_run(&t, &a);
    if (t.fd >= 0)
        close(t.fd);
    return n;
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
