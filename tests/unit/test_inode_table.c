/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the lock-free inode table (src/inode_table.c). */
#include "inode_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    g_assert_nonnull(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

static int new_fd(void)
{
    int fd = open("/dev/null", O_PATH | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static struct itab *new_table(void)
{
    struct itab_key root_key = {.dev = 1, .ino = 1, .mnt_id = 1};
    struct pt_inode *root;
    struct itab *t;

    g_assert_cmpint(itab_new(&t), ==, 0);
    g_assert_cmpint(itab_insert_root(t, &root_key, new_fd(), S_IFDIR, &root), ==, 0);
    g_assert_cmpuint(root->nodeid, ==, FUSE_ROOT_ID);
    return t;
}

static struct pt_inode *ref_key(struct itab *t, uint64_t ino)
{
    struct itab_key key = {.dev = 7, .ino = ino, .mnt_id = 3};
    struct pt_inode *inode;

    g_assert_cmpint(itab_ref_or_insert(t, &key, new_fd(), S_IFREG, &inode), ==, 0);
    g_assert_cmpuint(inode->key.ino, ==, ino);
    return inode;
}

static void test_insert_lookup(void)
{
    int base = count_fds();
    struct itab *t = new_table();
    struct pt_inode *a, *a2, *b;

    rcu_read_lock();
    a = ref_key(t, 100);
    g_assert_cmpuint(a->nodeid, >, FUSE_ROOT_ID);
    g_assert_cmpuint(a->refcount, ==, 1);
    g_assert_true((a->type & S_IFMT) == S_IFREG);
    a2 = ref_key(t, 100); /* same key: same inode, one more reference, the new fd closed */
    g_assert_true(a2 == a);
    g_assert_cmpuint(a->refcount, ==, 2);
    b = ref_key(t, 101);
    g_assert_true(b != a);
    g_assert_cmpuint(b->nodeid, !=, a->nodeid);
    g_assert_true(itab_get(t, a->nodeid) == a);
    g_assert_true(itab_get(t, b->nodeid) == b);
    g_assert_nonnull(itab_get(t, FUSE_ROOT_ID));
    g_assert_null(itab_get(t, 0));
    g_assert_null(itab_get(t, 999999)); /* never issued */
    g_assert_cmpuint(itab_count(t), ==, 3);
    rcu_read_unlock();
    itab_free(t);
    g_assert_cmpint(count_fds(), ==, base);
}

static void test_forget(void)
{
    int base = count_fds();
    struct itab *t = new_table();
    struct pt_inode *a, *again;
    uint64_t id;

    rcu_read_lock();
    a = ref_key(t, 5);
    ref_key(t, 5);
    id = a->nodeid;
    itab_forget(t, id, 1);
    g_assert_true(itab_get(t, id) == a);
    itab_forget(t, 424242, 3); /* unknown: harmless */
    itab_forget(t, id, 0);     /* zero: nothing */
    itab_forget(t, id, 1000);  /* more than held: saturates */
    g_assert_null(itab_get(t, id));
    itab_forget(t, id, 1);              /* already forgotten: harmless */
    itab_forget(t, FUSE_ROOT_ID, 1000); /* the root is pinned */
    g_assert_nonnull(itab_get(t, FUSE_ROOT_ID));
    again = ref_key(t, 5); /* a forgotten key gets a new inode and a new nodeid */
    g_assert_cmpuint(again->nodeid, !=, id);
    g_assert_null(itab_get(t, id));
    rcu_read_unlock();
    rcu_barrier();
    g_assert_cmpint(count_fds(), ==, base + 2); /* root and the new inode */
    rcu_read_lock();
    itab_unref(t, again, 1);
    rcu_read_unlock();
    rcu_barrier();
    g_assert_cmpint(count_fds(), ==, base + 1);
    g_assert_cmpuint(itab_count(t), ==, 1);
    itab_free(t);
    g_assert_cmpint(count_fds(), ==, base);
}

static void test_clear(void)
{
    int base = count_fds();
    struct itab *t = new_table();
    struct pt_inode *root;
    uint64_t ids[10];

    rcu_read_lock();
    for (int i = 0; i < 10; i++)
        ids[i] = ref_key(t, 1000 + i)->nodeid;
    root = itab_get(t, FUSE_ROOT_ID);
    g_assert_true(itab_ref(root));
    rcu_read_unlock();
    itab_clear(t, 2);
    rcu_barrier();
    g_assert_cmpint(count_fds(), ==, base + 1);
    g_assert_cmpuint(itab_count(t), ==, 1);
    rcu_read_lock();
    for (int i = 0; i < 10; i++)
        g_assert_null(itab_get(t, ids[i]));
    g_assert_true(itab_get(t, FUSE_ROOT_ID) == root);
    g_assert_cmpuint(root->refcount, ==, 2);
    g_assert_cmpuint(ref_key(t, 1000)->nodeid, >, ids[9]); /* nodeids are never reused */
    rcu_read_unlock();
    itab_free(t);
    g_assert_cmpint(count_fds(), ==, base);
}

/* An inode at count 0 but not yet unlinked (a FORGET in progress) is replaced, not revived. */
static void test_dying_replaced(void)
{
    struct itab *t = new_table();
    struct pt_inode *a, *b;

    rcu_read_lock();
    a = ref_key(t, 9);
    __atomic_store_n(&a->refcount, 0, __ATOMIC_SEQ_CST); /* as a forgetter leaves it */
    g_assert_false(itab_ref(a));
    b = ref_key(t, 9);
    g_assert_true(b != a);
    g_assert_cmpuint(b->refcount, ==, 1);
    g_assert_cmpuint(a->refcount, ==, 0);
    g_assert_null(itab_get(t, a->nodeid));
    g_assert_true(ref_key(t, 9) == b);
    rcu_read_unlock();
    itab_free(t); /* frees the dying one too (still in the nodeid table) */
}

/* Concurrent LOOKUP and FORGET of a few shared keys. */
#define STRESS_THREADS 4
#define STRESS_ITERS   20000
#define STRESS_KEYS    4

enum stress_mode {
    HONEST,  /* every FORGET matches a LOOKUP */
    GUESSED, /* also FORGET guessed nodeids, as a hostile guest would */
    RESET,   /* and another thread resets the table meanwhile */
};

struct stress {
    struct itab *t;
    unsigned seed;
    enum stress_mode mode;
    bool *stop;
};

static void *reset_thread(void *arg)
{
    struct stress *s = arg;

    rcu_register_thread();
    while (!__atomic_load_n(s->stop, __ATOMIC_ACQUIRE)) {
        itab_clear(s->t, 2);
        g_usleep(200);
    }
    rcu_unregister_thread();
    return NULL;
}

static void *stress_thread(void *arg)
{
    struct stress *s = arg;
    GRand *rnd = g_rand_new_with_seed(s->seed);

    rcu_register_thread();
    for (int i = 0; i < STRESS_ITERS; i++) {
        uint64_t ino = 50 + (uint64_t)g_rand_int_range(rnd, 0, STRESS_KEYS);
        struct pt_inode *a, *b;

        rcu_read_lock();
        a = ref_key(s->t, ino);
        if (s->mode == HONEST) {
            /* While we hold a reference the inode is live, and it is the one for its key. */
            g_assert_cmpuint(__atomic_load_n(&a->refcount, __ATOMIC_SEQ_CST), >, 0);
            g_assert_true(itab_get(s->t, a->nodeid) == a);
            b = ref_key(s->t, ino);
            g_assert_true(b == a);
            itab_forget(s->t, b->nodeid, 1);
        } else {
            itab_forget(s->t, a->nodeid + (uint64_t)g_rand_int_range(rnd, 0, 3), 1);
        }
        itab_forget(s->t, a->nodeid, 1);
        rcu_read_unlock();
        /* Frees (and fd closes) wait for grace periods; keep the backlog below the fd limit. */
        if (i % 1000 == 999)
            rcu_barrier();
    }
    rcu_unregister_thread();
    g_rand_free(rnd);
    return NULL;
}

static void run_stress(enum stress_mode mode)
{
    int base = count_fds();
    struct itab *t = new_table();
    struct stress s[STRESS_THREADS + 1];
    pthread_t th[STRESS_THREADS + 1];
    bool stop = false;

    for (int i = 0; i < STRESS_THREADS; i++) {
        s[i] = (struct stress){.t = t, .seed = 1234u + (unsigned)i, .mode = mode};
        g_assert_cmpint(pthread_create(&th[i], NULL, stress_thread, &s[i]), ==, 0);
    }
    s[STRESS_THREADS] = (struct stress){.t = t, .stop = &stop};
    if (mode == RESET)
        g_assert_cmpint(pthread_create(&th[STRESS_THREADS], NULL, reset_thread, &s[STRESS_THREADS]),
                        ==, 0);
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_join(th[i], NULL);
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    if (mode == RESET)
        pthread_join(th[STRESS_THREADS], NULL);
    if (mode == HONEST) /* every reference was returned */
        g_assert_cmpuint(itab_count(t), ==, 1);
    itab_clear(t, 2);
    rcu_barrier();
    g_assert_cmpuint(itab_count(t), ==, 1);
    g_assert_cmpint(count_fds(), ==, base + 1);
    itab_free(t);
    g_assert_cmpint(count_fds(), ==, base);
}

static void test_stress(void)
{
    run_stress(HONEST);
}

static void test_stress_guessed_forgets(void)
{
    run_stress(GUESSED);
}

static void test_stress_concurrent_reset(void)
{
    run_stress(RESET);
}

static bool is_arg(const struct pt_inode *inode, void *arg)
{
    return inode == arg;
}

/*
 * A handle-only inode (fd -1) whose host inode number was reused: itab_find_ref's stale
 * callback unlinks it from the key table, a new inode takes the key, and the old one lives on
 * under its nodeid until forgotten. Inodes with an fd are counted process-wide.
 */
static void test_stale_replaced(void)
{
    struct itab_key key = {.dev = 7, .ino = 500, .mnt_id = 3};
    unsigned long fds = itab_fd_inodes();
    struct itab *t = new_table(); /* the root holds an fd */
    struct pt_inode *old, *new, *again;

    g_assert_cmpuint(itab_fd_inodes(), ==, fds + 1);
    rcu_read_lock();
    g_assert_cmpint(itab_insert(t, &key, -1, NULL, S_IFREG, &old), ==, 0);
    g_assert_cmpint(old->fd, ==, -1);
    g_assert_cmpuint(itab_fd_inodes(), ==, fds + 1);            /* handle-only: no fd */
    g_assert_true(itab_find_ref(t, &key, is_arg, NULL) == old); /* not stale: referenced */
    g_assert_cmpuint(old->refcount, ==, 2);
    g_assert_null(itab_find_ref(t, &key, is_arg, old)); /* stale: unlinked, not referenced */
    g_assert_cmpuint(old->refcount, ==, 2);
    g_assert_cmpint(itab_insert(t, &key, new_fd(), NULL, S_IFREG, &new), ==, 0);
    g_assert_true(new != old);
    g_assert_cmpuint(new->nodeid, !=, old->nodeid);
    g_assert_cmpuint(itab_fd_inodes(), ==, fds + 2);
    again = itab_find_ref(t, &key, NULL, NULL);
    g_assert_true(again == new);
    g_assert_true(itab_get(t, old->nodeid) == old); /* still the guest's until forgotten */
    itab_forget(t, old->nodeid, 2);
    g_assert_null(itab_get(t, old->nodeid));
    g_assert_true(itab_find_ref(t, &key, NULL, NULL) == new); /* the forget left new alone */
    g_assert_cmpuint(new->refcount, ==, 3);
    rcu_read_unlock();
    itab_free(t);
    g_assert_cmpuint(itab_fd_inodes(), ==, fds);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    rcu_register_thread();
    g_test_add_func("/inode_table/insert_lookup", test_insert_lookup);
    g_test_add_func("/inode_table/forget", test_forget);
    g_test_add_func("/inode_table/clear", test_clear);
    g_test_add_func("/inode_table/dying_replaced", test_dying_replaced);
    g_test_add_func("/inode_table/stale_replaced", test_stale_replaced);
    g_test_add_func("/inode_table/stress", test_stress);
    g_test_add_func("/inode_table/stress_guessed_forgets", test_stress_guessed_forgets);
    g_test_add_func("/inode_table/stress_concurrent_reset", test_stress_concurrent_reset);
    ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
