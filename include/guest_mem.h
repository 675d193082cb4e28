/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory: the regions the front-end hands over, mapped into our address space.
 * Every translation of a guest-physical or front-end virtual address, and every bounds
 * check on one, happens in guest_mem.c and nowhere else.
 */
#ifndef VFS_GUEST_MEM_H
#define VFS_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define GUEST_MEM_MAX_REGIONS 509 /* what QEMU and cloud-hypervisor use as max slots */

struct guest_region {
    uint64_t gpa;         /* guest-physical start */
    uint64_t size;        /* bytes */
    uint64_t uva;         /* front-end (VMM) virtual start, used for ring addresses */
    uint64_t mmap_offset; /* offset of the region within the fd */
    void *map_base;       /* what mmap returned (covers mmap_offset + size) */
    size_t map_len;
    uint8_t *host; /* map_base + mmap_offset: host address of gpa */
};

/*
 * An immutable snapshot of the memory table. Workers read it under RCU; a change builds a
 * new table, publishes it, waits for a grace period and then unmaps the old one.
 */
struct guest_mem {
    unsigned nregions;
    struct guest_region regions[];
};

/* Description of a region as received from the front-end, before mapping. */
struct guest_region_desc {
    uint64_t gpa, size, uva, mmap_offset;
};

/* Validates desc against fd (size 0, wrap-around, past the end of the file) and maps it. */
int guest_region_map(const struct guest_region_desc *desc, int fd, struct guest_region *out);
void guest_region_unmap(struct guest_region *r);

/* Allocates a table with room for n regions (nregions set to 0). */
struct guest_mem *guest_mem_alloc(unsigned n);
/* Unmaps every region and frees the table. NULL is fine. */
void guest_mem_free(struct guest_mem *mem);
/* True if r overlaps any region of mem in guest-physical space. */
bool guest_mem_overlaps(const struct guest_mem *mem, const struct guest_region_desc *r);

/*
 * Translates [gpa, gpa+len) into host memory that must lie in one region; NULL when any byte
 * is outside guest memory.
 */
void *guest_mem_gpa_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/*
 * Translates [gpa, gpa+len) into host iovecs, splitting at region boundaries, appended at
 * iov[*n]; fails with -EFAULT outside guest memory and -E2BIG when more than max entries are
 * needed.
 */
int guest_mem_gpa_iov(const struct guest_mem *mem, uint64_t gpa, uint32_t len, struct iovec *iov,
                      unsigned max, unsigned *n);

/* Translates a front-end virtual address range (ring addresses) into host memory. */
void *guest_mem_uva_ptr(const struct guest_mem *mem, uint64_t uva, uint64_t len);

#endif
