/* SPDX-License-Identifier: MIT */
/*
 * Shared between the files of crypto/ and its unit test only: the layouts
 * of the key objects and the helpers that read and parse secret files.
 */
#ifndef BAL_CRYPTO_INTERNAL_H
#define BAL_CRYPTO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

/* Immutable after creation; raw points into bal_secmem memory. */
struct bal_xts_key {
	uint8_t *raw; /* BAL_XTS_KEY_LEN bytes */
};

struct bal_mk {
	uint8_t *raw; /* BAL_MK_LEN bytes */
};

struct bal_ck {
	uint8_t *raw; /* len bytes */
	size_t len;
};

/*
 * Read a secret file (@what names it in messages): refuse anything but a
 * regular file, and a mode with any group or other bit set.  Reads at most
 * @cap bytes into @buf (bal_secmem memory); a longer file is -EINVAL.
 */
int bal_crypto_read_secret_file(const char *path, const char *what, uint8_t *buf, size_t cap,
				size_t *len);

/*
 * Decode a key given either as exactly @raw_len raw bytes or as exactly
 * 2 * @raw_len hex digits plus an optional '\n' (or "\r\n").  Writes
 * @raw_len bytes to @out.  Returns 0, or -EINVAL.
 */
int bal_crypto_decode_key(const uint8_t *buf, size_t len, size_t raw_len, uint8_t *out);

/* true if the two halves of an XTS key are equal (constant time). */
bool bal_crypto_xts_halves_equal(const uint8_t raw[BAL_XTS_KEY_LEN]);

#endif
