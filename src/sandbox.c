/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "idle_mem.h"
#include "log.h"

/* The monitor's state. Only a monitor process ever sets any of it. */
static pid_t child_pid = -1;
static bool can_restart;        /* this monitor can build a new serving process */
static bool stopping;           /* a stop signal was passed on: never restart after it */
static int alive[2] = {-1, -1}; /* its write end: held by the monitor only (see die_with_monitor) */
/* When the last max_restarts restarts happened (CLOCK_MONOTONIC, ms): a ring. */
static int64_t restart_ms[OPTIONS_MAX_RESTARTS];
static unsigned n_restarts;

#define RESTART_WINDOW_MS 60000

/* The fds the daemon was started with beyond stdin, stdout and stderr (sandbox_keep_inherited). */
#define MAX_INHERITED 1024
static int inherited[MAX_INHERITED];
static unsigned n_inherited;

/*
 * Following the monitor's cgroup (sandbox_follow_cgroup): one socket pair per serving process.
 * The monitor's end and its signalfd are the monitor's alone: a new serving process closes
 * them first thing; the serving process keeps only its own end (cgroup_req).
 */
static int cgroup_mon = -1; /* in the monitor: the current serving process's requests */
static int monitor_sigfd = -1;
static int cgroup_req = -1; /* in a serving process: to its monitor */

static int fail(const char *what)
{
    int err = errno;
    log_error("sandbox: %s: %s", what, strerror(err));
    return -err;
}

int sandbox_keep_inherited(int listen_fd)
{
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return fail("list /proc/self/fd");
    struct dirent *e;
    int ret = 0;
    while ((e = readdir(dir))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd < 3 || fd == dirfd(dir))
            continue;
        /* Whatever we start (newuidmap) gets none of them. */
        if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
            continue;
        if (fd == listen_fd)
            continue;
        if (n_inherited == MAX_INHERITED) {
            log_error("sandbox: more than %d inherited file descriptors", MAX_INHERITED);
            ret = -EMFILE;
            break;
        }
        inherited[n_inherited++] = (int)fd;
    }
    closedir(dir);
    return ret;
}

/*
 * In a new serving process: the manager's fds are the process it started's to hold (a lock
 * such as libvirt's pid file is that process's, and stays held while it runs); the serving
 * process has no use for them, and a file of the host must not be reachable from inside the
 * sandbox. Closing our copies releases nothing of theirs: a POSIX lock belongs to the process
 * that took it, and an flock or open file description stays with the other copies.
 */
static void close_inherited(void)
{
    for (unsigned i = 0; i < n_inherited; i++)
        close(inherited[i]);
    n_inherited = 0;
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

/*
 * In a new serving process, first thing: it must hold nothing of the monitor's (the write end
 * of the liveness pipe) and must die with the monitor, whatever kills it. Its parent becomes
 * the monitor (a child subreaper) only once the launcher that forked it has been reaped,
 * which the monitor then tells it through taken (one byte; EOF: the monitor failed or died):
 * a death signal asked for before would fire when the launcher exits (its descriptors close
 * before its children are handed on, so their closing tells nothing). If the monitor died
 * between its byte and the request, the liveness pipe says so: its only write end is closed.
 */
static int die_with_monitor(int taken)
{
    close(alive[1]);
    alive[1] = -1;
    char c;
    ssize_t n;
    while ((n = read(taken, &c, 1)) < 0 && errno == EINTR)
        ;
    close(taken);
    if (n != 1) {
        log_error("sandbox: the monitor did not take the new serving process");
        return -ECHILD;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return fail("PR_SET_PDEATHSIG");
    struct pollfd p = {.fd = alive[0], .events = POLLIN};
    int gone = poll(&p, 1, 0);
    close(alive[0]);
    alive[0] = -1;
    if (gone != 0) {
        log_error("sandbox: the monitor ended while the serving process started");
        return -ECHILD;
    }
    return 0;
}

/* Reads a small file of /proc whole, NUL-terminated; its length or a negative errno. */
static ssize_t read_proc_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    ssize_t n;
    while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            return -err;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return len < size - 1 ? (ssize_t)len : -EFBIG;
}

/* Whether each item of list ("cpu,cpuacct", "name=systemd") is among the mount's options. */
static bool has_all_options(const char *opts, const char *list)
{
    char want[256];
    if (snprintf(want, sizeof(want), "%s", list) >= (int)sizeof(want))
        return false;
    char *save = NULL;
    for (char *w = strtok_r(want, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        size_t len = strlen(w);
        const char *p = opts;
        bool found = false;
        while (!found && (p = strstr(p, w))) {
            found = (p == opts || p[-1] == ',') && (p[len] == ',' || p[len] == '\0');
            p += len;
        }
        if (!found)
            return false;
    }
    return true;
}

/*
 * Where cgroup path cg of a hierarchy (its controllers as /proc/PID/cgroup names them; "" for
 * cgroup v2) is in our mount namespace: the mount of that hierarchy whose root holds cg.
 */
static int cgroup_dir(const char *controllers, const char *cg, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char line[4096];
    int ret = -ENOENT;
    while (ret == -ENOENT && fgets(line, sizeof(line), f)) {
        /* id parent dev root mountpoint options [optional fields] - fstype source superoptions */
        char root[1024], mnt[1024], fstype[32], opts[1024];
        const char *tail = strstr(line, " - ");
        if (!tail || sscanf(line, "%*s %*s %*s %1023s %1023s", root, mnt) != 2 ||
            sscanf(tail + 3, "%31s %*s %1023s", fstype, opts) != 2)
            continue;
        bool v2 = !*controllers;
        if (strcmp(fstype, v2 ? "cgroup2" : "cgroup") != 0 ||
            (!v2 && !has_all_options(opts, controllers)))
            continue;
        size_t rlen = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (strncmp(cg, root, rlen) != 0 || (cg[rlen] != '/' && cg[rlen] != '\0'))
            continue; /* this mount shows another part of the hierarchy */
        ret = snprintf(out, size, "%s%s", mnt, cg + rlen) < (int)size ? 0 : -ENAMETOOLONG;
    }
    fclose(f);
    return ret;
}

static int move_pid_to(const char *dir, pid_t pid)
{
    char path[4096 + 16], num[16];
    if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int len = snprintf(num, sizeof(num), "%d", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = write(fd, num, (size_t)len) == len ? 0 : -errno;
    close(fd);
    return ret;
}

/* The path in the hierarchy "N:controllers:" of a /proc/PID/cgroup text, or NULL. */
static const char *cgroup_path_in(const char *text, const char *hierarchy)
{
    size_t hlen = strlen(hierarchy);
    for (const char *line = text; *line;) {
        if (strncmp(line, hierarchy, hlen) == 0)
            return line + hlen;
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return NULL;
}

/*
 * Moves pid into each cgroup of target's (the process our manager started) that it is not in
 * yet, hierarchy by hierarchy (cgroup v2, and each mounted v1 hierarchy); 0 or the first error.
 */
static int follow_cgroups(pid_t target, pid_t pid)
{
    char want[8192], have[8192], path[64], dir[4096];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)target);
    ssize_t n = read_proc_file(path, want, sizeof(want));
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    if (n >= 0)
        n = read_proc_file(path, have, sizeof(have));
    if (n < 0)
        return (int)n;
    int ret = 0;
    char *save = NULL;
    for (char *line = strtok_r(want, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        char hierarchy[256];
        if (snprintf(hierarchy, sizeof(hierarchy), "%.*s", (int)(c2 + 1 - line), line) >=
            (int)sizeof(hierarchy))
            continue;
        const char *now = cgroup_path_in(have, hierarchy), *cg = c2 + 1;
        size_t len = strlen(cg);
        if (now && strncmp(now, cg, len) == 0 && (now[len] == '\n' || now[len] == '\0'))
            continue;
        *c2 = '\0';
        int r = cgroup_dir(c1 + 1, cg, dir, sizeof(dir));
        if (r == -ENOENT)
            continue; /* not mounted here: nothing to follow */
        if (r == 0)
            r = move_pid_to(dir, pid);
        if (r < 0 && ret == 0) {
            log_warn("sandbox: cannot move the serving process into the cgroup %s of %s: %s", cg,
                     *(c1 + 1) ? c1 + 1 : "cgroup v2", strerror(-r));
            ret = r;
        }
    }
    return ret;
}

/*
 * In the monitor: the serving process asks to be where the process our manager started is
 * now (libvirt moves that one into the VM's cgroup after we started). The request's bytes
 * mean nothing: what moves (our own child) and where (the cgroups the kernel shows for the
 * started process) are the monitor's own knowledge, so a compromised serving process can only
 * make it do this again. The answer is sent without waiting: a serving process that never
 * reads its answers cannot block the monitor.
 */
static void answer_cgroup_request(const struct sandbox *sb)
{
    char buf[16];
    ssize_t n = recv(cgroup_mon, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) { /* the serving process is gone */
        close(cgroup_mon);
        cgroup_mon = -1;
        return;
    }
    char ok = follow_cgroups(sb->started_pid, child_pid) == 0;
    /* An unprivileged monitor is the intermediate of a user namespace: it follows too, so
     * that a serving process it starts again begins where it belongs. */
    if (sb->started_pid != getpid())
        follow_cgroups(sb->started_pid, getpid());
    if (send(cgroup_mon, &ok, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("sandbox: cgroup answer: %m");
}

int sandbox_follow_cgroup(void)
{
    if (cgroup_req < 0)
        return 0; /* no monitor: the process the manager placed is this one */
    char ask = 1, ok = 0;
    if (write(cgroup_req, &ask, 1) != 1)
        return -errno;
    struct pollfd p = {.fd = cgroup_req, .events = POLLIN};
    int n = poll(&p, 1, 2000);
    if (n <= 0)
        return n == 0 ? -ETIMEDOUT : -errno;
    n = (int)read(cgroup_req, &ok, 1);
    if (n != 1) { /* the monitor ended: we end with it (die_with_monitor) */
        close(cgroup_req);
        cgroup_req = -1;
        return -EPIPE;
    }
    return ok ? 0 : -EACCES;
}

/* The signal mask main() set (SIGTERM, SIGINT, SIGHUP blocked), without the monitor's SIGCHLD. */
static void unblock_sigchld(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/*
 * The launcher, a short-lived child of the monitor: it unshares a new PID namespace (the
 * monitor's own pid_for_children never changes, so it can do this again for every new
 * serving process; a namespace whose PID 1 died takes no new members), forks the serving
 * process as its PID 1, tells the monitor its pid and exits, handing it to the monitor.
 * Returns only in the serving process (role CONFINED): 0 or a negative errno.
 */
static int launch(struct sandbox *sb, int pid_pipe, int taken, int cgroup_fd,
                  enum sandbox_role *role)
{
    /* The monitor's own (a restarted serving process is forked from the monitor). */
    if (monitor_sigfd >= 0)
        close(monitor_sigfd);
    if (cgroup_mon >= 0)
        close(cgroup_mon);
    monitor_sigfd = cgroup_mon = -1;
    cgroup_req = cgroup_fd;
    close_inherited();
    if (unshare(CLONE_NEWPID) < 0) {
        fail("new PID namespace");
        _exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fail("fork");
        _exit(1);
    }
    if (pid > 0)
        _exit(write(pid_pipe, &pid, sizeof(pid)) == (ssize_t)sizeof(pid) ? 0 : 1);
    close(pid_pipe);
    *role = SANDBOX_CONFINED;
    accept_signals_as_init();
    unblock_sigchld();
    int ret = die_with_monitor(taken);
    return ret < 0 ? ret : confine_child(sb);
}

/*
 * Starts a serving process (through a launcher, see launch()): in the monitor, role MONITOR
 * and child_pid set; in the new process, role CONFINED and what confining it returned.
 */
static int spawn_server(struct sandbox *sb, enum sandbox_role *role)
{
    int pids[2], taken[2], cg[2] = {-1, -1};
    if (pipe2(pids, O_CLOEXEC) < 0)
        return fail("pipe");
    /* Without it the serving process stays in the cgroup it starts in (logged). */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cg) < 0)
        log_warn("sandbox: no cgroup channel to the serving process: %m");
    if (pipe2(taken, O_CLOEXEC) < 0) {
        close(pids[0]), close(pids[1]);
        return fail("pipe");
    }
    pid_t launcher = fork();
    if (launcher < 0) {
        int err = errno;
        close(pids[0]), close(pids[1]), close(taken[0]), close(taken[1]);
        if (cg[0] >= 0)
            close(cg[0]), close(cg[1]);
        errno = err;
        return fail("fork");
    }
    if (launcher == 0) {
        close(pids[0]);
        close(taken[1]);
        if (cg[0] >= 0)
            close(cg[0]);
        return launch(sb, pids[1], taken[0], cg[1], role);
    }
    *role = SANDBOX_MONITOR;
    close(pids[1]);
    close(taken[0]);
    if (cg[0] >= 0) {
        close(cg[1]);
        if (cgroup_mon >= 0)
            close(cgroup_mon); /* the last serving process's */
        cgroup_mon = cg[0];
    }
    pid_t server = -1;
    ssize_t n;
    while ((n = read(pids[0], &server, sizeof(server))) < 0 && errno == EINTR)
        ;
    close(pids[0]);
    /* Once the launcher is reaped, the server is our child (we are its subreaper). */
    while (waitpid(launcher, NULL, 0) < 0 && errno == EINTR)
        ;
    bool ok = n == (ssize_t)sizeof(server) && write(taken[1], "", 1) == 1;
    close(taken[1]); /* without the byte, the server ends (die_with_monitor) */
    if (!ok) {
        log_error("sandbox: could not start a serving process");
        return -ECHILD;
    }
    child_pid = server;
    return 0;
}

/* The monitor's signals (SIGTERM, SIGINT, SIGHUP are blocked by main already). */
static void block_monitor_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGCHLD);
    sigprocmask(SIG_BLOCK, set, NULL);
}

/*
 * Becomes the monitor of the serving processes: their subreaper, holding what building one
 * takes (caps_keep_for_monitor), and starts the first. Then, while it waits, the monitor
 * keeps its capabilities only permitted, or none when it will never restart.
 */
static int start_monitoring(struct sandbox *sb, enum sandbox_role *role)
{
    sigset_t set;
    block_monitor_signals(&set);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return fail("PR_SET_CHILD_SUBREAPER");
    if (pipe2(alive, O_CLOEXEC) < 0)
        return fail("pipe");
    int ret = caps_keep_for_monitor(sb->modcaps, sb->fh_caps);
    if (ret < 0)
        return ret;
    ret = spawn_server(sb, role);
    if (ret < 0 || *role == SANDBOX_CONFINED)
        return ret;
    can_restart = sb->max_restarts > 0;
    ret = can_restart ? caps_monitor_effective(false) : caps_drop_all();
    if (ret < 0)
        log_error("sandbox: the monitor could not lower its capabilities");
    return ret;
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
 * capabilities to build the rest), gets its id maps, then starts the serving process in a
 * new PID namespace and monitors it (restarting it), as the first monitor waits for the
 * intermediate (and cannot restart it: it holds no capability).
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
    if (!mapped && map_self(uid, gid) < 0)
        _exit(1);
    /* The intermediate monitors the serving processes: it holds capabilities in the user
     * namespace, which owns the PID namespaces it makes; the first monitor holds none. */
    sb->in_user_ns = true;
    ret = start_monitoring(sb, role);
    if (*role == SANDBOX_CONFINED)
        return ret;
    if (ret < 0)
        _exit(1);
    ret = sandbox_monitor(sb, role);
    if (*role == SANDBOX_CONFINED)
        return ret; /* a new serving process */
    _exit(ret);
}

static int enter_namespaces(struct sandbox *sb, enum sandbox_role *role)
{
    if (geteuid() != 0)
        return enter_user_namespace(sb, role);
    if (sb->n_uid_map || sb->n_gid_map)
        log_warn("sandbox: --uid-map/--gid-map apply only when started unprivileged; ignored");
    return start_monitoring(sb, role);
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
    sb->started_pid = getpid();
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Restarts within the last RESTART_WINDOW_MS, counting one now if within the budget. */
static bool count_restart(const struct sandbox *sb, unsigned *in_window)
{
    int64_t now = now_ms();
    unsigned max = sb->max_restarts, kept = n_restarts < max ? n_restarts : max;
    /* The oldest of the last max restarts: within the window, a new one would be one too many. */
    if (n_restarts >= max && now - restart_ms[n_restarts % max] < RESTART_WINDOW_MS)
        return false;
    *in_window = 1;
    for (unsigned i = 0; i < kept; i++)
        if (now - restart_ms[i] < RESTART_WINDOW_MS)
            (*in_window)++;
    restart_ms[n_restarts % max] = now;
    n_restarts++;
    return true;
}

/*
 * The serving process died of signal sig: starts a new one if this monitor can and the
 * budget allows. Returns in the new process (role CONFINED) what confining it returned; in
 * the monitor 0 when one was started, else the status to exit with.
 */
static int restart(struct sandbox *sb, int sig, enum sandbox_role *role)
{
    unsigned in_window = 0;
    if (!can_restart || stopping) {
        log_error("the serving process died of signal %d (%s)", sig, strsignal(sig));
        return 128 + sig;
    }
    if (sb->may_restart && !sb->may_restart(sb->restart_opaque)) {
        log_error("the serving process died of signal %d (%s) before it took over from the "
                  "running daemon (--upgrade), which goes on serving: exiting",
                  sig, strsignal(sig));
        return 128 + sig;
    }
    if (!count_restart(sb, &in_window)) {
        log_error("the serving process died of signal %d (%s); %u restarts within %d s "
                  "already (--max-restarts): exiting",
                  sig, strsignal(sig), sb->max_restarts, RESTART_WINDOW_MS / 1000);
        return 128 + sig;
    }
    log_error("the serving process died of signal %d (%s); starting a new one (restart %u, "
              "%u within %d s, at most %u)",
              sig, strsignal(sig), n_restarts, in_window, RESTART_WINDOW_MS / 1000,
              sb->max_restarts);
    int ret = caps_monitor_effective(true);
    sb->restarts = n_restarts;
    if (ret == 0)
        ret = spawn_server(sb, role);
    if (*role == SANDBOX_CONFINED)
        return ret;
    if (caps_monitor_effective(false) < 0 && ret == 0) {
        log_error("sandbox: the monitor could not lower its capabilities");
        kill(child_pid, SIGKILL); /* reaped below: the monitor then ends */
        can_restart = false;
    }
    return ret < 0 ? 128 + sig : 0;
}

/* Waits for the monitor's next signal, answering cgroup requests meanwhile; 0: none yet. */
static int next_signal(const struct sandbox *sb, const sigset_t *set)
{
    if (monitor_sigfd < 0) {
        siginfo_t si;
        return sigwaitinfo(set, &si);
    }
    static bool answered;
    /* What answering ran (libc's stdio, /proc parsing) goes back before the next wait. */
    if (answered)
        idle_mem_release();
    answered = false;
    struct pollfd p[2] = {{.fd = monitor_sigfd, .events = POLLIN},
                          {.fd = cgroup_mon, .events = POLLIN}};
    if (poll(p, 2, -1) < 0)
        return 0;
    if (p[1].revents) {
        answer_cgroup_request(sb);
        answered = true;
    }
    struct signalfd_siginfo si;
    if ((p[0].revents & POLLIN) && read(monitor_sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        return (int)si.ssi_signo;
    return 0;
}

int sandbox_monitor(struct sandbox *sb, enum sandbox_role *role)
{
    *role = SANDBOX_MONITOR;
    /*
     * Waiting, passing signals on to our own child and (in main) removing the socket file
     * need no capability. A monitor that restarts the serving process keeps, permitted but
     * not effective, what building one takes (start_monitoring). It never reads anything
     * from the guest or the front-end: its only inputs are its child's exit status, signals,
     * and the serving process's requests to follow its cgroup (answer_cgroup_request: what
     * moves and where are the monitor's own); the listening socket it holds it never accepts on.
     */
    if (!can_restart && caps_drop_all() < 0)
        log_warn("sandbox: the monitor could not drop its capabilities");
    sigset_t set;
    block_monitor_signals(&set);
    /* Signals and the serving process's cgroup requests, in one poll. */
    if (monitor_sigfd < 0 && (monitor_sigfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
        log_warn("sandbox: signalfd: %m; the serving process will not follow our cgroup");
    /* From here on the monitor only waits: what start-up used goes back (idle_mem.h). */
    idle_mem_release();
    for (;;) {
        int status;
        pid_t r;
        /* Launchers are reaped where they are forked; anything else is not ours to judge. */
        while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
            if (r != child_pid)
                continue;
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            int ret = restart(sb, WTERMSIG(status), role);
            if (ret != 0 || *role == SANDBOX_CONFINED)
                return ret;
            idle_mem_release(); /* what starting a new serving process used */
        }
        int sig = next_signal(sb, &set);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
            stopping = true;
            kill(child_pid, sig);
        }
    }
}
