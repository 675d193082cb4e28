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

/* ---- the shared area of a connection ------------------------------------------------------
 *
 * The memfd holds, from offset 0: the queues' regions; at the next page, one page of our own
 * (struct inflight_page: per queue the next counter and the avail position, so that counters
 * never repeat across restarts); at the next page, the session journal's area
 * (session_journal.h, SJ_AREA_SIZE bytes).
 */
#define INFLIGHT_MAX_QUEUES 64
struct inflight_page {
    char magic[8];                                /* INFLIGHT_PAGE_MAGIC */
    uint64_t next_counter[INFLIGHT_MAX_QUEUES];   /* the counter the next pop takes */
    uint16_t last_avail_idx[INFLIGHT_MAX_QUEUES]; /* the avail entry the next pop reads */
};
#define INFLIGHT_PAGE_MAGIC "VFSINFL1"

struct inflight_area {
    uint8_t *base; /* the mapping: size bytes */
    size_t size;
    unsigned nqueues, queue_size; /* as GET_INFLIGHT_FD was asked for */
    size_t region_size;           /* inflight_region_size(queue_size) */
    struct inflight_page *page;
    void *journal; /* SJ_AREA_SIZE bytes */
    size_t journal_len;
};

/* Bytes of the whole memfd for nqueues queues of queue_size; 0 when out of range. */
size_t inflight_area_size(unsigned nqueues, unsigned queue_size);

/*
 * GET_INFLIGHT_FD: a new memfd of inflight_area_size() bytes, zeroed, sealed against
 * shrinking, growing and further sealing (a front-end that could shrink it would make our
 * accesses fault). 0 with *fd and *size, or a negative errno.
 */
int inflight_create(unsigned nqueues, unsigned queue_size, int *fd, uint64_t *size);

/*
 * SET_INFLIGHT_FD: maps what the front-end hands back. The fd must be a memfd sealed against
 * shrinking, at least offset + size bytes long, offset 0 and size exactly
 * inflight_area_size(nqueues, queue_size) (ours are; anything else is not a region we made).
 * 0 with *out, or a negative errno with the reason logged. The fd is not taken.
 */
int inflight_map(int fd, uint64_t size, uint64_t offset, unsigned nqueues, unsigned queue_size,
                 struct inflight_area **out);
void inflight_unmap(struct inflight_area *a);

/* The region of queue q (< a->nqueues). */
struct inflight_region *inflight_region_of(const struct inflight_area *a, unsigned q);

/* ---- one queue, on the thread that owns its ring ------------------------------------------ */

struct inflight_queue {
    struct inflight_region *r; /* NULL: not tracked */
    unsigned capacity;         /* entries the region has room for (the area's queue size) */
    uint64_t *next_counter;
    uint16_t *last_avail_idx;
};

/* A head was popped (last_avail_idx: the avail position after it): records it as in flight
 * and returns its counter. */
static inline uint64_t inflight_begin(struct inflight_queue *iq, uint16_t head,
                                      uint16_t last_avail_idx)
{
    uint64_t c = (*iq->next_counter)++;
    struct inflight_desc *d = &iq->r->desc[head];
    __atomic_store_n(&d->counter, c, __ATOMIC_RELAXED);
    /* The counter before the flag: a flag seen set names its counter. */
    __atomic_store_n(&d->inflight, 1, __ATOMIC_RELEASE);
    __atomic_store_n(iq->last_avail_idx, last_avail_idx, __ATOMIC_RELAXED);
    return c;
}

/* Before used->idx is published for head: the spec's one-entry batch. */
static inline void inflight_end_prepare(struct inflight_queue *iq, uint16_t head)
{
    __atomic_store_n(&iq->r->desc[head].next, iq->r->last_batch_head, __ATOMIC_RELAXED);
    __atomic_store_n(&iq->r->last_batch_head, head, __ATOMIC_RELEASE);
}

/* After used->idx (now used_idx) is published for head. */
static inline void inflight_end_commit(struct inflight_queue *iq, uint16_t head, uint16_t used_idx)
{
    __atomic_store_n(&iq->r->desc[head].inflight, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&iq->r->used_idx, used_idx, __ATOMIC_RELEASE);
}

/* A request popped before a restart, to serve again. */
struct inflight_resubmit {
    uint16_t head;
    uint64_t counter;
};

/*
 * After a (re)connection, before the ring runs: makes the region of a ring of num entries
 * whose used->idx is used_idx and avail->idx avail_idx consistent (the spec's last-batch
 * fix-up), and lists the heads still in flight in out[] (room for num), oldest first. *n is
 * their number and *last_avail_idx the avail entry to read next. A region that is fresh
 * (all zeros) is initialised; one that does not fit the ring (another size, more heads in
 * flight than the ring can have out, a torn batch list) is logged and initialised afresh: its
 * requests cannot be trusted, nothing is resubmitted, and false is returned (what was in
 * flight is unknown, so neither can the session journal tell what to leave out).
 */
bool inflight_recover(struct inflight_queue *iq, unsigned q, unsigned num, uint16_t used_idx,
                      uint16_t avail_idx, struct inflight_resubmit *out, unsigned *n,
                      uint16_t *last_avail_idx);

/* Whether the request (queue, head, counter) is in flight in the area: its head's entry is
 * marked and carries its counter. Any thread (a racy read of another thread's ring is fine:
 * see session_journal.h). */
bool inflight_in_flight(const struct inflight_area *a, unsigned q, uint16_t head, uint64_t counter);

#endif
