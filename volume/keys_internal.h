/* SPDX-License-Identifier: MIT */
/*
 * Volume data keys (keys.c), shared with the other files of the volume
 * store and its unit tests only.  The record layouts are in keys.c.
 *
 * Locking: rec->key is set once (load or create, before the record is
 * visible) and freed with the record; its key object changes only in
 * unlock/lock, with ctl_lock and the catalog lock held and no handle open,
 * so an open handle reads it without a lock.
 */
#ifndef BAL_VOLUME_KEYS_INTERNAL_H
#define BAL_VOLUME_KEYS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "volume/kv.h"
#include "volume/volume.h"

struct bal_vrec;
struct bal_vkey;

/* Encrypted volumes are sized in multiples of the XTS data unit. */
#define BAL_ENC_ALIGN 4096u

/* @enc with BAL_ENC_DEFAULT replaced by the store's choice. */
enum bal_enc bal_vkey_resolve(const struct bal_vstore *st, enum bal_enc enc);

/* A size an encrypted volume (or @rec, NULL: plain) may have: 0 or -EINVAL. */
int bal_vkey_check_size(const struct bal_vrec *rec, uint64_t size);

/*
 * ctl_lock held: give new volume @rec (its id set) a key of type @enc
 * (NONE: nothing; SERVICE: a copy of @import if not NULL, else a new
 * random key) and add its records to @b.  -ENOKEY without a usable
 * master key (SERVICE), -EINVAL without @ck (CUSTOMER), -ENOMEM, -EIO.
 */
int bal_vkey_create(struct bal_vstore *st, struct bal_vrec *rec, enum bal_enc enc,
		    const struct bal_ck *ck, const struct bal_xts_key *import,
		    struct bal_kv_batch *b);

/*
 * ctl_lock and the catalog lock held: give clone @nrec the key of @origin
 * (a service key wrapped again under @nrec's id, a customer key's record
 * copied) and add its record to @b.  -ENOKEY if @origin's service key is
 * not available.
 */
int bal_vkey_clone(struct bal_vstore *st, const struct bal_vrec *origin, struct bal_vrec *nrec,
		   struct bal_kv_batch *b);

/* Catalog lock held: -ENOKEY if @rec is encrypted and locked, else 0. */
int bal_vkey_open_check(const struct bal_vrec *rec);

/* Catalog lock held: fill enc, locked and lock_reason of @out. */
void bal_vkey_info(const struct bal_vrec *rec, struct bal_vol_info *out);

/* Wipe and free.  NULL is a no-op. */
void bal_vkey_destroy(struct bal_vkey *vk);

/* Start-up, after the catalog: load the key records and unwrap the keys. */
int bal_vstore_load_keys(struct bal_vstore *st);

/*
 * Test hook: the next key made for a service volume is built from @raw
 * (BAL_XTS_KEY_LEN bytes, copied) instead of the CSPRNG, so a test knows
 * the bytes it must never find on disk.  NULL disarms.  Tests only.
 */
void bal_vkey_test_next_raw(const uint8_t *raw);

#endif
