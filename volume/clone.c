/* SPDX-License-Identifier: MIT */
/*
 * Clones, flatten, snapshot diff and space accounting.
 *
 * A clone is a volume record with a parent (volume id, snapshot epoch) and
 * a parent limit (clusters below it read through when the clone has no
 * mapping; it only shrinks).  Its own map starts empty; redirect-on-write
 * (volume.c) copies the parent's bytes into a new cluster on the first
 * partial write, and a trim leaves a HOLE entry that hides the parent.
 * The parent snapshot counts its clones and cannot be deleted while it has
 * any.  Flatten copies every cluster the clone still reads from its parent,
 * then drops the link.
 *
 * Functions that walk what a volume shows (diff, flatten, accounting)
 * first collect candidate clusters from the maps of the volume and its
 * ancestors (never the whole logical range), then resolve each one.
 *
 * Control-plane thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "volume/keys_internal.h"
#include "volume/volume_internal.h"

struct vec {
	uint64_t *v;
	size_t n, cap;
	int err;
};

static void vec_push(struct vec *v, uint64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 256;
		uint64_t *nv = realloc(v->v, cap * sizeof(*nv));

		if (!nv) {
			v->err = -ENOMEM;
			return;
		}
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void vec_sort_unique(struct vec *v)
{
	size_t k = 0;

	if (!v->n)
		return;
	qsort(v->v, v->n, sizeof(*v->v), cmp_u64);
	for (size_t i = 0; i < v->n; i++) {
		if (!k || v->v[i] != v->v[k - 1])
			v->v[k++] = v->v[i];
	}
	v->n = k;
}

struct collect_ctx {
	struct vec *v;
	uint64_t lim;
};

static void collect_ver(void *arg, const struct bal_ver *ver)
{
	struct collect_ctx *c = arg;

	if (ver->lcl < c->lim)
		vec_push(c->v, ver->lcl);
}

/*
 * @rec locked: push every cluster below @lim that @rec or its ancestors
 * map at any epoch.  @plim is @rec's parent limit in the view walked.
 */
static void collect(struct bal_vrec *rec, uint64_t lim, uint64_t plim, struct vec *v)
{
	struct collect_ctx c = { v, lim };
	uint64_t lcl = 0, found;
	struct bal_xent e;

	for (; bal_xmap_next(&rec->map, lcl, &found, &e) && found < lim; lcl = found + 1)
		vec_push(v, found);
	bal_vers_foreach(&rec->vers, collect_ver, &c);
	if (rec->parent) {
		pthread_mutex_lock(&rec->parent->lock);
		collect(rec->parent, lim < plim ? lim : plim, rec->psnap->plimit, v);
		pthread_mutex_unlock(&rec->parent->lock);
	}
}

/* @rec locked: clusters its live volume reads from its parent, sorted. */
static int parent_visible(struct bal_vrec *rec, struct vec *out)
{
	struct vec v = { 0 };
	struct bal_xent e;
	size_t k = 0;

	if (!rec->parent)
		return 0;
	pthread_mutex_lock(&rec->parent->lock);
	collect(rec->parent, rec->plimit, rec->psnap->plimit, &v);
	pthread_mutex_unlock(&rec->parent->lock);
	if (v.err) {
		free(v.v);
		return v.err;
	}
	vec_sort_unique(&v);
	for (size_t i = 0; i < v.n; i++) {
		if (bal_xmap_find(&rec->map, v.v[i]))
			continue;
		if (bal_resolve_parent(rec, rec->plimit, v.v[i], &e) && bal_xent_owns(&e))
			v.v[k++] = v.v[i];
	}
	v.n = k;
	*out = v;
	return 0;
}

int bal_vrec_space(struct bal_vrec *rec, uint64_t *alloc, uint64_t *excl, uint64_t *shared)
{
	struct vec pv = { 0 };
	uint64_t lcl = 0, found;
	struct bal_xent e;
	int ret;

	*alloc = *excl = *shared = 0;
	for (; bal_xmap_next(&rec->map, lcl, &found, &e); lcl = found + 1) {
		if (!bal_xent_owns(&e))
			continue;
		++*alloc;
		if (bal_xent_shared(rec, &e))
			++*shared;
		else
			++*excl;
	}
	ret = parent_visible(rec, &pv);
	*alloc += pv.n;
	*shared += pv.n;
	free(pv.v);
	*alloc <<= BAL_CLUSTER_SHIFT;
	*excl <<= BAL_CLUSTER_SHIFT;
	*shared <<= BAL_CLUSTER_SHIFT;
	return ret;
}

int bal_vstore_clone(struct bal_vstore *st, const char *vol, const char *snap,
		     const char *newvol)
{
	uint8_t key[BAL_VOL_KEY_LEN], val[BAL_VREC_VAL_MAX], next[8];
	const uint8_t ikey = BAL_KEY_NEXT_ID;
	struct bal_vrec *rec, *nrec;
	struct bal_kv_batch *b;
	struct bal_snap *sn;
	int ret;

	if (!newvol || !bal_name_is_valid(newvol))
		return -EINVAL;
	if (!vol || !snap || !bal_name_is_valid(vol) || !bal_name_is_valid(snap))
		return -ENOENT;
	pthread_mutex_lock(&st->ctl_lock);
	pthread_mutex_lock(&st->cat_lock);
	ret = -EEXIST;
	if (bal_vstore_find_locked(st, newvol))
		goto out_unlock;
	ret = -ENOENT;
	rec = bal_vstore_find_locked(st, vol);
	if (!rec)
		goto out_unlock;
	pthread_mutex_lock(&rec->lock);
	sn = bal_vrec_find_snap(rec, snap);
	pthread_mutex_unlock(&rec->lock);
	if (!sn || !sn->ready)
		goto out_unlock;
	ret = bal_vrec_create(newvol, st->next_id, sn->size, (int64_t)time(NULL), &nrec);
	if (ret)
		goto out_unlock;
	nrec->parent = rec;
	nrec->psnap = sn;
	nrec->parent_id = rec->id;
	nrec->pepoch = sn->epoch;
	nrec->plimit = bal_size_clusters(sn->size);
	ret = bal_vstore_add_locked(st, nrec);
	if (ret)
		goto err_destroy;
	ret = -ENOMEM;
	b = bal_kv_batch_create();
	if (!b)
		goto err_remove;
	/* Same key as the origin, in the same synced batch as the record. */
	ret = bal_vkey_clone(st, rec, nrec, b);
	if (ret) {
		bal_kv_batch_destroy(b);
		goto err_remove;
	}
	bal_key_vol(key, nrec->id);
	bal_kv_batch_put(b, key, sizeof(key), val, bal_vrec_encode(nrec, sn->size, val));
	bal_put_be64(next, nrec->id + 1);
	bal_kv_batch_put(b, &ikey, 1, next, sizeof(next));
	ret = bal_vstore_write_synced(st, b);
	bal_kv_batch_destroy(b);
	if (ret)
		goto err_remove;
	st->next_id++;
	pthread_mutex_lock(&rec->lock);
	sn->clones++;
	pthread_mutex_unlock(&rec->lock);
	bal_info("volume %s: cloned from %s@%s", newvol, vol, snap);
	goto out_unlock;
err_remove:
	bal_vstore_remove_locked(st, nrec);
err_destroy:
	nrec->parent = NULL;
	bal_vrec_destroy(st, nrec, false);
out_unlock:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

int bal_vstore_flatten(struct bal_vstore *st, const char *vol)
{
	uint8_t key[BAL_VOL_KEY_LEN], val[BAL_VREC_VAL_MAX];
	struct bal_vrec *rec, *parent;
	struct bal_kv_batch *b;
	struct vec pv = { 0 };
	uint64_t copied = 0;
	int ret;

	pthread_mutex_lock(&st->ctl_lock);
	pthread_mutex_lock(&st->cat_lock);
	rec = vol && bal_name_is_valid(vol) ? bal_vstore_find_locked(st, vol) : NULL;
	ret = -ENOENT;
	if (!rec)
		goto out_cat;
	pthread_mutex_lock(&rec->lock);
	ret = -EINVAL;
	if (!rec->parent)
		goto out_rec;
	/* Its snapshots would lose what they read through the parent. */
	ret = -EBUSY;
	if (rec->nsnaps)
		goto out_rec;
	ret = parent_visible(rec, &pv);
	for (size_t i = 0; !ret && i < pv.n; i++, copied++)
		ret = bal_vrec_materialize(st, rec, pv.v[i]);
	free(pv.v);
	if (ret)
		goto out_rec;
	/* The copies' mappings first, then the record without its parent. */
	ret = bal_vstore_sync(st);
	if (ret)
		goto out_rec;
	parent = rec->parent;
	rec->parent = NULL;
	ret = -ENOMEM;
	b = bal_kv_batch_create();
	if (b) {
		bal_key_vol(key, rec->id);
		bal_kv_batch_put(b, key, sizeof(key), val,
				 bal_vrec_encode(rec, atomic_load(&rec->size), val));
		ret = bal_vstore_write_synced(st, b);
		bal_kv_batch_destroy(b);
	}
	if (ret) {
		rec->parent = parent;
		goto out_rec;
	}
	pthread_mutex_lock(&parent->lock);
	rec->psnap->clones--;
	pthread_mutex_unlock(&parent->lock);
	rec->psnap = NULL;
	rec->parent_id = 0;
	rec->plimit = 0;
	bal_info("volume %s: flattened, %" PRIu64 " clusters copied", vol, copied);
out_rec:
	pthread_mutex_unlock(&rec->lock);
out_cat:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

struct diff_ctx {
	struct vec *v;
	uint32_t a, b;
	uint64_t lim;
};

static void diff_ver(void *arg, const struct bal_ver *ver)
{
	struct diff_ctx *c = arg;

	if (ver->lcl >= c->lim)
		return;
	if ((ver->birth > c->a && ver->birth <= c->b) || (ver->death > c->a && ver->death <= c->b))
		vec_push(c->v, ver->lcl);
}

/* @rec locked: changed clusters between epochs a < b (a 0: all mapped at b). */
static int diff_locked(struct bal_vrec *rec, struct bal_snap *to, uint32_t a, struct vec *v)
{
	uint64_t lim = bal_size_clusters(to->size), lcl = 0, found;
	struct diff_ctx c = { v, a, to->epoch, lim };
	struct bal_xent e;

	for (; bal_xmap_next(&rec->map, lcl, &found, &e) && found < lim; lcl = found + 1) {
		if (e.birth > a && e.birth <= to->epoch)
			vec_push(v, found);
	}
	bal_vers_foreach(&rec->vers, diff_ver, &c);
	if (!a && rec->parent) {
		/* Since creation: a clone's content includes its parent's. */
		struct vec pv = { 0 };

		pthread_mutex_lock(&rec->parent->lock);
		collect(rec->parent, lim < to->plimit ? lim : to->plimit, rec->psnap->plimit, &pv);
		pthread_mutex_unlock(&rec->parent->lock);
		for (size_t i = 0; i < pv.n; i++) {
			if (bal_resolve(rec, to->epoch, to->plimit, pv.v[i], &e) &&
			    !(e.flags & (BAL_XENT_ZERO | BAL_XENT_HOLE)))
				vec_push(v, pv.v[i]);
		}
		free(pv.v);
		if (pv.err)
			return pv.err;
	}
	if (!a) {
		/* Keep only what is mapped at b. */
		size_t k = 0;

		vec_sort_unique(v);
		for (size_t i = 0; i < v->n; i++) {
			if (bal_resolve(rec, to->epoch, to->plimit, v->v[i], &e) &&
			    !(e.flags & BAL_XENT_HOLE))
				v->v[k++] = v->v[i];
		}
		v->n = k;
	}
	return v->err;
}

int bal_vstore_snap_diff(struct bal_vstore *st, const char *vol, const char *from,
			 const char *to, struct bal_range **out, size_t *n)
{
	struct bal_snap *sa = NULL, *sb;
	struct bal_range *r;
	struct bal_vrec *rec;
	struct vec v = { 0 };
	uint64_t bsize = 0;
	size_t k = 0;
	int ret = 0;

	if (!vol || !to || !bal_name_is_valid(vol) || !bal_name_is_valid(to) ||
	    (from && !bal_name_is_valid(from)))
		return -ENOENT;
	pthread_mutex_lock(&st->cat_lock);
	rec = bal_vstore_find_locked(st, vol);
	if (!rec) {
		pthread_mutex_unlock(&st->cat_lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&rec->lock);
	sb = bal_vrec_find_snap(rec, to);
	if (from)
		sa = bal_vrec_find_snap(rec, from);
	if (!sb || !sb->ready || (from && (!sa || !sa->ready)))
		ret = -ENOENT;
	else if (sa && sa->epoch > sb->epoch)
		ret = -EINVAL;
	else if (!sa || sa != sb)
		ret = diff_locked(rec, sb, sa ? sa->epoch : 0, &v);
	if (sb)
		bsize = sb->size;
	pthread_mutex_unlock(&rec->lock);
	pthread_mutex_unlock(&st->cat_lock);
	if (ret) {
		free(v.v);
		return ret;
	}
	vec_sort_unique(&v);
	r = calloc(v.n ? v.n : 1, sizeof(*r));
	if (!r) {
		free(v.v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < v.n; i++) {
		uint64_t off = v.v[i] << BAL_CLUSTER_SHIFT;

		if (k && r[k - 1].off + r[k - 1].len == off) {
			r[k - 1].len += BAL_CLUSTER_SIZE;
		} else {
			r[k].off = off;
			r[k].len = BAL_CLUSTER_SIZE;
			k++;
		}
	}
	/* The last cluster may end at the snapshot's size. */
	if (k && r[k - 1].off + r[k - 1].len > bsize)
		r[k - 1].len = bsize - r[k - 1].off;
	free(v.v);
	*out = r;
	*n = k;
	return 0;
}
