/* SPDX-License-Identifier: MIT */
/*
 * ballastd: open the volume store of the data directory, start the control
 * socket and the NBD server, serve until SIGTERM/SIGINT, then drain and
 * exit 0.  Runs on the main thread; see server.c for the workers.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "snapshot/tier.h"
#include "target/control.h"
#include "target/server.h"
#include "volume/volume.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ballastd [--data-dir DIR] [--listen tcp:HOST:PORT|unix:PATH]...\n"
		"                [--control PATH] [--default-export VOL] [--workers N]\n"
		"                [--handshake-timeout SEC] [--request-timeout SEC]\n"
		"                [--master-key-file F | --key-provider CMD] [--encrypt-by-default]\n"
		"                [--log-level debug|info|warn|error]\n"
		"defaults: --data-dir ./ballast-data, --listen tcp:127.0.0.1:10809 and\n"
		"unix:DIR/nbd.sock, --control DIR/ballast.sock\n");
}

static int parse_uint(const char *opt, const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v > max) {
		fprintf(stderr, "ballastd: %s: expected a number from 0 to %u, got '%s'\n", opt, max, s);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "data-dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "control", required_argument, NULL, 'c' },
		{ "default-export", required_argument, NULL, 'e' },
		{ "workers", required_argument, NULL, 'w' },
		{ "handshake-timeout", required_argument, NULL, 'H' },
		{ "request-timeout", required_argument, NULL, 'R' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "master-key-file", required_argument, NULL, 'M' },
		{ "key-provider", required_argument, NULL, 'P' },
		{ "encrypt-by-default", no_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bal_server_opts sopts = { .opts_size = sizeof(sopts) };
	struct bal_vstore_opts vopts = { .opts_size = sizeof(vopts) };
	struct bal_ctl_opts copts = { .opts_size = sizeof(copts) };
	struct bal_tier_opts topts = { .opts_size = sizeof(topts) };
	struct bal_tier *tier = NULL;
	char objurl[4200], absdir[4096];
	const char *dir = "./ballast-data", *control = NULL;
	const char *mkfile = NULL, *provider = NULL;
	struct bal_mk *mk = NULL;
	char defsock[4096], defctl[4096];
	struct bal_vstore *store = NULL;
	struct bal_server *srv = NULL;
	struct bal_ctl *ctl = NULL;
	sigset_t set;
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'l':
			if (sopts.nlisten == BAL_MAX_LISTEN) {
				fprintf(stderr, "ballastd: at most %d --listen\n", BAL_MAX_LISTEN);
				return 2;
			}
			sopts.listen[sopts.nlisten++] = optarg;
			break;
		case 'c': control = optarg; break;
		case 'e': sopts.default_export = optarg; break;
		case 'w':
			if (parse_uint("--workers", optarg, 64, &sopts.workers) < 0)
				return 2;
			break;
		case 'H':
			if (parse_uint("--handshake-timeout", optarg, 86400, &sopts.handshake_timeout) < 0)
				return 2;
			break;
		case 'R':
			if (parse_uint("--request-timeout", optarg, 86400, &sopts.request_timeout) < 0)
				return 2;
			break;
		case 'L':
			if (!strcmp(optarg, "debug")) bal_log_set_level(BAL_LOG_DEBUG);
			else if (!strcmp(optarg, "info")) bal_log_set_level(BAL_LOG_INFO);
			else if (!strcmp(optarg, "warn")) bal_log_set_level(BAL_LOG_WARN);
			else if (!strcmp(optarg, "error")) bal_log_set_level(BAL_LOG_ERROR);
			else {
				fprintf(stderr, "ballastd: unknown log level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'M': mkfile = optarg; break;
		case 'P': provider = optarg; break;
		case 'E': vopts.encrypt_by_default = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ballastd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (mkfile && provider) {
		fprintf(stderr, "ballastd: give --master-key-file or --key-provider, not both\n");
		return 2;
	}
	if (sopts.nlisten == 0) {
		snprintf(defsock, sizeof(defsock), "unix:%s/nbd.sock", dir);
		sopts.listen[sopts.nlisten++] = "tcp:127.0.0.1:10809";
		sopts.listen[sopts.nlisten++] = defsock;
	}
	if (!control) {
		snprintf(defctl, sizeof(defctl), "%s/ballast.sock", dir);
		control = defctl;
	}

	/* Signals are taken by the server's signalfd; no thread may catch them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * The master key never touches the database.  Both loaders log one
	 * clear line on failure (never with key bytes).
	 */
	if (mkfile && bal_mk_load_file(mkfile, &mk) < 0)
		return 1;
	if (provider && bal_mk_run_provider(provider, 0, &mk) < 0)
		return 1;
	vopts.dir = dir;
	vopts.master = mk;
	ret = bal_vstore_open(&vopts, &store);
	if (ret < 0) {
		bal_err("data dir %s: %s", dir, ret == -EBUSY ?
			"in use by another ballastd" : strerror(-ret));
		bal_mk_destroy(mk);
		return 1;
	}
	/* The default object store lives in the data directory (made by now). */
	if (!realpath(dir, absdir))
		snprintf(absdir, sizeof(absdir), "%s", dir);
	snprintf(objurl, sizeof(objurl), "file://%s/objects", absdir);
	topts.store = store;
	topts.default_url = objurl;
	ret = bal_tier_create(&topts, &tier);
	if (ret < 0) {
		bal_err("object tier: %s", strerror(-ret));
		goto out_store;
	}
	sopts.store = store;
	sopts.tier = tier;
	ret = bal_server_open(&sopts, &srv);
	if (ret < 0)
		goto out_tier;
	copts.path = control;
	copts.store = store;
	copts.tier = tier;
	ret = bal_ctl_open(&copts, &ctl);
	if (ret < 0) {
		bal_err("control socket %s: %s", control, strerror(-ret));
		goto out_server;
	}
	bal_info("ballastd ready: data dir %s, control %s", dir, control);
	ret = bal_server_run(srv);
	bal_ctl_close(ctl);
	/* Before the workers go: requests waiting for a fetch are answered. */
	bal_tier_destroy(tier);
	tier = NULL;
out_server:
	bal_server_close(srv);
out_tier:
	bal_tier_destroy(tier);
out_store:
	bal_vstore_close(store);
	bal_mk_destroy(mk);
	if (ret == 0)
		bal_info("ballastd stopped cleanly");
	return ret < 0 ? 1 : 0;
}
