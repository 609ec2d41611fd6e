/* SPDX-License-Identifier: MIT */
/*
 * Encryption at rest: the one public header of crypto/, the only module that
 * calls OpenSSL.
 *
 * Key hierarchy (docs/security.md):
 *   master key (32 bytes, from a key file or a key-provider command, never
 *   stored by Ballast)
 *     -> wraps each volume's 64-byte AES-256-XTS data key (AES-256-GCM with
 *        the volume id as associated data); only the wrapped blob is stored.
 *   customer key (supplied at unlock time, never stored)
 *     -> derives the volume's XTS key with HKDF-SHA256 and a per-volume salt;
 *        only the salt and a check value are stored.
 *
 * Data path: AES-256-XTS (IEEE P1619), data unit 4096 bytes, tweak = logical
 * 4 KiB block number as a little-endian 128-bit integer (dm-crypt "plain64"),
 * so ciphertext depends only on (key, logical block, plaintext) and snapshots
 * and clones share ciphertext unchanged.
 *
 * Threads: a struct bal_xts_key is immutable once created and may be shared
 * by every thread.  A struct bal_xts_ctx (one per worker thread and volume)
 * holds that thread's OpenSSL cipher contexts with the key schedule set up
 * once; it must never be used by two threads at the same time.  Everything
 * else is safe from any thread; the key-provider and key-file loaders block
 * (start-up or a background worker only).
 *
 * Key material lives in bal_secmem buffers (mlock'ed, excluded from core
 * dumps, wiped on free).  No function logs key bytes or puts them in a
 * message.  Errors are -errno; -EKEYREJECTED always means "wrong key or
 * tampered data".
 */
#ifndef BAL_CRYPTO_H
#define BAL_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- secure memory and randomness -------------------------------------- */

/*
 * Allocate @len bytes (> 0) of zeroed memory for key material: its own
 * pages, mlock'ed (a failure to lock is logged once as a warning, not an
 * error), marked MADV_DONTDUMP and MADV_WIPEONFORK.  Returns NULL on
 * ENOMEM.  The caller owns it and frees it with bal_secmem_free.
 */
void *bal_secmem_alloc(size_t len);

/* Wipe (OPENSSL_cleanse), unlock and unmap.  NULL is a no-op. */
void bal_secmem_free(void *p);

/* Fill @buf from the OS CSPRNG (OpenSSL's private DRBG).  0 or -EIO. */
int bal_crypto_random(void *buf, size_t len);

/* ---- AES-256-XTS data path --------------------------------------------- */

#define BAL_XTS_KEY_LEN 64	/* two AES-256 keys: data key || tweak key */
#define BAL_XTS_UNIT 4096u	/* data unit of the data path */
#define BAL_XTS_UNIT_MAX (1u << 24)

struct bal_xts_key;
struct bal_xts_ctx;

/*
 * Make a volume key from @raw (BAL_XTS_KEY_LEN bytes, copied into secure
 * memory; the caller wipes its own copy).  -EINVAL if the two halves are
 * equal (IEEE P1619 requires distinct keys; OpenSSL 3.0 would not check),
 * -ENOMEM.  On success *out is owned by the caller (bal_xts_key_destroy).
 */
int bal_xts_key_create(const uint8_t raw[BAL_XTS_KEY_LEN], struct bal_xts_key **out);

/* A new random volume key from the OS CSPRNG (halves checked).  -EIO, -ENOMEM. */
int bal_xts_key_generate(struct bal_xts_key **out);

/* Wipe and free.  NULL is a no-op.  No bal_xts_ctx made from it may remain. */
void bal_xts_key_destroy(struct bal_xts_key *key);

/*
 * A cipher context for one thread and one volume: two EVP contexts
 * (encrypt, decrypt) keyed once here, so a request only sets the tweak.
 * Safe to call from any thread on a shared @key.  *out is owned by the
 * caller (bal_xts_ctx_destroy) and used by one thread at a time.
 * -ENOMEM, -EIO (OpenSSL failure).
 */
int bal_xts_ctx_create(const struct bal_xts_key *key, struct bal_xts_ctx **out);

/* Free the contexts (OpenSSL wipes the key schedules).  NULL is a no-op. */
void bal_xts_ctx_destroy(struct bal_xts_ctx *ctx);

/*
 * Encrypt (or decrypt) @len bytes of the data path: @len is a multiple of
 * BAL_XTS_UNIT, data unit i (0-based) uses tweak first_block + i.  @in may
 * equal @out (in place); otherwise they must not overlap.  One OpenSSL call
 * per 4 KiB unit, no allocation, no lock.  -EINVAL on a bad length or a
 * block number that would wrap past 2^64 - 1, -EIO on an OpenSSL failure.
 */
int bal_xts_encrypt(struct bal_xts_ctx *ctx, uint64_t first_block, const void *in, void *out,
		    size_t len);
int bal_xts_decrypt(struct bal_xts_ctx *ctx, uint64_t first_block, const void *in, void *out,
		    size_t len);

/*
 * The same with any data unit size (a multiple of 16 bytes, at most
 * BAL_XTS_UNIT_MAX); @len is a multiple of @unit.  The data path uses
 * BAL_XTS_UNIT; other sizes exist for the IEEE P1619 test vectors (512).
 */
int bal_xts_crypt(struct bal_xts_ctx *ctx, bool encrypt, size_t unit, uint64_t first_unit,
		  const void *in, void *out, size_t len);

/* ---- master key -------------------------------------------------------- */

#define BAL_MK_LEN 32
#define BAL_MK_KCV_LEN 16
#define BAL_MK_PROVIDER_TIMEOUT_MS 10000u
#define BAL_MK_PROVIDER_OUTPUT_MAX 4096u

struct bal_mk;

/* A master key from @raw (BAL_MK_LEN bytes, copied).  -ENOMEM. */
int bal_mk_create(const uint8_t raw[BAL_MK_LEN], struct bal_mk **out);

/*
 * Load the master key from @path (--master-key-file): a regular file with
 * no group or other permission bits (mode & 077 == 0), holding either
 * exactly 32 raw bytes or exactly 64 hex digits with an optional trailing
 * newline.  -EACCES (permissions, with a chmod hint), -EINVAL (not a
 * regular file, wrong length or syntax), -errno from open/read.  Each error
 * is logged with the path, never with the contents.  Blocking.
 */
int bal_mk_load_file(const char *path, struct bal_mk **out);

/*
 * Run @cmd (--key-provider) as `/bin/sh -c CMD` in its own process group,
 * stdin from /dev/null, stderr inherited, and read its stdout: 64 hex
 * digits and an optional newline.  After @timeout_ms (0: the default
 * BAL_MK_PROVIDER_TIMEOUT_MS) the whole process group is killed.
 * Errors (logged, never with the output): -ETIMEDOUT (hang), -EIO
 * (non-zero exit or killed by a signal), -E2BIG (more than
 * BAL_MK_PROVIDER_OUTPUT_MAX bytes), -EINVAL (not 64 hex digits), -errno
 * from pipe/posix_spawn.  Blocking; safe in a threaded process.
 */
int bal_mk_run_provider(const char *cmd, unsigned timeout_ms, struct bal_mk **out);

/* Wipe and free.  NULL is a no-op. */
void bal_mk_destroy(struct bal_mk *mk);

/*
 * Key check value: HMAC-SHA256(master, "ballast-kcv-v1") truncated to
 * BAL_MK_KCV_LEN bytes.  Stored in the database so a wrong master key is
 * recognised at start-up; it reveals nothing usable about the key.  0, -EIO.
 */
int bal_mk_kcv(const struct bal_mk *mk, uint8_t kcv[BAL_MK_KCV_LEN]);

/* 0 if @kcv matches @mk (constant-time compare), else -EKEYREJECTED (logged). */
int bal_mk_verify_kcv(const struct bal_mk *mk, const uint8_t kcv[BAL_MK_KCV_LEN]);

/* ---- wrapped volume keys ----------------------------------------------- */

/* version (1) || nonce (12) || encrypted key (64) || GCM tag (16) */
#define BAL_KW_BLOB_LEN 93

/*
 * Wrap @key under @mk for the volume @volume_id (its immutable id, bound as
 * associated data, so a blob only unwraps for that id).  A fresh random
 * nonce each time.  Writes BAL_KW_BLOB_LEN bytes to @blob.  -EINVAL (empty
 * id), -EIO.  Safe from any thread.
 */
int bal_kw_wrap(const struct bal_mk *mk, const char *volume_id, const struct bal_xts_key *key,
		uint8_t blob[BAL_KW_BLOB_LEN]);

/*
 * Unwrap @blob (@len bytes) for @volume_id.  -EKEYREJECTED (logged) on a
 * wrong master key, a different volume id, a tampered or truncated blob, or
 * an unwrapped key with equal halves; -ENOMEM, -EIO.  On success *out is
 * owned by the caller (bal_xts_key_destroy).
 */
int bal_kw_unwrap(const struct bal_mk *mk, const char *volume_id, const uint8_t *blob,
		  size_t len, struct bal_xts_key **out);

/* ---- customer keys (supplied at unlock time, never stored) ------------- */

#define BAL_CK_SALT_LEN 32
#define BAL_CK_CHECK_LEN 32

/* What the database stores for a customer-key volume.  Not secret. */
struct bal_ck_record {
	uint8_t salt[BAL_CK_SALT_LEN];	 /* random, chosen at enrolment */
	uint8_t check[BAL_CK_CHECK_LEN]; /* HKDF(ck, salt, "ballast-ck-check-v1") */
};

struct bal_ck;

/* A customer key from @len (32 or 64) raw bytes, copied.  -EINVAL, -ENOMEM. */
int bal_ck_create(const void *raw, size_t len, struct bal_ck **out);

/*
 * Load a customer key file: a regular file with mode & 077 == 0 (as for
 * bal_mk_load_file) of exactly 32 or 64 bytes, used as they are (no hex
 * form: a 64-byte file could be either).  -EACCES, -EINVAL, -errno.
 */
int bal_ck_load_file(const char *path, struct bal_ck **out);

/* Wipe and free.  NULL is a no-op. */
void bal_ck_destroy(struct bal_ck *ck);

/* First use of a customer key: a new random salt and its check value. */
int bal_ck_enroll(const struct bal_ck *ck, struct bal_ck_record *rec);

/*
 * Check @ck against @rec (constant time) and derive the volume's XTS key
 * (HKDF-SHA256(ck, salt, "ballast-ck-xts-v1"), 64 bytes).  A wrong key is
 * refused with -EKEYREJECTED, logged with @volume (a name for the message
 * only), and never used.  *out is owned by the caller.
 */
int bal_ck_unlock(const struct bal_ck *ck, const struct bal_ck_record *rec, const char *volume,
		  struct bal_xts_key **out);

/* ---- HKDF and AES-256-GCM sealing (object tier) ------------------------ */

#define BAL_HKDF_OUT_MAX (255u * 32u)

/*
 * HKDF-SHA256 (RFC 5869) extract-and-expand: @out_len (1..BAL_HKDF_OUT_MAX)
 * bytes into @out.  @salt may be NULL with @salt_len 0 (a zero salt).
 * -EINVAL, -EIO.
 */
int bal_hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
		    const void *info, size_t info_len, void *out, size_t out_len);

#define BAL_GCM_KEY_LEN 32
#define BAL_GCM_NONCE_LEN 12
#define BAL_GCM_TAG_LEN 16
#define BAL_GCM_OVERHEAD (BAL_GCM_NONCE_LEN + BAL_GCM_TAG_LEN)

/*
 * Derive the 32-byte object-sealing key of a volume from its XTS key:
 * HKDF-SHA256(volume key, no salt, "ballast-seal-v1").  @out should be
 * bal_secmem memory of the caller's.  0, -EIO.
 */
int bal_xts_key_derive_seal(const struct bal_xts_key *key, uint8_t out[BAL_GCM_KEY_LEN]);

/*
 * Derive @out_len (1..BAL_HKDF_OUT_MAX) bytes of key material for another
 * purpose from a volume key: HKDF-SHA256(volume key, no salt, @info), @info
 * a non-empty string naming the purpose ("ballast-chunk-name-v1", ...).
 * @out should be bal_secmem memory of the caller's.  0, -EINVAL, -EIO.
 * Any thread.
 */
int bal_xts_key_derive(const struct bal_xts_key *key, const char *info, void *out,
		       size_t out_len);

/*
 * Seal @in (@in_len bytes) with AES-256-GCM under @key and a fresh random
 * nonce, authenticating @aad too: writes nonce || ciphertext || tag,
 * @in_len + BAL_GCM_OVERHEAD bytes, to @out (must not overlap @in).
 * Allocates an OpenSSL context per call: meant for the object tier, not the
 * block data path.  -EINVAL (sizes), -ENOMEM, -EIO.
 */
int bal_gcm_seal(const uint8_t key[BAL_GCM_KEY_LEN], const void *aad, size_t aad_len,
		 const void *in, size_t in_len, void *out);

/*
 * Open what bal_gcm_seal wrote (@in_len >= BAL_GCM_OVERHEAD bytes) into
 * @out (@in_len - BAL_GCM_OVERHEAD bytes, must not overlap @in).  -EBADMSG
 * if the tag does not verify (wrong key, wrong @aad, tampered or truncated
 * data): @out is then wiped, never handed out, and nothing is logged (the
 * caller names the object in its message).  -EINVAL, -ENOMEM, -EIO.
 */
int bal_gcm_open(const uint8_t key[BAL_GCM_KEY_LEN], const void *aad, size_t aad_len,
		 const void *in, size_t in_len, void *out);

/* ---- hashing (object tier) -------------------------------------------- */

#define BAL_SHA256_LEN 32

/* SHA-256 of @data.  0, -EINVAL, -EIO.  Any thread. */
int bal_sha256(const void *data, size_t len, uint8_t out[BAL_SHA256_LEN]);

/* HMAC-SHA256 of @data under @key.  0, -EINVAL, -EIO.  Any thread. */
int bal_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		    uint8_t out[BAL_SHA256_LEN]);

/* Constant-time comparison of two MACs or check values. */
bool bal_mac_equal(const void *a, const void *b, size_t len);

/* Wipe @len bytes at @p (OPENSSL_cleanse: not optimised away).  NULL is a no-op. */
void bal_wipe(void *p, size_t len);

#endif
