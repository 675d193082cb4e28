/* SPDX-License-Identifier: Apache-2.0 */
#include "listener.h"

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int set_group(const char *path, const char *group)
{
    struct group *gr = getgrnam(group);
    if (!gr) {
        log_error("socket group '%s' does not exist", group);
        return -EINVAL;
    }
    if (chown(path, (uid_t)-1, gr->gr_gid) < 0 || chmod(path, 0660) < 0) {
        int err = errno;
        log_error("cannot give %s to group %s: %s", path, group, strerror(err));
        return -err;
    }
    return 0;
}

int listener_open(const char *path, const char *group)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        log_error("socket path %s is longer than %zu bytes", path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        log_error("socket: %s", strerror(err));
        return -err;
    }
    /* A socket file left behind by a crashed daemon would make bind fail. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) < 0)
        log_warn("cannot remove stale socket %s: %m", path);

    int ret = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
        ret = -errno;
        log_error("cannot listen on %s: %s", path, strerror(-ret));
    } else if (group) {
        ret = set_group(path, group);
    }
    if (ret < 0) {
        close(fd);
        return ret;
    }
    return fd;
}

int listener_accept(int listen_fd)
{
    int fd;
    do {
        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

void listener_close(int listen_fd, const char *path)
{
    if (listen_fd >= 0)
        close(listen_fd);
    if (path && unlink(path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %m", path);
}
