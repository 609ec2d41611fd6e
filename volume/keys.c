/* SPDX-License-Identifier: MIT */
/*
 * Volume data keys.  Volumes are not encrypted yet: every handle has no key.
 */
#include "volume/volume_internal.h"

const struct bal_xts_key *bal_vol_xts_key(const struct bal_volume *vol)
{
	(void)vol;
	return NULL;
}
