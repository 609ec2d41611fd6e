/* SPDX-License-Identifier: MIT */
/*
 * Shared by the files of the object tier (tier.c, export.c, restore.c,
 * verify.c): the tier's state, store access, references and manifests.
 */
#ifndef BAL_TIER_INTERNAL_H
#define BAL_TIER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/tier.h"

struct bal_objstore;
struct bal_manifest;
struct bal_chunk_keys;
struct bal_xts_key;
struct hydr;

/* Associated data of a manifest's wrapped volume key: the prefix, then the id. */
#define TIER_WRAP_AAD "ballast-manifest:"
/* Manifests examined when looking for an export's parent. */
#define TIER_PARENT_SCAN 64

struct bal_tier {
	struct bal_vstore *st;
	char *default_url;
	unsigned parallel;
	char store_uuid[33];		/* this data directory's identity in manifests */
	struct hydr *hydr;		/* restores (restore.c) */
	/*
	 * Exports hold it shared from choosing their parent until their
	 * manifest is written (they rely on chunks they did not upload);
	 * deletes hold it exclusive, so they never take those chunks away.
	 */
	pthread_rwlock_t chunks_lock;
};

/* A loaded manifest with the keys of its chunks. */
struct tier_snap {
	struct bal_manifest *m;
	struct bal_chunk_keys *keys;
	struct bal_xts_key *xts;	/* NULL for an unencrypted volume */
	char key[256];			/* its object key */
};

void tier_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Wait on @cond (with @lock held) for at most a progress tick (200 ms). */
void tier_wait_tick(pthread_cond_t *cond, pthread_mutex_t *lock);

/* Open the store at @url (NULL: the default) with @creds. */
int tier_store_open(struct bal_tier *t, const char *url, const struct bal_tier_creds *creds,
		    struct bal_objstore **out, char *err, size_t errlen);

/* Split "URL#ID".  -EINVAL (message in @err). */
int tier_parse_ref(const char *ref, char *url, size_t ulen, char *id, size_t idlen, char *err,
		   size_t errlen);

/*
 * Find manifest @id in @os and load it: parse, unwrap the volume key
 * (encrypted; with @key, a restored volume's own copy of it, that one is
 * used instead) and check the MAC.  With @trust_mac false a manifest whose
 * MAC fails still loads (-EBADMSG is returned with *out filled, for
 * deletion); otherwise the failure is final.  -ENOENT, -EBADMSG, -ENOKEY.
 */
int tier_load(struct bal_tier *t, struct bal_objstore *os, const char *id, bool need_mac,
	      const struct bal_xts_key *key, struct tier_snap *out, char *err, size_t errlen);
void tier_snap_fini(struct tier_snap *s);

/* The key of manifest @id in @os (searched by volume prefix).  -ENOENT. */
int tier_find_key(struct bal_objstore *os, const char *id, char *key, size_t len);

/* restore.c */
int hydr_create(struct bal_tier *t, struct hydr **out);
void hydr_destroy(struct hydr *h);
/* A volume here is still being restored from @ref ("URL#ID"). */
bool hydr_uses(struct hydr *h, const char *ref);

/* "URL#ID" of the snapshot @volume_id was restored from: 0, -ENOENT. */
int tier_origin(struct bal_tier *t, uint64_t volume_id, char *url, size_t ulen, char *id,
		size_t idlen);

#endif
