/* SPDX-License-Identifier: MIT */
/*
 * NBD connection plumbing: exact-length receives, the send queue (one
 * sendmsg in flight, gathering queued messages), reference counting and
 * teardown, and deadlines.  Worker thread only.
 *
 * Lifetime: a connection holds one reference for itself, one per SQE that
 * points at it and one per request in flight.  conn_close() shuts the
 * socket down so pending receives and sends complete; the memory goes when
 * the last reference is dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "target/nbd_internal.h"
#include "volume/volume.h"

static uint64_t next_conn_id = 1;	/* per process; only used in logs */

struct out *out_new(size_t extra)
{
	struct out *o = calloc(1, sizeof(*o) + extra);

	return o;
}

void *out_extra(struct out *o)
{
	return o + 1;
}

void out_free(struct out *o)
{
	free(o);
}

void conn_ref(struct conn *c)
{
	c->refs++;
}

void conn_unref(struct conn *c)
{
	if (--c->refs)
		return;
	bal_info("conn %" PRIu64 " (%s): closed%s%s, %" PRIu64 " reads / %" PRIu64
		 " bytes, %" PRIu64 " writes / %" PRIu64 " bytes",
		 c->id, c->peer, c->vol ? ", export " : "", c->vol ? bal_vol_name(c->vol) : "",
		 c->nreads, c->bytes_read, c->nwrites, c->bytes_written);
	srv_conn_gone(c->srv, c);
	close(c->fd);
	cio_close(c);
	bal_vol_close(c->vol);
	free(c->opt);
	free(c->drain_buf);
	free(c);
}

static void flush_queue_on_close(struct conn *c)
{
	struct out *o = c->tx_head;

	c->tx_head = c->tx_tail = NULL;
	while (o) {
		struct out *next = o->next;

		if (o->sent)
			o->sent(o);
		else
			out_free(o);
		o = next;
	}
}

void conn_close(struct conn *c, const char *why)
{
	if (c->closing)
		return;
	c->closing = true;
	if (why)
		bal_info("conn %" PRIu64 " (%s): %s", c->id, c->peer, why);
	shutdown(c->fd, SHUT_RDWR);
	if (!c->tx_active)
		flush_queue_on_close(c);
	conn_unref(c);	/* the connection's own reference */
}

static void rx_done(struct bal_io *io, int res)
{
	struct conn *c = (struct conn *)((char *)io - offsetof(struct conn, rx_io));

	c->rx_active = false;
	if (c->closing || res <= 0)
		tx_rx_aborted(c);	/* a half-received WRITE will never run */
	if (c->closing) {
		conn_unref(c);
		return;
	}
	if (res <= 0) {
		if (res == 0 || res == -ECONNRESET)
			conn_close(c, c->rx_got || (c->transmission && c->inflight) ?
				   "peer hung up mid-message" : "peer hung up");
		else if (res == -ECANCELED && c->draining)
			conn_kick(c);	/* shutdown: answer what is in flight, then close */
		else if (res == -ECANCELED)
			conn_close(c, NULL);
		else {
			char why[96];

			snprintf(why, sizeof(why), "receive failed: %s", strerror(-res));
			conn_close(c, why);
		}
		conn_unref(c);
		return;
	}
	c->rx_got += (size_t)res;
	if (c->rx_got < c->rx_want) {
		/* A message is half in: it must finish within the request timeout. */
		if (c->transmission && !c->deadline_armed)
			conn_set_deadline(c, srv_request_timeout(c->srv));
		c->rx_active = true;
		bal_worker_recv(c->w, &c->rx_io, c->fd, c->rx_buf + c->rx_got,
				c->rx_want - c->rx_got);
		return;
	}
	c->rx_next(c);
	conn_unref(c);
}

void conn_recv(struct conn *c, void *buf, size_t len, void (*next)(struct conn *c))
{
	if (c->closing)
		return;
	c->rx_buf = buf;
	c->rx_want = len;
	c->rx_got = 0;
	c->rx_next = next;
	c->rx_active = true;
	conn_ref(c);
	bal_worker_recv(c->w, &c->rx_io, c->fd, buf, len);
}


static void tx_done(struct bal_io *io, int res)
{
	struct conn *c = (struct conn *)((char *)io - offsetof(struct conn, tx_io));
	size_t n;

	c->tx_active = false;
	if (res < 0 || c->closing) {
		for (unsigned i = 0; i < c->tx_nbatch; i++) {
			if (c->tx_batch[i]->sent)
				c->tx_batch[i]->sent(c->tx_batch[i]);
			else
				out_free(c->tx_batch[i]);
		}
		c->tx_nbatch = 0;
		if (!c->closing) {
			char why[96];

			snprintf(why, sizeof(why), "send failed: %s", strerror(-res));
			conn_close(c, why);
		}
		flush_queue_on_close(c);
		conn_unref(c);
		return;
	}
	/* Advance over what went out; resubmit the rest of a partial send. */
	n = (size_t)res;
	while (n && c->tx_iovoff < c->tx_iovcnt) {
		struct iovec *v = &c->tx_iov[c->tx_iovoff];

		if (n >= v->iov_len) {
			n -= v->iov_len;
			c->tx_iovoff++;
		} else {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
	if (c->tx_iovoff < c->tx_iovcnt) {
		c->tx_active = true;
		bal_worker_sendmsg(c->w, &c->tx_io, c->fd, &c->tx_iov[c->tx_iovoff],
				   c->tx_iovcnt - c->tx_iovoff, &c->tx_mh);
		return;
	}
	for (unsigned i = 0; i < c->tx_nbatch; i++) {
		if (c->tx_batch[i]->sent)
			c->tx_batch[i]->sent(c->tx_batch[i]);
		else
			out_free(c->tx_batch[i]);
	}
	c->tx_nbatch = 0;
	conn_kick(c);
	conn_unref(c);
}

void conn_kick(struct conn *c)
{
	if (c->tx_active || c->closing)
		return;
	if (!c->tx_head) {
		if (c->close_after_send && !(c->transmission && c->inflight))
			conn_close(c, NULL);
		return;
	}
	c->tx_nbatch = 0;
	c->tx_iovcnt = 0;
	c->tx_iovoff = 0;
	while (c->tx_head && c->tx_nbatch < SEND_BATCH &&
	       c->tx_iovcnt + c->tx_head->iovcnt <= SEND_BATCH * 4) {
		struct out *o = c->tx_head;

		c->tx_head = o->next;
		if (!c->tx_head)
			c->tx_tail = NULL;
		for (unsigned i = 0; i < o->iovcnt; i++)
			if (o->iov[i].iov_len)
				c->tx_iov[c->tx_iovcnt++] = o->iov[i];
		c->tx_batch[c->tx_nbatch++] = o;
	}
	c->tx_active = true;
	conn_ref(c);
	bal_worker_sendmsg(c->w, &c->tx_io, c->fd, c->tx_iov, c->tx_iovcnt, &c->tx_mh);
}

void conn_send(struct conn *c, struct out *o)
{
	if (c->closing) {
		if (o->sent)
			o->sent(o);
		else
			out_free(o);
		return;
	}
	o->next = NULL;
	if (c->tx_tail)
		c->tx_tail->next = o;
	else
		c->tx_head = o;
	c->tx_tail = o;
	conn_kick(c);
}

void conn_set_deadline(struct conn *c, unsigned seconds)
{
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += seconds;
	c->deadline_armed = true;
}

void conn_clear_deadline(struct conn *c)
{
	c->deadline_armed = false;
}

/* Returns true if the connection was closed for timing out. */
bool conn_tick(struct conn *c, const struct timespec *now)
{
	if (c->closing || !c->deadline_armed)
		return false;
	if (now->tv_sec < c->deadline.tv_sec ||
	    (now->tv_sec == c->deadline.tv_sec && now->tv_nsec < c->deadline.tv_nsec))
		return false;
	conn_close(c, c->transmission ? "timed out in the middle of a request" :
		   "handshake timed out");
	return true;
}

void conn_start(struct bal_server *srv, struct bal_worker *w, int fd, const char *peer)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c) {
		bal_err("connection from %s: out of memory", peer);
		close(fd);
		return;
	}
	c->srv = srv;
	c->w = w;
	c->fd = fd;
	c->id = __atomic_fetch_add(&next_conn_id, 1, __ATOMIC_RELAXED);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->refs = 1;
	c->rx_io.done = rx_done;
	c->tx_io.done = tx_done;
	srv_conn_new(srv, c);
	bal_debug("conn %" PRIu64 " (%s): accepted on worker %u", c->id, peer, bal_worker_id(w));
	conn_set_deadline(c, srv_handshake_timeout(srv));
	hs_start(c);
}
