/* SPDX-License-Identifier: MIT */
/*
 * Chunk objects of the object tier: a snapshot is exported as fixed
 * logical chunks of BAL_CHUNK_SIZE bytes (the last one may be shorter),
 * each compressed with zstd and, for an encrypted volume, sealed with
 * AES-256-GCM, and named by a keyed content hash, so identical chunks of
 * one key lineage are stored once and chunks of volumes with different keys
 * never share an object.
 *
 * Keys (struct bal_chunk_keys), all derived from the volume's XTS key with
 * bal_xts_key_derive and kept in bal_secmem memory:
 *   name  "ballast-chunk-name-v1"    HMAC key of chunk names
 *   seal  "ballast-chunk-seal-v1"    AES-256-GCM key of chunk objects
 *   mac   "ballast-manifest-mac-v1"  HMAC key of manifests
 * An unencrypted volume uses fixed public keys instead (HKDF of a constant):
 * its objects are not sealed and are protected against corruption only,
 * never against a deliberate forgery.
 *
 * Object layout (all integers big-endian):
 *   magic "BALC" (4) | version 1 (1) | flags (1) | reserved 0 (2) |
 *   plain length (4) | payload
 * flags: BAL_CHUNK_F_ZSTD (the inner payload is one zstd frame, else the
 * raw bytes), BAL_CHUNK_F_SEALED (payload is bal_gcm_seal's nonce ||
 * ciphertext || tag of the inner payload, with the 12-byte header and the
 * chunk name as associated data).  Without BAL_CHUNK_F_SEALED the payload
 * is the inner payload followed by a BAL_CHUNK_CHECK_LEN check tag,
 * HMAC-SHA256(public seal key, header || name || SHA-256(inner payload)):
 * zstd ignores some bits of a frame, and a flipped bit must never pass.
 *
 * Pure functions: no I/O, no threads, no global state.  A struct
 * bal_chunk_keys is immutable once created and may be shared by every
 * thread; everything here is safe from any thread.
 */
#ifndef BAL_SNAPSHOT_CHUNK_H
#define BAL_SNAPSHOT_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bal_xts_key;

#define BAL_CHUNK_SIZE (4u << 20)
#define BAL_CHUNK_NAME_LEN 64		 /* lowercase hex of 32 bytes */
#define BAL_CHUNK_KEY_LEN (7 + 2 + 1 + BAL_CHUNK_NAME_LEN) /* "chunks/PP/NAME" */
#define BAL_CHUNK_HDR_LEN 12
#define BAL_CHUNK_CHECK_LEN 32
#define BAL_CHUNK_F_ZSTD 0x01
#define BAL_CHUNK_F_SEALED 0x02
#define BAL_CHUNK_ZSTD_LEVEL 3

/* Opaque; key material in bal_secmem memory. */
struct bal_chunk_keys;

/*
 * Derive the chunk keys of a volume.  @key NULL: an unencrypted volume
 * (fixed public keys, objects not sealed).  Else the three keys above are
 * derived from @key, which the caller keeps owning.  *out is owned by the
 * caller (bal_chunk_keys_destroy).  -ENOMEM, -EIO.
 */
int bal_chunk_keys_create(const struct bal_xts_key *key, struct bal_chunk_keys **out);

/* Wipe and free.  NULL is a no-op. */
void bal_chunk_keys_destroy(struct bal_chunk_keys *k);

/* true if objects made with @k are sealed (the volume is encrypted). */
bool bal_chunk_keys_sealed(const struct bal_chunk_keys *k);

/* true if @name is exactly BAL_CHUNK_NAME_LEN lowercase hex digits. */
bool bal_chunk_name_is_valid(const char *name);

/*
 * The name of a chunk: hex(HMAC-SHA256(name key, @plain)), NUL-terminated.
 * @len 1..BAL_CHUNK_SIZE.  0, -EINVAL, -EIO.
 */
int bal_chunk_name(const struct bal_chunk_keys *k, const void *plain, size_t len,
		   char name[BAL_CHUNK_NAME_LEN + 1]);

/*
 * The object bytes of a chunk (@len 1..BAL_CHUNK_SIZE bytes at @plain,
 * @name its bal_chunk_name under @k): the header, then the zstd frame at
 * level BAL_CHUNK_ZSTD_LEVEL, or the raw bytes when compression does not
 * shrink them, sealed when bal_chunk_keys_sealed(@k).  On success *obj
 * (*obj_len bytes) is malloc'ed and owned by the caller (free).  Working
 * copies of the plaintext are wiped.  -EINVAL, -ENOMEM, -EIO.
 */
int bal_chunk_encode(const struct bal_chunk_keys *k, const char *name, const void *plain,
		     size_t len, void **obj, size_t *obj_len);

/*
 * Check and open an object read from the store into @plain (@plain_len
 * bytes, 1..BAL_CHUNK_SIZE, the length the manifest expects): header,
 * GCM tag (sealed keys), the single zstd frame, exact length, and that
 * the HMAC name of the result equals @name (constant time).  Anything
 * wrong with the object -- truncated, tampered, trailing bytes, another
 * key, another name, another length, a sealed object under public keys or
 * the reverse -- is -EBADMSG.  -EINVAL for a malformed @name or length,
 * -ENOMEM, -EIO.  On any error @plain is wiped, never half-filled.
 * Allocates at most @plain_len bytes, whatever the object claims.
 */
int bal_chunk_decode(const struct bal_chunk_keys *k, const char *name, const void *obj,
		     size_t obj_len, void *plain, size_t plain_len);

/*
 * The object key of a chunk in the store: "chunks/PREFIX/NAME", PREFIX the
 * first two hex digits of @name.  @len >= BAL_CHUNK_KEY_LEN + 1.
 * 0, -EINVAL (malformed name), -ENAMETOOLONG (@buf too small).
 */
int bal_chunk_key(const char *name, char *buf, size_t len);

/* true if all @len bytes at @buf are zero (true for @len 0). */
bool bal_chunk_is_zero(const void *buf, size_t len);

/* HMAC-SHA256 of @data under the manifest MAC key of @k.  0, -EINVAL, -EIO. */
int bal_chunk_mac(const struct bal_chunk_keys *k, const void *data, size_t len,
		  uint8_t out[32]);

#endif
