/* SPDX-License-Identifier: Apache-2.0 */
#include "seccomp_filter.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/*
 * The one table. Grouped by who needs them; a syscall missing here shows up as a killed
 * daemon in the test suite, which runs under the default (kill) mode.
 */
static const char *const allowed[] = {
    /* vhost-user socket, eventfds, polling */
    "accept4",
    "close",
    "poll",
    "ppoll",
    "read",
    "recvmsg",
    "sendmsg",
    "sendto",
    "write",
    "setsockopt",
    "eventfd2",
    "pipe2", /* a DEVICE_STATE transfer's own pipe (state_transfer.c) */
    /* FUSE passthrough: lookups and attributes */
    "openat",
    "newfstatat",
    "fstat",
    "statx",
    "fstatfs",
    "statfs",
    "getdents64",
    "lseek",
    "readlinkat",
    "faccessat",
    "faccessat2",
    "fcntl",
    "dup",
    "flock",
    /* --inode-file-handles: inodes kept as file handles, reopened per op */
    "name_to_handle_at",
    "open_by_handle_at",
    /* FUSE passthrough: data */
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "fsync",
    "fdatasync",
    "syncfs",
    "fallocate",
    "ftruncate",
    "copy_file_range",
    /* FUSE passthrough: namespace and metadata changes */
    "mkdirat",
    "mknodat",
    "symlinkat",
    "linkat",
    "unlinkat",
    "renameat",
    "renameat2",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "utimensat",
    "umask", /* a thread's own, for creations under POSIX ACLs (with unshare, below) */
    /* extended attributes (fd and /proc/self/fd path variants) */
    "fgetxattr",
    "fsetxattr",
    "flistxattr",
    "fremovexattr",
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    "lgetxattr",
    "lsetxattr",
    "llistxattr",
    "lremovexattr",
    /* acting as the guest's caller */
    "setfsuid",
    "setfsgid",
    "setgroups", /* per thread, for the guest caller's group access (creds.c) */
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    /* (capabilities are dropped before the filter is in place; prctl: see add_arg_rules) */
    /* memory management (malloc, thread stacks, guest memory) */
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "brk",
    /* threads: queue workers and liburcu's call_rcu thread (clone: see add_arg_rules) */
    "set_robust_list",
    "rseq",
    "futex",
    "membarrier",
    "sched_yield",
    "sched_getaffinity",
    "gettid",
    "getpid",
    "exit",
    "exit_group",
    "tgkill",
    /* signals and time */
    "rt_sigprocmask",
    "rt_sigaction",
    "rt_sigreturn",
    /* The kernel's own continuation of a poll or sleep with a timeout that a stop (SIGSTOP, a
     * debugger, a frozen cgroup) interrupted: without it the daemon dies when continued. */
    "restart_syscall",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "getrandom",
    NULL,
};

const char *const *seccomp_allowed_syscalls(void)
{
    return allowed;
}

/*
 * Trap mode's names for system call numbers, looked up before the filter is in place: the
 * SIGSYS handler may interrupt malloc, so it must not call libseccomp's resolver (which
 * allocates the name it returns). Indexed by number; NULL where the number has no name here.
 * The names live as long as the process, as the handler does.
 */
/* Above every native syscall number of the architectures we build for. */
#define TRAP_NAMES_MAX 1024
static char *trap_names[TRAP_NAMES_MAX];

static void resolve_trap_names(void)
{
    for (int nr = 0; nr < TRAP_NAMES_MAX; nr++)
        if (!trap_names[nr])
            trap_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

/* Appends s to buf[*len] while it fits (leaving room for the newline). */
static void msg_append(char *buf, size_t size, size_t *len, const char *s)
{
    for (; *s && *len < size - 1; s++)
        buf[(*len)++] = *s;
}

/* The decimal form of n into buf (at least 12 bytes), for a number without a name. */
static const char *format_int(char *buf, size_t size, int n)
{
    char *p = buf + size - 1;
    unsigned u = n < 0 ? 0u - (unsigned)n : (unsigned)n;
    *p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) && p > buf + 1);
    if (n < 0)
        *--p = '-';
    return p;
}

/* Trap mode: name the syscall, then die of it. Only async-signal-safe calls here. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char msg[128] = "virtiofsd: seccomp: blocked system call ";
    size_t len = strlen(msg);
    int nr = si->si_syscall;
    char digits[16];
    const char *name = nr >= 0 && nr < TRAP_NAMES_MAX && trap_names[nr]
                           ? trap_names[nr]
                           : format_int(digits, sizeof(digits), nr);
    msg_append(msg, sizeof(msg), &len, name);
    msg[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, msg, len);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

static int arg_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, int nr, unsigned n,
                    const struct scmp_arg_cmp *cmp)
{
    int ret = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (ret < 0)
        log_error("seccomp: cannot add the rule for %s: %s", name, strerror(-ret));
    return ret;
}

/* Namespace flags: the sandbox made its namespaces before the filter. A new user namespace
 * now would hand a thread every capability inside it, and with it mount and unshare. */
#define NEW_NAMESPACES                                                                             \
    (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |     \
     CLONE_NEWCGROUP)

/* The prctl options the daemon and its libraries use once serving: naming threads, and
 * reading (never widening) its own privileges. */
static const int allowed_prctl[] = {
    PR_SET_NAME,     PR_GET_NAME,       PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS,
    PR_CAPBSET_READ, PR_GET_SECUREBITS, PR_GET_DUMPABLE,     PR_GET_KEEPCAPS,
};

/* System calls allowed only with some arguments; any other use meets the default action. */
static int add_arg_rules(scmp_filter_ctx ctx)
{
    /* clone: threads only (CLONE_THREAD), never a new namespace. The flags are argument 0 on
     * every architecture the daemon builds for but s390, which swaps the first two. */
    const struct scmp_arg_cmp thread_only =
        SCMP_A0(SCMP_CMP_MASKED_EQ, NEW_NAMESPACES | CLONE_THREAD, CLONE_THREAD);
    int ret = arg_rule(ctx, SCMP_ACT_ALLOW, "clone", SCMP_SYS(clone), 1, &thread_only);
    /* clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes glibc's
     * pthread_create fall back to clone, checked above. */
    if (ret == 0)
        ret = arg_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", SCMP_SYS(clone3), 0, NULL);
    /* unshare(CLONE_FS) alone: gives a thread its own umask (pt_umask_begin in pt_core.c,
     * --posix-acl). */
    const struct scmp_arg_cmp fs_only = SCMP_A0(SCMP_CMP_EQ, CLONE_FS, 0);
    if (ret == 0)
        ret = arg_rule(ctx, SCMP_ACT_ALLOW, "unshare", SCMP_SYS(unshare), 1, &fs_only);
    /* ioctl: no request of ours needs one; isatty() (TCGETS) is the only one a library may
     * make (stdio on a log stream). Device ioctls (TIOCSTI and the like) are refused. */
    const struct scmp_arg_cmp tcgets = SCMP_A1(SCMP_CMP_EQ, TCGETS, 0);
    if (ret == 0)
        ret = arg_rule(ctx, SCMP_ACT_ALLOW, "ioctl", SCMP_SYS(ioctl), 1, &tcgets);
    /* shutdown(SHUT_RDWR) on the connection: the SIGBUS handler's way to end a session whose
     * guest memory vanished (guest_mem.c). */
    const struct scmp_arg_cmp rdwr = SCMP_A1(SCMP_CMP_EQ, SHUT_RDWR, 0);
    if (ret == 0)
        ret = arg_rule(ctx, SCMP_ACT_ALLOW, "shutdown", SCMP_SYS(shutdown), 1, &rdwr);
    /* getsockopt(SOL_SOCKET, SO_PEERCRED) only: who asks for a planned upgrade's handover
     * (handover.c) must run as our uid or as root. */
    const struct scmp_arg_cmp peercred[2] = {SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET, 0),
                                             SCMP_A2(SCMP_CMP_EQ, SO_PEERCRED, 0)};
    if (ret == 0)
        ret = arg_rule(ctx, SCMP_ACT_ALLOW, "getsockopt", SCMP_SYS(getsockopt), 2, peercred);
    /* memfd_create for GET_INFLIGHT_FD's area (inflight.c) and a handover's session state
     * (main.c), with these flags only. */
    const struct scmp_arg_cmp memfd_flags =
        SCMP_A1(SCMP_CMP_EQ, MFD_CLOEXEC | MFD_ALLOW_SEALING, 0);
    if (ret == 0)
        ret =
            arg_rule(ctx, SCMP_ACT_ALLOW, "memfd_create", SCMP_SYS(memfd_create), 1, &memfd_flags);
    for (size_t i = 0; ret == 0 && i < sizeof(allowed_prctl) / sizeof(allowed_prctl[0]); i++) {
        const struct scmp_arg_cmp option = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)allowed_prctl[i], 0);
        ret = arg_rule(ctx, SCMP_ACT_ALLOW, "prctl", SCMP_SYS(prctl), 1, &option);
    }
    return ret;
}

static uint32_t default_action(enum seccomp_mode mode)
{
    switch (mode) {
    case SECCOMP_LOG:
        return SCMP_ACT_LOG;
    case SECCOMP_TRAP:
        return SCMP_ACT_TRAP;
    default:
        return SCMP_ACT_KILL_PROCESS;
    }
}

int seccomp_install(enum seccomp_mode mode)
{
    if (mode == SECCOMP_NONE)
        return 0;
    if (mode == SECCOMP_TRAP) {
        resolve_trap_names();
        struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
        sigaction(SIGSYS, &sa, NULL);
    }
    scmp_filter_ctx ctx = seccomp_init(default_action(mode));
    if (!ctx) {
        log_error("seccomp: cannot create a filter");
        return -ENOMEM;
    }
    int ret = 0;
    for (const char *const *name = allowed; *name && ret == 0; name++) {
        int nr = seccomp_syscall_resolve_name(*name);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a syscall on this architecture */
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (ret < 0)
            log_error("seccomp: cannot allow %s: %s", *name, strerror(-ret));
    }
    if (ret == 0)
        ret = add_arg_rules(ctx);
    /* Synchronise all threads already running (liburcu may have started one). */
    if (ret == 0)
        ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (ret == 0)
        ret = seccomp_load(ctx);
    if (ret < 0)
        log_error("seccomp: cannot load the filter: %s", strerror(-ret));
    seccomp_release(ctx);
    return ret;
}
