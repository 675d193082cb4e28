/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A vhost-user DEVICE_STATE transfer (SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE) run on threads
 * of its own: the front-end drains a SAVE's pipe only while or after we write it, so writing
 * it from the message handler could block on a full pipe forever. One thread runs
 * fuse_session_state_save/load (session_state.h) on our own pipe; a second pumps between that
 * pipe and the front-end's fd, watching an abort eventfd, so that a front-end that stops
 * reading or writing (or goes away) can always be cut off: the pump closes our pipe, and the
 * save sees EPIPE or the load sees a truncated stream.
 */
#ifndef VFS_STATE_TRANSFER_H
#define VFS_STATE_TRANSFER_H

#include <stdbool.h>

struct fuse_session;
struct state_transfer;

enum state_direction { STATE_SAVE = 0, STATE_LOAD = 1 }; /* the spec's transfer direction */

/*
 * Starts a transfer of se's state to (SAVE) or from (LOAD) fd, which it takes (closed on
 * failure too). The rings must be stopped until it is finished. 0 or a negative errno.
 */
int state_transfer_start(struct fuse_session *se, enum state_direction dir, int fd,
                         struct state_transfer **out);

/* True once the front-end's side is over: its fd reached end of file (LOAD) or was written
 * and closed (SAVE), or failed. What is left is ours alone and ends by itself. */
bool state_transfer_fd_done(const struct state_transfer *t);

/* True once both threads have ended: finishing it does not wait. */
bool state_transfer_ended(const struct state_transfer *t);

/*
 * Waits for the transfer to end, frees it and returns its result: 0, or the negative errno
 * of the state function or of the front-end's fd. While waiting, a hang-up of watch_fd (the
 * connection: the front-end went away) aborts it (-ECONNRESET).
 */
int state_transfer_finish(struct state_transfer *t, int watch_fd);

/* Aborts the transfer, waits for its threads and frees it. NULL is fine. */
void state_transfer_cancel(struct state_transfer *t);

#endif
