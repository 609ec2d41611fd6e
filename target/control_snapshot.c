/* SPDX-License-Identifier: MIT */
/*
 * Control methods for snapshots and clones: snapshot.create, snapshot.list,
 * snapshot.show, snapshot.delete, snapshot.diff, volume.clone,
 * volume.flatten, and store.stats (the pool counters that show what
 * snapshots and clones cost).  Like the volume group, each method validates
 * its parameters, calls the volume store and turns its -errno into a
 * one-line message that tells the operator what to do; a snapshot is named
 * "VOL@SNAP" in every message.  Runs on the control thread.
 */
#include "target/control_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "volume/volume.h"

json_t *bal_ctl_snapshot_json(const struct bal_snap_info *si)
{
	char created[32];

	bal_format_time(si->created_at, created, sizeof(created));
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I}", "volume", si->volume,
			 "name", si->name, "id", (json_int_t)si->id, "epoch", (json_int_t)si->epoch,
			 "size", (json_int_t)si->size, "allocated", (json_int_t)si->allocated,
			 "exclusive", (json_int_t)si->exclusive, "created_at", created, "clones",
			 (json_int_t)si->clones);
}

static const char *errdesc(int err)
{
	const char *d = strerrordesc_np(-err);

	return d ? d : "unknown error";
}

/* The volume and snapshot names of a call; the subject becomes VOL@SNAP. */
static int param_snapshot(struct bal_ctl_call *call, const char *vkey, const char *skey,
			  const char **vol, const char **snap)
{
	if (bal_ctl_param_name(call, vkey, vol) < 0 || bal_ctl_param_name(call, skey, snap) < 0)
		return -1;
	snprintf(call->subject_buf, sizeof(call->subject_buf), "%s@%s", *vol, *snap);
	call->subject = call->subject_buf;
	return 0;
}

/* An optional name: NULL when absent or null. */
static int param_name_opt(struct bal_ctl_call *call, const char *key, const char **out)
{
	json_t *v = json_object_get(call->params, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	return bal_ctl_param_name(call, key, out);
}

/*
 * -ENOENT from a snapshot call: say which of the two is missing.  Other
 * errors get @what ("create", "delete", ...).
 */
static void fail_snapshot(struct bal_ctl_call *call, int err, const char *vol, const char *snap,
			  const char *what)
{
	struct bal_vol_info vi;

	if (err == -ENOENT && bal_vstore_info(call->store, vol, &vi) < 0)
		bal_ctl_fail_errno(call, err, "volume '%s' not found", vol);
	else if (err == -ENOENT)
		bal_ctl_fail_errno(call, err, "snapshot '%s@%s' not found", vol, snap);
	else if (err == -EEXIST)
		bal_ctl_fail_errno(call, err, "snapshot '%s@%s' already exists", vol, snap);
	else
		bal_ctl_fail_errno(call, err, "cannot %s snapshot '%s@%s': %s", what, vol, snap,
				   errdesc(err));
}

static void reply_volume(struct bal_ctl_call *call, const char *name, const char *what)
{
	struct bal_vol_info vi;
	int r = bal_vstore_info(call->store, name, &vi);

	if (r < 0)
		bal_ctl_fail_errno(call, r, "cannot %s volume '%s': %s", what, name, errdesc(r));
	else
		call->result = bal_ctl_volume_json(&vi);
}

static void snapshot_create(struct bal_ctl_call *call)
{
	struct bal_snap_info si;
	const char *vol, *snap;
	int r;

	if (param_snapshot(call, "volume", "name", &vol, &snap) < 0)
		return;
	r = bal_vstore_snap_create(call->store, vol, snap, &si);
	if (r == -EINPROGRESS)
		bal_ctl_fail_errno(call, r,
				   "volume '%s' is still being restored from the object tier; snapshot it once `ballast volume wait %s` returns",
				   vol, vol);
	else if (r < 0)
		fail_snapshot(call, r, vol, snap, "create");
	else
		call->result = bal_ctl_snapshot_json(&si);
}

/* By volume name, then oldest first (what a person scanning the list expects). */
static int snap_cmp(const void *pa, const void *pb)
{
	const struct bal_snap_info *a = pa, *b = pb;
	int c = strcmp(a->volume, b->volume);

	if (c)
		return c;
	if (a->epoch != b->epoch)
		return a->epoch < b->epoch ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

static void snapshot_list(struct bal_ctl_call *call)
{
	struct bal_snap_info *si = NULL;
	const char *vol;
	json_t *arr;
	size_t n = 0;
	int r;

	if (param_name_opt(call, "volume", &vol) < 0)
		return;
	r = bal_vstore_snap_list(call->store, vol, &si, &n);
	if (r == -ENOENT && vol) {
		bal_ctl_fail_errno(call, r, "volume '%s' not found", vol);
		return;
	}
	if (r < 0) {
		bal_ctl_fail_errno(call, r, "cannot list snapshots: %s", errdesc(r));
		return;
	}
	if (n > 1)
		qsort(si, n, sizeof(*si), snap_cmp);
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		if (json_array_append_new(arr, bal_ctl_snapshot_json(&si[i])) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	free(si);
	if (arr)
		call->result = json_pack("{s:o}", "snapshots", arr);
}

static void snapshot_show(struct bal_ctl_call *call)
{
	struct bal_snap_info si;
	const char *vol, *snap;
	int r;

	if (param_snapshot(call, "volume", "name", &vol, &snap) < 0)
		return;
	r = bal_vstore_snap_info(call->store, vol, snap, &si);
	if (r < 0)
		fail_snapshot(call, r, vol, snap, "show");
	else
		call->result = bal_ctl_snapshot_json(&si);
}

static void snapshot_delete(struct bal_ctl_call *call)
{
	struct bal_snap_info si;
	const char *vol, *snap;
	int r;

	if (param_snapshot(call, "volume", "name", &vol, &snap) < 0)
		return;
	/* The reply describes the snapshot as it was just before. */
	r = bal_vstore_snap_info(call->store, vol, snap, &si);
	if (r == 0)
		r = bal_vstore_snap_delete(call->store, vol, snap);
	if (r == -EBUSY && bal_vstore_snap_info(call->store, vol, snap, &si) == 0 && si.clones)
		bal_ctl_fail_errno(call, r,
				   "snapshot '%s@%s' has %u clone(s): flatten or delete them first",
				   vol, snap, si.clones);
	else if (r == -EBUSY)
		bal_ctl_fail_errno(call, r,
				   "snapshot '%s@%s' is exported to connected clients: disconnect them first",
				   vol, snap);
	else if (r < 0)
		fail_snapshot(call, r, vol, snap, "delete");
	else
		call->result = bal_ctl_snapshot_json(&si);
}

/* {"ranges": [{"offset", "length"}, ...], "changed_bytes"} plus the names. */
static json_t *diff_json(const char *vol, const char *from, const char *to,
			 const struct bal_range *rg, size_t n)
{
	json_t *arr = json_array(), *res;
	uint64_t total = 0;

	for (size_t i = 0; arr && i < n; i++) {
		total += rg[i].len;
		if (json_array_append_new(arr, json_pack("{s:I, s:I}", "offset",
							 (json_int_t)rg[i].off, "length",
							 (json_int_t)rg[i].len)) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	if (!arr)
		return NULL;
	res = json_pack("{s:s, s:s?, s:s, s:o, s:I}", "volume", vol, "from", from, "to", to,
			"ranges", arr, "changed_bytes", (json_int_t)total);
	return res;
}

static void snapshot_diff(struct bal_ctl_call *call)
{
	struct bal_snap_info a, b;
	struct bal_range *rg = NULL;
	const char *vol, *from, *to;
	size_t n = 0;
	int r;

	if (param_snapshot(call, "volume", "to", &vol, &to) < 0 ||
	    param_name_opt(call, "from", &from) < 0)
		return;
	call->subject = call->subject_buf;
	r = bal_vstore_snap_diff(call->store, vol, from, to, &rg, &n);
	if (r == -ENOENT && from && bal_vstore_snap_info(call->store, vol, from, &a) < 0)
		fail_snapshot(call, r, vol, from, "diff");
	else if (r == -EINVAL && from && bal_vstore_snap_info(call->store, vol, from, &a) == 0 &&
		 bal_vstore_snap_info(call->store, vol, to, &b) == 0 && a.epoch > b.epoch)
		bal_ctl_fail_errno(call, r,
				   "snapshot '%s@%s' is newer than '%s@%s': give the older one first",
				   vol, from, vol, to);
	else if (r < 0)
		fail_snapshot(call, r, vol, to, "diff");
	else
		call->result = diff_json(vol, from, to, rg, n);
	free(rg);
}

static void volume_clone(struct bal_ctl_call *call)
{
	struct bal_vol_info vi;
	const char *vol, *snap, *name;
	int r;

	if (param_snapshot(call, "volume", "snapshot", &vol, &snap) < 0 ||
	    bal_ctl_param_name(call, "name", &name) < 0)
		return;
	snprintf(call->subject_buf, sizeof(call->subject_buf), "%s@%s -> %s", vol, snap, name);
	call->subject = call->subject_buf;
	r = bal_vstore_clone(call->store, vol, snap, name);
	if (r == -EEXIST && bal_vstore_info(call->store, name, &vi) == 0)
		bal_ctl_fail_errno(call, r, "volume '%s' already exists", name);
	else if (r < 0)
		fail_snapshot(call, r, vol, snap, "clone");
	else
		reply_volume(call, name, "clone");
}

static void volume_flatten(struct bal_ctl_call *call)
{
	const char *name;
	int r;

	if (bal_ctl_param_name(call, "name", &name) < 0)
		return;
	r = bal_vstore_flatten(call->store, name);
	if (r == -ENOENT)
		bal_ctl_fail_errno(call, r, "volume '%s' not found", name);
	else if (r == -EINVAL)
		bal_ctl_fail_errno(call, r, "volume '%s' is not a clone: nothing to flatten", name);
	else if (r == -EBUSY)
		bal_ctl_fail_errno(call, r,
				   "volume '%s' has snapshots that read through its parent: delete them first",
				   name);
	else if (r < 0)
		bal_ctl_fail_errno(call, r, "cannot flatten volume '%s': %s", name, errdesc(r));
	else
		reply_volume(call, name, "flatten");
}

static void store_stats(struct bal_ctl_call *call)
{
	struct bal_store_stats s;
	int r;

	memset(&s, 0, sizeof(s));
	r = bal_vstore_stats(call->store, &s);
	if (r < 0) {
		bal_ctl_fail_errno(call, r, "cannot read store statistics: %s", errdesc(r));
		return;
	}
	call->result = json_pack("{s:I, s:I, s:I, s:I, s:I}", "cluster_size",
				 (json_int_t)BAL_CLUSTER_SIZE, "pool_clusters_used",
				 (json_int_t)s.pool_clusters_used, "pool_clusters_free",
				 (json_int_t)s.pool_clusters_free, "pool_clusters_pending",
				 (json_int_t)s.pool_clusters_pending, "map_log_entries",
				 (json_int_t)s.map_log_entries);
}

static const char *const p_none[] = { NULL };
static const char *const p_name[] = { "name", NULL };
static const char *const p_volume[] = { "volume", NULL };
static const char *const p_volume_name[] = { "volume", "name", NULL };
static const char *const p_diff[] = { "volume", "from", "to", NULL };
static const char *const p_clone[] = { "volume", "snapshot", "name", NULL };

const struct bal_ctl_method bal_ctl_snapshot_methods[] = {
	{ "snapshot.create", p_volume_name, true, snapshot_create },
	{ "snapshot.list", p_volume, false, snapshot_list },
	{ "snapshot.show", p_volume_name, false, snapshot_show },
	{ "snapshot.delete", p_volume_name, true, snapshot_delete },
	{ "snapshot.diff", p_diff, false, snapshot_diff },
	{ "volume.clone", p_clone, true, volume_clone },
	{ "volume.flatten", p_name, true, volume_flatten },
	{ "store.stats", p_none, false, store_stats },
	{ NULL, NULL, false, NULL },
};
