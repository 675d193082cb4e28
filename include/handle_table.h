/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Open file and directory handles (the FUSE "fh"), in a liburcu lock-free hash table.
 *
 * fh values come from a counter, so an fh that was never issued or was already released is
 * simply not found. RELEASE unlinks the handle and puts it on a list of released handles:
 * an op that found the handle inside rcu_read_lock() may keep using its fd until
 * rcu_read_unlock(), and htab_reclaim closes the fd after a grace period, between requests.
 * Not call_rcu: its thread batches for 10 ms and more, and a guest that opens and closes
 * thousands of directories a second would have hundreds of fds waiting to be closed.
 *
 * htab_add/htab_get/htab_remove must be called inside rcu_read_lock() from a thread registered
 * with liburcu.
 */
#ifndef VFS_HANDLE_TABLE_H
#define VFS_HANDLE_TABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

/* Bytes of getdents64 records a READDIR reads at most at once. */
#define PT_DIRBUF_SIZE 16384

/*
 * Directory stream state, serialised by lock (READDIRs of one handle may run concurrently).
 * The records a READDIR reads live in a buffer of that READDIR only: a guest may hold as many
 * directory handles as it has fds and leave each one half read, so a handle keeps nothing
 * but its position between READDIRs.
 */
struct pt_dirstream {
    pthread_mutex_t lock;
    off_t pos;   /* the d_off cookie of the next entry to return (0: the start) */
    bool synced; /* the fd's own position is pos (else the next READDIR seeks there) */
};

struct pt_handle {
    uint64_t fh;
    uint64_t nodeid; /* the inode it was opened on; requests must name the same one */
    int fd;
    struct pt_dirstream *dir; /* NULL for files */

    struct cds_lfht_node node;
    struct pt_handle *released_next; /* on the released list (handle_table.c) */
};

struct htab;

/* Open handles (each holds an fd) in every table of the process, as a counter the inode
 * table's fd cache can read (RLIMIT_NOFILE is per process); atomic. */
const unsigned long *htab_fd_counter(void);

int htab_new(struct htab **out);
/* Frees every handle and the table. No op may be in flight; not inside rcu_read_lock(). */
void htab_free(struct htab *t);

/*
 * Closes the fds of released handles after a grace period: when RELEASE_BATCH wait, or the
 * oldest has waited RELEASE_WAIT_NS, or always when idle (nothing else to serve). Outside any
 * read-side section, from a registered thread; costs a load and a clock read when there is
 * nothing to do.
 */
void htab_reclaim(struct htab *t, bool idle);

/*
 * Creates a handle for fd (taking ownership of it, also on failure) and returns its fh.
 * dir: allocate directory stream state. Returns 0 or -errno.
 */
int htab_add(struct htab *t, uint64_t nodeid, int fd, bool dir, uint64_t *fh);

/* The handle fh opened on nodeid, or NULL (unknown, released, or another inode's). */
struct pt_handle *htab_get(struct htab *t, uint64_t fh, uint64_t nodeid);

/* RELEASE: unlinks and frees the handle. Returns 0 or -EBADF. */
int htab_remove(struct htab *t, uint64_t fh, uint64_t nodeid);

/*
 * Migration (pt_state.c): a handle under an fh chosen by the caller (a saved one). fd is
 * consumed. -EEXIST if fh is taken, -EINVAL for fh 0. Inside rcu_read_lock().
 */
int htab_insert_at(struct htab *t, uint64_t fh, uint64_t nodeid, int fd, bool dir);

/* The last fh handed out, and setting it (migration: new handles continue after it). */
uint64_t htab_last_fh(struct htab *t);
void htab_set_last_fh(struct htab *t, uint64_t last);

/* Calls fn on every handle until it returns nonzero, which is returned; as itab_for_each. */
int htab_for_each(struct htab *t, int (*fn)(struct pt_handle *h, void *arg), void *arg);

/* Drops every handle (frees through call_rcu). Safe even if ops run concurrently. */
void htab_clear(struct htab *t);

#endif
