/* SPDX-License-Identifier: Apache-2.0 */
/* The seccomp allow-list (named so as not to shadow libseccomp's <seccomp.h>). */
#ifndef VFS_SECCOMP_FILTER_H
#define VFS_SECCOMP_FILTER_H

#include "options.h"

/*
 * Installs the filter for this process and all its future threads (call it before worker
 * threads start, or they are covered too with TSYNC). Any other syscall kills the process
 * (kill), is logged by the kernel (log), or raises SIGSYS with a message naming the syscall
 * (trap). SECCOMP_NONE installs nothing. Negative errno (logged) on failure.
 */
int seccomp_install(enum seccomp_mode mode);

/* The allow-list, NULL-terminated, for tests and documentation. */
const char *const *seccomp_allowed_syscalls(void);

#endif
