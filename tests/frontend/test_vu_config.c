/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device configuration (--tag through VHOST_USER_PROTOCOL_F_CONFIG: GET_CONFIG and
 * SET_CONFIG, hostile accesses included), VHOST_USER_RESET_DEVICE (the daemon serves on after
 * it, with a fresh FUSE session, no fd or thread left behind, and a journal that does not bring
 * the dropped session back) and FUSE_ALLOW_IDMAP (offered when the guest's root is the host's;
 * requests without the caller's ids then run as root, creating ones are refused), each against
 * a real daemon process.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "frontend.h"

#define VU_GET_CONFIG              24
#define VU_SET_CONFIG              25
#define VU_RESET_DEVICE            34
#define VU_PROTOCOL_F_CONFIG       9
#define VU_PROTOCOL_F_RESET_DEVICE 13
#define TEST_ALLOW_IDMAP           (1ULL << 40) /* FUSE_ALLOW_IDMAP, FUSE 7.40 */
#define INVALID_ID                 0xffffffffu  /* FUSE_INVALID_UIDGID */
#define TAG                        "myfs-tag"
#define QUEUES                     3 /* --num-request-queues of the tagged daemon */

static struct test_daemon tagged;   /* --tag TAG --num-request-queues=QUEUES */
static struct test_daemon untagged; /* no --tag */

struct config_msg {
    uint32_t offset, size, flags;
    uint8_t data[512];
};

static struct fe *open_fe(struct test_daemon *d, uint64_t protocol_features)
{
    struct fe_config cfg = {.socket_path = d->socket, .protocol_features = protocol_features};
    struct fe *fe = NULL;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    return fe;
}

/*
 * GET_CONFIG of (offset, size, flags) whose payload is msg_size bytes (12 + size for a good
 * one); the reply into *r. Returns the reply's payload size (12 + the bytes given).
 */
static uint32_t get_config_raw(struct fe *fe, uint32_t offset, uint32_t size, uint32_t flags,
                               uint32_t msg_size, struct config_msg *r)
{
    struct config_msg m = {.offset = offset, .size = size, .flags = flags};
    uint32_t req, rsize = sizeof(*r);

    g_assert_cmpuint(msg_size, <=, sizeof(m));
    memset(r, 0xa5, sizeof(*r));
    g_assert_cmpint(fe_vu_send(fe, VU_GET_CONFIG, 0, &m, msg_size, NULL, 0), ==, 0);
    g_assert_cmpint(fe_vu_recv(fe, &req, r, &rsize, 5000), ==, 0);
    g_assert_cmpuint(req, ==, VU_GET_CONFIG);
    g_assert_cmpuint(rsize, >=, 12);
    g_assert_cmpuint(r->offset, ==, offset); /* echoed, also when refused */
    g_assert_cmpuint(r->size, ==, rsize - 12);
    return rsize;
}

static uint32_t get_config(struct fe *fe, uint32_t offset, uint32_t size, uint32_t flags,
                           struct config_msg *r)
{
    return get_config_raw(fe, offset, size, flags, 12 + size, r);
}

/* The 40 bytes the tagged daemon's configuration space starts with. */
static void expected_config(uint8_t out[40])
{
    memset(out, 0, 40);
    memcpy(out, TAG, strlen(TAG));
    out[36] = QUEUES; /* num_request_queues, little-endian */
}

/* The connection still answers, and the FUSE session serves. */
static void assert_alive(struct fe *fe)
{
    uint64_t v;
    g_assert_cmpint(fe_vu_get_u64(fe, FE_VU_GET_FEATURES, &v), ==, 0);
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
}

/* ---- F_CONFIG ---- */

static void test_offered_only_with_tag(void)
{
    struct fe *fe = open_fe(&untagged, 0);
    g_assert_false(fe_offered_protocol_features(fe) & (1ull << VU_PROTOCOL_F_CONFIG));
    g_assert_true(fe_offered_protocol_features(fe) & (1ull << VU_PROTOCOL_F_RESET_DEVICE));
    fe_close(fe);
    fe = open_fe(&tagged, 0);
    g_assert_true(fe_offered_protocol_features(fe) & (1ull << VU_PROTOCOL_F_CONFIG));
    g_assert_true(fe_offered_protocol_features(fe) & (1ull << VU_PROTOCOL_F_RESET_DEVICE));
    fe_close(fe);
}

static void test_get_config(void)
{
    struct fe *fe = open_fe(&tagged, 1ull << VU_PROTOCOL_F_CONFIG);
    struct config_msg r;
    uint8_t want[40];
    expected_config(want);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);

    g_assert_cmpuint(get_config(fe, 0, 40, 0, &r), ==, 52); /* what QEMU asks */
    g_assert_cmpmem(r.data, 40, want, 40);
    g_assert_cmpuint(r.flags, ==, 0);
    g_assert_cmpuint(get_config(fe, 36, 4, 0, &r), ==, 16);
    g_assert_cmpuint(r.data[0], ==, QUEUES);
    g_assert_cmpuint(get_config(fe, 2, 3, 1, &r), ==, 15); /* QEMU's "migration" value */
    g_assert_cmpmem(r.data, 3, "fs-", 3);
    g_assert_cmpuint(r.flags, ==, 1);
    /* Past the 40 bytes the space reads as zeros, as in the Rust virtiofsd. */
    g_assert_cmpuint(get_config(fe, 30, 20, 2, &r), ==, 32);
    g_assert_cmpmem(r.data, 10, want + 30, 10);
    for (int i = 10; i < 20; i++)
        g_assert_cmpuint(r.data[i], ==, 0);
    g_assert_cmpuint(get_config(fe, 0, 256, 3, &r), ==, 12 + 256);
    g_assert_cmpmem(r.data, 40, want, 40);
    g_assert_cmpuint(get_config(fe, 255, 1, 0, &r), ==, 13);
    g_assert_cmpuint(r.data[0], ==, 0);
    assert_alive(fe);
    fe_close(fe);
}

/* A refused GET_CONFIG is answered with no bytes (the spec's error) and costs nothing else. */
static void test_get_config_hostile(void)
{
    struct fe *fe = open_fe(&tagged, 1ull << VU_PROTOCOL_F_CONFIG);
    struct config_msg r;
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);

    g_assert_cmpuint(get_config(fe, 0, 0, 0, &r), ==, 12);           /* nothing asked */
    g_assert_cmpuint(get_config(fe, 256, 1, 0, &r), ==, 12);         /* past the space */
    g_assert_cmpuint(get_config(fe, 200, 57, 0, &r), ==, 12);        /* ends past it */
    g_assert_cmpuint(get_config(fe, 0xffffffffu, 2, 0, &r), ==, 12); /* wraps */
    g_assert_cmpuint(get_config(fe, 0, 257, 0, &r), ==, 12);         /* too large */
    g_assert_cmpuint(get_config(fe, 0, 40, 4, &r), ==, 12);          /* unknown flag */
    g_assert_cmpuint(get_config(fe, 0, 40, 0x80000000u, &r), ==, 12);
    g_assert_cmpuint(get_config_raw(fe, 0, 40, 0, 12 + 10, &r), ==, 12); /* payload short */
    g_assert_cmpuint(get_config_raw(fe, 0, 4, 0, 12 + 40, &r), ==, 12);  /* payload long */
    g_assert_cmpuint(get_config_raw(fe, 0, 0, 0, 8, &r), ==, 12);        /* header cut */
    g_assert_cmpuint(get_config_raw(fe, 0, 0, 0, 0, &r), ==, 12);        /* no payload */
    assert_alive(fe);
    g_assert_true(test_daemon_log_contains(&tagged, "GET_CONFIG of 0 bytes"));

    /* A payload beyond any message's size ends the connection, as for every message. */
    struct {
        uint32_t request, flags, size;
    } __attribute__((packed)) h = {VU_GET_CONFIG, FE_VU_FLAG_VERSION, 12 + 4096};
    g_assert_cmpint(send(fe_socket(fe), &h, sizeof(h), MSG_NOSIGNAL), ==, sizeof(h));
    g_assert_true(fe_vu_closed(fe, 5000));
    fe_close(fe);
    g_assert_true(test_daemon_alive(&tagged));
    fe = open_fe(&tagged, 1ull << VU_PROTOCOL_F_CONFIG);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    assert_alive(fe);
    fe_close(fe);
}

/* Not negotiated (or not offered: no --tag): refused, the connection goes on. */
static void test_get_config_not_negotiated(void)
{
    struct config_msg r;
    struct fe *fe = open_fe(&tagged, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpuint(get_config(fe, 0, 40, 0, &r), ==, 12);
    assert_alive(fe);
    fe_close(fe);

    fe = open_fe(&untagged, 1ull << VU_PROTOCOL_F_CONFIG); /* asks for it; not offered */
    g_assert_false(fe_acked_protocol_features(fe) & (1ull << VU_PROTOCOL_F_CONFIG));
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpuint(get_config(fe, 0, 40, 0, &r), ==, 12);
    assert_alive(fe);
    g_assert_true(test_daemon_log_contains(&untagged, "offered only with --tag"));
    fe_close(fe);
}

static int64_t set_config(struct fe *fe, uint32_t offset, uint32_t size, uint32_t flags,
                          const void *data, uint32_t msg_size)
{
    struct config_msg m = {.offset = offset, .size = size, .flags = flags};
    memcpy(m.data, data, size < sizeof(m.data) ? size : sizeof(m.data));
    return fe_vu_ack(fe, VU_SET_CONFIG, &m, msg_size, NULL, 0);
}

/* The configuration is read-only: a write that changes nothing is accepted, any other not. */
static void test_set_config(void)
{
    struct fe *fe = open_fe(&tagged, 1ull << VU_PROTOCOL_F_CONFIG);
    uint8_t cfg[256] = {0};
    struct config_msg r;
    expected_config(cfg);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);

    g_assert_cmpint(set_config(fe, 0, 40, 1, cfg, 52), ==, 0); /* a migration's restore */
    g_assert_cmpint(set_config(fe, 0, 256, 0, cfg, 12 + 256), ==, 0);
    g_assert_cmpint(set_config(fe, 36, 4, 2, cfg + 36, 16), ==, 0);
    uint8_t other[40];
    memcpy(other, cfg, 40);
    memcpy(other, "evil", 4);
    g_assert_cmpint(set_config(fe, 0, 40, 0, other, 52), >, 0); /* a new tag */
    g_assert_cmpint(set_config(fe, 0, 40, 1, other, 52), >, 0); /* also "for migration" */
    other[0] = 0x01;
    g_assert_cmpint(set_config(fe, 40, 1, 0, other, 13), >, 0); /* past the config */
    /* Malformed: the same checks as GET_CONFIG. */
    g_assert_cmpint(set_config(fe, 0, 0, 0, cfg, 12), >, 0);
    g_assert_cmpint(set_config(fe, 250, 7, 0, cfg, 19), >, 0);
    g_assert_cmpint(set_config(fe, 0, 40, 8, cfg, 52), >, 0);
    g_assert_cmpint(set_config(fe, 0, 40, 0, cfg, 30), >, 0);
    g_assert_cmpint(set_config(fe, 0, 40, 0, cfg, 4), >, 0);
    /* Unchanged, and serving. */
    g_assert_cmpuint(get_config(fe, 0, 40, 0, &r), ==, 52);
    g_assert_cmpmem(r.data, 40, cfg, 40);
    assert_alive(fe);
    fe_close(fe);

    fe = open_fe(&tagged, 0); /* F_CONFIG not negotiated */
    g_assert_cmpint(set_config(fe, 0, 40, 0, cfg, 52), >, 0);
    fe_close(fe);
}

/* ---- RESET_DEVICE ---- */

static int thread_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    g_assert_nonnull(d);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A request before INIT gets EIO: the session is fresh. */
static void assert_fresh_session(struct fe *fe)
{
    struct fuse_entry_out e;
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, -EIO);
}

static void test_reset_device(void)
{
    const uint64_t pf = 1ull << VU_PROTOCOL_F_RESET_DEVICE;
    struct fe *fe = open_fe(&untagged, pf);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    fe_close(fe);
    g_usleep(100000);
    pid_t pid = test_daemon_serving_pid(&untagged);
    int fds = test_daemon_fd_count(&untagged), threads = thread_count(pid);

    fe = open_fe(&untagged, pf);
    g_assert_true(fe_acked_protocol_features(fe) & pf);
    for (int i = 0; i < 10; i++) {
        struct fuse_entry_out e;
        g_assert_cmpint(fe_fuse_init(fe), ==, 0);
        g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
        g_assert_cmpint(fe_vu_ack(fe, VU_RESET_DEVICE, NULL, 0, NULL, 0), ==, 0);
        /* The rings are gone: the front-end sets the device up again, as after a reset. */
        g_assert_cmpint(fe_setup(fe), ==, 0);
        assert_fresh_session(fe);
    }
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    assert_alive(fe);
    g_assert_true(test_daemon_log_contains(&untagged, "device reset"));
    fe_close(fe);
    g_usleep(200000);
    g_assert_cmpint(test_daemon_serving_pid(&untagged), ==, pid);
    g_assert_cmpint(test_daemon_fd_count(&untagged), ==, fds);
    g_assert_cmpint(thread_count(pid), ==, threads);
}

/* A malformed or unnegotiated RESET_DEVICE is refused and resets nothing. */
static void test_reset_device_refused(void)
{
    struct fe *fe = open_fe(&untagged, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpint(fe_vu_ack(fe, VU_RESET_DEVICE, NULL, 0, NULL, 0), >, 0);
    assert_alive(fe); /* still initialized, rings still running */
    fe_close(fe);

    fe = open_fe(&untagged, 1ull << VU_PROTOCOL_F_RESET_DEVICE);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    uint64_t junk = 0;
    g_assert_cmpint(fe_vu_ack(fe, VU_RESET_DEVICE, &junk, sizeof(junk), NULL, 0), >, 0);
    assert_alive(fe);
    fe_close(fe);
}

/*
 * cloud-hypervisor hands the same in-flight area back at every activation: after a device
 * reset, the session journal in it must not bring back the session the driver dropped (a
 * reconnect without a reset does bring it back: the reference).
 */
static void test_reset_device_journal(void)
{
    struct fe_config cfg = {.socket_path = untagged.socket,
                            .profile = FE_PROFILE_CLOUD_HYPERVISOR,
                            .inflight = true,
                            .protocol_features = 1ull << VU_PROTOCOL_F_RESET_DEVICE};
    struct fe *fe = NULL;
    struct fuse_entry_out e;
    g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
    g_assert_cmpint(fe_inflight_fd(fe), >=, 0);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    g_assert_cmpint(fe_reconnect(fe), ==, 0);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0); /* restored */

    g_assert_cmpint(fe_vu_ack(fe, VU_RESET_DEVICE, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(fe_setup(fe), ==, 0); /* SET_INFLIGHT_FD with the same area */
    assert_fresh_session(fe);
    g_assert_cmpint(fe_fuse_init(fe), ==, 0);
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "probe", &e), ==, 0);
    fe_close(fe);
}

/* ---- FUSE_ALLOW_IDMAP ---- */

static bool idmap_agreed(struct fe *fe, uint64_t ask)
{
    struct fuse_init_out out;
    g_assert_cmpint(fe_fuse_init_flags(fe, ask, &out), ==, 0);
    return out.flags2 & (uint32_t)(TEST_ALLOW_IDMAP >> 32);
}

static void test_idmap_offer(void)
{
    struct fe *fe = open_fe(&untagged, 0);
    g_assert_true(idmap_agreed(fe, TEST_ALLOW_IDMAP));
    g_assert_false(idmap_agreed(fe, 0)); /* only when the guest asks */
    fe_close(fe);

    /* Without --allow-idmap (the default), or where guest root is not the host's: not
     * offered. */
    const char *const no_option[] = {NULL};
    const char *const unsound[] = {"--allow-idmap", "--translate-uid", "guest:0:1000:1", NULL};
    const char *const *cases[] = {no_option, unsound};
    for (unsigned i = 0; i < 2; i++) {
        struct test_daemon d;
        g_assert_cmpint(test_daemon_start(&d, cases[i]), ==, 0);
        struct fe_config cfg = {.socket_path = d.socket};
        g_assert_cmpint(fe_open_retry(&cfg, &fe, 2000), ==, 0);
        g_assert_false(idmap_agreed(fe, TEST_ALLOW_IDMAP));
        fe_close(fe);
        g_assert_cmpint(test_daemon_stop(&d), ==, 0);
    }
}

static int getattr_as(struct fe *fe, uint32_t uid, uint32_t gid, uint64_t nodeid)
{
    struct fuse_getattr_in in = {0};
    struct iovec iov = {&in, sizeof(in)};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe, 1, uid, gid, FUSE_GETATTR, nodeid, &iov, 1,
                               sizeof(struct fuse_attr_out), &r),
                    ==, 0);
    return r.error;
}

static int mkdir_as(struct fe *fe, uint32_t uid, uint32_t gid, const char *name)
{
    struct fuse_mkdir_in in = {.mode = 0755};
    struct iovec iov[2] = {{&in, sizeof(in)}, {(void *)name, strlen(name) + 1}};
    struct fe_reply r;
    g_assert_cmpint(fe_fuse_as(fe, 1, uid, gid, FUSE_MKDIR, FUSE_ROOT_ID, iov, 2,
                               sizeof(struct fuse_entry_out), &r),
                    ==, 0);
    return r.error;
}

/* Requests without the caller's ids run as the guest's root; creating ones are refused. */
static void test_idmap_requests(void)
{
    char *secret = g_build_filename(untagged.share, "secret", NULL);
    char *dir = g_build_filename(untagged.share, "by-1000", NULL);
    struct fuse_entry_out e;
    struct stat st;
    g_assert_true(g_file_set_contents(secret, "x", -1, NULL));
    g_assert_cmpint(chown(secret, 4321, 4321), ==, 0);
    g_assert_cmpint(chmod(secret, 0600), ==, 0);
    g_assert_cmpint(chmod(untagged.share, 0700), ==, 0); /* only root may look inside */

    struct fe *fe = open_fe(&untagged, 0);
    g_assert_false(idmap_agreed(fe, 0));
    /* Without the flag the ids are taken as sent: -1 is no caller the host accepts. */
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "secret", &e), ==, 0);
    g_assert_cmpint(getattr_as(fe, INVALID_ID, INVALID_ID, e.nodeid), !=, 0);
    fe_close(fe);

    fe = open_fe(&untagged, 0);
    g_assert_true(idmap_agreed(fe, TEST_ALLOW_IDMAP));
    g_assert_cmpint(fe_lookup(fe, FUSE_ROOT_ID, "secret", &e), ==, 0);
    g_assert_cmpint(getattr_as(fe, INVALID_ID, INVALID_ID, e.nodeid), ==, 0);
    /* A creating request names the owner (the mapped caller): the inode is theirs. */
    g_assert_cmpint(mkdir_as(fe, 1000, 1000, "by-1000"), ==, -EACCES); /* 0700 root dir */
    g_assert_cmpint(chmod(untagged.share, 0777), ==, 0);
    g_assert_cmpint(mkdir_as(fe, 1000, 1000, "by-1000"), ==, 0);
    g_assert_cmpint(stat(dir, &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, 1000);
    g_assert_cmpuint(st.st_gid, ==, 1000);
    /* Without ids it would be nobody's: refused. */
    g_assert_cmpint(mkdir_as(fe, INVALID_ID, INVALID_ID, "nobodys"), ==, -EOVERFLOW);
    g_assert_cmpint(mkdir_as(fe, 1000, INVALID_ID, "nobodys"), ==, -EOVERFLOW);
    g_assert_cmpint(getattr_as(fe, INVALID_ID, 1000, e.nodeid), ==, 0);
    fe_close(fe);
    g_assert_cmpint(chmod(untagged.share, 0755), ==, 0);
    g_free(secret);
    g_free(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/config/offered-only-with-tag", test_offered_only_with_tag);
    g_test_add_func("/config/get", test_get_config);
    g_test_add_func("/config/get-hostile", test_get_config_hostile);
    g_test_add_func("/config/get-not-negotiated", test_get_config_not_negotiated);
    g_test_add_func("/config/set", test_set_config);
    g_test_add_func("/reset-device/serves-after", test_reset_device);
    g_test_add_func("/reset-device/refused", test_reset_device_refused);
    g_test_add_func("/reset-device/journal", test_reset_device_journal);
    g_test_add_func("/idmap/offer", test_idmap_offer);
    g_test_add_func("/idmap/requests", test_idmap_requests);

    const char *const tag_args[] = {"--tag", TAG, "--num-request-queues", G_STRINGIFY(QUEUES),
                                    NULL};
    const char *const idmap_args[] = {"--allow-idmap", NULL};
    if (test_daemon_start(&tagged, tag_args) < 0 ||
        test_daemon_start(&untagged, idmap_args) < 0) {
        g_printerr("cannot start the daemons\n");
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        char *p = g_build_filename(i ? tagged.share : untagged.share, "probe", NULL);
        g_assert_true(g_file_set_contents(p, "probe", -1, NULL));
        g_free(p);
    }
    int ret = g_test_run();
    int rc = test_daemon_stop(&tagged), rc2 = test_daemon_stop(&untagged);
    if (rc != 0 || rc2 != 0) {
        g_printerr("daemon exit status %d, %d\n", rc, rc2);
        ret = 1;
    }
    return ret;
}
