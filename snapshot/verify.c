/* SPDX-License-Identifier: MIT */
/*
 * Verification of an exported snapshot: the manifest's MAC, then every
 * distinct object it names, fetched and opened exactly as a restore would
 * (bal_chunk_decode), by t->parallel threads.  Problems are collected, not
 * fatal: the caller gets the whole list.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "snapshot/chunk.h"
#include "snapshot/manifest.h"
#include "snapshot/objstore.h"
#include "snapshot/tier_internal.h"

#define OBJ_MAX (BAL_CHUNK_SIZE + (1u << 20))

struct ver {
	struct tier_snap *s;
	struct bal_objstore *os;
	uint64_t *idx;			/* first index of each distinct name */
	uint64_t n;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next, done_bytes, total_bytes;
	unsigned running;
	bool stop;
	struct bal_tier_verify_result *res;
	size_t cap;
	int err;
};

static int cmp_by_name(const void *a, const void *b, void *arg)
{
	const struct bal_manifest *m = arg;
	int c = strcmp(m->chunks[*(const uint64_t *)a], m->chunks[*(const uint64_t *)b]);

	if (c)
		return c;
	return *(const uint64_t *)a < *(const uint64_t *)b ? -1 : 1;
}

static void problem(struct ver *v, uint64_t idx, const char *key, const char *what)
{
	struct bal_tier_verify_result *r = v->res;

	pthread_mutex_lock(&v->lock);
	if (r->nproblems == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 16;
		struct bal_tier_problem *np = realloc(r->problems, cap * sizeof(*np));

		if (!np) {
			v->err = -ENOMEM;
			v->stop = true;
			pthread_mutex_unlock(&v->lock);
			return;
		}
		r->problems = np;
		v->cap = cap;
	}
	r->problems[r->nproblems].index = idx;
	snprintf(r->problems[r->nproblems].key, sizeof(r->problems[0].key), "%s", key);
	snprintf(r->problems[r->nproblems].what, sizeof(r->problems[0].what), "%s", what);
	r->nproblems++;
	pthread_mutex_unlock(&v->lock);
	bal_warn("object tier: verify %s: %s", key, what);
}

static void check_one(struct ver *v, uint64_t idx, uint8_t *plain)
{
	const struct bal_manifest *m = v->s->m;
	char key[BAL_CHUNK_KEY_LEN + 1], what[96];
	uint64_t len = bal_manifest_chunk_len(m, idx);
	void *obj = NULL;
	size_t olen = 0;
	int ret;

	bal_chunk_key(m->chunks[idx], key, sizeof(key));
	ret = bal_objstore_get(v->os, key, OBJ_MAX, &obj, &olen);
	if (ret == -ENOENT) {
		problem(v, idx, key, "missing");
	} else if (ret) {
		snprintf(what, sizeof(what), "cannot be read: %.70s", bal_objstore_strerror());
		problem(v, idx, key, what);
	} else if (olen < m->sizes[idx]) {
		snprintf(what, sizeof(what), "truncated (%zu of %" PRIu64 " bytes)", olen,
			 m->sizes[idx]);
		problem(v, idx, key, what);
	} else if (olen > m->sizes[idx]) {
		snprintf(what, sizeof(what), "wrong size (%zu bytes, %" PRIu64 " expected)", olen,
			 m->sizes[idx]);
		problem(v, idx, key, what);
	} else if (bal_chunk_decode(v->s->keys, m->chunks[idx], obj, olen, plain, len)) {
		snprintf(what, sizeof(what), "fails its integrity check (tampered)");
		problem(v, idx, key, what);
	}
	pthread_mutex_lock(&v->lock);
	v->res->chunks++;
	v->res->bytes += olen;
	v->done_bytes += len;
	pthread_mutex_unlock(&v->lock);
	free(obj);
}

static void *ver_thread(void *arg)
{
	struct ver *v = arg;
	uint8_t *plain = malloc(BAL_CHUNK_SIZE);

	for (;;) {
		uint64_t k;

		pthread_mutex_lock(&v->lock);
		if (!plain) {
			v->err = -ENOMEM;
			v->stop = true;
		}
		if (v->stop || v->next >= v->n) {
			v->running--;
			pthread_cond_broadcast(&v->cond);
			pthread_mutex_unlock(&v->lock);
			break;
		}
		k = v->next++;
		pthread_mutex_unlock(&v->lock);
		check_one(v, v->idx[k], plain);
	}
	free(plain);
	return NULL;
}

static int run(struct ver *v, unsigned nth, bal_tier_progress_fn progress, void *arg)
{
	pthread_t th[64];
	unsigned started = 0;

	if (nth > 64)
		nth = 64;
	pthread_mutex_lock(&v->lock);
	for (; started < nth; started++) {
		if (pthread_create(&th[started], NULL, ver_thread, v))
			break;
		v->running++;
	}
	while (v->running) {
		uint64_t done = v->done_bytes;

		tier_wait_tick(&v->cond, &v->lock);
		if (progress) {
			pthread_mutex_unlock(&v->lock);
			if (progress(arg, done, v->total_bytes)) {
				pthread_mutex_lock(&v->lock);
				v->err = -ECANCELED;
				v->stop = true;
				continue;
			}
			pthread_mutex_lock(&v->lock);
		}
	}
	pthread_mutex_unlock(&v->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (!started)
		return -EAGAIN;
	if (!v->err && progress)
		progress(arg, v->total_bytes, v->total_bytes);
	return v->err;
}

int bal_tier_verify(struct bal_tier *t, const char *ref, const struct bal_tier_creds *creds,
		    bal_tier_progress_fn progress, void *arg, struct bal_tier_verify_result *out,
		    char *err, size_t errlen)
{
	char url[BAL_TIER_URL_MAX], id[BAL_TIER_ID_MAX + 1], msg[BAL_TIER_ERR_MAX] = "";
	struct ver v = { .res = out };
	struct bal_objstore *os = NULL;
	struct tier_snap s;
	uint64_t k = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	memset(&s, 0, sizeof(s));
	ret = tier_parse_ref(ref, url, sizeof(url), id, sizeof(id), err, errlen);
	if (!ret)
		ret = tier_store_open(t, url, creds, &os, err, errlen);
	if (ret)
		return ret;
	ret = tier_load(t, os, id, false, NULL, &s, msg, sizeof(msg));
	if (ret && ret != -EBADMSG && ret != -EKEYREJECTED) {
		tier_err(err, errlen, "%s", msg);
		goto out;
	}
	/* A manifest that fails is a finding; its chunks are checked if it parsed. */
	if (s.key[0])
		snprintf(out->manifest_key, sizeof(out->manifest_key), "%s", s.key);
	else
		tier_find_key(os, id, out->manifest_key, sizeof(out->manifest_key));
	out->manifest_ok = ret == 0;
	snprintf(out->manifest_error, sizeof(out->manifest_error), "%.200s", ret ? msg : "");
	ret = 0;
	if (!s.m)
		goto out;	/* nothing more can be checked */
	v.s = &s;
	v.os = os;
	v.idx = malloc((s.m->nchunks ? s.m->nchunks : 1) * sizeof(*v.idx));
	if (!v.idx) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < s.m->nchunks; i++)
		if (s.m->chunks[i][0])
			v.idx[k++] = i;
	qsort_r(v.idx, k, sizeof(*v.idx), cmp_by_name, s.m);
	for (uint64_t i = 0; i < k; i++)
		if (!v.n || strcmp(s.m->chunks[v.idx[i]], s.m->chunks[v.idx[v.n - 1]]))
			v.idx[v.n++] = v.idx[i];
	for (uint64_t i = 0; i < v.n; i++)
		v.total_bytes += bal_manifest_chunk_len(s.m, v.idx[i]);
	pthread_mutex_init(&v.lock, NULL);
	pthread_cond_init(&v.cond, NULL);
	ret = run(&v, t->parallel, progress, arg);
	pthread_cond_destroy(&v.cond);
	pthread_mutex_destroy(&v.lock);
	if (ret)
		tier_err(err, errlen, "verify of %s: %s", ref, strerror(-ret));
	else
		bal_info("object tier: verified %s: %" PRIu64 " objects, %zu problems%s", ref,
			 out->chunks, out->nproblems, out->manifest_ok ? "" : ", manifest fails");
out:
	free(v.idx);
	tier_snap_fini(&s);
	bal_objstore_close(os);
	return ret;
}
