/* SPDX-License-Identifier: Apache-2.0 */
/*
 * In-flight I/O tracking (vhost-user.rst, "Inflight I/O tracking", split virtqueues): a
 * shared-memory record, per queue, of every descriptor head popped and not yet returned
 * through the used ring, kept in a memfd the back-end sizes (GET_INFLIGHT_FD) and the
 * front-end holds and hands to the next back-end (SET_INFLIGHT_FD), so that a back-end that
 * restarts after a crash resubmits what the dead one had popped, oldest first.
 *
 * The layout is the spec's, so a front-end or a tool can read it. Each queue's region:
 *   u64 features, u16 version (1), u16 desc_num (queue size), u16 last_batch_head,
 *   u16 used_idx, then desc_num entries of { u8 inflight, u8 padding[5], u16 next,
 *   u64 counter }
 * Regions follow each other, each starting at a multiple of 64 bytes.
 *
 * A queue's region is written only by the thread that owns the ring (the one that pops and
 * pushes); after a restart it is read before any ring runs, and all of it is untrusted.
 */
#ifndef VFS_INFLIGHT_H
#define VFS_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct inflight_desc {
    uint8_t inflight;
    uint8_t padding[5];
    uint16_t next;
    uint64_t counter;
};

struct inflight_region {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t last_batch_head;
    uint16_t used_idx;
    struct inflight_desc desc[];
};

#define INFLIGHT_VERSION 1
#define INFLIGHT_ALIGN   64

/* Bytes of one queue's region for a queue of size num, rounded up to INFLIGHT_ALIGN. */
size_t inflight_region_size(unsigned num);

#endif
