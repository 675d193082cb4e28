/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The inode table: every host inode the guest holds a FUSE lookup reference to.
 *
 * Two liburcu lock-free hash tables index the same objects:
 *   - by host identity (st_dev, st_ino, mnt_id), so a second LOOKUP of a file finds the
 *     inode the guest already knows and takes another reference on it;
 *   - by nodeid, the 64-bit number the guest uses. Nodeids come from a counter (the root is
 *     FUSE_ROOT_ID), never from pointers, so a nodeid that was never issued or was already
 *     forgotten is simply not found.
 *
 * Lifetime: an inode lives while its lookup count (refcount) is nonzero. References are only
 * ever taken with a compare-and-swap that refuses to increment zero, so a dying inode is never
 * resurrected. Whoever moves the count to zero unlinks the inode from both tables and frees it
 * with call_rcu(), which closes its O_PATH fd after a grace period; an op that found the inode
 * inside rcu_read_lock() may therefore keep using it (and its fd) until rcu_read_unlock().
 *
 * All functions except itab_new/itab_free/itab_clear/itab_count must be called inside
 * rcu_read_lock() from a thread registered with liburcu.
 */
#ifndef VFS_INODE_TABLE_H
#define VFS_INODE_TABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

/* The host identity of an inode. mnt_id tells bind mounts of the same filesystem apart. */
struct itab_key {
    uint64_t dev;
    uint64_t ino;
    uint64_t mnt_id;
};

struct pt_inode {
    /* Immutable after insertion. */
    uint64_t nodeid;
    struct itab_key key;
    int fd;      /* O_PATH|O_NOFOLLOW, owned by the inode */
    mode_t type; /* S_IFMT bits */
    uint64_t generation;

    /* Internal. */
    uint64_t refcount; /* FUSE lookup count; atomic */
    int published;     /* 1 once linked into the key table; atomic */
    bool pinned;       /* the root: never freed by FORGET */
    struct cds_lfht_node key_node;
    struct cds_lfht_node id_node;
    struct rcu_head rcu;
};

struct itab;

int itab_new(struct itab **out);
/* Frees every inode (including the root) and the table. No op may be in flight. */
void itab_free(struct itab *t);

/*
 * Inserts the root: nodeid FUSE_ROOT_ID, pinned. Takes ownership of fd (also on failure).
 * Returns 0 or -errno.
 */
int itab_insert_root(struct itab *t, const struct itab_key *key, int fd, mode_t type,
                     struct pt_inode **out);

/*
 * Returns the inode for key with one more lookup reference, inserting a new inode (which then
 * owns fd) if there is none. fd is always consumed: closed when an existing inode is used or on
 * error. Returns 0 or -errno.
 */
int itab_ref_or_insert(struct itab *t, const struct itab_key *key, int fd, mode_t type,
                       struct pt_inode **out);

/* Finds a live inode by nodeid (NULL if unknown or forgotten). Takes no reference. */
struct pt_inode *itab_get(struct itab *t, uint64_t nodeid);

/* Takes one more lookup reference; false if the inode is already dying. */
bool itab_ref(struct pt_inode *inode);

/* Drops n lookup references (saturating at zero); frees the inode when none remain. */
void itab_unref(struct itab *t, struct pt_inode *inode, uint64_t n);

/* FORGET: itab_unref by nodeid. Unknown nodeids and over-large counts are harmless. */
void itab_forget(struct itab *t, uint64_t nodeid, uint64_t n);

/*
 * Drops every inode except the root and sets the root's count to root_refcount. Safe even if
 * ops run concurrently (each inode is still removed exactly once). Frees happen through
 * call_rcu(); wait with rcu_barrier() (outside rcu_read_lock) to see the fds closed.
 */
void itab_clear(struct itab *t, uint64_t root_refcount);

/* Number of inodes in the nodeid table (for tests and statistics). */
unsigned long itab_count(struct itab *t);

#endif
