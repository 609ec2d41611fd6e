/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the volume store (volume/): catalog, mapping, trim and
 * write-zeroes, block status, durability across reopen, index memory of a
 * huge sparse volume, cluster reuse only after a sync cycle, the directory
 * lock, forced delete, shrink, fault injection, and a randomized run
 * against a byte-array model.  Works in a temporary directory under /tmp.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tests/unit/volio.h"
#include "common/log.h"
#include "volume/volume.h"
#include "volume/volume_internal.h"

#define CL BAL_CLUSTER_SIZE
#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)
#define MAXSEGS 64

static char tmproot[64], tmpdir[80];



static struct bal_vstore *store_open_dir(const char *dir)
{
	struct bal_vstore_opts o = { .opts_size = sizeof(o), .dir = dir };
	struct bal_vstore *st = NULL;

	CHECK_EQ(bal_vstore_open(&o, &st), 0);
	return st;
}

static struct bal_vstore *store_open(void)
{
	struct bal_vstore_opts o = { .opts_size = sizeof(o), .dir = tmpdir };
	struct bal_vstore *st = NULL;

	CHECK_EQ(bal_vstore_open(&o, &st), 0);
	return st;
}

static void rm_tmpdir(void)
{
	check_rmtree(tmproot);
}

static __thread uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static struct bal_volume *vopen(struct bal_vstore *st, const char *name)
{
	struct bal_volume *v = NULL;

	CHECK_EQ(bal_vol_open(st, name, &v), 0);
	return v;
}

/* Map [off, len) for writing; return the pool offset of its single segment. */
static uint64_t wmap1(struct bal_volume *v, uint64_t off, uint32_t len)
{
	size_t max = bal_vol_max_segs(len), n = 0;
	struct bal_seg *s = calloc(max, sizeof(*s));
	uint64_t phys;

	CHECK(s);
	CHECK_EQ(bal_vol_map_write(v, off, len, s, max, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(s[0].len, len);
	phys = s[0].phys;
	free(s);
	return phys;
}

static uint64_t rmap1(struct bal_volume *v, uint64_t off, uint32_t len)
{
	size_t max = bal_vol_max_segs(len), n = 0;
	struct bal_seg *s = calloc(max, sizeof(*s));
	uint64_t phys;

	CHECK(s);
	CHECK_EQ(bal_vol_map_read(v, off, len, s, max, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(s[0].len, len);
	phys = s[0].phys;
	free(s);
	return phys;
}

static uint64_t allocated(struct bal_vstore *st, const char *name)
{
	struct bal_vol_info info;

	CHECK_EQ(bal_vstore_info(st, name, &info), 0);
	return info.allocated;
}

/* Write @len bytes of @c through the volume (map + pwrite on the pool). */
static bool is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return false;
	}
	return true;
}

static void test_catalog(void)
{
	struct bal_vstore *st = store_open();
	struct bal_vol_info *list, info;
	size_t n;

	CHECK_EQ(bal_vstore_create(st, "beta", 1 * GiB), 0);
	CHECK_EQ(bal_vstore_create(st, "alpha", 1 * MiB), 0);
	CHECK_EQ(bal_vstore_create(st, "alpha", 1 * MiB), -EEXIST);
	CHECK_EQ(bal_vstore_create(st, ".bad", 1 * MiB), -EINVAL);
	CHECK_EQ(bal_vstore_create(st, "a/b", 1 * MiB), -EINVAL);
	CHECK_EQ(bal_vstore_create(st, "", 1 * MiB), -EINVAL);
	CHECK_EQ(bal_vstore_create(st, "zero", 0), -EINVAL);
	CHECK_EQ(bal_vstore_create(st, "odd", 1000), -EINVAL);
	CHECK_EQ(bal_vstore_create(st, "huge", BAL_VOL_SIZE_MAX + 512), -EINVAL);
	CHECK_EQ(bal_vstore_create(st, "max", BAL_VOL_SIZE_MAX), 0);
	CHECK_EQ(bal_vstore_list(st, &list, &n), 0);
	CHECK_EQ(n, 3);
	CHECK(!strcmp(list[0].name, "alpha") && !strcmp(list[1].name, "beta") &&
	      !strcmp(list[2].name, "max"));
	CHECK_EQ(list[0].size, 1 * MiB);
	CHECK_EQ(list[0].allocated, 0);
	CHECK(list[0].id != list[1].id);
	CHECK(list[0].created_at > 1600000000);
	free(list);
	CHECK_EQ(bal_vstore_info(st, "nope", &info), -ENOENT);
	CHECK_EQ(bal_vstore_resize(st, "alpha", 2 * MiB, false), 0);
	CHECK_EQ(bal_vstore_resize(st, "alpha", 1 * MiB, false), -EPERM);
	CHECK_EQ(bal_vstore_resize(st, "alpha", 1000, true), -EINVAL);
	CHECK_EQ(bal_vstore_resize(st, "nope", 1 * MiB, true), -ENOENT);
	CHECK_EQ(bal_vstore_info(st, "alpha", &info), 0);
	CHECK_EQ(info.size, 2 * MiB);
	CHECK_EQ(bal_vstore_resize(st, "alpha", 512, true), 0);
	CHECK_EQ(bal_vstore_info(st, "alpha", &info), 0);
	CHECK_EQ(info.size, 512);
	CHECK_EQ(bal_vstore_delete(st, "beta", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "beta", false, false), -ENOENT);
	CHECK_EQ(bal_vstore_info(st, "beta", &info), -ENOENT);
	CHECK_EQ(bal_vstore_delete(st, "max", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "alpha", false, false), 0);
	CHECK_EQ(bal_vstore_list(st, &list, &n), 0);
	CHECK_EQ(n, 0);
	free(list);
	bal_vstore_close(st);
	printf("ok - catalog\n");
}

static void test_map(void)
{
	struct bal_vstore *st = store_open();
	struct bal_seg s[MAXSEGS];
	struct bal_volume *v;
	struct bal_vol_info info;
	uint64_t p0, p1;
	size_t n;

	CHECK_EQ(bal_vstore_create(st, "m", 4 * MiB), 0);
	v = vopen(st, "m");
	CHECK(!strcmp(bal_vol_name(v), "m"));
	CHECK_EQ(bal_vol_size(v), 4 * MiB);
	CHECK(!bal_vol_is_readonly(v) && !bal_vol_is_deleted(v));
	CHECK_EQ(bal_vstore_info(st, "m", &info), 0);
	CHECK_EQ(info.connections, 1);
	/* Fresh volume: one hole. */
	CHECK_EQ(rmap1(v, 0, 1 * MiB), BAL_SEG_HOLE);
	p0 = wmap1(v, 4096, 4096);
	CHECK_EQ(p0 % CL, 4096);
	CHECK_EQ(rmap1(v, 4096, 4096), p0);
	CHECK_EQ(wmap1(v, 4096, 4096), p0);
	CHECK_EQ(allocated(st, "m"), CL);
	/* Three new clusters come out contiguous and merge into one segment. */
	p1 = wmap1(v, 3 * CL + 100, 2 * CL + 10);
	CHECK_EQ(rmap1(v, 3 * CL + 100, 2 * CL + 10), p1);
	CHECK_EQ(allocated(st, "m"), 4 * CL);
	/* Mixed: data, hole, data. */
	CHECK_EQ(bal_vol_map_read(v, 0, 4 * CL, s, MAXSEGS, &n), 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(s[0].phys, p0 - 4096);
	CHECK_EQ(s[0].len, CL);
	CHECK_EQ(s[1].phys, BAL_SEG_HOLE);
	CHECK_EQ(s[1].len, 2 * CL);
	CHECK_EQ(s[2].phys, p1 - 100);
	/* Ranges. */
	CHECK_EQ(bal_vol_map_read(v, 4 * MiB - 512, 512, s, MAXSEGS, &n), 0);
	CHECK_EQ(bal_vol_map_read(v, 4 * MiB - 512, 513, s, MAXSEGS, &n), -EINVAL);
	CHECK_EQ(bal_vol_map_write(v, 4 * MiB, 1, s, MAXSEGS, &n), -EINVAL);
	CHECK_EQ(bal_vol_map_write(v, UINT64_MAX - 10, 100, s, MAXSEGS, &n), -EINVAL);
	CHECK_EQ(bal_vol_map_read(v, 0, 0, s, MAXSEGS, &n), -EINVAL);
	CHECK_EQ(bal_vol_map_read(v, 100, 2 * CL, s, 2, &n), -EINVAL);
	CHECK_EQ(bal_vol_trim(v, 4 * MiB, 1), -EINVAL);
	CHECK_EQ(bal_vol_zero(v, UINT64_MAX, 2, true), -EINVAL);
	CHECK_EQ(bal_vol_max_segs(1), 2);
	bal_vol_close(v);
	CHECK_EQ(bal_vstore_info(st, "m", &info), 0);
	CHECK_EQ(info.connections, 0);
	CHECK_EQ(bal_vol_open(st, "none", &v), -ENOENT);
	CHECK_EQ(bal_vstore_delete(st, "m", false, false), 0);
	bal_vstore_close(st);
	printf("ok - map read/write\n");
}

static void check_status(struct bal_volume *v, uint64_t off, uint64_t len,
			 const struct bal_extent *want, size_t nwant)
{
	struct bal_extent e[16];
	size_t n = 0;

	CHECK_EQ(bal_vol_block_status(v, off, len, e, 16, &n), 0);
	CHECK_EQ(n, nwant);
	for (size_t i = 0; i < n; i++) {
		CHECK_EQ(e[i].len, want[i].len);
		CHECK_EQ(e[i].flags, want[i].flags);
	}
}

static void test_trim_zero(void)
{
	const uint32_t HZ = BAL_EXT_HOLE | BAL_EXT_ZERO, Z = BAL_EXT_ZERO;
	struct bal_vstore *st = store_open();
	uint8_t *buf = malloc(8 * CL), *rb = malloc(8 * CL);
	struct bal_extent e[4];
	struct bal_volume *v;
	size_t n;

	CHECK(buf && rb);
	memset(buf, 0xab, 8 * CL);
	CHECK_EQ(bal_vstore_create(st, "t", 8 * CL), 0);
	v = vopen(st, "t");
	check_status(v, 0, 8 * CL, (struct bal_extent[]){ { 8 * CL, HZ } }, 1);
	vwrite(st, v, 0, 4 * CL, buf);
	check_status(v, 0, 8 * CL, (struct bal_extent[]){ { 4 * CL, 0 }, { 4 * CL, HZ } }, 2);
	check_status(v, 100, 200, (struct bal_extent[]){ { 200, 0 } }, 1);
	/* max extents: covers less. */
	CHECK_EQ(bal_vol_block_status(v, 0, 8 * CL, e, 1, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(e[0].len, 4 * CL);
	/* Trim the middle two clusters and a partial piece of the first. */
	CHECK_EQ(bal_vol_trim(v, CL, 2 * CL), 0);
	CHECK_EQ(allocated(st, "t"), 2 * CL);
	check_status(v, 0, 8 * CL,
		     (struct bal_extent[]){ { CL, 0 }, { 2 * CL, HZ }, { CL, 0 }, { 4 * CL, HZ } },
		     4);
	CHECK_EQ(bal_vol_trim(v, 1000, 3000), 0);
	vread(st, v, 0, 4 * CL, rb);
	CHECK(rb[999] == 0xab && is_zero(rb + 1000, 3000) && rb[4000] == 0xab);
	CHECK(is_zero(rb + CL, 2 * CL) && rb[3 * CL] == 0xab);
	CHECK_EQ(allocated(st, "t"), 2 * CL);
	/* Trim across a partial head, a whole cluster and a partial tail. */
	CHECK_EQ(bal_vol_trim(v, 3 * CL + 10, CL), 0);
	vread(st, v, 3 * CL, CL, rb);
	CHECK(rb[9] == 0xab && is_zero(rb + 10, CL - 10));
	CHECK_EQ(allocated(st, "t"), 2 * CL);

	/* Zero with punch: whole clusters become holes. */
	vwrite(st, v, 4 * CL, 2 * CL, buf);
	CHECK_EQ(bal_vol_zero(v, 4 * CL, CL, true), 0);
	check_status(v, 4 * CL, 2 * CL, (struct bal_extent[]){ { CL, HZ }, { CL, 0 } }, 2);
	/* Without punch: allocated, reported ZERO without HOLE, reads zero. */
	CHECK_EQ(bal_vol_zero(v, 4 * CL, 3 * CL, false), 0);
	check_status(v, 4 * CL, 4 * CL, (struct bal_extent[]){ { 3 * CL, Z }, { CL, HZ } }, 2);
	CHECK_EQ(allocated(st, "t"), 5 * CL);
	CHECK_EQ(rmap1(v, 4 * CL, 3 * CL), BAL_SEG_HOLE);
	vread(st, v, 4 * CL, 3 * CL, rb);
	CHECK(is_zero(rb, 3 * CL));
	/* Writing into a ZERO cluster clears the flag; the rest stays zero. */
	vwrite(st, v, 5 * CL + 100, 10, buf);
	check_status(v, 4 * CL, 3 * CL,
		     (struct bal_extent[]){ { CL, Z }, { CL, 0 }, { CL, Z } }, 3);
	vread(st, v, 5 * CL, CL, rb);
	CHECK(is_zero(rb, 100) && rb[100] == 0xab && rb[109] == 0xab && is_zero(rb + 110, CL - 110));
	/* Partial zero of a data cluster, with and without punch. */
	vwrite(st, v, 0, CL, buf);
	CHECK_EQ(bal_vol_zero(v, 10, 20, false), 0);
	CHECK_EQ(bal_vol_zero(v, 100, 20, true), 0);
	vread(st, v, 0, CL, rb);
	CHECK(rb[9] == 0xab && is_zero(rb + 10, 20) && rb[30] == 0xab);
	CHECK(rb[99] == 0xab && is_zero(rb + 100, 20) && rb[120] == 0xab);
	/* Zero over the whole volume with punch: nothing left. */
	CHECK_EQ(bal_vol_zero(v, 0, 8 * CL, true), 0);
	CHECK_EQ(allocated(st, "t"), 0);
	check_status(v, 0, 8 * CL, (struct bal_extent[]){ { 8 * CL, HZ } }, 1);
	bal_vol_close(v);
	CHECK_EQ(bal_vstore_delete(st, "t", false, false), 0);
	bal_vstore_close(st);
	free(buf);
	free(rb);
	printf("ok - trim, zero, block status\n");
}

/* A volume whose size is not a multiple of the cluster size. */
static void test_odd_size(void)
{
	struct bal_vstore *st = store_open();
	uint64_t size = CL + 4096;
	uint8_t *buf = malloc(2 * CL), *rb = malloc(2 * CL);
	struct bal_volume *v;

	CHECK(buf && rb);
	memset(buf, 0x5a, 2 * CL);
	CHECK_EQ(bal_vstore_create(st, "odd", size), 0);
	v = vopen(st, "odd");
	vwrite(st, v, 0, (uint32_t)size, buf);
	CHECK_EQ(allocated(st, "odd"), 2 * CL);
	/* Trimming to the end frees the last, partial cluster. */
	CHECK_EQ(bal_vol_trim(v, CL, 4096), 0);
	CHECK_EQ(allocated(st, "odd"), CL);
	vwrite(st, v, CL, 4096, buf);
	/* Shrink into the first cluster; growing again shows zeroes past it. */
	CHECK_EQ(bal_vstore_resize(st, "odd", 8192, false), -EPERM);
	CHECK_EQ(bal_vstore_resize(st, "odd", 8192, true), 0);
	CHECK_EQ(bal_vol_size(v), 8192);
	CHECK_EQ(allocated(st, "odd"), CL);
	CHECK_EQ(bal_vstore_resize(st, "odd", size, false), 0);
	vread(st, v, 0, (uint32_t)size, rb);
	CHECK(rb[8191] == 0x5a && is_zero(rb + 8192, size - 8192));
	bal_vol_close(v);
	CHECK_EQ(bal_vstore_delete(st, "odd", false, false), 0);
	bal_vstore_close(st);
	free(buf);
	free(rb);
	printf("ok - odd size, shrink and grow\n");
}

static void test_reopen(void)
{
	struct bal_vstore *st = store_open();
	const uint32_t HZ = BAL_EXT_HOLE | BAL_EXT_ZERO, Z = BAL_EXT_ZERO;
	struct bal_vol_info a, b;
	struct bal_pool_stats ps;
	struct bal_volume *v, *w;
	uint64_t p[4], q;

	CHECK_EQ(bal_vstore_create(st, "r1", 1 * GiB), 0);
	CHECK_EQ(bal_vstore_create(st, "r2", 64 * MiB), 0);
	v = vopen(st, "r1");
	w = vopen(st, "r2");
	p[0] = wmap1(v, 0, 512);
	p[1] = wmap1(v, 512 * MiB, CL);
	p[2] = wmap1(v, 1 * GiB - CL, CL);
	p[3] = wmap1(v, 100 * MiB, 512);
	CHECK_EQ(bal_vol_zero(v, 200 * MiB, CL, false), 0);
	q = wmap1(w, 5 * CL, CL);
	CHECK_EQ(bal_vol_trim(v, 100 * MiB, CL), 0);
	CHECK_EQ(bal_vstore_info(st, "r1", &a), 0);
	bal_vol_close(v);
	bal_vol_close(w);
	bal_vstore_close(st);

	st = store_open();
	CHECK_EQ(bal_vstore_info(st, "r1", &b), 0);
	CHECK_EQ(b.id, a.id);
	CHECK_EQ(b.size, a.size);
	CHECK_EQ(b.created_at, a.created_at);
	CHECK_EQ(b.allocated, 4 * CL);
	v = vopen(st, "r1");
	w = vopen(st, "r2");
	CHECK_EQ(rmap1(v, 0, 512), p[0]);
	CHECK_EQ(rmap1(v, 512 * MiB, CL), p[1]);
	CHECK_EQ(rmap1(v, 1 * GiB - CL, CL), p[2]);
	CHECK_EQ(rmap1(v, 100 * MiB, CL), BAL_SEG_HOLE);
	CHECK_EQ(rmap1(w, 5 * CL, CL), q);
	check_status(v, 200 * MiB - CL, 3 * CL,
		     (struct bal_extent[]){ { CL, HZ }, { CL, Z }, { CL, HZ } }, 3);
	/* The trimmed cluster is free again after the restart. */
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 5);
	CHECK_EQ(ps.pending, 0);
	CHECK_EQ(ps.free, ps.hwm - 5);
	CHECK(ps.free >= 1);
	CHECK_EQ(wmap1(w, 0, 512), p[3]);
	/* Ids are never reused. */
	CHECK_EQ(bal_vstore_create(st, "r3", 1 * MiB), 0);
	CHECK_EQ(bal_vstore_info(st, "r3", &b), 0);
	CHECK(b.id > a.id);
	bal_vol_close(v);
	bal_vol_close(w);
	CHECK_EQ(bal_vstore_delete(st, "r1", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "r2", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "r3", false, false), 0);
	bal_vstore_close(st);
	/* Deleted volumes stay deleted. */
	st = store_open();
	CHECK_EQ(bal_vstore_info(st, "r1", &b), -ENOENT);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 0);
	bal_vstore_close(st);
	printf("ok - reopen keeps catalog and maps\n");
}

static void test_busy(void)
{
	struct bal_vstore_opts o = { .opts_size = sizeof(o), .dir = tmpdir };
	struct bal_vstore *st = store_open(), *st2 = NULL;

	CHECK_EQ(bal_vstore_open(&o, &st2), -EBUSY);
	CHECK(!st2);
	o.dir = NULL;
	CHECK_EQ(bal_vstore_open(&o, &st2), -EINVAL);
	bal_vstore_close(st);
	st = store_open();
	bal_vstore_close(st);
	printf("ok - second open of a directory is refused\n");
}

static void test_sparse_memory(void)
{
	struct bal_vstore *st = store_open();
	const unsigned nscatter = 4096;
	struct bal_extent e[8];
	struct bal_volume *v;
	size_t mem, n, n0;

	/* Mapping only: keep the pool file sparse. */
	bal_pool_set_reserve(st->pool, false);
	CHECK_EQ(bal_vstore_create(st, "big", 16 * TiB), 0);
	v = vopen(st, "big");
	CHECK(bal_vol_index_mem(v) < 4096);
	for (unsigned i = 0; i < nscatter; i++) {
		/* Below 8 TiB - 64 KiB: the dense part below stays apart. */
		uint64_t cl = rnd() % ((8 * TiB) / CL - 1);

		wmap1(v, cl * CL + 512, 4096);
	}
	mem = bal_vol_index_mem(v);
	n = n0 = (size_t)(allocated(st, "big") / CL);
	printf("16 TiB volume, %zu scattered clusters: index %zu bytes (%.1f per cluster)\n", n,
	       mem, (double)mem / (double)n);
	CHECK(n > nscatter - 10);
	CHECK(mem < n * 64 + 64 * 1024);
	/* 1 GiB more, written densely in 32 MiB requests. */
	for (unsigned i = 0; i < 32; i++)
		wmap1(v, 8 * TiB + (uint64_t)i * 32 * MiB, 32 * MiB);
	n = (size_t)(allocated(st, "big") / CL);
	CHECK_EQ(n - n0, 16384);
	printf("plus 1 GiB dense: index %zu bytes (%.1f per dense cluster)\n",
	       bal_vol_index_mem(v), (double)(bal_vol_index_mem(v) - mem) / 16384.0);
	CHECK(bal_vol_index_mem(v) - mem < 16384 * 20);
	/* Block status over the whole volume stays cheap and exact. */
	CHECK_EQ(bal_vol_block_status(v, 0, 16 * TiB, e, 8, &n), 0);
	CHECK_EQ(n, 8);
	CHECK_EQ(e[0].flags, BAL_EXT_HOLE | BAL_EXT_ZERO);
	CHECK_EQ(e[1].flags, 0);
	CHECK_EQ(e[1].len, CL);
	CHECK_EQ(bal_vol_block_status(v, 8 * TiB - CL, 1 * GiB + 2 * CL, e, 8, &n), 0);
	CHECK(n >= 2);
	CHECK_EQ(e[1].flags, 0);
	CHECK(e[1].len >= 1 * GiB);
	/* Rebuilt in key order at open: about 32 bytes per scattered cluster. */
	bal_vol_close(v);
	bal_vstore_close(st);
	st = store_open();
	v = vopen(st, "big");
	printf("after reopen: index %zu bytes\n", bal_vol_index_mem(v));
	CHECK(bal_vol_index_mem(v) < n0 * 34 + 16384 * 20);
	/* Trim everything: the index is empty again. */
	CHECK_EQ(bal_vol_trim(v, 0, 16 * TiB), 0);
	CHECK_EQ(allocated(st, "big"), 0);
	CHECK(bal_vol_index_mem(v) < 4096);
	bal_vol_close(v);
	CHECK_EQ(bal_vstore_delete(st, "big", false, false), 0);
	bal_vstore_close(st);
	printf("ok - index memory follows allocated clusters\n");
}

/* Freed clusters are reused only after a sync cycle made the unmap durable. */
static void test_reuse(void)
{
	struct bal_vstore *st;
	uint8_t *buf = malloc(CL), *rb = malloc(CL);
	struct bal_volume *a, *b;
	char dir[100];
	struct bal_pool_stats ps;
	uint64_t pa, pb, cycles, free0;
	unsigned tok;

	CHECK(buf && rb);
	memset(buf, 0xcd, CL);
	/* A new pool: no free cluster, so the next allocation is telling. */
	snprintf(dir, sizeof(dir), "%s/reuse", tmproot);
	st = store_open_dir(dir);
	CHECK_EQ(bal_vstore_create(st, "a", 16 * CL), 0);
	CHECK_EQ(bal_vstore_create(st, "b", 16 * CL), 0);
	a = vopen(st, "a");
	b = vopen(st, "b");
	vwrite(st, a, 0, CL, buf);
	pa = rmap1(a, 0, CL);
	cycles = bal_vstore_sync_cycles(st);
	CHECK_EQ(bal_vol_trim(a, 0, CL), 0);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.free, 0);
	pb = wmap1(b, 15 * CL, 1);
	/* Only a cycle that started after the trim may have recycled it. */
	if (pb == pa)
		CHECK(bal_vstore_sync_cycles(st) > cycles);
	CHECK_EQ(bal_vol_trim(b, 15 * CL, CL), 0);
	/* Two syncs: the first makes the unmapping durable and recycles. */
	CHECK_EQ(bal_vstore_sync(st), 0);
	CHECK_EQ(bal_vstore_sync(st), 0);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.pending, 0);
	CHECK(ps.free >= 1);
	/* The reused cluster reads as zeroes: it was punched. */
	pb = wmap1(b, 15 * CL, 1);
	CHECK_EQ(pb, pa);
	vread(st, b, 15 * CL, CL, rb);
	CHECK(is_zero(rb, CL));
	/*
	 * The timer recycles without any sync request, but not past a pool I/O
	 * that began before the trim (the I/O guard).
	 */
	bal_vstore_pool_stats(st, &ps);
	free0 = ps.free;
	tok = bal_vstore_io_begin(st);
	CHECK_EQ(bal_vol_trim(b, 15 * CL, CL), 0);
	usleep(2500 * 1000);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.free, free0);
	bal_vstore_io_end(st, tok);
	for (int i = 0; i < 50; i++) {
		bal_vstore_pool_stats(st, &ps);
		if (!ps.pending && ps.free == free0 + 1)
			break;
		usleep(100 * 1000);
	}
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.pending, 0);
	CHECK_EQ(ps.free, free0 + 1);
	bal_vol_close(a);
	bal_vol_close(b);
	CHECK_EQ(bal_vstore_delete(st, "a", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "b", false, false), 0);
	bal_vstore_close(st);
	free(buf);
	free(rb);
	printf("ok - freed clusters reused only after a sync cycle\n");
}

static void test_delete_open(void)
{
	struct bal_vstore *st = store_open();
	struct bal_seg s[MAXSEGS];
	struct bal_extent e[2];
	struct bal_vol_info info;
	struct bal_pool_stats ps;
	struct bal_volume *v, *v2, *nv;
	size_t n;

	CHECK_EQ(bal_vstore_create(st, "d", 16 * CL), 0);
	v = vopen(st, "d");
	v2 = vopen(st, "d");
	CHECK_EQ(bal_vstore_info(st, "d", &info), 0);
	CHECK_EQ(info.connections, 2);
	wmap1(v, 0, 4 * CL);
	CHECK_EQ(bal_vstore_delete(st, "d", false, false), -EBUSY);
	CHECK_EQ(bal_vstore_delete(st, "d", true, false), 0);
	CHECK(bal_vol_is_deleted(v) && bal_vol_is_deleted(v2));
	CHECK_EQ(bal_vol_map_read(v, 0, 512, s, MAXSEGS, &n), -ESHUTDOWN);
	CHECK_EQ(bal_vol_map_write(v, 0, 512, s, MAXSEGS, &n), -ESHUTDOWN);
	CHECK_EQ(bal_vol_trim(v, 0, 512), -ESHUTDOWN);
	CHECK_EQ(bal_vol_zero(v2, 0, 512, false), -ESHUTDOWN);
	CHECK_EQ(bal_vol_block_status(v2, 0, 512, e, 2, &n), -ESHUTDOWN);
	CHECK_EQ(bal_vstore_info(st, "d", &info), -ENOENT);
	CHECK_EQ(bal_vol_open(st, "d", &nv), -ENOENT);
	/* The name is free again; the new volume starts empty. */
	CHECK_EQ(bal_vstore_create(st, "d", 16 * CL), 0);
	nv = vopen(st, "d");
	CHECK_EQ(rmap1(nv, 0, 4 * CL), BAL_SEG_HOLE);
	/* Clusters stay in use until the last handle closes. */
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 4);
	bal_vol_close(v);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 4);
	bal_vol_close(v2);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 0);
	bal_vol_close(nv);
	CHECK_EQ(bal_vstore_delete(st, "d", false, false), 0);
	bal_vstore_close(st);
	printf("ok - forced delete of an open volume\n");
}

static void test_fault(void)
{
	struct bal_vstore *st = store_open();
	struct bal_pool_stats ps;
	struct bal_volume *v, *v2;

	CHECK_EQ(bal_vstore_create(st, "f", 16 * CL), 0);
	v = vopen(st, "f");
	wmap1(v, 0, 3 * CL);
	CHECK_EQ(bal_vstore_sync(st), 0);
	/* The map log is empty: catalog changes own the failing write. */
	bal_kv_fail_write_after(1);
	CHECK_EQ(bal_vstore_create(st, "g", CL), -EIO);
	CHECK_EQ(bal_vol_open(st, "g", &v2), -ENOENT);
	bal_kv_fail_write_after(1);
	CHECK_EQ(bal_vstore_delete(st, "f", true, false), -EIO);
	CHECK(!bal_vol_is_deleted(v));
	CHECK(rmap1(v, 0, 3 * CL) != BAL_SEG_HOLE);
	/* A failed map-log write fails that sync and every later one. */
	bal_kv_fail_write_after(1);
	wmap1(v, 4 * CL, CL);
	CHECK_EQ(bal_vstore_sync(st), -EIO);
	CHECK_EQ(bal_vstore_sync(st), -EIO);
	bal_kv_fail_write_after(0);
	bal_vol_close(v);
	bal_vstore_close(st);
	/* After a restart: the synced mappings are there, the lost one is not. */
	st = store_open();
	v = vopen(st, "f");
	CHECK(rmap1(v, 0, 3 * CL) != BAL_SEG_HOLE);
	CHECK_EQ(rmap1(v, 4 * CL, CL), BAL_SEG_HOLE);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 3);
	bal_vol_close(v);
	CHECK_EQ(bal_vstore_delete(st, "f", false, false), 0);
	bal_vstore_close(st);
	printf("ok - RocksDB write failures: catalog unchanged, map log sticky\n");
}

/* The pool cannot grow: -ENOSPC, and the failed request maps nothing. */
static void test_enospc(void)
{
	struct rlimit old, lim;
	struct bal_seg *s = calloc(bal_vol_max_segs(32 * MiB), sizeof(*s));
	struct bal_pool_stats ps;
	struct bal_vstore *st;
	struct bal_volume *v;
	char dir[100];
	size_t n;
	int ret = 0;
	unsigned i;

	CHECK(s);
	snprintf(dir, sizeof(dir), "%s/enospc", tmproot);
	st = store_open_dir(dir);
	bal_pool_set_reserve(st->pool, false);
	CHECK_EQ(bal_vstore_create(st, "full", 4 * GiB), 0);
	v = vopen(st, "full");
	/* The pool grows in 1 GiB steps; forbid files past 1 GiB. */
	signal(SIGXFSZ, SIG_IGN);
	CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1 * GiB;
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (i = 0; i < 64 && ret == 0; i++)
		ret = bal_vol_map_write(v, (uint64_t)i * 32 * MiB, 32 * MiB, s,
					bal_vol_max_segs(32 * MiB), &n);
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	CHECK_EQ(ret, -ENOSPC);
	CHECK_EQ(i, 33);
	CHECK_EQ(allocated(st, "full"), 1 * GiB);
	CHECK_EQ(rmap1(v, 1 * GiB, 32 * MiB), BAL_SEG_HOLE);
	bal_vstore_pool_stats(st, &ps);
	CHECK_EQ(ps.used, 16384);
	/* Once the file may grow again, so may the volume. */
	wmap1(v, 1 * GiB, 512);
	bal_vol_close(v);
	bal_vstore_close(st);
	free(s);
	printf("ok - ENOSPC when the pool cannot grow\n");
}

struct sync_count {
	pthread_mutex_t lock;
	unsigned done, errors;
};

static void sync_cb(void *arg, int err)
{
	struct sync_count *c = arg;

	pthread_mutex_lock(&c->lock);
	c->done++;
	c->errors += err != 0;
	pthread_mutex_unlock(&c->lock);
}

static void *sync_thread(void *arg)
{
	struct bal_vstore *st = arg;

	for (int i = 0; i < 20; i++)
		CHECK_EQ(bal_vstore_sync(st), 0);
	return NULL;
}

static void test_sync(void)
{
	struct bal_vstore *st = store_open();
	struct sync_count c = { .done = 0 };
	pthread_t th[4];
	uint64_t cycles;

	pthread_mutex_init(&c.lock, NULL);
	cycles = bal_vstore_sync_cycles(st);
	for (int i = 0; i < 100; i++)
		CHECK_EQ(bal_vstore_sync_async(st, sync_cb, &c), 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, sync_thread, st), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	/* Requests share cycles. */
	CHECK(bal_vstore_sync_cycles(st) - cycles <= 81);
	/* Queued callbacks run at the latest in the final cycle of close. */
	for (int i = 0; i < 10; i++)
		CHECK_EQ(bal_vstore_sync_async(st, sync_cb, &c), 0);
	bal_vstore_close(st);
	CHECK_EQ(c.done, 110);
	CHECK_EQ(c.errors, 0);
	pthread_mutex_destroy(&c.lock);
	printf("ok - sync requests\n");
}

/* ---- randomized run against a model ---- */

#define RVOLS 2
#define RSIZE (48 * CL + 4096)

struct model {
	struct bal_volume *v;
	uint8_t *data;
};

static void model_check(struct bal_vstore *st, struct model *m)
{
	static uint8_t buf[RSIZE];
	struct bal_seg s[64];
	uint64_t phys[RVOLS * 64];
	size_t n, np = 0;

	for (int i = 0; i < RVOLS; i++) {
		vread(st, m[i].v, 0, RSIZE, buf);
		CHECK(!memcmp(buf, m[i].data, RSIZE));
		/* No pool cluster belongs to two mappings. */
		CHECK_EQ(bal_vol_map_read(m[i].v, 0, RSIZE, s, 64, &n), 0);
		for (size_t j = 0; j < n; j++) {
			for (uint64_t o = 0; s[j].phys != BAL_SEG_HOLE && o < s[j].len; o += CL)
				phys[np++] = (s[j].phys + o) / CL;
		}
	}
	for (size_t i = 0; i < np; i++) {
		for (size_t j = i + 1; j < np; j++)
			CHECK(phys[i] != phys[j]);
	}
}

static void model_status(struct model *m)
{
	struct bal_extent e[64];
	uint64_t off = rnd() % RSIZE, len = rnd() % (RSIZE - off) + 1, pos;
	size_t n;

	CHECK_EQ(bal_vol_block_status(m->v, off, len, e, 64, &n), 0);
	pos = off;
	for (size_t i = 0; i < n; i++) {
		CHECK(e[i].len > 0);
		if (i)
			CHECK(e[i].flags != e[i - 1].flags);
		if (e[i].flags & BAL_EXT_ZERO)
			CHECK(is_zero(m->data + pos, e[i].len));
		pos += e[i].len;
	}
	CHECK(pos <= off + len && pos > off);
}

static void test_random(void)
{
	static uint8_t wbuf[RSIZE];
	struct bal_vstore *st = store_open();
	struct model m[RVOLS];
	char name[16];
	unsigned ops[7] = { 0 };

	for (int i = 0; i < RVOLS; i++) {
		snprintf(name, sizeof(name), "rnd%d", i);
		CHECK_EQ(bal_vstore_create(st, name, RSIZE), 0);
		m[i].v = vopen(st, name);
		m[i].data = calloc(1, RSIZE);
		CHECK(m[i].data);
	}
	for (unsigned it = 0; it < 3000; it++) {
		struct model *mv = &m[rnd() % RVOLS];
		unsigned op = (unsigned)(rnd() % 100);
		uint64_t off, len;

		/* Mostly sector-aligned ranges, some byte-granular. */
		off = rnd() % RSIZE;
		len = rnd() % (rnd() % 4 ? 3 * CL : RSIZE - off) + 1;
		if (rnd() % 4) {
			off &= ~UINT64_C(511);
			len = (len + 511) & ~UINT64_C(511);
		}
		if (off + len > RSIZE)
			len = RSIZE - off;
		if (op < 40) {
			uint8_t c = (uint8_t)(rnd() | 1);

			memset(wbuf, c, len);
			vwrite(st, mv->v, off, (uint32_t)len, wbuf);
			memcpy(mv->data + off, wbuf, len);
			ops[0]++;
		} else if (op < 55) {
			CHECK_EQ(bal_vol_trim(mv->v, off, len), 0);
			memset(mv->data + off, 0, len);
			ops[1]++;
		} else if (op < 70) {
			CHECK_EQ(bal_vol_zero(mv->v, off, len, op & 1), 0);
			memset(mv->data + off, 0, len);
			ops[2]++;
		} else if (op < 85) {
			model_status(mv);
			ops[3]++;
		} else if (op < 98) {
			model_check(st, m);
			ops[4]++;
		} else if (op < 99 || rnd() % 2) {
			/* Syncs and reopens are slow (fsync): keep them rare. */
			CHECK_EQ(bal_vstore_sync(st), 0);
			ops[5]++;
		} else {
			for (int i = 0; i < RVOLS; i++)
				bal_vol_close(m[i].v);
			bal_vstore_close(st);
			st = store_open();
			for (int i = 0; i < RVOLS; i++) {
				snprintf(name, sizeof(name), "rnd%d", i);
				m[i].v = vopen(st, name);
			}
			ops[6]++;
		}
	}
	model_check(st, m);
	printf("random: %u writes, %u trims, %u zeroes, %u status, %u checks, %u syncs, %u reopens\n",
	       ops[0], ops[1], ops[2], ops[3], ops[4], ops[5], ops[6]);
	for (int i = 0; i < RVOLS; i++) {
		bal_vol_close(m[i].v);
		free(m[i].data);
		snprintf(name, sizeof(name), "rnd%d", i);
		CHECK_EQ(bal_vstore_delete(st, name, false, false), 0);
	}
	bal_vstore_close(st);
	printf("ok - randomized run against a model\n");
}

/* ---- concurrent volumes: the allocator and sync under load ---- */

#define CTHREADS 3

struct cworker {
	struct bal_vstore *st;
	struct model m;
	uint64_t seed;
};

static void *cworker_main(void *arg)
{
	struct cworker *w = arg;
	uint8_t *buf = malloc(RSIZE);

	CHECK(buf);
	rng_state = w->seed;
	for (unsigned it = 0; it < 600; it++) {
		uint64_t off = rnd() % RSIZE, len = rnd() % (2 * CL) + 1;
		unsigned op = (unsigned)(rnd() % 10);

		if (off + len > RSIZE)
			len = RSIZE - off;
		if (op < 5) {
			memset(buf, (int)(rnd() | 1), len);
			vwrite(w->st, w->m.v, off, (uint32_t)len, buf);
			memcpy(w->m.data + off, buf, len);
		} else if (op < 7) {
			CHECK_EQ(bal_vol_trim(w->m.v, off, len), 0);
			memset(w->m.data + off, 0, len);
		} else if (op < 8) {
			CHECK_EQ(bal_vol_zero(w->m.v, off, len, rnd() & 1), 0);
			memset(w->m.data + off, 0, len);
		} else {
			vread(w->st, w->m.v, 0, RSIZE, buf);
			CHECK(!memcmp(buf, w->m.data, RSIZE));
		}
	}
	free(buf);
	return NULL;
}

static void test_concurrent(void)
{
	struct bal_vstore *st = store_open();
	struct cworker w[CTHREADS];
	struct model all[RVOLS];
	pthread_t th[CTHREADS];
	char name[16];

	for (int i = 0; i < CTHREADS; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		CHECK_EQ(bal_vstore_create(st, name, RSIZE), 0);
		w[i].st = st;
		w[i].m.v = vopen(st, name);
		w[i].m.data = calloc(1, RSIZE);
		w[i].seed = rnd() | 1;
		CHECK(w[i].m.data);
	}
	for (int i = 0; i < CTHREADS; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, cworker_main, &w[i]), 0);
	for (int i = 0; i < 10; i++)
		CHECK_EQ(bal_vstore_sync(st), 0);
	for (int i = 0; i < CTHREADS; i++)
		pthread_join(th[i], NULL);
	/* Every pair: contents match and no pool cluster is shared. */
	for (int i = 0; i < CTHREADS; i++) {
		for (int j = i + 1; j < CTHREADS; j++) {
			all[0] = w[i].m;
			all[1] = w[j].m;
			model_check(st, all);
		}
	}
	for (int i = 0; i < CTHREADS; i++) {
		bal_vol_close(w[i].m.v);
		free(w[i].m.data);
		snprintf(name, sizeof(name), "c%d", i);
		CHECK_EQ(bal_vstore_delete(st, name, false, false), 0);
	}
	bal_vstore_close(st);
	printf("ok - concurrent volumes\n");
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 0x2545f4914f6cdd1dULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	bal_log_set_level(getenv("BAL_TEST_VERBOSE") ? BAL_LOG_DEBUG : BAL_LOG_ERROR);
	rng_state = seed ? seed : 1;
	printf("seed 0x%" PRIx64 "\n", seed);
	snprintf(tmproot, sizeof(tmproot), "/tmp/bal-test-volume.XXXXXX");
	CHECK(mkdtemp(tmproot));
	/* The store creates its own directory. */
	snprintf(tmpdir, sizeof(tmpdir), "%s/data", tmproot);
	atexit(rm_tmpdir);
	test_catalog();
	test_map();
	test_trim_zero();
	test_odd_size();
	test_reopen();
	test_busy();
	test_sparse_memory();
	test_reuse();
	test_delete_open();
	test_fault();
	test_enospc();
	test_sync();
	test_random();
	test_concurrent();
	printf("%u checks passed, 0 failed\n", atomic_load(&checks));
	return 0;
}
