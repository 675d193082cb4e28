/* SPDX-License-Identifier: Apache-2.0 */
/* Capabilities: keep only what a passthrough filesystem needs. */
#ifndef VFS_CAPS_H
#define VFS_CAPS_H

/*
 * As root: drops every capability but CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID,
 * MKNOD and SETFCAP, adjusted by modcaps ("+cap:-cap", names as in capabilities(7) without
 * CAP_, any case), from the effective, permitted, inheritable and bounding sets, and sets
 * no_new_privs. Unprivileged, only no_new_privs. Negative errno (logged) on failure.
 */
int caps_drop(const char *modcaps);

/* Validates a modcaps string without applying it; -EINVAL (with a message) if bad. */
int caps_check_modcaps(const char *modcaps);

#endif
