/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one place where addresses coming from the front-end or the guest are translated and
 * bounds-checked. All arithmetic is written so that it cannot wrap: a check of the form
 * "addr - start < size" never overflows, unlike "addr + len <= start + size".
 */
#include "guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int check_region_desc(const struct guest_region_desc *d, int fd)
{
    if (d->size == 0)
        return -EINVAL;
    if (d->gpa + d->size - 1 < d->gpa || d->uva + d->size - 1 < d->uva)
        return -EINVAL; /* the region would wrap around 2^64 */
    if (d->mmap_offset + d->size < d->mmap_offset || d->size > SIZE_MAX)
        return -EINVAL;

    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    /*
     * Mapping past the end of a regular file or memfd would turn a later guest access into
     * SIGBUS in a worker; refuse it now. Other fd types (e.g. /dev/shm devices) have no
     * meaningful size to check.
     */
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < d->mmap_offset + d->size)
        return -EINVAL;
    return 0;
}

int guest_region_map(const struct guest_region_desc *desc, int fd, struct guest_region *out)
{
    int ret = check_region_desc(desc, fd);
    if (ret < 0)
        return ret;

    /* mmap wants a page-aligned offset; map from the page holding mmap_offset. */
    long page = sysconf(_SC_PAGESIZE);
    uint64_t aligned = desc->mmap_offset & ~((uint64_t)page - 1);
    uint64_t slack = desc->mmap_offset - aligned;
    size_t len = (size_t)(desc->size + slack);
    void *base =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, (off_t)aligned);
    if (base == MAP_FAILED)
        return -errno;
    /* Guest memory never goes into a core dump: it may hold the guest's secrets. */
    madvise(base, len, MADV_DONTDUMP);

    *out = (struct guest_region){
        .gpa = desc->gpa,
        .size = desc->size,
        .uva = desc->uva,
        .mmap_offset = desc->mmap_offset,
        .map_base = base,
        .map_len = len,
        .host = (uint8_t *)base + slack,
    };
    return 0;
}

void guest_region_unmap(struct guest_region *r)
{
    if (r->map_base && munmap(r->map_base, r->map_len) < 0)
        log_warn("munmap of guest region at gpa 0x%llx failed: %m", (unsigned long long)r->gpa);
    r->map_base = NULL;
}

struct guest_mem *guest_mem_alloc(unsigned n)
{
    struct guest_mem *mem = calloc(1, sizeof(*mem) + (size_t)n * sizeof(mem->regions[0]));
    return mem;
}

void guest_mem_free(struct guest_mem *mem)
{
    if (!mem)
        return;
    for (unsigned i = 0; i < mem->nregions; i++)
        guest_region_unmap(&mem->regions[i]);
    free(mem);
}

bool guest_mem_overlaps(const struct guest_mem *mem, const struct guest_region_desc *r)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        const struct guest_region *g = &mem->regions[i];
        /* Inclusive ends: neither range wraps (checked when each was accepted). */
        if (r->gpa <= g->gpa + g->size - 1 && g->gpa <= r->gpa + r->size - 1)
            return true;
    }
    return false;
}

static const struct guest_region *find_gpa(const struct guest_mem *mem, uint64_t gpa)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (gpa - r->gpa < r->size) /* unsigned: also false when gpa < r->gpa */
            return r;
    }
    return NULL;
}

void *guest_mem_gpa_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    const struct guest_region *r = find_gpa(mem, gpa);
    if (!r)
        return NULL;
    uint64_t off = gpa - r->gpa;
    if (len > r->size - off)
        return NULL;
    return r->host + off;
}

int guest_mem_gpa_iov(const struct guest_mem *mem, uint64_t gpa, uint32_t len, struct iovec *iov,
                      unsigned max, unsigned *n)
{
    if (len > 0 && gpa + len - 1 < gpa)
        return -EFAULT; /* wraps around 2^64 */
    while (len > 0) {
        const struct guest_region *r = find_gpa(mem, gpa);
        if (!r)
            return -EFAULT;
        uint64_t off = gpa - r->gpa;
        uint64_t avail = r->size - off;
        uint32_t chunk = avail < len ? (uint32_t)avail : len;
        void *host = r->host + off;

        /* Merge with the previous entry when contiguous: fewer iovecs per syscall. */
        if (*n > 0 && (uint8_t *)iov[*n - 1].iov_base + iov[*n - 1].iov_len == host) {
            iov[*n - 1].iov_len += chunk;
        } else {
            if (*n >= max)
                return -E2BIG;
            iov[*n].iov_base = host;
            iov[*n].iov_len = chunk;
            (*n)++;
        }
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

void *guest_mem_uva_ptr(const struct guest_mem *mem, uint64_t uva, uint64_t len)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        const struct guest_region *r = &mem->regions[i];
        uint64_t off = uva - r->uva;
        if (off < r->size && len <= r->size - off)
            return r->host + off;
    }
    return NULL;
}
