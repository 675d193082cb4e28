/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protocol-level benchmark: drives one or more virtiofsd-compatible daemons through the test
 * front-end (no VM) and prints ops/s and p50/p99 latency per workload, with each daemon's
 * throughput as a ratio of the first one's, measured in the same run.
 *
 *   bench [--daemon 'CMD']... [--workloads a,b] [--depths 1,16] [--queues 1,2] [--seconds S]
 *         [--driver-threads N] [--state-inodes 10000,100000]
 *
 * The *-logged workloads are their plain namesakes on a connection with dirty-page logging on
 * (VHOST_F_LOG_ALL, a SET_LOG_BASE log, VHOST_VRING_F_LOG), as while a VMM migrates: every
 * reply is logged, and the ratio to the plain row is what the logging costs. The *-tracked
 * workloads are theirs on a connection in cloud-hypervisor's order with in-flight tracking
 * (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD): every pop and push is recorded in the in-flight
 * area, and what changes the session in its journal.
 *
 * --state-inodes N,...: the migration figures. For each N, a share with N files (1000 per
 * directory) made on the host, a session that has looked each one up and holds a few open
 * files, then the rings stopped and the device state SAVEd (SET_DEVICE_STATE_FD into a pipe,
 * read to its end, CHECK_DEVICE_STATE) and LOADed into a second daemon of the same command
 * on the same share (after protocol-feature negotiation, as QEMU's and cloud-hypervisor's
 * destinations do): its size and both times.
 *
 * The driver runs no more threads than there are CPUs (each thread feeds its share of the
 * queues), so that with more queues than CPUs the figures measure the daemon rather than the
 * driver's own threads fighting over the CPUs. It kicks after every request, whatever the
 * device's EVENT_IDX avail_event says: a driver that skipped those kicks would sleep on its
 * call fd more often, and the figures would measure its wake-ups (see README).
 *
 * CMD is a daemon command line without --socket-path/--shared-dir (appended here), or with
 * the placeholders {socket} and {share} where they belong.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glib.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "daemon.h"
#include "frontend.h"

#define MAX_DEPTH   64
#define MAX_QUEUES  16
#define MAX_STEPS   3
#define DIR_ENTRIES 1000
#define BIG_FILE    (64u << 20)
#define OUT_MAX     (1u << 20)

enum workload {
    W_GETATTR,
    W_LOOKUP,
    W_CREATE,
    W_READ4K,
    W_WRITE4K,
    W_READ1M,
    W_WRITE1M,
    W_READDIRPLUS,
    W_READ4K_LOGGED,
    W_READ1M_LOGGED,
    W_GETATTR_TRACKED,
    W_WRITE4K_TRACKED,
    W_LOOKUP_TRACKED,
    W_COUNT
};
static const char *const workload_names[W_COUNT] = {"getattr",
                                                    "lookup-forget",
                                                    "create-release-unlink",
                                                    "read-4k-rand",
                                                    "write-4k-rand",
                                                    "read-1m-seq",
                                                    "write-1m-seq",
                                                    "readdirplus-1000",
                                                    "read-4k-rand-logged",
                                                    "read-1m-seq-logged",
                                                    "getattr-tracked",
                                                    "write-4k-rand-tracked",
                                                    "lookup-forget-tracked"};

#define F_LOG_ALL       (1ull << 26)
#define PF_MQ           (1ull << 0)
#define PF_LOG_SHMFD    (1ull << 1)
#define PF_MEM_SLOTS    (1ull << 15)
#define PF_DEVICE_STATE (1ull << 19)

/* The connection a workload runs on: plain, with dirty-page logging, or with in-flight
 * tracking. */
enum variant { V_PLAIN, V_LOGGED, V_TRACKED, V_COUNT };
static const char *const variant_names[V_COUNT] = {"plain", "a dirty log", "in-flight tracking"};

static enum variant workload_variant(enum workload w)
{
    switch (w) {
    case W_READ4K_LOGGED:
    case W_READ1M_LOGGED:
        return V_LOGGED;
    case W_GETATTR_TRACKED:
    case W_WRITE4K_TRACKED:
    case W_LOOKUP_TRACKED:
        return V_TRACKED;
    default:
        return V_PLAIN;
    }
}

/* What a *-logged or *-tracked workload sends: its plain namesake's requests. */
static enum workload plain_workload(enum workload w)
{
    switch (w) {
    case W_READ4K_LOGGED:
        return W_READ4K;
    case W_READ1M_LOGGED:
        return W_READ1M;
    case W_GETATTR_TRACKED:
        return W_GETATTR;
    case W_WRITE4K_TRACKED:
        return W_WRITE4K;
    case W_LOOKUP_TRACKED:
        return W_LOOKUP;
    default:
        return w;
    }
}

struct ctx {
    uint64_t file_node, file_fh, dir_node;
};

/* One request slot: its buffers in guest memory stay allocated for the whole run. */
struct slot {
    uint64_t in_gpa, out_gpa;
    uint16_t head;
    int step;
    uint64_t id;     /* per-op counter, for unique names */
    uint64_t fh;     /* create: handle to release; readdir: dir handle */
    uint64_t node;   /* create: node to forget */
    uint64_t offset; /* readdir continuation */
    struct timespec start;
};

struct qrun {
    struct fe *fe;
    unsigned q;
    enum workload w;
    unsigned depth;
    const struct ctx *c;
    double seconds;
    struct slot slots[MAX_DEPTH];
    uint64_t ops;
    GArray *lat; /* double microseconds */
    uint64_t seq_off;
    unsigned seed;
    int error;
    double end;
    uint64_t next_id;
    unsigned inflight;
};

/* A driver thread and the queues it feeds. */
struct driver {
    struct qrun *runs[MAX_QUEUES];
    unsigned n;
};

double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Builds the request for the slot's current step; returns its in length and out size. */
static void build(struct qrun *r, struct slot *s, uint32_t *in_len, uint32_t *out_len)
{
    struct fe *fe = r->fe;
    uint8_t *in = fe_ptr(fe, s->in_gpa);
    struct fuse_in_header *h = (struct fuse_in_header *)in;
    uint8_t *arg = in + sizeof(*h);
    size_t alen = 0;
    *h = (struct fuse_in_header){.unique = (uint64_t)(s - r->slots) + 1, .pid = 1};
    *out_len = 4096;
    switch (r->w) {
    case W_GETATTR:
        h->opcode = FUSE_GETATTR;
        h->nodeid = r->c->file_node;
        memset(arg, 0, alen = sizeof(struct fuse_getattr_in));
        break;
    case W_LOOKUP:
        h->opcode = FUSE_LOOKUP;
        h->nodeid = FUSE_ROOT_ID;
        alen = (size_t)sprintf((char *)arg, "big") + 1;
        break;
    case W_CREATE:
        if (s->step == 0) {
            struct fuse_create_in ci = {.flags = O_RDWR | O_CREAT | O_EXCL, .mode = 0644};
            h->opcode = FUSE_CREATE;
            h->nodeid = FUSE_ROOT_ID;
            memcpy(arg, &ci, sizeof(ci));
            alen = sizeof(ci) +
                   (size_t)sprintf((char *)arg + sizeof(ci), "c-%u-%llu", r->q,
                                   (unsigned long long)s->id) +
                   1;
        } else if (s->step == 1) {
            struct fuse_release_in ri = {.fh = s->fh};
            h->opcode = FUSE_RELEASE;
            h->nodeid = s->node;
            memcpy(arg, &ri, alen = sizeof(ri));
        } else {
            h->opcode = FUSE_UNLINK;
            h->nodeid = FUSE_ROOT_ID;
            alen = (size_t)sprintf((char *)arg, "c-%u-%llu", r->q, (unsigned long long)s->id) + 1;
        }
        break;
    case W_READ4K:
    case W_READ1M: {
        bool big = r->w == W_READ1M;
        uint32_t size = big ? (1u << 20) : 4096;
        uint64_t off = big ? (r->seq_off += size) % BIG_FILE
                           : (uint64_t)(rand_r(&r->seed) % (BIG_FILE / 4096)) * 4096;
        struct fuse_read_in ri = {.fh = r->c->file_fh, .offset = off, .size = size};
        h->opcode = FUSE_READ;
        h->nodeid = r->c->file_node;
        memcpy(arg, &ri, alen = sizeof(ri));
        *out_len = size;
        break;
    }
    case W_WRITE4K:
    case W_WRITE1M: {
        bool big = r->w == W_WRITE1M;
        uint32_t size = big ? (1u << 20) : 4096;
        uint64_t off = big ? (r->seq_off += size) % BIG_FILE
                           : (uint64_t)(rand_r(&r->seed) % (BIG_FILE / 4096)) * 4096;
        struct fuse_write_in wi = {.fh = r->c->file_fh, .offset = off, .size = size};
        h->opcode = FUSE_WRITE;
        h->nodeid = r->c->file_node;
        memcpy(arg, &wi, sizeof(wi));
        alen = sizeof(wi) + size; /* the data: whatever the slot buffer holds */
        break;
    }
    case W_READDIRPLUS:
        if (s->step == 0) {
            h->opcode = FUSE_OPENDIR;
            h->nodeid = r->c->dir_node;
            memset(arg, 0, alen = sizeof(struct fuse_open_in));
        } else if (s->step == 1) {
            struct fuse_read_in ri = {.fh = s->fh, .offset = s->offset, .size = 65536};
            h->opcode = FUSE_READDIRPLUS;
            h->nodeid = r->c->dir_node;
            memcpy(arg, &ri, alen = sizeof(ri));
            *out_len = 65536;
        } else {
            struct fuse_release_in ri = {.fh = s->fh};
            h->opcode = FUSE_RELEASEDIR;
            h->nodeid = r->c->dir_node;
            memcpy(arg, &ri, alen = sizeof(ri));
        }
        break;
    default:
        break;
    }
    h->len = (uint32_t)(sizeof(*h) + alen);
    *in_len = h->len;
    *out_len += sizeof(struct fuse_out_header);
}

static int submit(struct qrun *r, struct slot *s)
{
    uint32_t in_len, out_len;
    build(r, s, &in_len, &out_len);
    struct fe_buf b[2] = {{s->in_gpa, in_len, false}, {s->out_gpa, out_len, true}};
    return fe_vq_add(r->fe, r->q, b, 2, false, &s->head);
}

/* Last offset in a readdirplus reply, 0 when it was empty. */
static uint64_t last_dirent_off(const uint8_t *p, size_t len)
{
    uint64_t off = 0;
    size_t pos = 0;
    while (pos + sizeof(struct fuse_direntplus) <= len) {
        const struct fuse_direntplus *d = (const void *)(p + pos);
        off = d->dirent.off;
        pos += FUSE_DIRENTPLUS_SIZE(d);
    }
    return off;
}

/* FORGETs go to the hiprio queue, shared by every request-queue thread. */
static pthread_mutex_t hiprio_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t hiprio_bufs[64];
static unsigned hiprio_inflight;

static void send_forget(struct fe *fe, uint64_t nodeid)
{
    pthread_mutex_lock(&hiprio_lock);
    uint16_t head;
    uint32_t len;
    /* Reap what the daemon has returned so descriptors and buffers can be reused. */
    while (hiprio_inflight > 0 && fe_vq_get_used(fe, 0, &head, &len, 0) == 0) {
        fe_vq_free_chain(fe, 0, head);
        hiprio_inflight--;
    }
    while (hiprio_inflight >= 64 && fe_vq_get_used(fe, 0, &head, &len, 1000) == 0) {
        fe_vq_free_chain(fe, 0, head);
        hiprio_inflight--;
    }
    struct {
        struct fuse_in_header h;
        struct fuse_forget_in f;
    } req = {{.len = sizeof(req), .opcode = FUSE_FORGET, .nodeid = nodeid}, {.nlookup = 1}};
    /* The buffers cycle: at most 64 in flight, so slot reuse is safe. */
    static unsigned next;
    uint64_t gpa = hiprio_bufs[next++ % 64];
    memcpy(fe_ptr(fe, gpa), &req, sizeof(req));
    struct fe_buf b = {gpa, sizeof(req), false};
    if (fe_vq_add(fe, 0, &b, 1, false, &head) == 0) {
        hiprio_inflight++;
        fe_vq_kick(fe, 0);
    }
    pthread_mutex_unlock(&hiprio_lock);
}

/* Handles a completion; returns true when the slot's whole op is done. */
static bool complete(struct qrun *r, struct slot *s, uint32_t len)
{
    struct fuse_out_header *o = fe_ptr(r->fe, s->out_gpa);
    const uint8_t *data = (const uint8_t *)(o + 1);
    if (len < sizeof(*o) || o->error) {
        if (!r->error)
            fprintf(stderr, "bench: %s step %d failed: %d\n", workload_names[r->w], s->step,
                    len < sizeof(*o) ? -EIO : o->error);
        r->error = -EIO;
        return true;
    }
    if (r->w == W_LOOKUP)
        send_forget(r->fe, ((const struct fuse_entry_out *)data)->nodeid);
    if (r->w == W_CREATE && s->step == 0) {
        s->node = ((const struct fuse_entry_out *)data)->nodeid;
        s->fh = ((const struct fuse_open_out *)(data + sizeof(struct fuse_entry_out)))->fh;
    }
    if (r->w == W_READDIRPLUS) {
        if (s->step == 0) {
            s->fh = ((const struct fuse_open_out *)data)->fh;
            s->offset = 0;
        } else if (s->step == 1) {
            uint64_t off = last_dirent_off(data, len - sizeof(*o));
            if (off) {
                s->offset = off;
                return false; /* more entries: stay on this step */
            }
        }
    }
    /* The guest forgets an unlinked file's inode when its dentry goes; so do we. */
    if (r->w == W_CREATE && s->step == 2)
        send_forget(r->fe, s->node);
    int steps = r->w == W_CREATE || r->w == W_READDIRPLUS ? 3 : 1;
    return ++s->step >= steps;
}

/* Starts a queue's run: every slot gets its first request. */
static void start_run(struct qrun *r)
{
    r->end = now_s() + r->seconds;
    for (unsigned i = 0; i < r->depth; i++) {
        r->slots[i].id = r->next_id++;
        clock_gettime(CLOCK_MONOTONIC, &r->slots[i].start);
        if (submit(r, &r->slots[i]) < 0)
            r->error = -ENOSPC;
    }
    r->inflight = r->depth;
    fe_vq_kick(r->fe, r->q);
}

/* Handles one used buffer: the slot's next step, or its next op until the time is up. */
static void on_used(struct qrun *r, uint16_t head, uint32_t len)
{
    struct slot *s = NULL;
    for (unsigned i = 0; i < r->depth; i++)
        if (r->slots[i].head == head)
            s = &r->slots[i];
    fe_vq_free_chain(r->fe, r->q, head);
    if (!s) {
        r->error = -EPROTO;
        return;
    }
    if (complete(r, s, len)) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double us = (double)(t.tv_sec - s->start.tv_sec) * 1e6 +
                    (double)(t.tv_nsec - s->start.tv_nsec) / 1e3;
        g_array_append_val(r->lat, us);
        r->ops++;
        if (now_s() >= r->end) {
            r->inflight--;
            return;
        }
        s->step = 0;
        s->id = r->next_id++;
        s->start = t;
    }
    if (submit(r, s) < 0)
        r->error = -ENOSPC;
    fe_vq_kick(r->fe, r->q);
}

static bool run_live(const struct qrun *r)
{
    return r->inflight > 0 && !r->error;
}

/* Sleeps until one of the driver's queues is signalled; false after 10 s of silence. */
static bool wait_signal(struct qrun **runs, unsigned n)
{
    struct pollfd pfd[MAX_QUEUES];
    nfds_t np = 0;
    for (unsigned i = 0; i < n; i++)
        if (run_live(runs[i]))
            pfd[np++] =
                (struct pollfd){.fd = fe_vq_call_fd(runs[i]->fe, runs[i]->q), .events = POLLIN};
    if (np == 0)
        return true;
    if (poll(pfd, np, 10000) <= 0)
        return false;
    for (nfds_t i = 0; i < np; i++) {
        eventfd_t v;
        if (pfd[i].revents)
            (void)eventfd_read(pfd[i].fd, &v);
    }
    return true;
}

/*
 * A driver thread keeps depth requests in flight on each of its queues until the time is up.
 * With one queue it sleeps in fe_vq_get_used; with several it takes what each has returned
 * and sleeps on all their call fds when none has anything.
 */
static void *run_driver(void *arg)
{
    struct driver *d = arg;
    for (unsigned i = 0; i < d->n; i++)
        start_run(d->runs[i]);
    unsigned live;
    do {
        live = 0;
        bool got = false;
        for (unsigned i = 0; i < d->n; i++) {
            struct qrun *r = d->runs[i];
            uint16_t head;
            uint32_t len;
            while (run_live(r) && (d->n == 1 ? fe_vq_get_used(r->fe, r->q, &head, &len, 10000)
                                             : fe_vq_take_used(r->fe, r->q, &head, &len)) == 0) {
                on_used(r, head, len);
                got = true;
            }
            live += run_live(r);
        }
        if (live && !got && !wait_signal(d->runs, d->n)) {
            for (unsigned i = 0; i < d->n; i++)
                if (run_live(d->runs[i]))
                    d->runs[i]->error = -ETIMEDOUT;
            break;
        }
    } while (live);
    return NULL;
}

/* ---- set-up of the share and the session ---- */

int fuse_simple(struct fe *fe, uint32_t op, uint64_t node, const void *a, size_t alen,
                const char *name, size_t out, struct fe_reply *r)
{
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)name, name ? strlen(name) + 1 : 0}};
    int ret = fe_fuse(fe, 1, op, node, iov, name ? 2 : 1, out, r);
    return ret < 0 ? ret : r->error;
}

static int prepare_session(struct fe *fe, struct ctx *c)
{
    struct fe_reply r;
    struct fuse_entry_out e;
    int ret = fe_fuse_init(fe);
    if (ret < 0 || (ret = fe_lookup(fe, FUSE_ROOT_ID, "big", &e)) < 0) {
        fprintf(stderr, "bench: INIT or LOOKUP failed: %s\n", strerror(-ret));
        return ret;
    }
    c->file_node = e.nodeid;
    struct fuse_open_in oi = {.flags = O_RDWR};
    if ((ret = fuse_simple(fe, FUSE_OPEN, c->file_node, &oi, sizeof(oi), NULL,
                           sizeof(struct fuse_open_out), &r)) < 0)
        return ret;
    c->file_fh = ((struct fuse_open_out *)r.data)->fh;
    if ((ret = fe_lookup(fe, FUSE_ROOT_ID, "dir", &e)) < 0)
        return ret;
    c->dir_node = e.nodeid;
    for (unsigned i = 0; i < 64; i++)
        hiprio_bufs[i] = fe_alloc(fe, 64);
    hiprio_inflight = 0;
    return 0;
}

static void prepare_share(const char *share)
{
    char *p = g_build_filename(share, "big", NULL);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char buf[1 << 20];
    memset(buf, 'x', sizeof(buf));
    for (unsigned i = 0; fd >= 0 && i < BIG_FILE / sizeof(buf); i++)
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            break;
    if (fd >= 0)
        close(fd);
    g_free(p);
    char *dir = g_build_filename(share, "dir", NULL);
    mkdir(dir, 0755);
    for (int i = 0; i < DIR_ENTRIES; i++) {
        char *f = g_strdup_printf("%s/entry-%04d", dir, i);
        g_file_set_contents(f, "", 0, NULL);
        g_free(f);
    }
    g_free(dir);
}

int start_daemon(const char *cmd, struct daemon_proc *d, const char *share)
{
    d->dir = g_dir_make_tmp("vfs-bench-XXXXXX", NULL);
    d->share = share ? g_strdup(share) : g_build_filename(d->dir, "share", NULL);
    d->sock = g_build_filename(d->dir, "sock", NULL);
    if (!share) {
        mkdir(d->share, 0755);
        prepare_share(d->share);
    }
    /* {socket} and {share} in CMD are replaced; without them the Rust virtiofsd's options
     * are appended (QEMU's old C virtiofsd wants -o source={share} instead). */
    char *full;
    if (strstr(cmd, "{socket}")) {
        GString *g = g_string_new(cmd);
        g_string_replace(g, "{socket}", d->sock, 0);
        g_string_replace(g, "{share}", d->share, 0);
        full = g_strdup_printf("exec %s", g->str);
        g_string_free(g, TRUE);
    } else {
        full = g_strdup_printf("exec %s --socket-path=%s --shared-dir=%s", cmd, d->sock, d->share);
    }
    d->pid = fork();
    if (d->pid == 0) {
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    g_free(full);
    for (int i = 0; i < 500; i++) {
        if (access(d->sock, F_OK) == 0)
            return 0;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

void stop_daemon(struct daemon_proc *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
    }
    char *cmd = g_strdup_printf("rm -rf '%s'", d->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: cannot remove %s\n", d->dir);
    g_free(cmd);
    g_free(d->dir);
    g_free(d->share);
    g_free(d->sock);
}

#define BENCH_MEM (256u << 20)

/*
 * Dirty-page logging on, as a VMM turns it on for a migration: a log (one bit per 4 KiB page
 * of guest-physical memory, from address 0 to the end of guest memory) in a memfd handed over
 * with SET_LOG_BASE. Returns the memfd.
 */
static int set_log(struct fe *fe)
{
    uint64_t size = ((fe_gpa_base(fe) + BENCH_MEM) / 4096 + 7) / 8;
    int fd = memfd_create("bench-dirty-log", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        int err = -errno;
        if (fd >= 0)
            close(fd);
        return err;
    }
    /* Ours answers a u64, the Rust daemon echoes the 16-byte message: like QEMU, accept any
     * answer to SET_LOG_BASE (a refusal ends the connection). */
    uint64_t msg[2] = {size, 0}, answer[2];
    uint32_t req = 0, len = sizeof(answer);
    int ret = fe_vu_send(fe, FE_VU_SET_LOG_BASE, 0, msg, sizeof(msg), &fd, 1);
    if (ret == 0 && (ret = fe_vu_recv(fe, &req, answer, &len, 5000)) == 0 &&
        req != FE_VU_SET_LOG_BASE)
        ret = -EPROTO;
    if (ret < 0) {
        close(fd);
        return ret;
    }
    return fd;
}

/* Pages the daemon marked in the log: none means the *-logged rows measured no logging. */
static uint64_t logged_pages(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        return 0;
    const uint8_t *log = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (log == MAP_FAILED)
        return 0;
    uint64_t n = 0;
    for (off_t i = 0; i < st.st_size; i++)
        n += (uint64_t)__builtin_popcount(log[i]);
    munmap((void *)log, (size_t)st.st_size);
    return n;
}

/*
 * A connection with the rings running, of the variant's kind: with logging on (V_LOGGED: *log_fd
 * set to the log's memfd, for the caller to close after fe_close), or in cloud-hypervisor's
 * order with in-flight tracking (V_TRACKED).
 */
static struct fe *connect_fe(const char *sock, unsigned queues, enum variant v, int *log_fd)
{
    bool logged = v == V_LOGGED;
    struct fe_config cfg = {.socket_path = sock,
                            .request_queues = queues,
                            .mem_size = BENCH_MEM,
                            .queue_size = 256,
                            .features = logged ? F_LOG_ALL : 0,
                            .protocol_features = logged ? PF_LOG_SHMFD : 0,
                            .vring_log = logged,
                            .profile =
                                v == V_TRACKED ? FE_PROFILE_CLOUD_HYPERVISOR : FE_PROFILE_QEMU,
                            .inflight = v == V_TRACKED};
    struct fe *fe = NULL;
    int ret = fe_open_retry(&cfg, &fe, 4000);
    if (ret == 0 && logged && (ret = *log_fd = set_log(fe)) < 0) {
        fe_close(fe);
        fe = NULL;
    }
    if (ret >= 0)
        return fe;
    fprintf(stderr, "bench: cannot connect with %s to %s: %s\n", variant_names[v], sock,
            strerror(-ret));
    return NULL;
}

/* Whether the connection really runs its variant: a daemon without dirty-page logging or
 * in-flight tracking gives no figures for those rows. */
static bool variant_ran(struct fe *fe, enum variant v, int log_fd)
{
    if (v == V_LOGGED)
        return log_fd >= 0 && logged_pages(log_fd) > 0;
    if (v == V_TRACKED)
        return fe_inflight_fd(fe) >= 0;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double ops_s, p50, p99;
    bool ok;
};

static struct result run_one(struct fe *fe, const struct ctx *c, enum workload w, unsigned depth,
                             unsigned queues, unsigned nthreads, double seconds)
{
    struct qrun *runs = calloc(queues, sizeof(*runs));
    w = plain_workload(w);
    size_t mark = fe_alloc_mark(fe);
    for (unsigned q = 0; q < queues; q++) {
        struct qrun *r = &runs[q];
        *r = (struct qrun){.fe = fe,
                           .q = 1 + q,
                           .w = w,
                           .depth = depth,
                           .c = c,
                           .seconds = seconds,
                           .lat = g_array_new(FALSE, FALSE, sizeof(double)),
                           .seed = 1234 + q};
        for (unsigned i = 0; i < depth; i++) {
            r->slots[i].in_gpa = fe_alloc(fe, 4096 + OUT_MAX / (w == W_WRITE1M ? 1 : 256));
            r->slots[i].out_gpa = fe_alloc(fe, 4096 + (w == W_READ1M ? OUT_MAX : 65536));
        }
    }
    if (nthreads == 0 || nthreads > queues)
        nthreads = queues;
    struct driver *drivers = calloc(nthreads, sizeof(*drivers));
    for (unsigned q = 0; q < queues; q++) {
        struct driver *d = &drivers[q % nthreads];
        d->runs[d->n++] = &runs[q];
    }
    pthread_t *th = calloc(nthreads, sizeof(*th));
    double t0 = now_s();
    for (unsigned t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, run_driver, &drivers[t]);
    for (unsigned t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    double elapsed = now_s() - t0;

    struct result res = {.ok = true};
    GArray *all = g_array_new(FALSE, FALSE, sizeof(double));
    uint64_t ops = 0;
    for (unsigned q = 0; q < queues; q++) {
        ops += runs[q].ops;
        g_array_append_vals(all, runs[q].lat->data, runs[q].lat->len);
        g_array_free(runs[q].lat, TRUE);
        if (runs[q].error)
            res.ok = false;
    }
    g_array_sort(all, cmp_double);
    if (all->len) {
        res.p50 = g_array_index(all, double, all->len / 2);
        res.p99 = g_array_index(all, double, (all->len * 99) / 100);
    }
    res.ops_s = (double)ops / elapsed;
    g_array_free(all, TRUE);
    free(th);
    free(drivers);
    free(runs);
    fe_alloc_release(fe, mark);
    return res;
}

/* ---- migration: the device state's size, SAVE and LOAD ---- */

#define STATE_PER_DIR 1000
#define STATE_OPEN    16

struct state_result {
    uint64_t bytes;
    double save_ms, load_ms;
    bool ok;
};

/* n files, STATE_PER_DIR per directory, made directly on the host (no daemon involved). */
static int make_state_share(const char *share, unsigned n)
{
    int root = open(share, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    int ret = 0, dir = -1;
    for (unsigned i = 0; i < n && ret == 0; i++) {
        char name[32];
        if (i % STATE_PER_DIR == 0) {
            if (dir >= 0)
                close(dir);
            snprintf(name, sizeof(name), "d%05u", i / STATE_PER_DIR);
            if (mkdirat(root, name, 0755) < 0 ||
                (dir = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                ret = -errno;
                break;
            }
        }
        snprintf(name, sizeof(name), "f%04u", i % STATE_PER_DIR);
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            ret = -errno;
        else
            close(fd);
    }
    if (dir >= 0)
        close(dir);
    close(root);
    return ret;
}

/* The guest's side: INIT, a LOOKUP of every directory and file, a few files open. */
static int know_state_inodes(struct fe *fe, unsigned n)
{
    int ret = fe_fuse_init(fe);
    uint64_t dir = 0;
    unsigned opened = 0;
    for (unsigned i = 0; i < n && ret == 0; i++) {
        char name[32];
        struct fuse_entry_out e;
        if (i % STATE_PER_DIR == 0) {
            snprintf(name, sizeof(name), "d%05u", i / STATE_PER_DIR);
            if ((ret = fe_lookup(fe, FUSE_ROOT_ID, name, &e)) < 0)
                break;
            dir = e.nodeid;
        }
        snprintf(name, sizeof(name), "f%04u", i % STATE_PER_DIR);
        if ((ret = fe_lookup(fe, dir, name, &e)) < 0)
            break;
        if (opened < STATE_OPEN && i % 97 == 0) {
            struct fuse_open_in oi = {.flags = O_RDONLY};
            struct fe_reply r;
            ret = fuse_simple(fe, FUSE_OPEN, e.nodeid, &oi, sizeof(oi), NULL,
                              sizeof(struct fuse_open_out), &r);
            opened++;
        }
    }
    if (ret < 0)
        fprintf(stderr, "bench: setting up %u known inodes failed: %s\n", n, strerror(-ret));
    return ret;
}

static double ms_since(double t0)
{
    return (now_s() - t0) * 1e3;
}

/* SAVE with the rings stopped: the stream (read to its end), then CHECK_DEVICE_STATE. */
static int save_state(struct fe *fe, GByteArray *out, double *ms)
{
    int p[2], ret = fe_stop_rings(fe);
    uint64_t reply = 0, result = 1;
    if (ret < 0 || pipe2(p, O_CLOEXEC) < 0)
        return ret < 0 ? ret : -errno;
    double t0 = now_s();
    ret = fe_set_state_fd(fe, FE_STATE_SAVE, 0, p[1], &reply);
    close(p[1]);
    if (ret == 0 && (reply & 0xff))
        ret = -EPROTO;
    static uint8_t buf[1 << 16];
    for (ssize_t got; ret == 0 && (got = read(p[0], buf, sizeof(buf))) != 0;) {
        if (got < 0 && errno != EINTR)
            ret = -errno;
        else if (got > 0)
            g_byte_array_append(out, buf, (guint)got);
    }
    close(p[0]);
    if (ret == 0 && (ret = fe_check_state(fe, &result, 600000)) == 0 && result != 0)
        ret = -EIO;
    *ms = ms_since(t0);
    return ret;
}

/* LOAD on a fresh connection, right after protocol-feature negotiation (before memory and
 * rings), until CHECK_DEVICE_STATE answers. */
static int load_state(const char *sock, const GByteArray *state, double *ms)
{
    struct fe_config cfg = {.socket_path = sock, .skip_setup = true};
    struct fe *fe = NULL;
    int p[2], ret = fe_open_retry(&cfg, &fe, 4000);
    if (ret < 0)
        return ret;
    uint64_t f, pf = 0, reply = 0, result = 1;
    if ((ret = fe_vu_send(fe, FE_VU_SET_OWNER, 0, NULL, 0, NULL, 0)) < 0 ||
        (ret = fe_vu_get_u64(fe, FE_VU_GET_FEATURES, &f)) < 0 ||
        (ret = fe_vu_get_u64(fe, FE_VU_GET_PROTOCOL_FEATURES, &pf)) < 0)
        goto out;
    pf &= PF_DEVICE_STATE | PF_MQ | PF_MEM_SLOTS;
    ret = -EOPNOTSUPP;
    if (!(pf & PF_DEVICE_STATE) ||
        (ret = fe_vu_send(fe, FE_VU_SET_PROTOCOL_FEATURES, 0, &pf, sizeof(pf), NULL, 0)) < 0)
        goto out;
    if (pipe2(p, O_CLOEXEC) < 0) {
        ret = -errno;
        goto out;
    }
    double t0 = now_s();
    ret = fe_set_state_fd(fe, FE_STATE_LOAD, 0, p[0], &reply);
    close(p[0]);
    if (ret == 0 && (reply & 0xff))
        ret = -EPROTO;
    for (guint off = 0; ret == 0 && off < state->len;) {
        ssize_t n = write(p[1], state->data + off, state->len - off);
        if (n < 0 && errno != EINTR)
            ret = -errno;
        else if (n > 0)
            off += (guint)n;
    }
    close(p[1]);
    if (ret == 0 && (ret = fe_check_state(fe, &result, 600000)) == 0 && result != 0)
        ret = -EIO;
    *ms = ms_since(t0);
out:
    fe_close(fe);
    return ret;
}

static struct state_result run_state(const char *cmd, unsigned n)
{
    struct state_result res = {0};
    char *dir = g_dir_make_tmp("vfs-bench-state-XXXXXX", NULL);
    char *share = g_build_filename(dir, "share", NULL);
    struct daemon_proc a = {0}, b = {0};
    struct fe *fe = NULL;
    GByteArray *state = g_byte_array_new();
    struct fe_config cfg = {.socket_path = NULL, .protocol_features = PF_DEVICE_STATE};
    int ret = mkdir(share, 0755) < 0 ? -errno : make_state_share(share, n);
    if (ret == 0 && (ret = start_daemon(cmd, &a, share)) == 0) {
        cfg.socket_path = a.sock;
        ret = fe_open_retry(&cfg, &fe, 4000);
    }
    if (ret == 0 && (ret = know_state_inodes(fe, n)) == 0 &&
        (ret = save_state(fe, state, &res.save_ms)) < 0)
        fprintf(stderr, "bench: SAVE of %u inodes failed: %s\n", n, strerror(-ret));
    if (fe)
        fe_close(fe);
    /* The source is gone before the destination starts: one daemon at a time on the CPUs. */
    if (a.dir)
        stop_daemon(&a);
    res.bytes = state->len;
    if (ret == 0 && (ret = start_daemon(cmd, &b, share)) == 0 &&
        (ret = load_state(b.sock, state, &res.load_ms)) < 0)
        fprintf(stderr, "bench: LOAD of %u inodes failed: %s\n", n, strerror(-ret));
    if (b.dir)
        stop_daemon(&b);
    res.ok = ret == 0;
    g_byte_array_unref(state);
    char *rm = g_strdup_printf("rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench: cannot remove %s\n", dir);
    g_free(rm);
    g_free(share);
    g_free(dir);
    return res;
}

/*
 * Both daemons hold an O_PATH fd per known inode by default, and inherit the bench's open-file
 * limit: raise it (as far as the bench may) to fit the largest N, so that the figures do not
 * stop at EMFILE. Without the privilege, --inode-file-handles=prefer gets past the limit.
 */
static void raise_nofile(GPtrArray *ns)
{
    rlim_t need = 0;
    for (unsigned i = 0; i < ns->len; i++) {
        rlim_t n = (rlim_t)strtoul(ns->pdata[i], NULL, 10);
        need = n + n / STATE_PER_DIR + 4096 > need ? n + n / STATE_PER_DIR + 4096 : need;
    }
    struct rlimit rl;
    if (need == 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    struct rlimit want = {need, rl.rlim_max > need ? rl.rlim_max : need};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0)
        return;
    want = (struct rlimit){rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &want) < 0)
        want.rlim_cur = rl.rlim_cur;
    fprintf(stderr,
            "bench: open-file limit %llu: a daemon holding an fd per inode may fail with EMFILE "
            "(--inode-file-handles=prefer avoids that)\n",
            (unsigned long long)want.rlim_cur);
}

/* The migration mode a daemon command asks for (both daemons default to find-paths). */
static const char *migration_mode(const char *cmd)
{
    return strstr(cmd, "--migration-mode=file-handles") ||
                   strstr(cmd, "--migration-mode file-handles")
               ? "file-handles"
               : "find-paths";
}

static void print_state(GPtrArray *daemons, GPtrArray *ns, const struct state_result *sr)
{
    printf("\n%-8s %-4s %-12s %9s %12s %8s %10s %10s\n", "state", "d", "mode", "inodes", "bytes",
           "B/inode", "SAVE ms", "LOAD ms");
    for (unsigned ni = 0; ni < ns->len; ni++)
        for (unsigned di = 0; di < daemons->len; di++) {
            const struct state_result *r = &sr[ni * daemons->len + di];
            unsigned n = (unsigned)atoi(ns->pdata[ni]);
            printf("%-8s d%-3u %-12s %9u ", "", di, migration_mode(daemons->pdata[di]), n);
            if (!r->ok)
                printf("%12s %8s %10s %10s\n", "failed", "-", "-", "-");
            else
                printf("%12llu %8.1f %10.1f %10.1f\n", (unsigned long long)r->bytes,
                       n ? (double)r->bytes / n : 0.0, r->save_ms, r->load_ms);
        }
}

/* Each *-logged or *-tracked row's throughput over its plain namesake's, when both ran: what
 * logging or tracking costs. */
static void print_variant_cost(GPtrArray *ws, const int *wids, GPtrArray *ds, GPtrArray *qs,
                               unsigned nd, const struct result *res)
{
    for (unsigned li = 0; li < ws->len; li++) {
        if (workload_variant((enum workload)wids[li]) == V_PLAIN)
            continue;
        for (unsigned pi = 0; pi < ws->len; pi++) {
            if (wids[pi] != (int)plain_workload((enum workload)wids[li]))
                continue;
            for (unsigned i = 0; i < (size_t)ds->len * qs->len * nd; i++) {
                const struct result *l = &res[(size_t)li * ds->len * qs->len * nd + i];
                const struct result *p = &res[(size_t)pi * ds->len * qs->len * nd + i];
                if (i % nd == 0)
                    printf("%s/plain depth %s queues %s:", (char *)ws->pdata[li],
                           (char *)ds->pdata[i / nd / qs->len],
                           (char *)qs->pdata[i / nd % qs->len]);
                if (l->ok && p->ok && p->ops_s > 0)
                    printf(" d%u %.3f", i % nd, l->ops_s / p->ops_s);
                else
                    printf(" d%u -", i % nd);
                if (i % nd == nd - 1)
                    printf("\n");
            }
        }
    }
}

GPtrArray *split_list(const char *s)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
    gchar **v = g_strsplit(s, ",", -1);
    for (gchar **p = v; *p; p++)
        g_ptr_array_add(a, g_strdup(*p));
    g_strfreev(v);
    return a;
}

int main(int argc, char **argv)
{
    GPtrArray *daemons = g_ptr_array_new();
    const char *wl = "getattr,lookup-forget,create-release-unlink,read-4k-rand,write-4k-rand,"
                     "read-1m-seq,write-1m-seq,readdirplus-1000";
    const char *depths = "1,16", *queues_s = "1", *state_inodes = NULL;
    const char *scale = NULL, *scale_shapes = "flat,deep";
    unsigned scale_runs = 1;
    double seconds = 2;
    /* The driver never needs more threads than the CPUs it may run on. */
    unsigned driver_threads = test_usable_cpus() ? test_usable_cpus() : 1;
    static const struct option opts[] = {{"daemon", required_argument, NULL, 'd'},
                                         {"workloads", required_argument, NULL, 'w'},
                                         {"depths", required_argument, NULL, 'D'},
                                         {"queues", required_argument, NULL, 'q'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"driver-threads", required_argument, NULL, 't'},
                                         {"state-inodes", required_argument, NULL, 'S'},
                                         {"scale", required_argument, NULL, 'n'},
                                         {"scale-shape", required_argument, NULL, 'N'},
                                         {"scale-runs", required_argument, NULL, 'R'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        switch (c) {
        case 'd':
            g_ptr_array_add(daemons, optarg);
            break;
        case 'w':
            wl = optarg;
            break;
        case 'D':
            depths = optarg;
            break;
        case 'q':
            queues_s = optarg;
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 't':
            driver_threads = (unsigned)atoi(optarg);
            break;
        case 'S':
            state_inodes = optarg;
            break;
        case 'n':
            scale = optarg;
            break;
        case 'N':
            scale_shapes = optarg;
            break;
        case 'R':
            scale_runs = (unsigned)atoi(optarg);
            break;
        default:
            printf("usage: bench [--daemon 'CMD']... [--workloads LIST] [--depths 1,16] "
                   "[--queues 1,2] [--seconds S] [--driver-threads N] [--state-inodes N,...]\n"
                   "       [--scale N,... [--scale-shape flat,deep] [--scale-runs R]]\n"
                   "  --driver-threads N: threads feeding the queues (0: one per queue; "
                   "default: one per CPU, at most one per queue)\n"
                   "  --state-inodes N,...: device state size and SAVE/LOAD times with N known "
                   "inodes\n"
                   "  --scale N,...: READDIRPLUS, LOOKUP and FORGET of every entry of a share "
                   "of N files\n  (flat: one directory; deep: a tree), R times per daemon; "
                   "without --daemon: ours\n  and the Rust virtiofsd, with fds and with file "
                   "handles\n  (--workloads '' to measure only those)\nworkloads:");
            for (int i = 0; i < W_COUNT; i++)
                printf(" %s", workload_names[i]);
            printf("\n");
            return c == 'h' ? 0 : 2;
        }
    }
    /* The scale mode's default daemons are its own (scale.c). */
    GPtrArray *given = g_ptr_array_copy(daemons, NULL, NULL);
    if (daemons->len == 0)
        g_ptr_array_add(daemons, BENCH_DEFAULT_DAEMON
                        " --cache=always --seccomp=none --sandbox=none --log-level=error");
    GPtrArray *ws = split_list(wl), *ds = split_list(depths), *qs = split_list(queues_s);
    unsigned nd = daemons->len;
    /* results[workload][depth][queues][daemon] */
    size_t nres = (size_t)ws->len * ds->len * qs->len * nd;
    struct result *res = calloc(nres + 1, sizeof(*res));
    int *wids = calloc(ws->len + 1, sizeof(*wids));
    for (unsigned wi = 0; wi < ws->len; wi++) {
        int w = 0;
        while (w < W_COUNT && strcmp(workload_names[w], ws->pdata[wi]))
            w++;
        if (w == W_COUNT) {
            fprintf(stderr, "bench: unknown workload %s\n", (char *)ws->pdata[wi]);
            return 2;
        }
        wids[wi] = w;
    }

    for (unsigned di = 0; di < nd && ws->len; di++) {
        const char *cmd = daemons->pdata[di];
        for (unsigned qi = 0; qi < qs->len; qi++) {
            unsigned queues = (unsigned)atoi(qs->pdata[qi]);
            if (queues < 1 || queues > MAX_QUEUES) {
                fprintf(stderr, "bench: --queues takes 1 to %u, not %s\n", MAX_QUEUES,
                        (char *)qs->pdata[qi]);
                return 2;
            }
            /* The plain workloads on one connection, then the logged ones on another, then
             * the tracked ones, each with a daemon of its own (the Rust virtiofsd serves one
             * connection). */
            for (int v = V_PLAIN; v < V_COUNT; v++) {
                bool any = false;
                for (unsigned wi = 0; wi < ws->len; wi++)
                    any |= (int)workload_variant((enum workload)wids[wi]) == v;
                struct daemon_proc d = {0};
                if (!any)
                    continue;
                if (start_daemon(cmd, &d, NULL) < 0) {
                    fprintf(stderr, "bench: cannot start '%s'\n", cmd);
                    stop_daemon(&d);
                    continue;
                }
                struct fe *fe = NULL;
                struct ctx c;
                int log_fd = -1;
                if (!(fe = connect_fe(d.sock, queues, (enum variant)v, &log_fd)) ||
                    prepare_session(fe, &c) < 0) {
                    fprintf(stderr, "bench: cannot set up '%s' with %u queues and %s\n", cmd,
                            queues, variant_names[v]);
                    if (fe)
                        fe_close(fe);
                    if (log_fd >= 0)
                        close(log_fd);
                    stop_daemon(&d);
                    continue;
                }
                for (unsigned wi = 0; wi < ws->len; wi++) {
                    if ((int)workload_variant((enum workload)wids[wi]) != v)
                        continue;
                    for (unsigned dpi = 0; dpi < ds->len; dpi++) {
                        unsigned depth = (unsigned)atoi(ds->pdata[dpi]);
                        if (depth < 1 || depth > MAX_DEPTH)
                            depth = 1;
                        size_t idx = (((size_t)wi * ds->len + dpi) * qs->len + qi) * nd + di;
                        res[idx] = run_one(fe, &c, (enum workload)wids[wi], depth, queues,
                                           driver_threads, seconds);
                    }
                }
                bool ran = variant_ran(fe, (enum variant)v, log_fd);
                fe_close(fe);
                if (!ran) {
                    fprintf(stderr, "bench: '%s' did not run with %s: no figures for it\n", cmd,
                            variant_names[v]);
                    for (unsigned wi = 0; wi < ws->len; wi++)
                        for (size_t i = 0; (int)workload_variant((enum workload)wids[wi]) == v &&
                                           i < (size_t)ds->len * qs->len * nd;
                             i++)
                            if (i % nd == di && i / nd % qs->len == qi)
                                res[(size_t)wi * ds->len * qs->len * nd + i].ok = false;
                }
                if (log_fd >= 0)
                    close(log_fd);
                stop_daemon(&d);
            }
        }
    }
    GPtrArray *ns = split_list(state_inodes ? state_inodes : "");
    struct state_result *sr = calloc((size_t)ns->len * nd + 1, sizeof(*sr));
    raise_nofile(ns);
    for (unsigned ni = 0; ni < ns->len; ni++)
        for (unsigned di = 0; di < nd; di++)
            sr[ni * nd + di] = run_state(daemons->pdata[di], (unsigned)atoi(ns->pdata[ni]));

    if (ws->len) {
        printf("%-24s %5s %6s", "workload", "depth", "queues");
        for (unsigned di = 0; di < nd; di++)
            printf(" | d%u ops/s   p50us   p99us%s", di, di ? "  ratio" : "");
        printf("\n");
    }
    for (unsigned wi = 0; wi < ws->len; wi++)
        for (unsigned dpi = 0; dpi < ds->len; dpi++)
            for (unsigned qi = 0; qi < qs->len; qi++) {
                printf("%-24s %5s %6s", (char *)ws->pdata[wi], (char *)ds->pdata[dpi],
                       (char *)qs->pdata[qi]);
                size_t base = (((size_t)wi * ds->len + dpi) * qs->len + qi) * nd;
                for (unsigned di = 0; di < nd; di++) {
                    struct result *r = &res[base + di];
                    if (!r->ok) {
                        printf(" | %10s %7s %7s%s", "failed", "-", "-", di ? "      -" : "");
                        continue;
                    }
                    printf(" | %10.0f %7.1f %7.1f", r->ops_s, r->p50, r->p99);
                    if (di)
                        printf("  %5.2f", res[base].ok && res[base].ops_s > 0
                                              ? r->ops_s / res[base].ops_s
                                              : 0.0);
                }
                printf("\n");
            }
    print_variant_cost(ws, wids, ds, qs, nd, res);
    if (ns->len)
        print_state(daemons, ns, sr);
    for (unsigned di = 0; di < nd && (ws->len || ns->len); di++)
        printf("d%u: %s\n", di, (char *)daemons->pdata[di]);
    fflush(stdout);
    if (scale)
        run_scale(given, scale, scale_shapes, scale_runs);
    g_ptr_array_unref(given);
    free(sr);
    free(wids);
    free(res);
    return 0;
}
