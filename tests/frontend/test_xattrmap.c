/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --xattrmap at the protocol level: a real daemon (default lockdown) gets SETXATTR,
 * GETXATTR, LISTXATTR and REMOVEXATTR through the test front-end, and every result is
 * checked on the host file's own attributes, so a mapping that only looked right in the
 * replies would fail.
 *
 * Two daemons: "prefix all" (":prefix:all::user.virtiofs.::bad:all:::", with --xattr), and
 * the map shorthand with a key behind an unsupported rule, started without --xattr (a map
 * implies it).
 */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

static const char *const prefix_args[] = {
    "--xattr", "--xattrmap=:prefix:all::user.virtiofs.::bad:all:::", NULL};
static const char *const map_args[] = {
    "--xattrmap=/unsupported/all/security./security./ /map/trusted./user.virtiofs./", NULL};

static struct test_daemon daemon_; /* the daemon of the running test */
static struct fe *fe_;             /* its connection, initialized */

/* ---- requests ------------------------------------------------------------------------------ */

/* clang-format off */
#define IOV(...) ((struct iovec[]){__VA_ARGS__}), \
                 (sizeof((struct iovec[]){__VA_ARGS__}) / sizeof(struct iovec))
#define S(x)     {&(x), sizeof(x)}
#define NAME(s)  {(void *)(s), strlen(s) + 1}
/* clang-format on */

/* One request as root; up to out_size payload bytes into out, *out_len the payload length.
 * Returns the FUSE error (0 or -errno). */
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

static uint64_t node(const char *name)
{
    struct fuse_entry_out e = {0};
    g_assert_cmpint(call(FUSE_LOOKUP, FUSE_ROOT_ID, IOV(NAME(name)), &e, sizeof(e), NULL), ==, 0);
    return e.nodeid;
}

static int setxattr_(uint64_t nodeid, const char *name, const char *value)
{
    struct fuse_setxattr_in si = {.size = (uint32_t)strlen(value)};
    return call(FUSE_SETXATTR, nodeid,
                IOV({&si, FUSE_COMPAT_SETXATTR_IN_SIZE}, NAME(name), {(void *)value, si.size}),
                NULL, 0, NULL);
}

/* GETXATTR or LISTXATTR (name NULL) with a size: the data into buf, *len its length; with
 * size 0: *len the size the daemon reports. */
static int get_or_list(uint64_t nodeid, const char *name, char *buf, size_t size, size_t *len)
{
    struct fuse_getxattr_in gi = {.size = (uint32_t)size};
    struct fuse_getxattr_out go = {0};
    uint32_t op = name ? FUSE_GETXATTR : FUSE_LISTXATTR;
    int ret = name ? call(op, nodeid, IOV(S(gi), NAME(name)), size ? (void *)buf : &go,
                          size ? size : sizeof(go), len)
                   : call(op, nodeid, IOV(S(gi)), size ? (void *)buf : &go,
                          size ? size : sizeof(go), len);
    if (!size)
        *len = go.size;
    return ret;
}

static int removexattr_(uint64_t nodeid, const char *name)
{
    return call(FUSE_REMOVEXATTR, nodeid, IOV(NAME(name)), NULL, 0, NULL);
}

/* ---- host side ----------------------------------------------------------------------------- */

static const char *hp(const char *rel)
{
    static char buf[4][PATH_MAX];
    static unsigned next;
    char *p = buf[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", daemon_.share, rel);
    return p;
}

static void hcreate(const char *rel)
{
    g_assert_true(g_file_set_contents(hp(rel), "x", -1, NULL));
}

static void hset(const char *rel, const char *name, const char *value)
{
    g_assert_cmpint(lsetxattr(hp(rel), name, value, strlen(value), 0), ==, 0);
}

/* The host's value of name on rel as a string, or "-errno". */
static const char *hget(const char *rel, const char *name)
{
    static char buf[256];
    ssize_t n = lgetxattr(hp(rel), name, buf, sizeof(buf) - 1);
    if (n < 0)
        snprintf(buf, sizeof(buf), "%d", -errno);
    else
        buf[n] = '\0';
    return buf;
}

#define ENODATA_S "-61"

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A listxattr list as its names sorted and joined with spaces (the order is the fs's). */
static gchar *names_of(const char *list, size_t len)
{
    GPtrArray *names = g_ptr_array_new();
    for (size_t i = 0; i < len; i += strlen(list + i) + 1)
        g_ptr_array_add(names, (gpointer)(list + i));
    g_ptr_array_sort(names, cmp_names);
    g_ptr_array_add(names, NULL);
    gchar *s = g_strjoinv(" ", (gchar **)names->pdata);
    g_ptr_array_free(names, TRUE);
    return s;
}

/* Runs body against a fresh daemon started with args. */
static void with_daemon(const char *const *args, void (*body)(void))
{
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    struct fe_config cfg = {.socket_path = daemon_.socket};
    g_assert_cmpint(fe_open_retry(&cfg, &fe_, 1000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe_), ==, 0);
    body();
    fe_close(fe_);
    fe_ = NULL;
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* ---- ":prefix:all::user.virtiofs.::bad:all:::" --------------------------------------------- */

static void prefix_set_get_remove(void)
{
    hcreate("f");
    uint64_t f = node("f");
    char buf[64];
    size_t n = 0;

    g_assert_cmpint(setxattr_(f, "user.foo", "bar"), ==, 0);
    g_assert_cmpstr(hget("f", "user.virtiofs.user.foo"), ==, "bar");
    g_assert_cmpstr(hget("f", "user.foo"), ==, ENODATA_S);
    /* Any guest namespace lands under the prefix, trusted.* included. */
    g_assert_cmpint(setxattr_(f, "trusted.overlay.opaque", "y"), ==, 0);
    g_assert_cmpstr(hget("f", "user.virtiofs.trusted.overlay.opaque"), ==, "y");

    g_assert_cmpint(get_or_list(f, "user.foo", NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 3);
    g_assert_cmpint(get_or_list(f, "user.foo", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "bar", 3);
    /* The host's own unprefixed attribute is out of the guest's reach. */
    hset("f", "user.hostonly", "h");
    g_assert_cmpint(get_or_list(f, "user.hostonly", buf, sizeof(buf), &n), ==, -ENODATA);

    g_assert_cmpint(removexattr_(f, "user.foo"), ==, 0);
    g_assert_cmpstr(hget("f", "user.virtiofs.user.foo"), ==, ENODATA_S);
    g_assert_cmpint(removexattr_(f, "user.hostonly"), ==, -ENODATA);
    g_assert_cmpstr(hget("f", "user.hostonly"), ==, "h");
}

static void prefix_list(void)
{
    hcreate("l");
    hset("l", "user.hostonly", "1");
    hset("l", "user.virtiofs.user.visible", "2");
    hset("l", "user.virtiofs.trusted.t", "3");
    hset("l", "user.virtiofs.", "4"); /* just the prefix: no guest name */
    uint64_t l = node("l");
    static const char want[] = "trusted.t user.visible";
    const size_t mapped = sizeof("user.visible") + sizeof("trusted.t");
    char buf[1024];
    size_t n = 0;

    g_assert_cmpint(get_or_list(l, NULL, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, mapped);
    g_assert_cmpint(get_or_list(l, NULL, buf, sizeof(buf), &n), ==, 0);
    gchar *got = names_of(buf, n);
    g_assert_cmpstr(got, ==, want);
    g_free(got);
    /* The caller's size counts against the mapped list, not the host's longer one. */
    g_assert_cmpint(get_or_list(l, NULL, buf, mapped, &n), ==, 0);
    g_assert_cmpuint(n, ==, mapped);
    g_assert_cmpint(get_or_list(l, NULL, buf, mapped - 1, &n), ==, -ERANGE);

    /* Only host attributes without the prefix: an empty list. */
    hcreate("bare");
    hset("bare", "user.hostonly", "1");
    uint64_t b = node("bare");
    g_assert_cmpint(get_or_list(b, NULL, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 0);
    g_assert_cmpint(get_or_list(b, NULL, buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpuint(n, ==, 0);
}

static void test_prefix_set_get_remove(void)
{
    with_daemon(prefix_args, prefix_set_get_remove);
}

static void test_prefix_list(void)
{
    with_daemon(prefix_args, prefix_list);
}

/* ---- the map shorthand with a key, behind an unsupported rule ------------------------------ */

static void map_refusals(void)
{
    hcreate("m");
    hset("m", "user.virtiofs.trusted.t", "mapped");
    uint64_t m = node("m");
    char buf[64];
    size_t n = 0;

    /* trusted.* is mapped, other names pass unchanged. */
    g_assert_cmpint(setxattr_(m, "trusted.new", "v"), ==, 0);
    g_assert_cmpstr(hget("m", "user.virtiofs.trusted.new"), ==, "v");
    g_assert_cmpint(setxattr_(m, "user.plain", "p"), ==, 0);
    g_assert_cmpstr(hget("m", "user.plain"), ==, "p");
    g_assert_cmpint(get_or_list(m, "trusted.t", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, "mapped", 6);

    /* The mapped names themselves are refused: EPERM, and absent when read. */
    g_assert_cmpint(setxattr_(m, "user.virtiofs.direct", "d"), ==, -EPERM);
    g_assert_cmpstr(hget("m", "user.virtiofs.direct"), ==, ENODATA_S);
    g_assert_cmpint(removexattr_(m, "user.virtiofs.trusted.t"), ==, -EPERM);
    g_assert_cmpstr(hget("m", "user.virtiofs.trusted.t"), ==, "mapped");
    g_assert_cmpint(get_or_list(m, "user.virtiofs.trusted.t", buf, sizeof(buf), &n), ==, -ENODATA);
    /* security.* is unsupported. */
    g_assert_cmpint(setxattr_(m, "security.label", "s"), ==, -EOPNOTSUPP);
    g_assert_cmpstr(hget("m", "security.label"), ==, ENODATA_S);
}

static void map_list(void)
{
    hcreate("ml");
    hset("ml", "user.virtiofs.trusted.t", "1");
    hset("ml", "user.plain", "2");
    hset("ml", "trusted.hostonly", "3"); /* the host's own trusted.*: hidden */
    uint64_t ml = node("ml");
    char buf[1024];
    size_t n = 0;

    g_assert_cmpint(get_or_list(ml, NULL, buf, sizeof(buf), &n), ==, 0);
    gchar *got = names_of(buf, n);
    g_assert_cmpstr(got, ==, "trusted.t user.plain");
    g_free(got);
    g_assert_cmpint(get_or_list(ml, NULL, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, sizeof("trusted.t") + sizeof("user.plain"));
}

static void test_map_refusals(void)
{
    with_daemon(map_args, map_refusals);
}

static void test_map_list(void)
{
    with_daemon(map_args, map_list);
}

/* ---- a bad map ------------------------------------------------------------------------------ */

/* A bad map is a usage error: status 2 and one line naming the option, before any start-up. */
static void test_bad_map(void)
{
    gchar *dir = g_dir_make_tmp("vfs-xm-XXXXXX", NULL);
    gchar *sock = g_build_filename(dir, "sock", NULL);
    gchar *sock_arg = g_strdup_printf("--socket-path=%s", sock);
    gchar *dir_arg = g_strdup_printf("--shared-dir=%s", dir);
    gchar *argv[] = {(gchar *)test_daemon_path(), sock_arg, dir_arg,
                     "--xattrmap=:prefix:all::user.virtiofs.: :nope:all:::", NULL};
    gchar *out = NULL, *err = NULL;
    gint status = 0;

    g_assert_true(
        g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, NULL));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 2);
    g_assert_cmpstr(err, ==,
                    "virtiofsd: invalid --xattrmap rule 2 \":nope:all:::\": unknown type 'nope' "
                    "(accepted: prefix, ok, bad, unsupported, map)\n");
    g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
    g_free(out);
    g_free(err);
    g_free(sock_arg);
    g_free(dir_arg);
    g_free(sock);
    g_rmdir(dir);
    g_free(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (geteuid() != 0) { /* trusted.* on the host and the default sandbox need root */
        printf("1..0 # SKIP needs root\n");
        return 0;
    }
    g_test_set_nonfatal_assertions();
    g_test_add_func("/xattrmap/prefix/set-get-remove", test_prefix_set_get_remove);
    g_test_add_func("/xattrmap/prefix/list", test_prefix_list);
    g_test_add_func("/xattrmap/map/refusals", test_map_refusals);
    g_test_add_func("/xattrmap/map/list", test_map_list);
    g_test_add_func("/xattrmap/bad-map", test_bad_map);
    return g_test_run();
}
