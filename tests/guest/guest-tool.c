/*
 * guest-tool: a small static helper for the virtio-fs guest tests.
 *
 * Busybox covers most file operations, but not the syscalls that matter
 * most for a FUSE/virtio-fs daemon: renameat2 flags, copy_file_range,
 * SEEK_DATA/SEEK_HOLE, fallocate modes, xattrs, statfs numbers, fsync,
 * nanosecond utimensat, mmap, concurrent writers, dropping privileges.
 * This tool exposes each of them as a sub-command so shell test scripts
 * can drive them.  It is linked statically so it runs in the busybox
 * initramfs AND on the host (the host-side checks reuse it, e.g. to read
 * xattrs or verify the concurrent-writer pattern without extra packages).
 *
 * Conventions:
 *   guest-tool [-e ERRNO] COMMAND ARGS...
 *   exit 0 on success, 1 on a failed syscall, 2 on bad usage,
 *   3 when -e was given and the outcome differed from the expectation.
 *   -e ERRNO (a name such as EEXIST, or a number) inverts the sense: the
 *   command succeeds only if the first failing syscall fails with exactly
 *   that errno, which lets tests assert on EACCES/EEXIST/ENXIO precisely.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <linux/mount.h> /* after the libc headers: open_tree, mount_setattr, move_mount */
#include <sched.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

static const char *prog = "guest-tool";
static int expect_errno; /* 0: expect success */

struct errname {
    int num;
    const char *name;
};

static const struct errname errnames[] = {
    {EPERM, "EPERM"},     {ENOENT, "ENOENT"},         {EIO, "EIO"},
    {ENXIO, "ENXIO"},     {E2BIG, "E2BIG"},           {EBADF, "EBADF"},
    {EAGAIN, "EAGAIN"},   {ENOMEM, "ENOMEM"},         {EACCES, "EACCES"},
    {EFAULT, "EFAULT"},   {EBUSY, "EBUSY"},           {EEXIST, "EEXIST"},
    {EXDEV, "EXDEV"},     {ENODEV, "ENODEV"},         {ENOTDIR, "ENOTDIR"},
    {EISDIR, "EISDIR"},   {EINVAL, "EINVAL"},         {EFBIG, "EFBIG"},
    {ENOSPC, "ENOSPC"},   {ESPIPE, "ESPIPE"},         {EROFS, "EROFS"},
    {EMLINK, "EMLINK"},   {ERANGE, "ERANGE"},         {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOSYS, "ENOSYS"},   {ENOTEMPTY, "ENOTEMPTY"},   {ELOOP, "ELOOP"},
    {ENODATA, "ENODATA"}, {EOPNOTSUPP, "EOPNOTSUPP"}, {EOPNOTSUPP, "ENOTSUP"},
    {ETXTBSY, "ETXTBSY"}, {EOVERFLOW, "EOVERFLOW"},   {ESTALE, "ESTALE"},
    {EINTR, "EINTR"},
};

static const char *errno_name(int e)
{
    for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
        if (errnames[i].num == e)
            return errnames[i].name;
    return "E?";
}

static int errno_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
        if (strcmp(errnames[i].name, s) == 0)
            return errnames[i].num;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end && v > 0)
        return (int)v;
    fprintf(stderr, "%s: unknown errno '%s'\n", prog, s);
    exit(2);
}

static void usage_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void usage_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: usage: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* A syscall failed: decide between "expected failure" and a real error. */
static void sys_fail(const char *what, const char *arg) __attribute__((noreturn));
static void sys_fail(const char *what, const char *arg)
{
    int e = errno;
    if (expect_errno) {
        if (e == expect_errno)
            exit(0);
        fprintf(stderr, "%s: %s %s: expected %s, got %s (%s)\n", prog, what, arg ? arg : "",
                errno_name(expect_errno), errno_name(e), strerror(e));
        exit(3);
    }
    fprintf(stderr, "%s: %s %s: %s (%s)\n", prog, what, arg ? arg : "", errno_name(e), strerror(e));
    exit(1);
}

/* A non-syscall failure (wrong data etc.): never "expected". */
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(expect_errno ? 3 : 1);
}

static long long parse_ll(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s)
        usage_die("bad number '%s'", s);
    /* size suffixes keep the shell scripts readable (20M, 4K) */
    switch (*end) {
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'G':
        v <<= 30;
        end++;
        break;
    default:
        break;
    }
    if (*end)
        usage_die("bad number '%s'", s);
    return v;
}

static void write_all(int fd, const void *buf, size_t len, const char *what)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            sys_fail("write", what);
        }
        p += n;
        len -= (size_t)n;
    }
}

static void pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *what)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            sys_fail("pwrite", what);
        }
        if (n == 0)
            fail("pwrite %s: wrote 0 bytes", what);
        p += n;
        off += n;
        len -= (size_t)n;
    }
}

/* ---- renameat2 ------------------------------------------------------- */

static int do_rename(char **av, int ac, unsigned flags, const char *name)
{
    if (ac != 2)
        usage_die("%s OLD NEW", name);
    /* use the raw syscall: glibc's wrapper exists in 2.28+, but the raw
     * call documents exactly what is being exercised */
    if (syscall(SYS_renameat2, AT_FDCWD, av[0], AT_FDCWD, av[1], flags) < 0)
        sys_fail("renameat2", av[0]);
    return 0;
}

static int cmd_exchange(char **av, int ac)
{
    return do_rename(av, ac, RENAME_EXCHANGE, "exchange");
}

static int cmd_noreplace(char **av, int ac)
{
    return do_rename(av, ac, RENAME_NOREPLACE, "noreplace");
}

/* ---- O_TMPFILE ------------------------------------------------------- */

/* Writes TEXT to an unnamed file in DIR, then gives it the name NAME with linkat. */
static int cmd_tmpfile(char **av, int ac)
{
    if (ac != 3)
        usage_die("tmpfile DIR NAME TEXT");
    int fd = open(av[0], O_TMPFILE | O_RDWR, 0644);
    if (fd < 0)
        sys_fail("open O_TMPFILE", av[0]);
    size_t len = strlen(av[2]);
    if (write(fd, av[2], len) != (ssize_t)len)
        sys_fail("write", av[0]);
    char proc[64], dst[PATH_MAX];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    snprintf(dst, sizeof(dst), "%s/%s", av[0], av[1]);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) < 0)
        sys_fail("linkat", dst);
    close(fd);
    return 0;
}

/* ---- copy_file_range ------------------------------------------------- */

static int cmd_copy_range(char **av, int ac)
{
    if (ac != 2 && ac != 5)
        usage_die("copy-range SRC DST [OFF_IN OFF_OUT LEN]");
    int in = open(av[0], O_RDONLY);
    if (in < 0)
        sys_fail("open", av[0]);
    int out = open(av[1], O_WRONLY | O_CREAT | (ac == 2 ? O_TRUNC : 0), 0644);
    if (out < 0)
        sys_fail("open", av[1]);
    loff_t oin = 0, oout = 0;
    long long len;
    if (ac == 5) {
        oin = parse_ll(av[2]);
        oout = parse_ll(av[3]);
        len = parse_ll(av[4]);
    } else {
        struct stat st;
        if (fstat(in, &st) < 0)
            sys_fail("fstat", av[0]);
        len = st.st_size;
    }
    long long done = 0;
    while (done < len) {
        ssize_t n = copy_file_range(in, &oin, out, &oout, (size_t)(len - done), 0);
        if (n < 0)
            sys_fail("copy_file_range", av[0]);
        if (n == 0)
            break; /* EOF of the source */
        done += n;
    }
    if (close(out) < 0)
        sys_fail("close", av[1]);
    close(in);
    printf("%lld\n", done);
    return 0;
}

/* ---- lseek SEEK_DATA / SEEK_HOLE -------------------------------------- */

static int cmd_seek(char **av, int ac)
{
    if (ac != 3)
        usage_die("seek FILE data|hole OFFSET");
    int whence;
    if (strcmp(av[1], "data") == 0)
        whence = SEEK_DATA;
    else if (strcmp(av[1], "hole") == 0)
        whence = SEEK_HOLE;
    else
        usage_die("seek FILE data|hole OFFSET");
    int fd = open(av[0], O_RDONLY);
    if (fd < 0)
        sys_fail("open", av[0]);
    off_t r = lseek(fd, (off_t)parse_ll(av[2]), whence);
    if (r < 0)
        sys_fail("lseek", av[0]);
    printf("%lld\n", (long long)r);
    return 0;
}

/* Print the data extents of a file as found by SEEK_DATA/SEEK_HOLE. */
static int cmd_map(char **av, int ac)
{
    if (ac != 1)
        usage_die("map FILE");
    int fd = open(av[0], O_RDONLY);
    if (fd < 0)
        sys_fail("open", av[0]);
    struct stat st;
    if (fstat(fd, &st) < 0)
        sys_fail("fstat", av[0]);
    off_t pos = 0;
    while (pos < st.st_size) {
        off_t d = lseek(fd, pos, SEEK_DATA);
        if (d < 0) {
            if (errno == ENXIO)
                break; /* only a hole remains */
            sys_fail("lseek(SEEK_DATA)", av[0]);
        }
        off_t h = lseek(fd, d, SEEK_HOLE);
        if (h < 0)
            sys_fail("lseek(SEEK_HOLE)", av[0]);
        printf("data %lld %lld\n", (long long)d, (long long)h);
        if (h <= d)
            fail("SEEK_HOLE(%lld) returned %lld", (long long)d, (long long)h);
        pos = h;
    }
    printf("size %lld\n", (long long)st.st_size);
    return 0;
}

/* ---- fallocate ------------------------------------------------------- */

static int cmd_fallocate(char **av, int ac)
{
    if (ac != 4)
        usage_die("fallocate FILE alloc|keep|punch|zero OFFSET LEN");
    int mode;
    if (strcmp(av[1], "alloc") == 0)
        mode = 0;
    else if (strcmp(av[1], "keep") == 0)
        mode = FALLOC_FL_KEEP_SIZE;
    else if (strcmp(av[1], "punch") == 0)
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    else if (strcmp(av[1], "zero") == 0)
        mode = FALLOC_FL_ZERO_RANGE;
    else
        usage_die("fallocate FILE alloc|keep|punch|zero OFFSET LEN");
    int fd = open(av[0], O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        sys_fail("open", av[0]);
    if (fallocate(fd, mode, (off_t)parse_ll(av[2]), (off_t)parse_ll(av[3])) < 0)
        sys_fail("fallocate", av[0]);
    if (close(fd) < 0)
        sys_fail("close", av[0]);
    return 0;
}

/* ---- mmap ------------------------------------------------------------ */

/* Read a file through a private mapping and copy it to stdout, so the
 * caller can checksum it (`guest-tool mmap-cat F | sha256sum`).
 * MAP_PRIVATE on purpose: with cache=never the kernel refuses MAP_SHARED
 * on FOPEN_DIRECT_IO files (ENODEV on 6.1), but private read maps work. */
static int cmd_mmap_cat(char **av, int ac)
{
    if (ac != 1)
        usage_die("mmap-cat FILE");
    int fd = open(av[0], O_RDONLY);
    if (fd < 0)
        sys_fail("open", av[0]);
    struct stat st;
    if (fstat(fd, &st) < 0)
        sys_fail("fstat", av[0]);
    if (st.st_size == 0)
        return 0;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        sys_fail("mmap", av[0]);
    write_all(STDOUT_FILENO, p, (size_t)st.st_size, "stdout");
    munmap(p, (size_t)st.st_size);
    close(fd);
    return 0;
}

/* Write STRING at OFFSET through a shared writable mapping + msync. */
static int cmd_mmap_write(char **av, int ac)
{
    if (ac != 3)
        usage_die("mmap-write FILE OFFSET STRING");
    int fd = open(av[0], O_RDWR);
    if (fd < 0)
        sys_fail("open", av[0]);
    struct stat st;
    if (fstat(fd, &st) < 0)
        sys_fail("fstat", av[0]);
    long long off = parse_ll(av[1]);
    size_t len = strlen(av[2]);
    if (off < 0 || off + (long long)len > st.st_size)
        fail("mmap-write: range beyond end of file (size %lld)", (long long)st.st_size);
    char *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        sys_fail("mmap", av[0]);
    memcpy(p + off, av[2], len);
    if (msync(p, (size_t)st.st_size, MS_SYNC) < 0)
        sys_fail("msync", av[0]);
    munmap(p, (size_t)st.st_size);
    if (close(fd) < 0)
        sys_fail("close", av[0]);
    return 0;
}

/* ---- xattrs ---------------------------------------------------------- */

static int cmd_setxattr(char **av, int ac)
{
    if (ac != 3 && ac != 4)
        usage_die("setxattr FILE NAME VALUE [create|replace]");
    int flags = 0;
    if (ac == 4) {
        if (strcmp(av[3], "create") == 0)
            flags = XATTR_CREATE;
        else if (strcmp(av[3], "replace") == 0)
            flags = XATTR_REPLACE;
        else
            usage_die("setxattr FILE NAME VALUE [create|replace]");
    }
    if (setxattr(av[0], av[1], av[2], strlen(av[2]), flags) < 0)
        sys_fail("setxattr", av[0]);
    return 0;
}

static int cmd_getxattr(char **av, int ac)
{
    if (ac != 2)
        usage_die("getxattr FILE NAME");
    /* first ask for the size, as real programs do (exercises the
     * size-0 probe path of FUSE_GETXATTR) */
    ssize_t n = getxattr(av[0], av[1], NULL, 0);
    if (n < 0)
        sys_fail("getxattr(size)", av[0]);
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        fail("out of memory");
    ssize_t m = getxattr(av[0], av[1], buf, (size_t)n);
    if (m < 0)
        sys_fail("getxattr", av[0]);
    if (m != n)
        fail("getxattr size changed: %zd then %zd", n, m);
    buf[m] = 0;
    printf("%s\n", buf);
    free(buf);
    return 0;
}

static int cmd_listxattr(char **av, int ac)
{
    if (ac != 1)
        usage_die("listxattr FILE");
    ssize_t n = listxattr(av[0], NULL, 0);
    if (n < 0)
        sys_fail("listxattr(size)", av[0]);
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        fail("out of memory");
    ssize_t m = n ? listxattr(av[0], buf, (size_t)n) : 0;
    if (m < 0)
        sys_fail("listxattr", av[0]);
    for (ssize_t i = 0; i < m; i += (ssize_t)strlen(buf + i) + 1)
        printf("%s\n", buf + i);
    free(buf);
    return 0;
}

static int cmd_removexattr(char **av, int ac)
{
    if (ac != 2)
        usage_die("removexattr FILE NAME");
    if (removexattr(av[0], av[1]) < 0)
        sys_fail("removexattr", av[0]);
    return 0;
}

/* ---- statfs / stat --------------------------------------------------- */

static int cmd_statfs(char **av, int ac)
{
    if (ac != 1)
        usage_die("statfs PATH");
    struct statvfs s;
    if (statvfs(av[0], &s) < 0)
        sys_fail("statvfs", av[0]);
    printf("bsize=%lu frsize=%lu blocks=%llu bfree=%llu bavail=%llu "
           "files=%llu ffree=%llu namemax=%lu\n",
           s.f_bsize, s.f_frsize, (unsigned long long)s.f_blocks, (unsigned long long)s.f_bfree,
           (unsigned long long)s.f_bavail, (unsigned long long)s.f_files,
           (unsigned long long)s.f_ffree, s.f_namemax);
    /* byte totals make the host comparison independent of block size */
    printf("total_bytes=%llu avail_bytes=%llu\n", (unsigned long long)s.f_blocks * s.f_frsize,
           (unsigned long long)s.f_bavail * s.f_frsize);
    return 0;
}

static const char *type_name(mode_t m)
{
    switch (m & S_IFMT) {
    case S_IFREG:
        return "reg";
    case S_IFDIR:
        return "dir";
    case S_IFLNK:
        return "lnk";
    case S_IFIFO:
        return "fifo";
    case S_IFSOCK:
        return "sock";
    case S_IFCHR:
        return "chr";
    case S_IFBLK:
        return "blk";
    default:
        return "unknown";
    }
}

static int cmd_stat(char **av, int ac)
{
    if (ac != 1)
        usage_die("stat PATH");
    struct stat st;
    if (lstat(av[0], &st) < 0)
        sys_fail("lstat", av[0]);
    printf("type=%s mode=%04o nlink=%lu uid=%u gid=%u size=%lld "
           "blocks=%lld ino=%llu atime=%lld.%09ld mtime=%lld.%09ld\n",
           type_name(st.st_mode), (unsigned)(st.st_mode & 07777), (unsigned long)st.st_nlink,
           st.st_uid, st.st_gid, (long long)st.st_size, (long long)st.st_blocks,
           (unsigned long long)st.st_ino, (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    return 0;
}

/* ---- fsync ----------------------------------------------------------- */

/* fsync + fdatasync an existing path (file or directory). */
static int cmd_fsync(char **av, int ac)
{
    if (ac != 1)
        usage_die("fsync PATH");
    int fd = open(av[0], O_RDONLY);
    if (fd < 0)
        sys_fail("open", av[0]);
    if (fsync(fd) < 0)
        sys_fail("fsync", av[0]);
    if (fdatasync(fd) < 0)
        sys_fail("fdatasync", av[0]);
    close(fd);
    return 0;
}

/* Write TEXT into FILE and fsync through the same descriptor, so the
 * dirty data is certainly pending when FUSE_FSYNC is sent. */
static int cmd_write_fsync(char **av, int ac)
{
    if (ac != 2)
        usage_die("write-fsync FILE TEXT");
    int fd = open(av[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        sys_fail("open", av[0]);
    write_all(fd, av[1], strlen(av[1]), av[0]);
    if (fdatasync(fd) < 0)
        sys_fail("fdatasync", av[0]);
    if (fsync(fd) < 0)
        sys_fail("fsync", av[0]);
    if (close(fd) < 0)
        sys_fail("close", av[0]);
    return 0;
}

/* ---- utimensat ------------------------------------------------------- */

static struct timespec parse_ts(const char *s)
{
    struct timespec ts = {0, 0};
    if (strcmp(s, "now") == 0) {
        ts.tv_nsec = UTIME_NOW;
        return ts;
    }
    if (strcmp(s, "omit") == 0) {
        ts.tv_nsec = UTIME_OMIT;
        return ts;
    }
    char *end;
    errno = 0;
    ts.tv_sec = strtoll(s, &end, 10);
    if (errno || end == s)
        usage_die("bad time '%s' (SEC[.NSEC], now, omit)", s);
    if (*end == '.') {
        const char *f = end + 1;
        long ns = 0;
        int digits = 0;
        for (; *f >= '0' && *f <= '9' && digits < 9; f++, digits++)
            ns = ns * 10 + (*f - '0');
        for (; digits < 9; digits++)
            ns *= 10;
        if (*f)
            usage_die("bad time '%s'", s);
        ts.tv_nsec = ns;
    } else if (*end) {
        usage_die("bad time '%s'", s);
    }
    return ts;
}

static int cmd_utimens(char **av, int ac)
{
    if (ac != 3)
        usage_die("utimens PATH ATIME MTIME   (SEC[.NSEC] | now | omit)");
    struct timespec ts[2] = {parse_ts(av[1]), parse_ts(av[2])};
    if (utimensat(AT_FDCWD, av[0], ts, AT_SYMLINK_NOFOLLOW) < 0)
        sys_fail("utimensat", av[0]);
    return 0;
}

/* ---- privileges ------------------------------------------------------ */

static int cmd_runas(char **av, int ac)
{
    if (ac < 3)
        usage_die("runas UID GID COMMAND [ARGS...]");
    uid_t uid = (uid_t)parse_ll(av[0]);
    gid_t gid = (gid_t)parse_ll(av[1]);
    /* order matters: drop supplementary groups and gid while still root */
    if (setgroups(0, NULL) < 0)
        sys_fail("setgroups", NULL);
    if (setgid(gid) < 0)
        sys_fail("setgid", av[1]);
    if (setuid(uid) < 0)
        sys_fail("setuid", av[0]);
    if (getuid() != uid || geteuid() != uid || getgid() != gid)
        fail("credentials did not change");
    execvp(av[2], &av[2]);
    sys_fail("execvp", av[2]);
}

/* Try to open PATH in a mode; used for permission checks. */
static int cmd_open(char **av, int ac)
{
    if (ac != 2)
        usage_die("open PATH r|w|rw|creat|excl");
    int flags;
    if (strcmp(av[1], "r") == 0)
        flags = O_RDONLY;
    else if (strcmp(av[1], "w") == 0)
        flags = O_WRONLY;
    else if (strcmp(av[1], "rw") == 0)
        flags = O_RDWR;
    else if (strcmp(av[1], "creat") == 0)
        flags = O_WRONLY | O_CREAT;
    else if (strcmp(av[1], "excl") == 0)
        flags = O_WRONLY | O_CREAT | O_EXCL;
    else
        usage_die("open PATH r|w|rw|creat|excl");
    int fd = open(av[0], flags, 0644);
    if (fd < 0)
        sys_fail("open", av[0]);
    close(fd);
    return 0;
}

/* Opens PREFIX0 .. PREFIX<N-1> read-only, all held at once, then closes them:
 * prints "opened A failed B EMFILE C other D" (the daemon refuses opens beyond
 * its fd budget with EMFILE, and nothing else may fail). */
static int cmd_holdopen(char **av, int ac)
{
    if (ac != 2)
        usage_die("holdopen N PREFIX");
    int n = atoi(av[0]), opened = 0, emfile = 0, other = 0;
    struct rlimit rl;
    if (n <= 0)
        usage_die("holdopen N PREFIX");
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 16) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 16 ? rl.rlim_max : (rlim_t)n + 16;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    int *fds = calloc((size_t)n, sizeof(*fds));
    if (!fds)
        sys_fail("calloc", "fds");
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s%d", av[1], i);
        fds[i] = open(path, O_RDONLY);
        if (fds[i] >= 0)
            opened++;
        else if (errno == EMFILE)
            emfile++;
        else
            other++;
    }
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    printf("opened %d failed %d EMFILE %d other %d\n", opened, emfile + other, emfile, other);
    return 0;
}

/* ---- concurrent writers ---------------------------------------------- */

/* The file is cut into STRIPE-sized stripes dealt round-robin to the
 * workers; every byte's value depends on its offset and its writer, so a
 * lost, misplaced or torn write shows up as a mismatch at a known offset. */
#define STRIPE 16384

static inline unsigned char pattern_byte(uint64_t off, unsigned worker)
{
    uint32_t x = (uint32_t)(off * 2654435761u) ^ (worker * 0x9e3779b9u);
    return (unsigned char)((x >> 13) ^ (x >> 5) ^ worker);
}

static void fill_stripe(unsigned char *buf, uint64_t off, unsigned worker)
{
    for (size_t i = 0; i < STRIPE; i++)
        buf[i] = pattern_byte(off + i, worker);
}

struct worker_arg {
    const char *path;
    unsigned id, nworkers;
    uint64_t size;
    int err;
};

/* Each worker has its own descriptor, like independent programs would. */
static void *worker_run(void *p)
{
    struct worker_arg *w = p;
    unsigned char *buf = malloc(STRIPE);
    int fd = open(w->path, O_WRONLY);
    if (!buf || fd < 0) {
        w->err = errno ? errno : ENOMEM;
        free(buf);
        return NULL;
    }
    for (uint64_t s = w->id; s * STRIPE < w->size; s += w->nworkers) {
        uint64_t off = s * STRIPE;
        fill_stripe(buf, off, w->id);
        size_t len = STRIPE;
        if (off + len > w->size)
            len = (size_t)(w->size - off);
        size_t done = 0;
        while (done < len) {
            ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(off + done));
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                w->err = n < 0 ? errno : EIO;
                goto out;
            }
            done += (size_t)n;
        }
    }
    if (fsync(fd) < 0)
        w->err = errno;
out:
    close(fd);
    free(buf);
    return NULL;
}

static int verify_pattern(const char *path, unsigned nworkers, uint64_t size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        sys_fail("open", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        sys_fail("fstat", path);
    if ((uint64_t)st.st_size != size)
        fail("%s: size %lld, expected %llu", path, (long long)st.st_size, (unsigned long long)size);
    unsigned char *buf = malloc(STRIPE), *want = malloc(STRIPE);
    if (!buf || !want)
        fail("out of memory");
    for (uint64_t off = 0; off < size; off += STRIPE) {
        size_t len = STRIPE;
        if (off + len > size)
            len = (size_t)(size - off);
        size_t got = 0;
        while (got < len) {
            ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
            if (n < 0)
                sys_fail("pread", path);
            if (n == 0)
                fail("%s: short read at %llu", path, (unsigned long long)(off + got));
            got += (size_t)n;
        }
        unsigned worker = (unsigned)((off / STRIPE) % nworkers);
        fill_stripe(want, off, worker);
        for (size_t i = 0; i < len; i++)
            if (buf[i] != want[i])
                fail("%s: mismatch at offset %llu (worker %u): "
                     "got 0x%02x want 0x%02x",
                     path, (unsigned long long)(off + i), worker, buf[i], want[i]);
    }
    free(buf);
    free(want);
    close(fd);
    return 0;
}

static int cmd_concurrent(char **av, int ac)
{
    if (ac != 4)
        usage_die("concurrent FILE NWORKERS SIZE threads|procs");
    const char *path = av[0];
    long long nw = parse_ll(av[1]), size = parse_ll(av[2]);
    int procs = strcmp(av[3], "procs") == 0;
    if (!procs && strcmp(av[3], "threads") != 0)
        usage_die("concurrent FILE NWORKERS SIZE threads|procs");
    if (nw < 1 || nw > 64 || size < 1)
        usage_die("concurrent: 1..64 workers, size > 0");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        sys_fail("open", path);
    /* set the final size first so no worker ever extends the file: the
     * test is about concurrent writes, not about racing size updates */
    if (ftruncate(fd, (off_t)size) < 0)
        sys_fail("ftruncate", path);
    close(fd);

    struct worker_arg *w = calloc((size_t)nw, sizeof(*w));
    pthread_t *th = calloc((size_t)nw, sizeof(*th));
    pid_t *pids = calloc((size_t)nw, sizeof(*pids));
    if (!w || !th || !pids)
        fail("out of memory");
    for (unsigned i = 0; i < (unsigned)nw; i++) {
        w[i] = (struct worker_arg){path, i, (unsigned)nw, (uint64_t)size, 0};
        if (procs) {
            pids[i] = fork();
            if (pids[i] < 0)
                sys_fail("fork", NULL);
            if (pids[i] == 0) {
                worker_run(&w[i]);
                _exit(w[i].err ? 1 : 0);
            }
        } else {
            int e = pthread_create(&th[i], NULL, worker_run, &w[i]);
            if (e) {
                errno = e;
                sys_fail("pthread_create", NULL);
            }
        }
    }
    int bad = 0;
    for (unsigned i = 0; i < (unsigned)nw; i++) {
        if (procs) {
            int status;
            if (waitpid(pids[i], &status, 0) < 0)
                sys_fail("waitpid", NULL);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s: worker %u failed\n", prog, i);
                bad = 1;
            }
        } else {
            pthread_join(th[i], NULL);
            if (w[i].err) {
                fprintf(stderr, "%s: worker %u: %s\n", prog, i, strerror(w[i].err));
                bad = 1;
            }
        }
    }
    if (bad)
        fail("concurrent writers failed");
    free(w);
    free(th);
    free(pids);
    return verify_pattern(path, (unsigned)nw, (uint64_t)size);
}

static int cmd_verify_pattern(char **av, int ac)
{
    if (ac != 3)
        usage_die("verify-pattern FILE NWORKERS SIZE");
    return verify_pattern(av[0], (unsigned)parse_ll(av[1]), (uint64_t)parse_ll(av[2]));
}

/* ---- sparse files, fifos, directories --------------------------------- */

/* Create FILE of SIZE bytes with one 4 KiB block of data at each OFFSET. */
static int cmd_sparse(char **av, int ac)
{
    if (ac < 2)
        usage_die("sparse FILE SIZE [OFFSET...]");
    int fd = open(av[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        sys_fail("open", av[0]);
    if (ftruncate(fd, (off_t)parse_ll(av[1])) < 0)
        sys_fail("ftruncate", av[0]);
    unsigned char block[4096];
    for (int i = 2; i < ac; i++) {
        long long off = parse_ll(av[i]);
        for (size_t j = 0; j < sizeof(block); j++)
            block[j] = pattern_byte((uint64_t)off + j, 7);
        pwrite_all(fd, block, sizeof(block), (off_t)off, av[0]);
    }
    if (fsync(fd) < 0)
        sys_fail("fsync", av[0]);
    if (close(fd) < 0)
        sys_fail("close", av[0]);
    return 0;
}

static int cmd_mkfifo(char **av, int ac)
{
    if (ac != 1 && ac != 2)
        usage_die("mkfifo PATH [MODE]");
    mode_t mode = ac == 2 ? (mode_t)strtol(av[1], NULL, 8) : 0644;
    if (mkfifo(av[0], mode) < 0)
        sys_fail("mkfifo", av[0]);
    return 0;
}

/* Create N empty files DIR/PREFIX00000.. quickly (no fork per file). */
static int cmd_mkfiles(char **av, int ac)
{
    if (ac != 2 && ac != 3)
        usage_die("mkfiles DIR N [PREFIX]");
    long long n = parse_ll(av[1]);
    const char *prefix = ac == 3 ? av[2] : "f";
    char path[PATH_MAX];
    for (long long i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s%05lld", av[0], prefix, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
            sys_fail("open", path);
        close(fd);
    }
    return 0;
}

/* Count directory entries (without . and ..) via readdir. */
static int cmd_count(char **av, int ac)
{
    if (ac != 1)
        usage_die("count DIR");
    DIR *d = opendir(av[0]);
    if (!d)
        sys_fail("opendir", av[0]);
    long long n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
        errno = 0;
    }
    if (errno)
        sys_fail("readdir", av[0]);
    closedir(d);
    printf("%lld\n", n);
    return 0;
}

/* pwrite STRING at OFFSET without truncating (overwrite in the middle). */
static int cmd_pwrite(char **av, int ac)
{
    if (ac != 3)
        usage_die("pwrite FILE OFFSET STRING");
    int fd = open(av[0], O_WRONLY | O_CREAT, 0644);
    if (fd < 0)
        sys_fail("open", av[0]);
    pwrite_all(fd, av[2], strlen(av[2]), (off_t)parse_ll(av[1]), av[0]);
    if (close(fd) < 0)
        sys_fail("close", av[0]);
    return 0;
}

/* ---- locks ------------------------------------------------------------ */

/* A lock failure: prints what differed and exits 1 (in a child too). */
static void lock_fail(const char *what, int got, int want)
{
    fprintf(stderr, "%s: locks: %s: got %d (%s), want %d\n", prog, what, got,
            got > 0 ? strerror(got) : "-", want);
    exit(1);
}

/* fcntl F_SETLK/F_SETLKW/F_GETLK on [start, start + len): 0 or errno. */
static int posix_lock(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    int r = fcntl(fd, cmd, &fl);
    if (out)
        *out = fl;
    return r < 0 ? errno : 0;
}

static int open_rw(const char *path)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        sys_fail("open", path);
    return fd;
}

/* Reads one byte from a pipe: the other process reached a point. */
static void wait_for(int rfd)
{
    char c;
    if (read(rfd, &c, 1) != 1)
        lock_fail("sync pipe", errno, 0);
}

/* The child is blocked (not exited) after a moment; only a lock can be holding it. */
static void expect_blocked(pid_t child)
{
    usleep(300 * 1000);
    int st;
    if (waitpid(child, &st, WNOHANG) != 0)
        lock_fail("waiter returned while the lock was held", 0, 0);
}

static void expect_child_ok(pid_t child)
{
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        lock_fail("child", WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
}

/* POSIX record locks between two guest processes, then the close(2) rule. */
static void locks_posix(const char *path)
{
    int fd = open_rw(path), p[2];
    if (pipe(p) < 0)
        sys_fail("pipe", path);
    int r = posix_lock(fd, F_SETLK, F_WRLCK, 0, 100, NULL);
    if (r)
        lock_fail("F_SETLK [0,100)", r, 0);
    pid_t parent = getpid(), child = fork();
    if (child == 0) {
        int cfd = open_rw(path);
        struct flock fl;
        if ((r = posix_lock(cfd, F_SETLK, F_WRLCK, 50, 10, NULL)) != EAGAIN && r != EACCES)
            lock_fail("conflicting F_SETLK", r, EAGAIN);
        if ((r = posix_lock(cfd, F_GETLK, F_RDLCK, 0, 0, &fl)) != 0)
            lock_fail("F_GETLK", r, 0);
        if (fl.l_type != F_WRLCK || fl.l_start != 0 || fl.l_len != 100 || fl.l_pid != parent)
            lock_fail("F_GETLK holder (pid)", fl.l_pid, parent);
        if ((r = posix_lock(cfd, F_SETLK, F_WRLCK, 200, 100, NULL)) != 0)
            lock_fail("disjoint F_SETLK", r, 0);
        if (write(p[1], "w", 1) != 1)
            _exit(1);
        if ((r = posix_lock(cfd, F_SETLKW, F_WRLCK, 0, 10, NULL)) != 0)
            lock_fail("F_SETLKW", r, 0);
        _exit(0);
    }
    wait_for(p[0]);
    expect_blocked(child);
    if ((r = posix_lock(fd, F_SETLK, F_UNLCK, 0, 0, NULL)) != 0)
        lock_fail("unlock", r, 0);
    expect_child_ok(child);

    /* Closing any fd of the file drops the process's locks on it. */
    if ((r = posix_lock(fd, F_SETLK, F_WRLCK, 0, 0, NULL)) != 0)
        lock_fail("relock", r, 0);
    close(open_rw(path));
    if ((child = fork()) == 0) {
        int cfd = open_rw(path);
        _exit(posix_lock(cfd, F_SETLK, F_WRLCK, 0, 0, NULL) == 0 ? 0 : 1);
    }
    expect_child_ok(child);
    close(fd);
    printf("posix locks ok\n");
}

/* flock between two open files: exclusion, blocking, release on close. */
static void locks_flock(const char *path)
{
    int fd = open_rw(path), p[2];
    if (pipe(p) < 0)
        sys_fail("pipe", path);
    if (flock(fd, LOCK_EX) < 0)
        lock_fail("LOCK_EX", errno, 0);
    pid_t child = fork();
    if (child == 0) {
        close(fd); /* the open file (and its flock) must stay the parent's alone */
        int cfd = open_rw(path);
        if (flock(cfd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
            lock_fail("LOCK_SH|LOCK_NB", errno, EWOULDBLOCK);
        if (write(p[1], "w", 1) != 1)
            _exit(1);
        if (flock(cfd, LOCK_EX) < 0)
            lock_fail("blocking LOCK_EX", errno, 0);
        _exit(0);
    }
    wait_for(p[0]);
    expect_blocked(child);
    close(fd); /* the last close of the open file releases it */
    expect_child_ok(child);
    printf("flock ok\n");
}

/* A lock a host process holds on path: the guest must see it. */
static void locks_held(const char *path)
{
    int fd = open_rw(path), r;
    struct flock fl;
    if ((r = posix_lock(fd, F_SETLK, F_RDLCK, 0, 0, NULL)) != EAGAIN && r != EACCES)
        lock_fail("F_SETLK on a host-locked file", r, EAGAIN);
    if ((r = posix_lock(fd, F_GETLK, F_RDLCK, 0, 0, &fl)) != 0 || fl.l_type != F_WRLCK)
        lock_fail("F_GETLK on a host-locked file", r ? r : fl.l_type, F_WRLCK);
    if (flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
        lock_fail("flock on a host-locked file", errno, EWOULDBLOCK);
    printf("host locks seen\n");
}

static int cmd_locks(char **av, int ac)
{
    if (ac != 2)
        usage_die("locks posix|flock|held FILE");
    if (strcmp(av[0], "posix") == 0)
        locks_posix(av[1]);
    else if (strcmp(av[0], "flock") == 0)
        locks_flock(av[1]);
    else if (strcmp(av[0], "held") == 0)
        locks_held(av[1]);
    else
        usage_die("locks posix|flock|held FILE");
    return 0;
}

/* Host side: hold a POSIX write lock and an flock on FILE until killed. */
static int cmd_hold_locks(char **av, int ac)
{
    if (ac != 1)
        usage_die("hold-locks FILE");
    int fd = open_rw(av[0]), r;
    if ((r = posix_lock(fd, F_SETLK, F_WRLCK, 0, 0, NULL)) != 0)
        lock_fail("F_SETLK", r, 0);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        lock_fail("flock", errno, 0);
    printf("holding\n");
    fflush(stdout);
    for (;;)
        pause();
}

/*
 * lock-wait FILE posix|flock: waits for a write lock on FILE (F_SETLKW, or flock LOCK_EX)
 * and says how it ended; an interrupted wait is not retried: it is what the guest saw.
 */
static int cmd_lock_wait(char **av, int ac)
{
    bool posix = ac == 2 && strcmp(av[1], "posix") == 0;
    if (ac != 2 || (!posix && strcmp(av[1], "flock") != 0))
        usage_die("lock-wait FILE posix|flock");
    int fd = open_rw(av[0]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    printf("waiting\n");
    fflush(stdout);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int r = posix ? fcntl(fd, F_SETLKW, &fl) : flock(fd, LOCK_EX);
    int e = errno;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long ms = (t1.tv_sec - t0.tv_sec) * 1000LL + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (r < 0) {
        printf("%s failed after %lld ms: errno %d %s (%s)\n", posix ? "F_SETLKW" : "flock LOCK_EX",
               ms, e, errno_name(e), strerror(e));
        return 1;
    }
    printf("locked after %lld ms\n", ms);
    close(fd);
    return 0;
}

/* Copies FILE to stdout through an O_NOATIME open (--preserve-noatime checks). */
static int cmd_cat_noatime(char **av, int ac)
{
    if (ac != 1)
        usage_die("cat-noatime FILE");
    int fd = open(av[0], O_RDONLY | O_NOATIME);
    if (fd < 0)
        sys_fail("open O_NOATIME", av[0]);
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        if (write(STDOUT_FILENO, buf, (size_t)n) != n)
            sys_fail("write", "stdout");
    if (n < 0)
        sys_fail("read", av[0]);
    close(fd);
    return 0;
}

/* ---- churn: a workload that checks every byte (test-upgrade.sh) -------- */

/*
 * One worker's files in DIR carry its ID in their names, and every byte is a function of
 * (ID, iteration, generation, offset), so that the worker and the host (churn-verify) can
 * check each byte without a record of what was written:
 *   w<ID>-<K>.dat   iteration K's file: appended in three or four chunks (O_APPEND), then
 *                   CHURN_OVERWRITE bytes overwritten at an offset (generation 1), read back
 *                   through a new fd, renamed from w<ID>-<K>.tmp; the last CHURN_KEEP stay
 *   w<ID>-long      open for the worker's whole life: iteration K writes block K % 64
 *                   through that one fd (a header naming ID and K, then generation 2) and
 *                   reads it back through the same fd
 * Each iteration also makes and removes a directory, a hard link and a symlink, and counts
 * the worker's files with readdir. Any failed call (EIO, EBADF, ENOTCONN ...) or wrong byte
 * ends the worker with status 1 and one line naming the iteration, the call, the file and
 * the errno.
 */
#define CHURN_KEEP        3
#define CHURN_BLOCK       4096
#define CHURN_LONG_BLOCKS 64
#define CHURN_OVERWRITE   3000
#define CHURN_HEADER      32

static unsigned churn_id, churn_k; /* for the failure line */

static void churn_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void churn_die(const char *fmt, ...)
{
    va_list ap;
    printf("churn w%u FAILED at iteration %u: ", churn_id, churn_k);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    exit(1);
}

static void churn_sys(const char *what, const char *path) __attribute__((noreturn));
static void churn_sys(const char *what, const char *path)
{
    int e = errno;
    churn_die("%s %s: %s (%s)", what, path, errno_name(e), strerror(e));
}

static uint8_t churn_byte(unsigned id, unsigned k, unsigned gen, uint64_t off)
{
    uint32_t x = (uint32_t)(off >> 2) * 2654435761u;
    x ^= id * 0x9e3779b9u ^ k * 0x85ebca6bu ^ gen * 0xc2b2ae35u;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return (uint8_t)(x >> ((off & 3) * 8));
}

static void churn_fill(uint8_t *buf, size_t len, unsigned id, unsigned k, unsigned gen,
                       uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = churn_byte(id, k, gen, off + i);
}

/* Iteration K's file: its chunk sizes (0-terminated), size and overwritten range. */
struct churn_layout {
    size_t chunk[4], size, ow_off;
};

static struct churn_layout churn_layout(unsigned k)
{
    struct churn_layout l = {.chunk = {4096, 1000 + (k % 5) * 16384, k % 7 == 0 ? 262144 : 0, 777}};
    for (int i = 0; i < 4; i++)
        l.size += l.chunk[i];
    l.ow_off = (k * 997u) % (l.size - CHURN_OVERWRITE);
    return l;
}

static uint8_t churn_dat_byte(unsigned id, unsigned k, const struct churn_layout *l, uint64_t off)
{
    bool ow = off >= l->ow_off && off < l->ow_off + CHURN_OVERWRITE;
    return churn_byte(id, k, ow ? 1 : 0, off);
}

/* Reads all of fd from offset 0 (pread: the fd's position stays) into buf; the length. */
static size_t churn_read_all(int fd, uint8_t *buf, size_t max, const char *path)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = pread(fd, buf + got, max - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            churn_sys("pread", path);
        if (n == 0 || got + (size_t)n == max)
            return got + (size_t)n;
        got += (size_t)n;
    }
}

static void churn_check_dat(const char *path, unsigned id, unsigned k, uint8_t *buf, size_t max)
{
    struct churn_layout l = churn_layout(k);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        churn_sys("open", path);
    size_t n = churn_read_all(fd, buf, max, path);
    if (close(fd) < 0)
        churn_sys("close", path);
    if (n != l.size)
        churn_die("%s: %zu bytes, want %zu", path, n, l.size);
    for (size_t i = 0; i < n; i++)
        if (buf[i] != churn_dat_byte(id, k, &l, i))
            churn_die("%s: byte %zu is 0x%02x, want 0x%02x", path, i, buf[i],
                      churn_dat_byte(id, k, &l, i));
}

static void churn_long_block(uint8_t *blk, unsigned id, unsigned k)
{
    uint64_t off = (uint64_t)(k % CHURN_LONG_BLOCKS) * CHURN_BLOCK;
    memset(blk, ' ', CHURN_HEADER);
    int h = snprintf((char *)blk, CHURN_HEADER, "churn w%u k=%u", id, k);
    blk[h] = ' ';
    blk[CHURN_HEADER - 1] = '\n';
    churn_fill(blk + CHURN_HEADER, CHURN_BLOCK - CHURN_HEADER, id, k, 2, off + CHURN_HEADER);
}

/* Block b of a long file: a block of iteration k with k % 64 == b and k < iters (when known,
 * the last such k). Empty when right, else what is wrong (static). */
static const char *churn_long_check(const uint8_t *blk, unsigned id, unsigned b, long iters)
{
    static char why[160];
    unsigned hid, k;
    uint8_t want[CHURN_BLOCK];
    if (sscanf((const char *)blk, "churn w%u k=%u", &hid, &k) != 2 || hid != id)
        return snprintf(why, sizeof(why), "block %u has no header of w%u", b, id), why;
    if (k % CHURN_LONG_BLOCKS != b)
        return snprintf(why, sizeof(why), "block %u holds iteration %u's block", b, k), why;
    if (iters >= 0 && (k >= iters || k + CHURN_LONG_BLOCKS < (unsigned long)iters))
        return snprintf(why, sizeof(why), "block %u is from iteration %u, not the last of %ld", b,
                        k, iters),
               why;
    churn_long_block(want, id, k);
    for (size_t i = 0; i < CHURN_BLOCK; i++)
        if (blk[i] != want[i])
            return snprintf(why, sizeof(why),
                            "block %u (iteration %u): byte %zu is 0x%02x, want 0x%02x", b, k, i,
                            blk[i], want[i]),
                   why;
    return "";
}

/* The long file through fd: blocks 0..min(iters, 64)-1 of their last iterations. */
static void churn_check_long(int fd, const char *path, unsigned id, unsigned iters)
{
    unsigned nb = iters < CHURN_LONG_BLOCKS ? iters : CHURN_LONG_BLOCKS;
    uint8_t blk[CHURN_BLOCK];
    for (unsigned b = 0; b < nb; b++) {
        ssize_t n = pread(fd, blk, CHURN_BLOCK, (off_t)b * CHURN_BLOCK);
        if (n < 0)
            churn_sys("pread (the long-lived fd)", path);
        if (n != CHURN_BLOCK)
            churn_die("%s: block %u: %zd bytes", path, b, n);
        const char *why = churn_long_check(blk, id, b, iters);
        if (*why)
            churn_die("%s (the long-lived fd): %s", path, why);
    }
}

static unsigned churn_count(const char *dir, unsigned id)
{
    char prefix[24];
    snprintf(prefix, sizeof(prefix), "w%u-", id);
    DIR *d = opendir(dir);
    if (!d)
        churn_sys("opendir", dir);
    unsigned n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 4 &&
            strcmp(e->d_name + len - 4, ".dat") == 0)
            n++;
    }
    if (errno)
        churn_sys("readdir", dir);
    closedir(d);
    return n;
}

static void churn_write_dat(const char *dir, unsigned id, unsigned k, bool do_fsync, uint8_t *buf,
                            size_t max)
{
    char tmp[PATH_MAX], dat[PATH_MAX];
    struct churn_layout l = churn_layout(k);
    snprintf(tmp, sizeof(tmp), "%s/w%u-%u.tmp", dir, id, k);
    snprintf(dat, sizeof(dat), "%s/w%u-%u.dat", dir, id, k);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0644);
    if (fd < 0)
        churn_sys("open O_CREAT|O_EXCL|O_APPEND", tmp);
    uint64_t off = 0;
    for (int i = 0; i < 4; i++) {
        if (!l.chunk[i])
            continue;
        churn_fill(buf, l.chunk[i], id, k, 0, off);
        for (size_t done = 0; done < l.chunk[i];) {
            ssize_t n = write(fd, buf + done, l.chunk[i] - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                churn_sys("write (append)", tmp);
            done += (size_t)n;
        }
        off += l.chunk[i];
    }
    if (do_fsync && fsync(fd) < 0)
        churn_sys("fsync", tmp);
    if (close(fd) < 0)
        churn_sys("close", tmp);
    if ((fd = open(tmp, O_RDWR)) < 0)
        churn_sys("open O_RDWR", tmp);
    churn_fill(buf, CHURN_OVERWRITE, id, k, 1, l.ow_off);
    for (size_t done = 0; done < CHURN_OVERWRITE;) {
        ssize_t n = pwrite(fd, buf + done, CHURN_OVERWRITE - done, (off_t)(l.ow_off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            churn_sys("pwrite", tmp);
        done += (size_t)n;
    }
    if (close(fd) < 0)
        churn_sys("close", tmp);
    churn_check_dat(tmp, id, k, buf, max);
    if (rename(tmp, dat) < 0)
        churn_sys("rename", tmp);
    struct stat st;
    if (stat(tmp, &st) == 0 || errno != ENOENT)
        churn_die("%s still there after the rename", tmp);
    if (stat(dat, &st) < 0)
        churn_sys("stat", dat);
    if ((size_t)st.st_size != l.size)
        churn_die("%s: st_size %lld, want %zu", dat, (long long)st.st_size, l.size);
}

/* A directory with a file, a hard link to it from outside, a symlink; all removed again. */
static void churn_names(const char *dir, unsigned id, unsigned k)
{
    char d[PATH_MAX], f[PATH_MAX + 8], lnk[PATH_MAX], sl[PATH_MAX], target[64], got[64];
    snprintf(d, sizeof(d), "%s/w%u-d%u", dir, id, k);
    snprintf(f, sizeof(f), "%s/f", d);
    snprintf(lnk, sizeof(lnk), "%s/w%u-%u.lnk", dir, id, k);
    snprintf(sl, sizeof(sl), "%s/w%u-%u.sl", dir, id, k);
    snprintf(target, sizeof(target), "w%u-%u.dat", id, k);
    if (mkdir(d, 0755) < 0)
        churn_sys("mkdir", d);
    int fd = open(f, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        churn_sys("open O_CREAT|O_EXCL", f);
    write_all(fd, "x", 1, f);
    if (close(fd) < 0)
        churn_sys("close", f);
    if (link(f, lnk) < 0)
        churn_sys("link", lnk);
    struct stat st;
    if (stat(lnk, &st) < 0)
        churn_sys("stat", lnk);
    if (st.st_nlink != 2 || st.st_size != 1)
        churn_die("%s: nlink %lu size %lld, want 2 and 1", lnk, (unsigned long)st.st_nlink,
                  (long long)st.st_size);
    if (unlink(f) < 0)
        churn_sys("unlink", f);
    if (rmdir(d) < 0)
        churn_sys("rmdir", d);
    if (unlink(lnk) < 0)
        churn_sys("unlink", lnk);
    if (symlink(target, sl) < 0)
        churn_sys("symlink", sl);
    ssize_t n = readlink(sl, got, sizeof(got) - 1);
    if (n < 0)
        churn_sys("readlink", sl);
    got[n] = 0;
    if (strcmp(got, target) != 0)
        churn_die("%s points at '%s', want '%s'", sl, got, target);
    if (stat(sl, &st) < 0) /* through the link: the .dat file */
        churn_sys("stat (following)", sl);
    if (unlink(sl) < 0)
        churn_sys("unlink", sl);
}

static long long churn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* churn DIR ID STOPFILE [fsync]: iterations until STOPFILE exists (see above). */
static int cmd_churn(char **av, int ac)
{
    if (ac < 3 || ac > 4 || (ac == 4 && strcmp(av[3], "fsync") != 0))
        usage_die("churn DIR ID STOPFILE [fsync]");
    const char *dir = av[0], *stop = av[2];
    unsigned id = churn_id = (unsigned)parse_ll(av[1]);
    bool do_fsync = ac == 4;
    size_t max = 512 * 1024;
    uint8_t *buf = malloc(max), blk[CHURN_BLOCK], rblk[CHURN_BLOCK];
    if (!buf)
        fail("out of memory");
    char lpath[PATH_MAX], old[PATH_MAX];
    snprintf(lpath, sizeof(lpath), "%s/w%u-long", dir, id);
    int lfd = open(lpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (lfd < 0)
        churn_sys("open", lpath);
    unsigned k;
    long long worst = 0, t0 = churn_now_ms();
    unsigned long long bytes = 0;
    struct stat st;
    for (k = 0; stat(stop, &st) < 0; k++) {
        long long t = churn_now_ms();
        churn_k = k;
        churn_write_dat(dir, id, k, do_fsync && k % 2, buf, max);
        bytes += churn_layout(k).size;
        churn_names(dir, id, k);
        if (k >= CHURN_KEEP) {
            snprintf(old, sizeof(old), "%s/w%u-%u.dat", dir, id, k - CHURN_KEEP);
            churn_check_dat(old, id, k - CHURN_KEEP, buf, max);
            if (unlink(old) < 0)
                churn_sys("unlink", old);
        }
        unsigned n = churn_count(dir, id), want = k + 1 < CHURN_KEEP ? k + 1 : CHURN_KEEP;
        if (n != want)
            churn_die("readdir of %s: %u files w%u-*.dat, want %u", dir, n, id, want);
        /* the long-lived fd: write a block, read it back through the same fd */
        off_t boff = (off_t)(k % CHURN_LONG_BLOCKS) * CHURN_BLOCK;
        churn_long_block(blk, id, k);
        if (pwrite(lfd, blk, CHURN_BLOCK, boff) != CHURN_BLOCK)
            churn_sys("pwrite (the long-lived fd)", lpath);
        if (pread(lfd, rblk, CHURN_BLOCK, boff) != CHURN_BLOCK)
            churn_sys("pread (the long-lived fd)", lpath);
        if (memcmp(blk, rblk, CHURN_BLOCK) != 0)
            churn_die("%s: block %u reads back wrong through the long-lived fd", lpath,
                      k % CHURN_LONG_BLOCKS);
        if (k % 16 == 15)
            churn_check_long(lfd, lpath, id, k + 1);
        if (churn_now_ms() - t > worst)
            worst = churn_now_ms() - t;
    }
    churn_k = k;
    for (unsigned j = k > CHURN_KEEP ? k - CHURN_KEEP : 0; j < k; j++) {
        snprintf(old, sizeof(old), "%s/w%u-%u.dat", dir, id, j);
        churn_check_dat(old, id, j, buf, max);
    }
    churn_check_long(lfd, lpath, id, k);
    if (fsync(lfd) < 0)
        churn_sys("fsync (the long-lived fd)", lpath);
    if (close(lfd) < 0)
        churn_sys("close (the long-lived fd)", lpath);
    free(buf);
    printf("churn w%u ok iterations=%u bytes=%llu seconds=%lld slowest-iteration-ms=%lld\n", id, k,
           bytes, (churn_now_ms() - t0) / 1000, worst);
    return 0;
}

/*
 * churn-verify DIR [ID:ITERATIONS...]: the host's check of what churn workers left in DIR:
 * every w<ID>-<K>.dat and w<ID>-long holds what the worker wrote, no .tmp, .lnk, .sl or
 * directory is left; with ID:ITERATIONS (from a worker's "ok" line), exactly that worker's
 * last CHURN_KEEP files are there and each long-file block is from its last iteration.
 */
static int cmd_churn_verify(char **av, int ac)
{
    if (ac < 1)
        usage_die("churn-verify DIR [ID:ITERATIONS...]");
    const char *dir = av[0];
    size_t max = 512 * 1024;
    uint8_t *buf = malloc(max);
    if (!buf)
        fail("out of memory");
    DIR *d = opendir(dir);
    if (!d)
        sys_fail("opendir", dir);
    struct dirent *e;
    unsigned nfiles = 0, bad = 0;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        unsigned id, k;
        char tail[16] = "";
        if (e->d_name[0] != 'w' || sscanf(e->d_name, "w%u-", &id) != 1)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        churn_id = id;
        if (sscanf(e->d_name, "w%*u-%u.%15s", &k, tail) == 2 && strcmp(tail, "dat") == 0) {
            pid_t c = fork(); /* churn_check_dat exits on the first wrong byte */
            if (c == 0) {
                churn_k = k;
                churn_check_dat(path, id, k, buf, max);
                _exit(0);
            }
            int status;
            if (c < 0 || waitpid(c, &status, 0) != c || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                bad++;
            nfiles++;
            long iters = -1;
            for (int i = 1; i < ac; i++) {
                unsigned aid;
                long n;
                if (sscanf(av[i], "%u:%ld", &aid, &n) == 2 && aid == id)
                    iters = n;
            }
            if (iters >= 0 && (k >= iters || k + CHURN_KEEP < (unsigned long)iters)) {
                printf("%s: not one of the last %u of %ld iterations\n", path, CHURN_KEEP, iters);
                bad++;
            }
        } else if (strcmp(e->d_name + strcspn(e->d_name, "-"), "-long") == 0) {
            long iters = -1;
            for (int i = 1; i < ac; i++) {
                unsigned aid;
                long n;
                if (sscanf(av[i], "%u:%ld", &aid, &n) == 2 && aid == id)
                    iters = n;
            }
            int fd = open(path, O_RDONLY);
            if (fd < 0)
                sys_fail("open", path);
            struct stat st;
            if (fstat(fd, &st) < 0)
                sys_fail("fstat", path);
            unsigned nb = (unsigned)(st.st_size / CHURN_BLOCK);
            if (st.st_size % CHURN_BLOCK || nb > CHURN_LONG_BLOCKS ||
                (iters >= 0 && nb != (iters < CHURN_LONG_BLOCKS ? iters : CHURN_LONG_BLOCKS))) {
                printf("%s: %lld bytes\n", path, (long long)st.st_size);
                bad++;
            }
            uint8_t blk[CHURN_BLOCK];
            for (unsigned b = 0; b < nb; b++) {
                if (pread(fd, blk, CHURN_BLOCK, (off_t)b * CHURN_BLOCK) != CHURN_BLOCK)
                    sys_fail("pread", path);
                const char *why = churn_long_check(blk, id, b, iters);
                if (*why) {
                    printf("%s: %s\n", path, why);
                    bad++;
                    break;
                }
            }
            close(fd);
            nfiles++;
        } else {
            printf("%s: left over\n", path);
            bad++;
        }
    }
    closedir(d);
    /* every worker named: its last files are all there */
    for (int i = 1; i < ac; i++) {
        unsigned id;
        long n;
        if (sscanf(av[i], "%u:%ld", &id, &n) != 2)
            usage_die("churn-verify DIR [ID:ITERATIONS...]");
        for (long k = n > CHURN_KEEP ? n - CHURN_KEEP : 0; k < n; k++) {
            snprintf(path, sizeof(path), "%s/w%u-%ld.dat", dir, id, k);
            if (access(path, F_OK) < 0) {
                printf("%s: missing\n", path);
                bad++;
            }
        }
        snprintf(path, sizeof(path), "%s/w%u-long", dir, id);
        if (n > 0 && access(path, F_OK) < 0) {
            printf("%s: missing\n", path);
            bad++;
        }
    }
    free(buf);
    if (bad)
        fail("churn-verify %s: %u problems in %u files", dir, bad, nfiles);
    printf("churn-verify: %u files ok\n", nfiles);
    return 0;
}

/* getlk FILE: who holds a lock on FILE, as F_OFD_GETLK sees it from a new open file. */
static int cmd_getlk(char **av, int ac)
{
    if (ac != 1)
        usage_die("getlk FILE");
    int fd = open(av[0], O_RDONLY);
    if (fd < 0)
        sys_fail("open", av[0]);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        sys_fail("fcntl F_OFD_GETLK", av[0]);
    if (fl.l_type == F_UNLCK)
        printf("unlocked\n");
    else
        printf("locked %s start=%lld len=%lld pid=%d\n", fl.l_type == F_WRLCK ? "write" : "read",
               (long long)fl.l_start, (long long)fl.l_len, (int)fl.l_pid);
    close(fd);
    return 0;
}

/*
 * An idmapped mount (mount_setattr MOUNT_ATTR_IDMAP, Linux 5.12; FUSE and virtiofs allow it
 * from 6.12 when the server agrees FUSE_ALLOW_IDMAP): SRC is cloned (open_tree) and the clone
 * attached at DST with the idmapping of a user namespace whose uid and gid maps are both
 * "NSID HOSTID COUNT" (so a file SRC shows as owned by NSID appears in DST as owned by HOSTID).
 * The namespace belongs to a child that waits until its fd is taken.
 */
static int cmd_idmap_mount(char **av, int ac)
{
    if (ac != 5)
        usage_die("idmap-mount SRC DST NSID HOSTID COUNT");
    int go[2], ready[2];
    if (pipe(go) < 0 || pipe(ready) < 0)
        sys_fail("pipe", NULL);
    pid_t child = fork();
    if (child < 0)
        sys_fail("fork", NULL);
    if (child == 0) {
        char c = 0;
        close(go[1]);
        if (unshare(CLONE_NEWUSER) < 0)
            sys_fail("unshare", "CLONE_NEWUSER");
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        (void)!read(go[0], &c, 1); /* until the parent has the namespace's fd */
        _exit(0);
    }
    char c, path[64], map[128];
    close(go[0]);
    if (read(ready[0], &c, 1) != 1)
        fail("the user namespace child died");
    snprintf(map, sizeof(map), "%s %s %s\n", av[2], av[3], av[4]);
    const char *files[] = {"uid_map", "gid_map"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)child, files[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map))
            sys_fail("write", path);
        close(fd);
    }
    snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)child);
    int userns = open(path, O_RDONLY | O_CLOEXEC);
    if (userns < 0)
        sys_fail("open", path);
    close(go[1]); /* the child may go: the fd keeps the namespace */
    waitpid(child, NULL, 0);
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, av[0], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        sys_fail("open_tree", av[0]);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        sys_fail("mount_setattr MOUNT_ATTR_IDMAP", av[0]);
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, av[1], MOVE_MOUNT_F_EMPTY_PATH) < 0)
        sys_fail("move_mount", av[1]);
    close(tree);
    close(userns);
    return 0;
}

struct command {
    const char *name;
    int (*fn)(char **av, int ac);
    const char *help;
};

static const struct command commands[] = {
    {"exchange", cmd_exchange, "OLD NEW  (renameat2 RENAME_EXCHANGE)"},
    {"noreplace", cmd_noreplace, "OLD NEW  (renameat2 RENAME_NOREPLACE)"},
    {"copy-range", cmd_copy_range, "SRC DST [OFF_IN OFF_OUT LEN]"},
    {"tmpfile", cmd_tmpfile, "DIR NAME TEXT  (O_TMPFILE, then linkat)"},
    {"seek", cmd_seek, "FILE data|hole OFFSET"},
    {"map", cmd_map, "FILE  (data extents via SEEK_DATA/SEEK_HOLE)"},
    {"fallocate", cmd_fallocate, "FILE alloc|keep|punch|zero OFFSET LEN"},
    {"mmap-cat", cmd_mmap_cat, "FILE  (read via MAP_PRIVATE to stdout)"},
    {"mmap-write", cmd_mmap_write, "FILE OFFSET STRING  (MAP_SHARED + msync)"},
    {"setxattr", cmd_setxattr, "FILE NAME VALUE [create|replace]"},
    {"getxattr", cmd_getxattr, "FILE NAME"},
    {"listxattr", cmd_listxattr, "FILE"},
    {"removexattr", cmd_removexattr, "FILE NAME"},
    {"statfs", cmd_statfs, "PATH"},
    {"stat", cmd_stat, "PATH  (lstat, one line key=value)"},
    {"fsync", cmd_fsync, "PATH  (fsync + fdatasync)"},
    {"write-fsync", cmd_write_fsync, "FILE TEXT"},
    {"utimens", cmd_utimens, "PATH ATIME MTIME  (SEC[.NSEC]|now|omit)"},
    {"runas", cmd_runas, "UID GID COMMAND [ARGS...]"},
    {"open", cmd_open, "PATH r|w|rw|creat|excl"},
    {"concurrent", cmd_concurrent, "FILE NWORKERS SIZE threads|procs"},
    {"verify-pattern", cmd_verify_pattern, "FILE NWORKERS SIZE"},
    {"sparse", cmd_sparse, "FILE SIZE [OFFSET...]"},
    {"mkfifo", cmd_mkfifo, "PATH [MODE]"},
    {"mkfiles", cmd_mkfiles, "DIR N [PREFIX]"},
    {"count", cmd_count, "DIR"},
    {"pwrite", cmd_pwrite, "FILE OFFSET STRING"},
    {"cat-noatime", cmd_cat_noatime, "FILE  (read through an O_NOATIME open)"},
    {"locks", cmd_locks, "posix|flock|held FILE  (lock scenarios between processes)"},
    {"hold-locks", cmd_hold_locks, "FILE  (POSIX write lock + flock until killed)"},
    {"churn", cmd_churn, "DIR ID STOPFILE [fsync]  (verifying workload until STOPFILE exists)"},
    {"churn-verify", cmd_churn_verify, "DIR [ID:ITERATIONS...]  (what churn workers left)"},
    {"lock-wait", cmd_lock_wait, "FILE posix|flock  (wait for a write lock, no retry)"},
    {"getlk", cmd_getlk, "FILE  (F_OFD_GETLK: who holds a lock)"},
    {"holdopen", cmd_holdopen, "N PREFIX  (open PREFIX0.. at once; count EMFILE)"},
    {"idmap-mount", cmd_idmap_mount, "SRC DST NSID HOSTID COUNT  (an idmapped mount of SRC)"},
};

static void help(FILE *f)
{
    fprintf(f, "usage: %s [-e ERRNO] COMMAND ARGS...\n", prog);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    int i = 1;
    if (i < argc && strcmp(argv[i], "-e") == 0) {
        if (i + 1 >= argc)
            usage_die("-e ERRNO COMMAND ...");
        expect_errno = errno_parse(argv[i + 1]);
        i += 2;
    }
    if (i >= argc || strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
        help(i >= argc ? stderr : stdout);
        return i >= argc ? 2 : 0;
    }
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        if (strcmp(commands[c].name, argv[i]) == 0) {
            int r = commands[c].fn(&argv[i + 1], argc - i - 1);
            if (fflush(stdout) != 0)
                sys_fail("write", "stdout");
            if (r == 0 && expect_errno) {
                fprintf(stderr, "%s: %s: expected %s, but it succeeded\n", prog, argv[i],
                        errno_name(expect_errno));
                return 3;
            }
            return r;
        }
    }
    fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[i]);
    help(stderr);
    return 2;
}
