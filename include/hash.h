/* SPDX-License-Identifier: Apache-2.0 */
/* The one hash of the lock-free tables (inode_table.c, handle_table.c). */
#ifndef VFS_HASH_H
#define VFS_HASH_H

#include <stdint.h>

/*
 * The splitmix64 finalizer: ids the daemon hands out one after another (nodeids, fh values)
 * and inode numbers, which cluster, spread evenly over a table's buckets.
 */
static inline unsigned long hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (unsigned long)x;
}

#endif
