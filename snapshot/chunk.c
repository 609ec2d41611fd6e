/* SPDX-License-Identifier: MIT */
/*
 * Chunk objects: key derivation, keyed names, and the encode/decode of one
 * chunk (zstd, then AES-256-GCM for sealed keys).  The layout is described
 * in chunk.h.  The zstd calls live here and only here.
 *
 * Decoding trusts nothing in the object: every size is checked against the
 * length the caller expects (at most BAL_CHUNK_SIZE) before anything is
 * allocated, every byte is covered by the GCM tag (sealed) or the check tag
 * (public keys: zstd ignores some frame bits, so the name alone would let a
 * flipped bit pass), the payload must be exactly one zstd frame that
 * declares and yields that length, and the result must hash back to the
 * name it was fetched under.  On any failure the caller's buffer is wiped.
 *
 * Pure functions, safe from any thread; a context is made per call.
 */
#include "snapshot/chunk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "common/log.h"
#include "common/util.h"
#include "crypto/crypto.h"

#define KEY_LEN 32
#define AAD_LEN (BAL_CHUNK_HDR_LEN + BAL_CHUNK_NAME_LEN)

static const uint8_t chunk_magic[4] = { 'B', 'A', 'L', 'C' };
#define CHUNK_VERSION 1

/* Input keying material of unencrypted volumes: public by design. */
static const char public_ikm[] = "ballast-chunk-public-v1";

static const char *const key_info[3] = {
	"ballast-chunk-name-v1",
	"ballast-chunk-seal-v1",
	"ballast-manifest-mac-v1",
};

/* Immutable after creation. */
struct bal_chunk_keys {
	uint8_t *raw; /* bal_secmem: name key || seal key || mac key */
	bool sealed;
};

static const uint8_t *name_key(const struct bal_chunk_keys *k)
{
	return k->raw;
}

static const uint8_t *seal_key(const struct bal_chunk_keys *k)
{
	return k->raw + KEY_LEN;
}

static const uint8_t *mac_key(const struct bal_chunk_keys *k)
{
	return k->raw + 2 * KEY_LEN;
}

int bal_chunk_keys_create(const struct bal_xts_key *key, struct bal_chunk_keys **out)
{
	struct bal_chunk_keys *k;
	int ret;

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->raw = bal_secmem_alloc(3 * KEY_LEN);
	if (!k->raw) {
		ret = -ENOMEM;
		goto err_free;
	}
	k->sealed = key != NULL;
	for (int i = 0; i < 3; i++) {
		uint8_t *dst = k->raw + i * KEY_LEN;

		if (key)
			ret = bal_xts_key_derive(key, key_info[i], dst, KEY_LEN);
		else
			ret = bal_hkdf_sha256(NULL, 0, public_ikm, sizeof(public_ikm) - 1,
					      key_info[i], strlen(key_info[i]), dst, KEY_LEN);
		if (ret < 0)
			goto err_secmem;
	}
	*out = k;
	return 0;

err_secmem:
	bal_secmem_free(k->raw);
err_free:
	free(k);
	return ret;
}

void bal_chunk_keys_destroy(struct bal_chunk_keys *k)
{
	if (!k)
		return;
	bal_secmem_free(k->raw);
	free(k);
}

bool bal_chunk_keys_sealed(const struct bal_chunk_keys *k)
{
	return k->sealed;
}

bool bal_chunk_name_is_valid(const char *name)
{
	return name && bal_is_lower_hex(name, BAL_CHUNK_NAME_LEN);
}

int bal_chunk_name(const struct bal_chunk_keys *k, const void *plain, size_t len,
		   char name[BAL_CHUNK_NAME_LEN + 1])
{
	uint8_t mac[BAL_SHA256_LEN];
	int ret;

	if (!k || !plain || len == 0 || len > BAL_CHUNK_SIZE || !name)
		return -EINVAL;
	ret = bal_hmac_sha256(name_key(k), KEY_LEN, plain, len, mac);
	if (ret < 0)
		return ret;
	bal_hex_encode(mac, sizeof(mac), name);
	return 0;
}

static void put_header(uint8_t *hdr, uint8_t flags, size_t plain_len)
{
	memcpy(hdr, chunk_magic, sizeof(chunk_magic));
	hdr[4] = CHUNK_VERSION;
	hdr[5] = flags;
	bal_put_be16(hdr + 6, 0);
	bal_put_be32(hdr + 8, (uint32_t)plain_len);
}

/* The check tag of an unsealed object (see chunk.h). */
static int check_tag(const struct bal_chunk_keys *k, const uint8_t *hdr, const char *name,
		     const void *payload, size_t len, uint8_t tag[BAL_CHUNK_CHECK_LEN])
{
	uint8_t buf[AAD_LEN + BAL_SHA256_LEN];
	int ret;

	memcpy(buf, hdr, BAL_CHUNK_HDR_LEN);
	memcpy(buf + BAL_CHUNK_HDR_LEN, name, BAL_CHUNK_NAME_LEN);
	ret = bal_sha256(payload, len, buf + AAD_LEN);
	if (ret < 0)
		return ret;
	return bal_hmac_sha256(seal_key(k), KEY_LEN, buf, sizeof(buf), tag);
}

int bal_chunk_encode(const struct bal_chunk_keys *k, const char *name, const void *plain,
		     size_t len, void **obj, size_t *obj_len)
{
	size_t bound, zlen, pay_len, total, extra;
	uint8_t aad[AAD_LEN], *o, *zbuf;
	const void *payload;
	uint8_t flags = 0;
	ZSTD_CCtx *cctx;
	int ret = 0;

	if (!k || !bal_chunk_name_is_valid(name) || !plain || len == 0 || len > BAL_CHUNK_SIZE ||
	    !obj || !obj_len)
		return -EINVAL;
	bound = ZSTD_compressBound(len);
	extra = k->sealed ? BAL_GCM_OVERHEAD : BAL_CHUNK_CHECK_LEN;
	/* Unsealed, zstd writes straight into the object; sealed, into a scratch copy. */
	o = malloc(BAL_CHUNK_HDR_LEN + bound + extra);
	if (!o)
		return -ENOMEM;
	zbuf = k->sealed ? malloc(bound) : o + BAL_CHUNK_HDR_LEN;
	if (!zbuf) {
		ret = -ENOMEM;
		goto err_free_obj;
	}
	cctx = ZSTD_createCCtx();
	if (!cctx) {
		ret = -ENOMEM;
		goto err_free_zbuf;
	}
	zlen = ZSTD_compressCCtx(cctx, zbuf, bound, plain, len, BAL_CHUNK_ZSTD_LEVEL);
	ZSTD_freeCCtx(cctx);
	if (ZSTD_isError(zlen)) {
		bal_err("chunk %s: zstd compression failed: %s", name, ZSTD_getErrorName(zlen));
		ret = -EIO;
		goto err_free_zbuf;
	}
	if (zlen < len) {
		flags |= BAL_CHUNK_F_ZSTD;
		payload = zbuf;
		pay_len = zlen;
	} else {
		payload = plain;
		pay_len = len;
	}
	if (k->sealed)
		flags |= BAL_CHUNK_F_SEALED;
	put_header(o, flags, len);
	total = BAL_CHUNK_HDR_LEN + pay_len + extra;
	if (k->sealed) {
		memcpy(aad, o, BAL_CHUNK_HDR_LEN);
		memcpy(aad + BAL_CHUNK_HDR_LEN, name, BAL_CHUNK_NAME_LEN);
		ret = bal_gcm_seal(seal_key(k), aad, sizeof(aad), payload, pay_len,
				   o + BAL_CHUNK_HDR_LEN);
		if (ret < 0)
			goto err_free_zbuf;
		bal_wipe(zbuf, zlen);
		free(zbuf);
	} else {
		if (!(flags & BAL_CHUNK_F_ZSTD))
			memcpy(o + BAL_CHUNK_HDR_LEN, plain, len);
		ret = check_tag(k, o, name, o + BAL_CHUNK_HDR_LEN, pay_len,
				o + BAL_CHUNK_HDR_LEN + pay_len);
		if (ret < 0)
			goto err_free_obj;
	}
	/* Objects may wait in an upload queue: give back the unused bound. */
	*obj = realloc(o, total) ?: o;
	*obj_len = total;
	return 0;

err_free_zbuf:
	if (k->sealed) {
		bal_wipe(zbuf, bound);
		free(zbuf);
	}
err_free_obj:
	if (k->sealed)
		bal_wipe(o, BAL_CHUNK_HDR_LEN + bound + BAL_GCM_OVERHEAD);
	free(o);
	return ret;
}

/* Decompress exactly one zstd frame of exactly @plain_len bytes, nothing after it. */
static int unzstd(const void *src, size_t src_len, void *plain, size_t plain_len)
{
	ZSTD_DCtx *dctx;
	size_t n;

	if (ZSTD_findFrameCompressedSize(src, src_len) != src_len ||
	    ZSTD_getFrameContentSize(src, src_len) != plain_len)
		return -EBADMSG;
	dctx = ZSTD_createDCtx();
	if (!dctx)
		return -ENOMEM;
	n = ZSTD_decompressDCtx(dctx, plain, plain_len, src, src_len);
	ZSTD_freeDCtx(dctx);
	if (ZSTD_isError(n) || n != plain_len)
		return -EBADMSG;
	return 0;
}

/* Check the header against what the caller expects: 0 and the flags, or -EBADMSG. */
static int check_header(const struct bal_chunk_keys *k, const uint8_t *hdr, size_t plain_len,
			uint8_t *flags)
{
	if (memcmp(hdr, chunk_magic, sizeof(chunk_magic)) != 0 || hdr[4] != CHUNK_VERSION ||
	    (hdr[5] & ~(BAL_CHUNK_F_ZSTD | BAL_CHUNK_F_SEALED)) || bal_get_be16(hdr + 6) != 0 ||
	    bal_get_be32(hdr + 8) != plain_len)
		return -EBADMSG;
	/* Sealed keys never accept an unsealed object, nor public keys a sealed one. */
	if (!!(hdr[5] & BAL_CHUNK_F_SEALED) != k->sealed)
		return -EBADMSG;
	*flags = hdr[5];
	return 0;
}

/*
 * The inner payload (zstd frame or raw bytes) of a sealed object, opened
 * into @plain directly when raw, else into *tmp (malloc'ed, the caller
 * wipes and frees it).  Sizes were checked by the caller.
 */
static int open_sealed(const struct bal_chunk_keys *k, const char *name, const uint8_t *o,
		       size_t inner_len, bool zstd, void *plain, uint8_t **tmp)
{
	uint8_t aad[AAD_LEN], *dst = plain;

	if (zstd) {
		*tmp = malloc(inner_len);
		if (!*tmp)
			return -ENOMEM;
		dst = *tmp;
	}
	memcpy(aad, o, BAL_CHUNK_HDR_LEN);
	memcpy(aad + BAL_CHUNK_HDR_LEN, name, BAL_CHUNK_NAME_LEN);
	return bal_gcm_open(seal_key(k), aad, sizeof(aad), o + BAL_CHUNK_HDR_LEN,
			    inner_len + BAL_GCM_OVERHEAD, dst);
}

int bal_chunk_decode(const struct bal_chunk_keys *k, const char *name, const void *obj,
		     size_t obj_len, void *plain, size_t plain_len)
{
	char got[BAL_CHUNK_NAME_LEN + 1];
	const uint8_t *o = obj, *inner;
	size_t inner_len;
	uint8_t tag[BAL_CHUNK_CHECK_LEN], *tmp = NULL, flags = 0;
	bool zstd;
	int ret;

	if (!plain)
		return -EINVAL;
	if (!k || plain_len == 0 || plain_len > BAL_CHUNK_SIZE || !bal_chunk_name_is_valid(name) || (!obj && obj_len)) {
		ret = -EINVAL;
		goto err_wipe;
	}
	ret = -EBADMSG;
	if (obj_len < BAL_CHUNK_HDR_LEN || check_header(k, o, plain_len, &flags) < 0)
		goto err_wipe;
	zstd = flags & BAL_CHUNK_F_ZSTD;
	inner_len = obj_len - BAL_CHUNK_HDR_LEN;
	if (inner_len < (k->sealed ? BAL_GCM_OVERHEAD : BAL_CHUNK_CHECK_LEN))
		goto err_wipe;
	inner_len -= k->sealed ? BAL_GCM_OVERHEAD : BAL_CHUNK_CHECK_LEN;
	/* A frame is stored only when it is shorter; raw bytes are exact. */
	if (zstd ? (inner_len == 0 || inner_len >= plain_len) : inner_len != plain_len)
		goto err_wipe;
	if (k->sealed) {
		ret = open_sealed(k, name, o, inner_len, zstd, plain, &tmp);
		if (ret < 0)
			goto err_free_tmp;
		inner = zstd ? tmp : plain;
	} else {
		inner = o + BAL_CHUNK_HDR_LEN;
		ret = check_tag(k, o, name, inner, inner_len, tag);
		if (ret < 0)
			goto err_wipe;
		if (!bal_mac_equal(tag, inner + inner_len, sizeof(tag))) {
			ret = -EBADMSG;
			goto err_wipe;
		}
		if (!zstd)
			memcpy(plain, inner, plain_len);
	}
	if (zstd) {
		ret = unzstd(inner, inner_len, plain, plain_len);
		if (ret < 0)
			goto err_free_tmp;
	}
	ret = bal_chunk_name(k, plain, plain_len, got);
	if (ret < 0)
		goto err_free_tmp;
	if (!bal_mac_equal(got, name, BAL_CHUNK_NAME_LEN)) {
		ret = -EBADMSG;
		goto err_free_tmp;
	}
	if (tmp) {
		bal_wipe(tmp, inner_len);
		free(tmp);
	}
	return 0;

err_free_tmp:
	if (tmp) {
		bal_wipe(tmp, inner_len);
		free(tmp);
	}
err_wipe:
	bal_wipe(plain, plain_len);
	return ret;
}

int bal_chunk_key(const char *name, char *buf, size_t len)
{
	if (!bal_chunk_name_is_valid(name) || !buf)
		return -EINVAL;
	if (len < BAL_CHUNK_KEY_LEN + 1)
		return -ENAMETOOLONG;
	memcpy(buf, "chunks/", 7);
	memcpy(buf + 7, name, 2);
	buf[9] = '/';
	memcpy(buf + 10, name, BAL_CHUNK_NAME_LEN + 1);
	return 0;
}

bool bal_chunk_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t head = len < 16 ? len : 16;

	/* The head is zero and every byte equals the one 16 before it. */
	for (size_t i = 0; i < head; i++)
		if (p[i])
			return false;
	return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

int bal_chunk_mac(const struct bal_chunk_keys *k, const void *data, size_t len,
		  uint8_t out[32])
{
	if (!k || (!data && len) || !out)
		return -EINVAL;
	return bal_hmac_sha256(mac_key(k), KEY_LEN, data, len, out);
}
