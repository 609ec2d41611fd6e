/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 client for the `ballast` CLI: connect to the control socket,
 * send one request line, read one response line (bounded in size and
 * time), and hand back the result or the daemon's error message.
 */
#include "tools/cli_rpc.h"

#include <errno.h>
#include <poll.h>
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

/* Read up to the first newline; returns the malloc'ed line or NULL. */
static char *recv_line(int fd, char *err, size_t errlen)
{
	time_t deadline = time(NULL) + BAL_CLI_RPC_TIMEOUT;
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		time_t left = deadline - time(NULL);
		ssize_t r;
		char *nl;

		if (left <= 0) {
			snprintf(err, errlen, "no response from ballastd within %d s",
				 BAL_CLI_RPC_TIMEOUT);
			goto err_free;
		}
		r = poll(&pfd, 1, (int)left * 1000);
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
		nl = memchr(buf + len, '\n', (size_t)r);
		len += (size_t)r;
		if (nl) {
			*nl = '\0';
			return buf;
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
	line = recv_line(fd, err, errlen);
	if (line)
		rc = parse_response(line, result, err, errlen);
out_close:
	close(fd);
out_free:
	free(line);
	free(s);
	return rc;
}
