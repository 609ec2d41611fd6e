/* SPDX-License-Identifier: MIT */
/*
 * The catalog: creating, listing, resizing and deleting volumes, and the
 * handles (bal_vol_open/close) that count a volume's (or a snapshot's)
 * connections.  Control-plane changes are synced to RocksDB before they
 * return; those that touch a volume's map first flush the map log with the
 * volume locked, so their own batch lands after every earlier map change.
 * Catalog changes hold the store's ctl_lock.
 *
 * A forced delete of an open volume removes its records at once and marks
 * it deleted; the record stays in st->vols (invisible to names) until its
 * last handle closes, and only then do its clusters go back to the pool:
 * until then a handle may still have I/O in flight on them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "volume/keys_internal.h"
#include "volume/volume_internal.h"

size_t bal_vrec_encode(const struct bal_vrec *rec, uint64_t size, uint8_t *buf)
{
	size_t n = strlen(rec->name);

	bal_put_be64(buf, size);
	bal_put_be64(buf + 8, (uint64_t)rec->created_at);
	buf[16] = (uint8_t)n;
	memcpy(buf + 17, rec->name, n);
	if (!rec->parent)
		return 17 + n;
	bal_put_be64(buf + 17 + n, rec->parent_id);
	bal_put_be64(buf + 25 + n, rec->pepoch);
	bal_put_be64(buf + 33 + n, rec->plimit);
	return 41 + n;
}

int bal_vstore_write_synced(struct bal_vstore *st, struct bal_kv_batch *b)
{
	return bal_kv_write(st->kv, b, true);
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
	atomic_init(&rec->has_remote, false);
	pthread_mutex_init(&rec->lock, NULL);
	bal_xmap_init(&rec->map);
	bal_vers_init(&rec->vers);
	rec->epoch = 1;
	*out = rec;
	return 0;
}

int bal_vrec_decode(const void *key, size_t klen, const void *val, size_t vlen,
		    struct bal_vrec **out)
{
	const uint8_t *v = val;
	char name[BAL_NAME_MAX + 1];
	uint64_t size, pepoch;
	size_t n;
	int ret;

	if (klen != BAL_VOL_KEY_LEN || vlen < 17 || v[16] > BAL_NAME_MAX)
		goto bad;
	n = v[16];
	if (vlen != 17 + n && vlen != 41 + n)
		goto bad;
	memcpy(name, v + 17, n);
	name[n] = '\0';
	size = bal_get_be64(v);
	if (!bal_name_is_valid(name) || !size || size % BAL_VOL_ALIGN ||
	    size > BAL_VOL_SIZE_MAX)
		goto bad;
	ret = bal_vrec_create(name, bal_get_be64((const uint8_t *)key + 1), size,
			      (int64_t)bal_get_be64(v + 8), out);
	if (ret || vlen == 17 + n)
		return ret;
	/* A clone: linked to its parent once the snapshots are loaded. */
	pepoch = bal_get_be64(v + 25 + n);
	(*out)->parent_id = bal_get_be64(v + 17 + n);
	(*out)->plimit = bal_get_be64(v + 33 + n);
	if ((*out)->parent_id && pepoch && pepoch < BAL_EPOCH_LIVE) {
		(*out)->pepoch = (uint32_t)pepoch;
		return 0;
	}
	bal_vrec_destroy(NULL, *out, false);
bad:
	bal_err("catalog: malformed volume record");
	return -EUCLEAN;
}

static void release_ver(void *arg, const struct bal_ver *v)
{
	if (v->phys != BAL_PHYS_NONE)
		bal_pool_release(arg, v->phys);
}

void bal_vrec_destroy(struct bal_vstore *st, struct bal_vrec *rec, bool release)
{
	struct bal_xent e;
	uint64_t lcl = 0, found;

	if (release && st) {
		while (bal_xmap_next(&rec->map, lcl, &found, &e)) {
			if (bal_xent_owns(&e))
				bal_pool_release(st->pool, e.phys);
			lcl = found + 1;
		}
		bal_vers_foreach(&rec->vers, release_ver, st->pool);
	}
	for (size_t i = 0; i < rec->nsnaps; i++)
		free(rec->snaps[i]);
	free(rec->snaps);
	bal_vers_fini(&rec->vers);
	bal_xmap_fini(&rec->map);
	bal_vkey_destroy(rec->key);
	bal_vremote_destroy(rec->remote);
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

void bal_vstore_remove_locked(struct bal_vstore *st, struct bal_vrec *rec)
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

struct bal_vrec *bal_vstore_find_locked(struct bal_vstore *st, const char *name)
{
	for (size_t i = 0; i < st->nvols; i++) {
		if (!atomic_load(&st->vols[i]->deleted) && !strcmp(st->vols[i]->name, name))
			return st->vols[i];
	}
	return NULL;
}

bool bal_vol_size_is_valid(uint64_t size)
{
	return size && size % BAL_VOL_ALIGN == 0 && size <= BAL_VOL_SIZE_MAX;
}

int bal_vstore_create(struct bal_vstore *st, const char *name, uint64_t size)
{
	struct bal_vol_create_opts o = {
		.opts_size = sizeof(o), .name = name, .size = size, .enc = BAL_ENC_DEFAULT,
	};

	return bal_vstore_create_opts(st, &o);
}

int bal_vstore_create_opts(struct bal_vstore *st, const struct bal_vol_create_opts *o)
{
	uint8_t key[BAL_VOL_KEY_LEN], val[17 + BAL_NAME_MAX], next[8];
	const uint8_t ikey = BAL_KEY_NEXT_ID;
	struct bal_kv_batch *b;
	const struct bal_xts_key *import_key = NULL;
	const struct bal_vol_remote *remote = NULL;
	struct bal_vrec *rec;
	enum bal_enc enc;
	const char *name;
	uint64_t size;
	int ret;

	if (!o || o->opts_size < offsetof(struct bal_vol_create_opts, customer_key) +
				 sizeof(o->customer_key))
		return -EINVAL;
	name = o->name;
	size = o->size;
	enc = bal_vkey_resolve(st, o->enc);
	if (o->opts_size >= offsetof(struct bal_vol_create_opts, remote) + sizeof(o->remote)) {
		import_key = o->import_key;
		remote = o->remote;
	}
	if (import_key && o->enc != BAL_ENC_SERVICE)
		return -EINVAL;
	if (!name || !bal_name_is_valid(name) || !bal_vol_size_is_valid(size) ||
	    enc > BAL_ENC_CUSTOMER || (enc == BAL_ENC_CUSTOMER && !o->customer_key) ||
	    (enc != BAL_ENC_NONE && size % BAL_ENC_ALIGN))
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	pthread_mutex_lock(&st->cat_lock);
	if (bal_vstore_find_locked(st, name)) {
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
	/* The key record goes in the same synced batch as the volume's. */
	ret = bal_vkey_create(st, rec, enc, o->customer_key, import_key, b);
	if (!ret && remote)
		ret = bal_vremote_create(rec, remote, b);
	if (ret) {
		bal_kv_batch_destroy(b);
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
	bal_info("volume %s: created, id %" PRIu64 ", %" PRIu64 " bytes%s%s", name, rec->id, size,
		 enc == BAL_ENC_NONE ? "" : ", encrypted", remote ? ", reading from the object tier" : "");
	goto out_unlock;
err_remove:
	bal_vstore_remove_locked(st, rec);
err_destroy:
	bal_vrec_destroy(st, rec, false);
out_unlock:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

/* Catalog lock held. */
static void fill_info(struct bal_vrec *rec, struct bal_vol_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", rec->name);
	out->id = rec->id;
	out->created_at = rec->created_at;
	out->connections = rec->connections - rec->internal;
	pthread_mutex_lock(&rec->lock);
	out->size = atomic_load(&rec->size);
	/* Only -ENOMEM: the parent's share is then left out. */
	bal_vrec_space(rec, &out->allocated, &out->exclusive, &out->shared);
	for (size_t i = 0; i < rec->nsnaps; i++)
		out->snapshots += rec->snaps[i]->ready;
	if (rec->parent)
		snprintf(out->parent, sizeof(out->parent), "%s@%s", rec->parent->name,
			 rec->psnap->name);
	out->remote = rec->remote != NULL;
	out->index_bytes = bal_vrec_index_mem(rec);
	pthread_mutex_unlock(&rec->lock);
	bal_vkey_info(rec, out);
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
	rec = bal_vstore_find_locked(st, name);
	if (rec)
		fill_info(rec, out);
	else
		ret = -ENOENT;
	pthread_mutex_unlock(&st->cat_lock);
	return ret;
}

/* Find "VOL" or "VOL@SNAP" and count the handle (catalog lock held). */
static int open_locked(struct bal_vstore *st, const char *name, struct bal_volume *vol)
{
	char vname[BAL_NAME_MAX + 1];
	const char *at = strchr(name, '@');
	struct bal_vrec *rec;
	struct bal_snap *sn = NULL;
	size_t n = at ? (size_t)(at - name) : strlen(name);

	if (n > BAL_NAME_MAX)
		return -ENOENT;
	memcpy(vname, name, n);
	vname[n] = '\0';
	if (!bal_name_is_valid(vname) || (at && !bal_name_is_valid(at + 1)))
		return -ENOENT;
	rec = bal_vstore_find_locked(st, vname);
	if (!rec)
		return -ENOENT;
	if (at) {
		/* A snapshot uses its volume's key. */
		pthread_mutex_lock(&rec->lock);
		sn = bal_vrec_find_snap(rec, at + 1);
		if (sn && !sn->ready)
			sn = NULL;
		if (sn && !bal_vkey_open_check(rec))
			sn->connections++;
		pthread_mutex_unlock(&rec->lock);
		if (!sn)
			return -ENOENT;
	}
	if (bal_vkey_open_check(rec))
		return -ENOKEY;
	if (!at) {
		rec->connections++;
		rec->internal += vol->internal;
	}
	vol->rec = rec;
	vol->snap = sn;
	snprintf(vol->name, sizeof(vol->name), "%s", name);
	return 0;
}

static int vol_open(struct bal_vstore *st, const char *name, bool internal,
		    struct bal_volume **out)
{
	struct bal_volume *vol;
	int ret;

	if (!name)
		return -ENOENT;
	vol = calloc(1, sizeof(*vol));
	if (!vol)
		return -ENOMEM;
	vol->st = st;
	vol->internal = internal;
	pthread_mutex_lock(&st->cat_lock);
	ret = open_locked(st, name, vol);
	pthread_mutex_unlock(&st->cat_lock);
	if (ret) {
		free(vol);
		return ret;
	}
	*out = vol;
	return 0;
}

int bal_vol_open(struct bal_vstore *st, const char *name, struct bal_volume **out)
{
	return vol_open(st, name, false, out);
}

int bal_vol_open_internal(struct bal_vstore *st, const char *name, struct bal_volume **out)
{
	return vol_open(st, name, true, out);
}

void bal_vol_close(struct bal_volume *vol)
{
	struct bal_vstore *st;
	struct bal_vrec *rec;
	bool last = false;

	if (!vol)
		return;
	st = vol->st;
	rec = vol->rec;
	pthread_mutex_lock(&st->cat_lock);
	if (vol->snap) {
		pthread_mutex_lock(&rec->lock);
		vol->snap->connections--;
		pthread_mutex_unlock(&rec->lock);
	} else {
		rec->connections--;
		rec->internal -= vol->internal;
		last = rec->connections == 0 && atomic_load(&rec->deleted);
		if (last)
			bal_vstore_remove_locked(st, rec);
	}
	pthread_mutex_unlock(&st->cat_lock);
	free(vol);
	if (last)
		bal_vrec_destroy(st, rec, true);
}
