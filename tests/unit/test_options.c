/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: the Rust virtiofsd's long options, both value forms, and -o compat. */
#include <glib.h>
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/options/issue-command-line", test_defaults_and_issue_command_line);
    g_test_add_func("/options/compat-forms", test_compat_forms);
    g_test_add_func("/options/compat-escaped-commas", test_compat_escaped_commas);
    g_test_add_func("/options/id-maps-queues", test_id_maps_and_queues);
    g_test_add_func("/options/errors", test_errors);
    g_test_add_func("/options/inode-file-handles", test_inode_file_handles);
    return g_test_run();
}
