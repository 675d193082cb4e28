/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the seed corpus of the libFuzzer harnesses: valid sequences in each harness's input
 * format (see the comment at the top of each fuzz_*.c). Deterministic: the same bytes on every
 * run, so the committed corpus can be regenerated and compared (tests/fuzz/make-seeds.sh).
 *
 * Usage: fuzz_make_seeds OUTDIR   (writes OUTDIR/<target>/<seed>)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/vhost_types.h>
#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- a growable byte buffer ------------------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put8(struct buf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put16(struct buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}

static void put32(struct buf *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        put8(b, (uint8_t)(v >> (8 * i)));
}

static const char *outdir;

static void save(const char *target, const char *name, struct buf *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(b->p);
    *b = (struct buf){0};
}

/* ---- fuzz_fuse ------------------------------------------------------------------------------ */

enum { F_FIXLEN = 1, F_NODEIDX = 2, F_FHIDX = 4, F_WR16 = 8, F_NOWR = 16 };

static uint64_t unique = 100;

/*
 * One request record. nodeid / fh values are indexes (F_NODEIDX / F_FHIDX): 0 is the root,
 * then the nodeids replies gave out in order; fhs likewise from 0.
 */
static void fuse_rec(struct buf *b, uint8_t flags, unsigned rd_segs, unsigned wr_segs,
                     uint16_t wr_size, uint32_t opcode, uint64_t nodeid, const void *args,
                     size_t arglen)
{
    struct fuse_in_header h = {
        .len = (uint32_t)(sizeof(h) + arglen),
        .opcode = opcode,
        .unique = unique++,
        .nodeid = nodeid,
        .uid = 0,
        .gid = 0,
        .pid = 1234,
    };
    uint16_t req_len = (uint16_t)(sizeof(h) + arglen);
    put8(b, flags | F_FIXLEN);
    put8(b, (uint8_t)(rd_segs - 1));
    put8(b, (uint8_t)(wr_segs - 1));
    put16(b, wr_size);
    put16(b, req_len);
    for (unsigned i = 1; i < rd_segs; i++) /* evenly spaced cuts */
        put16(b, (uint16_t)(req_len * i / rd_segs));
    for (unsigned i = 1; i < wr_segs; i++)
        put16(b, (uint16_t)(wr_size * i / wr_segs));
    put(b, &h, sizeof(h));
    put(b, args, arglen);
}

/* Simple form: one readable segment, one 4 KiB writable segment, nodeid/fh indexes. */
static void fuse_simple(struct buf *b, uint32_t opcode, uint64_t node, const void *args,
                        size_t arglen)
{
    fuse_rec(b, F_NODEIDX | F_FHIDX, 1, 1, 4096, opcode, node, args, arglen);
}

/* args = fixed struct followed by NUL-terminated names. */
static size_t with_names(uint8_t *out, const void *fixed, size_t flen, const char *n1,
                         const char *n2)
{
    size_t off = 0;
    memcpy(out, fixed, flen);
    off += flen;
    if (n1) {
        memcpy(out + off, n1, strlen(n1) + 1);
        off += strlen(n1) + 1;
    }
    if (n2) {
        memcpy(out + off, n2, strlen(n2) + 1);
        off += strlen(n2) + 1;
    }
    return off;
}

static void fuse_seeds(void)
{
    struct buf b = {0};
    uint8_t a[512];
    size_t n;

    /* 1. INIT (again), LOOKUP, GETATTR, CREATE, WRITE, READ, FLUSH, RELEASE. */
    struct fuse_init_in init = {.major = 7,
                                .minor = 31,
                                .max_readahead = 65536,
                                .flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
                                         FUSE_INIT_EXT | FUSE_MAX_PAGES};
    fuse_simple(&b, FUSE_INIT, 0, &init, sizeof(init));
    fuse_simple(&b, FUSE_LOOKUP, 0, "hello.txt", 10); /* nodeid idx 1 */
    struct fuse_getattr_in ga = {0};
    fuse_simple(&b, FUSE_GETATTR, 1, &ga, sizeof(ga));
    struct fuse_create_in cr = {.flags = 02 /* O_RDWR */, .mode = 0100644, .umask = 022};
    n = with_names(a, &cr, sizeof(cr), "new.txt", NULL);
    fuse_simple(&b, FUSE_CREATE, 0, a, n); /* nodeid idx 2, fh idx 0 */
    struct fuse_write_in wr = {.fh = 0, .offset = 0, .size = 12};
    memcpy(a, &wr, sizeof(wr));
    memcpy(a + sizeof(wr), "hello world\n", 12);
    fuse_simple(&b, FUSE_WRITE, 2, a, sizeof(wr) + 12);
    struct fuse_read_in rd = {.fh = 0, .offset = 0, .size = 100};
    fuse_simple(&b, FUSE_READ, 2, &rd, sizeof(rd));
    struct fuse_flush_in fl = {.fh = 0};
    fuse_simple(&b, FUSE_FLUSH, 2, &fl, sizeof(fl));
    struct fuse_release_in rl = {.fh = 0};
    fuse_simple(&b, FUSE_RELEASE, 2, &rl, sizeof(rl));
    fuse_simple(&b, FUSE_GETATTR, 2, &ga, sizeof(ga));
    save("fuzz_fuse", "create-write-read", &b);

    /* 2. Directories and names. */
    fuse_simple(&b, FUSE_LOOKUP, 0, "sub", 4); /* idx 1 */
    struct fuse_mkdir_in mk = {.mode = 0755, .umask = 022};
    n = with_names(a, &mk, sizeof(mk), "newdir", NULL);
    fuse_simple(&b, FUSE_MKDIR, 0, a, n); /* idx 2 */
    struct fuse_open_in op = {.flags = 0};
    fuse_simple(&b, FUSE_OPENDIR, 1, &op, sizeof(op)); /* fh 0 */
    struct fuse_read_in rdd = {.fh = 0, .offset = 0, .size = 4096};
    fuse_simple(&b, FUSE_READDIR, 1, &rdd, sizeof(rdd));
    fuse_simple(&b, FUSE_READDIRPLUS, 1, &rdd, sizeof(rdd));
    struct fuse_fsync_in fsd = {.fh = 0, .fsync_flags = 0};
    fuse_simple(&b, FUSE_FSYNCDIR, 1, &fsd, sizeof(fsd));
    struct fuse_release_in rld = {.fh = 0};
    fuse_simple(&b, FUSE_RELEASEDIR, 1, &rld, sizeof(rld));
    n = with_names(a, NULL, 0, "sym", "hello.txt");
    fuse_simple(&b, FUSE_SYMLINK, 2, a, n); /* idx 3 */
    fuse_simple(&b, FUSE_READLINK, 3, NULL, 0);
    struct fuse_rename2_in rn = {.newdir = 1, .flags = 0};
    n = with_names(a, &rn, sizeof(rn), "sym", "moved");
    fuse_simple(&b, FUSE_RENAME2, 2, a, n);
    struct fuse_link_in ln = {.oldnodeid = 0};
    fuse_simple(&b, FUSE_LOOKUP, 0, "hello.txt", 10); /* idx 4 */
    ln.oldnodeid = 4;
    n = with_names(a, &ln, sizeof(ln), "hardlink", NULL);
    fuse_simple(&b, FUSE_LINK, 2, a, n); /* idx 5 */
    fuse_simple(&b, FUSE_UNLINK, 2, "hardlink", 9);
    fuse_simple(&b, FUSE_UNLINK, 1, "moved", 6);
    fuse_simple(&b, FUSE_RMDIR, 0, "newdir", 7);
    struct fuse_mknod_in mn = {.mode = 010644 /* fifo */, .rdev = 0, .umask = 0};
    n = with_names(a, &mn, sizeof(mn), "pipe", NULL);
    fuse_simple(&b, FUSE_MKNOD, 0, a, n);
    fuse_simple(&b, FUSE_LOOKUP, 0, "..", 3);
    fuse_simple(&b, FUSE_LOOKUP, 0, "escape", 7);
    fuse_simple(&b, FUSE_STATFS, 0, NULL, 0);
    save("fuzz_fuse", "directories", &b);

    /* 3. Attributes, xattrs, file ops, forgetting, DESTROY. */
    fuse_simple(&b, FUSE_LOOKUP, 0, "data.bin", 9); /* idx 1 */
    struct fuse_setattr_in sa = {.valid = FATTR_MODE | FATTR_SIZE, .mode = 0600, .size = 4096};
    fuse_simple(&b, FUSE_SETATTR, 1, &sa, sizeof(sa));
    struct fuse_access_in ac = {.mask = 4};
    fuse_simple(&b, FUSE_ACCESS, 1, &ac, sizeof(ac));
    struct fuse_setxattr_in sx = {.size = 5, .flags = 0};
    n = with_names(a, &sx, FUSE_COMPAT_SETXATTR_IN_SIZE, "trusted.fuzz", NULL);
    memcpy(a + n, "value", 5);
    fuse_simple(&b, FUSE_SETXATTR, 1, a, n + 5);
    struct fuse_getxattr_in gx = {.size = 64};
    n = with_names(a, &gx, sizeof(gx), "trusted.fuzz", NULL);
    fuse_simple(&b, FUSE_GETXATTR, 1, a, n);
    fuse_simple(&b, FUSE_LISTXATTR, 1, &gx, sizeof(gx));
    fuse_simple(&b, FUSE_REMOVEXATTR, 1, "trusted.fuzz", 13);
    struct fuse_open_in rw = {.flags = 02};
    fuse_simple(&b, FUSE_OPEN, 1, &rw, sizeof(rw)); /* fh 0 */
    struct fuse_fallocate_in fa = {.fh = 0, .offset = 0, .length = 8192, .mode = 0};
    fuse_simple(&b, FUSE_FALLOCATE, 1, &fa, sizeof(fa));
    struct fuse_lseek_in ls = {.fh = 0, .offset = 10, .whence = 3 /* SEEK_DATA */};
    fuse_simple(&b, FUSE_LSEEK, 1, &ls, sizeof(ls));
    fuse_simple(&b, FUSE_LOOKUP, 0, "empty", 6);    /* idx 2 */
    fuse_simple(&b, FUSE_OPEN, 2, &rw, sizeof(rw)); /* fh 1 */
    struct fuse_copy_file_range_in cf = {
        .fh_in = 0, .off_in = 0, .nodeid_out = 2, .fh_out = 1, .off_out = 0, .len = 100};
    fuse_simple(&b, FUSE_COPY_FILE_RANGE, 1, &cf, sizeof(cf));
    struct fuse_fsync_in fs = {.fh = 0, .fsync_flags = 1};
    fuse_simple(&b, FUSE_FSYNC, 1, &fs, sizeof(fs));
    fuse_simple(&b, FUSE_SYNCFS, 0, &fs, 8);
    struct fuse_interrupt_in it = {.unique = 1};
    fuse_simple(&b, FUSE_INTERRUPT, 0, &it, sizeof(it));
    struct fuse_forget_in fg = {.nlookup = 1};
    fuse_simple(&b, FUSE_FORGET, 2, &fg, sizeof(fg));
    struct {
        struct fuse_batch_forget_in h;
        struct fuse_forget_one one[2];
    } bf = {{.count = 2}, {{.nodeid = 1, .nlookup = 1}, {.nodeid = 2, .nlookup = 1}}};
    fuse_rec(&b, 0, 1, 1, 4096, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf));
    fuse_simple(&b, FUSE_DESTROY, 0, NULL, 0);
    fuse_simple(&b, FUSE_GETATTR, 0, &ga, sizeof(ga)); /* EIO: not initialized */
    save("fuzz_fuse", "attrs-xattrs-files", &b);

    /* 4. Scattered iovecs: split requests, split and undersized replies. */
    fuse_simple(&b, FUSE_LOOKUP, 0, "data.bin", 9); /* idx 1 */
    struct fuse_open_in ro = {.flags = 0};
    fuse_rec(&b, F_NODEIDX | F_FHIDX, 3, 1, 64, FUSE_OPEN, 1, &ro, sizeof(ro));
    struct fuse_read_in big = {.fh = 0, .offset = 100, .size = 8192};
    fuse_rec(&b, F_NODEIDX | F_FHIDX, 4, 5, 6000, FUSE_READ, 1, &big, sizeof(big));
    fuse_rec(&b, F_NODEIDX | F_FHIDX, 2, 3, 20, FUSE_GETATTR, 1, &ga, sizeof(ga));
    fuse_rec(&b, F_NODEIDX | F_FHIDX, 1, 1, 8, FUSE_GETATTR, 1, &ga, sizeof(ga));
    fuse_rec(&b, F_NODEIDX | F_FHIDX | F_NOWR, 1, 1, 0, FUSE_STATFS, 0, NULL, 0);
    struct fuse_write_in w2 = {.fh = 0, .offset = 4000, .size = 300};
    memcpy(a, &w2, sizeof(w2));
    memset(a + sizeof(w2), 'x', 300);
    fuse_rec(&b, F_NODEIDX | F_FHIDX, 6, 2, 64, FUSE_WRITE, 1, a, sizeof(w2) + 300);
    save("fuzz_fuse", "scattered", &b);
}

/* ---- fuzz_virtqueue ----------------------------------------------------------------------- */

#define VQ_G0 0x40000000ull

/* Header: queue size 1 << qlog, flags, ring offsets (in units: desc 16, avail 2, used 4). */
static void vq_header(struct buf *b, uint8_t qlog, uint8_t flags, uint32_t desc, uint32_t avail,
                      uint32_t used, uint16_t base)
{
    put8(b, qlog);
    put8(b, flags);
    put16(b, (uint16_t)(desc / 16));
    put16(b, (uint16_t)(avail / 2));
    put16(b, (uint16_t)(used / 4));
    put16(b, base);
}

/* Op 0 / 3 with address mode 0 (offset in region 0) or 1 (offset in region 1). */
static void vq_desc(struct buf *b, unsigned mode, uint16_t i, uint32_t off, uint32_t len,
                    uint16_t flags, uint16_t next)
{
    put8(b, (uint8_t)(0 | mode << 3));
    put16(b, i);
    put32(b, off);
    put32(b, len);
    put16(b, flags);
    put16(b, next);
}

static void vq_indirect(struct buf *b, uint32_t at, uint32_t off, uint32_t len, uint16_t flags,
                        uint16_t next)
{
    put8(b, 3);
    put32(b, at);
    put32(b, off);
    put32(b, len);
    put16(b, flags);
    put16(b, next);
}

static void vq_avail(struct buf *b, uint16_t slot, uint16_t head)
{
    put8(b, 1);
    put16(b, slot);
    put16(b, head);
}

static void vq_bump(struct buf *b, uint8_t n)
{
    put8(b, 2);
    put8(b, n);
}

static void vq_pop(struct buf *b, uint8_t n)
{
    put8(b, 4);
    put8(b, n);
}

/* Op 4, mode 1: pops up to n chains and holds them (out); mode 2: pushes n held ones. */
static void vq_pop_hold(struct buf *b, uint8_t n)
{
    put8(b, 4 | 1 << 3);
    put8(b, n);
}

static void vq_push_held(struct buf *b, uint8_t n)
{
    put8(b, 4 | 2 << 3);
    put8(b, n);
}

static void vq_notify(struct buf *b, uint8_t which)
{
    put8(b, 6);
    put8(b, which);
}

static void virtqueue_seeds(void)
{
    struct buf b = {0};
    const uint16_t N = VRING_DESC_F_NEXT, W = VRING_DESC_F_WRITE, I = VRING_DESC_F_INDIRECT;

    /* 1. One request: a readable and a writable descriptor. */
    vq_header(&b, 3, 0, 0x0, 0x1000, 0x2000, 0);
    vq_desc(&b, 0, 0, 0x4000, 64, N, 1);
    vq_desc(&b, 0, 1, 0x5000, 128, W, 0);
    vq_avail(&b, 0, 0);
    vq_bump(&b, 1);
    vq_pop(&b, 1);
    save("fuzz_virtqueue", "simple-chain", &b);

    /* 2. An indirect table of three descriptors, EVENT_IDX, notification helpers. */
    vq_header(&b, 4, 1, 0x0, 0x1000, 0x2000, 0);
    vq_desc(&b, 0, 0, 0x3000, 3 * 16, I, 0);
    vq_indirect(&b, 0x3000, 0x4000, 40, N, 1);
    vq_indirect(&b, 0x3010, 0x4100, 24, N, 2);
    vq_indirect(&b, 0x3020, 0x5000, 4096, W, 0);
    vq_avail(&b, 0, 0);
    vq_bump(&b, 1);
    vq_notify(&b, 2);
    vq_pop(&b, 1);
    vq_notify(&b, 0);
    vq_notify(&b, 1);
    vq_notify(&b, 3);
    save("fuzz_virtqueue", "indirect", &b);

    /* 3. Two guest-physically adjacent regions: a buffer crossing from one into the other. */
    vq_header(&b, 2, 2 | 4, 0x0, 0x1000, 0x2000, 0);
    vq_desc(&b, 0, 0, 0x4000, 16, N, 1);
    vq_desc(&b, 0, 1, 256 * 1024 - 100, 300, W, 2);
    vq_desc(&b, 1, 2, 0x100, 50, W, 0);
    vq_avail(&b, 0, 0);
    vq_bump(&b, 1);
    vq_pop(&b, 2);
    save("fuzz_virtqueue", "two-regions", &b);

    /* 4. Several chains around the 16-bit index wrap, in the second region's rings. */
    vq_header(&b, 3, 2 | 8 | 32, 0x0, 0x1000, 0x2000, 0xfffe);
    for (uint16_t i = 0; i < 4; i++) {
        vq_desc(&b, 1, (uint16_t)(2 * i), 0x4000 + 0x100u * i, 32, N, (uint16_t)(2 * i + 1));
        vq_desc(&b, 1, (uint16_t)(2 * i + 1), 0x8000 + 0x100u * i, 64, W, 0);
        vq_avail(&b, (uint16_t)(0xfffe + i), (uint16_t)(2 * i));
    }
    vq_bump(&b, 4);
    vq_pop(&b, 3);
    save("fuzz_virtqueue", "wrap-four-chains", &b);

    /* 5. A head published three times while it is out (held, as the thread pool or a waiting
     * SETLKW keeps it): the copies are skipped; once pushed, published again, it is served. */
    vq_header(&b, 3, 1, 0x0, 0x1000, 0x2000, 0);
    vq_desc(&b, 0, 0, 0x4000, 64, N, 1);
    vq_desc(&b, 0, 1, 0x5000, 128, W, 0);
    for (uint16_t i = 0; i < 3; i++)
        vq_avail(&b, i, 0);
    vq_bump(&b, 3);
    vq_pop_hold(&b, 1);
    vq_pop(&b, 2);
    vq_push_held(&b, 1);
    vq_avail(&b, 3, 0);
    vq_bump(&b, 1);
    vq_pop(&b, 1);
    save("fuzz_virtqueue", "repeated-head-out", &b);

    /* 6. The same three copies served one at a time, each pushed before the next pop. */
    vq_header(&b, 3, 0, 0x0, 0x1000, 0x2000, 0);
    vq_desc(&b, 0, 2, 0x4000, 64, N, 3);
    vq_desc(&b, 0, 3, 0x5000, 128, W, 0);
    for (uint16_t i = 0; i < 3; i++)
        vq_avail(&b, i, 2);
    vq_bump(&b, 3);
    vq_pop(&b, 3);
    save("fuzz_virtqueue", "repeated-head-answered", &b);
}

/* ---- fuzz_vhost_user ---------------------------------------------------------------------- */

enum {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
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
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_LOG_BASE = 6,
    VU_SET_DEVICE_STATE_FD = 42,
    VU_CHECK_DEVICE_STATE = 43,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_RESET_DEVICE = 34,
};
/* The harness's per-message flags: kind 2 is a SAVE's pipe (write end) or a LOAD's (read). */
#define H_SAVE_PIPE 0x2u
#define H_LOAD_PIPE 0x4u

enum { FD_SMALL = 0, FD_BIG = 1, FD_EVENT = 2, FD_NULL = 3 };
#define NEED_REPLY 0x8u
#define VU_UVA     0x7f0000000000ull

/* One message with the harness's flags (see fuzz_vhost_user.c). */
static void vu_msg_h(struct buf *b, uint8_t hflags, uint32_t req, uint32_t flags,
                     const void *payload, uint16_t len, unsigned nfds, const unsigned *kinds)
{
    uint16_t k = 0;
    for (unsigned i = 0; i < nfds; i++)
        k |= (uint16_t)(kinds[i] << (2 * i));
    put8(b, (uint8_t)nfds);
    put16(b, k);
    put8(b, hflags);
    put32(b, req);
    put32(b, 0x1 | flags);
    put32(b, len);
    put16(b, len);
    put(b, payload, len);
}

/* One message: fds by kind, header, payload (size set explicitly, not by the fix-up flag). */
static void vu_msg(struct buf *b, uint32_t req, uint32_t flags, const void *payload, uint16_t len,
                   unsigned nfds, const unsigned *kinds)
{
    uint16_t k = 0;
    for (unsigned i = 0; i < nfds; i++)
        k |= (uint16_t)(kinds[i] << (2 * i));
    put8(b, (uint8_t)nfds);
    put16(b, k);
    put8(b, 0);
    put32(b, req);
    put32(b, 0x1 | flags);
    put32(b, len);
    put16(b, len);
    put(b, payload, len);
}

static void vu_u64(struct buf *b, uint32_t req, uint32_t flags, uint64_t v, unsigned nfds,
                   unsigned kind)
{
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    unsigned kinds[1] = {kind};
    vu_msg(b, req, flags, p, 8, nfds, kinds);
}

static void vu_state(struct buf *b, uint32_t req, uint32_t flags, uint32_t index, uint32_t num)
{
    struct vhost_vring_state s = {.index = index, .num = num};
    vu_msg(b, req, flags, &s, sizeof(s), 0, NULL);
}

static void vu_mem_table(struct buf *b, uint32_t flags)
{
    struct {
        uint32_t nregions, padding;
        uint64_t gpa, size, uva, offset;
    } mt = {1, 0, 0, 64 * 1024, VU_UVA, 0};
    unsigned kinds[1] = {FD_SMALL};
    vu_msg(b, VU_SET_MEM_TABLE, flags, &mt, sizeof(mt), 1, kinds);
}

static void vu_ring(struct buf *b, uint32_t q, uint64_t desc, uint64_t avail, uint64_t used)
{
    vu_state(b, VU_SET_VRING_NUM, 0, q, 8);
    vu_state(b, VU_SET_VRING_BASE, 0, q, 0);
    struct vhost_vring_addr a = {.index = q,
                                 .flags = 0,
                                 .desc_user_addr = VU_UVA + desc,
                                 .used_user_addr = VU_UVA + used,
                                 .avail_user_addr = VU_UVA + avail,
                                 .log_guest_addr = 0};
    vu_msg(b, VU_SET_VRING_ADDR, 0, &a, sizeof(a), 0, NULL);
    vu_u64(b, VU_SET_VRING_KICK, 0, q, 1, FD_EVENT);
    vu_u64(b, VU_SET_VRING_CALL, 0, q, 1, FD_EVENT);
}

/* Guest memory image for the small memfd: request queue rings holding INIT and LOOKUP, the
 * LOOKUP's head published lookups times. */
static void vu_image_lookups(struct buf *b, unsigned lookups)
{
    static uint8_t img[0xa00];
    memset(img, 0, sizeof(img));
    struct vring_desc *desc = (struct vring_desc *)img;              /* 0x000 */
    struct vring_avail *avail = (struct vring_avail *)(img + 0x100); /* 0x100 */
    struct {
        struct fuse_in_header h;
        struct fuse_init_in i;
    } init = {{.len = sizeof(init), .opcode = FUSE_INIT, .unique = 1},
              {.major = 7, .minor = 38, .max_readahead = 65536, .flags = FUSE_INIT_EXT}};
    struct {
        struct fuse_in_header h;
        char name[10];
    } lookup = {{.len = sizeof(lookup), .opcode = FUSE_LOOKUP, .unique = 2, .nodeid = 1},
                "hello.txt"};
    memcpy(img + 0x300, &init, sizeof(init));
    memcpy(img + 0x380, &lookup, sizeof(lookup));
    desc[0] = (struct vring_desc){0x300, sizeof(init), VRING_DESC_F_NEXT, 1};
    desc[1] = (struct vring_desc){0x400, 0x200, VRING_DESC_F_WRITE, 0};
    desc[2] = (struct vring_desc){0x380, sizeof(lookup), VRING_DESC_F_NEXT, 3};
    desc[3] = (struct vring_desc){0x600, 0x400, VRING_DESC_F_WRITE, 0};
    avail->ring[0] = 0;
    for (unsigned i = 0; i < lookups; i++)
        avail->ring[1 + i] = 2;
    avail->idx = (uint16_t)(1 + lookups);
    put16(b, sizeof(img));
    put(b, img, sizeof(img));
}

static void vu_image(struct buf *b)
{
    vu_image_lookups(b, 1);
}

static void vhost_user_seeds(void)
{
    struct buf b = {0};
    const uint64_t features = (1ull << 32) | (1ull << 30) | (1ull << 29) | (1ull << 28);

    /* 1. QEMU's start-up of a vhost-user-fs device, rings holding FUSE INIT and LOOKUP. */
    vu_image(&b);
    vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_GET_PROTOCOL_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_PROTOCOL_FEATURES, 0, (1u << 0) | (1u << 3) | (1u << 15), 0, 0);
    vu_msg(&b, VU_GET_QUEUE_NUM, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_GET_MAX_MEM_SLOTS, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_SET_OWNER, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_VRING_CALL, 0, 0, 1, FD_EVENT);
    vu_u64(&b, VU_SET_VRING_CALL, 0, 1, 1, FD_EVENT);
    vu_u64(&b, VU_SET_VRING_ERR, 0, 0, 1, FD_EVENT);
    vu_u64(&b, VU_SET_FEATURES, 0, features, 0, 0);
    vu_mem_table(&b, NEED_REPLY);
    vu_ring(&b, 0, 0x800, 0x900, 0x980); /* hiprio: empty */
    vu_ring(&b, 1, 0x000, 0x100, 0x200);
    vu_state(&b, VU_SET_VRING_ENABLE, NEED_REPLY, 0, 1);
    vu_state(&b, VU_SET_VRING_ENABLE, NEED_REPLY, 1, 1);
    vu_state(&b, VU_GET_VRING_BASE, 0, 1, 0);
    vu_state(&b, VU_GET_VRING_BASE, 0, 0, 0);
    save("fuzz_vhost_user", "qemu-startup", &b);

    /* 2. Memory slots: ADD_MEM_REG, REM_MEM_REG, a bad region, REPLY_ACK on each. */
    put16(&b, 0);
    vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_FEATURES, 0, features, 0, 0);
    vu_u64(&b, VU_SET_PROTOCOL_FEATURES, 0, (1u << 3) | (1u << 15), 0, 0);
    vu_msg(&b, VU_GET_MAX_MEM_SLOTS, 0, NULL, 0, 0, NULL);
    struct {
        uint64_t padding, gpa, size, uva, offset;
    } reg = {0, 0, 64 * 1024, VU_UVA, 0};
    unsigned small[1] = {FD_SMALL}, big[1] = {FD_BIG}, null[1] = {FD_NULL};
    vu_msg(&b, VU_ADD_MEM_REG, NEED_REPLY, &reg, sizeof(reg), 1, small);
    reg.gpa = 0x100000, reg.size = 1024 * 1024, reg.uva = VU_UVA + 0x100000, reg.offset = 4096;
    vu_msg(&b, VU_ADD_MEM_REG, NEED_REPLY, &reg, sizeof(reg), 1, big);
    reg.gpa = 0x100000; /* overlaps */
    vu_msg(&b, VU_ADD_MEM_REG, NEED_REPLY, &reg, sizeof(reg), 1, big);
    reg.gpa = 0x10000000, reg.size = 4096, reg.offset = 0;
    vu_msg(&b, VU_ADD_MEM_REG, NEED_REPLY, &reg, sizeof(reg), 1, null);
    reg.gpa = 0, reg.size = 64 * 1024;
    vu_msg(&b, VU_REM_MEM_REG, NEED_REPLY, &reg, sizeof(reg), 0, NULL);
    vu_msg(&b, VU_REM_MEM_REG, NEED_REPLY, &reg, sizeof(reg), 0, NULL);
    vu_msg(&b, VU_RESET_OWNER, 0, NULL, 0, 0, NULL);
    save("fuzz_vhost_user", "mem-slots", &b);

    /* 3. Rings without protocol features (enabled by the kick), then a restart of one ring. */
    vu_image(&b);
    vu_u64(&b, VU_SET_FEATURES, 0, (1ull << 32) | (1ull << 28), 0, 0);
    vu_mem_table(&b, 0);
    vu_ring(&b, 1, 0x000, 0x100, 0x200);
    vu_state(&b, VU_GET_VRING_BASE, 0, 1, 0);
    vu_state(&b, VU_SET_VRING_BASE, 0, 1, 2);
    vu_u64(&b, VU_SET_VRING_KICK, 0, 1 | 0x100, 0, 0); /* no fd: polling */
    vu_mem_table(&b, 0);                               /* a new table while the ring runs */
    vu_state(&b, VU_GET_VRING_BASE, 0, 1, 0);
    save("fuzz_vhost_user", "no-protocol-features", &b);

    /* 4. Malformed messages: unknown request with NEED_REPLY, wrong sizes, bad queue index. */
    put16(&b, 0);
    vu_msg(&b, 99, NEED_REPLY, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_PROTOCOL_FEATURES, 0, 1u << 3, 0, 0);
    vu_state(&b, VU_SET_VRING_NUM, NEED_REPLY, 7, 8);
    vu_state(&b, VU_SET_VRING_NUM, NEED_REPLY, 1, 3);
    vu_u64(&b, VU_SET_FEATURES, NEED_REPLY, 1ull << 60, 0, 0);
    vu_u64(&b, VU_SET_VRING_CALL, NEED_REPLY, 1, 0, 0);
    vu_msg(&b, VU_SET_OWNER, NEED_REPLY, NULL, 0, 1, small);
    vu_msg(&b, VU_GET_QUEUE_NUM, 0, NULL, 0, 0, NULL);
    vu_state(&b, VU_GET_VRING_BASE, 0, 9, 0); /* no reply possible: ends the connection */
    save("fuzz_vhost_user", "malformed", &b);

    /* 5. The LOOKUP's head three times in the avail ring (with the pool, its job was queued
     * three times at once), then the ring stopped. */
    vu_image_lookups(&b, 3);
    vu_u64(&b, VU_SET_FEATURES, 0, (1ull << 32) | (1ull << 28), 0, 0);
    vu_mem_table(&b, 0);
    vu_ring(&b, 1, 0x000, 0x100, 0x200);
    /* Time for the worker to pop before the stop: GET_FEATURES round trips. */
    for (int i = 0; i < 100; i++)
        vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_state(&b, VU_GET_VRING_BASE, 0, 1, 0);
    save("fuzz_vhost_user", "duplicate-heads", &b);

    /* 6. Migration: dirty-page logging on (the small memfd's second half as the log, used
     * rings logged), requests served, logging off; then the device state saved and loaded. */
    vu_image(&b);
    vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_PROTOCOL_FEATURES, 0, (1u << 1) | (1u << 3) | (1u << 15) | (1u << 19), 0, 0);
    vu_u64(&b, VU_SET_FEATURES, 0, features | (1ull << 26), 0, 0);
    vu_mem_table(&b, 0);
    uint64_t log[2] = {4096, 0x8000};
    vu_msg(&b, VU_SET_LOG_BASE, 0, log, sizeof(log), 1, small);
    vu_ring(&b, 0, 0x800, 0x900, 0x980);
    struct vhost_vring_addr la = {.index = 1,
                                  .flags = 1u << VHOST_VRING_F_LOG,
                                  .desc_user_addr = VU_UVA,
                                  .used_user_addr = VU_UVA + 0x200,
                                  .avail_user_addr = VU_UVA + 0x100,
                                  .log_guest_addr = 0x200};
    vu_state(&b, VU_SET_VRING_NUM, 0, 1, 8);
    vu_msg(&b, VU_SET_VRING_ADDR, 0, &la, sizeof(la), 0, NULL);
    vu_u64(&b, VU_SET_VRING_KICK, 0, 1, 1, FD_EVENT);
    vu_state(&b, VU_SET_VRING_ENABLE, 0, 1, 1);
    for (int i = 0; i < 50; i++)
        vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_FEATURES, 0, features, 0, 0); /* logging off */
    vu_state(&b, VU_GET_VRING_BASE, 0, 1, 0);
    vu_state(&b, VU_GET_VRING_BASE, 0, 0, 0);
    uint32_t save_params[2] = {0, 0}, load_params[2] = {1, 0};
    unsigned pipe_end[1] = {FD_EVENT};
    vu_msg_h(&b, H_SAVE_PIPE, VU_SET_DEVICE_STATE_FD, 0, save_params, sizeof(save_params), 1,
             pipe_end);
    vu_msg(&b, VU_CHECK_DEVICE_STATE, 0, NULL, 0, 0, NULL);
    vu_msg_h(&b, H_LOAD_PIPE, VU_SET_DEVICE_STATE_FD, 0, load_params, sizeof(load_params), 1,
             pipe_end);
    vu_msg(&b, VU_CHECK_DEVICE_STATE, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_CHECK_DEVICE_STATE, 0, NULL, 0, 0, NULL); /* without a transfer */
    save("fuzz_vhost_user", "migration", &b);

    /* 7. The device configuration (F_CONFIG, the harness's devices have a tag): reads of all
     * of it, a slice and past its end, hostile ones; writes that change nothing and one that
     * would. */
    put16(&b, 0);
    vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_GET_PROTOCOL_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_PROTOCOL_FEATURES, 0, (1u << 0) | (1u << 3) | (1u << 9) | (1u << 13), 0, 0);
    struct {
        uint32_t offset, size, flags;
        uint8_t data[64];
    } cfg = {0, 40, 0, "fuzz"};
    cfg.data[36] = 2; /* the harness's request queues */
    vu_msg(&b, VU_GET_CONFIG, 0, &cfg, 12 + 40, 0, NULL);
    cfg.offset = 36, cfg.size = 4, cfg.flags = 1;
    vu_msg(&b, VU_GET_CONFIG, 0, &cfg, 12 + 4, 0, NULL);
    cfg.offset = 30, cfg.size = 20, cfg.flags = 2;
    vu_msg(&b, VU_GET_CONFIG, 0, &cfg, 12 + 20, 0, NULL);
    cfg.offset = 0xfffffff0u, cfg.size = 32, cfg.flags = 0; /* wraps */
    vu_msg(&b, VU_GET_CONFIG, 0, &cfg, 12 + 32, 0, NULL);
    cfg.offset = 0, cfg.size = 40, cfg.flags = 4;
    vu_msg(&b, VU_GET_CONFIG, 0, &cfg, 12 + 40, 0, NULL);
    cfg.flags = 0;
    vu_msg(&b, VU_GET_CONFIG, 0, &cfg, 12 + 8, 0, NULL);           /* payload shorter than size */
    vu_msg(&b, VU_SET_CONFIG, NEED_REPLY, &cfg, 12 + 40, 0, NULL); /* unchanged: accepted */
    cfg.data[0] = 'F';
    vu_msg(&b, VU_SET_CONFIG, NEED_REPLY, &cfg, 12 + 40, 0, NULL); /* refused */
    vu_msg(&b, VU_SET_CONFIG, 0, &cfg, 12 + 4, 0, NULL);
    save("fuzz_vhost_user", "config", &b);

    /* 8. RESET_DEVICE with the rings running, then the device set up again and served. */
    vu_image(&b);
    vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_PROTOCOL_FEATURES, 0, (1u << 0) | (1u << 3) | (1u << 15) | (1u << 13), 0, 0);
    vu_u64(&b, VU_SET_FEATURES, 0, features, 0, 0);
    vu_mem_table(&b, NEED_REPLY);
    vu_ring(&b, 1, 0x000, 0x100, 0x200);
    vu_state(&b, VU_SET_VRING_ENABLE, NEED_REPLY, 1, 1);
    for (int i = 0; i < 20; i++)
        vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_RESET_DEVICE, NEED_REPLY, NULL, 0, 0, NULL);
    vu_u64(&b, VU_SET_FEATURES, 0, features, 0, 0);
    vu_ring(&b, 1, 0x000, 0x100, 0x200);
    vu_state(&b, VU_SET_VRING_ENABLE, NEED_REPLY, 1, 1);
    for (int i = 0; i < 20; i++)
        vu_msg(&b, VU_GET_FEATURES, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_RESET_DEVICE, 0, NULL, 0, 0, NULL);
    vu_msg(&b, VU_RESET_DEVICE, NEED_REPLY, &cfg, 8, 0, NULL); /* with a payload: refused */
    vu_state(&b, VU_GET_VRING_BASE, 0, 1, 0);
    save("fuzz_vhost_user", "reset-device", &b);
}

/* ---- fuzz_state ----------------------------------------------------------------------------- */

/* The stream format of src/session_state.c, over the share fuzz_common.c makes. */

static void put64(struct buf *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

/* Starts a critical section; returns where its length goes. */
static size_t st_begin(struct buf *b, uint32_t type)
{
    put32(b, type);
    put32(b, 1);
    put64(b, 0);
    return b->len - 8;
}

static void st_end(struct buf *b, size_t at)
{
    uint64_t len = b->len - at - 8;

    for (int i = 0; i < 8; i++)
        b->p[at + i] = (uint8_t)(len >> (8 * i));
}

static void st_header(struct buf *b, uint32_t initialized, uint64_t flags)
{
    static const char writer[] = "make_seeds";
    size_t at;

    put(b, "VFSDST\r\n", 8);
    put32(b, 1);
    put32(b, 18 + sizeof(writer) - 1);
    put16(b, sizeof(writer) - 1);
    put(b, writer, sizeof(writer) - 1);
    at = st_begin(b, 1);
    put32(b, initialized);
    put32(b, initialized ? 7 : 0);
    put32(b, initialized ? 31 : 0);
    put32(b, initialized ? 4096 : 0);
    put32(b, initialized ? 1 : 0);
    put32(b, 0);
    put64(b, flags);
    st_end(b, at);
}

static void st_inode(struct buf *b, uint64_t nodeid, uint64_t nlookup, uint32_t mode,
                     uint32_t flags, const char *path)
{
    uint32_t n = 0;

    put64(b, nodeid);
    put64(b, nlookup);
    put64(b, 0); /* dev and ino: compared only with --migration-verify-handles */
    put64(b, 0);
    put32(b, mode);
    put32(b, flags);
    for (const char *p = path; *p; p++)
        n += p == path || p[-1] == '/';
    put32(b, n);
    while (*path) {
        const char *slash = strchr(path, '/');
        size_t len = slash ? (size_t)(slash - path) : strlen(path);

        put16(b, (uint16_t)len);
        put(b, path, len);
        path += len + (slash != NULL);
    }
}

static void st_handle(struct buf *b, uint64_t fh, uint64_t nodeid, uint32_t kind, uint32_t flags)
{
    put64(b, fh);
    put64(b, nodeid);
    put32(b, kind);
    put32(b, flags);
}

/* A LOCKS owner record's head; nranges st_lock_range records follow. */
static void st_lock_owner(struct buf *b, uint64_t nodeid, uint64_t owner, uint64_t fh, uint32_t pid,
                          uint64_t nranges)
{
    put64(b, nodeid);
    put64(b, owner);
    put64(b, fh);
    put32(b, pid);
    put32(b, 0);
    put64(b, nranges);
}

static void st_lock_range(struct buf *b, uint64_t start, uint64_t end, uint32_t type)
{
    put64(b, start);
    put64(b, end);
    put32(b, type);
}

static void st_counters(struct buf *b, uint64_t last_nodeid, uint64_t last_fh)
{
    size_t at = st_begin(b, 2);

    put64(b, last_nodeid);
    put64(b, last_fh);
    st_end(b, at);
}

static void state_seeds(void)
{
    struct buf b = {0};
    size_t at;

    /* Inodes of every kind the share has, open files and directories, a lost inode. */
    st_header(&b, 1, FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT);
    st_counters(&b, 20, 10);
    at = st_begin(&b, 3);
    put64(&b, 9);
    st_inode(&b, 1, 2, S_IFDIR, 0, "");
    st_inode(&b, 2, 1, S_IFREG, 0, "hello.txt");
    st_inode(&b, 3, 4, S_IFDIR, 0, "sub");
    st_inode(&b, 4, 1, S_IFREG, 0, "sub/inner.txt");
    st_inode(&b, 5, 1, S_IFDIR, 0, "sub/deeper");
    st_inode(&b, 6, 1, S_IFLNK, 0, "link");
    st_inode(&b, 7, 1, S_IFIFO, 0, "fifo");
    st_inode(&b, 8, 1, S_IFREG, 0, "ro.txt");
    st_inode(&b, 9, 1, S_IFREG, 1, ""); /* lost */
    st_end(&b, at);
    at = st_begin(&b, 4);
    put64(&b, 4);
    st_handle(&b, 1, 2, 0, 2);           /* hello.txt read-write */
    st_handle(&b, 2, 3, 1, 0);           /* sub, a directory */
    st_handle(&b, 3, 8, 0, 0 | 1u << 2); /* ro.txt read, with O_APPEND */
    st_handle(&b, 4, 4, 0, 1 | 1u << 8); /* inner.txt write, O_TRUNC (dropped) */
    st_end(&b, at);
    st_end(&b, st_begin(&b, 0xffff));
    save("fuzz_state", "session", &b);

    /* The same session holding locks: two POSIX lock owners on hello.txt, flocks on sub and
     * ro.txt. */
    st_header(&b, 1, FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_INIT_EXT);
    st_counters(&b, 20, 10);
    at = st_begin(&b, 3);
    put64(&b, 4);
    st_inode(&b, 1, 2, S_IFDIR, 0, "");
    st_inode(&b, 2, 1, S_IFREG, 0, "hello.txt");
    st_inode(&b, 3, 4, S_IFDIR, 0, "sub");
    st_inode(&b, 8, 1, S_IFREG, 0, "ro.txt");
    st_end(&b, at);
    at = st_begin(&b, 4);
    put64(&b, 3);
    st_handle(&b, 1, 2, 0, 2);
    st_handle(&b, 2, 3, 1, 0);
    st_handle(&b, 3, 8, 0, 0);
    st_end(&b, at);
    at = st_begin(&b, 5);
    put64(&b, 2);
    st_lock_owner(&b, 2, 0x1111, 1, 42, 2);
    st_lock_range(&b, 0, 9, 1);
    st_lock_range(&b, 100, 0x7fffffffffffffffull, 0);
    st_lock_owner(&b, 2, 0x2222, 1, 43, 1);
    st_lock_range(&b, 100, 199, 0);
    put64(&b, 2);
    put64(&b, 2); /* sub: shared */
    put32(&b, 0);
    put64(&b, 3); /* ro.txt: exclusive */
    put32(&b, 1);
    st_end(&b, at);
    st_end(&b, st_begin(&b, 0xffff));
    save("fuzz_state", "locks", &b);

    /* A session that never saw INIT: the root alone. */
    st_header(&b, 0, 0);
    st_counters(&b, 1, 0);
    at = st_begin(&b, 3);
    put64(&b, 1);
    st_inode(&b, 1, 2, S_IFDIR, 0, "");
    st_end(&b, at);
    at = st_begin(&b, 4);
    put64(&b, 0);
    st_end(&b, at);
    st_end(&b, st_begin(&b, 0xffff));
    save("fuzz_state", "uninitialized", &b);

    /* A path through a symlink and one with "..": refused. */
    st_header(&b, 1, 0);
    st_counters(&b, 5, 0);
    at = st_begin(&b, 3);
    put64(&b, 3);
    st_inode(&b, 1, 2, S_IFDIR, 0, "");
    st_inode(&b, 2, 1, S_IFREG, 0, "dotdot/hello.txt");
    st_inode(&b, 3, 1, S_IFDIR, 0, "sub/..");
    st_end(&b, at);
    at = st_begin(&b, 4);
    put64(&b, 0);
    st_end(&b, at);
    /* An unknown section that may be skipped. */
    put32(&b, 99);
    put32(&b, 0);
    put64(&b, 3);
    put(&b, "abc", 3);
    st_end(&b, st_begin(&b, 0xffff));
    save("fuzz_state", "hostile-paths", &b);
}

/* ---- fuzz_state: the Rust virtiofsd 1.13's format (src/state_rust.c: postcard bytes) -------- */

static void rv(struct buf *b, uint64_t v) /* a varint */
{
    do {
        put8(b, (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}

static void rstr(struct buf *b, const char *s)
{
    rv(b, strlen(s));
    put(b, s, strlen(s));
}

/* An inode: location 0 root, 1 Path under parent, 2 lost, 3 FullPath; no file handle. */
static void rinode(struct buf *b, uint64_t id, uint64_t refcount, unsigned loc, uint64_t parent,
                   const char *name)
{
    rv(b, id);
    rv(b, refcount);
    rv(b, loc);
    if (loc == 1)
        rv(b, parent);
    if (loc == 1 || loc == 3)
        rstr(b, name);
    put8(b, 0);
}

static void rhandle(struct buf *b, uint64_t fh, uint64_t inode, int32_t flags)
{
    rv(b, fh);
    rv(b, inode);
    rv(b, 0); /* OpenInode */
    rv(b, (uint32_t)(((uint32_t)flags << 1) ^ (uint32_t)(flags >> 31)));
}

static void rust_state_seeds(void)
{
    struct buf b = {0};

    /* As the Rust daemon writes it: Path locations (a parent's refcount holds one per child),
     * a FullPath as ours writes, a lost inode; fh 0 and a directory handle. */
    put8(&b, 1); /* V2 */
    rv(&b, 9);
    rinode(&b, 1, 4, 0, 0, NULL);
    rinode(&b, 2, 1, 1, 1, "hello.txt");
    rinode(&b, 3, 4, 1, 1, "sub");
    rinode(&b, 4, 1, 1, 3, "inner.txt");
    rinode(&b, 5, 1, 1, 3, "deeper");
    rinode(&b, 6, 1, 3, 0, "link");
    rinode(&b, 7, 1, 1, 1, "fifo");
    rinode(&b, 8, 1, 3, 0, "ro.txt");
    rinode(&b, 9, 1, 2, 0, NULL);
    rv(&b, 12);
    rv(&b, 3);
    rhandle(&b, 0, 2, O_RDWR | 0100000);
    rhandle(&b, 1, 3, O_RDONLY | O_DIRECTORY | 0100000);
    rhandle(&b, 2, 4, O_WRONLY);
    rv(&b, 3);
    put8(&b, 1); /* writeback */
    put8(&b, 0);
    put8(&b, 0);
    put8(&b, 1); /* sup_group_extension */
    rv(&b, 1);   /* one mount path */
    rv(&b, 42);
    rstr(&b, ".");
    save("fuzz_state", "rust-session", &b);

    /* Nothing mounted. */
    put8(&b, 1);
    rv(&b, 0);
    rv(&b, 2);
    rv(&b, 0);
    rv(&b, 0);
    put(&b, "\0\0\0\0\0", 5);
    save("fuzz_state", "rust-uninitialized", &b);

    /* V1 (no mount paths), a file-handle location and a file handle to compare. */
    put8(&b, 0);
    rv(&b, 2);
    rinode(&b, 1, 2, 0, 0, NULL);
    rv(&b, 2);
    rv(&b, 1);
    rv(&b, 4);
    rv(&b, 42); /* mnt_id */
    rv(&b, 2);  /* handle_type 1 */
    rv(&b, 8);
    put(&b, "\1\2\3\4\5\6\7\10", 8);
    put8(&b, 1);
    rv(&b, 42);
    rv(&b, 2);
    rv(&b, 8);
    put(&b, "\1\2\3\4\5\6\7\10", 8);
    rv(&b, 3);
    rv(&b, 0);
    rv(&b, 0);
    put(&b, "\0\1\0\0", 4);
    save("fuzz_state", "rust-v1-file-handle", &b);
}

/* ---- fuzz_journal --------------------------------------------------------------------------
 *
 * Session journal areas (format: the top of src/session_journal.c; the harness patches the
 * 4096-byte header unless told not to): half 0's header, then records. Native little-endian
 * layout, 8-byte aligned records of a 32-byte header and a payload padded to 8.
 */

static uint64_t jseq;

static void put64le(struct buf *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

static void j_begin(struct buf *b)
{
    static const uint8_t zeros[4096];
    put(b, zeros, sizeof(zeros)); /* the header: patched by the harness */
    jseq = 1;
    put64le(b, jseq); /* half 0: first sequence */
    put(b, zeros, 56);
}

/* A record: counter odd = a request still in flight (the harness's rule). */
static void j_rec(struct buf *b, uint16_t type, uint64_t counter, const void *payload, uint32_t len)
{
    static const uint8_t zeros[8];
    put64le(b, jseq++);
    put64le(b, counter);
    put16(b, counter ? 1 : 0);            /* queue */
    put16(b, (uint16_t)(counter & 0xff)); /* head */
    put16(b, type);
    put16(b, 0);
    put32(b, len);
    put32(b, 0);
    put(b, payload, len);
    put(b, zeros, (8 - len % 8) % 8);
}

static void j_init(struct buf *b)
{
    struct {
        uint32_t major, minor, max_write, max_pages;
        uint64_t flags;
    } in = {7, 38, 1u << 20, 256, 0};
    j_rec(b, 1, 0, &in, sizeof(in));
}

static void j_entry(struct buf *b, uint64_t counter, uint64_t nodeid, uint64_t parent,
                    uint32_t type, const char *name)
{
    uint8_t p[64 + 255];
    struct {
        uint64_t nodeid, parent, nlookup, dev, ino;
        uint32_t type;
        uint16_t namelen, reserved;
    } e = {nodeid, parent, 1, 0, 1000 + nodeid, type, (uint16_t)strlen(name), 0};
    memcpy(p, &e, sizeof(e));
    memcpy(p + sizeof(e), name, strlen(name));
    j_rec(b, 2, counter, p, (uint32_t)(sizeof(e) + strlen(name)));
}

static void j_simple(struct buf *b, uint16_t type, uint64_t counter, uint64_t a, uint64_t c,
                     uint32_t x, uint32_t y)
{
    struct {
        uint64_t a, c;
        uint32_t x, y;
    } p = {a, c, x, y};
    j_rec(b, type, counter, &p, sizeof(p));
}

static void journal_seeds(void)
{
    struct buf b = {0};
    /* A mounted session: entries, a handle, a rename, an unlink, counters. */
    j_begin(&b);
    j_init(&b);
    j_entry(&b, 2, 2, 1, 0040000, "dir");
    j_entry(&b, 4, 3, 2, 0100000, "file");
    j_simple(&b, 4, 6, 1, 3, 2 /* O_RDWR */, 0); /* OPEN fh 1 of nodeid 3 */
    {
        uint8_t p[64];
        struct {
            uint64_t olddir, newdir;
            uint32_t flags;
            uint16_t oldlen, newlen;
        } r = {2, 1, 0, 4, 5};
        memcpy(p, &r, sizeof(r));
        memcpy(p + sizeof(r), "filemoved", 9);
        j_rec(&b, 7, 8, p, (uint32_t)sizeof(r) + 9); /* RENAME */
    }
    {
        uint8_t p[32];
        struct {
            uint64_t parent;
            uint32_t namelen, reserved;
        } u = {2, 3, 0};
        memcpy(p, &u, sizeof(u));
        memcpy(p + sizeof(u), "old", 3);
        j_rec(&b, 6, 10, p, (uint32_t)sizeof(u) + 3); /* UNLINK */
    }
    j_simple(&b, 8, 0, 10, 5, 0, 0); /* COUNTERS: last nodeid 10, last fh 5 */
    save("fuzz_journal", "session", &b);

    /* Records of requests in flight (odd counters) among answered ones; a forget; a release. */
    j_begin(&b);
    j_init(&b);
    j_entry(&b, 2, 2, 1, 0100000, "a");
    j_entry(&b, 3, 3, 1, 0100000, "b"); /* in flight: left out */
    j_simple(&b, 4, 5, 1, 2, 0, 0);     /* OPEN, in flight */
    {
        struct {
            uint32_t count, reserved;
            uint64_t nodeid, nlookup;
        } f = {1, 0, 2, 1};
        j_rec(&b, 3, 12, &f, sizeof(f)); /* FORGET */
    }
    {
        uint64_t fh = 1;
        j_rec(&b, 5, 14, &fh, sizeof(fh)); /* RELEASE */
    }
    save("fuzz_journal", "in-flight", &b);

    /* Locks and an intent. */
    j_begin(&b);
    j_init(&b);
    j_entry(&b, 2, 2, 1, 0100000, "locked");
    j_simple(&b, 4, 4, 1, 2, 2, 0);
    {
        struct {
            uint64_t nodeid, fh, owner, start, end;
            uint32_t type, pid;
        } l = {2, 1, 77, 0, 4095, 1 /* F_WRLCK */, 42};
        j_rec(&b, 10, 6, &l, sizeof(l)); /* LOCK */
    }
    j_simple(&b, 11, 8, 1, 2, 2 /* LOCK_EX */, 0); /* FLOCK */
    {
        uint8_t p[128];
        struct {
            uint64_t nodeid, nodeid2, unique, size, dev, ino;
            uint32_t opcode, flags;
            uint16_t namelen, name2len;
            uint32_t reserved;
        } in = {1, 0, 99, 0, 0, 0, 9 /* FUSE_MKDIR */, 0, 3, 0, 0};
        memcpy(p, &in, sizeof(in));
        memcpy(p + sizeof(in), "new", 3);
        j_rec(&b, 9, 11, p, (uint32_t)sizeof(in) + 3); /* INTENT, in flight */
    }
    save("fuzz_journal", "locks-intent", &b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
        perror(outdir);
        return 1;
    }
    fuse_seeds();
    virtqueue_seeds();
    vhost_user_seeds();
    state_seeds();
    rust_state_seeds();
    journal_seeds();
    return 0;
}
