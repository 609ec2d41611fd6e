/* SPDX-License-Identifier: MIT */
/*
 * Unit test of snapshot/manifest: ids and object keys, encode -> decode
 * round trips (encrypted and not, and 16384 chunks), the MAC (edited
 * values, removed or added members, another key, whitespace that does not
 * matter), malformed documents refused with a reason, and random byte
 * flips: a document either fails to decode or verify, or decodes to
 * exactly the manifest that was encoded.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tests/unit/check.h"
#include "crypto/crypto.h"
#include "snapshot/chunk.h"
#include "snapshot/manifest.h"

#define T0 1700000000 /* 2023-11-14T22:13:20Z */

static struct bal_xts_key *xk1, *xk2;
static struct bal_chunk_keys *kpub, *k1, *k2;
static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t next_rand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static void test_ids(void)
{
	char id[BAL_SNAP_ID_MAX + 1], id2[BAL_SNAP_ID_MAX + 1], bad[BAL_SNAP_ID_MAX + 1];
	static const char *const invalid[] = {
		"",
		"20231114T221320Z-0123456789abcde",   /* short */
		"20231114T221320Z-0123456789abcdef0", /* long */
		"20231114T221320Z-0123456789ABCDEF",  /* upper case */
		"20231114t221320Z-0123456789abcdef",
		"20231114T221320Z_0123456789abcdef",
		"20231114T221320-Z0123456789abcdef",
		"20230230T221320Z-0123456789abcdef", /* 30 February */
		"20231314T221320Z-0123456789abcdef",
		"20231100T221320Z-0123456789abcdef",
		"20231114T241320Z-0123456789abcdef",
		"20231114T226020Z-0123456789abcdef",
		"19691231T235959Z-0123456789abcdef",
		"2023111 T221320Z-0123456789abcdef",
		"20231114T221320Z-0123456789abcde/",
		"../../../../../../../../etc/passwd",
	};

	CHECK_RC(bal_manifest_new_id(T0 * INT64_C(1000), id), 0);
	CHECK(strncmp(id, "20231114T221320Z-", 17) == 0 && strlen(id) == 33);
	CHECK(bal_manifest_id_is_valid(id));
	CHECK_RC(bal_manifest_new_id(T0 * INT64_C(1000) + 999, id2), 0);
	CHECK(strcmp(id, id2) < 0);	/* ids sort by time to the millisecond */
	CHECK(!strncmp(id2 + 17, "03e7", 4));
	CHECK_RC(bal_manifest_new_id(0, id2), 0);
	CHECK(strncmp(id2, "19700101T000000Z-", 17) == 0 && bal_manifest_id_is_valid(id2));
	CHECK_RC(bal_manifest_new_id(-1, id2), -EINVAL);
	CHECK_RC(bal_manifest_new_id(253402300800000LL, id2), -EINVAL);
	CHECK(bal_manifest_id_is_valid("20240229T235959Z-0123456789abcdef"));
	CHECK(!bal_manifest_id_is_valid("20230229T235959Z-0123456789abcdef"));
	CHECK(!bal_manifest_id_is_valid(NULL));
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		snprintf(bad, sizeof(bad), "%s", invalid[i]);
		if (bal_manifest_id_is_valid(bad)) {
			fprintf(stderr, "FAIL: id \"%s\" accepted\n", bad);
			exit(1);
		}
		checks++;
	}
}

/* A manifest with every field set; every third chunk unallocated. */
static struct bal_manifest *sample(uint64_t size, uint32_t chunk_size, bool encrypted)
{
	struct bal_manifest *m;

	CHECK_RC(bal_manifest_create(size, chunk_size, &m), 0);
	CHECK_EQ(m->nchunks, (size + chunk_size - 1) / chunk_size);
	CHECK_RC(bal_manifest_new_id((T0 + 86400) * INT64_C(1000), m->id), 0);
	snprintf(m->volume, sizeof(m->volume), "db-01.prod_x");
	snprintf(m->snapshot, sizeof(m->snapshot), "nightly-2023-11-15");
	m->created = T0 + 86400;
	CHECK_RC(bal_manifest_new_id(T0 * INT64_C(1000), m->parent), 0);
	snprintf(m->source, sizeof(m->source),
		 "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/17/42");
	snprintf(m->storage_class, sizeof(m->storage_class), "STANDARD_IA");
	m->encrypted = encrypted;
	if (encrypted)
		CHECK_RC(bal_crypto_random(m->wrapped_key, sizeof(m->wrapped_key)), 0);
	for (uint64_t i = 0; i < m->nchunks; i++) {
		uint64_t v = i * 0x9e3779b97f4a7c15ull;

		if (i % 3 == 2)
			continue;
		for (int j = 0; j < BAL_CHUNK_NAME_LEN; j++)
			m->chunks[i][j] = "0123456789abcdef"[((v >> (4 * (j % 16))) & 15) ^ (j / 16)];
		m->chunks[i][BAL_CHUNK_NAME_LEN] = '\0';
		m->sizes[i] = 1000 + i;
	}
	m->stored_bytes = UINT64_C(123456789012);
	return m;
}

static bool same(const struct bal_manifest *a, const struct bal_manifest *b)
{
	return !strcmp(a->id, b->id) && !strcmp(a->volume, b->volume) &&
	       !strcmp(a->snapshot, b->snapshot) && a->created == b->created &&
	       a->size == b->size && a->chunk_size == b->chunk_size &&
	       !strcmp(a->parent, b->parent) && !strcmp(a->source, b->source) &&
	       !strcmp(a->storage_class, b->storage_class) && a->encrypted == b->encrypted &&
	       (!a->encrypted || !memcmp(a->wrapped_key, b->wrapped_key, BAL_KW_BLOB_LEN)) &&
	       a->nchunks == b->nchunks && a->stored_bytes == b->stored_bytes &&
	       !memcmp(a->chunks, b->chunks, a->nchunks * sizeof(*a->chunks));
}

/* Encode, decode, compare, verify; returns the document (caller frees). */
static char *round_trip(const struct bal_manifest *m, const struct bal_chunk_keys *k,
			size_t *len)
{
	char why[BAL_MANIFEST_WHY_LEN], *json;
	struct bal_manifest *d;

	CHECK_RC(bal_manifest_encode(m, k, &json, len), 0);
	CHECK(strlen(json) == *len);
	why[0] = 'x';
	CHECK_RC(bal_manifest_decode(json, *len, &d, why, sizeof(why)), 0);
	CHECK(why[0] == '\0');
	CHECK(same(m, d));
	bal_manifest_destroy(d);
	CHECK_RC(bal_manifest_verify(json, *len, k), 0);
	return json;
}

/* @json with the first @from after @after replaced by @to; NULL if absent. */
static char *edit(const char *json, const char *after, const char *from, const char *to)
{
	const char *a = strstr(json, after), *p = a ? strstr(a, from) : NULL;
	size_t pre, n;
	char *out;

	if (!p)
		return NULL;
	pre = (size_t)(p - json);
	n = strlen(json) - strlen(from) + strlen(to);
	out = malloc(n + 1);
	CHECK(out != NULL);
	memcpy(out, json, pre);
	memcpy(out + pre, to, strlen(to));
	strcpy(out + pre + strlen(to), p + strlen(from));
	return out;
}

static void expect_unverified(char *doc, const struct bal_chunk_keys *k, int line)
{
	checks++;
	if (!doc || bal_manifest_verify(doc, strlen(doc), k) != -EBADMSG) {
		fprintf(stderr, "FAIL %s:%d (from line %d): edited manifest %s\n", __FILE__,
			__LINE__, line, doc ? "verified" : "edit did not apply");
		exit(1);
	}
	free(doc);
}

#define EXPECT_UNVERIFIED(doc, k) expect_unverified(doc, k, __LINE__)

/* A jansson-level change of the document, re-dumped. */
static char *rework(const char *json, const char *key, json_t *value)
{
	json_t *o = json_loads(json, 0, NULL);
	char *s;

	CHECK(o != NULL);
	if (value)
		CHECK(json_object_set_new(o, key, value) == 0);
	else
		CHECK(json_object_del(o, key) == 0);
	s = json_dumps(o, JSON_COMPACT);
	CHECK(s != NULL);
	json_decref(o);
	return s;
}

static void test_mac(void)
{
	struct bal_manifest *m = sample(UINT64_C(10) << 30 | 4096, 4u << 20, true);
	char name[BAL_CHUNK_NAME_LEN + 1], quoted[BAL_CHUNK_NAME_LEN + 3];
	size_t len;
	char *json = round_trip(m, k1, &len), *doc;

	printf("encrypted manifest of %" PRIu64 " chunks: %zu bytes\n", m->nchunks, len);
	/* Another key, public keys, a document of another key lineage. */
	CHECK_RC(bal_manifest_verify(json, len, k2), -EBADMSG);
	CHECK_RC(bal_manifest_verify(json, len, kpub), -EBADMSG);
	/* Edited values. */
	memcpy(name, m->chunks[0], sizeof(name));
	name[7] = name[7] == 'a' ? 'b' : 'a';
	EXPECT_UNVERIFIED(edit(json, "\"chunks\"", m->chunks[0], name), k1);
	EXPECT_UNVERIFIED(edit(json, "\"chunks\"", m->chunks[3], m->chunks[0]), k1);
	snprintf(quoted, sizeof(quoted), "\"%s\"", m->chunks[0]);
	EXPECT_UNVERIFIED(edit(json, quoted, "1000", "1001"), k1);	/* its object size */
	EXPECT_UNVERIFIED(edit(json, "\"size\"", "\"size\": 1", "\"size\": 2"), k1);
	EXPECT_UNVERIFIED(edit(json, "\"parent\"", "Z-", "Z-0"), k1);
	EXPECT_UNVERIFIED(edit(json, "\"parent\"", m->parent, ""), k1);
	EXPECT_UNVERIFIED(edit(json, "\"storage_class\"", "STANDARD_IA", "GLACIER"), k1);
	EXPECT_UNVERIFIED(edit(json, "\"stored_bytes\"", "1", "2"), k1);
	EXPECT_UNVERIFIED(edit(json, "\"encrypted\"", "true", "false"), k1);
	EXPECT_UNVERIFIED(edit(json, "\"mac\"", "\"mac\": \"", "\"mac\": \"0"), k1);
	/* Removed and added members, a removed mac. */
	EXPECT_UNVERIFIED(rework(json, "mac", NULL), k1);
	EXPECT_UNVERIFIED(rework(json, "source", NULL), k1);
	EXPECT_UNVERIFIED(rework(json, "extra", json_integer(1)), k1);
	EXPECT_UNVERIFIED(rework(json, "stored_bytes", json_real(123456789012.0)), k1);
	/* Layout does not matter: a compact re-dump still verifies and decodes. */
	doc = rework(json, "format", json_integer(1));
	CHECK(strlen(doc) < len);
	CHECK_RC(bal_manifest_verify(doc, strlen(doc), k1), 0);
	free(doc);
	CHECK_RC(bal_manifest_verify("[]", 2, k1), -EBADMSG);
	CHECK_RC(bal_manifest_verify("{", 1, k1), -EBADMSG);
	CHECK_RC(bal_manifest_verify(json, len - 1, k1), -EBADMSG);
	free(json);
	/* The encoder refuses what the decoder would, and a key mismatch. */
	CHECK_RC(bal_manifest_encode(m, kpub, &json, &len), -EINVAL);
	m->chunks[1][5] = 'G';
	CHECK_RC(bal_manifest_encode(m, k1, &json, &len), -EINVAL);
	m->chunks[1][5] = 'a';
	snprintf(m->volume, sizeof(m->volume), "../etc");
	CHECK_RC(bal_manifest_encode(m, k1, &json, &len), -EINVAL);
	bal_manifest_destroy(m);

	/* Unencrypted, public keys, no parent, default class. */
	m = sample(65536 * 3 + 1, 65536, false);
	m->parent[0] = '\0';
	m->storage_class[0] = '\0';
	json = round_trip(m, kpub, &len);
	CHECK(strstr(json, "\"wrapped_key\": null") != NULL);
	CHECK_RC(bal_manifest_verify(json, len, k1), -EBADMSG);
	EXPECT_UNVERIFIED(edit(json, "\"created\"", "1700", "1800"), kpub);
	free(json);
	bal_manifest_destroy(m);
}

static void test_key(void)
{
	struct bal_manifest *m = sample(1 << 20, 1 << 20, false);
	char buf[256], want[256];

	CHECK_RC(bal_manifest_key(m, buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "manifests/db-01.prod_x/2023/11/15/%s.json", m->id);
	CHECK(strcmp(buf, want) == 0);
	CHECK_RC(bal_manifest_key(m, buf, strlen(want)), -ENAMETOOLONG);
	CHECK_RC(bal_manifest_key(m, buf, strlen(want) + 1), 0);
	m->created = 0;
	CHECK_RC(bal_manifest_key(m, buf, sizeof(buf)), 0);
	CHECK(strncmp(buf, "manifests/db-01.prod_x/1970/01/01/", 34) == 0);
	m->created = -1;
	CHECK_RC(bal_manifest_key(m, buf, sizeof(buf)), -EINVAL);
	m->created = T0;
	m->id[3] = 'x';
	CHECK_RC(bal_manifest_key(m, buf, sizeof(buf)), -EINVAL);
	bal_manifest_destroy(m);

	CHECK_RC(bal_manifest_create(0, 65536, &m), -EINVAL);
	CHECK_RC(bal_manifest_create(1, 65536 + 1, &m), -EINVAL);
	CHECK_RC(bal_manifest_create(1, 32768, &m), -EINVAL);
	CHECK_RC(bal_manifest_create(1, 128u << 20, &m), -EINVAL);
	CHECK_RC(bal_manifest_create(UINT64_C(1) << 63, 65536, &m), -EINVAL);
	bal_manifest_destroy(NULL);
}

/* One malformed variant: decode must refuse it with a reason. */
static void expect_malformed(const char *doc, size_t len, const char *what)
{
	char why[BAL_MANIFEST_WHY_LEN] = "";
	struct bal_manifest *m = NULL;
	int rc = bal_manifest_decode(doc, len, &m, why, sizeof(why));

	checks++;
	if (rc != -EBADMSG || !why[0] || m) {
		fprintf(stderr, "FAIL %s:%d: malformed manifest (%s) decoded: %d\n", __FILE__,
			__LINE__, what, rc);
		exit(1);
	}
	printf("  refused %-28s %s\n", what, why);
}

static void malformed_member(const char *json, const char *key, json_t *value)
{
	char *doc = rework(json, key, value);

	expect_malformed(doc, strlen(doc), key);
	free(doc);
}

static void test_malformed(void)
{
	struct bal_manifest *m = sample(3 * 65536, 65536, true);
	size_t len;
	char *json = round_trip(m, k1, &len), *doc;
	json_t *arr;

	malformed_member(json, "size", json_string("196608"));
	malformed_member(json, "size", json_integer(-1));
	malformed_member(json, "size", json_integer(0));
	malformed_member(json, "size", json_real(196608.0));
	malformed_member(json, "size", json_integer(3 * 65536 + 1));
	malformed_member(json, "size", json_integer(INT64_C(1) << 62)); /* huge, no allocation */
	malformed_member(json, "chunk_size", json_integer(65537));
	malformed_member(json, "chunk_size", json_integer(32768));
	malformed_member(json, "chunk_size", json_integer(INT64_C(128) << 20));
	malformed_member(json, "chunk_size", json_integer(-65536));
	malformed_member(json, "nchunks", json_integer(4));
	/* Entries are [index, name, object size], indexes increasing, < nchunks. */
	malformed_member(json, "chunks", json_pack("[[i,s,i],[i,s,i]]", 1, m->chunks[0], 9, 0,
						   m->chunks[0], 9));
	malformed_member(json, "chunks", json_pack("[[i,s,i],[i,s,i]]", 1, m->chunks[0], 9, 1,
						   m->chunks[0], 9));
	malformed_member(json, "chunks", json_pack("[[i,s,i]]", 3, m->chunks[0], 9));
	malformed_member(json, "chunks", json_pack("[[i,s,i]]", -1, m->chunks[0], 9));
	malformed_member(json, "chunks", json_pack("[[i,s,i]]", 0, m->chunks[0], 0));
	malformed_member(json, "chunks", json_pack("[[i,s,i]]", 0, m->chunks[0], 1 << 30));
	malformed_member(json, "chunks", json_pack("[[i,s]]", 0, m->chunks[0]));
	malformed_member(json, "chunks", json_pack("[[i,s,i,i]]", 0, m->chunks[0], 9, 9));
	malformed_member(json, "chunks", json_pack("[[i,i,i]]", 0, 1, 9));
	malformed_member(json, "chunks", json_pack("[[i,s,i]]", 0, "ABCD", 9));
	malformed_member(json, "chunks", json_pack("[s]", m->chunks[0]));
	malformed_member(json, "chunks", json_pack("[[i,s,i],[i,s,i],[i,s,i],[i,s,i]]", 0,
						   m->chunks[0], 9, 1, m->chunks[0], 9, 2,
						   m->chunks[0], 9, 3, m->chunks[0], 9));
	arr = json_pack("[[i,s,i]]", 0, m->chunks[0], 9);
	CHECK(json_string_set(json_array_get(json_array_get(arr, 0), 1),
			      "0123456789abcdef0123456789abcdef"
			      "0123456789abcdef0123456789abcde") == 0);
	malformed_member(json, "chunks", arr);
	malformed_member(json, "chunks", json_object());
	malformed_member(json, "id", json_string("20231114T221320Z-0123456789abcdeg"));
	malformed_member(json, "id", json_string("20231114T221320Z-0123456789abcdef0123456789ab"
						 "cdef0123456789"));
	malformed_member(json, "volume", json_string("../x"));
	malformed_member(json, "volume", json_string(""));
	malformed_member(json, "snapshot", json_string("a/b"));
	malformed_member(json, "snapshot", json_integer(7));
	malformed_member(json, "parent", json_string(m->id));
	malformed_member(json, "parent", json_string("x"));
	malformed_member(json, "source", json_string("a b"));
	malformed_member(json, "source", json_string("tab\there"));
	malformed_member(json, "storage_class", json_string("STANDARD IA"));
	malformed_member(json, "storage_class", json_string("A_VERY_LONG_STORAGE_CLASS_NAME_XYZ"));
	malformed_member(json, "created", json_integer(-5));
	malformed_member(json, "created", json_integer(INT64_C(253402300800)));
	malformed_member(json, "stored_bytes", json_integer(-1));
	malformed_member(json, "format", json_integer(2));
	malformed_member(json, "format", json_string("1"));
	malformed_member(json, "encrypted", json_string("yes"));
	malformed_member(json, "encrypted", json_false()); /* wrapped_key is not null */
	malformed_member(json, "wrapped_key", json_null());
	malformed_member(json, "wrapped_key", json_string("00"));
	malformed_member(json, "mac", json_string("xyz"));
	malformed_member(json, "mac", NULL);
	malformed_member(json, "chunks", NULL);
	malformed_member(json, "extra", json_true());
	/* Text-level damage. */
	expect_malformed(json, len / 2, "truncated");
	expect_malformed(json, 0, "empty");
	expect_malformed("[1,2]", 5, "array");
	expect_malformed("\"str\"", 5, "string");
	doc = malloc(len + 8);
	CHECK(doc != NULL);
	memcpy(doc, json, len);
	memcpy(doc + len, " {}", 3);
	expect_malformed(doc, len + 3, "trailing data");
	free(doc);
	doc = edit(json, "{", "{", "{\"size\": 196608, ");
	expect_malformed(doc, strlen(doc), "duplicate member");
	free(doc);
	doc = edit(json, "\"volume\"", "db-01", "db\\u0000");
	expect_malformed(doc, strlen(doc), "embedded NUL");
	free(doc);
	doc = edit(json, "\"size\"", "196608", "99999999999999999999999");
	expect_malformed(doc, strlen(doc), "integer overflow");
	free(doc);
	bal_manifest_destroy(m);
	CHECK_RC(bal_manifest_decode(json, len, &m, NULL, 0), 0); /* @why may be NULL */
	bal_manifest_destroy(m);
	free(json);
}

/* Random single-byte changes: refused, or verified and identical to the original. */
static void test_flips(void)
{
	struct bal_manifest *m = sample(5 * 65536 - 100, 65536, true), *d;
	char why[BAL_MANIFEST_WHY_LEN];
	size_t len, accepted = 0;
	char *json = round_trip(m, k1, &len), *doc = malloc(len + 1);

	CHECK(doc != NULL);
	for (int i = 0; i < 3000; i++) {
		size_t pos = (size_t)(next_rand() % len);
		int rc;

		memcpy(doc, json, len + 1);
		doc[pos] = (char)(next_rand() & 0xff);
		rc = bal_manifest_decode(doc, len, &d, why, sizeof(why));
		CHECK(rc == 0 || rc == -EBADMSG);
		if (rc < 0)
			continue;
		if (bal_manifest_verify(doc, len, k1) == 0) {
			CHECK(same(m, d));
			accepted++;
		}
		bal_manifest_destroy(d);
	}
	printf("byte flips: %zu of 3000 verified (all identical to the original)\n", accepted);
	free(doc);
	free(json);
	bal_manifest_destroy(m);
}

static void test_large(void)
{
	struct bal_manifest *m = sample(UINT64_C(16384) << 22, 4u << 20, true);
	size_t len;
	char *json;

	CHECK_EQ(m->nchunks, 16384);
	json = round_trip(m, k1, &len);
	printf("16384-chunk manifest: %zu bytes\n", len);
	free(json);
	bal_manifest_destroy(m);
}

int main(void)
{
	CHECK_RC(bal_xts_key_generate(&xk1), 0);
	CHECK_RC(bal_xts_key_generate(&xk2), 0);
	CHECK_RC(bal_chunk_keys_create(NULL, &kpub), 0);
	CHECK_RC(bal_chunk_keys_create(xk1, &k1), 0);
	CHECK_RC(bal_chunk_keys_create(xk2, &k2), 0);
	test_ids();
	test_key();
	test_mac();
	test_malformed();
	test_flips();
	test_large();
	bal_chunk_keys_destroy(kpub);
	bal_chunk_keys_destroy(k1);
	bal_chunk_keys_destroy(k2);
	bal_xts_key_destroy(xk1);
	bal_xts_key_destroy(xk2);
	printf("%u checks passed\n", atomic_load(&checks));
	return 0;
}
