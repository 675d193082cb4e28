/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared set-up for the libFuzzer harnesses: a sandbox for the passthrough filesystem (a
 * private, size-limited nodev tmpfs in a mount namespace, and no CAP_MKNOD, so that a fuzzed
 * MKNOD+OPEN+WRITE can never reach a host device and a fuzzed FALLOCATE can never fill a
 * disk), a share populated with a few files, directories and symlinks, a sentinel directory
 * next to it that must stay empty, and fd counting.
 */
#ifndef VFS_FUZZ_COMMON_H
#define VFS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Aborts with a message (a crash libFuzzer records) when cond is false. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/*
 * The passthrough filesystem makes /proc/self/fd the working directory (pt_new), so relative
 * paths given to libFuzzer would resolve there: call this first in LLVMFuzzerInitialize to
 * make the corpus/input paths and the artifact prefix absolute (default: the current dir).
 */
void fuzz_absolute_argv(int *argc, char ***argv);

/* Logging off unless FUZZ_LOG=<level> is set in the environment. */
void fuzz_init_logging(void);

/*
 * Creates <tmp>/vfs-fuzz-XXXXXX (a private tmpfs when possible) with share/ (populated) and
 * sentinel/ (empty) inside, drops CAP_MKNOD, and registers clean-up at exit. Returns the
 * share's path (static storage).
 */
const char *fuzz_make_share(void);
/*
 * The start of every harness's LLVMFuzzerInitialize: absolute argv, logging, the share,
 * this thread registered with liburcu, then a pt_fs over the share (cfg->shared_dir is
 * filled in) and a FUSE session on it. Aborts on failure.
 */
struct pt_config;
struct pt_fs;
struct fuse_session *fuzz_open_session(int *argc, char ***argv, struct pt_config *cfg,
                                       struct pt_fs **fs);
/* Puts the share back as fuzz_make_share() made it (contents, root mode, owner, xattrs). */
void fuzz_restore_share(void);
/* Aborts if anything appeared next to the share (in the sentinel dir or the base dir). */
void fuzz_check_confinement(void);

/* Number of open fds of this process. */
int fuzz_count_fds(void);
/* Lists the open fds on stderr (for a failed fd check). */
void fuzz_list_fds(void);

/* A little-endian cursor over the fuzz input. */
struct fuzz_in {
    const uint8_t *p;
    size_t left;
};
uint8_t fuzz_u8(struct fuzz_in *in);
uint16_t fuzz_u16(struct fuzz_in *in);
uint32_t fuzz_u32(struct fuzz_in *in);
uint64_t fuzz_u64(struct fuzz_in *in);
/* Takes up to n bytes; returns how many were available (*out points at them). */
size_t fuzz_bytes(struct fuzz_in *in, size_t n, const uint8_t **out);

#endif
