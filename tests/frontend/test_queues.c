/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue workers at the protocol level: how many threads serve the request queues
 * (--queue-threads, and the default of one per CPU at most one per queue, started only for
 * queues in use), queues sharing a thread each served, one queue stopped while its thread
 * goes on serving the others, and a worker that watches its ring (--queue-poll-us) leaving
 * kicks off meanwhile, so that a request published without a kick is served. And a driver
 * that publishes a descriptor head again while the daemon still holds it (a hostile guest):
 * the copy is skipped, the request answered once, the queue stoppable and the daemon
 * stoppable, with and without the thread pool (run-all.sh runs this file both ways).
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
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

/* ---- a descriptor head published again while it is out --------------------------------- */

#define DUP_LOG  "in the avail ring again" /* the daemon's one log line per ring for a duplicate */
#define USED_CAP 64   /* used elements taken at most (a broken daemon floods) */
#define STOP_MS  1000 /* GET_VRING_BASE must be answered within this */
#define EXIT_MS  5000 /* the daemon must exit this soon after SIGTERM */
#define OWNER_A  0xa1a1ULL
#define OWNER_B  0xb2b2ULL

/*
 * A failed check in these tests may leave the daemon hung (its control thread stuck, pool
 * threads spinning): kill it before failing, so that it does not outlive the test.
 */
static void check(bool ok, const char *what)
{
    if (ok)
        return;
    g_test_message("failed: %s", what);
    pid_t serving = test_daemon_serving_pid(&daemon_);
    if (serving > 0)
        kill(serving, SIGKILL);
    if (daemon_.pid > 0)
        kill(daemon_.pid, SIGKILL);
    g_assert_true(ok);
}

/* Takes every used element of queue q until none comes for NOT_YET ms (at most USED_CAP);
 * returns how many named head, *others how many named another head. */
static unsigned count_used(struct fe *fe, unsigned q, uint16_t head, uint32_t *len,
                           unsigned *others)
{
    unsigned hits = 0;
    *others = 0;
    uint16_t got;
    uint32_t l;
    while (hits + *others < USED_CAP && fe_vq_get_used(fe, q, &got, &l, NOT_YET) == 0) {
        if (got == head) {
            hits++;
            *len = l;
        } else {
            (*others)++;
        }
    }
    return hits;
}

static bool lookup_ok(struct fe *fe, unsigned q)
{
    struct fe_reply r;
    struct iovec in = {(void *)"probe", 6};
    return fe_fuse(fe, q, FUSE_LOOKUP, FUSE_ROOT_ID, &in, 1, sizeof(struct fuse_entry_out), &r) ==
               0 &&
           r.error == 0;
}

/* GET_VRING_BASE on queue q is answered within STOP_MS, with every avail entry consumed. */
static void check_stops(struct fe *fe, unsigned q)
{
    struct vring_state st = {.index = q};
    check(fe_vu_send(fe, FE_VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0) == 0,
          "sending GET_VRING_BASE");
    uint32_t req, size = sizeof(st);
    check(fe_vu_recv(fe, &req, &st, &size, STOP_MS) == 0, "GET_VRING_BASE answered within 1 s");
    check(req == FE_VU_GET_VRING_BASE && st.index == q, "the GET_VRING_BASE reply");
    check(st.num == fe_vq_avail(fe, q)->idx, "the base is the driver's avail index");
}

/* SIGTERM: the daemon exits with status 0 within EXIT_MS. */
static void check_sigterm_exit(void)
{
    kill(daemon_.pid, SIGTERM);
    bool gone = false;
    for (int waited = 0; waited < EXIT_MS && !(gone = !test_daemon_alive(&daemon_)); waited += 10)
        g_usleep(10000);
    check(gone, "the daemon exits on SIGTERM");
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/*
 * The same head three times in the avail ring, behind one avail index update: the request is
 * answered exactly once, the copies are skipped (logged), and the daemon goes on: serves, stops
 * the queue at once, exits on SIGTERM. (Before: with the pool, the job of the head was queued
 * three times, which looped the pool's job list: hundreds of thousands of used elements, and a
 * GET_VRING_BASE waiting forever for the jobs to drain. Without it, three replies.)
 */
static void test_duplicate_head(void)
{
    const char *args[] = {"--num-request-queues=1", NULL};
    start(args);
    struct fe *fe = connect_queues(1);
    uint64_t out;
    uint16_t head = publish_lookup(fe, 1, 4242, &out);
    fe_vq_publish(fe, 1, head);
    fe_vq_publish(fe, 1, head);
    fe_vq_kick(fe, 1);

    unsigned others;
    uint32_t len = 0;
    unsigned hits = count_used(fe, 1, head, &len, &others);
    g_test_message("%u used elements for the head, %u for others", hits, others);
    check(hits == 1 && others == 0, "exactly one used element, for the head");
    const struct fuse_out_header *o = fe_ptr(fe, out);
    check(len == sizeof(*o) + sizeof(struct fuse_entry_out) && o->len == len && o->unique == 4242 &&
              o->error == 0,
          "the LOOKUP's reply");
    fe_vq_free_chain(fe, 1, head);
    check(test_daemon_log_contains(&daemon_, DUP_LOG), "the duplicate is logged");

    for (int i = 0; i < 10; i++)
        check(lookup_ok(fe, 1), "the queue serves after the duplicates");
    check_stops(fe, 1);
    check_sigterm_exit();
    fe_close(fe);
}

static uint64_t open_probe(struct fe *fe, uint64_t *nodeid)
{
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    *nodeid = e.nodeid;
    struct fuse_open_in in = {.flags = O_RDWR};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_OPEN, e.nodeid, &iov, 1, sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    return ((struct fuse_open_out *)r.data)->fh;
}

static struct fuse_lk_in lk(uint64_t fh, uint64_t owner, uint32_t type, uint32_t pid)
{
    return (struct fuse_lk_in){
        .fh = fh, .owner = owner, .lk = {.start = 0, .end = INT64_MAX, .type = type, .pid = pid}};
}

static int setlk(struct fe *fe, uint64_t nodeid, struct fuse_lk_in in)
{
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    check(fe_fuse(fe, 1, FUSE_SETLK, nodeid, &iov, 1, 0, &r) == 0, "a reply to SETLK");
    return r.error;
}

static void setlkw_send(struct fe *fe, uint64_t nodeid, struct fuse_lk_in in, struct fe_pending *p)
{
    struct iovec iov = {&in, sizeof(in)};
    check(fe_fuse_send(fe, 1, FUSE_SETLKW, nodeid, &iov, 1, 0, in.lk.pid, p) == 0,
          "publishing SETLKW");
}

/*
 * A SETLKW waiting for a lock keeps its head out for as long as the lock is held: the same
 * head published again meanwhile is skipped, and the SETLKW answered once when the lock comes
 * free. A queue with a SETLKW still waiting stops at once. (Before: each copy started a wait
 * of its own, each answered when the lock came free: three used elements for one head.)
 */
static void test_duplicate_of_waiting_lock(void)
{
    const char *args[] = {"--num-request-queues=1", NULL};
    start(args);
    struct fe *fe = connect_queues(1);
    uint64_t ino, fh = open_probe(fe, &ino);
    g_assert_cmpint(setlk(fe, ino, lk(fh, OWNER_A, F_WRLCK, 101)), ==, 0);
    struct fe_pending w;
    struct fe_reply r;
    setlkw_send(fe, ino, lk(fh, OWNER_B, F_WRLCK, 202), &w);
    check(fe_fuse_wait(fe, &w, NOT_YET, &r) == -ETIMEDOUT, "the SETLKW waits");
    fe_vq_publish(fe, 1, w.head);
    fe_vq_publish(fe, 1, w.head);
    fe_vq_kick(fe, 1);
    /* The copies are skipped, not served: the queue goes on, nothing answers the head yet. */
    for (int i = 0; i < 10; i++)
        check(lookup_ok(fe, 1), "the queue serves with the SETLKW out");
    check(!w.done, "no reply to the waiting SETLKW's head");

    g_assert_cmpint(setlk(fe, ino, lk(fh, OWNER_A, F_UNLCK, 101)), ==, 0);
    check(fe_fuse_wait(fe, &w, ARRIVES, &r) == 0 && r.error == 0, "the SETLKW gets the lock");
    unsigned others;
    uint32_t len;
    unsigned extra = count_used(fe, 1, w.head, &len, &others);
    g_test_message("%u more used elements for the head, %u for others", extra, others);
    check(extra == 0 && others == 0, "the SETLKW answered exactly once");
    check(test_daemon_log_contains(&daemon_, DUP_LOG), "the duplicate is logged");
    check(lookup_ok(fe, 1), "the queue serves after the SETLKW");

    /* Another SETLKW waits (B holds the lock now), its head published again: the queue
     * still stops at once. */
    struct fe_pending w2;
    setlkw_send(fe, ino, lk(fh, OWNER_A, F_WRLCK, 101), &w2);
    check(fe_fuse_wait(fe, &w2, NOT_YET, &r) == -ETIMEDOUT, "the second SETLKW waits");
    fe_vq_publish(fe, 1, w2.head);
    fe_vq_kick(fe, 1);
    check(lookup_ok(fe, 1), "the queue serves with the second SETLKW out");
    check_stops(fe, 1);
    check_sigterm_exit();
    fe_close(fe);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/queues/shared-thread", test_shared_thread);
    g_test_add_func("/queues/thread-per-queue", test_thread_per_queue);
    g_test_add_func("/queues/default-threads", test_default_threads);
    g_test_add_func("/queues/stop-one-of-shared", test_stop_one_of_shared);
    g_test_add_func("/queues/poll-without-kick", test_poll_without_kick);
    g_test_add_func("/queues/duplicate-head", test_duplicate_head);
    g_test_add_func("/queues/duplicate-of-waiting-lock", test_duplicate_of_waiting_lock);
    return g_test_run();
}
