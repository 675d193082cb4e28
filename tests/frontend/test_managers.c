/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon as service managers start it (issue 17): the systemd units of contrib/systemd
 * (their ExecStart= line expanded as systemd expands it, with and without socket activation),
 * and the exact command lines of Kata Containers (a socket inherited as fd 3, --syslog). Each
 * daemon must start and serve a FUSE INIT and a LOOKUP from the test front-end.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

/* ---- systemd's unit syntax, as far as our units use it ---- */

/* The values of key in [section], in order (systemd allows a key more than once). */
static GPtrArray *unit_values(const char *path, const char *section, const char *key)
{
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_free(text);
    GPtrArray *values = g_ptr_array_new_with_free_func(g_free);
    bool in_section = false;
    size_t klen = strlen(key);
    for (size_t i = 0; lines[i]; i++) {
        const char *l = lines[i];
        g_assert_false(g_str_has_suffix(l, "\\")); /* no continuation lines: not parsed here */
        if (l[0] == '[')
            in_section =
                strncmp(l + 1, section, strlen(section)) == 0 && l[1 + strlen(section)] == ']';
        else if (in_section && strncmp(l, key, klen) == 0 && l[klen] == '=')
            g_ptr_array_add(values, g_strdup(l + klen + 1));
    }
    return values;
}

/* The one value of key in [section]; the test fails if there is none or more. */
static gchar *unit_value(const char *path, const char *section, const char *key)
{
    GPtrArray *v = unit_values(path, section, key);
    g_test_message("%s: [%s] %s: %u values", path, section, key, v->len);
    g_assert_cmpuint(v->len, ==, 1);
    gchar *value = g_strdup(v->pdata[0]);
    g_ptr_array_free(v, TRUE);
    return value;
}

/* systemd's specifiers: %i and %I the instance (plain names here), %% a '%'. Any other one
 * fails the test: this expander would not know its value. */
static gchar *expand_specifiers(const char *s, const char *instance)
{
    GString *out = g_string_new(NULL);
    for (const char *p = s; *p; p++) {
        if (*p != '%') {
            g_string_append_c(out, *p);
            continue;
        }
        p++;
        if (*p == 'i' || *p == 'I')
            g_string_append(out, instance);
        else if (*p == '%')
            g_string_append_c(out, '%');
        else
            g_error("unit uses specifier %%%c, unknown to this test", *p);
    }
    return g_string_free(out, FALSE);
}

/* An EnvironmentFile=: KEY=VALUE lines, '#' comments, a value in double quotes unquoted. */
static void read_env_file(GHashTable *env, const char *path)
{
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_free(text);
    for (size_t i = 0; lines[i]; i++) {
        gchar *l = g_strstrip(lines[i]);
        char *eq = strchr(l, '=');
        if (!*l || *l == '#' || *l == ';' || !eq)
            continue;
        *eq = '\0';
        gchar *value = g_strstrip(eq + 1);
        size_t n = strlen(value);
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
            value[n - 1] = '\0';
            value++;
        }
        g_hash_table_insert(env, g_strdup(g_strstrip(l)), g_strdup(value));
    }
}

/*
 * An ExecStart= line as systemd runs it (systemd.service(5), "Command lines"): words split at
 * spaces; a word that is exactly $NAME becomes the variable's words (none if unset or empty);
 * ${NAME} inside a word is replaced by the whole value. Quotes, prefixes (-@:+!) and other
 * '$' forms are not used by our units; the test fails if one shows up.
 */
static GPtrArray *expand_exec(const char *line, GHashTable *env)
{
    g_assert_null(strpbrk(line, "\"'\\"));
    g_assert_null(strchr("-@:+!", line[0]));
    g_auto(GStrv) words = g_strsplit_set(line, " \t", -1);
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; words[i]; i++) {
        const char *w = words[i];
        if (!*w)
            continue;
        if (w[0] == '$' && w[1] != '{') {
            const char *v = g_hash_table_lookup(env, w + 1);
            g_auto(GStrv) split = g_strsplit_set(v ? v : "", " \t", -1);
            for (size_t k = 0; split[k]; k++)
                if (*split[k])
                    g_ptr_array_add(argv, g_strdup(split[k]));
            continue;
        }
        GString *out = g_string_new(NULL);
        for (const char *p = w; *p;) {
            if (p[0] == '$' && p[1] == '{') {
                const char *end = strchr(p, '}');
                g_assert_nonnull(end);
                g_autofree gchar *name = g_strndup(p + 2, (gsize)(end - p - 2));
                const char *v = g_hash_table_lookup(env, name);
                g_string_append(out, v ? v : "");
                p = end + 1;
            } else {
                g_assert_cmpint(*p, !=, '$');
                g_string_append_c(out, *p++);
            }
        }
        g_ptr_array_add(argv, g_string_free(out, FALSE));
    }
    return argv;
}

/*
 * The command virtiofsd@INSTANCE.service runs, with env_file standing in for
 * /etc/virtiofsd/INSTANCE.conf (checked to be the file the unit names): Environment= first,
 * then the file, as systemd orders them. The installed binary is replaced by the one under
 * test (after checking the unit names a virtiofsd). NULL-terminated.
 */
static GPtrArray *service_command(const char *instance, const char *env_file)
{
    g_autoptr(GHashTable) env = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GPtrArray *assigns = unit_values(SYSTEMD_SERVICE, "Service", "Environment");
    for (unsigned i = 0; i < assigns->len; i++) {
        g_autofree gchar *a = expand_specifiers(assigns->pdata[i], instance);
        char *eq = strchr(a, '=');
        g_assert_nonnull(eq);
        *eq = '\0';
        g_hash_table_insert(env, g_strdup(a), g_strdup(eq + 1));
    }
    g_ptr_array_free(assigns, TRUE);
    g_autofree gchar *file_spec = unit_value(SYSTEMD_SERVICE, "Service", "EnvironmentFile");
    g_autofree gchar *file = expand_specifiers(file_spec, instance);
    g_autofree gchar *expected_file = g_strdup_printf("/etc/virtiofsd/%s.conf", instance);
    g_assert_cmpstr(file, ==, expected_file);
    read_env_file(env, env_file);
    g_autofree gchar *exec_spec = unit_value(SYSTEMD_SERVICE, "Service", "ExecStart");
    g_autofree gchar *exec = expand_specifiers(exec_spec, instance);
    GPtrArray *argv = expand_exec(exec, env);
    g_assert_cmpuint(argv->len, >, 0);
    g_assert_true(g_path_is_absolute(argv->pdata[0]));
    g_assert_true(g_str_has_suffix(argv->pdata[0], "/virtiofsd"));
    g_free(argv->pdata[0]);
    argv->pdata[0] = g_strdup(test_daemon_path());
    g_ptr_array_add(argv, NULL);
    return argv;
}

/* The default socket path the service's Environment= gives INSTANCE. */
static gchar *service_default_socket(const char *instance)
{
    GPtrArray *assigns = unit_values(SYSTEMD_SERVICE, "Service", "Environment");
    gchar *path = NULL;
    for (unsigned i = 0; i < assigns->len; i++)
        if (g_str_has_prefix(assigns->pdata[i], "SOCKET_PATH="))
            path = expand_specifiers((char *)assigns->pdata[i] + strlen("SOCKET_PATH="), instance);
    g_ptr_array_free(assigns, TRUE);
    g_assert_nonnull(path);
    return path;
}

/* Options every daemon here gets in sanitizer builds (see test_daemon_start_as()). */
static const char *sanitizer_options(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return " --sandbox=none --seccomp=none";
#else
    return "";
#endif
}

static void add_sanitizer_words(GPtrArray *argv)
{
    g_auto(GStrv) words = g_strsplit(sanitizer_options(), " ", -1);
    for (size_t i = 0; words[i]; i++)
        if (*words[i])
            g_ptr_array_add(argv, g_strdup(words[i]));
}

/* ---- serving ---- */

#define FLAG_POSIX_LOCKS ((uint64_t)FUSE_POSIX_LOCKS)
#define FLAG_FLOCK_LOCKS ((uint64_t)FUSE_FLOCK_LOCKS)
#define FLAG_SUBMOUNTS   ((uint64_t)FUSE_SUBMOUNTS)

struct served {
    pid_t serving_pid;     /* the daemon's serving process (the sandbox's child) */
    uint64_t init_flags;   /* what INIT agreed, of those offered */
    uint64_t entry_valid;  /* the LOOKUP's entry timeout (s): the cache mode */
    uint64_t lookup_inode; /* the host inode number of the file looked up */
};

/* A front-end session on d->socket: INIT offering the lock and submount flags, LOOKUP of a
 * file made in the share just before. */
static void serve_session(struct test_daemon *d, struct served *s)
{
    g_autofree gchar *file = g_build_filename(d->share, "hello", NULL);
    g_assert_true(g_file_set_contents(file, "hello", -1, NULL));
    struct stat st;
    g_assert_cmpint(stat(file, &st), ==, 0);
    struct fe_config cfg = {.socket_path = d->socket};
    struct fe *fe = NULL;
    /* Not fe_open_retry: on a listening socket nobody serves (a daemon that made its own
     * instead of taking the inherited one) each attempt waits 5 s for an answer, and it
     * would try for hours. Quick failures (refused, or turned away by a daemon still
     * resetting after the last session) are retried for up to 10 s. */
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    int ret;
    while ((ret = fe_open(&cfg, &fe)) < 0 && ret != -ETIMEDOUT && g_get_monotonic_time() < deadline)
        usleep(10000);
    g_assert_cmpint(ret, ==, 0);
    s->serving_pid = test_daemon_serving_pid(d);
    struct fuse_init_out out;
    g_assert_cmpint(
        fe_fuse_init_flags(fe, FLAG_POSIX_LOCKS | FLAG_FLOCK_LOCKS | FLAG_SUBMOUNTS, &out), ==, 0);
    s->init_flags = ((uint64_t)out.flags2 << 32 | out.flags) &
                    (FLAG_POSIX_LOCKS | FLAG_FLOCK_LOCKS | FLAG_SUBMOUNTS);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "hello", &e), ==, 0);
    s->entry_valid = e.entry_valid;
    s->lookup_inode = e.attr.ino;
    g_assert_cmpuint(e.attr.ino, ==, st.st_ino);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "absent", &e), ==, -ENOENT);
    fe_close(fe);
}

/* True while pid exists and is not a zombie. */
static bool pid_alive(pid_t pid)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree gchar *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return false;
    const char *p = strrchr(text, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/*
 * Stops the daemon as its manager does, with sig to the pid it started; or finds that it
 * ended already with its front-end's session, which it must have done cleanly (exit 0).
 * Either way nothing of it may be left (its serving process included). Returns its exit
 * status (128 + signal when killed). The temp dir stays until test_daemon_stop.
 */
static int stop_as_manager(struct test_daemon *d, pid_t serving, int sig)
{
    int rc;
    if (test_daemon_alive(d)) {
        g_assert_cmpint(kill(d->pid, sig), ==, 0);
        int status;
        g_assert_cmpint(waitpid(d->pid, &status, 0), ==, d->pid);
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else {
        rc = -d->pid - 1; /* reaped by test_daemon_alive */
        g_assert_cmpint(rc, ==, 0);
    }
    d->pid = -1; /* test_daemon_stop: nothing to stop, status 0 */
    for (int i = 0; i < 500 && pid_alive(serving); i++)
        usleep(10000);
    g_assert_false(pid_alive(serving));
    return rc;
}

/* A share whose name needs a whole word of its own: a space and a comma. */
static void use_awkward_share(struct test_daemon *d)
{
    gchar *share = g_build_filename(d->dir, "shared dir,1", NULL);
    g_assert_cmpint(mkdir(share, 0755), ==, 0);
    g_free(d->share);
    d->share = share;
}

static gchar *write_conf(const struct test_daemon *d, const char *body)
{
    gchar *path = g_build_filename(d->dir, "instance.conf", NULL);
    g_assert_true(g_file_set_contents(path, body, -1, NULL));
    return path;
}

/* ---- the systemd units ---- */

/* systemd-analyze verify accepts both units (as instances, the binary under test in
 * ExecStart=): no unknown key, no bad value. Skipped without systemd-analyze. */
static void test_units_verify(void)
{
    g_autofree gchar *analyze = g_find_program_in_path("systemd-analyze");
    if (!analyze) {
        g_test_skip("no systemd-analyze");
        return;
    }
    g_autofree gchar *dir = g_dir_make_tmp("vfs-units-XXXXXX", NULL);
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(SYSTEMD_SERVICE, &text, NULL, NULL));
    g_autofree gchar *exec = unit_value(SYSTEMD_SERVICE, "Service", "ExecStart");
    g_auto(GStrv) exec_words = g_strsplit(exec, " ", 2);
    GString *service = g_string_new(text);
    g_string_replace(service, exec_words[0], test_daemon_path(), 1);
    g_free(text);
    g_autofree gchar *service_path = g_build_filename(dir, "virtiofsd@verify.service", NULL);
    g_autofree gchar *socket_path = g_build_filename(dir, "virtiofsd@verify.socket", NULL);
    g_assert_true(g_file_set_contents(service_path, service->str, -1, NULL));
    g_string_free(service, TRUE);
    g_assert_true(g_file_get_contents(SYSTEMD_SOCKET, &text, NULL, NULL));
    g_assert_true(g_file_set_contents(socket_path, text, -1, NULL));
    g_free(text);
    const char *argv[] = {analyze, "verify", service_path, socket_path, NULL};
    gchar *out = NULL, *err = NULL;
    int status = -1;
    g_assert_true(g_spawn_sync(dir, (gchar **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, NULL));
    g_test_message("systemd-analyze verify: %s%s", out, err);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    /* It reports a bad line and goes on (exit status 0): nothing about ours may be said. */
    g_assert_null(strstr(out, "virtiofsd@"));
    g_assert_null(strstr(err, "virtiofsd@"));
    g_free(out), g_free(err);
    unlink(service_path), unlink(socket_path), rmdir(dir);
}

/*
 * virtiofsd@web.service as systemd runs it, with /etc/virtiofsd/web.conf naming a share
 * whose path has a space and a comma, and options: the daemon makes the socket, serves, and
 * on SIGTERM (KillMode=mixed: the main process only) exits 0 and removes the socket.
 */
static void test_service_execstart(void)
{
    struct test_daemon d;
    g_assert_cmpint(test_daemon_prepare(&d), ==, 0);
    use_awkward_share(&d);
    g_autofree gchar *body = g_strdup_printf("# test\nSHARED_DIR=%s\nSOCKET_PATH=%s\n"
                                             "VIRTIOFSD_OPTIONS=\"--cache=never  --xattr "
                                             "--log-level=debug%s\"\n",
                                             d.share, d.socket, sanitizer_options());
    g_autofree gchar *conf = write_conf(&d, body);
    GPtrArray *argv = service_command("web", conf);
    g_autofree gchar *shared_word = g_strdup_printf("--shared-dir=%s", d.share);
    bool found = false;
    for (unsigned i = 0; i + 1 < argv->len; i++)
        found |= strcmp(argv->pdata[i], shared_word) == 0;
    g_assert_true(found); /* one word, space and comma included */
    g_assert_cmpint(test_daemon_start_argv(&d, (const char *const *)argv->pdata), ==, 0);
    g_ptr_array_free(argv, TRUE);
    struct served s;
    serve_session(&d, &s);
    g_assert_cmpuint(s.entry_valid, ==, 0); /* --cache=never from VIRTIOFSD_OPTIONS */
    g_autofree gchar *line = g_strdup_printf("serving %s on %s", d.share, d.socket);
    g_assert_true(test_daemon_log_contains(&d, line));
    g_autofree gchar *sock = g_strdup(d.socket);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
    g_assert_cmpint(access(sock, F_OK), !=, 0);
    /* The unit's default socket is where the .socket unit listens. */
    g_autofree gchar *dflt = service_default_socket("web");
    g_assert_cmpstr(dflt, ==, "/run/virtiofsd/web.sock");
}

/*
 * Socket activation: virtiofsd@web.socket listens where the service's default socket is, and
 * the service's command line, run with that socket as fd 3 and LISTEN_PID/LISTEN_FDS, serves
 * it without making its --socket-path; the socket is systemd's: still there after the
 * daemon's exit. Then the same with only --fd=3 (what a unit without LISTEN_* handling
 * would write).
 */
static void test_socket_activation(void)
{
    g_autofree gchar *listen_spec = unit_value(SYSTEMD_SOCKET, "Socket", "ListenStream");
    g_autofree gchar *listen = expand_specifiers(listen_spec, "web");
    g_autofree gchar *dflt = service_default_socket("web");
    g_assert_cmpstr(listen, ==, dflt);
    GPtrArray *accept = unit_values(SYSTEMD_SOCKET, "Socket", "Accept");
    g_assert_cmpuint(accept->len, ==, 0); /* Accept=no: one daemon gets the listening socket */
    g_ptr_array_free(accept, TRUE);

    for (int plain_fd = 0; plain_fd < 2; plain_fd++) {
        struct test_daemon d;
        g_assert_cmpint(test_daemon_prepare(&d), ==, 0);
        g_autofree gchar *unused = g_build_filename(d.dir, "not-made.sock", NULL);
        g_autofree gchar *body = g_strdup_printf(
            "SHARED_DIR=%s\nSOCKET_PATH=%s\nVIRTIOFSD_OPTIONS=--log-level=debug%s\n", d.share,
            unused, sanitizer_options());
        g_autofree gchar *conf = write_conf(&d, body);
        GPtrArray *argv = service_command("web", conf);
        if (plain_fd) {
            g_autofree gchar *sock_word = g_strdup_printf("--socket-path=%s", unused);
            for (unsigned i = 0; i + 1 < argv->len; i++)
                if (strcmp(argv->pdata[i], sock_word) == 0) {
                    g_free(argv->pdata[i]);
                    argv->pdata[i] = g_strdup("--fd=3");
                }
        }
        g_assert_cmpint(
            test_daemon_start_inherited(&d, (const char *const *)argv->pdata, 3, !plain_fd), ==, 0);
        g_ptr_array_free(argv, TRUE);
        struct served s;
        /* One session: whether the daemon then waits for the next or ends (and systemd
         * starts it again on the next connection) is the --fd lifecycle's choice. */
        serve_session(&d, &s);
        g_assert_cmpuint(s.entry_valid, ==, 1); /* --cache=auto, the default */
        g_autofree gchar *line = g_strdup_printf("serving %s on --fd=3%s", d.share,
                                                 plain_fd ? "" : " (systemd socket activation)");
        g_assert_true(test_daemon_log_contains(&d, line));
        g_assert_cmpint(access(unused, F_OK), !=, 0);
        g_autofree gchar *unused_pid = g_strconcat(unused, ".pid", NULL);
        g_assert_cmpint(access(unused_pid, F_OK), !=, 0);
        /* Stopped as systemd stops it; the socket file stays the manager's. */
        g_assert_cmpint(stop_as_manager(&d, s.serving_pid, SIGTERM), ==, 0);
        g_assert_cmpint(access(d.socket, F_OK), ==, 0);
        test_daemon_stop(&d);
    }
}

/* ---- Kata Containers ---- */

/* Its words with @SHARE@ and @SOCK@ replaced by d's, the binary first (NULL-terminated). */
static GPtrArray *kata_argv(const struct test_daemon *d, const char *const *words)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(test_daemon_path()));
    for (const char *const *w = words; *w; w++) {
        GString *word = g_string_new(*w);
        g_string_replace(word, "@SHARE@", d->share, 0);
        g_string_replace(word, "@SOCK@", d->socket, 0);
        g_ptr_array_add(argv, g_string_free(word, FALSE));
    }
    add_sanitizer_words(argv);
    g_ptr_array_add(argv, NULL);
    return argv;
}

/* Kata stops its virtiofsd with SIGKILL to the pid it started: nothing of it may be left. */
static void kata_stop(struct test_daemon *d, const struct served *s)
{
    stop_as_manager(d, s->serving_pid, SIGKILL);
    test_daemon_stop(d);
}

struct kata_case {
    const char *name;
    const char *words[16];
    bool inherit_fd3; /* the Go runtime: the socket as fd 3 (cmd.ExtraFiles) */
    uint64_t flags;   /* INIT flags expected (of posix, flock, submounts) */
    uint64_t entry_valid;
};

static void run_kata(const struct kata_case *c)
{
    g_test_message("%s", c->name);
    struct test_daemon d;
    g_assert_cmpint(test_daemon_prepare(&d), ==, 0);
    GPtrArray *argv = kata_argv(&d, c->words);
    g_autofree gchar *line = g_strjoinv(" ", (gchar **)argv->pdata);
    g_test_message("%s", line);
    int ret = c->inherit_fd3
                  ? test_daemon_start_inherited(&d, (const char *const *)argv->pdata, 3, false)
                  : test_daemon_start_argv(&d, (const char *const *)argv->pdata);
    g_ptr_array_free(argv, TRUE);
    g_assert_cmpint(ret, ==, 0);
    struct served s;
    serve_session(&d, &s);
    g_assert_cmphex(s.init_flags, ==, c->flags);
    g_assert_cmpuint(s.entry_valid, ==, c->entry_valid);
    kata_stop(&d, &s);
}

/*
 * The Go runtime's line (src/runtime/virtcontainers/virtiofsd.go) with the default
 * virtio_fs_extra_args (--thread-pool-size=1 --announce-submounts), for each
 * virtio_fs_cache; the socket inherited as fd 3.
 */
static void test_kata_go_runtime(void)
{
    static const struct {
        const char *mode;
        uint64_t entry_valid;
    } modes[] = {{"auto", 1}, {"always", 86400}, {"metadata", 86400}, {"never", 0}};
    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        g_autofree gchar *cache = g_strdup_printf("--cache=%s", modes[i].mode);
        struct kata_case c = {.name = modes[i].mode,
                              .words = {"--syslog", cache, "--shared-dir=@SHARE@", "--fd=3",
                                        "--thread-pool-size=1", "--announce-submounts"},
                              .inherit_fd3 = true,
                              .flags = FLAG_POSIX_LOCKS | FLAG_FLOCK_LOCKS | FLAG_SUBMOUNTS,
                              .entry_valid = modes[i].entry_valid};
        run_kata(&c);
    }
}

/* Kata before 3.2 (-o forms, no_posix_lock, -f), and runtime-rs (its own socket, values as
 * separate words, -o announce_submounts, --xattr). */
static void test_kata_other_lines(void)
{
    static const struct kata_case cases[] = {
        {"kata 2.x",
         {"--syslog", "-o", "cache=none", "-o", "no_posix_lock", "-o", "source=@SHARE@", "--fd=3",
          "-f", "--thread-pool-size=1", "-o", "announce_submounts"},
         true,
         FLAG_FLOCK_LOCKS | FLAG_SUBMOUNTS,
         0},
        {"kata 2.x, debug and file handles",
         {"--syslog", "-o", "cache=auto", "-o", "no_posix_lock", "-o", "source=@SHARE@", "--fd=3",
          "--inode-file-handles=prefer", "-o", "log_level=debug"},
         true,
         FLAG_FLOCK_LOCKS,
         1},
        {"runtime-rs",
         {"--socket-path", "@SOCK@", "--shared-dir", "@SHARE@", "--cache", "auto",
          "--thread-pool-size=1", "-o", "announce_submounts", "--xattr"},
         false,
         FLAG_POSIX_LOCKS | FLAG_FLOCK_LOCKS | FLAG_SUBMOUNTS,
         1},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
        run_kata(&cases[i]);
}

/* ---- --syslog ---- */

/* The child's /dev: a private mount namespace where /dev is the test's directory (holding
 * its /dev/log socket, or nothing). */
static int private_dev(void *arg)
{
    const char *dev = arg;
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(dev, "/dev", NULL, MS_BIND, NULL) < 0)
        return 1;
    return 0;
}

static bool can_make_mount_namespace(void)
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0)
        _exit(unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0
                  ? 0
                  : 1);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Datagrams received on fd within timeout_ms, or until one contains until. */
static GString *receive_syslog(int fd, GString *got, const char *until, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && !strstr(got->str, until); waited += 10) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        char buf[2048];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            g_string_append_printf(got, "%s\n", buf);
        }
    }
    return got;
}

/*
 * Kata's --syslog line (plus a deprecated option, for a warning of the command line's own)
 * with a /dev/log of the test's: the start-up line and the warning arrive there as RFC 3164
 * datagrams of facility daemon (info <30>, warning <28>) under the pid Kata started, and
 * nothing on stderr. Without /dev/log: a warning saying so, and everything on stderr in the
 * log's format.
 */
static void test_kata_syslog(void)
{
    if (geteuid() != 0 || !can_make_mount_namespace()) {
        g_test_skip("needs root and mount namespaces");
        return;
    }
    for (int with_log = 1; with_log >= 0; with_log--) {
        struct test_daemon d;
        g_assert_cmpint(test_daemon_prepare(&d), ==, 0);
        g_autofree gchar *dev = g_build_filename(d.dir, "dev", NULL);
        g_assert_cmpint(mkdir(dev, 0755), ==, 0);
        int log_fd = -1;
        if (with_log) {
            log_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            struct sockaddr_un a = {.sun_family = AF_UNIX};
            g_snprintf(a.sun_path, sizeof(a.sun_path), "%s/log", dev);
            g_assert_cmpint(bind(log_fd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
        }
        d.child_setup = private_dev;
        d.child_arg = dev;
        const char *words[] = {"--syslog",
                               "--cache=auto",
                               "--shared-dir=@SHARE@",
                               "--fd=3",
                               "--thread-pool-size=1",
                               "--announce-submounts",
                               "--inode-file-handles=fallback",
                               NULL};
        GPtrArray *argv = kata_argv(&d, words);
        g_assert_cmpint(test_daemon_start_inherited(&d, (const char *const *)argv->pdata, 3, false),
                        ==, 0);
        g_ptr_array_free(argv, TRUE);
        struct served s;
        serve_session(&d, &s);
        g_autofree gchar *serving = g_strdup_printf("serving %s on --fd=3", d.share);
        g_autofree gchar *stderr_text = test_daemon_log_since(&d, 0);
        if (with_log) {
            GString *got = receive_syslog(log_fd, g_string_new(NULL), serving, 5000);
            g_test_message("syslog:\n%s", got->str);
            g_autofree gchar *info = g_strdup_printf("virtiofsd[%d]: %s", (int)d.pid, serving);
            g_autofree gchar *warn = g_strdup_printf(
                "virtiofsd[%d]: --inode-file-handles=fallback is deprecated", (int)d.pid);
            bool info_found = false, warn_found = false;
            g_auto(GStrv) msgs = g_strsplit(got->str, "\n", -1);
            for (size_t i = 0; msgs[i]; i++) {
                info_found |= g_str_has_prefix(msgs[i], "<30>") && strstr(msgs[i], info);
                warn_found |= g_str_has_prefix(msgs[i], "<28>") && strstr(msgs[i], warn);
            }
            g_assert_true(info_found);
            g_assert_true(warn_found);
            g_string_free(got, TRUE);
            g_test_message("stderr:\n%s", stderr_text);
            g_assert_null(strstr(stderr_text, "serving"));
            g_assert_null(strstr(stderr_text, "fallback"));
            close(log_fd);
        } else {
            g_test_message("stderr:\n%s", stderr_text);
            g_assert_true(g_regex_match_simple(
                "^\\[[0-9T:.-]+Z warn virtiofsd\\] --syslog: cannot reach /dev/log", stderr_text,
                G_REGEX_MULTILINE, 0));
            g_assert_true(g_regex_match_simple(
                "^\\[[0-9T:.-]+Z warn virtiofsd\\] --inode-file-handles=fallback is deprecated",
                stderr_text, G_REGEX_MULTILINE, 0));
            g_assert_true(g_regex_match_simple("^\\[[0-9T:.-]+Z info virtiofsd\\] serving ",
                                               stderr_text, G_REGEX_MULTILINE, 0));
            g_assert_null(strstr(stderr_text, "virtiofsd: warning"));
        }
        kata_stop(&d, &s);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/systemd/units-verify", test_units_verify);
    g_test_add_func("/systemd/service-execstart", test_service_execstart);
    g_test_add_func("/systemd/socket-activation", test_socket_activation);
    g_test_add_func("/kata/go-runtime", test_kata_go_runtime);
    g_test_add_func("/kata/other-lines", test_kata_other_lines);
    g_test_add_func("/kata/syslog", test_kata_syslog);
    return g_test_run();
}
