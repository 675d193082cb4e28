/*
 * posix-conform: a POSIX conformance checker for file system semantics, in
 * the spirit of pjdfstest, written for the virtio-fs guest tests.
 *
 *   posix-conform DIR [--uid U --gid G] [--other DIR2]
 *
 * Makes a fresh subdirectory of DIR and runs every check in it: chmod,
 * chown, link, mkdir, mkfifo, mknod, open, rename, rmdir, symlink,
 * truncate, ftruncate, unlink, utimensat, posix_fallocate and write, each
 * with its success path (the resulting mode, owner, size, link count and
 * timestamps checked with stat) and its error paths (the exact errno),
 * sticky directories, set-user/group-ID clearing and the ctime/mtime
 * updates POSIX requires.
 *
 * Started as root, it first makes the fixtures only root can make (files
 * and directories owned by another user, a sticky directory, set-ID files,
 * a directory of a supplementary group).  With --uid/--gid it then drops
 * to that user (setgroups(G, 4243), setresgid, setresuid) and runs the
 * checks unprivileged; without them it runs them as root.  Checks whose
 * outcome depends on privilege branch on geteuid(), so both ways are
 * meaningful.  Started unprivileged, the fixture checks are skipped.
 * --other DIR2 names a directory on another file system, for EXDEV.
 *
 * Output: one line per check, "PASS: name", "FAIL: name: got X want Y" or
 * "SKIP: name: reason", then "posix-conform: N passed, N failed, N
 * skipped".  Exit status 0 if nothing failed.  The checks are
 * deterministic: a timestamp that must change is first set to an old value
 * with utimensat (mtime/atime), or sampled and then followed by a pause
 * longer than the kernel's timestamp granularity (ctime, which cannot be
 * set).  The same static binary runs on the host (the baseline) and in the
 * guest.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define OTHER_UID 4242 /* owner of the fixtures "owned by someone else" */
#define OTHER_GID 4242
#define SUPP_GID  4243       /* supplementary group of the unprivileged user */
#define OLD_SEC   1000000000 /* 2001-09-09: "an old timestamp" */

static int npass, nfail, nskip;
static int priv;     /* the checks run as root */
static int fixtures; /* root made the fixtures owned by others */
static int dropped;  /* we dropped to --uid/--gid ourselves (SUPP_GID is ours) */
static uid_t me_uid;
static gid_t me_gid;
static char other[PATH_MAX]; /* a directory on another file system, or "" */
static int protected_hardlinks;
static char name256[257]; /* one byte over NAME_MAX */

/* A 255-byte name (NAME_MAX) made of C. */
static const char *name255(char c)
{
    static char buf[4][256];
    static int n;

    n = (n + 1) % 4;
    memset(buf[n], c, 255);
    buf[n][255] = 0;
    return buf[n];
}

/* ---- reporting ------------------------------------------------------------------------------ */

static void pass(const char *name)
{
    printf("PASS: %s\n", name);
    npass++;
}

static void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *name, const char *fmt, ...)
{
    va_list ap;

    printf("FAIL: %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    nfail++;
}

static void skip(const char *name, const char *why)
{
    printf("SKIP: %s: %s\n", name, why);
    nskip++;
}

static const char *ename(int e)
{
    static const struct {
        int num;
        const char *name;
    } names[] = {
        {0, "success"},
        {EPERM, "EPERM"},
        {ENOENT, "ENOENT"},
        {EIO, "EIO"},
        {ENXIO, "ENXIO"},
        {EBADF, "EBADF"},
        {EAGAIN, "EAGAIN"},
        {ENOMEM, "ENOMEM"},
        {EACCES, "EACCES"},
        {EFAULT, "EFAULT"},
        {EBUSY, "EBUSY"},
        {EEXIST, "EEXIST"},
        {EXDEV, "EXDEV"},
        {ENODEV, "ENODEV"},
        {ENOTDIR, "ENOTDIR"},
        {EISDIR, "EISDIR"},
        {EINVAL, "EINVAL"},
        {EFBIG, "EFBIG"},
        {ENOSPC, "ENOSPC"},
        {ESPIPE, "ESPIPE"},
        {EROFS, "EROFS"},
        {EMLINK, "EMLINK"},
        {ERANGE, "ERANGE"},
        {ENAMETOOLONG, "ENAMETOOLONG"},
        {ENOSYS, "ENOSYS"},
        {ENOTEMPTY, "ENOTEMPTY"},
        {ELOOP, "ELOOP"},
        {ENODATA, "ENODATA"},
        {EOPNOTSUPP, "EOPNOTSUPP"},
        {ETXTBSY, "ETXTBSY"},
        {EOVERFLOW, "EOVERFLOW"},
        {ESTALE, "ESTALE"},
        {EINTR, "EINTR"},
    };
    static char buf[4][16];
    static int n;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].num == e)
            return names[i].name;
    n = (n + 1) % 4;
    snprintf(buf[n], sizeof(buf[n]), "errno %d", e);
    return buf[n];
}

/* The outcome of a call that returns -1 and sets errno: 0 or the errno. */
#define R(call) ((call) == -1 ? errno : 0)

/* NAME: the outcome GOT (0 or an errno) must be WANT (0 or an errno). */
static void expect(const char *name, int got, int want)
{
    if (got == want)
        pass(name);
    else
        fail(name, "got %s want %s", ename(got), ename(want));
}

/* Success for root, WANT for an unprivileged caller. */
static void expect_priv(const char *name, int got, int unpriv_want)
{
    expect(name, got, priv ? 0 : unpriv_want);
}

static void expect_num(const char *name, long long got, long long want)
{
    if (got == want)
        pass(name);
    else
        fail(name, "got %lld want %lld", got, want);
}

static void expect_true(const char *name, int cond, const char *what)
{
    if (cond)
        pass(name);
    else
        fail(name, "got %s", what);
}

/* lstat PATH for a check; reports the failure under NAME. */
static int lst(const char *name, const char *path, struct stat *st)
{
    if (lstat(path, st) == 0)
        return 0;
    fail(name, "got lstat(%s): %s", path, ename(errno));
    return -1;
}

static void expect_mode(const char *name, const char *path, mode_t want)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    if ((st.st_mode & 07777) == want)
        pass(name);
    else
        fail(name, "got mode %04o want %04o", (unsigned)(st.st_mode & 07777), (unsigned)want);
}

static void expect_type(const char *name, const char *path, mode_t type)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    if ((st.st_mode & S_IFMT) == type)
        pass(name);
    else
        fail(name, "got type %06o want %06o", (unsigned)(st.st_mode & S_IFMT), (unsigned)type);
}

static void expect_owner(const char *name, const char *path, uid_t uid, gid_t gid)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    if (st.st_uid == uid && st.st_gid == gid)
        pass(name);
    else
        fail(name, "got owner %u:%u want %u:%u", (unsigned)st.st_uid, (unsigned)st.st_gid,
             (unsigned)uid, (unsigned)gid);
}

static void expect_gid(const char *name, const char *path, gid_t gid)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    expect_num(name, st.st_gid, gid);
}

static void expect_size(const char *name, const char *path, off_t size)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    expect_num(name, st.st_size, size);
}

static void expect_nlink(const char *name, const char *path, nlink_t n)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    expect_num(name, (long long)st.st_nlink, (long long)n);
}

static void expect_absent(const char *name, const char *path)
{
    struct stat st;

    if (lstat(path, &st) == 0)
        fail(name, "got %s still there want ENOENT", path);
    else
        expect(name, errno, ENOENT);
}

static void expect_content(const char *name, const char *path, const char *want)
{
    char buf[256];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY);

    if (fd >= 0) {
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
    }
    if (n < 0) {
        fail(name, "got read(%s): %s", path, ename(errno));
        return;
    }
    buf[n] = 0;
    if (strcmp(buf, want) == 0)
        pass(name);
    else
        fail(name, "got content '%s' want '%s'", buf, want);
}

/* Does this check need the root-made fixtures?  Skips it if they are missing. */
static int fx(const char *name)
{
    if (fixtures)
        return 1;
    skip(name, "needs the fixtures root makes (start as root)");
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* Make a regular file PATH with CONTENT and exactly MODE (umask aside); 0 or errno. */
static int mkf(const char *path, mode_t mode, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600), e = 0;
    size_t len = content ? strlen(content) : 0;

    if (fd < 0)
        return errno;
    if (len && write(fd, content, len) != (ssize_t)len)
        e = errno ? errno : EIO;
    if (!e && fchmod(fd, mode) < 0)
        e = errno;
    close(fd);
    return e;
}

static int mkd(const char *path, mode_t mode)
{
    if (mkdir(path, 0700) < 0)
        return errno;
    return R(chmod(path, mode));
}

/* Write LEN bytes of STR at the end of the file; 0 or errno. */
static int write_str(const char *path, const char *str)
{
    int fd = open(path, O_WRONLY | O_APPEND), e = 0;

    if (fd < 0)
        return errno;
    if (write(fd, str, strlen(str)) != (ssize_t)strlen(str))
        e = errno ? errno : EIO;
    close(fd);
    return e;
}

static int set_times(const char *path, time_t a, long an, time_t m, long mn)
{
    struct timespec ts[2] = {{.tv_sec = a, .tv_nsec = an}, {.tv_sec = m, .tv_nsec = mn}};

    return R(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW));
}

static int ts_cmp(struct timespec a, struct timespec b)
{
    if (a.tv_sec != b.tv_sec)
        return a.tv_sec < b.tv_sec ? -1 : 1;
    if (a.tv_nsec != b.tv_nsec)
        return a.tv_nsec < b.tv_nsec ? -1 : 1;
    return 0;
}

/* Longer than any kernel's coarse clock tick (1/HZ, at most 10 ms), so a
 * ctime set after it differs from one sampled before it. */
static void tick(void)
{
    struct timespec d = {.tv_sec = 0, .tv_nsec = 25 * 1000 * 1000};

    while (nanosleep(&d, &d) < 0 && errno == EINTR)
        ;
}

/* The "before" of a timestamp check: atime and mtime set to OLD_SEC, ctime
 * sampled afterwards.  Call tick() between the last snap and the operation. */
struct snap {
    struct timespec ctime;
    int err;
};

static struct snap snap(const char *path)
{
    struct snap s = {.err = set_times(path, OLD_SEC, 0, OLD_SEC, 0)};
    struct stat st;

    if (!s.err && lstat(path, &st) < 0)
        s.err = errno;
    if (!s.err)
        s.ctime = st.st_ctim;
    return s;
}

/* After the operation: mtime (set old by snap) must have changed. */
static void expect_mtime_changed(const char *name, const char *path, struct snap s)
{
    struct stat st;

    if (s.err) {
        fail(name, "got %s setting the old times first", ename(s.err));
        return;
    }
    if (lst(name, path, &st) < 0)
        return;
    if (st.st_mtim.tv_sec != OLD_SEC || st.st_mtim.tv_nsec != 0)
        pass(name);
    else
        fail(name, "got mtime unchanged (%d) want updated", OLD_SEC);
}

static void expect_mtime_same(const char *name, const char *path, struct snap s)
{
    struct stat st;

    if (s.err) {
        fail(name, "got %s setting the old times first", ename(s.err));
        return;
    }
    if (lst(name, path, &st) < 0)
        return;
    if (st.st_mtim.tv_sec == OLD_SEC && st.st_mtim.tv_nsec == 0)
        pass(name);
    else
        fail(name, "got mtime %lld.%09ld want unchanged %d", (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, OLD_SEC);
}

/* After the operation: ctime must be later than the one sampled by snap. */
static void expect_ctime_changed(const char *name, const char *path, struct snap s)
{
    struct stat st;

    if (s.err) {
        fail(name, "got %s setting the old times first", ename(s.err));
        return;
    }
    if (lst(name, path, &st) < 0)
        return;
    if (ts_cmp(st.st_ctim, s.ctime) > 0)
        pass(name);
    else
        fail(name, "got ctime %lld.%09ld want later than %lld.%09ld", (long long)st.st_ctim.tv_sec,
             st.st_ctim.tv_nsec, (long long)s.ctime.tv_sec, s.ctime.tv_nsec);
}

static void expect_ctime_same(const char *name, const char *path, struct snap s)
{
    struct stat st;

    if (s.err) {
        fail(name, "got %s setting the old times first", ename(s.err));
        return;
    }
    if (lst(name, path, &st) < 0)
        return;
    if (ts_cmp(st.st_ctim, s.ctime) == 0)
        pass(name);
    else
        fail(name, "got ctime %lld.%09ld want unchanged %lld.%09ld", (long long)st.st_ctim.tv_sec,
             st.st_ctim.tv_nsec, (long long)s.ctime.tv_sec, s.ctime.tv_nsec);
}

static ino_t ino_of(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static int xrenameat2(const char *from, const char *to, unsigned flags)
{
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
}

static char *other_path(const char *leaf)
{
    static char buf[PATH_MAX + 64];

    snprintf(buf, sizeof(buf), "%s/%s", other, leaf);
    return buf;
}

/* ---- the objects many checks share -------------------------------------------------------------
 *   afile           a regular file (for ENOTDIR: afile/x)
 *   loop1 <-> loop2 a symlink loop (ELOOP)
 *   dangling        a symlink to a name that does not exist
 *   noexec/         mode 0600 (no search permission) holding files x, u and dir d
 *   name256         a 256-byte name (ENAMETOOLONG)
 */
static void make_common(void)
{
    memset(name256, 'n', 256);
    name256[256] = 0;
    if (mkf("afile", 0644, "afile\n") || symlink("loop2", "loop1") || symlink("loop1", "loop2") ||
        symlink("nowhere", "dangling") || mkdir("noexec", 0755) || mkf("noexec/x", 0644, "x\n") ||
        mkf("noexec/u", 0644, "u\n") || mkf("noexec/t", 0666, "t\n") || mkdir("noexec/d", 0755) ||
        mkf("noexec/l", 0644, "l\n") || chmod("noexec", 0600)) {
        fprintf(stderr, "posix-conform: cannot make the common objects: %s\n", strerror(errno));
        exit(2);
    }
}

/* ---- fixtures root makes before dropping privileges ------------------------------------------ */

static int fxf(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    int e = mkf(path, 0600, "fixture\n");

    if (!e)
        e = R(chown(path, uid, gid));
    if (!e)
        e = R(chmod(path, mode)); /* after chown, which clears set-ID bits */
    return e;
}

static int fxd(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    int e = R(mkdir(path, 0700));

    if (!e)
        e = R(chown(path, uid, gid));
    if (!e)
        e = R(chmod(path, mode));
    return e;
}

/* Owned by OTHER_UID unless noted.  ME is the user the checks run as. */
static void make_fixtures(uid_t me, gid_t mg)
{
    const uid_t o = OTHER_UID;
    const gid_t og = OTHER_GID;
    int e = 0;

    e = e ?: fxf("o_file", 0644, o, og);
    e = e ?: fxf("o_chmod", 0644, o, og);
    e = e ?: fxf("o_chown", 0644, o, og);
    e = e ?: fxf("o_utime", 0666, o, og);
    e = e ?: fxf("o_utime2", 0644, o, og);
    e = e ?: fxf("o_trunc_rw", 0666, o, og);
    e = e ?: fxf("o_suid_w", 06777, o, og);
    e = e ?: fxf("o_suid_t", 06777, o, og);
    e = e ?: fxf("o_suid_ot", 06777, o, og);
    e = e ?: fxf("o_suid_ft", 06777, o, og);
    e = e ?: fxf("o_sgid_nox", 02666, o, og);
    e = e ?: fxf("o_link", 0644, o, og);
    e = e ?: fxf("o_link_rw", 0666, o, og);
    /* o_dir: not writable by the user */
    e = e ?: fxd("o_dir", 0755, o, og);
    e = e ?: fxf("o_dir/f", 0644, o, og);
    e = e ?: fxf("o_dir/f2", 0644, o, og);
    e = e ?: fxd("o_dir/sub", 0755, o, og);
    /* o_dir_w: writable by everyone, not sticky */
    e = e ?: fxd("o_dir_w", 0777, o, og);
    e = e ?: fxf("o_dir_w/f", 0644, o, og);
    e = e ?: fxf("o_dir_w/f2", 0644, o, og);
    e = e ?: fxd("o_dir_w/sub", 0755, o, og);
    /* sticky: 1777, others' files and directory in it */
    e = e ?: fxd("sticky", 01777, o, og);
    e = e ?: fxf("sticky/of", 0666, o, og);
    e = e ?: fxf("sticky/of2", 0666, o, og);
    e = e ?: fxf("sticky/of3", 0666, o, og);
    e = e ?: fxf("sticky/of4", 0666, o, og);
    e = e ?: fxd("sticky/od", 0777, o, og);
    /* usticky: a sticky directory the user owns, with someone else's file */
    e = e ?: fxd("usticky", 01777, me, mg);
    e = e ?: fxf("usticky/of", 0666, o, og);
    /* sgid_dir: set-group-ID directory of a group the user is not in */
    e = e ?: fxd("sgid_dir", 02777, o, og);
    /* the user's supplementary group */
    e = e ?: fxf("supp_file", 0640, o, SUPP_GID);
    e = e ?: fxd("supp_dir", 0770, o, SUPP_GID);
    /* the user's own file in a group the user is not in */
    e = e ?: fxf("u_othergrp", 0644, me, og);
    if (e) {
        fprintf(stderr, "posix-conform: cannot make the fixtures: %s\n", strerror(e));
        exit(2);
    }
    fixtures = 1;
}

/* ---- chmod ---------------------------------------------------------------------------------- */

static void t_chmod(void)
{
    struct snap s;
    int fd;

    mkf("chmod.f", 0644, NULL);
    expect("chmod/file", R(chmod("chmod.f", 0600)), 0);
    expect_mode("chmod/file-mode", "chmod.f", 0600);
    expect("chmod/file-0777", R(chmod("chmod.f", 0777)), 0);
    expect_mode("chmod/file-0777-mode", "chmod.f", 0777);
    expect("chmod/setuid-own", R(chmod("chmod.f", 04755)), 0);
    expect_mode("chmod/setuid-own-mode", "chmod.f", 04755);
    /* the file's group is the caller's: set-group-ID stays */
    expect("chmod/setgid-own-group", R(chmod("chmod.f", 02755)), 0);
    expect_mode("chmod/setgid-own-group-mode", "chmod.f", 02755);
    expect("chmod/sticky-on-file", R(chmod("chmod.f", 01644)), 0);
    expect_mode("chmod/sticky-on-file-mode", "chmod.f", 01644);
    mkdir("chmod.d", 0755);
    expect("chmod/dir", R(chmod("chmod.d", 0700)), 0);
    expect_mode("chmod/dir-mode", "chmod.d", 0700);
    expect("chmod/dir-setgid-sticky", R(chmod("chmod.d", 03755)), 0);
    expect_mode("chmod/dir-setgid-sticky-mode", "chmod.d", 03755);

    fd = open("chmod.f", O_RDONLY);
    expect("chmod/fchmod", R(fchmod(fd, 0640)), 0);
    close(fd);
    expect_mode("chmod/fchmod-mode", "chmod.f", 0640);
    expect("chmod/fchmodat", R(fchmodat(AT_FDCWD, "chmod.f", 0604, 0)), 0);
    expect_mode("chmod/fchmodat-mode", "chmod.f", 0604);

    mkf("chmod.t", 0644, NULL);
    symlink("chmod.t", "chmod.l");
    expect("chmod/follows-symlink", R(chmod("chmod.l", 0600)), 0);
    expect_mode("chmod/follows-symlink-target-mode", "chmod.t", 0600);
    expect_mode("chmod/follows-symlink-link-mode", "chmod.l", 0777);
    expect("chmod/nofollow-symlink", R(fchmodat(AT_FDCWD, "chmod.l", 0644, AT_SYMLINK_NOFOLLOW)),
           EOPNOTSUPP);

    expect("chmod/ENOENT", R(chmod("chmod.none", 0644)), ENOENT);
    expect("chmod/ENOTDIR", R(chmod("afile/x", 0644)), ENOTDIR);
    expect("chmod/ELOOP", R(chmod("loop1", 0644)), ELOOP);
    expect("chmod/ENAMETOOLONG", R(chmod(name256, 0644)), ENAMETOOLONG);
    expect_priv("chmod/no-search-permission", R(chmod("noexec/x", 0644)), EACCES);

    if (fx("chmod/other-owner")) {
        expect_priv("chmod/other-owner", R(chmod("o_chmod", 0600)), EPERM);
        expect_mode("chmod/other-owner-mode", "o_chmod", priv ? 0600 : 0644);
    }
    /* set-group-ID asked for a file of a group the caller is not in: dropped silently
     * unless privileged (CAP_FSETID) */
    if (fx("chmod/setgid-nonmember")) {
        expect("chmod/setgid-nonmember", R(chmod("u_othergrp", 02755)), 0);
        expect_mode("chmod/setgid-nonmember-mode", "u_othergrp", priv ? 02755 : 0755);
    }

    mkf("chmod.c", 0644, NULL);
    s = snap("chmod.c");
    tick();
    chmod("chmod.c", 0640);
    expect_ctime_changed("chmod/ctime", "chmod.c", s);
    expect_mtime_same("chmod/mtime-unchanged", "chmod.c", s);
}

/* ---- chown ---------------------------------------------------------------------------------- */

static void t_chown(void)
{
    struct snap s;
    int fd;

    mkf("chown.f", 0644, NULL);
    expect("chown/noop", R(chown("chown.f", (uid_t)-1, (gid_t)-1)), 0);
    expect("chown/same-uid", R(chown("chown.f", me_uid, (gid_t)-1)), 0);
    expect("chown/own-gid", R(chown("chown.f", (uid_t)-1, me_gid)), 0);
    expect_owner("chown/own-gid-owner", "chown.f", me_uid, me_gid);

    mkf("chown.u", 0644, NULL);
    expect_priv("chown/to-other-uid", R(chown("chown.u", OTHER_UID, (gid_t)-1)), EPERM);
    expect_owner("chown/to-other-uid-owner", "chown.u", priv ? OTHER_UID : me_uid, me_gid);
    mkf("chown.g", 0644, NULL);
    expect_priv("chown/to-nonmember-gid", R(chown("chown.g", (uid_t)-1, OTHER_GID)), EPERM);
    expect_owner("chown/to-nonmember-gid-owner", "chown.g", me_uid, priv ? OTHER_GID : me_gid);
    if (fx("chown/other-file"))
        expect_priv("chown/other-file", R(chown("o_chown", me_uid, (gid_t)-1)), EPERM);

    /* chown of a regular file clears set-user-ID, and set-group-ID when group-executable,
     * for root too, even when nothing changes */
    mkf("chown.s1", 06755, NULL);
    expect("chown/clears-setid", R(chown("chown.s1", (uid_t)-1, me_gid)), 0);
    expect_mode("chown/clears-setid-mode", "chown.s1", 0755);
    mkf("chown.s2", 06755, NULL);
    expect("chown/noop-clears-setid", R(chown("chown.s2", (uid_t)-1, (gid_t)-1)), 0);
    expect_mode("chown/noop-clears-setid-mode", "chown.s2", 0755);
    mkf("chown.s3", 02644, NULL);
    expect("chown/keeps-setgid-without-gx", R(chown("chown.s3", (uid_t)-1, me_gid)), 0);
    expect_mode("chown/keeps-setgid-without-gx-mode", "chown.s3", 02644);
    mkd("chown.d", 02755);
    expect("chown/dir-keeps-setgid", R(chown("chown.d", (uid_t)-1, me_gid)), 0);
    expect_mode("chown/dir-keeps-setgid-mode", "chown.d", 02755);

    mkf("chown.c", 0644, NULL);
    s = snap("chown.c");
    tick();
    chown("chown.c", (uid_t)-1, me_gid);
    expect_ctime_changed("chown/ctime", "chown.c", s);

    mkf("chown.t", 0644, NULL);
    symlink("chown.t", "chown.l");
    if (priv) {
        expect("chown/lchown-symlink", R(lchown("chown.l", OTHER_UID, OTHER_GID)), 0);
        expect_owner("chown/lchown-symlink-owner", "chown.l", OTHER_UID, OTHER_GID);
        expect_owner("chown/lchown-symlink-target-owner", "chown.t", me_uid, me_gid);
        expect("chown/follows-symlink", R(chown("chown.l", OTHER_UID, (gid_t)-1)), 0);
        expect_owner("chown/follows-symlink-target-owner", "chown.t", OTHER_UID, me_gid);
    } else {
        expect("chown/lchown-symlink", R(lchown("chown.l", (uid_t)-1, me_gid)), 0);
        expect("chown/lchown-symlink-other-uid", R(lchown("chown.l", OTHER_UID, (gid_t)-1)), EPERM);
        expect("chown/follows-symlink", R(chown("chown.l", me_uid, me_gid)), 0);
        expect("chown/follows-symlink-other-uid", R(chown("chown.l", OTHER_UID, (gid_t)-1)), EPERM);
    }
    fd = open("chown.f", O_RDONLY);
    expect("chown/fchown", R(fchown(fd, (uid_t)-1, me_gid)), 0);
    close(fd);

    expect("chown/ENOENT", R(chown("chown.none", me_uid, me_gid)), ENOENT);
    expect("chown/ENOTDIR", R(chown("afile/x", me_uid, me_gid)), ENOTDIR);
    expect("chown/ELOOP", R(chown("loop1", me_uid, me_gid)), ELOOP);
    expect("chown/ENAMETOOLONG", R(chown(name256, me_uid, me_gid)), ENAMETOOLONG);
    expect_priv("chown/no-search-permission", R(chown("noexec/x", (uid_t)-1, (gid_t)-1)), EACCES);
}

/* ---- link ----------------------------------------------------------------------------------- */

static void t_link(void)
{
    struct snap s, sd;

    mkf("link.a", 0644, "a");
    expect("link/basic", R(link("link.a", "link.b")), 0);
    expect_nlink("link/nlink", "link.a", 2);
    expect_true("link/same-inode", ino_of("link.a") && ino_of("link.a") == ino_of("link.b"),
                "different inodes");
    expect_content("link/content", "link.b", "a");

    mkf("link.c", 0644, NULL);
    mkdir("link.d", 0755);
    s = snap("link.c");
    sd = snap("link.d");
    tick();
    link("link.c", "link.d/c");
    expect_ctime_changed("link/file-ctime", "link.c", s);
    expect_mtime_changed("link/parent-mtime", "link.d", sd);
    expect_ctime_changed("link/parent-ctime", "link.d", sd);

    expect("link/EEXIST", R(link("link.a", "link.b")), EEXIST);
    expect("link/EEXIST-symlink", R(link("link.a", "dangling")), EEXIST);
    expect("link/ENOENT-source", R(link("link.none", "link.n")), ENOENT);
    expect("link/ENOENT-target-dir", R(link("link.a", "link.nodir/x")), ENOENT);
    expect("link/ENOENT-empty", R(link("", "link.e")), ENOENT);
    expect("link/ENOTDIR-source", R(link("afile/x", "link.n")), ENOTDIR);
    expect("link/ENOTDIR-target", R(link("link.a", "afile/x")), ENOTDIR);
    expect("link/dir-EPERM", R(link("link.d", "link.dd")), EPERM);
    expect("link/ENAMETOOLONG", R(link("link.a", name256)), ENAMETOOLONG);
    expect("link/ELOOP", R(link("loop1/x", "link.y")), ELOOP);
    expect_priv("link/no-search-permission", R(link("noexec/l", "link.q")), EACCES);

    symlink("link.a", "link.s");
    expect("link/symlink-not-followed", R(link("link.s", "link.s2")), 0);
    expect_type("link/symlink-not-followed-type", "link.s2", S_IFLNK);

    if (fx("link/EACCES-target-dir"))
        expect_priv("link/EACCES-target-dir", R(link("link.a", "o_dir/lnk")), EACCES);
    /* fs.protected_hardlinks: a file one neither owns nor can read and write */
    if (fx("link/other-file"))
        expect("link/other-file", R(link("o_link", "link.o")),
               priv || !protected_hardlinks ? 0 : EPERM);
    if (fx("link/other-file-rw"))
        expect("link/other-file-rw", R(link("o_link_rw", "link.orw")), 0);

    if (other[0]) {
        expect("link/EXDEV", R(link(other_path("f"), "link.x")), EXDEV);
        expect("link/EXDEV-to-other", R(link("link.a", other_path("l"))), EXDEV);
    } else {
        skip("link/EXDEV", "no --other file system");
    }
}

/* ---- mkdir ---------------------------------------------------------------------------------- */

static void t_mkdir(void)
{
    struct snap s;

    expect("mkdir/basic", R(mkdir("mkdir.a", 0777)), 0);
    expect_type("mkdir/basic-type", "mkdir.a", S_IFDIR);
    expect_mode("mkdir/basic-mode-umask", "mkdir.a", 0755);
    expect_owner("mkdir/basic-owner", "mkdir.a", me_uid, me_gid);
    expect_nlink("mkdir/basic-nlink", "mkdir.a", 2);
    expect("mkdir/mode-0700", R(mkdir("mkdir.b", 0700)), 0);
    expect_mode("mkdir/mode-0700-mode", "mkdir.b", 0700);
    expect("mkdir/sticky", R(mkdir("mkdir.c", 01777)), 0);
    expect_mode("mkdir/sticky-mode", "mkdir.c", 01755);

    mkdir("mkdir.p", 0755);
    s = snap("mkdir.p");
    tick();
    mkdir("mkdir.p/sub", 0755);
    expect_nlink("mkdir/parent-nlink", "mkdir.p", 3);
    expect_mtime_changed("mkdir/parent-mtime", "mkdir.p", s);
    expect_ctime_changed("mkdir/parent-ctime", "mkdir.p", s);

    expect("mkdir/EEXIST-file", R(mkdir("afile", 0755)), EEXIST);
    expect("mkdir/EEXIST-dir", R(mkdir("mkdir.a", 0755)), EEXIST);
    expect("mkdir/EEXIST-dangling-symlink", R(mkdir("dangling", 0755)), EEXIST);
    expect("mkdir/ENOENT", R(mkdir("mkdir.none/x", 0755)), ENOENT);
    expect("mkdir/ENOTDIR", R(mkdir("afile/x", 0755)), ENOTDIR);
    expect("mkdir/ELOOP", R(mkdir("loop1/x", 0755)), ELOOP);
    expect("mkdir/ENAMETOOLONG", R(mkdir(name256, 0755)), ENAMETOOLONG);
    expect("mkdir/name-255", R(mkdir(name255('m'), 0755)), 0);
    expect_priv("mkdir/no-search-permission", R(mkdir("noexec/m", 0755)), EACCES);
    if (fx("mkdir/EACCES"))
        expect_priv("mkdir/EACCES", R(mkdir("o_dir/m", 0755)), EACCES);
    if (fx("mkdir/setgid-parent")) {
        expect("mkdir/setgid-parent", R(mkdir("sgid_dir/d", 0755)), 0);
        expect_gid("mkdir/setgid-parent-gid", "sgid_dir/d", OTHER_GID);
        expect_mode("mkdir/setgid-parent-mode", "sgid_dir/d", 02755);
    }
}

/* ---- mkfifo and mknod ----------------------------------------------------------------------- */

static void t_mkfifo(void)
{
    struct snap s;
    int fd;

    expect("mkfifo/basic", R(mkfifo("fifo.a", 0666)), 0);
    expect_type("mkfifo/basic-type", "fifo.a", S_IFIFO);
    expect_mode("mkfifo/basic-mode-umask", "fifo.a", 0644);
    expect_owner("mkfifo/basic-owner", "fifo.a", me_uid, me_gid);
    fd = open("fifo.a", O_WRONLY | O_NONBLOCK);
    expect("mkfifo/open-write-no-reader-ENXIO", fd < 0 ? errno : 0, ENXIO);
    if (fd >= 0)
        close(fd);
    fd = open("fifo.a", O_RDONLY | O_NONBLOCK);
    expect("mkfifo/open-read-nonblock", fd < 0 ? errno : 0, 0);
    if (fd >= 0)
        close(fd);

    mkdir("fifo.p", 0755);
    s = snap("fifo.p");
    tick();
    mkfifo("fifo.p/f", 0600);
    expect_mtime_changed("mkfifo/parent-mtime", "fifo.p", s);
    expect_ctime_changed("mkfifo/parent-ctime", "fifo.p", s);

    expect("mkfifo/EEXIST", R(mkfifo("afile", 0644)), EEXIST);
    expect("mkfifo/EEXIST-dangling-symlink", R(mkfifo("dangling", 0644)), EEXIST);
    expect("mkfifo/ENOENT", R(mkfifo("fifo.none/x", 0644)), ENOENT);
    expect("mkfifo/ENOTDIR", R(mkfifo("afile/x", 0644)), ENOTDIR);
    expect("mkfifo/ELOOP", R(mkfifo("loop1/x", 0644)), ELOOP);
    expect("mkfifo/ENAMETOOLONG", R(mkfifo(name256, 0644)), ENAMETOOLONG);
    expect_priv("mkfifo/no-search-permission", R(mkfifo("noexec/f", 0644)), EACCES);
    if (fx("mkfifo/EACCES"))
        expect_priv("mkfifo/EACCES", R(mkfifo("o_dir/ff", 0644)), EACCES);
}

static void t_mknod(void)
{
    struct stat st;

    expect("mknod/fifo", R(mknod("nod.fifo", S_IFIFO | 0600, 0)), 0);
    expect_type("mknod/fifo-type", "nod.fifo", S_IFIFO);
    expect_mode("mknod/fifo-mode", "nod.fifo", 0600);
    expect("mknod/regular", R(mknod("nod.reg", S_IFREG | 0640, 0)), 0);
    expect_type("mknod/regular-type", "nod.reg", S_IFREG);
    expect_mode("mknod/regular-mode", "nod.reg", 0640);
    expect_size("mknod/regular-size", "nod.reg", 0);
    expect("mknod/regular-type-0", R(mknod("nod.reg0", 0640, 0)), 0);
    expect_type("mknod/regular-type-0-type", "nod.reg0", S_IFREG);
    expect("mknod/socket", R(mknod("nod.sock", S_IFSOCK | 0644, 0)), 0);
    expect_type("mknod/socket-type", "nod.sock", S_IFSOCK);

    expect_priv("mknod/char-device", R(mknod("nod.chr", S_IFCHR | 0600, makedev(1, 3))), EPERM);
    expect_priv("mknod/block-device", R(mknod("nod.blk", S_IFBLK | 0600, makedev(7, 200))), EPERM);
    if (priv) {
        expect_type("mknod/char-device-type", "nod.chr", S_IFCHR);
        if (lst("mknod/char-device-rdev", "nod.chr", &st) == 0)
            expect_true("mknod/char-device-rdev", st.st_rdev == makedev(1, 3), "another rdev");
        expect_type("mknod/block-device-type", "nod.blk", S_IFBLK);
        if (lst("mknod/block-device-rdev", "nod.blk", &st) == 0)
            expect_true("mknod/block-device-rdev", st.st_rdev == makedev(7, 200), "another rdev");
    } else {
        expect_absent("mknod/char-device-absent", "nod.chr");
    }
    expect("mknod/dir-EPERM", R(mknod("nod.dir", S_IFDIR | 0755, 0)), EPERM);
    expect("mknod/bad-type-EINVAL", R(mknod("nod.bad", S_IFMT | 0644, 0)), EINVAL);
    expect("mknod/EEXIST", R(mknod("afile", S_IFIFO | 0644, 0)), EEXIST);
    expect("mknod/ENOENT", R(mknod("nod.none/x", S_IFIFO | 0644, 0)), ENOENT);
    expect("mknod/ENOTDIR", R(mknod("afile/x", S_IFIFO | 0644, 0)), ENOTDIR);
    expect("mknod/ELOOP", R(mknod("loop1/x", S_IFIFO | 0644, 0)), ELOOP);
    expect("mknod/ENAMETOOLONG", R(mknod(name256, S_IFIFO | 0644, 0)), ENAMETOOLONG);
    if (fx("mknod/EACCES"))
        expect_priv("mknod/EACCES", R(mknod("o_dir/n", S_IFIFO | 0644, 0)), EACCES);
}

/* ---- open ----------------------------------------------------------------------------------- */

static int open_res(const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags, mode);

    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static void t_open(void)
{
    char longpath[4200];
    struct snap s;
    int fd;

    expect("open/create", open_res("open.a", O_WRONLY | O_CREAT, 0666), 0);
    expect_type("open/create-type", "open.a", S_IFREG);
    expect_mode("open/create-mode-umask", "open.a", 0644);
    expect_owner("open/create-owner", "open.a", me_uid, me_gid);
    expect_size("open/create-size", "open.a", 0);
    expect("open/O_EXCL-EEXIST", open_res("open.a", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
    expect("open/O_EXCL-dangling-symlink-EEXIST",
           open_res("dangling", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
    symlink("open.target", "open.dl");
    expect("open/create-through-dangling-symlink", open_res("open.dl", O_WRONLY | O_CREAT, 0644),
           0);
    expect_type("open/create-through-dangling-symlink-target", "open.target", S_IFREG);
    mkf("open.keep", 0644, "keep");
    expect("open/O_CREAT-existing", open_res("open.keep", O_WRONLY | O_CREAT, 0644), 0);
    expect_content("open/O_CREAT-existing-keeps-data", "open.keep", "keep");

    mkdir("open.pd", 0755);
    s = snap("open.pd");
    tick();
    open_res("open.pd/x", O_WRONLY | O_CREAT, 0644);
    expect_mtime_changed("open/create-parent-mtime", "open.pd", s);
    expect_ctime_changed("open/create-parent-ctime", "open.pd", s);

    expect("open/ENOENT", open_res("open.none", O_RDONLY, 0), ENOENT);
    expect("open/ENOENT-create-no-dir", open_res("open.nodir/x", O_WRONLY | O_CREAT, 0644), ENOENT);
    expect("open/ENOTDIR", open_res("afile/x", O_RDONLY, 0), ENOTDIR);
    expect("open/ENOTDIR-O_DIRECTORY", open_res("afile", O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
    mkdir("open.d", 0755);
    expect("open/dir-read", open_res("open.d", O_RDONLY, 0), 0);
    expect("open/EISDIR-write", open_res("open.d", O_WRONLY, 0), EISDIR);
    expect("open/EISDIR-rdwr", open_res("open.d", O_RDWR, 0), EISDIR);
    expect("open/EISDIR-create", open_res("open.d", O_WRONLY | O_CREAT, 0644), EISDIR);
    expect("open/EISDIR-trunc", open_res("open.d", O_RDONLY | O_TRUNC, 0), EISDIR);
    symlink("open.a", "open.sl");
    expect("open/ELOOP-O_NOFOLLOW", open_res("open.sl", O_RDONLY | O_NOFOLLOW, 0), ELOOP);
    expect("open/O_NOFOLLOW-regular", open_res("open.a", O_RDONLY | O_NOFOLLOW, 0), 0);
    expect("open/ELOOP-loop", open_res("loop1", O_RDONLY, 0), ELOOP);
    expect("open/ELOOP-loop-component", open_res("loop1/x", O_RDONLY, 0), ELOOP);
    expect("open/ELOOP-loop-create", open_res("loop1", O_WRONLY | O_CREAT, 0644), ELOOP);
    expect("open/ENAMETOOLONG", open_res(name256, O_RDONLY, 0), ENAMETOOLONG);
    expect("open/ENAMETOOLONG-create", open_res(name256, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
    for (size_t i = 0; i + 2 < sizeof(longpath); i += 2)
        memcpy(longpath + i, "./", 2);
    strcpy(longpath + sizeof(longpath) - 6, "afile");
    expect("open/ENAMETOOLONG-path", open_res(longpath, O_RDONLY, 0), ENAMETOOLONG);
    expect("open/name-255", open_res(name255('o'), O_WRONLY | O_CREAT, 0644), 0);

    mkf("open.wo", 0200, "x");
    expect_priv("open/EACCES-read", open_res("open.wo", O_RDONLY, 0), EACCES);
    mkf("open.ro", 0400, "x");
    expect_priv("open/EACCES-write", open_res("open.ro", O_WRONLY, 0), EACCES);
    expect_priv("open/no-search-permission", open_res("noexec/x", O_RDONLY, 0), EACCES);
    if (fx("open/EACCES-create")) {
        expect_priv("open/EACCES-create", open_res("o_dir/new", O_WRONLY | O_CREAT, 0644), EACCES);
        expect("open/other-read", open_res("o_file", O_RDONLY, 0), 0);
        expect_priv("open/other-write", open_res("o_file", O_WRONLY, 0), EACCES);
    }

    mkf("open.t", 0644, "some data");
    s = snap("open.t");
    tick();
    expect("open/O_TRUNC", open_res("open.t", O_WRONLY | O_TRUNC, 0), 0);
    expect_size("open/O_TRUNC-size", "open.t", 0);
    expect_mtime_changed("open/O_TRUNC-mtime", "open.t", s);
    expect_ctime_changed("open/O_TRUNC-ctime", "open.t", s);
    mkf("open.te", 0644, NULL);
    s = snap("open.te");
    tick();
    open_res("open.te", O_WRONLY | O_TRUNC, 0);
    expect_mtime_changed("open/O_TRUNC-empty-mtime", "open.te", s);
    expect_ctime_changed("open/O_TRUNC-empty-ctime", "open.te", s);

    /* a file created with mode 0 is still open for reading and writing by its creator */
    fd = open("open.m0", O_RDWR | O_CREAT | O_EXCL, 0);
    expect("open/create-mode-0-rdwr", fd < 0 ? errno : 0, 0);
    if (fd >= 0) {
        expect_num("open/create-mode-0-rdwr-write", write(fd, "x", 1), 1);
        close(fd);
    }
    expect_mode("open/create-mode-0-rdwr-mode", "open.m0", 0);
    expect_priv("open/mode-000-file", open_res("open.m0", O_RDWR, 0), EACCES);
    mkdir("open.d0", 0);
    expect_priv("open/dir-mode-000", open_res("open.d0", O_RDONLY | O_DIRECTORY, 0), EACCES);
    /* a file open before a chmod 000 keeps working through its descriptor */
    mkf("open.fc", 0644, "data");
    fd = open("open.fc", O_RDWR);
    if (fd >= 0) {
        char c;
        fchmod(fd, 0);
        expect_num("open/write-after-chmod-000", pwrite(fd, "D", 1, 0), 1);
        expect_num("open/read-after-chmod-000", pread(fd, &c, 1, 1), 1);
        close(fd);
    } else {
        fail("open/write-after-chmod-000", "got open: %s", ename(errno));
    }

    /* O_TMPFILE: an unnamed file, given a name with linkat unless O_EXCL */
    fd = open(".", O_TMPFILE | O_RDWR, 0640);
    expect("open/O_TMPFILE", fd < 0 ? errno : 0, 0);
    if (fd >= 0) {
        char proc[64];
        struct stat st;

        expect_num("open/O_TMPFILE-write", write(fd, "tmp", 3), 3);
        if (fstat(fd, &st) == 0)
            expect_num("open/O_TMPFILE-nlink", (long long)st.st_nlink, 0);
        else
            fail("open/O_TMPFILE-nlink", "got fstat: %s", ename(errno));
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        expect("open/O_TMPFILE-linkat",
               R(linkat(AT_FDCWD, proc, AT_FDCWD, "open.tmp", AT_SYMLINK_FOLLOW)), 0);
        close(fd);
        expect_content("open/O_TMPFILE-linkat-content", "open.tmp", "tmp");
        expect_mode("open/O_TMPFILE-linkat-mode", "open.tmp", 0640);
        expect_nlink("open/O_TMPFILE-linkat-nlink", "open.tmp", 1);
    }
    fd = open(".", O_TMPFILE | O_RDWR | O_EXCL, 0600);
    if (fd >= 0) {
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        expect("open/O_TMPFILE-O_EXCL-linkat",
               R(linkat(AT_FDCWD, proc, AT_FDCWD, "open.tmpx", AT_SYMLINK_FOLLOW)), ENOENT);
        close(fd);
    } else {
        fail("open/O_TMPFILE-O_EXCL-linkat", "got open: %s", ename(errno));
    }
    expect("open/O_TMPFILE-not-a-dir", open_res("afile", O_TMPFILE | O_RDWR, 0600), ENOTDIR);

    /* write+search without read permission on the directory: names work, listing does not */
    mkdir("open.wx", 0755);
    mkf("open.wx/f", 0644, "f");
    mkf("open.wx/g", 0644, "g");
    chmod("open.wx", 0300);
    expect("open/wx-dir-open-file", open_res("open.wx/f", O_RDONLY, 0), 0);
    expect("open/wx-dir-create", open_res("open.wx/new", O_WRONLY | O_CREAT, 0644), 0);
    expect("open/wx-dir-rename", R(rename("open.wx/new", "open.wx/new2")), 0);
    expect("open/wx-dir-unlink", R(unlink("open.wx/g")), 0);
    expect_priv("open/wx-dir-list", open_res("open.wx", O_RDONLY | O_DIRECTORY, 0), EACCES);
    /* search only */
    mkdir("open.x", 0755);
    mkf("open.x/f", 0644, "f");
    chmod("open.x", 0100);
    expect("open/x-dir-open-file", open_res("open.x/f", O_RDONLY, 0), 0);
    expect_priv("open/x-dir-create", open_res("open.x/new", O_WRONLY | O_CREAT, 0644), EACCES);
    expect_priv("open/x-dir-unlink", R(unlink("open.x/f")), EACCES);
    expect_priv("open/x-dir-list", open_res("open.x", O_RDONLY | O_DIRECTORY, 0), EACCES);

    mkf("open.ap", 0644, "a");
    fd = open("open.ap", O_WRONLY | O_APPEND);
    if (fd >= 0) {
        lseek(fd, 0, SEEK_SET);
        expect_num("open/O_APPEND-write", write(fd, "b", 1), 1);
        close(fd);
    } else {
        fail("open/O_APPEND-write", "got open: %s", ename(errno));
    }
    expect_content("open/O_APPEND-content", "open.ap", "ab");

    if (fx("open/setgid-dir-gid")) {
        expect("open/setgid-dir-create", open_res("sgid_dir/f", O_WRONLY | O_CREAT, 0644), 0);
        expect_gid("open/setgid-dir-gid", "sgid_dir/f", OTHER_GID);
        expect_mode("open/setgid-dir-file-mode", "sgid_dir/f", 0644);
        /* a set-group-ID file created in a group the caller is not in loses the bit */
        expect("open/setgid-create-nonmember", open_res("sgid_dir/g", O_WRONLY | O_CREAT, 02755),
               0);
        expect_mode("open/setgid-create-nonmember-mode", "sgid_dir/g", priv ? 02755 : 0755);
    }
}

/* ---- rename --------------------------------------------------------------------------------- */

static void t_rename(void)
{
    struct snap s1, s2;
    ino_t ino;

    mkf("ren.a", 0644, "a");
    ino = ino_of("ren.a");
    expect("rename/file", R(rename("ren.a", "ren.b")), 0);
    expect_absent("rename/file-source-gone", "ren.a");
    expect_content("rename/file-content", "ren.b", "a");
    expect_true("rename/file-same-inode", ino && ino_of("ren.b") == ino, "another inode");

    mkf("ren.c", 0644, "c");
    mkf("ren.t", 0644, "t");
    link("ren.t", "ren.t2");
    expect("rename/replace", R(rename("ren.c", "ren.t")), 0);
    expect_content("rename/replace-content", "ren.t", "c");
    expect_nlink("rename/replace-old-target-nlink", "ren.t2", 1);

    mkdir("ren.d", 0755);
    expect("rename/dir", R(rename("ren.d", "ren.d2")), 0);
    expect_type("rename/dir-type", "ren.d2", S_IFDIR);
    mkdir("ren.e", 0755);
    expect("rename/dir-over-empty-dir", R(rename("ren.d2", "ren.e")), 0);
    mkdir("ren.f", 0755);
    mkdir("ren.ne", 0755);
    mkf("ren.ne/x", 0644, NULL);
    expect("rename/dir-over-nonempty-dir", R(rename("ren.f", "ren.ne")), ENOTEMPTY);
    mkf("ren.file", 0644, NULL);
    expect("rename/file-over-dir-EISDIR", R(rename("ren.file", "ren.f")), EISDIR);
    expect("rename/dir-over-file-ENOTDIR", R(rename("ren.f", "ren.file")), ENOTDIR);
    expect("rename/ENOENT", R(rename("ren.none", "ren.n2")), ENOENT);
    expect("rename/ENOENT-target-dir", R(rename("ren.file", "ren.nodir/x")), ENOENT);
    expect("rename/ENOTDIR", R(rename("afile/x", "ren.n3")), ENOTDIR);
    expect("rename/ENOTDIR-trailing-slash", R(rename("ren.file", "ren.new/")), ENOTDIR);
    mkdir("ren.p", 0755);
    mkdir("ren.p/sub", 0755);
    expect("rename/into-own-subdir-EINVAL", R(rename("ren.p", "ren.p/sub/p")), EINVAL);
    expect("rename/dot-EBUSY", R(rename("ren.p/.", "ren.q")), EBUSY);
    expect("rename/ENAMETOOLONG", R(rename("ren.file", name256)), ENAMETOOLONG);
    expect("rename/ENAMETOOLONG-source", R(rename(name256, "ren.n4")), ENAMETOOLONG);
    expect("rename/ELOOP", R(rename("loop1/x", "ren.n5")), ELOOP);
    expect_priv("rename/no-search-permission", R(rename("noexec/t", "ren.n6")), EACCES);

    mkf("ren.h1", 0644, "h");
    link("ren.h1", "ren.h2");
    expect("rename/hard-links-same-file", R(rename("ren.h1", "ren.h2")), 0);
    expect_nlink("rename/hard-links-same-file-both-stay", "ren.h1", 2);

    mkf("ren.tgt", 0644, NULL);
    symlink("ren.tgt", "ren.sl");
    expect("rename/symlink", R(rename("ren.sl", "ren.sl2")), 0);
    expect_type("rename/symlink-type", "ren.sl2", S_IFLNK);
    expect_type("rename/symlink-target-stays", "ren.tgt", S_IFREG);

    mkdir("ren.s", 0755);
    mkdir("ren.dd", 0755);
    mkf("ren.s/f", 0644, NULL);
    s1 = snap("ren.s");
    s2 = snap("ren.dd");
    tick();
    rename("ren.s/f", "ren.dd/f");
    expect_mtime_changed("rename/source-dir-mtime", "ren.s", s1);
    expect_ctime_changed("rename/source-dir-ctime", "ren.s", s1);
    expect_mtime_changed("rename/target-dir-mtime", "ren.dd", s2);
    expect_ctime_changed("rename/target-dir-ctime", "ren.dd", s2);
    mkf("ren.cf", 0644, NULL);
    s1 = snap("ren.cf");
    tick();
    rename("ren.cf", "ren.cf2");
    expect_ctime_changed("rename/file-ctime", "ren.cf2", s1);

    mkdir("ren.m1", 0755);
    mkdir("ren.m2", 0755);
    mkdir("ren.m1/sub", 0755);
    expect("rename/dir-to-other-parent", R(rename("ren.m1/sub", "ren.m2/sub")), 0);
    expect_true("rename/dir-dotdot", ino_of("ren.m2/sub/..") == ino_of("ren.m2"),
                "'..' is not the new parent");
    expect_nlink("rename/dir-old-parent-nlink", "ren.m1", 2);
    expect_nlink("rename/dir-new-parent-nlink", "ren.m2", 3);

    mkf("ren.n1", 0644, "1");
    mkf("ren.n2", 0644, "2");
    expect("rename/RENAME_NOREPLACE-EEXIST", R(xrenameat2("ren.n1", "ren.n2", RENAME_NOREPLACE)),
           EEXIST);
    expect("rename/RENAME_NOREPLACE", R(xrenameat2("ren.n1", "ren.n3", RENAME_NOREPLACE)), 0);
    expect("rename/RENAME_EXCHANGE", R(xrenameat2("ren.n2", "ren.n3", RENAME_EXCHANGE)), 0);
    expect_content("rename/RENAME_EXCHANGE-content", "ren.n2", "1");
    expect("rename/RENAME_EXCHANGE-ENOENT", R(xrenameat2("ren.n2", "ren.n9", RENAME_EXCHANGE)),
           ENOENT);

    if (fx("rename/EACCES-source-dir")) {
        mkf("ren.own", 0644, NULL);
        expect_priv("rename/EACCES-source-dir", R(rename("o_dir/f2", "ren.x")), EACCES);
        expect_priv("rename/EACCES-target-dir", R(rename("ren.own", "o_dir/r")), EACCES);
        /* moving a directory to another parent rewrites its "..": needs write permission
         * on the directory itself */
        expect_priv("rename/dir-of-other-to-other-parent", R(rename("o_dir_w/sub", "ren.osub")),
                    EACCES);
        expect("rename/other-file-writable-dir", R(rename("o_dir_w/f2", "o_dir_w/f3")), 0);
    }
    if (other[0]) {
        mkf("ren.x1", 0644, NULL);
        expect("rename/EXDEV", R(rename(other_path("f"), "ren.x2")), EXDEV);
        expect("rename/EXDEV-to-other", R(rename("ren.x1", other_path("r"))), EXDEV);
    } else {
        skip("rename/EXDEV", "no --other file system");
    }
}

/* ---- rmdir ---------------------------------------------------------------------------------- */

static void t_rmdir(void)
{
    struct snap s;

    mkdir("rmd.p", 0755);
    mkdir("rmd.p/a", 0755);
    s = snap("rmd.p");
    tick();
    expect("rmdir/basic", R(rmdir("rmd.p/a")), 0);
    expect_absent("rmdir/basic-gone", "rmd.p/a");
    expect_nlink("rmdir/parent-nlink", "rmd.p", 2);
    expect_mtime_changed("rmdir/parent-mtime", "rmd.p", s);
    expect_ctime_changed("rmdir/parent-ctime", "rmd.p", s);

    mkdir("rmd.ne", 0755);
    mkf("rmd.ne/x", 0644, NULL);
    expect("rmdir/ENOTEMPTY", R(rmdir("rmd.ne")), ENOTEMPTY);
    expect("rmdir/ENOTDIR", R(rmdir("afile")), ENOTDIR);
    mkdir("rmd.t", 0755);
    symlink("rmd.t", "rmd.sl");
    expect("rmdir/symlink-to-dir-ENOTDIR", R(rmdir("rmd.sl")), ENOTDIR);
    expect("rmdir/ENOENT", R(rmdir("rmd.none")), ENOENT);
    expect("rmdir/ENOTDIR-component", R(rmdir("afile/x")), ENOTDIR);
    expect("rmdir/dot-EINVAL", R(rmdir("rmd.t/.")), EINVAL);
    expect("rmdir/dotdot-ENOTEMPTY", R(rmdir("rmd.t/..")), ENOTEMPTY);
    expect("rmdir/ENAMETOOLONG", R(rmdir(name256)), ENAMETOOLONG);
    expect("rmdir/ELOOP", R(rmdir("loop1/x")), ELOOP);
    expect_priv("rmdir/no-search-permission", R(rmdir("noexec/d")), EACCES);
    if (fx("rmdir/EACCES"))
        expect_priv("rmdir/EACCES", R(rmdir("o_dir/sub")), EACCES);
}

/* ---- symlink -------------------------------------------------------------------------------- */

static void t_symlink(void)
{
    char target[4097], buf[4200], name[32];
    struct snap s;
    struct stat st;
    ssize_t n;

    mkf("sym.t", 0644, NULL);
    expect("symlink/basic", R(symlink("sym.t", "sym.a")), 0);
    expect_type("symlink/basic-type", "sym.a", S_IFLNK);
    expect_size("symlink/basic-size", "sym.a", 5);
    expect_owner("symlink/basic-owner", "sym.a", me_uid, me_gid);
    n = readlink("sym.a", buf, sizeof(buf));
    expect_true("symlink/readlink", n == 5 && memcmp(buf, "sym.t", 5) == 0, "another target");
    expect_true("symlink/follow", ino_of("sym.a") == ino_of("sym.t"), "another inode");
    expect("symlink/dangling", R(symlink("sym.nowhere", "sym.d")), 0);
    expect("symlink/readlink-EINVAL", R(readlink("sym.t", buf, sizeof(buf))), EINVAL);

    mkdir("sym.p", 0755);
    s = snap("sym.p");
    tick();
    symlink("x", "sym.p/l");
    expect_mtime_changed("symlink/parent-mtime", "sym.p", s);
    expect_ctime_changed("symlink/parent-ctime", "sym.p", s);

    expect("symlink/EEXIST", R(symlink("x", "afile")), EEXIST);
    expect("symlink/EEXIST-symlink", R(symlink("x", "dangling")), EEXIST);
    expect("symlink/ENOENT", R(symlink("x", "sym.none/l")), ENOENT);
    expect("symlink/ENOENT-empty-target", R(symlink("", "sym.e")), ENOENT);
    expect("symlink/ENOTDIR", R(symlink("x", "afile/l")), ENOTDIR);
    expect("symlink/ELOOP", R(symlink("x", "loop1/l")), ELOOP);
    expect("symlink/ENAMETOOLONG", R(symlink("x", name256)), ENAMETOOLONG);
    expect_priv("symlink/no-search-permission", R(symlink("x", "noexec/s")), EACCES);
    if (fx("symlink/EACCES"))
        expect_priv("symlink/EACCES", R(symlink("x", "o_dir/s")), EACCES);

    memset(target, 'a', sizeof(target));
    target[4095] = 0;
    expect("symlink/target-4095", R(symlink(target, "sym.long")), 0);
    n = readlink("sym.long", buf, sizeof(buf));
    expect_num("symlink/target-4095-readlink", n, 4095);
    target[4095] = 'a';
    target[4096] = 0;
    expect("symlink/target-4096-ENAMETOOLONG", R(symlink(target, "sym.long2")), ENAMETOOLONG);

    /* Linux follows at most 40 symlinks in one lookup */
    for (int i = 1; i <= 41; i++) {
        char to[32];
        snprintf(name, sizeof(name), "sym.c%d", i);
        snprintf(to, sizeof(to), "sym.c%d", i + 1);
        symlink(to, name);
    }
    mkf("sym.c42", 0644, NULL);
    expect("symlink/chain-40", R(stat("sym.c2", &st)), 0);
    expect("symlink/chain-41-ELOOP", R(stat("sym.c1", &st)), ELOOP);
    expect("symlink/loop-ELOOP", R(stat("loop1", &st)), ELOOP);
    expect("symlink/loop-lstat", R(lstat("loop1", &st)), 0);
}

/* ---- truncate and ftruncate ----------------------------------------------------------------- */

static void expect_zeros(const char *name, const char *path, off_t from, off_t to)
{
    char buf[4096];
    int fd = open(path, O_RDONLY), bad = 0;
    off_t off = from;

    if (fd < 0) {
        fail(name, "got open: %s", ename(errno));
        return;
    }
    while (off < to) {
        size_t want = (size_t)(to - off) < sizeof(buf) ? (size_t)(to - off) : sizeof(buf);
        ssize_t n = pread(fd, buf, want, off);
        if (n <= 0) {
            bad = 1;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            bad |= buf[i] != 0;
        off += n;
    }
    close(fd);
    expect_true(name, !bad, "non-zero bytes or a short read");
}

static void t_truncate(void)
{
    struct snap s;

    mkf("tr.a", 0644, "hello");
    expect("truncate/grow", R(truncate("tr.a", 10000)), 0);
    expect_size("truncate/grow-size", "tr.a", 10000);
    expect_zeros("truncate/grow-zeros", "tr.a", 5, 10000);
    expect("truncate/shrink", R(truncate("tr.a", 2)), 0);
    expect_size("truncate/shrink-size", "tr.a", 2);
    expect_content("truncate/shrink-content", "tr.a", "he");
    s = snap("tr.a");
    tick();
    truncate("tr.a", 100);
    expect_mtime_changed("truncate/mtime", "tr.a", s);
    expect_ctime_changed("truncate/ctime", "tr.a", s);

    mkf("tr.t", 0644, "target");
    symlink("tr.t", "tr.l");
    expect("truncate/follows-symlink", R(truncate("tr.l", 3)), 0);
    expect_size("truncate/follows-symlink-size", "tr.t", 3);

    mkdir("tr.d", 0755);
    expect("truncate/ENOENT", R(truncate("tr.none", 0)), ENOENT);
    expect("truncate/ENOTDIR", R(truncate("afile/x", 0)), ENOTDIR);
    expect("truncate/EISDIR", R(truncate("tr.d", 0)), EISDIR);
    expect("truncate/EINVAL-negative", R(truncate("tr.a", -1)), EINVAL);
    expect("truncate/ENAMETOOLONG", R(truncate(name256, 0)), ENAMETOOLONG);
    expect("truncate/ELOOP", R(truncate("loop1", 0)), ELOOP);
    expect("truncate/EFBIG", R(truncate("tr.a", (off_t)1 << 50)), EFBIG);
    mkf("tr.ro", 0444, "ro");
    expect_priv("truncate/EACCES", R(truncate("tr.ro", 0)), EACCES);
    expect_priv("truncate/no-search-permission", R(truncate("noexec/x", 0)), EACCES);
    if (fx("truncate/other-writable-file")) {
        expect("truncate/other-writable-file", R(truncate("o_trunc_rw", 1)), 0);
        expect_size("truncate/other-writable-file-size", "o_trunc_rw", 1);
    }
}

static int ftrunc_res(const char *path, int flags, off_t len)
{
    int fd = open(path, flags), e;

    if (fd < 0)
        return errno;
    e = R(ftruncate(fd, len));
    close(fd);
    return e;
}

static void t_ftruncate(void)
{
    struct snap s;
    int fd;

    mkf("ftr.a", 0644, "hello");
    expect("ftruncate/grow", ftrunc_res("ftr.a", O_WRONLY, 5000), 0);
    expect_size("ftruncate/grow-size", "ftr.a", 5000);
    expect_zeros("ftruncate/grow-zeros", "ftr.a", 5, 5000);
    expect("ftruncate/shrink", ftrunc_res("ftr.a", O_RDWR, 3), 0);
    expect_content("ftruncate/shrink-content", "ftr.a", "hel");
    s = snap("ftr.a");
    tick();
    ftrunc_res("ftr.a", O_WRONLY, 1);
    expect_mtime_changed("ftruncate/mtime", "ftr.a", s);
    expect_ctime_changed("ftruncate/ctime", "ftr.a", s);

    expect("ftruncate/read-only-fd-EINVAL", ftrunc_res("ftr.a", O_RDONLY, 0), EINVAL);
    expect("ftruncate/EINVAL-negative", ftrunc_res("ftr.a", O_WRONLY, -1), EINVAL);
    expect("ftruncate/EFBIG", ftrunc_res("ftr.a", O_WRONLY, (off_t)1 << 50), EFBIG);
    mkdir("ftr.d", 0755);
    expect("ftruncate/dir-EINVAL", ftrunc_res("ftr.d", O_RDONLY | O_DIRECTORY, 0), EINVAL);
    fd = open("ftr.a", O_RDONLY);
    close(fd);
    expect("ftruncate/EBADF", R(ftruncate(fd, 0)), EBADF);

    /* permission is checked at open: a fd open for writing stays usable after chmod 0444 */
    mkf("ftr.c", 0644, "data");
    fd = open("ftr.c", O_RDWR);
    fchmod(fd, 0444);
    expect("ftruncate/after-chmod-0444", R(ftruncate(fd, 7)), 0);
    close(fd);
    expect_size("ftruncate/after-chmod-0444-size", "ftr.c", 7);
}

/* ---- set-user-ID and set-group-ID clearing on write and truncate -------------------------------
 */

static int write_at(const char *path, int flags, off_t off, const char *str)
{
    int fd = open(path, flags), e = 0;

    if (fd < 0)
        return errno;
    if (pwrite(fd, str, strlen(str), off) != (ssize_t)strlen(str))
        e = errno ? errno : EIO;
    close(fd);
    return e;
}

static void t_setid(void)
{
    struct snap s;

    /* Unprivileged writes and truncations clear set-user-ID, and set-group-ID when the
     * group may execute; root's (CAP_FSETID) do not.
     *
     * Over FUSE who clears them depends on the path, hence on the cache mode: without
     * FUSE_HANDLE_KILLPRIV(_V2) the guest kernel sends a SETATTR of the mode without the
     * bits, as the writer, before a page-cache write (--cache=always) and together with the
     * size of a truncate; a direct write (--cache=never) and an O_TRUNC open leave it to the
     * server's own write/open on the host.  The expected outcome is the same either way. */
    mkf("sid.w", 04755, "data");
    expect("setid/write-own-setuid", write_at("sid.w", O_WRONLY, 0, "x"), 0);
    expect_mode("setid/write-own-setuid-mode", "sid.w", priv ? 04755 : 0755);
    mkf("sid.g", 02755, "data");
    expect("setid/write-own-setgid-gx", write_at("sid.g", O_WRONLY, 0, "x"), 0);
    expect_mode("setid/write-own-setgid-gx-mode", "sid.g", priv ? 02755 : 0755);
    mkf("sid.t", 06755, "data");
    expect("setid/truncate-own", R(truncate("sid.t", 1)), 0);
    expect_mode("setid/truncate-own-mode", "sid.t", priv ? 06755 : 0755);
    mkf("sid.ft", 06755, "data");
    expect("setid/ftruncate-own", ftrunc_res("sid.ft", O_WRONLY, 1), 0);
    expect_mode("setid/ftruncate-own-mode", "sid.ft", priv ? 06755 : 0755);
    mkf("sid.ot", 06755, "data");
    expect("setid/O_TRUNC-own", open_res("sid.ot", O_WRONLY | O_TRUNC, 0), 0);
    expect_mode("setid/O_TRUNC-own-mode", "sid.ot", priv ? 06755 : 0755);

    if (fx("setid/write-other")) {
        expect("setid/write-other", write_at("o_suid_w", O_WRONLY, 0, "x"), 0);
        expect_mode("setid/write-other-mode", "o_suid_w", priv ? 06777 : 0777);
        expect("setid/truncate-other", R(truncate("o_suid_t", 1)), 0);
        expect_mode("setid/truncate-other-mode", "o_suid_t", priv ? 06777 : 0777);
        expect("setid/O_TRUNC-other", open_res("o_suid_ot", O_WRONLY | O_TRUNC, 0), 0);
        expect_mode("setid/O_TRUNC-other-mode", "o_suid_ot", priv ? 06777 : 0777);
        expect("setid/ftruncate-other", ftrunc_res("o_suid_ft", O_WRONLY, 1), 0);
        expect_mode("setid/ftruncate-other-mode", "o_suid_ft", priv ? 06777 : 0777);
        /* set-group-ID without group execute: cleared for a writer outside the group */
        expect("setid/write-other-setgid-no-gx", write_at("o_sgid_nox", O_WRONLY, 0, "x"), 0);
        expect_mode("setid/write-other-setgid-no-gx-mode", "o_sgid_nox", priv ? 02666 : 0666);
    }

    /* write: size and times */
    mkf("wr.a", 0644, "hello");
    expect("write/pwrite-past-end", write_at("wr.a", O_WRONLY, 10, "world"), 0);
    expect_size("write/pwrite-past-end-size", "wr.a", 15);
    expect_zeros("write/pwrite-past-end-hole", "wr.a", 5, 10);
    s = snap("wr.a");
    tick();
    write_str("wr.a", "more");
    expect_mtime_changed("write/mtime", "wr.a", s);
    expect_ctime_changed("write/ctime", "wr.a", s);
    expect("write/EBADF-read-only-fd", write_at("wr.a", O_RDONLY, 0, "x"), EBADF);
}

/* ---- unlink --------------------------------------------------------------------------------- */

static void t_unlink(void)
{
    struct snap s, sd;
    char buf[16];
    struct stat st;
    int fd;

    mkf("unl.a", 0644, NULL);
    link("unl.a", "unl.b");
    expect("unlink/basic", R(unlink("unl.a")), 0);
    expect_absent("unlink/basic-gone", "unl.a");
    expect_nlink("unlink/other-link-nlink", "unl.b", 1);

    mkf("unl.c", 0644, NULL);
    link("unl.c", "unl.c2");
    mkdir("unl.p", 0755);
    mkf("unl.p/x", 0644, NULL);
    s = snap("unl.c");
    sd = snap("unl.p");
    tick();
    unlink("unl.c2");
    unlink("unl.p/x");
    expect_ctime_changed("unlink/other-link-ctime", "unl.c", s);
    expect_mtime_changed("unlink/parent-mtime", "unl.p", sd);
    expect_ctime_changed("unlink/parent-ctime", "unl.p", sd);

    mkdir("unl.d", 0755);
    expect("unlink/ENOENT", R(unlink("unl.none")), ENOENT);
    expect("unlink/ENOTDIR", R(unlink("afile/x")), ENOTDIR);
    expect("unlink/ENOTDIR-trailing-slash", R(unlink("afile/")), ENOTDIR);
    expect("unlink/EISDIR", R(unlink("unl.d")), EISDIR);
    expect("unlink/ENAMETOOLONG", R(unlink(name256)), ENAMETOOLONG);
    expect("unlink/ELOOP", R(unlink("loop1/x")), ELOOP);
    expect_priv("unlink/no-search-permission", R(unlink("noexec/u")), EACCES);

    mkf("unl.t", 0644, NULL);
    symlink("unl.t", "unl.sl");
    expect("unlink/symlink", R(unlink("unl.sl")), 0);
    expect_absent("unlink/symlink-gone", "unl.sl");
    expect_type("unlink/symlink-target-stays", "unl.t", S_IFREG);

    mkf("unl.o", 0644, "data");
    fd = open("unl.o", O_RDONLY);
    expect("unlink/open-file", R(unlink("unl.o")), 0);
    if (fd >= 0 && fstat(fd, &st) == 0)
        expect_num("unlink/open-file-nlink", (long long)st.st_nlink, 0);
    else
        fail("unlink/open-file-nlink", "got fstat: %s", ename(errno));
    expect_true("unlink/open-file-readable",
                fd >= 0 && pread(fd, buf, 4, 0) == 4 && memcmp(buf, "data", 4) == 0,
                "cannot read it");
    if (fd >= 0)
        close(fd);

    if (fx("unlink/EACCES")) {
        expect_priv("unlink/EACCES", R(unlink("o_dir/f")), EACCES);
        expect("unlink/other-in-writable-dir", R(unlink("o_dir_w/f")), 0);
    }
}

/* ---- sticky directories --------------------------------------------------------------------- */

static void t_sticky(void)
{
    if (!fx("sticky/unlink-other"))
        return;
    expect_mode("sticky/mode", "sticky", 01777);
    expect("sticky/create-own", mkf("sticky/mine", 0644, NULL), 0);
    expect("sticky/rename-own", R(rename("sticky/mine", "sticky/mine2")), 0);
    expect("sticky/unlink-own", R(unlink("sticky/mine2")), 0);
    /* Linux: EPERM (POSIX allows EPERM or EACCES) */
    expect_priv("sticky/unlink-other", R(unlink("sticky/of")), EPERM);
    expect_priv("sticky/rename-other", R(rename("sticky/of2", "sticky/moved")), EPERM);
    mkf("sticky/mine3", 0644, NULL);
    expect_priv("sticky/rename-over-other", R(rename("sticky/mine3", "sticky/of3")), EPERM);
    expect_priv("sticky/rename-other-out", R(rename("sticky/of4", "sticky.out")), EPERM);
    expect_priv("sticky/rmdir-other", R(rmdir("sticky/od")), EPERM);
    expect("sticky/dir-owner-unlinks-other", R(unlink("usticky/of")), 0);
    expect("sticky/chmod-dir-own", R(chmod("usticky", 01755)), 0);
    expect_mode("sticky/chmod-dir-own-mode", "usticky", 01755);
}

/* ---- supplementary groups ------------------------------------------------------------------- */

static void t_supp(void)
{
    if (!fx("groups/read-via-supplementary"))
        return;
    if (!priv && !dropped) {
        skip("groups/read-via-supplementary", "not started as root with --uid/--gid");
        return;
    }
    expect("groups/read-via-supplementary", open_res("supp_file", O_RDONLY, 0), 0);
    expect("groups/create-via-supplementary", R(mkdir("supp_dir/d", 0755)), 0);
    mkf("grp.f", 0644, NULL);
    expect("groups/chgrp-to-supplementary", R(chown("grp.f", (uid_t)-1, SUPP_GID)), 0);
    expect_gid("groups/chgrp-to-supplementary-gid", "grp.f", SUPP_GID);
}

/* ---- utimensat ------------------------------------------------------------------------------ */

static int utimens(const char *path, long asec, long ansec, long msec, long mnsec, int flags)
{
    struct timespec ts[2] = {{.tv_sec = asec, .tv_nsec = ansec},
                             {.tv_sec = msec, .tv_nsec = mnsec}};

    return R(utimensat(AT_FDCWD, path, ts, flags));
}

static void expect_times(const char *name, const char *path, long as, long an, long ms, long mn)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    if (st.st_atim.tv_sec == as && st.st_atim.tv_nsec == an && st.st_mtim.tv_sec == ms &&
        st.st_mtim.tv_nsec == mn)
        pass(name);
    else
        fail(name, "got atime %lld.%09ld mtime %lld.%09ld want %ld.%09ld %ld.%09ld",
             (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, as, an, ms, mn);
}

static void expect_not_old(const char *name, const char *path)
{
    struct stat st;

    if (lst(name, path, &st) < 0)
        return;
    if (st.st_atim.tv_sec != OLD_SEC && st.st_mtim.tv_sec != OLD_SEC)
        pass(name);
    else
        fail(name, "got atime %lld mtime %lld want both now", (long long)st.st_atim.tv_sec,
             (long long)st.st_mtim.tv_sec);
}

static void t_utimensat(void)
{
    struct snap s;
    int fd, dfd;

    mkf("ut.a", 0644, NULL);
    expect("utimensat/explicit", utimens("ut.a", 1234567890, 123456789, 987654321, 500000000, 0),
           0);
    expect_times("utimensat/explicit-times", "ut.a", 1234567890, 123456789, 987654321, 500000000);
    s = snap("ut.a");
    tick();
    utimens("ut.a", 1111111111, 0, 1111111111, 0, 0);
    expect_ctime_changed("utimensat/ctime", "ut.a", s);

    set_times("ut.a", OLD_SEC, 0, OLD_SEC, 0);
    expect("utimensat/UTIME_NOW", utimens("ut.a", 0, UTIME_NOW, 0, UTIME_NOW, 0), 0);
    expect_not_old("utimensat/UTIME_NOW-times", "ut.a");
    set_times("ut.a", OLD_SEC, 0, OLD_SEC, 0);
    expect("utimensat/NULL", R(utimensat(AT_FDCWD, "ut.a", NULL, 0)), 0);
    expect_not_old("utimensat/NULL-times", "ut.a");
    set_times("ut.a", 1000, 1, 2000, 2);
    expect("utimensat/UTIME_OMIT-atime", utimens("ut.a", 0, UTIME_OMIT, 3000, 3, 0), 0);
    expect_times("utimensat/UTIME_OMIT-atime-times", "ut.a", 1000, 1, 3000, 3);
    expect("utimensat/UTIME_OMIT-mtime", utimens("ut.a", 4000, 4, 0, UTIME_OMIT, 0), 0);
    expect_times("utimensat/UTIME_OMIT-mtime-times", "ut.a", 4000, 4, 3000, 3);
    s = snap("ut.a");
    tick();
    expect("utimensat/UTIME_OMIT-both", utimens("ut.a", 0, UTIME_OMIT, 0, UTIME_OMIT, 0), 0);
    expect_ctime_same("utimensat/UTIME_OMIT-both-ctime", "ut.a", s);
    expect_times("utimensat/UTIME_OMIT-both-times", "ut.a", OLD_SEC, 0, OLD_SEC, 0);

    mkf("ut.t", 0644, NULL);
    symlink("ut.t", "ut.l");
    set_times("ut.t", OLD_SEC, 0, OLD_SEC, 0);
    expect("utimensat/AT_SYMLINK_NOFOLLOW", utimens("ut.l", 5000, 5, 5000, 5, AT_SYMLINK_NOFOLLOW),
           0);
    expect_times("utimensat/AT_SYMLINK_NOFOLLOW-link-times", "ut.l", 5000, 5, 5000, 5);
    expect_times("utimensat/AT_SYMLINK_NOFOLLOW-target-times", "ut.t", OLD_SEC, 0, OLD_SEC, 0);
    expect("utimensat/follows-symlink", utimens("ut.l", 6000, 6, 6000, 6, 0), 0);
    expect_times("utimensat/follows-symlink-target-times", "ut.t", 6000, 6, 6000, 6);

    fd = open("ut.a", O_RDONLY);
    {
        struct timespec ts[2] = {{7000, 7}, {7000, 7}};
        expect("utimensat/futimens", R(futimens(fd, ts)), 0);
    }
    close(fd);
    expect_times("utimensat/futimens-times", "ut.a", 7000, 7, 7000, 7);
    mkdir("ut.d", 0755);
    mkf("ut.d/f", 0644, NULL);
    dfd = open("ut.d", O_RDONLY | O_DIRECTORY);
    {
        struct timespec ts[2] = {{8000, 8}, {8000, 8}};
        expect("utimensat/dirfd-relative", R(utimensat(dfd, "f", ts, 0)), 0);
    }
    close(dfd);
    expect_times("utimensat/dirfd-relative-times", "ut.d/f", 8000, 8, 8000, 8);
    expect("utimensat/dir", utimens("ut.d", 9000, 9, 9000, 9, 0), 0);
    expect_times("utimensat/dir-times", "ut.d", 9000, 9, 9000, 9);

    expect("utimensat/EINVAL-nsec", utimens("ut.a", 0, 1000000000, 0, 0, 0), EINVAL);
    expect("utimensat/EINVAL-flags", utimens("ut.a", 0, 0, 0, 0, 0x4000000), EINVAL);
    expect("utimensat/ENOENT", utimens("ut.none", 1, 0, 1, 0, 0), ENOENT);
    expect("utimensat/ENOTDIR", utimens("afile/x", 1, 0, 1, 0, 0), ENOTDIR);
    expect("utimensat/ENAMETOOLONG", utimens(name256, 1, 0, 1, 0, 0), ENAMETOOLONG);
    expect("utimensat/ELOOP", utimens("loop1", 1, 0, 1, 0, 0), ELOOP);
    expect_priv("utimensat/no-search-permission", utimens("noexec/x", 1, 0, 1, 0, 0), EACCES);

    /* only the owner (or CAP_FOWNER) sets explicit times; "now" needs write permission */
    mkf("ut.ro", 0444, NULL);
    expect("utimensat/own-read-only-explicit", utimens("ut.ro", 10, 0, 10, 0, 0), 0);
    expect("utimensat/own-read-only-now", utimens("ut.ro", 0, UTIME_NOW, 0, UTIME_NOW, 0), 0);
    if (fx("utimensat/other-explicit")) {
        expect_priv("utimensat/other-explicit", utimens("o_utime", 10, 0, 10, 0, 0), EPERM);
        expect_priv("utimensat/other-explicit-and-omit",
                    utimens("o_utime", 10, 0, 0, UTIME_OMIT, 0), EPERM);
        expect("utimensat/other-writable-now", utimens("o_utime", 0, UTIME_NOW, 0, UTIME_NOW, 0),
               0);
        expect("utimensat/other-writable-NULL", R(utimensat(AT_FDCWD, "o_utime", NULL, 0)), 0);
        /* Linux treats only {UTIME_NOW, UTIME_NOW} like NULL; one omitted time makes it
         * an owner-only change */
        expect_priv("utimensat/other-writable-omit-and-now",
                    utimens("o_utime", 0, UTIME_OMIT, 0, UTIME_NOW, 0), EPERM);
        expect_priv("utimensat/other-read-only-now",
                    utimens("o_utime2", 0, UTIME_NOW, 0, UTIME_NOW, 0), EACCES);
        expect_priv("utimensat/other-read-only-NULL", R(utimensat(AT_FDCWD, "o_utime2", NULL, 0)),
                    EACCES);
    }
}

/* ---- posix_fallocate ------------------------------------------------------------------------ */

static int falloc_res(const char *path, int flags, off_t off, off_t len)
{
    int fd = open(path, flags), e;

    if (fd < 0)
        return errno;
    e = posix_fallocate(fd, off, len); /* returns the error, errno untouched */
    close(fd);
    return e;
}

static void t_fallocate(void)
{
    struct snap s;
    struct stat st;
    int fd;

    mkf("fa.a", 0644, NULL);
    expect("posix_fallocate/grow", falloc_res("fa.a", O_WRONLY, 0, 65536), 0);
    expect_size("posix_fallocate/grow-size", "fa.a", 65536);
    if (lst("posix_fallocate/grow-blocks", "fa.a", &st) == 0)
        expect_true("posix_fallocate/grow-blocks", st.st_blocks * 512 >= 65536,
                    "fewer blocks than allocated");
    expect_zeros("posix_fallocate/grow-zeros", "fa.a", 0, 65536);
    expect("posix_fallocate/within", falloc_res("fa.a", O_WRONLY, 0, 4096), 0);
    expect_size("posix_fallocate/within-keeps-size", "fa.a", 65536);
    expect("posix_fallocate/offset", falloc_res("fa.a", O_RDWR, 100000, 10), 0);
    expect_size("posix_fallocate/offset-size", "fa.a", 100010);

    mkf("fa.t", 0644, NULL);
    s = snap("fa.t");
    tick();
    falloc_res("fa.t", O_WRONLY, 0, 8192);
    expect_ctime_changed("posix_fallocate/ctime", "fa.t", s);
    expect_mtime_changed("posix_fallocate/mtime", "fa.t", s);

    expect("posix_fallocate/EBADF-read-only", falloc_res("fa.a", O_RDONLY, 0, 4096), EBADF);
    fd = open("fa.a", O_RDONLY);
    close(fd);
    expect("posix_fallocate/EBADF-closed", posix_fallocate(fd, 0, 4096), EBADF);
    expect("posix_fallocate/EINVAL-len-0", falloc_res("fa.a", O_WRONLY, 0, 0), EINVAL);
    expect("posix_fallocate/EINVAL-negative", falloc_res("fa.a", O_WRONLY, -1, 10), EINVAL);
    expect("posix_fallocate/EFBIG", falloc_res("fa.a", O_WRONLY, (off_t)1 << 50, 4096), EFBIG);
    mkfifo("fa.fifo", 0644);
    expect("posix_fallocate/ESPIPE-fifo", falloc_res("fa.fifo", O_RDWR | O_NONBLOCK, 0, 10),
           ESPIPE);

    mkf("fa.c", 0644, NULL);
    fd = open("fa.c", O_WRONLY);
    fchmod(fd, 0444);
    expect("posix_fallocate/after-chmod-0444", posix_fallocate(fd, 0, 4096), 0);
    close(fd);
    expect_size("posix_fallocate/after-chmod-0444-size", "fa.c", 4096);
}

/* ---- path resolution ------------------------------------------------------------------------ */

static void t_paths(void)
{
    struct stat st;

    expect("path/ENOTDIR-dotdot-of-file", R(stat("afile/..", &st)), ENOTDIR);
    expect("path/ENOTDIR-trailing-slash", R(stat("afile/", &st)), ENOTDIR);
    expect("path/ENOENT-dangling", R(stat("dangling", &st)), ENOENT);
    expect("path/lstat-dangling", R(lstat("dangling", &st)), 0);
    expect("path/ENAMETOOLONG-stat", R(stat(name256, &st)), ENAMETOOLONG);
    expect("path/ELOOP-component", R(stat("loop1/x", &st)), ELOOP);
    expect("path/name-255-bytes", R(stat(name255('o'), &st)), 0);
    expect("path/dotdot", R(stat("noexec/..", &st)), priv ? 0 : EACCES);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: posix-conform DIR [--uid U --gid G] [--other DIR2]\n");
    exit(2);
}

static int read_sysctl(const char *path)
{
    FILE *f = fopen(path, "r");
    int v = 0;

    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *base = NULL, *other_base = NULL;
    long uid = -1, gid = -1;
    char dir[PATH_MAX];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--uid") == 0 && i + 1 < argc)
            uid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--gid") == 0 && i + 1 < argc)
            gid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--other") == 0 && i + 1 < argc)
            other_base = argv[++i];
        else if (argv[i][0] == '-' || base)
            usage();
        else
            base = argv[i];
    }
    if (!base || (uid < 0) != (gid < 0))
        usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(022);

    snprintf(dir, sizeof(dir), "%s/posix-conform.%s.XXXXXX", base,
             uid >= 0         ? "user"
             : geteuid() == 0 ? "root"
                              : "self");
    if (!mkdtemp(dir) || chmod(dir, 0755) < 0) {
        fprintf(stderr, "posix-conform: cannot make a directory in %s: %s\n", base,
                strerror(errno));
        return 2;
    }
    if (other_base) {
        snprintf(other, sizeof(other), "%s/posix-conform.XXXXXX", other_base);
        if (!mkdtemp(other) || chmod(other, 0755) < 0 || mkf(other_path("f"), 0644, "f")) {
            fprintf(stderr, "posix-conform: cannot use %s: %s\n", other_base, strerror(errno));
            return 2;
        }
    }
    if (chdir(dir) < 0) {
        fprintf(stderr, "posix-conform: chdir %s: %s\n", dir, strerror(errno));
        return 2;
    }
    protected_hardlinks = read_sysctl("/proc/sys/fs/protected_hardlinks");

    if (geteuid() == 0)
        make_fixtures(uid >= 0 ? (uid_t)uid : 0, gid >= 0 ? (gid_t)gid : 0);
    if (uid >= 0) {
        gid_t groups[2] = {(gid_t)gid, SUPP_GID};

        if (geteuid() == 0) {
            if (chown(".", (uid_t)uid, (gid_t)gid) < 0 ||
                (other[0] && (chown(other, (uid_t)uid, (gid_t)gid) < 0 ||
                              chown(other_path("f"), (uid_t)uid, (gid_t)gid) < 0))) {
                fprintf(stderr, "posix-conform: chown: %s\n", strerror(errno));
                return 2;
            }
            if (setgroups(2, groups) < 0 || setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0 ||
                setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) {
                fprintf(stderr, "posix-conform: cannot drop to %ld:%ld: %s\n", uid, gid,
                        strerror(errno));
                return 2;
            }
            dropped = 1;
        }
        if (geteuid() != (uid_t)uid || getegid() != (gid_t)gid) {
            fprintf(stderr, "posix-conform: running as %u:%u, not %ld:%ld\n", (unsigned)geteuid(),
                    (unsigned)getegid(), uid, gid);
            return 2;
        }
    }
    priv = geteuid() == 0;
    me_uid = geteuid();
    me_gid = getegid();
    fprintf(stderr, "posix-conform: in %s as %u:%u%s%s%s\n", dir, (unsigned)me_uid,
            (unsigned)me_gid, fixtures ? ", with fixtures" : ", no fixtures",
            other[0] ? ", other fs: " : "", other);

    make_common();
    t_chmod();
    t_chown();
    t_link();
    t_mkdir();
    t_mkfifo();
    t_mknod();
    t_open();
    t_rename();
    t_rmdir();
    t_symlink();
    t_truncate();
    t_ftruncate();
    t_setid();
    t_unlink();
    t_sticky();
    t_supp();
    t_utimensat();
    t_fallocate();
    t_paths();

    printf("posix-conform: %d passed, %d failed, %d skipped\n", npass, nfail, nskip);
    return nfail ? 1 : 0;
}
