/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command line: a drop-in for the Rust virtiofsd 1.13 (same long options, same meanings,
 * the legacy -o key[=value] forms, -d and -f).
 */
#ifndef VFS_OPTIONS_H
#define VFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "passthrough.h"

/* --version, and the writer named in a migration stream's header (session_state.c). */
#define VFS_VERSION_STRING "virtiofsd 0.1.0 (C)"

enum sandbox_mode { SANDBOX_NAMESPACE, SANDBOX_CHROOT, SANDBOX_NONE };
enum seccomp_mode { SECCOMP_KILL, SECCOMP_LOG, SECCOMP_TRAP, SECCOMP_NONE };
/* --on-disconnect: what the daemon does when its front-end's connection ends. */
enum disconnect_mode {
    DISCONNECT_DEFAULT, /* not given: EXIT with --fd, LISTEN with --socket-path */
    DISCONNECT_EXIT,    /* exit (status 0), as the Rust virtiofsd always does */
    DISCONNECT_LISTEN,  /* reset the session, wait for the next front-end */
};

#define OPTIONS_MAX_ID_MAPS                                                                        \
    8 /* the kernel's limit per map before 4.15 was 5; newuidmap's is higher */

/* The largest --max-restarts (the monitor remembers that many restart times). */
#define OPTIONS_MAX_RESTARTS 1000

struct options {
    char *socket_path;
    int fd;                             /* --fd: an already listening socket, -1 when not given */
    /* fd came from systemd's socket activation (LISTEN_PID, LISTEN_FDS), not from --fd. */
    bool socket_activated;
    enum disconnect_mode on_disconnect; /* never DEFAULT once parsed */
    char *socket_group;
    char *tag; /* --tag: offered in the device configuration (vu_dev_config.tag); NULL: none */
    struct pt_config pt;
    unsigned num_request_queues;
    unsigned queue_poll_us;
    bool queue_poll_us_given; /* polls even when the queue workers crowd the CPUs */
    unsigned queue_threads;   /* 0: one per CPU, at most one per request queue */
    unsigned thread_pool_size;
    enum sandbox_mode sandbox;
    unsigned max_restarts; /* --max-restarts: new serving processes per 60 s (namespace mode) */
    enum seccomp_mode seccomp;
    enum log_level log_level;
    bool syslog;
    uint64_t rlimit_nofile; /* 0: raise to the system maximum */
    bool print_capabilities;
    bool upgrade; /* take over from the daemon serving socket_path (handover.h) */
    char *modcaps;
    /* --uid-map / --gid-map ranges for the unprivileged sandbox's user namespace. */
    struct id_map {
        uint32_t ns_id, host_id, count;
    } uid_map[OPTIONS_MAX_ID_MAPS], gid_map[OPTIONS_MAX_ID_MAPS];
    unsigned n_uid_map, n_gid_map;
};

enum options_result {
    OPTIONS_OK,   /* run the daemon */
    OPTIONS_EXIT, /* --help or --version printed: exit 0 */
    OPTIONS_ERROR /* message printed: exit with status 2 */
};

/* An option's entry in the one table the parser, --help and the man page test read. */
struct option_spec {
    const char *long_name; /* without "--"; NULL for a short-only option */
    char short_name;       /* 0 for a long-only option */
    const char *arg;       /* the value's name in --help; NULL: the option takes no value */
    int id;                /* what getopt_long returns for it */
    unsigned flags;        /* OPTION_* */
    const char *help;      /* --help's text, lines separated by '\n' */
};

/* Accepted for the Rust virtiofsd's command lines, warned about and ignored; --help says so. */
#define OPTION_UNIMPLEMENTED 1u

/* The i-th entry of the option table, NULL past its end (in --help's order). */
const struct option_spec *options_spec(size_t i);
/* The i-th key the legacy -o list accepts, NULL past the end. */
const char *options_compat_key(size_t i);
/* --help's text. */
void options_print_help(FILE *out);

/* Parses argv into o (defaults first). Messages go to stdout (help) or stderr (errors). */
enum options_result options_parse(int argc, char **argv, struct options *o);
void options_free(struct options *o);

#endif
