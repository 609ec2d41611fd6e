/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 and HMAC-SHA256 for the object tier: content names of chunks
 * (keyed), the manifest MAC and request signing.  One-shot functions, safe
 * from any thread; an OpenSSL context per call (off the block data path).
 */
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int bal_sha256(const void *data, size_t len, uint8_t out[BAL_SHA256_LEN])
{
	unsigned int n = 0;

	if (!data && len)
		return -EINVAL;
	if (EVP_Digest(len ? data : "", len, out, &n, EVP_sha256(), NULL) != 1 ||
	    n != BAL_SHA256_LEN)
		return -EIO;
	return 0;
}

int bal_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		    uint8_t out[BAL_SHA256_LEN])
{
	unsigned int n = 0;

	if ((!key && key_len) || (!data && len) || key_len > (size_t)INT32_MAX)
		return -EINVAL;
	if (!HMAC(EVP_sha256(), key_len ? key : "", (int)key_len, len ? data : (const void *)"",
		  len, out, &n) || n != BAL_SHA256_LEN)
		return -EIO;
	return 0;
}

bool bal_mac_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

void bal_wipe(void *p, size_t len)
{
	if (p && len)
		OPENSSL_cleanse(p, len);
}
