/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE session's state for DEVICE_STATE (see include/session_state.h): the byte format,
 * written by SAVE and read, bounded and checked by LOAD. What goes in it is collected from and
 * installed into the passthrough by src/pt_state.c, and INIT's results by fuse_server.c.
 *
 * THE STREAM (format version 1). Integers are little-endian; nothing is aligned.
 *
 *   header
 *     magic       8 bytes   "VFSDST\r\n" (the Rust virtiofsd's stream starts with its own
 *                           serialisation's version tag, a small integer: never 'V')
 *     version     u32       1; a reader refuses any other
 *     header_len  u32       bytes of the whole header, 18 + writer_len .. 4096; a reader skips
 *                           what it does not know after the writer
 *     writer_len  u16, writer (bytes)   who wrote it, e.g. "virtiofsd 0.1.0 (C)"; for logs only
 *   sections, one after another, the last one END:
 *     type        u32
 *     flags       u32       bit 0 CRITICAL: a reader that does not know the type must fail (it
 *                           would drop state the guest relies on); without it, it skips the
 *                           section. Other bits 0.
 *     length      u64       payload bytes that follow
 *     payload
 *
 *   1 INIT (critical), 32 bytes: what FUSE INIT agreed; the guest does not send INIT again
 *       u32 initialized (0: the guest never mounted; then only the root and no handle may
 *       follow), u32 major, u32 minor, u32 max_write, u32 max_pages, u32 reserved (0),
 *       u64 flags (the FUSE_* flags agreed, flags2 in the high half)
 *   2 COUNTERS (critical), 16 bytes: u64 last nodeid handed out, u64 last fh handed out
 *   3 INODES (critical): u64 count, then count records
 *       u64 nodeid, u64 lookup count, u64 st_dev, u64 st_ino, u32 mode (the S_IFMT bits),
 *       u32 flags (bit 0 LOST: not found by the source, no path follows), u32 ncomp, then ncomp
 *       names, each u16 length and that many bytes: the path from the share's root. Names are
 *       bytes (not necessarily UTF-8), 1..255 of them, with neither '/' nor NUL, never "." or
 *       ".."; the root (nodeid 1, always present) has none.
 *   4 HANDLES (critical): u64 count, then count records
 *       u64 fh, u64 nodeid, u32 kind (0 file, 1 directory), u32 open flags, this format's own
 *       bits (not the host's O_* values, which differ between architectures): bits 0-1 the
 *       access mode (0 read, 1 write, 2 both), 2 APPEND, 3 DIRECT, 4 DSYNC, 5 SYNC, 6 NOATIME,
 *       7 NONBLOCK, 8 TRUNC, 9 CREAT, 10 EXCL (the last three are dropped when reopening)
 *   5 LOCKS (critical; written only when the guest holds a lock, so that a stream without
 *       locks stays readable by a reader that knows no locks; critical because dropping a
 *       held lock silently would break the guest):
 *       u64 owner count (at most 4096), then per POSIX lock owner:
 *         u64 nodeid, u64 owner (the guest's lock owner id), u64 fh (the handle it last locked
 *         through; it must be a handle of that inode), u32 pid (the guest pid GETLK reports),
 *         u32 reserved (0), u64 range count, then per range: u64 start, u64 end (inclusive,
 *         start <= end <= 2^63 - 1, which means to the end of the file), u32 type (0 read,
 *         1 write)
 *       u64 flock count (at most the handle count), then per flock: u64 fh, u32 type (0
 *       shared, 1 exclusive); one per handle at most
 *       No owner twice on one inode; all ranges together at most 2^20.
 *   6 FILE_HANDLES (critical; written only by a source in --migration-mode=file-handles, so
 *       a stream without it stays readable by a reader that knows no file handles; critical
 *       because an inode saved with a handle may have no path): u64 fsid (statfs f_fsid of the
 *       share's file system, as two u32 halves: the handles are valid on it alone), u64
 *       count (at most the inode count), then per inode that has one: u64 nodeid (a saved
 *       inode; the root's is required), u32 handle_type (at most 2^31 - 1), u16 length
 *       (1..128), the handle's bytes (as name_to_handle_at gave them). An inode with a handle
 *       may be LOST as far as its path goes: found by its handle alone.
 *   7 PASSED_FDS (critical; written only by the SAVE of a planned upgrade's handover to a new
 *       process on the same host (handover.c), never by a DEVICE_STATE SAVE; read only by
 *       the handover's LOAD, which has the fds that came beside the stream: every other LOAD
 *       refuses it, so a stream from a VMM can never make the daemon take an fd for an inode):
 *       u64 count (1..65536, at most the inode count), then per inode that has no path in the
 *       share (unlinked while the guest holds it, or not found by the walk) and travels as its
 *       own O_PATH fd instead: u64 nodeid (a saved inode, LOST, with a known type, not the
 *       root), u32 index (into the fds that came with the stream; each index once, and every
 *       fd named). The fd must be of that very inode (st_dev, st_ino, type) and on the share's
 *       file system; the LOAD installs the inode from a dup of it and reopens the inode's
 *       handles from it. In a handover's stream a LOST inode not named here was gone in the
 *       old process too (no fd or file handle of it opened): the LOAD keeps it lost (EIO)
 *       instead of failing.
 *   0xffff END (critical), 0 bytes: the end; nothing may follow it
 * Each type appears at most once; INIT, COUNTERS, INODES, HANDLES and END are required.
 *
 * LOAD reads the whole stream into memory first (at most STATE_MAX_BYTES), parses it with a
 * bound on every count and length (a count is checked against the bytes that are left before
 * anything is allocated for it), checks it (pt_state_check, fuse_session_check_init), and only
 * then resets the session and installs it. Any failure resets the session to a fresh one
 * waiting for INIT, and is logged as one line naming the reason.
 */
#include "session_state.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse_server.h"
#include "log.h"
#include "state_buf.h"
#include "options.h"
#include "pt_state.h"
#include "state_rust.h"

#define STATE_MAGIC      "VFSDST\r\n"
#define STATE_VERSION    1
#define STATE_HEADER_MAX 4096
#define STATE_WRITER_MAX 256
#define STATE_MAX_BYTES  (1ul << 30) /* 16M inodes with their paths fit with room to spare */
#define CRITICAL         1u
#define INODE_LOST       1u
#define INODE_RECORD_MIN 44 /* a record with no name */
#define HANDLE_RECORD    24
#define OWNER_RECORD_MIN 40 /* an owner with no range */
#define RANGE_RECORD     20
#define FLOCK_RECORD     12
#define FH_RECORD_MIN    15 /* a handle of one byte */
#define PASSED_RECORD    12

_Static_assert(SESSION_STATE_MAX_FDS == PT_STATE_MAX_PASSED_FDS, "one bound on passed fds");
#define STATE_LOCK_READ  0
#define STATE_LOCK_WRITE 1
#define PATH_MAX_COMPS   (PATH_MAX / 2)

enum section_type {
    SEC_INIT = 1,
    SEC_COUNTERS = 2,
    SEC_INODES = 3,
    SEC_HANDLES = 4,
    SEC_LOCKS = 5,
    SEC_FILE_HANDLES = 6,
    SEC_PASSED_FDS = 7,
    SEC_END = 0xffff,
};

/* This format's open flags (see above). */
enum {
    SF_ACC_MASK = 3,
    SF_APPEND = 1 << 2,
    SF_DIRECT = 1 << 3,
    SF_DSYNC = 1 << 4,
    SF_SYNC = 1 << 5,
    SF_NOATIME = 1 << 6,
    SF_NONBLOCK = 1 << 7,
    SF_TRUNC = 1 << 8,
    SF_CREAT = 1 << 9,
    SF_EXCL = 1 << 10,
    SF_ALL = (1 << 11) - 1,
};

static const struct {
    uint32_t ours;
    int host;
} flag_map[] = {
    {SF_APPEND, O_APPEND},     {SF_DIRECT, O_DIRECT}, {SF_NOATIME, O_NOATIME},
    {SF_NONBLOCK, O_NONBLOCK}, {SF_TRUNC, O_TRUNC},   {SF_CREAT, O_CREAT},
    {SF_EXCL, O_EXCL},
};

static uint32_t flags_to_stream(uint32_t host)
{
    uint32_t f = (uint32_t)(host & O_ACCMODE); /* O_RDONLY 0, O_WRONLY 1, O_RDWR 2 everywhere */

    for (size_t i = 0; i < sizeof(flag_map) / sizeof(flag_map[0]); i++)
        if (host & (uint32_t)flag_map[i].host)
            f |= flag_map[i].ours;
    /* O_SYNC contains O_DSYNC's bit. */
    if ((host & (uint32_t)O_SYNC) == (uint32_t)O_SYNC)
        f |= SF_SYNC;
    else if (host & (uint32_t)O_DSYNC)
        f |= SF_DSYNC;
    return f;
}

/* -1 for bits this version does not know, or access mode 3. */
static int flags_from_stream(uint32_t f)
{
    int host;

    if ((f & ~(uint32_t)SF_ALL) || (f & SF_ACC_MASK) == SF_ACC_MASK)
        return -1;
    host = (int)(f & SF_ACC_MASK);
    for (size_t i = 0; i < sizeof(flag_map) / sizeof(flag_map[0]); i++)
        if (f & flag_map[i].ours)
            host |= flag_map[i].host;
    if (f & SF_SYNC)
        host |= O_SYNC;
    if (f & SF_DSYNC)
        host |= O_DSYNC;
    return host;
}

/* ---- writing -------------------------------------------------------------------------------- */

static void put_u16(struct state_buf *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

    state_buf_put(w, b, sizeof(b));
}

static void put_u32(struct state_buf *w, uint32_t v)
{
    put_u16(w, (uint16_t)v);
    put_u16(w, (uint16_t)(v >> 16));
}

static void put_u64(struct state_buf *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

/* Starts a section; returns where its length goes, for end_section. */
static size_t begin_section(struct state_buf *w, uint32_t type)
{
    size_t at;

    put_u32(w, type);
    put_u32(w, CRITICAL);
    at = w->len;
    put_u64(w, 0);
    return at;
}

static void end_section(struct state_buf *w, size_t at)
{
    uint64_t len = w->len - at - 8;

    if (w->err)
        return;
    for (int i = 0; i < 8; i++)
        w->p[at + i] = (uint8_t)(len >> (8 * i));
}

static void put_header(struct state_buf *w)
{
    size_t writer = strlen(VFS_VERSION_STRING);

    state_buf_put(w, STATE_MAGIC, 8);
    put_u32(w, STATE_VERSION);
    put_u32(w, (uint32_t)(18 + writer));
    put_u16(w, (uint16_t)writer);
    state_buf_put(w, VFS_VERSION_STRING, writer);
}

static void put_init(struct state_buf *w, bool initialized, const struct fuse_session_init *init)
{
    size_t at = begin_section(w, SEC_INIT);

    put_u32(w, initialized);
    put_u32(w, init->major);
    put_u32(w, init->minor);
    put_u32(w, init->max_write);
    put_u32(w, init->max_pages);
    put_u32(w, 0);
    put_u64(w, init->flags);
    end_section(w, at);
}

/* The path's names, each length-prefixed (the path holds plain names joined by '/'). */
static void put_path(struct state_buf *w, const char *path)
{
    uint32_t n = 0;

    for (const char *p = path; *p; p++)
        n += p == path || p[-1] == '/';
    put_u32(w, n);
    while (*path) {
        const char *slash = strchr(path, '/');
        size_t len = slash ? (size_t)(slash - path) : strlen(path);

        put_u16(w, (uint16_t)len);
        state_buf_put(w, path, len);
        path += len + (slash != NULL);
    }
}

static void put_inodes(struct state_buf *w, const struct pt_state *st)
{
    size_t at = begin_section(w, SEC_INODES);

    put_u64(w, st->n_inodes);
    for (size_t i = 0; i < st->n_inodes; i++) {
        const struct pt_state_inode *in = &st->inodes[i];

        put_u64(w, in->nodeid);
        put_u64(w, in->nlookup);
        put_u64(w, in->dev);
        put_u64(w, in->ino);
        put_u32(w, in->type);
        put_u32(w, in->lost ? INODE_LOST : 0);
        if (in->lost)
            put_u32(w, 0);
        else
            put_path(w, pt_state_path(st, in));
    }
    end_section(w, at);
}

static void put_handles(struct state_buf *w, const struct pt_state *st)
{
    size_t at = begin_section(w, SEC_HANDLES);

    put_u64(w, st->n_handles);
    for (size_t i = 0; i < st->n_handles; i++) {
        const struct pt_state_handle *h = &st->handles[i];

        put_u64(w, h->fh);
        put_u64(w, h->nodeid);
        put_u32(w, h->dir);
        put_u32(w, flags_to_stream(h->flags));
    }
    end_section(w, at);
}

static void put_locks(struct state_buf *w, const struct pt_state *st)
{
    size_t at;

    if (!st->n_owners && !st->n_flocks)
        return;
    at = begin_section(w, SEC_LOCKS);
    put_u64(w, st->n_owners);
    for (size_t i = 0; i < st->n_owners; i++) {
        const struct pt_state_owner *o = &st->owners[i];

        put_u64(w, o->nodeid);
        put_u64(w, o->owner);
        put_u64(w, o->fh);
        put_u32(w, o->pid);
        put_u32(w, 0);
        put_u64(w, o->n);
        for (size_t j = o->first; j < o->first + o->n; j++) {
            put_u64(w, st->ranges[j].start);
            put_u64(w, st->ranges[j].end);
            put_u32(w, st->ranges[j].write ? STATE_LOCK_WRITE : STATE_LOCK_READ);
        }
    }
    put_u64(w, st->n_flocks);
    for (size_t i = 0; i < st->n_flocks; i++) {
        put_u64(w, st->flocks[i].fh);
        put_u32(w, st->flocks[i].write ? STATE_LOCK_WRITE : STATE_LOCK_READ);
    }
    end_section(w, at);
}

static void put_fhs(struct state_buf *w, const struct pt_state *st)
{
    size_t at;

    if (!st->has_fhs)
        return;
    at = begin_section(w, SEC_FILE_HANDLES);
    put_u64(w, st->fsid);
    put_u64(w, st->n_fhs);
    for (size_t i = 0; i < st->n_fhs; i++) {
        const struct pt_state_fh *f = &st->fhs[i];

        put_u64(w, f->nodeid);
        put_u32(w, (uint32_t)f->type);
        put_u16(w, (uint16_t)f->len);
        state_buf_put(w, st->fh_bytes + f->off, f->len);
    }
    end_section(w, at);
}

static void put_passed(struct state_buf *w, const struct pt_state *st)
{
    size_t at;

    if (!st->n_passed)
        return;
    at = begin_section(w, SEC_PASSED_FDS);
    put_u64(w, st->n_passed);
    for (size_t i = 0; i < st->n_passed; i++) {
        put_u64(w, st->passed[i].nodeid);
        put_u32(w, st->passed[i].index);
    }
    end_section(w, at);
}

static void encode(struct state_buf *w, bool initialized, const struct fuse_session_init *init,
                   const struct pt_state *st)
{
    size_t at;

    put_header(w);
    put_init(w, initialized, init);
    at = begin_section(w, SEC_COUNTERS);
    put_u64(w, st->last_nodeid);
    put_u64(w, st->last_fh);
    end_section(w, at);
    put_inodes(w, st);
    put_handles(w, st);
    put_locks(w, st);
    put_fhs(w, st);
    put_passed(w, st);
    end_section(w, begin_section(w, SEC_END));
}

/* Writes all of buf, waiting whenever the fd (a pipe, perhaps non-blocking) is full. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};

            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                return -errno;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* SAVE; fds non-NULL: a handover's (see session_state.h), whose passed fds go to *fds. */
static int save(struct fuse_session *se, int fd, int **fds, size_t *nfds)
{
    struct fuse_session_init init;
    bool initialized = fuse_session_get_init(se, &init);
    struct state_buf w = {.max = STATE_MAX_BYTES};
    struct pt_state st;
    int ret;

    pt_state_init(&st);
    st.pass_fds = fds != NULL;
    ret = pt_state_collect(fuse_session_fs(se), &st);
    if (ret == 0)
        ret = pt_locks_collect(fuse_session_fs(se), &st);
    /* A handover is between two processes of this daemon: always our format, the only one
     * that carries passed fds. */
    if (ret == 0 && !fds &&
        pt_get_config(fuse_session_fs(se))->migration_format == MIGRATION_FORMAT_RUST) {
        ret = rust_state_encode(&st, initialized, &init,
                                pt_get_config(fuse_session_fs(se))->migration_on_error ==
                                    MIGRATION_ERROR_GUEST_ERROR,
                                &w.p, &w.len);
    } else if (ret == 0) {
        encode(&w, initialized, &init, &st);
        ret = w.err;
        if (ret < 0)
            snprintf(st.why, sizeof(st.why), "encoding: %s", strerror(-ret));
    }
    if (ret == 0) {
        ret = write_all(fd, w.p, w.len);
        if (ret < 0)
            snprintf(st.why, sizeof(st.why), "writing: %s", strerror(-ret));
    }
    if (ret < 0)
        log_error("migration: saving the session state failed: %s", st.why);
    else
        log_info("migration: session state saved: %zu inodes (%zu passed as fds), %zu handles, "
                 "%zu lock owners, %zu flocks, %zu bytes",
                 st.n_inodes, st.n_passed, st.n_handles, st.n_owners, st.n_flocks, w.len);
    if (ret == 0 && fds)
        *nfds = pt_state_take_fds(&st, fds);
    free(w.p);
    pt_state_free(&st); /* closes the passed fds on failure */
    return ret;
}

int fuse_session_state_save(struct fuse_session *se, int fd)
{
    return save(se, fd, NULL, NULL);
}

int fuse_session_state_save_handover(struct fuse_session *se, int fd, int **fds, size_t *nfds)
{
    *fds = NULL;
    *nfds = 0;
    return save(se, fd, fds, nfds);
}

/* ---- reading -------------------------------------------------------------------------------- */

/* Reads fd to its end into *out (at most STATE_MAX_BYTES). */
static int read_all(int fd, uint8_t **out, size_t *len, char *why, size_t whylen)
{
    size_t cap = 0, n = 0;
    uint8_t *buf = NULL;

    for (;;) {
        ssize_t got;

        if (n == cap) {
            uint8_t *q = NULL;

            cap = cap ? cap * 2 : 65536;
            if (cap > STATE_MAX_BYTES + 1)
                cap = STATE_MAX_BYTES + 1;
            if (n == cap || !(q = realloc(buf, cap))) {
                free(buf);
                snprintf(why, whylen,
                         n == cap ? "the stream is larger than %lu bytes"
                                  : "out of memory reading the stream",
                         STATE_MAX_BYTES);
                return n == cap ? -EFBIG : -ENOMEM;
            }
            buf = q;
        }
        got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLIN};

            if (poll(&p, 1, -1) >= 0 || errno == EINTR)
                continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int err = -errno;

            free(buf);
            snprintf(why, whylen, "reading the stream: %s", strerror(-err));
            return err;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A bounded reader over bytes in memory. */
struct rd {
    const uint8_t *p;
    size_t left;
};

static bool get(struct rd *r, void *out, size_t n)
{
    if (r->left < n)
        return false;
    if (out)
        memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

static bool get_u16(struct rd *r, uint16_t *v)
{
    uint8_t b[2];

    if (!get(r, b, 2))
        return false;
    *v = (uint16_t)(b[0] | b[1] << 8);
    return true;
}

static bool get_u32(struct rd *r, uint32_t *v)
{
    uint16_t lo, hi;

    if (!get_u16(r, &lo) || !get_u16(r, &hi))
        return false;
    *v = lo | (uint32_t)hi << 16;
    return true;
}

static bool get_u64(struct rd *r, uint64_t *v)
{
    uint32_t lo, hi;

    if (!get_u32(r, &lo) || !get_u32(r, &hi))
        return false;
    *v = lo | (uint64_t)hi << 32;
    return true;
}

/* What a parse found. */
struct loaded {
    bool initialized;
    struct fuse_session_init init;
    struct pt_state st;
    unsigned seen; /* bit per section type seen (END as bit 0) */
    char writer[STATE_WRITER_MAX + 1];
};

static int bad(struct loaded *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct loaded *l, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(l->st.why, sizeof(l->st.why), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int parse_header(struct rd *r, struct loaded *l)
{
    char magic[8];
    uint32_t version, hlen;
    uint16_t wlen;
    struct rd h;

    if (!get(r, magic, 8) || memcmp(magic, STATE_MAGIC, 8) != 0)
        return bad(l, "not a state stream of this daemon (bad magic)");
    if (!get_u32(r, &version) || version != STATE_VERSION)
        return bad(l, "unknown state format version %u (this daemon reads %u)", version,
                   STATE_VERSION);
    if (!get_u32(r, &hlen) || hlen < 18 || hlen > STATE_HEADER_MAX || hlen - 16 > r->left)
        return bad(l, "truncated or invalid header");
    h = (struct rd){r->p, hlen - 16};
    get(r, NULL, hlen - 16);
    if (!get_u16(&h, &wlen) || wlen > STATE_WRITER_MAX || !get(&h, l->writer, wlen))
        return bad(l, "invalid header (writer name)");
    l->writer[wlen] = '\0';
    for (char *c = l->writer; *c; c++) /* for the log: one line of printable bytes */
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    return 0;
}

static int parse_init(struct rd *r, struct loaded *l)
{
    uint32_t initialized, reserved;
    struct fuse_session_init *in = &l->init;

    if (r->left != 32)
        return bad(l, "INIT section of %zu bytes, not 32", r->left);
    get_u32(r, &initialized);
    get_u32(r, &in->major);
    get_u32(r, &in->minor);
    get_u32(r, &in->max_write);
    get_u32(r, &in->max_pages);
    get_u32(r, &reserved);
    get_u64(r, &in->flags);
    if (initialized > 1 || reserved)
        return bad(l, "invalid INIT section");
    l->initialized = initialized;
    return 0;
}

static int parse_counters(struct rd *r, struct loaded *l)
{
    if (r->left != 16)
        return bad(l, "COUNTERS section of %zu bytes, not 16", r->left);
    get_u64(r, &l->st.last_nodeid);
    get_u64(r, &l->st.last_fh);
    return 0;
}

/* A count of records of at least min bytes each: bounded by what is left, checked first. */
static int get_count(struct rd *r, struct loaded *l, size_t min, size_t max, const char *what,
                     uint64_t *n)
{
    if (!get_u64(r, n))
        return bad(l, "truncated %s section", what);
    if (*n > max || *n > r->left / min)
        return bad(l, "%s count %llu is more than the section can hold or this daemon accepts",
                   what, (unsigned long long)*n);
    return 0;
}

/* The path of one inode record: ncomp names into buf, joined by '/'. */
static int parse_path(struct rd *r, struct loaded *l, uint64_t nodeid, char *buf, size_t *len)
{
    uint32_t ncomp;

    *len = 0;
    if (!get_u32(r, &ncomp) || ncomp > PATH_MAX_COMPS)
        return bad(l, "inode %llu: truncated, or a path of too many names",
                   (unsigned long long)nodeid);
    for (uint32_t i = 0; i < ncomp; i++) {
        const uint8_t *name;
        uint16_t n;

        if (!get_u16(r, &n) || n > r->left)
            return bad(l, "inode %llu: truncated path", (unsigned long long)nodeid);
        name = r->p;
        get(r, NULL, n);
        if (n == 0 || n > NAME_MAX || memchr(name, '/', n) || memchr(name, '\0', n) ||
            (n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
            return bad(l,
                       "inode %llu: path with an empty, \".\", \"..\" or too long name, or a "
                       "name containing '/' or NUL",
                       (unsigned long long)nodeid);
        if (*len + (i > 0) + n >= PATH_MAX)
            return bad(l, "inode %llu: path too long", (unsigned long long)nodeid);
        if (i > 0)
            buf[(*len)++] = '/';
        memcpy(buf + *len, name, n);
        *len += n;
    }
    buf[*len] = '\0';
    return 0;
}

static int parse_inodes(struct rd *r, struct loaded *l)
{
    uint64_t count = 0;
    char path[PATH_MAX];
    int ret = get_count(r, l, INODE_RECORD_MIN, PT_STATE_MAX_INODES, "INODES", &count);

    for (uint64_t i = 0; ret == 0 && i < count; i++) {
        struct pt_state_inode in = {0};
        uint32_t flags;
        size_t len;

        if (!get_u64(r, &in.nodeid) || !get_u64(r, &in.nlookup) || !get_u64(r, &in.dev) ||
            !get_u64(r, &in.ino) || !get_u32(r, &in.type) || !get_u32(r, &flags))
            return bad(l, "truncated INODES section");
        if (flags & ~INODE_LOST)
            return bad(l, "inode %llu: unknown flags 0x%x", (unsigned long long)in.nodeid, flags);
        in.lost = flags & INODE_LOST;
        ret = parse_path(r, l, in.nodeid, path, &len);
        if (ret == 0 && in.lost && len)
            ret = bad(l, "inode %llu: lost, with a path", (unsigned long long)in.nodeid);
        if (ret == 0 && pt_state_add_inode(&l->st, &in, path, len) < 0)
            ret = bad(l, "out of memory");
    }
    if (ret == 0 && r->left)
        ret = bad(l, "%zu stray bytes after the INODES records", r->left);
    return ret;
}

static int parse_handles(struct rd *r, struct loaded *l)
{
    uint64_t count = 0;
    int ret = get_count(r, l, HANDLE_RECORD, PT_STATE_MAX_HANDLES, "HANDLES", &count);

    for (uint64_t i = 0; ret == 0 && i < count; i++) {
        struct pt_state_handle h = {0};
        uint32_t kind, flags;
        int host;

        if (!get_u64(r, &h.fh) || !get_u64(r, &h.nodeid) || !get_u32(r, &kind) ||
            !get_u32(r, &flags))
            return bad(l, "truncated HANDLES section");
        host = flags_from_stream(flags);
        if (kind > 1 || host < 0)
            return bad(l, "handle %llu: unknown kind %u or open flags 0x%x",
                       (unsigned long long)h.fh, kind, flags);
        h.dir = kind == 1;
        h.flags = (uint32_t)host;
        if (pt_state_add_handle(&l->st, &h) < 0)
            return bad(l, "out of memory");
    }
    if (ret == 0 && r->left)
        ret = bad(l, "%zu stray bytes after the HANDLES records", r->left);
    return ret;
}

static int parse_fhs(struct rd *r, struct loaded *l)
{
    uint64_t count = 0;
    int ret;

    if (!get_u64(r, &l->st.fsid))
        return bad(l, "truncated FILE_HANDLES section");
    ret = get_count(r, l, FH_RECORD_MIN, PT_STATE_MAX_INODES, "FILE_HANDLES", &count);
    l->st.has_fhs = true;
    for (uint64_t i = 0; ret == 0 && i < count; i++) {
        struct pt_state_fh f = {0};
        uint32_t type;
        uint16_t len;
        const uint8_t *bytes;

        if (!get_u64(r, &f.nodeid) || !get_u32(r, &type) || !get_u16(r, &len) || len > r->left)
            return bad(l, "truncated FILE_HANDLES section");
        bytes = r->p;
        get(r, NULL, len);
        if (type > INT32_MAX || len == 0 || len > PT_STATE_FH_MAX)
            return bad(l, "inode %llu: file handle of type %u and %u bytes",
                       (unsigned long long)f.nodeid, type, len);
        f.type = (int32_t)type;
        f.len = len;
        if (pt_state_add_fh(&l->st, &f, bytes) < 0)
            return bad(l, "out of memory");
    }
    if (ret == 0 && r->left)
        ret = bad(l, "%zu stray bytes after the FILE_HANDLES records", r->left);
    return ret;
}

static int parse_passed(struct rd *r, struct loaded *l)
{
    uint64_t count = 0;
    int ret;

    /* Only a handover's LOAD has fds beside the stream; a VMM's DEVICE_STATE never does. */
    if (!l->st.fds_given)
        return bad(l, "a handover's PASSED_FDS section in a stream that came without fds: "
                      "refused");
    ret = get_count(r, l, PASSED_RECORD, PT_STATE_MAX_PASSED_FDS, "PASSED_FDS", &count);
    if (ret == 0 && count == 0)
        ret = bad(l, "an empty PASSED_FDS section");
    for (uint64_t i = 0; ret == 0 && i < count; i++) {
        struct pt_state_passed p;

        if (!get_u64(r, &p.nodeid) || !get_u32(r, &p.index))
            return bad(l, "truncated PASSED_FDS section");
        if (pt_state_add_passed(&l->st, &p) < 0)
            return bad(l, "out of memory");
    }
    if (ret == 0 && r->left)
        ret = bad(l, "%zu stray bytes after the PASSED_FDS records", r->left);
    return ret;
}

static int parse_lock_type(struct rd *r, struct loaded *l, bool *write)
{
    uint32_t type;

    if (!get_u32(r, &type))
        return bad(l, "truncated LOCKS section");
    if (type != STATE_LOCK_READ && type != STATE_LOCK_WRITE)
        return bad(l, "unknown lock type %u", type);
    *write = type == STATE_LOCK_WRITE;
    return 0;
}

static int parse_owner(struct rd *r, struct loaded *l)
{
    struct pt_state_owner o = {0};
    uint32_t reserved;
    uint64_t n = 0;
    int ret;

    if (!get_u64(r, &o.nodeid) || !get_u64(r, &o.owner) || !get_u64(r, &o.fh) ||
        !get_u32(r, &o.pid) || !get_u32(r, &reserved))
        return bad(l, "truncated LOCKS section");
    if (reserved)
        return bad(l, "lock owner %llu: reserved field %u", (unsigned long long)o.owner, reserved);
    ret = get_count(r, l, RANGE_RECORD, PT_STATE_MAX_RANGES - l->st.n_ranges, "lock range", &n);
    if (ret == 0 && pt_state_add_owner(&l->st, &o) < 0)
        ret = bad(l, "out of memory");
    for (uint64_t i = 0; ret == 0 && i < n; i++) {
        struct pt_state_range rg = {0};

        if (!get_u64(r, &rg.start) || !get_u64(r, &rg.end))
            return bad(l, "truncated LOCKS section");
        ret = parse_lock_type(r, l, &rg.write);
        if (ret == 0 && pt_state_add_range(&l->st, &rg) < 0)
            ret = bad(l, "out of memory");
    }
    return ret;
}

static int parse_locks(struct rd *r, struct loaded *l)
{
    uint64_t count = 0;
    int ret = get_count(r, l, OWNER_RECORD_MIN, PT_STATE_MAX_OWNERS, "lock owner", &count);

    for (uint64_t i = 0; ret == 0 && i < count; i++)
        ret = parse_owner(r, l);
    if (ret == 0)
        ret = get_count(r, l, FLOCK_RECORD, PT_STATE_MAX_HANDLES, "flock", &count);
    for (uint64_t i = 0; ret == 0 && i < count; i++) {
        struct pt_state_flock f = {0};

        if (!get_u64(r, &f.fh))
            return bad(l, "truncated LOCKS section");
        ret = parse_lock_type(r, l, &f.write);
        if (ret == 0 && pt_state_add_flock(&l->st, &f) < 0)
            ret = bad(l, "out of memory");
    }
    if (ret == 0 && r->left)
        ret = bad(l, "%zu stray bytes after the LOCKS records", r->left);
    return ret;
}

static int parse_section(uint32_t type, struct rd *body, struct loaded *l)
{
    switch (type) {
    case SEC_INIT:
        return parse_init(body, l);
    case SEC_COUNTERS:
        return parse_counters(body, l);
    case SEC_INODES:
        return parse_inodes(body, l);
    case SEC_HANDLES:
        return parse_handles(body, l);
    case SEC_LOCKS:
        return parse_locks(body, l);
    case SEC_FILE_HANDLES:
        return parse_fhs(body, l);
    case SEC_PASSED_FDS:
        return parse_passed(body, l);
    case SEC_END:
        return body->left ? bad(l, "END section with a payload") : 0;
    }
    return 1; /* unknown */
}

static int parse_sections(struct rd *r, struct loaded *l)
{
    const unsigned required =
        1u << SEC_INIT | 1u << SEC_COUNTERS | 1u << SEC_INODES | 1u << SEC_HANDLES | 1u;

    while (!(l->seen & 1u)) {
        uint32_t type, flags;
        uint64_t len;
        unsigned bit;
        struct rd body;
        int ret;

        if (!get_u32(r, &type) || !get_u32(r, &flags) || !get_u64(r, &len))
            return bad(l, "truncated stream (no END section)");
        if (len > r->left)
            return bad(l, "section %u of %llu bytes, only %zu left", type, (unsigned long long)len,
                       r->left);
        if (flags & ~CRITICAL)
            return bad(l, "section %u has unknown flags 0x%x", type, flags);
        body = (struct rd){r->p, (size_t)len};
        get(r, NULL, (size_t)len);
        bit = type == SEC_END ? 1u : type >= 1 && type < 32 ? 1u << type : 0;
        if (bit && (l->seen & bit))
            return bad(l, "section %u appears twice", type);
        ret = parse_section(type, &body, l);
        if (ret < 0)
            return ret;
        if (ret > 0 && (flags & CRITICAL))
            return bad(l, "unknown critical section %u", type);
        l->seen |= bit;
    }
    if (r->left)
        return bad(l, "%zu bytes after the END section", r->left);
    if ((l->seen & required) != required)
        return bad(l, "a required section is missing");
    return 0;
}

/* Parses and checks a whole stream of our format; nothing is changed yet. */
static int parse(const uint8_t *buf, size_t len, struct loaded *l)
{
    struct rd r = {buf, len};
    int ret = parse_header(&r, l);

    if (ret == 0)
        ret = parse_sections(&r, l);
    if (ret == 0)
        ret = pt_state_check(&l->st);
    if (ret == 0 && !l->initialized && (l->st.n_inodes != 1 || l->st.n_handles || l->st.n_owners))
        ret = bad(l, "inodes or handles in the state of a session never initialized");
    return ret;
}

static int install(struct fuse_session *se, struct loaded *l)
{
    int ret = 0;

    if (l->initialized && fuse_session_check_init(se, &l->init) < 0) {
        snprintf(l->st.why, sizeof(l->st.why),
                 "the saved FUSE INIT (7.%u, flags 0x%llx) is not what this daemon offers with "
                 "its options",
                 l->init.minor, (unsigned long long)l->init.flags);
        return -EPROTO;
    }
    fuse_session_reset(se);
    if (!l->initialized)
        return 0; /* a fresh session: the guest will send INIT */
    ret = pt_state_install(fuse_session_fs(se), &l->st);
    if (ret == 0)
        ret = pt_locks_install(fuse_session_fs(se), &l->st);
    if (ret == 0)
        fuse_session_install_init(se, &l->init);
    return ret;
}

/* LOAD; fds_given: a handover's, with nfds fds (borrowed) beside the stream. */
static int load(struct fuse_session *se, int fd, bool fds_given, const int *fds, size_t nfds)
{
    struct loaded l = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    int ret;

    pt_state_init(&l.st);
    l.st.fds_given = fds_given;
    l.st.fds = (int *)fds; /* borrowed: pt_state_free leaves them alone (fds_given) */
    l.st.n_fds = fds_given ? nfds : 0;
    ret = read_all(fd, &buf, &len, l.st.why, sizeof(l.st.why));
    /* The Rust virtiofsd's stream starts with its version tag (0 or 1), ours with 'V'. */
    if (ret == 0 && rust_state_recognised(buf, len)) {
        snprintf(l.writer, sizeof(l.writer), "the Rust virtiofsd (its format)");
        ret = rust_state_parse(se, buf, len, &l.initialized, &l.init, &l.st);
    } else if (ret == 0) {
        ret = parse(buf, len, &l);
    }
    free(buf);
    if (ret == 0)
        ret = install(se, &l);
    if (ret < 0) {
        fuse_session_reset(se);
        log_error("migration: loading the session state failed: %s", l.st.why);
    } else {
        log_info("migration: session state loaded (written by %s): %zu inodes (%zu passed as "
                 "fds), %zu handles, %zu lock owners, %zu flocks",
                 l.writer, l.st.n_inodes, l.st.n_passed, l.st.n_handles, l.st.n_owners,
                 l.st.n_flocks);
    }
    pt_state_free(&l.st);
    return ret;
}

int fuse_session_state_load(struct fuse_session *se, int fd)
{
    return load(se, fd, false, NULL, 0);
}

int fuse_session_state_load_handover(struct fuse_session *se, int fd, const int *fds, size_t nfds)
{
    return load(se, fd, true, fds, nfds);
}
