/* SPDX-License-Identifier: MIT */
/*
 * Resizing and deleting volumes.
 *
 * A shrink goes through the map log like any other map change: the tail of
 * the last cluster is zeroed (redirected if shared), the clusters past the
 * end are unmapped (shared ones become old versions), then the volume
 * record with the new size is appended, and the log is synced.  A clone's
 * parent limit shrinks with it, so growing again shows zeroes.
 *
 * A delete first flushes the map log with the volume locked, then removes
 * every key of the volume (record, map, old versions, snapshots) in one
 * synced batch.  A forced delete of an open volume marks it deleted; its
 * record stays in st->vols (invisible to names) until its last handle
 * closes, and only then do its clusters go back to the pool: until then a
 * handle may still have I/O in flight on them.
 *
 * Control-plane thread; ctl_lock held throughout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "volume/keys_internal.h"
#include "volume/volume_internal.h"

/* Volume locked: shrink the map of @rec from @old to @size bytes. */
static int shrink_locked(struct bal_vstore *st, struct bal_vrec *rec, uint64_t old,
			 uint64_t size)
{
	uint64_t ncl = bal_size_clusters(size);
	int ret = 0;

	/* A partial last cluster still in the object tier cannot be cut yet. */
	if (size % BAL_CLUSTER_SIZE && bal_vrec_is_remote(rec, ncl - 1))
		return -EINPROGRESS;
	/* Past the new end must read as zeroes if the volume grows again. */
	if (size % BAL_CLUSTER_SIZE)
		ret = bal_vrec_zero_partial(st, rec, ncl - 1, size, ncl << BAL_CLUSTER_SHIFT, true);
	if (ret)
		return ret;
	if (rec->plimit > ncl)
		rec->plimit = ncl;
	bal_vremote_shrink(st, rec, ncl);
	return bal_vrec_unmap(st, rec, ncl, bal_size_clusters(old));
}

int bal_vstore_resize(struct bal_vstore *st, const char *name, uint64_t size, bool force)
{
	uint8_t key[BAL_VOL_KEY_LEN], val[BAL_VREC_VAL_MAX];
	struct bal_vrec *rec;
	uint64_t old;
	int ret;

	if (!bal_vol_size_is_valid(size))
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	pthread_mutex_lock(&st->cat_lock);
	rec = bal_name_is_valid(name) ? bal_vstore_find_locked(st, name) : NULL;
	ret = -ENOENT;
	if (!rec)
		goto out_cat;
	pthread_mutex_lock(&rec->lock);
	old = atomic_load(&rec->size);
	/* Encrypted volumes stay whole XTS data units. */
	ret = bal_vkey_check_size(rec, size);
	if (ret || size == old)
		goto out_rec;
	ret = -EPERM;
	if (size < old && !force)
		goto out_rec;
	ret = size < old ? shrink_locked(st, rec, old, size) : 0;
	if (ret)
		goto out_rec;
	bal_key_vol(key, rec->id);
	bal_log_put(st, key, sizeof(key), val, bal_vrec_encode(rec, size, val));
	atomic_store(&rec->size, size);
	pthread_mutex_unlock(&rec->lock);
	pthread_mutex_unlock(&st->cat_lock);
	ret = bal_vstore_sync(st);
	if (!ret)
		bal_info("volume %s: resized from %" PRIu64 " to %" PRIu64 " bytes", name, old,
			 size);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
out_rec:
	pthread_mutex_unlock(&rec->lock);
out_cat:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

/* Volume locked: why @rec cannot be deleted now, or 0. */
static int check_delete(const struct bal_vrec *rec, bool force, bool recursive)
{
	if (rec->nsnaps && !recursive)
		return -ENOTEMPTY;
	for (size_t i = 0; i < rec->nsnaps; i++) {
		if (rec->snaps[i]->clones || rec->snaps[i]->connections)
			return -EBUSY;
	}
	if (rec->connections > rec->internal && !force)
		return -EBUSY;
	return 0;
}

/* Delete every key of volume @id in [prefix id, prefix id+1). */
static void delete_keys(struct bal_kv_batch *b, uint8_t prefix, uint64_t id)
{
	uint8_t lo[9], hi[9];

	/* Ids never reach UINT64_MAX: the range of @id ends at id + 1. */
	lo[0] = hi[0] = prefix;
	bal_put_be64(lo + 1, id);
	bal_put_be64(hi + 1, id + 1);
	bal_kv_batch_delete_range(b, lo, sizeof(lo), hi, sizeof(hi));
}

int bal_vstore_delete(struct bal_vstore *st, const char *name, bool force, bool recursive)
{
	uint8_t key[BAL_VOL_KEY_LEN];
	struct bal_kv_batch *b;
	struct bal_vrec *rec;
	bool now;
	int ret;

	pthread_mutex_lock(&st->ctl_lock);
	pthread_mutex_lock(&st->cat_lock);
	rec = bal_name_is_valid(name) ? bal_vstore_find_locked(st, name) : NULL;
	ret = -ENOENT;
	if (!rec)
		goto out_unlock;
	pthread_mutex_lock(&rec->lock);
	ret = check_delete(rec, force, recursive);
	/* Earlier map changes of the volume must not land after its deletion. */
	if (!ret)
		ret = bal_vstore_sync(st);
	b = NULL;
	if (!ret) {
		ret = -ENOMEM;
		b = bal_kv_batch_create();
	}
	if (b) {
		bal_key_vol(key, rec->id);
		bal_kv_batch_delete(b, key, sizeof(key));
		delete_keys(b, BAL_KEY_MAP, rec->id);
		delete_keys(b, BAL_KEY_VER, rec->id);
		delete_keys(b, BAL_KEY_SNAP, rec->id);
		delete_keys(b, BAL_KEY_VKEY, rec->id);
		bal_vremote_delete_key(b, rec->id);
		ret = bal_vstore_write_synced(st, b);
		bal_kv_batch_destroy(b);
	}
	if (ret == 0) {
		atomic_store(&rec->deleted, true);
		if (rec->parent) {
			pthread_mutex_lock(&rec->parent->lock);
			rec->psnap->clones--;
			pthread_mutex_unlock(&rec->parent->lock);
			rec->parent = NULL;
		}
	}
	pthread_mutex_unlock(&rec->lock);
	if (ret)
		goto out_unlock;
	now = rec->connections == 0;
	if (now)
		bal_vstore_remove_locked(st, rec);
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	bal_info("volume %s: deleted%s", name, now ? "" : ", clusters freed at last close");
	if (now)
		bal_vrec_destroy(st, rec, true);
	return 0;
out_unlock:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}
