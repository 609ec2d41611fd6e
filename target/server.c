/* SPDX-License-Identifier: MIT */
/*
 * Listeners, acceptor and workers.  The main thread polls the listening
 * sockets and a signalfd; each accepted socket is handed to a worker
 * (round robin) by message and stays there for its whole life.  On
 * SIGTERM/SIGINT the listeners close, every worker drains its connections
 * (handshakes are dropped, in-flight requests are answered, new ones get
 * ESHUTDOWN) and quits when it owns none; a connection that has not
 * finished after DRAIN_TIMEOUT seconds is closed.  The cipher pool
 * (cipher_pool.c) starts with the workers and stops after them.
 */
#include "target/server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "target/nbd_internal.h"

#define DRAIN_TIMEOUT 20
#define MAX_WORKERS 64
/*
 * Send buffer of a connection: room for a whole read reply of the common
 * 1 MiB size, so one send completes without waiting for the client to
 * drain a default-sized buffer ten times (capped by net.core.wmem_max).
 */
#define SEND_BUF (2 << 20)

struct listener {
	int fd;
	bool is_unix;
	char spec[256];
	char path[108];
};

/* Per-worker connection list; touched only by that worker's thread. */
struct wstate {
	struct bal_worker *w;
	struct bal_server *srv;
	struct conn *head;
	unsigned nconns;
	bool draining;
	struct timespec drain_deadline;
};

struct bal_server {
	struct bal_vstore *store;
	char *default_export;
	unsigned handshake_timeout, request_timeout;
	struct listener ls[BAL_MAX_LISTEN];
	unsigned nls;
	struct wstate ws[MAX_WORKERS];
	unsigned nworkers, rr;
	struct cpool *cpool;		/* cipher work of large encrypted requests */
	struct bal_tier *tier;		/* restored volumes' fetches (may be NULL) */
	int stopping;			/* atomic */
};

struct accept_msg {
	struct bal_msg msg;
	struct bal_server *srv;
	int fd;
	char peer[80];
};

struct bal_vstore *srv_store(struct bal_server *srv) { return srv->store; }
struct cpool *srv_cpool(struct bal_server *srv) { return srv->cpool; }
struct bal_tier *srv_tier(struct bal_server *srv) { return srv->tier; }
const char *srv_default_export(struct bal_server *srv) { return srv->default_export; }
unsigned srv_handshake_timeout(struct bal_server *srv) { return srv->handshake_timeout; }
unsigned srv_request_timeout(struct bal_server *srv) { return srv->request_timeout; }

bool srv_stopping(struct bal_server *srv)
{
	return __atomic_load_n(&srv->stopping, __ATOMIC_RELAXED);
}

static struct wstate *wstate_of(struct bal_server *srv, struct bal_worker *w)
{
	return &srv->ws[bal_worker_id(w)];
}

void srv_conn_new(struct bal_server *srv, struct conn *c)
{
	struct wstate *ws = wstate_of(srv, c->w);

	c->next = ws->head;
	c->prev = NULL;
	if (ws->head)
		ws->head->prev = c;
	ws->head = c;
	ws->nconns++;
}

void srv_conn_gone(struct bal_server *srv, struct conn *c)
{
	struct wstate *ws = wstate_of(srv, c->w);

	if (c->prev)
		c->prev->next = c->next;
	else
		ws->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ws->nconns--;
	if (ws->draining && ws->nconns == 0)
		bal_worker_quit(ws->w);
}

static void worker_tick(struct bal_worker *w, void *arg)
{
	struct wstate *ws = wstate_of(arg, w);
	struct timespec now;
	bool force;

	clock_gettime(CLOCK_MONOTONIC, &now);
	force = ws->draining && now.tv_sec >= ws->drain_deadline.tv_sec;
	for (struct conn *c = ws->head, *next; c; c = next) {
		next = c->next;
		if (force)
			conn_close(c, "still busy after the shutdown grace period");
		else
			conn_tick(c, &now);
	}
}

static void worker_fini(struct bal_worker *w, void *arg)
{
	(void)w;
	(void)arg;
	buf_cache_drain();
}

static void accept_msg_run(struct bal_worker *w, struct bal_msg *m)
{
	struct accept_msg *am = (struct accept_msg *)m;

	if (wstate_of(am->srv, w)->draining) {
		close(am->fd);
		free(am);
		return;
	}
	conn_start(am->srv, w, am->fd, am->peer);
	free(am);
}

static void drain_msg_run(struct bal_worker *w, struct bal_msg *m)
{
	struct accept_msg *am = (struct accept_msg *)m;
	struct wstate *ws = wstate_of(am->srv, w);

	free(am);
	ws->draining = true;
	clock_gettime(CLOCK_MONOTONIC, &ws->drain_deadline);
	ws->drain_deadline.tv_sec += DRAIN_TIMEOUT;
	if (ws->nconns == 0) {
		bal_worker_quit(w);
		return;
	}
	for (struct conn *c = ws->head, *next; c; c = next) {
		next = c->next;
		if (c->transmission)
			tx_drain(c);
		else
			conn_close(c, NULL);
	}
}

static int listen_tcp(struct listener *l, const char *hostport)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char host[256];
	const char *port;
	int fd = -1, one = 1, ret;

	port = strrchr(hostport, ':');
	if (!port || port == hostport || (size_t)(port - hostport) >= sizeof(host)) {
		bal_err("listen %s: expected tcp:HOST:PORT", l->spec);
		return -EINVAL;
	}
	memcpy(host, hostport, (size_t)(port - hostport));
	host[port - hostport] = '\0';
	port++;
	/* Accept [::1] style brackets. */
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret) {
		bal_err("listen %s: %s", l->spec, gai_strerror(ret));
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		ret = -errno;
		bal_err("listen %s: %s", l->spec, strerror(errno));
		close(fd);
		goto out;
	}
	l->fd = fd;
	ret = 0;
out:
	freeaddrinfo(res);
	return ret;
}

static int listen_unix(struct listener *l, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		bal_err("listen %s: path too long", l->spec);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file nobody answers on is left over from a crash. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		bal_err("listen %s: another server is listening there", l->spec);
		close(fd);
		return -EADDRINUSE;
	}
	close(fd);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		ret = -errno;
		bal_err("listen %s: %s", l->spec, strerror(errno));
		close(fd);
		return ret;
	}
	l->fd = fd;
	l->is_unix = true;
	snprintf(l->path, sizeof(l->path), "%s", path);
	return 0;
}

int bal_server_open(const struct bal_server_opts *opts, struct bal_server **out)
{
	struct bal_server *srv;
	long ncpu;
	int ret;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->store = opts->store;
	if (opts->opts_size >= offsetof(struct bal_server_opts, tier) + sizeof(opts->tier))
		srv->tier = opts->tier;
	srv->handshake_timeout = opts->handshake_timeout ? opts->handshake_timeout : 10;
	srv->request_timeout = opts->request_timeout ? opts->request_timeout : 30;
	if (opts->default_export && !(srv->default_export = strdup(opts->default_export))) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < opts->nlisten && i < BAL_MAX_LISTEN; i++) {
		struct listener *l = &srv->ls[srv->nls];
		const char *s = opts->listen[i];

		l->fd = -1;
		snprintf(l->spec, sizeof(l->spec), "%s", s);
		if (!strncmp(s, "tcp:", 4))
			ret = listen_tcp(l, s + 4);
		else if (!strncmp(s, "unix:", 5))
			ret = listen_unix(l, s + 5);
		else {
			bal_err("listen %s: expected tcp:HOST:PORT or unix:PATH", s);
			ret = -EINVAL;
		}
		if (ret < 0)
			goto err;
		srv->nls++;
		bal_info("listening on %s", s);
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* One cipher thread per CPU: a single stream's AES spreads over all cores. */
	ret = cpool_create(ncpu > 0 ? (unsigned)ncpu : 1, &srv->cpool);
	if (ret < 0)
		goto err;
	srv->nworkers = opts->workers ? opts->workers : (ncpu > 0 ? (unsigned)ncpu : 1);
	if (srv->nworkers > MAX_WORKERS)
		srv->nworkers = MAX_WORKERS;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct bal_worker_ops ops = { .tick = worker_tick, .fini = worker_fini, .arg = srv };

		srv->ws[i].srv = srv;
		ret = bal_worker_create(i, &ops, &srv->ws[i].w);
		if (ret < 0) {
			srv->nworkers = i;
			goto err;
		}
	}
	*out = srv;
	return 0;
err:
	bal_server_close(srv);
	return ret;
}

static void peer_name(int fd, bool is_unix, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64], port[16];

	if (is_unix) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);

		if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl))
			snprintf(buf, len, "unix uid %u pid %d", (unsigned)cr.uid, (int)cr.pid);
		else
			snprintf(buf, len, "unix");
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, len, "tcp");
		return;
	}
	snprintf(buf, len, "%s:%s", host, port);
}

static void accept_one(struct bal_server *srv, struct listener *l)
{
	struct accept_msg *am;
	int fd, one = 1, sndbuf = SEND_BUF;

	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			bal_warn("accept on %s: %s", l->spec, strerror(errno));
		if (errno == EMFILE || errno == ENFILE)
			usleep(100000);	/* let connections close before retrying */
		return;
	}
	if (!l->is_unix)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	am = calloc(1, sizeof(*am));
	if (!am) {
		close(fd);
		return;
	}
	am->srv = srv;
	am->fd = fd;
	am->msg.fn = accept_msg_run;
	peer_name(fd, l->is_unix, am->peer, sizeof(am->peer));
	bal_worker_post(srv->ws[srv->rr++ % srv->nworkers].w, &am->msg);
}

int bal_server_run(struct bal_server *srv)
{
	struct pollfd pfd[BAL_MAX_LISTEN + 1];
	sigset_t set;
	int sfd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		bal_err("signalfd: %s", strerror(errno));
		return -errno;
	}
	for (;;) {
		unsigned n = 0;

		pfd[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		for (unsigned i = 0; i < srv->nls; i++)
			pfd[n++] = (struct pollfd){ .fd = srv->ls[i].fd, .events = POLLIN };
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			bal_err("poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				bal_info("signal %u: shutting down", si.ssi_signo);
			break;
		}
		for (unsigned i = 0; i < srv->nls; i++)
			if (pfd[i + 1].revents)
				accept_one(srv, &srv->ls[i]);
	}
	close(sfd);
	__atomic_store_n(&srv->stopping, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < srv->nls; i++) {
		close(srv->ls[i].fd);
		srv->ls[i].fd = -1;
	}
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct accept_msg *am = calloc(1, sizeof(*am));

		if (!am)
			return -ENOMEM;
		am->srv = srv;
		am->msg.fn = drain_msg_run;
		bal_worker_post(srv->ws[i].w, &am->msg);
	}
	for (unsigned i = 0; i < srv->nworkers; i++) {
		bal_worker_destroy(srv->ws[i].w);
		srv->ws[i].w = NULL;
	}
	srv->nworkers = 0;
	return 0;
}

void bal_server_close(struct bal_server *srv)
{
	if (!srv)
		return;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		/* Never ran: nothing to drain. */
		struct accept_msg *am = calloc(1, sizeof(*am));

		if (am) {
			am->srv = srv;
			am->msg.fn = drain_msg_run;
			bal_worker_post(srv->ws[i].w, &am->msg);
		}
		bal_worker_destroy(srv->ws[i].w);
	}
	/* After the workers: each job's request kept its worker running. */
	cpool_destroy(srv->cpool);
	for (unsigned i = 0; i < srv->nls; i++) {
		if (srv->ls[i].fd >= 0)
			close(srv->ls[i].fd);
		if (srv->ls[i].is_unix)
			unlink(srv->ls[i].path);
	}
	free(srv->default_export);
	free(srv);
}
