/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem: entries and the namespace (LOOKUP, FORGET, READLINK, SYMLINK,
 * MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK).
 */
#include "pt_core.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int pt_lookup(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              struct fuse_entry_out *out)
{
    struct pt_inode *dir;
    int ret = pt_check_name(name, PT_NAME_LOOKUP);

    if (ret == 0)
        ret = pt_begin_dir(fs, ctx, parent, PT_READS, &dir);
    return ret < 0 ? ret : pt_do_lookup(fs, dir, name, out);
}

void pt_forget(struct pt_fs *fs, uint64_t nodeid, uint64_t nlookup)
{
    pt_inode_forget(fs, nodeid, nlookup);
}

ssize_t pt_readlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, char *buf,
                    size_t size)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    ssize_t n;
    int ret = pt_begin(fs, ctx, nodeid, PT_READS, &inode);

    if (ret < 0)
        return ret;
    if (!S_ISLNK(inode->type))
        return -EINVAL;
    ret = pt_inode_fd(fs, inode, &r);
    if (ret < 0)
        return ret;
    n = readlinkat(r.fd, "", buf, size);
    return n < 0 ? -errno : n;
}

/* Common start of the operations that create, remove or rename name in parent. */
static int begin_create(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
                        const char *name, struct pt_inode **dir)
{
    int ret = pt_check_name(name, PT_NAME_NEW);

    if (ret == 0)
        ret = pt_begin_dir(fs, ctx, parent, PT_MODIFIES, dir);
    return ret;
}

/* begin_create, then the directory's O_PATH fd into d. Returns 0 or -errno. */
static int begin_create_at(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
                           const char *name, struct pt_inode **dir, struct pt_fdref *d)
{
    int ret = begin_create(fs, ctx, parent, name, dir);

    if (ret == 0)
        ret = pt_inode_fd(fs, *dir, d);
    return ret < 0 ? ret : 0;
}

/*
 * The entry of name, just created in dir, labelled first with the security context of the
 * request (if any); an inode that cannot be labelled is removed again (flags: for unlinkat).
 */
static int new_entry(struct pt_fs *fs, const struct pt_ctx *ctx, struct pt_inode *dir, int dir_fd,
                     const char *name, int flags, struct fuse_entry_out *out)
{
    int fd, ret;

    if (!ctx || !ctx->secctx)
        return pt_do_lookup_at(fs, dir, dir_fd, name, out);
    fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    ret = fd < 0 ? -errno : pt_apply_secctx(fs, ctx, fd);
    if (ret < 0) {
        if (fd >= 0)
            close(fd);
        if (unlinkat(dir_fd, name, flags) < 0)
            log_warn("cannot remove %s after failing to label it: %s", name, strerror(errno));
        return ret;
    }
    return pt_entry_from_fd(fs, dir, fd, out);
}

int pt_symlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
               const char *target, struct fuse_entry_out *out)
{
    struct pt_inode *dir;
    PT_FDREF(d);
    int ret = begin_create_at(fs, ctx, parent, name, &dir, &d);

    if (ret < 0)
        return ret;
    if (!target)
        return -EINVAL;
    if (symlinkat(target, d.fd, name) < 0)
        return -errno;
    return new_entry(fs, ctx, dir, d.fd, name, 0, out);
}

int pt_mknod(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
             const struct fuse_mknod_in *in, struct fuse_entry_out *out)
{
    struct pt_inode *dir;
    PT_FDREF(d);
    int ret = begin_create_at(fs, ctx, parent, name, &dir, &d);

    if (ret < 0)
        return ret;
    /* FUSE sends rdev in the kernel's 32-bit encoding, which glibc's dev_t decodes alike. */
    ret = mknodat(d.fd, name, pt_umask_begin(fs, in->mode, in->umask), (dev_t)in->rdev);
    ret = ret < 0 ? -errno : 0;
    pt_umask_end(fs);
    if (ret < 0)
        return ret;
    return new_entry(fs, ctx, dir, d.fd, name, 0, out);
}

int pt_mkdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
             const struct fuse_mkdir_in *in, struct fuse_entry_out *out)
{
    struct pt_inode *dir;
    PT_FDREF(d);
    int ret = begin_create_at(fs, ctx, parent, name, &dir, &d);

    if (ret < 0)
        return ret;
    ret = mkdirat(d.fd, name, pt_umask_begin(fs, in->mode, in->umask) & 07777);
    ret = ret < 0 ? -errno : 0;
    pt_umask_end(fs);
    if (ret < 0)
        return ret;
    return new_entry(fs, ctx, dir, d.fd, name, AT_REMOVEDIR, out);
}

static int do_remove(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
                     int flags)
{
    struct pt_inode *dir;
    PT_FDREF(d);
    int ret = begin_create_at(fs, ctx, parent, name, &dir, &d);

    if (ret < 0)
        return ret;
    /* The inode stays in the table until the guest forgets it (its O_PATH fd, if it has one,
     * keeps the host inode alive; a handle-only one then gets ESTALE). */
    return unlinkat(d.fd, name, flags) < 0 ? -errno : 0;
}

int pt_unlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name)
{
    return do_remove(fs, ctx, parent, name, 0);
}

int pt_rmdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name)
{
    return do_remove(fs, ctx, parent, name, AT_REMOVEDIR);
}

int pt_rename(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t olddir, const char *oldname,
              uint64_t newdir, const char *newname, uint32_t flags)
{
    struct pt_inode *from, *to;
    PT_FDREF(f);
    PT_FDREF(t);
    int ret;

    if (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
        return -EINVAL;
    ret = begin_create(fs, ctx, olddir, oldname, &from);
    if (ret == 0)
        ret = pt_check_name(newname, PT_NAME_NEW);
    if (ret == 0)
        ret = pt_begin_dir(fs, ctx, newdir, PT_MODIFIES, &to);
    if (ret == 0)
        ret = pt_inode_fd(fs, from, &f);
    if (ret >= 0)
        ret = pt_inode_fd(fs, to, &t);
    if (ret < 0)
        return ret;
    return renameat2(f.fd, oldname, t.fd, newname, flags) < 0 ? -errno : 0;
}

int pt_link(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t newparent,
            const char *newname, struct fuse_entry_out *out)
{
    struct pt_inode *inode, *dir;
    struct fd_path p;
    PT_FDREF(r);
    PT_FDREF(d);
    int ret = begin_create(fs, ctx, newparent, newname, &dir);

    if (ret == 0)
        ret = pt_begin(fs, ctx, nodeid, PT_READS, &inode);
    if (ret < 0)
        return ret;
    if (S_ISDIR(inode->type))
        return -EPERM;
    ret = pt_inode_fd(fs, inode, &r);
    if (ret >= 0)
        ret = pt_inode_fd(fs, dir, &d);
    if (ret < 0)
        return ret;
    /*
     * linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which a non-root fsuid lacks;
     * following the /proc magic link links the inode itself (a symlink too) without it.
     */
    if (linkat(fs->proc_self_fd, fd_name(r.fd, &p), d.fd, newname, AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    return pt_do_lookup_at(fs, dir, d.fd, newname, out);
}
