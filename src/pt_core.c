/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough core: what every operation uses (see include/pt_core.h). The per-request
 * entry with the credential switch and the --readonly rule, inode fds, names, attributes,
 * entries, modes, the security label, and the group retry. It calls only the tables and
 * mechanisms below it (never an op file, nor pt_lifetime.c): it links alone (test_pt_core).
 *
 * Every inode is reached through an O_PATH|O_NOFOLLOW fd opened relative to its parent, so no
 * operation resolves more than one name (checked by pt_check_name) below an fd that lies
 * inside the share, and no symlink is followed on the host. Where a syscall needs a real fd or
 * a path, the O_PATH fd is reopened through /proc/self/fd, which resolves to the inode itself.
 */
#include "pt_core.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <linux/limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"
#include "xattrmap.h"

int pt_statx(int fd, struct statx *stx)
{
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
              STATX_BASIC_STATS | STATX_MNT_ID, stx) < 0)
        return -errno;
    return 0;
}

void pt_key_from_statx(const struct statx *stx, struct itab_key *key)
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

int pt_dots(const char *name, size_t len)
{
    if (len == 1 && name[0] == '.')
        return 1;
    return len == 2 && name[0] == '.' && name[1] == '.' ? 2 : 0;
}

int pt_check_name(const char *name, enum pt_name_use use)
{
    size_t len;

    if (!name)
        return -EINVAL;
    len = strnlen(name, NAME_MAX + 1);
    if (len == 0 || memchr(name, '/', len))
        return -EINVAL;
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    if (use == PT_NAME_LOOKUP || !pt_dots(name, len))
        return 0;
    /* The guest's VFS never sends these to create, remove or rename. */
    return use == PT_NAME_CREATE ? -EISDIR : -EINVAL;
}

/* ---- deferred removal (see pt_core.h) ------------------------------------------------------- */

void pt_hidden_name(uint64_t ino, char *buf)
{
    snprintf(buf, PT_HIDDEN_NAME_MAX, PT_HIDDEN_PREFIX "%016llx", (unsigned long long)ino);
}

bool pt_is_hidden_name(const char *name, size_t len)
{
    const size_t plen = sizeof(PT_HIDDEN_PREFIX) - 1;

    if (len != plen + 16 || memcmp(name, PT_HIDDEN_PREFIX, plen) != 0)
        return false;
    for (size_t i = plen; i < len; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return true;
}

/* The share's root, whichever nodeid reaches it (".." of a top-level directory is nodeid 1). */
static bool is_share_root(const struct pt_fs *fs, const struct pt_inode *dir)
{
    return dir == fs->root ||
           (dir && dir->key.dev == fs->root->key.dev && dir->key.ino == fs->root->key.ino);
}

bool pt_name_hidden_in(const struct pt_fs *fs, const struct pt_inode *dir, const char *name,
                       size_t len)
{
    /* The whole prefix is reserved, not only the exact names: simpler to reason about. */
    return len >= sizeof(PT_HIDDEN_PREFIX) - 1 &&
           memcmp(name, PT_HIDDEN_PREFIX, sizeof(PT_HIDDEN_PREFIX) - 1) == 0 &&
           is_share_root(fs, dir);
}

int pt_check_path(const char *path)
{
    size_t len = strlen(path);

    if (len >= PATH_MAX)
        return -ENAMETOOLONG;
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);

        if (n == 0 || pt_dots(p, n))
            return -EINVAL;
        if (n > NAME_MAX)
            return -ENAMETOOLONG;
        p += n;
        if (*p == '/' && !*++p)
            return -EINVAL; /* a trailing '/': an empty last component */
    }
    return 0;
}

int pt_open_beneath(struct pt_fs *fs, int dir_fd, const char *path)
{
    char buf[PATH_MAX];
    char *name = buf;
    int cur = -1;

    if (strlen(path) >= sizeof(buf) || !*path)
        return -EINVAL;
    strcpy(buf, path);
    while (name) {
        char *slash = strchr(name, '/');
        int next;

        if (slash)
            *slash = '\0';
        next = openat(cur >= 0      ? cur
                      : dir_fd >= 0 ? dir_fd
                                    : fs->root->fd,
                      name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            next = -errno;
        if (cur >= 0)
            close(cur);
        if (next < 0)
            return next;
        cur = next;
        name = slash ? slash + 1 : NULL;
    }
    return cur;
}

int pt_check_name_in(const struct pt_fs *fs, const struct pt_inode *dir, const char *name,
                     enum pt_name_use use)
{
    int ret = pt_check_name(name, use);

    if (ret < 0 || !pt_name_hidden_in(fs, dir, name, strlen(name)))
        return ret;
    return use == PT_NAME_LOOKUP || use == PT_NAME_REMOVE ? -ENOENT : -EPERM;
}

int pt_hide(struct pt_fs *fs, int fd, const struct statx *stx, char *name)
{
    struct fd_path p;
    int ret;

    pt_hidden_name(stx->stx_ino, name);
    {
        /* As the daemon: see "Why the daemon's credentials are safe here" in pt_core.h. */
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0 &&
            linkat(fs->proc_self_fd, fd_name(fd, &p), fs->root->fd, name, AT_SYMLINK_FOLLOW) < 0)
            ret = -errno;
    }
    return ret;
}

void pt_unhide(struct pt_fs *fs, uint64_t dev, uint64_t ino)
{
    char name[PT_HIDDEN_NAME_MAX];
    struct statx stx;
    int ret;

    pt_hidden_name(ino, name);
    {
        /*
         * As the daemon: only the reserved name in the share's root, only while it leads to
         * the file the daemon hid (the guest cannot make or rename such names; between the
         * check and the unlink only the host could swap it).
         */
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0 &&
            statx(fs->root->fd, name, AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
                  STATX_TYPE | STATX_INO, &stx) == 0 &&
            S_ISREG(stx.stx_mode) && stx.stx_ino == ino &&
            makedev(stx.stx_dev_major, stx.stx_dev_minor) == dev &&
            unlinkat(fs->root->fd, name, 0) < 0)
            ret = -errno;
    }
    if (ret < 0)
        log_debug("cannot remove the hidden name %s: %s", name, strerror(-ret));
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
    struct pt_inode *inode = nodeid && fs->agreed.posix_acl ? itab_get(fs->inodes, nodeid) : NULL;
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
 * THE rule for the supplementary-group retry (pt_retry_groups), decided once at construction.
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
bool pt_group_retry_sound(struct pt_fs *fs)
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

/* The --readonly rule, the one place it is applied: what an op declared at its entry. */
static int check_intent(const struct pt_fs *fs, enum pt_intent intent, mode_t type)
{
    if (!fs->cfg.readonly || intent == PT_READS)
        return 0;
    if (intent == PT_MODIFIES_UNLESS_SYMLINK && S_ISLNK(type))
        return 0;
    return -EROFS;
}

int pt_begin(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, enum pt_intent intent,
             struct pt_inode **inode)
{
    int ret = pt_enter(fs, ctx);

    if (ret < 0)
        return ret;
    *inode = itab_get(fs->inodes, nodeid);
    if (!*inode)
        return -EBADF;
    return check_intent(fs, intent, (*inode)->type);
}

int pt_begin_dir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, enum pt_intent intent,
                 struct pt_inode **dir)
{
    int ret = pt_begin(fs, ctx, nodeid, intent, dir);

    if (ret == 0 && !S_ISDIR((*dir)->type))
        ret = -ENOTDIR;
    return ret;
}

int pt_begin_handle(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t fh,
                    bool dir, enum pt_intent intent, struct pt_handle **h)
{
    int ret = pt_enter(fs, ctx);

    if (ret < 0)
        return ret;
    *h = htab_get(fs->handles, fh, nodeid);
    if (!*h || ((*h)->dir != NULL) != dir)
        return -EBADF;
    return check_intent(fs, intent, 0);
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

int pt_handle_room(struct pt_fs *fs)
{
    unsigned long max = fs->guest_fds, handles, inodes;

    if (!max)
        return 0;
    handles = __atomic_load_n(htab_fd_counter(), __ATOMIC_RELAXED);
    inodes = itab_fds(fs->inodes);
    if (handles + 1 > max - max / 8)
        return -EMFILE;
    if (handles + inodes + 1 > max - max / 16)
        itab_fd_evict(fs->inodes, handles + inodes + 1 - (max - max / 16) + max / 64);
    return 0;
}

/*
 * After the guest forgot most of what it knew (a big tree walked and dropped), the heap holds
 * the freed inodes' memory in the middle of live data, where free() cannot return it: give it
 * back each time the live count halved since the last trim (and fell by TRIM_DROP at least).
 * On the call_rcu thread, queued behind the frees of the forgotten inodes (its callbacks run
 * in order), so that neither the worker nor the guest waits for it.
 */
#define TRIM_DROP 4096

static void trim_rcu(struct rcu_head *head)
{
    struct pt_fs *fs = caa_container_of(head, struct pt_fs, trim_rcu);

    malloc_trim(0);
    __atomic_store_n(&fs->trim_queued, false, __ATOMIC_RELEASE);
}

static void trim_after_forgets(struct pt_fs *fs)
{
    unsigned long live = itab_live(fs->inodes);
    unsigned long peak = __atomic_load_n(&fs->peak_inodes, __ATOMIC_RELAXED);

    if (live > peak) {
        __atomic_store_n(&fs->peak_inodes, live, __ATOMIC_RELAXED);
    } else if (peak - live >= TRIM_DROP && live < peak / 2 &&
               __atomic_compare_exchange_n(&fs->peak_inodes, &peak, live, false, __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED) &&
               !__atomic_exchange_n(&fs->trim_queued, true, __ATOMIC_ACQ_REL)) {
        call_rcu(&fs->trim_rcu, trim_rcu);
    }
}

void pt_quiescent(struct pt_fs *fs)
{
    itab_fd_reclaim(fs->inodes);
    htab_reclaim(fs->handles, false);
    trim_after_forgets(fs);
}

void pt_idle(struct pt_fs *fs)
{
    htab_reclaim(fs->handles, true);
}

/* The FUSE_ATTR_SUBMOUNT rule: a directory on another mount than its parent. */
static bool is_submount(const struct pt_fs *fs, const struct pt_inode *parent,
                        const struct itab_key *key, mode_t mode)
{
    return fs->cfg.announce_submounts && fs->agreed.submounts && parent && S_ISDIR(mode) &&
           (parent->key.dev != key->dev || parent->key.mnt_id != key->mnt_id);
}

static void fill_entry(const struct pt_fs *fs, const struct pt_inode *inode,
                       const struct statx *stx, struct fuse_entry_out *out)
{
    memset(out, 0, sizeof(*out));
    out->nodeid = inode->nodeid;
    out->generation = 0; /* nodeids are never reused while the session lasts */
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

/*
 * What a mount fd can be opened from if f's mount has none yet: a directory (the file itself,
 * or its parent on the same mount), else the file if regular. Never a special file or symlink.
 */
static int mount_source(const struct pt_inode *parent, const struct found *f,
                        const struct statx *stx)
{
    if (S_ISDIR(stx->stx_mode))
        return f->fd;
    int pfd = parent ? __atomic_load_n(&parent->fd, __ATOMIC_ACQUIRE) : -1;

    if (pfd >= 0 && S_ISDIR(parent->type) && (stx->stx_mask & STATX_MNT_ID) &&
        parent->key.mnt_id == (uint64_t)f->buf.mnt_id)
        return pfd;
    return S_ISREG(stx->stx_mode) ? f->fd : -1;
}

/* The file handle for a new inode as fh_policy decides, or NULL (and 0) to keep its fd. */
static int new_handle(struct pt_fs *fs, const struct pt_inode *parent, struct found *f,
                      const struct statx *stx, struct pt_fhandle **out)
{
    int encoded = found_handle(f);
    int mnt_id = (stx->stx_mask & STATX_MNT_ID) ? (int)stx->stx_mnt_id : 0;
    int src = encoded < 0 ? -1 : mount_source(parent, f, stx);

    return fh_policy_new_handle(&fs->fh, encoded, &f->buf, mnt_id, src, fs->proc_self_fd, out);
}

/* How many directories up an fd is opened again when their fds were closed too. */
#define REOPEN_DEPTH 64

static int inode_fd_depth(struct pt_fs *fs, struct pt_inode *inode, struct pt_fdref *ref,
                          int depth);

/*
 * Opens the fd of inode, closed by the fd cache, where it was last seen: its name in its
 * parent (whose own fd may need opening again too).
 *
 * Why acting as the daemon is safe here: the daemon held an O_PATH fd of this very inode
 * until the cache closed it, and this only gives it back. The name is one component the
 * guest looked up before (pt_check_name: no '/', not "." or ".."), or the path a migration
 * restored it from (pt_check_path: such names joined by '/'), resolved in a directory of the
 * share one name at a time without following a symlink, and the result is kept only if it is
 * the same host inode (st_dev, st_ino, mount); anything else is ESTALE. O_PATH opens nothing
 * for I/O:
 * every access the op then makes (pt_reopen, the *at calls) is checked against the caller's
 * credentials as before. The daemon's ids are needed because the caller may lack search
 * permission on a directory it reached when it had it, which an fd that stayed open would
 * not have asked again.
 */
static int reopen_at_loc(struct pt_fs *fs, struct pt_inode *inode, int depth)
{
    struct pt_loc *loc = rcu_dereference(inode->loc);
    struct pt_inode *parent = loc ? itab_get(fs->inodes, loc->parent) : NULL;
    struct itab_key key;
    struct statx stx;
    PT_FDREF(p);
    int fd = -1, ret;

    if (!parent || depth >= REOPEN_DEPTH)
        return -ESTALE;
    ret = inode_fd_depth(fs, parent, &p, depth + 1);
    if (ret < 0)
        return ret == -EIO ? -ESTALE : ret;
    {
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0) {
            fd = pt_open_beneath(fs, p.fd, loc->name);
            ret = fd < 0 ? fd : 0;
        }
    }
    if (ret < 0)
        return ret == -ENOENT || ret == -ENOTDIR ? -ESTALE : ret;
    ret = pt_statx(fd, &stx);
    if (ret == 0) {
        pt_key_from_statx(&stx, &key);
        if (memcmp(&key, &inode->key, sizeof(key)) != 0)
            ret = -ESTALE; /* the name leads to another file now */
    }
    if (ret < 0) {
        close(fd);
        return ret;
    }
    return fd;
}

static int inode_fd_depth(struct pt_fs *fs, struct pt_inode *inode, struct pt_fdref *ref, int depth)
{
    int fd = itab_inode_fd(inode);

    *ref = (struct pt_fdref){.fd = fd, .owned = false};
    if (fd >= 0)
        return fd;
    /* Neither fd nor handle nor place: an inode a migration could not find again (pt_state.c's
     * "lost" inodes, --migration-on-error=guest-error): every request on it fails with EIO. */
    if (inode->fh)
        fd = fh_open(inode->fh, O_PATH);
    else if (__atomic_load_n(&inode->loc, __ATOMIC_ACQUIRE))
        fd = reopen_at_loc(fs, inode, depth);
    else
        fd = -EIO;
    if (fd < 0)
        return fd;
    /* Kept for the next ops unless handle-only (those open by handle each time). */
    ref->fd = fd;
    ref->owned = inode->fh || !itab_fd_install(fs->inodes, inode, fd);
    return fd;
}

int pt_inode_fd_open(struct pt_fs *fs, const struct pt_inode *inode, struct pt_fdref *ref)
{
    return inode_fd_depth(fs, (struct pt_inode *)inode, ref, 0);
}

/* Whether an inode found as name in parent gets a place in the fd cache: only inodes that
 * keep fds, only under a name in a known directory. */
static bool placeable(const struct pt_inode *parent, const char *name)
{
    return parent && name && pt_dots(name, strlen(name)) == 0;
}

static void note_loc(struct pt_fs *fs, struct pt_inode *inode, const struct pt_inode *parent,
                     const char *name)
{
    if (placeable(parent, name) && !inode->fh)
        (void)itab_set_loc(fs->inodes, inode, parent->nodeid, name); /* ENOMEM: keeps its fd */
}

/*
 * The inode name in directory fd d names, referenced, if the guest holds it and the fd cache
 * has ever had to close fds (until then no inode needs this, and removals pay no statx).
 */
static struct pt_inode *find_named(struct pt_fs *fs, int d, const char *name)
{
    struct itab_key key;
    struct statx stx;

    if (!itab_fd_evicting(fs->inodes) || statx(d, name, AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
                                               STATX_TYPE | STATX_INO | STATX_MNT_ID, &stx) < 0)
        return NULL;
    pt_key_from_statx(&stx, &key);
    return itab_find_ref(fs->inodes, &key, NULL, NULL);
}

void pt_inode_keep_fd(struct pt_fs *fs, int d, const char *name)
{
    struct pt_inode *inode = find_named(fs, d, name);

    if (!inode)
        return;
    /* The clock may close the fd between opening and keeping it: then open it again. */
    for (int tries = 0; tries < 3; tries++) {
        PT_FDREF(r);
        if (pt_inode_fd(fs, inode, &r) < 0 || itab_set_loc(fs->inodes, inode, 0, NULL) != -EAGAIN)
            break;
    }
    pt_inode_forget(fs, inode->nodeid, 1);
}

void pt_inode_moved(struct pt_fs *fs, int d, uint64_t newparent, const char *newname)
{
    struct pt_inode *inode = find_named(fs, d, newname);

    if (!inode)
        return;
    if (__atomic_load_n(&inode->loc, __ATOMIC_ACQUIRE))
        (void)itab_set_loc(fs->inodes, inode, newparent, newname);
    pt_inode_forget(fs, inode->nodeid, 1);
}

int pt_entry_from_fd(struct pt_fs *fs, const struct pt_inode *parent, int fd, const char *name,
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
    pt_key_from_statx(&stx, &key);
    inode = itab_find_ref(fs->inodes, &key, inode_is_stale, &f);
    if (inode) {
        note_loc(fs, inode, parent, name); /* renamed on the host meanwhile, say */
        /* A known inode whose fd the cache closed gets this one. */
        if (inode->fh || itab_inode_fd(inode) >= 0 || !itab_fd_install(fs->inodes, inode, fd))
            close(fd);
    } else {
        if (fh_policy_wants_handle(&fs->fh))
            ret = new_handle(fs, parent, &f, &stx, &fh);
        if (ret < 0 || fh) {
            close(fd); /* a handle-only inode keeps no fd */
            fd = -1;
        }
        if (ret == 0) {
            struct pt_loc *loc = fd >= 0 && placeable(parent, name)
                                     ? itab_loc_new(parent->nodeid, name)
                                     : NULL; /* out of memory: keeps its fd */
            ret = itab_insert(fs->inodes, &key, fd, fh, loc, stx.stx_mode, &inode);
        }
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
    int dots = pt_dots(name, strlen(name));
    bool dotdot = dots == 2;
    int fd;

    if (dots == 1 || (dotdot && parent == fs->root))
        return self_entry(fs, parent, parent_fd, out);
    fd = openat(parent_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* The parent of a directory is not a submount of it. */
    return pt_entry_from_fd(fs, dotdot ? NULL : parent, fd, dotdot ? NULL : name, out);
}

int pt_do_lookup(struct pt_fs *fs, struct pt_inode *parent, const char *name,
                 struct fuse_entry_out *out)
{
    PT_FDREF(r);
    int fd = pt_inode_fd(fs, parent, &r);

    return fd < 0 ? fd : pt_do_lookup_at(fs, parent, fd, name, out);
}

void pt_inode_forget(struct pt_fs *fs, uint64_t nodeid, uint64_t nlookup)
{
    struct pt_inode *inode = itab_get(fs->inodes, nodeid);
    struct itab_key key = inode ? inode->key : (struct itab_key){0};
    bool hidden = inode && __atomic_load_n(&inode->hidden, __ATOMIC_ACQUIRE);

    itab_forget(fs->inodes, nodeid, nlookup);
    /* The guest's last reference to a file it unlinked: the space is freed now. (Not when
     * the table is cleared: a restored session may still need the hidden name.) */
    if (hidden && !itab_get(fs->inodes, nodeid))
        pt_unhide(fs, key.dev, key.ino);
    if (fs->hooks)
        fs->hooks->forgotten(fs, nodeid);
}

int pt_attr_out(struct pt_fs *fs, const struct pt_inode *inode, int pfd, struct fuse_attr_out *out)
{
    struct statx stx;
    int ret = pt_statx(pfd, &stx);

    if (ret < 0)
        return ret;
    memset(out, 0, sizeof(*out));
    out->attr_valid = fs->timeout;
    pt_fill_attr(fs, &stx, &out->attr);
    /* The hidden name is the daemon's, not a link the guest made. */
    if (__atomic_load_n(&inode->hidden, __ATOMIC_ACQUIRE) && out->attr.nlink)
        out->attr.nlink--;
    return 0;
}

int pt_set_mode(struct pt_fs *fs, int pfd, int fd, mode_t mode)
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

void pt_kill_suidgid_at(struct pt_fs *fs, const struct pt_inode *inode, int pfd, int fd)
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
    if (kill && pt_set_mode(fs, pfd, fd, mode & ~kill) < 0)
        log_debug("cannot clear set-id bits of inode %llu", (unsigned long long)inode->nodeid);
}

void pt_kill_suidgid(struct pt_fs *fs, const struct pt_inode *inode, int fd)
{
    PT_FDREF(r);

    /* With an open fd, the inode's own fd is not needed (no handle to open). */
    if (fd >= 0 || pt_inode_fd(fs, inode, &r) >= 0)
        pt_kill_suidgid_at(fs, inode, r.fd, fd);
}

/* This thread has its own umask (unshare(CLONE_FS)), so setting it affects no other thread. */
static __thread bool own_umask;

mode_t pt_umask_begin(struct pt_fs *fs, uint32_t mode, uint32_t umask_bits)
{
    static atomic_bool warned;

    if (!fs->agreed.dont_mask)
        return mode;
    if (fs->agreed.posix_acl) {
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
    if (fs->agreed.dont_mask && fs->agreed.posix_acl && own_umask)
        umask(0);
}

bool pt_xattr_hidden(const struct pt_fs *fs, const char *name, size_t len)
{
    return !fs->agreed.posix_acl &&
           ((len == sizeof(PT_ACL_ACCESS) - 1 && !memcmp(name, PT_ACL_ACCESS, len)) ||
            (len == sizeof(PT_ACL_DEFAULT) - 1 && !memcmp(name, PT_ACL_DEFAULT, len)));
}

int pt_xattr_name_to_host(const struct pt_fs *fs, const char **name, bool get, char *buf,
                          size_t size)
{
    int ret;

    if (pt_xattr_hidden(fs, *name, strlen(*name)))
        return -ENOTSUP;
    if (!fs->cfg.xattrmap)
        return 0;
    ret = xattrmap_to_host(fs->cfg.xattrmap, *name, buf, size);
    if (ret == -EPERM && get)
        return -ENODATA;
    if (ret == 0)
        *name = buf;
    return ret;
}

int pt_apply_secctx(struct pt_fs *fs, const struct pt_ctx *ctx, int path_fd)
{
    char host_name[XATTR_NAME_MAX + 1];
    const char *name;
    struct fd_path p;
    int ret;

    if (!ctx || !ctx->secctx)
        return 0;
    name = ctx->secctx->name;
    ret = pt_xattr_name_to_host(fs, &name, false, host_name, sizeof(host_name));
    if (ret == 0) {
        /*
         * As the daemon: the caller may not be allowed to label. Safe because only the inode
         * this request has just created gets the label, only under a security.* name
         * (parse_secctx in fuse_server.c refuses any other before anything is created, so no
         * trusted.* or user.* attribute is ever set as the daemon), and through
         * /proc/self/fd any type of inode (a symlink or device node included) is reached
         * without being opened.
         */
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0 &&
            setxattr(fd_name(path_fd, &p), name, ctx->secctx->value, ctx->secctx->size, 0) < 0)
            ret = -errno;
    }
    if (ret < 0)
        log_debug("cannot set security context %s on a new inode: %s", ctx->secctx->name,
                  strerror(-ret));
    return ret;
}

uint32_t pt_fopen_flags(const struct pt_fs *fs, bool dir, uint32_t guest_flags)
{
    uint32_t f = 0;

    if (!dir && fs->cfg.allow_direct_io && (guest_flags & O_DIRECT))
        f |= FOPEN_DIRECT_IO;
    switch (fs->cfg.cache) {
    case CACHE_NEVER:
        f |= dir ? 0 : FOPEN_DIRECT_IO;
        break;
    case CACHE_METADATA:
        f |= dir ? (FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE) : FOPEN_DIRECT_IO;
        break;
    case CACHE_ALWAYS:
        f |= FOPEN_KEEP_CACHE | (dir ? FOPEN_CACHE_DIR : 0);
        break;
    case CACHE_AUTO:
        break;
    }
    return f;
}

int pt_fsync_handle(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                    const struct fuse_fsync_in *in)
{
    struct pt_handle *h;
    int ret = pt_enter(fs, ctx);

    if (ret < 0)
        return ret;
    h = htab_get(fs->handles, in->fh, nodeid);
    if (!h)
        return -EBADF;
    ret = (in->fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h->fd) : fsync(h->fd);
    return ret < 0 ? -errno : 0;
}

void pt_note_flush(struct pt_fs *fs, uint64_t nodeid, uint64_t owner)
{
    if (fs->hooks)
        fs->hooks->flushed(fs, nodeid, owner);
}

void pt_note_release(struct pt_fs *fs, uint64_t fh)
{
    if (fs->hooks)
        fs->hooks->released(fs, fh);
}
