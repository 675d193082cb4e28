/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_INFO;
/*
 * --syslog: a datagram socket connected to /dev/log once, at start-up. glibc's syslog() would
 * call socket() and connect() again whenever the syslog daemon went away, which neither the
 * seccomp allow-list nor the sandbox's root (no /dev/log in it) allows.
 */
static int syslog_fd = -1;
static pid_t syslog_pid;

/*
 * Messages logged between log_hold() and log_init(): the command line's warnings, which
 * options_parse() finds before the level and the destination they should go to (--log-level,
 * --syslog, later on the same command line) are known. Start-up is single-threaded then.
 * Beyond LOG_HELD_MAX they are written at once (at the level known so far), rather than lost.
 */
#define LOG_HELD_MAX 16
static struct held_msg {
    enum log_level level;
    char text[1024]; /* as long as any message */
} held[LOG_HELD_MAX];
static unsigned n_held;
static bool holding;

static const char *const level_names[] = {
    [LOG_LVL_OFF] = "off",   [LOG_LVL_ERROR] = "error", [LOG_LVL_WARN] = "warn",
    [LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug", [LOG_LVL_TRACE] = "trace",
};

int log_parse_level(const char *name, enum log_level *out)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int syslog_connect(void)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int ret = -errno;
        close(fd);
        return ret;
    }
    return fd;
}

void log_hold(void)
{
    holding = true;
}

static void emit(enum log_level level, const char *msg);

void log_init(enum log_level level, bool use_syslog)
{
    max_level = level;
    holding = false;
    if (use_syslog) {
        syslog_pid = getpid();
        syslog_fd = syslog_connect();
        /* Say where the messages go instead. (The Rust virtiofsd means to do the same, but
         * its syslog crate first falls back to UDP on localhost, and the messages are lost.) */
        if (syslog_fd < 0)
            log_warn("--syslog: cannot reach /dev/log (%s); logging to stderr",
                     strerror(-syslog_fd));
    }
    for (unsigned i = 0; i < n_held; i++)
        if (log_enabled(held[i].level))
            emit(held[i].level, held[i].text);
    n_held = 0;
}

bool log_enabled(enum log_level level)
{
    return level != LOG_LVL_OFF && level <= max_level;
}

static int syslog_priority(enum log_level level)
{
    switch (level) {
    case LOG_LVL_ERROR:
        return LOG_ERR;
    case LOG_LVL_WARN:
        return LOG_WARNING;
    case LOG_LVL_INFO:
        return LOG_INFO;
    default:
        return LOG_DEBUG;
    }
}

/* One RFC 3164 datagram; false if it could not be sent (the caller prints it instead). */
static bool send_syslog(enum log_level level, const char *msg)
{
    char buf[1200], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
    int n = snprintf(buf, sizeof(buf), "<%d>%s virtiofsd[%d]: %s",
                     LOG_DAEMON | syslog_priority(level), stamp, (int)syslog_pid, msg);
    if (n < 0)
        return false;
    size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    /* Never block a worker on a slow syslog daemon: a message it cannot take now is lost. */
    return send(syslog_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0 || errno == EAGAIN;
}

/* A held message is checked against the level log_init() sets, not today's. */
static bool hold(enum log_level level, const char *msg)
{
    if (!holding || n_held == LOG_HELD_MAX)
        return false;
    held[n_held].level = level;
    snprintf(held[n_held].text, sizeof(held[n_held].text), "%s", msg);
    n_held++;
    return true;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level == LOG_LVL_OFF || (!holding && !log_enabled(level)))
        return;
    int saved_errno = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!hold(level, msg) && log_enabled(level))
        emit(level, msg);
    errno = saved_errno;
}

static void emit(enum log_level level, const char *msg)
{
    if (syslog_fd < 0 || !send_syslog(level, msg)) {
        /* One fprintf per line: stdio locks the stream, so lines from threads never interleave. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "[%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s virtiofsd] %s\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, level_names[level], msg);
    }
}
