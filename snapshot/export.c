/* SPDX-License-Identifier: MIT */
/*
 * Export of a snapshot to the object tier.
 *
 * Chunks are 4 MiB (BAL_CHUNK_SIZE): 64 clusters, large enough that one
 * request per chunk costs little against S3's per-request latency and
 * price and a 64 GiB volume's manifest stays near 1 MiB, small enough that
 * a 1% change re-uploads about 1% of the data and a lazy read fetches a
 * few milliseconds' worth of bytes.
 *
 * Parent: the newest manifest of the same volume in that store whose
 * source is a snapshot of this very volume (store identity, volume id and
 * snapshot id) still present here and older than the one exported; then
 * only the chunks the changed-cluster diff touches are read, the others
 * keep the parent's names.  A volume restored from that store and not yet
 * exported again takes the manifest it came from as parent: every chunk
 * is read and hashed, and only names the store lacks are uploaded.
 *
 * Chunks are read, hashed, checked for presence (HEAD) and uploaded by
 * t->parallel threads; a chunk already in the store (dedup, or an earlier
 * interrupted run) is never uploaded again.  The manifest goes last, so a
 * snapshot is listed only once complete.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "snapshot/chunk.h"
#include "snapshot/manifest.h"
#include "snapshot/objstore.h"
#include "snapshot/tier_internal.h"
#include "volume/volume.h"

#define MANIFEST_MAX (64u << 20)

/* An object of the store: its name and size (0: not known yet). */
struct named {
	char name[BAL_CHUNK_NAME_LEN + 1];
	uint64_t size;
};

struct exp {
	struct bal_tier *t;
	const struct bal_tier_export_opts *o;
	struct bal_objstore *os;
	struct bal_volume *vol;
	const struct bal_xts_key *xts;
	struct bal_chunk_keys *keys;
	struct bal_manifest *m;
	struct bal_manifest *pm;	/* parent, or NULL */
	bool read_all;			/* parent is a restore origin: hash everything */
	uint8_t *todo;			/* chunk i must be read */
	struct named *known;		/* parent's objects, sorted by name */
	size_t nknown;
	struct bal_tier_export_result *res;
	/* Names this run stored or is storing (open addressing, under lock). */
	struct named *seen;
	size_t nseen_slots;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next;			/* next chunk to look at */
	unsigned running;
	uint64_t done_bytes, total_bytes;
	bool stop;
	int err;
	char msg[BAL_TIER_ERR_MAX];
};

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void fail(struct exp *x, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct exp *x, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&x->lock);
	if (!x->err) {
		x->err = err;
		va_start(ap, fmt);
		vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
		va_end(ap);
	}
	x->stop = true;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
}

/* Read chunk @idx of the snapshot as plaintext into @buf (@len bytes). */
static int read_chunk(struct exp *x, struct bal_xts_ctx *ctx, uint64_t idx, uint8_t *buf,
		      size_t len)
{
	struct bal_vstore *st = x->t->st;
	uint64_t off = idx * BAL_CHUNK_SIZE;
	size_t max = bal_vol_max_segs((uint32_t)len), n = 0, pos = 0;
	struct bal_seg segs[BAL_CHUNK_SIZE / BAL_CLUSTER_SIZE + 2];
	int fd = bal_vstore_pool_fd(st), ret;
	unsigned tok;

	tok = bal_vstore_io_begin(st);
	ret = bal_vol_map_read(x->vol, off, (uint32_t)len, segs, max, &n);
	for (size_t i = 0; !ret && i < n; i++) {
		size_t got = 0;

		if (segs[i].phys >= BAL_SEG_REMOTE) {
			if (segs[i].phys == BAL_SEG_REMOTE)
				ret = -EIO;
			memset(buf + pos, 0, segs[i].len);
		}
		while (!ret && segs[i].phys < BAL_SEG_REMOTE && got < segs[i].len) {
			ssize_t r = pread(fd, buf + pos + got, segs[i].len - got,
					  (off_t)(segs[i].phys + got));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				ret = r < 0 ? -errno : -EIO;
			else
				got += (size_t)r;
		}
		pos += segs[i].len;
	}
	bal_vstore_io_end(st, tok);
	if (ret || !ctx)
		return ret;
	/* Ciphertext: a 4 KiB unit of zeroes was never written. */
	for (size_t u = 0; u < len; u += BAL_XTS_UNIT) {
		if (bal_chunk_is_zero(buf + u, BAL_XTS_UNIT))
			continue;
		ret = bal_xts_decrypt(ctx, (off + u) / BAL_XTS_UNIT, buf + u, buf + u,
				      BAL_XTS_UNIT);
		if (ret)
			return ret;
	}
	return 0;
}

/* The snapshot maps nothing but zeroes in chunk @idx. */
static bool chunk_empty(struct exp *x, uint64_t idx, size_t len)
{
	struct bal_extent ext[4];
	uint64_t off = idx * BAL_CHUNK_SIZE, pos = 0;
	size_t n = 0;

	while (pos < len) {
		if (bal_vol_block_status(x->vol, off + pos, len - pos, ext, 4, &n) || !n)
			return false;
		for (size_t i = 0; i < n; i++) {
			if (!(ext[i].flags & BAL_EXT_ZERO))
				return false;
			pos += ext[i].len;
		}
	}
	return true;
}

/* The parent's size of object @name, or 0 if the parent does not name it. */
static uint64_t known(const struct exp *x, const char *name)
{
	const struct named *k;

	if (!x->nknown)
		return 0;
	k = bsearch(name, x->known, x->nknown, sizeof(*x->known), cmp_name);
	return k ? k->size : 0;
}

/*
 * Lock held: the slot of @name in this run's table and whether it was
 * there already: two chunks with the same content are stored once even
 * when two threads meet them at the same time.
 */
static struct named *seen_add(struct exp *x, const char *name, bool *dup)
{
	size_t i = 0;

	/* Names are hex of a MAC: their first characters hash well enough. */
	for (int k = 0; k < 16; k++)
		i = i * 16 + (size_t)(name[k] <= '9' ? name[k] - '0' : name[k] - 'a' + 10);
	i %= x->nseen_slots;
	*dup = true;
	while (x->seen[i].name[0]) {
		if (!strcmp(x->seen[i].name, name))
			return &x->seen[i];
		i = (i + 1) % x->nseen_slots;
	}
	*dup = false;
	memcpy(x->seen[i].name, name, BAL_CHUNK_NAME_LEN + 1);
	return &x->seen[i];
}

/* Name chunk @idx, and store it unless the store has it. */
static int do_chunk(struct exp *x, struct bal_xts_ctx *ctx, uint64_t idx, uint8_t *buf)
{
	size_t len = (size_t)bal_manifest_chunk_len(x->m, idx);
	char name[BAL_CHUNK_NAME_LEN + 1], key[BAL_CHUNK_KEY_LEN + 1];
	struct named *slot;
	void *obj = NULL;
	size_t olen = 0;
	uint64_t sz = 0;
	bool dup;
	int ret;

	if (chunk_empty(x, idx, len)) {
		pthread_mutex_lock(&x->lock);
		x->res->chunks_empty++;
		pthread_mutex_unlock(&x->lock);
		return 0;
	}
	ret = read_chunk(x, ctx, idx, buf, len);
	if (ret) {
		fail(x, ret, "reading the snapshot: %s", strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&x->lock);
	x->res->chunks_read++;
	x->res->bytes_read += len;
	pthread_mutex_unlock(&x->lock);
	if (bal_chunk_is_zero(buf, len)) {
		pthread_mutex_lock(&x->lock);
		x->res->chunks_empty++;
		pthread_mutex_unlock(&x->lock);
		return 0;
	}
	ret = bal_chunk_name(x->keys, buf, len, name);
	if (ret)
		return ret;
	memcpy(x->m->chunks[idx], name, sizeof(name));
	bal_chunk_key(name, key, sizeof(key));
	pthread_mutex_lock(&x->lock);
	slot = seen_add(x, name, &dup);
	pthread_mutex_unlock(&x->lock);
	/* A duplicate's size comes from its first chunk at the end (fix_sizes). */
	if (dup || (sz = known(x, name)) || bal_objstore_head(x->os, key, &sz) == 0) {
		pthread_mutex_lock(&x->lock);
		x->res->chunks_present++;
		x->m->sizes[idx] = sz;
		if (!dup)
			slot->size = sz;
		pthread_mutex_unlock(&x->lock);
		return 0;
	}
	ret = bal_chunk_encode(x->keys, name, buf, len, &obj, &olen);
	if (!ret)
		ret = bal_objstore_put(x->os, key, obj, olen, x->o->storage_class);
	free(obj);
	if (ret) {
		fail(x, ret, "%s", bal_objstore_strerror());
		return ret;
	}
	pthread_mutex_lock(&x->lock);
	x->res->chunks_uploaded++;
	x->res->bytes_uploaded += olen;
	x->m->sizes[idx] = olen;
	slot->size = olen;
	pthread_mutex_unlock(&x->lock);
	return 0;
}

/* After the threads: chunks that met an object of this run take its size. */
static int fix_sizes(struct exp *x)
{
	for (uint64_t i = 0; i < x->m->nchunks; i++) {
		struct named *slot;
		bool dup;

		if (!x->m->chunks[i][0] || x->m->sizes[i])
			continue;
		slot = seen_add(x, x->m->chunks[i], &dup);
		if (!slot->size) {
			snprintf(x->msg, sizeof(x->msg), "no size known for chunk %" PRIu64, i);
			return -EIO;
		}
		x->m->sizes[i] = slot->size;
	}
	return 0;
}

static void *exp_thread(void *arg)
{
	struct exp *x = arg;
	struct bal_xts_ctx *ctx = NULL;
	uint8_t *buf = malloc(BAL_CHUNK_SIZE);
	int ret = buf ? 0 : -ENOMEM;

	if (!ret && x->xts)
		ret = bal_xts_ctx_create(x->xts, &ctx);
	if (ret)
		fail(x, ret, "%s", strerror(-ret));
	for (;;) {
		uint64_t idx;

		pthread_mutex_lock(&x->lock);
		while (!x->stop && x->next < x->m->nchunks && !x->todo[x->next])
			x->next++;
		if (x->stop || x->next >= x->m->nchunks) {
			pthread_mutex_unlock(&x->lock);
			break;
		}
		idx = x->next++;
		pthread_mutex_unlock(&x->lock);
		ret = do_chunk(x, ctx, idx, buf);
		if (ret) {
			fail(x, ret, "%s", strerror(-ret));
			break;
		}
		pthread_mutex_lock(&x->lock);
		x->done_bytes += BAL_CHUNK_SIZE;
		pthread_mutex_unlock(&x->lock);
	}
	bal_xts_ctx_destroy(ctx);
	free(buf);
	pthread_mutex_lock(&x->lock);
	x->running--;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

/* ---- parent ---- */

struct cand {
	char (*keys)[256];
	size_t n, cap;
};

static int collect(void *arg, const char *key, uint64_t size, bool is_prefix)
{
	struct cand *c = arg;

	(void)size;
	if (is_prefix || strlen(key) >= 256 || strlen(key) < 5 ||
	    strcmp(key + strlen(key) - 5, ".json"))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		char (*nk)[256] = realloc(c->keys, cap * sizeof(*nk));

		if (!nk)
			return -ENOMEM;
		c->keys = nk;
		c->cap = cap;
	}
	snprintf(c->keys[c->n++], 256, "%s", key);
	return 0;
}

/* The local snapshot a manifest was exported from, if it is still here and older. */
static bool local_source(struct exp *x, const struct bal_manifest *pm,
			 const struct bal_vol_info *vi, const struct bal_snap_info *snaps,
			 size_t nsnaps, uint32_t epoch, const char **name)
{
	char want[128];

	for (size_t i = 0; i < nsnaps; i++) {
		snprintf(want, sizeof(want), "%s/%" PRIu64 "/%" PRIu64, x->t->store_uuid, vi->id,
			 snaps[i].id);
		if (!strcmp(want, pm->source) && snaps[i].epoch < epoch) {
			*name = snaps[i].name;
			return true;
		}
	}
	return false;
}

/* Load manifest @key if its MAC checks under our keys (same volume, same key). */
static int load_trusted(struct exp *x, const char *key, struct bal_manifest **out)
{
	char why[BAL_MANIFEST_WHY_LEN];
	void *json = NULL;
	size_t len = 0;
	int ret;

	ret = bal_objstore_get(x->os, key, MANIFEST_MAX, &json, &len);
	if (!ret)
		ret = bal_manifest_decode(json, len, out, why, sizeof(why));
	if (!ret && bal_manifest_verify(json, len, x->keys)) {
		bal_manifest_destroy(*out);
		*out = NULL;
		ret = -EBADMSG;
	}
	free(json);
	return ret;
}

static int mark_diff(struct exp *x, const char *from)
{
	struct bal_range *r = NULL;
	size_t n = 0;
	int ret;

	ret = bal_vstore_snap_diff(x->t->st, x->o->volume, from, x->o->snapshot, &r, &n);
	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++) {
		uint64_t a = r[i].off / BAL_CHUNK_SIZE, b = (r[i].off + r[i].len - 1) / BAL_CHUNK_SIZE;

		for (uint64_t c = a; c <= b && c < x->m->nchunks; c++)
			x->todo[c] = 1;
	}
	free(r);
	return 0;
}

/* Use @pm's names for the chunks the diff does not touch and that cover the same bytes. */
static void inherit(struct exp *x, const struct bal_manifest *pm)
{
	for (uint64_t i = 0; i < x->m->nchunks; i++) {
		uint64_t end = (i + 1) * BAL_CHUNK_SIZE;
		bool same = i < pm->nchunks && ((end <= pm->size && end <= x->m->size) ||
						pm->size == x->m->size);

		if (!same)
			x->todo[i] = 1;
		if (x->todo[i])
			continue;
		memcpy(x->m->chunks[i], pm->chunks[i], BAL_CHUNK_NAME_LEN + 1);
		x->m->sizes[i] = pm->sizes[i];
		x->res->chunks_unchanged++;
		if (!pm->chunks[i][0])
			x->res->chunks_empty++;
	}
}

static int set_known(struct exp *x, const struct bal_manifest *pm)
{
	x->known = malloc((pm->nchunks ? pm->nchunks : 1) * sizeof(*x->known));
	if (!x->known)
		return -ENOMEM;
	for (uint64_t i = 0; i < pm->nchunks; i++) {
		if (!pm->chunks[i][0])
			continue;
		memcpy(x->known[x->nknown].name, pm->chunks[i], BAL_CHUNK_NAME_LEN + 1);
		x->known[x->nknown++].size = pm->sizes[i];
	}
	if (x->nknown)
		qsort(x->known, x->nknown, sizeof(*x->known), cmp_name);
	return 0;
}

/* Choose the parent and what to read.  0 (no parent is fine) or -errno. */
static int plan(struct exp *x, const struct bal_vol_info *vi, const struct bal_snap_info *si)
{
	struct bal_snap_info *snaps = NULL;
	char ourl[BAL_TIER_URL_MAX], oid[BAL_TIER_ID_MAX + 1], okey[256];
	struct cand c = { 0 };
	char prefix[128];
	size_t nsnaps = 0;
	int ret;

	memset(x->todo, 1, x->m->nchunks);
	snprintf(prefix, sizeof(prefix), "manifests/%s/", x->o->volume);
	ret = bal_objstore_list(x->os, prefix, NULL, collect, &c);
	if (!ret)
		ret = bal_vstore_snap_list(x->t->st, x->o->volume, &snaps, &nsnaps);
	for (size_t k = 0; !ret && k < c.n && k < TIER_PARENT_SCAN; k++) {
		struct bal_manifest *pm = NULL;
		const char *from;

		/* Keys sort by date then id (time first): newest last. */
		if (load_trusted(x, c.keys[c.n - 1 - k], &pm))
			continue;
		if (pm->chunk_size == BAL_CHUNK_SIZE &&
		    local_source(x, pm, vi, snaps, nsnaps, (uint32_t)si->epoch, &from)) {
			memset(x->todo, 0, x->m->nchunks);
			ret = mark_diff(x, from);
			if (!ret) {
				inherit(x, pm);
				ret = set_known(x, pm);
				snprintf(x->m->parent, sizeof(x->m->parent), "%s", pm->id);
			}
			bal_manifest_destroy(pm);
			goto out;
		}
		bal_manifest_destroy(pm);
	}
	if (ret)
		goto out;
	/* A restored volume: the snapshot it came from, if in this store. */
	if (!tier_origin(x->t, vi->id, ourl, sizeof(ourl), oid, sizeof(oid)) &&
	    !strcmp(ourl, bal_objstore_url(x->os)) && !tier_find_key(x->os, oid, okey, sizeof(okey))) {
		struct bal_manifest *pm = NULL;

		if (!load_trusted(x, okey, &pm)) {
			x->read_all = true;
			ret = set_known(x, pm);
			snprintf(x->m->parent, sizeof(x->m->parent), "%s", pm->id);
			bal_manifest_destroy(pm);
		}
	}
out:
	free(snaps);
	free(c.keys);
	return ret;
}

/* ---- export ---- */

static int run_threads(struct exp *x)
{
	unsigned n = x->t->parallel;
	pthread_t th[64];
	unsigned started = 0;
	int ret = 0;

	if (n > 64)
		n = 64;
	x->total_bytes = 0;
	for (uint64_t i = 0; i < x->m->nchunks; i++)
		x->total_bytes += x->todo[i] ? BAL_CHUNK_SIZE : 0;
	pthread_mutex_lock(&x->lock);
	for (; started < n; started++) {
		if (pthread_create(&th[started], NULL, exp_thread, x))
			break;
		x->running++;
	}
	if (!started) {
		pthread_mutex_unlock(&x->lock);
		return -EAGAIN;
	}
	while (x->running) {
		uint64_t done = x->done_bytes, total = x->total_bytes;

		tier_wait_tick(&x->cond, &x->lock);
		if (x->o->progress) {
			pthread_mutex_unlock(&x->lock);
			ret = x->o->progress(x->o->arg, done, total);
			pthread_mutex_lock(&x->lock);
			if (ret && !x->err) {
				x->err = -ECANCELED;
				snprintf(x->msg, sizeof(x->msg), "export cancelled");
				x->stop = true;
			}
		}
	}
	pthread_mutex_unlock(&x->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (!x->err && x->o->progress)
		x->o->progress(x->o->arg, x->total_bytes, x->total_bytes);
	return x->err;
}

static int write_manifest(struct exp *x, const struct bal_vol_info *vi,
			  const struct bal_snap_info *si)
{
	char aad[sizeof(TIER_WRAP_AAD) + BAL_TIER_ID_MAX], *json = NULL;
	size_t len = 0;
	int ret;

	snprintf(x->m->volume, sizeof(x->m->volume), "%s", x->o->volume);
	snprintf(x->m->snapshot, sizeof(x->m->snapshot), "%s", x->o->snapshot);
	snprintf(x->m->source, sizeof(x->m->source), "%s/%" PRIu64 "/%" PRIu64,
		 x->t->store_uuid, vi->id, si->id);
	snprintf(x->m->storage_class, sizeof(x->m->storage_class), "%s",
		 x->o->storage_class ? x->o->storage_class : "");
	x->m->stored_bytes = x->res->bytes_uploaded;
	if (x->xts) {
		x->m->encrypted = true;
		snprintf(aad, sizeof(aad), "%s%s", TIER_WRAP_AAD, x->m->id);
		ret = bal_vstore_wrap_key(x->t->st, aad, x->xts, x->m->wrapped_key,
					  sizeof(x->m->wrapped_key));
		if (ret) {
			snprintf(x->msg, sizeof(x->msg), "cannot wrap the volume key: %s",
				 ret == -ENOKEY ? "no usable master key" : strerror(-ret));
			return ret;
		}
	}
	ret = bal_manifest_encode(x->m, x->keys, &json, &len);
	if (!ret)
		ret = bal_manifest_key(x->m, x->res->manifest_key, sizeof(x->res->manifest_key));
	if (!ret) {
		ret = bal_objstore_put(x->os, x->res->manifest_key, json, len, NULL);
		if (ret)
			snprintf(x->msg, sizeof(x->msg), "%s", bal_objstore_strerror());
	} else {
		snprintf(x->msg, sizeof(x->msg), "cannot encode the manifest: %s", strerror(-ret));
	}
	free(json);
	return ret;
}

static int new_id(struct exp *x)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	x->m->created = (int64_t)ts.tv_sec;
	return bal_manifest_new_id((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, x->m->id);
}

static int open_source(struct exp *x, struct bal_vol_info *vi, struct bal_snap_info *si)
{
	char name[2 * 64 + 2];
	int ret;

	ret = bal_vstore_info(x->t->st, x->o->volume, vi);
	if (!ret)
		ret = bal_vstore_snap_info(x->t->st, x->o->volume, x->o->snapshot, si);
	if (ret) {
		snprintf(x->msg, sizeof(x->msg), "%s@%s: no such snapshot", x->o->volume,
			 x->o->snapshot);
		return ret;
	}
	if (vi->enc == BAL_ENC_CUSTOMER) {
		snprintf(x->msg, sizeof(x->msg),
			 "volume '%s' uses a customer key: its snapshots cannot be exported",
			 x->o->volume);
		return -EOPNOTSUPP;
	}
	snprintf(name, sizeof(name), "%s@%s", x->o->volume, x->o->snapshot);
	ret = bal_vol_open(x->t->st, name, &x->vol);
	if (ret) {
		snprintf(x->msg, sizeof(x->msg), "%s: %s", name,
			 ret == -ENOKEY ? "the volume is locked (no usable key)" : strerror(-ret));
		return ret;
	}
	x->xts = bal_vol_xts_key(x->vol);
	return 0;
}

int bal_tier_export(struct bal_tier *t, const struct bal_tier_export_opts *o,
		    struct bal_tier_export_result *out, char *err, size_t errlen)
{
	struct exp x = { .t = t, .o = o, .res = out };
	struct bal_vol_info vi;
	struct bal_snap_info si;
	bool locked = false;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!o || o->opts_size < sizeof(*o) || !o->volume || !o->snapshot)
		return -EINVAL;
	pthread_mutex_init(&x.lock, NULL);
	pthread_cond_init(&x.cond, NULL);
	ret = tier_store_open(t, o->url, o->creds, &x.os, err, errlen);
	if (ret)
		goto out;
	ret = open_source(&x, &vi, &si);
	if (!ret)
		ret = bal_chunk_keys_create(x.xts, &x.keys);
	if (!ret)
		ret = bal_manifest_create(si.size, BAL_CHUNK_SIZE, &x.m);
	if (!ret)
		ret = new_id(&x);
	if (!ret) {
		x.todo = malloc(x.m->nchunks ? x.m->nchunks : 1);
		x.nseen_slots = 2 * x.m->nchunks + 1;
		x.seen = calloc(x.nseen_slots, sizeof(*x.seen));
		/* Until the manifest is written: no delete takes chunks this export relies on. */
		pthread_rwlock_rdlock(&t->chunks_lock);
		locked = true;
		ret = x.todo && x.seen ? plan(&x, &vi, &si) : -ENOMEM;
		if (ret && !x.msg[0])
			snprintf(x.msg, sizeof(x.msg), "finding the parent: %s",
				 ret == -EIO ? bal_objstore_strerror() : strerror(-ret));
	}
	if (!ret)
		ret = run_threads(&x);
	if (!ret)
		ret = fix_sizes(&x);
	if (!ret)
		ret = write_manifest(&x, &vi, &si);
	if (ret) {
		tier_err(err, errlen, "export of %s@%s: %s", o->volume, o->snapshot,
			 x.msg[0] ? x.msg : strerror(-ret));
		goto out;
	}
	snprintf(out->url, sizeof(out->url), "%s", bal_objstore_url(x.os));
	snprintf(out->id, sizeof(out->id), "%s", x.m->id);
	snprintf(out->parent, sizeof(out->parent), "%s", x.m->parent);
	out->size = x.m->size;
	out->chunks = x.m->nchunks;
	bal_info("object tier: exported %s@%s as %s#%s (parent %s): %" PRIu64 " chunks, %" PRIu64 " uploaded, %" PRIu64 " present, %" PRIu64 " unchanged",
		 o->volume, o->snapshot, out->url, out->id, out->parent[0] ? out->parent : "none",
		 out->chunks, out->chunks_uploaded, out->chunks_present, out->chunks_unchanged);
out:
	if (locked)
		pthread_rwlock_unlock(&t->chunks_lock);
	free(x.todo);
	free(x.seen);
	free(x.known);
	bal_manifest_destroy(x.m);
	bal_chunk_keys_destroy(x.keys);
	bal_vol_close(x.vol);
	bal_objstore_close(x.os);
	pthread_cond_destroy(&x.cond);
	pthread_mutex_destroy(&x.lock);
	return ret;
}
