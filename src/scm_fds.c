/* SPDX-License-Identifier: Apache-2.0 */
#include "scm_fds.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

int scm_send(int sock, struct iovec *iov, int iovcnt, const int *fds, unsigned nfds)
{
    if (nfds > SCM_FDS_MAX)
        return -EINVAL;
    char control[CMSG_SPACE(SCM_FDS_MAX * sizeof(int))];
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    if (nfds) {
        memset(control, 0, CMSG_SPACE(nfds * sizeof(int)));
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    for (;;) {
        /* Empty parts carry nothing: a message that is all sent leaves none. */
        while (mh.msg_iovlen && mh.msg_iov->iov_len == 0) {
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (!mh.msg_iovlen && !mh.msg_controllen)
            return 0;
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        /* The fds went with the first bytes; the rest (a full socket) goes without them. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        while (n > 0) {
            size_t take = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;
            mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + take;
            mh.msg_iov->iov_len -= take;
            n -= (ssize_t)take;
            if (mh.msg_iov->iov_len == 0) {
                mh.msg_iov++;
                mh.msg_iovlen--;
            }
        }
    }
}

int scm_take_fds(struct msghdr *mh, int *fds, unsigned max, unsigned *n)
{
    int ret = (mh->msg_flags & MSG_CTRUNC) ? -EMSGSIZE : 0;
    *n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*n < max && ret == 0) {
                fds[(*n)++] = fd;
            } else {
                close(fd);
                ret = -EMSGSIZE;
            }
        }
    }
    if (ret < 0) {
        for (unsigned i = 0; i < *n; i++)
            close(fds[i]);
        *n = 0;
    }
    return ret;
}
