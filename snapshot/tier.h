/* SPDX-License-Identifier: MIT */
/*
 * The object tier: the public header of snapshot/ for the daemon.
 *
 * Export: a snapshot's logical space is cut into fixed chunks
 * (BAL_CHUNK_SIZE, snapshot/chunk.h); chunks that changed since the newest
 * snapshot of the same volume already exported to that store (from the
 * changed-cluster diff) are read, compressed, sealed (encrypted volumes)
 * and named by a keyed content hash, so an identical chunk is stored once;
 * unallocated chunks are skipped.  A manifest (snapshot/manifest.h) lists
 * the chunk names and carries the wrapped volume key and a MAC.  Layout in
 * the store: manifests/VOLUME/YYYY/MM/DD/ID.json, chunks/PREFIX/HASH.
 *
 * Restore: a volume is created at once with its data in the object tier
 * (volume.h "restored volumes"); a read of a cluster not yet local fetches
 * its chunk on demand (bal_tier_fetch_async), and background threads
 * hydrate the rest, after which the volume no longer needs the store.
 *
 * Threads: every function is safe from any thread.  Export, verify, list
 * and delete block for as long as they run (the control server runs them
 * on a job thread); progress callbacks run on the calling thread and can
 * cancel by returning non-zero (the call then fails with -ECANCELED).
 * Failures carry a one-line message in the caller's @err buffer (never key
 * material or credentials).
 */
#ifndef BAL_TIER_H
#define BAL_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bal_vstore;
struct bal_volume;
struct bal_tier;

#define BAL_TIER_URL_MAX 1024
#define BAL_TIER_ID_MAX 48
#define BAL_TIER_ERR_MAX 512

/* S3 settings; NULL fields come from the daemon's environment (AWS_*). */
struct bal_tier_creds {
	const char *access_key, *secret_key, *session_token, *region, *endpoint;
};

struct bal_tier_opts {
	size_t opts_size;		/* sizeof(struct bal_tier_opts) */
	struct bal_vstore *store;	/* borrowed; outlives the tier */
	const char *default_url;	/* used when a call gives no URL (file:///DIR/objects) */
	unsigned parallel;		/* uploads/downloads in flight per operation (0: 8) */
};

/*
 * Start the tier: load the restore records and resume the hydration of
 * every volume that still reads from the object tier (with the daemon's
 * environment for S3 settings).  *out owned by the caller.
 */
int bal_tier_create(const struct bal_tier_opts *o, struct bal_tier **out);
/* Stop the hydration threads (waiting for fetches in flight).  NULL is a no-op. */
void bal_tier_destroy(struct bal_tier *t);

/* The store used when a call gives no URL. */
const char *bal_tier_default_url(const struct bal_tier *t);

/* Progress: bytes done of total; return non-zero to cancel. */
typedef int (*bal_tier_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct bal_tier_export_opts {
	size_t opts_size;
	const char *volume, *snapshot;
	const char *url;		/* NULL: the default store */
	const char *storage_class;	/* NULL: none */
	const struct bal_tier_creds *creds;	/* NULL: environment */
	bal_tier_progress_fn progress;
	void *arg;
};

struct bal_tier_export_result {
	char url[BAL_TIER_URL_MAX];	/* normalised store URL */
	char id[BAL_TIER_ID_MAX + 1];
	char parent[BAL_TIER_ID_MAX + 1];	/* "" for a full export */
	char manifest_key[256];
	uint64_t size;			/* volume bytes */
	uint64_t chunks;		/* chunks in the manifest */
	uint64_t chunks_empty;		/* unallocated or all zero: nothing stored */
	uint64_t chunks_unchanged;	/* taken from the parent without reading */
	uint64_t chunks_read;		/* read and hashed */
	uint64_t chunks_present;	/* read, already in the store (dedup, resume) */
	uint64_t chunks_uploaded;
	uint64_t bytes_read, bytes_uploaded;
};

/* Export VOL@SNAP.  -ENOENT, -ENOKEY (encrypted, no master key), -EOPNOTSUPP (customer key), -EIO... */
int bal_tier_export(struct bal_tier *t, const struct bal_tier_export_opts *o,
		    struct bal_tier_export_result *out, char *err, size_t errlen);

/*
 * Create volume @name from @ref ("URL#ID") and return at once; hydration
 * runs in the background.  -EEXIST, -ENOENT (no such snapshot in the
 * store), -EBADMSG (manifest fails its MAC), -ENOKEY (encrypted, no or
 * wrong master key).
 */
int bal_tier_restore(struct bal_tier *t, const char *name, const char *ref,
		     const struct bal_tier_creds *creds, char *err, size_t errlen);

struct bal_tier_hydration {
	char source[BAL_TIER_URL_MAX + BAL_TIER_ID_MAX + 2];	/* "URL#ID" */
	bool active;			/* some clusters still read from the store */
	uint64_t chunks_total;		/* chunks with data */
	uint64_t chunks_done;		/* local (fetched, or overwritten first) */
	uint64_t chunks_failed;		/* failed their check or missing: reads there fail */
	uint64_t bytes_fetched;
	char last_error[BAL_TIER_ERR_MAX];
};

/* Hydration state of a restored volume: -ENOENT if it was not restored. */
int bal_tier_hydration(struct bal_tier *t, const char *volume, struct bal_tier_hydration *out);

/*
 * Wait until @volume is fully local (0), its hydration stopped on failed
 * chunks (-EIO), or @progress cancels.
 */
int bal_tier_wait(struct bal_tier *t, const char *volume, bal_tier_progress_fn progress,
		  void *arg, char *err, size_t errlen);

/*
 * Volume @volume (id @volume_id) was deleted: stop hydrating it and drop
 * its restore records.
 */
void bal_tier_forget(struct bal_tier *t, const char *volume, uint64_t volume_id);

/*
 * Data path: make the clusters of [off, off+len) of @vol local, then call
 * cb(arg, err) on a tier thread (err 0, -EIO if a chunk is missing or
 * fails its check: logged with the object's key).  Returns 0 if queued,
 * -ENOENT if @vol is not being restored (then @cb is not called).
 */
int bal_tier_fetch_async(struct bal_tier *t, struct bal_volume *vol, uint64_t off,
			 uint64_t len, void (*cb)(void *arg, int err), void *arg);

/* One finding of bal_tier_verify. */
struct bal_tier_problem {
	uint64_t index;			/* first chunk index naming the object */
	char key[128];			/* object key */
	char what[96];			/* "missing", "truncated (N of M bytes)", "fails its integrity check" */
};

struct bal_tier_verify_result {
	char manifest_key[256];
	bool manifest_ok;		/* parsed and its MAC verified */
	char manifest_error[256];
	uint64_t chunks;		/* distinct objects checked */
	uint64_t bytes;
	struct bal_tier_problem *problems;	/* malloc'ed; caller frees */
	size_t nproblems;
};

/* Check every object @ref's manifest names.  0 even with problems (see the result); -errno if it could not run. */
int bal_tier_verify(struct bal_tier *t, const char *ref, const struct bal_tier_creds *creds,
		    bal_tier_progress_fn progress, void *arg, struct bal_tier_verify_result *out,
		    char *err, size_t errlen);

struct bal_tier_entry {
	char id[BAL_TIER_ID_MAX + 1];
	char volume[65];
	char snapshot[65];
	char parent[BAL_TIER_ID_MAX + 1];
	char key[256];
	int64_t created;
	uint64_t size;			/* volume bytes */
	uint64_t chunks;		/* chunks with data */
	bool encrypted;
	char storage_class[32];
};

/*
 * Exported snapshots in @url (NULL: default) of @volume (NULL: all)
 * created on or after @since (unix seconds, 0: all), oldest first.  *out
 * malloc'ed.
 */
int bal_tier_list(struct bal_tier *t, const char *url, const char *volume, int64_t since,
		  const struct bal_tier_creds *creds, struct bal_tier_entry **out, size_t *n,
		  char *err, size_t errlen);

struct bal_tier_delete_result {
	uint64_t chunks_deleted;	/* objects no other manifest referenced */
	uint64_t chunks_kept;		/* still referenced by another manifest */
};

/* Delete @ref's manifest and the chunks no other manifest references. */
int bal_tier_delete(struct bal_tier *t, const char *ref, const struct bal_tier_creds *creds,
		    struct bal_tier_delete_result *out, char *err, size_t errlen);

#endif
