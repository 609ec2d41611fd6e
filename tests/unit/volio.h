/* SPDX-License-Identifier: MIT */
/*
 * Byte I/O on a volume for the unit tests: map a range with the volume
 * API, then pread/pwrite the pool segments, as the NBD target does with
 * io_uring.  Holes read as zeroes.  Needs check.h and volume.h.
 */
#ifndef BAL_TEST_VOLIO_H
#define BAL_TEST_VOLIO_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "volume/volume.h"

static inline void vwrite(struct bal_vstore *st, struct bal_volume *v, uint64_t off, uint32_t len,
		   const uint8_t *buf)
{
	size_t nsegs = bal_vol_max_segs(len), n = 0;
	struct bal_seg *s = calloc(nsegs, sizeof(*s));

	CHECK(s);
	CHECK_EQ(bal_vol_map_write(v, off, len, s, nsegs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		CHECK(s[i].phys != BAL_SEG_HOLE);
		CHECK_EQ(pwrite(bal_vstore_pool_fd(st), buf, s[i].len, (off_t)s[i].phys), s[i].len);
		buf += s[i].len;
	}
	free(s);
}

static inline void vread(struct bal_vstore *st, struct bal_volume *v, uint64_t off, uint32_t len,
		  uint8_t *buf)
{
	size_t nsegs = bal_vol_max_segs(len), n = 0;
	struct bal_seg *s = calloc(nsegs, sizeof(*s));

	CHECK(s);
	CHECK_EQ(bal_vol_map_read(v, off, len, s, nsegs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (s[i].phys == BAL_SEG_HOLE)
			memset(buf, 0, s[i].len);
		else
			CHECK_EQ(pread(bal_vstore_pool_fd(st), buf, s[i].len, (off_t)s[i].phys),
				 s[i].len);
		buf += s[i].len;
	}
	free(s);
}

#endif
