/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File descriptors over unix sockets (SCM_RIGHTS): the one place that builds and reads their
 * control messages, for the vhost-user connection (vhost_user.c) and an upgrade's handover
 * (handover.c).
 */
#ifndef VFS_SCM_FDS_H
#define VFS_SCM_FDS_H

#include <sys/socket.h>
#include <sys/uio.h>

/* At most this many fds in one message (the kernel's SCM_MAX_FD). */
#define SCM_FDS_MAX 253

/*
 * Sends all of iov[0..iovcnt) (iov is consumed) with nfds fds (at most SCM_FDS_MAX) attached
 * to its first byte; a partial send goes on with the rest, without the fds again. 0 or a
 * negative errno.
 */
int scm_send(int sock, struct iovec *iov, int iovcnt, const int *fds, unsigned nfds);

/*
 * The fds a received message carried (recvmsg with MSG_CMSG_CLOEXEC), into fds[0..max): *n of
 * them. More than max, or a control message the kernel truncated (MSG_CTRUNC: fds were
 * lost), is -EMSGSIZE, and then every fd it carried is closed and *n is 0.
 */
int scm_take_fds(struct msghdr *mh, int *fds, unsigned max, unsigned *n);

#endif
