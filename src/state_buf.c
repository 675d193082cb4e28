/* SPDX-License-Identifier: Apache-2.0 */
#include "state_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void state_buf_put(struct state_buf *b, const void *data, size_t n)
{
    if (b->err)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *q;

        while (cap < b->len + n)
            cap *= 2;
        if (b->max && cap > b->max) {
            b->err = -EFBIG;
            return;
        }
        if (!(q = realloc(b->p, cap))) {
            b->err = -ENOMEM;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}
