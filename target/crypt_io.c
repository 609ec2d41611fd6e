/* SPDX-License-Identifier: MIT */
/*
 * Encrypted volumes on the NBD data path.  The pool holds AES-256-XTS
 * ciphertext in 4 KiB units (tweak = logical unit number); a unit that is
 * all zero bytes in the pool was never written (a fresh or punched cluster)
 * and reads as zeroes, so holes and zeroed ranges need no encryption.
 *
 * Each connection owns one cipher context (it lives on one worker thread),
 * so encryption runs on every worker in parallel.  Aligned requests are
 * encrypted or decrypted in place in the request buffer (large ones by the
 * cipher pool, cipher_pool.c, through cio_crypt); a write or zero
 * that covers part of a 4 KiB unit reads that unit, merges and rewrites it
 * (blocking pread/pwrite on the worker: the rare unaligned case).
 * Worker thread only, except cio_crypt (any thread, with its own context).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "target/nbd_internal.h"
#include "volume/volume.h"

#define UNIT ((uint64_t)CIO_UNIT)

int cio_open(struct conn *c)
{
	const struct bal_xts_key *key = bal_vol_xts_key(c->vol);

	if (!key)
		return 0;
	c->xkey = key;
	return bal_xts_ctx_create(key, &c->xts);
}

void cio_close(struct conn *c)
{
	bal_xts_ctx_destroy(c->xts);
	c->xts = NULL;
	c->xkey = NULL;
}

static bool unit_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < CIO_UNIT / 8; i++)
		if (q[i])
			return false;
	return true;
}

int cio_crypt(struct bal_xts_ctx *xts, bool encrypt, uint64_t off, uint8_t *buf, size_t len)
{
	size_t pos = 0, run;

	if (encrypt)
		return bal_xts_encrypt(xts, off / UNIT, buf, buf, len);
	while (pos < len) {
		int ret;

		if (unit_is_zero(buf + pos)) {
			pos += CIO_UNIT;	/* never written: reads as zeroes */
			continue;
		}
		/* One call for a run of written units. */
		for (run = CIO_UNIT; pos + run < len && !unit_is_zero(buf + pos + run); run += CIO_UNIT)
			;
		ret = bal_xts_decrypt(xts, (off + pos) / UNIT, buf + pos, buf + pos, run);
		if (ret < 0)
			return ret;
		pos += run;
	}
	return 0;
}

int cio_decrypt(struct conn *c, uint64_t off, uint8_t *buf, size_t len)
{
	return cio_crypt(c->xts, false, off, buf, len);
}

int cio_encrypt(struct conn *c, uint64_t off, uint8_t *buf, size_t len)
{
	return cio_crypt(c->xts, true, off, buf, len);
}

/* Read and decrypt the unit at @uoff (unit-aligned) into @buf. */
static int read_unit(struct conn *c, uint64_t uoff, uint8_t *buf, bool *mapped)
{
	int fd = bal_vstore_pool_fd(srv_store(c->srv));
	struct bal_seg seg[2];
	size_t n = 0;
	ssize_t got;
	int ret;

	ret = bal_vol_map_read(c->vol, uoff, CIO_UNIT, seg, 2, &n);
	if (ret < 0)
		return ret;
	if (n == 1 && seg[0].phys == BAL_SEG_REMOTE)
		return -EREMOTE;	/* not made local: the tier failed */
	*mapped = n == 1 && seg[0].phys != BAL_SEG_HOLE;
	if (!*mapped) {
		memset(buf, 0, CIO_UNIT);
		return 0;
	}
	got = pread(fd, buf, CIO_UNIT, (off_t)seg[0].phys);
	if (got < 0)
		return -errno;
	memset(buf + got, 0, CIO_UNIT - (size_t)got);
	return cio_decrypt(c, uoff, buf, CIO_UNIT);
}

/* Encrypt @buf (the plaintext of the unit at @uoff) and write it through the map. */
static int write_unit(struct conn *c, uint64_t uoff, uint8_t *buf)
{
	int fd = bal_vstore_pool_fd(srv_store(c->srv));
	struct bal_seg seg[2];
	size_t n = 0;
	int ret;

	ret = cio_encrypt(c, uoff, buf, CIO_UNIT);
	if (ret < 0)
		return ret;
	ret = bal_vol_map_write(c->vol, uoff, CIO_UNIT, seg, 2, &n);
	if (ret < 0)
		return ret;
	if (pwrite(fd, buf, CIO_UNIT, (off_t)seg[0].phys) != (ssize_t)CIO_UNIT)
		return -EIO;
	return 0;
}

int cio_align_write(struct conn *c, uint64_t off, uint32_t len, const uint8_t *data,
		    uint8_t **out, uint64_t *aoff, uint32_t *alen)
{
	uint64_t a0 = off & ~(UNIT - 1), a1 = (off + len + UNIT - 1) & ~(UNIT - 1);
	uint8_t *buf;
	bool mapped;
	int ret = 0;

	if (a1 - a0 > UINT32_MAX)
		return -EINVAL;
	buf = buf_alloc(a1 - a0);
	if (!buf)
		return -ENOMEM;
	if (off != a0)
		ret = read_unit(c, a0, buf, &mapped);
	if (!ret && (off + len) != a1 && (a1 - UNIT != a0 || off == a0))
		ret = read_unit(c, a1 - UNIT, buf + (a1 - UNIT - a0), &mapped);
	if (!ret) {
		memcpy(buf + (off - a0), data, len);
		ret = cio_encrypt(c, a0, buf, a1 - a0);
	}
	if (ret < 0) {
		free(buf);
		return ret;
	}
	*out = buf;
	*aoff = a0;
	*alen = (uint32_t)(a1 - a0);
	return 0;
}

/* Zero [lo, hi) inside the unit at @uoff, if that unit holds data. */
static int zero_in_unit(struct conn *c, uint64_t uoff, uint64_t lo, uint64_t hi)
{
	uint8_t *buf = buf_alloc(CIO_UNIT);
	bool mapped;
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = read_unit(c, uoff, buf, &mapped);
	if (!ret && mapped) {
		memset(buf + (lo - uoff), 0, hi - lo);
		ret = write_unit(c, uoff, buf);
	}
	free(buf);
	return ret;
}

int cio_zero_edges(struct conn *c, uint64_t off, uint64_t len, uint64_t *moff, uint64_t *mlen)
{
	uint64_t end = off + len;
	uint64_t m0 = (off + UNIT - 1) & ~(UNIT - 1), m1 = end & ~(UNIT - 1);
	int ret = 0;

	if (m0 >= m1) {
		/* Inside one unit, or across one boundary with no whole unit. */
		uint64_t u0 = off & ~(UNIT - 1);

		ret = zero_in_unit(c, u0, off, end < u0 + UNIT ? end : u0 + UNIT);
		if (!ret && end > u0 + UNIT)
			ret = zero_in_unit(c, u0 + UNIT, u0 + UNIT, end);
		*moff = *mlen = 0;
		return ret;
	}
	if (off < m0)
		ret = zero_in_unit(c, m0 - UNIT, off, m0);
	if (!ret && end > m1)
		ret = zero_in_unit(c, m1, m1, end);
	*moff = m0;
	*mlen = m1 - m0;
	return ret;
}
