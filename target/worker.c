/* SPDX-License-Identifier: MIT */
/*
 * io_uring worker thread.  The loop submits what callbacks queued, waits
 * for at least one completion, and dispatches every completion to its
 * bal_io.  A read stays armed on an eventfd so bal_worker_post() can wake
 * the loop; a one-second timeout SQE drives the tick callback.
 */
#include "target/worker.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

#define RING_ENTRIES 512
/*
 * Reads of at least this size go to io_uring's own worker threads
 * (IOSQE_ASYNC): their copy out of the page cache then runs beside this
 * thread's socket copies instead of in line with them.  Smaller reads run
 * inline, where a cached read costs no thread hop.
 */
#define ASYNC_READ_MIN (128u << 10)

struct bal_worker {
	unsigned id;
	struct io_uring ring;
	pthread_t thread;
	bool quit;
	struct bal_worker_ops ops;

	/* Wake-up: an eventfd with an armed read. */
	int efd;
	uint64_t efd_val;
	struct bal_io efd_io;

	struct bal_io tick_io;
	struct __kernel_timespec tick_ts;

	/* mbox_lock protects mbox_head/mbox_tail only. */
	pthread_mutex_t mbox_lock;
	struct bal_msg *mbox_head, *mbox_tail;
};

static struct io_uring_sqe *get_sqe(struct bal_worker *w)
{
	struct io_uring_sqe *sqe;

	/* A full SQ is drained by submitting; the kernel queues, never drops. */
	while (!(sqe = io_uring_get_sqe(&w->ring)))
		io_uring_submit(&w->ring);
	return sqe;
}

static void arm_efd(struct bal_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
	io_uring_sqe_set_data(sqe, &w->efd_io);
}

static void arm_tick(struct bal_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	w->tick_ts.tv_sec = 1;
	w->tick_ts.tv_nsec = 0;
	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data(sqe, &w->tick_io);
}

static void drain_mbox(struct bal_worker *w)
{
	struct bal_msg *m;

	pthread_mutex_lock(&w->mbox_lock);
	m = w->mbox_head;
	w->mbox_head = w->mbox_tail = NULL;
	pthread_mutex_unlock(&w->mbox_lock);
	while (m) {
		struct bal_msg *next = m->next;

		m->fn(w, m);
		m = next;
	}
}

static void efd_done(struct bal_io *io, int res)
{
	struct bal_worker *w = (struct bal_worker *)((char *)io - offsetof(struct bal_worker, efd_io));

	if (res < 0 && res != -EINTR && res != -EAGAIN)
		bal_err("worker %u: eventfd read: %s", w->id, strerror(-res));
	drain_mbox(w);
	arm_efd(w);
}

static void tick_done(struct bal_io *io, int res)
{
	struct bal_worker *w = (struct bal_worker *)((char *)io - offsetof(struct bal_worker, tick_io));

	(void)res;
	if (w->ops.tick)
		w->ops.tick(w, w->ops.arg);
	arm_tick(w);
}

static void *worker_main(void *arg)
{
	struct bal_worker *w = arg;
	int ret;

	if (w->ring.flags & IORING_SETUP_R_DISABLED) {
		/* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
		ret = (int)syscall(__NR_io_uring_register, w->ring.ring_fd,
				   IORING_REGISTER_ENABLE_RINGS, NULL, 0);
		if (ret < 0) {
			bal_err("worker %u: enabling the ring: %s", w->id, strerror(errno));
			abort();
		}
	}
	arm_efd(w);
	arm_tick(w);
	/* Messages posted before the read was armed. */
	drain_mbox(w);
	while (!w->quit) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		ret = io_uring_submit_and_wait(&w->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN) {
			bal_err("worker %u: io_uring_submit_and_wait: %s", w->id, strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			struct bal_io *io = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			n++;
			/* Completions may queue SQEs; the ring has room for both. */
			if (io)
				io->done(io, res);
		}
		io_uring_cq_advance(&w->ring, n);
	}
	if (w->ops.fini)
		w->ops.fini(w, w->ops.arg);
	return NULL;
}

int bal_worker_create(unsigned id, const struct bal_worker_ops *ops, struct bal_worker **out)
{
	struct io_uring_params p;
	struct bal_worker *w;
	int ret;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->id = id;
	if (ops)
		w->ops = *ops;
	w->efd_io.done = efd_done;
	w->tick_io.done = tick_done;
	pthread_mutex_init(&w->mbox_lock, NULL);
	w->efd = eventfd(0, EFD_CLOEXEC);
	if (w->efd < 0) {
		ret = -errno;
		goto err_free;
	}
	/*
	 * Only the worker thread submits, and it reaps in the same call, so
	 * completion work runs when it asks for completions rather than
	 * interrupting it (DEFER_TASKRUN).  The ring starts disabled and the
	 * thread enables it, which makes that thread its single issuer.
	 * Kernels without these flags get the plain ring.
	 */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = RING_ENTRIES * 8;
	ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = RING_ENTRIES * 8;
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (ret < 0) {
		bal_err("worker %u: io_uring_queue_init: %s", id, strerror(-ret));
		goto err_close_efd;
	}
	ret = -pthread_create(&w->thread, NULL, worker_main, w);
	if (ret < 0)
		goto err_exit_ring;
	*out = w;
	return 0;

err_exit_ring:
	io_uring_queue_exit(&w->ring);
err_close_efd:
	close(w->efd);
err_free:
	pthread_mutex_destroy(&w->mbox_lock);
	free(w);
	return ret;
}

void bal_worker_destroy(struct bal_worker *w)
{
	if (!w)
		return;
	pthread_join(w->thread, NULL);
	io_uring_queue_exit(&w->ring);
	close(w->efd);
	pthread_mutex_destroy(&w->mbox_lock);
	free(w);
}

void bal_worker_quit(struct bal_worker *w)
{
	w->quit = true;
}

unsigned bal_worker_id(const struct bal_worker *w)
{
	return w->id;
}

void bal_worker_post(struct bal_worker *w, struct bal_msg *msg)
{
	uint64_t one = 1;

	msg->next = NULL;
	pthread_mutex_lock(&w->mbox_lock);
	if (w->mbox_tail)
		w->mbox_tail->next = msg;
	else
		w->mbox_head = msg;
	w->mbox_tail = msg;
	pthread_mutex_unlock(&w->mbox_lock);
	if (write(w->efd, &one, sizeof(one)) < 0)
		bal_err("worker %u: eventfd write: %s", w->id, strerror(errno));
}

void bal_worker_recv(struct bal_worker *w, struct bal_io *io, int fd, void *buf, size_t len)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_recv(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data(sqe, io);
}

void bal_worker_sendmsg(struct bal_worker *w, struct bal_io *io, int fd,
			const struct iovec *iov, unsigned iovcnt, void *msghdr_storage)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	struct msghdr *mh = msghdr_storage;

	memset(mh, 0, sizeof(*mh));
	mh->msg_iov = (struct iovec *)iov;
	mh->msg_iovlen = iovcnt;
	io_uring_prep_sendmsg(sqe, fd, mh, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, io);
}

void bal_worker_read(struct bal_worker *w, struct bal_io *io, int fd, void *buf,
		     uint32_t len, uint64_t off)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, fd, buf, len, off);
	if (len >= ASYNC_READ_MIN)
		sqe->flags |= IOSQE_ASYNC;
	io_uring_sqe_set_data(sqe, io);
}

void bal_worker_write(struct bal_worker *w, struct bal_io *io, int fd, const void *buf,
		      uint32_t len, uint64_t off)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_write(sqe, fd, buf, len, off);
	io_uring_sqe_set_data(sqe, io);
}

void bal_worker_cancel(struct bal_worker *w, struct bal_io *io)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_cancel(sqe, io, 0);
	io_uring_sqe_set_data(sqe, NULL);
}
