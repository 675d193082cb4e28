/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for fuse_server.c: requests decoded from hand-built vq_elems whose iovecs point
 * at ordinary heap buffers, served by a real passthrough filesystem over a temp directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "log.h"
#include "passthrough.h"
#include "virtqueue.h"

#define HELLO_TEXT "hello, virtio-fs\n"
#define OUT_SIZE   (64 * 1024)

struct fx {
    char *dir;
    struct pt_fs *fs;
    struct fuse_session *se;
    struct fuse_scratch *scratch;
    struct vq_elem *elem;
    uint64_t unique;
    uint8_t *out; /* default reply buffer, OUT_SIZE bytes */
};

/* ---- setup ------------------------------------------------------------------------------------
 */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void fx_setup(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    GError *err = NULL;
    f->dir = g_dir_make_tmp("vfs-fuse-XXXXXX", &err);
    g_assert_no_error(err);
    char *p = g_build_filename(f->dir, "hello.txt", NULL);
    g_assert_true(g_file_set_contents(p, HELLO_TEXT, -1, NULL));
    g_free(p);
    p = g_build_filename(f->dir, "sub", NULL);
    g_assert_cmpint(mkdir(p, 0755), ==, 0);
    g_free(p);
    p = g_build_filename(f->dir, "sub", "inner", NULL);
    g_assert_true(g_file_set_contents(p, "inner", -1, NULL));
    g_free(p);

    struct pt_config cfg = {
        .shared_dir = f->dir,
        .cache = CACHE_AUTO,
        .readdirplus = true,
        .xattr = true,
    };
    g_assert_cmpint(pt_new(&cfg, &f->fs), ==, 0);
    g_assert_nonnull(f->fs);
    f->se = fuse_session_new(f->fs);
    g_assert_nonnull(f->se);
    f->scratch = fuse_scratch_new();
    g_assert_nonnull(f->scratch);
    f->elem = g_malloc0(sizeof(*f->elem));
    f->out = g_malloc(OUT_SIZE);
    f->unique = 1000;
}

static void fx_teardown(struct fx *f)
{
    fuse_session_free(f->se);
    pt_free(f->fs);
    fuse_scratch_free(f->scratch);
    g_free(f->elem);
    g_free(f->out);
    g_assert_cmpint(nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
    g_free(f->dir);
}

/* ---- requests -----------------------------------------------------------------------------------
 */

/* Runs one request made of the given readable and writable iovecs. */
static uint32_t run_iov(struct fx *f, const struct iovec *rd, unsigned nrd, const struct iovec *wr,
                        unsigned nwr)
{
    struct vq_elem *e = f->elem;
    g_assert_cmpuint(nrd + nwr, <=, VQ_MAX_IOV);
    e->head = 0;
    e->rd_num = nrd;
    e->wr_num = nwr;
    e->rd_len = e->wr_len = 0;
    for (unsigned i = 0; i < nrd; i++) {
        e->iov[i] = rd[i];
        e->rd_len += rd[i].iov_len;
    }
    for (unsigned i = 0; i < nwr; i++) {
        e->iov[nrd + i] = wr[i];
        e->wr_len += wr[i].iov_len;
    }
    rcu_read_lock();
    uint32_t ret = fuse_session_process(f->se, f->scratch, e, NULL);
    rcu_read_unlock();
    /* As a queue worker does between requests, and before it waits (its queue is empty). */
    fuse_session_quiescent(f->se);
    fuse_session_idle(f->se);
    return ret;
}

/*
 * Builds header + arg + extra into a heap buffer. hdr_len overrides fuse_in_header.len
 * (0: the true length). Returns the buffer (g_free it) and its length in *len.
 */
static uint8_t *build(struct fx *f, uint32_t opcode, uint64_t nodeid, const void *arg,
                      size_t arglen, const void *extra, size_t extralen, uint32_t hdr_len,
                      size_t *len)
{
    size_t total = sizeof(struct fuse_in_header) + arglen + extralen;
    uint8_t *buf = g_malloc0(total ? total : 1);
    struct fuse_in_header h = {
        .len = hdr_len ? hdr_len : (uint32_t)total,
        .opcode = opcode,
        .unique = ++f->unique,
        .nodeid = nodeid,
        .uid = getuid(),
        .gid = getgid(),
        .pid = (uint32_t)getpid(),
    };
    memcpy(buf, &h, sizeof(h));
    if (arglen)
        memcpy(buf + sizeof(h), arg, arglen);
    if (extralen)
        memcpy(buf + sizeof(h) + arglen, extra, extralen);
    *len = total;
    return buf;
}

/* One readable buffer, the reply in f->out (outlen bytes, prefilled with 0xAA). */
static uint32_t request_ex(struct fx *f, uint32_t opcode, uint64_t nodeid, const void *arg,
                           size_t arglen, const void *extra, size_t extralen, uint32_t hdr_len,
                           size_t outlen)
{
    size_t len;
    uint8_t *buf = build(f, opcode, nodeid, arg, arglen, extra, extralen, hdr_len, &len);
    g_assert_cmpuint(outlen, <=, OUT_SIZE);
    memset(f->out, 0xaa, OUT_SIZE);
    struct iovec rd = {buf, len};
    struct iovec wr = {f->out, outlen};
    uint32_t ret = run_iov(f, &rd, 1, &wr, outlen ? 1 : 0);
    g_free(buf);
    return ret;
}

static uint32_t request(struct fx *f, uint32_t opcode, uint64_t nodeid, const void *arg,
                        size_t arglen, const void *extra, size_t extralen)
{
    return request_ex(f, opcode, nodeid, arg, arglen, extra, extralen, 0, OUT_SIZE);
}

/* Checks the reply header in f->out against the returned length; returns its error. */
static int reply_error(struct fx *f, uint32_t ret)
{
    struct fuse_out_header oh;
    g_assert_cmpuint(ret, >=, sizeof(oh));
    memcpy(&oh, f->out, sizeof(oh));
    g_assert_cmpuint(oh.len, ==, ret);
    g_assert_cmpuint(oh.unique, ==, f->unique);
    g_assert_cmpint(oh.error, <=, 0);
    if (oh.error)
        g_assert_cmpuint(oh.len, ==, sizeof(oh));
    return oh.error;
}

/* Expects success with exactly len payload bytes, copied to out. */
static void reply_ok(struct fx *f, uint32_t ret, void *out, size_t len)
{
    g_assert_cmpint(reply_error(f, ret), ==, 0);
    g_assert_cmpuint(ret, ==, sizeof(struct fuse_out_header) + len);
    if (len)
        memcpy(out, f->out + sizeof(struct fuse_out_header), len);
}

/* True if nothing was written to f->out. */
static bool out_untouched(struct fx *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f->out[i] != 0xaa)
            return false;
    return true;
}

static struct fuse_init_out do_init_full(struct fx *f, uint32_t minor, uint32_t flags,
                                         uint32_t flags2)
{
    struct fuse_init_in in = {
        .major = 7,
        .minor = minor,
        .max_readahead = 128 * 1024,
        .flags = flags,
        .flags2 = flags2,
    };
    uint32_t ret = request(f, FUSE_INIT, 0, &in, sizeof(in), NULL, 0);
    struct fuse_init_out out;
    memset(&out, 0, sizeof(out));
    reply_ok(f, ret, &out, sizeof(out));
    return out;
}

static void do_init(struct fx *f)
{
    do_init_full(f, FUSE_KERNEL_MINOR_VERSION,
                 FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_DO_READDIRPLUS |
                     FUSE_INIT_EXT,
                 0);
    g_assert_true(fuse_session_initialized(f->se));
}

static int lookup(struct fx *f, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    uint32_t ret = request(f, FUSE_LOOKUP, parent, name, strlen(name) + 1, NULL, 0);
    int err = reply_error(f, ret);
    if (err == 0)
        reply_ok(f, ret, e, sizeof(*e));
    return err;
}

static int getattr(struct fx *f, uint64_t nodeid, struct fuse_attr_out *a)
{
    struct fuse_getattr_in in = {0};
    uint32_t ret = request(f, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0);
    int err = reply_error(f, ret);
    if (err == 0)
        reply_ok(f, ret, a, sizeof(*a));
    return err;
}

static char *host_path(struct fx *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

static void assert_attr_matches(const struct fuse_attr *a, const struct stat *st)
{
    g_assert_cmpuint(a->ino, ==, st->st_ino);
    g_assert_cmpuint(a->size, ==, (uint64_t)st->st_size);
    g_assert_cmpuint(a->mode, ==, st->st_mode);
    g_assert_cmpuint(a->nlink, ==, st->st_nlink);
    g_assert_cmpuint(a->uid, ==, st->st_uid);
    g_assert_cmpuint(a->gid, ==, st->st_gid);
    g_assert_cmpuint(a->mtime, ==, (uint64_t)st->st_mtim.tv_sec);
    g_assert_cmpuint(a->mtimensec, ==, (uint32_t)st->st_mtim.tv_nsec);
    g_assert_cmpuint(a->blocks, ==, (uint64_t)st->st_blocks);
}

/* ---- tests
 * ---------------------------------------------------------------------------------------- */

static void test_before_init(void)
{
    struct fx f;
    fx_setup(&f);
    g_assert_false(fuse_session_initialized(f.se));
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, -EIO);
    struct fuse_entry_out e;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, -EIO);
    /* DESTROY before INIT is refused too. */
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_DESTROY, 0, NULL, 0, NULL, 0)), ==, -EIO);
    g_assert_false(fuse_session_initialized(f.se));
    fx_teardown(&f);
}

static void test_init(void)
{
    struct fx f;
    fx_setup(&f);
    /* A newer guest offering everything. */
    const uint32_t gflags = 0xffffffffu, gflags2 = 0xffffffffu;
    struct fuse_init_out o = do_init_full(&f, 40, gflags, gflags2);
    g_assert_true(fuse_session_initialized(f.se));
    g_assert_cmpuint(o.major, ==, 7);
    g_assert_cmpuint(o.minor, ==, 38);
    g_assert_cmpuint(o.max_write, ==, 1u << 20);
    g_assert_cmpuint(o.max_pages, ==, 256);
    g_assert_cmpuint(o.flags & FUSE_MAX_PAGES, ==, FUSE_MAX_PAGES);
    g_assert_cmpuint(o.max_readahead, <=, 128 * 1024);

    /* Only some flags offered: the reply is a subset of them (both words). */
    const uint32_t some =
        FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_INIT_EXT | FUSE_POSIX_ACL | FUSE_EXPORT_SUPPORT;
    const uint32_t some2 =
        (uint32_t)(FUSE_SECURITY_CTX >> 32) | (uint32_t)(FUSE_HAS_INODE_DAX >> 32);
    o = do_init_full(&f, 38, some, some2);
    g_assert_cmpuint(o.minor, ==, 38);
    g_assert_cmphex(o.flags & ~some, ==, 0);
    g_assert_cmphex(o.flags2 & ~some2, ==, 0);
    g_assert_cmphex(o.flags & FUSE_MAX_PAGES, ==, FUSE_MAX_PAGES);
    g_assert_cmpuint(o.max_pages, ==, 256);

    /* flags2 without FUSE_INIT_EXT must be ignored. */
    o = do_init_full(&f, 38, FUSE_ASYNC_READ, 0xffffffffu);
    g_assert_cmphex(o.flags & ~(uint32_t)FUSE_ASYNC_READ, ==, 0);
    g_assert_cmphex(o.flags2, ==, 0);

    /* An older guest: minor is the smaller of the two. */
    o = do_init_full(&f, 31, some, 0);
    g_assert_cmpuint(o.major, ==, 7);
    g_assert_cmpuint(o.minor, ==, 31);
    g_assert_cmpuint(o.max_write, ==, 1u << 20);
    g_assert_cmphex(o.flags & ~some, ==, 0);

    /* Before 7.23 the reply is the 24-byte compat struct. */
    struct fuse_init_in in = {.major = 7, .minor = 22, .max_readahead = 4096};
    uint32_t ret = request(&f, FUSE_INIT, 0, &in, sizeof(in), NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, 0);
    g_assert_cmpuint(ret, ==, sizeof(struct fuse_out_header) + FUSE_COMPAT_22_INIT_OUT_SIZE);
    memcpy(&o, f.out + sizeof(struct fuse_out_header), FUSE_COMPAT_22_INIT_OUT_SIZE);
    g_assert_cmpuint(o.minor, ==, 22);

    /* A pre-7.36 guest sends the short 16-byte fuse_init_in. */
    in = (struct fuse_init_in){.major = 7, .minor = 31, .flags = FUSE_ASYNC_READ};
    ret = request(&f, FUSE_INIT, 0, &in, 16, NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, 0);
    memcpy(&o, f.out + sizeof(struct fuse_out_header), sizeof(o));
    g_assert_cmpuint(o.minor, ==, 31);
    g_assert_cmphex(o.flags & ~(uint32_t)FUSE_ASYNC_READ, ==, 0);

    /* Too old, and too short. */
    in = (struct fuse_init_in){.major = 7, .minor = 8};
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_INIT, 0, &in, sizeof(in), NULL, 0)), <, 0);
    in = (struct fuse_init_in){.major = 7, .minor = 38};
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_INIT, 0, &in, 8, NULL, 0)), ==, -EINVAL);
    fx_teardown(&f);
}

/* A guest with a newer major gets our major back and is not yet initialized. */
static void test_init_major_mismatch(void)
{
    struct fx f;
    fx_setup(&f);
    struct fuse_init_in in = {.major = 8, .minor = 0};
    uint32_t ret = request(&f, FUSE_INIT, 0, &in, sizeof(in), NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, 0);
    struct fuse_init_out o;
    g_assert_cmpuint(ret, >=, sizeof(struct fuse_out_header) + 8);
    memcpy(&o, f.out + sizeof(struct fuse_out_header), 8);
    g_assert_cmpuint(o.major, ==, 7);
    g_assert_false(fuse_session_initialized(f.se));
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, -EIO);
    do_init(&f);
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    fx_teardown(&f);
}

static void test_second_init_resets(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_entry_out e;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, 0);
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, e.nodeid, &a), ==, 0);
    do_init(&f);
    g_assert_true(fuse_session_initialized(f.se));
    g_assert_cmpint(getattr(&f, e.nodeid, &a), <, 0); /* forgotten by the reset */
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    struct fuse_entry_out e2;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e2), ==, 0);
    g_assert_cmpuint(e2.attr.ino, ==, e.attr.ino);
    fx_teardown(&f);
}

static void test_lookup(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_entry_out e;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, !=, 0);
    g_assert_cmpuint(e.nodeid, !=, FUSE_ROOT_ID);
    char *p = host_path(&f, "hello.txt");
    struct stat st;
    g_assert_cmpint(lstat(p, &st), ==, 0);
    g_free(p);
    assert_attr_matches(&e.attr, &st);
    g_assert_cmpuint(e.attr.size, ==, strlen(HELLO_TEXT));

    /* GETATTR of the new nodeid agrees. */
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, e.nodeid, &a), ==, 0);
    assert_attr_matches(&a.attr, &st);

    /* The root itself. */
    g_assert_cmpint(stat(f.dir, &st), ==, 0);
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    g_assert_cmpuint(a.attr.ino, ==, st.st_ino);
    g_assert_true(S_ISDIR(a.attr.mode));

    /* A nested lookup. */
    struct fuse_entry_out sub, inner;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "sub", &sub), ==, 0);
    g_assert_true(S_ISDIR(sub.attr.mode));
    g_assert_cmpint(lookup(&f, sub.nodeid, "inner", &inner), ==, 0);
    g_assert_cmpuint(inner.attr.size, ==, 5);

    /* Missing file. */
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "nope", &e), ==, -ENOENT);
    fx_teardown(&f);
}

static void test_lookup_bad_names(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_entry_out e;
    /* No NUL anywhere in the argument. */
    uint32_t ret =
        request(&f, FUSE_LOOKUP, FUSE_ROOT_ID, "hello.txt", strlen("hello.txt"), NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    /* An empty argument. */
    ret = request(&f, FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    /* Slashes, even when the path would exist. */
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "sub/inner", &e), ==, -EINVAL);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "sub/", &e), ==, -EINVAL);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "/etc", &e), ==, -EINVAL);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "../etc", &e), ==, -EINVAL);
    /* ".." of the root is the root. */
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "..", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, FUSE_ROOT_ID);
    struct stat st;
    g_assert_cmpint(stat(f.dir, &st), ==, 0);
    g_assert_cmpuint(e.attr.ino, ==, st.st_ino);
    /* ".." of a subdirectory is the root too. */
    struct fuse_entry_out sub;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "sub", &sub), ==, 0);
    g_assert_cmpint(lookup(&f, sub.nodeid, "..", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, FUSE_ROOT_ID);
    fx_teardown(&f);
}

static void test_getattr_unknown(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, 0xdeadbeefull, &a), <, 0);
    g_assert_cmpint(getattr(&f, 0, &a), <, 0);
    g_assert_cmpint(getattr(&f, UINT64_MAX, &a), <, 0);
    g_assert_cmpint(getattr(&f, 2, &a), <, 0); /* never issued */
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    fx_teardown(&f);
}

static void test_unknown_opcode(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    const uint32_t ops[] = {
        0, 39 /* IOCTL */, 41 /* NOTIFY_REPLY */, 52, 999, 4096 /* CUSE_INIT */, UINT32_MAX};
    for (unsigned i = 0; i < G_N_ELEMENTS(ops); i++) {
        uint8_t arg[64] = {0};
        g_assert_cmpint(
            reply_error(&f, request(&f, ops[i], FUSE_ROOT_ID, arg, sizeof(arg), NULL, 0)), ==,
            -ENOSYS);
    }
    fx_teardown(&f);
}

static void test_header_len_mismatch(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_getattr_in in = {0};
    const uint32_t good = sizeof(struct fuse_in_header) + sizeof(in);
    uint32_t ret =
        request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, good + 1, OUT_SIZE);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    ret =
        request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, 0xffffffffu, OUT_SIZE);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    ret = request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, good - 1, OUT_SIZE);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    ret = request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0,
                     sizeof(struct fuse_in_header), OUT_SIZE);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    /* LOOKUP whose header claims less than the name: refused, not looked up. */
    ret = request_ex(&f, FUSE_LOOKUP, FUSE_ROOT_ID, "hello.txt", 10, NULL, 0,
                     sizeof(struct fuse_in_header) + 4, OUT_SIZE);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    /* Correct length works. */
    ret = request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, good, OUT_SIZE);
    g_assert_cmpint(reply_error(&f, ret), ==, 0);
    fx_teardown(&f);
}

static void test_short_header(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    size_t len;
    struct fuse_getattr_in in = {0};
    uint8_t *buf = build(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, 0, &len);
    const size_t cuts[] = {0, 1, 20, sizeof(struct fuse_in_header) - 1};
    for (unsigned i = 0; i < G_N_ELEMENTS(cuts); i++) {
        memset(f.out, 0xaa, OUT_SIZE);
        struct iovec rd = {buf, cuts[i]};
        struct iovec wr = {f.out, OUT_SIZE};
        g_assert_cmpuint(run_iov(&f, &rd, cuts[i] ? 1 : 0, &wr, 1), ==, 0);
        g_assert_true(out_untouched(&f, OUT_SIZE));
    }
    g_free(buf);
    /* The session still works. */
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    fx_teardown(&f);
}

static void test_short_args(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    uint8_t zero[128] = {0};
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_GETATTR, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_getattr_in) - 1, NULL, 0)),
                    ==, -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_SETATTR, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_setattr_in) - 8, NULL, 0)),
                    ==, -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_OPEN, FUSE_ROOT_ID, zero, 0, NULL, 0)), ==,
                    -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_READ, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_read_in) - 1, NULL, 0)),
                    ==, -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_WRITE, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_write_in) - 1, NULL, 0)),
                    ==, -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_CREATE, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_create_in) - 4, NULL, 0)),
                    ==, -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_MKDIR, FUSE_ROOT_ID, zero, 4, NULL, 0)), ==,
                    -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_RENAME2, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_rename2_in) - 1, NULL, 0)),
                    ==, -EINVAL);
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_READDIR, FUSE_ROOT_ID, zero, 8, NULL, 0)), ==,
                    -EINVAL);
    /* MKDIR with its struct but no name. */
    g_assert_cmpint(reply_error(&f, request(&f, FUSE_MKDIR, FUSE_ROOT_ID, zero,
                                            sizeof(struct fuse_mkdir_in), NULL, 0)),
                    ==, -EINVAL);
    /* Short FORGET / BATCH_FORGET: still no reply. */
    g_assert_cmpuint(request(&f, FUSE_FORGET, FUSE_ROOT_ID, zero, 4, NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    g_assert_cmpuint(request(&f, FUSE_BATCH_FORGET, 0, zero, 4, NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    fx_teardown(&f);
}

/* Requests larger than the server accepts are refused with an error reply. */
static void test_oversized(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    /* A non-WRITE request bigger than the argument buffer (64 KiB + 4 KiB). */
    const size_t big = 80 * 1024;
    char *name = g_malloc(big);
    memset(name, 'a', big - 1);
    name[big - 1] = '\0';
    uint32_t ret = request(&f, FUSE_LOOKUP, FUSE_ROOT_ID, name, big, NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), <, 0);
    g_free(name);
    /* A WRITE above max_write. */
    struct fuse_create_in cin = {.flags = O_RDWR | O_CREAT, .mode = S_IFREG | 0600};
    ret = request(&f, FUSE_CREATE, FUSE_ROOT_ID, &cin, sizeof(cin), "big", 4);
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } cout;
    reply_ok(&f, ret, &cout, sizeof(cout));
    const size_t n = FUSE_MAX_WRITE + 1;
    uint8_t *data = g_malloc0(n);
    struct fuse_write_in win = {.fh = cout.o.fh, .size = (uint32_t)n};
    ret = request(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), data, n);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    /* Exactly max_write is fine. */
    win.size = FUSE_MAX_WRITE;
    ret = request(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), data, FUSE_MAX_WRITE);
    struct fuse_write_out wout;
    reply_ok(&f, ret, &wout, sizeof(wout));
    g_assert_cmpuint(wout.size, ==, FUSE_MAX_WRITE);
    g_free(data);
    fx_teardown(&f);
}

static void test_small_reply_buffer(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_getattr_in in = {0};
    const size_t sizes[] = {0, 1, sizeof(struct fuse_out_header) - 1};
    for (unsigned i = 0; i < G_N_ELEMENTS(sizes); i++) {
        uint32_t ret =
            request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, 0, sizes[i]);
        g_assert_cmpuint(ret, ==, 0);
        g_assert_true(out_untouched(&f, OUT_SIZE));
        /* Errors need the header too. */
        ret = request_ex(&f, 999, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, 0, sizes[i]);
        g_assert_cmpuint(ret, ==, 0);
        g_assert_true(out_untouched(&f, OUT_SIZE));
    }
    /* Room for the header but not the attributes: an error reply that fits. */
    uint32_t ret = request_ex(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, 0,
                              sizeof(struct fuse_out_header) + 8);
    g_assert_cmpint(reply_error(&f, ret), <, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE) == false);
    for (size_t i = sizeof(struct fuse_out_header) + 8; i < OUT_SIZE; i++)
        g_assert_cmpuint(f.out[i], ==, 0xaa);
    /* The reply header split across two writable iovecs. */
    size_t len;
    uint8_t *buf = build(&f, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, 0, &len);
    memset(f.out, 0xaa, OUT_SIZE);
    struct iovec rd = {buf, len};
    struct iovec wr[3] = {{f.out, 5}, {f.out + 5, 6}, {f.out + 11, 200}};
    ret = run_iov(&f, &rd, 1, wr, 3);
    g_free(buf);
    struct fuse_attr_out a;
    reply_ok(&f, ret, &a, sizeof(a));
    g_assert_true(S_ISDIR(a.attr.mode));
    fx_teardown(&f);
}

/* CREATE, then WRITE with the data split across readable iovecs, then READ split across
 * writable iovecs; the host file is checked in between. */
static void test_create_write_read(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_create_in cin = {.flags = O_RDWR | O_CREAT | O_EXCL, .mode = S_IFREG | 0644};
    const char *name = "new.bin";
    uint32_t ret =
        request(&f, FUSE_CREATE, FUSE_ROOT_ID, &cin, sizeof(cin), name, strlen(name) + 1);
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } cout;
    reply_ok(&f, ret, &cout, sizeof(cout));
    g_assert_cmpuint(cout.e.nodeid, >, FUSE_ROOT_ID);
    g_assert_true(S_ISREG(cout.e.attr.mode));
    g_assert_cmpuint(cout.e.attr.size, ==, 0);
    char *path = host_path(&f, "new.bin");
    struct stat st;
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_cmpuint(cout.e.attr.ino, ==, st.st_ino);

    /* WRITE: 10000 bytes of data; header, struct and data spread over odd-sized iovecs. */
    enum { N = 10000 };
    uint8_t *data = g_malloc(N);
    for (unsigned i = 0; i < N; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    struct fuse_write_in win = {.fh = cout.o.fh, .offset = 0, .size = N};
    size_t len;
    uint8_t *req = build(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), data, N, 0, &len);
    const size_t hdr = sizeof(struct fuse_in_header);
    struct iovec rd[5] = {
        {req, 10},                                  /* part of the in header */
        {req + 10, hdr + 8 - 10},                   /* rest of it, part of write_in */
        {req + hdr + 8, sizeof(win) - 8 + 1000},    /* rest of write_in, first data */
        {req + hdr + sizeof(win) + 1000, 1},        /* one byte */
        {req + hdr + sizeof(win) + 1001, N - 1001}, /* the rest */
    };
    memset(f.out, 0xaa, OUT_SIZE);
    struct iovec wr = {f.out, 256};
    ret = run_iov(&f, rd, 5, &wr, 1);
    struct fuse_write_out wout;
    reply_ok(&f, ret, &wout, sizeof(wout));
    g_assert_cmpuint(wout.size, ==, N);
    g_free(req);

    gchar *content;
    gsize clen;
    g_assert_true(g_file_get_contents(path, &content, &clen, NULL));
    g_assert_cmpuint(clen, ==, N);
    g_assert_cmpmem(content, clen, data, N);
    g_free(content);

    /* READ it back into three writable iovecs (the out header split across two). */
    struct fuse_read_in rin = {.fh = cout.o.fh, .offset = 0, .size = N};
    req = build(&f, FUSE_READ, cout.e.nodeid, &rin, sizeof(rin), NULL, 0, 0, &len);
    struct iovec rrd = {req, len};
    uint8_t *reply = g_malloc0(N + 64);
    struct iovec rwr[4] = {
        {reply, 7},
        {reply + 7, 9 + 100},
        {reply + 116, 1},
        {reply + 117, N + 64 - 117},
    };
    ret = run_iov(&f, &rrd, 1, rwr, 4);
    g_free(req);
    struct fuse_out_header oh;
    memcpy(&oh, reply, sizeof(oh));
    g_assert_cmpint(oh.error, ==, 0);
    g_assert_cmpuint(oh.len, ==, sizeof(oh) + N);
    g_assert_cmpuint(ret, ==, sizeof(oh) + N);
    g_assert_cmpuint(oh.unique, ==, f.unique);
    g_assert_cmpmem(reply + sizeof(oh), N, data, N);

    /* A READ at an offset crossing EOF returns the tail only. */
    rin.offset = N - 100;
    rin.size = 4096;
    req = build(&f, FUSE_READ, cout.e.nodeid, &rin, sizeof(rin), NULL, 0, 0, &len);
    rrd = (struct iovec){req, len};
    memset(reply, 0, N + 64);
    ret = run_iov(&f, &rrd, 1, rwr, 4);
    g_free(req);
    memcpy(&oh, reply, sizeof(oh));
    g_assert_cmpint(oh.error, ==, 0);
    g_assert_cmpuint(ret, ==, sizeof(oh) + 100);
    g_assert_cmpmem(reply + sizeof(oh), 100, data + N - 100, 100);

    /* A READ asking for more than the reply buffers hold gets what fits. */
    rin.offset = 0;
    rin.size = N;
    req = build(&f, FUSE_READ, cout.e.nodeid, &rin, sizeof(rin), NULL, 0, 0, &len);
    rrd = (struct iovec){req, len};
    memset(reply, 0, N + 64);
    struct iovec small[2] = {{reply, 20}, {reply + 20, 80}};
    ret = run_iov(&f, &rrd, 1, small, 2);
    g_free(req);
    memcpy(&oh, reply, sizeof(oh));
    g_assert_cmpint(oh.error, ==, 0);
    g_assert_cmpuint(ret, ==, 100);
    g_assert_cmpuint(oh.len, ==, 100);
    g_assert_cmpmem(reply + sizeof(oh), 100 - sizeof(oh), data, 100 - sizeof(oh));

    /* WRITE at an offset extends the file. */
    win = (struct fuse_write_in){.fh = cout.o.fh, .offset = N + 10, .size = 3};
    ret = request(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), "xyz", 3);
    reply_ok(&f, ret, &wout, sizeof(wout));
    g_assert_cmpuint(wout.size, ==, 3);
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_cmpuint(st.st_size, ==, N + 13);

    /* RELEASE. */
    struct fuse_release_in rel = {.fh = cout.o.fh};
    g_assert_cmpint(
        reply_error(&f, request(&f, FUSE_RELEASE, cout.e.nodeid, &rel, sizeof(rel), NULL, 0)), ==,
        0);
    g_free(reply);
    g_free(data);
    g_free(path);
    fx_teardown(&f);
}

static void test_write_size_mismatch(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_create_in cin = {.flags = O_RDWR | O_CREAT, .mode = S_IFREG | 0600};
    uint32_t ret = request(&f, FUSE_CREATE, FUSE_ROOT_ID, &cin, sizeof(cin), "w", 2);
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } cout;
    reply_ok(&f, ret, &cout, sizeof(cout));
    char data[64];
    memset(data, 'q', sizeof(data));
    const uint32_t sizes[] = {sizeof(data) + 1, sizeof(data) - 1, 0, UINT32_MAX};
    for (unsigned i = 0; i < G_N_ELEMENTS(sizes); i++) {
        struct fuse_write_in win = {.fh = cout.o.fh, .size = sizes[i]};
        ret = request(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), data, sizeof(data));
        g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    }
    /* size bigger than data, no data at all. */
    struct fuse_write_in win = {.fh = cout.o.fh, .size = 10};
    ret = request(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, -EINVAL);
    char *path = host_path(&f, "w");
    struct stat st;
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_cmpuint(st.st_size, ==, 0); /* nothing written */
    /* The matching size works. */
    win.size = sizeof(data);
    ret = request(&f, FUSE_WRITE, cout.e.nodeid, &win, sizeof(win), data, sizeof(data));
    struct fuse_write_out wout;
    reply_ok(&f, ret, &wout, sizeof(wout));
    g_assert_cmpuint(wout.size, ==, sizeof(data));
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_cmpuint(st.st_size, ==, sizeof(data));
    g_free(path);
    fx_teardown(&f);
}

/* Collects the names in a READDIR reply payload; returns the offset of the last entry. */
static uint64_t parse_dirents(const uint8_t *p, size_t len, GHashTable *names)
{
    uint64_t last = 0;
    size_t pos = 0;
    while (pos < len) {
        struct fuse_dirent d;
        g_assert_cmpuint(len - pos, >=, FUSE_NAME_OFFSET);
        memcpy(&d, p + pos, FUSE_NAME_OFFSET);
        g_assert_cmpuint(d.namelen, >, 0);
        g_assert_cmpuint(FUSE_DIRENT_SIZE(&d), <=, len - pos);
        char *name = g_strndup((const char *)p + pos + FUSE_NAME_OFFSET, d.namelen);
        g_assert_false(g_hash_table_contains(names, name));
        g_hash_table_add(names, name);
        last = d.off;
        pos += FUSE_DIRENT_SIZE(&d);
    }
    g_assert_cmpuint(pos, ==, len);
    return last;
}

static void test_readdir(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_open_in oin = {.flags = O_RDONLY | O_DIRECTORY};
    uint32_t ret = request(&f, FUSE_OPENDIR, FUSE_ROOT_ID, &oin, sizeof(oin), NULL, 0);
    struct fuse_open_out oout;
    reply_ok(&f, ret, &oout, sizeof(oout));

    GHashTable *names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    uint64_t off = 0;
    for (int rounds = 0;; rounds++) {
        g_assert_cmpint(rounds, <, 100);
        /* A small reply buffer so that several rounds are needed. */
        struct fuse_read_in rin = {.fh = oout.fh, .offset = off, .size = 4096};
        ret = request_ex(&f, FUSE_READDIR, FUSE_ROOT_ID, &rin, sizeof(rin), NULL, 0, 0,
                         sizeof(struct fuse_out_header) + 48);
        g_assert_cmpint(reply_error(&f, ret), ==, 0);
        size_t n = ret - sizeof(struct fuse_out_header);
        g_assert_cmpuint(n, <=, 48);
        if (n == 0)
            break;
        off = parse_dirents(f.out + sizeof(struct fuse_out_header), n, names);
    }
    g_assert_true(g_hash_table_contains(names, "hello.txt"));
    g_assert_true(g_hash_table_contains(names, "sub"));
    g_assert_false(g_hash_table_contains(names, "inner"));
    g_hash_table_remove(names, ".");
    g_hash_table_remove(names, "..");
    g_assert_cmpuint(g_hash_table_size(names), ==, 2);
    g_hash_table_destroy(names);

    /* READDIRPLUS on the same handle from offset 0 sees the file with its attributes. */
    struct fuse_read_in rin = {.fh = oout.fh, .offset = 0, .size = 8192};
    ret = request(&f, FUSE_READDIRPLUS, FUSE_ROOT_ID, &rin, sizeof(rin), NULL, 0);
    g_assert_cmpint(reply_error(&f, ret), ==, 0);
    size_t n = ret - sizeof(struct fuse_out_header), pos = 0;
    bool seen_hello = false;
    while (pos < n) {
        struct fuse_direntplus dp;
        memcpy(&dp, f.out + sizeof(struct fuse_out_header) + pos, FUSE_NAME_OFFSET_DIRENTPLUS);
        const char *nm = (const char *)f.out + sizeof(struct fuse_out_header) + pos +
                         FUSE_NAME_OFFSET_DIRENTPLUS;
        if (dp.dirent.namelen == 9 && memcmp(nm, "hello.txt", 9) == 0) {
            seen_hello = true;
            g_assert_cmpuint(dp.entry_out.attr.size, ==, strlen(HELLO_TEXT));
            g_assert_cmpuint(dp.entry_out.nodeid, >, FUSE_ROOT_ID);
        }
        pos += FUSE_DIRENTPLUS_SIZE(&dp);
    }
    g_assert_cmpuint(pos, ==, n);
    g_assert_true(seen_hello);

    struct fuse_release_in rel = {.fh = oout.fh};
    g_assert_cmpint(
        reply_error(&f, request(&f, FUSE_RELEASEDIR, FUSE_ROOT_ID, &rel, sizeof(rel), NULL, 0)), ==,
        0);
    fx_teardown(&f);
}

static void test_forget(void)
{
    struct fx f;
    fx_setup(&f);
    /* FORGET before INIT: still no reply. */
    struct fuse_forget_in fin = {.nlookup = 1};
    g_assert_cmpuint(request(&f, FUSE_FORGET, 12345, &fin, sizeof(fin), NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    do_init(&f);

    struct fuse_entry_out e;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, 0);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, 0);
    /* Drop one of two references: still there. */
    g_assert_cmpuint(request(&f, FUSE_FORGET, e.nodeid, &fin, sizeof(fin), NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, e.nodeid, &a), ==, 0);
    /* Drop the last one: gone. */
    g_assert_cmpuint(request(&f, FUSE_FORGET, e.nodeid, &fin, sizeof(fin), NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    g_assert_cmpint(getattr(&f, e.nodeid, &a), <, 0);
    /* Forgetting unknown nodeids and the root is harmless. */
    g_assert_cmpuint(request(&f, FUSE_FORGET, 0xdeadbeef, &fin, sizeof(fin), NULL, 0), ==, 0);
    fin.nlookup = UINT64_MAX;
    g_assert_cmpuint(request(&f, FUSE_FORGET, FUSE_ROOT_ID, &fin, sizeof(fin), NULL, 0), ==, 0);
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);

    /* BATCH_FORGET: two entries; and counts larger than the data sent. */
    struct fuse_entry_out e1, e2;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e1), ==, 0);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "sub", &e2), ==, 0);
    struct fuse_forget_one ones[2] = {{.nodeid = e1.nodeid, .nlookup = 1},
                                      {.nodeid = e2.nodeid, .nlookup = 1}};
    struct fuse_batch_forget_in bin = {.count = 2};
    g_assert_cmpuint(request(&f, FUSE_BATCH_FORGET, 0, &bin, sizeof(bin), ones, sizeof(ones)), ==,
                     0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    g_assert_cmpint(getattr(&f, e1.nodeid, &a), <, 0);
    g_assert_cmpint(getattr(&f, e2.nodeid, &a), <, 0);

    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e1), ==, 0);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e1), ==, 0);
    ones[0] = (struct fuse_forget_one){.nodeid = e1.nodeid, .nlookup = 1};
    bin.count = 1000;
    g_assert_cmpuint(
        request(&f, FUSE_BATCH_FORGET, 0, &bin, sizeof(bin), ones, sizeof(ones[0]) + 5), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    g_assert_cmpint(getattr(&f, e1.nodeid, &a), ==, 0); /* one reference left */
    bin.count = UINT32_MAX;
    g_assert_cmpuint(request(&f, FUSE_BATCH_FORGET, 0, &bin, sizeof(bin), NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    g_assert_cmpint(getattr(&f, e1.nodeid, &a), ==, 0);

    /* INTERRUPT gets no reply either. */
    struct fuse_interrupt_in iin = {.unique = 1};
    g_assert_cmpuint(request(&f, FUSE_INTERRUPT, 0, &iin, sizeof(iin), NULL, 0), ==, 0);
    g_assert_true(out_untouched(&f, OUT_SIZE));
    fx_teardown(&f);
}

static void test_destroy(void)
{
    struct fx f;
    fx_setup(&f);
    do_init(&f);
    struct fuse_entry_out e;
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, 0);
    uint32_t ret = request(&f, FUSE_DESTROY, 0, NULL, 0, NULL, 0);
    reply_ok(&f, ret, NULL, 0);
    g_assert_false(fuse_session_initialized(f.se));
    struct fuse_attr_out a;
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, -EIO);
    g_assert_cmpint(lookup(&f, FUSE_ROOT_ID, "hello.txt", &e), ==, -EIO);
    do_init(&f);
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    g_assert_cmpint(getattr(&f, e.nodeid, &a), <, 0); /* dropped by DESTROY */

    /* fuse_session_reset has the same effect. */
    fuse_session_reset(f.se);
    g_assert_false(fuse_session_initialized(f.se));
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, -EIO);
    do_init(&f);
    g_assert_cmpint(getattr(&f, FUSE_ROOT_ID, &a), ==, 0);
    fx_teardown(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("VFS_TEST_LOG"))
        log_init(LOG_LVL_OFF, false);
    rcu_register_thread();
    g_test_add_func("/fuse_server/before_init", test_before_init);
    g_test_add_func("/fuse_server/init", test_init);
    g_test_add_func("/fuse_server/init_major_mismatch", test_init_major_mismatch);
    g_test_add_func("/fuse_server/second_init_resets", test_second_init_resets);
    g_test_add_func("/fuse_server/lookup", test_lookup);
    g_test_add_func("/fuse_server/lookup_bad_names", test_lookup_bad_names);
    g_test_add_func("/fuse_server/getattr_unknown", test_getattr_unknown);
    g_test_add_func("/fuse_server/unknown_opcode", test_unknown_opcode);
    g_test_add_func("/fuse_server/header_len_mismatch", test_header_len_mismatch);
    g_test_add_func("/fuse_server/short_header", test_short_header);
    g_test_add_func("/fuse_server/short_args", test_short_args);
    g_test_add_func("/fuse_server/oversized", test_oversized);
    g_test_add_func("/fuse_server/small_reply_buffer", test_small_reply_buffer);
    g_test_add_func("/fuse_server/create_write_read", test_create_write_read);
    g_test_add_func("/fuse_server/write_size_mismatch", test_write_size_mismatch);
    g_test_add_func("/fuse_server/readdir", test_readdir);
    g_test_add_func("/fuse_server/forget", test_forget);
    g_test_add_func("/fuse_server/destroy", test_destroy);
    int ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
