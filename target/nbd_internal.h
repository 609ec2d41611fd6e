/* SPDX-License-Identifier: MIT */
/*
 * NBD connection state shared by the handshake (handshake.c), the
 * transmission phase (transmit.c) and the connection plumbing (conn.c).
 * Private to target/.  A connection lives on one worker and is only ever
 * touched by that worker's thread.
 */
#ifndef BAL_NBD_INTERNAL_H
#define BAL_NBD_INTERNAL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "target/server.h"
#include "target/worker.h"

#define NBD_MAX_OPTION 16384u		/* larger options: hard disconnect */
#define NBD_MAX_STRING 4096u		/* proto.md: strings MUST be <= 4096 */
#define NBD_MIN_BLOCK 1u
#define NBD_PREF_BLOCK 4096u
#define NBD_MAX_BLOCK (32u << 20)	/* largest READ/WRITE payload */
#define NBD_MAX_DRAIN (64u << 20)	/* oversized WRITE payloads drained up to this */
#define CONN_MAX_INFLIGHT 64u		/* requests per connection */
#define CONN_MAX_INFLIGHT_BYTES (96u << 20)
#define SEND_BATCH 64			/* iovecs per sendmsg */

struct conn;
struct req;
struct bal_xts_ctx;
struct bal_xts_key;
struct cpool;

/* An outgoing message: up to 4 iovecs; the owner frees it in done(). */
struct out {
	struct out *next;
	struct iovec iov[4];
	unsigned iovcnt;
	uint8_t hdr[64];		/* room for any header the message needs */
	void (*sent)(struct out *o);	/* after the last byte went out, or on close */
	void *owner;
};

struct conn {
	struct bal_server *srv;
	struct bal_worker *w;
	int fd;
	uint64_t id;
	char peer[80];
	struct conn *prev, *next;	/* the worker's connection list */

	bool transmission;		/* false: handshake */
	bool closing;			/* shutdown(2) done; freed when refs drop to 0 */
	bool draining;			/* server stopping: no new requests */
	bool close_after_send;		/* ABORT / DISC: close once everything went out */
	unsigned refs;			/* SQEs and requests that point at us */
	struct timespec deadline;	/* handshake end, or half-received request */
	bool deadline_armed;

	/* Receive: exactly rx_want bytes into rx_buf, then rx_next(). */
	struct bal_io rx_io;
	uint8_t *rx_buf;
	size_t rx_want, rx_got;
	void (*rx_next)(struct conn *c);
	bool rx_active;
	bool rx_paused;			/* backpressure: too much in flight */
	uint8_t hdr[32];		/* request header / option header */
	uint8_t *opt;			/* option payload (handshake) */
	uint32_t opt_type, opt_len;
	uint64_t drain_left;		/* bytes of a refused WRITE still to discard */
	uint8_t *drain_buf;
	struct req *rx_req;		/* WRITE whose payload is being received */

	/* Send queue: one sendmsg in flight at a time. */
	struct bal_io tx_io;
	struct out *tx_head, *tx_tail;
	struct out *tx_batch[SEND_BATCH];
	unsigned tx_nbatch;
	struct iovec tx_iov[SEND_BATCH * 4];
	unsigned tx_iovcnt, tx_iovoff;
	struct msghdr tx_mh;
	bool tx_active;

	/* Negotiated. */
	uint32_t client_flags;
	bool structured;
	bool meta_base;			/* base:allocation selected */
	uint32_t meta_id;
	struct bal_volume *vol;
	struct bal_xts_ctx *xts;	/* encrypted volume: this connection's cipher */
	const struct bal_xts_key *xkey;	/* its key, for the cipher pool */
	uint16_t tflags;

	/* Transmission accounting. */
	unsigned inflight;
	uint64_t inflight_bytes;
	uint64_t nreads, nwrites, bytes_read, bytes_written;
};

/* conn.c */
void conn_start(struct bal_server *srv, struct bal_worker *w, int fd, const char *peer);
void conn_close(struct conn *c, const char *why);
void conn_recv(struct conn *c, void *buf, size_t len, void (*next)(struct conn *c));
void conn_send(struct conn *c, struct out *o);
/* Close now if close_after_send is set and nothing is left to send. */
void conn_kick(struct conn *c);
struct out *out_new(size_t extra);	/* extra bytes after the struct, at out_extra() */
void *out_extra(struct out *o);
void out_free(struct out *o);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
void conn_set_deadline(struct conn *c, unsigned seconds);
void conn_clear_deadline(struct conn *c);
bool conn_tick(struct conn *c, const struct timespec *now);

/* handshake.c */
void hs_start(struct conn *c);

/* transmit.c */
void tx_start(struct conn *c);
void tx_drain(struct conn *c);
/* The receive in progress ended without its data: drop its request. */
void tx_rx_aborted(struct conn *c);

/*
 * bufcache.c: request buffers recycled per worker thread.  buf_put() must
 * run on the thread that called buf_get() with the same @len.
 */
void *buf_alloc(size_t len);	/* page-aligned, uncached; free() it */
void *buf_get(size_t len);
void buf_put(void *p, size_t len);
void buf_cache_drain(void);	/* a worker thread, before it exits */

/* crypt_io.c: encrypted volumes (4 KiB XTS units). */
#define CIO_UNIT 4096u
int cio_open(struct conn *c);
void cio_close(struct conn *c);
int cio_decrypt(struct conn *c, uint64_t off, uint8_t *buf, size_t len);
int cio_encrypt(struct conn *c, uint64_t off, uint8_t *buf, size_t len);
int cio_align_write(struct conn *c, uint64_t off, uint32_t len, const uint8_t *data,
		    uint8_t **out, uint64_t *aoff, uint32_t *alen);
int cio_zero_edges(struct conn *c, uint64_t off, uint64_t len, uint64_t *moff, uint64_t *mlen);
/* Any thread: en- or decrypt whole units at volume offset @off (decrypt skips zero units). */
int cio_crypt(struct bal_xts_ctx *xts, bool encrypt, uint64_t off, uint8_t *buf, size_t len);

/*
 * cipher_pool.c: the cipher work of large requests, on pool threads.  A job
 * (the caller's storage, untouched by the caller until @msg runs) is cut
 * into CPOOL_CHUNK pieces run in parallel; when all are done @msg is posted
 * to @w, with the first failure in @err.
 */
#define CPOOL_MIN (128u << 10)		/* smaller requests are ciphered inline */
#define CPOOL_CHUNK (128u << 10)
struct cjob {
	const struct bal_xts_key *key;	/* valid until @msg runs */
	bool encrypt;
	uint64_t off;			/* volume offset of buf[0], unit-aligned */
	uint8_t *buf;
	size_t len;			/* a multiple of CIO_UNIT */
	struct bal_worker *w;
	struct bal_msg *msg;
	int err;
	/* The pool's, under its lock. */
	struct cjob *next;
	uint64_t seq;
	size_t claimed;
	unsigned left;
};
int cpool_create(unsigned nthreads, struct cpool **out);
void cpool_destroy(struct cpool *p);	/* after every job ended */
void cpool_submit(struct cpool *p, struct cjob *j);

/* server.c, for the connection code */
struct bal_vstore *srv_store(struct bal_server *srv);
struct cpool *srv_cpool(struct bal_server *srv);
struct bal_tier *srv_tier(struct bal_server *srv);
const char *srv_default_export(struct bal_server *srv);
unsigned srv_handshake_timeout(struct bal_server *srv);
unsigned srv_request_timeout(struct bal_server *srv);
bool srv_stopping(struct bal_server *srv);
void srv_conn_new(struct bal_server *srv, struct conn *c);
void srv_conn_gone(struct bal_server *srv, struct conn *c);

#endif
