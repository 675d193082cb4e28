/* SPDX-License-Identifier: Apache-2.0 */
/*
 * In-flight I/O tracking (see include/inflight.h): the memfd a connection's in-flight regions
 * and session journal live in, and the recovery of a queue's region after a restart.
 *
 * Why a crash at any instruction leaves a region we can recover: a pop stores the head's
 * counter, then its flag (release); a push fills the used element, links the head as the
 * last batch, publishes used->idx (release), then clears the flag and stores used_idx. So
 * after a crash a head is either flagged (popped, maybe answered: if used->idx moved past
 * the region's used_idx, the head named by last_batch_head was answered, and the fix-up
 * clears it) or was never popped, or its answer is in the used ring and its flag is clear.
 * Everything here is also the front-end's memory: recovery checks every field and falls back
 * to a fresh region rather than trust one that does not add up.
 */
#include "inflight.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "session_journal.h"
#include "virtqueue.h"

#define PAGE 4096u

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

size_t inflight_region_size(unsigned num)
{
    return round_up(sizeof(struct inflight_region) + (size_t)num * sizeof(struct inflight_desc),
                    INFLIGHT_ALIGN);
}

/* Where the page of our own starts. */
static size_t page_offset(unsigned nqueues, unsigned queue_size)
{
    return round_up((size_t)nqueues * inflight_region_size(queue_size), PAGE);
}

size_t inflight_area_size(unsigned nqueues, unsigned queue_size)
{
    if (nqueues == 0 || nqueues > INFLIGHT_MAX_QUEUES || queue_size == 0 ||
        queue_size > VQ_MAX_SIZE || (queue_size & (queue_size - 1)))
        return 0;
    _Static_assert(sizeof(struct inflight_page) <= PAGE, "the page of our own is one page");
    return page_offset(nqueues, queue_size) + PAGE + SJ_AREA_SIZE;
}

int inflight_create(unsigned nqueues, unsigned queue_size, int *fd, uint64_t *size)
{
    size_t len = inflight_area_size(nqueues, queue_size);
    if (!len)
        return -EINVAL;
    int f = memfd_create("virtiofsd-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (f < 0)
        return -errno;
    /* Sparse: a page costs memory only once written (the journal area mostly never is). */
    if (ftruncate(f, (off_t)len) < 0 ||
        fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int err = errno;
        close(f);
        return -err;
    }
    *fd = f;
    *size = len;
    return 0;
}

static int refuse(const char *why)
{
    log_error("vhost-user: SET_INFLIGHT_FD: %s; in-flight tracking off for this connection", why);
    return -EINVAL;
}

int inflight_map(int fd, uint64_t size, uint64_t offset, unsigned nqueues, unsigned queue_size,
                 struct inflight_area **out)
{
    size_t want = inflight_area_size(nqueues, queue_size);
    if (!want)
        return refuse("queue count or size out of range");
    if (offset != 0 || size != want)
        return refuse("not a region of this daemon's layout (offset or size)");
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return refuse("not a memfd sealed against shrinking");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < size)
        return refuse("the file is shorter than the region");
    struct inflight_area *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        free(a);
        log_error("vhost-user: SET_INFLIGHT_FD: mmap: %s", strerror(err));
        return -err;
    }
    a->base = p;
    a->size = want;
    a->nqueues = nqueues;
    a->queue_size = queue_size;
    a->region_size = inflight_region_size(queue_size);
    a->page = (struct inflight_page *)(a->base + page_offset(nqueues, queue_size));
    a->journal = (uint8_t *)a->page + PAGE;
    a->journal_len = SJ_AREA_SIZE;
    if (memcmp(a->page->magic, INFLIGHT_PAGE_MAGIC, sizeof(a->page->magic)) != 0) {
        /* New (zeros), or not ours any more: counters start over, which is safe only because
         * a journal that does not know this page is not trusted either (see attach). */
        memset(a->page, 0, sizeof(*a->page));
        memcpy(a->page->magic, INFLIGHT_PAGE_MAGIC, sizeof(a->page->magic));
    }
    *out = a;
    return 0;
}

void inflight_unmap(struct inflight_area *a)
{
    if (!a)
        return;
    munmap(a->base, a->size);
    free(a);
}

struct inflight_region *inflight_region_of(const struct inflight_area *a, unsigned q)
{
    return (struct inflight_region *)(a->base + (size_t)q * a->region_size);
}

bool inflight_in_flight(const struct inflight_area *a, unsigned q, uint16_t head, uint64_t counter)
{
    if (!a || q >= a->nqueues || head >= a->queue_size || counter == 0)
        return false;
    const struct inflight_desc *d = &inflight_region_of(a, q)->desc[head];
    return __atomic_load_n(&d->inflight, __ATOMIC_ACQUIRE) == 1 &&
           __atomic_load_n(&d->counter, __ATOMIC_RELAXED) == counter;
}

/* ---- recovery ----------------------------------------------------------------------------- */

static void fresh_region(struct inflight_region *r, unsigned num, uint16_t used_idx)
{
    memset(r->desc, 0, (size_t)num * sizeof(r->desc[0]));
    r->features = 0;
    r->desc_num = (uint16_t)num;
    r->last_batch_head = 0;
    r->used_idx = used_idx;
    __atomic_store_n(&r->version, INFLIGHT_VERSION, __ATOMIC_RELEASE);
}

/* The spec's last-batch fix-up: used->idx moved past the region's used_idx, so the heads of
 * the last batch were answered though their flags may still be set. false: the batch list
 * does not add up. */
static bool fix_last_batch(struct inflight_region *r, unsigned num, uint16_t used_idx)
{
    uint16_t batch = (uint16_t)(used_idx - r->used_idx);
    if (batch > num)
        return false;
    uint16_t head = r->last_batch_head;
    for (uint16_t i = 0; i < batch; i++) {
        if (head >= num)
            return false;
        r->desc[head].inflight = 0;
        head = r->desc[head].next;
    }
    r->used_idx = used_idx;
    return true;
}

static int by_counter(const void *a, const void *b)
{
    const struct inflight_resubmit *x = a, *y = b;
    if (x->counter != y->counter)
        return x->counter < y->counter ? -1 : 1;
    return x->head < y->head ? -1 : x->head > y->head;
}

/* Collects the flagged heads; false if a flag holds anything but 0 or 1, or more heads are
 * out than the driver has published and we have not answered. */
static bool collect(struct inflight_region *r, unsigned num, uint16_t outstanding,
                    struct inflight_resubmit *out, unsigned *n, uint64_t *max_counter)
{
    *n = 0;
    for (unsigned h = 0; h < num; h++) {
        uint8_t f = r->desc[h].inflight;
        if (f > 1)
            return false;
        if (!f)
            continue;
        uint64_t c = r->desc[h].counter;
        if (c == 0 || *n >= outstanding)
            return false;
        out[(*n)++] = (struct inflight_resubmit){.head = (uint16_t)h, .counter = c};
        if (c > *max_counter)
            *max_counter = c;
    }
    return true;
}

bool inflight_recover(struct inflight_queue *iq, unsigned q, unsigned num, uint16_t used_idx,
                      uint16_t avail_idx, struct inflight_resubmit *out, unsigned *n,
                      uint16_t *last_avail_idx)
{
    struct inflight_region *r = iq->r;
    uint16_t outstanding = (uint16_t)(avail_idx - used_idx);
    uint64_t max_counter = 0;
    *n = 0;
    *last_avail_idx = used_idx;
    const char *why = NULL;
    if (r->version == 0 && r->desc_num == 0) {
        fresh_region(r, num, used_idx); /* first use */
    } else if (r->version != INFLIGHT_VERSION || r->desc_num != num) {
        why = "its version or queue size is not this ring's";
    } else if (outstanding > num) {
        why = "the ring's avail and used indexes are more than a ring apart";
    } else if (r->used_idx != used_idx && !fix_last_batch(r, num, used_idx)) {
        why = "its last batch does not match the used ring";
    } else if (!collect(r, num, outstanding, out, n, &max_counter)) {
        why = "it marks more requests in flight than the driver has outstanding";
    }
    if (why) {
        log_error("queue %u: in-flight region not usable (%s); nothing resubmitted", q, why);
        fresh_region(r, num, used_idx);
        *n = 0;
        max_counter = 0;
    }
    qsort(out, *n, sizeof(out[0]), by_counter);
    /* Counters never repeat: a journal record of an answered request must never be taken
     * for one of a request popped after the restart. */
    if (*iq->next_counter <= max_counter)
        *iq->next_counter = max_counter + 1;
    if (*iq->next_counter == 0)
        *iq->next_counter = 1;
    /* Every entry consumed is answered or in flight, unless the driver named a head twice
     * (skipped, consumed): the saved position covers that when it is plausible. After a
     * region we could not use the saved position still holds if plausible: reading entries
     * again from the used index instead could answer a request twice (completions are out of
     * order), which breaks the driver; a lost request only hangs its caller. */
    uint16_t saved = *iq->last_avail_idx;
    uint16_t derived = (uint16_t)(used_idx + *n);
    uint16_t ahead = (uint16_t)(saved - used_idx);
    *last_avail_idx = ahead >= *n && ahead <= outstanding ? saved : derived;
    __atomic_store_n(iq->last_avail_idx, *last_avail_idx, __ATOMIC_RELAXED);
    if (*n)
        log_info("queue %u: %u requests in flight before the restart, served again", q, *n);
    return !why;
}
