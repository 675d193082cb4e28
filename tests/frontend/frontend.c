/* SPDX-License-Identifier: Apache-2.0 */
#include "frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FE_MAX_QUEUES 17
#define GPA_BASE      0x100000000ull    /* guest-physical: not the memfd offset, on purpose */
#define UVA_BASE      0x7f1200000000ull /* the "VMM" virtual address of the same memory */
#define RING_ALIGN    4096

struct fe_queue {
    unsigned size;
    uint64_t desc_off, avail_off, used_off;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t avail_idx, last_used;
    uint16_t *free_stack; /* LIFO stack, or FIFO ring from free_first (fifo_heads) */
    unsigned nfree, free_first;
    int kick_fd, call_fd;
};

struct fe {
    struct fe_config cfg;
    int sock;
    int memfd;
    uint8_t *mem;
    size_t mem_size;
    size_t data_start, data_next;
    unsigned nqueues;
    bool reply_ack;
    uint64_t acked_protocol_features;
    uint64_t offered_protocol_features;
    /* The in-flight memfd and its info, kept from GET_INFLIGHT_FD for every later activation,
     * as cloud-hypervisor keeps them for the life of the device. */
    int inflight_fd;
    struct fe_inflight_info inflight_info;
    /* The last used element no pending request waited for (fe_fuse_next's -EPROTO). */
    unsigned stray_q;
    uint16_t stray_head;
    bool reconnecting; /* cloud-hypervisor's sequence after the back-end dropped */
    uint64_t unique;
    struct fe_queue q[FE_MAX_QUEUES];
    /* Requests sent with fe_fuse_send and not yet collected by fe_fuse_wait. */
    struct fe_pending *pending[FE_MAX_PENDING];
};

struct vu_hdr {
    uint32_t request, flags, size;
} __attribute__((packed));

_Static_assert(sizeof(struct fe_inflight_info) == 24, "the spec's VhostUserInflight");

/* ---- vhost-user ---- */

int fe_vu_send(struct fe *fe, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
               const int *fds, unsigned nfds)
{
    struct vu_hdr h = {request, flags | FE_VU_FLAG_VERSION, size};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, size}};
    char control[CMSG_SPACE(8 * sizeof(int))] = {0};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
    if (nfds) {
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n = sendmsg(fe->sock, &mh, MSG_NOSIGNAL);
    if (n < 0)
        return -errno;
    return (size_t)n == sizeof(h) + size ? 0 : -EIO;
}

static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n < 0)
        return -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

static int recv_full(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t done = 0;
    while (done < len) {
        int ret = wait_readable(fd, timeout_ms);
        if (ret < 0)
            return ret;
        ssize_t n = recv(fd, (uint8_t *)buf + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ECONNRESET ? -ECONNRESET : -errno;
        if (n == 0)
            return -ECONNRESET;
        done += (size_t)n;
    }
    return 0;
}

int fe_vu_recv(struct fe *fe, uint32_t *request, void *payload, uint32_t *size, int timeout_ms)
{
    struct vu_hdr h;
    int ret = recv_full(fe->sock, &h, sizeof(h), timeout_ms);
    if (ret < 0)
        return ret;
    if (!(h.flags & FE_VU_FLAG_REPLY) || h.size > *size)
        return -EPROTO;
    ret = recv_full(fe->sock, payload, h.size, timeout_ms);
    if (ret < 0)
        return ret;
    *request = h.request;
    *size = h.size;
    return 0;
}

/* Receives a reply's header with the fds that come with it (at most max_fds; more is -EPROTO,
 * and they are closed), then its payload. */
static int vu_recv_fds(struct fe *fe, uint32_t *request, void *payload, uint32_t *size, int *fds,
                       unsigned max_fds, unsigned *nfds, int timeout_ms)
{
    struct vu_hdr h;
    char control[CMSG_SPACE(8 * sizeof(int))] = {0};
    struct iovec iov = {&h, sizeof(h)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control,
                        .msg_controllen = sizeof(control)};
    *nfds = 0;
    int ret = wait_readable(fe->sock, timeout_ms);
    if (ret < 0)
        return ret;
    ssize_t n = recvmsg(fe->sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ECONNRESET;
    bool too_many = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (unsigned i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
            if (*nfds < max_fds)
                fds[(*nfds)++] = fd;
            else
                close(fd), too_many = true;
        }
    }
    if ((size_t)n != sizeof(h) || too_many || !(h.flags & FE_VU_FLAG_REPLY) || h.size > *size ||
        (ret = recv_full(fe->sock, payload, h.size, timeout_ms)) < 0) {
        for (unsigned i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return ret < 0 ? ret : -EPROTO;
    }
    *request = h.request;
    *size = h.size;
    return 0;
}

int fe_vu_get_inflight(struct fe *fe, const struct fe_inflight_info *req,
                       struct fe_inflight_info *reply, int *fd)
{
    /* cloud-hypervisor (the vhost crate) sets NEED_REPLY on every message once REPLY_ACK is
     * acked, this one included; the reply is the answer itself, not an extra ack. */
    uint32_t flags =
        fe->cfg.profile == FE_PROFILE_CLOUD_HYPERVISOR && fe->reply_ack ? FE_VU_FLAG_NEED_REPLY : 0;
    *fd = -1;
    int ret = fe_vu_send(fe, FE_VU_GET_INFLIGHT_FD, flags, req, sizeof(*req), NULL, 0);
    if (ret < 0)
        return ret;
    uint32_t got = 0, size = sizeof(*reply);
    unsigned nfds;
    ret = vu_recv_fds(fe, &got, reply, &size, fd, 1, &nfds, 5000);
    if (ret < 0)
        return ret;
    if (got != FE_VU_GET_INFLIGHT_FD || size != sizeof(*reply)) {
        if (nfds)
            close(*fd);
        *fd = -1;
        return -EPROTO;
    }
    return 0;
}

int64_t fe_vu_ack(struct fe *fe, uint32_t request, const void *payload, uint32_t size,
                  const int *fds, unsigned nfds)
{
    int ret = fe_vu_send(fe, request, FE_VU_FLAG_NEED_REPLY, payload, size, fds, nfds);
    if (ret < 0)
        return ret;
    uint64_t v = 0;
    uint32_t req, sz = sizeof(v);
    ret = fe_vu_recv(fe, &req, &v, &sz, 5000);
    if (ret < 0)
        return ret;
    if (req != request || sz != sizeof(v))
        return -EPROTO;
    return (int64_t)v;
}

int fe_vu_get_u64(struct fe *fe, uint32_t request, uint64_t *value)
{
    uint32_t flags =
        fe->cfg.profile == FE_PROFILE_CLOUD_HYPERVISOR && fe->reply_ack ? FE_VU_FLAG_NEED_REPLY : 0;
    int ret = fe_vu_send(fe, request, flags, NULL, 0, NULL, 0);
    if (ret < 0)
        return ret;
    uint32_t req, sz = sizeof(*value);
    ret = fe_vu_recv(fe, &req, value, &sz, 5000);
    if (ret == 0 && (req != request || sz != sizeof(*value)))
        ret = -EPROTO;
    return ret;
}

int fe_vu_call_u64(struct fe *fe, uint32_t request, const void *payload, uint32_t size,
                   const int *fds, unsigned nfds, uint64_t *reply)
{
    int ret = fe_vu_send(fe, request, 0, payload, size, fds, nfds);
    if (ret < 0)
        return ret;
    uint32_t req, sz = sizeof(*reply);
    ret = fe_vu_recv(fe, &req, reply, &sz, 5000);
    if (ret == 0 && (req != request || sz != sizeof(*reply)))
        ret = -EPROTO;
    return ret;
}

bool fe_vu_closed(struct fe *fe, int timeout_ms)
{
    if (wait_readable(fe->sock, timeout_ms) < 0)
        return false;
    char c;
    ssize_t n = recv(fe->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

int fe_stop_rings(struct fe *fe)
{
    for (uint32_t i = 0; i < fe->nqueues; i++) {
        struct {
            uint32_t index, num;
        } st = {i, 0};
        int ret = fe_vu_send(fe, FE_VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0);
        uint32_t req, sz = sizeof(st);
        if (ret < 0 || (ret = fe_vu_recv(fe, &req, &st, &sz, 5000)) < 0)
            return ret;
        if (req != FE_VU_GET_VRING_BASE || sz != sizeof(st))
            return -EPROTO;
    }
    return 0;
}

int fe_set_state_fd(struct fe *fe, uint32_t direction, uint32_t phase, int fd, uint64_t *reply)
{
    uint32_t msg[2] = {direction, phase};
    return fe_vu_call_u64(fe, FE_VU_SET_DEVICE_STATE_FD, msg, sizeof(msg), &fd, fd >= 0 ? 1 : 0,
                          reply);
}

int fe_check_state(struct fe *fe, uint64_t *result, int timeout_ms)
{
    int ret = fe_vu_send(fe, FE_VU_CHECK_DEVICE_STATE, 0, NULL, 0, NULL, 0);
    if (ret < 0)
        return ret;
    uint32_t req, sz = sizeof(*result);
    ret = fe_vu_recv(fe, &req, result, &sz, timeout_ms);
    if (ret == 0 && (req != FE_VU_CHECK_DEVICE_STATE || sz != sizeof(*result)))
        ret = -EPROTO;
    return ret;
}

/* A "set" message: NEED_REPLY when REPLY_ACK was negotiated and the profile asks for it. */
static int vu_set(struct fe *fe, uint32_t request, const void *payload, uint32_t size,
                  const int *fds, unsigned nfds)
{
    bool ack = fe->reply_ack &&
               (fe->cfg.profile == FE_PROFILE_CLOUD_HYPERVISOR || request == FE_VU_SET_MEM_TABLE);
    if (!ack)
        return fe_vu_send(fe, request, 0, payload, size, fds, nfds);
    int64_t r = fe_vu_ack(fe, request, payload, size, fds, nfds);
    return r < 0 ? (int)r : r == 0 ? 0 : -EIO;
}

/* ---- guest memory ---- */

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

void *fe_ptr(struct fe *fe, uint64_t gpa)
{
    return fe->mem + (gpa - GPA_BASE);
}

uint64_t fe_alloc(struct fe *fe, size_t len)
{
    size_t off = (fe->data_next + 15) & ~(size_t)15;
    if (off + len > fe->mem_size)
        abort(); /* a test asked for more guest memory than it configured */
    fe->data_next = off + len;
    return GPA_BASE + off;
}

uint64_t fe_alloc_pages(struct fe *fe, size_t len)
{
    fe->data_next = align_up(fe->data_next, 4096);
    return fe_alloc(fe, align_up(len ? len : 1, 4096));
}

uint64_t fe_gpa_of(struct fe *fe, const void *p)
{
    return GPA_BASE + (uint64_t)((const uint8_t *)p - fe->mem);
}

size_t fe_alloc_mark(struct fe *fe)
{
    return fe->data_next;
}

void fe_alloc_release(struct fe *fe, size_t mark)
{
    fe->data_next = mark;
}

int fe_socket(const struct fe *fe)
{
    return fe->sock;
}
int fe_memfd(const struct fe *fe)
{
    return fe->memfd;
}
uint64_t fe_gpa_base(const struct fe *fe)
{
    return GPA_BASE;
}
uint64_t fe_uva_base(const struct fe *fe)
{
    return UVA_BASE;
}
size_t fe_mem_size(const struct fe *fe)
{
    return fe->mem_size;
}
uint64_t fe_offered_protocol_features(const struct fe *fe)
{
    return fe->offered_protocol_features;
}
uint64_t fe_acked_protocol_features(const struct fe *fe)
{
    return fe->acked_protocol_features;
}
int fe_inflight_fd(const struct fe *fe)
{
    return fe->inflight_fd;
}
const struct fe_inflight_info *fe_inflight_info(const struct fe *fe)
{
    return &fe->inflight_info;
}

int fe_set_inflight(struct fe *fe, int fd, const struct fe_inflight_info *info)
{
    int copy = -1;
    if (fd >= 0 && (copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
        return -errno;
    if (fe->inflight_fd >= 0)
        close(fe->inflight_fd);
    fe->inflight_fd = copy;
    fe->inflight_info = info ? *info : (struct fe_inflight_info){0};
    return 0;
}

/* ---- rings ---- */

static void layout_queues(struct fe *fe)
{
    size_t off = 0;
    for (unsigned i = 0; i < fe->nqueues; i++) {
        struct fe_queue *q = &fe->q[i];
        unsigned n = fe->cfg.queue_size;
        q->size = n;
        q->desc_off = off;
        off = align_up(off + 16u * n, RING_ALIGN);
        q->avail_off = off;
        off = align_up(off + 6 + 2u * n, RING_ALIGN);
        q->used_off = off;
        off = align_up(off + 6 + 8u * n, RING_ALIGN);
        q->desc = (struct vring_desc *)(fe->mem + q->desc_off);
        q->avail = (struct vring_avail *)(fe->mem + q->avail_off);
        q->used = (struct vring_used *)(fe->mem + q->used_off);
        q->free_stack = calloc(n, sizeof(uint16_t));
        for (unsigned d = 0; d < n; d++)
            q->free_stack[d] = (uint16_t)(n - 1 - d);
        q->nfree = n;
        q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    fe->data_start = fe->data_next = off;
}

struct vring_desc *fe_vq_desc(struct fe *fe, unsigned q)
{
    return fe->q[q].desc;
}
struct vring_avail *fe_vq_avail(struct fe *fe, unsigned q)
{
    return fe->q[q].avail;
}
struct vring_used *fe_vq_used(struct fe *fe, unsigned q)
{
    return fe->q[q].used;
}
unsigned fe_vq_size(struct fe *fe, unsigned q)
{
    return fe->q[q].size;
}

static int take_desc(struct fe *fe, struct fe_queue *q)
{
    if (!q->nfree)
        return -1;
    if (!fe->cfg.fifo_heads)
        return q->free_stack[--q->nfree];
    uint16_t d = q->free_stack[q->free_first];
    q->free_first = (q->free_first + 1) % q->size;
    q->nfree--;
    return d;
}

static void put_desc(struct fe *fe, struct fe_queue *q, uint16_t d)
{
    if (fe->cfg.fifo_heads)
        q->free_stack[(q->free_first + q->nfree) % q->size] = d;
    else
        q->free_stack[q->nfree] = d;
    q->nfree++;
}

void fe_vq_publish(struct fe *fe, unsigned qi, uint16_t head)
{
    struct fe_queue *q = &fe->q[qi];
    q->avail->ring[q->avail_idx % q->size] = head;
    q->avail_idx++;
    /* Release: the descriptors and ring entry before the index (the device's acquire). */
    __atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

/* fe_vq_add with the indirect table (when indirect) at table, n descriptors long. */
static int vq_add(struct fe *fe, unsigned qi, const struct fe_buf *bufs, unsigned n, bool indirect,
                  uint64_t table, uint16_t *head)
{
    struct fe_queue *q = &fe->q[qi];
    if (indirect) {
        struct vring_desc *t = fe_ptr(fe, table);
        for (unsigned i = 0; i < n; i++) {
            t[i] = (struct vring_desc){bufs[i].gpa, bufs[i].len,
                                       (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) |
                                                  (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
                                       (uint16_t)(i + 1)};
        }
        int d = take_desc(fe, q);
        if (d < 0)
            return -ENOSPC;
        q->desc[d] = (struct vring_desc){table, n * 16u, VRING_DESC_F_INDIRECT, 0};
        *head = (uint16_t)d;
    } else {
        if (q->nfree < n)
            return -ENOSPC;
        int prev = -1;
        for (unsigned i = n; i-- > 0;) {
            int d = take_desc(fe, q);
            q->desc[d] = (struct vring_desc){bufs[i].gpa, bufs[i].len,
                                             (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) |
                                                        (prev >= 0 ? VRING_DESC_F_NEXT : 0)),
                                             (uint16_t)(prev >= 0 ? prev : 0)};
            prev = d;
        }
        *head = (uint16_t)prev;
    }
    fe_vq_publish(fe, qi, *head);
    return 0;
}

int fe_vq_add(struct fe *fe, unsigned qi, const struct fe_buf *bufs, unsigned n, bool indirect,
              uint16_t *head)
{
    uint64_t table = indirect ? fe_alloc(fe, n * sizeof(struct vring_desc)) : 0;
    return vq_add(fe, qi, bufs, n, indirect, table, head);
}

void fe_vq_free_chain(struct fe *fe, unsigned qi, uint16_t head)
{
    struct fe_queue *q = &fe->q[qi];
    uint16_t d = head;
    for (unsigned steps = 0; steps < q->size; steps++) {
        put_desc(fe, q, d);
        if (!(q->desc[d].flags & VRING_DESC_F_NEXT) || q->desc[d].flags & VRING_DESC_F_INDIRECT)
            break;
        d = q->desc[d].next;
    }
}

void fe_vq_kick(struct fe *fe, unsigned qi)
{
    eventfd_write(fe->q[qi].kick_fd, 1);
}

int fe_vq_call_fd(struct fe *fe, unsigned qi)
{
    return fe->q[qi].call_fd;
}

int fe_vq_take_used(struct fe *fe, unsigned qi, uint16_t *head, uint32_t *len)
{
    struct fe_queue *q = &fe->q[qi];
    /* Acquire: pairs with the device's release store of used->idx. */
    uint16_t idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
    if (idx == q->last_used) {
        /* used_event: interrupt us on the next completion; then look once more, as the
         * device may have pushed just before it saw the new used_event. */
        __atomic_store_n(&q->avail->ring[q->size], q->last_used, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
        if (idx == q->last_used)
            return -EAGAIN;
    }
    struct vring_used_elem e = q->used->ring[q->last_used % q->size];
    q->last_used++;
    __atomic_store_n(&q->avail->ring[q->size], q->last_used, __ATOMIC_RELAXED);
    *head = (uint16_t)e.id;
    *len = e.len;
    return 0;
}

int fe_vq_get_used(struct fe *fe, unsigned qi, uint16_t *head, uint32_t *len, int timeout_ms)
{
    for (;;) {
        if (fe_vq_take_used(fe, qi, head, len) == 0)
            return 0;
        int call_fd = fe->q[qi].call_fd;
        int ret = wait_readable(call_fd, timeout_ms);
        if (ret < 0)
            return ret;
        eventfd_t v;
        eventfd_read(call_fd, &v);
    }
}

/* ---- set-up ---- */

/* cloud-hypervisor after the back-end dropped mid-session: no GET_PROTOCOL_FEATURES and no
 * GET_QUEUE_NUM, the protocol features acked at boot sent again. */
static int renegotiate(struct fe *fe, uint64_t *features)
{
    int ret = fe_vu_send(fe, FE_VU_SET_OWNER, 0, NULL, 0, NULL, 0);
    if (ret < 0 || (ret = fe_vu_get_u64(fe, FE_VU_GET_FEATURES, features)) < 0)
        return ret;
    return fe_vu_send(fe, FE_VU_SET_PROTOCOL_FEATURES, 0, &fe->acked_protocol_features, 8, NULL, 0);
}

static int negotiate_protocol(struct fe *fe, uint64_t *features)
{
    uint64_t pfeatures, nq;
    int ret;
    if (fe->cfg.profile == FE_PROFILE_CLOUD_HYPERVISOR &&
        (ret = fe_vu_send(fe, FE_VU_SET_OWNER, 0, NULL, 0, NULL, 0)) < 0)
        return ret;
    if ((ret = fe_vu_get_u64(fe, FE_VU_GET_FEATURES, features)) < 0)
        return ret;
    if (!(*features & (1ull << 30)))
        return -EPROTO; /* no VHOST_USER_F_PROTOCOL_FEATURES */
    if ((ret = fe_vu_get_u64(fe, FE_VU_GET_PROTOCOL_FEATURES, &pfeatures)) < 0)
        return ret;
    fe->offered_protocol_features = pfeatures;
    uint64_t mine = (1ull << 0) | (1ull << 3) | (1ull << 15) | fe->cfg.protocol_features;
    if (fe->cfg.inflight && fe->cfg.profile == FE_PROFILE_CLOUD_HYPERVISOR)
        mine |= 1ull << FE_VU_PROTOCOL_F_INFLIGHT_SHMFD;
    uint64_t want = pfeatures & mine;
    if ((ret = fe_vu_send(fe, FE_VU_SET_PROTOCOL_FEATURES, 0, &want, 8, NULL, 0)) < 0)
        return ret;
    fe->acked_protocol_features = want;
    fe->reply_ack = want & (1ull << 3);
    if ((ret = fe_vu_get_u64(fe, FE_VU_GET_QUEUE_NUM, &nq)) < 0)
        return ret;
    if (nq < fe->nqueues)
        return -ENOTSUP;
    if (fe->cfg.profile == FE_PROFILE_QEMU &&
        (ret = fe_vu_send(fe, FE_VU_SET_OWNER, 0, NULL, 0, NULL, 0)) < 0)
        return ret;
    return 0;
}

static int negotiate(struct fe *fe)
{
    uint64_t features;
    int ret = fe->reconnecting ? renegotiate(fe, &features) : negotiate_protocol(fe, &features);
    if (ret < 0)
        return ret;
    uint64_t acked =
        features & ((1ull << 32) | (1ull << 30) | (fe->cfg.no_indirect ? 0 : 1ull << 28) |
                    (fe->cfg.no_event_idx ? 0 : 1ull << 29) | fe->cfg.features);
    return vu_set(fe, FE_VU_SET_FEATURES, &acked, 8, NULL, 0);
}

static int send_mem_table(struct fe *fe)
{
    struct {
        uint32_t nregions, padding;
        uint64_t gpa, size, uva, offset;
    } mt = {1, 0, GPA_BASE, fe->mem_size, UVA_BASE, 0};
    return vu_set(fe, FE_VU_SET_MEM_TABLE, &mt, sizeof(mt), &fe->memfd, 1);
}

static int setup_queue(struct fe *fe, unsigned i)
{
    struct fe_queue *q = &fe->q[i];
    struct {
        uint32_t index, num;
    } st = {i, q->size};
    struct {
        uint32_t index, flags;
        uint64_t desc, used, avail, log;
    } addr = {i,
              fe->cfg.vring_log ? 1u : 0u, /* VHOST_VRING_F_LOG */
              UVA_BASE + q->desc_off,
              UVA_BASE + q->used_off,
              UVA_BASE + q->avail_off,
              fe->cfg.vring_log ? GPA_BASE + q->used_off : 0};
    uint64_t idx = i;
    int ret;
    if (fe->cfg.profile == FE_PROFILE_QEMU) {
        st.num = q->size;
        if ((ret = vu_set(fe, FE_VU_SET_VRING_NUM, &st, 8, NULL, 0)) < 0)
            return ret;
        st.num = q->avail_idx; /* 0 on a fresh ring */
        if ((ret = vu_set(fe, FE_VU_SET_VRING_BASE, &st, 8, NULL, 0)) < 0 ||
            (ret = vu_set(fe, FE_VU_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0)) < 0 ||
            (ret = vu_set(fe, FE_VU_SET_VRING_KICK, &idx, 8, &q->kick_fd, 1)) < 0 ||
            (ret = vu_set(fe, FE_VU_SET_VRING_CALL, &idx, 8, &q->call_fd, 1)) < 0)
            return ret;
        return 0;
    }
    /* The guest's avail index, not the device's position: after a reconnect that is all
     * cloud-hypervisor knows (the in-flight area tells the back-end the rest). */
    st.num = q->avail_idx;
    if ((ret = vu_set(fe, FE_VU_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0)) < 0 ||
        (ret = vu_set(fe, FE_VU_SET_VRING_BASE, &st, 8, NULL, 0)) < 0 ||
        (ret = vu_set(fe, FE_VU_SET_VRING_CALL, &idx, 8, &q->call_fd, 1)) < 0 ||
        (ret = vu_set(fe, FE_VU_SET_VRING_KICK, &idx, 8, &q->kick_fd, 1)) < 0)
        return ret;
    return 0;
}

/*
 * cloud-hypervisor's in-flight step, between SET_VRING_NUM and the rings: GET_INFLIGHT_FD
 * only while it holds no fd (the first activation; num_queues: all queues, queue_size: the
 * first queue's), SET_INFLIGHT_FD with the kept fd and info at every activation.
 */
static int setup_inflight(struct fe *fe)
{
    if (!(fe->acked_protocol_features & (1ull << FE_VU_PROTOCOL_F_INFLIGHT_SHMFD)))
        return 0;
    if (fe->inflight_fd < 0) {
        struct fe_inflight_info req = {.num_queues = (uint16_t)fe->nqueues,
                                       .queue_size = (uint16_t)fe->q[0].size};
        int ret = fe_vu_get_inflight(fe, &req, &fe->inflight_info, &fe->inflight_fd);
        if (ret < 0)
            return ret;
        if (fe->inflight_fd < 0)
            return -EPROTO; /* cloud-hypervisor fails the activation without the fd */
    }
    return vu_set(fe, FE_VU_SET_INFLIGHT_FD, &fe->inflight_info, sizeof(fe->inflight_info),
                  &fe->inflight_fd, 1);
}

static int setup_device(struct fe *fe)
{
    int ret = negotiate(fe);
    if (ret < 0 || (ret = send_mem_table(fe)) < 0)
        return ret;
    if (fe->cfg.profile == FE_PROFILE_CLOUD_HYPERVISOR) {
        for (unsigned i = 0; i < fe->nqueues; i++) {
            struct {
                uint32_t index, num;
            } st = {i, fe->q[i].size};
            if ((ret = vu_set(fe, FE_VU_SET_VRING_NUM, &st, 8, NULL, 0)) < 0)
                return ret;
        }
        if ((ret = setup_inflight(fe)) < 0)
            return ret;
    }
    for (unsigned i = 0; i < fe->nqueues; i++)
        if ((ret = setup_queue(fe, i)) < 0)
            return ret;
    {
        /* Both enable every ring after all are set up (cloud-hypervisor's
         * enable_vhost_user_vrings after its per-queue loop). */
        for (unsigned i = 0; i < fe->nqueues; i++) {
            struct {
                uint32_t index, num;
            } st = {i, 1};
            if ((ret = vu_set(fe, FE_VU_SET_VRING_ENABLE, &st, 8, NULL, 0)) < 0)
                return ret;
        }
    }
    /* A round trip: once it returns, the back-end has processed every message above, so the
     * first kick cannot overtake SET_VRING_ENABLE (some back-ends drop such a kick). */
    uint64_t features;
    return fe_vu_get_u64(fe, FE_VU_GET_FEATURES, &features);
}

static int connect_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int fe_open(const struct fe_config *cfg, struct fe **out)
{
    struct fe *fe = calloc(1, sizeof(*fe));
    if (!fe)
        return -ENOMEM;
    fe->cfg = *cfg;
    if (!fe->cfg.mem_size)
        fe->cfg.mem_size = 64u << 20;
    if (!fe->cfg.request_queues)
        fe->cfg.request_queues = 1;
    if (!fe->cfg.queue_size) /* what each VMM uses for virtio-fs */
        fe->cfg.queue_size = cfg->profile == FE_PROFILE_CLOUD_HYPERVISOR ? 1024 : 128;
    fe->nqueues = 1 + fe->cfg.request_queues;
    fe->mem_size = fe->cfg.mem_size;
    fe->sock = fe->memfd = fe->inflight_fd = -1;
    int ret = -ENOMEM;
    if (fe->nqueues > FE_MAX_QUEUES)
        goto fail;
    fe->memfd = memfd_create("fe-guest-mem", MFD_CLOEXEC);
    if (fe->memfd < 0 || ftruncate(fe->memfd, (off_t)fe->mem_size) < 0) {
        ret = -errno;
        goto fail;
    }
    fe->mem = mmap(NULL, fe->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
    if (fe->mem == MAP_FAILED) {
        fe->mem = NULL;
        ret = -errno;
        goto fail;
    }
    layout_queues(fe);
    fe->sock = connect_socket(cfg->socket_path);
    if (fe->sock < 0) {
        ret = fe->sock;
        goto fail;
    }
    if (!cfg->skip_setup && (ret = setup_device(fe)) < 0)
        goto fail;
    *out = fe;
    return 0;
fail:
    fe_close(fe);
    return ret;
}

int fe_open_retry(const struct fe_config *cfg, struct fe **out, int timeout_ms)
{
    int ret = fe_open(cfg, out);
    for (int waited = 0; ret < 0 && waited < timeout_ms; waited += 5) {
        usleep(5000);
        ret = fe_open(cfg, out);
    }
    return ret;
}

int fe_open_session(const char *socket_path, int timeout_ms, struct fe **out)
{
    const struct fe_config cfg = {.socket_path = socket_path};
    int ret = fe_open_retry(&cfg, out, timeout_ms);

    if (ret == 0 && (ret = fe_fuse_init(*out)) != 0) {
        fe_close(*out);
        *out = NULL;
    }
    return ret;
}

int fe_reconnect(struct fe *fe)
{
    if (fe->sock >= 0)
        close(fe->sock);
    fe->sock = connect_socket(fe->cfg.socket_path);
    /* Nothing listens yet, or a stale socket file: a daemon on its way back. */
    for (int waited = 0; (fe->sock == -ECONNREFUSED || fe->sock == -ENOENT) && waited < 10000;
         waited += 5) {
        usleep(5000);
        fe->sock = connect_socket(fe->cfg.socket_path);
    }
    if (fe->sock < 0)
        return fe->sock;
    fe->reconnecting = true;
    int ret = setup_device(fe);
    fe->reconnecting = false;
    return ret;
}

int fe_setup(struct fe *fe)
{
    return setup_device(fe);
}

void fe_close(struct fe *fe)
{
    if (!fe)
        return;
    if (fe->sock >= 0)
        close(fe->sock);
    for (unsigned i = 0; i < fe->nqueues; i++) {
        if (fe->q[i].kick_fd > 0)
            close(fe->q[i].kick_fd);
        if (fe->q[i].call_fd > 0)
            close(fe->q[i].call_fd);
        free(fe->q[i].free_stack);
    }
    if (fe->mem)
        munmap(fe->mem, fe->mem_size);
    if (fe->memfd >= 0)
        close(fe->memfd);
    if (fe->inflight_fd >= 0)
        close(fe->inflight_fd);
    free(fe);
}

/* ---- FUSE ---- */

int fe_fuse(struct fe *fe, unsigned q, uint32_t opcode, uint64_t nodeid, const struct iovec *in,
            unsigned nin, size_t out_size, struct fe_reply *r)
{
    return fe_fuse_as(fe, q, 0, 0, opcode, nodeid, in, nin, out_size, r);
}

/* A used element for a request sent with fe_fuse_send: recorded there. NULL if none waits
 * for it (remembered as the stray one). */
static struct fe_pending *set_aside(struct fe *fe, unsigned q, uint16_t head, uint32_t len)
{
    for (unsigned i = 0; i < FE_MAX_PENDING; i++) {
        struct fe_pending *p = fe->pending[i];
        if (p && p->q == q && p->head == head && !p->done) {
            p->done = true;
            p->used_len = len;
            return p;
        }
    }
    fe->stray_q = q;
    fe->stray_head = head;
    return NULL;
}

/*
 * Writes a request (h, with len and unique filled in here, then the in iovecs) and room for a
 * reply of out_size payload bytes into guest memory, and publishes the chain on queue q.
 */
static int publish_request(struct fe *fe, unsigned q, struct fuse_in_header *h,
                           const struct iovec *in, unsigned nin, size_t out_size,
                           uint64_t *reply_gpa, uint16_t *head)
{
    size_t inlen = sizeof(*h);
    for (unsigned i = 0; i < nin; i++)
        inlen += in[i].iov_len;
    uint64_t req = fe_alloc(fe, inlen);
    *reply_gpa = fe_alloc(fe, sizeof(struct fuse_out_header) + out_size);
    h->len = (uint32_t)inlen;
    h->unique = ++fe->unique;
    uint8_t *ptr = fe_ptr(fe, req);
    memcpy(ptr, h, sizeof(*h));
    ptr += sizeof(*h);
    for (unsigned i = 0; i < nin; i++) {
        memcpy(ptr, in[i].iov_base, in[i].iov_len);
        ptr += in[i].iov_len;
    }
    struct fe_buf bufs[2] = {
        {req, (uint32_t)inlen, false},
        {*reply_gpa, (uint32_t)(sizeof(struct fuse_out_header) + out_size), true}};
    int ret = fe_vq_add(fe, q, bufs, 2, !fe->cfg.no_indirect, head);
    if (ret == 0)
        fe_vq_kick(fe, q);
    return ret;
}

/* Fills r from the reply at reply_gpa, len bytes used; -EPROTO if its header is inconsistent. */
static int read_reply(struct fe *fe, uint64_t reply_gpa, uint32_t len, uint64_t unique,
                      struct fe_reply *r)
{
    struct fuse_out_header *o = fe_ptr(fe, reply_gpa);
    r->len = len;
    r->error = len >= sizeof(*o) ? o->error : 0;
    r->data = (uint8_t *)(o + 1);
    r->data_len = len >= sizeof(*o) ? len - sizeof(*o) : 0;
    return len >= sizeof(*o) && (o->unique != unique || o->len != len) ? -EPROTO : 0;
}

static int free_pending_slot(struct fe *fe)
{
    for (unsigned slot = 0; slot < FE_MAX_PENDING; slot++)
        if (!fe->pending[slot])
            return (int)slot;
    return -ENOSPC;
}

int fe_fuse_send(struct fe *fe, unsigned q, uint32_t opcode, uint64_t nodeid,
                 const struct iovec *in, unsigned nin, size_t out_size, uint32_t pid,
                 struct fe_pending *p)
{
    int slot = free_pending_slot(fe);
    if (slot < 0)
        return slot;
    /* Not released: the buffers stay the request's until fe_fuse_wait. */
    struct fuse_in_header h = {.opcode = opcode, .nodeid = nodeid, .pid = pid};
    *p = (struct fe_pending){.q = q};
    int ret = publish_request(fe, q, &h, in, nin, out_size, &p->reply_gpa, &p->head);
    if (ret < 0)
        return ret;
    p->unique = h.unique;
    fe->pending[slot] = p;
    return 0;
}

int fe_fuse_submit(struct fe *fe, unsigned q, const struct fuse_in_header *hdr,
                   const struct iovec *in, unsigned nin, size_t out_size, uint64_t area_gpa,
                   size_t area_len, struct fe_pending *p)
{
    int slot = free_pending_slot(fe);
    if (slot < 0)
        return slot;
    struct fuse_in_header h = *hdr;
    size_t inlen = sizeof(h);
    for (unsigned i = 0; i < nin; i++)
        inlen += in[i].iov_len;
    size_t table_len = 2 * sizeof(struct vring_desc);
    size_t in_off = table_len;
    size_t out_off = align_up(in_off + inlen, 16);
    size_t outlen = sizeof(struct fuse_out_header) + out_size;
    if (out_off + outlen > area_len)
        return -ENOSPC;
    h.len = (uint32_t)inlen;
    h.unique = ++fe->unique;
    uint8_t *ptr = fe_ptr(fe, area_gpa + in_off);
    memcpy(ptr, &h, sizeof(h));
    ptr += sizeof(h);
    for (unsigned i = 0; i < nin; i++) {
        memcpy(ptr, in[i].iov_base, in[i].iov_len);
        ptr += in[i].iov_len;
    }
    *p = (struct fe_pending){.q = q, .unique = h.unique, .reply_gpa = area_gpa + out_off};
    struct fe_buf bufs[2] = {{area_gpa + in_off, (uint32_t)inlen, false},
                             {p->reply_gpa, (uint32_t)outlen, true}};
    /* A reply that never comes must not pass for an old one left in the area. */
    memset(fe_ptr(fe, p->reply_gpa), 0, sizeof(struct fuse_out_header));
    int ret = vq_add(fe, q, bufs, 2, !fe->cfg.no_indirect, area_gpa, &p->head);
    if (ret < 0)
        return ret;
    fe->pending[slot] = p;
    fe_vq_kick(fe, q);
    return 0;
}

/* The next used element of any queue, for a pending request; -EAGAIN if none is there. */
static int take_any_used(struct fe *fe, struct fe_pending **done)
{
    for (unsigned q = 0; q < fe->nqueues; q++) {
        uint16_t head;
        uint32_t len;
        if (fe_vq_take_used(fe, q, &head, &len) == 0) {
            *done = set_aside(fe, q, head, len);
            return *done ? 0 : -EPROTO;
        }
    }
    return -EAGAIN;
}

int fe_fuse_next(struct fe *fe, int timeout_ms, struct fe_pending **done)
{
    *done = NULL;
    for (;;) {
        int ret = take_any_used(fe, done);
        if (ret != -EAGAIN)
            return ret;
        struct pollfd pfd[FE_MAX_QUEUES + 1];
        for (unsigned q = 0; q < fe->nqueues; q++)
            pfd[q] = (struct pollfd){.fd = fe->q[q].call_fd, .events = POLLIN};
        /* No events asked: poll reports a hang-up (or an error) of the socket anyway. */
        pfd[fe->nqueues] = (struct pollfd){.fd = fe->sock, .events = 0};
        int n = poll(pfd, fe->nqueues + 1, timeout_ms);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        for (unsigned q = 0; q < fe->nqueues; q++) {
            eventfd_t v;
            if (pfd[q].revents & POLLIN)
                eventfd_read(fe->q[q].call_fd, &v);
        }
        if (pfd[fe->nqueues].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            /* What the daemon published before it went is still collected first. */
            ret = take_any_used(fe, done);
            return ret != -EAGAIN ? ret : -ECONNRESET;
        }
    }
}

void fe_stray(const struct fe *fe, unsigned *q, uint16_t *head)
{
    *q = fe->stray_q;
    *head = fe->stray_head;
}

unsigned fe_pending_count(const struct fe *fe)
{
    unsigned n = 0;
    for (unsigned i = 0; i < FE_MAX_PENDING; i++)
        n += fe->pending[i] != NULL;
    return n;
}

int fe_fuse_wait(struct fe *fe, struct fe_pending *p, int timeout_ms, struct fe_reply *r)
{
    uint16_t got;
    uint32_t len;
    int ret = 0;
    while (!p->done && (ret = fe_vq_get_used(fe, p->q, &got, &len, timeout_ms)) == 0)
        if (!set_aside(fe, p->q, got, len))
            return -EPROTO; /* a reply nobody waits for */
    if (!p->done)
        return ret; /* still pending: the caller may wait again */
    for (unsigned i = 0; i < FE_MAX_PENDING; i++)
        if (fe->pending[i] == p)
            fe->pending[i] = NULL;
    fe_vq_free_chain(fe, p->q, p->head);
    return read_reply(fe, p->reply_gpa, p->used_len, p->unique, r);
}

static int fuse_call(struct fe *fe, unsigned q, uint32_t uid, uint32_t gid, uint16_t total_extlen,
                     uint32_t opcode, uint64_t nodeid, const struct iovec *in, unsigned nin,
                     size_t out_size, struct fe_reply *r);

int fe_fuse_as(struct fe *fe, unsigned q, uint32_t uid, uint32_t gid, uint32_t opcode,
               uint64_t nodeid, const struct iovec *in, unsigned nin, size_t out_size,
               struct fe_reply *r)
{
    return fuse_call(fe, q, uid, gid, 0, opcode, nodeid, in, nin, out_size, r);
}

int fe_fuse_ext(struct fe *fe, unsigned q, uint16_t total_extlen, uint32_t opcode, uint64_t nodeid,
                const struct iovec *in, unsigned nin, size_t out_size, struct fe_reply *r)
{
    return fuse_call(fe, q, 0, 0, total_extlen, opcode, nodeid, in, nin, out_size, r);
}

static int fuse_call(struct fe *fe, unsigned q, uint32_t uid, uint32_t gid, uint16_t total_extlen,
                     uint32_t opcode, uint64_t nodeid, const struct iovec *in, unsigned nin,
                     size_t out_size, struct fe_reply *r)
{
    size_t mark = fe_alloc_mark(fe);
    struct fuse_in_header h = {.opcode = opcode,
                               .nodeid = nodeid,
                               .uid = uid,
                               .gid = gid,
                               .pid = 1,
                               .total_extlen = total_extlen};
    uint64_t rep;
    uint16_t head, got;
    uint32_t len;
    int ret = publish_request(fe, q, &h, in, nin, out_size, &rep, &head);
    if (ret < 0)
        goto out;
    /* Replies to requests sent with fe_fuse_send may come first: they are set aside. */
    while ((ret = fe_vq_get_used(fe, q, &got, &len, 5000)) == 0 && got != head &&
           set_aside(fe, q, got, len))
        ;
    if (ret < 0)
        goto out;
    fe_vq_free_chain(fe, q, got);
    ret = got != head ? -EPROTO : read_reply(fe, rep, len, h.unique, r);
out:
    /* The reply stays readable until the next request reuses the space. */
    fe_alloc_release(fe, mark);
    return ret;
}

int fe_fuse_init(struct fe *fe)
{
    struct fuse_init_in in = {.major = 7,
                              .minor = 38,
                              .max_readahead = 1u << 20,
                              .flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES |
                                       FUSE_DO_READDIRPLUS | FUSE_INIT_EXT};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    int ret = fe_fuse(fe, 1, FUSE_INIT, 0, &iov, 1, sizeof(struct fuse_init_out), &r);
    return ret < 0 ? ret : r.error;
}

int fe_fuse_init_flags(struct fe *fe, uint64_t flags, struct fuse_init_out *out)
{
    flags |= FUSE_INIT_EXT;
    struct fuse_init_in in = {.major = 7,
                              .minor = 38,
                              .max_readahead = 1u << 20,
                              .flags = (uint32_t)flags,
                              .flags2 = (uint32_t)(flags >> 32)};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    int ret = fe_fuse(fe, 1, FUSE_INIT, 0, &iov, 1, sizeof(struct fuse_init_out), &r);
    if (ret < 0)
        return ret;
    if (r.error == 0 && out) {
        memset(out, 0, sizeof(*out));
        memcpy(out, r.data, r.data_len < sizeof(*out) ? r.data_len : sizeof(*out));
    }
    return r.error;
}

int fe_lookup(struct fe *fe, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    struct iovec iov = {(void *)name, strlen(name) + 1};
    struct fe_reply r;
    int ret = fe_fuse(fe, 1, FUSE_LOOKUP, parent, &iov, 1, sizeof(*e), &r);
    if (ret < 0)
        return ret;
    if (r.error == 0)
        memcpy(e, r.data, sizeof(*e));
    return r.error;
}
