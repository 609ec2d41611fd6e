/* SPDX-License-Identifier: MIT */
/*
 * The NBD server: listeners (TCP and Unix), the acceptor, and the I/O
 * workers that own the connections.  bal_server_run() runs on the main
 * thread until SIGTERM/SIGINT, then drains: no new connections or
 * requests, in-flight requests finish and are answered, a final sync.
 */
#ifndef BAL_SERVER_H
#define BAL_SERVER_H

#include <stddef.h>

struct bal_server;
struct bal_vstore;
struct bal_tier;

#define BAL_MAX_LISTEN 16

struct bal_server_opts {
	size_t opts_size;		/* sizeof(struct bal_server_opts) */
	struct bal_vstore *store;
	struct bal_tier *tier;		/* restored volumes fetch through it (may be NULL) */
	const char *listen[BAL_MAX_LISTEN];	/* "tcp:HOST:PORT" or "unix:PATH" */
	unsigned nlisten;
	const char *default_export;	/* NULL: the empty name is refused */
	unsigned workers;		/* 0: one per CPU */
	unsigned handshake_timeout;	/* seconds */
	unsigned request_timeout;	/* seconds, for a half-received request */
};

/* Bind every listener and start the workers.  *out owned by the caller. */
int bal_server_open(const struct bal_server_opts *opts, struct bal_server **out);

/*
 * Accept connections until a signal in the blocked set (SIGTERM, SIGINT)
 * arrives, then drain and return 0.  The caller blocks those signals in
 * every thread before creating any.
 */
int bal_server_run(struct bal_server *srv);

/* Stop workers, close listeners (unlinking Unix sockets).  NULL is a no-op. */
void bal_server_close(struct bal_server *srv);

#endif
