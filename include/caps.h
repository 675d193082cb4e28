/* SPDX-License-Identifier: Apache-2.0 */
/* Capabilities: keep only what a passthrough filesystem needs. */
#ifndef VFS_CAPS_H
#define VFS_CAPS_H

#include <stdbool.h>

/*
 * When privileged (root, or in a user namespace we created): drops every capability but
 * CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID, MKNOD and SETFCAP, adjusted by modcaps
 * ("+cap:-cap", names as in capabilities(7) without CAP_, any case), from the effective,
 * permitted, inheritable and bounding sets. Always sets no_new_privs. Negative errno (logged)
 * on failure.
 */
int caps_drop(const char *modcaps, bool privileged);

/* What --inode-file-handles needs of CAP_DAC_READ_SEARCH (fh_policy_caps decides). */
enum caps_fh {
    CAPS_FH_NONE,     /* nothing: inodes keep fds */
    CAPS_FH_KEEP,     /* keep it (open_by_handle_at needs it); handles are off without it */
    CAPS_FH_REQUIRED, /* keep it, and a modcaps removing it is an error (as in the Rust daemon) */
};

/* caps_drop, keeping DAC_READ_SEARCH too as fh asks. */
int caps_drop_fh(const char *modcaps, bool privileged, enum caps_fh fh);

/*
 * Drops every capability (effective, permitted, inheritable; the bounding set when allowed)
 * and sets no_new_privs: for the namespace sandbox's monitor, which needs none.
 */
int caps_drop_all(void);

/*
 * For the namespace sandbox's monitor that may start a new serving process when one dies:
 * keeps (effective, permitted, bounding; none inheritable) only what the serving process
 * keeps (caps_drop_fh's set with modcaps' additions; its removals the child makes itself)
 * plus SYS_ADMIN (a new PID namespace, the child's mount and network namespaces, mounts,
 * pivot_root) and SETPCAP (the child's bounding-set drop); sets no_new_privs.
 */
int caps_keep_for_monitor(const char *modcaps, enum caps_fh fh);

/* Makes the effective set the permitted set (on) or empty (off): the monitor holds its
 * capabilities only permitted while it waits. */
int caps_monitor_effective(bool on);

/* Validates a modcaps string without applying it; -EINVAL (with a message) if bad. */
int caps_check_modcaps(const char *modcaps);

#endif
