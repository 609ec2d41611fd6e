/* SPDX-License-Identifier: MIT */
/*
 * NBD transmission phase (proto.md "Transmission" and "Request types").
 * Each request is validated before anything is allocated or touched
 * (validate()), then runs concurrently with the others of its connection:
 * pool reads and writes are SQEs on the worker's ring, FLUSH and FUA wait
 * for the store's batched sync, and replies go out as soon as a request is
 * done, in any order.  A connection stops reading requests while
 * CONN_MAX_INFLIGHT requests or CONN_MAX_INFLIGHT_BYTES of buffers are in
 * flight.  On encrypted volumes the AES-XTS of a large aligned request runs
 * on the cipher pool (cipher_pool.c) while the worker goes on with other
 * requests.  Worker thread only (the sync callback and the cipher pool just
 * post a message).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "target/nbd_internal.h"
#include "target/nbd_proto.h"
#include "snapshot/tier.h"
#include "volume/volume.h"

struct req;

struct segio {
	struct bal_io io;
	struct req *r;
	uint64_t phys;
	uint8_t *buf;
	uint32_t len, done;
};

struct req {
	struct conn *c;
	struct bal_msg msg;		/* sync or cipher completion, posted to the worker */
	struct cjob job;		/* cipher pool job of a large encrypted request */
	uint64_t cookie, off;
	uint32_t len;
	uint16_t type, flags;
	uint8_t *buf;
	size_t bufcap;			/* buf came from buf_get(bufcap); 0: malloc */
	uint64_t ioff;			/* pool I/O range: [off, off+len) widened to */
	uint32_t ilen;			/* whole 4 KiB units on encrypted volumes */
	uint32_t doff;			/* the client's bytes start at buf + doff */
	int err;			/* -errno of the first failure */
	unsigned pending;		/* pool I/Os in flight */
	bool all_hole;
	bool pinned;			/* holds an I/O guard token */
	bool ciphered;			/* the cipher pool already did the AES-XTS */
	bool fetched;			/* restored volume: its clusters were made local */
	unsigned io_token;
	size_t nsegs;
	struct segio segs[];
};

static void on_header(struct conn *c);

#define DRAIN_REQUEST_GRACE 2	/* seconds left to a half-received request at shutdown */

static uint32_t wire_error(int err)
{
	switch (-err) {
	case 0: return 0;
	case EPERM: case EROFS: return NBD_EPERM;
	case ENOMEM: return NBD_ENOMEM;
	case EINVAL: return NBD_EINVAL;
	case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
	case EOVERFLOW: return NBD_EOVERFLOW;
	case ENOTSUP: return NBD_ENOTSUP;
	case ESHUTDOWN: return NBD_ESHUTDOWN;
	default: return NBD_EIO;
	}
}

static const char *cmd_name(uint16_t type)
{
	static const char *const names[] = { "READ", "WRITE", "DISC", "FLUSH", "TRIM",
					     "CACHE", "WRITE_ZEROES", "BLOCK_STATUS" };

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown command";
}

static bool over_limits(const struct conn *c)
{
	return c->inflight >= CONN_MAX_INFLIGHT || c->inflight_bytes >= CONN_MAX_INFLIGHT_BYTES;
}

static void next_header(struct conn *c)
{
	if (c->closing || c->draining || c->close_after_send)
		return;
	if (over_limits(c)) {
		c->rx_paused = true;
		return;
	}
	conn_recv(c, c->hdr, 28, on_header);
}

/* The pool I/O of @r is over: freed clusters may be recycled past it. */
static void unpin(struct req *r)
{
	if (!r->pinned)
		return;
	r->pinned = false;
	bal_vstore_io_end(srv_store(r->c->srv), r->io_token);
}

static void req_free(struct req *r)
{
	struct conn *c = r->c;

	unpin(r);
	c->inflight--;
	c->inflight_bytes -= (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) ? r->ilen : 0;
	if (r->bufcap)
		buf_put(r->buf, r->bufcap);
	else
		free(r->buf);
	free(r);
	if (c->rx_paused && !over_limits(c)) {
		c->rx_paused = false;
		next_header(c);
	}
	conn_unref(c);
}

static void reply_sent(struct out *o)
{
	struct req *r = o->owner;

	out_free(o);
	req_free(r);
}

/*
 * Build and queue the reply of @r (proto.md "Simple reply message" and
 * "Structured reply chunk message").  The request is freed once sent.
 */
static void req_reply(struct req *r, int err, const char *msg)
{
	struct conn *c = r->c;
	size_t msglen = msg ? strlen(msg) : 0;
	struct out *o = out_new(msglen);

	if (!o) {
		/* No memory for a reply: the client would wait forever. */
		conn_close(c, "out of memory for a reply");
		req_free(r);
		return;
	}
	o->owner = r;
	o->sent = reply_sent;
	o->iovcnt = 1;
	if (err && msg)
		bal_debug("conn %" PRIu64 ": %s at %" PRIu64 "+%u: %s", c->id,
			  cmd_name(r->type), r->off, r->len, msg);
	if (!c->structured || (!err && r->type != NBD_CMD_READ)) {
		bal_put_be32(o->hdr, NBD_SIMPLE_REPLY_MAGIC);
		bal_put_be32(o->hdr + 4, wire_error(err));
		bal_put_be64(o->hdr + 8, r->cookie);
		o->iov[0] = (struct iovec){ o->hdr, 16 };
		if (!err && r->type == NBD_CMD_READ) {
			o->iov[1] = (struct iovec){ r->buf + r->doff, r->len };
			o->iovcnt = 2;
		}
		conn_send(c, o);
		return;
	}
	bal_put_be32(o->hdr, NBD_STRUCTURED_REPLY_MAGIC);
	bal_put_be16(o->hdr + 4, NBD_REPLY_FLAG_DONE);
	bal_put_be64(o->hdr + 8, r->cookie);
	if (err) {
		bal_put_be16(o->hdr + 6, NBD_REPLY_TYPE_ERROR);
		bal_put_be32(o->hdr + 16, (uint32_t)(6 + msglen));
		bal_put_be32(o->hdr + 20, wire_error(err));
		bal_put_be16(o->hdr + 24, (uint16_t)msglen);
		o->iov[0] = (struct iovec){ o->hdr, 26 };
		if (msglen) {
			memcpy(out_extra(o), msg, msglen);
			o->iov[1] = (struct iovec){ out_extra(o), msglen };
			o->iovcnt = 2;
		}
	} else if (r->all_hole) {
		bal_put_be16(o->hdr + 6, NBD_REPLY_TYPE_OFFSET_HOLE);
		bal_put_be32(o->hdr + 16, 12);
		bal_put_be64(o->hdr + 20, r->off);
		bal_put_be32(o->hdr + 28, r->len);
		o->iov[0] = (struct iovec){ o->hdr, 32 };
	} else {
		bal_put_be16(o->hdr + 6, NBD_REPLY_TYPE_OFFSET_DATA);
		bal_put_be32(o->hdr + 16, 8 + r->len);
		bal_put_be64(o->hdr + 20, r->off);
		o->iov[0] = (struct iovec){ o->hdr, 28 };
		o->iov[1] = (struct iovec){ r->buf + r->doff, r->len };
		o->iovcnt = 2;
	}
	conn_send(c, o);
}

static void req_fail(struct req *r, int err)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "%s: %s", cmd_name(r->type), strerror(-err));
	req_reply(r, err, msg);
}

static void sync_done_msg(struct bal_worker *w, struct bal_msg *m)
{
	struct req *r = (struct req *)((char *)m - offsetof(struct req, msg));

	(void)w;
	if (r->err)
		req_fail(r, r->err);
	else
		req_reply(r, 0, NULL);
}

/* Sync thread: hand the result back to the connection's worker. */
static void sync_done(void *arg, int err)
{
	struct req *r = arg;

	r->err = err;
	r->msg.fn = sync_done_msg;
	bal_worker_post(r->c->w, &r->msg);
}

static bool use_cpool(const struct req *r)
{
	return r->c->xts && !r->ciphered && r->ilen >= CPOOL_MIN && !(r->ioff % CIO_UNIT) &&
	       !(r->ilen % CIO_UNIT);
}

/* Hand the AES-XTS of the whole request buffer to the cipher pool; @next runs after. */
static void cipher_async(struct req *r, bool encrypt,
			 void (*next)(struct bal_worker *w, struct bal_msg *m))
{
	struct conn *c = r->c;

	r->job = (struct cjob){ .key = c->xkey, .encrypt = encrypt, .off = r->ioff,
				.buf = r->buf, .len = r->ilen, .w = c->w, .msg = &r->msg };
	r->msg.fn = next;
	cpool_submit(srv_cpool(c->srv), &r->job);
}

static void req_finish(struct req *r, bool durable);

static void decrypted_msg(struct bal_worker *w, struct bal_msg *m)
{
	struct req *r = (struct req *)((char *)m - offsetof(struct req, msg));

	(void)w;
	r->ciphered = true;
	r->err = r->job.err;
	req_finish(r, false);
}

/* Reply now, or after a durable sync for FLUSH and FUA. */
static void req_finish(struct req *r, bool durable)
{
	int ret;

	if (!r->err && r->type == NBD_CMD_READ && r->c->xts && !r->all_hole && !r->ciphered) {
		if (use_cpool(r)) {
			cipher_async(r, false, decrypted_msg);
			return;
		}
		r->err = cio_decrypt(r->c, r->ioff, r->buf, r->ilen);
	}
	if (r->err) {
		req_fail(r, r->err);
		return;
	}
	if (!durable) {
		req_reply(r, 0, NULL);
		return;
	}
	ret = bal_vstore_sync_async(srv_store(r->c->srv), sync_done, r);
	if (ret < 0)
		req_fail(r, ret);
}

static void seg_done(struct bal_io *io, int res)
{
	struct segio *s = (struct segio *)io;
	struct req *r = s->r;
	struct conn *c = r->c;
	int fd = bal_vstore_pool_fd(srv_store(c->srv));

	if (res < 0) {
		if (!r->err) {
			bal_err("volume %s: pool %s at %" PRIu64 ": %s", bal_vol_name(c->vol),
				r->type == NBD_CMD_READ ? "read" : "write", s->phys + s->done,
				strerror(-res));
			r->err = res;
		}
	} else if (res == 0 && r->type == NBD_CMD_READ) {
		/* Past the pool's end: never written, reads as zeroes. */
		memset(s->buf + s->done, 0, s->len - s->done);
		s->done = s->len;
	} else if (res == 0) {
		r->err = -EIO;
	} else {
		s->done += (uint32_t)res;
	}
	if (!r->err && s->done < s->len) {
		if (r->type == NBD_CMD_READ)
			bal_worker_read(c->w, &s->io, fd, s->buf + s->done, s->len - s->done,
					s->phys + s->done);
		else
			bal_worker_write(c->w, &s->io, fd, s->buf + s->done, s->len - s->done,
					 s->phys + s->done);
		return;
	}
	if (--r->pending)
		return;
	unpin(r);
	req_finish(r, r->type == NBD_CMD_WRITE && (r->flags & NBD_CMD_FLAG_FUA));
}

/*
 * Encrypted volume: turn the payload into ciphertext of whole 4 KiB units
 * (in place when aligned; else a new buffer with the edge units merged).
 */
static int encrypt_write(struct req *r)
{
	struct conn *c = r->c;
	uint8_t *abuf;
	uint64_t aoff;
	uint32_t alen;
	int ret;

	if (!(r->off % CIO_UNIT) && !(r->len % CIO_UNIT))
		return cio_encrypt(c, r->off, r->buf, r->len);
	ret = cio_align_write(c, r->off, r->len, r->buf, &abuf, &aoff, &alen);
	if (ret < 0)
		return ret;
	if (r->bufcap)
		buf_put(r->buf, r->bufcap);
	else
		free(r->buf);
	r->bufcap = 0;
	r->buf = abuf;
	c->inflight_bytes += alen - r->ilen;
	r->ioff = aoff;
	r->ilen = alen;
	return 0;
}

/*
 * Queue the pool I/O of one mapped segment, starting at r->segs[k]; returns
 * the next free slot.  Reads go out whole.  Writes go out one cluster at a
 * time: the page cache sizes the folios a buffered write creates by the
 * length of that write, and a small write into a large cached folio costs
 * several times one into a folio of a cluster or less (ext4 walks and
 * dirties the whole folio), so writes never create folios larger than a
 * cluster.  A segment's physical cluster edges are those of its logical
 * range, so this needs no more slots than bal_vol_max_segs() gives.
 */
static size_t queue_seg(struct req *r, size_t k, int fd, uint64_t phys, uint8_t *buf,
			uint32_t len)
{
	struct bal_worker *w = r->c->w;

	while (len) {
		struct segio *s = &r->segs[k++];
		uint32_t piece = len, room = BAL_CLUSTER_SIZE - (uint32_t)(phys % BAL_CLUSTER_SIZE);

		if (r->type != NBD_CMD_READ && piece > room)
			piece = room;
		s->r = r;
		s->io.done = seg_done;
		s->phys = phys;
		s->len = piece;
		s->buf = buf;
		s->done = 0;
		r->pending++;
		if (r->type == NBD_CMD_READ)
			bal_worker_read(w, &s->io, fd, buf, piece, phys);
		else
			bal_worker_write(w, &s->io, fd, buf, piece, phys);
		phys += piece;
		buf += piece;
		len -= piece;
	}
	return k;
}

/* Map the request and queue the pool I/O of every segment. */
static void do_rw_io(struct req *r)
{
	struct conn *c = r->c;
	int fd = bal_vstore_pool_fd(srv_store(c->srv));
	struct bal_seg *segs;
	size_t n = 0, k = 0, max;
	uint32_t pos = 0;
	int ret;

	r->io_token = bal_vstore_io_begin(srv_store(c->srv));
	r->pinned = true;
	if (r->type == NBD_CMD_WRITE && c->xts && !r->ciphered) {
		ret = encrypt_write(r);
		if (ret < 0) {
			req_fail(r, ret);
			return;
		}
	}
	max = bal_vol_max_segs(r->ilen);
	if (max > r->nsegs) {
		req_fail(r, -EINVAL);
		return;
	}
	segs = malloc(max * sizeof(*segs));
	if (!segs) {
		req_fail(r, -ENOMEM);
		return;
	}
	if (r->type == NBD_CMD_READ)
		ret = bal_vol_map_read(c->vol, r->ioff, r->ilen, segs, max, &n);
	else
		ret = bal_vol_map_write(c->vol, r->ioff, r->ilen, segs, max, &n);
	if (ret < 0) {
		free(segs);
		req_fail(r, ret);
		return;
	}
	r->all_hole = true;
	r->pending = 1;		/* held until every segment is queued */
	for (size_t i = 0; i < n; i++) {
		uint8_t *buf = r->buf + pos;

		pos += segs[i].len;
		if (segs[i].phys == BAL_SEG_REMOTE) {
			/* Still in the object tier after its fetch: never served. */
			r->err = r->err ? r->err : -EIO;
			memset(buf, 0, segs[i].len);
			continue;
		}
		if (segs[i].phys == BAL_SEG_HOLE) {
			memset(buf, 0, segs[i].len);
			continue;
		}
		r->all_hole = false;
		k = queue_seg(r, k, fd, segs[i].phys, buf, segs[i].len);
	}
	free(segs);
	if (--r->pending)
		return;
	unpin(r);
	req_finish(r, r->type == NBD_CMD_WRITE && (r->flags & NBD_CMD_FLAG_FUA));
}

static void encrypted_msg(struct bal_worker *w, struct bal_msg *m)
{
	struct req *r = (struct req *)((char *)m - offsetof(struct req, msg));

	(void)w;
	r->ciphered = true;
	if (r->job.err) {
		req_fail(r, r->job.err);
		return;
	}
	do_rw_io(r);
}

/*
 * A large aligned WRITE on an encrypted volume is encrypted by the cipher
 * pool first: it reads no pool bytes, so it needs no I/O guard token yet
 * (do_rw_io takes it before mapping).  Unaligned writes merge the edge
 * units from the pool, under the token, inline in do_rw_io.
 */
static void do_rw(struct req *r)
{
	if (r->type == NBD_CMD_WRITE && use_cpool(r) && !(r->off % CIO_UNIT) &&
	    !(r->len % CIO_UNIT)) {
		cipher_async(r, true, encrypted_msg);
		return;
	}
	do_rw_io(r);
}

static void do_block_status(struct req *r)
{
	struct conn *c = r->c;
	size_t max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : 128, n = 0;
	struct bal_extent ext[128];
	struct out *o;
	uint8_t *p;
	int ret;

	ret = bal_vol_block_status(c->vol, r->off, r->len, ext, max, &n);
	if (ret < 0 || n == 0) {
		req_fail(r, ret < 0 ? ret : -EIO);
		return;
	}
	o = out_new(4 + 8 * n);
	if (!o) {
		req_fail(r, -ENOMEM);
		return;
	}
	o->owner = r;
	o->sent = reply_sent;
	bal_put_be32(o->hdr, NBD_STRUCTURED_REPLY_MAGIC);
	bal_put_be16(o->hdr + 4, NBD_REPLY_FLAG_DONE);
	bal_put_be16(o->hdr + 6, NBD_REPLY_TYPE_BLOCK_STATUS);
	bal_put_be64(o->hdr + 8, r->cookie);
	bal_put_be32(o->hdr + 16, (uint32_t)(4 + 8 * n));
	p = out_extra(o);
	bal_put_be32(p, c->meta_id);
	for (size_t i = 0; i < n; i++) {
		bal_put_be32(p + 4 + 8 * i, (uint32_t)ext[i].len);
		bal_put_be32(p + 8 + 8 * i, ext[i].flags);
	}
	o->iov[0] = (struct iovec){ o->hdr, 20 };
	o->iov[1] = (struct iovec){ p, 4 + 8 * n };
	o->iovcnt = 2;
	conn_send(c, o);
}

/*
 * TRIM and WRITE_ZEROES.  On an encrypted volume only whole 4 KiB units can
 * be zeroed by the map (a zero unit in the pool reads as zeroes); the
 * partial units at the edges are rewritten as encrypted zeroes, so a
 * trimmed range reads as zeroes as it does on a plain volume.
 */
static int do_trim_zero(struct req *r, bool zero)
{
	struct conn *c = r->c;
	bool punch = !(r->flags & NBD_CMD_FLAG_NO_HOLE);
	uint64_t off = r->off, len = r->len;
	unsigned tok;
	int ret = 0;

	if (c->xts) {
		tok = bal_vstore_io_begin(srv_store(c->srv));
		ret = cio_zero_edges(c, r->off, r->len, &off, &len);
		bal_vstore_io_end(srv_store(c->srv), tok);
		if (ret < 0 || !len)
			return ret;
	}
	return zero ? bal_vol_zero(c->vol, off, len, punch) : bal_vol_trim(c->vol, off, len);
}

static void dispatch(struct req *r);

static void fetched_msg(struct bal_worker *w, struct bal_msg *m)
{
	struct req *r = (struct req *)((char *)m - offsetof(struct req, msg));

	(void)w;
	if (r->err) {
		/* The chunk is missing, fails its check, or the store is unreachable. */
		r->err = 0;
		req_fail(r, -EIO);
		return;
	}
	dispatch(r);
}

/* A tier thread: the clusters are local (or not: @err); back to the worker. */
static void fetch_done(void *arg, int err)
{
	struct req *r = arg;

	r->err = err;
	r->msg.fn = fetched_msg;
	bal_worker_post(r->c->w, &r->msg);
}

/*
 * A restored volume: a read (or CACHE) of clusters still in the object
 * tier, or a write, trim or zero covering part of one, waits for the tier
 * to make them local (once), then runs as on any volume.  True if the
 * request was handed to the tier or failed.
 */
static bool fetch_first(struct req *r)
{
	struct conn *c = r->c;
	struct bal_tier *tier = srv_tier(c->srv);
	bool edges;

	switch (r->type) {
	case NBD_CMD_READ:
	case NBD_CMD_CACHE:
		edges = false;
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		edges = true;
		break;
	default:
		return false;
	}
	if (r->fetched || !bal_vol_needs_fill(c->vol, r->off, r->len, edges))
		return false;
	r->fetched = true;
	if (!tier || bal_tier_fetch_async(tier, c->vol, r->off, r->len, fetch_done, r) < 0)
		req_fail(r, -EIO);
	return true;
}

static void dispatch(struct req *r)
{
	struct conn *c = r->c;
	bool fua = r->flags & NBD_CMD_FLAG_FUA;

	if (fetch_first(r))
		return;
	switch (r->type) {
	case NBD_CMD_READ:
		c->nreads++;
		c->bytes_read += r->len;
		do_rw(r);
		return;
	case NBD_CMD_WRITE:
		c->nwrites++;
		c->bytes_written += r->len;
		do_rw(r);
		return;
	case NBD_CMD_FLUSH:
		req_finish(r, true);
		return;
	case NBD_CMD_TRIM:
		r->err = do_trim_zero(r, false);
		req_finish(r, fua);
		return;
	case NBD_CMD_WRITE_ZEROES:
		r->err = do_trim_zero(r, true);
		req_finish(r, fua);
		return;
	case NBD_CMD_BLOCK_STATUS:
		do_block_status(r);
		return;
	case NBD_CMD_CACHE:
		/* The pool is read through the page cache; nothing to prefetch. */
		req_finish(r, false);
		return;
	}
	req_fail(r, -EINVAL);
}

/*
 * Check a request against proto.md before acting on it.  Returns 0 or the
 * -errno to answer with, and a message for structured replies.
 */
static int validate(struct conn *c, uint16_t type, uint16_t flags, uint64_t off,
		    uint32_t len, const char **why)
{
	uint16_t allowed = NBD_CMD_FLAG_FUA;
	bool writes = type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
		      type == NBD_CMD_WRITE_ZEROES;
	uint64_t end;

	switch (type) {
	case NBD_CMD_READ:
		if (c->structured)
			allowed |= NBD_CMD_FLAG_DF;
		break;
	case NBD_CMD_WRITE_ZEROES:
		allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed |= NBD_CMD_FLAG_REQ_ONE;
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
		break;
	default:
		*why = "unknown command";
		return -EINVAL;
	}
	if (flags & ~allowed) {
		*why = "command flag not valid for this command";
		return -EINVAL;
	}
	if (c->draining || bal_vol_is_deleted(c->vol)) {
		*why = c->draining ? "server is shutting down" : "volume was deleted";
		return -ESHUTDOWN;
	}
	if (type == NBD_CMD_FLUSH) {
		if (off || len) {
			*why = "FLUSH must have zero offset and length";
			return -EINVAL;
		}
		return 0;
	}
	if (len == 0) {
		*why = "zero-length request";
		return -EINVAL;
	}
	if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len > NBD_MAX_BLOCK) {
		*why = "request larger than the maximum block size (32 MiB)";
		return -EINVAL;
	}
	if (writes && (c->tflags & NBD_FLAG_READ_ONLY)) {
		*why = "export is read-only";
		return -EPERM;
	}
	if (type == NBD_CMD_BLOCK_STATUS && !c->meta_base) {
		*why = "no metadata context was negotiated";
		return -EINVAL;
	}
	if (__builtin_add_overflow(off, (uint64_t)len, &end) || end > bal_vol_size(c->vol)) {
		*why = "request extends past the end of the export";
		return writes ? -ENOSPC : -EINVAL;
	}
	return 0;
}

static struct req *req_new(struct conn *c, size_t nsegs)
{
	struct req *r = calloc(1, sizeof(*r) + nsegs * sizeof(struct segio));

	if (!r)
		return NULL;
	r->c = c;
	r->nsegs = nsegs;
	conn_ref(c);
	c->inflight++;
	return r;
}

static void on_drained(struct conn *c);

static void drain_more(struct conn *c)
{
	uint32_t n = c->drain_left > 65536 ? 65536 : (uint32_t)c->drain_left;

	conn_recv(c, c->drain_buf, n, on_drained);
}

/* A refused WRITE's payload is read and dropped, then the error goes out. */
static void on_drained(struct conn *c)
{
	c->drain_left -= c->rx_got;
	if (c->drain_left) {
		drain_more(c);
		return;
	}
	conn_clear_deadline(c);
	req_fail(c->rx_req, c->rx_req->err);
	c->rx_req = NULL;
	next_header(c);
}

static void on_payload(struct conn *c)
{
	struct req *r = c->rx_req;

	c->rx_req = NULL;
	conn_clear_deadline(c);
	dispatch(r);
	next_header(c);
}

static void on_header(struct conn *c)
{
	const uint8_t *h = c->hdr;
	uint16_t flags = bal_get_be16(h + 4), type = bal_get_be16(h + 6);
	uint64_t cookie = bal_get_be64(h + 8), off = bal_get_be64(h + 16);
	uint32_t len = bal_get_be32(h + 24);
	const char *why = NULL;
	struct req *r;
	int err;

	conn_clear_deadline(c);
	if (bal_get_be32(h) != NBD_REQUEST_MAGIC) {
		conn_close(c, "bad request magic");
		return;
	}
	if (type == NBD_CMD_DISC) {
		/* proto.md: finish what is outstanding, then close. */
		c->close_after_send = true;
		conn_clear_deadline(c);
		conn_kick(c);
		return;
	}
	err = validate(c, type, flags, off, len, &why);
	if (type == NBD_CMD_WRITE && err && len > NBD_MAX_DRAIN) {
		conn_close(c, "WRITE payload too large to skip");
		return;
	}
	r = req_new(c, err ? 0 : (type == NBD_CMD_READ || type == NBD_CMD_WRITE) ?
			bal_vol_max_segs(len) + (c->xts ? 2 : 0) : 0);
	if (!r) {
		conn_close(c, "out of memory for a request");
		return;
	}
	r->cookie = cookie;
	r->off = off;
	r->len = len;
	r->ioff = off;
	r->ilen = len;
	r->type = type;
	r->flags = flags;
	if (err) {
		r->err = err;
		r->len = 0;
		r->ilen = 0;
		if (type == NBD_CMD_WRITE && len) {
			if (!c->drain_buf && !(c->drain_buf = malloc(65536))) {
				conn_close(c, "out of memory");
				req_free(r);
				return;
			}
			c->rx_req = r;
			c->drain_left = len;
			conn_set_deadline(c, srv_request_timeout(c->srv));
			drain_more(c);
			return;
		}
		req_reply(r, err, why);
		next_header(c);
		return;
	}
	if (type == NBD_CMD_READ && c->xts) {
		/* Decryption works on whole units: read the units around the range. */
		r->ioff = off & ~(uint64_t)(CIO_UNIT - 1);
		r->ilen = (uint32_t)(((off + len + CIO_UNIT - 1) & ~(uint64_t)(CIO_UNIT - 1)) - r->ioff);
		r->doff = (uint32_t)(off - r->ioff);
	}
	if (type == NBD_CMD_READ || type == NBD_CMD_WRITE) {
		r->buf = buf_get(r->ilen);
		r->bufcap = r->ilen;
		if (!r->buf) {
			r->bufcap = 0;
			r->ilen = 0;
			conn_close(c, "out of memory for a request buffer");
			req_free(r);
			return;
		}
		c->inflight_bytes += r->ilen;
	}
	if (type == NBD_CMD_WRITE) {
		c->rx_req = r;
		conn_set_deadline(c, srv_request_timeout(c->srv));
		conn_recv(c, r->buf, len, on_payload);
		return;
	}
	dispatch(r);
	next_header(c);
}

void tx_rx_aborted(struct conn *c)
{
	struct req *r = c->rx_req;

	if (!r)
		return;
	c->rx_req = NULL;
	req_free(r);
}

void tx_start(struct conn *c)
{
	conn_recv(c, c->hdr, 28, on_header);
}

void tx_drain(struct conn *c)
{
	if (c->draining || c->closing)
		return;
	c->draining = true;
	c->close_after_send = true;
	/* Between requests: stop waiting for the next one.  Mid-request: let it finish. */
	if (c->rx_active && c->rx_next == on_header && c->rx_got == 0) {
		bal_worker_cancel(c->w, &c->rx_io);
	} else if (!c->rx_active) {
		conn_kick(c);
	} else if (srv_request_timeout(c->srv) > DRAIN_REQUEST_GRACE) {
		/* A client that stalls mid-request does not hold up the shutdown. */
		conn_set_deadline(c, DRAIN_REQUEST_GRACE);
	}
}
