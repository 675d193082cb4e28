/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Locks at the protocol level: POSIX record locks (GETLK/SETLK/SETLKW) per lock owner, flock
 * per open file, blocking requests that wait without stalling the queue, INTERRUPT, FLUSH and
 * RELEASE dropping locks, and a disconnect with a lock request still waiting. Host processes
 * must see the guest's locks and the guest must see theirs: every lock is checked from the
 * host with fcntl(F_OFD_GETLK) or flock(LOCK_NB) as well as through the daemon.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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
    /* Zeros on an error too: callers assert the error, and an assertion may return. */
    *out = r.error == 0 ? ((struct fuse_lk_out *)r.data)->lk : (struct fuse_file_lock){0};
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

/* Waits (up to 2 s) until the daemon has at most n fds; returns its count. */
static int fd_count_settles(int n)
{
    int now = test_daemon_fd_count(&daemon_);
    for (int i = 0; i < 200 && now > n; i++) {
        g_usleep(10000);
        now = test_daemon_fd_count(&daemon_);
    }
    return now;
}

/* ---- what a lock may open ---------------------------------------------------------------------
 */

/* Whether fd name of fd_dir (/proc/PID/task/TID/fd) is open with O_PATH (its fdinfo flags). */
static bool is_o_path(const char *fd_dir, const char *name)
{
    char *info = g_strdup_printf("%.*sinfo/%s", (int)strlen(fd_dir), fd_dir, name);
    gchar *text = NULL;
    unsigned flags = 0;
    if (g_file_get_contents(info, &text, NULL, NULL)) {
        const char *f = strstr(text, "flags:");
        if (f)
            flags = (unsigned)strtoul(f + 6, NULL, 8);
    }
    g_free(text);
    g_free(info);
    return flags & O_PATH;
}

/*
 * Fds of the serving daemon (every task's table) that have a device node or FIFO in the share
 * open: the daemon must never hold one. (O_PATH fds, which every looked-up inode keeps, open
 * nothing: no driver, no FIFO end.)
 */
static int share_special_fds(void)
{
    struct stat share, st;
    g_assert_cmpint(stat(daemon_.share, &share), ==, 0);
    char *tasks = g_strdup_printf("/proc/%d/task", (int)test_daemon_serving_pid(&daemon_));
    DIR *td = opendir(tasks);
    g_assert_nonnull(td);
    int n = 0;
    for (struct dirent *t; (t = readdir(td));) {
        if (t->d_name[0] == '.')
            continue;
        char *fds = g_strdup_printf("%s/%s/fd", tasks, t->d_name);
        DIR *fd = opendir(fds);
        for (struct dirent *e; fd && (e = readdir(fd));) {
            char *link = g_strdup_printf("%s/%s", fds, e->d_name);
            if (e->d_name[0] != '.' && stat(link, &st) == 0 && st.st_dev == share.st_dev &&
                (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) &&
                !is_o_path(fds, e->d_name)) {
                g_test_message("daemon fd %s is a special file of the share", link);
                n++;
            }
            g_free(link);
        }
        if (fd)
            closedir(fd);
        g_free(fds);
    }
    closedir(td);
    g_free(tasks);
    return n;
}

static uint64_t mknod_node(const char *name, mode_t mode, dev_t rdev)
{
    struct fuse_mknod_in mi = {.mode = mode, .rdev = (uint32_t)rdev};
    struct iovec iov[] = {{&mi, sizeof(mi)}, {(void *)name, strlen(name) + 1}};
    struct fe_reply r;
    g_assert_cmpint(
        fe_fuse(fe_, Q, FUSE_MKNOD, FUSE_ROOT_ID, iov, 2, sizeof(struct fuse_entry_out), &r), ==,
        0);
    g_assert_cmpint(r.error, ==, 0);
    return ((struct fuse_entry_out *)r.data)->nodeid;
}

static int open_node(uint64_t nodeid, uint32_t opcode, int flags, uint64_t *fh)
{
    struct fuse_open_in in = {.flags = (uint32_t)flags};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, opcode, nodeid, &iov, 1, sizeof(struct fuse_open_out), &r), ==,
                    0);
    /* 0 on an error too: callers assert the error, and an assertion may return. */
    *fh = r.error == 0 ? ((struct fuse_open_out *)r.data)->fh : 0;
    return r.error;
}

/*
 * A device node (/dev/null's 1:3, made by the guest) or FIFO in the share: the guest cannot
 * open it here (the guest kernel serves special files itself), and a lock request on it,
 * naming no handle or another file's, is refused with EBADF without the daemon opening it.
 * Before, SETLK reopened it as root O_RDWR (a host device held open read-write until FLUSH,
 * a FIFO too) and GETLK opened it for the length of the call.
 */
static void test_special_files(void)
{
    uint64_t reg, reg_fh;
    open_file(fe_, "special-reg", &reg, &reg_fh);
    const struct {
        const char *name;
        mode_t mode;
        dev_t rdev;
    } nodes[] = {
        {"special-null", S_IFCHR | 0666, makedev(1, 3)},
        {"special-fifo", S_IFIFO | 0666, 0},
        {"special-sock", S_IFSOCK | 0666, 0},
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(nodes); i++) {
        uint64_t ino = mknod_node(nodes[i].name, nodes[i].mode, nodes[i].rdev), fh = 0;
        struct fuse_entry_out e;
        g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, nodes[i].name, &e), ==, 0);
        g_assert_cmpuint(e.nodeid, ==, ino);
        g_assert_cmpint(open_node(ino, FUSE_OPEN, O_RDWR, &fh), ==, -EINVAL);
        struct fuse_file_lock got;
        const uint64_t fhs[] = {0, reg_fh, 12345};
        int errs[G_N_ELEMENTS(fhs)][3];
        for (unsigned j = 0; j < G_N_ELEMENTS(fhs); j++) {
            errs[j][0] = setlk(ino, lk(fhs[j], OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false));
            errs[j][1] = setlk(ino, lk(fhs[j], OWNER_B, F_RDLCK, 0, 0, PID_B, false));
            errs[j][2] = getlk(ino, lk(fhs[j], OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false), &got);
        }
        /* What matters most first: nothing of the share's special files is open. */
        g_assert_cmpint(share_special_fds(), ==, 0);
        for (unsigned j = 0; j < G_N_ELEMENTS(fhs); j++)
            for (unsigned k = 0; k < 3; k++)
                g_assert_cmpint(errs[j][k], ==, -EBADF);
    }
    /* The regular file's handle still locks its own file. */
    g_assert_cmpint(setlk(reg, lk(reg_fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false)), ==, 0);
    g_assert_cmpint(host_lock_type("special-reg", F_WRLCK, 0, 0), ==, F_WRLCK);
    flush(reg, reg_fh, OWNER_A);
    release(reg, reg_fh, 0);
}

/*
 * As fcntl(2): a write lock needs the file open for writing, a read lock open for reading
 * (the daemon's owner files are opened read-write whatever the guest's mode; before, a
 * read-only handle took write locks that host processes then saw).
 */
static void test_handle_mode(void)
{
    uint64_t ino, rw_fh, ro_fh, wo_fh;
    open_file(fe_, "modes", &ino, &rw_fh);
    g_assert_cmpint(open_node(ino, FUSE_OPEN, O_RDONLY, &ro_fh), ==, 0);
    g_assert_cmpint(open_node(ino, FUSE_OPEN, O_WRONLY, &wo_fh), ==, 0);
    g_assert_cmpint(setlk(ino, lk(ro_fh, OWNER_A, F_WRLCK, 0, 9, PID_A, false)), ==, -EBADF);
    g_assert_cmpint(setlk(ino, lk(wo_fh, OWNER_A, F_RDLCK, 0, 9, PID_A, false)), ==, -EBADF);
    g_assert_cmpint(host_lock_type("modes", F_WRLCK, 0, 10), ==, F_UNLCK);
    g_assert_cmpint(setlk(ino, lk(ro_fh, OWNER_A, F_RDLCK, 0, 9, PID_A, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(wo_fh, OWNER_A, F_WRLCK, 20, 29, PID_A, false)), ==, 0);
    /* One owner, one host file: the read and write locks from two handles both hold. */
    g_assert_cmpint(host_lock_type("modes", F_WRLCK, 5, 1), ==, F_RDLCK);
    g_assert_cmpint(host_lock_type("modes", F_RDLCK, 25, 1), ==, F_WRLCK);
    /* GETLK needs no access: any handle of the file tests. */
    struct fuse_file_lock got;
    g_assert_cmpint(getlk(ino, lk(ro_fh, OWNER_B, F_WRLCK, 0, TO_EOF, PID_B, false), &got), ==, 0);
    g_assert_cmpuint(got.type, ==, F_RDLCK);
    g_assert_cmpuint(got.pid, ==, PID_A);
    flush(ino, rw_fh, OWNER_A);
    g_assert_cmpint(host_lock_type("modes", F_WRLCK, 0, 0), ==, F_UNLCK);
    release(ino, ro_fh, 0);
    release(ino, wo_fh, 0);
    release(ino, rw_fh, 0);
}

/*
 * A directory's handle (OPENDIR, read-only): read locks as on a local directory fd, write
 * locks EBADF; RELEASEDIR drops them. (The Linux guest keeps directory locks local.)
 */
static void test_directory(void)
{
    char *p = host_path("lockdir");
    g_assert_cmpint(mkdir(p, 0755), ==, 0);
    g_free(p);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, "lockdir", &e), ==, 0);
    uint64_t fh;
    g_assert_cmpint(open_node(e.nodeid, FUSE_OPENDIR, O_RDONLY, &fh), ==, 0);
    int fds = test_daemon_fd_count(&daemon_);
    g_assert_cmpint(setlk(e.nodeid, lk(fh, OWNER_A, F_WRLCK, 0, 0, PID_A, false)), ==, -EBADF);
    g_assert_cmpint(setlk(e.nodeid, lk(fh, OWNER_A, F_RDLCK, 0, 0, PID_A, false)), ==, 0);
    g_assert_cmpint(test_daemon_fd_count(&daemon_), ==, fds + 1);
    struct fuse_file_lock got;
    g_assert_cmpint(getlk(e.nodeid, lk(fh, OWNER_B, F_WRLCK, 0, 0, PID_B, false), &got), ==, 0);
    g_assert_cmpuint(got.type, ==, F_RDLCK);
    struct fuse_release_in in = {.fh = fh};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_RELEASEDIR, e.nodeid, &iov, 1, 0, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    /* the handle's fd and the owner's (handles are closed after an RCU grace period) */
    g_assert_cmpint(fd_count_settles(fds - 1), <=, fds - 1);
}

/* ---- how many lock owners ------------------------------------------------------------------- */

#define OWNERS_BOUND 4096 /* MAX_OWNERS in src/pt_lock.c */

/*
 * Each lock owner holds a host file, and the guest picks owners: past the bound a new owner
 * gets ENOLCK and nothing is opened (before, every owner opened one more fd, until the
 * daemon's fd limit). Owners already there keep working, FLUSH makes room, and RELEASE of
 * the handle they came through closes their files.
 */
static void test_owner_bound(void)
{
    uint64_t ino, fh;
    open_file(fe_, "owners", &ino, &fh);
    int fds = test_daemon_fd_count(&daemon_);
    const uint64_t base = 0x100000;
    unsigned granted = 0;
    int err = 0;
    for (unsigned i = 0; i < 3 * OWNERS_BOUND && err == 0; i++) {
        err = setlk(ino, lk(fh, base + i, F_WRLCK, i, i, PID_A, false));
        granted += err == 0;
    }
    g_assert_cmpint(err, ==, -ENOLCK);
    g_assert_cmpuint(granted, >, 0);
    g_assert_cmpuint(granted, <=, OWNERS_BOUND);
    int at_bound = test_daemon_fd_count(&daemon_);
    g_test_message("%u owners granted; daemon fds %d before, %d at the bound", granted, fds,
                   at_bound);
    g_assert_cmpint(at_bound, <=, fds + (int)granted);
    /* Many more owners: all refused, no fd more. */
    for (unsigned i = 0; i < 2 * OWNERS_BOUND; i++)
        g_assert_cmpint(setlk(ino, lk(fh, base + granted + i, F_RDLCK, 0, 0, PID_B, false)), ==,
                        -ENOLCK);
    g_assert_cmpint(test_daemon_fd_count(&daemon_), <=, at_bound);
    /* The owners in place still lock and unlock; the host sees their locks. */
    g_assert_cmpint(host_lock_type("owners", F_WRLCK, 0, 1), ==, F_WRLCK);
    g_assert_cmpint(setlk(ino, lk(fh, base, F_UNLCK, 0, 0, PID_A, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh, base, F_RDLCK, 0, 0, PID_A, false)), ==, 0);
    /* FLUSH of one makes room for one. */
    flush(ino, fh, base);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_B, F_WRLCK, 0, 0, PID_B, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh, OWNER_A, F_WRLCK, 1 << 30, 1 << 30, PID_A, false)), ==,
                    -ENOLCK);
    /* RELEASE without the FLUSHes: every owner that came through fh goes with it. */
    release(ino, fh, 0);
    g_assert_cmpint(fd_count_settles(fds - 1), <=, fds - 1);
    g_assert_cmpint(host_lock_type("owners", F_WRLCK, 0, 0), ==, F_UNLCK);
}

/*
 * An owner goes with the last handle it locked through (a guest OFD lock, owned by the open
 * file, never sees a FLUSH), or with the inode once it is forgotten.
 */
static void test_owner_release_forget(void)
{
    uint64_t ino, fh1, fh2;
    open_file(fe_, "owner-life", &ino, &fh1);
    g_assert_cmpint(open_node(ino, FUSE_OPEN, O_RDWR, &fh2), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh1, OWNER_A, F_WRLCK, 0, 9, PID_A, false)), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh2, OWNER_A, F_WRLCK, 10, 19, PID_A, false)), ==, 0);
    release(ino, fh1, 0); /* A last came through fh2: its locks stay */
    g_assert_cmpint(host_lock_type("owner-life", F_WRLCK, 5, 1), ==, F_WRLCK);
    release(ino, fh2, 0);
    g_assert_cmpint(host_lock_type("owner-life", F_WRLCK, 0, 0), ==, F_UNLCK);

    /* FORGET of the inode: its owners go, even with a handle (a hostile guest's) left. */
    uint64_t fh3;
    g_assert_cmpint(open_node(ino, FUSE_OPEN, O_RDWR, &fh3), ==, 0);
    g_assert_cmpint(setlk(ino, lk(fh3, OWNER_B, F_WRLCK, 0, 9, PID_B, false)), ==, 0);
    int fds = test_daemon_fd_count(&daemon_);
    struct fuse_forget_in fi = {.nlookup = 1};
    struct iovec iov = {&fi, sizeof(fi)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, Q, FUSE_FORGET, ino, &iov, 1, 0, &r), ==, 0);
    g_assert_cmpint(fd_count_settles(fds - 1), <=, fds - 1);
    g_assert_cmpint(host_lock_type("owner-life", F_WRLCK, 0, 0), ==, F_UNLCK);
    release(ino, fh3, 0);
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

/* A host process's fd on name, holding a POSIX (OFD) write lock on all of it and an flock. */
static int host_hold_both(const char *name)
{
    char *p = host_path(name);
    int fd = open(p, O_RDWR);
    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    g_assert_cmpint(fcntl(fd, F_OFD_SETLK, &fl), ==, 0);
    g_assert_cmpint(flock(fd, LOCK_EX | LOCK_NB), ==, 0);
    return fd;
}

/*
 * GET_VRING_BASE (a VM stop, a migration's switch-over) while a SETLKW and an flock wait: the
 * stop is answered at once, and both requests were answered EINTR, their used entries in the
 * ring before the base was reported (before, the stop dropped the waits' late replies: the
 * guest's callers waited forever). The waits took nothing.
 */
static void stop_while_waiting(void)
{
    uint64_t ino, fh;
    open_file(fe_, "stop-wait", &ino, &fh);
    int hfd = host_hold_both("stop-wait");
    struct fe_pending wp, wf;
    setlkw_send(ino, lk(fh, OWNER_B, F_WRLCK, 0, 99, PID_B, false), &wp);
    setlkw_send(ino, lk(fh, OWNER_B, F_WRLCK, 0, 0, PID_B, true), &wf);
    g_assert_cmpint(pending_result(&wp, NOT_YET), ==, -ETIMEDOUT);
    g_assert_cmpint(pending_result(&wf, 10), ==, -ETIMEDOUT);

    struct {
        uint32_t index, num;
    } st = {.index = Q};
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(fe_vu_send(fe_, FE_VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0), ==, 0);
    uint32_t req, size = sizeof(st);
    g_assert_cmpint(fe_vu_recv(fe_, &req, &st, &size, 1000), ==, 0);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 1000000);
    g_assert_cmpuint(req, ==, FE_VU_GET_VRING_BASE);
    /* Already in the used ring: collected without waiting for anything. */
    g_assert_cmpint(pending_result(&wp, 0), ==, -EINTR);
    g_assert_cmpint(pending_result(&wf, 0), ==, -EINTR);
    g_assert_cmpuint(st.num, ==, fe_vq_used(fe_, Q)->idx);

    /* The host's locks are untouched and nobody else holds any. */
    close(hfd);
    g_assert_cmpint(host_lock_type("stop-wait", F_WRLCK, 0, 0), ==, F_UNLCK);
    fe_close(fe_);
    fe_ = connect_initialized();
}

static void test_stop_while_waiting(void)
{
    stop_while_waiting();
}

/* The same with the requests served by --thread-pool-size's threads. */
static void test_stop_while_waiting_pool(void)
{
    struct test_daemon d;
    const char *args[] = {"--thread-pool-size=2", NULL};
    g_assert_cmpint(test_daemon_start(&d, args), ==, 0);
    struct fe *saved = fe_;
    struct test_daemon saved_d = daemon_;
    daemon_ = d;
    fe_ = connect_initialized();
    stop_while_waiting();
    fe_close(fe_);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
    fe_ = saved;
    daemon_ = saved_d;
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
    /* GETLK too (before, it answered from the host's locks as if they were served). */
    struct fuse_file_lock got;
    g_assert_cmpint(getlk(ino, lk(fh, OWNER_A, F_WRLCK, 0, TO_EOF, PID_A, false), &got), ==,
                    -ENOSYS);
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
    g_test_add_func("/locks/posix/special-files", test_special_files);
    g_test_add_func("/locks/posix/handle-mode", test_handle_mode);
    g_test_add_func("/locks/posix/directory", test_directory);
    g_test_add_func("/locks/posix/owner-bound", test_owner_bound);
    g_test_add_func("/locks/posix/owner-release-forget", test_owner_release_forget);
    g_test_add_func("/locks/flock", test_flock);
    g_test_add_func("/locks/disconnect-while-waiting", test_disconnect_while_waiting);
    g_test_add_func("/locks/disabled", test_disabled);
    g_test_add_func("/locks/stop-while-waiting", test_stop_while_waiting);
    g_test_add_func("/locks/stop-while-waiting-pool", test_stop_while_waiting_pool);
    int ret = g_test_run();
    fe_close(fe_);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
    return ret;
}
