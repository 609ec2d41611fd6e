/* SPDX-License-Identifier: MIT */
/*
 * RocksDB behind the bal_kv_ wrapper.  One database, default column family,
 * WAL on, point-in-time recovery of the WAL after a crash.  Errors are
 * logged here with RocksDB's message and returned as -EIO.
 */
#include "volume/kv.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "common/log.h"

struct bal_kv {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_writeoptions_t *wo_nosync;
	rocksdb_writeoptions_t *wo_sync;
	rocksdb_readoptions_t *ro;
	char *path;
};

struct bal_kv_batch {
	rocksdb_writebatch_t *wb;
};

struct bal_kv_iter {
	rocksdb_iterator_t *it;
	rocksdb_readoptions_t *ro;
	char *hi;		/* upper bound; must outlive the iterator */
};

static atomic_uint fail_countdown;

void bal_kv_fail_write_after(unsigned nth)
{
	atomic_store(&fail_countdown, nth);
}

/* True when an armed countdown reaches this write. */
static bool injected_failure(void)
{
	unsigned v = atomic_load(&fail_countdown);

	while (v > 0) {
		if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1))
			return v == 1;
	}
	return false;
}

static int kv_error(const char *what, const char *path, char *err)
{
	bal_err("kv %s: %s: %s", path, what, err);
	rocksdb_free(err);
	return -EIO;
}

int bal_kv_open(const char *path, struct bal_kv **out)
{
	struct bal_kv *kv;
	char *err = NULL;

	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	kv->path = strdup(path);
	if (!kv->path) {
		free(kv);
		return -ENOMEM;
	}
	kv->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(kv->opts, 1);
	rocksdb_options_set_paranoid_checks(kv->opts, 1);
	rocksdb_options_set_keep_log_file_num(kv->opts, 4);
	rocksdb_options_set_max_log_file_size(kv->opts, 4 << 20);
	rocksdb_options_set_info_log_level(kv->opts, 2 /* WARN */);
	rocksdb_options_set_wal_recovery_mode(kv->opts, 2 /* point in time */);
	rocksdb_options_set_compression(kv->opts, rocksdb_no_compression);
	kv->wo_nosync = rocksdb_writeoptions_create();
	kv->wo_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(kv->wo_sync, 1);
	kv->ro = rocksdb_readoptions_create();
	kv->db = rocksdb_open(kv->opts, path, &err);
	if (err) {
		kv_error("open", path, err);
		kv->db = NULL;
		bal_kv_close(kv);
		return -EIO;
	}
	*out = kv;
	return 0;
}

void bal_kv_close(struct bal_kv *kv)
{
	if (!kv)
		return;
	if (kv->db)
		rocksdb_close(kv->db);
	rocksdb_readoptions_destroy(kv->ro);
	rocksdb_writeoptions_destroy(kv->wo_sync);
	rocksdb_writeoptions_destroy(kv->wo_nosync);
	rocksdb_options_destroy(kv->opts);
	free(kv->path);
	free(kv);
}

int bal_kv_get(struct bal_kv *kv, const void *key, size_t klen, void **val,
	       size_t *vlen)
{
	char *err = NULL;
	char *v;
	size_t n;

	v = rocksdb_get(kv->db, kv->ro, key, klen, &n, &err);
	if (err)
		return kv_error("get", kv->path, err);
	if (!v)
		return -ENOENT;
	/* Copy so the caller frees with free(), whatever RocksDB allocates with. */
	*val = malloc(n ? n : 1);
	if (!*val) {
		rocksdb_free(v);
		return -ENOMEM;
	}
	memcpy(*val, v, n);
	rocksdb_free(v);
	*vlen = n;
	return 0;
}

int bal_kv_sync(struct bal_kv *kv)
{
	char *err = NULL;

	rocksdb_flush_wal(kv->db, 1, &err);
	if (err)
		return kv_error("WAL sync", kv->path, err);
	return 0;
}

struct bal_kv_batch *bal_kv_batch_create(void)
{
	struct bal_kv_batch *b = malloc(sizeof(*b));

	if (!b)
		return NULL;
	b->wb = rocksdb_writebatch_create();
	return b;
}

void bal_kv_batch_destroy(struct bal_kv_batch *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

void bal_kv_batch_put(struct bal_kv_batch *b, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	rocksdb_writebatch_put(b->wb, key, klen, val, vlen);
}

void bal_kv_batch_delete(struct bal_kv_batch *b, const void *key, size_t klen)
{
	rocksdb_writebatch_delete(b->wb, key, klen);
}

void bal_kv_batch_delete_range(struct bal_kv_batch *b, const void *start,
			       size_t slen, const void *end, size_t elen)
{
	rocksdb_writebatch_delete_range(b->wb, start, slen, end, elen);
}

size_t bal_kv_batch_count(const struct bal_kv_batch *b)
{
	return (size_t)rocksdb_writebatch_count(b->wb);
}

int bal_kv_write(struct bal_kv *kv, struct bal_kv_batch *b, bool sync)
{
	char *err = NULL;

	if (injected_failure()) {
		bal_err("kv %s: write: injected failure", kv->path);
		return -EIO;
	}
	rocksdb_write(kv->db, sync ? kv->wo_sync : kv->wo_nosync, b->wb, &err);
	if (err)
		return kv_error("write", kv->path, err);
	return 0;
}

int bal_kv_iter_create(struct bal_kv *kv, const void *lo, size_t lolen,
		       const void *hi, size_t hilen, struct bal_kv_iter **out)
{
	struct bal_kv_iter *it;

	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_fill_cache(it->ro, 0);
	if (hi) {
		it->hi = malloc(hilen ? hilen : 1);
		if (!it->hi) {
			rocksdb_readoptions_destroy(it->ro);
			free(it);
			return -ENOMEM;
		}
		memcpy(it->hi, hi, hilen);
		rocksdb_readoptions_set_iterate_upper_bound(it->ro, it->hi, hilen);
	}
	it->it = rocksdb_create_iterator(kv->db, it->ro);
	rocksdb_iter_seek(it->it, lo, lolen);
	*out = it;
	return 0;
}

void bal_kv_iter_destroy(struct bal_kv_iter *it)
{
	if (!it)
		return;
	rocksdb_iter_destroy(it->it);
	rocksdb_readoptions_destroy(it->ro);
	free(it->hi);
	free(it);
}

bool bal_kv_iter_valid(const struct bal_kv_iter *it)
{
	return rocksdb_iter_valid(it->it);
}

void bal_kv_iter_next(struct bal_kv_iter *it)
{
	rocksdb_iter_next(it->it);
}

const void *bal_kv_iter_key(const struct bal_kv_iter *it, size_t *len)
{
	return rocksdb_iter_key(it->it, len);
}

const void *bal_kv_iter_value(const struct bal_kv_iter *it, size_t *len)
{
	return rocksdb_iter_value(it->it, len);
}

int bal_kv_iter_status(const struct bal_kv_iter *it)
{
	char *err = NULL;

	rocksdb_iter_get_error(it->it, &err);
	if (err)
		return kv_error("iterate", "db", err);
	return 0;
}

int bal_kv_scan(struct bal_kv *kv, const void *lo, size_t lolen, const void *hi, size_t hilen,
		int (*cb)(void *arg, const void *k, size_t kl, const void *v, size_t vl),
		void *arg)
{
	struct bal_kv_iter *it;
	int ret;

	ret = bal_kv_iter_create(kv, lo, lolen, hi, hilen, &it);
	if (ret)
		return ret;
	for (; bal_kv_iter_valid(it) && !ret; bal_kv_iter_next(it)) {
		const void *k, *v;
		size_t kl, vl;

		k = bal_kv_iter_key(it, &kl);
		v = bal_kv_iter_value(it, &vl);
		ret = cb(arg, k, kl, v, vl);
	}
	if (!ret)
		ret = bal_kv_iter_status(it);
	bal_kv_iter_destroy(it);
	return ret;
}
