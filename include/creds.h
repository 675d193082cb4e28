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

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Makes uid/gid this thread's fsuid/fsgid. Returns 0 or -EPERM (and then leaves them unset). */
int creds_set(uid_t uid, gid_t gid);

/*
 * THE way to act as the daemon for a few calls in the middle of a caller's request (the one
 * mechanism; SECURITY.md lists every use, each with its "why it is safe" comment next to it):
 *
 *     int ret;
 *     {
 *         CREDS_AS_DAEMON(scope, &ret);
 *         if (ret == 0)
 *             ret = ...calls that need the daemon's own filesystem ids and capabilities...;
 *     }
 *     return ret;
 *
 * On entry the thread's fsuid/fsgid become 0 (which brings the filesystem capabilities back
 * from the permitted set), and *status is 0 or the failure; at the end of the scope the
 * caller's ids come back, and a failure to restore them becomes *status if that was not an
 * error already (the request must then stop: the thread does not act as its caller). The
 * result is therefore read after the scope's block, never returned from inside it. A thread
 * whose ids were never switched (the daemon is not root) or already are 0 changes nothing.
 */
struct creds_scope {
    int *status;
    bool switched;
    uid_t uid;
    gid_t gid;
};
struct creds_scope creds_daemon_begin(int *status);
void creds_daemon_end(struct creds_scope *s);
#define CREDS_AS_DAEMON(name, status)                                                              \
    struct creds_scope name __attribute__((cleanup(creds_daemon_end), unused)) =                   \
        creds_daemon_begin(status)

/* Sets this thread's supplementary groups (n = 0: none). Returns 0 or -errno. */
int creds_set_groups(const gid_t *groups, size_t n);

#endif
