/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UID/GID translation between guest and host: --translate-uid and --translate-gid, with the
 * syntax and meaning the Rust virtiofsd (1.13) gives them.
 *
 * One option value is "<type>:<a>:<b>:<count>" (forbid-guest: "<type>:<a>:<count>"):
 *
 *   guest:<guest base>:<host base>:<count>     guest ids -> host ids, 1:1
 *   host:<host base>:<guest base>:<count>      host ids -> guest ids, 1:1
 *   squash-guest:<guest base>:<host id>:<count>  a range of guest ids -> one host id
 *   squash-host:<host base>:<guest id>:<count>   a range of host ids -> one guest id
 *   forbid-guest:<guest base>:<count>          a range of guest ids is refused (EPERM)
 *   map:<guest base>:<host base>:<count>       guest:... and host:... at once (both ways)
 *
 * The type is case-insensitive; the separator is ':' or any other character that is not a
 * letter, digit, '-' or '_', the same one throughout. Numbers are decimal u32 ("+" allowed).
 * A range is [base, base + count), and base + count may not exceed 4294967295. Each direction
 * is a separate table (the two need not be inverses of each other), and within one table no
 * two ranges may overlap, so at most one rule matches an id. An id that no rule matches passes
 * unchanged.
 */
#ifndef VFS_IDMAP_H
#define VFS_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum idmap_kind {
    IDMAP_RANGE,  /* [from, from + count) -> [to, to + count) */
    IDMAP_SQUASH, /* [from, from + count) -> to */
    IDMAP_FORBID, /* [from, from + count) -> refused */
};

/* One rule of one direction. */
struct idmap_rule {
    enum idmap_kind kind;
    uint32_t from, count, to;
};

/* The rules of one direction, in no particular order (their ranges are disjoint). */
struct idmap_table {
    struct idmap_rule *rules;
    size_t n;
};

/* The translation of one kind of id (uids or gids). All zero: the identity both ways. */
struct idmap {
    struct idmap_table to_host;  /* guest -> host: guest, squash-guest, forbid-guest, map */
    struct idmap_table to_guest; /* host -> guest: host, squash-host, map */
};

/*
 * Parses one option value (opt names the option in messages, e.g. "--translate-uid") and adds
 * its rules to map. Returns 0, -EINVAL after printing one line to stderr (bad syntax, base +
 * count past 4294967295, or a range overlapping an earlier one of the same direction), or
 * -ENOMEM.
 * map is unchanged on failure.
 */
int idmap_parse(struct idmap *map, const char *opt, const char *value);

/* A deep copy into dst (overwritten). Returns 0 or -ENOMEM (dst then empty). */
int idmap_copy(struct idmap *dst, const struct idmap *src);

/* Frees the rules; map becomes empty (the identity). */
void idmap_free(struct idmap *map);

/* True if map translates nothing in either direction. */
bool idmap_is_identity(const struct idmap *map);

/* The host id for guest id: 0, or -EPERM if a forbid-guest rule covers it. */
int idmap_to_host(const struct idmap *map, uint32_t guest, uint32_t *host);

/* The guest id for host id (there is no refusal in this direction). */
uint32_t idmap_to_guest(const struct idmap *map, uint32_t host);

#endif
