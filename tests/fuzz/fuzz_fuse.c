/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: FUSE decoding and dispatch (fuse_session_process) over a real
 * passthrough filesystem on a temporary share.
 *
 * Each input is a list of requests, served in order after a valid INIT the harness sends
 * itself. Every request record is
 *
 *   u8  flags     bit0: overwrite fuse_in_header.len with the request's length
 *                 bit1: nodeids (in.nodeid and the ones in link/rename/copy_file_range args)
 *                       are indexes into the nodeids replies gave out so far (0: the root)
 *                 bit2: file handles in the op's args are indexes into the fhs given out so far
 *                 bit3: the reply buffer holds wr_size * 16 bytes instead of wr_size
 *                 bit4: no device-writable part at all
 *   u8  rd_segs   (value % 8) + 1 readable segments
 *   u8  wr_segs   (value % 8) + 1 writable segments
 *   u16 wr_size   bytes of reply buffer
 *   u16 req_len   bytes of request (fuse_in_header + arguments) at the end of the record
 *   u16 split[rd_segs - 1 + wr_segs - 1]   segment boundaries (each % (length + 1))
 *   u8  request[req_len]
 *
 * all little-endian. The index modes exist because nodeids and fhs come from counters the
 * session does not reset, so literal values would mean different things from run to run.
 *
 * Checked after every request: the reply fits the writable part, a reply of 16 bytes or more
 * starts with a fuse_out_header whose len is the returned length, unique matches, error is 0
 * or a negative errno, no reply to FORGET/BATCH_FORGET/INTERRUPT. After every input: nothing
 * appeared next to the share, and the fd count is back to where it started.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu.h>

#include "creds.h"
#include "fuse_server.h"
#include "fuzz_common.h"
#include "passthrough.h"
#include "virtqueue.h"

#define MAX_REQUESTS  48
#define MAX_SEGS      8
#define MAX_IDS       64
#define BARRIER_EVERY 64

static struct pt_fs *fs;
static struct fuse_session *se;
static struct fuse_scratch *scratch;
static struct vq_elem *elem;
static int base_fds;

/* Ids the replies handed out during this input. */
static uint64_t nodeids[MAX_IDS], fhs[MAX_IDS];
static unsigned n_nodeids, n_fhs;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct pt_config cfg = {
        .cache = CACHE_AUTO,
        .xattr = true,
        .readdirplus = true,
        .writeback = true,
        .allow_direct_io = true,
        .announce_submounts = true,
        .killpriv_v2 = true,
        .posix_locks = true,
        .flock_locks = true,
        .posix_acl = true,
        .security_label = true,
    };
    se = fuzz_open_session(argc, argv, &cfg, &fs);
    scratch = fuse_scratch_new();
    elem = calloc(1, sizeof(*elem));
    FUZZ_CHECK(scratch && elem, "out of memory");
    base_fds = fuzz_count_fds();
    return 0;
}

/* ---- building chains ------------------------------------------------------------------ */

static void *segs[2 * MAX_SEGS];
static unsigned nsegs;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Appends buf[0, len) to elem as up to nsplit+1 separately allocated iovecs. */
static void add_segments(const uint8_t *buf, uint32_t len, const uint32_t *cuts, unsigned ncuts,
                         bool writable)
{
    uint32_t bounds[MAX_SEGS + 1];
    unsigned nb = 0;
    for (unsigned i = 0; i < ncuts; i++)
        bounds[nb++] = len ? cuts[i] % (len + 1) : 0;
    bounds[nb++] = len;
    qsort(bounds, nb, sizeof(bounds[0]), cmp_u32);
    uint32_t start = 0;
    size_t total = 0;
    for (unsigned i = 0; i < nb; i++) {
        uint32_t n = bounds[i] - start;
        if (n == 0)
            continue; /* a zero-length descriptor yields no iovec */
        uint8_t *p = malloc(n);
        FUZZ_CHECK(p != NULL, "out of memory");
        if (buf)
            memcpy(p, buf + start, n);
        else
            memset(p, 0xa5, n); /* reply space: garbage the server must overwrite */
        segs[nsegs++] = p;
        elem->iov[elem->rd_num + elem->wr_num] = (struct iovec){p, n};
        if (writable)
            elem->wr_num++;
        else
            elem->rd_num++;
        total += n;
        start = bounds[i];
    }
    if (writable)
        elem->wr_len = total;
    else
        elem->rd_len = total;
}

static void free_segments(void)
{
    for (unsigned i = 0; i < nsegs; i++)
        free(segs[i]);
    nsegs = 0;
}

/* Copies the first len bytes of the reply out of the writable iovecs. */
static void gather_reply(void *out, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < elem->wr_num && done < len; i++) {
        const struct iovec *v = &elem->iov[elem->rd_num + i];
        size_t n = v->iov_len < len - done ? v->iov_len : len - done;
        memcpy((uint8_t *)out + done, v->iov_base, n);
        done += n;
    }
}

/* ---- id indexes ---------------------------------------------------------------------------- */

static uint64_t pick(const uint64_t *ids, unsigned n, uint64_t index)
{
    return n ? ids[index % n] : index;
}

static void map_u64(uint8_t *args, size_t arglen, size_t off, const uint64_t *ids, unsigned n)
{
    uint64_t v;
    if (off + sizeof(v) > arglen)
        return;
    memcpy(&v, args + off, sizeof(v));
    v = pick(ids, n, v);
    memcpy(args + off, &v, sizeof(v));
}

static void fixup(uint8_t *req, size_t len, uint8_t flags)
{
    struct fuse_in_header h;
    if (len < sizeof(h))
        return;
    memcpy(&h, req, sizeof(h));
    uint8_t *args = req + sizeof(h);
    size_t arglen = len - sizeof(h);
    if (flags & 1)
        h.len = (uint32_t)len;
    if (flags & 2) {
        h.nodeid = pick(nodeids, n_nodeids, h.nodeid);
        switch (h.opcode) {
        case FUSE_LINK:    /* oldnodeid */
        case FUSE_RENAME:  /* newdir */
        case FUSE_RENAME2: /* newdir */
            map_u64(args, arglen, 0, nodeids, n_nodeids);
            break;
        case FUSE_COPY_FILE_RANGE: /* nodeid_out */
            map_u64(args, arglen, 16, nodeids, n_nodeids);
            break;
        }
    }
    if (flags & 4) {
        switch (h.opcode) {
        case FUSE_READ:
        case FUSE_WRITE:
        case FUSE_RELEASE:
        case FUSE_FLUSH:
        case FUSE_FSYNC:
        case FUSE_FALLOCATE:
        case FUSE_LSEEK:
        case FUSE_READDIR:
        case FUSE_READDIRPLUS:
        case FUSE_RELEASEDIR:
        case FUSE_FSYNCDIR:
            map_u64(args, arglen, 0, fhs, n_fhs);
            break;
        case FUSE_GETATTR:
        case FUSE_SETATTR:
            map_u64(args, arglen, 8, fhs, n_fhs);
            break;
        case FUSE_COPY_FILE_RANGE:
            map_u64(args, arglen, 0, fhs, n_fhs);
            map_u64(args, arglen, 24, fhs, n_fhs);
            break;
        }
    }
    memcpy(req, &h, sizeof(h));
}

static void remember(uint64_t *ids, unsigned *n, uint64_t id)
{
    if (*n < MAX_IDS)
        ids[(*n)++] = id;
}

/* Notes the nodeids and fhs a successful reply hands out. */
static void harvest(uint32_t opcode, const uint8_t *reply, size_t len)
{
    const size_t hdr = sizeof(struct fuse_out_header);
    switch (opcode) {
    case FUSE_LOOKUP:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_SYMLINK:
    case FUSE_LINK:
    case FUSE_CREATE:
        if (len >= hdr + sizeof(struct fuse_entry_out)) {
            struct fuse_entry_out e;
            memcpy(&e, reply + hdr, sizeof(e));
            if (e.nodeid)
                remember(nodeids, &n_nodeids, e.nodeid);
        }
        if (opcode == FUSE_CREATE &&
            len >= hdr + sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out)) {
            struct fuse_open_out o;
            memcpy(&o, reply + hdr + sizeof(struct fuse_entry_out), sizeof(o));
            remember(fhs, &n_fhs, o.fh);
        }
        break;
    case FUSE_OPEN:
    case FUSE_OPENDIR:
        if (len >= hdr + sizeof(struct fuse_open_out)) {
            struct fuse_open_out o;
            memcpy(&o, reply + hdr, sizeof(o));
            remember(fhs, &n_fhs, o.fh);
        }
        break;
    }
}

/* ---- one request ------------------------------------------------------------------------------
 */

static uint8_t reqbuf[65536];
static uint8_t replybuf[1 << 20];

static void serve(const uint8_t *req, uint32_t req_len, const uint32_t *rd_cuts, unsigned n_rd,
                  uint32_t wr_size, const uint32_t *wr_cuts, unsigned n_wr)
{
    elem->head = 0;
    elem->rd_num = elem->wr_num = 0;
    elem->rd_len = elem->wr_len = 0;
    add_segments(req, req_len, rd_cuts, n_rd, false);
    add_segments(NULL, wr_size, wr_cuts, n_wr, true);

    struct fuse_in_header in = {0};
    bool has_hdr = req_len >= sizeof(in);
    if (has_hdr)
        memcpy(&in, req, sizeof(in));

    rcu_read_lock();
    uint32_t ret = fuse_session_process(se, scratch, elem, NULL);
    rcu_read_unlock();
    /* As a queue worker does between requests, and before it waits (its queue is empty). */
    fuse_session_quiescent(se);
    fuse_session_idle(se);
    /* The request ran with the caller's fsuid/fsgid on this thread; back to root for the
     * harness's own file system work (a worker thread never does any). */
    FUZZ_CHECK(creds_set(0, 0) == 0, "cannot reset the fs credentials");

    FUZZ_CHECK(ret <= elem->wr_len, "reply of %u bytes in a %zu-byte buffer", ret, elem->wr_len);
    FUZZ_CHECK(ret == 0 || ret >= sizeof(struct fuse_out_header), "a %u-byte reply", ret);
    if (!has_hdr)
        FUZZ_CHECK(ret == 0, "a %u-byte reply to a request without a header", ret);
    if (in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET || in.opcode == FUSE_INTERRUPT)
        FUZZ_CHECK(ret == 0, "a %u-byte reply to no-reply opcode %u", ret, in.opcode);
    if (ret >= sizeof(struct fuse_out_header)) {
        gather_reply(replybuf, ret);
        struct fuse_out_header out;
        memcpy(&out, replybuf, sizeof(out));
        FUZZ_CHECK(out.len == ret, "out.len %u, returned %u", out.len, ret);
        FUZZ_CHECK(out.unique == in.unique, "unique %llu answered as %llu",
                   (unsigned long long)in.unique, (unsigned long long)out.unique);
        FUZZ_CHECK(out.error <= 0 && out.error > -4096, "error %d", out.error);
        FUZZ_CHECK(out.error == 0 || out.len == sizeof(out), "error %d with %u bytes", out.error,
                   out.len);
        if (out.error == 0)
            harvest(in.opcode, replybuf, ret);
    }
    free_segments();
}

static void send_init(void)
{
    struct {
        struct fuse_in_header h;
        struct fuse_init_in i;
    } req = {
        .h = {.len = sizeof(req), .opcode = FUSE_INIT, .unique = 1, .nodeid = 0},
        .i = {.major = FUSE_KERNEL_VERSION,
              .minor = FUSE_KERNEL_MINOR_VERSION,
              .max_readahead = 128 * 1024,
              .flags = 0xffffffffu,
              .flags2 = 0xffffffffu},
    };
    uint32_t none[1] = {0};
    serve((const uint8_t *)&req, sizeof(req), none, 0, 4096, none, 0);
    FUZZ_CHECK(fuse_session_initialized(se), "the harness's INIT was refused");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    n_nodeids = n_fhs = 0;
    remember(nodeids, &n_nodeids, FUSE_ROOT_ID);
    send_init();

    for (unsigned r = 0; r < MAX_REQUESTS && in.left > 0; r++) {
        uint8_t flags = fuzz_u8(&in);
        unsigned n_rd = fuzz_u8(&in) % MAX_SEGS;
        unsigned n_wr = fuzz_u8(&in) % MAX_SEGS;
        uint32_t wr_size = fuzz_u16(&in);
        uint32_t req_len = fuzz_u16(&in);
        uint32_t rd_cuts[MAX_SEGS], wr_cuts[MAX_SEGS];
        for (unsigned i = 0; i < n_rd; i++)
            rd_cuts[i] = fuzz_u16(&in);
        for (unsigned i = 0; i < n_wr; i++)
            wr_cuts[i] = fuzz_u16(&in);
        if (flags & 8)
            wr_size *= 16;
        if (flags & 16)
            wr_size = 0;
        const uint8_t *p;
        req_len = (uint32_t)fuzz_bytes(&in, req_len, &p);
        memcpy(reqbuf, p, req_len);
        fixup(reqbuf, req_len, flags);
        serve(reqbuf, req_len, rd_cuts, n_rd, wr_size, wr_cuts, n_wr);
    }

    /*
     * Back to the state before the input: no inode, no handle, the share as made. Inside a
     * read-side section pt_reset() leaves the fds to the call_rcu thread instead of waiting
     * for it in rcu_barrier(), which takes some 10 ms (the thread batches); so the strict fd
     * check runs only every BARRIER_EVERY inputs, after an rcu_barrier() of our own.
     */
    rcu_read_lock();
    fuse_session_reset(se);
    rcu_read_unlock();
    fuse_session_idle(se); /* the released handles' fds, as an idle worker closes them */
    fuzz_check_confinement();
    fuzz_restore_share();
    static unsigned inputs;
    if (++inputs % BARRIER_EVERY == 0 || getenv("FUZZ_STRICT_FDS")) {
        rcu_barrier();
        int fds = fuzz_count_fds();
        if (fds != base_fds)
            fuzz_list_fds();
        FUZZ_CHECK(fds == base_fds,
                   "%d fds open after the input, %d before (a leak in this input or one of the "
                   "%u before it; FUZZ_STRICT_FDS=1 checks every input)",
                   fds, base_fds, BARRIER_EVERY - 1);
    }
    return 0;
}
