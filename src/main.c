/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Start-up order, then the serving loop: one front-end connection at a time, and when it
 * ends the device is reset and the next connection accepted — the daemon outlives guest
 * reboots and VMM restarts — or, with --on-disconnect=exit (the default with --fd), the
 * daemon exits, as the manager that handed it the socket expects.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "listener.h"
#include "fh_policy.h"
#include "guest_mem.h"
#include "handover.h"
#include "idle_mem.h"
#include "log.h"
#include "options.h"
#include "passthrough.h"
#include "sandbox.h"
#include "seccomp_filter.h"
#include "session_state.h"
#include "caps.h"
#include "vhost_user.h"

/* Exit statuses: a supervisor can tell a clean stop from a failure. EXIT_HANDED_OVER is the
 * serving process's to its namespace-sandbox monitor only: a new process owns the socket and
 * its lock file now, so the monitor leaves them alone (and exits with EXIT_OK). */
enum { EXIT_OK = 0, EXIT_FATAL = 1, EXIT_USAGE = 2, EXIT_HANDED_OVER = 3 };

struct daemon {
    struct options opts;
    int listen_fd;
    int lock_fd;
    int signal_fd;
    struct pt_fs *fs;
    struct fuse_session *fuse;
    struct vu_dev *dev;
    struct sandbox sb;
    /* Planned upgrades (handover.h). ctl: the control socket of a handover, to the old
     * process (--upgrade) or from the new one (pending until it asks to start); -1: none.
     * adopted_conn: the front-end connection taken over, served first. handed_over: this
     * process let go of everything; it exits without touching what the new one owns. */
    int ctl;
    int adopted_conn;
    bool handed_over;
    pid_t outer_pid; /* our pid before the sandbox: the one the lock file names */
};

static int raise_nofile_limit(uint64_t wanted)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if (wanted == 0) {
        /* Default: as high as the kernel allows; each cached inode holds an fd. */
        FILE *f = fopen("/proc/sys/fs/nr_open", "re");
        unsigned long long nr_open = 0;
        if (f) {
            if (fscanf(f, "%llu", &nr_open) != 1)
                nr_open = 0;
            fclose(f);
        }
        wanted = nr_open ? nr_open : rl.rlim_max;
    }
    struct rlimit want = {.rlim_cur = wanted,
                          .rlim_max = wanted > rl.rlim_max ? wanted : rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0)
        return 0;
    /* Raising the hard limit may be refused (e.g. in a container): use the hard limit. */
    int err = errno;
    if (wanted > rl.rlim_max) {
        log_info("cannot raise the open-file limit to %llu (%s); using the hard limit %llu",
                 (unsigned long long)wanted, strerror(err), (unsigned long long)rl.rlim_max);
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return 0;
        err = errno;
    }
    return -err;
}

static int block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Blocked before any thread starts, so every worker inherits the mask. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -EINVAL;
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    return fd < 0 ? -errno : fd;
}

static bool stop_requested(int signal_fd)
{
    struct signalfd_siginfo si;
    if (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        log_info("received signal %u, exiting", si.ssi_signo);
        return true;
    }
    return false;
}

/*
 * A new connection whose first message is a handover request (a new process started with
 * --upgrade) becomes the pending handover's control socket; true then. The request's
 * header is only peeked at: anything else is left unread for its caller.
 */
static bool take_handover_request(struct daemon *d, int fd)
{
    if (!handover_requested(fd))
        return false;
    if (d->ctl >= 0) {
        log_warn("upgrade: refused, another one is pending");
        close(fd);
    } else if (handover_welcome(fd, d->listen_fd, d->lock_fd) < 0) {
        close(fd);
    } else {
        d->ctl = fd;
    }
    return true;
}

/* Turns away a second front-end while a session is active. */
static void refuse_connection(struct daemon *d)
{
    int fd = listener_accept(d->listen_fd);
    if (fd >= 0 && !take_handover_request(d, fd)) {
        log_warn("refusing a second front-end connection: a session is already active");
        close(fd);
    }
}

/* The session, saved for the new process as a migration saves it, in a memfd; the inodes
 * without a path in the share go as their own fds beside it (p->state_fds, ours to close). */
static int save_session(struct daemon *d, struct handover_package *p)
{
    int *fds = NULL, *fd = &p->state_fd;
    size_t n = 0;
    /* These flags exactly: the seccomp filter allows memfd_create with them only. */
    *fd = memfd_create("virtiofsd-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (*fd < 0)
        return -errno;
    int ret = fuse_session_state_save_handover(d->fuse, *fd, &fds, &n);
    p->state_fds = fds;
    p->n_state_fds = (unsigned)n; /* at most SESSION_STATE_MAX_FDS */
    if (ret == 0 && lseek(*fd, 0, SEEK_SET) < 0)
        ret = -errno;
    return ret;
}

/*
 * The new process asked to start: stop, hand everything over, and wait until it serves.
 * Returns true when it does (this process must exit without touching what it handed over);
 * false when it failed, and then the queues go on where they stopped. conn: the front-end's
 * connection, -1 between connections.
 */
static bool hand_over(struct daemon *d, int conn)
{
    struct handover_package p = {.listen_fd = d->listen_fd,
                                 .lock_fd = d->lock_fd,
                                 .conn_fd = conn,
                                 .state_fd = -1,
                                 .has_device = conn >= 0,
                                 .dev = {.log_fd = -1, .inflight_fd = -1}};
    /* With --fd the socket came from whoever started us; there is no lock file to hand on. */
    int ret = d->lock_fd < 0 ? -ENOTSUP : 0;
    if (ret == 0 && conn >= 0)
        ret = vu_dev_export(d->dev, &p.dev);
    if (ret == 0 && conn >= 0)
        ret = save_session(d, &p);
    if (ret == 0)
        ret = handover_send(d->ctl, &p);
    else
        handover_abort(d->ctl, ret);
    if (p.state_fd >= 0)
        close(p.state_fd);
    for (unsigned i = 0; i < p.n_state_fds; i++)
        close(p.state_fds[i]);
    free(p.state_fds);
    vu_dev_image_free(&p.dev);
    close(d->ctl);
    d->ctl = -1;
    if (ret == 0) {
        /* Lock waits still running here end unanswered: the new process serves them. */
        if (conn >= 0)
            vu_dev_let_go(d->dev);
        log_info("upgrade: the new process serves; exiting");
        d->handed_over = true;
        return true;
    }
    if (ret == -ENOTSUP)
        log_error("upgrade: refused: started with --fd, this daemon has no lock file to hand on");
    if (conn >= 0)
        vu_dev_resume(d->dev);
    return false;
}

/* The pending handover's control socket is readable: the new process asks to start, or has
 * gone away. True when this process handed over and must exit. */
static bool handover_event(struct daemon *d, int conn)
{
    if (handover_poll_start(d->ctl) == 0)
        return hand_over(d, conn);
    close(d->ctl);
    d->ctl = -1;
    return false;
}

/* Serves one connection until it ends; returns true if a signal asks us to exit. */
static bool serve_connection(struct daemon *d, int conn)
{
    log_info("front-end connected");
    /* Before the session allocates anything: be accounted where our manager put the daemon
     * (libvirt moves the process it started into the VM's cgroup after start-up). */
    int cg = sandbox_follow_cgroup();
    if (cg < 0)
        log_warn("could not follow the daemon into its cgroup: %s", strerror(-cg));
    bool exiting = false;
    for (;;) {
        struct pollfd fds[4] = {{.fd = conn, .events = POLLIN},
                                {.fd = d->signal_fd, .events = POLLIN},
                                {.fd = d->listen_fd, .events = POLLIN},
                                {.fd = d->ctl, .events = POLLIN}};
        if (poll(fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %m");
            break;
        }
        if ((fds[1].revents & POLLIN) && stop_requested(d->signal_fd)) {
            exiting = true;
            break;
        }
        /* The session's own messages first: when it has just ended, a waiting connection
         * is the front-end coming back (a reboot), to be served rather than refused. */
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int ret = vu_dev_handle_message(d->dev, conn);
            if (ret == -ENOTCONN) {
                log_info("front-end disconnected");
                break;
            }
            if (ret < 0) {
                log_error("closing the connection after a protocol error");
                break;
            }
        }
        if (fds[2].revents & POLLIN)
            refuse_connection(d);
        /* Between two messages of the front-end: none is half read. */
        if (fds[3].revents && fds[3].fd >= 0 && handover_event(d, conn)) {
            exiting = true;
            break;
        }
    }
    close(conn);
    /* Handed over: the device, its rings and the session's journal are the new process's. */
    if (d->handed_over)
        return true;
    vu_dev_reset(d->dev);
    log_info("session state reset; waiting for the next front-end");
    return exiting;
}

/*
 * After a session ended without a stop signal: true when the daemon exits now
 * (--on-disconnect=exit; a handover request or a refused connection is no session).
 */
static bool ends_with_session(const struct daemon *d)
{
    if (d->opts.on_disconnect != DISCONNECT_EXIT)
        return false;
    log_info("front-end disconnected: exiting (--on-disconnect=exit)");
    return true;
}

/*
 * How long the daemon waits for a front-end, in ms (-1: for ever). A serving process the
 * monitor started after a crash, with --on-disconnect=exit, waits for the front-end to
 * reconnect (QEMU's reconnect=) a while only: a front-end that does not reconnect would
 * otherwise leave a daemon its manager believes still serves (it exits with its VM).
 */
#define RECONNECT_WAIT_MS 30000
static int accept_timeout_ms(const struct daemon *d, bool served)
{
    bool after_crash = d->sb.restarts > 0 && !served;
    return d->opts.on_disconnect == DISCONNECT_EXIT && after_crash ? RECONNECT_WAIT_MS : -1;
}

static int serve(struct daemon *d)
{
    bool served = false;
    /* After a handover: the front-end's connection we took over, before any new one. */
    if (d->adopted_conn >= 0) {
        int conn = d->adopted_conn;
        d->adopted_conn = -1;
        if (serve_connection(d, conn) || ends_with_session(d))
            return 0;
        served = true;
    }
    /* Idle from here until the next connection: what start-up or the last session used
     * goes back first (the last thing before waiting: what runs after it comes back). */
    bool idle_since_release = false;
    for (;;) {
        if (!idle_since_release) {
            /* The inodes and handles the session dropped are freed by liburcu's call_rcu
             * thread: that runs first, so that its free()s are trimmed too and it maps no
             * code back in after the release. */
            rcu_barrier();
            idle_mem_release();
        }
        idle_since_release = true;
        struct pollfd fds[3] = {{.fd = d->listen_fd, .events = POLLIN},
                                {.fd = d->signal_fd, .events = POLLIN},
                                {.fd = d->ctl, .events = POLLIN}};
        int ready = poll(fds, 3, accept_timeout_ms(d, served));
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %m");
            return -errno;
        }
        if (ready == 0) {
            log_error("the front-end did not reconnect within %d s after the restart: exiting",
                      RECONNECT_WAIT_MS / 1000);
            return -ETIMEDOUT;
        }
        if ((fds[1].revents & POLLIN) && stop_requested(d->signal_fd))
            return 0;
        if (fds[2].revents && fds[2].fd >= 0 && handover_event(d, -1))
            return 0;
        if (!(fds[0].revents & POLLIN))
            continue;
        int conn = listener_accept(d->listen_fd);
        if (conn < 0) {
            log_warn("accept: %s", strerror(-conn));
            continue;
        }
        if (take_handover_request(d, conn))
            continue;
        if (serve_connection(d, conn) || ends_with_session(d))
            return 0;
        served = true;
        idle_since_release = false;
    }
}

static int check_shared_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        int err = errno;
        log_error("shared directory %s: %s", dir, strerror(err));
        return -err;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("shared directory %s is not a directory", dir);
        return -ENOTDIR;
    }
    return 0;
}

/* Listening socket and its lock; in namespace mode the monitor removes them at the end. */
static int open_socket(struct daemon *d)
{
    const struct options *o = &d->opts;
    if (o->fd >= 0) {
        d->listen_fd = o->fd;
        return 0;
    }
    /* --upgrade: the socket and its lock come from the daemon serving the path (held from
     * here on, by the namespace sandbox's monitor too; accepted on only once taken over). */
    if (o->upgrade) {
        d->ctl = handover_connect(o->socket_path, &d->listen_fd, &d->lock_fd);
        return d->ctl < 0 ? d->ctl : 0;
    }
    d->lock_fd = listener_lock(o->socket_path);
    if (d->lock_fd < 0)
        return d->lock_fd;
    d->listen_fd = listener_open(o->socket_path, o->socket_group);
    return d->listen_fd < 0 ? d->listen_fd : 0;
}

static int open_filesystem(struct daemon *d)
{
    struct pt_config cfg = d->opts.pt;
    cfg.shared_dir = d->sb.root; /* "/" once pivoted or chrooted */
    /* Process-wide: umask, groups, this thread's ids, the lock wake-up signal, the cwd. */
    int ret = pt_process_setup(d->sb.proc_self_fd);
    d->sb.proc_self_fd = -1; /* taken over */
    if (ret >= 0)
        ret = pt_new_with_proc(&cfg, ret, &d->fs);
    if (ret < 0) {
        log_error("cannot open shared directory %s: %s", d->opts.pt.shared_dir, strerror(-ret));
        return ret;
    }
    d->fuse = fuse_session_new(d->fs);
    const struct vu_dev_config dcfg = {.num_request_queues = d->opts.num_request_queues,
                                       .queue_threads = d->opts.queue_threads,
                                       .poll_us = d->opts.queue_poll_us,
                                       .poll_when_crowded = d->opts.queue_poll_us_given,
                                       .pool_threads = d->opts.thread_pool_size,
                                       .restarted = d->sb.restarts > 0,
                                       .tag = d->opts.tag};
    d->dev = d->fuse ? vu_dev_new(d->fuse, &dcfg) : NULL;
    return d->dev ? 0 : -ENOMEM;
}

/*
 * --upgrade, once set up: receives the old process's socket, lock, connection, device and
 * session; tells it we are ready, and once it let go, starts the queues. Every fd received
 * comes from a process of our uid (or root; handover.c checked), and is checked for shape;
 * the device's values are checked as a front-end's (vu_dev_import), the session as a
 * migration's (fuse_session_state_load_handover: the same LOAD, plus the fds of the inodes
 * that have no path in the share, each checked to be the inode the stream names).
 */
static int take_over(struct daemon *d)
{
    struct handover_package p;
    bool restored = false;
    int ret = handover_receive(d->ctl, &p);
    if (ret == 0 && p.has_device)
        ret = vu_dev_import(d->dev, &p.dev, p.conn_fd, &restored);
    if (ret == 0 && p.state_fd >= 0 && !restored) {
        ret = fuse_session_state_load_handover(d->fuse, p.state_fd, p.state_fds, p.n_state_fds);
        if (ret == 0)
            vu_dev_session_replaced(d->dev);
    }
    /* Ready, or failed: the old process goes on serving then. ECANCELED: it refused. */
    if (ret != -ECANCELED) {
        int r = handover_ready(d->ctl, ret);
        if (ret == 0)
            ret = r;
    }
    close(d->ctl);
    d->ctl = -1;
    if (ret < 0) {
        vu_dev_reset(d->dev);
        handover_free(&p);
        log_error("upgrade: failed (%s); the running daemon goes on serving", strerror(-ret));
        return ret;
    }
    /* The listening socket and the lock came with WELCOME already: the package's copies of
     * them are closed with it. */
    d->adopted_conn = handover_take_fd(&p, p.conn_fd);
    handover_free(&p);
    if (listener_write_pid(d->lock_fd, d->outer_pid) < 0)
        log_warn("upgrade: cannot write our pid into the lock file: %m");
    if (vu_dev_go(d->dev) < 0)
        log_error("upgrade: a queue could not be started");
    log_info("upgrade: took over %s%s", d->opts.socket_path,
             d->adopted_conn >= 0 ? " and its front-end connection" : "");
    return 0;
}

#define STEP(name, call)                                                                           \
    do {                                                                                           \
        log_debug("start-up: %s", name);                                                           \
        int step_ret = (call);                                                                     \
        if (step_ret < 0)                                                                          \
            return step_ret;                                                                       \
    } while (0)

/*
 * Every start-up step, in order; each failure is logged and ends start-up. Returns 0 in the
 * serving process, or 1 in the monitor process of the namespace sandbox.
 */
/*
 * What the daemon keeps of CAP_DAC_READ_SEARCH: what --inode-file-handles needs, and with
 * --migration-mode=file-handles always (a LOAD opens every inode by its handle, as in the
 * Rust virtiofsd). The price: a compromised daemon can open any inode of the shared
 * directory's file system by handle, whatever the sandbox; the beneath-the-share check of a
 * LOAD only guards what a migration stream names.
 */
static enum caps_fh migration_caps(const struct pt_config *pt)
{
    if (pt->migration_mode == MIGRATION_FILE_HANDLES)
        return CAPS_FH_REQUIRED;
    return fh_policy_caps(pt->inode_file_handles);
}

static int start_confined(struct daemon *d);

static int start(struct daemon *d)
{
    const struct options *o = &d->opts;
    STEP("shared directory", check_shared_dir(o->pt.shared_dir));
    d->opts.pt.inode_file_handles = fh_policy_for_share(o->pt.inode_file_handles, o->pt.shared_dir);
    STEP("signals", d->signal_fd = block_signals());
    STEP("socket and lock", open_socket(d));
    log_debug("start-up: rlimit");
    int ret = raise_nofile_limit(o->rlimit_nofile);
    if (ret < 0)
        log_warn("cannot raise the open-file limit: %s", strerror(-ret));
    d->sb.fh_caps = migration_caps(&o->pt);
    enum sandbox_role role;
    STEP("sandbox", sandbox_enter(&d->sb, &role));
    if (role == SANDBOX_MONITOR)
        return 1;
    return start_confined(d);
}

/*
 * The start-up steps of the serving process once confined: also those of a new serving
 * process the namespace sandbox's monitor starts when the last one died (it inherits the
 * listening socket, its lock, the signalfd and the raised open-file limit).
 */
static int start_confined(struct daemon *d)
{
    const struct options *o = &d->opts;
    STEP("guest memory fault handler", guest_mem_install_fault_handler());
    rcu_register_thread();
    /*
     * Capabilities and no_new_privs belong to each thread, and a thread starts with its
     * creator's: they are dropped while this is the only thread, before open_filesystem()
     * starts any (the request pool, liburcu's hash-table resize worker; the queue workers,
     * lock waits and the call_rcu thread come later still). The seccomp filter comes after
     * the set-up, which makes calls the serving allow-list does not need, and its TSYNC puts
     * it on every thread that exists by then.
     */
    STEP("capabilities",
         caps_drop_fh(o->modcaps, geteuid() == 0 || d->sb.in_user_ns, migration_caps(&o->pt)));
    STEP("filesystem", open_filesystem(d));
    STEP("seccomp", seccomp_install(o->seccomp));
    /* After dropping capabilities: whether handles can be opened depends on what is left. */
    STEP("file handles", pt_setup_file_handles(d->fs));
    /* A serving process the monitor restarted is an ordinary one: the first took over. */
    if (o->upgrade && d->sb.restarts == 0)
        STEP("take over", take_over(d));
    if (o->fd >= 0)
        log_info("serving %s on --fd=%d%s", o->pt.shared_dir, o->fd,
                 o->socket_activated ? " (systemd socket activation)" : "");
    else
        log_info("serving %s on %s", o->pt.shared_dir, o->socket_path);
    return 0;
}

/*
 * After a handover the device, the session and the passthrough stay as they are until the
 * process exits: tearing them down would end lock waits and detach the session journal, in
 * memory the new process uses now. Kept reachable here for leak checkers.
 */
static struct daemon handed_over_daemon; /* a copy: main()'s frame is gone at exit */

/*
 * Whether the socket and its lock file are this daemon's: always, unless it was started with
 * --upgrade — then only once its serving process took over (it wrote our pid into the lock
 * file). Until then they are the running daemon's: not ours to remove, and a serving process
 * of ours that dies is not restarted (the running daemon goes on serving).
 */
static bool took_over(void *opaque)
{
    const struct daemon *d = opaque;
    return !d->opts.upgrade || (d->lock_fd >= 0 && listener_read_pid(d->lock_fd) == d->outer_pid);
}

static void stop(struct daemon *d)
{
    if (d->handed_over && d->dev) {
        handed_over_daemon = *d;
    } else {
        vu_dev_free(d->dev);
        fuse_session_free(d->fuse);
        if (d->fs)
            pt_free(d->fs);
    }
    if (d->ctl >= 0)
        close(d->ctl);
    /* Once confined, the socket's path means something else (or nothing): the monitor, or
     * the next daemon taking over the stale socket, removes it. Handed over, they are the
     * new process's. */
    bool confined = d->sb.root != d->sb.shared_dir || d->handed_over || !took_over(d);
    const char *path = d->opts.fd >= 0 || confined ? NULL : d->opts.socket_path;
    if (d->listen_fd >= 0)
        listener_close(d->listen_fd, path);
    if (d->lock_fd >= 0 && !confined)
        listener_unlock(d->lock_fd, d->opts.socket_path);
    else if (d->lock_fd >= 0)
        close(d->lock_fd);
    if (d->signal_fd >= 0)
        close(d->signal_fd);
}

/*
 * The vhost-user.json capabilities libvirt reads (newer libvirt runs --print-capabilities on
 * the <binary> or the discovered back-end). migrate-precopy: a VM with this device can be
 * live-migrated (dirty-page logging and DEVICE_STATE). Not separate-options: libvirt would then
 * write --shared-dir-style options, which it cannot do for <lock posix=... flock=...> (it
 * refuses such a domain) although we keep locks; its -o form carries everything it can say
 * (source with commas escaped, cache, sandbox, xattr, flock, posix_lock) and the rest it adds
 * as long options either way (--thread-pool-size, --rlimit-nofile, --uid-map, --gid-map).
 */
static void print_capabilities(void)
{
    printf("{\n  \"type\": \"fs\",\n  \"features\": [\n    \"migrate-precopy\"\n  ]\n}\n");
}

int main(int argc, char **argv)
{
    struct daemon d = {
        .listen_fd = -1, .lock_fd = -1, .signal_fd = -1, .ctl = -1, .adopted_conn = -1};
    enum options_result parsed = options_parse(argc, argv, &d.opts);
    if (parsed != OPTIONS_OK) {
        options_free(&d.opts);
        return parsed == OPTIONS_EXIT ? EXIT_OK : EXIT_USAGE;
    }
    if (d.opts.print_capabilities) {
        print_capabilities();
        options_free(&d.opts);
        return EXIT_OK;
    }
    /* The manager's fds, listed before we open any of our own (--syslog's socket among them:
     * the serving process closes the inherited ones). */
    int inherited = sandbox_keep_inherited(d.opts.fd);
    log_init(d.opts.log_level, d.opts.syslog);
    if (inherited < 0) {
        options_free(&d.opts);
        return EXIT_FATAL;
    }
    d.sb = (struct sandbox){.mode = d.opts.sandbox,
                            .shared_dir = d.opts.pt.shared_dir,
                            .uid_map = d.opts.uid_map,
                            .n_uid_map = d.opts.n_uid_map,
                            .gid_map = d.opts.gid_map,
                            .n_gid_map = d.opts.n_gid_map,
                            .max_restarts = d.opts.max_restarts,
                            .modcaps = d.opts.modcaps,
                            .root = d.opts.pt.shared_dir,
                            .proc_self_fd = -1};

    d.outer_pid = getpid();
    if (d.opts.upgrade) {
        d.sb.may_restart = took_over;
        d.sb.restart_opaque = &d;
    }
    int ret = start(&d);
    if (ret == 1) {
        /* The monitor: the confined child serves; we outlive it to clean up its paths. A
         * handover's control socket is the child's alone: if the child dies, the old process
         * must see the socket close. */
        if (d.ctl >= 0)
            close(d.ctl);
        d.ctl = -1;
        enum sandbox_role role;
        int status = sandbox_monitor(&d.sb, &role);
        if (role == SANDBOX_MONITOR) {
            d.sb.root = d.sb.shared_dir;
            d.handed_over = status == EXIT_HANDED_OVER;
            stop(&d);
            options_free(&d.opts);
            return d.handed_over ? EXIT_OK : status;
        }
        /* A new serving process, the last one having died of a signal (after it took over,
         * with --upgrade: took_over): an ordinary one, on the socket the monitor holds. */
        d.opts.upgrade = false;
        ret = status < 0 ? status : start_confined(&d);
    }
    if (ret == 0)
        ret = serve(&d);
    stop(&d);
    if (d.fs && !d.handed_over)
        rcu_unregister_thread();
    options_free(&d.opts);
    if (d.handed_over)
        return d.sb.mode == SANDBOX_NAMESPACE ? EXIT_HANDED_OVER : EXIT_OK;
    return ret < 0 ? EXIT_FATAL : EXIT_OK;
}
