/* SPDX-License-Identifier: MIT */
/*
 * The CLI's JSON-RPC client: one request on a fresh connection to the
 * control socket, one response line back (after any "progress"
 * notifications the request asked for).  Single-threaded.
 */
#ifndef BAL_CLI_RPC_H
#define BAL_CLI_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* How long a call may take before the CLI gives up, in seconds. */
#define BAL_CLI_RPC_TIMEOUT 300

/*
 * Call @method with @params (an object, or NULL for none; not consumed) on
 * the control socket at @path.  Returns 0 and sets *result (owned by the
 * caller), or -1 with a one-line message in @err: the daemon's error
 * message, or why the daemon could not be reached.
 */
int bal_cli_rpc_call(const char *path, const char *method, json_t *params, json_t **result,
		     char *err, size_t errlen);

struct bal_cli_rpc_opts {
	/* Seconds to wait for the response; 0: as long as it takes (long operations). */
	int timeout;
	/* Called for each "progress" notification of the call (may be NULL). */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *arg;
};

/* bal_cli_rpc_call with options (@o NULL: the defaults of bal_cli_rpc_call). */
int bal_cli_rpc_call_opts(const char *path, const char *method, json_t *params,
			  const struct bal_cli_rpc_opts *o, json_t **result, char *err,
			  size_t errlen);

#endif
