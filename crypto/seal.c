/* SPDX-License-Identifier: MIT */
/*
 * HKDF-SHA256 (RFC 5869) and AES-256-GCM sealing with a random 96-bit
 * nonce carried in front of the ciphertext.  Used for wrapping volume keys
 * under the master key and, later, for sealing object-tier chunks with a
 * key derived from the volume key.
 *
 * Each call makes its own OpenSSL context: safe from any thread, one small
 * allocation per call (fine off the block data path).
 */
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "common/log.h"

int bal_hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
		    const void *info, size_t info_len, void *out, size_t out_len)
{
	static const uint8_t zero;
	OSSL_PARAM params[5], *p = params;
	EVP_KDF_CTX *kctx;
	EVP_KDF *kdf;
	int ret = 0;

	if (out_len == 0 || out_len > BAL_HKDF_OUT_MAX || (!salt && salt_len) ||
	    (!info && info_len) || (!ikm && ikm_len))
		return -EINVAL;
	kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
	if (!kdf)
		return -EIO;
	kctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (!kctx)
		return -ENOMEM;
	/* OpenSSL wants non-NULL buffers even for empty inputs. */
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						 (void *)(ikm_len ? ikm : &zero), ikm_len);
	if (salt_len)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
							 salt_len);
	if (info_len)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
							 info_len);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, out_len, params) != 1) {
		bal_err("crypto: HKDF-SHA256 failed");
		OPENSSL_cleanse(out, out_len);
		ret = -EIO;
	}
	EVP_KDF_CTX_free(kctx);
	return ret;
}

int bal_xts_key_derive(const struct bal_xts_key *key, const char *info, void *out,
		       size_t out_len)
{
	if (!key || !info || !*info || !out)
		return -EINVAL;
	return bal_hkdf_sha256(NULL, 0, key->raw, BAL_XTS_KEY_LEN, info, strlen(info), out,
			       out_len);
}

static bool sizes_ok(size_t aad_len, size_t data_len)
{
	/* EVP lengths are int. */
	return aad_len <= INT_MAX && data_len <= INT_MAX - 16;
}

int bal_gcm_seal(const uint8_t key[BAL_GCM_KEY_LEN], const void *aad, size_t aad_len,
		 const void *in, size_t in_len, void *out)
{
	uint8_t *nonce = out, *ct = nonce + BAL_GCM_NONCE_LEN, *tag = ct + in_len;
	EVP_CIPHER_CTX *c;
	int outl, ret = -EIO;

	if (!sizes_ok(aad_len, in_len) || (!aad && aad_len))
		return -EINVAL;
	ret = bal_crypto_random(nonce, BAL_GCM_NONCE_LEN);
	if (ret < 0)
		return ret;
	c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	ret = -EIO;
	/* The default GCM IV length is 12 bytes, our nonce size. */
	if (EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), key, nonce, NULL) != 1)
		goto out_free;
	if (aad_len && EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1)
		goto out_free;
	if (in_len && EVP_EncryptUpdate(c, ct, &outl, in, (int)in_len) != 1)
		goto out_free;
	if (EVP_EncryptFinal_ex(c, ct + in_len, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, BAL_GCM_TAG_LEN, tag) != 1)
		goto out_free;
	ret = 0;
out_free:
	if (ret < 0)
		bal_err("crypto: AES-256-GCM seal failed");
	EVP_CIPHER_CTX_free(c);
	return ret;
}

int bal_gcm_open(const uint8_t key[BAL_GCM_KEY_LEN], const void *aad, size_t aad_len,
		 const void *in, size_t in_len, void *out)
{
	const uint8_t *nonce = in, *ct = nonce + BAL_GCM_NONCE_LEN;
	uint8_t tag[BAL_GCM_TAG_LEN];
	size_t ct_len;
	EVP_CIPHER_CTX *c;
	int outl, ret = -EIO;

	if (in_len < BAL_GCM_OVERHEAD || !sizes_ok(aad_len, in_len) || (!aad && aad_len))
		return -EINVAL;
	ct_len = in_len - BAL_GCM_OVERHEAD;
	/* The tag is copied out: OpenSSL's ctrl takes a non-const pointer. */
	memcpy(tag, ct + ct_len, sizeof(tag));
	c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	if (EVP_DecryptInit_ex2(c, EVP_aes_256_gcm(), key, nonce, NULL) != 1)
		goto out_free;
	if (aad_len && EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1)
		goto out_free;
	if (ct_len && EVP_DecryptUpdate(c, out, &outl, ct, (int)ct_len) != 1)
		goto out_free;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, BAL_GCM_TAG_LEN, tag) != 1)
		goto out_free;
	/* Final checks the tag; on a mismatch nothing decrypted may escape. */
	if (EVP_DecryptFinal_ex(c, (uint8_t *)out + ct_len, &outl) != 1) {
		OPENSSL_cleanse(out, ct_len);
		ret = -EBADMSG;
		goto out_free_quiet;
	}
	ret = 0;
out_free:
	if (ret < 0) {
		OPENSSL_cleanse(out, ct_len);
		bal_err("crypto: AES-256-GCM open failed");
	}
out_free_quiet:
	EVP_CIPHER_CTX_free(c);
	return ret;
}
