/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Rust virtiofsd's state format (src/state_rust.c), on a stream the real daemon wrote:
 * tests/data/rust-virtiofsd-1.13.2.state was captured from virtiofsd 1.13.2
 * (/opt/virtiofsd-peers/bin/rust-virtiofsd, --sandbox=none) by
 *   VFS_CAPTURE_RUST_STATE=$PWD/tests/data/rust-virtiofsd-1.13.2.state \
 *       build/tests/test_migration_rust -p /migration-rust/rust-to-ours
 * after INIT, LOOKUPs of a, a/b, a/b/c, a/b/c/f (twice) and d, an OPEN of f (fh 0) and an
 * OPENDIR of d (fh 1). Decoding it, encoding it back, and every truncation and a few hostile
 * streams.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/stat.h>

#include "pt_state.h"
#include "state_rust.h"

#define CAPTURED "rust-virtiofsd-1.13.2.state"

static GBytes *captured(void)
{
    gchar *path = g_build_filename(TESTS_SOURCE_DIR, "data", CAPTURED, NULL);
    gchar *data;
    gsize len;
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    g_free(path);
    return g_bytes_new_take(data, len);
}

static const struct pt_state_inode *inode(const struct pt_state *st, uint64_t nodeid)
{
    for (size_t i = 0; i < st->n_inodes; i++)
        if (st->inodes[i].nodeid == nodeid)
            return &st->inodes[i];
    g_assert_not_reached();
}

/* What the captured session holds, whichever way the state got here. */
static void assert_session(struct pt_state *st)
{
    static const struct {
        uint64_t nodeid, nlookup;
        const char *path;
    } want[] = {{2, 1, "a"}, {3, 1, "a/b"}, {4, 1, "a/b/c"}, {5, 2, "a/b/c/f"}, {6, 1, "d"}};

    g_assert_cmpuint(st->n_inodes, ==, 6);
    g_assert_cmpstr(pt_state_path(st, inode(st, 1)), ==, "");
    g_assert_cmpuint(inode(st, 1)->type, ==, S_IFDIR);
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        const struct pt_state_inode *in = inode(st, want[i].nodeid);
        g_assert_false(in->lost);
        /* The Rust refcounts hold one per child found under a parent: not the guest's. */
        g_assert_cmpuint(in->nlookup, ==, want[i].nlookup);
        g_assert_cmpstr(pt_state_path(st, in), ==, want[i].path);
        g_assert_cmpuint(in->type, ==, 0); /* the format has none */
    }
    g_assert_cmpuint(st->n_handles, ==, 2);
    g_assert_cmpuint(st->handles[0].fh, ==, 0);
    g_assert_cmpuint(st->handles[0].nodeid, ==, 5);
    g_assert_false(st->handles[0].dir);
    g_assert_cmpuint(st->handles[0].flags & O_ACCMODE, ==, O_RDONLY);
    g_assert_cmpuint(st->handles[1].fh, ==, 1);
    g_assert_cmpuint(st->handles[1].nodeid, ==, 6);
    g_assert_true(st->handles[1].dir);
    g_assert_cmpuint(st->last_nodeid, ==, 6);
    g_assert_cmpuint(st->last_fh, ==, 1);
    g_assert_cmpint(pt_state_check(st), ==, 0);
}

static void test_decode_captured(void)
{
    GBytes *b = captured();
    gsize len;
    const uint8_t *p = g_bytes_get_data(b, &len);
    struct pt_state st;
    struct rust_state_opts o;

    g_assert_true(rust_state_recognised(p, len));
    g_assert_false(rust_state_recognised((const uint8_t *)"VFSDST\r\n", 8));
    pt_state_init(&st);
    g_assert_cmpint(rust_state_decode(p, len, &st, &o), ==, 0);
    g_assert_cmpuint(o.version, ==, 2);
    assert_session(&st);
    pt_state_free(&st);
    g_bytes_unref(b);
}

/* Decoded, encoded by us, decoded again: the same session (now with FullPath locations). */
static void test_encode_round_trip(void)
{
    GBytes *b = captured();
    gsize len;
    const uint8_t *p = g_bytes_get_data(b, &len);
    struct fuse_session_init init = {.major = 7, .minor = 38, .flags = FUSE_WRITEBACK_CACHE};
    struct pt_state st, again;
    struct rust_state_opts o;
    uint8_t *out;
    size_t out_len;

    pt_state_init(&st);
    pt_state_init(&again);
    g_assert_cmpint(rust_state_decode(p, len, &st, &o), ==, 0);
    g_assert_cmpint(rust_state_encode(&st, true, &init, false, &out, &out_len), ==, 0);
    g_assert_cmpuint(out[0], ==, 1);
    g_assert_cmpint(rust_state_decode(out, out_len, &again, &o), ==, 0);
    assert_session(&again);
    g_assert_true(o.writeback);
    g_assert_false(o.posix_acl);
    /* The handles keep their kind by O_DIRECTORY, as the Rust daemon's own do. */
    g_assert_true(again.handles[1].dir);
    g_free(out);
    pt_state_free(&again);
    pt_state_free(&st);
    g_bytes_unref(b);
}

/* Every prefix of the real stream is refused, and so is any byte after it. */
static void test_truncated(void)
{
    GBytes *b = captured();
    gsize len;
    const uint8_t *p = g_bytes_get_data(b, &len);
    struct rust_state_opts o;

    for (size_t n = 0; n < len; n++) {
        struct pt_state st;
        pt_state_init(&st);
        g_assert_cmpint(rust_state_decode(p, n, &st, &o), <, 0);
        g_assert_cmpstr(st.why, !=, "");
        pt_state_free(&st);
    }
    uint8_t *longer = g_malloc(len + 1);
    memcpy(longer, p, len);
    longer[len] = 0;
    struct pt_state st;
    pt_state_init(&st);
    g_assert_cmpint(rust_state_decode(longer, len + 1, &st, &o), ==, -EINVAL);
    g_assert_nonnull(strstr(st.why, "after the end"));
    pt_state_free(&st);
    g_free(longer);
    g_bytes_unref(b);
}

static int decode_bytes(const uint8_t *p, size_t n, char *why, size_t whylen)
{
    struct pt_state st;
    struct rust_state_opts o;
    int ret;

    pt_state_init(&st);
    ret = rust_state_decode(p, n, &st, &o);
    if (ret == 0 && st.n_inodes) /* as rust_state_parse: nothing mounted has no root */
        ret = pt_state_check(&st);
    g_strlcpy(why, st.why, whylen);
    pt_state_free(&st);
    return ret;
}

static void test_hostile(void)
{
#define T(...)                                                                                     \
    {                                                                                              \
        (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})                     \
    }
    const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = {
        T(1, 0xff, 0xff, 0xff, 0xff, 0x0f),                               /* absurd inode count */
        T(1, 0, 2, 0xff, 0xff, 0xff, 0x7f),                               /* absurd handle count */
        T(1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02), /* u64 overflow */
        T(1, 1, 2, 2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0),                      /* root is nodeid 2 */
        T(1, 1, 1, 2, 9, 0, 2, 0, 0, 0, 0, 0, 0, 0),                      /* unknown location */
        T(1, 1, 1, 2, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0),                      /* option tag 2 */
        T(1, 1, 1, 2, 0, 0, 2, 0, 0, 2, 0, 0, 0, 0),                      /* bool 2 */
        /* root, and 5 under parent 7, which is not there */
        T(1, 2, 1, 2, 0, 0, 5, 1, 1, 7, 1, 'x', 0, 6, 0, 0, 0, 0, 0, 0, 0),
        /* a name with '/' */
        T(1, 2, 1, 2, 0, 0, 5, 1, 1, 1, 3, 'x', '/', 'y', 0, 6, 0, 0, 0, 0, 0, 0, 0),
        /* a FullPath leaving the share */
        T(1, 2, 1, 2, 0, 0, 5, 1, 3, 4, '.', '.', '/', 'x', 0, 6, 0, 0, 0, 0, 0, 0, 0),
        /* a name that is not UTF-8 */
        T(1, 2, 1, 2, 0, 0, 5, 1, 1, 1, 2, 0xff, 0xfe, 0, 6, 0, 0, 0, 0, 0, 0, 0),
        /* two inodes with nodeid 1 */
        T(1, 2, 1, 2, 0, 0, 1, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0),
        /* a parent's refcount below its children's references */
        T(1, 3, 1, 1, 0, 0, 5, 1, 1, 1, 1, 'x', 0, 6, 1, 1, 1, 1, 'y', 0, 7, 0, 0, 0, 0, 0, 0, 0),
        /* a handle of an inode that is not there, fh beyond the counter, access mode 3 */
        T(1, 1, 1, 2, 0, 0, 2, 1, 0, 9, 0, 0, 1, 0, 0, 0, 0, 0),
        T(1, 1, 1, 2, 0, 0, 2, 1, 5, 1, 0, 0, 1, 0, 0, 0, 0, 0),
        T(1, 1, 1, 2, 0, 0, 2, 1, 0, 1, 0, 6, 1, 0, 0, 0, 0, 0),
        /* the inode counter 0 (its last id would wrap) */
        T(1, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        /* a future version */
        T(2, 0, 2, 0, 0, 0, 0, 0, 0, 0),
    };
#undef T
    char why[256];

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        int ret = decode_bytes(bad[i].p, bad[i].n, why, sizeof(why));
        if (g_test_verbose())
            g_printerr("%zu: %d %s\n", i, ret, why);
        g_assert_cmpint(ret, <, 0);
        g_assert_cmpstr(why, !=, "");
    }
    /* The smallest valid streams: nothing mounted, and the root alone. */
    static const uint8_t empty[] = {1, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t root[] = {1, 1, 1, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    g_assert_cmpint(decode_bytes(empty, sizeof(empty), why, sizeof(why)), ==, 0);
    g_assert_cmpint(decode_bytes(root, sizeof(root), why, sizeof(why)), ==, 0);
}

/* What the Rust format cannot carry: a name that is not UTF-8 fails the SAVE, or with
 * guest-error goes as lost. */
static void test_encode_not_utf8(void)
{
    struct fuse_session_init init = {.major = 7, .minor = 38};
    struct pt_state st, back;
    struct pt_state_inode root = {.nodeid = 1, .nlookup = 2, .type = S_IFDIR};
    struct pt_state_inode odd = {.nodeid = 2, .nlookup = 1, .type = S_IFREG};
    struct rust_state_opts o;
    uint8_t *out;
    size_t len;

    pt_state_init(&st);
    st.last_nodeid = 2;
    g_assert_cmpint(pt_state_add_inode(&st, &root, "", 0), ==, 0);
    g_assert_cmpint(pt_state_add_inode(&st, &odd, "n\xff", 2), ==, 0);
    g_assert_cmpint(rust_state_encode(&st, true, &init, false, &out, &len), ==, -ENOTSUP);
    g_assert_nonnull(strstr(st.why, "UTF-8"));
    g_assert_cmpint(rust_state_encode(&st, true, &init, true, &out, &len), ==, 0);
    pt_state_init(&back);
    g_assert_cmpint(rust_state_decode(out, len, &back, &o), ==, 0);
    g_assert_true(inode(&back, 2)->lost);
    g_free(out);
    pt_state_free(&back);
    pt_state_free(&st);
}

/* Locks the guest holds: the Rust format has no room for them. A SAVE in it fails, or with
 * guest-error drops them (with a warning) and carries the rest. */
static void test_encode_held_locks(void)
{
    struct fuse_session_init init = {.major = 7, .minor = 38};
    struct pt_state_inode root = {.nodeid = 1, .nlookup = 2, .type = S_IFDIR};
    struct pt_state st;
    uint8_t *out = NULL;
    size_t len;

    pt_state_init(&st);
    st.last_nodeid = 1;
    g_assert_cmpint(pt_state_add_inode(&st, &root, "", 0), ==, 0);
    g_assert_cmpint(rust_state_encode(&st, true, &init, false, &out, &len), ==, 0);
    g_free(out);
    st.n_flocks = 1; /* as pt_locks_collect counts one flock held */
    g_assert_cmpint(rust_state_encode(&st, true, &init, false, &out, &len), ==, -ENOTSUP);
    g_assert_nonnull(strstr(st.why, "lock"));
    g_assert_cmpint(rust_state_encode(&st, true, &init, true, &out, &len), ==, 0);
    g_free(out);
    st.n_flocks = 0;
    pt_state_free(&st);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/state-rust/decode-captured", test_decode_captured);
    g_test_add_func("/state-rust/encode-round-trip", test_encode_round_trip);
    g_test_add_func("/state-rust/truncated", test_truncated);
    g_test_add_func("/state-rust/hostile", test_hostile);
    g_test_add_func("/state-rust/encode-not-utf8", test_encode_not_utf8);
    g_test_add_func("/state-rust/encode-held-locks", test_encode_held_locks);
    return g_test_run();
}
