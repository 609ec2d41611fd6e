/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the volume data keys (volume/keys.c): service-encrypted
 * volumes across reopen with the right, a wrong and no master key; master
 * key rotation (and a failed one); customer-key volumes (lock, unlock,
 * wrong key); snapshots and clones sharing their origin's key; size rules;
 * a tampered key record; and that no raw key reaches the database files.
 * Works in a temporary directory under /tmp.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "common/log.h"
#include "crypto/crypto.h"
#include "volume/keys_internal.h"
#include "volume/volume.h"
#include "volume/volume_internal.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

static char tmproot[64], tmpdir[80];



static uint8_t raw_xts[BAL_XTS_KEY_LEN], raw_mk1[BAL_MK_LEN], raw_mk2[BAL_MK_LEN];
static uint8_t raw_ck1[32], raw_ck2[32];
static struct bal_mk *mk1, *mk2;
static struct bal_ck *ck1, *ck2;

static struct bal_vstore *store_open(const struct bal_mk *mk, bool by_default)
{
	struct bal_vstore_opts o = {
		.opts_size = sizeof(o), .dir = tmpdir, .master = mk, .encrypt_by_default = by_default,
	};
	struct bal_vstore *st = NULL;

	CHECK_EQ(bal_vstore_open(&o, &st), 0);
	return st;
}

static void rm_tmpdir(void)
{
	check_rmtree(tmproot);
}

/* Ciphertext of a fixed 4 KiB block at logical block 7 under @key. */
static void encrypt_probe(const struct bal_xts_key *key, uint8_t out[BAL_XTS_UNIT])
{
	uint8_t in[BAL_XTS_UNIT];
	struct bal_xts_ctx *ctx;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 31 + 7);
	CHECK_EQ(bal_xts_ctx_create(key, &ctx), 0);
	CHECK_EQ(bal_xts_encrypt(ctx, 7, in, out, sizeof(in)), 0);
	bal_xts_ctx_destroy(ctx);
}

static bool same_key(const struct bal_xts_key *a, const struct bal_xts_key *b)
{
	uint8_t ca[BAL_XTS_UNIT], cb[BAL_XTS_UNIT];

	encrypt_probe(a, ca);
	encrypt_probe(b, cb);
	return memcmp(ca, cb, sizeof(ca)) == 0;
}

/* Ciphertext probe of the open handle @name's key (must be encrypted). */
static void probe_vol(struct bal_vstore *st, const char *name, uint8_t out[BAL_XTS_UNIT])
{
	struct bal_volume *vol;

	CHECK_EQ(bal_vol_open(st, name, &vol), 0);
	CHECK(bal_vol_xts_key(vol) != NULL);
	encrypt_probe(bal_vol_xts_key(vol), out);
	bal_vol_close(vol);
}

/* @name may be "VOL@SNAP": the reason is then VOL's, as the target reports it. */
static void check_locked(struct bal_vstore *st, const char *name, const char *reason)
{
	char base[BAL_NAME_MAX + 1];
	struct bal_vol_info vi;
	struct bal_volume *vol;

	snprintf(base, sizeof(base), "%.*s", (int)strcspn(name, "@"), name);
	CHECK_EQ(bal_vstore_info(st, base, &vi), 0);
	CHECK(vi.locked);
	CHECK(strcmp(vi.lock_reason, reason) == 0);
	CHECK_EQ(bal_vol_open(st, name, &vol), -ENOKEY);
}

static void check_plain_opens(struct bal_vstore *st)
{
	struct bal_vol_info vi;
	struct bal_volume *vol;

	CHECK_EQ(bal_vstore_info(st, "plain", &vi), 0);
	CHECK_EQ(vi.enc, BAL_ENC_NONE);
	CHECK(!vi.locked);
	CHECK_EQ(bal_vol_open(st, "plain", &vol), 0);
	CHECK(bal_vol_xts_key(vol) == NULL);
	bal_vol_close(vol);
}

static int create(struct bal_vstore *st, const char *name, uint64_t size, enum bal_enc enc,
		  const struct bal_ck *ck)
{
	struct bal_vol_create_opts o = {
		.opts_size = sizeof(o), .name = name, .size = size, .enc = enc, .customer_key = ck,
	};

	return bal_vstore_create_opts(st, &o);
}

static uint8_t ref_probe[BAL_XTS_UNIT], cust_probe[BAL_XTS_UNIT];

static void test_create(void)
{
	struct bal_vstore *st = store_open(mk1, false);
	struct bal_xts_key *ref;
	struct bal_volume *vol;
	struct bal_vol_info vi;
	uint8_t p[BAL_XTS_UNIT];

	CHECK_EQ(bal_xts_key_create(raw_xts, &ref), 0);
	encrypt_probe(ref, ref_probe);
	bal_xts_key_destroy(ref);

	CHECK_EQ(bal_vstore_create(st, "plain", 1 * MiB), 0);
	/* Sizes: whole 4 KiB units when encrypted. */
	CHECK_EQ(create(st, "bad", 4096 + 512, BAL_ENC_SERVICE, NULL), -EINVAL);
	CHECK_EQ(create(st, "bad", 4096 + 512, BAL_ENC_CUSTOMER, ck1), -EINVAL);
	CHECK_EQ(create(st, "bad", 1 * MiB, BAL_ENC_CUSTOMER, NULL), -EINVAL);
	CHECK_EQ(create(st, "bad", 1 * MiB, (enum bal_enc)9, NULL), -EINVAL);
	CHECK_EQ(bal_vstore_info(st, "bad", &vi), -ENOENT);

	bal_vkey_test_next_raw(raw_xts);
	CHECK_EQ(create(st, "sv", 1 * MiB, BAL_ENC_SERVICE, NULL), 0);
	CHECK_EQ(create(st, "sv", 1 * MiB, BAL_ENC_SERVICE, NULL), -EEXIST);
	CHECK_EQ(bal_vstore_info(st, "sv", &vi), 0);
	CHECK_EQ(vi.enc, BAL_ENC_SERVICE);
	CHECK(!vi.locked);
	CHECK_EQ(vi.lock_reason[0], '\0');
	probe_vol(st, "sv", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);

	/* Resize keeps whole units. */
	CHECK_EQ(bal_vstore_resize(st, "sv", 2 * MiB + 512, false), -EINVAL);
	CHECK_EQ(bal_vstore_resize(st, "sv", 2 * MiB, false), 0);
	CHECK_EQ(bal_vstore_resize(st, "plain", 2 * MiB + 512, false), 0);

	/* Snapshot and clone share the key. */
	CHECK_EQ(bal_vstore_snap_create(st, "sv", "s1", NULL), 0);
	probe_vol(st, "sv@s1", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	CHECK_EQ(bal_vstore_clone(st, "sv", "s1", "svc"), 0);
	CHECK_EQ(bal_vstore_info(st, "svc", &vi), 0);
	CHECK_EQ(vi.enc, BAL_ENC_SERVICE);
	CHECK(!vi.locked);
	probe_vol(st, "svc", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	{
		struct bal_volume *a, *c;

		CHECK_EQ(bal_vol_open(st, "sv", &a), 0);
		CHECK_EQ(bal_vol_open(st, "svc", &c), 0);
		CHECK(bal_vol_xts_key(a) != bal_vol_xts_key(c));
		CHECK(same_key(bal_vol_xts_key(a), bal_vol_xts_key(c)));
		bal_vol_close(c);
		bal_vol_close(a);
	}

	/* A customer volume is created unlocked; its clone starts locked. */
	CHECK_EQ(create(st, "cv", 1 * MiB, BAL_ENC_CUSTOMER, ck1), 0);
	CHECK_EQ(bal_vstore_info(st, "cv", &vi), 0);
	CHECK_EQ(vi.enc, BAL_ENC_CUSTOMER);
	CHECK(!vi.locked);
	probe_vol(st, "cv", cust_probe);
	CHECK(memcmp(cust_probe, ref_probe, sizeof(p)) != 0);
	CHECK_EQ(bal_vstore_snap_create(st, "cv", "c1", NULL), 0);
	CHECK_EQ(bal_vstore_clone(st, "cv", "c1", "cvc"), 0);
	check_locked(st, "cvc", "locked: unlock with its customer key");
	CHECK_EQ(bal_vstore_unlock(st, "cvc", ck2), -EKEYREJECTED);
	CHECK_EQ(bal_vstore_unlock(st, "cvc", ck1), 0);
	probe_vol(st, "cvc", p);
	CHECK(memcmp(p, cust_probe, sizeof(p)) == 0);

	/* Flatten keeps the key. */
	CHECK_EQ(bal_vol_open(st, "svc", &vol), 0);
	CHECK_EQ(bal_vstore_flatten(st, "svc"), 0);
	encrypt_probe(bal_vol_xts_key(vol), p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	bal_vol_close(vol);
	CHECK_EQ(bal_vstore_snap_create(st, "sv", "s2", NULL), 0);
	CHECK_EQ(bal_vstore_clone(st, "sv", "s2", "svc2"), 0);

	/* Lock and unlock are for customer volumes only. */
	CHECK_EQ(bal_vstore_lock(st, "sv"), -EINVAL);
	CHECK_EQ(bal_vstore_unlock(st, "plain", ck1), -EINVAL);
	CHECK_EQ(bal_vstore_lock(st, "nope"), -ENOENT);
	bal_vstore_close(st);

	/* Without a master key, service volumes cannot be created. */
	st = store_open(NULL, false);
	CHECK_EQ(create(st, "sv9", 1 * MiB, BAL_ENC_SERVICE, NULL), -ENOKEY);
	CHECK_EQ(create(st, "cv9", 1 * MiB, BAL_ENC_CUSTOMER, ck2), 0);
	CHECK_EQ(bal_vstore_delete(st, "cv9", false, false), 0);
	bal_vstore_close(st);

	/* Encrypt by default: bal_vstore_create makes service volumes. */
	st = store_open(mk1, true);
	CHECK_EQ(bal_vstore_create(st, "dflt", 1 * MiB), 0);
	CHECK_EQ(bal_vstore_info(st, "dflt", &vi), 0);
	CHECK_EQ(vi.enc, BAL_ENC_SERVICE);
	CHECK_EQ(bal_vstore_create(st, "odd", 4096 + 512), -EINVAL);
	CHECK_EQ(create(st, "plain2", 4096 + 512, BAL_ENC_NONE, NULL), 0);
	CHECK_EQ(bal_vstore_delete(st, "plain2", false, false), 0);
	bal_vstore_close(st);
}

static void test_reopen(void)
{
	struct bal_vstore *st;
	struct bal_vol_info *list;
	struct bal_volume *vol;
	uint8_t p[BAL_XTS_UNIT];
	size_t n;

	/* The right master key: same key as created. */
	st = store_open(mk1, false);
	probe_vol(st, "sv", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	probe_vol(st, "sv@s1", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	probe_vol(st, "svc", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	probe_vol(st, "svc2", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	check_plain_opens(st);

	/* Customer volumes start locked; a wrong key is refused. */
	check_locked(st, "cv", "locked: unlock with its customer key");
	check_locked(st, "cv@c1", "locked: unlock with its customer key");
	check_locked(st, "cvc", "locked: unlock with its customer key");
	CHECK_EQ(bal_vstore_unlock(st, "cv", ck2), -EKEYREJECTED);
	check_locked(st, "cv", "locked: unlock with its customer key");
	CHECK_EQ(bal_vstore_unlock(st, "cv", ck1), 0);
	CHECK_EQ(bal_vstore_unlock(st, "cv", ck2), -EKEYREJECTED);
	CHECK_EQ(bal_vstore_unlock(st, "cv", ck1), 0);
	probe_vol(st, "cv", p);
	CHECK(memcmp(p, cust_probe, sizeof(p)) == 0);
	probe_vol(st, "cv@c1", p);
	CHECK(memcmp(p, cust_probe, sizeof(p)) == 0);
	/* The clone is unlocked on its own, with the same customer key. */
	check_locked(st, "cvc", "locked: unlock with its customer key");
	CHECK_EQ(bal_vstore_unlock(st, "cvc", ck1), 0);
	probe_vol(st, "cvc", p);
	CHECK(memcmp(p, cust_probe, sizeof(p)) == 0);
	/* Lock: refused while a handle (of the volume or a snapshot) is open. */
	CHECK_EQ(bal_vol_open(st, "cv@c1", &vol), 0);
	CHECK_EQ(bal_vstore_lock(st, "cv"), -EBUSY);
	bal_vol_close(vol);
	CHECK_EQ(bal_vol_open(st, "cv", &vol), 0);
	CHECK_EQ(bal_vstore_lock(st, "cv"), -EBUSY);
	bal_vol_close(vol);
	CHECK_EQ(bal_vstore_lock(st, "cv"), 0);
	CHECK_EQ(bal_vstore_lock(st, "cv"), 0);
	check_locked(st, "cv", "locked: unlock with its customer key");
	probe_vol(st, "cvc", p);
	bal_vstore_close(st);

	/* A wrong master key: service volumes locked, the rest served. */
	st = store_open(mk2, false);
	check_locked(st, "sv", "wrong master key");
	check_locked(st, "sv@s1", "wrong master key");
	check_locked(st, "svc", "wrong master key");
	check_plain_opens(st);
	CHECK_EQ(create(st, "sv3", 1 * MiB, BAL_ENC_SERVICE, NULL), -ENOKEY);
	CHECK_EQ(bal_vstore_rotate_master(st, mk1), -ENOKEY);
	CHECK_EQ(bal_vstore_snap_create(st, "sv", "s3", NULL), 0);
	CHECK_EQ(bal_vstore_clone(st, "sv", "s3", "svc3"), -ENOKEY);
	CHECK_EQ(bal_vstore_list(st, &list, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(list[i].name, "sv")) {
			CHECK(list[i].locked);
			CHECK_EQ(list[i].enc, BAL_ENC_SERVICE);
		}
	}
	free(list);
	bal_vstore_close(st);

	/* No master key. */
	st = store_open(NULL, false);
	check_locked(st, "sv", "no master key given");
	check_locked(st, "dflt", "no master key given");
	check_plain_opens(st);
	CHECK_EQ(bal_vstore_rotate_master(st, mk1), -ENOKEY);
	bal_vstore_close(st);
}

static void test_rotate(void)
{
	struct bal_vstore *st;
	uint8_t p[BAL_XTS_UNIT];

	/* A failed rotation leaves every key under the old master key. */
	st = store_open(mk1, false);
	bal_kv_fail_write_after(1);
	CHECK_EQ(bal_vstore_rotate_master(st, mk2), -EIO);
	bal_kv_fail_write_after(0);
	probe_vol(st, "sv", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	bal_vstore_close(st);

	st = store_open(mk1, false);
	probe_vol(st, "svc", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	CHECK_EQ(bal_vstore_rotate_master(st, mk2), 0);
	/* In use at once: keys stay, new volumes wrap under the new key. */
	probe_vol(st, "sv", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	CHECK_EQ(create(st, "sv4", 1 * MiB, BAL_ENC_SERVICE, NULL), 0);
	bal_vstore_close(st);

	st = store_open(mk2, false);
	probe_vol(st, "sv", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	probe_vol(st, "svc", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	probe_vol(st, "sv@s3", p);
	CHECK(memcmp(p, ref_probe, sizeof(p)) == 0);
	probe_vol(st, "sv4", p);
	probe_vol(st, "dflt", p);
	check_plain_opens(st);
	bal_vstore_close(st);

	st = store_open(mk1, false);
	check_locked(st, "sv", "wrong master key");
	check_locked(st, "sv4", "wrong master key");
	check_locked(st, "svc", "wrong master key");
	check_plain_opens(st);
	bal_vstore_close(st);
}

/* A key record that does not unwrap locks its volume only; delete drops the record. */
static void test_tamper_delete(void)
{
	uint8_t k[BAL_VOL_KEY_LEN], *v;
	struct bal_kv_batch *b;
	struct bal_vol_info vi;
	struct bal_vstore *st;
	struct bal_kv *kv;
	char path[128];
	uint64_t id;
	size_t vl;

	st = store_open(mk2, false);
	CHECK_EQ(bal_vstore_info(st, "sv4", &vi), 0);
	id = vi.id;
	bal_vstore_close(st);

	snprintf(path, sizeof(path), "%s/db", tmpdir);
	CHECK_EQ(bal_kv_open(path, &kv), 0);
	k[0] = BAL_KEY_VKEY;
	bal_put_be64(k + 1, id);
	CHECK_EQ(bal_kv_get(kv, k, sizeof(k), (void **)&v, &vl), 0);
	CHECK_EQ(vl, 1 + BAL_KW_BLOB_LEN);
	v[vl - 1] ^= 1;
	b = bal_kv_batch_create();
	CHECK(b);
	bal_kv_batch_put(b, k, sizeof(k), v, vl);
	CHECK_EQ(bal_kv_write(kv, b, true), 0);
	bal_kv_batch_destroy(b);
	free(v);
	bal_kv_close(kv);

	st = store_open(mk2, false);
	check_locked(st, "sv4", "key unwrap failed");
	probe_vol(st, "sv", (uint8_t[BAL_XTS_UNIT]){ 0 });
	/* A locked service key cannot be wrapped again. */
	CHECK_EQ(bal_vstore_rotate_master(st, mk1), -ENOKEY);
	CHECK_EQ(bal_vstore_delete(st, "sv4", false, false), 0);
	CHECK_EQ(bal_vstore_delete(st, "svc", false, false), 0);
	CHECK_EQ(bal_vstore_rotate_master(st, mk1), 0);
	CHECK_EQ(bal_vstore_rotate_master(st, mk2), 0);
	bal_vstore_close(st);

	snprintf(path, sizeof(path), "%s/db", tmpdir);
	CHECK_EQ(bal_kv_open(path, &kv), 0);
	CHECK_EQ(bal_kv_get(kv, k, sizeof(k), (void **)&v, &vl), -ENOENT);
	bal_kv_close(kv);
}

static bool file_contains(const char *path, const uint8_t *pat, size_t len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0, r;
	bool found = false;

	CHECK(f);
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 1 << 16;
			buf = realloc(buf, cap);
			CHECK(buf);
		}
		r = fread(buf + n, 1, cap - n, f);
		if (!r)
			break;
		n += r;
	}
	fclose(f);
	for (size_t i = 0; n >= len && i <= n - len && !found; i++)
		found = buf[i] == pat[0] && !memcmp(buf + i, pat, len);
	free(buf);
	return found;
}

/* Neither the raw data key nor a master or customer key is in the database files. */
static void test_no_raw_keys(void)
{
	char dbdir[128], path[512];
	struct dirent *de;
	unsigned files = 0;
	DIR *d;

	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	d = opendir(dbdir);
	CHECK(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dbdir, de->d_name);
		CHECK(!file_contains(path, raw_xts, 32));
		CHECK(!file_contains(path, raw_xts + 32, 32));
		CHECK(!file_contains(path, raw_mk1, sizeof(raw_mk1)));
		CHECK(!file_contains(path, raw_mk2, sizeof(raw_mk2)));
		CHECK(!file_contains(path, raw_ck1, sizeof(raw_ck1)));
		files++;
	}
	closedir(d);
	CHECK(files > 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	bal_log_set_level(getenv("BAL_TEST_VERBOSE") ? BAL_LOG_DEBUG : BAL_LOG_ERROR);
	snprintf(tmproot, sizeof(tmproot), "/tmp/bal-test-volkeys.XXXXXX");
	CHECK(mkdtemp(tmproot));
	snprintf(tmpdir, sizeof(tmpdir), "%s/data", tmproot);
	atexit(rm_tmpdir);

	for (size_t i = 0; i < sizeof(raw_xts); i++)
		raw_xts[i] = (uint8_t)(0xa5 ^ (i * 7));
	for (size_t i = 0; i < BAL_MK_LEN; i++) {
		raw_mk1[i] = (uint8_t)(0x11 + i * 3);
		raw_mk2[i] = (uint8_t)(0x77 + i * 5);
	}
	for (size_t i = 0; i < sizeof(raw_ck1); i++) {
		raw_ck1[i] = (uint8_t)(0xc1 + i * 11);
		raw_ck2[i] = (uint8_t)(0x3c + i * 13);
	}
	CHECK_EQ(bal_mk_create(raw_mk1, &mk1), 0);
	CHECK_EQ(bal_mk_create(raw_mk2, &mk2), 0);
	CHECK_EQ(bal_ck_create(raw_ck1, sizeof(raw_ck1), &ck1), 0);
	CHECK_EQ(bal_ck_create(raw_ck2, sizeof(raw_ck2), &ck2), 0);

	test_create();
	test_reopen();
	test_rotate();
	test_tamper_delete();
	test_no_raw_keys();

	bal_ck_destroy(ck2);
	bal_ck_destroy(ck1);
	bal_mk_destroy(mk2);
	bal_mk_destroy(mk1);
	printf("%u checks passed, 0 failed\n", atomic_load(&checks));
	return 0;
}
