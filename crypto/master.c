/* SPDX-License-Identifier: MIT */
/*
 * The master key: loaded from a key file (--master-key-file) or printed by
 * a key-provider command (--key-provider, the seam for a KMS), held in
 * secure memory, checked against a stored key check value.
 *
 * The provider runs through posix_spawn (safe in a threaded process) in a
 * process group of its own, so a timeout can kill everything it started.
 * Its output is read into secure memory, bounded in size and time, and is
 * never logged.  Loading blocks: start-up or a background worker only.
 */
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/log.h"

extern char **environ;

static const char kcv_label[] = "ballast-kcv-v1";

int bal_mk_create(const uint8_t raw[BAL_MK_LEN], struct bal_mk **out)
{
	struct bal_mk *mk = calloc(1, sizeof(*mk));

	if (!mk)
		return -ENOMEM;
	mk->raw = bal_secmem_alloc(BAL_MK_LEN);
	if (!mk->raw) {
		free(mk);
		return -ENOMEM;
	}
	memcpy(mk->raw, raw, BAL_MK_LEN);
	*out = mk;
	return 0;
}

void bal_mk_destroy(struct bal_mk *mk)
{
	if (!mk)
		return;
	bal_secmem_free(mk->raw);
	free(mk);
}

/* Decode @len bytes of @buf into a new master key; @what/@src for messages. */
static int mk_from_text(const uint8_t *buf, size_t len, bool raw_ok, const char *what,
			const char *src, struct bal_mk **out)
{
	uint8_t *raw = bal_secmem_alloc(BAL_MK_LEN);
	int ret;

	if (!raw)
		return -ENOMEM;
	if (!raw_ok && len < 2 * BAL_MK_LEN)
		ret = -EINVAL;
	else
		ret = bal_crypto_decode_key(buf, len, BAL_MK_LEN, raw);
	if (ret < 0)
		bal_err("%s %s: %zu bytes that are not %s64 hex digits and an optional newline",
			what, src, len, raw_ok ? "32 raw bytes nor " : "");
	else
		ret = bal_mk_create(raw, out);
	bal_secmem_free(raw);
	return ret;
}

int bal_mk_load_file(const char *path, struct bal_mk **out)
{
	const size_t cap = 2 * BAL_MK_LEN + 2; /* hex and "\r\n" */
	uint8_t *buf = bal_secmem_alloc(cap);
	size_t len;
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = bal_crypto_read_secret_file(path, "master key file", buf, cap, &len);
	if (ret == 0)
		ret = mk_from_text(buf, len, true, "master key file", path, out);
	bal_secmem_free(buf);
	return ret;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int spawn_provider(const char *cmd, int out_fd, pid_t *pid)
{
	char *argv[] = { (char *)"sh", (char *)"-c", (char *)cmd, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	int err;

	sigemptyset(&none);
	sigemptyset(&dflt);
	/* The daemon may ignore these; the provider should see the defaults. */
	sigaddset(&dflt, SIGPIPE);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGHUP);
	sigaddset(&dflt, SIGCHLD);
	err = posix_spawn_file_actions_init(&fa);
	if (err)
		return -err;
	err = posix_spawnattr_init(&attr);
	if (err) {
		posix_spawn_file_actions_destroy(&fa);
		return -err;
	}
	if (!(err = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO)) &&
	    !(err = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) &&
	    !(err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
							    POSIX_SPAWN_SETSIGDEF)) &&
	    !(err = posix_spawnattr_setpgroup(&attr, 0)) &&
	    !(err = posix_spawnattr_setsigmask(&attr, &none)) &&
	    !(err = posix_spawnattr_setsigdefault(&attr, &dflt)))
		err = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return -err;
}

/* Wait for @pid until @deadline (ms, CLOCK_MONOTONIC).  -ETIMEDOUT or -errno. */
static int wait_until(pid_t pid, int64_t deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
	}
}

/* Read the child's stdout until EOF, @cap bytes or @deadline. */
static int read_output(int fd, int64_t deadline, uint8_t *buf, size_t cap, size_t *len)
{
	size_t got = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue; /* the deadline check above decides */
		n = read(fd, buf + got, cap - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == cap)
			return -E2BIG;
	}
	*len = got;
	return 0;
}

int bal_mk_run_provider(const char *cmd, unsigned timeout_ms, struct bal_mk **out)
{
	/* One byte more than allowed, to tell "too much" from "just enough". */
	const size_t cap = BAL_MK_PROVIDER_OUTPUT_MAX + 1;
	int64_t deadline = now_ms() + (timeout_ms ? timeout_ms : BAL_MK_PROVIDER_TIMEOUT_MS);
	uint8_t *buf;
	int pfd[2], status = 0, ret;
	size_t len = 0;
	pid_t pid;

	if (!cmd || !*cmd) {
		bal_err("key provider: empty command");
		return -EINVAL;
	}
	buf = bal_secmem_alloc(cap);
	if (!buf)
		return -ENOMEM;
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		ret = -errno;
		bal_err("key provider: pipe: %s", strerror(errno));
		goto out_free;
	}
	ret = spawn_provider(cmd, pfd[1], &pid);
	close(pfd[1]);
	if (ret < 0) {
		bal_err("key provider: cannot start /bin/sh: %s", strerror(-ret));
		close(pfd[0]);
		goto out_free;
	}
	ret = read_output(pfd[0], deadline, buf, cap, &len);
	close(pfd[0]);
	if (ret == 0)
		ret = wait_until(pid, deadline, &status);
	if (ret < 0) {
		/* Kill the whole group: the shell and anything it started. */
		kill(-pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (ret == -ETIMEDOUT)
			bal_err("key provider timed out: no complete answer within %u ms; killed it",
				timeout_ms ? timeout_ms : BAL_MK_PROVIDER_TIMEOUT_MS);
		else if (ret == -E2BIG)
			bal_err("key provider: printed more than %u bytes; killed it",
				BAL_MK_PROVIDER_OUTPUT_MAX);
		else
			bal_err("key provider: %s", strerror(-ret));
		goto out_free;
	}
	if (WIFSIGNALED(status)) {
		bal_err("key provider: killed by signal %d", WTERMSIG(status));
		ret = -EIO;
	} else if (WEXITSTATUS(status) != 0) {
		bal_err("key provider: exited with status %d", WEXITSTATUS(status));
		ret = -EIO;
	} else {
		ret = mk_from_text(buf, len, false, "key provider", "output", out);
	}
out_free:
	bal_secmem_free(buf);
	return ret;
}

int bal_mk_kcv(const struct bal_mk *mk, uint8_t kcv[BAL_MK_KCV_LEN])
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;

	if (!HMAC(EVP_sha256(), mk->raw, BAL_MK_LEN, (const uint8_t *)kcv_label,
		  sizeof(kcv_label) - 1, mac, &mac_len) ||
	    mac_len < BAL_MK_KCV_LEN) {
		bal_err("crypto: HMAC-SHA256 failed");
		return -EIO;
	}
	memcpy(kcv, mac, BAL_MK_KCV_LEN);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

int bal_mk_verify_kcv(const struct bal_mk *mk, const uint8_t kcv[BAL_MK_KCV_LEN])
{
	uint8_t mine[BAL_MK_KCV_LEN];
	int ret = bal_mk_kcv(mk, mine);

	if (ret < 0)
		return ret;
	if (CRYPTO_memcmp(mine, kcv, BAL_MK_KCV_LEN) != 0) {
		bal_err("master key: does not match the key check value stored in the database (wrong key file or key provider?)");
		return -EKEYREJECTED;
	}
	return 0;
}
