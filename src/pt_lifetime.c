/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem's lifetime: the process set-up serving needs, the one
 * constructor, teardown, reset, and what FUSE INIT agreed. The only place that creates the
 * tables and the lock state, and that installs the lock layer's hooks into the core.
 */
#include "pt_core.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"
#include "pt_lock.h"

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
    pt_key_from_statx(&stx, &key);
    return itab_insert_root(fs->inodes, &key, fd, stx.stx_mode, &fs->root);
}

/*
 * Process-wide set-up for acting as the guest's callers: no supplementary groups (root's would
 * grant every caller group access), and no umask (the guest kernel already applied the
 * caller's, or sends it for us to apply with FUSE_DONT_MASK); the lock layer's wake-up
 * signal; /proc/self/fd as the working directory (see fd_name in pt_core.h).
 */
int pt_process_setup(int proc_self_fd)
{
    int ret = pt_locks_process_setup();

    if (ret < 0) {
        if (proc_self_fd >= 0)
            close(proc_self_fd);
        return ret;
    }
    umask(0);
    if (geteuid() == 0) {
        if (setgroups(0, NULL) < 0)
            log_warn("cannot drop supplementary groups: %s", strerror(errno));
        if (creds_set(0, 0) < 0)
            log_warn("cannot reset the filesystem credentials of this thread");
    }
    if (proc_self_fd < 0)
        proc_self_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc_self_fd < 0 || fchdir(proc_self_fd) < 0) {
        ret = -errno;
        log_error("cannot open /proc/self/fd: %s", strerror(errno));
        if (proc_self_fd >= 0)
            close(proc_self_fd);
        return ret;
    }
    return proc_self_fd;
}

/*
 * How many fds the guest's inodes and open handles may hold, from the open-file limit as it
 * is now (main raised it as far as it could): the rest is a reserve for the daemon's own work,
 * which the guest cannot take: the vhost-user socket and the queues' eventfds, memory
 * regions, lock owners' files (pt_lock.c keeps to a sixteenth of the limit), the fds ops open
 * for a moment, log and /proc. 0: no limit to keep to.
 */
static unsigned long fd_budget(void)
{
    struct rlimit rl;
    unsigned long limit, reserve;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    limit = (unsigned long)rl.rlim_cur;
    reserve = 64 + limit / 8;
    return limit > reserve + 64 ? limit - reserve : 64;
}

int pt_new(const struct pt_config *cfg, struct pt_fs **out)
{
    int proc_self_fd = pt_process_setup(-1);

    if (proc_self_fd < 0)
        return proc_self_fd;
    return pt_new_with_proc(cfg, proc_self_fd, out);
}

int pt_new_with_proc(const struct pt_config *cfg, int proc_self_fd, struct pt_fs **out)
{
    struct pt_fs *fs;
    int ret;

    if (!cfg || !cfg->shared_dir || proc_self_fd < 0) {
        if (proc_self_fd >= 0)
            close(proc_self_fd);
        return -EINVAL;
    }
    fs = calloc(1, sizeof(*fs));
    if (!fs) {
        close(proc_self_fd);
        return -ENOMEM;
    }
    fh_policy_init(&fs->fh, cfg->inode_file_handles);
    fs->cfg = *cfg;
    fs->cfg.uid_map = fs->cfg.gid_map = (struct idmap){0}; /* our own copies, below */
    fs->proc_self_fd = proc_self_fd;
    fs->timeout = cache_timeout(cfg->cache);
    fs->switch_creds = geteuid() == 0;
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
    if (ret == 0) {
        /* Inodes give their fds back (the fd cache) to keep within the budget with the open
         * handles; see inode_table.h. */
        fs->guest_fds = fd_budget();
        itab_set_fd_cap(fs->inodes, fs->guest_fds, htab_fd_counter());
        log_debug("up to %lu fds for the guest's inodes and open files", fs->guest_fds);
    }
    if (ret == 0)
        ret = pt_locks_new(&fs->locks);
    if (ret == 0)
        ret = open_root(fs);
    if (ret < 0) {
        pt_free(fs);
        return ret;
    }
    fs->hooks = &pt_lock_hooks;
    fs->group_retry = pt_group_retry_sound(fs);
    if (fs->switch_creds && !fs->group_retry)
        log_info("ids are translated or mapped: no supplementary-group retry");
    *out = fs;
    return 0;
}

int pt_setup_file_handles(struct pt_fs *fs)
{
    return fh_policy_activate(&fs->fh, fs->root->fd, fs->proc_self_fd);
}

void pt_free(struct pt_fs *fs)
{
    if (!fs)
        return;
    if (fs->locks)
        pt_locks_free(fs->locks); /* its waits use handles' and inodes' files */
    if (fs->handles)
        htab_free(fs->handles);
    if (fs->inodes)
        itab_free(fs->inodes); /* frees the handles: every mount reference but the pin */
    fh_policy_destroy(&fs->fh);
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
    fs->agreed = (struct pt_agreed){
        .writeback = negotiated_flags & FUSE_WRITEBACK_CACHE,
        .submounts = negotiated_flags & FUSE_SUBMOUNTS,
        .dont_mask = negotiated_flags & FUSE_DONT_MASK,
        .posix_acl = negotiated_flags & FUSE_POSIX_ACL,
    };
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
    /* Close the fds now, unless called inside a read-side section (that would deadlock; the
     * worker then closes the handles' between requests, pt_quiescent). */
    if (!rcu_read_ongoing()) {
        htab_reclaim(fs->handles, true);
        rcu_barrier();
    }
}
