/* SPDX-License-Identifier: MIT */
/*
 * Lazy restore and hydration.
 *
 * bal_tier_restore() loads and checks the manifest, creates the volume
 * with its data in the object tier (volume.h, "restored volumes"; an
 * encrypted snapshot's volume key is imported, so the restored volume has
 * the key its chunks were made with) and returns.  A few hydration
 * threads then serve two queues: demands from the data path (a request
 * touching clusters not yet local, bal_tier_fetch_async) first, then the
 * background pass over every restored volume's chunks.  A chunk is
 * fetched once at a time: its state (pending, in flight, done, failed) is
 * shared, so a read that needs a chunk the background pass is fetching
 * waits for it.  A fetched chunk is checked (bal_chunk_decode: the GCM
 * tag, the zstd frame, its length and its keyed name), encrypted again
 * with the volume key for the pool, and filled cluster by cluster:
 * bal_vol_remote_fill() skips clusters a write or trim got to first, so
 * hydration never overwrites newer data.  A chunk that is missing or fails
 * its check is never served: the reads of its range fail with EIO and the
 * object is logged.  A store that cannot be reached makes reads fail too,
 * and the background pass retries after a pause.
 *
 * The volume's remote state (volume.h) keeps "URL#ID" with it, in the same
 * synced batch as the volume: after a restart every volume that still
 * reads remotely resumes from it (with the daemon's own S3 settings and
 * the volume's own copy of the key; a store that cannot be reached is
 * tried again every RETRY_PAUSE seconds).  "tier/origin/ID" -> "URL#ID"
 * (bal_vstore_meta_*) stays for as long as the volume exists: the parent
 * of its first export.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "snapshot/chunk.h"
#include "snapshot/manifest.h"
#include "snapshot/objstore.h"
#include "snapshot/tier_internal.h"
#include "volume/volume.h"

#define HYDR_THREADS 4
#define RETRY_PAUSE 5		/* seconds before the background pass retries a store */
#define OBJ_MAX (BAL_CHUNK_SIZE + (1u << 20))

enum { CH_PENDING, CH_INFLIGHT, CH_DONE, CH_FAILED };

/* One volume being hydrated. */
struct rst {
	struct rst *next;
	char name[BAL_NAME_MAX + 1];
	uint64_t volid;
	char ref[BAL_TIER_URL_MAX + BAL_TIER_ID_MAX + 2];
	struct bal_objstore *os;
	struct tier_snap snap;		/* snap.m NULL: could not load (failed) */
	struct bal_volume *vol;
	uint8_t *state;			/* per chunk */
	uint64_t cursor;		/* background pass */
	uint64_t total, done, failed, bytes;
	time_t retry_after;
	unsigned users;			/* threads working on it */
	bool complete, gone;
	bool unloadable;		/* its manifest is gone or fails its check */
	char last_error[BAL_TIER_ERR_MAX];
};

struct demand {
	struct rst *r;
	uint64_t first, last;		/* chunks */
	void (*cb)(void *arg, int err);
	void *arg;
	struct demand *next;
};

struct hydr {
	struct bal_tier *t;
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a demand, a volume, or stop */
	pthread_cond_t changed;		/* a chunk's state changed */
	struct rst *list;
	struct demand *dhead, **dtail;
	bool stop;
	unsigned nth;
	pthread_t th[HYDR_THREADS];
};

static void meta_name(char *buf, size_t len, const char *kind, uint64_t id)
{
	snprintf(buf, len, "tier/%s/%" PRIu64, kind, id);
}

int tier_origin(struct bal_tier *t, uint64_t volume_id, char *url, size_t ulen, char *id,
		size_t idlen)
{
	char name[64], *ref;
	void *v = NULL;
	size_t len = 0;
	int ret;

	meta_name(name, sizeof(name), "origin", volume_id);
	ret = bal_vstore_meta_get(t->st, name, &v, &len);
	if (ret)
		return ret;
	ref = strndup(v, len);
	free(v);
	if (!ref)
		return -ENOMEM;
	ret = tier_parse_ref(ref, url, ulen, id, idlen, NULL, 0);
	free(ref);
	return ret;
}

static void rst_free(struct rst *r)
{
	if (!r)
		return;
	bal_vol_close(r->vol);
	tier_snap_fini(&r->snap);
	bal_objstore_close(r->os);
	free(r->state);
	free(r);
}

/* Fill the clusters of chunk @idx from its plaintext @plain. */
static int fill_chunk(struct rst *r, struct bal_xts_ctx *ctx, uint64_t idx, const uint8_t *plain,
		      uint8_t *cl)
{
	const struct bal_manifest *m = r->snap.m;
	uint64_t len = bal_manifest_chunk_len(m, idx), base = idx * m->chunk_size;

	for (uint64_t pos = 0; pos < len; pos += BAL_CLUSTER_SIZE) {
		uint64_t n = len - pos < BAL_CLUSTER_SIZE ? len - pos : BAL_CLUSTER_SIZE;
		const void *data = cl;
		int ret;

		memset(cl + n, 0, BAL_CLUSTER_SIZE - n);
		memcpy(cl, plain + pos, n);
		if (bal_chunk_is_zero(cl, BAL_CLUSTER_SIZE))
			data = NULL;
		else if (ctx && (ret = bal_xts_encrypt(ctx, (base + pos) / BAL_XTS_UNIT, cl, cl,
						       BAL_CLUSTER_SIZE)))
			return ret;
		ret = bal_vol_remote_fill(r->vol, (base + pos) >> BAL_CLUSTER_SHIFT, data);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Fetch, check and fill chunk @idx.  Lock not held. */
static int load_chunk(struct rst *r, uint64_t idx, char *why, size_t whylen)
{
	const struct bal_manifest *m = r->snap.m;
	char key[BAL_CHUNK_KEY_LEN + 1];
	struct bal_xts_ctx *ctx = NULL;
	uint8_t *plain = NULL, *cl = NULL;
	uint64_t len = bal_manifest_chunk_len(m, idx);
	void *obj = NULL;
	size_t olen = 0;
	int ret;

	bal_chunk_key(m->chunks[idx], key, sizeof(key));
	ret = bal_objstore_get(r->os, key, OBJ_MAX, &obj, &olen);
	if (ret) {
		if (ret == -ENOENT)
			snprintf(why, whylen, "object %s is missing", key);
		else
			snprintf(why, whylen, "%s", bal_objstore_strerror());
		return ret;
	}
	plain = malloc(len);
	cl = malloc(BAL_CLUSTER_SIZE);
	ret = plain && cl ? 0 : -ENOMEM;
	if (!ret) {
		ret = bal_chunk_decode(r->snap.keys, m->chunks[idx], obj, olen, plain, len);
		if (ret == -EBADMSG && olen < m->sizes[idx])
			snprintf(why, whylen, "object %s is truncated (%zu of %" PRIu64 " bytes)", key,
				 olen, m->sizes[idx]);
		else if (ret == -EBADMSG)
			snprintf(why, whylen, "object %s fails its integrity check (tampered)", key);
	}
	if (!ret && bal_vol_xts_key(r->vol))
		ret = bal_xts_ctx_create(bal_vol_xts_key(r->vol), &ctx);
	if (!ret) {
		ret = fill_chunk(r, ctx, idx, plain, cl);
		if (ret)
			snprintf(why, whylen, "filling chunk %" PRIu64 ": %s", idx, strerror(-ret));
	} else if (!why[0]) {
		snprintf(why, whylen, "%s", strerror(-ret));
	}
	bal_xts_ctx_destroy(ctx);
	free(obj);
	free(plain);
	free(cl);
	return ret;
}

/*
 * Lock held: make chunk @idx of @r local (or wait for whoever does).
 * 0, or -EIO when it is missing, fails its check or cannot be fetched.
 */
static int fetch_locked(struct hydr *h, struct rst *r, uint64_t idx)
{
	char why[BAL_TIER_ERR_MAX] = "";
	int ret;

	if (!r->snap.m || r->gone)
		return -EIO;
	while (r->state[idx] == CH_INFLIGHT)
		pthread_cond_wait(&h->changed, &h->lock);
	if (r->state[idx] == CH_DONE)
		return 0;
	if (r->state[idx] == CH_FAILED || r->gone)
		return -EIO;
	r->state[idx] = CH_INFLIGHT;
	r->users++;
	pthread_mutex_unlock(&h->lock);
	ret = load_chunk(r, idx, why, sizeof(why));
	pthread_mutex_lock(&h->lock);
	r->users--;
	if (!ret) {
		r->state[idx] = CH_DONE;
		r->done++;
		r->bytes += bal_manifest_chunk_len(r->snap.m, idx);
	} else if (ret == -EBADMSG || ret == -ENOENT || ret == -EFBIG || ret == -ESHUTDOWN) {
		/* Missing, failing its check, too large, or the volume is gone. */
		r->state[idx] = CH_FAILED;
		r->failed++;
		snprintf(r->last_error, sizeof(r->last_error), "chunk %" PRIu64 ": %.400s", idx, why);
		bal_err("volume %s: chunk %" PRIu64 " of %s: %s; reads of bytes %" PRIu64 "..%" PRIu64 " fail",
			r->name, idx, r->ref, why, idx * r->snap.m->chunk_size,
			idx * r->snap.m->chunk_size + bal_manifest_chunk_len(r->snap.m, idx) - 1);
	} else {
		r->state[idx] = CH_PENDING;
		r->retry_after = time(NULL) + RETRY_PAUSE;
		snprintf(r->last_error, sizeof(r->last_error), "chunk %" PRIu64 ": %.400s", idx, why);
		bal_warn("volume %s: chunk %" PRIu64 " of %s: %s; retrying later", r->name, idx,
			 r->ref, why);
	}
	pthread_cond_broadcast(&h->changed);
	return ret ? -EIO : 0;
}

/* Lock held: the next chunk of the background pass, or false. */
static bool pick(struct hydr *h, struct rst **rp, uint64_t *idx)
{
	time_t now = time(NULL);

	for (struct rst *r = h->list; r; r = r->next) {
		if (r->complete || r->gone || !r->snap.m || r->retry_after > now)
			continue;
		for (uint64_t n = 0; n < r->snap.m->nchunks; n++) {
			uint64_t i = (r->cursor + n) % r->snap.m->nchunks;

			if (r->state[i] == CH_PENDING) {
				r->cursor = i + 1;
				*rp = r;
				*idx = i;
				return true;
			}
		}
	}
	return false;
}

/* Lock held: a volume whose chunks are all done, not yet settled. */
static struct rst *settle_candidate(struct hydr *h)
{
	for (struct rst *r = h->list; r; r = r->next)
		if (!r->complete && !r->gone && r->snap.m && r->done == r->total && !r->users &&
		    r->retry_after <= time(NULL))
			return r;
	return NULL;
}

/* Lock held on entry and exit: every chunk is local; end the restore. */
static void settle(struct hydr *h, struct rst *r)
{
	int ret;

	r->users++;
	pthread_mutex_unlock(&h->lock);
	ret = bal_vol_remote_settle(r->vol);
	pthread_mutex_lock(&h->lock);
	r->users--;
	if (!ret) {
		r->complete = true;
		bal_info("volume %s: hydrated from %s (%" PRIu64 " chunks)", r->name, r->ref,
			 r->total);
	} else {
		r->retry_after = time(NULL) + RETRY_PAUSE;
		snprintf(r->last_error, sizeof(r->last_error), "settling: %s", strerror(-ret));
	}
	pthread_cond_broadcast(&h->changed);
}

static void run_demand(struct hydr *h, struct demand *d)
{
	int err = 0;

	for (uint64_t i = d->first; i <= d->last && !err; i++)
		err = fetch_locked(h, d->r, i);
	d->r->users--;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
	d->cb(d->arg, err);
	free(d);
	pthread_mutex_lock(&h->lock);
}

static int load_rst(struct hydr *h, struct rst *r);
static struct rst *load_candidate(struct hydr *h);

static void *hydr_thread(void *arg)
{
	struct hydr *h = arg;
	struct rst *r;
	uint64_t idx;

	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		struct demand *d = h->dhead;
		struct timespec ts;

		if (d) {
			h->dhead = d->next;
			if (!h->dhead)
				h->dtail = &h->dhead;
			run_demand(h, d);
			continue;
		}
		if (pick(h, &r, &idx)) {
			fetch_locked(h, r, idx);
			continue;
		}
		r = settle_candidate(h);
		if (r) {
			settle(h, r);
			continue;
		}
		r = load_candidate(h);
		if (r) {
			r->users++;
			pthread_mutex_unlock(&h->lock);
			load_rst(h, r);
			pthread_mutex_lock(&h->lock);
			r->users--;
			pthread_cond_broadcast(&h->changed);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&h->work, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* Set up @r's chunk states from its manifest: chunks without data are done. */
static int rst_init_chunks(struct rst *r)
{
	const struct bal_manifest *m = r->snap.m;

	r->state = calloc(m->nchunks ? m->nchunks : 1, 1);
	if (!r->state)
		return -ENOMEM;
	for (uint64_t i = 0; i < m->nchunks; i++) {
		if (m->chunks[i][0]) {
			r->total++;
		} else {
			r->state[i] = CH_DONE;
		}
	}
	return 0;
}

/* Lock not held: add @r and wake the threads. */
static void hydr_add(struct hydr *h, struct rst *r)
{
	pthread_mutex_lock(&h->lock);
	r->next = h->list;
	h->list = r;
	pthread_cond_broadcast(&h->work);
	pthread_mutex_unlock(&h->lock);
}

/*
 * Lock not held, r->users taken: open @r's store and load its manifest
 * with the volume's own key.  0, or -errno with r->last_error set.
 */
static int load_rst(struct hydr *h, struct rst *r)
{
	char url[BAL_TIER_URL_MAX], id[BAL_TIER_ID_MAX + 1], err[BAL_TIER_ERR_MAX] = "";
	struct tier_snap s;
	int ret;

	memset(&s, 0, sizeof(s));
	ret = tier_parse_ref(r->ref, url, sizeof(url), id, sizeof(id), err, sizeof(err));
	if (!ret && !r->os)
		ret = tier_store_open(h->t, url, NULL, &r->os, err, sizeof(err));
	if (!ret)
		ret = tier_load(h->t, r->os, id, true, bal_vol_xts_key(r->vol), &s, err,
				sizeof(err));
	pthread_mutex_lock(&h->lock);
	if (!ret) {
		r->snap = s;
		ret = rst_init_chunks(r);
	}
	if (ret) {
		r->retry_after = time(NULL) + RETRY_PAUSE;
		r->unloadable = ret == -ENOENT || ret == -EBADMSG || ret == -EKEYREJECTED;
		snprintf(r->last_error, sizeof(r->last_error), "%s", err[0] ? err : strerror(-ret));
	}
	pthread_mutex_unlock(&h->lock);
	if (ret)
		bal_warn("volume %s: cannot load its restore from %s: %s; reads of clusters not yet local fail until it loads",
			 r->name, r->ref, r->last_error);
	else
		bal_info("volume %s: resuming its restore from %s", r->name, r->ref);
	return ret;
}

/* Lock held: a restore whose manifest is not loaded yet and may be tried now. */
static struct rst *load_candidate(struct hydr *h)
{
	for (struct rst *r = h->list; r; r = r->next)
		if (!r->snap.m && !r->gone && !r->users && r->retry_after <= time(NULL))
			return r;
	return NULL;
}

/* Start-up: every volume that still reads remotely gets its restore back. */
static void resume_all(struct hydr *h)
{
	struct bal_vol_info *vols = NULL;
	size_t n = 0;

	if (bal_vstore_list(h->t->st, &vols, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		struct rst *r;

		if (!vols[i].remote)
			continue;
		r = calloc(1, sizeof(*r));
		if (!r)
			break;
		snprintf(r->name, sizeof(r->name), "%s", vols[i].name);
		r->volid = vols[i].id;
		if (bal_vol_open_internal(h->t->st, r->name, &r->vol) ||
		    bal_vol_remote_source(r->vol, r->ref, sizeof(r->ref)) || !r->ref[0]) {
			bal_err("volume %s: reads from the object tier but its source is unknown; reads of clusters not yet local fail",
				r->name);
			rst_free(r);
			continue;
		}
		/* Loaded by a hydration thread (load_rst): the store may be slow. */
		r->next = h->list;
		h->list = r;
	}
	free(vols);
}

int hydr_create(struct bal_tier *t, struct hydr **out)
{
	struct hydr *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->t = t;
	h->dtail = &h->dhead;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->work, NULL);
	pthread_cond_init(&h->changed, NULL);
	resume_all(h);
	for (; h->nth < HYDR_THREADS; h->nth++)
		if (pthread_create(&h->th[h->nth], NULL, hydr_thread, h))
			break;
	if (!h->nth) {
		hydr_destroy(h);
		return -EAGAIN;
	}
	*out = h;
	return 0;
}

void hydr_destroy(struct hydr *h)
{
	struct rst *r;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->work);
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < h->nth; i++)
		pthread_join(h->th[i], NULL);
	/* Demands still queued: their requests end with an error. */
	while (h->dhead) {
		struct demand *d = h->dhead;

		h->dhead = d->next;
		d->cb(d->arg, -ESHUTDOWN);
		free(d);
	}
	while ((r = h->list)) {
		h->list = r->next;
		rst_free(r);
	}
	pthread_cond_destroy(&h->changed);
	pthread_cond_destroy(&h->work);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* Lock held: the live restore of @volume, or NULL. */
static struct rst *find(struct hydr *h, const char *volume)
{
	for (struct rst *r = h->list; r; r = r->next)
		if (!r->gone && !strcmp(r->name, volume))
			return r;
	return NULL;
}

bool hydr_uses(struct hydr *h, const char *ref)
{
	bool used = false;

	pthread_mutex_lock(&h->lock);
	for (struct rst *r = h->list; r && !used; r = r->next)
		used = !r->complete && !r->gone && !strcmp(r->ref, ref);
	pthread_mutex_unlock(&h->lock);
	return used;
}

int bal_tier_fetch_async(struct bal_tier *t, struct bal_volume *vol, uint64_t off,
			 uint64_t len, void (*cb)(void *arg, int err), void *arg)
{
	struct hydr *h = t->hydr;
	struct demand *d;
	struct rst *r;

	if (!len)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_lock(&h->lock);
	r = find(h, bal_vol_name(vol));
	if (!r || h->stop) {
		pthread_mutex_unlock(&h->lock);
		free(d);
		return -ENOENT;
	}
	d->r = r;
	d->cb = cb;
	d->arg = arg;
	if (r->snap.m) {
		d->first = off / r->snap.m->chunk_size;
		d->last = (off + len - 1) / r->snap.m->chunk_size;
		if (d->last >= r->snap.m->nchunks)
			d->last = r->snap.m->nchunks - 1;
	}
	r->users++;
	*h->dtail = d;
	h->dtail = &d->next;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

int bal_tier_restore(struct bal_tier *t, const char *name, const char *ref,
		     const struct bal_tier_creds *creds, char *err, size_t errlen)
{
	struct bal_vol_create_opts co = { .opts_size = sizeof(co) };
	char url[BAL_TIER_URL_MAX], id[BAL_TIER_ID_MAX + 1], mname[64];
	struct bal_vol_remote remote;
	struct bal_vol_info vi;
	uint8_t *bits = NULL;
	struct rst *r;
	int ret;

	if (!name || !bal_name_is_valid(name)) {
		tier_err(err, errlen, "'%s' is not a valid volume name", name ? name : "");
		return -EINVAL;
	}
	ret = tier_parse_ref(ref, url, sizeof(url), id, sizeof(id), err, errlen);
	if (ret)
		return ret;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	snprintf(r->name, sizeof(r->name), "%s", name);
	ret = tier_store_open(t, url, creds, &r->os, err, errlen);
	if (!ret)
		ret = tier_load(t, r->os, id, true, NULL, &r->snap, err, errlen);
	if (!ret)
		ret = rst_init_chunks(r);
	if (ret)
		goto err_free;
	snprintf(r->ref, sizeof(r->ref), "%s#%s", bal_objstore_url(r->os), id);
	bits = calloc((r->snap.m->nchunks + 7) / 8 + 1, 1);
	if (!bits) {
		ret = -ENOMEM;
		goto err_free;
	}
	for (uint64_t i = 0; i < r->snap.m->nchunks; i++)
		if (r->snap.m->chunks[i][0])
			bits[i / 8] |= (uint8_t)(1u << (i % 8));
	remote = (struct bal_vol_remote){ .size = r->snap.m->size,
					  .granule = r->snap.m->chunk_size, .present = bits,
					  .source = r->ref };
	co.name = name;
	co.size = r->snap.m->size;
	co.enc = r->snap.xts ? BAL_ENC_SERVICE : BAL_ENC_NONE;
	co.import_key = r->snap.xts;
	co.remote = &remote;
	ret = bal_vstore_create_opts(t->st, &co);
	free(bits);
	if (ret) {
		tier_err(err, errlen, ret == -EEXIST ? "volume '%s' already exists" :
			 "cannot create volume '%s': %s", name, strerror(-ret));
		goto err_free;
	}
	/* The volume is exported from here on: its restore joins the list at once. */
	ret = bal_vstore_info(t->st, name, &vi);
	if (!ret)
		ret = bal_vol_open_internal(t->st, name, &r->vol);
	if (ret) {
		tier_err(err, errlen, "volume '%s' went away while being created: %s", name,
			 strerror(-ret));
		goto err_free;
	}
	r->volid = vi.id;
	bal_info("volume %s: restoring from %s (%" PRIu64 " bytes, %" PRIu64 " chunks with data)",
		 name, r->ref, r->snap.m->size, r->total);
	hydr_add(t->hydr, r);
	/* Deleted before it was listed: its delete could not stop it. */
	if (bal_vol_is_deleted(r->vol)) {
		bal_tier_forget(t, name, vi.id);
		return 0;
	}
	/* The parent of this volume's first export (not needed to restore). */
	meta_name(mname, sizeof(mname), "origin", vi.id);
	if (bal_vstore_meta_put(t->st, mname, r->ref, strlen(r->ref)))
		bal_warn("volume %s: cannot record where it was restored from; its first export will be a full one",
			 name);
	return 0;
err_free:
	rst_free(r);
	return ret;
}

static void fill_info(const struct rst *r, struct bal_tier_hydration *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->source, sizeof(out->source), "%s", r->ref);
	out->active = !r->complete;
	out->chunks_total = r->total;
	out->chunks_done = r->done;
	out->chunks_failed = r->failed;
	out->bytes_fetched = r->bytes;
	snprintf(out->last_error, sizeof(out->last_error), "%s", r->last_error);
}

int bal_tier_hydration(struct bal_tier *t, const char *volume, struct bal_tier_hydration *out)
{
	char url[BAL_TIER_URL_MAX], id[BAL_TIER_ID_MAX + 1];
	struct hydr *h = t->hydr;
	struct bal_vol_info vi;
	struct rst *r;

	pthread_mutex_lock(&h->lock);
	r = find(h, volume);
	if (r)
		fill_info(r, out);
	pthread_mutex_unlock(&h->lock);
	if (r)
		return 0;
	if (bal_vstore_info(t->st, volume, &vi) ||
	    tier_origin(t, vi.id, url, sizeof(url), id, sizeof(id)))
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	snprintf(out->source, sizeof(out->source), "%s#%s", url, id);
	return 0;
}

int bal_tier_wait(struct bal_tier *t, const char *volume, bal_tier_progress_fn progress,
		  void *arg, char *err, size_t errlen)
{
	struct hydr *h = t->hydr;
	int ret = 0;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		struct rst *r = find(h, volume);
		uint64_t done, total;

		if (!r || r->complete)
			break;
		if (!r->snap.m && !r->unloadable) {
			/* Not loaded yet (a store that answers later): wait for it. */
			tier_wait_tick(&h->changed, &h->lock);
			continue;
		}
		if (!r->snap.m || (r->failed && r->done + r->failed == r->total)) {
			tier_err(err, errlen, "volume '%s' cannot be fully restored: %s", volume,
				 r->last_error);
			ret = -EIO;
			break;
		}
		done = r->bytes;
		total = 0;
		for (uint64_t i = 0; i < r->snap.m->nchunks; i++)
			total += r->snap.m->chunks[i][0] ? bal_manifest_chunk_len(r->snap.m, i) : 0;
		if (progress) {
			pthread_mutex_unlock(&h->lock);
			ret = progress(arg, done, total);
			pthread_mutex_lock(&h->lock);
			if (ret) {
				tier_err(err, errlen, "wait cancelled");
				ret = -ECANCELED;
				break;
			}
		}
		tier_wait_tick(&h->changed, &h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

void bal_tier_forget(struct bal_tier *t, const char *volume, uint64_t volume_id)
{
	struct hydr *h = t->hydr;
	struct rst *r, **pp;
	char name[64];

	pthread_mutex_lock(&h->lock);
	r = find(h, volume);
	if (r && r->volid == volume_id) {
		/* No new work starts on it; wait for what runs (demands included). */
		r->gone = true;
		while (r->users)
			pthread_cond_wait(&h->changed, &h->lock);
		for (pp = &h->list; *pp != r; pp = &(*pp)->next)
			;
		*pp = r->next;
	} else {
		r = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	rst_free(r);
	meta_name(name, sizeof(name), "origin", volume_id);
	bal_vstore_meta_put(t->st, name, NULL, 0);
}
