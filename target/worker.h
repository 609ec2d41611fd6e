/* SPDX-License-Identifier: MIT */
/*
 * I/O worker: one thread, one io_uring.  Every socket and pool operation of
 * the connections a worker owns is an SQE on its ring; completions call the
 * bal_io's callback on the worker thread.  Other threads talk to a worker
 * only through bal_worker_post() (a locked mailbox and an eventfd the ring
 * keeps a read armed on).  This is the only file that uses liburing.
 */
#ifndef BAL_WORKER_H
#define BAL_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct bal_worker;

/* An operation in flight; embed it and recover the container in @done. */
struct bal_io {
	void (*done)(struct bal_io *io, int res);
};

/* A message for a worker; runs @fn(msg) on the worker thread. */
struct bal_msg {
	void (*fn)(struct bal_worker *w, struct bal_msg *msg);
	struct bal_msg *next;
};

struct bal_worker_ops {
	/* Called about once a second on the worker thread (timeouts). */
	void (*tick)(struct bal_worker *w, void *arg);
	/* Called on the worker thread just before it exits. */
	void (*fini)(struct bal_worker *w, void *arg);
	void *arg;
};

/* Create and start a worker thread.  *out owned by the caller. */
int bal_worker_create(unsigned id, const struct bal_worker_ops *ops,
		      struct bal_worker **out);

/* Ask the loop to end once bal_worker_quit() was called; join; free. */
void bal_worker_destroy(struct bal_worker *w);

/* From the worker thread: leave the loop after this iteration. */
void bal_worker_quit(struct bal_worker *w);

unsigned bal_worker_id(const struct bal_worker *w);

/* Any thread: queue @msg (not copied; owned by the receiver until run). */
void bal_worker_post(struct bal_worker *w, struct bal_msg *msg);

/* Worker thread only.  Each queues one SQE; @io->done runs on completion. */
void bal_worker_recv(struct bal_worker *w, struct bal_io *io, int fd, void *buf, size_t len);
void bal_worker_sendmsg(struct bal_worker *w, struct bal_io *io, int fd,
			const struct iovec *iov, unsigned iovcnt, void *msghdr_storage);
void bal_worker_read(struct bal_worker *w, struct bal_io *io, int fd, void *buf,
		     uint32_t len, uint64_t off);
void bal_worker_write(struct bal_worker *w, struct bal_io *io, int fd, const void *buf,
		      uint32_t len, uint64_t off);
/* Cancel an operation queued with @io (its done() still runs, with -ECANCELED). */
void bal_worker_cancel(struct bal_worker *w, struct bal_io *io);

#endif
