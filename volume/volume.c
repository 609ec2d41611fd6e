/* SPDX-License-Identifier: MIT */
/*
 * The data path of a volume: mapping requests to pool segments, trim,
 * write-zeroes and block status.  Each call holds the volume's lock for its
 * whole length, reads only the in-memory index, and records every change of
 * the map with one unsynced RocksDB write before returning (the sync thread
 * makes it durable).  Clusters unmapped here go to the pool's pending list
 * and are reused only after a sync cycle.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "volume/volume_internal.h"

#define CL_MASK ((uint64_t)BAL_CLUSTER_SIZE - 1)
#define CHUNK 256	/* clusters per RocksDB batch in long operations */

enum discard_mode { DISCARD_TRIM, DISCARD_PUNCH, DISCARD_ALLOC };

/* One cluster to (re)map: @fresh ones were just allocated, not yet indexed. */
struct wclust {
	uint64_t lcl;
	uint64_t phys;
	bool fresh;
};

const char *bal_vol_name(const struct bal_volume *vol)
{
	return vol->rec->name;
}

uint64_t bal_vol_size(const struct bal_volume *vol)
{
	return atomic_load(&vol->rec->size);
}

bool bal_vol_is_readonly(const struct bal_volume *vol)
{
	(void)vol;
	return false;
}

bool bal_vol_is_deleted(const struct bal_volume *vol)
{
	return atomic_load(&vol->rec->deleted);
}

size_t bal_vol_index_mem(struct bal_volume *vol)
{
	size_t n;

	pthread_mutex_lock(&vol->rec->lock);
	n = bal_xmap_mem(&vol->rec->map);
	pthread_mutex_unlock(&vol->rec->lock);
	return n;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Volume locked: the volume is usable and [off, off+len) inside it. */
static int check_locked(struct bal_vrec *rec, uint64_t off, uint64_t len, uint64_t *end)
{
	if (atomic_load(&rec->deleted))
		return -ESHUTDOWN;
	if (!len || __builtin_add_overflow(off, len, end) || *end > atomic_load(&rec->size))
		return -EINVAL;
	return 0;
}

static void add_seg(struct bal_seg *segs, size_t *n, uint64_t phys, uint32_t len)
{
	if (*n) {
		struct bal_seg *s = &segs[*n - 1];

		if (phys == BAL_SEG_HOLE ? s->phys == BAL_SEG_HOLE
					 : s->phys != BAL_SEG_HOLE && s->phys + s->len == phys) {
			s->len += len;
			return;
		}
	}
	segs[*n].phys = phys;
	segs[*n].len = len;
	(*n)++;
}

static void unalloc_fresh(struct bal_vstore *st, const struct wclust *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (w[i].fresh)
			bal_pool_unalloc(st->pool, w[i].phys);
	}
}

/*
 * Volume locked: map every cluster of @w with @flags (fresh clusters become
 * mapped, the others get @flags).  Written to RocksDB unsynced, then to the
 * index.  On error nothing changed and the fresh clusters are given back.
 */
static int commit(struct bal_vstore *st, struct bal_vrec *rec, const struct wclust *w,
		  size_t n, uint32_t flags)
{
	uint8_t key[BAL_MAP_KEY_LEN], val[BAL_MAP_VAL_LEN];
	struct bal_kv_batch *b;
	struct bal_xent e;
	size_t i, j, k;
	int ret = 0;

	for (i = 0; i < n; i = j) {
		j = i + 1;
		if (!w[i].fresh)
			continue;
		while (j < n && w[j].fresh && w[j].phys == w[j - 1].phys + 1)
			j++;
		ret = bal_pool_reserve(st->pool, w[i].phys, w[j - 1].phys - w[i].phys + 1);
		if (ret)
			goto err_unalloc;
	}
	for (k = 0; k < n; k++) {
		if (!w[k].fresh)
			continue;
		e = (struct bal_xent){ .phys = w[k].phys, .birth = 0, .flags = flags };
		ret = bal_xmap_set(&rec->map, w[k].lcl, &e);
		if (ret)
			goto err_unindex;
	}
	ret = -ENOMEM;
	b = bal_kv_batch_create();
	if (!b)
		goto err_unindex;
	for (i = 0; i < n; i++) {
		e = *bal_xmap_find(&rec->map, w[i].lcl);
		e.flags = flags;
		bal_key_map(key, rec->id, w[i].lcl);
		bal_map_val(val, &e);
		bal_kv_batch_put(b, key, sizeof(key), val, sizeof(val));
	}
	ret = bal_kv_write(st->kv, b, false);
	bal_kv_batch_destroy(b);
	if (ret) {
		/* The write may have reached the WAL: do not reuse at once. */
		for (i = 0; i < n; i++) {
			if (w[i].fresh) {
				bal_xmap_remove(&rec->map, w[i].lcl, NULL);
				bal_pool_release(st->pool, w[i].phys);
			}
		}
		return ret;
	}
	for (i = 0; i < n; i++)
		bal_xmap_find(&rec->map, w[i].lcl)->flags = flags;
	return 0;
err_unindex:
	while (k-- > 0) {
		if (w[k].fresh)
			bal_xmap_remove(&rec->map, w[k].lcl, NULL);
	}
err_unalloc:
	unalloc_fresh(st, w, n);
	return ret;
}

int bal_vol_map_read(struct bal_volume *vol, uint64_t off, uint32_t len,
		     struct bal_seg *segs, size_t max, size_t *n)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, first, last, pos;
	int ret;

	pthread_mutex_lock(&rec->lock);
	ret = check_locked(rec, off, len, &end);
	if (ret)
		goto out_unlock;
	first = off >> BAL_CLUSTER_SHIFT;
	last = (end - 1) >> BAL_CLUSTER_SHIFT;
	ret = -EINVAL;
	if (last - first >= max)
		goto out_unlock;
	ret = 0;
	*n = 0;
	pos = off;
	for (uint64_t cl = first; cl <= last; cl++) {
		uint64_t cend = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT), phys;
		const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

		/* A ZERO cluster holds zeroes: no need to read it. */
		if (e && !(e->flags & BAL_XENT_ZERO))
			phys = (e->phys << BAL_CLUSTER_SHIFT) + (pos & CL_MASK);
		else
			phys = BAL_SEG_HOLE;
		add_seg(segs, n, phys, (uint32_t)(cend - pos));
		pos = cend;
	}
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

/* Volume locked: make every cluster of [first, last] mapped and not ZERO. */
static int prepare_write(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first,
			 uint64_t last, size_t need)
{
	struct wclust *w;
	size_t k = 0;
	int ret;

	w = malloc(need * sizeof(*w));
	if (!w)
		return -ENOMEM;
	for (uint64_t cl = first; cl <= last; cl++) {
		const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

		if (e && !(e->flags & BAL_XENT_ZERO))
			continue;
		w[k].lcl = cl;
		w[k].fresh = !e;
		if (e) {
			w[k].phys = e->phys;
		} else {
			ret = bal_pool_alloc(st->pool, &w[k].phys);
			if (ret) {
				unalloc_fresh(st, w, k);
				goto out_free;
			}
		}
		k++;
	}
	ret = commit(st, rec, w, k, 0);
out_free:
	free(w);
	return ret;
}

int bal_vol_map_write(struct bal_volume *vol, uint64_t off, uint32_t len,
		      struct bal_seg *segs, size_t max, size_t *n)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, first, last, pos;
	size_t need = 0;
	int ret;

	if (bal_vol_is_readonly(vol))
		return -EPERM;
	pthread_mutex_lock(&rec->lock);
	ret = check_locked(rec, off, len, &end);
	if (ret)
		goto out_unlock;
	first = off >> BAL_CLUSTER_SHIFT;
	last = (end - 1) >> BAL_CLUSTER_SHIFT;
	ret = -EINVAL;
	if (last - first >= max)
		goto out_unlock;
	for (uint64_t cl = first; cl <= last; cl++) {
		const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

		if (!e || (e->flags & BAL_XENT_ZERO))
			need++;
	}
	ret = need ? prepare_write(vol->st, rec, first, last, need) : 0;
	if (ret) {
		if (ret != -ENOSPC)
			bal_err("volume %s: map write at %" PRIu64 "+%" PRIu32 ": %s", rec->name,
				off, len, strerror(-ret));
		goto out_unlock;
	}
	*n = 0;
	pos = off;
	for (uint64_t cl = first; cl <= last; cl++) {
		uint64_t cend = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT);
		const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

		add_seg(segs, n, (e->phys << BAL_CLUSTER_SHIFT) + (pos & CL_MASK),
			(uint32_t)(cend - pos));
		pos = cend;
	}
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

int bal_vrec_unmap(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first, uint64_t end)
{
	struct {
		uint64_t lcl, phys;
	} v[CHUNK];
	uint8_t key[BAL_MAP_KEY_LEN];
	uint64_t lcl = first, found;
	struct bal_kv_batch *b;
	struct bal_xent e;
	size_t k;
	int ret;

	do {
		for (k = 0; k < CHUNK && bal_xmap_next(&rec->map, lcl, &found, &e) && found < end;
		     k++) {
			v[k].lcl = found;
			v[k].phys = e.phys;
			lcl = found + 1;
		}
		if (!k)
			break;
		b = bal_kv_batch_create();
		if (!b)
			return -ENOMEM;
		for (size_t i = 0; i < k; i++) {
			bal_key_map(key, rec->id, v[i].lcl);
			bal_kv_batch_delete(b, key, sizeof(key));
		}
		ret = bal_kv_write(st->kv, b, false);
		bal_kv_batch_destroy(b);
		if (ret)
			return ret;
		for (size_t i = 0; i < k; i++) {
			bal_xmap_remove(&rec->map, v[i].lcl, NULL);
			bal_pool_release(st->pool, v[i].phys);
		}
	} while (k == CHUNK);
	return 0;
}

/* Volume locked: clusters [first, end) become allocated ZERO clusters. */
static int zero_alloc(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first,
		      uint64_t end)
{
	struct wclust *w;
	uint64_t cl = first;
	size_t k;
	int ret = 0;

	w = malloc(CHUNK * sizeof(*w));
	if (!w)
		return -ENOMEM;
	while (cl < end) {
		for (k = 0; cl < end && k < CHUNK; cl++) {
			const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

			if (e && (e->flags & BAL_XENT_ZERO))
				continue;
			w[k].lcl = cl;
			w[k].fresh = !e;
			if (e) {
				w[k].phys = e->phys;
				ret = bal_pool_zero(st->pool, e->phys << BAL_CLUSTER_SHIFT,
						    BAL_CLUSTER_SIZE, false);
			} else {
				ret = bal_pool_alloc(st->pool, &w[k].phys);
			}
			if (ret) {
				unalloc_fresh(st, w, k);
				goto out_free;
			}
			k++;
		}
		ret = k ? commit(st, rec, w, k, BAL_XENT_ZERO) : 0;
		if (ret)
			break;
	}
out_free:
	free(w);
	return ret;
}

/* Volume locked: [lo, hi) inside cluster @cl reads as zeroes. */
static int zero_partial(struct bal_vstore *st, struct bal_vrec *rec, uint64_t cl,
			uint64_t lo, uint64_t hi, enum discard_mode mode)
{
	const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

	if (!e || (e->flags & BAL_XENT_ZERO))
		return 0;
	return bal_pool_zero(st->pool, (e->phys << BAL_CLUSTER_SHIFT) + (lo & CL_MASK), hi - lo,
			     mode != DISCARD_ALLOC);
}

static int discard(struct bal_volume *vol, uint64_t off, uint64_t len, enum discard_mode mode)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, size, head, wfirst, wend, tail;
	int ret;

	if (bal_vol_is_readonly(vol))
		return -EPERM;
	pthread_mutex_lock(&rec->lock);
	ret = check_locked(rec, off, len, &end);
	if (ret)
		goto out_unlock;
	size = atomic_load(&rec->size);
	/* Whole clusters; the last one of the volume may end at its size. */
	head = off >> BAL_CLUSTER_SHIFT;
	wfirst = (off + CL_MASK) >> BAL_CLUSTER_SHIFT;
	wend = end == size ? bal_size_clusters(size) : end >> BAL_CLUSTER_SHIFT;
	tail = end >> BAL_CLUSTER_SHIFT;
	if (off & CL_MASK)
		ret = zero_partial(vol->st, rec, head, off,
				   min_u64(end, (head + 1) << BAL_CLUSTER_SHIFT), mode);
	if (!ret && wfirst < wend) {
		if (mode == DISCARD_ALLOC)
			ret = zero_alloc(vol->st, rec, wfirst, wend);
		else
			ret = bal_vrec_unmap(vol->st, rec, wfirst, wend);
	}
	if (!ret && end != size && (end & CL_MASK) && !((off & CL_MASK) && tail == head))
		ret = zero_partial(vol->st, rec, tail, tail << BAL_CLUSTER_SHIFT > off ?
					      tail << BAL_CLUSTER_SHIFT : off, end, mode);
	if (ret && ret != -ENOSPC)
		bal_err("volume %s: %s at %" PRIu64 "+%" PRIu64 ": %s", rec->name,
			mode == DISCARD_TRIM ? "trim" : "zero", off, len, strerror(-ret));
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

int bal_vol_trim(struct bal_volume *vol, uint64_t off, uint64_t len)
{
	return discard(vol, off, len, DISCARD_TRIM);
}

int bal_vol_zero(struct bal_volume *vol, uint64_t off, uint64_t len, bool may_punch)
{
	return discard(vol, off, len, may_punch ? DISCARD_PUNCH : DISCARD_ALLOC);
}

int bal_vol_block_status(struct bal_volume *vol, uint64_t off, uint64_t len,
			 struct bal_extent *ext, size_t max, size_t *n)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, pos;
	int ret;

	pthread_mutex_lock(&rec->lock);
	ret = check_locked(rec, off, len, &end);
	if (!ret && !max)
		ret = -EINVAL;
	if (ret)
		goto out_unlock;
	*n = 0;
	for (pos = off; pos < end;) {
		uint64_t cl = pos >> BAL_CLUSTER_SHIFT, found, next;
		struct bal_xent e;
		uint32_t flags;
		bool any = bal_xmap_next(&rec->map, cl, &found, &e);

		if (any && found == cl) {
			flags = (e.flags & BAL_XENT_ZERO) ? BAL_EXT_ZERO : 0;
			next = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT);
		} else {
			flags = BAL_EXT_HOLE | BAL_EXT_ZERO;
			next = any ? min_u64(end, found << BAL_CLUSTER_SHIFT) : end;
		}
		if (*n && ext[*n - 1].flags == flags) {
			ext[*n - 1].len += next - pos;
		} else if (*n == max) {
			break;
		} else {
			ext[*n].len = next - pos;
			ext[*n].flags = flags;
			(*n)++;
		}
		pos = next;
	}
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}
