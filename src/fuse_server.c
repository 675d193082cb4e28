/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FUSE request decoding and dispatch. The request arrives as the readable part of a
 * descriptor chain: fuse_in_header, the op's argument struct, then names or data. Everything
 * but WRITE data is copied into a per-thread buffer before it is decoded, so the guest cannot
 * change a value after we checked it; WRITE data stays in guest memory and goes straight to
 * pwritev, and READ data goes straight from preadv into the reply buffers.
 */
#include "fuse_server.h"

#include <errno.h>
#include <limits.h>
#include <linux/limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"
#include "iov.h"
#include "log.h"
#include "pt_state.h"
#include "session_journal.h"

#define FUSE_MIN_MINOR 12 /* older protocols lay out several structs differently */
/* Largest non-WRITE request we accept: a setxattr of XATTR_SIZE_MAX plus its name. */
#define MAX_IN_ARGS  (64 * 1024 + 4096)
#define MAX_OUT_DATA FUSE_MAX_WRITE
#define MAX_PAGES    (FUSE_MAX_WRITE / 4096)
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP /* FUSE 7.39: shared mmap of FOPEN_DIRECT_IO files */
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif
#ifndef FUSE_ALLOW_IDMAP /* FUSE 7.40 (Linux 6.12): idmapped mounts of the file system */
#define FUSE_ALLOW_IDMAP (1ULL << 40)
#endif
#ifndef FUSE_INVALID_UIDGID /* fuse_in_header's uid/gid when the kernel names no caller */
#define FUSE_INVALID_UIDGID ((uint32_t)-1)
#endif

struct fuse_session {
    struct pt_fs *fs;
    atomic_bool initialized;
    uint32_t proto_minor;
    uint64_t flags;     /* the FUSE_* flags agreed at INIT */
    struct sj *journal; /* session_journal.c's, or NULL; set with no request in flight */
};

struct fuse_scratch {
    uint8_t in[sizeof(struct fuse_in_header) + MAX_IN_ARGS];
    uint8_t *out; /* MAX_OUT_DATA bytes, allocated on first use: most threads never need it */
    struct iovec iov[VQ_MAX_IOV];
};

/* One request being served. */
struct fuse_req {
    struct fuse_session *se;
    struct fuse_scratch *s;
    const struct vq_elem *elem;
    const struct fuse_late_route *late; /* NULL: nothing may wait */
    struct fuse_req_tag tag;            /* fuse_req_ctx.tag */
    bool resubmitted;                   /* fuse_req_ctx.resubmitted */
    const struct fuse_op *op;           /* NULL for late replies and undecodable requests */
    struct fuse_in_header in;
    const uint8_t *arg; /* argument bytes after the header, in the scratch buffer */
    size_t arglen;
    struct pt_ctx ctx;
    uint32_t out_len; /* bytes written to the reply; 0 until replied */
    bool ok;          /* a success reply was written (what it hands the guest is the guest's) */
    /* A permission error the caller's supplementary groups may fix: held back, not replied,
     * so the request can run once more with them (see pt_retry_groups). */
    bool may_retry;
    int held_error;
};

typedef void (*fuse_handler)(struct fuse_req *req);

/*
 * What a successful reply hands to the guest that the daemon holds on its behalf until the
 * guest gives it back (FORGET, RELEASE, RELEASEDIR). A reply that cannot be delivered must
 * give it back itself (see undo_reply), or it stays for the session's life.
 */
enum fuse_reply_ref {
    REF_NONE,
    REF_ENTRY,      /* fuse_entry_out: one lookup reference on nodeid */
    REF_OPEN,       /* fuse_open_out: a file handle */
    REF_OPENDIR,    /* fuse_open_out: a directory handle */
    REF_ENTRY_OPEN, /* fuse_entry_out then fuse_open_out: both */
};

struct fuse_op {
    const char *name;
    size_t in_size; /* minimum argument bytes: the op's fixed struct */
    fuse_handler handler;
    enum fuse_reply_ref ref;
};

/* ---- replies ------------------------------------------------------------------------------ */

/* The device-writable part of the chain: where the reply goes. */
static const struct iovec *wr_iov(const struct fuse_req *req)
{
    return req->elem->iov + req->elem->rd_num;
}

static void release_fh(struct fuse_req *req, uint64_t nodeid, uint64_t fh, bool dir)
{
    const struct fuse_release_in rel = {.fh = fh};
    int ret = dir ? pt_releasedir(req->se->fs, NULL, nodeid, &rel)
                  : pt_release(req->se->fs, NULL, nodeid, &rel);
    if (ret < 0)
        log_warn("fuse: cannot release handle %llu of an undelivered reply: %s",
                 (unsigned long long)fh, strerror(-ret));
}

/*
 * A success reply of len bytes at data could not be delivered (no room for it in the guest's
 * buffer): the guest never learns the nodeid or fh in it, so it will never FORGET or RELEASE
 * it. Gives back what the op took for it, as if the guest had, in the reply's own terms (the
 * op table says which of its replies carry what).
 */
static void undo_reply(struct fuse_req *req, const void *data, size_t len)
{
    struct fuse_entry_out e = {0};
    struct fuse_open_out o = {0};
    enum fuse_reply_ref ref = req->op ? req->op->ref : REF_NONE;

    if (ref == REF_NONE || !data)
        return;
    if (ref == REF_ENTRY || ref == REF_ENTRY_OPEN) {
        if (len < sizeof(e))
            return;
        memcpy(&e, data, sizeof(e));
    }
    if (ref != REF_ENTRY) {
        size_t off = ref == REF_ENTRY_OPEN ? sizeof(e) : 0;
        if (len < off + sizeof(o))
            return;
        memcpy(&o, (const uint8_t *)data + off, sizeof(o));
    }
    if (ref == REF_OPEN || ref == REF_OPENDIR)
        release_fh(req, req->in.nodeid, o.fh, ref == REF_OPENDIR);
    if (ref == REF_ENTRY_OPEN)
        release_fh(req, e.nodeid, o.fh, false);
    if ((ref == REF_ENTRY || ref == REF_ENTRY_OPEN) && e.nodeid) /* 0: a negative entry */
        pt_forget(req->se->fs, e.nodeid, 1);
}

static void reply_raw(struct fuse_req *req, int error, const void *data, size_t len)
{
    const struct vq_elem *elem = req->elem;
    struct fuse_out_header out = {
        .len = (uint32_t)(sizeof(out) + (error ? 0 : len)),
        .error = error,
        .unique = req->in.unique,
    };
    if (elem->wr_len < out.len) {
        if (!error)
            undo_reply(req, data, len);
        if (!error && elem->wr_len >= sizeof(out)) {
            /* The guest gave too little room for the reply it asked for. */
            log_warn("fuse: %zu-byte reply to request %llu does not fit in %zu bytes", len,
                     (unsigned long long)req->in.unique, elem->wr_len);
            reply_raw(req, -ERANGE, NULL, 0);
            return;
        }
        log_error("fuse: request %llu has no room for a reply header",
                  (unsigned long long)req->in.unique);
        req->out_len = 0;
        return;
    }
    iov_from_buf(wr_iov(req), elem->wr_num, 0, &out, sizeof(out));
    if (!error && len)
        iov_from_buf(wr_iov(req), elem->wr_num, sizeof(out), data, len);
    req->out_len = out.len;
    req->ok = !error;
}

/*
 * The session journal (session_journal.h), for what a request changed in the session. A
 * reference the reply hands over is recorded only once the reply was written (req->ok: an
 * undelivered one was given back by undo_reply); what a request removed is recorded when it
 * succeeded, delivered or not. Requests that change nothing never get here.
 */
static struct sj *journal(const struct fuse_req *req)
{
    return __builtin_expect(req->se->journal != NULL, 0) ? req->se->journal : NULL;
}

static void note_entry(struct fuse_req *req, uint64_t parent, const char *name,
                       const struct fuse_entry_out *e)
{
    struct sj *j = journal(req);

    if (j && req->ok && e->nodeid)
        sj_entry(j, &req->tag, req->se->fs, parent, name, e->nodeid);
}

static void note_open(struct fuse_req *req, uint64_t nodeid, const struct fuse_open_out *o,
                      bool dir)
{
    struct sj *j = journal(req);

    if (j && req->ok)
        sj_open(j, &req->tag, req->se->fs, nodeid, o->fh, dir);
}

static void reply_err(struct fuse_req *req, int neg_errno)
{
    /* Errors travel as negative errno; anything else here is a bug worth seeing as EIO. */
    if (neg_errno >= 0 || neg_errno < -4095)
        neg_errno = -EIO;
    if (req->may_retry &&
        (neg_errno == -EACCES || (neg_errno == -EPERM && req->in.opcode == FUSE_SETATTR))) {
        req->held_error = neg_errno;
        return;
    }
    reply_raw(req, neg_errno, NULL, 0);
}

static void reply_ok(struct fuse_req *req, const void *data, size_t len)
{
    reply_raw(req, 0, data, len);
}

/* Replies with data when ret == 0, the error otherwise. */
static void reply_result(struct fuse_req *req, int ret, const void *data, size_t len)
{
    if (ret < 0)
        reply_err(req, ret);
    else
        reply_ok(req, data, len);
}

static uint8_t *out_buf(struct fuse_req *req)
{
    if (!req->s->out)
        req->s->out = malloc(MAX_OUT_DATA);
    return req->s->out;
}

/* ---- argument decoding ----------------------------------------------------------------- */

/* Reads a NUL-terminated name starting at *off, ending before end; advances *off past it. */
static const char *arg_name_to(const struct fuse_req *req, size_t *off, size_t end)
{
    if (*off >= end)
        return NULL;
    const char *name = (const char *)req->arg + *off;
    const char *nul = memchr(name, '\0', end - *off);
    if (!nul)
        return NULL;
    *off += (size_t)(nul - name) + 1;
    return name;
}

static const char *arg_name(struct fuse_req *req, size_t *off)
{
    return arg_name_to(req, off, req->arglen);
}

/*
 * One security context (FUSE_SECURITY_CTX) of count in a fuse_secctx_header's len bytes:
 * fuse_secctx, the xattr name with its NUL, the value of fuse_secctx.size bytes, padding.
 */
static int parse_secctx(const uint8_t *p, size_t len, uint32_t count, struct pt_ctx *ctx,
                        struct pt_secctx *sc)
{
    struct fuse_secctx c;
    size_t name_len;

    if (count == 0)
        return 0; /* no LSM gave the new inode a context */
    /* The kernel sends one at most; the Rust virtiofsd refuses more alike. */
    if (count > 1 || len < sizeof(c))
        return -EINVAL;
    memcpy(&c, p, sizeof(c));
    p += sizeof(c);
    len -= sizeof(c);
    const uint8_t *nul = memchr(p, '\0', len < XATTR_NAME_MAX + 1 ? len : XATTR_NAME_MAX + 1);
    if (!nul || nul == p)
        return -EINVAL;
    name_len = (size_t)(nul - p) + 1;
    if (c.size == 0 || c.size > XATTR_SIZE_MAX || c.size > len - name_len)
        return -EINVAL;
    /*
     * The context is set with the daemon's own credentials (pt_apply_secctx), so its name must
     * be one an LSM gives (security.selinux, security.SMACK64, ...): a hostile guest could
     * otherwise have the daemon set trusted.*, user.* or system.* attributes its caller may
     * not set. The kernel sends nothing else, so anything else is a malformed request.
     */
    if (strncmp((const char *)p, "security.", strlen("security.")) != 0)
        return -EINVAL;
    *sc = (struct pt_secctx){.name = (const char *)p, .value = p + name_len, .size = c.size};
    ctx->secctx = sc;
    return 0;
}

/* The extensions of a request creating an inode, len bytes of fuse_ext_header records. */
static int parse_extensions(const uint8_t *p, size_t len, struct pt_ctx *ctx, struct pt_secctx *sc)
{
    bool seen = false;

    while (len > 0) {
        struct fuse_ext_header h;
        if (len < sizeof(h))
            return -EINVAL;
        memcpy(&h, p, sizeof(h));
        if (h.size < sizeof(h) || h.size > len)
            return -EINVAL;
        /* Types up to FUSE_MAX_NR_SECCTX are a fuse_secctx_header with its count; no other
         * extension was offered (FUSE_CREATE_SUPP_GROUP is not), and one of each at most. */
        if (h.type > FUSE_MAX_NR_SECCTX || seen)
            return -EINVAL;
        seen = true;
        int ret = parse_secctx(p + sizeof(h), h.size - sizeof(h), h.type, ctx, sc);
        if (ret < 0)
            return ret;
        p += h.size;
        len -= h.size;
    }
    return 0;
}

/*
 * A request creating an inode: the op's struct (fixed bytes), nnames names, then extensions.
 * Since FUSE 7.38 those are the last fuse_in_header.total_extlen 8-byte units, and the names
 * are looked for only in front of them; older kernels append the security context right
 * after the names without counting it. Fills names, and ctx with the caller and the security
 * context if one came (in sc). Without FUSE_SECURITY_CTX agreed the extensions are skipped.
 * Returns 0 or -EINVAL for anything malformed: every length is the guest's and checked.
 */
static int creating_request(const struct fuse_req *req, size_t fixed, const char **names,
                            int nnames, struct pt_ctx *ctx, struct pt_secctx *sc)
{
    size_t ext = (size_t)req->in.total_extlen * 8;
    size_t off = fixed;

    *ctx = req->ctx;
    if (ext > req->arglen - fixed)
        return -EINVAL;
    for (int i = 0; i < nnames; i++)
        if (!(names[i] = arg_name_to(req, &off, req->arglen - ext)))
            return -EINVAL;
    if (!(req->se->flags & FUSE_SECURITY_CTX))
        return 0;
    if (ext)
        return parse_extensions(req->arg + req->arglen - ext, ext, ctx, sc);
    return parse_extensions(req->arg + off, req->arglen - off, ctx, sc);
}

/* The op's fixed struct; the table guarantees arglen covers it. */
#define ARG(req, type) ((const type *)(req)->arg)

/* ---- handlers: entries ----------------------------------------------------------------- */

static void do_lookup(struct fuse_req *req)
{
    size_t off = 0;
    const char *name = arg_name(req, &off);
    if (!name) {
        reply_err(req, -EINVAL);
        return;
    }
    struct fuse_entry_out e;
    int ret = pt_lookup(req->se->fs, &req->ctx, req->in.nodeid, name, &e);
    reply_result(req, ret, &e, sizeof(e));
    note_entry(req, req->in.nodeid, name, &e);
}

static void do_forget(struct fuse_req *req)
{
    uint64_t n = ARG(req, struct fuse_forget_in)->nlookup;

    pt_forget(req->se->fs, req->in.nodeid, n);
    if (journal(req))
        sj_forget(journal(req), &req->tag, req->in.nodeid, n);
}

static void do_batch_forget(struct fuse_req *req)
{
    const struct fuse_batch_forget_in *b = ARG(req, struct fuse_batch_forget_in);
    size_t room = (req->arglen - sizeof(*b)) / sizeof(struct fuse_forget_one);
    uint32_t count = b->count;
    if (count > room) {
        log_warn("fuse: BATCH_FORGET claims %u entries, only %zu sent", count, room);
        count = (uint32_t)room;
    }
    const uint8_t *p = req->arg + sizeof(*b);
    for (uint32_t i = 0; i < count; i++) {
        struct fuse_forget_one one;
        memcpy(&one, p + i * sizeof(one), sizeof(one));
        pt_forget(req->se->fs, one.nodeid, one.nlookup);
    }
    if (journal(req))
        sj_forget_batch(journal(req), &req->tag, p, count);
}

static void do_getattr(struct fuse_req *req)
{
    struct fuse_attr_out out;
    int ret =
        pt_getattr(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_getattr_in), &out);
    reply_result(req, ret, &out, sizeof(out));
}

static void do_setattr(struct fuse_req *req)
{
    struct fuse_attr_out out;
    int ret =
        pt_setattr(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_setattr_in), &out);
    reply_result(req, ret, &out, sizeof(out));
}

static void do_readlink(struct fuse_req *req)
{
    char buf[PATH_MAX];
    ssize_t n = pt_readlink(req->se->fs, &req->ctx, req->in.nodeid, buf, sizeof(buf));
    reply_result(req, (int)(n < 0 ? n : 0), buf, n < 0 ? 0 : (size_t)n);
}

static void do_symlink(struct fuse_req *req)
{
    const char *names[2]; /* the new name, the target */
    struct pt_secctx sc;
    struct pt_ctx ctx;
    int ret = creating_request(req, 0, names, 2, &ctx, &sc);
    if (ret < 0) {
        reply_err(req, ret);
        return;
    }
    struct fuse_entry_out e;
    ret = pt_symlink(req->se->fs, &ctx, req->in.nodeid, names[0], names[1], &e);
    reply_result(req, ret, &e, sizeof(e));
    note_entry(req, req->in.nodeid, names[0], &e);
}

static void do_mknod(struct fuse_req *req)
{
    const char *name;
    struct pt_secctx sc;
    struct pt_ctx ctx;
    int ret = creating_request(req, sizeof(struct fuse_mknod_in), &name, 1, &ctx, &sc);
    if (ret < 0) {
        reply_err(req, ret);
        return;
    }
    struct fuse_entry_out e;
    ret = pt_mknod(req->se->fs, &ctx, req->in.nodeid, name, ARG(req, struct fuse_mknod_in), &e);
    reply_result(req, ret, &e, sizeof(e));
    note_entry(req, req->in.nodeid, name, &e);
}

static void do_mkdir(struct fuse_req *req)
{
    const char *name;
    struct pt_secctx sc;
    struct pt_ctx ctx;
    int ret = creating_request(req, sizeof(struct fuse_mkdir_in), &name, 1, &ctx, &sc);
    if (ret < 0) {
        reply_err(req, ret);
        return;
    }
    struct fuse_entry_out e;
    ret = pt_mkdir(req->se->fs, &ctx, req->in.nodeid, name, ARG(req, struct fuse_mkdir_in), &e);
    reply_result(req, ret, &e, sizeof(e));
    note_entry(req, req->in.nodeid, name, &e);
}

static void do_unlink(struct fuse_req *req)
{
    size_t off = 0;
    const char *name = arg_name(req, &off);
    /* Journaled: a file the guest still uses is kept under a hidden name (pt_unlink), and
     * the journal records the rename that is, so that a restarted daemon finds it there. */
    char hidden[PT_HIDDEN_NAME_MAX];
    int ret =
        name ? pt_unlink(req->se->fs, &req->ctx, req->in.nodeid, name, journal(req) ? hidden : NULL)
             : -EINVAL;
    if (ret == 0 && journal(req) && hidden[0])
        sj_rename(journal(req), &req->tag, req->in.nodeid, name, FUSE_ROOT_ID, hidden, 0);
    else if (ret == 0 && journal(req))
        sj_unlink(journal(req), &req->tag, req->in.nodeid, name);
    reply_result(req, ret, NULL, 0);
}

static void do_rmdir(struct fuse_req *req)
{
    size_t off = 0;
    const char *name = arg_name(req, &off);
    int ret = name ? pt_rmdir(req->se->fs, &req->ctx, req->in.nodeid, name) : -EINVAL;
    if (ret == 0 && journal(req))
        sj_unlink(journal(req), &req->tag, req->in.nodeid, name);
    reply_result(req, ret, NULL, 0);
}

static void rename_common(struct fuse_req *req, size_t fixed, uint64_t newdir, uint32_t flags)
{
    size_t off = fixed;
    const char *oldname = arg_name(req, &off);
    const char *newname = oldname ? arg_name(req, &off) : NULL;
    char hidden[PT_HIDDEN_NAME_MAX]; /* the replaced file's, kept as for UNLINK */
    int ret = newname ? pt_rename(req->se->fs, &req->ctx, req->in.nodeid, oldname, newdir, newname,
                                  flags, journal(req) ? hidden : NULL)
                      : -EINVAL;
    if (ret == 0 && journal(req) && hidden[0])
        sj_rename(journal(req), &req->tag, newdir, newname, FUSE_ROOT_ID, hidden, 0);
    if (ret == 0 && journal(req))
        sj_rename(journal(req), &req->tag, req->in.nodeid, oldname, newdir, newname, flags);
    reply_result(req, ret, NULL, 0);
}

static void do_rename(struct fuse_req *req)
{
    rename_common(req, sizeof(struct fuse_rename_in), ARG(req, struct fuse_rename_in)->newdir, 0);
}

static void do_rename2(struct fuse_req *req)
{
    const struct fuse_rename2_in *in = ARG(req, struct fuse_rename2_in);
    rename_common(req, sizeof(*in), in->newdir, in->flags);
}

static void do_link(struct fuse_req *req)
{
    size_t off = sizeof(struct fuse_link_in);
    const char *name = arg_name(req, &off);
    if (!name) {
        reply_err(req, -EINVAL);
        return;
    }
    struct fuse_entry_out e;
    int ret = pt_link(req->se->fs, &req->ctx, ARG(req, struct fuse_link_in)->oldnodeid,
                      req->in.nodeid, name, &e);
    reply_result(req, ret, &e, sizeof(e));
    note_entry(req, req->in.nodeid, name, &e);
}

/* ---- handlers: files ------------------------------------------------------------------- */

static void do_open(struct fuse_req *req)
{
    struct fuse_open_out out;
    int ret = pt_open(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_open_in), &out);
    reply_result(req, ret, &out, sizeof(out));
    note_open(req, req->in.nodeid, &out, false);
}

static void do_create(struct fuse_req *req)
{
    const char *name;
    struct pt_secctx sc;
    struct pt_ctx ctx;
    int ret = creating_request(req, sizeof(struct fuse_create_in), &name, 1, &ctx, &sc);
    if (ret < 0) {
        reply_err(req, ret);
        return;
    }
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    ret = pt_create(req->se->fs, &ctx, req->in.nodeid, name, ARG(req, struct fuse_create_in),
                    &out.e, &out.o);
    reply_result(req, ret, &out, sizeof(out));
    note_entry(req, req->in.nodeid, name, &out.e);
    if (req->ok)
        note_open(req, out.e.nodeid, &out.o, false);
}

static void do_tmpfile(struct fuse_req *req)
{
    /* The kernel sends the new dentry's placeholder name ("/") after the struct: unused, but
     * a security context follows it. */
    const char *name;
    struct pt_secctx sc;
    struct pt_ctx ctx;
    int nnames = (req->se->flags & FUSE_SECURITY_CTX) ? 1 : 0;
    int ret = creating_request(req, sizeof(struct fuse_create_in), &name, nnames, &ctx, &sc);
    if (ret < 0) {
        reply_err(req, ret);
        return;
    }
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    ret = pt_tmpfile(req->se->fs, &ctx, req->in.nodeid, ARG(req, struct fuse_create_in), &out.e,
                     &out.o);
    reply_result(req, ret, &out, sizeof(out));
    note_entry(req, req->in.nodeid, NULL, &out.e); /* no name: lost after a restart */
    if (req->ok)
        note_open(req, out.e.nodeid, &out.o, false);
}

static void do_read(struct fuse_req *req)
{
    const struct fuse_read_in *in = ARG(req, struct fuse_read_in);
    size_t hdr = sizeof(struct fuse_out_header);
    if (req->elem->wr_len < hdr) {
        reply_err(req, -EINVAL); /* logged by reply_raw */
        return;
    }
    size_t room = req->elem->wr_len - hdr;
    size_t size = in->size < room ? in->size : room;
    if (size > MAX_OUT_DATA)
        size = MAX_OUT_DATA;
    /* Zero copy: preadv lands directly in the guest's reply buffers, after the header. */
    unsigned n = iov_slice(wr_iov(req), req->elem->wr_num, hdr, size, req->s->iov, VQ_MAX_IOV);
    struct fuse_read_in args = *in;
    args.size = (uint32_t)size;
    ssize_t got = pt_read(req->se->fs, &req->ctx, req->in.nodeid, &args, req->s->iov, (int)n);
    if (got < 0) {
        reply_err(req, (int)got);
        return;
    }
    struct fuse_out_header out = {
        .len = (uint32_t)(hdr + (size_t)got),
        .error = 0,
        .unique = req->in.unique,
    };
    iov_from_buf(wr_iov(req), req->elem->wr_num, 0, &out, sizeof(out));
    req->out_len = out.len;
}

static void do_write(struct fuse_req *req)
{
    const struct fuse_write_in *in = ARG(req, struct fuse_write_in);
    size_t data_off = sizeof(struct fuse_in_header) + sizeof(*in);
    /* The data is whatever follows the struct; its size must match what the guest claims. */
    if (in->size != req->elem->rd_len - data_off || in->size > FUSE_MAX_WRITE) {
        reply_err(req, -EINVAL);
        return;
    }
    unsigned n =
        iov_slice(req->elem->iov, req->elem->rd_num, data_off, in->size, req->s->iov, VQ_MAX_IOV);
    ssize_t done = pt_write(req->se->fs, &req->ctx, req->in.nodeid, in, req->s->iov, (int)n);
    struct fuse_write_out out = {.size = done < 0 ? 0 : (uint32_t)done};
    reply_result(req, done < 0 ? (int)done : 0, &out, sizeof(out));
}

static void do_statfs(struct fuse_req *req)
{
    struct fuse_statfs_out out;
    int ret = pt_statfs(req->se->fs, &req->ctx, req->in.nodeid, &out);
    reply_result(req, ret, &out, sizeof(out));
}

static void do_release(struct fuse_req *req)
{
    int ret = pt_release(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_release_in));
    if (ret == 0 && journal(req))
        sj_release(journal(req), &req->tag, ARG(req, struct fuse_release_in)->fh);
    reply_result(req, ret, NULL, 0);
}

static void do_fsync(struct fuse_req *req)
{
    int ret = pt_fsync(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_fsync_in));
    reply_result(req, ret, NULL, 0);
}

static void do_flush(struct fuse_req *req)
{
    const struct fuse_flush_in *in = ARG(req, struct fuse_flush_in);
    struct sj *j = journal(req);
    /* The owner's locks go with a FLUSH: journaled when it had some and has none now. */
    bool owner = j && pt_lock_owner_known(req->se->fs, req->in.nodeid, in->lock_owner);
    int ret = pt_flush(req->se->fs, &req->ctx, req->in.nodeid, in);
    if (owner && !pt_lock_owner_known(req->se->fs, req->in.nodeid, in->lock_owner))
        sj_unlock_owner(j, &req->tag, req->in.nodeid, in->fh, in->lock_owner);
    reply_result(req, ret, NULL, 0);
}

static void do_fallocate(struct fuse_req *req)
{
    int ret =
        pt_fallocate(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_fallocate_in));
    reply_result(req, ret, NULL, 0);
}

static void do_lseek(struct fuse_req *req)
{
    struct fuse_lseek_out out;
    int ret =
        pt_lseek(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_lseek_in), &out);
    reply_result(req, ret, &out, sizeof(out));
}

static void do_copy_file_range(struct fuse_req *req)
{
    ssize_t n = pt_copy_file_range(req->se->fs, &req->ctx, req->in.nodeid,
                                   ARG(req, struct fuse_copy_file_range_in));
    struct fuse_write_out out = {.size = n < 0 ? 0 : (uint32_t)n};
    reply_result(req, n < 0 ? (int)n : 0, &out, sizeof(out));
}

/* ---- handlers: locks ------------------------------------------------------------------ */

static void do_getlk(struct fuse_req *req)
{
    struct fuse_lk_out out;
    int ret = pt_getlk(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_lk_in), &out);
    reply_result(req, ret, &out, sizeof(out));
}

/* What the journal needs of a SETLKW that waits, to record its lock when it is taken. */
struct lock_note {
    struct sj *j;
    struct fuse_req_tag tag;
    uint64_t nodeid;
    struct fuse_lk_in in;
};

/* pt_async.done of a SETLKW that waited: journaled (before the reply, which the transport
 * publishes), then back to the transport, with its own cookie. */
static void lock_wait_done(const struct pt_async *a, int result)
{
    struct fuse_late_sink *sink = a->opaque;
    struct lock_note *n = a->note;

    if (n && result == 0)
        sj_lock(n->j, &n->tag, n->nodeid, &n->in);
    free(n);
    sink->done(sink, a->tag, a->unique, result);
}

static void setlk_common(struct fuse_req *req, bool wait)
{
    const struct fuse_lk_in *in = ARG(req, struct fuse_lk_in);
    struct pt_async async, *a = NULL;
    struct sj *j = journal(req);
    if (wait && req->late) {
        async = (struct pt_async){
            .done = lock_wait_done,
            .opaque = req->late->sink,
            .unique = req->in.unique,
            .tag = req->late->cookie,
        };
        a = &async;
        if (j) {
            struct lock_note *n = malloc(sizeof(*n));
            if (!n) {
                reply_err(req, -ENOMEM);
                return;
            }
            *n = (struct lock_note){.j = j, .tag = req->tag, .nodeid = req->in.nodeid, .in = *in};
            async.note = n;
        }
    }
    int ret = pt_setlk(req->se->fs, &req->ctx, req->in.nodeid, in, a);
    if (ret == PT_PENDING) {
        req->out_len = FUSE_REPLY_LATER;
        return;
    }
    if (a)
        free(async.note); /* done() will not be called */
    if (ret == 0 && j)
        sj_lock(j, &req->tag, req->in.nodeid, in);
    reply_result(req, ret, NULL, 0);
}

static void do_setlk(struct fuse_req *req)
{
    setlk_common(req, false);
}

static void do_setlkw(struct fuse_req *req)
{
    setlk_common(req, true);
}

void fuse_session_end_waits(struct fuse_session *se, struct fuse_late_sink *sink)
{
    /* lock_wait_done's opaque is the sink: that names the waits of this route. */
    pt_lock_end_waits(se->fs, sink);
}

uint32_t fuse_reply_late(const struct vq_elem *elem, uint64_t unique, int error)
{
    struct fuse_req req = {.elem = elem, .in = {.unique = unique}};
    if (error)
        reply_err(&req, error);
    else
        reply_ok(&req, NULL, 0);
    return req.out_len;
}

/* ---- handlers: directories ------------------------------------------------------------- */

static void do_opendir(struct fuse_req *req)
{
    struct fuse_open_out out;
    int ret =
        pt_opendir(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_open_in), &out);
    reply_result(req, ret, &out, sizeof(out));
    note_open(req, req->in.nodeid, &out, true);
}

static void readdir_common(struct fuse_req *req, bool plus)
{
    struct fuse_read_in args = *ARG(req, struct fuse_read_in);
    size_t room = req->elem->wr_len > sizeof(struct fuse_out_header)
                      ? req->elem->wr_len - sizeof(struct fuse_out_header)
                      : 0;
    if (args.size > room)
        args.size = (uint32_t)room;
    if (args.size > MAX_OUT_DATA)
        args.size = MAX_OUT_DATA;
    uint8_t *buf = out_buf(req);
    if (!buf) {
        reply_err(req, -ENOMEM);
        return;
    }
    ssize_t n = pt_readdir(req->se->fs, &req->ctx, req->in.nodeid, &args, plus, buf);
    reply_result(req, n < 0 ? (int)n : 0, buf, n < 0 ? 0 : (size_t)n);
    if (plus && req->ok && n > 0 && journal(req))
        sj_direntplus(journal(req), &req->tag, req->se->fs, req->in.nodeid, buf, (size_t)n);
}

static void do_readdir(struct fuse_req *req)
{
    readdir_common(req, false);
}

static void do_readdirplus(struct fuse_req *req)
{
    readdir_common(req, true);
}

static void do_releasedir(struct fuse_req *req)
{
    int ret =
        pt_releasedir(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_release_in));
    if (ret == 0 && journal(req))
        sj_release(journal(req), &req->tag, ARG(req, struct fuse_release_in)->fh);
    reply_result(req, ret, NULL, 0);
}

static void do_fsyncdir(struct fuse_req *req)
{
    int ret = pt_fsyncdir(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_fsync_in));
    reply_result(req, ret, NULL, 0);
}

static void do_access(struct fuse_req *req)
{
    int ret = pt_access(req->se->fs, &req->ctx, req->in.nodeid, ARG(req, struct fuse_access_in));
    reply_result(req, ret, NULL, 0);
}

static void do_syncfs(struct fuse_req *req)
{
    reply_result(req, pt_syncfs(req->se->fs, &req->ctx, req->in.nodeid), NULL, 0);
}

/* ---- handlers: extended attributes ------------------------------------------------------- */

static void do_setxattr(struct fuse_req *req)
{
    /* The full struct with FUSE_SETXATTR_EXT (agreed with --posix-acl), else the 8-byte one. */
    struct fuse_setxattr_in in = {0};
    size_t off = (req->se->flags & FUSE_SETXATTR_EXT) ? sizeof(in) : FUSE_COMPAT_SETXATTR_IN_SIZE;
    if (req->arglen < off) {
        reply_err(req, -EINVAL);
        return;
    }
    memcpy(&in, req->arg, off);
    const char *name = arg_name(req, &off);
    if (!name || in.size > req->arglen - off) {
        reply_err(req, -EINVAL);
        return;
    }
    int ret = pt_setxattr_ext(req->se->fs, &req->ctx, req->in.nodeid, name, req->arg + off, in.size,
                              in.flags, in.setxattr_flags);
    reply_result(req, ret, NULL, 0);
}

/* GETXATTR and LISTXATTR share a reply shape: the size alone when asked for 0 bytes. */
static void reply_xattr(struct fuse_req *req, ssize_t n, uint32_t size, const void *buf)
{
    if (n < 0) {
        reply_err(req, (int)n);
        return;
    }
    if (size == 0) {
        struct fuse_getxattr_out out = {.size = (uint32_t)n};
        reply_ok(req, &out, sizeof(out));
    } else {
        reply_ok(req, buf, (size_t)n);
    }
}

static void do_getxattr(struct fuse_req *req)
{
    const struct fuse_getxattr_in *in = ARG(req, struct fuse_getxattr_in);
    size_t off = sizeof(*in);
    const char *name = arg_name(req, &off);
    uint8_t *buf = out_buf(req);
    if (!name || !buf) {
        reply_err(req, name ? -ENOMEM : -EINVAL);
        return;
    }
    size_t size = in->size < MAX_OUT_DATA ? in->size : MAX_OUT_DATA;
    ssize_t n = pt_getxattr(req->se->fs, &req->ctx, req->in.nodeid, name, buf, size);
    reply_xattr(req, n, in->size, buf);
}

static void do_listxattr(struct fuse_req *req)
{
    const struct fuse_getxattr_in *in = ARG(req, struct fuse_getxattr_in);
    uint8_t *buf = out_buf(req);
    if (!buf) {
        reply_err(req, -ENOMEM);
        return;
    }
    size_t size = in->size < MAX_OUT_DATA ? in->size : MAX_OUT_DATA;
    ssize_t n = pt_listxattr(req->se->fs, &req->ctx, req->in.nodeid, buf, size);
    reply_xattr(req, n, in->size, buf);
}

static void do_removexattr(struct fuse_req *req)
{
    size_t off = 0;
    const char *name = arg_name(req, &off);
    int ret = name ? pt_removexattr(req->se->fs, &req->ctx, req->in.nodeid, name) : -EINVAL;
    reply_result(req, ret, NULL, 0);
}

/* ---- session ops ------------------------------------------------------------------------ */

/*
 * FUSE_ALLOW_IDMAP (Linux 6.12): the guest may make idmapped mounts of the share. The kernel
 * then names the caller only in requests that create an inode (the ids the mount's idmap maps
 * it to), and sends FUSE_INVALID_UIDGID in every other request, idmapped mount or not: it has
 * checked the caller's permissions itself (a virtiofs mount always uses default_permissions,
 * without which the kernel refuses the flag). Those requests run as the guest's root
 * (idmapped_caller), which grants nothing to the guest as a whole: any guest can send uid 0.
 * So it is offered only where the guest's root is the host's (no --translate-uid/gid moving
 * uid or gid 0), where it is also correct, since root may do whatever the guest kernel
 * allowed; were guest root mapped to a lesser host id, a guest user's requests would fail on
 * that id's permissions.
 *
 * Opt-in (--allow-idmap), although a 6.12+ guest kernel asks for it on every mount: the host
 * then no longer checks a guest user's requests against that user's host ids, only the guest
 * kernel does, with what it sees. What it does not see (an ACL on the host while POSIX ACLs
 * are not served, an LSM's rules) would no longer stop a guest user; only guest root's rights
 * hold. Who wants idmapped mounts in the guest accepts that trade with the option.
 */
static bool idmap_offer_sound(const struct pt_config *cfg)
{
    uint32_t uid, gid;

    return idmap_to_host(&cfg->uid_map, 0, &uid) == 0 && uid == 0 &&
           idmap_to_host(&cfg->gid_map, 0, &gid) == 0 && gid == 0;
}

/* Requests whose fuse_in_header names the new inode's owner under FUSE_ALLOW_IDMAP. */
static bool creates_inode(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_SYMLINK:
    case FUSE_CREATE:
    case FUSE_TMPFILE:
        return true;
    }
    return false;
}

/*
 * The caller's ids with FUSE_ALLOW_IDMAP agreed: FUSE_INVALID_UIDGID becomes the guest's root
 * (see idmap_offer_sound), except in a request that creates an inode, which would then be
 * owned by nobody the kernel named: EOVERFLOW, the kernel's own answer to an id it cannot map.
 * RENAME2 with RENAME_WHITEOUT carries the caller too, but its whiteout has no owner to speak
 * of (a 0:0 character device), so it is not told apart. Without the flag the ids stay as sent.
 */
static int idmapped_caller(const struct fuse_session *se, uint32_t opcode, struct pt_ctx *ctx)
{
    if (!(se->flags & FUSE_ALLOW_IDMAP))
        return 0;
    if (ctx->uid != FUSE_INVALID_UIDGID && ctx->gid != FUSE_INVALID_UIDGID)
        return 0;
    if (creates_inode(opcode))
        return -EOVERFLOW;
    if (ctx->uid == FUSE_INVALID_UIDGID)
        ctx->uid = 0;
    if (ctx->gid == FUSE_INVALID_UIDGID)
        ctx->gid = 0;
    return 0;
}

static uint64_t init_offer(const struct pt_config *cfg)
{
    uint64_t flags = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES |
                     FUSE_AUTO_INVAL_DATA | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
                     FUSE_INIT_EXT;
    if (cfg->readdirplus)
        flags |= FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO;
    if (cfg->writeback)
        flags |= FUSE_WRITEBACK_CACHE;
    if (cfg->announce_submounts)
        flags |= FUSE_SUBMOUNTS;
    if (cfg->killpriv_v2)
        flags |= FUSE_HANDLE_KILLPRIV_V2;
    if (cfg->posix_locks)
        flags |= FUSE_POSIX_LOCKS;
    if (cfg->flock_locks)
        flags |= FUSE_FLOCK_LOCKS;
    /* The guest kernel applies neither umask nor default ACLs then, and sends the full
     * fuse_setxattr_in (FUSE_SETXATTR_ACL_KILL_SGID), as with the Rust virtiofsd. */
    if (cfg->posix_acl)
        flags |= FUSE_POSIX_ACL | FUSE_DONT_MASK | FUSE_SETXATTR_EXT;
    if (cfg->security_label)
        flags |= FUSE_SECURITY_CTX;
    if (cfg->allow_mmap)
        flags |= FUSE_DIRECT_IO_ALLOW_MMAP;
    if (cfg->allow_idmap && idmap_offer_sound(cfg))
        flags |= FUSE_ALLOW_IDMAP;
    return flags;
}

/*
 * 0 if the guest kernel can do what the options ask for; as in the Rust virtiofsd, one that
 * cannot (too old for --posix-acl or --security-label) gets EPROTO and does not mount.
 */
static int init_check(const struct pt_config *cfg, uint64_t guest)
{
    const uint64_t acl = FUSE_POSIX_ACL | FUSE_DONT_MASK | FUSE_SETXATTR_EXT;

    if (cfg->posix_acl && (guest & acl) != acl) {
        log_error("fuse: --posix-acl: the guest kernel does not support POSIX ACLs");
        return -EPROTO;
    }
    if (cfg->security_label && !(guest & FUSE_SECURITY_CTX)) {
        log_error("fuse: --security-label: the guest kernel does not send security contexts");
        return -EPROTO;
    }
    return 0;
}

static void do_init(struct fuse_req *req)
{
    struct fuse_init_in in = {0};
    memcpy(&in, req->arg, req->arglen < sizeof(in) ? req->arglen : sizeof(in));
    struct fuse_init_out out = {.major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION};

    if (in.major < 7 || (in.major == 7 && in.minor < FUSE_MIN_MINOR)) {
        log_error("fuse: guest speaks FUSE %u.%u, need 7.%u or later", in.major, in.minor,
                  FUSE_MIN_MINOR);
        reply_err(req, -EPROTO);
        return;
    }
    if (in.major > 7) { /* the kernel retries INIT with our major version */
        reply_ok(req, &out, sizeof(out));
        return;
    }

    if (atomic_load(&req->se->initialized)) {
        /* The guest driver was reset and starts over: forget everything it knew. */
        log_info("fuse: INIT on an initialized session; resetting FUSE state");
        pt_reset(req->se->fs);
    }
    uint64_t guest = in.flags;
    if (guest & FUSE_INIT_EXT)
        guest |= (uint64_t)in.flags2 << 32;
    int err = init_check(pt_get_config(req->se->fs), guest);
    if (err < 0) {
        atomic_store(&req->se->initialized, false);
        req->se->flags = 0;
        if (journal(req))
            sj_new_mount(journal(req), &req->tag, NULL);
        reply_err(req, err);
        return;
    }
    uint64_t flags = guest & init_offer(pt_get_config(req->se->fs));

    out.minor = in.minor < FUSE_KERNEL_MINOR_VERSION ? in.minor : FUSE_KERNEL_MINOR_VERSION;
    out.flags = (uint32_t)flags;
    out.flags2 = (uint32_t)(flags >> 32);
    out.max_readahead = in.max_readahead;
    out.max_write = FUSE_MAX_WRITE;
    out.max_background = 64;
    out.congestion_threshold = 48;
    out.time_gran = 1;
    out.max_pages = MAX_PAGES;

    req->se->proto_minor = out.minor;
    req->se->flags = flags;
    pt_init(req->se->fs, flags);
    atomic_store(&req->se->initialized, true);
    log_info("fuse: session initialized, protocol 7.%u, flags 0x%llx", out.minor,
             (unsigned long long)flags);
    if (journal(req)) {
        struct fuse_session_init init;

        fuse_session_get_init(req->se, &init);
        sj_new_mount(journal(req), &req->tag, &init);
    }
    /* Before 7.23 the reply struct was shorter; older kernels reject a longer one. */
    reply_ok(req, &out, out.minor < 23 ? FUSE_COMPAT_22_INIT_OUT_SIZE : sizeof(out));
}

static void do_destroy(struct fuse_req *req)
{
    atomic_store(&req->se->initialized, false);
    req->se->flags = 0;
    pt_reset(req->se->fs);
    if (journal(req))
        sj_new_mount(journal(req), &req->tag, NULL);
    reply_ok(req, NULL, 0);
}

static void do_interrupt(struct fuse_req *req)
{
    /* Only a waiting lock request can be interrupted; every other request runs to completion
     * quickly. The interrupted request answers EINTR; INTERRUPT itself gets no reply. */
    uint64_t target = ARG(req, struct fuse_interrupt_in)->unique;
    if (!pt_lock_interrupt(req->se->fs, target))
        log_debug("fuse: INTERRUPT of request %llu: not waiting", (unsigned long long)target);
}

/* ---- requests that must not run twice -------------------------------------------------------
 *
 * After a restart of the daemon, a request the guest never saw answered is served again
 * (resubmitted, with its tag of then): it may have run already. Most requests can simply run
 * again; those of once_ops[] cannot: a second run would fail where the first succeeded
 * (EEXIST, ENOENT) or have its effect twice. Before one runs, its intent is journaled (with
 * what deciding later needs); a resubmission that finds the intent of its first run asks the
 * op's done() whether the effect is already there, and if so answers as the first run would
 * have, journaling what that run would have. Without an intent the first run never started:
 * it runs as any request.
 */

struct once_names {
    const char *name, *name2; /* the entry (RENAME: old, new; SYMLINK: name, target) */
};

/* The names of a request of once_ops[]; false if malformed (the handler will answer EINVAL). */
static bool once_decode(const struct fuse_req *req, struct once_names *n)
{
    const char *names[2] = {NULL, NULL};
    struct pt_secctx sc;
    struct pt_ctx ctx;
    size_t off = 0;
    bool ok;

    switch (req->in.opcode) {
    case FUSE_SYMLINK:
        ok = creating_request(req, 0, names, 2, &ctx, &sc) == 0;
        break;
    case FUSE_MKDIR:
        ok = creating_request(req, sizeof(struct fuse_mkdir_in), names, 1, &ctx, &sc) == 0;
        break;
    case FUSE_MKNOD:
        ok = creating_request(req, sizeof(struct fuse_mknod_in), names, 1, &ctx, &sc) == 0;
        break;
    case FUSE_CREATE:
        ok = creating_request(req, sizeof(struct fuse_create_in), names, 1, &ctx, &sc) == 0;
        break;
    case FUSE_RENAME:
    case FUSE_RENAME2:
        off = req->in.opcode == FUSE_RENAME ? sizeof(struct fuse_rename_in)
                                            : sizeof(struct fuse_rename2_in);
        names[0] = arg_name_to(req, &off, req->arglen);
        names[1] = names[0] ? arg_name_to(req, &off, req->arglen) : NULL;
        ok = names[1] != NULL;
        break;
    case FUSE_LINK:
        off = sizeof(struct fuse_link_in);
        /* fall through */
    default: /* UNLINK, RMDIR */
        names[0] = arg_name_to(req, &off, req->arglen);
        ok = names[0] != NULL;
    }
    n->name = names[0];
    n->name2 = names[1];
    return ok;
}

/* The intents. Entry ops: the parent and the name (what the reply's entry would be). */
static bool intent_name(struct fuse_req *req, struct sj_intent *in)
{
    struct once_names n;

    if (!once_decode(req, &n))
        return false;
    in->name = n.name;
    return true;
}

/* RENAME: also the source's identity (it is the new name's, once it ran). */
static bool intent_rename(struct fuse_req *req, struct sj_intent *in)
{
    struct once_names n;

    if (!once_decode(req, &n))
        return false;
    in->name = n.name;
    in->name2 = n.name2;
    if (req->in.opcode == FUSE_RENAME2) {
        in->nodeid2 = ARG(req, struct fuse_rename2_in)->newdir;
        in->flags = ARG(req, struct fuse_rename2_in)->flags;
    } else {
        in->nodeid2 = ARG(req, struct fuse_rename_in)->newdir;
    }
    if (pt_name_ids(req->se->fs, &req->ctx, req->in.nodeid, n.name, &in->dev, &in->ino) < 0)
        in->dev = in->ino = 0; /* it fails then: its rerun fails alike */
    return true;
}

/* LINK: the inode linked (the new name's, once it ran). */
static bool intent_link(struct fuse_req *req, struct sj_intent *in)
{
    uint32_t type;

    if (!intent_name(req, in))
        return false;
    in->nodeid2 = ARG(req, struct fuse_link_in)->oldnodeid;
    if (pt_state_inode_ids(req->se->fs, in->nodeid2, &in->dev, &in->ino, &type) < 0)
        in->dev = in->ino = 0;
    return true;
}

/* WRITE: only one that appends (host O_APPEND), with the file's size before it. */
static bool intent_write(struct fuse_req *req, struct sj_intent *in)
{
    const struct fuse_write_in *w = ARG(req, struct fuse_write_in);

    /* The guest's open flags say whether the file appends: anything else costs nothing. */
    return (w->flags & O_APPEND) &&
           pt_write_appends(req->se->fs, req->in.nodeid, w->fh, &in->size) == 1;
}

/* The "already done?" checks. Entry ops: the name is there as asked: answered by a LOOKUP of
 * it (journaled as an ENTRY), a CREATE also by opening it as the first run did. */
static bool done_entry(struct fuse_req *req, const struct sj_intent *in)
{
    struct once_names n;
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    uint32_t want;
    char target[PATH_MAX];
    ssize_t len = 0;
    uint64_t dev = 0, ino = 0;
    uint32_t type;
    struct pt_fs *fs = req->se->fs;

    if (!once_decode(req, &n) || pt_lookup(fs, &req->ctx, req->in.nodeid, n.name, &out.e) < 0)
        return false;
    switch (req->in.opcode) {
    case FUSE_MKDIR:
        want = S_IFDIR;
        break;
    case FUSE_MKNOD:
        want = ARG(req, struct fuse_mknod_in)->mode & S_IFMT;
        break;
    case FUSE_SYMLINK:
        want = S_IFLNK;
        len = pt_readlink(fs, &req->ctx, out.e.nodeid, target, sizeof(target));
        break;
    case FUSE_LINK:
        want = out.e.attr.mode & S_IFMT;
        pt_state_inode_ids(fs, out.e.nodeid, &dev, &ino, &type);
        break;
    default: /* CREATE */
        want = S_IFREG;
    }
    if ((out.e.attr.mode & S_IFMT) != want ||
        (req->in.opcode == FUSE_SYMLINK &&
         (len < 0 || (size_t)len != strlen(n.name2) || memcmp(target, n.name2, (size_t)len))) ||
        (req->in.opcode == FUSE_LINK && (!in->ino || dev != in->dev || ino != in->ino))) {
        pt_forget(fs, out.e.nodeid, 1); /* another file: the request runs (and fails) */
        return false;
    }
    if (req->in.opcode == FUSE_CREATE) {
        struct fuse_open_in o = {.flags = ARG(req, struct fuse_create_in)->flags &
                                          ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC)};
        int ret = pt_open(fs, &req->ctx, out.e.nodeid, &o, &out.o);

        if (ret < 0) {
            pt_forget(fs, out.e.nodeid, 1);
            reply_err(req, ret);
            return true;
        }
        reply_ok(req, &out, sizeof(out));
        note_entry(req, req->in.nodeid, n.name, &out.e);
        if (req->ok)
            note_open(req, out.e.nodeid, &out.o, false);
        return true;
    }
    reply_ok(req, &out.e, sizeof(out.e));
    note_entry(req, req->in.nodeid, n.name, &out.e);
    return true;
}

/* UNLINK, RMDIR: the name is gone. */
static bool done_unlink(struct fuse_req *req, const struct sj_intent *in)
{
    struct once_names n;
    uint64_t dev, ino;

    (void)in;
    if (!once_decode(req, &n) ||
        pt_name_ids(req->se->fs, &req->ctx, req->in.nodeid, n.name, &dev, &ino) != -ENOENT)
        return false;
    sj_unlink(journal(req), &req->tag, req->in.nodeid, n.name);
    reply_ok(req, NULL, 0);
    return true;
}

/* RENAME: the source is under the new name and not under the old one. */
static bool done_rename(struct fuse_req *req, const struct sj_intent *in)
{
    struct once_names n;
    uint64_t dev, ino;
    struct pt_fs *fs = req->se->fs;

    if (!in->ino || !once_decode(req, &n) ||
        pt_name_ids(fs, &req->ctx, in->nodeid2, n.name2, &dev, &ino) < 0 || dev != in->dev ||
        ino != in->ino)
        return false;
    if (pt_name_ids(fs, &req->ctx, req->in.nodeid, n.name, &dev, &ino) == 0 && dev == in->dev &&
        ino == in->ino)
        return false;
    sj_rename(journal(req), &req->tag, req->in.nodeid, n.name, in->nodeid2, n.name2, in->flags);
    reply_ok(req, NULL, 0);
    return true;
}

/* An appending WRITE: the file grew by at least its length since. */
static bool done_write(struct fuse_req *req, const struct sj_intent *in)
{
    const struct fuse_write_in *w = ARG(req, struct fuse_write_in);
    struct fuse_write_out out = {.size = w->size};
    uint64_t size;

    if (pt_write_appends(req->se->fs, req->in.nodeid, w->fh, &size) != 1 || size < in->size ||
        size - in->size < w->size)
        return false;
    reply_ok(req, &out, sizeof(out));
    return true;
}

struct once_op {
    /* Fills what the op's check needs (opcode, nodeid and unique are filled); false: nothing
     * to journal (a WRITE that does not append, a malformed request). */
    bool (*intent)(struct fuse_req *req, struct sj_intent *in);
    /* With the intent of the first run: true if its effect is there and req was answered. */
    bool (*done)(struct fuse_req *req, const struct sj_intent *in);
};

static const struct once_op once_ops[] = {
    [FUSE_CREATE] = {intent_name, done_entry},     [FUSE_MKDIR] = {intent_name, done_entry},
    [FUSE_MKNOD] = {intent_name, done_entry},      [FUSE_SYMLINK] = {intent_name, done_entry},
    [FUSE_LINK] = {intent_link, done_entry},       [FUSE_UNLINK] = {intent_name, done_unlink},
    [FUSE_RMDIR] = {intent_name, done_unlink},     [FUSE_RENAME] = {intent_rename, done_rename},
    [FUSE_RENAME2] = {intent_rename, done_rename}, [FUSE_WRITE] = {intent_write, done_write},
};

/*
 * For a request of once_ops[] with a journal: a resubmitted one whose first run's effect is
 * there is answered (true); otherwise its intent is journaled and it runs (false).
 */
static bool once_answered(struct fuse_req *req)
{
    uint32_t code = req->in.opcode;
    const struct once_op *o =
        code < sizeof(once_ops) / sizeof(once_ops[0]) ? &once_ops[code] : NULL;
    struct sj *j = journal(req);
    struct sj_intent in = {0};

    if (!j || !o || !o->intent)
        return false;
    if (req->resubmitted && sj_intent_take(j, &req->tag, &in) && in.opcode == code &&
        in.unique == req->in.unique && in.nodeid == req->in.nodeid && o->done(req, &in))
        return true;
    in = (struct sj_intent){.opcode = code, .nodeid = req->in.nodeid, .unique = req->in.unique};
    if (o->intent(req, &in))
        sj_intent(j, &req->tag, &in);
    return false;
}

/* ---- the opcode table -------------------------------------------------------------------- */

#define OP(code, fn, type)         [code] = {#code, sizeof(type), fn, REF_NONE}
#define OP0(code, fn)              [code] = {#code, 0, fn, REF_NONE}
#define OPREF(code, fn, type, ref) [code] = {#code, sizeof(type), fn, ref}
#define OP0REF(code, fn, ref)      [code] = {#code, 0, fn, ref}

static const struct fuse_op fuse_ops[] = {
    OP0REF(FUSE_LOOKUP, do_lookup, REF_ENTRY),
    OP(FUSE_FORGET, do_forget, struct fuse_forget_in),
    OP(FUSE_GETATTR, do_getattr, struct fuse_getattr_in),
    OP(FUSE_SETATTR, do_setattr, struct fuse_setattr_in),
    OP0(FUSE_READLINK, do_readlink),
    OP0REF(FUSE_SYMLINK, do_symlink, REF_ENTRY),
    OPREF(FUSE_MKNOD, do_mknod, struct fuse_mknod_in, REF_ENTRY),
    OPREF(FUSE_MKDIR, do_mkdir, struct fuse_mkdir_in, REF_ENTRY),
    OP0(FUSE_UNLINK, do_unlink),
    OP0(FUSE_RMDIR, do_rmdir),
    OP(FUSE_RENAME, do_rename, struct fuse_rename_in),
    OPREF(FUSE_LINK, do_link, struct fuse_link_in, REF_ENTRY),
    OPREF(FUSE_OPEN, do_open, struct fuse_open_in, REF_OPEN),
    OP(FUSE_READ, do_read, struct fuse_read_in),
    OP(FUSE_WRITE, do_write, struct fuse_write_in),
    OP0(FUSE_STATFS, do_statfs),
    OP(FUSE_RELEASE, do_release, struct fuse_release_in),
    OP(FUSE_FSYNC, do_fsync, struct fuse_fsync_in),
    OP(FUSE_GETLK, do_getlk, struct fuse_lk_in),
    OP(FUSE_SETLK, do_setlk, struct fuse_lk_in),
    OP(FUSE_SETLKW, do_setlkw, struct fuse_lk_in),
    [FUSE_SETXATTR] = {"FUSE_SETXATTR", FUSE_COMPAT_SETXATTR_IN_SIZE, do_setxattr, REF_NONE},
    OP(FUSE_GETXATTR, do_getxattr, struct fuse_getxattr_in),
    OP(FUSE_LISTXATTR, do_listxattr, struct fuse_getxattr_in),
    OP0(FUSE_REMOVEXATTR, do_removexattr),
    OP(FUSE_FLUSH, do_flush, struct fuse_flush_in),
    [FUSE_INIT] = {"FUSE_INIT", 16, do_init, REF_NONE}, /* pre-7.36 kernels send the short struct */
    OPREF(FUSE_OPENDIR, do_opendir, struct fuse_open_in, REF_OPENDIR),
    OP(FUSE_READDIR, do_readdir, struct fuse_read_in),
    OP(FUSE_RELEASEDIR, do_releasedir, struct fuse_release_in),
    OP(FUSE_FSYNCDIR, do_fsyncdir, struct fuse_fsync_in),
    OP(FUSE_ACCESS, do_access, struct fuse_access_in),
    OPREF(FUSE_CREATE, do_create, struct fuse_create_in, REF_ENTRY_OPEN),
    OP(FUSE_INTERRUPT, do_interrupt, struct fuse_interrupt_in),
    OP0(FUSE_DESTROY, do_destroy),
    OP(FUSE_BATCH_FORGET, do_batch_forget, struct fuse_batch_forget_in),
    OP(FUSE_FALLOCATE, do_fallocate, struct fuse_fallocate_in),
    OP(FUSE_READDIRPLUS, do_readdirplus, struct fuse_read_in),
    OP(FUSE_RENAME2, do_rename2, struct fuse_rename2_in),
    OP(FUSE_LSEEK, do_lseek, struct fuse_lseek_in),
    OP(FUSE_COPY_FILE_RANGE, do_copy_file_range, struct fuse_copy_file_range_in),
    OP0(FUSE_SYNCFS, do_syncfs),
    OPREF(FUSE_TMPFILE, do_tmpfile, struct fuse_create_in, REF_ENTRY_OPEN),
};

/*
 * Requests whose host permission check may depend on the caller's supplementary groups, and
 * that change nothing when they fail with EACCES/EPERM, so running one again is safe. The
 * second inode involved, if any, is returned in *nodeid2.
 */
static bool group_retryable(const struct fuse_req *req, uint64_t *nodeid2)
{
    *nodeid2 = 0;
    switch (req->in.opcode) {
    case FUSE_RENAME:
        *nodeid2 = ARG(req, struct fuse_rename_in)->newdir;
        return true;
    case FUSE_RENAME2:
        *nodeid2 = ARG(req, struct fuse_rename2_in)->newdir;
        return true;
    case FUSE_LINK:
        *nodeid2 = ARG(req, struct fuse_link_in)->oldnodeid;
        return true;
    case FUSE_LOOKUP:
    case FUSE_SETATTR:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_SYMLINK:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_OPEN:
    case FUSE_CREATE:
    case FUSE_TMPFILE:
    case FUSE_OPENDIR:
    case FUSE_SETXATTR:
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_READLINK:
        return true;
    default:
        return false;
    }
}

/* Runs the handler; a held-back permission error gets one more try with the groups that may
 * grant the access, and is replied if that cannot help. */
static void run_handler(struct fuse_req *req, const struct fuse_op *op)
{
    uint64_t nodeid2;
    req->may_retry = group_retryable(req, &nodeid2);
    op->handler(req);
    if (!req->held_error)
        return;
    int err = req->held_error;
    req->may_retry = false;
    req->held_error = 0;
    gid_t groups[PT_RETRY_GROUPS_MAX];
    const struct fuse_setattr_in *sa =
        req->in.opcode == FUSE_SETATTR ? ARG(req, struct fuse_setattr_in) : NULL;
    int n = pt_retry_groups(req->se->fs, &req->ctx, req->in.nodeid, nodeid2, sa, groups);
    if (n == 0 || creds_set_groups(groups, (size_t)n) < 0) {
        reply_err(req, err);
        return;
    }
    op->handler(req);
    if (creds_set_groups(NULL, 0) < 0)
        log_error("fuse: cannot drop supplementary groups: %m");
}

static bool is_noreply(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT;
}

static const struct fuse_op *find_op(uint32_t opcode)
{
    if (opcode >= sizeof(fuse_ops) / sizeof(fuse_ops[0]) || !fuse_ops[opcode].handler)
        return NULL;
    return &fuse_ops[opcode];
}

/* Copies the request header and arguments into scratch; 0 or a negative errno to reply. */
static int load_request(struct fuse_req *req)
{
    const struct vq_elem *elem = req->elem;
    /* The header was copied and len checked against rd_len by the caller. */
    size_t args = elem->rd_len - sizeof(req->in);
    if (req->in.opcode == FUSE_WRITE) /* only the struct: the data stays in guest memory */
        args = args < sizeof(struct fuse_write_in) ? args : sizeof(struct fuse_write_in);
    if (args > MAX_IN_ARGS)
        return -E2BIG;
    iov_to_buf(elem->iov, elem->rd_num, sizeof(req->in), req->s->in, args);
    req->arg = req->s->in;
    req->arglen = args;
    return 0;
}

void fuse_session_quiescent(struct fuse_session *se)
{
    pt_quiescent(se->fs);
}

void fuse_session_idle(struct fuse_session *se)
{
    pt_idle(se->fs);
}

uint32_t fuse_session_process(struct fuse_session *se, struct fuse_scratch *s,
                              const struct vq_elem *elem, const struct fuse_req_ctx *ctx)
{
    struct fuse_req req = {.se = se, .s = s, .elem = elem};
    if (ctx) {
        req.late = ctx->late.sink ? &ctx->late : NULL;
        req.tag = ctx->tag;
        req.resubmitted = ctx->resubmitted;
    }
    if (elem->rd_len < sizeof(req.in)) {
        log_error("fuse: request of %zu bytes is shorter than fuse_in_header", elem->rd_len);
        return 0; /* without a header there is no unique id to answer */
    }
    iov_to_buf(elem->iov, elem->rd_num, 0, &req.in, sizeof(req.in));
    req.ctx = (struct pt_ctx){.uid = req.in.uid, .gid = req.in.gid, .pid = req.in.pid};
    const struct fuse_op *op = find_op(req.in.opcode);
    req.op = op;
    log_trace("fuse: %s unique %llu nodeid %llu len %u", op ? op->name : "?",
              (unsigned long long)req.in.unique, (unsigned long long)req.in.nodeid, req.in.len);

    int err = 0;
    if (req.in.len != elem->rd_len) {
        log_error("fuse: header says %u bytes, request has %zu", req.in.len, elem->rd_len);
        err = -EINVAL;
    } else if (!op) {
        log_debug("fuse: unsupported opcode %u", req.in.opcode);
        err = -ENOSYS;
    } else if (!atomic_load(&se->initialized) && req.in.opcode != FUSE_INIT) {
        err = -EIO;
    } else if ((err = idmapped_caller(se, req.in.opcode, &req.ctx)) < 0) {
        log_debug("fuse: %s without the caller's ids; refused", op->name);
    } else if ((err = load_request(&req)) == 0 && req.arglen < op->in_size) {
        log_error("fuse: %s with %zu argument bytes, needs %zu", op->name, req.arglen, op->in_size);
        err = -EINVAL;
    }
    if (err) {
        if (!is_noreply(req.in.opcode))
            reply_err(&req, err);
        return req.out_len;
    }
    if (!once_answered(&req))
        run_handler(&req, op);
    return req.out_len;
}

/* ---- lifetime -------------------------------------------------------------------------- */

struct fuse_session *fuse_session_new(struct pt_fs *fs)
{
    struct fuse_session *se = calloc(1, sizeof(*se));
    if (!se)
        return NULL;
    se->fs = fs;
    atomic_init(&se->initialized, false);
    return se;
}

void fuse_session_free(struct fuse_session *se)
{
    free(se);
}

void fuse_session_ended(struct fuse_session *se)
{
    if (se->journal)
        sj_new_mount(se->journal, NULL, NULL);
}

void fuse_session_reset(struct fuse_session *se)
{
    atomic_store(&se->initialized, false);
    se->proto_minor = 0;
    se->flags = 0;
    pt_reset(se->fs);
}

bool fuse_session_initialized(const struct fuse_session *se)
{
    return atomic_load(&se->initialized);
}

struct pt_fs *fuse_session_fs(struct fuse_session *se)
{
    return se->fs;
}

void fuse_session_set_journal(struct fuse_session *se, struct sj *j)
{
    se->journal = j;
}

struct sj *fuse_session_journal(const struct fuse_session *se)
{
    return se->journal;
}

bool fuse_session_get_init(const struct fuse_session *se, struct fuse_session_init *out)
{
    memset(out, 0, sizeof(*out));
    if (!atomic_load(&se->initialized))
        return false;
    *out = (struct fuse_session_init){
        .major = FUSE_KERNEL_VERSION,
        .minor = se->proto_minor,
        .flags = se->flags,
        .max_write = FUSE_MAX_WRITE,
        .max_pages = MAX_PAGES,
    };
    return true;
}

int fuse_session_check_init(const struct fuse_session *se, const struct fuse_session_init *init)
{
    uint64_t offer = init_offer(pt_get_config(se->fs));

    if (init->major != FUSE_KERNEL_VERSION || init->minor < FUSE_MIN_MINOR ||
        init->minor > FUSE_KERNEL_MINOR_VERSION) {
        log_debug("fuse: saved INIT: protocol %u.%u", init->major, init->minor);
        return -EPROTO;
    }
    if (init->flags & ~offer) {
        log_debug("fuse: saved INIT: flags 0x%llx not offered here",
                  (unsigned long long)(init->flags & ~offer));
        return -EPROTO;
    }
    if (init->max_write > FUSE_MAX_WRITE || init->max_pages > MAX_PAGES)
        return -EPROTO;
    return 0;
}

uint64_t fuse_session_offer(const struct fuse_session *se)
{
    return init_offer(pt_get_config(se->fs));
}

void fuse_session_install_init(struct fuse_session *se, const struct fuse_session_init *init)
{
    se->proto_minor = init->minor;
    se->flags = init->flags;
    pt_init(se->fs, init->flags);
    atomic_store(&se->initialized, true);
}

struct fuse_scratch *fuse_scratch_new(void)
{
    return calloc(1, sizeof(struct fuse_scratch));
}

void fuse_scratch_free(struct fuse_scratch *s)
{
    if (!s)
        return;
    free(s->out);
    free(s);
}
