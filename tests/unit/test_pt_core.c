/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough core on its own. This test links only libptcore (the core and the tables,
 * meson.build), never an op file or pt_lifetime.c: that the core calls nothing above it is a
 * link-time fact. It builds its pt_fs by hand, as only pt_lifetime.c does in the daemon.
 */
#include "creds.h"
#include "fh_policy.h"
#include "pt_core.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fx {
    char *dir;
    struct pt_fs *fs;
};

static void fx_open(struct fx *f, bool readonly)
{
    struct statx stx;
    struct itab_key key;
    int fd;

    f->dir = g_dir_make_tmp("pt-core-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->fs = g_new0(struct pt_fs, 1);
    f->fs->cfg.shared_dir = f->dir;
    f->fs->cfg.readonly = readonly;
    f->fs->timeout = 1;
    f->fs->proc_self_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    g_assert_cmpint(f->fs->proc_self_fd, >=, 0);
    fh_policy_init(&f->fs->fh, FH_NEVER);
    g_assert_cmpint(itab_new(&f->fs->inodes), ==, 0);
    g_assert_cmpint(htab_new(&f->fs->handles), ==, 0);
    fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    g_assert_cmpint(pt_statx(fd, &stx), ==, 0);
    pt_key_from_statx(&stx, &key);
    g_assert_cmpint(itab_insert_root(f->fs->inodes, &key, fd, stx.stx_mode, &f->fs->root), ==, 0);
}

static void fx_setup(struct fx *f, gconstpointer data)
{
    fx_open(f, data != NULL);
}

static void fx_teardown(struct fx *f, gconstpointer data)
{
    htab_free(f->fs->handles);
    itab_free(f->fs->inodes);
    fh_policy_destroy(&f->fs->fh);
    close(f->fs->proc_self_fd);
    g_free(f->fs);
    char *link = g_build_filename(f->dir, "link", NULL);

    unlink(link); /* what test_intent made */
    g_free(link);
    g_assert_cmpint(rmdir(f->dir), ==, 0);
    g_free(f->dir);
}

/* The one errno table of names from the guest. */
static void test_name_table(void)
{
    char longname[NAME_MAX + 2];
    static const enum pt_name_use uses[] = {PT_NAME_LOOKUP, PT_NAME_NEW, PT_NAME_CREATE};

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    for (size_t i = 0; i < G_N_ELEMENTS(uses); i++) {
        g_assert_cmpint(pt_check_name(NULL, uses[i]), ==, -EINVAL);
        g_assert_cmpint(pt_check_name("", uses[i]), ==, -EINVAL);
        g_assert_cmpint(pt_check_name("a/b", uses[i]), ==, -EINVAL);
        g_assert_cmpint(pt_check_name("/", uses[i]), ==, -EINVAL);
        g_assert_cmpint(pt_check_name(longname, uses[i]), ==, -ENAMETOOLONG);
        g_assert_cmpint(pt_check_name(longname + 1, uses[i]), ==, 0);
        g_assert_cmpint(pt_check_name("a", uses[i]), ==, 0);
        g_assert_cmpint(pt_check_name("...", uses[i]), ==, 0);
        g_assert_cmpint(pt_check_name(".a", uses[i]), ==, 0);
    }
    g_assert_cmpint(pt_check_name(".", PT_NAME_LOOKUP), ==, 0);
    g_assert_cmpint(pt_check_name("..", PT_NAME_LOOKUP), ==, 0);
    g_assert_cmpint(pt_check_name(".", PT_NAME_NEW), ==, -EINVAL);
    g_assert_cmpint(pt_check_name("..", PT_NAME_NEW), ==, -EINVAL);
    g_assert_cmpint(pt_check_name(".", PT_NAME_CREATE), ==, -EISDIR);
    g_assert_cmpint(pt_check_name("..", PT_NAME_CREATE), ==, -EISDIR);
    g_assert_cmpint(pt_dots(".", 1), ==, 1);
    g_assert_cmpint(pt_dots("..", 2), ==, 2);
    g_assert_cmpint(pt_dots("...", 3), ==, 0);
    g_assert_cmpint(pt_dots("..x", 2), ==, 2); /* a length, as getdents64 names come */
    g_assert_cmpint(pt_dots("a", 1), ==, 0);
}

/* "." and ".." of the root are the root, with one more reference each. */
static void test_lookup_dots(struct fx *f, gconstpointer data)
{
    struct fuse_entry_out e;

    rcu_read_lock();
    g_assert_cmpint(pt_do_lookup(f->fs, f->fs->root, ".", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, FUSE_ROOT_ID);
    g_assert_cmpint(pt_do_lookup(f->fs, f->fs->root, "..", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, FUSE_ROOT_ID);
    g_assert_cmpint(pt_do_lookup(f->fs, f->fs->root, "none", &e), ==, -ENOENT);
    rcu_read_unlock();
}

/* --readonly is applied at the entry, from what the op declares, and nowhere else. */
static void test_intent(struct fx *f, gconstpointer data)
{
    bool readonly = data != NULL;
    int erofs = readonly ? -EROFS : 0;
    struct pt_ctx ctx = {.uid = geteuid(), .gid = getegid()};
    struct fuse_entry_out e;
    struct pt_inode *i;
    char *path = g_build_filename(f->dir, "link", NULL);

    g_assert_cmpint(symlink("target", path), ==, 0);
    g_free(path);
    rcu_read_lock();
    g_assert_cmpint(pt_do_lookup(f->fs, f->fs->root, "link", &e), ==, 0);
    g_assert_cmpint(pt_begin(f->fs, &ctx, FUSE_ROOT_ID, PT_READS, &i), ==, 0);
    g_assert_cmpint(pt_begin(f->fs, &ctx, FUSE_ROOT_ID, PT_MODIFIES, &i), ==, erofs);
    g_assert_cmpint(pt_begin(f->fs, &ctx, FUSE_ROOT_ID, PT_MODIFIES_UNLESS_SYMLINK, &i), ==, erofs);
    g_assert_cmpint(pt_begin(f->fs, &ctx, e.nodeid, PT_MODIFIES_UNLESS_SYMLINK, &i), ==, 0);
    g_assert_cmpint(pt_begin(f->fs, &ctx, e.nodeid, PT_MODIFIES, &i), ==, erofs);
    g_assert_cmpint(pt_begin_dir(f->fs, &ctx, e.nodeid, PT_READS, &i), ==, -ENOTDIR);
    g_assert_cmpint(pt_begin_dir(f->fs, &ctx, FUSE_ROOT_ID, PT_MODIFIES, &i), ==, erofs);
    g_assert_cmpint(pt_begin(f->fs, &ctx, 12345, PT_MODIFIES, &i), ==, -EBADF);
    pt_inode_forget(f->fs, e.nodeid, 1);
    g_assert_null(pt_inode_get(f->fs, e.nodeid));
    rcu_read_unlock();
}

static uint64_t heard[3];

static void heard_flush(struct pt_fs *fs, uint64_t nodeid, uint64_t owner)
{
    heard[0] = nodeid + owner;
}

static void heard_release(struct pt_fs *fs, uint64_t fh)
{
    heard[1] = fh;
}

static void heard_forget(struct pt_fs *fs, uint64_t nodeid)
{
    heard[2] = nodeid;
}

/* FLUSH, RELEASE and FORGET reach the lock layer only through the hooks lifetime installs. */
static void test_close_hooks(struct fx *f, gconstpointer data)
{
    static const struct pt_close_hooks hooks = {heard_flush, heard_release, heard_forget};

    rcu_read_lock();
    pt_note_flush(f->fs, 1, 2); /* no hooks: nothing listens */
    pt_note_release(f->fs, 3);
    pt_inode_forget(f->fs, 77, 1);
    g_assert_cmpuint(heard[0] + heard[1] + heard[2], ==, 0);
    f->fs->hooks = &hooks;
    pt_note_flush(f->fs, 1, 2);
    pt_note_release(f->fs, 3);
    pt_inode_forget(f->fs, 77, 1);
    rcu_read_unlock();
    g_assert_cmpuint(heard[0], ==, 3);
    g_assert_cmpuint(heard[1], ==, 3);
    g_assert_cmpuint(heard[2], ==, 77);
}

static uid_t fsuid(void)
{
    return (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
}

static gid_t fsgid(void)
{
    return (gid_t)syscall(SYS_setfsgid, (gid_t)-1);
}

static void *as_daemon_thread(void *arg)
{
    int ret = -1, *result = arg;

    /* Never switched: nothing to do. */
    {
        CREDS_AS_DAEMON(scope, &ret);
        g_assert_cmpint(ret, ==, 0);
    }
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(creds_set(1000, 1001), ==, 0);
    {
        CREDS_AS_DAEMON(scope, &ret);
        g_assert_cmpint(ret, ==, 0);
        g_assert_cmpuint(fsuid(), ==, 0);
        g_assert_cmpuint(fsgid(), ==, 0);
    }
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpuint(fsuid(), ==, 1000);
    g_assert_cmpuint(fsgid(), ==, 1001);
    *result = creds_set(0, 0);
    return NULL;
}

/* The one act-as-daemon guard switches to root for its scope and back. */
static void test_as_daemon(void)
{
    pthread_t t;
    int result = -1;

    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
    /* A thread of its own: the ids are per thread, and its cache starts empty. */
    g_assert_cmpint(pthread_create(&t, NULL, as_daemon_thread, &result), ==, 0);
    g_assert_cmpint(pthread_join(t, NULL), ==, 0);
    g_assert_cmpint(result, ==, 0);
}

/* What each --inode-file-handles mode is served as and needs. */
static void test_fh_policy(void)
{
    char *dir = g_dir_make_tmp("pt-core-XXXXXX", NULL);
    struct fh_policy p;

    g_assert_cmpint(fh_policy_caps(FH_NEVER), ==, CAPS_FH_NONE);
    g_assert_cmpint(fh_policy_caps(FH_AUTO), ==, CAPS_FH_KEEP);
    g_assert_cmpint(fh_policy_caps(FH_PREFER), ==, CAPS_FH_REQUIRED);
    g_assert_cmpint(fh_policy_caps(FH_MANDATORY), ==, CAPS_FH_REQUIRED);
    /* A directory inside a file system is not the whole of it: no handles for FH_AUTO. */
    g_assert_cmpint(fh_policy_for_share(FH_AUTO, dir), ==, FH_NEVER);
    g_assert_cmpint(fh_policy_for_share(FH_NEVER, dir), ==, FH_NEVER);
    g_assert_cmpint(fh_policy_for_share(FH_PREFER, dir), ==, FH_PREFER);
    g_assert_cmpint(fh_policy_for_share(FH_MANDATORY, dir), ==, FH_MANDATORY);
    /* Nothing is in force before activation; FH_NEVER activates to nothing. */
    fh_policy_init(&p, FH_NEVER);
    g_assert_false(fh_policy_wants_handle(&p));
    g_assert_cmpint(fh_policy_activate(&p, -1, -1), ==, 0);
    g_assert_false(fh_policy_wants_handle(&p));
    g_assert_cmpuint(p.fd_budget, >, 0);
    fh_policy_destroy(&p);
    g_assert_cmpint(rmdir(dir), ==, 0);
    g_free(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    rcu_register_thread();
    g_test_add_func("/core/names/table", test_name_table);
    g_test_add("/core/lookup/dots", struct fx, NULL, fx_setup, test_lookup_dots, fx_teardown);
    g_test_add("/core/intent/readwrite", struct fx, NULL, fx_setup, test_intent, fx_teardown);
    g_test_add("/core/intent/readonly", struct fx, "ro", fx_setup, test_intent, fx_teardown);
    g_test_add("/core/close-hooks", struct fx, NULL, fx_setup, test_close_hooks, fx_teardown);
    g_test_add_func("/core/creds/as-daemon", test_as_daemon);
    g_test_add_func("/core/fh-policy", test_fh_policy);
    int ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
