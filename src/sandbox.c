/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "log.h"

static pid_t child_pid = -1;

static int fail(const char *what)
{
    int err = errno;
    log_error("sandbox: %s: %s", what, strerror(err));
    return -err;
}

static int open_proc_self_fd(struct sandbox *sb)
{
    sb->proc_self_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    return sb->proc_self_fd < 0 ? fail("open /proc/self/fd") : 0;
}

/*
 * The guest may create device nodes and set-ID files in the share (mknod and chmod are its
 * right), but in the daemon's own view of the share they must mean nothing: no request should
 * ever make us open a device, and with nodev no bug can either (CVE-2020-35517 was one).
 * Applied to every mount below the share (submounts too); the host's mounts are untouched.
 */
static int share_nodev_nosuid(const char *dir)
{
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID};
    if (syscall(SYS_mount_setattr, AT_FDCWD, dir, AT_RECURSIVE, &attr, sizeof(attr)) == 0)
        return 0;
    if (errno != ENOSYS)
        return fail("make the shared directory nodev,nosuid");
    /* Before Linux 5.12: a remount of the top mount, which must repeat the flags that a
     * user namespace cannot clear (read-only, noexec, the atime mode). */
    struct statvfs sv;
    if (statvfs(dir, &sv) < 0)
        return fail("statvfs of the shared directory");
    static const struct {
        unsigned long st, ms;
    } keep[] = {{ST_RDONLY, MS_RDONLY},
                {ST_NOEXEC, MS_NOEXEC},
                {ST_NOATIME, MS_NOATIME},
                {ST_NODIRATIME, MS_NODIRATIME},
                {ST_RELATIME, MS_RELATIME}};
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_NODEV | MS_NOSUID;
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        if (sv.f_flag & keep[i].st)
            flags |= keep[i].ms;
    if (mount(NULL, dir, NULL, flags, NULL) < 0)
        return fail("remount the shared directory nodev,nosuid");
    return 0;
}

/*
 * In the new mount namespace: a /proc for our PID namespace, then the share as the root with
 * the old root detached, so no path reaches anything outside the share.
 */
static int pivot_into_share(struct sandbox *sb)
{
    /* Nothing we mount or unmount may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return fail("make / a slave mount");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME, NULL) < 0)
        return fail("mount /proc");
    /* /proc/self/fd is kept as an fd: after the pivot no path leads to /proc. */
    if (open_proc_self_fd(sb) < 0)
        return -errno;
    /* pivot_root needs the new root to be a mount point. */
    if (mount(sb->shared_dir, sb->shared_dir, NULL, MS_BIND | MS_REC, NULL) < 0)
        return fail("bind-mount the shared directory");
    if (share_nodev_nosuid(sb->shared_dir) < 0)
        return -errno;
    if (chdir(sb->shared_dir) < 0)
        return fail("chdir to the shared directory");
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
     * drops the old root without needing a directory for it inside the share. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return fail("detach the old root");
    if (chdir("/") < 0)
        return fail("chdir /");
    sb->root = "/";
    return 0;
}

/* The serving process: PID 1 of its namespace, in its own mount and network namespaces. */
static int confine_child(struct sandbox *sb)
{
    /* Die with the monitor, whatever kills it. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return fail("PR_SET_PDEATHSIG");
    /*
     * liburcu registered the process for expedited membarriers when it loaded; the
     * registration belongs to the address space, and a forked child has a new one. Without
     * registering again, its first grace period would fail and liburcu would abort.
     */
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) < 0 &&
        errno != EINVAL)
        return fail("membarrier registration");
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return fail("unshare mount and network namespaces");
    return pivot_into_share(sb);
}

static void ignore_signal(int sig)
{
    (void)sig;
}

/* In the confined child: PID 1 of its namespace only receives signals it has a handler
 * for; the handler never runs (the signals stay blocked for signalfd) but lets them through. */
static void accept_signals_as_init(void)
{
    struct sigaction sa = {.sa_handler = ignore_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* Forks the serving child into the PID namespace unshared before; the parent gets MONITOR. */
static int fork_confined(struct sandbox *sb, enum sandbox_role *role)
{
    pid_t pid = fork();
    if (pid < 0)
        return fail("fork");
    if (pid > 0) {
        child_pid = pid;
        *role = SANDBOX_MONITOR;
        return 0;
    }
    accept_signals_as_init();
    *role = SANDBOX_CONFINED;
    return confine_child(sb);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(path);
    ssize_t n = write(fd, text, strlen(text));
    int ret = n == (ssize_t)strlen(text) ? 0 : fail(path);
    close(fd);
    return ret;
}

/* Without --uid-map/--gid-map: our own uid and gid, mapped to themselves. */
static int map_self(uid_t uid, gid_t gid)
{
    char line[64];
    int ret = write_file("/proc/self/setgroups", "deny");
    snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (ret == 0)
        ret = write_file("/proc/self/uid_map", line);
    snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    if (ret == 0)
        ret = write_file("/proc/self/gid_map", line);
    return ret;
}

/* Runs newuidmap/newgidmap (setuid helpers that check /etc/subuid) for pid. */
static int run_id_mapper(const char *tool, pid_t pid, const struct id_map *m, unsigned n)
{
    char args[3 * OPTIONS_MAX_ID_MAPS + 3][16];
    char *argv[3 * OPTIONS_MAX_ID_MAPS + 3];
    unsigned a = 0;
    argv[a++] = (char *)tool;
    snprintf(args[a], sizeof(args[a]), "%d", (int)pid);
    argv[a] = args[a];
    a++;
    for (unsigned i = 0; i < n; i++) {
        uint32_t v[3] = {m[i].ns_id, m[i].host_id, m[i].count};
        for (int k = 0; k < 3; k++, a++) {
            snprintf(args[a], sizeof(args[a]), "%u", v[k]);
            argv[a] = args[a];
        }
    }
    argv[a] = NULL;
    pid_t p = fork();
    if (p < 0)
        return fail("fork");
    if (p == 0) {
        execvp(tool, argv);
        _exit(127);
    }
    int status;
    if (waitpid(p, &status, 0) < 0)
        return fail("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_error("sandbox: %s failed (status %d); is the range in /etc/sub%cid and %s "
                  "installed (package uidmap)?",
                  tool, WIFEXITED(status) ? WEXITSTATUS(status) : -1, tool[3] == 'u' ? 'u' : 'g',
                  tool);
        return -EPERM;
    }
    return 0;
}

/*
 * Unprivileged: an intermediate process enters a new user namespace (in which it holds the
 * capabilities to build the rest), gets its id maps, then forks the serving child into a
 * new PID namespace and waits for it, as the monitor waits for the intermediate.
 */
static int enter_user_namespace(struct sandbox *sb, enum sandbox_role *role)
{
    bool mapped = sb->n_uid_map || sb->n_gid_map;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
        return fail("pipe");
    pid_t pid = fork();
    if (pid < 0)
        return fail("fork");
    char c = 0;
    if (pid > 0) { /* the monitor: maps the intermediate's ids from outside */
        child_pid = pid;
        *role = SANDBOX_MONITOR;
        int ret = read(ready[0], &c, 1) == 1 ? 0 : -ECHILD;
        if (ret == 0 && mapped && sb->n_uid_map)
            ret = run_id_mapper("newuidmap", pid, sb->uid_map, sb->n_uid_map);
        if (ret == 0 && mapped && sb->n_gid_map)
            ret = run_id_mapper("newgidmap", pid, sb->gid_map, sb->n_gid_map);
        c = ret == 0;
        if (write(go[1], &c, 1) != 1 && ret == 0)
            ret = -EPIPE;
        close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
        return ret; /* on failure the intermediate exits when it reads 0 */
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int ret = unshare(CLONE_NEWUSER) < 0 ? fail("unshare user namespace") : 0;
    c = ret == 0;
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1 || !c || ret < 0)
        _exit(1);
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
    if ((!mapped && map_self(uid, gid) < 0) || unshare(CLONE_NEWPID) < 0)
        _exit(1);
    sb->in_user_ns = true;
    ret = fork_confined(sb, role);
    if (ret < 0 || *role == SANDBOX_CONFINED)
        return ret;
    _exit(sandbox_monitor(sb)); /* the intermediate: wait for the server, pass signals on */
}

static int enter_namespaces(struct sandbox *sb, enum sandbox_role *role)
{
    if (geteuid() != 0)
        return enter_user_namespace(sb, role);
    if (sb->n_uid_map || sb->n_gid_map)
        log_warn("sandbox: --uid-map/--gid-map apply only when started unprivileged; ignored");
    if (unshare(CLONE_NEWPID) < 0)
        return fail("unshare PID namespace");
    return fork_confined(sb, role);
}

static int enter_chroot(struct sandbox *sb)
{
    if (open_proc_self_fd(sb) < 0)
        return -errno;
    if (chroot(sb->shared_dir) < 0)
        return fail("chroot");
    if (chdir("/") < 0)
        return fail("chdir /");
    sb->root = "/";
    return 0;
}

int sandbox_enter(struct sandbox *sb, enum sandbox_role *role)
{
    sb->root = sb->shared_dir;
    sb->proc_self_fd = -1;
    *role = SANDBOX_CONFINED;
    switch (sb->mode) {
    case SANDBOX_NAMESPACE:
        return enter_namespaces(sb, role);
    case SANDBOX_CHROOT:
        return enter_chroot(sb);
    case SANDBOX_NONE:
        return 0;
    }
    return -EINVAL;
}

int sandbox_monitor(const struct sandbox *sb)
{
    /* Waiting, passing signals on to our own child and (in main) removing the socket file
     * need no capability: whatever a bug in here could reach, it reaches unprivileged. */
    if (caps_drop_all() < 0)
        log_warn("sandbox: the monitor could not drop its capabilities");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        int status;
        pid_t r = waitpid(child_pid, &status, WNOHANG);
        if (r == child_pid) {
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            log_error("the serving process died of signal %d", WTERMSIG(status));
            return 128 + WTERMSIG(status);
        }
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
            kill(child_pid, sig);
    }
}
