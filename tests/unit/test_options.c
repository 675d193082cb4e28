/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: the Rust virtiofsd's long options, both value forms, and -o compat. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    return g_test_run();
}
