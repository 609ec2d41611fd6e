/* SPDX-License-Identifier: MIT */
/*
 * The volume store: opening a data directory (lock, RocksDB, pool) and
 * rebuilding the catalog, the snapshots, every volume's live index and old
 * versions, and the allocator from RocksDB; closing it.  The allocator
 * counts live mappings and old versions as used; a cluster referenced
 * twice is corruption (-EUCLEAN).  A volume's current epoch is derived:
 * past its newest snapshot and at least every birth and death recorded.
 * Start-up and shutdown run on the caller's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "volume/keys_internal.h"
#include "volume/volume_internal.h"

int bal_vstore_pool_fd(const struct bal_vstore *st)
{
	return bal_pool_fd(st->pool);
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0 || fsync(fd) < 0) {
		ret = -errno;
		bal_err("store: fsync %s: %s", path, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Create the directory if missing (then make its entry durable), lock it. */
static int open_dir(struct bal_vstore *st)
{
	char *parent;
	int ret;

	if (mkdir(st->dir, 0700) == 0) {
		parent = strdup(st->dir);
		if (!parent)
			return -ENOMEM;
		ret = fsync_path(dirname(parent));
		free(parent);
		if (ret)
			return ret;
	} else if (errno != EEXIST) {
		ret = -errno;
		bal_err("store %s: mkdir: %s", st->dir, strerror(errno));
		return ret;
	}
	st->dir_fd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dir_fd < 0) {
		ret = -errno;
		bal_err("store %s: open: %s", st->dir, strerror(errno));
		return ret;
	}
	st->lock_fd = openat(st->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lock_fd < 0) {
		ret = -errno;
		bal_err("store %s: open lock: %s", st->dir, strerror(errno));
		return ret;
	}
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		bal_err("store %s: lock: %s", st->dir,
			ret == -EBUSY ? "in use by another process" : strerror(errno));
		return ret;
	}
	return 0;
}

/* Check or write the format record; set next_id. */
static int load_format(struct bal_vstore *st)
{
	const uint8_t fkey = BAL_KEY_FORMAT, ikey = BAL_KEY_NEXT_ID;
	uint8_t fval[6], ival[8];
	struct bal_kv_batch *b;
	struct bal_kv_iter *it;
	size_t vlen;
	void *v;
	bool empty;
	int ret;

	ret = bal_kv_get(st->kv, &fkey, 1, &v, &vlen);
	if (ret == 0) {
		const uint8_t *f = v;

		if (vlen != 6 || memcmp(f, BAL_FORMAT_MAGIC, 4) || f[4] != BAL_FORMAT_VERSION ||
		    f[5] != BAL_CLUSTER_SHIFT) {
			bal_err("store %s: database has an unsupported format", st->dir);
			free(v);
			return -EUCLEAN;
		}
		free(v);
		ret = bal_kv_get(st->kv, &ikey, 1, &v, &vlen);
		if (ret == 0 && vlen != 8)
			ret = -EUCLEAN;
		if (ret) {
			if (ret != -ENOMEM)
				bal_err("store %s: next volume id missing or malformed", st->dir);
			if (ret == 0)
				free(v);
			return ret == -ENOENT ? -EUCLEAN : ret;
		}
		st->next_id = bal_get_be64(v);
		free(v);
		return 0;
	}
	if (ret != -ENOENT)
		return ret;
	ret = bal_kv_iter_create(st->kv, "", 0, NULL, 0, &it);
	if (ret)
		return ret;
	empty = !bal_kv_iter_valid(it);
	bal_kv_iter_destroy(it);
	if (!empty) {
		bal_err("store %s: database has no format record", st->dir);
		return -EUCLEAN;
	}
	memcpy(fval, BAL_FORMAT_MAGIC, 4);
	fval[4] = BAL_FORMAT_VERSION;
	fval[5] = BAL_CLUSTER_SHIFT;
	st->next_id = 1;
	bal_put_be64(ival, st->next_id);
	b = bal_kv_batch_create();
	if (!b)
		return -ENOMEM;
	bal_kv_batch_put(b, &fkey, 1, fval, sizeof(fval));
	bal_kv_batch_put(b, &ikey, 1, ival, sizeof(ival));
	ret = bal_kv_write(st->kv, b, true);
	bal_kv_batch_destroy(b);
	return ret;
}

static int load_vol(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
	struct bal_vstore *st = arg;
	struct bal_vrec *rec;
	int ret;

	ret = bal_vrec_decode(k, kl, v, vl, &rec);
	if (ret)
		return ret;
	ret = bal_vstore_add_locked(st, rec);
	if (ret) {
		bal_vrec_destroy(st, rec, false);
		return ret;
	}
	if (rec->id >= st->next_id) {
		bal_warn("store %s: volume id %" PRIu64 " past the next id", st->dir, rec->id);
		st->next_id = rec->id + 1;
	}
	return 0;
}

static int load_catalog(struct bal_vstore *st)
{
	const uint8_t lo = BAL_KEY_VOL, hi = BAL_KEY_VOL + 1;

	return bal_kv_scan(st->kv, &lo, 1, &hi, 1, load_vol, st);
}

/* Volumes are loaded in id order: binary search. */
struct bal_vrec *bal_vstore_find_id(struct bal_vstore *st, uint64_t id)
{
	size_t lo = 0, hi = st->nvols;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (st->vols[mid]->id == id)
			return st->vols[mid];
		if (st->vols[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct load_ctx {
	struct bal_vstore *st;
	struct bal_kv_batch *orphans;
	uint64_t n, nzero;
};

static int load_map(void *arg, const void *key, size_t kl, const void *val, size_t vl)
{
	struct load_ctx *c = arg;
	const uint8_t *k = key, *v = val;
	struct bal_xent e;
	struct bal_vrec *rec;
	uint64_t id, lcl, birth;
	int ret;

	if (kl != BAL_MAP_KEY_LEN || vl != BAL_MAP_VAL_LEN) {
		bal_err("store %s: malformed extent record", c->st->dir);
		return -EUCLEAN;
	}
	id = bal_get_be64(k + 1);
	lcl = bal_get_be64(k + 9);
	rec = bal_vstore_find_id(c->st, id);
	if (!rec || lcl >= bal_size_clusters(rec->size)) {
		/* Left by a crash between a catalog and a map change. */
		bal_kv_batch_delete(c->orphans, k, kl);
		return 0;
	}
	e.phys = bal_get_be64(v);
	birth = bal_get_be64(v + 8);
	e.flags = bal_get_be32(v + 16);
	if (birth >= BAL_EPOCH_LIVE) {
		bal_err("store %s: volume %s: birth epoch out of range", c->st->dir,
			rec->name);
		return -EUCLEAN;
	}
	e.birth = (uint32_t)birth;
	if (bal_xent_owns(&e)) {
		ret = bal_pool_mark_used(c->st->pool, e.phys);
		if (ret)
			return ret;
	}
	/*
	 * A ZERO cluster is written in place on its next write, so it must
	 * hold zeroes; after a crash it may hold the bytes of a write whose
	 * map change (clearing the flag) was lost.
	 */
	if (bal_xent_owns(&e) && (e.flags & BAL_XENT_ZERO)) {
		ret = bal_pool_zero(c->st->pool, e.phys << BAL_CLUSTER_SHIFT,
				    BAL_CLUSTER_SIZE, false);
		if (ret)
			return ret;
		c->nzero++;
	}
	if (e.birth > rec->epoch)
		rec->epoch = e.birth;
	ret = bal_xmap_set(&rec->map, lcl, &e);
	if (ret)
		return ret;
	c->n++;
	return 0;
}

/* Rebuild every index and the used clusters; drop orphan map entries. */
static int load_maps(struct bal_vstore *st)
{
	const uint8_t lo = BAL_KEY_MAP, hi = BAL_KEY_MAP + 1;
	struct load_ctx c = { .st = st };
	int ret;

	c.orphans = bal_kv_batch_create();
	if (!c.orphans)
		return -ENOMEM;
	ret = bal_kv_scan(st->kv, &lo, 1, &hi, 1, load_map, &c);
	if (ret)
		goto out_batch;
	if (bal_kv_batch_count(c.orphans)) {
		bal_warn("store %s: dropping %zu orphan extent records", st->dir,
			 bal_kv_batch_count(c.orphans));
		ret = bal_kv_write(st->kv, c.orphans, true);
	}
	bal_info("store %s: %zu volumes, %" PRIu64 " mapped clusters (%" PRIu64 " zeroed)",
		 st->dir, st->nvols, c.n, c.nzero);
out_batch:
	bal_kv_batch_destroy(c.orphans);
	return ret;
}

static int open_files(struct bal_vstore *st)
{
	char *path;
	int ret;

	if (asprintf(&path, "%s/db", st->dir) < 0)
		return -ENOMEM;
	ret = bal_kv_open(path, &st->kv);
	free(path);
	if (ret)
		return ret;
	if (asprintf(&path, "%s/pool", st->dir) < 0)
		return -ENOMEM;
	ret = bal_pool_open(path, &st->pool);
	free(path);
	if (ret)
		return ret;
	if (fsync(st->dir_fd) < 0) {
		ret = -errno;
		bal_err("store %s: fsync: %s", st->dir, strerror(errno));
	}
	return ret;
}

int bal_vstore_open(const struct bal_vstore_opts *opts, struct bal_vstore **out)
{
	struct bal_vstore *st;
	int ret;

	if (!opts || opts->opts_size < offsetof(struct bal_vstore_opts, dir) + sizeof(opts->dir) ||
	    !opts->dir || !opts->dir[0])
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->dir_fd = -1;
	st->lock_fd = -1;
	st->sync_tail = &st->sync_head;
	pthread_mutex_init(&st->ctl_lock, NULL);
	pthread_mutex_init(&st->cat_lock, NULL);
	pthread_mutex_init(&st->log_lock, NULL);
	pthread_mutex_init(&st->grace_lock, NULL);
	pthread_mutex_init(&st->freeze_lock, NULL);
	pthread_mutex_init(&st->sync_lock, NULL);
	/* Older callers' opts end before the key fields. */
	if (opts->opts_size >= offsetof(struct bal_vstore_opts, encrypt_by_default) +
				       sizeof(opts->encrypt_by_default)) {
		st->master = opts->master;
		st->encrypt_by_default = opts->encrypt_by_default;
	}
	st->dir = strdup(opts->dir);
	if (!st->dir) {
		ret = -ENOMEM;
		goto err_close;
	}
	ret = open_dir(st);
	if (ret)
		goto err_close;
	ret = open_files(st);
	if (ret)
		goto err_close;
	ret = load_format(st);
	if (ret)
		goto err_close;
	ret = load_catalog(st);
	if (ret)
		goto err_close;
	ret = bal_vstore_load_keys(st);
	if (ret)
		goto err_close;
	ret = bal_vstore_load_remote(st);
	if (ret)
		goto err_close;
	ret = bal_vstore_load_snaps(st);
	if (ret)
		goto err_close;
	ret = load_maps(st);
	if (ret)
		goto err_close;
	ret = bal_vstore_load_vers(st);
	if (ret)
		goto err_close;
	ret = bal_pool_start(st->pool);
	if (ret)
		goto err_close;
	ret = bal_vstore_sync_start(st);
	if (ret)
		goto err_close;
	*out = st;
	return 0;
err_close:
	bal_vstore_close(st);
	return ret;
}

void bal_vstore_close(struct bal_vstore *st)
{
	if (!st)
		return;
	bal_vstore_sync_stop(st);
	for (size_t i = 0; i < st->nvols; i++) {
		if (st->vols[i]->connections)
			bal_warn("store %s: volume %s closed with %u open handles", st->dir,
				 st->vols[i]->name, st->vols[i]->connections);
		bal_vrec_destroy(st, st->vols[i], false);
	}
	free(st->vols);
	bal_log_fini(st);
	bal_kv_close(st->kv);
	bal_pool_close(st->pool);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	if (st->dir_fd >= 0)
		close(st->dir_fd);
	pthread_mutex_destroy(&st->sync_lock);
	pthread_mutex_destroy(&st->freeze_lock);
	pthread_mutex_destroy(&st->grace_lock);
	pthread_mutex_destroy(&st->log_lock);
	pthread_mutex_destroy(&st->cat_lock);
	pthread_mutex_destroy(&st->ctl_lock);
	free(st->dir);
	free(st);
}
