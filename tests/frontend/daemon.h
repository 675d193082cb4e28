/* SPDX-License-Identifier: Apache-2.0 */
/* Starts and watches a virtiofsd process for protocol-level tests. */
#ifndef VFS_TEST_DAEMON_H
#define VFS_TEST_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

struct test_daemon {
    pid_t pid;
    char *dir;    /* temp dir holding the socket and the share */
    char *share;  /* the shared directory */
    char *socket; /* the socket path */
    char *log;    /* the daemon's stderr (a restart appends to it) */
    /* What a restart needs: the command line, the user, and where this start's log begins. */
    char **argv;
    uid_t uid;
    gid_t gid;
    long log_start;
    void *killer;      /* the thread of test_daemon_kill_after (a GThread) */
    pid_t killed;      /* the serving process it kills */
    unsigned restarts; /* by test_daemon_restart */
    /* test_daemon_start_inherited: the listening socket the daemon inherits (kept open here
     * until test_daemon_stop, as a manager keeps it), the number it gets, and whether
     * LISTEN_PID/LISTEN_FDS say so as systemd's socket activation does. */
    bool inherits;
    int inherit_fd;
    int inherit_as;
    bool systemd_env;
    /* Run in the child before exec (e.g. a private mount namespace); non-zero fails it. */
    int (*child_setup)(void *arg);
    void *child_arg;
};

/* The daemon binary: $VIRTIOFSD, or the build's virtiofsd. */
const char *test_daemon_path(void);

/*
 * Starts the daemon ($VIRTIOFSD, or the build's virtiofsd) on a fresh share with extra
 * arguments (NULL-terminated), and waits until its socket accepts connections.
 */
int test_daemon_start(struct test_daemon *d, const char *const *extra_args);
/* The same as an unprivileged user (uid != 0): the share and socket directory are prepared
 * for it, and the daemon runs its unprivileged (user namespace) sandbox. */
int test_daemon_start_as(struct test_daemon *d, const char *const *extra_args, uid_t uid,
                         gid_t gid);
/* Another daemon (e.g. the Rust virtiofsd) with only --socket-path, --shared-dir (share, or
 * a fresh one when NULL) and extra_args: none of the options test_daemon_start adds. */
int test_daemon_start_peer(struct test_daemon *d, const char *binary, const char *share,
                           const char *const *extra_args);
/*
 * Started as a service manager starts it (systemd, libvirt, Kata): test_daemon_prepare makes
 * d->dir, d->share and the paths of d->socket and d->log, which the caller's arguments may
 * name (it may also set d->child_setup); then test_daemon_start_argv runs exactly argv
 * (argv[0]: the binary) and waits until it serves, and test_daemon_start_inherited does so
 * with a socket listening on d->socket inherited as file descriptor fd_number, with
 * LISTEN_PID and LISTEN_FDS=1 when systemd_env (systemd's socket activation).
 */
int test_daemon_prepare(struct test_daemon *d);
int test_daemon_start_argv(struct test_daemon *d, const char *const *argv);
int test_daemon_start_inherited(struct test_daemon *d, const char *const *argv, int fd_number,
                                bool systemd_env);
bool test_daemon_alive(struct test_daemon *d);
/* SIGTERM, wait; returns the exit status (or 128+signal), and removes the temp dir. */
int test_daemon_stop(struct test_daemon *d);
/* The pid of the serving process (the sandbox's child, or the daemon itself). */
pid_t test_daemon_serving_pid(const struct test_daemon *d);
/* Number of open fds of the serving process (from /proc/PID/fd). */
int test_daemon_fd_count(const struct test_daemon *d);
/* The same for any daemon pid: its serving process (its first child when it has one, as a
 * sandbox monitor does, else itself), and a pid's open fds. */
pid_t test_serving_pid(pid_t pid);
int test_pid_fd_count(pid_t pid);
/* A kB figure of /proc/PID/status (e.g. "VmRSS"); -1 if absent. */
long test_pid_status_kib(pid_t pid, const char *field);
/* The CPUs this process may run on (its affinity mask), as a daemon started from it sees
 * them; 0 if the mask cannot be read. */
unsigned test_usable_cpus(void);
/*
 * Crash and restart (issue 15). test_daemon_kill9 sends SIGKILL to the serving process and
 * waits until it is gone. test_daemon_kill_after does it from a thread after delay_us, so the
 * caller keeps driving requests meanwhile (a kill at a random point of the daemon's work);
 * test_daemon_kill_wait joins that thread. test_daemon_restart, after the serving process
 * died: when the process we started is still there and brings up a new serving process of
 * its own (a sandbox monitor that restarts it), waits for that one; otherwise starts the
 * daemon again with the same arguments on the same socket (a killed daemon leaves a stale
 * socket file; its pid lock is released with it) and waits until the new one listens.
 */
int test_daemon_kill9(struct test_daemon *d);
int test_daemon_kill_after(struct test_daemon *d, unsigned delay_us);
int test_daemon_kill_wait(struct test_daemon *d);
int test_daemon_restart(struct test_daemon *d);
/* The daemon's log since its last (re)start, or all of it (a g_free'd string; "" if none). */
char *test_daemon_log_since(const struct test_daemon *d, long offset);
/* The log's size now (an offset for test_daemon_log_since). */
long test_daemon_log_size(const struct test_daemon *d);

/* True if the daemon's log contains needle. */
bool test_daemon_log_contains(const struct test_daemon *d, const char *needle);

#endif
