/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session journal (session_journal.c): a session serves requests with the journal attached
 * to a shared area; then a "crash": a NEW pt_fs and fuse_session on the same share attach the
 * same area bytes, with an in-flight callback of the test's choosing, and must go on with the
 * same nodeids, handles and lookup counts without an INIT. Hostile areas must each leave that
 * session fresh. Requests go through fuse_session_process with hand-built vq_elems and a
 * request context carrying a tag, as the worker passes them.
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
#include "session_journal.h"
#include "virtqueue.h"

#define AREA_SIZE ((size_t)4 << 20)
#define DEEP      "a/b/c/deep.txt"

/* The in-flight set a test decides: tag counters still in flight. */
struct inflight_set {
    uint64_t counters[64];
    size_t n;
    size_t asked;
};

static bool in_flight_cb(void *opaque, const struct fuse_req_tag *tag)
{
    struct inflight_set *s = opaque;

    s->asked++;
    for (size_t i = 0; i < s->n; i++)
        if (s->counters[i] == tag->counter)
            return true;
    return false;
}

struct side {
    struct pt_fs *fs;
    struct fuse_session *se;
    struct inflight_set inflight;
};

struct fx {
    char *dir;
    struct side a, b;
    struct sf_caller call;
    uint64_t unique, counter;
    uint8_t *area;
    size_t area_len;
};

static const struct pt_config base_cfg = {.cache = CACHE_AUTO, .readdirplus = true};

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

static char *host_read(struct fx *f, const char *name)
{
    char *p = hpath(f, name), *data = NULL;

    g_assert_true(g_file_get_contents(p, &data, NULL, NULL));
    g_free(p);
    return data;
}

static uint64_t host_ino(struct fx *f, const char *name)
{
    struct stat st;
    char *p = hpath(f, name);

    g_assert_cmpint(lstat(p, &st), ==, 0);
    g_free(p);
    return st.st_ino;
}

/* The host file's identity, as the daemon keys it. */
static void host_id(struct fx *f, const char *name, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    char *p = hpath(f, name);

    g_assert_cmpint(lstat(p, &st), ==, 0);
    g_free(p);
    *dev = st.st_dev;
    *ino = st.st_ino;
}

static bool with_locks; /* the lock tests' sessions serve POSIX locks and flock */

static void side_open_dir(struct side *s, const char *dir)
{
    struct pt_config c = base_cfg;

    c.posix_locks = c.flock_locks = with_locks;
    memset(s, 0, sizeof(*s));
    c.shared_dir = dir;
    g_assert_cmpint(pt_new(&c, &s->fs), ==, 0);
    s->se = fuse_session_new(s->fs);
    g_assert_nonnull(s->se);
}

static void side_close(struct side *s)
{
    if (!s->se)
        return;
    fuse_session_journal_detach(s->se);
    fuse_session_free(s->se);
    pt_free(s->fs);
    s->se = NULL;
    s->fs = NULL;
}

static int attach(struct fx *f, struct side *s)
{
    struct sj_inflight cb = {.in_flight = in_flight_cb, .opaque = &s->inflight};

    return fuse_session_journal_attach(s->se, f->area, f->area_len, &cb);
}

static void fx_setup_sized(struct fx *f, size_t area_len)
{
    memset(f, 0, sizeof(*f));
    f->dir = g_dir_make_tmp("vfs-journal-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    put_dir(f, "a");
    put_dir(f, "a/b");
    put_dir(f, "a/b/c");
    put_file(f, DEEP, "deep data");
    put_file(f, "hello.txt", "hello");
    put_file(f, "other.txt", "other");
    side_open_dir(&f->a, f->dir);
    sf_caller_init(&f->call);
    f->area_len = area_len;
    f->area = mmap(NULL, area_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    g_assert_true(f->area != MAP_FAILED);
    f->unique = 1;
    g_assert_cmpint(attach(f, &f->a), ==, 0); /* zeros: a new VM */
}

static void fx_setup(struct fx *f)
{
    fx_setup_sized(f, AREA_SIZE);
}

static void fx_teardown(struct fx *f)
{
    side_close(&f->a);
    side_close(&f->b);
    sf_caller_free(&f->call);
    munmap(f->area, f->area_len);
    sf_remove_tree(f->dir);
}

/* The crash: side b is a new daemon on the same share and area. */
static int crash(struct fx *f)
{
    struct inflight_set keep = f->b.inflight;

    side_close(&f->b);
    side_open_dir(&f->b, f->dir);
    f->b.inflight = keep;
    return attach(f, &f->b);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* One request, as the worker hands it over: with ctx (its tag, resubmitted, late route) and
 * unique; the reply's error. FUSE_REPLY_LATER: 1 (nothing written). */
static int req_ctx(struct fx *f, struct side *s, uint32_t opcode, uint64_t nodeid, const void *arg,
                   size_t arglen, const void *extra, size_t extralen, void *out, size_t outlen,
                   uint64_t unique, const struct fuse_req_ctx *ctx)
{
    const struct sf_req r = {.opcode = opcode,
                             .nodeid = nodeid,
                             .unique = unique,
                             .arg = arg,
                             .arglen = arglen,
                             .extra = extra,
                             .extralen = extralen,
                             .ctx = ctx};

    return sf_request(&f->call, s->se, &r, out, outlen);
}

/* The next tag, as the worker's counter gives them. */
static struct fuse_req_tag next_tag(struct fx *f)
{
    f->counter++;
    return (struct fuse_req_tag){
        .counter = f->counter, .queue = 1, .head = (uint16_t)(f->counter % 128)};
}

/* One request with a new tag (its counter in *counter if asked); the reply's error. */
static int req_tagged(struct fx *f, struct side *s, uint32_t opcode, uint64_t nodeid,
                      const void *arg, size_t arglen, const void *extra, size_t extralen, void *out,
                      size_t outlen, uint64_t *counter)
{
    struct fuse_req_ctx ctx = {.tag = next_tag(f)};

    if (counter)
        *counter = ctx.tag.counter;
    return req_ctx(f, s, opcode, nodeid, arg, arglen, extra, extralen, out, outlen, ++f->unique,
                   &ctx);
}

static int req(struct fx *f, struct side *s, uint32_t opcode, uint64_t nodeid, const void *arg,
               size_t arglen, const void *extra, size_t extralen, void *out, size_t outlen)
{
    return req_tagged(f, s, opcode, nodeid, arg, arglen, extra, extralen, out, outlen, NULL);
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

static uint64_t lookup_c(struct fx *f, struct side *s, uint64_t parent, const char *name,
                         uint64_t *counter)
{
    struct fuse_entry_out e;

    g_assert_cmpint(req_tagged(f, s, FUSE_LOOKUP, parent, name, strlen(name) + 1, NULL, 0, &e,
                               sizeof(e), counter),
                    ==, 0);
    return e.nodeid;
}

static uint64_t lookup(struct fx *f, struct side *s, uint64_t parent, const char *name)
{
    return lookup_c(f, s, parent, name, NULL);
}

static uint64_t lookup_path(struct fx *f, struct side *s, const char *path)
{
    gchar **names = g_strsplit(path, "/", -1);
    uint64_t id = FUSE_ROOT_ID;

    for (gchar **n = names; *n; n++)
        id = lookup(f, s, id, *n);
    g_strfreev(names);
    return id;
}

static int getattr_ino(struct fx *f, struct side *s, uint64_t nodeid, uint64_t *ino)
{
    struct fuse_getattr_in in = {0};
    struct fuse_attr_out a = {0};
    int err = req(f, s, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0, &a, sizeof(a));

    if (ino)
        *ino = err == 0 ? a.attr.ino : 0;
    return err;
}

/* GETATTR's st_nlink of nodeid (-errno if it fails). */
static int64_t getattr_nlink(struct fx *f, struct side *s, uint64_t nodeid)
{
    struct fuse_getattr_in in = {0};
    struct fuse_attr_out a = {0};
    int err = req(f, s, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0, &a, sizeof(a));

    return err ? err : (int64_t)a.attr.nlink;
}

/* The nodeid answers GETATTR with the host file at path. */
static void assert_is(struct fx *f, struct side *s, uint64_t nodeid, const char *path)
{
    uint64_t ino;

    g_assert_cmpint(getattr_ino(f, s, nodeid, &ino), ==, 0);
    g_assert_cmpuint(ino, ==, host_ino(f, path));
}

static uint64_t open_fh_c(struct fx *f, struct side *s, uint64_t nodeid, uint32_t flags, bool dir,
                          uint64_t *counter)
{
    struct fuse_open_in in = {.flags = flags};
    struct fuse_open_out o;

    g_assert_cmpint(req_tagged(f, s, dir ? FUSE_OPENDIR : FUSE_OPEN, nodeid, &in, sizeof(in), NULL,
                               0, &o, sizeof(o), counter),
                    ==, 0);
    return o.fh;
}

static uint64_t open_fh(struct fx *f, struct side *s, uint64_t nodeid, uint32_t flags, bool dir)
{
    return open_fh_c(f, s, nodeid, flags, dir, NULL);
}

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

static void forget_c(struct fx *f, struct side *s, uint64_t nodeid, uint64_t n, uint64_t *counter)
{
    struct fuse_forget_in in = {.nlookup = n};

    req_tagged(f, s, FUSE_FORGET, nodeid, &in, sizeof(in), NULL, 0, NULL, 0, counter);
}

static void forget(struct fx *f, struct side *s, uint64_t nodeid, uint64_t n)
{
    forget_c(f, s, nodeid, n, NULL);
}

static int release(struct fx *f, struct side *s, uint64_t nodeid, uint64_t fh, bool dir)
{
    struct fuse_release_in in = {.fh = fh};

    return req(f, s, dir ? FUSE_RELEASEDIR : FUSE_RELEASE, nodeid, &in, sizeof(in), NULL, 0, NULL,
               0);
}

static int rename_req(struct fx *f, struct side *s, uint64_t olddir, const char *from,
                      uint64_t newdir, const char *to, uint32_t flags)
{
    struct fuse_rename2_in in = {.newdir = newdir, .flags = flags};
    size_t a = strlen(from) + 1, b = strlen(to) + 1;
    char *names = g_malloc(a + b);
    int err;

    memcpy(names, from, a);
    memcpy(names + a, to, b);
    err = req(f, s, FUSE_RENAME2, olddir, &in, sizeof(in), names, a + b, NULL, 0);
    g_free(names);
    return err;
}

static uint64_t mkdir_req(struct fx *f, struct side *s, uint64_t parent, const char *name)
{
    struct fuse_mkdir_in in = {.mode = 0755};
    struct fuse_entry_out e;

    g_assert_cmpint(
        req(f, s, FUSE_MKDIR, parent, &in, sizeof(in), name, strlen(name) + 1, &e, sizeof(e)), ==,
        0);
    return e.nodeid;
}

/* CREATE of name: the nodeid, its fh in *fh. */
static uint64_t create_req(struct fx *f, struct side *s, uint64_t parent, const char *name,
                           uint64_t *fh)
{
    struct fuse_create_in in = {.flags = O_RDWR | O_CREAT | O_EXCL, .mode = 0644};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;

    g_assert_cmpint(
        req(f, s, FUSE_CREATE, parent, &in, sizeof(in), name, strlen(name) + 1, &out, sizeof(out)),
        ==, 0);
    *fh = out.o.fh;
    return out.e.nodeid;
}

static void assert_fresh(struct fx *f, struct side *s)
{
    g_assert_false(fuse_session_initialized(s->se));
    g_assert_cmpuint(itab_count(s->fs->inodes), ==, 1);
    g_assert_cmpint(getattr_ino(f, s, FUSE_ROOT_ID, NULL), ==, -EIO); /* no INIT yet */
}

/* ---- restores ------------------------------------------------------------------------------ */

static void test_restore(void)
{
    struct fx f;
    char buf[64];
    uint64_t deep, c, hello, fh_deep, fh_dir, fh_hello, other;

    fx_setup(&f);
    do_init(&f, &f.a);
    deep = lookup_path(&f, &f.a, DEEP);
    c = lookup_path(&f, &f.a, "a/b/c"); /* a, b, c twice now */
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    fh_deep = open_fh(&f, &f.a, deep, O_RDWR, false);
    fh_dir = open_fh(&f, &f.a, c, O_RDONLY, true);
    fh_hello = open_fh(&f, &f.a, hello, O_RDONLY, false);
    g_assert_cmpint(release(&f, &f.a, hello, fh_hello, false), ==, 0);

    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_true(fuse_session_initialized(f.b.se)); /* no INIT needed */
    assert_is(&f, &f.b, deep, DEEP);
    assert_is(&f, &f.b, c, "a/b/c");
    assert_is(&f, &f.b, hello, "hello.txt");
    g_assert_cmpint(read_fh(&f, &f.b, deep, fh_deep, buf, sizeof(buf)), ==, 9);
    g_assert_cmpstr(buf, ==, "deep data");
    g_assert_cmpint(write_fh(&f, &f.b, deep, fh_deep, "DEEP"), ==, 0);
    {
        char *data = host_read(&f, DEEP);

        g_assert_cmpstr(data, ==, "DEEP data");
        g_free(data);
    }
    {
        struct fuse_read_in in = {.fh = fh_dir, .size = 4096};

        g_assert_cmpint(req(&f, &f.b, FUSE_READDIR, c, &in, sizeof(in), NULL, 0, NULL, 0), ==, 0);
        g_assert_nonnull(memmem(f.call.out, SF_OUT_SIZE, "deep.txt", 8));
    }
    /* The released handle stays released. */
    g_assert_cmpint(read_fh(&f, &f.b, hello, fh_hello, buf, sizeof(buf)), ==, -EBADF);
    /* Lookup counts: c was looked up twice. */
    forget(&f, &f.b, c, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, c, NULL), ==, 0);
    forget(&f, &f.b, c, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, c, NULL), ==, -EBADF);
    /* Counters not behind. */
    other = lookup(&f, &f.b, FUSE_ROOT_ID, "other.txt");
    g_assert_cmpuint(other, >, hello);
    g_assert_cmpuint(open_fh(&f, &f.b, other, O_RDONLY, false), >, fh_hello);

    /* The restored session's journal goes on: a second crash finds b's changes too. */
    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, other, "other.txt");
    assert_is(&f, &f.b, deep, DEEP);
    g_assert_cmpint(getattr_ino(&f, &f.b, c, NULL), ==, -EBADF); /* forgotten in b */
    fx_teardown(&f);
}

/* Renames and removals keep the paths rebuilt from parents right; forgotten parents of known
 * children stay known for their paths (ghosts). */
static void test_namespace(void)
{
    struct fx f;
    uint64_t a, b, deep, hello, other, newdir, created, fh;

    fx_setup(&f);
    do_init(&f, &f.a);
    deep = lookup_path(&f, &f.a, DEEP);
    a = lookup(&f, &f.a, FUSE_ROOT_ID, "a");
    b = lookup(&f, &f.a, a, "b");
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    /* Forget a and b entirely (the guest keeps deep): they are ghosts now. */
    forget(&f, &f.a, a, 2);
    forget(&f, &f.a, b, 2);
    /* The guest renames a directory of the path, and moves hello into it. */
    g_assert_cmpint(rename_req(&f, &f.a, FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "z", 0), ==, 0);
    newdir = mkdir_req(&f, &f.a, FUSE_ROOT_ID, "new");
    g_assert_cmpint(rename_req(&f, &f.a, FUSE_ROOT_ID, "hello.txt", newdir, "h.txt", 0), ==, 0);
    /* other.txt is overwritten by a new file: its node has no name any more. */
    created = create_req(&f, &f.a, FUSE_ROOT_ID, "created.txt", &fh);
    g_assert_cmpint(rename_req(&f, &f.a, FUSE_ROOT_ID, "created.txt", FUSE_ROOT_ID, "other.txt", 0),
                    ==, 0);
    g_assert_cmpint(write_fh(&f, &f.a, created, fh, "created"), ==, 0);

    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, deep, "z/b/c/deep.txt");
    assert_is(&f, &f.b, newdir, "new");
    assert_is(&f, &f.b, hello, "new/h.txt");
    assert_is(&f, &f.b, created, "other.txt");
    g_assert_cmpint(write_fh(&f, &f.b, created, fh, "CREATED"), ==, 0);
    {
        char *data = host_read(&f, "other.txt");

        g_assert_cmpstr(data, ==, "CREATED");
        g_free(data);
    }
    /* The overwritten other.txt, which the guest still held, was kept under its hidden name:
     * still the same file, unlinked as far as the guest sees, not swapped for the new one. */
    g_assert_cmpint(getattr_nlink(&f, &f.b, other), ==, 0);
    {
        uint64_t ino;

        g_assert_cmpint(getattr_ino(&f, &f.b, other, &ino), ==, 0);
        g_assert_cmpuint(ino, !=, host_ino(&f, "other.txt"));
    }
    /* The ghosts were not installed. */
    g_assert_cmpint(getattr_ino(&f, &f.b, a, NULL), ==, -EBADF);
    g_assert_cmpint(getattr_ino(&f, &f.b, b, NULL), ==, -EBADF);
    fx_teardown(&f);
}

/* UNLINK, RMDIR and RENAME_EXCHANGE. */
static void test_unlink_exchange(void)
{
    struct fx f;
    uint64_t hello, other, d, fh;
    char buf[32];

    fx_setup(&f);
    do_init(&f, &f.a);
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    g_assert_cmpint(
        rename_req(&f, &f.a, FUSE_ROOT_ID, "hello.txt", FUSE_ROOT_ID, "other.txt", RENAME_EXCHANGE),
        ==, 0);
    d = mkdir_req(&f, &f.a, FUSE_ROOT_ID, "gone");
    g_assert_cmpint(req(&f, &f.a, FUSE_RMDIR, FUSE_ROOT_ID, "gone", 5, NULL, 0, NULL, 0), ==, 0);
    /* A file opened, then unlinked: kept under its hidden name, so a restart finds it. */
    put_file(&f, "tmp.txt", "tmp");
    uint64_t tmp = lookup(&f, &f.a, FUSE_ROOT_ID, "tmp.txt");
    fh = open_fh(&f, &f.a, tmp, O_RDONLY, false);
    g_assert_cmpint(req(&f, &f.a, FUSE_UNLINK, FUSE_ROOT_ID, "tmp.txt", 8, NULL, 0, NULL, 0), ==,
                    0);
    /* A new file under the removed directory's old name must not be taken for it. */
    put_dir(&f, "gone");

    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, hello, "other.txt");
    assert_is(&f, &f.b, other, "hello.txt");
    g_assert_cmpint(getattr_ino(&f, &f.b, d, NULL), ==, -EIO);
    g_assert_cmpint(getattr_nlink(&f, &f.b, tmp), ==, 0);
    g_assert_cmpint(read_fh(&f, &f.b, tmp, fh, buf, sizeof(buf)), ==, 3);
    g_assert_cmpstr(buf, ==, "tmp");
    fx_teardown(&f);
}

/* Host changes while the daemon was down: a file replaced under its name is not taken for
 * the new one; the walk of the share finds it where it went. */
static void test_replaced_on_host(void)
{
    struct fx f;
    uint64_t hello, other;
    char *p, *q;

    fx_setup(&f);
    do_init(&f, &f.a);
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    p = hpath(&f, "hello.txt");
    q = hpath(&f, "kept.txt");
    g_assert_cmpint(rename(p, q), ==, 0); /* keeps the old inode number in use */
    g_free(p);
    g_free(q);
    put_file(&f, "hello.txt", "impostor");

    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, hello, "kept.txt");
    assert_is(&f, &f.b, other, "other.txt");
    fx_teardown(&f);
}

/* Records of requests still in flight are left out: they run again. */
static void test_in_flight_left_out(void)
{
    struct fx f;
    uint64_t hello, other, t_lookup, t_forget, t_open, t_rename, fh, fh2, t_create;
    char buf[32];

    fx_setup(&f);
    do_init(&f, &f.a);
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    lookup_c(&f, &f.a, FUSE_ROOT_ID, "hello.txt", &t_lookup); /* 2; the second in flight */
    other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    forget_c(&f, &f.a, other, 1, &t_forget); /* 1 after it; it is in flight: 2 */
    fh = open_fh_c(&f, &f.a, hello, O_RDONLY, false, &t_open);
    fh2 = open_fh(&f, &f.a, other, O_RDONLY, false);
    {
        struct fuse_rename2_in in = {.newdir = FUSE_ROOT_ID};
        const char names[] = "other.txt\0moved.txt";

        g_assert_cmpint(req_tagged(&f, &f.a, FUSE_RENAME2, FUSE_ROOT_ID, &in, sizeof(in), names,
                                   sizeof(names), NULL, 0, &t_rename),
                        ==, 0);
    }
    {
        uint64_t cfh;

        create_req(&f, &f.a, FUSE_ROOT_ID, "new.txt", &cfh);
        t_create = f.counter;
    }

    f.b.inflight =
        (struct inflight_set){.counters = {t_lookup, t_forget, t_open, t_rename, t_create}, .n = 5};
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpuint(f.b.inflight.asked, >, 0);
    /* hello: one lookup (the in-flight one runs again) */
    assert_is(&f, &f.b, hello, "hello.txt");
    forget(&f, &f.b, hello, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, hello, NULL), ==, -EBADF);
    /* other: two lookups, the FORGET runs again; the rename was in flight, but the host
     * shows it ran (its INTENT says which file moved; else the walk of the share would find
     * it): found under its new name, and its handle reopened. */
    assert_is(&f, &f.b, other, "moved.txt");
    g_assert_cmpint(read_fh(&f, &f.b, other, fh2, buf, sizeof(buf)), ==, 5);
    g_assert_cmpstr(buf, ==, "other");
    forget(&f, &f.b, other, 1);
    assert_is(&f, &f.b, other, "moved.txt");
    forget(&f, &f.b, other, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, other, NULL), ==, -EBADF);
    /* The OPEN in flight: its handle is not there (the OPEN runs again); its fh is not
     * handed out again. */
    g_assert_cmpint(read_fh(&f, &f.b, hello, fh, buf, sizeof(buf)), ==, -EBADF);
    /* new.txt's CREATE was in flight: neither its entry nor its handle. */
    g_assert_cmpuint(itab_count(f.b.fs->inodes), ==, 1); /* the root: other is forgotten */

    /* A record left out at a restore is gone for good: with nothing in flight now, the next
     * restart does not apply it either. */
    f.b.inflight.n = 0;
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpuint(itab_count(f.b.fs->inodes), ==, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, hello + 2, NULL), ==, -EBADF);
    fx_teardown(&f);
}

/* INIT on a running or restored session is a new mount; DESTROY ends the journal's session. */
static void test_new_mount(void)
{
    struct fx f;
    uint64_t hello, other;

    fx_setup(&f);
    do_init(&f, &f.a);
    /* A mount that looked nothing up yet is a session too. */
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, FUSE_ROOT_ID, NULL), ==, 0);
    hello = lookup(&f, &f.b, FUSE_ROOT_ID, "hello.txt");
    g_assert_cmpint(crash(&f), ==, 1);
    do_init(&f, &f.b); /* the guest remounted */
    other = lookup(&f, &f.b, FUSE_ROOT_ID, "other.txt");
    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, other, "other.txt");
    g_assert_cmpint(getattr_ino(&f, &f.b, hello, NULL), ==, -EBADF);
    g_assert_cmpint(req(&f, &f.b, FUSE_DESTROY, 0, NULL, 0, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(crash(&f), ==, 0);
    assert_fresh(&f, &f.b);
    fx_teardown(&f);
}

/* READDIRPLUS entries count as lookups; BATCH_FORGET gives them back. */
static void test_readdirplus_batch_forget(void)
{
    struct fx f;
    uint64_t fh, ids[8];
    size_t n = 0;

    fx_setup(&f);
    do_init(&f, &f.a);
    fh = open_fh(&f, &f.a, FUSE_ROOT_ID, O_RDONLY, true);
    {
        struct fuse_read_in in = {.fh = fh, .size = 8192};
        uint8_t buf[8192];
        size_t len;
        struct fuse_out_header oh;

        g_assert_cmpint(
            req(&f, &f.a, FUSE_READDIRPLUS, FUSE_ROOT_ID, &in, sizeof(in), NULL, 0, NULL, 0), ==,
            0);
        memcpy(&oh, f.call.out, sizeof(oh));
        len = oh.len - sizeof(oh);
        memcpy(buf, f.call.out + sizeof(oh), len);
        for (size_t off = 0; off < len;) {
            struct fuse_direntplus d;

            memcpy(&d, buf + off, sizeof(d));
            if (d.entry_out.nodeid && n < G_N_ELEMENTS(ids))
                ids[n++] = d.entry_out.nodeid;
            off += FUSE_DIRENTPLUS_SIZE(&d);
        }
    }
    g_assert_cmpuint(n, ==, 3); /* a, hello.txt, other.txt */
    g_assert_cmpint(crash(&f), ==, 1);
    for (size_t i = 0; i < n; i++)
        g_assert_cmpint(getattr_ino(&f, &f.b, ids[i], NULL), ==, 0);
    {
        struct {
            struct fuse_batch_forget_in b;
            struct fuse_forget_one one[3];
        } bf = {.b = {.count = 3}};

        for (size_t i = 0; i < 3; i++)
            bf.one[i] = (struct fuse_forget_one){ids[i], 1};
        req(&f, &f.b, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, 0, NULL, 0);
    }
    g_assert_cmpint(crash(&f), ==, 1);
    for (size_t i = 0; i < n; i++)
        g_assert_cmpint(getattr_ino(&f, &f.b, ids[i], NULL), ==, -EBADF);
    fx_teardown(&f);
}

/* Compaction: many records in a small area; the session survives several switches, with a
 * record of a request in flight at the compaction kept as a record of its own. */
static void test_compaction(void)
{
    struct fx f;
    uint64_t deep, hello, t_last = 0, fh;
    char buf[32];

    fx_setup_sized(&f, 256 * 1024);
    do_init(&f, &f.a);
    deep = lookup_path(&f, &f.a, DEEP);
    fh = open_fh(&f, &f.a, deep, O_RDONLY, false);
    /* ~90 bytes a record, ~ 127 KiB a half: several compactions. */
    for (int i = 0; i < 20000; i++) {
        /* A request is in flight while it records (until the worker publishes its reply):
         * a compaction its own record starts keeps that record as it is. */
        f.a.inflight.counters[0] = f.counter + 1;
        f.a.inflight.n = 1;
        hello = lookup_c(&f, &f.a, FUSE_ROOT_ID, "hello.txt", &t_last);
        f.a.inflight.n = 0;
        forget(&f, &f.a, hello, 1);
    }
    g_assert_cmpuint(f.a.inflight.asked, >, 2); /* compactions happened */
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    f.b.inflight = (struct inflight_set){0};
    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, deep, DEEP);
    g_assert_cmpint(read_fh(&f, &f.b, deep, fh, buf, sizeof(buf)), ==, 9);
    assert_is(&f, &f.b, hello, "hello.txt");
    forget(&f, &f.b, hello, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, hello, NULL), ==, -EBADF);
    fx_teardown(&f);
}

/* ---- requests that must not run twice ------------------------------------------------------ */

/* A request of fuse_server.c's once_ops[]: what it sends, and what its first run journals as
 * its intent (opcode, nodeid and unique are filled in). */
struct once_case {
    uint32_t opcode;
    uint64_t nodeid;
    const void *arg;
    size_t arglen;
    const void *extra;
    size_t extralen;
    size_t outlen;
    struct sj_intent intent;
};

/*
 * done: the first run ran wholly, but the guest never saw its reply; otherwise the daemon died
 * after journaling its intent, before the op ran. The daemon restarts with the request in
 * flight (twice, if restarts is 2) and it is resubmitted with its tag and unique: the reply's
 * error, its out bytes in out.
 */
static int once_run_n(struct fx *f, const struct once_case *c, bool done, void *out, int restarts)
{
    struct fuse_req_tag tag = next_tag(f);
    uint64_t unique = ++f->unique;
    struct fuse_req_ctx ctx = {.tag = tag};

    if (done) {
        g_assert_cmpint(req_ctx(f, &f->a, c->opcode, c->nodeid, c->arg, c->arglen, c->extra,
                                c->extralen, NULL, 0, unique, &ctx),
                        ==, 0);
    } else {
        struct sj_intent in = c->intent;

        in.opcode = c->opcode;
        in.nodeid = c->nodeid;
        in.unique = unique;
        sj_intent(fuse_session_journal(f->a.se), &tag, &in);
    }
    f->b.inflight = (struct inflight_set){.counters = {tag.counter}, .n = 1};
    for (int i = 0; i < restarts; i++)
        g_assert_cmpint(crash(f), ==, 1);
    ctx.resubmitted = true;
    return req_ctx(f, &f->b, c->opcode, c->nodeid, c->arg, c->arglen, c->extra, c->extralen, out,
                   c->outlen, unique, &ctx);
}

static int once_run(struct fx *f, const struct once_case *c, bool done, void *out)
{
    return once_run_n(f, c, done, out, 1);
}

/* The answer is in the guest's hands now: a restart keeps what it said. */
static void answered_crash(struct fx *f)
{
    f->b.inflight.n = 0;
    g_assert_cmpint(crash(f), ==, 1);
}

/* nodeid has exactly one lookup: valid, then gone after FORGET 1. */
static void assert_one_lookup(struct fx *f, uint64_t nodeid)
{
    g_assert_cmpint(getattr_ino(f, &f->b, nodeid, NULL), ==, 0);
    forget(f, &f->b, nodeid, 1);
    g_assert_cmpint(getattr_ino(f, &f->b, nodeid, NULL), ==, -EBADF);
}

static mode_t host_mode(struct fx *f, const char *name)
{
    struct stat st;
    char *p = hpath(f, name);

    g_assert_cmpint(lstat(p, &st), ==, 0);
    g_free(p);
    return st.st_mode;
}

static bool host_exists(struct fx *f, const char *name)
{
    struct stat st;
    char *p = hpath(f, name);
    bool there = lstat(p, &st) == 0;

    g_free(p);
    return there;
}

static void test_once_mkdir_mknod_symlink(void)
{
    for (int done = 0; done < 2; done++) {
        struct fx f;
        struct fuse_entry_out e;
        struct fuse_mkdir_in md = {.mode = 0755};
        struct fuse_mknod_in mn = {.mode = S_IFIFO | 0644};
        const char sl[] = "s\0hello.txt";
        const struct once_case mkdir_c = {FUSE_MKDIR, FUSE_ROOT_ID, &md,          sizeof(md), "d",
                                          2,          sizeof(e),    {.name = "d"}};
        const struct once_case mknod_c = {FUSE_MKNOD, FUSE_ROOT_ID, &mn,          sizeof(mn), "p",
                                          2,          sizeof(e),    {.name = "p"}};
        const struct once_case sym_c = {FUSE_SYMLINK, FUSE_ROOT_ID, NULL,      0,
                                        sl,           sizeof(sl),   sizeof(e), {.name = "s"}};
        char target[64];
        char *p;
        ssize_t n;

        fx_setup(&f);
        do_init(&f, &f.a);
        /* Two restarts before the answer: the intent outlives the first one's snapshot. */
        g_assert_cmpint(once_run_n(&f, &mkdir_c, done, &e, 2), ==, 0);
        g_assert_true(S_ISDIR(host_mode(&f, "d")));
        answered_crash(&f);
        assert_is(&f, &f.b, e.nodeid, "d");
        assert_one_lookup(&f, e.nodeid);

        side_close(&f.a);
        f.a = f.b;
        memset(&f.b, 0, sizeof(f.b));
        g_assert_cmpint(once_run(&f, &mknod_c, done, &e), ==, 0);
        g_assert_true(S_ISFIFO(host_mode(&f, "p")));
        answered_crash(&f);
        assert_is(&f, &f.b, e.nodeid, "p");
        assert_one_lookup(&f, e.nodeid);

        side_close(&f.a);
        f.a = f.b;
        memset(&f.b, 0, sizeof(f.b));
        g_assert_cmpint(once_run(&f, &sym_c, done, &e), ==, 0);
        p = hpath(&f, "s");
        n = readlink(p, target, sizeof(target) - 1);
        g_free(p);
        g_assert_cmpint(n, ==, 9);
        target[n] = '\0';
        g_assert_cmpstr(target, ==, "hello.txt");
        answered_crash(&f);
        assert_one_lookup(&f, e.nodeid);
        fx_teardown(&f);
    }
}

/* An entry of another type under the name: not the first run's; the request runs, EEXIST. And
 * a resubmission without an intent (it had not started) runs as any request. */
static void test_once_not_ours(void)
{
    struct fx f;
    struct fuse_entry_out e;
    struct fuse_mkdir_in md = {.mode = 0755};
    const struct once_case c = {FUSE_MKDIR, FUSE_ROOT_ID, &md,          sizeof(md), "d",
                                2,          sizeof(e),    {.name = "d"}};
    struct fuse_req_ctx ctx = {.resubmitted = true};

    fx_setup(&f);
    do_init(&f, &f.a);
    put_file(&f, "d", "a file");
    g_assert_cmpint(once_run(&f, &c, false, &e), ==, -EEXIST);
    g_assert_true(S_ISREG(host_mode(&f, "d")));
    /* No intent for this tag: MKDIR of a new name simply runs. */
    ctx.tag = next_tag(&f);
    g_assert_cmpint(req_ctx(&f, &f.b, FUSE_MKDIR, FUSE_ROOT_ID, &md, sizeof(md), "e", 2, &e,
                            sizeof(e), ++f.unique, &ctx),
                    ==, 0);
    g_assert_true(S_ISDIR(host_mode(&f, "e")));
    fx_teardown(&f);
}

static void test_once_create(void)
{
    for (int done = 0; done < 2; done++) {
        struct fx f;
        struct fuse_create_in in = {.flags = O_RDWR | O_CREAT | O_EXCL | O_TRUNC, .mode = 0644};
        struct {
            struct fuse_entry_out e;
            struct fuse_open_out o;
        } out;
        const struct once_case c = {FUSE_CREATE, FUSE_ROOT_ID, &in,          sizeof(in), "c",
                                    2,           sizeof(out),  {.name = "c"}};
        char buf[32];
        char *data;

        fx_setup(&f);
        do_init(&f, &f.a);
        if (done) {
            struct fuse_req_tag tag = next_tag(&f);
            uint64_t unique = ++f.unique;
            struct fuse_req_ctx ctx = {.tag = tag};

            g_assert_cmpint(req_ctx(&f, &f.a, FUSE_CREATE, FUSE_ROOT_ID, &in, sizeof(in), "c", 2,
                                    NULL, 0, unique, &ctx),
                            ==, 0);
            /* What reached the file since must not be truncated by the answer. */
            put_file(&f, "c", "kept");
            f.b.inflight = (struct inflight_set){.counters = {tag.counter}, .n = 1};
            g_assert_cmpint(crash(&f), ==, 1);
            ctx.resubmitted = true;
            g_assert_cmpint(req_ctx(&f, &f.b, FUSE_CREATE, FUSE_ROOT_ID, &in, sizeof(in), "c", 2,
                                    &out, sizeof(out), unique, &ctx),
                            ==, 0);
            g_assert_cmpint(read_fh(&f, &f.b, out.e.nodeid, out.o.fh, buf, sizeof(buf)), ==, 4);
            g_assert_cmpstr(buf, ==, "kept");
        } else {
            g_assert_cmpint(once_run(&f, &c, false, &out), ==, 0);
        }
        assert_is(&f, &f.b, out.e.nodeid, "c");
        g_assert_cmpint(write_fh(&f, &f.b, out.e.nodeid, out.o.fh, "new!"), ==, 0);
        data = host_read(&f, "c");
        g_assert_cmpstr(data, ==, "new!");
        g_free(data);
        answered_crash(&f);
        g_assert_cmpint(read_fh(&f, &f.b, out.e.nodeid, out.o.fh, buf, sizeof(buf)), ==, 4);
        assert_one_lookup(&f, out.e.nodeid);
        fx_teardown(&f);
    }
}

static void test_once_link(void)
{
    for (int done = 0; done < 2; done++) {
        struct fx f;
        struct fuse_entry_out e;
        struct fuse_link_in in;
        struct once_case c = {FUSE_LINK, FUSE_ROOT_ID, &in,          sizeof(in), "l",
                              2,         sizeof(e),    {.name = "l"}};
        struct stat st;
        uint64_t hello;
        char *p;

        fx_setup(&f);
        do_init(&f, &f.a);
        hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
        in = (struct fuse_link_in){.oldnodeid = hello};
        c.intent.nodeid2 = hello;
        host_id(&f, "hello.txt", &c.intent.dev, &c.intent.ino);
        g_assert_cmpint(once_run(&f, &c, done, &e), ==, 0);
        g_assert_cmpuint(e.nodeid, ==, hello);
        g_assert_cmpuint(host_ino(&f, "l"), ==, host_ino(&f, "hello.txt"));
        p = hpath(&f, "hello.txt");
        g_assert_cmpint(stat(p, &st), ==, 0);
        g_free(p);
        g_assert_cmpuint(st.st_nlink, ==, 2);
        answered_crash(&f);
        assert_is(&f, &f.b, hello, "l");
        fx_teardown(&f);
    }
}

static void test_once_unlink_rmdir(void)
{
    for (int done = 0; done < 2; done++) {
        struct fx f;
        const struct once_case u = {FUSE_UNLINK, FUSE_ROOT_ID, NULL, 0,
                                    "other.txt", 10,           0,    {.name = "other.txt"}};
        const struct once_case r = {FUSE_RMDIR, FUSE_ROOT_ID, NULL, 0, "rd", 3, 0, {.name = "rd"}};
        uint64_t other;

        fx_setup(&f);
        put_dir(&f, "rd");
        do_init(&f, &f.a);
        other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
        g_assert_cmpint(once_run(&f, &u, done, NULL), ==, 0);
        g_assert_false(host_exists(&f, "other.txt"));
        answered_crash(&f);
        /* No name any more, but the guest still holds it: kept under its hidden name, so the
         * restarted daemon serves it still. */
        uint64_t ino = 0;
        g_assert_cmpint(getattr_ino(&f, &f.b, other, &ino), ==, 0);
        g_assert_cmpuint(ino, !=, 0);
        side_close(&f.a);
        f.a = f.b;
        memset(&f.b, 0, sizeof(f.b));
        g_assert_cmpint(once_run(&f, &r, done, NULL), ==, 0);
        g_assert_false(host_exists(&f, "rd"));
        fx_teardown(&f);
    }
}

static void test_once_rename(void)
{
    for (int done = 0; done < 2; done++) {
        struct fx f;
        struct fuse_rename2_in in = {.newdir = FUSE_ROOT_ID};
        const char names[] = "hello.txt\0renamed.txt";
        struct once_case c = {
            FUSE_RENAME2,
            FUSE_ROOT_ID,
            &in,
            sizeof(in),
            names,
            sizeof(names),
            0,
            {.name = "hello.txt", .name2 = "renamed.txt", .nodeid2 = FUSE_ROOT_ID}};
        uint64_t hello, ino;
        char *data;

        fx_setup(&f);
        do_init(&f, &f.a);
        hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
        host_id(&f, "hello.txt", &c.intent.dev, &c.intent.ino);
        ino = c.intent.ino;
        g_assert_cmpint(once_run(&f, &c, done, NULL), ==, 0);
        g_assert_false(host_exists(&f, "hello.txt"));
        g_assert_cmpuint(host_ino(&f, "renamed.txt"), ==, ino);
        /* The node moved is found under its new name (done: at the restore already). */
        assert_is(&f, &f.b, hello, "renamed.txt");
        answered_crash(&f);
        assert_is(&f, &f.b, hello, "renamed.txt");
        data = host_read(&f, "renamed.txt");
        g_assert_cmpstr(data, ==, "hello");
        g_free(data);
        fx_teardown(&f);
    }
}

static void test_once_append(void)
{
    for (int done = 0; done < 2; done++) {
        struct fx f;
        struct fuse_write_in in = {.size = 5, .flags = O_WRONLY | O_APPEND};
        struct fuse_write_out out;
        struct once_case c = {FUSE_WRITE, 0, &in, sizeof(in), "+more", 5, sizeof(out), {.size = 5}};
        uint64_t hello, fh;
        char *data;

        fx_setup(&f);
        do_init(&f, &f.a);
        hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
        fh = open_fh(&f, &f.a, hello, O_WRONLY | O_APPEND, false);
        in.fh = fh;
        c.nodeid = hello;
        g_assert_cmpint(once_run(&f, &c, done, &out), ==, 0);
        g_assert_cmpuint(out.size, ==, 5);
        data = host_read(&f, "hello.txt");
        g_assert_cmpstr(data, ==, "hello+more");
        g_free(data);
        /* A write at an offset of a file not appending journals no intent (nothing to decide). */
        answered_crash(&f);
        fx_teardown(&f);
    }
}

/* ---- locks ----------------------------------------------------------------------------------- */

static int setlk(struct fx *f, struct side *s, uint64_t nodeid, uint64_t fh, uint64_t owner,
                 uint32_t type, uint64_t start, uint64_t end, bool flock_lk)
{
    struct fuse_lk_in in = {.fh = fh,
                            .owner = owner,
                            .lk = {.start = start, .end = end, .type = type, .pid = 42},
                            .lk_flags = flock_lk ? FUSE_LK_FLOCK : 0};

    return req(f, s, FUSE_SETLK, nodeid, &in, sizeof(in), NULL, 0, NULL, 0);
}

/* What a host process sees: 0 if it can take the OFD lock (taken and dropped again). */
static int host_lock(struct fx *f, const char *name, short type, off_t start, off_t len)
{
    char *p = hpath(f, name);
    int fd = open(p, O_RDWR), ret;
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};

    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    ret = fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

static int host_flock(struct fx *f, const char *name)
{
    char *p = hpath(f, name);
    int fd = open(p, O_RDONLY), ret;

    g_free(p);
    g_assert_cmpint(fd, >=, 0);
    ret = flock(fd, LOCK_EX | LOCK_NB) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

/* The old process is gone, and its OFD locks and flocks with it. */
static int lock_crash(struct fx *f)
{
    side_close(&f->a);
    f->a = f->b;
    memset(&f->b, 0, sizeof(f->b));
    return crash(f);
}

static void test_locks(void)
{
    struct fx f;
    uint64_t hello, other, fh, fh2, fh3;

    with_locks = true;
    fx_setup(&f);
    do_init(&f, &f.a);
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    fh = open_fh(&f, &f.a, hello, O_RDWR, false);
    fh2 = open_fh(&f, &f.a, other, O_RDONLY, false);
    fh3 = open_fh(&f, &f.a, other, O_RDONLY, false);
    g_assert_cmpint(setlk(&f, &f.a, hello, fh, 7, F_WRLCK, 0, 99, false), ==, 0);
    g_assert_cmpint(setlk(&f, &f.a, hello, fh, 7, F_UNLCK, 50, 79, false), ==, 0);
    g_assert_cmpint(setlk(&f, &f.a, hello, fh, 8, F_RDLCK, 200, INT64_MAX, false), ==, 0);
    g_assert_cmpint(setlk(&f, &f.a, other, fh2, 0, F_WRLCK, 0, 0, true), ==, 0);
    g_assert_cmpint(setlk(&f, &f.a, other, fh3, 0, F_RDLCK, 0, 0, true), ==, -EWOULDBLOCK);
    /* Owner 9 locked and unlocked: nothing of it is taken back. */
    g_assert_cmpint(setlk(&f, &f.a, hello, fh, 9, F_WRLCK, 120, 129, false), ==, 0);
    g_assert_cmpint(setlk(&f, &f.a, hello, fh, 9, F_UNLCK, 0, INT64_MAX, false), ==, 0);
    /* Before the crash the host sees them... */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 10, 1), ==, -EAGAIN);
    g_assert_cmpint(lock_crash(&f), ==, 1);
    /* ...and after it too, taken again by the new daemon: */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 0, 1), ==, -EAGAIN);   /* owner 7 */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 85, 1), ==, -EAGAIN);  /* its split */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 60, 1), ==, 0);        /* unlocked */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 125, 1), ==, 0);       /* owner 9 */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_RDLCK, 300, 1), ==, 0);       /* a read */
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 300, 1), ==, -EAGAIN); /* owner 8 */
    g_assert_cmpint(host_flock(&f, "other.txt"), ==, -EWOULDBLOCK);
    /* The guest's own view goes on: owner 7 holds its range, another owner conflicts. */
    g_assert_cmpint(setlk(&f, &f.b, hello, fh, 10, F_WRLCK, 0, 0, false), ==, -EAGAIN);
    g_assert_cmpint(setlk(&f, &f.b, other, fh3, 0, F_RDLCK, 0, 0, true), ==, -EWOULDBLOCK);
    /* FLUSH of owner 7 and RELEASE of the flock's handle let go; a restart keeps it so. */
    {
        struct fuse_flush_in fl = {.fh = fh, .lock_owner = 7};

        g_assert_cmpint(req(&f, &f.b, FUSE_FLUSH, hello, &fl, sizeof(fl), NULL, 0, NULL, 0), ==, 0);
    }
    g_assert_cmpint(release(&f, &f.b, other, fh2, false), ==, 0);
    g_assert_cmpint(lock_crash(&f), ==, 1);
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 0, 1), ==, 0);
    g_assert_cmpint(host_flock(&f, "other.txt"), ==, 0);
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 300, 1), ==, -EAGAIN); /* owner 8 */
    /* RELEASE of the handle owner 8 locked through drops it. */
    g_assert_cmpint(release(&f, &f.b, hello, fh, false), ==, 0);
    g_assert_cmpint(lock_crash(&f), ==, 1);
    g_assert_cmpint(host_lock(&f, "hello.txt", F_WRLCK, 300, 1), ==, 0);
    fx_teardown(&f);
    with_locks = false;
}

/* A SETLKW that waited: journaled when its wait ends, before its reply. */
struct test_sink {
    struct fuse_late_sink sink;
    int result;
    bool done;
    GMutex mu;
    GCond cond;
};

static void test_sink_done(struct fuse_late_sink *sink, uint64_t cookie, uint64_t unique, int error)
{
    struct test_sink *t = (struct test_sink *)sink;

    (void)cookie;
    (void)unique;
    g_mutex_lock(&t->mu);
    t->result = error;
    t->done = true;
    g_cond_signal(&t->cond);
    g_mutex_unlock(&t->mu);
}

static void test_lock_wait(void)
{
    struct fx f;
    struct test_sink t = {.sink = {test_sink_done}};
    uint64_t hello, fh;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    struct fuse_lk_in in;
    struct fuse_req_ctx ctx;
    char *p;
    int hfd;

    with_locks = true;
    g_mutex_init(&t.mu);
    g_cond_init(&t.cond);
    fx_setup(&f);
    do_init(&f, &f.a);
    hello = lookup(&f, &f.a, FUSE_ROOT_ID, "hello.txt");
    fh = open_fh(&f, &f.a, hello, O_RDWR, false);
    p = hpath(&f, "hello.txt");
    hfd = open(p, O_RDWR);
    g_free(p);
    g_assert_cmpint(fcntl(hfd, F_OFD_SETLK, &fl), ==, 0); /* a host process holds it */
    in = (struct fuse_lk_in){.fh = fh, .owner = 5, .lk = {.start = 0, .end = 9, .type = F_WRLCK}};
    ctx = (struct fuse_req_ctx){.tag = next_tag(&f), .late = {&t.sink, 77}};
    g_assert_cmpint(
        req_ctx(&f, &f.a, FUSE_SETLKW, hello, &in, sizeof(in), NULL, 0, NULL, 0, ++f.unique, &ctx),
        ==, 1); /* waits */
    close(hfd); /* the host lets go: the wait takes it */
    g_mutex_lock(&t.mu);
    while (!t.done)
        g_cond_wait(&t.cond, &t.mu);
    g_mutex_unlock(&t.mu);
    g_assert_cmpint(t.result, ==, 0);
    g_assert_cmpint(lock_crash(&f), ==, 1);
    g_assert_cmpint(host_lock(&f, "hello.txt", F_RDLCK, 5, 1), ==, -EAGAIN);
    fx_teardown(&f);
    g_mutex_clear(&t.mu);
    g_cond_clear(&t.cond);
    with_locks = false;
}

/* ---- hostile areas ------------------------------------------------------------------------ */

/* A test-side writer of the documented format (session_journal.c's top comment). */
struct tw {
    uint8_t *base;
    size_t off;
    uint64_t seq;
};

static void tw_begin(struct fx *f, struct tw *w)
{
    struct stat st;
    uint64_t half_len = ((f->area_len - 4096) / 2) & ~(uint64_t)7;

    g_assert_cmpint(stat(f->dir, &st), ==, 0);
    memset(f->area, 0, 4096 + 128);
    memcpy(f->area, "VFSJRNL\n", 8);
    *(uint32_t *)(f->area + 8) = 1;
    *(uint32_t *)(f->area + 12) = 4096;
    *(uint64_t *)(f->area + 16) = f->area_len;
    *(uint64_t *)(f->area + 24) = half_len;
    *(uint64_t *)(f->area + 32) = st.st_dev;
    *(uint64_t *)(f->area + 40) = st.st_ino;
    *(uint32_t *)(f->area + 48) = 0;   /* active */
    *(uint64_t *)(f->area + 4096) = 1; /* half 0 first sequence */
    *w = (struct tw){.base = f->area + 4096 + 64, .seq = 1};
}

static void tw_rec(struct tw *w, uint16_t type, uint64_t counter, const void *p, size_t len)
{
    uint8_t *r = w->base + w->off;

    memset(r, 0, 32 + ((len + 7) & ~(size_t)7) + 8);
    *(uint64_t *)r = w->seq++;
    *(uint64_t *)(r + 8) = counter;
    *(uint16_t *)(r + 20) = type;
    *(uint32_t *)(r + 24) = (uint32_t)len;
    memcpy(r + 32, p, len);
    w->off += 32 + ((len + 7) & ~(size_t)7);
}

static void tw_init(struct tw *w)
{
    struct {
        uint32_t major, minor, max_write, max_pages;
        uint64_t flags;
    } in = {7, 31, 1u << 20, 256, FUSE_ASYNC_READ | FUSE_BIG_WRITES};

    tw_rec(w, 1, 0, &in, sizeof(in));
}

static void tw_entry(struct tw *w, uint64_t nodeid, uint64_t parent, uint64_t dev, uint64_t ino,
                     uint32_t type, const char *name, size_t namelen)
{
    uint8_t buf[48 + 512];
    struct {
        uint64_t nodeid, parent, nlookup, dev, ino;
        uint32_t type;
        uint16_t namelen, reserved;
    } e = {nodeid, parent, 1, dev, ino, type, (uint16_t)namelen, 0};

    memcpy(buf, &e, sizeof(e));
    memcpy(buf + sizeof(e), name, namelen);
    tw_rec(w, 2, 0, buf, sizeof(e) + namelen);
}

static void tw_open(struct tw *w, uint64_t fh, uint64_t nodeid)
{
    struct {
        uint64_t fh, nodeid;
        uint32_t flags, dir;
    } o = {fh, nodeid, O_RDONLY, 0};

    tw_rec(w, 4, 0, &o, sizeof(o));
}

/* A hand-written journal restores (the format is what the comment says). */
static void test_built_area(void)
{
    struct fx f;
    struct tw w;
    uint64_t dev, ino;
    char buf[32];

    fx_setup(&f);
    tw_begin(&f, &w);
    tw_init(&w);
    host_id(&f, "hello.txt", &dev, &ino);
    tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino, S_IFREG, "hello.txt", 9);
    tw_open(&w, 3, 7);
    g_assert_cmpint(crash(&f), ==, 1);
    assert_is(&f, &f.b, 7, "hello.txt");
    g_assert_cmpint(read_fh(&f, &f.b, 7, 3, buf, sizeof(buf)), ==, 5);
    g_assert_cmpuint(lookup(&f, &f.b, FUSE_ROOT_ID, "other.txt"), >, 7);
    fx_teardown(&f);
}

/* Each hostile area: attach answers 0, and the session is fresh (and works after INIT). */
static void expect_refused(struct fx *f)
{
    g_assert_cmpint(crash(f), ==, 0);
    assert_fresh(f, &f->b);
    do_init(f, &f->b);
    g_assert_cmpint(getattr_ino(f, &f->b, FUSE_ROOT_ID, NULL), ==, 0);
}

static void test_hostile(void)
{
    struct fx f;
    struct tw w;
    uint64_t dev, ino;

    fx_setup(&f);
    host_id(&f, "hello.txt", &dev, &ino);

    /* Garbage. */
    for (size_t i = 0; i < 65536; i++)
        f.area[i] = (uint8_t)(i * 131 + 7);
    expect_refused(&f);
    /* Wrong version. */
    tw_begin(&f, &w);
    tw_init(&w);
    *(uint32_t *)(f.area + 8) = 2;
    expect_refused(&f);
    /* Another share. */
    tw_begin(&f, &w);
    tw_init(&w);
    *(uint64_t *)(f.area + 40) += 1;
    expect_refused(&f);
    /* Another area size. */
    tw_begin(&f, &w);
    tw_init(&w);
    *(uint64_t *)(f.area + 16) *= 2;
    expect_refused(&f);
    /* An active half that is neither. */
    tw_begin(&f, &w);
    tw_init(&w);
    *(uint32_t *)(f.area + 48) = 7;
    expect_refused(&f);
    /* A length past the end of the half. */
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino, S_IFREG, "hello.txt", 9);
    *(uint32_t *)(w.base + 56 + 24) = 0x7fffffff;
    expect_refused(&f);
    /* Names leaving the share, or not one name. */
    {
        const char *names[] = {"..", ".", "a/../..", "/etc", "x\0y"};
        const size_t lens[] = {2, 1, 7, 4, 3};

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
            tw_begin(&f, &w);
            tw_init(&w);
            tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino, S_IFREG, names[i], lens[i]);
            expect_refused(&f);
        }
    }
    /* nodeid 0, and an entry that is its own parent. */
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 0, FUSE_ROOT_ID, dev, ino, S_IFREG, "hello.txt", 9);
    expect_refused(&f);
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 9, 9, dev, ino, S_IFREG, "hello.txt", 9);
    expect_refused(&f);
    /* A FORGET of nodeid 0; a count too big for its record. */
    {
        uint32_t fg[6] = {1, 0, 0, 0, 1, 0};

        tw_begin(&f, &w);
        tw_init(&w);
        tw_rec(&w, 3, 0, fg, sizeof(fg));
        expect_refused(&f);
        fg[0] = 1000000;
        fg[2] = 5;
        tw_begin(&f, &w);
        tw_init(&w);
        tw_rec(&w, 3, 0, fg, sizeof(fg));
        expect_refused(&f);
    }
    /* A handle opened twice. */
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino, S_IFREG, "hello.txt", 9);
    tw_open(&w, 3, 7);
    tw_open(&w, 3, 7);
    expect_refused(&f);
    /* An unknown record type; a bad type of file; a nodeid naming two files. */
    tw_begin(&f, &w);
    tw_init(&w);
    tw_rec(&w, 99, 0, &dev, sizeof(dev));
    expect_refused(&f);
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino, 0170000, "hello.txt", 9);
    expect_refused(&f);
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino, S_IFREG, "hello.txt", 9);
    tw_entry(&w, 7, FUSE_ROOT_ID, dev, ino + 1, S_IFREG, "hello.txt", 9);
    expect_refused(&f);
    /* An INIT this daemon does not offer. */
    {
        struct {
            uint32_t major, minor, max_write, max_pages;
            uint64_t flags;
        } in = {7, 31, 1u << 20, 256, 1ull << 63};

        tw_begin(&f, &w);
        tw_rec(&w, 1, 0, &in, sizeof(in));
        expect_refused(&f);
    }
    fx_teardown(&f);
}

/* A record naming another file than its name has: that nodeid is lost (EIO), never swapped;
 * a torn record (its sequence not the next) ends the replay without refusing it. */
static void test_hostile_identity_and_torn(void)
{
    struct fx f;
    struct tw w;
    uint64_t dev, ino, odev, oino;

    fx_setup(&f);
    host_id(&f, "hello.txt", &dev, &ino);
    host_id(&f, "other.txt", &odev, &oino);
    tw_begin(&f, &w);
    tw_init(&w);
    tw_entry(&w, 7, FUSE_ROOT_ID, odev, oino, S_IFREG, "hello.txt", 9);
    tw_entry(&w, 8, FUSE_ROOT_ID, odev, oino, S_IFREG, "other.txt", 9);
    tw_entry(&w, 9, FUSE_ROOT_ID, dev, ino, S_IFREG, "hello.txt", 9); /* torn below */
    *(uint64_t *)(w.base + w.off - 96) = 77; /* record 9's sequence (32 + 48 + 9, padded) */
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, 7, NULL), ==, -EIO); /* hello.txt is another file */
    assert_is(&f, &f.b, 8, "other.txt");
    g_assert_cmpint(getattr_ino(&f, &f.b, 9, NULL), ==, -EBADF); /* torn: the replay's end */
    fx_teardown(&f);
}

/* Attach refuses what it cannot work with at all. */
/* ---- files unlinked while in use (deferred removal) ---------------------------------------- */

/* How many names of the share's root start with the hidden prefix. */
static int count_hidden(struct fx *f)
{
    GDir *d = g_dir_open(f->dir, 0, NULL);
    const char *n;
    int count = 0;

    g_assert_nonnull(d);
    while ((n = g_dir_read_name(d)))
        count += g_str_has_prefix(n, PT_HIDDEN_PREFIX);
    g_dir_close(d);
    return count;
}

static int unlink_req(struct fx *f, struct side *s, uint64_t parent, const char *name,
                      uint64_t *counter)
{
    return req_tagged(f, s, FUSE_UNLINK, parent, name, strlen(name) + 1, NULL, 0, NULL, 0, counter);
}

/* The names READDIR lists in directory nodeid (joined by '/'). */
static char *list_dir(struct fx *f, struct side *s, uint64_t nodeid)
{
    uint64_t fh = open_fh(f, s, nodeid, O_RDONLY, true);
    struct fuse_read_in in = {.fh = fh, .size = 8192};
    GString *names = g_string_new("/");
    struct fuse_out_header oh;

    g_assert_cmpint(req(f, s, FUSE_READDIR, nodeid, &in, sizeof(in), NULL, 0, NULL, 0), ==, 0);
    memcpy(&oh, f->call.out, sizeof(oh));
    for (size_t off = sizeof(oh); off + FUSE_NAME_OFFSET <= oh.len;) {
        struct fuse_dirent d;

        memcpy(&d, f->call.out + off, sizeof(d));
        g_string_append_len(names, (const char *)f->call.out + off + FUSE_NAME_OFFSET, d.namelen);
        g_string_append_c(names, '/');
        off += FUSE_DIRENT_SIZE(&d);
    }
    g_assert_cmpint(release(f, s, nodeid, fh, true), ==, 0);
    return g_string_free(names, false);
}

/* An open file the guest unlinks: readable and writable through its handle after a restart,
 * st_nlink 0, its space freed (the hidden name gone) once the guest forgets it. */
static void test_unlinked_open(void)
{
    struct fx f;
    char buf[32], hidden[PT_HIDDEN_NAME_MAX];
    uint64_t fh, u, ino;

    fx_setup(&f);
    do_init(&f, &f.a);
    u = create_req(&f, &f.a, FUSE_ROOT_ID, "u.txt", &fh);
    g_assert_cmpint(write_fh(&f, &f.a, u, fh, "data"), ==, 0);
    g_assert_cmpint(getattr_ino(&f, &f.a, u, &ino), ==, 0);
    g_assert_cmpint(unlink_req(&f, &f.a, FUSE_ROOT_ID, "u.txt", NULL), ==, 0);
    /* The guest's name is gone at once; the daemon's hidden one holds the file. */
    g_assert_false(host_exists(&f, "u.txt"));
    pt_hidden_name(ino, hidden);
    g_assert_true(host_exists(&f, hidden));
    g_assert_cmpint(getattr_nlink(&f, &f.a, u), ==, 0);

    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(getattr_nlink(&f, &f.b, u), ==, 0);
    g_assert_cmpint(read_fh(&f, &f.b, u, fh, buf, sizeof(buf)), ==, 4);
    g_assert_cmpstr(buf, ==, "data");
    g_assert_cmpint(write_fh(&f, &f.b, u, fh, "DATA"), ==, 0);
    g_assert_cmpint(read_fh(&f, &f.b, u, fh, buf, sizeof(buf)), ==, 4);
    g_assert_cmpstr(buf, ==, "DATA");
    {
        /* No new link to an unlinked file (linkat answers ENOENT for one). */
        struct fuse_link_in in = {.oldnodeid = u};

        g_assert_cmpint(
            req(&f, &f.b, FUSE_LINK, FUSE_ROOT_ID, &in, sizeof(in), "back.txt", 9, NULL, 0), ==,
            -ENOENT);
    }
    /* A second restart still finds it; the last RELEASE keeps it (the nodeid is held), the
     * FORGET to zero frees it. */
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(read_fh(&f, &f.b, u, fh, buf, sizeof(buf)), ==, 4);
    g_assert_cmpint(release(&f, &f.b, u, fh, false), ==, 0);
    g_assert_true(host_exists(&f, hidden));
    g_assert_cmpint(getattr_nlink(&f, &f.b, u), ==, 0);
    forget(&f, &f.b, u, 1);
    g_assert_false(host_exists(&f, hidden));
    g_assert_cmpint(count_hidden(&f), ==, 0);
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(getattr_ino(&f, &f.b, u, NULL), ==, -EBADF);
    fx_teardown(&f);
}

/* A file nobody holds is removed at once; a rename over a held file keeps that one. */
static void test_unlinked_unreferenced_and_rename_over(void)
{
    struct fx f;
    uint64_t other, ino;

    fx_setup(&f);
    do_init(&f, &f.a);
    put_file(&f, "nobody.txt", "x");
    g_assert_cmpint(unlink_req(&f, &f.a, FUSE_ROOT_ID, "nobody.txt", NULL), ==, 0);
    g_assert_cmpint(count_hidden(&f), ==, 0);
    other = lookup(&f, &f.a, FUSE_ROOT_ID, "other.txt");
    g_assert_cmpint(getattr_ino(&f, &f.a, other, &ino), ==, 0);
    g_assert_cmpint(rename_req(&f, &f.a, FUSE_ROOT_ID, "hello.txt", FUSE_ROOT_ID, "other.txt", 0),
                    ==, 0);
    g_assert_cmpint(count_hidden(&f), ==, 1);
    g_assert_cmpuint(host_ino(&f, "other.txt"), !=, ino);
    g_assert_cmpint(getattr_nlink(&f, &f.a, other), ==, 0);
    forget(&f, &f.a, other, 1);
    g_assert_cmpint(count_hidden(&f), ==, 0);
    fx_teardown(&f);
}

/* The guest can neither see nor touch a hidden name in the share's root (elsewhere such a
 * name is an ordinary one). */
static void test_hidden_name_refused(void)
{
    struct fx f;
    const char *h = PT_HIDDEN_PREFIX "0000000000000001";
    char *names, sub[128];
    uint64_t a;

    fx_setup(&f);
    do_init(&f, &f.a);
    put_file(&f, h, "daemon's");
    snprintf(sub, sizeof(sub), "a/%s", h);
    put_file(&f, sub, "guest's");
    a = lookup(&f, &f.a, FUSE_ROOT_ID, "a");
    g_assert_cmpint(req(&f, &f.a, FUSE_LOOKUP, FUSE_ROOT_ID, h, strlen(h) + 1, NULL, 0, NULL, 0),
                    ==, -ENOENT);
    g_assert_cmpint(req(&f, &f.a, FUSE_LOOKUP, a, h, strlen(h) + 1, NULL, 0, NULL, 0), ==, 0);
    /* Looked up through ".." of a top-level directory: the root all the same. */
    {
        uint64_t root2 = lookup(&f, &f.a, a, "..");

        g_assert_cmpint(req(&f, &f.a, FUSE_LOOKUP, root2, h, strlen(h) + 1, NULL, 0, NULL, 0), ==,
                        -ENOENT);
    }
    g_assert_cmpint(unlink_req(&f, &f.a, FUSE_ROOT_ID, h, NULL), ==, -ENOENT);
    g_assert_cmpint(rename_req(&f, &f.a, FUSE_ROOT_ID, h, FUSE_ROOT_ID, "stolen", 0), ==, -ENOENT);
    g_assert_cmpint(rename_req(&f, &f.a, FUSE_ROOT_ID, "hello.txt", FUSE_ROOT_ID, h, 0), ==,
                    -EPERM);
    {
        struct fuse_mkdir_in in = {.mode = 0755};
        struct fuse_create_in ci = {.flags = O_RDWR | O_CREAT, .mode = 0644};
        const char *other = PT_HIDDEN_PREFIX "mine";

        g_assert_cmpint(req(&f, &f.a, FUSE_MKDIR, FUSE_ROOT_ID, &in, sizeof(in), other,
                            strlen(other) + 1, NULL, 0),
                        ==, -EPERM);
        g_assert_cmpint(
            req(&f, &f.a, FUSE_CREATE, FUSE_ROOT_ID, &ci, sizeof(ci), h, strlen(h) + 1, NULL, 0),
            ==, -EPERM);
    }
    names = list_dir(&f, &f.a, FUSE_ROOT_ID);
    g_assert_nonnull(strstr(names, "/hello.txt/"));
    g_assert_null(strstr(names, PT_HIDDEN_PREFIX));
    g_free(names);
    names = list_dir(&f, &f.a, a);
    g_assert_nonnull(strstr(names, PT_HIDDEN_PREFIX));
    g_free(names);
    g_assert_true(host_exists(&f, h));
    g_assert_true(host_exists(&f, "hello.txt"));
    fx_teardown(&f);
}

/* Hidden names a crash left: a fresh session removes them all, a restored one those it does
 * not need (the file's other name stays). */
static void test_hidden_leftovers(void)
{
    struct fx f;
    char hidden[PT_HIDDEN_NAME_MAX], planted[PT_HIDDEN_NAME_MAX], buf[32];
    uint64_t u, fh, ino;
    char *p, *q;

    fx_setup(&f);
    do_init(&f, &f.a);
    u = create_req(&f, &f.a, FUSE_ROOT_ID, "u.txt", &fh);
    g_assert_cmpint(getattr_ino(&f, &f.a, u, &ino), ==, 0);
    pt_hidden_name(ino, hidden);
    g_assert_cmpint(unlink_req(&f, &f.a, FUSE_ROOT_ID, "u.txt", NULL), ==, 0);
    /* A crash between the hidden link and the guest's unlink: both names. */
    pt_hidden_name(host_ino(&f, "other.txt"), planted);
    p = hpath(&f, "other.txt");
    q = hpath(&f, planted);
    g_assert_cmpint(link(p, q), ==, 0);
    g_free(p);
    g_free(q);
    /* And a hidden file nothing names any more. */
    put_file(&f, "orphan", "o");
    {
        char orphan[PT_HIDDEN_NAME_MAX];

        pt_hidden_name(host_ino(&f, "orphan"), orphan);
        p = hpath(&f, "orphan");
        q = hpath(&f, orphan);
        g_assert_cmpint(rename(p, q), ==, 0);
        g_free(p);
        g_free(q);
    }
    g_assert_cmpint(count_hidden(&f), ==, 3);

    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(count_hidden(&f), ==, 1); /* the session's own */
    g_assert_true(host_exists(&f, hidden));
    g_assert_true(host_exists(&f, "other.txt"));
    g_assert_cmpint(read_fh(&f, &f.b, u, fh, buf, sizeof(buf)), ==, 0);

    /* A new VM (the area zeroed): nothing of the old session is needed. */
    memset(f.area, 0, f.area_len);
    g_assert_cmpint(crash(&f), ==, 0);
    g_assert_cmpint(count_hidden(&f), ==, 0);
    fx_teardown(&f);
}

/* An UNLINK in flight at the crash (its record left out: the journal still has the old
 * name): the walk of the share finds the file under its hidden name, and it stays hidden. */
static void test_unlink_in_flight(void)
{
    struct fx f;
    uint64_t u, fh, t;
    char buf[32];

    fx_setup(&f);
    do_init(&f, &f.a);
    u = create_req(&f, &f.a, FUSE_ROOT_ID, "u.txt", &fh);
    g_assert_cmpint(write_fh(&f, &f.a, u, fh, "kept"), ==, 0);
    g_assert_cmpint(unlink_req(&f, &f.a, FUSE_ROOT_ID, "u.txt", &t), ==, 0);
    f.b.inflight = (struct inflight_set){.counters = {t}, .n = 1};
    g_assert_cmpint(crash(&f), ==, 1);
    g_assert_cmpint(read_fh(&f, &f.b, u, fh, buf, sizeof(buf)), ==, 4);
    g_assert_cmpstr(buf, ==, "kept");
    g_assert_cmpint(getattr_nlink(&f, &f.b, u), ==, 0);
    g_assert_cmpint(count_hidden(&f), ==, 1);
    /* The UNLINK runs again: the name is gone already. */
    g_assert_cmpint(unlink_req(&f, &f.b, FUSE_ROOT_ID, "u.txt", NULL), ==, -ENOENT);
    g_assert_cmpint(release(&f, &f.b, u, fh, false), ==, 0);
    forget(&f, &f.b, u, 1);
    g_assert_cmpint(count_hidden(&f), ==, 0);
    fx_teardown(&f);
}

/* Without a journal nothing changes: an unlinked open file is removed at once. */
static void test_no_journal_no_hiding(void)
{
    struct fx f;
    struct side c;
    uint64_t u, fh;
    char buf[32];

    fx_setup(&f);
    side_open_dir(&c, f.dir);
    do_init(&f, &c);
    u = create_req(&f, &c, FUSE_ROOT_ID, "u.txt", &fh);
    g_assert_cmpint(write_fh(&f, &c, u, fh, "data"), ==, 0);
    g_assert_cmpint(unlink_req(&f, &c, FUSE_ROOT_ID, "u.txt", NULL), ==, 0);
    g_assert_cmpint(count_hidden(&f), ==, 0);
    g_assert_cmpint(read_fh(&f, &c, u, fh, buf, sizeof(buf)), ==, 4);
    g_assert_cmpint(getattr_nlink(&f, &c, u), ==, 0);
    side_close(&c);
    fx_teardown(&f);
}

static void test_attach_args(void)
{
    struct fx f;
    struct sj_inflight cb = {.in_flight = in_flight_cb};

    fx_setup(&f);
    side_open_dir(&f.b, f.dir);
    g_assert_cmpint(fuse_session_journal_attach(f.b.se, f.area, 4096, &cb), ==, -EINVAL);
    g_assert_cmpint(fuse_session_journal_attach(f.b.se, f.area + 1, f.area_len - 8, &cb), ==,
                    -EINVAL);
    fx_teardown(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("VFS_TEST_LOG"))
        log_init(LOG_LVL_OFF, false);
    rcu_register_thread();
    g_test_add_func("/session_journal/restore", test_restore);
    g_test_add_func("/session_journal/namespace", test_namespace);
    g_test_add_func("/session_journal/unlink_exchange", test_unlink_exchange);
    g_test_add_func("/session_journal/replaced_on_host", test_replaced_on_host);
    g_test_add_func("/session_journal/in_flight_left_out", test_in_flight_left_out);
    g_test_add_func("/session_journal/new_mount", test_new_mount);
    g_test_add_func("/session_journal/readdirplus_batch_forget", test_readdirplus_batch_forget);
    g_test_add_func("/session_journal/compaction", test_compaction);
    g_test_add_func("/session_journal/once/mkdir_mknod_symlink", test_once_mkdir_mknod_symlink);
    g_test_add_func("/session_journal/once/not_ours", test_once_not_ours);
    g_test_add_func("/session_journal/once/create", test_once_create);
    g_test_add_func("/session_journal/once/link", test_once_link);
    g_test_add_func("/session_journal/once/unlink_rmdir", test_once_unlink_rmdir);
    g_test_add_func("/session_journal/once/rename", test_once_rename);
    g_test_add_func("/session_journal/once/append", test_once_append);
    g_test_add_func("/session_journal/locks", test_locks);
    g_test_add_func("/session_journal/lock_wait", test_lock_wait);
    g_test_add_func("/session_journal/built_area", test_built_area);
    g_test_add_func("/session_journal/hostile", test_hostile);
    g_test_add_func("/session_journal/hostile_identity_and_torn", test_hostile_identity_and_torn);
    g_test_add_func("/session_journal/attach_args", test_attach_args);
    g_test_add_func("/session_journal/unlinked_open", test_unlinked_open);
    g_test_add_func("/session_journal/unlinked_unreferenced_and_rename_over",
                    test_unlinked_unreferenced_and_rename_over);
    g_test_add_func("/session_journal/hidden_name_refused", test_hidden_name_refused);
    g_test_add_func("/session_journal/hidden_leftovers", test_hidden_leftovers);
    g_test_add_func("/session_journal/unlink_in_flight", test_unlink_in_flight);
    g_test_add_func("/session_journal/no_journal_no_hiding", test_no_journal_no_hiding);
    return g_test_run();
}
