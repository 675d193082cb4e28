/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cpu_relax(): the body of a spin-wait loop. It tells the CPU that the thread is only waiting,
 * so that a sibling hyperthread gets the core's resources and the loop's exit does not pay
 * for a mis-speculated memory order. x86 and arm64 have an instruction for it; on other
 * hosts a compiler barrier at least keeps the loop re-reading memory.
 */
#ifndef VFS_CPU_RELAX_H
#define VFS_CPU_RELAX_H

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#endif
