/* SPDX-License-Identifier: MIT */
/*
 * Object store client, the backend-independent half: URL parsing and
 * normalisation, key and argument checks (nothing invalid reaches a
 * backend), the atomic counters, and the thread-local error text.  The
 * backends live in objstore_file.c and objstore_s3.c.
 *
 * Threads: any; the only shared mutable state is the counters (atomics)
 * and whatever the backend locks itself.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "snapshot/objstore_internal.h"

#define KEY_MAX 1024

static __thread char errbuf[512];

void bal_objstore_seterr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
}

const char *bal_objstore_strerror(void)
{
	return errbuf[0] ? errbuf : "no error";
}

/* A key or a prefix of the s3:// URL: see objstore.h for the rules. */
static bool key_is_valid(const char *key)
{
	size_t len = strlen(key);
	const char *seg = key;

	if (len == 0 || len > KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
			return false;
	for (;;) {
		size_t n = strcspn(seg, "/");

		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		if (!seg[n])
			return true;
		seg += n + 1;
	}
}

static int check_key(const struct bal_objstore *s, const char *op, const char *key)
{
	if (key && key_is_valid(key))
		return 0;
	bal_objstore_seterr("%s: %s: invalid key", s->url, op);
	return -EINVAL;
}

static bool storage_class_is_valid(const char *sc)
{
	static const char *const classes[] = {
		"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
		"GLACIER", "GLACIER_IR", "DEEP_ARCHIVE", "REDUCED_REDUNDANCY",
	};

	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (!strcmp(sc, classes[i]))
			return true;
	return false;
}

/* Count the outcome of one call; -ENOENT is an answer, not a failure. */
static int account(struct bal_objstore *s, atomic_uint_fast64_t *ctr, int ret)
{
	if (ret == 0 || ret == -ENOENT) {
		atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
		if (ret != -EINVAL && ret != -EFBIG)
			bal_warn("object store: %s", errbuf);
	}
	return ret;
}

/* "/a//b/" -> "/a/b"; "/" stays "/".  Refuses "." and ".." segments. */
static char *normalise_path(const char *path)
{
	char *out = malloc(strlen(path) + 2);
	size_t n = 0;
	const char *p = path;

	if (!out)
		return NULL;
	while (*p) {
		size_t seg;

		while (*p == '/')
			p++;
		seg = strcspn(p, "/");
		if (!seg)
			break;
		if ((seg == 1 && p[0] == '.') || (seg == 2 && p[0] == '.' && p[1] == '.')) {
			free(out);
			errno = EINVAL;
			return NULL;
		}
		out[n++] = '/';
		memcpy(out + n, p, seg);
		n += seg;
		p += seg;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = 0;
	return out;
}

static int open_file_url(struct bal_objstore *s, const char *url)
{
	const char *path = url + strlen("file://");
	char *norm;
	int ret;

	if (path[0] != '/') {
		bal_objstore_seterr("%s: a file URL needs an absolute path (file:///dir)", url);
		return -EINVAL;
	}
	norm = normalise_path(path);
	if (!norm) {
		bal_objstore_seterr("%s: bad path", url);
		return errno == EINVAL ? -EINVAL : -ENOMEM;
	}
	if (asprintf(&s->url, "file://%s", norm) < 0) {
		s->url = NULL;
		free(norm);
		return -ENOMEM;
	}
	ret = bal_objstore_file_open(s, norm);
	free(norm);
	return ret;
}

static int open_s3_url(struct bal_objstore *s, const struct bal_objstore_opts *o,
		       const char *url)
{
	const char *b = url + strlen("s3://");
	size_t blen = strcspn(b, "/");
	char bucket[64], *prefix;
	size_t plen;
	int ret;

	if (blen == 0 || blen >= sizeof(bucket)) {
		bal_objstore_seterr("%s: bad bucket name", url);
		return -EINVAL;
	}
	for (size_t i = 0; i < blen; i++) {
		char c = b[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_')) {
			bal_objstore_seterr("%s: bad bucket name", url);
			return -EINVAL;
		}
	}
	memcpy(bucket, b, blen);
	bucket[blen] = 0;
	/* The prefix without its leading and trailing slashes. */
	b += blen;
	while (*b == '/')
		b++;
	plen = strlen(b);
	while (plen && b[plen - 1] == '/')
		plen--;
	prefix = strndup(b, plen);
	if (!prefix)
		return -ENOMEM;
	if (plen && !key_is_valid(prefix)) {
		bal_objstore_seterr("%s: bad prefix", url);
		free(prefix);
		return -EINVAL;
	}
	if (asprintf(&s->url, "s3://%s%s%s", bucket, plen ? "/" : "", prefix) < 0) {
		s->url = NULL;
		free(prefix);
		return -ENOMEM;
	}
	ret = bal_objstore_s3_open(s, o, bucket, prefix);
	free(prefix);
	return ret;
}

int bal_objstore_open(const struct bal_objstore_opts *opts, struct bal_objstore **out)
{
	struct bal_objstore_opts o = { 0 };
	struct bal_objstore *s;
	int ret;

	errbuf[0] = 0;
	if (!opts || !out || opts->opts_size < offsetof(struct bal_objstore_opts, url) +
						      sizeof(opts->url)) {
		bal_objstore_seterr("object store: bad options");
		return -EINVAL;
	}
	memcpy(&o, opts, opts->opts_size < sizeof(o) ? opts->opts_size : sizeof(o));
	o.opts_size = sizeof(o);
	if (!o.url) {
		bal_objstore_seterr("object store: no URL");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (!strncmp(o.url, "file://", 7)) {
		ret = open_file_url(s, o.url);
	} else if (!strncmp(o.url, "s3://", 5)) {
		ret = open_s3_url(s, &o, o.url);
	} else {
		bal_objstore_seterr("%s: unsupported URL (file:///dir or s3://bucket[/prefix])",
				    o.url);
		ret = -EINVAL;
	}
	if (ret) {
		free(s->url);
		free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void bal_objstore_close(struct bal_objstore *s)
{
	if (!s)
		return;
	s->ops->close(s);
	free(s->url);
	free(s);
}

const char *bal_objstore_url(const struct bal_objstore *s)
{
	return s->url;
}

int bal_objstore_put(struct bal_objstore *s, const char *key, const void *data, size_t len,
		     const char *storage_class)
{
	int ret = check_key(s, "PUT", key);

	if (!ret && storage_class && !storage_class_is_valid(storage_class)) {
		bal_objstore_seterr("%s: PUT %s: unknown storage class", s->url, key);
		ret = -EINVAL;
	}
	if (!ret && !data && len) {
		bal_objstore_seterr("%s: PUT %s: no data", s->url, key);
		ret = -EINVAL;
	}
	if (!ret)
		ret = s->ops->put(s, key, data, len, storage_class);
	if (!ret)
		atomic_fetch_add_explicit(&s->put_bytes, len, memory_order_relaxed);
	return account(s, &s->puts, ret);
}

int bal_objstore_get(struct bal_objstore *s, const char *key, size_t max_len, void **data,
		     size_t *len)
{
	int ret = check_key(s, "GET", key);

	if (!ret)
		ret = s->ops->get(s, key, max_len, data, len);
	if (!ret)
		atomic_fetch_add_explicit(&s->get_bytes, *len, memory_order_relaxed);
	return account(s, &s->gets, ret);
}

int bal_objstore_head(struct bal_objstore *s, const char *key, uint64_t *size)
{
	int ret = check_key(s, "HEAD", key);

	if (!ret)
		ret = s->ops->head(s, key, size);
	return account(s, &s->heads, ret);
}

int bal_objstore_delete(struct bal_objstore *s, const char *key)
{
	int ret = check_key(s, "DELETE", key);

	if (!ret)
		ret = s->ops->del(s, key);
	return account(s, &s->deletes, ret);
}

/* Tells the caller's own stop value from a store error. */
struct list_ctx {
	bal_objstore_list_cb cb;
	void *arg;
	bool stopped;
};

static int list_trampoline(void *arg, const char *key, uint64_t size, bool is_prefix)
{
	struct list_ctx *c = arg;
	int r = c->cb(c->arg, key, size, is_prefix);

	if (r)
		c->stopped = true;
	return r;
}

int bal_objstore_list(struct bal_objstore *s, const char *prefix, const char *delimiter,
		      int (*cb)(void *arg, const char *key, uint64_t size, bool is_prefix),
		      void *arg)
{
	struct list_ctx c = { .cb = cb, .arg = arg };
	size_t plen = prefix ? strlen(prefix) : 0;
	int ret = 0;

	if (!prefix)
		prefix = "";
	if (delimiter && !*delimiter)
		delimiter = NULL;
	/* A prefix is a key, or a key with a trailing '/', or a piece of one. */
	if (!cb || plen > KEY_MAX || prefix[0] == '/' || strstr(prefix, "//") ||
	    (delimiter && strlen(delimiter) > 16)) {
		bal_objstore_seterr("%s: LIST %s: invalid prefix or delimiter", s->url, prefix);
		ret = -EINVAL;
	}
	for (size_t i = 0; !ret && i < plen; i++)
		if ((unsigned char)prefix[i] < 0x20 || prefix[i] == 0x7f) {
			bal_objstore_seterr("%s: LIST: invalid prefix", s->url);
			ret = -EINVAL;
		}
	if (!ret)
		ret = s->ops->list(s, prefix, delimiter, list_trampoline, &c);
	/* A callback's own non-zero value is not a failure of the store. */
	account(s, &s->lists, c.stopped ? 0 : ret);
	return ret;
}

void bal_objstore_stats(const struct bal_objstore *s, struct bal_objstore_stats *out)
{
	struct bal_objstore *m = (struct bal_objstore *)s;

	out->puts = atomic_load(&m->puts);
	out->put_bytes = atomic_load(&m->put_bytes);
	out->gets = atomic_load(&m->gets);
	out->get_bytes = atomic_load(&m->get_bytes);
	out->heads = atomic_load(&m->heads);
	out->lists = atomic_load(&m->lists);
	out->deletes = atomic_load(&m->deletes);
	out->retries = atomic_load(&m->retries);
	out->failures = atomic_load(&m->failures);
}
