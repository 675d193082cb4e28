/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory given back while the daemon is idle: after start-up and when a session ends (before
 * the serving process waits for the next front-end), by a queue worker that had nothing to do
 * for a while (a guest connected but idle), and in the namespace sandbox's monitor once it
 * only waits. Never on a request's path: each call costs a walk of the heap and a
 * few system calls.
 */
#ifndef VFS_IDLE_MEM_H
#define VFS_IDLE_MEM_H

/*
 * Returns the free pages of every malloc arena to the kernel (malloc_trim), and drops this
 * process's page-table entries for the read-only parts of the program and its libraries
 * (their code and constants): pages of files every daemon on the host maps, which stay in
 * the page cache and come back with a minor fault when next used. What idle code touches
 * (poll, the signal path) comes back at once; the rest when the next guest connects.
 * Call it last before waiting: whatever runs after it maps its pages again. A debugger's
 * breakpoints are private copies of code pages and go too (it sets them again at its next
 * stop).
 */
void idle_mem_release(void);

#endif
