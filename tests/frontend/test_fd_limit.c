/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A guest that learns far more inodes, and opens more files, than the daemon's open-file
 * limit allows fds: the fd cache (inode_table.h) and the fd budget (pt_handle_room). A real
 * daemon (default lockdown) with --rlimit-nofile=LIMIT serves a share inside a larger file
 * system, where inodes keep O_PATH fds (no file handles); its fd count is read from
 * /proc/PID/fd of the serving process.
 *
 *   - thousands of LOOKUPs and READDIRPLUS entries, all kept, each with a nodeid; every one
 *     of them still answers GETATTR with the host's attributes, and the fd count stays under
 *     the limit;
 *   - an inode whose fd was closed is opened again where it was seen, also through a chain of
 *     directories whose fds were closed too;
 *   - renamed on the host: ESTALE until the guest looks it up again under the new name, which
 *     gives the same nodeid back; renamed by the guest: works on at once;
 *   - unlinked by the guest while it holds the nodeid: the inode keeps its fd (no name leads
 *     to it any more), so GETATTR still works (st_nlink 0);
 *   - open files beyond the budget: EMFILE for that OPEN only; the daemon serves on, and the
 *     fds come back with RELEASE.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define LIMIT  256  /* --rlimit-nofile */
#define NDIRS  3    /* directories of NFILES files each */
#define NFILES 1000 /* per directory: far more than LIMIT in all */

static struct test_daemon daemon_;
static struct fe *fe_;

static const char *hp(const char *rel)
{
    static char buf[8][PATH_MAX];
    static unsigned next;
    char *p = buf[next++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", daemon_.share, rel);
    return p;
}

static void start(void)
{
    const char *const args[] = {"--rlimit-nofile=" G_STRINGIFY(LIMIT), NULL};
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

static int call(uint32_t op, uint64_t node, const struct iovec *in, unsigned nin, void *out,
                size_t out_size, size_t *out_len)
{
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe_, 1, op, node, in, nin, out_size, &r), ==, 0);
    if (r.error == 0 && out)
        memcpy(out, r.data, MIN(r.data_len, out_size));
    if (out_len)
        *out_len = r.data_len;
    return r.error;
}

static int lookup(uint64_t parent, const char *name, uint64_t *nodeid)
{
    struct fuse_entry_out e = {0};
    int ret = call(FUSE_LOOKUP, parent, IOV(NAME(name)), &e, sizeof(e), NULL);
    *nodeid = e.nodeid;
    return ret;
}

static uint64_t lookup_ok(uint64_t parent, const char *name)
{
    uint64_t id = 0;
    int ret = lookup(parent, name, &id);
    if (ret)
        g_error("LOOKUP %s: %s", name, strerror(-ret));
    g_assert_cmpuint(id, !=, 0);
    return id;
}

static int getattr(uint64_t nodeid, struct fuse_attr *a)
{
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out out = {0};
    int ret = call(FUSE_GETATTR, nodeid, IOV(S(gi)), &out, sizeof(out), NULL);
    if (a)
        *a = out.attr;
    return ret;
}

static void assert_attr_is_host(uint64_t nodeid, const char *rel)
{
    struct fuse_attr a;
    struct stat st;
    int ret = getattr(nodeid, &a);
    if (ret)
        g_error("GETATTR %s: %s", rel, strerror(-ret));
    g_assert_cmpint(lstat(hp(rel), &st), ==, 0);
    g_assert_cmpuint(a.ino, ==, st.st_ino);
    g_assert_cmpuint(a.mode, ==, st.st_mode);
    g_assert_cmpuint(a.size, ==, (uint64_t)st.st_size);
}

static int open_file(uint64_t nodeid, uint64_t *fh)
{
    struct fuse_open_in oi = {.flags = O_RDONLY};
    struct fuse_open_out out = {0};
    int ret = call(FUSE_OPEN, nodeid, IOV(S(oi)), &out, sizeof(out), NULL);
    *fh = out.fh;
    return ret;
}

static void release(uint64_t nodeid, uint64_t fh)
{
    struct fuse_release_in ri = {.fh = fh};
    g_assert_cmpint(call(FUSE_RELEASE, nodeid, IOV(S(ri)), NULL, 0, NULL), ==, 0);
}

/* The serving process's fd count once it stops changing (fds close after a grace period). */
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

/* The share: d0 .. d<NDIRS-1>, each with f0 .. f<NFILES-1> holding their own path. */
static uint64_t dirs[NDIRS], files[NDIRS][NFILES];

static void make_tree(void)
{
    char rel[64];
    for (int d = 0; d < NDIRS; d++) {
        snprintf(rel, sizeof(rel), "d%d", d);
        g_assert_cmpint(mkdir(hp(rel), 0755), ==, 0);
        for (int i = 0; i < NFILES; i++) {
            snprintf(rel, sizeof(rel), "d%d/f%d", d, i);
            g_assert_true(g_file_set_contents(hp(rel), rel, -1, NULL));
        }
    }
}

static void lookup_tree(void)
{
    char name[32];
    for (int d = 0; d < NDIRS; d++) {
        snprintf(name, sizeof(name), "d%d", d);
        dirs[d] = lookup_ok(FUSE_ROOT_ID, name);
        for (int i = 0; i < NFILES; i++) {
            snprintf(name, sizeof(name), "f%d", i);
            files[d][i] = lookup_ok(dirs[d], name);
        }
    }
}

/* Files a test moved or removed: getattr_tree leaves them out. */
static bool gone[NDIRS][NFILES];

/* GETATTR of every file: each one's fd was closed by the time it comes round again. */
static void getattr_tree(void)
{
    char rel[64];
    for (int d = 0; d < NDIRS; d++)
        for (int i = 0; i < NFILES; i++) {
            if (gone[d][i])
                continue;
            snprintf(rel, sizeof(rel), "d%d/f%d", d, i);
            assert_attr_is_host(files[d][i], rel);
        }
}

static void setup_tree(void)
{
    memset(gone, 0, sizeof(gone));
    start();
    make_tree();
    lookup_tree();
    g_assert_cmpint(settled_fds(), <, LIMIT);
}

static void test_walk(void)
{
    setup_tree();
    getattr_tree();
    getattr_tree();
    int n = settled_fds();
    g_test_message("%d inodes known, %d fds", NDIRS * (NFILES + 1), n);
    g_assert_cmpint(n, <, LIMIT);

    /* READDIRPLUS keeps every entry too, and each has its nodeid (the same as LOOKUP's). */
    struct fuse_open_in oi = {.flags = O_RDONLY | O_DIRECTORY};
    struct fuse_open_out oo = {0};
    g_assert_cmpint(call(FUSE_OPENDIR, dirs[1], IOV(S(oi)), &oo, sizeof(oo), NULL), ==, 0);
    static char buf[65536];
    unsigned entries = 0, same = 0;
    for (uint64_t off = 0;;) {
        struct fuse_read_in ri = {.fh = oo.fh, .offset = off, .size = sizeof(buf)};
        size_t len = 0;
        g_assert_cmpint(call(FUSE_READDIRPLUS, dirs[1], IOV(S(ri)), buf, sizeof(buf), &len), ==, 0);
        if (len == 0)
            break;
        for (size_t p = 0; p < len;) {
            struct fuse_direntplus *e = (struct fuse_direntplus *)(buf + p);
            int i;
            bool dots = (e->dirent.namelen == 1 && e->dirent.name[0] == '.') ||
                        (e->dirent.namelen == 2 && !memcmp(e->dirent.name, "..", 2));
            g_assert_true(dots || e->entry_out.nodeid != 0);
            entries++;
            if (sscanf(e->dirent.name, "f%d", &i) == 1 && i >= 0 && i < NFILES)
                same += e->entry_out.nodeid == files[1][i];
            off = e->dirent.off;
            p += FUSE_DIRENTPLUS_SIZE(e);
        }
    }
    struct fuse_release_in rel = {.fh = oo.fh};
    g_assert_cmpint(call(FUSE_RELEASEDIR, dirs[1], IOV(S(rel)), NULL, 0, NULL), ==, 0);
    g_assert_cmpuint(entries, ==, NFILES + 2); /* and "." and ".." */
    g_assert_cmpuint(same, ==, NFILES);
    g_assert_cmpint(settled_fds(), <, LIMIT);
    stop();
}

static void test_deep_chain(void)
{
    char rel[PATH_MAX] = "";
    uint64_t node = FUSE_ROOT_ID;
    start();
    make_tree();
    /* A chain of 30 directories, then cycle every cached fd out, then the bottom's GETATTR
     * opens each directory on the way again. */
    for (int i = 0; i < 30; i++) {
        strcat(rel, i ? "/c" : "c");
        g_assert_cmpint(mkdir(hp(rel), 0755), ==, 0);
        node = lookup_ok(node, "c");
    }
    strcat(rel, "/leaf");
    g_assert_true(g_file_set_contents(hp(rel), "leaf", -1, NULL));
    uint64_t leaf = lookup_ok(node, "leaf");
    lookup_tree();
    getattr_tree();
    assert_attr_is_host(leaf, rel);
    stop();
}

static void test_host_rename(void)
{
    setup_tree();
    uint64_t id = files[0][7], again = 0;
    g_assert_cmpint(rename(hp("d0/f7"), hp("d0/moved")), ==, 0);
    gone[0][7] = true;
    getattr_tree(); /* every fd of the tree closed and opened again */
    struct fuse_attr a;
    int ret = getattr(id, &a);
    g_assert_true(ret == 0 || ret == -ESTALE);
    /* The guest's retry: a LOOKUP of the new name finds the same inode, and it works again. */
    g_assert_cmpint(lookup(dirs[0], "moved", &again), ==, 0);
    g_assert_cmpuint(again, ==, id);
    getattr_tree();
    assert_attr_is_host(id, "d0/moved");
    stop();
}

static void test_guest_rename_unlink(void)
{
    setup_tree();
    /* RENAME by the guest: the inode's place moves with it. */
    const char *from = "f3", *to = "renamed";
    struct fuse_rename_in rn = {.newdir = dirs[2]};
    g_assert_cmpint(call(FUSE_RENAME, dirs[0], IOV(S(rn), NAME(from), NAME(to)), NULL, 0, NULL), ==,
                    0);
    /* UNLINK by the guest while it holds the nodeid: the inode keeps its fd. */
    g_assert_cmpint(call(FUSE_UNLINK, dirs[1], IOV(NAME("f5")), NULL, 0, NULL), ==, 0);
    gone[0][3] = gone[1][5] = true;
    for (int round = 0; round < 2; round++) {
        getattr_tree();
        struct fuse_attr a;
        g_assert_cmpint(getattr(files[1][5], &a), ==, 0);
    }
    assert_attr_is_host(files[0][3], "d2/renamed");
    struct fuse_attr a;
    g_assert_cmpint(getattr(files[1][5], &a), ==, 0);
    g_assert_cmpuint(a.nlink, ==, 0);
    g_assert_cmpuint(a.size, ==, strlen("d1/f5"));
    stop();
}

static void test_open_budget(void)
{
    static uint64_t fhs[NFILES];
    setup_tree();
    int opened = 0, ret = 0;
    while (opened < NFILES && (ret = open_file(files[0][opened], &fhs[opened])) == 0)
        opened++;
    g_test_message("%d files opened, then %s", opened, strerror(-ret));
    g_assert_cmpint(ret, ==, -EMFILE);
    g_assert_cmpint(opened, >, LIMIT / 4);
    g_assert_cmpint(settled_fds(), <, LIMIT);
    /* Only OPEN is refused: everything else is served, fds of inodes included. */
    assert_attr_is_host(FUSE_ROOT_ID, "");
    getattr_tree();
    uint64_t id;
    g_assert_cmpint(lookup(FUSE_ROOT_ID, "d0", &id), ==, 0);
    g_assert_true(test_daemon_alive(&daemon_));
    for (int i = 0; i < opened; i++)
        release(files[0][i], fhs[i]);
    uint64_t fh;
    g_assert_cmpint(open_file(files[2][0], &fh), ==, 0);
    release(files[2][0], fh);
    stop();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fd-limit/walk", test_walk);
    g_test_add_func("/fd-limit/deep-chain", test_deep_chain);
    g_test_add_func("/fd-limit/host-rename", test_host_rename);
    g_test_add_func("/fd-limit/guest-rename-unlink", test_guest_rename_unlink);
    g_test_add_func("/fd-limit/open-budget", test_open_budget);
    return g_test_run();
}
