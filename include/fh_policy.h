/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --inode-file-handles, the whole policy: whether a new inode keeps an O_PATH fd or only a
 * file handle, when the automatic mode may use handles at all, and what capability that needs.
 * The mechanism (encoding, mount fds, opening) is file_handle.c's; the fd count the automatic
 * budget compares with is the inode table's (itab_fd_inodes).
 *
 * The decisions, in the order they are made:
 *   1. start-up, before the sandbox (main.c): fh_policy_for_share. FH_AUTO becomes FH_NEVER
 *      unless the share is a whole file system as mounted;
 *   2. capabilities (caps.c, through main.c): fh_policy_caps. Any mode but FH_NEVER keeps
 *      CAP_DAC_READ_SEARCH; an explicit prefer or mandatory requires it;
 *   3. after the capabilities are final (pt_setup_file_handles): fh_policy_activate. A handle
 *      of the shared directory must open again, or the mode falls back (or fails, mandatory);
 *   4. per new inode (pt_core.c's entry building): fh_policy_wants_handle, then
 *      fh_policy_new_handle with its per-mode fallbacks.
 */
#ifndef VFS_FH_POLICY_H
#define VFS_FH_POLICY_H

#include <stdbool.h>

#include "caps.h"
#include "file_handle.h"
#include "passthrough.h"

/*
 * The mode to serve share with when requested was asked for. With CAP_DAC_READ_SEARCH a
 * compromised daemon could open_by_handle_at any inode of the file system around the share,
 * whatever the sandbox's root: the automatic mode keeps to fds unless the share is that whole
 * file system.
 */
enum inode_fh_mode fh_policy_for_share(enum inode_fh_mode requested, const char *share);

/* What mode needs of the capabilities: open_by_handle_at needs CAP_DAC_READ_SEARCH. */
enum caps_fh fh_policy_caps(enum inode_fh_mode mode);

/* The policy's state in a pt_fs. */
struct fh_policy {
    enum inode_fh_mode want;     /* as configured (after fh_policy_for_share) */
    enum inode_fh_mode mode;     /* in force: FH_NEVER until fh_policy_activate */
    unsigned long fd_budget;     /* FH_AUTO: inodes with an fd before new ones get handles */
    struct fh_mounts mounts;     /* mount fds for open_by_handle_at */
    struct fh_mount *root_mount; /* the share's own mount, pinned while handles are used */
};

/* fd_budget from the open-file limit as it is now (main raised it before pt_new). */
void fh_policy_init(struct fh_policy *p, enum inode_fh_mode want);
/* After every inode (and so every handle) is gone. */
void fh_policy_destroy(struct fh_policy *p);

/*
 * Decides, with the process's final capabilities, whether handles work for the shared
 * directory (root_fd): FH_AUTO quietly keeps fds if not, FH_PREFER keeps fds with a warning,
 * FH_MANDATORY fails with a logged error (-errno). Returns 0 otherwise.
 */
int fh_policy_activate(struct fh_policy *p, int root_fd, int proc_self_fd);

/* Whether a new inode should be handle-only (before its handle is even encoded). */
bool fh_policy_wants_handle(const struct fh_policy *p);

/*
 * The handle for a new inode, or NULL (and 0) to keep its fd. encoded: 1 if b holds the
 * inode's handle, else fh_encode's -errno; mnt_id: the inode's mount id (from statx, 0 if
 * unknown); src_fd: what a mount fd for b's mount may be opened from (-1: nothing). As in the
 * Rust virtiofsd, under FH_PREFER only "no handles on this file system" (EOPNOTSUPP,
 * EOVERFLOW) falls back to an fd and other failures go to the guest; FH_MANDATORY fails on
 * every one; FH_AUTO, which the user did not ask for, falls back on every one.
 */
int fh_policy_new_handle(struct fh_policy *p, int encoded, const struct fh_buf *b, int mnt_id,
                         int src_fd, int proc_self_fd, struct pt_fhandle **out);

#endif
