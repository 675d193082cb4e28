/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session journal (see include/session_journal.h): what requests change in the FUSE
 * session, appended as records to shared memory the VMM keeps for us, replayed by a restarted
 * daemon into the migration's model of a session (pt_state.h) and installed as a LOAD is.
 *
 * THE AREA (format version 1). Native byte order and alignment: the area never leaves this
 * host, and a daemon of another architecture never attaches it. Every field is checked on
 * replay: the VMM can write anything into the area at any time.
 *
 *   0      header, 4096 bytes: magic "VFSJRNL\n", u32 version (1), u32 header size (4096),
 *          u64 area length, u64 half length (both what attach computes for the area it is
 *          given; anything else is refused), u64 st_dev and u64 st_ino of the share's root (a
 *          journal of another share is not ours), u32 active half (0 or 1: switched by one
 *          atomic store), u32 reserved
 *   4096   half 0, then half 1 (each half length bytes, a multiple of 8):
 *            64-byte half header: u64 first sequence number, the rest reserved
 *            records, each 8-aligned: a 32-byte header (u64 sequence, u64 tag counter, u16 tag
 *            queue, u16 tag head, u16 type, u16 reserved, u32 payload length, u32 reserved)
 *            and its payload, padded to 8 bytes
 *
 * A record is written payload first and its sequence number last, with release ordering;
 * before that, the sequence word of the slot after it is cleared. Replay reads records while
 * each one's sequence is the next expected one (first sequence, +1, ...): a record torn by a
 * crash, or whatever an older use of the half left after the last record, ends the replay.
 * Sequence numbers only grow for the life of a journal, so a half used again never shows an
 * old record as a current one. A record with the right sequence but anything invalid in it is
 * not a torn one: the journal is refused.
 *
 * RECORDS (payloads; names are 1..255 bytes, no '/', no NUL, never "." or ".."):
 *   1 INIT      u32 major, minor, max_write, max_pages, u64 flags: a new mount; everything
 *               before it is forgotten
 *   2 ENTRY     u64 nodeid, parent, nlookup, st_dev, st_ino, u32 S_IFMT bits, u16 name
 *               length, u16 reserved, the name: nlookup more lookups of nodeid (1 from a
 *               request; a snapshot's count, 0 for a ghost ancestor), found as name in parent
 *               (length 0: no name, the count only). A nodeid once known keeps its st_dev,
 *               st_ino and type (a record naming another file for it is refused); the latest
 *               name wins (a hard link's name replaces the one before).
 *   3 FORGET    u32 count, u32 reserved, count x {u64 nodeid, u64 nlookup} (saturating)
 *   4 OPEN      u64 fh, u64 nodeid, u32 host open flags (PT_STATE_OPEN_FLAGS), u32 directory
 *   5 RELEASE   u64 fh
 *   6 UNLINK    u64 parent, u32 name length, u32 reserved, the name (UNLINK and RMDIR): the
 *               node under that name has none any more
 *   7 RENAME    u64 old parent, u64 new parent, u32 renameat2 flags, u16 old and new name
 *               lengths, the names: the node under the old name moves to the new one (whatever
 *               had the new name loses it; with RENAME_EXCHANGE the two swap). A rename of a
 *               name the journal does not know changes nothing.
 *   8 COUNTERS  u64 last nodeid, u64 last fh handed out
 *   9 INTENT    u64 nodeid, nodeid2, unique, size, st_dev, st_ino, u32 FUSE opcode, u32 flags,
 *               u16 name and name2 lengths (0: none), u32 reserved, the names: a request that
 *               must not run twice (CREATE, MKDIR, MKNOD, SYMLINK, LINK, UNLINK, RMDIR, RENAME,
 *               RENAME2, an appending WRITE) is about to run (sj_intent in session_journal.h
 *               says what each field holds). Changes nothing in the model: what it is for is
 *               the request's resubmission after a restart (below).
 *  10 LOCK      u64 nodeid, fh, owner, start, end (inclusive, end <= INT64_MAX: to the end of
 *               the file), u32 type (F_RDLCK, F_WRLCK, F_UNLCK), u32 pid: a POSIX lock
 *               request of owner through handle fh succeeded (the owner's ranges change as
 *               fcntl's do: the range replaces whatever of the owner's ranges it overlaps; an
 *               owner left without ranges is gone); a FLUSH of the owner is an F_UNLCK of
 *               everything
 *  11 FLOCK     u64 fh, u64 nodeid, u32 type (F_RDLCK: LOCK_SH, F_WRLCK: LOCK_EX, F_UNLCK),
 *               u32 reserved: flock on handle fh succeeded
 * A RELEASE drops the handle's flock and the POSIX owners whose last lock request came
 * through it, and a FORGET that ends a node's count drops the owners on it, as the lock layer
 * (pt_lock.c) does.
 * Records tagged with a counter (not 0) whose request the sj_inflight callback says is still
 * in flight are left out of a replay (the request runs again): the guest never saw their
 * replies. The id counters still cover the ids they name. An INTENT of such a request is kept
 * instead: a restore keeps it in memory (sj_intent_take finds it when the resubmitted request
 * is served) and writes it again after its snapshot (a second crash before the answer must
 * find it too); and a RENAME whose effect the host already shows (the new name is the
 * recorded source, the old name is not) is applied to the model before the install, so that
 * the node it moved is found under its new name.
 *
 * THE MODEL replayed: every node with its count, (parent, name) and identity; nodes whose
 * count fell to 0 stay as ghosts, because a node's path is its parents' names joined, and a
 * directory the guest forgot may have children it still knows. Installing (restore): each
 * node with a count is found again by its path, st_dev/st_ino and type verified (pt_state's
 * verify_ids); a node with no path (a nameless ancestor, an unlinked file) or whose path now
 * names another file is installed lost (EIO to the guest) and its handles dropped
 * (lose_unfound), never silently swapped. File handles are not recorded yet: an inode whose
 * name went away is lost.
 *
 * COMPACTION. When the active half is 3/4 full, it is replayed into a snapshot written into
 * the other half (INIT, COUNTERS, every needed node parents first, every handle), followed by
 * the records of requests still in flight copied as they are (never folded: if the daemon
 * dies before they are answered, they must still be left out). Then the active half switches
 * with one atomic store. A snapshot that takes more than half a half turns journaling off
 * (one log line; the header's magic is cleared, so a crash then means a fresh session). A
 * restore writes such a snapshot too, without the records of the requests that run again
 * (they record themselves anew). FUSE_INIT and DESTROY start the other half afresh.
 *
 * COSTS. A request that changes nothing in the session costs one pointer test (none is
 * recorded). A record costs a mutex and a copy of 40..600 bytes; an ENTRY also one look-up in
 * the inode table, an OPEN one fcntl(F_GETFL). The area's pages are touched as records reach
 * them. Compaction costs a replay of the half (hash tables in memory, freed after) under the
 * mutex: requests that record wait meanwhile, the others go on.
 */
#include "session_journal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "fuse_server.h"
#include "hash.h"
#include "array_grow.h"
#include "log.h"
#include "pt_state.h"

#define SJ_MAGIC       "VFSJRNL\n"
#define SJ_VERSION     1
#define HEAD_SIZE      4096u
#define HALF_HEAD      64u
#define REC_HEAD       32u
#define PAYLOAD_MAX    16384u /* the largest record: a FORGET of FORGET_PER_REC */
#define FORGET_PER_REC 1000u
#define MIN_AREA       (256u * 1024)
#define PATH_COMPS_MAX (PATH_MAX / 2)

enum rec_type {
    R_INIT = 1,
    R_ENTRY = 2,
    R_FORGET = 3,
    R_OPEN = 4,
    R_RELEASE = 5,
    R_UNLINK = 6,
    R_RENAME = 7,
    R_COUNTERS = 8,
    R_INTENT = 9,
    R_LOCK = 10,
    R_FLOCK = 11,
    R_TYPES,
};

struct sj_head {
    char magic[8];
    uint32_t version;
    uint32_t head_size;
    uint64_t area_len;
    uint64_t half_len;
    uint64_t share_dev, share_ino;
    uint32_t active;
    uint32_t reserved;
};

struct sj_half {
    uint64_t first_seq;
    uint64_t reserved[7];
};

struct sj_rec {
    uint64_t seq;
    uint64_t counter;
    uint16_t queue, head;
    uint16_t type;
    uint16_t reserved;
    uint32_t len;
    uint32_t reserved2;
};

struct p_init {
    uint32_t major, minor, max_write, max_pages;
    uint64_t flags;
};
struct p_entry {
    uint64_t nodeid, parent, nlookup, dev, ino;
    uint32_t type;
    uint16_t namelen, reserved;
};
struct p_forget {
    uint32_t count, reserved;
};
struct p_forget_one {
    uint64_t nodeid, nlookup;
};
struct p_open {
    uint64_t fh, nodeid;
    uint32_t flags, dir;
};
struct p_release {
    uint64_t fh;
};
struct p_unlink {
    uint64_t parent;
    uint32_t namelen, reserved;
};
struct p_rename {
    uint64_t olddir, newdir;
    uint32_t flags;
    uint16_t oldlen, newlen;
};
struct p_counters {
    uint64_t last_nodeid, last_fh;
};
struct p_intent {
    uint64_t nodeid, nodeid2, unique, size, dev, ino;
    uint32_t opcode, flags;
    uint16_t namelen, name2len;
    uint32_t reserved;
};
struct p_lock {
    uint64_t nodeid, fh, owner, start, end;
    uint32_t type, pid;
};
struct p_flock {
    uint64_t fh, nodeid;
    uint32_t type, reserved;
};

_Static_assert(sizeof(struct sj_head) <= HEAD_SIZE, "header");
_Static_assert(sizeof(struct sj_half) == HALF_HEAD, "half header");
_Static_assert(sizeof(struct sj_rec) == REC_HEAD, "record header");
_Static_assert(sizeof(struct p_entry) == 48 && sizeof(struct p_forget_one) == 16, "payloads");
_Static_assert(sizeof(struct p_forget_one) == sizeof(struct fuse_forget_one), "forget layout");
_Static_assert(sizeof(struct p_intent) == 64 && sizeof(struct p_lock) == 48, "payloads");

/* Where records go next in one half. */
struct cursor {
    uint8_t *base; /* the half's first record */
    size_t len;    /* bytes for records */
    size_t off;
    uint64_t seq; /* the next record's */
};

/* An intent of a request in flight at the restore, until its resubmission takes it. */
struct kept_intent {
    struct fuse_req_tag tag;
    struct p_intent in;
    bool taken;
};

struct sj {
    struct fuse_session *se;
    uint8_t *area;
    size_t len, half_len;
    uint64_t share_dev, share_ino;
    struct sj_inflight inflight;
    pthread_mutex_t lock; /* serialises appends (and compaction) */
    bool off;             /* journaling turned off: nothing is appended any more */
    bool until_mount;     /* off only until the guest's next FUSE_INIT (see attach) */
    unsigned active;
    struct cursor cur;
    size_t compact_at;
    /* The intents of the requests in flight at the restore (under the mutex). */
    struct kept_intent *intents;
    size_t n_intents;
    uint8_t payload[PAYLOAD_MAX]; /* a replay's copy of one record's payload */
};

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static struct sj_head *head_of(struct sj *j)
{
    return (struct sj_head *)j->area;
}

static uint8_t *half_base(struct sj *j, unsigned half)
{
    return j->area + HEAD_SIZE + (size_t)half * j->half_len;
}

/* ---- an open-addressing multimap of nonzero u64 keys to u32 values ------------------------ */

struct hmap {
    uint64_t *keys; /* 0: empty */
    uint32_t *vals;
    size_t cap, n; /* cap a power of 2 */
};

static void hmap_free(struct hmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static void hmap_insert(struct hmap *m, uint64_t key, uint32_t val)
{
    size_t i = hash_u64(key) & (m->cap - 1);

    while (m->keys[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
}

static int hmap_put(struct hmap *m, uint64_t key, uint32_t val)
{
    if (2 * (m->n + 1) > m->cap) {
        struct hmap g = {.cap = m->cap ? 2 * m->cap : 64};

        g.keys = calloc(g.cap, sizeof(*g.keys));
        g.vals = calloc(g.cap, sizeof(*g.vals));
        if (!g.keys || !g.vals) {
            hmap_free(&g);
            return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                hmap_insert(&g, m->keys[i], m->vals[i]);
        hmap_free(m);
        *m = g;
    }
    hmap_insert(m, key, val);
    return 0;
}

/* The slot of the entry with key whose value match() accepts; -1 if none. */
static ssize_t hmap_find(const struct hmap *m, uint64_t key,
                         bool (*match)(const void *arg, uint32_t val), const void *arg)
{
    if (!m->cap)
        return -1;
    for (size_t i = hash_u64(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == key && (!match || match(arg, m->vals[i])))
            return (ssize_t)i;
    return -1;
}

/* Deletes slot i, moving later entries of its cluster back (no tombstones). */
static void hmap_del(struct hmap *m, size_t i)
{
    size_t mask = m->cap - 1, j = i;

    for (;;) {
        j = (j + 1) & mask;
        if (!m->keys[j])
            break;
        size_t home = hash_u64(m->keys[j]) & mask;
        /* Entry j may fill hole i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->n--;
}

/* ---- the model a replay builds ------------------------------------------------------------- */

struct m_node {
    uint64_t nodeid, parent, nlookup, dev, ino;
    uint32_t type;
    uint32_t namelen; /* 0: no name */
    size_t name_off;  /* in model.names */
    uint8_t mark;     /* the snapshot's walk */
};

struct m_handle {
    uint64_t fh, nodeid;
    uint32_t flags;
    bool dir;
    uint32_t flock; /* F_RDLCK, F_WRLCK or F_UNLCK (none) */
};

/* A POSIX lock owner on one node and the ranges it holds (never none). */
struct m_owner {
    uint64_t nodeid, owner, fh;
    uint32_t pid;
    struct m_range {
        uint64_t start, end;
        bool write;
    } * ranges;
    size_t n, cap;
};

struct model {
    struct m_node *nodes;
    size_t n_nodes, cap_nodes;
    struct hmap ids;   /* nodeid -> node */
    struct hmap names; /* name_key(parent, name) -> node */
    char *names_buf;
    size_t names_len, names_cap;
    struct m_handle *handles;
    size_t n_handles, cap_handles;
    struct hmap fhs; /* fh + 1 -> handle */
    struct m_owner *owners;
    size_t n_owners, cap_owners, n_ranges;
    struct hmap owner_ids; /* owner_key(nodeid, owner) -> owner */
    bool initialized;
    struct fuse_session_init init;
    uint64_t last_nodeid, last_fh;
    size_t n_applied, n_left_out;
    /* The records of requests still in flight a compaction keeps (header and payload). */
    uint8_t *kept;
    size_t kept_len, kept_cap;
    char why[200];
};

static int bad(struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct model *m, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(m->why, sizeof(m->why), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static void owners_clear(struct model *m)
{
    for (size_t i = 0; i < m->n_owners; i++)
        free(m->owners[i].ranges);
    m->n_owners = m->n_ranges = 0;
    hmap_free(&m->owner_ids);
}

static void model_free(struct model *m)
{
    owners_clear(m);
    free(m->owners);
    free(m->nodes);
    free(m->names_buf);
    free(m->handles);
    free(m->kept);
    hmap_free(&m->ids);
    hmap_free(&m->names);
    hmap_free(&m->fhs);
}

/* INIT: a new mount; what came before is gone. */
static void model_clear(struct model *m)
{
    hmap_free(&m->ids);
    hmap_free(&m->names);
    hmap_free(&m->fhs);
    owners_clear(m);
    m->n_nodes = m->names_len = m->n_handles = 0;
    m->initialized = false;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    return array_grow(p, cap, need, size, UINT32_MAX);
}

static uint64_t name_key(uint64_t parent, const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ hash_u64(parent);

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 0x100000001b3ULL;
    return h | 1;
}

static bool node_is(const void *arg, uint32_t val)
{
    const uint64_t *a = arg; /* {nodeid, (uintptr_t)model} */
    const struct model *m = (const struct model *)(uintptr_t)a[1];

    return m->nodes[val].nodeid == a[0];
}

static ssize_t node_find(const struct model *m, uint64_t nodeid)
{
    uint64_t arg[2] = {nodeid, (uintptr_t)m};
    ssize_t slot = hmap_find(&m->ids, nodeid, node_is, arg);

    return slot < 0 ? -1 : (ssize_t)m->ids.vals[slot];
}

struct name_q {
    const struct model *m;
    uint64_t parent;
    const char *name;
    size_t len;
};

static bool name_is(const void *arg, uint32_t val)
{
    const struct name_q *q = arg;
    const struct m_node *n = &q->m->nodes[val];

    return n->namelen == q->len && n->parent == q->parent &&
           memcmp(q->m->names_buf + n->name_off, q->name, q->len) == 0;
}

/* The name map's slot of (parent, name); -1 if no node has it. */
static ssize_t name_slot(const struct model *m, uint64_t parent, const char *name, size_t len)
{
    struct name_q q = {m, parent, name, len};

    return hmap_find(&m->names, name_key(parent, name, len), name_is, &q);
}

static ssize_t name_find(const struct model *m, uint64_t parent, const char *name, size_t len)
{
    ssize_t slot = name_slot(m, parent, name, len);

    return slot < 0 ? -1 : (ssize_t)m->names.vals[slot];
}

static bool val_is(const void *arg, uint32_t val)
{
    return *(const uint32_t *)arg == val;
}

/* Node idx has no name any more. */
static void name_drop(struct model *m, size_t idx)
{
    struct m_node *n = &m->nodes[idx];
    uint32_t v = (uint32_t)idx;
    ssize_t slot;

    if (!n->namelen)
        return;
    slot = hmap_find(&m->names, name_key(n->parent, m->names_buf + n->name_off, n->namelen), val_is,
                     &v);
    if (slot >= 0)
        hmap_del(&m->names, (size_t)slot);
    n->namelen = 0;
}

/* Node idx is now name in parent; a node that had that name loses it. */
static int name_set(struct model *m, size_t idx, uint64_t parent, const char *name, size_t len)
{
    ssize_t holder = name_find(m, parent, name, len);
    size_t off;

    if (holder >= 0)
        name_drop(m, (size_t)holder);
    name_drop(m, idx);
    if (grow((void **)&m->names_buf, &m->names_cap, m->names_len + len, 1) < 0)
        return bad(m, "out of memory");
    off = m->names_len;
    memcpy(m->names_buf + off, name, len);
    m->names_len += len;
    if (hmap_put(&m->names, name_key(parent, name, len), (uint32_t)idx) < 0)
        return bad(m, "out of memory");
    m->nodes[idx].parent = parent;
    m->nodes[idx].name_off = off;
    m->nodes[idx].namelen = (uint32_t)len;
    return 0;
}

static bool handle_is(const void *arg, uint32_t val)
{
    const uint64_t *a = arg;
    const struct model *m = (const struct model *)(uintptr_t)a[1];

    return m->handles[val].fh == a[0];
}

static ssize_t handle_slot(const struct model *m, uint64_t fh)
{
    uint64_t arg[2] = {fh, (uintptr_t)m};

    return hmap_find(&m->fhs, fh + 1, handle_is, arg);
}

static void handle_del(struct model *m, size_t slot)
{
    uint32_t idx = m->fhs.vals[slot], last = (uint32_t)(m->n_handles - 1);

    hmap_del(&m->fhs, slot);
    if (idx != last) { /* the last handle moves into the hole */
        ssize_t s = handle_slot(m, m->handles[last].fh);

        m->handles[idx] = m->handles[last];
        if (s >= 0)
            m->fhs.vals[s] = idx;
    }
    m->n_handles--;
}

/* ---- the model's locks ---------------------------------------------------------------------- */

static uint64_t owner_key(uint64_t nodeid, uint64_t owner)
{
    return hash_u64(nodeid ^ hash_u64(owner)) | 1;
}

static bool owner_is(const void *arg, uint32_t val)
{
    const uint64_t *a = arg; /* {nodeid, owner, (uintptr_t)model} */
    const struct model *m = (const struct model *)(uintptr_t)a[2];

    return m->owners[val].nodeid == a[0] && m->owners[val].owner == a[1];
}

static ssize_t owner_slot(const struct model *m, uint64_t nodeid, uint64_t owner)
{
    uint64_t arg[3] = {nodeid, owner, (uintptr_t)m};

    return hmap_find(&m->owner_ids, owner_key(nodeid, owner), owner_is, arg);
}

/* Drops owner idx; the last one moves into its place. */
static void owner_del(struct model *m, size_t idx)
{
    struct m_owner *o = &m->owners[idx];
    ssize_t slot = owner_slot(m, o->nodeid, o->owner);
    size_t last = m->n_owners - 1;

    if (slot >= 0)
        hmap_del(&m->owner_ids, (size_t)slot);
    m->n_ranges -= o->n;
    free(o->ranges);
    if (idx != last) {
        ssize_t s = owner_slot(m, m->owners[last].nodeid, m->owners[last].owner);

        m->owners[idx] = m->owners[last];
        if (s >= 0)
            m->owner_ids.vals[s] = (uint32_t)idx;
    }
    m->n_owners--;
}

/* What the lock layer drops: by_fh, the owners whose last request came through fh (RELEASE);
 * otherwise every owner on nodeid (its FORGET). */
static void owners_drop(struct model *m, bool by_fh, uint64_t fh, uint64_t nodeid)
{
    for (size_t i = 0; i < m->n_owners;) {
        if (by_fh ? m->owners[i].fh == fh : m->owners[i].nodeid == nodeid)
            owner_del(m, i);
        else
            i++;
    }
}

/* Owner o's ranges after a lock of [start, end] of type: the parts of its ranges outside
 * [start, end] stay, and the range is added unless it unlocks (fcntl's semantics for one
 * owner; adjacent ranges of one type are not merged: taking them back merges them). */
static int ranges_set(struct model *m, struct m_owner *o, uint64_t start, uint64_t end,
                      uint32_t type)
{
    struct m_range *nr = malloc((2 * o->n + 1) * sizeof(*nr));
    size_t n = 0;

    if (!nr)
        return bad(m, "out of memory");
    for (size_t i = 0; i < o->n; i++) {
        struct m_range r = o->ranges[i];

        if (r.end < start || r.start > end) {
            nr[n++] = r;
            continue;
        }
        if (r.start < start)
            nr[n++] = (struct m_range){r.start, start - 1, r.write};
        if (r.end > end)
            nr[n++] = (struct m_range){end + 1, r.end, r.write};
    }
    if (type != F_UNLCK)
        nr[n++] = (struct m_range){start, end, type == F_WRLCK};
    m->n_ranges = m->n_ranges - o->n + n;
    free(o->ranges);
    o->ranges = nr;
    o->n = o->cap = n;
    if (m->n_ranges > PT_STATE_MAX_RANGES)
        return bad(m, "more than %u lock ranges", PT_STATE_MAX_RANGES);
    return 0;
}

static int apply_lock(struct model *m, const struct p_lock *l)
{
    ssize_t slot = owner_slot(m, l->nodeid, l->owner);
    size_t idx;
    int ret;

    if (slot < 0) {
        if (l->type == F_UNLCK)
            return 0; /* nothing held, nothing to drop */
        if (m->n_owners >= PT_STATE_MAX_OWNERS)
            return bad(m, "more than %u lock owners", PT_STATE_MAX_OWNERS);
        if (grow((void **)&m->owners, &m->cap_owners, m->n_owners + 1, sizeof(*m->owners)) < 0 ||
            hmap_put(&m->owner_ids, owner_key(l->nodeid, l->owner), (uint32_t)m->n_owners) < 0)
            return bad(m, "out of memory");
        idx = m->n_owners++;
        m->owners[idx] = (struct m_owner){.nodeid = l->nodeid, .owner = l->owner};
    } else {
        idx = m->owner_ids.vals[slot];
    }
    m->owners[idx].fh = l->fh;
    if (l->type != F_UNLCK)
        m->owners[idx].pid = l->pid;
    ret = ranges_set(m, &m->owners[idx], l->start, l->end, l->type);
    if (ret == 0 && !m->owners[idx].n)
        owner_del(m, idx);
    return ret;
}

/* ---- records: decoding and checking --------------------------------------------------------- */

/* One record's fields, checked; names point into the payload copy. */
struct prec {
    unsigned type;
    struct p_init init;
    struct p_entry entry;
    struct p_open open;
    struct p_counters counters;
    uint64_t fh;     /* RELEASE */
    uint64_t parent; /* UNLINK */
    struct p_rename rename;
    struct p_intent intent;
    struct p_lock lock;
    struct p_flock flock;
    const char *name, *name2;
    size_t namelen, name2len;
    const uint8_t *forgets; /* FORGET: count p_forget_one, unaligned */
    uint32_t count;
};

static bool plain_name(const char *name, size_t len)
{
    return len >= 1 && len <= NAME_MAX && !memchr(name, '/', len) && !memchr(name, '\0', len) &&
           !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.');
}

static bool valid_id(uint64_t id)
{
    return id != 0 && id <= PT_STATE_MAX_ID;
}

static int decode_entry(struct model *m, const uint8_t *p, size_t len, struct prec *r)
{
    struct p_entry *e = &r->entry;

    if (len < sizeof(*e))
        return bad(m, "short ENTRY record");
    memcpy(e, p, sizeof(*e));
    r->name = (const char *)p + sizeof(*e);
    r->namelen = e->namelen;
    if (len != sizeof(*e) + e->namelen || e->reserved)
        return bad(m, "ENTRY record of %zu bytes for a name of %u", len, e->namelen);
    if (!valid_id(e->nodeid) || (e->namelen && !valid_id(e->parent)) || e->parent == e->nodeid)
        return bad(m, "ENTRY of nodeid %llu in %llu", (unsigned long long)e->nodeid,
                   (unsigned long long)e->parent);
    if ((e->type && !pt_state_type_valid(e->type)) || e->nlookup > PT_STATE_MAX_ID)
        return bad(m, "ENTRY of nodeid %llu: type 0%o, count %llu", (unsigned long long)e->nodeid,
                   e->type, (unsigned long long)e->nlookup);
    if (e->namelen && !plain_name(r->name, e->namelen))
        return bad(m, "ENTRY of nodeid %llu: a name that is not one plain name",
                   (unsigned long long)e->nodeid);
    return 0;
}

static int decode_rename(struct model *m, const uint8_t *p, size_t len, struct prec *r)
{
    struct p_rename *rn = &r->rename;
    const uint32_t known = RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT;

    if (len < sizeof(*rn))
        return bad(m, "short RENAME record");
    memcpy(rn, p, sizeof(*rn));
    r->name = (const char *)p + sizeof(*rn);
    r->namelen = rn->oldlen;
    r->name2 = r->name + rn->oldlen;
    r->name2len = rn->newlen;
    if (len != sizeof(*rn) + rn->oldlen + rn->newlen || !valid_id(rn->olddir) ||
        !valid_id(rn->newdir) || (rn->flags & ~known) || !plain_name(r->name, rn->oldlen) ||
        !plain_name(r->name2, rn->newlen))
        return bad(m, "invalid RENAME record");
    return 0;
}

static bool once_opcode(uint32_t op)
{
    switch (op) {
    case FUSE_CREATE:
    case FUSE_MKDIR:
    case FUSE_MKNOD:
    case FUSE_SYMLINK:
    case FUSE_LINK:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_WRITE:
        return true;
    }
    return false;
}

static int decode_intent(struct model *m, const uint8_t *p, size_t len, struct prec *r)
{
    struct p_intent *in = &r->intent;
    const uint32_t known = RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT;

    if (len < sizeof(*in))
        return bad(m, "short INTENT record");
    memcpy(in, p, sizeof(*in));
    r->name = (const char *)p + sizeof(*in);
    r->namelen = in->namelen;
    r->name2 = r->name + in->namelen;
    r->name2len = in->name2len;
    if (len != sizeof(*in) + in->namelen + in->name2len || in->reserved ||
        !once_opcode(in->opcode) || !valid_id(in->nodeid) || in->nodeid2 > PT_STATE_MAX_ID ||
        (in->flags & ~known) || (in->namelen && !plain_name(r->name, in->namelen)) ||
        (in->name2len && !plain_name(r->name2, in->name2len)))
        return bad(m, "invalid INTENT record");
    return 0;
}

static int decode_lock(struct model *m, const uint8_t *p, size_t len, struct prec *r)
{
    if (r->type == R_FLOCK) {
        if (len != sizeof(r->flock))
            return bad(m, "FLOCK record of %zu bytes", len);
        memcpy(&r->flock, p, sizeof(r->flock));
        if (r->flock.fh > PT_STATE_MAX_ID || !valid_id(r->flock.nodeid) || r->flock.reserved ||
            (r->flock.type != F_RDLCK && r->flock.type != F_WRLCK && r->flock.type != F_UNLCK))
            return bad(m, "invalid FLOCK record");
        return 0;
    }
    if (len != sizeof(r->lock))
        return bad(m, "LOCK record of %zu bytes", len);
    memcpy(&r->lock, p, sizeof(r->lock));
    if (!valid_id(r->lock.nodeid) || r->lock.fh > PT_STATE_MAX_ID || r->lock.start > r->lock.end ||
        r->lock.end > PT_STATE_LOCK_EOF ||
        (r->lock.type != F_RDLCK && r->lock.type != F_WRLCK && r->lock.type != F_UNLCK))
        return bad(m, "invalid LOCK record");
    return 0;
}

static int decode(struct model *m, unsigned type, const uint8_t *p, size_t len, struct prec *r)
{
    struct p_unlink u;
    struct p_forget f;

    memset(r, 0, sizeof(*r));
    r->type = type;
    switch (type) {
    case R_INIT:
        if (len != sizeof(r->init))
            return bad(m, "INIT record of %zu bytes", len);
        memcpy(&r->init, p, sizeof(r->init));
        return 0;
    case R_ENTRY:
        return decode_entry(m, p, len, r);
    case R_FORGET:
        if (len < sizeof(f))
            return bad(m, "short FORGET record");
        memcpy(&f, p, sizeof(f));
        if (f.reserved || f.count > FORGET_PER_REC ||
            len != sizeof(f) + (size_t)f.count * sizeof(struct p_forget_one))
            return bad(m, "FORGET record of %zu bytes for %u nodeids", len, f.count);
        r->forgets = p + sizeof(f);
        r->count = f.count;
        for (uint32_t i = 0; i < f.count; i++) {
            struct p_forget_one one;

            memcpy(&one, r->forgets + i * sizeof(one), sizeof(one));
            if (!valid_id(one.nodeid))
                return bad(m, "FORGET of nodeid %llu", (unsigned long long)one.nodeid);
        }
        return 0;
    case R_OPEN:
        if (len != sizeof(r->open))
            return bad(m, "OPEN record of %zu bytes", len);
        memcpy(&r->open, p, sizeof(r->open));
        if (r->open.fh > PT_STATE_MAX_ID || !valid_id(r->open.nodeid) || r->open.dir > 1 ||
            (r->open.flags & ~(uint32_t)(PT_STATE_OPEN_FLAGS | PT_STATE_OPEN_DROPPED)))
            return bad(m, "invalid OPEN record (handle %llu of nodeid %llu)",
                       (unsigned long long)r->open.fh, (unsigned long long)r->open.nodeid);
        return 0;
    case R_RELEASE:
        if (len != sizeof(r->fh))
            return bad(m, "RELEASE record of %zu bytes", len);
        memcpy(&r->fh, p, sizeof(r->fh));
        return 0;
    case R_UNLINK:
        if (len < sizeof(u))
            return bad(m, "short UNLINK record");
        memcpy(&u, p, sizeof(u));
        r->parent = u.parent;
        r->name = (const char *)p + sizeof(u);
        r->namelen = u.namelen;
        if (u.reserved || len != sizeof(u) + (size_t)u.namelen || !valid_id(u.parent) ||
            !plain_name(r->name, u.namelen))
            return bad(m, "invalid UNLINK record");
        return 0;
    case R_RENAME:
        return decode_rename(m, p, len, r);
    case R_COUNTERS:
        if (len != sizeof(r->counters))
            return bad(m, "COUNTERS record of %zu bytes", len);
        memcpy(&r->counters, p, sizeof(r->counters));
        if (r->counters.last_nodeid > PT_STATE_MAX_ID || r->counters.last_fh > PT_STATE_MAX_ID)
            return bad(m, "COUNTERS out of range");
        return 0;
    case R_INTENT:
        return decode_intent(m, p, len, r);
    case R_LOCK:
    case R_FLOCK:
        return decode_lock(m, p, len, r);
    }
    return bad(m, "unknown record type %u", type);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* The ids a record names cover the counters (also when it is left out). */
static void note_ids(struct model *m, const struct prec *r)
{
    if (r->type == R_ENTRY)
        m->last_nodeid = max_u64(m->last_nodeid, r->entry.nodeid);
    if (r->type == R_OPEN) {
        m->last_nodeid = max_u64(m->last_nodeid, r->open.nodeid);
        m->last_fh = max_u64(m->last_fh, r->open.fh);
    }
    if (r->type == R_COUNTERS) {
        m->last_nodeid = max_u64(m->last_nodeid, r->counters.last_nodeid);
        m->last_fh = max_u64(m->last_fh, r->counters.last_fh);
    }
}

/* ---- records: applying ----------------------------------------------------------------------- */

static int apply_entry(struct model *m, const struct prec *r)
{
    const struct p_entry *e = &r->entry;
    ssize_t idx;

    if (e->nodeid == FUSE_ROOT_ID)
        return 0; /* the root is always there, pinned */
    idx = node_find(m, e->nodeid);
    if (idx < 0) {
        if (grow((void **)&m->nodes, &m->cap_nodes, m->n_nodes + 1, sizeof(*m->nodes)) < 0 ||
            hmap_put(&m->ids, e->nodeid, (uint32_t)m->n_nodes) < 0)
            return bad(m, "out of memory");
        idx = (ssize_t)m->n_nodes++;
        m->nodes[idx] = (struct m_node){.nodeid = e->nodeid,
                                        .nlookup = e->nlookup,
                                        .dev = e->dev,
                                        .ino = e->ino,
                                        .type = e->type};
    } else {
        struct m_node *n = &m->nodes[idx];

        if (n->dev != e->dev || n->ino != e->ino || n->type != e->type)
            return bad(m, "nodeid %llu names two different files", (unsigned long long)e->nodeid);
        n->nlookup =
            n->nlookup + e->nlookup > PT_STATE_MAX_ID ? PT_STATE_MAX_ID : n->nlookup + e->nlookup;
    }
    if (!e->namelen)
        return 0;
    /* A parent unknown here (it cannot be, from this daemon): the node has no path. */
    if (e->parent != FUSE_ROOT_ID && node_find(m, e->parent) < 0) {
        name_drop(m, (size_t)idx);
        return 0;
    }
    return name_set(m, (size_t)idx, e->parent, r->name, r->namelen);
}

static void apply_forget(struct model *m, const struct prec *r)
{
    for (uint32_t i = 0; i < r->count; i++) {
        struct p_forget_one one;
        ssize_t idx;

        memcpy(&one, r->forgets + i * sizeof(one), sizeof(one));
        idx = node_find(m, one.nodeid);
        if (idx < 0)
            continue;
        /* a ghost once 0: kept for its children's paths */
        m->nodes[idx].nlookup -=
            one.nlookup < m->nodes[idx].nlookup ? one.nlookup : m->nodes[idx].nlookup;
        if (!m->nodes[idx].nlookup && m->n_owners)
            owners_drop(m, false, 0, one.nodeid);
    }
}

static int apply_open(struct model *m, const struct prec *r)
{
    const struct p_open *o = &r->open;

    if (handle_slot(m, o->fh) >= 0)
        return bad(m, "handle %llu opened twice", (unsigned long long)o->fh);
    if (grow((void **)&m->handles, &m->cap_handles, m->n_handles + 1, sizeof(*m->handles)) < 0 ||
        hmap_put(&m->fhs, o->fh + 1, (uint32_t)m->n_handles) < 0)
        return bad(m, "out of memory");
    m->handles[m->n_handles++] = (struct m_handle){
        .fh = o->fh, .nodeid = o->nodeid, .flags = o->flags, .dir = o->dir, .flock = F_UNLCK};
    return 0;
}

static int apply_rename(struct model *m, const struct prec *r)
{
    const struct p_rename *rn = &r->rename;
    ssize_t src = name_find(m, rn->olddir, r->name, r->namelen), dst;
    int ret;

    if (src < 0)
        return 0; /* a name the journal never knew: nothing it knows moves */
    if (!(rn->flags & RENAME_EXCHANGE))
        return name_set(m, (size_t)src, rn->newdir, r->name2, r->name2len);
    dst = name_find(m, rn->newdir, r->name2, r->name2len);
    name_drop(m, (size_t)src);
    ret = dst >= 0 ? name_set(m, (size_t)dst, rn->olddir, r->name, r->namelen) : 0;
    return ret < 0 ? ret : name_set(m, (size_t)src, rn->newdir, r->name2, r->name2len);
}

static int apply(struct model *m, const struct prec *r)
{
    ssize_t idx;

    note_ids(m, r);
    switch (r->type) {
    case R_INIT:
        model_clear(m);
        m->initialized = true;
        m->init = (struct fuse_session_init){.major = r->init.major,
                                             .minor = r->init.minor,
                                             .flags = r->init.flags,
                                             .max_write = r->init.max_write,
                                             .max_pages = r->init.max_pages};
        return 0;
    case R_ENTRY:
        return apply_entry(m, r);
    case R_FORGET:
        apply_forget(m, r);
        return 0;
    case R_OPEN:
        return apply_open(m, r);
    case R_RELEASE:
        idx = handle_slot(m, r->fh);
        if (idx >= 0)
            handle_del(m, (size_t)idx);
        if (m->n_owners)
            owners_drop(m, true, r->fh, 0);
        return 0;
    case R_LOCK:
        return apply_lock(m, &r->lock);
    case R_FLOCK:
        idx = handle_slot(m, r->flock.fh);
        if (idx >= 0 && m->handles[m->fhs.vals[idx]].nodeid == r->flock.nodeid)
            m->handles[m->fhs.vals[idx]].flock = r->flock.type;
        return 0;
    case R_UNLINK:
        idx = name_find(m, r->parent, r->name, r->namelen);
        if (idx >= 0)
            name_drop(m, (size_t)idx);
        return 0;
    case R_RENAME:
        return apply_rename(m, r);
    }
    return 0; /* COUNTERS: note_ids; INTENT: nothing (see replay) */
}

/* ---- reading a half ------------------------------------------------------------------------ */

enum in_flight_records {
    DROP_IN_FLIGHT, /* after a restart: they run again */
    KEEP_IN_FLIGHT, /* compaction while serving: copied after the snapshot */
};

static int keep_record(struct model *m, const struct sj_rec *h, const uint8_t *payload)
{
    size_t need = REC_HEAD + pad8(h->len);

    if (grow((void **)&m->kept, &m->kept_cap, m->kept_len + need, 1) < 0)
        return bad(m, "out of memory");
    memcpy(m->kept + m->kept_len, h, REC_HEAD);
    memcpy(m->kept + m->kept_len + REC_HEAD, payload, h->len);
    memset(m->kept + m->kept_len + REC_HEAD + h->len, 0, pad8(h->len) - h->len);
    m->kept_len += need;
    return 0;
}

/*
 * Replays half into m; *end is where the next record goes. Everything is copied out of the
 * area before it is looked at (the VMM may change it meanwhile).
 */
static int replay(struct sj *j, unsigned half, struct model *m, enum in_flight_records mode,
                  struct cursor *end)
{
    uint8_t *base = half_base(j, half);
    struct cursor c = {.base = base + HALF_HEAD, .len = j->half_len - HALF_HEAD};
    struct sj_half hh;

    memcpy(&hh, base, sizeof(hh));
    if (hh.first_seq == 0 || hh.first_seq > PT_STATE_MAX_ID)
        return bad(m, "half %u starts at sequence %llu", half, (unsigned long long)hh.first_seq);
    c.seq = hh.first_seq;
    while (c.off + REC_HEAD <= c.len) {
        struct sj_rec h;
        struct prec r;
        int ret;

        if (__atomic_load_n((uint64_t *)(c.base + c.off), __ATOMIC_ACQUIRE) != c.seq)
            break; /* the end: nothing, or a record torn by a crash */
        memcpy(&h, c.base + c.off, sizeof(h));
        if (h.seq != c.seq)
            break;
        if (h.len > PAYLOAD_MAX || h.len > c.len - c.off - REC_HEAD || h.reserved || h.reserved2)
            return bad(m, "record %llu: length %u past the end, or reserved fields set",
                       (unsigned long long)h.seq, h.len);
        memcpy(j->payload, c.base + c.off + REC_HEAD, h.len);
        ret = decode(m, h.type, j->payload, h.len, &r);
        if (ret < 0)
            return ret;
        const struct fuse_req_tag tag = {.counter = h.counter, .queue = h.queue, .head = h.head};
        if (h.counter && j->inflight.in_flight(j->inflight.opaque, &tag)) {
            note_ids(m, &r);
            m->n_left_out++;
            /* After a restart only its INTENT stays: the resubmission asks for it. */
            ret = mode == KEEP_IN_FLIGHT || h.type == R_INTENT ? keep_record(m, &h, j->payload) : 0;
        } else {
            ret = apply(m, &r);
            m->n_applied++;
        }
        if (ret < 0)
            return ret;
        c.off += REC_HEAD + pad8(h.len);
        c.seq++;
    }
    if (end)
        *end = c;
    return 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* Appends one record at c; -ENOSPC if it does not fit. The caller holds the mutex (or is
 * alone: attach). */
static int put_rec(struct cursor *c, unsigned type, const struct fuse_req_tag *tag,
                   const struct iovec *parts, int nparts)
{
    size_t plen = 0, at = REC_HEAD;
    uint8_t *r;

    for (int i = 0; i < nparts; i++)
        plen += parts[i].iov_len;
    size_t need = REC_HEAD + pad8(plen);
    if (plen > PAYLOAD_MAX || c->off > c->len || need > c->len - c->off)
        return -ENOSPC;
    r = c->base + c->off;
    /* The slot after this record must not read as the record after it (an older use of the
     * half left records there): its sequence word is cleared before this one is published. */
    if (need + REC_HEAD <= c->len - c->off)
        __atomic_store_n((uint64_t *)(r + need), 0, __ATOMIC_RELAXED);
    struct sj_rec h = {.counter = tag ? tag->counter : 0,
                       .queue = tag ? tag->queue : 0,
                       .head = tag ? tag->head : 0,
                       .type = (uint16_t)type,
                       .len = (uint32_t)plen};
    memcpy(r + 8, (const uint8_t *)&h + 8, REC_HEAD - 8);
    for (int i = 0; i < nparts; i++) {
        if (parts[i].iov_len) /* an empty part may have no buffer at all */
            memcpy(r + at, parts[i].iov_base, parts[i].iov_len);
        at += parts[i].iov_len;
    }
    memset(r + at, 0, need - at);
    /* Last, and ordered after all of the above: the record exists from here on. */
    __atomic_store_n((uint64_t *)r, c->seq, __ATOMIC_RELEASE);
    c->off += need;
    c->seq++;
    return 0;
}

/* Starts half afresh for records from sequence first (not active yet). */
static void half_start(struct sj *j, unsigned half, uint64_t first, struct cursor *c)
{
    uint8_t *base = half_base(j, half);
    struct sj_half hh = {.first_seq = first};

    *c = (struct cursor){.base = base + HALF_HEAD, .len = j->half_len - HALF_HEAD, .seq = first};
    __atomic_store_n((uint64_t *)c->base, 0, __ATOMIC_RELAXED);
    memcpy(base, &hh, sizeof(hh));
}

/* Makes half the active one, with everything written into it before. */
static void switch_to(struct sj *j, unsigned half, const struct cursor *c)
{
    __atomic_store_n(&head_of(j)->active, half, __ATOMIC_RELEASE);
    j->active = half;
    j->cur = *c;
}

/* A crash from now on means a fresh session: the header no longer reads as a journal. */
static void turn_off(struct sj *j, const char *why)
{
    __atomic_store_n((uint64_t *)head_of(j)->magic, 0, __ATOMIC_RELEASE);
    j->off = true;
    log_warn("session journal: turned off (%s): a daemon restarted now starts a fresh session",
             why);
}

static int put_entry(struct cursor *c, const struct fuse_req_tag *tag, const struct p_entry *e,
                     const char *name)
{
    struct iovec v[2] = {{(void *)e, sizeof(*e)}, {(void *)name, e->namelen}};

    return put_rec(c, R_ENTRY, tag, v, 2);
}

/* Marks node idx needed in the snapshot, with the ancestors its path goes through. */
static void mark_needed(struct model *m, size_t idx)
{
    for (size_t steps = 0; steps <= m->n_nodes; steps++) {
        struct m_node *n = &m->nodes[idx];
        ssize_t p;

        if (n->mark)
            return;
        n->mark = 1;
        if (!n->namelen || n->parent == FUSE_ROOT_ID || (p = node_find(m, n->parent)) < 0)
            return;
        idx = (size_t)p;
    }
}

/* Writes node idx after its needed ancestors (parents first, so a replay places each). */
static int emit_node(struct model *m, size_t idx, struct cursor *c, size_t *stack)
{
    size_t depth = 0;

    /* Up while the ancestor is needed and not written yet (mark 1); 3: on the stack. */
    for (size_t cur = idx; m->nodes[cur].mark == 1 && depth < m->n_nodes;) {
        ssize_t p;

        m->nodes[cur].mark = 3;
        stack[depth++] = cur;
        if (!m->nodes[cur].namelen || m->nodes[cur].parent == FUSE_ROOT_ID ||
            (p = node_find(m, m->nodes[cur].parent)) < 0)
            break;
        cur = (size_t)p;
    }
    while (depth) {
        const struct m_node *n = &m->nodes[stack[--depth]];
        struct p_entry e = {.nodeid = n->nodeid,
                            .parent = n->namelen ? n->parent : 0,
                            .nlookup = n->nlookup,
                            .dev = n->dev,
                            .ino = n->ino,
                            .type = n->type,
                            .namelen = (uint16_t)n->namelen};
        /* No names at all: names_buf is still NULL (and a NULL + 0 is undefined). */
        const char *name = n->namelen ? m->names_buf + n->name_off : "";
        int ret = put_entry(c, NULL, &e, name);

        m->nodes[stack[depth]].mark = 2;
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The nodeids the kept records name: needed in the snapshot (their replay places them). */
static void mark_kept(struct model *m)
{
    for (size_t off = 0; off < m->kept_len;) {
        struct sj_rec h;
        struct prec r;
        uint64_t ids[2] = {0, 0};

        memcpy(&h, m->kept + off, sizeof(h));
        if (decode(m, h.type, m->kept + off + REC_HEAD, h.len, &r) == 0) {
            if (r.type == R_ENTRY)
                ids[0] = r.entry.parent, ids[1] = r.entry.nodeid;
            else if (r.type == R_OPEN)
                ids[0] = r.open.nodeid;
            else if (r.type == R_UNLINK)
                ids[0] = r.parent;
            else if (r.type == R_RENAME)
                ids[0] = r.rename.olddir, ids[1] = r.rename.newdir;
        }
        for (int i = 0; i < 2; i++) {
            ssize_t idx = ids[i] ? node_find(m, ids[i]) : -1;

            if (idx >= 0)
                mark_needed(m, (size_t)idx);
        }
        off += REC_HEAD + pad8(h.len);
    }
}

/* Whether handle fh of nodeid is in the model, on a node the guest still holds. */
static bool live_handle(const struct model *m, uint64_t fh, uint64_t nodeid)
{
    ssize_t slot = handle_slot(m, fh), idx = node_find(m, nodeid);

    return slot >= 0 && m->handles[m->fhs.vals[slot]].nodeid == nodeid && idx >= 0 &&
           m->nodes[idx].nlookup;
}

/* Every owner's ranges and every handle's flock, of the handles a snapshot keeps. */
static int write_locks(struct model *m, struct cursor *c)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < m->n_owners; i++) {
        const struct m_owner *o = &m->owners[i];

        if (!live_handle(m, o->fh, o->nodeid))
            continue;
        for (size_t k = 0; ret == 0 && k < o->n; k++) {
            struct p_lock l = {.nodeid = o->nodeid,
                               .fh = o->fh,
                               .owner = o->owner,
                               .start = o->ranges[k].start,
                               .end = o->ranges[k].end,
                               .type = o->ranges[k].write ? F_WRLCK : F_RDLCK,
                               .pid = o->pid};
            struct iovec v = {&l, sizeof(l)};

            ret = put_rec(c, R_LOCK, NULL, &v, 1);
        }
    }
    for (size_t i = 0; ret == 0 && i < m->n_handles; i++) {
        const struct m_handle *h = &m->handles[i];
        struct p_flock f = {.fh = h->fh, .nodeid = h->nodeid, .type = h->flock};
        struct iovec v = {&f, sizeof(f)};

        if (h->flock != F_UNLCK && live_handle(m, h->fh, h->nodeid))
            ret = put_rec(c, R_FLOCK, NULL, &v, 1);
    }
    return ret;
}

/* The snapshot of m at c: INIT, COUNTERS, the needed nodes, the handles, the locks, the kept
 * records. */
static int write_snapshot(struct model *m, struct cursor *c)
{
    struct p_init in = {.major = m->init.major,
                        .minor = m->init.minor,
                        .max_write = m->init.max_write,
                        .max_pages = m->init.max_pages,
                        .flags = m->init.flags};
    struct p_counters ct = {.last_nodeid = m->last_nodeid, .last_fh = m->last_fh};
    struct iovec v = {&in, sizeof(in)};
    size_t *stack = calloc(m->n_nodes + 1, sizeof(*stack));
    int ret = stack ? 0 : -ENOMEM;

    if (ret == 0 && m->initialized)
        ret = put_rec(c, R_INIT, NULL, &v, 1);
    v = (struct iovec){&ct, sizeof(ct)};
    if (ret == 0)
        ret = put_rec(c, R_COUNTERS, NULL, &v, 1);
    for (size_t i = 0; i < m->n_nodes; i++)
        m->nodes[i].mark = 0;
    for (size_t i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].nlookup)
            mark_needed(m, i);
    mark_kept(m);
    for (size_t i = 0; ret == 0 && i < m->n_nodes; i++)
        ret = emit_node(m, i, c, stack);
    free(stack);
    for (size_t i = 0; ret == 0 && i < m->n_handles; i++) {
        const struct m_handle *h = &m->handles[i];
        ssize_t idx = node_find(m, h->nodeid);
        struct p_open o = {.fh = h->fh, .nodeid = h->nodeid, .flags = h->flags, .dir = h->dir};

        if (idx < 0 || !m->nodes[idx].nlookup)
            continue; /* the guest forgot its inode: no restore could reopen it */
        v = (struct iovec){&o, sizeof(o)};
        ret = put_rec(c, R_OPEN, NULL, &v, 1);
    }
    if (ret == 0)
        ret = write_locks(m, c);
    for (size_t off = 0; ret == 0 && off < m->kept_len;) {
        struct sj_rec h;
        const struct fuse_req_tag tag = {0};

        memcpy(&h, m->kept + off, sizeof(h));
        struct fuse_req_tag t = {.counter = h.counter, .queue = h.queue, .head = h.head};
        v = (struct iovec){m->kept + off + REC_HEAD, h.len};
        ret = put_rec(c, h.type, h.counter ? &t : &tag, &v, 1);
        off += REC_HEAD + pad8(h.len);
    }
    /* Room to go on: a snapshot that fills more than half a half would compact again soon. */
    if (ret == 0 && c->off > c->len / 2)
        ret = -ENOSPC;
    return ret;
}

/* Replays the active half into a snapshot in the other one, and switches. Under the mutex. */
static void compact(struct sj *j)
{
    struct model m = {0};
    struct cursor c;
    unsigned other = !j->active;
    int ret = replay(j, j->active, &m, KEEP_IN_FLIGHT, NULL);

    if (ret == 0) {
        half_start(j, other, j->cur.seq, &c);
        ret = write_snapshot(&m, &c);
        if (ret == 0)
            switch_to(j, other, &c);
    }
    if (ret < 0) {
        char why[256];

        snprintf(why, sizeof(why), "compaction: %s",
                 ret == -ENOSPC ? "the session does not fit in half the area"
                 : m.why[0]     ? m.why
                                : strerror(-ret));
        turn_off(j, why);
    } else {
        log_debug("session journal: compacted to %zu bytes (%zu nodes, %zu handles, %zu records "
                  "in flight kept)",
                  c.off, m.n_nodes, m.n_handles, m.n_left_out);
    }
    model_free(&m);
}

/* One record from a request: appended, compacting first when the half is 3/4 full. */
static void append(struct sj *j, unsigned type, const struct fuse_req_tag *tag,
                   const struct iovec *parts, int nparts)
{
    pthread_mutex_lock(&j->lock);
    if (!j->off && put_rec(&j->cur, type, tag, parts, nparts) < 0) {
        compact(j);
        if (!j->off && put_rec(&j->cur, type, tag, parts, nparts) < 0)
            turn_off(j, "a record does not fit");
    } else if (!j->off && j->cur.off > j->compact_at) {
        compact(j);
    }
    pthread_mutex_unlock(&j->lock);
}

/* ---- the records fuse_server.c makes ----------------------------------------------------- */

static size_t plain_len(const char *name)
{
    size_t len = name ? strnlen(name, NAME_MAX + 1) : 0;

    return len <= NAME_MAX && plain_name(name, len) ? len : 0;
}

void sj_entry(struct sj *j, const struct fuse_req_tag *tag, struct pt_fs *fs, uint64_t parent,
              const char *name, uint64_t nodeid)
{
    struct p_entry e = {.nodeid = nodeid, .nlookup = 1};

    if (pt_state_inode_ids(fs, nodeid, &e.dev, &e.ino, &e.type) < 0)
        return; /* cannot be: the reply holds a reference */
    e.namelen = (uint16_t)plain_len(name);
    e.parent = e.namelen ? parent : 0;
    struct iovec v[2] = {{&e, sizeof(e)}, {(void *)name, e.namelen}};
    append(j, R_ENTRY, tag, v, 2);
}

void sj_direntplus(struct sj *j, const struct fuse_req_tag *tag, struct pt_fs *fs, uint64_t parent,
                   const void *buf, size_t len)
{
    const uint8_t *p = buf;

    /* Our own reply, as pt_readdir filled it (not the guest's copy). */
    for (size_t off = 0; off + FUSE_NAME_OFFSET_DIRENTPLUS <= len;) {
        struct fuse_direntplus d;
        char name[NAME_MAX + 1];

        memcpy(&d, p + off, sizeof(d));
        if (d.dirent.namelen > NAME_MAX || off + FUSE_DIRENTPLUS_SIZE(&d) > len)
            break;
        memcpy(name, p + off + FUSE_NAME_OFFSET_DIRENTPLUS, d.dirent.namelen);
        name[d.dirent.namelen] = '\0';
        if (d.entry_out.nodeid) /* "." and "..": no reference */
            sj_entry(j, tag, fs, parent, name, d.entry_out.nodeid);
        off += FUSE_DIRENTPLUS_SIZE(&d);
    }
}

void sj_forget(struct sj *j, const struct fuse_req_tag *tag, uint64_t nodeid, uint64_t nlookup)
{
    struct p_forget f = {.count = 1};
    struct p_forget_one one = {nodeid, nlookup};
    struct iovec v[2] = {{&f, sizeof(f)}, {&one, sizeof(one)}};

    if (valid_id(nodeid))
        append(j, R_FORGET, tag, v, 2);
}

void sj_forget_batch(struct sj *j, const struct fuse_req_tag *tag, const void *p, uint32_t count)
{
    struct p_forget_one ones[64];
    struct p_forget f;
    struct iovec v[2] = {{&f, sizeof(f)}, {ones, 0}};

    /* Records of up to 64: nodeid 0 (a hostile guest's) is left out, as pt_forget ignores it. */
    for (uint32_t i = 0; i < count;) {
        f = (struct p_forget){0};
        for (; i < count && f.count < 64; i++) {
            memcpy(&ones[f.count], (const uint8_t *)p + (size_t)i * sizeof(ones[0]),
                   sizeof(ones[0]));
            f.count += valid_id(ones[f.count].nodeid);
        }
        v[1].iov_len = f.count * sizeof(ones[0]);
        if (f.count)
            append(j, R_FORGET, tag, v, 2);
    }
}

void sj_open(struct sj *j, const struct fuse_req_tag *tag, struct pt_fs *fs, uint64_t nodeid,
             uint64_t fh, bool dir)
{
    struct p_open o = {.fh = fh, .nodeid = nodeid, .dir = dir};
    struct iovec v = {&o, sizeof(o)};

    if (pt_state_handle_flags(fs, fh, nodeid, &o.flags) < 0)
        o.flags = dir ? O_RDONLY | O_DIRECTORY : O_RDONLY;
    append(j, R_OPEN, tag, &v, 1);
}

void sj_release(struct sj *j, const struct fuse_req_tag *tag, uint64_t fh)
{
    struct p_release r = {fh};
    struct iovec v = {&r, sizeof(r)};

    append(j, R_RELEASE, tag, &v, 1);
}

void sj_unlink(struct sj *j, const struct fuse_req_tag *tag, uint64_t parent, const char *name)
{
    struct p_unlink u = {.parent = parent, .namelen = (uint32_t)plain_len(name)};
    struct iovec v[2] = {{&u, sizeof(u)}, {(void *)name, u.namelen}};

    if (u.namelen)
        append(j, R_UNLINK, tag, v, 2);
}

void sj_rename(struct sj *j, const struct fuse_req_tag *tag, uint64_t olddir, const char *oldname,
               uint64_t newdir, const char *newname, uint32_t flags)
{
    struct p_rename r = {.olddir = olddir,
                         .newdir = newdir,
                         .flags = flags,
                         .oldlen = (uint16_t)plain_len(oldname),
                         .newlen = (uint16_t)plain_len(newname)};
    struct iovec v[3] = {{&r, sizeof(r)}, {(void *)oldname, r.oldlen}, {(void *)newname, r.newlen}};

    if (r.oldlen && r.newlen)
        append(j, R_RENAME, tag, v, 3);
}

void sj_intent(struct sj *j, const struct fuse_req_tag *tag, const struct sj_intent *in)
{
    struct p_intent p = {.nodeid = in->nodeid,
                         .nodeid2 = in->nodeid2,
                         .unique = in->unique,
                         .size = in->size,
                         .dev = in->dev,
                         .ino = in->ino,
                         .opcode = in->opcode,
                         .flags = in->flags,
                         .namelen = (uint16_t)plain_len(in->name),
                         .name2len = (uint16_t)plain_len(in->name2)};
    struct iovec v[3] = {
        {&p, sizeof(p)}, {(void *)in->name, p.namelen}, {(void *)in->name2, p.name2len}};

    append(j, R_INTENT, tag, v, 3);
}

bool sj_intent_take(struct sj *j, const struct fuse_req_tag *tag, struct sj_intent *out)
{
    bool found = false;

    if (!tag->counter)
        return false;
    pthread_mutex_lock(&j->lock);
    /* The latest of a tag's intents: a resubmission that ran again recorded its own. */
    for (size_t i = j->n_intents; i-- > 0;) {
        struct kept_intent *k = &j->intents[i];

        if (k->taken || k->tag.counter != tag->counter || k->tag.queue != tag->queue ||
            k->tag.head != tag->head)
            continue;
        k->taken = true;
        *out = (struct sj_intent){.opcode = k->in.opcode,
                                  .flags = k->in.flags,
                                  .nodeid = k->in.nodeid,
                                  .nodeid2 = k->in.nodeid2,
                                  .unique = k->in.unique,
                                  .size = k->in.size,
                                  .dev = k->in.dev,
                                  .ino = k->in.ino};
        found = true;
        break;
    }
    pthread_mutex_unlock(&j->lock);
    return found;
}

void sj_lock(struct sj *j, const struct fuse_req_tag *tag, uint64_t nodeid,
             const struct fuse_lk_in *in)
{
    struct p_lock l = {.nodeid = nodeid,
                       .fh = in->fh,
                       .owner = in->owner,
                       .start = in->lk.start,
                       .end = in->lk.end > PT_STATE_LOCK_EOF ? PT_STATE_LOCK_EOF : in->lk.end,
                       .type = in->lk.type,
                       .pid = in->lk.pid};
    struct p_flock f = {.fh = in->fh, .nodeid = nodeid, .type = in->lk.type};
    struct iovec v = {&l, sizeof(l)};

    /* What the lock layer accepted: checked again all the same (a record must decode). */
    if (!valid_id(nodeid) || in->fh > PT_STATE_MAX_ID ||
        (l.type != F_RDLCK && l.type != F_WRLCK && l.type != F_UNLCK))
        return;
    if (in->lk_flags & FUSE_LK_FLOCK) {
        v = (struct iovec){&f, sizeof(f)};
        append(j, R_FLOCK, tag, &v, 1);
    } else if (l.start <= l.end) {
        append(j, R_LOCK, tag, &v, 1);
    }
}

void sj_unlock_owner(struct sj *j, const struct fuse_req_tag *tag, uint64_t nodeid, uint64_t fh,
                     uint64_t owner)
{
    struct fuse_lk_in in = {
        .fh = fh, .owner = owner, .lk = {.start = 0, .end = PT_STATE_LOCK_EOF, .type = F_UNLCK}};

    sj_lock(j, tag, nodeid, &in);
}

void sj_new_mount(struct sj *j, const struct fuse_req_tag *tag,
                  const struct fuse_session_init *init)
{
    struct p_init in = {0};
    struct iovec v = {&in, sizeof(in)};
    unsigned other;
    struct cursor c;

    pthread_mutex_lock(&j->lock);
    if (j->off && j->until_mount) {
        j->off = false; /* a mount of this daemon's own: journaled from its start */
        j->until_mount = false;
    }
    if (!j->off) {
        other = !j->active;
        half_start(j, other, j->cur.seq, &c);
        if (init) {
            in = (struct p_init){.major = init->major,
                                 .minor = init->minor,
                                 .max_write = init->max_write,
                                 .max_pages = init->max_pages,
                                 .flags = init->flags};
            put_rec(&c, R_INIT, tag, &v, 1); /* an empty half: it fits */
        }
        switch_to(j, other, &c);
    }
    pthread_mutex_unlock(&j->lock);
}

/* ---- attach: the header, restoring, formatting ------------------------------------------------
 */

/* 1: a journal of this share to replay; 0: none (zeros); -1: unusable (why). */
static int read_head(struct sj *j, char *why, size_t size)
{
    static const char zeros[8];
    struct sj_head h;

    memcpy(&h, j->area, sizeof(h));
    if (memcmp(h.magic, zeros, 8) == 0)
        return 0;
    if (memcmp(h.magic, SJ_MAGIC, 8) != 0)
        snprintf(why, size, "not a session journal (bad magic)");
    else if (h.version != SJ_VERSION)
        snprintf(why, size, "format version %u (this daemon reads %u)", h.version, SJ_VERSION);
    else if (h.head_size != HEAD_SIZE || h.area_len != j->len || h.half_len != j->half_len)
        snprintf(why, size, "laid out for an area of %llu bytes, this one has %zu",
                 (unsigned long long)h.area_len, j->len);
    else if (h.share_dev != j->share_dev || h.share_ino != j->share_ino)
        snprintf(why, size, "of another shared directory");
    else if (h.active > 1)
        snprintf(why, size, "active half %u", h.active);
    else {
        j->active = h.active;
        return 1;
    }
    return -1;
}

/* A new, empty journal (the header's magic last). */
static void format(struct sj *j)
{
    struct sj_head h = {.version = SJ_VERSION,
                        .head_size = HEAD_SIZE,
                        .area_len = j->len,
                        .half_len = j->half_len,
                        .share_dev = j->share_dev,
                        .share_ino = j->share_ino};

    __atomic_store_n((uint64_t *)head_of(j)->magic, 0, __ATOMIC_RELAXED);
    memcpy((uint8_t *)j->area + 8, (const uint8_t *)&h + 8, sizeof(h) - 8);
    half_start(j, 0, 1, &j->cur);
    j->active = 0;
    memcpy(h.magic, SJ_MAGIC, 8);
    uint64_t magic;
    memcpy(&magic, h.magic, 8);
    __atomic_store_n((uint64_t *)head_of(j)->magic, magic, __ATOMIC_RELEASE);
}

/*
 * The path of node idx beneath the share (NUL-terminated in path, PATH_MAX bytes; *len its
 * length), from its parents' names; chain has room for PATH_COMPS_MAX. False if it has none:
 * a nameless node on the way, an unknown parent, a cycle or a path too long.
 */
static bool node_path(const struct model *m, size_t idx, size_t *chain, char *path, size_t *len)
{
    size_t depth = 0;
    ssize_t cur = (ssize_t)idx;

    *len = 0;
    while (cur >= 0 && m->nodes[cur].namelen && depth < PATH_COMPS_MAX) {
        chain[depth++] = (size_t)cur;
        if (m->nodes[cur].parent == FUSE_ROOT_ID)
            break;
        cur = node_find(m, m->nodes[cur].parent);
    }
    if (!(depth && cur >= 0 && m->nodes[cur].namelen && m->nodes[cur].parent == FUSE_ROOT_ID))
        return false;
    while (depth) {
        const struct m_node *c = &m->nodes[chain[--depth]];

        if (*len + c->namelen + 1 >= PATH_MAX)
            return false;
        if (*len)
            path[(*len)++] = '/';
        memcpy(path + *len, m->names_buf + c->name_off, c->namelen);
        *len += c->namelen;
    }
    path[*len] = '\0';
    return true;
}

/* The locks of the handles model_to_state keeps, for pt_locks_install. */
static int locks_to_state(struct model *m, struct pt_state *st)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < m->n_owners; i++) {
        const struct m_owner *o = &m->owners[i];
        struct pt_state_owner so = {
            .nodeid = o->nodeid, .owner = o->owner, .fh = o->fh, .pid = o->pid};

        if (!live_handle(m, o->fh, o->nodeid))
            continue;
        ret = pt_state_add_owner(st, &so);
        for (size_t k = 0; ret == 0 && k < o->n; k++) {
            struct pt_state_range r = {
                .start = o->ranges[k].start, .end = o->ranges[k].end, .write = o->ranges[k].write};

            ret = pt_state_add_range(st, &r);
        }
    }
    for (size_t i = 0; ret == 0 && i < m->n_handles; i++) {
        const struct m_handle *h = &m->handles[i];
        struct pt_state_flock f = {.fh = h->fh, .nodeid = h->nodeid, .write = h->flock == F_WRLCK};

        if (h->flock != F_UNLCK && live_handle(m, h->fh, h->nodeid))
            ret = pt_state_add_flock(st, &f);
    }
    return ret;
}

/* The pt_state of the nodes the guest holds (path from the parents' names) and their handles. */
static int model_to_state(struct model *m, struct sj *j, struct pt_state *st)
{
    struct pt_state_inode root = {.nodeid = FUSE_ROOT_ID,
                                  .nlookup = 1,
                                  .type = S_IFDIR,
                                  .dev = j->share_dev,
                                  .ino = j->share_ino};
    size_t *chain = malloc(PATH_COMPS_MAX * sizeof(*chain));
    char *path = malloc(PATH_MAX);
    int ret = chain && path ? pt_state_add_inode(st, &root, "", 0) : -ENOMEM;

    st->verify_ids = st->lose_unfound = true;
    st->last_nodeid = max_u64(m->last_nodeid, FUSE_ROOT_ID); /* a mount that looked up nothing */
    st->last_fh = m->last_fh;
    for (size_t i = 0; ret == 0 && i < m->n_nodes; i++) {
        const struct m_node *n = &m->nodes[i];
        struct pt_state_inode in = {.nodeid = n->nodeid,
                                    .nlookup = n->nlookup,
                                    .type = n->type,
                                    .dev = n->dev,
                                    .ino = n->ino};
        size_t len = 0;

        if (!n->nlookup)
            continue;
        in.lost = !node_path(m, i, chain, path, &len);
        ret = pt_state_add_inode(st, &in, in.lost ? NULL : path, in.lost ? 0 : len);
    }
    for (size_t i = 0; ret == 0 && i < m->n_handles; i++) {
        const struct m_handle *h = &m->handles[i];
        ssize_t idx = node_find(m, h->nodeid);
        struct pt_state_handle sh = {
            .fh = h->fh, .nodeid = h->nodeid, .flags = h->flags, .dir = h->dir};

        if (idx >= 0 && m->nodes[idx].nlookup)
            ret = pt_state_add_handle(st, &sh);
    }
    if (ret == 0)
        ret = locks_to_state(m, st);
    free(chain);
    free(path);
    return ret < 0 ? bad(m, "out of memory") : 0;
}

/* Installs the replayed session into se (fresh); 0, or -errno with m->why. */
static int restore(struct fuse_session *se, struct sj *j, struct model *m, size_t *lost)
{
    struct pt_fs *fs = fuse_session_fs(se);
    struct pt_state st;
    int ret;

    pt_state_init(&st);
    ret = model_to_state(m, j, &st);
    if (ret == 0 && (ret = pt_state_check(&st)) < 0)
        bad(m, "%s", st.why);
    if (ret == 0 && fuse_session_check_init(se, &m->init) < 0)
        ret = bad(m,
                  "its FUSE INIT (7.%u, flags 0x%llx) is not what this daemon offers with its "
                  "options",
                  m->init.minor, (unsigned long long)m->init.flags);
    if (ret == 0) {
        fuse_session_reset(se);
        ret = pt_state_install(fs, &st);
        if (ret == 0)
            ret = pt_locks_install(fs, &st);
        if (ret < 0)
            bad(m, "%s", st.why);
    }
    if (ret == 0)
        fuse_session_install_init(se, &m->init);
    else
        fuse_session_reset(se);
    *lost = 0;
    for (size_t i = 0; i < st.n_inodes; i++)
        *lost += st.inodes[i].lost;
    pt_state_free(&st);
    return ret;
}

/* The path of directory node dirid joined with name (len bytes) into path; false if none. */
static bool child_path(const struct model *m, uint64_t dirid, const char *name, size_t len,
                       size_t *chain, char *path)
{
    ssize_t idx = dirid == FUSE_ROOT_ID ? -1 : node_find(m, dirid);
    size_t at = 0;

    if (dirid != FUSE_ROOT_ID && (idx < 0 || !node_path(m, (size_t)idx, chain, path, &at)))
        return false;
    if (at + len + 2 >= PATH_MAX)
        return false;
    if (at)
        path[at++] = '/';
    memcpy(path + at, name, len);
    path[at + len] = '\0';
    return true;
}

/* Whether path beneath the share names the file dev/ino. */
static bool path_is(struct sj *j, const char *path, uint64_t dev, uint64_t ino)
{
    uint64_t d, i;

    return pt_state_path_ids(fuse_session_fs(j->se), path, &d, &i) == 0 && d == dev && i == ino;
}

/*
 * The RENAMEs in flight whose effect the host shows (the recorded source under the new name,
 * not under the old one) are applied to the model: the node they moved is found under its
 * new name, and the resubmission answers as the first run would have.
 */
static int settle_renames(struct sj *j, struct model *m)
{
    size_t *chain = malloc(PATH_COMPS_MAX * sizeof(*chain));
    char *path = malloc(PATH_MAX);
    int ret = chain && path ? 0 : bad(m, "out of memory");

    for (size_t off = 0; ret == 0 && off < m->kept_len;) {
        struct sj_rec h;
        struct prec r;

        memcpy(&h, m->kept + off, sizeof(h));
        off += REC_HEAD + pad8(h.len);
        if (h.type != R_INTENT || decode(m, h.type, m->kept + off - pad8(h.len), h.len, &r) < 0)
            continue;
        const struct p_intent *in = &r.intent;
        ssize_t src = (in->opcode == FUSE_RENAME || in->opcode == FUSE_RENAME2) && r.name2len
                          ? name_find(m, in->nodeid, r.name, r.namelen)
                          : -1;
        if (src < 0 || m->nodes[src].dev != in->dev || m->nodes[src].ino != in->ino)
            continue;
        if (!child_path(m, in->nodeid2, r.name2, r.name2len, chain, path) ||
            !path_is(j, path, in->dev, in->ino))
            continue;
        if (child_path(m, in->nodeid, r.name, r.namelen, chain, path) &&
            path_is(j, path, in->dev, in->ino))
            continue;
        r.type = R_RENAME;
        r.rename = (struct p_rename){.olddir = in->nodeid,
                                     .newdir = in->nodeid2,
                                     .flags = in->flags,
                                     .oldlen = (uint16_t)r.namelen,
                                     .newlen = (uint16_t)r.name2len};
        ret = apply_rename(m, &r);
    }
    free(chain);
    free(path);
    return ret;
}

/* The intents of the requests in flight, for their resubmissions (sj_intent_take). */
static int keep_intents(struct sj *j, struct model *m)
{
    size_t n = 0;

    for (size_t off = 0; off < m->kept_len; n++) {
        struct sj_rec h;

        memcpy(&h, m->kept + off, sizeof(h));
        off += REC_HEAD + pad8(h.len);
    }
    j->intents = n ? calloc(n, sizeof(*j->intents)) : NULL;
    if (n && !j->intents)
        return bad(m, "out of memory");
    for (size_t off = 0; off < m->kept_len;) {
        struct sj_rec h;
        struct p_intent in;

        memcpy(&h, m->kept + off, sizeof(h));
        memcpy(&in, m->kept + off + REC_HEAD, sizeof(in)); /* decoded by the replay */
        j->intents[j->n_intents++] = (struct kept_intent){
            .tag = {.counter = h.counter, .queue = h.queue, .head = h.head}, .in = in};
        off += REC_HEAD + pad8(h.len);
    }
    return 0;
}

/* Replays and installs what the area holds: 1 restored, 0 not (why set if it was unusable). */
static int try_restore(struct sj *j, struct fuse_session *se, char *why, size_t size)
{
    struct model m = {0};
    struct cursor c, end;
    size_t lost = 0;
    int ret = read_head(j, why, size);

    if (ret <= 0)
        return 0;
    ret = replay(j, j->active, &m, DROP_IN_FLIGHT, &end);
    if (ret == 0 && !m.initialized) {
        log_info("session journal: no mounted session in it (the guest will send FUSE_INIT)");
        model_free(&m);
        return 0;
    }
    if (ret == 0)
        ret = settle_renames(j, &m);
    if (ret == 0)
        ret = restore(se, j, &m, &lost);
    if (ret == 0)
        ret = keep_intents(j, &m);
    if (ret < 0) {
        snprintf(why, size, "%s", m.why[0] ? m.why : strerror(-ret));
        model_free(&m);
        return 0;
    }
    log_info("session journal: session restored: %zu inodes (%zu without a path), %zu handles; "
             "%zu records replayed, %zu of requests still in flight left out (they run again)",
             m.n_nodes, lost, m.n_handles, m.n_applied, m.n_left_out);
    /* A clean start: the snapshot without the records of the requests that run again. */
    half_start(j, !j->active, end.seq, &c);
    ret = write_snapshot(&m, &c);
    if (ret == 0)
        switch_to(j, !j->active, &c);
    model_free(&m);
    return ret == 0 ? 1 : -1;
}

int fuse_session_journal_attach(struct fuse_session *se, void *area, size_t len,
                                const struct sj_inflight *inflight)
{
    struct sj *j;
    char why[256] = "";
    int restored;

    if (!se || !area || len < MIN_AREA || ((uintptr_t)area & 7) || !inflight ||
        !inflight->in_flight)
        return -EINVAL;
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->se = se;
    j->area = area;
    j->len = len;
    j->half_len = ((len - HEAD_SIZE) / 2) & ~(size_t)7;
    j->compact_at = (j->half_len - HALF_HEAD) / 4 * 3;
    j->inflight = *inflight;
    pthread_mutex_init(&j->lock, NULL);
    pt_state_share_id(fuse_session_fs(se), &j->share_dev, &j->share_ino);
    if (inflight->refuse) {
        log_warn("session journal: not restored (%s): a fresh session", inflight->refuse);
        format(j);
        pt_state_sweep_hidden(fuse_session_fs(se));
        fuse_session_set_journal(se, j);
        return 0;
    }
    if (fuse_session_initialized(se)) {
        /* A session that came from elsewhere (a migration's LOAD): the journal cannot say
         * how its inodes were found, so it stays empty — a crash now means a fresh session —
         * until the guest mounts again. */
        log_info("session journal: the session came from a migration; journaled from the "
                 "guest's next mount on");
        format(j);
        j->off = j->until_mount = true;
        pt_state_sweep_hidden(fuse_session_fs(se));
        fuse_session_set_journal(se, j);
        return 0;
    }
    restored = try_restore(j, se, why, sizeof(why));
    if (restored < 0) {
        turn_off(j, "the restored session does not fit in half the area");
        restored = 1;
    } else if (!restored) {
        if (why[0])
            log_warn("session journal: not restored (%s): a fresh session", why);
        format(j);
    }
    /* Files the guest unlinked while in use (pt_core.h): those the session holds stay. */
    pt_state_sweep_hidden(fuse_session_fs(se));
    fuse_session_set_journal(se, j);
    return restored;
}

void fuse_session_journal_detach(struct fuse_session *se)
{
    struct sj *j = se ? fuse_session_journal(se) : NULL;

    if (!j)
        return;
    fuse_session_set_journal(se, NULL);
    pthread_mutex_destroy(&j->lock);
    free(j->intents);
    free(j);
}
