/* SPDX-License-Identifier: MIT */
/*
 * The map log: every change of a live mapping or an old version, in the
 * order it was made, waiting to be written to RocksDB by the sync thread.
 *
 * Why a log and not a RocksDB write per change: a redirected cluster holds
 * bytes copied from the old one, and its mapping must not become durable
 * before those bytes are.  The sync thread takes the log, runs the pool
 * fdatasync, then writes the log as one synced batch; so on disk the map
 * only ever points at durable copies, and changes reach RocksDB in order.
 * After a crash the changes of the last unfinished cycle are lost, which
 * only loses unflushed writes; the clusters they allocated are free at the
 * next open because the allocator is derived from the durable map.
 *
 * The log is one RocksDB write batch under a mutex; appending cannot fail
 * (RocksDB aborts when out of memory).  At BAL_LOG_MAX entries the sync
 * thread is woken to bound its memory.  Any thread.
 */
#include <stdlib.h>

#include "volume/volume_internal.h"

static void appended(struct bal_vstore *st)
{
	bool wake;

	if (st->log_n++ == 0)
		clock_gettime(CLOCK_MONOTONIC, &st->log_since);
	wake = st->log_n == BAL_LOG_MAX;
	pthread_mutex_unlock(&st->log_lock);
	if (wake) {
		pthread_mutex_lock(&st->sync_lock);
		pthread_cond_signal(&st->sync_cond);
		pthread_mutex_unlock(&st->sync_lock);
	}
}

/* Lock the log; make sure a batch exists. */
static struct bal_kv_batch *lock_log(struct bal_vstore *st)
{
	pthread_mutex_lock(&st->log_lock);
	if (!st->log) {
		st->log = bal_kv_batch_create();
		if (!st->log)
			abort();	/* as RocksDB itself does when out of memory */
	}
	return st->log;
}

void bal_log_put(struct bal_vstore *st, const void *k, size_t kl, const void *v, size_t vl)
{
	bal_kv_batch_put(lock_log(st), k, kl, v, vl);
	appended(st);
}

void bal_log_del(struct bal_vstore *st, const void *k, size_t kl)
{
	bal_kv_batch_delete(lock_log(st), k, kl);
	appended(st);
}

void bal_log_map_put(struct bal_vstore *st, uint64_t id, uint64_t lcl, const struct bal_xent *e)
{
	uint8_t key[BAL_MAP_KEY_LEN], val[BAL_MAP_VAL_LEN];

	bal_key_map(key, id, lcl);
	bal_map_val(val, e);
	bal_log_put(st, key, sizeof(key), val, sizeof(val));
}

void bal_log_map_del(struct bal_vstore *st, uint64_t id, uint64_t lcl)
{
	uint8_t key[BAL_MAP_KEY_LEN];

	bal_key_map(key, id, lcl);
	bal_log_del(st, key, sizeof(key));
}

void bal_log_ver_put(struct bal_vstore *st, uint64_t id, const struct bal_ver *v)
{
	uint8_t key[BAL_VER_KEY_LEN], val[BAL_MAP_VAL_LEN];
	struct bal_xent e = { .phys = v->phys, .birth = v->birth, .flags = v->flags };

	bal_key_ver(key, id, v->death, v->lcl);
	bal_map_val(val, &e);
	bal_log_put(st, key, sizeof(key), val, sizeof(val));
}

void bal_log_ver_del(struct bal_vstore *st, uint64_t id, uint32_t death, uint64_t lcl)
{
	uint8_t key[BAL_VER_KEY_LEN];

	bal_key_ver(key, id, death, lcl);
	bal_log_del(st, key, sizeof(key));
}

struct bal_kv_batch *bal_log_take(struct bal_vstore *st, size_t *n)
{
	struct bal_kv_batch *b;

	pthread_mutex_lock(&st->log_lock);
	b = st->log_n ? st->log : NULL;
	*n = st->log_n;
	if (b) {
		st->log = NULL;
		st->log_n = 0;
	}
	pthread_mutex_unlock(&st->log_lock);
	return b;
}

size_t bal_log_pending(struct bal_vstore *st, uint64_t *age_ms)
{
	struct timespec now;
	size_t n;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&st->log_lock);
	n = st->log_n;
	*age_ms = n ? (uint64_t)((now.tv_sec - st->log_since.tv_sec) * 1000 +
				 (now.tv_nsec - st->log_since.tv_nsec) / 1000000)
		    : 0;
	pthread_mutex_unlock(&st->log_lock);
	return n;
}

void bal_log_fini(struct bal_vstore *st)
{
	bal_kv_batch_destroy(st->log);
	st->log = NULL;
	st->log_n = 0;
}
