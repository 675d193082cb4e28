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

#include <stddef.h>

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

/*
 * A planned upgrade's handover to a new process on the same host (handover.c): the same
 * stream, except that an inode with no path in the share (a file unlinked while the guest
 * holds it, or moved out of the share) is not a failure: its own O_PATH fd travels beside
 * the stream instead, which names it in a section only this pair writes and reads.
 *
 * SAVE: *fds gets the n (at most SESSION_STATE_MAX_FDS) dups to send, owned by the caller
 * (NULL and 0 when none, and on failure).
 */
#define SESSION_STATE_MAX_FDS 65536u /* PT_STATE_MAX_PASSED_FDS */
int fuse_session_state_save_handover(struct fuse_session *se, int fd, int **fds, size_t *n);
/*
 * LOAD with the n fds that came beside the stream (borrowed: the caller closes them; each
 * inode installed from one gets a dup). Every fd must be named by the stream, and each is
 * checked to be an O_PATH fd of the inode the stream names, on the share's file system.
 * fuse_session_state_load (a VMM's DEVICE_STATE, which carries no fds) refuses that section.
 */
int fuse_session_state_load_handover(struct fuse_session *se, int fd, const int *fds, size_t n);

#endif
