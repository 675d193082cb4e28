/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-thread filesystem credentials.
 *
 * setfsuid/setfsgid act on the calling thread only (the raw syscalls; glibc's setuid family
 * would change every thread). While the fsuid is not 0 the kernel also drops the filesystem
 * capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER, CAP_FSETID, CAP_MKNOD, ...) from the
 * thread's effective set, so permission and ownership checks on the host are those a local
 * filesystem would make for the guest's caller; they come back when the fsuid returns to 0.
 * The current ids are cached per thread, so the syscalls run only when the caller changes.
 */
#ifndef VFS_CREDS_H
#define VFS_CREDS_H

#include <stddef.h>
#include <sys/types.h>

/* Makes uid/gid this thread's fsuid/fsgid. Returns 0 or -EPERM (and then leaves them unset). */
int creds_set(uid_t uid, gid_t gid);

/*
 * For one call in the middle of a caller's request that needs the daemon's own filesystem
 * capabilities (open_by_handle_at needs CAP_DAC_READ_SEARCH, which a non-zero fsuid drops):
 * makes this thread's fsuid 0 until creds_unraise. Returns what creds_unraise restores
 * ((uid_t)-1: nothing changed, the fsuid already was 0 or was never switched).
 */
uid_t creds_raise(void);
void creds_unraise(uid_t saved);

/* Sets this thread's supplementary groups (n = 0: none). Returns 0 or -errno. */
int creds_set_groups(const gid_t *groups, size_t n);

#endif
