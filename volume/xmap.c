/* SPDX-License-Identifier: MIT */
/*
 * Extent index (see xmap.h).  Invariants: every block holds at least one
 * leaf, leaves are sorted by key across blocks, every leaf has at least one
 * bit set, and a leaf with n >= 2 entries owns a heap array of
 * ceil_pow2(n) entries (n == 1: inline).  m->mem counts every byte the
 * index allocated, for tests and statistics.
 */
#include "volume/xmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LEAF_SHIFT 6
#define LEAF_MASK ((UINT64_C(1) << LEAF_SHIFT) - 1)
#define BLOCK_MAX 128u
#define BLOCK_MIN 4u

struct xleaf {
	uint64_t key;		/* logical cluster >> LEAF_SHIFT */
	uint64_t bits;		/* mapped clusters of the leaf */
	union {
		struct bal_xent *v;	/* n >= 2 */
		struct bal_xent one;	/* n == 1 */
	} u;
};

struct bal_xblock {
	uint32_t n;
	uint32_t cap;
	struct xleaf leaf[];
};

static unsigned leaf_count(const struct xleaf *l)
{
	return (unsigned)__builtin_popcountll(l->bits);
}

/* Index of @bit's entry in the leaf's packed array. */
static unsigned leaf_index(uint64_t bits, unsigned bit)
{
	return (unsigned)__builtin_popcountll(bits & ((UINT64_C(1) << bit) - 1));
}

static unsigned arr_cap(unsigned n)
{
	unsigned c = 2;

	while (c < n)
		c <<= 1;
	return c;
}

static struct bal_xent *leaf_ents(struct xleaf *l)
{
	return leaf_count(l) == 1 ? &l->u.one : l->u.v;
}

static size_t block_bytes(uint32_t cap)
{
	return sizeof(struct bal_xblock) + (size_t)cap * sizeof(struct xleaf);
}

void bal_xmap_init(struct bal_xmap *m)
{
	memset(m, 0, sizeof(*m));
}

void bal_xmap_fini(struct bal_xmap *m)
{
	for (size_t i = 0; i < m->nblocks; i++) {
		struct bal_xblock *b = m->blocks[i];

		for (uint32_t j = 0; j < b->n; j++) {
			if (leaf_count(&b->leaf[j]) >= 2)
				free(b->leaf[j].u.v);
		}
		free(b);
	}
	free(m->blocks);
	memset(m, 0, sizeof(*m));
}

/* The block that holds, or would hold, leaf @key (m->nblocks > 0). */
static size_t find_block(const struct bal_xmap *m, uint64_t key)
{
	size_t lo = 0, hi = m->nblocks;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->blocks[mid]->leaf[0].key <= key)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* First leaf of @b whose key is >= @key (b->n if none). */
static uint32_t find_leaf(const struct bal_xblock *b, uint64_t key)
{
	uint32_t lo = 0, hi = b->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (b->leaf[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct bal_xent *bal_xmap_find(const struct bal_xmap *m, uint64_t lcl)
{
	uint64_t key = lcl >> LEAF_SHIFT;
	unsigned bit = (unsigned)(lcl & LEAF_MASK);
	struct bal_xblock *b;
	struct xleaf *l;
	uint32_t p;

	if (!m->nblocks)
		return NULL;
	b = m->blocks[find_block(m, key)];
	p = find_leaf(b, key);
	if (p == b->n)
		return NULL;
	l = &b->leaf[p];
	if (l->key != key || !(l->bits & (UINT64_C(1) << bit)))
		return NULL;
	return &leaf_ents(l)[leaf_index(l->bits, bit)];
}

static int leaf_insert(struct bal_xmap *m, struct xleaf *l, unsigned bit,
		       const struct bal_xent *e)
{
	const size_t sz = sizeof(struct bal_xent);
	unsigned n = leaf_count(l), idx = leaf_index(l->bits, bit);
	struct bal_xent *v;

	if (n == 1) {
		v = malloc(2 * sz);
		if (!v)
			return -ENOMEM;
		v[idx] = *e;
		v[1 - idx] = l->u.one;
		l->u.v = v;
		m->mem += 2 * sz;
	} else {
		v = l->u.v;
		if (n == arr_cap(n)) {
			v = realloc(v, 2 * n * sz);
			if (!v)
				return -ENOMEM;
			l->u.v = v;
			m->mem += n * sz;
		}
		memmove(v + idx + 1, v + idx, (n - idx) * sz);
		v[idx] = *e;
	}
	l->bits |= UINT64_C(1) << bit;
	return 0;
}

static void leaf_remove(struct bal_xmap *m, struct xleaf *l, unsigned bit,
			struct bal_xent *old)
{
	const size_t sz = sizeof(struct bal_xent);
	unsigned n = leaf_count(l), idx = leaf_index(l->bits, bit);
	struct bal_xent *v;

	if (n == 1) {
		*old = l->u.one;
	} else if (n == 2) {
		struct bal_xent keep = l->u.v[1 - idx];

		*old = l->u.v[idx];
		free(l->u.v);
		m->mem -= 2 * sz;
		l->u.one = keep;
	} else {
		v = l->u.v;
		*old = v[idx];
		memmove(v + idx, v + idx + 1, (n - idx - 1) * sz);
		if (arr_cap(n - 1) < arr_cap(n)) {
			/* Shrinking never loses data; keep the old array if it fails. */
			struct bal_xent *nv = realloc(v, arr_cap(n - 1) * sz);

			if (nv) {
				l->u.v = nv;
				m->mem -= (arr_cap(n) - arr_cap(n - 1)) * sz;
			}
		}
	}
	l->bits &= ~(UINT64_C(1) << bit);
}

static int top_reserve(struct bal_xmap *m)
{
	struct bal_xblock **nb;
	size_t cap;

	if (m->nblocks < m->capblocks)
		return 0;
	cap = m->capblocks ? m->capblocks * 2 : 4;
	nb = realloc(m->blocks, cap * sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	m->mem += (cap - m->capblocks) * sizeof(*nb);
	m->blocks = nb;
	m->capblocks = cap;
	return 0;
}

/* Insert leaf @l at position @p of block @bi, growing or splitting it. */
static int block_insert(struct bal_xmap *m, size_t bi, uint32_t p,
			const struct xleaf *l)
{
	struct bal_xblock *b = m->blocks[bi];

	if (b->n == b->cap && b->cap < BLOCK_MAX) {
		struct bal_xblock *gb = realloc(b, block_bytes(b->cap * 2));

		if (!gb)
			return -ENOMEM;
		b = gb;
		m->mem += block_bytes(b->cap * 2) - block_bytes(b->cap);
		b->cap *= 2;
		m->blocks[bi] = b;
	} else if (b->n == b->cap) {
		struct bal_xblock *nb;
		/* Appending (loading in key order): keep the full block full. */
		bool append = p == b->n && bi == m->nblocks - 1;
		uint32_t half = append ? b->n : b->n / 2;

		if (top_reserve(m))
			return -ENOMEM;
		nb = malloc(block_bytes(BLOCK_MAX));
		if (!nb)
			return -ENOMEM;
		m->mem += block_bytes(BLOCK_MAX);
		nb->cap = BLOCK_MAX;
		nb->n = b->n - half;
		memcpy(nb->leaf, b->leaf + half, nb->n * sizeof(struct xleaf));
		b->n = half;
		memmove(m->blocks + bi + 2, m->blocks + bi + 1,
			(m->nblocks - bi - 1) * sizeof(*m->blocks));
		m->blocks[bi + 1] = nb;
		m->nblocks++;
		if (p > half || append) {
			b = nb;
			p -= half;
		}
	}
	memmove(b->leaf + p + 1, b->leaf + p, (b->n - p) * sizeof(struct xleaf));
	b->leaf[p] = *l;
	b->n++;
	return 0;
}

static void block_remove(struct bal_xmap *m, size_t bi, uint32_t p)
{
	struct bal_xblock *b = m->blocks[bi];

	b->n--;
	memmove(b->leaf + p, b->leaf + p + 1, (b->n - p) * sizeof(struct xleaf));
	if (b->n == 0) {
		m->mem -= block_bytes(b->cap);
		free(b);
		m->nblocks--;
		memmove(m->blocks + bi, m->blocks + bi + 1,
			(m->nblocks - bi) * sizeof(*m->blocks));
	} else if (b->cap > BLOCK_MIN && b->n <= b->cap / 4) {
		struct bal_xblock *nb = realloc(b, block_bytes(b->cap / 2));

		if (nb) {
			m->mem -= block_bytes(nb->cap) - block_bytes(nb->cap / 2);
			nb->cap /= 2;
			m->blocks[bi] = nb;
		}
	}
}

int bal_xmap_set(struct bal_xmap *m, uint64_t lcl, const struct bal_xent *e)
{
	uint64_t key = lcl >> LEAF_SHIFT;
	unsigned bit = (unsigned)(lcl & LEAF_MASK);
	struct xleaf nl = { .key = key, .bits = UINT64_C(1) << bit };
	struct bal_xblock *b;
	size_t bi = 0;
	uint32_t p = 0;
	int ret;

	if (!m->nblocks) {
		if (top_reserve(m))
			return -ENOMEM;
		b = malloc(block_bytes(BLOCK_MIN));
		if (!b)
			return -ENOMEM;
		m->mem += block_bytes(BLOCK_MIN);
		b->n = 0;
		b->cap = BLOCK_MIN;
		m->blocks[0] = b;
		m->nblocks = 1;
	} else {
		bi = find_block(m, key);
		b = m->blocks[bi];
		p = find_leaf(b, key);
		if (p < b->n && b->leaf[p].key == key) {
			struct xleaf *l = &b->leaf[p];

			if (l->bits & (UINT64_C(1) << bit)) {
				leaf_ents(l)[leaf_index(l->bits, bit)] = *e;
				return 0;
			}
			ret = leaf_insert(m, l, bit, e);
			if (ret == 0)
				m->count++;
			return ret;
		}
	}
	nl.u.one = *e;
	ret = block_insert(m, bi, p, &nl);
	if (ret == 0)
		m->count++;
	return ret;
}

bool bal_xmap_remove(struct bal_xmap *m, uint64_t lcl, struct bal_xent *old)
{
	uint64_t key = lcl >> LEAF_SHIFT;
	unsigned bit = (unsigned)(lcl & LEAF_MASK);
	struct bal_xent dummy;
	struct bal_xblock *b;
	struct xleaf *l;
	size_t bi;
	uint32_t p;

	if (!m->nblocks)
		return false;
	bi = find_block(m, key);
	b = m->blocks[bi];
	p = find_leaf(b, key);
	if (p == b->n)
		return false;
	l = &b->leaf[p];
	if (l->key != key || !(l->bits & (UINT64_C(1) << bit)))
		return false;
	leaf_remove(m, l, bit, old ? old : &dummy);
	if (!l->bits)
		block_remove(m, bi, p);
	m->count--;
	return true;
}

bool bal_xmap_next(const struct bal_xmap *m, uint64_t lcl, uint64_t *found,
		   struct bal_xent *e)
{
	uint64_t key = lcl >> LEAF_SHIFT;
	unsigned bit = (unsigned)(lcl & LEAF_MASK);
	size_t bi;
	uint32_t p;

	if (!m->nblocks)
		return false;
	bi = find_block(m, key);
	p = find_leaf(m->blocks[bi], key);
	for (; bi < m->nblocks; bi++, p = 0) {
		struct bal_xblock *b = m->blocks[bi];

		for (; p < b->n; p++) {
			struct xleaf *l = &b->leaf[p];
			uint64_t bits = l->bits;
			unsigned b0;

			if (l->key == key)
				bits &= ~UINT64_C(0) << bit;
			if (!bits)
				continue;
			b0 = (unsigned)__builtin_ctzll(bits);
			*found = (l->key << LEAF_SHIFT) | b0;
			*e = leaf_ents(l)[leaf_index(l->bits, b0)];
			return true;
		}
	}
	return false;
}
