/* SPDX-License-Identifier: Apache-2.0 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caps.h"
#include "vhost_user.h"
#include "xattrmap.h"

enum opt_id {
    O_SHARED_DIR = 256,
    O_SOCKET_PATH,
    O_SOCKET,
    O_FD,
    O_SOCKET_GROUP,
    O_TAG,
    O_THREAD_POOL_SIZE,
    O_XATTR,
    O_POSIX_ACL,
    O_XATTRMAP,
    O_SANDBOX,
    O_READONLY,
    O_SECCOMP,
    O_ANNOUNCE_SUBMOUNTS,
    O_NO_ANNOUNCE_SUBMOUNTS,
    O_INODE_FILE_HANDLES,
    O_CACHE,
    O_ALLOW_MMAP,
    O_ALLOW_IDMAP,
    O_NO_READDIRPLUS,
    O_WRITEBACK,
    O_ALLOW_DIRECT_IO,
    O_PRINT_CAPABILITIES,
    O_MODCAPS,
    O_LOG_LEVEL,
    O_SYSLOG,
    O_RLIMIT_NOFILE,
    O_KILLPRIV_V2,
    O_NO_KILLPRIV_V2,
    O_SECURITY_LABEL,
    O_UID_MAP,
    O_GID_MAP,
    O_TRANSLATE_UID,
    O_TRANSLATE_GID,
    O_PRESERVE_NOATIME,
    O_MIGRATION_ON_ERROR,
    O_MIGRATION_MODE,
    O_MIGRATION_VERIFY_HANDLES,
    O_MIGRATION_CONFIRM_PATHS,
    O_MIGRATION_FORMAT,
    O_NUM_REQUEST_QUEUES,
    O_QUEUE_POLL_US,
    O_QUEUE_THREADS,
    O_MAX_RESTARTS,
    O_UPGRADE,
    O_ON_DISCONNECT,
    /* Reached only through the legacy -o forms. */
    O_COMPAT_READDIRPLUS,
    O_COMPAT_NO_WRITEBACK,
    O_COMPAT_NO_XATTR,
    O_COMPAT_NO_DIRECT_IO,
    O_COMPAT_FLOCK,
    O_COMPAT_NO_FLOCK,
    O_COMPAT_POSIX_LOCK,
    O_COMPAT_NO_POSIX_LOCK,
    O_COMPAT_NO_POSIX_ACL,
    O_COMPAT_NO_SECURITY_LABEL,
    O_COMPAT_LOG_LEVEL, /* log_level= (the C virtiofsd's), loglevel= (the Rust one's): also err */
    O_COMPAT_DEFAULT,   /* timeout=: already so */
};

/*
 * The one list of options: getopt_long's table, the short-option string and --help are all
 * made from it, and test_options checks each entry against man/virtiofsd.1. Its order is the
 * order of --help.
 */
static const struct option_spec specs[] = {
    {"shared-dir", 0, "DIR", O_SHARED_DIR, 0, "Shared directory path"},
    {"socket-path", 0, "PATH", O_SOCKET_PATH, 0, "vhost-user socket path"},
    {"socket", 0, "PATH", O_SOCKET, 0, "Alias of --socket-path"},
    {"fd", 0, "FD", O_FD, 0, "File descriptor of an already listening socket"},
    {"socket-group", 0, "GROUP", O_SOCKET_GROUP, 0, "Group owning the socket"},
    {"on-disconnect", 0, "MODE", O_ON_DISCONNECT, 0,
     "When the front-end disconnects: exit, or listen for\n"
     "the next one [default: exit with --fd (libvirt,\n"
     "systemd socket activation, Kata), listen with\n"
     "--socket-path]"},
    {"upgrade", 0, NULL, O_UPGRADE, 0,
     "Take over from the daemon serving --socket-path: its\n"
     "socket, front-end connection and FUSE session (start\n"
     "with that daemon's options plus --upgrade)"},
    {"tag", 0, "TAG", O_TAG, 0,
     "The tag offered in the device configuration\n"
     "(VHOST_USER_PROTOCOL_F_CONFIG) to VMMs that read it\n"
     "from the back-end (crosvm, QEMU's vhost-user-device);\n"
     "1 to 36 bytes of UTF-8. Not for QEMU's vhost-user-fs,\n"
     "which has its own tag= (QEMU 7.1 to 8.0 crash on it)"},
    {"thread-pool-size", 0, "N", O_THREAD_POOL_SIZE, 0,
     "Serve requests on a pool of N threads shared by all\n"
     "queues (for slow storage) [default: 0, each queue's\n"
     "worker serves its own requests]"},
    {"num-request-queues", 0, "N", O_NUM_REQUEST_QUEUES, 0,
     "Request queues offered (1 to 16, default 16)"},
    {"queue-threads", 0, "N", O_QUEUE_THREADS, 0,
     "Threads serving the queues; with more request queues\n"
     "than threads, queues share them [default: one per\n"
     "CPU, at most one per request queue]"},
    {"queue-poll-us", 0, "US", O_QUEUE_POLL_US, 0,
     "Watch idle queues this long before sleeping, adaptively\n"
     "(0 disables) [default: 50 while the busy queue threads\n"
     "take at most half the CPUs, else 0]"},
    {"xattr", 0, NULL, O_XATTR, 0, "Enable extended attributes"},
    {"xattrmap", 0, "MAP", O_XATTRMAP, 0,
     "Translate xattr names between guest and host, e.g.\n"
     ":map::user.virtiofs.: (implies --xattr)"},
    {"posix-acl", 0, NULL, O_POSIX_ACL, 0,
     "Enable POSIX ACLs (implies --xattr; not with\n"
     "--translate-uid/--translate-gid)"},
    {"security-label", 0, NULL, O_SECURITY_LABEL, 0,
     "Label new files with the security context the guest\n"
     "sends, e.g. security.selinux (implies --xattr)"},
    {"readonly", 0, NULL, O_READONLY, 0, "Share read-only (EROFS for modifications)"},
    {"cache", 0, "MODE", O_CACHE, 0, "auto | always | never | metadata [default: auto]"},
    {"no-readdirplus", 0, NULL, O_NO_READDIRPLUS, 0, "Disable READDIRPLUS"},
    {"writeback", 0, NULL, O_WRITEBACK, 0, "Enable the writeback cache"},
    {"allow-mmap", 0, NULL, O_ALLOW_MMAP, 0,
     "Allow shared mmap of files not cached by the guest\n"
     "(--cache=never|metadata, or --allow-direct-io)"},
    {"allow-idmap", 0, NULL, O_ALLOW_IDMAP, 0,
     "Offer FUSE_ALLOW_IDMAP: idmapped mounts in 6.12+ guests;\n"
     "requests that create nothing then run as guest root"},
    {"allow-direct-io", 0, NULL, O_ALLOW_DIRECT_IO, 0, "Honour O_DIRECT from the guest"},
    {"announce-submounts", 0, NULL, O_ANNOUNCE_SUBMOUNTS, 0, "Tell the guest about host submounts"},
    {"no-announce-submounts", 0, NULL, O_NO_ANNOUNCE_SUBMOUNTS, 0, "Do not (the default)"},
    {"killpriv-v2", 0, NULL, O_KILLPRIV_V2, 0, "Offer FUSE_HANDLE_KILLPRIV_V2"},
    {"no-killpriv-v2", 0, NULL, O_NO_KILLPRIV_V2, 0, "Do not (the default)"},
    {"sandbox", 0, "MODE", O_SANDBOX, 0, "namespace | chroot | none [default: namespace]"},
    {"max-restarts", 0, "N", O_MAX_RESTARTS, 0,
     "With --sandbox=namespace: when the serving process\n"
     "dies of a signal, start a new one on the same socket,\n"
     "at most N times within any 60 s (0: never; the daemon\n"
     "then exits as the serving process did) [default: 10]"},
    {"seccomp", 0, "MODE", O_SECCOMP, 0, "kill | log | trap | none [default: kill]"},
    {"modcaps", 0, "CAPS", O_MODCAPS, 0, "Capability changes, e.g. +sys_admin:-mknod"},
    {"log-level", 0, "LEVEL", O_LOG_LEVEL, 0,
     "error | warn | info | debug | trace | off [default: info]"},
    {"syslog", 0, NULL, O_SYSLOG, 0, "Log to syslog instead of stderr"},
    {"rlimit-nofile", 0, "N", O_RLIMIT_NOFILE, 0, "Open-file limit [default: the system maximum]"},
    {"print-capabilities", 0, NULL, O_PRINT_CAPABILITIES, 0,
     "Print the vhost-user.json capabilities and exit"},
    {"preserve-noatime", 0, NULL, O_PRESERVE_NOATIME, 0,
     "Keep O_NOATIME from the guest (dropped by default)"},
    {"uid-map", 0, ":ns:host:count:", O_UID_MAP, 0,
     "User namespace uid range when unprivileged (newuidmap)"},
    {"gid-map", 0, ":ns:host:count:", O_GID_MAP, 0,
     "User namespace gid range when unprivileged (newgidmap)"},
    {"translate-uid", 0, "TYPE:A:B:COUNT", O_TRANSLATE_UID, 0,
     "Translate uids between guest and host (repeatable):\n"
     "guest:<guest base>:<host base>:<count>,\n"
     "host:<host base>:<guest base>:<count>,\n"
     "squash-guest:<guest base>:<host id>:<count>,\n"
     "squash-host:<host base>:<guest id>:<count>,\n"
     "forbid-guest:<guest base>:<count> (EPERM),\n"
     "map:<guest base>:<host base>:<count> (both ways)"},
    {"translate-gid", 0, "TYPE:A:B:COUNT", O_TRANSLATE_GID, 0, "The same for gids"},
    {"inode-file-handles", 0, "MODE", O_INODE_FILE_HANDLES, 0,
     "What inodes the guest knows hold open on the host:\n"
     "never (an O_PATH fd each), prefer (a file handle where\n"
     "the file system has them, else an fd), mandatory (only\n"
     "file handles). Handles need CAP_DAC_READ_SEARCH (root).\n"
     "[default: fds up to half the open-file limit, then\n"
     "handles, if the share is a whole file system]"},
    /* The Rust virtiofsd's migration options, so that command lines written for it start. */
    {"migration-mode", 0, "MODE", O_MIGRATION_MODE, 0,
     "How a migration tells the destination where each\n"
     "inode is: find-paths (a path from the share's root)\n"
     "or file-handles (a file handle: needs the same file\n"
     "system and CAP_DAC_READ_SEARCH on the destination)\n"
     "[default: find-paths]"},
    {"migration-on-error", 0, "ACTION", O_MIGRATION_ON_ERROR, 0,
     "An inode a migration cannot find: abort (the migration\n"
     "fails, the source goes on) or guest-error (the guest\n"
     "gets EIO on it) [default: abort]"},
    {"migration-verify-handles", 0, NULL, O_MIGRATION_VERIFY_HANDLES, 0,
     "On the destination, require every inode to be the\n"
     "very one the source had (same device and inode\n"
     "number: the same file system), not only of its type"},
    /* Our SAVE confirms every path it sends anyway (pt_state.c). */
    {"migration-confirm-paths", 0, NULL, O_MIGRATION_CONFIRM_PATHS, OPTION_UNIMPLEMENTED, NULL},
    {"migration-format", 0, "FORMAT", O_MIGRATION_FORMAT, 0,
     "The state stream a migration's source writes: ours\n"
     "(carries locks, any file name) or rust (what the Rust\n"
     "virtiofsd 1.13 reads: no locks, UTF-8 names only).\n"
     "Either is read on the destination [default: ours]"},
    /* Its help is followed by the keys of compat_keys[], below. */
    {NULL, 'o', "OPTIONS", 'o', 0,
     "Legacy comma-separated options (a comma inside a\n"
     "value is written ,,; locks are kept on the host\n"
     "unless no_posix_lock, no_flock):"},
    {NULL, 'd', NULL, 'd', 0, "Debug logging (--log-level=debug)"},
    {NULL, 'f', NULL, 'f', 0, "Foreground (always)"},
    {"help", 'h', NULL, 'h', 0, "Print this help"},
    {"version", 'V', NULL, 'V', 0, "Print the version"},
};

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

/*
 * Legacy -o a,b=c,... as the C virtiofsd and the Rust one's compat layer accept it: each key
 * stands for an option of the table or for the opposite of one (O_COMPAT_*).
 */
static const struct compat_key {
    const char *key;
    int id;
    bool value; /* takes =VALUE */
} compat_keys[] = {
    {"source", O_SHARED_DIR, true},
    {"cache", O_CACHE, true},
    {"xattr", O_XATTR, false},
    {"no_xattr", O_COMPAT_NO_XATTR, false},
    {"xattrmap", O_XATTRMAP, true},
    {"posix_acl", O_POSIX_ACL, false},
    {"no_posix_acl", O_COMPAT_NO_POSIX_ACL, false},
    {"security_label", O_SECURITY_LABEL, false},
    {"no_security_label", O_COMPAT_NO_SECURITY_LABEL, false},
    {"readdirplus", O_COMPAT_READDIRPLUS, false},
    {"no_readdirplus", O_NO_READDIRPLUS, false},
    {"writeback", O_WRITEBACK, false},
    {"no_writeback", O_COMPAT_NO_WRITEBACK, false},
    {"sandbox", O_SANDBOX, true},
    {"modcaps", O_MODCAPS, true},
    {"announce_submounts", O_ANNOUNCE_SUBMOUNTS, false},
    {"allow_direct_io", O_ALLOW_DIRECT_IO, false},
    {"no_allow_direct_io", O_COMPAT_NO_DIRECT_IO, false},
    {"log_level", O_COMPAT_LOG_LEVEL, true},
    {"loglevel", O_COMPAT_LOG_LEVEL, true},
    {"killpriv_v2", O_KILLPRIV_V2, false},
    {"no_killpriv_v2", O_NO_KILLPRIV_V2, false},
    {"flock", O_COMPAT_FLOCK, false},
    {"no_flock", O_COMPAT_NO_FLOCK, false},
    {"posix_lock", O_COMPAT_POSIX_LOCK, false},
    {"no_posix_lock", O_COMPAT_NO_POSIX_LOCK, false},
    {"timeout", O_COMPAT_DEFAULT, true},
    {"readonly", O_READONLY, false},
};

#define N_COMPAT_KEYS (sizeof(compat_keys) / sizeof(compat_keys[0]))

const struct option_spec *options_spec(size_t i)
{
    return i < N_SPECS ? &specs[i] : NULL;
}

const char *options_compat_key(size_t i)
{
    return i < N_COMPAT_KEYS ? compat_keys[i].key : NULL;
}

static const struct option_spec *spec_of(int id)
{
    for (size_t i = 0; i < N_SPECS; i++)
        if (specs[i].id == id)
            return &specs[i];
    return NULL;
}

/* --help: options in two columns, the descriptions starting here (0-based). */
#define HELP_COLUMN        33
#define HELP_WIDTH         80
#define UNIMPLEMENTED_HELP "Accepted for compatibility; not implemented yet"

static void help_indent(FILE *out, int from)
{
    fprintf(out, "%*s", from < HELP_COLUMN ? HELP_COLUMN - from : 0, "");
}

/* The description column, each '\n' of text starting a new line in the column. */
static void help_text(FILE *out, const char *text)
{
    for (const char *line = text; line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        fprintf(out, "%.*s\n", len, line);
        line = nl ? nl + 1 : NULL;
        if (line)
            help_indent(out, 0);
    }
}

/* The -o keys after its help, wrapped in the description column; VALUE keys end in '='. */
static void help_compat_keys(FILE *out)
{
    int col = HELP_WIDTH; /* as if the line were full: the first key starts a new one */
    for (size_t i = 0; i < N_COMPAT_KEYS; i++) {
        const struct compat_key *k = &compat_keys[i];
        const char *sep = i + 1 < N_COMPAT_KEYS ? "," : "";
        int len = (int)(strlen(k->key) + k->value + strlen(sep));
        if (col + 1 + len > HELP_WIDTH) {
            if (i > 0)
                fputc('\n', out);
            help_indent(out, 0);
            col = HELP_COLUMN;
        } else {
            col += fprintf(out, " ");
        }
        col += fprintf(out, "%s%s%s", k->key, k->value ? "=" : "", sep);
    }
    fputc('\n', out);
}

static void help_option(FILE *out, const struct option_spec *s)
{
    int col;
    if (s->short_name && s->long_name)
        col = fprintf(out, "  -%c, --%s", s->short_name, s->long_name);
    else if (s->short_name)
        col = fprintf(out, "  -%c", s->short_name);
    else
        col = fprintf(out, "      --%s", s->long_name);
    if (s->arg)
        col += fprintf(out, " <%s>", s->arg);
    if (col + 1 > HELP_COLUMN) {
        fputc('\n', out);
        col = 0;
    }
    help_indent(out, col);
    help_text(out, s->flags & OPTION_UNIMPLEMENTED ? UNIMPLEMENTED_HELP : s->help);
    if (s->id == 'o')
        help_compat_keys(out);
}

void options_print_help(FILE *out)
{
    fputs("Usage: virtiofsd [OPTIONS] --socket-path PATH --shared-dir DIR\n"
          "\n"
          "vhost-user virtio-fs device back-end: shares DIR with a virtual machine.\n"
          "\n"
          "Options:\n",
          out);
    for (size_t i = 0; i < N_SPECS; i++)
        help_option(out, &specs[i]);
}

static int bad_value(const char *opt, const char *value, const char *accepted)
{
    fprintf(stderr, "virtiofsd: invalid value '%s' for %s; accepted: %s\n", value, opt, accepted);
    return -EINVAL;
}

static int parse_cache(const char *v, enum cache_mode *out)
{
    static const struct {
        const char *name;
        enum cache_mode mode;
    } modes[] = {{"auto", CACHE_AUTO},
                 {"always", CACHE_ALWAYS},
                 {"never", CACHE_NEVER},
                 {"none", CACHE_NEVER},
                 {"metadata", CACHE_METADATA}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(v, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    }
    return bad_value("--cache", v, "auto, always, never, metadata");
}

static int parse_sandbox(const char *v, enum sandbox_mode *out)
{
    if (strcmp(v, "namespace") == 0)
        *out = SANDBOX_NAMESPACE;
    else if (strcmp(v, "chroot") == 0)
        *out = SANDBOX_CHROOT;
    else if (strcmp(v, "none") == 0)
        *out = SANDBOX_NONE;
    else
        return bad_value("--sandbox", v, "namespace, chroot, none");
    return 0;
}

static int parse_on_disconnect(const char *v, enum disconnect_mode *out)
{
    if (strcmp(v, "exit") == 0)
        *out = DISCONNECT_EXIT;
    else if (strcmp(v, "listen") == 0)
        *out = DISCONNECT_LISTEN;
    else
        return bad_value("--on-disconnect", v, "exit, listen");
    return 0;
}

static int parse_seccomp(const char *v, enum seccomp_mode *out)
{
    if (strcmp(v, "kill") == 0)
        *out = SECCOMP_KILL;
    else if (strcmp(v, "log") == 0)
        *out = SECCOMP_LOG;
    else if (strcmp(v, "trap") == 0)
        *out = SECCOMP_TRAP;
    else if (strcmp(v, "none") == 0)
        *out = SECCOMP_NONE;
    else
        return bad_value("--seccomp", v, "kill, log, trap, none");
    return 0;
}

static int parse_inode_file_handles(const char *v, enum inode_fh_mode *out)
{
    if (strcmp(v, "never") == 0)
        *out = FH_NEVER;
    else if (strcmp(v, "prefer") == 0)
        *out = FH_PREFER;
    else if (strcmp(v, "fallback") == 0) { /* accepted by the Rust virtiofsd too */
        log_warn("--inode-file-handles=fallback is deprecated; use prefer");
        *out = FH_PREFER;
    } else if (strcmp(v, "mandatory") == 0)
        *out = FH_MANDATORY;
    else
        return bad_value("--inode-file-handles", v, "never, prefer, mandatory");
    return 0;
}

static int parse_migration_mode(const char *v, enum pt_migration_mode *out)
{
    if (strcmp(v, "find-paths") == 0)
        *out = MIGRATION_FIND_PATHS;
    else if (strcmp(v, "file-handles") == 0)
        *out = MIGRATION_FILE_HANDLES;
    else
        return bad_value("--migration-mode", v, "find-paths, file-handles");
    return 0;
}

static int parse_migration_on_error(const char *v, enum pt_migration_on_error *out)
{
    if (strcmp(v, "abort") == 0)
        *out = MIGRATION_ERROR_ABORT;
    else if (strcmp(v, "guest-error") == 0)
        *out = MIGRATION_ERROR_GUEST_ERROR;
    else
        return bad_value("--migration-on-error", v, "abort, guest-error");
    return 0;
}

static int parse_migration_format(const char *v, enum pt_migration_format *out)
{
    if (strcmp(v, "ours") == 0)
        *out = MIGRATION_FORMAT_OURS;
    else if (strcmp(v, "rust") == 0)
        *out = MIGRATION_FORMAT_RUST;
    else
        return bad_value("--migration-format", v, "ours, rust");
    return 0;
}

static int parse_uint(const char *opt, const char *v, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n > max)
        return bad_value(opt, v, "a non-negative integer in range");
    *out = n;
    return 0;
}

/* An unsigned value up to max; *out is left alone when v is not one. */
static int parse_unsigned(const char *opt, const char *v, unsigned max, unsigned *out)
{
    uint64_t n;
    int ret = parse_uint(opt, v, max, &n);
    if (ret == 0)
        *out = (unsigned)n;
    return ret;
}

/* ":namespace_id:host_id:count:" as the Rust virtiofsd writes it; repeatable. */
static int parse_id_map(const char *opt, const char *v, struct id_map *maps, unsigned *n)
{
    unsigned ns, host, count;
    char end;
    if (sscanf(v, ":%u:%u:%u%c", &ns, &host, &count, &end) != 4 || end != ':' ||
        v[strlen(v) - 1] != ':' || count == 0)
        return bad_value(opt, v, ":namespace_id:host_id:count:");
    if (*n >= OPTIONS_MAX_ID_MAPS) {
        fprintf(stderr, "virtiofsd: at most %d %s ranges\n", OPTIONS_MAX_ID_MAPS, opt);
        return -EINVAL;
    }
    maps[(*n)++] = (struct id_map){ns, host, count};
    return 0;
}

/* The last --xattrmap (or -o xattrmap=) wins; a bad one is a usage error. */
static int set_xattrmap(struct options *o, const char *v)
{
    struct xattrmap *map;
    int ret = xattrmap_parse(v, &map);
    if (ret < 0)
        return ret;
    xattrmap_free((struct xattrmap *)o->pt.xattrmap);
    o->pt.xattrmap = map;
    return 0;
}

static int set_string(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : -ENOMEM;
}

static void warn_unimplemented(const char *name)
{
    log_warn("--%s is accepted but not implemented yet; ignored", name);
}

static int apply(struct options *o, int id, const char *v);

/*
 * The next item of a -o list, cut out of *cursor in place: items are separated by ',' and
 * ",," stands for a literal comma inside an item (QEMU's option syntax, which libvirt uses to
 * escape a comma in -o source=DIR). NULL at the end of the list; empty items are skipped.
 */
static char *next_compat_item(char **cursor)
{
    char *p = *cursor;
    while (p && *p == ',' && p[1] != ',')
        p++;
    if (!p || !*p)
        return NULL;
    char *item = p, *out = p;
    for (; *p; p++) {
        if (*p == ',' && p[1] == ',') {
            *out++ = *p++;
            continue;
        }
        if (*p == ',')
            break;
        *out++ = *p;
    }
    *cursor = *p ? p + 1 : p;
    *out = '\0';
    return item;
}

static int apply_compat(struct options *o, char *list)
{
    for (char *cursor = list, *tok; (tok = next_compat_item(&cursor));) {
        char *eq = strchr(tok, '=');
        if (eq)
            *eq++ = '\0';
        size_t i = 0;
        while (i < N_COMPAT_KEYS && strcmp(compat_keys[i].key, tok) != 0)
            i++;
        if (i == N_COMPAT_KEYS) {
            /* An unknown key may be half of a value we split wrongly (a path with a comma):
             * serving on a guess could export the wrong directory. */
            fprintf(stderr, "virtiofsd: unknown -o option '%s'\n", tok);
            return -EINVAL;
        }
        /* "source=" alone would serve whatever an empty path resolves to. */
        if (compat_keys[i].value != (eq != NULL) || (eq && !*eq)) {
            fprintf(stderr, "virtiofsd: -o %s %s\n", tok,
                    compat_keys[i].value ? "needs a value" : "takes no value");
            return -EINVAL;
        }
        int ret = apply(o, compat_keys[i].id, eq);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int apply(struct options *o, int id, const char *v)
{
    const struct option_spec *spec = spec_of(id);
    if (spec && spec->flags & OPTION_UNIMPLEMENTED) {
        warn_unimplemented(spec->long_name);
        return 0;
    }
    unsigned n;
    int ret;
    switch (id) {
    case O_SHARED_DIR:
        if (!*v)
            return bad_value("--shared-dir", v, "a directory");
        return set_string((char **)&o->pt.shared_dir, v);
    case O_SOCKET_PATH:
    case O_SOCKET:
        if (!*v)
            return bad_value("--socket-path", v, "a path");
        return set_string(&o->socket_path, v);
    case O_FD:
        ret = parse_unsigned("--fd", v, 65535, &n);
        if (ret == 0)
            o->fd = (int)n;
        return ret;
    case O_UPGRADE:
        o->upgrade = true;
        return 0;
    case O_ON_DISCONNECT:
        return parse_on_disconnect(v, &o->on_disconnect);
    case O_SOCKET_GROUP:
        return set_string(&o->socket_group, v);
    case O_TAG: {
        const char *why = vu_tag_invalid(v);
        return why ? bad_value("--tag", v, why) : set_string(&o->tag, v);
    }
    case O_THREAD_POOL_SIZE:
        return parse_unsigned("--thread-pool-size", v, 1024, &o->thread_pool_size);
    case O_NUM_REQUEST_QUEUES:
        ret = parse_unsigned("--num-request-queues", v, VU_MAX_REQUEST_QUEUES, &n);
        if (ret == 0 && n == 0)
            ret = bad_value("--num-request-queues", v, "1 to 16");
        if (ret == 0)
            o->num_request_queues = n;
        return ret;
    case O_PRESERVE_NOATIME:
        o->pt.preserve_noatime = true;
        return 0;
    case O_QUEUE_POLL_US:
        o->queue_poll_us_given = true;
        return parse_unsigned("--queue-poll-us", v, 1000000, &o->queue_poll_us);
    case O_QUEUE_THREADS:
        return parse_unsigned("--queue-threads", v, VU_MAX_REQUEST_QUEUES, &o->queue_threads);
    case O_XATTR:
        o->pt.xattr = true;
        return 0;
    case O_XATTRMAP:
        return set_xattrmap(o, v);
    case O_COMPAT_NO_XATTR:
        o->pt.xattr = false;
        return 0;
    case O_COMPAT_READDIRPLUS:
        o->pt.readdirplus = true;
        return 0;
    case O_COMPAT_NO_WRITEBACK:
        o->pt.writeback = false;
        return 0;
    case O_COMPAT_NO_DIRECT_IO:
        o->pt.allow_direct_io = false;
        return 0;
    case O_COMPAT_FLOCK:
    case O_COMPAT_NO_FLOCK:
        o->pt.flock_locks = id == O_COMPAT_FLOCK;
        return 0;
    case O_COMPAT_POSIX_LOCK:
    case O_COMPAT_NO_POSIX_LOCK:
        o->pt.posix_locks = id == O_COMPAT_POSIX_LOCK;
        return 0;
    case O_POSIX_ACL:
    case O_COMPAT_NO_POSIX_ACL:
        o->pt.posix_acl = id == O_POSIX_ACL;
        return 0;
    case O_SECURITY_LABEL:
    case O_COMPAT_NO_SECURITY_LABEL:
        o->pt.security_label = id == O_SECURITY_LABEL;
        return 0;
    case O_ALLOW_IDMAP:
        o->pt.allow_idmap = true;
        return 0;
    case O_ALLOW_MMAP:
        o->pt.allow_mmap = true;
        return 0;
    case O_COMPAT_DEFAULT:
        return 0;
    case O_READONLY:
        o->pt.readonly = true;
        return 0;
    case O_SANDBOX:
        return parse_sandbox(v, &o->sandbox);
    case O_MAX_RESTARTS:
        return parse_unsigned("--max-restarts", v, OPTIONS_MAX_RESTARTS, &o->max_restarts);
    case O_SECCOMP:
        return parse_seccomp(v, &o->seccomp);
    case O_ANNOUNCE_SUBMOUNTS:
        o->pt.announce_submounts = true;
        return 0;
    case O_NO_ANNOUNCE_SUBMOUNTS:
        o->pt.announce_submounts = false;
        return 0;
    case O_CACHE:
        return parse_cache(v, &o->pt.cache);
    case O_NO_READDIRPLUS:
        o->pt.readdirplus = false;
        return 0;
    case O_WRITEBACK:
        o->pt.writeback = true;
        return 0;
    case O_ALLOW_DIRECT_IO:
        o->pt.allow_direct_io = true;
        return 0;
    case O_PRINT_CAPABILITIES:
        o->print_capabilities = true;
        return 0;
    case O_MODCAPS:
        if (caps_check_modcaps(v) < 0)
            return -EINVAL;
        return set_string(&o->modcaps, v);
    case O_LOG_LEVEL:
        if (log_parse_level(v, &o->log_level) < 0)
            return bad_value("--log-level", v, "error, warn, info, debug, trace, off");
        return 0;
    case O_COMPAT_LOG_LEVEL:
        if (strcmp(v, "err") == 0)
            o->log_level = LOG_LVL_ERROR;
        else if (log_parse_level(v, &o->log_level) < 0)
            return bad_value("-o log_level", v, "err, error, warn, info, debug, trace, off");
        return 0;
    case O_SYSLOG:
        o->syslog = true;
        return 0;
    case O_RLIMIT_NOFILE:
        return parse_uint("--rlimit-nofile", v, UINT64_MAX, &o->rlimit_nofile);
    case O_KILLPRIV_V2:
        o->pt.killpriv_v2 = true;
        return 0;
    case O_NO_KILLPRIV_V2:
        o->pt.killpriv_v2 = false;
        return 0;
    case O_INODE_FILE_HANDLES:
        return parse_inode_file_handles(v, &o->pt.inode_file_handles);
    case O_UID_MAP:
        return parse_id_map("--uid-map", v, o->uid_map, &o->n_uid_map);
    case O_GID_MAP:
        return parse_id_map("--gid-map", v, o->gid_map, &o->n_gid_map);
    case O_TRANSLATE_UID: /* repeatable: each value adds its rules */
        return idmap_parse(&o->pt.uid_map, "--translate-uid", v);
    case O_TRANSLATE_GID:
        return idmap_parse(&o->pt.gid_map, "--translate-gid", v);
    case O_MIGRATION_MODE:
        return parse_migration_mode(v, &o->pt.migration_mode);
    case O_MIGRATION_ON_ERROR:
        return parse_migration_on_error(v, &o->pt.migration_on_error);
    case O_MIGRATION_VERIFY_HANDLES:
        o->pt.migration_verify_handles = true;
        return 0;
    case O_MIGRATION_FORMAT:
        return parse_migration_format(v, &o->pt.migration_format);
    case 'd':
        o->log_level = LOG_LVL_DEBUG;
        return 0;
    case 'f': /* the daemon always stays in the foreground */
        return 0;
    }
    return -EINVAL;
}

static void set_defaults(struct options *o)
{
    *o = (struct options){
        .fd = -1,
        /* Locks are kept on the host, where host processes and other guests see them. */
        .pt = {.cache = CACHE_AUTO,
               .readdirplus = true,
               .posix_locks = true,
               .flock_locks = true,
               /* Not the Rust virtiofsd's "never": see --help. */
               .inode_file_handles = FH_AUTO},
        .num_request_queues = VU_MAX_REQUEST_QUEUES, /* the VMM picks how many it uses */
        .queue_poll_us = 50,
        .sandbox = SANDBOX_NAMESPACE,
        .max_restarts = 10,
        .seccomp = SECCOMP_KILL,
        .log_level = LOG_LVL_INFO,
    };
}

static int check_required(const struct options *o)
{
    if (o->print_capabilities)
        return 0;
    if (!o->pt.shared_dir) {
        fprintf(stderr, "virtiofsd: --shared-dir (or -o source=) is required\n");
        return -EINVAL;
    }
    if (!o->socket_path && o->fd < 0) {
        fprintf(stderr, "virtiofsd: --socket-path or --fd is required\n");
        return -EINVAL;
    }
    /* The old daemon is found through its socket's path. */
    if (o->upgrade && (!o->socket_path || o->fd >= 0)) {
        fprintf(stderr, "virtiofsd: --upgrade needs --socket-path (not --fd)\n");
        return -EINVAL;
    }
    return 0;
}

/* Where sd_listen_fds(3) puts the first socket systemd passes. */
#define SD_LISTEN_FDS_START 3

/*
 * systemd's socket activation: the listening socket is fd 3, LISTEN_FDS says how many were
 * passed and LISTEN_PID that they are ours (not a parent's, whose variables leaked to us).
 * So one unit, with --socket-path, serves with or without its .socket unit; an explicit
 * --fd wins. The variables are removed, as sd_listen_fds(1) does, so that nothing we start
 * takes the sockets for its own.
 */
static int take_socket_activation(struct options *o)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(pid, &end, 10);
    bool ours = errno == 0 && end != pid && *end == '\0' && n == (long)getpid();
    bool one = strcmp(fds, "1") == 0;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!ours || o->fd >= 0)
        return 0;
    if (!one) {
        fprintf(stderr, "virtiofsd: socket activation passed more or fewer than one socket; "
                        "the .socket unit must listen on exactly one\n");
        return -EINVAL;
    }
    o->fd = SD_LISTEN_FDS_START;
    o->socket_activated = true;
    return 0;
}

/* getopt_long's view of the table: its long options and its short-option string. */
struct getopt_tables {
    struct option longs[N_SPECS + 1];
    char shorts[2 * N_SPECS + 1]; /* a letter, and ':' if it takes a value */
};

static void make_getopt_tables(struct getopt_tables *t)
{
    size_t nl = 0, ns = 0;
    for (size_t i = 0; i < N_SPECS; i++) {
        const struct option_spec *s = &specs[i];
        if (s->long_name)
            t->longs[nl++] = (struct option){s->long_name, s->arg ? required_argument : no_argument,
                                             NULL, s->id};
        if (s->short_name) {
            t->shorts[ns++] = s->short_name;
            if (s->arg)
                t->shorts[ns++] = ':';
        }
    }
    t->longs[nl] = (struct option){NULL, 0, NULL, 0};
    t->shorts[ns] = '\0';
}

enum options_result options_parse(int argc, char **argv, struct options *o)
{
    struct getopt_tables tables;
    make_getopt_tables(&tables);
    set_defaults(o);
    log_hold(); /* warnings wait for --log-level and --syslog (log_init) */
    optind = 0; /* 0, not 1: glibc then also forgets where it was inside an earlier argv */
    opterr = 1;
    int c;
    while ((c = getopt_long(argc, argv, tables.shorts, tables.longs, NULL)) != -1) {
        int ret;
        switch (c) {
        case 'h':
            options_print_help(stdout);
            return OPTIONS_EXIT;
        case 'V':
            puts(VFS_VERSION_STRING);
            return OPTIONS_EXIT;
        case 'o': {
            char *copy = strdup(optarg);
            ret = copy ? apply_compat(o, copy) : -ENOMEM;
            free(copy);
            break;
        }
        case '?':
            fprintf(stderr, "Try 'virtiofsd --help' for more information.\n");
            return OPTIONS_ERROR;
        default:
            ret = apply(o, c, optarg);
        }
        if (ret < 0)
            return OPTIONS_ERROR;
    }
    if (optind < argc) {
        fprintf(stderr, "virtiofsd: unexpected argument '%s'\n", argv[optind]);
        return OPTIONS_ERROR;
    }
    /* As in the Rust virtiofsd, a map, ACLs or labels turn xattr support on whatever else was
     * said, and ACLs exclude translated ids (ACL entries name host ids the guest would not
     * see translated). */
    if (o->pt.xattrmap || o->pt.posix_acl || o->pt.security_label)
        o->pt.xattr = true;
    if (o->pt.posix_acl &&
        (!idmap_is_identity(&o->pt.uid_map) || !idmap_is_identity(&o->pt.gid_map))) {
        fprintf(stderr, "virtiofsd: --posix-acl cannot be used with --translate-uid or "
                        "--translate-gid\n");
        return OPTIONS_ERROR;
    }
    if (!o->print_capabilities && take_socket_activation(o) < 0)
        return OPTIONS_ERROR;
    /* Whoever hands over a listening socket manages the daemon's life: libvirt and Kata stop
     * it with their VM, systemd starts it again on the next connection. */
    if (o->on_disconnect == DISCONNECT_DEFAULT)
        o->on_disconnect = o->fd >= 0 ? DISCONNECT_EXIT : DISCONNECT_LISTEN;
    return check_required(o) < 0 ? OPTIONS_ERROR : OPTIONS_OK;
}

void options_free(struct options *o)
{
    free(o->socket_path);
    free((char *)o->pt.shared_dir);
    free(o->socket_group);
    free(o->modcaps);
    free(o->tag);
    idmap_free(&o->pt.uid_map);
    idmap_free(&o->pt.gid_map);
    xattrmap_free((struct xattrmap *)o->pt.xattrmap);
    *o = (struct options){.fd = -1};
}
