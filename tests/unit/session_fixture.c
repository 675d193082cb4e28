/* SPDX-License-Identifier: Apache-2.0 */
/* The session unit tests' share and direct requests; see session_fixture.h. */
#include "session_fixture.h"

#include <ftw.h>
#include <glib.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu.h>

char *sf_path(const char *dir, const char *name)
{
    return g_build_filename(dir, name, NULL);
}

void sf_put_file(const char *dir, const char *name, const char *data)
{
    char *p = sf_path(dir, name);

    g_assert_true(g_file_set_contents(p, data, -1, NULL));
    g_free(p);
}

void sf_put_dir(const char *dir, const char *name)
{
    char *p = sf_path(dir, name);

    g_assert_cmpint(mkdir(p, 0755), ==, 0);
    g_free(p);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

void sf_remove_tree(char *dir)
{
    g_assert_cmpint(nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
    g_free(dir);
}

void sf_caller_init(struct sf_caller *c)
{
    c->scratch = fuse_scratch_new();
    g_assert_nonnull(c->scratch);
    c->elem = g_malloc0(sizeof(*c->elem));
    c->out = g_malloc(SF_OUT_SIZE);
}

void sf_caller_free(struct sf_caller *c)
{
    fuse_scratch_free(c->scratch);
    g_free(c->elem);
    g_free(c->out);
    memset(c, 0, sizeof(*c));
}

int sf_request(struct sf_caller *c, struct fuse_session *se, const struct sf_req *r, void *out,
               size_t outlen)
{
    size_t total = sizeof(struct fuse_in_header) + r->arglen + r->extralen;
    uint8_t *buf = g_malloc0(total);
    const struct fuse_in_header h = {.len = (uint32_t)total,
                                     .opcode = r->opcode,
                                     .unique = r->unique,
                                     .nodeid = r->nodeid,
                                     .uid = getuid(),
                                     .gid = getgid(),
                                     .pid = 1};
    struct vq_elem *e = c->elem;
    struct fuse_out_header oh;
    uint32_t ret;

    memcpy(buf, &h, sizeof(h));
    if (r->arglen)
        memcpy(buf + sizeof(h), r->arg, r->arglen);
    if (r->extralen)
        memcpy(buf + sizeof(h) + r->arglen, r->extra, r->extralen);
    memset(e, 0, sizeof(*e));
    e->rd_num = e->wr_num = 1;
    e->iov[0] = (struct iovec){buf, total};
    e->iov[1] = (struct iovec){c->out, SF_OUT_SIZE};
    e->rd_len = total;
    e->wr_len = SF_OUT_SIZE;
    rcu_read_lock();
    ret = fuse_session_process(se, c->scratch, e, r->ctx);
    rcu_read_unlock();
    /* As a queue worker does between requests, and before it waits (its queue is empty). */
    fuse_session_quiescent(se);
    fuse_session_idle(se);
    g_free(buf);
    if (r->opcode == FUSE_FORGET || r->opcode == FUSE_BATCH_FORGET) {
        g_assert_cmpuint(ret, ==, 0);
        return 0;
    }
    if (ret == FUSE_REPLY_LATER)
        return 1;
    g_assert_cmpuint(ret, >=, sizeof(oh));
    memcpy(&oh, c->out, sizeof(oh));
    g_assert_cmpuint(oh.len, ==, ret);
    g_assert_cmpuint(oh.unique, ==, r->unique);
    if (oh.error == 0 && out) {
        g_assert_cmpuint(ret - sizeof(oh), >=, outlen);
        memcpy(out, c->out + sizeof(oh), outlen);
    }
    return oh.error;
}
