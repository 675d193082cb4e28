/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the lock-free inode table (src/inode_table.c). */
#include "inode_table.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
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
    g_assert_cmpint(itab_insert(t, &key, -1, NULL, NULL, S_IFREG, &old), ==, 0);
    g_assert_cmpint(old->fd, ==, -1);
    g_assert_cmpuint(itab_fd_inodes(), ==, fds + 1);            /* handle-only: no fd */
    g_assert_true(itab_find_ref(t, &key, is_arg, NULL) == old); /* not stale: referenced */
    g_assert_cmpuint(old->refcount, ==, 2);
    g_assert_null(itab_find_ref(t, &key, is_arg, old)); /* stale: unlinked, not referenced */
    g_assert_cmpuint(old->refcount, ==, 2);
    g_assert_cmpint(itab_insert(t, &key, new_fd(), NULL, NULL, S_IFREG, &new), ==, 0);
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

/* ---- the fd cache ------------------------------------------------------------------------ */

/* A new inode (key ino) placed as name in the root: what a LOOKUP makes. Then, as a queue
 * worker does between requests, the reclaim. */
static struct pt_inode *placed(struct itab *t, uint64_t ino, const char *name)
{
    struct itab_key key = {.dev = 7, .ino = ino, .mnt_id = 3};
    struct pt_inode *inode;

    rcu_read_lock();
    g_assert_cmpint(
        itab_insert(t, &key, new_fd(), NULL, itab_loc_new(FUSE_ROOT_ID, name), S_IFREG, &inode), ==,
        0);
    rcu_read_unlock();
    itab_fd_reclaim(t);
    return inode;
}

/* n inodes f0 .. f<n-1> under a cap of cap fds (*others more counted against it). */
static struct itab *cached_table(struct pt_inode **inodes, int n, unsigned long cap,
                                 const unsigned long *others)
{
    struct itab *t = new_table();

    itab_set_fd_cap(t, cap, others);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", i);
        inodes[i] = placed(t, 100 + i, name);
        g_assert_cmpuint(itab_fds(t), <=, cap);
    }
    return t;
}

static void test_fd_cap(void)
{
    static struct pt_inode *in[400];
    int base = count_fds();
    struct itab *t = cached_table(in, 400, 100, NULL);

    g_assert_true(itab_fd_evicting(t));
    g_assert_cmpint(count_fds() - base, <=, 100);
    /* The most recent ones kept their fds; the first ones were closed, and know where they
     * were. */
    g_assert_cmpint(in[399]->fd, >=, 0);
    g_assert_cmpint(in[0]->fd, ==, -1);
    g_assert_nonnull(in[0]->loc);
    g_assert_cmpstr(in[0]->loc->name, ==, "f0");
    g_assert_false(itab_inode_lost(in[0]));
    /* An fd given back counts again while there is room; a second one is the caller's. */
    rcu_read_lock();
    int fd = new_fd();
    g_assert_true(itab_fd_install(t, in[0], fd));
    g_assert_false(itab_fd_install(t, in[0], fd));
    rcu_read_unlock();
    g_assert_cmpint(in[0]->fd, ==, fd);
    g_assert_cmpuint(itab_fds(t), <=, 100);
    itab_free(t);
    g_assert_cmpint(count_fds(), ==, base);
}

/* The clock's second chance: inodes used since the hand last passed keep their fds. */
static void test_fd_second_chance(void)
{
    static struct pt_inode *in[300];
    struct itab *t = cached_table(in, 80, 100, NULL); /* below the cap: none closed yet */

    /* As if the hand had passed them once: not used since. */
    for (int i = 0; i < 80; i++)
        in[i]->used = 0;
    for (int i = 80; i < 300; i++) {
        char name[16];
        for (int j = 0; j < 10; j++)
            (void)itab_inode_fd(in[j]); /* the 10 oldest are used all along */
        snprintf(name, sizeof(name), "g%d", i);
        in[i] = placed(t, 1000 + i, name);
    }
    for (int i = 0; i < 10; i++)
        g_assert_cmpint(in[i]->fd, >=, 0);
    g_assert_cmpint(in[20]->fd, ==, -1);
    itab_free(t);
}

/* No place (name NULL): the inode keeps its fd for good, and the clock passes it by; keeping
 * an fd the clock already closed is refused until it is given back. */
static void test_fd_kept(void)
{
    static struct pt_inode *in[300];
    struct itab *t = cached_table(in, 50, 50, NULL);

    rcu_read_lock();
    g_assert_cmpint(itab_set_loc(t, in[49], 0, NULL), ==, 0);
    rcu_read_unlock();
    g_assert_null(in[49]->loc);
    for (int i = 50; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", i);
        in[i] = placed(t, 100 + i, name);
    }
    g_assert_cmpint(in[49]->fd, >=, 0);
    g_assert_cmpint(in[0]->fd, ==, -1);
    rcu_read_lock();
    g_assert_cmpint(itab_set_loc(t, in[0], 0, NULL), ==, -EAGAIN);
    /* A new place replaces the old one. */
    g_assert_cmpint(itab_set_loc(t, in[0], 5, "elsewhere"), ==, 0);
    rcu_read_unlock();
    g_assert_nonnull(in[0]->loc);
    g_assert_cmpuint(in[0]->loc->parent, ==, 5);
    g_assert_cmpstr(in[0]->loc->name, ==, "elsewhere");
    itab_free(t);
}

/* Other fds drawn from the same budget (open handles) shrink the inodes' share: room is made
 * on request, and new inodes come without fds while there is none. A forgotten inode is not
 * given an fd. */
static void test_fd_others(void)
{
    static struct pt_inode *in[100];
    static unsigned long handles;
    struct itab *t = cached_table(in, 90, 100, &handles);

    handles = 60;
    itab_fd_evict(t, 60);
    itab_fd_reclaim(t);
    g_assert_cmpuint(itab_fds(t), <=, 40);
    handles = 100;
    struct pt_inode *late = placed(t, 99999, "late");
    g_assert_cmpint(late->fd, ==, -1);
    g_assert_false(itab_inode_lost(late));
    handles = 0;
    rcu_read_lock();
    uint64_t id = in[89]->nodeid;
    itab_forget(t, id, 1);
    g_assert_false(itab_fd_install(t, in[89], 12345)); /* dying: the caller closes its fd */
    rcu_read_unlock();
    itab_free(t);
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
    g_test_add_func("/inode_table/fd_cap", test_fd_cap);
    g_test_add_func("/inode_table/fd_second_chance", test_fd_second_chance);
    g_test_add_func("/inode_table/fd_kept", test_fd_kept);
    g_test_add_func("/inode_table/fd_others", test_fd_others);
    ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
