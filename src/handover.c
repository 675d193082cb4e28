/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planned upgrades: the handover between the serving (old) process and a new one.
 *
 * How a user triggers it: start the new binary with the same command line plus --upgrade.
 * Instead of taking the socket's lock and binding, the new process connects to
 * --socket-path before its sandbox (after pivot_root the path is unreachable) and asks the
 * serving process for a handover; the rest of its start-up (sandbox, capabilities, the shared
 * directory, seccomp) runs as usual, and only then does it ask the old process to stop.
 *
 * The conversation, on that one connection (the control socket):
 *
 *   new -> old  HELLO    {magic "VFSUPGRD", version, pid}      before the new one's sandbox
 *   old -> new  WELCOME  {magic, version, pid} + 2 fds: the listening socket and the lock
 *                        file, so that the new process's monitor (namespace sandbox) holds
 *                        them from the start, as a daemon started normally does, and can
 *                        restart its serving process once it took over; the old one keeps
 *                        serving
 *   new -> old  START    {}                                    the new one is set up
 *               (old: stops every queue, saves the FUSE session into a memfd)
 *   old -> new  PACKAGE  {struct wire_package, regions, queues, heads out}
 *   old -> new  FDS      {u32 count} + count fds (SCM_RIGHTS), until all are sent
 *               (new: rebuilds the device and the session, its queues held)
 *   new -> old  READY    {i32 status}                          0, or -errno: it failed
 *   old -> new  GO       {}                                    the old one let go and exits
 *   old -> new  ABORT    {i32 errno}                           instead of PACKAGE or GO
 *
 * Every message starts with a vhost-user header (u32 request, u32 flags = 1, the version
 * bits of vhost-user, u32 payload size), so that the old process can recognise the first one
 * on a new connection without reading it, and so that the vhost-user dispatcher, should it
 * ever see one, finds a request number far outside the protocol (0x55504700 + n, "UPG") and a
 * small payload, which it refuses like any unknown request. All integers are in the host's
 * byte order: both ends run on the same host.
 *
 * A queue's record says how many of its heads are out (n_out): requests the old process
 * popped and did not answer, because they wait for a lock. They stay unanswered there (an
 * EINTR would reach the guest's caller as ERESTARTSYS), and the new process serves them again
 * before anything new; their heads (u16 each) follow the queue records, queue by queue. Should
 * the handover fail, the old process answers them itself when their waits end; once it sent
 * GO it drops such answers (vu_dev_let_go).
 *
 * The package's fds are sent as a table: PACKAGE names each fd by its index (-1: none), and
 * the FDS messages carry the table in order, at most 253 fds each (the kernel's SCM_MAX_FD).
 * The table holds the listening socket, the lock file (<socket>.pid; the lock is held by its
 * open file, so the new process holds it as soon as it has the fd, and writes its own pid into
 * it), the front-end's connection, the session state's memfd, each memory region's file, the
 * dirty-page log's file, the in-flight area's memfd and each queue's kick, call and err
 * eventfds; and last, PACKAGE's n_state_fds of them (at most SESSION_STATE_MAX_FDS): the
 * O_PATH fds of the inodes the session state has no path for (a file the guest holds that
 * was unlinked), which its PASSED_FDS section names by their index among these (the
 * session state's handover SAVE/LOAD, session_state.h). No other index may point at them.
 * n_state_fds was padding (0) before: an older new process counts them among the table's
 * fds, closes them, and refuses the state's critical PASSED_FDS section (the upgrade fails
 * and the old process goes on serving); an older old process sends none.
 *
 * Failure: until the old process sent GO, it owns everything. If the new process fails
 * (READY with an error), dies or says nothing for HANDOVER_READY_TIMEOUT_MS, the old process
 * starts its queues again and goes on serving (one log line): a failed upgrade costs the
 * guest a pause, nothing else. The new process starts its queues only after GO, so the two
 * never serve a ring at once; it exits if the old process does not send GO.
 *
 * Trust (SECURITY.md): the old process hands guest memory, the session and the sockets to a
 * peer that runs as its own uid or as root (SO_PEERCRED, checked in both directions), which
 * could ptrace it anyway. The new process still checks everything it receives for shape —
 * counts, sizes, fd indexes, fd types — and the device's values as a front-end's messages are
 * checked (vu_dev_import); the session state is loaded by the migration LOAD, which trusts
 * nothing. No thread is started here; the control socket is closed on exec and lives only
 * for the handover.
 */
#include "handover.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest_mem.h"
#include "listener.h"
#include "log.h"
#include "scm_fds.h"
#include "session_state.h"
#include "virtqueue.h"

enum ho_request {
    HO_HELLO = 0x55504701,
    HO_WELCOME,
    HO_START,
    HO_PACKAGE,
    HO_FDS,
    HO_READY,
    HO_GO,
    HO_ABORT,
};

#define HO_FLAGS           1u /* vhost-user's version bits */
#define HO_MAGIC           "VFSUPGRD"
#define HO_MAX_FDS_PER_MSG 253
#define HO_MAX_QUEUES      (VU_HIPRIO_QUEUES + VU_MAX_REQUEST_QUEUES)
/* listen, lock, connection, state, the regions, log, in-flight area, 3 per queue */
#define HO_MAX_FDS (4 + GUEST_MEM_MAX_REGIONS + 2 + 3 * HO_MAX_QUEUES)

struct ho_hdr {
    uint32_t request, flags, size;
} __attribute__((packed));

struct ho_hello {
    char magic[8];
    uint32_t version;
    uint32_t pid;
};

struct wire_package {
    char magic[8];
    uint32_t version;
    uint32_t n_fds; /* the FDS messages that follow carry this many */
    int32_t listen_fd, lock_fd, conn_fd, state_fd; /* indexes into the fd table; -1: none */
    uint32_t has_device, owner;
    uint64_t features, protocol_features;
    uint32_t nregions, nqueues;
    int32_t log_fd, inflight_fd;
    uint64_t log_size, log_offset, inflight_size, inflight_offset;
    uint16_t inflight_queues, inflight_queue_size;
    uint32_t n_state_fds; /* the table's last fds: those beside the session state */
};

struct wire_region {
    uint64_t gpa, size, uva, mmap_offset;
    int32_t fd;
    uint32_t padding;
};

struct wire_queue {
    uint64_t desc_uva, avail_uva, used_uva, log_used_gpa;
    uint32_t num;
    uint16_t last_avail_idx, used_idx;
    uint8_t log_used, started, enabled, event_idx;
    int32_t kick_fd, call_fd, err_fd;
    uint32_t n_out; /* heads out, listed after the queue records */
    uint32_t padding;
};

_Static_assert(sizeof(struct wire_package) == 112, "wire layout");
_Static_assert(sizeof(struct wire_region) == 40, "wire layout");
_Static_assert(sizeof(struct wire_queue) == 64, "wire layout");

#define HO_MAX_PACKAGE                                                                             \
    (sizeof(struct wire_package) + GUEST_MEM_MAX_REGIONS * sizeof(struct wire_region) +            \
     HO_MAX_QUEUES * (sizeof(struct wire_queue) + VQ_MAX_SIZE * sizeof(uint16_t)))

/* ---- messages ---------------------------------------------------------------------------- */

static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    return r == 0 ? -ETIMEDOUT : 0;
}

static int send_msg(int fd, uint32_t request, const void *payload, uint32_t size, const int *fds,
                    unsigned nfds)
{
    struct ho_hdr h = {request, HO_FLAGS, size};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, size}};
    return scm_send(fd, iov, 2, fds, nfds);
}

static int read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t done = 0;
    while (done < len) {
        int ret = wait_readable(fd, timeout_ms);
        if (ret < 0)
            return ret;
        ssize_t n = read(fd, (uint8_t *)buf + done, len - done);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        done += (size_t)n;
    }
    return 0;
}

static void close_all(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/*
 * Receives one message: its header, a payload of at most max bytes into payload, and up to
 * max_fds fds (fds NULL: none allowed). -ETIMEDOUT, -ECONNRESET (the peer went away), or
 * -EPROTO for a message of the wrong shape.
 */
static int recv_msg(int fd, struct ho_hdr *h, void *payload, size_t max, int *fds, unsigned max_fds,
                    unsigned *nfds, int timeout_ms)
{
    char control[CMSG_SPACE(HO_MAX_FDS_PER_MSG * sizeof(int))];
    struct iovec iov = {h, sizeof(*h)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control,
                        .msg_controllen = sizeof(control)};
    int local[HO_MAX_FDS_PER_MSG];
    unsigned n = 0;
    int ret = wait_readable(fd, timeout_ms);
    if (ret < 0)
        return ret;
    ssize_t got;
    do {
        got = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    if (got == 0)
        return -ECONNRESET;
    ret = scm_take_fds(&mh, fds ? fds : local, fds ? max_fds : HO_MAX_FDS_PER_MSG, &n);
    if (ret == 0 && !fds && n) {
        close_all(local, n);
        n = 0;
        ret = -EPROTO;
    }
    if (ret == 0 && (size_t)got < sizeof(*h))
        ret = read_full(fd, (uint8_t *)h + got, sizeof(*h) - (size_t)got, timeout_ms);
    if (ret == 0 && (h->flags != HO_FLAGS || h->size > max))
        ret = -EPROTO;
    if (ret == 0)
        ret = read_full(fd, payload, h->size, timeout_ms);
    if (ret < 0 && fds) {
        close_all(fds, n);
        n = 0;
    }
    if (nfds)
        *nfds = n;
    return ret;
}

static bool hello_valid(const struct ho_hello *m)
{
    return memcmp(m->magic, HO_MAGIC, sizeof(m->magic)) == 0;
}

static struct ho_hello hello_of_mine(void)
{
    struct ho_hello m = {.version = HANDOVER_VERSION, .pid = (uint32_t)getpid()};
    memcpy(m.magic, HO_MAGIC, sizeof(m.magic));
    return m;
}

/* The peer runs as our uid or as root (the kernel translates its uid into our namespace). */
static int check_peer(int fd, const char *who)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        int err = errno;
        log_error("upgrade: cannot tell who the %s is: %s", who, strerror(err));
        return -err;
    }
    if (cr.uid != geteuid() && cr.uid != 0) {
        log_error("upgrade: the %s (pid %d) runs as uid %u, neither ours (%u) nor root; refused",
                  who, (int)cr.pid, (unsigned)cr.uid, (unsigned)geteuid());
        return -EPERM;
    }
    return 0;
}

static int check_type(int fd, mode_t type)
{
    struct stat st;
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) < 0)
        return -errno;
    return (st.st_mode & S_IFMT) == type ? 0 : -EPROTO;
}

/* ---- the new process ---------------------------------------------------------------------- */

int handover_connect(const char *socket_path, int *listen_fd, int *lock_fd)
{
    int fds[2] = {-1, -1};
    unsigned nfds = 0;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!socket_path || strlen(socket_path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    strcpy(addr.sun_path, socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int ret = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
    if (ret < 0)
        log_error("upgrade: no daemon serves %s: %s", socket_path, strerror(-ret));
    if (ret == 0)
        ret = check_peer(fd, "daemon serving the socket");
    struct ho_hello m = hello_of_mine();
    if (ret == 0)
        ret = send_msg(fd, HO_HELLO, &m, sizeof(m), NULL, 0);
    struct ho_hdr h;
    struct ho_hello w;
    if (ret == 0) {
        ret = recv_msg(fd, &h, &w, sizeof(w), fds, 2, &nfds, LISTENER_IO_TIMEOUT_S * 1000);
        if (ret == 0 &&
            (h.request != HO_WELCOME || h.size != sizeof(w) || !hello_valid(&w) || nfds != 2 ||
             check_type(fds[0], S_IFSOCK) < 0 || check_type(fds[1], S_IFREG) < 0))
            ret = -EPROTO;
        if (ret == 0 && w.version != HANDOVER_VERSION)
            ret = -EPROTONOSUPPORT;
        if (ret < 0)
            log_error("upgrade: the daemon serving %s did not accept the handover (%s); is it "
                      "one that knows --upgrade, running as our user?",
                      socket_path, strerror(-ret));
    }
    if (ret < 0) {
        close_all(fds, nfds);
        close(fd);
        return ret;
    }
    log_info("upgrade: the daemon serving %s (pid %u) agreed to hand over", socket_path, w.pid);
    *listen_fd = fds[0];
    *lock_fd = fds[1];
    return fd;
}

/* The fd at index i of the table, or -1; -EPROTO for an index out of range (the session
 * state's fds at the table's end included). */
static int fd_at(const struct handover_package *p, int32_t i, int *out)
{
    *out = -1;
    if (i == -1)
        return 0;
    if (i < 0 || (unsigned)i >= p->nfds - p->n_state_fds)
        return -EPROTO;
    *out = p->fds[i];
    return 0;
}

static int unpack_device(struct handover_package *p, const struct wire_package *w,
                         const uint8_t *rest)
{
    struct vu_dev_image *d = &p->dev;
    d->features = w->features;
    d->protocol_features = w->protocol_features;
    d->owner = w->owner != 0;
    d->log_size = w->log_size;
    d->log_offset = w->log_offset;
    d->inflight_size = w->inflight_size;
    d->inflight_offset = w->inflight_offset;
    d->inflight_queues = w->inflight_queues;
    d->inflight_queue_size = w->inflight_queue_size;
    int ret = fd_at(p, w->log_fd, &d->log_fd);
    if (ret == 0)
        ret = fd_at(p, w->inflight_fd, &d->inflight_fd);
    d->nregions = w->nregions;
    d->regions = w->nregions ? calloc(w->nregions, sizeof(*d->regions)) : NULL;
    if (w->nregions && !d->regions)
        return -ENOMEM;
    for (unsigned i = 0; ret == 0 && i < w->nregions; i++) {
        struct wire_region r;
        memcpy(&r, rest + i * sizeof(r), sizeof(r));
        d->regions[i] = (struct vu_region_image){r.gpa, r.size, r.uva, r.mmap_offset, -1};
        ret = fd_at(p, r.fd, &d->regions[i].fd);
        if (ret == 0 && d->regions[i].fd < 0)
            ret = -EPROTO; /* a region without its file */
    }
    rest += w->nregions * sizeof(struct wire_region);
    const uint8_t *heads = rest + w->nqueues * sizeof(struct wire_queue);
    d->nqueues = w->nqueues;
    for (unsigned i = 0; ret == 0 && i < w->nqueues; i++) {
        struct wire_queue q;
        memcpy(&q, rest + i * sizeof(q), sizeof(q));
        struct vu_queue_image *o = &d->queues[i];
        *o = (struct vu_queue_image){.num = q.num,
                                     .desc_uva = q.desc_uva,
                                     .avail_uva = q.avail_uva,
                                     .used_uva = q.used_uva,
                                     .log_used = q.log_used != 0,
                                     .log_used_gpa = q.log_used_gpa,
                                     .last_avail_idx = q.last_avail_idx,
                                     .used_idx = q.used_idx,
                                     .started = q.started != 0,
                                     .enabled = q.enabled != 0,
                                     .event_idx = q.event_idx != 0};
        ret = fd_at(p, q.kick_fd, &o->kick_fd);
        if (ret == 0)
            ret = fd_at(p, q.call_fd, &o->call_fd);
        if (ret == 0)
            ret = fd_at(p, q.err_fd, &o->err_fd);
        /* Counted by check_package; whether they fit the ring is vu_queue_import's to say. */
        if (ret == 0 && q.n_out && !(o->out = malloc(q.n_out * sizeof(uint16_t))))
            ret = -ENOMEM;
        if (ret == 0 && q.n_out) {
            memcpy(o->out, heads, q.n_out * sizeof(uint16_t));
            o->n_out = q.n_out;
            heads += q.n_out * sizeof(uint16_t);
        }
    }
    return ret;
}

/* PACKAGE's fixed part and its lengths, before any fd is taken (buf: size bytes). */
static int check_package(const struct wire_package *w, const uint8_t *buf, uint32_t size)
{
    if (size < sizeof(*w) || memcmp(w->magic, HO_MAGIC, sizeof(w->magic)) != 0 ||
        w->version != HANDOVER_VERSION || w->n_state_fds > SESSION_STATE_MAX_FDS ||
        w->n_state_fds > w->n_fds || w->n_fds - w->n_state_fds > HO_MAX_FDS ||
        (w->n_state_fds && w->state_fd < 0) || w->nregions > GUEST_MEM_MAX_REGIONS ||
        w->nqueues > HO_MAX_QUEUES || (!w->has_device && (w->nregions || w->nqueues)))
        return -EPROTO;
    size_t queues = sizeof(*w) + (size_t)w->nregions * sizeof(struct wire_region);
    size_t want = queues + (size_t)w->nqueues * sizeof(struct wire_queue);
    if (size < want)
        return -EPROTO;
    for (unsigned i = 0; i < w->nqueues; i++) {
        struct wire_queue q;
        memcpy(&q, buf + queues + i * sizeof(q), sizeof(q));
        if (q.n_out > VQ_MAX_SIZE)
            return -EPROTO;
        want += q.n_out * sizeof(uint16_t);
    }
    return size == want ? 0 : -EPROTO;
}

/* The FDS messages, until the table has n_fds fds. */
static int receive_fds(int ctl, struct handover_package *p, uint32_t n_fds)
{
    p->fds = calloc(n_fds ? n_fds : 1, sizeof(int));
    if (!p->fds)
        return -ENOMEM;
    while (p->nfds < n_fds) {
        struct ho_hdr h;
        uint32_t count;
        unsigned got;
        unsigned room = n_fds - p->nfds;
        int ret = recv_msg(ctl, &h, &count, sizeof(count), p->fds + p->nfds,
                           room < HO_MAX_FDS_PER_MSG ? room : HO_MAX_FDS_PER_MSG, &got,
                           HANDOVER_GO_TIMEOUT_MS);
        if (ret == 0 &&
            (h.request != HO_FDS || h.size != sizeof(count) || count != got || got == 0))
            ret = -EPROTO;
        p->nfds += got; /* closed by handover_free, whatever happens */
        if (ret < 0)
            return ret;
    }
    return 0;
}

int handover_receive(int ctl, struct handover_package *p)
{
    *p = (struct handover_package){.listen_fd = -1, .lock_fd = -1, .conn_fd = -1, .state_fd = -1};
    p->dev.log_fd = p->dev.inflight_fd = -1;
    uint8_t *buf = malloc(HO_MAX_PACKAGE);
    if (!buf)
        return -ENOMEM;
    struct ho_hdr h;
    int ret = send_msg(ctl, HO_START, NULL, 0, NULL, 0);
    if (ret == 0)
        ret = recv_msg(ctl, &h, buf, HO_MAX_PACKAGE, NULL, 0, NULL, HANDOVER_READY_TIMEOUT_MS);
    int32_t abort_err = 0;
    if (ret == 0 && h.request == HO_ABORT && h.size == sizeof(abort_err)) {
        memcpy(&abort_err, buf, sizeof(abort_err));
        log_error("upgrade: the old process refused to hand over: %s", strerror(abort_err));
        free(buf);
        return -ECANCELED;
    }
    struct wire_package w = {0};
    if (ret == 0 && h.request != HO_PACKAGE)
        ret = -EPROTO;
    if (ret == 0)
        memcpy(&w, buf, sizeof(w) <= h.size ? sizeof(w) : 0);
    if (ret == 0)
        ret = check_package(&w, buf, h.size);
    if (ret == 0)
        ret = receive_fds(ctl, p, w.n_fds);
    if (ret == 0) {
        p->n_state_fds = w.n_state_fds;
        p->state_fds = p->fds + (p->nfds - p->n_state_fds);
        ret = fd_at(p, w.listen_fd, &p->listen_fd);
    }
    if (ret == 0)
        ret = fd_at(p, w.lock_fd, &p->lock_fd);
    if (ret == 0)
        ret = fd_at(p, w.conn_fd, &p->conn_fd);
    if (ret == 0)
        ret = fd_at(p, w.state_fd, &p->state_fd);
    p->has_device = w.has_device != 0;
    if (ret == 0 && (p->listen_fd < 0 || p->lock_fd < 0 || (p->has_device && p->conn_fd < 0)))
        ret = -EPROTO;
    if (ret == 0 && p->has_device)
        ret = unpack_device(p, &w, buf + sizeof(w));
    /* The sockets are sockets and the files files: nothing else is used as one. */
    if (ret == 0 &&
        (check_type(p->listen_fd, S_IFSOCK) < 0 || check_type(p->conn_fd, S_IFSOCK) < 0 ||
         check_type(p->lock_fd, S_IFREG) < 0 || check_type(p->state_fd, S_IFREG) < 0))
        ret = -EPROTO;
    free(buf);
    if (ret < 0)
        log_error("upgrade: receiving the old process's state failed: %s", strerror(-ret));
    return ret;
}

int handover_take_fd(struct handover_package *p, int fd)
{
    for (unsigned i = 0; fd >= 0 && i < p->nfds; i++)
        if (p->fds[i] == fd)
            p->fds[i] = -1;
    return fd;
}

void handover_free(struct handover_package *p)
{
    if (p->fds)
        close_all(p->fds, p->nfds);
    free(p->fds);
    vu_dev_image_free(&p->dev);
    p->fds = p->state_fds = NULL;
    p->nfds = p->n_state_fds = 0;
}

int handover_ready(int ctl, int status)
{
    int32_t s = status;
    int ret = send_msg(ctl, HO_READY, &s, sizeof(s), NULL, 0);
    if (ret < 0 || status < 0)
        return ret < 0 ? ret : status;
    struct ho_hdr h;
    int32_t err = 0;
    ret = recv_msg(ctl, &h, &err, sizeof(err), NULL, 0, NULL, HANDOVER_GO_TIMEOUT_MS);
    if (ret == 0 && h.request == HO_GO && h.size == 0)
        return 0;
    if (ret == 0 && h.request == HO_ABORT)
        log_error("upgrade: the old process took its queues back: %s", strerror(err));
    else
        log_error("upgrade: no go from the old process: %s", strerror(ret < 0 ? -ret : EPROTO));
    return ret < 0 ? ret : -ECANCELED;
}

/* ---- the old process ---------------------------------------------------------------------- */

bool handover_requested(int fd)
{
    if (wait_readable(fd, HANDOVER_PEEK_TIMEOUT_MS) < 0)
        return false;
    struct ho_hdr h;
    struct iovec iov = {&h, sizeof(h)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    /* recvmsg rather than recv: the seccomp allow-list has it (recv is recvfrom). */
    ssize_t n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT);
    return n == (ssize_t)sizeof(h) && h.request == HO_HELLO && h.size == sizeof(struct ho_hello);
}

int handover_welcome(int fd, int listen_fd, int lock_fd)
{
    struct ho_hdr h;
    struct ho_hello m;
    int ret = check_peer(fd, "new process");
    if (ret == 0)
        ret = recv_msg(fd, &h, &m, sizeof(m), NULL, 0, NULL, HANDOVER_PEEK_TIMEOUT_MS);
    if (ret == 0 && (h.request != HO_HELLO || h.size != sizeof(m) || !hello_valid(&m)))
        ret = -EPROTO;
    if (ret == 0 && m.version != HANDOVER_VERSION) {
        log_error("upgrade: the new process speaks handover version %u, we %u; refused", m.version,
                  HANDOVER_VERSION);
        ret = -EPROTONOSUPPORT;
    }
    struct ho_hello w = hello_of_mine();
    if (ret == 0)
        ret = send_msg(fd, HO_WELCOME, &w, sizeof(w), (const int[]){listen_fd, lock_fd}, 2);
    if (ret < 0 && ret != -EPERM && ret != -EPROTONOSUPPORT)
        log_error("upgrade: a bad handover request: %s; refused", strerror(-ret));
    if (ret == 0)
        log_info("upgrade: process %u will take over once it is set up", m.pid);
    return ret;
}

int handover_poll_start(int ctl)
{
    struct ho_hdr h;
    int ret = recv_msg(ctl, &h, NULL, 0, NULL, 0, NULL, HANDOVER_PEEK_TIMEOUT_MS);
    if (ret == 0 && h.request != HO_START)
        ret = -EPROTO;
    if (ret < 0)
        log_info("upgrade: the new process went away before taking over (%s)", strerror(-ret));
    return ret;
}

/* Appends fd to the table; its index, or -1 for none. */
static int32_t table_add(int *table, unsigned *n, int fd)
{
    if (fd < 0)
        return -1;
    table[*n] = fd;
    return (int32_t)(*n)++;
}

/* Lays out PACKAGE (buf has room for HO_MAX_PACKAGE) and the fd table; its size. */
static size_t pack(const struct handover_package *p, uint8_t *buf, int *table, unsigned *n)
{
    const struct vu_dev_image *d = &p->dev;
    struct wire_package w = {.version = HANDOVER_VERSION, .has_device = p->has_device};
    memcpy(w.magic, HO_MAGIC, sizeof(w.magic));
    *n = 0;
    w.listen_fd = table_add(table, n, p->listen_fd);
    w.lock_fd = table_add(table, n, p->lock_fd);
    w.conn_fd = table_add(table, n, p->conn_fd);
    w.state_fd = table_add(table, n, p->state_fd);
    w.log_fd = w.inflight_fd = -1;
    size_t off = sizeof(w);
    if (p->has_device) {
        w.features = d->features;
        w.protocol_features = d->protocol_features;
        w.owner = d->owner;
        w.nregions = d->nregions;
        w.nqueues = d->nqueues;
        w.log_fd = table_add(table, n, d->log_fd);
        w.log_size = d->log_size;
        w.log_offset = d->log_offset;
        w.inflight_fd = table_add(table, n, d->inflight_fd);
        w.inflight_size = d->inflight_size;
        w.inflight_offset = d->inflight_offset;
        w.inflight_queues = d->inflight_queues;
        w.inflight_queue_size = d->inflight_queue_size;
        for (unsigned i = 0; i < d->nregions; i++, off += sizeof(struct wire_region)) {
            const struct vu_region_image *r = &d->regions[i];
            struct wire_region o = {
                r->gpa, r->size, r->uva, r->mmap_offset, table_add(table, n, r->fd), 0};
            memcpy(buf + off, &o, sizeof(o));
        }
        size_t heads = off + d->nqueues * sizeof(struct wire_queue);
        for (unsigned i = 0; i < d->nqueues; i++, off += sizeof(struct wire_queue)) {
            const struct vu_queue_image *q = &d->queues[i];
            struct wire_queue o = {.desc_uva = q->desc_uva,
                                   .avail_uva = q->avail_uva,
                                   .used_uva = q->used_uva,
                                   .log_used_gpa = q->log_used_gpa,
                                   .num = q->num,
                                   .last_avail_idx = q->last_avail_idx,
                                   .used_idx = q->used_idx,
                                   .log_used = q->log_used,
                                   .started = q->started,
                                   .enabled = q->enabled,
                                   .event_idx = q->event_idx};
            o.kick_fd = table_add(table, n, q->kick_fd);
            o.call_fd = table_add(table, n, q->call_fd);
            o.err_fd = table_add(table, n, q->err_fd);
            o.n_out = q->n_out;
            memcpy(buf + off, &o, sizeof(o));
            if (q->n_out)
                memcpy(buf + heads, q->out, q->n_out * sizeof(uint16_t));
            heads += q->n_out * sizeof(uint16_t);
        }
        off = heads;
    }
    for (unsigned i = 0; i < p->n_state_fds; i++)
        table_add(table, n, p->state_fds[i]);
    w.n_state_fds = p->n_state_fds;
    w.n_fds = *n;
    memcpy(buf, &w, sizeof(w));
    return off;
}

static int send_package(int ctl, const struct handover_package *p)
{
    if (p->has_device &&
        (p->dev.nregions > GUEST_MEM_MAX_REGIONS || p->dev.nqueues > HO_MAX_QUEUES))
        return -EINVAL;
    if (p->n_state_fds > SESSION_STATE_MAX_FDS || (p->n_state_fds && p->state_fd < 0))
        return -EINVAL;
    for (unsigned i = 0; i < p->n_state_fds; i++)
        if (p->state_fds[i] < 0)
            return -EINVAL; /* table_add would skip it: every index after it would shift */
    for (unsigned i = 0; p->has_device && i < p->dev.nqueues; i++)
        if (p->dev.queues[i].n_out > VQ_MAX_SIZE)
            return -EINVAL;
    uint8_t *buf = malloc(HO_MAX_PACKAGE);
    int *table = malloc((HO_MAX_FDS + p->n_state_fds) * sizeof(int));
    int ret = buf && table ? 0 : -ENOMEM;
    unsigned n = 0;
    size_t size = ret == 0 ? pack(p, buf, table, &n) : 0;
    if (ret == 0)
        ret = send_msg(ctl, HO_PACKAGE, buf, (uint32_t)size, NULL, 0);
    for (unsigned i = 0; ret == 0 && i < n; i += HO_MAX_FDS_PER_MSG) {
        uint32_t count = n - i < HO_MAX_FDS_PER_MSG ? n - i : HO_MAX_FDS_PER_MSG;
        ret = send_msg(ctl, HO_FDS, &count, sizeof(count), table + i, count);
    }
    free(buf);
    free(table);
    return ret;
}

int handover_send(int ctl, const struct handover_package *p)
{
    int ret = send_package(ctl, p);
    struct ho_hdr h;
    int32_t status = 0;
    if (ret == 0)
        ret = recv_msg(ctl, &h, &status, sizeof(status), NULL, 0, NULL, HANDOVER_READY_TIMEOUT_MS);
    if (ret == 0 && (h.request != HO_READY || h.size != sizeof(status)))
        ret = -EPROTO;
    if (ret == 0 && status < 0) {
        log_error("upgrade: the new process failed (%s); going on serving", strerror(-status));
        return status;
    }
    if (ret == 0)
        ret = send_msg(ctl, HO_GO, NULL, 0, NULL, 0);
    if (ret < 0)
        log_error("upgrade: the new process did not take over (%s); going on serving",
                  strerror(-ret));
    return ret;
}

void handover_abort(int ctl, int err)
{
    int32_t e = err < 0 ? -err : err;
    (void)send_msg(ctl, HO_ABORT, &e, sizeof(e), NULL, 0);
}
