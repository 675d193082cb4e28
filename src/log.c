/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static enum log_level max_level = LOG_LVL_INFO;
static bool to_syslog;

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

void log_init(enum log_level level, bool use_syslog)
{
    max_level = level;
    to_syslog = use_syslog;
    if (use_syslog)
        openlog("virtiofsd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (to_syslog) {
        syslog(syslog_priority(level), "%s", msg);
    } else {
        /* One fprintf per line: stdio locks the stream, so lines from threads never interleave. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "[%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s virtiofsd] %s\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, level_names[level], msg);
    }
    errno = saved_errno;
}
