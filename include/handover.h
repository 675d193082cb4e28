/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planned upgrades: a new daemon process, started with the old one's command line plus
 * --upgrade, takes over the listening socket, its lock, the front-end's connection and the
 * FUSE session from the process that serves them, without the front-end noticing. The
 * protocol, its wire format and what each side trusts are described in src/handover.c.
 */
#ifndef VFS_HANDOVER_H
#define VFS_HANDOVER_H

#include <stdbool.h>

#include "vhost_user.h"

/* 2: a queue's heads out (requests waiting for a lock) travel with it. 3: WELCOME carries the
 * listening socket and the lock file. */
#define HANDOVER_VERSION 3

/* How long the old process waits for the new one to be ready, its queues standing still. */
#define HANDOVER_READY_TIMEOUT_MS 30000
/* How long the new process waits for the old one's go (it only has to answer). */
#define HANDOVER_GO_TIMEOUT_MS 10000
/* How long a new connection may take to show its first message's header before it is taken
 * for a front-end's. */
#define HANDOVER_PEEK_TIMEOUT_MS 1000

/*
 * What the old process hands over. Every fd is borrowed from its owner on the sending side;
 * on the receiving side they all belong to the package (see handover_take_fd).
 */
struct handover_package {
    int listen_fd, lock_fd; /* the listening socket and the lock on <socket>.pid */
    int conn_fd;            /* the front-end's connection, -1 when none */
    int state_fd;           /* the FUSE session (session_state.h), -1 when none */
    /* The fds that travel beside the session state (its handover SAVE/LOAD: inodes with no
     * path in the share), at most SESSION_STATE_MAX_FDS. Sending side: borrowed; receiving
     * side: the last n_state_fds of fds (still the package's). */
    int *state_fds;
    unsigned n_state_fds;
    bool has_device; /* dev describes the connection's device (with conn_fd) */
    struct vu_dev_image dev;
    /* Receiving side: every fd received; those still >= 0 are closed by handover_free. */
    int *fds;
    unsigned nfds;
};

/* ---- the new process ---- */

/*
 * Before the sandbox (the socket path is unreachable after it): connects to socket_path,
 * checks that the serving process runs as our uid or as root, and asks it for a handover.
 * Returns the control socket, with the old process's listening socket and lock file in
 * *listen_fd and *lock_fd (this process's from now on; it must not accept on the socket
 * before it took over), or a negative errno (logged: no daemon there, one that does not know
 * the handover, one that refused it).
 */
int handover_connect(const char *socket_path, int *listen_fd, int *lock_fd);
/*
 * Once this process is ready to serve: asks the old one to stop and receives its package.
 * 0, or a negative errno (logged); everything received is checked for shape (counts, sizes,
 * fd indexes, fd types) before it is returned.
 */
int handover_receive(int ctl, struct handover_package *p);
/* Takes fd (one of p's) out of the package, so that handover_free leaves it open. */
int handover_take_fd(struct handover_package *p, int fd);
void handover_free(struct handover_package *p);
/* Tells the old process we are ready to serve (status 0) or failed (-errno), and for 0
 * waits for its go: 0 once the old process let go, a negative errno otherwise. */
int handover_ready(int ctl, int status);

/* ---- the old process ---- */

/* Whether the first message waiting on a new connection is a handover request (peeked: it
 * stays unread). Waits up to HANDOVER_PEEK_TIMEOUT_MS for it. */
bool handover_requested(int fd);
/* Reads the request, checks the peer (our uid or root) and the version, and answers it with
 * our listening socket and lock file. 0: the connection is now the control socket of a
 * pending handover. Negative errno (logged) otherwise; the caller closes fd. */
int handover_welcome(int fd, int listen_fd, int lock_fd);
/* The pending handover's control socket is readable: 0 when the new process asks to start,
 * a negative errno when it went away or sent something else (logged at info level). */
int handover_poll_start(int ctl);
/*
 * Sends the package, waits for the new process to be ready and lets go: 0 when the new
 * process serves (the caller must not touch what it handed over any more, and exits), a
 * negative errno (logged) when it failed, and then nothing was handed over.
 */
int handover_send(int ctl, const struct handover_package *p);
/* Tells the new process the handover will not happen (logged there). */
void handover_abort(int ctl, int err);

#endif
