/* SPDX-License-Identifier: MIT */
/*
 * The data pool: one sparse file cut into BAL_CLUSTER_SIZE clusters, and
 * the allocator of its clusters.
 *
 * The allocator is derived from the durable extent maps at open: every
 * cluster the maps do not reference is free; free clusters are punched
 * (and the punch made durable) before the first allocation, so a newly
 * allocated cluster always reads as zeroes.
 *
 * A cluster freed later (trim, shrink, delete) goes through three stages
 * before it can be allocated again: pending (its unmapping may not be
 * durable), then, after a sync cycle made the unmapping durable, punched,
 * then after the punch is durable, free.  The sync thread drives this with
 * bal_pool_take_pending() and bal_pool_recycle().
 *
 * Threads: safe from any thread; one mutex (taken after a volume's).
 */
#ifndef BAL_POOL_H
#define BAL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bal_pool;

struct bal_pool_stats {
	uint64_t file_clusters;	/* pool file size in clusters */
	uint64_t hwm;		/* clusters below this were used at some point */
	uint64_t used;		/* allocated clusters */
	uint64_t free;		/* below hwm and ready for reuse */
	uint64_t pending;	/* freed, waiting for a sync cycle */
};

/* Open (creating if missing) the pool file @path. */
int bal_pool_open(const char *path, struct bal_pool **out);
void bal_pool_close(struct bal_pool *p);
int bal_pool_fd(const struct bal_pool *p);

/*
 * Start-up, before bal_pool_start: record that a durable map references
 * @phys.  -EUCLEAN if it is already referenced, -ENOMEM.
 */
int bal_pool_mark_used(struct bal_pool *p, uint64_t phys);

/* Start-up: derive the free clusters, punch them, make that durable. */
int bal_pool_start(struct bal_pool *p);

/*
 * Allocate one cluster that reads as zeroes.  -ENOSPC if the file cannot
 * grow, -ENOMEM.
 */
int bal_pool_alloc(struct bal_pool *p, uint64_t *phys);

/*
 * Reserve disk space for clusters [phys, phys+n) that were just allocated.
 * -ENOSPC if the filesystem is full.
 */
int bal_pool_reserve(struct bal_pool *p, uint64_t phys, uint64_t n);

/* Return a cluster that was allocated but never mapped durably-or-not. */
void bal_pool_unalloc(struct bal_pool *p, uint64_t phys);

/* A cluster was unmapped (the change is written, maybe not durable). */
void bal_pool_release(struct bal_pool *p, uint64_t phys);

/*
 * Sync thread: take the pending list (*list malloc'ed, caller frees with
 * bal_pool_recycle).  Call before the cycle's syncs start.
 */
size_t bal_pool_take_pending(struct bal_pool *p, uint64_t **list);

/*
 * Sync thread, after the syncs of the cycle succeeded: punch the clusters
 * of @list, make the punch durable and make them allocatable.  Frees @list.
 * On error the clusters stay unusable until the next open.
 */
int bal_pool_recycle(struct bal_pool *p, uint64_t *list, size_t n);

/* fdatasync the pool.  0 or -errno. */
int bal_pool_datasync(struct bal_pool *p);

/*
 * Make the pool bytes [off, off+len) read as zeroes.  With @punch the
 * space may be deallocated, else it stays allocated.
 */
int bal_pool_zero(struct bal_pool *p, uint64_t off, uint64_t len, bool punch);

/* Tests: skip disk reservation so mapping-only tests keep the file sparse. */
void bal_pool_set_reserve(struct bal_pool *p, bool on);

void bal_pool_get_stats(struct bal_pool *p, struct bal_pool_stats *out);

#endif
