/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The passthrough filesystem: directory handles and READDIR(PLUS).
 *
 * A directory handle owns an fd opened on the directory and reads it with getdents64 into a
 * buffer of the READDIR's own. Offsets given to the guest are the host's d_off cookies, so a
 * READDIR that continues where the last one stopped reads on from the fd's position (or seeks
 * back to the first record the last one read but did not send), and any other offset is an
 * lseek to that cookie (what seekdir does). The handle's mutex serialises READDIRs of one
 * handle; different handles never contend.
 */
#include "pt_core.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The kernel's getdents64 record (glibc's struct dirent64 has a fixed-size name). */
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int pt_opendir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
               const struct fuse_open_in *in, struct fuse_open_out *out)
{
    struct pt_inode *inode;
    PT_FDREF(r);
    uint64_t fh;
    int fd, ret = pt_begin(fs, ctx, nodeid, PT_READS, &inode);

    if (ret < 0)
        return ret;
    if (!S_ISDIR(inode->type))
        return -ENOTDIR;
    ret = pt_handle_room(fs);
    if (ret < 0)
        return ret;
    fd = pt_inode_fd(fs, inode, &r);
    if (fd >= 0)
        fd = pt_reopen(fs, r.fd, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return fd;
    ret = htab_add(fs->handles, nodeid, fd, true, &fh);
    if (ret < 0)
        return ret;
    memset(out, 0, sizeof(*out));
    out->fh = fh;
    out->open_flags = pt_fopen_flags(fs, true, in->flags);
    return 0;
}

static int begin_dirhandle(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid, uint64_t fh,
                           struct pt_handle **h)
{
    return pt_begin_handle(fs, ctx, nodeid, fh, true, PT_READS, h);
}

int pt_releasedir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                  const struct fuse_release_in *in)
{
    struct pt_handle *h;
    /* As pt_release: no permission needed, and it must not fail for the caller's ids. */
    int ret = begin_dirhandle(fs, NULL, nodeid, in->fh, &h);

    if (ret < 0)
        return ret;
    pt_note_release(fs, in->fh); /* lock owners that came through it (pt_lock.c) */
    return htab_remove(fs->handles, in->fh, nodeid);
}

int pt_fsyncdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                const struct fuse_fsync_in *in)
{
    return pt_fsync_handle(fs, ctx, nodeid, in);
}

/*
 * One READDIR's getdents64 records: a buffer of its own, freed when it returns. Records it
 * read but did not send are read again by the next READDIR (the stream's fd is then past
 * them: pt_dirstream.synced).
 */
struct dir_batch {
    char *buf;
    size_t size; /* of buf */
    size_t len;  /* bytes of records in buf */
    size_t off;  /* the next unconsumed record */
};

/*
 * The buffer for a reply of reply_size bytes: a getdents64 record is never larger than the
 * fuse_dirent of the same name, so reply_size bytes of them fill a READDIR reply; a
 * READDIRPLUS record is some 130 bytes larger, about three times a record of a typical name,
 * so a third of it fills a reply about as well (fewer means one more getdents64, more means
 * records read twice). At least room for one record of the longest name.
 */
static size_t batch_size(size_t reply_size, bool plus)
{
    size_t size = plus ? reply_size / 3 : reply_size;
    return size < 512 ? 512 : size > PT_DIRBUF_SIZE ? PT_DIRBUF_SIZE : size;
}

/* Positions the stream at cookie off unless it is already there. */
static int dir_seek(struct pt_handle *h, uint64_t off)
{
    struct pt_dirstream *d = h->dir;

    if ((off_t)off == d->pos && d->synced)
        return 0;
    if (off > (uint64_t)INT64_MAX || lseek(h->fd, (off_t)off, SEEK_SET) < 0)
        return off > (uint64_t)INT64_MAX ? -EINVAL : -errno;
    d->pos = (off_t)off;
    d->synced = true;
    return 0;
}

/* The next record without consuming it: 1, 0 at the end, or -errno. */
static int dir_peek(struct pt_handle *h, struct dir_batch *b, const struct linux_dirent64 **out)
{
    const struct linux_dirent64 *e;

    if (b->off >= b->len) {
        ssize_t n = getdents64(h->fd, b->buf, b->size);

        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        b->len = (size_t)n;
        b->off = 0;
    }
    e = (const struct linux_dirent64 *)(b->buf + b->off);
    /* The kernel never returns a malformed record, but a bad one must not loop forever. */
    if (e->d_reclen <= offsetof(struct linux_dirent64, d_name) || e->d_reclen > b->len - b->off)
        return -EIO;
    *out = e;
    return 1;
}

static void dir_consume(struct pt_handle *h, struct dir_batch *b, const struct linux_dirent64 *e)
{
    b->off += e->d_reclen;
    h->dir->pos = e->d_off;
}

static size_t name_len(const struct linux_dirent64 *e)
{
    return strnlen(e->d_name, e->d_reclen - offsetof(struct linux_dirent64, d_name));
}

/* Writes one fuse_dirent at p (which need not be aligned) and zeroes its padding. */
static void put_dirent(char *p, const struct linux_dirent64 *e, size_t namelen, uint64_t ino)
{
    struct fuse_dirent d = {
        .ino = ino,
        .off = (uint64_t)e->d_off,
        .namelen = (uint32_t)namelen,
        .type = e->d_type,
    };
    size_t size = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);

    memcpy(p, &d, FUSE_NAME_OFFSET);
    memcpy(p + FUSE_NAME_OFFSET, e->d_name, namelen);
    memset(p + FUSE_NAME_OFFSET + namelen, 0, size - FUSE_NAME_OFFSET - namelen);
}

/* A READDIRPLUS entry without a lookup: nodeid 0 makes the kernel instantiate nothing. */
static void empty_entry(const struct linux_dirent64 *e, struct fuse_entry_out *out)
{
    memset(out, 0, sizeof(*out));
    out->attr.ino = e->d_ino;
    out->attr.mode = DTTOIF(e->d_type);
}

/*
 * The entry of one READDIRPLUS record: a lookup reference, except for "." and ".." (the
 * guest must not get references to the parent or itself from a listing) and entries that
 * cannot be looked up (e.g. no search permission): those are listed with an empty entry, and
 * a later LOOKUP reports the error, as ls -l on a host directory would. -ENOENT: the entry
 * went away since getdents64 saw it.
 */
static int plus_entry(struct pt_fs *fs, struct pt_inode *dir, int dir_fd,
                      const struct linux_dirent64 *e, size_t namelen, struct fuse_entry_out *out)
{
    int ret;

    if (pt_dots(e->d_name, namelen)) {
        empty_entry(e, out);
        return 0;
    }
    ret = pt_do_lookup_at(fs, dir, dir_fd, e->d_name, out);
    if (ret < 0 && ret != -ENOENT) {
        empty_entry(e, out);
        ret = 0;
    }
    return ret;
}

/*
 * Emits the record for e at p if it fits in room; returns its size, 0 if it does not fit, or
 * -errno.
 */
static ssize_t emit(struct pt_fs *fs, struct pt_inode *dir, int dir_fd,
                    const struct linux_dirent64 *e, bool plus, char *p, size_t room)
{
    size_t namelen = name_len(e);
    size_t size = plus ? FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + namelen)
                       : FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
    struct fuse_entry_out entry;
    int ret;

    /* Check the size first: a lookup reference taken for a record not sent would leak. */
    if (size > room)
        return 0;
    if (!plus) {
        put_dirent(p, e, namelen, e->d_ino);
        return (ssize_t)size;
    }
    ret = plus_entry(fs, dir, dir_fd, e, namelen, &entry);
    if (ret < 0)
        return ret;
    memcpy(p, &entry, sizeof(entry));
    put_dirent(p + offsetof(struct fuse_direntplus, dirent), e, namelen, entry.attr.ino);
    return (ssize_t)size;
}

static ssize_t fill(struct pt_fs *fs, struct pt_inode *dir, struct pt_handle *h, bool plus,
                    char *buf, size_t size)
{
    const struct linux_dirent64 *e = NULL;
    struct dir_batch b = {.size = batch_size(size, plus)};
    size_t used = 0;
    ssize_t n;
    int ret;

    b.buf = malloc(b.size);
    if (!b.buf)
        return -ENOMEM;
    while ((ret = dir_peek(h, &b, &e)) > 0) {
        if (pt_name_hidden_in(fs, dir, e->d_name, name_len(e))) { /* the daemon's own */
            dir_consume(h, &b, e);
            continue;
        }
        /* Names are looked up in the handle's own open directory: no inode fd needed. */
        n = emit(fs, dir, h->fd, e, plus, buf + used, size - used);
        if (n == -ENOENT) { /* removed since getdents64 saw it */
            dir_consume(h, &b, e);
            continue;
        }
        if (n <= 0) {
            ret = (int)n;
            break;
        }
        dir_consume(h, &b, e);
        used += (size_t)n;
    }
    if (b.off < b.len) /* records left unsent: the fd is past them */
        h->dir->synced = false;
    free(b.buf);
    /* An error after some records: return those; the next READDIR reports it. */
    return (ret < 0 && used == 0) ? ret : (ssize_t)used;
}

ssize_t pt_readdir(struct pt_fs *fs, const struct pt_ctx *ctx, uint64_t nodeid,
                   const struct fuse_read_in *in, bool plus, void *buf)
{
    struct pt_inode *dir;
    struct pt_handle *h = NULL;
    ssize_t ret = pt_begin(fs, ctx, nodeid, PT_READS, &dir);

    if (ret == 0)
        ret = begin_dirhandle(fs, ctx, nodeid, in->fh, &h);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&h->dir->lock);
    ret = dir_seek(h, in->offset);
    if (ret == 0)
        ret = fill(fs, dir, h, plus, buf, in->size);
    pthread_mutex_unlock(&h->dir->lock);
    return ret;
}
