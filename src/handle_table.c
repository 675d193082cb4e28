/* SPDX-License-Identifier: Apache-2.0 */
/* Lock-free open-handle table; see include/handle_table.h. */
#include "handle_table.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "hash_sizer.h"

struct htab {
    struct cds_lfht *ht;
    struct hash_sizer sizer; /* not liburcu's auto-resize: see src/hash_sizer.c */
    uint64_t next_fh;        /* atomic; the last fh handed out */

    /* Released handles waiting for a grace period (handle_table.h), newest first. */
    pthread_mutex_t released_lock;
    struct pt_handle *released;
    unsigned long n_released; /* atomic */
    int64_t oldest_ns;        /* CLOCK_MONOTONIC of the oldest on the list; atomic */
};

/* Released handles closed together, or after waiting this long. */
#define RELEASE_BATCH   8
#define RELEASE_WAIT_NS 1000000

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fh_match(struct cds_lfht_node *node, const void *arg)
{
    const struct pt_handle *h = caa_container_of(node, struct pt_handle, node);

    return h->fh == *(const uint64_t *)arg;
}

int htab_new(struct htab **out)
{
    struct htab *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->ht = hash_sizer_table();
    if (!t->ht) {
        free(t);
        return -ENOMEM;
    }
    hash_sizer_init(&t->sizer, t->ht, NULL);
    pthread_mutex_init(&t->released_lock, NULL);
    *out = t;
    return 0;
}

/* Open handles, process-wide (atomic). A released one stops counting when it leaves its table,
 * not when its fd closes after the grace period: a guest that closes files may open others at
 * once (the reserve covers the fds still closing). */
static unsigned long open_fds;

const unsigned long *htab_fd_counter(void)
{
    return &open_fds;
}

static void handle_free(struct pt_handle *h)
{
    if (h->dir) {
        pthread_mutex_destroy(&h->dir->lock);
        free(h->dir);
    }
    close(h->fd);
    free(h);
}

/* A handle out of its table: no longer counted, freed after a grace period (htab_reclaim). */
static void handle_drop(struct htab *t, struct pt_handle *h)
{
    __atomic_sub_fetch(&open_fds, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&t->released_lock);
    if (!t->released)
        __atomic_store_n(&t->oldest_ns, now_ns(), __ATOMIC_RELAXED);
    h->released_next = t->released;
    t->released = h;
    __atomic_add_fetch(&t->n_released, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&t->released_lock);
}

void htab_reclaim(struct htab *t, bool idle)
{
    unsigned long n = __atomic_load_n(&t->n_released, __ATOMIC_ACQUIRE);
    struct pt_handle *list;

    if (!n || (!idle && n < RELEASE_BATCH &&
               now_ns() - __atomic_load_n(&t->oldest_ns, __ATOMIC_RELAXED) < RELEASE_WAIT_NS))
        return;
    pthread_mutex_lock(&t->released_lock);
    list = t->released;
    t->released = NULL;
    n = 0;
    for (struct pt_handle *h = list; h; h = h->released_next)
        n++;
    __atomic_sub_fetch(&t->n_released, n, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&t->released_lock);
    if (!list)
        return; /* another thread took them */
    /* An op that found one of these handles inside its read-side section may still use its
     * fd: they close once every such section has ended. */
    synchronize_rcu();
    while (list) {
        struct pt_handle *next = list->released_next;

        handle_free(list);
        list = next;
    }
}

static struct pt_dirstream *dirstream_new(void)
{
    struct pt_dirstream *d = malloc(sizeof(*d));

    if (!d)
        return NULL;
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d);
        return NULL;
    }
    d->pos = 0;
    d->synced = true; /* a new fd is at the start */
    return d;
}

static struct pt_handle *handle_new(uint64_t nodeid, int fd, bool dir)
{
    struct pt_handle *h = calloc(1, sizeof(*h));

    if (h && dir) {
        h->dir = dirstream_new();
        if (!h->dir) {
            free(h);
            h = NULL;
        }
    }
    if (!h) {
        close(fd);
        return NULL;
    }
    h->fd = fd;
    h->nodeid = nodeid;
    __atomic_add_fetch(&open_fds, 1, __ATOMIC_RELAXED);
    cds_lfht_node_init(&h->node);
    return h;
}

int htab_insert_at(struct htab *t, uint64_t fh, uint64_t nodeid, int fd, bool dir)
{
    struct pt_handle *h;

    /* fh 0 is allowed: the Rust virtiofsd hands it out first, and a guest may bring it along
     * in a migration. htab_add never hands it out. */
    h = handle_new(nodeid, fd, dir);
    if (!h)
        return -ENOMEM;
    h->fh = fh;
    if (cds_lfht_add_unique(t->ht, hash_u64(fh), fh_match, &fh, &h->node) != &h->node) {
        handle_drop(t, h);
        return -EEXIST;
    }
    hash_sizer_note(&t->sizer, 1);
    return 0;
}

uint64_t htab_last_fh(struct htab *t)
{
    return __atomic_load_n(&t->next_fh, __ATOMIC_RELAXED);
}

void htab_set_last_fh(struct htab *t, uint64_t last)
{
    __atomic_store_n(&t->next_fh, last, __ATOMIC_RELAXED);
}

int htab_for_each(struct htab *t, int (*fn)(struct pt_handle *h, void *arg), void *arg)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    int ret = 0;

    rcu_read_lock();
    cds_lfht_first(t->ht, &iter);
    for (; !ret && (node = cds_lfht_iter_get_node(&iter)); cds_lfht_next(t->ht, &iter))
        ret = fn(caa_container_of(node, struct pt_handle, node), arg);
    rcu_read_unlock();
    return ret;
}

int htab_add(struct htab *t, uint64_t nodeid, int fd, bool dir, uint64_t *fh)
{
    struct pt_handle *h = handle_new(nodeid, fd, dir);

    if (!h)
        return -ENOMEM;
    h->fh = __atomic_add_fetch(&t->next_fh, 1, __ATOMIC_RELAXED);
    cds_lfht_add(t->ht, hash_u64(h->fh), &h->node);
    hash_sizer_note(&t->sizer, 1);
    *fh = h->fh;
    return 0;
}

struct pt_handle *htab_get(struct htab *t, uint64_t fh, uint64_t nodeid)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    struct pt_handle *h;

    cds_lfht_lookup(t->ht, hash_u64(fh), fh_match, &fh, &iter);
    node = cds_lfht_iter_get_node(&iter);
    if (!node)
        return NULL;
    h = caa_container_of(node, struct pt_handle, node);
    return h->nodeid == nodeid ? h : NULL;
}

int htab_remove(struct htab *t, uint64_t fh, uint64_t nodeid)
{
    struct pt_handle *h = htab_get(t, fh, nodeid);

    /* Of two concurrent RELEASEs of one fh only the one whose delete succeeds frees it. */
    if (!h || cds_lfht_del(t->ht, &h->node) != 0)
        return -EBADF;
    hash_sizer_note(&t->sizer, -1);
    handle_drop(t, h);
    return 0;
}

void htab_clear(struct htab *t)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;

    rcu_read_lock();
    /* Not cds_lfht_for_each_entry: it applies container_of to the final NULL. */
    cds_lfht_first(t->ht, &iter);
    for (; (node = cds_lfht_iter_get_node(&iter)); cds_lfht_next(t->ht, &iter)) {
        struct pt_handle *h = caa_container_of(node, struct pt_handle, node);

        if (cds_lfht_del(t->ht, node) == 0) {
            hash_sizer_note(&t->sizer, -1);
            handle_drop(t, h);
        }
    }
    rcu_read_unlock();
}

void htab_free(struct htab *t)
{
    if (!t)
        return;
    htab_clear(t);
    htab_reclaim(t, true);
    rcu_barrier(); /* no callback (a resize) may run after the table is gone */
    cds_lfht_destroy(t->ht, NULL);
    pthread_mutex_destroy(&t->released_lock);
    free(t);
}
