/* SPDX-License-Identifier: MIT */
/*
 * Control socket server: JSON-RPC 2.0, one request per line, on a Unix
 * socket owned by root with mode 0600.
 *
 * One control thread owns the listener and every client; nothing else
 * touches them, so there is no lock.  The thread polls the listener, the
 * clients and a stop eventfd, reads lines, serves each request in order
 * (control_rpc.c decodes it and calls its method) and queues the response.  A client's input is not read while its output is pending, so
 * one client cannot make the server buffer without bound.  Limits: at most
 * BAL_CTL_MAX_CLIENTS clients (one more is told so and closed), lines of at
 * most BAL_CTL_MAX_LINE bytes, BAL_CTL_IDLE_TIMEOUT seconds of silence.
 */
#include "target/control.h"
#include "target/control_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* Responses queued beyond this stop the reading of further requests. */
#define CTL_OUT_HIGH (1u << 20)

struct ctl_client {
	int fd;			/* -1: free slot */
	uid_t uid;
	char *in;		/* received bytes not yet served */
	size_t in_len, in_cap;
	char *out;		/* responses not yet sent */
	size_t out_len, out_off;
	time_t last;		/* monotonic seconds of the last progress */
	bool closing;		/* close once the output is flushed */
};

struct bal_ctl {
	struct bal_ctl_state state;
	char *path;
	dev_t dev;		/* identity of our socket file, to unlink only it */
	ino_t ino;
	int lfd;
	int stop_fd;
	pthread_t thread;
	struct ctl_client clients[BAL_CTL_MAX_CLIENTS];
};

static time_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* ---- clients ---- */

static void client_close(struct ctl_client *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	*c = (struct ctl_client){ .fd = -1 };
}

static int client_queue(struct ctl_client *c, json_t *resp)
{
	char *s, *p;
	size_t n;

	s = json_dumps(resp, JSON_COMPACT);
	json_decref(resp);
	if (!s)
		return -ENOMEM;
	n = strlen(s);
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	p = realloc(c->out, c->out_len + n + 1);
	if (!p) {
		free(s);
		return -ENOMEM;
	}
	c->out = p;
	memcpy(c->out + c->out_len, s, n);
	c->out[c->out_len + n] = '\n';
	c->out_len += n + 1;
	free(s);
	return 0;
}

static void client_flush(struct ctl_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t r = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				c->closing = true, c->out_off = c->out_len;
			return;
		}
		c->out_off += (size_t)r;
		c->last = now_s();
	}
}

/* Serve every complete line buffered, as long as the output stays small. */
static void client_serve_lines(struct bal_ctl *ctl, struct ctl_client *c)
{
	size_t start = 0;

	while (c->out_len - c->out_off < CTL_OUT_HIGH) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len, end;

		if (!nl && !(c->closing && start < c->in_len))
			break;
		end = nl ? (size_t)(nl - c->in) : c->in_len;
		len = end - start;
		while (len && (c->in[start + len - 1] == '\r' || c->in[start + len - 1] == ' ' ||
			       c->in[start + len - 1] == '\t'))
			len--;
		if (len) {
			json_t *resp;

			if (bal_ctl_serve_line(&ctl->state, c->uid, c->in + start, len, &resp) < 0 ||
			    (resp && client_queue(c, resp) < 0))
				c->closing = true;
		}
		start = nl ? end + 1 : c->in_len;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
}

static void client_read(struct bal_ctl *ctl, struct ctl_client *c)
{
	ssize_t r;

	if (c->in_cap - c->in_len < 4096 && c->in_cap < BAL_CTL_MAX_LINE) {
		size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
		char *p;

		if (cap > BAL_CTL_MAX_LINE)
			cap = BAL_CTL_MAX_LINE;
		p = realloc(c->in, cap);
		if (!p) {
			c->closing = true;
			return;
		}
		c->in = p;
		c->in_cap = cap;
	}
	if (c->in_len == c->in_cap)
		return;		/* lines wait for their responses to drain */
	r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (r < 0) {
		if (errno != EAGAIN && errno != EINTR)
			c->closing = true, c->in_len = 0;
		return;
	}
	c->last = now_s();
	if (r == 0)
		c->closing = true;	/* serve what is left, answer, then close */
	c->in_len += (size_t)r;
	client_serve_lines(ctl, c);
	/* A full buffer without a newline: the line is over the limit. */
	if (c->in_len >= BAL_CTL_MAX_LINE && !c->closing && !memchr(c->in, '\n', c->in_len)) {
		json_t *resp = bal_ctl_error_response(NULL, BAL_RPC_INVALID_REQUEST, 0,
						      "request line too long (limit 1 MiB)");

		if (resp)
			client_queue(c, resp);
		bal_warn("control: request line over %u bytes from uid %u; closing",
			 BAL_CTL_MAX_LINE, (unsigned)c->uid);
		c->closing = true;
		c->in_len = 0;
	}
}

static void accept_clients(struct bal_ctl *ctl)
{
	for (int k = 0; k < BAL_CTL_MAX_CLIENTS; k++) {
		struct ucred cred = { .uid = (uid_t)-1 };
		socklen_t clen = sizeof(cred);
		struct ctl_client *c = NULL;
		int fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				bal_warn("control: accept: %s", strerror(errno));
			return;
		}
		for (int i = 0; i < BAL_CTL_MAX_CLIENTS && !c; i++)
			if (ctl->clients[i].fd < 0)
				c = &ctl->clients[i];
		if (!c) {
			static const char busy[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32016,\"message\":\"too many control clients\",\"data\":{\"errno\":16,\"name\":\"EBUSY\"}}}\n";

			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* The client learns it from the close. */
			}
			close(fd);
			bal_warn("control: more than %d clients; refusing one", BAL_CTL_MAX_CLIENTS);
			continue;
		}
		getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen);
		*c = (struct ctl_client){ .fd = fd, .uid = cred.uid, .last = now_s() };
		bal_debug("control: client %d connected (uid %u)", (int)(c - ctl->clients),
			  (unsigned)cred.uid);
	}
}

static void *ctl_thread(void *arg)
{
	struct bal_ctl *ctl = arg;
	struct pollfd fds[BAL_CTL_MAX_CLIENTS + 2];
	int map[BAL_CTL_MAX_CLIENTS + 2];

	for (;;) {
		nfds_t n = 2;
		time_t now;

		fds[0] = (struct pollfd){ .fd = ctl->stop_fd, .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = ctl->lfd, .events = POLLIN };
		for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++) {
			struct ctl_client *c = &ctl->clients[i];

			if (c->fd < 0)
				continue;
			fds[n] = (struct pollfd){ .fd = c->fd };
			if (c->out_off < c->out_len)
				fds[n].events = POLLOUT;
			else if (!c->closing)
				fds[n].events = POLLIN;
			map[n++] = i;
		}
		if (poll(fds, n, 1000) < 0 && errno != EINTR) {
			bal_err("control: poll: %s", strerror(errno));
			sleep(1);
			continue;
		}
		if (fds[0].revents)
			break;
		if (fds[1].revents & POLLIN)
			accept_clients(ctl);
		now = now_s();
		for (nfds_t k = 2; k < n; k++) {
			struct ctl_client *c = &ctl->clients[map[k]];

			if (fds[k].revents & POLLIN)
				client_read(ctl, c);
			else if (fds[k].revents & (POLLERR | POLLHUP | POLLNVAL))
				c->closing = true, c->out_off = c->out_len;
			client_flush(c);
			/* Output drained: serve what waited behind it. */
			while (c->out_off == c->out_len && c->in_len && memchr(c->in, '\n', c->in_len)) {
				client_serve_lines(ctl, c);
				client_flush(c);
			}
			if ((c->closing && c->out_off == c->out_len) ||
			    now - c->last > BAL_CTL_IDLE_TIMEOUT)
				client_close(c);
		}
	}
	return NULL;
}

/* ---- open and close ---- */

/* A socket file at @path: stale (unlink it) unless a server still answers. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		bal_err("control: %s exists and is not a socket", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (r == 0) {
		bal_err("control: %s is in use by another server", path);
		return -EADDRINUSE;
	}
	bal_info("control: removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int bal_ctl_open(const struct bal_ctl_opts *opts, struct bal_ctl **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct bal_ctl *ctl;
	struct stat st;
	size_t len;
	int r;

	if (!opts || opts->opts_size < sizeof(*opts) || !opts->path || !opts->store)
		return -EINVAL;
	len = strlen(opts->path);
	if (len >= sizeof(sa.sun_path)) {
		bal_err("control: socket path too long: %s", opts->path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, opts->path, len + 1);
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++)
		ctl->clients[i].fd = -1;
	ctl->state.store = opts->store;
	ctl->path = strdup(opts->path);
	if (!ctl->path) {
		r = -ENOMEM;
		goto err_free;
	}
	r = clear_stale(opts->path, &sa);
	if (r < 0)
		goto err_free;
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0) {
		r = -errno;
		goto err_free;
	}
	/* Nobody can connect before listen(), so the mode is set in time. */
	if (bind(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		bal_err("control: bind %s: %s", opts->path, strerror(errno));
		goto err_close_lfd;
	}
	if (chmod(opts->path, 0600) < 0 || stat(opts->path, &st) < 0 ||
	    listen(ctl->lfd, 64) < 0) {
		r = -errno;
		bal_err("control: %s: %s", opts->path, strerror(errno));
		goto err_unlink;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	ctl->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ctl->stop_fd < 0) {
		r = -errno;
		goto err_unlink;
	}
	r = -pthread_create(&ctl->thread, NULL, ctl_thread, ctl);
	if (r < 0)
		goto err_close_stop;
	bal_info("control: listening on %s", opts->path);
	*out = ctl;
	return 0;

err_close_stop:
	close(ctl->stop_fd);
err_unlink:
	unlink(opts->path);
err_close_lfd:
	close(ctl->lfd);
err_free:
	free(ctl->path);
	free(ctl);
	return r;
}

void bal_ctl_close(struct bal_ctl *ctl)
{
	uint64_t one = 1;
	struct stat st;

	if (!ctl)
		return;
	if (write(ctl->stop_fd, &one, sizeof(one)) != sizeof(one))
		bal_warn("control: cannot signal the control thread: %s", strerror(errno));
	pthread_join(ctl->thread, NULL);
	for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++)
		if (ctl->clients[i].fd >= 0)
			client_close(&ctl->clients[i]);
	bal_ctl_state_fini(&ctl->state);
	close(ctl->lfd);
	close(ctl->stop_fd);
	/* Another daemon may have replaced the file since: leave that one. */
	if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
