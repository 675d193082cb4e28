/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem: attributes (GETATTR, SETATTR), permissions (ACCESS) and the
 * whole file system (STATFS, SYNCFS).
 */
#include "pt_core.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"

int pt_getattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_getattr_in *in, struct fuse_attr_out *out)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    int ret = pt_begin(fs, ctx, nodeid, PT_READS, &inode);

    if (ret == 0)
        ret = pt_inode_fd(fs, inode, &r);
    return ret < 0 ? ret : pt_attr_out(fs, inode, r.fd, out);
}

/*
 * The host owner and group a SETATTR asks for, translated by --translate-uid/gid ((uid_t)-1
 * and (gid_t)-1: unchanged). -EPERM if one is a forbidden guest id: no file may get it.
 */
static int host_owner(const struct pt_fs *fs, const struct fuse_setattr_in *in, uid_t *uid,
                      gid_t *gid)
{
    uint32_t id;
    int ret = 0;

    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (in->valid & FATTR_UID) {
        ret = idmap_to_host(&fs->cfg.uid_map, in->uid, &id);
        *uid = id;
    }
    if (ret == 0 && (in->valid & FATTR_GID)) {
        ret = idmap_to_host(&fs->cfg.gid_map, in->gid, &id);
        *gid = id;
    }
    return ret;
}

static int set_owner(int pfd, uid_t uid, gid_t gid)
{
    if (fchownat(pfd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int set_size(struct pt_fs *fs, const struct pt_inode *inode, int pfd, int fd, uint64_t size)
{
    int ret, own_fd = -1;

    if (size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (fd < 0) {
        if (!S_ISREG(inode->type))
            return S_ISDIR(inode->type) ? -EISDIR : -EINVAL;
        /* Opening for writing is the permission check truncate(2) makes. */
        fd = own_fd = pt_reopen(fs, pfd, O_WRONLY | O_NONBLOCK);
        if (fd < 0)
            return fd;
    }
    ret = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
    if (own_fd >= 0)
        close(own_fd);
    return ret;
}

static struct timespec time_arg(uint32_t valid, uint32_t set_bit, uint32_t now_bit, uint64_t sec,
                                uint32_t nsec)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = UTIME_OMIT};

    if (valid & now_bit) {
        ts.tv_nsec = UTIME_NOW;
    } else if (valid & set_bit) {
        ts.tv_sec = (time_t)sec;
        ts.tv_nsec = nsec;
    }
    return ts;
}

static int set_times(struct pt_fs *fs, int pfd, int fd, const struct fuse_setattr_in *in)
{
    struct timespec ts[2] = {
        time_arg(in->valid, FATTR_ATIME, FATTR_ATIME_NOW, in->atime, in->atimensec),
        time_arg(in->valid, FATTR_MTIME, FATTR_MTIME_NOW, in->mtime, in->mtimensec),
    };
    struct fd_path p;
    int ret;

    if (fd >= 0)
        ret = futimens(fd, ts);
    else /* lands on the inode itself, a symlink included */
        ret = utimensat(fs->proc_self_fd, fd_name(pfd, &p), ts, 0);
    return ret < 0 ? -errno : 0;
}

#define FATTR_CHANGES                                                                              \
    (FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_ATIME | FATTR_MTIME |                 \
     FATTR_ATIME_NOW | FATTR_MTIME_NOW | FATTR_CTIME)

/* The handle fd a SETATTR names with FATTR_FH, or -1. */
static int setattr_fd(struct pt_fs *fs, uint64_t nodeid, const struct fuse_setattr_in *in)
{
    struct pt_handle *h;

    if (!(in->valid & FATTR_FH))
        return -1;
    h = htab_get(fs->handles, in->fh, nodeid);
    if (!h)
        return -EBADF;
    return h->dir ? -1 : h->fd;
}

/*
 * Whether the caller, with its own credentials (this thread's fsuid, fsgid and groups), may
 * write the regular file: through the request's handle if that was opened for writing, else
 * as an open for writing would be checked (AT_EACCESS: the fs ids, not the real ones).
 */
static bool caller_may_write(struct pt_fs *fs, int pfd, int fd)
{
    struct fd_path p;

    if (fd >= 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_ACCMODE) != O_RDONLY)
            return true;
    }
    return faccessat(fs->proc_self_fd, fd_name(pfd, &p), W_OK, AT_EACCESS) == 0;
}

/*
 * A mode change that only drops S_ISUID/S_ISGID. Without FUSE_HANDLE_KILLPRIV_V2 the guest
 * kernel clears those bits itself before a write or truncate by someone other than the owner,
 * with a SETATTR sent as that writer; the host would refuse it a chmod. Locally the kernel
 * clears them on such a write, so here they are cleared with the daemon's own credentials, but
 * only in that case, checked on the host (a hostile guest kernel checks nothing): a regular
 * file the caller may write with its own credentials, i.e. one it could have the host clear
 * the bits of by writing it. Never a directory (no write clears a directory's S_ISGID) nor a
 * file the caller cannot write.
 */
static int set_mode_killpriv(struct pt_fs *fs, int pfd, int fd, mode_t mode)
{
    struct statx stx;
    int ret = pt_statx(pfd, &stx);
    mode_t cur = stx.stx_mode & 07777;

    if (ret < 0 || (mode & 07777) == cur || (mode & 07777) != (cur & ~(mode_t)(S_ISUID | S_ISGID)))
        return -EPERM;
    if (!S_ISREG(stx.stx_mode) || !caller_may_write(fs, pfd, fd))
        return -EPERM;
    {
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0)
            ret = pt_set_mode(fs, pfd, fd, mode);
    }
    return ret;
}

static int apply_setattr(struct pt_fs *fs, const struct pt_ctx *ctx, const struct pt_inode *inode,
                         int pfd, int fd, const struct fuse_setattr_in *in)
{
    uint32_t valid = in->valid;
    uid_t uid;
    gid_t gid;
    /* Translated first, so that a refused owner leaves the inode untouched. */
    int ret = host_owner(fs, in, &uid, &gid);

    if (ret == 0 && (valid & FATTR_MODE)) {
        ret = pt_set_mode(fs, pfd, fd, in->mode);
        if (ret == -EPERM && fs->switch_creds)
            ret = set_mode_killpriv(fs, pfd, fd, in->mode);
    }
    if (ret == 0 && (valid & (FATTR_UID | FATTR_GID)))
        ret = set_owner(pfd, uid, gid);
    if (ret == 0 && (valid & FATTR_SIZE)) {
        ret = set_size(fs, inode, pfd, fd, in->size);
        if (ret == 0 && (valid & FATTR_KILL_SUIDGID) && !(valid & FATTR_MODE))
            pt_kill_suidgid_at(fs, inode, pfd, fd);
    }
    /* FATTR_CTIME cannot be set on Linux; every change above already updated ctime. */
    if (ret == 0 && (valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)))
        ret = set_times(fs, pfd, fd, in);
    return ret;
}

int pt_setattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_setattr_in *in, struct fuse_attr_out *out)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    /* Only a SETATTR that changes something modifies (the guest may send one that does not). */
    enum pt_intent intent = (in->valid & FATTR_CHANGES) ? PT_MODIFIES : PT_READS;
    int fd, ret = pt_begin(fs, ctx, nodeid, intent, &inode);

    if (ret < 0)
        return ret;
    fd = setattr_fd(fs, nodeid, in);
    if (fd == -EBADF)
        return fd;
    ret = pt_inode_fd(fs, inode, &r);
    if (ret >= 0)
        ret = apply_setattr(fs, ctx, inode, r.fd, fd, in);
    return ret < 0 ? ret : pt_attr_out(fs, inode, r.fd, out);
}

int pt_statfs(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
              struct fuse_statfs_out *out)
{
    struct pt_inode *inode;
    struct statvfs sv;
    PT_FDREF(r);
    int ret = pt_begin(fs, ctx, nodeid, PT_READS, &inode);

    if (ret == 0)
        ret = pt_inode_fd(fs, inode, &r);
    if (ret < 0)
        return ret;
    if (fstatvfs(r.fd, &sv) < 0) /* O_PATH fds work with fstatfs since Linux 3.12 */
        return -errno;
    memset(out, 0, sizeof(*out));
    out->st.blocks = sv.f_blocks;
    out->st.bfree = sv.f_bfree;
    out->st.bavail = sv.f_bavail;
    out->st.files = sv.f_files;
    out->st.ffree = sv.f_ffree;
    out->st.bsize = sv.f_bsize;
    out->st.namelen = sv.f_namemax;
    out->st.frsize = sv.f_frsize;
    return 0;
}

int pt_access(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
              const struct fuse_access_in *in)
{
    struct pt_inode *inode;
    struct fd_path p;
    PT_FDREF(r);
    int ret;

    if (in->mask & ~(uint32_t)(R_OK | W_OK | X_OK))
        return -EINVAL;
    ret = pt_begin(fs, ctx, nodeid, (in->mask & W_OK) ? PT_MODIFIES_UNLESS_SYMLINK : PT_READS,
                   &inode);
    if (ret < 0)
        return ret;
    ret = pt_inode_fd(fs, inode, &r);
    if (ret < 0)
        return ret;
    /* AT_EACCESS: check with this thread's fsuid/fsgid (the caller's), not the real ids. */
    if (faccessat(fs->proc_self_fd, fd_name(r.fd, &p), in->mask, AT_EACCESS) < 0)
        return -errno;
    return 0;
}

int pt_syncfs(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    int fd, ret;

    /*
     * syncfs needs no permission, but syncfs(2) needs a real fd: reopen as the daemon. Safe:
     * only a directory or regular file is opened (anything else syncs the share's root
     * instead), read-only and non-blocking, and the fd is closed before the reply.
     */
    ret = pt_begin(fs, NULL, nodeid, PT_READS, &inode);
    if (ret < 0)
        return ret;
    if (!S_ISDIR(inode->type) && !S_ISREG(inode->type))
        inode = fs->root;
    ret = pt_inode_fd(fs, inode, &r);
    if (ret < 0)
        return ret;
    fd = pt_reopen(fs, r.fd, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return fd;
    ret = syncfs(fd) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

int pt_name_ids(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
                uint64_t *dev, uint64_t *ino)
{
    struct pt_inode *dir;
    struct statx stx;
    struct itab_key key;
    PT_FDREF(r);
    int ret = pt_check_name(name, PT_NAME_NEW);

    if (ret == 0)
        ret = pt_begin_dir(fs, ctx, parent, PT_READS, &dir);
    if (ret == 0)
        ret = pt_inode_fd(fs, dir, &r);
    if (ret < 0)
        return ret;
    if (statx(r.fd, name, AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT, STATX_TYPE | STATX_INO,
              &stx) < 0)
        return -errno;
    pt_key_from_statx(&stx, &key);
    *dev = key.dev;
    *ino = key.ino;
    return 0;
}
