/* SPDX-License-Identifier: MIT */
/*
 * Between objstore.c (URL parsing, key checks, counters, error text) and
 * its backends objstore_file.c and objstore_s3.c.  Not for other modules.
 *
 * objstore.c validates every key and argument before a backend sees it and
 * counts the outcome; a backend does the I/O, sets the thread's error text
 * with bal_objstore_seterr() on failure, and bumps `retries` itself.
 */
#ifndef BAL_OBJSTORE_INTERNAL_H
#define BAL_OBJSTORE_INTERNAL_H

#include <stdatomic.h>

#include "snapshot/objstore.h"

typedef int (*bal_objstore_list_cb)(void *arg, const char *key, uint64_t size, bool is_prefix);

struct bal_objstore_ops {
	int (*put)(struct bal_objstore *s, const char *key, const void *data, size_t len,
		   const char *storage_class);
	int (*get)(struct bal_objstore *s, const char *key, size_t max_len, void **data,
		   size_t *len);
	int (*head)(struct bal_objstore *s, const char *key, uint64_t *size);
	int (*del)(struct bal_objstore *s, const char *key);
	int (*list)(struct bal_objstore *s, const char *prefix, const char *delimiter,
		    bal_objstore_list_cb cb, void *arg);
	void (*close)(struct bal_objstore *s);
};

struct bal_objstore {
	const struct bal_objstore_ops *ops;
	char *url;		/* normalised, for messages and bal_objstore_url() */
	void *be;		/* the backend's state, immutable but for its own locks */
	atomic_uint_fast64_t puts, put_bytes, gets, get_bytes, heads, lists, deletes;
	atomic_uint_fast64_t retries, failures;
};

/* Set the calling thread's error text (bal_objstore_strerror). */
void bal_objstore_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Backends: fill s->ops and s->be (and s->url) or return -errno with the
 * error text set.  @path is the absolute directory of a file:// URL. */
int bal_objstore_file_open(struct bal_objstore *s, const char *path);
int bal_objstore_s3_open(struct bal_objstore *s, const struct bal_objstore_opts *o,
			 const char *bucket, const char *prefix);

/* ---- s3:// string helpers (objstore_s3xml.c) ---------------------------- */

/* SigV4 URI encoding (A-Za-z0-9-._~ kept, '/' too when @keep_slash, the
 * rest %XX upper case); malloc'ed, NULL without memory. */
char *bal_objstore_uri_encode(const char *s, bool keep_slash);

/* First occurrence of @s in [p, end), or NULL. */
const char *bal_objstore_find(const char *p, const char *end, const char *s);

/* The entity-decoded text of the first <tag>..</tag> (or <tag/>) in
 * [p, end); malloc'ed; NULL if absent or without memory. */
char *bal_objstore_xml_text(const char *p, const char *end, const char *tag);

struct bal_objstore_item {
	char *key;		/* relative to the store's prefix; malloc'ed */
	uint64_t size;
	bool is_prefix;
};

/*
 * Parse one ListObjectsV2 page [p, end): Contents (Key, Size) and
 * CommonPrefixes (Prefix) whose keys start with @prefix (the store's, "" or
 * "p/"), returned without it, sorted, in *items (*n of them; the caller
 * frees each key and the array, also on error); IsTruncated and
 * NextContinuationToken (malloc'ed, replaces *token).  0, -EIO (not a
 * complete listing), -ENOMEM.
 */
int bal_objstore_parse_list(const char *prefix, const char *p, const char *end,
			    struct bal_objstore_item **items, size_t *n, bool *truncated,
			    char **token);

#endif
