/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the session journal lands: journaling is off, a restart means a fresh
 * session. */
#include "session_journal.h"

#include <errno.h>

int fuse_session_journal_attach(struct fuse_session *se, void *area, size_t len,
                                const struct sj_inflight *inflight)
{
    (void)se, (void)area, (void)len, (void)inflight;
    return -ENOSYS;
}

void fuse_session_journal_detach(struct fuse_session *se)
{
    (void)se;
}
