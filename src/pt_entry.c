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
    if (ret == 0)
        ret = pt_check_name_in(fs, dir, name, PT_NAME_LOOKUP);
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

/* Common start of the operations that create, remove or rename name in parent (use: NEW for
 * the name that comes to be, REMOVE for the one that goes). */
static int begin_name(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
                      enum pt_name_use use, struct pt_inode **dir)
{
    int ret = pt_check_name(name, use);

    if (ret == 0)
        ret = pt_begin_dir(fs, ctx, parent, PT_MODIFIES, dir);
    if (ret == 0)
        ret = pt_check_name_in(fs, *dir, name, use);
    return ret;
}

static int begin_create(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
                        const char *name, struct pt_inode **dir)
{
    return begin_name(fs, ctx, parent, name, PT_NAME_NEW, dir);
}

/* begin_name, then the directory's O_PATH fd into d. Returns 0 or -errno. */
static int begin_name_at(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
                         const char *name, enum pt_name_use use, struct pt_inode **dir,
                         struct pt_fdref *d)
{
    int ret = begin_name(fs, ctx, parent, name, use, dir);

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
    return pt_entry_from_fd(fs, dir, fd, name, out);
}

int pt_symlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
               const char *target, struct fuse_entry_out *out)
{
    struct pt_inode *dir;
    PT_FDREF(d);
    int ret = begin_name_at(fs, ctx, parent, name, PT_NAME_NEW, &dir, &d);

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
    int ret = begin_name_at(fs, ctx, parent, name, PT_NAME_NEW, &dir, &d);

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
    int ret = begin_name_at(fs, ctx, parent, name, PT_NAME_NEW, &dir, &d);

    if (ret < 0)
        return ret;
    ret = mkdirat(d.fd, name, pt_umask_begin(fs, in->mode, in->umask) & 07777);
    ret = ret < 0 ? -errno : 0;
    pt_umask_end(fs);
    if (ret < 0)
        return ret;
    return new_entry(fs, ctx, dir, d.fd, name, AT_REMOVEDIR, out);
}

/*
 * Deferred removal (pt_core.h) of the file name names in directory fd d, which the guest's
 * own call (unlinkat, renameat2 over it) is about to take away. A regular file with no other
 * link that the guest holds a lookup of (its nodeid: an open file always has one, and so has
 * an unlinked one the guest still stats, like a cwd) gets its hidden name first; a file
 * nobody references is removed at once as before. Any failure to hide means an ordinary
 * removal (logged at debug): nothing the guest sees changes, only a crash of the daemon would
 * then cost the file. A handle whose nodeid a hostile guest forgot does not count.
 */
struct hide {
    int fd;                 /* O_PATH of the file under name, or -1 */
    struct pt_inode *inode; /* its inode, with a reference of ours until hide_end */
    struct statx stx;
    bool linked; /* its hidden name was made */
};

static void hide_begin(struct pt_fs *fs, int d, const char *name, char *hidden, struct hide *h)
{
    struct itab_key key;
    int ret;

    *h = (struct hide){.fd = -1};
    if (!hidden)
        return;
    hidden[0] = '\0';
    h->fd = openat(d, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (h->fd < 0 || pt_statx(h->fd, &h->stx) < 0 || !S_ISREG(h->stx.stx_mode) ||
        h->stx.stx_nlink != 1)
        return;
    pt_key_from_statx(&h->stx, &key);
    h->inode = itab_find_ref(fs->inodes, &key, NULL, NULL);
    if (!h->inode)
        return; /* the guest holds no nodeid of it: nothing to keep */
    ret = pt_hide(fs, h->fd, &h->stx, hidden);
    if (ret < 0) {
        log_debug("%s: not kept for the guest's references (%s): removed at once", name,
                  strerror(-ret));
        hidden[0] = '\0';
        return;
    }
    h->linked = true;
}

/* After the guest's call (its result ret): the hidden name stays only if the file has no
 * other name left. */
static void hide_end(struct pt_fs *fs, struct hide *h, int ret, char *hidden)
{
    struct statx now;

    if (h->linked) {
        if (ret == 0 && pt_statx(h->fd, &now) == 0 && now.stx_nlink == 1) {
            __atomic_store_n(&h->inode->hidden, 1, __ATOMIC_RELEASE);
            /* Its hidden name is where the fd cache finds it again, should it have no fd. */
            (void)itab_set_loc(fs->inodes, h->inode, FUSE_ROOT_ID, hidden);
        } else { /* the call failed, or the file still has a name (a rename onto itself) */
            pt_unhide(fs, h->inode->key.dev, h->inode->key.ino);
            hidden[0] = '\0';
        }
    }
    /* Ours: if the guest forgot the file meanwhile, this removes the hidden name again. */
    if (h->inode)
        pt_inode_forget(fs, h->inode->nodeid, 1);
    if (h->fd >= 0)
        close(h->fd);
}

static int do_remove(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
                     int flags, char *hidden)
{
    struct pt_inode *dir;
    struct hide h;
    PT_FDREF(d);
    int ret = begin_name_at(fs, ctx, parent, name, PT_NAME_REMOVE, &dir, &d);

    if (ret < 0)
        return ret;
    hide_begin(fs, d.fd, name, hidden, &h);
    pt_inode_keep_fd(fs, d.fd, name);
    /* The inode stays in the table until the guest forgets it (its O_PATH fd, if it has one,
     * keeps the host inode alive; a handle-only one then gets ESTALE). */
    ret = unlinkat(d.fd, name, flags) < 0 ? -errno : 0;
    hide_end(fs, &h, ret, hidden);
    return ret;
}

int pt_unlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              char *hidden)
{
    return do_remove(fs, ctx, parent, name, 0, hidden);
}

int pt_rmdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name)
{
    return do_remove(fs, ctx, parent, name, AT_REMOVEDIR, NULL);
}

int pt_rename(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t olddir, const char *oldname,
              uint64_t newdir, const char *newname, uint32_t flags, char *hidden)
{
    const uint32_t keeps_target = RENAME_EXCHANGE | RENAME_NOREPLACE;
    struct pt_inode *from, *to;
    struct hide h;
    PT_FDREF(f);
    PT_FDREF(t);
    int ret;

    if (hidden)
        hidden[0] = '\0';
    if (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
        return -EINVAL;
    ret = begin_name(fs, ctx, olddir, oldname, PT_NAME_REMOVE, &from);
    if (ret == 0)
        ret = begin_name(fs, ctx, newdir, newname, PT_NAME_NEW, &to);
    if (ret == 0)
        ret = pt_inode_fd(fs, from, &f);
    if (ret >= 0)
        ret = pt_inode_fd(fs, to, &t);
    if (ret < 0)
        return ret;
    /* Only a rename that may replace a file removes one (EXCHANGE keeps both, NOREPLACE
     * fails instead). */
    hide_begin(fs, t.fd, newname, (flags & keeps_target) ? NULL : hidden, &h);
    if (!(flags & keeps_target))
        pt_inode_keep_fd(fs, t.fd, newname);
    ret = renameat2(f.fd, oldname, t.fd, newname, flags) < 0 ? -errno : 0;
    hide_end(fs, &h, ret, hidden);
    if (ret == 0) { /* the fd cache's places of what moved */
        pt_inode_moved(fs, t.fd, newdir, newname);
        if (flags & RENAME_EXCHANGE)
            pt_inode_moved(fs, f.fd, olddir, oldname);
    }
    return ret;
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
    /* A file the guest unlinked has no link to make another from (its hidden name is the
     * daemon's): what linkat answers for an unlinked file. */
    if (__atomic_load_n(&inode->hidden, __ATOMIC_ACQUIRE))
        return -ENOENT;
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
