/* SPDX-License-Identifier: MIT */
/*
 * The catalog: creating, listing, resizing and deleting volumes, and the
 * handles (bal_vol_open/close) that count a volume's connections.
 * Control-plane changes are synced to RocksDB before they return.
 *
 * A forced delete of an open volume removes its records at once and marks
 * it deleted; the record stays in st->vols (invisible to names) until its
 * last handle closes, and only then do its clusters go back to the pool:
 * until then a handle may still have I/O in flight on them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "volume/volume_internal.h"

size_t bal_vrec_encode(const struct bal_vrec *rec, uint64_t size, uint8_t *buf)
{
	size_t n = strlen(rec->name);

	bal_put_be64(buf, size);
	bal_put_be64(buf + 8, (uint64_t)rec->created_at);
	buf[16] = (uint8_t)n;
	memcpy(buf + 17, rec->name, n);
	return 17 + n;
}

int bal_vrec_create(const char *name, uint64_t id, uint64_t size, int64_t created_at,
		    struct bal_vrec **out)
{
	struct bal_vrec *rec;

	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	snprintf(rec->name, sizeof(rec->name), "%s", name);
	rec->id = id;
	rec->created_at = created_at;
	atomic_init(&rec->size, size);
	atomic_init(&rec->deleted, false);
	pthread_mutex_init(&rec->lock, NULL);
	bal_xmap_init(&rec->map);
	*out = rec;
	return 0;
}

int bal_vrec_decode(const void *key, size_t klen, const void *val, size_t vlen,
		    struct bal_vrec **out)
{
	const uint8_t *v = val;
	char name[BAL_NAME_MAX + 1];
	uint64_t size;

	if (klen != BAL_VOL_KEY_LEN || vlen < 17 || v[16] > BAL_NAME_MAX ||
	    vlen != 17 + (size_t)v[16])
		goto bad;
	memcpy(name, v + 17, v[16]);
	name[v[16]] = '\0';
	size = bal_get_be64(v);
	if (!bal_name_is_valid(name) || !size || size % BAL_VOL_ALIGN ||
	    size > BAL_VOL_SIZE_MAX)
		goto bad;
	return bal_vrec_create(name, bal_get_be64((const uint8_t *)key + 1), size,
			       (int64_t)bal_get_be64(v + 8), out);
bad:
	bal_err("catalog: malformed volume record");
	return -EUCLEAN;
}

void bal_vrec_destroy(struct bal_vstore *st, struct bal_vrec *rec, bool release)
{
	struct bal_xent e;
	uint64_t lcl = 0, found;

	while (release && bal_xmap_next(&rec->map, lcl, &found, &e)) {
		bal_pool_release(st->pool, e.phys);
		lcl = found + 1;
	}
	bal_xmap_fini(&rec->map);
	pthread_mutex_destroy(&rec->lock);
	free(rec);
}

int bal_vstore_add_locked(struct bal_vstore *st, struct bal_vrec *rec)
{
	if (st->nvols == st->capvols) {
		size_t cap = st->capvols ? st->capvols * 2 : 16;
		struct bal_vrec **nv = realloc(st->vols, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		st->vols = nv;
		st->capvols = cap;
	}
	st->vols[st->nvols++] = rec;
	return 0;
}

static void remove_locked(struct bal_vstore *st, struct bal_vrec *rec)
{
	for (size_t i = 0; i < st->nvols; i++) {
		if (st->vols[i] == rec) {
			memmove(st->vols + i, st->vols + i + 1,
				(st->nvols - i - 1) * sizeof(*st->vols));
			st->nvols--;
			return;
		}
	}
}

static struct bal_vrec *find_locked(struct bal_vstore *st, const char *name)
{
	for (size_t i = 0; i < st->nvols; i++) {
		if (!atomic_load(&st->vols[i]->deleted) && !strcmp(st->vols[i]->name, name))
			return st->vols[i];
	}
	return NULL;
}

static bool size_is_valid(uint64_t size)
{
	return size && size % BAL_VOL_ALIGN == 0 && size <= BAL_VOL_SIZE_MAX;
}

int bal_vstore_create(struct bal_vstore *st, const char *name, uint64_t size)
{
	uint8_t key[BAL_VOL_KEY_LEN], val[17 + BAL_NAME_MAX], next[8];
	const uint8_t ikey = BAL_KEY_NEXT_ID;
	struct bal_kv_batch *b;
	struct bal_vrec *rec;
	int ret;

	if (!bal_name_is_valid(name) || !size_is_valid(size))
		return -EINVAL;
	pthread_mutex_lock(&st->cat_lock);
	if (find_locked(st, name)) {
		ret = -EEXIST;
		goto out_unlock;
	}
	ret = bal_vrec_create(name, st->next_id, size, (int64_t)time(NULL), &rec);
	if (ret)
		goto out_unlock;
	/* Room in the array first: after the durable write nothing may fail. */
	ret = bal_vstore_add_locked(st, rec);
	if (ret)
		goto err_destroy;
	b = bal_kv_batch_create();
	if (!b) {
		ret = -ENOMEM;
		goto err_remove;
	}
	bal_key_vol(key, rec->id);
	bal_kv_batch_put(b, key, sizeof(key), val, bal_vrec_encode(rec, size, val));
	bal_put_be64(next, rec->id + 1);
	bal_kv_batch_put(b, &ikey, 1, next, sizeof(next));
	ret = bal_kv_write(st->kv, b, true);
	bal_kv_batch_destroy(b);
	if (ret)
		goto err_remove;
	st->next_id++;
	bal_info("volume %s: created, id %" PRIu64 ", %" PRIu64 " bytes", name, rec->id, size);
	goto out_unlock;
err_remove:
	remove_locked(st, rec);
err_destroy:
	bal_vrec_destroy(st, rec, false);
out_unlock:
	pthread_mutex_unlock(&st->cat_lock);
	return ret;
}

/* Catalog lock held. */
static void fill_info(struct bal_vrec *rec, struct bal_vol_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", rec->name);
	out->id = rec->id;
	out->created_at = rec->created_at;
	out->connections = rec->connections;
	pthread_mutex_lock(&rec->lock);
	out->size = atomic_load(&rec->size);
	out->allocated = bal_xmap_count(&rec->map) << BAL_CLUSTER_SHIFT;
	pthread_mutex_unlock(&rec->lock);
}

static int cmp_info(const void *a, const void *b)
{
	return strcmp(((const struct bal_vol_info *)a)->name,
		      ((const struct bal_vol_info *)b)->name);
}

int bal_vstore_list(struct bal_vstore *st, struct bal_vol_info **out, size_t *n)
{
	struct bal_vol_info *v;
	size_t k = 0;

	pthread_mutex_lock(&st->cat_lock);
	v = calloc(st->nvols ? st->nvols : 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&st->cat_lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < st->nvols; i++) {
		if (!atomic_load(&st->vols[i]->deleted))
			fill_info(st->vols[i], &v[k++]);
	}
	pthread_mutex_unlock(&st->cat_lock);
	qsort(v, k, sizeof(*v), cmp_info);
	*out = v;
	*n = k;
	return 0;
}

int bal_vstore_info(struct bal_vstore *st, const char *name, struct bal_vol_info *out)
{
	struct bal_vrec *rec;
	int ret = 0;

	if (!bal_name_is_valid(name))
		return -ENOENT;
	pthread_mutex_lock(&st->cat_lock);
	rec = find_locked(st, name);
	if (rec)
		fill_info(rec, out);
	else
		ret = -ENOENT;
	pthread_mutex_unlock(&st->cat_lock);
	return ret;
}

int bal_vstore_resize(struct bal_vstore *st, const char *name, uint64_t size, bool force)
{
	uint8_t key[BAL_VOL_KEY_LEN], val[17 + BAL_NAME_MAX], lo[BAL_MAP_KEY_LEN],
		hi[BAL_MAP_KEY_LEN];
	uint64_t old, ncl, lcl, found;
	struct bal_kv_batch *b;
	struct bal_vrec *rec;
	struct bal_xent e;
	struct bal_xent *tail;
	int ret;

	if (!size_is_valid(size))
		return -EINVAL;
	pthread_mutex_lock(&st->cat_lock);
	rec = bal_name_is_valid(name) ? find_locked(st, name) : NULL;
	if (!rec) {
		pthread_mutex_unlock(&st->cat_lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&rec->lock);
	old = atomic_load(&rec->size);
	ret = 0;
	if (size == old)
		goto out_unlock;
	ret = -EPERM;
	if (size < old && !force)
		goto out_unlock;
	ncl = bal_size_clusters(size);
	if (size < old && size % BAL_CLUSTER_SIZE) {
		/* Past the new end must read as zeroes if the volume grows again. */
		tail = bal_xmap_find(&rec->map, ncl - 1);
		if (tail && !(tail->flags & BAL_XENT_ZERO)) {
			uint64_t in = size % BAL_CLUSTER_SIZE;

			ret = bal_pool_zero(st->pool, (tail->phys << BAL_CLUSTER_SHIFT) + in,
					    BAL_CLUSTER_SIZE - in, true);
			if (ret)
				goto out_unlock;
		}
	}
	ret = -ENOMEM;
	b = bal_kv_batch_create();
	if (!b)
		goto out_unlock;
	bal_key_vol(key, rec->id);
	bal_kv_batch_put(b, key, sizeof(key), val, bal_vrec_encode(rec, size, val));
	if (size < old) {
		bal_key_map(lo, rec->id, ncl);
		bal_key_map(hi, rec->id, bal_size_clusters(old));
		bal_kv_batch_delete_range(b, lo, sizeof(lo), hi, sizeof(hi));
	}
	ret = bal_kv_write(st->kv, b, true);
	bal_kv_batch_destroy(b);
	if (ret)
		goto out_unlock;
	for (lcl = ncl; bal_xmap_next(&rec->map, lcl, &found, &e); lcl = found + 1) {
		bal_xmap_remove(&rec->map, found, NULL);
		bal_pool_release(st->pool, e.phys);
	}
	atomic_store(&rec->size, size);
	bal_info("volume %s: resized from %" PRIu64 " to %" PRIu64 " bytes", name, old, size);
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	pthread_mutex_unlock(&st->cat_lock);
	return ret;
}

int bal_vstore_delete(struct bal_vstore *st, const char *name, bool force, bool recursive)
{
	uint8_t key[BAL_VOL_KEY_LEN], lo[BAL_MAP_KEY_LEN], hi[BAL_MAP_KEY_LEN];
	struct bal_kv_batch *b;
	struct bal_vrec *rec;
	bool now;
	int ret;

	(void)recursive;	/* no snapshots yet */

	pthread_mutex_lock(&st->cat_lock);
	rec = bal_name_is_valid(name) ? find_locked(st, name) : NULL;
	ret = -ENOENT;
	if (!rec)
		goto out_unlock;
	ret = -EBUSY;
	if (rec->connections && !force)
		goto out_unlock;
	ret = -ENOMEM;
	b = bal_kv_batch_create();
	if (!b)
		goto out_unlock;
	/* Ids never reach UINT64_MAX: the map range of @id ends at id + 1. */
	bal_key_vol(key, rec->id);
	bal_key_map(lo, rec->id, 0);
	bal_key_map(hi, rec->id + 1, 0);
	bal_kv_batch_delete(b, key, sizeof(key));
	bal_kv_batch_delete_range(b, lo, sizeof(lo), hi, sizeof(hi));
	pthread_mutex_lock(&rec->lock);
	ret = bal_kv_write(st->kv, b, true);
	if (ret == 0)
		atomic_store(&rec->deleted, true);
	pthread_mutex_unlock(&rec->lock);
	bal_kv_batch_destroy(b);
	if (ret)
		goto out_unlock;
	now = rec->connections == 0;
	if (now)
		remove_locked(st, rec);
	pthread_mutex_unlock(&st->cat_lock);
	bal_info("volume %s: deleted%s", name, now ? "" : ", clusters freed at last close");
	if (now)
		bal_vrec_destroy(st, rec, true);
	return 0;
out_unlock:
	pthread_mutex_unlock(&st->cat_lock);
	return ret;
}

int bal_vol_open(struct bal_vstore *st, const char *name, struct bal_volume **out)
{
	struct bal_volume *vol;
	struct bal_vrec *rec;

	vol = malloc(sizeof(*vol));
	if (!vol)
		return -ENOMEM;
	pthread_mutex_lock(&st->cat_lock);
	rec = bal_name_is_valid(name) ? find_locked(st, name) : NULL;
	if (rec)
		rec->connections++;
	pthread_mutex_unlock(&st->cat_lock);
	if (!rec) {
		free(vol);
		return -ENOENT;
	}
	vol->st = st;
	vol->rec = rec;
	*out = vol;
	return 0;
}

void bal_vol_close(struct bal_volume *vol)
{
	struct bal_vstore *st;
	struct bal_vrec *rec;
	bool last;

	if (!vol)
		return;
	st = vol->st;
	rec = vol->rec;
	free(vol);
	pthread_mutex_lock(&st->cat_lock);
	rec->connections--;
	last = rec->connections == 0 && atomic_load(&rec->deleted);
	if (last)
		remove_locked(st, rec);
	pthread_mutex_unlock(&st->cat_lock);
	if (last)
		bal_vrec_destroy(st, rec, true);
}
