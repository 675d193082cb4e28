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

/*
 * Dirty-page logging for live migration (vhost-user SET_LOG_BASE with LOG_SHMFD): a bitmap
 * in memory the front-end shares, one bit per 4 KiB page of guest-physical memory from
 * address 0 (bit n % 8 of byte n / 8 for page n), which the front-end reads and clears while
 * we set bits. Every byte the daemon writes into guest memory while logging is on gets its
 * page's bit set, after the write (see guest_log_write).
 */
#define GUEST_LOG_PAGE 4096u
/* The largest log accepted: 1 GiB of bits covers 32 TiB of guest-physical addresses. */
#define GUEST_LOG_MAX_SIZE (1ull << 30)

struct guest_log {
    uint8_t *bits;  /* the bitmap (host address of the log's offset in its fd) */
    uint64_t size;  /* bytes of bitmap */
    void *map_base; /* what mmap returned */
    size_t map_len;
    bool overflow_logged; /* a write beyond the bitmap's reach was reported */
};

/*
 * Maps size bytes at offset of fd as the log. The front-end's values are checked like a
 * memory region's: size 0 or above GUEST_LOG_MAX_SIZE, offset + size wrapping or past the
 * end of a regular file (or memfd) are refused with -EINVAL. The mapping is registered with
 * the fault handler like guest memory: a log truncated later costs the connection only.
 */
int guest_log_map(int fd, uint64_t size, uint64_t offset, struct guest_log **out);
/* Unmaps and frees; NULL is fine. No thread may still be writing to it (RCU grace period). */
void guest_log_unmap(struct guest_log *log);
/*
 * Marks the pages of [gpa, gpa + len) dirty, atomically (the front-end clears bits
 * concurrently). Called after the bytes were written: a release fence orders them before the
 * bits, so a front-end that sees the bit and copies the page copies the new bytes. A range
 * beyond the bitmap is logged once and otherwise ignored (a front-end's sizing error).
 */
void guest_log_write(struct guest_log *log, uint64_t gpa, uint64_t len);

/*
 * Guest memory that vanishes under us. The front-end may shrink the file behind a region
 * after handing it over (ftruncate of an unsealed memfd, a /dev/shm or hugetlbfs file): the
 * next access to the lost pages raises SIGBUS in whichever thread makes it. The fault handler
 * turns that into the loss of the connection instead of the process: the region is replaced
 * by anonymous zero pages (reads see zeros, writes go nowhere), the fault is recorded, and
 * the fault socket is shut down so that the thread polling the connection wakes up.
 * Accesses from system calls (preadv/pwritev on guest buffers) fail with EFAULT instead.
 */

/* Installs the SIGBUS handler, once at start-up. Faults outside guest memory keep the
 * disposition found here (a real bug still dumps core). 0 or a negative errno. */
int guest_mem_install_fault_handler(void);

/* What the handler recorded about the first fault since guest_mem_fault_clear(). */
struct guest_mem_fault {
    uint64_t region_gpa, region_size; /* the region that lost its backing */
    uint64_t gpa;                     /* the guest-physical address touched */
    uintptr_t addr;                   /* the host address touched (si_addr) */
    bool dirty_log; /* it was the dirty-page log (region_size: its size), not guest memory */
};

/* True once a fault hit guest memory (cheap: threads use it to leave the rings alone). */
bool guest_mem_faulted(void);
/* True, with *f filled, the first time it is called after a fault: for logging it once. */
bool guest_mem_fault_take(struct guest_mem_fault *f);
/* Forgets the fault; call when no region of the session that faulted is mapped any more. */
void guest_mem_fault_clear(void);
/*
 * The socket the handler shuts down (shutdown(2) SHUT_RDWR) on a fault, -1 for none. The fd
 * must stay open until it is replaced here and no thread can still fault on guest memory.
 */
void guest_mem_set_fault_socket(int fd);

#endif
