/* SPDX-License-Identifier: MIT */
/*
 * Pool file and cluster allocator (see pool.h).
 *
 * Free clusters below the high-water mark are a bitmap (one bit per pool
 * cluster, bit set = free and ready), scanned from a hint so allocation
 * prefers the lowest cluster and neighbouring allocations come out
 * contiguous.  Past the high-water mark the file grows in GROW_STEP steps
 * with ftruncate (sparse).  Before bal_pool_start() the same bitmap holds
 * the clusters the durable maps reference.
 */
#include "volume/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "volume/volume.h"

#define GROW_STEP UINT64_C(16384)	/* clusters: 1 GiB */
/* Keep byte offsets far from overflow: 2^47 clusters is 8 EiB. */
#define POOL_MAX_CLUSTERS (UINT64_C(1) << 47)

struct bal_pool {
	int fd;
	char *path;
	atomic_bool no_falloc;		/* fallocate(mode 0) unsupported */
	atomic_bool no_zero_range;	/* FALLOC_FL_ZERO_RANGE unsupported */
	pthread_mutex_t lock;		/* protects everything below */
	uint64_t file_clusters;
	uint64_t hwm;
	uint64_t *bits;			/* free bitmap (used before start) */
	size_t words;
	size_t hint;			/* no free bit in words below */
	uint64_t nfree;
	uint64_t used;
	uint64_t *pending;
	size_t npending;
	size_t cappending;
};

static uint64_t cl_bytes(uint64_t cl)
{
	return cl << BAL_CLUSTER_SHIFT;
}

int bal_pool_open(const char *path, struct bal_pool **out)
{
	struct bal_pool *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->path = strdup(path);
	if (!p->path) {
		free(p);
		return -ENOMEM;
	}
	p->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (p->fd < 0) {
		int err = -errno;

		bal_err("pool %s: open: %s", path, strerror(errno));
		free(p->path);
		free(p);
		return err;
	}
	pthread_mutex_init(&p->lock, NULL);
	*out = p;
	return 0;
}

void bal_pool_close(struct bal_pool *p)
{
	if (!p)
		return;
	close(p->fd);
	pthread_mutex_destroy(&p->lock);
	free(p->bits);
	free(p->pending);
	free(p->path);
	free(p);
}

int bal_pool_fd(const struct bal_pool *p)
{
	return p->fd;
}

/* Make the bitmap cover cluster @cl.  Locked or start-up. */
static int bits_cover(struct bal_pool *p, uint64_t cl)
{
	size_t need = (size_t)(cl / 64) + 1, n;
	uint64_t *nb;

	if (need <= p->words)
		return 0;
	n = p->words ? p->words : 64;
	while (n < need)
		n *= 2;
	nb = realloc(p->bits, n * sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	memset(nb + p->words, 0, (n - p->words) * sizeof(*nb));
	p->bits = nb;
	p->words = n;
	return 0;
}

int bal_pool_mark_used(struct bal_pool *p, uint64_t phys)
{
	uint64_t bit;

	if (phys >= POOL_MAX_CLUSTERS) {
		bal_err("pool %s: mapped cluster %" PRIu64 " out of range", p->path, phys);
		return -EUCLEAN;
	}
	if (bits_cover(p, phys))
		return -ENOMEM;
	bit = UINT64_C(1) << (phys % 64);
	if (p->bits[phys / 64] & bit) {
		bal_err("pool %s: cluster %" PRIu64 " mapped twice", p->path, phys);
		return -EUCLEAN;
	}
	p->bits[phys / 64] |= bit;
	p->used++;
	if (phys >= p->hwm)
		p->hwm = phys + 1;
	return 0;
}

static int set_file_clusters(struct bal_pool *p, uint64_t n)
{
	if (ftruncate(p->fd, (off_t)cl_bytes(n)) < 0) {
		int err = errno;

		bal_err("pool %s: resize to %" PRIu64 " clusters: %s", p->path, n,
			strerror(err));
		return (err == EFBIG || err == ENOSPC) ? -ENOSPC : -err;
	}
	p->file_clusters = n;
	return 0;
}

int bal_pool_start(struct bal_pool *p)
{
	uint64_t run = 0, runlen = 0;
	struct stat sb;
	size_t hwords;
	int ret;

	if (fstat(p->fd, &sb) < 0) {
		ret = -errno;
		bal_err("pool %s: stat: %s", p->path, strerror(errno));
		return ret;
	}
	if (bits_cover(p, p->hwm))
		return -ENOMEM;
	/*
	 * Cut the file back to the high-water mark: what lies past it belongs
	 * to no durable mapping, and growing again brings zeroes.
	 */
	if ((uint64_t)sb.st_size != cl_bytes(p->hwm)) {
		if ((uint64_t)sb.st_size < cl_bytes(p->hwm))
			bal_warn("pool %s: file shorter than its mapped clusters", p->path);
		ret = set_file_clusters(p, p->hwm);
		if (ret)
			return ret;
	}
	p->file_clusters = p->hwm;
	/* Invert the used map into the free map over [0, hwm). */
	hwords = (size_t)((p->hwm + 63) / 64);
	for (size_t w = 0; w < hwords; w++)
		p->bits[w] = ~p->bits[w];
	if (p->hwm % 64)
		p->bits[hwords - 1] &= (UINT64_C(1) << (p->hwm % 64)) - 1;
	p->nfree = p->hwm - p->used;
	p->hint = 0;
	/* Punch every free run so that reuse reads zeroes. */
	for (uint64_t cl = 0; cl <= p->hwm; cl++) {
		bool is_free = cl < p->hwm &&
			       (p->bits[cl / 64] >> (cl % 64) & 1);

		if (is_free) {
			if (!runlen)
				run = cl;
			runlen++;
			continue;
		}
		if (runlen) {
			ret = bal_pool_zero(p, cl_bytes(run), cl_bytes(runlen), true);
			if (ret)
				return ret;
			runlen = 0;
		}
		if (cl < p->hwm && p->bits[cl / 64] == 0 && cl % 64 == 0)
			cl += 63;	/* a fully used word */
	}
	ret = bal_pool_datasync(p);
	if (ret)
		return ret;
	bal_info("pool %s: %" PRIu64 " clusters, %" PRIu64 " used, %" PRIu64 " free",
		 p->path, p->hwm, p->used, p->nfree);
	return 0;
}

int bal_pool_alloc(struct bal_pool *p, uint64_t *phys)
{
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	if (p->nfree) {
		size_t w = p->hint;

		while (!p->bits[w])
			w++;
		*phys = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(p->bits[w]);
		p->bits[w] &= p->bits[w] - 1;
		p->hint = w;
		p->nfree--;
		p->used++;
		goto out_unlock;
	}
	if (p->hwm >= POOL_MAX_CLUSTERS) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	if (bits_cover(p, p->hwm)) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	if (p->hwm == p->file_clusters) {
		ret = set_file_clusters(p, p->file_clusters + GROW_STEP);
		if (ret)
			goto out_unlock;
	}
	*phys = p->hwm++;
	p->used++;
out_unlock:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int bal_pool_reserve(struct bal_pool *p, uint64_t phys, uint64_t n)
{
	if (atomic_load(&p->no_falloc))
		return 0;
	if (fallocate(p->fd, FALLOC_FL_KEEP_SIZE, (off_t)cl_bytes(phys),
		      (off_t)cl_bytes(n)) == 0)
		return 0;
	if (errno == EOPNOTSUPP) {
		atomic_store(&p->no_falloc, true);
		return 0;
	}
	if (errno == ENOSPC || errno == EDQUOT)
		return -ENOSPC;
	bal_err("pool %s: reserve clusters %" PRIu64 "+%" PRIu64 ": %s", p->path,
		phys, n, strerror(errno));
	return -errno;
}

/* Locked. */
static void mark_free(struct bal_pool *p, uint64_t phys)
{
	size_t w = (size_t)(phys / 64);

	p->bits[w] |= UINT64_C(1) << (phys % 64);
	p->nfree++;
	if (w < p->hint)
		p->hint = w;
}

void bal_pool_unalloc(struct bal_pool *p, uint64_t phys)
{
	pthread_mutex_lock(&p->lock);
	mark_free(p, phys);
	p->used--;
	pthread_mutex_unlock(&p->lock);
}

void bal_pool_release(struct bal_pool *p, uint64_t phys)
{
	pthread_mutex_lock(&p->lock);
	p->used--;
	if (p->npending == p->cappending) {
		size_t cap = p->cappending ? p->cappending * 2 : 256;
		uint64_t *np = realloc(p->pending, cap * sizeof(*np));

		if (!np) {
			/* Safe to lose: the next open finds it free. */
			bal_err("pool %s: out of memory, cluster %" PRIu64 " unusable until restart",
				p->path, phys);
			goto out_unlock;
		}
		p->pending = np;
		p->cappending = cap;
	}
	p->pending[p->npending++] = phys;
out_unlock:
	pthread_mutex_unlock(&p->lock);
}

size_t bal_pool_take_pending(struct bal_pool *p, uint64_t **list)
{
	size_t n;

	pthread_mutex_lock(&p->lock);
	*list = p->pending;
	n = p->npending;
	p->pending = NULL;
	p->npending = 0;
	p->cappending = 0;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

int bal_pool_recycle(struct bal_pool *p, uint64_t *list, size_t n)
{
	int ret = 0;

	if (!n) {
		free(list);
		return 0;
	}
	qsort(list, n, sizeof(*list), cmp_u64);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && list[j] == list[j - 1] + 1; j++)
			;
		ret = bal_pool_zero(p, cl_bytes(list[i]), cl_bytes(list[j - 1] - list[i] + 1),
				    true);
		if (ret)
			goto out_free;
	}
	ret = bal_pool_datasync(p);
	if (ret)
		goto out_free;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n; i++)
		mark_free(p, list[i]);
	pthread_mutex_unlock(&p->lock);
out_free:
	if (ret)
		bal_err("pool %s: %zu freed clusters unusable until restart", p->path, n);
	free(list);
	return ret;
}

int bal_pool_datasync(struct bal_pool *p)
{
	if (fdatasync(p->fd) < 0) {
		int err = -errno;

		bal_err("pool %s: fdatasync: %s", p->path, strerror(errno));
		return err;
	}
	return 0;
}

static int write_zeroes(struct bal_pool *p, uint64_t off, uint64_t len)
{
	static const char zeroes[BAL_CLUSTER_SIZE];

	while (len) {
		size_t n = len < sizeof(zeroes) ? (size_t)len : sizeof(zeroes);
		ssize_t w = pwrite(p->fd, zeroes, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int err = w < 0 ? -errno : -EIO;

			bal_err("pool %s: write zeroes at %" PRIu64 ": %s", p->path, off,
				strerror(-err));
			return err;
		}
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

int bal_pool_zero(struct bal_pool *p, uint64_t off, uint64_t len, bool punch)
{
	const int keep = FALLOC_FL_KEEP_SIZE;

	if (!len)
		return 0;
	if (!punch && !atomic_load(&p->no_zero_range)) {
		if (fallocate(p->fd, FALLOC_FL_ZERO_RANGE | keep, (off_t)off, (off_t)len) == 0)
			return 0;
		if (errno != EOPNOTSUPP)
			goto err;
		atomic_store(&p->no_zero_range, true);
	}
	if (fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | keep, (off_t)off, (off_t)len) == 0) {
		if (!punch && !atomic_load(&p->no_falloc) &&
		    fallocate(p->fd, keep, (off_t)off, (off_t)len) < 0 && errno != EOPNOTSUPP)
			goto err;
		return 0;
	}
	if (errno == EOPNOTSUPP)
		return write_zeroes(p, off, len);
err:
	bal_err("pool %s: zero %" PRIu64 "+%" PRIu64 ": %s", p->path, off, len,
		strerror(errno));
	return errno == EDQUOT ? -ENOSPC : -errno;
}

void bal_pool_set_reserve(struct bal_pool *p, bool on)
{
	atomic_store(&p->no_falloc, !on);
}

void bal_pool_get_stats(struct bal_pool *p, struct bal_pool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	out->file_clusters = p->file_clusters;
	out->hwm = p->hwm;
	out->used = p->used;
	out->free = p->nfree;
	out->pending = p->npending;
	pthread_mutex_unlock(&p->lock);
}
