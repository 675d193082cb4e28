/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test front-end that plays both the VMM (vhost-user master: memory table, rings, eventfds)
 * and the guest driver (split virtqueues, FUSE requests) in one process, so the daemon can
 * be driven at the protocol level without a VM.
 */
#ifndef VFS_TEST_FRONTEND_H
#define VFS_TEST_FRONTEND_H

#include <linux/fuse.h>
#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* vhost-user requests the tests send (numbers from the vhost-user spec). */
enum fe_vu_request {
    FE_VU_GET_FEATURES = 1,
    FE_VU_SET_FEATURES = 2,
    FE_VU_SET_OWNER = 3,
    FE_VU_RESET_OWNER = 4,
    FE_VU_SET_MEM_TABLE = 5,
    FE_VU_SET_LOG_BASE = 6,
    FE_VU_SET_LOG_FD = 7,
    FE_VU_SET_VRING_NUM = 8,
    FE_VU_SET_VRING_ADDR = 9,
    FE_VU_SET_VRING_BASE = 10,
    FE_VU_GET_VRING_BASE = 11,
    FE_VU_SET_VRING_KICK = 12,
    FE_VU_SET_VRING_CALL = 13,
    FE_VU_SET_VRING_ERR = 14,
    FE_VU_GET_PROTOCOL_FEATURES = 15,
    FE_VU_SET_PROTOCOL_FEATURES = 16,
    FE_VU_GET_QUEUE_NUM = 17,
    FE_VU_SET_VRING_ENABLE = 18,
    FE_VU_GET_INFLIGHT_FD = 31,
    FE_VU_SET_INFLIGHT_FD = 32,
    FE_VU_GET_MAX_MEM_SLOTS = 36,
    FE_VU_ADD_MEM_REG = 37,
    FE_VU_REM_MEM_REG = 38,
    FE_VU_SET_DEVICE_STATE_FD = 42,
    FE_VU_CHECK_DEVICE_STATE = 43,
};
#define FE_VU_FLAG_VERSION    0x1u
#define FE_VU_FLAG_REPLY      0x4u
#define FE_VU_FLAG_NEED_REPLY 0x8u

/* VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD */
#define FE_VU_PROTOCOL_F_INFLIGHT_SHMFD 12

/* The payload of GET_INFLIGHT_FD and SET_INFLIGHT_FD (24 bytes, as the spec's C struct). */
struct fe_inflight_info {
    uint64_t mmap_size;
    uint64_t mmap_offset;
    uint16_t num_queues;
    uint16_t queue_size;
    uint32_t padding;
};

enum fe_profile {
    FE_PROFILE_QEMU,             /* QEMU 7.2's vhost-user-fs start-up sequence */
    FE_PROFILE_CLOUD_HYPERVISOR, /* cloud-hypervisor's: SET_OWNER first, NEED_REPLY on all */
};

struct fe_config {
    const char *socket_path;
    size_t mem_size;         /* guest memory (default 64 MiB) */
    unsigned request_queues; /* default 1 */
    unsigned queue_size;     /* default 128 */
    bool no_event_idx;
    bool no_indirect;
    enum fe_profile profile;
    bool skip_setup;            /* connect only: the test drives vhost-user itself */
    uint64_t features;          /* acked in SET_FEATURES too, when offered */
    uint64_t protocol_features; /* acked in SET_PROTOCOL_FEATURES too, when offered */
    bool vring_log; /* SET_VRING_ADDR with VHOST_VRING_F_LOG, log_guest_addr: the used ring */
    /*
     * cloud-hypervisor profile: ack VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD when offered, and then
     * GET_INFLIGHT_FD at the first activation (the fd and info are kept) and SET_INFLIGHT_FD
     * at every activation, fe_reconnect included. Nothing changes when it is not offered.
     */
    bool inflight;
    /* Free descriptors are reused oldest first (not last freed first): a head answered twice
     * then finds no request waiting, instead of passing for its next request's reply. */
    bool fifo_heads;
};

struct fe;

/* Connects and, unless skip_setup, negotiates, maps memory and enables every queue. */
int fe_open(const struct fe_config *cfg, struct fe **out);
/*
 * fe_open, retried for up to timeout_ms: a daemon still resetting after the previous session
 * leaves the connection in its listen backlog, or (rarely) turns it away.
 */
int fe_open_retry(const struct fe_config *cfg, struct fe **out, int timeout_ms);
/* A guest's session on the daemon at socket_path: fe_open_retry with a default configuration,
 * then FUSE INIT. 0, or the first error (and no connection). */
int fe_open_session(const char *socket_path, int timeout_ms, struct fe **out);
void fe_close(struct fe *fe);
/*
 * Drops the connection and connects again keeping guest memory and rings as they are, with
 * cloud-hypervisor's sequence after a back-end restart (SET_OWNER, GET_FEATURES,
 * SET_PROTOCOL_FEATURES, then activation with SET_VRING_BASE at the current avail index, and
 * SET_INFLIGHT_FD with the fd kept from the first activation). The connect is retried for up
 * to 10 s while nothing listens (a daemon being restarted), as cloud-hypervisor retries.
 * Requests sent with fe_fuse_send/fe_fuse_submit before stay pending: a back-end that tracks
 * them in the in-flight area answers them after the reconnect.
 */
int fe_reconnect(struct fe *fe);
/* The set-up fe_open skips with skip_setup, after messages of the test's own (a DEVICE_STATE
 * LOAD before any memory, as cloud-hypervisor restores): negotiation, memory, rings. */
int fe_setup(struct fe *fe);
int fe_socket(const struct fe *fe);
int fe_memfd(const struct fe *fe);
uint64_t fe_gpa_base(const struct fe *fe);
uint64_t fe_uva_base(const struct fe *fe);
size_t fe_mem_size(const struct fe *fe);
/* The protocol features the daemon offered (GET_PROTOCOL_FEATURES) and those acked. */
uint64_t fe_offered_protocol_features(const struct fe *fe);
uint64_t fe_acked_protocol_features(const struct fe *fe);
/* The in-flight memfd GET_INFLIGHT_FD returned (kept by the front-end; -1 if none) and the
 * info that came with it. */
int fe_inflight_fd(const struct fe *fe);
const struct fe_inflight_info *fe_inflight_info(const struct fe *fe);
/*
 * Replaces the fd and info the next activation sends with SET_INFLIGHT_FD (hostile tests):
 * fd is duplicated; fd < 0 drops the kept one, and the next activation asks GET_INFLIGHT_FD
 * again, as cloud-hypervisor does when it holds none.
 */
int fe_set_inflight(struct fe *fe, int fd, const struct fe_inflight_info *info);

/* ---- vhost-user messages ---- */
int fe_vu_send(struct fe *fe, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
               const int *fds, unsigned nfds);
/* Receives one reply; -ETIMEDOUT after timeout_ms, -ECONNRESET when the daemon closed. */
int fe_vu_recv(struct fe *fe, uint32_t *request, void *payload, uint32_t *size, int timeout_ms);
/* Sends with NEED_REPLY and returns the u64 ack (0 success) or a negative errno. */
int64_t fe_vu_ack(struct fe *fe, uint32_t request, const void *payload, uint32_t size,
                  const int *fds, unsigned nfds);
/* Sends a GET-type request and reads its u64 reply. */
int fe_vu_get_u64(struct fe *fe, uint32_t request, uint64_t *value);
/* Sends a request without NEED_REPLY and reads the u64 reply it has of its own (SET_LOG_BASE
 * with LOG_SHMFD, SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE). */
int fe_vu_call_u64(struct fe *fe, uint32_t request, const void *payload, uint32_t size,
                   const int *fds, unsigned nfds, uint64_t *reply);
/* GET_INFLIGHT_FD with req: the reply's payload into *reply and its one fd into *fd (the
 * caller's; -1 if the reply had none). -EPROTO on a malformed reply or more than one fd. */
int fe_vu_get_inflight(struct fe *fe, const struct fe_inflight_info *req,
                       struct fe_inflight_info *reply, int *fd);
/* True if the daemon closed the connection (reads EOF within timeout_ms). */
bool fe_vu_closed(struct fe *fe, int timeout_ms);

/* ---- device state (migration) ---- */
#define FE_STATE_SAVE 0u
#define FE_STATE_LOAD 1u
/* GET_VRING_BASE on every ring: the device is suspended, as QEMU leaves it before a SAVE. */
int fe_stop_rings(struct fe *fe);
/* SET_DEVICE_STATE_FD (direction FE_STATE_*, phase 0 = stopped) handing over fd (none when
 * fd < 0); *reply is the back-end's u64 (bit 8: it sends no fd back). */
int fe_set_state_fd(struct fe *fe, uint32_t direction, uint32_t phase, int fd, uint64_t *reply);
/* CHECK_DEVICE_STATE: *result is 0 when the transfer succeeded. A LOAD of a large state may
 * take a while: timeout_ms bounds the wait for the answer. */
int fe_check_state(struct fe *fe, uint64_t *result, int timeout_ms);

/* ---- guest memory ---- */
void *fe_ptr(struct fe *fe, uint64_t gpa);
/* Allocates len bytes (16-byte aligned) of guest memory from the data area; returns a gpa. */
uint64_t fe_alloc(struct fe *fe, size_t len);
/* Allocates whole pages (page-aligned, len rounded up): nothing else shares them. */
uint64_t fe_alloc_pages(struct fe *fe, size_t len);
/* The gpa of a host pointer into guest memory (fe_ptr's inverse). */
uint64_t fe_gpa_of(struct fe *fe, const void *p);
/* Frees every allocation made since the mark. */
size_t fe_alloc_mark(struct fe *fe);
void fe_alloc_release(struct fe *fe, size_t mark);

/* ---- virtqueue driver ---- */
struct fe_buf {
    uint64_t gpa;
    uint32_t len;
    bool write; /* device-writable */
};
struct vring_desc *fe_vq_desc(struct fe *fe, unsigned q);
struct vring_avail *fe_vq_avail(struct fe *fe, unsigned q);
struct vring_used *fe_vq_used(struct fe *fe, unsigned q);
unsigned fe_vq_size(struct fe *fe, unsigned q);
/* Writes a chain into free descriptors (direct, or one indirect table) and publishes it. */
int fe_vq_add(struct fe *fe, unsigned q, const struct fe_buf *bufs, unsigned n, bool indirect,
              uint16_t *head);
/* Publishes an arbitrary head index in the avail ring (for hostile tests). */
void fe_vq_publish(struct fe *fe, unsigned q, uint16_t head);
void fe_vq_kick(struct fe *fe, unsigned q);
/* Takes one used element without waiting (no system call); -EAGAIN when there is none, and
 * then the device is asked to signal the call fd on the next one (used_event). */
int fe_vq_take_used(struct fe *fe, unsigned q, uint16_t *head, uint32_t *len);
/* The fd the device signals used buffers on (for waiting on several queues at once). */
int fe_vq_call_fd(struct fe *fe, unsigned q);
/* Waits for one used element; -ETIMEDOUT when none arrives in time. */
int fe_vq_get_used(struct fe *fe, unsigned q, uint16_t *head, uint32_t *len, int timeout_ms);
/* Returns a completed chain's descriptors to the free list. */
void fe_vq_free_chain(struct fe *fe, unsigned q, uint16_t head);

/* ---- FUSE ---- */
struct fe_reply {
    int error;     /* fuse_out_header.error (negative errno) */
    uint32_t len;  /* bytes the daemon wrote (used len) */
    uint8_t *data; /* payload after fuse_out_header, in guest memory */
    size_t data_len;
};
/*
 * Sends one FUSE request on queue q: the header (filled from opcode/nodeid), then the in
 * iovecs, with a reply buffer of out_size bytes after fuse_out_header. Waits for it.
 * Returns 0 when a reply arrived (check r->error), negative errno otherwise.
 */
int fe_fuse(struct fe *fe, unsigned q, uint32_t opcode, uint64_t nodeid, const struct iovec *in,
            unsigned nin, size_t out_size, struct fe_reply *r);
/* fe_fuse with the caller's uid/gid in fuse_in_header (fe_fuse sends 0/0, root). */
int fe_fuse_as(struct fe *fe, unsigned q, uint32_t uid, uint32_t gid, uint32_t opcode,
               uint64_t nodeid, const struct iovec *in, unsigned nin, size_t out_size,
               struct fe_reply *r);
/*
 * A request whose reply may take a while (a blocking lock): fe_fuse_send publishes it and
 * returns at once; fe_fuse_wait collects the reply (-ETIMEDOUT: not yet, wait again). Replies
 * to other requests (fe_fuse) are matched meanwhile; p must stay valid until collected.
 */
#define FE_MAX_PENDING 256
struct fe_pending {
    unsigned q;
    uint16_t head;
    uint64_t unique;
    uint64_t reply_gpa;
    bool done;
    uint32_t used_len;
};
int fe_fuse_send(struct fe *fe, unsigned q, uint32_t opcode, uint64_t nodeid,
                 const struct iovec *in, unsigned nin, size_t out_size, uint32_t pid,
                 struct fe_pending *p);
int fe_fuse_wait(struct fe *fe, struct fe_pending *p, int timeout_ms, struct fe_reply *r);
/*
 * fe_fuse_send for long runs: the request (h's opcode, nodeid, uid, gid, pid; len and unique
 * are filled in here), the reply room and the indirect table are laid out in the caller's
 * guest memory [area_gpa, area_gpa + area_len), which it may reuse once the reply has been
 * collected (fe_fuse_wait). -ENOSPC if it does not fit or FE_MAX_PENDING are out.
 */
int fe_fuse_submit(struct fe *fe, unsigned q, const struct fuse_in_header *h,
                   const struct iovec *in, unsigned nin, size_t out_size, uint64_t area_gpa,
                   size_t area_len, struct fe_pending *p);
/*
 * Waits up to timeout_ms for the next reply, on any queue, to a request sent with
 * fe_fuse_send or fe_fuse_submit, and returns that request in *done (collect it with
 * fe_fuse_wait, which then returns at once). -ETIMEDOUT: none came; -ECONNRESET: none came
 * and the vhost-user connection hung up (the daemon died); -EPROTO: a used element no
 * pending request waits for (a head answered twice, or never sent): fe_stray tells which.
 */
int fe_fuse_next(struct fe *fe, int timeout_ms, struct fe_pending **done);
void fe_stray(const struct fe *fe, unsigned *q, uint16_t *head);
/* Requests sent and not yet collected. */
unsigned fe_pending_count(const struct fe *fe);
int fe_fuse_init(struct fe *fe);
/*
 * INIT (protocol 7.38) offering the FUSE_* flags given (bits 32..63 go in flags2; FUSE_INIT_EXT
 * is added), the daemon's reply into *out (when not NULL). Returns the FUSE error.
 */
int fe_fuse_init_flags(struct fe *fe, uint64_t flags, struct fuse_init_out *out);
/* fe_fuse with fuse_in_header.total_extlen set: the last total_extlen * 8 bytes of the in
 * iovecs are the request's extensions (FUSE 7.38). */
int fe_fuse_ext(struct fe *fe, unsigned q, uint16_t total_extlen, uint32_t opcode, uint64_t nodeid,
                const struct iovec *in, unsigned nin, size_t out_size, struct fe_reply *r);
/* Convenience: LOOKUP name under parent into e; returns the FUSE error. */
int fe_lookup(struct fe *fe, uint64_t parent, const char *name, struct fuse_entry_out *e);

#endif
