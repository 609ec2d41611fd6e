/* SPDX-License-Identifier: MIT */
/*
 * Key-value store wrapper: the only place that speaks RocksDB.  Keys are
 * ordered bytewise.  Writes go through the WAL; an unsynced write becomes
 * durable at the next bal_kv_sync() or synced write.
 *
 * Threads: every function is safe from any thread (RocksDB serialises
 * writers itself); a batch or iterator belongs to one thread.
 */
#ifndef BAL_KV_H
#define BAL_KV_H

#include <stdbool.h>
#include <stddef.h>

struct bal_kv;
struct bal_kv_batch;
struct bal_kv_iter;

/* Open (creating if missing) the database in directory @path. */
int bal_kv_open(const char *path, struct bal_kv **out);
void bal_kv_close(struct bal_kv *kv);

/* Read one key.  *val is malloc'ed (caller frees).  -ENOENT if absent. */
int bal_kv_get(struct bal_kv *kv, const void *key, size_t klen, void **val,
	       size_t *vlen);

/* Sync the WAL: every write that returned before this call is durable. */
int bal_kv_sync(struct bal_kv *kv);

/* Write batches: built by one thread, applied atomically. */
struct bal_kv_batch *bal_kv_batch_create(void);
void bal_kv_batch_destroy(struct bal_kv_batch *b);
void bal_kv_batch_put(struct bal_kv_batch *b, const void *key, size_t klen,
		      const void *val, size_t vlen);
void bal_kv_batch_delete(struct bal_kv_batch *b, const void *key, size_t klen);
/* Delete every key in [start, end). */
void bal_kv_batch_delete_range(struct bal_kv_batch *b, const void *start,
			       size_t slen, const void *end, size_t elen);
size_t bal_kv_batch_count(const struct bal_kv_batch *b);
/* Apply @b; with @sync the WAL is synced before returning.  0 or -EIO. */
int bal_kv_write(struct bal_kv *kv, struct bal_kv_batch *b, bool sync);

/* Iterate the keys in [lo, hi) in order (hi NULL: to the end). */
int bal_kv_iter_create(struct bal_kv *kv, const void *lo, size_t lolen,
		       const void *hi, size_t hilen, struct bal_kv_iter **out);
void bal_kv_iter_destroy(struct bal_kv_iter *it);
bool bal_kv_iter_valid(const struct bal_kv_iter *it);
void bal_kv_iter_next(struct bal_kv_iter *it);
const void *bal_kv_iter_key(const struct bal_kv_iter *it, size_t *len);
const void *bal_kv_iter_value(const struct bal_kv_iter *it, size_t *len);
/* After the iteration ends: 0, or -EIO if it stopped on an error. */
int bal_kv_iter_status(const struct bal_kv_iter *it);

/*
 * Call @cb on every key in [lo, hi) in order; a non-zero return stops the
 * scan and is returned, else the iterator's status (0 or -errno).
 */
int bal_kv_scan(struct bal_kv *kv, const void *lo, size_t lolen, const void *hi, size_t hilen,
		int (*cb)(void *arg, const void *k, size_t kl, const void *v, size_t vl),
		void *arg);

/*
 * Fault injection for tests: the @nth next bal_kv_write() (1 = the next
 * one) fails with -EIO.  0 disarms.
 */
void bal_kv_fail_write_after(unsigned nth);

#endif
