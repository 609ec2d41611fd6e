/* SPDX-License-Identifier: MIT */
/*
 * Object store client: the object tier's one door to a bucket.  Two
 * backends behind one opaque handle:
 *
 *   file:///abs/dir        a local directory (the default tier); each key is
 *                          a file, written atomically (temp file, fsync,
 *                          rename, fsync of the directory).
 *   s3://bucket[/prefix]   any S3-compatible store through libcurl, signed
 *                          with AWS Signature V4, configured as AWS tools
 *                          are (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 *                          AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL).
 *
 * Keys are relative '/'-separated paths such as "chunks/ab/abcdef..." or
 * "manifests/vol/2026/11/25/ID.json": 1..1024 bytes, no leading '/', no
 * empty, "." or ".." segment, no control characters; anything else is
 * -EINVAL before any I/O.
 *
 * Threads: every function may be called from many threads at once on one
 * store (the export runs several upload threads).  Calls block (disk or
 * network I/O, retries with backoff): never call them on an I/O worker's
 * event loop.  Errors are -errno: -EINVAL (bad key, URL or argument),
 * -ENOENT (no such object), -EACCES (403 / permission), -ENOSPC, -EFBIG,
 * -ETIMEDOUT, -EIO (anything else, after retries), -ENOMEM.  After a
 * failure, bal_objstore_strerror() describes it in one line (never with a
 * secret in it).
 */
#ifndef BAL_OBJSTORE_H
#define BAL_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bal_objstore;

struct bal_objstore_opts {
	size_t opts_size;	/* sizeof(struct bal_objstore_opts) */
	/* "file:///abs/dir" (created if missing), "s3://bucket" or
	 * "s3://bucket/prefix". */
	const char *url;
	/*
	 * S3 only.  NULL fields come from the environment as AWS tools read
	 * it: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
	 * (taken from the environment only when access_key is NULL too),
	 * AWS_REGION (else AWS_DEFAULT_REGION, else us-east-1),
	 * AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (set: path-style
	 * http(s)://endpoint/bucket/key; unset:
	 * https://bucket.s3.REGION.amazonaws.com/key).
	 */
	const char *access_key, *secret_key, *session_token, *region, *endpoint;
	unsigned max_conns;	/* parallel requests allowed (0: 8) */
	/* S3 only: keys asked per ListObjectsV2 page (0: the server's
	 * default, 1000); small values exercise pagination in tests. */
	unsigned list_max_keys;
};

/*
 * Open the store at o->url.  No network traffic: a wrong bucket or key shows
 * at the first request.  0 and *out (free with bal_objstore_close), or
 * -EINVAL (bad URL, missing credentials; see bal_objstore_strerror),
 * -EACCES/-EIO (cannot create the file:// directory), -ENOMEM.
 */
int bal_objstore_open(const struct bal_objstore_opts *o, struct bal_objstore **out);

/* Close @s; no request may be in flight.  NULL is a no-op. */
void bal_objstore_close(struct bal_objstore *s);

/* The normalised URL ("file:///x", "s3://b" or "s3://b/p", no trailing
 * slash); owned by @s. */
const char *bal_objstore_url(const struct bal_objstore *s);

/*
 * Store @len bytes at @key, replacing any object there; readers see the old
 * or the new object, never a part.  @storage_class: NULL for none, else one
 * of STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER,
 * GLACIER_IR, DEEP_ARCHIVE, REDUCED_REDUNDANCY (-EINVAL otherwise); sent
 * as x-amz-storage-class on S3, ignored on file://.
 */
int bal_objstore_put(struct bal_objstore *s, const char *key, const void *data, size_t len,
		     const char *storage_class);

/*
 * Fetch @key.  0 with *data (malloc'ed, the caller frees it; never NULL on
 * success, even for an empty object) and *len; -ENOENT; -EFBIG if the object
 * is larger than @max_len.
 */
int bal_objstore_get(struct bal_objstore *s, const char *key, size_t max_len, void **data,
		     size_t *len);

/* Size of @key in *size; -ENOENT if there is none. */
int bal_objstore_head(struct bal_objstore *s, const char *key, uint64_t *size);

/* Delete @key; a missing key is 0. */
int bal_objstore_delete(struct bal_objstore *s, const char *key);

/*
 * Call @cb for every key starting with @prefix (a key prefix such as
 * "manifests/vol/", may be "" for all), pages and all, in lexicographic
 * (byte) order.  With a @delimiter (e.g. "/"), keys whose rest after
 * @prefix contains it are rolled up into one common prefix, reported once
 * with is_prefix true, size 0 and the key ending with the delimiter.  @cb
 * runs on the calling thread with no lock held (it may use the store); a
 * non-zero return stops the listing and becomes the return value.
 * Otherwise 0 or -errno.
 */
int bal_objstore_list(struct bal_objstore *s, const char *prefix, const char *delimiter,
		      int (*cb)(void *arg, const char *key, uint64_t size, bool is_prefix),
		      void *arg);

/*
 * Counters, updated atomically.  puts/gets/heads/lists/deletes count calls
 * that succeeded (a get or head answering -ENOENT counts too: it is an
 * answer), put_bytes/get_bytes their payloads, retries the requests sent
 * again after a transient failure, failures the calls that returned any
 * other error.
 */
struct bal_objstore_stats {
	uint64_t puts, put_bytes, gets, get_bytes, heads, lists, deletes, retries, failures;
};
void bal_objstore_stats(const struct bal_objstore *s, struct bal_objstore_stats *out);

/*
 * One line describing the last failure on the calling thread, e.g.
 * "s3://b/p: PUT chunks/ab/..: HTTP 403 SignatureDoesNotMatch" or
 * "file:///x: chunks/..: No space left on device".  Thread-local storage,
 * valid until the thread's next store call.  Never contains secrets.
 */
const char *bal_objstore_strerror(void);

#endif
