/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hash tables sized by their owner's item count; see include/hash_sizer.h.
 *
 * Why not CDS_LFHT_AUTO_RESIZE: liburcu (0.13.2 as Debian 12 ships it, and its master to date)
 * queues a resize on its worker thread and only then sets the table's resize_initiated flag.
 * When the worker runs that resize and clears the flag before the store, the flag stays set
 * and no automatic resize is ever queued again: the table keeps the 256, 512 or 2048 buckets
 * it had, whatever it holds. With 200,000 inodes in 256 buckets every lookup walks ~800 nodes:
 * a READDIRPLUS of 200,000 entries took 5-17 s instead of 0.8 s in a random share of the
 * runs, and LOOKUPs and FORGETs slowed down alike (tests/bench --scale 200000 --scale-runs 6
 * shows it). userspace-rcu commit 6f05e9b ("fix resize problems") fixes it; no release has it.
 *
 * Here the owner counts its items, and when the count leaves [buckets / 8, 2 * buckets] a new
 * size is published and a call_rcu callback resizes the tables (cds_lfht_resize). Not inline:
 * cds_lfht_resize must not run inside a read-side critical section, where the tables' adds and
 * removals happen. The call_rcu thread already exists (it frees the inodes and handles), is
 * registered with liburcu, and runs callbacks outside any read-side section; a big grow starts
 * liburcu's resize helper threads from it, as the auto-resize did from its worker (the same
 * calls, allowed by the seccomp filter). A stale request only resizes to the newest size.
 */
#include "hash_sizer.h"

#include <stdlib.h>

struct resize_req {
    struct rcu_head rcu;
    struct hash_sizer *s;
};

struct cds_lfht *hash_sizer_table(void)
{
    return cds_lfht_new(HASH_SIZER_MIN_BUCKETS, HASH_SIZER_MIN_BUCKETS, 0, 0, NULL);
}

void hash_sizer_init(struct hash_sizer *s, struct cds_lfht *a, struct cds_lfht *b)
{
    *s = (struct hash_sizer){.tables = {a, b}, .buckets = HASH_SIZER_MIN_BUCKETS};
}

static unsigned long pow2_at_least(unsigned long n)
{
    unsigned long p = HASH_SIZER_MIN_BUCKETS;

    while (p < n)
        p <<= 1;
    return p;
}

/* Load 1 right after a grow, at most 2 before the next: 8-16 bytes of buckets per item. */
unsigned long hash_sizer_want(unsigned long buckets, unsigned long items)
{
    if (items > 2 * buckets)
        return pow2_at_least((items + 1) / 2);
    if (buckets > HASH_SIZER_MIN_BUCKETS && items < buckets / 8)
        return pow2_at_least(2 * items);
    return buckets;
}

static void resize_rcu(struct rcu_head *head)
{
    struct resize_req *r = caa_container_of(head, struct resize_req, rcu);
    unsigned long n = __atomic_load_n(&r->s->buckets, __ATOMIC_ACQUIRE);

    for (int i = 0; i < 2; i++)
        if (r->s->tables[i])
            cds_lfht_resize(r->s->tables[i], n);
    free(r);
}

void hash_sizer_note(struct hash_sizer *s, long delta)
{
    long items = __atomic_add_fetch(&s->items, delta, __ATOMIC_RELAXED);
    unsigned long old = __atomic_load_n(&s->buckets, __ATOMIC_RELAXED);
    unsigned long want;
    struct resize_req *r;

    /* Below zero for a moment when a removal is counted before its add, on another thread. */
    if (items < 0 || (want = hash_sizer_want(old, (unsigned long)items)) == old)
        return;
    /* Without memory for the request the table keeps its size until the next change. */
    r = malloc(sizeof(*r));
    if (!r)
        return;
    /* One request per new size: whoever publishes it queues it. */
    if (!__atomic_compare_exchange_n(&s->buckets, &old, want, false, __ATOMIC_RELEASE,
                                     __ATOMIC_RELAXED)) {
        free(r);
        return;
    }
    r->s = s;
    call_rcu(&r->rcu, resize_rcu);
}
