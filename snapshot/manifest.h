/* SPDX-License-Identifier: MIT */
/*
 * Snapshot manifests of the object tier: one JSON document per exported
 * snapshot, stored at "manifests/VOLUME/YYYY/MM/DD/ID.json", listing the
 * chunk name of every BAL_CHUNK_SIZE-style logical chunk, the parent
 * export, the wrapped volume key and a MAC.
 *
 * The document is one JSON object: "format": 1, every field of struct
 * bal_manifest ("chunks" an array of [index, name, object size] for the
 * chunks with data only, indexes increasing, so the document grows with the
 * data and not with the provisioned size; "wrapped_key" lowercase hex, null
 * when not encrypted) and "mac", the
 * lowercase hex HMAC (bal_chunk_mac) of the canonical serialisation of
 * every other member (jansson JSON_COMPACT | JSON_SORT_KEYS).
 *
 * A manifest read from the store is untrusted: bal_manifest_decode checks
 * syntax, types and sizes before allocating anything from them, and
 * bal_manifest_verify checks the MAC once the keys are known (they come
 * from the wrapped key inside the document).
 *
 * Pure functions, no I/O; safe from any thread.
 */
#ifndef BAL_SNAPSHOT_MANIFEST_H
#define BAL_SNAPSHOT_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "snapshot/chunk.h"

#define BAL_SNAP_ID_MAX 48
#define BAL_MANIFEST_FORMAT 1
#define BAL_MANIFEST_CHUNK_MIN (64u << 10)
#define BAL_MANIFEST_CHUNK_MAX (64u << 20)
#define BAL_MANIFEST_WHY_LEN 128

struct bal_chunk_keys;

struct bal_manifest {
	char id[BAL_SNAP_ID_MAX + 1];	   /* "YYYYMMDDTHHMMSSZ-" + 16 hex, bal_manifest_new_id */
	char volume[BAL_NAME_MAX + 1];	   /* source volume name */
	char snapshot[BAL_NAME_MAX + 1];   /* source snapshot name */
	int64_t created;		   /* unix seconds UTC, year 1970..9999 */
	uint64_t size;			   /* volume bytes, 1..INT64_MAX */
	uint32_t chunk_size;		   /* power of two, 64 KiB..64 MiB */
	char parent[BAL_SNAP_ID_MAX + 1];  /* "" = full export */
	char source[128];		   /* opaque "STOREUUID/VOLID/SNAPID", printable ASCII */
	char storage_class[32];		   /* "" = default; [A-Za-z0-9_-] */
	bool encrypted;
	uint8_t wrapped_key[BAL_KW_BLOB_LEN]; /* valid when encrypted */
	uint64_t nchunks;		   /* ceil(size / chunk_size) */
	char (*chunks)[BAL_CHUNK_NAME_LEN + 1]; /* nchunks names, "" = unallocated (zeroes) */
	uint64_t *sizes;		   /* nchunks object sizes in bytes, 0 for "" */
	uint64_t stored_bytes;		   /* object bytes this export uploaded (informational) */
};

/*
 * A zeroed manifest for a volume of @size bytes cut into @chunk_size
 * chunks: size, chunk_size and nchunks set, every chunk name "".  -EINVAL
 * (sizes out of range), -ENOMEM.  *out is owned by the caller
 * (bal_manifest_destroy).
 */
int bal_manifest_create(uint64_t size, uint32_t chunk_size, struct bal_manifest **out);

/* Bytes of chunk @idx (< nchunks): chunk_size, or less for the last one. */
static inline uint64_t bal_manifest_chunk_len(const struct bal_manifest *m, uint64_t idx)
{
	uint64_t off = idx * m->chunk_size;

	return m->size - off < m->chunk_size ? m->size - off : m->chunk_size;
}

/* Free.  NULL is a no-op. */
void bal_manifest_destroy(struct bal_manifest *m);

/*
 * A new snapshot id for time @now_ms (unix milliseconds UTC):
 * "YYYYMMDDTHHMMSSZ-", the milliseconds as 4 hex digits and 6 random bytes
 * in lowercase hex, so ids sort in creation order to the millisecond.
 * 0, -EINVAL (@now_ms out of range), -EIO.
 */
int bal_manifest_new_id(int64_t now_ms, char id[BAL_SNAP_ID_MAX + 1]);

/* Strict syntax of an id (it becomes part of object keys), with a real date. */
bool bal_manifest_id_is_valid(const char *id);

/*
 * The object key of @m: "manifests/VOLUME/YYYY/MM/DD/ID.json", the date
 * from m->created (UTC).  0, -EINVAL (bad volume, id or time),
 * -ENAMETOOLONG (@buf of @len bytes too small).
 */
int bal_manifest_key(const struct bal_manifest *m, char *buf, size_t len);

/*
 * Serialise @m, MAC'ed with @k (whose sealing must match m->encrypted).
 * Refuses (-EINVAL, logged) a manifest that bal_manifest_decode would
 * reject.  On success *json (*len bytes plus a NUL) is malloc'ed and owned
 * by the caller (free).  -EINVAL, -ENOMEM, -EIO.
 */
int bal_manifest_encode(const struct bal_manifest *m, const struct bal_chunk_keys *k,
			char **json, size_t *len);

/*
 * Parse an untrusted document (@len bytes; no NUL needed): strict types,
 * no unknown or duplicate members, sizes consistent (nchunks ==
 * ceil(size / chunk_size) == number of names), names, ids and volume and
 * snapshot names syntactically valid.  Does NOT check the MAC
 * (bal_manifest_verify, once the keys are known).  -EBADMSG with a short
 * reason in @why (@why_len bytes, BAL_MANIFEST_WHY_LEN is enough; may be
 * NULL) on anything malformed, -ENOMEM.  *out is owned by the caller.
 */
int bal_manifest_decode(const char *json, size_t len, struct bal_manifest **out, char *why,
			size_t why_len);

/*
 * Check the MAC of the document @json (@len bytes, as read from the store)
 * under @k: 0, or -EBADMSG if it is not a JSON object, has no well-formed
 * "mac", its "encrypted" does not match the sealing of @k, or the MAC does
 * not match (an edited value, a removed or added member).  -ENOMEM, -EIO.
 */
int bal_manifest_verify(const char *json, size_t len, const struct bal_chunk_keys *k);

#endif
