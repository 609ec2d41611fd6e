/* SPDX-License-Identifier: MIT */
/*
 * Snapshots: resolving a cluster at an epoch, creating, listing and
 * deleting snapshots, and loading them at open.
 *
 * Creating snapshot S of a volume costs O(1) in the map: S takes the
 * current epoch s, the volume moves to s + 1 (from then on, everything
 * born at or before s is redirected on write), the pool I/O begun before
 * is waited for (so every write acknowledged before the call is in S),
 * everything is synced, and one synced record makes S durable.
 *
 * Deleting S (epoch s), with predecessor p (0 if none) and successor n
 * (+inf if S is the newest): the old versions S alone referenced are those
 * with birth in (p, s] and death in (s, n]; only the death buckets of
 * (s, n] are visited.  Their records and S's go through the map log, S's
 * first, so any prefix that reaches disk is consistent (versions no
 * snapshot references are dropped at open).
 *
 * Control-plane thread; the store's ctl_lock serialises these.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "volume/volume_internal.h"

bool bal_resolve(struct bal_vrec *rec, uint32_t e, uint64_t plimit, uint64_t lcl,
		 struct bal_xent *out)
{
	const struct bal_xent *x;
	const struct bal_ver *v;

	rec->lookups++;
	x = bal_xmap_find(&rec->map, lcl);
	if (x && x->birth <= e) {
		*out = *x;
		return true;
	}
	if (e != BAL_EPOCH_LIVE && rec->vers.count) {
		rec->lookups++;
		v = bal_vers_find(&rec->vers, lcl, e);
		if (v) {
			*out = (struct bal_xent){ .phys = v->phys, .birth = v->birth,
						  .flags = v->flags };
			return true;
		}
	}
	return bal_resolve_parent(rec, plimit, lcl, out);
}

bool bal_resolve_parent(struct bal_vrec *rec, uint64_t plimit, uint64_t lcl,
			struct bal_xent *out)
{
	bool found;

	if (!rec->parent || lcl >= plimit)
		return false;
	pthread_mutex_lock(&rec->parent->lock);
	found = bal_resolve(rec->parent, rec->pepoch, rec->psnap->plimit, lcl, out);
	pthread_mutex_unlock(&rec->parent->lock);
	return found;
}

struct bal_snap *bal_vrec_find_snap(struct bal_vrec *rec, const char *name)
{
	for (size_t i = 0; i < rec->nsnaps; i++) {
		if (!strcmp(rec->snaps[i]->name, name))
			return rec->snaps[i];
	}
	return NULL;
}

static size_t snap_index(const struct bal_vrec *rec, const struct bal_snap *sn)
{
	size_t i = 0;

	while (rec->snaps[i] != sn)
		i++;
	return i;
}

/* Death interval (s, n] and birth interval (p, s] of what only @sn holds. */
static void snap_bounds(const struct bal_vrec *rec, const struct bal_snap *sn, uint32_t *p,
			uint32_t *n)
{
	size_t i = snap_index(rec, sn);

	*p = i ? rec->snaps[i - 1]->epoch : 0;
	*n = i + 1 < rec->nsnaps ? rec->snaps[i + 1]->epoch : BAL_EPOCH_LIVE;
}

struct drop_ctx {
	struct bal_vstore *st;
	uint64_t id;
};

static void drop_one(void *arg, const struct bal_ver *v)
{
	struct drop_ctx *c = arg;

	bal_log_ver_del(c->st, c->id, v->death, v->lcl);
	if (v->phys != BAL_PHYS_NONE)
		bal_pool_release(c->st->pool, v->phys);
}

void bal_vrec_drop_snap(struct bal_vstore *st, struct bal_vrec *rec, struct bal_snap *sn)
{
	struct drop_ctx c = { st, rec->id };
	uint8_t key[BAL_SNAP_KEY_LEN];
	uint32_t p, n;
	size_t i;

	snap_bounds(rec, sn, &p, &n);
	bal_key_snap(key, rec->id, sn->epoch);
	bal_log_del(st, key, sizeof(key));
	bal_vers_reclaim(&rec->vers, sn->epoch, n, p, sn->epoch, drop_one, &c);
	i = snap_index(rec, sn);
	memmove(rec->snaps + i, rec->snaps + i + 1, (rec->nsnaps - i - 1) * sizeof(*rec->snaps));
	rec->nsnaps--;
	free(sn);
}

static size_t snap_encode(const struct bal_snap *sn, uint8_t *v)
{
	size_t n = strlen(sn->name);

	bal_put_be64(v, sn->id);
	bal_put_be64(v + 8, sn->size);
	bal_put_be64(v + 16, (uint64_t)sn->created_at);
	bal_put_be64(v + 24, sn->plimit);
	v[32] = (uint8_t)n;
	memcpy(v + 33, sn->name, n);
	return 33 + n;
}

/* Look up @vol (catalog lock taken and kept on success) and lock it. */
static int lock_vol(struct bal_vstore *st, const char *vol, struct bal_vrec **out)
{
	struct bal_vrec *rec;

	if (!vol || !bal_name_is_valid(vol))
		return -ENOENT;
	pthread_mutex_lock(&st->cat_lock);
	rec = bal_vstore_find_locked(st, vol);
	if (!rec) {
		pthread_mutex_unlock(&st->cat_lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&rec->lock);
	*out = rec;
	return 0;
}

static void unlock_vol(struct bal_vstore *st, struct bal_vrec *rec)
{
	pthread_mutex_unlock(&rec->lock);
	pthread_mutex_unlock(&st->cat_lock);
}

struct count_ctx {
	uint32_t s, p, n;
	uint64_t refs, excl;
};

static void count_one(void *arg, const struct bal_ver *v)
{
	struct count_ctx *c = arg;

	if (v->phys == BAL_PHYS_NONE)
		return;
	if (v->birth <= c->s && c->s < v->death)
		c->refs++;
	if (v->birth > c->p && v->birth <= c->s && v->death > c->s && v->death <= c->n)
		c->excl++;
}

/* Volume locked. */
static void fill_snap(struct bal_vrec *rec, struct bal_snap *sn, struct bal_snap_info *out)
{
	struct count_ctx c = { .s = sn->epoch };
	uint64_t lcl = 0, found;
	struct bal_xent e;

	memset(out, 0, sizeof(*out));
	snprintf(out->volume, sizeof(out->volume), "%s", rec->name);
	snprintf(out->name, sizeof(out->name), "%s", sn->name);
	out->id = sn->id;
	out->epoch = sn->epoch;
	out->size = sn->size;
	out->created_at = sn->created_at;
	out->clones = sn->clones;
	snap_bounds(rec, sn, &c.p, &c.n);
	bal_vers_foreach(&rec->vers, count_one, &c);
	for (; bal_xmap_next(&rec->map, lcl, &found, &e); lcl = found + 1) {
		if (e.birth <= sn->epoch && bal_xent_owns(&e))
			c.refs++;
	}
	out->allocated = c.refs << BAL_CLUSTER_SHIFT;
	out->exclusive = c.excl << BAL_CLUSTER_SHIFT;
}

int bal_vstore_snap_create(struct bal_vstore *st, const char *vol, const char *snap,
			   struct bal_snap_info *out)
{
	uint8_t key[BAL_SNAP_KEY_LEN], val[BAL_SNAP_VAL_MIN + BAL_NAME_MAX], next[8];
	const uint8_t ikey = BAL_KEY_NEXT_ID;
	struct bal_kv_batch *b;
	struct bal_snap *sn, **ns;
	struct bal_vrec *rec;
	int ret;

	if (!snap || !bal_name_is_valid(snap))
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	ret = lock_vol(st, vol, &rec);
	if (ret)
		goto out_ctl;
	/* Before the epoch moves: a sync cycle from now on re-copies first. */
	pthread_mutex_lock(&st->freeze_lock);
	st->freezing = rec;
	pthread_mutex_unlock(&st->freeze_lock);
	ret = -EEXIST;
	if (bal_vrec_find_snap(rec, snap))
		goto out_unlock;
	/* Restored and still reading from the object tier (remote.c). */
	ret = -EINPROGRESS;
	if (rec->remote)
		goto out_unlock;
	ret = -EOVERFLOW;
	if (rec->epoch >= BAL_EPOCH_LIVE - 1)
		goto out_unlock;
	ret = -ENOMEM;
	sn = calloc(1, sizeof(*sn));
	if (!sn)
		goto out_unlock;
	if (rec->nsnaps == rec->capsnaps) {
		size_t cap = rec->capsnaps ? rec->capsnaps * 2 : 8;

		ns = realloc(rec->snaps, cap * sizeof(*ns));
		if (!ns) {
			free(sn);
			goto out_unlock;
		}
		rec->snaps = ns;
		rec->capsnaps = cap;
	}
	snprintf(sn->name, sizeof(sn->name), "%s", snap);
	sn->id = st->next_id++;
	sn->epoch = rec->epoch;
	sn->size = atomic_load(&rec->size);
	sn->plimit = rec->plimit;
	sn->created_at = (int64_t)time(NULL);
	/* From here on, writes to what the snapshot holds are redirected. */
	rec->freeze_lo = bal_vrec_snap_max(rec);
	rec->freezing = true;
	rec->snaps[rec->nsnaps++] = sn;
	rec->epoch++;
	bal_put_be64(next, st->next_id);
	unlock_vol(st, rec);

	/* Writes mapped before the epoch moved have landed; make it all durable. */
	bal_vstore_io_grace(st);
	pthread_mutex_lock(&st->freeze_lock);
	pthread_mutex_lock(&rec->lock);
	bal_vrec_recopy(st, rec);
	pthread_mutex_unlock(&rec->lock);
	st->freezing = NULL;
	pthread_mutex_unlock(&st->freeze_lock);
	ret = bal_vstore_sync(st);
	if (!ret) {
		ret = -ENOMEM;
		b = bal_kv_batch_create();
		if (b) {
			bal_key_snap(key, rec->id, sn->epoch);
			bal_kv_batch_put(b, key, sizeof(key), val, snap_encode(sn, val));
			bal_kv_batch_put(b, &ikey, 1, next, sizeof(next));
			ret = bal_vstore_write_synced(st, b);
			bal_kv_batch_destroy(b);
		}
	}
	pthread_mutex_lock(&rec->lock);
	if (ret) {
		bal_vrec_drop_snap(st, rec, sn);
	} else {
		sn->ready = true;
		if (out)
			fill_snap(rec, sn, out);
		bal_info("volume %s: snapshot %s taken at epoch %" PRIu32, rec->name, snap,
			 sn->epoch);
	}
	pthread_mutex_unlock(&rec->lock);
	goto out_ctl;
out_unlock:
	unlock_vol(st, rec);
	pthread_mutex_lock(&st->freeze_lock);
	st->freezing = NULL;
	pthread_mutex_unlock(&st->freeze_lock);
out_ctl:
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

void bal_vstore_recopy_frozen(struct bal_vstore *st)
{
	pthread_mutex_lock(&st->freeze_lock);
	if (st->freezing) {
		/*
		 * A flush must not make a redirected mapping durable before the
		 * bytes that I/O begun before the snapshot wrote to its source.
		 */
		bal_vstore_io_grace(st);
		pthread_mutex_lock(&st->freezing->lock);
		if (st->freezing->freezing)
			bal_vrec_recopy(st, st->freezing);
		pthread_mutex_unlock(&st->freezing->lock);
	}
	pthread_mutex_unlock(&st->freeze_lock);
}

/* Catalog lock held: append the ready snapshots of @rec to *v. */
static int list_one(struct bal_vrec *rec, struct bal_snap_info **v, size_t *n, size_t *cap)
{
	int ret = 0;

	pthread_mutex_lock(&rec->lock);
	for (size_t i = 0; i < rec->nsnaps; i++) {
		if (!rec->snaps[i]->ready)
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 16;
			struct bal_snap_info *nv = realloc(*v, nc * sizeof(*nv));

			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			*v = nv;
			*cap = nc;
		}
		fill_snap(rec, rec->snaps[i], &(*v)[(*n)++]);
	}
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

int bal_vstore_snap_list(struct bal_vstore *st, const char *vol, struct bal_snap_info **out,
			 size_t *n)
{
	struct bal_snap_info *v = NULL;
	struct bal_vrec *rec;
	size_t k = 0, cap = 0;
	int ret = 0;

	pthread_mutex_lock(&st->cat_lock);
	if (vol) {
		rec = bal_name_is_valid(vol) ? bal_vstore_find_locked(st, vol) : NULL;
		ret = rec ? list_one(rec, &v, &k, &cap) : -ENOENT;
	} else {
		for (size_t i = 0; i < st->nvols && !ret; i++) {
			if (!atomic_load(&st->vols[i]->deleted))
				ret = list_one(st->vols[i], &v, &k, &cap);
		}
	}
	pthread_mutex_unlock(&st->cat_lock);
	if (ret) {
		free(v);
		return ret;
	}
	*out = v ? v : calloc(1, sizeof(*v));
	*n = k;
	return *out ? 0 : -ENOMEM;
}

int bal_vstore_snap_info(struct bal_vstore *st, const char *vol, const char *snap,
			 struct bal_snap_info *out)
{
	struct bal_vrec *rec;
	struct bal_snap *sn;
	int ret;

	ret = lock_vol(st, vol, &rec);
	if (ret)
		return ret;
	sn = snap ? bal_vrec_find_snap(rec, snap) : NULL;
	if (sn && sn->ready)
		fill_snap(rec, sn, out);
	else
		ret = -ENOENT;
	unlock_vol(st, rec);
	return ret;
}

int bal_vstore_snap_delete(struct bal_vstore *st, const char *vol, const char *snap)
{
	struct bal_vrec *rec;
	struct bal_snap *sn;
	int ret;

	pthread_mutex_lock(&st->ctl_lock);
	ret = lock_vol(st, vol, &rec);
	if (ret)
		goto out_ctl;
	sn = snap ? bal_vrec_find_snap(rec, snap) : NULL;
	if (!sn || !sn->ready)
		ret = -ENOENT;
	else if (sn->clones || sn->connections)
		ret = -EBUSY;
	else
		bal_vrec_drop_snap(st, rec, sn);
	unlock_vol(st, rec);
	if (!ret) {
		ret = bal_vstore_sync(st);
		bal_info("volume %s: snapshot %s deleted", vol, snap);
	}
out_ctl:
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

/* ---- start-up ---- */

static int snap_decode(const uint8_t *k, const uint8_t *v, size_t vl, struct bal_snap **out)
{
	struct bal_snap *sn;
	uint64_t epoch = bal_get_be64(k + 9);

	if (vl < BAL_SNAP_VAL_MIN || v[32] > BAL_NAME_MAX || vl != (size_t)BAL_SNAP_VAL_MIN + v[32] ||
	    !epoch || epoch >= BAL_EPOCH_LIVE)
		return -EUCLEAN;
	sn = calloc(1, sizeof(*sn));
	if (!sn)
		return -ENOMEM;
	memcpy(sn->name, v + 33, v[32]);
	sn->id = bal_get_be64(v);
	sn->epoch = (uint32_t)epoch;
	sn->size = bal_get_be64(v + 8);
	sn->created_at = (int64_t)bal_get_be64(v + 16);
	sn->plimit = bal_get_be64(v + 24);
	sn->ready = true;
	if (!bal_name_is_valid(sn->name)) {
		free(sn);
		return -EUCLEAN;
	}
	*out = sn;
	return 0;
}

static int add_snap(struct bal_vrec *rec, struct bal_snap *sn)
{
	if (rec->nsnaps == rec->capsnaps) {
		size_t cap = rec->capsnaps ? rec->capsnaps * 2 : 8;
		struct bal_snap **ns = realloc(rec->snaps, cap * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		rec->snaps = ns;
		rec->capsnaps = cap;
	}
	rec->snaps[rec->nsnaps++] = sn;
	if (sn->epoch >= rec->epoch)
		rec->epoch = sn->epoch + 1;
	return 0;
}

static int link_clones(struct bal_vstore *st)
{
	for (size_t i = 0; i < st->nvols; i++) {
		struct bal_vrec *rec = st->vols[i], *p;

		if (!rec->parent_id)
			continue;
		p = bal_vstore_find_id(st, rec->parent_id);
		for (size_t j = 0; p && j < p->nsnaps && !rec->psnap; j++) {
			if (p->snaps[j]->epoch == rec->pepoch)
				rec->psnap = p->snaps[j];
		}
		if (!rec->psnap) {
			bal_err("store %s: clone %s: parent snapshot missing", st->dir, rec->name);
			return -EUCLEAN;
		}
		rec->parent = p;
		rec->psnap->clones++;
	}
	return 0;
}

static int load_snap(void *arg, const void *key, size_t kl, const void *v, size_t vl)
{
	struct bal_vstore *st = arg;
	const uint8_t *k = key;
	struct bal_snap *sn;
	struct bal_vrec *rec;
	int ret;

	ret = kl == BAL_SNAP_KEY_LEN ? snap_decode(k, v, vl, &sn) : -EUCLEAN;
	if (ret) {
		bal_err("store %s: malformed snapshot record", st->dir);
		return ret;
	}
	rec = bal_vstore_find_id(st, bal_get_be64(k + 1));
	/* A volume's records go in one batch: no orphans expected. */
	ret = rec ? add_snap(rec, sn) : -EUCLEAN;
	if (ret) {
		if (ret == -EUCLEAN)
			bal_err("store %s: snapshot %s of a missing volume", st->dir, sn->name);
		free(sn);
		return ret;
	}
	if (sn->id >= st->next_id)
		st->next_id = sn->id + 1;
	return 0;
}

int bal_vstore_load_snaps(struct bal_vstore *st)
{
	const uint8_t lo = BAL_KEY_SNAP, hi = BAL_KEY_SNAP + 1;
	int ret;

	ret = bal_kv_scan(st->kv, &lo, 1, &hi, 1, load_snap, st);
	return ret ? ret : link_clones(st);
}

/* Some snapshot t of @rec has birth <= t < death. */
static bool referenced(const struct bal_vrec *rec, uint32_t birth, uint32_t death)
{
	size_t lo = 0, hi = rec->nsnaps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rec->snaps[mid]->epoch < birth)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rec->nsnaps && rec->snaps[lo]->epoch < death;
}

struct vers_ctx {
	struct bal_vstore *st;
	struct bal_kv_batch *drop;
	uint64_t n;
};

static int load_ver(void *arg, const void *key, size_t kl, const void *val, size_t vl)
{
	struct vers_ctx *c = arg;
	const uint8_t *k = key, *v = val;
	struct bal_vrec *rec;
	struct bal_ver ver;
	uint64_t death, birth;
	int ret;

	if (kl != BAL_VER_KEY_LEN || vl != BAL_MAP_VAL_LEN) {
		bal_err("store %s: malformed old version record", c->st->dir);
		return -EUCLEAN;
	}
	rec = bal_vstore_find_id(c->st, bal_get_be64(k + 1));
	death = bal_get_be64(k + 9);
	birth = bal_get_be64(v + 8);
	if (death >= BAL_EPOCH_LIVE || birth >= death) {
		bal_err("store %s: old version with bad epochs", c->st->dir);
		return -EUCLEAN;
	}
	if (!rec || !referenced(rec, (uint32_t)birth, (uint32_t)death)) {
		/* Its snapshot's deletion did not finish: free it now. */
		bal_kv_batch_delete(c->drop, k, kl);
		return 0;
	}
	ver = (struct bal_ver){ .lcl = bal_get_be64(k + 17), .phys = bal_get_be64(v),
				.birth = (uint32_t)birth, .death = (uint32_t)death,
				.flags = bal_get_be32(v + 16) };
	if (!(ver.flags & BAL_XENT_HOLE)) {
		ret = bal_pool_mark_used(c->st->pool, ver.phys);
		if (ret)
			return ret;
	}
	ret = bal_vers_add(&rec->vers, &ver);
	if (ret)
		return ret;
	if (ver.death > rec->epoch)
		rec->epoch = ver.death;
	c->n++;
	return 0;
}

int bal_vstore_load_vers(struct bal_vstore *st)
{
	const uint8_t lo = BAL_KEY_VER, hi = BAL_KEY_VER + 1;
	struct vers_ctx c = { .st = st };
	int ret;

	c.drop = bal_kv_batch_create();
	if (!c.drop)
		return -ENOMEM;
	ret = bal_kv_scan(st->kv, &lo, 1, &hi, 1, load_ver, &c);
	if (ret)
		goto out_batch;
	if (bal_kv_batch_count(c.drop)) {
		bal_warn("store %s: dropping %zu unreferenced old versions", st->dir,
			 bal_kv_batch_count(c.drop));
		ret = bal_kv_write(st->kv, c.drop, true);
	}
	if (c.n)
		bal_info("store %s: %" PRIu64 " old versions", st->dir, c.n);
out_batch:
	bal_kv_batch_destroy(c.drop);
	return ret;
}

int bal_vstore_versions(struct bal_vstore *st, const char *name, uint64_t *n)
{
	struct bal_vrec *rec;
	int ret;

	ret = lock_vol(st, name, &rec);
	if (ret)
		return ret;
	*n = rec->vers.count;
	unlock_vol(st, rec);
	return 0;
}
