/* SPDX-License-Identifier: Apache-2.0 */
/* What bench.c shares with the scale mode (scale.c). */
#ifndef VFS_BENCH_H
#define VFS_BENCH_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frontend.h"

/* A daemon the bench started (pid: the process we started, CMD exec'd in place of the shell),
 * with its temp dir, share and socket. */
struct daemon_proc {
    pid_t pid;
    char *dir, *share, *sock;
};

/* Starts CMD on share, or (share NULL) on a share of its own with the workloads' files. */
int start_daemon(const char *cmd, struct daemon_proc *d, const char *share);
void stop_daemon(struct daemon_proc *d);
double now_s(void);
/* A FUSE request on queue 1 (name, when given, follows the argument); returns the FUSE error. */
int fuse_simple(struct fe *fe, uint32_t op, uint64_t node, const void *a, size_t alen,
                const char *name, size_t out, struct fe_reply *r);
/* "a,b,c" as an array of strings ("" gives none). */
GPtrArray *split_list(const char *s);

/* The scale mode: see scale.c. */
void run_scale(GPtrArray *daemons, const char *sizes, const char *shapes, unsigned runs);

#endif
