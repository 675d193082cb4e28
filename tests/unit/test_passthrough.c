/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the passthrough filesystem: pt_* calls over a temporary directory, checked
 * against the host filesystem's own state.
 */
#include "creds.h"
#include "passthrough.h"
#include "pt_core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/falloc.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Runs one pt_* call inside a read-side critical section, as the FUSE server does. */
#define RL(call)                                                                                   \
    ({                                                                                             \
        rcu_read_lock();                                                                           \
        __typeof__(call) rl_ret_ = (call);                                                         \
        rcu_read_unlock();                                                                         \
        rl_ret_;                                                                                   \
    })

static const struct pt_ctx root_ctx = {.uid = 0, .gid = 0, .pid = 1};
static const struct pt_ctx user_ctx = {.uid = 1000, .gid = 1000, .pid = 2};

struct fx {
    char *dir;
    struct pt_fs *fs;
};

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    g_assert_nonnull(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

static void open_fs(struct fx *f, const struct pt_config *cfg)
{
    struct pt_config c = *cfg;

    c.shared_dir = f->dir;
    g_assert_cmpint(pt_new(&c, &f->fs), ==, 0);
}

static void fx_setup_cfg(struct fx *f, const struct pt_config *cfg)
{
    f->dir = g_dir_make_tmp("pt-test-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    open_fs(f, cfg);
}

static const struct pt_config default_cfg = {
    .cache = CACHE_AUTO,
    .xattr = true,
    .readdirplus = true,
};

static void fx_setup(struct fx *f, gconstpointer data)
{
    fx_setup_cfg(f, data ? data : &default_cfg);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void fx_teardown(struct fx *f, gconstpointer data)
{
    pt_free(f->fs);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_free(f->dir);
}

/*
 * The test's own host accesses: pt_* calls leave this thread with the last caller's fsuid
 * (switching back only when the next caller differs), so go back to root first.
 */
static char *host_path(struct fx *f, const char *name)
{
    if (geteuid() == 0)
        g_assert_cmpint(creds_set(0, 0), ==, 0);
    return g_build_filename(f->dir, name, NULL);
}

static void host_write(struct fx *f, const char *name, const char *data, mode_t mode)
{
    char *p = host_path(f, name);

    g_assert_true(g_file_set_contents(p, data, -1, NULL));
    g_assert_cmpint(chmod(p, mode), ==, 0);
    g_free(p);
}

static struct stat host_lstat(struct fx *f, const char *name)
{
    struct stat st;
    char *p = host_path(f, name);

    g_assert_cmpint(lstat(p, &st), ==, 0);
    g_free(p);
    return st;
}

static bool host_exists(struct fx *f, const char *name)
{
    struct stat st;
    char *p = host_path(f, name);
    bool ok = lstat(p, &st) == 0;

    g_free(p);
    return ok;
}

static char *host_read(struct fx *f, const char *name)
{
    char *p = host_path(f, name), *data = NULL;

    g_assert_true(g_file_get_contents(p, &data, NULL, NULL));
    g_free(p);
    return data;
}

static uint64_t lookup_ok(struct fx *f, uint64_t parent, const char *name)
{
    struct fuse_entry_out e;

    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, parent, name, &e)), ==, 0);
    g_assert_cmpuint(e.nodeid, !=, 0);
    return e.nodeid;
}

static int lookup_err(struct fx *f, uint64_t parent, const char *name)
{
    struct fuse_entry_out e;

    return RL(pt_lookup(f->fs, &root_ctx, parent, name, &e));
}

static int do_create(struct fx *f, const struct pt_ctx *ctx, uint64_t parent, const char *name,
                     uint32_t flags, uint32_t mode, struct fuse_entry_out *e, uint64_t *fh)
{
    struct fuse_create_in in = {.flags = flags, .mode = S_IFREG | mode};
    struct fuse_open_out o;
    int ret = RL(pt_create(f->fs, ctx, parent, name, &in, e, &o));

    if (ret == 0)
        *fh = o.fh;
    return ret;
}

static int do_open(struct fx *f, const struct pt_ctx *ctx, uint64_t nodeid, uint32_t flags,
                   struct fuse_open_out *o)
{
    struct fuse_open_in in = {.flags = flags};

    return RL(pt_open(f->fs, ctx, nodeid, &in, o));
}

static void do_release(struct fx *f, uint64_t nodeid, uint64_t fh)
{
    struct fuse_release_in in = {.fh = fh};

    g_assert_cmpint(RL(pt_release(f->fs, &root_ctx, nodeid, &in)), ==, 0);
}

static ssize_t do_write(struct fx *f, uint64_t nodeid, uint64_t fh, uint64_t off, const char *s,
                        uint32_t write_flags)
{
    struct fuse_write_in in = {
        .fh = fh, .offset = off, .size = (uint32_t)strlen(s), .write_flags = write_flags};
    struct iovec iov = {(void *)s, strlen(s)};

    return RL(pt_write(f->fs, &root_ctx, nodeid, &in, &iov, 1));
}

/* Lookup and getattr, unknown nodeids, FORGET. */
static void test_lookup_getattr(struct fx *f, gconstpointer data)
{
    struct fuse_entry_out e, e2;
    struct fuse_attr_out a;
    struct fuse_getattr_in gin = {0};
    struct stat st;

    host_write(f, "a", "12345", 0640);
    st = host_lstat(f, "a");
    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, FUSE_ROOT_ID, "a", &e)), ==, 0);
    g_assert_cmpuint(e.attr.ino, ==, st.st_ino);
    g_assert_cmpuint(e.attr.size, ==, 5);
    g_assert_cmpuint(e.attr.mode, ==, S_IFREG | 0640);
    g_assert_cmpuint(e.entry_valid, ==, 1); /* cache=auto */
    g_assert_cmpuint(e.attr_valid, ==, 1);
    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, FUSE_ROOT_ID, "a", &e2)), ==, 0);
    g_assert_cmpuint(e2.nodeid, ==, e.nodeid);
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, e.nodeid, &gin, &a)), ==, 0);
    g_assert_cmpuint(a.attr.ino, ==, st.st_ino);
    g_assert_cmpuint(a.attr.nlink, ==, 1);
    g_assert_cmpuint(a.attr.mtime, ==, (uint64_t)st.st_mtime);
    g_assert_cmpint(lookup_err(f, FUSE_ROOT_ID, "missing"), ==, -ENOENT);
    g_assert_cmpint(lookup_err(f, e.nodeid, "x"), ==, -ENOTDIR);

    /* Never-issued nodeids are not found. */
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, 0, &gin, &a)), ==, -EBADF);
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, 987654321, &gin, &a)), ==, -EBADF);
    g_assert_cmpint(lookup_err(f, 987654321, "a"), ==, -EBADF);
    RL((pt_forget(f->fs, 987654321, 5), 0));
    RL((pt_forget(f->fs, 0, 5), 0));
    RL((pt_forget(f->fs, FUSE_ROOT_ID, 1000), 0)); /* the root survives */
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, FUSE_ROOT_ID, &gin, &a)), ==, 0);

    /* Two lookups, then FORGET with a larger count: gone. */
    RL((pt_forget(f->fs, e.nodeid, 1), 0));
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, e.nodeid, &gin, &a)), ==, 0);
    RL((pt_forget(f->fs, e.nodeid, 100), 0));
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, e.nodeid, &gin, &a)), ==, -EBADF);
    RL((pt_forget(f->fs, e.nodeid, 1), 0));
    g_assert_cmpuint(lookup_ok(f, FUSE_ROOT_ID, "a"), !=, e.nodeid);
}

/* Name checks; "." and ".." of the root are the root. */
static void test_names(struct fx *f, gconstpointer data)
{
    struct fuse_mkdir_in min = {.mode = 0755};
    struct fuse_entry_out e;
    char longname[NAME_MAX + 2];
    uint64_t sub;

    memset(longname, 'x', sizeof(longname) - 1);
    longname[NAME_MAX + 1] = '\0';
    g_assert_cmpint(lookup_err(f, FUSE_ROOT_ID, "a/b"), ==, -EINVAL);
    g_assert_cmpint(lookup_err(f, FUSE_ROOT_ID, "/etc"), ==, -EINVAL);
    g_assert_cmpint(lookup_err(f, FUSE_ROOT_ID, ""), ==, -EINVAL);
    g_assert_cmpint(lookup_err(f, FUSE_ROOT_ID, longname), ==, -ENAMETOOLONG);
    g_assert_cmpint(RL(pt_mkdir(f->fs, &root_ctx, FUSE_ROOT_ID, "x/y", &min, &e)), ==, -EINVAL);
    g_assert_cmpint(RL(pt_mkdir(f->fs, &root_ctx, FUSE_ROOT_ID, "..", &min, &e)), ==, -EINVAL);
    g_assert_cmpint(RL(pt_unlink(f->fs, &root_ctx, FUSE_ROOT_ID, "../x", NULL)), ==, -EINVAL);
    g_assert_cmpint(RL(pt_rmdir(f->fs, &root_ctx, FUSE_ROOT_ID, "..")), ==, -EINVAL);

    g_assert_cmpuint(lookup_ok(f, FUSE_ROOT_ID, "."), ==, FUSE_ROOT_ID);
    g_assert_cmpuint(lookup_ok(f, FUSE_ROOT_ID, ".."), ==, FUSE_ROOT_ID);
    g_assert_cmpint(RL(pt_mkdir(f->fs, &root_ctx, FUSE_ROOT_ID, "sub", &min, &e)), ==, 0);
    sub = e.nodeid;
    g_assert_cmpuint(lookup_ok(f, sub, "."), ==, sub);
    g_assert_cmpuint(lookup_ok(f, sub, ".."), ==, FUSE_ROOT_ID);
    g_assert_cmpuint(lookup_ok(f, lookup_ok(f, sub, ".."), ".."), ==, FUSE_ROOT_ID);
}

/* CREATE, WRITE and READ through scattered iovecs, RELEASE. */
static void test_create_rw(struct fx *f, gconstpointer data)
{
    struct fuse_entry_out e;
    struct fuse_write_in win = {.offset = 0, .size = 11};
    struct fuse_read_in rin = {.offset = 0, .size = 64};
    struct iovec wv[3] = {{"hello", 5}, {" ", 1}, {"world", 5}};
    char b1[4], b2[64];
    struct iovec rv[2] = {{b1, sizeof(b1)}, {b2, sizeof(b2)}};
    uint64_t fh = 0;
    char *data_on_host;

    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "f", O_RDWR, 0600, &e, &fh), ==, 0);
    g_assert_cmpuint(host_lstat(f, "f").st_mode, ==, S_IFREG | 0600);
    g_assert_cmpuint(e.attr.ino, ==, host_lstat(f, "f").st_ino);
    win.fh = rin.fh = fh;
    g_assert_cmpint(RL(pt_write(f->fs, &root_ctx, e.nodeid, &win, wv, 3)), ==, 11);
    data_on_host = host_read(f, "f");
    g_assert_cmpstr(data_on_host, ==, "hello world");
    g_free(data_on_host);
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, e.nodeid, &rin, rv, 2)), ==, 11);
    g_assert_cmpmem(b1, 4, "hell", 4);
    g_assert_cmpmem(b2, 7, "o world", 7);
    /* in->size limits the read even if the buffers are larger. */
    rin.offset = 6;
    rin.size = 3;
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, e.nodeid, &rin, rv, 2)), ==, 3);
    g_assert_cmpmem(b1, 3, "wor", 3);
    rin.offset = 100; /* past the end */
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, e.nodeid, &rin, rv, 2)), ==, 0);

    /* CREATE without O_EXCL opens an existing file; with O_EXCL it fails. */
    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "f", O_RDWR | O_EXCL, 0600, &e, &fh), ==,
                    -EEXIST);
    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "f", O_RDWR, 0600, &e, &fh), ==, 0);
    do_release(f, e.nodeid, fh);
    do_release(f, e.nodeid, win.fh);
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, e.nodeid, &rin, rv, 2)), ==, -EBADF);
}

/* WRITE with FUSE_WRITE_KILL_SUIDGID drops the set-id bits. */
static void test_write_kill_suidgid(struct fx *f, gconstpointer data)
{
    struct fuse_open_out o;
    uint64_t id;

    host_write(f, "s", "x", 06755);
    id = lookup_ok(f, FUSE_ROOT_ID, "s");
    g_assert_cmpint(do_open(f, &root_ctx, id, O_WRONLY, &o), ==, 0);
    g_assert_cmpint(do_write(f, id, o.fh, 0, "ab", 0), ==, 2);
    if (geteuid() == 0) /* CAP_FSETID keeps them */
        g_assert_cmpuint(host_lstat(f, "s").st_mode & 07777, ==, 06755);
    g_assert_cmpint(do_write(f, id, o.fh, 0, "cd", FUSE_WRITE_KILL_SUIDGID), ==, 2);
    g_assert_cmpuint(host_lstat(f, "s").st_mode & 07777, ==, 0755);
    do_release(f, id, o.fh);
}

static uint64_t mkdir_ok(struct fx *f, const struct pt_ctx *ctx, uint64_t parent, const char *name)
{
    struct fuse_mkdir_in min = {.mode = 0755};
    struct fuse_entry_out e;

    g_assert_cmpint(RL(pt_mkdir(f->fs, ctx, parent, name, &min, &e)), ==, 0);
    return e.nodeid;
}

/* MKDIR, RMDIR, UNLINK, RENAME (flags), SYMLINK, READLINK, LINK, MKNOD. */
static void test_namespace(struct fx *f, gconstpointer data)
{
    struct fuse_mknod_in nin = {.mode = S_IFIFO | 0644};
    struct fuse_entry_out e;
    uint64_t d, a;
    char buf[64], *s;

    d = mkdir_ok(f, &root_ctx, FUSE_ROOT_ID, "d");
    g_assert_true(S_ISDIR(host_lstat(f, "d").st_mode));
    g_assert_cmpuint(host_lstat(f, "d").st_mode & 07777, ==, 0755);
    host_write(f, "d/a", "A", 0644);
    host_write(f, "d/b", "B", 0644);
    g_assert_cmpint(RL(pt_rmdir(f->fs, &root_ctx, FUSE_ROOT_ID, "d")), ==, -ENOTEMPTY);

    /* RENAME: plain, NOREPLACE onto an existing name, EXCHANGE. */
    g_assert_cmpint(RL(pt_rename(f->fs, &root_ctx, d, "a", d, "b", RENAME_NOREPLACE, NULL)), ==,
                    -EEXIST);
    g_assert_cmpint(RL(pt_rename(f->fs, &root_ctx, d, "a", d, "b", RENAME_EXCHANGE, NULL)), ==, 0);
    s = host_read(f, "d/a");
    g_assert_cmpstr(s, ==, "B");
    g_free(s);
    g_assert_cmpint(RL(pt_rename(f->fs, &root_ctx, d, "a", FUSE_ROOT_ID, "moved", 0, NULL)), ==, 0);
    g_assert_false(host_exists(f, "d/a"));
    g_assert_true(host_exists(f, "moved"));
    g_assert_cmpint(RL(pt_rename(f->fs, &root_ctx, d, "b", d, "c", 0x80, NULL)), ==, -EINVAL);

    /* UNLINK and RMDIR. */
    g_assert_cmpint(RL(pt_unlink(f->fs, &root_ctx, d, "b", NULL)), ==, 0);
    g_assert_false(host_exists(f, "d/b"));
    g_assert_cmpint(RL(pt_unlink(f->fs, &root_ctx, d, "b", NULL)), ==, -ENOENT);
    g_assert_cmpint(RL(pt_rmdir(f->fs, &root_ctx, FUSE_ROOT_ID, "d")), ==, 0);
    g_assert_false(host_exists(f, "d"));

    /* SYMLINK and READLINK. */
    g_assert_cmpint(RL(pt_symlink(f->fs, &root_ctx, FUSE_ROOT_ID, "ln", "moved", &e)), ==, 0);
    g_assert_true(S_ISLNK(e.attr.mode));
    g_assert_true(S_ISLNK(host_lstat(f, "ln").st_mode));
    g_assert_cmpint(RL(pt_readlink(f->fs, &root_ctx, e.nodeid, buf, sizeof(buf))), ==, 5);
    g_assert_cmpmem(buf, 5, "moved", 5);
    g_assert_cmpint(RL(pt_readlink(f->fs, &root_ctx, FUSE_ROOT_ID, buf, sizeof(buf))), ==, -EINVAL);

    /* LINK: same inode (same nodeid), nlink 2. */
    a = lookup_ok(f, FUSE_ROOT_ID, "moved");
    g_assert_cmpint(RL(pt_link(f->fs, &root_ctx, a, FUSE_ROOT_ID, "hard", &e)), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, a);
    g_assert_cmpuint(e.attr.nlink, ==, 2);
    g_assert_cmpuint(host_lstat(f, "hard").st_ino, ==, host_lstat(f, "moved").st_ino);
    g_assert_cmpuint(host_lstat(f, "moved").st_nlink, ==, 2);
    g_assert_cmpint(RL(pt_link(f->fs, &root_ctx, FUSE_ROOT_ID, FUSE_ROOT_ID, "rootlink", &e)), ==,
                    -EPERM);

    /* MKNOD of a FIFO. */
    g_assert_cmpint(RL(pt_mknod(f->fs, &root_ctx, FUSE_ROOT_ID, "fifo", &nin, &e)), ==, 0);
    g_assert_true(S_ISFIFO(host_lstat(f, "fifo").st_mode));
    g_assert_true(S_ISFIFO(e.attr.mode));
    /* Opening it on the host could block a worker: refused. */
    g_assert_cmpint(do_open(f, &root_ctx, e.nodeid, O_RDONLY, &(struct fuse_open_out){0}), ==,
                    -EINVAL);
}

/* SETATTR: mode, size (path and FATTR_FH), times, owner. */
static void test_setattr(struct fx *f, gconstpointer data)
{
    struct fuse_setattr_in in = {0};
    struct fuse_attr_out a;
    struct fuse_open_out o;
    struct stat st;
    uint64_t id;

    host_write(f, "f", "0123456789", 0644);
    id = lookup_ok(f, FUSE_ROOT_ID, "f");

    in.valid = FATTR_MODE;
    in.mode = S_IFREG | 0600;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, 0);
    g_assert_cmpuint(a.attr.mode, ==, S_IFREG | 0600);
    g_assert_cmpuint(host_lstat(f, "f").st_mode, ==, S_IFREG | 0600);

    in.valid = FATTR_SIZE;
    in.size = 4;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, 0);
    g_assert_cmpuint(a.attr.size, ==, 4);
    g_assert_cmpint(host_lstat(f, "f").st_size, ==, 4);

    g_assert_cmpint(do_open(f, &root_ctx, id, O_RDWR, &o), ==, 0);
    in.valid = FATTR_SIZE | FATTR_FH;
    in.fh = o.fh;
    in.size = 2;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, 0);
    g_assert_cmpint(host_lstat(f, "f").st_size, ==, 2);
    in.fh = 424242;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, -EBADF);
    do_release(f, id, o.fh);

    in.valid = FATTR_ATIME | FATTR_MTIME;
    in.atime = 1000000000;
    in.atimensec = 5;
    in.mtime = 1200000000;
    in.mtimensec = 7;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, 0);
    st = host_lstat(f, "f");
    g_assert_cmpint(st.st_atim.tv_sec, ==, 1000000000);
    g_assert_cmpint(st.st_atim.tv_nsec, ==, 5);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, 1200000000);
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, 7);
    g_assert_cmpuint(a.attr.mtime, ==, 1200000000);
    in.valid = FATTR_MTIME | FATTR_MTIME_NOW;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, 0);
    st = host_lstat(f, "f");
    g_assert_cmpint(st.st_mtim.tv_sec, >, 1200000000);
    g_assert_cmpint(st.st_atim.tv_sec, ==, 1000000000);

    in.valid = FATTR_SIZE; /* directories cannot be truncated */
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, FUSE_ROOT_ID, &in, &a)), ==, -EISDIR);
    if (geteuid() != 0)
        return;
    in.valid = FATTR_UID | FATTR_GID;
    in.uid = 1234;
    in.gid = 4321;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &in, &a)), ==, 0);
    g_assert_cmpuint(host_lstat(f, "f").st_uid, ==, 1234);
    g_assert_cmpuint(host_lstat(f, "f").st_gid, ==, 4321);
    g_assert_cmpuint(a.attr.uid, ==, 1234);
}

static uint64_t opendir_ok(struct fx *f, uint64_t nodeid, struct fuse_open_out *o)
{
    struct fuse_open_in in = {.flags = O_RDONLY | O_DIRECTORY};

    g_assert_cmpint(RL(pt_opendir(f->fs, &root_ctx, nodeid, &in, o)), ==, 0);
    return o->fh;
}

struct dirent_seen {
    char name[NAME_MAX + 1];
    uint64_t off;
    uint64_t nodeid;
    uint64_t ino;
};

/* Parses one READDIR(PLUS) reply into seen[]; returns the count. */
static int parse_dir(const char *buf, ssize_t len, bool plus, struct dirent_seen *seen, int max)
{
    int n = 0;

    for (ssize_t pos = 0; pos < len;) {
        struct fuse_direntplus dp;
        struct fuse_dirent d;
        size_t reclen;

        if (plus) {
            memcpy(&dp, buf + pos, sizeof(dp));
            d = dp.dirent;
        } else {
            memcpy(&d, buf + pos, sizeof(d));
        }
        g_assert_cmpint(n, <, max);
        g_assert_cmpuint(d.namelen, <=, NAME_MAX);
        memcpy(seen[n].name, buf + pos + (plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET),
               d.namelen);
        seen[n].name[d.namelen] = '\0';
        seen[n].off = d.off;
        seen[n].ino = d.ino;
        seen[n].nodeid = plus ? dp.entry_out.nodeid : 0;
        reclen = plus ? FUSE_DIRENTPLUS_SIZE(&dp) : FUSE_DIRENT_SIZE(&d);
        g_assert_cmpuint(reclen % 8, ==, 0);
        pos += (ssize_t)reclen;
        n++;
    }
    return n;
}

/* Reads a whole directory with small buffers, resuming at the last offset each time. */
static int read_all(struct fx *f, uint64_t dir, uint64_t fh, bool plus, uint32_t bufsize,
                    uint64_t start, struct dirent_seen *seen, int max)
{
    struct fuse_read_in in = {.fh = fh, .offset = start, .size = bufsize};
    char *buf = g_malloc(bufsize);
    int total = 0;
    ssize_t len;

    while ((len = RL(pt_readdir(f->fs, &root_ctx, dir, &in, plus, buf))) > 0) {
        g_assert_cmpint(len, <=, bufsize);
        total += parse_dir(buf, len, plus, seen + total, max - total);
        in.offset = seen[total - 1].off;
    }
    g_assert_cmpint(len, ==, 0);
    g_free(buf);
    return total;
}

#define NFILES 60

static void make_files(struct fx *f)
{
    for (int i = 0; i < NFILES; i++) {
        char name[64];

        g_snprintf(name, sizeof(name), "file-with-a-longish-name-%03d", i);
        host_write(f, name, "x", 0644);
    }
}

static void check_names(struct dirent_seen *seen, int n)
{
    GHashTable *names = g_hash_table_new(g_str_hash, g_str_equal);

    g_assert_cmpint(n, ==, NFILES + 2);
    for (int i = 0; i < n; i++)
        g_assert_true(g_hash_table_add(names, seen[i].name)); /* no duplicates */
    g_assert_true(g_hash_table_contains(names, "."));
    g_assert_true(g_hash_table_contains(names, ".."));
    g_assert_true(g_hash_table_contains(names, "file-with-a-longish-name-000"));
    g_assert_true(g_hash_table_contains(names, "file-with-a-longish-name-059"));
    g_hash_table_destroy(names);
}

static void test_readdir(struct fx *f, gconstpointer data)
{
    struct dirent_seen seen[NFILES + 8], again[NFILES + 8];
    struct fuse_open_out o;
    struct fuse_release_in rel = {0};
    uint64_t fh = 0;
    int n, m;

    make_files(f);
    fh = opendir_ok(f, FUSE_ROOT_ID, &o);
    g_assert_cmpuint(o.open_flags, ==, 0); /* cache=auto */
    n = read_all(f, FUSE_ROOT_ID, fh, false, 200, 0, seen, NFILES + 8);
    check_names(seen, n);
    /* Rewind, and seek into the middle with a cookie from the first pass. */
    m = read_all(f, FUSE_ROOT_ID, fh, false, 4096, 0, again, NFILES + 8);
    g_assert_cmpint(m, ==, n);
    m = read_all(f, FUSE_ROOT_ID, fh, false, 300, seen[29].off, again, NFILES + 8);
    g_assert_cmpint(m, ==, n - 30);
    for (int i = 0; i < m; i++)
        g_assert_cmpstr(again[i].name, ==, seen[30 + i].name);
    /* A buffer too small for one record yields nothing, not an error. */
    g_assert_cmpint(read_all(f, FUSE_ROOT_ID, fh, false, 8, 0, again, NFILES + 8), ==, 0);
    rel.fh = fh;
    g_assert_cmpint(RL(pt_release(f->fs, &root_ctx, FUSE_ROOT_ID, &rel)), ==, -EBADF);
    g_assert_cmpint(RL(pt_releasedir(f->fs, &root_ctx, FUSE_ROOT_ID, &rel)), ==, 0);
    g_assert_cmpint(RL(pt_releasedir(f->fs, &root_ctx, FUSE_ROOT_ID, &rel)), ==, -EBADF);
    g_assert_cmpint(RL(pt_opendir(f->fs, &root_ctx,
                                  lookup_ok(f, FUSE_ROOT_ID,
                                            "file-with-a-"
                                            "longish-name-001"),
                                  &(struct fuse_open_in){0}, &o)),
                    ==, -ENOTDIR);
}

static void test_readdirplus(struct fx *f, gconstpointer data)
{
    struct dirent_seen seen[NFILES + 8];
    struct fuse_open_out o;
    struct fuse_release_in rel = {0};
    unsigned long before;
    int n;

    make_files(f);
    before = itab_count(f->fs->inodes);
    rel.fh = opendir_ok(f, FUSE_ROOT_ID, &o);
    n = read_all(f, FUSE_ROOT_ID, rel.fh, true, 700, 0, seen, NFILES + 8);
    check_names(seen, n);
    for (int i = 0; i < n; i++) {
        bool dot = strcmp(seen[i].name, ".") == 0 || strcmp(seen[i].name, "..") == 0;

        if (dot) {
            g_assert_cmpuint(seen[i].nodeid, ==, 0);
            continue;
        }
        g_assert_cmpuint(seen[i].nodeid, >, FUSE_ROOT_ID);
        /* The entry is a real lookup reference: LOOKUP finds the same nodeid. */
        g_assert_cmpuint(lookup_ok(f, FUSE_ROOT_ID, seen[i].name), ==, seen[i].nodeid);
    }
    g_assert_cmpuint(itab_count(f->fs->inodes), ==, before + NFILES);
    /* Each had two references (READDIRPLUS and LOOKUP); forgetting both frees them. */
    for (int i = 0; i < n; i++)
        RL((pt_forget(f->fs, seen[i].nodeid, 2), 0));
    g_assert_cmpuint(itab_count(f->fs->inodes), ==, before);
    g_assert_cmpint(RL(pt_releasedir(f->fs, &root_ctx, FUSE_ROOT_ID, &rel)), ==, 0);
}

static void test_statfs(struct fx *f, gconstpointer data)
{
    struct fuse_statfs_out out;
    struct statvfs sv;

    g_assert_cmpint(statvfs(f->dir, &sv), ==, 0);
    g_assert_cmpint(RL(pt_statfs(f->fs, &root_ctx, FUSE_ROOT_ID, &out)), ==, 0);
    g_assert_cmpuint(out.st.bsize, ==, sv.f_bsize);
    g_assert_cmpuint(out.st.frsize, ==, sv.f_frsize);
    g_assert_cmpuint(out.st.blocks, ==, sv.f_blocks);
    g_assert_cmpuint(out.st.files, ==, sv.f_files);
    g_assert_cmpuint(out.st.namelen, ==, sv.f_namemax);
}

static void test_xattr(struct fx *f, gconstpointer data)
{
    struct fuse_entry_out e;
    char buf[256], *p;
    uint64_t id, ln;
    ssize_t n;

    host_write(f, "x", "", 0644);
    id = lookup_ok(f, FUSE_ROOT_ID, "x");
    g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, id, "user.foo", "bar", 3, 0)), ==, 0);
    p = host_path(f, "x");
    g_assert_cmpint(getxattr(p, "user.foo", buf, sizeof(buf)), ==, 3);
    g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, id, "user.foo", "b", 1, XATTR_CREATE)), ==,
                    -EEXIST);
    g_assert_cmpint(RL(pt_getxattr(f->fs, &root_ctx, id, "user.foo", NULL, 0)), ==, 3);
    g_assert_cmpint(RL(pt_getxattr(f->fs, &root_ctx, id, "user.foo", buf, 2)), ==, -ERANGE);
    g_assert_cmpint(RL(pt_getxattr(f->fs, &root_ctx, id, "user.foo", buf, sizeof(buf))), ==, 3);
    g_assert_cmpmem(buf, 3, "bar", 3);
    g_assert_cmpint(RL(pt_getxattr(f->fs, &root_ctx, id, "user.none", buf, sizeof(buf))), ==,
                    -ENODATA);
    n = RL(pt_listxattr(f->fs, &root_ctx, id, NULL, 0));
    g_assert_cmpint(n, >=, 9);
    g_assert_cmpint(RL(pt_listxattr(f->fs, &root_ctx, id, buf, 1)), ==, -ERANGE);
    n = RL(pt_listxattr(f->fs, &root_ctx, id, buf, sizeof(buf)));
    g_assert_nonnull(memmem(buf, (size_t)n, "user.foo", 9));
    g_assert_cmpint(RL(pt_removexattr(f->fs, &root_ctx, id, "user.foo")), ==, 0);
    g_assert_cmpint(getxattr(p, "user.foo", buf, sizeof(buf)), ==, -1);
    g_assert_cmpint(RL(pt_removexattr(f->fs, &root_ctx, id, "user.foo")), ==, -ENODATA);
    g_free(p);

    if (geteuid() != 0)
        return;
    /* A symlink's own xattrs (trusted.*: user.* is not allowed on symlinks), not its target's. */
    g_assert_cmpint(RL(pt_symlink(f->fs, &root_ctx, FUSE_ROOT_ID, "ln", "x", &e)), ==, 0);
    ln = e.nodeid;
    g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, ln, "trusted.t", "v", 1, 0)), ==, 0);
    p = host_path(f, "ln");
    g_assert_cmpint(lgetxattr(p, "trusted.t", buf, sizeof(buf)), ==, 1);
    g_free(p);
    p = host_path(f, "x");
    g_assert_cmpint(getxattr(p, "trusted.t", buf, sizeof(buf)), ==, -1);
    g_free(p);
    g_assert_cmpint(RL(pt_getxattr(f->fs, &root_ctx, ln, "trusted.t", buf, sizeof(buf))), ==, 1);
    g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, ln, "user.u", "v", 1, 0)), ==, -EPERM);
}

static const struct pt_config noxattr_cfg = {.cache = CACHE_AUTO, .xattr = false};

static void test_xattr_disabled(struct fx *f, gconstpointer data)
{
    char buf[16];

    g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, FUSE_ROOT_ID, "user.a", "b", 1, 0)), ==,
                    -ENOSYS);
    g_assert_cmpint(RL(pt_getxattr(f->fs, &root_ctx, FUSE_ROOT_ID, "user.a", buf, 16)), ==,
                    -ENOSYS);
    g_assert_cmpint(RL(pt_listxattr(f->fs, &root_ctx, FUSE_ROOT_ID, buf, 16)), ==, -ENOSYS);
    g_assert_cmpint(RL(pt_removexattr(f->fs, &root_ctx, FUSE_ROOT_ID, "user.a")), ==, -ENOSYS);
}

/* FALLOCATE, LSEEK with SEEK_DATA/SEEK_HOLE, COPY_FILE_RANGE, FSYNC, FLUSH, SYNCFS. */
static void test_file_ops(struct fx *f, gconstpointer data)
{
    struct fuse_entry_out e, e2;
    struct fuse_fallocate_in fin = {.offset = 1 << 20, .length = 1 << 20};
    struct fuse_lseek_in lin = {.offset = 0, .whence = SEEK_DATA};
    struct fuse_lseek_out lout;
    struct fuse_fsync_in sin = {0};
    struct fuse_flush_in flin = {0};
    struct fuse_copy_file_range_in cin = {0};
    uint64_t fh = 0, fh2 = 0;
    char *s;

    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "sparse", O_RDWR, 0644, &e, &fh), ==, 0);
    fin.fh = lin.fh = sin.fh = flin.fh = fh;
    /* FALLOCATE extends the file and allocates blocks. */
    g_assert_cmpint(RL(pt_fallocate(f->fs, &root_ctx, e.nodeid, &fin)), ==, 0);
    g_assert_cmpint(host_lstat(f, "sparse").st_size, ==, 2 << 20);
    g_assert_cmpint(host_lstat(f, "sparse").st_blocks, >=, (1 << 20) / 512);
    fin.mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    fin.offset = 0;
    fin.length = 2 << 20;
    g_assert_cmpint(RL(pt_fallocate(f->fs, &root_ctx, e.nodeid, &fin)), ==, 0);
    g_assert_cmpint(host_lstat(f, "sparse").st_blocks, ==, 0);
    /* Data at 1 MiB after a hole: SEEK_DATA and SEEK_HOLE find the boundaries. */
    g_assert_cmpint(do_write(f, e.nodeid, fh, 1 << 20, "data", 0), ==, 4);
    g_assert_cmpint(RL(pt_lseek(f->fs, &root_ctx, e.nodeid, &lin, &lout)), ==, 0);
    g_assert_cmpuint(lout.offset, ==, 1 << 20);
    lin.offset = 1 << 20;
    lin.whence = SEEK_HOLE;
    g_assert_cmpint(RL(pt_lseek(f->fs, &root_ctx, e.nodeid, &lin, &lout)), ==, 0);
    g_assert_cmpuint(lout.offset, >, 1 << 20);
    g_assert_cmpuint(lout.offset, <=, 2 << 20);
    lin.offset = 3 << 20;
    lin.whence = SEEK_DATA;
    g_assert_cmpint(RL(pt_lseek(f->fs, &root_ctx, e.nodeid, &lin, &lout)), ==, -ENXIO);
    g_assert_cmpint(RL(pt_fsync(f->fs, &root_ctx, e.nodeid, &sin)), ==, 0);
    sin.fsync_flags = FUSE_FSYNC_FDATASYNC;
    g_assert_cmpint(RL(pt_fsync(f->fs, &root_ctx, e.nodeid, &sin)), ==, 0);
    g_assert_cmpint(RL(pt_flush(f->fs, &root_ctx, e.nodeid, &flin)), ==, 0);
    g_assert_cmpint(RL(pt_syncfs(f->fs, &root_ctx, FUSE_ROOT_ID)), ==, 0);

    g_assert_cmpint(do_write(f, e.nodeid, fh, 0, "copy me", 0), ==, 7);
    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "dst", O_RDWR, 0644, &e2, &fh2), ==, 0);
    cin = (struct fuse_copy_file_range_in){
        .fh_in = fh, .off_in = 0, .nodeid_out = e2.nodeid, .fh_out = fh2, .off_out = 3, .len = 7};
    g_assert_cmpint(RL(pt_copy_file_range(f->fs, &root_ctx, e.nodeid, &cin)), ==, 7);
    s = host_read(f, "dst");
    g_assert_cmpmem(s, 10, "\0\0\0copy me", 10);
    g_free(s);
    cin.fh_out = fh; /* fh of another nodeid */
    g_assert_cmpint(RL(pt_copy_file_range(f->fs, &root_ctx, e.nodeid, &cin)), ==, -EBADF);
    do_release(f, e.nodeid, fh);
    do_release(f, e2.nodeid, fh2);
}

/* Unknown or mismatched fh values. */
static void test_unknown_fh(struct fx *f, gconstpointer data)
{
    struct fuse_read_in rin = {.fh = 777, .size = 4};
    struct fuse_release_in rel = {.fh = 777};
    struct fuse_flush_in flin = {.fh = 777};
    struct fuse_open_out o;
    char b[4];
    struct iovec v = {b, 4};
    uint64_t a, other;

    host_write(f, "a", "1", 0644);
    host_write(f, "b", "2", 0644);
    a = lookup_ok(f, FUSE_ROOT_ID, "a");
    other = lookup_ok(f, FUSE_ROOT_ID, "b");
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, a, &rin, &v, 1)), ==, -EBADF);
    g_assert_cmpint(RL(pt_release(f->fs, &root_ctx, a, &rel)), ==, -EBADF);
    g_assert_cmpint(RL(pt_flush(f->fs, &root_ctx, a, &flin)), ==, -EBADF);
    g_assert_cmpint(do_open(f, &root_ctx, a, O_RDONLY, &o), ==, 0);
    rin.fh = o.fh;
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, other, &rin, &v, 1)), ==, -EBADF);
    g_assert_cmpint(RL(pt_read(f->fs, &root_ctx, a, &rin, &v, 1)), ==, 1);
    do_release(f, a, o.fh);
}

/* A symlink in the share pointing outside: nothing done through it touches the target. */
static void test_symlink_confinement(struct fx *f, gconstpointer data)
{
    char *outside = g_dir_make_tmp("pt-outside-XXXXXX", NULL);
    char *target = g_build_filename(outside, "secret", NULL);
    struct fuse_setattr_in sin = {0};
    struct fuse_attr_out a;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    struct stat before, after;
    char buf[8];
    uint64_t ln, lndir, fh = 0;
    char *s, *p;

    g_assert_true(g_file_set_contents(target, "secret", -1, NULL));
    g_assert_cmpint(chmod(target, 0644), ==, 0);
    g_assert_cmpint(stat(target, &before), ==, 0);
    p = host_path(f, "evil");
    g_assert_cmpint(symlink(target, p), ==, 0);
    g_free(p);
    p = host_path(f, "evildir");
    g_assert_cmpint(symlink(outside, p), ==, 0);
    g_free(p);

    ln = lookup_ok(f, FUSE_ROOT_ID, "evil");
    g_assert_cmpint(do_open(f, &root_ctx, ln, O_RDWR | O_TRUNC, &o), <, 0);
    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "evil", O_RDWR | O_TRUNC, 0644, &e, &fh),
                    ==, -ELOOP);
    sin.valid = FATTR_SIZE;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, ln, &sin, &a)), <, 0);
    sin.valid = FATTR_MODE;
    sin.mode = 0777;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, ln, &sin, &a)), <, 0);
    sin.valid = FATTR_UID;
    sin.uid = geteuid() == 0 ? 4242 : geteuid();
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, ln, &sin, &a)), ==, 0); /* the link's own */
    sin.valid = FATTR_ATIME | FATTR_MTIME;
    sin.atime = sin.mtime = 12345;
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, ln, &sin, &a)), ==, 0);
    g_assert_cmpuint(a.attr.mtime, ==, 12345);
    if (geteuid() == 0) {
        g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, ln, "trusted.x", "1", 1, 0)), ==, 0);
        g_assert_cmpint(getxattr(target, "trusted.x", buf, sizeof(buf)), ==, -1);
    }
    g_assert_cmpint(lookup_err(f, ln, "x"), ==, -ENOTDIR);
    lndir = lookup_ok(f, FUSE_ROOT_ID, "evildir");
    g_assert_cmpint(lookup_err(f, lndir, "secret"), ==, -ENOTDIR);
    g_assert_cmpint(RL(pt_mkdir(f->fs, &root_ctx, lndir, "new", &(struct fuse_mkdir_in){0}, &e)),
                    ==, -ENOTDIR);

    g_assert_cmpint(stat(target, &after), ==, 0);
    g_assert_cmpuint(after.st_size, ==, before.st_size);
    g_assert_cmpuint(after.st_mode, ==, before.st_mode);
    g_assert_cmpuint(after.st_uid, ==, before.st_uid);
    g_assert_cmpint(after.st_mtime, ==, before.st_mtime);
    s = NULL;
    g_assert_true(g_file_get_contents(target, &s, NULL, NULL));
    g_assert_cmpstr(s, ==, "secret");
    g_free(s);
    g_assert_cmpuint(host_lstat(f, "evil").st_uid, ==, sin.uid);
    g_assert_cmpint(host_lstat(f, "evil").st_mtime, ==, 12345);
    nftw(outside, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_free(target);
    g_free(outside);
}

/* Operations run with the caller's fsuid/fsgid. */
static void test_creds(struct fx *f, gconstpointer data)
{
    struct fuse_access_in ain = {.mask = W_OK};
    struct fuse_setattr_in sin = {.valid = FATTR_SIZE};
    struct fuse_mkdir_in min = {.mode = 0755};
    struct fuse_entry_out e;
    struct fuse_attr_out a;
    struct fuse_open_out o;
    struct stat st;
    uint64_t fh = 0, rootfile, rootdir;

    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
    g_assert_cmpint(chmod(f->dir, 0777), ==, 0);
    g_assert_cmpint(do_create(f, &user_ctx, FUSE_ROOT_ID, "mine", O_WRONLY, 0640, &e, &fh), ==, 0);
    st = host_lstat(f, "mine");
    g_assert_cmpuint(st.st_uid, ==, 1000);
    g_assert_cmpuint(st.st_gid, ==, 1000);
    g_assert_cmpuint(e.attr.uid, ==, 1000);
    do_release(f, e.nodeid, fh);
    mkdir_ok(f, &user_ctx, FUSE_ROOT_ID, "userdir");
    g_assert_cmpuint(host_lstat(f, "userdir").st_uid, ==, 1000);

    host_write(f, "rootfile", "r", 0644);
    mkdir_ok(f, &root_ctx, FUSE_ROOT_ID, "rootdir");
    rootfile = lookup_ok(f, FUSE_ROOT_ID, "rootfile");
    rootdir = lookup_ok(f, FUSE_ROOT_ID, "rootdir");
    g_assert_cmpint(do_open(f, &user_ctx, rootfile, O_WRONLY, &o), ==, -EACCES);
    g_assert_cmpint(do_open(f, &user_ctx, rootfile, O_RDONLY, &o), ==, 0);
    do_release(f, rootfile, o.fh);
    g_assert_cmpint(RL(pt_setattr(f->fs, &user_ctx, rootfile, &sin, &a)), ==, -EACCES);
    sin.valid = FATTR_MODE;
    sin.mode = 0666;
    g_assert_cmpint(RL(pt_setattr(f->fs, &user_ctx, rootfile, &sin, &a)), ==, -EPERM);
    g_assert_cmpint(RL(pt_access(f->fs, &user_ctx, rootfile, &ain)), ==, -EACCES);
    ain.mask = R_OK;
    g_assert_cmpint(RL(pt_access(f->fs, &user_ctx, rootfile, &ain)), ==, 0);
    g_assert_cmpint(do_create(f, &user_ctx, rootdir, "no", O_WRONLY, 0644, &e, &fh), ==, -EACCES);
    g_assert_cmpint(RL(pt_mkdir(f->fs, &user_ctx, rootdir, "no", &min, &e)), ==, -EACCES);
    g_assert_cmpint(RL(pt_unlink(f->fs, &user_ctx, FUSE_ROOT_ID, "rootfile", NULL)), ==,
                    0); /* 0777 */
    g_assert_false(host_exists(f, "no"));
    g_assert_false(host_exists(f, "rootdir/no"));

    /* The next request of another caller on this thread gets its own credentials. */
    g_assert_cmpint(do_create(f, &root_ctx, rootdir, "yes", O_WRONLY, 0644, &e, &fh), ==, 0);
    do_release(f, e.nodeid, fh);
    g_assert_cmpuint(host_lstat(f, "rootdir/yes").st_uid, ==, 0);
    ain.mask = W_OK;
    g_assert_cmpint(RL(pt_access(f->fs, &root_ctx, lookup_ok(f, rootdir, "yes"), &ain)), ==, 0);
    g_assert_cmpint(RL(pt_access(f->fs, &user_ctx, lookup_ok(f, rootdir, "yes"), &ain)), ==,
                    -EACCES);
}

/* Credentials are per thread: two threads create files as different users at once. */
struct creds_thread {
    struct fx *f;
    const struct pt_ctx *ctx;
    const char *prefix;
};

static void *creds_thread_fn(void *arg)
{
    struct creds_thread *c = arg;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    struct fuse_create_in in = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    struct fuse_release_in rel = {0};

    rcu_register_thread();
    for (int i = 0; i < 200; i++) {
        char name[32];

        g_snprintf(name, sizeof(name), "%s%d", c->prefix, i);
        g_assert_cmpint(RL(pt_create(c->f->fs, c->ctx, FUSE_ROOT_ID, name, &in, &e, &o)), ==, 0);
        g_assert_cmpuint(e.attr.uid, ==, c->ctx->uid);
        g_assert_cmpuint(e.attr.gid, ==, c->ctx->gid);
        rel.fh = o.fh;
        g_assert_cmpint(RL(pt_release(c->f->fs, c->ctx, e.nodeid, &rel)), ==, 0);
        RL((pt_forget(c->f->fs, e.nodeid, 1), 0));
    }
    rcu_unregister_thread();
    return NULL;
}

static void test_creds_threads(struct fx *f, gconstpointer data)
{
    static const struct pt_ctx other_ctx = {.uid = 2000, .gid = 3000, .pid = 3};
    struct creds_thread c[3] = {{f, &user_ctx, "u"}, {f, &root_ctx, "r"}, {f, &other_ctx, "o"}};
    pthread_t th[3];

    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
    g_assert_cmpint(chmod(f->dir, 0777), ==, 0);
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(pthread_create(&th[i], NULL, creds_thread_fn, &c[i]), ==, 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    g_assert_cmpuint(host_lstat(f, "u199").st_uid, ==, 1000);
    g_assert_cmpuint(host_lstat(f, "r199").st_uid, ==, 0);
    g_assert_cmpuint(host_lstat(f, "o199").st_gid, ==, 3000);
}

/* READDIRPLUS of a directory the caller may read but not search: names, no references. */
static void test_readdirplus_noexec(struct fx *f, gconstpointer data)
{
    struct dirent_seen seen[8];
    struct fuse_read_in in = {.size = 4096};
    struct fuse_open_in oin = {.flags = O_RDONLY};
    struct fuse_open_out o;
    char buf[4096], *p;
    uint64_t d;
    ssize_t len;
    int n;

    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
    d = mkdir_ok(f, &root_ctx, FUSE_ROOT_ID, "r-only");
    host_write(f, "r-only/a", "a", 0644);
    p = host_path(f, "r-only");
    g_assert_cmpint(chmod(p, 0744), ==, 0);
    g_free(p);
    g_assert_cmpint(RL(pt_opendir(f->fs, &user_ctx, d, &oin, &o)), ==, 0);
    in.fh = o.fh;
    len = RL(pt_readdir(f->fs, &user_ctx, d, &in, true, buf));
    n = parse_dir(buf, len, true, seen, 8);
    g_assert_cmpint(n, ==, 3);
    for (int i = 0; i < n; i++)
        g_assert_cmpuint(seen[i].nodeid, ==, 0);
    g_assert_cmpint(RL(pt_lookup(f->fs, &user_ctx, d, "a", &(struct fuse_entry_out){0})), ==,
                    -EACCES);
}

/* Cache modes: timeouts and open flags. */
static void check_cache(struct fx *f, enum cache_mode mode, uint64_t timeout, uint32_t file_flags,
                        uint32_t dir_flags)
{
    struct pt_config c = default_cfg;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    uint64_t id;

    pt_free(f->fs);
    c.cache = mode;
    open_fs(f, &c);
    id = lookup_ok(f, FUSE_ROOT_ID, "c");
    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, FUSE_ROOT_ID, "c", &e)), ==, 0);
    g_assert_cmpuint(e.entry_valid, ==, timeout);
    g_assert_cmpuint(e.attr_valid, ==, timeout);
    g_assert_cmpint(do_open(f, &root_ctx, id, O_RDONLY, &o), ==, 0);
    g_assert_cmpuint(o.open_flags, ==, file_flags);
    do_release(f, id, o.fh);
    opendir_ok(f, FUSE_ROOT_ID, &o);
    g_assert_cmpuint(o.open_flags, ==, dir_flags);
}

static void test_cache_modes(struct fx *f, gconstpointer data)
{
    host_write(f, "c", "c", 0644);
    check_cache(f, CACHE_NEVER, 0, FOPEN_DIRECT_IO, 0);
    check_cache(f, CACHE_METADATA, 86400, FOPEN_DIRECT_IO, FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE);
    check_cache(f, CACHE_AUTO, 1, 0, 0);
    check_cache(f, CACHE_ALWAYS, 86400, FOPEN_KEEP_CACHE, FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE);
}

static int handle_flags(struct fx *f, uint64_t nodeid, uint64_t fh)
{
    struct pt_handle *h;
    int fl;

    rcu_read_lock();
    h = htab_get(f->fs->handles, fh, nodeid);
    g_assert_nonnull(h);
    fl = fcntl(h->fd, F_GETFL);
    rcu_read_unlock();
    return fl;
}

/* Writeback: O_WRONLY becomes O_RDWR, O_APPEND is dropped; O_DIRECT only if allowed. */
static void test_open_flags(struct fx *f, gconstpointer data)
{
    struct pt_config c = default_cfg;
    struct fuse_open_out o;
    uint64_t id;
    int fl;

    host_write(f, "w", "w", 0644);
    id = lookup_ok(f, FUSE_ROOT_ID, "w");
    g_assert_cmpint(do_open(f, &root_ctx, id, O_WRONLY | O_APPEND | O_DIRECT, &o), ==, 0);
    fl = handle_flags(f, id, o.fh);
    g_assert_cmpint(fl & O_ACCMODE, ==, O_WRONLY);
    g_assert_true(fl & O_APPEND);
    g_assert_false(fl & O_DIRECT);
    g_assert_cmpuint(o.open_flags, ==, 0);
    do_release(f, id, o.fh);

    pt_init(f->fs, FUSE_WRITEBACK_CACHE);
    g_assert_cmpint(do_open(f, &root_ctx, id, O_WRONLY | O_APPEND, &o), ==, 0);
    fl = handle_flags(f, id, o.fh);
    g_assert_cmpint(fl & O_ACCMODE, ==, O_RDWR);
    g_assert_false(fl & O_APPEND);
    do_release(f, id, o.fh);

    pt_free(f->fs);
    c.allow_direct_io = true;
    open_fs(f, &c);
    id = lookup_ok(f, FUSE_ROOT_ID, "w");
    g_assert_cmpint(do_open(f, &root_ctx, id, O_RDONLY | O_DIRECT, &o), ==, 0);
    g_assert_true(handle_flags(f, id, o.fh) & O_DIRECT);
    g_assert_cmpuint(o.open_flags, ==, FOPEN_DIRECT_IO);
    do_release(f, id, o.fh);
}

static void test_readonly(struct fx *f, gconstpointer data)
{
    struct pt_config c = default_cfg;
    struct fuse_mkdir_in min = {.mode = 0755};
    struct fuse_setattr_in sin = {.valid = FATTR_MODE, .mode = 0600};
    struct fuse_entry_out e;
    struct fuse_attr_out a;
    struct fuse_open_out o;
    uint64_t id, fh = 0;

    host_write(f, "r", "r", 0644);
    pt_free(f->fs);
    c.readonly = true;
    open_fs(f, &c);
    id = lookup_ok(f, FUSE_ROOT_ID, "r");
    g_assert_cmpint(RL(pt_mkdir(f->fs, &root_ctx, FUSE_ROOT_ID, "d", &min, &e)), ==, -EROFS);
    g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, "n", O_RDWR, 0644, &e, &fh), ==, -EROFS);
    g_assert_cmpint(RL(pt_unlink(f->fs, &root_ctx, FUSE_ROOT_ID, "r", NULL)), ==, -EROFS);
    g_assert_cmpint(RL(pt_setattr(f->fs, &root_ctx, id, &sin, &a)), ==, -EROFS);
    g_assert_cmpint(RL(pt_setxattr(f->fs, &root_ctx, id, "user.a", "b", 1, 0)), ==, -EROFS);
    g_assert_cmpint(do_open(f, &root_ctx, id, O_WRONLY, &o), ==, -EROFS);
    g_assert_cmpint(do_open(f, &root_ctx, id, O_RDONLY | O_TRUNC, &o), ==, -EROFS);
    g_assert_cmpint(do_open(f, &root_ctx, id, O_RDONLY, &o), ==, 0);
    do_release(f, id, o.fh);
    g_assert_true(host_exists(f, "r"));
    g_assert_cmpuint(host_lstat(f, "r").st_mode & 07777, ==, 0644);
}

/* A mount point inside the share is flagged only when FUSE_SUBMOUNTS was negotiated. */
static void test_submounts(struct fx *f, gconstpointer data)
{
    struct pt_config c = default_cfg;
    struct fuse_entry_out e;
    char *mnt = host_path(f, "mnt");

    g_assert_cmpint(mkdir(mnt, 0755), ==, 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0) {
        g_test_skip("cannot mount tmpfs");
        g_free(mnt);
        return;
    }
    pt_free(f->fs);
    c.announce_submounts = true;
    open_fs(f, &c);
    mkdir_ok(f, &root_ctx, FUSE_ROOT_ID, "plain");
    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, FUSE_ROOT_ID, "mnt", &e)), ==, 0);
    g_assert_cmpuint(e.attr.flags & FUSE_ATTR_SUBMOUNT, ==, 0); /* not negotiated */
    RL((pt_forget(f->fs, e.nodeid, 1), 0));
    pt_init(f->fs, FUSE_SUBMOUNTS);
    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, FUSE_ROOT_ID, "mnt", &e)), ==, 0);
    g_assert_cmpuint(e.attr.flags & FUSE_ATTR_SUBMOUNT, ==, FUSE_ATTR_SUBMOUNT);
    g_assert_cmpint(RL(pt_lookup(f->fs, &root_ctx, FUSE_ROOT_ID, "plain", &e)), ==, 0);
    g_assert_cmpuint(e.attr.flags & FUSE_ATTR_SUBMOUNT, ==, 0);
    pt_reset(f->fs); /* drop the O_PATH fd so the mount is not busy */
    g_assert_cmpint(umount2(mnt, MNT_DETACH), ==, 0);
    g_free(mnt);
}

/* pt_reset drops every inode and handle; fds return to the baseline. */
static void test_reset_fds(struct fx *f, gconstpointer data)
{
    struct fuse_entry_out e;
    struct fuse_open_out o;
    struct fuse_getattr_in gin = {0};
    struct fuse_attr_out a;
    struct dirent_seen seen[NFILES + 8];
    int base = count_fds();
    uint64_t fh = 0, id;

    make_files(f);
    for (int i = 0; i < 5; i++) {
        char name[16];

        g_snprintf(name, sizeof(name), "n%d", i);
        g_assert_cmpint(do_create(f, &root_ctx, FUSE_ROOT_ID, name, O_RDWR, 0644, &e, &fh), ==, 0);
    }
    id = mkdir_ok(f, &root_ctx, FUSE_ROOT_ID, "dd");
    opendir_ok(f, id, &o);
    read_all(f, FUSE_ROOT_ID, opendir_ok(f, FUSE_ROOT_ID, &o), true, 1000, 0, seen, NFILES + 8);
    g_assert_cmpint(count_fds(), >, base + NFILES);
    pt_reset(f->fs);
    g_assert_cmpint(count_fds(), ==, base);
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, id, &gin, &a)), ==, -EBADF);
    g_assert_cmpint(RL(pt_getattr(f->fs, &root_ctx, FUSE_ROOT_ID, &gin, &a)), ==, 0);
    g_assert_cmpuint(lookup_ok(f, FUSE_ROOT_ID, "dd"), >, id);
    pt_reset(f->fs);
    g_assert_cmpint(count_fds(), ==, base);
    pt_free(f->fs);
    f->fs = NULL;
    g_assert_cmpint(count_fds(), ==, base - 2); /* the root's fd and /proc/self/fd */
}

/*
 * A child that makes itself a session leader without a controlling terminal, opens the pseudo
 * terminal slave path_fd refers to (with pt_reopen if fs, else through /proc/self/fd without
 * O_NOCTTY) and reports whether that terminal became its controlling one (/dev/tty opens).
 */
static bool child_gets_ctty(struct pt_fs *fs, int path_fd)
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        char name[32];
        snprintf(name, sizeof(name), "/proc/self/fd/%d", path_fd);
        if (setsid() < 0)
            _exit(2);
        int fd = fs ? pt_reopen(fs, path_fd, O_RDWR) : open(name, O_RDWR);
        if (fd < 0)
            _exit(3);
        _exit(open("/dev/tty", O_RDWR | O_NOCTTY) >= 0 ? 1 : 0);
    }
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), <=, 1);
    return WEXITSTATUS(status) == 1;
}

/*
 * pt_reopen keeps O_NOCTTY (it used to strip it): a terminal reopened by the daemon must never
 * become its controlling terminal, whose hangup would send it SIGHUP.
 */
static void test_reopen_noctty(struct fx *f, gconstpointer data)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
        g_test_skip("no pseudo-terminals");
        if (master >= 0)
            close(master);
        return;
    }
    int path_fd = open(ptsname(master), O_PATH | O_CLOEXEC);
    g_assert_cmpint(path_fd, >=, 0);
    g_assert_true(child_gets_ctty(NULL, path_fd)); /* the check sees a terminal acquired */
    g_assert_false(child_gets_ctty(f->fs, path_fd));
    close(path_fd);
    close(master);
}

#define ADD(name, fn) g_test_add("/passthrough/" name, struct fx, NULL, fx_setup, fn, fx_teardown)
#define ADD_CFG(name, cfg, fn)                                                                     \
    g_test_add("/passthrough/" name, struct fx, cfg, fx_setup, fn, fx_teardown)

/* O_NOATIME from a caller who does not own the file: dropped unless preserve_noatime. */
static void test_noatime(struct fx *f, gconstpointer data)
{
    const struct pt_config *cfg = data;
    if (geteuid() != 0) {
        g_test_skip("needs root to act as another user");
        return;
    }
    host_write(f, "root-file", "x", 0644);
    uint64_t node = lookup_ok(f, FUSE_ROOT_ID, "root-file");
    struct fuse_open_out o;
    int ret = do_open(f, &user_ctx, node, O_RDONLY | O_NOATIME, &o);
    if (cfg && cfg->preserve_noatime) {
        g_assert_cmpint(ret, ==, -EPERM);
    } else {
        g_assert_cmpint(ret, ==, 0);
        do_release(f, node, o.fh);
    }
}

static const struct pt_config preserve_noatime_cfg = {
    .cache = CACHE_AUTO,
    .readdirplus = true,
    .preserve_noatime = true,
};

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    rcu_register_thread();
    ADD("lookup_getattr", test_lookup_getattr);
    ADD("names", test_names);
    ADD("create_rw", test_create_rw);
    ADD("write_kill_suidgid", test_write_kill_suidgid);
    ADD("namespace", test_namespace);
    ADD("setattr", test_setattr);
    ADD("readdir", test_readdir);
    ADD("readdirplus", test_readdirplus);
    ADD("statfs", test_statfs);
    ADD("xattr", test_xattr);
    ADD_CFG("xattr_disabled", &noxattr_cfg, test_xattr_disabled);
    ADD("file_ops", test_file_ops);
    ADD("unknown_fh", test_unknown_fh);
    ADD("symlink_confinement", test_symlink_confinement);
    ADD("creds", test_creds);
    ADD("noatime_dropped", test_noatime);
    ADD_CFG("noatime_preserved", &preserve_noatime_cfg, test_noatime);
    ADD("creds_threads", test_creds_threads);
    ADD("readdirplus_noexec", test_readdirplus_noexec);
    ADD("cache_modes", test_cache_modes);
    ADD("open_flags", test_open_flags);
    ADD("readonly", test_readonly);
    ADD("submounts", test_submounts);
    ADD("reset_fds", test_reset_fds);
    ADD("reopen_noctty", test_reopen_noctty);
    ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
