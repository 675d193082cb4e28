/* SPDX-License-Identifier: Apache-2.0 */
/* The FUSE session's state for DEVICE_STATE (see include/session_state.h). */
#include "session_state.h"

#include <errno.h>

#include "fuse_server.h"
#include "log.h"

int fuse_session_state_save(struct fuse_session *se, int fd)
{
    (void)se, (void)fd;
    log_error("saving the session state is not implemented yet");
    return -ENOTSUP;
}

int fuse_session_state_load(struct fuse_session *se, int fd)
{
    (void)se, (void)fd;
    log_error("loading a session state is not implemented yet");
    return -ENOTSUP;
}
