/* SPDX-License-Identifier: MIT */
/*
 * NBD handshake (proto.md "Fixed newstyle negotiation" and "Option types"):
 * greeting, client flags, then options until EXPORT_NAME or a successful
 * GO.  Every option's length is checked before anything is allocated;
 * options longer than NBD_MAX_OPTION end the session.  Worker thread only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "target/nbd_internal.h"
#include "target/nbd_proto.h"
#include "volume/volume.h"

static void hs_opt_header(struct conn *c);

static void send_rep(struct conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	struct out *o = out_new(len);

	if (!o) {
		conn_close(c, "out of memory");
		return;
	}
	bal_put_be64(o->hdr, NBD_REP_MAGIC);
	bal_put_be32(o->hdr + 8, opt);
	bal_put_be32(o->hdr + 12, type);
	bal_put_be32(o->hdr + 16, len);
	o->iov[0] = (struct iovec){ o->hdr, 20 };
	o->iovcnt = 1;
	if (len) {
		memcpy(out_extra(o), data, len);
		o->iov[1] = (struct iovec){ out_extra(o), len };
		o->iovcnt = 2;
	}
	conn_send(c, o);
}

static void send_err(struct conn *c, uint32_t type, const char *msg)
{
	bal_debug("conn %" PRIu64 ": option %u refused (0x%x): %s", c->id, c->opt_type, type, msg);
	send_rep(c, c->opt_type, type, msg, (uint32_t)strlen(msg));
}

static void next_option(struct conn *c)
{
	free(c->opt);
	c->opt = NULL;
	conn_recv(c, c->hdr, 16, hs_opt_header);
}

/* proto.md: strings are at most 4096 bytes and contain no NUL. */
static bool valid_string(const uint8_t *s, uint32_t len)
{
	return len <= NBD_MAX_STRING && (len == 0 || !memchr(s, 0, len));
}

/* Map an export name to a volume name ("" means the default export). */
static const char *resolve(struct conn *c, char *name)
{
	if (!*name)
		return srv_default_export(c->srv);
	(void)c;
	return name;
}

static uint16_t export_flags(struct conn *c, struct bal_volume *vol)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;

	if (bal_vol_is_readonly(vol))
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
	if (c->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

static void enter_transmission(struct conn *c, struct bal_volume *vol)
{
	c->vol = vol;
	c->tflags = export_flags(c, vol);
	c->transmission = true;
	if (cio_open(c) < 0) {
		conn_close(c, "cannot set up the volume's cipher");
		return;
	}
	conn_clear_deadline(c);
	free(c->opt);
	c->opt = NULL;
	bal_info("conn %" PRIu64 " (%s): export %s, %s replies%s", c->id, c->peer,
		 bal_vol_name(vol), c->structured ? "structured" : "simple",
		 c->meta_base ? ", base:allocation" : "");
	tx_start(c);
}

static void opt_export_name(struct conn *c)
{
	struct bal_volume *vol;
	const char *vname;
	struct out *o;
	char *name;

	if (!valid_string(c->opt, c->opt_len)) {
		conn_close(c, "EXPORT_NAME with an invalid name");
		return;
	}
	name = c->opt_len ? strndup((char *)c->opt, c->opt_len) : strdup("");
	if (!name) {
		conn_close(c, "out of memory");
		return;
	}
	vname = resolve(c, name);
	/* proto.md: an export that cannot be served ends the session. */
	if (!vname || bal_vol_open(srv_store(c->srv), vname, &vol) < 0) {
		bal_info("conn %" PRIu64 " (%s): EXPORT_NAME '%.64s': no such export", c->id, c->peer, name);
		free(name);
		conn_close(c, NULL);
		return;
	}
	free(name);
	o = out_new(134);
	if (!o) {
		bal_vol_close(vol);
		conn_close(c, "out of memory");
		return;
	}
	c->vol = vol;
	bal_put_be64(o->hdr, bal_vol_size(vol));
	bal_put_be16(o->hdr + 8, export_flags(c, vol));
	o->iov[0] = (struct iovec){ o->hdr, 10 };
	o->iovcnt = 1;
	if (!(c->client_flags & NBD_FLAG_C_NO_ZEROES)) {
		o->iov[1] = (struct iovec){ out_extra(o), 124 };
		o->iovcnt = 2;
	}
	conn_send(c, o);
	enter_transmission(c, vol);
}

static void send_server(struct conn *c, const char *name)
{
	uint8_t buf[4 + 2 * BAL_NAME_MAX + 1];
	uint32_t len = (uint32_t)strlen(name);

	bal_put_be32(buf, len);
	memcpy(buf + 4, name, len);
	send_rep(c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + len);
}

/* Every volume, then every snapshot as VOL@SNAP (read-only exports). */
static void opt_list(struct conn *c)
{
	struct bal_vol_info *vols = NULL;
	struct bal_snap_info *snaps = NULL;
	size_t n = 0, ns = 0;
	char name[2 * BAL_NAME_MAX + 2];

	if (c->opt_len) {
		send_err(c, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
		return;
	}
	if (bal_vstore_list(srv_store(c->srv), &vols, &n) < 0 ||
	    bal_vstore_snap_list(srv_store(c->srv), NULL, &snaps, &ns) < 0) {
		free(vols);
		send_err(c, NBD_REP_ERR_PLATFORM, "cannot list volumes");
		return;
	}
	for (size_t i = 0; i < n; i++)
		send_server(c, vols[i].name);
	for (size_t i = 0; i < ns; i++) {
		snprintf(name, sizeof(name), "%s@%s", snaps[i].volume, snaps[i].name);
		send_server(c, name);
	}
	free(vols);
	free(snaps);
	send_rep(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static void send_info(struct conn *c, uint16_t type, const void *data, uint32_t len)
{
	uint8_t buf[2 + NBD_MAX_STRING];

	bal_put_be16(buf, type);
	memcpy(buf + 2, data, len);
	send_rep(c, c->opt_type, NBD_REP_INFO, buf, 2 + len);
}

/* Why @vname cannot be opened, for the client (never key material). */
static void open_error(struct conn *c, const char *vname, int err, char *msg, size_t len)
{
	struct bal_vol_info info;
	char base[BAL_NAME_MAX + 1];
	size_t n = strcspn(vname, "@");

	if (err == -ENOKEY && n <= BAL_NAME_MAX) {
		memcpy(base, vname, n);
		base[n] = '\0';
		if (bal_vstore_info(srv_store(c->srv), base, &info) == 0 && info.locked) {
			snprintf(msg, len, "volume '%s' is locked: %s", base, info.lock_reason);
			bal_info("conn %" PRIu64 " (%s): export '%.130s' refused: %s", c->id, c->peer,
				 vname, msg);
			return;
		}
	}
	snprintf(msg, len, "export '%.130s': %s", vname,
		 err == -ENOENT ? "no such volume" :
		 err == -ENOKEY ? "volume is locked (its key is not available)" : strerror(-err));
}

/* NBD_OPT_INFO and NBD_OPT_GO (proto.md "NBD_OPT_INFO"). */
static void opt_info_go(struct conn *c)
{
	const uint8_t *p = c->opt;
	struct bal_volume *vol = NULL;
	bool want_name = false, want_desc = false;
	uint32_t namelen;
	uint16_t nreq;
	const char *vname;
	uint8_t buf[12];
	char name[NBD_MAX_STRING + 1];
	char desc[160];
	int ret;

	if (c->opt_len < 6) {
		send_err(c, NBD_REP_ERR_INVALID, "option too short");
		return;
	}
	namelen = bal_get_be32(p);
	if (namelen > c->opt_len - 6) {
		send_err(c, NBD_REP_ERR_INVALID, "export name length exceeds the option");
		return;
	}
	nreq = bal_get_be16(p + 4 + namelen);
	if ((uint64_t)4 + namelen + 2 + 2u * nreq != c->opt_len) {
		send_err(c, NBD_REP_ERR_INVALID, "option length does not match its contents");
		return;
	}
	if (!valid_string(p + 4, namelen)) {
		send_err(c, NBD_REP_ERR_INVALID, "export name too long or contains NUL");
		return;
	}
	memcpy(name, p + 4, namelen);
	name[namelen] = '\0';
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t t = bal_get_be16(p + 4 + namelen + 2 + 2 * i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	vname = resolve(c, name);
	if (!vname) {
		send_err(c, NBD_REP_ERR_UNKNOWN, "no default export: name a volume");
		return;
	}
	ret = bal_vol_open(srv_store(c->srv), vname, &vol);
	if (ret < 0) {
		char msg[256];

		open_error(c, vname, ret, msg, sizeof(msg));
		send_err(c, ret == -ENOENT ? NBD_REP_ERR_UNKNOWN :
			 ret == -ENOKEY ? NBD_REP_ERR_POLICY : NBD_REP_ERR_PLATFORM, msg);
		return;
	}
	bal_put_be64(buf, bal_vol_size(vol));
	bal_put_be16(buf + 8, export_flags(c, vol));
	send_info(c, NBD_INFO_EXPORT, buf, 10);
	if (want_name)
		send_info(c, NBD_INFO_NAME, vname, (uint32_t)strlen(vname));
	if (want_desc) {
		snprintf(desc, sizeof(desc), "Ballast %s %.130s",
			 bal_vol_is_readonly(vol) ? "snapshot" : "volume", vname);
		send_info(c, NBD_INFO_DESCRIPTION, desc, (uint32_t)strlen(desc));
	}
	bal_put_be32(buf, NBD_MIN_BLOCK);
	bal_put_be32(buf + 4, NBD_PREF_BLOCK);
	bal_put_be32(buf + 8, NBD_MAX_BLOCK);
	send_info(c, NBD_INFO_BLOCK_SIZE, buf, 12);
	send_rep(c, c->opt_type, NBD_REP_ACK, NULL, 0);
	if (c->opt_type == NBD_OPT_INFO) {
		bal_vol_close(vol);
		return;
	}
	enter_transmission(c, vol);
}

static bool query_matches(const uint8_t *q, uint32_t len, bool listing)
{
	static const char base[] = "base:allocation";

	if (len == sizeof(base) - 1 && !memcmp(q, base, len))
		return true;
	/* LIST_META_CONTEXT: "base:" lists every context of the namespace. */
	return listing && len == 5 && !memcmp(q, "base:", 5);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static void opt_meta(struct conn *c)
{
	bool listing = c->opt_type == NBD_OPT_LIST_META_CONTEXT;
	const uint8_t *p = c->opt;
	uint32_t len = c->opt_len, namelen, nq, off;
	bool match = false;
	char name[NBD_MAX_STRING + 1];
	const char *vname;
	struct bal_volume *vol;

	if (!c->structured) {
		send_err(c, NBD_REP_ERR_INVALID, "negotiate structured replies first");
		return;
	}
	if (len < 8 || (namelen = bal_get_be32(p)) > len - 8) {
		send_err(c, NBD_REP_ERR_INVALID, "malformed meta context option");
		return;
	}
	if (!valid_string(p + 4, namelen)) {
		send_err(c, NBD_REP_ERR_INVALID, "export name too long or contains NUL");
		return;
	}
	memcpy(name, p + 4, namelen);
	name[namelen] = '\0';
	nq = bal_get_be32(p + 4 + namelen);
	off = 8 + namelen;
	/* Validate every query before answering any. */
	for (uint32_t i = 0, o = off; i < nq; i++) {
		uint32_t ql;

		if (len - o < 4 || (ql = bal_get_be32(p + o)) > len - o - 4 ||
		    !valid_string(p + o + 4, ql)) {
			send_err(c, NBD_REP_ERR_INVALID, "malformed meta context query");
			return;
		}
		o += 4 + ql;
		if (i + 1 == nq && o != len) {
			send_err(c, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
			return;
		}
	}
	if (nq == 0 && off != len) {
		send_err(c, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
		return;
	}
	vname = resolve(c, name);
	if (!vname || bal_vol_open(srv_store(c->srv), vname, &vol) < 0) {
		send_err(c, NBD_REP_ERR_UNKNOWN, "no such export");
		return;
	}
	bal_vol_close(vol);
	if (nq == 0) {
		match = listing;	/* an empty list asks for every context */
	} else {
		for (uint32_t i = 0, o = off; i < nq; i++) {
			uint32_t ql = bal_get_be32(p + o);

			match |= query_matches(p + o + 4, ql, listing);
			o += 4 + ql;
		}
	}
	if (!listing) {
		c->meta_base = match;
		c->meta_id = match ? 1 : 0;
	}
	if (match) {
		uint8_t buf[4 + 15];

		bal_put_be32(buf, listing ? 0 : 1);
		memcpy(buf + 4, "base:allocation", 15);
		send_rep(c, c->opt_type, NBD_REP_META_CONTEXT, buf, sizeof(buf));
	}
	send_rep(c, c->opt_type, NBD_REP_ACK, NULL, 0);
}

static void hs_opt_data(struct conn *c)
{
	switch (c->opt_type) {
	case NBD_OPT_EXPORT_NAME:
		opt_export_name(c);
		return;
	case NBD_OPT_ABORT:
		send_rep(c, NBD_OPT_ABORT, NBD_REP_ACK, NULL, 0);
		c->close_after_send = true;
		return;
	case NBD_OPT_LIST:
		opt_list(c);
		break;
	case NBD_OPT_STARTTLS:
		send_err(c, c->opt_len ? NBD_REP_ERR_INVALID : NBD_REP_ERR_UNSUP,
			 "TLS is not available on this listener");
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info_go(c);
		if (c->transmission)
			return;
		break;
	case NBD_OPT_STRUCTURED_REPLY:
		if (c->opt_len) {
			send_err(c, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
			break;
		}
		c->structured = true;
		send_rep(c, c->opt_type, NBD_REP_ACK, NULL, 0);
		break;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(c);
		break;
	default:
		send_err(c, NBD_REP_ERR_UNSUP, "unsupported option");
		break;
	}
	next_option(c);
}

static void hs_opt_header(struct conn *c)
{
	if (bal_get_be64(c->hdr) != NBD_IHAVEOPT) {
		conn_close(c, "bad option magic in handshake");
		return;
	}
	c->opt_type = bal_get_be32(c->hdr + 8);
	c->opt_len = bal_get_be32(c->hdr + 12);
	if (c->opt_len > NBD_MAX_OPTION) {
		char why[80];

		snprintf(why, sizeof(why), "option %u with length %u refused", c->opt_type, c->opt_len);
		conn_close(c, why);
		return;
	}
	if (srv_stopping(c->srv) && c->opt_type != NBD_OPT_ABORT) {
		conn_close(c, "server shutting down");
		return;
	}
	if (!c->opt_len) {
		hs_opt_data(c);
		return;
	}
	c->opt = malloc(c->opt_len);
	if (!c->opt) {
		conn_close(c, "out of memory");
		return;
	}
	conn_recv(c, c->opt, c->opt_len, hs_opt_data);
}

static void hs_client_flags(struct conn *c)
{
	c->client_flags = bal_get_be32(c->hdr);
	if (c->client_flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		conn_close(c, "unknown client flags");
		return;
	}
	conn_recv(c, c->hdr, 16, hs_opt_header);
}

void hs_start(struct conn *c)
{
	struct out *o = out_new(0);

	if (!o) {
		conn_close(c, "out of memory");
		return;
	}
	bal_put_be64(o->hdr, NBD_MAGIC);
	bal_put_be64(o->hdr + 8, NBD_IHAVEOPT);
	bal_put_be16(o->hdr + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	o->iov[0] = (struct iovec){ o->hdr, 18 };
	o->iovcnt = 1;
	conn_send(c, o);
	conn_recv(c, c->hdr, 4, hs_client_flags);
}
