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
 * with call_rcu(), which closes its O_PATH fd (or frees its file handle) after a grace period;
 * an op that found the inode inside rcu_read_lock() may therefore keep using it (and its fd)
 * until rcu_read_unlock().
 *
 * An inode holds either an O_PATH fd or, with --inode-file-handles, only a file handle (fd -1;
 * pt_core.h's pt_inode_fd opens it when an op needs an fd). A handle-only inode
 * does not keep its host inode alive: if the file is deleted on the host, its inode number may
 * be reused by a new file, so a lookup that finds such an inode under the key checks the
 * handle (itab_find_ref's stale callback) and replaces a stale one.
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

struct pt_fhandle;

/* The host identity of an inode. mnt_id tells bind mounts of the same filesystem apart. */
struct itab_key {
    uint64_t dev;
    uint64_t ino;
    uint64_t mnt_id;
};

/*
 * Where an inode's O_PATH fd can be opened again after the fd cache (below) closed it: the
 * name it was last seen under and its directory's nodeid. Replaced whole (RCU), never edited.
 */
struct pt_loc {
    struct rcu_head rcu;
    uint64_t parent;
    char name[];
};

/* Laid out to fit 120 bytes (a 128-byte allocation): a daemon may hold millions. */
struct pt_inode {
    /* Immutable after insertion. */
    uint64_t nodeid;
    struct itab_key key;
    struct pt_fhandle *fh; /* the file handle of a handle-only inode, owned; else NULL */

    struct pt_loc *loc; /* RCU-protected; NULL: fd stays open as long as the inode */
    uint64_t refcount;  /* FUSE lookup count; atomic */
    /*
     * O_PATH|O_NOFOLLOW, owned by the inode; -1 if handle-only, or while the fd cache has
     * closed it (then loc says where to open it again). Atomic: read with itab_inode_fd.
     */
    int fd;
    uint32_t slot;     /* 1 + index in the fd cache's clock, 0: not there; under its lock */
    uint16_t type;     /* S_IFMT bits; immutable */
    uint8_t used;      /* the clock's reference bit: set by every use of fd; atomic */
    uint8_t published; /* 1 once linked into the key table; atomic */
    bool pinned;       /* the root: never freed by FORGET */
    /* 1 while the guest unlinked the file and the daemon keeps it under its hidden name in
     * the share's root (pt_core.c, "deferred removal"); atomic. */
    uint8_t hidden;
    uint8_t closing; /* its fd counts as closing until the inode is freed (inode_table.c) */

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

/*
 * Called on a live inode found under a key: true if it is stale, i.e. not the file the caller
 * found (a handle-only inode whose host inode was deleted and its number reused).
 */
typedef bool (*itab_stale_fn)(const struct pt_inode *inode, void *arg);

/*
 * Returns the live inode for key with one more lookup reference, or NULL if there is none. An
 * inode stale() (may be NULL) rejects is unlinked from the key table instead, and NULL
 * returned, so that the caller inserts a new inode; it lives on under its nodeid until
 * forgotten.
 */
struct pt_inode *itab_find_ref(struct itab *t, const struct itab_key *key, itab_stale_fn stale,
                               void *arg);

/*
 * Inserts a new inode for key owning fd (-1: none) and fh (NULL: none), or, if another thread
 * inserted one meanwhile, references that one. loc (NULL: none) is where fd can be opened
 * again: an inode with one keeps fd only while the fd cache has room. fd, fh and loc are
 * always consumed (released when not used or on error). Returns 0 or -errno.
 */
int itab_insert(struct itab *t, const struct itab_key *key, int fd, struct pt_fhandle *fh,
                struct pt_loc *loc, mode_t type, struct pt_inode **out);

/* Number of inodes holding an fd, in every table of the process (RLIMIT_NOFILE is per
 * process): what the automatic --inode-file-handles mode budgets. */
unsigned long itab_fd_inodes(void);

/*
 * ---- the fd cache ----
 *
 * An inode that keeps an O_PATH fd pins one of the process's open files, and a guest can learn
 * any number of inodes. So the table bounds the fds of the inodes that have a place to open
 * them again (a pt_loc, the name the inode was last seen under): an inode keeps an fd only
 * while the inodes' fds and the others counted with them (open handles) stay under the cap.
 * Near the cap, the clock (second chance: every use sets the inode's used bit) picks the fds
 * of the inodes used least lately, and itab_fd_reclaim closes them after an RCU grace period,
 * outside any read-side section, so that an op that read such an fd may finish with it. An op
 * that finds the fd closed opens it again (pt_core.c) and gives it back with itab_fd_install
 * while there is room, or uses it for itself. Inodes without a pt_loc (the root, one the guest
 * unlinked, one restored from a migration) keep their fds.
 */

/* This thread's view of inode's fd: -1 if it has none now. Marks the inode used. */
static inline int itab_inode_fd(struct pt_inode *inode)
{
    if (!__atomic_load_n(&inode->used, __ATOMIC_RELAXED))
        __atomic_store_n(&inode->used, 1, __ATOMIC_RELAXED);
    return __atomic_load_n(&inode->fd, __ATOMIC_ACQUIRE);
}

/*
 * At most cap fds for t's inodes together with *others (other fds drawn from the same budget,
 * read atomically: open handles), as far as inodes can give theirs back. cap 0: no bound (the
 * default); others may be NULL.
 */
void itab_set_fd_cap(struct itab *t, unsigned long cap, const unsigned long *others);
/* Inodes of t holding an fd now. */
unsigned long itab_fds(struct itab *t);
/* Whether t's cache ever closed an fd (until then every inode with a place still has its fd). */
bool itab_fd_evicting(struct itab *t);

/* A place for itab_insert: name in directory parent (malloc'd; NULL when out of memory). */
struct pt_loc *itab_loc_new(uint64_t parent, const char *name);

/*
 * Gives inode (whose fd the cache closed) the O_PATH fd just opened for it. True: the inode
 * owns fd now (valid until the caller's rcu_read_unlock at least); false: no room, another
 * thread gave it one first, or the inode is being forgotten, and the caller still owns fd.
 */
bool itab_fd_install(struct itab *t, struct pt_inode *inode, int fd);

/*
 * Sets where inode can be opened again: name in the directory nodeid parent. name NULL: the
 * inode keeps its fd for good (a file the guest unlinked: no name leads to it any more);
 * -EAGAIN if it has none now. 0 or -errno (-ENOMEM: the inode keeps the place it had).
 * Inside rcu_read_lock().
 */
int itab_set_loc(struct itab *t, struct pt_inode *inode, uint64_t parent, const char *name);

/* Asks the next itab_fd_reclaim to close n cached fds (room for other fds: open handles). */
void itab_fd_evict(struct itab *t, unsigned long n);

/*
 * Closes the fds the clock picks when room was asked for (near the cap, or itab_fd_evict);
 * nothing otherwise (one atomic load). Waits for a grace period: call it outside any read-side
 * section, from a registered thread (a queue worker between requests).
 */
void itab_fd_reclaim(struct itab *t);

/* Whether inode was lost by a migration: no fd, no file handle, nowhere to reopen it. */
static inline bool itab_inode_lost(const struct pt_inode *inode)
{
    return __atomic_load_n(&inode->fd, __ATOMIC_ACQUIRE) < 0 && !inode->fh &&
           !__atomic_load_n(&inode->loc, __ATOMIC_ACQUIRE);
}

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

/*
 * Migration (pt_state.c): inserts an inode under a nodeid chosen by the caller (a saved one,
 * never FUSE_ROOT_ID) with refcount lookup references, already published. fd, fh and loc are
 * consumed as in itab_insert. -EEXIST if the nodeid or the key is taken (nothing is
 * referenced then), -EINVAL for nodeid 0, FUSE_ROOT_ID or refcount 0. Inside rcu_read_lock().
 */
int itab_insert_at(struct itab *t, uint64_t nodeid, const struct itab_key *key, int fd,
                   struct pt_fhandle *fh, struct pt_loc *loc, mode_t type, uint64_t refcount,
                   struct pt_inode **out);

/* The last nodeid handed out, and setting it (migration: new nodeids continue after it). */
uint64_t itab_last_nodeid(struct itab *t);
void itab_set_last_nodeid(struct itab *t, uint64_t last);

/*
 * Calls fn on every live inode (the root included) until it returns nonzero, which is
 * returned. Takes rcu_read_lock() itself; fn may block. For a table no op changes meanwhile
 * (migration runs with the rings stopped).
 */
int itab_for_each(struct itab *t, int (*fn)(struct pt_inode *inode, void *arg), void *arg);

/* Live inodes, counted as they are added and removed (cheap, unlike itab_count). */
unsigned long itab_live(struct itab *t);

/* Number of inodes in the nodeid table (for tests and statistics). */
unsigned long itab_count(struct itab *t);

#endif
