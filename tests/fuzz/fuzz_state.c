/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: the migration state stream's reader, checker and loader
 * (fuse_session_state_load, src/session_state.c and src/pt_state.c) over a real passthrough
 * filesystem on the temporary share.
 *
 * The input is the stream itself (ours is documented at the top of session_state.c, the Rust
 * virtiofsd's, which the loader tells apart by its first byte, at the top of state_rust.c); it
 * reaches the loader through a memfd, as a VMM's pipe would deliver it. The input's length
 * picks the daemon's migration options for the run: bit 0 --migration-on-error=guest-error
 * (else abort), bit 1 --migration-verify-handles.
 *
 * Checked after every input: LOAD returned 0 or a negative errno; a failed one left the session
 * fresh (not initialized, the root its only inode); nothing appeared next to the share (a LOAD
 * creates nothing); and, after the session is reset, the fd count
 * is back to where it started (every 64th input, or each with FUZZ_STRICT_FDS=1).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "fuzz_common.h"
#include "passthrough.h"
#include "pt_core.h"
#include "session_state.h"

#define FD_CHECK_EVERY 64

static struct pt_fs *fs;
static struct fuse_session *se;
static int memfd = -1;
static int base_fds;
static bool strict_fds;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct pt_config cfg = {
        .cache = CACHE_AUTO,
        .xattr = true,
        .readdirplus = true,
        .writeback = true,
        .posix_locks = true,
        .flock_locks = true,
    };

    se = fuzz_open_session(argc, argv, &cfg, &fs);
    memfd = memfd_create("fuzz-state", MFD_CLOEXEC);
    FUZZ_CHECK(memfd >= 0, "memfd_create: %s", strerror(errno));
    strict_fds = getenv("FUZZ_STRICT_FDS") != NULL;
    base_fds = fuzz_count_fds();
    return 0;
}

static void feed(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(ftruncate(memfd, 0) == 0, "ftruncate: %s", strerror(errno));
    FUZZ_CHECK(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size, "pwrite: %s",
               strerror(errno));
    FUZZ_CHECK(lseek(memfd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long runs;
    int ret;

    fs->cfg.migration_on_error = (size & 1) ? MIGRATION_ERROR_GUEST_ERROR : MIGRATION_ERROR_ABORT;
    fs->cfg.migration_verify_handles = size & 2;
    feed(data, size);
    ret = fuse_session_state_load(se, memfd);
    FUZZ_CHECK(ret <= 0 && ret >= -4095, "load returned %d", ret);
    if (ret < 0) {
        FUZZ_CHECK(!fuse_session_initialized(se), "a failed LOAD left the session initialized");
        FUZZ_CHECK(itab_count(fs->inodes) == 1, "a failed LOAD left %lu inodes",
                   itab_count(fs->inodes));
    }
    fuse_session_reset(se);
    fuzz_check_confinement();
    if (strict_fds || ++runs % FD_CHECK_EVERY == 0) {
        int n = fuzz_count_fds();

        if (n != base_fds)
            fuzz_list_fds();
        FUZZ_CHECK(n == base_fds, "%d fds open after the input, %d before", n, base_fds);
    }
    return 0;
}
