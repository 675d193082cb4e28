/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE session's state for migration (session_state.c, pt_state.c): a session that served
 * requests is saved, and loaded into a fresh daemon (pt_fs and fuse_session) on the same share,
 * which must then answer for every nodeid and fh without an INIT; hostile streams must each
 * fail and leave that session fresh. Requests go through fuse_session_process with hand-built
 * vq_elems, as in test_fuse_server.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "log.h"
#include "passthrough.h"
#include "pt_core.h"
#include "session_fixture.h"
#include "session_state.h"
#include "virtqueue.h"

#define ODD_NAME "n\xff\xfe name" /* not UTF-8, with a space */
#define DEEP     "a/b/c/deep.txt"

struct side {
    struct pt_fs *fs;
    struct fuse_session *se;
};

struct fx {
    char *dir;
    struct side src, dst;
    struct sf_caller call;
    uint64_t unique;
};

static const struct pt_config base_cfg = {.cache = CACHE_AUTO, .readdirplus = true};

/* ---- set-up ---------------------------------------------------------------------------------- */

static char *hpath(struct fx *f, const char *name)
{
    return sf_path(f->dir, name);
}

static void put_file(struct fx *f, const char *name, const char *data)
{
    sf_put_file(f->dir, name, data);
}

static void put_dir(struct fx *f, const char *name)
{
    sf_put_dir(f->dir, name);
}

static void side_open(struct fx *f, struct side *s, const struct pt_config *cfg)
{
    struct pt_config c = cfg ? *cfg : base_cfg;

    c.shared_dir = f->dir;
    g_assert_cmpint(pt_new(&c, &s->fs), ==, 0);
    s->se = fuse_session_new(s->fs);
    g_assert_nonnull(s->se);
}

static void side_close(struct side *s)
{
    if (!s->se)
        return;
    fuse_session_free(s->se);
    pt_free(s->fs);
    s->se = NULL;
    s->fs = NULL;
}

/* The share: a file at depth, a directory with a space, a name that is not UTF-8. */
static void fx_setup(struct fx *f, const struct pt_config *dst_cfg)
{
    memset(f, 0, sizeof(*f));
    f->dir = g_dir_make_tmp("vfs-state-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    put_dir(f, "a");
    put_dir(f, "a/b");
    put_dir(f, "a/b/c");
    put_file(f, DEEP, "deep data");
    put_dir(f, "sp ace");
    put_file(f, "sp ace/" ODD_NAME, "odd");
    put_file(f, "hello.txt", "hello");
    side_open(f, &f->src, NULL);
    side_open(f, &f->dst, dst_cfg);
    sf_caller_init(&f->call);
    f->unique = 1;
}

static void fx_teardown(struct fx *f)
{
    side_close(&f->src);
    side_close(&f->dst);
    sf_caller_free(&f->call);
    sf_remove_tree(f->dir);
}

/* ---- requests -------------------------------------------------------------------------------- */

/* One request (header, arg, extra); the reply's error, its payload copied to out (outlen). */
static int req(struct fx *f, struct side *s, uint32_t opcode, uint64_t nodeid, const void *arg,
               size_t arglen, const void *extra, size_t extralen, void *out, size_t outlen)
{
    const struct sf_req r = {.opcode = opcode,
                             .nodeid = nodeid,
                             .unique = ++f->unique,
                             .arg = arg,
                             .arglen = arglen,
                             .extra = extra,
                             .extralen = extralen};

    return sf_request(&f->call, s->se, &r, out, outlen);
}

static void do_init(struct fx *f, struct side *s)
{
    struct fuse_init_in in = {.major = 7,
                              .minor = FUSE_KERNEL_MINOR_VERSION,
                              .max_readahead = 65536,
                              .flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES |
                                       FUSE_DO_READDIRPLUS | FUSE_INIT_EXT};
    struct fuse_init_out out;

    g_assert_cmpint(req(f, s, FUSE_INIT, 0, &in, sizeof(in), NULL, 0, &out, sizeof(out)), ==, 0);
    g_assert_true(fuse_session_initialized(s->se));
}

static uint64_t lookup(struct fx *f, struct side *s, uint64_t parent, const char *name)
{
    struct fuse_entry_out e;

    g_assert_cmpint(req(f, s, FUSE_LOOKUP, parent, name, strlen(name) + 1, NULL, 0, &e, sizeof(e)),
                    ==, 0);
    return e.nodeid;
}

/* Looks up every name of path from the root; the last nodeid. */
static uint64_t lookup_path(struct fx *f, struct side *s, const char *path)
{
    gchar **names = g_strsplit(path, "/", -1);
    uint64_t id = FUSE_ROOT_ID;

    for (gchar **n = names; *n; n++)
        id = lookup(f, s, id, *n);
    g_strfreev(names);
    return id;
}

/* GETATTR: 0 and the inode number in *ino, or the error. */
static int getattr_ino(struct fx *f, struct side *s, uint64_t nodeid, uint64_t *ino)
{
    if (ino)
        *ino = 0;
    struct fuse_getattr_in in = {0};
    struct fuse_attr_out a = {0};
    int err = req(f, s, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0, &a, sizeof(a));

    if (err == 0 && ino)
        *ino = a.attr.ino;
    return err;
}

static uint64_t host_ino(struct fx *f, const char *name)
{
    struct stat st;
    char *p = hpath(f, name);

    g_assert_cmpint(lstat(p, &st), ==, 0);
    g_free(p);
    return st.st_ino;
}

static uint64_t open_fh(struct fx *f, struct side *s, uint64_t nodeid, uint32_t flags, bool dir)
{
    struct fuse_open_in in = {.flags = flags};
    struct fuse_open_out o;

    g_assert_cmpint(
        req(f, s, dir ? FUSE_OPENDIR : FUSE_OPEN, nodeid, &in, sizeof(in), NULL, 0, &o, sizeof(o)),
        ==, 0);
    return o.fh;
}

/* READ of up to size bytes at 0 into buf (NUL-terminated): the length, or the error. */
static int read_fh(struct fx *f, struct side *s, uint64_t nodeid, uint64_t fh, char *buf,
                   size_t size)
{
    struct fuse_read_in in = {.fh = fh, .offset = 0, .size = (uint32_t)size - 1};
    int err = req(f, s, FUSE_READ, nodeid, &in, sizeof(in), NULL, 0, NULL, 0);
    struct fuse_out_header oh;

    if (err)
        return err;
    memcpy(&oh, f->call.out, sizeof(oh));
    memcpy(buf, f->call.out + sizeof(oh), oh.len - sizeof(oh));
    buf[oh.len - sizeof(oh)] = '\0';
    return (int)(oh.len - sizeof(oh));
}

static int write_fh(struct fx *f, struct side *s, uint64_t nodeid, uint64_t fh, const char *data)
{
    struct fuse_write_in in = {.fh = fh, .offset = 0, .size = (uint32_t)strlen(data)};
    struct fuse_write_out o;

    return req(f, s, FUSE_WRITE, nodeid, &in, sizeof(in), data, strlen(data), &o, sizeof(o));
}

static void forget(struct fx *f, struct side *s, uint64_t nodeid, uint64_t n)
{
    struct fuse_forget_in in = {.nlookup = n};

    req(f, s, FUSE_FORGET, nodeid, &in, sizeof(in), NULL, 0, NULL, 0);
}

/* ---- moving the state ------------------------------------------------------------------------ */

static int save(struct side *s, GByteArray **out)
{
    int fd = memfd_create("state", MFD_CLOEXEC);
    struct stat st;
    int ret;

    g_assert_cmpint(fd, >=, 0);
    ret = fuse_session_state_save(s->se, fd);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    *out = g_byte_array_sized_new((guint)st.st_size);
    g_byte_array_set_size(*out, (guint)st.st_size);
    g_assert_cmpint(pread(fd, (*out)->data, (size_t)st.st_size, 0), ==, st.st_size);
    close(fd);
    return ret;
}

static int load(struct side *s, const void *data, size_t len)
{
    int fd = memfd_create("state", MFD_CLOEXEC);
    int ret;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, data, len), ==, (ssize_t)len);
    g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
    ret = fuse_session_state_load(s->se, fd);
    close(fd);
    return ret;
}

/* After a failed LOAD the session is fresh: not initialized, the root alone, no handle. */
static void assert_fresh(struct fx *f, struct side *s)
{
    g_assert_false(fuse_session_initialized(s->se));
    g_assert_cmpuint(itab_count(s->fs->inodes), ==, 1);
    g_assert_cmpint(getattr_ino(f, s, FUSE_ROOT_ID, NULL), ==, -EIO); /* no INIT yet */
}

/* ---- round trip ------------------------------------------------------------------------------ */

static void test_round_trip(void)
{
    struct fx f;
    GByteArray *st;
    char buf[256];
    uint64_t ino, deep, odd, spdir, c, hello, fh_deep, fh_dir, fh_odd;

    fx_setup(&f, NULL);
    do_init(&f, &f.src);
    deep = lookup_path(&f, &f.src, DEEP);
    c = lookup_path(&f, &f.src, "a/b/c"); /* twice: lookup count 2 */
    spdir = lookup(&f, &f.src, FUSE_ROOT_ID, "sp ace");
    odd = lookup(&f, &f.src, spdir, ODD_NAME);
    fh_deep = open_fh(&f, &f.src, deep, O_RDWR, false);
    fh_dir = open_fh(&f, &f.src, spdir, O_RDONLY, true);
    fh_odd = open_fh(&f, &f.src, odd, O_RDONLY, false);
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    g_assert_cmpuint(st->len, >, 8);
    g_assert_cmpmem(st->data, 8, "VFSDST\r\n", 8);

    /* The destination never sees INIT. */
    g_assert_false(fuse_session_initialized(f.dst.se));
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_true(fuse_session_initialized(f.dst.se));
    const struct {
        uint64_t nodeid;
        const char *path;
    } known[] = {{deep, DEEP},
                 {c, "a/b/c"},
                 {spdir, "sp ace"},
                 {odd, "sp ace/" ODD_NAME},
                 {FUSE_ROOT_ID, "."}};
    for (size_t i = 0; i < G_N_ELEMENTS(known); i++) {
        g_assert_cmpint(getattr_ino(&f, &f.dst, known[i].nodeid, &ino), ==, 0);
        g_assert_cmpuint(ino, ==, host_ino(&f, known[i].path));
    }
    g_assert_cmpint(read_fh(&f, &f.dst, deep, fh_deep, buf, sizeof(buf)), ==, 9);
    g_assert_cmpstr(buf, ==, "deep data");
    g_assert_cmpint(write_fh(&f, &f.dst, deep, fh_deep, "DEEP"), ==, 0);
    g_assert_cmpint(read_fh(&f, &f.dst, odd, fh_odd, buf, sizeof(buf)), ==, 3);
    g_assert_cmpstr(buf, ==, "odd");
    g_assert_cmpint(write_fh(&f, &f.dst, odd, fh_odd, "x"), ==, -EBADF); /* opened read-only */
    {
        char *p = hpath(&f, DEEP), *data;

        g_assert_true(g_file_get_contents(p, &data, NULL, NULL));
        g_assert_cmpstr(data, ==, "DEEP data");
        g_free(data);
        g_free(p);
    }
    /* The directory handle reads the directory. */
    {
        struct fuse_read_in in = {.fh = fh_dir, .size = 4096};

        g_assert_cmpint(req(&f, &f.dst, FUSE_READDIR, spdir, &in, sizeof(in), NULL, 0, NULL, 0), ==,
                        0);
        g_assert_nonnull(memmem(f.call.out, SF_OUT_SIZE, ODD_NAME, strlen(ODD_NAME)));
    }
    /* Lookup counts came along: c needs two FORGETs. */
    forget(&f, &f.dst, c, 1);
    g_assert_cmpint(getattr_ino(&f, &f.dst, c, NULL), ==, 0);
    forget(&f, &f.dst, c, 1);
    g_assert_cmpint(getattr_ino(&f, &f.dst, c, NULL), <, 0);
    /* New ids continue after the saved ones. */
    hello = lookup(&f, &f.dst, FUSE_ROOT_ID, "hello.txt");
    g_assert_cmpuint(hello, >, odd);
    g_assert_cmpuint(hello, >, deep);
    g_assert_cmpuint(open_fh(&f, &f.dst, hello, O_RDONLY, false), >, fh_odd);
    /* SAVE changed nothing on the source. */
    g_assert_cmpint(read_fh(&f, &f.src, deep, fh_deep, buf, sizeof(buf)), ==, 9);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* A session that never saw INIT moves as a fresh one. */
static void test_uninitialized(void)
{
    struct fx f;
    GByteArray *st;

    fx_setup(&f, NULL);
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    do_init(&f, &f.dst);
    lookup(&f, &f.dst, FUSE_ROOT_ID, "hello.txt");
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    assert_fresh(&f, &f.dst);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* ---- what was renamed, replaced or removed ------------------------------------------------- */

static void host_rename(struct fx *f, const char *from, const char *to)
{
    char *a = hpath(f, from), *b = hpath(f, to);

    g_assert_cmpint(rename(a, b), ==, 0);
    g_free(a);
    g_free(b);
}

static void host_unlink(struct fx *f, const char *name)
{
    char *p = hpath(f, name);

    g_assert_cmpint(unlink(p), ==, 0);
    g_free(p);
}

/*
 * Renamed on the host between SAVE and LOAD: the path leads nowhere. abort fails the LOAD (the
 * source goes on); guest-error loads, with EIO on the renamed inode and EBADF on its handle.
 */
static void test_renamed_between(void)
{
    const struct pt_config guest_error = {.cache = CACHE_AUTO,
                                          .readdirplus = true,
                                          .migration_on_error = MIGRATION_ERROR_GUEST_ERROR};
    struct fx f;
    struct side ge = {0};
    GByteArray *st;
    char buf[64];
    uint64_t deep, c, fh;

    fx_setup(&f, NULL);
    do_init(&f, &f.src);
    deep = lookup_path(&f, &f.src, DEEP);
    c = lookup_path(&f, &f.src, "a/b/c");
    fh = open_fh(&f, &f.src, deep, O_RDONLY, false);
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    host_rename(&f, DEEP, "a/b/c/moved.txt");

    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, -ENOENT);
    assert_fresh(&f, &f.dst);

    side_open(&f, &ge, &guest_error);
    g_assert_cmpint(load(&ge, st->data, st->len), ==, 0);
    g_assert_true(fuse_session_initialized(ge.se));
    g_assert_cmpint(getattr_ino(&f, &ge, deep, NULL), ==, -EIO);
    g_assert_cmpint(read_fh(&f, &ge, deep, fh, buf, sizeof(buf)), ==, -EBADF);
    g_assert_cmpint(getattr_ino(&f, &ge, c, NULL), ==, 0);
    /* The lost inode is still forgotten normally. */
    forget(&f, &ge, deep, 1);
    g_assert_cmpuint(itab_count(ge.fs->inodes), ==, 4); /* the root, a, b and c */
    side_close(&ge);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/*
 * Another file in the saved place: taken for the saved one (same type), unless
 * --migration-verify-handles asks for the very same inode.
 */
static void test_replaced_between(void)
{
    const struct pt_config verify = {
        .cache = CACHE_AUTO, .readdirplus = true, .migration_verify_handles = true};
    struct fx f;
    struct side v = {0};
    GByteArray *st;
    uint64_t hello, ino;

    fx_setup(&f, NULL);
    do_init(&f, &f.src);
    hello = lookup(&f, &f.src, FUSE_ROOT_ID, "hello.txt");
    g_assert_cmpint(save(&f.src, &st), ==, 0);

    /* Unchanged: verified. */
    side_open(&f, &v, &verify);
    g_assert_cmpint(load(&v, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &v, hello, &ino), ==, 0);
    side_close(&v);

    host_rename(&f, "hello.txt", "old.txt"); /* old.txt keeps its inode number in use */
    put_file(&f, "hello.txt", "new");
    side_open(&f, &v, &verify);
    g_assert_cmpint(load(&v, st->data, st->len), ==, -ESTALE);
    assert_fresh(&f, &v);
    side_close(&v);

    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, hello, &ino), ==, 0);
    g_assert_cmpuint(ino, ==, host_ino(&f, "hello.txt"));

    /* A file replaced by a directory: the type differs, refused even without verification. */
    host_unlink(&f, "hello.txt");
    put_dir(&f, "hello.txt");
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, -ESTALE);
    assert_fresh(&f, &f.dst);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* An open file unlinked on the host has no path: SAVE fails, or saves it lost. */
static void test_unlinked_open_file(void)
{
    const struct pt_config guest_error = {.cache = CACHE_AUTO,
                                          .readdirplus = true,
                                          .migration_on_error = MIGRATION_ERROR_GUEST_ERROR};
    struct fx f;
    struct side src2 = {0};
    GByteArray *st;
    uint64_t gone, hello;

    fx_setup(&f, &guest_error);
    put_file(&f, "gone.txt", "x");
    do_init(&f, &f.src);
    gone = lookup(&f, &f.src, FUSE_ROOT_ID, "gone.txt");
    open_fh(&f, &f.src, gone, O_RDONLY, false);
    hello = lookup(&f, &f.src, FUSE_ROOT_ID, "hello.txt");
    host_unlink(&f, "gone.txt");
    g_assert_cmpint(save(&f.src, &st), ==, -ENOENT);
    g_byte_array_unref(st);

    /* The same session state, saved by a daemon with --migration-on-error=guest-error. */
    side_open(&f, &src2, &guest_error);
    do_init(&f, &src2);
    put_file(&f, "gone.txt", "x");
    gone = lookup(&f, &src2, FUSE_ROOT_ID, "gone.txt");
    open_fh(&f, &src2, gone, O_RDONLY, false);
    hello = lookup(&f, &src2, FUSE_ROOT_ID, "hello.txt");
    host_unlink(&f, "gone.txt");
    g_assert_cmpint(save(&src2, &st), ==, 0);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, gone, NULL), ==, -EIO);
    g_assert_cmpint(getattr_ino(&f, &f.dst, hello, NULL), ==, 0);
    /* A lost inode is saved lost again (it answers EIO on the next host too). */
    g_byte_array_unref(st);
    g_assert_cmpint(save(&f.dst, &st), ==, 0);
    g_byte_array_unref(st);
    side_close(&src2);
    fx_teardown(&f);
}

/* /proc/self/fd shows the unlinked name; the walk of the share finds the other link. */
static void test_walk_finds_other_link(void)
{
    struct fx f;
    GByteArray *st;
    uint64_t x, ino;
    char *a, *b;

    fx_setup(&f, NULL);
    put_file(&f, "a/b/x", "linked");
    a = hpath(&f, "a/b/x");
    b = hpath(&f, "sp ace/y");
    g_assert_cmpint(link(a, b), ==, 0);
    do_init(&f, &f.src);
    x = lookup_path(&f, &f.src, "a/b/x");
    host_unlink(&f, "a/b/x");
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, x, &ino), ==, 0);
    g_assert_cmpuint(ino, ==, host_ino(&f, "sp ace/y"));
    g_free(a);
    g_free(b);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* A hostile guest FORGETs the inode of a file it has open: the handle is left out, and the
 * migration goes on. */
static void test_handle_of_forgotten_inode(void)
{
    struct fx f;
    GByteArray *st;
    char buf[64];
    uint64_t hello, fh, deep, fh_deep;

    fx_setup(&f, NULL);
    do_init(&f, &f.src);
    hello = lookup(&f, &f.src, FUSE_ROOT_ID, "hello.txt");
    fh = open_fh(&f, &f.src, hello, O_RDONLY, false);
    deep = lookup_path(&f, &f.src, DEEP);
    fh_deep = open_fh(&f, &f.src, deep, O_RDONLY, false);
    forget(&f, &f.src, hello, 1);
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_cmpint(read_fh(&f, &f.dst, hello, fh, buf, sizeof(buf)), ==, -EBADF);
    g_assert_cmpint(read_fh(&f, &f.dst, deep, fh_deep, buf, sizeof(buf)), ==, 9);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* ---- hostile streams ------------------------------------------------------------------------- */

/* A stream built by hand, following the documented format. */
struct sb {
    GByteArray *a;
};

static void sb_put(struct sb *s, const void *p, size_t n)
{
    g_byte_array_append(s->a, p, (guint)n);
}

static void sb_u16(struct sb *s, uint16_t v)
{
    sb_put(s, &v, 2); /* little-endian host (x86, arm64) */
}

static void sb_u32(struct sb *s, uint32_t v)
{
    sb_put(s, &v, 4);
}

static void sb_u64(struct sb *s, uint64_t v)
{
    sb_put(s, &v, 8);
}

static size_t sb_begin(struct sb *s, uint32_t type, uint32_t flags)
{
    size_t at;

    sb_u32(s, type);
    sb_u32(s, flags);
    at = s->a->len;
    sb_u64(s, 0);
    return at;
}

static void sb_end(struct sb *s, size_t at)
{
    uint64_t len = s->a->len - at - 8;

    memcpy(s->a->data + at, &len, 8);
}

/* An inode record; names NULL-terminated, each with its length (-1: strlen). */
struct tin {
    uint64_t nodeid, nlookup, dev, ino;
    uint32_t mode, flags;
    const char *names[8];
    int lens[8];
};

struct thandle {
    uint64_t fh, nodeid;
    uint32_t kind, flags;
};

struct tstream {
    uint32_t version;
    uint64_t init_flags;
    uint64_t last_nodeid, last_fh;
    const struct tin *inodes;
    size_t n_inodes;
    uint64_t claim_inodes; /* 0: n_inodes */
    const struct thandle *handles;
    size_t n_handles;
    uint64_t claim_handles;
    const GByteArray *locks; /* a LOCKS section's payload (critical), NULL: none */
    uint32_t extra_section;  /* before END, 0: none */
    uint32_t extra_flags;
    bool no_end, after_end;
};

static GByteArray *build_stream(const struct tstream *t)
{
    struct sb s = {g_byte_array_new()};
    const char writer[] = "test";
    size_t at;

    sb_put(&s, "VFSDST\r\n", 8);
    sb_u32(&s, t->version ? t->version : 1);
    sb_u32(&s, 18 + sizeof(writer) - 1);
    sb_u16(&s, sizeof(writer) - 1);
    sb_put(&s, writer, sizeof(writer) - 1);
    at = sb_begin(&s, 1, 1);
    sb_u32(&s, 1);
    sb_u32(&s, 7);
    sb_u32(&s, 31);
    sb_u32(&s, 4096);
    sb_u32(&s, 1);
    sb_u32(&s, 0);
    sb_u64(&s, t->init_flags);
    sb_end(&s, at);
    at = sb_begin(&s, 2, 1);
    sb_u64(&s, t->last_nodeid ? t->last_nodeid : 100);
    sb_u64(&s, t->last_fh ? t->last_fh : 100);
    sb_end(&s, at);
    at = sb_begin(&s, 3, 1);
    sb_u64(&s, t->claim_inodes ? t->claim_inodes : t->n_inodes);
    for (size_t i = 0; i < t->n_inodes; i++) {
        const struct tin *in = &t->inodes[i];
        uint32_t n = 0;

        while (n < 8 && in->names[n])
            n++;
        sb_u64(&s, in->nodeid);
        sb_u64(&s, in->nlookup);
        sb_u64(&s, in->dev);
        sb_u64(&s, in->ino);
        sb_u32(&s, in->mode);
        sb_u32(&s, in->flags);
        sb_u32(&s, n);
        for (uint32_t k = 0; k < n; k++) {
            size_t len = in->lens[k] > 0 ? (size_t)in->lens[k] : strlen(in->names[k]);

            sb_u16(&s, (uint16_t)len);
            sb_put(&s, in->names[k], len);
        }
    }
    sb_end(&s, at);
    at = sb_begin(&s, 4, 1);
    sb_u64(&s, t->claim_handles ? t->claim_handles : t->n_handles);
    for (size_t i = 0; i < t->n_handles; i++) {
        sb_u64(&s, t->handles[i].fh);
        sb_u64(&s, t->handles[i].nodeid);
        sb_u32(&s, t->handles[i].kind);
        sb_u32(&s, t->handles[i].flags);
    }
    sb_end(&s, at);
    if (t->locks) {
        at = sb_begin(&s, 5, 1);
        sb_put(&s, t->locks->data, t->locks->len);
        sb_end(&s, at);
    }
    if (t->extra_section)
        sb_end(&s, sb_begin(&s, t->extra_section, t->extra_flags));
    if (!t->no_end)
        sb_end(&s, sb_begin(&s, 0xffff, 1));
    if (t->after_end)
        sb_u32(&s, 0);
    return s.a;
}

/* The inodes of a good stream: the root, a/b/c/deep.txt's chain, and a handle on deep. */
static const struct tin good_inodes[] = {
    {.nodeid = 1, .nlookup = 2, .mode = S_IFDIR},
    {.nodeid = 2, .nlookup = 1, .mode = S_IFDIR, .names = {"a"}},
    {.nodeid = 3, .nlookup = 1, .mode = S_IFDIR, .names = {"a", "b"}},
    {.nodeid = 4, .nlookup = 1, .mode = S_IFREG, .names = {"a", "b", "c", "deep.txt"}},
    {.nodeid = 5, .nlookup = 3, .mode = S_IFREG, .names = {"sp ace", ODD_NAME}},
};
static const struct thandle good_handle = {.fh = 7, .nodeid = 4, .kind = 0, .flags = 2};

static int load_built(struct fx *f, const struct tstream *t)
{
    GByteArray *a = build_stream(t);
    int ret = load(&f->dst, a->data, a->len);

    g_byte_array_unref(a);
    if (ret < 0)
        assert_fresh(f, &f->dst);
    return ret;
}

/* Replaces inode record i of the good stream with *bad (a copy of the stream's inodes). */
static int load_with_inode(struct fx *f, size_t i, const struct tin *bad)
{
    struct tin inodes[G_N_ELEMENTS(good_inodes) + 1];
    struct tstream t = {.inodes = inodes,
                        .n_inodes = G_N_ELEMENTS(good_inodes),
                        .handles = &good_handle,
                        .n_handles = 1};

    memcpy(inodes, good_inodes, sizeof(good_inodes));
    if (i == G_N_ELEMENTS(good_inodes))
        t.n_inodes++;
    inodes[i] = *bad;
    return load_built(f, &t);
}

static void test_built_stream(void)
{
    struct fx f;
    const struct tstream good = {.inodes = good_inodes,
                                 .n_inodes = G_N_ELEMENTS(good_inodes),
                                 .handles = &good_handle,
                                 .n_handles = 1};
    char buf[64];
    uint64_t ino;

    fx_setup(&f, NULL);
    /* The stream as documented loads (so the failures below are the defects' doing). */
    g_assert_cmpint(load_built(&f, &good), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, 5, &ino), ==, 0);
    g_assert_cmpuint(ino, ==, host_ino(&f, "sp ace/" ODD_NAME));
    g_assert_cmpint(read_fh(&f, &f.dst, 4, 7, buf, sizeof(buf)), ==, 9);
    /* A non-critical unknown section is skipped. */
    {
        struct tstream t = good;

        t.extra_section = 77;
        g_assert_cmpint(load_built(&f, &t), ==, 0);
    }
    fx_teardown(&f);
}

static void test_hostile_names(void)
{
    static const struct {
        const char *name;
        int len;
    } bad[] = {{"..", -1}, {".", -1}, {"x/y", -1}, {"x\0y", 3}, {"", -1}};
    struct fx f;

    fx_setup(&f, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        struct tin in = {.nodeid = 6,
                         .nlookup = 1,
                         .mode = S_IFREG,
                         .names = {"a", bad[i].name},
                         .lens = {0, bad[i].len}};

        g_test_message("name %zu", i);
        g_assert_cmpint(load_with_inode(&f, G_N_ELEMENTS(good_inodes), &in), ==, -EINVAL);
    }
    /* ".." alone, which would leave the share. */
    {
        struct tin in = {.nodeid = 6, .nlookup = 1, .mode = S_IFDIR, .names = {".."}};

        g_assert_cmpint(load_with_inode(&f, G_N_ELEMENTS(good_inodes), &in), ==, -EINVAL);
    }
    /* A name of 256 bytes. */
    {
        char longname[257];
        struct tin in = {.nodeid = 6, .nlookup = 1, .mode = S_IFREG, .names = {longname}};

        memset(longname, 'x', 256);
        longname[256] = '\0';
        g_assert_cmpint(load_with_inode(&f, G_N_ELEMENTS(good_inodes), &in), ==, -EINVAL);
    }
    fx_teardown(&f);
}

static void test_hostile_ids(void)
{
    struct fx f;
    struct tin in;

    fx_setup(&f, NULL);
    /* A duplicate nodeid. */
    in = good_inodes[3];
    in.names[3] = "other";
    in.nodeid = 3;
    g_assert_cmpint(load_with_inode(&f, G_N_ELEMENTS(good_inodes), &in), ==, -EINVAL);
    /* Nodeid 0. */
    in.nodeid = 0;
    g_assert_cmpint(load_with_inode(&f, 4, &in), ==, -EINVAL);
    /* Nodeid beyond the counter. */
    in.nodeid = 1000;
    g_assert_cmpint(load_with_inode(&f, 4, &in), ==, -EINVAL);
    /* No root: the root's record replaced by an inode with a path. */
    in = good_inodes[4];
    in.nodeid = 9;
    g_assert_cmpint(load_with_inode(&f, 0, &in), ==, -EINVAL);
    /* The root with a path, or not a directory. */
    in = (struct tin){.nodeid = 1, .nlookup = 1, .mode = S_IFDIR, .names = {"a"}};
    g_assert_cmpint(load_with_inode(&f, 0, &in), ==, -EINVAL);
    in = (struct tin){.nodeid = 1, .nlookup = 1, .mode = S_IFREG};
    g_assert_cmpint(load_with_inode(&f, 0, &in), ==, -EINVAL);
    /* A lookup count of 0, an unknown type, unknown flags, lost with a path. */
    in = good_inodes[4];
    in.nlookup = 0;
    g_assert_cmpint(load_with_inode(&f, 4, &in), ==, -EINVAL);
    in = good_inodes[4];
    in.mode = 0170000;
    g_assert_cmpint(load_with_inode(&f, 4, &in), ==, -EINVAL);
    in = good_inodes[4];
    in.flags = 2;
    g_assert_cmpint(load_with_inode(&f, 4, &in), ==, -EINVAL);
    in = good_inodes[4];
    in.flags = 1;
    g_assert_cmpint(load_with_inode(&f, 4, &in), ==, -EINVAL);
    /* Two nodeids for one file: the second cannot have its own inode. */
    in = good_inodes[4];
    in.nodeid = 6;
    g_assert_cmpint(load_with_inode(&f, G_N_ELEMENTS(good_inodes), &in), ==, -EEXIST);
    fx_teardown(&f);
}

static void test_hostile_handles(void)
{
    struct fx f;
    const struct thandle bad[] = {
        {.fh = 7, .nodeid = 42, .kind = 0, .flags = 2},       /* no such inode */
        {.fh = 500, .nodeid = 4, .kind = 0, .flags = 2},      /* beyond the counter */
        {.fh = 7, .nodeid = 4, .kind = 1, .flags = 0},        /* a directory handle on a file */
        {.fh = 7, .nodeid = 2, .kind = 0, .flags = 0},        /* a file handle on a directory */
        {.fh = 7, .nodeid = 4, .kind = 2, .flags = 0},        /* unknown kind */
        {.fh = 7, .nodeid = 4, .kind = 0, .flags = 3},        /* access mode 3 */
        {.fh = 7, .nodeid = 4, .kind = 0, .flags = 1u << 20}, /* unknown flag */
    };
    const struct thandle dup[2] = {good_handle, good_handle};

    fx_setup(&f, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        struct tstream t = {.inodes = good_inodes,
                            .n_inodes = G_N_ELEMENTS(good_inodes),
                            .handles = &bad[i],
                            .n_handles = 1};

        g_test_message("handle %zu", i);
        g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    }
    {
        struct tstream t = {.inodes = good_inodes,
                            .n_inodes = G_N_ELEMENTS(good_inodes),
                            .handles = dup,
                            .n_handles = 2};

        g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    }
    /* fh 0 is an fh like any other (the Rust virtiofsd hands it out first). */
    {
        const struct thandle zero = {.fh = 0, .nodeid = 4, .kind = 0, .flags = 2};
        struct tstream t = {.inodes = good_inodes,
                            .n_inodes = G_N_ELEMENTS(good_inodes),
                            .handles = &zero,
                            .n_handles = 1};

        g_assert_cmpint(load_built(&f, &t), ==, 0);
    }
    /* O_TRUNC and O_CREAT in the saved flags are dropped: the file keeps its data. */
    {
        const struct thandle trunc = {
            .fh = 7, .nodeid = 4, .kind = 0, .flags = 2 | 1u << 8 | 1u << 9 | 1u << 10};
        struct tstream t = {.inodes = good_inodes,
                            .n_inodes = G_N_ELEMENTS(good_inodes),
                            .handles = &trunc,
                            .n_handles = 1};
        char buf[64];

        g_assert_cmpint(load_built(&f, &t), ==, 0);
        g_assert_cmpint(read_fh(&f, &f.dst, 4, 7, buf, sizeof(buf)), ==, 9);
    }
    fx_teardown(&f);
}

static void test_hostile_structure(void)
{
    const struct tstream good = {.inodes = good_inodes,
                                 .n_inodes = G_N_ELEMENTS(good_inodes),
                                 .handles = &good_handle,
                                 .n_handles = 1};
    struct fx f;
    struct tstream t;

    fx_setup(&f, NULL);
    t = good;
    t.version = 2;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.claim_inodes = UINT64_C(1) << 32;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.claim_handles = UINT64_C(1) << 32;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.claim_inodes = 4; /* fewer than there are: stray bytes */
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.extra_section = 77;
    t.extra_flags = 1; /* critical and unknown */
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.extra_section = 5; /* LOCKS without even its counts */
    t.extra_flags = 1;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.extra_section = 2; /* COUNTERS twice */
    t.extra_flags = 1;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.no_end = true;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.after_end = true;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    t = good;
    t.last_nodeid = UINT64_MAX;
    g_assert_cmpint(load_built(&f, &t), ==, -EINVAL);
    /* INIT agreed a flag this daemon does not offer with its options (no --posix-acl). */
    t = good;
    t.init_flags = FUSE_POSIX_ACL;
    g_assert_cmpint(load_built(&f, &t), ==, -EPROTO);
    fx_teardown(&f);
}

/* ---- hostile LOCKS sections --------------------------------------------------------------- */

#define TEOF 0x7fffffffffffffffULL

struct trange {
    uint64_t start, end;
    uint32_t type;
};

struct towner {
    uint64_t nodeid, owner, fh;
    uint32_t pid, reserved;
    uint64_t claim_ranges; /* 0: n */
    size_t n;
    struct trange r[2];
};

struct tflock {
    uint64_t fh;
    uint32_t type;
};

struct tlocks {
    const struct towner *owners;
    size_t n_owners;
    uint64_t claim_owners;
    const struct tflock *flocks;
    size_t n_flocks;
    uint64_t claim_flocks;
    bool stray;
};

static GByteArray *build_locks(const struct tlocks *l)
{
    struct sb s = {g_byte_array_new()};

    sb_u64(&s, l->claim_owners ? l->claim_owners : l->n_owners);
    for (size_t i = 0; i < l->n_owners; i++) {
        const struct towner *o = &l->owners[i];

        sb_u64(&s, o->nodeid);
        sb_u64(&s, o->owner);
        sb_u64(&s, o->fh);
        sb_u32(&s, o->pid);
        sb_u32(&s, o->reserved);
        sb_u64(&s, o->claim_ranges ? o->claim_ranges : o->n);
        for (size_t k = 0; k < o->n; k++) {
            sb_u64(&s, o->r[k].start);
            sb_u64(&s, o->r[k].end);
            sb_u32(&s, o->r[k].type);
        }
    }
    sb_u64(&s, l->claim_flocks ? l->claim_flocks : l->n_flocks);
    for (size_t i = 0; i < l->n_flocks; i++) {
        sb_u64(&s, l->flocks[i].fh);
        sb_u32(&s, l->flocks[i].type);
    }
    if (l->stray)
        sb_u32(&s, 0);
    return s.a;
}

/* The good stream (handle 7 on inode 4, mode h_flags) with the locks l. */
static int load_locks(struct fx *f, const struct tlocks *l, uint32_t h_flags)
{
    const struct thandle h = {.fh = 7, .nodeid = 4, .kind = 0, .flags = h_flags};
    GByteArray *locks = build_locks(l);
    struct tstream t = {.inodes = good_inodes,
                        .n_inodes = G_N_ELEMENTS(good_inodes),
                        .handles = &h,
                        .n_handles = 1,
                        .locks = locks};
    int ret = load_built(f, &t);

    g_byte_array_unref(locks);
    return ret;
}

/* What a host process sees at byte at of the deep file: F_UNLCK or the conflicting type. */
static short host_deep_lock(struct fx *f, off_t at)
{
    char *p = hpath(f, DEEP);
    int fd = open(p, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};

    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type;
}

static bool host_deep_flock_free(struct fx *f)
{
    char *p = hpath(f, DEEP);
    int fd = open(p, O_RDWR);
    bool free_now;

    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    free_now = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return free_now;
}

static const struct towner good_owner = {
    .nodeid = 4,
    .owner = 0x11,
    .fh = 7,
    .pid = 9,
    .n = 2,
    .r = {{0, 9, 1}, {20, TEOF, 0}},
};
static const struct tflock good_flock = {.fh = 7, .type = 1};

static void test_locks_built(void)
{
    const struct pt_config cfg = {.cache = CACHE_AUTO, .posix_locks = true, .flock_locks = true};
    const struct tlocks good = {
        .owners = &good_owner, .n_owners = 1, .flocks = &good_flock, .n_flocks = 1};
    struct fx f;

    /* As documented, the section loads, and the host sees the locks taken. */
    fx_setup(&f, &cfg);
    g_assert_cmpint(load_locks(&f, &good, 2), ==, 0);
    g_assert_cmpint(host_deep_lock(&f, 5), ==, F_WRLCK);
    g_assert_cmpint(host_deep_lock(&f, 15), ==, F_UNLCK);
    g_assert_cmpint(host_deep_lock(&f, 30), ==, F_RDLCK);
    g_assert_false(host_deep_flock_free(&f));
    fx_teardown(&f);
    /* A daemon that does not serve locks cannot take the guest's: the LOAD fails. */
    fx_setup(&f, NULL);
    g_assert_cmpint(load_locks(&f, &good, 2), ==, -EPROTO);
    fx_teardown(&f);
}

static void test_hostile_locks(void)
{
    const struct pt_config cfg = {.cache = CACHE_AUTO, .posix_locks = true, .flock_locks = true};
    struct towner o[2];
    struct tflock fl[2];
    struct tlocks l;
    struct fx f;

    fx_setup(&f, &cfg);
#define OWNER_CASE(what, edit)                                                                     \
    do {                                                                                           \
        o[0] = good_owner;                                                                         \
        l = (struct tlocks){.owners = o, .n_owners = 1};                                           \
        edit;                                                                                      \
        g_test_message("%s", what);                                                                \
        g_assert_cmpint(load_locks(&f, &l, 2), ==, -EINVAL);                                       \
    } while (0)
    OWNER_CASE("unknown lock type", o[0].r[0].type = 2);
    OWNER_CASE("start after end", (o[0].r[0].start = 10, o[0].r[0].end = 9));
    OWNER_CASE("end past 2^63-1", o[0].r[1].end = TEOF + 1);
    OWNER_CASE("unknown nodeid", o[0].nodeid = 42);
    OWNER_CASE("unknown fh", o[0].fh = 99);
    OWNER_CASE("fh of another inode", o[0].nodeid = 5);
    OWNER_CASE("reserved field", o[0].reserved = 1);
    OWNER_CASE("huge owner count", l.claim_owners = UINT64_C(1) << 40);
    OWNER_CASE("owner count past the bound", l.claim_owners = 5000);
    OWNER_CASE("huge range count", o[0].claim_ranges = UINT64_C(1) << 40);
    OWNER_CASE("range count past the rest", o[0].claim_ranges = 3);
    OWNER_CASE("owner twice", (o[1] = o[0], l.n_owners = 2));
    OWNER_CASE("stray bytes", l.stray = true);
#undef OWNER_CASE
    /* A write lock where the guest has the file open only for reading. */
    o[0] = good_owner;
    l = (struct tlocks){.owners = o, .n_owners = 1};
    g_assert_cmpint(load_locks(&f, &l, 0), ==, -EINVAL);
#define FLOCK_CASE(what, edit)                                                                     \
    do {                                                                                           \
        fl[0] = good_flock;                                                                        \
        l = (struct tlocks){.flocks = fl, .n_flocks = 1};                                          \
        edit;                                                                                      \
        g_test_message("%s", what);                                                                \
        g_assert_cmpint(load_locks(&f, &l, 2), ==, -EINVAL);                                       \
    } while (0)
    FLOCK_CASE("flock type", fl[0].type = 5);
    FLOCK_CASE("flock on an unknown fh", fl[0].fh = 99);
    FLOCK_CASE("two flocks on one handle", (fl[1] = fl[0], l.n_flocks = 2));
    FLOCK_CASE("huge flock count", l.claim_flocks = UINT64_C(1) << 40);
#undef FLOCK_CASE
    /* Nothing was taken on the host by any of them. */
    g_assert_cmpint(host_deep_lock(&f, 5), ==, F_UNLCK);
    g_assert_true(host_deep_flock_free(&f));
    fx_teardown(&f);
}

/* A symlink planted in place of a directory of the path: never followed. */
static void test_symlink_in_path(void)
{
    const struct tstream good = {.inodes = good_inodes,
                                 .n_inodes = G_N_ELEMENTS(good_inodes),
                                 .handles = &good_handle,
                                 .n_handles = 1};
    struct fx f;
    char *b, *target;

    fx_setup(&f, NULL);
    /* The same tree elsewhere in the share, and a/b a symlink to it. */
    put_dir(&f, "else");
    put_dir(&f, "else/c");
    put_file(&f, "else/c/deep.txt", "planted");
    host_rename(&f, "a/b", "old-b");
    b = hpath(&f, "a/b");
    target = hpath(&f, "else");
    g_assert_cmpint(symlink(target, b), ==, 0);
    /* a/b itself: now of another type. */
    g_assert_cmpint(load_built(&f, &good), ==, -ESTALE);
    /* Only a/b/c/deep.txt: the walk meets the symlink in the middle and does not follow it. */
    {
        const struct tin inodes[] = {good_inodes[0], good_inodes[3]};
        const struct tstream t = {
            .inodes = inodes, .n_inodes = 2, .handles = &good_handle, .n_handles = 1};

        g_assert_cmpint(load_built(&f, &t), ==, -ENOTDIR);
    }
    g_free(b);
    g_free(target);
    fx_teardown(&f);
}

/* Every prefix of a real stream, and garbage: each fails and leaves a fresh session. */
static void test_truncated_and_garbage(void)
{
    struct fx f;
    GByteArray *st;
    GRand *rand = g_rand_new_with_seed(14);
    uint8_t junk[512];
    uint64_t deep;

    fx_setup(&f, NULL);
    do_init(&f, &f.src);
    deep = lookup_path(&f, &f.src, DEEP);
    open_fh(&f, &f.src, deep, O_RDWR, false);
    open_fh(&f, &f.src, lookup(&f, &f.src, FUSE_ROOT_ID, "sp ace"), O_RDONLY, true);
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    for (guint n = 0; n < st->len; n++) {
        int ret = load(&f.dst, st->data, n);

        if (ret != -EINVAL)
            g_test_message("prefix of %u bytes: %d", n, ret);
        g_assert_cmpint(ret, ==, -EINVAL);
        g_assert_false(fuse_session_initialized(f.dst.se));
        g_assert_cmpuint(itab_count(f.dst.fs->inodes), ==, 1);
    }
    assert_fresh(&f, &f.dst);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    for (int i = 0; i < 200; i++) {
        size_t len = (size_t)g_rand_int_range(rand, 0, sizeof(junk));

        for (size_t k = 0; k < len; k++)
            junk[k] = (uint8_t)g_rand_int(rand);
        if (i % 2) /* with our magic and version, so the parser gets further */
            memcpy(junk, st->data, len < 16 ? len : 16);
        g_assert_cmpint(load(&f.dst, junk, len), <, 0);
        assert_fresh(&f, &f.dst);
    }
    /* Still a working daemon: INIT and serve. */
    do_init(&f, &f.dst);
    lookup(&f, &f.dst, FUSE_ROOT_ID, "hello.txt");
    g_rand_free(rand);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* ---- --migration-mode=file-handles ----------------------------------------------------------- */

static const struct pt_config fh_cfg = {
    .cache = CACHE_AUTO, .readdirplus = true, .migration_mode = MIGRATION_FILE_HANDLES};

/* Where the FILE_HANDLES section's payload starts (it is the last before END). */
static size_t fh_section(GByteArray *st)
{
    static const uint8_t hdr[8] = {6, 0, 0, 0, 1, 0, 0, 0};
    size_t found = 0;

    for (size_t i = 0; i + 16 <= st->len; i++) {
        uint64_t len;

        if (memcmp(st->data + i, hdr, 8) != 0)
            continue;
        memcpy(&len, st->data + i + 8, 8);
        if (i + 16 + len + 16 == st->len)
            found = i + 16;
    }
    g_assert_cmpuint(found, !=, 0);
    return found;
}

/*
 * Renamed on the host between SAVE and LOAD (a directory on the path and the file itself,
 * into another directory): found by the handles, with the nodeids and the open handle; an
 * inode the source had no path for (unlinked, still open) is saved with its handle, and LOAD
 * cannot find it beneath the share: it fails, or is lost with guest-error. A find-paths
 * LOAD of the same stream uses the paths (and the renamed file is not found).
 */
static void test_fh_renamed_between(void)
{
    struct pt_config fh_ge = fh_cfg;
    struct fx f;
    struct side ge = {0}, paths = {0};
    GByteArray *st;
    char buf[64];
    uint64_t deep, b, fh, ino, hello;

    fh_ge.migration_on_error = MIGRATION_ERROR_GUEST_ERROR;
    fx_setup(&f, &fh_cfg);
    side_close(&f.src);
    side_open(&f, &f.src, &fh_cfg);
    do_init(&f, &f.src);
    deep = lookup_path(&f, &f.src, DEEP);
    b = lookup_path(&f, &f.src, "a/b");
    hello = lookup(&f, &f.src, FUSE_ROOT_ID, "hello.txt");
    fh = open_fh(&f, &f.src, deep, O_RDONLY, false);
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    host_rename(&f, DEEP, "sp ace/moved.txt");
    host_rename(&f, "a/b", "a/bb");

    side_open(&f, &paths, NULL);
    g_assert_cmpint(load(&paths, st->data, st->len), ==, -ENOENT);
    side_close(&paths);

    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, deep, &ino), ==, 0);
    g_assert_cmpuint(ino, ==, host_ino(&f, "sp ace/moved.txt"));
    g_assert_cmpint(getattr_ino(&f, &f.dst, b, &ino), ==, 0);
    g_assert_cmpuint(ino, ==, host_ino(&f, "a/bb"));
    g_assert_cmpuint(lookup(&f, &f.dst, b, "c"), ==, lookup_path(&f, &f.src, "a/bb/c"));
    g_assert_cmpint(read_fh(&f, &f.dst, deep, fh, buf, sizeof(buf)), ==, 9);
    g_assert_cmpmem(buf, 9, "deep data", 9);
    g_byte_array_unref(st);

    /* Unlinked while open: saved with its handle alone (find-paths would fail the SAVE). */
    put_file(&f, "gone.txt", "x");
    uint64_t gone = lookup(&f, &f.src, FUSE_ROOT_ID, "gone.txt");
    open_fh(&f, &f.src, gone, O_RDONLY, false);
    host_unlink(&f, "gone.txt");
    g_assert_cmpint(save(&f.src, &st), ==, 0);
    side_close(&f.dst);
    side_open(&f, &f.dst, &fh_cfg);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, -EXDEV);
    assert_fresh(&f, &f.dst);
    side_open(&f, &ge, &fh_ge);
    g_assert_cmpint(load(&ge, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &ge, gone, NULL), ==, -EIO);
    g_assert_cmpint(getattr_ino(&f, &ge, hello, NULL), ==, 0);
    side_close(&ge);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/*
 * Hostile FILE_HANDLES sections: another file system's id, a root handle that opens another
 * directory, a handle of a file outside the share (on the same file system), bad lengths
 * and types, a handle of an inode not saved; each fails and leaves the session fresh.
 */
static void test_fh_hostile(void)
{
    struct fx f;
    struct side src = {0};
    GByteArray *st, *bad;
    uint64_t hello;
    size_t at, rec;

    fx_setup(&f, &fh_cfg);
    /* The share is a subdirectory; "outside" is next to it, on the same file system. */
    char *share = hpath(&f, "share"), *outside = hpath(&f, "outside");
    g_assert_cmpint(mkdir(share, 0755), ==, 0);
    g_assert_true(g_file_set_contents(outside, "secret", -1, NULL));
    struct pt_config c = fh_cfg;
    c.shared_dir = share;
    g_assert_cmpint(pt_new(&c, &src.fs), ==, 0);
    src.se = fuse_session_new(src.fs);
    side_close(&f.dst);
    g_assert_cmpint(pt_new(&c, &f.dst.fs), ==, 0);
    f.dst.se = fuse_session_new(f.dst.fs);
    char *inside = g_build_filename(share, "in.txt", NULL);
    g_assert_true(g_file_set_contents(inside, "inside", -1, NULL));
    do_init(&f, &src);
    hello = lookup(&f, &src, FUSE_ROOT_ID, "in.txt");
    g_assert_cmpint(save(&src, &st), ==, 0);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0); /* as saved: fine */
    at = fh_section(st);

    /* The records: the root's and in.txt's (in the inode table's order). */
    struct file_handle *ho = g_malloc0(sizeof(*ho) + MAX_HANDLE_SZ);
    struct file_handle *hi = g_malloc0(sizeof(*hi) + MAX_HANDLE_SZ);
    int mnt;
    ho->handle_bytes = hi->handle_bytes = MAX_HANDLE_SZ;
    g_assert_cmpint(name_to_handle_at(AT_FDCWD, outside, ho, &mnt, 0), ==, 0);
    g_assert_cmpint(name_to_handle_at(AT_FDCWD, inside, hi, &mnt, 0), ==, 0);
    g_assert_cmpuint(ho->handle_bytes, ==, hi->handle_bytes);
    const uint8_t *p = memmem(st->data + at, st->len - at, hi->f_handle, hi->handle_bytes);
    g_assert_nonnull(p);
    rec = (size_t)(p - st->data) - 14; /* nodeid u64, type u32, length u16 */

    /* A handle of a file outside the share: opens (same mount), and is refused. */
    bad = g_byte_array_new();
    g_byte_array_append(bad, st->data, st->len);
    memcpy(bad->data + rec + 14, ho->f_handle, ho->handle_bytes);
    g_assert_cmpint(load(&f.dst, bad->data, bad->len), ==, -EXDEV);
    assert_fresh(&f, &f.dst);

    /* Another file system's id. */
    g_byte_array_set_size(bad, 0);
    g_byte_array_append(bad, st->data, st->len);
    bad->data[at] ^= 0x5a;
    g_assert_cmpint(load(&f.dst, bad->data, bad->len), ==, -EXDEV);
    assert_fresh(&f, &f.dst);

    /* The root's handle swapped for in.txt's: the root's record opens another inode. */
    g_byte_array_set_size(bad, 0);
    g_byte_array_append(bad, st->data, st->len);
    for (size_t r = at + 16; r < bad->len - 16;) { /* each record of the root: nodeid 1 */
        uint64_t id;
        uint16_t len;
        memcpy(&id, bad->data + r, 8);
        memcpy(&len, bad->data + r + 12, 2);
        if (id == FUSE_ROOT_ID && len == hi->handle_bytes)
            memcpy(bad->data + r + 14, hi->f_handle, len);
        r += 14 + len;
    }
    g_assert_cmpint(load(&f.dst, bad->data, bad->len), ==, -EXDEV);
    assert_fresh(&f, &f.dst);

    /* Bad bytes: type with the sign bit, length 0 and 129, a type no file system has, a
     * nodeid not saved, a count beyond the records. */
    const struct {
        size_t off;
        size_t n;
        uint64_t v;
        int err;
    } cases[] = {
        {rec + 8, 4, 0x80000000u, -EINVAL}, {rec + 12, 2, 0, -EINVAL}, {rec + 12, 2, 129, -EINVAL},
        {rec + 8, 4, 0xee, -ESTALE},        {rec, 8, 99, -EINVAL},     {at + 8, 8, 3, -EINVAL},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_byte_array_set_size(bad, 0);
        g_byte_array_append(bad, st->data, st->len);
        memcpy(bad->data + cases[i].off, &cases[i].v, cases[i].n);
        g_test_message("case %zu", i);
        int ret = load(&f.dst, bad->data, bad->len);
        g_assert_cmpint(ret, <, 0);
        if (cases[i].err != -ESTALE) /* the kernel's errno for a type it knows not varies */
            g_assert_cmpint(ret, ==, cases[i].err);
        assert_fresh(&f, &f.dst);
    }
    /* And the stream unchanged still loads: nothing above left a trace. */
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, hello, NULL), ==, 0);

    g_byte_array_unref(bad);
    g_byte_array_unref(st);
    g_free(ho);
    g_free(hi);
    side_close(&src);
    g_free(inside);
    g_free(share);
    g_free(outside);
    fx_teardown(&f);
}

/* ---- a handover's inodes passed as fds ------------------------------------------------------- */

static int save_handover(struct side *s, GByteArray **out, int **fds, size_t *n)
{
    int fd = memfd_create("state", MFD_CLOEXEC);
    struct stat st;
    int ret;

    g_assert_cmpint(fd, >=, 0);
    ret = fuse_session_state_save_handover(s->se, fd, fds, n);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    *out = g_byte_array_sized_new((guint)st.st_size);
    g_byte_array_set_size(*out, (guint)st.st_size);
    g_assert_cmpint(pread(fd, (*out)->data, (size_t)st.st_size, 0), ==, st.st_size);
    close(fd);
    return ret;
}

static int load_handover(struct fx *f, const GByteArray *st, const int *fds, size_t n)
{
    int fd = memfd_create("state", MFD_CLOEXEC);
    int ret;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, st->data, st->len), ==, (ssize_t)st->len);
    g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
    ret = fuse_session_state_load_handover(f->dst.se, fd, fds, n);
    close(fd);
    if (ret < 0)
        assert_fresh(f, &f->dst);
    return ret;
}

/* The fds of this process open on a file /proc/self/fd shows ending in suffix. */
static unsigned fds_on(const char *suffix)
{
    unsigned n = 0;
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    const char *e;

    g_assert_nonnull(d);
    while ((e = g_dir_read_name(d))) {
        char link[PATH_MAX], *p = g_build_filename("/proc/self/fd", e, NULL);
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

/* GETATTR: 0 and the link count in *nlink, or the error. */
static int getattr_nlink(struct fx *f, struct side *s, uint64_t nodeid, uint32_t *nlink)
{
    struct fuse_getattr_in in = {0};
    struct fuse_attr_out a = {0};
    int err = req(f, s, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0, &a, sizeof(a));

    *nlink = a.attr.nlink;
    return err;
}

static int unlink_name(struct fx *f, struct side *s, const char *name)
{
    return req(f, s, FUSE_UNLINK, FUSE_ROOT_ID, name, strlen(name) + 1, NULL, 0, NULL, 0);
}

/* Where the PASSED_FDS section's payload starts (it is the last before END). */
static size_t passed_section(const GByteArray *st)
{
    static const uint8_t hdr[8] = {7, 0, 0, 0, 1, 0, 0, 0};
    size_t found = 0;

    for (size_t i = 0; i + 16 <= st->len; i++) {
        uint64_t len;

        if (memcmp(st->data + i, hdr, 8) != 0)
            continue;
        memcpy(&len, st->data + i + 8, 8);
        if (i + 16 + len + 16 == st->len)
            found = i + 16;
    }
    g_assert_cmpuint(found, !=, 0);
    return found;
}

/* The index of nodeid's fd in the PASSED_FDS section at (records of u64 nodeid, u32 index). */
static uint32_t passed_index(const GByteArray *st, size_t at, uint64_t nodeid)
{
    uint64_t n;

    memcpy(&n, st->data + at, 8);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id;
        uint32_t idx;

        memcpy(&id, st->data + at + 8 + i * 12, 8);
        memcpy(&idx, st->data + at + 16 + i * 12, 4);
        if (id == nodeid)
            return idx;
    }
    g_assert_not_reached();
    return 0;
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
}

/*
 * A file the guest unlinked while it holds it (open, and in the gap between UNLINK and FORGET)
 * has no path: a migration's SAVE fails, a handover's passes its fd. Only the handover's LOAD
 * takes that stream, with exactly those fds; the fh reads and writes afterwards, GETATTR shows
 * nlink 0, and RELEASE and FORGET free the file on the host.
 */
static void test_handover_unlinked(void)
{
    struct fx f;
    GByteArray *st, *dummy;
    int *fds, *none;
    size_t n, n0;
    uint64_t gone, gap, hello, fh;
    uint32_t nlink;
    char buf[64];

    fx_setup(&f, NULL);
    put_file(&f, "gone.txt", "before");
    put_file(&f, "gap.txt", "x");
    do_init(&f, &f.src);
    gone = lookup(&f, &f.src, FUSE_ROOT_ID, "gone.txt");
    fh = open_fh(&f, &f.src, gone, O_RDWR, false);
    gap = lookup(&f, &f.src, FUSE_ROOT_ID, "gap.txt");
    hello = lookup(&f, &f.src, FUSE_ROOT_ID, "hello.txt");

    /* Nothing to pass yet: no fd, and the stream is a plain one. */
    g_assert_cmpint(save_handover(&f.src, &st, &none, &n0), ==, 0);
    g_assert_cmpuint(n0, ==, 0);
    g_assert_null(none);
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, 0);
    g_byte_array_unref(st);

    g_assert_cmpint(unlink_name(&f, &f.src, "gone.txt"), ==, 0);
    g_assert_cmpint(unlink_name(&f, &f.src, "gap.txt"), ==, 0);
    g_assert_cmpint(save(&f.src, &dummy), ==, -ENOENT); /* a migration cannot move them */
    g_byte_array_unref(dummy);
    g_assert_cmpint(save_handover(&f.src, &st, &fds, &n), ==, 0);
    g_assert_cmpuint(n, ==, 2);

    /* A DEVICE_STATE LOAD (no fds beside it) refuses the stream. */
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, -EINVAL);
    assert_fresh(&f, &f.dst);
    /* One fd missing, one too many, the two swapped: refused. */
    int more[3] = {fds[0], fds[1], -1}, swapped[2] = {fds[1], fds[0]};
    char *hp = hpath(&f, "hello.txt");
    more[2] = open(hp, O_PATH | O_CLOEXEC);
    g_assert_cmpint(more[2], >=, 0);
    g_assert_cmpint(load_handover(&f, st, fds, 1), ==, -EINVAL);
    g_assert_cmpint(load_handover(&f, st, more, 3), ==, -EINVAL);
    g_assert_cmpint(load_handover(&f, st, swapped, 2), ==, -ESTALE);
    close(more[2]);
    g_free(hp);

    g_assert_cmpint(load_handover(&f, st, fds, n), ==, 0);
    /* The old process is gone, and the fds it sent are closed: the new one holds the files. */
    side_close(&f.src);
    close_fds(fds, n);
    g_assert_cmpint(read_fh(&f, &f.dst, gone, fh, buf, sizeof(buf)), ==, 6);
    g_assert_cmpstr(buf, ==, "before");
    g_assert_cmpint(write_fh(&f, &f.dst, gone, fh, "after!"), ==, 0);
    g_assert_cmpint(read_fh(&f, &f.dst, gone, fh, buf, sizeof(buf)), ==, 6);
    g_assert_cmpstr(buf, ==, "after!");
    g_assert_cmpint(getattr_nlink(&f, &f.dst, gone, &nlink), ==, 0);
    g_assert_cmpuint(nlink, ==, 0);
    g_assert_cmpint(getattr_nlink(&f, &f.dst, gap, &nlink), ==, 0);
    g_assert_cmpuint(nlink, ==, 0);
    g_assert_cmpint(getattr_nlink(&f, &f.dst, hello, &nlink), ==, 0);
    g_assert_cmpuint(nlink, ==, 1);
    g_assert_cmpuint(fds_on("/gone.txt (deleted)"), ==, 2); /* the inode's and the handle's */
    g_assert_cmpuint(fds_on("/gap.txt (deleted)"), ==, 1);

    /* A second handover passes them again. */
    g_assert_cmpint(save_handover(&f.dst, &dummy, &fds, &n), ==, 0);
    g_assert_cmpuint(n, ==, 2);
    g_byte_array_unref(dummy);
    close_fds(fds, n);

    /* RELEASE and FORGET: nothing holds the files any more. */
    struct fuse_release_in rel = {.fh = fh};
    g_assert_cmpint(req(&f, &f.dst, FUSE_RELEASE, gone, &rel, sizeof(rel), NULL, 0, NULL, 0), ==,
                    0);
    forget(&f, &f.dst, gone, 1);
    forget(&f, &f.dst, gap, 1);
    rcu_barrier();
    fuse_session_idle(f.dst.se); /* as the worker does before it waits for more */
    g_assert_cmpuint(fds_on("/gone.txt (deleted)"), ==, 0);
    g_assert_cmpuint(fds_on("/gap.txt (deleted)"), ==, 0);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/* The PASSED_FDS section and its fds, each wrong in one way: refused, the session fresh. */
static void test_handover_hostile(void)
{
    struct fx f;
    GByteArray *st, *bad;
    int *fds;
    size_t n, at;
    uint64_t gone, hello;
    int plain, other_fs;

    fx_setup(&f, NULL);
    put_file(&f, "gone.txt", "x");
    do_init(&f, &f.src);
    gone = lookup(&f, &f.src, FUSE_ROOT_ID, "gone.txt");
    open_fh(&f, &f.src, gone, O_RDONLY, false);
    hello = lookup(&f, &f.src, FUSE_ROOT_ID, "hello.txt");
    host_unlink(&f, "gone.txt");
    g_assert_cmpint(save_handover(&f.src, &st, &fds, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    at = passed_section(st);
    g_assert_cmpuint(passed_index(st, at, gone), ==, 0);

    /* The records' fields: count, nodeid, index. */
    const struct {
        size_t off, n;
        uint64_t v;
    } cases[] = {
        {at, 8, 0},      /* an empty section */
        {at, 8, 2},      /* a count beyond the records */
        {at + 8, 8, 99}, /* an inode not saved */
        {at + 8, 8, 1},  /* the root */
        {at + 8, 8, 0},  /* nodeid 0 */
        {at + 16, 4, 1}, /* an fd index beyond those given */
        {at + 16, 4, ~0u},
    };
    bad = g_byte_array_new();
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_byte_array_set_size(bad, 0);
        g_byte_array_append(bad, st->data, st->len);
        memcpy(bad->data + cases[i].off, &cases[i].v, cases[i].n);
        g_test_message("case %zu", i);
        g_assert_cmpint(load_handover(&f, bad, fds, n), ==, -EINVAL);
    }
    /* An inode that has a path. */
    g_byte_array_set_size(bad, 0);
    g_byte_array_append(bad, st->data, st->len);
    memcpy(bad->data + at + 8, &hello, 8);
    g_assert_cmpint(load_handover(&f, bad, fds, n), ==, -EINVAL);

    /* An fd of the file that is not O_PATH. */
    char name[32];
    snprintf(name, sizeof(name), "/proc/self/fd/%d", fds[0]);
    plain = open(name, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(plain, >=, 0);
    g_assert_cmpint(load_handover(&f, st, &plain, 1), ==, -EBADF);
    close(plain);

    /* A file on another file system, with the stream naming its st_dev and st_ino: not the
     * share's, refused. */
    other_fs = open("/proc/self/status", O_PATH | O_CLOEXEC);
    g_assert_cmpint(other_fs, >=, 0);
    struct stat o, g;
    g_assert_cmpint(fstat(other_fs, &o), ==, 0);
    g_assert_cmpint(fstat(fds[0], &g), ==, 0);
    uint64_t ids[2] = {g.st_dev, g.st_ino}, nids[2] = {o.st_dev, o.st_ino};
    g_byte_array_set_size(bad, 0);
    g_byte_array_append(bad, st->data, st->len);
    uint8_t *rec = memmem(bad->data, bad->len, ids, sizeof(ids));
    g_assert_nonnull(rec);
    memcpy(rec, nids, sizeof(nids));
    g_assert_cmpint(load_handover(&f, bad, &other_fs, 1), ==, -EXDEV);
    close(other_fs);

    /* The section alone, without the fds (a handover LOAD given none). */
    g_assert_cmpint(load_handover(&f, st, NULL, 0), ==, -EINVAL);

    /* And the stream unchanged loads. */
    g_assert_cmpint(load_handover(&f, st, fds, n), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, gone, NULL), ==, 0);
    close_fds(fds, n);
    g_byte_array_unref(bad);
    g_byte_array_unref(st);
    fx_teardown(&f);
}

/*
 * An inode saved lost (no path, no fd: gone in the old process already) fails a migration's
 * LOAD without --migration-on-error=guest-error, but a handover's keeps it lost (EIO) rather
 * than fail the upgrade over it.
 */
static void test_handover_keeps_lost(void)
{
    const struct pt_config guest_error = {.cache = CACHE_AUTO,
                                          .readdirplus = true,
                                          .migration_on_error = MIGRATION_ERROR_GUEST_ERROR};
    struct fx f;
    struct side src = {0};
    GByteArray *st;
    uint64_t gone, hello;

    fx_setup(&f, NULL);
    side_open(&f, &src, &guest_error);
    put_file(&f, "gone.txt", "x");
    do_init(&f, &src);
    gone = lookup(&f, &src, FUSE_ROOT_ID, "gone.txt");
    hello = lookup(&f, &src, FUSE_ROOT_ID, "hello.txt");
    open_fh(&f, &src, gone, O_RDONLY, false);
    host_unlink(&f, "gone.txt");
    g_assert_cmpint(save(&src, &st), ==, 0); /* gone saved lost */
    g_assert_cmpint(load(&f.dst, st->data, st->len), ==, -ENOENT);
    assert_fresh(&f, &f.dst);
    g_assert_cmpint(load_handover(&f, st, NULL, 0), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.dst, gone, NULL), ==, -EIO);
    g_assert_cmpint(getattr_ino(&f, &f.dst, hello, NULL), ==, 0);
    g_byte_array_unref(st);
    side_close(&src);
    fx_teardown(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("VFS_TEST_LOG"))
        log_init(LOG_LVL_OFF, false);
    rcu_register_thread();
    g_test_add_func("/session_state/round_trip", test_round_trip);
    g_test_add_func("/session_state/uninitialized", test_uninitialized);
    g_test_add_func("/session_state/renamed_between", test_renamed_between);
    g_test_add_func("/session_state/replaced_between", test_replaced_between);
    g_test_add_func("/session_state/unlinked_open_file", test_unlinked_open_file);
    g_test_add_func("/session_state/walk_finds_other_link", test_walk_finds_other_link);
    g_test_add_func("/session_state/handle_of_forgotten_inode", test_handle_of_forgotten_inode);
    g_test_add_func("/session_state/built_stream", test_built_stream);
    g_test_add_func("/session_state/hostile_names", test_hostile_names);
    g_test_add_func("/session_state/hostile_ids", test_hostile_ids);
    g_test_add_func("/session_state/hostile_handles", test_hostile_handles);
    g_test_add_func("/session_state/hostile_structure", test_hostile_structure);
    g_test_add_func("/session_state/symlink_in_path", test_symlink_in_path);
    g_test_add_func("/session_state/locks_built", test_locks_built);
    g_test_add_func("/session_state/hostile_locks", test_hostile_locks);
    g_test_add_func("/session_state/truncated_and_garbage", test_truncated_and_garbage);
    g_test_add_func("/session_state/fh_renamed_between", test_fh_renamed_between);
    g_test_add_func("/session_state/fh_hostile", test_fh_hostile);
    g_test_add_func("/session_state/handover_unlinked", test_handover_unlinked);
    g_test_add_func("/session_state/handover_hostile", test_handover_hostile);
    g_test_add_func("/session_state/handover_keeps_lost", test_handover_keeps_lost);
    return g_test_run();
}
