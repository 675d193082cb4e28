/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Rust virtiofsd 1.13's migration state stream (src/state_rust.c), so that a VM moves
 * between it and this daemon in both directions: LOAD reads it (session_state.c tells it from
 * ours by its first byte), and SAVE writes it with --migration-format=rust.
 *
 * The decoder and encoder are pure (bytes <-> struct pt_state plus the few INIT results the
 * format carries), for the unit tests and the fuzz harness; rust_state_parse adds what needs
 * the session (the INIT this daemon goes on with, its options).
 */
#ifndef VFS_STATE_RUST_H
#define VFS_STATE_RUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse_server.h"
#include "pt_state.h"

/* What the Rust format says of FUSE INIT ("negotiated options"), and which version it was. */
struct rust_state_opts {
    unsigned version; /* 1 or 2 (the variant of the stream's top-level enum) */
    bool writeback, announce_submounts, posix_acl, sup_group_extension;
};

/*
 * True if buf is, by its first byte, a Rust virtiofsd stream: that byte is the varint tag of
 * its versioned top-level enum (0 for V1, 1 for V2), where ours starts with 'V' ("VFSDST\r\n").
 * Anything else is neither, and ours refuses it for its bad magic.
 */
bool rust_state_recognised(const uint8_t *buf, size_t len);

/*
 * Decodes a whole Rust stream into st (inodes with their paths from the share's root, file
 * types unknown (0) but the root's; handles with host open flags; the counters) and *opts.
 * Every count and length is bounded by what is left; parent references are followed with
 * cycles and missing parents refused; names are checked as our own format's. It does not run
 * pt_state_check. 0, or -EINVAL/-ENOMEM with the reason in st->why.
 */
int rust_state_decode(const uint8_t *buf, size_t len, struct pt_state *st,
                      struct rust_state_opts *opts);

/*
 * For LOAD: decodes, checks (pt_state_check) and makes up the INIT results this daemon goes
 * on with (the Rust format keeps only four of them: the rest is what this daemon offers with
 * its options, limited to what the Rust daemon agrees to). *initialized is false for a
 * session that never mounted (no inodes). 0 or -errno (st->why).
 */
int rust_state_parse(struct fuse_session *se, const uint8_t *buf, size_t len, bool *initialized,
                     struct fuse_session_init *init, struct pt_state *st);

/*
 * For SAVE with --migration-format=rust: encodes a collected state. What the format cannot
 * carry (a name that is not UTF-8, a held lock) fails it with -ENOTSUP, or with
 * on_error_guest (--migration-on-error=guest-error) the inode is sent as lost (the lock
 * dropped), with a warning. *out is malloc'ed. 0 or -errno (st->why).
 */
int rust_state_encode(struct pt_state *st, bool initialized, const struct fuse_session_init *init,
                      bool on_error_guest, uint8_t **out, size_t *len);

#endif
