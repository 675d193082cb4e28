/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem: lifetime, shared helpers, entries, attributes and the namespace
 * operations. Files are in passthrough_file.c, directories in passthrough_dir.c and extended
 * attributes in passthrough_xattr.c.
 *
 * Every inode is reached through an O_PATH|O_NOFOLLOW fd opened relative to its parent, so no
 * operation resolves more than one name (checked by pt_check_name) below an fd that lies
 * inside the share, and no symlink is followed on the host. Where a syscall needs a real fd or
 * a path, the O_PATH fd is reopened through /proc/self/fd, which resolves to the inode itself.
 */
#include "passthrough_internal.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"

/* Entry and attribute timeouts per cache mode, as the Rust virtiofsd sets them. */
static uint64_t cache_timeout(enum cache_mode mode)
{
    switch (mode) {
    case CACHE_NEVER:
        return 0;
    case CACHE_AUTO:
        return 1;
    case CACHE_METADATA:
    case CACHE_ALWAYS:
    default:
        return 86400;
    }
}

int pt_statx(int fd, struct statx *stx)
{
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
              STATX_BASIC_STATS | STATX_MNT_ID, stx) < 0)
        return -errno;
    return 0;
}

static void key_from_statx(const struct statx *stx, struct itab_key *key)
{
    key->dev = makedev(stx->stx_dev_major, stx->stx_dev_minor);
    key->ino = stx->stx_ino;
    /* Kernels before 5.8 cannot tell mounts apart; (dev, ino) is still a usable key. */
    key->mnt_id = (stx->stx_mask & STATX_MNT_ID) ? stx->stx_mnt_id : 0;
}

void pt_fill_attr(const struct pt_fs *fs, const struct statx *stx, struct fuse_attr *attr)
{
    memset(attr, 0, sizeof(*attr));
    attr->ino = stx->stx_ino;
    attr->size = stx->stx_size;
    attr->blocks = stx->stx_blocks;
    attr->atime = stx->stx_atime.tv_sec;
    attr->atimensec = stx->stx_atime.tv_nsec;
    attr->mtime = stx->stx_mtime.tv_sec;
    attr->mtimensec = stx->stx_mtime.tv_nsec;
    attr->ctime = stx->stx_ctime.tv_sec;
    attr->ctimensec = stx->stx_ctime.tv_nsec;
    attr->mode = stx->stx_mode;
    attr->nlink = stx->stx_nlink;
    /* Every attribute the guest sees passes here (entries, GETATTR, SETATTR, READDIRPLUS). */
    attr->uid = idmap_to_guest(&fs->cfg.uid_map, stx->stx_uid);
    attr->gid = idmap_to_guest(&fs->cfg.gid_map, stx->stx_gid);
    /* glibc's makedev truncated to 32 bits is the kernel's new_encode_dev, which FUSE uses. */
    attr->rdev = (uint32_t)makedev(stx->stx_rdev_major, stx->stx_rdev_minor);
    attr->blksize = stx->stx_blksize;
}

int pt_check_name(const char *name)
{
    size_t len;

    if (!name)
        return -EINVAL;
    len = strnlen(name, NAME_MAX + 1);
    if (len == 0 || memchr(name, '/', len))
        return -EINVAL;
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static bool is_dot_or_dotdot(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/*
 * Names an operation creates, removes or renames: "." and ".." are refused outright so that
 * no such operation can ever act on the share's parent (the guest's VFS never sends them).
 */
static int check_new_name(const char *name)
{
    int ret = pt_check_name(name);

    if (ret == 0 && is_dot_or_dotdot(name))
        ret = -EINVAL;
    return ret;
}

int pt_enter(struct pt_fs *fs, const struct pt_ctx *ctx)
{
    uint32_t uid, gid;
    int ret;

    if (!ctx)
        return fs->switch_creds ? creds_set(0, 0) : 0;
    /* Checked even when not switching: a forbidden caller is refused either way. */
    ret = idmap_to_host(&fs->cfg.uid_map, ctx->uid, &uid);
    if (ret == 0)
        ret = idmap_to_host(&fs->cfg.gid_map, ctx->gid, &gid);
    if (ret < 0 || !fs->switch_creds)
        return ret;
    /* New files get the fsuid/fsgid as owner, so creation needs nothing more. */
    return creds_set(uid, gid);
}

/* Adds gid to the n groups in out unless it is there already; returns the new count. */
static int add_group(gid_t *out, int n, gid_t gid)
{
    for (int i = 0; i < n; i++)
        if (out[i] == gid)
            return n;
    out[n] = gid;
    return n + 1;
}

/* Adds the host group of inode nodeid to out (once). */
static int add_inode_group(struct pt_fs *fs, uint64_t nodeid, gid_t *out, int n)
{
    struct pt_inode *inode = nodeid ? itab_get(fs->inodes, nodeid) : NULL;
    struct statx stx;
    PT_FDREF(r);

    if (!inode || pt_inode_fd(fs, inode, &r) < 0 || pt_statx(r.fd, &stx) < 0)
        return n;
    return add_group(out, n, stx.stx_gid);
}

/*
 * With FUSE_POSIX_ACL, adds the groups named in the access ACL of inode nodeid (ACL_GROUP
 * entries) to out, each once, while there is room (one slot is kept for a SETATTR's group):
 * the guest kernel may have granted the caller access as a member of one of them.
 */
static int add_acl_groups(struct pt_fs *fs, uint64_t nodeid, gid_t *out, int n)
{
    struct pt_inode *inode = nodeid && fs->posix_acl ? itab_get(fs->inodes, nodeid) : NULL;
    struct {
        uint16_t tag, perm;
        uint32_t id;
    } e[64];
    char value[4 + sizeof(e)];
    struct fd_path p;
    ssize_t len;
    PT_FDREF(r);

    if (!inode || pt_inode_fd(fs, inode, &r) < 0)
        return n;
    /* The ACL is the host's, in the kernel's posix_acl_xattr format (a 4-byte version first). */
    len = getxattr(fd_name(r.fd, &p), "system.posix_acl_access", value, sizeof(value));
    if (len < 4)
        return n;
    memcpy(e, value + 4, (size_t)len - 4);
    for (size_t i = 0; i < ((size_t)len - 4) / sizeof(e[0]) && n < PT_RETRY_GROUPS_MAX - 1; i++)
        if (e[i].tag == 0x08) /* ACL_GROUP */
            n = add_group(out, n, e[i].id);
    return n;
}

/* True if this process's id map file (uid_map or gid_map) in /proc is the initial namespace's:
 * every id is itself. */
static bool ids_unmapped(struct pt_fs *fs, const char *map)
{
    char buf[128], path[32], *nl;
    unsigned long inside, outside, count;
    int fd;
    ssize_t n;

    /* Relative to /proc/self/fd: the sandbox has no /proc path left to open. */
    snprintf(path, sizeof(path), "../%s", map);
    fd = openat(fs->proc_self_fd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    nl = strchr(buf, '\n');
    if (nl && nl[1] != '\0')
        return false; /* more than one range */
    return sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 &&
           outside == 0 && count == 4294967295UL;
}

/*
 * THE rule for the supplementary-group retry (pt_retry_groups), decided once at start-up.
 *
 * The retry adds groups the guest kernel's default_permissions check is trusted to have
 * verified; a hostile guest kernel verifies nothing, so the retry is only sound where it
 * cannot grant more than the guest could take anyway. That holds when guest ids are host ids:
 * the daemon runs as root in the initial user namespace and no --translate-uid/gid rule
 * exists, so a guest may send any uid, 0 included, and act as it. There the retry emulates the
 * caller's supplementary groups (which FUSE does not carry) for ordinary setups.
 *
 * Once ids are translated (--translate-uid/gid: squash, forbid, ranges) or mapped by a user
 * namespace (the unprivileged sandbox's --uid-map/--gid-map, or a daemon started in a
 * container), the mapping is what bounds the host identities a guest may act as, and the
 * retry would go past it: squash-guest:0:1000:4294967295 let the guest read a root:4242 0640
 * file as host uid 1000, which is not in group 4242. The retry is off there. (Resolving the
 * mapped uids' real host groups would need NSS at start-up for every id a range may name.)
 */
static bool group_retry_sound(struct pt_fs *fs)
{
    return fs->switch_creds && idmap_is_identity(&fs->cfg.uid_map) &&
           idmap_is_identity(&fs->cfg.gid_map) && ids_unmapped(fs, "uid_map") &&
           ids_unmapped(fs, "gid_map");
}

int pt_retry_groups(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t nodeid2,
                    const struct fuse_setattr_in *sa, gid_t out[PT_RETRY_GROUPS_MAX])
{
    uint32_t uid, gid;
    int n = 0;

    if (!fs->group_retry || idmap_to_host(&fs->cfg.uid_map, ctx->uid, &uid) < 0 || uid == 0)
        return 0;
    n = add_inode_group(fs, nodeid, out, n);
    n = add_inode_group(fs, nodeid2, out, n);
    n = add_acl_groups(fs, nodeid, out, n);
    n = add_acl_groups(fs, nodeid2, out, n);
    if (sa && (sa->valid & FATTR_GID) && idmap_to_host(&fs->cfg.gid_map, sa->gid, &gid) == 0)
        out[n++] = gid;
    return n;
}

struct pt_inode *pt_inode_get(struct pt_fs *fs, uint64_t nodeid)
{
    return itab_get(fs->inodes, nodeid);
}

int pt_begin(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, struct pt_inode **inode)
{
    int ret = pt_enter(fs, ctx);

    if (ret < 0)
        return ret;
    *inode = itab_get(fs->inodes, nodeid);
    return *inode ? 0 : -EBADF;
}

/* pt_begin for a directory that names are resolved in. */
static int begin_dir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                     struct pt_inode **dir)
{
    int ret = pt_begin(fs, ctx, nodeid, dir);

    if (ret == 0 && !S_ISDIR((*dir)->type))
        ret = -ENOTDIR;
    return ret;
}

int pt_reopen(struct pt_fs *fs, int path_fd, int flags)
{
    struct fd_path p;
    int fd;

    /*
     * O_NOFOLLOW would refuse the magic link itself; it never follows further anyway.
     * O_NOCTTY always: were a terminal ever reopened, it must not become the daemon's
     * controlling terminal (whose hangup would signal the daemon).
     */
    flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL);
    fd = openat(fs->proc_self_fd, fd_name(path_fd, &p), flags | O_NOCTTY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The FUSE_ATTR_SUBMOUNT rule: a directory on another mount than its parent. */
static bool is_submount(const struct pt_fs *fs, const struct pt_inode *parent,
                        const struct itab_key *key, mode_t mode)
{
    return fs->cfg.announce_submounts && fs->submounts && parent && S_ISDIR(mode) &&
           (parent->key.dev != key->dev || parent->key.mnt_id != key->mnt_id);
}

static void fill_entry(const struct pt_fs *fs, const struct pt_inode *inode,
                       const struct statx *stx, struct fuse_entry_out *out)
{
    memset(out, 0, sizeof(*out));
    out->nodeid = inode->nodeid;
    out->generation = inode->generation;
    out->entry_valid = fs->timeout;
    out->attr_valid = fs->timeout;
    pt_fill_attr(fs, stx, &out->attr);
}

/* What a lookup found: its O_PATH fd and, once asked for, its file handle. */
struct found {
    int fd;
    int encoded; /* 1: buf holds the handle; -errno: there is none; 0: not asked yet */
    struct fh_buf buf;
};

static int found_handle(struct found *f)
{
    if (f->encoded == 0) {
        int ret = fh_encode(f->fd, &f->buf);
        f->encoded = ret < 0 ? ret : 1;
    }
    return f->encoded;
}

/*
 * itab_stale_fn: an inode that keeps an fd pins its host inode, whose number thus cannot be
 * reused; a handle-only one is stale when the file found under its key has another handle.
 */
static bool inode_is_stale(const struct pt_inode *inode, void *arg)
{
    struct found *f = arg;

    return inode->fh && found_handle(f) == 1 && !fh_same(inode->fh, &f->buf);
}

/* Whether a new inode should be handle-only. */
static bool wants_handle(const struct pt_fs *fs)
{
    switch (fs->fh_mode) {
    case FH_PREFER:
    case FH_MANDATORY:
        return true;
    case FH_AUTO:
        return itab_fd_inodes() >= fs->fd_budget;
    case FH_NEVER:
    default:
        return false;
    }
}

/*
 * What a mount fd can be opened from if f's mount has none yet: a directory (the file itself,
 * or its parent on the same mount), else the file if regular. Never a special file or symlink.
 */
static int mount_source(const struct pt_inode *parent, const struct found *f,
                        const struct statx *stx)
{
    if (S_ISDIR(stx->stx_mode))
        return f->fd;
    if (parent && parent->fd >= 0 && S_ISDIR(parent->type) && (stx->stx_mask & STATX_MNT_ID) &&
        parent->key.mnt_id == (uint64_t)f->buf.mnt_id)
        return parent->fd;
    return S_ISREG(stx->stx_mode) ? f->fd : -1;
}

/* Logs, once per mount, that a file system gives no usable handles. */
static void handles_unusable(const struct pt_fs *fs, int mnt_id, int err)
{
    if (fs->fh_mode == FH_MANDATORY)
        log_error("mount %d: no usable file handles (%s); lookups there fail", mnt_id,
                  strerror(err));
    else if (fs->fh_mode == FH_PREFER)
        log_warn("mount %d: no usable file handles (%s); using O_PATH fds there", mnt_id,
                 strerror(err));
    else
        log_debug("mount %d: no usable file handles (%s)", mnt_id, strerror(err));
}

/*
 * The file handle for a new inode, or NULL (and 0) to keep its fd. As in the Rust virtiofsd,
 * under FH_PREFER only "no handles on this file system" (EOPNOTSUPP, EOVERFLOW) falls back to
 * an fd and other failures go to the guest; FH_MANDATORY fails on every one; FH_AUTO, which
 * the user did not ask for, falls back on every one.
 */
static int new_handle(struct pt_fs *fs, const struct pt_inode *parent, struct found *f,
                      const struct statx *stx, struct pt_fhandle **out)
{
    struct fh_mount *m;
    bool created;
    int ret = found_handle(f);

    *out = NULL;
    if (ret < 0) {
        bool none = ret == -EOPNOTSUPP || ret == -EOVERFLOW;
        int mnt_id = (stx->stx_mask & STATX_MNT_ID) ? (int)stx->stx_mnt_id : 0;

        if (none && fh_mount_fail(&fs->mounts, mnt_id, -ret))
            handles_unusable(fs, mnt_id, -ret);
        if (fs->fh_mode == FH_MANDATORY || (fs->fh_mode == FH_PREFER && !none))
            return ret;
        return 0;
    }
    ret = fh_mount_get(&fs->mounts, &f->buf, mount_source(parent, f, stx), fs->proc_self_fd, &m,
                       &created);
    if (ret < 0) {
        if (created)
            handles_unusable(fs, f->buf.mnt_id, -ret);
        return fs->fh_mode == FH_MANDATORY ? ret : 0;
    }
    *out = fh_new(m, &f->buf);
    if (!*out) {
        fh_mount_put(m);
        return -ENOMEM;
    }
    return 0;
}

int pt_inode_fd_open(struct pt_fs *fs, const struct pt_inode *inode, struct pt_fdref *ref)
{
    int fd = inode->fh ? fh_open(inode->fh, O_PATH) : -EBADF;

    if (fd < 0)
        return fd;
    ref->fd = fd;
    ref->owned = true;
    return fd;
}

int pt_entry_from_fd(struct pt_fs *fs, const struct pt_inode *parent, int fd,
                     struct fuse_entry_out *out)
{
    struct found f = {.fd = fd};
    struct pt_fhandle *fh = NULL;
    struct pt_inode *inode;
    struct itab_key key;
    struct statx stx;
    int ret = pt_statx(fd, &stx);

    if (ret < 0) {
        close(fd);
        return ret;
    }
    key_from_statx(&stx, &key);
    inode = itab_find_ref(fs->inodes, &key, inode_is_stale, &f);
    if (inode) {
        close(fd);
    } else {
        if (wants_handle(fs))
            ret = new_handle(fs, parent, &f, &stx, &fh);
        if (ret < 0 || fh) {
            close(fd); /* a handle-only inode keeps no fd */
            fd = -1;
        }
        if (ret == 0)
            ret = itab_insert(fs->inodes, &key, fd, fh, stx.stx_mode, &inode);
        if (ret < 0)
            return ret;
    }
    fill_entry(fs, inode, &stx, out);
    if (is_submount(fs, parent, &key, stx.stx_mode))
        out->attr.flags |= FUSE_ATTR_SUBMOUNT;
    return 0;
}

/* The entry of dir itself ("." anywhere, ".." of the root), with one more reference. */
static int self_entry(struct pt_fs *fs, struct pt_inode *dir, int dir_fd,
                      struct fuse_entry_out *out)
{
    struct statx stx;
    int ret = pt_statx(dir_fd, &stx);

    if (ret < 0)
        return ret;
    if (!itab_ref(dir))
        return -EBADF; /* forgotten concurrently */
    fill_entry(fs, dir, &stx, out);
    return 0;
}

int pt_do_lookup_at(struct pt_fs *fs, struct pt_inode *parent, int parent_fd, const char *name,
                    struct fuse_entry_out *out)
{
    bool dotdot = strcmp(name, "..") == 0;
    int fd;

    if (strcmp(name, ".") == 0 || (dotdot && parent == fs->root))
        return self_entry(fs, parent, parent_fd, out);
    fd = openat(parent_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* The parent of a directory is not a submount of it. */
    return pt_entry_from_fd(fs, dotdot ? NULL : parent, fd, out);
}

int pt_do_lookup(struct pt_fs *fs, struct pt_inode *parent, const char *name,
                 struct fuse_entry_out *out)
{
    PT_FDREF(r);
    int fd = pt_inode_fd(fs, parent, &r);

    return fd < 0 ? fd : pt_do_lookup_at(fs, parent, fd, name, out);
}

/* Lifetime. */

static int open_root(struct pt_fs *fs)
{
    struct itab_key key;
    struct statx stx;
    int ret, fd = open(fs->cfg.shared_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        ret = -errno;
        log_error("cannot open shared directory %s: %s", fs->cfg.shared_dir, strerror(errno));
        return ret;
    }
    ret = pt_statx(fd, &stx);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    key_from_statx(&stx, &key);
    return itab_insert_root(fs->inodes, &key, fd, stx.stx_mode, &fs->root);
}

/*
 * FH_AUTO's budget: half the open-file limit (raised by main before pt_new) for inodes' fds,
 * leaving the rest to open files and directories, queues and guest memory.
 */
static unsigned long fd_budget(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return ULONG_MAX / 2;
    return (unsigned long)(rl.rlim_cur / 2);
}

/*
 * Process-wide setup for acting as the guest's callers: no supplementary groups (root's would
 * grant every caller group access), and no umask (the guest kernel already applied the
 * caller's, or sends it for us to apply with FUSE_DONT_MASK).
 */
static void setup_process(struct pt_fs *fs)
{
    umask(0);
    fs->switch_creds = geteuid() == 0;
    if (!fs->switch_creds)
        return;
    if (setgroups(0, NULL) < 0)
        log_warn("cannot drop supplementary groups: %s", strerror(errno));
    if (creds_set(0, 0) < 0)
        log_warn("cannot reset the filesystem credentials of this thread");
}

int pt_new(const struct pt_config *cfg, struct pt_fs **out)
{
    return pt_new_with_proc(cfg, -1, out);
}

int pt_new_with_proc(const struct pt_config *cfg, int proc_self_fd, struct pt_fs **out)
{
    struct pt_fs *fs;
    int ret;

    if (!cfg || !cfg->shared_dir) {
        if (proc_self_fd >= 0)
            close(proc_self_fd);
        return -EINVAL;
    }
    fs = calloc(1, sizeof(*fs));
    if (!fs) {
        if (proc_self_fd >= 0)
            close(proc_self_fd);
        return -ENOMEM;
    }
    fh_mounts_init(&fs->mounts);
    fs->cfg = *cfg;
    fs->cfg.uid_map = fs->cfg.gid_map = (struct idmap){0}; /* our own copies, below */
    fs->proc_self_fd = proc_self_fd;
    fs->timeout = cache_timeout(cfg->cache);
    fs->cfg.shared_dir = strdup(cfg->shared_dir);
    ret = fs->cfg.shared_dir ? 0 : -ENOMEM;
    if (ret == 0)
        ret = idmap_copy(&fs->cfg.uid_map, &cfg->uid_map);
    if (ret == 0)
        ret = idmap_copy(&fs->cfg.gid_map, &cfg->gid_map);
    if (ret == 0)
        ret = itab_new(&fs->inodes);
    if (ret == 0)
        ret = htab_new(&fs->handles);
    if (ret == 0)
        ret = pt_locks_new(&fs->locks);
    if (ret == 0) {
        setup_process(fs);
        if (fs->proc_self_fd < 0)
            fs->proc_self_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fs->proc_self_fd < 0 || fchdir(fs->proc_self_fd) < 0) {
            ret = -errno;
            log_error("cannot open /proc/self/fd: %s", strerror(errno));
        }
    }
    if (ret == 0)
        ret = open_root(fs);
    if (ret < 0) {
        pt_free(fs);
        return ret;
    }
    fs->group_retry = group_retry_sound(fs);
    if (fs->switch_creds && !fs->group_retry)
        log_info("ids are translated or mapped: no supplementary-group retry");
    fs->fd_budget = fd_budget();
    *out = fs;
    return 0;
}

int pt_setup_file_handles(struct pt_fs *fs)
{
    static const char *const names[] = {"never", "automatic", "prefer", "mandatory"};
    enum inode_fh_mode want = fs->cfg.inode_file_handles;
    struct fh_buf b;
    bool created;
    int ret;

    fs->fh_mode = FH_NEVER;
    if (fs->root_mount)
        fh_mount_put(fs->root_mount);
    fs->root_mount = NULL;
    if (want == FH_NEVER)
        return 0;
    /* As the Rust virtiofsd: a handle of the shared directory must open again. */
    ret = fh_encode(fs->root->fd, &b);
    if (ret == 0)
        ret = fh_mount_get(&fs->mounts, &b, fs->root->fd, fs->proc_self_fd, &fs->root_mount,
                           &created);
    if (ret < 0) {
        const char *why = ret == -EPERM ? " (opening file handles needs CAP_DAC_READ_SEARCH: run "
                                          "as root, without --modcaps=-dac_read_search)"
                                        : "";
        if (want == FH_MANDATORY) {
            log_error("--inode-file-handles=mandatory: file handles do not work for the shared "
                      "directory: %s%s",
                      strerror(-ret), why);
            return ret;
        }
        if (want == FH_PREFER)
            log_warn("--inode-file-handles=prefer: file handles do not work for the shared "
                     "directory (%s%s); using O_PATH fds",
                     strerror(-ret), why);
        else
            log_debug("file handles do not work for the shared directory (%s); inodes keep "
                      "O_PATH fds",
                      strerror(-ret));
        return 0;
    }
    fs->fh_mode = want;
    if (want == FH_AUTO)
        log_debug("inode file handles: automatic, beyond %lu inodes with an fd", fs->fd_budget);
    else
        log_debug("inode file handles: %s", names[want]);
    return 0;
}

void pt_free(struct pt_fs *fs)
{
    if (!fs)
        return;
    pt_locks_free(fs->locks); /* its waits use handles' and inodes' files */
    if (fs->handles)
        htab_free(fs->handles);
    if (fs->inodes)
        itab_free(fs->inodes); /* frees the handles: every mount reference but the pin */
    if (fs->root_mount)
        fh_mount_put(fs->root_mount);
    fh_mounts_destroy(&fs->mounts);
    if (fs->proc_self_fd >= 0)
        close(fs->proc_self_fd);
    free((char *)fs->cfg.shared_dir);
    idmap_free(&fs->cfg.uid_map);
    idmap_free(&fs->cfg.gid_map);
    free(fs);
}

const struct pt_config *pt_get_config(const struct pt_fs *fs)
{
    return &fs->cfg;
}

void pt_init(struct pt_fs *fs, uint64_t negotiated_flags)
{
    fs->writeback = negotiated_flags & FUSE_WRITEBACK_CACHE;
    fs->submounts = negotiated_flags & FUSE_SUBMOUNTS;
    fs->dont_mask = negotiated_flags & FUSE_DONT_MASK;
    fs->posix_acl = negotiated_flags & FUSE_POSIX_ACL;
}

/*
 * Drops every inode but the root, and every handle. Also safe while ops run on other queues:
 * the tables remove each object exactly once and free it after a grace period.
 */
void pt_reset(struct pt_fs *fs)
{
    pt_locks_reset(fs->locks);
    htab_clear(fs->handles);
    itab_clear(fs->inodes, 2);
    /* Close the fds now, unless called inside a read-side section (that would deadlock). */
    if (!rcu_read_ongoing())
        rcu_barrier();
}

/* Entries and attributes. */

int pt_lookup(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent, const char *name,
              struct fuse_entry_out *out)
{
    struct pt_inode *dir;
    int ret = pt_check_name(name);

    if (ret == 0)
        ret = begin_dir(fs, ctx, parent, &dir);
    return ret < 0 ? ret : pt_do_lookup(fs, dir, name, out);
}

void pt_forget(struct pt_fs *fs, uint64_t nodeid, uint64_t nlookup)
{
    itab_forget(fs->inodes, nodeid, nlookup);
    pt_locks_forget(fs, nodeid);
}

/* The attribute reply from pfd, the inode's O_PATH fd. */
static int attr_out(struct pt_fs *fs, int pfd, struct fuse_attr_out *out)
{
    struct statx stx;
    int ret = pt_statx(pfd, &stx);

    if (ret < 0)
        return ret;
    memset(out, 0, sizeof(*out));
    out->attr_valid = fs->timeout;
    pt_fill_attr(fs, &stx, &out->attr);
    return 0;
}

int pt_getattr(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_getattr_in *in, struct fuse_attr_out *out)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    int ret = pt_begin(fs, ctx, nodeid, &inode);

    if (ret == 0)
        ret = pt_inode_fd(fs, inode, &r);
    return ret < 0 ? ret : attr_out(fs, r.fd, out);
}

/* pfd: the inode's O_PATH fd; fd: an open fd of it, or -1 (as in the helpers below). */
static int set_mode(struct pt_fs *fs, int pfd, int fd, mode_t mode)
{
    struct fd_path p;
    int ret;

    mode &= 07777;
    if (fd >= 0)
        ret = fchmod(fd, mode);
    else /* follows only the magic link: a symlink gets EOPNOTSUPP, like lchmod */
        ret = fchmodat(fs->proc_self_fd, fd_name(pfd, &p), mode, 0);
    return ret < 0 ? -errno : 0;
}

/* pt_kill_suidgid with the inode's O_PATH fd (pfd) at hand; statx on fd when open. */
static void kill_suidgid(struct pt_fs *fs, const struct pt_inode *inode, int pfd, int fd)
{
    struct statx stx;
    mode_t mode, kill = 0;

    if (pt_statx(fd >= 0 ? fd : pfd, &stx) < 0 || !S_ISREG(stx.stx_mode))
        return;
    mode = stx.stx_mode & 07777;
    if (mode & S_ISUID)
        kill |= S_ISUID;
    /* S_ISGID without group execute means mandatory locking, not set-group-ID. */
    if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
        kill |= S_ISGID;
    /* An unprivileged caller cannot chmod others' files, but the kernel clears the bits on
     * its write or truncate anyway, because its fsuid lacks CAP_FSETID. */
    if (kill && set_mode(fs, pfd, fd, mode & ~kill) < 0)
        log_debug("cannot clear set-id bits of inode %llu", (unsigned long long)inode->nodeid);
}

void pt_kill_suidgid(struct pt_fs *fs, const struct pt_inode *inode, int fd)
{
    PT_FDREF(r);

    /* With an open fd, the inode's own fd is not needed (no handle to open). */
    if (fd >= 0 || pt_inode_fd(fs, inode, &r) >= 0)
        kill_suidgid(fs, inode, r.fd, fd);
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
static int set_mode_killpriv(struct pt_fs *fs, const struct pt_ctx *ctx, int pfd, int fd,
                             mode_t mode)
{
    struct statx stx;
    int ret = pt_statx(pfd, &stx);
    mode_t cur = stx.stx_mode & 07777;

    if (ret < 0 || (mode & 07777) == cur || (mode & 07777) != (cur & ~(mode_t)(S_ISUID | S_ISGID)))
        return -EPERM;
    if (!S_ISREG(stx.stx_mode) || !caller_may_write(fs, pfd, fd))
        return -EPERM;
    ret = pt_enter(fs, NULL);
    if (ret == 0)
        ret = set_mode(fs, pfd, fd, mode);
    int back = pt_enter(fs, ctx);
    return ret < 0 ? ret : back;
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
        ret = set_mode(fs, pfd, fd, in->mode);
        if (ret == -EPERM && fs->switch_creds)
            ret = set_mode_killpriv(fs, ctx, pfd, fd, in->mode);
    }
    if (ret == 0 && (valid & (FATTR_UID | FATTR_GID)))
        ret = set_owner(pfd, uid, gid);
    if (ret == 0 && (valid & FATTR_SIZE)) {
        ret = set_size(fs, inode, pfd, fd, in->size);
        if (ret == 0 && (valid & FATTR_KILL_SUIDGID) && !(valid & FATTR_MODE))
            kill_suidgid(fs, inode, pfd, fd);
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
    int fd, ret = pt_begin(fs, ctx, nodeid, &inode);

    if (ret < 0)
        return ret;
    if (fs->cfg.readonly && (in->valid & FATTR_CHANGES))
        return -EROFS;
    fd = setattr_fd(fs, nodeid, in);
    if (fd == -EBADF)
        return fd;
    ret = pt_inode_fd(fs, inode, &r);
    if (ret >= 0)
        ret = apply_setattr(fs, ctx, inode, r.fd, fd, in);
    return ret < 0 ? ret : attr_out(fs, r.fd, out);
}

ssize_t pt_readlink(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, char *buf,
                    size_t size)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    ssize_t n;
    int ret = pt_begin(fs, ctx, nodeid, &inode);

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

/* Namespace operations. */

/* Common start of the operations that create name in parent. */
static int begin_create(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t parent,
                        const char *name, struct pt_inode **dir)
{
    int ret = check_new_name(name);

    if (ret == 0 && fs->cfg.readonly)
        ret = -EROFS;
    if (ret == 0)
        ret = begin_dir(fs, ctx, parent, dir);
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

/* This thread has its own umask (unshare(CLONE_FS)), so setting it affects no other thread. */
static __thread bool own_umask;

mode_t pt_umask_begin(struct pt_fs *fs, uint32_t mode, uint32_t umask_bits)
{
    static atomic_bool warned;

    if (!fs->dont_mask)
        return mode;
    if (fs->posix_acl) {
        if (!own_umask && unshare(CLONE_FS) == 0)
            own_umask = true;
        if (own_umask) {
            umask(umask_bits & 0777);
            return mode;
        }
        if (!atomic_exchange(&warned, true))
            log_warn("cannot give a thread its own umask (%s): the guest's umask is applied "
                     "even under a default ACL",
                     strerror(errno));
    }
    return mode & ~umask_bits;
}

void pt_umask_end(struct pt_fs *fs)
{
    if (fs->dont_mask && fs->posix_acl && own_umask)
        umask(0);
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
        ret = check_new_name(newname);
    if (ret == 0)
        ret = begin_dir(fs, ctx, newdir, &to);
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
        ret = pt_begin(fs, ctx, nodeid, &inode);
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

/* Whole filesystem and permissions. */

int pt_statfs(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
              struct fuse_statfs_out *out)
{
    struct pt_inode *inode;
    struct statvfs sv;
    PT_FDREF(r);
    int ret = pt_begin(fs, ctx, nodeid, &inode);

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
    int ret = pt_begin(fs, ctx, nodeid, &inode);

    if (ret < 0)
        return ret;
    if (in->mask & ~(uint32_t)(R_OK | W_OK | X_OK))
        return -EINVAL;
    if (fs->cfg.readonly && (in->mask & W_OK) && !S_ISLNK(inode->type))
        return -EROFS;
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
    ret = pt_begin(fs, NULL, nodeid, &inode);
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
