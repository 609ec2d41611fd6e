/* SPDX-License-Identifier: MIT */
/*
 * Control methods for keys: volume.unlock and volume.lock (customer-key
 * volumes) and key.rotate (the master key), plus the helpers the volume
 * group shares for key files and key errors.
 *
 * Key bytes never cross the control socket: a request names a key file (an
 * absolute path) or a key-provider command, and the daemon reads the key
 * itself through crypto/.  Nothing here logs or echoes key material, and
 * the provider command is kept out of messages and of the log too (it may
 * carry a secret of its own, such as a KMS token).  A rotated-in master key
 * is kept in the control state because the store borrows it.  Runs on the
 * control thread; a key provider blocks it for at most
 * BAL_MK_PROVIDER_TIMEOUT_MS.
 */
#include "target/control_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "volume/volume.h"

#define NO_MASTER_MSG "no master key: start ballastd with --master-key-file or --key-provider"

static const char *errdesc(int err)
{
	const char *d = strerrordesc_np(-err);

	return d ? d : "unknown error";
}

void bal_ctl_state_fini(struct bal_ctl_state *state)
{
	bal_mk_destroy(state->master);
	state->master = NULL;
}

/* Why a key file was refused, from the loader's -errno (never its bytes). */
static void fail_key_file(struct bal_ctl_call *call, int err, const char *what, const char *path,
			  const char *form)
{
	if (err == -EACCES)
		bal_ctl_fail_errno(call, err,
				   "%s file %.300s: readable by group or others, or not readable (chmod 600 it)",
				   what, path);
	else if (err == -EINVAL)
		bal_ctl_fail_errno(call, err, "%s file %.300s: %s", what, path, form);
	else
		bal_ctl_fail_errno(call, err, "%s file %.300s: %s", what, path, errdesc(err));
}

int bal_ctl_load_customer_key(struct bal_ctl_call *call, const char *path, struct bal_ck **out)
{
	int r = bal_ck_load_file(path, out);

	if (r < 0) {
		fail_key_file(call, r, "customer key", path,
			      "must be a regular file of exactly 32 or 64 bytes");
		return -1;
	}
	return 0;
}

bool bal_ctl_fail_key(struct bal_ctl_call *call, int err, const char *name)
{
	struct bal_vol_info vi;

	if (err == -EKEYREJECTED) {
		bal_ctl_fail_errno(call, err, "volume '%s': wrong customer key", name);
		return true;
	}
	if (err != -ENOKEY)
		return false;
	if (name && bal_vstore_info(call->store, name, &vi) == 0 && vi.locked)
		bal_ctl_fail_errno(call, err, "volume '%s' is locked: %s", name,
				   vi.lock_reason[0] ? vi.lock_reason : "its key is not available");
	else
		bal_ctl_fail_errno(call, err, NO_MASTER_MSG);
	return true;
}

/* The messages unlock and lock share. */
static void fail_lock(struct bal_ctl_call *call, int err, const char *name, const char *what)
{
	struct bal_vol_info vi;

	if (err == -ENOENT) {
		bal_ctl_fail_errno(call, err, "volume '%s' not found", name);
	} else if (err == -EINVAL && bal_vstore_info(call->store, name, &vi) == 0 &&
		   vi.enc != BAL_ENC_CUSTOMER) {
		bal_ctl_fail_errno(call, err, "volume '%s' does not use a customer key: nothing to %s",
				   name, what);
	} else if (err == -EBUSY && bal_vstore_info(call->store, name, &vi) == 0) {
		bal_ctl_fail_errno(call, err,
				   "volume '%s' is in use by %u connection%s: disconnect them first",
				   name, vi.connections, vi.connections == 1 ? "" : "s");
	} else if (!bal_ctl_fail_key(call, err, name)) {
		bal_ctl_fail_errno(call, err, "cannot %s volume '%s': %s", what, name, errdesc(err));
	}
}

static void reply_volume(struct bal_ctl_call *call, const char *name, const char *what)
{
	struct bal_vol_info vi;
	int r = bal_vstore_info(call->store, name, &vi);

	if (r < 0)
		fail_lock(call, r, name, what);
	else
		call->result = bal_ctl_volume_json(&vi);
}

static void volume_unlock(struct bal_ctl_call *call)
{
	struct bal_ck *ck = NULL;
	const char *name, *path;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0 ||
	    bal_ctl_param_path(call, "key_file", &path) < 0)
		return;
	if (bal_ctl_load_customer_key(call, path, &ck) < 0)
		return;
	r = bal_vstore_unlock(call->store, name, ck);
	bal_ck_destroy(ck);
	if (r < 0)
		fail_lock(call, r, name, "unlock");
	else
		reply_volume(call, name, "unlock");
}

static void volume_lock(struct bal_ctl_call *call)
{
	const char *name;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0)
		return;
	r = bal_vstore_lock(call->store, name);
	if (r < 0)
		fail_lock(call, r, name, "lock");
	else
		reply_volume(call, name, "lock");
}

/* Service-encrypted volumes: the keys a rotation re-wraps. */
static size_t count_service(struct bal_ctl_call *call)
{
	struct bal_vol_info *vi = NULL;
	size_t n = 0, k = 0;

	if (bal_vstore_list(call->store, &vi, &n) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		k += vi[i].enc == BAL_ENC_SERVICE;
	free(vi);
	return k;
}

static void key_rotate(struct bal_ctl_call *call)
{
	json_t *file = json_object_get(call->params, "new_master_key_file");
	json_t *prov = json_object_get(call->params, "new_key_provider");
	struct bal_mk *mk = NULL;
	const char *path;
	int r;

	call->subject = "master key";
	if (!!file == !!prov) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "give exactly one of 'new_master_key_file' and 'new_key_provider'");
		return;
	}
	if (file) {
		if (bal_ctl_param_path(call, "new_master_key_file", &path) < 0)
			return;
		r = bal_mk_load_file(path, &mk);
		if (r < 0) {
			fail_key_file(call, r, "new master key", path,
				      "must hold exactly 32 raw bytes or 64 hex digits");
			return;
		}
	} else {
		if (!json_is_string(prov) || !json_string_value(prov)[0]) {
			bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
				     "parameter 'new_key_provider' must be a non-empty command");
			return;
		}
		r = bal_mk_run_provider(json_string_value(prov), 0, &mk);
		if (r < 0) {
			bal_ctl_fail_errno(call, r, "new key provider: %s",
					   r == -ETIMEDOUT ? "timed out" :
					   r == -EINVAL ? "did not print a 64-digit hex key" :
					   r == -EIO ? "failed (non-zero exit or killed by a signal)" :
					   r == -E2BIG ? "printed too much" : errdesc(r));
			return;
		}
	}
	r = bal_vstore_rotate_master(call->store, mk);
	if (r < 0) {
		bal_mk_destroy(mk);
		if (r == -ENOKEY)
			bal_ctl_fail_errno(call, r,
					   "cannot rotate: the current master key is missing or does not match this data directory (start ballastd with the current key)");
		else
			bal_ctl_fail_errno(call, r, "cannot rotate the master key: %s", errdesc(r));
		return;
	}
	/* The store now uses @mk only; the previous rotated-in key may go. */
	bal_mk_destroy(call->state->master);
	call->state->master = mk;
	call->result = json_pack("{s:b, s:I}", "rotated", 1, "volumes",
				 (json_int_t)count_service(call));
}

static const char *const p_unlock[] = { "name", "key_file", NULL };
static const char *const p_name[] = { "name", NULL };
static const char *const p_rotate[] = { "new_master_key_file", "new_key_provider", NULL };

const struct bal_ctl_method bal_ctl_key_methods[] = {
	{ "volume.unlock", p_unlock, true, volume_unlock },
	{ "volume.lock", p_name, true, volume_lock },
	{ "key.rotate", p_rotate, true, key_rotate },
	{ NULL, NULL, false, NULL },
};
