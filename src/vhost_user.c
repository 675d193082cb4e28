/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user message handling. The front-end is not trusted: every message's size and fd
 * count is checked against what its type requires before the payload is read, every fd
 * received is either kept or closed, and every message with NEED_REPLY gets exactly one
 * reply (its own, for the GET_* messages that have one).
 */
#include "vhost_user.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vhost_types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_fs.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <urcu.h>

#include "guest_mem.h"
#include "inflight.h"
#include "log.h"
#include "scm_fds.h"
#include "session_journal.h"
#include "state_transfer.h"
#include "thread_pool.h"
#include "utf8.h"
#include "virtqueue.h"
#include "worker.h"

enum vu_request {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_GET_INFLIGHT_FD = 31,
    VU_SET_INFLIGHT_FD = 32,
    VU_RESET_DEVICE = 34,
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_DEVICE_STATE_FD = 42,
    VU_CHECK_DEVICE_STATE = 43,
    VU_REQUEST_MAX = 44,
};

#define VU_FLAG_VERSION      0x1u
#define VU_FLAG_VERSION_MASK 0x3u
#define VU_FLAG_REPLY        0x4u
#define VU_FLAG_NEED_REPLY   0x8u

#define VU_PROTOCOL_F_MQ                  0
#define VU_PROTOCOL_F_LOG_SHMFD           1
#define VU_PROTOCOL_F_REPLY_ACK           3
#define VU_PROTOCOL_F_CONFIG              9
#define VU_PROTOCOL_F_INFLIGHT_SHMFD      12
#define VU_PROTOCOL_F_RESET_DEVICE        13
#define VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VU_PROTOCOL_F_DEVICE_STATE        19

/* SET_DEVICE_STATE_FD's reply: bits 0-7 an error code (0: accepted), bit 8 "no fd returned"
 * (we never offer a channel of our own: the front-end keeps using its pipe). */
#define VU_DEVICE_STATE_NOFD (1ull << 8)

/* Feature bit 30 (VU_F_PROTOCOL_FEATURES) enables the protocol-feature messages. */
#define VU_F_PROTOCOL_FEATURES 30

#define VU_MAX_FDS         8 /* per message, as QEMU's VHOST_MEMORY_BASELINE_NREGIONS */
#define VU_VRING_IDX_MASK  0xffu
#define VU_VRING_NOFD_MASK (1u << 8)

/* Only what we implement: cloud-hypervisor acks whatever a back-end offers. */
static const uint64_t offered_features =
    (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
    (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VU_F_PROTOCOL_FEATURES) |
    (1ull << VHOST_F_LOG_ALL);
/* What every device offers; VU_PROTOCOL_F_CONFIG comes with --tag only (see get_config). */
static const uint64_t base_protocol_features =
    (1ull << VU_PROTOCOL_F_MQ) | (1ull << VU_PROTOCOL_F_LOG_SHMFD) |
    (1ull << VU_PROTOCOL_F_REPLY_ACK) | (1ull << VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
    (1ull << VU_PROTOCOL_F_DEVICE_STATE) | (1ull << VU_PROTOCOL_F_INFLIGHT_SHMFD) |
    (1ull << VU_PROTOCOL_F_RESET_DEVICE);

/*
 * GET_CONFIG and SET_CONFIG: the payload is offset, size and flags (u32 each), then size bytes
 * of the device's configuration space. QEMU's front-ends read at most 256 bytes of it
 * (VHOST_USER_MAX_CONFIG_SIZE); beyond struct virtio_fs_config the space reads as zeros, as in
 * the Rust virtiofsd, so a VMM that asks for more than the 40 bytes still gets an answer.
 */
#define VU_CONFIG_HDR   12u
#define VU_CONFIG_SPACE 256u
/* The flags: QEMU sends the values 0 (a driver's write) and 1 (migration), rust-vmm's
 * front-ends the bits 0x1 (writable) and 0x2 (migration); nothing else is defined. */
#define VU_CONFIG_FLAGS 3u

struct vu_region_msg {
    uint64_t gpa, size, uva, mmap_offset;
};

struct vu_msg_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed));

union vu_payload {
    uint64_t u64;
    struct vhost_vring_state state;
    struct vhost_vring_addr addr;
    struct {
        uint32_t nregions;
        uint32_t padding;
        struct vu_region_msg regions[VU_MAX_FDS];
    } mem;
    struct {
        uint64_t padding;
        struct vu_region_msg region;
    } mem_reg;
    struct {
        uint64_t mmap_size, mmap_offset;
    } log;
    struct vu_inflight_msg {
        uint64_t mmap_size, mmap_offset;
        uint16_t num_queues, queue_size;
        uint16_t padding[2];
    } inflight;
    struct {
        uint32_t direction; /* enum state_direction */
        uint32_t phase;     /* 0: stopped, the only one defined */
    } device_state;
    struct vu_config_msg {
        uint32_t offset, size, flags;
        uint8_t data[VU_CONFIG_SPACE];
    } config;
    uint8_t raw[512];
};

struct vu_msg {
    struct vu_msg_hdr hdr;
    union vu_payload p;
    int fds[VU_MAX_FDS];
    unsigned nfds;
};

struct vu_dev {
    struct fuse_session *fuse;
    unsigned nqueues; /* hiprio + request queues */
    uint64_t features;
    uint64_t protocol_features;
    uint64_t offered_protocol_features;
    /* The virtio-fs configuration space GET_CONFIG reads (--tag), little-endian as the guest
     * sees it; offered (VU_PROTOCOL_F_CONFIG) only with a tag. */
    struct virtio_fs_config config;
    bool owner;
    struct guest_mem *mem; /* RCU-protected: workers read it, we replace it */
    /* Dirty-page logging: the log SET_LOG_BASE mapped, and the one the workers see
     * (RCU-protected, like mem): the same while VHOST_F_LOG_ALL is on, NULL otherwise. */
    struct guest_log *log_map;
    struct guest_log *log;
    /* DEVICE_STATE: the transfer SET_DEVICE_STATE_FD started, until CHECK_DEVICE_STATE; or,
     * once collected early (a ring message waited for its end), its result for CHECK. */
    struct state_transfer *transfer;
    bool transfer_collected;
    int transfer_ret;
    struct vu_queue *queues[VU_HIPRIO_QUEUES + VU_MAX_REQUEST_QUEUES]; /* worker.h */
    struct tpool *pool; /* --thread-pool-size, or NULL */
    struct vu_workers *workers;
    /* Our own reference to the connection's socket, for the SIGBUS handler to shut down
     * (guest_mem_set_fault_socket): a dup, so that it stays the same socket until the reset,
     * whatever the caller does with its fd meanwhile. -1 between connections. */
    int fault_fd;
    /* In-flight tracking: the area SET_INFLIGHT_FD mapped, for this connection; recovery of
     * its queues (and the session's restore from its journal) is still to come before the
     * first queue starts while inflight_pending. */
    struct inflight_area *inflight;
    bool inflight_pending;
    bool restarted; /* vu_dev_config.restarted, until said */
    /*
     * For a planned upgrade (vu_dev_export): what the device was given beyond what it maps.
     * The memory table's files, one duplicate per region (by guest-physical start); the log's
     * file and where it lies; the in-flight area's file and SET_INFLIGHT_FD's values.
     */
    struct {
        uint64_t gpa;
        int fd;
    } region_fds[GUEST_MEM_MAX_REGIONS];
    unsigned n_region_fds;
    int log_fd;
    uint64_t log_size, log_offset;
    int inflight_fd;
    uint64_t inflight_size, inflight_offset;
    uint16_t inflight_queues, inflight_queue_size;
};

/* ---- socket I/O ------------------------------------------------------------------------ */

static void close_fds(struct vu_msg *m)
{
    for (unsigned i = 0; i < m->nfds; i++)
        if (m->fds[i] >= 0)
            close(m->fds[i]);
    m->nfds = 0;
}

/* Takes fd i out of the message so close_fds() leaves it open. */
static int take_fd(struct vu_msg *m, unsigned i)
{
    int fd = m->fds[i];
    m->fds[i] = -1;
    return fd;
}

static int read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (uint8_t *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -ETIMEDOUT; /* the socket's receive timeout: a stalled message */
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET; /* EOF inside a message */
        done += (size_t)n;
    }
    return 0;
}

static int recv_msg(int conn, struct vu_msg *m)
{
    char control[CMSG_SPACE(VU_MAX_FDS * sizeof(int))];
    struct iovec iov = {.iov_base = &m->hdr, .iov_len = sizeof(m->hdr)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control,
                        .msg_controllen = sizeof(control)};
    m->nfds = 0;
    ssize_t n;
    do {
        n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ENOTCONN; /* orderly disconnect */
    int ret = scm_take_fds(&mh, m->fds, VU_MAX_FDS, &m->nfds);
    if (ret < 0) {
        log_error("vhost-user: message carries more than %d fds", VU_MAX_FDS);
        return ret;
    }
    if ((size_t)n < sizeof(m->hdr) &&
        (ret = read_full(conn, (uint8_t *)&m->hdr + n, sizeof(m->hdr) - (size_t)n)) < 0)
        return ret;
    if (m->hdr.size > sizeof(m->p)) {
        log_error("vhost-user: request %u with a %u-byte payload; at most %zu", m->hdr.request,
                  m->hdr.size, sizeof(m->p));
        return -EMSGSIZE;
    }
    if ((m->hdr.flags & VU_FLAG_VERSION_MASK) != VU_FLAG_VERSION) {
        log_error("vhost-user: unsupported protocol version %u", m->hdr.flags & 3);
        return -EPROTO;
    }
    memset(&m->p, 0, sizeof(m->p));
    return read_full(conn, &m->p, m->hdr.size);
}

static int send_reply_fd(int conn, const struct vu_msg *req, const void *payload, uint32_t size,
                         int fd)
{
    struct vu_msg_hdr hdr = {
        .request = req->hdr.request, .flags = VU_FLAG_VERSION | VU_FLAG_REPLY, .size = size};
    struct iovec iov[2] = {{.iov_base = &hdr, .iov_len = sizeof(hdr)},
                           {.iov_base = (void *)payload, .iov_len = size}};
    return scm_send(conn, iov, 2, &fd, 1);
}

static int send_reply(int conn, const struct vu_msg *req, const void *payload, uint32_t size)
{
    struct {
        struct vu_msg_hdr hdr;
        uint8_t payload[sizeof(union vu_payload)];
    } r;
    r.hdr.request = req->hdr.request;
    r.hdr.flags = VU_FLAG_VERSION | VU_FLAG_REPLY;
    r.hdr.size = size;
    memcpy(r.payload, payload, size);
    size_t len = sizeof(r.hdr) + size;
    ssize_t n;
    do {
        n = send(conn, &r, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

/* ---- memory table -------------------------------------------------------------------- */

/*
 * The regions' files are kept (a duplicate each, closed with the region) for one purpose: a
 * planned upgrade hands them to the new process, which maps the same guest memory. Mapped
 * memory stays usable without them; they cost one fd per region.
 */
static void forget_region_fd(struct vu_dev *dev, uint64_t gpa)
{
    for (unsigned i = 0; i < dev->n_region_fds; i++) {
        if (dev->region_fds[i].gpa != gpa)
            continue;
        close(dev->region_fds[i].fd);
        dev->region_fds[i] = dev->region_fds[--dev->n_region_fds];
        return;
    }
}

static void forget_region_fds(struct vu_dev *dev)
{
    for (unsigned i = 0; i < dev->n_region_fds; i++)
        close(dev->region_fds[i].fd);
    dev->n_region_fds = 0;
}

/* Keeps a duplicate of fd as the file of the region at gpa; -errno when it cannot. */
static int keep_region_fd(struct vu_dev *dev, uint64_t gpa, int fd)
{
    if (dev->n_region_fds >= GUEST_MEM_MAX_REGIONS)
        return -ENOSPC;
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return -errno;
    dev->region_fds[dev->n_region_fds].gpa = gpa;
    dev->region_fds[dev->n_region_fds++].fd = dup;
    return 0;
}

static int region_fd(const struct vu_dev *dev, uint64_t gpa)
{
    for (unsigned i = 0; i < dev->n_region_fds; i++)
        if (dev->region_fds[i].gpa == gpa)
            return dev->region_fds[i].fd;
    return -1;
}

/* The table in force: every region's file kept again. A region whose file cannot be kept
 * only costs a later handover (refused then), never the table. */
static void keep_table_fds(struct vu_dev *dev, const struct guest_mem *mem, const int *fds)
{
    forget_region_fds(dev);
    for (unsigned i = 0; i < mem->nregions; i++)
        if (keep_region_fd(dev, mem->regions[i].gpa, fds[i]) < 0)
            log_warn("vhost-user: cannot keep the file of the region at gpa 0x%llx (%m): a "
                     "planned upgrade will be refused",
                     (unsigned long long)mem->regions[i].gpa);
}

/* Publishes a new table; the old one is returned once no worker can still be using it. */
static struct guest_mem *publish_mem(struct vu_dev *dev, struct guest_mem *mem)
{
    struct guest_mem *old = rcu_xchg_pointer(&dev->mem, mem);
    synchronize_rcu();
    return old;
}

static int map_regions(struct guest_mem *mem, const struct vu_region_msg *regions, unsigned n,
                       struct vu_msg *m)
{
    for (unsigned i = 0; i < n; i++) {
        struct guest_region_desc d = {regions[i].gpa, regions[i].size, regions[i].uva,
                                      regions[i].mmap_offset};
        if (guest_mem_overlaps(mem, &d)) {
            log_error("vhost-user: memory region at gpa 0x%llx overlaps another",
                      (unsigned long long)d.gpa);
            return -EINVAL;
        }
        int ret = guest_region_map(&d, m->fds[i], &mem->regions[mem->nregions]);
        if (ret < 0) {
            log_error("vhost-user: bad memory region gpa 0x%llx size 0x%llx offset 0x%llx: %s",
                      (unsigned long long)d.gpa, (unsigned long long)d.size,
                      (unsigned long long)d.mmap_offset, strerror(-ret));
            return ret;
        }
        mem->nregions++;
    }
    return 0;
}

static int set_mem_table(struct vu_dev *dev, struct vu_msg *m)
{
    uint32_t n = m->p.mem.nregions;
    if (n == 0 || n > VU_MAX_FDS || m->hdr.size != 8 + n * sizeof(struct vu_region_msg) ||
        m->nfds != n) {
        log_error("vhost-user: SET_MEM_TABLE with %u regions, %u bytes, %u fds", n, m->hdr.size,
                  m->nfds);
        return -EINVAL;
    }
    struct guest_mem *mem = guest_mem_alloc(n);
    if (!mem)
        return -ENOMEM;
    int ret = map_regions(mem, m->p.mem.regions, n, m);
    if (ret < 0) {
        guest_mem_free(mem);
        return ret;
    }
    guest_mem_free(publish_mem(dev, mem));
    keep_table_fds(dev, mem, m->fds);
    log_debug("vhost-user: memory table with %u regions", n);
    return 0;
}

static int add_mem_reg(struct vu_dev *dev, struct vu_msg *m)
{
    if (m->hdr.size != sizeof(m->p.mem_reg) || m->nfds != 1)
        return -EINVAL;
    struct guest_mem *old = dev->mem;
    unsigned n = old ? old->nregions : 0;
    if (n >= GUEST_MEM_MAX_REGIONS)
        return -ENOSPC;
    struct guest_mem *mem = guest_mem_alloc(n + 1);
    if (!mem)
        return -ENOMEM;
    if (old)
        memcpy(mem->regions, old->regions, n * sizeof(old->regions[0]));
    mem->nregions = n;
    int ret = map_regions(mem, &m->p.mem_reg.region, 1, m);
    if (ret < 0) {
        free(mem); /* the copied regions still belong to the old table */
        return ret;
    }
    free(publish_mem(dev, mem)); /* mappings moved to the new table */
    if (keep_region_fd(dev, m->p.mem_reg.region.gpa, m->fds[0]) < 0)
        log_warn("vhost-user: cannot keep the file of the region at gpa 0x%llx (%m): a planned "
                 "upgrade will be refused",
                 (unsigned long long)m->p.mem_reg.region.gpa);
    return 0;
}

static int rem_mem_reg(struct vu_dev *dev, struct vu_msg *m)
{
    if (m->hdr.size != sizeof(m->p.mem_reg) || m->nfds > 1)
        return -EINVAL;
    const struct vu_region_msg *r = &m->p.mem_reg.region;
    struct guest_mem *old = dev->mem;
    if (!old)
        return -ENOENT;
    struct guest_mem *mem = guest_mem_alloc(old->nregions);
    if (!mem)
        return -ENOMEM;
    struct guest_region gone = {0};
    for (unsigned i = 0; i < old->nregions; i++) {
        const struct guest_region *g = &old->regions[i];
        if (!gone.map_base && g->gpa == r->gpa && g->size == r->size)
            gone = *g;
        else
            mem->regions[mem->nregions++] = *g;
    }
    if (!gone.map_base) {
        free(mem);
        log_error("vhost-user: REM_MEM_REG of unknown region at 0x%llx",
                  (unsigned long long)r->gpa);
        return -ENOENT;
    }
    free(publish_mem(dev, mem));
    guest_region_unmap(&gone);
    forget_region_fd(dev, gone.gpa);
    return 0;
}

/* ---- dirty-page logging ------------------------------------------------------------------- */

/* The workers see the log while both a log is mapped and VHOST_F_LOG_ALL is on. Returns once
 * no worker can still be writing to the one they saw before. */
static void publish_log(struct vu_dev *dev)
{
    struct guest_log *active = dev->features & (1ull << VHOST_F_LOG_ALL) ? dev->log_map : NULL;
    if (active == dev->log)
        return;
    rcu_assign_pointer(dev->log, active);
    synchronize_rcu();
}

/* Replaces the mapped log (NULL: none), unmapping the old one once nobody uses it. */
static void replace_log(struct vu_dev *dev, struct guest_log *log)
{
    struct guest_log *old = dev->log_map;
    dev->log_map = log;
    publish_log(dev);
    guest_log_unmap(old);
    /* The old log's file, kept for a handover: the caller keeps the new one's. */
    if (dev->log_fd >= 0)
        close(dev->log_fd);
    dev->log_fd = -1;
}

/* The log's file and where it lies, for a handover; a log whose file cannot be kept only
 * costs a later handover. */
static void keep_log_fd(struct vu_dev *dev, int fd, uint64_t size, uint64_t offset)
{
    dev->log_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    dev->log_size = size;
    dev->log_offset = offset;
    if (dev->log_fd < 0)
        log_warn("vhost-user: cannot keep the dirty-page log's file (%m): a planned upgrade "
                 "will be refused");
}

/*
 * SET_LOG_BASE with LOG_SHMFD: the log's fd, its size and offset. A log we cannot map is not
 * something to carry on without: the front-end would migrate pages we write without ever
 * seeing them dirty, so the caller ends the connection after the reply.
 */
static int set_log_base(struct vu_dev *dev, struct vu_msg *m)
{
    if (!(dev->protocol_features & (1ull << VU_PROTOCOL_F_LOG_SHMFD)) || m->nfds != 1) {
        log_error("vhost-user: SET_LOG_BASE needs VHOST_USER_PROTOCOL_F_LOG_SHMFD and one fd "
                  "(%u fds)",
                  m->nfds);
        return -EINVAL;
    }
    struct guest_log *log;
    int ret = guest_log_map(m->fds[0], m->p.log.mmap_size, m->p.log.mmap_offset, &log);
    if (ret < 0) {
        log_error("vhost-user: bad dirty-page log of size 0x%llx at offset 0x%llx: %s",
                  (unsigned long long)m->p.log.mmap_size, (unsigned long long)m->p.log.mmap_offset,
                  strerror(-ret));
        return ret;
    }
    replace_log(dev, log);
    keep_log_fd(dev, m->fds[0], m->p.log.mmap_size, m->p.log.mmap_offset);
    log_debug("vhost-user: dirty-page log of %llu bytes", (unsigned long long)log->size);
    return 0;
}

/* ---- vrings ------------------------------------------------------------------------------ */

static struct vu_queue *queue_at(struct vu_dev *dev, uint32_t index)
{
    if (index >= dev->nqueues) {
        log_error("vhost-user: queue index %u out of range (%u queues)", index, dev->nqueues);
        return NULL;
    }
    return dev->queues[index];
}

static int set_vring_num(struct vu_dev *dev, struct vu_msg *m)
{
    struct vu_queue *q = queue_at(dev, m->p.state.index);
    uint32_t num = m->p.state.num;
    if (!q)
        return -EINVAL;
    if (num == 0 || num > VQ_MAX_SIZE || (num & (num - 1))) {
        log_error("vhost-user: queue %u size %u is not a power of 2 up to %u", m->p.state.index,
                  num, VQ_MAX_SIZE);
        return -EINVAL;
    }
    return vu_queue_set_size(q, num);
}

static int set_vring_addr(struct vu_dev *dev, struct vu_msg *m)
{
    const struct vhost_vring_addr *a = &m->p.addr;
    struct vu_queue *q = queue_at(dev, a->index);
    if (!q)
        return -EINVAL;
    const struct vu_ring_addr ra = {.desc_uva = a->desc_user_addr,
                                    .avail_uva = a->avail_user_addr,
                                    .used_uva = a->used_user_addr,
                                    .log_used = a->flags & (1u << VHOST_VRING_F_LOG),
                                    .log_used_gpa = a->log_guest_addr};
    return vu_queue_set_addr(q, &ra);
}

static int set_vring_base(struct vu_dev *dev, struct vu_msg *m)
{
    struct vu_queue *q = queue_at(dev, m->p.state.index);
    if (!q)
        return -EINVAL;
    return vu_queue_set_base(q, (uint16_t)m->p.state.num);
}

static int get_vring_base(struct vu_dev *dev, struct vu_msg *m, int conn)
{
    struct vu_queue *q = queue_at(dev, m->p.state.index);
    if (!q)
        return -EINVAL;
    /* Stops the ring; the reply says where the front-end takes over. */
    struct vhost_vring_state s = {.index = m->p.state.index, .num = vu_queue_get_base(q)};
    return send_reply(conn, m, &s, sizeof(s));
}

/* SET_VRING_KICK/CALL/ERR carry the index and an "no fd" flag in a u64. */
static int vring_fd_arg(struct vu_dev *dev, struct vu_msg *m, struct vu_queue **q, int *fd)
{
    uint64_t v = m->p.u64;
    bool nofd = v & VU_VRING_NOFD_MASK;
    if (m->hdr.size != sizeof(uint64_t) || m->nfds != (nofd ? 0u : 1u)) {
        log_error("vhost-user: vring fd message with %u fds, no-fd flag %d", m->nfds, nofd);
        return -EINVAL;
    }
    *q = queue_at(dev, (uint32_t)(v & VU_VRING_IDX_MASK));
    if (!*q)
        return -EINVAL;
    *fd = nofd ? -1 : take_fd(m, 0);
    return 0;
}

static int set_vring_kick(struct vu_dev *dev, struct vu_msg *m)
{
    struct vu_queue *q;
    int fd;
    int ret = vring_fd_arg(dev, m, &q, &fd);
    if (ret < 0)
        return ret;
    /* Without protocol features there is no SET_VRING_ENABLE: rings start enabled. */
    return vu_queue_set_kick(q, fd, !(dev->features & (1ull << VU_F_PROTOCOL_FEATURES)));
}

static int set_vring_call(struct vu_dev *dev, struct vu_msg *m)
{
    struct vu_queue *q;
    int fd;
    int ret = vring_fd_arg(dev, m, &q, &fd);
    if (ret == 0)
        vu_queue_set_call(q, fd);
    return ret;
}

static int set_vring_err(struct vu_dev *dev, struct vu_msg *m)
{
    struct vu_queue *q;
    int fd;
    int ret = vring_fd_arg(dev, m, &q, &fd);
    if (ret == 0)
        vu_queue_set_err(q, fd);
    return ret;
}

static int set_vring_enable(struct vu_dev *dev, struct vu_msg *m)
{
    struct vu_queue *q = queue_at(dev, m->p.state.index);
    if (!q || m->p.state.num > 1)
        return -EINVAL;
    return vu_queue_enable(q, m->p.state.num == 1);
}

/* ---- features --------------------------------------------------------------------------- */

static int set_features(struct vu_dev *dev, struct vu_msg *m)
{
    uint64_t f = m->p.u64;
    if (f & ~offered_features) {
        log_error("vhost-user: front-end set features 0x%llx we did not offer",
                  (unsigned long long)(f & ~offered_features));
        return -EINVAL;
    }
    dev->features = f;
    bool event_idx = f & (1ull << VIRTIO_RING_F_EVENT_IDX);
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_set_event_idx(dev->queues[i], event_idx);
    /* Logging starts with LOG_ALL (the log may come before or after it) and stops without:
     * the log is unmapped then, as QEMU sends no SET_LOG_BASE to end it. */
    if (f & (1ull << VHOST_F_LOG_ALL))
        publish_log(dev);
    else
        replace_log(dev, NULL);
    return 0;
}

static int set_protocol_features(struct vu_dev *dev, struct vu_msg *m)
{
    uint64_t f = m->p.u64;
    if (f & ~dev->offered_protocol_features) {
        log_error("vhost-user: front-end set protocol features 0x%llx we did not offer",
                  (unsigned long long)(f & ~dev->offered_protocol_features));
        return -EINVAL;
    }
    dev->protocol_features = f;
    return 0;
}

/* ---- device configuration (VHOST_USER_PROTOCOL_F_CONFIG) ----------------------------------
 *
 * The virtio-fs configuration space (struct virtio_fs_config: the tag, 36 bytes of UTF-8 padded
 * with NULs, and num_request_queues, little-endian) for front-ends that build the device from
 * what the back-end says: crosvm, rust-vmm-based VMMs, QEMU's generic vhost-user-device.
 *
 * It is offered only with --tag, as by the Rust virtiofsd: QEMU's vhost-user-fs has a tag of its
 * own (tag=) and never reads ours, and QEMU 7.1 to 8.0 (Debian 12 ships 7.2) crash on a
 * back-end that offers VHOST_USER_PROTOCOL_F_CONFIG to a device that does not use it (they
 * log a warning through a NULL error pointer); newer ones only warn and mask it. Without a tag
 * there is nothing the guest could mount us by, so no configuration is better than a
 * made-up one.
 */

/* A GET_CONFIG or SET_CONFIG access, checked: F_CONFIG negotiated, a payload of exactly the
 * header and size bytes, 1 <= size, offset + size within VU_CONFIG_SPACE, known flags. */
static int check_config_access(const struct vu_dev *dev, const struct vu_msg *m, const char *name)
{
    const struct vu_config_msg *c = &m->p.config;

    if (!(dev->protocol_features & (1ull << VU_PROTOCOL_F_CONFIG))) {
        log_error("vhost-user: %s without VHOST_USER_PROTOCOL_F_CONFIG%s", name,
                  dev->offered_protocol_features & (1ull << VU_PROTOCOL_F_CONFIG)
                      ? ""
                      : " (offered only with --tag)");
        return -EPROTO;
    }
    if (m->hdr.size < VU_CONFIG_HDR || c->size == 0 || c->size > VU_CONFIG_SPACE ||
        c->offset > VU_CONFIG_SPACE - c->size || m->hdr.size != VU_CONFIG_HDR + c->size ||
        (c->flags & ~VU_CONFIG_FLAGS)) {
        log_error("vhost-user: %s of %u bytes at offset %u (flags 0x%x, a %u-byte payload): "
                  "outside the %u-byte configuration space or malformed",
                  name, c->size, c->offset, c->flags, m->hdr.size, VU_CONFIG_SPACE);
        return -EINVAL;
    }
    return 0;
}

/* size bytes of the configuration space from offset (checked), zeros past the config. */
static void config_bytes(const struct vu_dev *dev, uint32_t offset, uint32_t size, uint8_t *out)
{
    memset(out, 0, size);
    if (offset < sizeof(dev->config)) {
        uint32_t n = (uint32_t)sizeof(dev->config) - offset;
        memcpy(out, (const uint8_t *)&dev->config + offset, n < size ? n : size);
    }
}

/* The reply echoes offset and flags; a refused access gets no bytes (size 0), the spec's way
 * of saying so. The connection goes on either way. */
static int get_config(struct vu_dev *dev, struct vu_msg *m, int conn)
{
    const struct vu_config_msg *c = &m->p.config;
    struct vu_config_msg r = {.offset = c->offset, .flags = c->flags};

    if (check_config_access(dev, m, "GET_CONFIG") == 0) {
        r.size = c->size;
        config_bytes(dev, c->offset, c->size, r.data);
    }
    return send_reply(conn, m, &r, VU_CONFIG_HDR + r.size);
}

/*
 * Every field of virtio-fs's configuration is read-only for the driver, and the spec forbids
 * accepting writes to read-only fields outside a migration; a migration's destination has its
 * own --tag and queue count. So a write is accepted only when it changes nothing (a migration
 * restoring the same configuration), whatever the flags say; any other is refused.
 */
static int set_config(struct vu_dev *dev, struct vu_msg *m)
{
    const struct vu_config_msg *c = &m->p.config;
    uint8_t cur[VU_CONFIG_SPACE];
    int ret = check_config_access(dev, m, "SET_CONFIG");

    if (ret < 0)
        return ret;
    config_bytes(dev, c->offset, c->size, cur);
    if (memcmp(cur, c->data, c->size) != 0) {
        log_error("vhost-user: SET_CONFIG would change the read-only virtio-fs configuration "
                  "(%u bytes at offset %u); refused",
                  c->size, c->offset);
        return -EPERM;
    }
    return 0;
}

/* ---- device state (migration, snapshots) ---------------------------------------------------
 *
 * SET_DEVICE_STATE_FD starts a transfer of the FUSE session's state on threads of its own
 * (state_transfer.h): the front-end reads a SAVE's pipe while or after we write it, so the
 * handler must not write it itself. CHECK_DEVICE_STATE waits for the end and reports it.
 * The rings stay stopped in between: the state functions and the queues share the session.
 */

/* ---- in-flight tracking ------------------------------------------------------------------ */

static bool inflight_negotiated(const struct vu_dev *dev, const char *name)
{
    if (dev->protocol_features & (1ull << VU_PROTOCOL_F_INFLIGHT_SHMFD))
        return true;
    log_error("vhost-user: %s without VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD", name);
    return false;
}

/* GET_INFLIGHT_FD: a new area for the queues the front-end names, handed over; we map it only
 * when it comes back with SET_INFLIGHT_FD. */
static int get_inflight_fd(struct vu_dev *dev, struct vu_msg *m, int conn)
{
    struct vu_inflight_msg *in = &m->p.inflight;
    if (!inflight_negotiated(dev, "GET_INFLIGHT_FD") ||
        m->hdr.size < offsetof(struct vu_inflight_msg, padding))
        return -EINVAL;
    if (in->num_queues == 0 || in->num_queues > dev->nqueues) {
        log_error("vhost-user: GET_INFLIGHT_FD for %u queues; the device has %u", in->num_queues,
                  dev->nqueues);
        return -EINVAL;
    }
    int fd;
    uint64_t size;
    int ret = inflight_create(in->num_queues, in->queue_size, &fd, &size);
    if (ret < 0) {
        log_error("vhost-user: GET_INFLIGHT_FD (%u queues of %u): %s", in->num_queues,
                  in->queue_size, strerror(-ret));
        return ret;
    }
    struct vu_inflight_msg out = {.mmap_size = size,
                                  .mmap_offset = 0,
                                  .num_queues = in->num_queues,
                                  .queue_size = in->queue_size};
    ret = send_reply_fd(conn, m, &out, sizeof(out), fd);
    close(fd);
    return ret;
}

static bool journal_in_flight(void *opaque, const struct fuse_req_tag *tag)
{
    const struct vu_dev *dev = opaque;
    return inflight_in_flight(dev->inflight, tag->queue, tag->head, tag->counter);
}

/* Ends the connection's use of its in-flight area: the journal first (it lives there), then
 * the queues' parts. The queues must be stopped. */
static void drop_inflight(struct vu_dev *dev)
{
    fuse_session_journal_detach(dev->fuse);
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_set_inflight(dev->queues[i], NULL, false);
    inflight_unmap(dev->inflight);
    dev->inflight = NULL;
    dev->inflight_pending = false;
    if (dev->inflight_fd >= 0)
        close(dev->inflight_fd);
    dev->inflight_fd = -1;
}

/* Maps the area in fd and gives each queue its region, held until every queue can recover
 * (finish_inflight). The queues must be stopped and no area in use. */
static int use_inflight(struct vu_dev *dev, int fd, uint64_t size, uint64_t offset,
                        uint16_t nqueues, uint16_t queue_size)
{
    struct inflight_area *a;
    int ret = inflight_map(fd, size, offset, nqueues, queue_size, &a);
    if (ret < 0)
        return ret;
    /* Kept for a handover only: the mapping does not need it. */
    dev->inflight_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dev->inflight_fd < 0)
        log_warn("vhost-user: cannot keep the in-flight area's file (%m): a planned upgrade "
                 "will be refused");
    dev->inflight_size = size;
    dev->inflight_offset = offset;
    dev->inflight_queues = nqueues;
    dev->inflight_queue_size = queue_size;
    dev->inflight = a;
    for (unsigned i = 0; i < dev->nqueues; i++) {
        struct inflight_queue iq = {.r = inflight_region_of(a, i),
                                    .capacity = a->queue_size,
                                    .next_counter = &a->page->next_counter[i],
                                    .last_avail_idx = &a->page->last_avail_idx[i]};
        vu_queue_set_inflight(dev->queues[i], i < a->nqueues ? &iq : NULL, true);
    }
    dev->inflight_pending = true;
    return 0;
}

/*
 * SET_INFLIGHT_FD: the area of this device's life (a new one at boot, or the one a daemon
 * before us filled). Its queues are held until every ring can be read: then the regions are
 * recovered, the session restored from the journal, and the queues served (finish_inflight).
 */
static int set_inflight_fd(struct vu_dev *dev, struct vu_msg *m)
{
    const struct vu_inflight_msg *in = &m->p.inflight;
    if (!inflight_negotiated(dev, "SET_INFLIGHT_FD") || m->nfds != 1 ||
        m->hdr.size < offsetof(struct vu_inflight_msg, padding))
        return -EINVAL;
    if (in->num_queues > dev->nqueues) {
        log_error("vhost-user: SET_INFLIGHT_FD for %u queues; the device has %u", in->num_queues,
                  dev->nqueues);
        return -EINVAL;
    }
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_stop(dev->queues[i]);
    drop_inflight(dev);
    return use_inflight(dev, m->fds[0], in->mmap_size, in->mmap_offset, in->num_queues,
                        in->queue_size);
}

/*
 * Once a queue could start after SET_INFLIGHT_FD: every ring that can be read has its region
 * recovered (what the guest has not seen answered is known then), the journal restores the
 * session from that, and the queues go. A ring configured later recovers at its own start.
 */
static bool any_queue_ready(const struct vu_dev *dev)
{
    for (unsigned i = 0; i < dev->nqueues; i++)
        if (vu_queue_ready(dev->queues[i]))
            return true;
    return false;
}

/* The recovery half of finish_inflight: every ring that can be read recovers its region, and
 * the journal is attached. 0, 1 when the journal restored the session, or a negative errno. */
static int recover_inflight(struct vu_dev *dev)
{
    dev->inflight_pending = false;
    int ret = 0;
    bool unusable = false;
    for (unsigned i = 0; i < dev->nqueues && ret >= 0; i++) {
        ret = vu_queue_recover(dev->queues[i]);
        unusable |= ret == 1;
    }
    if (ret < 0)
        return ret;
    const struct sj_inflight sj = {.in_flight = journal_in_flight,
                                   .opaque = dev,
                                   .refuse = unusable ? "an in-flight region was unusable" : NULL};
    int r = fuse_session_journal_attach(dev->fuse, dev->inflight->journal,
                                        dev->inflight->journal_len, &sj);
    if (r < 0)
        log_warn("vhost-user: the session cannot be kept in the in-flight area; a restart of "
                 "this daemon will need the guest to mount again");
    return r > 0 ? 1 : 0;
}

/* Lets the held queues go (those that are ready start); the first error is returned. */
static int release_queues(struct vu_dev *dev)
{
    int ret = 0;
    for (unsigned i = 0; i < dev->nqueues; i++) {
        int r = vu_queue_hold(dev->queues[i], false);
        if (ret == 0)
            ret = r;
    }
    return ret;
}

static int finish_inflight(struct vu_dev *dev)
{
    if (!any_queue_ready(dev))
        return 0;
    int ret = recover_inflight(dev);
    int r = release_queues(dev);
    return ret < 0 ? ret : r;
}

static int reply_u64(int conn, const struct vu_msg *m, uint64_t v);

static bool any_queue_running(const struct vu_dev *dev)
{
    for (unsigned i = 0; i < dev->nqueues; i++)
        if (vu_queue_running(dev->queues[i]))
            return true;
    return false;
}

/* Forgets a transfer nobody checked (the front-end gave up on it), when it has ended. */
static bool drop_ended_transfer(struct vu_dev *dev)
{
    if (dev->transfer && !state_transfer_ended(dev->transfer))
        return false;
    if (dev->transfer)
        (void)state_transfer_finish(dev->transfer, -1);
    dev->transfer = NULL;
    dev->transfer_collected = false;
    return true;
}

static int start_transfer(struct vu_dev *dev, struct vu_msg *m)
{
    uint32_t dir = m->p.device_state.direction, phase = m->p.device_state.phase;
    if (!(dev->protocol_features & (1ull << VU_PROTOCOL_F_DEVICE_STATE))) {
        log_error("vhost-user: SET_DEVICE_STATE_FD without VHOST_USER_PROTOCOL_F_DEVICE_STATE");
        return -EPROTO;
    }
    if (m->nfds != 1) {
        log_error("vhost-user: SET_DEVICE_STATE_FD with %u fds; the transfer needs one", m->nfds);
        return -EINVAL;
    }
    if (dir != STATE_SAVE && dir != STATE_LOAD) {
        log_error("vhost-user: SET_DEVICE_STATE_FD: unknown transfer direction %u", dir);
        return -EINVAL;
    }
    if (phase != 0) {
        log_error("vhost-user: SET_DEVICE_STATE_FD: migration phase %u is not supported (only 0, "
                  "stopped)",
                  phase);
        return -EINVAL;
    }
    if (!drop_ended_transfer(dev)) {
        log_error("vhost-user: SET_DEVICE_STATE_FD while a device state transfer is running");
        return -EBUSY;
    }
    if (any_queue_running(dev)) {
        log_error("vhost-user: SET_DEVICE_STATE_FD while a ring runs; the device must be stopped "
                  "(GET_VRING_BASE)");
        return -EBUSY;
    }
    log_info("device state: %s started", dir == STATE_SAVE ? "saving" : "loading");
    return state_transfer_start(dev->fuse, (enum state_direction)dir, take_fd(m, 0),
                                &dev->transfer);
}

/* The reply: accepted or not, never a channel of our own. A refused fd is closed. */
static int set_device_state_fd(struct vu_dev *dev, struct vu_msg *m, int conn)
{
    int ret = start_transfer(dev, m);
    return reply_u64(conn, m, VU_DEVICE_STATE_NOFD | (ret < 0 ? 1u : 0u));
}

static int check_device_state(struct vu_dev *dev, struct vu_msg *m, int conn)
{
    int ret = -ENOENT;
    bool had = dev->transfer || dev->transfer_collected;
    if (dev->transfer)
        ret = state_transfer_finish(dev->transfer, conn);
    else if (dev->transfer_collected)
        ret = dev->transfer_ret;
    else
        log_error("vhost-user: CHECK_DEVICE_STATE without a transfer");
    dev->transfer = NULL;
    dev->transfer_collected = false;
    if (had && ret < 0)
        log_error("device state: the transfer failed: %s", strerror(-ret));
    else if (had)
        log_info("device state: transfer done");
    return reply_u64(conn, m, ret < 0 ? 1 : 0);
}

static bool may_start_ring(uint32_t request)
{
    switch (request) {
    case VU_SET_VRING_NUM:
    case VU_SET_VRING_ADDR:
    case VU_SET_VRING_BASE:
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_ENABLE:
        return true;
    }
    return false;
}

/*
 * A ring message during a transfer: once the front-end's side is over (what is left is ours
 * and ends by itself) it waits for the end, keeping the result for CHECK_DEVICE_STATE;
 * before, it is refused, as waiting could wait for a front-end that waits for us.
 */
static int transfer_gate(struct vu_dev *dev, const struct vu_msg *m, const char *name, int conn)
{
    if (!dev->transfer || !may_start_ring(m->hdr.request))
        return 0;
    if (!state_transfer_fd_done(dev->transfer)) {
        log_error("vhost-user: %s while the device state is being transferred; refused", name);
        return -EBUSY;
    }
    dev->transfer_ret = state_transfer_finish(dev->transfer, conn);
    dev->transfer = NULL;
    dev->transfer_collected = true;
    return 0;
}

/* ---- reset ---------------------------------------------------------------------------------
 *
 * One path for a device reset (RESET_DEVICE: the Rust virtiofsd's disables the rings and
 * destroys the FUSE session, keeping the connection) and for the end of a connection
 * (vu_dev_reset: a disconnect, RESET_OWNER), which also forgets the connection's memory table,
 * protocol features and ownership.
 */

/* Nothing is in flight after a device reset: the area's regions are cleared, so that a
 * front-end handing the same area back (cloud-hypervisor does at every activation) does not
 * have the dropped requests served again to a driver that started over. */
static void clear_inflight_regions(struct vu_dev *dev)
{
    const struct inflight_area *a = dev->inflight;

    if (!a)
        return;
    for (unsigned i = 0; i < a->nqueues; i++)
        memset(inflight_region_of(a, i), 0, inflight_region_size(a->queue_size));
}

/*
 * What both share: no state transfer, every queue stopped, the session reset, no in-flight
 * area, every ring reset (sizes, addresses, eventfds), no negotiated virtio features and no
 * dirty-page log. ended: the device was reset and its driver starts over, so the session ended
 * for good and the journal and the in-flight area say so; otherwise (the connection ended)
 * they keep the session for whoever serves this device next, which the reset must not reach.
 */
static void reset_rings_and_session(struct vu_dev *dev, bool ended)
{
    /* A transfer uses the session: it ends (aborted if still running) before the reset. */
    state_transfer_cancel(dev->transfer);
    dev->transfer = NULL;
    dev->transfer_collected = false;
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_stop(dev->queues[i]);
    if (ended) {
        fuse_session_ended(dev->fuse);
        clear_inflight_regions(dev);
    }
    drop_inflight(dev);
    /* Before the queues: ending the lock waits queues their replies, which the queue reset
     * then drops. */
    fuse_session_reset(dev->fuse);
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_reset(dev->queues[i]);
    vu_workers_release_buffers(dev->workers);
    dev->features = 0;
    replace_log(dev, NULL);
}

static int reset_device_msg(struct vu_dev *dev)
{
    if (!(dev->protocol_features & (1ull << VU_PROTOCOL_F_RESET_DEVICE))) {
        log_error("vhost-user: RESET_DEVICE without VHOST_USER_PROTOCOL_F_RESET_DEVICE");
        return -EPROTO;
    }
    reset_rings_and_session(dev, true);
    log_info("vhost-user: device reset: rings stopped, FUSE session ended (the guest driver "
             "starts over)");
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

struct vu_handler {
    const char *name;
    uint32_t size;   /* exact payload size; UINT32_MAX: checked by the handler */
    uint8_t max_fds; /* fds beyond this are an error (handlers check exact counts) */
    bool has_reply;  /* the message's own reply (GET_*), sent by the dispatcher or handler */
};

#define ANY UINT32_MAX
static const struct vu_handler handlers[VU_REQUEST_MAX] = {
    [VU_GET_FEATURES] = {"GET_FEATURES", 0, 0, true},
    [VU_SET_FEATURES] = {"SET_FEATURES", 8, 0, false},
    [VU_SET_OWNER] = {"SET_OWNER", 0, 0, false},
    [VU_RESET_OWNER] = {"RESET_OWNER", 0, 0, false},
    [VU_SET_MEM_TABLE] = {"SET_MEM_TABLE", ANY, VU_MAX_FDS, false},
    /* Its reply (with LOG_SHMFD) is the REPLY_ACK-like u64 handle_message sends. */
    [VU_SET_LOG_BASE] = {"SET_LOG_BASE", sizeof(((union vu_payload *)0)->log), 1, false},
    [VU_SET_LOG_FD] = {"SET_LOG_FD", ANY, 1, false},
    [VU_SET_VRING_NUM] = {"SET_VRING_NUM", 8, 0, false},
    [VU_SET_VRING_ADDR] = {"SET_VRING_ADDR", sizeof(struct vhost_vring_addr), 0, false},
    [VU_SET_VRING_BASE] = {"SET_VRING_BASE", 8, 0, false},
    [VU_GET_VRING_BASE] = {"GET_VRING_BASE", 8, 0, true},
    [VU_SET_VRING_KICK] = {"SET_VRING_KICK", 8, 1, false},
    [VU_SET_VRING_CALL] = {"SET_VRING_CALL", 8, 1, false},
    [VU_SET_VRING_ERR] = {"SET_VRING_ERR", 8, 1, false},
    [VU_GET_PROTOCOL_FEATURES] = {"GET_PROTOCOL_FEATURES", 0, 0, true},
    [VU_SET_PROTOCOL_FEATURES] = {"SET_PROTOCOL_FEATURES", 8, 0, false},
    [VU_GET_QUEUE_NUM] = {"GET_QUEUE_NUM", 0, 0, true},
    [VU_SET_VRING_ENABLE] = {"SET_VRING_ENABLE", 8, 0, false},
    [VU_GET_MAX_MEM_SLOTS] = {"GET_MAX_MEM_SLOTS", 0, 0, true},
    [VU_ADD_MEM_REG] = {"ADD_MEM_REG", sizeof(((union vu_payload *)0)->mem_reg), 1, false},
    [VU_REM_MEM_REG] = {"REM_MEM_REG", sizeof(((union vu_payload *)0)->mem_reg), 1, false},
    [VU_SET_DEVICE_STATE_FD] = {"SET_DEVICE_STATE_FD",
                                sizeof(((union vu_payload *)0)->device_state), 1, true},
    [VU_CHECK_DEVICE_STATE] = {"CHECK_DEVICE_STATE", 0, 0, true},
    [VU_GET_INFLIGHT_FD] = {"GET_INFLIGHT_FD", ANY, 0, true},
    [VU_SET_INFLIGHT_FD] = {"SET_INFLIGHT_FD", ANY, 1, false},
    [VU_GET_CONFIG] = {"GET_CONFIG", ANY, 0, true},
    [VU_SET_CONFIG] = {"SET_CONFIG", ANY, 0, false},
    [VU_RESET_DEVICE] = {"RESET_DEVICE", 0, 0, false},
};

static int reply_u64(int conn, const struct vu_msg *m, uint64_t v)
{
    return send_reply(conn, m, &v, sizeof(v));
}

/* Runs a message that has its own reply; returns the result of sending it. */
static int handle_get(struct vu_dev *dev, struct vu_msg *m, int conn)
{
    switch (m->hdr.request) {
    case VU_GET_FEATURES:
        return reply_u64(conn, m, offered_features);
    case VU_GET_PROTOCOL_FEATURES:
        return reply_u64(conn, m, dev->offered_protocol_features);
    case VU_GET_QUEUE_NUM:
        return reply_u64(conn, m, dev->nqueues);
    case VU_GET_MAX_MEM_SLOTS:
        return reply_u64(conn, m, GUEST_MEM_MAX_REGIONS);
    case VU_GET_VRING_BASE:
        return get_vring_base(dev, m, conn);
    case VU_SET_DEVICE_STATE_FD:
        return set_device_state_fd(dev, m, conn);
    case VU_CHECK_DEVICE_STATE:
        return check_device_state(dev, m, conn);
    case VU_GET_INFLIGHT_FD:
        return get_inflight_fd(dev, m, conn);
    case VU_GET_CONFIG:
        return get_config(dev, m, conn);
    }
    return -ENOSYS;
}

/* Runs a message without a reply of its own; returns 0 or a negative errno. */
static int handle_set(struct vu_dev *dev, struct vu_msg *m)
{
    switch (m->hdr.request) {
    case VU_SET_FEATURES:
        return set_features(dev, m);
    case VU_SET_OWNER:
        dev->owner = true;
        return 0;
    case VU_RESET_OWNER:
        /* Deprecated (vhost-user.rst); as ever, the whole connection's state goes. */
        vu_dev_reset(dev);
        return 0;
    case VU_RESET_DEVICE:
        return reset_device_msg(dev);
    case VU_SET_MEM_TABLE:
        return set_mem_table(dev, m);
    case VU_SET_LOG_BASE:
        return set_log_base(dev, m);
    case VU_SET_LOG_FD:
        /* Optional (vhost-user.rst): an eventfd to tell the front-end of log updates, which
         * it reads on its own schedule anyway. Accepted and closed. */
        return 0;
    case VU_SET_VRING_NUM:
        return set_vring_num(dev, m);
    case VU_SET_VRING_ADDR:
        return set_vring_addr(dev, m);
    case VU_SET_VRING_BASE:
        return set_vring_base(dev, m);
    case VU_SET_VRING_KICK:
        return set_vring_kick(dev, m);
    case VU_SET_VRING_CALL:
        return set_vring_call(dev, m);
    case VU_SET_VRING_ERR:
        return set_vring_err(dev, m);
    case VU_SET_PROTOCOL_FEATURES:
        return set_protocol_features(dev, m);
    case VU_SET_VRING_ENABLE:
        return set_vring_enable(dev, m);
    case VU_ADD_MEM_REG:
        return add_mem_reg(dev, m);
    case VU_REM_MEM_REG:
        return rem_mem_reg(dev, m);
    case VU_SET_INFLIGHT_FD:
        return set_inflight_fd(dev, m);
    case VU_SET_CONFIG:
        return set_config(dev, m);
    }
    return -ENOSYS;
}

static int check_shape(const struct vu_handler *h, const struct vu_msg *m)
{
    if (h->size != ANY && m->hdr.size != h->size) {
        log_error("vhost-user: %s with a %u-byte payload, expected %u", h->name, m->hdr.size,
                  h->size);
        return -EINVAL;
    }
    if (m->nfds > h->max_fds) {
        log_error("vhost-user: %s with %u fds, at most %u", h->name, m->nfds, h->max_fds);
        return -EINVAL;
    }
    return 0;
}

static int handle_message(struct vu_dev *dev, int conn)
{
    struct vu_msg m;
    int ret = recv_msg(conn, &m);
    if (ret < 0) {
        close_fds(&m);
        if (ret != -ENOTCONN)
            log_error("vhost-user: receiving a message failed: %s", strerror(-ret));
        return ret;
    }
    bool need_reply = m.hdr.flags & VU_FLAG_NEED_REPLY;
    const struct vu_handler *h = m.hdr.request < VU_REQUEST_MAX ? &handlers[m.hdr.request] : NULL;
    if (!h || !h->name) {
        log_error("vhost-user: unsupported request %u%s", m.hdr.request,
                  need_reply ? "; replying with an error" : "; ignored");
        close_fds(&m);
        return need_reply ? reply_u64(conn, &m, 1) : 0;
    }
    log_debug("vhost-user: %s (size %u, %u fds)", h->name, m.hdr.size, m.nfds);

    ret = check_shape(h, &m);
    if (ret == 0 && h->has_reply) {
        ret = handle_get(dev, &m, conn);
        close_fds(&m);
        return ret; /* a failure to send the reply ends the connection */
    }
    if (ret == 0)
        ret = transfer_gate(dev, &m, h->name, conn);
    if (ret == 0)
        ret = handle_set(dev, &m);
    if (ret == 0 && dev->inflight_pending && may_start_ring(m.hdr.request))
        ret = finish_inflight(dev);
    if (ret == 0 && dev->restarted && !dev->inflight && any_queue_running(dev)) {
        /* The one line a restart that cannot go on with the session owes the user. */
        log_warn("restarted after the last serving process died, and the front-end handed "
                 "over no in-flight area: no session to restore, the guest must mount again "
                 "(QEMU's vhost-user-fs neither reconnects nor tracks requests in flight)");
        dev->restarted = false;
    }
    close_fds(&m);
    if (ret < 0)
        log_error("vhost-user: %s failed: %s", h->name, strerror(-ret));
    /* With LOG_SHMFD, SET_LOG_BASE always has a reply (QEMU waits for it): a u64 status. */
    bool log_base = m.hdr.request == VU_SET_LOG_BASE;
    if (log_base && (dev->protocol_features & (1ull << VU_PROTOCOL_F_LOG_SHMFD)))
        need_reply = true;
    if (need_reply) {
        /* REPLY_ACK: 0 for success, non-zero for failure. */
        int sret = reply_u64(conn, &m, ret < 0 ? 1 : 0);
        if (sret < 0)
            return sret;
    } else if (h->has_reply && ret < 0) {
        return ret; /* the front-end waits for a reply we cannot give */
    }
    return log_base ? ret : 0; /* no log, no migration: see set_log_base */
}

/* Logs a fault on guest memory once; true if one happened in this session. */
static bool guest_memory_faulted(void)
{
    struct guest_mem_fault f;
    if (!guest_mem_fault_take(&f))
        return guest_mem_faulted();
    if (f.dirty_log)
        log_error("the dirty-page log (0x%llx bytes) shrank or vanished (SIGBUS at host %p): "
                  "closing the connection",
                  (unsigned long long)f.region_size, (void *)f.addr);
    else
        log_error("guest memory region at gpa 0x%llx (0x%llx bytes) shrank or vanished (SIGBUS "
                  "at gpa 0x%llx, host %p): closing the connection",
                  (unsigned long long)f.region_gpa, (unsigned long long)f.region_size,
                  (unsigned long long)f.gpa, (void *)f.addr);
    return true;
}

/* The first message of a connection: from now on a fault on guest memory shuts it down. */
static void watch_connection(struct vu_dev *dev, int conn)
{
    if (dev->fault_fd >= 0)
        return;
    dev->fault_fd = fcntl(conn, F_DUPFD_CLOEXEC, 0);
    if (dev->fault_fd < 0)
        log_warn("vhost-user: cannot duplicate the connection's fd (%m): a fault on guest "
                 "memory will be noticed at the next message only");
    guest_mem_set_fault_socket(dev->fault_fd);
}

/*
 * A fault on guest memory (guest_mem.h) may have happened on any thread: a worker or pool
 * thread shut the socket down, which is what woke our caller; this thread itself may have
 * faulted handling the message. Either way the session's memory is gone and the connection
 * ends here, with one log line; the caller's reset then unmaps what is left.
 */
int vu_dev_handle_message(struct vu_dev *dev, int conn)
{
    if (guest_memory_faulted())
        return -EFAULT;
    watch_connection(dev, conn);
    int ret = handle_message(dev, conn);
    return guest_memory_faulted() ? -EFAULT : ret;
}

/* ---- planned upgrades (handover.h) ----------------------------------------------------------
 *
 * The old process describes its device (vu_dev_export) for the new one, which rebuilds it
 * (vu_dev_import) from what the old one kept of the front-end's messages: the same values,
 * checked again as the front-end's were, and the same files. Between the two the queues
 * stand still: the old process stopped them, the new one holds them until the old one has
 * let go (vu_dev_go), so exactly one process serves a ring at any time.
 */

void vu_dev_image_free(struct vu_dev_image *img)
{
    free(img->regions);
    img->regions = NULL;
    img->nregions = 0;
    for (unsigned i = 0; i < sizeof(img->queues) / sizeof(img->queues[0]); i++) {
        free(img->queues[i].out);
        img->queues[i].out = NULL;
        img->queues[i].n_out = 0;
    }
}

static int export_regions(const struct vu_dev *dev, struct vu_dev_image *img)
{
    const struct guest_mem *mem = dev->mem;
    img->nregions = mem ? mem->nregions : 0;
    if (!img->nregions)
        return 0;
    img->regions = calloc(img->nregions, sizeof(*img->regions));
    if (!img->regions)
        return -ENOMEM;
    for (unsigned i = 0; i < img->nregions; i++) {
        const struct guest_region *g = &mem->regions[i];
        img->regions[i] = (struct vu_region_image){.gpa = g->gpa,
                                                   .size = g->size,
                                                   .uva = g->uva,
                                                   .mmap_offset = g->mmap_offset,
                                                   .fd = region_fd(dev, g->gpa)};
        if (img->regions[i].fd < 0)
            return -EBADF; /* its file could not be kept (logged then) */
    }
    return 0;
}

int vu_dev_export(struct vu_dev *dev, struct vu_dev_image *img)
{
    *img = (struct vu_dev_image){.log_fd = -1, .inflight_fd = -1};
    /* A transfer works on the session the state would be saved from. */
    if (dev->transfer) {
        log_warn("upgrade: refused while a device state transfer runs");
        return -EBUSY;
    }
    if ((dev->log_map && dev->log_fd < 0) || (dev->inflight && dev->inflight_fd < 0))
        return -EBADF;
    int ret = export_regions(dev, img);
    if (ret < 0) {
        vu_dev_image_free(img);
        return ret;
    }
    /* A request waiting for a lock stays unanswered here: its head goes with its queue, and
     * the new process serves it again (with an in-flight area, the area lists it too). */
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_quiesce(dev->queues[i]);
    for (unsigned i = 0; i < dev->nqueues && ret == 0; i++)
        ret = vu_queue_export(dev->queues[i], &img->queues[i]);
    if (ret < 0) {
        vu_dev_image_free(img);
        return ret; /* the queues are stopped: vu_dev_resume starts them */
    }
    img->nqueues = dev->nqueues;
    img->features = dev->features;
    img->protocol_features = dev->protocol_features;
    img->owner = dev->owner;
    if (dev->log_map) {
        img->log_fd = dev->log_fd;
        img->log_size = dev->log_size;
        img->log_offset = dev->log_offset;
    }
    if (dev->inflight) {
        img->inflight_fd = dev->inflight_fd;
        img->inflight_size = dev->inflight_size;
        img->inflight_offset = dev->inflight_offset;
        img->inflight_queues = dev->inflight_queues;
        img->inflight_queue_size = dev->inflight_queue_size;
    }
    return 0;
}

void vu_dev_session_replaced(struct vu_dev *dev)
{
    if (!dev->inflight || !fuse_session_journal(dev->fuse))
        return;
    fuse_session_journal_detach(dev->fuse);
    const struct sj_inflight sj = {.in_flight = journal_in_flight, .opaque = dev};
    if (fuse_session_journal_attach(dev->fuse, dev->inflight->journal, dev->inflight->journal_len,
                                    &sj) < 0)
        log_warn("vhost-user: the session cannot be kept in the in-flight area");
}

void vu_dev_let_go(struct vu_dev *dev)
{
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_let_go(dev->queues[i]);
}

void vu_dev_resume(struct vu_dev *dev)
{
    /* The new process may have restored the journal into its other half already: ours no
     * longer matches what the area holds, so it starts over. */
    vu_dev_session_replaced(dev);
    /* Queues still waiting for SET_INFLIGHT_FD's recovery stay held for finish_inflight. */
    if (dev->inflight_pending)
        return;
    if (release_queues(dev) < 0)
        log_error("upgrade: a queue could not be started again");
}

static int import_regions(struct vu_dev *dev, const struct vu_dev_image *img)
{
    if (img->nregions > GUEST_MEM_MAX_REGIONS)
        return -EINVAL;
    if (img->nregions == 0)
        return 0;
    struct guest_mem *mem = guest_mem_alloc(img->nregions);
    if (!mem)
        return -ENOMEM;
    int ret = 0;
    for (unsigned i = 0; i < img->nregions && ret == 0; i++) {
        const struct vu_region_image *r = &img->regions[i];
        const struct guest_region_desc d = {r->gpa, r->size, r->uva, r->mmap_offset};
        if (guest_mem_overlaps(mem, &d))
            ret = -EINVAL;
        else
            ret = guest_region_map(&d, r->fd, &mem->regions[mem->nregions]);
        if (ret == 0)
            mem->nregions++;
        if (ret < 0)
            log_error("upgrade: bad memory region gpa 0x%llx size 0x%llx: %s",
                      (unsigned long long)r->gpa, (unsigned long long)r->size, strerror(-ret));
    }
    for (unsigned i = 0; i < img->nregions && ret == 0; i++)
        ret = keep_region_fd(dev, img->regions[i].gpa, img->regions[i].fd);
    if (ret < 0) {
        guest_mem_free(mem);
        forget_region_fds(dev);
        return ret;
    }
    guest_mem_free(publish_mem(dev, mem));
    return 0;
}

static int import_log(struct vu_dev *dev, const struct vu_dev_image *img)
{
    if (img->log_fd < 0)
        return 0;
    if (!(dev->protocol_features & (1ull << VU_PROTOCOL_F_LOG_SHMFD)))
        return -EINVAL;
    struct guest_log *log;
    int ret = guest_log_map(img->log_fd, img->log_size, img->log_offset, &log);
    if (ret < 0) {
        log_error("upgrade: bad dirty-page log: %s", strerror(-ret));
        return ret;
    }
    replace_log(dev, log);
    keep_log_fd(dev, img->log_fd, img->log_size, img->log_offset);
    return dev->log_fd < 0 ? -EBADF : 0;
}

static int import_queues(struct vu_dev *dev, const struct vu_dev_image *img)
{
    if (img->nqueues != dev->nqueues) {
        log_error("upgrade: the old process has %u queues, this one %u (--num-request-queues "
                  "must stay the same)",
                  img->nqueues, dev->nqueues);
        return -EINVAL;
    }
    for (unsigned i = 0; i < dev->nqueues; i++) {
        int ret = vu_queue_import(dev->queues[i], &img->queues[i]);
        if (ret < 0) {
            log_error("upgrade: queue %u: %s", i, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

static int import_inflight(struct vu_dev *dev, const struct vu_dev_image *img, bool *restored)
{
    if (img->inflight_fd < 0)
        return 0;
    if (!(dev->protocol_features & (1ull << VU_PROTOCOL_F_INFLIGHT_SHMFD)) ||
        img->inflight_queues > dev->nqueues)
        return -EINVAL;
    int ret = use_inflight(dev, img->inflight_fd, img->inflight_size, img->inflight_offset,
                           img->inflight_queues, img->inflight_queue_size);
    if (ret < 0 || dev->inflight_fd < 0)
        return ret < 0 ? ret : -EBADF;
    /* As after SET_INFLIGHT_FD: once a ring can be read, the regions are recovered (what the
     * old process left in flight is served again) and the journal attached; the queues stay
     * held until vu_dev_go. */
    if (!any_queue_ready(dev))
        return 0;
    ret = recover_inflight(dev);
    if (ret > 0)
        *restored = true;
    return ret < 0 ? ret : 0;
}

int vu_dev_import(struct vu_dev *dev, const struct vu_dev_image *img, int conn, bool *restored)
{
    *restored = false;
    if ((img->features & ~offered_features) ||
        (img->protocol_features & ~dev->offered_protocol_features)) {
        log_error("upgrade: the old process negotiated features this one does not offer");
        return -EINVAL;
    }
    dev->features = img->features;
    dev->protocol_features = img->protocol_features;
    dev->owner = img->owner;
    int ret = import_regions(dev, img);
    if (ret == 0)
        ret = import_queues(dev, img);
    if (ret == 0)
        ret = import_log(dev, img);
    if (ret == 0)
        publish_log(dev);
    if (ret == 0)
        ret = import_inflight(dev, img, restored);
    if (ret == 0)
        watch_connection(dev, conn);
    return ret;
}

int vu_dev_go(struct vu_dev *dev)
{
    if (dev->inflight_pending)
        return 0; /* held for finish_inflight, as in the old process */
    return release_queues(dev);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

/* Frees what vu_dev_new made, also when it made only part of it. */
static void free_parts(struct vu_dev *dev)
{
    for (unsigned i = 0; i < dev->nqueues; i++)
        vu_queue_free(dev->queues[i]);
    vu_workers_free(dev->workers);
    tpool_free(dev->pool);
    free(dev);
}

const char *vu_tag_invalid(const char *tag)
{
    size_t len = strlen(tag);

    if (len == 0 || len > VU_TAG_MAX)
        return "1 to 36 bytes";
    if (strchr(tag, '\n'))
        return "no newline (guest kernels refuse such a tag)";
    if (!utf8_valid((const uint8_t *)tag, len))
        return "UTF-8 text";
    return NULL;
}

struct vu_dev *vu_dev_new(struct fuse_session *fuse, const struct vu_dev_config *cfg)
{
    if (cfg->num_request_queues < 1 || cfg->num_request_queues > VU_MAX_REQUEST_QUEUES ||
        (cfg->tag && vu_tag_invalid(cfg->tag)))
        return NULL;
    struct vu_dev *dev = calloc(1, sizeof(*dev));
    if (!dev)
        return NULL;
    dev->fuse = fuse;
    dev->fault_fd = -1;
    dev->restarted = cfg->restarted;
    dev->log_fd = -1;
    dev->inflight_fd = -1;
    dev->nqueues = VU_HIPRIO_QUEUES + cfg->num_request_queues;
    dev->offered_protocol_features = base_protocol_features;
    if (cfg->tag) {
        dev->offered_protocol_features |= 1ull << VU_PROTOCOL_F_CONFIG;
        memcpy(dev->config.tag, cfg->tag, strlen(cfg->tag)); /* checked: fits, NUL-padded */
        dev->config.num_request_queues = htole32(cfg->num_request_queues);
    }
    const struct vu_workers_config wcfg = {.queues = dev->nqueues,
                                           .threads = cfg->queue_threads,
                                           .poll_us = cfg->poll_us,
                                           .poll_when_crowded = cfg->poll_when_crowded};
    dev->workers = vu_workers_new(&wcfg);
    if (!dev->workers || (cfg->pool_threads && vu_pool_new(cfg->pool_threads, &dev->pool) < 0)) {
        free_parts(dev);
        return NULL;
    }
    for (unsigned i = 0; i < dev->nqueues; i++) {
        dev->queues[i] = vu_queue_new(i, &dev->mem, &dev->log, fuse,
                                      vu_workers_for_queue(dev->workers, i), dev->pool);
        if (!dev->queues[i]) {
            free_parts(dev);
            return NULL;
        }
    }
    log_debug("%u request queues offered, served by %u worker threads", cfg->num_request_queues,
              vu_workers_threads(dev->workers));
    return dev;
}

void vu_dev_reset(struct vu_dev *dev)
{
    reset_rings_and_session(dev, false);
    guest_mem_free(publish_mem(dev, NULL));
    forget_region_fds(dev);
    /* No thread touches guest memory any more: a fault the session had (maybe while its
     * queues stopped just now) is logged if it was not yet, and then forgotten. */
    guest_memory_faulted();
    guest_mem_fault_clear();
    guest_mem_set_fault_socket(-1);
    if (dev->fault_fd >= 0)
        close(dev->fault_fd);
    dev->fault_fd = -1;
    dev->protocol_features = 0;
    dev->owner = false;
}

void vu_dev_free(struct vu_dev *dev)
{
    if (!dev)
        return;
    vu_dev_reset(dev);
    free_parts(dev);
}
