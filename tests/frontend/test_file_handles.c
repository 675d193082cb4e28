/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --inode-file-handles: inodes kept as file handles instead of O_PATH fds. A real daemon
 * (default lockdown: namespace sandbox, seccomp kill, capabilities dropped) is driven through
 * its socket; what it holds open is read from /proc/PID/fd of the serving process, and every
 * op's effect is checked on the host.
 *
 *   - never: one fd per looked-up inode (the control: the fd count grows with lookups);
 *   - prefer, mandatory: no fd per inode, and every op works on such handle-only inodes;
 *   - the default: fds up to half the open-file limit, then handles, so a low --rlimit-nofile
 *     does not run the daemon out of fds;
 *   - a file deleted on the host behind the daemon's back gives ESTALE, never a crash, and a
 *     new file that reuses its inode number is not mistaken for it;
 *   - mount fds: one per mount, closed when the last inode on the mount is forgotten;
 *   - start-up: mandatory without CAP_DAC_READ_SEARCH fails with a message, prefer warns.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define NFILES 2000 /* lookups that must not cost an fd each */
#define USER   1000 /* an unprivileged caller */

static struct test_daemon daemon_;
static struct fe *fe_;

/* ---- daemon and requests ----------------------------------------------------------------- */

/* The host path of rel in the share (one of a few rotating buffers). */
static const char *hp(const char *rel)
{
    static char buf[8][PATH_MAX];
    static unsigned next;
    char *p = buf[next++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", daemon_.share, rel);
    return p;
}

static void hput(const char *rel, const char *content, mode_t mode)
{
    g_assert_true(g_file_set_contents(hp(rel), content, -1, NULL));
    g_assert_cmpint(chmod(hp(rel), mode), ==, 0);
}

static void assert_hcontent(const char *rel, const char *want)
{
    gchar *c = NULL;
    gsize n = 0;
    g_assert_true(g_file_get_contents(hp(rel), &c, &n, NULL));
    g_assert_cmpmem(c, n, want, strlen(want));
    g_free(c);
}

/* Files f0 .. f<n-1> in the directory rel ("" for the share itself). */
static void make_files(const char *rel, int n)
{
    char name[PATH_MAX];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s/%s%sf%d", daemon_.share, rel, *rel ? "/" : "", i);
        int fd = open(name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
    }
}

/* Starts the daemon with args (NULL-terminated, may be NULL) and connects. */
static void start(const char *const *args)
{
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    struct fe_config cfg = {.socket_path = daemon_.socket};
    g_assert_cmpint(fe_open_retry(&cfg, &fe_, 1000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe_), ==, 0);
}

static void stop(void)
{
    fe_close(fe_);
    fe_ = NULL;
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* clang-format off */
#define IOV(...) ((struct iovec[]){__VA_ARGS__}), \
                 (sizeof((struct iovec[]){__VA_ARGS__}) / sizeof(struct iovec))
#define S(x)     {&(x), sizeof(x)}
#define NAME(s)  {(void *)(s), strlen(s) + 1}
/* clang-format on */

/* One request as uid/gid; copies up to out_size payload bytes to out. The FUSE error. */
static int call_as(uint32_t uid, uint32_t op, uint64_t node, const struct iovec *in, unsigned nin,
                   void *out, size_t out_size, size_t *out_len)
{
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe_, 1, uid, uid, op, node, in, nin, out_size, &r), ==, 0);
    if (r.error == 0 && out)
        memcpy(out, r.data, MIN(r.data_len, out_size));
    if (out_len)
        *out_len = r.data_len;
    return r.error;
}

#define CALL(op, node, ...)       call_as(0, op, node, __VA_ARGS__, NULL)
#define CALL_AS(u, op, node, ...) call_as(u, op, node, __VA_ARGS__, NULL)

static int lookup(uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    struct fuse_entry_out tmp;
    return CALL(FUSE_LOOKUP, parent, IOV(NAME(name)), e ? e : &tmp, sizeof(tmp));
}

static uint64_t lookup_ok(uint64_t parent, const char *name)
{
    struct fuse_entry_out e = {0};
    g_assert_cmpint(lookup(parent, name, &e), ==, 0);
    g_assert_cmpuint(e.nodeid, !=, 0);
    return e.nodeid;
}

static void forget(uint64_t nodeid, uint64_t n)
{
    struct fuse_forget_in fi = {.nlookup = n};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, 1, FUSE_FORGET, nodeid, IOV(S(fi)), 0, &r), ==, 0);
}

static int getattr_as(uint32_t uid, uint64_t nodeid, struct fuse_attr *a)
{
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out out = {0};
    int ret = CALL_AS(uid, FUSE_GETATTR, nodeid, IOV(S(gi)), &out, sizeof(out));
    if (a)
        *a = out.attr;
    return ret;
}

static int getattr(uint64_t nodeid, struct fuse_attr *a)
{
    return getattr_as(0, nodeid, a);
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

static int release(uint64_t nodeid, uint64_t fh)
{
    struct fuse_release_in ri = {.fh = fh};
    return CALL(FUSE_RELEASE, nodeid, IOV(S(ri)), NULL, 0);
}

/* The attributes reply of a host file matches lstat. */
static void assert_attr_is_host(const struct fuse_attr *a, const char *rel)
{
    struct stat st;
    g_assert_cmpint(lstat(hp(rel), &st), ==, 0);
    g_assert_cmpuint(a->ino, ==, st.st_ino);
    g_assert_cmpuint(a->mode, ==, st.st_mode);
    g_assert_cmpuint(a->size, ==, (uint64_t)st.st_size);
    g_assert_cmpuint(a->nlink, ==, st.st_nlink);
    g_assert_cmpuint(a->mtime, ==, (uint64_t)st.st_mtim.tv_sec);
    g_assert_cmpuint(a->mtimensec, ==, (uint32_t)st.st_mtim.tv_nsec);
}

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

/* LOOKUPs f0 .. f<n-1> in parent; nodeids (n of them) get their nodeids. */
static void lookup_all(uint64_t parent, int n, uint64_t *nodeids)
{
    char name[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        struct fuse_entry_out e = {0};
        int ret = lookup(parent, name, &e);
        if (ret != 0)
            g_error("LOOKUP %s: %s", name, strerror(-ret));
        nodeids[i] = e.nodeid;
    }
}

/* Looks up NFILES files; returns how much the daemon's fd count grew. Each file got its own
 * nodeid, and a second lookup of a file finds the same inode (in whatever form it is kept). */
static int fd_growth_of_lookups(void)
{
    static uint64_t ids[NFILES];
    make_files("", NFILES);
    int base = settled_fds();
    g_assert_cmpint(base, >, 0);
    lookup_all(FUSE_ROOT_ID, NFILES, ids);
    int grown = settled_fds() - base;
    GHashTable *seen = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (int i = 0; i < NFILES; i++)
        g_assert_true(g_hash_table_add(seen, &ids[i]));
    g_hash_table_destroy(seen);
    g_assert_cmpuint(lookup_ok(FUSE_ROOT_ID, "f0"), ==, ids[0]);
    g_assert_cmpuint(lookup_ok(FUSE_ROOT_ID, "f1999"), ==, ids[NFILES - 1]);
    struct fuse_attr a;
    g_assert_cmpint(getattr(ids[NFILES - 1], &a), ==, 0);
    assert_attr_is_host(&a, "f1999");
    g_test_message("%d lookups grew the fd count by %d", NFILES, grown);
    return grown;
}

/* ---- fd counts by mode ------------------------------------------------------------------- */

static void test_never_fd_per_inode(void)
{
    start((const char *const[]){"--inode-file-handles=never", NULL});
    /* The control: with O_PATH fds every inode costs one. */
    g_assert_cmpint(fd_growth_of_lookups(), >=, NFILES - 10);
    stop();
}

static void test_no_fd_per_inode(gconstpointer mode)
{
    const char *arg = g_strdup_printf("--inode-file-handles=%s", (const char *)mode);
    start((const char *const[]){arg, NULL});
    g_assert_cmpint(fd_growth_of_lookups(), <, 20);
    stop();
    g_free((char *)arg);
}

/*
 * The default: fds while fewer than half the open-file limit are used for inodes, then
 * handles. With --rlimit-nofile=256 the default --inode-file-handles=never behaviour would
 * fail with EMFILE long before NFILES lookups.
 */
/*
 * The automatic mode uses handles only on a share that is a whole file system: a tmpfs mounted
 * on a fresh directory, served with --shared-dir (the last one given wins). Returns the mount
 * point (g_free it after umount_share).
 */
static char *start_on_tmpfs(const char *const *args)
{
    char *dir = g_dir_make_tmp("vfs-fh-tmpfs-XXXXXX", NULL);
    g_assert_nonnull(dir);
    if (mount("tmpfs", dir, "tmpfs", 0, "mode=0755") < 0) {
        g_rmdir(dir);
        g_free(dir);
        return NULL;
    }
    char *opt = g_strdup_printf("--shared-dir=%s", dir);
    const char *all[8] = {0};
    unsigned n = 0;
    for (const char *const *a = args; a && *a && n < 6; a++)
        all[n++] = *a;
    all[n] = opt;
    start(all);
    g_free(opt);
    g_free(daemon_.share); /* the share the tests look at is the tmpfs */
    daemon_.share = g_strdup(dir);
    return dir;
}

static void stop_on_tmpfs(char *dir)
{
    stop();
    g_assert_cmpint(umount2(dir, MNT_DETACH), ==, 0);
    g_rmdir(dir);
    g_free(dir);
}

/* CapEff of the serving process has CAP_DAC_READ_SEARCH (bit 2). */
static bool serving_has_dac_read_search(void)
{
    char path[64], *status = NULL;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)test_daemon_serving_pid(&daemon_));
    g_assert_true(g_file_get_contents(path, &status, NULL, NULL));
    const char *line = strstr(status, "CapEff:");
    g_assert_nonnull(line);
    unsigned long long caps = strtoull(line + 7, NULL, 16);
    g_free(status);
    return caps & (1ULL << 2);
}

/* On a share inside a larger file system the automatic mode keeps fds, and the daemon gives
 * up CAP_DAC_READ_SEARCH: a handle could name any inode of that file system. */
static void test_automatic_subdirectory(void)
{
    static uint64_t ids[300];
    start((const char *const[]){"--rlimit-nofile=1024", NULL});
    make_files("", 300);
    int base = settled_fds();
    lookup_all(FUSE_ROOT_ID, 300, ids);
    g_assert_cmpint(settled_fds() - base, >=, 300);
    g_assert_false(serving_has_dac_read_search());
    stop();
}

static void test_automatic_low_rlimit(void)
{
    static uint64_t ids[NFILES];
    char *dir = start_on_tmpfs((const char *const[]){"--rlimit-nofile=256", NULL});
    if (!dir) {
        g_test_skip("cannot mount a tmpfs");
        return;
    }
    g_assert_true(serving_has_dac_read_search());
    make_files("", NFILES);
    int base = settled_fds();
    lookup_all(FUSE_ROOT_ID, NFILES, ids);
    int n = settled_fds();
    g_test_message("automatic: %d fds before, %d after %d lookups", base, n, NFILES);
    g_assert_cmpint(n, <, 256);
    /* Not simply "handles always": the budget (128 inodes) was used for fds first. */
    g_assert_cmpint(n - base, >=, 100);
    /* Both kinds of inode work and keep their identity. */
    for (int i = 0; i < NFILES; i += NFILES / 8) {
        char name[32];
        struct fuse_attr a;
        snprintf(name, sizeof(name), "f%d", i);
        g_assert_cmpuint(lookup_ok(FUSE_ROOT_ID, name), ==, ids[i]);
        g_assert_cmpint(getattr(ids[i], &a), ==, 0);
        assert_attr_is_host(&a, name);
    }
    /* Files can still be opened and read: the remaining fds are there for them. */
    uint64_t fh;
    g_assert_cmpint(open_as(0, ids[NFILES - 1], O_RDONLY, &fh), ==, 0);
    g_assert_cmpint(release(ids[NFILES - 1], fh), ==, 0);
    stop_on_tmpfs(dir);
}

/* Without CAP_DAC_READ_SEARCH the default keeps fds (handles could not be opened). */
static void test_automatic_without_capability(void)
{
    static uint64_t ids[300];
    char *dir = start_on_tmpfs(
        (const char *const[]){"--modcaps=-dac_read_search", "--rlimit-nofile=256", NULL});
    if (!dir) {
        g_test_skip("cannot mount a tmpfs");
        return;
    }
    make_files("", 300);
    int base = settled_fds();
    lookup_all(FUSE_ROOT_ID, 100, ids);
    g_assert_cmpint(settled_fds() - base, >=, 100);
    stop_on_tmpfs(dir);
}

/* ---- ops on handle-only inodes ----------------------------------------------------------- */

static int readdirplus_names(uint64_t dir, GHashTable *names)
{
    struct fuse_open_in oi = {.flags = O_RDONLY | O_DIRECTORY};
    struct fuse_open_out oo = {0};
    int ret = CALL(FUSE_OPENDIR, dir, IOV(S(oi)), &oo, sizeof(oo));
    if (ret)
        return ret;
    static char buf[65536];
    uint64_t off = 0;
    for (;;) {
        struct fuse_read_in ri = {.fh = oo.fh, .offset = off, .size = sizeof(buf)};
        size_t n = 0;
        ret = call_as(0, FUSE_READDIRPLUS, dir, IOV(S(ri)), buf, sizeof(buf), &n);
        if (ret || n == 0)
            break;
        for (size_t p = 0; p < n;) {
            struct fuse_direntplus *d = (struct fuse_direntplus *)(buf + p);
            char *name = g_strndup(d->dirent.name, d->dirent.namelen);
            if (d->entry_out.nodeid) {
                struct fuse_attr a;
                g_assert_cmpint(getattr(d->entry_out.nodeid, &a), ==, 0);
                g_assert_cmpuint(a.ino, ==, d->dirent.ino);
            }
            g_hash_table_add(names, name);
            off = d->dirent.off;
            p += FUSE_DIRENTPLUS_SIZE(d);
        }
    }
    struct fuse_release_in rel = {.fh = oo.fh};
    g_assert_cmpint(CALL(FUSE_RELEASEDIR, dir, IOV(S(rel)), NULL, 0), ==, 0);
    return ret;
}

static void test_ops(gconstpointer mode)
{
    const char *arg = g_strdup_printf("--inode-file-handles=%s", (const char *)mode);
    start((const char *const[]){arg, "--xattr", NULL});
    g_assert_cmpint(mkdir(hp("d"), 0755), ==, 0);
    hput("d/file", "hello", 0644);
    make_files("d", 50);
    int base = settled_fds();

    uint64_t d = lookup_ok(FUSE_ROOT_ID, "d");
    uint64_t f = lookup_ok(d, "file");
    g_assert_cmpint(settled_fds(), ==, base); /* neither keeps an fd */

    /* GETATTR, also as an unprivileged caller (the handle opens with the daemon's ids). */
    struct fuse_attr a;
    g_assert_cmpint(getattr(f, &a), ==, 0);
    assert_attr_is_host(&a, "d/file");
    g_assert_cmpint(getattr_as(USER, f, &a), ==, 0);
    g_assert_cmpint(getattr(d, &a), ==, 0);
    assert_attr_is_host(&a, "d");

    /* OPEN, WRITE, READ. Permission checks still use the caller's ids. */
    uint64_t fh;
    g_assert_cmpint(open_as(USER, f, O_WRONLY, &fh), ==, -EACCES);
    g_assert_cmpint(open_as(0, f, O_RDWR, &fh), ==, 0);
    struct fuse_write_in wi = {.fh = fh, .offset = 0, .size = 5};
    struct fuse_write_out wo = {0};
    g_assert_cmpint(CALL(FUSE_WRITE, f, IOV(S(wi), {"HELLO", 5}), &wo, sizeof(wo)), ==, 0);
    g_assert_cmpuint(wo.size, ==, 5);
    assert_hcontent("d/file", "HELLO");
    char data[16] = {0};
    size_t got = 0;
    struct fuse_read_in rdi = {.fh = fh, .offset = 1, .size = 4};
    g_assert_cmpint(call_as(0, FUSE_READ, f, IOV(S(rdi)), data, sizeof(data), &got), ==, 0);
    g_assert_cmpmem(data, got, "ELLO", 4);
    g_assert_cmpint(release(f, fh), ==, 0);

    /* SETATTR: mode, size, times; the host shows them. */
    struct fuse_setattr_in si = {.valid = FATTR_MODE | FATTR_SIZE | FATTR_MTIME,
                                 .mode = S_IFREG | 0640,
                                 .size = 2,
                                 .mtime = 1000000000};
    struct fuse_attr_out ao = {0};
    g_assert_cmpint(CALL(FUSE_SETATTR, f, IOV(S(si)), &ao, sizeof(ao)), ==, 0);
    struct stat st;
    g_assert_cmpint(stat(hp("d/file"), &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0640);
    g_assert_cmpint(st.st_size, ==, 2);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, 1000000000);
    assert_attr_is_host(&ao.attr, "d/file");

    /* READDIRPLUS of a handle-only directory: every name, entries that work. */
    GHashTable *names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_assert_cmpint(readdirplus_names(d, names), ==, 0);
    g_assert_true(g_hash_table_contains(names, "file"));
    g_assert_true(g_hash_table_contains(names, "f49"));
    g_assert_cmpuint(g_hash_table_size(names), ==, 53); /* ., .., file, f0..f49 */
    g_hash_table_destroy(names);

    /* xattrs. */
    const char *xn = "user.fh";
    struct fuse_setxattr_in sx = {.size = 3}; /* the 8-byte one without FUSE_SETXATTR_EXT */
    g_assert_cmpint(CALL(FUSE_SETXATTR, f,
                         IOV({&sx, FUSE_COMPAT_SETXATTR_IN_SIZE}, NAME(xn), {"abc", 3}), NULL, 0),
                    ==, 0);
    char xv[8] = {0};
    g_assert_cmpint(lgetxattr(hp("d/file"), xn, xv, sizeof(xv)), ==, 3);
    g_assert_cmpmem(xv, 3, "abc", 3);
    struct fuse_getxattr_in gx = {.size = sizeof(xv)};
    memset(xv, 0, sizeof(xv));
    g_assert_cmpint(CALL(FUSE_GETXATTR, f, IOV(S(gx), NAME(xn)), xv, sizeof(xv)), ==, 0);
    g_assert_cmpmem(xv, 3, "abc", 3);
    g_assert_cmpint(CALL(FUSE_REMOVEXATTR, f, IOV(NAME(xn)), NULL, 0), ==, 0);
    g_assert_cmpint(lgetxattr(hp("d/file"), xn, xv, sizeof(xv)), ==, -1);

    /* RENAME in and out of a handle-only directory; the inode follows its file. */
    struct fuse_rename2_in rn = {.newdir = FUSE_ROOT_ID};
    g_assert_cmpint(CALL(FUSE_RENAME2, d, IOV(S(rn), NAME("file"), NAME("moved")), NULL, 0), ==, 0);
    g_assert_cmpint(access(hp("d/file"), F_OK), ==, -1);
    g_assert_cmpint(access(hp("moved"), F_OK), ==, 0);
    g_assert_cmpint(getattr(f, &a), ==, 0);
    assert_attr_is_host(&a, "moved");
    g_assert_cmpuint(lookup_ok(FUSE_ROOT_ID, "moved"), ==, f);

    /* Creating in a handle-only directory: MKDIR, CREATE, SYMLINK + READLINK, LINK. */
    struct fuse_mkdir_in mi = {.mode = 0755};
    struct fuse_entry_out e = {0};
    g_assert_cmpint(CALL(FUSE_MKDIR, d, IOV(S(mi), NAME("sub")), &e, sizeof(e)), ==, 0);
    g_assert_cmpint(stat(hp("d/sub"), &st), ==, 0);
    g_assert_true(S_ISDIR(st.st_mode));
    struct fuse_create_in ci = {.flags = O_WRONLY, .mode = 0600};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } co = {0};
    g_assert_cmpint(CALL(FUSE_CREATE, e.nodeid, IOV(S(ci), NAME("new")), &co, sizeof(co)), ==, 0);
    g_assert_cmpint(access(hp("d/sub/new"), F_OK), ==, 0);
    g_assert_cmpint(release(co.e.nodeid, co.o.fh), ==, 0);
    g_assert_cmpint(CALL(FUSE_SYMLINK, d, IOV(NAME("lnk"), NAME("target")), &e, sizeof(e)), ==, 0);
    char target[16] = {0};
    size_t tlen = 0;
    g_assert_cmpint(call_as(0, FUSE_READLINK, e.nodeid, NULL, 0, target, sizeof(target), &tlen), ==,
                    0);
    g_assert_cmpmem(target, tlen, "target", 6);
    struct fuse_link_in li = {.oldnodeid = f};
    g_assert_cmpint(CALL(FUSE_LINK, d, IOV(S(li), NAME("hard")), &e, sizeof(e)), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, f);
    g_assert_cmpint(stat(hp("moved"), &st), ==, 0);
    g_assert_cmpuint(st.st_nlink, ==, 2);

    /* ACCESS and STATFS. */
    struct fuse_access_in ac = {.mask = R_OK};
    g_assert_cmpint(CALL(FUSE_ACCESS, f, IOV(S(ac)), NULL, 0), ==, 0);
    struct fuse_statfs_out sfo = {0};
    g_assert_cmpint(CALL(FUSE_STATFS, f, NULL, 0, &sfo, sizeof(sfo)), ==, 0);
    g_assert_cmpuint(sfo.st.bsize, >, 0);

    /* UNLINK and RMDIR in a handle-only directory. */
    g_assert_cmpint(CALL(FUSE_UNLINK, d, IOV(NAME("hard")), NULL, 0), ==, 0);
    g_assert_cmpint(access(hp("d/hard"), F_OK), ==, -1);
    g_assert_cmpint(CALL(FUSE_UNLINK, d, IOV(NAME("lnk")), NULL, 0), ==, 0);
    g_assert_cmpint(unlink(hp("d/sub/new")), ==, 0);
    g_assert_cmpint(CALL(FUSE_RMDIR, d, IOV(NAME("sub")), NULL, 0), ==, 0);
    g_assert_cmpint(access(hp("d/sub"), F_OK), ==, -1);
    g_assert_cmpint(CALL(FUSE_UNLINK, FUSE_ROOT_ID, IOV(NAME("moved")), NULL, 0), ==, 0);
    g_assert_cmpint(access(hp("moved"), F_OK), ==, -1);
    /* The last name is gone: the handle-only inode now reports it, and nothing crashed. The
     * host inode lives on until its last reference goes, which may be a released handle's fd
     * whose close (after an RCU grace period) has not run yet. */
    int tries = 0;
    while (getattr(f, &a) == 0 && tries < 200) {
        g_usleep(5000);
        tries++;
    }
    g_assert_cmpint(getattr(f, &a), ==, -ESTALE);

    /* Nothing of all this stays open but the guest's own handles (none left). */
    g_assert_cmpint(settled_fds(), <=, base + 1);
    g_assert_true(test_daemon_alive(&daemon_));
    stop();
    g_free((char *)arg);
}

/* ---- stale handles ----------------------------------------------------------------------- */

/*
 * Creates "gone" again until it gets inode number ino (ext4 hands out the lowest free number of
 * the directory's group: each miss, renamed away, fills a lower hole). True if it did.
 */
static bool recreate_with_ino(ino_t ino)
{
    char filler[32];
    struct stat st;
    for (int i = 0; i < 20000; i++) {
        hput("gone", "new", 0644);
        g_assert_cmpint(stat(hp("gone"), &st), ==, 0);
        if (st.st_ino == ino)
            return true;
        snprintf(filler, sizeof(filler), "filler%d", i);
        g_assert_cmpint(rename(hp("gone"), hp(filler)), ==, 0);
    }
    hput("gone", "new", 0644);
    return false;
}

static void test_stale(gconstpointer mode)
{
    const char *arg = g_strdup_printf("--inode-file-handles=%s", (const char *)mode);
    start((const char *const[]){arg, NULL});
    hput("gone", "x", 0644);
    g_assert_cmpint(mkdir(hp("gonedir"), 0755), ==, 0);
    uint64_t f = lookup_ok(FUSE_ROOT_ID, "gone");
    uint64_t d = lookup_ok(FUSE_ROOT_ID, "gonedir");
    struct stat old;
    g_assert_cmpint(stat(hp("gone"), &old), ==, 0);

    /* Deleted on the host behind the daemon's back. */
    g_assert_cmpint(unlink(hp("gone")), ==, 0);
    struct fuse_attr a;
    int ret = getattr(f, &a);
    g_assert_true(ret == -ESTALE || ret == -ENOENT);
    uint64_t fh;
    ret = open_as(0, f, O_RDONLY, &fh);
    g_assert_true(ret == -ESTALE || ret == -ENOENT);
    struct fuse_setattr_in si = {.valid = FATTR_MODE, .mode = 0600};
    struct fuse_attr_out ao;
    ret = CALL(FUSE_SETATTR, f, IOV(S(si)), &ao, sizeof(ao));
    g_assert_true(ret == -ESTALE || ret == -ENOENT);

    /*
     * A new file under the old name with the old inode number: the lookup must give a working
     * inode, not the stale one that has the same (dev, ino, mnt_id).
     */
    bool reused = recreate_with_ino(old.st_ino);
    uint64_t f2 = lookup_ok(FUSE_ROOT_ID, "gone");
    if (reused)
        g_assert_cmpuint(f2, !=, f);
    else
        g_test_message("the new file did not reuse the inode number");
    g_assert_cmpint(getattr(f2, &a), ==, 0);
    assert_attr_is_host(&a, "gone");
    g_assert_cmpuint(lookup_ok(FUSE_ROOT_ID, "gone"), ==, f2);
    g_assert_cmpint(open_as(0, f2, O_RDONLY, &fh), ==, 0);
    g_assert_cmpint(release(f2, fh), ==, 0);
    /* The stale inode still answers (with ESTALE) until forgotten, then is gone. */
    ret = getattr(f, &a);
    g_assert_true(ret == -ESTALE || ret == -ENOENT);
    forget(f, 1);
    g_assert_cmpint(getattr(f, &a), ==, -EBADF);
    g_assert_cmpint(getattr(f2, &a), ==, 0);

    /* A directory deleted behind the daemon's back: lookups and creations in it fail. */
    g_assert_cmpint(rmdir(hp("gonedir")), ==, 0);
    ret = lookup(d, "x", NULL);
    g_assert_true(ret == -ESTALE || ret == -ENOENT);
    struct fuse_mkdir_in mi = {.mode = 0755};
    struct fuse_entry_out e;
    ret = CALL(FUSE_MKDIR, d, IOV(S(mi), NAME("x")), &e, sizeof(e));
    g_assert_true(ret == -ESTALE || ret == -ENOENT);
    forget(d, 1);
    g_assert_true(test_daemon_alive(&daemon_));
    stop();
    g_free((char *)arg);
}

/* A host rename does not break a handle (unlike a path). */
static void test_host_rename(void)
{
    start((const char *const[]){"--inode-file-handles=mandatory", NULL});
    hput("before", "data", 0644);
    uint64_t f = lookup_ok(FUSE_ROOT_ID, "before");
    g_assert_cmpint(rename(hp("before"), hp("after")), ==, 0);
    struct fuse_attr a;
    g_assert_cmpint(getattr(f, &a), ==, 0);
    assert_attr_is_host(&a, "after");
    uint64_t fh;
    g_assert_cmpint(open_as(0, f, O_RDONLY, &fh), ==, 0);
    g_assert_cmpint(release(f, fh), ==, 0);
    stop();
}

/* ---- mount fds --------------------------------------------------------------------------- */

/* A submount gets one mount fd, opened with its first inode and closed with its last. */
static void test_submount_fd_mounted(void)
{
    /* Mounted before the daemon starts, so its sandbox (a recursive bind of the share)
     * carries it: a share of our own (the last --shared-dir wins) with a tmpfs in it. */
    gchar *tmp = g_dir_make_tmp("vfs-fh-XXXXXX", NULL);
    gchar *mnt = g_build_filename(tmp, "mnt", NULL);
    g_assert_cmpint(mkdir(mnt, 0755), ==, 0);
    if (mount("fh-test", mnt, "tmpfs", 0, "size=1m") < 0) {
        g_test_skip("cannot mount a tmpfs");
        rmdir(mnt);
        rmdir(tmp);
        g_free(mnt);
        g_free(tmp);
        return;
    }
    gchar *file = g_build_filename(mnt, "f", NULL);
    g_assert_true(g_file_set_contents(file, "on tmpfs", -1, NULL));
    /* The daemon shares tmp: "mnt" is a submount of its share. */
    gchar *shared = g_strdup_printf("--shared-dir=%s", tmp);
    start((const char *const[]){"--inode-file-handles=mandatory", shared, NULL});
    int base = settled_fds();
    uint64_t m = lookup_ok(FUSE_ROOT_ID, "mnt");
    uint64_t f = lookup_ok(m, "f");
    g_assert_cmpint(settled_fds(), ==, base + 1); /* the tmpfs's mount fd, nothing else */
    struct fuse_attr a;
    g_assert_cmpint(getattr(f, &a), ==, 0);
    g_assert_cmpuint(a.size, ==, strlen("on tmpfs"));
    forget(f, 1);
    g_assert_cmpint(settled_fds(), ==, base + 1); /* the directory still uses it */
    forget(m, 1);
    g_assert_cmpint(settled_fds(), ==, base); /* last inode gone: the mount is free again */
    g_assert_cmpint(umount(mnt), ==, 0);
    stop();
    g_free(shared);
    g_free(file);
    rmdir(mnt);
    rmdir(tmp);
    g_free(mnt);
    g_free(tmp);
}

/* ---- start-up ---------------------------------------------------------------------------- */

/* Waits for a daemon that should exit by itself; returns its exit status. */
static int exit_status(struct test_daemon *d)
{
    for (int i = 0; i < 500 && test_daemon_alive(d); i++)
        g_usleep(10000);
    return -d->pid - 1;
}

static void test_mandatory_needs_capability(void)
{
    struct test_daemon d;
    int ret = test_daemon_start(&d, (const char *const[]){"--inode-file-handles=mandatory",
                                                          "--modcaps=-dac_read_search", NULL});
    g_assert_cmpint(ret, !=, 0);
    g_assert_cmpint(exit_status(&d), ==, 1);
    g_assert_true(test_daemon_log_contains(&d, "DAC_READ_SEARCH"));
    test_daemon_stop(&d); /* already exited: only cleans up */
}

/* Unprivileged (a user namespace: no CAP_DAC_READ_SEARCH on the host): mandatory refuses to
 * start with a message naming the capability; prefer warns and serves with fds. */
static void test_unprivileged(void)
{
#if defined(__SANITIZE_ADDRESS__)
    g_test_skip("sanitizer builds run the daemon without its sandbox");
    return;
#endif
    struct test_daemon d;
    int ret = test_daemon_start_as(
        &d, (const char *const[]){"--inode-file-handles=mandatory", NULL}, 65534, 65534);
    g_assert_cmpint(ret, !=, 0);
    g_assert_cmpint(exit_status(&d), ==, 1);
    g_assert_true(test_daemon_log_contains(&d, "--inode-file-handles=mandatory"));
    g_assert_true(test_daemon_log_contains(&d, "CAP_DAC_READ_SEARCH"));
    test_daemon_stop(&d);

    g_assert_cmpint(test_daemon_start_as(&d,
                                         (const char *const[]){"--inode-file-handles=prefer", NULL},
                                         65534, 65534),
                    ==, 0);
    g_assert_true(test_daemon_log_contains(&d, "using O_PATH fds"));
    struct fe_config cfg = {.socket_path = d.socket};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 1000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, ".", &e), ==, 0);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (geteuid() != 0) { /* file handles need CAP_DAC_READ_SEARCH */
        printf("1..0 # SKIP needs root\n");
        return 0;
    }
    g_test_add_func("/fh/never/fd-per-inode", test_never_fd_per_inode);
    g_test_add_data_func("/fh/prefer/no-fd-per-inode", "prefer", test_no_fd_per_inode);
    g_test_add_data_func("/fh/mandatory/no-fd-per-inode", "mandatory", test_no_fd_per_inode);
    g_test_add_func("/fh/automatic/low-rlimit", test_automatic_low_rlimit);
    g_test_add_func("/fh/automatic/subdirectory", test_automatic_subdirectory);
    g_test_add_func("/fh/automatic/without-capability", test_automatic_without_capability);
    g_test_add_data_func("/fh/prefer/ops", "prefer", test_ops);
    g_test_add_data_func("/fh/mandatory/ops", "mandatory", test_ops);
    g_test_add_data_func("/fh/prefer/stale", "prefer", test_stale);
    g_test_add_data_func("/fh/mandatory/stale", "mandatory", test_stale);
    g_test_add_func("/fh/mandatory/host-rename", test_host_rename);
    g_test_add_func("/fh/mandatory/submount-fd", test_submount_fd_mounted);
    g_test_add_func("/fh/startup/mandatory-needs-capability", test_mandatory_needs_capability);
    g_test_add_func("/fh/startup/unprivileged", test_unprivileged);
    return g_test_run();
}
