/* SPDX-License-Identifier: Apache-2.0 */
/* Walking iovec arrays; see include/iov.h. */
#include "iov.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/*
 * The one walker: the index of the entry holding byte *skip of iov[0, n), with *skip turned
 * into the offset inside it; n when the array ends first. Empty entries are stepped over.
 */
static unsigned iov_seek(const struct iovec *iov, unsigned n, size_t *skip)
{
    unsigned i = 0;
    while (i < n && *skip >= iov[i].iov_len) {
        *skip -= iov[i].iov_len;
        i++;
    }
    return i;
}

size_t iov_size(const struct iovec *iov, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

/* Copies between buf and [skip, skip + len) of iov, in the direction to_iov says. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip, uint8_t *buf, size_t len,
                       bool to_iov)
{
    size_t done = 0;
    for (unsigned i = iov_seek(iov, n, &skip); i < n && done < len; i++, skip = 0) {
        size_t chunk = iov[i].iov_len - skip;
        if (chunk > len - done)
            chunk = len - done;
        uint8_t *p = (uint8_t *)iov[i].iov_base + skip;
        if (to_iov)
            memcpy(p, buf + done, chunk);
        else
            memcpy(buf + done, p, chunk);
        done += chunk;
    }
    return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
    return iov_copy(iov, n, skip, buf, len, false);
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len)
{
    /* The cast only shares iov_copy: with to_iov set it reads buf and never writes it. */
    return iov_copy(iov, n, skip, (uint8_t *)(uintptr_t)buf, len, true);
}

unsigned iov_slice(const struct iovec *src, unsigned n, size_t skip, size_t len, struct iovec *dst,
                   unsigned max)
{
    unsigned out = 0;
    for (unsigned i = iov_seek(src, n, &skip); i < n && len > 0 && (!dst || out < max);
         i++, skip = 0) {
        size_t chunk = src[i].iov_len - skip;
        if (chunk == 0)
            continue; /* an empty entry would only use up a slot of dst */
        if (chunk > len)
            chunk = len;
        if (dst)
            dst[out] =
                (struct iovec){.iov_base = (uint8_t *)src[i].iov_base + skip, .iov_len = chunk};
        out++;
        len -= chunk;
    }
    return out;
}

size_t iov_discard_front(struct iovec **iov, unsigned *n, size_t bytes)
{
    size_t left = bytes;
    unsigned i = iov_seek(*iov, *n, &left);
    size_t dropped = bytes - left;
    *iov += i;
    *n -= i;
    if (*n > 0 && left > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + left;
        (*iov)->iov_len -= left;
        dropped += left;
    }
    return dropped;
}
