/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: split virtqueue chain walking (vq_map, vq_pop, vq_push and the
 * notification helpers) over guest memory built from memfd regions by guest_region_map.
 *
 * Input: a header, then a list of operations on guest memory and the queue.
 *
 *   header  u8 qlog      queue size 1 << (qlog % 11)  (1..1024)
 *           u8 flags     bit0 EVENT_IDX; bit1 a second region; bit2 ... adjacent to the first
 *                        in guest-physical space; bit3 second region at an unaligned file
 *                        offset; bit4 ring offsets taken as they are (else aligned);
 *                        bit5 rings in the second region
 *           u16 desc, avail, used   ring offsets in their region
 *           u16 base     last_avail_idx (as SET_VRING_BASE sets it)
 *   ops     u8 op; low 3 bits pick the operation, the high bits its address mode:
 *           0 desc[i] = {addr, len, flags, next}    u16 i, addr, u32 len, u16 flags, u16 next
 *           1 avail->ring[slot] = head                u16 slot, u16 head
 *           2 avail->idx += n                         u8 n
 *           3 an indirect-table entry at a memory offset: u32 off, then as 0 without i
 *           4 pop up to n chains                       u8 n
 *             mode 1: check each and hold it, out (a request in the thread pool, or a
 *                     SETLKW waiting for its lock)
 *             mode 2: push n of the held chains, oldest first
 *             others: check and push each at once (a worker serving requests itself)
 *           5 poke bytes into guest memory            u32 off, u8 n, n bytes
 *           6 notification helpers                    u8 which
 *           7 avail->idx = v                          u16 v
 *   addr:   mode (op >> 3) % 3: 0: u32 offset in region 0, 1: u32 offset in region 1,
 *           2: raw u64 guest-physical address
 *
 * After the ops the ring is drained, then the held chains pushed. Checked: every iovec lies in
 * mapped guest memory, rd_len / wr_len are the sums of their iovecs, a failed chain still
 * names a valid head, a drain returns at most the queue size of chains before the ring reads
 * empty, the avail index consumed matches, and each push lands in the used ring. And heads
 * named again in the avail ring (op 1 may write any head anywhere): vq_pop never hands out a
 * head that is out (popped, not pushed), and, while the driver behaves (the rings apart, the
 * avail index moved only forward by op 2 within a ring's worth, no raw pokes), it skips an
 * entry naming a head that is not out only if that entry was published before the head's
 * last push.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "guest_mem.h"
#include "virtqueue.h"

#define FD_SIZE  (512u * 1024u)
#define R0_SIZE  (256u * 1024u)
#define R1_OFF   (256u * 1024u)
#define R1_SIZE  (128u * 1024u)
#define G0       0x40000000ull
#define G1_FAR   0x100000000ull
#define U0       0x7f0000000000ull
#define U1       0x7f0010000000ull
#define MAX_OPS  2048
#define MAX_QLOG 11
#define MAX_Q    (1u << (MAX_QLOG - 1))

static int memfd = -1;
static uint8_t *image; /* our own view of the whole memfd */
static struct vq_elem *elem;
static uint64_t sink;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_absolute_argv(argc, argv);
    fuzz_init_logging();
    memfd = memfd_create("fuzz_virtqueue", MFD_CLOEXEC);
    FUZZ_CHECK(memfd >= 0 && ftruncate(memfd, FD_SIZE) == 0, "memfd");
    image = mmap(NULL, FD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    FUZZ_CHECK(image != MAP_FAILED, "mmap");
    elem = calloc(1, sizeof(*elem));
    FUZZ_CHECK(elem != NULL, "calloc");
    return 0;
}

struct ctx {
    struct fuzz_in in;
    struct guest_mem *mem;
    struct virtqueue vq;
    bool mapped;
    uint64_t g1; /* gpa of region 1 */
    uint32_t r1_size;
    uint32_t r1_off;
    /* The driver's view of its heads. */
    bool out[MAX_Q];             /* popped and not pushed */
    uint16_t idx_at_push[MAX_Q]; /* avail->idx when the head was last pushed */
    bool pushed_once[MAX_Q];     /* idx_at_push is set */
    uint16_t held[MAX_Q];        /* held chains (mode 1), a FIFO */
    unsigned held_first, held_n;
    bool behaved;        /* the skip check applies (see the top) */
    uint16_t driver_idx; /* avail->idx as the ops set it */
};

/* ---- checks ----------------------------------------------------------------------------- */

/* True if [p, p + len) is covered by mapped regions (an iovec may span host-adjacent ones). */
static bool in_guest_mem(const struct guest_mem *mem, const uint8_t *p, size_t len)
{
    while (len > 0) {
        const struct guest_region *hit = NULL;
        for (unsigned i = 0; i < mem->nregions; i++) {
            const struct guest_region *r = &mem->regions[i];
            if (p >= r->host && (size_t)(p - r->host) < r->size)
                hit = r;
        }
        if (!hit)
            return false;
        size_t room = hit->size - (size_t)(p - hit->host);
        size_t n = len < room ? len : room;
        p += n;
        len -= n;
    }
    return true;
}

static void check_elem(struct ctx *c)
{
    FUZZ_CHECK(elem->head < c->vq.num, "head %u, queue size %u", elem->head, c->vq.num);
    FUZZ_CHECK(elem->rd_num + elem->wr_num <= VQ_MAX_IOV, "%u + %u iovecs", elem->rd_num,
               elem->wr_num);
    size_t rd = 0, wr = 0;
    for (unsigned i = 0; i < elem->rd_num + elem->wr_num; i++) {
        const struct iovec *v = &elem->iov[i];
        FUZZ_CHECK(v->iov_len > 0, "empty iovec %u", i);
        FUZZ_CHECK(in_guest_mem(c->mem, v->iov_base, v->iov_len),
                   "iovec %u (%p, %zu) outside guest memory", i, v->iov_base, v->iov_len);
        const uint8_t *p = v->iov_base;
        if (i < elem->rd_num) {
            rd += v->iov_len;
            sink += p[0] + p[v->iov_len - 1]; /* touch both ends */
        } else {
            wr += v->iov_len;
            sink += p[0] + p[v->iov_len - 1];
        }
    }
    FUZZ_CHECK(rd == elem->rd_len, "rd_len %zu, iovecs hold %zu", elem->rd_len, rd);
    FUZZ_CHECK(wr == elem->wr_len, "wr_len %zu, iovecs hold %zu", elem->wr_len, wr);
}

static void push(struct ctx *c, uint16_t head, uint32_t len)
{
    uint16_t before = c->vq.used_idx;
    if (head < MAX_Q) {
        c->out[head] = false;
        c->idx_at_push[head] = c->vq.avail->idx;
        c->pushed_once[head] = true;
    }
    vq_push(&c->vq, head, len);
    FUZZ_CHECK(c->vq.used_idx == (uint16_t)(before + 1), "used_idx did not advance");
    const struct vring_used_elem *e = &c->vq.used->ring[before % c->vq.num];
    FUZZ_CHECK(e->id == head && e->len == len && c->vq.used->idx == c->vq.used_idx,
               "used ring entry %u is not what was pushed", before % c->vq.num);
}

/* An avail entry at position pos naming head was skipped: only for a reason. */
static void check_skip(struct ctx *c, uint16_t pos, uint16_t head)
{
    if (head >= c->vq.num || c->out[head] || !c->behaved)
        return; /* out of range, or out: must be skipped; or no model of the driver */
    uint16_t before_push = (uint16_t)(c->idx_at_push[head] - pos);
    FUZZ_CHECK(c->pushed_once[head] && before_push != 0 && before_push <= c->vq.num,
               "the entry at %u naming head %u was skipped, but the head is not out and was "
               "last pushed at avail idx %u",
               pos, head, c->idx_at_push[head]);
}

/* A popped chain (good or bad) was handed out: its head was not out before. */
static void handed_out(struct ctx *c, uint16_t head)
{
    FUZZ_CHECK(head < c->vq.num, "head %u, queue size %u", head, c->vq.num);
    FUZZ_CHECK(!c->out[head], "vq_pop handed out head %u again while it was out", head);
    c->out[head] = true;
}

static void hold(struct ctx *c, uint16_t head)
{
    FUZZ_CHECK(c->held_n < MAX_Q, "more chains held than heads");
    c->held[(c->held_first + c->held_n++) % MAX_Q] = head;
}

/* Pushes up to n held chains, oldest first. */
static void push_held(struct ctx *c, unsigned n)
{
    for (; n > 0 && c->held_n > 0; n--) {
        uint16_t head = c->held[c->held_first];
        c->held_first = (c->held_first + 1) % MAX_Q;
        c->held_n--;
        push(c, head, 0);
    }
}

/*
 * Pops up to max chains as the worker does (re-deriving the rings first), pushes each back
 * (or holds it). Returns the number of pops that consumed an avail entry.
 */
static unsigned pop_some(struct ctx *c, unsigned max, bool reply, bool keep)
{
    unsigned consumed = 0;
    for (unsigned i = 0; i < max; i++) {
        FUZZ_CHECK(vq_map(&c->vq, c->mem) == 0, "the rings stopped mapping");
        uint16_t before = c->vq.last_avail_idx;
        if (c->vq.avail->idx != c->driver_idx)
            c->behaved = false; /* changed behind the ops' back (a poke, an overlap) */
        uint16_t named = c->vq.avail->ring[before % c->vq.num];
        int r = vq_pop(&c->vq, c->mem, elem);
        uint16_t step = (uint16_t)(c->vq.last_avail_idx - before);
        FUZZ_CHECK(step <= 1, "one pop consumed %u avail entries", step);
        consumed += step;
        if (r != 0)
            handed_out(c, elem->head);
        if (r != 0 && keep) {
            FUZZ_CHECK(step == 1, "a chain without consuming an avail entry");
            if (r > 0)
                check_elem(c);
            hold(c, elem->head);
        } else if (r > 0) {
            FUZZ_CHECK(step == 1, "a chain without consuming an avail entry");
            check_elem(c);
            /* Reply as the worker would: something up to the writable length. */
            uint32_t len = (uint32_t)(elem->wr_len > 64 ? 64 : elem->wr_len);
            if (reply && elem->wr_num)
                memset(elem->iov[elem->rd_num].iov_base, 0x5a,
                       len < elem->iov[elem->rd_num].iov_len ? len
                                                             : elem->iov[elem->rd_num].iov_len);
            push(c, elem->head, len);
        } else if (r < 0) {
            FUZZ_CHECK(step == 1, "a bad chain without consuming an avail entry");
            FUZZ_CHECK(elem->head < c->vq.num, "bad chain head %u, queue size %u", elem->head,
                       c->vq.num);
            push(c, elem->head, 0);
        } else if (step == 0) {
            break; /* empty (or a corrupt avail idx, treated as empty) */
        } else {
            check_skip(c, before, named);
        }
    }
    return consumed;
}

/* ---- input decoding --------------------------------------------------------------------- */

static uint64_t read_addr(struct ctx *c, unsigned mode)
{
    switch (mode % 3) {
    case 0:
        return G0 + fuzz_u32(&c->in) % (R0_SIZE + 64);
    case 1:
        return c->g1 + fuzz_u32(&c->in) % (R1_SIZE + 64);
    default:
        return fuzz_u64(&c->in);
    }
}

static void read_desc(struct ctx *c, unsigned mode, struct vring_desc *d)
{
    d->addr = read_addr(c, mode);
    d->len = fuzz_u32(&c->in);
    if (mode < 3) /* keep most lengths modest: huge ones only fail early */
        d->len %= 70000;
    d->flags = fuzz_u16(&c->in);
    d->next = fuzz_u16(&c->in);
}

static void do_op(struct ctx *c, uint8_t op)
{
    struct virtqueue *vq = &c->vq;
    unsigned mode = op >> 3;
    switch (op & 7) {
    case 0: {
        uint16_t i = fuzz_u16(&c->in) % vq->num;
        struct vring_desc d;
        read_desc(c, mode, &d);
        memcpy(&vq->desc[i], &d, sizeof(d));
        break;
    }
    case 1: {
        uint16_t slot = fuzz_u16(&c->in);
        uint16_t head = fuzz_u16(&c->in);
        vq->avail->ring[slot % vq->num] = head;
        break;
    }
    case 2:
        vq->avail->idx = (uint16_t)(vq->avail->idx + fuzz_u8(&c->in));
        if ((uint16_t)(vq->avail->idx - vq->last_avail_idx) > vq->num)
            c->behaved = false; /* more than a ring ahead: positions become ambiguous */
        c->driver_idx = vq->avail->idx;
        break;
    case 3: {
        uint32_t off = fuzz_u32(&c->in) % (FD_SIZE - sizeof(struct vring_desc));
        struct vring_desc d;
        read_desc(c, mode, &d);
        memcpy(image + off, &d, sizeof(d));
        c->behaved = false; /* may have written the rings */
        break;
    }
    case 4: {
        unsigned n = fuzz_u8(&c->in) % (vq->num + 1);
        if (mode == 2)
            push_held(c, n);
        else
            pop_some(c, n, true, mode == 1);
        break;
    }
    case 5: {
        uint32_t off = fuzz_u32(&c->in) % FD_SIZE;
        const uint8_t *p;
        size_t n = fuzz_bytes(&c->in, fuzz_u8(&c->in), &p);
        if (n > FD_SIZE - off)
            n = FD_SIZE - off;
        memcpy(image + off, p, n);
        c->behaved = false;
        break;
    }
    case 6:
        switch (fuzz_u8(&c->in) % 4) {
        case 0:
            sink += vq_should_notify(vq);
            break;
        case 1:
            sink += vq_enable_notify(vq);
            break;
        case 2:
            vq_disable_notify(vq);
            break;
        default:
            sink += vq_has_avail(vq);
            break;
        }
        break;
    case 7:
        vq->avail->idx = fuzz_u16(&c->in);
        c->driver_idx = vq->avail->idx;
        c->behaved = false;
        break;
    }
}

/* True if any two of the rings share bytes (a write to one changes another). */
static bool rings_overlap(const struct virtqueue *vq)
{
    uintptr_t s[3] = {(uintptr_t)vq->desc, (uintptr_t)vq->avail, (uintptr_t)vq->used};
    size_t len[3] = {vq->num * sizeof(struct vring_desc),
                     sizeof(struct vring_avail) + (vq->num + 1) * sizeof(uint16_t),
                     sizeof(struct vring_used) + vq->num * sizeof(struct vring_used_elem) + 2};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (s[i] < s[j] + len[j] && s[j] < s[i] + len[i])
                return true;
    return false;
}

/* Empties the ring and checks that this takes at most the queue size of chains. */
static void drain(struct ctx *c)
{
    struct virtqueue *vq = &c->vq;
    uint16_t pending = (uint16_t)(vq->avail->idx - vq->last_avail_idx);
    uint16_t start = vq->last_avail_idx;
    unsigned consumed = pop_some(c, vq->num + 1, false, false);
    /* Only pushes write guest memory now; if the used ring overlaps the avail ring the
     * driver's ring changes under us and the counts below mean nothing. */
    uintptr_t a = (uintptr_t)vq->avail, u = (uintptr_t)vq->used;
    size_t alen = sizeof(struct vring_avail) + (vq->num + 1) * sizeof(uint16_t);
    size_t ulen = sizeof(struct vring_used) + vq->num * sizeof(struct vring_used_elem) + 2;
    if (a < u + ulen && u < a + alen)
        return;
    FUZZ_CHECK(consumed <= vq->num, "%u chains popped from a queue of %u", consumed, vq->num);
    if (pending <= vq->num) {
        FUZZ_CHECK(consumed == pending, "%u avail entries pending, %u consumed", pending, consumed);
        FUZZ_CHECK(!vq_has_avail(vq), "the ring still has entries after draining");
    } else {
        FUZZ_CHECK(consumed == 0 && vq->last_avail_idx == start,
                   "a corrupt avail idx (%u ahead) was consumed", pending);
    }
}

static struct guest_mem *build_mem(struct ctx *c, uint8_t flags)
{
    struct guest_mem *mem = guest_mem_alloc(2);
    FUZZ_CHECK(mem != NULL, "guest_mem_alloc");
    struct guest_region_desc r0 = {.gpa = G0, .size = R0_SIZE, .uva = U0, .mmap_offset = 0};
    FUZZ_CHECK(guest_region_map(&r0, memfd, &mem->regions[0]) == 0, "mapping region 0");
    mem->nregions = 1;
    c->g1 = (flags & 4) ? G0 + R0_SIZE : G1_FAR;
    c->r1_off = R1_OFF + ((flags & 8) ? 0x230 : 0);
    c->r1_size = R1_SIZE - ((flags & 8) ? 0x230 : 0);
    if (flags & 2) {
        struct guest_region_desc r1 = {
            .gpa = c->g1, .size = c->r1_size, .uva = U1, .mmap_offset = c->r1_off};
        FUZZ_CHECK(!guest_mem_overlaps(mem, &r1), "regions overlap");
        FUZZ_CHECK(guest_region_map(&r1, memfd, &mem->regions[1]) == 0, "mapping region 1");
        mem->nregions = 2;
    }
    return mem;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {.in = {data, size}};
    unsigned qlog = fuzz_u8(&c.in) % MAX_QLOG;
    uint8_t flags = fuzz_u8(&c.in);
    uint32_t desc_off = fuzz_u16(&c.in), avail_off = fuzz_u16(&c.in), used_off = fuzz_u16(&c.in);
    uint16_t base = fuzz_u16(&c.in);
    if (!(flags & 16)) {
        desc_off *= 16;
        avail_off *= 2;
        used_off *= 4;
    }

    memset(image, 0, FD_SIZE);
    c.mem = build_mem(&c, flags);
    bool in_r1 = (flags & 32) && c.mem->nregions == 2;
    uint64_t uva = in_r1 ? U1 : U0;
    uint32_t rsize = in_r1 ? c.r1_size : R0_SIZE;

    struct virtqueue *vq = &c.vq;
    vq->num = 1u << qlog;
    vq->desc_uva = uva + desc_off % rsize;
    vq->avail_uva = uva + avail_off % rsize;
    vq->used_uva = uva + used_off % rsize;
    vq->event_idx = flags & 1;
    vq->last_avail_idx = base;
    vq_reset_state(vq);

    int ret = vq_map(vq, c.mem);
    if (ret == 0) {
        FUZZ_CHECK(in_guest_mem(c.mem, (uint8_t *)vq->desc, vq->num * sizeof(struct vring_desc)),
                   "descriptor table outside guest memory");
        FUZZ_CHECK(in_guest_mem(c.mem, (uint8_t *)vq->avail,
                                sizeof(struct vring_avail) + (vq->num + 1) * sizeof(uint16_t)),
                   "avail ring outside guest memory");
        FUZZ_CHECK(in_guest_mem(c.mem, (uint8_t *)vq->used,
                                sizeof(struct vring_used) +
                                    vq->num * sizeof(struct vring_used_elem) + sizeof(uint16_t)),
                   "used ring outside guest memory");
        /* The driver starts with avail idx and used idx where the base says. */
        vq->avail->idx = base;
        vq->used->idx = base;
        c.driver_idx = base;
        c.behaved = !rings_overlap(vq);
        for (unsigned n = 0; n < MAX_OPS && c.in.left > 0; n++)
            do_op(&c, fuzz_u8(&c.in));
        drain(&c);
        push_held(&c, c.held_n);
    } else {
        FUZZ_CHECK(ret == -EFAULT || ret == -EINVAL, "vq_map: %d", ret);
    }
    guest_mem_free(c.mem);
    return 0;
}
