/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the extent index (volume/xmap.c) against a plain array
 * model: random set/remove/find/next over clustered and scattered keys,
 * enough to split, shrink and empty blocks, plus a memory bound.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "volume/xmap.h"



#define RANGE 50000u	/* model keys: a window of logical clusters */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void check_all(const struct bal_xmap *m, const struct bal_xent *model,
		      const bool *present, uint64_t base)
{
	uint64_t n = 0, lcl = 0, found;
	struct bal_xent e;

	for (unsigned i = 0; i < RANGE; i++) {
		struct bal_xent *p = bal_xmap_find(m, base + i);

		CHECK(!!p == present[i]);
		if (p)
			CHECK(p->phys == model[i].phys && p->flags == model[i].flags);
		n += present[i];
	}
	CHECK(bal_xmap_count(m) == n);
	/* next() walks exactly the present keys in order. */
	for (unsigned i = 0; i < RANGE; i++) {
		if (!present[i])
			continue;
		CHECK(bal_xmap_next(m, lcl, &found, &e));
		CHECK(found == base + i && e.phys == model[i].phys);
		lcl = found + 1;
	}
	CHECK(!bal_xmap_next(m, lcl, &found, &e));
}

static void test_random(uint64_t base)
{
	struct bal_xent *model = calloc(RANGE, sizeof(*model));
	bool *present = calloc(RANGE, sizeof(*present));
	struct bal_xmap m;

	CHECK(model && present);
	bal_xmap_init(&m);
	for (unsigned it = 0; it < 200000; it++) {
		unsigned op = (unsigned)(rnd() % 10);
		/* Mostly clustered keys, some scattered. */
		unsigned i = (unsigned)(rnd() % 4 ? rnd() % 2000 + (it / 20000) * 4000 : rnd() % RANGE) %
			     RANGE;
		struct bal_xent e = { .phys = rnd(), .birth = 0, .flags = (uint32_t)(rnd() & 1) };
		struct bal_xent old;

		if (op < 6) {
			CHECK(bal_xmap_set(&m, base + i, &e) == 0);
			model[i] = e;
			present[i] = true;
		} else if (op < 9) {
			bool r = bal_xmap_remove(&m, base + i, &old);

			CHECK(r == present[i]);
			if (r)
				CHECK(old.phys == model[i].phys);
			present[i] = false;
		} else {
			uint64_t found, want = UINT64_MAX;
			bool r = bal_xmap_next(&m, base + i, &found, &old);

			for (unsigned j = i; j < RANGE; j++) {
				if (present[j]) {
					want = base + j;
					break;
				}
			}
			CHECK(r == (want != UINT64_MAX));
			if (r)
				CHECK(found == want);
		}
		if (it % 50000 == 49999)
			check_all(&m, model, present, base);
	}
	check_all(&m, model, present, base);
	/* Empty it completely: every block goes away. */
	for (unsigned i = 0; i < RANGE; i++)
		bal_xmap_remove(&m, base + i, NULL);
	CHECK(bal_xmap_count(&m) == 0);
	CHECK(m.nblocks == 0);
	bal_xmap_fini(&m);
	free(model);
	free(present);
	printf("ok - random model, base %" PRIu64 "\n", base);
}

static void test_memory(void)
{
	struct bal_xmap m;
	struct bal_xent e = { 0 };
	const unsigned n = 100000;

	/* Dense: about 16 bytes per cluster. */
	bal_xmap_init(&m);
	for (unsigned i = 0; i < n; i++) {
		e.phys = i;
		CHECK(bal_xmap_set(&m, i, &e) == 0);
	}
	printf("dense: %zu bytes for %u clusters\n", bal_xmap_mem(&m), n);
	CHECK(bal_xmap_mem(&m) < (size_t)n * 20);
	bal_xmap_fini(&m);
	/* Scattered over 2^40 clusters: one leaf each, still bounded. */
	bal_xmap_init(&m);
	for (unsigned i = 0; i < n; i++) {
		e.phys = i;
		CHECK(bal_xmap_set(&m, (rnd() % (UINT64_C(1) << 40)), &e) == 0);
	}
	printf("scattered: %zu bytes for %" PRIu64 " clusters\n", bal_xmap_mem(&m),
	       bal_xmap_count(&m));
	CHECK(bal_xmap_mem(&m) < (size_t)bal_xmap_count(&m) * 64);
	bal_xmap_fini(&m);
	/* Scattered but inserted in order (as at open): blocks stay full. */
	bal_xmap_init(&m);
	for (unsigned i = 0; i < n; i++) {
		e.phys = i;
		CHECK(bal_xmap_set(&m, (uint64_t)i * 1000, &e) == 0);
	}
	printf("scattered, in order: %zu bytes for %u clusters\n", bal_xmap_mem(&m), n);
	CHECK(bal_xmap_mem(&m) < (size_t)n * 34);
	bal_xmap_fini(&m);
	printf("ok - memory\n");
}

int main(void)
{
	rng_state = 0x9e3779b97f4a7c15ULL;
	printf("seed %" PRIx64 "\n", rng_state);
	test_random(0);
	test_random((UINT64_C(1) << 44) - RANGE);
	test_random(1000003);
	test_memory();
	printf("%u checks passed, 0 failed\n", atomic_load(&checks));
	return 0;
}
