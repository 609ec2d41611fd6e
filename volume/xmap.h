/* SPDX-License-Identifier: MIT */
/*
 * Extent index: logical cluster -> struct bal_xent, in memory.
 *
 * Memory follows the mapped clusters, never the logical range: a leaf
 * covers 64 consecutive logical clusters with a bitmap and a packed array
 * of the mapped entries (a lone entry is stored inline), and leaves sit in
 * sorted blocks of at most 128 under one sorted top array.  Point lookup
 * and "next mapped cluster >= x" are two binary searches.
 *
 * Not thread-safe: the owner (a volume) serialises access.
 */
#ifndef BAL_XMAP_H
#define BAL_XMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entry flags (also stored in RocksDB). */
#define BAL_XENT_ZERO 1u	/* allocated, reads as zeroes (write-zeroes) */

struct bal_xent {
	uint64_t phys;		/* physical cluster in the pool */
	uint32_t birth;		/* epoch the cluster was written in */
	uint32_t flags;		/* BAL_XENT_* */
};

struct bal_xmap {
	struct bal_xblock **blocks;	/* sorted by first leaf */
	size_t nblocks;
	size_t capblocks;
	uint64_t count;		/* mapped clusters */
	size_t mem;		/* bytes allocated by the index */
};

void bal_xmap_init(struct bal_xmap *m);
void bal_xmap_fini(struct bal_xmap *m);

/* Pointer to the entry of @lcl or NULL; valid until the next set/remove. */
struct bal_xent *bal_xmap_find(const struct bal_xmap *m, uint64_t lcl);

/* Insert or replace the entry of @lcl.  0 or -ENOMEM (then unchanged). */
int bal_xmap_set(struct bal_xmap *m, uint64_t lcl, const struct bal_xent *e);

/* Remove the entry of @lcl; returns false if it was not mapped. */
bool bal_xmap_remove(struct bal_xmap *m, uint64_t lcl, struct bal_xent *old);

/* First mapped cluster >= @lcl: true and *found, *e set, or false. */
bool bal_xmap_next(const struct bal_xmap *m, uint64_t lcl, uint64_t *found,
		   struct bal_xent *e);

static inline uint64_t bal_xmap_count(const struct bal_xmap *m)
{
	return m->count;
}

static inline size_t bal_xmap_mem(const struct bal_xmap *m)
{
	return m->mem;
}

#endif
