/* SPDX-License-Identifier: MIT */
/*
 * AES-256-XTS for the block data path (IEEE P1619, as dm-crypt with
 * "plain64" IVs): the tweak of a data unit is its number as a 128-bit
 * little-endian integer.
 *
 * A struct bal_xts_key holds the raw 64-byte key in secure memory and is
 * shared read-only.  Each worker thread makes its own struct bal_xts_ctx per
 * volume: an encrypt and a decrypt EVP_CIPHER_CTX, keyed once, so a request
 * only re-sets the IV (which leaves the key schedule alone) and makes one
 * EVP_CipherUpdate per data unit.  EVP contexts are not thread-safe, which
 * is why there is no shared context and no lock.  The expanded key schedule
 * lives in OpenSSL's own heap memory (not mlock'ed); OpenSSL wipes it when
 * the context is freed.
 */
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/log.h"

struct bal_xts_ctx {
	EVP_CIPHER_CTX *enc;
	EVP_CIPHER_CTX *dec;
};

int bal_xts_key_create(const uint8_t raw[BAL_XTS_KEY_LEN], struct bal_xts_key **out)
{
	struct bal_xts_key *key;

	if (bal_crypto_xts_halves_equal(raw)) {
		bal_err("crypto: refusing an AES-XTS key whose two halves are equal");
		return -EINVAL;
	}
	key = calloc(1, sizeof(*key));
	if (!key)
		return -ENOMEM;
	key->raw = bal_secmem_alloc(BAL_XTS_KEY_LEN);
	if (!key->raw) {
		free(key);
		return -ENOMEM;
	}
	memcpy(key->raw, raw, BAL_XTS_KEY_LEN);
	*out = key;
	return 0;
}

int bal_xts_key_generate(struct bal_xts_key **out)
{
	uint8_t *raw = bal_secmem_alloc(BAL_XTS_KEY_LEN);
	int ret = -EIO;

	if (!raw)
		return -ENOMEM;
	/* Equal halves from a working CSPRNG have probability 2^-256: retry a little. */
	for (int tries = 0; tries < 3; tries++) {
		ret = bal_crypto_random(raw, BAL_XTS_KEY_LEN);
		if (ret < 0)
			break;
		if (!bal_crypto_xts_halves_equal(raw)) {
			ret = bal_xts_key_create(raw, out);
			break;
		}
		bal_err("crypto: the random generator gave a key with equal halves");
		ret = -EIO;
	}
	bal_secmem_free(raw);
	return ret;
}

void bal_xts_key_destroy(struct bal_xts_key *key)
{
	if (!key)
		return;
	bal_secmem_free(key->raw);
	free(key);
}

static EVP_CIPHER_CTX *keyed_ctx(const struct bal_xts_key *key, int enc)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	if (!c)
		return NULL;
	if (EVP_CipherInit_ex2(c, EVP_aes_256_xts(), key->raw, NULL, enc, NULL) != 1) {
		EVP_CIPHER_CTX_free(c);
		return NULL;
	}
	return c;
}

int bal_xts_ctx_create(const struct bal_xts_key *key, struct bal_xts_ctx **out)
{
	struct bal_xts_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return -ENOMEM;
	ctx->enc = keyed_ctx(key, 1);
	if (!ctx->enc)
		goto err_free;
	ctx->dec = keyed_ctx(key, 0);
	if (!ctx->dec)
		goto err_free;
	*out = ctx;
	return 0;

err_free:
	bal_err("crypto: cannot set up an AES-256-XTS context");
	bal_xts_ctx_destroy(ctx);
	return -EIO;
}

void bal_xts_ctx_destroy(struct bal_xts_ctx *ctx)
{
	if (!ctx)
		return;
	EVP_CIPHER_CTX_free(ctx->enc);
	EVP_CIPHER_CTX_free(ctx->dec);
	free(ctx);
}

int bal_xts_crypt(struct bal_xts_ctx *ctx, bool encrypt, size_t unit, uint64_t first_unit,
		  const void *in, void *out, size_t len)
{
	EVP_CIPHER_CTX *c = encrypt ? ctx->enc : ctx->dec;
	const uint8_t *src = in;
	uint8_t *dst = out;
	uint8_t iv[16] = { 0 };
	uint64_t last;
	size_t n;

	if (unit < 16 || unit > BAL_XTS_UNIT_MAX || unit % 16 || len % unit)
		return -EINVAL;
	n = len / unit;
	if (n == 0)
		return 0;
	if (__builtin_add_overflow(first_unit, n - 1, &last))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		uint64_t dun = first_unit + i;
		int outl;

		/* Tweak: the unit number, 128-bit little-endian (upper half zero). */
		for (int b = 0; b < 8; b++)
			iv[b] = (uint8_t)(dun >> (8 * b));
		/* A NULL key keeps the key schedule; only the tweak changes. */
		if (EVP_CipherInit_ex2(c, NULL, NULL, iv, -1, NULL) != 1 ||
		    EVP_CipherUpdate(c, dst, &outl, src, (int)unit) != 1 || (size_t)outl != unit)
			return -EIO;
		src += unit;
		dst += unit;
	}
	return 0;
}

int bal_xts_encrypt(struct bal_xts_ctx *ctx, uint64_t first_block, const void *in, void *out,
		    size_t len)
{
	return bal_xts_crypt(ctx, true, BAL_XTS_UNIT, first_block, in, out, len);
}

int bal_xts_decrypt(struct bal_xts_ctx *ctx, uint64_t first_block, const void *in, void *out,
		    size_t len)
{
	return bal_xts_crypt(ctx, false, BAL_XTS_UNIT, first_block, in, out, len);
}

int bal_xts_key_derive_seal(const struct bal_xts_key *key, uint8_t out[BAL_GCM_KEY_LEN])
{
	static const char info[] = "ballast-seal-v1";

	return bal_hkdf_sha256(NULL, 0, key->raw, BAL_XTS_KEY_LEN, info, sizeof(info) - 1, out,
			       BAL_GCM_KEY_LEN);
}
