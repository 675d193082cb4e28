/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Confinement to the shared directory: new mount, PID and network namespaces with the share
 * pivoted to "/" (namespace mode), a chroot (chroot mode), or nothing (none).
 */
#ifndef VFS_SANDBOX_H
#define VFS_SANDBOX_H

#include <stdbool.h>
#include <sys/types.h>

#include "options.h"

struct sandbox {
    enum sandbox_mode mode;
    const char *shared_dir; /* as given on the command line */
    /* Unprivileged namespace mode: user namespace ranges (none: map our own ids 1:1). */
    const struct id_map *uid_map, *gid_map;
    unsigned n_uid_map, n_gid_map;

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
 * In the monitor: forwards SIGTERM/SIGINT/SIGHUP (blocked by the caller) to the confined
 * child and waits for it; returns the exit status to exit with.
 */
int sandbox_monitor(const struct sandbox *sb);

#endif
