/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DEVICE_STATE transfers on their own threads (see state_transfer.h).
 *
 * Why these threads are safe: they are created by the control thread while it handles a
 * vhost-user message, long after start-up's lockdown. A thread starts with its creator's
 * capabilities (already dropped), no_new_privs, seccomp filter and blocked signals, so they
 * run exactly as confined as the queue workers (tests/frontend/test_confinement.c reads every
 * task of the serving process, these included). They touch the FUSE session only through
 * fuse_session_state_save/load, while the rings are stopped: vhost_user.c refuses to start
 * a ring until the transfer is over and stops it before the session is reset.
 */
#include "state_transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <urcu.h>

#include "log.h"
#include "session_state.h"

#define PUMP_BUF     (64u * 1024)
#define OUR_PIPE_SZ  (1u << 20) /* fewer round trips between the two threads; best effort */
#define WAIT_LOG_SEC 10

struct state_transfer {
    struct fuse_session *se;
    enum state_direction dir;
    int state_fd; /* our pipe's end for the state function (blocking) */
    int pump_fd;  /* its other end, the pump's (non-blocking) */
    int ext_fd;   /* the front-end's fd, the pump's (non-blocking) */
    int abort_fd; /* eventfd: the pump stops at once */
    int done_fd;  /* eventfd: written by each thread as it ends */
    pthread_t state_thread, pump_thread;
    bool state_started, pump_started;
    atomic_uint ended;   /* threads that ended */
    atomic_bool fd_done; /* the pump is done with the front-end's fd */
    int state_ret, pump_ret;
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A write to a pipe whose reader left is EPIPE here, never a SIGPIPE that ends the process
 * (the daemon ignores it anyway; this does not depend on it). */
static void block_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void thread_ended(struct state_transfer *t)
{
    atomic_fetch_add(&t->ended, 1);
    if (eventfd_write(t->done_fd, 1) < 0)
        log_warn("device state: signalling the end of a transfer thread failed: %m");
}

/* ---- the state function's thread ---------------------------------------------------------- */

static void *state_main(void *arg)
{
    struct state_transfer *t = arg;
    (void)prctl(PR_SET_NAME, t->dir == STATE_SAVE ? "state-save" : "state-load");
    block_sigpipe();
    /* The session's tables are read under RCU. */
    rcu_register_thread();
    t->state_ret = t->dir == STATE_SAVE ? fuse_session_state_save(t->se, t->state_fd)
                                        : fuse_session_state_load(t->se, t->state_fd);
    rcu_unregister_thread();
    /* SAVE: the end of the stream for the pump. LOAD: a pump still writing sees EPIPE and
     * drains the rest of the front-end's data. */
    close_fd(&t->state_fd);
    thread_ended(t);
    return NULL;
}

/* ---- the pump ------------------------------------------------------------------------------ */

/* Waits until fd is ready for events; -ECANCELED when the transfer is aborted. */
static int wait_fd(struct state_transfer *t, int fd, short events)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = t->abort_fd, .events = POLLIN}};
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[1].revents)
            return -ECANCELED;
        return 0; /* ready, or an error or hang-up the next read or write reports */
    }
}

/* Reads what is there from fd: bytes, 0 at end of file, or a negative errno. */
static ssize_t pump_read(struct state_transfer *t, int fd, void *buf)
{
    for (;;) {
        ssize_t n = read(fd, buf, PUMP_BUF);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int ret = wait_fd(t, fd, POLLIN);
        if (ret < 0)
            return ret;
    }
}

static int pump_write(struct state_transfer *t, int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -errno; /* EPIPE: the reader went away (SIGPIPE is ignored) */
        int ret = wait_fd(t, fd, POLLOUT);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* SAVE: our pipe to the front-end's fd, until the state function closes its end. */
static int pump_save(struct state_transfer *t, uint8_t *buf)
{
    for (;;) {
        ssize_t n = pump_read(t, t->pump_fd, buf);
        if (n <= 0)
            return (int)n;
        int ret = pump_write(t, t->ext_fd, buf, (size_t)n);
        if (ret < 0) {
            log_error("device state: writing the state to the front-end failed: %s",
                      strerror(-ret));
            return ret;
        }
    }
}

/*
 * LOAD: the front-end's fd into our pipe until its end of file. When the state function stops
 * reading early (it failed), the rest is read and dropped: the front-end finishes writing and
 * learns the result from CHECK_DEVICE_STATE rather than from a broken pipe.
 */
static int pump_load(struct state_transfer *t, uint8_t *buf)
{
    for (;;) {
        ssize_t n = pump_read(t, t->ext_fd, buf);
        if (n < 0)
            log_error("device state: reading the state from the front-end failed: %s",
                      strerror((int)-n));
        if (n <= 0)
            return (int)n;
        if (t->pump_fd < 0)
            continue; /* draining */
        int ret = pump_write(t, t->pump_fd, buf, (size_t)n);
        if (ret == -ECANCELED)
            return ret;
        if (ret < 0)
            close_fd(&t->pump_fd); /* the loader stopped; its own result says why */
    }
}

static void *pump_main(void *arg)
{
    struct state_transfer *t = arg;
    (void)prctl(PR_SET_NAME, "state-pump");
    block_sigpipe();
    uint8_t *buf = malloc(PUMP_BUF);
    int ret = -ENOMEM;
    if (buf)
        ret = t->dir == STATE_SAVE ? pump_save(t, buf) : pump_load(t, buf);
    free(buf);
    /* SAVE: the front-end sees the end of the stream. LOAD: the loader sees it, after all the
     * front-end's data (or, aborted, a truncated stream it refuses). */
    close_fd(&t->ext_fd);
    close_fd(&t->pump_fd);
    t->pump_ret = ret;
    atomic_store(&t->fd_done, true);
    thread_ended(t);
    return NULL;
}

/* ---- the transfer ------------------------------------------------------------------------- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Our pipe and eventfds; the front-end's fd made non-blocking for the pump. */
static int make_fds(struct state_transfer *t)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    (void)fcntl(p[1], F_SETPIPE_SZ, OUR_PIPE_SZ);
    t->state_fd = t->dir == STATE_SAVE ? p[1] : p[0];
    t->pump_fd = t->dir == STATE_SAVE ? p[0] : p[1];
    t->abort_fd = eventfd(0, EFD_CLOEXEC);
    t->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->abort_fd < 0 || t->done_fd < 0)
        return -errno;
    int ret = set_nonblock(t->pump_fd);
    return ret < 0 ? ret : set_nonblock(t->ext_fd);
}

static void free_transfer(struct state_transfer *t)
{
    close_fd(&t->state_fd);
    close_fd(&t->pump_fd);
    close_fd(&t->ext_fd);
    close_fd(&t->abort_fd);
    close_fd(&t->done_fd);
    free(t);
}

/* Joins the threads that were started; the fds they own are theirs to close. */
static void join_threads(struct state_transfer *t)
{
    if (t->pump_started)
        pthread_join(t->pump_thread, NULL);
    if (t->state_started)
        pthread_join(t->state_thread, NULL);
    t->pump_started = t->state_started = false;
}

int state_transfer_start(struct fuse_session *se, enum state_direction dir, int fd,
                         struct state_transfer **out)
{
    struct state_transfer *t = calloc(1, sizeof(*t));
    if (!t) {
        close(fd);
        return -ENOMEM;
    }
    *t = (struct state_transfer){.se = se,
                                 .dir = dir,
                                 .state_fd = -1,
                                 .pump_fd = -1,
                                 .ext_fd = fd,
                                 .abort_fd = -1,
                                 .done_fd = -1};
    int ret = make_fds(t);
    /* The pump first: once it runs, an abort (or its end) releases the state thread. */
    if (ret == 0 && (ret = -pthread_create(&t->pump_thread, NULL, pump_main, t)) == 0)
        t->pump_started = true;
    if (ret == 0 && (ret = -pthread_create(&t->state_thread, NULL, state_main, t)) == 0)
        t->state_started = true;
    if (ret < 0) {
        log_error("device state: cannot start the transfer: %s", strerror(-ret));
        if (t->pump_started && eventfd_write(t->abort_fd, 1) < 0)
            log_warn("device state: aborting the pump failed: %m");
        join_threads(t);
        free_transfer(t);
        return ret;
    }
    *out = t;
    return 0;
}

bool state_transfer_fd_done(const struct state_transfer *t)
{
    return atomic_load(&t->fd_done);
}

bool state_transfer_ended(const struct state_transfer *t)
{
    return atomic_load(&t->ended) == 2;
}

void state_transfer_cancel(struct state_transfer *t)
{
    if (!t)
        return;
    if (atomic_load(&t->ended) < 2 && eventfd_write(t->abort_fd, 1) < 0)
        log_warn("device state: aborting the transfer failed: %m");
    join_threads(t);
    free_transfer(t);
}

/* Waits for both threads; false if watch_fd hung up first. */
static bool wait_ended(struct state_transfer *t, int watch_fd)
{
    unsigned waited = 0;
    while (atomic_load(&t->ended) < 2) {
        struct pollfd p[2] = {{.fd = t->done_fd, .events = POLLIN},
                              {.fd = watch_fd, .events = POLLRDHUP}};
        int n = poll(p, watch_fd >= 0 ? 2 : 1, WAIT_LOG_SEC * 1000);
        if (n < 0 && errno != EINTR) {
            log_error("device state: poll: %m");
            return false;
        }
        if (n == 0)
            log_info("device state: still waiting for the %s to finish (%u s)",
                     t->dir == STATE_SAVE ? "save" : "load", waited += WAIT_LOG_SEC);
        eventfd_t v;
        if (n > 0 && p[0].revents)
            (void)eventfd_read(t->done_fd, &v);
        if (n > 0 && watch_fd >= 0 && (p[1].revents & (POLLHUP | POLLRDHUP | POLLERR)))
            return false;
    }
    return true;
}

int state_transfer_finish(struct state_transfer *t, int watch_fd)
{
    if (!wait_ended(t, watch_fd)) {
        log_error("device state: the front-end went away during the transfer; aborted");
        state_transfer_cancel(t);
        return -ECONNRESET;
    }
    join_threads(t);
    int ret = t->state_ret < 0 ? t->state_ret : t->pump_ret;
    free_transfer(t);
    return ret;
}
