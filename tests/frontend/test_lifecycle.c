/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Session lifecycle against one daemon process: many connect/INIT/request/disconnect cycles,
 * disconnects with requests in flight, cloud-hypervisor's reconnect sequence; each followed by
 * a clean session, with the serving process's fds and RSS back at the idle baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

static struct test_daemon daemon_;

#define READ_SIZE (256u << 10)

static long rss_kib(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)test_daemon_serving_pid(&daemon_));
    gchar *text = NULL;
    long kib = -1;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strstr(text, "VmRSS:");
        if (p)
            kib = strtol(p + 6, NULL, 10);
    }
    g_free(text);
    return kib;
}

static struct fe *connect_profile(enum fe_profile profile)
{
    struct fe_config cfg = {.socket_path = daemon_.socket, .profile = profile};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 1000), ==, 0);
    return fe;
}

static void one_session(enum fe_profile profile)
{
    struct fe *fe = connect_profile(profile);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    g_assert_cmpuint(e.attr.size, ==, 5);
    fe_close(fe);
}

/* Waits until the serving process is idle again (its fd count stops changing). */
static int settled_fds(void)
{
    int prev = -1, n = test_daemon_fd_count(&daemon_);
    for (int i = 0; i < 100 && n != prev; i++) {
        g_usleep(20000);
        prev = n;
        n = test_daemon_fd_count(&daemon_);
    }
    return n;
}

static void test_many_cycles(void)
{
    for (int i = 0; i < 10; i++)
        one_session(FE_PROFILE_QEMU);
    int fds = settled_fds();
    long rss = rss_kib();
    g_assert_cmpint(fds, >, 0);
    g_assert_cmpint(rss, >, 0);
    for (int i = 0; i < 1000; i++)
        one_session(i % 2 ? FE_PROFILE_QEMU : FE_PROFILE_CLOUD_HYPERVISOR);
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_cmpint(settled_fds(), ==, fds);
    long grown = rss_kib() - rss;
    g_test_message("RSS %ld KiB before, grew by %ld KiB over 1000 sessions", rss, grown);
#if !defined(__SANITIZE_ADDRESS__) /* ASan's quarantine holds freed memory on purpose */
    g_assert_cmpint(grown, <, 2048);
#endif
}

/* Queues n READ requests of 256 KiB on queue 1 without waiting for them. */
static void submit_reads(struct fe *fe, uint64_t nodeid, uint64_t fh, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t in = fe_alloc(fe, sizeof(struct fuse_in_header) + sizeof(struct fuse_read_in));
        uint64_t out = fe_alloc(fe, sizeof(struct fuse_out_header) + READ_SIZE);
        struct fuse_in_header *h = fe_ptr(fe, in);
        *h = (struct fuse_in_header){.len = sizeof(*h) + sizeof(struct fuse_read_in),
                                     .opcode = FUSE_READ,
                                     .unique = 1000 + i,
                                     .nodeid = nodeid};
        struct fuse_read_in *r = (struct fuse_read_in *)(h + 1);
        *r = (struct fuse_read_in){.fh = fh, .offset = 0, .size = READ_SIZE};
        struct fe_buf b[2] = {{in, h->len, false},
                              {out, sizeof(struct fuse_out_header) + READ_SIZE, true}};
        uint16_t head;
        g_assert_cmpint(fe_vq_add(fe, 1, b, 2, true, &head), ==, 0);
    }
    fe_vq_kick(fe, 1);
}

static void test_disconnect_in_flight(void)
{
    one_session(FE_PROFILE_QEMU);
    int fds = settled_fds();
    for (int round = 0; round < 10; round++) {
        struct fe *fe = connect_profile(FE_PROFILE_QEMU);
        g_assert_cmpint(fe_fuse_init(fe), ==, 0);
        struct fuse_entry_out e;
        g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "big", &e), ==, 0);
        struct fuse_open_in oi = {.flags = O_RDONLY};
        struct iovec iov = {&oi, sizeof(oi)};
        struct fe_reply r;
        g_assert_cmpint(
            fe_fuse(fe, 1, FUSE_OPEN, e.nodeid, &iov, 1, sizeof(struct fuse_open_out), &r), ==, 0);
        g_assert_cmpint(r.error, ==, 0);
        uint64_t fh = ((struct fuse_open_out *)r.data)->fh;
        submit_reads(fe, e.nodeid, fh, 64);
        fe_close(fe); /* gone with 64 requests in flight */
        one_session(FE_PROFILE_QEMU);
    }
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_cmpint(settled_fds(), ==, fds);
}

static void test_cloud_hypervisor_reconnect(void)
{
    struct fe *fe = connect_profile(FE_PROFILE_CLOUD_HYPERVISOR);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    for (int i = 0; i < 5; i++)
        g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    /* The VMM drops and comes back mid-session: rings resume at the current avail index. */
    g_assert_cmpint(fe_reconnect(fe), ==, 0);
    /* The daemon dropped the FUSE session with the connection: requests fail until INIT. */
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, -EIO);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    fe_close(fe);
}

static void test_guest_reset_same_connection(void)
{
    /* QEMU system_reset: same connection, the driver starts over with a new INIT. */
    struct fe *fe = connect_profile(FE_PROFILE_QEMU);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    uint64_t before = e.nodeid;
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_true(test_daemon_log_contains(&daemon_, "resetting FUSE state"));
    /* The old nodeid is gone with the old session. */
    struct fuse_getattr_in gi = {0};
    struct iovec iov = {&gi, sizeof(gi)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_GETATTR, before, &iov, 1, sizeof(struct fuse_attr_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, -EBADF);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    fe_close(fe);
}

/* ---- guest memory shrunk under the daemon (a VMM truncating an unsealed memfd) ------------- */

#define FAULT_LOG "shrank or vanished"

static unsigned log_count(const char *needle)
{
    gchar *text = NULL;
    unsigned n = 0;
    if (g_file_get_contents(daemon_.log, &text, NULL, NULL))
        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
            n++;
    g_free(text);
    return n;
}

/* True if pid exists and is not a zombie. */
static bool process_running(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    gchar *text = NULL;
    bool running = false;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strrchr(text, ')'); /* the state follows the command name */
        running = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    }
    g_free(text);
    return running;
}

/* The serving process when the session started: the same one must serve the next. */
static pid_t serving_pid;

/* A session that has served a request, ready to have its memory cut. */
static struct fe *session_with_one_request(void)
{
    struct fe *fe = connect_profile(FE_PROFILE_QEMU);
    serving_pid = test_daemon_serving_pid(&daemon_);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    return fe;
}

/* After the fault: the daemon closed this connection alone, said why once, lives on and
 * serves the next front-end. */
static void check_connection_lost(struct fe *fe, unsigned logged_before)
{
    g_assert_true(fe_vu_closed(fe, 5000));
    fe_close(fe);
    for (int i = 0; i < 100 && log_count(FAULT_LOG) == logged_before; i++)
        g_usleep(10000);
    /* A process dying of SIGBUS closes its fds a moment before it is gone: looked at after
     * the wait for the log line. The serving process itself, not only the sandbox's monitor,
     * which outlives it a moment. */
    g_assert_true(process_running(serving_pid));
    g_assert_cmpint(test_daemon_serving_pid(&daemon_), ==, serving_pid);
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_cmpuint(log_count(FAULT_LOG), ==, logged_before + 1);
    one_session(FE_PROFILE_QEMU);
    g_assert_cmpint(test_daemon_serving_pid(&daemon_), ==, serving_pid);
}

/* Everything gone, the rings too: the queue worker faults on the avail ring. */
static void test_memory_truncated_to_zero(void)
{
    unsigned logged = log_count(FAULT_LOG);
    struct fe *fe = session_with_one_request();
    g_assert_cmpint(ftruncate(fe_memfd(fe), 0), ==, 0);
    fe_vq_kick(fe, 1); /* the driver "adds" a request the daemon must look for */
    check_connection_lost(fe, logged);
}

/*
 * The rings survive, the reply buffer of a LOOKUP does not: the request is read, served, and
 * the reply written into the lost half (by the queue worker, or a pool thread).
 */
static void test_reply_buffer_truncated(void)
{
    unsigned logged = log_count(FAULT_LOG);
    struct fe *fe = session_with_one_request();
    size_t half = fe_mem_size(fe) / 2;
    const char name[] = "probe";
    size_t in_len = sizeof(struct fuse_in_header) + sizeof(name);
    uint64_t req = fe_alloc(fe, in_len);
    struct fuse_in_header *h = fe_ptr(fe, req);
    *h = (struct fuse_in_header){
        .len = (uint32_t)in_len, .opcode = FUSE_LOOKUP, .unique = 0x5eb05, .nodeid = FUSE_ROOT_ID};
    memcpy(h + 1, name, sizeof(name));
    fe_alloc(fe, half); /* what follows lies in the half about to go */
    size_t out_len = sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out);
    uint64_t reply = fe_alloc(fe, out_len);
    g_assert_cmpuint(reply - fe_gpa_base(fe), >=, half);
    g_assert_cmpint(ftruncate(fe_memfd(fe), (off_t)half), ==, 0);
    /* Direct descriptors: an indirect table would be allocated in the lost half. */
    struct fe_buf b[2] = {{req, (uint32_t)in_len, false}, {reply, (uint32_t)out_len, true}};
    uint16_t head;
    g_assert_cmpint(fe_vq_add(fe, 1, b, 2, false, &head), ==, 0);
    fe_vq_kick(fe, 1);
    check_connection_lost(fe, logged);
}

/* The rings gone while the queues are stopped, then the front-end restarts one: the
 * vhost-user thread itself faults reading the used index (no worker runs to fault first). */
static void test_ring_truncated_under_control_thread(void)
{
    unsigned logged = log_count(FAULT_LOG);
    struct fe *fe = session_with_one_request();
    struct {
        uint32_t index, num;
    } st;
    for (uint32_t q = 0; q < 2; q++) {
        st = (typeof(st)){q, 0};
        g_assert_cmpint(fe_vu_send(fe, FE_VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0), ==, 0);
        uint32_t req, size = sizeof(st);
        g_assert_cmpint(fe_vu_recv(fe, &req, &st, &size, 5000), ==, 0);
    }
    g_assert_cmpint(ftruncate(fe_memfd(fe), 0), ==, 0);
    uint64_t kick = 1 | (1u << 8); /* queue 1, no fd: polled */
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_VRING_KICK, 0, &kick, sizeof(kick), NULL, 0), ==, 0);
    st = (typeof(st)){1, 1};
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_VRING_ENABLE, 0, &st, sizeof(st), NULL, 0), ==, 0);
    check_connection_lost(fe, logged);
}

/*
 * A READ whose data buffer is lost but whose reply header is not: preadv gets EFAULT (the
 * kernel does not raise SIGBUS for its own accesses), the guest gets that error, and the
 * session goes on.
 */
static void test_read_into_truncated_buffer(void)
{
    struct fe *fe = session_with_one_request();
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "big", &e), ==, 0);
    struct fuse_open_in oi = {.flags = O_RDONLY};
    struct iovec iov = {&oi, sizeof(oi)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_OPEN, e.nodeid, &iov, 1, sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    uint64_t fh = ((struct fuse_open_out *)r.data)->fh;

    size_t mark = fe_alloc_mark(fe);
    size_t half = fe_mem_size(fe) / 2;
    size_t in_len = sizeof(struct fuse_in_header) + sizeof(struct fuse_read_in);
    uint64_t req = fe_alloc(fe, in_len);
    uint64_t out = fe_alloc(fe, sizeof(struct fuse_out_header));
    struct fuse_in_header *h = fe_ptr(fe, req);
    *h = (struct fuse_in_header){
        .len = (uint32_t)in_len, .opcode = FUSE_READ, .unique = 0x4ead, .nodeid = e.nodeid};
    *(struct fuse_read_in *)(h + 1) = (struct fuse_read_in){.fh = fh, .size = READ_SIZE};
    struct fuse_out_header *o = fe_ptr(fe, out);
    memset(o, 0, sizeof(*o));
    fe_alloc(fe, half);
    uint64_t data = fe_alloc(fe, READ_SIZE);
    g_assert_cmpuint(data - fe_gpa_base(fe), >=, half);
    g_assert_cmpint(ftruncate(fe_memfd(fe), (off_t)half), ==, 0);
    struct fe_buf b[3] = {{req, (uint32_t)in_len, false},
                          {out, sizeof(struct fuse_out_header), true},
                          {data, READ_SIZE, true}};
    uint16_t head, got;
    uint32_t len;
    g_assert_cmpint(fe_vq_add(fe, 1, b, 3, false, &head), ==, 0);
    fe_vq_kick(fe, 1);
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(got, ==, head);
    fe_vq_free_chain(fe, 1, got);
    g_assert_cmpuint(len, ==, sizeof(*o));
    g_assert_cmpint(o->error, ==, -EFAULT);
    g_assert_cmphex(o->unique, ==, 0x4ead);
    fe_alloc_release(fe, mark);

    /* The session goes on in the memory that is left. */
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    g_assert_false(fe_vu_closed(fe, 0));
    fe_close(fe);
    g_assert_true(test_daemon_alive(&daemon_));
}

static long status_field(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    gchar *text = NULL;
    long v = -1;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strstr(text, field);
        if (p)
            v = strtol(p + strlen(field), NULL, 0);
    }
    g_free(text);
    return v;
}

static bool same_ns(pid_t pid, const char *ns)
{
    char a[64], b[64], la[64] = "", lb[64] = "";
    snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns);
    snprintf(b, sizeof(b), "/proc/self/ns/%s", ns);
    return readlink(a, la, sizeof(la) - 1) > 0 && readlink(b, lb, sizeof(lb) - 1) > 0 &&
           strcmp(la, lb) == 0;
}

static void test_unprivileged_sandbox(void)
{
    if (geteuid() != 0) {
        g_test_skip("needs root to switch to an unprivileged user");
        return;
    }
#if defined(__SANITIZE_ADDRESS__)
    g_test_skip("sanitizer builds run the daemon without its sandbox");
    return;
#endif
    struct test_daemon u;
    g_assert_cmpint(test_daemon_start_as(&u, NULL, 65534, 65534), ==, 0);
    pid_t server = test_daemon_serving_pid(&u);
    /* The intermediate process sits between the monitor and the server. */
    for (int i = 0; i < 3 && same_ns(server, "pid"); i++)
        server = test_daemon_serving_pid(&(struct test_daemon){.pid = server});
    g_assert_false(same_ns(server, "user"));
    g_assert_false(same_ns(server, "pid"));
    g_assert_false(same_ns(server, "mnt"));
    g_assert_cmpint(status_field(server, "NoNewPrivs:"), ==, 1);
    g_assert_cmpint(status_field(server, "Seccomp:"), ==, 2);

    struct fe_config cfg = {.socket_path = u.socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open(&cfg, &fe), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_mkdir_in mi = {.mode = 0755};
    struct iovec iov[2] = {{&mi, sizeof(mi)}, {"made-unprivileged", 18}};
    struct fe_reply r;
    g_assert_cmpint(
        fe_fuse(fe, 1, FUSE_MKDIR, FUSE_ROOT_ID, iov, 2, sizeof(struct fuse_entry_out), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    fe_close(fe);
    gchar *made = g_build_filename(u.share, "made-unprivileged", NULL);
    struct stat st;
    g_assert_cmpint(stat(made, &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, 65534); /* the daemon's own uid: it cannot be anyone else */
    g_free(made);
    g_assert_cmpint(test_daemon_stop(&u), ==, 0);
}

/*
 * --uid-map/--gid-map: started unprivileged with ranges from /etc/subuid and /etc/subgid, the
 * daemon has newuidmap/newgidmap map them into its user namespace, and guest callers inside
 * the range act as their mapped host ids. The test runs in a private mount namespace with
 * its own /etc/subuid and /etc/subgid bind-mounted over the host's, which stay untouched.
 */
#define MAP_BASE 200000u

static bool bind_file(const char *content, const char *target)
{
    gchar *tmp = NULL;
    gint fd = g_file_open_tmp("vfs-subid-XXXXXX", &tmp, NULL);
    if (fd < 0)
        return false;
    bool ok = write(fd, content, strlen(content)) == (ssize_t)strlen(content) &&
              fchmod(fd, 0644) == 0 && mount(tmp, target, NULL, MS_BIND, NULL) == 0;
    close(fd);
    unlink(tmp); /* the bind mount keeps the file */
    g_free(tmp);
    return ok;
}

static int mkdir_as(struct fe *fe, uint32_t id, const char *name)
{
    struct fuse_mkdir_in mi = {.mode = 0755};
    struct iovec iov[2] = {{&mi, sizeof(mi)}, {(void *)name, strlen(name) + 1}};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe, 1, id, id, FUSE_MKDIR, FUSE_ROOT_ID, iov, 2,
                               sizeof(struct fuse_entry_out), &r),
                    ==, 0);
    return r.error;
}

static void test_unprivileged_id_maps(void)
{
    gchar *nuid = g_find_program_in_path("newuidmap"), *ngid = g_find_program_in_path("newgidmap");
    bool tools = nuid && ngid;
    g_free(nuid);
    g_free(ngid);
    if (geteuid() != 0 || !tools) {
        g_test_skip("needs root and newuidmap/newgidmap (package uidmap)");
        return;
    }
#if defined(__SANITIZE_ADDRESS__)
    g_test_skip("sanitizer builds run the daemon without its sandbox");
    return;
#endif
    /* A private mount namespace for the rest of this process: the host's files stay. */
    g_assert_cmpint(unshare(CLONE_NEWNS), ==, 0);
    g_assert_cmpint(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), ==, 0);
    gchar *line = g_strdup_printf("nobody:%u:65536\n65534:%u:65536\n", MAP_BASE, MAP_BASE);
    g_assert_true(bind_file(line, "/etc/subuid"));
    g_assert_true(bind_file(line, "/etc/subgid"));
    g_free(line);

    gchar *range = g_strdup_printf("--uid-map=:1:%u:65536:", MAP_BASE);
    gchar *grange = g_strdup_printf("--gid-map=:1:%u:65536:", MAP_BASE);
    const char *args[] = {"--uid-map=:0:65534:1:", range, "--gid-map=:0:65534:1:", grange, NULL};
    struct test_daemon u;
    g_assert_cmpint(test_daemon_start_as(&u, args, 65534, 65534), ==, 0);
    g_free(range);
    g_free(grange);
    g_assert_cmpint(chmod(u.share, 0777), ==, 0); /* guest uid 5 creates in the root */

    struct fe_config cfg = {.socket_path = u.socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open(&cfg, &fe), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpint(mkdir_as(fe, 0, "by-ns-root"), ==, 0);
    g_assert_cmpint(mkdir_as(fe, 5, "by-ns-5"), ==, 0);
    /* Outside every mapped range: the kernel refuses to act as an unmapped id. */
    g_assert_cmpint(mkdir_as(fe, 70000, "by-unmapped"), !=, 0);
    fe_close(fe);

    struct stat st;
    gchar *p = g_build_filename(u.share, "by-ns-root", NULL);
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, 65534); /* namespace root is the daemon's own user */
    g_free(p);
    p = g_build_filename(u.share, "by-ns-5", NULL);
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, MAP_BASE + 4); /* ns id 1 is host MAP_BASE */
    g_assert_cmpuint(st.st_gid, ==, MAP_BASE + 4);
    g_free(p);
    g_assert_cmpint(test_daemon_stop(&u), ==, 0);
    umount2("/etc/subuid", MNT_DETACH);
    umount2("/etc/subgid", MNT_DETACH);
}

/* ---- start-up and command line ---------------------------------------------------------- */

static void remove_dir(gchar *dir)
{
    gchar *cmd = g_strdup_printf("rm -rf '%s'", dir);
    g_assert_cmpint(system(cmd), ==, 0);
    g_free(cmd);
    g_free(dir);
}

/* Runs the daemon binary to completion; returns its exit status, output in *out. */
static int run_daemon_sync(const char *const *args, gchar **out)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer)test_daemon_path());
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (gpointer)*a);
    g_ptr_array_add(argv, NULL);
    gchar *err = NULL;
    gint status = -1;
    g_assert_true(g_spawn_sync(NULL, (gchar **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out,
                               &err, &status, NULL));
    gchar *joined = g_strconcat(*out, err, NULL);
    g_free(*out);
    g_free(err);
    *out = joined;
    g_ptr_array_free(argv, TRUE);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_second_daemon_refused(void)
{
    gchar *sock = g_strdup_printf("--socket-path=%s", daemon_.socket);
    gchar *share = g_strdup_printf("--shared-dir=%s", daemon_.share);
    const char *args[] = {sock, share, "--sandbox=none", "--seccomp=none", NULL};
    gchar *out = NULL;
    g_assert_cmpint(run_daemon_sync(args, &out), ==, 1); /* fatal, not a usage error */
    g_assert_nonnull(strstr(out, "another virtiofsd (pid"));
    g_free(out);
    g_free(sock);
    g_free(share);
    one_session(FE_PROFILE_QEMU); /* the first one is unaffected */
}

static void test_usage_errors(void)
{
    const char *bad_cache[] = {"--socket-path=/tmp/x", "--shared-dir=/tmp", "--cache=bogus", NULL};
    gchar *out = NULL;
    g_assert_cmpint(run_daemon_sync(bad_cache, &out), ==, 2);
    g_assert_nonnull(strstr(out, "--cache"));
    g_assert_nonnull(strstr(out, "auto, always, never, metadata"));
    g_free(out);
    const char *caps[] = {"--print-capabilities", NULL};
    g_assert_cmpint(run_daemon_sync(caps, &out), ==, 0);
    g_assert_nonnull(strstr(out, "\"type\": \"fs\""));
    g_assert_nonnull(strstr(out, "\"migrate-precopy\"")); /* libvirt allows migration on it */
    g_free(out);
}

/* Forks the daemon with args; its output goes to log. */
static pid_t spawn_daemon(const char *const *args, const char *log, int keep_fd)
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        if (keep_fd >= 0)
            fcntl(keep_fd, F_SETFD, 0); /* inherited, as from systemd or libvirt */
        const char *argv[16] = {test_daemon_path()};
        int n = 1;
        for (int i = 0; args[i] && n < 13; i++)
            argv[n++] = args[i];
#if defined(__SANITIZE_ADDRESS__) /* see test_daemon_start_as() */
        argv[n++] = "--sandbox=none";
        argv[n++] = "--seccomp=none";
#endif
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    return pid;
}

static int term_and_wait(pid_t pid, int sig)
{
    kill(pid, sig);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void serve_one_at(const char *socket_path)
{
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_session(socket_path, 5000, &fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, ".", &e), ==, 0);
    fe_close(fe);
}

static void test_stale_socket_and_group(void)
{
    gchar *dir = g_dir_make_tmp("vfs-stale-XXXXXX", NULL);
    gchar *path = g_build_filename(dir, "sock", NULL);
    gchar *log = g_build_filename(dir, "log", NULL);
    /* A socket file nobody listens on, as a daemon killed with -9 leaves behind. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    g_strlcpy(a.sun_path, path, sizeof(a.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    close(fd);
    gchar *sock = g_strdup_printf("--socket-path=%s", path);
    gchar *share = g_strdup_printf("--shared-dir=%s", dir);
    const char *args[] = {sock, share, "--socket-group=nogroup", NULL};
    pid_t pid = spawn_daemon(args, log, -1);
    serve_one_at(path);
    struct stat st;
    struct group *gr = getgrnam("nogroup");
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_nonnull(gr);
    g_assert_cmpuint(st.st_gid, ==, gr->gr_gid);
    g_assert_cmpuint(st.st_mode & 0777, ==, 0660);
    g_assert_cmpint(term_and_wait(pid, SIGINT), ==, 0);
    g_assert_cmpint(access(path, F_OK), !=, 0); /* removed at exit */
    gchar *pidfile = g_strconcat(path, ".pid", NULL);
    g_assert_cmpint(access(pidfile, F_OK), !=, 0);
    g_free(pidfile);
    g_free(sock), g_free(share), g_free(log), g_free(path);
    remove_dir(dir);
}

static void test_socket_activation_fd(void)
{
    gchar *dir = g_dir_make_tmp("vfs-fd-XXXXXX", NULL);
    gchar *path = g_build_filename(dir, "sock", NULL);
    gchar *log = g_build_filename(dir, "log", NULL);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    g_strlcpy(a.sun_path, path, sizeof(a.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    gchar *fdarg = g_strdup_printf("--fd=%d", fd);
    gchar *share = g_strdup_printf("--shared-dir=%s", dir);
    /* Kept serving as systemd socket activation may want it (the default with --fd is to
     * exit with the front-end: test_manager). */
    const char *args[] = {fdarg, share, "--on-disconnect=listen", NULL};
    pid_t pid = spawn_daemon(args, log, fd);
    close(fd);
    serve_one_at(path);
    serve_one_at(path); /* and again after the first session ended */
    g_assert_cmpint(term_and_wait(pid, SIGTERM), ==, 0);
    g_free(fdarg), g_free(share), g_free(log), g_free(path);
    remove_dir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/lifecycle/1000-sessions", test_many_cycles);
    g_test_add_func("/lifecycle/disconnect-64-in-flight", test_disconnect_in_flight);
    g_test_add_func("/lifecycle/cloud-hypervisor-reconnect", test_cloud_hypervisor_reconnect);
    g_test_add_func("/lifecycle/guest-reset-same-connection", test_guest_reset_same_connection);
    g_test_add_func("/guest-memory/truncated-to-zero", test_memory_truncated_to_zero);
    g_test_add_func("/guest-memory/reply-buffer-truncated", test_reply_buffer_truncated);
    g_test_add_func("/guest-memory/ring-truncated-under-control-thread",
                    test_ring_truncated_under_control_thread);
    g_test_add_func("/guest-memory/read-into-truncated-buffer", test_read_into_truncated_buffer);
    g_test_add_func("/sandbox/unprivileged-user-namespace", test_unprivileged_sandbox);
    g_test_add_func("/sandbox/unprivileged-id-maps", test_unprivileged_id_maps);
    g_test_add_func("/startup/second-daemon-refused", test_second_daemon_refused);
    g_test_add_func("/startup/usage-errors-and-capabilities", test_usage_errors);
    g_test_add_func("/startup/stale-socket-group-clean-exit", test_stale_socket_and_group);
    g_test_add_func("/startup/socket-activation-fd", test_socket_activation_fd);
    if (test_daemon_start(&daemon_, NULL) < 0) {
        g_printerr("cannot start the daemon\n");
        return 1;
    }
    gchar *probe = g_build_filename(daemon_.share, "probe", NULL);
    gchar *big = g_build_filename(daemon_.share, "big", NULL);
    gchar *data = g_malloc0(4u << 20);
    g_assert_true(g_file_set_contents(probe, "probe", -1, NULL));
    g_assert_true(g_file_set_contents(big, data, 4u << 20, NULL));
    g_free(data);
    g_free(probe);
    g_free(big);
    int ret = g_test_run();
    g_assert_true(test_daemon_alive(&daemon_));
    int rc = test_daemon_stop(&daemon_);
    if (rc != 0) {
        g_printerr("daemon exited with status %d\n", rc);
        ret = 1;
    }
    return ret;
}
