/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the hash-table sizing (src/hash_sizer.c). */
#include "hash_sizer.h"

#include <glib.h>
#include <pthread.h>
#include <stdlib.h>

#include "hash.h"

struct item {
    struct cds_lfht_node node;
    unsigned long key;
};

static int match(struct cds_lfht_node *node, const void *key)
{
    return caa_container_of(node, struct item, node)->key == *(const unsigned long *)key;
}

static void test_want(void)
{
    g_assert_cmpuint(hash_sizer_want(64, 0), ==, 64);
    g_assert_cmpuint(hash_sizer_want(64, 128), ==, 64); /* load 2: no resize yet */
    g_assert_cmpuint(hash_sizer_want(64, 129), ==, 128);
    g_assert_cmpuint(hash_sizer_want(131072, 262145), ==, 262144);
    g_assert_cmpuint(hash_sizer_want(1024, 128), ==, 1024); /* load 1/8: kept */
    g_assert_cmpuint(hash_sizer_want(1024, 127), ==, 256);
    g_assert_cmpuint(hash_sizer_want(128, 0), ==, 64);
    g_assert_cmpuint(hash_sizer_want(64, 1), ==, 64); /* never below the minimum */
}

#define ITEMS   100000
#define THREADS 2

struct filler {
    struct hash_sizer *s;
    struct item *items;
    unsigned first;
};

/* Adds its share of the items to both tables, as the inode table does. */
static void *fill(void *arg)
{
    struct filler *f = arg;

    rcu_register_thread();
    for (unsigned i = f->first; i < ITEMS; i += THREADS) {
        struct item *it = &f->items[i];

        rcu_read_lock();
        cds_lfht_add(f->s->tables[0], hash_u64(it->key), &it->node);
        hash_sizer_note(f->s, 1);
        rcu_read_unlock();
    }
    rcu_unregister_thread();
    return NULL;
}

/* Seconds to look every item up (the best of three passes). */
static double lookup_all(struct cds_lfht *ht, const struct item *items)
{
    double best = 1e9;

    for (int pass = 0; pass < 3; pass++) {
        gint64 t0 = g_get_monotonic_time();
        rcu_read_lock();
        for (unsigned i = 0; i < ITEMS; i++) {
            struct cds_lfht_iter iter;
            cds_lfht_lookup(ht, hash_u64(items[i].key), match, &items[i].key, &iter);
            g_assert_nonnull(cds_lfht_iter_get_node(&iter));
        }
        rcu_read_unlock();
        best = MIN(best, (g_get_monotonic_time() - t0) / 1e6);
    }
    return best;
}

/*
 * Filled from two threads, the table ends at the size asked for, and a lookup costs what it
 * costs in a table resized by hand to that size: liburcu's own auto-resize, which this
 * replaces, left a random share of such tables at 256 to 2048 buckets for good (lookups 20
 * to 50 times slower). Emptied, it shrinks back to the minimum.
 */
static void test_grows_and_shrinks(void)
{
    struct item *items = calloc(ITEMS, sizeof(*items));
    struct item *copy = calloc(ITEMS, sizeof(*copy));
    struct hash_sizer s;
    struct cds_lfht *ht = hash_sizer_table(), *ref = hash_sizer_table();
    pthread_t th[THREADS];
    struct filler f[THREADS];

    g_assert_nonnull(ht);
    g_assert_nonnull(ref);
    hash_sizer_init(&s, ht, NULL);
    for (unsigned i = 0; i < ITEMS; i++) {
        items[i].key = copy[i].key = i * 7919ul;
        cds_lfht_node_init(&items[i].node);
        cds_lfht_node_init(&copy[i].node);
    }
    for (unsigned t = 0; t < THREADS; t++) {
        f[t] = (struct filler){&s, items, t};
        pthread_create(&th[t], NULL, fill, &f[t]);
    }
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    rcu_barrier(); /* the queued resizes are done */
    g_assert_cmpint(s.items, ==, ITEMS);
    g_assert_cmpuint(s.buckets, ==, 65536);

    cds_lfht_resize(ref, s.buckets);
    rcu_read_lock();
    for (unsigned i = 0; i < ITEMS; i++)
        cds_lfht_add(ref, hash_u64(copy[i].key), &copy[i].node);
    rcu_read_unlock();
    double ours = lookup_all(ht, items), reference = lookup_all(ref, copy);
    g_test_message("lookups: %.3f s, %.3f s in the reference table", ours, reference);
    g_assert_cmpfloat(ours, <, 4 * reference + 0.01);

    rcu_read_lock();
    for (unsigned i = 0; i < ITEMS; i++) {
        g_assert_cmpint(cds_lfht_del(ht, &items[i].node), ==, 0);
        hash_sizer_note(&s, -1);
        g_assert_cmpint(cds_lfht_del(ref, &copy[i].node), ==, 0);
    }
    rcu_read_unlock();
    rcu_barrier();
    g_assert_cmpint(s.items, ==, 0);
    g_assert_cmpuint(s.buckets, ==, HASH_SIZER_MIN_BUCKETS);
    synchronize_rcu(); /* no reader holds the nodes any more */
    g_assert_cmpint(cds_lfht_destroy(ht, NULL), ==, 0);
    g_assert_cmpint(cds_lfht_destroy(ref, NULL), ==, 0);
    free(items);
    free(copy);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    rcu_register_thread();
    g_test_add_func("/hash_sizer/want", test_want);
    g_test_add_func("/hash_sizer/grows_and_shrinks", test_grows_and_shrinks);
    int ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
