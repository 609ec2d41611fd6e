/* SPDX-License-Identifier: MIT */
/*
 * The data path of a volume: mapping requests to pool segments, trim,
 * write-zeroes and block status.  Each call holds the volume's lock for its
 * whole length, reads only the in-memory indexes, and appends every change
 * of the map to the map log (maplog.c) before returning; the sync thread
 * makes it durable.  Clusters unmapped here go to the pool's pending list
 * and are reused only after a sync cycle.
 *
 * Redirect-on-write: a cluster shared with a snapshot (birth <= the newest
 * snapshot's epoch), or a clone's cluster still read from its parent, is
 * never written in place.  A new cluster is allocated, the bytes the
 * request does not cover are copied into it here, synchronously, under the
 * volume lock (the first write to a shared cluster pays one cluster copy),
 * and the old mapping becomes an old version that dies at the current
 * epoch.  The live read path only consults the live index, so its cost
 * does not depend on the number of snapshots.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "volume/volume_internal.h"

#define CL_MASK ((uint64_t)BAL_CLUSTER_SIZE - 1)
#define CHUNK 256	/* clusters per batch in long operations */
/* Clusters resolved one by one per block status call (snapshots, clones). */
#define STATUS_SCAN_MAX 65536

enum discard_mode { DISCARD_TRIM, DISCARD_PUNCH, DISCARD_ALLOC };

/*
 * One cluster to redirect: a new cluster is allocated, the bytes outside
 * [lo, hi) are copied from @src (BAL_PHYS_NONE: they stay zero), and it
 * replaces @old (if @has_old) with @flags.
 */
struct redir {
	uint64_t lcl;
	uint64_t phys;
	uint64_t src;
	uint32_t lo, hi;
	uint32_t flags;
	bool has_old;
	struct bal_xent old;
};

const char *bal_vol_name(const struct bal_volume *vol)
{
	return vol->name;
}

uint64_t bal_vol_size(const struct bal_volume *vol)
{
	return vol->snap ? vol->snap->size : atomic_load(&vol->rec->size);
}

bool bal_vol_is_readonly(const struct bal_volume *vol)
{
	return vol->snap != NULL;
}

bool bal_vol_is_deleted(const struct bal_volume *vol)
{
	return atomic_load(&vol->rec->deleted);
}

size_t bal_vol_index_mem(struct bal_volume *vol)
{
	size_t n;

	pthread_mutex_lock(&vol->rec->lock);
	n = bal_vrec_index_mem(vol->rec);
	pthread_mutex_unlock(&vol->rec->lock);
	return n;
}

uint64_t bal_vol_lookups(struct bal_volume *vol)
{
	uint64_t n;

	pthread_mutex_lock(&vol->rec->lock);
	n = vol->rec->lookups;
	pthread_mutex_unlock(&vol->rec->lock);
	return n;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Volume locked: the handle is usable and [off, off+len) inside it. */
static int check_locked(struct bal_volume *vol, uint64_t off, uint64_t len, uint64_t *end)
{
	if (atomic_load(&vol->rec->deleted))
		return -ESHUTDOWN;
	if (!len || __builtin_add_overflow(off, len, end) || *end > bal_vol_size(vol))
		return -EINVAL;
	return 0;
}

static void add_seg(struct bal_seg *segs, size_t *n, uint64_t phys, uint32_t len)
{
	if (*n) {
		struct bal_seg *s = &segs[*n - 1];

		if (phys >= BAL_SEG_REMOTE ? s->phys == phys
					   : s->phys < BAL_SEG_REMOTE && s->phys + s->len == phys) {
			s->len += len;
			return;
		}
	}
	segs[*n].phys = phys;
	segs[*n].len = len;
	(*n)++;
}

/* The simple case: the live volume of a volume that is not a clone or restored. */
static bool plain(const struct bal_volume *vol)
{
	return !vol->snap && !vol->rec->parent && !vol->rec->remote;
}

/* Volume locked: @lcl of @vol still reads from the object tier. */
static bool remote(struct bal_volume *vol, uint64_t lcl)
{
	return !vol->snap && vol->rec->remote && bal_vrec_is_remote(vol->rec, lcl);
}

/* Volume locked: bytes [lo, hi) of @lcl need its remote data first. */
static bool needs_fill(struct bal_volume *vol, uint64_t lcl, uint64_t lo, uint64_t hi)
{
	return (lo || hi < BAL_CLUSTER_SIZE) && remote(vol, lcl);
}

/* Volume locked: what @vol shows at @lcl (false: a hole). */
static bool lookup(struct bal_volume *vol, uint64_t lcl, struct bal_xent *out)
{
	struct bal_vrec *rec = vol->rec;
	const struct bal_xent *e;

	if (plain(vol)) {
		rec->lookups++;
		e = bal_xmap_find(&rec->map, lcl);
		if (e)
			*out = *e;
		return e != NULL;
	}
	if (vol->snap)
		return bal_resolve(rec, vol->snap->epoch, vol->snap->plimit, lcl, out);
	return bal_resolve(rec, BAL_EPOCH_LIVE, rec->plimit, lcl, out);
}

static bool reads_zero(const struct bal_xent *e)
{
	return e->flags & (BAL_XENT_ZERO | BAL_XENT_HOLE);
}

int bal_pool_copy(struct bal_vstore *st, uint64_t src, uint64_t dst, uint64_t lo, uint64_t hi)
{
	int fd = bal_pool_fd(st->pool);
	loff_t in = (loff_t)((src << BAL_CLUSTER_SHIFT) + lo);
	loff_t out = (loff_t)((dst << BAL_CLUSTER_SHIFT) + lo);
	size_t left = (size_t)(hi - lo);
	uint8_t *buf = NULL;
	int ret = 0;

	while (left) {
		ssize_t n = copy_file_range(fd, &in, fd, &out, left, 0);

		if (n > 0) {
			left -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (!left)
		return 0;
	/* Not supported here (or a short copy): plain reads and writes. */
	buf = malloc(BAL_CLUSTER_SIZE);
	if (!buf)
		return -ENOMEM;
	while (left) {
		ssize_t r = pread(fd, buf, left, in), w = 0;

		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0)
			w = pwrite(fd, buf, (size_t)r, out);
		if (r <= 0 || w != r) {
			ret = r < 0 || w < 0 ? -errno : -EIO;
			bal_err("store %s: copy of cluster %" PRIu64 " to %" PRIu64 ": %s", st->dir,
				src, dst, strerror(-ret));
			break;
		}
		in += r;
		out += r;
		left -= (size_t)r;
	}
	free(buf);
	return ret;
}

static struct bal_recopy **recopy_find(struct bal_vrec *rec, uint64_t lcl)
{
	struct bal_recopy **pp = &rec->recopy;

	while (*pp && (*pp)->lcl != lcl)
		pp = &(*pp)->next;
	return pp;
}

static void mark_range(uint8_t *bits, uint64_t lo, uint64_t hi)
{
	for (uint64_t i = lo; i < hi; i++)
		bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Volume locked: bytes [lo, hi) of @lcl are being rewritten in place. */
static void recopy_cover(struct bal_vrec *rec, uint64_t lcl, uint64_t lo, uint64_t hi)
{
	struct bal_recopy *r;

	if (!rec->recopy)
		return;
	r = *recopy_find(rec, lcl);
	if (r)
		mark_range(r->covered, lo, hi);
}

/* Volume locked: @lcl is remapped or unmapped; forget it. */
static void recopy_drop(struct bal_vrec *rec, uint64_t lcl)
{
	struct bal_recopy **pp, *r;

	if (!rec->recopy)
		return;
	pp = recopy_find(rec, lcl);
	r = *pp;
	if (r) {
		*pp = r->next;
		free(r);
	}
}

void bal_vrec_recopy(struct bal_vstore *st, struct bal_vrec *rec)
{
	while (rec->recopy) {
		struct bal_recopy *r = rec->recopy;
		uint64_t i = 0, j;

		while (i < BAL_CLUSTER_SIZE) {
			for (; i < BAL_CLUSTER_SIZE && (r->covered[i / 8] >> (i % 8) & 1); i++)
				;
			for (j = i; j < BAL_CLUSTER_SIZE && !(r->covered[j / 8] >> (j % 8) & 1); j++)
				;
			if (i < j && bal_pool_copy(st, r->src, r->dst, i, j))
				bal_err("volume %s: cluster %" PRIu64 " may miss bytes written during snapshot creation",
					rec->name, r->lcl);
			i = j;
		}
		rec->recopy = r->next;
		free(r);
	}
	rec->freezing = false;
}

/*
 * Volume locked: the live mapping @old of @lcl is being replaced or
 * dropped.  Shared, it becomes an old version dying now; otherwise its
 * cluster is to be freed: *@rel is set to it (else BAL_PHYS_NONE) and the
 * caller releases it only after logging the map change that drops it, so
 * that a sync cycle which takes the free also takes that change (the sync
 * thread takes the pending frees first, then the log).  0 or -ENOMEM (then
 * nothing changed).
 */
static int retire(struct bal_vstore *st, struct bal_vrec *rec, uint64_t lcl,
		  const struct bal_xent *old, uint64_t *rel)
{
	struct bal_ver v;
	int ret;

	*rel = BAL_PHYS_NONE;
	recopy_drop(rec, lcl);
	if (bal_xent_shared(rec, old)) {
		v = (struct bal_ver){ .lcl = lcl, .phys = old->phys, .birth = old->birth,
				      .death = rec->epoch, .flags = old->flags };
		ret = bal_vers_add(&rec->vers, &v);
		if (ret)
			return ret;
		bal_log_ver_put(st, rec->id, &v);
	} else if (bal_xent_owns(old)) {
		*rel = old->phys;
	}
	return 0;
}

static void release(struct bal_vstore *st, uint64_t rel)
{
	if (rel != BAL_PHYS_NONE)
		bal_pool_release(st->pool, rel);
}

/*
 * Volume locked: a redirection from a cluster that became shared with the
 * snapshot being taken; I/O begun before the epoch moved may still write
 * its source, so remember to copy again once that I/O has ended.
 */
static int freeze_record(struct bal_vrec *rec, const struct redir *r)
{
	struct bal_recopy *rc;

	if (!rec->freezing || !r->has_old || r->src != r->old.phys ||
	    r->old.birth <= rec->freeze_lo)
		return 0;
	rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->lcl = r->lcl;
	rc->src = r->src;
	rc->dst = r->phys;
	mark_range(rc->covered, r->lo, r->hi);
	rc->next = rec->recopy;
	rec->recopy = rc;
	return 0;
}

/*
 * Volume locked: carry out @n redirections (allocate, copy, map).  All
 * clusters are allocated first: on -ENOSPC nothing changed.  Later errors
 * (-ENOMEM, pool I/O) may leave the first ones done, which changes no
 * content.
 */
static int redirect(struct bal_vstore *st, struct bal_vrec *rec, struct redir *r, size_t n)
{
	uint64_t rel;
	size_t i, j, k = 0;
	struct bal_xent e;
	int ret = 0;

	for (k = 0; k < n; k++) {
		ret = bal_pool_alloc(st->pool, &r[k].phys);
		if (ret)
			goto err_unalloc;
	}
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && r[j].phys == r[j - 1].phys + 1; j++)
			;
		ret = bal_pool_reserve(st->pool, r[i].phys, r[j - 1].phys - r[i].phys + 1);
		if (ret)
			goto err_unalloc;
	}
	for (i = 0; i < n; i++) {
		if (r[i].src == BAL_PHYS_NONE)
			continue;
		ret = r[i].lo ? bal_pool_copy(st, r[i].src, r[i].phys, 0, r[i].lo) : 0;
		if (!ret && r[i].hi < BAL_CLUSTER_SIZE)
			ret = bal_pool_copy(st, r[i].src, r[i].phys, r[i].hi, BAL_CLUSTER_SIZE);
		if (ret)
			goto err_unalloc;
	}
	for (i = 0; i < n; i++) {
		e = (struct bal_xent){ .phys = r[i].phys, .birth = rec->epoch, .flags = r[i].flags };
		rel = BAL_PHYS_NONE;
		ret = r[i].has_old ? retire(st, rec, r[i].lcl, &r[i].old, &rel) : 0;
		/* Replacing an existing entry cannot fail; inserting may. */
		if (!ret)
			ret = bal_xmap_set(&rec->map, r[i].lcl, &e);
		if (ret)
			goto err_unalloc_from;
		bal_log_map_put(st, rec->id, r[i].lcl, &e);
		release(st, rel);
		if (freeze_record(rec, &r[i]))
			bal_err("volume %s: out of memory: cluster %" PRIu64 " may miss bytes written during snapshot creation",
				rec->name, r[i].lcl);
	}
	return 0;
err_unalloc_from:
	for (; i < n; i++)
		bal_pool_unalloc(st->pool, r[i].phys);
	return ret;
err_unalloc:
	for (i = 0; i < k; i++)
		bal_pool_unalloc(st->pool, r[i].phys);
	return ret;
}

/*
 * Volume locked: fill @r for cluster @lcl whose bytes [lo, hi) are about to
 * be overwritten (or zeroed) and the rest must be kept.  Returns false when
 * the cluster can be used in place (@e is then its unshared data entry, or
 * there is nothing to keep).
 */
static void plan_redirect(struct bal_vrec *rec, uint64_t lcl, const struct bal_xent *e,
			  uint32_t lo, uint32_t hi, uint32_t flags, struct redir *r)
{
	struct bal_xent pe;

	*r = (struct redir){ .lcl = lcl, .src = BAL_PHYS_NONE, .lo = lo, .hi = hi,
			     .flags = flags };
	if (e) {
		r->has_old = true;
		r->old = *e;
		if (!reads_zero(e))
			r->src = e->phys;
	} else if (bal_resolve_parent(rec, rec->plimit, lcl, &pe) && !reads_zero(&pe)) {
		r->src = pe.phys;
	}
	if (lo == 0 && hi == BAL_CLUSTER_SIZE)
		r->src = BAL_PHYS_NONE;
}

/* An entry the request may write in place. */
static bool in_place(const struct bal_vrec *rec, const struct bal_xent *e)
{
	return e && bal_xent_owns(e) && !(e->flags & BAL_XENT_ZERO) && !bal_xent_shared(rec, e);
}

int bal_vol_map_read(struct bal_volume *vol, uint64_t off, uint32_t len,
		     struct bal_seg *segs, size_t max, size_t *n)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, first, last, pos;
	int ret;

	pthread_mutex_lock(&rec->lock);
	ret = check_locked(vol, off, len, &end);
	if (ret)
		goto out_unlock;
	first = off >> BAL_CLUSTER_SHIFT;
	last = (end - 1) >> BAL_CLUSTER_SHIFT;
	ret = -EINVAL;
	if (last - first >= max)
		goto out_unlock;
	ret = 0;
	*n = 0;
	pos = off;
	for (uint64_t cl = first; cl <= last; cl++) {
		uint64_t cend = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT), phys;
		struct bal_xent e;

		bool mapped = lookup(vol, cl, &e);

		/* A ZERO cluster holds zeroes: no need to read it. */
		if (mapped && !reads_zero(&e))
			phys = (e.phys << BAL_CLUSTER_SHIFT) + (pos & CL_MASK);
		else if (!mapped && remote(vol, cl))
			phys = BAL_SEG_REMOTE;
		else
			phys = BAL_SEG_HOLE;
		add_seg(segs, n, phys, (uint32_t)(cend - pos));
		pos = cend;
	}
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

/* Volume locked: make every cluster of [off, end) writable in place. */
static int prepare_write(struct bal_vstore *st, struct bal_vrec *rec, uint64_t off,
			 uint64_t end, size_t need)
{
	uint64_t first = off >> BAL_CLUSTER_SHIFT, last = (end - 1) >> BAL_CLUSTER_SHIFT;
	struct redir *r;
	size_t k = 0;
	int ret = 0;

	r = malloc(need * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (uint64_t cl = first; cl <= last; cl++) {
		struct bal_xent *e = bal_xmap_find(&rec->map, cl);
		uint64_t cbase = cl << BAL_CLUSTER_SHIFT;
		uint32_t lo = (uint32_t)(off > cbase ? off - cbase : 0);
		uint32_t hi = (uint32_t)min_u64(end - cbase, BAL_CLUSTER_SIZE);

		if (in_place(rec, e))
			continue;
		if (e && bal_xent_owns(e) && !bal_xent_shared(rec, e)) {
			/* An unshared ZERO cluster holds zeroes: write it in place. */
			struct bal_xent ne = *e;

			ne.flags &= ~BAL_XENT_ZERO;
			*e = ne;
			bal_log_map_put(st, rec->id, cl, &ne);
			continue;
		}
		plan_redirect(rec, cl, e, lo, hi, 0, &r[k++]);
	}
	if (k)
		ret = redirect(st, rec, r, k);
	free(r);
	return ret;
}

int bal_vol_map_write(struct bal_volume *vol, uint64_t off, uint32_t len,
		      struct bal_seg *segs, size_t max, size_t *n)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, first, last, pos;
	size_t need = 0;
	int ret;

	if (bal_vol_is_readonly(vol))
		return -EPERM;
	pthread_mutex_lock(&rec->lock);
	ret = check_locked(vol, off, len, &end);
	if (ret)
		goto out_unlock;
	first = off >> BAL_CLUSTER_SHIFT;
	last = (end - 1) >> BAL_CLUSTER_SHIFT;
	ret = -EINVAL;
	if (last - first >= max)
		goto out_unlock;
	/* Only the first and the last cluster can be covered in part. */
	ret = -EREMOTE;
	if (needs_fill(vol, first, off & CL_MASK, first == last ? ((end - 1) & CL_MASK) + 1
							      : BAL_CLUSTER_SIZE) ||
	    needs_fill(vol, last, 0, ((end - 1) & CL_MASK) + 1))
		goto out_unlock;
	ret = 0;
	for (uint64_t cl = first; cl <= last; cl++) {
		rec->lookups++;
		if (!in_place(rec, bal_xmap_find(&rec->map, cl)))
			need++;
	}
	ret = need ? prepare_write(vol->st, rec, off, end, need) : 0;
	if (ret) {
		if (ret != -ENOSPC && ret != -EREMOTE)
			bal_err("volume %s: map write at %" PRIu64 "+%" PRIu32 ": %s", rec->name,
				off, len, strerror(-ret));
		goto out_unlock;
	}
	*n = 0;
	pos = off;
	for (uint64_t cl = first; cl <= last; cl++) {
		uint64_t cend = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT);
		const struct bal_xent *e = bal_xmap_find(&rec->map, cl);

		recopy_cover(rec, cl, pos & CL_MASK, ((cend - 1) & CL_MASK) + 1);
		add_seg(segs, n, (e->phys << BAL_CLUSTER_SHIFT) + (pos & CL_MASK),
			(uint32_t)(cend - pos));
		pos = cend;
	}
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

int bal_vrec_materialize(struct bal_vstore *st, struct bal_vrec *rec, uint64_t lcl)
{
	struct redir r;

	if (bal_xmap_find(&rec->map, lcl))
		return 0;
	plan_redirect(rec, lcl, NULL, 0, 0, 0, &r);
	return r.src == BAL_PHYS_NONE ? 0 : redirect(st, rec, &r, 1);
}

/*
 * Volume locked: an unmapped cluster that would not read as zeroes: a
 * clone's parent shows data there, or a restored volume's object tier.
 */
static bool below_has(struct bal_vrec *rec, uint64_t lcl)
{
	struct bal_xent pe;

	if (bal_vrec_remote_has(rec, lcl))
		return true;
	return bal_resolve_parent(rec, rec->plimit, lcl, &pe) && !reads_zero(&pe);
}

int bal_vrec_unmap(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first, uint64_t end)
{
	const struct bal_xent hole = { .phys = BAL_PHYS_NONE, .birth = rec->epoch,
				       .flags = BAL_XENT_HOLE };
	uint64_t lcl = first, found, pend, rel;
	struct bal_xent e;
	int ret;

	while (bal_xmap_next(&rec->map, lcl, &found, &e) && found < end) {
		lcl = found + 1;
		if (e.flags & BAL_XENT_HOLE)
			continue;	/* already reads as zeroes, hides the parent */
		ret = retire(st, rec, found, &e, &rel);
		if (ret)
			return ret;
		if (below_has(rec, found)) {
			/* Replaced in place (cannot fail): never a moment without either. */
			bal_xmap_set(&rec->map, found, &hole);
			bal_log_map_put(st, rec->id, found, &hole);
		} else {
			bal_xmap_remove(&rec->map, found, NULL);
			bal_log_map_del(st, rec->id, found);
		}
		release(st, rel);
	}
	/*
	 * A clone must not show its parent where it was trimmed, nor a
	 * restored volume its object tier data.
	 */
	pend = rec->parent ? min_u64(end, rec->plimit) : 0;
	if (rec->remote)
		pend = end;
	for (lcl = first; lcl < pend; lcl++) {
		if (bal_xmap_find(&rec->map, lcl) || !below_has(rec, lcl))
			continue;
		ret = bal_xmap_set(&rec->map, lcl, &hole);
		if (ret)
			return ret;
		bal_log_map_put(st, rec->id, lcl, &hole);
	}
	return 0;
}

/* Volume locked: clusters [first, end) become allocated ZERO clusters. */
static int zero_alloc(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first,
		      uint64_t end)
{
	struct redir *r;
	uint64_t cl = first;
	size_t k;
	int ret = 0;

	r = malloc(CHUNK * sizeof(*r));
	if (!r)
		return -ENOMEM;
	while (cl < end && !ret) {
		for (k = 0; cl < end && k < CHUNK; cl++) {
			struct bal_xent *e = bal_xmap_find(&rec->map, cl);

			if (e && bal_xent_owns(e) && (e->flags & BAL_XENT_ZERO))
				continue;
			if (in_place(rec, e)) {
				ret = bal_pool_zero(st->pool, e->phys << BAL_CLUSTER_SHIFT,
						    BAL_CLUSTER_SIZE, false);
				if (ret)
					break;
				e->flags |= BAL_XENT_ZERO;
				recopy_drop(rec, cl);
				bal_log_map_put(st, rec->id, cl, e);
				continue;
			}
			plan_redirect(rec, cl, e, 0, BAL_CLUSTER_SIZE, BAL_XENT_ZERO, &r[k++]);
		}
		if (!ret && k)
			ret = redirect(st, rec, r, k);
	}
	free(r);
	return ret;
}

int bal_vrec_zero_partial(struct bal_vstore *st, struct bal_vrec *rec, uint64_t lcl,
			  uint64_t lo, uint64_t hi, bool punch)
{
	struct bal_xent *e = bal_xmap_find(&rec->map, lcl);
	struct redir r;

	lo &= CL_MASK;
	hi = hi - (lcl << BAL_CLUSTER_SHIFT);
	if (in_place(rec, e)) {
		recopy_cover(rec, lcl, lo, hi);
		return bal_pool_zero(st->pool, (e->phys << BAL_CLUSTER_SHIFT) + lo, hi - lo, punch);
	}
	if (e && reads_zero(e))
		return 0;
	plan_redirect(rec, lcl, e, (uint32_t)lo, (uint32_t)hi, 0, &r);
	if (!e && r.src == BAL_PHYS_NONE)
		return 0;	/* a hole, here and in any parent */
	return redirect(st, rec, &r, 1);
}

static int discard(struct bal_volume *vol, uint64_t off, uint64_t len, enum discard_mode mode)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, size, head, wfirst, wend, tail;
	bool punch = mode != DISCARD_ALLOC;
	int ret;

	if (bal_vol_is_readonly(vol))
		return -EPERM;
	pthread_mutex_lock(&rec->lock);
	ret = check_locked(vol, off, len, &end);
	if (ret)
		goto out_unlock;
	size = atomic_load(&rec->size);
	/* Whole clusters; the last one of the volume may end at its size. */
	head = off >> BAL_CLUSTER_SHIFT;
	wfirst = (off + CL_MASK) >> BAL_CLUSTER_SHIFT;
	wend = end == size ? bal_size_clusters(size) : end >> BAL_CLUSTER_SHIFT;
	tail = end >> BAL_CLUSTER_SHIFT;
	ret = -EREMOTE;
	if (((off & CL_MASK) && remote(vol, head)) ||
	    (end != size && (end & CL_MASK) && remote(vol, tail)))
		goto out_unlock;
	ret = 0;
	if (off & CL_MASK)
		ret = bal_vrec_zero_partial(vol->st, rec, head, off,
					    min_u64(end, (head + 1) << BAL_CLUSTER_SHIFT), punch);
	if (!ret && wfirst < wend) {
		if (mode == DISCARD_ALLOC)
			ret = zero_alloc(vol->st, rec, wfirst, wend);
		else
			ret = bal_vrec_unmap(vol->st, rec, wfirst, wend);
	}
	if (!ret && end != size && (end & CL_MASK) && !((off & CL_MASK) && tail == head))
		ret = bal_vrec_zero_partial(vol->st, rec, tail,
					    tail << BAL_CLUSTER_SHIFT > off ? tail << BAL_CLUSTER_SHIFT
									    : off,
					    end, punch);
	if (ret && ret != -ENOSPC && ret != -EREMOTE)
		bal_err("volume %s: %s at %" PRIu64 "+%" PRIu64 ": %s", rec->name,
			mode == DISCARD_TRIM ? "trim" : "zero", off, len, strerror(-ret));
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}

int bal_vol_trim(struct bal_volume *vol, uint64_t off, uint64_t len)
{
	return discard(vol, off, len, DISCARD_TRIM);
}

int bal_vol_zero(struct bal_volume *vol, uint64_t off, uint64_t len, bool may_punch)
{
	return discard(vol, off, len, may_punch ? DISCARD_PUNCH : DISCARD_ALLOC);
}

static uint32_t ext_flags(bool mapped, const struct bal_xent *e)
{
	if (!mapped || (e->flags & BAL_XENT_HOLE))
		return BAL_EXT_HOLE | BAL_EXT_ZERO;
	return (e->flags & BAL_XENT_ZERO) ? BAL_EXT_ZERO : 0;
}

int bal_vol_block_status(struct bal_volume *vol, uint64_t off, uint64_t len,
			 struct bal_extent *ext, size_t max, size_t *n)
{
	struct bal_vrec *rec = vol->rec;
	uint64_t end, pos, scanned = 0;
	int ret;

	pthread_mutex_lock(&rec->lock);
	ret = check_locked(vol, off, len, &end);
	if (!ret && !max)
		ret = -EINVAL;
	if (ret)
		goto out_unlock;
	*n = 0;
	for (pos = off; pos < end;) {
		uint64_t cl = pos >> BAL_CLUSTER_SHIFT, found, next;
		struct bal_xent e;
		uint32_t flags;

		if (plain(vol)) {
			bool any = bal_xmap_next(&rec->map, cl, &found, &e);

			if (any && found == cl) {
				flags = ext_flags(true, &e);
				next = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT);
			} else {
				flags = BAL_EXT_HOLE | BAL_EXT_ZERO;
				next = any ? min_u64(end, found << BAL_CLUSTER_SHIFT) : end;
			}
		} else {
			/* Resolved cluster by cluster; may cover less than asked. */
			if (scanned++ == STATUS_SCAN_MAX && *n)
				break;
			bool mapped = lookup(vol, cl, &e);

			flags = !mapped && remote(vol, cl) ? 0 : ext_flags(mapped, &e);
			next = min_u64(end, (cl + 1) << BAL_CLUSTER_SHIFT);
		}
		if (*n && ext[*n - 1].flags == flags) {
			ext[*n - 1].len += next - pos;
		} else if (*n == max) {
			break;
		} else {
			ext[*n].len = next - pos;
			ext[*n].flags = flags;
			(*n)++;
		}
		pos = next;
	}
out_unlock:
	pthread_mutex_unlock(&rec->lock);
	return ret;
}
