/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bench's scale mode (--scale 10000,100000 --scale-shape flat,deep): what a guest walking
 * a huge tree costs each daemon in time, fds and memory.
 *
 * For each size N and shape a share is built once, in TMPDIR (make bench: a tmpfs), and every
 * daemon serves it in turn: flat is N files in one directory; deep is a tree of N entries,
 * each directory holding DEEP_DIRS subdirectories and files up to DEEP_ENTRIES entries. On
 * one connection, as a guest's `find -ls` and then `stat` of every name, then memory
 * pressure, would:
 *
 *   readdirplus  OPENDIR, READDIRPLUS (RDP_ROOM bytes a reply, one request at a time, as the
 *                kernel fills a getdents buffer) and RELEASEDIR of every directory, keeping
 *                every entry and its lookup reference, as the kernel does;
 *   lookup       a LOOKUP of every name (one more reference each);
 *   forget       BATCH_FORGETs (on the hiprio queue) of every reference held.
 *
 * Per phase: entries/s (and its ratio to the first daemon's), elapsed time, the serving
 * process's peak fd count (sampled every SAMPLE_MS during the phase, and at its end), its RSS
 * and the sandbox monitor's (VmRSS), bytes per known inode (RSS growth since INIT over the
 * inodes the guest holds), and the entries that came back without a nodeid or with an error:
 * what running out of fds looks like from the guest. The forget row's RSS is the one after
 * all FORGETs (and a settling pause). The daemons inherit the bench's open-file limit, raised
 * to its hard limit and printed: a daemon cannot go beyond the hard limit unless privileged.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "bench.h"
#include "daemon.h"
#include "frontend.h"

#define RDP_ROOM     32768 /* glibc's readdir buffer, which the kernel's READDIRPLUS fills */
#define DEEP_DIRS    10
#define DEEP_ENTRIES 100
#define FORGET_BATCH 256
#define SAMPLE_MS    100
#define SETTLE_MS    500
#define RUST_PEER    "/opt/virtiofsd-peers/bin/rust-virtiofsd"

enum phase { P_READDIRPLUS, P_LOOKUP, P_FORGET, P_COUNT };
static const char *const phase_names[P_COUNT] = {"readdirplus", "lookup", "forget"};

struct phase_result {
    double secs;
    uint64_t entries, inodes, lost, errors;
    int peak_fds, fds;     /* the most seen, and at the end */
    long rss_kib, mon_kib; /* at the end of the phase (forget: after settling) */
};

struct scale_result {
    bool ok;
    long idle_kib, idle_mon_kib;
    int idle_fds;
    struct phase_result p[P_COUNT];
};

/* ---- the share ---- */

static int make_files(int dir, unsigned first, unsigned count)
{
    for (unsigned i = first; i < first + count; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%07u", i);
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        close(fd);
    }
    return 0;
}

/* The tree breadth first: each directory gets DEEP_DIRS subdirectories, then files up to
 * DEEP_ENTRIES entries, until n entries are made. */
static int make_deep(const char *share, unsigned n)
{
    GQueue todo = G_QUEUE_INIT;
    g_queue_push_tail(&todo, g_strdup(share));
    unsigned made = 0;
    int ret = 0;
    for (char *path; ret == 0 && made < n && (path = g_queue_pop_head(&todo)); g_free(path)) {
        int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0) {
            ret = -errno;
            continue;
        }
        for (unsigned i = 0; i < DEEP_DIRS && made < n && ret == 0; i++, made++) {
            char name[16];
            snprintf(name, sizeof(name), "d%07u", made);
            ret = mkdirat(dir, name, 0755) < 0 ? -errno : 0;
            g_queue_push_tail(&todo, g_build_filename(path, name, NULL));
        }
        unsigned files = MIN(DEEP_ENTRIES - DEEP_DIRS, n - made);
        if (ret == 0)
            ret = make_files(dir, made, files);
        made += files;
        close(dir);
    }
    g_queue_clear_full(&todo, g_free);
    return ret;
}

static int make_share(const char *share, const char *shape, unsigned n)
{
    if (mkdir(share, 0755) < 0)
        return -errno;
    if (strcmp(shape, "deep") == 0)
        return make_deep(share, n);
    int dir = open(share, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -errno;
    int ret = make_files(dir, 0, n);
    close(dir);
    return ret;
}

/* ---- the guest's side ---- */

/* An entry the guest holds: where it was listed, the nodeids READDIRPLUS and LOOKUP gave. */
struct entry {
    uint64_t parent, node, lnode;
    uint32_t name; /* offset in the names arena */
};

struct walk {
    struct fe *fe;
    GArray *entries;
    GString *names;
    struct phase_result *r;
};

/* Keeps the entries of one READDIRPLUS reply; returns the last offset, 0 at the end. */
static uint64_t keep_entries(struct walk *w, uint64_t dir, const uint8_t *p, size_t len,
                             GArray *dirs)
{
    uint64_t off = 0;
    for (size_t pos = 0; pos + FUSE_NAME_OFFSET_DIRENTPLUS <= len;) {
        const struct fuse_direntplus *d = (const void *)(p + pos);
        size_t size = FUSE_DIRENTPLUS_SIZE(d);
        if (d->dirent.namelen > 255 || pos + size > len)
            break;
        pos += size;
        off = d->dirent.off;
        const char *name = d->dirent.name;
        unsigned nl = d->dirent.namelen;
        if ((nl == 1 && name[0] == '.') || (nl == 2 && name[0] == '.' && name[1] == '.'))
            continue; /* no reference, as for the kernel */
        struct entry e = {.parent = dir, .node = d->entry_out.nodeid, .name = w->names->len};
        g_string_append_len(w->names, name, nl);
        g_string_append_c(w->names, '\0');
        g_array_append_val(w->entries, e);
        w->r->entries++;
        if (!e.node)
            w->r->lost++;
        else if (S_ISDIR(d->entry_out.attr.mode))
            g_array_append_val(dirs, e.node);
        w->r->inodes += e.node != 0;
    }
    return off;
}

static void list_dir(struct walk *w, uint64_t dir, GArray *dirs)
{
    struct fe_reply r;
    struct fuse_open_in oi = {.flags = O_RDONLY | O_DIRECTORY};
    if (fuse_simple(w->fe, FUSE_OPENDIR, dir, &oi, sizeof(oi), NULL, sizeof(struct fuse_open_out),
                    &r) != 0) {
        w->r->errors++;
        return;
    }
    uint64_t fh = ((const struct fuse_open_out *)r.data)->fh;
    for (uint64_t off = 0;;) {
        struct fuse_read_in ri = {.fh = fh, .offset = off, .size = RDP_ROOM};
        if (fuse_simple(w->fe, FUSE_READDIRPLUS, dir, &ri, sizeof(ri), NULL, RDP_ROOM, &r) != 0) {
            w->r->errors++;
            break;
        }
        if (r.data_len == 0 || (off = keep_entries(w, dir, r.data, r.data_len, dirs)) == 0)
            break;
    }
    struct fuse_release_in rel = {.fh = fh};
    if (fuse_simple(w->fe, FUSE_RELEASEDIR, dir, &rel, sizeof(rel), NULL, 0, &r) != 0)
        w->r->errors++;
}

static void phase_readdirplus(struct walk *w)
{
    GArray *dirs = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    uint64_t root = FUSE_ROOT_ID;
    g_array_append_val(dirs, root);
    for (guint i = 0; i < dirs->len; i++)
        list_dir(w, g_array_index(dirs, uint64_t, i), dirs);
    g_array_free(dirs, TRUE);
}

static void phase_lookup(struct walk *w)
{
    for (guint i = 0; i < w->entries->len; i++) {
        struct entry *e = &g_array_index(w->entries, struct entry, i);
        struct fuse_entry_out out;
        int ret = fe_lookup(w->fe, e->parent, w->names->str + e->name, &out);
        w->r->entries++;
        e->lnode = ret == 0 ? out.nodeid : 0;
        w->r->errors += ret != 0;
        w->r->lost += ret == 0 && !out.nodeid;
        w->r->inodes += e->lnode != 0;
    }
}

static void flush_forgets(struct walk *w, struct fuse_forget_one *one, unsigned *n)
{
    struct fuse_batch_forget_in h = {.count = *n};
    struct iovec iov[2] = {{&h, sizeof(h)}, {one, *n * sizeof(*one)}};
    struct fe_reply r;
    if (*n && fe_fuse(w->fe, 0, FUSE_BATCH_FORGET, 0, iov, 2, 0, &r) < 0)
        w->r->errors += *n;
    *n = 0;
}

/* Every reference the guest holds, in batches: one record for an entry both gave the same
 * nodeid (nlookup 2), else one per nodeid. */
static void phase_forget(struct walk *w)
{
    static struct fuse_forget_one one[FORGET_BATCH];
    unsigned n = 0;
    for (guint i = 0; i < w->entries->len; i++) {
        const struct entry *e = &g_array_index(w->entries, struct entry, i);
        uint64_t ids[2] = {e->node, e->lnode == e->node ? 0 : e->lnode};
        for (int k = 0; k < 2; k++) {
            if (!ids[k])
                continue;
            if (n == FORGET_BATCH)
                flush_forgets(w, one, &n);
            one[n++] = (struct fuse_forget_one){ids[k], k == 0 && e->lnode == e->node ? 2 : 1};
        }
        w->r->entries++;
    }
    flush_forgets(w, one, &n);
}

/* ---- measuring the serving process ---- */

struct sampler {
    pid_t serving, monitor;
    int peak_fds;
    bool stop;
    pthread_t th;
};

static void sample(struct sampler *s)
{
    int n = test_pid_fd_count(s->serving);
    if (n > s->peak_fds)
        s->peak_fds = n;
}

static void *sampler_main(void *arg)
{
    struct sampler *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        sample(s);
        usleep(SAMPLE_MS * 1000);
    }
    return NULL;
}

static void run_phase(struct walk *w, struct sampler *s, enum phase p, struct phase_result *r)
{
    static void (*const run[P_COUNT])(struct walk *) = {phase_readdirplus, phase_lookup,
                                                        phase_forget};
    *s = (struct sampler){.serving = s->serving, .monitor = s->monitor};
    w->r = r;
    pthread_create(&s->th, NULL, sampler_main, s);
    double t0 = now_s();
    run[p](w);
    r->secs = now_s() - t0;
    __atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
    pthread_join(s->th, NULL);
    if (p == P_FORGET)
        usleep(SETTLE_MS * 1000); /* memory freed after a grace period or by another thread */
    r->fds = test_pid_fd_count(s->serving);
    r->peak_fds = MAX(s->peak_fds, r->fds);
    r->rss_kib = test_pid_status_kib(s->serving, "VmRSS");
    r->mon_kib = s->monitor ? test_pid_status_kib(s->monitor, "VmRSS") : 0;
}

static struct scale_result run_daemon(const char *cmd, const char *share)
{
    struct scale_result res = {0};
    struct daemon_proc d = {0};
    struct fe *fe = NULL;
    struct fe_config cfg = {.socket_path = NULL};
    if (start_daemon(cmd, &d, share) < 0) {
        fprintf(stderr, "bench: cannot start '%s'\n", cmd);
        goto out;
    }
    cfg.socket_path = d.sock;
    int ret = fe_open_retry(&cfg, &fe, 4000);
    if (ret == 0)
        ret = fe_fuse_init(fe);
    if (ret != 0) {
        fprintf(stderr, "bench: cannot set up '%s': %s\n", cmd, strerror(-ret));
        goto out;
    }
    /* The sandbox's serving process exists once the daemon serves a connection. */
    struct sampler s = {.serving = test_serving_pid(d.pid)};
    s.monitor = s.serving != d.pid ? d.pid : 0;
    res.idle_kib = test_pid_status_kib(s.serving, "VmRSS");
    res.idle_mon_kib = s.monitor ? test_pid_status_kib(s.monitor, "VmRSS") : 0;
    res.idle_fds = test_pid_fd_count(s.serving);
    struct walk w = {.fe = fe,
                     .entries = g_array_new(FALSE, FALSE, sizeof(struct entry)),
                     .names = g_string_new(NULL)};
    for (int p = 0; p < P_COUNT; p++)
        run_phase(&w, &s, (enum phase)p, &res.p[p]);
    res.ok = true;
    g_array_free(w.entries, TRUE);
    g_string_free(w.names, TRUE);
out:
    if (fe)
        fe_close(fe);
    if (d.dir)
        stop_daemon(&d);
    return res;
}

/* ---- the table ---- */

static void print_row(const char *phase, const char *label, const struct scale_result *r,
                      const struct scale_result *first, int p)
{
    printf("%-12s %-6s", phase, label);
    if (!r->ok) {
        printf(" %10s\n", "failed");
        return;
    }
    if (p < 0) {
        printf(" %9s %10s %6s %8s %8d %6d %9ld %9ld %8s\n", "-", "-", "-", "-", r->idle_fds,
               r->idle_fds, r->idle_kib, r->idle_mon_kib, "-");
        return;
    }
    const struct phase_result *x = &r->p[p], *f = &first->p[p];
    double rate = x->secs > 0 ? (double)x->entries / x->secs : 0;
    double frate = f->secs > 0 ? (double)f->entries / f->secs : 0;
    printf(" %9llu %10.0f %6.2f %8.3f %8d %6d %9ld %9ld", (unsigned long long)x->entries, rate,
           first->ok && frate > 0 ? rate / frate : 0.0, x->secs, x->peak_fds, x->fds, x->rss_kib,
           x->mon_kib);
    /* Growth per inode the guest holds; after the FORGETs it holds none. */
    if (p != P_FORGET && x->inodes)
        printf(" %8.0f", (double)(x->rss_kib - r->idle_kib) * 1024 / (double)x->inodes);
    else
        printf(" %8s", "-");
    printf(" %9llu %7llu\n", (unsigned long long)x->lost, (unsigned long long)x->errors);
}

static void print_table(GPtrArray *labels, const struct scale_result *res, unsigned runs)
{
    printf("%-12s %-6s %9s %10s %6s %8s %8s %6s %9s %9s %8s %9s %7s\n", "phase", "d", "entries",
           "entries/s", "ratio", "secs", "peak-fds", "fds", "RSS-kB", "mon-kB", "B/inode",
           "no-nodeid", "errors");
    for (int p = -1; p < P_COUNT; p++)
        for (unsigned i = 0; i < labels->len; i++)
            print_row(p < 0 ? "idle" : phase_names[p], labels->pdata[i], &res[i], &res[i % runs],
                      p);
}

/* ---- the daemons and the shares ---- */

/* The daemons to compare when none is given: ours by default and with file handles, and the
 * Rust virtiofsd both ways when it is installed. */
static GPtrArray *default_daemons(void)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
    const char *ours = BENCH_DEFAULT_DAEMON " --log-level=error";
    g_ptr_array_add(a, g_strdup(ours));
    g_ptr_array_add(a, g_strdup_printf("%s --inode-file-handles=prefer", ours));
    if (access(RUST_PEER, X_OK) == 0) {
        g_ptr_array_add(a, g_strdup(RUST_PEER " --log-level=error"));
        g_ptr_array_add(a, g_strdup(RUST_PEER " --log-level=error --inode-file-handles=prefer"));
    } else {
        printf("SKIP the Rust virtiofsd (%s): not installed\n", RUST_PEER);
    }
    return a;
}

static void print_limits(const char *tmp)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    /* The daemons inherit it; an unprivileged one cannot raise it past the hard limit. */
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    struct statfs sf;
    bool tmpfs = statfs(tmp, &sf) == 0 && sf.f_type == 0x01021994; /* TMPFS_MAGIC */
    printf("scale: RLIMIT_NOFILE %llu (hard %llu), inherited by the daemons; shares in %s (%s); "
           "RSS and fds of the serving process, mon-kB of the sandbox monitor (0: none)\n",
           (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, tmp,
           tmpfs ? "tmpfs" : "not tmpfs");
}

void run_scale(GPtrArray *given, const char *sizes, const char *shapes, unsigned runs)
{
    GPtrArray *daemons = given->len ? g_ptr_array_ref(given) : default_daemons();
    GPtrArray *ns = split_list(sizes), *shs = split_list(shapes);
    GPtrArray *labels = g_ptr_array_new_with_free_func(g_free);
    runs = runs ? runs : 1;
    for (unsigned di = 0; di < daemons->len; di++)
        for (unsigned r = 0; r < runs; r++)
            g_ptr_array_add(labels, runs > 1 ? g_strdup_printf("d%u#%u", di, r + 1)
                                             : g_strdup_printf("d%u", di));
    print_limits(g_get_tmp_dir());
    struct scale_result *res = calloc(labels->len, sizeof(*res));
    for (unsigned si = 0; si < shs->len; si++)
        for (unsigned ni = 0; ni < ns->len; ni++) {
            const char *shape = shs->pdata[si];
            unsigned n = (unsigned)strtoul(ns->pdata[ni], NULL, 10);
            char *dir = g_dir_make_tmp("vfs-bench-scale-XXXXXX", NULL);
            char *share = g_build_filename(dir, "share", NULL);
            double t0 = now_s();
            int ret = make_share(share, shape, n);
            printf("\nscale %s %u: share built in %.2f s%s%s\n", shape, n, now_s() - t0,
                   ret ? ": " : "", ret ? strerror(-ret) : "");
            fflush(stdout);
            for (unsigned i = 0; ret == 0 && i < labels->len; i++)
                res[i] = run_daemon(daemons->pdata[i / runs], share);
            if (ret == 0)
                print_table(labels, res, runs);
            fflush(stdout);
            char *rm = g_strdup_printf("rm -rf '%s'", dir);
            if (system(rm) != 0)
                fprintf(stderr, "bench: cannot remove %s\n", dir);
            g_free(rm);
            g_free(share);
            g_free(dir);
        }
    for (unsigned di = 0; di < daemons->len; di++)
        printf("d%u: %s\n", di, (char *)daemons->pdata[di]);
    free(res);
    g_ptr_array_unref(labels);
    g_ptr_array_unref(ns);
    g_ptr_array_unref(shs);
    g_ptr_array_unref(daemons);
}
