/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Confinement to the shared directory: new mount, PID and network namespaces with the share
 * pivoted to "/" (namespace mode), a chroot (chroot mode), or nothing (none).
 */
#ifndef VFS_SANDBOX_H
#define VFS_SANDBOX_H

#include <stdbool.h>
#include <sys/types.h>

#include "caps.h"
#include "options.h"

struct sandbox {
    enum sandbox_mode mode;
    const char *shared_dir; /* as given on the command line */
    /* Unprivileged namespace mode: user namespace ranges (none: map our own ids 1:1). */
    const struct id_map *uid_map, *gid_map;
    unsigned n_uid_map, n_gid_map;
    /* Namespace mode: restarting the serving process when it dies of a signal. */
    unsigned max_restarts; /* --max-restarts: at most this many within any 60 s; 0: never */
    const char *modcaps;   /* --modcaps, and what the serving process needs of DAC_READ_SEARCH: */
    enum caps_fh fh_caps;  /* the monitor keeps what a new serving process will keep */
    /* Asked before a restart (NULL: always yes): false when the process that died was not
     * yet the one serving (an --upgrade that had not taken over). */
    bool (*may_restart)(void *opaque);
    void *restart_opaque;
    unsigned restarts; /* in a serving process: how many died before it (0: the first) */
    pid_t started_pid; /* the process our manager started (whose cgroup the server follows) */

    const char *root; /* the share's path once confined ("/" or shared_dir) */
    int proc_self_fd; /* /proc/self/fd of the confined process (O_PATH), or -1 */
    bool in_user_ns;  /* confined in a user namespace we created (we hold its caps) */
};

enum sandbox_role {
    SANDBOX_CONFINED, /* this process serves, confined */
    SANDBOX_MONITOR,  /* this process is the parent of the confined one; see sandbox_monitor */
};

/*
 * Confines the process. In namespace mode the serving process is a child (PID 1 of a new
 * PID namespace): the caller then gets SANDBOX_MONITOR and must call sandbox_monitor().
 * Must run before any thread is started. Negative errno (logged) on failure.
 */
int sandbox_enter(struct sandbox *sb, enum sandbox_role *role);

/*
 * First thing at start-up, before the daemon opens any fd: notes the fds it inherited beyond
 * stdin, stdout and stderr, and marks them close-on-exec. They stay open in the process that
 * was started for as long as it runs (a lock such as libvirt's pid file is held by it); a
 * serving process of the namespace sandbox closes its copies (except listen_fd, the --fd
 * socket). Negative errno (logged) when they cannot be listed.
 */
int sandbox_keep_inherited(int listen_fd);

/*
 * In the serving process of the namespace sandbox, at each new front-end connection: asks the
 * monitor to move it into the cgroups the process our manager started is in now (libvirt
 * moves that one into the VM's cgroup once the daemon runs), and waits for the answer. 0 when
 * moved (or nothing to do: no monitor), else a negative errno (the monitor logs why).
 */
int sandbox_follow_cgroup(void);

/*
 * In the monitor: forwards SIGTERM/SIGINT/SIGHUP (blocked by the caller) to the confined
 * child and waits for it. When it dies of a signal, and this monitor can build a new one
 * (run as root, or the intermediate of an unprivileged start) and sb->max_restarts allows,
 * a new serving process starts, inheriting every fd (the listening socket and its lock):
 * sandbox_monitor then returns in that process with role CONFINED (0, or a negative errno if
 * confining it failed), which goes on with start-up as after sandbox_enter(). In the monitor
 * it returns (role MONITOR) the status to exit with: the child's exit status, or 128 + the
 * signal that killed it.
 */
int sandbox_monitor(struct sandbox *sb, enum sandbox_role *role);

#endif
