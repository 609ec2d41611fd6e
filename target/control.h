/* SPDX-License-Identifier: MIT */
/*
 * Control socket: a JSON-RPC 2.0 server on a Unix socket, one request per
 * line and one response per line (the framing SPDK uses).  The `ballast`
 * CLI is its client; docs/operations.md lists the methods and error codes.
 *
 * The socket is created owner-only (0600).  One control thread runs a poll
 * loop over the listener and at most BAL_CTL_MAX_CLIENTS clients; requests
 * are served in order on that thread by calling the volume store, whose
 * functions are safe from any thread, except the long ones (object tier
 * export, verify, remote list and delete, volume wait), which run on a job
 * thread each while the client waits and every other client is served.
 * A request line longer than
 * BAL_CTL_MAX_LINE is answered with an error and the client is closed; a
 * client idle for BAL_CTL_IDLE_TIMEOUT seconds is closed.
 */
#ifndef BAL_CONTROL_H
#define BAL_CONTROL_H

#include <stddef.h>

#define BAL_CTL_MAX_CLIENTS 64
#define BAL_CTL_MAX_LINE (1u << 20)
#define BAL_CTL_IDLE_TIMEOUT 60

struct bal_ctl;
struct bal_vstore;
struct bal_tier;

struct bal_ctl_opts {
	size_t opts_size;		/* sizeof(struct bal_ctl_opts) */
	const char *path;		/* socket path */
	struct bal_vstore *store;	/* not owned; must outlive the server */
	struct bal_tier *tier;		/* not owned; must outlive the server */
};

/*
 * Bind the socket at opts->path (replacing a stale socket file left by a
 * crashed daemon; -EADDRINUSE if a live server still answers on it, -EEXIST
 * if the path is not a socket), make it 0600 and start the control thread.
 * Returns 0 or -errno.  *out is owned by the caller (bal_ctl_close).
 * Start-up only.
 */
int bal_ctl_open(const struct bal_ctl_opts *opts, struct bal_ctl **out);

/*
 * Stop the control thread, close every client and the listener, and unlink
 * the socket if it is still ours.  A request being served completes first.
 * NULL is a no-op.
 */
void bal_ctl_close(struct bal_ctl *ctl);

#endif
