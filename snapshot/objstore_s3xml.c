/* SPDX-License-Identifier: MIT */
/*
 * Pure string helpers of the s3:// backend, kept apart from the curl code:
 * SigV4 URI encoding and the small XML reader for ListObjectsV2 pages and
 * S3 error bodies (elements found by name; S3 never puts '<' in text, so a
 * tag is never found inside a value; entities decoded, numeric ones to
 * UTF-8).  No state; any thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/objstore_internal.h"

/* SigV4 URI encoding of @s; '/' kept when @keep_slash.  malloc'ed. */
char *bal_objstore_uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(3 * strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && keep_slash)) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = 0;
	return out;
}

const char *bal_objstore_find(const char *p, const char *end, const char *s)
{
	size_t n = strlen(s);

	for (; p + n <= end; p++) {
		p = memchr(p, s[0], (size_t)(end - p));
		if (!p || p + n > end)
			return NULL;
		if (!memcmp(p, s, n))
			return p;
	}
	return NULL;
}

/* Decode the entities of XML text [p, end) into a malloc'ed string. */
static char *xml_decode(const char *p, const char *end)
{
	char *out = malloc((size_t)(end - p) + 1), *o = out;

	if (!out)
		return NULL;
	while (p < end) {
		const char *semi = *p == '&' ? memchr(p, ';', (size_t)(end - p)) : NULL;
		size_t n = semi ? (size_t)(semi - p - 1) : 0;
		unsigned long cp;

		if (!semi) {
			*o++ = *p++;
			continue;
		}
		if (n == 3 && !memcmp(p + 1, "amp", 3)) {
			*o++ = '&';
		} else if (n == 2 && !memcmp(p + 1, "lt", 2)) {
			*o++ = '<';
		} else if (n == 2 && !memcmp(p + 1, "gt", 2)) {
			*o++ = '>';
		} else if (n == 4 && !memcmp(p + 1, "quot", 4)) {
			*o++ = '"';
		} else if (n == 4 && !memcmp(p + 1, "apos", 4)) {
			*o++ = '\'';
		} else if (n >= 2 && n < 10 && p[1] == '#') {
			char num[12];

			memcpy(num, p + 2, n - 1);
			num[n - 1] = 0;
			cp = num[0] == 'x' ? strtoul(num + 1, NULL, 16) : strtoul(num, NULL, 10);
			/* UTF-8; the output is never longer than "&#...;". */
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xc0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xe0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else {
				*o++ = (char)(0xf0 | ((cp >> 18) & 0x07));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			}
		} else {
			*o++ = *p++;	/* not an entity we know: keep it */
			continue;
		}
		p = semi + 1;
	}
	*o = 0;
	return out;
}

/* The decoded text of the first <tag>..</tag> (or <tag/>) in [p, end). */
char *bal_objstore_xml_text(const char *p, const char *end, const char *tag)
{
	char open[48], close[48], empty[48];
	const char *a, *b;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	snprintf(empty, sizeof(empty), "<%s/>", tag);
	a = bal_objstore_find(p, end, open);
	if (!a) {
		b = bal_objstore_find(p, end, empty);
		return b ? strdup("") : NULL;
	}
	a += strlen(open);
	b = bal_objstore_find(a, end, close);
	return b ? xml_decode(a, b) : NULL;
}

static int item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bal_objstore_item *)a)->key, ((const struct bal_objstore_item *)b)->key);
}

/* Parse one page into @items (keys relative to the store, sorted). */
int bal_objstore_parse_list(const char *prefix, const char *p, const char *end,
			    struct bal_objstore_item **items, size_t *n, bool *truncated,
			    char **token)
{
	size_t cap = 0, plen = strlen(prefix);

	*n = 0;
	*items = NULL;
	if (!bal_objstore_find(p, end, "</ListBucketResult>"))
		return -EIO;	/* not a listing, or a cut one */
	while ((p = memchr(p, '<', (size_t)(end - p)))) {
		bool contents = !strncmp(p, "<Contents>", 10);
		const char *blk_end;
		char *k = NULL, *sz = NULL, *v;

		if (contents || !strncmp(p, "<CommonPrefixes>", 16)) {
			blk_end = bal_objstore_find(p, end, contents ? "</Contents>" : "</CommonPrefixes>");
			if (!blk_end)
				return -EIO;
			k = bal_objstore_xml_text(p, blk_end, contents ? "Key" : "Prefix");
			sz = contents ? bal_objstore_xml_text(p, blk_end, "Size") : NULL;
			if (!k || (contents && !sz)) {
				free(k);
				free(sz);
				return -EIO;
			}
			if (strncmp(k, prefix, plen) || !k[plen]) {
				free(k);	/* outside the store: ignore */
			} else {
				if (*n == cap) {
					struct bal_objstore_item *ni = realloc(*items, (cap = cap ? 2 * cap : 64) *
									  sizeof(**items));

					if (!ni) {
						free(k);
						free(sz);
						return -ENOMEM;
					}
					*items = ni;
				}
				memmove(k, k + plen, strlen(k + plen) + 1);
				(*items)[*n] = (struct bal_objstore_item){ .key = k, .is_prefix = !contents,
							      .size = sz ? strtoull(sz, NULL, 10) : 0 };
				(*n)++;
			}
			free(sz);
			p = blk_end;
		} else if (!strncmp(p, "<IsTruncated>", 13)) {
			v = bal_objstore_xml_text(p, end, "IsTruncated");
			*truncated = v && !strcmp(v, "true");
			free(v);
			p++;
		} else if (!strncmp(p, "<NextContinuationToken>", 23)) {
			free(*token);
			*token = bal_objstore_xml_text(p, end, "NextContinuationToken");
			p++;
		} else {
			p++;
		}
	}
	if (*n)
		qsort(*items, *n, sizeof(**items), item_cmp);
	return 0;
}

