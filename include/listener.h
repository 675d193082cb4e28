/* SPDX-License-Identifier: Apache-2.0 */
/* The listening unix socket the front-end connects to. */
#ifndef VFS_LISTENER_H
#define VFS_LISTENER_H

/*
 * Creates and binds the socket at path (replacing a stale socket file), with group
 * ownership when group is set. Returns the listening fd or a negative errno (logged).
 */
int listener_open(const char *path, const char *group);
/* Accepts one connection (close-on-exec); negative errno on failure. */
int listener_accept(int listen_fd);
/* Closes the socket and removes its file (path may be NULL for an inherited --fd). */
void listener_close(int listen_fd, const char *path);

#endif
