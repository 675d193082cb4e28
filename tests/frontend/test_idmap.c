/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --translate-uid / --translate-gid at the protocol level: a real daemon (default lockdown)
 * started as root with translation rules, driven through its socket by the test front-end,
 * every result checked against the host's own view of the share (lstat).
 *
 * Guest -> host applies to the ids each request acts with (so to the owner of what it creates)
 * and to SETATTR's new owner; host -> guest applies to every attribute in a reply (entries,
 * GETATTR, SETATTR, READDIRPLUS). A forbidden guest id is refused with EPERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

static struct test_daemon d_;
static struct fe *fe_;

/* ---- daemon and host side ------------------------------------------------------------------ */

static bool start(const char *const *args)
{
    if (geteuid() != 0) { /* acting as other uids and chown need root */
        g_test_skip("needs root");
        return false;
    }
    g_assert_cmpint(test_daemon_start(&d_, args), ==, 0);
    struct fe_config cfg = {.socket_path = d_.socket};
    g_assert_cmpint(fe_open_retry(&cfg, &fe_, 1000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe_), ==, 0);
    return true;
}

static void stop(void)
{
    fe_close(fe_);
    fe_ = NULL;
    g_assert_true(test_daemon_alive(&d_));
    g_assert_cmpint(test_daemon_stop(&d_), ==, 0);
}

/* The host path of rel in the share (one of a few rotating buffers). */
static const char *hp(const char *rel)
{
    static char buf[4][PATH_MAX];
    static unsigned next;
    char *p = buf[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", d_.share, rel);
    return p;
}

static void hput(const char *rel, mode_t mode, uid_t uid, gid_t gid)
{
    g_assert_true(g_file_set_contents(hp(rel), "data", -1, NULL));
    g_assert_cmpint(chown(hp(rel), uid, gid), ==, 0);
    g_assert_cmpint(chmod(hp(rel), mode), ==, 0); /* after chown, which clears set-ID bits */
}

static void hmkdir(const char *rel, mode_t mode, uid_t uid, gid_t gid)
{
    g_assert_cmpint(mkdir(hp(rel), mode), ==, 0);
    g_assert_cmpint(chown(hp(rel), uid, gid), ==, 0);
    g_assert_cmpint(chmod(hp(rel), mode), ==, 0);
}

/* The host owner of rel (lstat) is uid:gid. */
static void assert_howner(const char *rel, uid_t uid, gid_t gid)
{
    struct stat st;
    g_assert_cmpint(lstat(hp(rel), &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, uid);
    g_assert_cmpuint(st.st_gid, ==, gid);
}

static bool hexists(const char *rel)
{
    struct stat st;
    return lstat(hp(rel), &st) == 0;
}

/* ---- requests ------------------------------------------------------------------------------ */

/* clang-format off */
#define IOV(...) ((struct iovec[]){__VA_ARGS__}), \
                 (sizeof((struct iovec[]){__VA_ARGS__}) / sizeof(struct iovec))
#define S(x)     {&(x), sizeof(x)}
#define NAME(s)  {(void *)(s), strlen(s) + 1}
/* clang-format on */

/* One request as uid/gid; copies up to out_size payload bytes to out. Returns the FUSE error. */
static int call(uint32_t uid, uint32_t gid, uint32_t op, uint64_t node, const struct iovec *in,
                unsigned nin, void *out, size_t out_size)
{
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe_, 1, uid, gid, op, node, in, nin, out_size, &r), ==, 0);
    if (r.error == 0 && out)
        memcpy(out, r.data, MIN(r.data_len, out_size));
    return r.error;
}

static int lookup_as(uint32_t uid, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    return call(uid, uid, FUSE_LOOKUP, parent, IOV(NAME(name)), e, sizeof(*e));
}

/* The nodeid of name in parent, looked up as root; attr gets its attributes if non-NULL. */
static uint64_t lookup(uint64_t parent, const char *name, struct fuse_attr *attr)
{
    struct fuse_entry_out e = {0};
    g_assert_cmpint(lookup_as(0, parent, name, &e), ==, 0);
    if (attr)
        *attr = e.attr;
    return e.nodeid;
}

static int getattr_as(uint32_t uid, uint64_t nodeid, struct fuse_attr *a)
{
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out out = {0};
    int ret = call(uid, uid, FUSE_GETATTR, nodeid, IOV(S(gi)), &out, sizeof(out));
    *a = out.attr;
    return ret;
}

static int create_as(uint32_t uid, uint32_t gid, uint64_t parent, const char *name,
                     struct fuse_entry_out *e, uint64_t *fh)
{
    struct fuse_create_in ci = {.flags = O_WRONLY, .mode = S_IFREG | 0644};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out = {0};
    int ret = call(uid, gid, FUSE_CREATE, parent, IOV(S(ci), NAME(name)), &out, sizeof(out));
    if (e)
        *e = out.e;
    if (fh)
        *fh = out.o.fh;
    return ret;
}

static int mkdir_as(uint32_t uid, uint32_t gid, uint64_t parent, const char *name,
                    struct fuse_entry_out *e)
{
    struct fuse_mkdir_in mi = {.mode = 0755};
    return call(uid, gid, FUSE_MKDIR, parent, IOV(S(mi), NAME(name)), e, sizeof(*e));
}

static int mknod_fifo_as(uint32_t uid, uint32_t gid, uint64_t parent, const char *name,
                         struct fuse_entry_out *e)
{
    struct fuse_mknod_in mi = {.mode = S_IFIFO | 0644};
    return call(uid, gid, FUSE_MKNOD, parent, IOV(S(mi), NAME(name)), e, sizeof(*e));
}

static int symlink_as(uint32_t uid, uint32_t gid, uint64_t parent, const char *name,
                      struct fuse_entry_out *e)
{
    return call(uid, gid, FUSE_SYMLINK, parent, IOV(NAME(name), NAME("target")), e, sizeof(*e));
}

static int link_as(uint32_t uid, uint32_t gid, uint64_t nodeid, uint64_t newparent,
                   const char *name, struct fuse_entry_out *e)
{
    struct fuse_link_in li = {.oldnodeid = nodeid};
    return call(uid, gid, FUSE_LINK, newparent, IOV(S(li), NAME(name)), e, sizeof(*e));
}

static int setattr_as(uint32_t uid, uint64_t nodeid, const struct fuse_setattr_in *si,
                      struct fuse_attr *a)
{
    struct fuse_attr_out out = {0};
    int ret =
        call(uid, uid, FUSE_SETATTR, nodeid, IOV({(void *)si, sizeof(*si)}), &out, sizeof(out));
    if (a)
        *a = out.attr;
    return ret;
}

static int release_as(uint32_t uid, uint64_t nodeid, uint64_t fh, bool dir)
{
    struct fuse_release_in ri = {.fh = fh};
    return call(uid, uid, dir ? FUSE_RELEASEDIR : FUSE_RELEASE, nodeid, IOV(S(ri)), NULL, 0);
}

static uint64_t open_ok(uint64_t nodeid, uint32_t op, uint32_t flags)
{
    struct fuse_open_in oi = {.flags = flags};
    struct fuse_open_out out = {0};
    g_assert_cmpint(call(0, 0, op, nodeid, IOV(S(oi)), &out, sizeof(out)), ==, 0);
    return out.fh;
}

/* The attributes READDIRPLUS reports for name in directory nodeid (asserted to be listed). */
static struct fuse_attr readdirplus_attr(uint64_t nodeid, const char *name)
{
    uint64_t fh = open_ok(nodeid, FUSE_OPENDIR, O_RDONLY | O_DIRECTORY);
    struct fuse_read_in ri = {.fh = fh, .size = 64 * 1024};
    uint8_t *buf = g_malloc(ri.size);
    struct fuse_attr found = {0};
    bool seen = false;
    struct fe_reply r;

    g_assert_cmpint(fe_fuse_as(fe_, 1, 0, 0, FUSE_READDIRPLUS, nodeid, IOV(S(ri)), ri.size, &r), ==,
                    0);
    g_assert_cmpint(r.error, ==, 0);
    memcpy(buf, r.data, r.data_len);
    for (size_t off = 0; off + FUSE_NAME_OFFSET_DIRENTPLUS <= r.data_len;) {
        const struct fuse_direntplus *dp = (const void *)(buf + off);
        if (dp->dirent.namelen == strlen(name) &&
            memcmp(dp->dirent.name, name, strlen(name)) == 0) {
            found = dp->entry_out.attr;
            seen = true;
        }
        off += FUSE_DIRENTPLUS_SIZE(dp);
    }
    g_free(buf);
    g_assert_cmpint(release_as(0, nodeid, fh, true), ==, 0);
    g_assert_true(seen);
    return found;
}

/* ---- map: both directions ------------------------------------------------------------------ */

static const char *const map_args[] = {"--translate-uid", "map:1000:2000:10", "--translate-gid",
                                       "map:1000:2000:10", NULL};

/*
 * Guest 1001:1001 acts as host 2001:2001: everything it creates is owned by 2001:2001 on the
 * host, and shown to it as 1001:1001. The directory it works in is host 2001's (0755), so
 * none of this would work if the request ran with the untranslated ids.
 */
static void test_map_creation(void)
{
    if (!start(map_args))
        return;
    hmkdir("d", 0755, 2001, 2001);
    struct fuse_attr a;
    uint64_t d = lookup(FUSE_ROOT_ID, "d", &a);
    g_assert_cmpuint(a.uid, ==, 1001);
    g_assert_cmpuint(a.gid, ==, 1001);

    struct fuse_entry_out e = {0};
    uint64_t fh;
    g_assert_cmpint(create_as(1001, 1001, d, "f", &e, &fh), ==, 0);
    assert_howner("d/f", 2001, 2001);
    g_assert_cmpuint(e.attr.uid, ==, 1001);
    g_assert_cmpuint(e.attr.gid, ==, 1001);
    g_assert_cmpint(release_as(1001, e.nodeid, fh, false), ==, 0);
    uint64_t f = e.nodeid;
    g_assert_cmpint(getattr_as(1001, f, &a), ==, 0);
    g_assert_cmpuint(a.uid, ==, 1001);
    g_assert_cmpuint(a.gid, ==, 1001);

    g_assert_cmpint(mkdir_as(1001, 1001, d, "sub", &e), ==, 0);
    assert_howner("d/sub", 2001, 2001);
    g_assert_cmpuint(e.attr.uid, ==, 1001);
    g_assert_cmpint(mknod_fifo_as(1001, 1001, d, "fifo", &e), ==, 0);
    assert_howner("d/fifo", 2001, 2001);
    g_assert_cmpuint(e.attr.gid, ==, 1001);
    g_assert_cmpint(symlink_as(1001, 1001, d, "sym", &e), ==, 0);
    assert_howner("d/sym", 2001, 2001);
    g_assert_cmpuint(e.attr.uid, ==, 1001);
    g_assert_cmpint(link_as(1001, 1001, f, d, "f2", &e), ==, 0);
    g_assert_cmpuint(e.nodeid, ==, f);
    g_assert_cmpuint(e.attr.nlink, ==, 2);
    g_assert_cmpuint(e.attr.uid, ==, 1001);
    assert_howner("d/f2", 2001, 2001);

    /* A guest mixing a mapped uid with a mapped gid gets exactly that pair on the host. */
    hmkdir("pub", 0777, 0, 0);
    uint64_t pub = lookup(FUSE_ROOT_ID, "pub", NULL);
    g_assert_cmpint(mkdir_as(1003, 1007, pub, "pair", &e), ==, 0);
    assert_howner("pub/pair", 2003, 2007);
    g_assert_cmpuint(e.attr.uid, ==, 1003);
    g_assert_cmpuint(e.attr.gid, ==, 1007);
    /* Ids outside the rules pass unchanged, both ways. */
    g_assert_cmpint(mkdir_as(1010, 999, pub, "plain", &e), ==, 0);
    assert_howner("pub/plain", 1010, 999);
    g_assert_cmpuint(e.attr.uid, ==, 1010);
    g_assert_cmpuint(e.attr.gid, ==, 999);

    /* Control: an unmapped guest id is host 1011, which may not write in 2001's directory. */
    g_assert_cmpint(create_as(1011, 1011, d, "no", NULL, NULL), ==, -EACCES);
    g_assert_false(hexists("d/no"));
    stop();
}

/* Host owners in the host range are shown translated, in every kind of reply. */
static void test_map_attributes(void)
{
    if (!start(map_args))
        return;
    hput("h2005", 0644, 2005, 2006);
    hput("h1001", 0644, 1001, 1001); /* a guest-range id on the host: not a host rule */
    hput("h3000", 0644, 3000, 3000);

    struct fuse_attr a;
    uint64_t h2005 = lookup(FUSE_ROOT_ID, "h2005", &a);
    g_assert_cmpuint(a.uid, ==, 1005);
    g_assert_cmpuint(a.gid, ==, 1006);
    g_assert_cmpint(getattr_as(0, h2005, &a), ==, 0);
    g_assert_cmpuint(a.uid, ==, 1005);
    g_assert_cmpuint(a.gid, ==, 1006);
    lookup(FUSE_ROOT_ID, "h1001", &a);
    g_assert_cmpuint(a.uid, ==, 1001);
    lookup(FUSE_ROOT_ID, "h3000", &a);
    g_assert_cmpuint(a.uid, ==, 3000);

    a = readdirplus_attr(FUSE_ROOT_ID, "h2005");
    g_assert_cmpuint(a.uid, ==, 1005);
    g_assert_cmpuint(a.gid, ==, 1006);
    a = readdirplus_attr(FUSE_ROOT_ID, "h3000");
    g_assert_cmpuint(a.uid, ==, 3000);

    /* SETATTR's new owner is a guest id: chown to guest 1003:1004 is host 2003:2004. */
    uint64_t h3000 = lookup(FUSE_ROOT_ID, "h3000", NULL);
    struct fuse_setattr_in si = {.valid = FATTR_UID | FATTR_GID, .uid = 1003, .gid = 1004};
    g_assert_cmpint(setattr_as(0, h3000, &si, &a), ==, 0);
    assert_howner("h3000", 2003, 2004);
    g_assert_cmpuint(a.uid, ==, 1003);
    g_assert_cmpuint(a.gid, ==, 1004);
    /* Only the group: the owner stays. */
    si = (struct fuse_setattr_in){.valid = FATTR_GID, .gid = 1009};
    g_assert_cmpint(setattr_as(0, h3000, &si, &a), ==, 0);
    assert_howner("h3000", 2003, 2009);
    g_assert_cmpuint(a.uid, ==, 1003);
    g_assert_cmpuint(a.gid, ==, 1009);
    stop();
}

/* ---- forbid-guest -------------------------------------------------------------------------- */

static void test_forbid(void)
{
    const char *const args[] = {"--translate-uid",
                                "forbid-guest:1500:10",
                                "--translate-uid",
                                "map:1000:2000:10",
                                "--translate-gid",
                                "forbid-guest:1600:10",
                                NULL};
    if (!start(args))
        return;
    hmkdir("pub", 0777, 0, 0);
    hput("pub/file", 0644, 0, 0);
    uint64_t pub = lookup(FUSE_ROOT_ID, "pub", NULL);
    uint64_t file = lookup(pub, "file", NULL);
    struct fuse_entry_out e;

    /* No file may come to belong to a forbidden uid or gid. */
    g_assert_cmpint(create_as(1505, 100, pub, "x", NULL, NULL), ==, -EPERM);
    g_assert_cmpint(mkdir_as(1500, 100, pub, "x", &e), ==, -EPERM);
    g_assert_cmpint(mknod_fifo_as(1509, 100, pub, "x", &e), ==, -EPERM);
    g_assert_cmpint(symlink_as(1501, 100, pub, "x", &e), ==, -EPERM);
    g_assert_cmpint(link_as(1501, 100, file, pub, "x", &e), ==, -EPERM);
    g_assert_cmpint(create_as(1000, 1605, pub, "x", NULL, NULL), ==, -EPERM);
    g_assert_false(hexists("pub/x"));
    /* Just outside the ranges: allowed (1510 unchanged, 1001 mapped). */
    g_assert_cmpint(mkdir_as(1510, 1599, pub, "y", &e), ==, 0);
    assert_howner("pub/y", 1510, 1599);
    g_assert_cmpint(mkdir_as(1001, 1610, pub, "z", &e), ==, 0);
    assert_howner("pub/z", 2001, 1610);
    /* A forbidden caller has no host identity: its other requests are refused too. */
    g_assert_cmpint(lookup_as(1505, pub, "file", &e), ==, -EPERM);
    struct fuse_attr a;
    g_assert_cmpint(getattr_as(1505, file, &a), ==, -EPERM);

    /* chown to a forbidden id: refused, and nothing of the request is applied. */
    struct fuse_setattr_in si = {.valid = FATTR_UID | FATTR_MODE, .uid = 1502, .mode = 0600};
    g_assert_cmpint(setattr_as(0, file, &si, NULL), ==, -EPERM);
    si = (struct fuse_setattr_in){.valid = FATTR_GID, .gid = 1601};
    g_assert_cmpint(setattr_as(0, file, &si, NULL), ==, -EPERM);
    struct stat st;
    g_assert_cmpint(lstat(hp("pub/file"), &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0644);
    assert_howner("pub/file", 0, 0);
    si = (struct fuse_setattr_in){.valid = FATTR_UID, .uid = 1001};
    g_assert_cmpint(setattr_as(0, file, &si, &a), ==, 0);
    assert_howner("pub/file", 2001, 0);
    g_assert_cmpuint(a.uid, ==, 1001);

    /* A release still succeeds whatever ids it carries, so no handle is left behind. */
    uint64_t fh = open_ok(file, FUSE_OPEN, O_RDONLY);
    g_assert_cmpint(release_as(1505, file, fh, false), ==, 0);
    g_assert_cmpint(release_as(0, file, fh, false), ==, -EBADF);
    fh = open_ok(pub, FUSE_OPENDIR, O_RDONLY | O_DIRECTORY);
    g_assert_cmpint(release_as(1505, pub, fh, true), ==, 0);
    g_assert_cmpint(release_as(0, pub, fh, true), ==, -EBADF);
    stop();
}

/* ---- squash -------------------------------------------------------------------------------- */

static void test_squash(void)
{
    const char *const args[] = {"--translate-uid",
                                "squash-guest:1000:3000:100",
                                "--translate-uid",
                                "host:3000:1000:1",
                                "--translate-gid",
                                "squash-guest:1000:3000:100",
                                "--translate-gid",
                                "host:3000:1000:1",
                                "--translate-uid",
                                "squash-host:5000:7:100",
                                NULL};
    if (!start(args))
        return;
    hmkdir("pub", 0777, 0, 0);
    uint64_t pub = lookup(FUSE_ROOT_ID, "pub", NULL);
    struct fuse_entry_out e = {0};

    /* Every guest id in [1000, 1100) acts as host 3000, which is shown as guest 1000. */
    uint64_t fh;
    g_assert_cmpint(create_as(1042, 1042, pub, "a", &e, &fh), ==, 0);
    g_assert_cmpint(release_as(1042, e.nodeid, fh, false), ==, 0);
    assert_howner("pub/a", 3000, 3000);
    g_assert_cmpuint(e.attr.uid, ==, 1000);
    g_assert_cmpuint(e.attr.gid, ==, 1000);
    g_assert_cmpint(mkdir_as(1099, 1000, pub, "b", &e), ==, 0);
    assert_howner("pub/b", 3000, 3000);
    g_assert_cmpint(mkdir_as(1100, 1100, pub, "c", &e), ==, 0);
    assert_howner("pub/c", 1100, 1100);
    g_assert_cmpuint(e.attr.uid, ==, 1100);

    /* squash-host: host [5000, 5100) all appear as guest 7. */
    hput("h5050", 0644, 5050, 5050);
    hput("h5100", 0644, 5100, 5100);
    struct fuse_attr a;
    lookup(FUSE_ROOT_ID, "h5050", &a);
    g_assert_cmpuint(a.uid, ==, 7);
    g_assert_cmpuint(a.gid, ==, 5050); /* the rule is for uids only */
    lookup(FUSE_ROOT_ID, "h5100", &a);
    g_assert_cmpuint(a.uid, ==, 5100);
    stop();
}

/* ---- squashed callers and the host's permission checks --------------------------------------- */

/* Every guest uid and gid is host 1000:1000, which is in no other group on the host. */
static const char *const squash_all_args[] = {"--translate-uid", "squash-guest:0:1000:4294967295",
                                              "--translate-gid", "squash-guest:0:1000:4294967295",
                                              NULL};

static int open_as(uint32_t uid, uint64_t nodeid, uint32_t op, uint32_t flags, uint64_t *fh)
{
    struct fuse_open_in oi = {.flags = flags};
    struct fuse_open_out out = {0};
    int ret = call(uid, uid, op, nodeid, IOV(S(oi)), &out, sizeof(out));
    if (fh)
        *fh = out.fh;
    return ret;
}

/*
 * The supplementary-group retry must not give a squashed caller the file's own group: the
 * guest kernel's permission check is not to be trusted, and host 1000 is not in group 4242.
 * (Before: the OPEN, the MKDIR and the chgrp all succeeded through a retry with group 4242.)
 */
static void test_squash_no_group_retry(void)
{
    /* Guest gid 4242 is left as it is, so that a chgrp to it means host group 4242. */
    const char *const args[] = {"--translate-uid", "squash-guest:0:1000:4294967295",
                                "--translate-gid", "squash-guest:0:1000:4242", NULL};
    if (!start(args))
        return;
    hput("grp-file", 0640, 0, 4242);
    hmkdir("grp-dir", 0770, 0, 4242);
    hput("mine", 0644, 1000, 1000);
    uint64_t f = lookup(FUSE_ROOT_ID, "grp-file", NULL);
    uint64_t d = lookup(FUSE_ROOT_ID, "grp-dir", NULL);
    uint64_t mine = lookup(FUSE_ROOT_ID, "mine", NULL);
    struct fuse_entry_out e;

    for (uint32_t uid = 0; uid <= 1000; uid += 1000) { /* guest root and a guest user alike */
        g_assert_cmpint(open_as(uid, f, FUSE_OPEN, O_RDONLY, NULL), ==, -EACCES);
        g_assert_cmpint(mkdir_as(uid, uid, d, "sub", &e), ==, -EACCES);
        g_assert_false(hexists("grp-dir/sub"));
        g_assert_cmpint(open_as(uid, d, FUSE_OPENDIR, O_RDONLY | O_DIRECTORY, NULL), ==, -EACCES);
        struct fuse_setattr_in si = {.valid = FATTR_GID, .gid = 4242};
        g_assert_cmpint(setattr_as(uid, mine, &si, NULL), ==, -EPERM);
        assert_howner("mine", 1000, 1000);
    }
    /* What host 1000 may do it still does. */
    uint64_t fh;
    g_assert_cmpint(open_as(1000, mine, FUSE_OPEN, O_RDWR, &fh), ==, 0);
    g_assert_cmpint(release_as(1000, mine, fh, false), ==, 0);
    stop();
}

static mode_t hmode(const char *rel)
{
    struct stat st;
    g_assert_cmpint(lstat(hp(rel), &st), ==, 0);
    return st.st_mode & 07777;
}

/* A SETATTR dropping only S_ISUID/S_ISGID, as the guest kernel sends before a write. */
static int kill_priv_as(uint32_t uid, uint64_t nodeid, mode_t cur)
{
    struct fuse_setattr_in si = {.valid = FATTR_MODE, .mode = cur & ~(mode_t)(S_ISUID | S_ISGID)};
    return setattr_as(uid, nodeid, &si, NULL);
}

/*
 * The kill-priv chmod is redone with the daemon's credentials only where a local write would
 * clear the bits: a regular file the (squashed) caller may write. (Before: the set-ID bits of
 * the root-owned 4755 binary and of the root-owned 2775 directory were stripped.)
 */
static void test_squash_kill_priv(void)
{
    if (!start(squash_all_args))
        return;
    hput("suid-bin", 04755, 0, 0);
    hmkdir("sgid-dir", 02775, 0, 0);
    hput("sgid-grp", 02775, 0, 0); /* group-writable, but host 1000 is not in group 0 */
    hput("suid-open", 04777, 0, 0);
    hput("suid-own", 04755, 1000, 1000);
    uint64_t bin = lookup(FUSE_ROOT_ID, "suid-bin", NULL);
    uint64_t dir = lookup(FUSE_ROOT_ID, "sgid-dir", NULL);
    uint64_t grp = lookup(FUSE_ROOT_ID, "sgid-grp", NULL);
    uint64_t open = lookup(FUSE_ROOT_ID, "suid-open", NULL);
    uint64_t own = lookup(FUSE_ROOT_ID, "suid-own", NULL);

    for (uint32_t uid = 0; uid <= 1000; uid += 1000) {
        g_assert_cmpint(kill_priv_as(uid, bin, 04755), ==, -EPERM);
        g_assert_cmpuint(hmode("suid-bin"), ==, 04755);
        g_assert_cmpint(kill_priv_as(uid, dir, 02775), ==, -EPERM);
        g_assert_cmpuint(hmode("sgid-dir"), ==, 02775);
        g_assert_cmpint(kill_priv_as(uid, grp, 02775), ==, -EPERM);
        g_assert_cmpuint(hmode("sgid-grp"), ==, 02775);
    }
    /* A file host 1000 may write: what a write of it would do locally. */
    g_assert_cmpint(kill_priv_as(1000, open, 04777), ==, 0);
    g_assert_cmpuint(hmode("suid-open"), ==, 0777);
    /* The owner may chmod anyway. */
    g_assert_cmpint(kill_priv_as(1000, own, 04755), ==, 0);
    g_assert_cmpuint(hmode("suid-own"), ==, 0755);
    stop();
}

/* A value the daemon cannot parse ends start-up with a usage error (status 2). */
static void test_bad_value(void)
{
    const char *const args[] = {"--translate-uid", "map:1:2", NULL};
    struct test_daemon d;
    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
    g_assert_cmpint(test_daemon_start(&d, args), <, 0);
    g_assert_true(test_daemon_log_contains(&d, "--translate-uid"));
    g_assert_cmpint(test_daemon_stop(&d), ==, 2);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/idmap/map/creation", test_map_creation);
    g_test_add_func("/idmap/map/attributes", test_map_attributes);
    g_test_add_func("/idmap/forbid-guest", test_forbid);
    g_test_add_func("/idmap/squash", test_squash);
    g_test_add_func("/idmap/squash/no-group-retry", test_squash_no_group_retry);
    g_test_add_func("/idmap/squash/kill-priv", test_squash_kill_priv);
    g_test_add_func("/idmap/bad-value", test_bad_value);
    return g_test_run();
}
