/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Split virtqueue processing. The rings live in guest memory shared with a driver we do not
 * trust: every index read from them is range-checked, every descriptor address goes through
 * guest_mem, and every value is read exactly once (into a local) before it is checked and
 * used, so the driver cannot change it between the check and the use. Nor can it make us
 * hand out a descriptor head twice: a head stays "out" from its pop to its push, and an avail
 * entry naming it meanwhile is skipped (see vq_pop).
 */
#include "virtqueue.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "log.h"

/* Ring fields are little-endian; x86 and arm64 hosts are too, as is every host we build for. */
#define LOAD16(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE16(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static inline uint16_t *avail_event_ptr(struct virtqueue *vq)
{
    /* With EVENT_IDX the used ring carries avail_event right after its ring[num]. */
    return (uint16_t *)&vq->used->ring[vq->num];
}

/* Dirty-page logging of a used-ring write of len bytes at p (VHOST_VRING_F_LOG). */
static inline void log_used(struct virtqueue *vq, const void *p, uint64_t len)
{
    if (__builtin_expect(vq->log != NULL, 0) && vq->log_used)
        guest_log_write(
            vq->log, vq->log_used_gpa + (uint64_t)((const uint8_t *)p - (const uint8_t *)vq->used),
            len);
}

static inline uint16_t *used_event_ptr(struct virtqueue *vq)
{
    return &vq->avail->ring[vq->num];
}

void vq_reset_state(struct virtqueue *vq)
{
    vq->desc = NULL;
    vq->avail = NULL;
    vq->used = NULL;
    vq->log = NULL;
    vq->used_idx = vq->last_avail_idx;
    vq->signalled_used = 0;
    vq->signalled_used_valid = false;
    vq->bad_avail_logged = false;
    memset(vq->out, 0, sizeof(vq->out));
    memset(vq->shadowed, 0, sizeof(vq->shadowed));
    vq->shadow_first = vq->shadow_n = 0;
    vq->avail_seen = vq->last_avail_idx;
    vq->dup_logged = false;
}

void vq_clear(struct virtqueue *vq)
{
    size_t words = ((size_t)(vq->bits_num > vq->num ? vq->bits_num : vq->num) + 63) / 64;
    if (words > VQ_MAX_SIZE / 64)
        words = VQ_MAX_SIZE / 64;
    memset(vq->out, 0, words * sizeof(vq->out[0]));
    memset(vq->shadowed, 0, words * sizeof(vq->shadowed[0]));
    memset(vq, 0, offsetof(struct virtqueue, out));
}

/* ---- heads out ------------------------------------------------------------------------------
 *
 * Serving a head twice at once corrupts whatever the caller keeps per head (the pool's job of
 * a head was queued twice, which looped its job list), and answers one request twice. So a
 * head is out from its pop to its push, and an avail entry naming an out head is skipped. A
 * driver may name a head again only after it saw the head in the used ring, so entries it
 * published before our push are duplicates too: all entries up to the avail->idx we had read
 * before the push, which the head stays "shadowed" for. Without that, a worker that answers
 * each request before popping the next would serve three copies of a head published together
 * one after the other. Shadowing errs one way only: it never skips an entry a correct driver
 * may have written (those come after the avail->idx we read), and when the FIFO is full a
 * head is simply not shadowed.
 */

static inline bool bit_test(const uint64_t *map, unsigned i)
{
    return (map[i / 64] >> (i % 64)) & 1;
}

static inline void bit_set(uint64_t *map, unsigned i)
{
    map[i / 64] |= 1ull << (i % 64);
}

/* head is out; bits_num keeps track of how far the bitmaps are in use (vq_clear). */
static void mark_out(struct virtqueue *vq, uint16_t head)
{
    if (vq->num > vq->bits_num)
        vq->bits_num = vq->num;
    bit_set(vq->out, head);
}

static inline void bit_clear(uint64_t *map, unsigned i)
{
    map[i / 64] &= ~(1ull << (i % 64));
}

/* Ends the shadow of the heads whose earlier entries the consumer has passed now. */
static void unshadow(struct virtqueue *vq)
{
    while (vq->shadow_n) {
        unsigned i = vq->shadow_first;
        uint16_t ahead = (uint16_t)(vq->shadow[i].until - vq->last_avail_idx);
        /* More than a ring ahead cannot be: the base was moved (SET_VRING_BASE), drop it. */
        if (ahead != 0 && ahead <= vq->num)
            return;
        bit_clear(vq->shadowed, vq->shadow[i].head);
        vq->shadow_first = (uint16_t)((i + 1) % VQ_SHADOW);
        vq->shadow_n--;
    }
}

/* head reached the used ring. */
static void answered(struct virtqueue *vq, uint16_t head)
{
    if (head >= VQ_MAX_SIZE || !bit_test(vq->out, head))
        return; /* not popped by us: nothing to track */
    bit_clear(vq->out, head);
    uint16_t unread = (uint16_t)(vq->avail_seen - vq->last_avail_idx);
    if (unread == 0 || unread > vq->num || vq->shadow_n == VQ_SHADOW)
        return;
    bit_set(vq->shadowed, head);
    unsigned tail = (vq->shadow_first + vq->shadow_n) % VQ_SHADOW;
    vq->shadow[tail].head = head;
    vq->shadow[tail].until = vq->avail_seen;
    vq->shadow_n++;
}

/* True if an avail entry naming head must be skipped; logs the first such entry. */
static bool head_taken(struct virtqueue *vq, uint16_t head)
{
    unsigned w = head / 64;
    if (!(((vq->out[w] | vq->shadowed[w]) >> (head % 64)) & 1))
        return false;
    if (!vq->dup_logged)
        log_error("virtqueue: descriptor %u is in the avail ring again before its reply; skipped "
                  "(further duplicates on this ring are not logged)",
                  head);
    vq->dup_logged = true;
    return true;
}

int vq_map(struct virtqueue *vq, const struct guest_mem *mem)
{
    uint64_t n = vq->num;
    if (n == 0 || n > VQ_MAX_SIZE || (n & (n - 1)))
        return -EINVAL;
    /* Sizes include the event fields (used_event / avail_event) whether or not negotiated. */
    uint64_t desc_len = n * sizeof(struct vring_desc);
    uint64_t avail_len = sizeof(struct vring_avail) + n * sizeof(uint16_t) + sizeof(uint16_t);
    uint64_t used_len =
        sizeof(struct vring_used) + n * sizeof(struct vring_used_elem) + sizeof(uint16_t);

    void *desc = guest_mem_uva_ptr(mem, vq->desc_uva, desc_len);
    void *avail = guest_mem_uva_ptr(mem, vq->avail_uva, avail_len);
    void *used = guest_mem_uva_ptr(mem, vq->used_uva, used_len);
    if (!desc || !avail || !used)
        return -EFAULT;
    /* Alignment required by the spec; misaligned rings would also mean torn atomic accesses. */
    if (((uintptr_t)desc & 15) || ((uintptr_t)avail & 1) || ((uintptr_t)used & 3))
        return -EINVAL;
    vq->desc = desc;
    vq->avail = avail;
    vq->used = used;
    return 0;
}

bool vq_has_avail(struct virtqueue *vq)
{
    /* An index more than the queue size ahead is corrupt and counts as empty, as in
     * vq_pop(); otherwise a worker would keep being told there is work it cannot pop. */
    uint16_t pending = (uint16_t)(LOAD16(&vq->avail->idx) - vq->last_avail_idx);
    return pending != 0 && pending <= vq->num;
}

/* Remembers a writable buffer's guest-physical range for dirty-page logging. A buffer that
 * produced iovecs always finds room: each range holds at least one iovec. */
static void record_gpa(struct vq_elem *elem, uint64_t addr, uint32_t len)
{
    unsigned n = elem->wr_gpa_num;
    if (len == 0)
        return;
    if (n > 0 && elem->wr_gpa[n - 1].gpa + elem->wr_gpa[n - 1].len == addr) {
        elem->wr_gpa[n - 1].len += len;
        return;
    }
    if (n < VQ_MAX_IOV) {
        elem->wr_gpa[n].gpa = addr;
        elem->wr_gpa[n].len = len;
        elem->wr_gpa_num = n + 1;
    }
}

/* Collects one descriptor's buffer into elem; enforces readable-before-writable. */
static int add_buffer(struct vq_elem *elem, const struct guest_mem *mem, uint64_t addr,
                      uint32_t len, bool writable)
{
    if (writable) {
        elem->writable_seen = true;
        unsigned n = elem->wr_num;
        int ret = guest_mem_gpa_iov(mem, addr, len, elem->iov + elem->rd_num,
                                    VQ_MAX_IOV - elem->rd_num, &n);
        if (ret < 0)
            return ret;
        elem->wr_num = n;
        elem->wr_len += len;
        record_gpa(elem, addr, len);
    } else {
        if (elem->writable_seen)
            return -EINVAL; /* a readable descriptor after a writable one, even an empty one */
        unsigned n = elem->rd_num;
        int ret = guest_mem_gpa_iov(mem, addr, len, elem->iov, VQ_MAX_IOV, &n);
        if (ret < 0)
            return ret;
        elem->rd_num = n;
        elem->rd_len += len;
    }
    return 0;
}

/* Walks an indirect table: its own chain, indexes relative to the table. */
static int walk_indirect(struct vq_elem *elem, const struct guest_mem *mem, uint64_t addr,
                         uint32_t len)
{
    if (len == 0 || len % sizeof(struct vring_desc) != 0)
        return -EINVAL;
    uint32_t count = len / sizeof(struct vring_desc);
    if (count > VQ_MAX_SIZE)
        return -E2BIG;
    /* The table must be contiguous in host memory; Linux allocates it with kmalloc. */
    const struct vring_desc *table = guest_mem_gpa_ptr(mem, addr, len);
    if (!table)
        return -EFAULT;

    uint32_t i = 0;
    for (uint32_t steps = 0;; steps++) {
        if (steps >= count)
            return -ELOOP; /* more steps than entries: the chain loops */
        struct vring_desc d;
        memcpy(&d, (const void *)&table[i], sizeof(d)); /* one read: the guest may race us */
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (d.flags & VRING_DESC_F_INDIRECT)
            return -EINVAL; /* nested indirect tables are forbidden */
        int ret = add_buffer(elem, mem, d.addr, d.len, d.flags & VRING_DESC_F_WRITE);
        if (ret < 0)
            return ret;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        if (d.next >= count)
            return -EINVAL;
        i = d.next;
    }
}

static int walk_chain(struct virtqueue *vq, const struct guest_mem *mem, struct vq_elem *elem)
{
    unsigned i = elem->head;
    for (unsigned steps = 0;; steps++) {
        if (steps >= vq->num)
            return -ELOOP; /* a chain longer than the queue must contain a loop */
        struct vring_desc d;
        memcpy(&d, (const void *)&vq->desc[i], sizeof(d));
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            /* An indirect descriptor must be the only one in the chain (spec 2.7.5.3.1). */
            if ((d.flags & VRING_DESC_F_NEXT) || steps > 0)
                return -EINVAL;
            return walk_indirect(elem, mem, d.addr, d.len);
        }
        int ret = add_buffer(elem, mem, d.addr, d.len, d.flags & VRING_DESC_F_WRITE);
        if (ret < 0)
            return ret;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        if (d.next >= vq->num)
            return -EINVAL;
        i = d.next;
    }
}

int vq_pop(struct virtqueue *vq, const struct guest_mem *mem, struct vq_elem *elem)
{
    uint16_t avail_idx = LOAD16(&vq->avail->idx);
    uint16_t pending = (uint16_t)(avail_idx - vq->last_avail_idx);
    if (pending == 0)
        return 0;
    if (pending > vq->num) {
        /* The driver claims more buffers than the ring holds: refuse to read garbage. Not
         * worth a line when the ring just vanished (it reads as zeros): that is logged once. */
        if (!vq->bad_avail_logged && !guest_mem_faulted())
            log_error("virtqueue: avail idx %u is %u ahead of %u (queue size %u); ignoring",
                      avail_idx, pending, vq->last_avail_idx, vq->num);
        vq->bad_avail_logged = true;
        return 0;
    }
    vq->bad_avail_logged = false;
    vq->avail_seen = avail_idx;
    /* Pairs with the driver's write barrier between filling ring[] and bumping avail->idx:
     * the ring entry and the descriptors it names must be read after avail->idx. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);

    if (vq->shadow_n)
        unshadow(vq);
    uint16_t head = LOAD16(&vq->avail->ring[vq->last_avail_idx % vq->num]);
    vq->last_avail_idx++;
    if (head >= vq->num) {
        log_error("virtqueue: avail ring names descriptor %u, queue size %u; skipped", head,
                  vq->num);
        return 0; /* nothing valid to hand back; the next entry may be fine */
    }
    if (head_taken(vq, head))
        return 0; /* as above; the one out gets its reply */
    mark_out(vq, head);
    /* Recorded before the chain is walked: a bad chain is answered (empty) all the same. */
    uint64_t counter = vq->inflight.r ? inflight_begin(&vq->inflight, head, vq->last_avail_idx) : 0;
    int ret = vq_walk(vq, mem, head, elem);
    elem->counter = counter;
    if (ret < 0) {
        log_error("virtqueue: bad descriptor chain at head %u: %s", head, strerror(-ret));
        return ret;
    }
    return 1;
}

int vq_walk(struct virtqueue *vq, const struct guest_mem *mem, uint16_t head, struct vq_elem *elem)
{
    elem->head = head;
    elem->rd_num = elem->wr_num = 0;
    elem->rd_len = elem->wr_len = 0;
    elem->writable_seen = false;
    elem->wr_gpa_num = 0;
    if (head >= vq->num)
        return -EINVAL;
    return walk_chain(vq, mem, elem);
}

void vq_mark_out(struct virtqueue *vq, uint16_t head)
{
    if (head < vq->num)
        mark_out(vq, head);
}

unsigned vq_out_heads(const struct virtqueue *vq, uint16_t *heads)
{
    unsigned n = 0;
    for (unsigned w = 0; w < (vq->num + 63) / 64 && w < VQ_MAX_SIZE / 64; w++)
        for (uint64_t bits = vq->out[w]; bits; bits &= bits - 1) {
            unsigned head = w * 64 + (unsigned)__builtin_ctzll(bits);
            if (head < vq->num)
                heads[n++] = (uint16_t)head;
        }
    return n;
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
    struct vring_used_elem *e = &vq->used->ring[vq->used_idx % vq->num];
    __atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
    bool tracked = vq->inflight.r && head < vq->num;
    if (tracked)
        inflight_end_prepare(&vq->inflight, head);
    vq->used_idx++;
    /* Release: the element (and the reply bytes written to guest memory before it) must be
     * visible before the new used->idx; pairs with the driver's read barrier after it loads
     * used->idx (virtqueue_get_buf). */
    __atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
    if (tracked)
        inflight_end_commit(&vq->inflight, head, vq->used_idx);
    log_used(vq, e, sizeof(*e));
    log_used(vq, &vq->used->idx, sizeof(vq->used->idx));
    answered(vq, head);
}

void vq_log_reply(struct guest_log *log, const struct vq_elem *elem, uint32_t len)
{
    uint64_t left = len;
    for (unsigned i = 0; i < elem->wr_gpa_num && left > 0; i++) {
        uint64_t n = elem->wr_gpa[i].len < left ? elem->wr_gpa[i].len : left;
        guest_log_write(log, elem->wr_gpa[i].gpa, n);
        left -= n;
    }
}

bool vq_should_notify(struct virtqueue *vq)
{
    /* Full barrier: our used->idx store must be ordered before we read the driver's
     * used_event / flags, pairing with the driver's barrier between publishing used_event
     * and re-reading used->idx; otherwise both sides can miss each other. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx)
        return !(LOAD16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);

    uint16_t old = vq->signalled_used;
    uint16_t new = vq->used_idx;
    bool valid = vq->signalled_used_valid;
    vq->signalled_used = new;
    vq->signalled_used_valid = true;
    if (!valid)
        return true;
    return vring_need_event(LOAD16(used_event_ptr(vq)), new, old);
}

void vq_disable_notify(struct virtqueue *vq)
{
    /* With EVENT_IDX, leaving avail_event behind already suppresses kicks. */
    if (!vq->event_idx) {
        STORE16(&vq->used->flags, LOAD16(&vq->used->flags) | VRING_USED_F_NO_NOTIFY);
        log_used(vq, &vq->used->flags, sizeof(vq->used->flags));
    }
}

bool vq_enable_notify(struct virtqueue *vq)
{
    /* Both live in the used ring: the device writes them, so they are logged too. */
    uint16_t *written = vq->event_idx ? avail_event_ptr(vq) : &vq->used->flags;
    if (vq->event_idx)
        STORE16(written, vq->last_avail_idx);
    else
        STORE16(written, LOAD16(&vq->used->flags) & ~VRING_USED_F_NO_NOTIFY);
    log_used(vq, written, sizeof(*written));
    /* Full barrier: the avail_event / flags store must be visible before we re-check
     * avail->idx, pairing with the driver's barrier between bumping avail->idx and reading
     * avail_event; without it a buffer added in between would get no kick and sit forever. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return vq_has_avail(vq);
}
