/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lock layer's state, as pt_lifetime.c (and only it) creates, resets and frees it. The
 * lock ops themselves (pt_getlk, pt_setlk, pt_lock_interrupt) are in passthrough.h; what the
 * lock layer hears of other ops reaches it through the core's struct pt_close_hooks.
 */
#ifndef VFS_PT_LOCK_H
#define VFS_PT_LOCK_H

#include "pt_core.h"

/*
 * Process-wide, once before the first pt_locks_new: the handler of the signal that wakes a
 * waiting lock request (so that fcntl/flock return EINTR). 0 or -errno.
 */
int pt_locks_process_setup(void);

int pt_locks_new(struct pt_locks **out);
void pt_locks_free(struct pt_locks *l);
/* Ends every wait and drops every lock. */
void pt_locks_reset(struct pt_locks *l);

/* The lock layer's hooks, for pt_fs.hooks. */
extern const struct pt_close_hooks pt_lock_hooks;

#endif
