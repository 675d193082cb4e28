/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for guest_mem.c: region validation and mapping, every translation of
 * guest-physical and front-end virtual addresses, with memfd-backed regions, and the SIGBUS
 * handler that survives a region whose file shrinks.
 */
#include <errno.h>
#include <glib.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest_mem.h"
#include "log.h"

#define PAGE      4096u
#define UVA_BASE  0x7f0000000000ull
#define TOP_OF_64 0xffffffffffffffffull

/* A memfd of size bytes whose byte at offset i is pattern_byte(i). */
static uint8_t pattern_byte(uint64_t off)
{
    return (uint8_t)(off * 7 + (off >> 8) * 13 + 1);
}

static int make_memfd(uint64_t size)
{
    int fd = memfd_create("test_guest_mem", MFD_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    uint8_t *buf = g_malloc(size);
    for (uint64_t i = 0; i < size; i++)
        buf[i] = pattern_byte(i);
    g_assert_cmpint(pwrite(fd, buf, size, 0), ==, (ssize_t)size);
    g_free(buf);
    return fd;
}

/* Maps desc from fd into the next slot of mem; asserts success. */
static struct guest_region *add_region(struct guest_mem *mem, int fd, uint64_t gpa, uint64_t size,
                                       uint64_t uva, uint64_t mmap_offset)
{
    struct guest_region_desc d = {.gpa = gpa, .size = size, .uva = uva, .mmap_offset = mmap_offset};
    g_assert_false(guest_mem_overlaps(mem, &d));
    struct guest_region *r = &mem->regions[mem->nregions];
    g_assert_cmpint(guest_region_map(&d, fd, r), ==, 0);
    g_assert_nonnull(r->host);
    g_assert_cmphex(r->gpa, ==, gpa);
    g_assert_cmphex(r->size, ==, size);
    g_assert_cmphex(r->uva, ==, uva);
    g_assert_cmphex(r->mmap_offset, ==, mmap_offset);
    mem->nregions++;
    return r;
}

static int try_map(int fd, uint64_t gpa, uint64_t size, uint64_t uva, uint64_t mmap_offset)
{
    struct guest_region_desc d = {.gpa = gpa, .size = size, .uva = uva, .mmap_offset = mmap_offset};
    struct guest_region r;
    memset(&r, 0x5a, sizeof(r));
    int ret = guest_region_map(&d, fd, &r);
    if (ret == 0)
        guest_region_unmap(&r);
    return ret;
}

/* ---- translation inside one region ---------------------------------------------------------- */

static void test_translate_inside(void)
{
    const uint64_t gpa = 0x100000, size = 4 * PAGE;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(4);
    g_assert_nonnull(mem);
    g_assert_cmpuint(mem->nregions, ==, 0);
    struct guest_region *r = add_region(mem, fd, gpa, size, UVA_BASE, 0);

    /* The start, and a byte in the middle: pointers into the shared file mapping. */
    uint8_t *p = guest_mem_gpa_ptr(mem, gpa, 1);
    g_assert_true(p == r->host);
    g_assert_cmpuint(p[0], ==, pattern_byte(0));
    p = guest_mem_gpa_ptr(mem, gpa + 0x1234, 16);
    g_assert_true(p == r->host + 0x1234);
    for (unsigned i = 0; i < 16; i++)
        g_assert_cmpuint(p[i], ==, pattern_byte(0x1234 + i));

    /* Writes through the translation land in the file (MAP_SHARED). */
    p[0] = 0xee;
    uint8_t b = 0;
    g_assert_cmpint(pread(fd, &b, 1, 0x1234), ==, 1);
    g_assert_cmpuint(b, ==, 0xee);

    /* The whole region in one piece. */
    g_assert_true(guest_mem_gpa_ptr(mem, gpa, size) == r->host);

    /* gpa_iov inside one region: a single entry. */
    struct iovec iov[4];
    unsigned n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa + 0x10, 0x100, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    g_assert_true(iov[0].iov_base == r->host + 0x10);
    g_assert_cmpuint(iov[0].iov_len, ==, 0x100);

    /* Zero-length translation inside the region is harmless. */
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa + 0x10, 0, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 0);

    guest_mem_free(mem);
    close(fd);
}

static void test_region_edges(void)
{
    const uint64_t gpa = 0x100000, size = 4 * PAGE;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(1);
    struct guest_region *r = add_region(mem, fd, gpa, size, UVA_BASE, 0);

    /* The exact last byte. */
    uint8_t *p = guest_mem_gpa_ptr(mem, gpa + size - 1, 1);
    g_assert_true(p == r->host + size - 1);
    g_assert_cmpuint(*p, ==, pattern_byte(size - 1));
    g_assert_true(guest_mem_gpa_ptr(mem, gpa + size - 16, 16) == r->host + size - 16);

    /* Straddling the end of the region. */
    g_assert_null(guest_mem_gpa_ptr(mem, gpa + size - 1, 2));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa + size - 16, 17));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa, size + 1));
    struct iovec iov[4];
    unsigned n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa + size - 1, 2, iov, 4, &n), ==, -EFAULT);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa, (uint32_t)size + 1, iov, 4, &n), ==, -EFAULT);

    /* Just past the end, just before the start, far away. */
    g_assert_null(guest_mem_gpa_ptr(mem, gpa + size, 1));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa - 1, 1));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa - 1, 2)); /* starts outside, ends inside */
    g_assert_null(guest_mem_gpa_ptr(mem, 0, 1));
    g_assert_null(guest_mem_gpa_ptr(mem, TOP_OF_64, 1));
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa + size, 1, iov, 4, &n), ==, -EFAULT);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa - 1, 2, iov, 4, &n), ==, -EFAULT);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, 0, 16, iov, 4, &n), ==, -EFAULT);

    /* gpa + len wrapping 2^64. */
    g_assert_null(guest_mem_gpa_ptr(mem, gpa + 16, TOP_OF_64));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa + 16, TOP_OF_64 - 15)); /* ends exactly at gpa */
    g_assert_null(guest_mem_gpa_ptr(mem, gpa + 16, (0ull - (gpa + 16)) + 8));

    /* An empty table translates nothing. */
    struct guest_mem *empty = guest_mem_alloc(0);
    g_assert_null(guest_mem_gpa_ptr(empty, gpa, 1));
    g_assert_null(guest_mem_uva_ptr(empty, UVA_BASE, 1));
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(empty, gpa, 1, iov, 4, &n), ==, -EFAULT);
    guest_mem_free(empty);
    guest_mem_free(NULL);

    guest_mem_free(mem);
    close(fd);
}

/* A region that ends exactly at 2^64: accepted; translations that would wrap are refused. */
static void test_top_of_address_space(void)
{
    const uint64_t size = 2 * PAGE;
    const uint64_t gpa = 0ull - size;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(1);
    struct guest_region *r = add_region(mem, fd, gpa, size, 0ull - size, 0);

    g_assert_true(guest_mem_gpa_ptr(mem, TOP_OF_64, 1) == r->host + size - 1);
    g_assert_null(guest_mem_gpa_ptr(mem, TOP_OF_64, 2));
    g_assert_true(guest_mem_gpa_ptr(mem, TOP_OF_64 - 15, 16) == r->host + size - 16);
    g_assert_null(guest_mem_gpa_ptr(mem, TOP_OF_64 - 15, 17));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa, TOP_OF_64));

    struct iovec iov[4];
    unsigned n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, TOP_OF_64 - 15, 16, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    g_assert_true(iov[0].iov_base == r->host + size - 16);
    g_assert_cmpuint(iov[0].iov_len, ==, 16);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, TOP_OF_64 - 15, 32, iov, 4, &n), ==, -EFAULT);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, TOP_OF_64, UINT32_MAX, iov, 4, &n), ==, -EFAULT);

    /* With a region at gpa 0 as well, a range wrapping 2^64 must not run into it. */
    int fd0 = make_memfd(size);
    struct guest_mem *mem2 = guest_mem_alloc(2);
    struct guest_region *top = add_region(mem2, fd, gpa, size, 0ull - size, 0);
    add_region(mem2, fd0, 0, size, UVA_BASE, 0);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem2, TOP_OF_64 - 15, 32, iov, 4, &n), ==, -EFAULT);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem2, TOP_OF_64, 2, iov, 4, &n), ==, -EFAULT);
    g_assert_null(guest_mem_gpa_ptr(mem2, TOP_OF_64 - 15, 32));
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem2, TOP_OF_64 - 15, 16, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    g_assert_true(iov[0].iov_base == top->host + size - 16);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem2, 0, 16, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    guest_mem_free(mem2);
    close(fd0);

    /* The same at the top of the front-end's virtual space. */
    g_assert_true(guest_mem_uva_ptr(mem, TOP_OF_64, 1) == r->host + size - 1);
    g_assert_null(guest_mem_uva_ptr(mem, TOP_OF_64, 2));
    g_assert_null(guest_mem_uva_ptr(mem, TOP_OF_64 - 15, TOP_OF_64));

    guest_mem_free(mem);
    close(fd);
}

/* ---- two regions ------------------------------------------------------------------------------
 */

static void test_two_regions_split(void)
{
    const uint64_t size = 4 * PAGE, gpa_a = 0x100000, gpa_b = gpa_a + size;
    int fd_a = make_memfd(size), fd_b = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(2);
    struct guest_region *a = add_region(mem, fd_a, gpa_a, size, UVA_BASE, 0);
    struct guest_region *b = add_region(mem, fd_b, gpa_b, size, UVA_BASE + size, 0);
    /* Precondition for the split (two separate mmaps); the merge case is tested below. */
    g_assert_true(a->host + size != b->host);

    /* Adjacent in gpa: overlap detection must not see an overlap. */
    g_assert_cmpuint(mem->nregions, ==, 2);

    /* A range spanning both: not one host range. */
    g_assert_null(guest_mem_gpa_ptr(mem, gpa_b - 16, 32));
    /* Each side alone is fine. */
    g_assert_true(guest_mem_gpa_ptr(mem, gpa_b - 16, 16) == a->host + size - 16);
    g_assert_true(guest_mem_gpa_ptr(mem, gpa_b, 16) == b->host);

    struct iovec iov[4];
    unsigned n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 16, 48, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 2);
    g_assert_true(iov[0].iov_base == a->host + size - 16);
    g_assert_cmpuint(iov[0].iov_len, ==, 16);
    g_assert_true(iov[1].iov_base == b->host);
    g_assert_cmpuint(iov[1].iov_len, ==, 32);

    /* Appends after existing entries. */
    struct iovec dummy_target;
    iov[0].iov_base = &dummy_target;
    iov[0].iov_len = 1;
    n = 1;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 8, 16, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 3);
    g_assert_true(iov[0].iov_base == &dummy_target);
    g_assert_cmpuint(iov[0].iov_len, ==, 1);
    g_assert_true(iov[1].iov_base == a->host + size - 8);
    g_assert_cmpuint(iov[1].iov_len, ==, 8);
    g_assert_true(iov[2].iov_base == b->host);
    g_assert_cmpuint(iov[2].iov_len, ==, 8);

    /* Too few iovecs. */
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 16, 48, iov, 1, &n), ==, -E2BIG);
    g_assert_cmpuint(n, <=, 1);
    n = 3;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 16, 48, iov, 4, &n), ==, -E2BIG);
    g_assert_cmpuint(n, <=, 4);
    n = 4;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_a, 16, iov, 4, &n), ==, -E2BIG);
    g_assert_cmpuint(n, ==, 4);
    /* Exactly enough. */
    n = 2;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 16, 48, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 4);

    /* Running off the end of the second region. */
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 16, (uint32_t)size + 17, iov, 4, &n), ==,
                    -EFAULT);

    /* Data read through each translation comes from the right file. */
    g_assert_cmpint(pwrite(fd_b, "B", 1, 0), ==, 1);
    g_assert_cmpint(pwrite(fd_a, "A", 1, size - 1), ==, 1);
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa_b - 1, 2, iov, 4, &n), ==, 0);
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpint(*(char *)iov[0].iov_base, ==, 'A');
    g_assert_cmpint(*(char *)iov[1].iov_base, ==, 'B');

    /* uva translation picks the right region, never across two. */
    g_assert_true(guest_mem_uva_ptr(mem, UVA_BASE + size + 4, 4) == b->host + 4);
    g_assert_null(guest_mem_uva_ptr(mem, UVA_BASE + size - 4, 8));

    guest_mem_free(mem);
    close(fd_a);
    close(fd_b);
}

/* Two gpa-adjacent regions that are also adjacent in host memory merge into one iovec. */
static void test_two_regions_merge(void)
{
    const uint64_t half = 4 * PAGE, gpa = 0x200000;
    int fd = make_memfd(2 * half);
    struct guest_mem *mem = guest_mem_alloc(2);
    struct guest_region whole;
    struct guest_region_desc d = {.gpa = gpa, .size = 2 * half, .uva = UVA_BASE};
    g_assert_cmpint(guest_region_map(&d, fd, &whole), ==, 0);
    /* Split the one mapping into two table entries; only the first owns the mapping. */
    mem->regions[0] = whole;
    mem->regions[0].size = half;
    mem->regions[1] = (struct guest_region){
        .gpa = gpa + half,
        .size = half,
        .uva = UVA_BASE + half,
        .host = whole.host + half,
    };
    mem->nregions = 2;

    struct iovec iov[2];
    unsigned n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa + half - 16, 32, iov, 1, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    g_assert_true(iov[0].iov_base == whole.host + half - 16);
    g_assert_cmpuint(iov[0].iov_len, ==, 32);

    /* The entire range of both in one iovec. */
    n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa, (uint32_t)(2 * half), iov, 1, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    g_assert_true(iov[0].iov_base == whole.host);
    g_assert_cmpuint(iov[0].iov_len, ==, 2 * half);

    guest_mem_free(mem);
    close(fd);
}

/* ---- uva ------------------------------------------------------------------------------------- */

static void test_uva(void)
{
    const uint64_t gpa = 0x100000, size = 4 * PAGE, uva = UVA_BASE + 0x10000;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(1);
    struct guest_region *r = add_region(mem, fd, gpa, size, uva, 0);

    g_assert_true(guest_mem_uva_ptr(mem, uva, 1) == r->host);
    g_assert_true(guest_mem_uva_ptr(mem, uva + 0x100, 0x40) == r->host + 0x100);
    g_assert_true(guest_mem_uva_ptr(mem, uva, size) == r->host);
    g_assert_true(guest_mem_uva_ptr(mem, uva + size - 1, 1) == r->host + size - 1);
    g_assert_null(guest_mem_uva_ptr(mem, uva + size - 1, 2));
    g_assert_null(guest_mem_uva_ptr(mem, uva, size + 1));
    g_assert_null(guest_mem_uva_ptr(mem, uva + size, 1));
    g_assert_null(guest_mem_uva_ptr(mem, uva - 1, 1));
    g_assert_null(guest_mem_uva_ptr(mem, uva - 1, 2));
    g_assert_null(guest_mem_uva_ptr(mem, uva + 16, TOP_OF_64));
    g_assert_null(guest_mem_uva_ptr(mem, uva + 16, TOP_OF_64 - 15));
    /* uva and gpa spaces are distinct: a gpa is not a uva. */
    g_assert_null(guest_mem_uva_ptr(mem, gpa, 1));
    g_assert_null(guest_mem_gpa_ptr(mem, uva, 1));

    guest_mem_free(mem);
    close(fd);
}

/* ---- mmap_offset ------------------------------------------------------------------------------
 */

static void test_mmap_offset(void)
{
    const uint64_t file = 16 * PAGE;
    int fd = make_memfd(file);
    struct guest_mem *mem = guest_mem_alloc(3);

    /* Page-aligned offset. */
    const uint64_t off1 = 2 * PAGE, size1 = 4 * PAGE, gpa1 = 0x100000;
    struct guest_region *r1 = add_region(mem, fd, gpa1, size1, UVA_BASE, off1);
    uint8_t *p = guest_mem_gpa_ptr(mem, gpa1, 1);
    g_assert_nonnull(p);
    g_assert_cmpuint(*p, ==, pattern_byte(off1));
    p = guest_mem_gpa_ptr(mem, gpa1 + size1 - 1, 1);
    g_assert_cmpuint(*p, ==, pattern_byte(off1 + size1 - 1));
    g_assert_true(guest_mem_uva_ptr(mem, UVA_BASE, 1) == r1->host);

    /* Not page-aligned, ending exactly at the end of the file. */
    const uint64_t off2 = 8 * PAGE + 0x123, size2 = file - off2, gpa2 = 0x200000;
    struct guest_region *r2 = add_region(mem, fd, gpa2, size2, UVA_BASE + 0x100000, off2);
    p = guest_mem_gpa_ptr(mem, gpa2, 1);
    g_assert_nonnull(p);
    g_assert_true(p == r2->host);
    g_assert_cmpuint(*p, ==, pattern_byte(off2));
    g_assert_cmpuint(((uintptr_t)p) % PAGE, ==, 0x123);
    /* Every byte of the region is backed by the file: no SIGBUS anywhere. */
    for (uint64_t i = 0; i < size2; i++)
        g_assert_cmpuint(r2->host[i], ==, pattern_byte(off2 + i));
    g_assert_nonnull(guest_mem_gpa_ptr(mem, gpa2 + size2 - 1, 1));
    g_assert_null(guest_mem_gpa_ptr(mem, gpa2 + size2 - 1, 2));
    struct iovec iov[2];
    unsigned n = 0;
    g_assert_cmpint(guest_mem_gpa_iov(mem, gpa2 + 5, 10, iov, 2, &n), ==, 0);
    g_assert_cmpuint(n, ==, 1);
    g_assert_cmpuint(((uint8_t *)iov[0].iov_base)[0], ==, pattern_byte(off2 + 5));
    g_assert_true(guest_mem_uva_ptr(mem, UVA_BASE + 0x100000 + 7, 1) == r2->host + 7);

    /* A non-aligned offset within the first page. */
    const uint64_t off3 = 1, size3 = PAGE, gpa3 = 0x300000;
    struct guest_region *r3 = add_region(mem, fd, gpa3, size3, UVA_BASE + 0x200000, off3);
    g_assert_cmpuint(r3->host[0], ==, pattern_byte(1));
    g_assert_cmpuint(r3->host[size3 - 1], ==, pattern_byte(size3));

    guest_mem_free(mem);
    close(fd);
}

/* ---- validation -------------------------------------------------------------------------------
 */

static void test_validation(void)
{
    const uint64_t file = 4 * PAGE;
    int fd = make_memfd(file);

    /* Sanity: the good case. */
    g_assert_cmpint(try_map(fd, 0x100000, file, UVA_BASE, 0), ==, 0);
    g_assert_cmpint(try_map(fd, 0x100000, file - 0x10, UVA_BASE, 0x10), ==, 0);

    /* Size 0 (also where "gpa + size - 1" cannot catch it, and mmap would not fail). */
    g_assert_cmpint(try_map(fd, 0x100000, 0, UVA_BASE, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0, 0, 0, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0, 0, 0, 1), ==, -EINVAL);

    /* gpa + size wraps (ending exactly at 2^64 is fine). */
    g_assert_cmpint(try_map(fd, 0ull - PAGE, 2 * PAGE, UVA_BASE, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, TOP_OF_64, 2, UVA_BASE, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0ull - PAGE, PAGE, UVA_BASE, 0), ==, 0);

    /* uva + size wraps. */
    g_assert_cmpint(try_map(fd, 0x100000, 2 * PAGE, 0ull - PAGE, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, 2, TOP_OF_64, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, PAGE, 0ull - PAGE, 0), ==, 0);

    /* mmap_offset + size wraps. */
    g_assert_cmpint(try_map(fd, 0x100000, PAGE, UVA_BASE, 0ull - 0x10), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, 0x10, UVA_BASE, 0ull - 0x10), ==, -EINVAL);

    /* Larger than the file, or past its end through the offset: -EINVAL, never a SIGBUS later. */
    g_assert_cmpint(try_map(fd, 0x100000, file + 1, UVA_BASE, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, file + PAGE, UVA_BASE, 0), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, file, UVA_BASE, 1), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, file, UVA_BASE, PAGE), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, PAGE, UVA_BASE, file - PAGE + 1), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, 1, UVA_BASE, file), ==, -EINVAL);
    g_assert_cmpint(try_map(fd, 0x100000, 1, UVA_BASE, file - 1), ==, 0);

    /* An empty file. */
    int fd0 = memfd_create("empty", MFD_CLOEXEC);
    g_assert_cmpint(fd0, >=, 0);
    g_assert_cmpint(try_map(fd0, 0x100000, PAGE, UVA_BASE, 0), ==, -EINVAL);
    close(fd0);

    /* A bad fd. */
    g_assert_cmpint(try_map(-1, 0x100000, PAGE, UVA_BASE, 0), <, 0);

    /* unmap twice is harmless (map_base cleared). */
    struct guest_region r;
    struct guest_region_desc d = {.gpa = 0, .size = PAGE, .uva = UVA_BASE};
    g_assert_cmpint(guest_region_map(&d, fd, &r), ==, 0);
    guest_region_unmap(&r);
    g_assert_null(r.map_base);
    guest_region_unmap(&r);

    close(fd);
}

static bool overlaps(const struct guest_mem *mem, uint64_t gpa, uint64_t size)
{
    struct guest_region_desc d = {.gpa = gpa, .size = size, .uva = UVA_BASE};
    return guest_mem_overlaps(mem, &d);
}

static void test_overlaps(void)
{
    const uint64_t size = 4 * PAGE, gpa = 0x100000;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(2);
    g_assert_false(overlaps(mem, gpa, size)); /* empty table */
    add_region(mem, fd, gpa, size, UVA_BASE, 0);

    g_assert_true(overlaps(mem, gpa, size));            /* identical */
    g_assert_true(overlaps(mem, gpa + 0x100, 0x10));    /* inside */
    g_assert_true(overlaps(mem, 0, gpa + size + 1));    /* covers it */
    g_assert_true(overlaps(mem, gpa - 0x10, 0x11));     /* last byte on its first byte */
    g_assert_true(overlaps(mem, gpa + size - 1, 0x10)); /* first byte on its last byte */
    g_assert_true(overlaps(mem, gpa + size - 1, 1));
    g_assert_false(overlaps(mem, gpa - 0x10, 0x10)); /* adjacent below */
    g_assert_false(overlaps(mem, gpa + size, 0x10)); /* adjacent above */
    g_assert_false(overlaps(mem, 0, 1));
    g_assert_false(overlaps(mem, gpa + size, 0ull - (gpa + size))); /* up to 2^64 */
    g_assert_true(overlaps(mem, gpa + size - 1, 0ull - (gpa + size - 1)));

    /* A second region at the top of the address space. */
    add_region(mem, fd, 0ull - size, size, UVA_BASE + size, 0);
    g_assert_true(overlaps(mem, TOP_OF_64, 1));
    g_assert_true(overlaps(mem, 0ull - size - 1, 2));
    g_assert_false(overlaps(mem, 0ull - size - 0x10, 0x10));
    g_assert_false(overlaps(mem, gpa + size, 0x1000));

    guest_mem_free(mem);
    close(fd);
}

/* Guest memory is kept out of core dumps: the mapping carries VM_DONTDUMP ("dd"). */
static void test_dontdump(void)
{
    const uint64_t size = 4 * PAGE;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(1);
    struct guest_region *r = add_region(mem, fd, 0x100000, size, UVA_BASE, 0);
    gchar *smaps = NULL;
    g_assert_true(g_file_get_contents("/proc/self/smaps", &smaps, NULL, NULL));
    char start[32];
    snprintf(start, sizeof(start), "%lx-", (unsigned long)(uintptr_t)r->map_base);
    gchar **lines = g_strsplit(smaps, "\n", -1);
    bool found = false, checked = false;
    for (gchar **l = lines; *l && !checked; l++) {
        if (g_str_has_prefix(*l, start)) {
            found = true;
        } else if (found && g_str_has_prefix(*l, "VmFlags:")) {
            gchar *padded = g_strconcat(*l, " ", NULL);
            g_assert_nonnull(strstr(padded, " dd "));
            g_free(padded);
            checked = true;
        }
    }
    g_strfreev(lines);
    g_assert_true(checked);
    g_free(smaps);
    guest_mem_free(mem);
    close(fd);
}

/* ---- a region whose file shrinks: the SIGBUS handler ------------------------------------------
 */

/* A read the compiler must do: the fault has to happen where the test expects it. */
static uint8_t read_byte(const uint8_t *p)
{
    return *(const volatile uint8_t *)p;
}

static void test_fault_zero_fills_and_reports(void)
{
    g_assert_cmpint(guest_mem_install_fault_handler(), ==, 0);
    g_assert_cmpint(guest_mem_install_fault_handler(), ==, 0); /* idempotent */
    const uint64_t size = 4 * PAGE, gpa = 0x100000;
    int fd = make_memfd(size);
    struct guest_mem *mem = guest_mem_alloc(1);
    struct guest_region *r = add_region(mem, fd, gpa, size, UVA_BASE, 0);
    int sv[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    guest_mem_set_fault_socket(sv[0]);
    g_assert_false(guest_mem_faulted());
    g_assert_cmpuint(read_byte(r->host + 2 * PAGE + 5), ==, pattern_byte(2 * PAGE + 5));

    /* The front-end keeps the first page only. */
    g_assert_cmpint(ftruncate(fd, PAGE), ==, 0);
    g_assert_cmpuint(read_byte(r->host + 2 * PAGE + 5), ==, 0); /* a SIGBUS, survived */
    /* The whole mapping is now private zero pages: the page that survived too, and writes go
     * there rather than into the file. */
    g_assert_cmpuint(read_byte(r->host), ==, 0);
    r->host[3 * PAGE] = 0x42;
    g_assert_cmpuint(read_byte(r->host + 3 * PAGE), ==, 0x42);
    uint8_t b = 0;
    g_assert_cmpint(pread(fd, &b, 1, 0), ==, 1);
    g_assert_cmpuint(b, ==, pattern_byte(0));

    g_assert_true(guest_mem_faulted());
    struct guest_mem_fault f;
    g_assert_true(guest_mem_fault_take(&f));
    g_assert_cmphex(f.region_gpa, ==, gpa);
    g_assert_cmphex(f.region_size, ==, size);
    g_assert_cmphex(f.gpa, ==, gpa + 2 * PAGE + 5);
    g_assert_cmphex(f.addr, ==, (uintptr_t)(r->host + 2 * PAGE + 5));
    g_assert_false(guest_mem_fault_take(&f)); /* reported once */
    g_assert_true(guest_mem_faulted());       /* until cleared */

    /* The fault socket was shut down: its peer reads EOF, and a poll on it wakes. */
    char c;
    g_assert_cmpint(recv(sv[1], &c, 1, MSG_DONTWAIT), ==, 0);
    struct pollfd p = {.fd = sv[0], .events = POLLIN};
    g_assert_cmpint(poll(&p, 1, 0), ==, 1);
    g_assert_true(p.revents & (POLLIN | POLLHUP));

    guest_mem_set_fault_socket(-1);
    guest_mem_free(mem);
    guest_mem_fault_clear();
    g_assert_false(guest_mem_faulted());
    close(sv[0]);
    close(sv[1]);
    close(fd);
}

/* Runs fn in a child without core dumps; returns its wait status. */
static int in_child(void (*fn)(void))
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        fn();
        _exit(0);
    }
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return status;
}

/* A mapping that is not guest memory: its SIGBUS is a bug, and must still kill. */
static void touch_lost_file_page(void)
{
    guest_mem_install_fault_handler();
    int fd = make_memfd(2 * PAGE);
    uint8_t *p = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || ftruncate(fd, 0) < 0)
        _exit(3);
    read_byte(p + PAGE);
    _exit(4); /* survived: wrong */
}

/* Guest memory that was unmapped is no longer the handler's business either. */
static void touch_after_unmap(void)
{
    guest_mem_install_fault_handler();
    int fd = make_memfd(2 * PAGE);
    struct guest_region r;
    struct guest_region_desc d = {.gpa = 0, .size = 2 * PAGE, .uva = UVA_BASE};
    if (guest_region_map(&d, fd, &r) < 0)
        _exit(3);
    uint8_t *base = r.map_base;
    guest_region_unmap(&r);
    /* Something else mapped at the same address since, from a file that then shrinks. */
    uint8_t *p = mmap(base, 2 * PAGE, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p != base || ftruncate(fd, 0) < 0)
        _exit(3);
    read_byte(p + PAGE);
    _exit(4);
}

/* SIGBUS sent by kill() is not a fault on anything: the default action, as before. */
static void raise_sigbus(void)
{
    guest_mem_install_fault_handler();
    raise(SIGBUS);
    _exit(4);
}

static void check_killed_by_sigbus(int status)
{
#if defined(__SANITIZE_ADDRESS__)
    /* ASan's own SIGBUS handler was there first: it reports the bug and exits or aborts. */
    g_assert_false(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) >= 3));
#else
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGBUS);
#endif
}

static void test_fault_elsewhere_still_kills(void)
{
    check_killed_by_sigbus(in_child(touch_lost_file_page));
    check_killed_by_sigbus(in_child(touch_after_unmap));
    check_killed_by_sigbus(in_child(raise_sigbus));
}

/* The registry has room for a full table and a new one being mapped, refuses a mapping it
 * could not protect, and gets every slot back on unmap. */
static void test_fault_registry_slots(void)
{
    enum { SLOTS = 2 * GUEST_MEM_MAX_REGIONS };
    int fd = make_memfd(PAGE);
    struct guest_mem *mem = guest_mem_alloc(SLOTS);
    for (int round = 0; round < 2; round++) {
        for (unsigned i = 0; i < SLOTS; i++)
            add_region(mem, fd, (uint64_t)i * PAGE, PAGE, UVA_BASE + (uint64_t)i * PAGE, 0);
        g_assert_cmpint(try_map(fd, (uint64_t)SLOTS * PAGE, PAGE, UVA_BASE, 0), ==, -ENOSPC);
        for (unsigned i = 0; i < SLOTS; i++)
            guest_region_unmap(&mem->regions[i]);
        mem->nregions = 0;
    }
    guest_mem_free(mem);
    close(fd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("VFS_TEST_LOG"))
        log_init(LOG_LVL_OFF, false);
    g_test_add_func("/guest_mem/translate_inside", test_translate_inside);
    g_test_add_func("/guest_mem/region_edges", test_region_edges);
    g_test_add_func("/guest_mem/top_of_address_space", test_top_of_address_space);
    g_test_add_func("/guest_mem/two_regions_split", test_two_regions_split);
    g_test_add_func("/guest_mem/two_regions_merge", test_two_regions_merge);
    g_test_add_func("/guest_mem/uva", test_uva);
    g_test_add_func("/guest_mem/mmap_offset", test_mmap_offset);
    g_test_add_func("/guest_mem/validation", test_validation);
    g_test_add_func("/guest_mem/overlaps", test_overlaps);
    g_test_add_func("/guest_mem/dontdump", test_dontdump);
    g_test_add_func("/guest_mem/fault/zero-fill-and-report", test_fault_zero_fills_and_reports);
    g_test_add_func("/guest_mem/fault/elsewhere-still-kills", test_fault_elsewhere_still_kills);
    g_test_add_func("/guest_mem/fault/registry-slots", test_fault_registry_slots);
    return g_test_run();
}
