/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --xattrmap: the rule parser, both directions of every rule type and scope, first-match
 * order, the ":map:" shorthand, the examples of the Rust virtiofsd's doc/xattr-mapping.md,
 * listxattr lists, and the command-line wiring.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "options.h"
#include "xattrmap.h"

static struct xattrmap *parse_ok(const char *text)
{
    struct xattrmap *map = (struct xattrmap *)0x1;
    g_assert_cmpint(xattrmap_parse(text, &map), ==, 0);
    g_assert_nonnull(map);
    return map;
}

/* The host name of guest under map, or "-errno" (e.g. "-1" for EPERM). */
static const char *host(const struct xattrmap *map, const char *guest)
{
    static char buf[256];
    int ret = xattrmap_to_host(map, guest, buf, sizeof(buf));
    if (ret < 0)
        snprintf(buf, sizeof(buf), "%d", ret);
    return buf;
}

/* The guest name of a host name, or "(hidden)". */
static const char *guest(const struct xattrmap *map, const char *host_name)
{
    const char *g = xattrmap_to_guest(map, host_name);
    return g ? g : "(hidden)";
}

#define EPERM_S   "-1"  /* -EPERM */
#define ENOTSUP_S "-95" /* -ENOTSUP */

/* ---- parsing ------------------------------------------------------------------------------ */

static void test_parse_good(void)
{
    /* rules on several lines, whitespace between them */
    static const char multiline[] = "  \n/prefix/all/trusted./user.virtiofs./\n"
                                    "  /bad/server//trusted./\n"
                                    "\t/bad/client/user.virtiofs.//\n /ok/all///  \n";
    static const char *const good[] = {
        ":prefix:client:trusted.:user.virtiofs.:",
        ":prefix:all::user.virtiofs.::bad:all:::",
        multiline,
        ":prefix:all:trusted.:user.virtiofs.: /prefix/all/trusted./user.virtiofs./",
        ":unsupported:all:security.:security.: :ok:all:::",
        ":map::user.virtiofs.:",
        "/map/trusted./user.virtiofs./  \n",
        ":ok:all::: :map:a.:b.:",
        "xokxallxxx", /* any character may separate, even a letter */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
        xattrmap_free(parse_ok(good[i]));
}

/* Every kind of bad map fails with EINVAL and leaves *out NULL. */
static void test_parse_bad(void)
{
    static const char *const bad[] = {
        "",
        "   \n\t ",
        ":TOMATOPIRATE:all:::",
        "/prefix/helloworld///",
        ":prefix:client:hi",
        ":prefix:all:trusted.:user.vm.",
        ":prefix:all:",
        ":ok:all::",
        ":",
        ":map:trusted.:virtiofs.user.::map:trusted.:virtiofs.user.:",
        ":map::user.virtiofs.: :ok:all:::",
        ":map:only-a-key:",
        ":ok:all::: :bad:everywhere:::",
        ":ok:ALL:::",
        ":OK:all:::",
        ":ok :all:::",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        struct xattrmap *map = (struct xattrmap *)0x1;
        g_test_message("map: \"%s\"", bad[i]);
        g_assert_cmpint(xattrmap_parse(bad[i], &map), ==, -EINVAL);
        g_assert_null(map);
    }
}

/* A bad map is reported on exactly one line, naming the option and the rule. */
static void check_message(const char *text, const char *pattern)
{
    if (g_test_subprocess()) {
        struct xattrmap *map;
        g_assert_cmpint(xattrmap_parse(text, &map), ==, -EINVAL);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr(pattern);
    g_test_trap_assert_stderr_unmatched("*\n*\n*");
}

static void test_message_type(void)
{
    check_message(":ok:all::: /TOMATO/all///",
                  "virtiofsd: invalid --xattrmap rule 2 \"/TOMATO/all///\": unknown type "
                  "'TOMATO'*\n");
}

static void test_message_scope(void)
{
    check_message("/prefix/helloworld///\n:ok:all:::",
                  "virtiofsd: invalid --xattrmap rule 1 \"/prefix/helloworld///\": unknown "
                  "scope 'helloworld'*\n");
}

static void test_message_incomplete(void)
{
    check_message(":ok:all::: :prefix:client:hi",
                  "*--xattrmap rule 2 \":prefix:client:hi\": incomplete rule*\n");
}

static void test_message_map_last(void)
{
    check_message(":map::user.virtiofs.: :ok:all:::",
                  "*--xattrmap rule 1 \":map::user.virtiofs.:\": a map rule must be the last*\n");
}

static void test_message_empty(void)
{
    check_message("  ", "*--xattrmap*no rules*\n");
}

/* ---- each rule type and scope, both directions -------------------------------------------- */

static void test_prefix(void)
{
    struct xattrmap *m = parse_ok(":prefix:client:trusted.:user.virtiofs.:");
    g_assert_cmpstr(host(m, "trusted.x"), ==, "user.virtiofs.trusted.x");
    g_assert_cmpstr(host(m, "trusted."), ==, "user.virtiofs.trusted.");
    g_assert_cmpstr(host(m, "user.x"), ==, EPERM_S); /* no rule matches */
    /* A client rule says nothing about host names. */
    g_assert_cmpstr(guest(m, "user.virtiofs.trusted.x"), ==, "(hidden)");
    xattrmap_free(m);

    m = parse_ok(":prefix:server::user.virtiofs.:");
    g_assert_cmpstr(guest(m, "user.virtiofs.trusted.x"), ==, "trusted.x");
    g_assert_cmpstr(guest(m, "user.virtiofs.x"), ==, "x");
    g_assert_cmpstr(guest(m, "user.other"), ==, "(hidden)");     /* no prefix: no match */
    g_assert_cmpstr(guest(m, "user.virtiofs."), ==, "(hidden)"); /* nothing left */
    g_assert_cmpstr(host(m, "trusted.x"), ==, EPERM_S);
    xattrmap_free(m);

    m = parse_ok(":prefix:all:trusted.:user.virtiofs.:");
    g_assert_cmpstr(host(m, "trusted.x"), ==, "user.virtiofs.trusted.x");
    g_assert_cmpstr(host(m, "user.x"), ==, EPERM_S);
    /* Server names match the prepend, not the key. */
    g_assert_cmpstr(guest(m, "user.virtiofs.trusted.x"), ==, "trusted.x");
    g_assert_cmpstr(guest(m, "user.virtiofs.user.x"), ==, "user.x");
    g_assert_cmpstr(guest(m, "trusted.x"), ==, "(hidden)");
    xattrmap_free(m);
}

static void test_ok(void)
{
    struct xattrmap *m = parse_ok(":ok:client:user.::");
    g_assert_cmpstr(host(m, "user.x"), ==, "user.x");
    g_assert_cmpstr(host(m, "trusted.x"), ==, EPERM_S);
    g_assert_cmpstr(guest(m, "user.x"), ==, "(hidden)");
    xattrmap_free(m);

    m = parse_ok(":ok:server::security.:");
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "security.selinux");
    g_assert_cmpstr(guest(m, "user.x"), ==, "(hidden)");
    g_assert_cmpstr(host(m, "security.selinux"), ==, EPERM_S);
    xattrmap_free(m);

    m = parse_ok(":ok:all:::");
    g_assert_cmpstr(host(m, "user.virtiofs.potato"), ==, "user.virtiofs.potato");
    g_assert_cmpstr(host(m, ""), ==, "");
    g_assert_cmpstr(guest(m, "trusted.anything"), ==, "trusted.anything");
    xattrmap_free(m);
}

static void test_bad(void)
{
    struct xattrmap *m = parse_ok(":bad:client:::");
    g_assert_cmpstr(host(m, "virtiofs."), ==, EPERM_S);
    g_assert_cmpstr(guest(m, "user.x"), ==, "(hidden)");
    xattrmap_free(m);

    m = parse_ok(":bad:server::security.: :ok:all:::");
    g_assert_cmpstr(guest(m, "security.secret"), ==, "(hidden)");
    g_assert_cmpstr(guest(m, "boring_attr"), ==, "boring_attr");
    g_assert_cmpstr(host(m, "security.secret"), ==, "security.secret"); /* server only */
    xattrmap_free(m);

    m = parse_ok(":bad:all:security.:security.: :ok:all:::");
    g_assert_cmpstr(host(m, "security.selinux"), ==, EPERM_S);
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "(hidden)");
    g_assert_cmpstr(host(m, "user.x"), ==, "user.x");
    g_assert_cmpstr(guest(m, "user.x"), ==, "user.x");
    xattrmap_free(m);
}

static void test_unsupported(void)
{
    struct xattrmap *m = parse_ok(":unsupported:client:::");
    g_assert_cmpstr(host(m, "virtiofs."), ==, ENOTSUP_S);
    xattrmap_free(m);

    m = parse_ok(":unsupported:all:system.posix_acl_:system.posix_acl_: :ok:all:::");
    g_assert_cmpstr(host(m, "system.posix_acl_access"), ==, ENOTSUP_S);
    g_assert_cmpstr(guest(m, "system.posix_acl_default"), ==, "(hidden)");
    g_assert_cmpstr(guest(m, "boring_attr"), ==, "boring_attr");
    xattrmap_free(m);
}

/* The first matching rule decides, whatever follows. */
static void test_first_match(void)
{
    struct xattrmap *m = parse_ok(":bad:all:user.secret.:user.secret.: :ok:all:user.:user.:");
    g_assert_cmpstr(host(m, "user.secret.key"), ==, EPERM_S);
    g_assert_cmpstr(host(m, "user.plain"), ==, "user.plain");
    g_assert_cmpstr(guest(m, "user.secret.key"), ==, "(hidden)");
    g_assert_cmpstr(guest(m, "user.plain"), ==, "user.plain");
    g_assert_cmpstr(host(m, "trusted.x"), ==, EPERM_S); /* no rule */
    xattrmap_free(m);

    m = parse_ok(":ok:all:user.:user.: :bad:all:user.secret.:user.secret.:");
    g_assert_cmpstr(host(m, "user.secret.key"), ==, "user.secret.key");
    g_assert_cmpstr(guest(m, "user.secret.key"), ==, "user.secret.key");
    xattrmap_free(m);

    /* A client rule ahead of an all rule only shadows it for client names. */
    m = parse_ok(":prefix:client::c.: :prefix:all::a.:");
    g_assert_cmpstr(host(m, "user.x"), ==, "c.user.x");
    g_assert_cmpstr(guest(m, "a.user.x"), ==, "user.x");
    g_assert_cmpstr(guest(m, "c.user.x"), ==, "(hidden)");
    xattrmap_free(m);
}

static void test_erange(void)
{
    struct xattrmap *m = parse_ok(":prefix:all::user.virtiofs.:");
    char buf[20];
    g_assert_cmpint(xattrmap_to_host(m, "user.a", buf, sizeof(buf)), ==, -ERANGE);
    g_assert_cmpint(xattrmap_to_host(m, "user.", buf, sizeof(buf)), ==, 0); /* 19 + NUL */
    g_assert_cmpstr(buf, ==, "user.virtiofs.user.");
    xattrmap_free(m);
}

/* ---- the map shorthand ---------------------------------------------------------------------- */

static const char *const probe_names[] = {
    "user.x",
    "user.virtiofs.x",
    "user.virtiofs.trusted.x",
    "trusted.x",
    "trusted.",
    "security.x",
    "user.virtiofs.",
    "system.posix_acl_access",
    "",
    "u",
    "user.virtiofs.user.virtiofs.x",
};

/* a and b treat every probe name alike, in both directions. */
static void assert_same(const struct xattrmap *a, const struct xattrmap *b)
{
    for (size_t i = 0; i < G_N_ELEMENTS(probe_names); i++) {
        gchar *ha = g_strdup(host(a, probe_names[i]));
        g_assert_cmpstr(ha, ==, host(b, probe_names[i]));
        g_assert_cmpstr(guest(a, probe_names[i]), ==, guest(b, probe_names[i]));
        g_free(ha);
    }
}

static void test_map_all(void)
{
    struct xattrmap *m = parse_ok(":map::user.virtiofs.:");
    g_assert_cmpstr(host(m, "user.x"), ==, "user.virtiofs.user.x");
    g_assert_cmpstr(host(m, "security.selinux"), ==, "user.virtiofs.security.selinux");
    g_assert_cmpstr(guest(m, "user.virtiofs.user.x"), ==, "user.x");
    g_assert_cmpstr(guest(m, "user.x"), ==, "(hidden)");
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "(hidden)");
    /* As the docs say, the same as example 1. */
    struct xattrmap *same = parse_ok(":prefix:all::user.virtiofs.::bad:all:::");
    assert_same(m, same);
    xattrmap_free(same);
    xattrmap_free(m);
}

static void test_map_key(void)
{
    struct xattrmap *m = parse_ok("/map/trusted./user.virtiofs./");
    g_assert_cmpstr(host(m, "trusted.x"), ==, "user.virtiofs.trusted.x");
    g_assert_cmpstr(host(m, "user.virtiofs.x"), ==, EPERM_S); /* no direct access */
    g_assert_cmpstr(host(m, "user.x"), ==, "user.x");
    g_assert_cmpstr(guest(m, "user.virtiofs.trusted.x"), ==, "trusted.x");
    g_assert_cmpstr(guest(m, "trusted.x"), ==, "(hidden)"); /* the host's own */
    g_assert_cmpstr(guest(m, "user.x"), ==, "user.x");
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "security.selinux");
    /* As the docs say, the same as example 2. */
    struct xattrmap *same = parse_ok("/prefix/all/trusted./user.virtiofs./\n"
                                     "/bad/server//trusted./\n"
                                     "/bad/client/user.virtiofs.//\n"
                                     "/ok/all///");
    assert_same(m, same);
    xattrmap_free(same);
    xattrmap_free(m);
}

/* Rules before a map rule come first. */
static void test_map_after_rules(void)
{
    struct xattrmap *m = parse_ok(":bad:all:security.:security.: :map::user.virtiofs.:");
    g_assert_cmpstr(host(m, "security.selinux"), ==, EPERM_S);
    g_assert_cmpstr(host(m, "user.x"), ==, "user.virtiofs.user.x");
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "(hidden)");
    xattrmap_free(m);
}

/* ---- the documentation's examples ------------------------------------------------------------ */

static void test_doc_example_3(void)
{
    struct xattrmap *m = parse_ok("/bad/all/security./security./\n            /ok/all///");
    g_assert_cmpstr(host(m, "security.selinux"), ==, EPERM_S);
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "(hidden)");
    g_assert_cmpstr(host(m, "user.x"), ==, "user.x");
    g_assert_cmpstr(host(m, "trusted.x"), ==, "trusted.x");
    g_assert_cmpstr(guest(m, "trusted.x"), ==, "trusted.x");
    xattrmap_free(m);
}

static void test_doc_example_1(void)
{
    struct xattrmap *m = parse_ok(":prefix:all::user.virtiofs.::bad:all:::");
    g_assert_cmpstr(host(m, "trusted.overlay.opaque"), ==, "user.virtiofs.trusted.overlay.opaque");
    g_assert_cmpstr(guest(m, "user.virtiofs.trusted.overlay.opaque"), ==, "trusted.overlay.opaque");
    g_assert_cmpstr(guest(m, "user.host-set"), ==, "(hidden)");
    g_assert_cmpstr(guest(m, "security.selinux"), ==, "(hidden)");
    xattrmap_free(m);
}

/* ---- listxattr lists --------------------------------------------------------------------------
 */

static void test_list(void)
{
    struct xattrmap *m = parse_ok(":prefix:all::user.virtiofs.::bad:all:::");
    static const char in[] = "user.host\0user.virtiofs.user.a\0security.selinux\0"
                             "user.virtiofs.\0\0user.virtiofs.trusted.b\0";
    char list[sizeof(in)];
    memcpy(list, in, sizeof(in));
    size_t n = xattrmap_list_to_guest(m, list, sizeof(in) - 1);
    static const char want[] = "user.a\0trusted.b";
    g_assert_cmpmem(list, n, want, sizeof(want));

    /* Everything hidden: an empty list, not a lone NUL. */
    static const char hidden[] = "user.x\0security.y";
    memcpy(list, hidden, sizeof(hidden));
    g_assert_cmpuint(xattrmap_list_to_guest(m, list, sizeof(hidden)), ==, 0);
    g_assert_cmpuint(xattrmap_list_to_guest(m, list, 0), ==, 0);

    /* An unterminated last name is dropped, never read past the end. */
    memcpy(list, "user.virtiofs.a\0user.virtiofs.bXXXX", 31);
    g_assert_cmpuint(xattrmap_list_to_guest(m, list, 31), ==, 2);
    g_assert_cmpmem(list, 2, "a", 2);
    xattrmap_free(m);

    m = parse_ok(":ok:all:::");
    static const char same[] = "user.a\0trusted.b";
    memcpy(list, same, sizeof(same));
    g_assert_cmpuint(xattrmap_list_to_guest(m, list, sizeof(same)), ==, sizeof(same));
    g_assert_cmpmem(list, sizeof(same), same, sizeof(same));
    xattrmap_free(m);
}

/* ---- the command line --------------------------------------------------------------------------
 */

static enum options_result parse_cmdline(struct options *o, const char *line)
{
    gchar **argv = NULL;
    gint argc = 0;
    gchar *full = g_strconcat("virtiofsd --socket-path=/s --shared-dir=/d ", line, NULL);
    g_assert_true(g_shell_parse_argv(full, &argc, &argv, NULL));
    enum options_result r = options_parse(argc, argv, o);
    g_strfreev(argv);
    g_free(full);
    return r;
}

static void test_options(void)
{
    struct options o;
    g_assert_cmpint(parse_cmdline(&o, ""), ==, OPTIONS_OK);
    g_assert_null(o.pt.xattrmap);
    options_free(&o);

    /* A map implies --xattr, even after -o no_xattr, as in the Rust virtiofsd. */
    g_assert_cmpint(parse_cmdline(&o, "--xattrmap=:map::user.virtiofs.: -o no_xattr"), ==,
                    OPTIONS_OK);
    g_assert_nonnull(o.pt.xattrmap);
    g_assert_true(o.pt.xattr);
    g_assert_cmpstr(host(o.pt.xattrmap, "user.x"), ==, "user.virtiofs.user.x");
    options_free(&o);
    g_assert_null(o.pt.xattrmap);

    /* The -o form, and the last map wins. */
    g_assert_cmpint(parse_cmdline(&o, "--xattrmap ':ok:all:::' -o 'xattrmap=:bad:all:::'"), ==,
                    OPTIONS_OK);
    g_assert_cmpstr(host(o.pt.xattrmap, "user.x"), ==, EPERM_S);
    options_free(&o);
}

static void test_options_bad(void)
{
    if (g_test_subprocess()) {
        struct options o;
        g_assert_cmpint(parse_cmdline(&o, "--xattrmap=:ok:all:: --xattr"), ==, OPTIONS_ERROR);
        options_free(&o);
        g_assert_cmpint(parse_cmdline(&o, "-o xattrmap=:foo:all:::"), ==, OPTIONS_ERROR);
        options_free(&o);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    /* One line per bad map, each naming the option. */
    g_test_trap_assert_stderr("virtiofsd: invalid --xattrmap rule 1 \":ok:all::\": incomplete*\n"
                              "virtiofsd: invalid --xattrmap rule 1 \":foo:all:::\": unknown "
                              "type 'foo'*\n");
    g_test_trap_assert_stderr_unmatched("*\n*\n*\n*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/xattrmap/parse/good", test_parse_good);
    g_test_add_func("/xattrmap/parse/bad", test_parse_bad);
    g_test_add_func("/xattrmap/parse/message-type", test_message_type);
    g_test_add_func("/xattrmap/parse/message-scope", test_message_scope);
    g_test_add_func("/xattrmap/parse/message-incomplete", test_message_incomplete);
    g_test_add_func("/xattrmap/parse/message-map-last", test_message_map_last);
    g_test_add_func("/xattrmap/parse/message-empty", test_message_empty);
    g_test_add_func("/xattrmap/rule/prefix", test_prefix);
    g_test_add_func("/xattrmap/rule/ok", test_ok);
    g_test_add_func("/xattrmap/rule/bad", test_bad);
    g_test_add_func("/xattrmap/rule/unsupported", test_unsupported);
    g_test_add_func("/xattrmap/rule/first-match", test_first_match);
    g_test_add_func("/xattrmap/rule/erange", test_erange);
    g_test_add_func("/xattrmap/map/all", test_map_all);
    g_test_add_func("/xattrmap/map/key", test_map_key);
    g_test_add_func("/xattrmap/map/after-rules", test_map_after_rules);
    g_test_add_func("/xattrmap/doc/example-1", test_doc_example_1);
    g_test_add_func("/xattrmap/doc/example-3", test_doc_example_3);
    g_test_add_func("/xattrmap/list", test_list);
    g_test_add_func("/xattrmap/options/ok", test_options);
    g_test_add_func("/xattrmap/options/bad", test_options_bad);
    return g_test_run();
}
