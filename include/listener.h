/* SPDX-License-Identifier: Apache-2.0 */
/* The listening unix socket the front-end connects to. */
#ifndef VFS_LISTENER_H
#define VFS_LISTENER_H

#include <sys/types.h>

/*
 * Takes the lock <socket_path>.pid (writing our pid in it) so two daemons never serve one
 * socket path; -EADDRINUSE (logged with the holder's pid) when another daemon holds it.
 * Returns the lock fd, kept open for the daemon's life.
 */
int listener_lock(const char *socket_path);
void listener_unlock(int lock_fd, const char *socket_path);
/* Writes pid into the lock file (a new owner of the lock after a handover). */
int listener_write_pid(int lock_fd, pid_t pid);
/* The pid the lock file names (listener_write_pid), or -1. */
pid_t listener_read_pid(int lock_fd);

/*
 * Creates and binds the socket at path (replacing a stale socket file), with group
 * ownership when group is set. Returns the listening fd or a negative errno (logged).
 */
int listener_open(const char *path, const char *group);
/* Seconds a connection may stall inside a message before it is dropped. */
#define LISTENER_IO_TIMEOUT_S 5

/* Accepts one connection (close-on-exec, I/O timeouts set); negative errno on failure. */
int listener_accept(int listen_fd);
/* Closes the socket and removes its file (path may be NULL for an inherited --fd). */
void listener_close(int listen_fd, const char *path);

#endif
