/* SPDX-License-Identifier: MIT */
/*
 * Remote-backed volumes: a volume restored from the object tier starts with
 * no local clusters.  Its remote state says which logical clusters still
 * read from the store: every cluster below the remote limit whose granule
 * (a run of clusters, the object tier's chunk) has data, as long as the
 * live map has no entry for it.  Such a cluster maps to BAL_SEG_REMOTE on
 * read; a write that covers only part of it, or a partial trim or zero,
 * fails with -EREMOTE until the caller has filled it (bal_vol_remote_fill);
 * a whole-cluster write simply maps a new cluster; a whole-cluster trim
 * leaves a HOLE entry that hides the remote data, as a clone's trim hides
 * its parent's.  All of these are map entries, so they reach RocksDB
 * through the ordered map log like any write.
 *
 * The remote state is one record, written with the volume and deleted
 * through the map log by bal_vol_remote_settle once no cluster reads
 * remotely.  A volume with remote state takes no snapshot
 * (-EINPROGRESS): the snapshot would go on reading clusters that the
 * state no longer describes once hydration ends.
 *
 *   'R' id(8) -> limit(8) granule shift(1) granules(8) bitmap
 *                source length(2) source (where the data is, for the tier)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "volume/volume_internal.h"

struct bal_vremote {
	uint64_t limit;		/* clusters; only shrinks */
	unsigned gshift;	/* clusters per granule, log2 */
	uint64_t ngran;
	uint8_t *bits;		/* granule i has data */
	char *source;		/* the caller's reference of the data, "" if none */
};

#define REC_HDR 17
/* Largest bitmap accepted (a 64 TiB volume in 64 KiB granules). */
#define BITS_MAX (UINT64_C(1) << 27)

static void rkey(uint8_t k[BAL_VOL_KEY_LEN], uint64_t id)
{
	k[0] = BAL_KEY_REMOTE;
	bal_put_be64(k + 1, id);
}

void bal_vremote_destroy(struct bal_vremote *r)
{
	if (!r)
		return;
	free(r->bits);
	free(r->source);
	free(r);
}

bool bal_vrec_remote_has(const struct bal_vrec *rec, uint64_t lcl)
{
	const struct bal_vremote *r = rec->remote;
	uint64_t g;

	if (!r || lcl >= r->limit)
		return false;
	g = lcl >> r->gshift;
	return g < r->ngran && (r->bits[g / 8] >> (g % 8) & 1);
}

bool bal_vrec_is_remote(struct bal_vrec *rec, uint64_t lcl)
{
	return bal_vrec_remote_has(rec, lcl) && !bal_xmap_find(&rec->map, lcl);
}

/* Encode @r into a malloc'ed value. */
static uint8_t *encode(const struct bal_vremote *r, size_t *len)
{
	size_t nb = (size_t)((r->ngran + 7) / 8), sl = strlen(r->source);
	uint8_t *v = malloc(REC_HDR + nb + 2 + sl);

	if (!v)
		return NULL;
	bal_put_be64(v, r->limit);
	v[8] = (uint8_t)r->gshift;
	bal_put_be64(v + 9, r->ngran);
	memcpy(v + REC_HDR, r->bits, nb);
	bal_put_be16(v + REC_HDR + nb, (uint16_t)sl);
	memcpy(v + REC_HDR + nb + 2, r->source, sl);
	*len = REC_HDR + nb + 2 + sl;
	return v;
}

static int decode(const uint8_t *v, size_t len, struct bal_vremote **out)
{
	struct bal_vremote *r;
	uint64_t ngran;
	size_t nb, sl;

	if (len < REC_HDR)
		return -EUCLEAN;
	ngran = bal_get_be64(v + 9);
	nb = (size_t)((ngran + 7) / 8);
	if (v[8] > 16 || ngran > BITS_MAX || len < REC_HDR + nb + 2)
		return -EUCLEAN;
	sl = bal_get_be16(v + REC_HDR + nb);
	if (len != REC_HDR + nb + 2 + sl)
		return -EUCLEAN;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->bits = malloc(nb ? nb : 1);
	r->source = strndup((const char *)v + REC_HDR + nb + 2, sl);
	if (!r->bits || !r->source) {
		bal_vremote_destroy(r);
		return -ENOMEM;
	}
	r->limit = bal_get_be64(v);
	r->gshift = v[8];
	r->ngran = ngran;
	memcpy(r->bits, v + REC_HDR, nb);
	*out = r;
	return 0;
}

int bal_vremote_create(struct bal_vrec *rec, const struct bal_vol_remote *o,
		       struct bal_kv_batch *b)
{
	struct bal_vremote *r;
	uint8_t k[BAL_VOL_KEY_LEN], *v;
	uint64_t gcl;
	size_t nb, len;

	if (!o->granule || o->granule % BAL_CLUSTER_SIZE || (o->granule & (o->granule - 1)) ||
	    !o->size || o->size > atomic_load(&rec->size) || !o->present ||
	    (o->source && strlen(o->source) > UINT16_MAX))
		return -EINVAL;
	gcl = o->granule >> BAL_CLUSTER_SHIFT;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->gshift = (unsigned)__builtin_ctzll(gcl);
	r->limit = bal_size_clusters(o->size);
	r->ngran = (r->limit + gcl - 1) >> r->gshift;
	if (r->gshift > 16 || r->ngran > BITS_MAX) {
		free(r);
		return -EINVAL;
	}
	nb = (size_t)((r->ngran + 7) / 8);
	r->bits = malloc(nb);
	if (!r->bits) {
		free(r);
		return -ENOMEM;
	}
	r->source = strdup(o->source ? o->source : "");
	if (!r->source) {
		bal_vremote_destroy(r);
		return -ENOMEM;
	}
	memcpy(r->bits, o->present, nb);
	v = encode(r, &len);
	if (!v) {
		bal_vremote_destroy(r);
		return -ENOMEM;
	}
	rkey(k, rec->id);
	bal_kv_batch_put(b, k, sizeof(k), v, len);
	free(v);
	rec->remote = r;
	atomic_store(&rec->has_remote, true);
	return 0;
}

void bal_vremote_shrink(struct bal_vstore *st, struct bal_vrec *rec, uint64_t ncl)
{
	uint8_t k[BAL_VOL_KEY_LEN], *v;
	size_t len;

	if (!rec->remote || rec->remote->limit <= ncl)
		return;
	rec->remote->limit = ncl;
	v = encode(rec->remote, &len);
	if (!v) {
		/* The volume is smaller anyway: the old limit reads nothing past it. */
		bal_warn("volume %s: out of memory recording its remote limit", rec->name);
		return;
	}
	rkey(k, rec->id);
	bal_log_put(st, k, sizeof(k), v, len);
	free(v);
}

void bal_vremote_delete_key(struct bal_kv_batch *b, uint64_t id)
{
	uint8_t k[BAL_VOL_KEY_LEN];

	rkey(k, id);
	bal_kv_batch_delete(b, k, sizeof(k));
}

static int load_one(void *arg, const void *key, size_t kl, const void *v, size_t vl)
{
	struct bal_vstore *st = arg;
	const uint8_t *k = key;
	struct bal_vrec *rec;

	rec = kl == BAL_VOL_KEY_LEN ? bal_vstore_find_id(st, bal_get_be64(k + 1)) : NULL;
	if (!rec) {
		bal_warn("store %s: remote record of an unknown volume; ignored", st->dir);
		return 0;
	}
	if (decode(v, vl, &rec->remote)) {
		bal_err("volume %s: malformed remote record", rec->name);
		return -EUCLEAN;
	}
	atomic_store(&rec->has_remote, true);
	return 0;
}

int bal_vstore_load_remote(struct bal_vstore *st)
{
	const uint8_t lo = BAL_KEY_REMOTE, hi = BAL_KEY_REMOTE + 1;

	return bal_kv_scan(st->kv, &lo, 1, &hi, 1, load_one, st);
}

/* Write one cluster of bytes at pool cluster @phys. */
static int pool_write(struct bal_vstore *st, uint64_t phys, const uint8_t *data)
{
	int fd = bal_pool_fd(st->pool);
	size_t done = 0;

	while (done < BAL_CLUSTER_SIZE) {
		ssize_t w = pwrite(fd, data + done, BAL_CLUSTER_SIZE - done,
				   (off_t)((phys << BAL_CLUSTER_SHIFT) + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		done += (size_t)w;
	}
	return 0;
}

int bal_vol_remote_fill(struct bal_volume *vol, uint64_t lcl, const void *data)
{
	struct bal_vstore *st = vol->st;
	struct bal_vrec *rec = vol->rec;
	struct bal_xent e = { .phys = BAL_PHYS_NONE, .flags = BAL_XENT_HOLE };
	int ret = 0;

	if (vol->snap)
		return -EPERM;
	pthread_mutex_lock(&rec->lock);
	if (atomic_load(&rec->deleted)) {
		ret = -ESHUTDOWN;
		goto out_unlock;
	}
	if (!bal_vrec_is_remote(rec, lcl))
		goto out_unlock;
	e.birth = rec->epoch;
	if (data) {
		ret = bal_pool_alloc(st->pool, &e.phys);
		if (!ret)
			ret = bal_pool_reserve(st->pool, e.phys, 1);
		/*
		 * Written with the volume locked: no request can map the cluster
		 * before its bytes are in place, and the mapping reaches RocksDB
		 * only after the next pool fdatasync.
		 */
		if (!ret)
			ret = pool_write(st, e.phys, data);
		if (ret) {
			if (e.phys != BAL_PHYS_NONE)
				bal_pool_unalloc(st->pool, e.phys);
			if (ret != -ENOSPC)
				bal_err("volume %s: filling cluster %" PRIu64 ": %s", rec->name, lcl,
					strerror(-ret));
			goto out_unlock;
		}
		e.flags = 0;
	}
	ret = bal_xmap_set(&rec->map, lcl, &e);
	if (ret) {
		if (data)
			bal_pool_unalloc(st->pool, e.phys);
		goto out_unlock;
	}
	bal_log_map_put(st, rec->id, lcl, &e);
	ret = 1;
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

bool bal_vol_is_remote(struct bal_volume *vol)
{
	bool r;

	pthread_mutex_lock(&vol->rec->lock);
	r = vol->rec->remote != NULL;
	pthread_mutex_unlock(&vol->rec->lock);
	return r;
}

/* Volume locked: some cluster still reads remotely. */
static bool any_remote(struct bal_vrec *rec)
{
	const struct bal_vremote *r = rec->remote;

	for (uint64_t g = 0; g < r->ngran; g++) {
		uint64_t lo = g << r->gshift, hi = (g + 1) << r->gshift;

		if (!(r->bits[g / 8] >> (g % 8) & 1))
			continue;
		for (uint64_t lcl = lo; lcl < hi && lcl < r->limit; lcl++)
			if (!bal_xmap_find(&rec->map, lcl))
				return true;
	}
	return false;
}

int bal_vol_remote_settle(struct bal_volume *vol)
{
	struct bal_vstore *st = vol->st;
	struct bal_vrec *rec = vol->rec;
	uint8_t k[BAL_VOL_KEY_LEN];

	pthread_mutex_lock(&rec->lock);
	if (!rec->remote) {
		pthread_mutex_unlock(&rec->lock);
		return 0;
	}
	if (any_remote(rec)) {
		pthread_mutex_unlock(&rec->lock);
		return -EAGAIN;
	}
	/*
	 * The record goes through the map log, after every fill and every
	 * other change of this volume's map (a shrink's record too), then a
	 * sync makes it all durable in that order.
	 */
	rkey(k, rec->id);
	bal_log_del(st, k, sizeof(k));
	bal_vremote_destroy(rec->remote);
	rec->remote = NULL;
	atomic_store(&rec->has_remote, false);
	pthread_mutex_unlock(&rec->lock);
	bal_info("volume %s: every cluster is local", rec->name);
	return bal_vstore_sync(st);
}

bool bal_vol_needs_fill(struct bal_volume *vol, uint64_t off, uint64_t len, bool edges_only)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, first, last;
	bool need = false;

	/* The data path asks this per request: most volumes never were restored. */
	if (!atomic_load_explicit(&rec->has_remote, memory_order_relaxed) || vol->snap || !len ||
	    __builtin_add_overflow(off, len, &end))
		return false;
	first = off >> BAL_CLUSTER_SHIFT;
	last = (end - 1) >> BAL_CLUSTER_SHIFT;
	pthread_mutex_lock(&rec->lock);
	if (!rec->remote) {
		pthread_mutex_unlock(&rec->lock);
		return false;
	}
	if (edges_only) {
		need = ((off & (BAL_CLUSTER_SIZE - 1)) && bal_vrec_is_remote(rec, first)) ||
		       ((end & (BAL_CLUSTER_SIZE - 1)) && bal_vrec_is_remote(rec, last));
	} else {
		for (uint64_t cl = first; cl <= last && !need; cl++)
			need = bal_vrec_is_remote(rec, cl);
	}
	pthread_mutex_unlock(&rec->lock);
	return need;
}

int bal_vol_remote_source(struct bal_volume *vol, char *buf, size_t len)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&vol->rec->lock);
	if (vol->rec->remote) {
		snprintf(buf, len, "%s", vol->rec->remote->source);
		ret = 0;
	}
	pthread_mutex_unlock(&vol->rec->lock);
	return ret;
}
