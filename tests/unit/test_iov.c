/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The iovec walker (src/iov.c): every byte range of a scattered buffer, with empty entries and
 * one-byte entries among its pieces, is copied, sliced and dropped as it is in the flat
 * buffer the pieces were cut from, and ranges running past the end are cut short.
 */
#include <glib.h>
#include <string.h>

#include "iov.h"

static const char flat[] = "0123456789abcdefghij"; /* the bytes the pieces hold, in order */
#define TOTAL   (sizeof(flat) - 1)
#define NPIECES 6

/* Pieces of 3, 0, 5, 1, 11 and 0 bytes, each in memory of its own. */
struct scattered {
    char mem[NPIECES][TOTAL];
    struct iovec iov[NPIECES];
};

static void scatter(struct scattered *s, const char *bytes)
{
    static const size_t lens[NPIECES] = {3, 0, 5, 1, 11, 0};
    size_t off = 0;
    for (unsigned i = 0; i < NPIECES; i++) {
        memset(s->mem[i], '.', TOTAL);
        if (bytes)
            memcpy(s->mem[i], bytes + off, lens[i]);
        s->iov[i] = (struct iovec){.iov_base = s->mem[i], .iov_len = lens[i]};
        off += lens[i];
    }
    g_assert_cmpuint(off, ==, TOTAL);
}

/* The bytes of [skip, skip + len) that exist. */
static size_t expected_len(size_t skip, size_t len)
{
    if (skip >= TOTAL)
        return 0;
    return len < TOTAL - skip ? len : TOTAL - skip;
}

static void test_size(void)
{
    struct scattered s;
    scatter(&s, flat);
    g_assert_cmpuint(iov_size(s.iov, NPIECES), ==, TOTAL);
    g_assert_cmpuint(iov_size(s.iov, 2), ==, 3);
    g_assert_cmpuint(iov_size(s.iov, 0), ==, 0);
}

static void test_to_buf(void)
{
    struct scattered s;
    scatter(&s, flat);
    for (size_t skip = 0; skip <= TOTAL + 2; skip++) {
        for (size_t len = 0; len <= TOTAL + 2; len++) {
            char out[TOTAL + 3];
            memset(out, '#', sizeof(out));
            size_t want = expected_len(skip, len);
            g_assert_cmpuint(iov_to_buf(s.iov, NPIECES, skip, out, len), ==, want);
            if (want)
                g_assert_cmpmem(out, want, flat + skip, want);
            g_assert_cmpint(out[want], ==, '#'); /* nothing beyond what was copied */
        }
    }
}

static void test_from_buf(void)
{
    static const char src[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (size_t skip = 0; skip <= TOTAL + 2; skip++) {
        for (size_t len = 0; len <= TOTAL + 2; len++) {
            struct scattered s;
            scatter(&s, flat);
            size_t want = expected_len(skip, len);
            g_assert_cmpuint(iov_from_buf(s.iov, NPIECES, skip, src, len), ==, want);
            /* What the pieces hold now, flattened, is flat with the range overwritten. */
            char now[TOTAL], expect[TOTAL];
            g_assert_cmpuint(iov_to_buf(s.iov, NPIECES, 0, now, TOTAL), ==, TOTAL);
            memcpy(expect, flat, TOTAL);
            if (want)
                memcpy(expect + skip, src, want);
            g_assert_cmpmem(now, TOTAL, expect, TOTAL);
            /* Nothing written outside the pieces. */
            for (unsigned i = 0; i < NPIECES; i++)
                for (size_t b = s.iov[i].iov_len; b < TOTAL; b++)
                    g_assert_cmpint(s.mem[i][b], ==, '.');
        }
    }
}

static void test_slice(void)
{
    struct scattered s;
    scatter(&s, flat);
    for (size_t skip = 0; skip <= TOTAL + 2; skip++) {
        for (size_t len = 0; len <= TOTAL + 2; len++) {
            struct iovec dst[NPIECES];
            unsigned n = iov_slice(s.iov, NPIECES, skip, len, dst, NPIECES);
            g_assert_cmpuint(iov_slice(s.iov, NPIECES, skip, len, NULL, 0), ==, n);
            size_t want = expected_len(skip, len);
            g_assert_cmpuint(iov_size(dst, n), ==, want);
            char out[TOTAL];
            g_assert_cmpuint(iov_to_buf(dst, n, 0, out, want), ==, want);
            if (want)
                g_assert_cmpmem(out, want, flat + skip, want);
            for (unsigned i = 0; i < n; i++)
                g_assert_cmpuint(dst[i].iov_len, >, 0); /* empty pieces take no slot */
        }
    }
    /* The slice points into the pieces themselves: it is for zero-copy I/O. */
    struct iovec one;
    g_assert_cmpuint(iov_slice(s.iov, NPIECES, 4, 3, &one, 1), ==, 1);
    g_assert_true(one.iov_base == s.mem[2] + 1);
    g_assert_cmpuint(one.iov_len, ==, 3);
    /* A dst too small for the range gets what fits. */
    struct iovec two[2];
    g_assert_cmpuint(iov_slice(s.iov, NPIECES, 0, TOTAL, two, 2), ==, 2);
    g_assert_cmpuint(iov_size(two, 2), ==, 8);
}

static void test_discard_front(void)
{
    for (size_t bytes = 0; bytes <= TOTAL + 2; bytes++) {
        struct scattered s;
        scatter(&s, flat);
        struct iovec *v = s.iov;
        unsigned n = NPIECES;
        size_t dropped = iov_discard_front(&v, &n, bytes);
        g_assert_cmpuint(dropped, ==, bytes < TOTAL ? bytes : TOTAL);
        g_assert_cmpuint(iov_size(v, n), ==, TOTAL - dropped);
        char out[TOTAL];
        size_t rest = iov_to_buf(v, n, 0, out, TOTAL);
        g_assert_cmpuint(rest, ==, TOTAL - dropped);
        if (rest)
            g_assert_cmpmem(out, rest, flat + dropped, rest);
        /* The first entry left holds bytes (a transfer resumes there), unless none is left. */
        if (rest)
            g_assert_cmpuint(v->iov_len, >, 0);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/iov/size", test_size);
    g_test_add_func("/iov/to-buf", test_to_buf);
    g_test_add_func("/iov/from-buf", test_from_buf);
    g_test_add_func("/iov/slice", test_slice);
    g_test_add_func("/iov/discard-front", test_discard_front);
    return g_test_run();
}
