/* SPDX-License-Identifier: Apache-2.0 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/file.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
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

/*
 * unlinkat rather than unlink: by the time the daemon exits its seccomp filter is in place,
 * and the allow-list carries only the *at form the passthrough needs anyway.
 */
static int remove_file(const char *path)
{
    return unlinkat(AT_FDCWD, path, 0);
}

/* Reads the pid a lock file names, for the message; 0 when unreadable. */
static long lock_owner(int fd)
{
    char buf[32] = {0};
    if (pread(fd, buf, sizeof(buf) - 1, 0) <= 0)
        return 0;
    return strtol(buf, NULL, 10);
}

int listener_lock(const char *socket_path)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s.pid", socket_path) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        int err = errno;
        log_error("cannot open lock file %s: %s", path, strerror(err));
        return -err;
    }
    /* flock is released by the kernel when the holder dies, so a crash leaves no stale lock. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        if (err == EWOULDBLOCK)
            log_error("another virtiofsd (pid %ld) is serving %s", lock_owner(fd), socket_path);
        else
            log_error("cannot lock %s: %s", path, strerror(err));
        close(fd);
        return err == EWOULDBLOCK ? -EADDRINUSE : -err;
    }
    if (listener_write_pid(fd, getpid()) < 0)
        log_warn("cannot write pid to %s: %m", path);
    return fd;
}

int listener_write_pid(int lock_fd, pid_t pid)
{
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)pid);
    if (ftruncate(lock_fd, 0) < 0 || pwrite(lock_fd, text, (size_t)len, 0) != len)
        return -errno;
    return 0;
}

pid_t listener_read_pid(int lock_fd)
{
    char text[32] = "";
    ssize_t n = pread(lock_fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return -1;
    text[n] = 0;
    char *end;
    long pid = strtol(text, &end, 10);
    return end != text && pid > 0 && pid <= INT32_MAX ? (pid_t)pid : -1;
}

void listener_unlock(int lock_fd, const char *socket_path)
{
    if (lock_fd < 0)
        return;
    char path[4096];
    /* Removed while still locked, so a new daemon cannot lock a file we are about to delete. */
    if (snprintf(path, sizeof(path), "%s.pid", socket_path) < (int)sizeof(path) &&
        remove_file(path) < 0)
        log_warn("cannot remove %s: %m", path);
    close(lock_fd);
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
    if (fd < 0)
        return -errno;
    /*
     * A message is read only once its first bytes arrived, and a real front-end sends the
     * rest at once; one that announces a payload and never sends it must not hold the daemon
     * (and its signal handling) forever. Reads and writes give up after this long.
     */
    struct timeval tv = {.tv_sec = LISTENER_IO_TIMEOUT_S};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

void listener_close(int listen_fd, const char *path)
{
    if (listen_fd >= 0)
        close(listen_fd);
    if (path && remove_file(path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %m", path);
}
