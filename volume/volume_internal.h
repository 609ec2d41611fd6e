/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the files of the volume store (store.c, sync.c,
 * catalog.c, volume.c) and its unit test.  Not for other modules.
 *
 * RocksDB layout (all integers big-endian):
 *   'F'                          -> format: "BALV" version(1) cluster shift(1)
 *   'I'                          -> next volume id (8)
 *   'V' id(8)                    -> size(8) created_at(8) name_len(1) name
 *   'M' id(8) logical cluster(8) -> phys cluster(8) birth(8) flags(4)
 * so one volume's extent map is one key range.
 *
 * Lock order: store catalog lock, then a volume's lock, then the pool's.
 */
#ifndef BAL_VOLUME_INTERNAL_H
#define BAL_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "volume/kv.h"
#include "volume/pool.h"
#include "volume/volume.h"
#include "volume/xmap.h"

#define BAL_KEY_FORMAT 'F'
#define BAL_KEY_NEXT_ID 'I'
#define BAL_KEY_VOL 'V'
#define BAL_KEY_MAP 'M'
#define BAL_FORMAT_MAGIC "BALV"
#define BAL_FORMAT_VERSION 1
#define BAL_VOL_KEY_LEN 9
#define BAL_MAP_KEY_LEN 17
#define BAL_MAP_VAL_LEN 20

/* One volume of the catalog. */
struct bal_vrec {
	char name[BAL_NAME_MAX + 1];
	uint64_t id;
	int64_t created_at;
	_Atomic uint64_t size;		/* written under lock, read anywhere */
	atomic_bool deleted;		/* set under lock and the catalog lock */
	unsigned connections;		/* catalog lock */
	pthread_mutex_t lock;		/* protects map and the writes of size */
	struct bal_xmap map;
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

	pthread_mutex_t cat_lock;	/* protects the fields below */
	struct bal_vrec **vols;		/* including deleted ones still open */
	size_t nvols;
	size_t capvols;
	uint64_t next_id;

	pthread_mutex_t sync_lock;	/* protects the fields below */
	pthread_cond_t sync_cond;
	struct bal_sync_req *sync_head;
	struct bal_sync_req **sync_tail;
	bool closing;
	int sync_err;			/* sticky: a failed fdatasync taints all */
	uint64_t cycles;		/* completed sync cycles */
	pthread_t sync_thread;
	bool sync_started;

	/* I/O guard (bal_vstore_io_begin); flipped only by the sync thread. */
	atomic_uint io_phase;
	atomic_ulong io_active[2];
};

struct bal_volume {
	struct bal_vstore *st;
	struct bal_vrec *rec;
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

/* catalog.c */
/* Encode the catalog value of @rec with @size into @buf (>= 17 + name). */
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

/* sync.c: start the sync thread; stop it after a final cycle. */
int bal_vstore_sync_start(struct bal_vstore *st);
void bal_vstore_sync_stop(struct bal_vstore *st);

/* volume.c: unmap [first, end) clusters of @rec (locked).  0 or -errno. */
int bal_vrec_unmap(struct bal_vstore *st, struct bal_vrec *rec, uint64_t first,
		   uint64_t end);

/* ---- test hooks ---- */

/* Bytes of index memory of @vol's volume. */
size_t bal_vol_index_mem(struct bal_volume *vol);
void bal_vstore_pool_stats(struct bal_vstore *st, struct bal_pool_stats *out);
/* Number of completed sync cycles. */
uint64_t bal_vstore_sync_cycles(struct bal_vstore *st);

#endif
