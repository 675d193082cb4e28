/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Walking iovec arrays: the guest's buffers arrive as a descriptor chain translated to host
 * iovecs (virtqueue.h), and requests are read from, replies written to and file I/O done on
 * byte ranges of them. Every function here takes the range as "skip bytes, then len bytes"
 * and stops at the end of the array: a range beyond it is cut short, never an error.
 */
#ifndef VFS_IOV_H
#define VFS_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/* Total bytes in iov[0, n). */
size_t iov_size(const struct iovec *iov, unsigned n);

/* Copies up to len bytes of iov after skip bytes into buf; returns the bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);

/* Copies up to len bytes of buf into iov after skip bytes; returns the bytes copied. */
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);

/*
 * Fills dst[0, max) with the iovecs covering [skip, skip + len) of src, pointing into the
 * same memory; returns how many it filled. dst NULL: only counts how many it would need.
 */
unsigned iov_slice(const struct iovec *src, unsigned n, size_t skip, size_t len, struct iovec *dst,
                   unsigned max);

/*
 * Drops the first bytes of the array *iov of *n entries in place, for a transfer that went
 * part of the way: whole entries are stepped over (*iov and *n move), a partly used one is
 * shortened. Returns the bytes dropped (less than bytes only when the array ran out).
 */
size_t iov_discard_front(struct iovec **iov, unsigned *n, size_t bytes);

#endif
