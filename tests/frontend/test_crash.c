/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's crash is invisible to the guest (issue 15): the test front-end, in its
 * cloud-hypervisor profile with the in-flight area (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD),
 * runs a mixed workload with up to 64 requests in flight over several request queues while
 * the serving process is killed with SIGKILL at random points and started again; after each
 * restart the same session goes on. Every reply is checked against a model of what each
 * request must have done, and the host files against the same model at checkpoints.
 *
 * Whatever needs the daemon's side of the feature skips (with the reason) while
 * GET_PROTOCOL_FEATURES lacks bit 12; the workload and its model run without kills anyway.
 *
 * Environment:
 *   VIRTIOFSD_CRASH_KILLS      kill -9 cycles of /crash/workload/kill9 (default 200)
 *   VIRTIOFSD_CRASH_OPS        requests of /crash/workload/no-kill (default 20000)
 *   VIRTIOFSD_CRASH_SEED       the random seed (default: a new one, printed)
 *   VIRTIOFSD_CRASH_DELAY_US   the longest time from a restart to the next kill (default 20000)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"
#include "inflight.h"

#define REQUEST_QUEUES 4
#define QUEUE_SIZE     1024
#define DEPTH          64
#define BLK            4096u
#define FILE_BLOCKS    512u /* files stay within 2 MiB */
#define BIG            (1u << 20)
#define SLOT_LEN       (BIG + 64 * 1024)
#define MAX_FILES      72 /* more entities than DEPTH: 64 can be in flight at once */
#define MAX_DIRS       8
#define NAME_LEN       24
#define CHECK_EVERY    500 /* completions between checkpoints without kills */
#define KILL_CHECK     20  /* kill cycles between checkpoints */
#define LOCK_OWNER(f)  (0x10000u + (uint64_t)(f))
#define OTHER_OWNER    0xdead0000ull
#define HIDDEN_PREFIX  ".virtiofsd-unlinked." /* the daemon's (include/passthrough.h) */

static unsigned env_uint(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

static bool offers_inflight(struct fe *fe)
{
    return fe_offered_protocol_features(fe) & (1ull << FE_VU_PROTOCOL_F_INFLIGHT_SHMFD);
}

#define NO_INFLIGHT                                                                                \
    "the daemon does not offer VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD (protocol feature bit 12)"

static struct fe *open_ch(const struct test_daemon *d, bool inflight)
{
    struct fe_config cfg = {.socket_path = d->socket,
                            .profile = FE_PROFILE_CLOUD_HYPERVISOR,
                            .request_queues = REQUEST_QUEUES,
                            .queue_size = QUEUE_SIZE,
                            .mem_size = 128u << 20,
                            .inflight = inflight,
                            .fifo_heads = true};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    return fe;
}

static int init_session(struct fe *fe)
{
    struct fuse_init_out out;
    int ret = fe_fuse_init_flags(
        fe, FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS, &out);
    if (ret == 0)
        g_assert_cmpuint(out.max_write, >=, BIG);
    return ret;
}

static size_t region_size(unsigned num)
{
    size_t raw = sizeof(struct inflight_region) + num * sizeof(struct inflight_desc);
    return (raw + INFLIGHT_ALIGN - 1) & ~(size_t)(INFLIGHT_ALIGN - 1);
}

/* The settled fd count of the serving process (it stops changing). */
static int settled_fds(const struct test_daemon *d)
{
    int prev = -1, n = test_daemon_fd_count(d);
    for (int i = 0; i < 100 && n != prev; i++) {
        g_usleep(20000);
        prev = n;
        n = test_daemon_fd_count(d);
    }
    return n;
}

/* ---- the model -------------------------------------------------------------------------- */

enum fstate {
    F_FREE,     /* no such file */
    F_OPEN,     /* linked; the guest holds a nodeid and an fh */
    F_NAMED,    /* linked; a nodeid, no fh (released) */
    F_DORMANT,  /* linked on the host; the guest forgot it */
    F_UNLINKED, /* unlinked; nodeid and fh still open */
    F_ORPHAN,   /* unlinked and released; the nodeid until forgotten */
};

struct mfile {
    enum fstate st;
    int dir;
    char name[NAME_LEN];
    uint64_t nodeid, fh, nlookup;
    uint64_t size;
    uint32_t stamp[FILE_BLOCKS]; /* what each block holds: 0 a hole, else gen_block's data */
    bool locked;                 /* LOCK_OWNER holds a write lock on [0, BLK) */
    bool busy;                   /* a request on it is in flight */
};

struct mdir {
    bool exists;
    int parent;
    char name[NAME_LEN];
    uint64_t nodeid, nlookup; /* the root's lookups are not counted */
    bool busy;
};

enum kind {
    K_MKDIR,
    K_CREATE,
    K_WRITE4K,
    K_WRITE1M,
    K_READ4K,
    K_READ1M,
    K_RENAME,
    K_UNLINK,
    K_LOOKUP,
    K_GETATTR,
    K_SETLKW,
    K_UNLOCK,
    K_GETLK,
    K_RELEASE,
    K_OPEN,
    K_FORGET,
    K_DLOOKUP,
    K_DFORGET,
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "MKDIR",  "CREATE",  "WRITE 4K", "WRITE 1M", "READ 4K",    "READ 1M",
    "RENAME", "UNLINK",  "LOOKUP",   "GETATTR",  "SETLKW",     "UNLOCK",
    "GETLK",  "RELEASE", "OPEN",     "FORGET",   "DIR LOOKUP", "DIR FORGET"};

static const unsigned weights[K_COUNT] = {
    [K_MKDIR] = 1,  [K_CREATE] = 8,  [K_WRITE4K] = 14, [K_WRITE1M] = 3, [K_READ4K] = 12,
    [K_READ1M] = 3, [K_RENAME] = 6,  [K_UNLINK] = 3,   [K_LOOKUP] = 6,  [K_GETATTR] = 8,
    [K_SETLKW] = 4, [K_UNLOCK] = 4,  [K_GETLK] = 4,    [K_RELEASE] = 3, [K_OPEN] = 3,
    [K_FORGET] = 5, [K_DLOOKUP] = 2, [K_DFORGET] = 2};

struct op {
    bool used;
    enum kind kind;
    int ent; /* the file, or the dir (MKDIR: the new one; DIR ops: the dir) */
    int dir; /* CREATE, MKDIR: the parent; RENAME: the new parent */
    char name[NAME_LEN];
    uint64_t off, n;
    uint32_t len, stamp;
    uint64_t area;
    struct fe_pending p;
};

struct run {
    struct test_daemon *d;
    struct fe *fe;
    GRand *rng;
    struct mfile files[MAX_FILES];
    struct mdir dirs[MAX_DIRS];
    struct op ops[DEPTH];
    unsigned depth, max_depth;
    uint32_t next_stamp, next_name;
    uint64_t sent, answered, by_kind[K_COUNT];
    unsigned kills;
    uint8_t *buf;    /* BIG bytes: data being written or expected */
    uint8_t *expect; /* BLK bytes */
    bool draining;
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The data of block blk written with stamp (zeros for a hole): unique per write and block. */
static void gen_block(uint8_t *out, uint32_t stamp, uint32_t blk)
{
    if (!stamp) {
        memset(out, 0, BLK);
        return;
    }
    uint64_t seed = mix(((uint64_t)stamp << 10) | blk);
    for (unsigned i = 0; i < BLK / 8; i++) {
        uint64_t w = mix(seed + i);
        memcpy(out + 8 * i, &w, 8);
    }
}

#define FAIL(r, op, ...)                                                                           \
    do {                                                                                           \
        g_printerr("after %u kills, %" G_GUINT64_FORMAT " requests: %s on %d: ", (r)->kills,       \
                   (r)->sent, (op) ? kind_names[(op)->kind] : "-", (op) ? (op)->ent : -1);         \
        g_printerr(__VA_ARGS__);                                                                   \
        g_printerr("\n");                                                                          \
        g_assert_not_reached();                                                                    \
    } while (0)
#define CHECK(r, op, cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL(r, op, __VA_ARGS__);                                                              \
    } while (0)

static char *dir_path(const struct run *r, int dir)
{
    if (dir == 0)
        return g_strdup(r->d->share);
    char *parent = dir_path(r, r->dirs[dir].parent);
    char *p = g_build_filename(parent, r->dirs[dir].name, NULL);
    g_free(parent);
    return p;
}

static char *file_path(const struct run *r, int f)
{
    char *dir = dir_path(r, r->files[f].dir);
    char *p = g_build_filename(dir, r->files[f].name, NULL);
    g_free(dir);
    return p;
}

static bool has_fh(const struct mfile *f)
{
    return f->st == F_OPEN || f->st == F_UNLINKED;
}
static bool has_nodeid(const struct mfile *f)
{
    return f->st == F_OPEN || f->st == F_NAMED || f->st == F_UNLINKED || f->st == F_ORPHAN;
}
static bool linked(const struct mfile *f)
{
    return f->st == F_OPEN || f->st == F_NAMED || f->st == F_DORMANT;
}

static unsigned count_files(const struct run *r)
{
    unsigned n = 0;
    for (int i = 0; i < MAX_FILES; i++)
        n += r->files[i].st != F_FREE;
    return n;
}

static int free_dir(const struct run *r)
{
    for (int i = 1; i < MAX_DIRS; i++)
        if (!r->dirs[i].exists && !r->dirs[i].busy)
            return i;
    return -1;
}

/* An existing directory nobody is creating: a parent for a new entry. */
static int pick_dir(struct run *r)
{
    for (int tries = 0; tries < 16; tries++) {
        int i = g_rand_int_range(r->rng, 0, MAX_DIRS);
        if (r->dirs[i].exists && !r->dirs[i].busy)
            return i;
    }
    return 0;
}

/* ---- requests --------------------------------------------------------------------------- */

static unsigned pick_queue(struct run *r)
{
    return 1 + (unsigned)g_rand_int_range(r->rng, 0, REQUEST_QUEUES);
}

static void submit(struct run *r, struct op *op, unsigned q, uint32_t opcode, uint64_t nodeid,
                   const struct iovec *in, unsigned nin, size_t out_size)
{
    struct fuse_in_header h = {.opcode = opcode, .nodeid = nodeid, .pid = 1000 + op->ent};
    int ret = fe_fuse_submit(r->fe, q, &h, in, nin, out_size, op->area, SLOT_LEN, &op->p);
    CHECK(r, op, ret == 0, "fe_fuse_submit: %s", g_strerror(-ret));
    op->used = true;
    r->depth++;
    r->max_depth = MAX(r->max_depth, r->depth);
    r->sent++;
    r->by_kind[op->kind]++;
}

#define IOV2(a, al, b, bl) (struct iovec[]){{(void *)(a), (al)}, {(void *)(b), (bl)}}, 2

static void send_write(struct run *r, struct op *op, const struct mfile *f)
{
    for (uint32_t b = 0; b < op->len / BLK; b++)
        gen_block(r->buf + (size_t)b * BLK, op->stamp, (uint32_t)(op->off / BLK) + b);
    struct fuse_write_in wi = {.fh = f->fh, .offset = op->off, .size = op->len};
    submit(r, op, pick_queue(r), FUSE_WRITE, f->nodeid, IOV2(&wi, sizeof(wi), r->buf, op->len),
           sizeof(struct fuse_write_out));
}

static void send_lk(struct run *r, struct op *op, const struct mfile *f, uint32_t opcode,
                    uint64_t owner, uint32_t type)
{
    struct fuse_lk_in in = {
        .fh = f->fh, .owner = owner, .lk = {.start = 0, .end = BLK - 1, .type = type, .pid = 1000}};
    struct iovec iov = {&in, sizeof(in)};
    submit(r, op, pick_queue(r), opcode, f->nodeid, &iov, 1,
           opcode == FUSE_GETLK ? sizeof(struct fuse_lk_out) : 0);
}

static void send_forget(struct run *r, struct op *op, uint64_t nodeid, uint64_t n)
{
    op->n = n;
    struct fuse_forget_in in = {.nlookup = n};
    struct iovec iov = {&in, sizeof(in)};
    submit(r, op, 0, FUSE_FORGET, nodeid, &iov, 1, 0); /* hiprio, as the guest sends it */
}

static void send_name(struct run *r, struct op *op, uint32_t opcode, uint64_t dir, const char *name,
                      size_t out_size)
{
    struct iovec iov = {(void *)name, strlen(name) + 1};
    submit(r, op, pick_queue(r), opcode, dir, &iov, 1, out_size);
}

/* Whether kind can run on entity e now; fills in and sends the request if so. */
static bool try_file_op(struct run *r, struct op *op, enum kind k, int e)
{
    struct mfile *f = &r->files[e];
    if (f->busy)
        return false;
    op->kind = k;
    op->ent = e;
    switch (k) {
    case K_CREATE: {
        if (f->st != F_FREE)
            return false;
        op->dir = pick_dir(r);
        snprintf(op->name, NAME_LEN, "f%u", r->next_name++);
        struct fuse_create_in ci = {.flags = O_RDWR | O_CREAT | O_EXCL, .mode = S_IFREG | 0644};
        submit(r, op, pick_queue(r), FUSE_CREATE, r->dirs[op->dir].nodeid,
               IOV2(&ci, sizeof(ci), op->name, strlen(op->name) + 1),
               sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out));
        break;
    }
    case K_WRITE4K:
    case K_WRITE1M:
        if (!has_fh(f))
            return false;
        op->len = k == K_WRITE4K ? BLK : BIG;
        op->off = k == K_WRITE4K ? (uint64_t)g_rand_int_range(r->rng, 0, FILE_BLOCKS) * BLK
                                 : (uint64_t)g_rand_int_range(r->rng, 0, 2) * BIG;
        op->stamp = ++r->next_stamp;
        send_write(r, op, f);
        break;
    case K_READ4K:
    case K_READ1M: {
        if (!has_fh(f))
            return false;
        op->len = k == K_READ4K ? BLK : BIG;
        op->off = k == K_READ4K ? (uint64_t)g_rand_int_range(r->rng, 0, FILE_BLOCKS) * BLK
                                : (uint64_t)g_rand_int_range(r->rng, 0, 2) * BIG;
        struct fuse_read_in ri = {.fh = f->fh, .offset = op->off, .size = op->len};
        struct iovec iov = {&ri, sizeof(ri)};
        submit(r, op, pick_queue(r), FUSE_READ, f->nodeid, &iov, 1, op->len);
        break;
    }
    case K_RENAME: {
        if (!linked(f))
            return false;
        op->dir = pick_dir(r);
        snprintf(op->name, NAME_LEN, "r%u", r->next_name++);
        struct fuse_rename_in ri = {.newdir = r->dirs[op->dir].nodeid};
        char names[2 * NAME_LEN];
        size_t a = strlen(f->name) + 1, b = strlen(op->name) + 1;
        memcpy(names, f->name, a);
        memcpy(names + a, op->name, b);
        submit(r, op, pick_queue(r), FUSE_RENAME, r->dirs[f->dir].nodeid,
               IOV2(&ri, sizeof(ri), names, a + b), 0);
        break;
    }
    case K_UNLINK:
        if (f->st != F_OPEN || f->locked)
            return false;
        send_name(r, op, FUSE_UNLINK, r->dirs[f->dir].nodeid, f->name, 0);
        break;
    case K_LOOKUP:
        if (!linked(f))
            return false;
        send_name(r, op, FUSE_LOOKUP, r->dirs[f->dir].nodeid, f->name,
                  sizeof(struct fuse_entry_out));
        break;
    case K_GETATTR: {
        if (!has_nodeid(f))
            return false;
        struct fuse_getattr_in gi = {0};
        struct iovec iov = {&gi, sizeof(gi)};
        submit(r, op, pick_queue(r), FUSE_GETATTR, f->nodeid, &iov, 1,
               sizeof(struct fuse_attr_out));
        break;
    }
    case K_SETLKW:
        if (!has_fh(f) || f->locked)
            return false;
        send_lk(r, op, f, FUSE_SETLKW, LOCK_OWNER(e), F_WRLCK);
        break;
    case K_UNLOCK:
        if (!f->locked)
            return false;
        send_lk(r, op, f, FUSE_SETLK, LOCK_OWNER(e), F_UNLCK);
        break;
    case K_GETLK:
        if (!has_fh(f))
            return false;
        send_lk(r, op, f, FUSE_GETLK, OTHER_OWNER + (uint64_t)e, F_WRLCK);
        break;
    case K_RELEASE: {
        if (!has_fh(f) || f->locked)
            return false;
        struct fuse_release_in ri = {.fh = f->fh, .flags = O_RDWR};
        struct iovec iov = {&ri, sizeof(ri)};
        submit(r, op, pick_queue(r), FUSE_RELEASE, f->nodeid, &iov, 1, 0);
        break;
    }
    case K_OPEN: {
        if (f->st != F_NAMED)
            return false;
        struct fuse_open_in oi = {.flags = O_RDWR};
        struct iovec iov = {&oi, sizeof(oi)};
        submit(r, op, pick_queue(r), FUSE_OPEN, f->nodeid, &iov, 1, sizeof(struct fuse_open_out));
        break;
    }
    case K_FORGET:
        /* Part of the lookups while it is in use; all of them once it is released. */
        if ((f->st == F_NAMED || f->st == F_ORPHAN) && g_rand_boolean(r->rng))
            send_forget(r, op, f->nodeid, f->nlookup);
        else if (has_nodeid(f) && f->nlookup > 1)
            send_forget(r, op, f->nodeid,
                        (uint64_t)g_rand_int_range(r->rng, 1, (gint32)f->nlookup));
        else
            return false;
        break;
    default:
        return false;
    }
    f->busy = true;
    return true;
}

static bool try_dir_op(struct run *r, struct op *op, enum kind k, int e)
{
    struct mdir *d = &r->dirs[e];
    op->kind = k;
    op->ent = e;
    switch (k) {
    case K_MKDIR: {
        if ((e = free_dir(r)) < 0)
            return false;
        op->ent = e;
        d = &r->dirs[e];
        op->dir = pick_dir(r);
        snprintf(op->name, NAME_LEN, "d%u", r->next_name++);
        struct fuse_mkdir_in mi = {.mode = 0755};
        submit(r, op, pick_queue(r), FUSE_MKDIR, r->dirs[op->dir].nodeid,
               IOV2(&mi, sizeof(mi), op->name, strlen(op->name) + 1),
               sizeof(struct fuse_entry_out));
        break;
    }
    case K_DLOOKUP:
        if (e == 0 || !d->exists || d->busy)
            return false;
        send_name(r, op, FUSE_LOOKUP, r->dirs[d->parent].nodeid, d->name,
                  sizeof(struct fuse_entry_out));
        break;
    case K_DFORGET:
        if (e == 0 || !d->exists || d->busy || d->nlookup < 2)
            return false;
        send_forget(r, op, d->nodeid, (uint64_t)g_rand_int_range(r->rng, 1, (gint32)d->nlookup));
        break;
    default:
        return false;
    }
    d->busy = true;
    return true;
}

static enum kind pick_kind(struct run *r)
{
    unsigned total = 0;
    for (int k = 0; k < K_COUNT; k++)
        total += weights[k];
    /* Keep a population to work on. */
    if (count_files(r) < MAX_FILES / 3 && g_rand_boolean(r->rng))
        return K_CREATE;
    unsigned x = (unsigned)g_rand_int_range(r->rng, 0, (gint32)total);
    for (int k = 0; k < K_COUNT; k++) {
        if (x < weights[k])
            return (enum kind)k;
        x -= weights[k];
    }
    return K_GETATTR;
}

/* Sends one more request if a free slot and a runnable operation are found. */
static bool submit_one(struct run *r)
{
    struct op *op = NULL;
    for (int i = 0; i < DEPTH && !op; i++)
        if (!r->ops[i].used)
            op = &r->ops[i];
    if (!op)
        return false;
    for (int tries = 0; tries < 32; tries++) {
        enum kind k = pick_kind(r);
        bool ok = k == K_MKDIR || k == K_DLOOKUP || k == K_DFORGET
                      ? try_dir_op(r, op, k, g_rand_int_range(r->rng, 0, MAX_DIRS))
                      : try_file_op(r, op, k, g_rand_int_range(r->rng, 0, MAX_FILES));
        if (ok)
            return true;
    }
    return false;
}

/* ---- replies ---------------------------------------------------------------------------- */

static void check_read(struct run *r, struct op *op, const struct mfile *f,
                       const struct fe_reply *rep)
{
    uint64_t want = op->off >= f->size ? 0 : MIN((uint64_t)op->len, f->size - op->off);
    CHECK(r, op, rep->data_len == want,
          "READ %u at %" G_GUINT64_FORMAT ": %zu bytes, not %" G_GUINT64_FORMAT, op->len, op->off,
          rep->data_len, want);
    for (uint64_t done = 0; done < want; done += BLK) {
        uint32_t blk = (uint32_t)((op->off + done) / BLK);
        gen_block(r->expect, f->stamp[blk], blk);
        size_t n = MIN((uint64_t)BLK, want - done);
        CHECK(r, op, memcmp(rep->data + done, r->expect, n) == 0,
              "READ: block %u differs from the model (stamp %u)", blk, f->stamp[blk]);
    }
}

static void apply_write(struct mfile *f, const struct op *op)
{
    for (uint32_t b = 0; b < op->len / BLK; b++)
        f->stamp[op->off / BLK + b] = op->stamp;
    f->size = MAX(f->size, op->off + op->len);
}

static void complete_file_op(struct run *r, struct op *op, const struct fe_reply *rep)
{
    struct mfile *f = &r->files[op->ent];
    switch (op->kind) {
    case K_CREATE: {
        CHECK(r, op, rep->data_len >= sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out),
              "short CREATE reply");
        const struct fuse_entry_out *e = (const void *)rep->data;
        const struct fuse_open_out *o = (const void *)(e + 1);
        CHECK(r, op, e->nodeid != 0 && S_ISREG(e->attr.mode) && e->attr.size == 0,
              "CREATE: entry %" G_GUINT64_FORMAT " mode %o size %" G_GUINT64_FORMAT, e->nodeid,
              e->attr.mode, (uint64_t)e->attr.size);
        memset(f, 0, sizeof(*f));
        f->st = F_OPEN;
        f->dir = op->dir;
        memcpy(f->name, op->name, NAME_LEN);
        f->nodeid = e->nodeid;
        f->nlookup = 1;
        f->fh = o->fh;
        break;
    }
    case K_WRITE4K:
    case K_WRITE1M: {
        const struct fuse_write_out *w = (const void *)rep->data;
        CHECK(r, op, rep->data_len >= sizeof(*w) && w->size == op->len, "WRITE: %u bytes written",
              rep->data_len >= sizeof(*w) ? w->size : 0);
        apply_write(f, op);
        break;
    }
    case K_READ4K:
    case K_READ1M:
        check_read(r, op, f, rep);
        break;
    case K_RENAME:
        f->dir = op->dir;
        memcpy(f->name, op->name, NAME_LEN);
        break;
    case K_UNLINK:
        f->st = F_UNLINKED;
        break;
    case K_LOOKUP: {
        const struct fuse_entry_out *e = (const void *)rep->data;
        CHECK(r, op, rep->data_len >= sizeof(*e) && e->attr.size == f->size,
              "LOOKUP: size %" G_GUINT64_FORMAT ", the model's %" G_GUINT64_FORMAT,
              (uint64_t)e->attr.size, f->size);
        if (f->st == F_DORMANT) {
            f->st = F_NAMED;
            f->nodeid = e->nodeid;
            f->nlookup = 1;
        } else {
            CHECK(r, op, e->nodeid == f->nodeid,
                  "LOOKUP of a known inode: nodeid %" G_GUINT64_FORMAT ", not %" G_GUINT64_FORMAT,
                  e->nodeid, f->nodeid);
            f->nlookup++;
        }
        break;
    }
    case K_GETATTR: {
        const struct fuse_attr_out *a = (const void *)rep->data;
        CHECK(r, op,
              rep->data_len >= sizeof(*a) && S_ISREG(a->attr.mode) && a->attr.size == f->size &&
                  a->attr.nlink == (f->st == F_UNLINKED || f->st == F_ORPHAN ? 0u : 1u),
              "GETATTR: size %" G_GUINT64_FORMAT " nlink %u; the model: size %" G_GUINT64_FORMAT,
              (uint64_t)a->attr.size, a->attr.nlink, f->size);
        break;
    }
    case K_SETLKW:
        f->locked = true;
        break;
    case K_UNLOCK:
        f->locked = false;
        break;
    case K_GETLK: {
        const struct fuse_lk_out *l = (const void *)rep->data;
        uint32_t want = f->locked ? F_WRLCK : F_UNLCK;
        CHECK(r, op, rep->data_len >= sizeof(*l) && l->lk.type == want,
              "GETLK: type %u, the model's %u", l->lk.type, want);
        break;
    }
    case K_RELEASE:
        f->st = f->st == F_OPEN ? F_NAMED : F_ORPHAN;
        f->fh = 0;
        break;
    case K_OPEN: {
        const struct fuse_open_out *o = (const void *)rep->data;
        CHECK(r, op, rep->data_len >= sizeof(*o), "short OPEN reply");
        f->fh = o->fh;
        f->st = F_OPEN;
        break;
    }
    case K_FORGET:
        f->nlookup -= op->n;
        if (f->nlookup == 0)
            f->st = f->st == F_NAMED ? F_DORMANT : F_FREE;
        break;
    default:
        g_assert_not_reached();
    }
}

static void complete_dir_op(struct run *r, struct op *op, const struct fe_reply *rep)
{
    struct mdir *d = &r->dirs[op->ent];
    const struct fuse_entry_out *e = (const void *)rep->data;
    switch (op->kind) {
    case K_MKDIR:
        CHECK(r, op, rep->data_len >= sizeof(*e) && e->nodeid && S_ISDIR(e->attr.mode),
              "MKDIR: no directory entry");
        *d = (struct mdir){.exists = true, .parent = op->dir, .nodeid = e->nodeid, .nlookup = 1};
        memcpy(d->name, op->name, NAME_LEN);
        break;
    case K_DLOOKUP:
        CHECK(r, op, rep->data_len >= sizeof(*e) && e->nodeid == d->nodeid,
              "directory LOOKUP: another nodeid");
        d->nlookup++;
        break;
    case K_DFORGET:
        d->nlookup -= op->n;
        break;
    default:
        g_assert_not_reached();
    }
}

static bool is_dir_op(enum kind k)
{
    return k == K_MKDIR || k == K_DLOOKUP || k == K_DFORGET;
}

static void complete(struct run *r, struct op *op)
{
    struct fe_reply rep;
    int ret = fe_fuse_wait(r->fe, &op->p, 0, &rep);
    CHECK(r, op, ret == 0,
          "the reply's header does not match its request (unique %" G_GUINT64_FORMAT "): %s",
          op->p.unique, g_strerror(-ret));
    /* No error ever reaches the guest: the daemon's restarts must not show. */
    CHECK(r, op, rep.error == 0, "the guest sees %s", g_strerror(-rep.error));
    if (op->kind == K_FORGET || op->kind == K_DFORGET)
        CHECK(r, op, rep.len == 0, "FORGET answered with %u bytes", rep.len);
    if (is_dir_op(op->kind)) {
        complete_dir_op(r, op, &rep);
        r->dirs[op->ent].busy = false;
    } else {
        complete_file_op(r, op, &rep);
        r->files[op->ent].busy = false;
    }
    op->used = false;
    r->depth--;
    r->answered++;
}

static struct op *op_of(struct run *r, struct fe_pending *p)
{
    for (int i = 0; i < DEPTH; i++)
        if (r->ops[i].used && &r->ops[i].p == p)
            return &r->ops[i];
    return NULL;
}

/* ---- crash and restart ------------------------------------------------------------------ */

static void recover(struct run *r)
{
    g_assert_cmpint(test_daemon_kill_wait(r->d), ==, 0);
    int ret = test_daemon_restart(r->d);
    CHECK(r, (struct op *)NULL, ret == 0, "restart: %s", g_strerror(-ret));
    ret = fe_reconnect(r->fe);
    CHECK(r, (struct op *)NULL, ret == 0, "reconnect after the restart: %s", g_strerror(-ret));
    r->kills++;
}

/* Waits for one reply and handles it. False when the daemon went away (a kill). */
static bool step(struct run *r)
{
    struct fe_pending *p;
    int ret = fe_fuse_next(r->fe, 10000, &p);
    if (ret == -ECONNRESET)
        return false;
    if (ret == -EPROTO) {
        unsigned q;
        uint16_t head;
        fe_stray(r->fe, &q, &head);
        FAIL(r, (struct op *)NULL,
             "a used element for head %u of queue %u that no request waits for "
             "(answered twice, or never sent)",
             head, q);
    }
    CHECK(r, (struct op *)NULL, ret == 0, "%u requests in flight, no reply in 10 s: %s", r->depth,
          g_strerror(-ret));
    struct op *op = op_of(r, p);
    CHECK(r, (struct op *)NULL, op != NULL, "a reply to a request the test did not send");
    complete(r, op);
    return true;
}

/* Collects every reply (restarting the daemon if a kill is under way). */
static void drain(struct run *r)
{
    while (r->depth)
        if (!step(r))
            recover(r);
    g_assert_cmpuint(fe_pending_count(r->fe), ==, 0);
}

/* ---- checkpoints: the host against the model --------------------------------------------- */

static void check_file_on_host(struct run *r, int i)
{
    struct mfile *f = &r->files[i];
    char *path = file_path(r, i);
    gchar *data = NULL;
    gsize len = 0;
    CHECK(r, (struct op *)NULL, g_file_get_contents(path, &data, &len, NULL), "cannot read %s",
          path);
    CHECK(r, (struct op *)NULL, len == f->size,
          "%s: %zu bytes on the host, the model says %" G_GUINT64_FORMAT, path, (size_t)len,
          f->size);
    for (uint64_t off = 0; off < len; off += BLK) {
        uint32_t blk = (uint32_t)(off / BLK);
        gen_block(r->expect, f->stamp[blk], blk);
        CHECK(r, (struct op *)NULL,
              memcmp(data + off, r->expect, MIN((uint64_t)BLK, len - off)) == 0,
              "%s: block %u differs from the model (stamp %u)", path, blk, f->stamp[blk]);
    }
    if (f->st == F_OPEN) {
        int fd = open(path, O_RDWR);
        g_assert_cmpint(fd, >=, 0);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = BLK};
        g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
        close(fd);
        CHECK(r, (struct op *)NULL, fl.l_type == (f->locked ? F_WRLCK : F_UNLCK),
              "%s: the host sees lock type %d, the model says %s", path, fl.l_type,
              f->locked ? "locked" : "unlocked");
    }
    g_free(data);
    g_free(path);
}

/* The names in each directory are exactly the model's. */
static void check_dir_on_host(struct run *r, int dir)
{
    char *path = dir_path(r, dir);
    GHashTable *want = g_hash_table_new(g_str_hash, g_str_equal);
    for (int i = 0; i < MAX_FILES; i++)
        if (linked(&r->files[i]) && r->files[i].dir == dir)
            g_hash_table_add(want, r->files[i].name);
    for (int i = 1; i < MAX_DIRS; i++)
        if (r->dirs[i].exists && r->dirs[i].parent == dir)
            g_hash_table_add(want, r->dirs[i].name);
    DIR *dp = opendir(path);
    g_assert_nonnull(dp);
    unsigned seen = 0, hidden = 0, held = 0;
    for (struct dirent *de; (de = readdir(dp));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        /* The daemon keeps files the guest unlinked while it holds them (a journaled session)
         * under hidden names in the share's root: one for each, none once forgotten. */
        if (dir == 0 && g_str_has_prefix(de->d_name, HIDDEN_PREFIX)) {
            hidden++;
            continue;
        }
        CHECK(r, (struct op *)NULL, g_hash_table_contains(want, de->d_name),
              "%s/%s is on the host, not in the model", path, de->d_name);
        seen++;
    }
    closedir(dp);
    CHECK(r, (struct op *)NULL, seen == g_hash_table_size(want),
          "%s: %u names on the host, %u in the model", path, seen, g_hash_table_size(want));
    for (int i = 0; i < MAX_FILES; i++)
        held += r->files[i].st == F_UNLINKED || r->files[i].st == F_ORPHAN;
    CHECK(r, (struct op *)NULL, dir != 0 || hidden == 0 || hidden == held,
          "%u hidden files of unlinked ones on the host, the model holds %u", hidden, held);
    g_hash_table_destroy(want);
    g_free(path);
}

static void checkpoint(struct run *r)
{
    drain(r);
    for (int i = 0; i < MAX_DIRS; i++)
        if (r->dirs[i].exists)
            check_dir_on_host(r, i);
    for (int i = 0; i < MAX_FILES; i++)
        if (linked(&r->files[i]))
            check_file_on_host(r, i);
}

/* ---- the run ---------------------------------------------------------------------------- */

static void run_init(struct run *r, struct test_daemon *d, struct fe *fe, guint32 seed)
{
    memset(r, 0, sizeof(*r));
    r->d = d;
    r->fe = fe;
    r->rng = g_rand_new_with_seed(seed);
    r->buf = g_malloc(BIG);
    r->expect = g_malloc(BLK);
    r->dirs[0] = (struct mdir){.exists = true, .nodeid = FUSE_ROOT_ID};
    for (int i = 0; i < DEPTH; i++)
        r->ops[i].area = fe_alloc_pages(fe, SLOT_LEN);
}

static void run_free(struct run *r)
{
    g_rand_free(r->rng);
    g_free(r->buf);
    g_free(r->expect);
}

static void fill(struct run *r)
{
    while (r->depth < DEPTH && submit_one(r))
        ;
}

/* Sends op kind k for every entity it applies to (no randomness), then collects. */
static void sweep(struct run *r, enum kind k)
{
    for (int i = 0; i < MAX_FILES; i++) {
        struct op *op = NULL;
        for (int s = 0; s < DEPTH && !op; s++)
            if (!r->ops[s].used)
                op = &r->ops[s];
        if (!op) {
            drain(r);
            i--;
            continue;
        }
        struct mfile *f = &r->files[i];
        if (k == K_FORGET && has_nodeid(f) && !has_fh(f)) {
            op->kind = K_FORGET;
            op->ent = i;
            f->busy = true;
            send_forget(r, op, f->nodeid, f->nlookup);
        } else if (k != K_FORGET) {
            try_file_op(r, op, k, i);
        }
    }
    drain(r);
}

/* Gives back every lock, handle and lookup the guest holds; afterwards the daemon holds no
 * more fds than right after INIT: none was lost (a FORGET or RELEASE dropped by a restart). */
static void give_everything_back(struct run *r, int baseline_fds)
{
    sweep(r, K_UNLOCK);
    sweep(r, K_RELEASE);
    sweep(r, K_FORGET);
    for (int i = 1; i < MAX_DIRS; i++) {
        if (!r->dirs[i].exists)
            continue;
        struct op *op = &r->ops[0];
        op->kind = K_DFORGET;
        op->ent = i;
        r->dirs[i].busy = true;
        send_forget(r, op, r->dirs[i].nodeid, r->dirs[i].nlookup);
        drain(r);
        r->dirs[i].nlookup = 0;
    }
    for (int i = 0; i < MAX_FILES; i++)
        CHECK(r, (struct op *)NULL, r->files[i].st == F_FREE || r->files[i].st == F_DORMANT,
              "file %d still held", i);
    int fds = settled_fds(r->d);
    g_test_message("serving process fds: %d after INIT, %d with everything given back",
                   baseline_fds, fds);
    CHECK(r, (struct op *)NULL, fds == baseline_fds,
          "the daemon holds %d fds, %d right after INIT: a FORGET or RELEASE was lost", fds,
          baseline_fds);
}

static void report(const struct run *r)
{
    GString *s = g_string_new(NULL);
    for (int k = 0; k < K_COUNT; k++)
        g_string_append_printf(s, " %s=%" G_GUINT64_FORMAT, kind_names[k], r->by_kind[k]);
    g_test_message("%u kills, %" G_GUINT64_FORMAT " requests sent, %" G_GUINT64_FORMAT
                   " answered, at most %u in flight:%s",
                   r->kills, r->sent, r->answered, r->max_depth, s->str);
    g_string_free(s, TRUE);
}

static guint32 seed_of_run(void)
{
    guint32 seed = env_uint("VIRTIOFSD_CRASH_SEED", 0);
    if (!seed)
        seed = g_random_int() | 1;
    g_test_message("seed %u (VIRTIOFSD_CRASH_SEED=%u repeats this run)", seed, seed);
    return seed;
}

/*
 * kills == 0: the workload and its model alone (runs today, with or without the in-flight
 * area). Otherwise the serving process is killed kills times, each at a random moment up to
 * VIRTIOFSD_CRASH_DELAY_US after the previous restart, while requests are in flight.
 */
static void run_workload(unsigned kills)
{
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, NULL), ==, 0);
    struct fe *fe = open_ch(&d, true);
    if (kills && !offers_inflight(fe)) {
        fe_close(fe);
        test_daemon_stop(&d);
        g_test_skip(NO_INFLIGHT);
        return;
    }
    g_assert_cmpint(init_session(fe), ==, 0);
    int baseline_fds = settled_fds(&d);
    struct run *r = g_new(struct run, 1);
    run_init(r, &d, fe, seed_of_run());
    gint64 start = g_get_monotonic_time();
    if (!kills) {
        unsigned ops = env_uint("VIRTIOFSD_CRASH_OPS", 20000);
        while (r->sent < ops) {
            fill(r);
            CHECK(r, (struct op *)NULL, step(r), "the daemon went away");
            if (r->answered % CHECK_EVERY == 0)
                checkpoint(r);
        }
    } else {
        unsigned max_delay = env_uint("VIRTIOFSD_CRASH_DELAY_US", 20000);
        while (r->kills < kills) {
            if (r->kills % KILL_CHECK == 0)
                checkpoint(r);
            g_assert_cmpint(test_daemon_kill_after(
                                &d, (unsigned)g_rand_int_range(r->rng, 0, (gint32)max_delay + 1)),
                            ==, 0);
            for (;;) {
                fill(r);
                if (!step(r))
                    break;
            }
            recover(r);
        }
    }
    checkpoint(r);
    g_test_message("%.1f s", (double)(g_get_monotonic_time() - start) / 1e6);
    report(r);
    give_everything_back(r, baseline_fds);
    checkpoint(r);
    g_assert_true(test_daemon_alive(&d));
    run_free(r);
    g_free(r);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

static void test_workload_no_kill(void)
{
    run_workload(0);
}

static void test_workload_kill9(void)
{
    run_workload(env_uint("VIRTIOFSD_CRASH_KILLS", 200));
}

/* ---- the in-flight area as GET_INFLIGHT_FD hands it out ------------------------------------ */

static const struct inflight_region *region_at(const uint8_t *base, unsigned q)
{
    return (const struct inflight_region *)(base + q * region_size(QUEUE_SIZE));
}

/* Waits until the region of queue q records no request in flight and its used_idx is the
 * ring's (the back-end updates the region right after the used ring). */
static bool region_settles(struct fe *fe, const uint8_t *base, unsigned q)
{
    const struct inflight_region *reg = region_at(base, q);
    for (int i = 0; i < 1000; i++) {
        unsigned busy = 0;
        for (unsigned d = 0; d < QUEUE_SIZE; d++)
            busy += __atomic_load_n(&reg->desc[d].inflight, __ATOMIC_ACQUIRE) != 0;
        if (!busy && __atomic_load_n(&reg->used_idx, __ATOMIC_ACQUIRE) ==
                         __atomic_load_n(&fe_vq_used(fe, q)->idx, __ATOMIC_ACQUIRE))
            return true;
        g_usleep(1000);
    }
    return false;
}

static int fuse_simple(struct fe *fe, unsigned q, uint32_t opcode, uint64_t nodeid, const void *in,
                       size_t inlen, size_t outlen, struct fe_reply *r)
{
    struct iovec iov = {(void *)in, inlen};
    int ret = fe_fuse(fe, q, opcode, nodeid, &iov, inlen ? 1 : 0, outlen, r);
    return ret < 0 ? ret : r->error;
}

static void create_open(struct fe *fe, const char *name, uint64_t *nodeid, uint64_t *fh)
{
    struct {
        struct fuse_create_in ci;
        char name[32];
    } in = {.ci = {.flags = O_RDWR | O_CREAT, .mode = S_IFREG | 0644}};
    snprintf(in.name, sizeof(in.name), "%s", name);
    struct fe_reply r;
    g_assert_cmpint(fuse_simple(fe, 1, FUSE_CREATE, FUSE_ROOT_ID, &in,
                                sizeof(in.ci) + strlen(in.name) + 1,
                                sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out), &r),
                    ==, 0);
    const struct fuse_entry_out *e = (const void *)r.data;
    *nodeid = e->nodeid;
    *fh = ((const struct fuse_open_out *)(e + 1))->fh;
}

static void test_protocol_inflight_fd(void)
{
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, NULL), ==, 0);
    struct fe *fe = open_ch(&d, true);
    if (!offers_inflight(fe)) {
        fe_close(fe);
        test_daemon_stop(&d);
        g_test_skip(NO_INFLIGHT);
        return;
    }
    unsigned nq = 1 + REQUEST_QUEUES;
    int fd = fe_inflight_fd(fe);
    const struct fe_inflight_info *info = fe_inflight_info(fe);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(info->mmap_offset, ==, 0);
    g_assert_cmpuint(info->num_queues, ==, nq);
    g_assert_cmpuint(info->queue_size, ==, QUEUE_SIZE);
    g_assert_cmpuint(info->mmap_size, >=, nq * region_size(QUEUE_SIZE));
    /* A memfd the VMM cannot shrink under the daemon (SIGBUS) nor grow. */
    char link[64], target[256] = "";
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    g_assert_cmpint(readlink(link, target, sizeof(target) - 1), >, 0);
    g_assert_true(g_str_has_prefix(target, "/memfd:"));
    int seals = fcntl(fd, F_GET_SEALS);
    g_assert_cmpint(seals, >=, 0);
    g_assert_cmpint(seals & (F_SEAL_SHRINK | F_SEAL_GROW), ==, F_SEAL_SHRINK | F_SEAL_GROW);
    struct stat st;
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpuint((uint64_t)st.st_size, >=, info->mmap_size);
    g_assert_cmpint(ftruncate(fd, 4096), ==, -1);
    g_assert_cmpint(ftruncate(fd, st.st_size + 4096), ==, -1);
    uint8_t *base = mmap(NULL, info->mmap_size, PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(base != MAP_FAILED);

    g_assert_cmpint(init_session(fe), ==, 0);
    uint64_t nodeid, fh;
    create_open(fe, "probe", &nodeid, &fh);
    for (unsigned q = 0; q < nq; q++) {
        g_assert_cmpuint(region_at(base, q)->version, ==, INFLIGHT_VERSION);
        g_assert_cmpuint(region_at(base, q)->desc_num, ==, QUEUE_SIZE);
    }
    g_assert_true(region_settles(fe, base, 1));

    /* A request the daemon holds (a SETLKW that waits) is recorded in flight, with a
     * counter, at its head; once answered, its entry is clear again. */
    struct fuse_lk_in a = {.fh = fh, .owner = 1, .lk = {.start = 0, .end = 99, .type = F_WRLCK}};
    struct fe_reply r;
    g_assert_cmpint(fuse_simple(fe, 1, FUSE_SETLK, nodeid, &a, sizeof(a), 0, &r), ==, 0);
    struct fuse_lk_in b = a;
    b.owner = 2;
    struct iovec iov = {&b, sizeof(b)};
    struct fe_pending p;
    g_assert_cmpint(fe_fuse_send(fe, 2, FUSE_SETLKW, nodeid, &iov, 1, 0, 2, &p), ==, 0);
    const struct inflight_region *reg = region_at(base, 2);
    bool seen = false;
    for (int i = 0; i < 1000 && !seen; i++) {
        seen = __atomic_load_n(&reg->desc[p.head].inflight, __ATOMIC_ACQUIRE) == 1;
        if (!seen)
            g_usleep(1000);
    }
    g_assert_true(seen);
    g_assert_cmpuint(reg->desc[p.head].counter, >, 0);
    a.lk.type = F_UNLCK;
    g_assert_cmpint(fuse_simple(fe, 1, FUSE_SETLK, nodeid, &a, sizeof(a), 0, &r), ==, 0);
    g_assert_cmpint(fe_fuse_wait(fe, &p, 5000, &r), ==, 0);
    g_assert_cmpint(r.error, ==, 0);
    g_assert_true(region_settles(fe, base, 2));
    g_assert_true(region_settles(fe, base, 1));

    munmap(base, info->mmap_size);
    fe_close(fe);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

/* The restart helpers and fe_reconnect on their own: today (no in-flight area) the restarted
 * daemon starts a fresh session, which a new INIT opens. */
static void test_restart_plain(void)
{
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, NULL), ==, 0);
    struct fe *fe = open_ch(&d, true);
    bool tracked = offers_inflight(fe);
    g_assert_cmpint(init_session(fe), ==, 0);
    struct fuse_entry_out e;
    uint64_t nodeid, fh;
    create_open(fe, "probe", &nodeid, &fh);
    for (int i = 0; i < 5; i++) {
        pid_t before = test_daemon_serving_pid(&d);
        g_assert_cmpint(test_daemon_kill9(&d), ==, 0);
        g_assert_cmpint(test_daemon_restart(&d), ==, 0);
        g_assert_cmpint(test_daemon_serving_pid(&d), !=, before);
        g_assert_cmpint(fe_reconnect(fe), ==, 0);
        if (!tracked) {
            g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, -EIO);
            g_assert_cmpint(init_session(fe), ==, 0);
        }
        g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    }
    g_test_message("%u restarts, in-flight area %s", d.restarts, tracked ? "on" : "not offered");
    fe_close(fe);
    test_daemon_stop(&d);
}

/* ---- hostile in-flight areas and session state ---------------------------------------- */

enum hostile {
    H_DESC_NUM,        /* a region's desc_num is not the queue size */
    H_HEADS,           /* last_batch_head and next links out of range, heads marked in flight */
    H_ALL_INFLIGHT,    /* every entry of every region in flight */
    H_COUNTERS_EQUAL,  /* every entry in flight, all with the same counter */
    H_VERSION,         /* a version we do not know */
    H_RANDOM,          /* the regions are random bytes */
    H_SESSION_GARBAGE, /* the bytes after the regions (own page, journal) are random */
    H_SMALL,           /* mmap_size smaller than the regions */
    H_OFFSET,          /* mmap_offset past the end of the fd */
    H_NOT_MEMFD,       /* a regular file of the right size */
    H_UNSEALED,        /* a memfd the VMM could still shrink */
    H_ZERO_QUEUES,     /* num_queues 0 */
    H_QUEUE_SIZE,      /* queue_size not the rings' */
    H_COUNT
};

static const char *const hostile_names[H_COUNT] = {
    "desc_num wrong",       "heads out of range",  "every entry in flight",
    "counters equal",       "unknown version",     "random regions",
    "session area garbage", "mmap_size too small", "offset past end",
    "not a memfd",          "not sealed",          "zero queues",
    "queue_size wrong"};

static size_t align_page(size_t v)
{
    return (v + 4095) & ~(size_t)4095;
}

static void random_bytes(GRand *rng, uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 4 <= len; i += 4) {
        guint32 v = g_rand_int(rng);
        memcpy(p + i, &v, 4);
    }
}

/* Writes garbage into the live in-flight area (the VMM may write any of it at any time). */
static void corrupt_in_place(struct fe *fe, enum hostile h, GRand *rng)
{
    const struct fe_inflight_info *info = fe_inflight_info(fe);
    unsigned nq = info->num_queues;
    size_t regions = nq * region_size(QUEUE_SIZE);
    uint8_t *base =
        mmap(NULL, info->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fe_inflight_fd(fe), 0);
    g_assert_true(base != MAP_FAILED);
    for (unsigned q = 0; q < nq; q++) {
        struct inflight_region *reg = (void *)(base + q * region_size(QUEUE_SIZE));
        for (unsigned d = 0; d < QUEUE_SIZE; d++) {
            struct inflight_desc *e = &reg->desc[d];
            switch (h) {
            case H_HEADS:
                reg->last_batch_head = 0xffff;
                reg->used_idx = 0x7fff;
                e->next = (uint16_t)(QUEUE_SIZE + d);
                e->inflight = d % 3 == 0;
                e->counter = d + 1;
                break;
            case H_ALL_INFLIGHT:
                e->inflight = 1;
                e->counter = g_rand_int(rng) | 1;
                break;
            case H_COUNTERS_EQUAL:
                e->inflight = 1;
                e->counter = 7;
                break;
            default:
                break;
            }
        }
        if (h == H_DESC_NUM)
            reg->desc_num = 7;
        if (h == H_VERSION)
            reg->version = 0xbeef;
    }
    if (h == H_RANDOM)
        random_bytes(rng, base, regions);
    if (h == H_SESSION_GARBAGE) {
        size_t from = align_page(regions);
        size_t len = MIN(info->mmap_size - from, (size_t)(1u << 20) + 4096);
        random_bytes(rng, base + from, len);
    }
    munmap(base, info->mmap_size);
}

/* A new fd (and info) for the cases that hand the daemon the wrong thing. */
static int hostile_fd(struct fe *fe, enum hostile h, const struct test_daemon *d,
                      struct fe_inflight_info *info)
{
    *info = *fe_inflight_info(fe);
    int fd = -1;
    switch (h) {
    case H_SMALL:
        info->mmap_size = 4096;
        return fcntl(fe_inflight_fd(fe), F_DUPFD_CLOEXEC, 3);
    case H_OFFSET: {
        struct stat st;
        g_assert_cmpint(fstat(fe_inflight_fd(fe), &st), ==, 0);
        info->mmap_offset = (uint64_t)st.st_size;
        return fcntl(fe_inflight_fd(fe), F_DUPFD_CLOEXEC, 3);
    }
    case H_ZERO_QUEUES:
        info->num_queues = 0;
        return fcntl(fe_inflight_fd(fe), F_DUPFD_CLOEXEC, 3);
    case H_QUEUE_SIZE:
        info->queue_size = 256;
        return fcntl(fe_inflight_fd(fe), F_DUPFD_CLOEXEC, 3);
    case H_NOT_MEMFD: {
        char *path = g_build_filename(d->dir, "not-a-memfd", NULL);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        g_free(path);
        break;
    }
    case H_UNSEALED:
        fd = memfd_create("unsealed", MFD_CLOEXEC);
        break;
    default:
        return -1;
    }
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)info->mmap_size), ==, 0);
    return fd;
}

/* Takes whatever the daemon answered to heads the garbage named (no request waits for them). */
static unsigned drop_strays(struct fe *fe)
{
    unsigned n = 0;
    for (int round = 0; round < 3; round++) {
        g_usleep(30000);
        for (unsigned q = 0; q <= REQUEST_QUEUES; q++) {
            uint16_t head;
            uint32_t len;
            while (fe_vq_take_used(fe, q, &head, &len) == 0)
                n++;
        }
    }
    return n;
}

static bool warned_since(const struct test_daemon *d, long offset)
{
    char *text = test_daemon_log_since(d, offset);
    bool found = strstr(text, " warn virtiofsd]") || strstr(text, " error virtiofsd]");
    g_free(text);
    return found;
}

/* One hostile activation; false if the daemon does not offer the in-flight area. */
static bool hostile_attempt(struct test_daemon *d, unsigned i, GRand *rng)
{
    enum hostile h = (enum hostile)(i % H_COUNT);
    struct fe *fe = open_ch(d, true);
    if (!offers_inflight(fe)) {
        fe_close(fe);
        return false;
    }
    g_assert_cmpint(init_session(fe), ==, 0);
    char name[32];
    snprintf(name, sizeof(name), "h%u", i);
    uint64_t nodeid, fh;
    create_open(fe, name, &nodeid, &fh);

    struct fe_inflight_info info;
    int fd = hostile_fd(fe, h, d, &info);
    if (fd >= 0) {
        g_assert_cmpint(fe_set_inflight(fe, fd, &info), ==, 0);
        close(fd);
    } else {
        corrupt_in_place(fe, h, rng);
    }
    pid_t pid = test_daemon_serving_pid(d);
    long log_off = test_daemon_log_size(d);
    int ret = fe_reconnect(fe);
    /* Still the same process: it neither crashed nor was killed by its seccomp filter. */
    g_assert_true(test_daemon_alive(d));
    g_assert_cmpint(test_daemon_serving_pid(d), ==, pid);
    struct fuse_entry_out e;
    bool restored = false;
    if (ret == 0) {
        unsigned strays = drop_strays(fe);
        int looked = fe_lookup(fe, FUSE_ROOT_ID, name, &e);
        restored = looked == 0;
        g_test_message("%s: accepted; %s session, %u answers to garbage heads", hostile_names[h],
                       restored ? "restored" : "fresh", strays);
        /* Only a plausible region may keep the session; what fails a check must not. */
        if (h != H_ALL_INFLIGHT && h != H_COUNTERS_EQUAL)
            g_assert_cmpint(looked, ==, -EIO);
        g_assert_cmpint(init_session(fe), ==, 0);
    } else {
        g_test_message("%s: refused (%s)", hostile_names[h], g_strerror(-ret));
        fe_close(fe);
        fe = open_ch(d, true);
        g_assert_cmpint(init_session(fe), ==, 0);
    }
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, name, &e), ==, 0);
    if (!restored && !warned_since(d, log_off)) {
        g_printerr("%s: nothing logged at warn or error level\n", hostile_names[h]);
        g_assert_not_reached();
    }
    fe_close(fe);
    return true;
}

static void test_hostile(void)
{
    struct test_daemon d;
    g_assert_cmpint(test_daemon_start(&d, NULL), ==, 0);
    GRand *rng = g_rand_new_with_seed(seed_of_run());
    int baseline = -1;
    for (unsigned i = 0; i < 50; i++) {
        if (!hostile_attempt(&d, i, rng)) {
            g_test_skip(NO_INFLIGHT);
            break;
        }
        if (i == 0)
            baseline = settled_fds(&d);
    }
    if (baseline >= 0) {
        int fds = settled_fds(&d);
        g_test_message("serving process fds: %d after the first attempt, %d after 50", baseline,
                       fds);
        g_assert_cmpint(fds, <=, baseline);
    }
    g_rand_free(rng);
    g_assert_cmpint(test_daemon_stop(&d), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/crash/protocol/inflight-fd", test_protocol_inflight_fd);
    g_test_add_func("/crash/restart/plain", test_restart_plain);
    g_test_add_func("/crash/hostile/inflight-and-session", test_hostile);
    g_test_add_func("/crash/workload/no-kill", test_workload_no_kill);
    g_test_add_func("/crash/workload/kill9", test_workload_kill9);
    return g_test_run();
}
