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
 *
 * The POSIX ACL names are served only once FUSE_POSIX_ACL is agreed (--posix-acl): the guest
 * kernel then enforces them, and the host kernel keeps the mode in step when one is set.
 * Before that they are refused with ENOTSUP and hidden from lists, as in the Rust virtiofsd,
 * so the guest never mistakes ACLs it would not enforce for real ones.
 */
#include "pt_core.h"
#include "creds.h"
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
    uint32_t setxattr_flags; /* XA_SET: FUSE_SETXATTR_* */
};

/* Drops the hidden names from a listxattr result; returns its new length. */
static size_t list_hide(const struct pt_fs *fs, char *list, size_t len)
{
    size_t out = 0;

    for (size_t i = 0, n; i < len; i += n) {
        size_t name_len = strnlen(list + i, len - i);
        n = name_len + (name_len < len - i); /* with its NUL */
        if (pt_xattr_hidden(fs, list + i, name_len))
            continue;
        memmove(list + out, list + i, n);
        out += n;
    }
    return out;
}

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
 * LISTXATTR through the map, or with hidden names. The guest's list differs in length from
 * the host's, so the whole host list is read (no listxattr returns more than XATTR_LIST_MAX),
 * mapped and filtered, and only then sized against the caller's buffer: a size-0 probe gets
 * the guest's length.
 */
static ssize_t list_mapped(const struct pt_fs *fs, const struct xattr_target *t,
                           const struct xattr_args *a)
{
    char *list = malloc(XATTR_LIST_MAX);
    struct xattr_args all = {.op = XA_LIST, .buf = list, .size = XATTR_LIST_MAX};
    ssize_t n = list ? xattr_run(t, &all) : -ENOMEM;

    if (n > 0 && fs->cfg.xattrmap)
        n = (ssize_t)xattrmap_list_to_guest(fs->cfg.xattrmap, list, (size_t)n);
    if (n > 0)
        n = (ssize_t)list_hide(fs, list, (size_t)n);
    if (n > 0 && a->size && (size_t)n > a->size)
        n = -ERANGE;
    else if (n > 0 && a->size)
        memcpy(a->buf, list, (size_t)n);
    free(list);
    return n;
}

/* Replaces a->name by its host name (in buf): pt_xattr_name_to_host's rules. */
static int map_name(const struct pt_fs *fs, struct xattr_args *a, char *buf, size_t size)
{
    return a->name ? pt_xattr_name_to_host(fs, &a->name, a->op == XA_GET, buf, size) : 0;
}

/*
 * FUSE_SETXATTR_ACL_KILL_SGID on an access ACL: the guest kernel found the caller outside the
 * file's group and without CAP_FSETID, so S_ISGID goes, as it would locally. Cleared first,
 * with the daemon's own credentials, as the Rust virtiofsd does.
 *
 * The daemon's credentials are used only if the caller may set the ACL at all: only the
 * owner (or host root) may, so for anyone else the setxattr that follows fails, and the chmod
 * must not happen either (it would strip S_ISGID off any file as root). A chmod opens nothing,
 * so the file's type does not matter.
 */
static int acl_kill_sgid(struct pt_fs *fs, const struct pt_ctx *ctx, int pfd)
{
    struct statx stx;
    struct fd_path p;
    uint32_t uid;
    int ret = pt_statx(pfd, &stx);

    if (ret < 0 || !(stx.stx_mode & S_ISGID))
        return ret;
    /* Who the setxattr will run as: the caller's host uid, or the daemon if not switching. */
    ret = idmap_to_host(&fs->cfg.uid_map, ctx->uid, &uid);
    if (!fs->switch_creds)
        uid = (uint32_t)geteuid();
    if (ret < 0 || (uid != 0 && uid != stx.stx_uid))
        return ret;
    {
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0 && fchmodat(fs->proc_self_fd, fd_name(pfd, &p),
                                 stx.stx_mode & 07777 & ~(mode_t)S_ISGID, 0) < 0)
            ret = -errno;
    }
    return ret;
}

static ssize_t do_xattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                        const struct xattr_args *guest)
{
    char host_name[XATTR_NAME_MAX + 1];
    struct xattr_args a = *guest;
    struct pt_inode *inode;
    struct fd_path p;
    PT_FDREF(r);
    ssize_t n;
    int ret;

    enum pt_intent intent = (a.op == XA_SET || a.op == XA_REMOVE) ? PT_MODIFIES : PT_READS;

    if (!fs->cfg.xattr)
        return -ENOSYS;
    ret = map_name(fs, &a, host_name, sizeof(host_name));
    if (ret == 0)
        ret = pt_begin(fs, ctx, nodeid, intent, &inode);
    if (ret == 0) {
        int pfd = pt_inode_fd(fs, inode, &r);
        ret = pfd < 0 ? pfd : 0;
    }
    if (ret == 0 && a.op == XA_SET && fs->agreed.posix_acl &&
        (a.setxattr_flags & FUSE_SETXATTR_ACL_KILL_SGID) && strcmp(a.name, PT_ACL_ACCESS) == 0)
        ret = acl_kill_sgid(fs, ctx, r.fd);
    if (ret < 0)
        return ret;
    struct xattr_target t = {-1, fd_name(r.fd, &p)};
    /* Reopening may fail (e.g. no read permission): the path call then makes the real check. */
    if (S_ISREG(inode->type) || S_ISDIR(inode->type))
        t.fd = pt_reopen(fs, r.fd, O_RDONLY | O_NONBLOCK);
    if (a.op == XA_LIST && (fs->cfg.xattrmap || !fs->agreed.posix_acl))
        n = list_mapped(fs, &t, &a);
    else
        n = xattr_run(&t, &a);
    if (t.fd >= 0)
        close(t.fd);
    return n;
}

int pt_setxattr_ext(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                    const void *value, size_t size, uint32_t flags, uint32_t setxattr_flags)
{
    struct xattr_args a = {.op = XA_SET,
                           .name = name,
                           .buf = (void *)value,
                           .size = size,
                           .flags = (int)flags,
                           .setxattr_flags = setxattr_flags};

    return (int)do_xattr(fs, ctx, nodeid, &a);
}

int pt_setxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                const void *value, size_t size, uint32_t flags)
{
    return pt_setxattr_ext(fs, ctx, nodeid, name, value, size, flags, 0);
}

ssize_t pt_getxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name,
                    void *buf, size_t size)
{
    struct xattr_args a = {.op = XA_GET, .name = name, .buf = size ? buf : NULL, .size = size};

    return do_xattr(fs, ctx, nodeid, &a);
}

ssize_t pt_listxattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, void *buf,
                     size_t size)
{
    struct xattr_args a = {.op = XA_LIST, .buf = size ? buf : NULL, .size = size};

    return do_xattr(fs, ctx, nodeid, &a);
}

int pt_removexattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, const char *name)
{
    struct xattr_args a = {.op = XA_REMOVE, .name = name};

    return (int)do_xattr(fs, ctx, nodeid, &a);
}
