/* SPDX-License-Identifier: Apache-2.0 */
#include "fuzz_common.h"

#include <cap-ng.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "log.h"
#include "passthrough.h"

static char base_dir[PATH_MAX];
static char share_dir[PATH_MAX];
static char sentinel_dir[PATH_MAX];
static bool on_tmpfs;

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n==FUZZ CHECK FAILED== %s:%d: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void fuzz_init_logging(void)
{
    enum log_level lvl = LOG_LVL_OFF;
    const char *env = getenv("FUZZ_LOG");
    if (env && log_parse_level(env, &lvl) < 0)
        lvl = LOG_LVL_DEBUG;
    log_init(lvl, false);
}

/* ---- argv -------------------------------------------------------------------------------- */

static char *absolute(const char *cwd, const char *prefix, const char *path)
{
    size_t n = strlen(cwd) + strlen(prefix) + strlen(path) + 2;
    char *s = malloc(n);
    FUZZ_CHECK(s != NULL, "out of memory");
    snprintf(s, n, "%s%s/%s", prefix, cwd, path);
    return s;
}

void fuzz_absolute_argv(int *argc, char ***argv)
{
    static char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return;
    static const char *const path_flags[] = {"-artifact_prefix=", "-exact_artifact_path=", "-dict=",
                                             "-merge_control_file=", "-features_dir="};
    char **out = calloc((size_t)*argc + 2, sizeof(char *));
    FUZZ_CHECK(out != NULL, "out of memory");
    bool has_prefix = false;
    int n = 0;
    for (int i = 0; i < *argc; i++) {
        char *a = (*argv)[i];
        out[n] = a;
        if (i > 0 && a[0] != '-' && a[0] != '/') {
            out[n] = absolute(cwd, "", a); /* a corpus directory or an input file */
        } else if (i > 0 && a[0] == '-') {
            for (size_t k = 0; k < sizeof(path_flags) / sizeof(path_flags[0]); k++) {
                size_t l = strlen(path_flags[k]);
                if (strncmp(a, path_flags[k], l) == 0 && a[l] != '/' && a[l] != '\0') {
                    char flag[64];
                    snprintf(flag, sizeof(flag), "%.*s", (int)l, a);
                    out[n] = absolute(cwd, flag, a + l);
                }
            }
            if (strncmp(a, "-artifact_prefix=", 17) == 0)
                has_prefix = true;
        }
        n++;
    }
    if (!has_prefix)
        out[n++] = absolute(cwd, "-artifact_prefix=", "");
    out[n] = NULL;
    *argc = n;
    *argv = out;
}

/* ---- sandbox --------------------------------------------------------------------------- */

static void drop_mknod(void)
{
    if (geteuid() != 0)
        return; /* an unprivileged caller cannot create device nodes anyway */
    capng_get_caps_process();
    capng_update(CAPNG_DROP, CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_INHERITABLE, CAP_MKNOD);
    if (capng_apply(CAPNG_SELECT_CAPS) < 0) {
        fprintf(stderr, "fuzz: cannot drop CAP_MKNOD; refusing to fuzz a root passthrough fs\n");
        abort();
    }
}

/* A private tmpfs: bounded in size, nodev even if a device node appeared, gone at exit. */
static bool private_tmpfs(const char *dir)
{
    if (unshare(CLONE_NEWNS) < 0)
        return false;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return false;
    return mount("vfs-fuzz", dir, "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC,
                 "size=64m,nr_inodes=16384,mode=0755") == 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (ftw->level == 0)
        return 0; /* keep the top directory itself */
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void rm_contents(const char *dir)
{
    nftw(dir, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void put_file(const char *name, const void *data, size_t len, mode_t mode)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", share_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FUZZ_CHECK(fd >= 0, "creating %s: %s", path, strerror(errno));
    FUZZ_CHECK(write(fd, data, len) == (ssize_t)len, "writing %s: %s", path, strerror(errno));
    close(fd);
}

static void put_dir(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", share_dir, name);
    FUZZ_CHECK(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
}

static void put_symlink(const char *name, const char *target)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", share_dir, name);
    FUZZ_CHECK(symlink(target, path) == 0, "symlink %s: %s", path, strerror(errno));
}

static void populate(void)
{
    static uint8_t pattern[8192];
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 7 + 3);
    put_file("hello.txt", "hello, virtio-fs\n", 17, 0644);
    put_file("data.bin", pattern, sizeof(pattern), 0644);
    put_file("empty", "", 0, 0600);
    put_file("ro.txt", "read-only\n", 10, 0444);
    put_dir("sub");
    put_file("sub/inner.txt", "inner\n", 6, 0644);
    put_dir("sub/deeper");
    put_dir("emptydir");
    put_symlink("link", "hello.txt");
    put_symlink("escape", "../sentinel");
    put_symlink("abs", "/etc/passwd");
    put_symlink("dotdot", "..");
    put_symlink("sub/up", "../..");
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof(a), "%s/hello.txt", share_dir);
    snprintf(b, sizeof(b), "%s/hard", share_dir);
    FUZZ_CHECK(link(a, b) == 0, "link: %s", strerror(errno));
    snprintf(a, sizeof(a), "%s/fifo", share_dir);
    FUZZ_CHECK(mkfifo(a, 0644) == 0, "mkfifo: %s", strerror(errno));
}

static void cleanup(void)
{
    if (!base_dir[0])
        return;
    if (on_tmpfs) {
        umount2(base_dir, MNT_DETACH);
    } else {
        chmod(share_dir, 0755);
        rm_contents(base_dir);
    }
    rmdir(base_dir);
}

const char *fuzz_make_share(void)
{
    if (share_dir[0])
        return share_dir;
    const char *tmp = getenv("TMPDIR");
    char tmpdir[PATH_MAX];
    /* Absolute: the passthrough filesystem makes /proc/self/fd the working directory. */
    if (!tmp || !*tmp || !realpath(tmp, tmpdir))
        snprintf(tmpdir, sizeof(tmpdir), "/tmp");
    snprintf(base_dir, sizeof(base_dir), "%s/vfs-fuzz-XXXXXX", tmpdir);
    FUZZ_CHECK(mkdtemp(base_dir) != NULL, "mkdtemp %s: %s", base_dir, strerror(errno));
    drop_mknod();
    on_tmpfs = private_tmpfs(base_dir);
    if (!on_tmpfs)
        fprintf(stderr, "fuzz: no private tmpfs (%s); the share is on the host filesystem\n",
                strerror(errno));
    snprintf(share_dir, sizeof(share_dir), "%s/share", base_dir);
    snprintf(sentinel_dir, sizeof(sentinel_dir), "%s/sentinel", base_dir);
    FUZZ_CHECK(mkdir(share_dir, 0755) == 0, "mkdir share: %s", strerror(errno));
    FUZZ_CHECK(mkdir(sentinel_dir, 0755) == 0, "mkdir sentinel: %s", strerror(errno));
    populate();
    atexit(cleanup);
    return share_dir;
}

void fuzz_restore_share(void)
{
    /* The root itself must stay (the filesystem holds an fd to it): restore its attributes. */
    lchown(share_dir, 0, 0);
    chmod(share_dir, 0755);
    char names[4096];
    ssize_t n = llistxattr(share_dir, names, sizeof(names));
    for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names + off) + 1)
        lremovexattr(share_dir, names + off);
    rm_contents(share_dir);
    /* An input may have filled the share (a 64 MiB tmpfs) with files it then unlinked while
     * they were open: inside its read-side section pt_reset() left those fds to the call_rcu
     * thread, and until it closes them the space stays taken. Wait for it when little is left,
     * or populate() runs out of space. */
    struct statvfs v;
    if (statvfs(share_dir, &v) == 0 &&
        ((uint64_t)v.f_bavail * v.f_frsize < (1u << 20) || v.f_favail < 64))
        rcu_barrier();
    populate();
}

static unsigned count_entries(const char *dir, const char *except1, const char *except2)
{
    DIR *d = opendir(dir);
    FUZZ_CHECK(d != NULL, "opendir %s: %s", dir, strerror(errno));
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if ((except1 && !strcmp(e->d_name, except1)) || (except2 && !strcmp(e->d_name, except2)))
            continue;
        fprintf(stderr, "fuzz: unexpected entry %s/%s\n", dir, e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

void fuzz_check_confinement(void)
{
    FUZZ_CHECK(count_entries(sentinel_dir, NULL, NULL) == 0, "something was created in %s",
               sentinel_dir);
    FUZZ_CHECK(count_entries(base_dir, "share", "sentinel") == 0,
               "something was created next to the share in %s", base_dir);
    struct stat st;
    FUZZ_CHECK(stat(sentinel_dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755,
               "the sentinel directory was changed");
}

void fuzz_list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[64], target[PATH_MAX];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = '\0';
        fprintf(stderr, "fuzz: fd %s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

int fuzz_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[64], target[32];
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        /* Pipes belong to the sanitizer runtime (its symbolizer); the daemon makes none. */
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len >= 5 && memcmp(target, "pipe:", 5) == 0)
            continue;
        n++;
    }
    closedir(d);
    return n;
}

/* ---- input cursor ------------------------------------------------------------------------ */

static uint64_t take_le(struct fuzz_in *in, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n && in->left; i++, in->p++, in->left--)
        v |= (uint64_t)in->p[0] << (8 * i);
    return v;
}

uint8_t fuzz_u8(struct fuzz_in *in)
{
    return (uint8_t)take_le(in, 1);
}

uint16_t fuzz_u16(struct fuzz_in *in)
{
    return (uint16_t)take_le(in, 2);
}

uint32_t fuzz_u32(struct fuzz_in *in)
{
    return (uint32_t)take_le(in, 4);
}

uint64_t fuzz_u64(struct fuzz_in *in)
{
    return take_le(in, 8);
}

size_t fuzz_bytes(struct fuzz_in *in, size_t n, const uint8_t **out)
{
    if (n > in->left)
        n = in->left;
    *out = in->p;
    in->p += n;
    in->left -= n;
    return n;
}

struct fuse_session *fuzz_open_session(int *argc, char ***argv, struct pt_config *cfg,
                                       struct pt_fs **fs)
{
    fuzz_absolute_argv(argc, argv);
    fuzz_init_logging();
    cfg->shared_dir = fuzz_make_share();
    rcu_register_thread();
    int ret = pt_new(cfg, fs);
    FUZZ_CHECK(ret == 0, "pt_new: %s", strerror(-ret));
    struct fuse_session *se = fuse_session_new(*fs);
    FUZZ_CHECK(se != NULL, "fuse_session_new");
    return se;
}
