/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protocol-level integration tests: a real virtiofsd process driven through its socket by
 * the test front-end, with results checked against the host filesystem. Hostile-input tests
 * assert that the daemon survives, that the connection is in the state the README's policy
 * says, and that the next request (or connection) is served.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

static struct test_daemon daemon_;

static struct fe *open_fe(enum fe_profile profile)
{
    struct fe_config cfg = {.socket_path = daemon_.socket, .profile = profile};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 1000), ==, 0);
    return fe;
}

static struct fe *open_initialized(void)
{
    struct fe *fe = open_fe(FE_PROFILE_QEMU);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    return fe;
}

static char *share_path(const char *name)
{
    return g_build_filename(daemon_.share, name, NULL);
}

static void write_host_file(const char *name, const char *content)
{
    char *p = share_path(name);
    g_assert_true(g_file_set_contents(p, content, -1, NULL));
    g_free(p);
}

/* The daemon is alive and a fresh request on the connection is served. */
static void assert_serving(struct fe *fe)
{
    g_assert_true(test_daemon_alive(&daemon_));
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
}

/* ---- happy paths ---- */

static void test_init_and_lookup(void)
{
    write_host_file("probe", "probe");
    struct fe *fe = open_fe(FE_PROFILE_QEMU);
    struct fuse_init_in in = {
        .major = 7, .minor = 38, .max_readahead = 65536, .flags = FUSE_MAX_PAGES | FUSE_INIT_EXT};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_INIT, 0, &iov, 1, sizeof(struct fuse_init_out), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct fuse_init_out *out = (struct fuse_init_out *)r.data;
    g_assert_cmpuint(out->major, ==, 7);
    g_assert_cmpuint(out->max_write, ==, 1u << 20);
    g_assert_cmpuint(out->max_pages, ==, 256);

    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    struct stat st;
    char *p = share_path("probe");
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_free(p);
    g_assert_cmpuint(e.attr.ino, ==, st.st_ino);
    g_assert_cmpuint(e.attr.size, ==, 5);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "missing", &e), ==, -ENOENT);
    fe_close(fe);
}

static void test_cloud_hypervisor_profile(void)
{
    struct fe *fe = open_fe(FE_PROFILE_CLOUD_HYPERVISOR);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    assert_serving(fe);
    fe_close(fe);
}

static void test_write_read_roundtrip(void)
{
    struct fe *fe = open_initialized();
    struct fuse_create_in ci = {.flags = O_RDWR | O_CREAT, .mode = 0644, .umask = 022};
    struct iovec civ[2] = {{&ci, sizeof(ci)}, {"rt.bin", 7}};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_CREATE, FUSE_ROOT_ID, civ, 2,
                            sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct fuse_entry_out e;
    struct fuse_open_out o;
    memcpy(&e, r.data, sizeof(e));
    memcpy(&o, r.data + sizeof(e), sizeof(o));

    size_t len = 200000;
    uint8_t *data = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    struct fuse_write_in wi = {.fh = o.fh, .offset = 0, .size = (uint32_t)len};
    struct iovec wiv[2] = {{&wi, sizeof(wi)}, {data, len}};
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_WRITE, e.nodeid, wiv, 2, sizeof(struct fuse_write_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(((struct fuse_write_out *)r.data)->size, ==, len);

    char *p = share_path("rt.bin");
    gchar *host = NULL;
    gsize host_len = 0;
    g_assert_true(g_file_get_contents(p, &host, &host_len, NULL));
    g_assert_cmpuint(host_len, ==, len);
    g_assert_true(memcmp(host, data, len) == 0);

    struct fuse_read_in ri = {.fh = o.fh, .offset = 1000, .size = 100000};
    struct iovec riv = {&ri, sizeof(ri)};
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_READ, e.nodeid, &riv, 1, 100000, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(r.data_len, ==, 100000);
    g_assert_true(memcmp(r.data, data + 1000, 100000) == 0);

    struct fuse_release_in rel = {.fh = o.fh};
    struct iovec relv = {&rel, sizeof(rel)};
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_RELEASE, e.nodeid, &relv, 1, 0, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_free(host);
    g_free(p);
    g_free(data);
    fe_close(fe);
}

static void test_tmpfile_then_link(void)
{
    struct fe *fe = open_initialized();
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = 0600};
    struct iovec civ[2] = {{&ci, sizeof(ci)}, {"/", 2}}; /* the kernel's placeholder name */
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_TMPFILE, FUSE_ROOT_ID, civ, 2,
                            sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct fuse_entry_out e;
    struct fuse_open_out o;
    memcpy(&e, r.data, sizeof(e));
    memcpy(&o, r.data + sizeof(e), sizeof(o));
    g_assert_cmpuint(e.attr.nlink, ==, 0); /* no name yet */
    struct fuse_write_in wi = {.fh = o.fh, .size = 9};
    struct iovec wiv[2] = {{&wi, sizeof(wi)}, {"tmp-data\n", 9}};
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_WRITE, e.nodeid, wiv, 2, sizeof(struct fuse_write_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct fuse_link_in li = {.oldnodeid = e.nodeid};
    struct iovec liv[2] = {{&li, sizeof(li)}, {"from-tmpfile", 13}};
    g_assert_cmpint(
        fe_fuse(fe, 1, FUSE_LINK, FUSE_ROOT_ID, liv, 2, sizeof(struct fuse_entry_out), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    char *p = share_path("from-tmpfile");
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(p, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "tmp-data\n");
    g_free(text);
    g_free(p);
    /* A file is no directory to make an unnamed file in. */
    struct fuse_entry_out fe_probe;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &fe_probe), ==, 0);
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_TMPFILE, fe_probe.nodeid, civ, 2,
                            sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, -ENOTDIR);
    fe_close(fe);
}

static void test_reconnect(void)
{
    for (int i = 0; i < 20; i++) {
        struct fe *fe = open_initialized();
        assert_serving(fe);
        fe_close(fe);
    }
    g_assert_true(test_daemon_alive(&daemon_));
}

/* ---- hostile guest: descriptor chains ---- */

/* Sends a raw chain, expects it back with used length 0, then a normal request served. */
static void expect_rejected_chain(struct fe *fe, const struct fe_buf *bufs, unsigned n)
{
    uint16_t head, got;
    uint32_t len;
    g_assert_cmpint(fe_vq_add(fe, 1, bufs, n, false, &head), ==, 0);
    fe_vq_kick(fe, 1);
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(got, ==, head);
    g_assert_cmpuint(len, ==, 0);
    fe_vq_free_chain(fe, 1, got);
    assert_serving(fe);
}

static void test_desc_outside_memory(void)
{
    struct fe *fe = open_initialized();
    uint64_t out = fe_alloc(fe, 256);
    struct fe_buf bufs[2] = {{fe_gpa_base(fe) + fe_mem_size(fe) + 4096, 64, false},
                             {out, 256, true}};
    expect_rejected_chain(fe, bufs, 2);
    fe_close(fe);
}

static void test_desc_straddles_region_end(void)
{
    struct fe *fe = open_initialized();
    uint64_t out = fe_alloc(fe, 256);
    struct fe_buf bufs[2] = {{fe_gpa_base(fe) + fe_mem_size(fe) - 16, 64, false}, {out, 256, true}};
    expect_rejected_chain(fe, bufs, 2);
    fe_close(fe);
}

static void test_chain_loop(void)
{
    struct fe *fe = open_initialized();
    uint64_t buf = fe_alloc(fe, 64);
    struct vring_desc *d = fe_vq_desc(fe, 1);
    /* Descriptors 100 -> 101 -> 100 ... */
    d[100] = (struct vring_desc){buf, 8, VRING_DESC_F_NEXT, 101};
    d[101] = (struct vring_desc){buf, 8, VRING_DESC_F_NEXT, 100};
    fe_vq_publish(fe, 1, 100);
    fe_vq_kick(fe, 1);
    uint16_t got;
    uint32_t len;
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(got, ==, 100);
    g_assert_cmpuint(len, ==, 0);
    assert_serving(fe);
    fe_close(fe);
}

static void test_chain_longer_than_queue(void)
{
    struct fe *fe = open_initialized();
    uint64_t buf = fe_alloc(fe, 64);
    struct vring_desc *d = fe_vq_desc(fe, 1);
    unsigned n = fe_vq_size(fe, 1);
    /* Every descriptor of the table in one chain, and then one more: the last names the
     * first again, so the walk would exceed the queue size. */
    for (unsigned i = 0; i < n; i++)
        d[i] = (struct vring_desc){buf, 8, VRING_DESC_F_NEXT, (uint16_t)((i + 1) % n)};
    fe_vq_publish(fe, 1, 0);
    fe_vq_kick(fe, 1);
    uint16_t got;
    uint32_t len;
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(got, ==, 0);
    g_assert_cmpuint(len, ==, 0);
    fe_close(fe); /* the descriptor table is no longer the front-end's free list */
    struct fe *again = open_initialized();
    assert_serving(again);
    fe_close(again);
}

static void test_bad_next_index(void)
{
    struct fe *fe = open_initialized();
    uint64_t buf = fe_alloc(fe, 64);
    struct vring_desc *d = fe_vq_desc(fe, 1);
    d[90] = (struct vring_desc){buf, 8, VRING_DESC_F_NEXT, 60000};
    fe_vq_publish(fe, 1, 90);
    fe_vq_kick(fe, 1);
    uint16_t got;
    uint32_t len;
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(got, ==, 90);
    g_assert_cmpuint(len, ==, 0);
    assert_serving(fe);
    fe_close(fe);
}

static void test_avail_idx_jump(void)
{
    struct fe *fe = open_initialized();
    struct vring_avail *a = fe_vq_avail(fe, 1);
    uint16_t saved = a->idx;
    __atomic_store_n(&a->idx, (uint16_t)(saved + 1000), __ATOMIC_RELEASE);
    fe_vq_kick(fe, 1);
    g_usleep(50000);
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_true(test_daemon_log_contains(&daemon_, "ahead of"));
    __atomic_store_n(&a->idx, saved, __ATOMIC_RELEASE); /* the driver recovers */
    assert_serving(fe);
    fe_close(fe);
}

/* ---- hostile guest: FUSE framing ---- */

static void raw_request(struct fe *fe, const void *req, size_t len, size_t out_len, uint32_t *used,
                        struct fuse_out_header *oh)
{
    uint64_t in = fe_alloc(fe, len ? len : 1);
    uint64_t out = fe_alloc(fe, out_len ? out_len : 1);
    memcpy(fe_ptr(fe, in), req, len);
    memset(fe_ptr(fe, out), 0xa5, out_len);
    struct fe_buf bufs[2] = {{in, (uint32_t)len, false}, {out, (uint32_t)out_len, true}};
    uint16_t head, got;
    g_assert_cmpint(fe_vq_add(fe, 1, bufs, out_len ? 2 : 1, false, &head), ==, 0);
    fe_vq_kick(fe, 1);
    g_assert_cmpint(fe_vq_get_used(fe, 1, &got, used, 5000), ==, 0);
    g_assert_cmpuint(got, ==, head);
    fe_vq_free_chain(fe, 1, got);
    if (*used >= sizeof(*oh))
        memcpy(oh, fe_ptr(fe, out), sizeof(*oh));
}

static void test_header_len_mismatch(void)
{
    struct fe *fe = open_initialized();
    struct {
        struct fuse_in_header h;
        char name[8];
    } req = {{.opcode = FUSE_LOOKUP, .unique = 77, .nodeid = 1}, "probe"};
    uint32_t used;
    struct fuse_out_header oh;
    req.h.len = sizeof(req) + 100; /* claims more than sent */
    raw_request(fe, &req, sizeof(req), 256, &used, &oh);
    g_assert_cmpuint(used, ==, sizeof(oh));
    g_assert_cmpint(oh.error, ==, -EINVAL);
    g_assert_cmpuint(oh.unique, ==, 77);
    req.h.len = sizeof(req.h); /* claims less than sent */
    raw_request(fe, &req, sizeof(req), 256, &used, &oh);
    g_assert_cmpint(oh.error, ==, -EINVAL);
    assert_serving(fe);
    fe_close(fe);
}

static void test_short_header(void)
{
    struct fe *fe = open_initialized();
    uint8_t junk[20] = {0};
    uint32_t used;
    struct fuse_out_header oh;
    raw_request(fe, junk, sizeof(junk), 256, &used, &oh);
    g_assert_cmpuint(used, ==, 0);
    assert_serving(fe);
    fe_close(fe);
}

static void test_unknown_opcode(void)
{
    struct fe *fe = open_initialized();
    struct fuse_in_header h = {.len = sizeof(h), .opcode = 9999, .unique = 5};
    uint32_t used;
    struct fuse_out_header oh;
    raw_request(fe, &h, sizeof(h), 64, &used, &oh);
    g_assert_cmpint(oh.error, ==, -ENOSYS);
    assert_serving(fe);
    fe_close(fe);
}

static void test_unknown_nodeid_and_fh(void)
{
    struct fe *fe = open_initialized();
    struct fuse_getattr_in gi = {0};
    struct iovec iov = {&gi, sizeof(gi)};
    struct fe_reply r;
    g_assert_cmpint(
        fe_fuse(fe, 1, FUSE_GETATTR, 0xdeadbeef, &iov, 1, sizeof(struct fuse_attr_out), &r), ==, 0);
    g_assert_cmpint(r.error, <, 0);
    struct fuse_read_in ri = {.fh = 0x12345678, .size = 4096};
    struct iovec riv = {&ri, sizeof(ri)};
    g_assert_cmpint(fe_fuse(fe, 1, FUSE_READ, FUSE_ROOT_ID, &riv, 1, 4096, &r), ==, 0);
    g_assert_cmpint(r.error, <, 0);
    /* FORGET of a node never issued: no reply, no harm. */
    struct fuse_forget_in fi = {.nlookup = 5};
    struct fuse_in_header h = {
        .len = sizeof(h) + sizeof(fi), .opcode = FUSE_FORGET, .unique = 9, .nodeid = 424242};
    uint8_t req[sizeof(h) + sizeof(fi)];
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), &fi, sizeof(fi));
    uint64_t in = fe_alloc(fe, sizeof(req));
    memcpy(fe_ptr(fe, in), req, sizeof(req));
    struct fe_buf b = {in, sizeof(req), false};
    uint16_t head, got;
    uint32_t len;
    g_assert_cmpint(fe_vq_add(fe, 0, &b, 1, false, &head), ==, 0);
    fe_vq_kick(fe, 0);
    g_assert_cmpint(fe_vq_get_used(fe, 0, &got, &len, 5000), ==, 0);
    g_assert_cmpuint(len, ==, 0);
    assert_serving(fe);
    fe_close(fe);
}

static void test_names_escaping(void)
{
    struct fe *fe = open_initialized();
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "a/b", &e), ==, -EINVAL);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "..", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, FUSE_ROOT_ID);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "../../etc/passwd", &e), ==, -EINVAL);
    fe_close(fe);
}

/* ---- hostile VMM: vhost-user messages ---- */

static struct fe *open_raw(void)
{
    struct fe_config cfg = {.socket_path = daemon_.socket, .skip_setup = true};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 1000), ==, 0);
    /* Negotiate REPLY_ACK so every set message can be acked. */
    uint64_t v = 1ull << 30;
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_FEATURES, 0, &v, 8, NULL, 0), ==, 0);
    v = (1ull << 3) | (1ull << 15);
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_PROTOCOL_FEATURES, 0, &v, 8, NULL, 0), ==, 0);
    return fe;
}

struct mem_table {
    uint32_t nregions, padding;
    uint64_t gpa, size, uva, offset;
};

static void test_bad_mem_tables(void)
{
    struct fe *fe = open_raw();
    int fd = fe_memfd(fe);
    size_t size = fe_mem_size(fe);
    struct mem_table zero_regions = {0};
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &zero_regions, 8, NULL, 0), >, 0);
    struct mem_table t = {1, 0, 0x1000, 0, 0x7f0000000000, 0}; /* size 0 */
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &t, sizeof(t), &fd, 1), >, 0);
    t.size = 0x2000;
    t.gpa = UINT64_MAX - 0xfff; /* wraps 2^64 */
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &t, sizeof(t), &fd, 1), >, 0);
    t.gpa = 0;
    t.size = size * 2; /* larger than the memfd */
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &t, sizeof(t), &fd, 1), >, 0);
    t.size = size;
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &t, sizeof(t), NULL, 0), >, 0); /* no fd */
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &t, sizeof(t), &fd, 1), ==, 0); /* good */
    int fds[2] = {fd, fd};
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_MEM_TABLE, &t, sizeof(t), fds, 2), >, 0); /* 2 fds */
    g_assert_true(test_daemon_alive(&daemon_));
    fe_close(fe);
}

static void test_unknown_request_need_reply(void)
{
    struct fe *fe = open_raw();
    g_assert_cmpint(fe_vu_ack(fe, 200, NULL, 0, NULL, 0), >, 0);
    uint64_t v;
    g_assert_cmpint(fe_vu_get_u64(fe, FE_VU_GET_FEATURES, &v), ==, 0);
    fe_close(fe);
}

static void test_oversized_message(void)
{
    struct fe *fe = open_raw();
    /* A header announcing a payload far larger than any message: the connection is closed. */
    uint8_t junk[64] = {0};
    struct {
        uint32_t request, flags, size;
    } __attribute__((packed)) h = {FE_VU_SET_FEATURES, FE_VU_FLAG_VERSION, 1u << 30};
    g_assert_cmpint(send(fe_socket(fe), &h, sizeof(h), MSG_NOSIGNAL), ==, sizeof(h));
    g_assert_cmpint(send(fe_socket(fe), junk, sizeof(junk), MSG_NOSIGNAL), ==, sizeof(junk));
    g_assert_true(fe_vu_closed(fe, 5000));
    fe_close(fe);
    g_assert_true(test_daemon_alive(&daemon_));
    struct fe *again = open_initialized(); /* the next connection is served */
    assert_serving(again);
    fe_close(again);
}

static void test_truncated_payload(void)
{
    struct fe *fe = open_raw();
    /* The header announces 40 bytes; only 10 follow, and the front-end then waits. */
    struct {
        uint32_t request, flags, size;
        uint8_t part[10];
    } __attribute__((packed)) m = {FE_VU_SET_VRING_ADDR, FE_VU_FLAG_VERSION, 40, {0}};
    g_assert_cmpint(send(fe_socket(fe), &m, sizeof(m), MSG_NOSIGNAL), ==, sizeof(m));
    g_assert_true(fe_vu_closed(fe, 15000)); /* dropped after the daemon's I/O timeout */
    fe_close(fe);
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_true(test_daemon_log_contains(&daemon_, "timed out"));
    struct fe *again = open_initialized();
    assert_serving(again);
    fe_close(again);
}

static void test_wrong_payload_size(void)
{
    struct fe *fe = open_raw();
    uint32_t small = 1;
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_FEATURES, &small, sizeof(small), NULL, 0), >, 0);
    uint64_t idx = 99; /* SET_VRING_CALL for a queue that does not exist */
    int fd = fe_memfd(fe);
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_VRING_CALL, &idx, 8, &fd, 1), >, 0);
    idx = 1; /* a vring fd message with no fd and no "no fd" flag */
    g_assert_cmpint(fe_vu_ack(fe, FE_VU_SET_VRING_KICK, &idx, 8, NULL, 0), >, 0);
    g_assert_true(test_daemon_alive(&daemon_));
    fe_close(fe);
}

static void test_second_connection_refused(void)
{
    struct fe *first = open_initialized();
    struct fe_config cfg = {.socket_path = daemon_.socket};
    struct fe *second = NULL;
    g_assert_cmpint(fe_open(&cfg, &second), <, 0);
    assert_serving(first);
    g_assert_true(test_daemon_log_contains(&daemon_, "refusing a second front-end"));
    fe_close(first);
}

static void test_fd_baseline(void)
{
    struct fe *fe = open_initialized();
    fe_close(fe);
    g_usleep(100000);
    int base = test_daemon_fd_count(&daemon_);
    for (int i = 0; i < 30; i++) {
        fe = open_initialized();
        struct fuse_entry_out e;
        g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
        fe_close(fe);
    }
    g_usleep(100000);
    g_assert_cmpint(test_daemon_fd_count(&daemon_), ==, base);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/protocol/init-lookup", test_init_and_lookup);
    g_test_add_func("/protocol/cloud-hypervisor-profile", test_cloud_hypervisor_profile);
    g_test_add_func("/protocol/write-read", test_write_read_roundtrip);
    g_test_add_func("/protocol/reconnect", test_reconnect);
    g_test_add_func("/protocol/tmpfile-then-link", test_tmpfile_then_link);
    g_test_add_func("/hostile/desc-outside-memory", test_desc_outside_memory);
    g_test_add_func("/hostile/desc-straddles-region", test_desc_straddles_region_end);
    g_test_add_func("/hostile/chain-loop", test_chain_loop);
    g_test_add_func("/hostile/bad-next", test_bad_next_index);
    g_test_add_func("/hostile/chain-longer-than-queue", test_chain_longer_than_queue);
    g_test_add_func("/hostile/avail-idx-jump", test_avail_idx_jump);
    g_test_add_func("/hostile/header-len-mismatch", test_header_len_mismatch);
    g_test_add_func("/hostile/short-header", test_short_header);
    g_test_add_func("/hostile/unknown-opcode", test_unknown_opcode);
    g_test_add_func("/hostile/unknown-nodeid-fh-forget", test_unknown_nodeid_and_fh);
    g_test_add_func("/hostile/names", test_names_escaping);
    g_test_add_func("/hostile/vu-bad-mem-tables", test_bad_mem_tables);
    g_test_add_func("/hostile/vu-unknown-request", test_unknown_request_need_reply);
    g_test_add_func("/hostile/vu-oversized-message", test_oversized_message);
    g_test_add_func("/hostile/vu-wrong-payload", test_wrong_payload_size);
    g_test_add_func("/hostile/vu-truncated-payload", test_truncated_payload);
    g_test_add_func("/lifecycle/second-connection-refused", test_second_connection_refused);
    g_test_add_func("/lifecycle/fd-baseline", test_fd_baseline);

    if (test_daemon_start(&daemon_, NULL) < 0) {
        g_printerr("cannot start the daemon\n");
        return 1;
    }
    write_host_file("probe", "probe");
    int ret = g_test_run();
    g_assert_true(test_daemon_alive(&daemon_));
    int rc = test_daemon_stop(&daemon_);
    if (rc != 0) {
        g_printerr("daemon exited with status %d\n", rc);
        ret = 1;
    }
    return ret;
}
