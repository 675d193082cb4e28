/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the session unit tests (test_session_state.c, test_session_journal.c) share: a
 * temporary share on the host, and FUSE requests handed straight to a session as a queue
 * worker hands them over (a hand-built vq_elem, inside a read-side section, followed by the
 * worker's between-requests and idle steps).
 */
#ifndef VFS_TEST_SESSION_FIXTURE_H
#define VFS_TEST_SESSION_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "fuse_server.h"
#include "virtqueue.h"

/* Room for one reply. */
#define SF_OUT_SIZE (64 * 1024)

/* dir/name (g_free it). */
char *sf_path(const char *dir, const char *name);
void sf_put_file(const char *dir, const char *name, const char *data);
void sf_put_dir(const char *dir, const char *name);
/* Removes the tree below dir and dir itself, and frees the string. */
void sf_remove_tree(char *dir);

struct sf_caller {
    struct fuse_scratch *scratch;
    struct vq_elem *elem;
    uint8_t *out; /* the last reply: header and payload, SF_OUT_SIZE bytes */
};

void sf_caller_init(struct sf_caller *c);
void sf_caller_free(struct sf_caller *c);

struct sf_req {
    uint32_t opcode;
    uint64_t nodeid, unique;
    const void *arg, *extra; /* the request's argument, and what follows it (names, data) */
    size_t arglen, extralen;
    const struct fuse_req_ctx *ctx; /* NULL: a request without a worker's context */
};

/*
 * Runs r on se. FORGET and BATCH_FORGET: 0 (they have no reply). A reply held back
 * (FUSE_REPLY_LATER): 1. Otherwise the reply's header is checked (its length, r->unique) and
 * its error returned; on success the first outlen bytes of its payload are copied to out.
 */
int sf_request(struct sf_caller *c, struct fuse_session *se, const struct sf_req *r, void *out,
               size_t outlen);

#endif
