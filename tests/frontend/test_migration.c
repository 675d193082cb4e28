/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live migration's transport, driven through the socket like a VMM would:
 *  - dirty-page logging (VHOST_F_LOG_ALL, LOG_SHMFD, SET_LOG_BASE, VHOST_VRING_F_LOG): the
 *    bitmap is compared with a shadow copy of guest memory after each request, so every page
 *    the daemon changed must be marked, and (buffers in fresh pages) nothing else but the used
 *    rings; hostile logs cost the connection only;
 *  - DEVICE_STATE (SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE): the message flow, the refusals,
 *    the transfer's threads (confined, not leaked), a front-end that goes away mid-transfer;
 *    and a SAVE from one daemon loaded into another, skipped while the session state is not
 *    implemented yet.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define Q               1
#define PAGE            4096u
#define MEM_SIZE        (8u << 20)
#define F_LOG_ALL       (1ull << 26)
#define PF_LOG_SHMFD    (1ull << 1)
#define PF_DEVICE_STATE (1ull << 19)
#define STATE_NOFD      (1ull << 8)
#define NOT_IMPLEMENTED "not implemented yet"

static struct test_daemon daemon_, pool_daemon;

static char *share_path(const struct test_daemon *d, const char *name)
{
    return g_build_filename(d->share, name, NULL);
}

/* A file of len bytes, none of them 0xaa (the fill of reply buffers), in the share. */
static void write_pattern_file(const struct test_daemon *d, const char *name, size_t len)
{
    char *p = share_path(d, name);
    uint8_t *buf = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + 1) == 0xaa ? 0x55 : (uint8_t)(i * 7 + 1);
    g_assert_true(g_file_set_contents(p, (const char *)buf, (gssize)len, NULL));
    g_free(buf);
    g_free(p);
}

/* ---- dirty-page logging ------------------------------------------------------------------- */

struct logged {
    struct fe *fe;
    int log_fd;
    uint8_t *log;
    size_t log_size;
    uint8_t *shadow;
    bool fe_page[MEM_SIZE / PAGE];   /* written by the test (the guest), not the daemon */
    bool used_page[MEM_SIZE / PAGE]; /* a used ring: the daemon writes it */
};

static unsigned page_of(struct logged *l, uint64_t gpa)
{
    return (unsigned)((gpa - fe_gpa_base(l->fe)) / PAGE);
}

static bool marked(const struct logged *l, uint64_t gpa)
{
    uint64_t page = gpa / PAGE;
    return __atomic_load_n(&l->log[page / 8], __ATOMIC_ACQUIRE) & (1u << (page % 8));
}

static void mark_range(struct logged *l, bool *set, uint64_t gpa, size_t len)
{
    for (uint64_t a = gpa & ~(uint64_t)(PAGE - 1); a < gpa + len; a += PAGE)
        set[page_of(l, a)] = true;
}

/* Rings and everything before the data area are the guest's, but for the used rings. */
static void classify_rings(struct logged *l)
{
    unsigned nq = 2;
    uint64_t data = fe_gpa_base(l->fe) + fe_alloc_mark(l->fe); /* the rings end before */
    mark_range(l, l->fe_page, fe_gpa_base(l->fe), data - fe_gpa_base(l->fe));
    for (unsigned q = 0; q < nq; q++) {
        uint64_t used = fe_gpa_of(l->fe, fe_vq_used(l->fe, q));
        size_t len = 6 + 8 * fe_vq_size(l->fe, q) + 2;
        mark_range(l, l->fe_page, used, len); /* clear below */
        for (uint64_t a = used & ~(uint64_t)(PAGE - 1); a < used + len; a += PAGE) {
            l->fe_page[page_of(l, a)] = false;
            l->used_page[page_of(l, a)] = true;
        }
    }
}

static struct fe *open_logged(struct test_daemon *d, struct logged *l)
{
    memset(l, 0, sizeof(*l));
    struct fe_config cfg = {.socket_path = d->socket,
                            .mem_size = MEM_SIZE,
                            .features = F_LOG_ALL,
                            .protocol_features = PF_LOG_SHMFD,
                            .vring_log = true};
    g_assert_cmpint(fe_open_retry(&cfg, &l->fe, 2000), ==, 0);
    /* The log covers guest-physical addresses from 0 to the end of guest memory. */
    uint64_t pages = (fe_gpa_base(l->fe) + MEM_SIZE) / PAGE;
    l->log_size = (pages + 7) / 8;
    l->log_fd = memfd_create("fe-dirty-log", MFD_CLOEXEC);
    g_assert_cmpint(l->log_fd, >=, 0);
    g_assert_cmpint(ftruncate(l->log_fd, (off_t)l->log_size), ==, 0);
    l->log = mmap(NULL, l->log_size, PROT_READ | PROT_WRITE, MAP_SHARED, l->log_fd, 0);
    g_assert_true(l->log != MAP_FAILED);
    uint64_t msg[2] = {l->log_size, 0}, reply = 99;
    g_assert_cmpint(
        fe_vu_call_u64(l->fe, FE_VU_SET_LOG_BASE, msg, sizeof(msg), &l->log_fd, 1, &reply), ==, 0);
    g_assert_cmpuint(reply, ==, 0);
    l->shadow = g_malloc(MEM_SIZE);
    classify_rings(l);
    g_assert_cmpint(fe_fuse_init(l->fe), ==, 0);
    return l->fe;
}

static void close_logged(struct logged *l)
{
    fe_close(l->fe);
    munmap(l->log, l->log_size);
    close(l->log_fd);
    g_free(l->shadow);
}

/* Starts a round: the log cleared, guest memory as it is now remembered. */
static void snapshot(struct logged *l)
{
    memset(l->log, 0, l->log_size);
    memcpy(l->shadow, fe_ptr(l->fe, fe_gpa_base(l->fe)), MEM_SIZE);
}

/*
 * Ends a round: every page the daemon changed is marked; every marked page was changed by it
 * or is a used ring (whose bit comes right after the used index the test saw: waited for).
 */
static void check_log(struct logged *l)
{
    const uint8_t *mem = fe_ptr(l->fe, fe_gpa_base(l->fe));
    unsigned changed_pages = 0;
    for (unsigned p = 0; p < MEM_SIZE / PAGE; p++) {
        uint64_t gpa = fe_gpa_base(l->fe) + (uint64_t)p * PAGE;
        bool changed = memcmp(mem + (size_t)p * PAGE, l->shadow + (size_t)p * PAGE, PAGE) != 0;
        for (int waited = 0; changed && l->used_page[p] && !marked(l, gpa) && waited < 2000;
             waited++)
            usleep(1000);
        if (changed && !l->fe_page[p] && !marked(l, gpa))
            g_error("page at gpa 0x%llx changed but is not marked dirty", (unsigned long long)gpa);
        if (marked(l, gpa) && !changed && !l->used_page[p])
            g_error("page at gpa 0x%llx marked dirty but unchanged", (unsigned long long)gpa);
        changed_pages += changed && !l->fe_page[p];
    }
    /* Nothing outside guest memory. */
    for (size_t b = 0; b < fe_gpa_base(l->fe) / PAGE / 8; b++)
        g_assert_cmpuint(l->log[b], ==, 0);
    g_assert_cmpuint(changed_pages, >, 0);
}

/* A request in a fresh page of its own, written before the round's snapshot. */
static uint64_t put_request(struct logged *l, uint32_t opcode, uint64_t nodeid, const void *arg,
                            size_t arg_len, uint64_t unique)
{
    uint64_t gpa = fe_alloc_pages(l->fe, sizeof(struct fuse_in_header) + arg_len);
    mark_range(l, l->fe_page, gpa, sizeof(struct fuse_in_header) + arg_len);
    struct fuse_in_header h = {.len = (uint32_t)(sizeof(h) + arg_len),
                               .opcode = opcode,
                               .unique = unique,
                               .nodeid = nodeid,
                               .pid = 1};
    memcpy(fe_ptr(l->fe, gpa), &h, sizeof(h));
    memcpy((uint8_t *)fe_ptr(l->fe, gpa) + sizeof(h), arg, arg_len);
    return gpa;
}

/* Reply buffers: fresh pages filled with 0xaa, so whatever the daemon writes changes them. */
static uint64_t put_reply_buf(struct logged *l, size_t len)
{
    uint64_t gpa = fe_alloc_pages(l->fe, len);
    memset(fe_ptr(l->fe, gpa), 0xaa, (len + PAGE - 1) / PAGE * PAGE);
    return gpa;
}

/* One round: the chain published (its indirect table is the guest's too), the reply waited
 * for, the log checked. Returns the used length. */
static uint32_t run_round(struct logged *l, struct fe_buf *bufs, unsigned n, bool indirect)
{
    /* Every allocation is whole pages: an indirect table starts on a page of its own. */
    uint64_t table_gpa = fe_gpa_base(l->fe) + fe_alloc_mark(l->fe);
    if (indirect)
        mark_range(l, l->fe_page, table_gpa, 16u * n);
    snapshot(l);
    uint16_t head, got;
    uint32_t len;
    g_assert_cmpint(fe_vq_add(l->fe, Q, bufs, n, indirect, &head), ==, 0);
    fe_vq_kick(l->fe, Q);
    g_assert_cmpint(fe_vq_get_used(l->fe, Q, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(got, ==, head);
    fe_vq_free_chain(l->fe, Q, head);
    check_log(l);
    return len;
}

static uint64_t lookup_logged(struct logged *l, const char *name, bool indirect)
{
    uint64_t req = put_request(l, FUSE_LOOKUP, FUSE_ROOT_ID, name, strlen(name) + 1, 100);
    uint64_t rep = put_reply_buf(l, PAGE);
    struct fe_buf bufs[2] = {
        {req, (uint32_t)(sizeof(struct fuse_in_header) + strlen(name) + 1), false},
        {rep, sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out), true}};
    uint32_t len = run_round(l, bufs, 2, indirect);
    g_assert_cmpuint(len, ==, sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out));
    const struct fuse_out_header *o = fe_ptr(l->fe, rep);
    g_assert_cmpint(o->error, ==, 0);
    return ((const struct fuse_entry_out *)(o + 1))->nodeid;
}

static void getattr_logged(struct logged *l, uint64_t nodeid)
{
    struct fuse_getattr_in in = {0};
    uint64_t req = put_request(l, FUSE_GETATTR, nodeid, &in, sizeof(in), 101);
    uint64_t rep = put_reply_buf(l, PAGE);
    struct fe_buf bufs[2] = {
        {req, sizeof(struct fuse_in_header) + sizeof(in), false},
        {rep, sizeof(struct fuse_out_header) + sizeof(struct fuse_attr_out), true}};
    g_assert_cmpuint(run_round(l, bufs, 2, false), ==,
                     sizeof(struct fuse_out_header) + sizeof(struct fuse_attr_out));
}

static uint64_t open_logged_file(struct logged *l, uint64_t nodeid, uint32_t opcode)
{
    struct fuse_open_in in = {.flags = O_RDONLY};
    uint64_t req = put_request(l, opcode, nodeid, &in, sizeof(in), 102);
    uint64_t rep = put_reply_buf(l, PAGE);
    struct fe_buf bufs[2] = {
        {req, sizeof(struct fuse_in_header) + sizeof(in), false},
        {rep, sizeof(struct fuse_out_header) + sizeof(struct fuse_open_out), true}};
    run_round(l, bufs, 2, false);
    const struct fuse_out_header *o = fe_ptr(l->fe, rep);
    g_assert_cmpint(o->error, ==, 0);
    return ((const struct fuse_open_out *)(o + 1))->fh;
}

/*
 * READ of 2 pages + 100 bytes into a header buffer and three data buffers (4 KiB, 4 KiB,
 * 8 KiB), each in pages of its own: the last page of the last buffer is not written and must
 * not be marked.
 */
static void read_logged(struct logged *l, uint64_t nodeid, uint64_t fh, bool indirect)
{
    struct fuse_read_in in = {.fh = fh, .offset = 0, .size = 4 * PAGE};
    uint64_t req = put_request(l, FUSE_READ, nodeid, &in, sizeof(in), 103);
    uint64_t hdr = put_reply_buf(l, sizeof(struct fuse_out_header));
    uint64_t d1 = put_reply_buf(l, PAGE), d2 = put_reply_buf(l, PAGE);
    uint64_t d3 = put_reply_buf(l, 2 * PAGE);
    struct fe_buf bufs[5] = {{req, sizeof(struct fuse_in_header) + sizeof(in), false},
                             {hdr, sizeof(struct fuse_out_header), true},
                             {d1, PAGE, true},
                             {d2, PAGE, true},
                             {d3, 2 * PAGE, true}};
    uint32_t len = run_round(l, bufs, 5, indirect);
    g_assert_cmpuint(len, ==, sizeof(struct fuse_out_header) + 2 * PAGE + 100);
    g_assert_false(marked(l, d3 + PAGE));
    g_assert_true(marked(l, d3));
}

static void readdir_logged(struct logged *l, uint64_t nodeid, uint64_t fh)
{
    struct fuse_read_in in = {.fh = fh, .size = 2 * PAGE};
    uint64_t req = put_request(l, FUSE_READDIR, nodeid, &in, sizeof(in), 104);
    uint64_t rep = put_reply_buf(l, 2 * PAGE);
    struct fe_buf bufs[2] = {{req, sizeof(struct fuse_in_header) + sizeof(in), false},
                             {rep, 2 * PAGE, true}};
    uint32_t len = run_round(l, bufs, 2, true);
    g_assert_cmpuint(len, >, sizeof(struct fuse_out_header));
    g_assert_cmpuint(len, <, PAGE); /* a few entries: the second page stays as it was */
    g_assert_false(marked(l, rep + PAGE));
}

static void test_dirty_log(gconstpointer data)
{
    struct test_daemon *d = (struct test_daemon *)data;
    write_pattern_file(d, "logged-data", 2 * PAGE + 100);
    char *dir = share_path(d, "logged-dir");
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    for (int i = 0; i < 5; i++) {
        char *f = g_strdup_printf("%s/entry-%d", dir, i);
        g_assert_true(g_file_set_contents(f, "x", 1, NULL));
        g_free(f);
    }
    g_free(dir);

    struct logged *l = g_new0(struct logged, 1);
    open_logged(d, l);
    uint64_t file = lookup_logged(l, "logged-data", false);
    lookup_logged(l, "logged-data", true);
    getattr_logged(l, file);
    uint64_t fh = open_logged_file(l, file, FUSE_OPEN);
    read_logged(l, file, fh, false);
    read_logged(l, file, fh, true);
    uint64_t dnode = lookup_logged(l, "logged-dir", true);
    readdir_logged(l, dnode, open_logged_file(l, dnode, FUSE_OPENDIR));
    close_logged(l);
    g_free(l);
    g_assert_true(test_daemon_alive(d));
}

/* True if the serving process maps a file whose name contains needle (/proc/PID/maps). */
static bool daemon_maps(const struct test_daemon *d, const char *needle)
{
    gchar *path = g_strdup_printf("/proc/%d/maps", (int)test_daemon_serving_pid(d));
    gchar *maps = NULL;
    g_assert_true(g_file_get_contents(path, &maps, NULL, NULL));
    bool found = strstr(maps, needle) != NULL;
    g_free(maps);
    g_free(path);
    return found;
}

/* SET_FEATURES without LOG_ALL: nothing is logged any more and the log is unmapped. */
static void test_log_stops(void)
{
    struct logged *l = g_new0(struct logged, 1);
    open_logged(&daemon_, l);
    g_assert_true(daemon_maps(&daemon_, "fe-dirty-log"));
    uint64_t features = (1ull << 32) | (1ull << 30) | (1ull << 28) | (1ull << 29);
    g_assert_cmpint(fe_vu_ack(l->fe, FE_VU_SET_FEATURES, &features, 8, NULL, 0), ==, 0);
    g_assert_false(daemon_maps(&daemon_, "fe-dirty-log"));
    memset(l->log, 0, l->log_size);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(l->fe, FUSE_ROOT_ID, ".", &e), ==, 0);
    for (size_t b = 0; b < l->log_size; b++)
        g_assert_cmpuint(l->log[b], ==, 0);
    close_logged(l);
    g_free(l);
}

/* The daemon is alive and serves a fresh connection. */
static void assert_serving(struct test_daemon *d)
{
    g_assert_true(test_daemon_alive(d));
    struct fe_config cfg = {.socket_path = d->socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, ".", &e), ==, 0);
    fe_close(fe);
}

static struct fe *open_with(uint64_t protocol_features)
{
    struct fe_config cfg = {.socket_path = daemon_.socket,
                            .features = F_LOG_ALL,
                            .protocol_features = protocol_features};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    return fe;
}

/* Each bad SET_LOG_BASE is refused and ends its connection; the daemon serves the next. */
static void test_hostile_log_base(void)
{
    int fd = memfd_create("fe-bad-log", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(fd, 65536), ==, 0);
    const struct {
        uint64_t size, offset;
        unsigned nfds;
    } cases[] = {
        {0, 0, 1},                   /* size 0 */
        {65536, 4096, 1},            /* past the end of the memfd */
        {4096, UINT64_MAX - 100, 1}, /* offset + size wraps */
        {(1ull << 30) + 4096, 0, 1}, /* absurdly large */
        {4096, 0, 0},                /* no fd */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_test_message("case %zu", i);
        struct fe *fe = open_with(PF_LOG_SHMFD);
        uint64_t msg[2] = {cases[i].size, cases[i].offset}, reply = 0;
        g_assert_cmpint(
            fe_vu_call_u64(fe, FE_VU_SET_LOG_BASE, msg, sizeof(msg), &fd, cases[i].nfds, &reply),
            ==, 0);
        g_assert_cmpuint(reply, !=, 0);
        g_assert_true(fe_vu_closed(fe, 2000));
        fe_close(fe);
        assert_serving(&daemon_);
    }
    /* Without LOG_SHMFD agreed there is no log to map. */
    struct fe *fe = open_with(0);
    uint64_t msg[2] = {4096, 0};
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_LOG_BASE, msg, sizeof(msg), &fd, 1), ==, 1);
    g_assert_true(fe_vu_closed(fe, 2000));
    fe_close(fe);
    close(fd);
    assert_serving(&daemon_);
}

/* The front-end truncates the log's memfd under the daemon: the connection ends, not it. */
static void test_log_truncated(void)
{
    struct logged *l = g_new0(struct logged, 1);
    open_logged(&daemon_, l);
    munmap(l->log, l->log_size);
    g_assert_cmpint(ftruncate(l->log_fd, 0), ==, 0);
    struct fuse_entry_out e;
    (void)fe_lookup(l->fe, FUSE_ROOT_ID, ".", &e); /* the reply's bits fault */
    g_assert_true(fe_vu_closed(l->fe, 3000));
    g_assert_true(test_daemon_log_contains(&daemon_, "dirty-page log"));
    fe_close(l->fe);
    close(l->log_fd);
    g_free(l->shadow);
    g_free(l);
    assert_serving(&daemon_);
}

/* ---- device state --------------------------------------------------------------------------- */

/* A connection with DEVICE_STATE agreed, set up and initialized (rings running). */
static struct fe *open_state(struct test_daemon *d)
{
    struct fe_config cfg = {.socket_path = d->socket, .protocol_features = PF_DEVICE_STATE};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    return fe;
}

static void stop_rings(struct fe *fe)
{
    g_assert_cmpint(fe_stop_rings(fe), ==, 0);
}

static uint64_t set_state_fd(struct fe *fe, uint32_t direction, uint32_t phase, int fd)
{
    uint64_t reply = 0;
    g_assert_cmpint(fe_set_state_fd(fe, direction, phase, fd, &reply), ==, 0);
    return reply;
}

static uint64_t check_state(struct fe *fe)
{
    uint64_t reply = 99;
    g_assert_cmpint(fe_check_state(fe, &reply, 5000), ==, 0);
    return reply;
}

/* Reads fd to its end (the back-end closed its end); returns the bytes. */
static GByteArray *read_to_eof(int fd)
{
    GByteArray *data = g_byte_array_new();
    uint8_t buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        g_assert_cmpint(poll(&p, 1, 5000), ==, 1);
        ssize_t n = read(fd, buf, sizeof(buf));
        g_assert_cmpint(n, >=, 0);
        if (n == 0)
            return data;
        g_byte_array_append(data, buf, (guint)n);
    }
}

static bool state_implemented(void)
{
    return !test_daemon_log_contains(&daemon_, NOT_IMPLEMENTED);
}

static unsigned task_count(const struct test_daemon *d)
{
    gchar *path = g_strdup_printf("/proc/%d/task", (int)test_daemon_serving_pid(d));
    GDir *dir = g_dir_open(path, 0, NULL);
    g_assert_nonnull(dir);
    unsigned n = 0;
    while (g_dir_read_name(dir))
        n++;
    g_dir_close(dir);
    g_free(path);
    return n;
}

/* Waits until the serving process has n tasks (threads end a moment after their work). */
/* No thread left behind: at most the n there were before (one that was already on its way
 * out then, a queue worker after the rings stopped, may have gone meanwhile). */
static void assert_tasks(const struct test_daemon *d, unsigned n)
{
    for (int waited = 0; task_count(d) > n && waited < 3000; waited += 10)
        usleep(10000);
    g_assert_cmpuint(task_count(d), <=, n);
}

/* SAVE: accepted without an fd of the daemon's own; the stream ends; CHECK tells the result
 * (failure with the stub, success and some bytes once the state exists); no thread left. */
static void test_state_save(void)
{
    struct fe *fe = open_state(&daemon_);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    stop_rings(fe);
    unsigned tasks = task_count(&daemon_);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 0, 0, p[1]), ==, STATE_NOFD);
    close(p[1]);
    GByteArray *data = read_to_eof(p[0]);
    close(p[0]);
    uint64_t result = check_state(fe);
    if (state_implemented()) {
        g_assert_cmpuint(result, ==, 0);
        g_assert_cmpuint(data->len, >, 0);
    } else {
        g_assert_cmpuint(result, !=, 0);
    }
    g_byte_array_unref(data);
    assert_tasks(&daemon_, tasks);
    /* A SAVE into a pipe nobody reads fails, whatever the state: CHECK says so. */
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    close(p[0]);
    g_assert_cmpuint(set_state_fd(fe, 0, 0, p[1]), ==, STATE_NOFD);
    close(p[1]);
    g_assert_cmpuint(check_state(fe), !=, 0);
    /* A SAVE into an fd that cannot be written (a pipe's read end). */
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 0, 0, p[0]), ==, STATE_NOFD);
    close(p[1]);
    close(p[0]);
    g_assert_cmpuint(check_state(fe), !=, 0);
    assert_tasks(&daemon_, tasks);
    fe_close(fe);
    assert_serving(&daemon_);
}

/* Refusals: each one is an error reply without an fd, and the connection goes on. */
static void test_state_refused(void)
{
    struct fe *fe = open_state(&daemon_);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    /* The rings run. */
    uint64_t r = set_state_fd(fe, 0, 0, p[1]);
    g_assert_cmpuint(r & STATE_NOFD, !=, 0);
    g_assert_cmpuint(r & 0xff, !=, 0);
    stop_rings(fe);
    /* A phase other than stopped, an unknown direction, no fd. */
    r = set_state_fd(fe, 0, 1, p[1]);
    g_assert_cmpuint(r & 0xff, !=, 0);
    g_assert_cmpuint(r & STATE_NOFD, !=, 0);
    g_assert_cmpuint(set_state_fd(fe, 2, 0, p[1]) & 0xff, !=, 0);
    g_assert_cmpuint(set_state_fd(fe, 1, 0, -1) & 0xff, !=, 0);
    /* CHECK without a transfer. */
    g_assert_cmpuint(check_state(fe), !=, 0);
    g_assert_true(test_daemon_log_contains(&daemon_, "phase 1 is not supported"));
    fe_close(fe);
    /* Without DEVICE_STATE agreed. */
    struct fe_config cfg = {.socket_path = daemon_.socket};
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    stop_rings(fe);
    g_assert_cmpuint(set_state_fd(fe, 1, 0, p[0]) & 0xff, !=, 0);
    fe_close(fe);
    close(p[0]);
    close(p[1]);
    assert_serving(&daemon_);
}

/* cloud-hypervisor's restore: LOAD right after the protocol features, before any memory; a
 * second transfer while one runs is refused; the transfer's threads are confined. */
static void test_state_load_early(void)
{
    struct fe_config cfg = {.socket_path = daemon_.socket, .skip_setup = true};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    uint64_t features, pf;
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_OWNER, 0, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(fe_vu_get_u64(fe, FE_VU_GET_FEATURES, &features), ==, 0);
    g_assert_cmpint(fe_vu_get_u64(fe, FE_VU_GET_PROTOCOL_FEATURES, &pf), ==, 0);
    g_assert_cmpuint(pf & PF_DEVICE_STATE, !=, 0);
    g_assert_cmpuint(pf & PF_LOG_SHMFD, !=, 0);
    g_assert_cmpuint(features & F_LOG_ALL, !=, 0);
    pf &= PF_DEVICE_STATE | (1ull << 3);
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0), ==, 0);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 1, 0, p[0]), ==, STATE_NOFD);
    close(p[0]);
    /* Our end still open: the transfer waits for data. A second one is refused. */
    int q[2];
    g_assert_cmpint(pipe2(q, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 1, 0, q[0]) & 0xff, !=, 0);
    close(q[0]);
    close(q[1]);
    /* The pump runs meanwhile, as confined as every other thread (named a moment after it
     * starts: looked for a while). */
    gchar *path = g_strdup_printf("/proc/%d/task", (int)test_daemon_serving_pid(&daemon_));
    bool found = false;
    for (int tries = 0; !found && tries < 200; tries++, usleep(10000)) {
        GDir *dir = g_dir_open(path, 0, NULL);
        for (const char *t; (t = g_dir_read_name(dir));) {
            gchar *comm_path = g_strdup_printf("%s/%s/comm", path, t), *comm = NULL;
            gchar *status_path = g_strdup_printf("%s/%s/status", path, t), *status = NULL;
            if (g_file_get_contents(comm_path, &comm, NULL, NULL) &&
                g_str_has_prefix(comm, "state-") &&
                g_file_get_contents(status_path, &status, NULL, NULL)) {
                found = true;
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
                /* (Sanitizer builds run the daemon without its filter.) */
                g_assert_nonnull(strstr(status, "Seccomp:\t2"));
#endif
                g_assert_nonnull(strstr(status, "NoNewPrivs:\t1"));
            }
            g_free(comm);
            g_free(status);
            g_free(comm_path);
            g_free(status_path);
        }
        g_dir_close(dir);
    }
    g_free(path);
    g_assert_true(found);
    /* Garbage, then the end: the load fails (stub or not), CHECK says so. */
    g_assert_cmpint(write(p[1], "not a device state", 18), ==, 18);
    close(p[1]);
    g_assert_cmpuint(check_state(fe), !=, 0);
    fe_close(fe);
    assert_serving(&daemon_);
}

/* The front-end goes away mid-transfer (its pipe still open): the daemon resets, no thread
 * or fd is left, the next connection is served. Also a CHECK that waits on an fd that never
 * ends (an eventfd for a LOAD) ends with the connection. */
/* The serving process's fd count once the last session's reset is over. */
static int settled_fd_count(void)
{
    int n = test_daemon_fd_count(&daemon_);
    for (int same = 0, waited = 0; same < 10 && waited < 3000; waited += 20) {
        usleep(20000);
        int m = test_daemon_fd_count(&daemon_);
        same = m == n ? same + 1 : 0;
        n = m;
    }
    return n;
}

static void test_state_disconnect(void)
{
    assert_serving(&daemon_);
    unsigned tasks = task_count(&daemon_);
    int fds = settled_fd_count();
    struct fe *fe = open_state(&daemon_);
    stop_rings(fe);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 1, 0, p[0]), ==, STATE_NOFD);
    g_assert_cmpint(write(p[1], "partial", 7), ==, 7);
    fe_close(fe);
    assert_serving(&daemon_);
    assert_tasks(&daemon_, tasks);
    g_assert_cmpint(settled_fd_count(), ==, fds);
    close(p[0]);
    close(p[1]);

    fe = open_state(&daemon_);
    stop_rings(fe);
    int ev = eventfd(0, EFD_CLOEXEC);
    g_assert_cmpuint(set_state_fd(fe, 1, 0, ev), ==, STATE_NOFD);
    close(ev);
    g_assert_cmpint(fe_vu_send(fe, FE_VU_CHECK_DEVICE_STATE, 0, NULL, 0, NULL, 0), ==, 0);
    uint64_t v;
    uint32_t req, sz = sizeof(v);
    g_assert_cmpint(fe_vu_recv(fe, &req, &v, &sz, 300), ==, -ETIMEDOUT);
    fe_close(fe);
    assert_serving(&daemon_);
    assert_tasks(&daemon_, tasks);
    g_assert_cmpint(settled_fd_count(), ==, fds);
}

/*
 * End to end: daemon A's SAVE loaded into daemon B on the same share; B then answers for
 * A's nodeids without a FUSE_INIT. Skipped while the session state is a stub.
 */
static void test_state_a_to_b(void)
{
    write_pattern_file(&daemon_, "migrated", 5000);
    struct fe *a = open_state(&daemon_);
    g_assert_cmpint(fe_fuse_init(a), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(a, FUSE_ROOT_ID, "migrated", &e), ==, 0);
    stop_rings(a);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(a, 0, 0, p[1]), ==, STATE_NOFD);
    close(p[1]);
    GByteArray *state = read_to_eof(p[0]);
    close(p[0]);
    uint64_t saved = check_state(a);
    fe_close(a);
    if (!state_implemented()) {
        g_byte_array_unref(state);
        g_test_skip("the session state is " NOT_IMPLEMENTED);
        return;
    }
    g_assert_cmpuint(saved, ==, 0);

    struct test_daemon b;
    gchar *share = g_strdup_printf("--shared-dir=%s", daemon_.share);
    const char *args[] = {share, NULL};
    g_assert_cmpint(test_daemon_start(&b, args), ==, 0);
    struct fe_config cfg = {
        .socket_path = b.socket, .skip_setup = true, .protocol_features = PF_DEVICE_STATE};
    struct fe *fb = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fb, 2000), ==, 0);
    uint64_t pf = PF_DEVICE_STATE | (1ull << 0) | (1ull << 3) | (1ull << 15), f;
    g_assert_cmpint(fe_vu_get_u64(fb, FE_VU_GET_FEATURES, &f), ==, 0);
    g_assert_cmpint(fe_vu_send(fb, FE_VU_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0), ==, 0);
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fb, 1, 0, p[0]), ==, STATE_NOFD);
    close(p[0]);
    g_assert_cmpint(write(p[1], state->data, state->len), ==, (ssize_t)state->len);
    close(p[1]);
    g_assert_cmpuint(check_state(fb), ==, 0);
    g_byte_array_unref(state);
    /* Then memory and rings, on the same connection (a new one would start a new session),
     * and requests for A's nodeids without FUSE_INIT. */
    g_assert_cmpint(fe_setup(fb), ==, 0);
    struct fuse_entry_out eb;
    g_assert_cmpint(fe_lookup(fb, FUSE_ROOT_ID, "migrated", &eb), ==, 0);
    g_assert_cmpuint(eb.nodeid, ==, e.nodeid);
    struct fuse_getattr_in gin = {0};
    struct iovec iov = {&gin, sizeof(gin)};
    struct fe_reply r;
    g_assert_cmpint(
        fe_fuse(fb, Q, FUSE_GETATTR, e.nodeid, &iov, 1, sizeof(struct fuse_attr_out), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    fe_close(fb);
    test_daemon_stop(&b);
    g_free(share);
}

/* ---- locks across a migration --------------------------------------------------------------- */

#define OWNER_X 0x5858ULL
#define OWNER_Z 0x5a5aULL
#define PID_X   4242
#define TO_EOF  0x7fffffffffffffffULL

static uint64_t open_rw(struct fe *fe, uint64_t nodeid)
{
    struct fuse_open_in in = {.flags = O_RDWR};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_OPEN, nodeid, &iov, 1, sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    return ((struct fuse_open_out *)r.data)->fh;
}

/* SETLK: the FUSE error. */
static int setlk_on(struct fe *fe, uint64_t nodeid, uint64_t fh, uint64_t owner, uint32_t type,
                    uint64_t start, uint64_t end, bool flock_lock)
{
    struct fuse_lk_in in = {.fh = fh,
                            .owner = owner,
                            .lk = {.start = start, .end = end, .type = type, .pid = PID_X},
                            .lk_flags = flock_lock ? FUSE_LK_FLOCK : 0};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_SETLK, nodeid, &iov, 1, 0, &r), ==, 0);
    return r.error;
}

/* What a host process sees at [start, start + len) of name: F_UNLCK or the conflicting type. */
static short host_posix(const char *name, short type, off_t start, off_t len)
{
    char *p = share_path(&daemon_, name);
    int fd = open(p, O_RDWR);
    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type;
}

/* Whether a host process can take an exclusive flock on name now. */
static bool host_flock_free(const char *name)
{
    char *p = share_path(&daemon_, name);
    int fd = open(p, O_RDWR);
    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    bool free_now = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return free_now;
}

/* The host's view of the guest's locks: a write lock at 0-99, a read lock at 200-299, an
 * flock on the other file, and nothing at 100-199. */
static void assert_host_sees_locks(void)
{
    g_assert_cmpint(host_posix("lk-posix", F_RDLCK, 50, 1), ==, F_WRLCK);
    g_assert_cmpint(host_posix("lk-posix", F_WRLCK, 250, 1), ==, F_RDLCK);
    g_assert_cmpint(host_posix("lk-posix", F_WRLCK, 100, 100), ==, F_UNLCK);
    g_assert_false(host_flock_free("lk-flock"));
}

/* Whether one "lock:" line of fdinfo (up to its newline) is on the share's file name. */
static bool lock_on(const char *line, const char *name)
{
    char *p = share_path(&daemon_, name);
    struct stat st;
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_free(p);
    gchar *needle = g_strdup_printf(":%llu ", (unsigned long long)st.st_ino);
    const char *nl = strchr(line, '\n'), *at = strstr(line, needle);
    g_free(needle);
    return at && (!nl || at < nl);
}

/* "lock:" lines on lk-posix and lk-flock in the fdinfo of every fd of d's serving process:
 * the locks it holds there. */
static unsigned daemon_lock_lines(const struct test_daemon *d)
{
    gchar *dir_path = g_strdup_printf("/proc/%d/fdinfo", (int)test_daemon_serving_pid(d));
    GDir *dir = g_dir_open(dir_path, 0, NULL);
    g_assert_nonnull(dir);
    unsigned n = 0;
    for (const char *name; (name = g_dir_read_name(dir));) {
        gchar *path = g_build_filename(dir_path, name, NULL), *text = NULL;
        if (g_file_get_contents(path, &text, NULL, NULL))
            for (const char *c = text; (c = strstr(c, "lock:\t")); c++)
                n += lock_on(c, "lk-posix") || lock_on(c, "lk-flock");
        g_free(text);
        g_free(path);
    }
    g_dir_close(dir);
    g_free(dir_path);
    return n;
}

/* A daemon B on daemon_'s share, with state loaded through a fresh connection (*fb). */
static void load_into_b(struct test_daemon *b, gchar **share, struct fe **fb, GByteArray *state)
{
    *share = g_strdup_printf("--shared-dir=%s", daemon_.share);
    const char *args[] = {*share, NULL};
    g_assert_cmpint(test_daemon_start(b, args), ==, 0);
    struct fe_config cfg = {
        .socket_path = b->socket, .skip_setup = true, .protocol_features = PF_DEVICE_STATE};
    g_assert_cmpint(fe_open_retry(&cfg, fb, 2000), ==, 0);
    uint64_t pf = PF_DEVICE_STATE | (1ull << 0) | (1ull << 3) | (1ull << 15), f;
    g_assert_cmpint(fe_vu_get_u64(*fb, FE_VU_GET_FEATURES, &f), ==, 0);
    g_assert_cmpint(fe_vu_send(*fb, FE_VU_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0), ==, 0);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(*fb, 1, 0, p[0]), ==, STATE_NOFD);
    close(p[0]);
    g_assert_cmpint(write(p[1], state->data, state->len), ==, (ssize_t)state->len);
    close(p[1]);
    g_assert_cmpuint(check_state(*fb), ==, 0);
    g_assert_cmpint(fe_setup(*fb), ==, 0);
}

/*
 * The guest's locks go with it: A's guest holds a POSIX write lock and a read lock (owner X)
 * and an flock; A's SAVE is loaded into B on the same share while A's session still holds
 * them (as the source daemon does until its VMM disconnects after the switch-over). The
 * host sees A's locks meanwhile, and B answers the guest as if it held them; once A's session
 * ends, B holds them within a second; through B the guest unlocks them and the host sees them
 * free. (Before, the SAVE wrote no locks at all: B held nothing.)
 */
static void test_locks_a_to_b(void)
{
    write_pattern_file(&daemon_, "lk-posix", 4096);
    write_pattern_file(&daemon_, "lk-flock", 100);
    struct fe *a = open_state(&daemon_);
    g_assert_cmpint(fe_fuse_init(a), ==, 0);
    struct fuse_entry_out ep, ef;
    g_assert_cmpint(fe_lookup(a, FUSE_ROOT_ID, "lk-posix", &ep), ==, 0);
    g_assert_cmpint(fe_lookup(a, FUSE_ROOT_ID, "lk-flock", &ef), ==, 0);
    uint64_t fhp = open_rw(a, ep.nodeid), fhf = open_rw(a, ef.nodeid);
    g_assert_cmpint(setlk_on(a, ep.nodeid, fhp, OWNER_X, F_WRLCK, 0, 99, false), ==, 0);
    g_assert_cmpint(setlk_on(a, ep.nodeid, fhp, OWNER_X, F_RDLCK, 200, 299, false), ==, 0);
    g_assert_cmpint(setlk_on(a, ef.nodeid, fhf, 0, F_WRLCK, 0, 0, true), ==, 0);
    assert_host_sees_locks();

    stop_rings(a);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(a, 0, 0, p[1]), ==, STATE_NOFD);
    close(p[1]);
    GByteArray *state = read_to_eof(p[0]);
    close(p[0]);
    g_assert_cmpuint(check_state(a), ==, 0);

    struct test_daemon b;
    gchar *share;
    struct fe *fb = NULL;
    load_into_b(&b, &share, &fb, state);
    g_byte_array_unref(state);
    /* A still holds them: the host sees them, B holds only the read lock (read locks are
     * shared: taken at once), and B answers another owner of the guest as if the guest held
     * the others. */
    assert_host_sees_locks();
    g_assert_cmpuint(daemon_lock_lines(&b), ==, 1);
    g_assert_cmpint(setlk_on(fb, ep.nodeid, fhp, OWNER_Z, F_RDLCK, 50, 50, false), ==, -EAGAIN);
    g_assert_cmpint(setlk_on(fb, ep.nodeid, fhp, OWNER_Z, F_WRLCK, 150, 150, false), ==, 0);
    g_assert_cmpint(setlk_on(fb, ep.nodeid, fhp, OWNER_Z, F_UNLCK, 150, 150, false), ==, 0);

    /* A's session ends (its VMM disconnects): B takes the locks at once. */
    fe_close(a);
    gint64 t0 = g_get_monotonic_time();
    /* (Until the flock's restore wait has closed its dup of the handle fd, the same flock
     * shows in two fdinfo files: wait for the settled count, not the first one past it.) */
    while (daemon_lock_lines(&b) != 3 && g_get_monotonic_time() - t0 < 1000000)
        usleep(10000);
    g_assert_cmpuint(daemon_lock_lines(&b), ==, 3);
    assert_host_sees_locks();

    /* Through B the guest lets them go, with the same owner and handles. */
    g_assert_cmpint(setlk_on(fb, ep.nodeid, fhp, OWNER_X, F_UNLCK, 0, TO_EOF, false), ==, 0);
    g_assert_cmpint(setlk_on(fb, ef.nodeid, fhf, 0, F_UNLCK, 0, 0, true), ==, 0);
    g_assert_cmpint(host_posix("lk-posix", F_WRLCK, 0, 0), ==, F_UNLCK);
    g_assert_true(host_flock_free("lk-flock"));
    fe_close(fb);
    test_daemon_stop(&b);
    g_free(share);
}

/* ---- --migration-mode=file-handles ----------------------------------------------------------- */

/* A state LOADed into a fresh daemon on share with args: CHECK_DEVICE_STATE's result. *fb is
 * left open (set up when the LOAD succeeded) for the caller to use and close. */
static uint64_t load_with(struct test_daemon *b, const char *share, const char *const *args,
                          GByteArray *state, struct fe **fb)
{
    gchar *dir = g_strdup_printf("--shared-dir=%s", share);
    const char *argv[8] = {dir};
    size_t n = 1;
    for (; args && *args && n < 7; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    g_assert_cmpint(test_daemon_start(b, argv), ==, 0);
    g_free(dir);
    struct fe_config cfg = {
        .socket_path = b->socket, .skip_setup = true, .protocol_features = PF_DEVICE_STATE};
    g_assert_cmpint(fe_open_retry(&cfg, fb, 2000), ==, 0);
    uint64_t pf = PF_DEVICE_STATE | (1ull << 0) | (1ull << 3) | (1ull << 15), f;
    g_assert_cmpint(fe_vu_get_u64(*fb, FE_VU_GET_FEATURES, &f), ==, 0);
    g_assert_cmpint(fe_vu_send(*fb, FE_VU_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0), ==, 0);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(*fb, 1, 0, p[0]), ==, STATE_NOFD);
    close(p[0]);
    g_assert_cmpint(write(p[1], state->data, state->len), ==, (ssize_t)state->len);
    close(p[1]);
    uint64_t r = check_state(*fb);
    if (r == 0)
        g_assert_cmpint(fe_setup(*fb), ==, 0);
    return r;
}

/* The handle name_to_handle_at gives for path (ext4, tmpfs: a few bytes). */
static struct file_handle *host_handle(const char *path)
{
    struct file_handle *h = g_malloc0(sizeof(*h) + MAX_HANDLE_SZ);
    int mnt;
    h->handle_bytes = MAX_HANDLE_SZ;
    g_assert_cmpint(name_to_handle_at(AT_FDCWD, path, h, &mnt, 0), ==, 0);
    return h;
}

/* Where a handle's bytes are in the state (once); the u16 length and u32 type precede them. */
static size_t find_handle(GByteArray *state, const struct file_handle *h)
{
    const guint8 *hit = memmem(state->data, state->len, h->f_handle, h->handle_bytes);
    g_assert_nonnull(hit);
    g_assert_null(memmem(hit + 1, state->len - (size_t)(hit + 1 - state->data), h->f_handle,
                         h->handle_bytes));
    return (size_t)(hit - state->data);
}

static uint64_t getattr_ino(struct fe *fe, uint64_t nodeid)
{
    struct fuse_getattr_in gin = {0};
    struct iovec iov = {&gin, sizeof(gin)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_GETATTR, nodeid, &iov, 1, sizeof(struct fuse_attr_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    return ((struct fuse_attr_out *)r.data)->attr.ino;
}

/*
 * Daemon A in --migration-mode=file-handles saves handles; a daemon in file-handles mode finds
 * a directory and a file the host renamed after the SAVE (a path would not), with their
 * nodeids, and the open handle still reads; a find-paths daemon uses the paths. A stream whose
 * file handle names a file next to the share (same file system) is refused, and so are
 * hostile handle bytes; the daemon goes on serving.
 */
static void test_fh_a_to_b(void)
{
    if (geteuid() != 0) {
        g_test_skip("file handles need CAP_DAC_READ_SEARCH (run as root)");
        return;
    }
    struct test_daemon a;
    const char *fh_args[] = {"--migration-mode=file-handles", NULL};
    g_assert_cmpint(test_daemon_start(&a, fh_args), ==, 0);
    gchar *dir = share_path(&a, "d"), *file = g_build_filename(dir, "f", NULL);
    gchar *outside = g_build_filename(a.dir, "outside", NULL);
    g_assert_cmpint(mkdir(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(file, "file-handles", -1, NULL));
    g_assert_true(g_file_set_contents(outside, "secret", -1, NULL));
    struct file_handle *hf = host_handle(file), *hout = host_handle(outside);
    g_assert_cmpint(hf->handle_type, ==, hout->handle_type);
    g_assert_cmpuint(hf->handle_bytes, ==, hout->handle_bytes);

    struct fe *fa = open_state(&a);
    g_assert_cmpint(fe_fuse_init(fa), ==, 0);
    struct fuse_entry_out ed, ef;
    g_assert_cmpint(fe_lookup(fa, FUSE_ROOT_ID, "d", &ed), ==, 0);
    g_assert_cmpint(fe_lookup(fa, ed.nodeid, "f", &ef), ==, 0);
    struct fuse_open_in oin = {.flags = O_RDONLY};
    struct iovec oiov = {&oin, sizeof(oin)};
    struct fe_reply r;
    g_assert_cmpint(
        fe_fuse(fa, Q, FUSE_OPEN, ef.nodeid, &oiov, 1, sizeof(struct fuse_open_out), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    uint64_t fh = ((struct fuse_open_out *)r.data)->fh;
    stop_rings(fa);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fa, 0, 0, p[1]), ==, STATE_NOFD);
    close(p[1]);
    GByteArray *state = read_to_eof(p[0]);
    close(p[0]);
    g_assert_cmpuint(check_state(fa), ==, 0);
    fe_close(fa);
    size_t at = find_handle(state, hf);

    /* find-paths: the paths (nothing renamed yet). */
    struct test_daemon b;
    struct fe *fb = NULL;
    g_assert_cmpuint(load_with(&b, a.share, NULL, state, &fb), ==, 0);
    g_assert_cmpuint(getattr_ino(fb, ef.nodeid), ==, ef.attr.ino);
    fe_close(fb);
    g_assert_true(test_daemon_log_contains(&b, "uses the paths"));
    test_daemon_stop(&b);

    /* Renamed on the host after the SAVE: found by the handles. */
    gchar *dir2 = share_path(&a, "d2"), *file2 = g_build_filename(dir2, "g", NULL);
    g_assert_cmpint(rename(dir, dir2), ==, 0);
    gchar *moved = g_build_filename(dir2, "f", NULL);
    g_assert_cmpint(rename(moved, file2), ==, 0);
    g_assert_cmpuint(load_with(&b, a.share, fh_args, state, &fb), ==, 0);
    g_assert_cmpuint(getattr_ino(fb, ed.nodeid), ==, ed.attr.ino);
    g_assert_cmpuint(getattr_ino(fb, ef.nodeid), ==, ef.attr.ino);
    struct fuse_entry_out eg;
    g_assert_cmpint(fe_lookup(fb, ed.nodeid, "g", &eg), ==, 0);
    g_assert_cmpuint(eg.nodeid, ==, ef.nodeid);
    struct fuse_read_in rin = {.fh = fh, .size = 64};
    struct iovec riov = {&rin, sizeof(rin)};
    g_assert_cmpint(fe_fuse(fb, Q, FUSE_READ, ef.nodeid, &riov, 1, 64, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(r.len, ==, sizeof(struct fuse_out_header) + 12);
    g_assert_cmpmem(r.data, 12, "file-handles", 12);
    fe_close(fb);
    test_daemon_stop(&b);
    /* The same in find-paths mode: the path is gone, so is the LOAD. */
    g_assert_cmpuint(load_with(&b, a.share, NULL, state, &fb), !=, 0);
    fe_close(fb);
    test_daemon_stop(&b);

    /* The file's handle replaced by that of a file next to the share: refused, whichever
     * sandbox (without one the share's own mount opens it). */
    GByteArray *evil = g_byte_array_new();
    g_byte_array_append(evil, state->data, state->len);
    memcpy(evil->data + at, hout->f_handle, hout->handle_bytes);
    const char *none_args[] = {"--migration-mode=file-handles", "--sandbox=none", NULL};
    for (int i = 0; i < 2; i++) {
        g_assert_cmpuint(load_with(&b, a.share, i ? none_args : fh_args, evil, &fb), !=, 0);
        fe_close(fb);
        assert_serving(&b);
        /* In the namespace sandbox the kernel may refuse it already (the share is its
         * mount's root); without a sandbox it opens, and the beneath check refuses it. */
        g_assert_true(test_daemon_log_contains(&b, "not beneath the share") ||
                      (!i && test_daemon_log_contains(&b, "does not open here")));
        test_daemon_stop(&b);
    }
    /* Hostile bytes (the u32 type and u16 length precede the bytes): a length of 0 or 129,
     * a negative type, a type the file system knows not. */
    const struct {
        uint32_t type;
        uint16_t len;
    } bad[] = {{(uint32_t)hf->handle_type, 0},
               {(uint32_t)hf->handle_type, 129},
               {0x80000000u, (uint16_t)hf->handle_bytes},
               {0xee, (uint16_t)hf->handle_bytes}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        g_byte_array_set_size(evil, 0);
        g_byte_array_append(evil, state->data, state->len);
        memcpy(evil->data + at - 6, &bad[i].type, 4);
        memcpy(evil->data + at - 2, &bad[i].len, 2);
        g_assert_cmpuint(load_with(&b, a.share, fh_args, evil, &fb), !=, 0);
        fe_close(fb);
        assert_serving(&b);
        test_daemon_stop(&b);
    }
    g_byte_array_unref(evil);
    g_byte_array_unref(state);
    g_free(hf);
    g_free(hout);
    g_free(moved);
    g_free(dir2);
    g_free(file2);
    g_free(dir);
    g_free(file);
    g_free(outside);
    test_daemon_stop(&a);
}

/*
 * A session that knows more inodes than the destination may have fds: daemon A (the default
 * limit) knows 1500 files in 3 directories; they are LOADed into B with --rlimit-nofile=256.
 * Before, every restored inode kept an fd and the LOAD failed with EMFILE; now they are
 * restored into the fd cache (their saved paths are where it opens them again), every one
 * answers GETATTR with its own inode number, and B stays under its limit.
 */
static void test_load_beyond_fd_limit(void)
{
    enum { DIRS = 3, PER = 500 };
    static struct fuse_entry_out e[DIRS][PER];
    struct test_daemon a, b;
    g_assert_cmpint(test_daemon_start(&a, NULL), ==, 0);
    struct fe *fa = open_state(&a);
    g_assert_cmpint(fe_fuse_init(fa), ==, 0);
    for (int d = 0; d < DIRS; d++) {
        gchar *name = g_strdup_printf("d%d", d), *dir = share_path(&a, name);
        struct fuse_entry_out ed;
        g_assert_cmpint(mkdir(dir, 0755), ==, 0);
        g_assert_cmpint(fe_lookup(fa, FUSE_ROOT_ID, name, &ed), ==, 0);
        for (int i = 0; i < PER; i++) {
            gchar *f = g_strdup_printf("%s/f%d", dir, i), *fname = g_strdup_printf("f%d", i);
            g_assert_true(g_file_set_contents(f, "x", -1, NULL));
            g_assert_cmpint(fe_lookup(fa, ed.nodeid, fname, &e[d][i]), ==, 0);
            g_free(f);
            g_free(fname);
        }
        g_free(name);
        g_free(dir);
    }
    stop_rings(fa);
    int p[2];
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fa, 0, 0, p[1]), ==, STATE_NOFD);
    close(p[1]);
    GByteArray *state = read_to_eof(p[0]);
    close(p[0]);
    g_assert_cmpuint(check_state(fa), ==, 0);
    fe_close(fa);

    const char *low[] = {"--rlimit-nofile=256", NULL};
    struct fe *fb = NULL;
    g_assert_cmpuint(load_with(&b, a.share, low, state, &fb), ==, 0);
    g_byte_array_unref(state);
    for (int round = 0; round < 2; round++)
        for (int d = 0; d < DIRS; d++)
            for (int i = 0; i < PER; i++)
                g_assert_cmpuint(getattr_ino(fb, e[d][i].nodeid), ==, e[d][i].attr.ino);
    g_assert_cmpint(test_daemon_fd_count(&b), <, 256);
    fe_close(fb);
    test_daemon_stop(&b);
    test_daemon_stop(&a);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_data_func("/migration/dirty-log", &daemon_, test_dirty_log);
    g_test_add_data_func("/migration/dirty-log-pool", &pool_daemon, test_dirty_log);
    g_test_add_func("/migration/log-stops", test_log_stops);
    g_test_add_func("/migration/hostile-log-base", test_hostile_log_base);
    g_test_add_func("/migration/log-truncated", test_log_truncated);
    g_test_add_func("/migration/state-save", test_state_save);
    g_test_add_func("/migration/state-refused", test_state_refused);
    g_test_add_func("/migration/state-load-early", test_state_load_early);
    g_test_add_func("/migration/state-disconnect", test_state_disconnect);
    g_test_add_func("/migration/state-a-to-b", test_state_a_to_b);
    g_test_add_func("/migration/locks-a-to-b", test_locks_a_to_b);
    g_test_add_func("/migration/file-handles-a-to-b", test_fh_a_to_b);
    g_test_add_func("/migration/load-beyond-fd-limit", test_load_beyond_fd_limit);
    const char *pool_args[] = {"--thread-pool-size=2", NULL};
    if (test_daemon_start(&daemon_, NULL) < 0 || test_daemon_start(&pool_daemon, pool_args) < 0) {
        g_printerr("cannot start the daemon\n");
        return 1;
    }
    int ret = g_test_run();
    test_daemon_stop(&pool_daemon);
    test_daemon_stop(&daemon_);
    return ret;
}
