/* SPDX-License-Identifier: MIT */
/*
 * Old versions of a volume's clusters, in memory (see volume_internal.h).
 *
 * Two views of the same slots: a chained hash on the logical cluster, for
 * snapshot reads (a chain holds the few versions of a cluster and the
 * clusters that collide with it), and buckets by death epoch, for snapshot
 * deletion, which only visits the deaths in its interval.  Deaths are the
 * volume's current epoch when a version is made, so buckets are appended
 * in order and stay sorted.
 *
 * Not thread-safe: the owning volume's lock serialises access.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "volume/volume_internal.h"

#define NIL UINT32_MAX

static uint32_t hash_lcl(uint64_t lcl, uint32_t nheads)
{
	return (uint32_t)((lcl * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & (nheads - 1);
}

void bal_vers_init(struct bal_vers *vs)
{
	memset(vs, 0, sizeof(*vs));
	vs->freelist = NIL;
}

void bal_vers_fini(struct bal_vers *vs)
{
	for (size_t i = 0; i < vs->ndb; i++)
		free(vs->db[i].idx);
	free(vs->db);
	free(vs->heads);
	free(vs->v);
	bal_vers_init(vs);
}

static int rehash(struct bal_vers *vs, uint32_t nheads)
{
	uint32_t *h = malloc(nheads * sizeof(*h));

	if (!h)
		return -ENOMEM;
	memset(h, 0xff, nheads * sizeof(*h));
	/* Relink every live slot: those in a death bucket. */
	for (size_t i = 0; i < vs->ndb; i++) {
		for (uint32_t j = 0; j < vs->db[i].n; j++) {
			struct bal_ver *v = &vs->v[vs->db[i].idx[j]];
			uint32_t b = hash_lcl(v->lcl, nheads);

			v->next = h[b];
			h[b] = vs->db[i].idx[j];
		}
	}
	vs->mem += (size_t)nheads * sizeof(*h) - (size_t)vs->nheads * sizeof(*h);
	free(vs->heads);
	vs->heads = h;
	vs->nheads = nheads;
	return 0;
}

static int slot_get(struct bal_vers *vs, uint32_t *out)
{
	if (vs->freelist != NIL) {
		*out = vs->freelist;
		vs->freelist = vs->v[*out].next;
		return 0;
	}
	if (vs->nslots == vs->capslots) {
		uint32_t cap = vs->capslots ? vs->capslots * 2 : 64;
		struct bal_ver *nv;

		if (cap <= vs->capslots)
			return -ENOMEM;
		nv = realloc(vs->v, (size_t)cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		vs->mem += (size_t)(cap - vs->capslots) * sizeof(*nv);
		vs->v = nv;
		vs->capslots = cap;
	}
	*out = vs->nslots++;
	return 0;
}

/* The bucket of @death, created at the end if it is the newest. */
static struct bal_dbucket *bucket_for(struct bal_vers *vs, uint32_t death)
{
	size_t lo = 0, hi = vs->ndb;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (vs->db[mid].death < death)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < vs->ndb && vs->db[lo].death == death)
		return &vs->db[lo];
	if (vs->ndb == vs->capdb) {
		size_t cap = vs->capdb ? vs->capdb * 2 : 8;
		struct bal_dbucket *nb = realloc(vs->db, cap * sizeof(*nb));

		if (!nb)
			return NULL;
		vs->mem += (cap - vs->capdb) * sizeof(*nb);
		vs->db = nb;
		vs->capdb = cap;
	}
	memmove(vs->db + lo + 1, vs->db + lo, (vs->ndb - lo) * sizeof(*vs->db));
	vs->db[lo] = (struct bal_dbucket){ .death = death };
	vs->ndb++;
	return &vs->db[lo];
}

int bal_vers_add(struct bal_vers *vs, const struct bal_ver *v)
{
	struct bal_dbucket *b;
	uint32_t slot, h;

	if (vs->count + 1 > (uint64_t)vs->nheads && rehash(vs, vs->nheads ? vs->nheads * 2 : 64))
		return -ENOMEM;
	b = bucket_for(vs, v->death);
	if (!b)
		return -ENOMEM;
	if (b->n == b->cap) {
		uint32_t cap = b->cap ? b->cap * 2 : 16;
		uint32_t *ni = realloc(b->idx, (size_t)cap * sizeof(*ni));

		if (!ni)
			return -ENOMEM;
		vs->mem += (size_t)(cap - b->cap) * sizeof(*ni);
		b->idx = ni;
		b->cap = cap;
	}
	if (slot_get(vs, &slot))
		return -ENOMEM;
	vs->v[slot] = *v;
	h = hash_lcl(v->lcl, vs->nheads);
	vs->v[slot].next = vs->heads[h];
	vs->heads[h] = slot;
	b->idx[b->n++] = slot;
	vs->count++;
	return 0;
}

const struct bal_ver *bal_vers_find(const struct bal_vers *vs, uint64_t lcl, uint32_t e)
{
	if (!vs->count)
		return NULL;
	for (uint32_t i = vs->heads[hash_lcl(lcl, vs->nheads)]; i != NIL; i = vs->v[i].next) {
		const struct bal_ver *v = &vs->v[i];

		if (v->lcl == lcl && v->birth <= e && e < v->death)
			return v;
	}
	return NULL;
}

/* Unchain slot @slot from its hash chain and put it on the free list. */
static void slot_drop(struct bal_vers *vs, uint32_t slot)
{
	uint32_t *pp = &vs->heads[hash_lcl(vs->v[slot].lcl, vs->nheads)];

	while (*pp != slot)
		pp = &vs->v[*pp].next;
	*pp = vs->v[slot].next;
	vs->v[slot].next = vs->freelist;
	vs->freelist = slot;
	vs->count--;
}

void bal_vers_reclaim(struct bal_vers *vs, uint32_t dlo, uint32_t dhi, uint32_t blo,
		      uint32_t bhi, void (*fn)(void *arg, const struct bal_ver *v), void *arg)
{
	size_t lo = 0, hi = vs->ndb, i;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (vs->db[mid].death <= dlo)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i < vs->ndb && vs->db[i].death <= dhi;) {
		struct bal_dbucket *b = &vs->db[i];
		uint32_t k = 0;

		for (uint32_t j = 0; j < b->n; j++) {
			const struct bal_ver *v = &vs->v[b->idx[j]];

			if (v->birth > blo && v->birth <= bhi) {
				fn(arg, v);
				slot_drop(vs, b->idx[j]);
			} else {
				b->idx[k++] = b->idx[j];
			}
		}
		b->n = k;
		if (k) {
			i++;
			continue;
		}
		vs->mem -= (size_t)b->cap * sizeof(*b->idx);
		free(b->idx);
		memmove(vs->db + i, vs->db + i + 1, (vs->ndb - i - 1) * sizeof(*vs->db));
		vs->ndb--;
	}
}

void bal_vers_foreach(const struct bal_vers *vs, void (*fn)(void *arg, const struct bal_ver *v),
		      void *arg)
{
	for (size_t i = 0; i < vs->ndb; i++) {
		for (uint32_t j = 0; j < vs->db[i].n; j++)
			fn(arg, &vs->v[vs->db[i].idx[j]]);
	}
}
