/* SPDX-License-Identifier: MIT */
/* Encrypted volumes on the NBD data path (placeholder until crypto/ lands). */
#include <errno.h>

#include "target/nbd_internal.h"
#include "volume/volume.h"

int cio_open(struct conn *c)
{
	return bal_vol_xts_key(c->vol) ? -ENOTSUP : 0;
}

void cio_close(struct conn *c)
{
	c->xts = NULL;
}

int cio_decrypt(struct conn *c, uint64_t off, uint8_t *buf, size_t len)
{
	(void)c; (void)off; (void)buf; (void)len;
	return -ENOTSUP;
}

int cio_encrypt(struct conn *c, uint64_t off, uint8_t *buf, size_t len)
{
	(void)c; (void)off; (void)buf; (void)len;
	return -ENOTSUP;
}

int cio_align_write(struct conn *c, uint64_t off, uint32_t len, const uint8_t *data,
		    uint8_t **out, uint64_t *aoff, uint32_t *alen)
{
	(void)c; (void)off; (void)len; (void)data; (void)out; (void)aoff; (void)alen;
	return -ENOTSUP;
}

int cio_zero_edges(struct conn *c, uint64_t off, uint64_t len, uint64_t *moff, uint64_t *mlen)
{
	(void)c; (void)off; (void)len; (void)moff; (void)mlen;
	return -ENOTSUP;
}

void cio_trim_range(uint64_t off, uint64_t len, uint64_t *moff, uint64_t *mlen)
{
	*moff = off;
	*mlen = len;
}
