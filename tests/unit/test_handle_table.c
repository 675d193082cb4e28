/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the open-handle table (src/handle_table.c): released handles' fds close after
 * a grace period, in htab_reclaim, promptly (a batch, a short wait, or when the worker is
 * idle) rather than whenever liburcu's call_rcu thread comes round.
 */
#include "handle_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
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

/* n handles opened and released (every other one a directory handle). */
static void open_release(struct htab *t, int n)
{
    uint64_t fh;

    for (int i = 0; i < n; i++) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        rcu_read_lock();
        g_assert_cmpint(htab_add(t, 42, fd, i % 2, &fh), ==, 0);
        g_assert_nonnull(htab_get(t, fh, 42));
        g_assert_cmpint(htab_remove(t, fh, 42), ==, 0);
        g_assert_null(htab_get(t, fh, 42)); /* gone at once for requests */
        rcu_read_unlock();
    }
}

static void test_release_closes_promptly(void)
{
    int base = count_fds();
    struct htab *t;

    g_assert_cmpint(htab_new(&t), ==, 0);
    /* A few may wait for a batch or a quiet moment (a grace period costs something; whether
     * they still wait here depends on the clock), and go when the worker is idle. */
    open_release(t, 3);
    htab_reclaim(t, false);
    g_assert_cmpint(count_fds(), <=, base + 3);
    htab_reclaim(t, true); /* the worker has nothing else to do */
    g_assert_cmpint(count_fds(), ==, base);
    /* A batch goes between requests. */
    open_release(t, 40);
    htab_reclaim(t, false);
    g_assert_cmpint(count_fds(), ==, base);
    /* Or the few once they waited a little. */
    open_release(t, 2);
    g_usleep(5000);
    htab_reclaim(t, false);
    g_assert_cmpint(count_fds(), ==, base);
    /* Teardown closes whatever is left. */
    open_release(t, 5);
    htab_free(t);
    g_assert_cmpint(count_fds(), ==, base);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    rcu_register_thread();
    g_test_add_func("/handle_table/release-closes-promptly", test_release_closes_promptly);
    int ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
