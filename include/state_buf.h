/* SPDX-License-Identifier: Apache-2.0 */
/* A growing byte buffer for writing a migration state stream (ours and the Rust format's). */
#ifndef VFS_STATE_BUF_H
#define VFS_STATE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct state_buf {
    uint8_t *p; /* malloc'ed; the caller frees it */
    size_t len, cap;
    size_t max; /* bytes the stream may grow to (-EFBIG beyond); 0: no bound of its own */
    int err;    /* the first failure; every later put is a no-op */
};

/* Appends n bytes of data; on failure records -ENOMEM or -EFBIG in b->err. */
void state_buf_put(struct state_buf *b, const void *data, size_t n);

#endif
