/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 decoding and dispatch for the control socket: one request
 * line in, one response out.  Checks the envelope (section 4 of the
 * specification), finds the method in the method groups, refuses unknown
 * parameters, calls the method, logs the action and builds the response or
 * error object (section 5).  No sockets here, so a fuzz target can drive it
 * directly.  Runs on the control thread.
 */
#include "target/control_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

/* Every method group; a new group is one more line. */
static const struct bal_ctl_method *const method_groups[] = {
	bal_ctl_volume_methods,
	bal_ctl_snapshot_methods,
	bal_ctl_key_methods,
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

static const struct bal_ctl_method *find_method(const char *name)
{
	for (size_t g = 0; g < sizeof(method_groups) / sizeof(method_groups[0]); g++)
		for (const struct bal_ctl_method *m = method_groups[g]; m->name; m++)
			if (strcmp(m->name, name) == 0)
				return m;
	return NULL;
}

static void call_method(const struct bal_ctl_method *m, struct bal_ctl_call *call)
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
			break;
		}
	}
	if (call->code == 0)
		m->fn(call);
	if (call->code == 0 && !call->result)
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
	/* Invalid parameters echo client bytes: keep them out of the log. */
	bal_log(m->mutates ? BAL_LOG_INFO : BAL_LOG_DEBUG, "control: %s %s (uid %u): %s", m->name,
		call->subject ? call->subject : "-", (unsigned)call->uid,
		call->code == 0 ? "ok"
		: call->code == BAL_RPC_INVALID_PARAMS ? "invalid parameters" : call->msg);
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

int bal_ctl_serve_line(struct bal_ctl_state *state, uid_t uid, const char *line, size_t len,
		       json_t **out)
{
	struct bal_ctl_call call = { .state = state, .store = state->store, .uid = uid };
	const struct bal_ctl_method *m;
	json_t *req, *id, *ver, *meth, *params, *resp = NULL;
	json_error_t jerr;
	int rc = -ENOMEM;

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
	} else if (!(m = find_method(json_string_value(meth)))) {
		call.code = BAL_RPC_METHOD_NOT_FOUND;
		snprintf(call.msg, sizeof(call.msg), "unknown method '%.64s'",
			 json_string_value(meth));
	} else {
		call.method = m->name;
		call.params = params ? json_incref(params) : json_object();
		if (call.params)
			call_method(m, &call);
		else
			bal_ctl_fail_errno(&call, -ENOMEM, "out of memory");
		json_decref(call.params);
	}
	/* A request without an id is a notification: it gets no response. */
	if (!id) {
		rc = 0;
		goto out_result;
	}
	if (call.code)
		resp = bal_ctl_error_response(id, call.code, call.err, call.msg);
	else
		resp = json_pack("{s:s, s:O, s:O}", "jsonrpc", "2.0", "id", id, "result",
				 call.result);
out_result:
	json_decref(call.result);
out_req:
	json_decref(req);
	*out = resp;
	return resp ? 0 : rc;
}
