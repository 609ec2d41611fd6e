/* SPDX-License-Identifier: MIT */
/*
 * The sync thread of a volume store.
 *
 * Each cycle takes every queued request, the pool's pending frees and then
 * the map log (in that order: a free is queued after the log entry that
 * unmapped it), then runs fdatasync(pool), writes the map log as one
 * synced RocksDB batch (or syncs the WAL), calls the requests' callbacks,
 * and only then recycles the pending frees (their unmapping is now
 * durable; the pool punches them and syncs again).  Requests queued
 * during a cycle wait for the next one, since their writes may have ended
 * after its fdatasync started.  With frees pending or map changes logged
 * and no requests, a cycle runs about every second, and at once when the
 * log reaches BAL_LOG_MAX entries.  A failed sync fails every later one: after a
 * failed fdatasync the page cache no longer says what is on disk.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "volume/volume_internal.h"

#define SYNC_IDLE_SEC 1

unsigned bal_vstore_io_begin(struct bal_vstore *st)
{
	for (;;) {
		unsigned p = atomic_load(&st->io_phase);

		atomic_fetch_add(&st->io_active[p], 1);
		if (atomic_load(&st->io_phase) == p)
			return p;
		/* Flipped under us: count in the new phase instead. */
		atomic_fetch_sub(&st->io_active[p], 1);
	}
}

void bal_vstore_io_end(struct bal_vstore *st, unsigned token)
{
	atomic_fetch_sub(&st->io_active[token & 1], 1);
}

/*
 * Wait until every pool I/O that began before now has ended.  The pending
 * frees were unmapped before this point, so no I/O begun after it can
 * reach them.
 */
void bal_vstore_io_grace(struct bal_vstore *st)
{
	struct timespec pause = { 0, 200000 };
	unsigned waited = 0, old;

	/* One flip at a time: the sync thread and snapshot creation both wait. */
	pthread_mutex_lock(&st->grace_lock);
	old = atomic_load(&st->io_phase);
	atomic_store(&st->io_phase, old ^ 1);
	while (atomic_load(&st->io_active[old])) {
		nanosleep(&pause, NULL);
		if (++waited == 50000)
			bal_warn("store %s: pool I/O outstanding for 10 s; waiting for it",
				 st->dir);
	}
	pthread_mutex_unlock(&st->grace_lock);
}

static void sync_cycle(struct bal_vstore *st, struct bal_sync_req *reqs)
{
	struct bal_kv_batch *log;
	uint64_t *pend;
	size_t npend, nlog;
	int err;

	bal_vstore_recopy_frozen(st);
	/* Frees whose unmapping is in the log taken next. */
	npend = bal_pool_take_pending(st->pool, &pend);
	log = bal_log_take(st, &nlog);
	err = st->sync_err;
	/* The pool first: a mapping never becomes durable before its bytes. */
	if (!err)
		err = bal_pool_datasync(st->pool);
	if (!err)
		err = log ? bal_kv_write(st->kv, log, true) : bal_kv_sync(st->kv);
	bal_kv_batch_destroy(log);
	if (err && !st->sync_err) {
		bal_err("store %s: sync failed, every later sync fails too: %s", st->dir,
			strerror(-err));
		pthread_mutex_lock(&st->sync_lock);
		st->sync_err = err;
		pthread_mutex_unlock(&st->sync_lock);
	}
	while (reqs) {
		struct bal_sync_req *next = reqs->next;

		reqs->cb(reqs->arg, err);
		free(reqs);
		reqs = next;
	}
	if (!err && npend)
		bal_vstore_io_grace(st);
	if (!err)
		bal_pool_recycle(st->pool, pend, npend);
	else
		free(pend);
}

static void *sync_main(void *arg)
{
	struct bal_vstore *st = arg;
	struct bal_pool_stats ps;
	uint64_t age;

	pthread_mutex_lock(&st->sync_lock);
	for (;;) {
		struct bal_sync_req *reqs;
		bool timed_out = false, closing, full = false;
		struct timespec ts;

		while (!st->sync_head && !st->closing && !timed_out && !full) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += SYNC_IDLE_SEC;
			if (pthread_cond_timedwait(&st->sync_cond, &st->sync_lock, &ts) == ETIMEDOUT)
				timed_out = true;
			full = bal_log_pending(st, &age) >= BAL_LOG_MAX;
		}
		if (!st->sync_head && !st->closing && !full) {
			bal_pool_get_stats(st->pool, &ps);
			if (!ps.pending && !bal_log_pending(st, &age))
				continue;
		}
		reqs = st->sync_head;
		st->sync_head = NULL;
		st->sync_tail = &st->sync_head;
		closing = st->closing;
		pthread_mutex_unlock(&st->sync_lock);
		sync_cycle(st, reqs);
		pthread_mutex_lock(&st->sync_lock);
		st->cycles++;
		if (closing)
			break;
	}
	pthread_mutex_unlock(&st->sync_lock);
	return NULL;
}

int bal_vstore_sync_async(struct bal_vstore *st, void (*cb)(void *arg, int err), void *arg)
{
	struct bal_sync_req *r;

	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cb = cb;
	r->arg = arg;
	r->next = NULL;
	pthread_mutex_lock(&st->sync_lock);
	if (st->closing) {
		pthread_mutex_unlock(&st->sync_lock);
		free(r);
		return -ESHUTDOWN;
	}
	*st->sync_tail = r;
	st->sync_tail = &r->next;
	pthread_cond_signal(&st->sync_cond);
	pthread_mutex_unlock(&st->sync_lock);
	return 0;
}

struct sync_waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int err;
};

static void sync_wake(void *arg, int err)
{
	struct sync_waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	w->err = err;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int bal_vstore_sync(struct bal_vstore *st)
{
	struct sync_waiter w = { .done = false };
	int ret;

	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	ret = bal_vstore_sync_async(st, sync_wake, &w);
	if (ret == 0) {
		pthread_mutex_lock(&w.lock);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.lock);
		pthread_mutex_unlock(&w.lock);
		ret = w.err;
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return ret;
}

uint64_t bal_vstore_sync_cycles(struct bal_vstore *st)
{
	uint64_t n;

	pthread_mutex_lock(&st->sync_lock);
	n = st->cycles;
	pthread_mutex_unlock(&st->sync_lock);
	return n;
}

void bal_vstore_pool_stats(struct bal_vstore *st, struct bal_pool_stats *out)
{
	bal_pool_get_stats(st->pool, out);
}

int bal_vstore_sync_start(struct bal_vstore *st)
{
	pthread_condattr_t ca;
	int ret;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->sync_cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = pthread_create(&st->sync_thread, NULL, sync_main, st);
	if (ret) {
		bal_err("store %s: start sync thread: %s", st->dir, strerror(ret));
		return -ret;
	}
	st->sync_started = true;
	return 0;
}

void bal_vstore_sync_stop(struct bal_vstore *st)
{
	if (!st->sync_started)
		return;
	pthread_mutex_lock(&st->sync_lock);
	st->closing = true;
	pthread_cond_signal(&st->sync_cond);
	pthread_mutex_unlock(&st->sync_lock);
	pthread_join(st->sync_thread, NULL);
	pthread_cond_destroy(&st->sync_cond);
	st->sync_started = false;
}

int bal_vstore_stats(struct bal_vstore *st, struct bal_store_stats *out)
{
	struct bal_pool_stats ps;
	uint64_t age;

	bal_pool_get_stats(st->pool, &ps);
	out->pool_clusters_used = ps.used;
	out->pool_clusters_free = ps.free;
	out->pool_clusters_pending = ps.pending;
	out->map_log_entries = bal_log_pending(st, &age);
	return 0;
}
