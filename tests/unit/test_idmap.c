/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --translate-uid / --translate-gid rules (src/idmap.c): every accepted form and what it adds
 * to which direction, malformed values, disjointness of the ranges within one direction,
 * both translations at their range boundaries, forbid-guest, and the options.c wiring.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "idmap.h"
#include "options.h"

static void assert_rule(const struct idmap_table *t, size_t i, enum idmap_kind kind, uint32_t from,
                        uint32_t count, uint32_t to)
{
    g_assert_cmpuint(i, <, t->n);
    g_assert_cmpint(t->rules[i].kind, ==, kind);
    g_assert_cmpuint(t->rules[i].from, ==, from);
    g_assert_cmpuint(t->rules[i].count, ==, count);
    if (kind != IDMAP_FORBID)
        g_assert_cmpuint(t->rules[i].to, ==, to);
}

/* The host id of guest (asserting it is not refused). */
static uint32_t to_host(const struct idmap *m, uint32_t guest)
{
    uint32_t host = 0xdeadbeef;
    g_assert_cmpint(idmap_to_host(m, guest, &host), ==, 0);
    return host;
}

static void test_parse_forms(void)
{
    struct idmap m = {0};
    g_assert_true(idmap_is_identity(&m));

    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "guest:100:200:10"), ==, 0);
    g_assert_cmpuint(m.to_host.n, ==, 1);
    g_assert_cmpuint(m.to_guest.n, ==, 0);
    assert_rule(&m.to_host, 0, IDMAP_RANGE, 100, 10, 200);

    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "host:300:400:5"), ==, 0);
    g_assert_cmpuint(m.to_host.n, ==, 1);
    assert_rule(&m.to_guest, 0, IDMAP_RANGE, 300, 5, 400);

    /* squash-guest:<guest base>:<host id>:<count>, squash-host:<host base>:<guest id>:<count> */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "squash-guest:1000:7:50"), ==, 0);
    assert_rule(&m.to_host, 1, IDMAP_SQUASH, 1000, 50, 7);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "squash-host:5000:8:60"), ==, 0);
    assert_rule(&m.to_guest, 1, IDMAP_SQUASH, 5000, 60, 8);

    /* forbid-guest:<guest base>:<count>, guest-to-host only */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "forbid-guest:2000:3"), ==, 0);
    assert_rule(&m.to_host, 2, IDMAP_FORBID, 2000, 3, 0);
    g_assert_cmpuint(m.to_guest.n, ==, 2);

    /* map:<guest base>:<host base>:<count>: one rule each way, the second one inverted */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "map:10000:20000:100"), ==, 0);
    assert_rule(&m.to_host, 3, IDMAP_RANGE, 10000, 100, 20000);
    assert_rule(&m.to_guest, 2, IDMAP_RANGE, 20000, 100, 10000);
    g_assert_false(idmap_is_identity(&m));

    idmap_free(&m);
    g_assert_true(idmap_is_identity(&m));
    g_assert_null(m.to_host.rules);
}

/* What the Rust virtiofsd's parser also takes: any case, any one separator, '+' numbers. */
static void test_parse_lenient_syntax(void)
{
    struct idmap m = {0};
    g_assert_cmpint(idmap_parse(&m, "--translate-gid", "MAP/1/2/3"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-gid", "Squash-Guest,10,0,+5"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-gid", "forbid-guest 20 4"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-gid", "guest=4294967290=0=5"), ==, 0);
    assert_rule(&m.to_host, 0, IDMAP_RANGE, 1, 3, 2);
    assert_rule(&m.to_guest, 0, IDMAP_RANGE, 2, 3, 1);
    assert_rule(&m.to_host, 1, IDMAP_SQUASH, 10, 5, 0);
    assert_rule(&m.to_host, 2, IDMAP_FORBID, 20, 4, 0);
    assert_rule(&m.to_host, 3, IDMAP_RANGE, 4294967290u, 5, 0);
    /* A count of 0 is an empty range: accepted, and it matches (and overlaps) nothing. */
    g_assert_cmpint(idmap_parse(&m, "--translate-gid", "squash-guest:1:99:0"), ==, 0);
    g_assert_cmpuint(to_host(&m, 1), ==, 2);
    idmap_free(&m);
}

static void test_parse_errors(void)
{
    static const char *const bad[] = {
        "",
        "map",
        "map:",
        "map:1:2",
        "map:1:2:3:4",
        "map:1:2:3:",
        ":1:2:3",
        "mapp:1:2:3",
        "forbid:1:2",
        "forbid-host:1:2",
        "forbid-guest:1:2:3",
        "forbid-guest:1",
        "guest:1:2",
        "host:1:2:3:4",
        "squash-guest:1:2",
        "map:a:2:3",
        "map:-1:2:3",
        "map:1:2:0x3",
        "map: 1:2:3",
        "map:1;2;3",
        "map:1::3",
        "map:+:2:3",
        "map:1:2:4294967296",
        "map:1:2:99999999999999999999",
        "a-very-long-type-name-that-is-no-type:1:2:3",
        /* ranges past 4294967295 (source, then the target of a 1:1 rule) */
        "guest:4294967295:0:1",
        "squash-host:4294967290:0:6",
        "forbid-guest:1:4294967295",
        "guest:0:4294967290:6",
        "map:0:4294967290:6",
        "map:4294967290:0:6",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        struct idmap m = {0};
        g_test_message("'%s'", bad[i]);
        g_assert_cmpint(idmap_parse(&m, "--translate-uid", bad[i]), ==, -EINVAL);
        g_assert_true(idmap_is_identity(&m));
    }
}

/* A bad value is reported in one line naming the option and every accepted form. */
static void test_parse_error_message(void)
{
    if (g_test_subprocess()) {
        struct idmap m = {0};
        idmap_parse(&m, "--translate-gid", "squash:1:2:3");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("*'squash:1:2:3'*--translate-gid*guest:<guest base>:<host base>:"
                              "<count>*host:*squash-guest:*squash-host:*forbid-guest:<guest "
                              "base>:<count>*map:<guest base>:<host base>:<count>\n");
    g_test_trap_assert_stderr_unmatched("*\n*\n*");
}

/* Ranges of one direction are disjoint, as the Rust virtiofsd requires; a clash is an error. */
static void test_overlaps(void)
{
    struct idmap m = {0};
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "guest:100:1000:10"), ==, 0);
    /* Within [100, 110), at either edge, or around it: refused. */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "squash-guest:105:0:1"), ==, -EINVAL);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "forbid-guest:109:5"), ==, -EINVAL);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "forbid-guest:95:6"), ==, -EINVAL);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "guest:0:0:1000"), ==, -EINVAL);
    /* map adds a guest range too: refused as a whole, the host side is not added either. */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "map:100:5000:1"), ==, -EINVAL);
    g_assert_cmpuint(m.to_host.n, ==, 1);
    g_assert_cmpuint(m.to_guest.n, ==, 0);
    /* Adjacent ranges, and the same numbers in the other direction, are fine. */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "forbid-guest:95:5"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "squash-guest:110:0:1"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "host:100:100:10"), ==, 0);
    /* A map whose host side clashes is refused whole: its guest side is not added. */
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "map:500:105:1"), ==, -EINVAL);
    g_assert_cmpuint(m.to_host.n, ==, 3);
    g_assert_cmpuint(m.to_guest.n, ==, 1);
    g_assert_cmpuint(to_host(&m, 500), ==, 500);
    idmap_free(&m);

    /*
     * The command line from virtio-fs/virtiofsd issue 198: "forbid-guest:1001:1999" covers
     * [1001, 3000) and so clashes with map:2000; with count 999 it ends at 2000 and fits.
     */
    static const char *const ok[] = {"forbid-guest:0:1000", "map:1000:1000:1",
                                     "forbid-guest:1001:999", "map:2000:2000:1",
                                     "forbid-guest:2001:4294965294"};
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++)
        g_assert_cmpint(idmap_parse(&m, "--translate-uid", ok[i]), ==, 0);
    uint32_t h;
    g_assert_cmpint(idmap_to_host(&m, 0, &h), ==, -EPERM);
    g_assert_cmpint(idmap_to_host(&m, 999, &h), ==, -EPERM);
    g_assert_cmpuint(to_host(&m, 1000), ==, 1000);
    g_assert_cmpint(idmap_to_host(&m, 1001, &h), ==, -EPERM);
    g_assert_cmpint(idmap_to_host(&m, 1999, &h), ==, -EPERM);
    g_assert_cmpuint(to_host(&m, 2000), ==, 2000);
    g_assert_cmpint(idmap_to_host(&m, 2001, &h), ==, -EPERM);
    g_assert_cmpint(idmap_to_host(&m, 4294967294u, &h), ==, -EPERM);
    /* The range ends below 4294967295, which no rule can cover. */
    g_assert_cmpuint(to_host(&m, 4294967295u), ==, 4294967295u);
    idmap_free(&m);

    struct idmap m2 = {0};
    g_assert_cmpint(idmap_parse(&m2, "--translate-uid", "map:2000:2000:1"), ==, 0);
    g_assert_cmpint(idmap_parse(&m2, "--translate-uid", "forbid-guest:1001:1999"), ==, -EINVAL);
    idmap_free(&m2);
}

static void test_translate(void)
{
    struct idmap m = {0};
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "map:1000:2000:10"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "guest:0:100000:1"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "squash-guest:3000:65534:1000"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "host:100000:0:1"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "squash-host:50000:7:100"), ==, 0);
    g_assert_cmpint(idmap_parse(&m, "--translate-uid", "forbid-guest:4000:2"), ==, 0);

    /* guest -> host */
    g_assert_cmpuint(to_host(&m, 999), ==, 999); /* no rule: unchanged */
    g_assert_cmpuint(to_host(&m, 1000), ==, 2000);
    g_assert_cmpuint(to_host(&m, 1009), ==, 2009);
    g_assert_cmpuint(to_host(&m, 1010), ==, 1010);
    g_assert_cmpuint(to_host(&m, 0), ==, 100000);
    g_assert_cmpuint(to_host(&m, 1), ==, 1);
    g_assert_cmpuint(to_host(&m, 2999), ==, 2999);
    g_assert_cmpuint(to_host(&m, 3000), ==, 65534);
    g_assert_cmpuint(to_host(&m, 3999), ==, 65534);
    g_assert_cmpuint(to_host(&m, 2000), ==, 2000); /* the host range is not a guest rule */
    uint32_t h = 12345;
    g_assert_cmpint(idmap_to_host(&m, 4000, &h), ==, -EPERM);
    g_assert_cmpint(idmap_to_host(&m, 4001, &h), ==, -EPERM);
    g_assert_cmpuint(h, ==, 12345); /* untouched when refused */
    g_assert_cmpuint(to_host(&m, 4002), ==, 4002);

    /* host -> guest */
    g_assert_cmpuint(idmap_to_guest(&m, 1999), ==, 1999);
    g_assert_cmpuint(idmap_to_guest(&m, 2000), ==, 1000);
    g_assert_cmpuint(idmap_to_guest(&m, 2009), ==, 1009);
    g_assert_cmpuint(idmap_to_guest(&m, 2010), ==, 2010);
    g_assert_cmpuint(idmap_to_guest(&m, 1005), ==, 1005); /* the guest range is not a host rule */
    g_assert_cmpuint(idmap_to_guest(&m, 100000), ==, 0);
    g_assert_cmpuint(idmap_to_guest(&m, 0), ==, 0);
    g_assert_cmpuint(idmap_to_guest(&m, 65534), ==, 65534); /* squash-guest is one way only */
    g_assert_cmpuint(idmap_to_guest(&m, 49999), ==, 49999);
    g_assert_cmpuint(idmap_to_guest(&m, 50000), ==, 7);
    g_assert_cmpuint(idmap_to_guest(&m, 50099), ==, 7);
    g_assert_cmpuint(idmap_to_guest(&m, 50100), ==, 50100);
    g_assert_cmpuint(idmap_to_guest(&m, 4000), ==, 4000); /* forbid-guest is guest-side only */

    /* The largest range there is, [0, 4294967295). */
    struct idmap all = {0};
    g_assert_cmpint(idmap_parse(&all, "--translate-gid", "squash-guest:0:1000:4294967295"), ==, 0);
    g_assert_cmpuint(to_host(&all, 0), ==, 1000);
    g_assert_cmpuint(to_host(&all, 4294967294u), ==, 1000);
    g_assert_cmpuint(to_host(&all, 4294967295u), ==, 4294967295u);
    idmap_free(&all);

    /* A copy translates alike and owns its rules. */
    struct idmap c;
    g_assert_cmpint(idmap_copy(&c, &m), ==, 0);
    idmap_free(&m);
    g_assert_cmpuint(to_host(&c, 1003), ==, 2003);
    g_assert_cmpuint(idmap_to_guest(&c, 50050), ==, 7);
    g_assert_cmpint(idmap_to_host(&c, 4000, &h), ==, -EPERM);
    idmap_free(&c);

    /* The empty map is the identity. */
    struct idmap none = {0};
    g_assert_cmpint(idmap_copy(&c, &none), ==, 0);
    g_assert_true(idmap_is_identity(&c));
    g_assert_cmpuint(to_host(&c, 0), ==, 0);
    g_assert_cmpuint(idmap_to_guest(&c, 4294967295u), ==, 4294967295u);
    idmap_free(&c);
}

static enum options_result parse_line(struct options *o, const char *line)
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

/* options.c: both options repeatable, both value forms, errors are usage errors. */
static void test_options(void)
{
    struct options o;
    g_assert_cmpint(parse_line(&o, "--translate-uid map:1000:2000:10 "
                                   "--translate-uid=forbid-guest:0:1 "
                                   "--translate-gid squash-guest:0:100:65536"),
                    ==, OPTIONS_OK);
    g_assert_cmpuint(o.pt.uid_map.to_host.n, ==, 2);
    g_assert_cmpuint(o.pt.uid_map.to_guest.n, ==, 1);
    g_assert_cmpuint(o.pt.gid_map.to_host.n, ==, 1);
    g_assert_cmpuint(o.pt.gid_map.to_guest.n, ==, 0);
    uint32_t id;
    g_assert_cmpint(idmap_to_host(&o.pt.uid_map, 0, &id), ==, -EPERM);
    g_assert_cmpuint(to_host(&o.pt.uid_map, 1005), ==, 2005);
    g_assert_cmpuint(to_host(&o.pt.gid_map, 5), ==, 100);
    options_free(&o);
    g_assert_true(idmap_is_identity(&o.pt.uid_map));

    g_assert_cmpint(parse_line(&o, ""), ==, OPTIONS_OK);
    g_assert_true(idmap_is_identity(&o.pt.uid_map));
    g_assert_true(idmap_is_identity(&o.pt.gid_map));
    options_free(&o);

    static const char *const bad[] = {
        "--translate-uid map:1:2",
        "--translate-gid=forbid-guest:1:2:3",
        "--translate-uid map:0:0:10 --translate-uid guest:5:0:1",
        "--translate-uid",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_test_message("%s", bad[i]);
        g_assert_cmpint(parse_line(&o, bad[i]), ==, OPTIONS_ERROR);
        options_free(&o);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/idmap/parse/forms", test_parse_forms);
    g_test_add_func("/idmap/parse/lenient-syntax", test_parse_lenient_syntax);
    g_test_add_func("/idmap/parse/errors", test_parse_errors);
    g_test_add_func("/idmap/parse/error-message", test_parse_error_message);
    g_test_add_func("/idmap/parse/overlaps", test_overlaps);
    g_test_add_func("/idmap/translate", test_translate);
    g_test_add_func("/idmap/options", test_options);
    return g_test_run();
}
