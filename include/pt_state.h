/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough's part of a migration (src/pt_state.c): every inode the guest knows and
 * every open handle, collected from a pt_fs (SAVE) or installed into a fresh one (LOAD), as
 * plain structs. The byte format is session_state.c's; this module knows the file system.
 *
 * It sits beside the op files: it calls the core (pt_core.h) and the tables, and no op file
 * calls it. Both directions run with the rings stopped: no op is in flight.
 */
#ifndef VFS_PT_STATE_H
#define VFS_PT_STATE_H

#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "passthrough.h"

/* Bounds a LOAD checks before it allocates anything for a count the stream claims. */
#define PT_STATE_MAX_INODES  (1u << 24)
#define PT_STATE_MAX_HANDLES (1u << 24)
/* Largest id counter accepted: far from wrapping to 0 however long the session goes on. */
#define PT_STATE_MAX_ID (UINT64_C(1) << 62)

struct pt_state_inode {
    uint64_t nodeid;
    uint64_t nlookup; /* the guest's lookup count (FORGETs still to come) */
    uint32_t type; /* S_IFMT bits; 0: unknown (the Rust format's), the LOAD takes what it finds */
    bool lost;     /* not found: after LOAD every request on it answers EIO */
    uint64_t dev, ino;
    size_t path_off; /* in pt_state.paths: NUL-terminated, relative to the share's root,
                      * components joined by '/'; "" for the root; unused when lost */
};

struct pt_state_handle {
    uint64_t fh;
    uint64_t nodeid;
    uint32_t flags; /* the host open flags (O_ACCMODE, O_APPEND, O_DIRECT, ...) */
    bool dir;
};

struct pt_state {
    uint64_t last_nodeid, last_fh; /* the id counters: the last ids handed out */
    struct pt_state_inode *inodes;
    size_t n_inodes, cap_inodes;
    struct pt_state_handle *handles;
    size_t n_handles, cap_handles;
    char *paths; /* every inode's path, back to back */
    size_t paths_len, paths_cap;
    /* Why the last failed call failed (for the one log line of the caller). */
    char why[256];
};

/* Open flags a saved handle may carry (anything else is refused on LOAD). O_CREAT, O_EXCL
 * and O_TRUNC are accepted and dropped: reopening must neither create nor truncate. */
#define PT_STATE_OPEN_FLAGS                                                                        \
    (O_ACCMODE | O_APPEND | O_DIRECT | O_DSYNC | O_SYNC | O_NOATIME | O_NONBLOCK | O_LARGEFILE |   \
     O_DIRECTORY)
#define PT_STATE_OPEN_DROPPED (O_CREAT | O_EXCL | O_TRUNC)

void pt_state_init(struct pt_state *st);
void pt_state_free(struct pt_state *st);
/* Appends an inode; path (len bytes, NULL when lost) is copied. 0 or -ENOMEM. */
int pt_state_add_inode(struct pt_state *st, const struct pt_state_inode *in, const char *path,
                       size_t len);
int pt_state_add_handle(struct pt_state *st, const struct pt_state_handle *h);
static inline const char *pt_state_path(const struct pt_state *st, const struct pt_state_inode *i)
{
    return i->lost ? NULL : st->paths + i->path_off;
}

/*
 * SAVE: every inode of fs with its path (--migration-mode=find-paths: the inode's fd read back
 * through /proc/self/fd, then confirmed by resolving it again; a walk of the share for those
 * not found so), every handle with its flags, the counters. An inode found nowhere fails the
 * whole SAVE, or with --migration-on-error=guest-error is saved as lost. 0 or -errno (and
 * st->why).
 */
int pt_state_collect(struct pt_fs *fs, struct pt_state *st);

/*
 * LOAD, before anything is changed: the state is consistent (the root is nodeid 1 with the
 * empty path, no nodeid or fh twice, no nodeid 0, every handle's inode present and of the
 * handle's kind, paths made of plain names, counters not behind any id). 0 or -EINVAL (and
 * st->why).
 */
int pt_state_check(struct pt_state *st);

/*
 * LOAD: installs a checked state into fs, which must be fresh (pt_reset): each inode found
 * again beneath the share under its saved path, compared by file type (and st_dev/st_ino with
 * --migration-verify-handles), inserted with its nodeid and lookup count; each handle reopened
 * and inserted with its fh; the counters set. An inode not found fails it, or is installed as
 * lost with --migration-on-error=guest-error (its handles are then dropped). 0 or -errno (and
 * st->why); on failure the caller resets fs.
 */
int pt_state_install(struct pt_fs *fs, struct pt_state *st);

#endif
