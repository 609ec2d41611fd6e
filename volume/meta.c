/* SPDX-License-Identifier: MIT */
/*
 * Named records for the modules above the volume store (the object tier's
 * restore records, the store's identity): 'X' name -> bytes, each write
 * synced on its own.  Cheap control-plane calls; never on the data path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "volume/volume_internal.h"

#define META_NAME_MAX 200

static int meta_key(const char *name, uint8_t *k, size_t *klen)
{
	size_t n = name ? strlen(name) : 0;

	if (!n || n > META_NAME_MAX)
		return -EINVAL;
	k[0] = BAL_KEY_META;
	memcpy(k + 1, name, n);
	*klen = n + 1;
	return 0;
}

int bal_vstore_meta_put(struct bal_vstore *st, const char *name, const void *val, size_t len)
{
	uint8_t k[META_NAME_MAX + 1];
	struct bal_kv_batch *b;
	size_t kl;
	int ret;

	ret = meta_key(name, k, &kl);
	if (ret)
		return ret;
	b = bal_kv_batch_create();
	if (!b)
		return -ENOMEM;
	if (val)
		bal_kv_batch_put(b, k, kl, val, len);
	else
		bal_kv_batch_delete(b, k, kl);
	ret = bal_kv_write(st->kv, b, true);
	bal_kv_batch_destroy(b);
	return ret;
}

int bal_vstore_meta_get(struct bal_vstore *st, const char *name, void **val, size_t *len)
{
	uint8_t k[META_NAME_MAX + 1];
	size_t kl;
	int ret;

	ret = meta_key(name, k, &kl);
	if (ret)
		return ret;
	return bal_kv_get(st->kv, k, kl, val, len);
}

struct list_ctx {
	int (*cb)(void *arg, const char *name, const void *val, size_t len);
	void *arg;
};

static int list_one(void *arg, const void *key, size_t kl, const void *v, size_t vl)
{
	struct list_ctx *l = arg;
	char name[META_NAME_MAX + 1];

	if (kl < 2 || kl > META_NAME_MAX + 1)
		return 0;
	memcpy(name, (const uint8_t *)key + 1, kl - 1);
	name[kl - 1] = '\0';
	return l->cb(l->arg, name, v, vl);
}

int bal_vstore_meta_list(struct bal_vstore *st, const char *prefix,
			 int (*cb)(void *arg, const char *name, const void *val, size_t len),
			 void *arg)
{
	uint8_t lo[META_NAME_MAX + 2], hi[META_NAME_MAX + 2];
	struct list_ctx l = { .cb = cb, .arg = arg };
	size_t pl = prefix ? strlen(prefix) : 0;

	if (pl > META_NAME_MAX)
		return -EINVAL;
	lo[0] = hi[0] = BAL_KEY_META;
	memcpy(lo + 1, prefix, pl);
	memcpy(hi + 1, prefix, pl);
	/* Every name that starts with @prefix sorts below prefix + 0xff. */
	hi[pl + 1] = 0xff;
	return bal_kv_scan(st->kv, lo, pl + 1, hi, pl + 2, list_one, &l);
}
