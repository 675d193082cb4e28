/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration tests of every FUSE op the daemon serves: a real virtiofsd process (default
 * lockdown: namespace sandbox and seccomp kill) driven through its socket by the test
 * front-end. Each op is tried on its success path and its main error paths, and every result
 * is checked against the host filesystem's own state (stat, readlink, xattrs, contents,
 * listings), not only against the reply. The expected errors are what Linux gives on a local
 * ext4 file system. Requests go as root unless a test sends them as uid/gid 1000, the
 * unprivileged caller, against root-owned 0755 directories and 0644 files.
 *
 * Most tests share one daemon started with --xattr; short-lived daemons cover --readonly and
 * a daemon without --xattr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define USER 1000 /* the unprivileged caller's uid and gid */

static struct test_daemon daemon_; /* --xattr, serves most tests */
static struct fe *fe_;             /* its connection, initialized */

/* ---- connections --------------------------------------------------------------------------- */

static struct fe *connect_initialized(const struct test_daemon *d)
{
    struct fe_config cfg = {.socket_path = d->socket};
    struct fe *fe = NULL;
    g_assert(fe_open_retry(&cfg, &fe, 1000) == 0);
    g_assert(fe_fuse_init(fe) == 0);
    return fe;
}

/* ---- host side ----------------------------------------------------------------------------- */

/* The host path of rel in d's share (one of a few rotating buffers). */
static const char *hpd(const struct test_daemon *d, const char *rel)
{
    static char buf[8][PATH_MAX];
    static unsigned next;
    char *p = buf[next++ % 8];
    int n = snprintf(p, PATH_MAX, "%s/%s", d->share, rel);
    g_assert_true(n > 0 && n < PATH_MAX);
    return p;
}

static const char *hp(const char *rel)
{
    return hpd(&daemon_, rel);
}

static void hstat(const char *rel, struct stat *st)
{
    g_assert_cmpint(lstat(hp(rel), st), ==, 0);
}

static bool hexists(const char *rel)
{
    struct stat st;
    return lstat(hp(rel), &st) == 0;
}

/* A root-owned file with content and mode. */
static void hput_in(const struct test_daemon *d, const char *rel, const char *content, mode_t mode)
{
    const char *p = hpd(d, rel);
    g_assert_true(g_file_set_contents(p, content, -1, NULL));
    g_assert_cmpint(chmod(p, mode), ==, 0);
}

static void hput(const char *rel, const char *content, mode_t mode)
{
    hput_in(&daemon_, rel, content, mode);
}

static void hmkdir(const char *rel, mode_t mode)
{
    g_assert_cmpint(mkdir(hp(rel), mode), ==, 0);
    g_assert_cmpint(chmod(hp(rel), mode), ==, 0);
}

/* The host file's content (g_free it); *len gets its size. */
static char *hget(const char *rel, size_t *len)
{
    gchar *c = NULL;
    gsize n = 0;
    g_assert_true(g_file_get_contents(hp(rel), &c, &n, NULL));
    if (len)
        *len = n;
    return c;
}

static void assert_hcontent(const char *rel, const char *want)
{
    size_t n;
    char *c = hget(rel, &n);
    g_assert_cmpuint(n, ==, strlen(want));
    g_assert_cmpmem(c, n, want, strlen(want));
    g_free(c);
}

/* A reply's attributes are exactly the host's lstat of rel. */
static void assert_attr_is_host(const struct fuse_attr *a, const char *rel)
{
    struct stat st;
    hstat(rel, &st);
    g_assert_cmpuint(a->ino, ==, st.st_ino);
    g_assert_cmpuint(a->mode, ==, st.st_mode);
    g_assert_cmpuint(a->nlink, ==, st.st_nlink);
    g_assert_cmpuint(a->uid, ==, st.st_uid);
    g_assert_cmpuint(a->gid, ==, st.st_gid);
    g_assert_cmpuint(a->size, ==, (uint64_t)st.st_size);
    g_assert_cmpuint(a->blocks, ==, (uint64_t)st.st_blocks);
    g_assert_cmpuint(a->rdev, ==, (uint32_t)st.st_rdev);
    g_assert_cmpuint(a->mtime, ==, (uint64_t)st.st_mtim.tv_sec);
    g_assert_cmpuint(a->mtimensec, ==, (uint32_t)st.st_mtim.tv_nsec);
    g_assert_cmpuint(a->ctime, ==, (uint64_t)st.st_ctim.tv_sec);
    g_assert_cmpuint(a->ctimensec, ==, (uint32_t)st.st_ctim.tv_nsec);
    g_assert_cmpuint(a->atime, ==, (uint64_t)st.st_atim.tv_sec);
    g_assert_cmpuint(a->atimensec, ==, (uint32_t)st.st_atim.tv_nsec);
}

static bool ts_after(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/* ---- requests ------------------------------------------------------------------------------ */

/* In-argument lists: IOV(S(struct), NAME("x"), {ptr, len}) expands to "array, count". */
/* clang-format off */
#define IOV(...) ((struct iovec[]){__VA_ARGS__}), \
                 (sizeof((struct iovec[]){__VA_ARGS__}) / sizeof(struct iovec))
#define S(x)     {&(x), sizeof(x)}
#define NAME(s)  {(void *)(s), strlen(s) + 1}
/* clang-format on */

/*
 * Sends one request on fe as uid/gid and waits for the reply (asserting one arrived and that
 * an error reply carries no payload). Copies up to out_size payload bytes to out; *out_len
 * gets the payload's length. Returns the FUSE error (0 or -errno).
 */
static int call_fe(struct fe *fe, uint32_t uid, uint32_t gid, uint32_t op, uint64_t node,
                   const struct iovec *in, unsigned nin, void *out, size_t out_size,
                   size_t *out_len)
{
    struct fe_reply r;
    int ret = fe_fuse_as(fe, 1, uid, gid, op, node, in, nin, out_size, &r);
    g_assert(ret == 0);
    if (r.error)
        g_assert_cmpuint(r.len, ==, sizeof(struct fuse_out_header));
    if (r.error == 0 && out)
        memcpy(out, r.data, MIN(r.data_len, out_size));
    if (out_len)
        *out_len = r.data_len;
    return r.error;
}

#define CALL(op, node, ...)       call_fe(fe_, 0, 0, op, node, __VA_ARGS__, NULL)
#define CALL_AS(u, op, node, ...) call_fe(fe_, u, u, op, node, __VA_ARGS__, NULL)

/* The nodeid of name in parent (looked up as root); attr gets its attributes if non-NULL. */
static uint64_t lookup_ok(uint64_t parent, const char *name, struct fuse_attr *attr)
{
    struct fuse_entry_out e = {0};
    g_assert_cmpint(CALL(FUSE_LOOKUP, parent, IOV(NAME(name)), &e, sizeof(e)), ==, 0);
    g_assert_cmpuint(e.nodeid, !=, 0);
    if (attr)
        *attr = e.attr;
    return e.nodeid;
}

/* lookup_ok of a top-level name. */
static uint64_t node(const char *name)
{
    return lookup_ok(FUSE_ROOT_ID, name, NULL);
}

static int getattr(uint64_t nodeid, struct fuse_attr *a)
{
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out out = {0};
    int ret = CALL(FUSE_GETATTR, nodeid, IOV(S(gi)), &out, sizeof(out));
    if (a)
        *a = out.attr;
    return ret;
}

static int setattr_as(uint32_t uid, uint64_t nodeid, const struct fuse_setattr_in *si,
                      struct fuse_attr *a)
{
    struct fuse_attr_out out = {0};
    int ret = call_fe(fe_, uid, uid, FUSE_SETATTR, nodeid, IOV({(void *)si, sizeof(*si)}), &out,
                      sizeof(out), NULL);
    if (a)
        *a = out.attr;
    return ret;
}

static int mkdir_as(uint32_t uid, uint64_t parent, const char *name, uint32_t mode,
                    struct fuse_entry_out *e)
{
    struct fuse_mkdir_in mi = {.mode = mode, .umask = 022};
    struct fuse_entry_out tmp;
    return CALL_AS(uid, FUSE_MKDIR, parent, IOV(S(mi), NAME(name)), e ? e : &tmp, sizeof(tmp));
}

static int create_as(uint32_t uid, uint64_t parent, const char *name, uint32_t flags, uint32_t mode,
                     struct fuse_entry_out *e, uint64_t *fh)
{
    struct fuse_create_in ci = {.flags = flags, .mode = mode, .umask = 022};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out = {0};
    int ret = CALL_AS(uid, FUSE_CREATE, parent, IOV(S(ci), NAME(name)), &out, sizeof(out));
    if (e)
        *e = out.e;
    if (fh)
        *fh = out.o.fh;
    return ret;
}

static int open_as(uint32_t uid, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
    struct fuse_open_in oi = {.flags = flags};
    struct fuse_open_out out = {0};
    int ret = CALL_AS(uid, FUSE_OPEN, nodeid, IOV(S(oi)), &out, sizeof(out));
    if (fh)
        *fh = out.fh;
    return ret;
}

static uint64_t open_ok(uint64_t nodeid, uint32_t flags)
{
    uint64_t fh = 0;
    g_assert_cmpint(open_as(0, nodeid, flags, &fh), ==, 0);
    return fh;
}

static int release(uint64_t nodeid, uint64_t fh)
{
    struct fuse_release_in ri = {.fh = fh};
    return CALL(FUSE_RELEASE, nodeid, IOV(S(ri)), NULL, 0);
}

static int write_at(uint64_t nodeid, uint64_t fh, uint64_t off, const void *data, size_t len,
                    uint32_t flags)
{
    struct fuse_write_in wi = {
        .fh = fh, .offset = off, .size = (uint32_t)len, .write_flags = flags};
    struct fuse_write_out wo = {0};
    int ret = CALL(FUSE_WRITE, nodeid, IOV(S(wi), {(void *)data, len}), &wo, sizeof(wo));
    if (ret == 0)
        g_assert_cmpuint(wo.size, ==, len);
    return ret;
}

/* Reads up to size bytes at off into buf; *got gets the count. */
static int read_at(uint64_t nodeid, uint64_t fh, uint64_t off, void *buf, size_t size, size_t *got)
{
    struct fuse_read_in ri = {.fh = fh, .offset = off, .size = (uint32_t)size};
    size_t n = 0;
    int ret = call_fe(fe_, 0, 0, FUSE_READ, nodeid, IOV(S(ri)), buf, size, &n);
    if (got)
        *got = n;
    return ret;
}

static int opendir_as(uint32_t uid, uint64_t nodeid, uint64_t *fh)
{
    struct fuse_open_in oi = {.flags = O_RDONLY | O_DIRECTORY};
    struct fuse_open_out out = {0};
    int ret = CALL_AS(uid, FUSE_OPENDIR, nodeid, IOV(S(oi)), &out, sizeof(out));
    if (fh)
        *fh = out.fh;
    return ret;
}

static int releasedir(uint64_t nodeid, uint64_t fh)
{
    struct fuse_release_in ri = {.fh = fh};
    return CALL(FUSE_RELEASEDIR, nodeid, IOV(S(ri)), NULL, 0);
}

/* Sends a no-reply request and checks that the daemon returns its chain with length 0. */
static void call_noreply(uint32_t op, uint64_t nodeid, const struct iovec *in, unsigned nin)
{
    struct fe_reply r;
    g_assert(fe_fuse(fe_, 1, op, nodeid, in, nin, 0, &r) == 0);
    g_assert_cmpuint(r.len, ==, 0);
}

static void forget(uint64_t nodeid, uint64_t nlookup)
{
    struct fuse_forget_in fi = {.nlookup = nlookup};
    call_noreply(FUSE_FORGET, nodeid, IOV(S(fi)));
}

static int link_as(uint32_t uid, uint64_t target, uint64_t newparent, const char *name,
                   struct fuse_entry_out *e)
{
    struct fuse_link_in li = {.oldnodeid = target};
    struct fuse_entry_out tmp;
    return CALL_AS(uid, FUSE_LINK, newparent, IOV(S(li), NAME(name)), e ? e : &tmp, sizeof(tmp));
}

/* ---- LOOKUP -------------------------------------------------------------------------------- */

static void test_lookup(void)
{
    hput("lk-file", "hello", 0644);
    hmkdir("lk-dir", 0755);
    g_assert_cmpint(symlink("lk-file", hp("lk-link")), ==, 0);
    struct fuse_attr a;
    uint64_t f = lookup_ok(FUSE_ROOT_ID, "lk-file", &a);
    assert_attr_is_host(&a, "lk-file");
    g_assert_cmpuint(lookup_ok(FUSE_ROOT_ID, "lk-file", NULL), ==, f); /* same inode, same id */
    uint64_t d = lookup_ok(FUSE_ROOT_ID, "lk-dir", &a);
    assert_attr_is_host(&a, "lk-dir");
    g_assert_cmpuint(d, !=, f);
    lookup_ok(FUSE_ROOT_ID, "lk-link", &a); /* the link itself, not its target */
    assert_attr_is_host(&a, "lk-link");
    g_assert_true(S_ISLNK(a.mode));
    /* "." is the directory itself; ".." of a subdirectory is its parent. */
    g_assert_cmpuint(lookup_ok(d, ".", NULL), ==, d);
    g_assert_cmpuint(lookup_ok(d, "..", NULL), ==, FUSE_ROOT_ID);
}

static void test_lookup_errors(void)
{
    hput("lke-file", "x", 0644);
    hmkdir("lke-priv", 0700);
    hput("lke-priv/inner", "x", 0644);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, "lke-missing", &e), ==, -ENOENT);
    g_assert_cmpint(fe_lookup(fe_, node("lke-file"), "x", &e), ==, -ENOTDIR);
    char longname[NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[NAME_MAX + 1] = '\0';
    g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, longname, &e), ==, -ENAMETOOLONG);
    /* No search permission on a root-owned 0700 directory. */
    uint64_t priv = node("lke-priv");
    g_assert_cmpint(CALL_AS(USER, FUSE_LOOKUP, priv, IOV(NAME("inner")), &e, sizeof(e)), ==,
                    -EACCES);
    g_assert_cmpint(CALL(FUSE_LOOKUP, priv, IOV(NAME("inner")), &e, sizeof(e)), ==, 0);
}

/* ---- FORGET, BATCH_FORGET ------------------------------------------------------------------ */

static void test_forget(void)
{
    hput("fg-file", "x", 0644);
    uint64_t id = node("fg-file");
    g_assert_cmpuint(node("fg-file"), ==, id); /* two lookups */
    forget(id, 1);
    g_assert_cmpint(getattr(id, NULL), ==, 0); /* one reference left */
    forget(id, 1);
    g_assert_cmpint(getattr(id, NULL), ==, -EBADF); /* the nodeid is gone */
    /* The file is untouched, and a new lookup gives a working (new) nodeid. */
    assert_hcontent("fg-file", "x");
    struct fuse_attr a;
    uint64_t again = lookup_ok(FUSE_ROOT_ID, "fg-file", &a);
    assert_attr_is_host(&a, "fg-file");
    g_assert_cmpint(getattr(again, NULL), ==, 0);
    /* FORGET of a nodeid never issued, and of more references than held: no reply, no harm. */
    forget(0x7777777, 3);
    forget(again, 1000);
    g_assert_cmpint(getattr(again, NULL), ==, -EBADF);
    g_assert_cmpint(getattr(FUSE_ROOT_ID, NULL), ==, 0);
}

static void test_batch_forget(void)
{
    hput("bf-a", "a", 0644);
    hput("bf-b", "b", 0644);
    uint64_t a = node("bf-a"), b = node("bf-b");
    node("bf-b");
    struct {
        struct fuse_batch_forget_in h;
        struct fuse_forget_one one[2];
    } bf = {{.count = 2}, {{a, 1}, {b, 1}}};
    call_noreply(FUSE_BATCH_FORGET, 0, IOV(S(bf)));
    g_assert_cmpint(getattr(a, NULL), ==, -EBADF);
    g_assert_cmpint(getattr(b, NULL), ==, 0); /* b had two references */
    /* A count larger than the entries sent: only those sent are forgotten. */
    struct {
        struct fuse_batch_forget_in h;
        struct fuse_forget_one one[1];
    } over = {{.count = 1000}, {{b, 1}}};
    call_noreply(FUSE_BATCH_FORGET, 0, IOV(S(over)));
    g_assert_cmpint(getattr(b, NULL), ==, -EBADF);
    g_assert_true(hexists("bf-a") && hexists("bf-b"));
    g_assert_cmpint(getattr(FUSE_ROOT_ID, NULL), ==, 0);
}

/* Every reply that carries an entry gives the guest exactly one lookup reference. */
static void test_forget_entry_refs(void)
{
    hmkdir("fr", 0755);
    uint64_t d = node("fr");
    struct fuse_entry_out e;
    uint64_t ids[4];
    g_assert_cmpint(mkdir_as(0, d, "dir", 0755, &e), ==, 0);
    ids[0] = e.nodeid;
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0644};
    g_assert_cmpint(CALL(FUSE_MKNOD, d, IOV(S(mi), NAME("fifo")), &e, sizeof(e)), ==, 0);
    ids[1] = e.nodeid;
    g_assert_cmpint(CALL(FUSE_SYMLINK, d, IOV(NAME("sym"), NAME("t")), &e, sizeof(e)), ==, 0);
    ids[2] = e.nodeid;
    uint64_t fh;
    g_assert_cmpint(create_as(0, d, "file", O_RDWR | O_CREAT, 0644, &e, &fh), ==, 0);
    ids[3] = e.nodeid;
    g_assert_cmpint(release(e.nodeid, fh), ==, 0);
    g_assert_cmpint(link_as(0, ids[3], d, "file2", &e), ==, 0); /* a second reference */
    g_assert_cmpuint(e.nodeid, ==, ids[3]);
    g_assert_cmpint(CALL(FUSE_LOOKUP, d, IOV(NAME("dir")), &e, sizeof(e)), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, ids[0]);
    forget(ids[0], 1);
    forget(ids[3], 1);
    for (unsigned i = 0; i < 4; i++)
        g_assert_cmpint(getattr(ids[i], NULL), ==, 0);
    for (unsigned i = 0; i < 4; i++)
        forget(ids[i], 1);
    for (unsigned i = 0; i < 4; i++)
        g_assert_cmpint(getattr(ids[i], NULL), ==, -EBADF);
    g_assert_true(hexists("fr/dir") && hexists("fr/fifo") && hexists("fr/sym") &&
                  hexists("fr/file2"));
}

/* ---- GETATTR ------------------------------------------------------------------------------- */

static void test_getattr(void)
{
    hput("ga-file", "0123456789", 0640);
    g_assert_cmpint(chown(hp("ga-file"), 12, 34), ==, 0);
    hmkdir("ga-dir", 0711);
    g_assert_cmpint(mkfifo(hp("ga-fifo"), 0600), ==, 0);
    struct fuse_attr a;
    const char *names[] = {"ga-file", "ga-dir", "ga-fifo"};
    for (unsigned i = 0; i < G_N_ELEMENTS(names); i++) {
        g_assert_cmpint(getattr(node(names[i]), &a), ==, 0);
        assert_attr_is_host(&a, names[i]);
    }
    g_assert_cmpint(getattr(FUSE_ROOT_ID, &a), ==, 0);
    struct stat st;
    g_assert_cmpint(stat(daemon_.share, &st), ==, 0);
    g_assert_cmpuint(a.ino, ==, st.st_ino);
    g_assert_cmpuint(a.nlink, ==, st.st_nlink);
    /* A host change shows in the next GETATTR. */
    uint64_t f = node("ga-file");
    g_assert_cmpint(truncate(hp("ga-file"), 3), ==, 0);
    g_assert_cmpint(getattr(f, &a), ==, 0);
    g_assert_cmpuint(a.size, ==, 3);
    assert_attr_is_host(&a, "ga-file");
    /* GETATTR_FH with an open handle answers the same. */
    uint64_t fh = open_ok(f, O_RDONLY);
    struct fuse_getattr_in gi = {.getattr_flags = FUSE_GETATTR_FH, .fh = fh};
    struct fuse_attr_out out;
    g_assert_cmpint(CALL(FUSE_GETATTR, f, IOV(S(gi)), &out, sizeof(out)), ==, 0);
    assert_attr_is_host(&out.attr, "ga-file");
    g_assert_cmpint(release(f, fh), ==, 0);
}

static void test_getattr_unknown_node(void)
{
    g_assert_cmpint(getattr(0xdead0000, NULL), ==, -EBADF);
}

/* ---- SETATTR ------------------------------------------------------------------------------- */

static void test_setattr_mode_owner(void)
{
    hput("sa-mode", "x", 0644);
    uint64_t f = node("sa-mode");
    struct stat before;
    hstat("sa-mode", &before);
    g_usleep(10000);
    struct fuse_setattr_in si = {.valid = FATTR_MODE, .mode = S_IFREG | 04751};
    struct fuse_attr a;
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sa-mode");
    g_assert_cmpuint(a.mode, ==, S_IFREG | 04751);
    struct stat st;
    hstat("sa-mode", &st);
    g_assert_true(ts_after(&st.st_ctim, &before.st_ctim));
    g_assert_true(st.st_mtim.tv_sec == before.st_mtim.tv_sec &&
                  st.st_mtim.tv_nsec == before.st_mtim.tv_nsec);

    si = (struct fuse_setattr_in){.valid = FATTR_UID | FATTR_GID, .uid = 4321, .gid = 8765};
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sa-mode");
    hstat("sa-mode", &st);
    g_assert_cmpuint(st.st_uid, ==, 4321);
    g_assert_cmpuint(st.st_gid, ==, 8765);
    /* chown by root of an executable clears set-user-ID, as on Linux. */
    g_assert_cmpuint(st.st_mode & 07777, ==, 0751);

    /* Only the gid. */
    si = (struct fuse_setattr_in){.valid = FATTR_GID, .gid = 99};
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    hstat("sa-mode", &st);
    g_assert_cmpuint(st.st_uid, ==, 4321);
    g_assert_cmpuint(st.st_gid, ==, 99);

    /* A directory's mode. */
    hmkdir("sa-dir", 0755);
    si = (struct fuse_setattr_in){.valid = FATTR_MODE, .mode = S_IFDIR | 01777};
    g_assert_cmpint(setattr_as(0, node("sa-dir"), &si, &a), ==, 0);
    hstat("sa-dir", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFDIR | 01777);
}

static void test_setattr_size(void)
{
    hput("sa-size", "0123456789", 0644);
    uint64_t f = node("sa-size");
    struct fuse_setattr_in si = {.valid = FATTR_SIZE, .size = 4};
    struct fuse_attr a;
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sa-size");
    assert_hcontent("sa-size", "0123");
    /* Growing through an open handle (FATTR_FH) leaves a hole of zeros. */
    uint64_t fh = open_ok(f, O_RDWR);
    si = (struct fuse_setattr_in){.valid = FATTR_SIZE | FATTR_FH, .size = 1 << 20, .fh = fh};
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sa-size");
    size_t n;
    char *c = hget("sa-size", &n);
    g_assert_cmpuint(n, ==, 1 << 20);
    g_assert_cmpmem(c, 4, "0123", 4);
    for (size_t i = 4; i < n; i++)
        g_assert_cmpint(c[i], ==, 0);
    g_free(c);
    struct stat st;
    hstat("sa-size", &st);
    g_assert_cmpint(st.st_blocks, <, 64); /* sparse: the hole takes no blocks */
    g_assert_cmpint(release(f, fh), ==, 0);
    /* Truncating through a read-only handle fails like ftruncate(2) on an O_RDONLY fd. */
    fh = open_ok(f, O_RDONLY);
    si = (struct fuse_setattr_in){.valid = FATTR_SIZE | FATTR_FH, .size = 0, .fh = fh};
    g_assert_cmpint(setattr_as(0, f, &si, NULL), ==, -EINVAL);
    g_assert_cmpint(release(f, fh), ==, 0);
    hstat("sa-size", &st);
    g_assert_cmpint(st.st_size, ==, 1 << 20);
}

static void test_setattr_times(void)
{
    hput("sa-times", "x", 0644);
    uint64_t f = node("sa-times");
    struct fuse_setattr_in si = {.valid = FATTR_ATIME | FATTR_MTIME,
                                 .atime = 1000000000,
                                 .atimensec = 123456789,
                                 .mtime = 1500000000,
                                 .mtimensec = 987654321};
    struct fuse_attr a;
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sa-times");
    struct stat st;
    hstat("sa-times", &st);
    g_assert_cmpint(st.st_atim.tv_sec, ==, 1000000000);
    g_assert_cmpint(st.st_atim.tv_nsec, ==, 123456789);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, 1500000000);
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, 987654321);
    /* Only mtime: atime stays. */
    si = (struct fuse_setattr_in){.valid = FATTR_MTIME, .mtime = 1600000000};
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    hstat("sa-times", &st);
    g_assert_cmpint(st.st_atim.tv_sec, ==, 1000000000);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, 1600000000);
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, 0);
    /* NOW: both land on the current time. */
    time_t t0 = time(NULL);
    si = (struct fuse_setattr_in){.valid = FATTR_ATIME | FATTR_ATIME_NOW | FATTR_MTIME |
                                           FATTR_MTIME_NOW};
    g_assert_cmpint(setattr_as(0, f, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sa-times");
    hstat("sa-times", &st);
    g_assert_cmpint(st.st_mtim.tv_sec, >=, t0);
    g_assert_cmpint(st.st_atim.tv_sec, >=, t0);
    /* A symlink's own times (utimensat AT_SYMLINK_NOFOLLOW); the target is untouched. */
    g_assert_cmpint(symlink("sa-times", hp("sa-tlink")), ==, 0);
    si = (struct fuse_setattr_in){.valid = FATTR_MTIME, .mtime = 1234567890};
    g_assert_cmpint(setattr_as(0, node("sa-tlink"), &si, &a), ==, 0);
    hstat("sa-tlink", &st);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, 1234567890);
    hstat("sa-times", &st);
    g_assert_cmpint(st.st_mtim.tv_sec, >=, t0);
}

static void test_setattr_errors(void)
{
    hput("sae-file", "content", 0644);
    hmkdir("sae-dir", 0755);
    uint64_t f = node("sae-file");
    struct stat before, st;
    hstat("sae-file", &before);
    /* Truncating a directory. */
    struct fuse_setattr_in si = {.valid = FATTR_SIZE, .size = 0};
    g_assert_cmpint(setattr_as(0, node("sae-dir"), &si, NULL), ==, -EISDIR);
    /* FATTR_FH naming no open handle. */
    si = (struct fuse_setattr_in){.valid = FATTR_SIZE | FATTR_FH, .size = 0, .fh = 0xbadf00d};
    g_assert_cmpint(setattr_as(0, f, &si, NULL), ==, -EBADF);
    /* The unprivileged caller on a root-owned 0644 file: */
    si = (struct fuse_setattr_in){.valid = FATTR_MODE, .mode = S_IFREG | 0666};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EPERM);
    si = (struct fuse_setattr_in){.valid = FATTR_UID, .uid = USER};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EPERM);
    si = (struct fuse_setattr_in){.valid = FATTR_SIZE, .size = 0};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EACCES);
    si = (struct fuse_setattr_in){.valid = FATTR_MTIME, .mtime = 5};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EPERM);
    si = (struct fuse_setattr_in){.valid = FATTR_ATIME | FATTR_ATIME_NOW | FATTR_MTIME |
                                           FATTR_MTIME_NOW};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EACCES);
    hstat("sae-file", &st);
    g_assert_cmpuint(st.st_mode, ==, before.st_mode);
    g_assert_cmpuint(st.st_uid, ==, 0);
    g_assert_cmpint(st.st_size, ==, 7);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, before.st_mtim.tv_sec);
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, before.st_mtim.tv_nsec);
    /* Owners may chmod their own file, but not give it away. */
    g_assert_cmpint(chown(hp("sae-file"), USER, USER), ==, 0);
    si = (struct fuse_setattr_in){.valid = FATTR_MODE, .mode = S_IFREG | 0600};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, 0);
    si = (struct fuse_setattr_in){.valid = FATTR_UID, .uid = 0};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EPERM);
    /* An owner may change the group to its own gid. */
    si = (struct fuse_setattr_in){.valid = FATTR_GID, .gid = USER};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, 0);
    hstat("sae-file", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0600);
    g_assert_cmpuint(st.st_uid, ==, USER);
    g_assert_cmpuint(st.st_gid, ==, USER);
    /* And to one of its supplementary groups, which FUSE does not carry: the guest kernel
     * checked membership (virtiofs mounts with default_permissions) before sending this, so
     * the host tries again with that group (pt_retry_groups). */
    si = (struct fuse_setattr_in){.valid = FATTR_GID, .gid = 4242};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, 0);
    hstat("sae-file", &st);
    g_assert_cmpuint(st.st_gid, ==, 4242);
    /* Giving the file away is still refused: no group helps there. */
    si = (struct fuse_setattr_in){.valid = FATTR_UID | FATTR_GID, .uid = 0, .gid = 4242};
    g_assert_cmpint(setattr_as(USER, f, &si, NULL), ==, -EPERM);
    hstat("sae-file", &st);
    g_assert_cmpuint(st.st_uid, ==, USER);
}

/* A file readable and a directory writable only through a group: the request is tried again
 * with the group of the inode involved; other users still get EACCES from the mode bits. */
static void test_group_access(void)
{
    hput("grp-file", "group data", 0640);
    g_assert_cmpint(chown(hp("grp-file"), 4242, 4243), ==, 0);
    hmkdir("grp-dir", 0770);
    g_assert_cmpint(chown(hp("grp-dir"), 4242, 4243), ==, 0);
    hput("other-file", "no access", 0600);
    g_assert_cmpint(chown(hp("other-file"), 4242, 4243), ==, 0);

    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, "grp-file", &e), ==, 0);
    struct fuse_open_in oin = {.flags = O_RDONLY};
    struct iovec iov = {&oin, sizeof(oin)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe_, 1, USER, USER, FUSE_OPEN, e.nodeid, &iov, 1,
                               sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, "other-file", &e), ==, 0);
    g_assert_cmpint(fe_fuse_as(fe_, 1, USER, USER, FUSE_OPEN, e.nodeid, &iov, 1,
                               sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, -EACCES);

    /* A create in the group-writable directory: owned by the caller, group from the caller. */
    g_assert_cmpint(fe_lookup(fe_, FUSE_ROOT_ID, "grp-dir", &e), ==, 0);
    struct fuse_mkdir_in min = {.mode = 0755};
    struct iovec miov[2] = {{&min, sizeof(min)}, {"sub", 4}};
    g_assert_cmpint(fe_fuse_as(fe_, 1, USER, USER, FUSE_MKDIR, e.nodeid, miov, 2,
                               sizeof(struct fuse_entry_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct stat st;
    hstat("grp-dir/sub", &st);
    g_assert_cmpuint(st.st_uid, ==, USER);
    g_assert_cmpuint(st.st_gid, ==, USER);
}

static void test_setattr_symlink(void)
{
    hput("sal-target", "x", 0644);
    g_assert_cmpint(symlink("sal-target", hp("sal-link")), ==, 0);
    uint64_t l = node("sal-link");
    /* chown lands on the link itself (lchown), never on its target. */
    struct fuse_setattr_in si = {.valid = FATTR_UID | FATTR_GID, .uid = 77, .gid = 88};
    struct fuse_attr a;
    g_assert_cmpint(setattr_as(0, l, &si, &a), ==, 0);
    assert_attr_is_host(&a, "sal-link");
    struct stat st;
    hstat("sal-link", &st);
    g_assert_cmpuint(st.st_uid, ==, 77);
    g_assert_cmpuint(st.st_gid, ==, 88);
    hstat("sal-target", &st);
    g_assert_cmpuint(st.st_uid, ==, 0);
    /* A symlink's mode cannot be changed on Linux (lchmod: EOPNOTSUPP). */
    si = (struct fuse_setattr_in){.valid = FATTR_MODE, .mode = S_IFLNK | 0600};
    g_assert_cmpint(setattr_as(0, l, &si, NULL), ==, -EOPNOTSUPP);
    hstat("sal-target", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0644);
    hstat("sal-link", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFLNK | 0777);
}

static void test_setattr_kill_suidgid(void)
{
    hput("sa-suid", "0123456789", 06755);
    uint64_t f = node("sa-suid");
    struct fuse_setattr_in si = {.valid = FATTR_SIZE | FATTR_KILL_SUIDGID, .size = 2};
    g_assert_cmpint(setattr_as(0, f, &si, NULL), ==, 0);
    struct stat st;
    hstat("sa-suid", &st);
    g_assert_cmpint(st.st_size, ==, 2);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0755);
}

/* ---- READLINK, SYMLINK --------------------------------------------------------------------- */

static void test_readlink(void)
{
    const char *target = "some/where/../over the rainbow";
    g_assert_cmpint(symlink(target, hp("rl-link")), ==, 0);
    hput("rl-file", "x", 0644);
    char buf[PATH_MAX];
    size_t n = 0;
    g_assert_cmpint(
        call_fe(fe_, 0, 0, FUSE_READLINK, node("rl-link"), NULL, 0, buf, sizeof(buf), &n), ==, 0);
    char host[PATH_MAX];
    ssize_t hn = readlink(hp("rl-link"), host, sizeof(host));
    g_assert_cmpint(hn, ==, (ssize_t)strlen(target));
    g_assert_cmpmem(buf, n, host, (size_t)hn);
    /* Not a symlink. */
    g_assert_cmpint(CALL(FUSE_READLINK, node("rl-file"), NULL, 0, buf, sizeof(buf)), ==, -EINVAL);
    g_assert_cmpint(CALL(FUSE_READLINK, FUSE_ROOT_ID, NULL, 0, buf, sizeof(buf)), ==, -EINVAL);
}

static void test_symlink(void)
{
    hmkdir("sl-pub", 0777);
    uint64_t pub = node("sl-pub");
    struct fuse_entry_out e;
    const char *target = "../does-not-need-to-exist";
    g_assert_cmpint(CALL_AS(USER, FUSE_SYMLINK, pub, IOV(NAME("ln"), NAME(target)), &e, sizeof(e)),
                    ==, 0);
    assert_attr_is_host(&e.attr, "sl-pub/ln");
    struct stat st;
    hstat("sl-pub/ln", &st);
    g_assert_true(S_ISLNK(st.st_mode));
    g_assert_cmpuint(st.st_uid, ==, USER);
    g_assert_cmpuint(st.st_gid, ==, USER);
    g_assert_cmpint(st.st_size, ==, (off_t)strlen(target));
    char host[PATH_MAX];
    ssize_t hn = readlink(hp("sl-pub/ln"), host, sizeof(host));
    g_assert_cmpmem(host, (size_t)hn, target, strlen(target));
    /* The new entry is usable: READLINK through it. */
    char buf[PATH_MAX];
    size_t n = 0;
    g_assert_cmpint(call_fe(fe_, 0, 0, FUSE_READLINK, e.nodeid, NULL, 0, buf, sizeof(buf), &n), ==,
                    0);
    g_assert_cmpmem(buf, n, target, strlen(target));
}

static void test_symlink_errors(void)
{
    hput("sle-file", "x", 0644);
    struct fuse_entry_out e;
    /* EEXIST, whatever the existing entry is. */
    g_assert_cmpint(
        CALL(FUSE_SYMLINK, FUSE_ROOT_ID, IOV(NAME("sle-file"), NAME("t")), &e, sizeof(e)), ==,
        -EEXIST);
    assert_hcontent("sle-file", "x");
    /* The parent is not a directory. */
    g_assert_cmpint(CALL(FUSE_SYMLINK, node("sle-file"), IOV(NAME("x"), NAME("t")), &e, sizeof(e)),
                    ==, -ENOTDIR);
    /* The unprivileged caller in a root-owned 0755 directory. */
    g_assert_cmpint(
        CALL_AS(USER, FUSE_SYMLINK, FUSE_ROOT_ID, IOV(NAME("sle-new"), NAME("t")), &e, sizeof(e)),
        ==, -EACCES);
    g_assert_false(hexists("sle-new"));
    /* An empty target. */
    g_assert_cmpint(
        CALL(FUSE_SYMLINK, FUSE_ROOT_ID, IOV(NAME("sle-empty"), NAME("")), &e, sizeof(e)), ==,
        -ENOENT);
    g_assert_false(hexists("sle-empty"));
}

/* ---- MKNOD, MKDIR -------------------------------------------------------------------------- */

static void test_mknod(void)
{
    struct fuse_entry_out e;
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0640, .umask = 022};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mn-fifo")), &e, sizeof(e)), ==,
                    0);
    assert_attr_is_host(&e.attr, "mn-fifo");
    struct stat st;
    hstat("mn-fifo", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFIFO | 0640);
    /* A regular file through MKNOD. */
    mi = (struct fuse_mknod_in){.mode = S_IFREG | 0600};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mn-reg")), &e, sizeof(e)), ==,
                    0);
    hstat("mn-reg", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0600);
    g_assert_cmpint(st.st_size, ==, 0);
    /* A character device (root has CAP_MKNOD): rdev in the kernel's encoding. */
    mi = (struct fuse_mknod_in){.mode = S_IFCHR | 0666, .rdev = makedev(1, 3)};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mn-null")), &e, sizeof(e)), ==,
                    0);
    assert_attr_is_host(&e.attr, "mn-null");
    hstat("mn-null", &st);
    g_assert_true(S_ISCHR(st.st_mode));
    g_assert_cmpuint(major(st.st_rdev), ==, 1);
    g_assert_cmpuint(minor(st.st_rdev), ==, 3);
    /* A socket node, by the unprivileged caller in a 0777 directory: owned by them. */
    hmkdir("mn-pub", 0777);
    mi = (struct fuse_mknod_in){.mode = S_IFSOCK | 0644};
    g_assert_cmpint(
        CALL_AS(USER, FUSE_MKNOD, node("mn-pub"), IOV(S(mi), NAME("sock")), &e, sizeof(e)), ==, 0);
    hstat("mn-pub/sock", &st);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpuint(st.st_uid, ==, USER);
    g_assert_cmpuint(st.st_gid, ==, USER);
}

static void test_mknod_errors(void)
{
    hput("mne-file", "x", 0644);
    hmkdir("mne-pub", 0777);
    struct fuse_entry_out e;
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0644};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mne-file")), &e, sizeof(e)), ==,
                    -EEXIST);
    g_assert_cmpint(
        CALL_AS(USER, FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mne-new")), &e, sizeof(e)), ==,
        -EACCES);
    g_assert_false(hexists("mne-new"));
    /* Devices need CAP_MKNOD, which the unprivileged caller lacks. */
    mi = (struct fuse_mknod_in){.mode = S_IFCHR | 0644, .rdev = makedev(1, 3)};
    g_assert_cmpint(
        CALL_AS(USER, FUSE_MKNOD, node("mne-pub"), IOV(S(mi), NAME("dev")), &e, sizeof(e)), ==,
        -EPERM);
    g_assert_false(hexists("mne-pub/dev"));
    mi = (struct fuse_mknod_in){.mode = S_IFIFO | 0644};
    g_assert_cmpint(CALL(FUSE_MKNOD, node("mne-file"), IOV(S(mi), NAME("x")), &e, sizeof(e)), ==,
                    -ENOTDIR);
    /* Directories are made by MKDIR; an unknown file type is invalid. */
    mi = (struct fuse_mknod_in){.mode = S_IFDIR | 0755};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mne-d")), &e, sizeof(e)), ==,
                    -EPERM);
    mi = (struct fuse_mknod_in){.mode = 0170000 | 0644};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("mne-t")), &e, sizeof(e)), ==,
                    -EINVAL);
    g_assert_false(hexists("mne-d") || hexists("mne-t"));
}

static void test_mkdir(void)
{
    struct stat parent_before, parent, st;
    hstat(".", &parent_before);
    struct fuse_entry_out e;
    g_assert_cmpint(mkdir_as(0, FUSE_ROOT_ID, "md-dir", 0750, &e), ==, 0);
    assert_attr_is_host(&e.attr, "md-dir");
    hstat("md-dir", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFDIR | 0750);
    g_assert_cmpuint(st.st_nlink, ==, 2);
    g_assert_cmpuint(st.st_uid, ==, 0);
    hstat(".", &parent);
    g_assert_cmpuint(parent.st_nlink, ==, parent_before.st_nlink + 1);
    /* Nested, through the new entry, by the unprivileged caller in a 0777 directory. */
    g_assert_cmpint(chmod(hp("md-dir"), 0777), ==, 0);
    g_assert_cmpint(mkdir_as(USER, e.nodeid, "sub", 0700, NULL), ==, 0);
    hstat("md-dir/sub", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFDIR | 0700);
    g_assert_cmpuint(st.st_uid, ==, USER);
    g_assert_cmpuint(st.st_gid, ==, USER);
    /* A set-group-ID parent passes on its group and the bit (BSD group semantics). */
    g_assert_cmpint(chown(hp("md-dir"), 0, 555), ==, 0);
    g_assert_cmpint(chmod(hp("md-dir"), 02777), ==, 0);
    g_assert_cmpint(mkdir_as(USER, e.nodeid, "sgid", 0755, NULL), ==, 0);
    hstat("md-dir/sgid", &st);
    g_assert_cmpuint(st.st_gid, ==, 555);
    g_assert_true(st.st_mode & S_ISGID);
}

static void test_mkdir_errors(void)
{
    hmkdir("mde-dir", 0755);
    hput("mde-file", "x", 0644);
    g_assert_cmpint(mkdir_as(0, FUSE_ROOT_ID, "mde-dir", 0755, NULL), ==, -EEXIST);
    g_assert_cmpint(mkdir_as(0, FUSE_ROOT_ID, "mde-file", 0755, NULL), ==, -EEXIST);
    g_assert_cmpint(mkdir_as(0, node("mde-file"), "x", 0755, NULL), ==, -ENOTDIR);
    g_assert_cmpint(mkdir_as(USER, node("mde-dir"), "x", 0755, NULL), ==, -EACCES);
    g_assert_false(hexists("mde-dir/x"));
    /* A parent removed on the host (its nodeid still valid): nothing can be created in it. */
    hmkdir("mde-gone", 0755);
    uint64_t gone = node("mde-gone");
    g_assert_cmpint(rmdir(hp("mde-gone")), ==, 0);
    g_assert_cmpint(mkdir_as(0, gone, "x", 0755, NULL), ==, -ENOENT);
    uint64_t fh;
    g_assert_cmpint(create_as(0, gone, "x", O_RDWR | O_CREAT, 0644, NULL, &fh), ==, -ENOENT);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe_, gone, "x", &e), ==, -ENOENT);
    g_assert_false(hexists("mde-gone"));
    struct stat st;
    hstat("mde-file", &st);
    g_assert_true(S_ISREG(st.st_mode));
}

/* ---- UNLINK, RMDIR ------------------------------------------------------------------------- */

static int unlink_as(uint32_t uid, uint64_t parent, const char *name)
{
    return CALL_AS(uid, FUSE_UNLINK, parent, IOV(NAME(name)), NULL, 0);
}

static int rmdir_as(uint32_t uid, uint64_t parent, const char *name)
{
    return CALL_AS(uid, FUSE_RMDIR, parent, IOV(NAME(name)), NULL, 0);
}

static void test_unlink(void)
{
    hput("ul-file", "data", 0644);
    g_assert_cmpint(link(hp("ul-file"), hp("ul-other")), ==, 0);
    uint64_t f = node("ul-file");
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "ul-file"), ==, 0);
    g_assert_false(hexists("ul-file"));
    struct stat st;
    hstat("ul-other", &st);
    g_assert_cmpuint(st.st_nlink, ==, 1);
    /* The nodeid and the open handle outlive the name. */
    struct fuse_attr a;
    g_assert_cmpint(getattr(f, &a), ==, 0);
    g_assert_cmpuint(a.nlink, ==, 1);
    char buf[16];
    size_t n;
    g_assert_cmpint(read_at(f, fh, 0, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "data", 4);
    g_assert_cmpint(release(f, fh), ==, 0);
    /* Removing the last name: the inode lives on, with no links, until forgotten. */
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "ul-other"), ==, 0);
    g_assert_false(hexists("ul-other"));
    g_assert_cmpint(getattr(f, &a), ==, 0);
    g_assert_cmpuint(a.nlink, ==, 0);
    /* A symlink is removed itself, not its target. */
    hput("ul-target", "t", 0644);
    g_assert_cmpint(symlink("ul-target", hp("ul-link")), ==, 0);
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "ul-link"), ==, 0);
    g_assert_false(hexists("ul-link"));
    assert_hcontent("ul-target", "t");
}

static void test_unlink_errors(void)
{
    hmkdir("ule-dir", 0755);
    hput("ule-dir/file", "x", 0644);
    hmkdir("ule-sticky", 01777);
    hput("ule-sticky/roots", "x", 0666);
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "ule-missing"), ==, -ENOENT);
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "ule-dir"), ==, -EISDIR);
    g_assert_cmpint(unlink_as(0, node("ule-dir"), "file/x"), ==, -EINVAL);
    uint64_t f = lookup_ok(node("ule-dir"), "file", NULL);
    g_assert_cmpint(unlink_as(0, f, "x"), ==, -ENOTDIR);
    g_assert_cmpint(unlink_as(USER, node("ule-dir"), "file"), ==, -EACCES);
    /* A sticky directory: others' files stay, even when the directory is writable. */
    g_assert_cmpint(unlink_as(USER, node("ule-sticky"), "roots"), ==, -EPERM);
    g_assert_true(hexists("ule-dir") && hexists("ule-dir/file") && hexists("ule-sticky/roots"));
}

static void test_rmdir(void)
{
    hmkdir("rd-dir", 0755);
    hmkdir("rd-dir/sub", 0755);
    struct stat before, st;
    hstat("rd-dir", &before);
    uint64_t d = node("rd-dir");
    uint64_t sub = lookup_ok(d, "sub", NULL);
    g_assert_cmpint(rmdir_as(0, d, "sub"), ==, 0);
    g_assert_false(hexists("rd-dir/sub"));
    hstat("rd-dir", &st);
    g_assert_cmpuint(st.st_nlink, ==, before.st_nlink - 1);
    struct fuse_attr a;
    g_assert_cmpint(getattr(sub, &a), ==, 0); /* the removed directory's nodeid lives on */
    g_assert_cmpuint(a.nlink, ==, 0);
    g_assert_cmpint(rmdir_as(0, FUSE_ROOT_ID, "rd-dir"), ==, 0);
    g_assert_false(hexists("rd-dir"));
}

static void test_rmdir_errors(void)
{
    hmkdir("rde-full", 0755);
    hput("rde-full/f", "x", 0644);
    hput("rde-file", "x", 0644);
    hmkdir("rde-empty", 0755);
    g_assert_cmpint(rmdir_as(0, FUSE_ROOT_ID, "rde-full"), ==, -ENOTEMPTY);
    g_assert_cmpint(rmdir_as(0, FUSE_ROOT_ID, "rde-file"), ==, -ENOTDIR);
    g_assert_cmpint(rmdir_as(0, FUSE_ROOT_ID, "rde-missing"), ==, -ENOENT);
    g_assert_cmpint(rmdir_as(USER, FUSE_ROOT_ID, "rde-empty"), ==, -EACCES);
    g_assert_cmpint(rmdir_as(0, node("rde-empty"), "."), ==, -EINVAL);
    g_assert_true(hexists("rde-full/f") && hexists("rde-file") && hexists("rde-empty"));
}

/* ---- RENAME, RENAME2 ----------------------------------------------------------------------- */

static int rename_as(uint32_t uid, uint64_t olddir, const char *oldname, uint64_t newdir,
                     const char *newname)
{
    struct fuse_rename_in ri = {.newdir = newdir};
    return CALL_AS(uid, FUSE_RENAME, olddir, IOV(S(ri), NAME(oldname), NAME(newname)), NULL, 0);
}

static int rename2(uint64_t olddir, const char *oldname, uint64_t newdir, const char *newname,
                   uint32_t flags)
{
    struct fuse_rename2_in ri = {.newdir = newdir, .flags = flags};
    return CALL(FUSE_RENAME2, olddir, IOV(S(ri), NAME(oldname), NAME(newname)), NULL, 0);
}

static void test_rename(void)
{
    hmkdir("rn-a", 0755);
    hmkdir("rn-b", 0755);
    hput("rn-a/f", "moved", 0644);
    struct stat orig, st;
    hstat("rn-a/f", &orig);
    uint64_t a = node("rn-a"), b = node("rn-b");
    uint64_t f = lookup_ok(a, "f", NULL);
    g_assert_cmpint(rename_as(0, a, "f", b, "g"), ==, 0);
    g_assert_false(hexists("rn-a/f"));
    hstat("rn-b/g", &st);
    g_assert_cmpuint(st.st_ino, ==, orig.st_ino);
    assert_hcontent("rn-b/g", "moved");
    /* The nodeid follows the inode. */
    g_assert_cmpuint(lookup_ok(b, "g", NULL), ==, f);
    /* Over an existing file: it is replaced. */
    hput("rn-b/victim", "old", 0644);
    g_assert_cmpint(rename_as(0, b, "g", b, "victim"), ==, 0);
    g_assert_false(hexists("rn-b/g"));
    hstat("rn-b/victim", &st);
    g_assert_cmpuint(st.st_ino, ==, orig.st_ino);
    assert_hcontent("rn-b/victim", "moved");
    /* A directory over an empty directory, and into another parent (nlinks move). */
    hmkdir("rn-a/d", 0755);
    hmkdir("rn-b/empty", 0755);
    struct stat a_before, b_before;
    hstat("rn-a", &a_before);
    hstat("rn-b", &b_before);
    g_assert_cmpint(rename_as(0, a, "d", b, "empty"), ==, 0);
    hstat("rn-a", &st);
    g_assert_cmpuint(st.st_nlink, ==, a_before.st_nlink - 1);
    hstat("rn-b", &st);
    g_assert_cmpuint(st.st_nlink, ==, b_before.st_nlink); /* one in, one replaced */
    g_assert_false(hexists("rn-a/d"));
    /* Renaming a name onto itself changes nothing. */
    g_assert_cmpint(rename_as(0, b, "victim", b, "victim"), ==, 0);
    assert_hcontent("rn-b/victim", "moved");
}

static void test_rename_errors(void)
{
    hmkdir("rne", 0755);
    hput("rne/file", "f", 0644);
    hmkdir("rne/dir", 0755);
    hmkdir("rne/full", 0755);
    hput("rne/full/x", "x", 0644);
    hmkdir("rne/dir2", 0755);
    uint64_t d = node("rne");
    g_assert_cmpint(rename_as(0, d, "missing", d, "new"), ==, -ENOENT);
    g_assert_cmpint(rename_as(0, d, "dir2", d, "full"), ==, -ENOTEMPTY);
    g_assert_cmpint(rename_as(0, d, "file", d, "dir"), ==, -EISDIR);
    g_assert_cmpint(rename_as(0, d, "dir", d, "file"), ==, -ENOTDIR);
    /* A directory into itself. */
    uint64_t dir = lookup_ok(d, "dir", NULL);
    g_assert_cmpint(rename_as(0, d, "dir", dir, "inside"), ==, -EINVAL);
    /* The new parent is not a directory. */
    g_assert_cmpint(rename_as(0, d, "dir", lookup_ok(d, "file", NULL), "x"), ==, -ENOTDIR);
    /* The unprivileged caller in root-owned 0755 directories. */
    g_assert_cmpint(rename_as(USER, d, "file", d, "file2"), ==, -EACCES);
    /* ... and in a sticky 01777 one: others' files cannot be moved. */
    hmkdir("rne-sticky", 01777);
    hput("rne-sticky/roots", "r", 0666);
    uint64_t sticky = node("rne-sticky");
    g_assert_cmpint(rename_as(USER, sticky, "roots", sticky, "mine"), ==, -EPERM);
    g_assert_true(hexists("rne-sticky/roots"));
    g_assert_false(hexists("rne-sticky/mine"));
    struct stat st;
    hstat("rne/file", &st);
    g_assert_true(S_ISREG(st.st_mode));
    hstat("rne/dir", &st);
    g_assert_true(S_ISDIR(st.st_mode));
    g_assert_true(hexists("rne/full/x") && hexists("rne/dir2"));
    g_assert_false(hexists("rne/new") || hexists("rne/file2") || hexists("rne/dir/inside"));
}

static void test_rename2_noreplace(void)
{
    hput("r2-a", "a", 0644);
    hput("r2-b", "b", 0644);
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "r2-a", FUSE_ROOT_ID, "r2-b", RENAME_NOREPLACE), ==,
                    -EEXIST);
    assert_hcontent("r2-a", "a");
    assert_hcontent("r2-b", "b");
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "r2-a", FUSE_ROOT_ID, "r2-c", RENAME_NOREPLACE), ==, 0);
    g_assert_false(hexists("r2-a"));
    assert_hcontent("r2-c", "a");
    /* flags 0: a plain rename. */
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "r2-c", FUSE_ROOT_ID, "r2-b", 0), ==, 0);
    assert_hcontent("r2-b", "a");
}

static void test_rename2_exchange(void)
{
    hput("rx-file", "file", 0644);
    hmkdir("rx-dir", 0755);
    hput("rx-dir/in", "in", 0644);
    struct stat f0, d0, st;
    hstat("rx-file", &f0);
    hstat("rx-dir", &d0);
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "rx-file", FUSE_ROOT_ID, "rx-dir", RENAME_EXCHANGE), ==,
                    0);
    hstat("rx-file", &st);
    g_assert_cmpuint(st.st_ino, ==, d0.st_ino);
    g_assert_true(S_ISDIR(st.st_mode));
    assert_hcontent("rx-file/in", "in");
    hstat("rx-dir", &st);
    g_assert_cmpuint(st.st_ino, ==, f0.st_ino);
    assert_hcontent("rx-dir", "file");
    /* Exchange needs both names. */
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "rx-dir", FUSE_ROOT_ID, "rx-none", RENAME_EXCHANGE), ==,
                    -ENOENT);
    g_assert_false(hexists("rx-none"));
}

static void test_rename2_whiteout(void)
{
    hput("rw-a", "a", 0644);
    struct stat orig, st;
    hstat("rw-a", &orig);
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "rw-a", FUSE_ROOT_ID, "rw-b", RENAME_WHITEOUT), ==, 0);
    hstat("rw-b", &st);
    g_assert_cmpuint(st.st_ino, ==, orig.st_ino);
    /* The old name is now a whiteout: a character device 0:0. */
    hstat("rw-a", &st);
    g_assert_true(S_ISCHR(st.st_mode));
    g_assert_cmpuint(st.st_rdev, ==, makedev(0, 0));
}

static void test_rename2_bad_flags(void)
{
    hput("rf-a", "a", 0644);
    hput("rf-b", "b", 0644);
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "rf-a", FUSE_ROOT_ID, "rf-b", 1u << 10), ==, -EINVAL);
    g_assert_cmpint(
        rename2(FUSE_ROOT_ID, "rf-a", FUSE_ROOT_ID, "rf-b", RENAME_NOREPLACE | RENAME_EXCHANGE), ==,
        -EINVAL);
    assert_hcontent("rf-a", "a");
    assert_hcontent("rf-b", "b");
}

/* ---- LINK ---------------------------------------------------------------------------------- */

static void test_link(void)
{
    hput("ln-file", "linked", 0644);
    hmkdir("ln-dir", 0755);
    uint64_t f = node("ln-file");
    struct fuse_entry_out e;
    g_assert_cmpint(link_as(0, f, node("ln-dir"), "second", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, f); /* the same inode */
    assert_attr_is_host(&e.attr, "ln-dir/second");
    g_assert_cmpuint(e.attr.nlink, ==, 2);
    struct stat a, b;
    hstat("ln-file", &a);
    hstat("ln-dir/second", &b);
    g_assert_cmpuint(a.st_ino, ==, b.st_ino);
    g_assert_cmpuint(a.st_nlink, ==, 2);
    assert_hcontent("ln-dir/second", "linked");
    /* A hard link to a symlink links the symlink itself. */
    g_assert_cmpint(symlink("ln-file", hp("ln-sym")), ==, 0);
    g_assert_cmpint(link_as(0, node("ln-sym"), FUSE_ROOT_ID, "ln-sym2", &e), ==, 0);
    hstat("ln-sym", &a);
    hstat("ln-sym2", &b);
    g_assert_true(S_ISLNK(b.st_mode));
    g_assert_cmpuint(a.st_ino, ==, b.st_ino);
    g_assert_cmpuint(b.st_nlink, ==, 2);
    /* The unprivileged caller may link their own file into a 0777 directory. */
    hmkdir("ln-pub", 0777);
    hput("ln-pub/mine", "m", 0644);
    g_assert_cmpint(chown(hp("ln-pub/mine"), USER, USER), ==, 0);
    g_assert_cmpint(
        link_as(USER, lookup_ok(node("ln-pub"), "mine", NULL), node("ln-pub"), "mine2", NULL), ==,
        0);
    hstat("ln-pub/mine2", &b);
    g_assert_cmpuint(b.st_nlink, ==, 2);
}

static void test_link_errors(void)
{
    hput("lne-file", "x", 0644);
    hput("lne-other", "y", 0644);
    hmkdir("lne-dir", 0755);
    uint64_t f = node("lne-file");
    g_assert_cmpint(link_as(0, f, FUSE_ROOT_ID, "lne-other", NULL), ==, -EEXIST);
    assert_hcontent("lne-other", "y");
    g_assert_cmpint(link_as(0, node("lne-dir"), FUSE_ROOT_ID, "lne-dirlink", NULL), ==, -EPERM);
    g_assert_cmpint(link_as(0, f, node("lne-other"), "x", NULL), ==, -ENOTDIR);
    /* The unprivileged caller's own file into a root-owned 0755 directory. */
    hput("lne-mine", "m", 0644);
    g_assert_cmpint(chown(hp("lne-mine"), USER, USER), ==, 0);
    g_assert_cmpint(link_as(USER, node("lne-mine"), node("lne-dir"), "x", NULL), ==, -EACCES);
    /* Someone else's file it cannot write, with fs.protected_hardlinks=1 (the default). */
    gchar *prot = NULL;
    if (g_file_get_contents("/proc/sys/fs/protected_hardlinks", &prot, NULL, NULL) &&
        prot[0] == '1') {
        hmkdir("lne-pub", 0777);
        g_assert_cmpint(link_as(USER, f, node("lne-pub"), "x", NULL), ==, -EPERM);
        g_assert_false(hexists("lne-pub/x"));
    }
    g_free(prot);
    g_assert_false(hexists("lne-dirlink") || hexists("lne-dir/x"));
    struct stat st;
    hstat("lne-file", &st);
    g_assert_cmpuint(st.st_nlink, ==, 1);
}

/* ---- OPEN, CREATE, READ, WRITE, RELEASE ---------------------------------------------------- */

static void test_open(void)
{
    hput("op-file", "0123456789", 0644);
    uint64_t f = node("op-file");
    char buf[32];
    size_t n;
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(read_at(f, fh, 0, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "0123456789", 10);
    /* A second handle is independent of the first. */
    uint64_t fh2 = open_ok(f, O_RDWR);
    g_assert_cmpuint(fh2, !=, fh);
    g_assert_cmpint(write_at(f, fh2, 0, "AB", 2, 0), ==, 0);
    assert_hcontent("op-file", "AB23456789");
    g_assert_cmpint(release(f, fh2), ==, 0);
    g_assert_cmpint(read_at(f, fh, 0, buf, 4, &n), ==, 0);
    g_assert_cmpmem(buf, n, "AB23", 4);
    g_assert_cmpint(release(f, fh), ==, 0);
    /* O_TRUNC empties the file on open. */
    fh = open_ok(f, O_WRONLY | O_TRUNC);
    struct stat st;
    hstat("op-file", &st);
    g_assert_cmpint(st.st_size, ==, 0);
    g_assert_cmpint(release(f, fh), ==, 0);
    /* O_APPEND: a write lands at the end whatever its offset (no writeback cache). */
    hput("op-app", "head", 0644);
    uint64_t app = node("op-app");
    fh = open_ok(app, O_WRONLY | O_APPEND);
    g_assert_cmpint(write_at(app, fh, 0, "tail", 4, 0), ==, 0);
    assert_hcontent("op-app", "headtail");
    g_assert_cmpint(release(app, fh), ==, 0);
    /* The unprivileged caller may read a root-owned 0644 file. */
    g_assert_cmpint(open_as(USER, app, O_RDONLY, &fh), ==, 0);
    g_assert_cmpint(release(app, fh), ==, 0);
}

static void test_open_errors(void)
{
    hput("ope-file", "keep", 0644);
    hput("ope-secret", "s", 0600);
    hmkdir("ope-dir", 0755);
    g_assert_cmpint(mkfifo(hp("ope-fifo"), 0666), ==, 0);
    uint64_t f = node("ope-file");
    uint64_t fh;
    g_assert_cmpint(open_as(0, node("ope-dir"), O_RDONLY, &fh), ==, -EISDIR);
    /* FIFOs and devices are served by the guest itself and never opened on the host. */
    g_assert_cmpint(open_as(0, node("ope-fifo"), O_RDONLY, &fh), ==, -EINVAL);
    g_assert_cmpint(open_as(USER, f, O_WRONLY, &fh), ==, -EACCES);
    g_assert_cmpint(open_as(USER, f, O_RDWR | O_TRUNC, &fh), ==, -EACCES);
    g_assert_cmpint(open_as(USER, node("ope-secret"), O_RDONLY, &fh), ==, -EACCES);
    /* O_NOATIME is for the file's owner only: the guest kernel checks that; the daemon drops
     * the flag on the host (as the Rust virtiofsd) unless --preserve-noatime. */
    g_assert_cmpint(open_as(USER, f, O_RDONLY | O_NOATIME, &fh), ==, 0);
    assert_hcontent("ope-file", "keep");
}

static void test_create(void)
{
    struct fuse_entry_out e;
    uint64_t fh;
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "cr-new", O_RDWR | O_CREAT, 0640, &e, &fh), ==, 0);
    assert_attr_is_host(&e.attr, "cr-new");
    struct stat st;
    hstat("cr-new", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0640);
    g_assert_cmpint(st.st_size, ==, 0);
    g_assert_cmpuint(st.st_uid, ==, 0);
    g_assert_cmpint(write_at(e.nodeid, fh, 0, "created", 7, 0), ==, 0);
    assert_hcontent("cr-new", "created");
    g_assert_cmpint(release(e.nodeid, fh), ==, 0);
    g_assert_cmpuint(node("cr-new"), ==, e.nodeid);
    /* Without O_EXCL an existing file is opened, and O_TRUNC empties it. */
    uint64_t fh2;
    struct fuse_entry_out e2;
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "cr-new", O_RDWR | O_CREAT, 0600, &e2, &fh2), ==, 0);
    g_assert_cmpuint(e2.nodeid, ==, e.nodeid);
    assert_hcontent("cr-new", "created");
    hstat("cr-new", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0640); /* the mode is not changed */
    g_assert_cmpint(release(e.nodeid, fh2), ==, 0);
    g_assert_cmpint(
        create_as(0, FUSE_ROOT_ID, "cr-new", O_WRONLY | O_CREAT | O_TRUNC, 0600, &e2, &fh2), ==, 0);
    hstat("cr-new", &st);
    g_assert_cmpint(st.st_size, ==, 0);
    g_assert_cmpint(release(e.nodeid, fh2), ==, 0);
    /* The unprivileged caller in a 0777 directory owns what it creates. */
    hmkdir("cr-pub", 0777);
    g_assert_cmpint(
        create_as(USER, node("cr-pub"), "mine", O_WRONLY | O_CREAT | O_EXCL, 0600, &e, &fh), ==, 0);
    hstat("cr-pub/mine", &st);
    g_assert_cmpuint(st.st_uid, ==, USER);
    g_assert_cmpuint(st.st_gid, ==, USER);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0600);
    g_assert_cmpint(release(e.nodeid, fh), ==, 0);
    /* The guest kernel applied the umask already (no FUSE_DONT_MASK): the mode is taken as is. */
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "cr-0666", O_RDWR | O_CREAT, 0666, &e, &fh), ==, 0);
    hstat("cr-0666", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0666);
    g_assert_cmpint(release(e.nodeid, fh), ==, 0);
}

static void test_create_errors(void)
{
    hput("cre-file", "keep", 0644);
    hmkdir("cre-dir", 0755);
    g_assert_cmpint(symlink("cre-file", hp("cre-link")), ==, 0);
    uint64_t fh;
    g_assert_cmpint(
        create_as(0, FUSE_ROOT_ID, "cre-file", O_RDWR | O_CREAT | O_EXCL, 0644, NULL, &fh), ==,
        -EEXIST);
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "cre-dir", O_RDWR | O_CREAT, 0644, NULL, &fh), ==,
                    -EISDIR);
    /* A symlink is never followed on the host; open(O_CREAT|O_NOFOLLOW) gives ELOOP. */
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "cre-link", O_RDWR | O_CREAT, 0644, NULL, &fh), ==,
                    -ELOOP);
    g_assert_cmpint(create_as(0, node("cre-file"), "x", O_RDWR | O_CREAT, 0644, NULL, &fh), ==,
                    -ENOTDIR);
    g_assert_cmpint(create_as(USER, node("cre-dir"), "x", O_RDWR | O_CREAT, 0644, NULL, &fh), ==,
                    -EACCES);
    /* Opening the existing root-owned 0644 file for writing. */
    g_assert_cmpint(
        create_as(USER, FUSE_ROOT_ID, "cre-file", O_WRONLY | O_CREAT | O_TRUNC, 0644, NULL, &fh),
        ==, -EACCES);
    assert_hcontent("cre-file", "keep");
    g_assert_false(hexists("cre-dir/x"));
}

static void test_read(void)
{
    size_t len = 300000;
    uint8_t *data = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + 7);
    g_assert_true(g_file_set_contents(hp("rd-big"), (const char *)data, (gssize)len, NULL));
    uint64_t f = node("rd-big");
    uint64_t fh = open_ok(f, O_RDONLY);
    uint8_t *buf = g_malloc(len);
    size_t n;
    g_assert_cmpint(read_at(f, fh, 0, buf, len, &n), ==, 0);
    g_assert_cmpmem(buf, n, data, len);
    g_assert_cmpint(read_at(f, fh, 12345, buf, 1000, &n), ==, 0);
    g_assert_cmpmem(buf, n, data + 12345, 1000);
    /* Short at the end, empty past it. */
    g_assert_cmpint(read_at(f, fh, len - 10, buf, 4096, &n), ==, 0);
    g_assert_cmpmem(buf, n, data + len - 10, 10);
    g_assert_cmpint(read_at(f, fh, len + 100, buf, 4096, &n), ==, 0);
    g_assert_cmpuint(n, ==, 0);
    /* Bytes written on the host show at once. */
    memcpy(data, "HOST", 4);
    g_assert_true(g_file_set_contents(hp("rd-big"), (const char *)data, (gssize)len, NULL));
    g_assert_cmpint(release(f, fh), ==, 0);
    f = node("rd-big"); /* g_file_set_contents replaced the inode */
    fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(read_at(f, fh, 0, buf, 4, &n), ==, 0);
    g_assert_cmpmem(buf, n, "HOST", 4);
    g_assert_cmpint(release(f, fh), ==, 0);
    g_free(buf);
    g_free(data);
}

static void test_read_errors(void)
{
    hput("rde2-file", "x", 0644);
    hput("rde2-other", "y", 0644);
    uint64_t f = node("rde2-file");
    char buf[16];
    g_assert_cmpint(read_at(f, 0xbadf00d, 0, buf, sizeof(buf), NULL), ==, -EBADF);
    /* A write-only handle cannot read (read(2) on an O_WRONLY fd). */
    uint64_t fh = open_ok(f, O_WRONLY);
    g_assert_cmpint(read_at(f, fh, 0, buf, sizeof(buf), NULL), ==, -EBADF);
    g_assert_cmpint(release(f, fh), ==, 0);
    /* A handle belongs to the nodeid it was opened on. */
    fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(read_at(node("rde2-other"), fh, 0, buf, sizeof(buf), NULL), ==, -EBADF);
    g_assert_cmpint(release(f, fh), ==, 0);
    /* A directory handle is not a file handle. */
    uint64_t dfh;
    g_assert_cmpint(opendir_as(0, FUSE_ROOT_ID, &dfh), ==, 0);
    g_assert_cmpint(read_at(FUSE_ROOT_ID, dfh, 0, buf, sizeof(buf), NULL), ==, -EBADF);
    g_assert_cmpint(releasedir(FUSE_ROOT_ID, dfh), ==, 0);
}

static void test_write(void)
{
    hput("wr-file", "", 0644);
    uint64_t f = node("wr-file");
    uint64_t fh = open_ok(f, O_WRONLY);
    struct stat st;
    g_assert_cmpint(write_at(f, fh, 0, "hello", 5, 0), ==, 0);
    g_assert_cmpint(write_at(f, fh, 2, "LL", 2, 0), ==, 0);
    assert_hcontent("wr-file", "heLLo");
    /* Past the end: a hole of zeros, taking no blocks. */
    g_assert_cmpint(write_at(f, fh, 1 << 20, "end", 3, 0), ==, 0);
    hstat("wr-file", &st);
    g_assert_cmpint(st.st_size, ==, (1 << 20) + 3);
    g_assert_cmpint(st.st_blocks, <=, 16);
    size_t n;
    char *c = hget("wr-file", &n);
    for (size_t i = 5; i < (1 << 20); i++)
        g_assert_cmpint(c[i], ==, 0);
    g_assert_cmpmem(c + (1 << 20), 3, "end", 3);
    g_free(c);
    /* mtime and ctime move; the attributes agree with the host. */
    struct stat before;
    hstat("wr-file", &before);
    g_usleep(10000);
    g_assert_cmpint(write_at(f, fh, 0, "H", 1, 0), ==, 0);
    hstat("wr-file", &st);
    g_assert_true(ts_after(&st.st_mtim, &before.st_mtim));
    g_assert_true(ts_after(&st.st_ctim, &before.st_ctim));
    struct fuse_attr a;
    g_assert_cmpint(getattr(f, &a), ==, 0);
    assert_attr_is_host(&a, "wr-file");
    /* A full 1 MiB write (max_write). */
    size_t big = 1 << 20;
    uint8_t *data = g_malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i ^ (i >> 8));
    g_assert_cmpint(write_at(f, fh, 0, data, big, 0), ==, 0);
    c = hget("wr-file", &n);
    g_assert_cmpmem(c, big, data, big);
    g_free(c);
    g_free(data);
    g_assert_cmpint(release(f, fh), ==, 0);
}

static void test_write_errors(void)
{
    hput("wre-file", "keep", 0644);
    uint64_t f = node("wre-file");
    g_assert_cmpint(write_at(f, 0xbadf00d, 0, "x", 1, 0), ==, -EBADF);
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(write_at(f, fh, 0, "x", 1, 0), ==, -EBADF);
    /* The size field must match the data sent. */
    struct fuse_write_in wi = {.fh = fh, .size = 10};
    g_assert_cmpint(
        CALL(FUSE_WRITE, f, IOV(S(wi), {"abc", 3}), NULL, sizeof(struct fuse_write_out)), ==,
        -EINVAL);
    g_assert_cmpint(release(f, fh), ==, 0);
    assert_hcontent("wre-file", "keep");
}

static void test_write_kill_suidgid(void)
{
    hput("wr-suid", "x", 06755);
    uint64_t f = node("wr-suid");
    uint64_t fh = open_ok(f, O_WRONLY);
    struct stat st;
    g_assert_cmpint(write_at(f, fh, 0, "y", 1, 0), ==, 0);
    hstat("wr-suid", &st); /* root's writes keep the bits unless the guest asks */
    g_assert_cmpuint(st.st_mode & 07777, ==, 06755);
    g_assert_cmpint(write_at(f, fh, 1, "z", 1, FUSE_WRITE_KILL_SUIDGID), ==, 0);
    hstat("wr-suid", &st);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0755);
    assert_hcontent("wr-suid", "yz");
    g_assert_cmpint(release(f, fh), ==, 0);
}

static void test_write_unprivileged_kills_suid(void)
{
    /* A caller without CAP_FSETID loses the set-id bits on write, as on the host. */
    hput("wu-suid", "x", 06777);
    uint64_t f = node("wu-suid");
    uint64_t fh = 0;
    g_assert_cmpint(open_as(USER, f, O_WRONLY, &fh), ==, 0);
    struct fuse_write_in wi = {.fh = fh, .size = 1};
    struct fuse_write_out wo = {0};
    g_assert_cmpint(CALL_AS(USER, FUSE_WRITE, f, IOV(S(wi), {"u", 1}), &wo, sizeof(wo)), ==, 0);
    g_assert_cmpuint(wo.size, ==, 1);
    struct stat st;
    hstat("wu-suid", &st);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0777);
    g_assert_cmpuint(st.st_uid, ==, 0);
    assert_hcontent("wu-suid", "u");
    g_assert_cmpint(release(f, fh), ==, 0);
}

static void test_release(void)
{
    hput("rl2-file", "x", 0644);
    uint64_t f = node("rl2-file");
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(release(f, fh), ==, 0);
    char buf[4];
    g_assert_cmpint(read_at(f, fh, 0, buf, sizeof(buf), NULL), ==, -EBADF);
    g_assert_cmpint(release(f, fh), ==, -EBADF);
    g_assert_cmpint(release(f, 0xbadf00d), ==, -EBADF);
    /* A directory handle is released with RELEASEDIR, not RELEASE. */
    uint64_t dfh;
    g_assert_cmpint(opendir_as(0, FUSE_ROOT_ID, &dfh), ==, 0);
    g_assert_cmpint(release(FUSE_ROOT_ID, dfh), ==, -EBADF);
    g_assert_cmpint(releasedir(FUSE_ROOT_ID, dfh), ==, 0);
    /* No daemon fd leaks from a thousand open/release pairs (earlier tests' closes may still
     * be pending, so the count may drop below the base). */
    int base = test_daemon_fd_count(&daemon_);
    for (int i = 0; i < 1000; i++) {
        fh = open_ok(f, O_RDONLY);
        g_assert_cmpint(release(f, fh), ==, 0);
    }
    /* Handles are freed after an RCU grace period: give the fds a moment to close. */
    for (int i = 0; i < 100 && test_daemon_fd_count(&daemon_) > base; i++)
        g_usleep(10000);
    g_assert_cmpint(test_daemon_fd_count(&daemon_), <=, base);
}

/* ---- FLUSH, FSYNC, STATFS ------------------------------------------------------------------ */

static void test_flush_fsync(void)
{
    hput("fs-file", "x", 0644);
    uint64_t f = node("fs-file");
    uint64_t fh = open_ok(f, O_RDWR);
    g_assert_cmpint(write_at(f, fh, 0, "synced", 6, 0), ==, 0);
    struct fuse_flush_in fl = {.fh = fh};
    g_assert_cmpint(CALL(FUSE_FLUSH, f, IOV(S(fl)), NULL, 0), ==, 0);
    struct fuse_fsync_in fs = {.fh = fh};
    g_assert_cmpint(CALL(FUSE_FSYNC, f, IOV(S(fs)), NULL, 0), ==, 0);
    fs.fsync_flags = FUSE_FSYNC_FDATASYNC;
    g_assert_cmpint(CALL(FUSE_FSYNC, f, IOV(S(fs)), NULL, 0), ==, 0);
    assert_hcontent("fs-file", "synced");
    /* The handle is still open after FLUSH (every close(2) in the guest sends one). */
    char buf[8];
    size_t n;
    g_assert_cmpint(read_at(f, fh, 0, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "synced", 6);
    g_assert_cmpint(release(f, fh), ==, 0);
    fl.fh = fh;
    g_assert_cmpint(CALL(FUSE_FLUSH, f, IOV(S(fl)), NULL, 0), ==, -EBADF);
    fs.fh = 0xbadf00d;
    g_assert_cmpint(CALL(FUSE_FSYNC, f, IOV(S(fs)), NULL, 0), ==, -EBADF);
}

static void test_statfs(void)
{
    struct fuse_statfs_out out = {0};
    g_assert_cmpint(CALL(FUSE_STATFS, FUSE_ROOT_ID, NULL, 0, &out, sizeof(out)), ==, 0);
    struct statvfs sv;
    g_assert_cmpint(statvfs(daemon_.share, &sv), ==, 0);
    g_assert_cmpuint(out.st.blocks, ==, sv.f_blocks);
    g_assert_cmpuint(out.st.bsize, ==, sv.f_bsize);
    g_assert_cmpuint(out.st.frsize, ==, sv.f_frsize);
    g_assert_cmpuint(out.st.namelen, ==, sv.f_namemax);
    g_assert_cmpuint(out.st.files, ==, sv.f_files);
    /* Free counts move with other activity on the host; they must be close. */
    g_assert_cmpuint(out.st.bfree, <=, sv.f_bfree + 65536);
    g_assert_cmpuint(out.st.bfree + 65536, >=, sv.f_bfree);
    g_assert_cmpuint(out.st.bavail, <=, out.st.bfree);
    g_assert_cmpuint(out.st.ffree, <=, sv.f_ffree + 10000);
    g_assert_cmpuint(out.st.ffree + 10000, >=, sv.f_ffree);
    /* Any inode answers for its filesystem, for any caller. */
    hput("sf-file", "x", 0600);
    struct fuse_statfs_out o2 = {0};
    g_assert_cmpint(CALL_AS(USER, FUSE_STATFS, node("sf-file"), NULL, 0, &o2, sizeof(o2)), ==, 0);
    g_assert_cmpuint(o2.st.blocks, ==, sv.f_blocks);
}

/* ---- OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR ----------------------------------- */

struct dent {
    uint64_t ino, off;
    uint32_t type;
    char name[NAME_MAX + 1];
    struct fuse_entry_out e; /* READDIRPLUS only */
};

/* Parses one READDIR(PLUS) reply into entries; returns how many. */
static unsigned parse_dir(const uint8_t *p, size_t len, bool plus, GArray *out)
{
    unsigned count = 0;
    size_t pos = 0;
    while (pos < len) {
        struct dent d = {0};
        struct fuse_dirent de;
        size_t hdr = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
        g_assert_cmpuint(pos + hdr, <=, len);
        if (plus)
            memcpy(&d.e, p + pos, sizeof(d.e));
        memcpy(&de, p + pos + (plus ? sizeof(struct fuse_entry_out) : 0), FUSE_NAME_OFFSET);
        g_assert_cmpuint(de.namelen, >=, 1);
        g_assert_cmpuint(de.namelen, <=, NAME_MAX);
        g_assert_cmpuint(pos + hdr + de.namelen, <=, len);
        d.ino = de.ino;
        d.off = de.off;
        d.type = de.type;
        memcpy(d.name, p + pos + hdr, de.namelen);
        g_array_append_val(out, d);
        pos += FUSE_DIRENT_ALIGN(hdr + de.namelen);
        count++;
    }
    g_assert_cmpuint(pos, ==, len);
    return count;
}

/* One READDIR(PLUS) of size bytes at off; appends the entries to out and returns how many. */
static unsigned readdir_once(uint64_t nodeid, uint64_t fh, bool plus, uint64_t off, size_t size,
                             GArray *out)
{
    struct fuse_read_in ri = {.fh = fh, .offset = off, .size = (uint32_t)size};
    uint8_t *buf = g_malloc(size);
    size_t n = 0;
    int ret = call_fe(fe_, 0, 0, plus ? FUSE_READDIRPLUS : FUSE_READDIR, nodeid, IOV(S(ri)), buf,
                      size, &n);
    g_assert_cmpint(ret, ==, 0);
    unsigned count = parse_dir(buf, n, plus, out);
    g_free(buf);
    return count;
}

/* The whole directory, read from offset 0 in requests of size bytes. */
static GArray *readdir_all(uint64_t nodeid, uint64_t fh, bool plus, size_t size)
{
    GArray *out = g_array_new(FALSE, TRUE, sizeof(struct dent));
    uint64_t off = 0;
    for (int guard = 0; guard < 10000; guard++) {
        unsigned before = out->len;
        if (readdir_once(nodeid, fh, plus, off, size, out) == 0)
            break;
        off = g_array_index(out, struct dent, out->len - 1).off;
        g_assert_cmpuint(out->len, >, before);
    }
    return out;
}

static const struct dent *find_dent(GArray *a, const char *name)
{
    const struct dent *found = NULL;
    for (unsigned i = 0; i < a->len; i++) {
        const struct dent *d = &g_array_index(a, struct dent, i);
        if (strcmp(d->name, name) == 0) {
            g_assert_null(found); /* listed once */
            found = d;
        }
    }
    return found;
}

/* The listing is exactly the host's: the same names (with . and ..), inode numbers, types. */
static void assert_listing_is_host(GArray *a, const char *rel)
{
    DIR *dir = opendir(hp(rel));
    g_assert_nonnull(dir);
    unsigned n = 0;
    for (struct dirent *h; (h = readdir(dir)); n++) {
        const struct dent *d = find_dent(a, h->d_name);
        g_assert_nonnull(d);
        if (!d)
            continue;
        g_assert_cmpuint(d->ino, ==, h->d_ino);
        g_assert_cmpuint(d->type, ==, h->d_type);
    }
    closedir(dir);
    g_assert_cmpuint(a->len, ==, n);
}

static void make_listing_dir(const char *rel, unsigned nfiles)
{
    hmkdir(rel, 0755);
    for (unsigned i = 0; i < nfiles; i++) {
        char name[PATH_MAX];
        snprintf(name, sizeof(name), "%s/file-%03u-with-a-longish-name", rel, i);
        hput(name, "x", 0644);
    }
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/subdir", rel);
    hmkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/link", hp(rel));
    g_assert_cmpint(symlink("file-000-with-a-longish-name", p), ==, 0);
    snprintf(p, sizeof(p), "%s/fifo", hp(rel));
    g_assert_cmpint(mkfifo(p, 0644), ==, 0);
}

static void test_readdir(void)
{
    make_listing_dir("rdd", 60);
    uint64_t d = node("rdd");
    uint64_t fh;
    g_assert_cmpint(opendir_as(0, d, &fh), ==, 0);
    GArray *a = readdir_all(d, fh, false, 64 * 1024);
    assert_listing_is_host(a, "rdd");
    g_assert_cmpuint(a->len, ==, 60 + 5);
    g_array_free(a, TRUE);
    /* Small requests (a few entries each) page through the same listing. */
    a = readdir_all(d, fh, false, 200);
    assert_listing_is_host(a, "rdd");
    /* Resuming at an entry's offset continues right after it, even after reading elsewhere. */
    GArray *rest = g_array_new(FALSE, TRUE, sizeof(struct dent));
    const struct dent *tenth = &g_array_index(a, struct dent, 9);
    g_assert_cmpuint(readdir_once(d, fh, false, tenth->off, 200, rest), >, 0);
    g_assert_cmpstr(g_array_index(rest, struct dent, 0).name, ==,
                    g_array_index(a, struct dent, 10).name);
    g_array_free(rest, TRUE);
    g_array_free(a, TRUE);
    /* Rewinding sees entries created on the host since. */
    hput("rdd/late", "x", 0644);
    a = readdir_all(d, fh, false, 4096);
    g_assert_nonnull(find_dent(a, "late"));
    assert_listing_is_host(a, "rdd");
    g_array_free(a, TRUE);
    g_assert_cmpint(releasedir(d, fh), ==, 0);
    /* An empty directory lists . and .. only. */
    hmkdir("rdd-empty", 0755);
    uint64_t e = node("rdd-empty");
    g_assert_cmpint(opendir_as(0, e, &fh), ==, 0);
    a = readdir_all(e, fh, false, 4096);
    g_assert_cmpuint(a->len, ==, 2);
    assert_listing_is_host(a, "rdd-empty");
    g_array_free(a, TRUE);
    g_assert_cmpint(releasedir(e, fh), ==, 0);
}

static void test_readdirplus(void)
{
    make_listing_dir("rdp", 30);
    uint64_t d = node("rdp");
    uint64_t fh;
    g_assert_cmpint(opendir_as(0, d, &fh), ==, 0);
    GArray *a = readdir_all(d, fh, true, 1000);
    assert_listing_is_host(a, "rdp");
    for (unsigned i = 0; i < a->len; i++) {
        const struct dent *e = &g_array_index(a, struct dent, i);
        if (strcmp(e->name, ".") == 0 || strcmp(e->name, "..") == 0) {
            g_assert_cmpuint(e->e.nodeid, ==, 0); /* no references to itself or its parent */
            continue;
        }
        char rel[PATH_MAX];
        snprintf(rel, sizeof(rel), "rdp/%s", e->name);
        g_assert_cmpuint(e->e.nodeid, !=, 0);
        assert_attr_is_host(&e->e.attr, rel);
        /* Each entry is a usable lookup reference, the one LOOKUP gives. */
        g_assert_cmpuint(lookup_ok(d, e->name, NULL), ==, e->e.nodeid);
        g_assert_cmpint(getattr(e->e.nodeid, NULL), ==, 0);
    }
    g_array_free(a, TRUE);
    g_assert_cmpint(releasedir(d, fh), ==, 0);
}

/*
 * READDIRPLUS in small requests gives one reference per entry sent, none for an entry that did
 * not fit: forgetting each once drops them all.
 */
static void test_readdirplus_refs(void)
{
    make_listing_dir("rpr", 20);
    uint64_t d = node("rpr");
    uint64_t fh;
    g_assert_cmpint(opendir_as(0, d, &fh), ==, 0);
    GArray *a = readdir_all(d, fh, true, 300); /* one or two entries a request */
    g_assert_cmpint(releasedir(d, fh), ==, 0);
    assert_listing_is_host(a, "rpr");
    unsigned with_ref = 0;
    for (unsigned i = 0; i < a->len; i++) {
        const struct dent *e = &g_array_index(a, struct dent, i);
        if (!e->e.nodeid)
            continue;
        with_ref++;
        forget(e->e.nodeid, 1);
        g_assert_cmpint(getattr(e->e.nodeid, NULL), ==, -EBADF);
    }
    g_assert_cmpuint(with_ref, ==, a->len - 2);
    g_array_free(a, TRUE);
}

static void test_readdirplus_no_search(void)
{
    /* Without search permission the entries are listed, but none can be looked up. */
    hmkdir("rdp-noexec", 0744);
    hput("rdp-noexec/f", "x", 0644);
    uint64_t d = node("rdp-noexec");
    uint64_t fh;
    g_assert_cmpint(opendir_as(USER, d, &fh), ==, 0);
    struct fuse_read_in ri = {.fh = fh, .size = 4096};
    uint8_t buf[4096];
    size_t n = 0;
    g_assert_cmpint(call_fe(fe_, USER, USER, FUSE_READDIRPLUS, d, IOV(S(ri)), buf, sizeof(buf), &n),
                    ==, 0);
    GArray *a = g_array_new(FALSE, TRUE, sizeof(struct dent));
    parse_dir(buf, n, true, a);
    assert_listing_is_host(a, "rdp-noexec");
    const struct dent *f = find_dent(a, "f");
    g_assert_nonnull(f);
    if (f)
        g_assert_cmpuint(f->e.nodeid, ==, 0);
    g_array_free(a, TRUE);
    g_assert_cmpint(releasedir(d, fh), ==, 0);
}

static void test_opendir_errors(void)
{
    hput("ode-file", "x", 0644);
    hmkdir("ode-priv", 0700);
    uint64_t fh;
    g_assert_cmpint(opendir_as(0, node("ode-file"), &fh), ==, -ENOTDIR);
    g_assert_cmpint(opendir_as(USER, node("ode-priv"), &fh), ==, -EACCES);
    g_assert_cmpint(opendir_as(0, 0xdead0000, &fh), ==, -EBADF);
    g_assert_cmpint(opendir_as(0, node("ode-priv"), &fh), ==, 0);
    g_assert_cmpint(releasedir(node("ode-priv"), fh), ==, 0);
}

static void test_readdir_errors(void)
{
    hput("rde3-file", "x", 0644);
    uint64_t f = node("rde3-file");
    struct fuse_read_in ri = {.fh = 0xbadf00d, .size = 4096};
    uint8_t buf[4096];
    g_assert_cmpint(CALL(FUSE_READDIR, FUSE_ROOT_ID, IOV(S(ri)), buf, sizeof(buf)), ==, -EBADF);
    g_assert_cmpint(CALL(FUSE_READDIRPLUS, FUSE_ROOT_ID, IOV(S(ri)), buf, sizeof(buf)), ==, -EBADF);
    /* A file handle is not a directory handle. */
    ri.fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(CALL(FUSE_READDIR, f, IOV(S(ri)), buf, sizeof(buf)), ==, -EBADF);
    g_assert_cmpint(release(f, ri.fh), ==, 0);
}

static void test_releasedir_fsyncdir(void)
{
    hmkdir("rld", 0755);
    uint64_t d = node("rld");
    uint64_t fh;
    g_assert_cmpint(opendir_as(0, d, &fh), ==, 0);
    struct fuse_fsync_in fs = {.fh = fh};
    g_assert_cmpint(CALL(FUSE_FSYNCDIR, d, IOV(S(fs)), NULL, 0), ==, 0);
    fs.fsync_flags = FUSE_FSYNC_FDATASYNC;
    g_assert_cmpint(CALL(FUSE_FSYNCDIR, d, IOV(S(fs)), NULL, 0), ==, 0);
    g_assert_cmpint(releasedir(d, fh), ==, 0);
    g_assert_cmpint(releasedir(d, fh), ==, -EBADF);
    g_assert_cmpint(CALL(FUSE_FSYNCDIR, d, IOV(S(fs)), NULL, 0), ==, -EBADF);
    struct fuse_read_in ri = {.fh = fh, .size = 4096};
    uint8_t buf[4096];
    g_assert_cmpint(CALL(FUSE_READDIR, d, IOV(S(ri)), buf, sizeof(buf)), ==, -EBADF);
    /* A file handle is not released by RELEASEDIR. */
    hput("rld/f", "x", 0644);
    uint64_t f = lookup_ok(d, "f", NULL);
    uint64_t ffh = open_ok(f, O_RDONLY);
    g_assert_cmpint(releasedir(f, ffh), ==, -EBADF);
    g_assert_cmpint(release(f, ffh), ==, 0);
    g_assert_true(hexists("rld/f"));
}

/* ---- ACCESS -------------------------------------------------------------------------------- */

static int access_as(uint32_t uid, uint64_t nodeid, uint32_t mask)
{
    struct fuse_access_in ai = {.mask = mask};
    return CALL_AS(uid, FUSE_ACCESS, nodeid, IOV(S(ai)), NULL, 0);
}

static void test_access(void)
{
    hput("ac-file", "x", 0644);
    hput("ac-secret", "x", 0600);
    hput("ac-exec", "x", 0755);
    hput("ac-mine", "x", 0600);
    g_assert_cmpint(chown(hp("ac-mine"), USER, USER), ==, 0);
    uint64_t f = node("ac-file"), secret = node("ac-secret"), ex = node("ac-exec");
    uint64_t mine = node("ac-mine");
    /* root: everything but executing a file nobody may execute. */
    g_assert_cmpint(access_as(0, f, F_OK), ==, 0);
    g_assert_cmpint(access_as(0, secret, R_OK | W_OK), ==, 0);
    g_assert_cmpint(access_as(0, f, X_OK), ==, -EACCES);
    g_assert_cmpint(access_as(0, ex, R_OK | W_OK | X_OK), ==, 0);
    /* The unprivileged caller: */
    g_assert_cmpint(access_as(USER, f, R_OK), ==, 0);
    g_assert_cmpint(access_as(USER, f, W_OK), ==, -EACCES);
    g_assert_cmpint(access_as(USER, f, X_OK), ==, -EACCES);
    g_assert_cmpint(access_as(USER, secret, R_OK), ==, -EACCES);
    g_assert_cmpint(access_as(USER, ex, R_OK | X_OK), ==, 0);
    g_assert_cmpint(access_as(USER, mine, R_OK | W_OK), ==, 0);
    g_assert_cmpint(access_as(USER, FUSE_ROOT_ID, R_OK | X_OK), ==, 0);
    g_assert_cmpint(access_as(USER, FUSE_ROOT_ID, W_OK), ==, -EACCES);
    /* A bad mask. */
    g_assert_cmpint(access_as(0, f, 0x40), ==, -EINVAL);
}

/* ---- FALLOCATE, LSEEK, COPY_FILE_RANGE ----------------------------------------------------- */

static int fallocate_(uint64_t nodeid, uint64_t fh, uint32_t mode, uint64_t off, uint64_t len)
{
    struct fuse_fallocate_in fi = {.fh = fh, .offset = off, .length = len, .mode = mode};
    return CALL(FUSE_FALLOCATE, nodeid, IOV(S(fi)), NULL, 0);
}

static void test_fallocate(void)
{
    hput("fa-file", "", 0644);
    uint64_t f = node("fa-file");
    uint64_t fh = open_ok(f, O_RDWR);
    struct stat st;
    g_assert_cmpint(fallocate_(f, fh, 0, 0, 1 << 20), ==, 0);
    hstat("fa-file", &st);
    g_assert_cmpint(st.st_size, ==, 1 << 20);
    g_assert_cmpint(st.st_blocks, >=, (1 << 20) / 512);
    /* KEEP_SIZE: blocks past the end, the size unchanged. */
    g_assert_cmpint(fallocate_(f, fh, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20), ==, 0);
    hstat("fa-file", &st);
    g_assert_cmpint(st.st_size, ==, 1 << 20);
    g_assert_cmpint(st.st_blocks, >=, (2 << 20) / 512);
    /* PUNCH_HOLE: data turns to zeros and the blocks are freed. */
    uint8_t *data = g_malloc(1 << 20);
    memset(data, 0xab, 1 << 20);
    g_assert_cmpint(write_at(f, fh, 0, data, 1 << 20, 0), ==, 0);
    struct stat before;
    hstat("fa-file", &before);
    g_assert_cmpint(fallocate_(f, fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 262144),
                    ==, 0);
    hstat("fa-file", &st);
    g_assert_cmpint(st.st_size, ==, 1 << 20);
    g_assert_cmpint(st.st_blocks, ==, before.st_blocks - 262144 / 512);
    size_t n;
    char *c = hget("fa-file", &n);
    g_assert_cmpuint(n, ==, 1 << 20);
    for (size_t i = 0; i < n; i++)
        g_assert_cmpint((uint8_t)c[i], ==, (i >= 65536 && i < 65536 + 262144) ? 0 : 0xab);
    g_free(c);
    g_free(data);
    g_assert_cmpint(release(f, fh), ==, 0);
}

static void test_fallocate_errors(void)
{
    hput("fae-file", "keep", 0644);
    uint64_t f = node("fae-file");
    g_assert_cmpint(fallocate_(f, 0xbadf00d, 0, 0, 4096), ==, -EBADF);
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(fallocate_(f, fh, 0, 0, 4096), ==, -EBADF);
    g_assert_cmpint(release(f, fh), ==, 0);
    fh = open_ok(f, O_RDWR);
    g_assert_cmpint(fallocate_(f, fh, 0, 0, 0), ==, -EINVAL);
    /* A hole punch must keep the size. */
    g_assert_cmpint(fallocate_(f, fh, FALLOC_FL_PUNCH_HOLE, 0, 4096), ==, -EOPNOTSUPP);
    g_assert_cmpint(release(f, fh), ==, 0);
    assert_hcontent("fae-file", "keep");
}

static int lseek_(uint64_t nodeid, uint64_t fh, uint64_t off, uint32_t whence, uint64_t *res)
{
    struct fuse_lseek_in li = {.fh = fh, .offset = off, .whence = whence};
    struct fuse_lseek_out lo = {0};
    int ret = CALL(FUSE_LSEEK, nodeid, IOV(S(li)), &lo, sizeof(lo));
    if (res)
        *res = lo.offset;
    return ret;
}

static void test_lseek(void)
{
    /* Data at [0, 4096) and [1 MiB, 1 MiB + 4096), a hole between, 2 MiB long. */
    int hfd = open(hp("ls-sparse"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    g_assert_cmpint(hfd, >=, 0);
    char page[4096];
    memset(page, 'd', sizeof(page));
    g_assert_cmpint(pwrite(hfd, page, sizeof(page), 0), ==, sizeof(page));
    g_assert_cmpint(pwrite(hfd, page, sizeof(page), 1 << 20), ==, sizeof(page));
    g_assert_cmpint(ftruncate(hfd, 2 << 20), ==, 0);
    g_assert_cmpint(fsync(hfd), ==, 0);
    uint64_t f = node("ls-sparse");
    uint64_t fh = open_ok(f, O_RDONLY);
    const struct {
        uint64_t off;
        int whence;
    } cases[] = {{0, SEEK_DATA},    {0, SEEK_HOLE},       {8192, SEEK_DATA},
                 {8192, SEEK_HOLE}, {1 << 20, SEEK_HOLE}, {(1 << 20) + 4096, SEEK_DATA},
                 {12345, SEEK_SET}, {100, SEEK_CUR},      {0, SEEK_END}};
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint64_t res = 0;
        int ret = lseek_(f, fh, cases[i].off, (uint32_t)cases[i].whence, &res);
        if (cases[i].whence == SEEK_CUR) { /* relative to wherever the last one left it */
            g_assert_cmpint(ret, ==, 0);
            continue;
        }
        off_t host = lseek(hfd, (off_t)cases[i].off, cases[i].whence);
        if (host < 0) {
            g_assert_cmpint(ret, ==, -errno);
        } else {
            g_assert_cmpint(ret, ==, 0);
            g_assert_cmpuint(res, ==, (uint64_t)host);
        }
    }
    uint64_t res;
    g_assert_cmpint(lseek_(f, fh, 0, SEEK_DATA, &res), ==, 0);
    g_assert_cmpuint(res, ==, 0);
    g_assert_cmpint(lseek_(f, fh, 0, SEEK_END, &res), ==, 0);
    g_assert_cmpuint(res, ==, 2 << 20);
    close(hfd);
    g_assert_cmpint(release(f, fh), ==, 0);
}

static void test_lseek_errors(void)
{
    hput("lse-file", "0123456789", 0644);
    uint64_t f = node("lse-file");
    uint64_t res;
    g_assert_cmpint(lseek_(f, 0xbadf00d, 0, SEEK_SET, &res), ==, -EBADF);
    uint64_t fh = open_ok(f, O_RDONLY);
    /* SEEK_DATA / SEEK_HOLE at or past the end. */
    g_assert_cmpint(lseek_(f, fh, 10, SEEK_DATA, &res), ==, -ENXIO);
    g_assert_cmpint(lseek_(f, fh, 100, SEEK_HOLE, &res), ==, -ENXIO);
    g_assert_cmpint(lseek_(f, fh, 0, 42, &res), ==, -EINVAL);
    g_assert_cmpint(release(f, fh), ==, 0);
}

static int copy_range(uint64_t in_node, uint64_t fh_in, uint64_t off_in, uint64_t out_node,
                      uint64_t fh_out, uint64_t off_out, uint64_t len, uint64_t flags,
                      uint32_t *copied)
{
    struct fuse_copy_file_range_in ci = {.fh_in = fh_in,
                                         .off_in = off_in,
                                         .nodeid_out = out_node,
                                         .fh_out = fh_out,
                                         .off_out = off_out,
                                         .len = len,
                                         .flags = flags};
    struct fuse_write_out wo = {0};
    int ret = CALL(FUSE_COPY_FILE_RANGE, in_node, IOV(S(ci)), &wo, sizeof(wo));
    if (copied)
        *copied = wo.size;
    return ret;
}

static void test_copy_file_range(void)
{
    size_t len = 100000;
    char *data = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + i % 26);
    g_assert_true(g_file_set_contents(hp("cf-src"), data, (gssize)len, NULL));
    hput("cf-dst", "0123456789", 0644);
    uint64_t src = node("cf-src"), dst = node("cf-dst");
    uint64_t fin = open_ok(src, O_RDONLY), fout = open_ok(dst, O_WRONLY);
    uint32_t copied = 0;
    g_assert_cmpint(copy_range(src, fin, 1000, dst, fout, 5, 50000, 0, &copied), ==, 0);
    g_assert_cmpuint(copied, ==, 50000);
    size_t n;
    char *c = hget("cf-dst", &n);
    g_assert_cmpuint(n, ==, 50005);
    g_assert_cmpmem(c, 5, "01234", 5);
    g_assert_cmpmem(c + 5, 50000, data + 1000, 50000);
    g_free(c);
    /* Past the source's end: nothing copied. */
    g_assert_cmpint(copy_range(src, fin, len + 10, dst, fout, 0, 100, 0, &copied), ==, 0);
    g_assert_cmpuint(copied, ==, 0);
    /* Short at the source's end. */
    g_assert_cmpint(copy_range(src, fin, len - 10, dst, fout, 0, 100, 0, &copied), ==, 0);
    g_assert_cmpuint(copied, ==, 10);
    c = hget("cf-dst", &n);
    g_assert_cmpmem(c, 10, data + len - 10, 10);
    g_free(c);
    g_assert_cmpint(release(src, fin), ==, 0);
    g_assert_cmpint(release(dst, fout), ==, 0);
    g_free(data);
}

static void test_copy_file_range_errors(void)
{
    hput("cfe-src", "source", 0644);
    hput("cfe-dst", "dest", 0644);
    uint64_t src = node("cfe-src"), dst = node("cfe-dst");
    uint64_t fin = open_ok(src, O_RDONLY), ro = open_ok(dst, O_RDONLY), wo = open_ok(src, O_WRONLY);
    uint64_t fout = open_ok(dst, O_WRONLY);
    g_assert_cmpint(copy_range(src, 0xbadf00d, 0, dst, fout, 0, 6, 0, NULL), ==, -EBADF);
    g_assert_cmpint(copy_range(src, fin, 0, dst, 0xbadf00d, 0, 6, 0, NULL), ==, -EBADF);
    /* Into a read-only handle, out of a write-only one. */
    g_assert_cmpint(copy_range(src, fin, 0, dst, ro, 0, 6, 0, NULL), ==, -EBADF);
    g_assert_cmpint(copy_range(src, wo, 0, dst, fout, 0, 6, 0, NULL), ==, -EBADF);
    /* The output handle belongs to another nodeid. */
    g_assert_cmpint(copy_range(src, fin, 0, src, fout, 0, 6, 0, NULL), ==, -EBADF);
    g_assert_cmpint(copy_range(src, fin, 0, dst, fout, 0, 6, 1, NULL), ==, -EINVAL);
    assert_hcontent("cfe-dst", "dest");
    assert_hcontent("cfe-src", "source");
    g_assert_cmpint(release(src, fin), ==, 0);
    g_assert_cmpint(release(dst, ro), ==, 0);
    g_assert_cmpint(release(src, wo), ==, 0);
    g_assert_cmpint(release(dst, fout), ==, 0);
}

/* ---- SYNCFS, INTERRUPT, DESTROY ------------------------------------------------------------ */

static void test_syncfs(void)
{
    hput("sy-file", "x", 0644);
    g_assert_cmpint(symlink("sy-file", hp("sy-link")), ==, 0);
    struct fuse_syncfs_in si = {0};
    g_assert_cmpint(CALL(FUSE_SYNCFS, FUSE_ROOT_ID, IOV(S(si)), NULL, 0), ==, 0);
    g_assert_cmpint(CALL(FUSE_SYNCFS, node("sy-file"), IOV(S(si)), NULL, 0), ==, 0);
    g_assert_cmpint(CALL(FUSE_SYNCFS, node("sy-link"), IOV(S(si)), NULL, 0), ==, 0);
    /* Any caller may sync. */
    g_assert_cmpint(CALL_AS(USER, FUSE_SYNCFS, FUSE_ROOT_ID, IOV(S(si)), NULL, 0), ==, 0);
    g_assert_cmpint(CALL(FUSE_SYNCFS, 0xdead0000, IOV(S(si)), NULL, 0), ==, -EBADF);
}

static void test_interrupt(void)
{
    struct fuse_interrupt_in ii = {.unique = 12345};
    call_noreply(FUSE_INTERRUPT, 0, IOV(S(ii)));
    g_assert_cmpint(getattr(FUSE_ROOT_ID, NULL), ==, 0); /* still serving */
    g_assert_true(test_daemon_alive(&daemon_));
}

static void test_destroy(void)
{
    hput("ds-file", "kept", 0644);
    uint64_t f = node("ds-file");
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(CALL(FUSE_DESTROY, 0, NULL, 0, NULL, 0), ==, 0);
    /* Until the next INIT every request fails. */
    g_assert_cmpint(getattr(FUSE_ROOT_ID, NULL), ==, -EIO);
    g_assert_cmpint(g_test_failed() ? 0 : fe_fuse_init(fe_), ==, 0);
    /* The new session knows nothing of the old one's nodeids and handles. */
    char buf[8];
    g_assert_cmpint(read_at(f, fh, 0, buf, sizeof(buf), NULL), ==, -EBADF);
    g_assert_cmpint(getattr(f, NULL), ==, -EBADF);
    assert_hcontent("ds-file", "kept");
    struct fuse_attr a;
    lookup_ok(FUSE_ROOT_ID, "ds-file", &a);
    assert_attr_is_host(&a, "ds-file");
}

/* ---- SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR -------------------------------------------- */

static int setxattr_as(uint32_t uid, uint64_t nodeid, const char *name, const void *value,
                       size_t size, uint32_t flags)
{
    /* Without FUSE_SETXATTR_EXT the struct is the 8-byte compat one. */
    struct fuse_setxattr_in si = {.size = (uint32_t)size, .flags = flags};
    return CALL_AS(uid, FUSE_SETXATTR, nodeid,
                   IOV({&si, FUSE_COMPAT_SETXATTR_IN_SIZE}, NAME(name), {(void *)value, size}),
                   NULL, 0);
}

/* GETXATTR with a size: the value into buf (*len its length); size 0: *len the value's size. */
static int getxattr_as(uint32_t uid, uint64_t nodeid, const char *name, void *buf, size_t size,
                       size_t *len)
{
    struct fuse_getxattr_in gi = {.size = (uint32_t)size};
    struct fuse_getxattr_out go = {0};
    size_t n = 0;
    int ret =
        size ? call_fe(fe_, uid, uid, FUSE_GETXATTR, nodeid, IOV(S(gi), NAME(name)), buf, size, &n)
             : call_fe(fe_, uid, uid, FUSE_GETXATTR, nodeid, IOV(S(gi), NAME(name)), &go,
                       sizeof(go), &n);
    if (len)
        *len = size ? n : go.size;
    return ret;
}

static int listxattr_as(uint32_t uid, uint64_t nodeid, void *buf, size_t size, size_t *len)
{
    struct fuse_getxattr_in gi = {.size = (uint32_t)size};
    struct fuse_getxattr_out go = {0};
    size_t n = 0;
    int ret = size
                  ? call_fe(fe_, uid, uid, FUSE_LISTXATTR, nodeid, IOV(S(gi)), buf, size, &n)
                  : call_fe(fe_, uid, uid, FUSE_LISTXATTR, nodeid, IOV(S(gi)), &go, sizeof(go), &n);
    if (len)
        *len = size ? n : go.size;
    return ret;
}

static int removexattr_as(uint32_t uid, uint64_t nodeid, const char *name)
{
    return CALL_AS(uid, FUSE_REMOVEXATTR, nodeid, IOV(NAME(name)), NULL, 0);
}

/* The host's value of name on rel, or -errno. */
static ssize_t hgetxattr(const char *rel, const char *name, void *buf, size_t size)
{
    ssize_t n = lgetxattr(hp(rel), name, buf, size);
    return n < 0 ? -errno : n;
}

static void test_setxattr(void)
{
    hput("xa-file", "x", 0644);
    hmkdir("xa-dir", 0755);
    uint64_t f = node("xa-file"), d = node("xa-dir");
    const char value[] = "bin\0ary\xff";
    g_assert_cmpint(setxattr_as(0, f, "user.test", value, sizeof(value), 0), ==, 0);
    char buf[256];
    g_assert_cmpint(hgetxattr("xa-file", "user.test", buf, sizeof(buf)), ==, sizeof(value));
    g_assert_cmpmem(buf, sizeof(value), value, sizeof(value));
    /* An empty value, and a directory. */
    g_assert_cmpint(setxattr_as(0, d, "user.empty", "", 0, 0), ==, 0);
    g_assert_cmpint(hgetxattr("xa-dir", "user.empty", buf, sizeof(buf)), ==, 0);
    /* Replacing. */
    g_assert_cmpint(setxattr_as(0, f, "user.test", "new", 3, XATTR_REPLACE), ==, 0);
    g_assert_cmpint(hgetxattr("xa-file", "user.test", buf, sizeof(buf)), ==, 3);
    g_assert_cmpmem(buf, 3, "new", 3);
    /* setxattr changes ctime, not mtime. */
    struct stat before, st;
    hstat("xa-file", &before);
    g_usleep(10000);
    g_assert_cmpint(setxattr_as(0, f, "user.t2", "v", 1, XATTR_CREATE), ==, 0);
    hstat("xa-file", &st);
    g_assert_true(ts_after(&st.st_ctim, &before.st_ctim));
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, before.st_mtim.tv_nsec);
}

static void test_setxattr_errors(void)
{
    hput("xae-file", "x", 0644);
    g_assert_cmpint(lsetxattr(hp("xae-file"), "user.have", "1", 1, 0), ==, 0);
    g_assert_cmpint(symlink("xae-file", hp("xae-link")), ==, 0);
    uint64_t f = node("xae-file");
    g_assert_cmpint(setxattr_as(0, f, "user.have", "2", 1, XATTR_CREATE), ==, -EEXIST);
    g_assert_cmpint(setxattr_as(0, f, "user.none", "2", 1, XATTR_REPLACE), ==, -ENODATA);
    char buf[8];
    g_assert_cmpint(hgetxattr("xae-file", "user.have", buf, sizeof(buf)), ==, 1);
    g_assert_cmpint(buf[0], ==, '1');
    g_assert_cmpint(hgetxattr("xae-file", "user.none", buf, sizeof(buf)), ==, -ENODATA);
    /* Namespaces: none given, or one that does not exist. */
    g_assert_cmpint(setxattr_as(0, f, "plain", "v", 1, 0), ==, -EOPNOTSUPP);
    g_assert_cmpint(setxattr_as(0, f, "bogus.ns", "v", 1, 0), ==, -EOPNOTSUPP);
    /* Names longer than XATTR_NAME_MAX, or empty. */
    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    memcpy(longname, "user.", 5);
    longname[sizeof(longname) - 1] = '\0';
    g_assert_cmpint(setxattr_as(0, f, longname, "v", 1, 0), ==, -ERANGE);
    g_assert_cmpint(setxattr_as(0, f, "", "v", 1, 0), ==, -ERANGE);
    /* A value larger than XATTR_SIZE_MAX. */
    size_t big = 65536 + 1;
    char *v = g_malloc0(big);
    g_assert_cmpint(setxattr_as(0, f, "user.big", v, big, 0), ==, -E2BIG);
    g_free(v);
    /* user.* attributes exist on regular files and directories only. */
    g_assert_cmpint(setxattr_as(0, node("xae-link"), "user.x", "v", 1, 0), ==, -EPERM);
    /* The unprivileged caller on a root-owned 0644 file needs write permission. */
    g_assert_cmpint(setxattr_as(USER, f, "user.u", "v", 1, 0), ==, -EACCES);
    g_assert_cmpint(hgetxattr("xae-file", "user.u", buf, sizeof(buf)), ==, -ENODATA);
    g_assert_cmpint(hgetxattr("xae-link", "user.x", buf, sizeof(buf)), ==, -ENODATA);
}

static void test_getxattr(void)
{
    hput("xg-file", "x", 0644);
    g_assert_cmpint(lsetxattr(hp("xg-file"), "user.val", "0123456789", 10, 0), ==, 0);
    uint64_t f = node("xg-file");
    char buf[64];
    size_t n = 0;
    g_assert_cmpint(getxattr_as(0, f, "user.val", NULL, 0, &n), ==, 0); /* the size only */
    g_assert_cmpuint(n, ==, 10);
    g_assert_cmpint(getxattr_as(0, f, "user.val", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "0123456789", 10);
    g_assert_cmpint(getxattr_as(0, f, "user.val", buf, 10, &n), ==, 0); /* exactly enough */
    g_assert_cmpmem(buf, n, "0123456789", 10);
    g_assert_cmpint(getxattr_as(0, f, "user.val", buf, 9, &n), ==, -ERANGE);
    g_assert_cmpint(getxattr_as(0, f, "user.missing", buf, sizeof(buf), &n), ==, -ENODATA);
    g_assert_cmpint(getxattr_as(0, f, "user.missing", NULL, 0, &n), ==, -ENODATA);
    /* The unprivileged caller reads with read permission, not without. */
    g_assert_cmpint(getxattr_as(USER, f, "user.val", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "0123456789", 10);
    hput("xg-secret", "x", 0600);
    g_assert_cmpint(lsetxattr(hp("xg-secret"), "user.val", "s", 1, 0), ==, 0);
    g_assert_cmpint(getxattr_as(USER, node("xg-secret"), "user.val", buf, sizeof(buf), &n), ==,
                    -EACCES);
    /* On a symlink there are no user.* attributes. */
    g_assert_cmpint(symlink("xg-file", hp("xg-link")), ==, 0);
    g_assert_cmpint(getxattr_as(0, node("xg-link"), "user.val", buf, sizeof(buf), &n), ==,
                    -ENODATA);
}

static void test_listxattr(void)
{
    hput("xl-file", "x", 0644);
    const char *names[] = {"user.one", "user.two", "user.three-is-longer"};
    for (unsigned i = 0; i < G_N_ELEMENTS(names); i++)
        g_assert_cmpint(lsetxattr(hp("xl-file"), names[i], "v", 1, 0), ==, 0);
    uint64_t f = node("xl-file");
    char host[1024], buf[1024];
    ssize_t hn = llistxattr(hp("xl-file"), host, sizeof(host));
    g_assert_cmpint(hn, >, 0);
    size_t n = 0;
    g_assert_cmpint(listxattr_as(0, f, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, (size_t)hn);
    g_assert_cmpint(listxattr_as(0, f, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, host, (size_t)hn);
    g_assert_cmpint(listxattr_as(0, f, buf, (size_t)hn, &n), ==, 0);
    g_assert_cmpuint(n, ==, (size_t)hn);
    g_assert_cmpint(listxattr_as(0, f, buf, (size_t)hn - 1, &n), ==, -ERANGE);
    /* The unprivileged caller may list a file it cannot read (no permission needed). */
    g_assert_cmpint(chmod(hp("xl-file"), 0600), ==, 0);
    g_assert_cmpint(listxattr_as(USER, f, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, host, (size_t)hn);
    /* No attributes: an empty list. */
    hput("xl-bare", "x", 0644);
    hn = llistxattr(hp("xl-bare"), host, sizeof(host));
    g_assert_cmpint(listxattr_as(0, node("xl-bare"), NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, (size_t)hn);
    /* A symlink's own list. */
    g_assert_cmpint(symlink("xl-file", hp("xl-link")), ==, 0);
    hn = llistxattr(hp("xl-link"), host, sizeof(host));
    g_assert_cmpint(listxattr_as(0, node("xl-link"), NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, (size_t)hn);
}

static void test_removexattr(void)
{
    hput("xr-file", "x", 0644);
    g_assert_cmpint(lsetxattr(hp("xr-file"), "user.gone", "1", 1, 0), ==, 0);
    g_assert_cmpint(lsetxattr(hp("xr-file"), "user.stay", "1", 1, 0), ==, 0);
    uint64_t f = node("xr-file");
    char buf[8];
    g_assert_cmpint(removexattr_as(USER, f, "user.gone"), ==, -EACCES);
    g_assert_cmpint(hgetxattr("xr-file", "user.gone", buf, sizeof(buf)), ==, 1);
    g_assert_cmpint(removexattr_as(0, f, "user.gone"), ==, 0);
    g_assert_cmpint(hgetxattr("xr-file", "user.gone", buf, sizeof(buf)), ==, -ENODATA);
    g_assert_cmpint(hgetxattr("xr-file", "user.stay", buf, sizeof(buf)), ==, 1);
    g_assert_cmpint(removexattr_as(0, f, "user.gone"), ==, -ENODATA);
    g_assert_cmpint(removexattr_as(0, f, "user.never"), ==, -ENODATA);
}

static void test_xattr_owner_write_only(void)
{
    /* The owner of a write-only file: set and remove need no read permission, get does. */
    hput("xo-file", "x", 0200);
    g_assert_cmpint(chown(hp("xo-file"), USER, USER), ==, 0);
    uint64_t f = node("xo-file");
    g_assert_cmpint(setxattr_as(USER, f, "user.w", "wo", 2, 0), ==, 0);
    char buf[8];
    g_assert_cmpint(hgetxattr("xo-file", "user.w", buf, sizeof(buf)), ==, 2);
    g_assert_cmpmem(buf, 2, "wo", 2);
    size_t n;
    g_assert_cmpint(getxattr_as(USER, f, "user.w", buf, sizeof(buf), &n), ==, -EACCES);
    g_assert_cmpint(listxattr_as(USER, f, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, sizeof("user.w"));
    g_assert_cmpint(removexattr_as(USER, f, "user.w"), ==, 0);
    g_assert_cmpint(hgetxattr("xo-file", "user.w", buf, sizeof(buf)), ==, -ENODATA);
}

/* ---- other daemons: --readonly, no --xattr ------------------------------------------------- */

/* Runs body against a fresh daemon started with args; fe_ and hp() point at it meanwhile. */
static void with_daemon(const char *const *args, void (*body)(void))
{
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, args), ==, 0);
    struct fe *saved_fe = fe_;
    struct test_daemon saved = daemon_;
    daemon_ = d;
    fe_ = connect_initialized(&d);
    body();
    fe_close(fe_);
    fe_ = saved_fe;
    d = daemon_;
    daemon_ = saved;
    g_assert_true(test_daemon_alive(&d));
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

static const char *const ro_args[] = {"--readonly", "--xattr", NULL};

/* The content every read-only test starts from. */
static void ro_populate(void)
{
    hput("file", "content", 0644);
    hmkdir("dir", 0755);
    hput("dir/inner", "inner", 0644);
    g_assert_cmpint(symlink("file", hp("link")), ==, 0);
    g_assert_cmpint(lsetxattr(hp("file"), "user.x", "1", 1, 0), ==, 0);
}

/* Nothing of ro_populate's content changed. */
static void ro_assert_unchanged(void)
{
    struct stat st;
    assert_hcontent("file", "content");
    hstat("file", &st);
    g_assert_cmpuint(st.st_mode, ==, S_IFREG | 0644);
    g_assert_cmpuint(st.st_nlink, ==, 1);
    g_assert_cmpuint(st.st_uid, ==, 0);
    assert_hcontent("dir/inner", "inner");
    hstat("dir", &st);
    g_assert_cmpuint(st.st_nlink, ==, 2);
    char buf[8];
    g_assert_cmpint(readlink(hp("link"), buf, sizeof(buf)), ==, 4);
    g_assert_cmpint(hgetxattr("file", "user.x", buf, sizeof(buf)), ==, 1);
    DIR *dir = opendir(hp(""));
    unsigned n = 0;
    while (readdir(dir))
        n++;
    closedir(dir);
    g_assert_cmpuint(n, ==, 5); /* . .. file dir link */
}

static void ro_namespace_body(void)
{
    ro_populate();
    uint64_t file = node("file"), dir = node("dir");
    struct fuse_entry_out e;
    uint64_t fh;
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "new", O_RDWR | O_CREAT, 0644, NULL, &fh), ==,
                    -EROFS);
    g_assert_cmpint(create_as(0, FUSE_ROOT_ID, "file", O_RDWR | O_CREAT, 0644, NULL, &fh), ==,
                    -EROFS);
    g_assert_cmpint(mkdir_as(0, FUSE_ROOT_ID, "new", 0755, NULL), ==, -EROFS);
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0644};
    g_assert_cmpint(CALL(FUSE_MKNOD, FUSE_ROOT_ID, IOV(S(mi), NAME("new")), &e, sizeof(e)), ==,
                    -EROFS);
    g_assert_cmpint(CALL(FUSE_SYMLINK, FUSE_ROOT_ID, IOV(NAME("new"), NAME("t")), &e, sizeof(e)),
                    ==, -EROFS);
    g_assert_cmpint(link_as(0, file, dir, "new", NULL), ==, -EROFS);
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "file"), ==, -EROFS);
    g_assert_cmpint(unlink_as(0, FUSE_ROOT_ID, "link"), ==, -EROFS);
    g_assert_cmpint(rmdir_as(0, FUSE_ROOT_ID, "dir"), ==, -EROFS);
    g_assert_cmpint(rename_as(0, FUSE_ROOT_ID, "file", dir, "moved"), ==, -EROFS);
    g_assert_cmpint(rename2(FUSE_ROOT_ID, "file", FUSE_ROOT_ID, "link", RENAME_EXCHANGE), ==,
                    -EROFS);
    ro_assert_unchanged();
}

static void test_readonly_namespace(void)
{
    with_daemon(ro_args, ro_namespace_body);
}

static void ro_setattr_open_body(void)
{
    ro_populate();
    uint64_t file = node("file");
    struct fuse_setattr_in si = {.valid = FATTR_MODE, .mode = S_IFREG | 0600};
    g_assert_cmpint(setattr_as(0, file, &si, NULL), ==, -EROFS);
    si = (struct fuse_setattr_in){.valid = FATTR_SIZE, .size = 0};
    g_assert_cmpint(setattr_as(0, file, &si, NULL), ==, -EROFS);
    si = (struct fuse_setattr_in){.valid = FATTR_UID | FATTR_GID, .uid = 5, .gid = 5};
    g_assert_cmpint(setattr_as(0, file, &si, NULL), ==, -EROFS);
    si = (struct fuse_setattr_in){.valid = FATTR_MTIME, .mtime = 5};
    g_assert_cmpint(setattr_as(0, file, &si, NULL), ==, -EROFS);
    uint64_t fh;
    g_assert_cmpint(open_as(0, file, O_WRONLY, &fh), ==, -EROFS);
    g_assert_cmpint(open_as(0, file, O_RDWR, &fh), ==, -EROFS);
    g_assert_cmpint(open_as(0, file, O_RDONLY | O_TRUNC, &fh), ==, -EROFS);
    g_assert_cmpint(access_as(0, file, W_OK), ==, -EROFS);
    g_assert_cmpint(access_as(0, file, R_OK), ==, 0);
    ro_assert_unchanged();
}

static void test_readonly_setattr_open(void)
{
    with_daemon(ro_args, ro_setattr_open_body);
}

/*
 * Data changes through a read-only handle: Linux checks the handle's mode first and answers
 * EBADF; EROFS is as good a refusal. What matters is that nothing changes.
 */
static void assert_refused(int ret)
{
    if (ret != -EROFS)
        g_assert_cmpint(ret, ==, -EBADF);
}

static void ro_handles_body(void)
{
    ro_populate();
    uint64_t file = node("file");
    uint64_t fh = open_ok(file, O_RDONLY);
    assert_refused(write_at(file, fh, 0, "x", 1, 0));
    assert_refused(fallocate_(file, fh, 0, 0, 1 << 20));
    assert_refused(copy_range(file, fh, 0, file, fh, 100, 7, 0, NULL));
    /* Reading works. */
    char buf[16];
    size_t n;
    g_assert_cmpint(read_at(file, fh, 0, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "content", 7);
    struct fuse_fsync_in fs = {.fh = fh};
    g_assert_cmpint(CALL(FUSE_FSYNC, file, IOV(S(fs)), NULL, 0), ==, 0);
    struct fuse_flush_in fl = {.fh = fh};
    g_assert_cmpint(CALL(FUSE_FLUSH, file, IOV(S(fl)), NULL, 0), ==, 0);
    g_assert_cmpint(release(file, fh), ==, 0);
    ro_assert_unchanged();
}

static void test_readonly_handles(void)
{
    with_daemon(ro_args, ro_handles_body);
}

static void ro_xattr_reads_body(void)
{
    ro_populate();
    uint64_t file = node("file");
    g_assert_cmpint(setxattr_as(0, file, "user.y", "2", 1, 0), ==, -EROFS);
    g_assert_cmpint(setxattr_as(0, file, "user.x", "2", 1, XATTR_REPLACE), ==, -EROFS);
    g_assert_cmpint(removexattr_as(0, file, "user.x"), ==, -EROFS);
    char buf[64];
    size_t n;
    g_assert_cmpint(getxattr_as(0, file, "user.x", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "1", 1);
    g_assert_cmpint(listxattr_as(0, file, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "user.x", sizeof("user.x"));
    /* The read-only operations all work. */
    struct fuse_attr a;
    lookup_ok(FUSE_ROOT_ID, "file", &a);
    assert_attr_is_host(&a, "file");
    g_assert_cmpint(getattr(node("dir"), &a), ==, 0);
    assert_attr_is_host(&a, "dir");
    g_assert_cmpint(CALL(FUSE_READLINK, node("link"), NULL, 0, buf, sizeof(buf)), ==, 0);
    struct fuse_statfs_out so;
    g_assert_cmpint(CALL(FUSE_STATFS, FUSE_ROOT_ID, NULL, 0, &so, sizeof(so)), ==, 0);
    uint64_t fh;
    g_assert_cmpint(opendir_as(0, FUSE_ROOT_ID, &fh), ==, 0);
    GArray *list = readdir_all(FUSE_ROOT_ID, fh, true, 4096);
    assert_listing_is_host(list, "");
    g_array_free(list, TRUE);
    g_assert_cmpint(releasedir(FUSE_ROOT_ID, fh), ==, 0);
    struct fuse_syncfs_in sy = {0};
    g_assert_cmpint(CALL(FUSE_SYNCFS, FUSE_ROOT_ID, IOV(S(sy)), NULL, 0), ==, 0);
    ro_assert_unchanged();
}

static void test_readonly_xattr_reads(void)
{
    with_daemon(ro_args, ro_xattr_reads_body);
}

static void no_xattr_body(void)
{
    hput("file", "x", 0644);
    g_assert_cmpint(lsetxattr(hp("file"), "user.x", "1", 1, 0), ==, 0);
    uint64_t f = node("file");
    char buf[64];
    size_t n;
    g_assert_cmpint(setxattr_as(0, f, "user.y", "2", 1, 0), ==, -ENOSYS);
    g_assert_cmpint(getxattr_as(0, f, "user.x", buf, sizeof(buf), &n), ==, -ENOSYS);
    g_assert_cmpint(getxattr_as(0, f, "user.x", NULL, 0, &n), ==, -ENOSYS);
    g_assert_cmpint(listxattr_as(0, f, buf, sizeof(buf), &n), ==, -ENOSYS);
    g_assert_cmpint(listxattr_as(0, f, NULL, 0, &n), ==, -ENOSYS);
    g_assert_cmpint(removexattr_as(0, f, "user.x"), ==, -ENOSYS);
    g_assert_cmpint(hgetxattr("file", "user.x", buf, sizeof(buf)), ==, 1);
    g_assert_cmpint(hgetxattr("file", "user.y", buf, sizeof(buf)), ==, -ENODATA);
    /* Everything else still works. */
    uint64_t fh = open_ok(f, O_RDWR);
    g_assert_cmpint(write_at(f, fh, 0, "y", 1, 0), ==, 0);
    g_assert_cmpint(release(f, fh), ==, 0);
    assert_hcontent("file", "y");
}

static void test_no_xattr(void)
{
    with_daemon(NULL, no_xattr_body);
}

/* ---- resources a guest can make the daemon hold ---------------------------------------------- */

/* The serving process's fd count once it stops changing (RCU frees close fds a bit later). */
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

static long daemon_rss_kib(void)
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

#define MANY_OPENDIRS 15000

/*
 * Directory handles that are never read cost no dirent buffer: 15,000 OPENDIRs grow the
 * daemon's RSS by a few MiB (before: a 16 KiB buffer each, ~+170 MiB), and RELEASEDIR gives
 * every fd back.
 */
static void many_opendirs_body(void)
{
    hmkdir("od", 0755);
    uint64_t d = node("od");
    uint64_t *fhs = g_new(uint64_t, MANY_OPENDIRS);
    int fds0 = settled_fds();
    long rss0 = daemon_rss_kib();
    g_assert_cmpint(rss0, >, 0);
    int failed = 0;
    for (int i = 0; i < MANY_OPENDIRS; i++) {
        struct fuse_open_in oi = {.flags = O_RDONLY | O_DIRECTORY};
        struct fuse_open_out out = {0};
        failed += CALL(FUSE_OPENDIR, d, IOV(S(oi)), &out, sizeof(out)) != 0;
        fhs[i] = out.fh;
    }
    g_assert_cmpint(failed, ==, 0);
    long grown = daemon_rss_kib() - rss0;
    g_test_message("RSS after %d OPENDIRs: +%ld KiB", MANY_OPENDIRS, grown);
    g_assert_cmpint(grown, <, 40 * 1024);
    /* A handle that is read still works, and drops its buffer once drained. */
    struct fuse_read_in ri = {.fh = fhs[0], .size = 4096};
    g_assert_cmpint(CALL(FUSE_READDIR, d, IOV(S(ri)), NULL, ri.size), ==, 0);
    for (int i = 0; i < MANY_OPENDIRS; i++) {
        struct fuse_release_in rel = {.fh = fhs[i]};
        failed += CALL(FUSE_RELEASEDIR, d, IOV(S(rel)), NULL, 0) != 0;
    }
    g_assert_cmpint(failed, ==, 0);
    g_assert_cmpint(settled_fds(), ==, fds0);
    g_free(fhs);
}

static void test_many_opendirs(void)
{
    with_daemon(NULL, many_opendirs_body);
}

/* A request whose reply buffer has room for the header and 8 bytes only. */
static int call_short(uint32_t op, uint64_t nodeid, const struct iovec *in, unsigned nin)
{
    return call_fe(fe_, 0, 0, op, nodeid, in, nin, NULL, 8, NULL);
}

/*
 * A reply that does not fit the guest's buffer (ERANGE) announces no nodeid and no fh, so the
 * guest can never FORGET or RELEASE them: the daemon gives back what the op took. Each leaked
 * inode or handle would be one more fd in the daemon (before: +1 per LOOKUP, OPEN, OPENDIR,
 * MKDIR, MKNOD, SYMLINK and LINK, +2 per CREATE and TMPFILE).
 */
static void test_reply_too_small(void)
{
    enum { N = 10 };
    char name[32];
    hmkdir("rs", 0755);
    uint64_t d = node("rs");
    hput("rs/file", "x", 0644);
    uint64_t f = lookup_ok(d, "file", NULL);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "rs/l%d", i);
        hput(name, "x", 0644);
    }
    int fds0 = settled_fds();

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "l%d", i);
        g_assert_cmpint(call_short(FUSE_LOOKUP, d, IOV(NAME(name))), ==, -ERANGE);
        struct fuse_open_in oi = {.flags = O_RDONLY};
        g_assert_cmpint(call_short(FUSE_OPEN, f, IOV(S(oi))), ==, -ERANGE);
        struct fuse_open_in odi = {.flags = O_RDONLY | O_DIRECTORY};
        g_assert_cmpint(call_short(FUSE_OPENDIR, d, IOV(S(odi))), ==, -ERANGE);
        snprintf(name, sizeof(name), "c%d", i);
        struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0644};
        g_assert_cmpint(call_short(FUSE_CREATE, d, IOV(S(ci), NAME(name))), ==, -ERANGE);
        snprintf(name, sizeof(name), "d%d", i);
        struct fuse_mkdir_in mi = {.mode = 0755};
        g_assert_cmpint(call_short(FUSE_MKDIR, d, IOV(S(mi), NAME(name))), ==, -ERANGE);
        snprintf(name, sizeof(name), "n%d", i);
        struct fuse_mknod_in ni = {.mode = S_IFIFO | 0644};
        g_assert_cmpint(call_short(FUSE_MKNOD, d, IOV(S(ni), NAME(name))), ==, -ERANGE);
        snprintf(name, sizeof(name), "s%d", i);
        g_assert_cmpint(call_short(FUSE_SYMLINK, d, IOV(NAME(name), NAME("t"))), ==, -ERANGE);
        snprintf(name, sizeof(name), "h%d", i);
        struct fuse_link_in li = {.oldnodeid = f};
        g_assert_cmpint(call_short(FUSE_LINK, d, IOV(S(li), NAME(name))), ==, -ERANGE);
        g_assert_cmpint(call_short(FUSE_TMPFILE, d, IOV(S(ci))), ==, -ERANGE);
    }
    /* The operations themselves happened; only their references are gone. */
    g_assert_true(hexists("rs/c0") && hexists("rs/d0") && hexists("rs/n0") && hexists("rs/s0"));
    g_assert_true(hexists("rs/h0"));
    g_assert_cmpint(settled_fds(), ==, fds0);
    /* The inode f still holds the guest's own reference (the LINK's was given back). */
    struct fuse_attr a;
    g_assert_cmpint(getattr(f, &a), ==, 0);
    g_assert_cmpuint(a.nlink, ==, N + 1);
    uint64_t fh = open_ok(f, O_RDONLY);
    g_assert_cmpint(release(f, fh), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (geteuid() != 0) { /* chown, mknod and acting as another uid need root */
        printf("1..0 # SKIP needs root\n");
        return 0;
    }
    /* A failing check fails its subtest; the others still run. */
    g_test_set_nonfatal_assertions();
    g_test_add_func("/ops/lookup/ok", test_lookup);
    g_test_add_func("/ops/lookup/errors", test_lookup_errors);
    g_test_add_func("/ops/forget/ok", test_forget);
    g_test_add_func("/ops/forget/entry-references", test_forget_entry_refs);
    g_test_add_func("/ops/batch-forget/ok", test_batch_forget);
    g_test_add_func("/ops/getattr/ok", test_getattr);
    g_test_add_func("/ops/getattr/unknown-node", test_getattr_unknown_node);
    g_test_add_func("/ops/setattr/mode-owner", test_setattr_mode_owner);
    g_test_add_func("/ops/setattr/size", test_setattr_size);
    g_test_add_func("/ops/setattr/times", test_setattr_times);
    g_test_add_func("/ops/group-access", test_group_access);
    g_test_add_func("/ops/setattr/errors", test_setattr_errors);
    g_test_add_func("/ops/setattr/kill-suidgid", test_setattr_kill_suidgid);
    g_test_add_func("/ops/setattr/symlink", test_setattr_symlink);
    g_test_add_func("/ops/readlink/ok-einval", test_readlink);
    g_test_add_func("/ops/symlink/ok", test_symlink);
    g_test_add_func("/ops/symlink/errors", test_symlink_errors);
    g_test_add_func("/ops/mknod/ok", test_mknod);
    g_test_add_func("/ops/mknod/errors", test_mknod_errors);
    g_test_add_func("/ops/mkdir/ok", test_mkdir);
    g_test_add_func("/ops/mkdir/errors", test_mkdir_errors);
    g_test_add_func("/ops/unlink/ok", test_unlink);
    g_test_add_func("/ops/unlink/errors", test_unlink_errors);
    g_test_add_func("/ops/rmdir/ok", test_rmdir);
    g_test_add_func("/ops/rmdir/errors", test_rmdir_errors);
    g_test_add_func("/ops/rename/ok", test_rename);
    g_test_add_func("/ops/rename/errors", test_rename_errors);
    g_test_add_func("/ops/rename2/noreplace", test_rename2_noreplace);
    g_test_add_func("/ops/rename2/exchange", test_rename2_exchange);
    g_test_add_func("/ops/rename2/whiteout", test_rename2_whiteout);
    g_test_add_func("/ops/rename2/bad-flags", test_rename2_bad_flags);
    g_test_add_func("/ops/link/ok", test_link);
    g_test_add_func("/ops/link/errors", test_link_errors);
    g_test_add_func("/ops/open/ok", test_open);
    g_test_add_func("/ops/open/errors", test_open_errors);
    g_test_add_func("/ops/create/ok", test_create);
    g_test_add_func("/ops/create/errors", test_create_errors);
    g_test_add_func("/ops/read/ok", test_read);
    g_test_add_func("/ops/read/errors", test_read_errors);
    g_test_add_func("/ops/write/ok", test_write);
    g_test_add_func("/ops/write/errors", test_write_errors);
    g_test_add_func("/ops/write/kill-suidgid", test_write_kill_suidgid);
    g_test_add_func("/ops/write/unprivileged-kills-suid", test_write_unprivileged_kills_suid);
    g_test_add_func("/ops/release/ok-ebadf", test_release);
    g_test_add_func("/ops/flush-fsync/ok-ebadf", test_flush_fsync);
    g_test_add_func("/ops/statfs/ok", test_statfs);
    g_test_add_func("/ops/opendir/errors", test_opendir_errors);
    g_test_add_func("/ops/readdir/ok", test_readdir);
    g_test_add_func("/ops/readdir/errors", test_readdir_errors);
    g_test_add_func("/ops/readdirplus/ok", test_readdirplus);
    g_test_add_func("/ops/readdirplus/references", test_readdirplus_refs);
    g_test_add_func("/ops/readdirplus/no-search-permission", test_readdirplus_no_search);
    g_test_add_func("/ops/releasedir-fsyncdir/ok-ebadf", test_releasedir_fsyncdir);
    g_test_add_func("/ops/access/ok-eacces-einval", test_access);
    g_test_add_func("/ops/fallocate/ok", test_fallocate);
    g_test_add_func("/ops/fallocate/errors", test_fallocate_errors);
    g_test_add_func("/ops/lseek/ok", test_lseek);
    g_test_add_func("/ops/lseek/errors", test_lseek_errors);
    g_test_add_func("/ops/copy-file-range/ok", test_copy_file_range);
    g_test_add_func("/ops/copy-file-range/errors", test_copy_file_range_errors);
    g_test_add_func("/ops/syncfs/ok", test_syncfs);
    g_test_add_func("/ops/interrupt/no-reply", test_interrupt);
    g_test_add_func("/ops/setxattr/ok", test_setxattr);
    g_test_add_func("/ops/setxattr/errors", test_setxattr_errors);
    g_test_add_func("/ops/getxattr/ok-erange-enodata", test_getxattr);
    g_test_add_func("/ops/listxattr/ok-erange", test_listxattr);
    g_test_add_func("/ops/removexattr/ok-enodata", test_removexattr);
    g_test_add_func("/ops/xattr/owner-write-only", test_xattr_owner_write_only);
    g_test_add_func("/ops/destroy/reset", test_destroy);
    g_test_add_func("/ops/opendir/many-unread", test_many_opendirs);
    g_test_add_func("/ops/reply-too-small/no-reference-left", test_reply_too_small);
    g_test_add_func("/readonly/namespace", test_readonly_namespace);
    g_test_add_func("/readonly/setattr-open-access", test_readonly_setattr_open);
    g_test_add_func("/readonly/handles", test_readonly_handles);
    g_test_add_func("/readonly/xattr-and-reads", test_readonly_xattr_reads);
    g_test_add_func("/no-xattr/enosys", test_no_xattr);

    const char *const args[] = {"--xattr", NULL};
    if (test_daemon_start(&daemon_, args) < 0) {
        g_printerr("cannot start the daemon\n");
        return 1;
    }
    fe_ = connect_initialized(&daemon_);
    int ret = g_test_run();
    fe_close(fe_);
    g_assert(test_daemon_alive(&daemon_));
    int rc = test_daemon_stop(&daemon_);
    if (rc != 0) {
        g_printerr("daemon exited with status %d\n", rc);
        ret = 1;
    }
    return ret;
}
