/* SPDX-License-Identifier: MIT */
/*
 * Control methods of the volume group: volume.create, volume.list,
 * volume.show, volume.resize, volume.delete (volume.clone and
 * volume.flatten live with the snapshot methods in control_snapshot.c,
 * volume.unlock and volume.lock with the key methods in control_keys.c).
 * Each validates its parameters, calls the volume store and turns its
 * -errno into a one-line message that tells the operator what to do.
 * volume.create takes the encryption choice and, for a customer key, the
 * path of a key file the daemon reads itself.  volume.show adds the
 * hydration state of a volume restored from the object tier, and
 * volume.delete stops its hydration first.  Runs on the control thread.
 */
#include "target/control_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "snapshot/tier.h"
#include "volume/volume.h"

/* Encrypted volumes are sized in whole XTS data units. */
#define ENC_ALIGN 4096u

/* "1G", "512M", or bytes when no unit divides the size exactly. */
static void size_short(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	int u = -1;

	while (v && v % 1024 == 0 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
}

static const char *enc_name(enum bal_enc enc)
{
	return enc == BAL_ENC_SERVICE ? "service" : enc == BAL_ENC_CUSTOMER ? "customer" : "none";
}

json_t *bal_ctl_volume_json(const struct bal_vol_info *vi)
{
	bool encrypted = vi->enc == BAL_ENC_SERVICE || vi->enc == BAL_ENC_CUSTOMER;
	char created[32];

	bal_format_time(vi->created_at, created, sizeof(created));
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:s?, s:b, s:s, s:b, s:s?, s:I}",
			 "name", vi->name, "id", (json_int_t)vi->id, "size", (json_int_t)vi->size,
			 "allocated", (json_int_t)vi->allocated, "exclusive",
			 (json_int_t)vi->exclusive, "shared", (json_int_t)vi->shared, "created_at",
			 created, "connections", (json_int_t)vi->connections, "snapshots",
			 (json_int_t)vi->snapshots, "parent", vi->parent[0] ? vi->parent : NULL,
			 "encrypted", encrypted, "key", enc_name(vi->enc), "locked", vi->locked,
			 "lock_reason", vi->locked ? vi->lock_reason : NULL, "index_bytes",
			 (json_int_t)vi->index_bytes);
}

/* The size of a volume: positive, a multiple of 512, at most 1 EiB. */
static int param_volume_size(struct bal_ctl_call *call, uint64_t *out)
{
	if (bal_ctl_param_size(call, "size", out) < 0)
		return -1;
	if (*out % BAL_VOL_ALIGN) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid size %" PRIu64 ": not a multiple of %u bytes", *out,
			     BAL_VOL_ALIGN);
		return -1;
	}
	if (*out > BAL_VOL_SIZE_MAX) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid size %" PRIu64 ": larger than the maximum of 1 EiB", *out);
		return -1;
	}
	return 0;
}

/* Messages every method shares; @what names the action for the rest. */
static void fail_volume(struct bal_ctl_call *call, int err, const char *name, const char *what)
{
	if (err == -ENOENT)
		bal_ctl_fail_errno(call, err, "volume '%s' not found", name);
	else if (bal_ctl_fail_key(call, err, name))
		return;
	else if (err == -EEXIST)
		bal_ctl_fail_errno(call, err, "volume '%s' already exists", name);
	else
		bal_ctl_fail_errno(call, err, "cannot %s volume '%s': %s", what, name,
				   strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
}

/* Reply with the volume as it is now. */
static void reply_info(struct bal_ctl_call *call, const char *name, const char *what)
{
	struct bal_vol_info vi;
	int r = bal_vstore_info(call->store, name, &vi);

	if (r < 0)
		fail_volume(call, r, name, what);
	else
		call->result = bal_ctl_volume_json(&vi);
}

/*
 * The encryption of a new volume: "encrypt" absent is the daemon's default,
 * "customer_key_file" (an absolute path) asks for a customer key and
 * implies encryption.  0, or -1 after failing the call.
 */
static int param_encryption(struct bal_ctl_call *call, enum bal_enc *enc, const char **ckfile)
{
	json_t *e = json_object_get(call->params, "encrypt");
	bool on = false;

	*ckfile = NULL;
	if (bal_ctl_param_bool(call, "encrypt", false, &on) < 0)
		return -1;
	if (json_object_get(call->params, "customer_key_file")) {
		if (bal_ctl_param_path(call, "customer_key_file", ckfile) < 0)
			return -1;
		if (e && !on) {
			bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
				     "a customer key needs encryption: 'encrypt' is false");
			return -1;
		}
		*enc = BAL_ENC_CUSTOMER;
	} else {
		*enc = !e ? BAL_ENC_DEFAULT : on ? BAL_ENC_SERVICE : BAL_ENC_NONE;
	}
	return 0;
}

static void volume_create(struct bal_ctl_call *call)
{
	struct bal_vol_create_opts o = { .opts_size = sizeof(o) };
	struct bal_ck *ck = NULL;
	const char *name, *ckfile;
	uint64_t size;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0 || param_volume_size(call, &size) < 0 ||
	    param_encryption(call, &o.enc, &ckfile) < 0)
		return;
	if (o.enc != BAL_ENC_NONE && o.enc != BAL_ENC_DEFAULT && size % ENC_ALIGN) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid size %" PRIu64 " for an encrypted volume: not a multiple of %u bytes",
			     size, ENC_ALIGN);
		return;
	}
	if (ckfile && bal_ctl_load_customer_key(call, ckfile, &ck) < 0)
		return;
	o.name = name;
	o.size = size;
	o.customer_key = ck;
	r = bal_vstore_create_opts(call->store, &o);
	bal_ck_destroy(ck);
	if (r == -EINVAL && size % ENC_ALIGN)
		/* Encrypted by the daemon's default: same rule. */
		bal_ctl_fail_errno(call, r,
				   "invalid size %" PRIu64 " for an encrypted volume: not a multiple of %u bytes",
				   size, ENC_ALIGN);
	else if (r == -ENOKEY)
		bal_ctl_fail_errno(call, r,
				   "cannot create encrypted volume '%s': no master key: start ballastd with --master-key-file or --key-provider",
				   name);
	else if (r < 0)
		fail_volume(call, r, name, "create");
	else
		reply_info(call, name, "create");
}

static void volume_list(struct bal_ctl_call *call)
{
	struct bal_vol_info *vi = NULL;
	json_t *arr;
	size_t n = 0;
	int r;

	r = bal_vstore_list(call->store, &vi, &n);
	if (r < 0) {
		bal_ctl_fail_errno(call, r, "cannot list volumes: %s", strerrordesc_np(-r));
		return;
	}
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		if (json_array_append_new(arr, bal_ctl_volume_json(&vi[i])) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	free(vi);
	if (arr)
		call->result = json_pack("{s:o}", "volumes", arr);
}

static void volume_show(struct bal_ctl_call *call)
{
	struct bal_vol_info vi;
	const char *name;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0)
		return;
	r = bal_vstore_info(call->store, name, &vi);
	if (r < 0)
		fail_volume(call, r, name, "show");
	else
		call->result = bal_ctl_add_tier_state(call->state, &vi, bal_ctl_volume_json(&vi));
}

static void volume_resize(struct bal_ctl_call *call)
{
	struct bal_vol_info vi;
	const char *name;
	uint64_t size;
	bool force;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0 || param_volume_size(call, &size) < 0 ||
	    bal_ctl_param_bool(call, "force", false, &force) < 0)
		return;
	r = bal_vstore_resize(call->store, name, size, force);
	if (r == -EPERM && bal_vstore_info(call->store, name, &vi) == 0) {
		char from[32], to[32];

		size_short(vi.size, from, sizeof(from));
		size_short(size, to, sizeof(to));
		bal_ctl_fail_errno(call, r,
				   "shrinking volume '%s' from %s to %s discards data (use --force)",
				   name, from, to);
	} else if (r < 0) {
		fail_volume(call, r, name, "resize");
	} else {
		reply_info(call, name, "resize");
	}
}

/*
 * Why a delete was refused with -EBUSY: connections (without @force), or,
 * with @recursive, a snapshot of the volume that has clones.
 */
static void fail_delete_busy(struct bal_ctl_call *call, int err, const char *name,
			     const struct bal_vol_info *vi, bool force)
{
	struct bal_snap_info *si = NULL;
	size_t n = 0;

	if (!force && vi->connections) {
		bal_ctl_fail_errno(call, err, "volume '%s' is in use by %u connection%s (use --force)",
				   name, vi->connections, vi->connections == 1 ? "" : "s");
		return;
	}
	if (bal_vstore_snap_list(call->store, name, &si, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (!si[i].clones)
				continue;
			bal_ctl_fail_errno(call, err,
					   "snapshot '%s@%s' has %u clone(s): flatten or delete them first",
					   name, si[i].name, si[i].clones);
			free(si);
			return;
		}
		free(si);
	}
	fail_volume(call, err, name, "delete");
}

static void volume_delete(struct bal_ctl_call *call)
{
	struct bal_vol_info vi;
	const char *name;
	bool force, recursive;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0 ||
	    bal_ctl_param_bool(call, "force", false, &force) < 0 ||
	    bal_ctl_param_bool(call, "recursive", false, &recursive) < 0)
		return;
	/* The reply describes the volume as it was just before. */
	r = bal_vstore_info(call->store, name, &vi);
	if (r == 0)
		r = bal_vstore_delete(call->store, name, force, recursive);
	/* A restored volume stops hydrating; its restore records go. */
	if (r == 0 && call->state->tier)
		bal_tier_forget(call->state->tier, name, vi.id);
	if (r == -EBUSY && bal_vstore_info(call->store, name, &vi) == 0) {
		fail_delete_busy(call, r, name, &vi, force);
	} else if (r == -ENOTEMPTY && bal_vstore_info(call->store, name, &vi) == 0) {
		bal_ctl_fail_errno(call, r, "volume '%s' has %u snapshot%s (use --recursive)", name,
				   vi.snapshots, vi.snapshots == 1 ? "" : "s");
	} else if (r < 0) {
		fail_volume(call, r, name, "delete");
	} else {
		call->result = bal_ctl_volume_json(&vi);
	}
}

static const char *const p_none[] = { NULL };
static const char *const p_name[] = { "name", NULL };
static const char *const p_create[] = { "name", "size", "encrypt", "customer_key_file", NULL };
static const char *const p_name_size_force[] = { "name", "size", "force", NULL };
static const char *const p_delete[] = { "name", "force", "recursive", NULL };

const struct bal_ctl_method bal_ctl_volume_methods[] = {
	{ "volume.create", p_create, true, volume_create },
	{ "volume.list", p_none, false, volume_list },
	{ "volume.show", p_name, false, volume_show },
	{ "volume.resize", p_name_size_force, true, volume_resize },
	{ "volume.delete", p_delete, true, volume_delete },
	{ NULL, NULL, false, NULL },
};
