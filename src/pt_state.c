/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough's part of a migration: collecting every inode and handle for SAVE, checking
 * and installing them on LOAD (see include/pt_state.h; the byte format is session_state.c's).
 *
 * Where an inode is found again (--migration-mode=find-paths): its path from the share's root.
 * SAVE reads the path of the inode's O_PATH fd back from /proc/self/fd (through the daemon's
 * proc_self_fd, so it resolves relative to the process's root: the share itself in the
 * namespace and chroot sandboxes; with --sandbox=none the share's own path, read the same way
 * from the root's fd, is the prefix stripped), then resolves that path again and compares
 * st_dev/st_ino, so a path raced by a rename or an unlinked file's "(deleted)" name is never
 * saved. What that does not find is looked for once by a walk of the share (bounded); what is
 * still missing costs the SAVE, or with --migration-on-error=guest-error is saved as "lost".
 *
 * LOAD resolves each path component by component from the root's fd with
 * O_PATH|O_NOFOLLOW, as a LOOKUP does: a symlink is never followed (an intermediate one fails
 * with ENOTDIR), and paths were checked to hold only plain names (no "", ".", "..", '/'), so
 * no path leaves the share. The file type must match what was saved, and st_dev/st_ino too
 * with --migration-verify-handles (the Rust virtiofsd's option of that name makes the
 * destination check that it opened the very inodes the source had, which needs the same file
 * system; a copy of the share on another host has other inode numbers). A rename on the host
 * between SAVE and LOAD therefore costs the renamed inode (not found: the LOAD fails, or the
 * inode is lost), and a file put in its place is taken for it unless
 * --migration-verify-handles is given.
 *
 * --migration-mode=file-handles: SAVE adds each inode's file handle (name_to_handle_at) and
 * the share's file system id to the paths; LOAD (in that mode) opens each inode by its handle
 * on the share's root mount, after checking the file system id and that the root's handle
 * opens the share's root. A handle can name any inode of the file system, inside the share or
 * not (the kernel opens it, with CAP_DAC_READ_SEARCH, whatever the mount or sandbox root: the
 * tests show it), so each opened inode is taken only if its /proc/self/fd name, resolved again
 * beneath the root as above, leads to that very inode. A renamed inode is thereby found; an
 * unlinked one (no name in the share) is not.
 *
 * A planned upgrade's handover (pt_state.pass_fds / fds_given): the new process runs on the
 * same host and can take fds, so an inode SAVE finds no path for (unlinked: at once; else
 * after the walk) is passed as a dup of its own O_PATH fd, and LOAD installs it from that fd
 * once it proved to be the very inode saved, on the share's file system (install_passed).
 */
#include "pt_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"
#include "file_handle.h"
#include "hash.h"
#include "array_grow.h"
#include "log.h"
#include "pt_core.h"

/* Entries a SAVE's fallback walk of the share looks at before it gives up. */
#define WALK_MAX_ENTRIES (1u << 22)
/* The same for a journal restore's walk (the guest waits meanwhile: about a second). */
#define RESTORE_WALK_MAX_ENTRIES (1u << 20)

static int fail(struct pt_state *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct pt_state *st, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->why, sizeof(st->why), fmt, ap);
    va_end(ap);
    return err;
}

/* ---- the state's storage ------------------------------------------------------------------ */

void pt_state_init(struct pt_state *st)
{
    memset(st, 0, sizeof(*st));
}

void pt_state_free(struct pt_state *st)
{
    free(st->inodes);
    free(st->handles);
    free(st->paths);
    free(st->owners);
    free(st->ranges);
    free(st->flocks);
    free(st->fhs);
    free(st->fh_bytes);
    free(st->passed);
    if (!st->fds_given) {
        for (size_t i = 0; i < st->n_fds; i++)
            close(st->fds[i]);
        free(st->fds);
    }
    pt_state_init(st);
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    return array_grow(p, cap, need, size, SIZE_MAX);
}

/* Copies len bytes of path into the arena (NUL-terminated); its offset in *off. */
static int add_path(struct pt_state *st, const char *path, size_t len, size_t *off)
{
    if (len >= PATH_MAX || grow((void **)&st->paths, &st->paths_cap, st->paths_len + len + 1, 1))
        return -ENOMEM;
    memcpy(st->paths + st->paths_len, path, len);
    st->paths[st->paths_len + len] = '\0';
    *off = st->paths_len;
    st->paths_len += len + 1;
    return 0;
}

int pt_state_add_inode(struct pt_state *st, const struct pt_state_inode *in, const char *path,
                       size_t len)
{
    struct pt_state_inode *i;

    if (grow((void **)&st->inodes, &st->cap_inodes, st->n_inodes + 1, sizeof(*i)))
        return -ENOMEM;
    i = &st->inodes[st->n_inodes];
    *i = *in;
    i->path_off = 0;
    if (!i->lost && (!path || add_path(st, path, len, &i->path_off)))
        return -ENOMEM;
    st->n_inodes++;
    return 0;
}

int pt_state_add_fh(struct pt_state *st, const struct pt_state_fh *fh, const void *bytes)
{
    struct pt_state_fh *f;

    if (fh->type < 0 || fh->len == 0 || fh->len > PT_STATE_FH_MAX)
        return -EINVAL;
    if (grow((void **)&st->fhs, &st->cap_fhs, st->n_fhs + 1, sizeof(*f)) ||
        grow((void **)&st->fh_bytes, &st->fh_bytes_cap, st->fh_bytes_len + fh->len, 1))
        return -ENOMEM;
    f = &st->fhs[st->n_fhs++];
    *f = *fh;
    f->off = st->fh_bytes_len;
    memcpy(st->fh_bytes + f->off, bytes, fh->len);
    st->fh_bytes_len += fh->len;
    st->has_fhs = true;
    return 0;
}

int pt_state_add_handle(struct pt_state *st, const struct pt_state_handle *h)
{
    if (grow((void **)&st->handles, &st->cap_handles, st->n_handles + 1, sizeof(*h)))
        return -ENOMEM;
    st->handles[st->n_handles++] = *h;
    return 0;
}

int pt_state_add_owner(struct pt_state *st, const struct pt_state_owner *o)
{
    if (grow((void **)&st->owners, &st->cap_owners, st->n_owners + 1, sizeof(*o)))
        return -ENOMEM;
    st->owners[st->n_owners] = *o;
    st->owners[st->n_owners].first = st->n_ranges;
    st->owners[st->n_owners].n = 0;
    st->n_owners++;
    return 0;
}

int pt_state_add_range(struct pt_state *st, const struct pt_state_range *r)
{
    if (!st->n_owners)
        return -EINVAL;
    if (grow((void **)&st->ranges, &st->cap_ranges, st->n_ranges + 1, sizeof(*r)))
        return -ENOMEM;
    st->ranges[st->n_ranges++] = *r;
    st->owners[st->n_owners - 1].n++;
    return 0;
}

int pt_state_add_flock(struct pt_state *st, const struct pt_state_flock *f)
{
    if (grow((void **)&st->flocks, &st->cap_flocks, st->n_flocks + 1, sizeof(*f)))
        return -ENOMEM;
    st->flocks[st->n_flocks++] = *f;
    return 0;
}

int pt_state_add_passed(struct pt_state *st, const struct pt_state_passed *p)
{
    if (grow((void **)&st->passed, &st->cap_passed, st->n_passed + 1, sizeof(*p)))
        return -ENOMEM;
    st->passed[st->n_passed++] = *p;
    return 0;
}

size_t pt_state_take_fds(struct pt_state *st, int **fds)
{
    size_t n = st->n_fds;

    *fds = st->fds;
    st->fds = NULL;
    st->n_fds = st->cap_fds = 0;
    return n;
}

/* ---- an index of ids (nonzero keys), for duplicates and look-ups in linear time ---------- */

struct id_index {
    uint64_t *keys; /* 0: empty */
    size_t *vals;
    size_t mask;
};

static int index_init(struct id_index *x, size_t n)
{
    size_t size = 16;

    while (size < 2 * n)
        size *= 2;
    x->keys = calloc(size, sizeof(*x->keys));
    x->vals = calloc(size, sizeof(*x->vals));
    x->mask = size - 1;
    return x->keys && x->vals ? 0 : -ENOMEM;
}

static void index_free(struct id_index *x)
{
    free(x->keys);
    free(x->vals);
}

/* Adds key -> val; false if key is there already. */
static bool index_add(struct id_index *x, uint64_t key, size_t val)
{
    size_t i = hash_u64(key) & x->mask;

    for (; x->keys[i]; i = (i + 1) & x->mask)
        if (x->keys[i] == key)
            return false;
    x->keys[i] = key;
    x->vals[i] = val;
    return true;
}

static bool index_find(const struct id_index *x, uint64_t key, size_t *val)
{
    size_t i = hash_u64(key) & x->mask;

    for (; x->keys[i]; i = (i + 1) & x->mask)
        if (x->keys[i] == key) {
            *val = x->vals[i];
            return true;
        }
    return false;
}

/* ---- paths -------------------------------------------------------------------------------- */

static bool same_file(const struct statx *stx, uint64_t dev, uint64_t ino)
{
    return makedev(stx->stx_dev_major, stx->stx_dev_minor) == dev && stx->stx_ino == ino;
}

/* ---- SAVE ----------------------------------------------------------------------------------- */

struct collect {
    struct pt_fs *fs;
    struct pt_state *st;
    char root[PATH_MAX]; /* the share's root as /proc/self/fd shows it; "" for "/" */
    size_t root_len;
    size_t *pending; /* indices of inodes not found yet (saved as lost for now) */
    size_t n_pending, cap_pending;
    size_t n_walk;       /* of them, those the walk may find (not unlinked) */
    size_t n_unlinked;   /* unlinked inodes (for the message) */
    size_t n_dead;       /* a handover's: without a path, and without an fd that opens */
    struct id_index ids; /* the nodeids collected, for the handles */
    size_t n_orphans;    /* handles whose inode the guest forgot: not saved */
};

/* The link /proc/self/fd/<fd> into buf: its length, or -errno. */
static ssize_t fd_link(struct pt_fs *fs, int fd, char *buf, size_t size)
{
    struct fd_path p;
    ssize_t n = readlinkat(fs->proc_self_fd, fd_name(fd, &p), buf, size);

    if (n < 0)
        return -errno;
    if ((size_t)n >= size)
        return -ENAMETOOLONG;
    buf[n] = '\0';
    return n;
}

/* The path of an inode's fd relative to the share's root, or NULL if it is not beneath it. */
static const char *relative(const struct collect *c, const char *link)
{
    if (c->root_len && (strncmp(link, c->root, c->root_len) != 0))
        return NULL;
    link += c->root_len;
    /* A link is absolute; "/" alone would be the root again (another bind mount of it). */
    return link[0] == '/' && link[1] ? link + 1 : NULL;
}

/*
 * The inode's path if /proc/self/fd gives one that leads back to it; else NULL, and *unlinked
 * set when the inode has no name left anywhere (a walk of the share would not find it).
 */
static const char *path_of(struct collect *c, struct pt_inode *inode, char *buf, size_t size,
                           bool *unlinked)
{
    struct statx stx;
    const char *rel = NULL;
    PT_FDREF(r);
    int fd = pt_inode_fd(c->fs, inode, &r), found = -1;

    *unlinked = fd >= 0 && pt_statx(fd, &stx) == 0 && stx.stx_nlink == 0;
    if (fd >= 0 && !*unlinked && fd_link(c->fs, fd, buf, size) >= 0 && (rel = relative(c, buf)) &&
        pt_check_path(rel) == 0)
        found = pt_open_beneath(c->fs, -1, rel); /* the link is only a name: confirm it */
    if (found < 0)
        return NULL;
    if (pt_statx(found, &stx) < 0 || !same_file(&stx, inode->key.dev, inode->key.ino))
        rel = NULL;
    close(found);
    return rel;
}

static int add_pending(struct collect *c, size_t idx, bool walk)
{
    if (grow((void **)&c->pending, &c->cap_pending, c->n_pending + 1, sizeof(size_t)))
        return -ENOMEM;
    c->pending[c->n_pending++] = idx;
    c->n_walk += walk;
    return 0;
}

/* The share's file system's id (statfs f_fsid), which a file handle is only valid on. */
static int share_fsid(struct pt_fs *fs, uint64_t *out)
{
    struct statfs sfs;
    uint32_t w[2];

    if (fstatfs(fs->root->fd, &sfs) < 0)
        return -errno;
    memcpy(w, &sfs.f_fsid, sizeof(w));
    *out = w[0] | (uint64_t)w[1] << 32;
    return 0;
}

/*
 * --migration-mode=file-handles: the inode's file handle into the state. 1 if added, 0 if
 * not wanted or the inode has no fd (lost earlier), -errno (st->why) if the file system
 * gives none.
 */
static int collect_fh(struct collect *c, struct pt_inode *inode)
{
    struct pt_state_fh sf = {.nodeid = inode->nodeid};
    struct fh_buf b;
    PT_FDREF(r);
    int fd, ret;

    if (c->fs->cfg.migration_mode != MIGRATION_FILE_HANDLES)
        return 0;
    fd = pt_inode_fd(c->fs, inode, &r);
    if (fd < 0)
        return 0;
    ret = fh_encode(fd, &b);
    if (ret < 0)
        return fail(c->st, ret, "--migration-mode=file-handles: no file handle for inode %llu: %s",
                    (unsigned long long)inode->nodeid, strerror(-ret));
    sf.type = b.u.h.handle_type;
    sf.len = b.u.h.handle_bytes;
    ret = pt_state_add_fh(c->st, &sf, b.u.h.f_handle);
    return ret < 0 ? fail(c->st, ret, "inode %llu: file handle not saved: %s",
                          (unsigned long long)inode->nodeid, strerror(-ret))
                   : 1;
}

/*
 * A handover (st->pass_fds): an inode without a path goes to the new process as a dup of its
 * own O_PATH fd, beside the stream. 0 when passed; 1 when it has no fd to pass (a file handle
 * that no longer opens: it is then as lost as it is here); -errno (st->why).
 */
static int pass_fd(struct collect *c, struct pt_inode *inode)
{
    struct pt_state *st = c->st;
    struct pt_state_passed p = {.nodeid = inode->nodeid, .index = (uint32_t)st->n_fds};
    PT_FDREF(r);
    int fd = pt_inode_fd(c->fs, inode, &r), copy;

    if (fd < 0)
        return 1;
    if (st->n_fds >= PT_STATE_MAX_PASSED_FDS)
        return fail(st, -EMFILE,
                    "more than %u inodes without a path in the share (nodeid %llu): too many "
                    "to hand over as fds",
                    PT_STATE_MAX_PASSED_FDS, (unsigned long long)inode->nodeid);
    if (grow((void **)&st->fds, &st->cap_fds, st->n_fds + 1, sizeof(int)) < 0 ||
        pt_state_add_passed(st, &p) < 0)
        return -ENOMEM;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        st->n_passed--;
        return fail(st, -errno, "inode %llu: its fd cannot be duplicated: %s",
                    (unsigned long long)inode->nodeid, strerror(errno));
    }
    st->fds[st->n_fds++] = copy;
    return 0;
}

/*
 * A handover: an inode without a path goes over as its fd; an unlinked one at once (no walk
 * can find it), another after the walk (settle_pending), so that it keeps being found by its
 * name elsewhere. One without an fd either (a file handle that no longer opens: the file is
 * gone) is saved lost: it is as dead here already.
 */
static int collect_passed(struct collect *c, struct pt_inode *inode, bool unlinked)
{
    int ret;

    if (!unlinked)
        return add_pending(c, c->st->n_inodes - 1, true);
    ret = pass_fd(c, inode);
    c->n_dead += ret > 0;
    return ret < 0 ? ret : 0;
}

static int collect_inode(struct pt_inode *inode, void *arg)
{
    struct collect *c = arg;
    struct pt_state_inode in = {
        .nodeid = inode->nodeid,
        .nlookup = __atomic_load_n(&inode->refcount, __ATOMIC_RELAXED),
        .type = inode->type & S_IFMT,
        .dev = inode->key.dev,
        .ino = inode->key.ino,
    };
    char buf[PATH_MAX];
    const char *path = "";
    bool was_lost = itab_inode_lost(inode); /* lost by an earlier LOAD: stays lost */
    bool unlinked = false;
    int has_fh = was_lost ? 0 : collect_fh(c, inode);

    if (has_fh < 0)
        return has_fh;
    if (inode->nodeid != FUSE_ROOT_ID)
        path = was_lost ? NULL : path_of(c, inode, buf, sizeof(buf), &unlinked);
    in.lost = !path;
    if (pt_state_add_inode(c->st, &in, path, path ? strlen(path) : 0) < 0)
        return -ENOMEM;
    if (in.lost && !was_lost && c->st->pass_fds)
        return collect_passed(c, inode, unlinked);
    if (unlinked)
        c->n_unlinked++;
    /* The walk may find what has another name; an unlinked inode has none. An inode with a
     * file handle needs no path: the destination opens it by the handle. */
    return in.lost && !was_lost && !has_fh ? add_pending(c, c->st->n_inodes - 1, !unlinked) : 0;
}

static int collect_handle(struct pt_handle *h, void *arg)
{
    struct collect *c = arg;
    int flags = fcntl(h->fd, F_GETFL);
    struct pt_state_handle sh = {.fh = h->fh, .nodeid = h->nodeid, .dir = h->dir != NULL};

    size_t idx;

    /* A guest kernel keeps the inode of an open file; a hostile one may FORGET it anyway.
     * Such a handle cannot be reopened on the destination: it must not cost the migration. */
    if (!index_find(&c->ids, h->nodeid, &idx)) {
        c->n_orphans++;
        return 0;
    }
    if (flags < 0)
        return fail(c->st, -errno, "cannot read the flags of handle %llu: %s",
                    (unsigned long long)h->fh, strerror(errno));
    sh.flags = (uint32_t)flags & PT_STATE_OPEN_FLAGS;
    return pt_state_add_handle(c->st, &sh);
}

/* ---- SAVE's fallback: a walk of the share ---------------------------------------------------- */

/* The index key of a host inode (collisions are told apart by comparing dev and ino). */
static uint64_t file_key(uint64_t dev, uint64_t ino)
{
    return (hash_u64(dev) ^ ino) | 1;
}

struct walk {
    struct pt_fs *fs;
    struct pt_state *st;
    struct id_index wanted; /* file_key -> index in st->inodes */
    size_t left;            /* pending inodes not found yet */
    size_t entries, max;    /* entries looked at, and the bound */
    size_t dirs;            /* directories read */
    char **queue;           /* directories still to read (paths, "" for the root) */
    size_t head, tail, cap;
};

static int walk_push(struct walk *w, const char *path, size_t len)
{
    char *copy = strndup(path, len);

    if (!copy || grow((void **)&w->queue, &w->cap, w->tail + 1, sizeof(char *))) {
        free(copy);
        return -ENOMEM;
    }
    w->queue[w->tail++] = copy;
    return 0;
}

/* One entry name of directory dir (path dpath): found a wanted inode? a directory to read? */
static int walk_entry(struct walk *w, int dir, const char *dpath, const char *name)
{
    struct pt_state *st = w->st;
    char path[PATH_MAX];
    struct statx stx;
    size_t idx;
    int len = snprintf(path, sizeof(path), "%s%s%s", dpath, *dpath ? "/" : "", name);

    if (len < 0 || (size_t)len >= sizeof(path) || pt_dots(name, strlen(name)))
        return 0;
    if (statx(dir, name, AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT, STATX_TYPE | STATX_INO,
              &stx) < 0)
        return 0;
    if (index_find(&w->wanted, file_key(makedev(stx.stx_dev_major, stx.stx_dev_minor), stx.stx_ino),
                   &idx) &&
        st->inodes[idx].lost && same_file(&stx, st->inodes[idx].dev, st->inodes[idx].ino)) {
        if (add_path(st, path, (size_t)len, &st->inodes[idx].path_off) < 0)
            return -ENOMEM;
        st->inodes[idx].lost = false;
        w->left--;
    }
    return S_ISDIR(stx.stx_mode) ? walk_push(w, path, (size_t)len) : 0;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Reads one directory of the queue. */
static int walk_dir(struct walk *w, const char *dpath)
{
    struct pt_fs *fs = w->fs;
    char buf[8192];
    int ret = 0, pfd = *dpath ? pt_open_beneath(fs, -1, dpath) : -1;
    int dir = pt_reopen(fs, *dpath ? pfd : fs->root->fd, O_RDONLY | O_DIRECTORY);

    if (pfd >= 0)
        close(pfd);
    if (dir < 0)
        return 0; /* gone or unreadable: not where the inodes are */
    w->dirs++;
    while (ret == 0 && w->left && w->entries < w->max) {
        ssize_t n = getdents64(dir, buf, sizeof(buf));

        if (n <= 0)
            break;
        for (ssize_t off = 0; ret == 0 && off < n;) {
            const struct linux_dirent64 *e = (const void *)(buf + off);

            if (e->d_reclen == 0)
                break; /* never from the kernel; it must not loop forever */
            off += e->d_reclen;
            w->entries++;
            ret = walk_entry(w, dir, dpath, e->d_name);
        }
    }
    close(dir);
    return ret;
}

/*
 * Looks for the inodes st->inodes[pending[0 .. n)] (marked lost) in the whole share, breadth
 * first, until at most expect of them are found or max entries were looked at; each one found
 * gets its path and is no longer lost. The cost into *w (entries, dirs).
 */
static int walk_share(struct pt_fs *fs, struct pt_state *st, const size_t *pending, size_t n,
                      size_t expect, size_t max, struct walk *w)
{
    int ret = index_init(&w->wanted, n);

    *w = (struct walk){.fs = fs, .st = st, .max = max, .wanted = w->wanted};
    for (size_t i = 0; ret == 0 && i < n; i++) {
        const struct pt_state_inode *in = &st->inodes[pending[i]];

        w->left += index_add(&w->wanted, file_key(in->dev, in->ino), pending[i]);
    }
    w->left = w->left < expect ? w->left : expect; /* the unlinked ones are not there */
    if (ret == 0)
        ret = walk_push(w, "", 0);
    while (ret == 0 && w->head < w->tail && w->left && w->entries < w->max) {
        char *dpath = w->queue[w->head++];

        ret = walk_dir(w, dpath);
        free(dpath);
    }
    while (w->head < w->tail)
        free(w->queue[w->head++]);
    free(w->queue);
    w->queue = NULL;
    index_free(&w->wanted);
    return ret;
}

/* SAVE's fallback: the inodes /proc/self/fd gave no path for. */
static int walk_pending(struct collect *c)
{
    struct walk w = {0};
    int ret = walk_share(c->fs, c->st, c->pending, c->n_pending, c->n_walk, WALK_MAX_ENTRIES, &w);

    if (w.entries >= WALK_MAX_ENTRIES)
        log_warn("migration: the walk of the share for inodes without a path stopped after %zu "
                 "entries",
                 w.entries);
    return ret;
}

/* A handover, after the walk: the inodes it did not find pass as fds too. 1 when one has no
 * fd either (it stays lost). */
static int pass_unfound(struct collect *c, const struct pt_state_inode *in)
{
    struct pt_inode *inode;
    int ret = 1;

    rcu_read_lock();
    inode = itab_get(c->fs->inodes, in->nodeid);
    if (inode)
        ret = pass_fd(c, inode);
    rcu_read_unlock();
    return ret;
}

/* After the walk: what is still lost fails the SAVE unless the guest may get errors. */
static int settle_pending(struct collect *c)
{
    size_t lost = 0;
    const struct pt_state_inode *first = NULL;

    for (size_t i = 0; i < c->n_pending; i++) {
        const struct pt_state_inode *in = &c->st->inodes[c->pending[i]];
        int ret = in->lost && c->st->pass_fds ? pass_unfound(c, in) : 0;

        if (ret < 0)
            return ret;
        c->n_dead += (size_t)ret;
        if (in->lost && !c->st->pass_fds && !lost++)
            first = in;
    }
    if (c->n_dead)
        log_warn("upgrade: %zu inode(s) the guest holds are gone from the host (no name, and no "
                 "fd or file handle that still opens): handed over as lost (EIO, as here)",
                 c->n_dead);
    if (!lost)
        return 0;
    if (c->fs->cfg.migration_on_error == MIGRATION_ERROR_ABORT)
        return fail(c->st, -ENOENT,
                    "%zu inode(s) not found in the share (%zu unlinked while in use; nodeid %llu, "
                    "inode %llu first); --migration-on-error=guest-error saves them as lost",
                    lost, c->n_unlinked, (unsigned long long)first->nodeid,
                    (unsigned long long)first->ino);
    log_warn("migration: %zu inode(s) not found in the share are saved as lost (nodeid %llu "
             "first): the guest gets EIO on them after the migration",
             lost, (unsigned long long)first->nodeid);
    return 0;
}

int pt_state_collect(struct pt_fs *fs, struct pt_state *st)
{
    struct collect c = {.fs = fs, .st = st};
    ssize_t n = fd_link(fs, fs->root->fd, c.root, sizeof(c.root));
    int ret;

    if (n < 0)
        return fail(st, (int)n, "cannot read the share's path: %s", strerror((int)-n));
    if (fs->cfg.migration_mode == MIGRATION_FILE_HANDLES) {
        ret = share_fsid(fs, &st->fsid);
        if (ret < 0)
            return fail(st, ret, "cannot read the share's file system id: %s", strerror(-ret));
        st->has_fhs = true;
    }
    c.root_len = strcmp(c.root, "/") == 0 ? 0 : (size_t)n;
    st->last_nodeid = itab_last_nodeid(fs->inodes);
    st->last_fh = htab_last_fh(fs->handles);
    ret = itab_for_each(fs->inodes, collect_inode, &c);
    if (ret == 0)
        ret = index_init(&c.ids, st->n_inodes);
    for (size_t i = 0; ret == 0 && i < st->n_inodes; i++)
        index_add(&c.ids, st->inodes[i].nodeid, i);
    if (ret == 0)
        ret = htab_for_each(fs->handles, collect_handle, &c);
    if (c.n_orphans)
        log_warn("migration: %zu handle(s) of inodes the guest forgot are not saved", c.n_orphans);
    if (ret == 0 && c.n_walk)
        ret = walk_pending(&c);
    if (ret == 0)
        ret = settle_pending(&c);
    free(c.pending);
    index_free(&c.ids);
    if (ret < 0 && !st->why[0])
        fail(st, ret, "%s", strerror(-ret));
    return ret;
}

/* ---- LOAD: checks ---------------------------------------------------------------------------- */

bool pt_state_type_valid(uint32_t type)
{
    switch (type) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
    case S_IFSOCK:
        return true;
    }
    return false;
}

static int check_inode(struct pt_state *st, const struct pt_state_inode *in)
{
    unsigned long long id = (unsigned long long)in->nodeid;
    const char *path = pt_state_path(st, in);

    if (in->nodeid == 0 || in->nodeid > st->last_nodeid)
        return fail(st, -EINVAL, "nodeid %llu out of range (last %llu)", id,
                    (unsigned long long)st->last_nodeid);
    if ((in->type && !pt_state_type_valid(in->type)) || in->nlookup == 0) /* 0: unknown, as found */
        return fail(st, -EINVAL, "inode %llu has type 0%o and lookup count %llu", id,
                    (unsigned)in->type, (unsigned long long)in->nlookup);
    if (in->nodeid == FUSE_ROOT_ID && (in->lost || *path || in->type != S_IFDIR))
        return fail(st, -EINVAL, "the root (nodeid 1) must be a directory with the empty path");
    if (in->nodeid != FUSE_ROOT_ID && path && (!*path || pt_check_path(path) < 0))
        return fail(st, -EINVAL, "inode %llu has an invalid path", id);
    return 0;
}

static int check_handle(struct pt_state *st, const struct id_index *ids,
                        const struct pt_state_handle *h)
{
    unsigned long long fh = (unsigned long long)h->fh;
    const struct pt_state_inode *in;
    size_t idx;

    if (h->fh > st->last_fh) /* 0 is an fh too: the Rust virtiofsd's first */
        return fail(st, -EINVAL, "handle %llu out of range (last %llu)", fh,
                    (unsigned long long)st->last_fh);
    if (h->flags & ~(uint32_t)(PT_STATE_OPEN_FLAGS | PT_STATE_OPEN_DROPPED))
        return fail(st, -EINVAL, "handle %llu has unknown open flags 0%o", fh, h->flags);
    if (!index_find(ids, h->nodeid, &idx))
        return fail(st, -EINVAL, "handle %llu names inode %llu, which is not in the state", fh,
                    (unsigned long long)h->nodeid);
    in = &st->inodes[idx];
    if (in->type && in->type != (h->dir ? S_IFDIR : S_IFREG))
        return fail(st, -EINVAL, "handle %llu: a %s handle on an inode of type 0%o", fh,
                    h->dir ? "directory" : "file", (unsigned)in->type);
    return 0;
}

/* What the guest's handles on an inode allow: bit 0 reading, bit 1 writing. */
enum { OPEN_READS = 1, OPEN_WRITES = 2 };

static unsigned handle_access(const struct pt_state_handle *h)
{
    switch (h->flags & O_ACCMODE) {
    case O_RDONLY:
        return OPEN_READS;
    case O_WRONLY:
        return OPEN_WRITES;
    default:
        return OPEN_READS | OPEN_WRITES;
    }
}

static int cmp_owner(const void *a, const void *b)
{
    const struct pt_state_owner *x = *(const struct pt_state_owner *const *)a;
    const struct pt_state_owner *y = *(const struct pt_state_owner *const *)b;

    if (x->nodeid != y->nodeid)
        return x->nodeid < y->nodeid ? -1 : 1;
    return x->owner < y->owner ? -1 : x->owner > y->owner;
}

/* No (nodeid, owner) twice. */
static int check_owners_unique(struct pt_state *st)
{
    const struct pt_state_owner **sorted = calloc(st->n_owners + 1, sizeof(*sorted));
    int ret = 0;

    if (!sorted)
        return fail(st, -ENOMEM, "out of memory");
    for (size_t i = 0; i < st->n_owners; i++)
        sorted[i] = &st->owners[i];
    qsort(sorted, st->n_owners, sizeof(*sorted), cmp_owner);
    for (size_t i = 1; ret == 0 && i < st->n_owners; i++)
        if (cmp_owner(&sorted[i - 1], &sorted[i]) == 0)
            ret = fail(st, -EINVAL, "lock owner %llu on inode %llu appears twice",
                       (unsigned long long)sorted[i]->owner, (unsigned long long)sorted[i]->nodeid);
    free(sorted);
    return ret;
}

/* One owner: on a saved inode, through a saved handle of that inode, with valid ranges the
 * guest's handles on the inode allow (access: per inode index, OPEN_* bits). */
static int check_owner(struct pt_state *st, const struct id_index *ids, const struct id_index *fhs,
                       const unsigned *access, const struct pt_state_owner *o)
{
    unsigned long long id = (unsigned long long)o->nodeid, owner = (unsigned long long)o->owner;
    size_t ino, h;

    if (!index_find(ids, o->nodeid, &ino))
        return fail(st, -EINVAL, "lock owner %llu on inode %llu, which is not in the state", owner,
                    id);
    if (!index_find(fhs, o->fh, &h) || st->handles[h].nodeid != o->nodeid)
        return fail(st, -EINVAL, "lock owner %llu on inode %llu names handle %llu, not one of it",
                    owner, id, (unsigned long long)o->fh);
    if (o->first > st->n_ranges || o->n > st->n_ranges - o->first)
        return fail(st, -EINVAL, "lock owner %llu: ranges out of bounds", owner);
    for (size_t i = o->first; i < o->first + o->n; i++) {
        const struct pt_state_range *r = &st->ranges[i];

        if (r->start > r->end || r->end > PT_STATE_LOCK_EOF)
            return fail(st, -EINVAL, "lock owner %llu on inode %llu: invalid range %llu-%llu",
                        owner, id, (unsigned long long)r->start, (unsigned long long)r->end);
        if (!(access[ino] & (r->write ? OPEN_WRITES : OPEN_READS)))
            return fail(st, -EINVAL,
                        "lock owner %llu on inode %llu: a %s lock without the inode open for %s",
                        owner, id, r->write ? "write" : "read", r->write ? "writing" : "reading");
    }
    return 0;
}

/* The locks, once inodes and handles were checked (ids and fhs index them). */
static int check_locks(struct pt_state *st, const struct id_index *ids, const struct id_index *fhs)
{
    struct id_index flocked = {0};
    unsigned *access;
    int ret = 0;

    if (st->n_owners > PT_STATE_MAX_OWNERS || st->n_ranges > PT_STATE_MAX_RANGES ||
        st->n_flocks > st->n_handles)
        return fail(st, -EINVAL, "too many lock owners, ranges or flocks");
    if (!st->n_owners && !st->n_flocks)
        return 0;
    access = calloc(st->n_inodes + 1, sizeof(*access));
    if (!access || index_init(&flocked, st->n_flocks) < 0)
        ret = fail(st, -ENOMEM, "out of memory");
    for (size_t i = 0; ret == 0 && i < st->n_handles; i++) {
        size_t ino;

        if (index_find(ids, st->handles[i].nodeid, &ino))
            access[ino] |= handle_access(&st->handles[i]);
    }
    for (size_t i = 0; ret == 0 && i < st->n_owners; i++)
        ret = check_owner(st, ids, fhs, access, &st->owners[i]);
    if (ret == 0)
        ret = check_owners_unique(st);
    for (size_t i = 0; ret == 0 && i < st->n_flocks; i++) {
        size_t h;

        if (!index_find(fhs, st->flocks[i].fh, &h))
            ret = fail(st, -EINVAL, "flock on handle %llu, which is not in the state",
                       (unsigned long long)st->flocks[i].fh);
        else if (!index_add(&flocked, st->flocks[i].fh, i))
            ret = fail(st, -EINVAL, "two flocks on handle %llu",
                       (unsigned long long)st->flocks[i].fh);
        else
            st->flocks[i].nodeid = st->handles[h].nodeid;
    }
    free(access);
    index_free(&flocked);
    return ret;
}

/* Each file handle on a saved inode, one per inode at most; links them (inode.fh). */
static int check_fhs(struct pt_state *st, const struct id_index *ids)
{
    if (st->n_fhs > st->n_inodes)
        return fail(st, -EINVAL, "more file handles than inodes");
    for (size_t i = 0; i < st->n_fhs; i++) {
        const struct pt_state_fh *f = &st->fhs[i];
        size_t idx;

        if (f->type < 0 || f->len == 0 || f->len > PT_STATE_FH_MAX ||
            f->off + f->len > st->fh_bytes_len)
            return fail(st, -EINVAL, "inode %llu: bad file handle", (unsigned long long)f->nodeid);
        if (!index_find(ids, f->nodeid, &idx))
            return fail(st, -EINVAL, "file handle of nodeid %llu, which is not saved",
                        (unsigned long long)f->nodeid);
        if (st->inodes[idx].fh)
            return fail(st, -EINVAL, "inode %llu has two file handles",
                        (unsigned long long)f->nodeid);
        st->inodes[idx].fh = i + 1;
    }
    return 0;
}

/*
 * The passed inodes (a handover's): only where fds came beside the stream; each a saved
 * inode without a path, of a known type, not the root, passed once; each of the n_fds fds
 * named exactly once. Links them (inode.passed).
 */
static int check_passed(struct pt_state *st, const struct id_index *ids)
{
    struct id_index used = {0};
    int ret = 0;

    if (!st->n_passed && (!st->fds_given || !st->n_fds))
        return 0;
    if (!st->fds_given)
        return fail(st, -EINVAL, "inodes passed as fds, in a stream that came without fds");
    if (st->n_passed > PT_STATE_MAX_PASSED_FDS || st->n_passed != st->n_fds)
        return fail(st, -EINVAL, "%zu inodes passed as fds, with %zu fds", st->n_passed, st->n_fds);
    if (index_init(&used, st->n_passed) < 0)
        ret = fail(st, -ENOMEM, "out of memory");
    for (size_t i = 0; ret == 0 && i < st->n_passed; i++) {
        const struct pt_state_passed *p = &st->passed[i];
        unsigned long long id = (unsigned long long)p->nodeid;
        struct pt_state_inode *in;
        size_t idx;

        if (!index_find(ids, p->nodeid, &idx))
            ret = fail(st, -EINVAL, "inode %llu passed as an fd is not in the state", id);
        else if (p->index >= st->n_fds || !index_add(&used, (uint64_t)p->index + 1, i))
            ret = fail(st, -EINVAL, "inode %llu passed as fd %u: out of range or named twice", id,
                       p->index);
        else if ((in = &st->inodes[idx])->passed || !in->lost || !in->type ||
                 p->nodeid == FUSE_ROOT_ID)
            ret = fail(st, -EINVAL,
                       "inode %llu passed as an fd: twice, with a path, of unknown type, or the "
                       "root",
                       id);
        else
            in->passed = i + 1;
    }
    index_free(&used);
    return ret;
}

int pt_state_check(struct pt_state *st)
{
    struct id_index ids = {0}, fhs = {0};
    bool root = false;
    int ret = 0;

    if (st->last_nodeid > PT_STATE_MAX_ID || st->last_fh > PT_STATE_MAX_ID)
        return fail(st, -EINVAL, "id counters out of range");
    if (st->n_inodes > PT_STATE_MAX_INODES || st->n_handles > PT_STATE_MAX_HANDLES)
        return fail(st, -EINVAL, "too many inodes or handles");
    if (index_init(&ids, st->n_inodes) < 0 || index_init(&fhs, st->n_handles) < 0)
        ret = fail(st, -ENOMEM, "out of memory");
    for (size_t i = 0; ret == 0 && i < st->n_inodes; i++) {
        ret = check_inode(st, &st->inodes[i]);
        if (ret == 0 && !index_add(&ids, st->inodes[i].nodeid, i))
            ret = fail(st, -EINVAL, "nodeid %llu appears twice",
                       (unsigned long long)st->inodes[i].nodeid);
        root |= st->inodes[i].nodeid == FUSE_ROOT_ID;
    }
    if (ret == 0 && !root)
        ret = fail(st, -EINVAL, "no root inode (nodeid 1)");
    for (size_t i = 0; ret == 0 && i < st->n_handles; i++) {
        ret = check_handle(st, &ids, &st->handles[i]);
        if (ret == 0 && !index_add(&fhs, st->handles[i].fh, i))
            ret = fail(st, -EINVAL, "handle %llu appears twice",
                       (unsigned long long)st->handles[i].fh);
    }
    if (ret == 0)
        ret = check_locks(st, &ids, &fhs);
    if (ret == 0)
        ret = check_fhs(st, &ids);
    if (ret == 0)
        ret = check_passed(st, &ids);
    index_free(&ids);
    index_free(&fhs);
    return ret;
}

/* ---- LOAD: installing ------------------------------------------------------------------------ */

/* A lost inode's key: no host inode has this dev (a dev_t is 32 bits), so it meets none. */
static struct itab_key lost_key(uint64_t nodeid)
{
    return (struct itab_key){.dev = UINT64_MAX, .ino = nodeid, .mnt_id = UINT64_MAX};
}

/* Under --inode-file-handles, the handle the inode of fd should keep instead (or NULL). */
static int restore_handle(struct pt_fs *fs, int fd, const struct statx *stx,
                          struct pt_fhandle **out)
{
    int mnt_id = (stx->stx_mask & STATX_MNT_ID) ? (int)stx->stx_mnt_id : 0;
    /* A mount fd comes from a directory or regular file, never a special file or symlink. */
    int src = S_ISDIR(stx->stx_mode) || S_ISREG(stx->stx_mode) ? fd : -1;
    struct fh_buf b;
    int encoded;

    *out = NULL;
    if (!fh_policy_wants_handle(&fs->fh))
        return 0;
    encoded = fh_encode(fd, &b);
    return fh_policy_new_handle(&fs->fh, encoded < 0 ? encoded : 1, &b, mnt_id, src,
                                fs->proc_self_fd, out);
}

/* One file system of the share, by its st_dev, and the mount it was found on here. */
struct share_dev {
    uint64_t dev, mnt_id;
};

/*
 * Inserts a saved inode found again as fd (an O_PATH fd beneath the share, consumed); what
 * names it for messages. passed (a passed inode's, else NULL): the share's file system it is
 * on; the inode keeps its fd even where --inode-file-handles would keep a file handle instead
 * (an unlinked file lives only as long as an fd holds it), and its key takes the mount id of
 * that file system's mount here (the fd's own mount may be another mount namespace's: the
 * predecessor's sandbox). loc (consumed, may be NULL): where the fd cache may open it again.
 * -errno (st->why) if it cannot be.
 */
static int install_fd(struct pt_fs *fs, struct pt_state *st, const struct pt_state_inode *in,
                      int fd, const char *what, const struct share_dev *passed, struct pt_loc *loc)
{
    struct pt_fhandle *fh = NULL;
    struct pt_inode *inode;
    struct itab_key key;
    struct statx stx;
    int ret = pt_statx(fd, &stx);

    if (ret == 0 && in->type && (stx.stx_mode & S_IFMT) != in->type)
        ret = fail(st, -ESTALE, "inode %llu: %s is of type 0%o, was 0%o",
                   (unsigned long long)in->nodeid, what, (unsigned)(stx.stx_mode & S_IFMT),
                   (unsigned)in->type);
    else if (ret == 0 && (fs->cfg.migration_verify_handles || st->verify_ids) &&
             !same_file(&stx, in->dev, in->ino))
        ret = fail(st, -ESTALE,
                   "inode %llu: %s is another file than was saved "
                   "(--migration-verify-handles, or a journal restore)",
                   (unsigned long long)in->nodeid, what);
    if (ret == 0 && !passed)
        ret = restore_handle(fs, fd, &stx, &fh);
    if (ret < 0) {
        close(fd);
        free(loc);
        return st->why[0] ? ret
                          : fail(st, ret, "inode %llu: %s: %s", (unsigned long long)in->nodeid,
                                 what, strerror(-ret));
    }
    if (fh) {
        close(fd); /* a handle-only inode keeps no fd */
        fd = -1;
    }
    pt_key_from_statx(&stx, &key);
    if (passed)
        key.mnt_id = passed->mnt_id;
    if (fh) { /* opened again by its handle: no place needed */
        free(loc);
        loc = NULL;
    }
    ret = itab_insert_at(fs->inodes, in->nodeid, &key, fd, fh, loc, stx.stx_mode & S_IFMT,
                         in->nlookup, &inode);
    if (ret == -EEXIST)
        return fail(st, ret, "inode %llu: %s is a file another saved inode names too",
                    (unsigned long long)in->nodeid, what);
    return ret < 0 ? fail(st, ret, "inode %llu: %s", (unsigned long long)in->nodeid, strerror(-ret))
                   : 0;
}

/* Finds one saved inode again by its path and inserts it; -errno (st->why) if it cannot be. */
static int install_found(struct pt_fs *fs, struct pt_state *st, const struct pt_state_inode *in)
{
    const char *path = pt_state_path(st, in);
    int fd = pt_open_beneath(fs, -1, path);

    if (fd < 0)
        return fail(st, fd, "inode %llu: %s: %s", (unsigned long long)in->nodeid, path,
                    strerror(-fd));
    /* Its path is where the fd cache opens it again until a LOOKUP finds it by name. */
    return install_fd(fs, st, in, fd, path, NULL, *path ? itab_loc_new(FUSE_ROOT_ID, path) : NULL);
}

/* ---- LOAD by file handle (--migration-mode=file-handles) ------------------------------------- */

struct by_fh {
    int mount_fd;        /* O_RDONLY on the share's root: open_by_handle_at refuses O_PATH fds */
    char root[PATH_MAX]; /* the share's root as /proc/self/fd shows it; "" for "/" */
    size_t root_len;
    uint64_t root_dev, root_ino;
};

/* Opens a saved file handle as an O_PATH fd on the share's mount; -errno. */
static int open_fh(const struct by_fh *b, const struct pt_state *st, const struct pt_state_fh *f)
{
    struct fh_buf h;
    int ret, fd = -1;

    h.u.h.handle_bytes = f->len;
    h.u.h.handle_type = f->type;
    memcpy(h.u.h.f_handle, st->fh_bytes + f->off, f->len);
    {
        /*
         * As the daemon: open_by_handle_at needs CAP_DAC_READ_SEARCH, which the kernel drops
         * while the fsuid is not 0. This runs on the control thread, outside any request,
         * and opens O_PATH only (nothing is read, written or created). A handle can name any
         * inode of the file system, inside the share or not: the fd only serves the
         * beneath-the-share check (by_fh_beneath) that every caller makes before using it,
         * and is closed when that fails.
         */
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0) {
            fd = open_by_handle_at(b->mount_fd, &h.u.h, O_PATH | O_CLOEXEC);
            ret = fd < 0 ? -errno : 0;
        }
    }
    return ret < 0 ? ret : fd;
}

/*
 * The inode fd (from a file handle) names, as an O_PATH fd resolved again by its name beneath
 * the share's root (fd is closed): /proc/self/fd gives the name, which is only a hint; the
 * resolution without symlinks and the st_dev/st_ino comparison make sure the inode is one a
 * LOOKUP from the root reaches. -EXDEV if it is not (outside the share, or with no name the
 * share has: unlinked, or a disconnected dentry).
 */
static int by_fh_beneath(struct pt_fs *fs, const struct by_fh *b, int fd)
{
    char link[PATH_MAX];
    const char *rel = NULL;
    struct statx want, got;
    int found = -EXDEV;

    if (pt_statx(fd, &want) == 0 && fd_link(fs, fd, link, sizeof(link)) >= 0 &&
        (b->root_len == 0 || strncmp(link, b->root, b->root_len) == 0)) {
        rel = link + b->root_len;
        rel = rel[0] == '/' && rel[1] ? rel + 1 : NULL;
    }
    if (rel && pt_check_path(rel) == 0)
        found = pt_open_beneath(fs, -1, rel);
    close(fd);
    if (found >= 0 &&
        (pt_statx(found, &got) < 0 ||
         !same_file(&got, makedev(want.stx_dev_major, want.stx_dev_minor), want.stx_ino))) {
        close(found);
        found = -EXDEV;
    }
    return found < 0 ? -EXDEV : found;
}

/* Finds one saved inode again by its file handle and inserts it; -errno (st->why). */
static int install_by_fh(struct pt_fs *fs, struct pt_state *st, const struct by_fh *b,
                         const struct pt_state_inode *in)
{
    int fd = open_fh(b, st, &st->fhs[in->fh - 1]);

    if (fd < 0)
        return fail(st, fd, "inode %llu: its file handle does not open here: %s%s",
                    (unsigned long long)in->nodeid, strerror(-fd),
                    fd == -EPERM ? " (opening file handles needs CAP_DAC_READ_SEARCH)" : "");
    fd = by_fh_beneath(fs, b, fd);
    if (fd < 0)
        return fail(st, fd,
                    "inode %llu: its file handle opens an inode that is not beneath the share "
                    "(or has no name there): refused",
                    (unsigned long long)in->nodeid);
    return install_fd(fs, st, in, fd, "(its file handle)", NULL, NULL);
}

/*
 * Before any inode: the handles are of this file system (the saved fsid), the root's handle
 * opens the share's root, the mount fd. 0 (b->mount_fd set), or -errno (st->why).
 */
static int by_fh_prepare(struct pt_fs *fs, struct pt_state *st, struct by_fh *b)
{
    const struct pt_state_inode *root = NULL;
    struct fd_path p;
    struct statx stx;
    uint64_t fsid = 0;
    ssize_t n = fd_link(fs, fs->root->fd, b->root, sizeof(b->root));
    int ret, fd = -1;

    b->mount_fd = -1;
    for (size_t i = 0; i < st->n_inodes && !root; i++)
        if (st->inodes[i].nodeid == FUSE_ROOT_ID)
            root = &st->inodes[i];
    if (n < 0 || pt_statx(fs->root->fd, &stx) < 0)
        return fail(st, n < 0 ? (int)n : -EIO, "cannot read the share's path");
    b->root_len = strcmp(b->root, "/") == 0 ? 0 : (size_t)n;
    b->root_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    b->root_ino = stx.stx_ino;
    ret = share_fsid(fs, &fsid);
    if (ret < 0)
        return fail(st, ret, "cannot read the share's file system id: %s", strerror(-ret));
    if (st->fsid_unknown)
        fsid = st->fsid = 0; /* the Rust format: only the beneath check below guards */
    if (fsid != st->fsid)
        return fail(st, -EXDEV,
                    "the file handles are of another file system (id %llx, the share's is "
                    "%llx): --migration-mode=file-handles needs the same file system on both "
                    "sides",
                    (unsigned long long)st->fsid, (unsigned long long)fsid);
    if (!root || (!root->fh && !st->fsid_unknown))
        return fail(st, -EINVAL, "file handles without one of the root");
    {
        CREDS_AS_DAEMON(scope, &ret);
        /* The share's root itself, only for open_by_handle_at (which refuses O_PATH fds). */
        if (ret == 0) {
            fd = openat(fs->proc_self_fd, fd_name(fs->root->fd, &p),
                        O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC);
            ret = fd < 0 ? -errno : 0;
        }
    }
    if (ret < 0)
        return fail(st, ret, "cannot open the share's root for file handles: %s", strerror(-ret));
    b->mount_fd = fd;
    if (!root->fh)
        return 0;
    fd = open_fh(b, st, &st->fhs[root->fh - 1]);
    if (fd < 0)
        return fail(st, fd, "the root's file handle does not open here: %s%s", strerror(-fd),
                    fd == -EPERM ? " (opening file handles needs CAP_DAC_READ_SEARCH)" : "");
    ret = pt_statx(fd, &stx);
    close(fd);
    if (ret == 0 && !same_file(&stx, b->root_dev, b->root_ino))
        ret = -EXDEV;
    return ret < 0 ? fail(st, ret,
                          "the root's file handle opens another inode than the share's root: "
                          "not the same share")
                   : 0;
}

static int install_lost(struct pt_fs *fs, const struct pt_state_inode *in)
{
    struct itab_key key = lost_key(in->nodeid);
    struct pt_inode *inode;

    return itab_insert_at(fs->inodes, in->nodeid, &key, -1, NULL, NULL, in->type, in->nlookup,
                          &inode);
}

/* ---- LOAD of inodes passed as fds (a handover's) ----------------------------------------------
 */

/* The share's file systems: at most this many distinct ones (submounts) are told apart; an
 * fd on one more is refused (the upgrade fails, the old process goes on serving). */
#define SHARE_DEVS_MAX 256

struct share_devs {
    struct share_dev d[SHARE_DEVS_MAX];
    size_t n;
};

static void add_dev(struct share_devs *d, const struct pt_inode *inode)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->d[i].dev == inode->key.dev)
            return;
    if (d->n < SHARE_DEVS_MAX)
        d->d[d->n++] = (struct share_dev){inode->key.dev, inode->key.mnt_id};
}

/* The root's file system, and that of every inode installed so far (each found beneath the
 * share by its path or its beneath-checked file handle). Inside rcu_read_lock. */
static void share_devs(struct pt_fs *fs, const struct pt_state *st, struct share_devs *d)
{
    d->n = 0;
    add_dev(d, fs->root);
    for (size_t i = 0; i < st->n_inodes; i++) {
        const struct pt_inode *inode =
            st->inodes[i].passed ? NULL : itab_get(fs->inodes, st->inodes[i].nodeid);

        if (inode && !itab_inode_lost(inode)) /* not a lost one's made-up key */
            add_dev(d, inode);
    }
}

/*
 * A passed inode: installed from a dup of the fd our predecessor passed for it (the fds are
 * borrowed). It has no name in the share (that is why it was passed), so it is not resolved
 * beneath the share; instead the fd must be an O_PATH fd (as every inode's fd is) of the very
 * inode saved (st_dev, st_ino, type) on one of the share's file systems. The predecessor had
 * the inode from a LOOKUP beneath the share, and runs as our uid or root (handover.c checks);
 * these checks keep a wrong or stray fd from becoming an inode the guest can reach.
 */
static int install_passed(struct pt_fs *fs, struct pt_state *st, const struct share_devs *d,
                          const struct pt_state_inode *in)
{
    unsigned long long id = (unsigned long long)in->nodeid;
    int given = st->fds[st->passed[in->passed - 1].index];
    int flags = fcntl(given, F_GETFL), fd;
    const struct share_dev *on = NULL;
    struct statx stx;

    if (flags < 0 || !(flags & O_PATH))
        return fail(st, -EBADF, "inode %llu: the fd passed for it is not an O_PATH fd", id);
    if (pt_statx(given, &stx) < 0 || !same_file(&stx, in->dev, in->ino) ||
        (stx.stx_mode & S_IFMT) != in->type)
        return fail(st, -ESTALE, "inode %llu: the fd passed for it is another file than was saved",
                    id);
    for (size_t i = 0; i < d->n && !on; i++)
        if (d->d[i].dev == in->dev)
            on = &d->d[i];
    if (!on)
        return fail(st, -EXDEV,
                    "inode %llu: the fd passed for it is not on the share's file system", id);
    fd = fcntl(given, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return fail(st, -errno, "inode %llu: the fd passed for it: %s", id, strerror(errno));
    return install_fd(fs, st, in, fd, "(the fd passed for it)", on, NULL);
}

/* Every passed inode, once the others are in (their file systems are the share's). */
static int install_all_passed(struct pt_fs *fs, struct pt_state *st, bool guest_error, size_t *lost)
{
    struct share_devs *d = malloc(sizeof(*d));
    int ret = d ? 0 : -ENOMEM;

    if (d)
        share_devs(fs, st, d);
    for (size_t i = 0; ret == 0 && i < st->n_inodes; i++) {
        const struct pt_state_inode *in = &st->inodes[i];

        if (!in->passed)
            continue;
        ret = install_passed(fs, st, d, in);
        if (ret < 0 && guest_error && ret != -ENOMEM) {
            if (!(*lost)++ && st->why[0])
                log_warn("migration: %s; it is lost (EIO to the guest)", st->why);
            st->why[0] = '\0';
            ret = install_lost(fs, in);
        }
    }
    free(d);
    return ret;
}

/* The inodes a journal restore did not find at their paths, for the walk (walk_unfound). */
struct unfound {
    size_t *idx; /* in st->inodes */
    size_t n, cap;
    char first[256]; /* why the first one was not found */
};

/* Every inode but the root (which fs has); the failures the guest may see as lost. b: by
 * file handle where the inode has one (NULL: by path). u (a journal restore's, else NULL):
 * where an inode not found at its path goes, marked lost, instead of being installed lost. */
static int install_inodes(struct pt_fs *fs, struct pt_state *st, const struct by_fh *b,
                          struct unfound *u)
{
    bool guest_error =
        fs->cfg.migration_on_error == MIGRATION_ERROR_GUEST_ERROR || st->lose_unfound;
    size_t lost = 0;
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < st->n_inodes; i++) {
        struct pt_state_inode *in = &st->inodes[i];

        if (in->nodeid == FUSE_ROOT_ID || in->passed)
            continue; /* the root is there; the passed ones come last */
        if (in->lost && st->fds_given && !(b && in->fh)) {
            /* A handover's: gone in the old process already (collect_passed); stays so. */
            ret = install_lost(fs, in);
            continue;
        }
        if (b && in->fh)
            ret = install_by_fh(fs, st, b, in);
        else
            ret = in->lost ? -ENOENT : install_found(fs, st, in);
        if (ret < 0 && ret != -ENOMEM && u && !(b && in->fh)) {
            if (!u->n && st->why[0])
                snprintf(u->first, sizeof(u->first), "%s", st->why);
            st->why[0] = '\0';
            in->lost = true;
            ret = grow((void **)&u->idx, &u->cap, u->n + 1, sizeof(size_t));
            if (ret == 0)
                u->idx[u->n++] = i;
            continue;
        }
        if (ret < 0 && in->lost && !(b && in->fh) && !guest_error)
            ret = fail(st, ret, "inode %llu was saved as lost (the source could not find it)",
                       (unsigned long long)in->nodeid);
        if (ret < 0 && guest_error && ret != -ENOMEM) {
            if (!lost++ && st->why[0])
                log_warn("migration: %s; it is lost (EIO to the guest)", st->why);
            st->why[0] = '\0';
            ret = install_lost(fs, in);
        }
    }
    if (ret == 0 && st->n_passed)
        ret = install_all_passed(fs, st, guest_error, &lost);
    if (lost)
        log_warn("migration: %zu inode(s) lost: requests on them answer EIO", lost);
    return ret;
}

/*
 * Reopens one saved handle and inserts it under its fh.
 *
 * As the daemon (this runs on the control thread, outside any request): the guest had this
 * file or directory open already, on the source, with these flags, opened there with its
 * caller's credentials; the inode was resolved beneath the share without following a symlink
 * and its type checked against the handle's kind (pt_state_check: only regular files and
 * directories have handles, so no device, FIFO or socket is ever opened); O_CREAT, O_EXCL and
 * O_TRUNC are dropped (nothing is created or truncated), and pt_reopen adds O_NOCTTY. A
 * passed inode (a handover's: unlinked, or moved out of the share) was not resolved but
 * checked to be the very inode our predecessor served the guest, on the share's file system,
 * of the handle's kind (install_passed); the predecessor held this handle open on it already,
 * and /proc/self/fd reopens an unlinked file as any other, so the reopen gives the guest
 * nothing it did not have.
 */
static int install_handle(struct pt_fs *fs, struct pt_state *st, const struct pt_state_handle *h)
{
    struct pt_inode *inode = itab_get(fs->inodes, h->nodeid);
    int flags = h->dir ? O_RDONLY | O_DIRECTORY
                       : (int)(h->flags & PT_STATE_OPEN_FLAGS & ~(uint32_t)O_DIRECTORY);
    PT_FDREF(r);
    int fd, ret = 0;

    if (!inode)
        return fail(st, -ENOENT, "handle %llu: no inode %llu", (unsigned long long)h->fh,
                    (unsigned long long)h->nodeid);
    if (itab_inode_lost(inode))
        return 1; /* a lost inode's handle: dropped (its fh answers EBADF) */
    if ((inode->type & S_IFMT) != (h->dir ? S_IFDIR : S_IFREG))
        return fail(st, -EINVAL, "handle %llu: wrong inode type", (unsigned long long)h->fh);
    {
        CREDS_AS_DAEMON(scope, &ret);
        fd = ret < 0 ? ret : pt_inode_fd(fs, inode, &r);
        if (fd >= 0)
            fd = pt_reopen(fs, fd, flags);
    }
    if (ret == 0 && fd < 0)
        ret = fd;
    if (ret == 0)
        ret = htab_insert_at(fs->handles, h->fh, h->nodeid, fd, h->dir);
    else if (fd >= 0)
        close(fd);
    return ret < 0 ? fail(st, ret, "handle %llu of inode %llu cannot be reopened: %s",
                          (unsigned long long)h->fh, (unsigned long long)h->nodeid, strerror(-ret))
                   : 0;
}

/*
 * A journal restore's inodes not found at their paths (a rename in flight at the crash, a
 * rename on the host while the daemon was down): one bounded walk of the share looks for
 * their st_dev/st_ino; those found are installed from where it found them, the others lost.
 */
static int walk_unfound(struct pt_fs *fs, struct pt_state *st, struct unfound *u)
{
    struct timespec t0, t1;
    struct walk w = {0};
    size_t found = 0, lost = 0;
    int ret;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ret = walk_share(fs, st, u->idx, u->n, u->n, RESTORE_WALK_MAX_ENTRIES, &w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rcu_read_lock();
    for (size_t i = 0; ret == 0 && i < u->n; i++) {
        struct pt_state_inode *in = &st->inodes[u->idx[i]];
        int r = in->lost ? -ENOENT : install_found(fs, st, in);

        if (r == 0) {
            found++;
            continue;
        }
        if (!lost++)
            log_warn("restore: nodeid %llu (%s) was not found; it is lost (EIO to the guest)",
                     (unsigned long long)in->nodeid,
                     st->why[0]    ? st->why
                     : u->first[0] ? u->first
                                   : "no path known");
        st->why[0] = '\0';
        in->lost = true;
        ret = r == -ENOMEM ? r : install_lost(fs, in);
    }
    rcu_read_unlock();
    log_info("restore: %zu inode(s) not at their paths (first: %s); a walk of the share found "
             "%zu in %zu entries of %zu directories (%.1f ms%s), %zu lost",
             u->n, u->first[0] ? u->first : "no path known", found, w.entries, w.dirs,
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
             w.entries >= RESTORE_WALK_MAX_ENTRIES ? ", stopped at its bound" : "", lost);
    return ret;
}

static int install_handles(struct pt_fs *fs, struct pt_state *st)
{
    bool guest_error =
        fs->cfg.migration_on_error == MIGRATION_ERROR_GUEST_ERROR || st->lose_unfound;
    size_t dropped = 0;
    int ret = 0;

    rcu_read_lock();
    for (size_t i = 0; ret == 0 && i < st->n_handles; i++) {
        ret = install_handle(fs, st, &st->handles[i]);
        if (ret < 0 && guest_error && ret != -ENOMEM) {
            if (!dropped)
                log_warn("migration: %s; dropped", st->why);
            st->why[0] = '\0';
            ret = 1;
        }
        if (ret > 0) {
            dropped++;
            ret = 0;
        }
    }
    rcu_read_unlock();
    if (dropped)
        log_warn("migration: %zu handle(s) dropped (of lost inodes, or not reopened): requests "
                 "on them answer EBADF",
                 dropped);
    return ret;
}

int pt_state_install(struct pt_fs *fs, struct pt_state *st)
{
    int ret;
    struct by_fh b = {.mount_fd = -1};
    struct unfound u = {0};
    bool use_fhs = fs->cfg.migration_mode == MIGRATION_FILE_HANDLES && st->n_fhs;

    st->why[0] = '\0';
    if (st->n_fhs && !use_fhs)
        log_info("migration: the state carries file handles; --migration-mode=find-paths uses "
                 "the paths");
    else if (!st->n_fhs && fs->cfg.migration_mode == MIGRATION_FILE_HANDLES)
        log_info("migration: the state carries no file handles; inodes are found by path");
    ret = use_fhs ? by_fh_prepare(fs, st, &b) : 0;
    if (ret == 0) {
        rcu_read_lock();
        ret = install_inodes(fs, st, use_fhs ? &b : NULL, st->verify_ids ? &u : NULL);
        rcu_read_unlock();
    }
    if (ret == 0 && u.n)
        ret = walk_unfound(fs, st, &u);
    free(u.idx);
    if (b.mount_fd >= 0)
        close(b.mount_fd);
    if (ret == 0)
        ret = install_handles(fs, st);
    if (ret < 0)
        return st->why[0] ? ret : fail(st, ret, "%s", strerror(-ret));
    itab_set_last_nodeid(fs->inodes, st->last_nodeid);
    htab_set_last_fh(fs->handles, st->last_fh);
    return 0;
}

/* ---- the session journal's look-ups while serving ------------------------------------------- */

int pt_state_inode_ids(struct pt_fs *fs, uint64_t nodeid, uint64_t *dev, uint64_t *ino,
                       uint32_t *type)
{
    struct pt_inode *inode = itab_get(fs->inodes, nodeid);

    if (!inode)
        return -ENOENT;
    *dev = inode->key.dev;
    *ino = inode->key.ino;
    *type = inode->type & S_IFMT;
    return 0;
}

int pt_state_handle_flags(struct pt_fs *fs, uint64_t fh, uint64_t nodeid, uint32_t *flags)
{
    struct pt_handle *h = htab_get(fs->handles, fh, nodeid);
    int f = h ? fcntl(h->fd, F_GETFL) : -1;

    if (f < 0)
        return -EBADF;
    *flags = (uint32_t)f & PT_STATE_OPEN_FLAGS;
    return 0;
}

void pt_state_share_id(struct pt_fs *fs, uint64_t *dev, uint64_t *ino)
{
    *dev = fs->root->key.dev;
    *ino = fs->root->key.ino;
}

int pt_state_path_ids(struct pt_fs *fs, const char *path, uint64_t *dev, uint64_t *ino)
{
    struct statx stx;
    int ret = pt_check_path(path), fd = ret < 0 ? ret : pt_open_beneath(fs, -1, path);

    if (fd < 0)
        return fd;
    ret = pt_statx(fd, &stx);
    close(fd);
    if (ret == 0) {
        *dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        *ino = stx.stx_ino;
    }
    return ret;
}

/* ---- deferred removal: the hidden names a session starts with -------------------------------- */

/* One hidden name of the share's root: kept (and its inode marked hidden) if an inode of fs
 * needs it as the file's only name, removed otherwise. 1 kept, 0 removed or left alone. */
static int sweep_one(struct pt_fs *fs, const char *name, size_t *removed)
{
    char want[PT_HIDDEN_NAME_MAX];
    struct pt_inode *inode = NULL;
    struct itab_key key;
    struct statx stx;
    int fd = openat(fs->root->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return 0;
    if (pt_statx(fd, &stx) < 0 || !S_ISREG(stx.stx_mode)) {
        close(fd);
        return 0; /* not a file this daemon made: left alone */
    }
    close(fd);
    pt_hidden_name(stx.stx_ino, want);
    if (strcmp(want, name) != 0) {
        log_debug("%s is not the hidden name of its inode (%llu): left alone", name,
                  (unsigned long long)stx.stx_ino);
        return 0;
    }
    pt_key_from_statx(&stx, &key);
    /* A second name elsewhere: a crash came between the hidden link and the guest's unlink,
     * which runs again (resubmitted) and hides the file anew if it must. */
    if (stx.stx_nlink == 1)
        inode = itab_find_ref(fs->inodes, &key, NULL, NULL);
    if (!inode) {
        pt_unhide(fs, key.dev, key.ino);
        (*removed)++;
        return 0;
    }
    __atomic_store_n(&inode->hidden, 1, __ATOMIC_RELEASE);
    itab_unref(fs->inodes, inode, 1); /* ours; the guest's lookups remain */
    return 1;
}

int pt_state_sweep_hidden(struct pt_fs *fs)
{
    char buf[8192];
    size_t kept = 0, removed = 0;
    int dir = pt_reopen(fs, fs->root->fd, O_RDONLY | O_DIRECTORY);

    if (dir < 0) {
        log_warn("cannot read the share's root for hidden files: %s", strerror(-dir));
        return dir;
    }
    rcu_read_lock();
    for (;;) {
        ssize_t n = getdents64(dir, buf, sizeof(buf));

        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            const struct linux_dirent64 *e = (const void *)(buf + off);

            if (e->d_reclen == 0)
                break;
            off += e->d_reclen;
            if (pt_is_hidden_name(e->d_name, strnlen(e->d_name, NAME_MAX + 1)))
                kept += (size_t)sweep_one(fs, e->d_name, &removed);
        }
    }
    rcu_read_unlock();
    close(dir);
    if (kept || removed)
        log_info("files the guest unlinked while in use: %zu kept for the session, %zu removed",
                 kept, removed);
    return 0;
}
