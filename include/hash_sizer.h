/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sizing of liburcu lock-free hash tables (cds_lfht) by their owner, in place of the library's
 * CDS_LFHT_AUTO_RESIZE, which can stop resizing for good (see src/hash_sizer.c).
 *
 * The owner creates its tables with hash_sizer_table(), counts what it adds and removes with
 * hash_sizer_note() (from a thread registered with liburcu, inside or outside a read-side
 * critical section), and calls rcu_barrier() before it destroys the tables or frees the sizer:
 * resizes run in call_rcu callbacks.
 */
#ifndef VFS_HASH_SIZER_H
#define VFS_HASH_SIZER_H

#include <urcu.h>
#include <urcu/rculfhash.h>

#define HASH_SIZER_MIN_BUCKETS 64ul

struct hash_sizer {
    struct cds_lfht *tables[2]; /* one or two tables holding the same items */
    long items;                 /* atomic */
    unsigned long buckets;      /* atomic: the size last asked for */
};

/* A table for a sizer: HASH_SIZER_MIN_BUCKETS buckets, no auto-resize, no accounting. */
struct cds_lfht *hash_sizer_table(void);
/* b may be NULL (one table). */
void hash_sizer_init(struct hash_sizer *s, struct cds_lfht *a, struct cds_lfht *b);
/* delta items were added (> 0) or removed (< 0); may queue a resize. */
void hash_sizer_note(struct hash_sizer *s, long delta);
/* The bucket count for items in a table of buckets (buckets itself when no resize is due). */
unsigned long hash_sizer_want(unsigned long buckets, unsigned long items);

#endif
