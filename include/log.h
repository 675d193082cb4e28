/* SPDX-License-Identifier: Apache-2.0 */
/* Levelled logging to stderr or syslog; safe from any thread. */
#ifndef VFS_LOG_H
#define VFS_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LVL_OFF = 0,
    LOG_LVL_ERROR,
    LOG_LVL_WARN,
    LOG_LVL_INFO,
    LOG_LVL_DEBUG,
    LOG_LVL_TRACE,
};

/* Parses "error", "warn", "info", "debug", "trace", "off"; returns -EINVAL otherwise. */
int log_parse_level(const char *name, enum log_level *out);
/*
 * Holds the messages logged from now on until log_init(), which then writes those its level
 * lets through to where it logs: the command line's warnings go where --log-level and
 * --syslog say, in the log's format. Start-up only (not thread-safe).
 */
void log_hold(void);
void log_init(enum log_level level, bool use_syslog);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
#define log_trace(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_TRACE))                                                            \
            log_msg(LOG_LVL_TRACE, __VA_ARGS__);                                                   \
    } while (0)

#endif
