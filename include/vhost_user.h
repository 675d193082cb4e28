/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vhost-user back-end (QEMU docs/interop/vhost-user.rst): one device whose state lives
 * as long as the process, serving one front-end connection at a time. When a connection
 * ends, the device stops its queues, unmaps guest memory, drops FUSE state and is ready
 * for the next connection.
 */
#ifndef VFS_VHOST_USER_H
#define VFS_VHOST_USER_H

#include <stdbool.h>
#include <stdint.h>

#include "fuse_server.h"

#define VU_HIPRIO_QUEUES      1
#define VU_MAX_REQUEST_QUEUES 16

struct vu_dev;

struct vu_dev_config {
    unsigned num_request_queues; /* offered: 1..VU_MAX_REQUEST_QUEUES */
    unsigned queue_threads;      /* worker threads; 0: one per CPU, at most one per queue */
    unsigned poll_us;            /* how long a worker watches idle rings (0: never) */
    bool poll_when_crowded;      /* poll even when the workers take over half the CPUs */
    unsigned pool_threads;       /* the optional request thread pool shared by all queues
                                  * (0: each queue's worker serves its own requests) */
};

struct vu_dev *vu_dev_new(struct fuse_session *fuse, const struct vu_dev_config *cfg);
void vu_dev_free(struct vu_dev *dev);

/*
 * Handles one message from conn_fd. Returns 0 to continue, -ENOTCONN on an orderly
 * disconnect, and another negative errno for a protocol error that ends the connection
 * (already logged).
 */
int vu_dev_handle_message(struct vu_dev *dev, int conn_fd);

/* Returns the device to its state before any connection: queues stopped, memory unmapped,
 * FUSE state dropped, every session fd closed. */
void vu_dev_reset(struct vu_dev *dev);

#endif
