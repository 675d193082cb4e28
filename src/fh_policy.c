/* SPDX-License-Identifier: Apache-2.0 */
/* --inode-file-handles: the whole policy; see include/fh_policy.h. */
#include "fh_policy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "inode_table.h"
#include "log.h"

/* The mount id of path (following symlinks), or -errno. */
static long long mount_id_of(const char *path)
{
    struct statx stx;
    if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) < 0)
        return -errno;
    return (stx.stx_mask & STATX_MNT_ID) ? (long long)stx.stx_mnt_id : -ENOTSUP;
}

/* The "root" field of mount mnt_id in /proc/self/mountinfo (the mount's root within its
 * file system) into root; 0 or -errno. */
static int mount_root_of(long long mnt_id, char *root, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char line[4096], field[4096];
    long long id;
    int ret = -ENOENT;
    while (ret == -ENOENT && fgets(line, sizeof(line), f))
        if (sscanf(line, "%lld %*d %*s %4095s", &id, field) == 2 && id == mnt_id)
            ret = snprintf(root, size, "%s", field) < (int)size ? 0 : -ENAMETOOLONG;
    fclose(f);
    return ret;
}

/*
 * Whether dir is the top of a whole file system as mounted (a mount point whose mount shows
 * its file system from its root): then no file handle of that file system names anything
 * outside dir.
 */
static bool fh_dir_is_whole_fs(const char *dir)
{
    char parent[PATH_MAX], root[PATH_MAX];
    if (snprintf(parent, sizeof(parent), "%s/..", dir) >= (int)sizeof(parent))
        return false;
    long long id = mount_id_of(dir), parent_id = mount_id_of(parent);
    if (id < 0 || parent_id < 0)
        return false;
    /* A mount point (or "/", its own parent) whose mount shows its file system from the top. */
    bool own_mount = id != parent_id || strcmp(dir, "/") == 0;
    return own_mount && mount_root_of(id, root, sizeof(root)) == 0 && strcmp(root, "/") == 0;
}

enum inode_fh_mode fh_policy_for_share(enum inode_fh_mode requested, const char *share)
{
    if (requested != FH_AUTO || fh_dir_is_whole_fs(share))
        return requested;
    log_debug("%s is not a whole file system: inodes keep O_PATH fds (no file handles)", share);
    return FH_NEVER;
}

enum caps_fh fh_policy_caps(enum inode_fh_mode mode)
{
    switch (mode) {
    case FH_NEVER:
        return CAPS_FH_NONE;
    case FH_AUTO:
        return CAPS_FH_KEEP;
    case FH_PREFER:
    case FH_MANDATORY:
    default:
        return CAPS_FH_REQUIRED;
    }
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

void fh_policy_init(struct fh_policy *p, enum inode_fh_mode want)
{
    *p = (struct fh_policy){.want = want, .mode = FH_NEVER, .fd_budget = fd_budget()};
    fh_mounts_init(&p->mounts);
}

void fh_policy_destroy(struct fh_policy *p)
{
    if (p->root_mount)
        fh_mount_put(p->root_mount);
    p->root_mount = NULL;
    fh_mounts_destroy(&p->mounts);
}

int fh_policy_activate(struct fh_policy *p, int root_fd, int proc_self_fd)
{
    static const char *const names[] = {"never", "automatic", "prefer", "mandatory"};
    enum inode_fh_mode want = p->want;
    struct fh_buf b;
    bool created;
    int ret;

    p->mode = FH_NEVER;
    if (p->root_mount)
        fh_mount_put(p->root_mount);
    p->root_mount = NULL;
    if (want == FH_NEVER)
        return 0;
    /* As the Rust virtiofsd: a handle of the shared directory must open again. */
    ret = fh_encode(root_fd, &b);
    if (ret == 0)
        ret = fh_mount_get(&p->mounts, &b, root_fd, proc_self_fd, &p->root_mount, &created);
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
    p->mode = want;
    if (want == FH_AUTO)
        log_debug("inode file handles: automatic, beyond %lu inodes with an fd", p->fd_budget);
    else
        log_debug("inode file handles: %s", names[want]);
    return 0;
}

bool fh_policy_wants_handle(const struct fh_policy *p)
{
    switch (p->mode) {
    case FH_PREFER:
    case FH_MANDATORY:
        return true;
    case FH_AUTO:
        return itab_fd_inodes() >= p->fd_budget;
    case FH_NEVER:
    default:
        return false;
    }
}

/* Logs, once per mount, that a file system gives no usable handles. */
static void handles_unusable(const struct fh_policy *p, int mnt_id, int err)
{
    if (p->mode == FH_MANDATORY)
        log_error("mount %d: no usable file handles (%s); lookups there fail", mnt_id,
                  strerror(err));
    else if (p->mode == FH_PREFER)
        log_warn("mount %d: no usable file handles (%s); using O_PATH fds there", mnt_id,
                 strerror(err));
    else
        log_debug("mount %d: no usable file handles (%s)", mnt_id, strerror(err));
}

int fh_policy_new_handle(struct fh_policy *p, int encoded, const struct fh_buf *b, int mnt_id,
                         int src_fd, int proc_self_fd, struct pt_fhandle **out)
{
    struct fh_mount *m;
    bool created;
    int ret;

    *out = NULL;
    if (encoded < 0) {
        bool none = encoded == -EOPNOTSUPP || encoded == -EOVERFLOW;

        if (none && fh_mount_fail(&p->mounts, mnt_id, -encoded))
            handles_unusable(p, mnt_id, -encoded);
        if (p->mode == FH_MANDATORY || (p->mode == FH_PREFER && !none))
            return encoded;
        return 0;
    }
    ret = fh_mount_get(&p->mounts, b, src_fd, proc_self_fd, &m, &created);
    if (ret < 0) {
        if (created)
            handles_unusable(p, b->mnt_id, -ret);
        return p->mode == FH_MANDATORY ? ret : 0;
    }
    *out = fh_new(m, b);
    if (!*out) {
        fh_mount_put(m);
        return -ENOMEM;
    }
    return 0;
}
