/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Confinement of a running daemon, thread by thread: capabilities, no_new_privs and the
 * seccomp filter belong to each thread, so every task of the serving process is read from
 * /proc/PID/task/TID/status while it serves (queue workers, the request pool, a waiting lock,
 * liburcu's threads), in each sandbox mode, with and without --thread-pool-size. Also the
 * namespace sandbox's monitor (only what starting a new serving process takes, permitted but
 * not effective; nothing at all with --max-restarts=0) and the share's mount in the daemon's
 * namespace (nodev, nosuid).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define Q 1

/* What the serving process may keep (caps.c), DAC_READ_SEARCH included: whether the default
 * file-handle policy keeps it depends on the share's file system. */
#define KEPT_CAPS                                                                                  \
    ((1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_DAC_READ_SEARCH) |            \
     (1ull << CAP_FOWNER) | (1ull << CAP_FSETID) | (1ull << CAP_SETGID) | (1ull << CAP_SETUID) |   \
     (1ull << CAP_MKNOD) | (1ull << CAP_SETFCAP))

/* What the monitor that restarts the serving process may keep (caps.c): the server's set, and
 * SYS_ADMIN and SETPCAP to build a new one. */
#define MONITOR_CAPS (KEPT_CAPS | (1ull << CAP_SYS_ADMIN) | (1ull << CAP_SETPCAP))

/* The value of "Field:" in a /proc status file (hex for Cap*, decimal otherwise); -1 if absent. */
static long long status_value(const char *text, const char *field)
{
    const char *p = strstr(text, field);
    if (!p)
        return -1;
    return strtoll(p + strlen(field), NULL, strncmp(field, "Cap", 3) == 0 ? 16 : 10);
}

/* /proc/PID/FILE, or /proc/PID/task/TID/FILE when tid is not 0; NULL if unreadable. */
static gchar *read_text(pid_t pid, pid_t tid, const char *file)
{
    gchar *path = tid ? g_strdup_printf("/proc/%d/task/%d/%s", (int)pid, (int)tid, file)
                      : g_strdup_printf("/proc/%d/%s", (int)pid, file);
    gchar *contents = NULL;
    gchar *text = g_file_get_contents(path, &contents, NULL, NULL) ? contents : NULL;
    g_free(path);
    return text;
}

/*
 * Asserts the lockdown of every task of pid; returns the number of tasks checked and adds
 * each one's name to names (so the caller can require the threads it expects).
 */
static unsigned assert_every_task_confined(pid_t pid, GString *names)
{
    gchar *dirpath = g_strdup_printf("/proc/%d/task", (int)pid);
    DIR *dir = opendir(dirpath);
    g_assert_nonnull(dir);
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.')
            continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        gchar *status = read_text(pid, tid, "status");
        if (!status)
            continue; /* the task ended meanwhile */
        gchar *comm = read_text(pid, tid, "comm");
        g_strchomp(comm);
        g_test_message("task %d (%s): Seccomp %lld NoNewPrivs %lld CapEff %llx CapBnd %llx",
                       (int)tid, comm, status_value(status, "Seccomp:"),
                       status_value(status, "NoNewPrivs:"),
                       (unsigned long long)status_value(status, "CapEff:"),
                       (unsigned long long)status_value(status, "CapBnd:"));
        g_assert_cmpint(status_value(status, "Seccomp:"), ==, 2);
        g_assert_cmpint(status_value(status, "NoNewPrivs:"), ==, 1);
        static const char *const within[] = {"CapEff:", "CapPrm:", "CapBnd:"};
        for (size_t i = 0; i < G_N_ELEMENTS(within); i++)
            g_assert_cmphex((unsigned long long)status_value(status, within[i]) & ~KEPT_CAPS, ==,
                            0);
        g_assert_cmphex((unsigned long long)status_value(status, "CapInh:"), ==, 0);
        g_assert_cmphex((unsigned long long)status_value(status, "CapAmb:"), ==, 0);
        g_string_append_printf(names, "%s ", comm);
        g_free(comm);
        g_free(status);
        n++;
    }
    closedir(dir);
    g_free(dirpath);
    return n;
}

static void assert_no_capabilities(pid_t pid)
{
    gchar *status = read_text(pid, 0, "status");
    g_assert_nonnull(status);
    static const char *const sets[] = {"CapEff:", "CapPrm:", "CapInh:", "CapAmb:"};
    for (size_t i = 0; i < G_N_ELEMENTS(sets); i++)
        g_assert_cmphex((unsigned long long)status_value(status, sets[i]), ==, 0);
    g_assert_cmpint(status_value(status, "NoNewPrivs:"), ==, 1);
    g_free(status);
}

/*
 * A monitor that can restart the serving process: SYS_ADMIN and SETPCAP and at most the
 * server's set, in the permitted and bounding sets only; nothing effective, inheritable or
 * ambient; no_new_privs.
 */
static void assert_monitor_capabilities(pid_t pid)
{
    gchar *status = read_text(pid, 0, "status");
    g_assert_nonnull(status);
    unsigned long long prm = (unsigned long long)status_value(status, "CapPrm:");
    unsigned long long bnd = (unsigned long long)status_value(status, "CapBnd:");
    g_test_message("monitor %d: CapPrm %llx CapBnd %llx", (int)pid, prm, bnd);
    g_assert_cmphex(prm & ~MONITOR_CAPS, ==, 0);
    g_assert_cmphex(bnd & ~MONITOR_CAPS, ==, 0);
    g_assert_cmphex(prm & (1ull << CAP_SYS_ADMIN), !=, 0);
    g_assert_cmphex(prm & (1ull << CAP_SETPCAP), !=, 0);
    static const char *const none[] = {"CapEff:", "CapInh:", "CapAmb:"};
    for (size_t i = 0; i < G_N_ELEMENTS(none); i++)
        g_assert_cmphex((unsigned long long)status_value(status, none[i]), ==, 0);
    g_assert_cmpint(status_value(status, "NoNewPrivs:"), ==, 1);
    g_free(status);
}

struct mode {
    const char *name;
    const char *sandbox; /* --sandbox= */
    const char *pool;    /* --thread-pool-size= or NULL */
    uid_t uid;           /* 0, or unprivileged: the user-namespace sandbox */
    bool no_restarts;    /* --max-restarts=0: the monitor keeps nothing */
};

static struct fuse_lk_in write_lock(uint64_t fh, uint64_t owner, uint32_t type)
{
    return (struct fuse_lk_in){
        .fh = fh,
        .owner = owner,
        .lk = {.start = 0, .end = 0x7fffffffffffffffULL, .type = type, .pid = (uint32_t)owner}};
}

static int setlk(struct fe *fe, uint64_t nodeid, struct fuse_lk_in in)
{
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_SETLK, nodeid, &iov, 1, 0, &r), ==, 0);
    return r.error;
}

/* Creates, looks up and opens "probe" read-write: nodeid and fh. */
static void open_probe(struct fe *fe, const struct test_daemon *d, uint64_t *nodeid, uint64_t *fh)
{
    gchar *path = g_build_filename(d->share, "probe", NULL);
    g_assert_true(g_file_set_contents(path, "probe", 5, NULL));
    g_assert_cmpint(chmod(path, 0666), ==, 0);
    g_free(path);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    *nodeid = e.nodeid;
    struct fuse_open_in in = {.flags = O_RDWR};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_OPEN, e.nodeid, &iov, 1, sizeof(struct fuse_open_out), &r),
                    ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    *fh = ((struct fuse_open_out *)r.data)->fh;
}

/* In a user namespace the server is one process further down (monitor, intermediate). */
static pid_t find_server(const struct test_daemon *d, bool userns)
{
    pid_t server = test_daemon_serving_pid(d);
    if (userns)
        server = test_daemon_serving_pid(&(struct test_daemon){.pid = server});
    return server;
}

/* Guest root asks for a trusted.* xattr: CAP_SYS_ADMIN, which no thread may have. */
static int set_trusted_xattr(struct fe *fe, unsigned q, uint64_t nodeid)
{
    static const char name[] = "trusted.overlay.opaque";
    struct fuse_setxattr_in si = {.size = 1};
    /* Without FUSE_SETXATTR_EXT the struct is the 8-byte compat one. */
    struct iovec iov[3] = {
        {&si, FUSE_COMPAT_SETXATTR_IN_SIZE}, {(void *)name, sizeof(name)}, {"y", 1}};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, q, FUSE_SETXATTR, nodeid, iov, 3, 0, &r), ==, 0);
    return r.error;
}

static void forget(struct fe *fe, uint64_t nodeid)
{
    struct fuse_forget_in fi = {.nlookup = 1};
    struct iovec iov = {&fi, sizeof(fi)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse(fe, Q, FUSE_FORGET, nodeid, &iov, 1, 0, &r), ==, 0);
}

/* Waits until a task named comm exists in pid (a thread starts asynchronously). */
static bool wait_for_task(pid_t pid, const char *comm)
{
    for (int i = 0; i < 200; i++) {
        GString *names = g_string_new("");
        gchar *dirpath = g_strdup_printf("/proc/%d/task", (int)pid);
        DIR *dir = opendir(dirpath);
        for (struct dirent *e; dir && (e = readdir(dir));) {
            gchar *c = e->d_name[0] == '.' ? NULL : read_text(pid, (pid_t)atoi(e->d_name), "comm");
            if (c)
                g_string_append(names, c);
            g_free(c);
        }
        if (dir)
            closedir(dir);
        g_free(dirpath);
        bool found = strstr(names->str, comm) != NULL;
        g_string_free(names, TRUE);
        if (found)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_every_thread(gconstpointer data)
{
    const struct mode *m = data;
    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_test_skip("sanitizer builds run the daemon without its sandbox and filter");
    return;
#endif
    gchar *sandbox = g_strdup_printf("--sandbox=%s", m->sandbox);
    const char *args[6] = {sandbox, "--xattr", "--queue-threads=2"};
    size_t n = 3;
    if (m->pool)
        args[n++] = m->pool;
    if (m->no_restarts)
        args[n++] = "--max-restarts=0";
    struct test_daemon d;
    int started =
        m->uid ? test_daemon_start_as(&d, args, m->uid, m->uid) : test_daemon_start(&d, args);
    g_assert_cmpint(started, ==, 0);
    pid_t server = find_server(&d, m->uid != 0);

    struct fe_config cfg = {.socket_path = d.socket, .request_queues = 2};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    uint64_t nodeid, fh;
    open_probe(fe, &d, &nodeid, &fh);
    /* Each queue on its own worker; a FORGET frees an inode through call_rcu's thread. */
    gchar *other = g_build_filename(d.share, "forgotten", NULL);
    g_assert_true(g_file_set_contents(other, "", 0, NULL));
    g_free(other);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "forgotten", &e), ==, 0);
    forget(fe, e.nodeid);
    for (unsigned q = 1; q <= 2; q++)
        g_assert_cmpint(set_trusted_xattr(fe, q, nodeid), ==, -EPERM);
    /* A blocked SETLKW waits on a thread of its own. */
    g_assert_cmpint(setlk(fe, nodeid, write_lock(fh, 0xa1, F_WRLCK)), ==, 0);
    struct fuse_lk_in in = write_lock(fh, 0xb2, F_WRLCK);
    struct iovec iov = {&in, sizeof(in)};
    struct fe_pending waiting;
    g_assert_cmpint(fe_fuse_send(fe, Q, FUSE_SETLKW, nodeid, &iov, 1, 0, in.lk.pid, &waiting), ==,
                    0);
    g_assert_true(wait_for_task(server, "lock-wait"));

    GString *names = g_string_new("");
    unsigned tasks = assert_every_task_confined(server, names);
    g_test_message("%s: %u tasks: %s", m->name, tasks, names->str);
    g_assert_nonnull(strstr(names->str, "queue-worker-0"));
    g_assert_nonnull(strstr(names->str, "queue-worker-1"));
    g_assert_nonnull(strstr(names->str, "lock-wait"));
    /* Pool threads start on demand: at least the one that served these requests. */
    if (m->pool)
        g_assert_nonnull(strstr(names->str, "pool-worker"));
    g_assert_cmpuint(tasks, >=, m->pool ? 6u : 5u);
    g_string_free(names, TRUE);

    g_assert_cmpint(setlk(fe, nodeid, write_lock(fh, 0xa1, F_UNLCK)), ==, 0);
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_wait(fe, &waiting, 5000, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    fe_close(fe);
    if (strcmp(m->sandbox, "namespace") == 0) {
        /* The server's parent monitors it: as root the process started, in a user namespace
         * the intermediate (the process started there holds nothing: it has nothing to
         * keep, outside the namespace). */
        pid_t monitor = m->uid ? test_daemon_serving_pid(&d) : d.pid;
        if (m->uid)
            assert_no_capabilities(d.pid);
        if (m->no_restarts)
            assert_no_capabilities(monitor);
        else
            assert_monitor_capabilities(monitor);
    }
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
    g_free(sandbox);
}

/* The mount option list (field 6) of the mount at "/" in pid's mount namespace. */
static gchar *root_mount_options(pid_t pid)
{
    gchar *text = read_text(pid, 0, "mountinfo");
    g_assert_nonnull(text);
    gchar *opts = NULL;
    gchar **lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l; l++) {
        gchar **f = g_strsplit(*l, " ", 7);
        if (g_strv_length(f) >= 6 && strcmp(f[4], "/") == 0) {
            g_free(opts); /* the last one stacked on "/" is the visible one */
            opts = g_strdup_printf(",%s,", f[5]);
        }
        g_strfreev(f);
    }
    g_strfreev(lines);
    g_free(text);
    g_assert_nonnull(opts);
    return opts;
}

static void test_share_nodev_nosuid(void)
{
    if (geteuid() != 0) {
        g_test_skip("needs root");
        return;
    }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_test_skip("sanitizer builds run the daemon without its sandbox");
    return;
#endif
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, NULL), ==, 0);
    struct statvfs host_before;
    g_assert_cmpint(statvfs(d.share, &host_before), ==, 0);
    gchar *opts = root_mount_options(test_daemon_serving_pid(&d));
    g_test_message("the share's mount in the daemon's namespace: %s", opts);
    g_assert_nonnull(strstr(opts, ",nodev,"));
    g_assert_nonnull(strstr(opts, ",nosuid,"));
    g_free(opts);
    /* Only the daemon's view: the host's mount of the share is what it was. */
    struct statvfs host_after;
    g_assert_cmpint(statvfs(d.share, &host_after), ==, 0);
    g_assert_cmphex(host_after.f_flag, ==, host_before.f_flag);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    static const struct mode modes[] = {
        {"namespace", "namespace", NULL, 0, false},
        {"namespace-pool", "namespace", "--thread-pool-size=2", 0, false},
        {"chroot", "chroot", NULL, 0, false},
        {"chroot-pool", "chroot", "--thread-pool-size=2", 0, false},
        {"none", "none", NULL, 0, false},
        {"none-pool", "none", "--thread-pool-size=2", 0, false},
        {"user-namespace", "namespace", NULL, 65534, false},
        {"user-namespace-pool", "namespace", "--thread-pool-size=2", 65534, false},
        {"namespace-no-restarts", "namespace", NULL, 0, true},
        {"user-namespace-no-restarts", "namespace", NULL, 65534, true},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        gchar *path = g_strdup_printf("/confinement/every-thread/%s", modes[i].name);
        g_test_add_data_func(path, &modes[i], test_every_thread);
        g_free(path);
    }
    g_test_add_func("/confinement/share-nodev-nosuid", test_share_nodev_nosuid);
    return g_test_run();
}
