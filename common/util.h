/* SPDX-License-Identifier: MIT */
/*
 * Small helpers that belong to no module: size parsing and formatting,
 * volume-name validation, big-endian load/store, time stamps.
 * Pure functions; safe from any thread.
 */
#ifndef BAL_UTIL_H
#define BAL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_NAME_MAX 64

/*
 * Parse a size such as "1073741824", "512K", "10G", "2T" (suffixes K, M, G,
 * T, P are powers of 1024; an optional trailing "iB" or "B" is accepted).
 * Returns 0 and sets *out, or -EINVAL (syntax) or -ERANGE (overflow).
 */
int bal_parse_size(const char *s, uint64_t *out);

/*
 * Volume and snapshot names: 1..BAL_NAME_MAX characters from [A-Za-z0-9._-],
 * not starting with '.' or '-'.  The '@' and '/' separators and every other
 * byte are refused, so a name is always safe as an export name, a path
 * component and an object-store key part.
 */
bool bal_name_is_valid(const char *name);

/* Format @t (seconds since the epoch, UTC) as RFC 3339 into @buf (>= 21 bytes). */
void bal_format_time(int64_t t, char *buf, size_t len);

static inline void bal_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t bal_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline void bal_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t bal_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

static inline void bal_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint16_t bal_get_be16(const uint8_t *p)
{
	return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

/* Lowercase hex of @len bytes into @out (2 * @len + 1 bytes with the NUL). */
void bal_hex_encode(const void *in, size_t len, char *out);

/* @s is exactly @n lowercase hex digits. */
bool bal_is_lower_hex(const char *s, size_t n);

#endif
