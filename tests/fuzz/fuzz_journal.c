/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: the session journal's attach (fuse_session_journal_attach,
 * src/session_journal.c: the header, the replay of the active half, the checks, the install
 * into a real passthrough filesystem on the temporary share, the snapshot it writes).
 *
 * The input is the area's first bytes (the header, then half 0 at 4096: its 64-byte header and
 * records; the format is documented at the top of session_journal.c); the rest of the 256 KiB
 * area is zeros. Unless bit 0 of the last input byte is set, the header's magic, layout fields
 * and share identity are patched right, so that most inputs reach the records. Records whose tag
 * counter is odd are "in flight".
 *
 * Checked after every input: attach returned 0 or 1 (never a negative errno for a valid area);
 * with 0 the session is fresh (not initialized, the root its only inode); detach and reset
 * leave the fd count where it started (every 64th input, or each with FUZZ_STRICT_FDS=1).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "fuzz_common.h"
#include "passthrough.h"
#include "pt_core.h"
#include "pt_state.h"
#include "session_journal.h"

#define AREA_LEN       (256u * 1024)
#define FD_CHECK_EVERY 64

static struct pt_fs *fs;
static struct fuse_session *se;
static uint8_t *area;
static int base_fds;
static bool strict_fds;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool odd_in_flight(void *opaque, const struct fuse_req_tag *tag)
{
    return tag->counter & 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct pt_config cfg = {.cache = CACHE_AUTO, .readdirplus = true};

    se = fuzz_open_session(argc, argv, &cfg, &fs);
    area = mmap(NULL, AREA_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(area != MAP_FAILED, "mmap: %s", strerror(errno));
    strict_fds = getenv("FUZZ_STRICT_FDS") != NULL;
    base_fds = fuzz_count_fds();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long runs;
    const struct sj_inflight cb = {.in_flight = odd_in_flight};
    int ret;

    if (size > AREA_LEN)
        size = AREA_LEN;
    memset(area, 0, AREA_LEN);
    memcpy(area, data, size);
    if (size >= 48 && !(data[size - 1] & 1)) {
        uint32_t v = 1, hs = 4096;
        uint64_t len = AREA_LEN, half = ((AREA_LEN - 4096) / 2) & ~7u, dev, ino;

        memcpy(area, "VFSJRNL\n", 8);
        memcpy(area + 8, &v, 4);
        memcpy(area + 12, &hs, 4);
        memcpy(area + 16, &len, 8);
        memcpy(area + 24, &half, 8);
        pt_state_share_id(fs, &dev, &ino);
        memcpy(area + 32, &dev, 8);
        memcpy(area + 40, &ino, 8);
    }
    ret = fuse_session_journal_attach(se, area, AREA_LEN, &cb);
    FUZZ_CHECK(ret == 0 || ret == 1, "attach returned %d", ret);
    if (ret == 0) {
        FUZZ_CHECK(!fuse_session_initialized(se), "a refused journal left the session initialized");
        FUZZ_CHECK(itab_count(fs->inodes) == 1, "a refused journal left %lu inodes",
                   itab_count(fs->inodes));
    }
    fuse_session_journal_detach(se);
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
