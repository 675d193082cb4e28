/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: the vhost-user message handler (vu_dev_handle_message) fed a stream of
 * messages over a socketpair, with fds attached through SCM_RIGHTS, for a device whose FUSE
 * session serves a passthrough filesystem on a temporary share. Every input runs twice: on a
 * device whose queue worker serves requests itself, and on one that hands them to a thread
 * pool (--thread-pool-size), where a descriptor head the guest memory names twice in an
 * avail ring would have its pool job queued twice. The devices live for the whole run and are
 * reset (vu_dev_reset) after every input, as after a disconnect.
 *
 * Input:
 *   u16 image_len, u8 image[image_len]   copied to the start of the small memfd, so a
 *                                        memory table built on it can hold real rings and
 *                                        FUSE requests for the queue workers to serve
 *   then messages, each
 *     u8  nfds       (value % 9) fds attached to the message
 *     u16 kinds      2 bits per fd: 0 the small memfd (64 KiB), 1 a big sparse memfd (2 MiB),
 *                    2 an eventfd, 3 /dev/null (cannot be mapped)
 *     u8  flags      bit0: overwrite the header's size with the payload length
 *                    bit1: kind 2 is a pipe's write end instead (a DEVICE_STATE SAVE; the
 *                          harness drains the pipe), bit2: its read end (a LOAD; the harness
 *                          wrote the first payload byte's worth of bytes and closed its end)
 *                    (the small memfd doubles as a dirty-page log: SET_LOG_BASE)
 *     u8  hdr[12]    request, flags, size (little-endian u32s)
 *     u16 len, u8 payload[len]
 *
 * All of it is written to one end of the socketpair (one sendmsg per message, so its fds
 * travel with its header), that end is shut down for writing so the daemon meets EOF instead
 * of blocking, and vu_dev_handle_message runs until it ends the connection; its replies are
 * read and discarded as they come. After the reset: no fd left open, nothing outside the
 * share, the share put back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <urcu.h>

#include "fuse_server.h"
#include "fuzz_common.h"
#include "passthrough.h"
#include "vhost_user.h"

#define SMALL_SIZE   (64u * 1024u)
#define BIG_SIZE     (2u * 1024u * 1024u)
#define MAX_MESSAGES 128
#define MAX_FDS      8
#define HDR_SIZE     12
#define NQUEUES      3 /* hiprio + 2 request queues */

#define POOL_THREADS 2

static struct pt_fs *fs;
static struct fuse_session *se;
static struct vu_dev *dev, *pool_dev;
static int base_fds;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct pt_config cfg = {
        .cache = CACHE_AUTO,
        .xattr = true,
        .readdirplus = true,
    };
    se = fuzz_open_session(argc, argv, &cfg, &fs);
    /* One worker thread for all queues, whatever the machine: every input goes through the
     * paths of queues sharing a thread (one stopping while the others run). */
    struct vu_dev_config dcfg = {
        .num_request_queues = NQUEUES - 1, .queue_threads = 1, .tag = "fuzz"}; /* GET_CONFIG */
    dev = vu_dev_new(se, &dcfg);
    dcfg.pool_threads = POOL_THREADS;
    pool_dev = vu_dev_new(se, &dcfg);
    FUZZ_CHECK(dev != NULL && pool_dev != NULL, "vu_dev_new");
    base_fds = fuzz_count_fds();
    return 0;
}

/* The fds a message can carry; fresh for every input (the daemon may write to them). */
static int msg_fds[4];
/* DEVICE_STATE's pipes: [0] a SAVE's (the daemon gets the write end), [1] a LOAD's. */
static int save_pipe[2] = {-1, -1}, load_pipe[2] = {-1, -1};

static void open_msg_fds(const uint8_t *image, size_t image_len)
{
    msg_fds[0] = memfd_create("fuzz-small", MFD_CLOEXEC);
    FUZZ_CHECK(msg_fds[0] >= 0 && ftruncate(msg_fds[0], SMALL_SIZE) == 0, "memfd");
    if (image_len)
        FUZZ_CHECK(pwrite(msg_fds[0], image, image_len, 0) == (ssize_t)image_len, "pwrite");
    msg_fds[1] = memfd_create("fuzz-big", MFD_CLOEXEC);
    FUZZ_CHECK(msg_fds[1] >= 0 && ftruncate(msg_fds[1], BIG_SIZE) == 0, "memfd");
    msg_fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    FUZZ_CHECK(msg_fds[2] >= 0, "eventfd");
    msg_fds[3] = open("/dev/null", O_RDWR | O_CLOEXEC);
    FUZZ_CHECK(msg_fds[3] >= 0, "/dev/null");
}

static void close_msg_fds(void)
{
    for (unsigned i = 0; i < 4; i++)
        close(msg_fds[i]);
    for (unsigned i = 0; i < 2; i++) {
        if (save_pipe[i] >= 0)
            close(save_pipe[i]);
        if (load_pipe[i] >= 0)
            close(load_pipe[i]);
        save_pipe[i] = load_pipe[i] = -1;
    }
}

/* The fd of kind 2 for a message with these flags: the eventfd, or a DEVICE_STATE pipe end
 * (made on first use, once per input). */
static int kind2_fd(uint8_t flags, uint8_t load_bytes)
{
    if (flags & 2) {
        if (save_pipe[0] < 0)
            FUZZ_CHECK(pipe2(save_pipe, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2");
        return save_pipe[1];
    }
    if (flags & 4) {
        if (load_pipe[0] < 0) {
            FUZZ_CHECK(pipe2(load_pipe, O_CLOEXEC) == 0, "pipe2");
            static const uint8_t junk[255];
            FUZZ_CHECK(write(load_pipe[1], junk, load_bytes) == load_bytes, "write");
            close(load_pipe[1]);
            load_pipe[1] = -1;
        }
        return load_pipe[0];
    }
    return msg_fds[2];
}

/* Sends one message with its fds; false when the socket is full (the rest is dropped). */
static bool send_message(int fd, const uint8_t *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n == (ssize_t)len;
}

/* Reads and discards whatever the daemon replied so far. */
static void drain_replies(int fd)
{
    char buf[4096];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

/* What a SAVE wrote so far (the pipe is non-blocking on our side). */
static void drain_save_pipe(void)
{
    char buf[4096];
    while (save_pipe[0] >= 0 && read(save_pipe[0], buf, sizeof(buf)) > 0)
        ;
}

static uint8_t msgbuf[HDR_SIZE + 65536];

/* One input on device d (the session is shared: only one device is connected at a time). */
static void run_input(struct vu_dev *d, const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    const uint8_t *image;
    size_t image_len = fuzz_bytes(&in, fuzz_u16(&in) % (SMALL_SIZE + 1), &image);
    open_msg_fds(image, image_len);

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    int front = sv[0], back = sv[1];

    size_t sent = 0;
    for (unsigned m = 0; m < MAX_MESSAGES && in.left > 0; m++) {
        unsigned nfds = fuzz_u8(&in) % (MAX_FDS + 1);
        uint16_t kinds = fuzz_u16(&in);
        uint8_t flags = fuzz_u8(&in);
        const uint8_t *hdr;
        size_t hlen = fuzz_bytes(&in, HDR_SIZE, &hdr);
        const uint8_t *payload;
        size_t plen = fuzz_bytes(&in, fuzz_u16(&in), &payload);
        memcpy(msgbuf, hdr, hlen);
        memset(msgbuf + hlen, 0, HDR_SIZE - hlen);
        if (flags & 1) {
            uint32_t s = (uint32_t)plen;
            memcpy(msgbuf + 8, &s, sizeof(s));
        }
        memcpy(msgbuf + HDR_SIZE, payload, plen);
        int fds[MAX_FDS];
        for (unsigned i = 0; i < nfds; i++) {
            unsigned kind = (kinds >> (2 * i)) & 3;
            fds[i] = kind == 2 ? kind2_fd(flags, plen ? payload[0] : 0) : msg_fds[kind];
        }
        if (!send_message(front, msgbuf, HDR_SIZE + plen, fds, nfds))
            break;
        sent += HDR_SIZE + plen;
    }
    /* EOF after the last byte: a read for more than was sent fails instead of blocking. */
    shutdown(front, SHUT_WR);

    /* Each call consumes at least one byte, so this ends; the bound is belt and braces. */
    for (size_t calls = 0; calls <= sent; calls++) {
        int ret = vu_dev_handle_message(d, back);
        drain_replies(front);
        drain_save_pipe();
        if (ret < 0)
            break;
    }

    close(back);
    close(front);
    /* Stops every queue: hangs (a libFuzzer timeout) if a pool job never finishes. */
    vu_dev_reset(d);
    close_msg_fds();
    fuzz_check_confinement();
    fuzz_restore_share();
    /* Each queue keeps the eventfd that stops its worker from its first start on (closed by
     * vu_dev_free only): at most one per queue of each device beyond the fds open before the
     * first input. */
    int fds = fuzz_count_fds();
    if (fds > base_fds + 2 * NQUEUES)
        fuzz_list_fds();
    FUZZ_CHECK(fds <= base_fds + 2 * NQUEUES, "%d fds open after the input, %d before the first",
               fds, base_fds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(dev, data, size);
    run_input(pool_dev, data, size);
    return 0;
}
