/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Locks at the protocol level: POSIX record locks (GETLK/SETLK/SETLKW) per lock owner, flock
 * per open file, blocking requests that wait without stalling the queue, INTERRUPT, FLUSH and
 * RELEASE dropping locks, and a disconnect with a lock request still waiting. Host processes
 * must see the guest's locks and the guest must see theirs: every lock is checked from the
 * host with fcntl(F_OFD_GETLK) or flock(LOCK_NB) as well as through the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define Q       1 /* the request queue */
#define OWNER_A 0xa1a1ULL
#define OWNER_B 0xb2b2ULL
#define PID_A   101
#define PID_B   202
#define TO_EOF  0x7fffffffffffffffULL
#define NOT_YET 300 /* ms to wait for a reply that must not come */
#define ARRIVES 5000

static struct test_daemon daemon_;
static struct fe *fe_;

static char *host_path(const char *name)
{
    return g_strdup_printf("%s/%s", daemon_.share, name);
}

static struct fe *connect_initialized(void)
{
    struct fe_config cfg = {.socket_path = daemon_.socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    return fe;
}

/* A fresh host file of 4 KiB, looked up and opened read-write: nodeid and fh. */
static void open_file(struct fe *fe, const char *name, uint64_t *nodeid, uint64_t *fh)
{
    char *p = host_path(name);
    char data[4096] = {0};
    g_assert_true(g_file_set_contents(p, data, sizeof(data), NULL));
    g_free(p);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, name, &e), ==, 0);
    *nodeid = e.nodeid;
    struct fuse_open_in in = {.flags = O_RDWR};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_OPEN, e.nodeid, &iov, 1, sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    *fh = ((struct fuse_open_out *)r.data)->fh;
}

static struct fuse_lk_in lk(uint64_t fh, uint64_t owner, uint32_t type, uint64_t start,
                            uint64_t end, uint32_t pid, bool flock_lock)
{
    return (struct fuse_lk_in){.fh = fh,
                               .owner = owner,
                               .lk = {.start = start, .end = end, .type = type, .pid = pid},
                               .lk_flags = flock_lock ? FUSE_LK_FLOCK : 0};
}

/* SETLK (non-blocking): the FUSE error. */
static int setlk(uint64_t nodeid, struct fuse_lk_in in)
{
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_SETLK, nodeid, &iov, 1, 0, &r), ==, 0);
    return r.error;
}

static int getlk(uint64_t nodeid, struct fuse_lk_in in, struct fuse_file_lock *out)
{
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_GETLK, nodeid, &iov, 1, sizeof(struct fuse_lk_out), &r),
                    ==, 0);
    if (r.error == 0)
        *out = ((struct fuse_lk_out *)r.data)->lk;
    return r.error;
}

static void setlkw_send(uint64_t nodeid, struct fuse_lk_in in, struct fe_pending *p)
{
    struct iovec iov = {&in, sizeof(in)};
    g_assert_cmpint(fe_fuse_send(fe_, Q, FUSE_SETLKW, nodeid, &iov, 1, 0, in.lk.pid, p), ==, 0);
}

/* The reply of a pending request: its FUSE error, or -ETIMEDOUT. */
static int pending_result(struct fe_pending *p, int timeout_ms)
{
    struct fe_reply r;
    int ret = fe_fuse_wait(fe_, p, timeout_ms, &r);
    return ret < 0 ? ret : r.error;
}

/* The daemon still answers other requests on the same queue. */
static void assert_queue_serves(uint64_t nodeid)
{
    struct fuse_getattr_in in = {0};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(
        fe_fuse(fe_, Q, FUSE_GETATTR, nodeid, &iov, 1, sizeof(struct fuse_attr_out), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
}

static void flush(uint64_t nodeid, uint64_t fh, uint64_t owner)
{
    struct fuse_flush_in in = {.fh = fh, .lock_owner = owner};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_FLUSH, nodeid, &iov, 1, 0, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
}

static void release(uint64_t nodeid, uint64_t fh, uint32_t flags)
{
    struct fuse_release_in in = {.fh = fh, .release_flags = flags};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_RELEASE, nodeid, &iov, 1, 0, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
}

/* What a host process sees at [start, start + len): F_UNLCK or the conflicting lock's type. */
static short host_lock_type(const char *name, short type, off_t start, off_t len)
{
    char *p = host_path(name);
    int fd = open(p, O_RDWR);
    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type;
}

/* ---- POSIX record locks --------------------------------------------------------------------- */

static void test_posix_owners(void)
{
    uint64_t ino, fh;
    open_file(fe_, "posix", &ino, &fh);
    struct fuse_file_lock got;

    /* Nothing locked: GETLK says F_UNLCK. */
    g_assert_cmpint(getlk(ino, lk(fh, OWNER_B, F_WRLCK, 0, TO_EOF, PID_B, false), &got), ==, 0);
    g_assert_cmpuint(got.type, ==, F_UNLCK);

    /* A locks [100, 199]; B's overlapping write lock conflicts, a disjoint one does not. */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 100, 199, PID_A, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 150, 160, PID_B, false)), ==, -EAGAIN);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 200, 299, PID_B, false)), ==, 0);

    /* GETLK by B names A's lock, with A's range and pid. */
    g_assert_cmpint(getlk(ino, lk(fh, OWNER_B, F_RDLCK, 0, TO_EOF, PID_B, false), &got), ==, 0);
    g_assert_cmpuint(got.type, ==, F_WRLCK);
    g_assert_cmpuint(got.start, ==, 100);
    g_assert_cmpuint(got.end, ==, 199);
    g_assert_cmpuint(got.pid, ==, PID_A);
    /* A's own locks never conflict with A: it sees B's lock past its own. */
    g_assert_cmpint(getlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false), &got), ==, 0);
    g_assert_cmpuint(got.start, ==, 200);
    g_assert_cmpuint(got.pid, ==, PID_B);

    /* The host sees both locks. */
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 120, 1), ==, F_WRLCK);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 250, 1), ==, F_WRLCK);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 300, 1), ==, F_UNLCK);

    /* A unlocks the middle of its range: POSIX splits it. */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_UNLCK, 140, 159, PID_A, false)), ==, 0);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 150, 1), ==, F_UNLCK);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 130, 1), ==, F_WRLCK);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 170, 1), ==, F_WRLCK);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 150, 150, PID_B, false)), ==, 0);

    /* Read locks share; a write lock over them conflicts. */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_RDLCK, 1000, 1999, PID_A, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_RDLCK, 1500, 2500, PID_B, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 1500, 1600, PID_B, false)), ==, -EAGAIN);

    /* FLUSH (a close by A) drops every lock of A on the file, none of B's. */
    flush(ino, fh, OWNER_A);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 120, 1), ==, F_UNLCK);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 250, 1), ==, F_WRLCK);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 1500, 1600, PID_B, false)), ==, 0);
    flush(ino, fh, OWNER_B);
    g_assert_cmpint(host_lock_type("posix", F_WRLCK, 0, 0), ==, F_UNLCK);
    release(ino, fh, 0);
}

static void test_posix_bad_input(void)
{
    uint64_t ino, fh;
    open_file(fe_, "posix-bad", &ino, &fh);
    /* end before start, an unknown type, a start past OFFSET_MAX */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 10, 5, PID_A, false)), ==, -EINVAL);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, 77, 0, 5, PID_A, false)), ==, -EINVAL);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 1ULL << 63, TO_EOF, PID_A, false)), ==,
                    -EINVAL);
    /* an unknown inode */
    g_assert_cmpint(setlk(987654, lk(fh, OWNER_A, F_WRLCK, 0, 5, PID_A, false)), ==, -EBADF);
    /* an unlock of a lock never taken is fine */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_UNLCK, 0, TO_EOF, PID_A, false)), ==, 0);
    release(ino, fh, 0);
}

/* A host process holds the lock: the guest sees it, waits for it, and gets it. */
static void test_posix_host_holder(void)
{
    uint64_t ino, fh;
    open_file(fe_, "posix-host", &ino, &fh);
    char *p = host_path("posix-host");
    int hfd = open(p, O_RDWR);
    g_free(p);
    g_assert_cmpint(hfd, >=, 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    g_assert_cmpint(fcntl(hfd, F_OFD_SETLK, &fl), ==, 0);

    struct fuse_file_lock got;
    g_assert_cmpint(getlk(ino, lk(fh, OWNER_A, F_RDLCK, 5, 5, PID_A, false), &got), ==, 0);
    g_assert_cmpuint(got.type, ==, F_WRLCK);
    g_assert_cmpuint(got.end, ==, 9);
    g_assert_cmpuint(got.pid, ==, 0); /* not a guest process */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, 0, PID_A, false)), ==, -EAGAIN);

    struct fe_pending w;
    setlkw_send(ino, lk(fh, OWNER_A, F_WRLCK, 0, 0, PID_A, false), &w);
    g_assert_cmpint(pending_result(&w, NOT_YET), ==, -ETIMEDOUT);
    assert_queue_serves(ino);
    fl.l_type = F_UNLCK;
    g_assert_cmpint(fcntl(hfd, F_OFD_SETLK, &fl), ==, 0);
    g_assert_cmpint(pending_result(&w, ARRIVES), ==, 0);
    /* Now the host waits for the guest. */
    fl.l_type = F_WRLCK;
    g_assert_cmpint(fcntl(hfd, F_OFD_SETLK, &fl), ==, -1);
    g_assert_true(errno == EAGAIN || errno == EACCES);
    close(hfd);
    flush(ino, fh, OWNER_A);
    release(ino, fh, 0);
}

/* SETLKW waits on its own thread: the queue keeps serving, even the unlock it waits for. */
static void test_posix_setlkw(void)
{
    uint64_t ino, fh;
    open_file(fe_, "posix-wait", &ino, &fh);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false)), ==, 0);

    struct fe_pending w1, w2;
    setlkw_send(ino, lk(fh, OWNER_B, F_WRLCK, 0, 99, PID_B, false), &w1);
    setlkw_send(ino, lk(fh, OWNER_B, F_RDLCK, 500, 599, PID_B, false), &w2);
    g_assert_cmpint(pending_result(&w1, NOT_YET), ==, -ETIMEDOUT);
    for (int i = 0; i < 50; i++)
        assert_queue_serves(ino);
    g_assert_cmpint(pending_result(&w2, 10), ==, -ETIMEDOUT);

    /* A releases part of its range: only the wait on that part ends. */
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_UNLCK, 0, 199, PID_A, false)), ==, 0);
    g_assert_cmpint(pending_result(&w1, ARRIVES), ==, 0);
    g_assert_cmpint(pending_result(&w2, NOT_YET), ==, -ETIMEDOUT);
    g_assert_cmpint(host_lock_type("posix-wait", F_RDLCK, 50, 1), ==, F_WRLCK);
    flush(ino, fh, OWNER_A);
    g_assert_cmpint(pending_result(&w2, ARRIVES), ==, 0);
    g_assert_cmpint(host_lock_type("posix-wait", F_WRLCK, 550, 1), ==, F_RDLCK);

    struct fuse_file_lock got;
    g_assert_cmpint(getlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false), &got), ==, 0);
    g_assert_cmpuint(got.pid, ==, PID_B);
    flush(ino, fh, OWNER_B);
    release(ino, fh, 0);
}

static void test_interrupt(void)
{
    uint64_t ino, fh;
    open_file(fe_, "posix-intr", &ino, &fh);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false)), ==, 0);
    struct fe_pending w;
    setlkw_send(ino, lk(fh, OWNER_B, F_WRLCK, 0, TO_EOF, PID_B, false), &w);
    g_assert_cmpint(pending_result(&w, NOT_YET), ==, -ETIMEDOUT);

    /* INTERRUPT has no reply of its own; the interrupted request answers EINTR. */
    struct fuse_interrupt_in in = {.unique = w.unique};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_pending ip;
    g_assert_cmpint(fe_fuse_send(fe_, Q, FUSE_INTERRUPT, 0, &iov, 1, 0, 1, &ip), ==, 0);
    g_assert_cmpint(pending_result(&w, ARRIVES), ==, -EINTR);
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_wait(fe_, &ip, ARRIVES, &r), ==, 0);
    g_assert_cmpuint(r.len, ==, 0); /* the chain comes back empty: no reply */

    /* B holds nothing: A's lock is intact and B can still ask again. */
    g_assert_cmpint(host_lock_type("posix-intr", F_WRLCK, 0, 0), ==, F_WRLCK);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 0, TO_EOF, PID_B, false)), ==, -EAGAIN);
    flush(ino, fh, OWNER_A);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 0, TO_EOF, PID_B, false)), ==, 0);
    flush(ino, fh, OWNER_B);
    release(ino, fh, 0);
}

/* ---- flock -------------------------------------------------------------------------------- */

static void test_flock(void)
{
    uint64_t ino, fh1, fh2, ino2;
    open_file(fe_, "flock", &ino, &fh1);
    struct fuse_open_in oin = {.flags = O_RDWR};
    struct iovec iov = {&oin, sizeof(oin)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_OPEN, ino, &iov, 1, sizeof(struct fuse_open_out), &r), ==,
                    0);
    fh2 = ((struct fuse_open_out *)r.data)->fh;
    ino2 = ino;

    /* Two open files: exclusive on one excludes the other, whatever the owner. */
    g_assert_cmpint(setlk(ino, lk(fh1, OWNER_A, F_WRLCK, 0, 0, PID_A, true)), ==, 0);
    g_assert_cmpint(setlk(ino2, lk(fh2, OWNER_A, F_RDLCK, 0, 0, PID_A, true)), ==, -EAGAIN);
    char *p = host_path("flock");
    int hfd = open(p, O_RDONLY);
    g_free(p);
    g_assert_cmpint(flock(hfd, LOCK_SH | LOCK_NB), ==, -1);
    g_assert_cmpint(errno, ==, EWOULDBLOCK);

    /* A blocking flock waits until the first file is released with FLOCK_UNLOCK. */
    struct fe_pending w;
    setlkw_send(ino2, lk(fh2, OWNER_B, F_WRLCK, 0, 0, PID_B, true), &w);
    g_assert_cmpint(pending_result(&w, NOT_YET), ==, -ETIMEDOUT);
    assert_queue_serves(ino);
    release(ino, fh1, FUSE_RELEASE_FLOCK_UNLOCK);
    g_assert_cmpint(pending_result(&w, ARRIVES), ==, 0);
    g_assert_cmpint(flock(hfd, LOCK_SH | LOCK_NB), ==, -1);

    /* Unlock through SETLK; the host gets it. */
    g_assert_cmpint(setlk(ino2, lk(fh2, OWNER_B, F_UNLCK, 0, 0, PID_B, true)), ==, 0);
    g_assert_cmpint(flock(hfd, LOCK_SH | LOCK_NB), ==, 0);
    close(hfd);
    /* An fh that is not open is refused. */
    g_assert_cmpint(setlk(ino2, lk(fh1, OWNER_B, F_WRLCK, 0, 0, PID_B, true)), ==, -EBADF);
    release(ino2, fh2, FUSE_RELEASE_FLOCK_UNLOCK);
}

/* ---- lifetime ------------------------------------------------------------------------------- */

/* A disconnect with lock requests waiting: they end, their locks are dropped, nothing leaks. */
static void test_disconnect_while_waiting(void)
{
    int fds_before = test_daemon_fd_count(&daemon_);
    uint64_t ino, fh;
    open_file(fe_, "posix-disc", &ino, &fh);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false)), ==, 0);
    struct fe_pending w[4];
    for (unsigned i = 0; i < 4; i++)
        setlkw_send(ino, lk(fh, OWNER_B + i, F_WRLCK, i, i, PID_B, false), &w[i]);
    g_assert_cmpint(pending_result(&w[0], NOT_YET), ==, -ETIMEDOUT);
    fe_close(fe_);

    fe_ = connect_initialized();
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_cmpint(host_lock_type("posix-disc", F_WRLCK, 0, 0), ==, F_UNLCK);
    g_assert_cmpint(test_daemon_fd_count(&daemon_), <=, fds_before);
    open_file(fe_, "posix-disc", &ino, &fh);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 0, TO_EOF, PID_B, false)), ==, 0);
    flush(ino, fh, OWNER_B);
    release(ino, fh, 0);
}

/* -o no_posix_lock / no_flock: the ops answer ENOSYS (the guest then locks locally). */
static void test_disabled(void)
{
    struct test_daemon d;
    const char *args[] = {"-o", "no_posix_lock,no_flock", NULL};
    g_assert_cmpint(test_daemon_start(&d, args), ==, 0);
    struct fe_config cfg = {.socket_path = d.socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fe *saved = fe_;
    struct test_daemon saved_d = daemon_;
    fe_ = fe;
    daemon_ = d;
    uint64_t ino, fh;
    open_file(fe, "x", &ino, &fh);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false)), ==, -ENOSYS);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, 0, PID_A, true)), ==, -ENOSYS);
    fe_ = saved;
    daemon_ = saved_d;
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_cmpint(test_daemon_start(&daemon_, NULL), ==, 0);
    fe_ = connect_initialized();
    g_test_add_func("/locks/posix/owners", test_posix_owners);
    g_test_add_func("/locks/posix/bad-input", test_posix_bad_input);
    g_test_add_func("/locks/posix/host-holder", test_posix_host_holder);
    g_test_add_func("/locks/posix/setlkw", test_posix_setlkw);
    g_test_add_func("/locks/posix/interrupt", test_interrupt);
    g_test_add_func("/locks/flock", test_flock);
    g_test_add_func("/locks/disconnect-while-waiting", test_disconnect_while_waiting);
    g_test_add_func("/locks/disabled", test_disabled);
    int ret = g_test_run();
    fe_close(fe_);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
    return ret;
}
