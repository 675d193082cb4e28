/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int enter_namespaces(struct sandbox *sb, enum sandbox_role *role)
{
    if (geteuid() != 0) {
        log_error("sandbox: --sandbox=namespace needs root (or use --sandbox=none)");
        return -EPERM;
    }
    if (unshare(CLONE_NEWPID) < 0)
        return fail("unshare PID namespace");
    pid_t pid = fork();
    if (pid < 0)
        return fail("fork");
    if (pid > 0) {
        child_pid = pid;
        *role = SANDBOX_MONITOR;
        return 0;
    }
    /*
     * As PID 1 of its namespace the child only receives signals it has a handler for; the
     * handler never runs (the signals stay blocked for signalfd) but lets them through.
     */
    struct sigaction sa = {.sa_handler = ignore_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    *role = SANDBOX_CONFINED;
    return confine_child(sb);
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
