/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FUSE over virtio: decodes one request from a descriptor chain, dispatches it through the
 * opcode table to the passthrough filesystem, and writes the reply into the chain's
 * device-writable buffers.
 */
#ifndef VFS_FUSE_SERVER_H
#define VFS_FUSE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "passthrough.h"
#include "virtqueue.h"

#define FUSE_MAX_WRITE (1u << 20) /* max_write and max_read offered at INIT */

struct fuse_session;
/* Per-thread scratch buffers; one per worker so requests never share memory. */
struct fuse_scratch;

struct fuse_session *fuse_session_new(struct pt_fs *fs);
void fuse_session_free(struct fuse_session *se);
/* Forgets the negotiated state and every inode and handle: the next request must be INIT.
 * Called with no request in flight (e.g. after a disconnect). */
void fuse_session_reset(struct fuse_session *se);
bool fuse_session_initialized(const struct fuse_session *se);

struct fuse_scratch *fuse_scratch_new(void);
void fuse_scratch_free(struct fuse_scratch *s);

/*
 * Where requests that finish later (a SETLKW that has to wait) are answered: done is called
 * once per such request, from another thread, with a pt_async whose tag is
 * FUSE_LATE_TAG(gen, head) and the result; the queue's owner then walks the chain at head
 * again and writes the reply with fuse_reply_late(). gen lets it drop answers meant for an
 * earlier life of the ring.
 */
struct fuse_sink {
    void (*done)(const struct pt_async *a, int result);
    void *opaque;
    uint32_t gen;
};
#define FUSE_LATE_TAG(gen, head) (((uint64_t)(gen) << 16) | (head))
#define FUSE_LATE_GEN(tag)       ((uint32_t)((tag) >> 16))
#define FUSE_LATE_HEAD(tag)      ((uint16_t)((tag)&0xffff))
#define FUSE_REPLY_LATER         UINT32_MAX

/*
 * Serves the request in elem (a chain popped from a virtqueue) and returns the number of
 * bytes written to its device-writable part: the length to put in the used ring. A request
 * that cannot be answered at all (no room for a reply header) returns 0, logged.
 * FUSE_REPLY_LATER: the request went to sink (which may be NULL: nothing then waits) and the
 * chain must not be returned yet.
 */
uint32_t fuse_session_process(struct fuse_session *se, struct fuse_scratch *s,
                              const struct vq_elem *elem, const struct fuse_sink *sink);

/* Writes the reply (header only, error 0 or -errno) of a request answered late into elem,
 * the chain walked again; returns the used length as fuse_session_process does. */
uint32_t fuse_reply_late(const struct vq_elem *elem, uint64_t unique, int error);

#endif
