/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Rust virtiofsd 1.13's migration stream (see include/state_rust.h), read and written from
 * what its source says (src/passthrough/device_state/serialized.rs, serialization.rs and
 * deserialization.rs of virtiofsd 1.13.2; the bytes are the `postcard` crate's, 1.0.x, as its
 * Cargo.lock pins). Written here from that description; nothing is copied.
 *
 * THE BYTES (postcard, no framing, no padding):
 *   u16/u32/u64/usize   LEB128 varint (7 bits a byte, low first; at most 3/5/10 bytes)
 *   i32                 zigzag ((n << 1) ^ (n >> 31)), then as u32
 *   bool                one byte, 0 or 1 (anything else is an error)
 *   Option<T>           one byte 0 (None) or 1 (Some) followed by T
 *   enum                the variant's index as a u32 varint, then its fields
 *   String, Vec<T>      usize length, then the bytes (UTF-8 for a String) or the elements
 *   HashMap<K, V>       usize count, then key, value pairs
 *   struct              its fields in order
 *
 * THE STATE
 *   PassthroughFs = enum { V1(PassthroughFsV1), V2(PassthroughFsV2) }; 1.13 writes V2
 *   PassthroughFsV1 = { inodes: Vec<Inode>, next_inode: u64, handles: Vec<Handle>,
 *                       next_handle: u64, negotiated_opts: { writeback, announce_submounts,
 *                       posix_acl, sup_group_extension: bool } }
 *   PassthroughFsV2 = { v1: PassthroughFsV1, mount_paths: HashMap<u64, String> }
 *   Inode = { id: u64 (the FUSE nodeid), refcount: u64, location: InodeLocation,
 *             file_handle: Option<FileHandle> (only with --migration-verify-handles) }
 *   InodeLocation = enum { 0 RootNode, 1 Path { parent: u64, filename: String },
 *                          2 Invalid (lost), 3 FullPath { filename: String (from the root) },
 *                          4 FileHandle { handle: FileHandle } }
 *   FileHandle = { mnt_id: u64, handle_type: i32, handle: Vec<u8> }
 *   Handle = { id: u64 (the fh; the Rust daemon's first is 0), inode: u64,
 *              source: enum { 0 OpenInode { flags: i32 } } }  (host open(2) flags; a
 *              directory's carry O_DIRECTORY; O_CREAT, O_EXCL and O_TRUNC already removed)
 * Its refcount is the guest's lookup count plus one for every inode whose location is a Path
 * under it (the source holds those references for the migration; the destination drops them
 * once the child is found). next_inode and next_handle are the next ids to hand out.
 *
 * What it lacks: file types (a LOAD takes the type of what it finds), st_dev/st_ino, locks,
 * and of FUSE INIT only the four options above (the rest is made up in rust_init below).
 * Our SAVE writes V2 with a FullPath for every inode but the root (no references to count),
 * no file handles and an empty mount map. LOAD passes a FileHandle location on as the inode's
 * file handle (used in --migration-mode=file-handles) when the mount map names its mount id
 * "." (the share's root, as the Rust daemon writes it); one of another mount (a submount) is
 * lost. The format has no file system id and no root handle to check them against: the check
 * that each opened inode is beneath the share is what guards (pt_state.c). The stream ends where
 * the state does; a LOAD refuses any byte after it.
 */
#include "state_rust.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "state_buf.h"
#include "utf8.h"

#define RUST_V1         0
#define RUST_V2         1
#define RUST_MINOR      38          /* the FUSE minor the Rust daemon 1.13 answers INIT with */
#define RUST_MAX_WRITE  (1u << 20)  /* its max_write */
#define RUST_HANDLE_MAX 128         /* MAX_HANDLE_SZ: the largest file handle Linux makes */
#define RUST_RECORD_MIN 4           /* the fewest bytes an inode or a handle record takes */
#define RUST_PATHS_MAX  (1ul << 30) /* all paths together, once parents are followed */
#define RUST_MAX_COMPS  (PATH_MAX / 2)

enum { LOC_ROOT, LOC_PATH, LOC_INVALID, LOC_FULL_PATH, LOC_FILE_HANDLE, LOC_COUNT };

static int bad(struct pt_state *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct pt_state *st, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->why, sizeof(st->why), fmt, ap);
    va_end(ap);
    return err;
}

bool rust_state_recognised(const uint8_t *buf, size_t len)
{
    return len > 0 && (buf[0] == RUST_V1 || buf[0] == RUST_V2);
}

/* ---- reading postcard ------------------------------------------------------------------------ */

struct rd {
    const uint8_t *p;
    size_t left;
};

/* A varint of at most max bytes whose value fits bits bits (a longer or larger one is bad). */
static bool get_varint(struct rd *r, unsigned bits, uint64_t *v)
{
    unsigned max = (bits + 6) / 7;

    *v = 0;
    for (unsigned i = 0; i < max && r->left; i++) {
        uint8_t b = *r->p++;

        r->left--;
        if (i == max - 1 && (b & 0x80 || (uint64_t)b >> (bits - 7 * i)))
            return false; /* more bits than the type has */
        *v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            return true;
    }
    return false;
}

static bool get_u64(struct rd *r, uint64_t *v)
{
    return get_varint(r, 64, v);
}

static bool get_u32(struct rd *r, uint32_t *v)
{
    uint64_t x;

    if (!get_varint(r, 32, &x))
        return false;
    *v = (uint32_t)x;
    return true;
}

static bool get_i32(struct rd *r, int32_t *v)
{
    uint32_t z;

    if (!get_u32(r, &z))
        return false;
    *v = (int32_t)((z >> 1) ^ (~(z & 1) + 1));
    return true;
}

/* A bool or an Option's tag: one byte, 0 or 1. */
static bool get_flag(struct rd *r, bool *v)
{
    if (!r->left || *r->p > 1)
        return false;
    *v = *r->p;
    r->p++;
    r->left--;
    return true;
}

/* A String: its bytes stay in the buffer (*s, *n). */
static bool get_string(struct rd *r, const uint8_t **s, size_t *n)
{
    uint64_t len;

    if (!get_u64(r, &len) || len > r->left || !utf8_valid(r->p, (size_t)len))
        return false;
    *s = r->p;
    *n = (size_t)len;
    r->p += len;
    r->left -= (size_t)len;
    return true;
}

/* A count of elements of at least min bytes each, bounded by what is left and by max. */
static bool get_count(struct rd *r, size_t min, uint64_t max, uint64_t *n)
{
    return get_u64(r, n) && *n <= max && *n <= r->left / min;
}

/* One name, as our own format allows it: 1..NAME_MAX bytes, no '/' or NUL, not "." or "..". */
static bool valid_name(const uint8_t *s, size_t n)
{
    return n > 0 && n <= NAME_MAX && !memchr(s, '/', n) && !memchr(s, '\0', n) &&
           !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

/* A path from the root: names joined by single slashes, none empty, none "." or "..". */
static bool valid_path(const uint8_t *s, size_t n)
{
    size_t start = 0;

    if (n == 0 || n >= PATH_MAX)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '/')
            continue;
        if (!valid_name(s + start, i - start))
            return false;
        start = i + 1;
    }
    return true;
}

/* ---- decoding ----------------------------------------------------------------------------------
 */

/* One inode record as the stream has it, then what following its parents found. */
struct rinode {
    uint64_t id, refcount, parent;
    const uint8_t *name; /* Path's filename or FullPath's path, in the stream */
    size_t name_len;
    uint64_t children; /* Path records naming it as their parent */
    uint8_t loc;
    uint8_t state; /* 0 not yet, 1 being resolved, 2 resolved */
    bool lost;
    size_t path_off, path_len; /* in the decoder's arena */
    /* A FileHandle location: the handle (in the stream) and the mount id it was made on. */
    const uint8_t *fh;
    size_t fh_len;
    int32_t fh_type;
    uint64_t fh_mnt;
};

struct dec {
    struct rd r;
    struct pt_state *st;
    struct rinode *in;
    size_t n;
    size_t *by_id; /* indices of in[], sorted by id */
    char *paths;
    size_t paths_len, paths_cap;
    bool have_root_mnt; /* the mount map names the share's root ("."): its id */
    uint64_t root_mnt;
    size_t fh_elsewhere; /* handles on another mount than the share's root: lost */
};

/* A FileHandle; its fields into in when given. */
static int get_file_handle(struct dec *d, struct rinode *in)
{
    uint64_t mnt_id, len;
    int32_t type;

    if (!get_u64(&d->r, &mnt_id) || !get_i32(&d->r, &type) || !get_u64(&d->r, &len) ||
        len > RUST_HANDLE_MAX || len > d->r.left)
        return bad(d->st, -EINVAL, "truncated or invalid file handle");
    if (in && type >= 0 && len > 0)
        *in = (struct rinode){.id = in->id,
                              .refcount = in->refcount,
                              .loc = in->loc,
                              .lost = in->lost,
                              .fh = d->r.p,
                              .fh_len = (size_t)len,
                              .fh_type = type,
                              .fh_mnt = mnt_id};
    d->r.p += len;
    d->r.left -= (size_t)len;
    return 0;
}

static int get_location(struct dec *d, struct rinode *in)
{
    uint32_t loc;

    if (!get_u32(&d->r, &loc) || loc >= LOC_COUNT)
        return bad(d->st, -EINVAL, "inode %llu: truncated, or an unknown location",
                   (unsigned long long)in->id);
    in->loc = (uint8_t)loc;
    switch (loc) {
    case LOC_PATH:
        if (!get_u64(&d->r, &in->parent) || !get_string(&d->r, &in->name, &in->name_len) ||
            !valid_name(in->name, in->name_len))
            return bad(d->st, -EINVAL,
                       "inode %llu: truncated, not UTF-8, or a name that is empty, \".\", "
                       "\"..\", too long or holds '/' or NUL",
                       (unsigned long long)in->id);
        break;
    case LOC_FULL_PATH:
        if (!get_string(&d->r, &in->name, &in->name_len) || !valid_path(in->name, in->name_len))
            return bad(d->st, -EINVAL, "inode %llu: truncated or invalid path",
                       (unsigned long long)in->id);
        break;
    case LOC_FILE_HANDLE:
        /* --migration-mode=file-handles on the source: no path. A destination in that mode
         * opens the handle (fill_state passes it on when it is of the share's own mount). */
        in->lost = true;
        return get_file_handle(d, in);
    case LOC_INVALID:
        in->lost = true;
        break;
    }
    return 0;
}

static int get_inodes(struct dec *d)
{
    uint64_t count;

    if (!get_count(&d->r, RUST_RECORD_MIN, PT_STATE_MAX_INODES, &count))
        return bad(d->st, -EINVAL, "truncated stream, or an inode count larger than it can hold");
    d->in = calloc(count ? count : 1, sizeof(*d->in));
    if (!d->in)
        return bad(d->st, -ENOMEM, "out of memory");
    for (d->n = 0; d->n < count; d->n++) {
        struct rinode *in = &d->in[d->n];
        bool has_fh;
        int ret;

        if (!get_u64(&d->r, &in->id) || !get_u64(&d->r, &in->refcount))
            return bad(d->st, -EINVAL, "truncated inode record");
        ret = get_location(d, in);
        if (ret < 0)
            return ret;
        if (!get_flag(&d->r, &has_fh))
            return bad(d->st, -EINVAL, "inode %llu: truncated or invalid file handle option",
                       (unsigned long long)in->id);
        /* The handle only lets the destination compare; this daemon does not (see below). */
        if (has_fh && (ret = get_file_handle(d, NULL)) < 0)
            return ret;
    }
    return 0;
}

static int get_handles(struct dec *d)
{
    uint64_t count;

    if (!get_count(&d->r, RUST_RECORD_MIN, PT_STATE_MAX_HANDLES, &count))
        return bad(d->st, -EINVAL, "truncated stream, or a handle count larger than it can hold");
    for (uint64_t i = 0; i < count; i++) {
        struct pt_state_handle h = {0};
        uint32_t source;
        int32_t flags;

        if (!get_u64(&d->r, &h.fh) || !get_u64(&d->r, &h.nodeid) || !get_u32(&d->r, &source) ||
            source != 0 || !get_i32(&d->r, &flags))
            return bad(d->st, -EINVAL, "truncated or invalid handle record");
        if ((flags & O_ACCMODE) == O_ACCMODE)
            return bad(d->st, -EINVAL, "handle %llu: invalid access mode",
                       (unsigned long long)h.fh);
        /* The flags its OPEN kept; as an OPEN of ours does, only those we reopen with stay. */
        h.dir = flags & O_DIRECTORY;
        h.flags = (uint32_t)flags & (PT_STATE_OPEN_FLAGS | PT_STATE_OPEN_DROPPED);
        if (pt_state_add_handle(d->st, &h) < 0)
            return bad(d->st, -ENOMEM, "out of memory");
    }
    return 0;
}

static int get_tail(struct dec *d, struct rust_state_opts *o)
{
    uint64_t count;

    if (!get_flag(&d->r, &o->writeback) || !get_flag(&d->r, &o->announce_submounts) ||
        !get_flag(&d->r, &o->posix_acl) || !get_flag(&d->r, &o->sup_group_extension))
        return bad(d->st, -EINVAL, "truncated or invalid negotiated options");
    if (o->version == 2) {
        /* Mount ids to paths (relative to the share: "." is the share's root's mount), for
         * the file handles: only those of the root's mount are used. */
        if (!get_count(&d->r, 2, UINT32_MAX, &count))
            return bad(d->st, -EINVAL, "truncated or invalid mount path map");
        for (uint64_t i = 0; i < count; i++) {
            const uint8_t *s;
            uint64_t id;
            size_t n;

            if (!get_u64(&d->r, &id) || !get_string(&d->r, &s, &n))
                return bad(d->st, -EINVAL, "truncated or invalid mount path map");
            if (n == 1 && s[0] == '.') {
                d->have_root_mnt = true;
                d->root_mnt = id;
            }
        }
    }
    if (d->r.left)
        return bad(d->st, -EINVAL, "%zu bytes after the end of the state", d->r.left);
    return 0;
}

static int cmp_id(const void *a, const void *b, void *arg)
{
    const struct rinode *in = arg;
    uint64_t x = in[*(const size_t *)a].id, y = in[*(const size_t *)b].id;

    return x < y ? -1 : x > y;
}

static struct rinode *find(struct dec *d, uint64_t id)
{
    size_t lo = 0, hi = d->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t m = d->in[d->by_id[mid]].id;

        if (m == id)
            return &d->in[d->by_id[mid]];
        if (m < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The index by id; duplicate ids refused; each record's Path children counted. */
static int index_ids(struct dec *d)
{
    d->by_id = malloc((d->n ? d->n : 1) * sizeof(*d->by_id));
    if (!d->by_id)
        return bad(d->st, -ENOMEM, "out of memory");
    for (size_t i = 0; i < d->n; i++)
        d->by_id[i] = i;
    qsort_r(d->by_id, d->n, sizeof(*d->by_id), cmp_id, d->in);
    for (size_t i = 1; i < d->n; i++)
        if (d->in[d->by_id[i]].id == d->in[d->by_id[i - 1]].id)
            return bad(d->st, -EINVAL, "inode %llu appears twice",
                       (unsigned long long)d->in[d->by_id[i]].id);
    for (size_t i = 0; i < d->n; i++) {
        struct rinode *p;

        if (d->in[i].loc != LOC_PATH)
            continue;
        p = find(d, d->in[i].parent);
        if (!p)
            return bad(d->st, -EINVAL, "inode %llu: its parent %llu is not in the state",
                       (unsigned long long)d->in[i].id, (unsigned long long)d->in[i].parent);
        p->children++;
    }
    return 0;
}

static int add_path(struct dec *d, struct rinode *in, const char *a, size_t alen, const char *b,
                    size_t blen)
{
    size_t len = alen + (alen && blen) + blen;

    if (len >= PATH_MAX)
        return bad(d->st, -EINVAL, "inode %llu: path too long", (unsigned long long)in->id);
    if (d->paths_len + len + 1 > d->paths_cap) {
        size_t cap = d->paths_cap ? d->paths_cap : 65536;
        char *q;

        while (cap < d->paths_len + len + 1)
            cap *= 2;
        if (cap > RUST_PATHS_MAX)
            return bad(d->st, -EINVAL, "the paths of all inodes are too long together");
        if (!(q = realloc(d->paths, cap)))
            return bad(d->st, -ENOMEM, "out of memory");
        d->paths = q;
        d->paths_cap = cap;
    }
    memcpy(d->paths + d->paths_len, a, alen);
    if (alen && blen)
        d->paths[d->paths_len + alen] = '/';
    memcpy(d->paths + d->paths_len + (alen && blen) + alen, b, blen);
    d->paths[d->paths_len + len] = '\0';
    in->path_off = d->paths_len;
    in->path_len = len;
    d->paths_len += len + 1;
    return 0;
}

/* One record whose parent (if any) is resolved already. */
static int resolve_one(struct dec *d, struct rinode *in)
{
    struct rinode *p;

    in->state = 2;
    switch (in->loc) {
    case LOC_ROOT:
        if (in->id != FUSE_ROOT_ID)
            return bad(d->st, -EINVAL, "inode %llu is given as the root",
                       (unsigned long long)in->id);
        return add_path(d, in, "", 0, "", 0);
    case LOC_FULL_PATH:
        return add_path(d, in, "", 0, (const char *)in->name, in->name_len);
    case LOC_PATH:
        p = find(d, in->parent);
        in->lost = p->lost;
        if (in->lost)
            return 0;
        return add_path(d, in, d->paths + p->path_off, p->path_len, (const char *)in->name,
                        in->name_len);
    }
    return 0; /* lost */
}

/* Follows every record's parents up to a resolved one or a record without a parent. */
static int resolve_paths(struct dec *d)
{
    size_t *stack = malloc((d->n ? d->n : 1) * sizeof(*stack));
    int ret = stack ? 0 : bad(d->st, -ENOMEM, "out of memory");

    for (size_t i = 0; ret == 0 && i < d->n; i++) {
        struct rinode *in = &d->in[i];
        size_t depth = 0;

        while (ret == 0 && in->state != 2) {
            if (in->state == 1 || depth > RUST_MAX_COMPS) {
                ret = bad(d->st, -EINVAL, "inode %llu: its parents form a loop or are too deep",
                          (unsigned long long)in->id);
                break;
            }
            in->state = 1;
            stack[depth++] = (size_t)(in - d->in);
            if (in->loc != LOC_PATH)
                break;
            in = find(d, in->parent);
        }
        while (ret == 0 && depth)
            ret = resolve_one(d, &d->in[stack[--depth]]);
    }
    free(stack);
    return ret;
}

/* Into st: every inode the guest knows (the lookup count less the children's references). */
static int fill_state(struct dec *d)
{
    bool root = false;

    for (size_t i = 0; i < d->n; i++) {
        const struct rinode *r = &d->in[i];
        struct pt_state_inode in = {.nodeid = r->id, .lost = r->lost};

        if (r->refcount < r->children)
            return bad(d->st, -EINVAL, "inode %llu: refcount %llu, below its %llu children",
                       (unsigned long long)r->id, (unsigned long long)r->refcount,
                       (unsigned long long)r->children);
        in.nlookup = r->refcount - r->children;
        if (r->id == FUSE_ROOT_ID) {
            root = true;
            if (r->loc != LOC_ROOT)
                return bad(d->st, -EINVAL, "the root (nodeid 1) has a location");
            in.type = S_IFDIR;
            in.nlookup = in.nlookup ? in.nlookup : 1; /* the kernel's own; never forgotten */
        } else if (in.nlookup == 0) {
            continue; /* only a parent on the way to what the guest knows: it knows not this */
        }
        if (pt_state_add_inode(d->st, &in, r->lost ? NULL : d->paths + r->path_off, r->path_len) <
            0)
            return bad(d->st, -ENOMEM, "out of memory");
        if (r->fh && d->have_root_mnt && r->fh_mnt == d->root_mnt) {
            struct pt_state_fh f = {
                .nodeid = r->id, .type = r->fh_type, .len = (uint32_t)r->fh_len};

            if (pt_state_add_fh(d->st, &f, r->fh) < 0)
                return bad(d->st, -EINVAL, "inode %llu: invalid file handle",
                           (unsigned long long)r->id);
            d->st->fsid_unknown = true; /* the format has neither an fsid nor a root handle */
        } else if (r->fh) {
            d->fh_elsewhere++;
        }
    }
    if (d->fh_elsewhere)
        log_warn("migration: %zu file handle(s) of another mount than the share's root in the "
                 "Rust virtiofsd's state: those inodes are lost",
                 d->fh_elsewhere);
    if (d->n && !root)
        return bad(d->st, -EINVAL, "no root inode (nodeid 1)");
    return 0;
}

int rust_state_decode(const uint8_t *buf, size_t len, struct pt_state *st,
                      struct rust_state_opts *opts)
{
    struct dec d = {.r = {buf, len}, .st = st};
    uint32_t version;
    uint64_t next_inode, next_handle;
    int ret;

    memset(opts, 0, sizeof(*opts));
    if (!get_u32(&d.r, &version) || version > RUST_V2)
        return bad(st, -EINVAL, "not a Rust virtiofsd stream of a version this daemon reads");
    opts->version = version + 1;
    ret = get_inodes(&d);
    if (ret == 0 && !get_u64(&d.r, &next_inode))
        ret = bad(st, -EINVAL, "truncated stream (inode counter)");
    if (ret == 0)
        ret = get_handles(&d);
    if (ret == 0 && !get_u64(&d.r, &next_handle))
        ret = bad(st, -EINVAL, "truncated stream (handle counter)");
    if (ret == 0)
        ret = get_tail(&d, opts);
    if (ret == 0 && (next_inode == 0 || next_inode > PT_STATE_MAX_ID))
        ret = bad(st, -EINVAL, "inode counter %llu out of range", (unsigned long long)next_inode);
    if (ret == 0 && next_handle > PT_STATE_MAX_ID)
        ret = bad(st, -EINVAL, "handle counter out of range");
    if (ret == 0)
        ret = index_ids(&d);
    if (ret == 0)
        ret = resolve_paths(&d);
    if (ret == 0)
        ret = fill_state(&d);
    if (ret == 0) {
        /* Its counters are the next ids, ours the last ones handed out (its fhs start at 0). */
        st->last_nodeid = next_inode - 1;
        st->last_fh = next_handle ? next_handle - 1 : 0;
    }
    free(d.in);
    free(d.by_id);
    free(d.paths);
    return ret;
}

/* ---- the INIT this daemon goes on with ------------------------------------------------------- */

/*
 * The Rust format keeps four INIT results. The rest: what the Rust daemon agrees to with a
 * guest that asks for everything (its own fixed set, and readdirplus, killpriv_v2,
 * security labels and mmap as its options say, which the destination's options are taken to
 * repeat), as far as this daemon offers it; never locks, which the Rust daemon leaves in the
 * guest.
 */
static int rust_init(struct fuse_session *se, const struct rust_state_opts *o,
                     struct fuse_session_init *init, struct pt_state *st)
{
    const uint64_t acl = FUSE_POSIX_ACL | FUSE_DONT_MASK | FUSE_SETXATTR_EXT;
    const uint64_t conditional = FUSE_WRITEBACK_CACHE | FUSE_SUBMOUNTS | acl;
    uint64_t offer = fuse_session_offer(se);
    uint64_t flags = FUSE_ASYNC_READ | FUSE_PARALLEL_DIROPS | FUSE_BIG_WRITES |
                     FUSE_AUTO_INVAL_DATA | FUSE_ASYNC_DIO | FUSE_ATOMIC_O_TRUNC | FUSE_MAX_PAGES |
                     FUSE_INIT_EXT | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
                     FUSE_HANDLE_KILLPRIV_V2 | FUSE_SECURITY_CTX | (1ULL << 36);

    flags &= offer & ~conditional;
    if (o->writeback)
        flags |= FUSE_WRITEBACK_CACHE;
    if (o->posix_acl)
        flags |= acl;
    if (flags & ~offer)
        return bad(st, -EPROTO,
                   "the source agreed %s%swith the guest; this daemon was started without it",
                   o->writeback ? "the writeback cache " : "", o->posix_acl ? "POSIX ACLs " : "");
    /* The Rust daemon announces submounts by default, this one only when asked to: without
     * it, mount points in the share simply stop being announced (as the Rust daemon itself
     * would refuse to, this one goes on: refusing would fail every default migration). */
    if (o->announce_submounts && (offer & FUSE_SUBMOUNTS))
        flags |= FUSE_SUBMOUNTS;
    else if (o->announce_submounts)
        log_warn("migration: the Rust source announced submounts; this daemon does not "
                 "(--announce-submounts): mount points in the share are no longer announced");
    if (o->sup_group_extension)
        log_debug("migration: the Rust source agreed FUSE_CREATE_SUPP_GROUP, which this daemon "
                  "does not use: the extension is ignored");
    *init = (struct fuse_session_init){
        .major = FUSE_KERNEL_VERSION,
        .minor = RUST_MINOR < FUSE_KERNEL_MINOR_VERSION ? RUST_MINOR : FUSE_KERNEL_MINOR_VERSION,
        .flags = flags,
        .max_write = RUST_MAX_WRITE < FUSE_MAX_WRITE ? RUST_MAX_WRITE : FUSE_MAX_WRITE,
    };
    init->max_pages = init->max_write / 4096;
    return 0;
}

int rust_state_parse(struct fuse_session *se, const uint8_t *buf, size_t len, bool *initialized,
                     struct fuse_session_init *init, struct pt_state *st)
{
    const struct pt_config *cfg = pt_get_config(fuse_session_fs(se));
    struct rust_state_opts o;
    int ret = rust_state_decode(buf, len, st, &o);

    if (ret < 0)
        return ret;
    *initialized = st->n_inodes > 0;
    memset(init, 0, sizeof(*init));
    if (!*initialized)
        return st->n_handles ? bad(st, -EINVAL, "handles without inodes") : 0;
    if (cfg->migration_verify_handles)
        return bad(st, -ENOTSUP,
                   "--migration-verify-handles: a Rust virtiofsd stream has no device and inode "
                   "numbers to compare");
    ret = pt_state_check(st);
    if (ret == 0)
        ret = rust_init(se, &o, init, st);
    return ret;
}

/* ---- writing ----------------------------------------------------------------------------------
 */

static void put_u64(struct state_buf *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;

    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        b[n] |= v ? 0x80 : 0;
        n++;
    } while (v);
    state_buf_put(w, b, n);
}

static void put_i32(struct state_buf *w, int32_t v)
{
    put_u64(w, (uint32_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31)));
}

static void put_byte(struct state_buf *w, uint8_t b)
{
    state_buf_put(w, &b, 1);
}

static void put_string(struct state_buf *w, const char *s)
{
    size_t n = strlen(s);

    put_u64(w, n);
    state_buf_put(w, s, n);
}

/* Held locks the state carries (POSIX ranges and flocks): the Rust format has no room for
 * them. */
static size_t held_locks(const struct pt_state *st)
{
    return st->n_ranges + st->n_flocks;
}

static int put_inodes(struct state_buf *w, struct pt_state *st, bool guest_error)
{
    size_t not_utf8 = 0;

    put_u64(w, st->n_inodes);
    for (size_t i = 0; i < st->n_inodes; i++) {
        const struct pt_state_inode *in = &st->inodes[i];
        const char *path = pt_state_path(st, in);

        put_u64(w, in->nodeid);
        put_u64(w, in->nlookup);
        if (in->nodeid == FUSE_ROOT_ID) {
            put_byte(w, LOC_ROOT);
        } else if (path && utf8_valid((const uint8_t *)path, strlen(path))) {
            put_byte(w, LOC_FULL_PATH);
            put_string(w, path);
        } else {
            if (path && !guest_error)
                return bad(st, -ENOTSUP,
                           "inode %llu: its path is not UTF-8, which the Rust format cannot "
                           "carry (--migration-on-error=guest-error sends it as lost)",
                           (unsigned long long)in->nodeid);
            not_utf8 += path != NULL;
            put_byte(w, LOC_INVALID);
        }
        put_byte(w, 0); /* no file handle */
    }
    if (not_utf8)
        log_warn("migration: %zu inode(s) with a path that is not UTF-8 are sent as lost (the "
                 "Rust format cannot carry it): the guest gets errors on them",
                 not_utf8);
    return 0;
}

static void put_handles(struct state_buf *w, const struct pt_state *st)
{
    put_u64(w, st->n_handles);
    for (size_t i = 0; i < st->n_handles; i++) {
        const struct pt_state_handle *h = &st->handles[i];
        uint32_t flags = h->flags & ~(uint32_t)PT_STATE_OPEN_DROPPED;

        put_u64(w, h->fh);
        put_u64(w, h->nodeid);
        put_byte(w, 0); /* OpenInode */
        put_i32(w, (int32_t)(h->dir ? flags | O_DIRECTORY : flags));
    }
}

int rust_state_encode(struct pt_state *st, bool initialized, const struct fuse_session_init *init,
                      bool on_error_guest, uint8_t **out, size_t *len)
{
    struct state_buf w = {0};
    size_t locks = held_locks(st);
    int ret = 0;

    *out = NULL;
    *len = 0;
    if (locks && !on_error_guest)
        return bad(st, -ENOTSUP,
                   "the guest holds %zu lock(s), which the Rust format cannot carry "
                   "(--migration-on-error=guest-error drops them)",
                   locks);
    if (locks)
        log_warn("migration: %zu lock(s) the guest holds are dropped (the Rust format cannot "
                 "carry them)",
                 locks);
    if (initialized && (init->flags & (FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS)))
        log_warn("migration: the guest mounted with its locks kept on the host; the Rust "
                 "virtiofsd serves no locks: there, the locks it holds are gone and its lock "
                 "requests fail with ENOSYS (start with -o no_posix_lock,no_flock to keep "
                 "locks in the guest, as the Rust daemon does)");
    put_byte(&w, RUST_V2);
    if (initialized) {
        ret = put_inodes(&w, st, on_error_guest);
        put_u64(&w, st->last_nodeid + 1);
        put_handles(&w, st);
        put_u64(&w, st->last_fh + 1);
    } else {
        /* Never mounted: no inodes (the Rust daemon opens the root at INIT), fresh counters. */
        put_u64(&w, 0);
        put_u64(&w, FUSE_ROOT_ID + 1);
        put_u64(&w, 0);
        put_u64(&w, 0);
    }
    put_byte(&w, initialized && (init->flags & FUSE_WRITEBACK_CACHE));
    put_byte(&w, initialized && (init->flags & FUSE_SUBMOUNTS));
    put_byte(&w, initialized && (init->flags & FUSE_POSIX_ACL));
    put_byte(&w, 0); /* sup_group_extension: this daemon never agrees it */
    put_u64(&w, 0);  /* no mount paths: no file handles are sent */
    if (ret == 0 && w.err)
        ret = bad(st, w.err, "out of memory");
    if (ret < 0) {
        free(w.p);
        return ret;
    }
    *out = w.p;
    *len = w.len;
    return 0;
}
