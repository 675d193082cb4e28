/* SPDX-License-Identifier: Apache-2.0 */
/* Memory given back while idle; see include/idle_mem.h. */
#include "idle_mem.h"

#include <elf.h>
#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

/* Read-only segments of the program and its libraries: a handful each, a few objects. */
#define MAX_RANGES 64

struct ranges {
    uintptr_t page, vdso;
    unsigned n;
    struct {
        uintptr_t start, len;
    } r[MAX_RANGES];
};

/*
 * Collects one object's segments that are never written: code, read-only data, the ELF
 * headers. Only whole pages inside such a segment: a page it shared with a writable segment
 * (relocated data, RELRO, .bss) would hold private copies, which MADV_DONTNEED throws away.
 * The vDSO is the kernel's and left alone.
 */
static int collect(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct ranges *rs = arg;
    (void)size;
    for (unsigned i = 0; i < info->dlpi_phnum && rs->n < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || ph->p_memsz == 0)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (rs->vdso && start <= rs->vdso && rs->vdso < start + ph->p_memsz)
            return 0;
        uintptr_t first = (start + rs->page - 1) & ~(rs->page - 1);
        uintptr_t end = (start + ph->p_memsz) & ~(rs->page - 1);
        if (end > first) {
            rs->r[rs->n].start = first;
            rs->r[rs->n].len = end - first;
            rs->n++;
        }
    }
    return 0;
}

void idle_mem_release(void)
{
    malloc_trim(0);
    /* All ranges first, then one tight loop: each page touched after its range was dropped
     * faults back in with its neighbours (the kernel maps 64 KiB around a fault), so as
     * little code as possible runs between the first madvise and the wait that follows. */
    struct ranges rs = {.page = (uintptr_t)sysconf(_SC_PAGESIZE),
                        .vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR)};
    dl_iterate_phdr(collect, &rs);
    for (unsigned i = 0; i < rs.n; i++)
        (void)madvise((void *)rs.r[i].start, rs.r[i].len, MADV_DONTNEED); /* best effort */
}
