/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The namespace sandbox's monitor restarts a serving process that dies of a signal
 * (--max-restarts): the listening socket stays open all along, so a connect made while no
 * serving process exists succeeds and is served by the next one; a new front-end session
 * works; the serving process is a new one each time; restarts beyond --max-restarts end the
 * daemon with 128 + the signal; --max-restarts=0, a normal exit of the serving process and a
 * SIGTERM to the daemon end it as before. As root, and unprivileged (the user namespace).
 */
#include <dirent.h>
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
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define Q       1
#define CONTENT "the same file, read by every serving process"

static bool can_run(void)
{
    if (geteuid() != 0) {
        g_test_skip("needs root (the namespace sandbox, or a switch to an unprivileged user)");
        return false;
    }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_test_skip("sanitizer builds run the daemon without its sandbox (no monitor)");
    return false;
#endif
    return true;
}

/* The only child of pid (0 if none): /proc/PID/task/PID/children. */
static pid_t child_of(pid_t pid)
{
    gchar *path = g_strdup_printf("/proc/%d/task/%d/children", (int)pid, (int)pid);
    gchar *text = NULL;
    pid_t child = 0;
    if (g_file_get_contents(path, &text, NULL, NULL))
        child = (pid_t)atoi(text);
    g_free(text);
    g_free(path);
    return child;
}

/* The process that serves: the monitor's child; unprivileged, the intermediate's child. */
static pid_t monitor_of(const struct test_daemon *d, bool userns)
{
    return userns ? child_of(d->pid) : d->pid;
}

/* The state letter of /proc/PID/stat ('Z' for a zombie), or 0 once the pid is gone. */
static char proc_state(pid_t pid)
{
    gchar *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    gchar *text = NULL;
    char state = 0;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strrchr(text, ')');
        state = p && p[1] == ' ' ? p[2] : 0;
    }
    g_free(text);
    g_free(path);
    return state;
}

/* True if a and b are in the same PID namespace (false if either is gone). */
static bool same_pid_ns(pid_t a, pid_t b)
{
    char pa[64], pb[64], la[64] = "", lb[64] = "";
    snprintf(pa, sizeof(pa), "/proc/%d/ns/pid", (int)a);
    snprintf(pb, sizeof(pb), "/proc/%d/ns/pid", (int)b);
    return readlink(pa, la, sizeof(la) - 1) > 0 && readlink(pb, lb, sizeof(lb) - 1) > 0 &&
           strcmp(la, lb) == 0;
}

/* Waits until the monitor has a serving child other than old (in a PID namespace of its
 * own: not the launcher that briefly comes before it); returns it. */
static pid_t wait_new_server(pid_t monitor, pid_t old)
{
    for (int i = 0; i < 500; i++) {
        pid_t s = child_of(monitor);
        if (s > 0 && s != old && proc_state(s) != 'Z' && !same_pid_ns(s, monitor) &&
            proc_state(s) != 0)
            return s;
        usleep(10000);
    }
    return 0;
}

/* The lockdown lines of pid's status (capability sets, no_new_privs, seccomp), and its user
 * ids: a restarted server must have the first one's. */
static gchar *lockdown_of(pid_t pid)
{
    gchar *path = g_strdup_printf("/proc/%d/status", (int)pid);
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    GString *out = g_string_new("");
    gchar **lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l; l++)
        if (g_str_has_prefix(*l, "Cap") || g_str_has_prefix(*l, "NoNewPrivs:") ||
            g_str_has_prefix(*l, "Seccomp:") || g_str_has_prefix(*l, "Uid:"))
            g_string_append_printf(out, "%s\n", *l);
    g_strfreev(lines);
    g_free(text);
    g_free(path);
    return g_string_free(out, FALSE);
}

/* A plain connect to the socket: 0, or the negative errno (ECONNREFUSED: nobody listens). */
static int plain_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(fd, >=, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    g_strlcpy(a.sun_path, path, sizeof(a.sun_path));
    int ret = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : -errno;
    close(fd);
    return ret;
}

/* A session on fe (set up): INIT, LOOKUP of "file", OPEN and READ of its content. */
static void assert_session_works(struct fe *fe)
{
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "file", &e), ==, 0);
    g_assert_cmpuint(e.attr.size, ==, strlen(CONTENT));
    struct fuse_open_in oi = {.flags = O_RDONLY};
    struct iovec iov = {&oi, sizeof(oi)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_OPEN, e.nodeid, &iov, 1, sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct fuse_read_in ri = {.fh = ((struct fuse_open_out *)r.data)->fh, .size = 4096};
    iov = (struct iovec){&ri, sizeof(ri)};
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_READ, e.nodeid, &iov, 1, 4096, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(r.len - sizeof(struct fuse_out_header), ==, strlen(CONTENT));
    g_assert_cmpmem(r.data, strlen(CONTENT), CONTENT, strlen(CONTENT));
}

static void put_file(const struct test_daemon *d)
{
    gchar *path = g_build_filename(d->share, "file", NULL);
    g_assert_true(g_file_set_contents(path, CONTENT, -1, NULL));
    g_assert_cmpint(chmod(path, 0644), ==, 0);
    g_free(path);
}

/* The daemon has exited (within 5 s); its status. */
static int wait_exit(struct test_daemon *d)
{
    for (int i = 0; i < 500 && test_daemon_alive(d); i++)
        usleep(10000);
    g_assert_false(test_daemon_alive(d));
    return -d->pid - 1; /* as test_daemon_alive records it */
}

/*
 * Kills the serving process with the monitor stopped, so that for a while no process serves
 * at all: a connect then must succeed (never ECONNREFUSED: the socket is the monitor's) and
 * the connection made then is served once the monitor goes on. Returns the new server.
 */
static pid_t kill_and_reconnect(struct test_daemon *d, bool userns, pid_t server, unsigned nth)
{
    pid_t monitor = monitor_of(d, userns);
    gchar *lockdown = lockdown_of(server);
    g_assert_cmpint(kill(monitor, SIGSTOP), ==, 0);
    g_assert_cmpint(kill(server, SIGKILL), ==, 0);
    for (int i = 0; i < 500 && proc_state(server) != 'Z'; i++)
        usleep(10000);
    g_assert_cmpint(proc_state(server), ==, 'Z'); /* dead, not yet reaped: nobody serves */
    g_assert_cmpint(plain_connect(d->socket), ==, 0);
    struct fe_config cfg = {.socket_path = d->socket, .skip_setup = true};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open(&cfg, &fe), ==, 0);
    g_assert_cmpint(kill(monitor, SIGCONT), ==, 0);
    g_assert_cmpint(fe_setup(fe), ==, 0); /* the connection from the gap, now served */
    assert_session_works(fe);
    pid_t fresh = child_of(monitor);
    g_assert_cmpint(fresh, >, 0);
    g_assert_cmpint(fresh, !=, server);
    gchar *again = lockdown_of(fresh);
    g_assert_cmpstr(again, ==, lockdown);
    g_assert_false(same_pid_ns(fresh, monitor));
    g_free(again);
    g_free(lockdown);
    fe_close(fe);
    gchar *line =
        g_strdup_printf("died of signal 9 (Killed); starting a new one (restart %u,", nth);
    g_assert_true(test_daemon_log_contains(d, line));
    g_free(line);
    /* QEMU's order, no in-flight area: the one line that says the session could not go on. */
    g_assert_true(test_daemon_log_contains(d, "no session to restore, the guest must mount again"));
    return fresh;
}

/* A kill with the monitor running: connect at once, then a new session. */
static pid_t kill_and_connect_at_once(struct test_daemon *d, bool userns, pid_t server)
{
    g_assert_cmpint(kill(server, SIGKILL), ==, 0);
    g_assert_cmpint(plain_connect(d->socket), ==, 0);
    pid_t fresh = wait_new_server(monitor_of(d, userns), server);
    g_assert_cmpint(fresh, >, 0);
    struct fe_config cfg = {.socket_path = d->socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open(&cfg, &fe), ==, 0);
    assert_session_works(fe);
    fe_close(fe);
    return fresh;
}

/* The fds of pid that are pipes (their "pipe:[inode]" names), space-separated. */
static GString *pipes_of(pid_t pid)
{
    GString *out = g_string_new(" ");
    gchar *dirpath = g_strdup_printf("/proc/%d/fd", (int)pid);
    DIR *dir = opendir(dirpath);
    g_assert_nonnull(dir);
    for (struct dirent *e; (e = readdir(dir));) {
        char link[128];
        gchar *p = g_strdup_printf("%s/%s", dirpath, e->d_name);
        ssize_t n = readlink(p, link, sizeof(link) - 1);
        g_free(p);
        if (n > 0 && (link[n] = '\0', strncmp(link, "pipe:", 5) == 0))
            g_string_append_printf(out, "%s ", link);
    }
    closedir(dir);
    g_free(dirpath);
    return out;
}

/* The serving process holds none of the monitor's own pipes (the liveness pipe's ends). */
static void assert_no_monitor_pipes(pid_t monitor, pid_t server)
{
    GString *mine = pipes_of(getpid()), *theirs = pipes_of(monitor), *served = pipes_of(server);
    gchar **names = g_strsplit(theirs->str, " ", -1);
    for (gchar **n = names; *n; n++) {
        if (!**n)
            continue;
        gchar *word = g_strdup_printf(" %s ", *n);
        if (!strstr(mine->str, word)) /* inherited from the test itself: not the monitor's */
            g_assert_null(strstr(served->str, word));
        g_free(word);
    }
    g_strfreev(names);
    g_string_free(mine, TRUE);
    g_string_free(theirs, TRUE);
    g_string_free(served, TRUE);
}

static void run_restarts(bool userns)
{
    const char *args[] = {"--sandbox=namespace", "--max-restarts=3", NULL};
    struct test_daemon d;
    int started =
        userns ? test_daemon_start_as(&d, args, 65534, 65534) : test_daemon_start(&d, args);
    g_assert_cmpint(started, ==, 0);
    put_file(&d);
    pid_t monitor = monitor_of(&d, userns);
    pid_t server = child_of(monitor);
    g_assert_cmpint(server, >, 0);

    struct fe_config cfg = {.socket_path = d.socket};
    struct fe *old = NULL;
    g_assert_cmpint(fe_open(&cfg, &old), ==, 0);
    assert_session_works(old);
    assert_no_monitor_pipes(monitor, server);

    /* Restarts 1 and 2 with no process serving for a while; the first session ends. */
    for (unsigned i = 1; i <= 2; i++) {
        pid_t fresh = kill_and_reconnect(&d, userns, server, i);
        if (old) {
            g_assert_true(fe_vu_closed(old, 5000));
            fe_close(old);
            old = NULL;
        }
        assert_no_monitor_pipes(monitor, fresh);
        server = fresh;
    }
    /* Restart 3 with the monitor running; the budget is then spent. */
    server = kill_and_connect_at_once(&d, userns, server);
    g_assert_true(test_daemon_log_contains(&d, "(restart 3, 3 within 60 s, at most 3)"));
    g_assert_cmpint(kill(server, SIGKILL), ==, 0);
    g_assert_cmpint(wait_exit(&d), ==, 128 + SIGKILL);
    g_assert_true(test_daemon_log_contains(&d, "3 restarts within 60 s already"));
    g_assert_cmpint(access(d.socket, F_OK), !=, 0); /* the monitor removed it on its way out */
    test_daemon_stop(&d);
}

static void test_restarts(void)
{
    if (can_run())
        run_restarts(false);
}

static void test_restarts_unprivileged(void)
{
    if (can_run())
        run_restarts(true);
}

/* --max-restarts=0: the monitor holds nothing, and ends with the serving process. */
static void test_disabled(void)
{
    if (!can_run())
        return;
    const char *args[] = {"--sandbox=namespace", "--max-restarts=0", NULL};
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, args), ==, 0);
    gchar *status = NULL;
    gchar *path = g_strdup_printf("/proc/%d/status", (int)d.pid);
    g_assert_true(g_file_get_contents(path, &status, NULL, NULL));
    g_assert_nonnull(strstr(status, "CapPrm:\t0000000000000000"));
    g_free(status);
    g_free(path);
    pid_t server = child_of(d.pid);
    g_assert_cmpint(server, >, 0);
    g_assert_cmpint(kill(server, SIGKILL), ==, 0);
    g_assert_cmpint(wait_exit(&d), ==, 128 + SIGKILL);
    g_assert_true(test_daemon_log_contains(&d, "died of signal 9 (Killed)"));
    g_assert_false(test_daemon_log_contains(&d, "starting a new one"));
    test_daemon_stop(&d);
}

/*
 * A serving process that exits (here: told to stop) ends the daemon with its status, and a
 * SIGTERM to the daemon after a restart ends the new serving process and the daemon.
 */
static void test_exits_end_it(void)
{
    if (!can_run())
        return;
    const char *args[] = {"--sandbox=namespace", NULL};
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, args), ==, 0);
    pid_t server = child_of(d.pid);
    g_assert_cmpint(kill(server, SIGTERM), ==, 0);
    g_assert_cmpint(wait_exit(&d), ==, 0);
    g_assert_false(test_daemon_log_contains(&d, "starting a new one"));
    test_daemon_stop(&d);

    g_assert_cmpint(test_daemon_start(&d, args), ==, 0);
    put_file(&d);
    server = kill_and_connect_at_once(&d, false, child_of(d.pid));
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
    g_assert_cmpint(kill(server, 0), <, 0); /* gone with the daemon */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/restart/kill-9", test_restarts);
    g_test_add_func("/restart/kill-9-unprivileged", test_restarts_unprivileged);
    g_test_add_func("/restart/disabled", test_disabled);
    g_test_add_func("/restart/exits-end-it", test_exits_end_it);
    return g_test_run();
}
