/* SPDX-License-Identifier: MIT */
/*
 * Unit test of snapshots and clones (volume/snap.c, clone.c, versions.c,
 * the redirect-on-write path of volume.c): isolation, partial redirect,
 * trim of shared clusters, exact space reclaim on snapshot delete, chains,
 * clones and clones of clones, flatten, diff, 1000 snapshots, restart, and
 * a seeded randomized run against a byte and cluster model of every volume
 * and snapshot.  Usage: test_snap [seed].  Works under /tmp.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tests/unit/volio.h"
#include "common/log.h"
#include "volume/volume.h"
#include "volume/volume_internal.h"

#define CL BAL_CLUSTER_SIZE
#define MiB (1024ULL * 1024)

static uint64_t seed;
static char tmproot[64], tmpdir[80];



static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void rm_tmpdir(void)
{
	check_rmtree(tmproot);
}

static struct bal_vstore *store_open(void)
{
	struct bal_vstore_opts o = { .opts_size = sizeof(o), .dir = tmpdir };
	struct bal_vstore *st = NULL;

	CHECK_EQ(bal_vstore_open(&o, &st), 0);
	return st;
}

/* A fresh store: remove the directory first. */
static struct bal_vstore *store_new(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	CHECK_EQ(system(cmd), 0);
	return store_open();
}

static struct bal_volume *vopen(struct bal_vstore *st, const char *name)
{
	struct bal_volume *v = NULL;

	CHECK_EQ(bal_vol_open(st, name, &v), 0);
	return v;
}

/* Write @len bytes of @c at @off of volume or snapshot @name. */
static void fill(struct bal_vstore *st, const char *name, uint64_t off, uint32_t len, int c)
{
	uint8_t *b = malloc(len);
	struct bal_volume *v = vopen(st, name);

	CHECK(b);
	memset(b, c, len);
	vwrite(st, v, off, len, b);
	bal_vol_close(v);
	free(b);
}

/* Every byte of [off, off+len) of @name is @c. */
static bool holds(struct bal_vstore *st, const char *name, uint64_t off, uint32_t len, int c)
{
	uint8_t *b = malloc(len);
	struct bal_volume *v = vopen(st, name);
	bool ok = true;

	CHECK(b);
	vread(st, v, off, len, b);
	for (uint32_t i = 0; i < len && ok; i++)
		ok = b[i] == (uint8_t)c;
	bal_vol_close(v);
	free(b);
	return ok;
}

/* Pool clusters in use, after freed ones were recycled. */
static uint64_t used(struct bal_vstore *st)
{
	struct bal_store_stats s;

	CHECK_EQ(bal_vstore_sync(st), 0);
	CHECK_EQ(bal_vstore_sync(st), 0);
	CHECK_EQ(bal_vstore_stats(st, &s), 0);
	CHECK_EQ(s.pool_clusters_pending, 0);
	return s.pool_clusters_used;
}

static void snap(struct bal_vstore *st, const char *vol, const char *name)
{
	CHECK_EQ(bal_vstore_snap_create(st, vol, name, NULL), 0);
}

static void test_isolation(void)
{
	struct bal_vstore *st = store_new();
	struct bal_seg s[4];
	struct bal_extent e[4];
	struct bal_snap_info si;
	struct bal_vol_info vi;
	struct bal_volume *sv;
	size_t n;

	CHECK_EQ(bal_vstore_create(st, "v", 16 * CL), 0);
	fill(st, "v", 0, 4 * CL, 'A');
	CHECK_EQ(bal_vstore_snap_create(st, "v", "s1", &si), 0);
	CHECK_EQ(si.epoch, 1);
	CHECK_EQ(si.size, 16 * CL);
	CHECK_EQ(si.allocated, 4 * CL);
	CHECK_EQ(si.exclusive, 0);
	CHECK_EQ(bal_vstore_snap_create(st, "v", "s1", NULL), -EEXIST);
	CHECK_EQ(bal_vstore_snap_create(st, "v", "bad@name", NULL), -EINVAL);
	CHECK_EQ(bal_vstore_snap_create(st, "nope", "s", NULL), -ENOENT);
	fill(st, "v", 0, 2 * CL, 'B');
	CHECK(holds(st, "v", 0, 2 * CL, 'B') && holds(st, "v", 2 * CL, 2 * CL, 'A'));
	CHECK(holds(st, "v@s1", 0, 4 * CL, 'A') && holds(st, "v@s1", 4 * CL, 12 * CL, 0));
	CHECK_EQ(used(st), 6);
	CHECK_EQ(bal_vstore_info(st, "v", &vi), 0);
	CHECK_EQ(vi.allocated, 4 * CL);
	CHECK_EQ(vi.exclusive, 2 * CL);
	CHECK_EQ(vi.shared, 2 * CL);
	CHECK_EQ(vi.snapshots, 1);
	CHECK_EQ(bal_vstore_snap_info(st, "v", "s1", &si), 0);
	CHECK_EQ(si.exclusive, 2 * CL);
	/* A snapshot export is read-only and reports its own allocation. */
	sv = vopen(st, "v@s1");
	CHECK(bal_vol_is_readonly(sv));
	CHECK(!strcmp(bal_vol_name(sv), "v@s1"));
	CHECK_EQ(bal_vol_size(sv), 16 * CL);
	CHECK_EQ(bal_vol_map_write(sv, 0, 512, s, 4, &n), -EPERM);
	CHECK_EQ(bal_vol_trim(sv, 0, CL), -EPERM);
	CHECK_EQ(bal_vol_zero(sv, 0, CL, false), -EPERM);
	CHECK_EQ(bal_vol_block_status(sv, 0, 16 * CL, e, 4, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(e[0].len, 4 * CL);
	CHECK_EQ(e[0].flags, 0);
	CHECK_EQ(e[1].flags, BAL_EXT_HOLE | BAL_EXT_ZERO);
	/* Open exports and snapshots block deletion. */
	CHECK_EQ(bal_vstore_snap_delete(st, "v", "s1"), -EBUSY);
	CHECK_EQ(bal_vstore_delete(st, "v", false, false), -ENOTEMPTY);
	CHECK_EQ(bal_vstore_delete(st, "v", false, true), -EBUSY);
	bal_vol_close(sv);
	CHECK_EQ(bal_vol_open(st, "v@none", &sv), -ENOENT);
	CHECK_EQ(bal_vol_open(st, "v@", &sv), -ENOENT);
	CHECK_EQ(bal_vstore_snap_delete(st, "v", "s1"), 0);
	CHECK_EQ(bal_vstore_snap_delete(st, "v", "s1"), -ENOENT);
	CHECK_EQ(used(st), 4);
	/* Without snapshots, writes go in place again. */
	fill(st, "v", 0, 4 * CL, 'C');
	CHECK_EQ(used(st), 4);
	CHECK_EQ(bal_vstore_delete(st, "v", false, false), 0);
	CHECK_EQ(used(st), 0);
	bal_vstore_close(st);
	printf("ok - snapshot isolation, read-only export, exact reclaim\n");
}

static void test_partial_trim(void)
{
	struct bal_vstore *st = store_new();

	CHECK_EQ(bal_vstore_create(st, "p", 8 * CL), 0);
	fill(st, "p", 0, 4 * CL, 'A');
	snap(st, "p", "s");
	/* A partial write keeps the bytes it does not cover. */
	fill(st, "p", 1000, 4096, 'B');
	CHECK(holds(st, "p", 0, 1000, 'A') && holds(st, "p", 1000, 4096, 'B') &&
	      holds(st, "p", 5096, CL - 5096, 'A'));
	CHECK(holds(st, "p@s", 0, CL, 'A'));
	/* A second write to the redirected cluster goes in place. */
	fill(st, "p", 100, 10, 'C');
	CHECK_EQ(used(st), 5);
	/* Trim and punch of shared clusters keep the snapshot's data. */
	{
		struct bal_volume *v = vopen(st, "p");

		CHECK_EQ(bal_vol_trim(v, CL, CL), 0);
		CHECK_EQ(bal_vol_zero(v, 2 * CL + 10, 20, true), 0);
		CHECK_EQ(bal_vol_zero(v, 3 * CL, CL, false), 0);
		bal_vol_close(v);
	}
	CHECK(holds(st, "p", CL, CL, 0) && holds(st, "p", 2 * CL, 10, 'A') &&
	      holds(st, "p", 2 * CL + 10, 20, 0) && holds(st, "p", 2 * CL + 30, CL - 30, 'A') &&
	      holds(st, "p", 3 * CL, CL, 0));
	CHECK(holds(st, "p@s", 0, 4 * CL, 'A'));
	/* 4 snapshot clusters + live: cluster 0, 2 (redirected), 3 (zero). */
	CHECK_EQ(used(st), 7);
	CHECK_EQ(bal_vstore_snap_delete(st, "p", "s"), 0);
	CHECK_EQ(used(st), 3);
	CHECK_EQ(bal_vstore_delete(st, "p", false, false), 0);
	bal_vstore_close(st);
	printf("ok - partial redirect, trim and zero of shared clusters\n");
}

static void test_chain(void)
{
	struct bal_vstore *st = store_new();
	struct bal_snap_info si;

	CHECK_EQ(bal_vstore_create(st, "c", 8 * CL), 0);
	fill(st, "c", 0, 4 * CL, '1');
	snap(st, "c", "s1");
	fill(st, "c", 0, 2 * CL, '2');		/* clusters 0,1: born after s1 */
	snap(st, "c", "s2");
	fill(st, "c", CL, 2 * CL, '3');		/* 1 (s2 only), 2 (s1 and s2) die */
	snap(st, "c", "s3");
	fill(st, "c", 0, CL, '4');		/* 0 (s2, s3) dies */
	CHECK_EQ(used(st), 4 + 2 + 2 + 1);
	CHECK_EQ(bal_vstore_snap_info(st, "c", "s2", &si), 0);
	CHECK_EQ(si.exclusive, CL);		/* cluster 1 of '2' */
	/* Delete the middle one: only what s2 alone held goes. */
	CHECK_EQ(bal_vstore_snap_delete(st, "c", "s2"), 0);
	CHECK_EQ(used(st), 8);
	CHECK(holds(st, "c@s1", 0, 4 * CL, '1'));
	CHECK(holds(st, "c@s3", 0, CL, '2') && holds(st, "c@s3", CL, 2 * CL, '3') &&
	      holds(st, "c@s3", 3 * CL, CL, '1'));
	CHECK(holds(st, "c", 0, CL, '4') && holds(st, "c", CL, 2 * CL, '3'));
	/* The oldest (with it clusters 0-2 of '1'), then the newest. */
	CHECK_EQ(bal_vstore_snap_delete(st, "c", "s1"), 0);
	CHECK_EQ(used(st), 5);
	CHECK(holds(st, "c@s3", 0, CL, '2') && holds(st, "c@s3", 3 * CL, CL, '1'));
	CHECK_EQ(bal_vstore_snap_delete(st, "c", "s3"), 0);
	CHECK_EQ(used(st), 4);
	CHECK_EQ(bal_vstore_delete(st, "c", false, false), 0);
	bal_vstore_close(st);
	printf("ok - snapshot chain, delete in the middle\n");
}

static void test_clone(void)
{
	struct bal_vstore *st = store_new();
	struct bal_vol_info vi;
	struct bal_volume *v;

	CHECK_EQ(bal_vstore_create(st, "base", 8 * CL), 0);
	fill(st, "base", 0, 4 * CL, 'A');
	snap(st, "base", "gold");
	CHECK_EQ(bal_vstore_clone(st, "base", "gold", "k1"), 0);
	CHECK_EQ(bal_vstore_clone(st, "base", "gold", "k1"), -EEXIST);
	CHECK_EQ(bal_vstore_clone(st, "base", "none", "k2"), -ENOENT);
	CHECK_EQ(bal_vstore_info(st, "k1", &vi), 0);
	CHECK(!strcmp(vi.parent, "base@gold"));
	CHECK_EQ(vi.allocated, 4 * CL);
	CHECK_EQ(vi.shared, 4 * CL);
	CHECK_EQ(vi.exclusive, 0);
	CHECK(holds(st, "k1", 0, 4 * CL, 'A') && holds(st, "k1", 4 * CL, 4 * CL, 0));
	CHECK_EQ(used(st), 4);
	/* Writes to the clone and to the parent do not cross. */
	fill(st, "k1", 10, 10, 'K');
	fill(st, "base", 0, 2 * CL, 'B');
	CHECK(holds(st, "k1", 0, 10, 'A') && holds(st, "k1", 10, 10, 'K') &&
	      holds(st, "k1", 20, 4 * CL - 20, 'A'));
	CHECK(holds(st, "base@gold", 0, 4 * CL, 'A'));
	CHECK(holds(st, "base", 0, 2 * CL, 'B'));
	/* Trim on the clone hides the parent without allocating. */
	v = vopen(st, "k1");
	CHECK_EQ(bal_vol_trim(v, CL, CL), 0);
	CHECK_EQ(bal_vol_zero(v, 2 * CL + 5, 5, true), 0);
	bal_vol_close(v);
	CHECK(holds(st, "k1", CL, CL, 0) && holds(st, "k1", 2 * CL, 5, 'A') &&
	      holds(st, "k1", 2 * CL + 5, 5, 0));
	CHECK_EQ(used(st), 4 + 2 + 2);
	/* A snapshot with clones stays; a clone of a clone reads through both. */
	CHECK_EQ(bal_vstore_snap_delete(st, "base", "gold"), -EBUSY);
	CHECK_EQ(bal_vstore_delete(st, "base", false, true), -EBUSY);
	snap(st, "k1", "ks");
	CHECK_EQ(bal_vstore_clone(st, "k1", "ks", "k2"), 0);
	CHECK(holds(st, "k2", 0, 10, 'A') && holds(st, "k2", 10, 10, 'K') &&
	      holds(st, "k2", CL, CL, 0) && holds(st, "k2", 3 * CL, CL, 'A'));
	fill(st, "k2", 3 * CL, 100, 'Z');
	CHECK(holds(st, "k1", 3 * CL, CL, 'A') && holds(st, "k2", 3 * CL + 100, CL - 100, 'A'));
	/* Flatten k1 is refused while it has snapshots; flatten k2 works. */
	CHECK_EQ(bal_vstore_flatten(st, "k1"), -EBUSY);
	CHECK_EQ(bal_vstore_flatten(st, "base"), -EINVAL);
	CHECK_EQ(bal_vstore_flatten(st, "k2"), 0);
	CHECK_EQ(bal_vstore_info(st, "k2", &vi), 0);
	CHECK(!vi.parent[0]);
	CHECK_EQ(vi.shared, 0);
	CHECK(holds(st, "k2", 0, 10, 'A') && holds(st, "k2", 10, 10, 'K') &&
	      holds(st, "k2", CL, CL, 0) && holds(st, "k2", 3 * CL + 100, CL - 100, 'A'));
	CHECK_EQ(bal_vstore_snap_delete(st, "k1", "ks"), 0);
	CHECK_EQ(bal_vstore_delete(st, "k1", false, false), 0);
	CHECK_EQ(bal_vstore_snap_delete(st, "base", "gold"), 0);
	CHECK(holds(st, "k2", 0, 10, 'A') && holds(st, "k2", 2 * CL, 5, 'A'));
	/* base: 4 live; k2: its own 4 data clusters (0, 2, 3 redirected or copied). */
	CHECK_EQ(used(st), 4 + 3);
	CHECK_EQ(bal_vstore_delete(st, "k2", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "base", false, false), 0);
	CHECK_EQ(used(st), 0);
	bal_vstore_close(st);
	printf("ok - clones, clone of a clone, flatten\n");
}

static void test_diff(void)
{
	struct bal_vstore *st = store_new();
	struct bal_range *r;
	size_t n;
	uint64_t picks[16];

	CHECK_EQ(bal_vstore_create(st, "d", 256 * CL), 0);
	fill(st, "d", 0, 2 * CL, 'a');
	snap(st, "d", "a");
	/* N scattered clusters (never neighbours). */
	for (int i = 0; i < 16; i++) {
		picks[i] = 4 + (uint64_t)i * 15 + rnd() % 10;
		fill(st, "d", picks[i] * CL + 7, 100, 'x');
	}
	snap(st, "d", "b");
	CHECK_EQ(bal_vstore_snap_diff(st, "d", "a", "b", &r, &n), 0);
	CHECK_EQ(n, 16);
	for (int i = 0; i < 16; i++) {
		CHECK_EQ(r[i].off, picks[i] * CL);
		CHECK_EQ(r[i].len, CL);
	}
	free(r);
	CHECK_EQ(bal_vstore_snap_diff(st, "d", NULL, "a", &r, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(r[0].off, 0);
	CHECK_EQ(r[0].len, 2 * CL);
	free(r);
	CHECK_EQ(bal_vstore_snap_diff(st, "d", "b", "a", &r, &n), -EINVAL);
	CHECK_EQ(bal_vstore_snap_diff(st, "d", "a", "zz", &r, &n), -ENOENT);
	CHECK_EQ(bal_vstore_snap_diff(st, "d", "b", "b", &r, &n), 0);
	CHECK_EQ(n, 0);
	free(r);
	CHECK_EQ(bal_vstore_delete(st, "d", false, true), 0);
	CHECK_EQ(used(st), 0);
	bal_vstore_close(st);
	printf("ok - diff lists exactly the changed clusters\n");
}

static void test_resize(void)
{
	struct bal_vstore *st = store_new();
	struct bal_snap_info si;

	CHECK_EQ(bal_vstore_create(st, "z", 8 * CL), 0);
	fill(st, "z", 0, 8 * CL, 'A');
	snap(st, "z", "s");
	CHECK_EQ(bal_vstore_clone(st, "z", "s", "zc"), 0);
	/* Shrinking a volume with a snapshot keeps the snapshot whole. */
	CHECK_EQ(bal_vstore_resize(st, "z", 2 * CL + 4096, true), 0);
	CHECK_EQ(bal_vstore_resize(st, "z", 8 * CL, false), 0);
	CHECK(holds(st, "z", 0, 2 * CL + 4096, 'A') && holds(st, "z", 2 * CL + 4096, 6 * CL - 4096, 0));
	CHECK(holds(st, "z@s", 0, 8 * CL, 'A'));
	CHECK_EQ(bal_vstore_snap_info(st, "z", "s", &si), 0);
	CHECK_EQ(si.size, 8 * CL);
	/* 8 in the snapshot, cluster 2 redirected for its zeroed tail. */
	CHECK_EQ(used(st), 9);
	/* A clone shrunk and grown again no longer shows its parent past the cut. */
	CHECK_EQ(bal_vstore_resize(st, "zc", CL + 512, true), 0);
	CHECK_EQ(bal_vstore_resize(st, "zc", 8 * CL, false), 0);
	CHECK(holds(st, "zc", 0, CL + 512, 'A') && holds(st, "zc", CL + 512, 7 * CL - 512, 0));
	CHECK_EQ(used(st), 10);
	bal_vstore_close(st);
	st = store_open();
	CHECK(holds(st, "zc", 0, CL + 512, 'A') && holds(st, "zc", CL + 512, 7 * CL - 512, 0));
	CHECK(holds(st, "z@s", 0, 8 * CL, 'A'));
	CHECK_EQ(bal_vstore_delete(st, "zc", false, false), 0);
	CHECK_EQ(bal_vstore_snap_delete(st, "z", "s"), 0);
	CHECK_EQ(used(st), 3);
	CHECK_EQ(bal_vstore_delete(st, "z", false, false), 0);
	bal_vstore_close(st);
	printf("ok - shrink with snapshots and of a clone\n");
}

struct snap_job {
	struct bal_vstore *st;
	int ret;
};

static void *snap_thread(void *arg)
{
	struct snap_job *j = arg;

	j->ret = bal_vstore_snap_create(j->st, "w", "s", NULL);
	return NULL;
}

/*
 * A write mapped before the snapshot and still in flight, and a write to
 * another part of the same cluster after the epoch moved (redirected):
 * the live volume must end up with both.
 */
static void test_inflight(void)
{
	struct bal_vstore *st = store_new();
	struct snap_job job = { st, -1 };
	uint8_t b[4096];
	struct bal_volume *v;
	struct bal_seg sg[2];
	pthread_t th;
	unsigned tok;
	uint32_t epoch = 0;
	size_t n;

	CHECK_EQ(bal_vstore_create(st, "w", 4 * CL), 0);
	fill(st, "w", 0, CL, 'A');
	v = vopen(st, "w");
	tok = bal_vstore_io_begin(st);
	CHECK_EQ(bal_vol_map_write(v, 0, 4096, sg, 2, &n), 0);
	CHECK_EQ(pthread_create(&th, NULL, snap_thread, &job), 0);
	for (int i = 0; i < 5000 && epoch < 2; i++) {
		pthread_mutex_lock(&v->rec->lock);
		epoch = v->rec->epoch;
		pthread_mutex_unlock(&v->rec->lock);
		usleep(1000);
	}
	CHECK_EQ(epoch, 2);
	memset(b, 'C', sizeof(b));
	vwrite(st, v, 8192, 4096, b);
	/* Now the first write lands, on the old cluster, and ends. */
	memset(b, 'B', sizeof(b));
	CHECK_EQ(pwrite(bal_vstore_pool_fd(st), b, 4096, (off_t)sg[0].phys), 4096);
	bal_vstore_io_end(st, tok);
	pthread_join(th, NULL);
	CHECK_EQ(job.ret, 0);
	bal_vol_close(v);
	CHECK(holds(st, "w", 0, 4096, 'B'));
	CHECK(holds(st, "w", 4096, 4096, 'A'));
	CHECK(holds(st, "w", 8192, 4096, 'C'));
	CHECK(holds(st, "w", 12288, CL - 12288, 'A'));
	CHECK(holds(st, "w@s", 0, 4096, 'B') && holds(st, "w@s", 4096, CL - 4096, 'A'));
	CHECK_EQ(bal_vstore_delete(st, "w", false, true), 0);
	bal_vstore_close(st);
	printf("ok - write in flight across snapshot creation\n");
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Index lookups done by one 32-cluster read of @name. */
static uint64_t read_cost(struct bal_vstore *st, const char *name)
{
	static uint8_t buf[32 * CL];
	struct bal_volume *v = vopen(st, name);
	uint64_t before = bal_vol_lookups(v), after;

	vread(st, v, 0, sizeof(buf), buf);
	after = bal_vol_lookups(v);
	bal_vol_close(v);
	return after - before;
}

static void test_many(void)
{
	struct bal_vstore *st = store_new();
	double t0, first = 0, last = 0;
	uint64_t cost0, cost1000, snapcost;
	struct bal_snap_info *si;
	char name[32];
	size_t n;

	CHECK_EQ(bal_vstore_create(st, "m", 64 * CL), 0);
	fill(st, "m", 0, 32 * CL, 'm');
	cost0 = read_cost(st, "m");
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "s%04d", i);
		t0 = now_sec();
		snap(st, "m", name);
		if (i < 100)
			first += now_sec() - t0;
		else if (i >= 900)
			last += now_sec() - t0;
		/* Churn: one cluster changes between snapshots. */
		fill(st, "m", (uint64_t)(i % 32) * CL, 512, 'a' + i % 26);
	}
	cost1000 = read_cost(st, "m");
	snapcost = read_cost(st, "m@s0500");
	printf("1000 snapshots: create %.2f ms (first 100) vs %.2f ms (last 100); live read %" PRIu64
	       " lookups with 0 and %" PRIu64 " with 1000 snapshots; snapshot read %" PRIu64 "\n",
	       first * 10, last * 10, cost0, cost1000, snapcost);
	CHECK_EQ(cost1000, cost0);
	CHECK(snapcost <= 2 * cost0);
	CHECK(last < first * 5 + 0.5);
	CHECK_EQ(bal_vstore_snap_list(st, "m", &si, &n), 0);
	CHECK_EQ(n, 1000);
	CHECK(!strcmp(si[0].name, "s0000") && !strcmp(si[999].name, "s0999"));
	CHECK(si[0].epoch < si[1].epoch);
	free(si);
	CHECK(holds(st, "m@s0000", 0, 512, 'm'));
	CHECK(holds(st, "m@s0031", 0, 512, 'a'));
	CHECK(holds(st, "m@s0032", 0, 512, 'a') && holds(st, "m@s0033", 0, 512, 'a' + 32 % 26));
	/* Survives a restart. */
	bal_vstore_close(st);
	st = store_open();
	CHECK(holds(st, "m@s0500", (uint64_t)(499 % 32) * CL, 512, 'a' + 499 % 26));
	CHECK(holds(st, "m@s0999", 0, 512, 'a' + 992 % 26));
	CHECK_EQ(read_cost(st, "m"), cost0);
	CHECK_EQ(bal_vstore_delete(st, "m", false, true), 0);
	CHECK_EQ(used(st), 0);
	bal_vstore_close(st);
	printf("ok - 1000 snapshots of one volume\n");
}

static void test_reopen(void)
{
	struct bal_vstore *st = store_new();
	struct bal_vol_info vi;
	uint64_t u;

	CHECK_EQ(bal_vstore_create(st, "r", 8 * CL), 0);
	fill(st, "r", 0, 4 * CL, 'A');
	snap(st, "r", "s1");
	fill(st, "r", 0, CL + 10, 'B');
	CHECK_EQ(bal_vstore_clone(st, "r", "s1", "rc"), 0);
	fill(st, "rc", 3 * CL, 10, 'C');
	snap(st, "r", "s2");
	fill(st, "r", 0, 10, 'D');
	u = used(st);
	bal_vstore_close(st);
	st = store_open();
	CHECK_EQ(used(st), u);
	CHECK(holds(st, "r@s1", 0, 4 * CL, 'A'));
	CHECK(holds(st, "r@s2", 0, CL + 10, 'B') && holds(st, "r@s2", CL + 10, CL - 10, 'A'));
	CHECK(holds(st, "r", 0, 10, 'D') && holds(st, "r", 10, CL, 'B'));
	CHECK(holds(st, "rc", 0, 3 * CL, 'A') && holds(st, "rc", 3 * CL, 10, 'C'));
	CHECK_EQ(bal_vstore_info(st, "rc", &vi), 0);
	CHECK(!strcmp(vi.parent, "r@s1"));
	/* Writes after the restart still redirect. */
	fill(st, "r", 2 * CL, 10, 'E');
	CHECK(holds(st, "r@s2", 2 * CL, CL, 'A'));
	CHECK_EQ(bal_vstore_snap_delete(st, "r", "s1"), -EBUSY);
	CHECK_EQ(bal_vstore_delete(st, "rc", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "r", false, true), 0);
	CHECK_EQ(used(st), 0);
	bal_vstore_close(st);
	printf("ok - restart keeps snapshots, clones and sharing\n");
}



/* ---- randomized run against a model ---- */

#define MV 4			/* volume slots */
#define MS 12			/* snapshot slots */
#define MCL 32			/* clusters per volume */
#define MSIZE (MCL * CL)

enum kind { K_NONE, K_DATA, K_ZERO, K_HOLE };

/* The own map of a volume: kind and version id of each cluster. */
struct mmap {
	uint8_t kind[MCL];
	uint32_t id[MCL];
};

struct mvol {
	bool used;
	char name[16];
	int psnap;		/* parent snapshot slot, -1 */
	struct mmap m;
	uint8_t *data;
};

struct msnap {
	bool used;
	int vol;
	char name[16];
	unsigned clones;
	struct mmap m;
	uint8_t *data;
};

static struct mvol mv[MV];
static struct msnap ms[MS];
static uint32_t next_vid = 1;
static unsigned mcount;

/* The parent chain shows data at @cl (what a clone copies or hides). */
static bool m_parent_data(int sslot, unsigned cl)
{
	while (sslot >= 0) {
		const struct msnap *s = &ms[sslot];

		if (s->m.kind[cl] != K_NONE)
			return s->m.kind[cl] == K_DATA;
		sslot = mv[s->vol].psnap;
	}
	return false;
}

/* A snapshot of volume @v holds version @id at @cl. */
static bool m_shared(int v, unsigned cl)
{
	for (int i = 0; i < MS; i++) {
		if (ms[i].used && ms[i].vol == v && ms[i].m.kind[cl] == mv[v].m.kind[cl] &&
		    ms[i].m.id[cl] == mv[v].m.id[cl] && ms[i].m.kind[cl] != K_HOLE)
			return true;
	}
	return false;
}

static void m_new(struct mvol *m, unsigned cl, uint8_t kind)
{
	m->m.kind[cl] = kind;
	m->m.id[cl] = next_vid++;
}

/* Bytes [lo, hi) of cluster @cl are written (or zeroed with @zero). */
static void m_partial(int v, unsigned cl, bool zero)
{
	struct mvol *m = &mv[v];
	uint8_t k = m->m.kind[cl];

	if (k == K_DATA && !m_shared(v, cl))
		return;
	if (zero) {
		if (k == K_ZERO || k == K_HOLE)
			return;
		if (k == K_NONE && !m_parent_data(m->psnap, cl))
			return;
		m_new(m, cl, K_DATA);
		return;
	}
	if (k == K_ZERO && !m_shared(v, cl))
		m->m.kind[cl] = K_DATA;
	else
		m_new(m, cl, K_DATA);
}

static void m_unmap(int v, unsigned cl)
{
	struct mvol *m = &mv[v];

	if (m->m.kind[cl] == K_HOLE)
		return;
	m->m.kind[cl] = K_NONE;
	m->m.id[cl] = 0;
	if (m->psnap >= 0 && m_parent_data(m->psnap, cl))
		m->m.kind[cl] = K_HOLE;
}

static void m_zero_alloc(int v, unsigned cl)
{
	struct mvol *m = &mv[v];
	uint8_t k = m->m.kind[cl];

	if (k == K_ZERO)
		return;
	if (k == K_DATA && !m_shared(v, cl))
		m->m.kind[cl] = K_ZERO;
	else
		m_new(m, cl, K_ZERO);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Distinct versions that own a pool cluster. */
static uint64_t m_clusters(void)
{
	static uint32_t ids[(MV + MS) * MCL];
	size_t n = 0, d = 0;

	for (int i = 0; i < MV + MS; i++) {
		const struct mmap *m = i < MV ? (mv[i].used ? &mv[i].m : NULL)
					      : (ms[i - MV].used ? &ms[i - MV].m : NULL);

		for (unsigned c = 0; m && c < MCL; c++) {
			if (m->kind[c] == K_DATA || m->kind[c] == K_ZERO)
				ids[n++] = m->id[c];
		}
	}
	qsort(ids, n, sizeof(*ids), cmp_u32);
	for (size_t i = 0; i < n; i++)
		d += !i || ids[i] != ids[i - 1];
	return d;
}

static void m_check_all(struct bal_vstore *st)
{
	static uint8_t buf[MSIZE];
	struct bal_store_stats ss;
	char name[40];

	for (int i = 0; i < MV; i++) {
		struct bal_volume *v;

		if (!mv[i].used)
			continue;
		v = vopen(st, mv[i].name);
		vread(st, v, 0, MSIZE, buf);
		CHECK(!memcmp(buf, mv[i].data, MSIZE));
		bal_vol_close(v);
	}
	for (int i = 0; i < MS; i++) {
		struct bal_volume *v;

		if (!ms[i].used)
			continue;
		snprintf(name, sizeof(name), "%s@%s", mv[ms[i].vol].name, ms[i].name);
		v = vopen(st, name);
		vread(st, v, 0, MSIZE, buf);
		CHECK(!memcmp(buf, ms[i].data, MSIZE));
		bal_vol_close(v);
	}
	CHECK_EQ(bal_vstore_stats(st, &ss), 0);
	CHECK_EQ(ss.pool_clusters_used, m_clusters());
}

static int pick(bool vol, bool want_used)
{
	int n = vol ? MV : MS, start = (int)(rnd() % (uint64_t)n);

	for (int k = 0; k < n; k++) {
		int i = (start + k) % n;

		if ((vol ? mv[i].used : ms[i].used) == want_used)
			return i;
	}
	return -1;
}

static void m_io(struct bal_vstore *st, int v, unsigned op)
{
	static uint8_t wbuf[MSIZE];
	uint64_t off = rnd() % MSIZE, len = rnd() % (rnd() % 4 ? 2 * CL : MSIZE) + 1;
	struct bal_volume *h = vopen(st, mv[v].name);
	uint64_t end;

	if (rnd() % 2) {
		off &= ~UINT64_C(511);
		len = (len + 511) & ~UINT64_C(511);
	}
	if (off + len > MSIZE)
		len = MSIZE - off;
	end = off + len;
	if (op == 0) {
		memset(wbuf, (int)(rnd() % 255 + 1), len);
		vwrite(st, h, off, (uint32_t)len, wbuf);
		memcpy(mv[v].data + off, wbuf, len);
		for (uint64_t c = off / CL; c <= (end - 1) / CL; c++)
			m_partial(v, (unsigned)c, false);
	} else {
		bool alloc = op == 2;

		if (op == 1)
			CHECK_EQ(bal_vol_trim(h, off, len), 0);
		else
			CHECK_EQ(bal_vol_zero(h, off, len, !alloc), 0);
		memset(mv[v].data + off, 0, len);
		for (uint64_t c = off / CL; c <= (end - 1) / CL; c++) {
			uint64_t cs = c * CL, ce = cs + CL;

			if (off <= cs && end >= ce)
				alloc ? m_zero_alloc(v, (unsigned)c) : m_unmap(v, (unsigned)c);
			else
				m_partial(v, (unsigned)c, true);
		}
	}
	bal_vol_close(h);
}

static void m_read(struct bal_vstore *st)
{
	static uint8_t buf[MSIZE];
	uint64_t off = rnd() % MSIZE, len = rnd() % (MSIZE - off) + 1;
	int s = pick(false, true), v = pick(true, true);
	char name[40];
	struct bal_volume *h;
	const uint8_t *want;

	if (s >= 0 && rnd() % 2) {
		snprintf(name, sizeof(name), "%s@%s", mv[ms[s].vol].name, ms[s].name);
		want = ms[s].data;
	} else if (v >= 0) {
		snprintf(name, sizeof(name), "%s", mv[v].name);
		want = mv[v].data;
	} else {
		return;
	}
	h = vopen(st, name);
	vread(st, h, off, (uint32_t)len, buf);
	CHECK(!memcmp(buf, want + off, len));
	bal_vol_close(h);
}

static void m_snap(struct bal_vstore *st, int v)
{
	int s = pick(false, false);

	if (s < 0)
		return;
	snprintf(ms[s].name, sizeof(ms[s].name), "s%u", mcount++);
	CHECK_EQ(bal_vstore_snap_create(st, mv[v].name, ms[s].name, NULL), 0);
	ms[s].used = true;
	ms[s].vol = v;
	ms[s].clones = 0;
	ms[s].m = mv[v].m;
	memcpy(ms[s].data, mv[v].data, MSIZE);
}

static void m_clone(struct bal_vstore *st)
{
	int s = pick(false, true), v = pick(true, false);

	if (s < 0 || v < 0)
		return;
	snprintf(mv[v].name, sizeof(mv[v].name), "v%u", mcount++);
	CHECK_EQ(bal_vstore_clone(st, mv[ms[s].vol].name, ms[s].name, mv[v].name), 0);
	mv[v].used = true;
	mv[v].psnap = s;
	memset(&mv[v].m, 0, sizeof(mv[v].m));
	memcpy(mv[v].data, ms[s].data, MSIZE);
	ms[s].clones++;
}

static void m_delete_vol(struct bal_vstore *st, int v)
{
	for (int i = 0; i < MS; i++) {
		if (ms[i].used && ms[i].vol == v && ms[i].clones) {
			CHECK_EQ(bal_vstore_delete(st, mv[v].name, false, true), -EBUSY);
			return;
		}
	}
	CHECK_EQ(bal_vstore_delete(st, mv[v].name, false, true), 0);
	for (int i = 0; i < MS; i++) {
		if (ms[i].used && ms[i].vol == v)
			ms[i].used = false;
	}
	if (mv[v].psnap >= 0)
		ms[mv[v].psnap].clones--;
	mv[v].used = false;
}

static void m_flatten(struct bal_vstore *st, int v)
{
	bool snaps = false;

	for (int i = 0; i < MS; i++)
		snaps |= ms[i].used && ms[i].vol == v;
	if (mv[v].psnap < 0) {
		CHECK_EQ(bal_vstore_flatten(st, mv[v].name), -EINVAL);
		return;
	}
	if (snaps) {
		CHECK_EQ(bal_vstore_flatten(st, mv[v].name), -EBUSY);
		return;
	}
	CHECK_EQ(bal_vstore_flatten(st, mv[v].name), 0);
	for (unsigned c = 0; c < MCL; c++) {
		if (mv[v].m.kind[c] == K_NONE && m_parent_data(mv[v].psnap, c))
			m_new(&mv[v], c, K_DATA);
	}
	ms[mv[v].psnap].clones--;
	mv[v].psnap = -1;
}

static void test_model(unsigned nops)
{
	struct bal_vstore *st = store_new();
	unsigned count[10] = { 0 };

	for (int i = 0; i < MV; i++) {
		mv[i].data = calloc(1, MSIZE);
		CHECK(mv[i].data);
	}
	for (int i = 0; i < MS; i++) {
		ms[i].data = calloc(1, MSIZE);
		CHECK(ms[i].data);
	}
	for (unsigned it = 0; it < nops; it++) {
		unsigned op = (unsigned)(rnd() % 100);
		int v = pick(true, true), s;

		if (v < 0 || op < 3) {
			v = pick(true, false);
			if (v < 0)
				continue;
			snprintf(mv[v].name, sizeof(mv[v].name), "v%u", mcount++);
			CHECK_EQ(bal_vstore_create(st, mv[v].name, MSIZE), 0);
			mv[v].used = true;
			mv[v].psnap = -1;
			memset(&mv[v].m, 0, sizeof(mv[v].m));
			memset(mv[v].data, 0, MSIZE);
			count[0]++;
		} else if (op < 40) {
			m_io(st, v, 0);
			count[1]++;
		} else if (op < 50) {
			m_io(st, v, 1 + (unsigned)(rnd() % 3));
			count[2]++;
		} else if (op < 65) {
			m_read(st);
			count[3]++;
		} else if (op < 74) {
			m_snap(st, v);
			count[4]++;
		} else if (op < 80) {
			s = pick(false, true);
			if (s < 0)
				continue;
			CHECK_EQ(bal_vstore_snap_delete(st, mv[ms[s].vol].name, ms[s].name),
				 ms[s].clones ? -EBUSY : 0);
			if (!ms[s].clones)
				ms[s].used = false;
			m_check_all(st);
			count[5]++;
		} else if (op < 85) {
			m_clone(st);
			count[6]++;
		} else if (op < 89) {
			m_delete_vol(st, v);
			m_check_all(st);
			count[7]++;
		} else if (op < 93) {
			m_flatten(st, v);
			count[8]++;
		} else if (op < 95) {
			bal_vstore_close(st);
			st = store_open();
			m_check_all(st);
			count[9]++;
		} else {
			m_check_all(st);
		}
	}
	m_check_all(st);
	/* After recycling, nothing is pending and the count still holds. */
	CHECK_EQ(used(st), m_clusters());
	printf("model: %u creates, %u writes, %u trims/zeroes, %u reads, %u snapshots, %u snapshot deletes, %u clones, %u volume deletes, %u flattens, %u restarts\n",
	       count[0], count[1], count[2], count[3], count[4], count[5], count[6], count[7],
	       count[8], count[9]);
	bal_vstore_close(st);
	for (int i = 0; i < MV; i++)
		free(mv[i].data);
	for (int i = 0; i < MS; i++)
		free(ms[i].data);
	printf("ok - randomized run against a model\n");
}

int main(int argc, char **argv)
{
	seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
	rng = seed ? seed : 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	bal_log_set_level(getenv("BAL_TEST_VERBOSE") ? BAL_LOG_DEBUG : BAL_LOG_ERROR);
	printf("seed %" PRIu64 "\n", seed);
	snprintf(tmproot, sizeof(tmproot), "/tmp/bal-test-snap.XXXXXX");
	CHECK(mkdtemp(tmproot));
	snprintf(tmpdir, sizeof(tmpdir), "%s/data", tmproot);
	atexit(rm_tmpdir);
	test_model(3000);
	test_isolation();
	test_partial_trim();
	test_chain();
	test_clone();
	test_diff();
	test_reopen();
	test_resize();
	test_inflight();
	test_many();
	printf("%u checks passed, 0 failed\n", atomic_load(&checks));
	return 0;
}
