/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one place where addresses coming from the front-end or the guest are translated and
 * bounds-checked. All arithmetic is written so that it cannot wrap: a check of the form
 * "addr - start < size" never overflows, unlike "addr + len <= start + size".
 */
#include "guest_mem.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* ---- the fault registry --------------------------------------------------------------------
 *
 * Every mapping of guest memory is registered here while it exists, so that the SIGBUS handler
 * can tell a fault on guest memory (the front-end shrank the file) from a bug. The handler may
 * run on any thread at any moment, so the registry is a fixed array of lock-free atomics: no
 * lock, no allocation. A slot's base is published last (after its length) and withdrawn first
 * (before munmap); guest_region_unmap then waits for handlers already running, so a handler
 * never maps over an address range that was unmapped, and perhaps reused, meanwhile.
 */

/* Mappings alive at once: a full table, and a new one being mapped before the old is freed;
 * then two of their own for the dirty-page log (the old one and its replacement). */
#define REGION_SLOTS (2 * GUEST_MEM_MAX_REGIONS)
#define FAULT_SLOTS  (REGION_SLOTS + 2)
#define SLOT_FREE    ((uintptr_t)0)
#define SLOT_BUSY    ((uintptr_t)1) /* being filled or withdrawn: the handler skips it */

_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 &&
                   ATOMIC_INT_LOCK_FREE == 2,
               "the SIGBUS handler needs lock-free atomics");

struct fault_slot {
    _Atomic uintptr_t base; /* map_base, or SLOT_FREE / SLOT_BUSY */
    _Atomic size_t len;     /* map_len */
    _Atomic uintptr_t host; /* address of gpa */
    _Atomic uint64_t gpa, size;
    atomic_bool dirty_log; /* the dirty-page log, not guest memory (gpa, size: 0, its size) */
};

enum { FAULT_NONE, FAULT_RECORDING, FAULT_RECORDED, FAULT_REPORTED };

static struct fault_slot fault_slots[FAULT_SLOTS];
static atomic_uint handlers_running;
static atomic_int fault_state;            /* FAULT_* */
static struct guest_mem_fault fault_info; /* written once per session, before RECORDED */
static atomic_int fault_socket = -1;
static atomic_bool handler_installed;
static struct sigaction previous_action; /* what SIGBUS did before: for faults not ours */
static uintptr_t page_size;

static int fault_slot_fill(const struct guest_region *r, bool dirty_log)
{
    for (unsigned i = dirty_log ? REGION_SLOTS : 0; i < (dirty_log ? FAULT_SLOTS : REGION_SLOTS);
         i++) {
        struct fault_slot *s = &fault_slots[i];
        uintptr_t expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&s->base, &expected, SLOT_BUSY))
            continue;
        atomic_store(&s->len, r->map_len);
        atomic_store(&s->host, (uintptr_t)r->host);
        atomic_store(&s->gpa, r->gpa);
        atomic_store(&s->size, r->size);
        atomic_store(&s->dirty_log, dirty_log);
        atomic_store(&s->base, (uintptr_t)r->map_base);
        return 0;
    }
    return -ENOSPC;
}

/* Withdraws the slot of the mapping at base; returns it (to be freed after munmap) or NULL. */
static struct fault_slot *fault_slot_withdraw(uintptr_t base)
{
    for (unsigned i = 0; i < FAULT_SLOTS; i++) {
        struct fault_slot *s = &fault_slots[i];
        if (atomic_load(&s->base) != base)
            continue;
        atomic_store(&s->base, SLOT_BUSY);
        /* A handler that found the slot before it was withdrawn is a few system calls from
         * done; one that starts now skips it (sequentially consistent: the handler counts
         * itself before it reads any base). */
        while (atomic_load(&handlers_running))
            sched_yield();
        return s;
    }
    return NULL;
}

/*
 * Puts anonymous zero pages where the lost mapping was. The whole mapping, not just the lost
 * pages: the connection ends anyway, and one system call covers every other page that may be
 * gone too. Under strict overcommit a large private mapping may be refused; then the faulting
 * page alone (each further lost page faults and is replaced in turn).
 */
static bool zero_fill(uintptr_t base, size_t len, uintptr_t addr)
{
    const int prot = PROT_READ | PROT_WRITE;
    const int flags = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    /* mmap and madvise are bare system calls: safe in a signal handler. */
    if (mmap((void *)base, len, prot, flags, -1, 0) != MAP_FAILED) {
        madvise((void *)base, len, MADV_DONTDUMP); /* still guest data once written */
        return true;
    }
    uintptr_t page = addr & ~(page_size - 1);
    return mmap((void *)page, page_size, prot, flags, -1, 0) != MAP_FAILED;
}

static void record_fault(const struct fault_slot *s, uintptr_t addr)
{
    int expected = FAULT_NONE;
    if (!atomic_compare_exchange_strong(&fault_state, &expected, FAULT_RECORDING))
        return; /* the first fault of the session is the one reported */
    uintptr_t host = atomic_load(&s->host);
    uint64_t gpa = atomic_load(&s->gpa);
    fault_info.region_gpa = gpa;
    fault_info.region_size = atomic_load(&s->size);
    fault_info.gpa = addr >= host ? gpa + (addr - host) : gpa;
    fault_info.addr = addr;
    fault_info.dirty_log = atomic_load(&s->dirty_log);
    atomic_store(&fault_state, FAULT_RECORDED);
}

/* True if addr lies in guest memory, now backed by zero pages. */
static bool contain_fault(uintptr_t addr)
{
    for (unsigned i = 0; i < FAULT_SLOTS; i++) {
        const struct fault_slot *s = &fault_slots[i];
        uintptr_t base = atomic_load(&s->base);
        if (base == SLOT_FREE || base == SLOT_BUSY || addr - base >= atomic_load(&s->len))
            continue;
        if (!zero_fill(base, atomic_load(&s->len), addr))
            return false;
        record_fault(s, addr);
        int fd = atomic_load(&fault_socket);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR); /* wakes the thread polling the connection */
        return true;
    }
    return false;
}

/*
 * Async-signal-safe throughout. Returning re-runs the faulting access: on guest memory it
 * now reads zeros (or writes into pages nobody reads) and the thread carries on until the
 * session ends; anywhere else it faults again under the disposition we replaced.
 */
static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    int saved_errno = errno;
    atomic_fetch_add(&handlers_running, 1);
    /* si_code <= 0: sent by kill() or the like, not a fault; si_addr means nothing. */
    bool ours = si->si_code > 0 && contain_fault((uintptr_t)si->si_addr);
    atomic_fetch_sub(&handlers_running, 1);
    if (!ours) {
        sigaction(sig, &previous_action, NULL);
        if (si->si_code <= 0)
            raise(sig); /* not a fault: it would not come back by itself */
    }
    errno = saved_errno;
}

int guest_mem_install_fault_handler(void)
{
    if (atomic_exchange(&handler_installed, true))
        return 0; /* twice would make us our own previous action */
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous_action) < 0) {
        atomic_store(&handler_installed, false);
        return -errno;
    }
    return 0;
}

bool guest_mem_faulted(void)
{
    return atomic_load_explicit(&fault_state, memory_order_relaxed) != FAULT_NONE;
}

bool guest_mem_fault_take(struct guest_mem_fault *f)
{
    int state;
    while ((state = atomic_load(&fault_state)) == FAULT_RECORDING)
        sched_yield(); /* a handler is a few stores from done */
    if (state != FAULT_RECORDED ||
        !atomic_compare_exchange_strong(&fault_state, &state, FAULT_REPORTED))
        return false;
    *f = fault_info;
    return true;
}

void guest_mem_fault_clear(void)
{
    atomic_store(&fault_state, FAULT_NONE);
}

void guest_mem_set_fault_socket(int fd)
{
    atomic_store(&fault_socket, fd);
}

/* ---- regions ------------------------------------------------------------------------------ */

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

    struct guest_region r = {
        .gpa = desc->gpa,
        .size = desc->size,
        .uva = desc->uva,
        .mmap_offset = desc->mmap_offset,
        .map_base = base,
        .map_len = len,
        .host = (uint8_t *)base + slack,
    };
    /* A mapping the fault handler does not know of would take the process down with it. */
    if (fault_slot_fill(&r, false) < 0) {
        munmap(base, len);
        return -ENOSPC;
    }
    *out = r;
    return 0;
}

void guest_region_unmap(struct guest_region *r)
{
    if (!r->map_base)
        return;
    struct fault_slot *slot = fault_slot_withdraw((uintptr_t)r->map_base);
    if (munmap(r->map_base, r->map_len) < 0)
        log_warn("munmap of guest region at gpa 0x%llx failed: %m", (unsigned long long)r->gpa);
    if (slot)
        atomic_store(&slot->base, SLOT_FREE);
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

/* ---- dirty-page log ------------------------------------------------------------------------ */

int guest_log_map(int fd, uint64_t size, uint64_t offset, struct guest_log **out)
{
    if (size == 0 || size > GUEST_LOG_MAX_SIZE || offset + size < offset)
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* As for guest memory: a log past the end of its file would SIGBUS on the first bit. */
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < offset + size)
        return -EINVAL;
    struct guest_log *log = calloc(1, sizeof(*log));
    if (!log)
        return -ENOMEM;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t aligned = offset & ~((uint64_t)page - 1);
    size_t len = (size_t)(size + (offset - aligned));
    void *base =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, (off_t)aligned);
    if (base == MAP_FAILED) {
        int err = errno;
        free(log);
        return -err;
    }
    madvise(base, len, MADV_DONTDUMP);
    *log = (struct guest_log){.bits = (uint8_t *)base + (offset - aligned),
                              .size = size,
                              .map_base = base,
                              .map_len = len};
    /* Registered like a region: the front-end may truncate the log's file as well. */
    struct guest_region r = {
        .gpa = 0, .size = size, .map_base = base, .map_len = len, .host = log->bits};
    if (fault_slot_fill(&r, true) < 0) {
        munmap(base, len);
        free(log);
        return -ENOSPC;
    }
    *out = log;
    return 0;
}

void guest_log_unmap(struct guest_log *log)
{
    if (!log)
        return;
    struct guest_region r = {.gpa = 0, .map_base = log->map_base, .map_len = log->map_len};
    guest_region_unmap(&r);
    free(log);
}

void guest_log_write(struct guest_log *log, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = gpa / GUEST_LOG_PAGE;
    uint64_t last = (gpa + (len - 1)) / GUEST_LOG_PAGE;
    if (gpa + (len - 1) < gpa || last / 8 >= log->size) {
        if (!__atomic_exchange_n(&log->overflow_logged, true, __ATOMIC_RELAXED))
            log_error("dirty-page log of %llu bytes does not cover guest address 0x%llx (+%llu): "
                      "writes there go unlogged",
                      (unsigned long long)log->size, (unsigned long long)gpa,
                      (unsigned long long)len);
        if (gpa + (len - 1) < gpa || first / 8 >= log->size)
            return;
        last = log->size * 8 - 1;
    }
    /* The bytes before the bits: the front-end copies a page once it sees its bit. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (uint64_t page = first; page <= last;) {
        uint64_t byte = page / 8;
        unsigned lo = (unsigned)(page % 8);
        unsigned hi = last / 8 == byte ? (unsigned)(last % 8) : 7u;
        uint8_t mask = (uint8_t)((0xffu >> (7 - hi)) & (0xffu << lo));
        __atomic_fetch_or(&log->bits[byte], mask, __ATOMIC_RELAXED);
        page = (byte + 1) * 8;
    }
}
