/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the files of the volume store (store.c, sync.c,
 * maplog.c, catalog.c, volume.c, versions.c, snap.c, clone.c) and its unit
 * tests.  Not for other modules.
 *
 * RocksDB layout (all integers big-endian):
 *   'F'                          -> format: "BALV" version(1) cluster shift(1)
 *   'I'                          -> next id (8), shared by volumes and snapshots
 *   'V' id(8)                    -> size(8) created_at(8) name_len(1) name
 *                                   [parent id(8) parent epoch(8) parent limit(8)]
 *   'M' id(8) logical cluster(8) -> phys cluster(8) birth(8) flags(4)
 *   'D' id(8) death(8) lcl(8)    -> phys cluster(8) birth(8) flags(4)
 *   'S' id(8) epoch(8)           -> snap id(8) size(8) created_at(8)
 *                                   parent limit(8) name_len(1) name
 *   'K' id(8)                    -> data key of an encrypted volume (keys.c)
 *   'k'                          -> key check value of the master key (keys.c)
 *   'R' id(8)                    -> remote state of a restored volume (remote.c)
 *   'X' name                     -> records of the modules above (meta.c)
 * so one volume's live map, its old versions (ordered by death) and its
 * snapshots (ordered by epoch) are each one key range.
 *
 * Epochs: a volume's current epoch starts at 1; snapshot S takes the
 * current epoch s and the volume moves to s + 1.  A live mapping born at or
 * before the newest snapshot's epoch is shared and never changed in place;
 * when the live volume drops it, it becomes an old version [birth, death)
 * that snapshot t references iff birth <= t < death.  Every pool cluster
 * belongs to exactly one live mapping or one old version of one volume (a
 * clone reads its parent's clusters through the parent, it never maps them).
 *
 * Map durability: every change of a live mapping or an old version is
 * appended, in order, to the store's map log (maplog.c); the sync thread
 * writes the log to RocksDB after the pool fdatasync, so a mapping never
 * becomes durable before the bytes copied into its cluster.  Catalog
 * changes flush the log (bal_vstore_sync) before writing their own synced
 * batch, with the volume locked.
 *
 * Lock order: store control lock (ctl_lock), catalog lock, a clone's
 * volume lock, its parent's volume lock (child before parent), the map log
 * lock, the pool's.  Pool I/O waits (bal_vstore_io_grace) never happen with
 * a catalog or volume lock held: workers take those locks.
 */
#ifndef BAL_VOLUME_INTERNAL_H
#define BAL_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/util.h"
#include "volume/kv.h"
#include "volume/pool.h"
#include "volume/volume.h"
#include "volume/xmap.h"

#define BAL_KEY_FORMAT 'F'
#define BAL_KEY_NEXT_ID 'I'
#define BAL_KEY_VOL 'V'
#define BAL_KEY_MAP 'M'
#define BAL_KEY_VER 'D'
#define BAL_KEY_SNAP 'S'
#define BAL_KEY_VKEY 'K'
#define BAL_KEY_KCV 'k'
#define BAL_KEY_REMOTE 'R'
#define BAL_KEY_META 'X'
#define BAL_FORMAT_MAGIC "BALV"
#define BAL_FORMAT_VERSION 1
#define BAL_VOL_KEY_LEN 9
#define BAL_MAP_KEY_LEN 17
#define BAL_MAP_VAL_LEN 20
#define BAL_VER_KEY_LEN 25
#define BAL_SNAP_KEY_LEN 17
#define BAL_SNAP_VAL_MIN 33
#define BAL_VREC_VAL_MAX (17 + BAL_NAME_MAX + 24)

/*
 * Entry flag of clones only: the cluster reads as zeroes and hides the
 * parent's; it owns no pool cluster (phys is BAL_PHYS_NONE).
 */
#define BAL_XENT_HOLE 2u
#define BAL_PHYS_NONE UINT64_MAX
/* The epoch of the live volume, for the resolving functions. */
#define BAL_EPOCH_LIVE UINT32_MAX
/* Map log size that forces a sync cycle. */
#define BAL_LOG_MAX 65536

/* One old version of a logical cluster: referenced by snapshots in [birth, death). */
struct bal_ver {
	uint64_t lcl;
	uint64_t phys;		/* BAL_PHYS_NONE for a HOLE entry */
	uint32_t birth;
	uint32_t death;
	uint32_t flags;
	uint32_t next;		/* next version in the same hash chain */
};

/* One death epoch's old versions (indexes into bal_vers.v). */
struct bal_dbucket {
	uint32_t death;
	uint32_t n, cap;
	uint32_t *idx;
};

/*
 * Old versions of one volume, in memory: a hash of lcl for snapshot reads
 * and buckets by death (sorted; deaths only grow) for snapshot deletion.
 */
struct bal_vers {
	struct bal_ver *v;	/* slots; free ones chained through next */
	uint32_t nslots, capslots, freelist;
	uint32_t *heads;	/* hash buckets, UINT32_MAX = empty */
	uint32_t nheads;	/* power of two */
	uint64_t count;
	struct bal_dbucket *db;
	size_t ndb, capdb;
	size_t mem;
};

struct bal_vrec;
struct bal_vkey;
struct bal_vremote;

struct bal_snap {
	char name[BAL_NAME_MAX + 1];
	uint64_t id;
	uint32_t epoch;
	uint64_t size;
	uint64_t plimit;	/* the volume's parent limit when taken */
	int64_t created_at;
	unsigned clones;	/* volume lock */
	unsigned connections;	/* volume lock */
	bool ready;		/* false while being created */
};

/*
 * A cluster redirected while a snapshot was being taken: its source may
 * still have been written by I/O that began before the epoch moved, so
 * once that I/O has ended the bytes no newer request covered are copied
 * again (bal_vrec_recopy).
 */
struct bal_recopy {
	uint64_t lcl, src, dst;
	uint8_t covered[BAL_CLUSTER_SIZE / 8];	/* bytes written since */
	struct bal_recopy *next;
};

/* One volume of the catalog. */
struct bal_vrec {
	char name[BAL_NAME_MAX + 1];
	uint64_t id;
	int64_t created_at;
	_Atomic uint64_t size;		/* written under lock, read anywhere */
	atomic_bool deleted;		/* set under lock and the catalog lock */
	unsigned connections;		/* catalog lock: open handles, internal ones too */
	unsigned internal;		/* catalog lock: the store's own (bal_vol_open_internal) */
	pthread_mutex_t lock;		/* protects everything below */
	struct bal_xmap map;		/* live mappings */
	struct bal_vers vers;		/* old versions */
	uint32_t epoch;			/* current epoch */
	struct bal_snap **snaps;	/* sorted by epoch */
	size_t nsnaps, capsnaps;
	/* A clone: unmapped clusters below plimit read parent@psnap. */
	struct bal_vrec *parent;
	struct bal_snap *psnap;
	uint64_t parent_id;		/* from the record, until linked */
	uint32_t pepoch;
	uint64_t plimit;		/* clusters; only shrinks */
	uint64_t lookups;		/* index lookups (tests) */
	/* A snapshot is being taken: clusters born after freeze_lo are recorded. */
	bool freezing;
	uint32_t freeze_lo;
	struct bal_recopy *recopy;
	/* Encrypted volumes (keys.c): NULL for plain ones; set at load or create. */
	struct bal_vkey *key;
	/* Restored from the object tier and not yet all local (remote.c). */
	struct bal_vremote *remote;
	/* remote != NULL, readable without the lock (set before the volume is visible). */
	atomic_bool has_remote;
};

struct bal_sync_req {
	void (*cb)(void *arg, int err);
	void *arg;
	struct bal_sync_req *next;
};

struct bal_vstore {
	char *dir;
	int dir_fd;
	int lock_fd;
	struct bal_kv *kv;
	struct bal_pool *pool;

	pthread_mutex_t ctl_lock;	/* serialises catalog changes */
	/* Encryption (keys.c): changed under ctl_lock after open. */
	const struct bal_mk *master;	/* borrowed; NULL: none given */
	bool master_ok;			/* may wrap keys (matches the stored KCV) */
	bool encrypt_by_default;

	pthread_mutex_t cat_lock;	/* protects the fields below */
	struct bal_vrec **vols;		/* including deleted ones still open */
	size_t nvols;
	size_t capvols;
	uint64_t next_id;

	pthread_mutex_t log_lock;	/* protects the map log */
	struct bal_kv_batch *log;
	size_t log_n;
	struct timespec log_since;	/* when the first entry was appended */

	pthread_mutex_t sync_lock;	/* protects the fields below */
	pthread_cond_t sync_cond;
	struct bal_sync_req *sync_head;
	struct bal_sync_req **sync_tail;
	bool closing;
	int sync_err;			/* sticky: a failed fdatasync taints all */
	uint64_t cycles;		/* completed sync cycles */
	pthread_t sync_thread;
	bool sync_started;

	/* The volume a snapshot is being taken of (one at a time: ctl_lock). */
	pthread_mutex_t freeze_lock;
	struct bal_vrec *freezing;

	/* I/O guard (bal_vstore_io_begin); flips serialised by grace_lock. */
	pthread_mutex_t grace_lock;
	atomic_uint io_phase;
	atomic_ulong io_active[2];
};

struct bal_volume {
	struct bal_vstore *st;
	struct bal_vrec *rec;
	struct bal_snap *snap;		/* NULL: the live volume */
	bool internal;			/* not counted as a connection */
	char name[2 * BAL_NAME_MAX + 2];
};

static inline void bal_key_vol(uint8_t k[BAL_VOL_KEY_LEN], uint64_t id)
{
	k[0] = BAL_KEY_VOL;
	bal_put_be64(k + 1, id);
}

static inline void bal_key_map(uint8_t k[BAL_MAP_KEY_LEN], uint64_t id, uint64_t lcl)
{
	k[0] = BAL_KEY_MAP;
	bal_put_be64(k + 1, id);
	bal_put_be64(k + 9, lcl);
}

static inline void bal_key_ver(uint8_t k[BAL_VER_KEY_LEN], uint64_t id, uint32_t death,
			       uint64_t lcl)
{
	k[0] = BAL_KEY_VER;
	bal_put_be64(k + 1, id);
	bal_put_be64(k + 9, death);
	bal_put_be64(k + 17, lcl);
}

static inline void bal_key_snap(uint8_t k[BAL_SNAP_KEY_LEN], uint64_t id, uint32_t epoch)
{
	k[0] = BAL_KEY_SNAP;
	bal_put_be64(k + 1, id);
	bal_put_be64(k + 9, epoch);
}

static inline void bal_map_val(uint8_t v[BAL_MAP_VAL_LEN], const struct bal_xent *e)
{
	bal_put_be64(v, e->phys);
	bal_put_be64(v + 8, e->birth);
	bal_put_be32(v + 16, e->flags);
}

static inline uint64_t bal_size_clusters(uint64_t size)
{
	return (size + BAL_CLUSTER_SIZE - 1) >> BAL_CLUSTER_SHIFT;
}

/* Epoch of the newest snapshot of @rec (0: none).  Volume locked. */
static inline uint32_t bal_vrec_snap_max(const struct bal_vrec *rec)
{
	return rec->nsnaps ? rec->snaps[rec->nsnaps - 1]->epoch : 0;
}

/* A live mapping that a snapshot references.  Volume locked. */
static inline bool bal_xent_shared(const struct bal_vrec *rec, const struct bal_xent *e)
{
	return e->birth <= bal_vrec_snap_max(rec);
}

static inline bool bal_xent_owns(const struct bal_xent *e)
{
	return !(e->flags & BAL_XENT_HOLE);
}

/* catalog.c */
/* Encode the catalog value of @rec with @size into @buf (BAL_VREC_VAL_MAX). */
size_t bal_vrec_encode(const struct bal_vrec *rec, uint64_t size, uint8_t *buf);
/* Decode a catalog record.  -EUCLEAN if malformed, -ENOMEM. */
int bal_vrec_decode(const void *key, size_t klen, const void *val, size_t vlen,
		    struct bal_vrec **out);
int bal_vrec_create(const char *name, uint64_t id, uint64_t size, int64_t created_at,
		    struct bal_vrec **out);
/* Free a record that no handle references; its clusters go to the pool. */
void bal_vrec_destroy(struct bal_vstore *st, struct bal_vrec *rec, bool release);
/* Catalog lock held: append @rec.  -ENOMEM. */
int bal_vstore_add_locked(struct bal_vstore *st, struct bal_vrec *rec);
/* Catalog lock held: the live volume called @name, or NULL. */
struct bal_vrec *bal_vstore_find_locked(struct bal_vstore *st, const char *name);
/* Catalog lock held: drop @rec from the array. */
void bal_vstore_remove_locked(struct bal_vstore *st, struct bal_vrec *rec);
/* A valid provisioned size. */
bool bal_vol_size_is_valid(uint64_t size);
/* Write @b with a WAL sync.  0 or -errno. */
int bal_vstore_write_synced(struct bal_vstore *st, struct bal_kv_batch *b);

/* sync.c */
int bal_vstore_sync_start(struct bal_vstore *st);
void bal_vstore_sync_stop(struct bal_vstore *st);
/* Wait until every pool I/O begun before the call has ended.  No lock held. */
void bal_vstore_io_grace(struct bal_vstore *st);

/* maplog.c: append one change (volume locked; any order of volumes). */
void bal_log_map_put(struct bal_vstore *st, uint64_t id, uint64_t lcl, const struct bal_xent *e);
void bal_log_map_del(struct bal_vstore *st, uint64_t id, uint64_t lcl);
void bal_log_ver_put(struct bal_vstore *st, uint64_t id, const struct bal_ver *v);
void bal_log_ver_del(struct bal_vstore *st, uint64_t id, uint32_t death, uint64_t lcl);
/* Append a raw put / delete (catalog records that must follow the map). */
void bal_log_put(struct bal_vstore *st, const void *k, size_t kl, const void *v, size_t vl);
void bal_log_del(struct bal_vstore *st, const void *k, size_t kl);
/* Sync thread: take the log (NULL if empty).  Caller destroys the batch. */
struct bal_kv_batch *bal_log_take(struct bal_vstore *st, size_t *n);
/* Entries waiting and how long the oldest has waited (ms). */
size_t bal_log_pending(struct bal_vstore *st, uint64_t *age_ms);
void bal_log_fini(struct bal_vstore *st);

/* versions.c */
void bal_vers_init(struct bal_vers *vs);
void bal_vers_fini(struct bal_vers *vs);
/* Add a version.  0 or -ENOMEM. */
int bal_vers_add(struct bal_vers *vs, const struct bal_ver *v);
/* The version of @lcl that epoch @e sees, or NULL. */
const struct bal_ver *bal_vers_find(const struct bal_vers *vs, uint64_t lcl, uint32_t e);
/*
 * Remove the versions with death in (@dlo, @dhi] and birth in (@blo, @bhi],
 * calling @fn on each before it goes.  Cost: the versions with such deaths.
 */
void bal_vers_reclaim(struct bal_vers *vs, uint32_t dlo, uint32_t dhi, uint32_t blo,
		      uint32_t bhi, void (*fn)(void *arg, const struct bal_ver *v), void *arg);
/* Call @fn on every version (any order); @fn must not change @vs. */
void bal_vers_foreach(const struct bal_vers *vs, void (*fn)(void *arg, const struct bal_ver *v),
		      void *arg);

/* volume.c */
/* Volume locked: drop the live mappings of [first, end) (shared ones become old versions). */
int bal_vrec_unmap(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first, uint64_t end);
/* Volume locked: make cluster bytes [lo, hi) of @lcl read as zeroes (RoW if shared). */
int bal_vrec_zero_partial(struct bal_vstore *st, struct bal_vrec *rec, uint64_t lcl,
			  uint64_t lo, uint64_t hi, bool punch);
/* Volume locked: copy a clone's cluster @lcl from its parent into its own map. */
int bal_vrec_materialize(struct bal_vstore *st, struct bal_vrec *rec, uint64_t lcl);
/*
 * Volume locked, after the snapshot's I/O grace: copy again what the
 * clusters redirected during the freeze window did not get from newer
 * requests, and end the window.
 */
void bal_vrec_recopy(struct bal_vstore *st, struct bal_vrec *rec);
/* Sync thread: run the above for a volume being snapshotted (grace first). */
void bal_vstore_recopy_frozen(struct bal_vstore *st);
/* Copy cluster bytes [lo, hi) from pool cluster @src to @dst.  0 or -errno. */
int bal_pool_copy(struct bal_vstore *st, uint64_t src, uint64_t dst, uint64_t lo, uint64_t hi);

/*
 * snap.c: what @rec shows at epoch @e (BAL_EPOCH_LIVE: the live volume)
 * for cluster @lcl, with parent limit @plimit: true and *out (flags ZERO
 * and HOLE mean zeroes, phys may be BAL_PHYS_NONE), or false for a hole.
 * @rec locked; parents are locked inside.
 */
bool bal_resolve(struct bal_vrec *rec, uint32_t e, uint64_t plimit, uint64_t lcl,
		 struct bal_xent *out);
/* Parent content of @lcl for @rec's live volume (rec locked): like bal_resolve. */
bool bal_resolve_parent(struct bal_vrec *rec, uint64_t plimit, uint64_t lcl,
			struct bal_xent *out);
/* Volume locked: the ready or creating snapshot called @name, or NULL. */
struct bal_snap *bal_vrec_find_snap(struct bal_vrec *rec, const char *name);
/* Volume locked: remove @sn and free what only it referenced (through the log). */
void bal_vrec_drop_snap(struct bal_vstore *st, struct bal_vrec *rec, struct bal_snap *sn);
/* Start-up: load snapshots and link clones (after the catalog). */
int bal_vstore_load_snaps(struct bal_vstore *st);
/* Start-up: load old versions (after the maps); drop unreferenced ones. */
int bal_vstore_load_vers(struct bal_vstore *st);
/* clone.c: volume locked: bytes the live volume maps, owns alone, shares. */
int bal_vrec_space(struct bal_vrec *rec, uint64_t *alloc, uint64_t *excl, uint64_t *shared);
/* Catalog lock held: volume by id, or NULL. */
struct bal_vrec *bal_vstore_find_id(struct bal_vstore *st, uint64_t id);

/* rec->lock held: bytes of memory of the volume's extent index. */
static inline size_t bal_vrec_index_mem(const struct bal_vrec *rec)
{
	return bal_xmap_mem(&rec->map) + rec->vers.mem;
}

/* remote.c (volume locked unless said) */
/* @lcl is below the remote limit in a granule with data. */
bool bal_vrec_remote_has(const struct bal_vrec *rec, uint64_t lcl);
/* ... and the live map has no entry for it: it reads from the store. */
bool bal_vrec_is_remote(struct bal_vrec *rec, uint64_t lcl);
/* Create: set @rec's remote state from @o and add its record to @b. */
int bal_vremote_create(struct bal_vrec *rec, const struct bal_vol_remote *o,
		       struct bal_kv_batch *b);
/* Shrink: lower the remote limit to @ncl clusters (through the map log). */
void bal_vremote_shrink(struct bal_vstore *st, struct bal_vrec *rec, uint64_t ncl);
/* Delete the remote record of volume @id in @b. */
void bal_vremote_delete_key(struct bal_kv_batch *b, uint64_t id);
void bal_vremote_destroy(struct bal_vremote *r);
/* Start-up, after the catalog. */
int bal_vstore_load_remote(struct bal_vstore *st);

/* ---- test hooks ---- */

/* Bytes of index memory of @vol's volume (volume_info's index_bytes). */
size_t bal_vol_index_mem(struct bal_volume *vol);
void bal_vstore_pool_stats(struct bal_vstore *st, struct bal_pool_stats *out);
/* Number of completed sync cycles. */
uint64_t bal_vstore_sync_cycles(struct bal_vstore *st);
/* Index lookups done so far on @vol's volume. */
uint64_t bal_vol_lookups(struct bal_volume *vol);
/* Old versions held by volume @name (-ENOENT). */
int bal_vstore_versions(struct bal_vstore *st, const char *name, uint64_t *n);

#endif
