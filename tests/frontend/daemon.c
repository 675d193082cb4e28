/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

const char *test_daemon_path(void)
{
    const char *p = getenv("VIRTIOFSD");
    return p && *p ? p : VIRTIOFSD_BUILD_PATH;
}

static bool log_contains_since(const struct test_daemon *d, const char *needle, long offset)
{
    char *text = test_daemon_log_since(d, offset);
    bool found = strstr(text, needle) != NULL;
    g_free(text);
    return found;
}

/* Ready once the socket exists and the daemon says it serves (ours: "serving", the Rust
 * virtiofsd: "Waiting for vhost-user socket connection"), in what it logged since this
 * start (a restarted daemon's socket file may be its predecessor's); others get a moment. */
static bool daemon_ready(const struct test_daemon *d, int waited_ms)
{
    if (access(d->socket, F_OK) != 0)
        return false;
    return log_contains_since(d, "serving", d->log_start) ||
           log_contains_since(d, "Waiting for vhost-user socket", d->log_start) || waited_ms > 300;
}

int test_daemon_start(struct test_daemon *d, const char *const *extra_args)
{
    return test_daemon_start_as(d, extra_args, 0, 0);
}

static int spawn(struct test_daemon *d, GPtrArray *argv, uid_t uid, gid_t gid);

/* A fresh temp dir with its share, and the paths of socket and log. */
static int make_dirs(struct test_daemon *d)
{
    memset(d, 0, sizeof(*d));
    d->dir = g_dir_make_tmp("vfs-proto-XXXXXX", NULL);
    if (!d->dir)
        return -EIO;
    d->share = g_build_filename(d->dir, "share", NULL);
    d->socket = g_build_filename(d->dir, "sock", NULL);
    d->log = g_build_filename(d->dir, "daemon.log", NULL);
    if (mkdir(d->share, 0755) < 0)
        return -errno;
    return 0;
}

int test_daemon_start_peer(struct test_daemon *d, const char *binary, const char *share,
                           const char *const *extra_args)
{
    int ret = make_dirs(d);
    if (ret < 0)
        return ret;
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(binary));
    g_ptr_array_add(argv, g_strdup_printf("--socket-path=%s", d->socket));
    g_ptr_array_add(argv, g_strdup_printf("--shared-dir=%s", share ? share : d->share));
    for (const char *const *a = extra_args; a && *a; a++)
        g_ptr_array_add(argv, g_strdup(*a));
    g_ptr_array_add(argv, NULL);
    return spawn(d, argv, 0, 0);
}

int test_daemon_start_as(struct test_daemon *d, const char *const *extra_args, uid_t uid, gid_t gid)
{
    int ret = make_dirs(d);
    if (ret < 0)
        return ret;
    /* An unprivileged daemon needs to reach its socket directory and own its share. */
    if (uid && (chmod(d->dir, 0777) < 0 || chown(d->share, uid, gid) < 0))
        return -errno;

    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(test_daemon_path()));
    g_ptr_array_add(argv, g_strdup_printf("--socket-path=%s", d->socket));
    g_ptr_array_add(argv, g_strdup_printf("--shared-dir=%s", d->share));
    /* The default sandbox and seccomp mode (namespace, kill): a syscall missing from the
     * allow-list shows up here as a killed daemon. Sanitizer builds are the exception: their
     * exit-time leak check traces the process from a helper process, which neither the
     * filter nor a PID namespace whose init has exited allows. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_ptr_array_add(argv, g_strdup("--sandbox=none"));
    g_ptr_array_add(argv, g_strdup("--seccomp=none"));
#endif
    g_ptr_array_add(argv, g_strdup("--log-level=debug"));
    /* VIRTIOFSD_TEST_ARGS: options for every daemon a test starts, e.g. to run a suite again
     * with --thread-pool-size (run-all.sh does). */
    const char *env = getenv("VIRTIOFSD_TEST_ARGS");
    gchar **words = env && *env ? g_strsplit_set(env, " ", -1) : NULL;
    for (gchar **w = words; w && *w; w++)
        if (**w)
            g_ptr_array_add(argv, g_strdup(*w));
    g_strfreev(words);
    for (const char *const *a = extra_args; a && *a; a++)
        g_ptr_array_add(argv, g_strdup(*a));
    g_ptr_array_add(argv, NULL);
    return spawn(d, argv, uid, gid);
}

static int start_argv(struct test_daemon *d);

int test_daemon_prepare(struct test_daemon *d)
{
    return make_dirs(d);
}

static GPtrArray *argv_copy(const char *const *argv)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
    for (const char *const *w = argv; *w; w++)
        g_ptr_array_add(a, g_strdup(*w));
    g_ptr_array_add(a, NULL);
    return a;
}

int test_daemon_start_argv(struct test_daemon *d, const char *const *argv)
{
    return spawn(d, argv_copy(argv), 0, 0);
}

int test_daemon_start_inherited(struct test_daemon *d, const char *const *argv, int fd_number,
                                bool systemd_env)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    g_strlcpy(a.sun_path, d->socket, sizeof(a.sun_path));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
        int ret = -errno;
        close(fd);
        return ret;
    }
    d->inherits = true;
    d->inherit_fd = fd;
    d->inherit_as = fd_number;
    d->systemd_env = systemd_env;
    return spawn(d, argv_copy(argv), 0, 0);
}

/* In the child: the listening socket as fd inherit_as, open across exec, and systemd's
 * variables naming this very process (its pid stays across exec). */
static void child_inherit(const struct test_daemon *d)
{
    int fd = d->inherit_fd;
    if (fd == d->inherit_as)
        fcntl(fd, F_SETFD, 0);
    else if (dup2(fd, d->inherit_as) < 0)
        _exit(124);
    if (d->systemd_env) {
        char pid[16];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "1", 1);
    }
}

/* Runs argv (freed here; kept in d for a restart) with its output in d->log; waits until it
 * serves. */
static int spawn(struct test_daemon *d, GPtrArray *argv, uid_t uid, gid_t gid)
{
    d->argv = g_new0(char *, argv->len);
    for (unsigned i = 0; i + 1 < argv->len; i++)
        d->argv[i] = g_strdup(argv->pdata[i]);
    d->uid = uid;
    d->gid = gid;
    g_ptr_array_free(argv, TRUE);
    return start_argv(d);
}

static int start_argv(struct test_daemon *d)
{
    uid_t uid = d->uid;
    gid_t gid = d->gid;
    d->log_start = test_daemon_log_size(d);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | (d->log_start ? 0 : O_TRUNC), 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* A test that dies must not leave its daemon behind. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (d->inherits)
            child_inherit(d);
        if (d->child_setup && d->child_setup(d->child_arg) != 0)
            _exit(125);
        if (uid && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
            _exit(126);
        execv(d->argv[0], d->argv);
        _exit(127);
    }
    d->pid = pid;
    for (int waited = 0; waited < 5000; waited += 10) {
        if (daemon_ready(d, waited))
            return 0;
        if (!test_daemon_alive(d))
            return -ECHILD;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

bool test_daemon_alive(struct test_daemon *d)
{
    if (d->pid <= 0)
        return false;
    int status;
    pid_t r = waitpid(d->pid, &status, WNOHANG);
    if (r == d->pid) {
        d->pid = -(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) - 1;
        return false;
    }
    return r == 0;
}

static void remove_tree(const char *path)
{
    char *cmd = g_strdup_printf("rm -rf '%s'", path);
    if (system(cmd) != 0)
        g_printerr("could not remove %s\n", path);
    g_free(cmd);
}

int test_daemon_stop(struct test_daemon *d)
{
    test_daemon_kill_wait(d);
    int rc;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int status;
        waitpid(d->pid, &status, 0);
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else {
        rc = -d->pid - 1; /* already reaped by test_daemon_alive */
    }
    if (rc != 0 && d->log) {
        gchar *text = NULL;
        if (g_file_get_contents(d->log, &text, NULL, NULL))
            g_printerr("daemon log:\n%s\n", text);
        g_free(text);
    }
    if (d->inherits)
        close(d->inherit_fd);
    if (d->dir)
        remove_tree(d->dir);
    g_free(d->dir);
    g_free(d->share);
    g_free(d->socket);
    g_free(d->log);
    g_strfreev(d->argv);
    memset(d, 0, sizeof(*d));
    return rc;
}

pid_t test_serving_pid(pid_t pid)
{
    /* In the namespace sandbox the process we started is a monitor; its child serves. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    gchar *text = NULL;
    pid_t child = 0;
    if (g_file_get_contents(path, &text, NULL, NULL))
        child = (pid_t)atoi(text);
    g_free(text);
    return child > 0 ? child : pid;
}

pid_t test_daemon_serving_pid(const struct test_daemon *d)
{
    return test_serving_pid(d->pid);
}

int test_pid_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -errno;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

int test_daemon_fd_count(const struct test_daemon *d)
{
    return test_pid_fd_count(test_daemon_serving_pid(d));
}

long test_pid_status_kib(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    gchar *text = NULL;
    long kib = -1;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        size_t flen = strlen(field);
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
            if (strncmp(l, field, flen) == 0 && l[flen] == ':') {
                kib = strtol(l + flen + 1, NULL, 10);
                break;
            }
    }
    g_free(text);
    return kib;
}

bool test_daemon_log_contains(const struct test_daemon *d, const char *needle)
{
    gchar *text = NULL;
    bool found = false;
    if (g_file_get_contents(d->log, &text, NULL, NULL))
        found = strstr(text, needle) != NULL;
    g_free(text);
    return found;
}

unsigned test_usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return 0;
    return (unsigned)CPU_COUNT(&set);
}

long test_daemon_log_size(const struct test_daemon *d)
{
    struct stat st;
    return d->log && stat(d->log, &st) == 0 ? (long)st.st_size : 0;
}

char *test_daemon_log_since(const struct test_daemon *d, long offset)
{
    gchar *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(d->log, &text, &len, NULL))
        return g_strdup("");
    if (offset < 0 || (gsize)offset > len)
        offset = 0;
    char *tail = g_strdup(text + offset);
    g_free(text);
    return tail;
}

/* True while pid exists and is not a zombie (a child of another process we cannot reap). */
static bool pid_running(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    gchar *text = NULL;
    bool running = false;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        const char *p = strrchr(text, ')'); /* the state follows the command name */
        running = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    }
    g_free(text);
    return running;
}

/* Waits until pid is gone: reaped when it is our child, else until it is a zombie or gone. */
static int wait_gone(struct test_daemon *d, pid_t pid)
{
    for (int waited = 0; waited < 10000; waited++) {
        if (pid == d->pid ? !test_daemon_alive(d) : !pid_running(pid))
            return 0;
        usleep(1000);
    }
    return -ETIMEDOUT;
}

int test_daemon_kill9(struct test_daemon *d)
{
    pid_t pid = test_daemon_serving_pid(d);
    if (pid <= 0)
        return -ESRCH;
    if (kill(pid, SIGKILL) < 0)
        return -errno;
    d->killed = pid;
    return wait_gone(d, pid);
}

struct killer {
    pid_t pid;
    unsigned delay_us;
};

static gpointer killer_main(gpointer data)
{
    struct killer *k = data;
    g_usleep(k->delay_us);
    kill(k->pid, SIGKILL);
    g_free(k);
    return NULL;
}

int test_daemon_kill_after(struct test_daemon *d, unsigned delay_us)
{
    if (d->killer)
        return -EBUSY;
    /* The pid is read now: the thread only sleeps and kills, the caller does the waiting. */
    struct killer *k = g_new(struct killer, 1);
    k->pid = test_daemon_serving_pid(d);
    k->delay_us = delay_us;
    if (k->pid <= 0) {
        g_free(k);
        return -ESRCH;
    }
    d->killed = k->pid;
    d->killer = g_thread_new("killer", killer_main, k);
    return 0;
}

int test_daemon_kill_wait(struct test_daemon *d)
{
    if (!d->killer)
        return 0;
    g_thread_join(d->killer);
    d->killer = NULL;
    return wait_gone(d, d->killed);
}

int test_daemon_restart(struct test_daemon *d)
{
    pid_t old = d->killed;
    for (int waited = 0; waited < 5000; waited++) {
        if (!test_daemon_alive(d)) {
            d->restarts++;
            return start_argv(d);
        }
        /* The process we started lives on: a monitor that starts a new serving process. */
        pid_t now = test_daemon_serving_pid(d);
        if (now != d->pid && now != old && pid_running(now))
            return 0;
        usleep(1000);
    }
    return -ETIMEDOUT;
}
