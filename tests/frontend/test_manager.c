/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon under a manager (libvirt, systemd socket activation, Kata): started with --fd
 * and with the manager's own fds (libvirt's locked pid file), it exits when its front-end
 * disconnects (--on-disconnect), holds the manager's fds in the process that was started for
 * exactly as long as it runs and nowhere else, and its serving process follows the process
 * that was started into the cgroup the manager moves it to.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

/* The sanitizer builds run the daemon without its namespace sandbox (no monitor). */
#if defined(__SANITIZE_ADDRESS__)
#define NO_MONITOR 1
#else
#define NO_MONITOR 0
#endif

struct managed {
    gchar *dir, *socket, *log, *pidfile;
    pid_t pid;
};

static int listening_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    g_strlcpy(a.sun_path, path, sizeof(a.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    return fd;
}

/*
 * Starts the daemon as libvirt does: a listening socket passed with --fd, and a pid file the
 * child locks (a POSIX write lock) and writes its pid into before exec, its fd kept open
 * across exec. Without --fd in extra (socket_path true), with --socket-path instead.
 */
static void start_managed(struct managed *m, bool socket_path, const char *const *extra)
{
    m->dir = g_dir_make_tmp("vfs-mgr-XXXXXX", NULL);
    m->socket = g_build_filename(m->dir, "sock", NULL);
    m->log = g_build_filename(m->dir, "log", NULL);
    m->pidfile = g_build_filename(m->dir, "vm-fs0.pid", NULL);
    int lfd = socket_path ? -1 : listening_socket(m->socket);
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(test_daemon_path()));
    if (lfd >= 0)
        g_ptr_array_add(argv, g_strdup_printf("--fd=%d", lfd));
    else
        g_ptr_array_add(argv, g_strdup_printf("--socket-path=%s", m->socket));
    g_ptr_array_add(argv, g_strdup_printf("--shared-dir=%s", m->dir));
    for (const char *const *a = extra; a && *a; a++)
        g_ptr_array_add(argv, g_strdup(*a));
#if NO_MONITOR
    g_ptr_array_add(argv, g_strdup("--sandbox=none"));
    g_ptr_array_add(argv, g_strdup("--seccomp=none"));
#endif
    g_ptr_array_add(argv, NULL);
    m->pid = fork();
    g_assert_cmpint(m->pid, >=, 0);
    if (m->pid == 0) {
        int log = open(m->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        dup2(log, 1);
        dup2(log, 2);
        int pf = open(m->pidfile, O_RDWR | O_CREAT, 0644); /* no O_CLOEXEC: inherited */
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1};
        char text[32];
        int len = snprintf(text, sizeof(text), "%d\n", (int)getpid());
        if (pf < 0 || fcntl(pf, F_SETLK, &fl) < 0 || write(pf, text, (size_t)len) != len)
            _exit(126);
        if (lfd >= 0)
            fcntl(lfd, F_SETFD, 0);
        execv(argv->pdata[0], (char **)argv->pdata);
        _exit(127);
    }
    if (lfd >= 0)
        close(lfd);
    g_ptr_array_free(argv, TRUE);
}

static void managed_free(struct managed *m)
{
    gchar *cmd = g_strdup_printf("rm -rf '%s'", m->dir);
    g_assert_cmpint(system(cmd), ==, 0);
    g_free(cmd);
    g_free(m->dir), g_free(m->socket), g_free(m->log), g_free(m->pidfile);
}

/* Waits up to timeout_ms for pid to end: its status (128 + signal if killed), -1 if it runs. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        g_assert_cmpint(r, >=, 0);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(5000);
    }
    return -1;
}

static int term_and_wait(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = wait_exit(pid, 10000);
    g_assert_cmpint(st, >=, 0);
    return st;
}

static struct fe *session(const char *socket_path)
{
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_session(socket_path, 5000, &fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, ".", &e), ==, 0);
    return fe;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The pid holding a POSIX lock on byte 0 of path (F_GETLK from this process), 0 if none. */
static pid_t lock_holder(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1};
    g_assert_cmpint(fcntl(fd, F_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type == F_UNLCK ? 0 : fl.l_pid;
}

/* Whether an fd of pid leads to path. */
static bool holds_file(pid_t pid, const char *path)
{
    gchar *dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    GDir *d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    bool found = false;
    for (const char *n; !found && (n = g_dir_read_name(d));) {
        gchar *link = g_build_filename(dir, n, NULL);
        gchar *target = g_file_read_link(link, NULL);
        found = target && strcmp(target, path) == 0;
        g_free(target);
        g_free(link);
    }
    g_dir_close(d);
    g_free(dir);
    return found;
}

/* Whether pid is PID 1 of a PID namespace of its own: a serving process of the namespace
 * sandbox, not the short-lived launcher that forks it (also a child of the monitor). */
static bool is_ns_init(pid_t pid)
{
    gchar *path = g_strdup_printf("/proc/%d/status", (int)pid), *text = NULL;
    bool init = false;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strstr(text, "NSpid:");
        if (p) {
            gchar *line = g_strndup(p + 6, strcspn(p + 6, "\n"));
            gchar **f = g_strsplit_set(g_strstrip(line), " \t", -1);
            guint n = 0;
            for (gchar **x = f; *x; x++)
                if (**x)
                    n++;
            init = n >= 2 && strcmp(f[g_strv_length(f) - 1], "1") == 0;
            g_strfreev(f);
            g_free(line);
        }
    }
    g_free(text);
    g_free(path);
    return init;
}

/* The monitor's serving process other than not_this (waits up to 5 s); -1 if none. */
static pid_t serving_pid(pid_t monitor, pid_t not_this)
{
    for (int i = 0; i < 1000; i++) {
        pid_t p = test_serving_pid(monitor);
        if (p != monitor && p != not_this && is_ns_init(p))
            return p;
        usleep(5000);
    }
    return -1;
}

/* ---- --on-disconnect -------------------------------------------------------------------- */

/* libvirt's case: --fd, the default. The daemon ends when the front-end goes, with status 0,
 * soon enough that the manager finds its pid file lock free when it looks right after. */
static void test_fd_exits_on_disconnect(void)
{
    struct managed m;
    start_managed(&m, false, NULL);
    struct fe *fe = session(m.socket);
    g_assert_cmpint(lock_holder(m.pidfile), ==, m.pid);
    g_assert_cmpint(wait_exit(m.pid, 0), ==, -1); /* serving */
    int64_t t0 = now_ms();
    fe_close(fe);
    g_assert_cmpint(wait_exit(m.pid, 5000), ==, 0);
    int64_t took = now_ms() - t0;
    g_test_message("exited %lld ms after the disconnect", (long long)took);
    g_assert_cmpint(lock_holder(m.pidfile), ==, 0);
    gchar *log = NULL;
    g_assert_true(g_file_get_contents(m.log, &log, NULL, NULL));
    g_assert_nonnull(strstr(log, "exiting (--on-disconnect=exit)"));
    g_free(log);
    managed_free(&m);
}

/* systemd socket activation kept running: --on-disconnect=listen serves the next one too. */
static void test_fd_listen(void)
{
    struct managed m;
    const char *args[] = {"--on-disconnect=listen", NULL};
    start_managed(&m, false, args);
    fe_close(session(m.socket));
    fe_close(session(m.socket));
    g_assert_cmpint(wait_exit(m.pid, 200), ==, -1);
    g_assert_cmpint(term_and_wait(m.pid), ==, 0);
    managed_free(&m);
}

/* --socket-path keeps listening by default; with exit it ends and removes its files. */
static void test_socket_path(void)
{
    struct managed m;
    start_managed(&m, true, NULL);
    fe_close(session(m.socket));
    fe_close(session(m.socket));
    g_assert_cmpint(wait_exit(m.pid, 200), ==, -1);
    g_assert_cmpint(term_and_wait(m.pid), ==, 0);
    managed_free(&m);

    const char *args[] = {"--on-disconnect=exit", NULL};
    start_managed(&m, true, args);
    fe_close(session(m.socket));
    g_assert_cmpint(wait_exit(m.pid, 5000), ==, 0);
    g_assert_cmpint(access(m.socket, F_OK), !=, 0);
    gchar *lock = g_strconcat(m.socket, ".pid", NULL);
    g_assert_cmpint(access(lock, F_OK), !=, 0);
    g_free(lock);
    managed_free(&m);
}

static void test_bad_value(void)
{
    gchar *out = NULL, *err = NULL;
    gint status = -1;
    const char *argv[] = {test_daemon_path(), "--fd=3", "--shared-dir=/", "--on-disconnect=stay",
                          NULL};
    g_assert_true(g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, NULL));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 2);
    g_assert_nonnull(strstr(err, "exit, listen"));
    g_free(out), g_free(err);
}

/* A second front-end refused during a session is not the session's end. */
static void test_refused_is_no_disconnect(void)
{
    struct managed m;
    start_managed(&m, false, NULL);
    struct fe *fe = session(m.socket);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    g_strlcpy(a.sun_path, m.socket, sizeof(a.sun_path));
    g_assert_cmpint(connect(s, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    char c;
    g_assert_cmpint(read(s, &c, 1), ==, 0); /* turned away */
    close(s);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, ".", &e), ==, 0);
    g_assert_cmpint(wait_exit(m.pid, 0), ==, -1);
    fe_close(fe);
    g_assert_cmpint(wait_exit(m.pid, 5000), ==, 0);
    managed_free(&m);
}

/* Exit mode and the crash-restart monitor: the serving process killed, a new one serves the
 * front-end that reconnects, and its disconnect ends the daemon. */
/*
 * A managed daemon in exit mode with a front-end in session, whose serving process was just
 * killed (its pid in *first). False, and the test skipped, where there is no monitor.
 */
static bool serving_killed(struct managed *m, struct fe **fe, pid_t *first)
{
    if (NO_MONITOR) {
        g_test_skip("no monitor in sanitizer builds");
        return false;
    }
    start_managed(m, false, NULL);
    *fe = session(m->socket);
    *first = serving_pid(m->pid, -1);
    g_assert_cmpint(*first, >, 0);
    g_assert_cmpint(kill(*first, SIGKILL), ==, 0);
    return true;
}

static void test_exit_after_restart(void)
{
    struct managed m;
    struct fe *fe;
    pid_t first;
    if (!serving_killed(&m, &fe, &first))
        return;
    g_assert_cmpint(serving_pid(m.pid, first), >, 0);
    g_assert_cmpint(wait_exit(m.pid, 0), ==, -1);
    fe_close(fe);
    fe_close(session(m.socket)); /* the front-end reconnects, then leaves */
    g_assert_cmpint(wait_exit(m.pid, 5000), ==, 0);
    g_assert_cmpint(lock_holder(m.pidfile), ==, 0);
    managed_free(&m);
}

/* The same, but the front-end never comes back (a VMM without reconnect=): the restarted
 * serving process gives up after 30 s and the daemon exits with status 1, rather than being
 * left for its manager to kill. */
static void test_no_reconnect_after_restart(void)
{
    struct managed m;
    struct fe *fe;
    pid_t first;
    if (!serving_killed(&m, &fe, &first))
        return;
    fe_close(fe);
    int64_t t0 = now_ms();
    g_assert_cmpint(wait_exit(m.pid, 40000), ==, 1);
    int64_t waited = now_ms() - t0;
    g_assert_cmpint(waited, >=, 29000);
    gchar *log = NULL;
    g_assert_true(g_file_get_contents(m.log, &log, NULL, NULL));
    g_assert_nonnull(strstr(log, "did not reconnect"));
    g_free(log);
    g_assert_cmpint(lock_holder(m.pidfile), ==, 0);
    managed_free(&m);
}

/* ---- inherited fds ---------------------------------------------------------------------- */

/* The manager's locked pid file: held (open and locked) by the process it started while the
 * daemon runs, whatever sessions come and go; never in the sandboxed serving process. */
static void check_inherited(bool namespace_sandbox)
{
    struct managed m;
    const char *none[] = {"--sandbox=none", "--on-disconnect=listen", NULL};
    const char *listen[] = {"--on-disconnect=listen", NULL};
    start_managed(&m, false, namespace_sandbox ? listen : none);
    fe_close(session(m.socket));
    struct fe *fe = session(m.socket);
    pid_t serving = namespace_sandbox ? serving_pid(m.pid, -1) : m.pid;
    g_assert_true(holds_file(m.pid, m.pidfile));
    g_assert_cmpint(lock_holder(m.pidfile), ==, m.pid);
    if (namespace_sandbox) {
        g_assert_cmpint(serving, !=, m.pid);
        g_assert_false(holds_file(serving, m.pidfile));
    }
    fe_close(fe);
    g_assert_cmpint(lock_holder(m.pidfile), ==, m.pid);
    g_assert_cmpint(term_and_wait(m.pid), ==, 0);
    g_assert_cmpint(lock_holder(m.pidfile), ==, 0);
    managed_free(&m);
}

static void test_inherited_namespace(void)
{
    if (NO_MONITOR) {
        g_test_skip("no monitor in sanitizer builds");
        return;
    }
    check_inherited(true);
}

static void test_inherited_none(void)
{
    check_inherited(false);
}

/* ---- cgroups ---------------------------------------------------------------------------- */

/* The cgroup v2 mount point, or NULL. */
static gchar *cgroup2_mount(void)
{
    gchar *text = NULL;
    gchar *mnt = NULL;
    if (!g_file_get_contents("/proc/self/mountinfo", &text, NULL, NULL))
        return NULL;
    gchar **lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l && !mnt; l++) {
        char root[1024], point[1024], fstype[64];
        const char *tail = strstr(*l, " - ");
        if (tail && sscanf(*l, "%*s %*s %*s %1023s %1023s", root, point) == 2 &&
            sscanf(tail + 3, "%63s", fstype) == 1 && strcmp(fstype, "cgroup2") == 0 &&
            strcmp(root, "/") == 0)
            mnt = g_strdup(point);
    }
    g_strfreev(lines);
    g_free(text);
    return mnt;
}

/* pid's cgroup v2 path ("0::" line), or NULL. */
static gchar *cgroup2_of(pid_t pid)
{
    gchar *path = g_strdup_printf("/proc/%d/cgroup", (int)pid);
    gchar *text = NULL, *cg = NULL;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strstr(text, "0::");
        if (p && (p == text || p[-1] == '\n'))
            cg = g_strndup(p + 3, strcspn(p + 3, "\n"));
    }
    g_free(text);
    g_free(path);
    return cg;
}

/* Moves pid into the cgroup dir, as a manager does (cgroupfs takes one write of the pid). */
static bool write_pid(const char *dir, pid_t pid)
{
    gchar *procs = g_build_filename(dir, "cgroup.procs", NULL);
    gchar *num = g_strdup_printf("%d", (int)pid);
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && write(fd, num, strlen(num)) == (ssize_t)strlen(num);
    if (fd >= 0)
        close(fd);
    g_free(num);
    g_free(procs);
    return ok;
}

/*
 * libvirt's way: the daemon started in one cgroup, then the process it started moved into
 * the VM's. At the next front-end connection the serving process is in the new cgroup too.
 */
static void test_cgroup_follows(void)
{
    if (NO_MONITOR) {
        g_test_skip("no monitor in sanitizer builds");
        return;
    }
    gchar *mnt = cgroup2_mount();
    gchar *ours = cgroup2_of(getpid());
    if (!mnt || !ours) {
        g_test_skip("no cgroup v2 mount");
        g_free(mnt), g_free(ours);
        return;
    }
    gchar *name = g_strdup_printf("vfs-test-%d", (int)getpid());
    gchar *start = g_build_filename(mnt, ours, name, NULL);
    gchar *vm = g_strconcat(start, "-vm", NULL);
    if (mkdir(start, 0755) < 0 || mkdir(vm, 0755) < 0 || !write_pid(start, getpid())) {
        g_test_skip("cgroup v2 is not writable here");
        rmdir(vm), rmdir(start);
        g_free(mnt), g_free(ours), g_free(name), g_free(start), g_free(vm);
        return;
    }
    struct managed m;
    start_managed(&m, false, NULL);
    /* Back where we were: the daemon starts in "start", we do not stay there. */
    gchar *home = g_build_filename(mnt, ours, NULL);
    g_assert_true(write_pid(home, getpid()));
    struct fe *fe = session(m.socket); /* the first session: both in "start" */
    pid_t serving = serving_pid(m.pid, -1);
    g_assert_cmpint(serving, >, 0);
    gchar *cg = cgroup2_of(serving);
    g_assert_true(g_str_has_suffix(cg, name));
    g_free(cg);
    fe_close(fe);
    g_assert_cmpint(wait_exit(m.pid, 5000), ==, 0);
    managed_free(&m);

    /* Again, moved as libvirt moves it: after start-up, before the front-end connects. */
    start_managed(&m, false, NULL);
    g_assert_true(write_pid(home, getpid()));
    serving = serving_pid(m.pid, -1);
    g_assert_cmpint(serving, >, 0);
    g_assert_true(write_pid(vm, m.pid));
    cg = cgroup2_of(serving);
    g_assert_false(g_str_has_suffix(cg, "-vm")); /* not yet */
    g_free(cg);
    fe = session(m.socket);
    cg = cgroup2_of(serving);
    gchar *want = cgroup2_of(m.pid);
    g_assert_true(g_str_has_suffix(want, "-vm"));
    g_assert_cmpstr(cg, ==, want);
    g_free(cg), g_free(want);
    fe_close(fe);
    g_assert_cmpint(wait_exit(m.pid, 5000), ==, 0);
    managed_free(&m);

    g_assert_cmpint(rmdir(vm), ==, 0);
    g_assert_cmpint(rmdir(start), ==, 0);
    g_free(home);
    g_free(mnt), g_free(ours), g_free(name), g_free(start), g_free(vm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/manager/fd-exits-on-disconnect", test_fd_exits_on_disconnect);
    g_test_add_func("/manager/fd-listen", test_fd_listen);
    g_test_add_func("/manager/socket-path", test_socket_path);
    g_test_add_func("/manager/bad-value", test_bad_value);
    g_test_add_func("/manager/refused-is-no-disconnect", test_refused_is_no_disconnect);
    g_test_add_func("/manager/exit-after-restart", test_exit_after_restart);
    g_test_add_func("/manager/no-reconnect-after-restart", test_no_reconnect_after_restart);
    g_test_add_func("/manager/inherited-fds-namespace", test_inherited_namespace);
    g_test_add_func("/manager/inherited-fds-none", test_inherited_none);
    g_test_add_func("/manager/cgroup-follows", test_cgroup_follows);
    return g_test_run();
}
