/* SPDX-License-Identifier: MIT */
/*
 * The s3:// object store, over libcurl: the one file of Ballast that
 * includes curl/curl.h.
 *
 * Signing: libcurl's own AWS Signature V4 (CURLOPT_AWS_SIGV4
 * "aws:amz:REGION:s3").  As of curl 7.88 it signs the method, the URL path
 * and query exactly as written, the Host header, every header we pass in
 * CURLOPT_HTTPHEADER and the X-Amz-Date it adds; it takes the payload hash
 * from our x-amz-content-sha256 header when one is present (its own would
 * hash an empty body for a PUT from a read callback).  So this file:
 *   - URI-encodes each key segment per SigV4 (A-Za-z0-9-._~ kept, '/'
 *     kept between segments, everything else %XX upper case), and sets
 *     CURLOPT_PATH_AS_IS so curl does not rewrite the path;
 *   - builds canonical query strings itself (parameters sorted by name,
 *     names and values encoded, "name=" for empty values);
 *   - always sends x-amz-content-sha256 (hex SHA-256 of the body, also for
 *     empty bodies) and signs every header it adds (Content-Type,
 *     x-amz-storage-class, x-amz-security-token).  The only headers curl
 *     adds unsigned are Accept, Content-Length and Expect: 100-continue,
 *     which SigV4 does not require to be signed (AWS SDKs leave Expect
 *     unsigned too).  Removing a curl header with "Name:" is not possible:
 *     curl would sign it with an empty value.
 * The secret key goes to curl as CURLOPT_PASSWORD only; neither it nor a
 * signature is ever logged or put in an error message.
 *
 * Requests: a pool of at most max_conns curl easy handles, created lazily
 * and reused (curl_easy_reset keeps their connections alive); a caller
 * blocks while all are busy.  Each request is tried up to 8 times, with
 * exponential backoff and full jitter (100 ms base, 3 s cap), on transport
 * errors, HTTP 429/500/502/503/504 and the S3 codes SlowDown,
 * RequestTimeout and InternalError; never on other 4xx.  Connect timeout
 * 5 s; a transfer slower than 1 KiB/s for 30 s is aborted.
 *
 * The URI encoding and the XML reader live in objstore_s3xml.c.
 *
 * Threads: any; the pool is the only shared mutable state (s3->lock).
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "snapshot/objstore_internal.h"

#define ATTEMPTS 8
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 3000
#define ERR_BODY_MAX 65536		/* kept of an error response */
#define LIST_BODY_MAX (16u << 20)	/* one ListObjectsV2 page */

struct s3 {
	char *prefix;		/* "" or "p/"; prepended to every key */
	char *base;		/* "http://endpoint/bucket" or "https://b.s3.R.amazonaws.com" */
	bool path_style;
	char *access_key, *secret_key, *session_token;
	char sigv4[96];		/* "aws:amz:REGION:s3" */
	unsigned list_max_keys;
	pthread_mutex_t lock;	/* protects the pool below */
	pthread_cond_t cond;	/* a handle came back */
	CURL **idle;
	unsigned nidle, ncreated, max;
};

/* One request and its response. */
struct req {
	CURL *h;
	const char *method, *key;	/* for messages; key relative to the store */
	const uint8_t *body;
	size_t body_len, body_off;
	size_t max_len;			/* of a 2xx body */
	bool headers_done;		/* the final response's blank line came */
	uint8_t *resp;			/* NUL-terminated */
	size_t resp_len, resp_cap;
	bool too_big;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- strings -------------------------------------------------------------- */

static char *object_url(struct s3 *s3, const char *key)
{
	char *full, *enc, *url = NULL;

	if (asprintf(&full, "%s%s", s3->prefix, key) < 0)
		return NULL;
	enc = bal_objstore_uri_encode(full, true);
	if (enc && asprintf(&url, "%s/%s", s3->base, enc) < 0)
		url = NULL;
	free(enc);
	free(full);
	return url;
}

static void hex32(const uint8_t *b, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* ---- the handle pool and one request ------------------------------------- */

static CURL *take_handle(struct s3 *s3)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s3->lock);
	while (!s3->nidle && s3->ncreated >= s3->max)
		pthread_cond_wait(&s3->cond, &s3->lock);
	if (s3->nidle)
		h = s3->idle[--s3->nidle];
	else
		s3->ncreated++;
	pthread_mutex_unlock(&s3->lock);
	if (!h && !(h = curl_easy_init())) {
		pthread_mutex_lock(&s3->lock);
		s3->ncreated--;
		pthread_cond_signal(&s3->cond);
		pthread_mutex_unlock(&s3->lock);
	}
	return h;
}

static void give_handle(struct s3 *s3, CURL *h)
{
	pthread_mutex_lock(&s3->lock);
	s3->idle[s3->nidle++] = h;
	pthread_cond_signal(&s3->cond);
	pthread_mutex_unlock(&s3->lock);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct req *r = userdata;
	size_t n = size * nmemb, cap;
	long code = 0;

	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
	cap = code >= 200 && code < 300 ? r->max_len : ERR_BODY_MAX;
	if (n > cap - r->resp_len) {
		if (code >= 200 && code < 300) {
			r->too_big = true;
			return 0;	/* abort the transfer */
		}
		n = cap - r->resp_len;	/* keep the head of an error body */
	}
	if (r->resp_len + n + 1 > r->resp_cap) {
		size_t ncap = r->resp_cap ? r->resp_cap : 4096;
		uint8_t *nb;

		while (ncap < r->resp_len + n + 1)
			ncap *= 2;
		nb = realloc(r->resp, ncap);
		if (!nb)
			return 0;
		r->resp = nb;
		r->resp_cap = ncap;
	}
	memcpy(r->resp + r->resp_len, ptr, n);
	r->resp_len += n;
	r->resp[r->resp_len] = 0;
	return size * nmemb;
}

/* curl reports OK for a response cut inside its headers (once the status
 * line came): see the blank line that ends them, or retry. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct req *r = userdata;
	size_t n = size * nitems;
	long code = 0;

	if ((n == 2 && buf[0] == '\r' && buf[1] == '\n') || (n == 1 && buf[0] == '\n')) {
		curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200)
			r->headers_done = true;
	}
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct req *r = userdata;
	size_t n = r->body_len - r->body_off;

	if (n > size * nitems)
		n = size * nitems;
	memcpy(buf, r->body + r->body_off, n);
	r->body_off += n;
	return n;
}

static int on_seek(void *userdata, curl_off_t offset, int origin)
{
	struct req *r = userdata;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->body_len)
		return CURL_SEEKFUNC_FAIL;
	r->body_off = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

static bool curl_is_transient(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_SEND_FAIL_REWIND:
		return true;
	default:
		return false;
	}
}

static bool http_is_transient(long status, const char *code)
{
	return status == 429 || status == 500 || status == 502 || status == 503 ||
	       status == 504 ||
	       (code && (!strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
			 !strcmp(code, "InternalError")));
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)). */
static void backoff(int attempt)
{
	static __thread unsigned seed;
	unsigned ceil = BACKOFF_CAP_MS, ms;
	struct timespec ts;

	if (!seed) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed = (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)&ts ^ 1u;
	}
	if (attempt < 6 && (BACKOFF_BASE_MS << attempt) < BACKOFF_CAP_MS)
		ceil = BACKOFF_BASE_MS << attempt;
	ms = (unsigned)rand_r(&seed) % ceil;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void set_options(struct s3 *s3, struct req *r, const char *url, struct curl_slist *hdrs,
			char *errbuf)
{
	CURL *h = r->h;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_AWS_SIGV4);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s3->sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, s3->access_key);
	curl_easy_setopt(h, CURLOPT_PASSWORD, s3->secret_key);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
	} else if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(r->method, "DELETE")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
	}
}

/*
 * Send @r to @url with retries.  0 when the server answered 2xx (body in
 * r->resp, *length its Content-Length or -1), else -errno with the error
 * text set.
 */
static int perform(struct bal_objstore *s, struct req *r, const char *url,
		   const char *storage_class, curl_off_t *length)
{
	struct s3 *s3 = s->be;
	struct curl_slist *hdrs = NULL, *t;
	char errbuf[CURL_ERROR_SIZE], line[160], hash[65];
	uint8_t sha[BAL_SHA256_LEN];
	const char *what = r->key ? r->key : "";
	int ret = -EIO, attempt;

	if (bal_sha256(r->body, r->body_len, sha))
		return -EIO;
	hex32(sha, hash);
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hash);
	hdrs = curl_slist_append(hdrs, line);
	if (hdrs && storage_class) {
		snprintf(line, sizeof(line), "x-amz-storage-class: %s", storage_class);
		hdrs = (t = curl_slist_append(hdrs, line)) ? t : (curl_slist_free_all(hdrs), NULL);
	}
	if (hdrs && !strcmp(r->method, "PUT"))
		hdrs = (t = curl_slist_append(hdrs, "Content-Type: application/octet-stream")) ?
			       t : (curl_slist_free_all(hdrs), NULL);
	if (hdrs && s3->session_token) {
		char *tok;

		if (asprintf(&tok, "x-amz-security-token: %s", s3->session_token) < 0)
			tok = NULL;
		t = tok ? curl_slist_append(hdrs, tok) : NULL;
		free(tok);
		if (!t)
			curl_slist_free_all(hdrs);
		hdrs = t;
	}
	if (!hdrs)
		return -ENOMEM;
	r->h = take_handle(s3);
	if (!r->h) {
		curl_slist_free_all(hdrs);
		return -ENOMEM;
	}
	for (attempt = 1;; attempt++) {
		char *code = NULL;
		long status = 0;
		CURLcode c;
		bool transient;

		r->body_off = 0;
		r->resp_len = 0;
		r->too_big = false;
		r->headers_done = false;
		errbuf[0] = 0;
		set_options(s3, r, url, hdrs, errbuf);
		c = curl_easy_perform(r->h);
		if (c == CURLE_OK && !r->headers_done) {
			transient = true;
			bal_objstore_seterr("%s: %s %s: response cut short", s->url, r->method, what);
			ret = -EIO;
		} else if (c == CURLE_OK) {
			curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
			if (status >= 200 && status < 300) {
				curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, length);
				ret = 0;
				break;
			}
			if (r->resp_len)
				code = bal_objstore_xml_text((const char *)r->resp,
						(const char *)r->resp + r->resp_len, "Code");
			transient = http_is_transient(status, code);
			bal_objstore_seterr("%s: %s %s: HTTP %ld%s%s", s->url, r->method, what,
					    status, code ? " " : "", code ? code : "");
			if (status == 404)
				ret = -ENOENT;
			else if (status == 403)
				ret = -EACCES;
			else if (status == 507)
				ret = -ENOSPC;
			else if (code && !strcmp(code, "EntityTooLarge"))
				ret = -EFBIG;
			else
				ret = -EIO;
			free(code);
		} else if (r->too_big) {
			bal_objstore_seterr("%s: %s %s: more than %zu bytes", s->url, r->method,
					    what, r->max_len);
			ret = -EFBIG;
			break;
		} else {
			transient = curl_is_transient(c);
			bal_objstore_seterr("%s: %s %s: %s", s->url, r->method, what,
					    errbuf[0] ? errbuf : curl_easy_strerror(c));
			ret = c == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT :
			      c == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		}
		if (!transient)
			break;
		if (attempt == ATTEMPTS) {
			char msg[512];

			snprintf(msg, sizeof(msg), "%s", bal_objstore_strerror());
			bal_objstore_seterr("%s (%d attempts)", msg, ATTEMPTS);
			break;
		}
		bal_debug("object store: %s; retrying (attempt %d of %d)",
			  bal_objstore_strerror(), attempt + 1, ATTEMPTS);
		atomic_fetch_add_explicit(&s->retries, 1, memory_order_relaxed);
		backoff(attempt - 1);
	}
	/* errbuf and hdrs die with this call: no dangling pointer in an idle handle. */
	curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, NULL);
	give_handle(s3, r->h);
	curl_slist_free_all(hdrs);
	return ret;
}

/* ---- operations ----------------------------------------------------------- */

static int s3_put(struct bal_objstore *s, const char *key, const void *data, size_t len,
		  const char *storage_class)
{
	struct req r = { .method = "PUT", .key = key, .body = data, .body_len = len,
			 .max_len = ERR_BODY_MAX };
	char *url = object_url(s->be, key);
	curl_off_t length;
	int ret;

	if (!url)
		return -ENOMEM;
	ret = perform(s, &r, url, storage_class, &length);
	free(r.resp);
	free(url);
	return ret;
}

static int s3_get(struct bal_objstore *s, const char *key, size_t max_len, void **data,
		  size_t *len)
{
	struct req r = { .method = "GET", .key = key, .max_len = max_len };
	char *url = object_url(s->be, key);
	curl_off_t length = -1;
	int ret;

	if (!url)
		return -ENOMEM;
	ret = perform(s, &r, url, NULL, &length);
	free(url);
	if (!ret && length >= 0 && (uint64_t)length != r.resp_len) {
		bal_objstore_seterr("%s: GET %s: short body", s->url, key);
		ret = -EIO;
	}
	if (!ret && !r.resp && !(r.resp = malloc(1)))
		ret = -ENOMEM;
	if (ret) {
		free(r.resp);
		return ret;
	}
	*data = r.resp;
	*len = r.resp_len;
	return 0;
}

static int s3_head(struct bal_objstore *s, const char *key, uint64_t *size)
{
	struct req r = { .method = "HEAD", .key = key, .max_len = ERR_BODY_MAX };
	char *url = object_url(s->be, key);
	curl_off_t length = -1;
	int ret;

	if (!url)
		return -ENOMEM;
	ret = perform(s, &r, url, NULL, &length);
	free(r.resp);
	free(url);
	if (!ret && length < 0) {
		bal_objstore_seterr("%s: HEAD %s: no Content-Length", s->url, key);
		ret = -EIO;
	}
	if (!ret)
		*size = (uint64_t)length;
	return ret;
}

static int s3_del(struct bal_objstore *s, const char *key)
{
	struct req r = { .method = "DELETE", .key = key, .max_len = ERR_BODY_MAX };
	char *url = object_url(s->be, key);
	curl_off_t length;
	int ret;

	if (!url)
		return -ENOMEM;
	ret = perform(s, &r, url, NULL, &length);
	free(r.resp);
	free(url);
	return ret == -ENOENT ? 0 : ret;
}

/* ---- listing -------------------------------------------------------------- */

/* Append "name=encoded(value)&" to the query being built at @q. */
static int add_param(char **q, const char *name, const char *value)
{
	char *enc = bal_objstore_uri_encode(value, false), *nq;

	if (!enc || asprintf(&nq, "%s%s%s=%s", *q ? *q : "", *q ? "&" : "", name, enc) < 0) {
		free(enc);
		return -ENOMEM;
	}
	free(enc);
	free(*q);
	*q = nq;
	return 0;
}

static int s3_list(struct bal_objstore *s, const char *prefix, const char *delimiter,
		   bal_objstore_list_cb cb, void *arg)
{
	struct s3 *s3 = s->be;
	char *token = NULL, *full = NULL;
	int ret = 0;

	if (asprintf(&full, "%s%s", s3->prefix, prefix) < 0)
		return -ENOMEM;
	/* Bounded: a store that keeps saying "truncated" cannot loop forever. */
	for (unsigned page = 0; page < 10000000; page++) {
		struct req r = { .method = "GET", .key = prefix, .max_len = LIST_BODY_MAX };
		char *q = NULL, *url = NULL, *next = NULL, mk[16];
		struct bal_objstore_item *items = NULL;
		bool truncated = false;
		curl_off_t length;
		size_t n = 0;

		/* Canonical order: continuation-token, delimiter, list-type,
		 * max-keys, prefix. */
		snprintf(mk, sizeof(mk), "%u", s3->list_max_keys);
		ret = (token ? add_param(&q, "continuation-token", token) : 0) ?:
		      (delimiter ? add_param(&q, "delimiter", delimiter) : 0) ?:
		      add_param(&q, "list-type", "2") ?:
		      (s3->list_max_keys ? add_param(&q, "max-keys", mk) : 0) ?:
		      add_param(&q, "prefix", full);
		if (!ret && asprintf(&url, "%s%s?%s", s3->base, s3->path_style ? "" : "/", q) < 0)
			ret = -ENOMEM;
		free(q);
		if (!ret)
			ret = perform(s, &r, url, NULL, &length);
		free(url);
		if (!ret && r.resp) {
			ret = bal_objstore_parse_list(s3->prefix, (const char *)r.resp,
						      (const char *)r.resp + r.resp_len, &items, &n,
						      &truncated, &next);
			if (ret == -EIO)
				bal_objstore_seterr("%s: LIST %s: malformed response", s->url, prefix);
		}
		free(r.resp);
		for (size_t i = 0; i < n; i++) {
			if (!ret)
				ret = cb(arg, items[i].key, items[i].size, items[i].is_prefix);
			free(items[i].key);
		}
		free(items);
		if (!ret && truncated && (!next || !*next || (token && !strcmp(next, token)))) {
			bal_objstore_seterr("%s: LIST %s: truncated without a usable continuation token",
					    s->url, prefix);
			ret = -EIO;
		}
		free(token);
		token = next;
		if (ret || !truncated)
			break;
	}
	free(token);
	free(full);
	return ret;
}

/* ---- open and close ------------------------------------------------------- */

static void s3_close(struct bal_objstore *s)
{
	struct s3 *s3 = s->be;

	for (unsigned i = 0; i < s3->nidle; i++)
		curl_easy_cleanup(s3->idle[i]);
	free(s3->idle);
	pthread_cond_destroy(&s3->cond);
	pthread_mutex_destroy(&s3->lock);
	if (s3->secret_key)
		bal_wipe(s3->secret_key, strlen(s3->secret_key));
	if (s3->session_token)
		bal_wipe(s3->session_token, strlen(s3->session_token));
	free(s3->secret_key);
	free(s3->session_token);
	free(s3->access_key);
	free(s3->base);
	free(s3->prefix);
	free(s3);
}

static const struct bal_objstore_ops s3_ops = {
	.put = s3_put, .get = s3_get, .head = s3_head, .del = s3_del, .list = s3_list,
	.close = s3_close,
};

/* The option, else the environment variable (empty counts as unset). */
static const char *pick(const char *opt, const char *env)
{
	const char *v = getenv(env);

	return opt ? opt : (v && *v ? v : NULL);
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;

	*oom |= s && !d;
	return d;
}

int bal_objstore_s3_open(struct bal_objstore *s, const struct bal_objstore_opts *o,
			 const char *bucket, const char *prefix)
{
	const char *access = pick(o->access_key, "AWS_ACCESS_KEY_ID");
	const char *secret = pick(o->secret_key, "AWS_SECRET_ACCESS_KEY");
	const char *token = o->access_key ? o->session_token :
					    pick(o->session_token, "AWS_SESSION_TOKEN");
	const char *region = pick(o->region, "AWS_REGION");
	const char *endpoint = pick(o->endpoint, "AWS_ENDPOINT_URL_S3");
	struct s3 *s3;
	bool oom = false;
	int n;

	if (!region)
		region = pick(NULL, "AWS_DEFAULT_REGION");
	if (!region)
		region = "us-east-1";
	if (!endpoint)
		endpoint = pick(NULL, "AWS_ENDPOINT_URL");
	if (!access || !secret) {
		bal_objstore_seterr("%s: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
				    s->url);
		return -EINVAL;
	}
	if (strlen(region) > 32 || strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
					   strlen(region)) {
		bal_objstore_seterr("%s: bad region \"%s\"", s->url, region);
		return -EINVAL;
	}
	if (endpoint && strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8)) {
		bal_objstore_seterr("%s: bad endpoint URL \"%s\" (http:// or https://)", s->url,
				    endpoint);
		return -EINVAL;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		bal_objstore_seterr("%s: libcurl: %s", s->url, curl_easy_strerror(curl_init_rc));
		return -EIO;
	}
	s3 = calloc(1, sizeof(*s3));
	if (!s3)
		return -ENOMEM;
	s3->max = o->max_conns ? o->max_conns : 8;
	s3->list_max_keys = o->list_max_keys;
	s3->path_style = endpoint != NULL;
	snprintf(s3->sigv4, sizeof(s3->sigv4), "aws:amz:%s:s3", region);
	if (endpoint)
		n = asprintf(&s3->base, "%.*s/%s", (int)(strlen(endpoint) -
					(endpoint[strlen(endpoint) - 1] == '/')), endpoint, bucket);
	else
		n = asprintf(&s3->base, "https://%s.s3.%s.amazonaws.com", bucket, region);
	if (n < 0)
		s3->base = NULL;
	oom |= n < 0;
	if (asprintf(&s3->prefix, "%s%s", prefix, *prefix ? "/" : "") < 0) {
		s3->prefix = NULL;
		oom = true;
	}
	s3->access_key = dup_or_null(access, &oom);
	s3->secret_key = dup_or_null(secret, &oom);
	s3->session_token = dup_or_null(token, &oom);
	s3->idle = calloc(s3->max, sizeof(*s3->idle));
	oom |= !s3->idle;
	pthread_mutex_init(&s3->lock, NULL);
	pthread_cond_init(&s3->cond, NULL);
	s->be = s3;
	if (oom) {
		s3_close(s);
		s->be = NULL;
		return -ENOMEM;
	}
	s->ops = &s3_ops;
	bal_debug("object store %s: endpoint %s, region %s, %u connections", s->url, s3->base,
		  region, s3->max);
	return 0;
}
