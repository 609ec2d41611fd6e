/* SPDX-License-Identifier: MIT */
/*
 * Volume data keys: the volume side of encryption at rest.
 *
 * Records (RocksDB, see volume_internal.h):
 *   'K' id(8) -> 1 || wrapped key (BAL_KW_BLOB_LEN)      service key
 *             -> 2 || salt(32) || check(32) || origin(8)  customer key
 *   'k'       -> KCV of the master key (BAL_MK_KCV_LEN)
 * A service volume's random XTS key is stored only wrapped under the
 * master key with the volume id (decimal) as associated data; a customer
 * volume stores only its customer-key record, never a key.  A volume's
 * key record is written in the same synced batch as its catalog record and
 * deleted with it.  The KCV is written with every service key and at
 * rotation.
 *
 * Snapshots use their volume's key.  A clone gets the same key as its
 * origin under its own record: a service key wrapped again under the
 * clone's id; for a customer key, a copy of the origin's record (origin is
 * the volume that enrolled the customer key), so the clone is unlocked and
 * locked on its own, with the same customer key.  Flatten keeps the key:
 * ciphertext is copied unchanged, the tweak is the logical block number.
 *
 * At open: service keys are unwrapped into memory (secure memory of the
 * crypto module) if the master key matches the stored KCV; otherwise those
 * volumes stay locked with a reason and the store serves the others.
 * Customer volumes start locked.  In-memory keys go with their volume
 * record (close, delete).  Key material is never logged.
 *
 * Control-plane thread (ctl_lock), except bal_vol_xts_key (any thread).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "volume/keys_internal.h"
#include "volume/volume_internal.h"

#define REC_SERVICE 1
#define REC_CUSTOMER 2
#define REC_SERVICE_LEN (1 + BAL_KW_BLOB_LEN)
#define REC_CUSTOMER_LEN (1 + BAL_CK_SALT_LEN + BAL_CK_CHECK_LEN + 8)

static const char reason_no_master[] = "no master key given";
static const char reason_wrong_master[] = "wrong master key";
static const char reason_unwrap[] = "key unwrap failed";
static const char reason_customer[] = "locked: unlock with its customer key";

struct bal_vkey {
	enum bal_enc enc;		/* SERVICE or CUSTOMER */
	struct bal_xts_key *xts;	/* NULL: locked */
	const char *reason;		/* why locked (static text) */
	struct bal_ck_record ck;	/* CUSTOMER */
	uint64_t origin;		/* CUSTOMER: volume that enrolled the key */
};

static uint8_t test_raw[BAL_XTS_KEY_LEN];
static bool test_raw_set;

void bal_vkey_test_next_raw(const uint8_t *raw)
{
	test_raw_set = raw != NULL;
	if (raw)
		memcpy(test_raw, raw, sizeof(test_raw));
	else
		explicit_bzero(test_raw, sizeof(test_raw));
}

/* The associated data of a wrapped key: the volume id in decimal. */
static void id_str(uint64_t id, char buf[24])
{
	snprintf(buf, 24, "%" PRIu64, id);
}

static void vkey_key(uint8_t k[BAL_VOL_KEY_LEN], uint64_t id)
{
	k[0] = BAL_KEY_VKEY;
	bal_put_be64(k + 1, id);
}

static struct bal_vkey *vkey_alloc(enum bal_enc enc)
{
	struct bal_vkey *vk = calloc(1, sizeof(*vk));

	if (vk)
		vk->enc = enc;
	return vk;
}

void bal_vkey_destroy(struct bal_vkey *vk)
{
	if (!vk)
		return;
	bal_xts_key_destroy(vk->xts);
	free(vk);
}

enum bal_enc bal_vkey_resolve(const struct bal_vstore *st, enum bal_enc enc)
{
	if (enc == BAL_ENC_DEFAULT)
		return st->encrypt_by_default ? BAL_ENC_SERVICE : BAL_ENC_NONE;
	return enc;
}

int bal_vkey_check_size(const struct bal_vrec *rec, uint64_t size)
{
	return rec && rec->key && size % BAL_ENC_ALIGN ? -EINVAL : 0;
}

/* Add @id's service record (@xts wrapped under the master key) to @b. */
static int put_service(struct bal_kv_batch *b, uint64_t id, const struct bal_xts_key *xts,
		       const struct bal_mk *mk)
{
	uint8_t k[BAL_VOL_KEY_LEN], v[REC_SERVICE_LEN];
	char ids[24];
	int ret;

	id_str(id, ids);
	v[0] = REC_SERVICE;
	ret = bal_kw_wrap(mk, ids, xts, v + 1);
	if (ret)
		return ret;
	vkey_key(k, id);
	bal_kv_batch_put(b, k, sizeof(k), v, sizeof(v));
	return 0;
}

static void put_customer(struct bal_kv_batch *b, uint64_t id, const struct bal_vkey *vk)
{
	uint8_t k[BAL_VOL_KEY_LEN], v[REC_CUSTOMER_LEN];

	v[0] = REC_CUSTOMER;
	memcpy(v + 1, vk->ck.salt, BAL_CK_SALT_LEN);
	memcpy(v + 1 + BAL_CK_SALT_LEN, vk->ck.check, BAL_CK_CHECK_LEN);
	bal_put_be64(v + 1 + BAL_CK_SALT_LEN + BAL_CK_CHECK_LEN, vk->origin);
	vkey_key(k, id);
	bal_kv_batch_put(b, k, sizeof(k), v, sizeof(v));
}

static int put_kcv(const struct bal_mk *mk, struct bal_kv_batch *b)
{
	const uint8_t k = BAL_KEY_KCV;
	uint8_t kcv[BAL_MK_KCV_LEN];
	int ret;

	ret = bal_mk_kcv(mk, kcv);
	if (ret)
		return ret;
	bal_kv_batch_put(b, &k, 1, kcv, sizeof(kcv));
	return 0;
}

static bool master_usable(const struct bal_vstore *st)
{
	return st->master && st->master_ok;
}

static int new_service_key(struct bal_xts_key **out)
{
	int ret;

	if (!test_raw_set)
		return bal_xts_key_generate(out);
	ret = bal_xts_key_create(test_raw, out);
	bal_vkey_test_next_raw(NULL);
	return ret;
}

/* Copy @key for volume @id: wrapped under its id, then unwrapped. */
static int copy_key(struct bal_vstore *st, uint64_t id, const struct bal_xts_key *key,
		    struct bal_xts_key **out)
{
	uint8_t blob[BAL_KW_BLOB_LEN];
	char ids[24];
	int ret;

	id_str(id, ids);
	ret = bal_kw_wrap(st->master, ids, key, blob);
	if (!ret)
		ret = bal_kw_unwrap(st->master, ids, blob, sizeof(blob), out);
	return ret;
}

int bal_vkey_create(struct bal_vstore *st, struct bal_vrec *rec, enum bal_enc enc,
		    const struct bal_ck *ck, const struct bal_xts_key *import,
		    struct bal_kv_batch *b)
{
	struct bal_vkey *vk;
	int ret;

	if (enc == BAL_ENC_NONE)
		return 0;
	if (enc != BAL_ENC_SERVICE && enc != BAL_ENC_CUSTOMER)
		return -EINVAL;
	if (enc == BAL_ENC_CUSTOMER && !ck)
		return -EINVAL;
	if (enc == BAL_ENC_SERVICE && !master_usable(st))
		return -ENOKEY;
	vk = vkey_alloc(enc);
	if (!vk)
		return -ENOMEM;
	if (enc == BAL_ENC_SERVICE) {
		ret = import ? copy_key(st, rec->id, import, &vk->xts) : new_service_key(&vk->xts);
		if (!ret)
			ret = put_service(b, rec->id, vk->xts, st->master);
		if (!ret)
			ret = put_kcv(st->master, b);
	} else {
		vk->origin = rec->id;
		ret = bal_ck_enroll(ck, &vk->ck);
		if (!ret)
			ret = bal_ck_unlock(ck, &vk->ck, rec->name, &vk->xts);
		if (!ret)
			put_customer(b, rec->id, vk);
	}
	if (ret) {
		bal_err("volume %s: cannot set up its encryption key: %s", rec->name,
			strerror(-ret));
		bal_vkey_destroy(vk);
		return ret;
	}
	rec->key = vk;
	return 0;
}

int bal_vkey_clone(struct bal_vstore *st, const struct bal_vrec *origin, struct bal_vrec *nrec,
		   struct bal_kv_batch *b)
{
	const struct bal_vkey *ok = origin->key;
	struct bal_vkey *vk;
	int ret;

	if (!ok)
		return 0;
	if (ok->enc == BAL_ENC_SERVICE && (!ok->xts || !master_usable(st)))
		return -ENOKEY;
	vk = vkey_alloc(ok->enc);
	if (!vk)
		return -ENOMEM;
	if (ok->enc == BAL_ENC_CUSTOMER) {
		/* Same salt and check: the same customer key derives the same key. */
		vk->ck = ok->ck;
		vk->origin = ok->origin;
		vk->reason = reason_customer;
		put_customer(b, nrec->id, vk);
		nrec->key = vk;
		return 0;
	}
	/* Wrapped again under the clone's id, then unwrapped: its own copy. */
	ret = copy_key(st, nrec->id, ok->xts, &vk->xts);
	if (!ret)
		ret = put_service(b, nrec->id, vk->xts, st->master);
	if (ret) {
		bal_err("volume %s: cannot give the clone its origin's key: %s", nrec->name,
			strerror(-ret));
		bal_vkey_destroy(vk);
		return ret;
	}
	nrec->key = vk;
	return 0;
}

int bal_vkey_open_check(const struct bal_vrec *rec)
{
	return rec->key && !rec->key->xts ? -ENOKEY : 0;
}

void bal_vkey_info(const struct bal_vrec *rec, struct bal_vol_info *out)
{
	const struct bal_vkey *vk = rec->key;

	out->enc = vk ? vk->enc : BAL_ENC_NONE;
	out->locked = vk && !vk->xts;
	if (out->locked)
		snprintf(out->lock_reason, sizeof(out->lock_reason), "%s",
			 vk->reason ? vk->reason : "locked");
	else
		out->lock_reason[0] = '\0';
}

const struct bal_xts_key *bal_vol_xts_key(const struct bal_volume *vol)
{
	const struct bal_vkey *vk = vol->rec->key;

	return vk ? vk->xts : NULL;
}

/* Read the stored KCV into @kcv: 1 if present, 0 if absent, or -errno. */
static int load_kcv(struct bal_vstore *st, uint8_t kcv[BAL_MK_KCV_LEN])
{
	const uint8_t k = BAL_KEY_KCV;
	size_t vlen;
	void *v;
	int ret;

	ret = bal_kv_get(st->kv, &k, 1, &v, &vlen);
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return ret;
	if (vlen != BAL_MK_KCV_LEN) {
		free(v);
		bal_err("store %s: malformed master key check value", st->dir);
		return -EUCLEAN;
	}
	memcpy(kcv, v, BAL_MK_KCV_LEN);
	free(v);
	return 1;
}

/* 0 if @mk matches @kcv (constant time), 1 if not, or -errno. */
static int kcv_differs(const struct bal_mk *mk, const uint8_t kcv[BAL_MK_KCV_LEN])
{
	uint8_t mine[BAL_MK_KCV_LEN], diff = 0;
	int ret;

	ret = bal_mk_kcv(mk, mine);
	if (ret)
		return ret;
	for (size_t i = 0; i < BAL_MK_KCV_LEN; i++)
		diff |= mine[i] ^ kcv[i];
	return diff != 0;
}

/* Decode one key record for @rec; a service key is unwrapped unless @locked_reason. */
static int load_one(struct bal_vstore *st, struct bal_vrec *rec, const uint8_t *v, size_t vl,
		    const char *locked_reason)
{
	struct bal_vkey *vk;
	char ids[24];

	if (vl == REC_SERVICE_LEN && v[0] == REC_SERVICE) {
		vk = vkey_alloc(BAL_ENC_SERVICE);
		if (!vk)
			return -ENOMEM;
		id_str(rec->id, ids);
		if (locked_reason)
			vk->reason = locked_reason;
		else if (bal_kw_unwrap(st->master, ids, v + 1, vl - 1, &vk->xts))
			vk->reason = reason_unwrap;
	} else if (vl == REC_CUSTOMER_LEN && v[0] == REC_CUSTOMER) {
		vk = vkey_alloc(BAL_ENC_CUSTOMER);
		if (!vk)
			return -ENOMEM;
		memcpy(vk->ck.salt, v + 1, BAL_CK_SALT_LEN);
		memcpy(vk->ck.check, v + 1 + BAL_CK_SALT_LEN, BAL_CK_CHECK_LEN);
		vk->origin = bal_get_be64(v + 1 + BAL_CK_SALT_LEN + BAL_CK_CHECK_LEN);
		vk->reason = reason_customer;
	} else {
		bal_err("store %s: volume %s: malformed key record", st->dir, rec->name);
		return -EUCLEAN;
	}
	if (vk->reason == reason_unwrap)
		bal_err("store %s: volume %s: its key does not unwrap; it stays locked", st->dir,
			rec->name);
	rec->key = vk;
	return 0;
}

struct key_scan {
	struct bal_vstore *st;
	const char *reason;	/* why service keys cannot be unwrapped, or NULL */
	size_t nservice, nlocked;
};

static int load_key(void *arg, const void *key, size_t kl, const void *v, size_t vl)
{
	struct key_scan *ks = arg;
	const uint8_t *k = key;
	struct bal_vrec *rec;
	int ret;

	rec = kl == BAL_VOL_KEY_LEN ? bal_vstore_find_id(ks->st, bal_get_be64(k + 1)) : NULL;
	if (!rec || rec->key) {
		bal_warn("store %s: ignoring a key record without its volume", ks->st->dir);
		return 0;
	}
	ret = load_one(ks->st, rec, v, vl, ks->reason);
	if (ret)
		return ret;
	if (rec->key->enc == BAL_ENC_SERVICE) {
		ks->nservice++;
		ks->nlocked += !rec->key->xts;
	}
	return 0;
}

int bal_vstore_load_keys(struct bal_vstore *st)
{
	const uint8_t lo = BAL_KEY_VKEY, hi = BAL_KEY_VKEY + 1;
	uint8_t kcv[BAL_MK_KCV_LEN];
	const char *reason = NULL;
	struct key_scan ks = { .st = st };
	bool have_kcv;
	int ret;

	ret = load_kcv(st, kcv);
	if (ret < 0)
		return ret;
	have_kcv = ret == 1;
	if (!st->master) {
		reason = reason_no_master;
	} else if (have_kcv) {
		ret = kcv_differs(st->master, kcv);
		if (ret < 0)
			return ret;
		if (ret)
			reason = reason_wrong_master;
	}
	ks.reason = reason;
	ret = bal_kv_scan(st->kv, &lo, 1, &hi, 1, load_key, &ks);
	if (ret)
		return ret;
	st->master_ok = st->master && (!reason || !ks.nservice);
	if (reason == reason_wrong_master && ks.nservice)
		bal_err("store %s: the master key does not match the key check value in the database (wrong key file or key provider?): %zu encrypted volumes stay locked",
			st->dir, ks.nservice);
	else if (reason == reason_wrong_master)
		bal_warn("store %s: the master key differs from the one last used; no volume uses that one, so the new key will be used",
			 st->dir);
	else if (reason == reason_no_master && ks.nservice)
		bal_warn("store %s: no master key given: %zu encrypted volumes stay locked",
			 st->dir, ks.nservice);
	else if (ks.nservice)
		bal_info("store %s: %zu volume keys unwrapped, %zu failed", st->dir,
			 ks.nservice - ks.nlocked, ks.nlocked);
	return 0;
}

/* ctl_lock held: the live volume @name under the catalog lock (taken), or NULL. */
static struct bal_vrec *find_locked_cat(struct bal_vstore *st, const char *name)
{
	pthread_mutex_lock(&st->cat_lock);
	return name && bal_name_is_valid(name) ? bal_vstore_find_locked(st, name) : NULL;
}

int bal_vstore_unlock(struct bal_vstore *st, const char *name, const struct bal_ck *ck)
{
	struct bal_xts_key *xts = NULL;
	struct bal_vrec *rec;
	int ret;

	if (!ck)
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	rec = find_locked_cat(st, name);
	ret = -ENOENT;
	if (!rec)
		goto out;
	ret = -EINVAL;
	if (!rec->key || rec->key->enc != BAL_ENC_CUSTOMER)
		goto out;
	/* Checked even when unlocked: a wrong key is always refused. */
	ret = bal_ck_unlock(ck, &rec->key->ck, rec->name, &xts);
	if (ret)
		goto out;
	if (rec->key->xts) {
		bal_xts_key_destroy(xts);
	} else {
		rec->key->xts = xts;
		bal_info("volume %s: unlocked", rec->name);
	}
out:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

int bal_vstore_lock(struct bal_vstore *st, const char *name)
{
	struct bal_vrec *rec;
	unsigned open;
	int ret;

	pthread_mutex_lock(&st->ctl_lock);
	rec = find_locked_cat(st, name);
	ret = -ENOENT;
	if (!rec)
		goto out;
	ret = -EINVAL;
	if (!rec->key || rec->key->enc != BAL_ENC_CUSTOMER)
		goto out;
	pthread_mutex_lock(&rec->lock);
	open = rec->connections;
	for (size_t i = 0; i < rec->nsnaps; i++)
		open += rec->snaps[i]->connections;
	pthread_mutex_unlock(&rec->lock);
	ret = -EBUSY;
	if (open)
		goto out;
	ret = 0;
	if (rec->key->xts) {
		bal_xts_key_destroy(rec->key->xts);
		rec->key->xts = NULL;
		rec->key->reason = reason_customer;
		bal_info("volume %s: locked", rec->name);
	}
out:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

int bal_vstore_rotate_master(struct bal_vstore *st, const struct bal_mk *new_mk)
{
	struct bal_kv_batch *b;
	size_t n = 0, locked = 0;
	int ret = 0;

	if (!new_mk)
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	pthread_mutex_lock(&st->cat_lock);
	/* Every service key must be in memory to be wrapped again. */
	for (size_t i = 0; i < st->nvols; i++) {
		const struct bal_vkey *vk = st->vols[i]->key;

		if (vk && vk->enc == BAL_ENC_SERVICE && !vk->xts &&
		    !atomic_load(&st->vols[i]->deleted))
			locked++;
	}
	if (locked || (st->master && !st->master_ok)) {
		bal_err("store %s: cannot rotate the master key: %zu encrypted volumes are locked (master key missing or wrong, or a key that does not unwrap)",
			st->dir, locked);
		ret = -ENOKEY;
		goto out;
	}
	b = bal_kv_batch_create();
	if (!b) {
		ret = -ENOMEM;
		goto out;
	}
	/* Every blob and the new KCV in one synced batch: all old or all new. */
	for (size_t i = 0; !ret && i < st->nvols; i++) {
		const struct bal_vrec *rec = st->vols[i];

		if (!rec->key || rec->key->enc != BAL_ENC_SERVICE || atomic_load(&rec->deleted))
			continue;
		ret = put_service(b, rec->id, rec->key->xts, new_mk);
		n++;
	}
	if (!ret)
		ret = put_kcv(new_mk, b);
	if (!ret)
		ret = bal_vstore_write_synced(st, b);
	bal_kv_batch_destroy(b);
	if (ret) {
		bal_err("store %s: master key rotation failed, the old key stays: %s", st->dir,
			strerror(-ret));
		goto out;
	}
	st->master = new_mk;
	st->master_ok = true;
	bal_info("store %s: master key rotated, %zu volume keys wrapped again", st->dir, n);
out:
	pthread_mutex_unlock(&st->cat_lock);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

int bal_vstore_wrap_key(struct bal_vstore *st, const char *aad, const struct bal_xts_key *key,
			uint8_t *blob, size_t len)
{
	int ret = -ENOKEY;

	if (!aad || !aad[0] || !key || len < BAL_KW_BLOB_LEN)
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	if (master_usable(st))
		ret = bal_kw_wrap(st->master, aad, key, blob);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}

int bal_vstore_unwrap_key(struct bal_vstore *st, const char *aad, const uint8_t *blob,
			  size_t len, struct bal_xts_key **out)
{
	int ret = -ENOKEY;

	if (!aad || !aad[0] || !blob)
		return -EINVAL;
	pthread_mutex_lock(&st->ctl_lock);
	if (master_usable(st))
		ret = bal_kw_unwrap(st->master, aad, blob, len, out);
	pthread_mutex_unlock(&st->ctl_lock);
	return ret;
}
