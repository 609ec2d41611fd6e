/* SPDX-License-Identifier: MIT */
/*
 * Shared by the control server (control.c), the JSON-RPC layer
 * (control_rpc.c) and the method groups (control_volume.c,
 * control_snapshot.c, later key methods): the call context, the method
 * table entry, the request entry point, the parameter and error helpers and
 * the VOLUME and SNAPSHOT result objects.  Everything here runs on
 * the control thread.
 */
#ifndef BAL_CONTROL_INTERNAL_H
#define BAL_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct bal_vstore;
struct bal_vol_info;
struct bal_snap_info;

/* JSON-RPC 2.0 error codes (section 5.1 of the specification). */
#define BAL_RPC_PARSE_ERROR -32700
#define BAL_RPC_INVALID_REQUEST -32600
#define BAL_RPC_METHOD_NOT_FOUND -32601
#define BAL_RPC_INVALID_PARAMS -32602
/* errno-based failures: -32000 - errno, or BAL_RPC_ERRNO_LAST past 99. */
#define BAL_RPC_ERRNO_BASE -32000
#define BAL_RPC_ERRNO_LAST -32099

/* One request being served. */
struct bal_ctl_call {
	struct bal_vstore *store;
	const char *method;
	json_t *params;		/* an object, empty if the request had none */
	uid_t uid;		/* the peer, for the log */
	json_t *result;		/* set by the handler on success (owned) */
	int code;		/* 0, or the JSON-RPC error code */
	int err;		/* errno reported in the error's data, or 0 */
	char msg[512];		/* the error message */
	const char *subject;	/* what the action was on, for the log */
	char subject_buf[200];	/* storage for a composed subject ("VOL@SNAP") */
};

struct bal_ctl_method {
	const char *name;
	/* Accepted parameter names, NULL-terminated; any other is -32602. */
	const char *const *params;
	/* Changes state: logged at info level (reads at debug). */
	bool mutates;
	/* Set call->result, or fail through bal_ctl_fail*. */
	void (*fn)(struct bal_ctl_call *call);
};

/* Method groups, each terminated by an entry with a NULL name. */
extern const struct bal_ctl_method bal_ctl_volume_methods[];
extern const struct bal_ctl_method bal_ctl_snapshot_methods[];

/* The VOLUME and SNAPSHOT objects of the results (new references, or NULL). */
json_t *bal_ctl_volume_json(const struct bal_vol_info *vi);
json_t *bal_ctl_snapshot_json(const struct bal_snap_info *si);

/*
 * Serve one request line (without its newline).  Sets *out to the response
 * (owned by the caller), or to NULL when none is due (a notification).
 * Returns 0, or -ENOMEM if the response could not be built.
 */
int bal_ctl_serve_line(struct bal_vstore *store, uid_t uid, const char *line, size_t len,
		       json_t **out);

/* A JSON-RPC error response; @id may be NULL (sent as null), @err 0 (no data). */
json_t *bal_ctl_error_response(json_t *id, int code, int err, const char *msg);

void bal_ctl_fail(struct bal_ctl_call *call, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* @err is a negative errno; the code is derived from it. */
void bal_ctl_fail_errno(struct bal_ctl_call *call, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Parameter getters: 0 and *out set, or -1 after failing the call with
 * -32602.  Optional parameters take @def when absent.
 */
int bal_ctl_param_name(struct bal_ctl_call *call, const char *key, const char **out);
int bal_ctl_param_size(struct bal_ctl_call *call, const char *key, uint64_t *out);
int bal_ctl_param_bool(struct bal_ctl_call *call, const char *key, bool def, bool *out);

#endif
