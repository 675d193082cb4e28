/* SPDX-License-Identifier: Apache-2.0 */
/* Growing a heap array by doubling: the one helper the state models (pt_state.c, the session
 * journal's replay) build their arrays with. */
#ifndef VFS_ARRAY_GROW_H
#define VFS_ARRAY_GROW_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Makes room for need elements of size bytes in *p (capacity *cap elements), doubling from 64;
 * never more than max elements (a bound on what hostile input can make us allocate). 0, or
 * -ENOMEM with *p and *cap unchanged.
 */
static inline int array_grow(void **p, size_t *cap, size_t need, size_t size, size_t max)
{
    size_t n = *cap ? *cap : 64;
    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    void *q;
    if (n > SIZE_MAX / size || n > max || !(q = realloc(*p, n * size)))
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

#endif
