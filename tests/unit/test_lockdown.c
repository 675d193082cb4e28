/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seccomp filter and capability dropping, each applied in a forked child so the test
 * process itself stays unrestricted.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "seccomp_filter.h"

/* Runs fn in a child with stderr captured; returns the wait status. */
static int run_child(void (*fn)(void *), void *arg, char *err, size_t errlen)
{
    int pipefd[2];
    g_assert_cmpint(pipe(pipefd), ==, 0);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        fn(arg);
        _exit(0);
    }
    close(pipefd[1]);
    ssize_t n = read(pipefd[0], err, errlen - 1);
    err[n > 0 ? n : 0] = '\0';
    close(pipefd[0]);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return status;
}

/* getppid is not on the allow-list: the daemon never asks for its parent. */
static void call_forbidden(void *arg)
{
    enum seccomp_mode mode = *(enum seccomp_mode *)arg;
    if (seccomp_install(mode) < 0)
        _exit(3);
    syscall(SYS_getppid);
    _exit(0);
}

static void test_seccomp_kill(void)
{
    enum seccomp_mode mode = SECCOMP_KILL;
    char err[512];
    int status = run_child(call_forbidden, &mode, err, sizeof(err));
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGSYS);
}

static void test_seccomp_log(void)
{
    enum seccomp_mode mode = SECCOMP_LOG;
    char err[512];
    int status = run_child(call_forbidden, &mode, err, sizeof(err));
    g_assert_true(WIFEXITED(status)); /* logged by the kernel, allowed to proceed */
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

static void test_seccomp_trap(void)
{
    enum seccomp_mode mode = SECCOMP_TRAP;
    char err[512];
    int status = run_child(call_forbidden, &mode, err, sizeof(err));
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGSYS);
    g_assert_nonnull(strstr(err, "blocked system call getppid"));
}

static void test_seccomp_allow_list(void)
{
    bool has_openat = false, has_getppid = false;
    for (const char *const *names = seccomp_allowed_syscalls(); *names; names++) {
        has_openat |= strcmp(*names, "openat") == 0;
        has_getppid |= strcmp(*names, "getppid") == 0;
    }
    g_assert_true(has_openat);
    g_assert_false(has_getppid);
}

/* ---- argument filters: each probe runs under the kill-mode filter in a child ---- */
static void *thread_body(void *arg)
{
    return arg;
}

static void probe_thread(void)
{
    pthread_t t;
    void *ret = NULL;
    /* clone3 answers ENOSYS; glibc falls back to clone with CLONE_THREAD, which is allowed. */
    if (pthread_create(&t, NULL, thread_body, (void *)7) != 0 || pthread_join(t, &ret) != 0 ||
        ret != (void *)7)
        _exit(5);
}
static void probe_clone3_enosys(void)
{
    if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
        _exit(5);
}
static void probe_fork(void)
{
    syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}
static void probe_thread_in_new_userns(void)
{
    syscall(SYS_clone, CLONE_THREAD | CLONE_SIGHAND | CLONE_VM | CLONE_NEWUSER, 0, 0, 0, 0);
}
static void probe_unshare_fs(void)
{
    if (unshare(CLONE_FS) != 0)
        _exit(5);
}
static void probe_unshare_userns(void)
{
    unshare(CLONE_NEWUSER);
}
/* Made before the filter is installed: pipe2 and socketpair are not on the allow-list. */
static int probe_pipe[2], probe_socks[2];

static void probe_ioctl_tcgets(void)
{
    struct termios t;
    if (ioctl(probe_pipe[0], TCGETS, &t) != -1 || errno != ENOTTY)
        _exit(5);
}
static void probe_ioctl_tiocsti(void)
{
    char c = 'x';
    ioctl(STDIN_FILENO, TIOCSTI, &c);
}
static void probe_prctl_name(void)
{
    if (prctl(PR_SET_NAME, "probe") != 0)
        _exit(5);
}
static void probe_prctl_dumpable(void)
{
    prctl(PR_SET_DUMPABLE, 1);
}
static void probe_shutdown_rdwr(void)
{
    if (shutdown(probe_socks[0], SHUT_RDWR) != 0)
        _exit(5);
}
static void probe_shutdown_rd(void)
{
    shutdown(probe_socks[0], SHUT_RD);
}

static void run_probe(void *arg)
{
    if (pipe(probe_pipe) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, probe_socks) != 0 ||
        seccomp_install(SECCOMP_KILL) < 0)
        _exit(3);
    ((void (*)(void))arg)();
    _exit(0);
}

static void test_seccomp_arguments(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* The sanitizer runtime makes calls of its own (sigaltstack, thread set-up) that the
     * daemon's filter never sees: sanitizer builds run the daemon without it. */
    g_test_skip("the sanitizer runtime is not the daemon");
    return;
#endif
    static const struct {
        const char *name;
        void (*probe)(void);
        bool allowed;
    } probes[] = {
        {"pthread_create", probe_thread, true},
        {"clone3 -> ENOSYS", probe_clone3_enosys, true},
        {"fork", probe_fork, false},
        {"clone(CLONE_THREAD|CLONE_NEWUSER)", probe_thread_in_new_userns, false},
        {"unshare(CLONE_FS)", probe_unshare_fs, true},
        {"unshare(CLONE_NEWUSER)", probe_unshare_userns, false},
        {"ioctl(TCGETS)", probe_ioctl_tcgets, true},
        {"ioctl(TIOCSTI)", probe_ioctl_tiocsti, false},
        {"prctl(PR_SET_NAME)", probe_prctl_name, true},
        {"prctl(PR_SET_DUMPABLE)", probe_prctl_dumpable, false},
        {"shutdown(SHUT_RDWR)", probe_shutdown_rdwr, true},
        {"shutdown(SHUT_RD)", probe_shutdown_rd, false},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(probes); i++) {
        char err[512];
        g_test_message("%s", probes[i].name);

        int status = run_child(run_probe, (void *)probes[i].probe, err, sizeof(err));
        if (probes[i].allowed) {
            g_assert_true(WIFEXITED(status));
            g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        } else {
            g_assert_true(WIFSIGNALED(status));
            g_assert_cmpint(WTERMSIG(status), ==, SIGSYS);
        }
    }
}

static unsigned long long cap_field(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    g_assert_nonnull(f);
    char line[256];
    unsigned long long v = ~0ull;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtoull(line + strlen(field), NULL, 16);
    fclose(f);
    return v;
}

static void drop_and_report(void *arg)
{
    if (caps_drop(arg, true) < 0)
        _exit(3);
    /* Report through the exit path: 0 only if every check holds. */
    unsigned long long want = (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) |
                              (1ull << CAP_FOWNER) | (1ull << CAP_FSETID) | (1ull << CAP_SETGID) |
                              (1ull << CAP_SETUID) | (1ull << CAP_MKNOD) | (1ull << CAP_SETFCAP);
    if (arg) /* "+sys_admin:-mknod" */
        want = (want | (1ull << CAP_SYS_ADMIN)) & ~(1ull << CAP_MKNOD);
    if (cap_field("CapEff:") != want || cap_field("CapPrm:") != want ||
        cap_field("CapBnd:") != want || cap_field("NoNewPrivs:") != 1)
        _exit(4);
    _exit(0);
}

static void test_caps_drop(void)
{
    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
    char err[512];
    int status = run_child(drop_and_report, NULL, err, sizeof(err));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    status = run_child(drop_and_report, "+sys_admin:-mknod", err, sizeof(err));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

static void test_modcaps_validation(void)
{
    g_assert_cmpint(caps_check_modcaps("+sys_admin:-MKNOD:+cap_chown"), ==, 0);
    g_assert_cmpint(caps_check_modcaps("sys_admin"), ==, -EINVAL);
    g_assert_cmpint(caps_check_modcaps("+no_such_cap"), ==, -EINVAL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/seccomp/kill", test_seccomp_kill);
    g_test_add_func("/seccomp/log", test_seccomp_log);
    g_test_add_func("/seccomp/trap", test_seccomp_trap);
    g_test_add_func("/seccomp/allow-list", test_seccomp_allow_list);
    g_test_add_func("/seccomp/arguments", test_seccomp_arguments);
    g_test_add_func("/caps/drop", test_caps_drop);
    g_test_add_func("/caps/modcaps", test_modcaps_validation);
    return g_test_run();
}
