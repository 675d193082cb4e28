/* SPDX-License-Identifier: Apache-2.0 */
/* File handles and mount fds; see include/file_handle.h. */
#include "file_handle.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "creds.h"

int fh_encode(int fd, struct fh_buf *out)
{
    out->u.h.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fd, "", &out->u.h, &out->mnt_id, AT_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

/* The struct file_handle fh holds. */
static struct file_handle *handle_of(const struct pt_fhandle *fh)
{
    return (struct file_handle *)(uintptr_t)fh->h;
}

bool fh_same(const struct pt_fhandle *fh, const struct fh_buf *b)
{
    const struct file_handle *h = handle_of(fh);

    return fh->mount->mnt_id == b->mnt_id && h->handle_type == b->u.h.handle_type &&
           h->handle_bytes == b->u.h.handle_bytes &&
           memcmp(h->f_handle, b->u.h.f_handle, b->u.h.handle_bytes) == 0;
}

void fh_mounts_init(struct fh_mounts *t)
{
    pthread_mutex_init(&t->lock, NULL);
    t->list = NULL;
}

void fh_mounts_destroy(struct fh_mounts *t)
{
    struct fh_mount *m, *next;

    for (m = t->list; m; m = next) {
        next = m->next;
        if (m->fd >= 0)
            close(m->fd);
        free(m);
    }
    t->list = NULL;
    pthread_mutex_destroy(&t->lock);
}

static struct fh_mount *find(struct fh_mounts *t, int mnt_id)
{
    for (struct fh_mount *m = t->list; m; m = m->next)
        if (m->mnt_id == mnt_id)
            return m;
    return NULL;
}

static struct fh_mount *add(struct fh_mounts *t, int mnt_id, int fd, int err)
{
    struct fh_mount *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    *m = (struct fh_mount){.mnt_id = mnt_id, .fd = fd, .err = err, .table = t, .next = t->list};
    t->list = m;
    return m;
}

/*
 * The mount fd from src_fd, checked by opening b with it: the fd, or -errno.
 *
 * Opened with the daemon's own credentials (the caller may not be allowed to read the
 * directory): the fd only serves open_by_handle_at and never reaches the guest, and src_fd is
 * a directory or regular file in the share (pt_core.c's mount_source picks nothing else;
 * checked again here), so no device node or FIFO is ever opened this way.
 */
static int open_mount_fd(const struct fh_buf *b, int src_fd, int proc_self_fd)
{
    struct stat st;
    if (fstat(src_fd, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return -EINVAL;
    char name[32];
    int ret, probe, fd = -1;

    snprintf(name, sizeof(name), "%d", src_fd);
    {
        CREDS_AS_DAEMON(scope, &ret);
        /* Following the magic link lands on the inode itself; O_NONBLOCK: never wait on a
         * file. */
        if (ret == 0) {
            fd = openat(proc_self_fd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
            ret = fd < 0 ? -errno : 0;
        }
        if (ret == 0) {
            probe = open_by_handle_at(fd, (struct file_handle *)&b->u.h, O_PATH | O_CLOEXEC);
            ret = probe < 0 ? -errno : 0;
            if (probe >= 0)
                close(probe);
        }
    }
    if (ret < 0 && fd >= 0)
        close(fd);
    return ret < 0 ? ret : fd;
}

int fh_mount_get(struct fh_mounts *t, const struct fh_buf *b, int src_fd, int proc_self_fd,
                 struct fh_mount **out, bool *created)
{
    struct fh_mount *m;
    int ret = 0, fd;

    *created = false;
    pthread_mutex_lock(&t->lock);
    m = find(t, b->mnt_id);
    if (!m && src_fd < 0) {
        ret = -EIO; /* nothing to open the mount with yet; a later inode may have it */
    } else if (!m) {
        /* Opened under the lock: once per mount, and no second fd for it can appear. */
        fd = open_mount_fd(b, src_fd, proc_self_fd);
        m = add(t, b->mnt_id, fd < 0 ? -1 : fd, fd < 0 ? -fd : 0);
        if (!m && fd >= 0)
            close(fd);
        ret = m ? 0 : -ENOMEM;
        *created = m != NULL;
    }
    if (ret == 0 && m->fd < 0)
        ret = -m->err;
    if (ret == 0) {
        m->refs++;
        *out = m;
    }
    pthread_mutex_unlock(&t->lock);
    return ret;
}

bool fh_mount_fail(struct fh_mounts *t, int mnt_id, int err)
{
    bool added = false;

    pthread_mutex_lock(&t->lock);
    if (!find(t, mnt_id))
        added = add(t, mnt_id, -1, err) != NULL;
    pthread_mutex_unlock(&t->lock);
    return added;
}

void fh_mount_put(struct fh_mount *m)
{
    struct fh_mounts *t = m->table;

    pthread_mutex_lock(&t->lock);
    if (--m->refs == 0) {
        for (struct fh_mount **p = &t->list; *p; p = &(*p)->next) {
            if (*p == m) {
                *p = m->next;
                break;
            }
        }
        close(m->fd);
        free(m);
    }
    pthread_mutex_unlock(&t->lock);
}

struct pt_fhandle *fh_new(struct fh_mount *m, const struct fh_buf *b)
{
    size_t bytes = sizeof(struct file_handle) + b->u.h.handle_bytes;
    struct pt_fhandle *fh = malloc(sizeof(*fh) + bytes);

    if (!fh)
        return NULL;
    fh->mount = m;
    memcpy(fh->h, &b->u.h, bytes);
    return fh;
}

void fh_free(struct pt_fhandle *fh)
{
    if (!fh)
        return;
    fh_mount_put(fh->mount);
    free(fh);
}

int fh_open(const struct pt_fhandle *fh, int flags)
{
    /*
     * With the daemon's own credentials: open_by_handle_at needs CAP_DAC_READ_SEARCH. The
     * only caller (pt_inode_fd_open) asks for O_PATH, which opens no file of any type (no
     * device driver or FIFO is reached), and the handle is one the daemon encoded itself for
     * an inode the guest looked up in the share.
     */
    int ret, fd = -1;

    {
        CREDS_AS_DAEMON(scope, &ret);
        if (ret == 0) {
            fd = open_by_handle_at(fh->mount->fd, handle_of(fh), flags | O_CLOEXEC);
            ret = fd < 0 ? -errno : 0;
        }
    }
    if (ret < 0 && fd >= 0)
        close(fd); /* the caller's ids could not be restored: the request stops here */
    return ret < 0 ? ret : fd;
}
