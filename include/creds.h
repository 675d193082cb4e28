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

/* Sets this thread's supplementary groups (n = 0: none). Returns 0 or -errno. */
int creds_set_groups(const gid_t *groups, size_t n);

#endif
