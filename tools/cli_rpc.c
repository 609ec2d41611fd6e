/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 client for the `ballast` CLI: connect to the control socket,
 * send one request line, read one response line (bounded in size and
 * time), and hand back the result or the daemon's error message.  Lines
 * without an "id" before the response are notifications: "progress" ones
 * go to the caller's callback, others are skipped.  The request may carry
 * S3 credentials: its text is wiped once sent.
 */
#include "tools/cli_rpc.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A response longer than this is refused (a list of a great many volumes fits). */
#define RESP_MAX (64u << 20)

static int connect_socket(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	int fd;

	if (len >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return -1;
	}
	memcpy(sa.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s (is ballastd running?)", path,
			 strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t r = send(fd, buf, len, MSG_NOSIGNAL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += r;
		len -= (size_t)r;
	}
	return 0;
}

/* A notification line (no "id"): hand a "progress" one to the callback.  False if not one. */
static bool handle_notification(const char *line, const struct bal_cli_rpc_opts *o)
{
	json_t *msg = json_loads(line, 0, NULL), *params;
	bool note;

	if (!msg)
		return false;
	note = json_is_object(msg) && !json_object_get(msg, "id") &&
	       json_is_string(json_object_get(msg, "method"));
	params = json_object_get(msg, "params");
	if (note && o->progress &&
	    strcmp(json_string_value(json_object_get(msg, "method")), "progress") == 0 &&
	    json_integer_value(json_object_get(params, "id")) == 1) {
		json_int_t done = json_integer_value(json_object_get(params, "done"));
		json_int_t total = json_integer_value(json_object_get(params, "total"));

		o->progress(o->arg, done > 0 ? (uint64_t)done : 0, total > 0 ? (uint64_t)total : 0);
	}
	json_decref(msg);
	return note;
}

/*
 * Read lines until the response (passing notifications on); returns the
 * malloc'ed response line or NULL.
 */
static char *recv_response(int fd, const struct bal_cli_rpc_opts *o, char *err, size_t errlen)
{
	time_t deadline = time(NULL) + o->timeout;
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		time_t left = deadline - time(NULL);
		ssize_t r;
		char *nl;

		if (o->timeout > 0 && left <= 0) {
			snprintf(err, errlen, "no response from ballastd within %d s", o->timeout);
			goto err_free;
		}
		r = poll(&pfd, 1, o->timeout > 0 ? (int)left * 1000 : -1);
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			goto err_free;
		}
		if (r <= 0)
			continue;
		if (cap - len < 65536) {
			char *p;

			if (cap >= RESP_MAX) {
				snprintf(err, errlen, "response from ballastd too long");
				goto err_free;
			}
			cap = cap ? cap * 2 : 65536;
			p = realloc(buf, cap);
			if (!p) {
				snprintf(err, errlen, "out of memory");
				goto err_free;
			}
			buf = p;
		}
		r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "reading from ballastd: %s", strerror(errno));
			goto err_free;
		}
		if (r == 0) {
			snprintf(err, errlen, "ballastd closed the connection without a response");
			goto err_free;
		}
		len += (size_t)r;
		while ((nl = memchr(buf, '\n', len))) {
			size_t n = (size_t)(nl - buf) + 1;

			*nl = '\0';
			if (!handle_notification(buf, o))
				return buf;
			memmove(buf, buf + n, len - n);
			len -= n;
		}
	}
err_free:
	free(buf);
	return NULL;
}

/* Turn a response into the result, or the error message. */
static int parse_response(const char *line, json_t **result, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *resp, *e, *res;
	int rc = -1;

	resp = json_loads(line, 0, &jerr);
	if (!resp) {
		snprintf(err, errlen, "malformed response from ballastd: %s", jerr.text);
		return -1;
	}
	e = json_object_get(resp, "error");
	res = json_object_get(resp, "result");
	if (e) {
		const char *msg = json_string_value(json_object_get(e, "message"));

		snprintf(err, errlen, "%s", msg ? msg : "ballastd returned an error without a message");
	} else if (!res || json_integer_value(json_object_get(resp, "id")) != 1) {
		snprintf(err, errlen, "malformed response from ballastd");
	} else {
		*result = json_incref(res);
		rc = 0;
	}
	json_decref(resp);
	return rc;
}

int bal_cli_rpc_call(const char *path, const char *method, json_t *params, json_t **result,
		     char *err, size_t errlen)
{
	return bal_cli_rpc_call_opts(path, method, params, NULL, result, err, errlen);
}

int bal_cli_rpc_call_opts(const char *path, const char *method, json_t *params,
			  const struct bal_cli_rpc_opts *o, json_t **result, char *err,
			  size_t errlen)
{
	static const struct bal_cli_rpc_opts defaults = { .timeout = BAL_CLI_RPC_TIMEOUT };
	json_t *req;
	char *s = NULL, *line = NULL;
	int fd, rc = -1, r;

	/* "o" takes the reference, also when json_pack fails. */
	req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1, "method", method,
			"params", params ? json_incref(params) : json_object());
	s = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fd = connect_socket(path, err, errlen);
	if (fd < 0)
		goto out_free;
	r = send_all(fd, s, strlen(s));
	if (r == 0)
		r = send_all(fd, "\n", 1);
	if (r < 0) {
		snprintf(err, errlen, "sending to ballastd: %s", strerror(-r));
		goto out_close;
	}
	line = recv_response(fd, o ? o : &defaults, err, errlen);
	if (line)
		rc = parse_response(line, result, err, errlen);
out_close:
	close(fd);
out_free:
	free(line);
	explicit_bzero(s, strlen(s));	/* it may hold credentials */
	free(s);
	return rc;
}
