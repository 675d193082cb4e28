/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Migration between the Rust virtiofsd 1.13 and this daemon, both ways, through DEVICE_STATE
 * as a VMM drives it: a session on one daemon (INIT, lookups at depth, an open file and an
 * open directory), SAVE into a pipe, LOAD into the other on the same share, which then serves
 * the same nodeids and fhs without a new INIT. Ours writes the Rust format with
 * --migration-format=rust. Hostile Rust-format streams fail the LOAD and leave a fresh
 * session. Skipped when the Rust daemon ($RUST_VIRTIOFSD, or
 * /opt/virtiofsd-peers/bin/rust-virtiofsd) is not installed.
 *
 * $VFS_CAPTURE_RUST_STATE=FILE keeps the Rust daemon's stream of the first test in FILE
 * (how tests/data/rust-virtiofsd-1.13.2.state was made).
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define Q               1
#define PF_DEVICE_STATE (1ull << 19)
#define STATE_NOFD      (1ull << 8)
#define FILE_LEN        5000
#define RUST_DEFAULT    "/opt/virtiofsd-peers/bin/rust-virtiofsd"

static const char *rust_path(void)
{
    const char *p = getenv("RUST_VIRTIOFSD");
    return p && *p ? p : RUST_DEFAULT;
}

static bool have_rust(void)
{
    if (access(rust_path(), X_OK) == 0)
        return true;
    g_test_skip("the Rust virtiofsd is not installed (" RUST_DEFAULT ")");
    return false;
}

static int start_rust_mode(struct test_daemon *d, const char *share, const char *mode)
{
    const char *args[] = {"--sandbox=none", "--log-level=debug", mode, NULL};
    return test_daemon_start_peer(d, rust_path(), share, args);
}

static int start_rust(struct test_daemon *d, const char *share)
{
    return start_rust_mode(d, share, NULL);
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + 1);
}

/* a/b/c/f (FILE_LEN bytes of pattern) and the directory d, with two entries. */
static void populate(const char *share)
{
    gchar *dir = g_build_filename(share, "a", "b", "c", NULL);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    gchar *f = g_build_filename(dir, "f", NULL);
    uint8_t buf[FILE_LEN];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = pattern(i);
    g_assert_true(g_file_set_contents(f, (const char *)buf, sizeof(buf), NULL));
    gchar *d = g_build_filename(share, "d", NULL);
    g_assert_cmpint(g_mkdir_with_parents(d, 0755), ==, 0);
    gchar *d1 = g_build_filename(d, "one", NULL), *d2 = g_build_filename(d, "two", NULL);
    g_assert_true(g_file_set_contents(d1, "1", 1, NULL));
    g_assert_true(g_file_set_contents(d2, "2", 1, NULL));
    g_free(d1);
    g_free(d2);
    g_free(d);
    g_free(f);
    g_free(dir);
}

static struct fe *open_state(const struct test_daemon *d)
{
    struct fe_config cfg = {.socket_path = d->socket, .protocol_features = PF_DEVICE_STATE};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 3000), ==, 0);
    return fe;
}

static void stop_rings(struct fe *fe)
{
    g_assert_cmpint(fe_stop_rings(fe), ==, 0);
}

static uint64_t set_state_fd(struct fe *fe, uint32_t direction, int fd)
{
    uint64_t reply = 0;
    g_assert_cmpint(fe_set_state_fd(fe, direction, 0, fd, &reply), ==, 0);
    return reply;
}

static uint64_t check_state(struct fe *fe)
{
    uint64_t reply = 99;
    g_assert_cmpint(fe_check_state(fe, &reply, 5000), ==, 0);
    return reply;
}

static GByteArray *read_to_eof(int fd)
{
    GByteArray *data = g_byte_array_new();
    uint8_t buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        g_assert_cmpint(poll(&p, 1, 10000), ==, 1);
        ssize_t n = read(fd, buf, sizeof(buf));
        g_assert_cmpint(n, >=, 0);
        if (n == 0)
            return data;
        g_byte_array_append(data, buf, (guint)n);
    }
}

/* What the guest holds after its session on the source. */
struct session {
    uint64_t a, b, c, f, d; /* nodeids */
    uint64_t ino_f, ino_d;
    uint64_t fh_f, fh_d;
};

static uint64_t lookup(struct fe *fe, uint64_t parent, const char *name, uint64_t *ino)
{
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, parent, name, &e), ==, 0);
    if (ino)
        *ino = e.attr.ino;
    return e.nodeid;
}

static uint64_t open_fh(struct fe *fe, uint32_t opcode, uint64_t nodeid, uint32_t flags)
{
    struct fuse_open_in in = {.flags = flags};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, opcode, nodeid, &iov, 1, sizeof(struct fuse_open_out), &r), ==,
                    0);
    g_assert_cmpint(r.error, ==, 0);
    return ((struct fuse_open_out *)r.data)->fh;
}

static void run_session(struct fe *fe, struct session *s)
{
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    s->a = lookup(fe, FUSE_ROOT_ID, "a", NULL);
    s->b = lookup(fe, s->a, "b", NULL);
    s->c = lookup(fe, s->b, "c", NULL);
    s->f = lookup(fe, s->c, "f", &s->ino_f);
    g_assert_cmpuint(lookup(fe, s->c, "f", NULL), ==, s->f); /* a lookup count of 2 */
    s->d = lookup(fe, FUSE_ROOT_ID, "d", &s->ino_d);
    s->fh_f = open_fh(fe, FUSE_OPEN, s->f, O_RDONLY | 0100000 /* O_LARGEFILE, as a kernel */);
    s->fh_d = open_fh(fe, FUSE_OPENDIR, s->d, O_RDONLY | 0100000);
}

/* SAVE from fe's daemon (rings stopped); the stream. */
static GByteArray *save(struct fe *fe)
{
    int p[2];
    stop_rings(fe);
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 0, p[1]) & 0xff, ==, 0);
    close(p[1]);
    GByteArray *state = read_to_eof(p[0]);
    close(p[0]);
    g_assert_cmpuint(check_state(fe), ==, 0);
    return state;
}

/* A connection to d on which the state is LOADed (before memory, as after a fresh start);
 * *result: CHECK_DEVICE_STATE's. The connection is then set up (memory, rings). */
static struct fe *load(const struct test_daemon *d, const uint8_t *data, size_t len,
                       uint64_t *result)
{
    struct fe_config cfg = {
        .socket_path = d->socket, .skip_setup = true, .protocol_features = PF_DEVICE_STATE};
    struct fe *fe = NULL;
    int p[2];
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 3000), ==, 0);
    uint64_t pf = PF_DEVICE_STATE | (1ull << 0) | (1ull << 3) | (1ull << 15), f;
    g_assert_cmpint(fe_vu_get_u64(fe, FE_VU_GET_FEATURES, &f), ==, 0);
    g_assert_cmpint(fe_vu_send(fe, FE_VU_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0), ==, 0);
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpuint(set_state_fd(fe, 1, p[0]) & 0xff, ==, 0);
    close(p[0]);
    g_assert_cmpint(write(p[1], data, len), ==, (ssize_t)len);
    close(p[1]);
    *result = check_state(fe);
    g_assert_cmpint(fe_setup(fe), ==, 0);
    return fe;
}

/* The destination serves the source's nodeids and fhs, without INIT. */
static void verify_session(struct fe *fe, const struct session *s)
{
    struct fuse_getattr_in gin = {0};
    struct iovec iov = {&gin, sizeof(gin)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_GETATTR, s->f, &iov, 1, sizeof(struct fuse_attr_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(((struct fuse_attr_out *)r.data)->attr.ino, ==, s->ino_f);
    g_assert_cmpuint(((struct fuse_attr_out *)r.data)->attr.size, ==, FILE_LEN);
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_GETATTR, s->d, &iov, 1, sizeof(struct fuse_attr_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(((struct fuse_attr_out *)r.data)->attr.ino, ==, s->ino_d);

    /* READ through the source's fh. */
    struct fuse_read_in rin = {.fh = s->fh_f, .offset = 1000, .size = 3000};
    iov = (struct iovec){&rin, sizeof(rin)};
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_READ, s->f, &iov, 1, 3000, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpuint(r.data_len, ==, 3000);
    for (size_t i = 0; i < 3000; i++)
        g_assert_cmpuint(r.data[i], ==, pattern(1000 + i));

    /* READDIR through the source's directory fh: ".", "..", "one", "two". */
    struct fuse_read_in din = {.fh = s->fh_d, .size = 4096};
    iov = (struct iovec){&din, sizeof(din)};
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_READDIR, s->d, &iov, 1, 4096, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    gboolean one = FALSE, two = FALSE;
    for (size_t off = 0; off + sizeof(struct fuse_dirent) <= r.data_len;) {
        const struct fuse_dirent *de = (const void *)(r.data + off);
        one |= de->namelen == 3 && memcmp(de->name, "one", 3) == 0;
        two |= de->namelen == 3 && memcmp(de->name, "two", 3) == 0;
        off += FUSE_DIRENT_SIZE(de);
    }
    g_assert_true(one && two);

    /* The nodeids at depth are the source's: a lookup under c finds f as the same nodeid. */
    g_assert_cmpuint(lookup(fe, s->c, "f", NULL), ==, s->f);
    g_assert_cmpuint(lookup(fe, s->a, "b", NULL), ==, s->b);
}

static void test_rust_to_ours(void)
{
    if (!have_rust())
        return;
    struct test_daemon rust, ours;
    struct session s;
    g_assert_cmpint(start_rust(&rust, NULL), ==, 0);
    populate(rust.share);
    struct fe *fe = open_state(&rust);
    run_session(fe, &s);
    GByteArray *state = save(fe);
    fe_close(fe);
    g_assert_cmpuint(state->len, >, 0);
    g_assert_cmpuint(state->data[0], ==, 1); /* its V2 */
    const char *capture = getenv("VFS_CAPTURE_RUST_STATE");
    if (capture)
        g_assert_true(g_file_set_contents(capture, (const char *)state->data, state->len, NULL));

    gchar *share = g_strdup_printf("--shared-dir=%s", rust.share);
    const char *args[] = {share, NULL};
    g_assert_cmpint(test_daemon_start(&ours, args), ==, 0);
    uint64_t result;
    fe = load(&ours, state->data, state->len, &result);
    g_assert_cmpuint(result, ==, 0);
    verify_session(fe, &s);
    fe_close(fe);
    g_assert_true(test_daemon_log_contains(&ours, "written by the Rust virtiofsd"));
    g_assert_cmpint(test_daemon_stop(&ours), ==, 0);
    test_daemon_stop(&rust);
    g_byte_array_unref(state);
    g_free(share);
}

/* The Rust daemon announces submounts by default, ours only with --announce-submounts: its
 * state still loads here (with a warning), or every default migration would fail. */
/*
 * The Rust daemon in --migration-mode=file-handles (every inode but the root travels as a file
 * handle, with the id of its mount, which the V2 mount map names "." for the share's root)
 * into ours in the same mode: found by the handles even with a directory on the way renamed
 * after the SAVE. Ours in find-paths mode has no path for them: the LOAD fails (abort).
 */
static void test_rust_fh_to_ours(void)
{
    if (!have_rust())
        return;
    struct test_daemon rust, ours;
    struct session s;
    g_assert_cmpint(start_rust_mode(&rust, NULL, "--migration-mode=file-handles"), ==, 0);
    populate(rust.share);
    struct fe *fe = open_state(&rust);
    run_session(fe, &s);
    GByteArray *state = save(fe);
    fe_close(fe);
    gchar *a = g_build_filename(rust.share, "a", NULL),
          *a2 = g_build_filename(rust.share, "a2", NULL);
    g_assert_cmpint(rename(a, a2), ==, 0);

    gchar *share = g_strdup_printf("--shared-dir=%s", rust.share);
    const char *paths_args[] = {share, NULL};
    g_assert_cmpint(test_daemon_start(&ours, paths_args), ==, 0);
    uint64_t result;
    fe = load(&ours, state->data, state->len, &result);
    g_assert_cmpuint(result, !=, 0);
    fe_close(fe);
    test_daemon_stop(&ours);

    const char *args[] = {share, "--migration-mode=file-handles", NULL};
    g_assert_cmpint(test_daemon_start(&ours, args), ==, 0);
    fe = load(&ours, state->data, state->len, &result);
    g_assert_cmpuint(result, ==, 0);
    verify_session(fe, &s);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&ours), ==, 0);
    test_daemon_stop(&rust);
    g_byte_array_unref(state);
    g_free(share);
    g_free(a);
    g_free(a2);
}

static void test_rust_submounts(void)
{
    if (!have_rust())
        return;
    struct test_daemon rust, ours;
    g_assert_cmpint(start_rust(&rust, NULL), ==, 0);
    populate(rust.share);
    struct fe *fe = open_state(&rust);
    g_assert_cmpint(fe_fuse_init_flags(fe, FUSE_SUBMOUNTS | FUSE_MAX_PAGES, NULL), ==, 0);
    uint64_t a = lookup(fe, FUSE_ROOT_ID, "a", NULL);
    GByteArray *state = save(fe);
    fe_close(fe);
    gchar *share = g_strdup_printf("--shared-dir=%s", rust.share);
    const char *args[] = {share, NULL};
    g_assert_cmpint(test_daemon_start(&ours, args), ==, 0);
    uint64_t result;
    fe = load(&ours, state->data, state->len, &result);
    g_assert_cmpuint(result, ==, 0);
    g_assert_cmpuint(lookup(fe, a, "b", NULL), !=, 0);
    fe_close(fe);
    g_assert_true(test_daemon_log_contains(&ours, "no longer announced"));
    g_assert_cmpint(test_daemon_stop(&ours), ==, 0);
    test_daemon_stop(&rust);
    g_byte_array_unref(state);
    g_free(share);
}

static void test_ours_to_rust(void)
{
    if (!have_rust())
        return;
    struct test_daemon rust, ours;
    struct session s;
    const char *args[] = {"--migration-format=rust", NULL};
    g_assert_cmpint(test_daemon_start(&ours, args), ==, 0);
    populate(ours.share);
    struct fe *fe = open_state(&ours);
    run_session(fe, &s);
    GByteArray *state = save(fe);
    fe_close(fe);
    g_assert_cmpuint(state->len, >, 0);
    g_assert_cmpuint(state->data[0], ==, 1); /* the Rust format's V2, not our magic */

    g_assert_cmpint(start_rust(&rust, ours.share), ==, 0);
    uint64_t result;
    fe = load(&rust, state->data, state->len, &result);
    g_assert_cmpuint(result, ==, 0);
    verify_session(fe, &s);
    fe_close(fe);
    test_daemon_stop(&rust);
    g_assert_cmpint(test_daemon_stop(&ours), ==, 0);
    g_byte_array_unref(state);
}

/* Ours -> Rust -> ours: what the Rust daemon writes from our stream comes back whole. */
static void test_round_trip(void)
{
    if (!have_rust())
        return;
    struct test_daemon rust, a, b;
    struct session s;
    const char *args[] = {"--migration-format=rust", NULL};
    g_assert_cmpint(test_daemon_start(&a, args), ==, 0);
    populate(a.share);
    struct fe *fe = open_state(&a);
    run_session(fe, &s);
    GByteArray *state = save(fe);
    fe_close(fe);
    g_assert_cmpint(start_rust(&rust, a.share), ==, 0);
    uint64_t result;
    fe = load(&rust, state->data, state->len, &result);
    g_assert_cmpuint(result, ==, 0);
    g_byte_array_unref(state);
    state = save(fe);
    fe_close(fe);
    gchar *share = g_strdup_printf("--shared-dir=%s", a.share);
    const char *bargs[] = {share, NULL};
    g_assert_cmpint(test_daemon_start(&b, bargs), ==, 0);
    fe = load(&b, state->data, state->len, &result);
    g_assert_cmpuint(result, ==, 0);
    verify_session(fe, &s);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&b), ==, 0);
    test_daemon_stop(&rust);
    g_assert_cmpint(test_daemon_stop(&a), ==, 0);
    g_byte_array_unref(state);
    g_free(share);
}

/* Hostile Rust-format streams: each LOAD fails, and the daemon serves a fresh session. */
static void test_hostile(void)
{
    static const uint8_t huge_count[] = {1, 0xff, 0xff, 0xff, 0xff, 0x0f};
    static const uint8_t bad_varint[] = {1,    0x80, 0x80, 0x80, 0x80, 0x80,
                                         0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    /* The root, then an inode under a parent that is itself (a loop). */
    static const uint8_t loop[] = {1, 2, 1, 2, 0, 0, 5, 1, 1, 5, 1, 'x', 0, 6, 0, 0, 0, 0, 0, 0, 0};
    /* A name "..". */
    static const uint8_t dotdot[] = {1,   2,   1, 2, 0, 0, 5, 1, 1, 1, 2,
                                     '.', '.', 0, 6, 0, 0, 0, 0, 0, 0, 0};
    /* A valid empty state, then garbage. */
    static const uint8_t trailing[] = {1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 'j', 'u', 'n', 'k'};
    /* The version tag 2: a future version, refused. */
    static const uint8_t version[] = {2, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    const struct {
        const uint8_t *p;
        size_t n;
    } streams[] = {
        {huge_count, sizeof(huge_count)},
        {bad_varint, sizeof(bad_varint)},
        {loop, sizeof(loop)},
        {dotdot, sizeof(dotdot)},
        {trailing, sizeof(trailing)},
        {version, sizeof(version)},
        {huge_count, 1},
    };
    struct test_daemon ours;
    g_assert_cmpint(test_daemon_start(&ours, NULL), ==, 0);
    populate(ours.share);
    for (size_t i = 0; i < G_N_ELEMENTS(streams); i++) {
        uint64_t result;
        struct fe *fe = load(&ours, streams[i].p, streams[i].n, &result);
        g_assert_cmpuint(result, !=, 0);
        /* A fresh session: INIT is needed and works, and lookups do. */
        g_assert_cmpint(fe_fuse_init(fe), ==, 0);
        lookup(fe, FUSE_ROOT_ID, "a", NULL);
        fe_close(fe);
        g_assert_true(test_daemon_alive(&ours));
    }
    g_assert_true(test_daemon_log_contains(&ours, "loading the session state failed"));
    g_assert_cmpint(test_daemon_stop(&ours), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/migration-rust/rust-to-ours", test_rust_to_ours);
    g_test_add_func("/migration-rust/rust-fh-to-ours", test_rust_fh_to_ours);
    g_test_add_func("/migration-rust/rust-submounts", test_rust_submounts);
    g_test_add_func("/migration-rust/ours-to-rust", test_ours_to_rust);
    g_test_add_func("/migration-rust/round-trip", test_round_trip);
    g_test_add_func("/migration-rust/hostile", test_hostile);
    return g_test_run();
}
