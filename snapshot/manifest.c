/* SPDX-License-Identifier: MIT */
/*
 * Snapshot manifests: the struct, its JSON form (jansson, in this file
 * only), its MAC, its id and its object key.  The document format is
 * described in manifest.h.
 *
 * Invariant: bal_manifest_encode only writes what bal_manifest_decode
 * accepts; both run manifest_check() on the struct.  Decoding trusts
 * nothing: duplicate or unknown members, a wrong type, or a size that does
 * not add up is refused before anything is allocated from it.  Only chunks
 * with data are listed, as [index, name, object size] with increasing
 * indexes, so a document grows with the data exported, not with the
 * volume's provisioned size (a restore reads it before the first byte).
 *
 * The MAC covers jansson's canonical dump (JSON_COMPACT | JSON_SORT_KEYS)
 * of the parsed document without "mac", so whitespace does not matter but
 * every value, and every added or removed member, does.
 *
 * Pure functions, safe from any thread.
 */
#include "snapshot/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/log.h"

#define ID_TIME_LEN 16 /* "YYYYMMDDTHHMMSSZ" */
#define ID_RAND_LEN 8
#define ID_LEN (ID_TIME_LEN + 1 + 2 * ID_RAND_LEN)
#define TIME_MAX 253402300799LL /* 9999-12-31T23:59:59Z: four-digit years */
#define MAC_LEN 32
#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)
#define LOAD_FLAGS JSON_REJECT_DUPLICATES

static const char *const members[] = {
	"format", "id",		   "volume",	  "snapshot",	 "created", "size",
	"chunk_size", "parent",	   "source",	  "storage_class", "encrypted", "wrapped_key",
	"nchunks", "chunks",	   "stored_bytes", "mac",
};

__attribute__((format(printf, 3, 4))) static int bad(char *why, size_t why_len,
						     const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* @s is exactly 2 * @len lowercase hex digits: decode into @out. */
static bool hex_decode(const char *s, size_t len, uint8_t *out)
{
	if (!bal_is_lower_hex(s, 2 * len))
		return false;
	for (size_t i = 0; i < len; i++) {
		char h = s[2 * i], l = s[2 * i + 1];

		out[i] = (uint8_t)(((h <= '9' ? h - '0' : h - 'a' + 10) << 4) |
				   (l <= '9' ? l - '0' : l - 'a' + 10));
	}
	return true;
}

static bool chunk_size_ok(uint64_t cs)
{
	return cs >= BAL_MANIFEST_CHUNK_MIN && cs <= BAL_MANIFEST_CHUNK_MAX && !(cs & (cs - 1));
}

static uint64_t nchunks_of(uint64_t size, uint32_t chunk_size)
{
	/* size <= INT64_MAX and chunk_size <= 64 MiB: no overflow. */
	return (size + chunk_size - 1) / chunk_size;
}

int bal_manifest_create(uint64_t size, uint32_t chunk_size, struct bal_manifest **out)
{
	struct bal_manifest *m;

	if (size == 0 || size > INT64_MAX || !chunk_size_ok(chunk_size) || !out)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->size = size;
	m->chunk_size = chunk_size;
	m->nchunks = nchunks_of(size, chunk_size);
	if (m->nchunks > SIZE_MAX / sizeof(*m->chunks))
		goto err_free;
	m->chunks = calloc((size_t)m->nchunks, sizeof(*m->chunks));
	m->sizes = calloc((size_t)m->nchunks, sizeof(*m->sizes));
	if (!m->chunks || !m->sizes)
		goto err_free;
	*out = m;
	return 0;

err_free:
	free(m->chunks);
	free(m->sizes);
	free(m);
	return -ENOMEM;
}

void bal_manifest_destroy(struct bal_manifest *m)
{
	if (!m)
		return;
	free(m->chunks);
	free(m->sizes);
	free(m);
}

int bal_manifest_new_id(int64_t now_ms, char id[BAL_SNAP_ID_MAX + 1])
{
	uint8_t rnd[ID_RAND_LEN];
	time_t t = (time_t)(now_ms / 1000);
	struct tm tm;
	int ret;

	if (now_ms < 0 || now_ms / 1000 > TIME_MAX || !gmtime_r(&t, &tm))
		return -EINVAL;
	ret = bal_crypto_random(rnd + 2, sizeof(rnd) - 2);
	if (ret < 0)
		return ret;
	rnd[0] = (uint8_t)((now_ms % 1000) >> 8);
	rnd[1] = (uint8_t)(now_ms % 1000);
	strftime(id, ID_TIME_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
	id[ID_TIME_LEN] = '-';
	bal_hex_encode(rnd, sizeof(rnd), id + ID_TIME_LEN + 1);
	return 0;
}

/* Parse @n decimal digits at @s. */
static bool parse_digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

bool bal_manifest_id_is_valid(const char *id)
{
	int year, mon, day, hour, min, sec;
	struct tm tm = { 0 }, back;
	time_t t;

	if (!id || strnlen(id, ID_LEN + 1) != ID_LEN)
		return false;
	if (!parse_digits(id, 4, &year) || !parse_digits(id + 4, 2, &mon) ||
	    !parse_digits(id + 6, 2, &day) || id[8] != 'T' || !parse_digits(id + 9, 2, &hour) ||
	    !parse_digits(id + 11, 2, &min) || !parse_digits(id + 13, 2, &sec) || id[15] != 'Z' ||
	    id[16] != '-')
		return false;
	if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
	    sec > 59)
		return false;
	/* A real date: timegm normalises 0230 to 0302, which then differs. */
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != day ||
	    back.tm_mon != mon - 1 || back.tm_year != year - 1900)
		return false;
	return bal_is_lower_hex(id + ID_TIME_LEN + 1, 2 * ID_RAND_LEN);
}

int bal_manifest_key(const struct bal_manifest *m, char *buf, size_t len)
{
	time_t t;
	struct tm tm;
	int n;

	if (!m || !buf || !bal_name_is_valid(m->volume) || !bal_manifest_id_is_valid(m->id) ||
	    m->created < 0 || m->created > TIME_MAX)
		return -EINVAL;
	t = (time_t)m->created;
	if (!gmtime_r(&t, &tm))
		return -EINVAL;
	n = snprintf(buf, len, "manifests/%s/%04d/%02d/%02d/%s.json", m->volume,
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, m->id);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Printable ASCII without space, shorter than @cap. */
static bool source_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

static bool class_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* Everything decode requires of the struct; -EBADMSG with a reason. */
static int manifest_check(const struct bal_manifest *m, char *why, size_t why_len)
{
	if (!bal_manifest_id_is_valid(m->id))
		return bad(why, why_len, "id: not a snapshot id");
	if (!bal_name_is_valid(m->volume))
		return bad(why, why_len, "volume: not a valid name");
	if (!bal_name_is_valid(m->snapshot))
		return bad(why, why_len, "snapshot: not a valid name");
	if (m->created < 0 || m->created > TIME_MAX)
		return bad(why, why_len, "created: out of range");
	if (m->size == 0 || m->size > INT64_MAX)
		return bad(why, why_len, "size: out of range");
	if (!chunk_size_ok(m->chunk_size))
		return bad(why, why_len, "chunk_size: not a power of two in 64 KiB..64 MiB");
	if (m->nchunks != nchunks_of(m->size, m->chunk_size))
		return bad(why, why_len, "nchunks: does not match size and chunk_size");
	if (m->parent[0] && (!bal_manifest_id_is_valid(m->parent) || !strcmp(m->parent, m->id)))
		return bad(why, why_len, "parent: not a snapshot id other than id");
	if (!source_ok(m->source, sizeof(m->source)))
		return bad(why, why_len, "source: too long or not printable ASCII");
	if (!class_ok(m->storage_class, sizeof(m->storage_class)))
		return bad(why, why_len, "storage_class: too long or bad characters");
	if (m->stored_bytes > INT64_MAX)
		return bad(why, why_len, "stored_bytes: out of range");
	if (m->nchunks && !m->chunks)
		return bad(why, why_len, "chunks: missing");
	for (uint64_t i = 0; i < m->nchunks; i++) {
		if (m->chunks[i][0] && !bal_chunk_name_is_valid(m->chunks[i]))
			return bad(why, why_len, "chunks[%" PRIu64 "]: not a chunk name", i);
		if ((m->sizes[i] == 0) != (m->chunks[i][0] == '\0') ||
		    m->sizes[i] > 2 * (uint64_t)m->chunk_size + 4096)
			return bad(why, why_len, "sizes[%" PRIu64 "]: does not match chunks", i);
	}
	return 0;
}

/* The document without "mac"; NULL on ENOMEM. */
static json_t *build(const struct bal_manifest *m)
{
	char wk[2 * BAL_KW_BLOB_LEN + 1];
	json_t *o, *arr;
	int err = 0;

	o = json_object();
	arr = json_array();
	if (!o || !arr)
		goto err_free;
	for (uint64_t i = 0; i < m->nchunks && !err; i++) {
		if (m->chunks[i][0])
			err |= json_array_append_new(arr, json_pack("[I,s,I]", (json_int_t)i,
								     m->chunks[i],
								     (json_int_t)m->sizes[i]));
	}
	if (m->encrypted)
		bal_hex_encode(m->wrapped_key, sizeof(m->wrapped_key), wk);
	err |= json_object_set_new(o, "format", json_integer(BAL_MANIFEST_FORMAT));
	err |= json_object_set_new(o, "id", json_string(m->id));
	err |= json_object_set_new(o, "volume", json_string(m->volume));
	err |= json_object_set_new(o, "snapshot", json_string(m->snapshot));
	err |= json_object_set_new(o, "created", json_integer(m->created));
	err |= json_object_set_new(o, "size", json_integer((json_int_t)m->size));
	err |= json_object_set_new(o, "chunk_size", json_integer(m->chunk_size));
	err |= json_object_set_new(o, "parent", json_string(m->parent));
	err |= json_object_set_new(o, "source", json_string(m->source));
	err |= json_object_set_new(o, "storage_class", json_string(m->storage_class));
	err |= json_object_set_new(o, "encrypted", json_boolean(m->encrypted));
	err |= json_object_set_new(o, "wrapped_key", m->encrypted ? json_string(wk) : json_null());
	err |= json_object_set_new(o, "nchunks", json_integer((json_int_t)m->nchunks));
	err |= json_object_set_new(o, "stored_bytes", json_integer((json_int_t)m->stored_bytes));
	err |= json_object_set(o, "chunks", arr);
	json_decref(arr);
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;

err_free:
	json_decref(arr);
	json_decref(o);
	return NULL;
}

/* MAC of the canonical dump of @o (which has no "mac"). */
static int mac_of(const json_t *o, const struct bal_chunk_keys *k, uint8_t mac[MAC_LEN])
{
	char *canon = json_dumps(o, DUMP_FLAGS);
	int ret;

	if (!canon)
		return -ENOMEM;
	ret = bal_chunk_mac(k, canon, strlen(canon), mac);
	free(canon);
	return ret;
}

int bal_manifest_encode(const struct bal_manifest *m, const struct bal_chunk_keys *k,
			char **json, size_t *len)
{
	char why[BAL_MANIFEST_WHY_LEN], hex[2 * MAC_LEN + 1];
	uint8_t mac[MAC_LEN];
	json_t *o;
	char *s;
	int ret;

	if (!m || !k || !json || !len)
		return -EINVAL;
	if (manifest_check(m, why, sizeof(why)) < 0) {
		bal_err("manifest %s of volume %s: refusing to encode: %s", m->id, m->volume, why);
		return -EINVAL;
	}
	if (m->encrypted != bal_chunk_keys_sealed(k)) {
		bal_err("manifest %s of volume %s: encryption does not match the keys", m->id,
			m->volume);
		return -EINVAL;
	}
	o = build(m);
	if (!o)
		return -ENOMEM;
	ret = mac_of(o, k, mac);
	if (ret < 0)
		goto out_decref;
	bal_hex_encode(mac, sizeof(mac), hex);
	ret = -ENOMEM;
	if (json_object_set_new(o, "mac", json_string(hex)) < 0)
		goto out_decref;
	s = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!s)
		goto out_decref;
	*json = s;
	*len = strlen(s);
	ret = 0;
out_decref:
	json_decref(o);
	return ret;
}

/* A string member into @dst (@cap bytes with the NUL); no embedded NUL. */
static int get_str(json_t *o, const char *key, char *dst, size_t cap, char *why, size_t why_len)
{
	json_t *v = json_object_get(o, key);
	size_t n;

	if (!json_is_string(v))
		return bad(why, why_len, "%s: not a string", key);
	n = json_string_length(v);
	if (n >= cap || strlen(json_string_value(v)) != n)
		return bad(why, why_len, "%s: too long", key);
	memcpy(dst, json_string_value(v), n + 1);
	return 0;
}

static int get_int(json_t *o, const char *key, int64_t min, int64_t *out, char *why,
		   size_t why_len)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return bad(why, why_len, "%s: not an integer", key);
	if (json_integer_value(v) < min)
		return bad(why, why_len, "%s: out of range", key);
	*out = json_integer_value(v);
	return 0;
}

/* Every known member present, nothing else. */
static int check_members(json_t *o, char *why, size_t why_len)
{
	const size_t n = sizeof(members) / sizeof(members[0]);
	const char *key;
	json_t *v;

	for (size_t i = 0; i < n; i++)
		if (!json_object_get(o, members[i]))
			return bad(why, why_len, "missing member \"%s\"", members[i]);
	if (json_object_size(o) == n)
		return 0;
	json_object_foreach(o, key, v) {
		bool known = false;

		for (size_t i = 0; i < n && !known; i++)
			known = !strcmp(key, members[i]);
		if (!known)
			return bad(why, why_len, "unknown member");
	}
	return bad(why, why_len, "unknown member");
}

/* The scalar members of @o into a manifest created here, then the chunk table. */
static int parse(json_t *o, struct bal_manifest **out, char *why, size_t why_len)
{
	int64_t format, size, chunk_size, nchunks, created, stored;
	char wk[2 * BAL_KW_BLOB_LEN + 1], mac[2 * MAC_LEN + 1];
	json_t *chunks = json_object_get(o, "chunks"), *v;
	struct bal_manifest *m;
	size_t i;
	int ret;

	if ((ret = get_int(o, "format", 0, &format, why, why_len)) < 0 ||
	    (ret = get_int(o, "size", 1, &size, why, why_len)) < 0 ||
	    (ret = get_int(o, "chunk_size", 1, &chunk_size, why, why_len)) < 0 ||
	    (ret = get_int(o, "nchunks", 0, &nchunks, why, why_len)) < 0 ||
	    (ret = get_int(o, "created", 0, &created, why, why_len)) < 0 ||
	    (ret = get_int(o, "stored_bytes", 0, &stored, why, why_len)) < 0)
		return ret;
	if (format != BAL_MANIFEST_FORMAT)
		return bad(why, why_len, "format: unsupported version");
	if (!chunk_size_ok((uint64_t)chunk_size))
		return bad(why, why_len, "chunk_size: not a power of two in 64 KiB..64 MiB");
	if ((uint64_t)nchunks != nchunks_of((uint64_t)size, (uint32_t)chunk_size))
		return bad(why, why_len, "nchunks: does not match size and chunk_size");
	if (!json_is_array(chunks) || json_array_size(chunks) > (uint64_t)nchunks)
		return bad(why, why_len, "chunks: not an array of at most nchunks entries");
	if (!json_is_boolean(json_object_get(o, "encrypted")))
		return bad(why, why_len, "encrypted: not a boolean");
	/* Sizes are now bounded by the document itself: allocating is safe. */
	ret = bal_manifest_create((uint64_t)size, (uint32_t)chunk_size, &m);
	if (ret < 0)
		return ret;
	m->created = created;
	m->stored_bytes = (uint64_t)stored;
	m->encrypted = json_is_true(json_object_get(o, "encrypted"));
	if ((ret = get_str(o, "id", m->id, sizeof(m->id), why, why_len)) < 0 ||
	    (ret = get_str(o, "volume", m->volume, sizeof(m->volume), why, why_len)) < 0 ||
	    (ret = get_str(o, "snapshot", m->snapshot, sizeof(m->snapshot), why, why_len)) < 0 ||
	    (ret = get_str(o, "parent", m->parent, sizeof(m->parent), why, why_len)) < 0 ||
	    (ret = get_str(o, "source", m->source, sizeof(m->source), why, why_len)) < 0 ||
	    (ret = get_str(o, "storage_class", m->storage_class, sizeof(m->storage_class), why,
			   why_len)) < 0 ||
	    (ret = get_str(o, "mac", mac, sizeof(mac), why, why_len)) < 0)
		goto err_destroy;
	ret = -EBADMSG;
	if (!bal_is_lower_hex(mac, 2 * MAC_LEN)) {
		bad(why, why_len, "mac: not %d hex digits", 2 * MAC_LEN);
		goto err_destroy;
	}
	if (m->encrypted) {
		if ((ret = get_str(o, "wrapped_key", wk, sizeof(wk), why, why_len)) < 0)
			goto err_destroy;
		ret = -EBADMSG;
		if (!hex_decode(wk, BAL_KW_BLOB_LEN, m->wrapped_key)) {
			bad(why, why_len, "wrapped_key: not %d hex digits", 2 * BAL_KW_BLOB_LEN);
			goto err_destroy;
		}
	} else if (!json_is_null(json_object_get(o, "wrapped_key"))) {
		bad(why, why_len, "wrapped_key: not null for an unencrypted volume");
		goto err_destroy;
	}
	{
		json_int_t prev = -1;

		json_array_foreach(chunks, i, v) {
			json_t *ji = json_array_get(v, 0), *jn = json_array_get(v, 1),
			       *js = json_array_get(v, 2);
			json_int_t idx = json_is_integer(ji) ? json_integer_value(ji) : -1;
			json_int_t n = json_is_integer(js) ? json_integer_value(js) : -1;

			/* An object is never larger than its chunk plus a small overhead. */
			if (!json_is_array(v) || json_array_size(v) != 3 || idx <= prev ||
			    idx >= nchunks || !json_is_string(jn) ||
			    json_string_length(jn) != BAL_CHUNK_NAME_LEN ||
			    !bal_chunk_name_is_valid(json_string_value(jn)) || n <= 0 ||
			    n > 2 * (json_int_t)m->chunk_size + 4096) {
				bad(why, why_len,
				    "chunks[%zu]: not [index, name, size] with increasing indexes", i);
				goto err_destroy;
			}
			memcpy(m->chunks[idx], json_string_value(jn), BAL_CHUNK_NAME_LEN + 1);
			m->sizes[idx] = (uint64_t)n;
			prev = idx;
		}
	}
	ret = manifest_check(m, why, why_len);
	if (ret < 0)
		goto err_destroy;
	*out = m;
	return 0;

err_destroy:
	bal_manifest_destroy(m);
	return ret;
}

int bal_manifest_decode(const char *json, size_t len, struct bal_manifest **out, char *why,
			size_t why_len)
{
	json_error_t jerr;
	json_t *o;
	int ret;

	if (why && why_len)
		why[0] = '\0';
	if (!json || !out)
		return -EINVAL;
	o = json_loadb(json, len, LOAD_FLAGS, &jerr);
	if (!o) {
		ret = bad(why, why_len, "JSON: %s at line %d column %d", jerr.text, jerr.line,
			  jerr.column);
		/* jansson quotes the offending input: keep the reason printable. */
		for (size_t i = 0; why && i < why_len && why[i]; i++)
			if (why[i] < ' ' || why[i] > '~')
				why[i] = '?';
		return ret;
	}
	if (!json_is_object(o)) {
		ret = bad(why, why_len, "not a JSON object");
		goto out_decref;
	}
	ret = check_members(o, why, why_len);
	if (ret == 0)
		ret = parse(o, out, why, why_len);
out_decref:
	json_decref(o);
	return ret;
}

int bal_manifest_verify(const char *json, size_t len, const struct bal_chunk_keys *k)
{
	uint8_t want[MAC_LEN], got[MAC_LEN];
	json_t *o, *mac, *enc;
	int ret = -EBADMSG;

	if (!json || !k)
		return -EINVAL;
	o = json_loadb(json, len, LOAD_FLAGS, NULL);
	if (!o)
		return -EBADMSG;
	mac = json_object_get(o, "mac");
	enc = json_object_get(o, "encrypted");
	if (!json_is_object(o) || !json_is_string(mac) ||
	    json_string_length(mac) != 2 * MAC_LEN ||
	    !hex_decode(json_string_value(mac), MAC_LEN, want) || !json_is_boolean(enc) ||
	    json_is_true(enc) != bal_chunk_keys_sealed(k))
		goto out_decref;
	json_object_del(o, "mac");
	ret = mac_of(o, k, got);
	if (ret < 0)
		goto out_decref;
	ret = bal_mac_equal(want, got, MAC_LEN) ? 0 : -EBADMSG;
out_decref:
	json_decref(o);
	return ret;
}
