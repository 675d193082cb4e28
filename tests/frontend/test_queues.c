/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue workers at the protocol level: how many threads serve the request queues
 * (--queue-threads, and the default of one per CPU at most one per queue, started only for
 * queues in use), queues sharing a thread each served, one queue stopped while its thread
 * goes on serving the others, and a worker that watches its ring (--queue-poll-us) leaving
 * kicks off meanwhile, so that a request published without a kick is served.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define NOT_YET 300 /* ms to wait for a reply that must not come */
#define ARRIVES 5000

static struct test_daemon daemon_;

static void start(const char *const *args)
{
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    char *p = g_build_filename(daemon_.share, "probe", NULL);
    g_assert_true(g_file_set_contents(p, "x", -1, NULL));
    g_free(p);
}

static struct fe *connect_queues(unsigned queues)
{
    struct fe_config cfg = {.socket_path = daemon_.socket, .request_queues = queues};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    return fe;
}

/* The serving process's queue worker threads (named queue-worker-N). */
static int worker_threads(void)
{
    char *dir = g_strdup_printf("/proc/%d/task", (int)test_daemon_serving_pid(&daemon_));
    GDir *d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    int n = 0;
    for (const char *tid; (tid = g_dir_read_name(d));) {
        char *path = g_strdup_printf("%s/%s/comm", dir, tid), *comm = NULL;
        if (g_file_get_contents(path, &comm, NULL, NULL) && g_str_has_prefix(comm, "queue-worker-"))
            n++;
        g_free(comm);
        g_free(path);
    }
    g_dir_close(d);
    g_free(dir);
    return n;
}

/* The workers start as the front-end enables queues and stop when it goes: wait for the
 * count to settle at want (a second at most). */
static int settled_workers(int want)
{
    int n = worker_threads();
    for (int i = 0; i < 50 && n != want; i++) {
        g_usleep(20000);
        n = worker_threads();
    }
    return n;
}

static void assert_lookup_on(struct fe *fe, unsigned q)
{
    struct fe_reply r;
    struct iovec in = {(void *)"probe", 6};
    g_assert_cmpint(
        fe_fuse(fe, q, FUSE_LOOKUP, FUSE_ROOT_ID, &in, 1, sizeof(struct fuse_entry_out), &r), ==,
        0);
    g_assert_cmpint(r.error, ==, 0);
}

/* Publishes a LOOKUP of "probe" on queue q without kicking; returns its head, *out its reply. */
static uint16_t publish_lookup(struct fe *fe, unsigned q, uint64_t unique, uint64_t *out)
{
    uint64_t in = fe_alloc(fe, 256);
    *out = fe_alloc(fe, 256);
    struct fuse_in_header h = {
        .len = sizeof(h) + 6, .opcode = FUSE_LOOKUP, .unique = unique, .nodeid = FUSE_ROOT_ID};
    memcpy(fe_ptr(fe, in), &h, sizeof(h));
    memcpy((char *)fe_ptr(fe, in) + sizeof(h), "probe", 6);
    struct fe_buf bufs[2] = {{in, h.len, false}, {*out, 256, true}};
    uint16_t head;
    g_assert_cmpint(fe_vq_add(fe, q, bufs, 2, false, &head), ==, 0);
    return head;
}

/* Four queues on one thread: each is served, by one worker thread in all. */
static void test_shared_thread(void)
{
    const char *args[] = {"--num-request-queues=4", "--queue-threads=1", NULL};
    start(args);
    struct fe *fe = connect_queues(4);
    for (unsigned round = 0; round < 3; round++)
        for (unsigned q = 1; q <= 4; q++)
            assert_lookup_on(fe, q);
    g_assert_cmpint(settled_workers(1), ==, 1);
    g_assert_true(test_daemon_log_contains(&daemon_, "served by 1 worker threads"));
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* A thread per queue, but only for the queues the front-end uses. */
static void test_thread_per_queue(void)
{
    const char *args[] = {"--num-request-queues=4", "--queue-threads=4", NULL};
    start(args);
    struct fe *fe = connect_queues(2);
    assert_lookup_on(fe, 1);
    assert_lookup_on(fe, 2);
    g_assert_cmpint(settled_workers(2), ==, 2);
    fe_close(fe);
    fe = connect_queues(4);
    for (unsigned q = 1; q <= 4; q++)
        assert_lookup_on(fe, q);
    g_assert_cmpint(settled_workers(4), ==, 4);
    fe_close(fe);
    /* The session's end stops them all. */
    g_assert_cmpint(settled_workers(0), ==, 0);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* Without --queue-threads: one per CPU, at most one per request queue offered. */
static void test_default_threads(void)
{
    const char *args[] = {"--num-request-queues=16", NULL};
    start(args);
    unsigned cpus = test_usable_cpus();
    g_assert_cmpuint(cpus, >, 0);
    unsigned want = cpus < 16 ? cpus : 16;
    char *line = g_strdup_printf("16 request queues offered, served by %u worker threads", want);
    g_assert_true(test_daemon_log_contains(&daemon_, line));
    g_free(line);
    /* One queue in use (and the high-priority one, which shares its thread): one worker. */
    struct fe *fe = connect_queues(1);
    assert_lookup_on(fe, 1);
    g_assert_cmpint(settled_workers(1), ==, 1);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

struct vring_state {
    uint32_t index, num;
};

/* Stops one queue of a shared worker (GET_VRING_BASE): the others go on, it serves nothing. */
static void test_stop_one_of_shared(void)
{
    const char *args[] = {"--num-request-queues=3", "--queue-threads=1", NULL};
    start(args);
    struct fe *fe = connect_queues(3);
    struct vring_state st = {.index = 2};
    g_assert_cmpint(fe_vu_send(fe, FE_VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0), ==, 0);
    uint32_t req, size = sizeof(st);
    g_assert_cmpint(fe_vu_recv(fe, &req, &st, &size, ARRIVES), ==, 0);
    g_assert_cmpuint(req, ==, FE_VU_GET_VRING_BASE);
    g_assert_cmpuint(st.index, ==, 2);
    assert_lookup_on(fe, 1);
    assert_lookup_on(fe, 3);

    /* A request on the stopped queue stays where it is. */
    uint64_t out;
    publish_lookup(fe, 2, 77, &out);
    fe_vq_kick(fe, 2);
    uint16_t got;
    uint32_t len;
    g_assert_cmpint(fe_vq_get_used(fe, 2, &got, &len, NOT_YET), ==, -ETIMEDOUT);
    assert_lookup_on(fe, 1);
    g_assert_true(test_daemon_alive(&daemon_));
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/*
 * A worker that just served a request watches the ring with kicks off (EVENT_IDX: avail_event
 * left behind the driver's index), so a driver that honours avail_event adds the next request
 * without a kick, and the worker serves it.
 */
static void test_poll_without_kick(void)
{
    const char *args[] = {"--num-request-queues=1", "--queue-poll-us=1000000", NULL};
    start(args);
    struct fe *fe = connect_queues(1);
    assert_lookup_on(fe, 1);
    uint16_t avail_idx = fe_vq_avail(fe, 1)->idx;
    uint16_t avail_event = *(volatile uint16_t *)&fe_vq_used(fe, 1)->ring[fe_vq_size(fe, 1)];
    /* The driver would kick for its next request only if avail_event were avail_idx. */
    g_assert_cmpuint(avail_event, !=, avail_idx);

    uint64_t out;
    uint16_t head = publish_lookup(fe, 1, 99, &out), got; /* no kick */
    uint32_t len;
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, &len, ARRIVES), ==, 0);
    g_assert_cmpuint(got, ==, head);
    const struct fuse_out_header *o = fe_ptr(fe, out);
    g_assert_cmpuint(len, ==, sizeof(*o) + sizeof(struct fuse_entry_out));
    g_assert_cmpuint(o->unique, ==, 99);
    g_assert_cmpint(o->error, ==, 0);
    fe_vq_free_chain(fe, 1, got);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/queues/shared-thread", test_shared_thread);
    g_test_add_func("/queues/thread-per-queue", test_thread_per_queue);
    g_test_add_func("/queues/default-threads", test_default_threads);
    g_test_add_func("/queues/stop-one-of-shared", test_stop_one_of_shared);
    g_test_add_func("/queues/poll-without-kick", test_poll_without_kick);
    return g_test_run();
}
