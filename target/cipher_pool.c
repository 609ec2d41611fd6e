/* SPDX-License-Identifier: MIT */
/*
 * Cipher thread pool: AES-256-XTS of large requests off the worker thread.
 *
 * Inline, a connection's cipher work runs on its worker between socket and
 * pool I/O, so one stream pays for every byte of AES on one core while the
 * other cores idle.  A large request's buffer is instead handed here as one
 * job; the job is cut into CPOOL_CHUNK pieces that every pool thread takes
 * from the head of one locked queue, so a job runs on several cores at
 * once while its worker goes on receiving and sending other requests.  The
 * thread that finishes a job's last piece posts the job's message to the
 * job's worker, which carries the request on (write: map and pool writes;
 * read: the reply).  The pool never touches a job after that post.
 *
 * Keys: a job carries its volume's struct bal_xts_key, which stays valid
 * because the request holds its connection and the connection holds the
 * volume open.  A pool thread keys a cipher context from it for that job
 * only (two EVP inits, ~1.3 us against ~75 us of AES per 128 KiB piece):
 * the context is kept while the thread works on pieces of the same job
 * (jobs are told apart by a sequence number, never by address) and freed
 * when it moves to another job or the queue runs dry, so no key schedule
 * outlives the requests that needed it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "target/nbd_internal.h"

#define CPOOL_MAX_THREADS 64

struct cpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a job was queued, or stop */
	struct cjob *head, *tail;	/* jobs with pieces nobody took yet */
	uint64_t seq;
	bool stop;
	unsigned nthreads;
	pthread_t threads[CPOOL_MAX_THREADS];
};

/* A pool thread's cipher context, for the job numbered @seq. */
struct tctx {
	struct bal_xts_ctx *xts;
	uint64_t seq;
};

static void tctx_drop(struct tctx *t)
{
	bal_xts_ctx_destroy(t->xts);
	t->xts = NULL;
	t->seq = 0;
}

static int run_piece(struct tctx *t, struct cjob *j, size_t pos, size_t len)
{
	int ret;

	if (!t->xts || t->seq != j->seq) {
		tctx_drop(t);
		ret = bal_xts_ctx_create(j->key, &t->xts);
		if (ret < 0)
			return ret;
		t->seq = j->seq;
	}
	return cio_crypt(t->xts, j->encrypt, j->off + pos, j->buf + pos, len);
}

/* Take the next piece of the head job, and the job off the queue with its last one. */
static void claim(struct cpool *p, struct cjob *j, size_t *pos, size_t *len)
{
	*pos = j->claimed;
	*len = j->len - *pos < CPOOL_CHUNK ? j->len - *pos : CPOOL_CHUNK;
	j->claimed += *len;
	if (j->claimed < j->len)
		return;
	p->head = j->next;
	if (!p->head)
		p->tail = NULL;
}

static void *pool_main(void *arg)
{
	struct cpool *p = arg;
	struct tctx t = { 0 };

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct cjob *j = p->head;
		size_t pos, len;
		int ret;

		if (!j) {
			if (p->stop)
				break;
			/* Idle: no key schedule stays behind. */
			tctx_drop(&t);
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		claim(p, j, &pos, &len);
		pthread_mutex_unlock(&p->lock);

		ret = run_piece(&t, j, pos, len);

		pthread_mutex_lock(&p->lock);
		if (ret < 0 && !j->err)
			j->err = ret;
		if (--j->left == 0) {
			/* The job belongs to its worker again from here on. */
			pthread_mutex_unlock(&p->lock);
			bal_worker_post(j->w, j->msg);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	tctx_drop(&t);
	return NULL;
}

void cpool_submit(struct cpool *p, struct cjob *j)
{
	j->err = 0;
	j->claimed = 0;
	j->left = (unsigned)((j->len + CPOOL_CHUNK - 1) / CPOOL_CHUNK);
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	j->seq = ++p->seq;
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	if (j->left > 1)
		pthread_cond_broadcast(&p->cond);
	else
		pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int cpool_create(unsigned nthreads, struct cpool **out)
{
	struct cpool *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > CPOOL_MAX_THREADS)
		nthreads = CPOOL_MAX_THREADS;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < nthreads; i++) {
		ret = pthread_create(&p->threads[i], NULL, pool_main, p);
		if (ret) {
			bal_err("cipher pool: cannot start a thread: %s", strerror(ret));
			cpool_destroy(p);
			return -ret;
		}
		p->nthreads++;
	}
	*out = p;
	return 0;
}

void cpool_destroy(struct cpool *p)
{
	if (!p)
		return;
	/* Every job has ended: its request held a worker, and the workers are gone. */
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
