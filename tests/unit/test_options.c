/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: the Rust virtiofsd's long options, both value forms, and -o compat. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "options.h"

static enum options_result parse(struct options *o, const char *line)
{
    gchar **argv = NULL;
    gint argc = 0;
    gchar *full = g_strconcat("virtiofsd ", line, NULL);
    g_assert_true(g_shell_parse_argv(full, &argc, &argv, NULL));
    enum options_result r = options_parse(argc, argv, o);
    g_strfreev(argv);
    g_free(full);
    return r;
}

static void test_defaults_and_issue_command_line(void)
{
    struct options o;
    g_assert_cmpint(parse(&o, "--log-level error --seccomp none --cache=always "
                              "--socket-path=/run/x.sock --shared-dir=/srv/rootfs"),
                    ==, OPTIONS_OK);
    g_assert_cmpstr(o.socket_path, ==, "/run/x.sock");
    g_assert_cmpstr(o.pt.shared_dir, ==, "/srv/rootfs");
    g_assert_cmpint(o.pt.cache, ==, CACHE_ALWAYS);
    g_assert_cmpint(o.seccomp, ==, SECCOMP_NONE);
    g_assert_cmpint(o.log_level, ==, LOG_LVL_ERROR);
    g_assert_cmpint(o.sandbox, ==, SANDBOX_NAMESPACE); /* default */
    g_assert_true(o.pt.readdirplus);                   /* default */
    g_assert_false(o.pt.xattr);
    g_assert_cmpint(o.fd, ==, -1);
    options_free(&o);
}

static void test_compat_forms(void)
{
    struct options o;
    g_assert_cmpint(parse(&o, "--socket=/s -o source=/d,cache=none,xattr,no_readdirplus,"
                              "writeback,sandbox=chroot,announce_submounts,flock,timeout=5 -d -f"),
                    ==, OPTIONS_OK);
    g_assert_cmpstr(o.socket_path, ==, "/s");
    g_assert_cmpstr(o.pt.shared_dir, ==, "/d");
    g_assert_cmpint(o.pt.cache, ==, CACHE_NEVER);
    g_assert_true(o.pt.xattr);
    g_assert_false(o.pt.readdirplus);
    g_assert_true(o.pt.writeback);
    g_assert_cmpint(o.sandbox, ==, SANDBOX_CHROOT);
    g_assert_true(o.pt.announce_submounts);
    g_assert_cmpint(o.log_level, ==, LOG_LVL_DEBUG);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--fd 3 --shared-dir /d -o no_xattr --xattr -o no_xattr"), ==,
                    OPTIONS_OK);
    g_assert_cmpint(o.fd, ==, 3);
    g_assert_false(o.pt.xattr); /* the last word wins */
    options_free(&o);
}

/* libvirt escapes a comma in -o source=DIR as ",,": the whole path is served, never a prefix. */
static void test_compat_escaped_commas(void)
{
    struct options o;
    g_assert_cmpint(parse(&o, "--fd=3 -o source=/x/sha,,re,cache=always,sandbox=chroot,xattr,"
                              "flock,no_posix_lock --thread-pool-size=2 -d"),
                    ==, OPTIONS_OK);
    g_assert_cmpstr(o.pt.shared_dir, ==, "/x/sha,re");
    g_assert_cmpint(o.pt.cache, ==, CACHE_ALWAYS);
    g_assert_cmpint(o.sandbox, ==, SANDBOX_CHROOT);
    g_assert_true(o.pt.xattr);
    g_assert_cmpuint(o.thread_pool_size, ==, 2);
    options_free(&o);
    /* ",,," is a literal comma then a separator; a trailing ",," ends the item with a comma. */
    g_assert_cmpint(parse(&o, "--socket-path=/s -o source=/a,,,,b,,,xattr,,"), ==, OPTIONS_ERROR);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--socket-path=/s -o source=/a,,,,b,,,xattr"), ==, OPTIONS_OK);
    g_assert_cmpstr(o.pt.shared_dir, ==, "/a,,b,");
    g_assert_true(o.pt.xattr);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--socket-path=/s -o ,source=/d,,,xattr,"), ==, OPTIONS_OK);
    g_assert_cmpstr(o.pt.shared_dir, ==, "/d,");
    options_free(&o);
    /* Unescaped, the tail of the path is an unknown key: a usage error, not /x/sha served. */
    g_assert_cmpint(parse(&o, "--fd=3 -o source=/x/sha,re"), ==, OPTIONS_ERROR);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d -o no_such_key"), ==,
                    OPTIONS_ERROR);
    options_free(&o);
}

static void test_id_maps_and_queues(void)
{
    struct options o;
    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d --uid-map=:0:1000:1: "
                              "--uid-map :1:100001:65535: --gid-map=:0:1000:1: "
                              "--num-request-queues=4 --queue-poll-us=0 --preserve-noatime"),
                    ==, OPTIONS_OK);
    g_assert_cmpuint(o.n_uid_map, ==, 2);
    g_assert_cmpuint(o.uid_map[1].ns_id, ==, 1);
    g_assert_cmpuint(o.uid_map[1].host_id, ==, 100001);
    g_assert_cmpuint(o.uid_map[1].count, ==, 65535);
    g_assert_cmpuint(o.n_gid_map, ==, 1);
    g_assert_cmpuint(o.num_request_queues, ==, 4);
    g_assert_cmpuint(o.queue_poll_us, ==, 0);
    g_assert_true(o.queue_poll_us_given);
    g_assert_cmpuint(o.queue_threads, ==, 0); /* one per CPU, at most one per queue */
    g_assert_true(o.pt.preserve_noatime);
    options_free(&o);

    /* Defaults: polling 50 us, left to the CPU rule (not "given"); --queue-threads sets. */
    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d --queue-threads=3"), ==,
                    OPTIONS_OK);
    g_assert_cmpuint(o.queue_poll_us, ==, 50);
    g_assert_false(o.queue_poll_us_given);
    g_assert_cmpuint(o.queue_threads, ==, 3);
    options_free(&o);
}

static void test_errors(void)
{
    static const char *const bad[] = {
        "--socket-path=/s", /* no shared dir */
        "--shared-dir=/d",  /* no socket */
        "--socket-path=/s --shared-dir=/d --cache=sometimes",
        "--socket-path=/s --shared-dir=/d --sandbox=jail",
        "--socket-path=/s --shared-dir=/d --seccomp=maybe",
        "--socket-path=/s --shared-dir=/d --log-level=loud",
        "--socket-path=/s --shared-dir=/d --uid-map=0:1000:1",
        "--socket-path=/s --shared-dir=/d --num-request-queues=0",
        "--socket-path=/s --shared-dir=/d --queue-threads=17",
        "--socket-path=/s --shared-dir=/d --queue-threads=many",
        "--socket-path=/s --shared-dir=/d --modcaps=sys_admin",
        "--socket-path=/s --shared-dir=/d --fd=-1",
        "--socket-path=/s --shared-dir=/d -o xattr=yes",
        "--socket-path=/s --shared-dir=/d --no-such-option",
        "--socket-path=/s --shared-dir=/d stray",
        "--socket-path=/s --shared-dir=/d --inode-file-handles=always",
        "--socket-path=/s --shared-dir=/d --inode-file-handles",
        "--socket-path=/s --shared-dir=/d --migration-mode=guess",
        "--socket-path=/s --shared-dir=/d --migration-on-error=ignore",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        struct options o;
        g_test_message("%s", bad[i]);
        g_assert_cmpint(parse(&o, bad[i]), ==, OPTIONS_ERROR);
        options_free(&o);
    }
    struct options o;
    g_assert_cmpint(parse(&o, "--version"), ==, OPTIONS_EXIT);
    options_free(&o);
}

/* The migration options: stored, with the Rust virtiofsd's defaults. */
static void test_migration(void)
{
    struct options o;

    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d"), ==, OPTIONS_OK);
    g_assert_cmpint(o.pt.migration_mode, ==, MIGRATION_FIND_PATHS);
    g_assert_cmpint(o.pt.migration_on_error, ==, MIGRATION_ERROR_ABORT);
    g_assert_false(o.pt.migration_verify_handles);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d --migration-mode=find-paths "
                              "--migration-on-error guest-error --migration-verify-handles "
                              "--migration-confirm-paths"),
                    ==, OPTIONS_OK);
    g_assert_cmpint(o.pt.migration_mode, ==, MIGRATION_FIND_PATHS);
    g_assert_cmpint(o.pt.migration_on_error, ==, MIGRATION_ERROR_GUEST_ERROR);
    g_assert_true(o.pt.migration_verify_handles);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d --migration-on-error=guest-error "
                              "--migration-on-error=abort"),
                    ==, OPTIONS_OK);
    g_assert_cmpint(o.pt.migration_on_error, ==, MIGRATION_ERROR_ABORT);
    options_free(&o);
    g_assert_cmpint(parse(&o, "--socket-path=/s --shared-dir=/d --migration-mode file-handles"), ==,
                    OPTIONS_OK);
    g_assert_cmpint(o.pt.migration_mode, ==, MIGRATION_FILE_HANDLES);
    options_free(&o);
}

/* --inode-file-handles: both value forms, Rust's "fallback" alias, and our default. */
static void test_inode_file_handles(void)
{
    static const struct {
        const char *arg;
        enum inode_fh_mode mode;
    } cases[] = {
        {"", FH_AUTO},
        {"--inode-file-handles=never", FH_NEVER},
        {"--inode-file-handles prefer", FH_PREFER},
        {"--inode-file-handles=fallback", FH_PREFER},
        {"--inode-file-handles=mandatory", FH_MANDATORY},
        {"--inode-file-handles=mandatory --inode-file-handles=never", FH_NEVER},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct options o;
        gchar *line = g_strdup_printf("--socket-path=/s --shared-dir=/d %s", cases[i].arg);
        g_assert_cmpint(parse(&o, line), ==, OPTIONS_OK);
        g_assert_cmpint(o.pt.inode_file_handles, ==, cases[i].mode);
        options_free(&o);
        g_free(line);
    }
}

/* Where needle occurs in hay as a whole word: not inside a longer name of letters, digits,
 * '_' or '-' (so --socket is not found in --socket-path, nor xattr in no_xattr). */
static bool has_word(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; (p = strstr(p, needle)); p++) {
        bool starts = p == hay || !(g_ascii_isalnum(p[-1]) || p[-1] == '_' || p[-1] == '-');
        bool ends = !(g_ascii_isalnum(p[n]) || p[n] == '_' || p[n] == '-');
        if (starts && ends)
            return true;
    }
    return false;
}

static gchar *spec_long(const struct option_spec *s)
{
    return s->long_name ? g_strconcat("--", s->long_name, NULL) : NULL;
}

static gchar *spec_short(const struct option_spec *s)
{
    return s->short_name ? g_strdup_printf("-%c", s->short_name) : NULL;
}

/* --help is made from the table: every option and every -o key is in it. */
static void test_help_lists_every_option(void)
{
    char *help = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&help, &size);
    g_assert_nonnull(out);
    options_print_help(out);
    g_assert_cmpint(fclose(out), ==, 0);
    const struct option_spec *s;
    for (size_t i = 0; (s = options_spec(i)); i++) {
        g_autofree gchar *l = spec_long(s), *sh = spec_short(s);
        g_test_message("option %s %s", l ? l : "", sh ? sh : "");
        g_assert_true(l || sh);
        g_assert_true(s->help || (s->flags & OPTION_UNIMPLEMENTED));
        if (l)
            g_assert_true(has_word(help, l));
        if (sh)
            g_assert_true(has_word(help, sh));
    }
    const char *key;
    for (size_t i = 0; (key = options_compat_key(i)); i++) {
        g_test_message("-o %s", key);
        g_assert_true(has_word(help, key));
    }
    g_assert_null(strstr(help, "..."));
    free(help);
}

/* man/virtiofsd.1 from the source tree: G_TEST_SRCDIR under meson test, else where the test
 * was built from (run directly from the build directory). */
static gchar *read_man_page(void)
{
    const char *dir = g_getenv("G_TEST_SRCDIR");
    if (!dir)
        dir = TESTS_SOURCE_DIR;
    g_autofree gchar *path = g_build_filename(dir, "..", "man", "virtiofsd.1", NULL);
    gchar *text = NULL;
    g_autoptr(GError) err = NULL;
    if (!g_file_get_contents(path, &text, NULL, &err))
        g_error("%s", err->message);
    return text;
}

/* A man page line as it reads: without font changes (\fB, \fI, \fR, \fP), "\-" as '-', and
 * without a leading font macro (.B, .BI, .BR, ...) and its argument quotes. */
static gchar *man_plain(const char *line)
{
    GString *out = g_string_new(NULL);
    const char *p = line;
    if (p[0] == '.') {
        while (*p && *p != ' ')
            p++;
    }
    for (; *p; p++) {
        if (p[0] == '\\' && p[1] == 'f' && p[2]) {
            p += 2;
        } else if (p[0] == '\\' && (p[1] == '-' || p[1] == '%' || p[1] == '&')) {
            if (p[1] == '-')
                g_string_append_c(out, '-');
            p++;
        } else if (*p != '"') {
            g_string_append_c(out, *p);
        }
    }
    return g_string_free(out, FALSE);
}

/*
 * Every option of the table has an entry in the man page (is named in the tag line of a .TP
 * paragraph), and every -o key is named in the -o paragraph.
 */
static void test_man_page_documents_every_option(void)
{
    g_autofree gchar *page = read_man_page();
    g_auto(GStrv) lines = g_strsplit(page, "\n", -1);
    GString *tags = g_string_new(NULL), *compat = g_string_new(NULL);
    bool in_compat = false;
    for (size_t i = 0; lines[i]; i++) {
        bool tag = i > 0 && g_str_has_prefix(lines[i - 1], ".TP");
        g_autofree gchar *plain = man_plain(lines[i]);
        if (tag) {
            g_string_append_printf(tags, "%s\n", plain);
            in_compat = g_str_has_prefix(g_strchug(plain), "-o ");
        } else if (g_str_has_prefix(lines[i], ".TP") || g_str_has_prefix(lines[i], ".SH")) {
            in_compat = false;
        } else if (in_compat) {
            g_string_append_printf(compat, "%s\n", plain);
        }
    }
    const struct option_spec *s;
    for (size_t i = 0; (s = options_spec(i)); i++) {
        g_autofree gchar *l = spec_long(s), *sh = spec_short(s);
        g_test_message("option %s %s", l ? l : "", sh ? sh : "");
        if (l)
            g_assert_true(has_word(tags->str, l));
        if (sh)
            g_assert_true(has_word(tags->str, sh));
    }
    g_assert_cmpuint(compat->len, >, 0);
    const char *key;
    for (size_t i = 0; (key = options_compat_key(i)); i++) {
        g_test_message("-o %s", key);
        g_assert_true(has_word(compat->str, key));
    }
    g_string_free(tags, TRUE);
    g_string_free(compat, TRUE);
}

/* ---- The command lines managers generate (issue 17) ---- */

/* options_parse on exactly these words (no shell quoting: a path may hold anything). */
static enum options_result parse_words(struct options *o, const char *const *words)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("virtiofsd"));
    for (const char *const *w = words; *w; w++)
        g_ptr_array_add(argv, g_strdup(*w));
    g_ptr_array_add(argv, NULL);
    /* getopt may permute argv: give it a copy of the pointers, free the strings after. */
    gchar **copy = g_memdup2(argv->pdata, argv->len * sizeof(gchar *));
    enum options_result r = options_parse((int)argv->len - 1, copy, o);
    g_free(copy);
    g_ptr_array_free(argv, TRUE);
    return r;
}

/* What libvirt's virQEMUBuildBufferEscapeComma makes of a path: every ',' doubled. */
static gchar *libvirt_escape(const char *path)
{
    GString *out = g_string_new(NULL);
    for (const char *p = path; *p; p++) {
        if (*p == ',')
            g_string_append_c(out, ',');
        g_string_append_c(out, *p);
    }
    return g_string_free(out, FALSE);
}

/* A libvirt switch: not written, on, off (VIR_TRISTATE_SWITCH_*). */
enum tristate { T_ABSENT, T_ON, T_OFF };

static void add_switch(GString *opts, enum tristate t, const char *on, const char *off)
{
    if (t != T_ABSENT)
        g_string_append_printf(opts, ",%s", t == T_ON ? on : off);
}

/* The daemon's default where libvirt writes nothing: locks on (kept on the host), no xattr. */
static bool switch_value(enum tristate t, bool dflt)
{
    return t == T_ABSENT ? dflt : t == T_ON;
}

/*
 * Every line libvirt 9.0's qemuVirtioFSBuildCommandLine() can write:
 *   --fd=N -o source=DIR[,cache=M][,sandbox=M][,xattr|no_xattr][,flock|no_flock]
 *   [,posix_lock|no_posix_lock] [--thread-pool-size=N] [-d]
 * with DIR escaped (',' -> ",,"), over every combination of the optional parts, and paths
 * with commas (also doubled, leading, trailing), '=' and spaces. Each part must have its
 * effect, and the whole path must be the shared directory.
 */
static void test_libvirt_command_lines(void)
{
    static const char *const paths[] = {
        "/var/lib/libvirt/fs", "/srv/a,b",
        "/srv/a,,b",           "/srv/trailing,",
        "/srv/,lead",          "/srv/x=y,cache=always",
        "/srv/with space",     "/srv/sandbox=none,xattr",
    };
    static const struct {
        const char *word; /* libvirt's virDomainFSCacheMode names ("default" writes none) */
        enum cache_mode mode;
    } caches[] = {{NULL, CACHE_AUTO}, {"none", CACHE_NEVER}, {"always", CACHE_ALWAYS}};
    static const struct {
        const char *word;
        enum sandbox_mode mode;
    } sandboxes[] = {
        {NULL, SANDBOX_NAMESPACE}, {"namespace", SANDBOX_NAMESPACE}, {"chroot", SANDBOX_CHROOT}};
    unsigned lines = 0;
    for (size_t pi = 0; pi < G_N_ELEMENTS(paths); pi++)
        for (size_t ci = 0; ci < G_N_ELEMENTS(caches); ci++)
            for (size_t si = 0; si < G_N_ELEMENTS(sandboxes); si++)
                for (int x = T_ABSENT; x <= T_OFF; x++)
                    for (int fl = T_ABSENT; fl <= T_OFF; fl++)
                        for (int pl = T_ABSENT; pl <= T_OFF; pl++)
                            for (int tail = 0; tail < 4; tail++) {
                                g_autofree gchar *esc = libvirt_escape(paths[pi]);
                                GString *opts = g_string_new("source=");
                                g_string_append(opts, esc);
                                if (caches[ci].word)
                                    g_string_append_printf(opts, ",cache=%s", caches[ci].word);
                                if (sandboxes[si].word)
                                    g_string_append_printf(opts, ",sandbox=%s", sandboxes[si].word);
                                add_switch(opts, x, "xattr", "no_xattr");
                                add_switch(opts, fl, "flock", "no_flock");
                                add_switch(opts, pl, "posix_lock", "no_posix_lock");
                                bool pool = tail & 1, debug = tail & 2;
                                g_autofree gchar *fd = g_strdup_printf("--fd=%zu", 3 + pi);
                                const char *words[6] = {fd, "-o", opts->str};
                                int n = 3;
                                if (pool)
                                    words[n++] = "--thread-pool-size=7";
                                if (debug)
                                    words[n++] = "-d";
                                struct options o;
                                g_assert_cmpint(parse_words(&o, words), ==, OPTIONS_OK);
                                g_assert_cmpstr(o.pt.shared_dir, ==, paths[pi]);
                                g_assert_cmpint(o.fd, ==, (int)(3 + pi));
                                g_assert_null(o.socket_path);
                                g_assert_cmpint(o.pt.cache, ==, caches[ci].mode);
                                g_assert_cmpint(o.sandbox, ==, sandboxes[si].mode);
                                g_assert_cmpint(o.pt.xattr, ==, switch_value(x, false));
                                g_assert_cmpint(o.pt.flock_locks, ==, switch_value(fl, true));
                                g_assert_cmpint(o.pt.posix_locks, ==, switch_value(pl, true));
                                g_assert_cmpuint(o.thread_pool_size, ==, pool ? 7 : 0);
                                g_assert_cmpint(o.log_level, ==,
                                                debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
                                options_free(&o);
                                g_string_free(opts, TRUE);
                                lines++;
                            }
    g_test_message("%u libvirt command lines", lines);
    /* The same path unescaped is never served cut short: the tail is an unknown key or a
     * key of its own, and an unknown one fails the whole line. */
    struct options o;
    const char *cut[] = {"--fd=3", "-o", "source=/srv/a,b", NULL};
    g_assert_cmpint(parse_words(&o, cut), ==, OPTIONS_ERROR);
    options_free(&o);
}

/* What each Kata Containers line must come out as. */
struct kata_expect {
    const char *shared_dir;
    int fd;
    const char *socket_path;
    enum cache_mode cache;
    bool syslog, announce_submounts, xattr, posix_locks;
    unsigned thread_pool_size;
    enum log_level log_level;
    enum inode_fh_mode fh;
};

static void check_kata(const char *const *words, const struct kata_expect *e)
{
    struct options o;
    g_autofree gchar *line = g_strjoinv(" ", (gchar **)words);
    g_test_message("%s", line);
    g_assert_cmpint(parse_words(&o, words), ==, OPTIONS_OK);
    g_assert_cmpstr(o.pt.shared_dir, ==, e->shared_dir);
    g_assert_cmpint(o.fd, ==, e->fd);
    g_assert_cmpstr(o.socket_path, ==, e->socket_path);
    g_assert_cmpint(o.pt.cache, ==, e->cache);
    g_assert_cmpint(o.syslog, ==, e->syslog);
    g_assert_cmpint(o.pt.announce_submounts, ==, e->announce_submounts);
    g_assert_cmpint(o.pt.xattr, ==, e->xattr);
    g_assert_cmpint(o.pt.posix_locks, ==, e->posix_locks);
    g_assert_true(o.pt.flock_locks);
    g_assert_cmpuint(o.thread_pool_size, ==, e->thread_pool_size);
    g_assert_cmpint(o.log_level, ==, e->log_level);
    g_assert_cmpint(o.pt.inode_file_handles, ==, e->fh);
    g_assert_cmpint(o.sandbox, ==, SANDBOX_NAMESPACE);
    options_free(&o);
}

/*
 * Kata Containers' lines. The Go runtime (src/runtime/virtcontainers/virtiofsd.go) writes
 * --syslog --cache=MODE --shared-dir=DIR --fd=3 and appends virtio_fs_extra_args, by
 * default --thread-pool-size=1 --announce-submounts (DEFVIRTIOFSEXTRAARGS); before Kata 3.2
 * it wrote -o cache=, -o no_posix_lock, -o source= (and -f, and --inode-file-handles= for a
 * while), with "-o announce_submounts" as the default extra. runtime-rs
 * (share_virtio_fs_standalone.rs) writes --socket-path S --shared-dir D --cache MODE, its
 * default extras --thread-pool-size=1 -o announce_submounts, and --xattr unless guest
 * SELinux is disabled. The configuration's examples add --log-level=debug, -d and
 * -o log_level=debug.
 */
static void test_kata_command_lines(void)
{
    static const struct {
        const char *mode;
        enum cache_mode cache;
    } modes[] = {{"auto", CACHE_AUTO},
                 {"always", CACHE_ALWAYS},
                 {"metadata", CACHE_METADATA},
                 {"never", CACHE_NEVER}};
    const char *dir = "/run/kata-containers/shared/sandboxes/0123abcd/shared";
    g_autofree gchar *shared = g_strdup_printf("--shared-dir=%s", dir);
    g_autofree gchar *source = g_strdup_printf("source=%s", dir);
    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        g_autofree gchar *cache = g_strdup_printf("--cache=%s", modes[i].mode);
        struct kata_expect e = {.shared_dir = dir,
                                .fd = 3,
                                .cache = modes[i].cache,
                                .syslog = true,
                                .announce_submounts = true,
                                .posix_locks = true,
                                .thread_pool_size = 1,
                                .log_level = LOG_LVL_INFO,
                                .fh = FH_AUTO};
        const char *go[] = {
            "--syslog", cache, shared, "--fd=3", "--thread-pool-size=1", "--announce-submounts",
            NULL};
        check_kata(go, &e);
        const char *go_debug[] = {"--syslog",
                                  cache,
                                  shared,
                                  "--fd=3",
                                  "--thread-pool-size=1",
                                  "--announce-submounts",
                                  "--log-level=debug",
                                  NULL};
        e.log_level = LOG_LVL_DEBUG;
        check_kata(go_debug, &e);
        const char *go_no_extras[] = {"--syslog", cache, shared, "--fd=3", NULL};
        e = (struct kata_expect){.shared_dir = dir,
                                 .fd = 3,
                                 .cache = modes[i].cache,
                                 .syslog = true,
                                 .posix_locks = true,
                                 .log_level = LOG_LVL_INFO,
                                 .fh = FH_AUTO};
        check_kata(go_no_extras, &e);
        /* runtime-rs: the values as separate words, -o announce_submounts, --xattr. */
        const char *rs[] = {"--socket-path",
                            "/run/kata/vhost-fs.sock",
                            "--shared-dir",
                            dir,
                            "--cache",
                            modes[i].mode,
                            "--thread-pool-size=1",
                            "-o",
                            "announce_submounts",
                            "--xattr",
                            NULL};
        e = (struct kata_expect){.shared_dir = dir,
                                 .fd = -1,
                                 .socket_path = "/run/kata/vhost-fs.sock",
                                 .cache = modes[i].cache,
                                 .announce_submounts = true,
                                 .xattr = true,
                                 .posix_locks = true,
                                 .thread_pool_size = 1,
                                 .log_level = LOG_LVL_INFO,
                                 .fh = FH_AUTO};
        check_kata(rs, &e);
    }
    /* Kata 2.x: -o forms ("none" for never then), no_posix_lock, -f, the extras with -o. */
    const char *old[] = {
        "--syslog", "-o", "cache=none",           "-o", "no_posix_lock",      "-o", source,
        "--fd=3",   "-f", "--thread-pool-size=1", "-o", "announce_submounts", NULL};
    struct kata_expect e = {.shared_dir = dir,
                            .fd = 3,
                            .cache = CACHE_NEVER,
                            .syslog = true,
                            .announce_submounts = true,
                            .thread_pool_size = 1,
                            .log_level = LOG_LVL_INFO,
                            .fh = FH_AUTO};
    check_kata(old, &e);
    const char *old_fh[] = {"--syslog",
                            "-o",
                            "cache=auto",
                            "-o",
                            "no_posix_lock",
                            "-o",
                            source,
                            "--fd=3",
                            "--inode-file-handles=prefer",
                            "-o",
                            "log_level=debug",
                            NULL};
    e = (struct kata_expect){.shared_dir = dir,
                             .fd = 3,
                             .cache = CACHE_AUTO,
                             .syslog = true,
                             .thread_pool_size = 0,
                             .log_level = LOG_LVL_DEBUG,
                             .fh = FH_PREFER};
    check_kata(old_fh, &e);
    const char *old_debug[] = {"--syslog", "--cache=auto", shared, "--fd=3", "-d", NULL};
    e = (struct kata_expect){.shared_dir = dir,
                             .fd = 3,
                             .cache = CACHE_AUTO,
                             .syslog = true,
                             .posix_locks = true,
                             .log_level = LOG_LVL_DEBUG,
                             .fh = FH_AUTO};
    check_kata(old_debug, &e);
}

/* The fields a -o key can change, read as a number for the table below. */
enum field {
    F_SHARED_DIR_SET,
    F_CACHE,
    F_XATTR,
    F_XATTRMAP_SET,
    F_POSIX_ACL,
    F_SECURITY_LABEL,
    F_READDIRPLUS,
    F_WRITEBACK,
    F_SANDBOX,
    F_MODCAPS_SET,
    F_ANNOUNCE_SUBMOUNTS,
    F_DIRECT_IO,
    F_LOG_LEVEL,
    F_KILLPRIV_V2,
    F_FLOCK,
    F_POSIX_LOCK,
    F_READONLY,
    F_NOTHING, /* timeout=: accepted, changes nothing */
};

static long field_value(const struct options *o, enum field f)
{
    switch (f) {
    case F_SHARED_DIR_SET:
        return o->pt.shared_dir && strcmp(o->pt.shared_dir, "/other") == 0;
    case F_CACHE:
        return o->pt.cache;
    case F_XATTR:
        return o->pt.xattr;
    case F_XATTRMAP_SET:
        return o->pt.xattrmap != NULL;
    case F_POSIX_ACL:
        return o->pt.posix_acl;
    case F_SECURITY_LABEL:
        return o->pt.security_label;
    case F_READDIRPLUS:
        return o->pt.readdirplus;
    case F_WRITEBACK:
        return o->pt.writeback;
    case F_SANDBOX:
        return o->sandbox;
    case F_MODCAPS_SET:
        return o->modcaps != NULL;
    case F_ANNOUNCE_SUBMOUNTS:
        return o->pt.announce_submounts;
    case F_DIRECT_IO:
        return o->pt.allow_direct_io;
    case F_LOG_LEVEL:
        return o->log_level;
    case F_KILLPRIV_V2:
        return o->pt.killpriv_v2;
    case F_FLOCK:
        return o->pt.flock_locks;
    case F_POSIX_LOCK:
        return o->pt.posix_locks;
    case F_READONLY:
        return o->pt.readonly;
    case F_NOTHING:
        return 0;
    }
    g_assert_not_reached();
}

/*
 * Each -o key's effect: the item, given after a long option that sets the opposite (so that
 * a key doing nothing fails), changes its field to the value. Every key of the table must
 * be here: a new key without a case fails the test.
 */
static void test_compat_key_effects(void)
{
    static const struct {
        const char *key;   /* as in compat_keys[] */
        const char *setup; /* a long option setting the field otherwise ("" if none needed) */
        const char *item;  /* the -o item */
        enum field field;
        long value;
    } cases[] = {
        {"source", "", "source=/other", F_SHARED_DIR_SET, 1},
        {"cache", "--cache=always", "cache=none", F_CACHE, CACHE_NEVER},
        {"cache", "--cache=never", "cache=auto", F_CACHE, CACHE_AUTO},
        {"cache", "--cache=never", "cache=metadata", F_CACHE, CACHE_METADATA},
        {"cache", "--cache=never", "cache=always", F_CACHE, CACHE_ALWAYS},
        {"xattr", "", "xattr", F_XATTR, 1},
        {"no_xattr", "--xattr", "no_xattr", F_XATTR, 0},
        {"xattrmap", "", "xattrmap=:map::user.virtiofs.:", F_XATTRMAP_SET, 1},
        {"posix_acl", "", "posix_acl", F_POSIX_ACL, 1},
        {"no_posix_acl", "--posix-acl", "no_posix_acl", F_POSIX_ACL, 0},
        {"security_label", "", "security_label", F_SECURITY_LABEL, 1},
        {"no_security_label", "--security-label", "no_security_label", F_SECURITY_LABEL, 0},
        {"readdirplus", "--no-readdirplus", "readdirplus", F_READDIRPLUS, 1},
        {"no_readdirplus", "", "no_readdirplus", F_READDIRPLUS, 0},
        {"writeback", "", "writeback", F_WRITEBACK, 1},
        {"no_writeback", "--writeback", "no_writeback", F_WRITEBACK, 0},
        {"sandbox", "--sandbox=none", "sandbox=namespace", F_SANDBOX, SANDBOX_NAMESPACE},
        {"sandbox", "", "sandbox=chroot", F_SANDBOX, SANDBOX_CHROOT},
        {"sandbox", "", "sandbox=none", F_SANDBOX, SANDBOX_NONE},
        {"modcaps", "", "modcaps=+sys_admin:-mknod", F_MODCAPS_SET, 1},
        {"announce_submounts", "--no-announce-submounts", "announce_submounts",
         F_ANNOUNCE_SUBMOUNTS, 1},
        {"allow_direct_io", "", "allow_direct_io", F_DIRECT_IO, 1},
        {"no_allow_direct_io", "--allow-direct-io", "no_allow_direct_io", F_DIRECT_IO, 0},
        {"log_level", "", "log_level=debug", F_LOG_LEVEL, LOG_LVL_DEBUG},
        {"log_level", "", "log_level=err", F_LOG_LEVEL, LOG_LVL_ERROR},
        {"log_level", "", "log_level=warn", F_LOG_LEVEL, LOG_LVL_WARN},
        {"loglevel", "", "loglevel=err", F_LOG_LEVEL, LOG_LVL_ERROR},
        {"loglevel", "--log-level=error", "loglevel=info", F_LOG_LEVEL, LOG_LVL_INFO},
        {"loglevel", "", "loglevel=debug", F_LOG_LEVEL, LOG_LVL_DEBUG},
        {"killpriv_v2", "", "killpriv_v2", F_KILLPRIV_V2, 1},
        {"no_killpriv_v2", "--killpriv-v2", "no_killpriv_v2", F_KILLPRIV_V2, 0},
        {"flock", "", "no_flock,flock", F_FLOCK, 1},
        {"no_flock", "", "no_flock", F_FLOCK, 0},
        {"posix_lock", "", "no_posix_lock,posix_lock", F_POSIX_LOCK, 1},
        {"no_posix_lock", "", "no_posix_lock", F_POSIX_LOCK, 0},
        {"timeout", "", "timeout=3", F_NOTHING, 0},
        {"readonly", "", "readonly", F_READONLY, 1},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct options o;
        const char *words[] = {"--socket-path=/s",
                               "--shared-dir=/d",
                               *cases[i].setup ? cases[i].setup : "--seccomp=kill",
                               "-o",
                               cases[i].item,
                               NULL};
        g_test_message("-o %s after %s", cases[i].item, words[2]);
        g_assert_cmpint(parse_words(&o, words), ==, OPTIONS_OK);
        g_assert_cmpint(field_value(&o, cases[i].field), ==, cases[i].value);
        options_free(&o);
    }
    const char *key;
    for (size_t k = 0; (key = options_compat_key(k)); k++) {
        bool tested = false;
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
            tested |= strcmp(cases[i].key, key) == 0;
        g_test_message("-o %s has a case", key);
        g_assert_true(tested);
    }
}

/* Items: empty ones skipped; keys exact (case, '=' in values); empty values and unknown keys
 * refused; the last word wins across -o lists and long options. */
static void test_compat_items(void)
{
    static const struct {
        const char *const words[6];
        enum options_result result;
        const char *shared_dir; /* when OK */
    } cases[] = {
        {{"--socket-path=/s", "-o", ",,", "--shared-dir=/d"}, OPTIONS_ERROR, NULL}, /* key "," */
        {{"--socket-path=/s", "-o", ",source=/d,,"}, OPTIONS_OK, "/d,"},
        {{"--socket-path=/s", "-o", "source=/d,", "-o", ""}, OPTIONS_OK, "/d"},
        {{"--socket-path=/s", "-o", ",,,source=/d"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,,,,,xattr,"}, OPTIONS_OK, "/d,,"},
        {{"--socket-path=/s", "-o", "source=/a=b"}, OPTIONS_OK, "/a=b"},
        {{"--socket-path=/s", "-o", "source="}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "--shared-dir="}, OPTIONS_ERROR, NULL},
        {{"--socket-path=", "--shared-dir=/d"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,cache="}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,cache=sometimes"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,sandbox=jail"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,log_level=loud"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,loglevel=error,loglevel=er"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,=x"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,XATTR"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,xattr=on"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,xattr,allow_root"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d, xattr"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,modcaps=sys_admin"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "-o", "source=/d,xattrmap=bogus"}, OPTIONS_ERROR, NULL},
        {{"--socket-path=/s", "--shared-dir=/a", "-o", "source=/b"}, OPTIONS_OK, "/b"},
        {{"--socket-path=/s", "-o", "source=/b", "--shared-dir=/a"}, OPTIONS_OK, "/a"},
        {{"--socket-path=/s", "-o", "source=/a,source=/b"}, OPTIONS_OK, "/b"},
        {{"--socket-path=/s", "-osource=/a"}, OPTIONS_OK, "/a"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct options o;
        g_autofree gchar *line = g_strjoinv(" | ", (gchar **)cases[i].words);
        g_test_message("%s", line);
        g_assert_cmpint(parse_words(&o, cases[i].words), ==, cases[i].result);
        if (cases[i].result == OPTIONS_OK)
            g_assert_cmpstr(o.pt.shared_dir, ==, cases[i].shared_dir);
        options_free(&o);
    }
}

/*
 * systemd's socket activation: LISTEN_PID naming us and LISTEN_FDS=1 make fd 3 the listening
 * socket (an explicit --fd wins); another pid's variables are ignored; the variables are
 * removed either way; more than one socket is refused.
 */
static void test_socket_activation(void)
{
    g_autofree gchar *self = g_strdup_printf("%d", (int)getpid());
    g_autofree gchar *other = g_strdup_printf("%d", (int)getpid() + 1);
    static const struct {
        bool ours;
        const char *fds;
        const char *const words[3];
        enum options_result result;
        int fd;
        bool activated;
    } cases[] = {
        {true, "1", {"--shared-dir=/d"}, OPTIONS_OK, 3, true},
        {true, "1", {"--shared-dir=/d", "--socket-path=/run/v.sock"}, OPTIONS_OK, 3, true},
        {true, "1", {"--shared-dir=/d", "--fd=7"}, OPTIONS_OK, 7, false},
        {false, "1", {"--shared-dir=/d", "--socket-path=/s"}, OPTIONS_OK, -1, false},
        {false, "1", {"--shared-dir=/d"}, OPTIONS_ERROR, -1, false}, /* no socket at all */
        {true, "2", {"--shared-dir=/d"}, OPTIONS_ERROR, -1, false},
        {true, "0", {"--shared-dir=/d", "--socket-path=/s"}, OPTIONS_ERROR, -1, false},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_setenv("LISTEN_PID", cases[i].ours ? self : other, TRUE);
        g_setenv("LISTEN_FDS", cases[i].fds, TRUE);
        g_setenv("LISTEN_FDNAMES", "virtiofsd@x.socket", TRUE);
        struct options o;
        g_test_message("case %zu", i);
        g_assert_cmpint(parse_words(&o, cases[i].words), ==, cases[i].result);
        if (cases[i].result == OPTIONS_OK) {
            g_assert_cmpint(o.fd, ==, cases[i].fd);
            g_assert_cmpint(o.socket_activated, ==, cases[i].activated);
        }
        g_assert_null(g_getenv("LISTEN_PID"));
        g_assert_null(g_getenv("LISTEN_FDS"));
        g_assert_null(g_getenv("LISTEN_FDNAMES"));
        options_free(&o);
    }
    /* --print-capabilities (libvirt probing the binary) leaves them alone. */
    g_setenv("LISTEN_PID", self, TRUE);
    g_setenv("LISTEN_FDS", "1", TRUE);
    struct options o;
    const char *caps[] = {"--print-capabilities", NULL};
    g_assert_cmpint(parse_words(&o, caps), ==, OPTIONS_OK);
    g_assert_cmpint(o.fd, ==, -1);
    options_free(&o);
    g_unsetenv("LISTEN_PID");
    g_unsetenv("LISTEN_FDS");
}

/* Runs options_parse and then log_init as main() does, with stderr in a file; returns what
 * was written to stderr after the parse (the parse's own output is checked to be empty). */
static gchar *warnings_logged(const char *const *words)
{
    g_autofree gchar *path = g_build_filename(g_get_tmp_dir(), "vfs-opt-log-XXXXXX", NULL);
    int fd = g_mkstemp(path);
    g_assert_cmpint(fd, >=, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    g_assert_cmpint(dup2(fd, STDERR_FILENO), ==, STDERR_FILENO);
    struct options o;
    enum options_result r = parse_words(&o, words);
    fflush(stderr);
    off_t after_parse = lseek(fd, 0, SEEK_END);
    if (r == OPTIONS_OK)
        log_init(o.log_level, o.syslog);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    log_init(LOG_LVL_INFO, false); /* the process's default again for the next test */
    options_free(&o);
    g_assert_cmpint(r, ==, OPTIONS_OK);
    g_assert_cmpint(after_parse, ==, 0); /* nothing before the level and place are known */
    gchar *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    unlink(path);
    return text;
}

/*
 * The command line's warnings go through the log once its level and destination are set:
 * in the log's format, at --log-level (given after the option warned about, too), not as a
 * bare line before anything else.
 */
static void test_warnings_through_log(void)
{
    const char *fallback[] = {"--socket-path=/s", "--shared-dir=/d",
                              "--inode-file-handles=fallback", "--migration-confirm-paths", NULL};
    g_autofree gchar *text = warnings_logged(fallback);
    g_test_message("%s", text);
    g_assert_nonnull(strstr(text, " warn virtiofsd] --inode-file-handles=fallback is deprecated"));
    g_assert_nonnull(strstr(text, " warn virtiofsd] --migration-confirm-paths is accepted"));
    g_assert_true(g_regex_match_simple("^\\[\\d{4}-\\d\\d-\\d\\dT[^ ]+Z warn virtiofsd\\] ", text,
                                       G_REGEX_MULTILINE, 0));
    g_assert_null(strstr(text, "virtiofsd: warning"));
    const char *quiet[] = {"--socket-path=/s", "--shared-dir=/d", "--inode-file-handles=fallback",
                           "--log-level=error", NULL};
    g_autofree gchar *none = warnings_logged(quiet);
    g_assert_cmpstr(none, ==, "");
    const char *quiet_o[] = {"--socket-path=/s", "-o", "loglevel=err,source=/d",
                             "--migration-confirm-paths", NULL};
    g_autofree gchar *none_o = warnings_logged(quiet_o);
    g_assert_cmpstr(none_o, ==, "");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/options/issue-command-line", test_defaults_and_issue_command_line);
    g_test_add_func("/options/compat-forms", test_compat_forms);
    g_test_add_func("/options/compat-escaped-commas", test_compat_escaped_commas);
    g_test_add_func("/options/id-maps-queues", test_id_maps_and_queues);
    g_test_add_func("/options/errors", test_errors);
    g_test_add_func("/options/inode-file-handles", test_inode_file_handles);
    g_test_add_func("/options/migration", test_migration);
    g_test_add_func("/options/help-lists-every-option", test_help_lists_every_option);
    g_test_add_func("/options/man-page-documents-every-option",
                    test_man_page_documents_every_option);
    g_test_add_func("/options/libvirt-command-lines", test_libvirt_command_lines);
    g_test_add_func("/options/kata-command-lines", test_kata_command_lines);
    g_test_add_func("/options/compat-key-effects", test_compat_key_effects);
    g_test_add_func("/options/compat-items", test_compat_items);
    g_test_add_func("/options/socket-activation", test_socket_activation);
    g_test_add_func("/options/warnings-through-log", test_warnings_through_log);
    return g_test_run();
}
