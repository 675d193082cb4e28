/* SPDX-License-Identifier: Apache-2.0 */
/* Per-thread fsuid/fsgid switching; see include/creds.h. */
#include "creds.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* What this thread's fsuid/fsgid are known to be; valid is false until the first switch. */
static __thread struct {
    bool valid;
    uid_t uid;
    gid_t gid;
} cur;

/*
 * The syscalls return the previous id whether or not they succeeded, so success is checked by
 * reading the id back (passing -1 changes nothing).
 */
static int set_fsuid(uid_t uid)
{
    syscall(SYS_setfsuid, uid);
    return (uid_t)syscall(SYS_setfsuid, (uid_t)-1) == uid ? 0 : -EPERM;
}

static int set_fsgid(gid_t gid)
{
    syscall(SYS_setfsgid, gid);
    return (gid_t)syscall(SYS_setfsgid, (gid_t)-1) == gid ? 0 : -EPERM;
}

static int switch_ids(uid_t uid, gid_t gid)
{
    bool uid_first = uid == 0; /* back to root: regain everything before the gid changes */
    int ret = 0;

    if (uid_first && (!cur.valid || cur.uid != uid))
        ret = set_fsuid(uid);
    if (ret == 0 && (!cur.valid || cur.gid != gid))
        ret = set_fsgid(gid);
    if (ret == 0 && !uid_first && (!cur.valid || cur.uid != uid))
        ret = set_fsuid(uid);
    return ret;
}

int creds_set(uid_t uid, gid_t gid)
{
    int ret;

    if (cur.valid && cur.uid == uid && cur.gid == gid)
        return 0;
    ret = switch_ids(uid, gid);
    if (ret < 0) {
        cur.valid = false; /* unknown state: the next call sets both ids again */
        log_warn("cannot switch to fsuid %u fsgid %u", (unsigned)uid, (unsigned)gid);
        return ret;
    }
    cur.valid = true;
    cur.uid = uid;
    cur.gid = gid;
    return 0;
}

struct creds_scope creds_daemon_begin(int *status)
{
    struct creds_scope s = {.status = status};

    *status = 0;
    if (!cur.valid || (cur.uid == 0 && cur.gid == 0))
        return s;
    s.switched = true;
    s.uid = cur.uid;
    s.gid = cur.gid;
    *status = creds_set(0, 0);
    return s;
}

void creds_daemon_end(struct creds_scope *s)
{
    int back;

    if (!s->switched)
        return;
    back = creds_set(s->uid, s->gid);
    if (back < 0 && *s->status >= 0)
        *s->status = back;
}

int creds_set_groups(const gid_t *groups, size_t n)
{
    /* The raw syscall: glibc's setgroups() would apply it to every thread of the process. */
    return syscall(SYS_setgroups, n, groups) < 0 ? -errno : 0;
}
