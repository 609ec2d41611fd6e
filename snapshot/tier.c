/* SPDX-License-Identifier: MIT */
/*
 * The object tier's common part: the tier handle, store access, snapshot
 * references ("URL#ID"), loading a manifest with its keys, and the
 * listing and deletion of exported snapshots.  Export (export.c), restore
 * and hydration (restore.c) and verification (verify.c) build on it.
 *
 * A manifest is found from its id alone: the id starts with its UTC
 * creation time, which gives the YYYY/MM/DD part of its key, and the
 * volume part is found by listing manifests/ one level deep.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "snapshot/chunk.h"
#include "snapshot/manifest.h"
#include "snapshot/objstore.h"
#include "snapshot/tier_internal.h"
#include "volume/volume.h"

#define MANIFEST_MAX (64u << 20)

void tier_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int load_uuid(struct bal_tier *t)
{
	uint8_t raw[16];
	size_t len = 0;
	void *v = NULL;
	int ret;

	ret = bal_vstore_meta_get(t->st, "tier/store-id", &v, &len);
	if (ret == 0 && len == sizeof(t->store_uuid) - 1) {
		memcpy(t->store_uuid, v, len);
		t->store_uuid[len] = '\0';
		free(v);
		return 0;
	}
	free(v);
	if (ret && ret != -ENOENT)
		return ret;
	ret = bal_crypto_random(raw, sizeof(raw));
	if (ret)
		return ret;
	bal_hex_encode(raw, sizeof(raw), t->store_uuid);
	return bal_vstore_meta_put(t->st, "tier/store-id", t->store_uuid,
				   sizeof(t->store_uuid) - 1);
}

int bal_tier_create(const struct bal_tier_opts *o, struct bal_tier **out)
{
	struct bal_tier *t;
	int ret;

	if (!o || o->opts_size < sizeof(*o) || !o->store || !o->default_url)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->st = o->store;
	t->parallel = o->parallel ? o->parallel : 8;
	pthread_rwlock_init(&t->chunks_lock, NULL);
	t->default_url = strdup(o->default_url);
	ret = t->default_url ? load_uuid(t) : -ENOMEM;
	if (!ret)
		ret = hydr_create(t, &t->hydr);
	if (ret) {
		free(t->default_url);
		free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void bal_tier_destroy(struct bal_tier *t)
{
	if (!t)
		return;
	hydr_destroy(t->hydr);
	pthread_rwlock_destroy(&t->chunks_lock);
	free(t->default_url);
	free(t);
}

void tier_wait_tick(pthread_cond_t *cond, pthread_mutex_t *lock)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 200 * 1000 * 1000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cond, lock, &ts);
}

const char *bal_tier_default_url(const struct bal_tier *t)
{
	return t->default_url;
}

int tier_store_open(struct bal_tier *t, const char *url, const struct bal_tier_creds *creds,
		    struct bal_objstore **out, char *err, size_t errlen)
{
	struct bal_objstore_opts o = { .opts_size = sizeof(o) };
	int ret;

	o.url = url && url[0] ? url : t->default_url;
	o.max_conns = t->parallel;
	if (creds) {
		o.access_key = creds->access_key;
		o.secret_key = creds->secret_key;
		o.session_token = creds->session_token;
		o.region = creds->region;
		o.endpoint = creds->endpoint;
	}
	ret = bal_objstore_open(&o, out);
	if (ret)
		tier_err(err, errlen, "%s", bal_objstore_strerror());
	return ret;
}

int tier_parse_ref(const char *ref, char *url, size_t ulen, char *id, size_t idlen, char *err,
		   size_t errlen)
{
	const char *hash = ref ? strrchr(ref, '#') : NULL;

	if (!hash || hash == ref || (size_t)(hash - ref) >= ulen || strlen(hash + 1) >= idlen ||
	    !bal_manifest_id_is_valid(hash + 1)) {
		tier_err(err, errlen, "'%s' is not a snapshot reference (URL#ID)", ref ? ref : "");
		return -EINVAL;
	}
	memcpy(url, ref, (size_t)(hash - ref));
	url[hash - ref] = '\0';
	snprintf(id, idlen, "%s", hash + 1);
	return 0;
}

struct find_ctx {
	struct bal_objstore *os;
	const char *id;
	char *key;
	size_t len;
};

static int find_one(void *arg, const char *key, uint64_t size, bool is_prefix)
{
	struct find_ctx *f = arg;
	uint64_t sz;

	(void)size;
	if (!is_prefix)
		return 0;
	/* ID = YYYYMMDDTHHMMSSZ-...: the date directories come from it. */
	snprintf(f->key, f->len, "%s%.4s/%.2s/%.2s/%s.json", key, f->id, f->id + 4, f->id + 6,
		 f->id);
	return bal_objstore_head(f->os, f->key, &sz) == 0 ? 1 : 0;
}

/* Without a delimiter: every manifest key, matched by its file name. */
static int find_flat(void *arg, const char *key, uint64_t size, bool is_prefix)
{
	struct find_ctx *f = arg;
	size_t kl = strlen(key), il = strlen(f->id);

	(void)size;
	if (is_prefix || kl < il + 6 || key[kl - il - 6] != '/' ||
	    strncmp(key + kl - il - 5, f->id, il) || strcmp(key + kl - 5, ".json"))
		return 0;
	snprintf(f->key, f->len, "%s", key);
	return 1;
}

int tier_find_key(struct bal_objstore *os, const char *id, char *key, size_t len)
{
	struct find_ctx f = { .os = os, .id = id, .key = key, .len = len };
	int ret;

	if (!bal_manifest_id_is_valid(id))
		return -EINVAL;
	/* One HEAD per volume prefix; stores that list no common prefixes fall back. */
	ret = bal_objstore_list(os, "manifests/", "/", find_one, &f);
	if (ret == 0)
		ret = bal_objstore_list(os, "manifests/", NULL, find_flat, &f);
	if (ret == 1)
		return 0;
	return ret < 0 ? ret : -ENOENT;
}

void tier_snap_fini(struct tier_snap *s)
{
	bal_manifest_destroy(s->m);
	bal_chunk_keys_destroy(s->keys);
	bal_xts_key_destroy(s->xts);
	memset(s, 0, sizeof(*s));
}

int tier_load(struct bal_tier *t, struct bal_objstore *os, const char *id, bool need_mac,
	      const struct bal_xts_key *key, struct tier_snap *out, char *err, size_t errlen)
{
	const char *url = bal_objstore_url(os);
	char why[128] = "", aad[sizeof(TIER_WRAP_AAD) + BAL_TIER_ID_MAX];
	void *json = NULL;
	size_t len = 0;
	int ret, mac;

	memset(out, 0, sizeof(*out));
	ret = tier_find_key(os, id, out->key, sizeof(out->key));
	if (ret) {
		tier_err(err, errlen, ret == -ENOENT ? "%s#%s: no such snapshot in the store"
						     : "%s#%s: %s", url, id,
			 ret == -ENOENT ? "" : bal_objstore_strerror());
		return ret;
	}
	ret = bal_objstore_get(os, out->key, MANIFEST_MAX, &json, &len);
	if (ret) {
		tier_err(err, errlen, "%s", bal_objstore_strerror());
		return ret;
	}
	ret = bal_manifest_decode(json, len, &out->m, why, sizeof(why));
	if (!ret && strcmp(out->m->id, id)) {
		ret = -EBADMSG;
		snprintf(why, sizeof(why), "its id is %s", out->m->id);
	}
	if (ret) {
		tier_err(err, errlen, "manifest %s is malformed: %s", out->key, why);
		goto err;
	}
	if (key && !out->m->encrypted) {
		tier_err(err, errlen, "manifest %s: not the encryption of this volume", out->key);
		ret = -EKEYREJECTED;
		goto err;
	}
	if (out->m->encrypted && !key) {
		snprintf(aad, sizeof(aad), "%s%s", TIER_WRAP_AAD, id);
		ret = bal_vstore_unwrap_key(t->st, aad, out->m->wrapped_key,
					    sizeof(out->m->wrapped_key), &out->xts);
		if (ret) {
			tier_err(err, errlen, ret == -ENOKEY ?
				 "manifest %s: the snapshot is encrypted and this daemon has no master key" :
				 "manifest %s: its volume key does not unwrap (another master key, or the manifest was altered)",
				 out->key);
			if (ret != -ENOKEY)
				ret = -EKEYREJECTED;
			goto err;
		}
	}
	ret = bal_chunk_keys_create(key ? key : out->xts, &out->keys);
	if (ret) {
		tier_err(err, errlen, "manifest %s: %s", out->key, strerror(-ret));
		goto err;
	}
	mac = bal_manifest_verify(json, len, out->keys);
	free(json);
	if (mac) {
		tier_err(err, errlen, "manifest %s fails its integrity check (MAC mismatch)",
			 out->key);
		bal_warn("object tier: manifest %s fails its integrity check", out->key);
		if (need_mac)
			tier_snap_fini(out);
		return -EBADMSG;
	}
	return 0;
err:
	free(json);
	tier_snap_fini(out);
	return ret;
}

/* Read and parse manifest @key without keys (deletion needs no MAC). */
static int read_manifest(struct bal_objstore *os, const char *key, struct bal_manifest **out)
{
	char why[128];
	void *json = NULL;
	size_t len = 0;
	int ret;

	ret = bal_objstore_get(os, key, MANIFEST_MAX, &json, &len);
	if (!ret)
		ret = bal_manifest_decode(json, len, out, why, sizeof(why));
	free(json);
	return ret;
}

/* ---- list ---- */

struct list_ctx {
	struct bal_objstore *os;
	const char *volume;
	int64_t since;
	struct bal_tier_entry *v;
	size_t n, cap;
	int err;
};

static void fill_entry(struct bal_tier_entry *e, const struct bal_manifest *m, const char *key)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", m->id);
	snprintf(e->volume, sizeof(e->volume), "%s", m->volume);
	snprintf(e->snapshot, sizeof(e->snapshot), "%s", m->snapshot);
	snprintf(e->parent, sizeof(e->parent), "%s", m->parent);
	snprintf(e->key, sizeof(e->key), "%s", key);
	snprintf(e->storage_class, sizeof(e->storage_class), "%s", m->storage_class);
	e->created = m->created;
	e->size = m->size;
	e->encrypted = m->encrypted;
	for (uint64_t i = 0; i < m->nchunks; i++)
		e->chunks += m->chunks[i][0] != '\0';
}

/*
 * The YYYY/MM/DD of manifest @key is not before the day of @since (the
 * listing skips older days without reading them).  Unparsable: true.
 */
static bool key_after(const char *key, int64_t since)
{
	const char *p = strrchr(key, '/');
	unsigned y, mo, d;
	struct tm tm;
	time_t t = (time_t)since;

	if (!since || !p || p - key < 11 || sscanf(p - 10, "%4u/%2u/%2u/", &y, &mo, &d) != 3 ||
	    !gmtime_r(&t, &tm))
		return true;
	return y * 10000 + mo * 100 + d >=
	       (unsigned)(tm.tm_year + 1900) * 10000 + (unsigned)(tm.tm_mon + 1) * 100 +
		       (unsigned)tm.tm_mday;
}

static int list_one(void *arg, const char *key, uint64_t size, bool is_prefix)
{
	struct list_ctx *l = arg;
	struct bal_manifest *m = NULL;
	int ret;

	(void)size;
	if (is_prefix || strlen(key) < 5 || strcmp(key + strlen(key) - 5, ".json") ||
	    !key_after(key, l->since))
		return 0;
	ret = read_manifest(l->os, key, &m);
	if (ret == -ENOENT)
		return 0;	/* deleted meanwhile */
	if (ret == -EBADMSG) {
		bal_warn("object tier: %s is not a valid manifest; not listed", key);
		return 0;
	}
	if (ret) {
		l->err = ret;
		return 1;
	}
	if (m->created >= l->since) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 16;
			struct bal_tier_entry *nv = realloc(l->v, cap * sizeof(*nv));

			if (!nv) {
				bal_manifest_destroy(m);
				l->err = -ENOMEM;
				return 1;
			}
			l->v = nv;
			l->cap = cap;
		}
		fill_entry(&l->v[l->n++], m, key);
	}
	bal_manifest_destroy(m);
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct bal_tier_entry *x = a, *y = b;

	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

int bal_tier_list(struct bal_tier *t, const char *url, const char *volume, int64_t since,
		  const struct bal_tier_creds *creds, struct bal_tier_entry **out, size_t *n,
		  char *err, size_t errlen)
{
	struct list_ctx l = { .volume = volume, .since = since };
	char prefix[128];
	int ret;

	if (volume && !bal_name_is_valid(volume)) {
		tier_err(err, errlen, "'%s' is not a volume name", volume);
		return -EINVAL;
	}
	ret = tier_store_open(t, url, creds, &l.os, err, errlen);
	if (ret)
		return ret;
	snprintf(prefix, sizeof(prefix), "manifests/%s%s", volume ? volume : "", volume ? "/" : "");
	ret = bal_objstore_list(l.os, prefix, NULL, list_one, &l);
	if (ret == 1 || l.err)
		ret = l.err ? l.err : -EIO;
	if (ret < 0) {
		tier_err(err, errlen, "%s", bal_objstore_strerror());
		free(l.v);
	} else {
		if (l.n > 1)
			qsort(l.v, l.n, sizeof(*l.v), cmp_entry);
		*out = l.v;
		*n = l.n;
		ret = 0;
	}
	bal_objstore_close(l.os);
	return ret;
}

/* ---- delete ---- */

struct names {
	char (*v)[BAL_CHUNK_NAME_LEN + 1];
	size_t n, cap;
};

static int names_add(struct names *s, const char *name)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		char (*nv)[BAL_CHUNK_NAME_LEN + 1] = realloc(s->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = cap;
	}
	memcpy(s->v[s->n++], name, BAL_CHUNK_NAME_LEN + 1);
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool names_has(const struct names *s, const char *name)
{
	return s->n && bsearch(name, s->v, s->n, sizeof(*s->v), cmp_name) != NULL;
}

struct refs_ctx {
	struct bal_objstore *os;
	const char *skip;		/* the manifest being deleted */
	struct names *used;
	int err;
};

static int refs_one(void *arg, const char *key, uint64_t size, bool is_prefix)
{
	struct refs_ctx *r = arg;
	struct bal_manifest *m = NULL;
	int ret;

	(void)size;
	if (is_prefix || !strcmp(key, r->skip) || strlen(key) < 5 ||
	    strcmp(key + strlen(key) - 5, ".json"))
		return 0;
	ret = read_manifest(r->os, key, &m);
	if (ret == -ENOENT)
		return 0;
	if (ret) {
		/* Unknown references: keep every chunk rather than lose one. */
		bal_warn("object tier: cannot read manifest %s; deleting no chunk", key);
		r->err = ret == -EBADMSG ? -EUCLEAN : ret;
		return 1;
	}
	for (uint64_t i = 0; i < m->nchunks && !ret; i++)
		if (m->chunks[i][0])
			ret = names_add(r->used, m->chunks[i]);
	bal_manifest_destroy(m);
	if (ret) {
		r->err = ret;
		return 1;
	}
	return 0;
}

int bal_tier_delete(struct bal_tier *t, const char *ref, const struct bal_tier_creds *creds,
		    struct bal_tier_delete_result *out, char *err, size_t errlen)
{
	char url[BAL_TIER_URL_MAX], id[BAL_TIER_ID_MAX + 1], ckey[BAL_CHUNK_KEY_LEN + 1];
	char key[256], ref_n[BAL_TIER_URL_MAX + BAL_TIER_ID_MAX + 2];
	bool locked = false;
	struct names used = { 0 }, mine = { 0 };
	struct bal_objstore *os = NULL;
	struct bal_manifest *m = NULL;
	struct refs_ctx r;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = tier_parse_ref(ref, url, sizeof(url), id, sizeof(id), err, errlen);
	if (!ret)
		ret = tier_store_open(t, url, creds, &os, err, errlen);
	if (ret)
		return ret;
	snprintf(ref_n, sizeof(ref_n), "%s#%s", bal_objstore_url(os), id);
	if (hydr_uses(t->hydr, ref_n)) {
		tier_err(err, errlen, "%s: a volume is still being restored from it (see `ballast volume wait`)",
			 ref_n);
		ret = -EBUSY;
		goto out;
	}
	pthread_rwlock_wrlock(&t->chunks_lock);
	locked = true;
	ret = tier_find_key(os, id, key, sizeof(key));
	if (ret) {
		tier_err(err, errlen, ret == -ENOENT ? "%s#%s: no such snapshot in the store" : "%s%s",
			 ret == -ENOENT ? bal_objstore_url(os) : bal_objstore_strerror(),
			 ret == -ENOENT ? id : "");
		goto out;
	}
	ret = read_manifest(os, key, &m);
	if (ret == -EBADMSG) {
		/* Not a manifest any more: its chunks cannot be known; drop it alone. */
		bal_warn("object tier: %s is malformed; deleting it, its chunks stay", key);
		ret = bal_objstore_delete(os, key);
		goto out;
	}
	for (uint64_t i = 0; !ret && i < m->nchunks; i++)
		if (m->chunks[i][0])
			ret = names_add(&mine, m->chunks[i]);
	r = (struct refs_ctx){ .os = os, .skip = key, .used = &used };
	if (!ret) {
		ret = bal_objstore_list(os, "manifests/", NULL, refs_one, &r);
		if (ret == 1)
			ret = r.err;
	}
	if (ret) {
		tier_err(err, errlen, ret == -EUCLEAN ?
			 "another manifest in the store cannot be read: nothing deleted" : "%s",
			 bal_objstore_strerror());
		goto out;
	}
	/* The manifest goes first: a crash then leaves only unreferenced chunks. */
	ret = bal_objstore_delete(os, key);
	if (ret) {
		tier_err(err, errlen, "%s", bal_objstore_strerror());
		goto out;
	}
	if (used.n)
		qsort(used.v, used.n, sizeof(*used.v), cmp_name);
	if (mine.n)
		qsort(mine.v, mine.n, sizeof(*mine.v), cmp_name);
	for (size_t i = 0; i < mine.n; i++) {
		if (i && !strcmp(mine.v[i], mine.v[i - 1]))
			continue;
		if (names_has(&used, mine.v[i])) {
			out->chunks_kept++;
			continue;
		}
		bal_chunk_key(mine.v[i], ckey, sizeof(ckey));
		ret = bal_objstore_delete(os, ckey);
		if (ret) {
			tier_err(err, errlen, "%s", bal_objstore_strerror());
			break;
		}
		out->chunks_deleted++;
	}
	if (!ret)
		bal_info("object tier: deleted %s#%s (%" PRIu64 " chunks deleted, %" PRIu64 " kept)",
			 bal_objstore_url(os), id, out->chunks_deleted, out->chunks_kept);
out:
	if (locked)
		pthread_rwlock_unlock(&t->chunks_lock);
	bal_manifest_destroy(m);
	free(used.v);
	free(mine.v);
	bal_objstore_close(os);
	return ret;
}
