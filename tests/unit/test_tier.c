/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the object tier (snapshot/): export of a snapshot to a
 * file:// store, an incremental export from the changed-cluster diff,
 * dedup of identical chunks, lazy restore into a second store (remote
 * clusters, -EREMOTE for partial writes, fills that never overwrite newer
 * writes, hydration to the end), verify of a tampered object, delete.
 * Works under /tmp.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tests/unit/volio.h"
#include "snapshot/chunk.h"
#include "snapshot/tier.h"
#include "volume/volume.h"

#define MiB (1024u * 1024u)
#define CS BAL_CHUNK_SIZE
#define VSIZE (64ull * MiB)

static char root[64];

struct side {
	char dir[96];
	struct bal_vstore *st;
	struct bal_tier *t;
};

static void side_open(struct side *s, const char *name, const char *url)
{
	struct bal_vstore_opts vo = { .opts_size = sizeof(vo) };
	struct bal_tier_opts to = { .opts_size = sizeof(to) };

	snprintf(s->dir, sizeof(s->dir), "%s/%s", root, name);
	vo.dir = s->dir;
	CHECK_EQ(bal_vstore_open(&vo, &s->st), 0);
	to.store = s->st;
	to.default_url = url;
	to.parallel = 3;
	CHECK_EQ(bal_tier_create(&to, &s->t), 0);
}

static void side_close(struct side *s)
{
	bal_tier_destroy(s->t);
	bal_vstore_close(s->st);
}

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 31 + seed * 7 + (i >> 12)) & 0xff);
}

static void export(struct side *s, const char *snap, const char *url,
		   struct bal_tier_export_result *r)
{
	struct bal_tier_export_opts o = { .opts_size = sizeof(o), .volume = "v",
					  .snapshot = snap, .url = url };
	char err[512] = "";
	int ret = bal_tier_export(s->t, &o, r, err, sizeof(err));

	if (ret)
		fprintf(stderr, "export: %s\n", err);
	CHECK_EQ(ret, 0);
}

static size_t count_chunks(const char *objs)
{
	char cmd[256];
	size_t n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "find %s/chunks -type f | wc -l", objs);
	p = popen(cmd, "r");
	CHECK(p);
	CHECK_EQ(fscanf(p, "%zu", &n), 1);
	pclose(p);
	return n;
}

int main(void)
{
	struct bal_tier_export_result r1, r2;
	struct bal_tier_verify_result vr;
	struct bal_tier_hydration h;
	struct bal_tier_delete_result dr;
	struct side a, b;
	struct bal_volume *v, *sv, *rv;
	struct bal_seg segs[80];
	char url[160], objs[128], ref[1200], err[512];
	uint8_t *buf = malloc(VSIZE), *got = malloc(VSIZE), *exp = malloc(VSIZE);
	size_t n;

	CHECK(buf && got && exp);
	snprintf(root, sizeof(root), "/tmp/bal-tier-XXXXXX");
	CHECK(mkdtemp(root));
	snprintf(objs, sizeof(objs), "%s/objects", root);
	snprintf(url, sizeof(url), "file://%s", objs);
	side_open(&a, "a", url);
	CHECK_EQ(bal_vstore_create(a.st, "v", VSIZE), 0);
	CHECK_EQ(bal_vol_open(a.st, "v", &v), 0);
	/* chunk 0 whole, chunk 2 partly, chunk 5 = chunk 0 (dedup), chunk 9 zeroes written. */
	pattern(buf, CS, 1);
	vwrite(a.st, v, 0, CS, buf);
	vwrite(a.st, v, 5ull * CS, CS, buf);
	pattern(buf, 3 * BAL_CLUSTER_SIZE + 100, 2);
	vwrite(a.st, v, 2ull * CS + 777, 3 * BAL_CLUSTER_SIZE + 100, buf);
	memset(buf, 0, CS);
	vwrite(a.st, v, 9ull * CS, CS, buf);
	CHECK_EQ(bal_vstore_snap_create(a.st, "v", "s1", NULL), 0);
	export(&a, "s1", NULL, &r1);
	CHECK_EQ(r1.chunks, 16);
	CHECK_EQ(r1.chunks_uploaded, 2);	/* chunk 0 (= 5) and chunk 2 */
	CHECK_EQ(r1.chunks_present, 1);
	CHECK_EQ(r1.chunks_empty, 13);
	CHECK(r1.parent[0] == '\0');
	CHECK_EQ(count_chunks(objs), 2);

	/* Incremental: one cluster of chunk 7 changes. */
	pattern(buf, BAL_CLUSTER_SIZE, 3);
	vwrite(a.st, v, 7ull * CS + BAL_CLUSTER_SIZE, BAL_CLUSTER_SIZE, buf);
	CHECK_EQ(bal_vstore_snap_create(a.st, "v", "s2", NULL), 0);
	export(&a, "s2", url, &r2);
	CHECK(!strcmp(r2.parent, r1.id));
	CHECK_EQ(r2.chunks_read, 1);
	CHECK_EQ(r2.chunks_uploaded, 1);
	CHECK_EQ(r2.chunks_unchanged, 15);
	CHECK_EQ(count_chunks(objs), 3);

	/* The expected image of s2. */
	CHECK_EQ(bal_vol_open(a.st, "v@s2", &sv), 0);
	vread(a.st, sv, 0, 32 * MiB, exp);
	vread(a.st, sv, 32 * MiB, 32 * MiB, exp + 32 * MiB);
	bal_vol_close(sv);

	/* Restore into another store: remote clusters, partial writes wait. */
	side_open(&b, "b", url);
	snprintf(ref, sizeof(ref), "%s#%s", r2.url, r2.id);
	CHECK_EQ(bal_tier_restore(b.t, "r", ref, NULL, err, sizeof(err)), 0);
	CHECK_EQ(bal_vol_open(b.st, "r", &rv), 0);
	CHECK_EQ(bal_vol_size(rv), VSIZE);
	CHECK_EQ(bal_vol_map_write(rv, 2ull * CS + 5, 10, segs, 80, &n), -EREMOTE);
	CHECK_EQ(bal_vstore_snap_create(b.st, "r", "x", NULL), -EINPROGRESS);
	/* A whole cluster written now must survive hydration. */
	pattern(buf, BAL_CLUSTER_SIZE, 9);
	vwrite(b.st, rv, 7ull * CS, BAL_CLUSTER_SIZE, buf);
	memcpy(exp + 7ull * CS, buf, BAL_CLUSTER_SIZE);
	CHECK_EQ(bal_tier_wait(b.t, "r", NULL, NULL, err, sizeof(err)), 0);
	CHECK_EQ(bal_tier_hydration(b.t, "r", &h), 0);
	CHECK(!h.active);
	CHECK_EQ(h.chunks_done, h.chunks_total);
	CHECK(!bal_vol_is_remote(rv));
	vread(b.st, rv, 0, 32 * MiB, got);
	vread(b.st, rv, 32 * MiB, 32 * MiB, got + 32 * MiB);
	CHECK(!memcmp(got, exp, VSIZE));
	CHECK_EQ(bal_vstore_snap_create(b.st, "r", "x", NULL), 0);
	bal_vol_close(rv);

	/* A restore resumes after a restart, from what the volume keeps. */
	CHECK_EQ(bal_tier_restore(b.t, "r3", ref, NULL, err, sizeof(err)), 0);
	side_close(&b);
	side_open(&b, "b", url);
	if (bal_tier_wait(b.t, "r3", NULL, NULL, err, sizeof(err)))
		fprintf(stderr, "wait r3: %s\n", err);
	CHECK_EQ(bal_tier_hydration(b.t, "r3", &h), 0);
	CHECK(!h.active);
	CHECK_EQ(bal_vol_open(b.st, "r3", &rv), 0);
	CHECK(!bal_vol_is_remote(rv));
	vread(b.st, rv, 0, 3 * CS, got);
	CHECK(!memcmp(got, exp, 3 * CS));
	bal_vol_close(rv);

	memset(&vr, 0, sizeof(vr));
	CHECK_EQ(bal_tier_verify(a.t, ref, NULL, NULL, NULL, &vr, err, sizeof(err)), 0);
	CHECK(vr.manifest_ok);
	CHECK_EQ(vr.nproblems, 0);
	CHECK_EQ(vr.chunks, 3);
	free(vr.problems);
	{
		uint8_t c;
		char key[BAL_CHUNK_KEY_LEN + 1], path[300];
		int fd;
		struct bal_tier_entry *e = NULL;
		size_t ne = 0;

		/* Find chunk 7's object through a listing and flip one byte of it. */
		CHECK_EQ(bal_tier_list(a.t, url, "v", 0, NULL, &e, &ne, err, sizeof(err)), 0);
		CHECK_EQ(ne, 2);
		/* Both were made in the same second or two: find s2's. */
		CHECK(!strcmp(e[0].id, r2.id) || !strcmp(e[1].id, r2.id));
		CHECK_EQ(e[!strcmp(e[0].id, r2.id) ? 0 : 1].chunks, 4);
		CHECK(!strcmp(e[!strcmp(e[0].id, r2.id) ? 0 : 1].snapshot, "s2"));
		free(e);
		pattern(buf, CS, 0);
		vread(a.st, v, 7ull * CS, CS, buf);
		{
			struct bal_chunk_keys *k;
			char name[BAL_CHUNK_NAME_LEN + 1];

			CHECK_EQ(bal_chunk_keys_create(NULL, &k), 0);
			CHECK_EQ(bal_chunk_name(k, buf, CS, name), 0);
			bal_chunk_keys_destroy(k);
			CHECK_EQ(bal_chunk_key(name, key, sizeof(key)), 0);
		}
		snprintf(path, sizeof(path), "%s/%s", objs, key);
		fd = open(path, O_RDWR);
		CHECK(fd >= 0);
		CHECK_EQ(pread(fd, &c, 1, 40), 1);
		c ^= 0x40;
		CHECK_EQ(pwrite(fd, &c, 1, 40), 1);
		close(fd);
	}
	memset(&vr, 0, sizeof(vr));
	CHECK_EQ(bal_tier_verify(a.t, ref, NULL, NULL, NULL, &vr, err, sizeof(err)), 0);
	CHECK_EQ(vr.nproblems, 1);
	CHECK_EQ(vr.problems[0].index, 7);
	free(vr.problems);

	/* A restore of the tampered snapshot: chunk 7 never reads, the rest does. */
	CHECK_EQ(bal_tier_restore(b.t, "r2", ref, NULL, err, sizeof(err)), 0);
	CHECK_EQ(bal_tier_wait(b.t, "r2", NULL, NULL, err, sizeof(err)), -EIO);
	/* Not deleted from the store while a volume here still restores from it. */
	CHECK_EQ(bal_tier_delete(b.t, ref, NULL, &dr, err, sizeof(err)), -EBUSY);
	CHECK_EQ(bal_vol_open(b.st, "r2", &rv), 0);
	CHECK_EQ(bal_vol_map_read(rv, 7ull * CS, 4096, segs, 80, &n), 0);
	CHECK_EQ(segs[0].phys, BAL_SEG_REMOTE);
	vread(b.st, rv, 0, CS, got);
	CHECK(!memcmp(got, exp, CS));
	bal_vol_close(rv);
	{
		struct bal_vol_info vi;

		/* The hydration's own handle is not a connection: delete goes ahead. */
		CHECK_EQ(bal_vstore_info(b.st, "r2", &vi), 0);
		CHECK_EQ(vi.connections, 0);
		CHECK_EQ(bal_vstore_delete(b.st, "r2", false, false), 0);
		bal_tier_forget(b.t, "r2", vi.id);
		CHECK_EQ(bal_tier_hydration(b.t, "r2", &h), -ENOENT);
	}

	/* Deleting s1's export keeps what s2 still names. */
	snprintf(ref, sizeof(ref), "%s#%s", r1.url, r1.id);
	CHECK_EQ(bal_tier_delete(a.t, ref, NULL, &dr, err, sizeof(err)), 0);
	CHECK_EQ(dr.chunks_deleted, 0);
	CHECK_EQ(dr.chunks_kept, 2);
	CHECK_EQ(count_chunks(objs), 3);

	bal_vol_close(v);
	side_close(&b);
	side_close(&a);
	check_rmtree(root);
	free(buf);
	free(got);
	free(exp);
	printf("test_tier: %u checks passed\n", checks);
	return 0;
}
