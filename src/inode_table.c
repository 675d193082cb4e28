/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lock-free inode table; see include/inode_table.h for the lifetime rules.
 *
 * Insertion protocol (itab_ref_or_insert), chosen so that a guest cannot break it by guessing
 * nodeids (they come from a counter and are easy to guess):
 *   1. look the key up; a live inode gets a reference and we are done;
 *   2. otherwise add a new inode to the nodeid table first, still "unpublished": FORGET ignores
 *      unpublished inodes, so a guessed FORGET cannot free it before step 3 links it;
 *   3. cds_lfht_add_unique() it into the key table. If a live inode with the key won the race,
 *      take a reference on that one and discard ours (only we can, since it is unpublished);
 *      if the inode in the way is dying (count 0), unlink it from the key table on behalf of
 *      its forgetter (cds_lfht_del is idempotent) and retry.
 * An inode is marked published by whoever finds it in the key table, so every nodeid handed to
 * the guest belongs to a published inode and every FORGET of it counts.
 */
#include "inode_table.h"

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array_grow.h"
#include "file_handle.h"
#include "hash.h"
#include "hash_sizer.h"

struct itab {
    struct cds_lfht *by_key;
    struct cds_lfht *by_id;
    /* Both tables sized by the count of by_id, not by liburcu's auto-resize, which can stop
     * for good (a READDIRPLUS of 200k entries then takes 5-17 s instead of 0.8 s): see
     * src/hash_sizer.c. */
    struct hash_sizer sizer;
    uint64_t next_nodeid; /* atomic; the last nodeid handed out */
    unsigned long live;   /* published inodes not yet removed; atomic */

    /* The fd cache (inode_table.h): the inodes whose fds it may close, in a clock. */
    pthread_mutex_t fd_lock;
    struct pt_inode **clock;
    size_t clock_n, clock_cap, hand;
    unsigned long fd_cap;        /* 0: no bound */
    const unsigned long *others; /* other fds counted against fd_cap, or NULL */
    unsigned long nfds;    /* inodes of this table holding an fd; atomic, changed under fd_lock */
    unsigned long reclaim; /* fds the next itab_fd_reclaim closes; atomic */
    bool reclaiming;       /* a thread is in itab_fd_reclaim; atomic */
    bool evicting;         /* an fd was ever closed by the clock; atomic */
};

static unsigned long key_hash(const struct itab_key *k)
{
    return hash_u64(k->ino ^ hash_u64(k->dev ^ hash_u64(k->mnt_id)));
}

static int key_match(struct cds_lfht_node *node, const void *arg)
{
    const struct pt_inode *inode = caa_container_of(node, struct pt_inode, key_node);
    const struct itab_key *k = arg;

    return inode->key.ino == k->ino && inode->key.dev == k->dev && inode->key.mnt_id == k->mnt_id;
}

static int id_match(struct cds_lfht_node *node, const void *arg)
{
    const struct pt_inode *inode = caa_container_of(node, struct pt_inode, id_node);

    return inode->nodeid == *(const uint64_t *)arg;
}

int itab_new(struct itab **out)
{
    struct itab *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->by_key = hash_sizer_table();
    t->by_id = hash_sizer_table();
    if (!t->by_key || !t->by_id) {
        if (t->by_key)
            cds_lfht_destroy(t->by_key, NULL);
        if (t->by_id)
            cds_lfht_destroy(t->by_id, NULL);
        free(t);
        return -ENOMEM;
    }
    hash_sizer_init(&t->sizer, t->by_key, t->by_id);
    t->next_nodeid = FUSE_ROOT_ID;
    pthread_mutex_init(&t->fd_lock, NULL);
    *out = t;
    return 0;
}

/* A daemon may hold millions of inodes: keep them within a 128-byte allocation. */
_Static_assert(sizeof(struct pt_inode) <= 120, "struct pt_inode grew");

/* Inodes holding an fd, process-wide (atomic). */
static unsigned long fd_inodes;

/*
 * Fds the cache no longer counts as an inode's but that are not closed yet (they close after a
 * grace period: a removed inode's with the inode, call_rcu; the clock's in itab_fd_reclaim),
 * process-wide as RLIMIT_NOFILE is (atomic). They count against every cap until closed: a
 * storm of FORGETs must not let new fds in before the old ones are gone.
 */
static unsigned long fds_closing;

unsigned long itab_fd_inodes(void)
{
    return __atomic_load_n(&fd_inodes, __ATOMIC_RELAXED);
}

static struct pt_inode *inode_alloc(const struct itab_key *key, int fd, struct pt_fhandle *fh,
                                    mode_t type)
{
    struct pt_inode *inode = calloc(1, sizeof(*inode));

    if (!inode)
        return NULL;
    inode->key = *key;
    inode->fd = fd;
    inode->fh = fh;
    if (fd >= 0)
        __atomic_add_fetch(&fd_inodes, 1, __ATOMIC_RELAXED);
    inode->type = type & S_IFMT;
    inode->refcount = 1;
    cds_lfht_node_init(&inode->key_node);
    cds_lfht_node_init(&inode->id_node);
    return inode;
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

static void inode_free_rcu(struct rcu_head *head)
{
    struct pt_inode *inode = caa_container_of(head, struct pt_inode, rcu);

    if (inode->fd >= 0)
        __atomic_sub_fetch(&fd_inodes, 1, __ATOMIC_RELAXED);
    close_fd(inode->fd);
    if (inode->closing)
        __atomic_sub_fetch(&fds_closing, 1, __ATOMIC_RELAXED);
    fh_free(inode->fh);
    free(inode->loc);
    free(inode);
}

unsigned long itab_live(struct itab *t)
{
    return __atomic_load_n(&t->live, __ATOMIC_RELAXED);
}

static bool is_published(struct pt_inode *inode)
{
    return __atomic_load_n(&inode->published, __ATOMIC_ACQUIRE);
}

static void publish(struct pt_inode *inode)
{
    __atomic_store_n(&inode->published, 1, __ATOMIC_RELEASE);
}

bool itab_ref(struct pt_inode *inode)
{
    uint64_t old = __atomic_load_n(&inode->refcount, __ATOMIC_RELAXED);

    do {
        if (old == 0)
            return false; /* dying: must not be resurrected */
    } while (!__atomic_compare_exchange_n(&inode->refcount, &old, old + 1, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return true;
}

/* The fd cache's side of an inode's life (at the end of this file). */
static bool fd_keep_new(struct itab *t);
static void fd_cache_admit(struct itab *t, struct pt_inode *inode);
static void fd_cache_drop(struct itab *t, struct pt_inode *inode);

/* Unlinks a published inode whose count reached zero; called exactly once per inode. */
static void inode_remove(struct itab *t, struct pt_inode *inode)
{
    fd_cache_drop(t, inode);
    __atomic_sub_fetch(&t->live, 1, __ATOMIC_RELAXED);
    /* -ENOENT is fine: a concurrent inserter may have unlinked it from the key table. */
    cds_lfht_del(t->by_key, &inode->key_node);
    cds_lfht_del(t->by_id, &inode->id_node);
    hash_sizer_note(&t->sizer, -1);
    call_rcu(&inode->rcu, inode_free_rcu);
}

void itab_unref(struct itab *t, struct pt_inode *inode, uint64_t n)
{
    uint64_t old, new;

    /* Unpublished inodes have not been handed out yet; a guessed FORGET must not free them. */
    if (n == 0 || inode->pinned || !is_published(inode))
        return;
    old = __atomic_load_n(&inode->refcount, __ATOMIC_RELAXED);
    do {
        if (old == 0)
            return;
        new = old > n ? old - n : 0;
    } while (!__atomic_compare_exchange_n(&inode->refcount, &old, new, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    if (new == 0)
        inode_remove(t, inode);
}

static struct pt_inode *lookup_id(struct itab *t, uint64_t nodeid)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;

    cds_lfht_lookup(t->by_id, hash_u64(nodeid), id_match, &nodeid, &iter);
    node = cds_lfht_iter_get_node(&iter);
    return node ? caa_container_of(node, struct pt_inode, id_node) : NULL;
}

struct pt_inode *itab_get(struct itab *t, uint64_t nodeid)
{
    struct pt_inode *inode = lookup_id(t, nodeid);

    if (!inode || __atomic_load_n(&inode->refcount, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    return inode;
}

void itab_forget(struct itab *t, uint64_t nodeid, uint64_t n)
{
    struct pt_inode *inode = lookup_id(t, nodeid);

    if (inode)
        itab_unref(t, inode, n);
}

/*
 * Finds a live inode by key and references it; NULL if none (or only a dying one). A stale one
 * is unlinked from the key table (like a dying one in link_by_key) and not returned.
 */
static struct pt_inode *ref_by_key(struct itab *t, const struct itab_key *key, unsigned long hash,
                                   itab_stale_fn stale, void *arg)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    struct pt_inode *inode;

    cds_lfht_lookup(t->by_key, hash, key_match, key, &iter);
    node = cds_lfht_iter_get_node(&iter);
    if (!node)
        return NULL;
    inode = caa_container_of(node, struct pt_inode, key_node);
    if (stale && stale(inode, arg)) {
        cds_lfht_del(t->by_key, node); /* its own removal later gets -ENOENT, harmlessly */
        return NULL;
    }
    if (!itab_ref(inode))
        return NULL;
    publish(inode); /* it is in the key table, so FORGETs of it must count */
    return inode;
}

/* Throws away an inode that lost the insertion race; it was never in the key table. */
static void discard_unpublished(struct itab *t, struct pt_inode *inode)
{
    cds_lfht_del(t->by_id, &inode->id_node);
    hash_sizer_note(&t->sizer, -1);
    call_rcu(&inode->rcu, inode_free_rcu);
}

/* Links inode into the key table, or returns a referenced live inode that has its key. */
static struct pt_inode *link_by_key(struct itab *t, struct pt_inode *inode, unsigned long hash)
{
    for (;;) {
        struct cds_lfht_node *got =
            cds_lfht_add_unique(t->by_key, hash, key_match, &inode->key, &inode->key_node);
        struct pt_inode *other;

        if (got == &inode->key_node) {
            fd_cache_admit(t, inode);
            __atomic_add_fetch(&t->live, 1, __ATOMIC_RELAXED);
            publish(inode);
            return inode;
        }
        other = caa_container_of(got, struct pt_inode, key_node);
        if (itab_ref(other)) {
            publish(other);
            discard_unpublished(t, inode);
            return other;
        }
        /* other is dying; unlink it for its forgetter so that our insertion can succeed. */
        cds_lfht_del(t->by_key, got);
    }
}

struct pt_inode *itab_find_ref(struct itab *t, const struct itab_key *key, itab_stale_fn stale,
                               void *arg)
{
    return ref_by_key(t, key, key_hash(key), stale, arg);
}

int itab_insert(struct itab *t, const struct itab_key *key, int fd, struct pt_fhandle *fh,
                struct pt_loc *loc, mode_t type, struct pt_inode **out)
{
    struct pt_inode *inode;

    if (fd >= 0 && loc && !fh && !fd_keep_new(t)) {
        close(fd);
        fd = -1;
    }
    inode = inode_alloc(key, fd, fh, type);
    if (!inode) {
        close_fd(fd);
        fh_free(fh);
        free(loc);
        return -ENOMEM;
    }
    inode->loc = loc;
    inode->nodeid = __atomic_add_fetch(&t->next_nodeid, 1, __ATOMIC_RELAXED);
    cds_lfht_add(t->by_id, hash_u64(inode->nodeid), &inode->id_node);
    hash_sizer_note(&t->sizer, 1);
    *out = link_by_key(t, inode, key_hash(key));
    return 0;
}

int itab_ref_or_insert(struct itab *t, const struct itab_key *key, int fd, mode_t type,
                       struct pt_inode **out)
{
    struct pt_inode *inode = ref_by_key(t, key, key_hash(key), NULL, NULL);

    if (inode) {
        close_fd(fd);
        *out = inode;
        return 0;
    }
    return itab_insert(t, key, fd, NULL, NULL, type, out);
}

int itab_insert_root(struct itab *t, const struct itab_key *key, int fd, mode_t type,
                     struct pt_inode **out)
{
    struct pt_inode *root = inode_alloc(key, fd, NULL, type);

    if (!root) {
        close_fd(fd);
        return -ENOMEM;
    }
    root->nodeid = FUSE_ROOT_ID;
    root->pinned = true;
    root->refcount = 2; /* like libfuse: the kernel's own reference plus one */
    rcu_read_lock();
    cds_lfht_add(t->by_id, hash_u64(root->nodeid), &root->id_node);
    hash_sizer_note(&t->sizer, 1);
    if (cds_lfht_add_unique(t->by_key, key_hash(key), key_match, key, &root->key_node) !=
        &root->key_node) {
        /* Only possible if called twice; keep the first root. */
        cds_lfht_del(t->by_id, &root->id_node);
        hash_sizer_note(&t->sizer, -1);
        rcu_read_unlock();
        call_rcu(&root->rcu, inode_free_rcu);
        return -EEXIST;
    }
    if (fd >= 0)
        __atomic_add_fetch(&t->nfds, 1, __ATOMIC_RELAXED);
    publish(root);
    rcu_read_unlock();
    *out = root;
    return 0;
}

/*
 * Drops the inode from a reset. Other ops may still be running (a reset on one queue while
 * another serves requests), so the removal follows the FORGET rule: only whoever moves the
 * count from nonzero to zero removes. An unpublished inode belongs to an insertion in progress,
 * which will either publish it (it then lives on as a fresh inode) or discard it.
 */
static void reset_one(struct itab *t, struct pt_inode *inode)
{
    if (!is_published(inode))
        return;
    if (__atomic_exchange_n(&inode->refcount, 0, __ATOMIC_ACQ_REL) != 0)
        inode_remove(t, inode);
}

/* Final teardown: nothing else runs, so every inode goes, whatever its state. */
static void free_one(struct itab *t, struct pt_inode *inode)
{
    if (is_published(inode)) {
        fd_cache_drop(t, inode);
        __atomic_sub_fetch(&t->live, 1, __ATOMIC_RELAXED);
    }
    cds_lfht_del(t->by_id, &inode->id_node);
    hash_sizer_note(&t->sizer, -1);
    if (is_published(inode))
        cds_lfht_del(t->by_key, &inode->key_node); /* -ENOENT if already unlinked */
    call_rcu(&inode->rcu, inode_free_rcu);
}

/* Resets (keep_root) or frees every inode. */
static void clear_all(struct itab *t, bool keep_root, uint64_t root_refcount)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;

    rcu_read_lock();
    /* Not cds_lfht_for_each_entry: it applies container_of to the final NULL. */
    cds_lfht_first(t->by_id, &iter);
    for (; (node = cds_lfht_iter_get_node(&iter)); cds_lfht_next(t->by_id, &iter)) {
        struct pt_inode *inode = caa_container_of(node, struct pt_inode, id_node);

        if (!keep_root)
            free_one(t, inode);
        else if (inode->pinned)
            __atomic_store_n(&inode->refcount, root_refcount, __ATOMIC_RELEASE);
        else
            reset_one(t, inode);
    }
    rcu_read_unlock();
}

void itab_clear(struct itab *t, uint64_t root_refcount)
{
    clear_all(t, true, root_refcount);
}

int itab_insert_at(struct itab *t, uint64_t nodeid, const struct itab_key *key, int fd,
                   struct pt_fhandle *fh, struct pt_loc *loc, mode_t type, uint64_t refcount,
                   struct pt_inode **out)
{
    struct pt_inode *inode;
    unsigned long hash = key_hash(key);

    if (nodeid == 0 || nodeid == FUSE_ROOT_ID || refcount == 0 || lookup_id(t, nodeid)) {
        close_fd(fd);
        fh_free(fh);
        free(loc);
        return nodeid == 0 || nodeid == FUSE_ROOT_ID || refcount == 0 ? -EINVAL : -EEXIST;
    }
    if (fd >= 0 && loc && !fh && !fd_keep_new(t)) {
        close(fd); /* no room: opened again when needed */
        fd = -1;
    }
    inode = inode_alloc(key, fd, fh, type);
    if (!inode) {
        close_fd(fd);
        fh_free(fh);
        free(loc);
        return -ENOMEM;
    }
    inode->loc = loc;
    inode->nodeid = nodeid;
    inode->refcount = refcount;
    /* Key first: a second nodeid for a host inode that already has one is refused, as the
     * key table allows one inode per key. Nothing else runs, so no race to lose. */
    if (cds_lfht_add_unique(t->by_key, hash, key_match, key, &inode->key_node) !=
        &inode->key_node) {
        call_rcu(&inode->rcu, inode_free_rcu);
        return -EEXIST;
    }
    cds_lfht_add(t->by_id, hash_u64(nodeid), &inode->id_node);
    hash_sizer_note(&t->sizer, 1);
    fd_cache_admit(t, inode);
    __atomic_add_fetch(&t->live, 1, __ATOMIC_RELAXED);
    publish(inode);
    *out = inode;
    return 0;
}

uint64_t itab_last_nodeid(struct itab *t)
{
    return __atomic_load_n(&t->next_nodeid, __ATOMIC_RELAXED);
}

void itab_set_last_nodeid(struct itab *t, uint64_t last)
{
    __atomic_store_n(&t->next_nodeid, last, __ATOMIC_RELAXED);
}

int itab_for_each(struct itab *t, int (*fn)(struct pt_inode *inode, void *arg), void *arg)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    int ret = 0;

    rcu_read_lock();
    cds_lfht_first(t->by_id, &iter);
    for (; !ret && (node = cds_lfht_iter_get_node(&iter)); cds_lfht_next(t->by_id, &iter)) {
        struct pt_inode *inode = caa_container_of(node, struct pt_inode, id_node);

        if (is_published(inode) && __atomic_load_n(&inode->refcount, __ATOMIC_ACQUIRE) != 0)
            ret = fn(inode, arg);
    }
    rcu_read_unlock();
    return ret;
}

unsigned long itab_count(struct itab *t)
{
    long before, after;
    unsigned long count;

    rcu_read_lock();
    cds_lfht_count_nodes(t->by_id, &before, &count, &after);
    rcu_read_unlock();
    return count;
}

void itab_free(struct itab *t)
{
    if (!t)
        return;
    clear_all(t, false, 0);
    /* Wait for the frees and resizes so no callback runs after the tables are gone. */
    rcu_barrier();
    cds_lfht_destroy(t->by_key, NULL);
    cds_lfht_destroy(t->by_id, NULL);
    free(t->clock);
    pthread_mutex_destroy(&t->fd_lock);
    free(t);
}

/* ---- the fd cache ------------------------------------------------------------------------ */

/* Fds closed together after one grace period, at most. */
#define EVICT_MAX 4096

static void free_loc_rcu(struct rcu_head *head)
{
    free(caa_container_of(head, struct pt_loc, rcu));
}

void itab_set_fd_cap(struct itab *t, unsigned long cap, const unsigned long *others)
{
    pthread_mutex_lock(&t->fd_lock);
    t->fd_cap = cap;
    t->others = others;
    pthread_mutex_unlock(&t->fd_lock);
}

unsigned long itab_fds(struct itab *t)
{
    return __atomic_load_n(&t->nfds, __ATOMIC_RELAXED) +
           __atomic_load_n(&fds_closing, __ATOMIC_RELAXED);
}

bool itab_fd_evicting(struct itab *t)
{
    return __atomic_load_n(&t->evicting, __ATOMIC_RELAXED);
}

/* The fds counted against the cap: the inodes' and the others'. */
static unsigned long fds_used(struct itab *t)
{
    unsigned long used =
        __atomic_load_n(&t->nfds, __ATOMIC_RELAXED) + __atomic_load_n(&fds_closing, __ATOMIC_RELAXED);

    return t->others ? used + __atomic_load_n(t->others, __ATOMIC_RELAXED) : used;
}

/* Room for one more inode fd under the cap. */
static bool fd_room(struct itab *t)
{
    return !t->fd_cap || fds_used(t) < t->fd_cap;
}

/*
 * Near the cap (within a sixteenth): asks for room to be made, n fds more than the excess,
 * by the next itab_fd_reclaim (which runs outside any read-side section).
 */
static void want_room(struct itab *t, unsigned long n)
{
    unsigned long used = fds_used(t), low = t->fd_cap - t->fd_cap / 16;

    if (!t->fd_cap || used + n <= low)
        return;
    n += used > low ? used - low : 0;
    __atomic_store_n(&t->reclaim, n, __ATOMIC_RELEASE);
}

/* Whether the clock may close inode's fd: it has one, and a place to open it again from. */
static bool evictable(const struct pt_inode *inode)
{
    return __atomic_load_n(&inode->fd, __ATOMIC_ACQUIRE) >= 0 &&
           __atomic_load_n(&inode->loc, __ATOMIC_ACQUIRE) && !inode->fh && !inode->pinned &&
           !__atomic_load_n(&inode->hidden, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&inode->refcount, __ATOMIC_ACQUIRE) != 0;
}

static void clock_add(struct itab *t, struct pt_inode *inode)
{
    if (inode->slot || array_grow((void **)&t->clock, &t->clock_cap, t->clock_n + 1,
                                  sizeof(*t->clock), UINT32_MAX) < 0)
        return; /* out of memory: the inode just keeps its fd */
    t->clock[t->clock_n++] = inode;
    inode->slot = (uint32_t)t->clock_n;
    /* Just found or opened: the guest is about to use it. */
    __atomic_store_n(&inode->used, 1, __ATOMIC_RELAXED);
}

static void clock_del(struct itab *t, struct pt_inode *inode)
{
    size_t i = inode->slot - 1;

    if (!inode->slot)
        return;
    t->clock[i] = t->clock[--t->clock_n];
    t->clock[i]->slot = (uint32_t)(i + 1);
    inode->slot = 0;
    if (t->hand >= t->clock_n)
        t->hand = 0;
}

/* The clock sweep: takes the fds of up to n inodes not used since the hand last passed them
 * into fds (closed by the caller after a grace period). Under fd_lock. */
static size_t sweep(struct itab *t, size_t n, int *fds)
{
    size_t budget = 2 * t->clock_n + 1, got = 0;

    while (got < n && t->clock_n && budget--) {
        struct pt_inode *inode = t->clock[t->hand];

        if (!evictable(inode)) {
            clock_del(t, inode); /* it keeps its fd; the hand now points at the next one */
        } else if (__atomic_exchange_n(&inode->used, 0, __ATOMIC_RELAXED)) {
            t->hand = (t->hand + 1) % t->clock_n;
        } else {
            fds[got++] = __atomic_exchange_n(&inode->fd, -1, __ATOMIC_ACQ_REL);
            clock_del(t, inode);
            __atomic_sub_fetch(&t->nfds, 1, __ATOMIC_RELAXED);
            __atomic_sub_fetch(&fd_inodes, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&fds_closing, 1, __ATOMIC_RELAXED);
        }
    }
    return got;
}

void itab_fd_reclaim(struct itab *t)
{
    size_t n = __atomic_load_n(&t->reclaim, __ATOMIC_ACQUIRE), got;
    int *fds;

    /* Nothing asked for (one load: the common case), or another thread does it. */
    if (!n || __atomic_exchange_n(&t->reclaiming, true, __ATOMIC_ACQ_REL))
        return;
    n = n < EVICT_MAX ? n : EVICT_MAX;
    fds = malloc(n * sizeof(*fds));
    if (fds) {
        pthread_mutex_lock(&t->fd_lock);
        got = sweep(t, n, fds);
        __atomic_store_n(&t->reclaim, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&t->fd_lock);
        if (got) {
            __atomic_store_n(&t->evicting, true, __ATOMIC_RELAXED);
            /* An op that read one of these fds inside its read-side section may still use
             * it: they close once every such section has ended. */
            synchronize_rcu();
        }
        for (size_t i = 0; i < got; i++)
            close(fds[i]);
        __atomic_sub_fetch(&fds_closing, got, __ATOMIC_RELAXED);
        free(fds);
    }
    __atomic_store_n(&t->reclaiming, false, __ATOMIC_RELEASE);
}

void itab_fd_evict(struct itab *t, unsigned long n)
{
    unsigned long old = __atomic_load_n(&t->reclaim, __ATOMIC_ACQUIRE);

    if (old < n)
        __atomic_store_n(&t->reclaim, n, __ATOMIC_RELEASE);
}

bool itab_fd_install(struct itab *t, struct pt_inode *inode, int fd)
{
    int none = -1;
    bool ok = false;

    pthread_mutex_lock(&t->fd_lock);
    /* A count of zero: inode_remove ran or is about to (it takes this lock), and would not
     * see the new fd in the clock. No room: the fd stays the caller's, for this op only. */
    if (fd_room(t) && __atomic_load_n(&inode->refcount, __ATOMIC_ACQUIRE) != 0 &&
        __atomic_compare_exchange_n(&inode->fd, &none, fd, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
        ok = true;
        __atomic_add_fetch(&t->nfds, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&fd_inodes, 1, __ATOMIC_RELAXED);
        if (evictable(inode))
            clock_add(t, inode);
    }
    want_room(t, 1);
    pthread_mutex_unlock(&t->fd_lock);
    return ok;
}

struct pt_loc *itab_loc_new(uint64_t parent, const char *name)
{
    size_t len = strlen(name) + 1;
    struct pt_loc *loc = malloc(sizeof(*loc) + len);

    if (loc) {
        loc->parent = parent;
        memcpy(loc->name, name, len);
    }
    return loc;
}

int itab_set_loc(struct itab *t, struct pt_inode *inode, uint64_t parent, const char *name)
{
    struct pt_loc *old = __atomic_load_n(&inode->loc, __ATOMIC_ACQUIRE), *loc = NULL;

    if (inode->fh || inode->pinned)
        return 0; /* reopened by handle, or never closed */
    if (name && old && old->parent == parent && strcmp(old->name, name) == 0)
        return 0; /* the common case: seen where it was */
    if (name && !(loc = itab_loc_new(parent, name)))
        return -ENOMEM;
    pthread_mutex_lock(&t->fd_lock);
    if (!loc && __atomic_load_n(&inode->fd, __ATOMIC_ACQUIRE) < 0) {
        /* Keeping an fd it does not have: the caller opens it again first. */
        pthread_mutex_unlock(&t->fd_lock);
        return -EAGAIN;
    }
    old = __atomic_exchange_n(&inode->loc, loc, __ATOMIC_ACQ_REL);
    if (!loc)
        clock_del(t, inode);
    else if (evictable(inode))
        clock_add(t, inode);
    pthread_mutex_unlock(&t->fd_lock);
    if (old)
        call_rcu(&old->rcu, free_loc_rcu);
    return 0;
}

/* Whether a new inode (placed: with a pt_loc) keeps the fd it was found with: only while
 * there is room under the cap; else the op that found it is its last user. */
static bool fd_keep_new(struct itab *t)
{
    /* Counters only (atomic), no lock: every LOOKUP of a new name comes here. The cap is set
     * before the table is used. */
    bool keep = fd_room(t);

    want_room(t, 1);
    return keep;
}

/* A new inode just linked: its fd counts, and the clock may close it from now on. */
static void fd_cache_admit(struct itab *t, struct pt_inode *inode)
{
    if (inode->fd < 0)
        return;
    pthread_mutex_lock(&t->fd_lock);
    __atomic_add_fetch(&t->nfds, 1, __ATOMIC_RELAXED);
    if (evictable(inode))
        clock_add(t, inode);
    pthread_mutex_unlock(&t->fd_lock);
}

/* Before an inode's removal: out of the clock, its fd no longer counted in the table. */
static void fd_cache_drop(struct itab *t, struct pt_inode *inode)
{
    pthread_mutex_lock(&t->fd_lock);
    clock_del(t, inode);
    if (inode->fd >= 0) {
        /* Closed with the inode after a grace period, which a storm of FORGETs may make
         * long: counted as closing until then, so that the budget holds. */
        __atomic_sub_fetch(&t->nfds, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&fds_closing, 1, __ATOMIC_RELAXED);
        inode->closing = 1;
    }
    pthread_mutex_unlock(&t->fd_lock);
}
