/* SPDX-License-Identifier: MIT */
/*
 * Unit test of snapshot/chunk: key derivation (bal_xts_key_derive), names
 * (equal data and key lineage -> equal name; other key or unencrypted ->
 * another name), encode/decode round trips of zero, compressible, random
 * and short chunks with sealed and public keys, no plaintext block inside a
 * sealed object, and the refusal (-EBADMSG, output wiped) of every flipped
 * byte at a sample of positions, truncations, appended bytes, wrong names,
 * wrong keys and wrong lengths.  Object keys and the zero test.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "crypto/crypto.h"
#include "snapshot/chunk.h"

#define SHORT_LEN 12345u

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	/* xorshift64*: deterministic, so a failing position can be replayed. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(next_rand() >> 56);
}

static void fill_text(uint8_t *p, size_t len)
{
	char line[80];
	size_t off = 0;

	for (unsigned n = 0; off < len; n++) {
		int l = snprintf(line, sizeof(line), "block %08u of a compressible chunk\n", n);
		size_t c = len - off < (size_t)l ? len - off : (size_t)l;

		memcpy(p + off, line, c);
		off += c;
	}
}

/* The chunk key sets of the test: public, two of key 1 (same lineage), key 2. */
static struct bal_xts_key *xk1, *xk2;
static struct bal_chunk_keys *kpub, *k1, *k1b, *k2;

static void test_derive(void)
{
	uint8_t raw[BAL_XTS_KEY_LEN], a[64], b[64], seal[BAL_GCM_KEY_LEN];
	struct bal_xts_key *xk;

	for (unsigned i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 7 + 1);
	CHECK_RC(bal_xts_key_create(raw, &xk), 0);
	/* HKDF-SHA256(volume key, no salt, info), any length. */
	CHECK_RC(bal_xts_key_derive(xk, "ballast-chunk-name-v1", a, sizeof(a)), 0);
	CHECK_RC(bal_hkdf_sha256(NULL, 0, raw, sizeof(raw), "ballast-chunk-name-v1", 21, b,
				 sizeof(b)),
		 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	CHECK_RC(bal_xts_key_derive(xk, "ballast-chunk-seal-v1", b, sizeof(b)), 0);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	/* The existing seal derivation is the same construction. */
	CHECK_RC(bal_xts_key_derive(xk, "ballast-seal-v1", a, 32), 0);
	CHECK_RC(bal_xts_key_derive_seal(xk, seal), 0);
	CHECK(memcmp(a, seal, 32) == 0);
	CHECK_RC(bal_xts_key_derive(xk, "", a, 32), -EINVAL);
	CHECK_RC(bal_xts_key_derive(xk, NULL, a, 32), -EINVAL);
	CHECK_RC(bal_xts_key_derive(xk, "x", a, 0), -EINVAL);
	bal_xts_key_destroy(xk);
}

static void setup_keys(void)
{
	CHECK_RC(bal_xts_key_generate(&xk1), 0);
	CHECK_RC(bal_xts_key_generate(&xk2), 0);
	CHECK_RC(bal_chunk_keys_create(NULL, &kpub), 0);
	CHECK_RC(bal_chunk_keys_create(xk1, &k1), 0);
	CHECK_RC(bal_chunk_keys_create(xk1, &k1b), 0);
	CHECK_RC(bal_chunk_keys_create(xk2, &k2), 0);
	CHECK(!bal_chunk_keys_sealed(kpub));
	CHECK(bal_chunk_keys_sealed(k1));
	bal_chunk_keys_destroy(NULL);
}

static void test_names(const uint8_t *data, size_t len)
{
	char n1[BAL_CHUNK_NAME_LEN + 1], n1b[BAL_CHUNK_NAME_LEN + 1], n2[BAL_CHUNK_NAME_LEN + 1];
	char np[BAL_CHUNK_NAME_LEN + 1], np2[BAL_CHUNK_NAME_LEN + 1];
	uint8_t m1[32], m1b[32], m2[32];

	CHECK_RC(bal_chunk_name(k1, data, len, n1), 0);
	CHECK_RC(bal_chunk_name(k1b, data, len, n1b), 0);
	CHECK_RC(bal_chunk_name(k2, data, len, n2), 0);
	CHECK_RC(bal_chunk_name(kpub, data, len, np), 0);
	CHECK(bal_chunk_name_is_valid(n1) && bal_chunk_name_is_valid(np));
	CHECK(strcmp(n1, n1b) == 0);
	CHECK(strcmp(n1, n2) != 0);
	CHECK(strcmp(n1, np) != 0);
	CHECK(strcmp(n2, np) != 0);
	/* Public keys are fixed: the same name from another key set. */
	{
		struct bal_chunk_keys *kp2;

		CHECK_RC(bal_chunk_keys_create(NULL, &kp2), 0);
		CHECK_RC(bal_chunk_name(kp2, data, len, np2), 0);
		CHECK(strcmp(np, np2) == 0);
		bal_chunk_keys_destroy(kp2);
	}
	CHECK_RC(bal_chunk_name(k1, data, 0, n1), -EINVAL);
	CHECK_RC(bal_chunk_name(k1, data, BAL_CHUNK_SIZE + 1, n1), -EINVAL);
	/* Manifest MACs: per key, distinct from names. */
	CHECK_RC(bal_chunk_mac(k1, data, len, m1), 0);
	CHECK_RC(bal_chunk_mac(k1b, data, len, m1b), 0);
	CHECK_RC(bal_chunk_mac(k2, data, len, m2), 0);
	CHECK(memcmp(m1, m1b, 32) == 0 && memcmp(m1, m2, 32) != 0);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return bal_chunk_is_zero(p, len);
}

/* Decode must fail with @want and leave @out wiped. */
static void expect_bad(const struct bal_chunk_keys *k, const char *name, const void *obj,
		       size_t obj_len, uint8_t *out, size_t len, int want, int line)
{
	int rc;

	memset(out, 0xa5, len);
	rc = bal_chunk_decode(k, name, obj, obj_len, out, len);
	checks++;
	if (rc != want || !all_zero(out, len)) {
		fprintf(stderr, "FAIL %s:%d (from line %d): decode of %zu bytes = %d, want %d%s\n",
			__FILE__, __LINE__, line, obj_len, rc, want,
			all_zero(out, len) ? "" : " (output not wiped)");
		exit(1);
	}
}

#define EXPECT_BAD(k, name, obj, obj_len, out, len) \
	expect_bad(k, name, obj, obj_len, out, len, -EBADMSG, __LINE__)

/* Positions to tamper with: the header, both ends of the payload, a random sample. */
static size_t tamper_pos(size_t i, size_t obj_len)
{
	if (i < 48)
		return i < obj_len ? i : obj_len - 1;
	if (i < 80)
		return obj_len - 1 - (i - 48) % obj_len;
	return (size_t)(next_rand() % obj_len);
}

static void tamper(const struct bal_chunk_keys *k, const struct bal_chunk_keys *other,
		   const char *name, const uint8_t *obj, size_t obj_len, uint8_t *out, size_t len)
{
	char wrong[BAL_CHUNK_NAME_LEN + 1];
	/* Whole 4 MiB decodes are slow: fewer random positions for those. */
	size_t nflips = len >= (1u << 20) ? 128 : 400;
	uint8_t *copy = malloc(obj_len + 64);

	CHECK(copy != NULL);
	for (size_t i = 0; i < nflips; i++) {
		size_t pos = tamper_pos(i, obj_len);
		uint8_t flip = (uint8_t)(i & 1 ? 0x01 : 0x80 >> (i % 8));

		memcpy(copy, obj, obj_len);
		copy[pos] ^= flip;
		EXPECT_BAD(k, name, copy, obj_len, out, len);
	}
	/* Every short length near the structure boundaries, then a sample. */
	for (size_t t = 0; t < 64 && t < obj_len; t++)
		EXPECT_BAD(k, name, obj, t, out, len);
	for (size_t t = 1; t <= 64 && t < obj_len; t++)
		EXPECT_BAD(k, name, obj, obj_len - t, out, len);
	for (size_t i = 0; i < 64; i++)
		EXPECT_BAD(k, name, obj, (size_t)(next_rand() % obj_len), out, len);
	/* Appended bytes: one, a block, and a zstd skippable frame. */
	memcpy(copy, obj, obj_len);
	memset(copy + obj_len, 0, 64);
	EXPECT_BAD(k, name, copy, obj_len + 1, out, len);
	EXPECT_BAD(k, name, copy, obj_len + 16, out, len);
	memcpy(copy + obj_len, "\x50\x2a\x4d\x18\x04\x00\x00\x00" "abcd", 12);
	EXPECT_BAD(k, name, copy, obj_len + 12, out, len);
	/* Another (valid) name, a malformed one, another key, another length. */
	memcpy(wrong, name, sizeof(wrong));
	wrong[10] = wrong[10] == '0' ? '1' : '0';
	EXPECT_BAD(k, wrong, obj, obj_len, out, len);
	wrong[10] = 'A';
	expect_bad(k, wrong, obj, obj_len, out, len, -EINVAL, __LINE__);
	EXPECT_BAD(other, name, obj, obj_len, out, len);
	if (len > 1)
		EXPECT_BAD(k, name, obj, obj_len, out, len - 1);
	if (len < BAL_CHUNK_SIZE) {
		uint8_t *big = malloc(len + 1);

		CHECK(big != NULL);
		EXPECT_BAD(k, name, obj, obj_len, big, len + 1);
		free(big);
	}
	expect_bad(k, name, obj, obj_len, out, 0, -EINVAL, __LINE__);
	free(copy);
}

/*
 * Does @hay contain a 4 KiB block of @plain?  Up to 64 blocks spread over
 * @plain (each memmem scans the whole object), the first and last included.
 */
static bool leaks_plain(const uint8_t *hay, size_t hay_len, const uint8_t *plain, size_t len)
{
	size_t nblocks = len / 4096, n = nblocks < 64 ? nblocks : 64;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *blk = plain + (n > 1 ? i * (nblocks - 1) / (n - 1) : 0) * 4096;

		if (!bal_chunk_is_zero(blk, 4096) && memmem(hay, hay_len, blk, 4096))
			return true;
	}
	return false;
}

static void round_trip(const char *what, const uint8_t *plain, size_t len, bool expect_zstd)
{
	const struct bal_chunk_keys *sets[2] = { kpub, k1 };
	uint8_t *out = malloc(len);

	CHECK(out != NULL);
	for (int s = 0; s < 2; s++) {
		const struct bal_chunk_keys *k = sets[s];
		char name[BAL_CHUNK_NAME_LEN + 1];
		size_t obj_len, obj2_len;
		uint8_t *obj, *obj2;

		CHECK_RC(bal_chunk_name(k, plain, len, name), 0);
		CHECK_RC(bal_chunk_encode(k, name, plain, len, (void **)&obj, &obj_len), 0);
		CHECK_EQ(obj[5] & BAL_CHUNK_F_SEALED, s ? BAL_CHUNK_F_SEALED : 0);
		CHECK_EQ(obj[5] & BAL_CHUNK_F_ZSTD, expect_zstd ? BAL_CHUNK_F_ZSTD : 0);
		if (!expect_zstd)
			CHECK_EQ(obj_len, BAL_CHUNK_HDR_LEN + len +
						  (s ? BAL_GCM_OVERHEAD : BAL_CHUNK_CHECK_LEN));
		else
			CHECK(obj_len < len);
		memset(out, 0xa5, len);
		CHECK_RC(bal_chunk_decode(k, name, obj, obj_len, out, len), 0);
		CHECK(memcmp(out, plain, len) == 0);
		if (s) {
			/* Sealed: no plaintext block, and a fresh nonce each time. */
			CHECK(!leaks_plain(obj, obj_len, plain, len));
			CHECK_RC(bal_chunk_encode(k, name, plain, len, (void **)&obj2, &obj2_len),
				 0);
			CHECK(obj2_len == obj_len && memcmp(obj, obj2, obj_len) != 0);
			/* Same key lineage: an object of k1 opens with k1b. */
			CHECK_RC(bal_chunk_decode(k1b, name, obj2, obj2_len, out, len), 0);
			CHECK(memcmp(out, plain, len) == 0);
			free(obj2);
			tamper(k, k2, name, obj, obj_len, out, len);
			/* Sealed objects under public keys, and the reverse. */
			EXPECT_BAD(kpub, name, obj, obj_len, out, len);
		} else {
			tamper(k, k1, name, obj, obj_len, out, len);
		}
		printf("%-12s %-6s %8zu -> %8zu bytes\n", what, s ? "sealed" : "public", len,
		       obj_len);
		free(obj);
	}
	free(out);
}

static void test_round_trips(void)
{
	uint8_t *buf = malloc(BAL_CHUNK_SIZE);

	CHECK(buf != NULL);
	memset(buf, 0, BAL_CHUNK_SIZE);
	test_names(buf, BAL_CHUNK_SIZE);
	round_trip("zero", buf, BAL_CHUNK_SIZE, true);
	fill_text(buf, BAL_CHUNK_SIZE);
	test_names(buf, BAL_CHUNK_SIZE);
	round_trip("text", buf, BAL_CHUNK_SIZE, true);
	fill_random(buf, BAL_CHUNK_SIZE);
	test_names(buf, BAL_CHUNK_SIZE);
	round_trip("random", buf, BAL_CHUNK_SIZE, false);
	/* A short last chunk, random and compressible, and a single byte. */
	round_trip("short-rand", buf, SHORT_LEN, false);
	fill_text(buf, SHORT_LEN);
	round_trip("short-text", buf, SHORT_LEN, true);
	round_trip("one-byte", buf, 1, false);
	/* An unsealed random chunk does carry its plaintext: the leak test sees it. */
	{
		char name[BAL_CHUNK_NAME_LEN + 1];
		size_t obj_len;
		void *obj;

		fill_random(buf, 16384);
		CHECK_RC(bal_chunk_name(kpub, buf, 16384, name), 0);
		CHECK_RC(bal_chunk_encode(kpub, name, buf, 16384, &obj, &obj_len), 0);
		CHECK(leaks_plain(obj, obj_len, buf, 16384));
		free(obj);
		CHECK_RC(bal_chunk_encode(kpub, name, buf, 0, &obj, &obj_len), -EINVAL);
		CHECK_RC(bal_chunk_encode(kpub, "nope", buf, 16, &obj, &obj_len), -EINVAL);
	}
	free(buf);
}

static void test_key_and_zero(void)
{
	char name[BAL_CHUNK_NAME_LEN + 1], key[BAL_CHUNK_KEY_LEN + 1];
	uint8_t *buf;

	memset(name, 'a', BAL_CHUNK_NAME_LEN);
	name[0] = '0';
	name[1] = 'f';
	name[BAL_CHUNK_NAME_LEN] = '\0';
	CHECK_RC(bal_chunk_key(name, key, sizeof(key)), 0);
	CHECK(strncmp(key, "chunks/0f/0faa", 14) == 0 && strlen(key) == BAL_CHUNK_KEY_LEN);
	CHECK(strcmp(key + 10, name) == 0);
	CHECK_RC(bal_chunk_key(name, key, sizeof(key) - 1), -ENAMETOOLONG);
	name[5] = 'A';
	CHECK_RC(bal_chunk_key(name, key, sizeof(key)), -EINVAL);
	CHECK(!bal_chunk_name_is_valid(name));
	name[5] = 'a';
	name[63] = '\0';
	CHECK(!bal_chunk_name_is_valid(name));
	CHECK(!bal_chunk_name_is_valid(NULL));

	buf = calloc(1, BAL_CHUNK_SIZE + 64);
	CHECK(buf != NULL);
	CHECK(bal_chunk_is_zero(buf, 0));
	for (size_t len = 1; len <= 64; len++) {
		for (size_t i = 0; i < len; i++) {
			CHECK(bal_chunk_is_zero(buf + 1, len));
			buf[1 + i] = 1;
			CHECK(!bal_chunk_is_zero(buf + 1, len));
			buf[1 + i] = 0;
		}
	}
	CHECK(bal_chunk_is_zero(buf, BAL_CHUNK_SIZE));
	for (size_t i = 0; i < 64; i++) {
		size_t pos = i < 32 ? BAL_CHUNK_SIZE - 1 - i : (size_t)(next_rand() % BAL_CHUNK_SIZE);

		buf[pos] = 0x80;
		CHECK(!bal_chunk_is_zero(buf, BAL_CHUNK_SIZE));
		buf[pos] = 0;
	}
	free(buf);
}

int main(void)
{
	test_derive();
	setup_keys();
	test_key_and_zero();
	test_round_trips();
	bal_chunk_keys_destroy(kpub);
	bal_chunk_keys_destroy(k1);
	bal_chunk_keys_destroy(k1b);
	bal_chunk_keys_destroy(k2);
	bal_xts_key_destroy(xk1);
	bal_xts_key_destroy(xk2);
	printf("%u checks passed\n", atomic_load(&checks));
	return 0;
}
