/* SPDX-License-Identifier: Apache-2.0 */
/* --translate-uid / --translate-gid rules; see include/idmap.h. */
#include "idmap.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACCEPTED_FORMS                                                                             \
    "guest:<guest base>:<host base>:<count>, host:<host base>:<guest base>:<count>, "              \
    "squash-guest:<guest base>:<host id>:<count>, squash-host:<host base>:<guest id>:<count>, "    \
    "forbid-guest:<guest base>:<count>, map:<guest base>:<host base>:<count>"

/* The most numbers any form has; one more is read so that a surplus is noticed. */
#define MAX_FIELDS 3

/* A decimal u32 as Rust's u32::from_str takes it: an optional '+', then digits only. */
static bool parse_u32(const char *s, size_t len, uint32_t *out)
{
    uint64_t v = 0;

    if (len > 0 && s[0] == '+') {
        s++;
        len--;
    }
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

/*
 * Splits "<type><sep><n>[<sep><n>...]": the type is the leading run of letters, digits, '-'
 * and '_' (lowercased into type), and the first other character is the separator of every
 * field after it. Returns the number of fields (up to MAX_FIELDS + 1), or -1 if the type has
 * no separator after it or a field is not a number.
 */
static int split(const char *value, char *type, size_t type_size, uint32_t *fields)
{
    size_t tlen = 0;
    const char *p = value;
    char sep;
    int n = 0;

    while (*p && (isalnum((unsigned char)*p) || *p == '-' || *p == '_')) {
        if (tlen + 1 >= type_size)
            return -1; /* longer than any type */
        type[tlen++] = (char)tolower((unsigned char)*p++);
    }
    type[tlen] = '\0';
    if (!*p)
        return -1;
    sep = *p++;
    for (;;) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (n > MAX_FIELDS || !parse_u32(p, len, &fields[n]))
            return -1;
        n++;
        if (!end)
            return n;
        p = end + 1;
    }
}

/* The rules one option value adds: at most one per direction. */
struct parsed {
    bool has_to_host, has_to_guest;
    struct idmap_rule to_host, to_guest;
};

/* The rules of one type: which direction(s) it feeds, and how its fields are ordered. */
static int classify(const char *type, const uint32_t *f, int n, struct parsed *p)
{
    struct idmap_rule a = {.from = f[0], .to = f[1], .count = f[2]};

    memset(p, 0, sizeof(*p));
    if (strcmp(type, "forbid-guest") == 0) {
        if (n != 2)
            return -1;
        p->has_to_host = true;
        p->to_host = (struct idmap_rule){.kind = IDMAP_FORBID, .from = f[0], .count = f[1]};
        return 0;
    }
    if (n != 3)
        return -1;
    if (strcmp(type, "guest") == 0 || strcmp(type, "squash-guest") == 0) {
        a.kind = strcmp(type, "guest") == 0 ? IDMAP_RANGE : IDMAP_SQUASH;
        p->has_to_host = true;
        p->to_host = a;
    } else if (strcmp(type, "host") == 0 || strcmp(type, "squash-host") == 0) {
        a.kind = strcmp(type, "host") == 0 ? IDMAP_RANGE : IDMAP_SQUASH;
        p->has_to_guest = true;
        p->to_guest = a;
    } else if (strcmp(type, "map") == 0) {
        a.kind = IDMAP_RANGE;
        p->has_to_host = p->has_to_guest = true;
        p->to_host = a;
        p->to_guest =
            (struct idmap_rule){.kind = IDMAP_RANGE, .from = f[1], .to = f[0], .count = f[2]};
    } else {
        return -1;
    }
    return 0;
}

/*
 * Ranges are half-open and must end at or below UINT32_MAX, as in the Rust virtiofsd (its
 * end is a u32 too). The target range of a 1:1 rule is held to the same bound, so that no
 * translation wraps around or lands on (uid_t)-1, which chown reads as "leave unchanged".
 */
static bool in_bounds(const struct idmap_rule *r)
{
    if ((uint64_t)r->from + r->count > UINT32_MAX)
        return false;
    return r->kind != IDMAP_RANGE || (uint64_t)r->to + r->count <= UINT32_MAX;
}

static bool overlaps(const struct idmap_rule *a, const struct idmap_rule *b)
{
    uint64_t a_end = (uint64_t)a->from + a->count, b_end = (uint64_t)b->from + b->count;

    return a->from < b_end && b->from < a_end; /* an empty range overlaps nothing */
}

/* The rule in t that covers id, or NULL. The ranges are disjoint, so there is at most one. */
static const struct idmap_rule *find(const struct idmap_table *t, uint32_t id)
{
    for (size_t i = 0; i < t->n; i++) {
        /* Unsigned: an id below from wraps to a large difference. */
        if (id - t->rules[i].from < t->rules[i].count)
            return &t->rules[i];
    }
    return NULL;
}

/* 0, or -EINVAL after one line naming the option, if r overlaps a rule already in t. */
static int check_disjoint(const struct idmap_table *t, const struct idmap_rule *r, const char *opt,
                          const char *value, const char *dir)
{
    for (size_t i = 0; i < t->n; i++) {
        if (overlaps(&t->rules[i], r)) {
            fprintf(stderr,
                    "virtiofsd: invalid value '%s' for %s: its %s range [%u, %llu) overlaps "
                    "[%u, %llu) of an earlier %s\n",
                    value, opt, dir, (unsigned)r->from, (unsigned long long)r->from + r->count,
                    (unsigned)t->rules[i].from,
                    (unsigned long long)t->rules[i].from + t->rules[i].count, opt);
            return -EINVAL;
        }
    }
    return 0;
}

static int append(struct idmap_table *t, const struct idmap_rule *r)
{
    struct idmap_rule *rules = realloc(t->rules, (t->n + 1) * sizeof(*rules));

    if (!rules)
        return -ENOMEM;
    rules[t->n++] = *r;
    t->rules = rules;
    return 0;
}

int idmap_parse(struct idmap *map, const char *opt, const char *value)
{
    uint32_t fields[MAX_FIELDS + 1] = {0};
    char type[16];
    struct parsed p;
    int n = split(value, type, sizeof(type), fields);

    if (n < 0 || classify(type, fields, n, &p) < 0) {
        fprintf(stderr, "virtiofsd: invalid value '%s' for %s; accepted: %s\n", value, opt,
                ACCEPTED_FORMS);
        return -EINVAL;
    }
    if ((p.has_to_host && !in_bounds(&p.to_host)) || (p.has_to_guest && !in_bounds(&p.to_guest))) {
        fprintf(stderr, "virtiofsd: invalid value '%s' for %s: base + count exceeds 4294967295\n",
                value, opt);
        return -EINVAL;
    }
    /* Check both directions before adding either, so a failure leaves map unchanged. */
    if (p.has_to_host && check_disjoint(&map->to_host, &p.to_host, opt, value, "guest") < 0)
        return -EINVAL;
    if (p.has_to_guest && check_disjoint(&map->to_guest, &p.to_guest, opt, value, "host") < 0)
        return -EINVAL;
    if (p.has_to_host && append(&map->to_host, &p.to_host) < 0)
        return -ENOMEM;
    if (p.has_to_guest && append(&map->to_guest, &p.to_guest) < 0) {
        if (p.has_to_host)
            map->to_host.n--; /* undo: the table keeps its (larger) allocation */
        return -ENOMEM;
    }
    return 0;
}

static int copy_table(struct idmap_table *dst, const struct idmap_table *src)
{
    dst->rules = NULL;
    dst->n = 0;
    if (src->n == 0)
        return 0;
    dst->rules = malloc(src->n * sizeof(*dst->rules));
    if (!dst->rules)
        return -ENOMEM;
    memcpy(dst->rules, src->rules, src->n * sizeof(*dst->rules));
    dst->n = src->n;
    return 0;
}

int idmap_copy(struct idmap *dst, const struct idmap *src)
{
    if (copy_table(&dst->to_host, &src->to_host) < 0 ||
        copy_table(&dst->to_guest, &src->to_guest) < 0) {
        idmap_free(dst);
        return -ENOMEM;
    }
    return 0;
}

void idmap_free(struct idmap *map)
{
    free(map->to_host.rules);
    free(map->to_guest.rules);
    memset(map, 0, sizeof(*map));
}

bool idmap_is_identity(const struct idmap *map)
{
    return map->to_host.n == 0 && map->to_guest.n == 0;
}

/* The target of id under r, which covers it (forbid rules are handled by the caller). */
static uint32_t target(const struct idmap_rule *r, uint32_t id)
{
    return r->kind == IDMAP_RANGE ? r->to + (id - r->from) : r->to;
}

int idmap_to_host(const struct idmap *map, uint32_t guest, uint32_t *host)
{
    const struct idmap_rule *r = find(&map->to_host, guest);

    if (r && r->kind == IDMAP_FORBID)
        return -EPERM;
    *host = r ? target(r, guest) : guest;
    return 0;
}

uint32_t idmap_to_guest(const struct idmap *map, uint32_t host)
{
    const struct idmap_rule *r = find(&map->to_guest, host);

    /* No type puts a forbid rule into this direction; treat one as no match regardless. */
    return r && r->kind != IDMAP_FORBID ? target(r, host) : host;
}
