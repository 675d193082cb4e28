/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --posix-acl, --security-label and --allow-mmap at the protocol level: a real daemon (default
 * lockdown) is driven through the test front-end, and every effect is checked on the host's
 * own state (getxattr(2), stat(2)), not only in the replies.
 *
 * - INIT: each option offers its flags (FUSE_POSIX_ACL with FUSE_DONT_MASK and
 *   FUSE_SETXATTR_EXT, FUSE_SECURITY_CTX, FUSE_DIRECT_IO_ALLOW_MMAP) and only it; a guest that
 *   cannot do ACLs or security contexts is refused with EPROTO, as by the Rust virtiofsd.
 * - ACLs: system.posix_acl_access / _default set through the daemon land on the host and move
 *   the mode; FUSE_SETXATTR_ACL_KILL_SGID drops S_ISGID; creations apply the guest's umask,
 *   or the parent's default ACL instead; without --posix-acl the names are refused (ENOTSUP)
 *   and hidden from lists.
 * - Security contexts: the extension after CREATE, MKDIR, MKNOD, SYMLINK and TMPFILE labels
 *   the new host inode (security.capability, the one security.* name the host accepts from a
 *   daemon without CAP_SYS_ADMIN and without an LSM), both as kernels 7.38+ send it
 *   (total_extlen) and as older ones do (appended after the names); an inode that cannot be
 *   labelled is removed; malformed extensions get EINVAL and create nothing; without
 *   --security-label extensions are skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif
#define ACL_FLAGS (FUSE_POSIX_ACL | FUSE_DONT_MASK | FUSE_SETXATTR_EXT)

/* Everything a recent guest kernel offers that matters here. */
static const uint64_t guest_all = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES |
                                  FUSE_DO_READDIRPLUS | ACL_FLAGS | FUSE_SECURITY_CTX |
                                  FUSE_DIRECT_IO_ALLOW_MMAP;

static struct test_daemon daemon_; /* the daemon of the running test */
static struct fe *fe_;             /* its connection */
static bool setxattr_ext_;         /* FUSE_SETXATTR_EXT agreed: the long fuse_setxattr_in */

/* ---- daemon and connection ----------------------------------------------------------------- */

static void start(const char *const *args)
{
    g_assert_cmpint(test_daemon_start(&daemon_, args), ==, 0);
    struct fe_config cfg = {.socket_path = daemon_.socket};
    g_assert_cmpint(fe_open_retry(&cfg, &fe_, 1000), ==, 0);
}

static uint64_t init_flags(uint64_t guest)
{
    struct fuse_init_out out;
    g_assert_cmpint(fe_fuse_init_flags(fe_, guest, &out), ==, 0);
    uint64_t flags = out.flags | (uint64_t)out.flags2 << 32;
    setxattr_ext_ = flags & FUSE_SETXATTR_EXT;
    return flags;
}

static void stop(void)
{
    fe_close(fe_);
    fe_ = NULL;
    g_assert_true(test_daemon_alive(&daemon_));
    g_assert_false(test_daemon_log_contains(&daemon_, "not implemented"));
    g_assert_cmpint(test_daemon_stop(&daemon_), ==, 0);
}

/* ---- requests ------------------------------------------------------------------------------ */

/* clang-format off */
#define IOV(...) ((struct iovec[]){__VA_ARGS__}), \
                 (sizeof((struct iovec[]){__VA_ARGS__}) / sizeof(struct iovec))
#define S(x)     {&(x), sizeof(x)}
#define NAME(s)  {(void *)(s), strlen(s) + 1}
#define BUF(p, n) {(void *)(p), (n)}
/* clang-format on */

/* One request as root with total_extlen; up to out_size payload bytes into out. Returns the
 * FUSE error (0 or -errno). */
static int call_ext(uint16_t extlen, uint32_t op, uint64_t node, const struct iovec *in,
                    unsigned nin, void *out, size_t out_size, size_t *out_len)
{
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_ext(fe_, 1, extlen, op, node, in, nin, out_size, &r), ==, 0);
    if (r.error == 0 && out)
        memcpy(out, r.data, MIN(r.data_len, out_size));
    if (out_len)
        *out_len = r.data_len;
    return r.error;
}

static int call(uint32_t op, uint64_t node, const struct iovec *in, unsigned nin, void *out,
                size_t out_size, size_t *out_len)
{
    return call_ext(0, op, node, in, nin, out, out_size, out_len);
}

static uint64_t lookup_in(uint64_t parent, const char *name)
{
    struct fuse_entry_out e = {0};
    g_assert_cmpint(call(FUSE_LOOKUP, parent, IOV(NAME(name)), &e, sizeof(e), NULL), ==, 0);
    return e.nodeid;
}

static uint64_t node(const char *name)
{
    return lookup_in(FUSE_ROOT_ID, name);
}

static int setxattr_flags(uint64_t nodeid, const char *name, const void *value, size_t size,
                          uint32_t setxattr_flags)
{
    struct fuse_setxattr_in si = {.size = (uint32_t)size, .setxattr_flags = setxattr_flags};
    size_t len = setxattr_ext_ ? sizeof(si) : FUSE_COMPAT_SETXATTR_IN_SIZE;
    return call(FUSE_SETXATTR, nodeid, IOV(BUF(&si, len), NAME(name), BUF(value, size)), NULL, 0,
                NULL);
}

static int setxattr_(uint64_t nodeid, const char *name, const void *value, size_t size)
{
    return setxattr_flags(nodeid, name, value, size, 0);
}

/* GETXATTR (name) or LISTXATTR (name NULL) with size: the data into buf, *len its length;
 * with size 0, *len the size reported. */
static int get_or_list(uint64_t nodeid, const char *name, void *buf, size_t size, size_t *len)
{
    struct fuse_getxattr_in gi = {.size = (uint32_t)size};
    struct fuse_getxattr_out go = {0};
    void *out = size ? buf : (void *)&go;
    size_t out_size = size ? size : sizeof(go);
    int ret = name ? call(FUSE_GETXATTR, nodeid, IOV(S(gi), NAME(name)), out, out_size, len)
                   : call(FUSE_LISTXATTR, nodeid, IOV(S(gi)), out, out_size, len);
    if (!size)
        *len = go.size;
    return ret;
}

static int removexattr_(uint64_t nodeid, const char *name)
{
    return call(FUSE_REMOVEXATTR, nodeid, IOV(NAME(name)), NULL, 0, NULL);
}

static int mkdir_(uint64_t parent, const char *name, uint32_t mode, uint32_t umask_bits,
                  struct fuse_entry_out *e)
{
    struct fuse_mkdir_in mi = {.mode = mode, .umask = umask_bits};
    return call(FUSE_MKDIR, parent, IOV(S(mi), NAME(name)), e, sizeof(*e), NULL);
}

/* CREATE, the reply's entry in *e (when not NULL); the handle is released. */
static int create_(uint64_t parent, const char *name, uint32_t mode, uint32_t umask_bits,
                   struct fuse_entry_out *e)
{
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | mode, .umask = umask_bits};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out = {0};
    int ret = call(FUSE_CREATE, parent, IOV(S(ci), NAME(name)), &out, sizeof(out), NULL);
    if (ret == 0) {
        struct fuse_release_in ri = {.fh = out.o.fh};
        g_assert_cmpint(call(FUSE_RELEASE, out.e.nodeid, IOV(S(ri)), NULL, 0, NULL), ==, 0);
        if (e)
            *e = out.e;
    }
    return ret;
}

/* ---- host side ----------------------------------------------------------------------------- */

static const char *hp(const char *rel)
{
    static char buf[8][PATH_MAX];
    static unsigned next;
    char *p = buf[next++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", daemon_.share, rel);
    return p;
}

static void hcreate(const char *rel, mode_t mode)
{
    g_assert_true(g_file_set_contents(hp(rel), "x", -1, NULL));
    g_assert_cmpint(chmod(hp(rel), mode), ==, 0);
}

static mode_t hmode(const char *rel)
{
    struct stat st;
    g_assert_cmpint(lstat(hp(rel), &st), ==, 0);
    return st.st_mode & 07777;
}

static bool hexists(const char *rel)
{
    struct stat st;
    return lstat(hp(rel), &st) == 0;
}

/* The host's value of name on rel into buf; returns its length or -errno. */
static ssize_t hget(const char *rel, const char *name, void *buf, size_t size)
{
    ssize_t n = lgetxattr(hp(rel), name, buf, size);
    return n < 0 ? -errno : n;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A listxattr list as its names sorted and joined with spaces, the ACL names left out. */
static gchar *names_of(const char *list, size_t len)
{
    GPtrArray *names = g_ptr_array_new();
    for (size_t i = 0; i < len; i += strlen(list + i) + 1)
        if (!g_str_has_prefix(list + i, "system.posix_acl_"))
            g_ptr_array_add(names, (gpointer)(list + i));
    g_ptr_array_sort(names, cmp_names);
    g_ptr_array_add(names, NULL);
    gchar *s = g_strjoinv(" ", (gchar **)names->pdata);
    g_ptr_array_free(names, TRUE);
    return s;
}

/* The host's names of rel without the ACL names, as names_of gives them. */
static gchar *hnames(const char *rel)
{
    char list[4096];
    ssize_t n = llistxattr(hp(rel), list, sizeof(list));
    g_assert_cmpint(n, >=, 0);
    return names_of(list, (size_t)n);
}

/* Asserts the host value of name on rel is exactly value. */
static void assert_hvalue(const char *rel, const char *name, const void *value, size_t size)
{
    char buf[512];
    ssize_t n = hget(rel, name, buf, sizeof(buf));
    g_assert_cmpint(n, ==, (ssize_t)size);
    g_assert_cmpmem(buf, (size_t)n, value, size);
}

/* ---- ACL values (the posix_acl_xattr format the kernel reads and writes) ------------------- */

enum { A_USER_OBJ = 1, A_USER = 2, A_GROUP_OBJ = 4, A_GROUP = 8, A_MASK = 0x10, A_OTHER = 0x20 };
#define NO_ID 0xffffffffu

struct acl_entry {
    uint16_t tag, perm;
    uint32_t id;
};
struct acl {
    uint32_t version; /* 2 */
    struct acl_entry e[5];
};

/* user::u, user:1234:n, group::g, mask::m, other::o (an extended ACL: the host keeps it). */
static struct acl acl5(uint16_t u, uint16_t n, uint16_t g, uint16_t m, uint16_t o)
{
    return (struct acl){2,
                        {{A_USER_OBJ, u, NO_ID},
                         {A_USER, n, 1234},
                         {A_GROUP_OBJ, g, NO_ID},
                         {A_MASK, m, NO_ID},
                         {A_OTHER, o, NO_ID}}};
}

/* user::u, group::g, group:4321:n, mask::m, other::o. */
static struct acl acl5g(uint16_t u, uint16_t g, uint16_t n, uint16_t m, uint16_t o)
{
    return (struct acl){2,
                        {{A_USER_OBJ, u, NO_ID},
                         {A_GROUP_OBJ, g, NO_ID},
                         {A_GROUP, n, 4321},
                         {A_MASK, m, NO_ID},
                         {A_OTHER, o, NO_ID}}};
}

/* ---- security contexts --------------------------------------------------------------------- */

/* A v2 file capability (cap_net_raw permitted): what security.capability accepts. */
static const uint32_t cap_value[5] = {0x02000000, 1u << 13, 0, 0, 0};

/*
 * The security context extension as the kernel builds it: fuse_secctx_header (size, count 1),
 * fuse_secctx (size), the name with its NUL, the value, zeros to a multiple of 8. Returns its
 * length.
 */
static size_t secctx_ext(uint8_t *buf, const char *name, const void *value, uint32_t size)
{
    size_t name_len = strlen(name) + 1;
    size_t total = sizeof(struct fuse_secctx_header) +
                   FUSE_REC_ALIGN(sizeof(struct fuse_secctx) + name_len + size);
    struct fuse_secctx_header h = {.size = (uint32_t)total, .nr_secctx = 1};
    struct fuse_secctx c = {.size = size};
    memset(buf, 0, total);
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &c, sizeof(c));
    memcpy(buf + sizeof(h) + sizeof(c), name, name_len);
    memcpy(buf + sizeof(h) + sizeof(c) + name_len, value, size);
    return total;
}

static size_t cap_ext(uint8_t *buf)
{
    return secctx_ext(buf, "security.capability", cap_value, sizeof(cap_value));
}

/* Whether the host file system takes security.capability from this process at all. */
static bool host_takes_caps(void)
{
    hcreate("probe-caps", 0644);
    bool ok =
        lsetxattr(hp("probe-caps"), "security.capability", cap_value, sizeof(cap_value), 0) == 0;
    g_assert_cmpint(unlink(hp("probe-caps")), ==, 0);
    return ok;
}

/* CREATE of name with the extension bytes ext: counted in total_extlen (new) or appended
 * after the name uncounted (old kernels). */
static int create_ext(uint64_t parent, const char *name, const void *ext, size_t len, bool old)
{
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out = {0};
    uint16_t extlen = old ? 0 : (uint16_t)(len / 8);
    int ret = call_ext(extlen, FUSE_CREATE, parent, IOV(S(ci), NAME(name), BUF(ext, len)), &out,
                       sizeof(out), NULL);
    if (ret == 0) {
        struct fuse_release_in ri = {.fh = out.o.fh};
        g_assert_cmpint(call(FUSE_RELEASE, out.e.nodeid, IOV(S(ri)), NULL, 0, NULL), ==, 0);
    }
    return ret;
}

static int mkdir_ext(const char *name, const void *ext, size_t len, bool old)
{
    struct fuse_mkdir_in mi = {.mode = 0755};
    struct fuse_entry_out e;
    return call_ext(old ? 0 : (uint16_t)(len / 8), FUSE_MKDIR, FUSE_ROOT_ID,
                    IOV(S(mi), NAME(name), BUF(ext, len)), &e, sizeof(e), NULL);
}

static int mknod_ext(const char *name, const void *ext, size_t len, bool old)
{
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0644};
    struct fuse_entry_out e;
    return call_ext(old ? 0 : (uint16_t)(len / 8), FUSE_MKNOD, FUSE_ROOT_ID,
                    IOV(S(mi), NAME(name), BUF(ext, len)), &e, sizeof(e), NULL);
}

static int symlink_ext(const char *name, const char *target, const void *ext, size_t len, bool old)
{
    struct fuse_entry_out e;
    return call_ext(old ? 0 : (uint16_t)(len / 8), FUSE_SYMLINK, FUSE_ROOT_ID,
                    IOV(NAME(name), NAME(target), BUF(ext, len)), &e, sizeof(e), NULL);
}

/* ---- INIT ---------------------------------------------------------------------------------- */

static void test_init_flags(void)
{
    static const struct {
        const char *args[4];
        bool acl, sec, mmap;
    } rows[] = {
        {{"--xattr"}, false, false, false},
        {{"--posix-acl"}, true, false, false},
        {{"-o", "posix_acl"}, true, false, false},
        {{"--security-label"}, false, true, false},
        {{"--allow-mmap", "--cache=never"}, false, false, true},
        {{"--allow-mmap"}, false, false, true}, /* as in the Rust virtiofsd: any cache mode */
        {{"--posix-acl", "--security-label", "--allow-mmap"}, true, true, true},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
        start(rows[i].args);
        uint64_t f = init_flags(guest_all);
        g_assert_cmpuint(f & ACL_FLAGS, ==, rows[i].acl ? ACL_FLAGS : 0);
        g_assert_cmpuint(f & FUSE_SECURITY_CTX, ==, rows[i].sec ? FUSE_SECURITY_CTX : 0);
        g_assert_cmpuint(f & FUSE_DIRECT_IO_ALLOW_MMAP, ==,
                         rows[i].mmap ? FUSE_DIRECT_IO_ALLOW_MMAP : 0);
        /* Only what the guest offered: the bit is left out for a guest without it. */
        if (rows[i].mmap)
            g_assert_cmpuint(init_flags(guest_all & ~FUSE_DIRECT_IO_ALLOW_MMAP) &
                                 FUSE_DIRECT_IO_ALLOW_MMAP,
                             ==, 0);
        stop();
    }
}

/* A guest kernel that cannot do what the options ask for does not mount (EPROTO). */
static void test_init_refused(void)
{
    static const char *const acl_args[] = {"--posix-acl", NULL};
    static const char *const sec_args[] = {"--security-label", NULL};
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out ao;

    start(acl_args);
    for (int missing = 0; missing < 3; missing++) {
        uint64_t lack = missing == 0   ? FUSE_POSIX_ACL
                        : missing == 1 ? FUSE_DONT_MASK
                                       : FUSE_SETXATTR_EXT;
        g_assert_cmpint(fe_fuse_init_flags(fe_, guest_all & ~lack, NULL), ==, -EPROTO);
        g_assert_cmpint(call(FUSE_GETATTR, FUSE_ROOT_ID, IOV(S(gi)), &ao, sizeof(ao), NULL), ==,
                        -EIO);
    }
    g_assert_true(test_daemon_log_contains(&daemon_, "guest kernel does not support POSIX ACLs"));
    g_assert_cmpuint(init_flags(guest_all) & ACL_FLAGS, ==, ACL_FLAGS);
    g_assert_cmpint(call(FUSE_GETATTR, FUSE_ROOT_ID, IOV(S(gi)), &ao, sizeof(ao), NULL), ==, 0);
    /* A later INIT (a guest reset) lacking them is refused again. */
    g_assert_cmpint(fe_fuse_init_flags(fe_, guest_all & ~FUSE_POSIX_ACL, NULL), ==, -EPROTO);
    g_assert_cmpint(call(FUSE_GETATTR, FUSE_ROOT_ID, IOV(S(gi)), &ao, sizeof(ao), NULL), ==, -EIO);
    stop();

    start(sec_args);
    g_assert_cmpint(fe_fuse_init_flags(fe_, guest_all & ~FUSE_SECURITY_CTX, NULL), ==, -EPROTO);
    g_assert_cmpuint(init_flags(guest_all) & FUSE_SECURITY_CTX, ==, FUSE_SECURITY_CTX);
    stop();
}

/* ---- the command line ---------------------------------------------------------------------- */

/* Runs the daemon with args; returns its exit status, stderr into *err (g_free). */
static int run_daemon(const char *const *args, gchar **err)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer)test_daemon_path());
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (gpointer)*a);
    g_ptr_array_add(argv, NULL);
    gint status = 0;
    g_assert_true(g_spawn_sync(NULL, (gchar **)argv->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                               NULL, NULL, err, &status, NULL));
    g_ptr_array_free(argv, TRUE);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_options(void)
{
    static const char conflict[] =
        "virtiofsd: --posix-acl cannot be used with --translate-uid or --translate-gid\n";
    gchar *dir = g_dir_make_tmp("vfs-acl-XXXXXX", NULL);
    gchar *sock = g_strdup_printf("--socket-path=%s/sock", dir);
    gchar *share = g_strdup_printf("--shared-dir=%s", dir);
    const char *const uid[] = {sock, share, "--posix-acl", "--translate-uid=map:0:0:1", NULL};
    const char *const gid[] = {sock, share, "--translate-gid=guest:5:6:1", "-o", "posix_acl", NULL};
    const char *const ok[] = {"--posix-acl", "--security-label", "--allow-mmap",
                              "-o",          "security_label",   "--translate-uid=map:0:0:1",
                              "-o",          "no_posix_acl",     "--print-capabilities",
                              NULL};
    gchar *err = NULL;

    g_assert_cmpint(run_daemon(uid, &err), ==, 2);
    g_assert_cmpstr(err, ==, conflict);
    g_free(err);
    g_assert_cmpint(run_daemon(gid, &err), ==, 2);
    g_assert_cmpstr(err, ==, conflict);
    g_free(err);
    /* No "not implemented" warning; -o no_posix_acl turns it off again (no conflict). */
    g_assert_cmpint(run_daemon(ok, &err), ==, 0);
    g_assert_cmpstr(err, ==, "");
    g_free(err);
    g_free(sock);
    g_free(share);
    g_rmdir(dir);
    g_free(dir);
}

/* ---- ACLs ---------------------------------------------------------------------------------- */

static const char *const acl_args[] = {"--posix-acl", NULL};

static void test_access_acl(void)
{
    start(acl_args);
    g_assert_cmpuint(init_flags(guest_all) & ACL_FLAGS, ==, ACL_FLAGS);
    hcreate("f", 0644);
    uint64_t f = node("f");
    struct acl a = acl5(6, 4, 4, 6, 0);
    char buf[512];
    size_t n = 0;

    /* Set through the daemon: on the host as sent, and the mode follows (group = mask). */
    g_assert_cmpint(setxattr_(f, "system.posix_acl_access", &a, sizeof(a)), ==, 0);
    assert_hvalue("f", "system.posix_acl_access", &a, sizeof(a));
    g_assert_cmpint(hmode("f"), ==, 0660);
    g_assert_cmpint(get_or_list(f, "system.posix_acl_access", NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, sizeof(a));
    g_assert_cmpint(get_or_list(f, "system.posix_acl_access", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, &a, sizeof(a));
    g_assert_cmpint(get_or_list(f, NULL, buf, sizeof(buf), &n), ==, 0);
    g_assert_nonnull(memmem(buf, n, "system.posix_acl_access", sizeof("system.posix_acl_access")));

    /* A narrower ACL narrows the mode too. */
    a = acl5(4, 4, 0, 4, 0);
    g_assert_cmpint(setxattr_(f, "system.posix_acl_access", &a, sizeof(a)), ==, 0);
    assert_hvalue("f", "system.posix_acl_access", &a, sizeof(a));
    g_assert_cmpint(hmode("f"), ==, 0440);

    g_assert_cmpint(removexattr_(f, "system.posix_acl_access"), ==, 0);
    g_assert_cmpint(hget("f", "system.posix_acl_access", buf, sizeof(buf)), ==, -ENODATA);

    /* FUSE_SETXATTR_ACL_KILL_SGID drops S_ISGID; without it, root keeps it. */
    hcreate("sgid", 02770);
    hcreate("keep", 02770);
    a = acl5(6, 4, 4, 6, 0);
    g_assert_cmpint(setxattr_flags(node("sgid"), "system.posix_acl_access", &a, sizeof(a),
                                   FUSE_SETXATTR_ACL_KILL_SGID),
                    ==, 0);
    g_assert_cmpint(hmode("sgid"), ==, 0660);
    g_assert_cmpint(setxattr_(node("keep"), "system.posix_acl_access", &a, sizeof(a)), ==, 0);
    g_assert_cmpint(hmode("keep"), ==, 02660);

    /*
     * Only the owner may set an access ACL: another caller's KILL_SGID request is refused and
     * leaves S_ISGID of the root-owned file alone (the daemon cleared it as root before).
     */
    hcreate("other", 02775);
    struct fuse_setxattr_in si = {.size = sizeof(a), .setxattr_flags = FUSE_SETXATTR_ACL_KILL_SGID};
    const char *acl_name = "system.posix_acl_access";
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe_, 1, 1000, 1000, FUSE_SETXATTR, node("other"),
                               IOV(S(si), NAME(acl_name), BUF(&a, sizeof(a))), 0, &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, -EPERM);
    g_assert_cmpint(hmode("other"), ==, 02775);
    stop();
}

/*
 * Access granted by a named group of an ACL (the guest kernel checked the caller is in it;
 * FUSE requests do not carry supplementary groups): the daemon retries with the ACL's groups.
 */
static void test_acl_named_group(void)
{
    start(acl_args);
    init_flags(guest_all);
    struct acl a = acl5g(6, 0, 6, 6, 0), d = acl5g(7, 0, 7, 7, 0);
    struct fuse_open_in oi = {.flags = O_RDWR};
    struct fuse_open_out oo;
    struct fe_reply r;

    hcreate("gf", 0600);
    g_assert_cmpint(setxattr_(node("gf"), "system.posix_acl_access", &a, sizeof(a)), ==, 0);
    g_assert_cmpint(
        fe_fuse_as(fe_, 1, 1000, 1000, FUSE_OPEN, node("gf"), IOV(S(oi)), sizeof(oo), &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    memcpy(&oo, r.data, sizeof(oo));
    struct fuse_release_in ri = {.fh = oo.fh};
    g_assert_cmpint(call(FUSE_RELEASE, node("gf"), IOV(S(ri)), NULL, 0, NULL), ==, 0);

    /* A directory writable through the named group: creating in it works, as the caller. */
    g_assert_cmpint(mkdir(hp("gd"), 0700), ==, 0);
    g_assert_cmpint(setxattr_(node("gd"), "system.posix_acl_access", &d, sizeof(d)), ==, 0);
    struct fuse_mkdir_in mi = {.mode = 0755, .umask = 022};
    struct fuse_entry_out e;
    g_assert_cmpint(fe_fuse_as(fe_, 1, 1000, 1000, FUSE_MKDIR, node("gd"), IOV(S(mi), NAME("sub")),
                               sizeof(e), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    struct stat st;
    g_assert_cmpint(lstat(hp("gd/sub"), &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, 1000);
    g_assert_cmpint(st.st_mode & 07777, ==, 0755);

    /* Without the ACL entry the host still refuses (nothing is granted beyond it). */
    hcreate("nf", 0600);
    g_assert_cmpint(
        fe_fuse_as(fe_, 1, 1000, 1000, FUSE_OPEN, node("nf"), IOV(S(oi)), sizeof(oo), &r), ==, 0);
    g_assert_cmpint(r.error, ==, -EACCES);
    stop();
}

/* With FUSE_DONT_MASK the daemon applies the guest's umask, unless the parent has a default
 * ACL, which then decides alone (the host kernel's rule for a local caller). */
static void test_default_acl_and_umask(void)
{
    start(acl_args);
    init_flags(guest_all);
    struct fuse_entry_out e;
    char buf[512];

    g_assert_cmpint(mkdir_(FUSE_ROOT_ID, "plain", 0777, 022, &e), ==, 0);
    g_assert_cmpint(hmode("plain"), ==, 0755);
    uint64_t plain = e.nodeid;
    g_assert_cmpint(create_(plain, "f", 0666, 027, NULL), ==, 0);
    g_assert_cmpint(hmode("plain/f"), ==, 0640);
    /* The umask is the request's, not left over from the one before. */
    g_assert_cmpint(create_(plain, "g", 0666, 0, NULL), ==, 0);
    g_assert_cmpint(hmode("plain/g"), ==, 0666);
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0666, .umask = 022};
    g_assert_cmpint(call(FUSE_MKNOD, plain, IOV(S(mi), NAME("p")), &e, sizeof(e), NULL), ==, 0);
    g_assert_cmpint(hmode("plain/p"), ==, 0644);
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0666, .umask = 077};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    g_assert_cmpint(call(FUSE_TMPFILE, plain, IOV(S(ci), NAME("/")), &out, sizeof(out), NULL), ==,
                    0);
    g_assert_cmpuint(out.e.attr.mode & 07777, ==, 0600);

    /* Under a default ACL the umask does not apply; the new inodes inherit the ACL. */
    g_assert_cmpint(mkdir_(FUSE_ROOT_ID, "inh", 0777, 0, &e), ==, 0);
    uint64_t inh = e.nodeid;
    struct acl d = acl5(7, 7, 5, 7, 0);
    g_assert_cmpint(setxattr_(inh, "system.posix_acl_default", &d, sizeof(d)), ==, 0);
    assert_hvalue("inh", "system.posix_acl_default", &d, sizeof(d));
    g_assert_cmpint(create_(inh, "g", 0666, 077, NULL), ==, 0);
    g_assert_cmpint(hmode("inh/g"), ==, 0660);
    struct acl inherited = acl5(6, 7, 5, 6, 0);
    assert_hvalue("inh/g", "system.posix_acl_access", &inherited, sizeof(inherited));
    g_assert_cmpint(mkdir_(inh, "sub", 0777, 077, &e), ==, 0);
    g_assert_cmpint(hmode("inh/sub"), ==, 0770);
    assert_hvalue("inh/sub", "system.posix_acl_default", &d, sizeof(d));
    size_t n = 0;
    g_assert_cmpint(get_or_list(e.nodeid, "system.posix_acl_default", buf, sizeof(buf), &n), ==, 0);
    g_assert_cmpmem(buf, n, &d, sizeof(d));
    stop();
}

/* Without --posix-acl the ACL names are refused and hidden, whatever the host holds. */
static void test_acl_refused(void)
{
    static const char *const args[] = {"--xattr", NULL};
    start(args);
    g_assert_cmpuint(init_flags(guest_all) & ACL_FLAGS, ==, 0);
    struct acl a = acl5(6, 4, 4, 6, 0), b = acl5(7, 7, 7, 7, 7);
    char buf[512];
    size_t n = 0;

    hcreate("a", 0644);
    g_assert_cmpint(lsetxattr(hp("a"), "system.posix_acl_access", &a, sizeof(a), 0), ==, 0);
    g_assert_cmpint(lsetxattr(hp("a"), "user.x", "1", 1, 0), ==, 0);
    g_assert_cmpint(mkdir(hp("d"), 0755), ==, 0);
    g_assert_cmpint(lsetxattr(hp("d"), "system.posix_acl_default", &a, sizeof(a), 0), ==, 0);
    uint64_t an = node("a"), dn = node("d");

    g_assert_cmpint(setxattr_(an, "system.posix_acl_access", &b, sizeof(b)), ==, -EOPNOTSUPP);
    assert_hvalue("a", "system.posix_acl_access", &a, sizeof(a));
    g_assert_cmpint(hmode("a"), ==, 0660);
    g_assert_cmpint(get_or_list(an, "system.posix_acl_access", NULL, 0, &n), ==, -EOPNOTSUPP);
    g_assert_cmpint(get_or_list(an, "system.posix_acl_access", buf, sizeof(buf), &n), ==,
                    -EOPNOTSUPP);
    g_assert_cmpint(get_or_list(dn, "system.posix_acl_default", buf, sizeof(buf), &n), ==,
                    -EOPNOTSUPP);
    g_assert_cmpint(setxattr_(dn, "system.posix_acl_default", &b, sizeof(b)), ==, -EOPNOTSUPP);
    g_assert_cmpint(removexattr_(an, "system.posix_acl_access"), ==, -EOPNOTSUPP);
    g_assert_cmpint(removexattr_(dn, "system.posix_acl_default"), ==, -EOPNOTSUPP);
    assert_hvalue("a", "system.posix_acl_access", &a, sizeof(a));
    assert_hvalue("d", "system.posix_acl_default", &a, sizeof(a));

    /* Lists leave them out, and the size probe counts without them: exactly the room the
     * guest's list needs suffices. */
    gchar *want = hnames("a");
    g_assert_nonnull(strstr(want, "user.x"));
    g_assert_cmpint(get_or_list(an, NULL, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, strlen(want) + 1);
    g_assert_cmpint(get_or_list(an, NULL, buf, n, &n), ==, 0);
    g_assert_cmpuint(n, ==, strlen(want) + 1);
    g_assert_null(memmem(buf, n, "system.posix_acl", strlen("system.posix_acl")));
    gchar *got = names_of(buf, n);
    g_assert_cmpstr(got, ==, want);
    g_free(got);
    g_free(want);
    want = hnames("d");
    g_assert_cmpint(get_or_list(dn, NULL, NULL, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, *want ? strlen(want) + 1 : 0);
    g_free(want);
    /* Other names work as before. */
    g_assert_cmpint(setxattr_(an, "user.y", "2", 1), ==, 0);
    assert_hvalue("a", "user.y", "2", 1);
    stop();
}

/* ---- security contexts --------------------------------------------------------------------- */

static const char *const sec_args[] = {"--security-label", NULL};

static void test_secctx_labels(void)
{
    start(sec_args);
    g_assert_cmpuint(init_flags(guest_all) & FUSE_SECURITY_CTX, ==, FUSE_SECURITY_CTX);
    if (!host_takes_caps()) {
        stop();
        g_test_skip("the host file system takes no security.capability");
        return;
    }
    uint8_t ext[256];
    size_t len = cap_ext(ext);

    for (int old = 0; old < 2; old++) {
        const char *f = old ? "f-old" : "f", *d = old ? "d-old" : "d";
        const char *p = old ? "p-old" : "p", *l = old ? "l-old" : "l";
        g_assert_cmpint(create_ext(FUSE_ROOT_ID, f, ext, len, old), ==, 0);
        assert_hvalue(f, "security.capability", cap_value, sizeof(cap_value));
        g_assert_cmpint(mkdir_ext(d, ext, len, old), ==, 0);
        assert_hvalue(d, "security.capability", cap_value, sizeof(cap_value));
        g_assert_cmpint(mknod_ext(p, ext, len, old), ==, 0);
        assert_hvalue(p, "security.capability", cap_value, sizeof(cap_value));
        g_assert_cmpint(symlink_ext(l, "target", ext, len, old), ==, 0);
        assert_hvalue(l, "security.capability", cap_value, sizeof(cap_value));
        char target[16] = {0};
        g_assert_cmpint(readlink(hp(l), target, sizeof(target) - 1), ==, 6);
        g_assert_cmpstr(target, ==, "target");
    }

    /* TMPFILE: after its placeholder name; linked, the file shows the label. */
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0600};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    g_assert_cmpint(call_ext((uint16_t)(len / 8), FUSE_TMPFILE, FUSE_ROOT_ID,
                             IOV(S(ci), NAME("/"), BUF(ext, len)), &out, sizeof(out), NULL),
                    ==, 0);
    struct fuse_link_in li = {.oldnodeid = out.e.nodeid};
    struct fuse_entry_out e;
    g_assert_cmpint(call(FUSE_LINK, FUSE_ROOT_ID, IOV(S(li), NAME("t")), &e, sizeof(e), NULL), ==,
                    0);
    assert_hvalue("t", "security.capability", cap_value, sizeof(cap_value));

    /* No context (count 0, as when no LSM gives one): created, unlabelled. */
    struct fuse_secctx_header none = {.size = sizeof(none), .nr_secctx = 0};
    char buf[64];
    g_assert_cmpint(create_ext(FUSE_ROOT_ID, "none", &none, sizeof(none), false), ==, 0);
    g_assert_cmpint(hget("none", "security.capability", buf, sizeof(buf)), ==, -ENODATA);
    /* No extension at all (allowed): the same. */
    g_assert_cmpint(create_(FUSE_ROOT_ID, "plain", 0644, 0, NULL), ==, 0);
    g_assert_cmpint(hget("plain", "security.capability", buf, sizeof(buf)), ==, -ENODATA);
    stop();
}

/* A context the host refuses (a security.capability value it cannot parse: EINVAL): the new
 * inode is removed again. */
static void test_secctx_refused(void)
{
    start(sec_args);
    init_flags(guest_all);
    static const uint8_t bad_cap[3] = {1, 2, 3};
    uint8_t ext[256];
    size_t len = secctx_ext(ext, "security.capability", bad_cap, sizeof(bad_cap));

    g_assert_cmpint(create_ext(FUSE_ROOT_ID, "r", ext, len, false), ==, -EINVAL);
    g_assert_false(hexists("r"));
    g_assert_cmpint(mkdir_ext("rd", ext, len, false), ==, -EINVAL);
    g_assert_false(hexists("rd"));
    g_assert_cmpint(mknod_ext("rn", ext, len, true), ==, -EINVAL);
    g_assert_false(hexists("rn"));
    g_assert_cmpint(symlink_ext("rl", "x", ext, len, false), ==, -EINVAL);
    g_assert_false(hexists("rl"));
    /* An existing file opened by CREATE (no O_EXCL) is not relabelled or removed. */
    hcreate("exists", 0644);
    g_assert_cmpint(create_ext(FUSE_ROOT_ID, "exists", ext, len, false), ==, 0);
    g_assert_true(hexists("exists"));
    stop();
}

/*
 * A context is set with the daemon's own credentials, so only an LSM's security.* name is
 * taken: the kernel sends nothing else, and a hostile guest must not have the daemon set
 * trusted.*, user.* or system.* attributes for it. Refused as malformed (EINVAL) before
 * anything is created. (Before: CREATE with trusted.foo succeeded and the host file carried
 * trusted.foo, set as root; system.posix_acl_access got ENOTSUP only after the create.)
 */
static void test_secctx_namespace(void)
{
    start(sec_args);
    init_flags(guest_all);
    static const char *const names[] = {"trusted.foo", "user.foo", "system.posix_acl_access",
                                        "securityfoo", "trusted.security.x"};
    struct acl acl = acl5(6, 4, 4, 6, 0);
    uint8_t ext[256];
    char buf[64];
    hcreate("exists", 0644);

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        size_t len = secctx_ext(ext, names[i], &acl, sizeof(acl));
        for (int old = 0; old < 2; old++) {
            g_assert_cmpint(create_ext(FUSE_ROOT_ID, "c", ext, len, old), ==, -EINVAL);
            g_assert_false(hexists("c"));
            g_assert_cmpint(mkdir_ext("d", ext, len, old), ==, -EINVAL);
            g_assert_false(hexists("d"));
            g_assert_cmpint(mknod_ext("n", ext, len, old), ==, -EINVAL);
            g_assert_false(hexists("n"));
            g_assert_cmpint(symlink_ext("l", "x", ext, len, old), ==, -EINVAL);
            g_assert_false(hexists("l"));
            /* Nor on a file that exists already. */
            g_assert_cmpint(create_ext(FUSE_ROOT_ID, "exists", ext, len, old), ==, -EINVAL);
            g_assert_cmpint(hget("exists", names[i], buf, sizeof(buf)), <, 0);
        }
    }
    /* security.* names are still taken: /acl/secctx/labels. */
    stop();
}

/* With --xattrmap the context's name is translated like any guest name. */
static void test_secctx_mapped(void)
{
    static const char *const args[] = {
        "--security-label", "--xattrmap=:prefix:client:security.:user.virtiofs.: :ok:all:::", NULL};
    start(args);
    init_flags(guest_all);
    uint8_t ext[256];
    size_t len = cap_ext(ext);
    char buf[64];

    g_assert_cmpint(create_ext(FUSE_ROOT_ID, "m", ext, len, false), ==, 0);
    assert_hvalue("m", "user.virtiofs.security.capability", cap_value, sizeof(cap_value));
    g_assert_cmpint(hget("m", "security.capability", buf, sizeof(buf)), ==, -ENODATA);
    stop();
}

/* Writes a fuse_ext_header (or fuse_secctx_header) at p. */
static void put_hdr(uint8_t *p, uint32_t size, uint32_t type)
{
    struct fuse_ext_header h = {.size = size, .type = type};
    memcpy(p, &h, sizeof(h));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

/* Every malformed extension is EINVAL, creates nothing and leaves the daemon serving. */
static void test_secctx_malformed(void)
{
    start(sec_args);
    init_flags(guest_all);
    uint8_t good[256], bad[256];
    size_t len = cap_ext(good);
    int cases = 0;

#define EXPECT_EINVAL(call_, name_)                                                                \
    do {                                                                                           \
        g_assert_cmpint((call_), ==, -EINVAL);                                                     \
        g_assert_false(hexists(name_));                                                            \
        cases++;                                                                                   \
    } while (0)

    /* total_extlen claims more than the request holds behind the struct. */
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    EXPECT_EINVAL(call_ext(64, FUSE_CREATE, FUSE_ROOT_ID, IOV(S(ci), NAME("b1"), BUF(good, len)),
                           NULL, 64, NULL),
                  "b1");
    /* Header size below its own size, past the end, or a truncated header. */
    memcpy(bad, good, len);
    put_hdr(bad, 4, 1);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b2", bad, len, false), "b2");
    put_hdr(bad, 4096, 1);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b3", bad, len, false), "b3");
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b4", good, 4, true), "b4");
    /* Two contexts, one of an extension type not offered (supplementary groups), unknown. */
    memcpy(bad, good, len);
    put_hdr(bad, (uint32_t)len, 2);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b5", bad, len, false), "b5");
    put_hdr(bad, (uint32_t)len, 32);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b6", bad, len, false), "b6");
    put_hdr(bad, (uint32_t)len, 0x7fffffff);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b7", bad, len, false), "b7");
    /* Two security context headers. */
    memcpy(bad, good, len);
    memcpy(bad + len, good, len);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b8", bad, 2 * len, false), "b8");
    /* fuse_secctx.size 0, beyond the bytes sent, beyond XATTR_SIZE_MAX. */
    memcpy(bad, good, len);
    put_u32(bad + 8, 0);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b9", bad, len, false), "b9");
    put_u32(bad + 8, (uint32_t)len);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b10", bad, len, true), "b10");
    put_u32(bad + 8, 0xffffffff);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b11", bad, len, false), "b11");
    /* The xattr name: without a NUL, or empty. */
    memcpy(bad, good, len);
    memset(bad + 16, 'a', len - 16);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b12", bad, len, false), "b12");
    memcpy(bad, good, len);
    bad[16] = '\0';
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b13", bad, len, false), "b13");
    /* A header announcing a context with no room for fuse_secctx. */
    put_hdr(bad, 8, 1);
    EXPECT_EINVAL(create_ext(FUSE_ROOT_ID, "b14", bad, 8, false), "b14");
    /* The other creating ops check alike. */
    memcpy(bad, good, len);
    put_hdr(bad, 4096, 1);
    EXPECT_EINVAL(mkdir_ext("b15", bad, len, false), "b15");
    EXPECT_EINVAL(mknod_ext("b16", bad, len, true), "b16");
    EXPECT_EINVAL(symlink_ext("b17", "x", bad, len, false), "b17");
    EXPECT_EINVAL(call_ext((uint16_t)(len / 8), FUSE_TMPFILE, FUSE_ROOT_ID,
                           IOV(S(ci), NAME("/"), BUF(bad, len)), NULL, 64, NULL),
                  "b18");
    /* A name that runs into the extension is no name. */
    EXPECT_EINVAL(call_ext((uint16_t)(len / 8), FUSE_CREATE, FUSE_ROOT_ID,
                           IOV(S(ci), BUF("b19", 3), BUF(good, len)), NULL, 64, NULL),
                  "b19");
#undef EXPECT_EINVAL
    g_assert_cmpint(cases, ==, 19);

    /* Nothing at all was created, and the daemon still serves. */
    GDir *dir = g_dir_open(daemon_.share, 0, NULL);
    g_assert_nonnull(dir);
    const gchar *entry = g_dir_read_name(dir);
    g_assert_cmpstr(entry, ==, NULL);
    g_dir_close(dir);
    g_assert_true(test_daemon_alive(&daemon_));
    struct fuse_create_in ok = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    struct fuse_secctx_header none = {.size = sizeof(none), .nr_secctx = 0};
    g_assert_cmpint(call_ext(1, FUSE_CREATE, FUSE_ROOT_ID, IOV(S(ok), NAME("fine"), S(none)), &out,
                             sizeof(out), NULL),
                    ==, 0);
    g_assert_true(hexists("fine"));
    stop();
}

/* Without --security-label extensions are skipped: the names are still read right. */
static void test_secctx_off(void)
{
    static const char *const args[] = {"--xattr", NULL};
    start(args);
    g_assert_cmpuint(init_flags(guest_all) & FUSE_SECURITY_CTX, ==, 0);
    uint8_t ext[256];
    size_t len = cap_ext(ext);
    char buf[64];

    g_assert_cmpint(create_ext(FUSE_ROOT_ID, "f", ext, len, false), ==, 0);
    g_assert_true(hexists("f"));
    g_assert_cmpint(hget("f", "security.capability", buf, sizeof(buf)), ==, -ENODATA);
    g_assert_cmpint(symlink_ext("l", "target", ext, len, false), ==, 0);
    char target[16] = {0};
    g_assert_cmpint(readlink(hp("l"), target, sizeof(target) - 1), ==, 6);
    g_assert_cmpstr(target, ==, "target");
    g_assert_cmpint(mkdir_ext("d", ext, len, false), ==, 0);
    g_assert_cmpint(mknod_ext("p", ext, len, false), ==, 0);
    g_assert_cmpint(hget("d", "security.capability", buf, sizeof(buf)), ==, -ENODATA);
    /* Bytes after the names, not counted (what older kernels would send): ignored. */
    g_assert_cmpint(create_ext(FUSE_ROOT_ID, "g", ext, len, true), ==, 0);
    g_assert_true(hexists("g"));
    /* An extension length past the request, or a name running into the extension: EINVAL. */
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    g_assert_cmpint(call_ext(64, FUSE_CREATE, FUSE_ROOT_ID, IOV(S(ci), NAME("b"), BUF(ext, len)),
                             NULL, 64, NULL),
                    ==, -EINVAL);
    g_assert_false(hexists("b"));
    g_assert_cmpint(call_ext((uint16_t)(len / 8), FUSE_CREATE, FUSE_ROOT_ID,
                             IOV(S(ci), BUF("abc", 3), BUF(ext, len)), NULL, 64, NULL),
                    ==, -EINVAL);
    GDir *dir = g_dir_open(daemon_.share, 0, NULL);
    for (const gchar *n; (n = g_dir_read_name(dir));)
        g_assert_false(g_str_has_prefix(n, "abc"));
    g_dir_close(dir);
    stop();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (geteuid() != 0) { /* ACLs for other users, security.* and the default sandbox */
        printf("1..0 # SKIP needs root\n");
        return 0;
    }
    g_test_set_nonfatal_assertions();
    g_test_add_func("/acl/init/flags", test_init_flags);
    g_test_add_func("/acl/init/refused", test_init_refused);
    g_test_add_func("/acl/options", test_options);
    g_test_add_func("/acl/posix-acl/access", test_access_acl);
    g_test_add_func("/acl/posix-acl/named-group", test_acl_named_group);
    g_test_add_func("/acl/posix-acl/default-and-umask", test_default_acl_and_umask);
    g_test_add_func("/acl/posix-acl/refused", test_acl_refused);
    g_test_add_func("/acl/secctx/labels", test_secctx_labels);
    g_test_add_func("/acl/secctx/namespace", test_secctx_namespace);
    g_test_add_func("/acl/secctx/refused", test_secctx_refused);
    g_test_add_func("/acl/secctx/mapped", test_secctx_mapped);
    g_test_add_func("/acl/secctx/malformed", test_secctx_malformed);
    g_test_add_func("/acl/secctx/off", test_secctx_off);
    return g_test_run();
}
