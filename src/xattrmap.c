/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --xattrmap rules (see xattrmap.h). The semantics follow the Rust virtiofsd, including the
 * way ":map:" expands, with two deliberate differences where it would misbehave: a name no
 * rule matches is refused (client) or hidden (server), as QEMU's virtiofsd does, instead of
 * aborting the daemon; and an empty list stays empty instead of becoming a lone NUL.
 */
#include "xattrmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum rule_type { RT_PREFIX, RT_OK, RT_BAD, RT_UNSUPPORTED, RT_MAP /* parsing only */ };

enum { SCOPE_CLIENT = 1, SCOPE_SERVER = 2, SCOPE_ALL = SCOPE_CLIENT | SCOPE_SERVER };

struct rule {
    enum rule_type type;
    unsigned scope;
    char *key;     /* a prefix of guest names (client scope) */
    char *prepend; /* added to guest names; a prefix of host names (server scope) */
    size_t key_len, prepend_len;
};

struct xattrmap {
    struct rule *rules;
    size_t n, cap;
};

/* A field of the rule text being parsed: not NUL-terminated. */
struct field {
    const char *s;
    size_t len;
};

struct parsed_rule {
    enum rule_type type;
    unsigned scope;
    struct field key, prepend;
};

/* ---- parsing ----------------------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static const char *skip_space(const char *p)
{
    while (is_space(*p))
        p++;
    return p;
}

static bool field_is(const struct field *f, const char *word)
{
    return f->len == strlen(word) && memcmp(f->s, word, f->len) == 0;
}

/* Reads the field at *p up to the separator and steps past it; false if none follows. */
static bool next_field(const char **p, char sep, struct field *f)
{
    const char *end = strchr(*p, sep);
    if (!end)
        return false;
    *f = (struct field){*p, (size_t)(end - *p)};
    *p = end + 1;
    return true;
}

static bool parse_type(const struct field *f, enum rule_type *type)
{
    static const struct {
        const char *name;
        enum rule_type type;
    } types[] = {{"prefix", RT_PREFIX},
                 {"ok", RT_OK},
                 {"bad", RT_BAD},
                 {"unsupported", RT_UNSUPPORTED},
                 {"map", RT_MAP}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (field_is(f, types[i].name)) {
            *type = types[i].type;
            return true;
        }
    }
    return false;
}

static bool parse_scope(const struct field *f, unsigned *scope)
{
    if (field_is(f, "client"))
        *scope = SCOPE_CLIENT;
    else if (field_is(f, "server"))
        *scope = SCOPE_SERVER;
    else if (field_is(f, "all"))
        *scope = SCOPE_ALL;
    else
        return false;
    return true;
}

/*
 * Parses the rule starting at *p (its separator) and steps past it. Returns NULL, or what is
 * wrong with the rule (written into err when it names a field).
 */
static const char *parse_rule(const char **p, struct parsed_rule *r, char *err, size_t size)
{
    const char sep = *(*p)++;
    struct field type, scope;

    if (!next_field(p, sep, &type))
        return "incomplete rule (a field is not closed by the rule's first character)";
    if (!parse_type(&type, &r->type)) {
        snprintf(err, size, "unknown type '%.*s' (accepted: prefix, ok, bad, unsupported, map)",
                 (int)type.len, type.s);
        return err;
    }
    /* ":map:key:prepend:" has no scope: it always applies to both directions. */
    r->scope = SCOPE_ALL;
    if (r->type != RT_MAP) {
        if (!next_field(p, sep, &scope))
            return "incomplete rule (a field is not closed by the rule's first character)";
        if (!parse_scope(&scope, &r->scope)) {
            snprintf(err, size, "unknown scope '%.*s' (accepted: client, server, all)",
                     (int)scope.len, scope.s);
            return err;
        }
    }
    if (!next_field(p, sep, &r->key) || !next_field(p, sep, &r->prepend))
        return "incomplete rule (a field is not closed by the rule's first character)";
    return NULL;
}

/* Where the rule at start ends if all five separators are there (else the end of text). */
static const char *rule_end(const char *start)
{
    const char *q = start;
    for (int seps = 0; *q && seps < 5; q++)
        seps += *q == *start;
    return q;
}

/* The printable text of the rule from start to end (or the first control character). */
static int rule_text_len(const char *start, const char *end)
{
    const char *q = start;
    while (q < end && *q && (unsigned char)*q >= 0x20)
        q++;
    return (int)(q - start);
}

static int report(unsigned index, const char *start, const char *end, const char *what)
{
    fprintf(stderr, "virtiofsd: invalid --xattrmap rule %u \"%.*s\": %s\n", index,
            rule_text_len(start, end), start, what);
    return -EINVAL;
}

static int add_rule(struct xattrmap *map, enum rule_type type, unsigned scope,
                    const struct field *key, const struct field *prepend)
{
    if (map->n == map->cap) {
        size_t cap = map->cap ? 2 * map->cap : 8;
        struct rule *rules = realloc(map->rules, cap * sizeof(*rules));
        if (!rules)
            return -ENOMEM;
        map->rules = rules;
        map->cap = cap;
    }
    struct rule *r = &map->rules[map->n];
    *r = (struct rule){
        type,     scope,       strndup(key->s, key->len), strndup(prepend->s, prepend->len),
        key->len, prepend->len};
    if (!r->key || !r->prepend) {
        free(r->key);
        free(r->prepend);
        return -ENOMEM;
    }
    map->n++;
    return 0;
}

/*
 * ":map:key:prepend:" as the Rust virtiofsd expands it. Every matching name gets the prefix.
 * With a key, host names under key that lack the prefix are hidden, guest names already
 * carrying the prefix are refused (else a guest could reach the mapped names directly), and
 * everything else passes; without one, everything unprefixed is hidden and refused.
 */
static int add_map_rules(struct xattrmap *map, const struct parsed_rule *r)
{
    static const struct field empty = {"", 0};
    int ret = add_rule(map, RT_PREFIX, SCOPE_ALL, &r->key, &r->prepend);
    if (ret == 0 && r->key.len == 0)
        return add_rule(map, RT_BAD, SCOPE_ALL, &empty, &empty);
    if (ret == 0)
        ret = add_rule(map, RT_BAD, SCOPE_ALL, &r->prepend, &r->key);
    return ret ? ret : add_rule(map, RT_OK, SCOPE_ALL, &empty, &empty);
}

/* Parses and adds the rule at *p (the index-th); 0 or a negative errno. */
static int add_next_rule(struct xattrmap *map, const char **p, unsigned index)
{
    const char *start = *p;
    struct parsed_rule r;
    char err[160];
    const char *what = parse_rule(p, &r, err, sizeof(err));

    if (what)
        return report(index, start, rule_end(start), what);
    if (r.type != RT_MAP)
        return add_rule(map, r.type, r.scope, &r.key, &r.prepend);
    /* The expansion ends in a catch-all rule: anything after it could never match. */
    if (*skip_space(*p))
        return report(index, start, *p, "a map rule must be the last rule");
    return add_map_rules(map, &r);
}

int xattrmap_parse(const char *text, struct xattrmap **out)
{
    struct xattrmap *map = calloc(1, sizeof(*map));
    unsigned index = 0;
    int ret = map ? 0 : -ENOMEM;

    *out = NULL;
    for (const char *p = skip_space(text); ret == 0 && *p; p = skip_space(p))
        ret = add_next_rule(map, &p, ++index);
    if (ret == 0 && index == 0) {
        fprintf(stderr, "virtiofsd: invalid --xattrmap \"%s\": no rules\n", text);
        ret = -EINVAL;
    }
    if (ret < 0) {
        xattrmap_free(map);
        return ret;
    }
    *out = map;
    return 0;
}

void xattrmap_free(struct xattrmap *map)
{
    if (!map)
        return;
    for (size_t i = 0; i < map->n; i++) {
        free(map->rules[i].key);
        free(map->rules[i].prepend);
    }
    free(map->rules);
    free(map);
}

/* ---- mapping ----------------------------------------------------------------------------- */

/* The first rule of scope whose prefix (key for client names, prepend for host names)
 * starts name, or NULL. */
static const struct rule *find_rule(const struct xattrmap *map, unsigned scope, const char *name)
{
    for (size_t i = 0; i < map->n; i++) {
        const struct rule *r = &map->rules[i];
        bool client = scope == SCOPE_CLIENT;
        const char *prefix = client ? r->key : r->prepend;
        size_t len = client ? r->key_len : r->prepend_len;
        if ((r->scope & scope) && strncmp(name, prefix, len) == 0)
            return r;
    }
    return NULL;
}

int xattrmap_to_host(const struct xattrmap *map, const char *guest, char *buf, size_t size)
{
    const struct rule *r = find_rule(map, SCOPE_CLIENT, guest);

    /* No rule at all is refused too: a map lists what the guest may reach. */
    if (!r || r->type == RT_BAD)
        return -EPERM;
    if (r->type == RT_UNSUPPORTED)
        return -ENOTSUP;
    const char *head = r->type == RT_PREFIX ? r->prepend : "";
    int n = snprintf(buf, size, "%s%s", head, guest);
    return n >= 0 && (size_t)n < size ? 0 : -ERANGE;
}

const char *xattrmap_to_guest(const struct xattrmap *map, const char *host)
{
    const struct rule *r = find_rule(map, SCOPE_SERVER, host);

    if (!r || r->type == RT_BAD || r->type == RT_UNSUPPORTED)
        return NULL;
    const char *guest = r->type == RT_PREFIX ? host + r->prepend_len : host;
    /* A host name that is just the prefix would show up as an empty name: hide it. */
    return *guest ? guest : NULL;
}

size_t xattrmap_list_to_guest(const struct xattrmap *map, char *list, size_t len)
{
    size_t in = 0, out = 0;

    /* Each guest name is a tail of its host name and out never passes in, so the names move
     * only towards the front and the list shrinks in place. */
    while (in < len) {
        char *host = list + in;
        size_t host_len = strnlen(host, len - in);
        if (host_len == len - in)
            break; /* an unterminated last name (the kernel never returns one) */
        const char *guest = host_len ? xattrmap_to_guest(map, host) : NULL;
        if (guest) {
            size_t n = strlen(guest) + 1;
            memmove(list + out, guest, n);
            out += n;
        }
        in += host_len + 1;
    }
    return out;
}
