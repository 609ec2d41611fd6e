/* SPDX-License-Identifier: MIT */
/*
 * Thin volumes: the volume store of one data directory.
 *
 * A store (struct bal_vstore) owns the data directory: its lock file, the
 * pool file cut into clusters (BAL_CLUSTER_SIZE), the RocksDB database that
 * holds the catalog and the durable extent maps, and a background sync
 * thread.  Each volume keeps its extent map (logical cluster -> physical
 * cluster, birth epoch, flags) in an in-memory index that grows with the
 * allocated clusters only, rebuilt from RocksDB at open.
 *
 * The data path does not go through this module for bytes: the caller asks
 * for a mapping (bal_vol_map_read / bal_vol_map_write) and then moves the
 * bytes itself with its own io_uring on bal_vstore_pool_fd().  Metadata
 * operations (trim, zero, block status) are synchronous and cheap (in-memory
 * index, one unsynced RocksDB write, fallocate on the pool).
 *
 * Durability: map changes are kept in an in-memory map log and reach
 * RocksDB in order, after the pool fdatasync of the same sync cycle (a
 * redirected cluster's copied bytes are durable before its mapping).
 * bal_vstore_sync_async() queues a callback that runs on the sync thread
 * after a pool fdatasync and the map log's synced RocksDB write that both
 * started after the call; concurrent requests share one sync.  Without a
 * sync, a cycle runs about every second while changes are pending.
 *
 * Threads: every function is safe from any thread.  A per-volume mutex
 * protects the index; the pool allocator has its own mutex (lock order:
 * volume, then pool).
 */
#ifndef BAL_VOLUME_H
#define BAL_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define BAL_CLUSTER_SHIFT 16
#define BAL_CLUSTER_SIZE (1u << BAL_CLUSTER_SHIFT)
/* Volume sizes are multiples of this (what qemu and the kernel expect). */
#define BAL_VOL_ALIGN 512u
/* Largest provisioned size: 2^63 - 1 rounded down, well past any real need. */
#define BAL_VOL_SIZE_MAX (UINT64_C(1) << 60)

struct bal_vstore;
struct bal_volume;

struct bal_mk;
struct bal_ck;

struct bal_vstore_opts {
	size_t opts_size;	/* sizeof(struct bal_vstore_opts) */
	const char *dir;	/* data directory; created if missing */
	/*
	 * Master key that wraps the volume keys (borrowed; NULL: none).  With
	 * a wrong or missing master key the store still opens: encrypted
	 * volumes stay locked (bal_vol_open gives -ENOKEY, the reason is
	 * logged and in bal_vol_info.lock_reason); the others are served.
	 */
	const struct bal_mk *master;
	bool encrypt_by_default;	/* volumes are created encrypted */
};

/*
 * Open the store in opts->dir: take the directory lock (-EBUSY if another
 * process holds it), open RocksDB and the pool, rebuild every volume's index
 * and the allocator from the durable map, start the sync thread.
 * On success *out is owned by the caller (bal_vstore_close).  Start-up only.
 */
int bal_vstore_open(const struct bal_vstore_opts *opts, struct bal_vstore **out);

/* Final sync, stop the sync thread, close everything.  NULL is a no-op. */
void bal_vstore_close(struct bal_vstore *st);

/* The pool file descriptor (O_RDWR); valid until bal_vstore_close. */
int bal_vstore_pool_fd(const struct bal_vstore *st);

/*
 * Make everything written or mapped so far durable, then call cb(arg, err)
 * on the sync thread (err 0 or -errno).  Returns 0 if queued, -ESHUTDOWN
 * after close started (cb is then not called).
 */
int bal_vstore_sync_async(struct bal_vstore *st, void (*cb)(void *arg, int err), void *arg);

/* Same, blocking the caller.  Returns 0 or -errno. */
int bal_vstore_sync(struct bal_vstore *st);

/*
 * Pool I/O guard.  Take a token before bal_vol_map_read/map_write and give
 * it back when every pool I/O issued for that mapping has completed.  A
 * cluster freed by trim, shrink or delete is recycled only after every I/O
 * that began before it was freed has ended (a grace period over two
 * counters, flipped by the sync thread), so a late I/O can never touch a
 * cluster that now belongs to another volume.  Any thread; lock-free.
 */
unsigned bal_vstore_io_begin(struct bal_vstore *st);
void bal_vstore_io_end(struct bal_vstore *st, unsigned token);

/* ---- catalog (control plane) ---- */

enum bal_enc {
	BAL_ENC_DEFAULT,	/* the store's encrypt_by_default */
	BAL_ENC_NONE,
	BAL_ENC_SERVICE,	/* random XTS key, wrapped by the master key */
	BAL_ENC_CUSTOMER,	/* key from the customer key, never stored */
};


struct bal_vol_info {
	char name[BAL_NAME_MAX + 1];
	uint64_t id;
	uint64_t size;		/* provisioned bytes */
	uint64_t allocated;	/* bytes the live volume maps (own + inherited from a parent) */
	uint64_t exclusive;	/* bytes freed if the live volume were deleted */
	uint64_t shared;	/* bytes the live volume shares with snapshots or a parent */
	int64_t created_at;	/* seconds since the epoch, UTC */
	unsigned connections;	/* open handles (NBD connections) */
	unsigned snapshots;	/* snapshots of this volume */
	enum bal_enc enc;	/* NONE, SERVICE or CUSTOMER */
	bool locked;		/* encrypted and its key is not available */
	char lock_reason[96];	/* why, for messages ("wrong master key", ...) */
	char parent[2 * BAL_NAME_MAX + 2];	/* "VOL@SNAP" for a clone, else "" */
	bool remote;		/* restored, some clusters still read from the object tier */
	uint64_t index_bytes;	/* memory of its extent index (live map and old versions) */
};

/* Create a volume.  -EINVAL bad name/size, -EEXIST, -EIO. */
int bal_vstore_create(struct bal_vstore *st, const char *name, uint64_t size);

struct bal_vol_create_opts {
	size_t opts_size;	/* sizeof(struct bal_vol_create_opts) */
	const char *name;
	uint64_t size;		/* encrypted: a multiple of 4096 */
	enum bal_enc enc;
	const struct bal_ck *customer_key;	/* BAL_ENC_CUSTOMER (borrowed) */
	/* BAL_ENC_SERVICE: use a copy of this key instead of a new one (borrowed). */
	const struct bal_xts_key *import_key;
	/* A volume restored from the object tier (see bal_vol_remote_fill). */
	const struct bal_vol_remote *remote;
};

/*
 * Where a restored volume's data is: the first @size bytes, cut into
 * granules of @granule bytes (a power of two, a multiple of the cluster
 * size), read from the object tier where bit i of @present is set, and as
 * zeroes elsewhere, until clusters are written or filled locally.
 */
struct bal_vol_remote {
	uint64_t size;
	uint32_t granule;
	const uint8_t *present;	/* ceil(size / granule) bits, LSB first */
	const char *source;	/* the caller's reference of the data, kept with it */
};

/*
 * Create a volume with options.  Encrypted volumes: -ENOKEY without a
 * (right) master key for BAL_ENC_SERVICE, -EINVAL if the size is not a
 * multiple of 4096 or a customer key is missing.  A customer-key volume
 * is created unlocked (the key that created it is in memory).
 */
int bal_vstore_create_opts(struct bal_vstore *st, const struct bal_vol_create_opts *o);

/*
 * Customer-key volumes (S3 SSE-C style): unlock checks @ck against the
 * stored check value (-EKEYREJECTED, never used if wrong) and keeps the
 * derived key in memory until lock or close.  Lock: -EBUSY while open
 * handles exist.  -EINVAL if not a customer-key volume, -ENOENT.
 */
int bal_vstore_unlock(struct bal_vstore *st, const char *name, const struct bal_ck *ck);
int bal_vstore_lock(struct bal_vstore *st, const char *name);

/*
 * Re-wrap every service-encrypted volume key under @new_mk in one synced
 * batch (a crash leaves all keys under the old or all under the new
 * master key), then use @new_mk (borrowed: the caller keeps it alive until
 * close or the next rotation).  No data is touched.  -ENOKEY if the
 * current master key is missing or wrong.
 */
int bal_vstore_rotate_master(struct bal_vstore *st, const struct bal_mk *new_mk);

/*
 * Wrap @key under the store's master key for the object tier, bound to
 * @aad (BAL_KW_BLOB_LEN bytes into @blob, at most @len), and the reverse
 * (*out owned by the caller, bal_xts_key_destroy).  -ENOKEY without a
 * usable master key, -EKEYREJECTED for a wrong one or a tampered blob.
 */
int bal_vstore_wrap_key(struct bal_vstore *st, const char *aad, const struct bal_xts_key *key,
			uint8_t *blob, size_t len);
int bal_vstore_unwrap_key(struct bal_vstore *st, const char *aad, const uint8_t *blob,
			  size_t len, struct bal_xts_key **out);

/*
 * Named records for the modules above (synced writes; not the data path).
 * put with @val NULL deletes.  get: *val malloc'ed, -ENOENT if absent.
 * list calls @cb for every name starting with @prefix, in order; a
 * non-zero return stops it and is returned.
 */
int bal_vstore_meta_put(struct bal_vstore *st, const char *name, const void *val, size_t len);
int bal_vstore_meta_get(struct bal_vstore *st, const char *name, void **val, size_t *len);
int bal_vstore_meta_list(struct bal_vstore *st, const char *prefix,
			 int (*cb)(void *arg, const char *name, const void *val, size_t len),
			 void *arg);

/* Every volume, sorted by name; *out is malloc'ed, caller frees. */
int bal_vstore_list(struct bal_vstore *st, struct bal_vol_info **out, size_t *n);

/* One volume.  -ENOENT if unknown. */
int bal_vstore_info(struct bal_vstore *st, const char *name, struct bal_vol_info *out);

/*
 * Change the provisioned size.  Growing is always allowed; shrinking returns
 * -EPERM unless @force, and then frees the clusters past the new end.
 * Open handles see the new size on their next request.
 */
int bal_vstore_resize(struct bal_vstore *st, const char *name, uint64_t size, bool force);

/*
 * Delete a volume and free its clusters.  -EBUSY while a handle is open
 * unless @force; forced, open handles see bal_vol_is_deleted() and every
 * further call on them fails with -ESHUTDOWN; the clusters are freed when
 * the last handle closes.  A volume with snapshots: -ENOTEMPTY unless
 * @recursive (then its snapshots go too; -EBUSY if one has clones).
 */
int bal_vstore_delete(struct bal_vstore *st, const char *name, bool force, bool recursive);

/* ---- snapshots and clones ---- */

/*
 * A snapshot freezes a volume's map at an epoch.  Every mapping carries the
 * epoch it was born in; a cluster born at or before the newest snapshot's
 * epoch is never overwritten in place (redirect-on-write) and, when the
 * live volume drops it, it is kept as an old version (with its death epoch)
 * for as long as a snapshot in [birth, death) exists.  The export
 * "VOL@SNAP" (bal_vol_open) is read-only.  A clone is a volume whose
 * unmapped clusters read through to a parent snapshot.
 */
struct bal_snap_info {
	char volume[BAL_NAME_MAX + 1];
	char name[BAL_NAME_MAX + 1];
	uint64_t id;		/* unique in the store */
	uint64_t epoch;
	uint64_t size;		/* the volume's size when taken */
	uint64_t allocated;	/* bytes the snapshot maps */
	uint64_t exclusive;	/* bytes freed if this snapshot were deleted */
	int64_t created_at;
	unsigned clones;	/* volumes cloned from it */
};

/*
 * Take snapshot @snap of @vol: waits for the volume's in-flight pool writes,
 * then freezes the map (cost independent of size and of data written) and
 * makes it durable.  -ENOENT, -EEXIST, -EINVAL (name), -EIO, -EINPROGRESS
 * while a restored volume still reads from the object tier.
 */
int bal_vstore_snap_create(struct bal_vstore *st, const char *vol, const char *snap,
			   struct bal_snap_info *out);

/* Snapshots of @vol (NULL: all), oldest first per volume; *out malloc'ed. */
int bal_vstore_snap_list(struct bal_vstore *st, const char *vol, struct bal_snap_info **out,
			 size_t *n);

/* One snapshot.  -ENOENT. */
int bal_vstore_snap_info(struct bal_vstore *st, const char *vol, const char *snap,
			 struct bal_snap_info *out);

/*
 * Delete a snapshot, freeing exactly the clusters only it held (cost
 * proportional to those).  -EBUSY if it has clones or open exports.
 */
int bal_vstore_snap_delete(struct bal_vstore *st, const char *vol, const char *snap);

/* Create writable volume @newvol sharing @vol@@snap's clusters.  Instant. */
int bal_vstore_clone(struct bal_vstore *st, const char *vol, const char *snap,
		     const char *newvol);

/* Copy the clusters a clone still reads from its parent; detach it.  -EINVAL if not a clone. */
int bal_vstore_flatten(struct bal_vstore *st, const char *vol);

struct bal_range {
	uint64_t off, len;	/* bytes; cluster-aligned, merged, sorted */
};

/*
 * Logical ranges whose content may differ between snapshot @from (NULL:
 * the volume's creation) and the newer snapshot @to, from the maps alone
 * (no data is read).  *out malloc'ed.  -ENOENT, -EINVAL if @from is newer.
 */
int bal_vstore_snap_diff(struct bal_vstore *st, const char *vol, const char *from,
			 const char *to, struct bal_range **out, size_t *n);

/* Pool and map-log counters of the store (statistics and tests). */
struct bal_store_stats {
	uint64_t pool_clusters_used;	/* referenced by a map, a snapshot or a clone */
	uint64_t pool_clusters_free;	/* ready for reuse */
	uint64_t pool_clusters_pending;	/* freed, recycled after the next sync cycles */
	uint64_t map_log_entries;	/* map changes not yet written to RocksDB */
};

/* Fill @out.  Any thread.  0 (always). */
int bal_vstore_stats(struct bal_vstore *st, struct bal_store_stats *out);

/* ---- data path ---- */

/*
 * Open a handle on a volume, or on a snapshot as "VOL@SNAP" (read-only),
 * one per NBD connection.  -ENOENT if unknown or not a valid name.
 * *out is released with bal_vol_close.
 */
int bal_vol_open(struct bal_vstore *st, const char *name, struct bal_volume **out);
void bal_vol_close(struct bal_volume *vol);

/*
 * A handle of the store's own users (the object tier's hydration) on a
 * live volume: like bal_vol_open, but not counted as a connection, so a
 * delete goes ahead and the handle then sees bal_vol_is_deleted().
 */
int bal_vol_open_internal(struct bal_vstore *st, const char *name, struct bal_volume **out);

struct bal_xts_key;

/*
 * The data key of an encrypted volume (snapshots and clones share their
 * origin's), or NULL for an unencrypted one.  Owned by the store; valid
 * while @vol is open.  Bytes in the pool are AES-256-XTS ciphertext with
 * data unit 4096 and tweak = logical 4 KiB block number; a 4 KiB unit that
 * is all zero bytes in the pool was never written and reads as zeroes.
 */
const struct bal_xts_key *bal_vol_xts_key(const struct bal_volume *vol);

const char *bal_vol_name(const struct bal_volume *vol);
uint64_t bal_vol_size(const struct bal_volume *vol);
bool bal_vol_is_readonly(const struct bal_volume *vol);
bool bal_vol_is_deleted(const struct bal_volume *vol);

/* One piece of a request: @len bytes at pool offset @phys, or a hole. */
#define BAL_SEG_HOLE UINT64_MAX
/* Bytes of a restored volume still in the object tier (bal_vol_remote_fill). */
#define BAL_SEG_REMOTE (UINT64_MAX - 1)
struct bal_seg {
	uint64_t phys;		/* byte offset in the pool, or BAL_SEG_HOLE */
	uint32_t len;
};

/*
 * Upper bound on the segments a request of @len bytes can produce (one per
 * cluster touched); size the @segs arrays with it.
 */
static inline size_t bal_vol_max_segs(uint32_t len)
{
	return ((size_t)len >> BAL_CLUSTER_SHIFT) + 2;
}

/*
 * Map [off, off+len) for reading.  Holes come back as BAL_SEG_HOLE and must
 * read as zeroes; clusters still in the object tier as BAL_SEG_REMOTE;
 * adjacent clusters that are contiguous in the pool are merged.  The range
 * must be inside the volume (-EINVAL otherwise).
 */
int bal_vol_map_read(struct bal_volume *vol, uint64_t off, uint32_t len,
		     struct bal_seg *segs, size_t max, size_t *n);

/*
 * Map [off, off+len) for writing, allocating clusters that are not mapped
 * (a new cluster reads as zeroes wherever it is not written).  Every
 * returned segment has a pool offset.  -ENOSPC if the pool cannot grow,
 * -EINVAL out of range, -EPERM read-only, -ESHUTDOWN deleted, -EREMOTE if
 * the request covers only part of a cluster still in the object tier (fill
 * it, then retry; nothing changed).  Trim and zero fail the same way.
 */
int bal_vol_map_write(struct bal_volume *vol, uint64_t off, uint32_t len,
		      struct bal_seg *segs, size_t max, size_t *n);

/*
 * Discard [off, off+len): whole clusters are unmapped and freed (once the
 * unmapping is durable), partial clusters are zeroed in place.
 */
int bal_vol_trim(struct bal_volume *vol, uint64_t off, uint64_t len);

/*
 * Make [off, off+len) read as zeroes.  With @may_punch, whole clusters are
 * unmapped like trim; without it they stay (or become) allocated.
 */
int bal_vol_zero(struct bal_volume *vol, uint64_t off, uint64_t len, bool may_punch);

/* base:allocation flags, identical to NBD_STATE_HOLE / NBD_STATE_ZERO. */
#define BAL_EXT_HOLE 1u
#define BAL_EXT_ZERO 2u
struct bal_extent {
	uint64_t len;
	uint32_t flags;
};

/*
 * Describe [off, off+len) as at most @max extents with distinct flags for
 * neighbours.  The extents may cover less than @len (never zero bytes).
 */
int bal_vol_block_status(struct bal_volume *vol, uint64_t off, uint64_t len,
			 struct bal_extent *ext, size_t max, size_t *n);

/* ---- restored volumes (object tier) ---- */

/*
 * Fill logical cluster @lcl of a restored volume with @data
 * (BAL_CLUSTER_SIZE bytes, as the pool must hold them: ciphertext for an
 * encrypted volume), or make it read as zeroes (@data NULL), if it still
 * reads from the object tier: 1 if filled, 0 if it no longer needed it (a
 * write or trim got there first; such bytes are never overwritten), or
 * -errno.  Any thread; blocks the volume for one cluster write.
 */
int bal_vol_remote_fill(struct bal_volume *vol, uint64_t lcl, const void *data);

/*
 * Some cluster of [off, off+len) still reads from the object tier (with
 * @edges_only: a first or last cluster the range covers only in part, what
 * a write, trim or zero needs local first).  Cheap; any thread.
 */
bool bal_vol_needs_fill(struct bal_volume *vol, uint64_t off, uint64_t len, bool edges_only);

/* The source given at creation of a volume that still reads remotely: 0, -ENOENT. */
int bal_vol_remote_source(struct bal_volume *vol, char *buf, size_t len);

/* Some clusters may still read from the object tier. */
bool bal_vol_is_remote(struct bal_volume *vol);

/*
 * If no cluster reads from the object tier any more, make every fill
 * durable and forget the remote state (the volume is then a plain one):
 * 0, or -EAGAIN while some clusters still read remotely.
 */
int bal_vol_remote_settle(struct bal_volume *vol);

#endif
