/* SPDX-License-Identifier: MIT */
/*
 * Control methods of the object tier: snapshot.export, snapshot.verify,
 * snapshot.remote_list, snapshot.remote_delete, volume.wait (long
 * operations, each on a job thread of its own: control.c) and
 * volume.restore (returns at once; hydration runs in the tier's threads).
 * Each validates its parameters, calls the tier (snapshot/tier.h) and
 * passes the tier's one-line message on as the error.  "creds" (S3
 * settings for this call) are used and never logged nor echoed, not even
 * in a parameter error.  The log line of a call names the method and its
 * subject (VOL@SNAP, URL#ID or the volume) only.
 */
#include "target/control_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "snapshot/tier.h"
#include "volume/volume.h"

/* A ref is "URL#ID". */
#define REF_MAX (BAL_TIER_URL_MAX + BAL_TIER_ID_MAX + 1)
/* One S3 setting (a session token is about 1-2 KiB). */
#define CRED_MAX 8192

static const char *errdesc(int err)
{
	const char *d = strerrordesc_np(-err);

	return d ? d : "unknown error";
}

/* The tier's message for @r, else "cannot WHAT: strerror". */
static void fail_tier(struct bal_ctl_call *call, int r, const char *err, const char *what)
{
	if (r == -ECANCELED)
		bal_ctl_fail_errno(call, r, "%s: cancelled (the client went away or the daemon is stopping)",
				   what);
	else if (err[0])
		bal_ctl_fail_errno(call, r, "%s", err);
	else
		bal_ctl_fail_errno(call, r, "cannot %s: %s", what, errdesc(r));
}

static struct bal_tier *tier_of(struct bal_ctl_call *call)
{
	if (!call->state->tier)
		bal_ctl_fail_errno(call, -EOPNOTSUPP, "the object tier is not available");
	return call->state->tier;
}

/* Printable ASCII of at most @max bytes: URLs and refs end up in logs and messages. */
static bool is_clean(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (i >= max || (unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return i > 0;
}

/* Optional store URL: NULL when absent. */
static int param_url(struct bal_ctl_call *call, const char **out)
{
	if (bal_ctl_param_str_opt(call, "url", out) < 0)
		return -1;
	if (*out && !is_clean(*out, BAL_TIER_URL_MAX - 1)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid url: use file:///PATH or s3://BUCKET[/PREFIX] (printable, at most %d bytes)",
			     BAL_TIER_URL_MAX - 1);
		return -1;
	}
	return 0;
}

/* "URL#ID"; it becomes the call's subject. */
static int param_ref(struct bal_ctl_call *call, const char **out)
{
	json_t *v = json_object_get(call->params, "ref");
	const char *s = json_string_value(v), *hash;

	if (!s) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter 'ref' (URL#ID) is %s",
			     v ? "not a string" : "missing");
		return -1;
	}
	hash = strrchr(s, '#');
	if (!is_clean(s, REF_MAX) || !hash || hash == s || !hash[1] ||
	    strlen(hash + 1) > BAL_TIER_ID_MAX) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid ref: use URL#ID as printed by snapshot export");
		return -1;
	}
	*out = s;
	call->subject = s;
	return 0;
}

/*
 * "creds": {access_key, secret_key, session_token, region, endpoint}, each
 * a string or null.  *out is NULL when absent (the daemon's environment).
 * Messages name the field, never its value.
 */
static int param_creds(struct bal_ctl_call *call, struct bal_tier_creds *cr,
		       const struct bal_tier_creds **out)
{
	json_t *v = json_object_get(call->params, "creds"), *f;
	const char *key;

	*out = NULL;
	memset(cr, 0, sizeof(*cr));
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter 'creds' is not an object");
		return -1;
	}
	json_object_foreach(v, key, f) {
		const char **dst = strcmp(key, "access_key") == 0 ? &cr->access_key
				   : strcmp(key, "secret_key") == 0 ? &cr->secret_key
				   : strcmp(key, "session_token") == 0 ? &cr->session_token
				   : strcmp(key, "region") == 0 ? &cr->region
				   : strcmp(key, "endpoint") == 0 ? &cr->endpoint : NULL;

		if (!dst) {
			bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
				     "unknown field in 'creds' (use access_key, secret_key, session_token, region, endpoint)");
			return -1;
		}
		if (json_is_null(f))
			continue;
		if (!json_is_string(f) || json_string_length(f) > CRED_MAX ||
		    strlen(json_string_value(f)) != json_string_length(f)) {
			bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "creds.%s is not a valid string",
				     key);
			return -1;
		}
		*dst = json_string_value(f);
	}
	*out = cr;
	return 0;
}

static void set_u64(json_t *o, const char *key, uint64_t v)
{
	json_object_set_new(o, key, json_integer((json_int_t)v));
}

/* json_string, or null for "". */
static json_t *str_or_null(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

/* ---- export ---- */

static json_t *export_json(const struct bal_tier_export_result *r)
{
	json_t *o = json_object();
	char *ref;

	if (!o || asprintf(&ref, "%s#%s", r->url, r->id) < 0) {
		json_decref(o);
		return NULL;
	}
	json_object_set_new(o, "url", json_string(r->url));
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "ref", json_string(ref));
	json_object_set_new(o, "parent", str_or_null(r->parent));
	json_object_set_new(o, "manifest_key", json_string(r->manifest_key));
	set_u64(o, "size", r->size);
	set_u64(o, "chunks", r->chunks);
	set_u64(o, "chunks_empty", r->chunks_empty);
	set_u64(o, "chunks_unchanged", r->chunks_unchanged);
	set_u64(o, "chunks_read", r->chunks_read);
	set_u64(o, "chunks_present", r->chunks_present);
	set_u64(o, "chunks_uploaded", r->chunks_uploaded);
	set_u64(o, "bytes_read", r->bytes_read);
	set_u64(o, "bytes_uploaded", r->bytes_uploaded);
	free(ref);
	return o;
}

static void snapshot_export(struct bal_ctl_call *call)
{
	struct bal_tier_export_opts o = { .opts_size = sizeof(o) };
	struct bal_tier_export_result *res;
	struct bal_tier *t = tier_of(call);
	struct bal_tier_creds cr;
	char err[BAL_TIER_ERR_MAX] = "", what[240];
	int r;

	if (!t || bal_ctl_param_name(call, "volume", &o.volume) < 0 ||
	    bal_ctl_param_name(call, "snapshot", &o.snapshot) < 0 || param_url(call, &o.url) < 0 ||
	    bal_ctl_param_str_opt(call, "storage_class", &o.storage_class) < 0 ||
	    param_creds(call, &cr, &o.creds) < 0)
		return;
	snprintf(call->subject_buf, sizeof(call->subject_buf), "%s@%s", o.volume, o.snapshot);
	call->subject = call->subject_buf;
	if (o.storage_class && !is_clean(o.storage_class, 31)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid storage_class: use STANDARD, STANDARD_IA, INTELLIGENT_TIERING or GLACIER");
		return;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
		return;
	}
	o.progress = bal_ctl_progress;
	o.arg = call;
	r = bal_tier_export(t, &o, res, err, sizeof(err));
	snprintf(what, sizeof(what), "export snapshot '%s'", call->subject_buf);
	if (r < 0)
		fail_tier(call, r, err, what);
	else
		call->result = export_json(res);
	free(res);
}

/* ---- verify ---- */

static json_t *verify_json(const char *ref, const struct bal_tier_verify_result *v)
{
	json_t *o = json_object(), *arr = json_array();

	if (!o || !arr)
		goto err;
	for (size_t i = 0; i < v->nproblems; i++) {
		const struct bal_tier_problem *p = &v->problems[i];

		if (json_array_append_new(arr, json_pack("{s:I, s:s, s:s}", "index",
							 (json_int_t)p->index, "key", p->key,
							 "what", p->what)) < 0)
			goto err;
	}
	json_object_set_new(o, "ref", json_string(ref));
	json_object_set_new(o, "manifest_key", str_or_null(v->manifest_key));
	json_object_set_new(o, "manifest_ok", json_boolean(v->manifest_ok));
	json_object_set_new(o, "manifest_error",
			    v->manifest_ok ? json_null() : json_string(v->manifest_error[0] ?
								       v->manifest_error :
								       "invalid manifest"));
	set_u64(o, "chunks", v->chunks);
	set_u64(o, "bytes", v->bytes);
	json_object_set_new(o, "problems", arr);
	json_object_set_new(o, "ok", json_boolean(v->manifest_ok && v->nproblems == 0));
	return o;
err:
	json_decref(arr);
	json_decref(o);
	return NULL;
}

static void snapshot_verify(struct bal_ctl_call *call)
{
	struct bal_tier_verify_result *res;
	const struct bal_tier_creds *creds;
	struct bal_tier *t = tier_of(call);
	struct bal_tier_creds cr;
	char err[BAL_TIER_ERR_MAX] = "";
	const char *ref;
	int r;

	if (!t || param_ref(call, &ref) < 0 || param_creds(call, &cr, &creds) < 0)
		return;
	res = calloc(1, sizeof(*res));
	if (!res) {
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
		return;
	}
	r = bal_tier_verify(t, ref, creds, bal_ctl_progress, call, res, err, sizeof(err));
	if (r < 0)
		fail_tier(call, r, err, "verify the exported snapshot");
	else
		call->result = verify_json(ref, res);
	free(res->problems);
	free(res);
}

/* ---- list and delete ---- */

static json_t *entry_json(const char *url, const struct bal_tier_entry *e)
{
	char created[32];
	json_t *o, *ref = json_null();

	bal_format_time(e->created, created, sizeof(created));
	if (url) {
		char *s;

		if (asprintf(&s, "%s#%s", url, e->id) < 0)
			return NULL;
		ref = json_string(s);
		free(s);
	}
	o = json_pack("{s:s, s:o, s:s, s:s, s:o, s:s, s:s, s:I, s:I, s:b, s:o}", "id", e->id,
		      "ref", ref, "volume", e->volume, "snapshot", e->snapshot, "parent",
		      str_or_null(e->parent), "key", e->key, "created", created, "size",
		      (json_int_t)e->size, "chunks", (json_int_t)e->chunks, "encrypted",
		      e->encrypted, "storage_class", str_or_null(e->storage_class));
	return o;
}

static void snapshot_remote_list(struct bal_ctl_call *call)
{
	const struct bal_tier_creds *creds;
	struct bal_tier *t = tier_of(call);
	struct bal_tier_entry *e = NULL;
	struct bal_tier_creds cr;
	char err[BAL_TIER_ERR_MAX] = "", *url = NULL;
	const char *given, *vol = NULL;
	json_t *since = json_object_get(call->params, "since"), *arr;
	size_t n = 0, len;
	int r;

	if (!t || param_url(call, &given) < 0 || param_creds(call, &cr, &creds) < 0)
		return;
	if (json_object_get(call->params, "volume") &&
	    !json_is_null(json_object_get(call->params, "volume")) &&
	    bal_ctl_param_name(call, "volume", &vol) < 0)
		return;
	if (since && !json_is_null(since) &&
	    (!json_is_integer(since) || json_integer_value(since) < 0)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "parameter 'since' must be unix seconds (an integer >= 0)");
		return;
	}
	call->subject = given ? given : "(default store)";
	r = bal_tier_list(t, given, vol, json_integer_value(since), creds, &e, &n, err,
			  sizeof(err));
	if (r < 0) {
		fail_tier(call, r, err, "list exported snapshots");
		return;
	}
	/* Refs name the store as given, without a trailing slash. */
	{
		url = strdup(given ? given : bal_tier_default_url(t));
		len = url ? strlen(url) : 0;
		while (len > 1 && url[len - 1] == '/' && url[len - 2] != '/')
			url[--len] = '\0';
	}
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		if (json_array_append_new(arr, entry_json(url, &e[i])) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	if (arr && url)
		call->result = json_pack("{s:o, s:o}", "url", str_or_null(url), "snapshots", arr);
	else
		json_decref(arr);
	free(url);
	free(e);
}

static void snapshot_remote_delete(struct bal_ctl_call *call)
{
	struct bal_tier_delete_result res = { 0 };
	const struct bal_tier_creds *creds;
	struct bal_tier *t = tier_of(call);
	struct bal_tier_creds cr;
	char err[BAL_TIER_ERR_MAX] = "";
	const char *ref;
	int r;

	if (!t || param_ref(call, &ref) < 0 || param_creds(call, &cr, &creds) < 0)
		return;
	r = bal_tier_delete(t, ref, creds, &res, err, sizeof(err));
	if (r < 0)
		fail_tier(call, r, err, "delete the exported snapshot");
	else
		call->result = json_pack("{s:s, s:I, s:I}", "ref", ref, "chunks_deleted",
					 (json_int_t)res.chunks_deleted, "chunks_kept",
					 (json_int_t)res.chunks_kept);
}

/* ---- restore and hydration ---- */

static json_t *hydration_json(const struct bal_tier_hydration *h)
{
	return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:o}", "source", h->source, "active",
			 h->active, "chunks_total", (json_int_t)h->chunks_total, "chunks_done",
			 (json_int_t)h->chunks_done, "chunks_failed", (json_int_t)h->chunks_failed,
			 "bytes_fetched", (json_int_t)h->bytes_fetched, "last_error",
			 str_or_null(h->last_error));
}

json_t *bal_ctl_add_tier_state(struct bal_ctl_state *state, const struct bal_vol_info *vi,
			       json_t *vol)
{
	struct bal_tier_hydration *h;

	if (!vol)
		return NULL;
	json_object_set_new(vol, "remote", json_boolean(vi->remote));
	if (!state->tier)
		return vol;
	h = calloc(1, sizeof(*h));
	if (h && bal_tier_hydration(state->tier, vi->name, h) == 0)
		json_object_set_new(vol, "hydration", hydration_json(h));
	free(h);
	return vol;
}

static void volume_restore(struct bal_ctl_call *call)
{
	const struct bal_tier_creds *creds;
	struct bal_tier *t = tier_of(call);
	struct bal_tier_creds cr;
	struct bal_vol_info vi;
	char err[BAL_TIER_ERR_MAX] = "", what[120];
	const char *name, *ref;
	int r;

	if (!t || param_ref(call, &ref) < 0 || bal_ctl_param_name(call, "name", &name) < 0 ||
	    param_creds(call, &cr, &creds) < 0)
		return;
	snprintf(what, sizeof(what), "restore volume '%s'", name);
	r = bal_tier_restore(t, name, ref, creds, err, sizeof(err));
	if (r == -EEXIST && !err[0])
		bal_ctl_fail_errno(call, r, "volume '%s' already exists", name);
	else if (r < 0)
		fail_tier(call, r, err, what);
	else if ((r = bal_vstore_info(call->store, name, &vi)) < 0)
		bal_ctl_fail_errno(call, r, "cannot %s: %s", what, errdesc(r));
	else
		call->result = bal_ctl_add_tier_state(call->state, &vi, bal_ctl_volume_json(&vi));
}

static void volume_wait(struct bal_ctl_call *call)
{
	struct bal_tier *t = tier_of(call);
	struct bal_tier_hydration *h;
	struct bal_vol_info vi;
	char err[BAL_TIER_ERR_MAX] = "", what[120];
	const char *name;
	int r;

	if (!t || bal_ctl_param_name(call, "name", &name) < 0)
		return;
	r = bal_vstore_info(call->store, name, &vi);
	if (r < 0) {
		bal_ctl_fail_errno(call, r, r == -ENOENT ? "volume '%s' not found"
					    : "cannot wait for volume '%s'", name);
		return;
	}
	snprintf(what, sizeof(what), "wait for volume '%s'", name);
	r = bal_tier_wait(t, name, bal_ctl_progress, call, err, sizeof(err));
	/* Not (or no longer) restoring: a volume with every cluster local is done. */
	if (r == -ENOENT && bal_vstore_info(call->store, name, &vi) == 0 && !vi.remote)
		r = 0;
	if (r < 0) {
		fail_tier(call, r, err, what);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
		return;
	}
	if (bal_tier_hydration(t, name, h) == 0)
		call->result = json_pack("{s:s, s:o}", "name", name, "hydration", hydration_json(h));
	else
		call->result = json_pack("{s:s, s:n}", "name", name, "hydration");
	free(h);
}

static const char *const p_export[] = { "volume", "snapshot", "url", "storage_class", "creds",
					 "progress", NULL };
static const char *const p_verify[] = { "ref", "creds", "progress", NULL };
static const char *const p_list[] = { "url", "volume", "since", "creds", NULL };
static const char *const p_delete[] = { "ref", "creds", NULL };
static const char *const p_restore[] = { "name", "ref", "creds", NULL };
static const char *const p_wait[] = { "name", "progress", NULL };

const struct bal_ctl_method bal_ctl_tier_methods[] = {
	{ "volume.restore", p_restore, true, volume_restore },
	{ NULL, NULL, false, NULL },
};

const struct bal_ctl_method bal_ctl_tier_jobs[] = {
	{ "snapshot.export", p_export, true, snapshot_export },
	{ "snapshot.verify", p_verify, false, snapshot_verify },
	{ "snapshot.remote_list", p_list, false, snapshot_remote_list },
	{ "snapshot.remote_delete", p_delete, true, snapshot_remote_delete },
	{ "volume.wait", p_wait, false, volume_wait },
	{ NULL, NULL, false, NULL },
};
