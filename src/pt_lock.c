/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Locks for the guest: POSIX record locks and flock, kept on the host so host processes and
 * other guests sharing the directory see them.
 *
 * POSIX locks belong to a lock owner (a guest process), not to an open file. They are
 * implemented with open file description (OFD) locks, which have the same range semantics
 * (merging, splitting, upgrading), on one host open file per (inode, owner): locks of two
 * owners then conflict, and locks of one owner taken through different guest fds merge, as
 * POSIX wants. FLUSH (every close(2) in the guest) drops the owner's locks on the file.
 *
 * flock locks belong to the open file, which is exactly one of our handles: flock(2) on its
 * fd has the right semantics as it is.
 *
 * Every lock request names one of the guest's open handles on the inode (FUSE_LK_IN's fh; the
 * guest kernel always sends the file's). Handles exist only for regular files and directories
 * the guest's caller opened with its own credentials (OPEN, CREATE, OPENDIR), so a lock never
 * reaches a device node, FIFO or socket, and never a file the caller could not open. The
 * owner files are opened from the handle's fd, with the daemon's own credentials (see
 * open_for_locks).
 *
 * Owner files are bounded per session (max_owners): the owners are the guest's to choose.
 * They go on FLUSH by the owner, on RELEASE of the handle the owner last locked through, on
 * FORGET of the inode and on a reset.
 *
 * A lock that must wait (SETLKW) waits on a thread of its own, so the queue worker that
 * received it keeps serving, including the unlock the wait depends on. INTERRUPT, FLUSH of
 * the owner, RELEASE of the file and a reset end waits early with EINTR: the waiting thread
 * is woken from fcntl/flock with a signal (re-sent until it is seen, as a signal that lands
 * just before the thread enters the syscall is otherwise lost).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"
#include "pt_lock.h"
#include "pt_state.h"

#define MAX_WAITS   1024           /* concurrent blocked SETLKWs per filesystem */
#define WAKE_SIGNAL (SIGRTMIN + 2) /* interrupts a waiting fcntl/flock; handler does nothing */
#define RESEND_NS   2000000        /* re-send the wake-up signal this often (2 ms) */
#define WAIT_STACK  (64 * 1024)

/*
 * Most lock owners (host fds) per session. Real guests hold one per process and locked file,
 * far fewer than this; a hostile one picks owners freely and would otherwise use up the
 * daemon's fds. Also held to OWNERS_NOFILE_SHARE of the open-file limit, so lock files never
 * take the fds inodes, handles and queues need. Past it a new owner gets ENOLCK, fcntl(2)'s
 * "too many segment locks".
 */
#define MAX_OWNERS          4096
#define OWNERS_NOFILE_SHARE 16

/* The host open file that carries one guest lock owner's POSIX locks on one inode. */
struct lock_owner {
    struct lock_owner *next;
    uint64_t nodeid, owner;
    uint64_t fh; /* the handle its last SETLK came through: RELEASE of it drops the owner */
    int fd;
    uint32_t pid;  /* guest pid of the owner's last lock: GETLK reports it */
    unsigned refs; /* 1 while in the table, +1 per wait using fd */
};

/* One blocked SETLKW. */
struct lock_wait {
    struct lock_wait *next;
    struct pt_locks *locks; /* the table it is linked in */
    pthread_t thread;
    struct pt_async async;
    atomic_bool cancelled;
    struct lock_owner *lo; /* POSIX: lock lo->fd with fl */
    struct flock fl;
    uint32_t pid;
    int flock_fd; /* flock: a dup of the handle's fd, -1 for POSIX */
    int flock_op;
    uint64_t fh;
    uint64_t nodeid; /* flock: the inode (POSIX: lo->nodeid) */
    /* A lock a migration's LOAD takes back (see "migration" below): no reply, no INTERRUPT. */
    bool restore;
    struct timespec since;
    uint64_t id; /* unique in the table's life (cancel_waits of just this one) */
};

struct pt_locks {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* broadcast when a wait ends */
    struct lock_owner *owners;
    unsigned nowners, max_owners;
    bool warned; /* the bound was logged once */
    struct lock_wait *waits;
    unsigned nwaits;
    unsigned nrestores; /* of the waits, those taking back a migrated lock */
    uint64_t last_wait_id;
    /* Ever used: FLUSH and RELEASE (every close in the guest) skip the mutex until then. */
    atomic_bool used;
    atomic_bool flocks_used; /* an flock was ever asked for: a SAVE looks at the handles */
};

static void wake_handler(int sig)
{
    (void)sig; /* only there to make the blocking syscall return EINTR */
}

/* MAX_OWNERS, or less under a low open-file limit (main raised it before pt_new). */
static unsigned owners_bound(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur / OWNERS_NOFILE_SHARE >= MAX_OWNERS)
        return MAX_OWNERS;
    return rl.rlim_cur / OWNERS_NOFILE_SHARE > 16 ? (unsigned)(rl.rlim_cur / OWNERS_NOFILE_SHARE)
                                                  : 16;
}

int pt_locks_process_setup(void)
{
    struct sigaction sa = {.sa_handler = wake_handler}; /* no SA_RESTART: we want EINTR */
    sigemptyset(&sa.sa_mask);
    return sigaction(WAKE_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

int pt_locks_new(struct pt_locks **out)
{
    struct pt_locks *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    pthread_mutex_init(&l->mu, NULL);
    atomic_init(&l->used, false);
    atomic_init(&l->flocks_used, false);
    l->max_owners = owners_bound();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    *out = l;
    return 0;
}

void pt_locks_free(struct pt_locks *l)
{
    if (!l)
        return;
    pt_locks_reset(l);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- lock owners (call with mu held) --------------------------------------------------- */

static struct lock_owner *owner_find(struct pt_locks *l, uint64_t nodeid, uint64_t owner)
{
    for (struct lock_owner *lo = l->owners; lo; lo = lo->next)
        if (lo->nodeid == nodeid && lo->owner == owner)
            return lo;
    return NULL;
}

static void owner_put(struct lock_owner *lo)
{
    if (--lo->refs > 0)
        return;
    close(lo->fd);
    free(lo);
}

static void owner_unlink(struct pt_locks *l, struct lock_owner *lo)
{
    for (struct lock_owner **p = &l->owners; *p; p = &(*p)->next) {
        if (*p == lo) {
            *p = lo->next;
            l->nowners--;
            owner_put(lo);
            return;
        }
    }
}

/*
 * The handle fd of the guest's open file a lock request names (in->fh on nodeid), or -EBADF.
 * setlk: as fcntl(2) checks, a write lock needs the file open for writing and a read lock
 * open for reading; the owner's file is the daemon's and would not check it.
 */
static int lock_handle_fd(struct pt_fs *fs, uint64_t nodeid, const struct fuse_lk_in *in,
                          bool setlk)
{
    struct pt_handle *h = htab_get(fs->handles, in->fh, nodeid);
    if (!h)
        return -EBADF;
    int flags = fcntl(h->fd, F_GETFL);
    if (flags < 0)
        return -errno;
    int acc = flags & O_ACCMODE;
    if (setlk && ((in->lk.type == F_WRLCK && acc == O_RDONLY) ||
                  (in->lk.type == F_RDLCK && acc == O_WRONLY)))
        return -EBADF;
    return h->fd;
}

/*
 * A host open file to carry one owner's POSIX locks, reopened from handle_fd (a guest handle's
 * fd, lock_handle_fd) with the daemon's own credentials: the owner's read and write locks,
 * taken through any of the guest's fds, must land on one open file (so that they merge), and
 * a write lock needs it open for writing, a read lock for reading.
 *
 * Safe as the daemon because: the caller opened the file itself (the handle, opened with the
 * caller's credentials) and lock_handle_fd checked the handle's mode allows the lock; the fd
 * never leaves the daemon and is used only for fcntl locks. Only a regular file (O_RDWR, else
 * O_RDONLY or O_WRONLY) or a directory (O_RDONLY, as OPENDIR opens it) is opened: handles
 * exist for nothing else, and the type is checked again on the fd. Anything else is -EINVAL
 * (POSIX: "the file does not support locking") and never opened, as opening a device node as
 * root reaches the host device, and opening a FIFO may block or wake its peer.
 */
static int open_for_locks(struct pt_fs *fs, int handle_fd)
{
    static const int file_modes[] = {O_RDWR, O_RDONLY, O_WRONLY};
    static const int dir_modes[] = {O_RDONLY | O_DIRECTORY};
    struct statx stx;
    int ret = pt_statx(handle_fd, &stx);
    if (ret < 0)
        return ret;
    const int *modes = S_ISREG(stx.stx_mode) ? file_modes : dir_modes;
    unsigned n = S_ISREG(stx.stx_mode) ? 3 : S_ISDIR(stx.stx_mode) ? 1 : 0;
    if (n == 0)
        return -EINVAL;
    int fd = -1;
    {
        CREDS_AS_DAEMON(scope, &ret);
        for (unsigned i = 0; ret == 0 && i < n; i++) {
            fd = pt_reopen(fs, handle_fd, modes[i] | O_NONBLOCK);
            if (fd >= 0 || (fd != -EACCES && fd != -EROFS && fd != -EISDIR && fd != -ETXTBSY))
                break;
        }
    }
    if (ret < 0 && fd >= 0)
        close(fd); /* the caller's ids could not be restored: the request stops here */
    return ret < 0 ? ret : fd;
}

/* The owner (nodeid, owner), created with a file from handle_fd if new (mu held). */
static int owner_get(struct pt_fs *fs, uint64_t nodeid, uint64_t owner, int handle_fd,
                     struct lock_owner **out)
{
    struct pt_locks *l = fs->locks;
    struct lock_owner *lo = owner_find(l, nodeid, owner);
    if (lo) {
        *out = lo;
        return 0;
    }
    if (l->nowners >= l->max_owners) {
        if (!l->warned)
            log_warn("locks: %u lock owners hold files; refusing more until some go", l->nowners);
        l->warned = true;
        return -ENOLCK;
    }
    int fd = open_for_locks(fs, handle_fd);
    if (fd < 0)
        return fd;
    lo = calloc(1, sizeof(*lo));
    if (!lo) {
        close(fd);
        return -ENOMEM;
    }
    *lo = (struct lock_owner){
        .next = l->owners, .nodeid = nodeid, .owner = owner, .fd = fd, .refs = 1};
    l->owners = lo;
    l->nowners++;
    atomic_store(&l->used, true);
    *out = lo;
    return 0;
}

/* ---- conversions ------------------------------------------------------------------------- */

/* fuse_file_lock ends are inclusive, OFFSET_MAX meaning "to the end"; flock uses lengths. */
static int to_flock(const struct fuse_file_lock *lk, struct flock *fl)
{
    if (lk->type != F_RDLCK && lk->type != F_WRLCK && lk->type != F_UNLCK)
        return -EINVAL;
    if (lk->start > INT64_MAX || lk->end < lk->start)
        return -EINVAL;
    *fl = (struct flock){
        .l_type = (short)lk->type, .l_whence = SEEK_SET, .l_start = (off_t)lk->start};
    fl->l_len = lk->end >= INT64_MAX ? 0 : (off_t)(lk->end - lk->start + 1);
    return 0;
}

static void from_flock(const struct flock *fl, uint32_t pid, struct fuse_file_lock *lk)
{
    lk->type = (uint32_t)fl->l_type;
    lk->start = (uint64_t)fl->l_start;
    lk->end = fl->l_len == 0 ? (uint64_t)INT64_MAX : (uint64_t)(fl->l_start + fl->l_len - 1);
    lk->pid = fl->l_type == F_UNLCK ? 0 : pid;
}

static int flock_op(uint32_t type)
{
    return type == F_RDLCK ? LOCK_SH : type == F_WRLCK ? LOCK_EX : LOCK_UN;
}

/* ---- waits ------------------------------------------------------------------------------- */

static int wait_once(struct lock_wait *w)
{
    int ret = w->lo ? fcntl(w->lo->fd, F_OFD_SETLKW, &w->fl) : flock(w->flock_fd, w->flock_op);
    return ret < 0 ? -errno : 0;
}

static void wait_finish(struct pt_locks *l, struct lock_wait *w, int ret)
{
    pthread_mutex_lock(&l->mu);
    for (struct lock_wait **p = &l->waits; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    l->nwaits--;
    l->nrestores -= w->restore;
    if (w->lo) {
        if (ret == 0)
            w->lo->pid = w->pid;
        owner_put(w->lo);
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    if (w->flock_fd >= 0)
        close(w->flock_fd);
    free(w);
}

static void gate_on_restores(struct lock_wait *w);

static void *wait_thread(void *arg)
{
    struct lock_wait *w = arg;
    (void)prctl(PR_SET_NAME, "lock-wait"); /* for top -H (best effort) */
    int ret;
    if (!w->restore)
        gate_on_restores(w);
    do
        ret = atomic_load(&w->cancelled) ? -EINTR : wait_once(w);
    while (ret == -EINTR && !atomic_load(&w->cancelled));
    /* The reply goes out before the wait leaves the list: whoever waits for the list to
     * empty (a reset) then knows every reply was handed over. */
    w->async.done(&w->async, ret);
    wait_finish(w->locks, w, ret);
    return NULL;
}

/* Starts the thread for w (mu held); w is linked on success. */
static int wait_start(struct pt_locks *l, struct lock_wait *w)
{
    if (l->nwaits >= MAX_WAITS) {
        log_warn("locks: %u lock requests already waiting; refusing another", l->nwaits);
        return -ENOLCK;
    }
    w->locks = l;
    w->id = ++l->last_wait_id;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, WAIT_STACK);
    /* Linked before the thread runs, so it can always find and unlink itself. */
    w->next = l->waits;
    l->waits = w;
    l->nwaits++;
    l->nrestores += w->restore;
    atomic_store(&l->used, true);
    int ret = pthread_create(&w->thread, &attr, wait_thread, w);
    pthread_attr_destroy(&attr);
    if (ret != 0) {
        l->waits = w->next;
        l->nwaits--;
        l->nrestores -= w->restore;
        log_warn("locks: cannot start a waiting thread: %s", strerror(ret));
        return -ret;
    }
    return 0;
}

struct wait_match {
    bool all;
    bool by_unique;
    uint64_t unique;
    bool by_opaque; /* the waits answering through one transport route (pt_async.opaque) */
    const void *opaque;
    uint64_t only; /* just the wait of this id */
    bool by_owner; /* POSIX waits of (nodeid, owner) */
    bool by_fh;    /* flock waits on fh */
    uint64_t nodeid, owner, fh;
};

static bool wait_matches(const struct lock_wait *w, const struct wait_match *m)
{
    if (m->all)
        return true;
    if (m->only)
        return w->id == m->only;
    if (m->by_unique) /* a restore wait answers no request: INTERRUPT cannot name it */
        return !w->restore && w->async.unique == m->unique;
    if (m->by_opaque)
        return !w->restore && w->async.opaque == m->opaque;
    if (m->by_owner)
        return w->lo && w->lo->nodeid == m->nodeid && w->lo->owner == m->owner;
    return m->by_fh && !w->lo && w->fh == m->fh;
}

/* Lets go of mu until a wait ends, or RESEND_NS at most (mu held). */
static void wait_briefly(struct pt_locks *l)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += RESEND_NS;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&l->cond, &l->mu, &until);
}

/* Ends the matching waits with EINTR and returns once they are gone (mu held). */
static bool cancel_waits(struct pt_locks *l, const struct wait_match *m)
{
    bool found = false;
    for (;;) {
        bool any = false;
        for (struct lock_wait *w = l->waits; w; w = w->next) {
            if (!wait_matches(w, m))
                continue;
            any = found = true;
            atomic_store(&w->cancelled, true);
            pthread_kill(w->thread, WAKE_SIGNAL);
        }
        if (!any)
            return found;
        wait_briefly(l);
    }
}

void pt_locks_reset(struct pt_locks *l)
{
    pthread_mutex_lock(&l->mu);
    cancel_waits(l, &(struct wait_match){.all = true});
    while (l->owners)
        owner_unlink(l, l->owners);
    l->warned = false;
    pthread_mutex_unlock(&l->mu);
}

bool pt_lock_interrupt(struct pt_fs *fs, uint64_t unique)
{
    pthread_mutex_lock(&fs->locks->mu);
    bool found = cancel_waits(fs->locks, &(struct wait_match){.by_unique = true, .unique = unique});
    pthread_mutex_unlock(&fs->locks->mu);
    return found;
}

/*
 * A queue that stops (a VM stop, a migration's switch-over, a snapshot) must not leave a
 * request unanswered: a late reply after the ring's reset would be dropped, and after a
 * migration nobody would answer it at all. Its waits end as an INTERRUPT ends one, with
 * EINTR, which POSIX allows F_SETLKW and flock(2) to return; the guest holds nothing new.
 */
void pt_lock_end_waits(struct pt_fs *fs, const void *opaque)
{
    struct pt_locks *l = fs->locks;

    if (!atomic_load(&l->used))
        return;
    pthread_mutex_lock(&l->mu);
    cancel_waits(l, &(struct wait_match){.by_opaque = true, .opaque = opaque});
    pthread_mutex_unlock(&l->mu);
}

bool pt_lock_owner_known(struct pt_fs *fs, uint64_t nodeid, uint64_t owner)
{
    struct pt_locks *l = fs->locks;
    bool known;

    if (!atomic_load(&l->used))
        return false;
    pthread_mutex_lock(&l->mu);
    known = owner_find(l, nodeid, owner) != NULL;
    pthread_mutex_unlock(&l->mu);
    return known;
}

/* ---- a migration's locks, taken back in the background ------------------------------------
 *
 * After a LOAD the guest believes it holds every lock it held on the source. On a shared file
 * system (the same share seen by both hosts, or the same host) the source daemon still holds
 * them until its front-end disconnects, after the migration completed: the destination's
 * F_OFD_SETLK or flock(LOCK_NB) then fails with EAGAIN. Such a lock is taken by a restore
 * wait, a lock wait like a SETLKW's but answering no request: it blocks in F_OFD_SETLKW or
 * flock(2) and has the lock the moment the source's session ends and the kernel drops the
 * source's locks. Host processes see the source's lock until then, so the lock is never free
 * to them but in the instant between the source's release and the wait's wake-up; one that
 * takes it in that instant holds it too (a conflict that cannot be resolved: the wait goes on
 * until it is free, and says so in the log once when it took long).
 *
 * Meanwhile the guest is answered as if it held the lock: another owner's conflicting SETLK
 * gets EAGAIN and its SETLKW waits until the restore wait is done (so that it cannot take the
 * lock first when the source lets go); a request of the holder itself over a range it is
 * still waiting for supersedes the wait there (the wait ends, and what it does not cover is
 * waited for again). FLUSH, RELEASE, FORGET and a reset end restore waits as any other.
 * GETLK in the window reports the source's lock with pid 0.
 */

#define RESTORE_SLOW_MS 5000 /* a restore wait longer than this is logged */

/* A lock, or a lock request, as the restore rules compare them. */
struct lock_req {
    bool posix;
    uint64_t nodeid;
    uint64_t owner, fh;  /* the holder: POSIX an owner, flock a handle */
    uint64_t start, end; /* POSIX, inclusive */
    bool write;
};

static void range_of(const struct flock *fl, uint64_t *start, uint64_t *end)
{
    *start = (uint64_t)fl->l_start;
    *end = fl->l_len == 0 ? (uint64_t)INT64_MAX : (uint64_t)(fl->l_start + fl->l_len - 1);
}

static void req_of_wait(const struct lock_wait *w, struct lock_req *q)
{
    if (w->lo) {
        *q = (struct lock_req){.posix = true,
                               .nodeid = w->lo->nodeid,
                               .owner = w->lo->owner,
                               .write = w->fl.l_type == F_WRLCK};
        range_of(&w->fl, &q->start, &q->end);
    } else {
        *q = (struct lock_req){.nodeid = w->nodeid, .fh = w->fh, .write = w->flock_op == LOCK_EX};
    }
}

static bool same_holder(const struct lock_req *a, const struct lock_req *b)
{
    return a->posix == b->posix && a->nodeid == b->nodeid &&
           (a->posix ? a->owner == b->owner : a->fh == b->fh);
}

static bool overlaps(const struct lock_req *a, const struct lock_req *b)
{
    return !a->posix || (a->start <= b->end && b->start <= a->end);
}

/* A restore wait of another holder whose lock conflicts with q (mu held), or NULL. */
static struct lock_wait *restore_conflict(struct pt_locks *l, const struct lock_req *q)
{
    if (!l->nrestores)
        return NULL;
    for (struct lock_wait *w = l->waits; w; w = w->next) {
        struct lock_req r;
        if (!w->restore)
            continue;
        req_of_wait(w, &r);
        if (r.posix == q->posix && r.nodeid == q->nodeid && !same_holder(&r, q) &&
            overlaps(&r, q) && (r.write || q->write))
            return w;
    }
    return NULL;
}

/* A SETLKW's wait: first until no restore wait of another holder conflicts with it. */
static void gate_on_restores(struct lock_wait *w)
{
    struct pt_locks *l = w->locks;
    struct lock_req q;
    pthread_mutex_lock(&l->mu);
    req_of_wait(w, &q);
    while (!atomic_load(&w->cancelled) && restore_conflict(l, &q))
        wait_briefly(l);
    pthread_mutex_unlock(&l->mu);
}

/* pt_async.done of a restore wait: nobody to answer; the log says what happened. */
static void restore_done(const struct pt_async *a, int result)
{
    const struct lock_wait *w =
        (const struct lock_wait *)((const char *)a - offsetof(struct lock_wait, async));
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(now.tv_sec - w->since.tv_sec) * 1000 +
                   (now.tv_nsec - w->since.tv_nsec) / 1000000;
    unsigned long long nodeid = w->lo ? w->lo->nodeid : w->nodeid;
    const char *kind = w->lo ? "POSIX lock" : "flock";
    if (result == 0 && ms >= RESTORE_SLOW_MS)
        log_warn("migration: a %s of the guest on inode %llu was held on the host by someone "
                 "else for %lld ms after the migration (while the guest believed it held it); "
                 "taken now",
                 kind, nodeid, ms);
    else if (result == 0)
        log_debug("migration: a %s of the guest on inode %llu taken back after %lld ms", kind,
                  nodeid, ms);
    else if (result != -EINTR)
        log_warn("migration: a %s of the guest on inode %llu cannot be taken back: %s (the guest "
                 "believes it holds it)",
                 kind, nodeid, strerror(-result));
}

static struct lock_wait *restore_wait_new(void)
{
    struct lock_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->restore = true;
    w->flock_fd = -1;
    w->async.done = restore_done;
    atomic_init(&w->cancelled, false);
    clock_gettime(CLOCK_MONOTONIC, &w->since);
    return w;
}

/* A restore wait for [start, end] of owner lo (mu held). */
static int restore_posix(struct pt_locks *l, struct lock_owner *lo, uint64_t start, uint64_t end,
                         short type, uint32_t pid)
{
    struct lock_wait *w = restore_wait_new();
    if (!w)
        return -ENOMEM;
    w->lo = lo;
    w->pid = pid;
    w->fl = (struct flock){.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)start};
    w->fl.l_len = end >= INT64_MAX ? 0 : (off_t)(end - start + 1);
    lo->refs++;
    int ret = wait_start(l, w);
    if (ret < 0) {
        lo->refs--;
        free(w);
    }
    return ret;
}

/* A restore wait for an flock on the open file of handle_fd (mu held). */
static int restore_flock(struct pt_locks *l, int handle_fd, uint64_t fh, uint64_t nodeid, int op)
{
    struct lock_wait *w = restore_wait_new();
    if (!w)
        return -ENOMEM;
    w->flock_fd = fcntl(handle_fd, F_DUPFD_CLOEXEC, 0);
    w->flock_op = op;
    w->fh = fh;
    w->nodeid = nodeid;
    int ret = w->flock_fd < 0 ? -errno : wait_start(l, w);
    if (ret < 0) {
        if (w->flock_fd >= 0)
            close(w->flock_fd);
        free(w);
    }
    return ret;
}

/*
 * A request of q's holder supersedes its restore waits that overlap it: they end, and the
 * parts of their ranges q does not cover are waited for again (mu held; let go while a wait
 * ends, so the scan starts over each time).
 */
static int supersede_restores(struct pt_locks *l, const struct lock_req *q)
{
    while (l->nrestores) {
        struct lock_wait *w;
        struct lock_req r;
        for (w = l->waits; w; w = w->next) {
            if (!w->restore)
                continue;
            req_of_wait(w, &r);
            if (same_holder(&r, q) && overlaps(&r, q))
                break;
        }
        if (!w)
            return 0;
        struct lock_owner *lo = w->lo;
        short type = w->fl.l_type;
        uint32_t pid = w->pid;
        if (lo)
            lo->refs++;
        cancel_waits(l, &(struct wait_match){.only = w->id});
        int ret = 0;
        if (lo && r.start < q->start)
            ret = restore_posix(l, lo, r.start, q->start - 1, type, pid);
        if (lo && ret == 0 && r.end > q->end)
            ret = restore_posix(l, lo, q->end + 1, r.end, type, pid);
        if (lo)
            owner_put(lo);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/*
 * Before a lock request of the guest while restore waits are pending (mu held): its holder's
 * own restore waits it overlaps are superseded; *gated if another holder's restore wait
 * conflicts with it (the request must not be tried on the host: it could take the lock first).
 */
static int check_restores(struct pt_locks *l, const struct lock_req *q, bool unlock, bool *gated)
{
    *gated = false;
    if (!l->nrestores)
        return 0;
    int ret = supersede_restores(l, q);
    if (ret == 0 && !unlock)
        *gated = restore_conflict(l, q) != NULL;
    return ret;
}

/* ---- POSIX record locks -------------------------------------------------------------------- */

/*
 * Which of our owners holds the lock that conflicts with a request: the one that does not
 * see that lock as a conflict from its own file (its own locks never conflict with it).
 */
static uint32_t holder_pid(struct pt_locks *l, const struct lock_owner *self, uint64_t nodeid,
                           const struct flock *asked, const struct flock *found)
{
    for (struct lock_owner *lo = l->owners; lo; lo = lo->next) {
        if (lo == self || lo->nodeid != nodeid)
            continue;
        struct flock t = *asked;
        if (fcntl(lo->fd, F_OFD_GETLK, &t) < 0)
            continue;
        if (t.l_type != found->l_type || t.l_start != found->l_start || t.l_len != found->l_len)
            return lo->pid;
    }
    return 0; /* a host process or another guest: no pid in the guest's namespace */
}

int pt_getlk(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_lk_in *in, struct fuse_lk_out *out)
{
    struct pt_inode *inode;
    struct flock fl;
    /* As SETLK: without FUSE_POSIX_LOCKS the guest kernel tests its own locks, never ours. */
    int ret = fs->cfg.posix_locks ? pt_begin(fs, ctx, nodeid, PT_READS, &inode) : -ENOSYS;
    if (ret == 0)
        ret = to_flock(&in->lk, &fl);
    int handle_fd = ret < 0 ? ret : lock_handle_fd(fs, nodeid, in, false);
    if (handle_fd < 0)
        return handle_fd;
    struct pt_locks *l = fs->locks;
    pthread_mutex_lock(&l->mu);
    /*
     * An owner without a file holds no locks, so every lock conflicts with it: the handle's
     * own open file, which carries none (the owners' files do), tests for it without a reopen.
     */
    struct lock_owner *lo = owner_find(l, nodeid, in->owner);
    struct flock asked = fl;
    ret = fcntl(lo ? lo->fd : handle_fd, F_OFD_GETLK, &fl) < 0 ? -errno : 0;
    uint32_t pid = 0;
    if (ret == 0 && fl.l_type != F_UNLCK)
        pid = holder_pid(l, lo, nodeid, &asked, &fl);
    pthread_mutex_unlock(&l->mu);
    if (ret == 0) {
        memset(out, 0, sizeof(*out));
        from_flock(&fl, pid, &out->lk);
    }
    return ret;
}

static int setlk_posix(struct pt_fs *fs, uint64_t nodeid, const struct fuse_lk_in *in,
                       const struct pt_async *async)
{
    struct flock fl;
    int ret = to_flock(&in->lk, &fl);
    int handle_fd = ret < 0 ? ret : lock_handle_fd(fs, nodeid, in, true);
    if (handle_fd < 0)
        return handle_fd;
    struct pt_locks *l = fs->locks;
    pthread_mutex_lock(&l->mu);
    struct lock_req q = {
        .posix = true, .nodeid = nodeid, .owner = in->owner, .write = fl.l_type == F_WRLCK};
    range_of(&fl, &q.start, &q.end);
    bool gated;
    ret = check_restores(l, &q, fl.l_type == F_UNLCK, &gated);
    if (ret < 0)
        goto out;
    struct lock_owner *lo = owner_find(l, nodeid, in->owner);
    if (!lo && fl.l_type == F_UNLCK)
        goto out; /* nothing held, nothing to drop */
    if (!lo && (ret = owner_get(fs, nodeid, in->owner, handle_fd, &lo)) < 0)
        goto out;
    lo->fh = in->fh;
    if (gated)
        ret = -EAGAIN; /* a lock the guest holds, still being taken back after a migration */
    else
        ret = fcntl(lo->fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
    if (ret == -EACCES)
        ret = -EAGAIN; /* POSIX allows either; the guest's callers expect EAGAIN */
    if (ret == 0 && fl.l_type != F_UNLCK)
        lo->pid = in->lk.pid;
    if (ret != -EAGAIN || !async)
        goto out;
    struct lock_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        ret = -ENOMEM;
        goto out;
    }
    *w = (struct lock_wait){.async = *async, .lo = lo, .fl = fl, .pid = in->lk.pid, .flock_fd = -1};
    atomic_init(&w->cancelled, false);
    lo->refs++;
    ret = wait_start(l, w);
    if (ret < 0) {
        lo->refs--;
        free(w);
    } else {
        ret = PT_PENDING;
    }
out:
    pthread_mutex_unlock(&l->mu);
    return ret;
}

/* FLUSH: a close(2) by the owner drops all its POSIX locks on the file. */
static void flush_owner(struct pt_fs *fs, uint64_t nodeid, uint64_t owner)
{
    struct pt_locks *l = fs->locks;
    pthread_mutex_lock(&l->mu);
    struct lock_owner *lo = owner_find(l, nodeid, owner);
    if (lo) {
        cancel_waits(l, &(struct wait_match){.by_owner = true, .nodeid = nodeid, .owner = owner});
        owner_unlink(l, lo); /* closing its file drops its locks */
    }
    pthread_mutex_unlock(&l->mu);
}

/* ---- flock --------------------------------------------------------------------------------- */

static int setlk_flock(struct pt_fs *fs, uint64_t nodeid, const struct fuse_lk_in *in,
                       const struct pt_async *async)
{
    struct pt_handle *h = htab_get(fs->handles, in->fh, nodeid);
    if (!h)
        return -EBADF;
    int op = flock_op(in->lk.type);
    struct pt_locks *l = fs->locks;
    bool gated = false;
    int ret = 0;
    atomic_store(&l->flocks_used, true);
    if (atomic_load(&l->used)) {
        struct lock_req q = {.nodeid = nodeid, .fh = in->fh, .write = op == LOCK_EX};
        pthread_mutex_lock(&l->mu);
        ret = check_restores(l, &q, op == LOCK_UN, &gated);
        pthread_mutex_unlock(&l->mu);
        if (ret < 0)
            return ret;
    }
    if (gated)
        ret = -EWOULDBLOCK; /* held by the guest, still being taken back after a migration */
    else if (flock(h->fd, op | LOCK_NB) == 0)
        return 0;
    else
        ret = -errno;
    if (ret != -EWOULDBLOCK || !async || op == LOCK_UN)
        return ret;
    struct lock_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    /* The wait keeps its own fd on the open file: the handle's may be closed meanwhile. */
    *w = (struct lock_wait){.async = *async,
                            .flock_fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0),
                            .flock_op = op,
                            .fh = in->fh,
                            .nodeid = nodeid};
    atomic_init(&w->cancelled, false);
    if (w->flock_fd < 0) {
        ret = -errno;
        free(w);
        return ret;
    }
    pthread_mutex_lock(&l->mu);
    ret = wait_start(l, w);
    pthread_mutex_unlock(&l->mu);
    if (ret < 0) {
        close(w->flock_fd);
        free(w);
        return ret;
    }
    return PT_PENDING;
}

int pt_setlk(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
             const struct fuse_lk_in *in, const struct pt_async *async)
{
    struct pt_inode *inode;
    int ret = pt_begin(fs, ctx, nodeid, PT_READS, &inode);
    if (ret < 0)
        return ret;
    if (in->lk_flags & FUSE_LK_FLOCK)
        return fs->cfg.flock_locks ? setlk_flock(fs, nodeid, in, async) : -ENOSYS;
    return fs->cfg.posix_locks ? setlk_posix(fs, nodeid, in, async) : -ENOSYS;
}

/* ---- closing ----------------------------------------------------------------------------- */

static void locks_flushed(struct pt_fs *fs, uint64_t nodeid, uint64_t owner)
{
    if (atomic_load(&fs->locks->used))
        flush_owner(fs, nodeid, owner);
}

/*
 * Drops owners (mu held), their waits ended first: by_fh, those whose last SETLK came
 * through fh; otherwise every owner on nodeid.
 */
static void drop_owners(struct pt_locks *l, bool by_fh, uint64_t fh, uint64_t nodeid)
{
    struct lock_owner **p = &l->owners;
    while (*p) {
        struct lock_owner *lo = *p;
        if (by_fh ? lo->fh != fh : lo->nodeid != nodeid) {
            p = &lo->next;
            continue;
        }
        cancel_waits(
            l, &(struct wait_match){.by_owner = true, .nodeid = lo->nodeid, .owner = lo->owner});
        *p = lo->next;
        l->nowners--;
        owner_put(lo);
    }
}

/*
 * RELEASE of fh: its flock waits end, and so do the owners whose last lock request came
 * through fh. Such an owner had fh among its open files then; the file is released only once
 * every fd on it is closed, and the owner's close sent FLUSH, which dropped its locks. What
 * is left is an owner whose FLUSH never came: a guest OFD lock (owned by the open file, never
 * flushed) or a hostile guest's.
 */
static void locks_released(struct pt_fs *fs, uint64_t fh)
{
    struct pt_locks *l = fs->locks;
    if (!atomic_load(&l->used))
        return;
    pthread_mutex_lock(&l->mu);
    cancel_waits(l, &(struct wait_match){.by_fh = true, .fh = fh});
    drop_owners(l, true, fh, 0);
    pthread_mutex_unlock(&l->mu);
}

/*
 * After a FORGET: once the inode is gone the guest has no file open on it, so no owner holds
 * locks there. (Nodeids are never reused, but the owners' files would stay open until a reset.)
 */
static void locks_forgotten(struct pt_fs *fs, uint64_t nodeid)
{
    struct pt_locks *l = fs->locks;
    if (!atomic_load(&l->used) || itab_get(fs->inodes, nodeid))
        return;
    pthread_mutex_lock(&l->mu);
    drop_owners(l, false, 0, nodeid);
    pthread_mutex_unlock(&l->mu);
}

const struct pt_close_hooks pt_lock_hooks = {
    .flushed = locks_flushed,
    .released = locks_released,
    .forgotten = locks_forgotten,
};

/* ---- migration: saving and installing the locks (pt_state.h) ------------------------------ */

/* One "lock:" line of /proc/self/fdinfo: the kernel's view of a lock of one open file. */
struct fdinfo_lock {
    bool flock; /* FLOCK, else OFDLCK */
    bool write;
    uint64_t start, end; /* inclusive; INT64_MAX: to the end of the file */
};

/*
 * Parses what follows "lock:\t", as fs/locks.c prints it:
 *   "<n>: OFDLCK ADVISORY  WRITE -1 fe:00:1234 10 14" or "... FLOCK  ADVISORY  READ <pid>
 *   <dev:ino> 0 EOF". Strictly: anything else (another kind, a lease, a blocked request, a
 *   format this code does not know) is -EPROTO, and the SAVE fails rather than drop a lock.
 */
static int parse_lock_line(const char *line, struct fdinfo_lock *out)
{
    unsigned long long id, start, end;
    long long pid;
    char kind[16], adv[16], type[16], dev[64], endtok[24], *stop;
    int used = -1;
    if (sscanf(line, "%llu: %15s %15s %15s %lld %63s %llu %23s%n", &id, kind, adv, type, &pid, dev,
               &start, endtok, &used) != 8 ||
        used < 0 || line[used] != '\0' || strcmp(adv, "ADVISORY") != 0)
        return -EPROTO;
    if (strcmp(kind, "FLOCK") == 0)
        out->flock = true;
    else if (strcmp(kind, "OFDLCK") == 0)
        out->flock = false;
    else
        return -EPROTO;
    if (strcmp(type, "WRITE") == 0)
        out->write = true;
    else if (strcmp(type, "READ") == 0)
        out->write = false;
    else
        return -EPROTO;
    if (strcmp(endtok, "EOF") == 0) {
        end = INT64_MAX;
    } else {
        errno = 0;
        end = strtoull(endtok, &stop, 10);
        if (errno || *stop || endtok[0] < '0' || endtok[0] > '9')
            return -EPROTO;
    }
    if (start > end || end > INT64_MAX || (out->flock && (start != 0 || end != INT64_MAX)))
        return -EPROTO;
    out->start = start;
    out->end = end;
    return 0;
}

/* Calls fn with each "lock:" line of fd's /proc/self/fdinfo entry (reached through the kept
 * /proc/self/fd, so in every sandbox). 0, fn's first error, or -errno. */
static int for_each_fdinfo_lock(struct pt_fs *fs, int fd,
                                int (*fn)(const struct fdinfo_lock *lk, void *arg), void *arg)
{
    char name[40], buf[4096];
    snprintf(name, sizeof(name), "../fdinfo/%d", fd);
    int in = openat(fs->proc_self_fd, name, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    size_t have = 0;
    int ret = 0;
    for (;;) {
        ssize_t n = read(in, buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (ret == 0 && (nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
            struct fdinfo_lock lk;
            *nl = '\0';
            if (strncmp(line, "lock:\t", 6) == 0) {
                ret = parse_lock_line(line + 6, &lk);
                if (ret == 0)
                    ret = fn(&lk, arg);
            }
            line = nl + 1;
        }
        size_t rest = have - (size_t)(line - buf);
        if (ret == 0 && (n == 0 ? rest != 0 : rest == sizeof(buf) - 1))
            ret = -EPROTO; /* a last line without its newline, or one too long for a lock */
        if (ret < 0 || n == 0)
            break;
        memmove(buf, line, rest);
        have = rest;
    }
    close(in);
    return ret;
}

struct collect_ctx {
    struct pt_fs *fs;
    struct pt_state *st;
    int found; /* flock: lines seen on the handle */
    bool write;
};

static int owner_range(const struct fdinfo_lock *lk, void *arg)
{
    struct collect_ctx *c = arg;
    if (lk->flock)
        return -EPROTO; /* an owner's file carries OFD locks only */
    if (c->st->n_ranges >= PT_STATE_MAX_RANGES)
        return -E2BIG;
    struct pt_state_range r = {.start = lk->start, .end = lk->end, .write = lk->write};
    return pt_state_add_range(c->st, &r);
}

/* One owner with what it holds, and what restore waits of it are still taking (mu held). */
static int collect_owner(struct pt_fs *fs, struct pt_state *st, struct lock_owner *lo)
{
    struct pt_state_owner o = {
        .nodeid = lo->nodeid, .owner = lo->owner, .fh = lo->fh, .pid = lo->pid};
    struct collect_ctx c = {.fs = fs, .st = st};
    size_t at = st->n_owners;
    int ret = pt_state_add_owner(st, &o);
    if (ret == 0)
        ret = for_each_fdinfo_lock(fs, lo->fd, owner_range, &c);
    for (struct lock_wait *w = fs->locks->waits; ret == 0 && w; w = w->next) {
        if (!w->restore || w->lo != lo)
            continue;
        struct pt_state_range r = {.write = w->fl.l_type == F_WRLCK};
        range_of(&w->fl, &r.start, &r.end);
        ret = st->n_ranges >= PT_STATE_MAX_RANGES ? -E2BIG : pt_state_add_range(st, &r);
    }
    if (ret < 0) {
        snprintf(st->why, sizeof(st->why), "the locks of lock owner %llu on inode %llu: %s",
                 (unsigned long long)lo->owner, (unsigned long long)lo->nodeid,
                 ret == -EPROTO ? "unexpected /proc/self/fdinfo contents" : strerror(-ret));
        return ret;
    }
    if (st->owners[at].n == 0)
        st->n_owners = at; /* holds nothing: nothing to take back */
    return 0;
}

static int flock_line(const struct fdinfo_lock *lk, void *arg)
{
    struct collect_ctx *c = arg;
    if (!lk->flock || c->found++)
        return -EPROTO; /* a handle's open file carries one flock at most, and nothing else */
    c->write = lk->write;
    return 0;
}

/* htab_for_each: the flock of one handle of an inode the state holds (mu held). */
static int collect_flock(struct pt_handle *h, void *arg)
{
    struct collect_ctx *c = arg;
    int ret = 0;
    if (!itab_get(c->fs->inodes, h->nodeid))
        return 0; /* an inode the guest forgot: its handle is not saved either */
    c->found = 0;
    for (struct lock_wait *w = c->fs->locks->waits; w; w = w->next) {
        if (w->restore && !w->lo && w->fh == h->fh) {
            c->found = 1;
            c->write = w->flock_op == LOCK_EX;
        }
    }
    if (!c->found)
        ret = for_each_fdinfo_lock(c->fs, h->fd, flock_line, c);
    if (ret == 0 && c->found) {
        struct pt_state_flock f = {.fh = h->fh, .nodeid = h->nodeid, .write = c->write};
        ret = pt_state_add_flock(c->st, &f);
    }
    if (ret < 0)
        snprintf(c->st->why, sizeof(c->st->why), "the flock of handle %llu: %s",
                 (unsigned long long)h->fh,
                 ret == -EPROTO ? "unexpected /proc/self/fdinfo contents" : strerror(-ret));
    return ret;
}

int pt_locks_collect(struct pt_fs *fs, struct pt_state *st)
{
    struct pt_locks *l = fs->locks;
    struct collect_ctx c = {.fs = fs, .st = st};
    size_t skipped = 0;
    int ret = 0;
    if (!atomic_load(&l->used))
        return 0;
    pthread_mutex_lock(&l->mu);
    rcu_read_lock();
    for (struct lock_owner *lo = l->owners; ret == 0 && lo; lo = lo->next) {
        /* RELEASE of its handle and FORGET of its inode drop an owner: none is left over. */
        if (!htab_get(fs->handles, lo->fh, lo->nodeid) || !itab_get(fs->inodes, lo->nodeid))
            skipped++;
        else
            ret = collect_owner(fs, st, lo);
    }
    rcu_read_unlock();
    if (ret == 0 && atomic_load(&l->flocks_used))
        ret = htab_for_each(fs->handles, collect_flock, &c);
    pthread_mutex_unlock(&l->mu);
    if (skipped)
        log_warn("migration: %zu lock owner(s) without their handle are not saved", skipped);
    return ret;
}

/* Takes one saved range of owner lo now, or by a restore wait (mu held). *waiting counts. */
static int install_range(struct pt_locks *l, struct lock_owner *lo, const struct pt_state_range *r,
                         uint32_t pid, size_t *waiting)
{
    short type = r->write ? F_WRLCK : F_RDLCK;
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)r->start};
    fl.l_len = r->end >= INT64_MAX ? 0 : (off_t)(r->end - r->start + 1);
    if (fcntl(lo->fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    if (errno != EAGAIN && errno != EACCES)
        return -errno;
    (*waiting)++;
    return restore_posix(l, lo, r->start, r->end, type, pid);
}

static int install_owner(struct pt_fs *fs, struct pt_state *st, const struct pt_state_owner *o,
                         size_t *waiting, size_t *dropped)
{
    struct pt_handle *h = htab_get(fs->handles, o->fh, o->nodeid);
    struct lock_owner *lo;
    int ret;
    if (!h) {
        (*dropped)++; /* its handle was dropped (a lost inode's, --migration-on-error) */
        return 0;
    }
    if (!o->n)
        return 0;
    ret = owner_get(fs, o->nodeid, o->owner, h->fd, &lo);
    if (ret == 0) {
        lo->fh = o->fh;
        lo->pid = o->pid;
    }
    for (size_t i = o->first; ret == 0 && i < o->first + o->n; i++)
        ret = install_range(fs->locks, lo, &st->ranges[i], o->pid, waiting);
    if (ret < 0)
        snprintf(st->why, sizeof(st->why), "the locks of lock owner %llu on inode %llu: %s",
                 (unsigned long long)o->owner, (unsigned long long)o->nodeid, strerror(-ret));
    return ret;
}

static int install_flock(struct pt_fs *fs, struct pt_state *st, const struct pt_state_flock *f,
                         size_t *waiting, size_t *dropped)
{
    struct pt_handle *h = htab_get(fs->handles, f->fh, f->nodeid);
    int op = f->write ? LOCK_EX : LOCK_SH, ret = 0;
    if (!h) {
        (*dropped)++;
        return 0;
    }
    if (flock(h->fd, op | LOCK_NB) < 0) {
        ret = -errno;
        if (ret == -EWOULDBLOCK) {
            (*waiting)++;
            ret = restore_flock(fs->locks, h->fd, f->fh, f->nodeid, op);
        }
    }
    if (ret < 0)
        snprintf(st->why, sizeof(st->why), "the flock of handle %llu: %s",
                 (unsigned long long)f->fh, strerror(-ret));
    return ret;
}

int pt_locks_install(struct pt_fs *fs, struct pt_state *st)
{
    struct pt_locks *l = fs->locks;
    size_t waiting = 0, dropped = 0;
    int ret = 0;
    if (!st->n_owners && !st->n_flocks)
        return 0;
    if ((st->n_owners && !fs->cfg.posix_locks) || (st->n_flocks && !fs->cfg.flock_locks)) {
        snprintf(st->why, sizeof(st->why),
                 "the guest holds %s locks, which this daemon does not serve (-o %s)",
                 st->n_owners && !fs->cfg.posix_locks ? "POSIX" : "flock",
                 st->n_owners && !fs->cfg.posix_locks ? "posix_lock" : "flock");
        return -EPROTO;
    }
    if (st->n_flocks)
        atomic_store(&l->flocks_used, true);
    pthread_mutex_lock(&l->mu);
    rcu_read_lock();
    for (size_t i = 0; ret == 0 && i < st->n_owners; i++)
        ret = install_owner(fs, st, &st->owners[i], &waiting, &dropped);
    for (size_t i = 0; ret == 0 && i < st->n_flocks; i++)
        ret = install_flock(fs, st, &st->flocks[i], &waiting, &dropped);
    rcu_read_unlock();
    pthread_mutex_unlock(&l->mu);
    if (ret == 0 && waiting)
        log_info("migration: %zu lock(s) of the guest are still held on the host (by the source "
                 "daemon until its session ends, or by another process): taken as soon as they "
                 "are free",
                 waiting);
    if (ret == 0 && dropped)
        log_warn("migration: the locks of %zu owner(s) or handle(s) whose handle was dropped are "
                 "lost",
                 dropped);
    return ret;
}
