/* SPDX-License-Identifier: MIT */
/*
 * The file:// object store: each key is a file under the root directory,
 * with one directory per key segment.
 *
 * Invariants:
 *  - A put is atomic: the bytes go to a temp file in the root's temp
 *    directory (TMP_DIR/".BASE.tmp.PID.TID.SEQ", O_EXCL), which is fsynced
 *    and renamed over the key, then the key's directory is fsynced (and so
 *    is the parent of every directory the put created).  A reader sees the
 *    old or the new file.  Temp files of processes that died (an export
 *    killed mid-way) are removed when the store is next opened.
 *  - Names that look like temp files (leading '.', containing ".tmp.") are
 *    never listed, and keys with such a segment are refused (-EINVAL).
 *  - A delete removes the directories it leaves empty, so a delimiter
 *    listing reports a common prefix only while a key lives under it (as
 *    S3 does).  A put whose directory vanishes under it that way retries.
 *  - A key cannot be both an object and the prefix of another ("a" and
 *    "a/b"): S3 allows it, a directory tree does not (-EIO).
 *
 * Threads: any; every operation is a few system calls on the root's
 * directory fd, with no lock (the file system serialises).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/objstore_internal.h"

#define PUT_TRIES 10	/* a directory pruned by a concurrent delete */
/* Under the root; a temp-looking name, so never listed nor a key segment. */
#define TMP_DIR ".tmp.d"

struct fstore {
	int rootfd;
	int tmpfd;		/* TMP_DIR */
	atomic_uint seq;	/* temp file names */
};

static int map_errno(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return -ENOENT;
	case EACCES:
	case EPERM:
	case EROFS:
		return -EACCES;
	case ENOSPC:
	case EDQUOT:
		return -ENOSPC;
	case ENOMEM:
		return -ENOMEM;
	case ENAMETOOLONG:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static int fail(struct bal_objstore *s, const char *key, int e)
{
	bal_objstore_seterr("%s: %s: %s", s->url, key, strerror(e));
	return map_errno(e);
}

static bool is_temp_name(const char *name)
{
	return name[0] == '.' && strstr(name, ".tmp.");
}

static bool has_temp_segment(const char *key)
{
	for (const char *seg = key;;) {
		size_t n = strcspn(seg, "/");
		char name[1100];

		snprintf(name, sizeof(name), "%.*s", (int)n, seg);
		if (is_temp_name(name))
			return true;
		if (!seg[n])
			return false;
		seg += n + 1;
	}
}

/* mkdir -p of the directories of @key under the root, fsyncing the parent of
 * each one created. */
static int make_dirs(struct fstore *fs, const char *key)
{
	char path[1100];
	size_t n = strlen(key);

	if (n >= sizeof(path))
		return ENAMETOOLONG;
	memcpy(path, key, n + 1);
	for (char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
		int pfd;

		*p = 0;
		if (mkdirat(fs->rootfd, path, 0755) < 0) {
			if (errno != EEXIST)
				return errno;
			*p = '/';
			continue;
		}
		/* The new entry is in the parent: make it durable. */
		char *slash = strrchr(path, '/');

		if (slash) {
			*slash = 0;
			pfd = openat(fs->rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			*slash = '/';
		} else {
			pfd = dup(fs->rootfd);
		}
		if (pfd < 0)
			return errno;
		if (fsync(pfd) < 0) {
			int e = errno;

			close(pfd);
			return e;
		}
		close(pfd);
		*p = '/';
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One attempt at an atomic put; an errno value, ENOENT meaning "the
 * directory went away, try again". */
static int put_once(struct fstore *fs, const char *key, const void *data, size_t len)
{
	const char *base = strrchr(key, '/');
	char dir[1100], tmp[300];
	int dfd, fd, e;

	base = base ? base + 1 : key;
	if (base == key) {
		dfd = dup(fs->rootfd);
	} else {
		snprintf(dir, sizeof(dir), "%.*s", (int)(base - key - 1), key);
		dfd = openat(fs->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd < 0)
		return errno;
	snprintf(tmp, sizeof(tmp), ".%.200s.tmp.%d.%d.%u", base, (int)getpid(), (int)gettid(),
		 atomic_fetch_add(&fs->seq, 1));
	fd = openat(fs->tmpfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		e = errno;
		goto err_close_dir;
	}
	e = write_all(fd, data, len);
	if (!e && fsync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && !e)
		e = errno;
	if (!e && renameat(fs->tmpfd, tmp, dfd, base) < 0)
		e = errno == ENOENT ? EIO : errno;
	if (e) {
		unlinkat(fs->tmpfd, tmp, 0);
		goto err_close_dir;
	}
	if (fsync(dfd) < 0)
		e = errno;
err_close_dir:
	close(dfd);
	return e;
}

static int fput(struct bal_objstore *s, const char *key, const void *data, size_t len,
		const char *storage_class)
{
	struct fstore *fs = s->be;
	int e = 0;

	(void)storage_class;
	if (has_temp_segment(key)) {
		bal_objstore_seterr("%s: PUT %s: key segment looks like a temp file", s->url, key);
		return -EINVAL;
	}
	for (int i = 0; i < PUT_TRIES; i++) {
		e = make_dirs(fs, key);
		if (!e)
			e = put_once(fs, key, data, len);
		if (e != ENOENT)
			break;
	}
	if (!e)
		return 0;
	/* A missing directory here means a file sits where one should be. */
	if (e == ENOENT || e == ENOTDIR || e == EEXIST || e == EISDIR) {
		bal_objstore_seterr("%s: PUT %s: %s (a key and a key prefix clash)", s->url, key,
				    strerror(e));
		return -EIO;
	}
	return fail(s, key, e);
}

static int fget(struct bal_objstore *s, const char *key, size_t max_len, void **data,
		size_t *len)
{
	struct fstore *fs = s->be;
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd, e;

	fd = openat(fs->rootfd, key, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(s, key, errno == EISDIR ? ENOENT : errno);
	if (fstat(fd, &st) < 0) {
		e = errno;
		close(fd);
		return fail(s, key, e);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(s, key, ENOENT);
	}
	if ((uint64_t)st.st_size > max_len) {
		close(fd);
		bal_objstore_seterr("%s: GET %s: %lld bytes, more than %zu", s->url, key,
				    (long long)st.st_size, max_len);
		return -EFBIG;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return fail(s, key, ENOMEM);
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? errno : EIO;
			free(buf);
			close(fd);
			return fail(s, key, e);
		}
		done += (size_t)n;
	}
	close(fd);
	*data = buf;
	*len = done;
	return 0;
}

static int fhead(struct bal_objstore *s, const char *key, uint64_t *size)
{
	struct fstore *fs = s->be;
	struct stat st;

	if (fstatat(fs->rootfd, key, &st, 0) < 0)
		return fail(s, key, errno);
	if (!S_ISREG(st.st_mode))
		return fail(s, key, ENOENT);
	*size = (uint64_t)st.st_size;
	return 0;
}

static int fdel(struct bal_objstore *s, const char *key)
{
	struct fstore *fs = s->be;
	char path[1100];
	char *slash;

	if (unlinkat(fs->rootfd, key, 0) < 0) {
		if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
			return 0;
		return fail(s, key, errno);
	}
	/* Prune the directories this left empty; the first non-empty stops it. */
	snprintf(path, sizeof(path), "%s", key);
	while ((slash = strrchr(path, '/'))) {
		*slash = 0;
		if (unlinkat(fs->rootfd, path, AT_REMOVEDIR) < 0)
			break;
	}
	return 0;
}

/* ---- listing -------------------------------------------------------------- */

struct ent {
	char *sortkey;		/* the name, with '/' appended for a directory */
	bool is_dir;
	uint64_t size;
};

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ent *)a)->sortkey, ((const struct ent *)b)->sortkey);
}

struct walk {
	struct bal_objstore *s;
	size_t plen;		/* length of the listed prefix */
	const char *delim;
	bal_objstore_list_cb cb;
	void *arg;
	char last[1100];	/* the last common prefix reported */
};

/* The entries of directory @rel ("" for the root) whose names start with
 * @start, sorted so that walking them yields keys in byte order (a
 * directory "a" sorts as "a/", between "a-" and "a0").  *n entries. */
static int read_dir(int rootfd, const char *rel, const char *start, struct ent **out, size_t *n)
{
	size_t slen = strlen(start), cap = 0;
	struct ent *v = NULL;
	struct dirent *de;
	DIR *d;
	int fd, e = 0;

	*n = 0;
	fd = openat(rootfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return (errno == ENOENT || errno == ENOTDIR) ? 0 : errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return errno;
	}
	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		bool bad = false;

		if (de->d_name[0] == '.' && (!de->d_name[1] || is_temp_name(de->d_name) ||
					     !strcmp(de->d_name, "..")))
			continue;
		if (strncmp(de->d_name, start, slen))
			continue;
		for (const char *c = de->d_name; *c; c++)
			bad |= (unsigned char)*c < 0x20 || *c == 0x7f;
		if (bad || fstatat(dirfd(d), de->d_name, &st, 0) < 0)
			continue;
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
			continue;
		if (*n == cap) {
			struct ent *nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));

			if (!nv) {
				e = ENOMEM;
				break;
			}
			v = nv;
		}
		v[*n].is_dir = S_ISDIR(st.st_mode);
		v[*n].size = (uint64_t)st.st_size;
		if (asprintf(&v[*n].sortkey, "%s%s", de->d_name, v[*n].is_dir ? "/" : "") < 0) {
			e = ENOMEM;
			break;
		}
		(*n)++;
	}
	if (!e && errno)
		e = errno;
	closedir(d);
	if (e) {
		while (*n)
			free(v[--*n].sortkey);
		free(v);
		return e;
	}
	if (*n)
		qsort(v, *n, sizeof(*v), ent_cmp);
	*out = v;
	return 0;
}

static void free_ents(struct ent *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].sortkey);
	free(v);
}

/* Does directory @rel hold a key (a regular file that is not a temp file)? */
static bool has_key(int rootfd, const char *rel)
{
	struct ent *v = NULL;
	size_t n;
	bool found = false;

	if (read_dir(rootfd, rel, "", &v, &n))
		return true;	/* unreadable: report it rather than hide it */
	for (size_t i = 0; i < n && !found; i++) {
		char sub[1100];

		if (!v[i].is_dir) {
			found = true;
		} else {
			snprintf(sub, sizeof(sub), "%s%s", rel, v[i].sortkey);
			found = has_key(rootfd, sub);
		}
	}
	free_ents(v, n);
	return found;
}

/* Report key @key (size @size), rolling it up into a common prefix when a
 * delimiter follows the listed prefix. */
static int emit(struct walk *w, const char *key, uint64_t size)
{
	const char *d = w->delim ? strstr(key + w->plen, w->delim) : NULL;
	size_t cl;

	if (!d)
		return w->cb(w->arg, key, size, false);
	cl = (size_t)(d - key) + strlen(w->delim);
	if (cl < sizeof(w->last) && !strncmp(w->last, key, cl) && !w->last[cl])
		return 0;
	snprintf(w->last, sizeof(w->last), "%.*s", (int)cl, key);
	return w->cb(w->arg, w->last, 0, true);
}

/* Walk directory @rel ("" or "dir/"), names starting with @start. */
static int walk_dir(struct walk *w, const char *rel, const char *start, bool top)
{
	struct fstore *fs = w->s->be;
	struct ent *v = NULL;
	size_t n;
	int ret = 0, e;

	e = read_dir(fs->rootfd, rel, start, &v, &n);
	if (e) {
		bal_objstore_seterr("%s: LIST %s: %s", w->s->url, rel, strerror(e));
		return map_errno(e);
	}
	for (size_t i = 0; i < n && !ret; i++) {
		char key[1100];

		if (snprintf(key, sizeof(key), "%s%s", rel, v[i].sortkey) >= (int)sizeof(key))
			continue;
		if (!v[i].is_dir)
			ret = emit(w, key, v[i].size);
		else if (top && w->delim && !strcmp(w->delim, "/"))
			/* One level only: the directory is a common prefix if a
			 * key lives somewhere under it. */
			ret = has_key(fs->rootfd, key) ? w->cb(w->arg, key, 0, true) : 0;
		else
			ret = walk_dir(w, key, "", false);
	}
	free_ents(v, n);
	return ret;
}

static int flist(struct bal_objstore *s, const char *prefix, const char *delimiter,
		 bal_objstore_list_cb cb, void *arg)
{
	struct walk w = { .s = s, .plen = strlen(prefix), .delim = delimiter, .cb = cb,
			  .arg = arg };
	const char *slash = strrchr(prefix, '/');
	char rel[1100];

	/* "a/b/c" lists directory "a/b/" for names starting with "c". */
	snprintf(rel, sizeof(rel), "%.*s", slash ? (int)(slash - prefix + 1) : 0, prefix);
	for (const char *seg = rel; *seg; seg = strchr(seg, '/') + 1)
		if (!strncmp(seg, "./", 2) || !strncmp(seg, "../", 3))
			return 0;	/* no key has such a segment */
	return walk_dir(&w, rel, slash ? slash + 1 : prefix, true);
}

static void fclose_store(struct bal_objstore *s)
{
	struct fstore *fs = s->be;

	close(fs->tmpfd);
	close(fs->rootfd);
	free(fs);
}

/* Remove the temp files of processes of this host that no longer run. */
static void clean_tmp(struct fstore *fs)
{
	int dfd = dup(fs->tmpfd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((de = readdir(d))) {
		const char *p = strstr(de->d_name, ".tmp.");
		long pid = p ? strtol(p + 5, NULL, 10) : 0;

		if (pid > 0 && pid != getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			unlinkat(fs->tmpfd, de->d_name, 0);
	}
	closedir(d);
}

static const struct bal_objstore_ops file_ops = {
	.put = fput, .get = fget, .head = fhead, .del = fdel, .list = flist,
	.close = fclose_store,
};

int bal_objstore_file_open(struct bal_objstore *s, const char *path)
{
	struct fstore *fs;
	char *p = strdup(path);
	int e = 0;

	if (!p)
		return -ENOMEM;
	/* mkdir -p of the root itself. */
	for (char *c = strchr(p + 1, '/'); !e; c = strchr(c + 1, '/')) {
		if (c)
			*c = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			e = errno;
		if (!c)
			break;
		*c = '/';
	}
	free(p);
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->tmpfd = -1;
	fs->rootfd = e ? -1 : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->rootfd >= 0 && mkdirat(fs->rootfd, TMP_DIR, 0755) < 0 && errno != EEXIST)
		e = errno;
	if (fs->rootfd >= 0 && !e)
		fs->tmpfd = openat(fs->rootfd, TMP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->rootfd < 0 || fs->tmpfd < 0) {
		e = e ? e : errno;
		if (fs->rootfd >= 0)
			close(fs->rootfd);
		free(fs);
		bal_objstore_seterr("%s: %s", s->url, strerror(e));
		return map_errno(e) == -ENOENT ? -EIO : map_errno(e);
	}
	clean_tmp(fs);
	s->ops = &file_ops;
	s->be = fs;
	return 0;
}
