/* SPDX-License-Identifier: MIT */
/*
 * Secure memory for key material, randomness, and the reading and parsing
 * of secret files (master and customer key files).
 *
 * Each secure allocation gets its own pages from mmap: mlock works on whole
 * pages and does not nest, so two secrets sharing a page would unlock each
 * other on free.  Keys are few (one per volume plus the master key), so a
 * page each is cheap.  We do not use OpenSSL's secure heap: it needs a
 * process-wide size fixed at start-up (CRYPTO_secure_malloc_init) and fails
 * once full; per-secret pages need no set-up and never run out early.
 *
 * Safe from any thread.
 */
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/log.h"

/* In front of every secure allocation: the mapping's size. */
struct secmem_hdr {
	size_t map_len;
	size_t pad; /* keeps the user area 16-byte aligned */
};

static atomic_bool mlock_warned;

void *bal_secmem_alloc(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct secmem_hdr *h;
	size_t map_len;

	if (len == 0 || __builtin_add_overflow(len, sizeof(*h) + page - 1, &map_len))
		return NULL;
	map_len -= map_len % page;
	h = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED)
		return NULL;
	if (mlock(h, map_len) != 0 && !atomic_exchange(&mlock_warned, true))
		bal_warn("crypto: cannot mlock key memory (%s); keys may be swapped out",
			 strerror(errno));
	/* Best effort: keep keys out of core dumps and forked children. */
	(void)madvise(h, map_len, MADV_DONTDUMP);
	(void)madvise(h, map_len, MADV_WIPEONFORK);
	h->map_len = map_len;
	return h + 1;
}

void bal_secmem_free(void *p)
{
	struct secmem_hdr *h;

	if (!p)
		return;
	h = (struct secmem_hdr *)p - 1;
	OPENSSL_cleanse(p, h->map_len - sizeof(*h));
	(void)munlock(h, h->map_len);
	munmap(h, h->map_len);
}

int bal_crypto_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	/* RAND_priv_bytes takes an int length. */
	while (len > 0) {
		int n = len > (1u << 20) ? 1 << 20 : (int)len;

		if (RAND_priv_bytes(p, n) != 1) {
			bal_err("crypto: the random generator failed");
			return -EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool bal_crypto_xts_halves_equal(const uint8_t raw[BAL_XTS_KEY_LEN])
{
	return CRYPTO_memcmp(raw, raw + BAL_XTS_KEY_LEN / 2, BAL_XTS_KEY_LEN / 2) == 0;
}

int bal_crypto_read_secret_file(const char *path, const char *what, uint8_t *buf, size_t cap,
				size_t *len)
{
	size_t got = 0;
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		bal_err("%s %s: cannot open: %s", what, path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		bal_err("%s %s: cannot stat: %s", what, path, strerror(errno));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode)) {
		bal_err("%s %s: not a regular file", what, path);
		ret = -EINVAL;
		goto err_close;
	}
	if (st.st_mode & 077) {
		bal_err("%s %s: mode %04o gives group or others access; refusing it (chmod 600 %s)",
			what, path, (unsigned)(st.st_mode & 07777), path);
		ret = -EACCES;
		goto err_close;
	}
	for (;;) {
		/* One byte past @cap tells a too-long file from a full one. */
		uint8_t extra;
		ssize_t n = got < cap ? read(fd, buf + got, cap - got) : read(fd, &extra, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			bal_err("%s %s: read failed: %s", what, path, strerror(errno));
			goto err_wipe;
		}
		if (n == 0)
			break;
		if (got == cap) {
			OPENSSL_cleanse(&extra, sizeof(extra));
			bal_err("%s %s: longer than any accepted key format", what, path);
			ret = -EINVAL;
			goto err_wipe;
		}
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return 0;

err_wipe:
	OPENSSL_cleanse(buf, cap);
err_close:
	close(fd);
	return ret;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bal_crypto_decode_key(const uint8_t *buf, size_t len, size_t raw_len, uint8_t *out)
{
	size_t hex_len = 2 * raw_len;

	if (len == raw_len) {
		memcpy(out, buf, raw_len);
		return 0;
	}
	/* Hex, with one optional line end. */
	if (len == hex_len + 1 && buf[hex_len] == '\n')
		len--;
	else if (len == hex_len + 2 && buf[hex_len] == '\r' && buf[hex_len + 1] == '\n')
		len -= 2;
	if (len != hex_len)
		return -EINVAL;
	for (size_t i = 0; i < raw_len; i++) {
		int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			OPENSSL_cleanse(out, raw_len);
			return -EINVAL;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
