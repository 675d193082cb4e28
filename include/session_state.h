/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE session's state, for live migration and snapshots (vhost-user DEVICE_STATE):
 * everything a daemon needs to go on serving the same guest without a new FUSE_INIT — the
 * negotiated INIT results, every inode the guest knows (nodeid, lookup count, where to find it
 * again), every open handle (fh, inode, flags), the id counters and the locks.
 *
 * The transport (vhost_user.c) moves the bytes: it hands these functions a pipe (or any fd)
 * and reports the result through CHECK_DEVICE_STATE. Both run with the rings stopped.
 */
#ifndef VFS_SESSION_STATE_H
#define VFS_SESSION_STATE_H

struct fuse_session;

/* Writes the whole state to fd (blocking writes until done). 0 or a negative errno (logged). */
int fuse_session_state_save(struct fuse_session *se, int fd);

/*
 * Reads a state from fd until end of file, validates all of it (it comes from another host:
 * hostile until proven otherwise), and installs it in place of the current session's. 0, or a
 * negative errno (logged with the reason), and then the session is as after
 * fuse_session_reset(): fresh, waiting for FUSE_INIT.
 */
int fuse_session_state_load(struct fuse_session *se, int fd);

#endif
