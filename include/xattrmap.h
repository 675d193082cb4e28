/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --xattrmap: translation of extended attribute names between the guest (the "client") and
 * the host file system (the "server"), with the rule language of the Rust virtiofsd and of
 * QEMU's C virtiofsd, which defined it (doc/xattr-mapping.md there).
 *
 * A map is a list of rules ":type:scope:key:prepend:" whose first character is the rule's
 * separator; ASCII white space may surround rules. type is prefix, ok, bad, unsupported or
 * map; scope is client, server or all. A guest name is matched against the client-scoped
 * rules' keys, a host name against the server-scoped rules' prepends, each as a prefix (an
 * empty one matches every name), and the first matching rule decides. ":map:key:prepend:"
 * is shorthand for the usual set of rules and must be the last rule.
 *
 * Pure functions: no global state, nothing logged except by xattrmap_parse.
 */
#ifndef VFS_XATTRMAP_H
#define VFS_XATTRMAP_H

#include <stddef.h>

struct xattrmap;

/*
 * Parses text into *out. On a syntax error prints one line naming --xattrmap and the bad
 * rule to stderr and returns -EINVAL; -ENOMEM when out of memory.
 */
int xattrmap_parse(const char *text, struct xattrmap **out);
void xattrmap_free(struct xattrmap *map);

/*
 * The host name for a guest name (getxattr, setxattr, removexattr), NUL-terminated in buf.
 * Returns 0; -EPERM when a bad rule or no rule matches, -ENOTSUP for an unsupported rule,
 * -ERANGE when the host name does not fit in size bytes.
 */
int xattrmap_to_host(const struct xattrmap *map, const char *guest, char *buf, size_t size);

/*
 * The guest name for a host name (listxattr): host itself, or its tail after a stripped
 * prefix. NULL when the guest must not see it (bad or unsupported rule, no rule, or nothing
 * left after the prefix).
 */
const char *xattrmap_to_guest(const struct xattrmap *map, const char *host);

/*
 * Rewrites a listxattr result (NUL-terminated names back to back, len bytes) in place into
 * the guest's list: names mapped with xattrmap_to_guest, hidden ones dropped. Returns the
 * new length, never more than len.
 */
size_t xattrmap_list_to_guest(const struct xattrmap *map, char *list, size_t len);

#endif
