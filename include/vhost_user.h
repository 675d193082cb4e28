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
#include "worker.h"

#define VU_HIPRIO_QUEUES      1
#define VU_MAX_REQUEST_QUEUES 16

/* The virtio-fs tag's room in the device configuration (struct virtio_fs_config). */
#define VU_TAG_MAX 36

/*
 * Why tag cannot be a virtio-fs tag, or NULL when it can: 1 to VU_TAG_MAX bytes of UTF-8 (the
 * Rust virtiofsd's rule; the virtio spec says UTF-8), and no newline (guest kernels since 6.9
 * refuse a tag with one).
 */
const char *vu_tag_invalid(const char *tag);

struct vu_dev;

struct vu_dev_config {
    unsigned num_request_queues; /* offered: 1..VU_MAX_REQUEST_QUEUES */
    unsigned queue_threads;      /* worker threads; 0: one per CPU, at most one per queue */
    unsigned poll_us;            /* how long a worker watches idle rings (0: never) */
    bool poll_when_crowded;      /* poll even when the workers take over half the CPUs */
    unsigned pool_threads;       /* the optional request thread pool shared by all queues
                                  * (0: each queue's worker serves its own requests) */
    bool restarted;              /* a serving process started after one that died: the first
                                  * front-end that runs rings without handing over an in-flight
                                  * area (no session to restore) is said so, once */
    const char *tag;             /* --tag: offered in the device configuration (GET_CONFIG);
                                  * NULL: no configuration offered. Copied. */
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

/* ---- planned upgrades (handover.h) ----------------------------------------------------------
 *
 * What a front-end configured on the device, for a new daemon process to go on serving the
 * same connection: the negotiated features, the memory table, the dirty-page log, the
 * in-flight area and every queue with its position. Every fd in it is borrowed: export hands
 * out the device's own (it keeps them), import duplicates what it keeps.
 */
struct vu_region_image {
    uint64_t gpa, size, uva, mmap_offset;
    int fd;
};

struct vu_dev_image {
    uint64_t features, protocol_features;
    bool owner;
    unsigned nregions;
    struct vu_region_image *regions; /* nregions; export allocates, vu_dev_image_free frees */
    int log_fd;                      /* -1: no dirty-page log mapped */
    uint64_t log_size, log_offset;
    int inflight_fd; /* -1: no in-flight area (SET_INFLIGHT_FD) */
    uint64_t inflight_size, inflight_offset;
    uint16_t inflight_queues, inflight_queue_size;
    unsigned nqueues;
    struct vu_queue_image queues[VU_HIPRIO_QUEUES + VU_MAX_REQUEST_QUEUES];
};
void vu_dev_image_free(struct vu_dev_image *img);

/*
 * The old process: stops every queue (the request in progress finishes; a request waiting
 * for a lock is not answered: its head is listed with its queue, for the new process to
 * serve it again) and describes the device in *img. 0, or -EBUSY while a DEVICE_STATE
 * transfer runs (nothing stopped), -ENOMEM (the queues stopped: vu_dev_resume).
 */
int vu_dev_export(struct vu_dev *dev, struct vu_dev_image *img);
/* The old process, once the new one serves: no reply of a wait that ends now may reach a
 * ring (the new process answers those requests). */
void vu_dev_let_go(struct vu_dev *dev);
/*
 * The session was replaced wholesale (an upgrade's LOAD): the session journal, which knows
 * nothing of how that session was built, starts over — empty, and off until the guest's next
 * FUSE_INIT (a crash meanwhile means a fresh session). No-op without a journal.
 */
void vu_dev_session_replaced(struct vu_dev *dev);

/* The old process, when the new one failed: the queues go on where they stopped. */
void vu_dev_resume(struct vu_dev *dev);

/*
 * The new process, on a device that never had a connection: rebuilds the device from img
 * (every value checked as a front-end's message would be), its queues held, and watches conn
 * for guest-memory faults. With an in-flight area, its regions are recovered now and the
 * session journal attached: *restored tells whether the journal restored the session (then
 * the saved session state is not needed). 0 or a negative errno (logged); on failure the
 * caller resets the device.
 */
int vu_dev_import(struct vu_dev *dev, const struct vu_dev_image *img, int conn, bool *restored);
/* The new process, once the old one let go: the queues start. 0 or a negative errno. */
int vu_dev_go(struct vu_dev *dev);

#endif
