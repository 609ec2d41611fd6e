/* SPDX-License-Identifier: MIT */
/*
 * Shared by the control server (control.c), the JSON-RPC layer
 * (control_rpc.c) and the method groups (control_volume.c,
 * control_snapshot.c, control_keys.c, control_tier.c): the state the
 * methods share, the call context, the method table entry, the request
 * entry point, the parameter and error helpers and the VOLUME and SNAPSHOT
 * result objects.  Everything here runs on the control thread, except the
 * methods of the job groups (long operations: export, verify, ...), which
 * run on a job thread of their own (control.c) with a call nothing else
 * touches meanwhile; those use only the store and the tier, both safe from
 * any thread, never state->master.
 */
#ifndef BAL_CONTROL_INTERNAL_H
#define BAL_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct bal_vstore;
struct bal_tier;
struct bal_vol_info;
struct bal_snap_info;
struct bal_mk;
struct bal_ck;

/* JSON-RPC 2.0 error codes (section 5.1 of the specification). */
#define BAL_RPC_PARSE_ERROR -32700
#define BAL_RPC_INVALID_REQUEST -32600
#define BAL_RPC_METHOD_NOT_FOUND -32601
#define BAL_RPC_INVALID_PARAMS -32602
/* errno-based failures: -32000 - errno, or BAL_RPC_ERRNO_LAST past 99. */
#define BAL_RPC_ERRNO_BASE -32000
#define BAL_RPC_ERRNO_LAST -32099

/*
 * What outlives one request; owned by the control server (control.c) and
 * touched by the control thread only.
 */
struct bal_ctl_state {
	struct bal_vstore *store;	/* not owned */
	struct bal_tier *tier;		/* not owned; safe from any thread */
	/*
	 * The master key installed by the last successful key.rotate (owned;
	 * NULL before any).  The store borrows it, so it lives until the next
	 * rotation replaces it or bal_ctl_state_fini; the daemon's start-up
	 * key stays with main.  Only control methods (create, clone, rotate)
	 * use the master key, so freeing it once the control thread has
	 * stopped is safe.
	 */
	struct bal_mk *master;
};

/* Release what the state owns (the rotated-in master key). */
void bal_ctl_state_fini(struct bal_ctl_state *state);

/* One request being served. */
struct bal_ctl_call {
	struct bal_ctl_state *state;
	struct bal_vstore *store;	/* state->store */
	const char *method;
	json_t *params;		/* an object, empty if the request had none */
	uid_t uid;		/* the peer, for the log */
	json_t *result;		/* set by the handler on success (owned) */
	int code;		/* 0, or the JSON-RPC error code */
	int err;		/* errno reported in the error's data, or 0 */
	char msg[512];		/* the error message */
	const char *subject;	/* what the action was on, for the log */
	char subject_buf[200];	/* storage for a composed subject ("VOL@SNAP") */
	/* Set for the calls of job methods (see bal_ctl_serve_line): */
	const struct bal_ctl_method *m;
	json_t *id;		/* the request's id (owned), NULL for a notification */
	bool progress;		/* the client asked for "progress" notifications */
	void *job;		/* control.c's job running the call, NULL inline */
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

/*
 * Method groups, each terminated by an entry with a NULL name.  The
 * methods of bal_ctl_tier_jobs are long operations: each request runs on a
 * job thread of its own (control.c), accepts "progress" (a boolean: send
 * progress notifications before the response) and reports through
 * bal_ctl_progress; the other groups run on the control thread.
 */
extern const struct bal_ctl_method bal_ctl_volume_methods[];
extern const struct bal_ctl_method bal_ctl_snapshot_methods[];
extern const struct bal_ctl_method bal_ctl_key_methods[];
extern const struct bal_ctl_method bal_ctl_tier_methods[];
extern const struct bal_ctl_method bal_ctl_tier_jobs[];

/* The VOLUME and SNAPSHOT objects of the results (new references, or NULL). */
json_t *bal_ctl_volume_json(const struct bal_vol_info *vi);
json_t *bal_ctl_snapshot_json(const struct bal_snap_info *si);

/*
 * Serve one request line (without its newline).  Sets *out to the response
 * (owned by the caller), or to NULL when none is due (a notification).
 * A valid request for a job method is not run when @job is non-NULL:
 * *job is set to the decoded call instead (owned by the caller, who runs it
 * with bal_ctl_call_run, answers with bal_ctl_call_response and frees it
 * with bal_ctl_call_destroy) and *out to NULL.  With @job NULL every
 * method runs inline.  Returns 0, or -ENOMEM if the response could not be
 * built.
 */
int bal_ctl_serve_line(struct bal_ctl_state *state, uid_t uid, const char *line, size_t len,
		       json_t **out, struct bal_ctl_call **job);

/* Run a decoded call's method and log it; on the thread that owns the call. */
void bal_ctl_call_run(struct bal_ctl_call *call);
/*
 * The response to a call that ran or failed: 0 and *out (owned by the
 * caller; NULL for a notification), or -ENOMEM.
 */
int bal_ctl_call_response(struct bal_ctl_call *call, json_t **out);
/* Free a call from bal_ctl_serve_line.  NULL is a no-op. */
void bal_ctl_call_destroy(struct bal_ctl_call *call);

/*
 * Progress callback of the tier's long operations (bal_tier_progress_fn),
 * @arg is the call: sends a rate-limited "progress" notification when the
 * client asked for them, and returns non-zero (cancel) once the client has
 * gone or the server is closing.  Returns 0 for a call run inline.  On the
 * job thread (control.c).
 */
int bal_ctl_progress(void *arg, uint64_t done, uint64_t total);

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
/* An absolute path (a key file the daemon reads itself). */
int bal_ctl_param_path(struct bal_ctl_call *call, const char *key, const char **out);
/* The optional string parameter @key: NULL when absent or null. */
int bal_ctl_param_str_opt(struct bal_ctl_call *call, const char *key, const char **out);

/*
 * Add "remote" (some clusters still read from the object tier) and, if the
 * volume was restored from the object tier, "hydration" (control_tier.c)
 * to @vol, the VOLUME object of @vi.  Returns @vol (NULL stays NULL).
 */
json_t *bal_ctl_add_tier_state(struct bal_ctl_state *state, const struct bal_vol_info *vi,
			       json_t *vol);

/*
 * Load the customer key file @path (read by the daemon: key bytes never
 * cross the socket).  0 and *out (the caller destroys it), or -1 after
 * failing the call with a message that names the file and the rule it
 * broke, never its contents.
 */
int bal_ctl_load_customer_key(struct bal_ctl_call *call, const char *path, struct bal_ck **out);

/*
 * Fail @call for an encryption error of volume @name: -ENOKEY (locked:
 * "volume 'v' is locked: REASON", or no master key), -EKEYREJECTED (wrong
 * customer key).  Returns true if @err was one of those.
 */
bool bal_ctl_fail_key(struct bal_ctl_call *call, int err, const char *name);

#endif
