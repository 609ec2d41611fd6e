/* SPDX-License-Identifier: MIT */
/*
 * Volume keys at rest.
 *
 * Master-key volumes: the 64-byte XTS key is sealed with AES-256-GCM under
 * the master key, with "ballast-kw-v1\0" || volume id as associated data,
 * so a blob copied onto another volume's record does not unwrap.  Blob:
 * version 1 || nonce || encrypted key || tag (BAL_KW_BLOB_LEN bytes).
 *
 * Customer-key volumes: nothing secret is stored.  The XTS key is derived
 * from the customer key with HKDF-SHA256 and a random per-volume salt, and
 * a second HKDF output (another info string) is stored as a check value so
 * a wrong key is refused before it touches data.  The salt, not the volume
 * id, is the HKDF salt so that a clone can share its parent's record.
 *
 * Safe from any thread; no state.
 */
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/log.h"

#define KW_VERSION 1
#define KW_AAD_PREFIX "ballast-kw-v1"
#define KW_AAD_MAX (sizeof(KW_AAD_PREFIX) + 256)

static const char ck_check_info[] = "ballast-ck-check-v1";
static const char ck_xts_info[] = "ballast-ck-xts-v1";

/* "ballast-kw-v1\0" || volume id.  Returns the length, 0 if the id is bad. */
static size_t kw_aad(const char *volume_id, uint8_t aad[KW_AAD_MAX])
{
	size_t id_len = volume_id ? strlen(volume_id) : 0;

	if (id_len == 0 || id_len > KW_AAD_MAX - sizeof(KW_AAD_PREFIX))
		return 0;
	memcpy(aad, KW_AAD_PREFIX, sizeof(KW_AAD_PREFIX));
	memcpy(aad + sizeof(KW_AAD_PREFIX), volume_id, id_len);
	return sizeof(KW_AAD_PREFIX) + id_len;
}

int bal_kw_wrap(const struct bal_mk *mk, const char *volume_id, const struct bal_xts_key *key,
		uint8_t blob[BAL_KW_BLOB_LEN])
{
	uint8_t aad[KW_AAD_MAX];
	size_t aad_len = kw_aad(volume_id, aad);
	int ret;

	if (aad_len == 0) {
		bal_err("crypto: cannot wrap a key for an empty or overlong volume id");
		return -EINVAL;
	}
	blob[0] = KW_VERSION;
	ret = bal_gcm_seal(mk->raw, aad, aad_len, key->raw, BAL_XTS_KEY_LEN, blob + 1);
	if (ret < 0)
		bal_err("volume %s: cannot wrap its key", volume_id);
	return ret;
}

int bal_kw_unwrap(const struct bal_mk *mk, const char *volume_id, const uint8_t *blob,
		  size_t len, struct bal_xts_key **out)
{
	uint8_t aad[KW_AAD_MAX];
	size_t aad_len = kw_aad(volume_id, aad);
	uint8_t *raw;
	int ret;

	if (aad_len == 0) {
		bal_err("crypto: cannot unwrap a key for an empty or overlong volume id");
		return -EINVAL;
	}
	if (len != BAL_KW_BLOB_LEN || blob[0] != KW_VERSION) {
		bal_err("volume %s: wrapped key is malformed (%zu bytes, version %u)", volume_id,
			len, len ? blob[0] : 0u);
		return -EKEYREJECTED;
	}
	raw = bal_secmem_alloc(BAL_XTS_KEY_LEN);
	if (!raw)
		return -ENOMEM;
	ret = bal_gcm_open(mk->raw, aad, aad_len, blob + 1, len - 1, raw);
	if (ret == -EBADMSG) {
		bal_err("volume %s: wrapped key does not authenticate: wrong master key, or the record was altered or belongs to another volume",
			volume_id);
		ret = -EKEYREJECTED;
		goto out_free;
	}
	if (ret < 0)
		goto out_free;
	if (bal_crypto_xts_halves_equal(raw)) {
		bal_err("volume %s: unwrapped key has equal XTS halves; refusing it", volume_id);
		ret = -EKEYREJECTED;
		goto out_free;
	}
	ret = bal_xts_key_create(raw, out);
out_free:
	bal_secmem_free(raw);
	return ret;
}

int bal_ck_create(const void *raw, size_t len, struct bal_ck **out)
{
	struct bal_ck *ck;

	if (len != 32 && len != 64) {
		bal_err("crypto: a customer key is 32 or 64 bytes, not %zu", len);
		return -EINVAL;
	}
	ck = calloc(1, sizeof(*ck));
	if (!ck)
		return -ENOMEM;
	ck->raw = bal_secmem_alloc(len);
	if (!ck->raw) {
		free(ck);
		return -ENOMEM;
	}
	memcpy(ck->raw, raw, len);
	ck->len = len;
	*out = ck;
	return 0;
}

int bal_ck_load_file(const char *path, struct bal_ck **out)
{
	uint8_t *buf = bal_secmem_alloc(64);
	size_t len;
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = bal_crypto_read_secret_file(path, "customer key file", buf, 64, &len);
	if (ret == 0 && len != 32 && len != 64) {
		bal_err("customer key file %s: %zu bytes; a customer key file holds exactly 32 or 64 bytes",
			path, len);
		ret = -EINVAL;
	}
	if (ret == 0)
		ret = bal_ck_create(buf, len, out);
	bal_secmem_free(buf);
	return ret;
}

void bal_ck_destroy(struct bal_ck *ck)
{
	if (!ck)
		return;
	bal_secmem_free(ck->raw);
	free(ck);
}

static int ck_check(const struct bal_ck *ck, const uint8_t salt[BAL_CK_SALT_LEN],
		    uint8_t check[BAL_CK_CHECK_LEN])
{
	return bal_hkdf_sha256(salt, BAL_CK_SALT_LEN, ck->raw, ck->len, ck_check_info,
			       sizeof(ck_check_info) - 1, check, BAL_CK_CHECK_LEN);
}

int bal_ck_enroll(const struct bal_ck *ck, struct bal_ck_record *rec)
{
	int ret = bal_crypto_random(rec->salt, sizeof(rec->salt));

	if (ret < 0)
		return ret;
	return ck_check(ck, rec->salt, rec->check);
}

int bal_ck_unlock(const struct bal_ck *ck, const struct bal_ck_record *rec, const char *volume,
		  struct bal_xts_key **out)
{
	uint8_t check[BAL_CK_CHECK_LEN];
	uint8_t *raw;
	int ret;

	ret = ck_check(ck, rec->salt, check);
	if (ret < 0)
		return ret;
	if (CRYPTO_memcmp(check, rec->check, sizeof(check)) != 0) {
		bal_err("volume %s: the customer key does not match this volume's key check value; refusing it",
			volume);
		return -EKEYREJECTED;
	}
	raw = bal_secmem_alloc(BAL_XTS_KEY_LEN);
	if (!raw)
		return -ENOMEM;
	ret = bal_hkdf_sha256(rec->salt, BAL_CK_SALT_LEN, ck->raw, ck->len, ck_xts_info,
			      sizeof(ck_xts_info) - 1, raw, BAL_XTS_KEY_LEN);
	if (ret == 0 && bal_crypto_xts_halves_equal(raw)) {
		bal_err("volume %s: the customer key derives an XTS key with equal halves; refusing it",
			volume);
		ret = -EKEYREJECTED;
	}
	if (ret == 0)
		ret = bal_xts_key_create(raw, out);
	bal_secmem_free(raw);
	return ret;
}
