/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planned upgrades (src/handover.c): a second daemon started with the same command line plus
 * --upgrade takes over the socket, the front-end's connection and the FUSE session while the
 * front-end keeps requests in flight on several queues. The front-end must see nothing: no
 * disconnect, no error, every request answered exactly once, its nodeids and fhs still valid,
 * no FUSE_INIT again; the old process exits. Repeated (VIRTIOFSD_UPGRADE_CYCLES, default 50),
 * with QEMU's and cloud-hypervisor's start-up sequences. A guest's lock wait (SETLKW, POSIX
 * and flock) blocked across a handover is answered once, with success, by the new process.
 * And the failures: a handover request that is garbage, of another version or from another
 * uid is refused; a new process that goes away or fails at any step (played by the test at
 * the protocol level, so that the step is exact) costs nothing: the old one goes on serving
 * and answers every request once; in the namespace sandbox the socket and its pid file
 * outlive the old monitor.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define NFILES     4
#define FILE_SIZE  (128 * 1024)
#define READ_AREA  (64 * 1024) /* never written: reads check its pattern */
#define BLOCK      4096
#define QUEUES     4
#define ROUND      64 /* requests per round; guest memory is released between rounds */
#define REPLY_WAIT 10000

static struct test_daemon daemon_;

struct file {
    uint64_t nodeid, fh;
};

struct load {
    struct fe *fe;
    struct file f[NFILES];
    unsigned long sent, answered;
    unsigned next; /* the next request's kind and target */
    bool written[NFILES][(FILE_SIZE - READ_AREA) / BLOCK];
    int inflight_fd; /* the in-flight area, when tracking is on; else -1 */
    uint64_t inflight_size;
};

static char *host_path(const char *name)
{
    return g_build_filename(daemon_.share, name, NULL);
}

static uint8_t read_byte(unsigned file, uint64_t off)
{
    return (uint8_t)(file * 31 + off / 7);
}

static uint8_t write_byte(unsigned file, uint64_t off)
{
    return (uint8_t)(file * 16 + off / BLOCK + 1);
}

static void make_files(void)
{
    for (unsigned i = 0; i < NFILES; i++) {
        char name[8];
        snprintf(name, sizeof(name), "f%u", i);
        uint8_t *buf = g_malloc(FILE_SIZE);
        for (uint64_t o = 0; o < FILE_SIZE; o++)
            buf[o] = read_byte(i, o);
        char *p = host_path(name);
        g_assert_true(g_file_set_contents(p, (char *)buf, FILE_SIZE, NULL));
        g_free(p);
        g_free(buf);
    }
}

/* ---- the daemon that takes over ---- */

/* The daemon's command line as test_daemon_start builds it (extra: the test's options). */
static GPtrArray *daemon_argv(const char *const *extra)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(test_daemon_path()));
    g_ptr_array_add(argv, g_strdup_printf("--socket-path=%s", daemon_.socket));
    g_ptr_array_add(argv, g_strdup_printf("--shared-dir=%s", daemon_.share));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_ptr_array_add(argv, g_strdup("--sandbox=none"));
    g_ptr_array_add(argv, g_strdup("--seccomp=none"));
#endif
    g_ptr_array_add(argv, g_strdup("--log-level=debug"));
    const char *env = getenv("VIRTIOFSD_TEST_ARGS");
    gchar **words = env && *env ? g_strsplit_set(env, " ", -1) : NULL;
    for (gchar **w = words; w && *w; w++)
        if (**w)
            g_ptr_array_add(argv, g_strdup(*w));
    g_strfreev(words);
    for (const char *const *a = extra; a && *a; a++)
        g_ptr_array_add(argv, g_strdup(*a));
    return argv;
}

/* Starts `virtiofsd <the same options> --upgrade` with its output in log. */
static pid_t start_upgrade(const char *const *extra, const char *log)
{
    GPtrArray *argv = daemon_argv(extra);
    g_ptr_array_add(argv, g_strdup("--upgrade"));
    g_ptr_array_add(argv, NULL);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        /* A test that fails must not leave the new daemon behind (as daemon.c's). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv((char *)argv->pdata[0], (char **)argv->pdata);
        _exit(127);
    }
    g_ptr_array_free(argv, TRUE);
    return pid;
}

static bool file_contains(const char *path, const char *needle)
{
    gchar *text = NULL;
    bool found = g_file_get_contents(path, &text, NULL, NULL) && strstr(text, needle);
    g_free(text);
    return found;
}

static void print_file(const char *what, const char *path)
{
    gchar *text = NULL;
    if (g_file_get_contents(path, &text, NULL, NULL))
        g_printerr("%s:\n%s\n", what, text);
    g_free(text);
}

/* ---- the load ---- */

static int fuse_ok(int ret, const struct fe_reply *r)
{
    return ret < 0 ? ret : r->error;
}

static void open_files(struct load *l)
{
    for (unsigned i = 0; i < NFILES; i++) {
        char name[8];
        snprintf(name, sizeof(name), "f%u", i);
        struct fuse_entry_out e;
        g_assert_cmpint(fe_lookup(l->fe, FUSE_ROOT_ID, name, &e), ==, 0);
        struct fuse_open_in oi = {.flags = O_RDWR};
        struct iovec in = {&oi, sizeof(oi)};
        struct fe_reply r;
        g_assert_cmpint(fuse_ok(fe_fuse(l->fe, 1, FUSE_OPEN, e.nodeid, &in, 1,
                                        sizeof(struct fuse_open_out), &r),
                                &r),
                        ==, 0);
        l->f[i].nodeid = e.nodeid;
        l->f[i].fh = ((struct fuse_open_out *)r.data)->fh;
    }
}

/* What one request of the load is; its check needs the same numbers. */
struct req {
    unsigned kind, file, q;
    uint64_t off;
    struct fe_pending p;
    /* The request's arguments: fe_fuse_send copies them into guest memory. */
    union {
        struct fuse_read_in rd;
        struct fuse_write_in wr;
        struct fuse_getattr_in ga;
    } in;
    char name[8];
};

enum { K_READ, K_WRITE, K_LOOKUP, K_GETATTR, K_KINDS };

static void send_req(struct load *l, struct req *q, uint8_t *wbuf)
{
    unsigned n = l->next++;
    q->kind = n % K_KINDS;
    q->file = (n / K_KINDS) % NFILES;
    q->q = 1 + n % QUEUES;
    const struct file *f = &l->f[q->file];
    struct iovec in[2];
    unsigned nin = 1;
    uint32_t op;
    size_t out;
    uint64_t node = f->nodeid;
    switch (q->kind) {
    case K_READ:
        q->off = (uint64_t)(n / K_KINDS / NFILES % (READ_AREA / BLOCK)) * BLOCK;
        q->in.rd = (struct fuse_read_in){.fh = f->fh, .offset = q->off, .size = BLOCK};
        in[0] = (struct iovec){&q->in.rd, sizeof(q->in.rd)};
        op = FUSE_READ;
        out = BLOCK;
        break;
    case K_WRITE:
        q->off = READ_AREA +
                 (uint64_t)(n / K_KINDS / NFILES % ((FILE_SIZE - READ_AREA) / BLOCK)) * BLOCK;
        l->written[q->file][(q->off - READ_AREA) / BLOCK] = true;
        memset(wbuf, write_byte(q->file, q->off), BLOCK);
        q->in.wr = (struct fuse_write_in){.fh = f->fh, .offset = q->off, .size = BLOCK};
        in[0] = (struct iovec){&q->in.wr, sizeof(q->in.wr)};
        in[1] = (struct iovec){wbuf, BLOCK};
        nin = 2;
        op = FUSE_WRITE;
        out = sizeof(struct fuse_write_out);
        break;
    case K_LOOKUP:
        snprintf(q->name, sizeof(q->name), "f%u", q->file);
        in[0] = (struct iovec){q->name, strlen(q->name) + 1};
        op = FUSE_LOOKUP;
        node = FUSE_ROOT_ID;
        out = sizeof(struct fuse_entry_out);
        break;
    default:
        q->in.ga = (struct fuse_getattr_in){.getattr_flags = FUSE_GETATTR_FH, .fh = f->fh};
        in[0] = (struct iovec){&q->in.ga, sizeof(q->in.ga)};
        op = FUSE_GETATTR;
        out = sizeof(struct fuse_attr_out);
        break;
    }
    g_assert_cmpint(fe_fuse_send(l->fe, q->q, op, node, in, nin, out, 1, &q->p), ==, 0);
    l->sent++;
}

static void check_reply(struct load *l, struct req *q)
{
    struct fe_reply r;
    int ret = fe_fuse_wait(l->fe, &q->p, REPLY_WAIT, &r);
    if (ret < 0 || r.error != 0)
        g_printerr("request kind %u on queue %u: %s / FUSE error %d\n", q->kind, q->q,
                   strerror(-ret), ret < 0 ? 0 : r.error);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    const struct file *f = &l->f[q->file];
    switch (q->kind) {
    case K_READ:
        g_assert_cmpuint(r.data_len, ==, BLOCK);
        for (unsigned i = 0; i < BLOCK; i++)
            if (r.data[i] != read_byte(q->file, q->off + i))
                g_error("file %u offset %llu: read 0x%02x", q->file,
                        (unsigned long long)(q->off + i), r.data[i]);
        break;
    case K_WRITE:
        g_assert_cmpuint(((struct fuse_write_out *)r.data)->size, ==, BLOCK);
        break;
    case K_LOOKUP:
        /* The same inode keeps its nodeid across the handover. */
        g_assert_cmpuint(((struct fuse_entry_out *)r.data)->nodeid, ==, f->nodeid);
        break;
    default:
        g_assert_cmpuint(((struct fuse_attr_out *)r.data)->attr.size, ==, FILE_SIZE);
        break;
    }
    l->answered++;
}

/* One round: ROUND requests, FE_MAX_PENDING of them in flight at any time over QUEUES queues;
 * all answered before it ends. */
static void run_round(struct load *l)
{
    static struct req reqs[FE_MAX_PENDING];
    static uint8_t wbuf[FE_MAX_PENDING][BLOCK];
    size_t mark = fe_alloc_mark(l->fe);
    unsigned head = 0, inflight = 0;
    for (unsigned sent = 0; sent < ROUND || inflight;) {
        if (sent < ROUND && inflight < FE_MAX_PENDING) {
            unsigned slot = (head + inflight) % FE_MAX_PENDING;
            send_req(l, &reqs[slot], wbuf[slot]);
            inflight++;
            sent++;
            continue;
        }
        check_reply(l, &reqs[head]);
        head = (head + 1) % FE_MAX_PENDING;
        inflight--;
    }
    fe_alloc_release(l->fe, mark);
}

/* Nothing more in any used ring: every request was answered exactly once. */
static void assert_rings_quiet(struct load *l)
{
    for (unsigned q = 1; q <= QUEUES; q++) {
        uint16_t head;
        uint32_t len;
        g_assert_cmpint(fe_vq_take_used(l->fe, q, &head, &len), ==, -EAGAIN);
    }
}

/* The connection is still the one the front-end opened, and served. */
static void assert_connected(struct load *l)
{
    uint64_t features = 0;
    g_assert_cmpint(fe_vu_get_u64(l->fe, FE_VU_GET_FEATURES, &features), ==, 0);
    g_assert_cmpuint(features, !=, 0);
}

/* ---- in-flight tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) ---- */

#define PROTOCOL_F_INFLIGHT_SHMFD 12
#define VU_GET_INFLIGHT_FD        31
#define VU_SET_INFLIGHT_FD        32

struct inflight_msg {
    uint64_t mmap_size, mmap_offset;
    uint16_t num_queues, queue_size;
    uint16_t padding[2];
};

/* GET_INFLIGHT_FD's reply carries the area's fd. */
static int recv_inflight_reply(struct fe *fe, struct inflight_msg *m)
{
    struct {
        uint32_t request, flags, size;
        struct inflight_msg m;
    } __attribute__((packed)) r;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&r, sizeof(r)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control,
                        .msg_controllen = sizeof(control)};
    g_assert_cmpint(recvmsg(fe_socket(fe), &mh, MSG_CMSG_CLOEXEC), ==, sizeof(r));
    g_assert_cmpuint(r.request, ==, VU_GET_INFLIGHT_FD);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    g_assert_nonnull(c);
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(fd));
    *m = r.m;
    return fd;
}

/* As cloud-hypervisor does at activation: the area from GET_INFLIGHT_FD handed back with
 * SET_INFLIGHT_FD; the queues go on once a ring message follows. */
static void enable_inflight(struct load *l)
{
    struct inflight_msg m = {.num_queues = 1 + QUEUES, .queue_size = fe_vq_size(l->fe, 1)};
    g_assert_cmpint(fe_vu_send(l->fe, VU_GET_INFLIGHT_FD, 0, &m, sizeof(m), NULL, 0), ==, 0);
    int fd = recv_inflight_reply(l->fe, &m);
    g_assert_cmpuint(m.mmap_size, >, 0);
    g_assert_cmpint(fe_vu_ack(l->fe, VU_SET_INFLIGHT_FD, &m, sizeof(m), &fd, 1), ==, 0);
    l->inflight_fd = fd;
    l->inflight_size = m.mmap_size;
    for (unsigned q = 0; q <= QUEUES; q++) {
        struct vhost_vring_state_msg {
            uint32_t index, num;
        } st = {q, 1};
        g_assert_cmpint(fe_vu_ack(l->fe, FE_VU_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0), ==, 0);
    }
}

static void load_open_with(struct load *l, enum fe_profile profile, bool inflight)
{
    *l = (struct load){.inflight_fd = -1};
    struct fe_config cfg = {.socket_path = daemon_.socket,
                            .request_queues = QUEUES,
                            .profile = profile,
                            .protocol_features = inflight ? 1ull << PROTOCOL_F_INFLIGHT_SHMFD : 0};
    g_assert_cmpint(fe_open_retry(&cfg, &l->fe, 2000), ==, 0);
    if (inflight)
        enable_inflight(l);
    g_assert_cmpint(fe_fuse_init(l->fe), ==, 0);
    open_files(l);
}

static void load_open(struct load *l, enum fe_profile profile)
{
    load_open_with(l, profile, false);
}

static unsigned cycles(void)
{
    const char *env = getenv("VIRTIOFSD_UPGRADE_CYCLES");
    int n = env ? atoi(env) : 50;
    return n > 0 ? (unsigned)n : 1;
}

/* How long a handover may take, the new process's start-up included, on a loaded machine: by
 * the clock, not in rounds, which a fast front-end runs through in no time. */
#define HANDOVER_LIMIT_US (60 * G_USEC_PER_SEC)

/* Waits for pid's exit while the load goes on; its exit status. */
static int run_until_exit(struct load *l, pid_t pid, const char *new_log)
{
    for (gint64 until = g_get_monotonic_time() + HANDOVER_LIMIT_US;
         g_get_monotonic_time() < until;) {
        run_round(l);
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    print_file("old daemon log", daemon_.log);
    print_file("new daemon log", new_log);
    g_error("the old daemon did not exit");
    return -1;
}

/* One handover under load: the old daemon exits with 0, the new one serves. */
static void upgrade_once(struct load *l, const char *const *extra, unsigned n)
{
    char *log = g_strdup_printf("%s/upgrade-%u.log", daemon_.dir, n);
    pid_t old = daemon_.pid;
    pid_t fresh = start_upgrade(extra, log);
    int status = run_until_exit(l, old, log);
    if (status != 0) {
        print_file("old daemon log", daemon_.log);
        print_file("new daemon log", log);
    }
    g_assert_cmpint(status, ==, 0);
    /* A few rounds served by the new process alone. */
    for (int i = 0; i < 3; i++)
        run_round(l);
    /* Logged once its queues started: it may lag behind their first replies. */
    for (int w = 0; w < 200 && !file_contains(log, "upgrade: took over"); w++)
        g_usleep(10000);
    if (!file_contains(log, "upgrade: took over")) {
        print_file("old daemon log", daemon_.log);
        print_file("new daemon log", log);
    }
    g_assert_true(file_contains(log, "upgrade: took over"));
    g_assert_false(file_contains(log, "FUSE_INIT"));
    g_assert_true(kill(fresh, 0) == 0);
    /* The new daemon is the one to stop (and whose log to show) from now on. */
    daemon_.pid = fresh;
    g_free(daemon_.log);
    daemon_.log = log;
}

/* The host files hold what was written (each block always gets the same bytes). */
static void check_host_writes(const struct load *l)
{
    for (unsigned i = 0; i < NFILES; i++) {
        char name[8];
        snprintf(name, sizeof(name), "f%u", i);
        char *p = host_path(name);
        gchar *data = NULL;
        gsize len = 0;
        g_assert_true(g_file_get_contents(p, &data, &len, NULL));
        g_assert_cmpuint(len, ==, FILE_SIZE);
        for (uint64_t o = 0; o < FILE_SIZE; o++) {
            bool written = o >= READ_AREA && l->written[i][(o - READ_AREA) / BLOCK];
            g_assert_cmpuint((uint8_t)data[o], ==, written ? write_byte(i, o) : read_byte(i, o));
        }
        g_free(data);
        g_free(p);
    }
}

/*
 * With tracking, the last process went on with the area it took over: each request queue's
 * region (the spec's layout, regions 64-byte aligned) follows its ring's used index, and no
 * head is left marked in flight.
 */
static void assert_tracked(struct load *l)
{
    uint8_t *a = mmap(NULL, l->inflight_size, PROT_READ, MAP_SHARED, l->inflight_fd, 0);
    g_assert_true(a != MAP_FAILED);
    unsigned num = fe_vq_size(l->fe, 1);
    size_t region = (16 + (size_t)num * 16 + 63) / 64 * 64;
    for (unsigned q = 1; q <= QUEUES; q++) {
        const uint8_t *r = a + q * region;
        uint16_t version, desc_num, used_idx;
        memcpy(&version, r + 8, 2);
        memcpy(&desc_num, r + 10, 2);
        memcpy(&used_idx, r + 14, 2);
        g_assert_cmpuint(version, ==, 1);
        g_assert_cmpuint(desc_num, ==, num);
        g_assert_cmpuint(used_idx, ==, fe_vq_used(l->fe, q)->idx);
        for (unsigned d = 0; d < num; d++)
            g_assert_cmpuint(r[16 + d * 16], ==, 0);
    }
    munmap(a, l->inflight_size);
    close(l->inflight_fd);
}

static void under_load(enum fe_profile profile, bool inflight)
{
    const char *const args[] = {NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open_with(&l, profile, inflight);
    run_round(&l);
    unsigned n = cycles();
    for (unsigned i = 0; i < n; i++) {
        upgrade_once(&l, args, i);
        assert_connected(&l);
    }
    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    check_host_writes(&l);
    g_test_message("%u handovers, %lu requests answered", n, l.answered);
    if (inflight)
        assert_tracked(&l);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

static void test_qemu_under_load(void)
{
    under_load(FE_PROFILE_QEMU, false);
}

static void test_ch_under_load(void)
{
    under_load(FE_PROFILE_CLOUD_HYPERVISOR, false);
}

static void test_inflight_under_load(void)
{
    under_load(FE_PROFILE_CLOUD_HYPERVISOR, true);
}

/* ---- refused requests ---- */

static int connect_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    g_strlcpy(addr.sun_path, daemon_.socket, sizeof(addr.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    return fd;
}

/* The daemon closes fd (reads EOF) within a few seconds, without answering anything. */
static void assert_closed_unanswered(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64];
    /* EOF, or a reset when the daemon closed with our bytes unread; never an answer or a
     * timeout. */
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0)
        g_assert_cmpint(errno, ==, ECONNRESET);
    else
        g_assert_cmpint(n, ==, 0);
    close(fd);
}

struct hello_msg {
    uint32_t request, flags, size;
    char magic[8];
    uint32_t version, pid;
} __attribute__((packed));

#define HO_HELLO   0x55504701u
#define HO_VERSION 3 /* handover.h's HANDOVER_VERSION */

static void send_hello(int fd, const char *magic, uint32_t version)
{
    struct hello_msg m = {HO_HELLO, 1, 16, {0}, version, (uint32_t)getpid()};
    memcpy(m.magic, magic, 8);
    g_assert_cmpint(write(fd, &m, sizeof(m)), ==, sizeof(m));
}

static void test_refused(void)
{
    const char *const args[] = {NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open(&l, FE_PROFILE_QEMU);
    run_round(&l);

    /* Garbage where the request should be. */
    int fd = connect_socket();
    g_assert_cmpint(write(fd, "garbage, not a vhost-user message at all", 40), ==, 40);
    assert_closed_unanswered(fd);
    run_round(&l);
    /* The request's header with a wrong magic, and with another version. */
    fd = connect_socket();
    send_hello(fd, "NOTMAGIC", 1);
    assert_closed_unanswered(fd);
    fd = connect_socket();
    send_hello(fd, "VFSUPGRD", 99);
    assert_closed_unanswered(fd);
    g_assert_true(test_daemon_log_contains(&daemon_, "handover version 99"));
    run_round(&l);

    /* From another uid (root may take over; anybody else with access to the socket not). */
    if (geteuid() == 0) {
        g_assert_cmpint(chmod(daemon_.dir, 0755), ==, 0);
        g_assert_cmpint(chmod(daemon_.socket, 0777), ==, 0);
        pid_t child = fork();
        g_assert_cmpint(child, >=, 0);
        if (child == 0) {
            if (setgid(65534) < 0 || setuid(65534) < 0)
                _exit(2);
            int cfd = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un addr = {.sun_family = AF_UNIX};
            g_strlcpy(addr.sun_path, daemon_.socket, sizeof(addr.sun_path));
            if (connect(cfd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
                _exit(3);
            struct hello_msg m = {HO_HELLO, 1, 16, "VFSUPGRD", HO_VERSION, (uint32_t)getpid()};
            if (write(cfd, &m, sizeof(m)) != sizeof(m))
                _exit(4);
            char b;
            ssize_t got = read(cfd, &b, 1);
            _exit(got == 0 || (got < 0 && errno == ECONNRESET) ? 0 : 5); /* closed, unanswered */
        }
        int status;
        g_assert_cmpint(waitpid(child, &status, 0), ==, child);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        g_assert_true(test_daemon_log_contains(&daemon_, "neither ours"));
    }
    run_round(&l);
    assert_connected(&l);
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_false(test_daemon_log_contains(&daemon_, "will take over"));
    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* ---- a new process that goes away or fails, played at the protocol level ----
 *
 * The test is the new process: each step it stops at is exact, whatever the timing of the
 * daemon. The old daemon must go on serving after each, with no error for the front-end,
 * and answer every request once: those it had in flight when it stopped its queues, those
 * sent while they stood still, and a SETLKW that waits across it all.
 */

enum {
    HO_WELCOME = HO_HELLO + 1,
    HO_START,
    HO_PACKAGE,
    HO_FDS,
    HO_READY,
};

struct ho_hdr {
    uint32_t request, flags, size;
} __attribute__((packed));

/* handover.c's PACKAGE layout, as far as the test reads it. */
#define PKG_N_FDS    12
#define PKG_NREGIONS 56
#define PKG_NQUEUES  60
#define PKG_SIZE     112
#define REGION_SIZE  40
#define QUEUE_SIZE   64
#define QUEUE_N_OUT  56

/* Exactly len bytes from fd (a 10 s timeout is set); the fds that come with them are closed
 * and counted in *nfds. */
static void ho_read(int fd, void *buf, size_t len, unsigned *nfds)
{
    size_t done = 0;
    while (done < len) {
        char control[CMSG_SPACE(253 * sizeof(int))];
        struct iovec iov = {(uint8_t *)buf + done, len - done};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control,
                            .msg_controllen = sizeof(control)};
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n <= 0)
            g_error("handover control socket: %s", n < 0 ? strerror(errno) : "closed");
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            unsigned count = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (unsigned i = 0; i < count; i++) {
                int got;
                memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                close(got);
            }
            *nfds += count;
        }
        done += (size_t)n;
    }
}

static void ho_send(int fd, uint32_t request, const void *payload, uint32_t size)
{
    struct ho_hdr h = {request, 1, size};
    g_assert_cmpint(write(fd, &h, sizeof(h)), ==, sizeof(h));
    if (size)
        g_assert_cmpint(write(fd, payload, size), ==, (ssize_t)size);
}

/* HELLO, and the old daemon's WELCOME: the control socket. */
static int fake_new_hello(void)
{
    int fd = connect_socket();
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    send_hello(fd, "VFSUPGRD", HO_VERSION);
    struct ho_hdr h;
    char welcome[16];
    unsigned nfds = 0;
    ho_read(fd, &h, sizeof(h), &nfds);
    g_assert_cmpuint(h.request, ==, HO_WELCOME);
    g_assert_cmpuint(h.size, ==, sizeof(welcome));
    ho_read(fd, welcome, sizeof(welcome), &nfds);
    g_assert_cmpint(memcmp(welcome, "VFSUPGRD", 8), ==, 0);
    /* The listening socket and the lock file (handover version 3). */
    g_assert_cmpuint(nfds, ==, 2);
    return fd;
}

/* START, then the whole package (its fds closed): the heads out of queue q, in out[] (room
 * for 8); their number. The old daemon has stopped its queues when PACKAGE comes. */
static unsigned fake_new_start(int fd, unsigned q, uint16_t *out)
{
    ho_send(fd, HO_START, NULL, 0);
    struct ho_hdr h;
    unsigned nfds = 0;
    ho_read(fd, &h, sizeof(h), &nfds);
    g_assert_cmpuint(h.request, ==, HO_PACKAGE);
    g_assert_cmpuint(h.size, >=, PKG_SIZE);
    uint8_t *pkg = g_malloc(h.size);
    ho_read(fd, pkg, h.size, &nfds);
    g_assert_cmpuint(nfds, ==, 0);
    uint32_t want_fds, nregions, nqueues, n_out = 0;
    memcpy(&want_fds, pkg + PKG_N_FDS, 4);
    memcpy(&nregions, pkg + PKG_NREGIONS, 4);
    memcpy(&nqueues, pkg + PKG_NQUEUES, 4);
    g_assert_cmpuint(nqueues, >, q);
    const uint8_t *queues = pkg + PKG_SIZE + nregions * REGION_SIZE;
    size_t heads = PKG_SIZE + nregions * REGION_SIZE + nqueues * QUEUE_SIZE;
    for (unsigned i = 0; i < nqueues; i++) {
        uint32_t n;
        memcpy(&n, queues + i * QUEUE_SIZE + QUEUE_N_OUT, 4);
        if (i == q) {
            g_assert_cmpuint(n, <=, 8);
            memcpy(out, pkg + heads, n * sizeof(uint16_t));
            n_out = n;
        }
        heads += n * sizeof(uint16_t);
    }
    g_assert_cmpuint(heads, ==, h.size);
    g_free(pkg);
    while (nfds < want_fds) {
        uint32_t count;
        unsigned before = nfds;
        ho_read(fd, &h, sizeof(h), &nfds);
        g_assert_cmpuint(h.request, ==, HO_FDS);
        g_assert_cmpuint(h.size, ==, sizeof(count));
        ho_read(fd, &count, sizeof(count), &nfds);
        g_assert_cmpuint(nfds - before, ==, count);
    }
    g_assert_cmpuint(nfds, ==, want_fds);
    return n_out;
}

enum fake_end {
    END_AFTER_HELLO,  /* goes away before asking to start */
    END_AFTER_START,  /* goes away with the package, before READY */
    END_READY_FAILED, /* READY with an error */
};

/* A SETLKW that waits for a lock a host process holds (on the test's own open file). */
struct host_lock_wait {
    uint64_t nodeid, fh;
    int host_fd;
    bool flock_lock;
    struct fuse_lk_in in;
    struct fe_pending p;
};

#define LOCK_OWNER 0x10c4ULL
#define LOCK_PID   4242
#define LOCK_Q     1

static void open_guest_file(struct load *l, const char *name, uint64_t *nodeid, uint64_t *fh)
{
    /* Created in place, once: a file replaced by rename would leave the daemon an unlinked
     * inode, which a handover cannot save. */
    char *p = host_path(name);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(l->fe, FUSE_ROOT_ID, name, &e), ==, 0);
    struct fuse_open_in oi = {.flags = O_RDWR};
    struct iovec in = {&oi, sizeof(oi)};
    struct fe_reply r;
    g_assert_cmpint(
        fuse_ok(fe_fuse(l->fe, 1, FUSE_OPEN, e.nodeid, &in, 1, sizeof(struct fuse_open_out), &r),
                &r),
        ==, 0);
    *nodeid = e.nodeid;
    *fh = ((struct fuse_open_out *)r.data)->fh;
}

/* The host takes name's lock (POSIX: an OFD write lock; or flock) and the guest waits for it
 * on queue q. */
static void lock_wait_start(struct load *l, struct host_lock_wait *w, const char *name,
                            bool flock_lock, unsigned q)
{
    *w = (struct host_lock_wait){.flock_lock = flock_lock};
    open_guest_file(l, name, &w->nodeid, &w->fh);
    char *p = host_path(name);
    w->host_fd = open(p, O_RDWR | O_CLOEXEC);
    g_free(p);
    g_assert_cmpint(w->host_fd, >=, 0);
    if (flock_lock) {
        g_assert_cmpint(flock(w->host_fd, LOCK_EX | LOCK_NB), ==, 0);
    } else {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        g_assert_cmpint(fcntl(w->host_fd, F_OFD_SETLK, &fl), ==, 0);
    }
    w->in =
        (struct fuse_lk_in){.fh = w->fh,
                            .owner = LOCK_OWNER,
                            .lk = {.start = 0, .end = INT64_MAX, .type = F_WRLCK, .pid = LOCK_PID},
                            .lk_flags = flock_lock ? FUSE_LK_FLOCK : 0};
    struct iovec iov = {&w->in, sizeof(w->in)};
    g_assert_cmpint(fe_fuse_send(l->fe, q, FUSE_SETLKW, w->nodeid, &iov, 1, 0, LOCK_PID, &w->p), ==,
                    0);
    l->sent++;
}

/* The wait's reply: its FUSE error, or -ETIMEDOUT. */
static int lock_wait_result(struct load *l, struct host_lock_wait *w, int timeout_ms)
{
    struct fe_reply r;
    int ret = fe_fuse_wait(l->fe, &w->p, timeout_ms, &r);
    return ret < 0 ? ret : r.error;
}

/* The host lets go: the guest's wait ends with the lock (once: checked by the caller's
 * assert_rings_quiet), which the host then sees held. */
static void lock_wait_finish(struct load *l, struct host_lock_wait *w)
{
    g_assert_cmpint(lock_wait_result(l, w, 300), ==, -ETIMEDOUT);
    close(w->host_fd); /* drops the host's lock, POSIX (OFD) or flock */
    g_assert_cmpint(lock_wait_result(l, w, REPLY_WAIT), ==, 0);
    l->answered++;
    char *p = host_path(w->flock_lock ? "flock-wait" : "posix-wait");
    int fd = open(p, O_RDWR | O_CLOEXEC);
    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    if (w->flock_lock) {
        g_assert_cmpint(flock(fd, LOCK_EX | LOCK_NB), ==, -1);
        g_assert_cmpint(errno, ==, EWOULDBLOCK);
    } else {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
        g_assert_cmpint(fl.l_type, ==, F_WRLCK);
    }
    close(fd);
    /* The guest's close: its POSIX locks go with FLUSH, the flock with RELEASE. */
    struct fuse_release_in ri = {.fh = w->fh,
                                 .lock_owner = LOCK_OWNER,
                                 .release_flags = w->flock_lock ? FUSE_RELEASE_FLOCK_UNLOCK : 0};
    struct iovec iov = {&ri, sizeof(ri)};
    struct fe_reply r;
    if (!w->flock_lock) {
        struct fuse_flush_in fi = {.fh = w->fh, .lock_owner = LOCK_OWNER};
        struct iovec fiov = {&fi, sizeof(fi)};
        g_assert_cmpint(fuse_ok(fe_fuse(l->fe, 1, FUSE_FLUSH, w->nodeid, &fiov, 1, 0, &r), &r), ==,
                        0);
    }
    g_assert_cmpint(fuse_ok(fe_fuse(l->fe, 1, FUSE_RELEASE, w->nodeid, &iov, 1, 0, &r), &r), ==, 0);
}

/* Requests in flight on every request queue while the old daemon stops them: sent, not
 * collected (check_reply collects them later). */
static void send_some(struct load *l, struct req *reqs, uint8_t (*wbuf)[BLOCK], unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        send_req(l, &reqs[i], wbuf[i]);
}

static void fake_new(struct load *l, enum fake_end how, const struct host_lock_wait *w)
{
    static struct req reqs[2 * QUEUES];
    static uint8_t wbuf[2 * QUEUES][BLOCK];
    size_t mark = fe_alloc_mark(l->fe);
    send_some(l, reqs, wbuf, QUEUES); /* in flight when the queues stop */
    int fd = fake_new_hello();
    if (how != END_AFTER_HELLO) {
        uint16_t out[8];
        unsigned n = fake_new_start(fd, LOCK_Q, out);
        /* The waiting SETLKW is the one head out on its queue: its wait goes on, unanswered. */
        g_assert_cmpuint(n, ==, 1);
        g_assert_cmpuint(out[0], ==, w->p.head);
        /* Sent while the queues stand still (nothing is answered meanwhile): answered once
         * they go again. */
        uint16_t used[1 + QUEUES];
        for (unsigned q = 1; q <= QUEUES; q++)
            used[q] = __atomic_load_n(&fe_vq_used(l->fe, q)->idx, __ATOMIC_ACQUIRE);
        send_some(l, reqs + QUEUES, wbuf + QUEUES, QUEUES);
        g_usleep(100000);
        for (unsigned q = 1; q <= QUEUES; q++)
            g_assert_cmpuint(__atomic_load_n(&fe_vq_used(l->fe, q)->idx, __ATOMIC_ACQUIRE), ==,
                             used[q]);
        if (how == END_READY_FAILED) {
            int32_t status = -EIO;
            ho_send(fd, HO_READY, &status, sizeof(status));
            /* The old daemon does not answer: it closes the control socket. */
            char b;
            g_assert_cmpint(read(fd, &b, 1), ==, 0);
        }
    }
    close(fd);
    unsigned sent = how == END_AFTER_HELLO ? QUEUES : 2 * QUEUES;
    for (unsigned i = 0; i < sent; i++)
        check_reply(l, &reqs[i]);
    fe_alloc_release(l->fe, mark);
}

static void test_new_goes_away(void)
{
    const char *const args[] = {"--sandbox=none", NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open(&l, FE_PROFILE_CLOUD_HYPERVISOR);
    static struct host_lock_wait w;
    lock_wait_start(&l, &w, "posix-wait", false, LOCK_Q);
    run_round(&l);
    static const char *const logged[] = {
        [END_AFTER_HELLO] = "went away before taking over",
        [END_AFTER_START] = "did not take over",
        [END_READY_FAILED] = "the new process failed",
    };
    for (unsigned how = END_AFTER_HELLO; how <= END_READY_FAILED; how++) {
        fake_new(&l, how, &w);
        for (int i = 0; i < 200 && !test_daemon_log_contains(&daemon_, logged[how]); i++)
            g_usleep(10000);
        g_assert_true(test_daemon_log_contains(&daemon_, logged[how]));
        for (int r = 0; r < 3; r++)
            run_round(&l);
        g_assert_true(test_daemon_alive(&daemon_));
        assert_connected(&l);
        /* The lock wait goes on in the old daemon. */
        g_assert_cmpint(lock_wait_result(&l, &w, 10), ==, -ETIMEDOUT);
    }
    /* It ends there, with success, once. */
    lock_wait_finish(&l, &w);
    run_round(&l);
    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    check_host_writes(&l);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/*
 * A real new process killed before it could ask to start, made exact by stopping the old
 * daemon first: the new one connects and sends HELLO (the listening socket's backlog takes
 * the connection), then waits for the WELCOME the stopped daemon cannot send, and is killed
 * there (or a little earlier: the outcome is the same). The old daemon, continued, finds a
 * connection whose sender is gone, and goes on serving.
 */
static void test_new_killed(void)
{
    const char *const args[] = {"--sandbox=none", NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open(&l, FE_PROFILE_CLOUD_HYPERVISOR);
    run_round(&l);
    char *log = g_strdup_printf("%s/killed.log", daemon_.dir);
    g_assert_cmpint(kill(daemon_.pid, SIGSTOP), ==, 0);
    pid_t fresh = start_upgrade(args, log);
    /* It connects right after this line; whatever it got to, it cannot get past WELCOME. */
    for (int i = 0; i < 1000 && !file_contains(log, "start-up: socket and lock"); i++)
        g_usleep(10000);
    g_assert_true(file_contains(log, "start-up: socket and lock"));
    g_usleep(200000);
    g_assert_false(file_contains(log, "agreed to hand over"));
    g_assert_cmpint(kill(fresh, SIGKILL), ==, 0);
    int status;
    g_assert_cmpint(waitpid(fresh, &status, 0), ==, fresh);
    g_assert_cmpint(kill(daemon_.pid, SIGCONT), ==, 0);
    for (int r = 0; r < 5; r++)
        run_round(&l);
    g_assert_true(test_daemon_alive(&daemon_));
    assert_connected(&l);
    g_assert_false(test_daemon_log_contains(&daemon_, "going on serving"));
    /* And a real upgrade still works afterwards. */
    upgrade_once(&l, args, 100);
    run_round(&l);
    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    check_host_writes(&l);
    g_free(log);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* ---- a lock wait across a handover ---- */

/*
 * A guest process blocked in F_SETLKW and one in flock(LOCK_EX), on locks host processes hold,
 * while the daemon is upgraded: neither is answered by the old process (no EINTR, which the
 * guest's kernel turns into ERESTARTSYS, errno 512 for the application); the new process
 * serves both again and answers each once, with success, when the host lets go.
 */
static void lock_wait_across(bool inflight)
{
    const char *const args[] = {NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open_with(&l, inflight ? FE_PROFILE_CLOUD_HYPERVISOR : FE_PROFILE_QEMU, inflight);
    static struct host_lock_wait posix, fl;
    lock_wait_start(&l, &posix, "posix-wait", false, 1);
    lock_wait_start(&l, &fl, "flock-wait", true, 2);
    run_round(&l);
    g_assert_cmpint(lock_wait_result(&l, &posix, 10), ==, -ETIMEDOUT);
    g_assert_cmpint(lock_wait_result(&l, &fl, 10), ==, -ETIMEDOUT);
    upgrade_once(&l, args, 0);
    run_round(&l);
    lock_wait_finish(&l, &posix);
    lock_wait_finish(&l, &fl);
    /* Without an in-flight area the heads came with the package. */
    if (!inflight)
        g_assert_true(
            file_contains(daemon_.log, "queue 2: 1 requests the old process left waiting"));
    /* And once more, with the waits ending in the second new process. */
    lock_wait_start(&l, &posix, "posix-wait", false, 3);
    lock_wait_start(&l, &fl, "flock-wait", true, 3);
    upgrade_once(&l, args, 1);
    lock_wait_finish(&l, &fl);
    lock_wait_finish(&l, &posix);
    run_round(&l);
    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    check_host_writes(&l);
    if (inflight)
        assert_tracked(&l);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

static void test_lock_wait(void)
{
    lock_wait_across(false);
}

static void test_lock_wait_inflight(void)
{
    lock_wait_across(true);
}

/* A new process that fails after the old one stopped its queues (a share it cannot open:
 * its start-up fails before it asks to start; one whose queue count differs: after). */
static void test_new_fails(void)
{
    const char *const args[] = {"--sandbox=none", NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open(&l, FE_PROFILE_QEMU);
    run_round(&l);
    char *log = g_strdup_printf("%s/fails.log", daemon_.dir);
    const char *const other[] = {"--sandbox=none", "--num-request-queues=2", NULL};
    pid_t fresh = start_upgrade(other, log);
    int status = -1;
    for (gint64 until = g_get_monotonic_time() + HANDOVER_LIMIT_US;
         g_get_monotonic_time() < until;) {
        run_round(&l);
        if (waitpid(fresh, &status, WNOHANG) == fresh)
            break;
    }
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    g_assert_true(file_contains(log, "--num-request-queues must stay the same"));
    for (int r = 0; r < 5; r++)
        run_round(&l);
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_true(test_daemon_log_contains(&daemon_, "the new process failed"));
    assert_connected(&l);
    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    g_free(log);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* ---- a file the guest holds that has no name on the host ---- */

/* The serving daemon's fds open on a file whose name (as its /proc/PID/fd shows it) ends in
 * suffix. */
static unsigned daemon_fds_on(const char *suffix)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)test_daemon_serving_pid(&daemon_));
    GDir *d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    unsigned n = 0;
    for (const char *e; (e = g_dir_read_name(d));) {
        char link[4096];
        char *p = g_build_filename(dir, e, NULL);
        ssize_t len = readlink(p, link, sizeof(link) - 1);
        g_free(p);
        if (len < 0)
            continue;
        link[len] = '\0';
        n += g_str_has_suffix(link, suffix);
    }
    g_dir_close(d);
    return n;
}

/* One request outside the load, on queue 1: its FUSE error; the reply's payload (up to
 * out_size bytes) into out. */
static int call(struct fe *fe, uint32_t op, uint64_t nodeid, const void *arg, size_t len,
                const void *data, size_t data_len, void *out, size_t out_size)
{
    size_t mark = fe_alloc_mark(fe);
    struct iovec in[2] = {{(void *)arg, len}, {(void *)data, data_len}};
    struct fe_reply r;
    int ret = fe_fuse(fe, 1, op, nodeid, in, data_len ? 2 : 1, out_size, &r);
    if (ret == 0 && r.error == 0 && out)
        memcpy(out, r.data, r.data_len < out_size ? r.data_len : out_size);
    fe_alloc_release(fe, mark);
    return ret < 0 ? ret : r.error;
}

static int read_held(struct fe *fe, uint64_t nodeid, uint64_t fh, char *buf, size_t size)
{
    struct fuse_read_in in = {.fh = fh, .size = (uint32_t)size - 1};
    memset(buf, 0, size);
    return call(fe, FUSE_READ, nodeid, &in, sizeof(in), NULL, 0, buf, size - 1);
}

/*
 * The guest holds a file it unlinked: open (an fh), and in the gap between UNLINK and FORGET
 * (a nodeid). Without in-flight tracking no hidden name keeps it in the share, so the session
 * state has no path for it; the handover passes its fd instead, and every upgrade under load
 * goes through. Afterwards the fh still reads and writes, GETATTR shows nlink 0, and RELEASE
 * and FORGET free the file on the host (no daemon fd holds it any more).
 */
static void unlinked_held(const char *const *args, bool handles)
{
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    char *held_path = host_path("held.txt"), *gap_path = host_path("gap.txt");
    g_assert_true(g_file_set_contents(held_path, "held data", -1, NULL));
    g_assert_true(g_file_set_contents(gap_path, "gap", -1, NULL));
    struct load l;
    load_open(&l, FE_PROFILE_QEMU);
    struct fuse_entry_out held, gap;
    g_assert_cmpint(fe_lookup(l.fe, FUSE_ROOT_ID, "held.txt", &held), ==, 0);
    g_assert_cmpint(fe_lookup(l.fe, FUSE_ROOT_ID, "gap.txt", &gap), ==, 0);
    struct fuse_open_in oi = {.flags = O_RDWR};
    struct fuse_open_out oo;
    g_assert_cmpint(call(l.fe, FUSE_OPEN, held.nodeid, &oi, sizeof(oi), NULL, 0, &oo, sizeof(oo)),
                    ==, 0);
    g_assert_cmpint(call(l.fe, FUSE_UNLINK, FUSE_ROOT_ID, "held.txt", 9, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(call(l.fe, FUSE_UNLINK, FUSE_ROOT_ID, "gap.txt", 8, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(access(held_path, F_OK), <, 0);
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out ao;
    if (handles) /* nothing holds gap.txt on the host: it is gone already */
        g_assert_cmpint(
            call(l.fe, FUSE_GETATTR, gap.nodeid, &gi, sizeof(gi), NULL, 0, &ao, sizeof(ao)), ==,
            -ESTALE);
    run_round(&l);

    char buf[64];
    for (unsigned i = 0; i < 3; i++) {
        upgrade_once(&l, args, i);
        g_assert_false(test_daemon_log_contains(&daemon_, "saving the session state failed"));
        g_assert_cmpint(read_held(l.fe, held.nodeid, oo.fh, buf, sizeof(buf)), ==, 0);
        g_assert_cmpstr(buf, ==, i == 0 ? "held data" : "held DATA");
        struct fuse_write_in wi = {.fh = oo.fh, .offset = 5, .size = 4};
        struct fuse_write_out wo;
        g_assert_cmpint(
            call(l.fe, FUSE_WRITE, held.nodeid, &wi, sizeof(wi), "DATA", 4, &wo, sizeof(wo)), ==,
            0);
        g_assert_cmpuint(wo.size, ==, 4);
        g_assert_cmpint(read_held(l.fe, held.nodeid, oo.fh, buf, sizeof(buf)), ==, 0);
        g_assert_cmpstr(buf, ==, "held DATA");
    }
    g_assert_cmpint(
        call(l.fe, FUSE_GETATTR, held.nodeid, &gi, sizeof(gi), NULL, 0, &ao, sizeof(ao)), ==, 0);
    g_assert_cmpuint(ao.attr.nlink, ==, 0);
    g_assert_cmpuint(ao.attr.ino, ==, held.attr.ino);
    g_assert_cmpuint(daemon_fds_on("/held.txt (deleted)"), >=, 1);
    if (handles) {
        /* A handle-only inode: gone since its UNLINK (ESTALE above); it went over as lost
         * instead of refusing the upgrade, and answers EIO. */
        g_assert_cmpint(
            call(l.fe, FUSE_GETATTR, gap.nodeid, &gi, sizeof(gi), NULL, 0, &ao, sizeof(ao)), ==,
            -EIO);
        g_assert_true(test_daemon_log_contains(&daemon_, "migration: session state loaded"));
    } else {
        g_assert_cmpint(
            call(l.fe, FUSE_GETATTR, gap.nodeid, &gi, sizeof(gi), NULL, 0, &ao, sizeof(ao)), ==, 0);
        g_assert_cmpuint(ao.attr.nlink, ==, 0);
        g_assert_cmpuint(daemon_fds_on("/gap.txt (deleted)"), ==, 1);
    }

    /* RELEASE and FORGET: the daemon lets go of both files. */
    struct fuse_release_in ri = {.fh = oo.fh};
    g_assert_cmpint(call(l.fe, FUSE_RELEASE, held.nodeid, &ri, sizeof(ri), NULL, 0, NULL, 0), ==,
                    0);
    struct fuse_forget_in fi = {.nlookup = 1};
    struct iovec iov = {&fi, sizeof(fi)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(l.fe, 0, FUSE_FORGET, held.nodeid, &iov, 1, 0, &r), ==, 0);
    g_assert_cmpint(fe_fuse(l.fe, 0, FUSE_FORGET, gap.nodeid, &iov, 1, 0, &r), ==, 0);
    run_round(&l); /* the FORGETs were taken before these answered */
    for (int w = 0; w < 200 && daemon_fds_on(" (deleted)") > 0; w++)
        g_usleep(10000); /* an inode's fd is closed after an RCU grace period */
    g_assert_cmpuint(daemon_fds_on("/held.txt (deleted)"), ==, 0);
    g_assert_cmpuint(daemon_fds_on("/gap.txt (deleted)"), ==, 0);
    g_assert_cmpint(call(l.fe, FUSE_GETATTR, gap.nodeid, &gi, sizeof(gi), NULL, 0, &ao, sizeof(ao)),
                    !=, 0);

    assert_rings_quiet(&l);
    g_assert_cmpuint(l.answered, ==, l.sent);
    check_host_writes(&l);
    g_free(held_path);
    g_free(gap_path);
    fe_close(l.fe);
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

static void test_unlinked_held(void)
{
    const char *const args[] = {NULL};
    unlinked_held(args, false);
}

/* The same with inodes kept as file handles: the open file's handle still opens (its fd
 * holds it), the one only looked up is gone from the host, which costs no upgrade. */
static void test_unlinked_held_handles(void)
{
    if (geteuid() != 0) {
        g_test_skip("--inode-file-handles=mandatory needs CAP_DAC_READ_SEARCH");
        return;
    }
    const char *const args[] = {"--inode-file-handles=mandatory", NULL};
    unlinked_held(args, true);
}

/* ---- the namespace sandbox's monitor ---- */

static void test_namespace_paths(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_test_skip("sanitizer builds run without the namespace sandbox");
    return;
#endif
    if (geteuid() != 0) {
        g_test_skip("the namespace sandbox's paths test runs as root");
        return;
    }
    const char *const args[] = {"--sandbox=namespace", NULL};
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    make_files();
    struct load l;
    load_open(&l, FE_PROFILE_QEMU);
    run_round(&l);
    char *pidfile = g_strdup_printf("%s.pid", daemon_.socket);
    upgrade_once(&l, args, 0);
    /* The old monitor has exited: the socket and the pid file are still there, naming the
     * new daemon, and a new connection reaches it. */
    struct stat st;
    g_assert_cmpint(stat(daemon_.socket, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(pidfile, &text, NULL, NULL));
    g_assert_cmpint(atoi(text), ==, daemon_.pid);
    g_free(text);
    run_round(&l);
    fe_close(l.fe);
    load_open(&l, FE_PROFILE_QEMU);
    run_round(&l);
    fe_close(l.fe);
    /* The new daemon's monitor got the socket with the handover's first answer, as a daemon
     * started normally holds it: when its serving process dies, it starts a new one. */
    pid_t serving = test_daemon_serving_pid(&daemon_);
    g_assert_cmpint(serving, >, 0);
    g_assert_cmpint(kill(serving, SIGKILL), ==, 0);
    pid_t next = -1;
    for (int i = 0; i < 500 && (next <= 0 || next == serving); i++) {
        g_usleep(10000);
        next = test_daemon_serving_pid(&daemon_);
    }
    g_assert_cmpint(next, >, 0);
    g_assert_cmpint(next, !=, serving);
    load_open(&l, FE_PROFILE_QEMU);
    run_round(&l);
    fe_close(l.fe);
    /* The new daemon's monitor removes them at its end. */
    char *sock = g_strdup(daemon_.socket);
    pid_t pid = daemon_.pid;
    kill(pid, SIGTERM);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_cmpint(access(sock, F_OK), <, 0);
    g_assert_cmpint(access(pidfile, F_OK), <, 0);
    daemon_.pid = -1; /* reaped: exit status 0 */
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
    g_free(sock);
    g_free(pidfile);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/upgrade/qemu-under-load", test_qemu_under_load);
    g_test_add_func("/upgrade/cloud-hypervisor-under-load", test_ch_under_load);
    g_test_add_func("/upgrade/inflight-under-load", test_inflight_under_load);
    g_test_add_func("/upgrade/refused", test_refused);
    g_test_add_func("/upgrade/lock-wait", test_lock_wait);
    g_test_add_func("/upgrade/lock-wait-inflight", test_lock_wait_inflight);
    g_test_add_func("/upgrade/new-goes-away", test_new_goes_away);
    g_test_add_func("/upgrade/new-killed", test_new_killed);
    g_test_add_func("/upgrade/new-fails", test_new_fails);
    g_test_add_func("/upgrade/namespace-paths", test_namespace_paths);
    g_test_add_func("/upgrade/unlinked-held", test_unlinked_held);
    g_test_add_func("/upgrade/unlinked-held-handles", test_unlinked_held_handles);
    return g_test_run();
}
