/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 decoding and dispatch for the control socket: one request
 * line in, one response out.  Checks the envelope (section 4 of the
 * specification), finds the method in the method groups, refuses unknown
 * parameters, calls the method, logs the action and builds the response or
 * error object (section 5).  No sockets here, so a fuzz target can drive it
 * directly.  Runs on the control thread; a call of a job method is handed
 * back decoded, and bal_ctl_call_run/_response then run on its job thread.
 */
#include "target/control_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

/* Every method group; a new group is one more line. */
static const struct {
	const struct bal_ctl_method *methods;
	bool job;		/* long operations: run on a job thread */
} method_groups[] = {
	{ bal_ctl_volume_methods, false },
	{ bal_ctl_snapshot_methods, false },
	{ bal_ctl_key_methods, false },
	{ bal_ctl_tier_methods, false },
	{ bal_ctl_tier_jobs, true },
};

void bal_ctl_fail(struct bal_ctl_call *call, int code, const char *fmt, ...)
{
	va_list ap;

	call->code = code;
	va_start(ap, fmt);
	vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
	va_end(ap);
}

void bal_ctl_fail_errno(struct bal_ctl_call *call, int err, const char *fmt, ...)
{
	va_list ap;

	call->err = -err;
	call->code = -err > 0 && -err < 100 ? BAL_RPC_ERRNO_BASE + err : BAL_RPC_ERRNO_LAST;
	va_start(ap, fmt);
	vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
	va_end(ap);
}

int bal_ctl_param_name(struct bal_ctl_call *call, const char *key, const char **out)
{
	json_t *v = json_object_get(call->params, key);

	if (!json_is_string(v)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter '%s' (a string) is %s", key,
			     v ? "not a string" : "missing");
		return -1;
	}
	if (!bal_name_is_valid(json_string_value(v))) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "invalid name '%.80s': use 1 to %d characters from A-Z a-z 0-9 . _ - not starting with '.' or '-'",
			     json_string_value(v), BAL_NAME_MAX);
		return -1;
	}
	*out = json_string_value(v);
	call->subject = *out;
	return 0;
}

int bal_ctl_param_size(struct bal_ctl_call *call, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(call->params, key);

	if (!json_is_integer(v)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter '%s' (an integer) is %s", key,
			     v ? "not an integer" : "missing");
		return -1;
	}
	if (json_integer_value(v) <= 0) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "invalid %s %lld: must be positive", key,
			     (long long)json_integer_value(v));
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int bal_ctl_param_bool(struct bal_ctl_call *call, const char *key, bool def, bool *out)
{
	json_t *v = json_object_get(call->params, key);

	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v)) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter '%s' is not a boolean", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int bal_ctl_param_path(struct bal_ctl_call *call, const char *key, const char **out)
{
	json_t *v = json_object_get(call->params, key);
	const char *s = json_string_value(v);

	if (!s) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter '%s' (a path) is %s", key,
			     v ? "not a string" : "missing");
		return -1;
	}
	if (s[0] != '/' || strlen(s) >= 4096) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS,
			     "parameter '%s' must be an absolute path (the daemon reads the file)",
			     key);
		return -1;
	}
	*out = s;
	return 0;
}

int bal_ctl_param_str_opt(struct bal_ctl_call *call, const char *key, const char **out)
{
	json_t *v = json_object_get(call->params, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || !json_string_value(v)[0]) {
		bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "parameter '%s' is not a non-empty string",
			     key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static const struct bal_ctl_method *find_method(const char *name, bool *job)
{
	for (size_t g = 0; g < sizeof(method_groups) / sizeof(method_groups[0]); g++) {
		for (const struct bal_ctl_method *m = method_groups[g].methods; m->name; m++) {
			if (strcmp(m->name, name) == 0) {
				*job = method_groups[g].job;
				return m;
			}
		}
	}
	return NULL;
}

/* Refuse parameters the method does not take: 0, or -1 after failing @call. */
static int check_params(const struct bal_ctl_method *m, struct bal_ctl_call *call)
{
	const char *key;
	json_t *v;

	json_object_foreach(call->params, key, v) {
		const char *const *p;

		for (p = m->params; *p && strcmp(*p, key) != 0; p++)
			;
		if (!*p) {
			bal_ctl_fail(call, BAL_RPC_INVALID_PARAMS, "unknown parameter '%.64s' for %s",
				     key, m->name);
			return -1;
		}
	}
	return 0;
}

/* Invalid parameters echo client bytes: keep them out of the log. */
static void log_call(const struct bal_ctl_method *m, const struct bal_ctl_call *call)
{
	bal_log(m->mutates ? BAL_LOG_INFO : BAL_LOG_DEBUG, "control: %s %s (uid %u): %s", m->name,
		call->subject ? call->subject : "-", (unsigned)call->uid,
		call->code == 0 ? "ok"
		: call->code == BAL_RPC_INVALID_PARAMS ? "invalid parameters" : call->msg);
}

void bal_ctl_call_run(struct bal_ctl_call *call)
{
	if (call->code == 0)
		call->m->fn(call);
	if (call->code == 0 && !call->result)
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
	log_call(call->m, call);
}

static void call_method(const struct bal_ctl_method *m, struct bal_ctl_call *call)
{
	if (check_params(m, call) == 0)
		m->fn(call);
	if (call->code == 0 && !call->result)
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
	log_call(m, call);
}

json_t *bal_ctl_error_response(json_t *id, int code, int err, const char *msg)
{
	json_t *e = json_pack("{s:i, s:s}", "code", code, "message", msg);

	if (e && err)
		json_object_set_new(e, "data", json_pack("{s:i, s:s}", "errno", err, "name",
							 strerrorname_np(err) ? strerrorname_np(err) : "?"));
	return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
			 "error", e);
}

/* The response to @call (with @id, NULL for a notification): 0, or -ENOMEM. */
static int call_response(struct bal_ctl_call *call, json_t *id, json_t **out)
{
	*out = NULL;
	if (!id)
		return 0;
	if (call->code)
		*out = bal_ctl_error_response(id, call->code, call->err, call->msg);
	else
		*out = json_pack("{s:s, s:O, s:O}", "jsonrpc", "2.0", "id", id, "result",
				 call->result);
	return *out ? 0 : -ENOMEM;
}

int bal_ctl_call_response(struct bal_ctl_call *call, json_t **out)
{
	return call_response(call, call->id, out);
}

void bal_ctl_call_destroy(struct bal_ctl_call *call)
{
	if (!call)
		return;
	json_decref(call->result);
	json_decref(call->params);
	json_decref(call->id);
	free(call);
}

/*
 * A valid call of a job method, copied to the heap with its own references
 * to the id and the parameters: 0 and *job set, or -1 with @call failed
 * (it is then answered at once).
 */
static int make_job(const struct bal_ctl_method *m, struct bal_ctl_call *call, json_t *id,
		    struct bal_ctl_call **job)
{
	struct bal_ctl_call *j;
	bool progress;

	if (check_params(m, call) < 0 || bal_ctl_param_bool(call, "progress", false, &progress) < 0) {
		log_call(m, call);
		return -1;
	}
	j = malloc(sizeof(*j));
	if (!j) {
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
		return -1;
	}
	*j = *call;
	j->m = m;
	j->params = json_incref(call->params);
	j->id = id ? json_incref(id) : NULL;
	j->progress = progress && id;
	*job = j;
	return 0;
}

int bal_ctl_serve_line(struct bal_ctl_state *state, uid_t uid, const char *line, size_t len,
		       json_t **out, struct bal_ctl_call **job)
{
	struct bal_ctl_call call = { .state = state, .store = state->store, .uid = uid };
	const struct bal_ctl_method *m;
	json_t *req, *id, *ver, *meth, *params, *resp = NULL;
	json_error_t jerr;
	bool is_job = false;
	int rc = -ENOMEM;

	if (job)
		*job = NULL;
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!req) {
		char msg[256];

		snprintf(msg, sizeof(msg), "parse error: %s at position %d", jerr.text,
			 jerr.position);
		*out = bal_ctl_error_response(NULL, BAL_RPC_PARSE_ERROR, 0, msg);
		return *out ? 0 : -ENOMEM;
	}
	if (json_is_array(req)) {
		resp = bal_ctl_error_response(NULL, BAL_RPC_INVALID_REQUEST, 0,
				      "batch requests are not supported");
		goto out_req;
	}
	if (!json_is_object(req)) {
		resp = bal_ctl_error_response(NULL, BAL_RPC_INVALID_REQUEST, 0,
				      "invalid request: not a JSON object");
		goto out_req;
	}
	id = json_object_get(req, "id");
	if (id && !json_is_string(id) && !json_is_number(id) && !json_is_null(id)) {
		resp = bal_ctl_error_response(NULL, BAL_RPC_INVALID_REQUEST, 0,
				      "invalid request: id must be a string, a number or null");
		goto out_req;
	}
	ver = json_object_get(req, "jsonrpc");
	meth = json_object_get(req, "method");
	params = json_object_get(req, "params");
	if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
		call.code = BAL_RPC_INVALID_REQUEST;
		snprintf(call.msg, sizeof(call.msg), "invalid request: \"jsonrpc\" must be \"2.0\"");
	} else if (!json_is_string(meth)) {
		call.code = BAL_RPC_INVALID_REQUEST;
		snprintf(call.msg, sizeof(call.msg), "invalid request: \"method\" must be a string");
	} else if (params && !json_is_object(params)) {
		call.code = json_is_array(params) ? BAL_RPC_INVALID_PARAMS : BAL_RPC_INVALID_REQUEST;
		snprintf(call.msg, sizeof(call.msg), "\"params\" must be an object");
	} else if (!(m = find_method(json_string_value(meth), &is_job))) {
		call.code = BAL_RPC_METHOD_NOT_FOUND;
		snprintf(call.msg, sizeof(call.msg), "unknown method '%.64s'",
			 json_string_value(meth));
	} else {
		call.method = m->name;
		call.m = m;
		call.params = params ? json_incref(params) : json_object();
		if (!call.params) {
			bal_ctl_fail_errno(&call, -ENOMEM, "out of memory");
		} else if (is_job && job) {
			if (make_job(m, &call, id, job) == 0) {
				json_decref(call.params);
				json_decref(req);
				*out = NULL;
				return 0;
			}
		} else {
			call_method(m, &call);
		}
		json_decref(call.params);
	}
	/* A request without an id is a notification: it gets no response. */
	rc = call_response(&call, id, &resp);
	json_decref(call.result);
out_req:
	json_decref(req);
	*out = resp;
	return resp ? 0 : rc;
}
