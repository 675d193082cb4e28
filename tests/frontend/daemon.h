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
    char *log;    /* the daemon's stderr */
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
bool test_daemon_alive(struct test_daemon *d);
/* SIGTERM, wait; returns the exit status (or 128+signal), and removes the temp dir. */
int test_daemon_stop(struct test_daemon *d);
/* The pid of the serving process (the sandbox's child, or the daemon itself). */
pid_t test_daemon_serving_pid(const struct test_daemon *d);
/* Number of open fds of the serving process (from /proc/PID/fd). */
int test_daemon_fd_count(const struct test_daemon *d);
/* The CPUs this process may run on (its affinity mask), as a daemon started from it sees
 * them; 0 if the mask cannot be read. */
unsigned test_usable_cpus(void);
/* True if the daemon's log contains needle. */
bool test_daemon_log_contains(const struct test_daemon *d, const char *needle);

#endif
