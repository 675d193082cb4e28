/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Split virtqueues (virtio 1.x, section 2.7): popping descriptor chains from the avail ring,
 * returning them through the used ring, and EVENT_IDX notification suppression.
 * Nothing here blocks or owns a thread; see worker.h for that.
 */
#ifndef VFS_VIRTQUEUE_H
#define VFS_VIRTQUEUE_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest_mem.h"
#include "inflight.h"

#define VQ_MAX_SIZE 32768 /* the largest queue size virtio allows */
#define VQ_MAX_IOV  2048  /* iovecs one chain may produce (1 MiB reads need ~260) */
#define VQ_SHADOW   256   /* answered heads still shadowed by earlier avail entries (vq_push) */

/* One descriptor chain, translated to host memory. */
struct vq_elem {
    uint16_t head;   /* descriptor index to return in the used ring */
    unsigned rd_num; /* iov[0, rd_num): device-readable (the request) */
    unsigned wr_num; /* iov[rd_num, rd_num + wr_num): device-writable (the reply) */
    size_t rd_len, wr_len;
    bool writable_seen; /* while walking: a device-writable descriptor came already */
    struct iovec iov[VQ_MAX_IOV];
    /* The device-writable buffers by guest-physical address, in chain order (contiguous ones
     * merged): what dirty-page logging marks once a reply is written (vq_log_reply). */
    unsigned wr_gpa_num;
    struct {
        uint64_t gpa, len;
    } wr_gpa[VQ_MAX_IOV];
    /* The head's counter in the in-flight region (vq_pop); 0 when the ring is not tracked. */
    uint64_t counter;
};

struct virtqueue {
    /* Set by the front-end through vhost-user messages. */
    unsigned num;                           /* queue size, 0 until SET_VRING_NUM */
    uint64_t desc_uva, avail_uva, used_uva; /* front-end virtual addresses */
    bool log_used;                          /* VHOST_VRING_F_LOG: log used-ring writes ... */
    uint64_t log_used_gpa;                  /* ... at this address for the ring's first byte */
    uint16_t last_avail_idx;                /* next avail entry we consume (SET_VRING_BASE) */
    bool event_idx;                         /* VIRTIO_RING_F_EVENT_IDX negotiated */

    /* Derived by vq_map() from the current memory table. */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    /* The dirty-page log while logging is on, else NULL: set with the ring addresses for each
     * read-side section by the ring's owner (like desc/avail/used, valid only within it). */
    struct guest_log *log;

    uint16_t used_idx;       /* next used entry we fill */
    uint16_t signalled_used; /* used_idx at the last notification (EVENT_IDX) */
    bool signalled_used_valid;
    bool bad_avail_logged;

    /*
     * Heads the driver may not name in the avail ring now (see vq_pop): out[] those popped
     * and not yet pushed; shadowed[] those pushed while avail entries published earlier were
     * still unread, each until the consumer passes shadow[].until. Only the thread that owns
     * the ring (pops and pushes) touches them. The bitmaps come last (vq_clear).
     */
    struct {
        uint16_t head, until;
    } shadow[VQ_SHADOW]; /* FIFO, until in increasing order */
    uint16_t shadow_first, shadow_n;
    uint16_t avail_seen; /* avail->idx as vq_pop last read it */
    bool dup_logged;

    /* In-flight tracking (inflight.h): each pop is recorded in the region and each push
     * clears it; r NULL when the front-end gave no region. Set by the ring's owner. */
    struct inflight_queue inflight;

    /* Bits are set for heads below bits_num only (the largest num a head was marked out
     * under since the last vq_clear): a clear touches those words, not all 8 KiB. */
    unsigned bits_num;
    uint64_t out[VQ_MAX_SIZE / 64];
    uint64_t shadowed[VQ_MAX_SIZE / 64];
};

/*
 * Zeroes the whole ring, configuration included, as memset would; but of the bitmaps only
 * the words that can be nonzero, so that the pages of a queue never used beyond its size
 * stay untouched (a device has 17 queues; most are never started).
 */
void vq_clear(struct virtqueue *vq);

/* Resets everything but the address/size configuration (no head is out afterwards). */
void vq_reset_state(struct virtqueue *vq);

/* Translates the ring addresses through mem; -EFAULT when any ring lies outside it. */
int vq_map(struct virtqueue *vq, const struct guest_mem *mem);

/*
 * Pops the next available chain into elem.
 * Returns 1 with a good chain, 0 when the ring is empty, and -EINVAL (or another negative
 * errno) for a chain that cannot be walked: elem->head is then still valid, and the caller
 * must return it with vq_push(vq, elem->head, 0) so the driver gets its buffer back.
 * Either way the head is out until that vq_push: an avail entry naming it meanwhile (or
 * published before that push) is a driver bug or attack, logged once per ring and skipped
 * (returns 0, the entry consumed, nothing for the used ring): each popped head reaches the
 * used ring exactly once, and a caller may keep per-head state while a head is out.
 * A corrupt avail ring (index out of range, avail idx jumping ahead by more than the queue
 * size) is logged and treated as empty: returns 0.
 */
int vq_pop(struct virtqueue *vq, const struct guest_mem *mem, struct vq_elem *elem);

/*
 * Walks the chain at head again, as vq_pop did when it was popped: for a request completed
 * later (a blocking lock), whose buffers must be translated through the memory table in
 * force now and checked again. Returns 0 or a negative errno.
 */
int vq_walk(struct virtqueue *vq, const struct guest_mem *mem, uint16_t head, struct vq_elem *elem);

/* Marks head out, as vq_pop does, for a head served again without being popped (a request
 * in flight before a restart, inflight.h); it must be pushed like a popped one. */
void vq_mark_out(struct virtqueue *vq, uint16_t head);

/* The heads out now (popped or marked, not pushed), in ascending order, into heads (room for
 * vq->num); their number. */
unsigned vq_out_heads(const struct virtqueue *vq, uint16_t *heads);

/* Puts head into the used ring with len bytes written; the head is no longer out. With
 * vq->log and log_used, the used-ring writes are logged. */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len);

/*
 * Dirty-page logging of a reply: marks the pages of the first len bytes of elem's
 * device-writable buffers, the bytes a reply of used length len wrote (the used length is
 * exactly what was written into the chain, from its first writable byte on).
 */
void vq_log_reply(struct guest_log *log, const struct vq_elem *elem, uint32_t len);

/* After a batch of pushes: true if the driver wants an interrupt (honours EVENT_IDX). */
bool vq_should_notify(struct virtqueue *vq);

/*
 * Re-arms driver notifications before sleeping. Returns true if new buffers arrived meanwhile
 * (the caller must process them instead of sleeping).
 */
bool vq_enable_notify(struct virtqueue *vq);
/* Asks the driver not to kick while we are busy processing. */
void vq_disable_notify(struct virtqueue *vq);

/* True if the avail ring holds buffers we have not consumed. */
bool vq_has_avail(struct virtqueue *vq);

#endif
