/* SPDX-License-Identifier: MIT */
/*
 * Control socket server: JSON-RPC 2.0, one request per line, on a Unix
 * socket owned by root with mode 0600.
 *
 * One control thread owns the listener and every client; nothing else
 * touches them.  The thread polls the listener, the clients, a stop
 * eventfd and a job eventfd, reads lines, serves each request in order
 * (control_rpc.c decodes it and calls its method) and queues the response.
 * A client's input is not read while its output is pending, so one client
 * cannot make the server buffer without bound.  Limits: at most
 * BAL_CTL_MAX_CLIENTS clients (one more is told so and closed), lines of at
 * most BAL_CTL_MAX_LINE bytes, BAL_CTL_IDLE_TIMEOUT seconds of silence.
 *
 * Jobs.  A request for a long method (an export of GiBs) runs on a thread
 * of its own, so the other clients are still served.  Meanwhile the
 * control thread reads nothing more from that client (its next requests
 * wait, in order), does not time it out, and still watches its socket for
 * a hang-up.  The job thread never writes to the socket: its progress
 * notifications and its response pass to the control thread through the
 * job's mailbox (struct ctl_job, under its lock) and the job eventfd, and
 * the control thread queues them in order.  A client that hangs up, or
 * bal_ctl_close, cancels the job: its progress callback then returns
 * non-zero.  At most CTL_MAX_JOBS jobs run at once.
 */
#include "target/control.h"
#include "target/control_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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
/* Long operations running at once; one more is refused with EBUSY. */
#define CTL_MAX_JOBS 8
/* Progress notifications: at most one per this many milliseconds. */
#define CTL_PROGRESS_MS 200
/* Progress lines are dropped while this much output waits for the client. */
#define CTL_NOTE_BACKLOG (64u << 10)

/*
 * One long request on its thread.  The job thread owns @call; the control
 * thread owns the rest except what @lock protects (the mailbox) and
 * @cancel.  The client's fd stays open until the job is joined.
 */
struct ctl_job {
	struct bal_ctl *ctl;
	struct bal_ctl_call *call;
	pthread_t thread;
	int fd;			/* the client's socket, to notice a hang-up */
	atomic_bool cancel;	/* the client went, or the server is closing */
	/* Progress state, job thread only. */
	uint64_t p_done, p_total;
	uint64_t s_done, s_total;	/* last sent */
	int64_t p_last_ms;		/* when the last one was sent */
	bool p_seen, p_sent;
	pthread_mutex_t lock;	/* protects the mailbox below */
	char *note;		/* newest unsent progress line (coalesced) */
	json_t *resp;		/* the response, once finished */
	bool finished;
	bool failed;		/* the response could not be built */
};

struct ctl_client {
	int fd;			/* -1: free slot */
	uid_t uid;
	char *in;		/* received bytes not yet served */
	size_t in_len, in_cap;
	char *out;		/* responses not yet sent */
	size_t out_len, out_off;
	time_t last;		/* monotonic seconds of the last progress */
	bool closing;		/* close once the output is flushed */
	struct ctl_job *job;	/* the long request running, or NULL */
};

struct bal_ctl {
	struct bal_ctl_state state;
	char *path;
	dev_t dev;		/* identity of our socket file, to unlink only it */
	ino_t ino;
	int lfd;
	int stop_fd;
	int job_fd;		/* eventfd: a job has news */
	unsigned njobs;
	pthread_t thread;
	struct ctl_client clients[BAL_CTL_MAX_CLIENTS];
};

static time_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- clients ---- */

static void client_close(struct ctl_client *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	*c = (struct ctl_client){ .fd = -1 };
}

/* Append one line (without its newline) to the client's output. */
static int client_queue_str(struct ctl_client *c, const char *s, size_t n)
{
	char *p;

	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	p = realloc(c->out, c->out_len + n + 1);
	if (!p)
		return -ENOMEM;
	c->out = p;
	memcpy(c->out + c->out_len, s, n);
	c->out[c->out_len + n] = '\n';
	c->out_len += n + 1;
	return 0;
}

static int client_queue(struct ctl_client *c, json_t *resp)
{
	char *s;
	int r;

	s = json_dumps(resp, JSON_COMPACT);
	json_decref(resp);
	if (!s)
		return -ENOMEM;
	r = client_queue_str(c, s, strlen(s));
	free(s);
	return r;
}

static void client_flush(struct ctl_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t r = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				c->closing = true, c->out_off = c->out_len;
				if (c->job)
					atomic_store(&c->job->cancel, true);
			}
			return;
		}
		c->out_off += (size_t)r;
		c->last = now_s();
	}
}

/* ---- jobs ---- */

static void wake(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one)) {
		/* Only a saturated counter fails, and then a wake-up is pending. */
	}
}

/* The client closed its socket (it can never read the answer), or the server is closing. */
static bool job_cancelled(struct ctl_job *j)
{
	struct pollfd pfd = { .fd = j->fd };

	if (atomic_load(&j->cancel))
		return true;
	/*
	 * POLLHUP, not POLLRDHUP: a client that only shut down its sending
	 * side still waits for the answer.
	 */
	if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))) {
		atomic_store(&j->cancel, true);
		return true;
	}
	return false;
}

/* Post a progress line to the mailbox, replacing one not yet sent. */
static void job_note(struct ctl_job *j, uint64_t done, uint64_t total)
{
	json_t *n = json_pack("{s:s, s:s, s:{s:O, s:I, s:I}}", "jsonrpc", "2.0", "method",
			      "progress", "params", "id", j->call->id, "done", (json_int_t)done,
			      "total", (json_int_t)total);
	char *s = n ? json_dumps(n, JSON_COMPACT) : NULL;

	json_decref(n);
	if (!s)
		return;		/* a progress line is not worth failing the job for */
	pthread_mutex_lock(&j->lock);
	free(j->note);
	j->note = s;
	pthread_mutex_unlock(&j->lock);
	j->s_done = done;
	j->s_total = total;
	j->p_sent = true;
	j->p_last_ms = now_ms();
	wake(j->ctl->job_fd);
}

int bal_ctl_progress(void *arg, uint64_t done, uint64_t total)
{
	struct bal_ctl_call *call = arg;
	struct ctl_job *j = call->job;

	if (!j)
		return 0;
	if (job_cancelled(j))
		return 1;
	if (!call->progress)
		return 0;
	j->p_done = done;
	j->p_total = total;
	j->p_seen = true;
	if (!j->p_sent || now_ms() - j->p_last_ms >= CTL_PROGRESS_MS)
		job_note(j, done, total);
	return 0;
}

static void *job_thread(void *arg)
{
	struct ctl_job *j = arg;
	json_t *resp = NULL;
	int r;

	bal_ctl_call_run(j->call);
	/* The final state, unless the last line sent already said it. */
	if (j->p_seen && (j->s_done != j->p_done || j->s_total != j->p_total))
		job_note(j, j->p_done, j->p_total);
	r = bal_ctl_call_response(j->call, &resp);
	pthread_mutex_lock(&j->lock);
	j->resp = resp;
	j->failed = r < 0;
	j->finished = true;
	pthread_mutex_unlock(&j->lock);
	wake(j->ctl->job_fd);
	return NULL;
}

/* Wait for the job thread and free the job (the control thread's part). */
static void job_join(struct bal_ctl *ctl, struct ctl_client *c)
{
	struct ctl_job *j = c->job;

	pthread_join(j->thread, NULL);
	bal_ctl_call_destroy(j->call);
	free(j->note);
	json_decref(j->resp);
	pthread_mutex_destroy(&j->lock);
	free(j);
	c->job = NULL;
	ctl->njobs--;
}

/* Answer @call at once (it failed before it could start) and free it. */
static void job_refuse(struct ctl_client *c, struct bal_ctl_call *call)
{
	json_t *resp = NULL;

	bal_warn("control: %s (uid %u): %s", call->method, (unsigned)call->uid, call->msg);
	if (bal_ctl_call_response(call, &resp) < 0 || (resp && client_queue(c, resp) < 0))
		c->closing = true;
	bal_ctl_call_destroy(call);
}

/* Run @call on a thread of its own for client @c (takes @call). */
static void job_start(struct bal_ctl *ctl, struct ctl_client *c, struct bal_ctl_call *call)
{
	struct ctl_job *j;
	int r;

	if (ctl->njobs >= CTL_MAX_JOBS) {
		bal_ctl_fail_errno(call, -EBUSY,
				   "too many long operations (at most %d at a time): try again later",
				   CTL_MAX_JOBS);
		job_refuse(c, call);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		bal_ctl_fail_errno(call, -ENOMEM, "out of memory");
		job_refuse(c, call);
		return;
	}
	j->ctl = ctl;
	j->call = call;
	j->fd = c->fd;
	atomic_init(&j->cancel, false);
	pthread_mutex_init(&j->lock, NULL);
	call->job = j;
	r = pthread_create(&j->thread, NULL, job_thread, j);
	if (r) {
		pthread_mutex_destroy(&j->lock);
		free(j);
		call->job = NULL;
		bal_ctl_fail_errno(call, -r, "cannot start the operation: %s", strerror(r));
		job_refuse(c, call);
		return;
	}
	c->job = j;
	ctl->njobs++;
}

/* Serve every complete line buffered, as long as the output stays small. */
static void client_serve_lines(struct bal_ctl *ctl, struct ctl_client *c)
{
	size_t start = 0;

	/* A job holds back the lines behind it, so answers keep their order. */
	while (!c->job && c->out_len - c->out_off < CTL_OUT_HIGH) {
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
			struct bal_ctl_call *job;
			json_t *resp;

			if (bal_ctl_serve_line(&ctl->state, c->uid, c->in + start, len, &resp,
					       &job) < 0 ||
			    (resp && client_queue(c, resp) < 0))
				c->closing = true;
			else if (job)
				job_start(ctl, c, job);
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

/*
 * Move what the jobs posted to their clients' output: progress lines, then
 * the response of a finished job, after which the requests that waited
 * behind it are served.
 */
static void jobs_collect(struct bal_ctl *ctl)
{
	uint64_t v;

	if (read(ctl->job_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already drained; the scan below is cheap anyway. */
	}
	for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++) {
		struct ctl_client *c = &ctl->clients[i];
		struct ctl_job *j = c->job;
		bool finished, failed, gone;
		json_t *resp;
		char *note;

		if (!j)
			continue;
		pthread_mutex_lock(&j->lock);
		note = j->note;
		j->note = NULL;
		finished = j->finished;
		failed = j->failed;
		resp = j->resp;
		j->resp = NULL;
		pthread_mutex_unlock(&j->lock);
		gone = atomic_load(&j->cancel);
		/* A client that does not read its progress lines loses some, not memory. */
		if (note && !gone && c->out_len - c->out_off < CTL_NOTE_BACKLOG &&
		    client_queue_str(c, note, strlen(note)) < 0)
			c->closing = true;
		free(note);
		if (!finished)
			goto flush;
		job_join(ctl, c);
		c->last = now_s();
		if (gone)
			json_decref(resp);
		else if (failed || (resp && client_queue(c, resp) < 0))
			c->closing = true;
		if (!gone)
			client_serve_lines(ctl, c);
flush:
		if (!gone)
			client_flush(c);
		if (!c->job && c->closing && c->out_off == c->out_len)
			client_close(c);
	}
}

static void *ctl_thread(void *arg)
{
	struct bal_ctl *ctl = arg;
	struct pollfd fds[BAL_CTL_MAX_CLIENTS + 3];
	int map[BAL_CTL_MAX_CLIENTS + 3];

	for (;;) {
		nfds_t n = 3;
		time_t now;

		fds[0] = (struct pollfd){ .fd = ctl->stop_fd, .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = ctl->lfd, .events = POLLIN };
		fds[2] = (struct pollfd){ .fd = ctl->job_fd, .events = POLLIN };
		for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++) {
			struct ctl_client *c = &ctl->clients[i];

			if (c->fd < 0)
				continue;
			/* A cancelled job's client only waits for the job to end. */
			if (c->job && atomic_load(&c->job->cancel))
				continue;
			/* With a job running, only its output and a hang-up. */
			fds[n] = (struct pollfd){ .fd = c->fd };
			if (c->out_off < c->out_len)
				fds[n].events = POLLOUT;
			else if (!c->closing && !c->job)
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
		for (nfds_t k = 3; k < n; k++) {
			struct ctl_client *c = &ctl->clients[map[k]];

			if (fds[k].revents & POLLIN) {
				client_read(ctl, c);
			} else if (fds[k].revents & (POLLERR | POLLHUP | POLLNVAL)) {
				c->closing = true, c->out_off = c->out_len;
				if (c->job) {
					atomic_store(&c->job->cancel, true);
					c->in_len = 0;
				}
			}
			client_flush(c);
			/* Output drained: serve what waited behind it. */
			while (!c->job && c->out_off == c->out_len && c->in_len &&
			       memchr(c->in, '\n', c->in_len)) {
				client_serve_lines(ctl, c);
				client_flush(c);
			}
			/* A job's client is closed once the job has ended, never idle. */
			if (!c->job && ((c->closing && c->out_off == c->out_len) ||
					now - c->last > BAL_CTL_IDLE_TIMEOUT))
				client_close(c);
		}
		/* After the clients, so a job's response follows its progress lines. */
		if (fds[2].revents & POLLIN)
			jobs_collect(ctl);
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
	ctl->state.tier = opts->tier;
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
	ctl->job_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctl->job_fd < 0) {
		r = -errno;
		goto err_close_stop;
	}
	r = -pthread_create(&ctl->thread, NULL, ctl_thread, ctl);
	if (r < 0)
		goto err_close_job;
	bal_info("control: listening on %s", opts->path);
	*out = ctl;
	return 0;

err_close_job:
	close(ctl->job_fd);
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
	/* Cancel every job first, so they wind down together, then wait for each. */
	for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++)
		if (ctl->clients[i].job)
			atomic_store(&ctl->clients[i].job->cancel, true);
	for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++)
		if (ctl->clients[i].job)
			job_join(ctl, &ctl->clients[i]);
	for (int i = 0; i < BAL_CTL_MAX_CLIENTS; i++)
		if (ctl->clients[i].fd >= 0)
			client_close(&ctl->clients[i]);
	bal_ctl_state_fini(&ctl->state);
	close(ctl->lfd);
	close(ctl->stop_fd);
	close(ctl->job_fd);
	/* Another daemon may have replaced the file since: leave that one. */
	if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
