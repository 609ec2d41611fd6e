/* SPDX-License-Identifier: MIT */
/*
 * `ballast`: the command-line client of ballastd's control socket.
 *
 * It parses the command line, checks names and sizes itself (so a typo
 * never reaches the daemon), sends one JSON-RPC request (tools/cli_rpc.c)
 * and prints the result for a person, or as one JSON document with --json.
 * Exit codes: 0 success, 1 the daemon refused or could not be reached (or
 * a verified snapshot has problems), 2 the command line is wrong (nothing
 * was sent).
 *
 * Object-tier commands pass the AWS_* settings of the CLI's environment to
 * the daemon as "creds" (over the owner-only socket; never printed).  On a
 * terminal, long operations ask for progress notifications and draw a
 * one-line bar on stdout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "tools/cli_rpc.h"

/* The daemon's limits on volume sizes, repeated so typos fail early. */
#define VOL_ALIGN 512u
#define VOL_SIZE_MAX (UINT64_C(1) << 60)

#define EXIT_USAGE 2

/* Options a command may take (struct cmd.opts). */
#define OPT_SIZE 1u
#define OPT_FORCE 2u
#define OPT_NAME 4u
#define OPT_RECURSIVE 8u
#define OPT_ENCRYPT 16u		/* --encrypt, --no-encrypt, --customer-key */
#define OPT_KEY_FILE 32u
#define OPT_NEW_MASTER 64u	/* --new-master-key-file, --new-key-provider */
#define OPT_TO 128u
#define OPT_STORAGE_CLASS 256u
#define OPT_FROM 512u		/* the --from variant of a command: chosen when given */
#define OPT_VOLUME 1024u
#define OPT_SINCE 2048u
#define OPT_WAIT 4096u

struct cli {
	const char *control;
	bool json;
	bool force;
	bool recursive;
	const char *size;	/* --size as given */
	const char *name;	/* --name as given */
	bool encrypt, no_encrypt, customer_key;
	const char *key_file;	/* --key-file */
	const char *new_mk_file;	/* --new-master-key-file */
	const char *new_provider;	/* --new-key-provider */
	const char *to;		/* --to URL */
	const char *storage_class;	/* --storage-class */
	const char *from;	/* --from URL or URL#ID */
	const char *volume;	/* --volume V */
	const char *since;	/* --since DATE */
	bool wait;		/* --wait */
	const char *args[8];	/* positional arguments */
	int nargs;
};

static const char usage_text[] =
	"usage: ballast [--control PATH] [--json] COMMAND\n"
	"\n"
	"commands:\n"
	"  volume create NAME --size SIZE [--encrypt [--customer-key --key-file F]]\n"
	"                [--no-encrypt]        create a thin volume (encrypted: with a\n"
	"                                      key wrapped by the master key, or with a\n"
	"                                      customer key that is never stored)\n"
	"  volume list                         list volumes\n"
	"  volume show NAME                    show one volume\n"
	"  volume resize NAME --size SIZE [--force]\n"
	"                                      grow or (with --force) shrink a volume\n"
	"  volume delete NAME [--force] [--recursive]\n"
	"                                      delete a volume (--force: even while connected;\n"
	"                                      --recursive: with its snapshots)\n"
	"  volume create NAME --from URL#ID [--wait]\n"
	"                                      restore an exported snapshot: the volume is\n"
	"                                      usable at once and fills in the background\n"
	"                                      (--wait: until it is fully local)\n"
	"  volume wait NAME                    wait until a restored volume is fully local\n"
	"  volume flatten NAME                 copy what a clone shares with its parent; detach it\n"
	"  volume unlock NAME --key-file F     make a customer-key volume available\n"
	"  volume lock NAME                    forget a customer-key volume's key\n"
	"  key rotate --new-master-key-file F | --new-key-provider CMD\n"
	"                                      re-wrap every volume key under a new master key\n"
	"  snapshot create VOL --name SNAP     take a snapshot; VOL@SNAP is then a read-only export\n"
	"  snapshot list [VOL]                 list snapshots (of one volume)\n"
	"  snapshot show VOL@SNAP              show one snapshot\n"
	"  snapshot delete VOL@SNAP            delete a snapshot\n"
	"  snapshot diff [VOL@A] VOL@B         ranges changed from A (default: creation) to B\n"
	"  snapshot export VOL@SNAP [--to URL] [--storage-class CLASS]\n"
	"                                      upload a snapshot (incrementally) to the object\n"
	"                                      tier; prints its URL#ID\n"
	"  snapshot list --from URL [--volume V] [--since DATE]\n"
	"                                      list the snapshots exported to URL\n"
	"  snapshot verify URL#ID              check every object of an exported snapshot\n"
	"  snapshot delete --from URL#ID       delete an exported snapshot and the chunks\n"
	"                                      no other snapshot uses\n"
	"  clone VOL@SNAP NEWVOL               create a writable volume from a snapshot\n"
	"  store stats                         pool counters\n"
	"  help                                this text\n"
	"\n"
	"options (anywhere on the line):\n"
	"  --control PATH   control socket (default: $BALLAST_SOCKET, then\n"
	"                   ./ballast-data/ballast.sock)\n"
	"  --json           print the result as one JSON document\n"
	"  -h, --help       this text\n"
	"\n"
	"SIZE is bytes or a number with a K, M, G, T or P suffix (powers of 1024),\n"
	"a multiple of 512.  NAME and SNAP are 1 to 64 characters from\n"
	"A-Z a-z 0-9 . _ -, not starting with '.' or '-'.  Key files are read by\n"
	"the daemon (their bytes never cross the socket); a customer key file holds\n"
	"exactly 32 or 64 bytes, a master key file 32 bytes or 64 hex digits, and\n"
	"both must be mode 0600 or stricter.\n"
	"URL is file:///PATH or s3://BUCKET[/PREFIX] (default: the daemon's\n"
	"DATA-DIR/objects); CLASS is STANDARD, STANDARD_IA, INTELLIGENT_TIERING or\n"
	"GLACIER; DATE is YYYY-MM-DD (UTC) or unix seconds.  S3 settings come from\n"
	"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or\n"
	"AWS_DEFAULT_REGION) and AWS_ENDPOINT_URL when set here, else from the\n"
	"daemon's environment.\n"
	"Exit status: 0 success, 1 error, 2 invalid command line.\n";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The request being built; a usage error ends the program without sending it. */
static json_t *pending_params;

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	json_decref(pending_params);

	fputs("ballast: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see 'ballast --help')\n", stderr);
	exit(EXIT_USAGE);
}

/* @s with unprintable bytes shown as '?', for messages (at most 80 bytes). */
static const char *printable(const char *s)
{
	static char buf[81];
	size_t i;

	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

static const char *check_name(const char *name)
{
	if (!bal_name_is_valid(name))
		usage_error("invalid volume name '%s': use 1 to %d characters from A-Z a-z 0-9 . _ - not starting with '.' or '-'",
			    printable(name), BAL_NAME_MAX);
	return name;
}

static const char *check_snap_name(const char *name)
{
	if (!bal_name_is_valid(name))
		usage_error("invalid snapshot name '%s': use 1 to %d characters from A-Z a-z 0-9 . _ - not starting with '.' or '-'",
			    printable(name), BAL_NAME_MAX);
	return name;
}

/*
 * Split "VOL@SNAP" into @vol and @snap (each BAL_NAME_MAX + 1 bytes) and
 * check both names.
 */
static void check_vol_snap(const char *arg, char *vol, char *snap)
{
	const char *at = strchr(arg, '@');

	if (!at || (size_t)(at - arg) > BAL_NAME_MAX || strlen(at + 1) > BAL_NAME_MAX)
		usage_error("invalid snapshot '%s': use VOL@SNAP", printable(arg));
	memcpy(vol, arg, (size_t)(at - arg));
	vol[at - arg] = '\0';
	strcpy(snap, at + 1);
	check_name(vol);
	check_snap_name(snap);
}

/* "1.0 GiB", "512 B". */
static uint64_t check_size(const char *s)
{
	uint64_t v = 0;
	int r;

	if (!s)
		usage_error("missing --size");
	r = bal_parse_size(s, &v);
	if (r == -ERANGE)
		usage_error("invalid size '%s': too large", printable(s));
	if (r < 0)
		usage_error("invalid size '%s': use bytes or a number with a K, M, G, T or P suffix",
			    printable(s));
	if (v == 0)
		usage_error("invalid size '%s': must be positive", printable(s));
	if (v % VOL_ALIGN)
		usage_error("invalid size '%s': not a multiple of %u bytes", printable(s), VOL_ALIGN);
	if (v > VOL_SIZE_MAX)
		usage_error("invalid size '%s': larger than the maximum 1 EiB", printable(s));
	return v;
}

/* "1.0 GiB", "512 B". */
static const char *human_size(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double d = (double)v;
	int u = -1;

	if (v < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", v);
		return buf;
	}
	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", d, units[u]);
	return buf;
}

static uint64_t get_u64(json_t *vol, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(vol, key));

	return v > 0 ? (uint64_t)v : 0;
}

static const char *get_str(json_t *vol, const char *key)
{
	const char *s = json_string_value(json_object_get(vol, key));

	return s ? s : "-";
}

/* "key:        1.0 GiB (1073741824 bytes)" */
static void print_bytes(const char *label, json_t *v, const char *key)
{
	char a[32];

	printf("%-13s%s (%" PRIu64 " bytes)\n", label, human_size(get_u64(v, key), a, sizeof(a)),
	       get_u64(v, key));
}

static void print_volume_list(json_t *result)
{
	json_t *vols = json_object_get(result, "volumes"), *v;
	int wn = 4, ws = 4, wa = 9;
	char a[32], b[32];
	size_t i;

	json_array_foreach(vols, i, v) {
		int n = (int)strlen(get_str(v, "name"));

		wn = n > wn ? n : wn;
		n = (int)strlen(human_size(get_u64(v, "size"), a, sizeof(a)));
		ws = n > ws ? n : ws;
		n = (int)strlen(human_size(get_u64(v, "allocated"), a, sizeof(a)));
		wa = n > wa ? n : wa;
	}
	printf("%-*s  %-*s  %-*s  %s\n", wn, "NAME", ws, "SIZE", wa, "ALLOCATED", "CREATED");
	json_array_foreach(vols, i, v)
		printf("%-*s  %-*s  %-*s  %s\n", wn, get_str(v, "name"), ws,
		       human_size(get_u64(v, "size"), a, sizeof(a)), wa,
		       human_size(get_u64(v, "allocated"), b, sizeof(b)), get_str(v, "created_at"));
}

/* "encryption:  AES-256-XTS" / "key:  service" / "locked:  yes (wrong master key)" */
static void print_encryption(json_t *v)
{
	const char *key = get_str(v, "key");

	printf("encryption:  %s\n",
	       json_is_true(json_object_get(v, "encrypted")) ? "AES-256-XTS" : "none");
	printf("key:         %s\n", strcmp(key, "service") == 0 ? "service (wrapped by the master key)"
				  : strcmp(key, "customer") == 0 ? "customer (supplied at unlock, never stored)"
				  : key);
	if (json_is_true(json_object_get(v, "locked")))
		printf("locked:      yes (%s)\n", get_str(v, "lock_reason"));
	else
		printf("locked:      no\n");
}

/* The restore state of a volume restored from the object tier (HYDRATION). */
static void print_hydration(json_t *h)
{
	char a[32];

	if (!json_is_object(h))
		return;
	printf("restored:    from %s\n", get_str(h, "source"));
	printf("hydration:   %s, %" PRIu64 " of %" PRIu64 " chunks local, %" PRIu64
	       " failed, %s fetched\n",
	       json_is_true(json_object_get(h, "active")) ? "in progress"
	       : get_u64(h, "chunks_failed") ? "stopped" : "complete",
	       get_u64(h, "chunks_done"), get_u64(h, "chunks_total"), get_u64(h, "chunks_failed"),
	       human_size(get_u64(h, "bytes_fetched"), a, sizeof(a)));
	if (json_is_string(json_object_get(h, "last_error")))
		printf("last error:  %s\n", get_str(h, "last_error"));
}

static void print_volume(json_t *v)
{
	char a[32];

	printf("name:        %s\n", get_str(v, "name"));
	printf("id:          %" PRIu64 "\n", get_u64(v, "id"));
	printf("size:        %s (%" PRIu64 " bytes)\n", human_size(get_u64(v, "size"), a, sizeof(a)),
	       get_u64(v, "size"));
	print_bytes("allocated:", v, "allocated");
	print_bytes("exclusive:", v, "exclusive");
	print_bytes("shared:", v, "shared");
	print_bytes("index:", v, "index_bytes");
	printf("snapshots:   %" PRIu64 "\n", get_u64(v, "snapshots"));
	printf("parent:      %s\n", get_str(v, "parent"));
	printf("created:     %s\n", get_str(v, "created_at"));
	printf("connections: %" PRIu64 "\n", get_u64(v, "connections"));
	print_encryption(v);
	print_hydration(json_object_get(v, "hydration"));
}

static void print_snapshot_list(json_t *result)
{
	json_t *snaps = json_object_get(result, "snapshots"), *v;
	int wn = 4, ws = 4, wa = 9, we = 9;
	char a[32], b[32], c[32], full[2 * BAL_NAME_MAX + 2];
	size_t i;

	json_array_foreach(snaps, i, v) {
		int n = snprintf(full, sizeof(full), "%s@%s", get_str(v, "volume"),
				 get_str(v, "name"));

		wn = n > wn ? n : wn;
		n = (int)strlen(human_size(get_u64(v, "size"), a, sizeof(a)));
		ws = n > ws ? n : ws;
		n = (int)strlen(human_size(get_u64(v, "allocated"), a, sizeof(a)));
		wa = n > wa ? n : wa;
		n = (int)strlen(human_size(get_u64(v, "exclusive"), a, sizeof(a)));
		we = n > we ? n : we;
	}
	printf("%-*s  %-*s  %-*s  %-*s  %-6s  %s\n", wn, "NAME", ws, "SIZE", wa, "ALLOCATED", we,
	       "EXCLUSIVE", "CLONES", "CREATED");
	json_array_foreach(snaps, i, v) {
		snprintf(full, sizeof(full), "%s@%s", get_str(v, "volume"), get_str(v, "name"));
		printf("%-*s  %-*s  %-*s  %-*s  %-6" PRIu64 "  %s\n", wn, full, ws,
		       human_size(get_u64(v, "size"), a, sizeof(a)), wa,
		       human_size(get_u64(v, "allocated"), b, sizeof(b)), we,
		       human_size(get_u64(v, "exclusive"), c, sizeof(c)), get_u64(v, "clones"),
		       get_str(v, "created_at"));
	}
}

static void print_snapshot(json_t *v)
{
	printf("name:        %s@%s\n", get_str(v, "volume"), get_str(v, "name"));
	printf("id:          %" PRIu64 "\n", get_u64(v, "id"));
	printf("epoch:       %" PRIu64 "\n", get_u64(v, "epoch"));
	print_bytes("size:", v, "size");
	print_bytes("allocated:", v, "allocated");
	print_bytes("exclusive:", v, "exclusive");
	printf("clones:      %" PRIu64 "\n", get_u64(v, "clones"));
	printf("created:     %s\n", get_str(v, "created_at"));
}

/* One "OFFSET LENGTH" line per range (bytes), then the total. */
static void print_diff(json_t *result)
{
	json_t *ranges = json_object_get(result, "ranges"), *r;
	char a[32];
	size_t i;

	json_array_foreach(ranges, i, r)
		printf("%" PRIu64 " %" PRIu64 "\n", get_u64(r, "offset"), get_u64(r, "length"));
	printf("total: %" PRIu64 " bytes (%s) in %zu range%s\n", get_u64(result, "changed_bytes"),
	       human_size(get_u64(result, "changed_bytes"), a, sizeof(a)), json_array_size(ranges),
	       json_array_size(ranges) == 1 ? "" : "s");
}

/* Exported snapshots: one row each, oldest first. */
static void print_remote_list(json_t *result)
{
	json_t *snaps = json_object_get(result, "snapshots"), *v;
	int wr = 3, wv = 6, ws = 8, wz = 4;
	char a[32];
	size_t i;

	json_array_foreach(snaps, i, v) {
		const char *ref = json_is_string(json_object_get(v, "ref")) ? get_str(v, "ref")
										 : get_str(v, "id");
		int n = (int)strlen(ref);

		wr = n > wr ? n : wr;
		n = (int)strlen(get_str(v, "volume"));
		wv = n > wv ? n : wv;
		n = (int)strlen(get_str(v, "snapshot"));
		ws = n > ws ? n : ws;
		n = (int)strlen(human_size(get_u64(v, "size"), a, sizeof(a)));
		wz = n > wz ? n : wz;
	}
	printf("%-*s  %-*s  %-*s  %-20s  %-*s  %-8s  %s\n", wr, "REF", wv, "VOLUME", ws, "SNAPSHOT",
	       "CREATED", wz, "SIZE", "CHUNKS", "PARENT");
	json_array_foreach(snaps, i, v)
		printf("%-*s  %-*s  %-*s  %-20s  %-*s  %-8" PRIu64 "  %s\n", wr,
		       json_is_string(json_object_get(v, "ref")) ? get_str(v, "ref")
								 : get_str(v, "id"),
		       wv, get_str(v, "volume"), ws, get_str(v, "snapshot"), get_str(v, "created"),
		       wz, human_size(get_u64(v, "size"), a, sizeof(a)), get_u64(v, "chunks"),
		       get_str(v, "parent"));
}

/* "REF: ok (...)", or one line per problem. */
static void print_verify(json_t *v)
{
	json_t *problems = json_object_get(v, "problems"), *p;
	size_t i;

	if (!json_is_true(json_object_get(v, "manifest_ok")))
		printf("manifest %s: %s\n", get_str(v, "manifest_key"), get_str(v, "manifest_error"));
	json_array_foreach(problems, i, p)
		printf("chunk %" PRIu64 " %s: %s\n", get_u64(p, "index"), get_str(p, "key"),
		       get_str(p, "what"));
	if (json_is_true(json_object_get(v, "ok")))
		printf("%s: ok (%" PRIu64 " objects, %" PRIu64 " bytes)\n", get_str(v, "ref"),
		       get_u64(v, "chunks"), get_u64(v, "bytes"));
}

static void print_stats(json_t *v)
{
	const char *key;
	json_t *val;

	json_object_foreach(v, key, val)
		printf("%-22s %" PRIu64 "\n", key, get_u64(v, key));
}

/* Options with a value, as "--opt VALUE" or "--opt=VALUE". */
static bool value_option(struct cli *cli, const char *a, int argc, char **argv, int *i)
{
	const struct {
		const char *name;
		const char **dst;
	} vopts[] = {
		{ "--control", &cli->control },
		{ "--size", &cli->size },
		{ "--name", &cli->name },
		{ "--key-file", &cli->key_file },
		{ "--new-master-key-file", &cli->new_mk_file },
		{ "--new-key-provider", &cli->new_provider },
		{ "--to", &cli->to },
		{ "--storage-class", &cli->storage_class },
		{ "--from", &cli->from },
		{ "--volume", &cli->volume },
		{ "--since", &cli->since },
	};

	for (size_t k = 0; k < sizeof(vopts) / sizeof(vopts[0]); k++) {
		size_t n = strlen(vopts[k].name);

		if (strncmp(a, vopts[k].name, n) != 0)
			continue;
		if (a[n] == '=') {
			*vopts[k].dst = a + n + 1;
			return true;
		}
		if (a[n] != '\0')
			continue;
		if (*i + 1 >= argc)
			usage_error("option %s needs a value", a);
		*vopts[k].dst = argv[++*i];
		return true;
	}
	return false;
}

static void parse_args(struct cli *cli, int argc, char **argv)
{
	bool opts_done = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (opts_done || a[0] != '-' || a[1] == '\0') {
			if (cli->nargs == (int)(sizeof(cli->args) / sizeof(cli->args[0])))
				usage_error("too many arguments");
			cli->args[cli->nargs++] = a;
		} else if (strcmp(a, "--") == 0) {
			opts_done = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_text, stdout);
			exit(0);
		} else if (strcmp(a, "--json") == 0) {
			cli->json = true;
		} else if (strcmp(a, "--force") == 0) {
			cli->force = true;
		} else if (strcmp(a, "--recursive") == 0) {
			cli->recursive = true;
		} else if (strcmp(a, "--encrypt") == 0) {
			cli->encrypt = true;
		} else if (strcmp(a, "--no-encrypt") == 0) {
			cli->no_encrypt = true;
		} else if (strcmp(a, "--customer-key") == 0) {
			cli->customer_key = true;
		} else if (strcmp(a, "--wait") == 0) {
			cli->wait = true;
		} else if (!value_option(cli, a, argc, argv, &i)) {
			usage_error("unknown option '%s'", printable(a));
		}
	}
}

/*
 * One command: its words, method, positional arguments (after the words)
 * and options.  build() fills the parameters from the checked arguments.
 */
struct cmd {
	const char *group, *verb;	/* verb NULL: a one-word command */
	const char *method;
	int min_args, max_args;
	unsigned opts;
	const char *arg_name;	/* what a missing argument is called */
	void (*build)(struct cli *cli, const char *const *args, int n, json_t *params);
};

static void set_str(json_t *params, const char *key, const char *v)
{
	json_object_set_new(params, key, json_string(v));
}

static void build_vol(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)cli;
	if (n > 0)
		set_str(params, "name", check_name(args[0]));
}

static void build_vol_size(struct cli *cli, const char *const *args, int n, json_t *params)
{
	build_vol(cli, args, n, params);
	json_object_set_new(params, "size", json_integer((json_int_t)check_size(cli->size)));
}

/*
 * A key file as an absolute path: the daemon reads it, from its own working
 * directory.  Not resolved further (the daemon reports a missing file).
 */
static void set_path(json_t *params, const char *key, const char *opt, const char *path)
{
	char cwd[4096], *abs;

	if (!path[0])
		usage_error("%s needs a path", opt);
	if (path[0] == '/') {
		set_str(params, key, path);
		return;
	}
	if (!getcwd(cwd, sizeof(cwd))) {
		fprintf(stderr, "ballast: cannot get the current directory: %s\n", strerror(errno));
		exit(1);
	}
	if (asprintf(&abs, "%s/%s", cwd, path) < 0) {
		fputs("ballast: out of memory\n", stderr);
		exit(1);
	}
	set_str(params, key, abs);
	free(abs);
}

static void build_create(struct cli *cli, const char *const *args, int n, json_t *params)
{
	build_vol_size(cli, args, n, params);
	if (cli->encrypt && cli->no_encrypt)
		usage_error("volume create: --encrypt and --no-encrypt exclude each other");
	if (cli->customer_key && cli->no_encrypt)
		usage_error("volume create: --customer-key needs encryption, not --no-encrypt");
	if (cli->customer_key && !cli->key_file)
		usage_error("volume create: --customer-key needs --key-file F");
	if (cli->key_file && !cli->customer_key)
		usage_error("volume create: --key-file applies with --customer-key");
	if (cli->encrypt || cli->customer_key)
		json_object_set_new(params, "encrypt", json_true());
	else if (cli->no_encrypt)
		json_object_set_new(params, "encrypt", json_false());
	if (cli->customer_key)
		set_path(params, "customer_key_file", "--key-file", cli->key_file);
}

static void build_unlock(struct cli *cli, const char *const *args, int n, json_t *params)
{
	build_vol(cli, args, n, params);
	if (!cli->key_file)
		usage_error("volume unlock: missing --key-file F");
	set_path(params, "key_file", "--key-file", cli->key_file);
}

static void build_rotate(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)args, (void)n;
	if (!!cli->new_mk_file == !!cli->new_provider)
		usage_error("key rotate: give one of --new-master-key-file F and --new-key-provider CMD");
	if (cli->new_mk_file)
		set_path(params, "new_master_key_file", "--new-master-key-file", cli->new_mk_file);
	else if (!cli->new_provider[0])
		usage_error("--new-key-provider needs a command");
	else
		set_str(params, "new_key_provider", cli->new_provider);
}

static void build_resize(struct cli *cli, const char *const *args, int n, json_t *params)
{
	build_vol_size(cli, args, n, params);
	json_object_set_new(params, "force", json_boolean(cli->force));
}

static void build_delete(struct cli *cli, const char *const *args, int n, json_t *params)
{
	build_vol(cli, args, n, params);
	json_object_set_new(params, "force", json_boolean(cli->force));
	json_object_set_new(params, "recursive", json_boolean(cli->recursive));
}

static void build_snap_create(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)n;
	if (!cli->name)
		usage_error("snapshot create: missing --name SNAP");
	set_str(params, "volume", check_name(args[0]));
	set_str(params, "name", check_snap_name(cli->name));
}

static void build_snap_list(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)cli;
	if (n > 0)
		set_str(params, "volume", check_name(args[0]));
}

static void build_snap(struct cli *cli, const char *const *args, int n, json_t *params)
{
	char vol[BAL_NAME_MAX + 1], snap[BAL_NAME_MAX + 1];

	(void)cli, (void)n;
	check_vol_snap(args[0], vol, snap);
	set_str(params, "volume", vol);
	set_str(params, "name", snap);
}

static void build_diff(struct cli *cli, const char *const *args, int n, json_t *params)
{
	char vol[BAL_NAME_MAX + 1], snap[BAL_NAME_MAX + 1];
	char vol2[BAL_NAME_MAX + 1], snap2[BAL_NAME_MAX + 1];

	(void)cli;
	check_vol_snap(args[n - 1], vol, snap);
	set_str(params, "volume", vol);
	set_str(params, "to", snap);
	if (n == 2) {
		check_vol_snap(args[0], vol2, snap2);
		/* Both were checked: safe to print as they are. */
		if (strcmp(vol, vol2) != 0)
			usage_error("snapshot diff: '%s' and '%s' are snapshots of different volumes",
				    args[0], args[1]);
		set_str(params, "from", snap2);
	}
}

static void build_clone(struct cli *cli, const char *const *args, int n, json_t *params)
{
	char vol[BAL_NAME_MAX + 1], snap[BAL_NAME_MAX + 1];

	(void)cli, (void)n;
	check_vol_snap(args[0], vol, snap);
	set_str(params, "volume", vol);
	set_str(params, "snapshot", snap);
	set_str(params, "name", check_name(args[1]));
}

/* Printable, no spaces: a URL or a ref goes into messages as it is. */
static bool is_clean(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

static const char *check_url(const char *opt, const char *url)
{
	if (!is_clean(url) || strlen(url) >= 1024)
		usage_error("invalid %s '%s': use file:///PATH or s3://BUCKET[/PREFIX]", opt,
			    printable(url));
	return url;
}

/* "URL#ID" as printed by snapshot export. */
static const char *check_ref(const char *ref)
{
	const char *hash = strrchr(ref, '#');

	if (!is_clean(ref) || !hash || hash == ref || !hash[1] || strlen(hash + 1) > 48)
		usage_error("invalid snapshot reference '%s': use URL#ID as printed by snapshot export",
			    printable(ref));
	return ref;
}

/* DATE: YYYY-MM-DD (UTC midnight) or unix seconds. */
static int64_t check_since(const char *s)
{
	struct tm tm = { 0 }, back;
	int y, m, d, used = 0;
	time_t t;

	if (s[0] && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 12)
		return strtoll(s, NULL, 10);
	if (strlen(s) == 10 && sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &used) == 3 && used == 10 &&
	    s[4] == '-' && s[7] == '-' && y >= 1970 && m >= 1 && m <= 12 && d >= 1 && d <= 31) {
		tm.tm_year = y - 1900;
		tm.tm_mon = m - 1;
		tm.tm_mday = d;
		t = timegm(&tm);
		/* 2025-02-30 would become March 2: refuse it. */
		if (t != (time_t)-1 && gmtime_r(&t, &back) && back.tm_mday == d &&
		    back.tm_mon == m - 1)
			return (int64_t)t;
	}
	usage_error("invalid --since '%s': use YYYY-MM-DD (UTC) or unix seconds", printable(s));
}

static void build_export(struct cli *cli, const char *const *args, int n, json_t *params)
{
	char vol[BAL_NAME_MAX + 1], snap[BAL_NAME_MAX + 1];

	(void)n;
	check_vol_snap(args[0], vol, snap);
	set_str(params, "volume", vol);
	set_str(params, "snapshot", snap);
	if (cli->to)
		set_str(params, "url", check_url("--to", cli->to));
	if (cli->storage_class) {
		const char *c = cli->storage_class;

		if (!c[0] || strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != strlen(c) || strlen(c) > 31)
			usage_error("invalid storage class '%s': use STANDARD, STANDARD_IA, INTELLIGENT_TIERING or GLACIER",
				    printable(c));
		set_str(params, "storage_class", c);
	}
}

static void build_remote_list(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)args, (void)n;
	set_str(params, "url", check_url("--from", cli->from));
	if (cli->volume)
		set_str(params, "volume", check_name(cli->volume));
	if (cli->since)
		json_object_set_new(params, "since", json_integer((json_int_t)check_since(cli->since)));
}

static void build_ref(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)cli, (void)n;
	set_str(params, "ref", check_ref(args[0]));
}

static void build_remote_delete(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)args, (void)n;
	set_str(params, "ref", check_ref(cli->from));
}

static void build_restore(struct cli *cli, const char *const *args, int n, json_t *params)
{
	build_vol(cli, args, n, params);
	set_str(params, "ref", check_ref(cli->from));
}

static void build_none(struct cli *cli, const char *const *args, int n, json_t *params)
{
	(void)cli, (void)args, (void)n, (void)params;
}

/* A command with OPT_FROM is the variant chosen when --from is given. */
static const struct cmd cmds[] = {
	{ "volume", "create", "volume.restore", 1, 1, OPT_FROM | OPT_WAIT, "volume name",
	  build_restore },
	{ "volume", "create", "volume.create", 1, 1, OPT_SIZE | OPT_ENCRYPT | OPT_KEY_FILE,
	  "volume name", build_create },
	{ "volume", "wait", "volume.wait", 1, 1, 0, "volume name", build_vol },
	{ "volume", "list", "volume.list", 0, 0, 0, NULL, build_none },
	{ "volume", "show", "volume.show", 1, 1, 0, "volume name", build_vol },
	{ "volume", "resize", "volume.resize", 1, 1, OPT_SIZE | OPT_FORCE, "volume name",
	  build_resize },
	{ "volume", "delete", "volume.delete", 1, 1, OPT_FORCE | OPT_RECURSIVE, "volume name",
	  build_delete },
	{ "volume", "flatten", "volume.flatten", 1, 1, 0, "volume name", build_vol },
	{ "volume", "unlock", "volume.unlock", 1, 1, OPT_KEY_FILE, "volume name", build_unlock },
	{ "volume", "lock", "volume.lock", 1, 1, 0, "volume name", build_vol },
	{ "key", "rotate", "key.rotate", 0, 0, OPT_NEW_MASTER, NULL, build_rotate },
	{ "snapshot", "create", "snapshot.create", 1, 1, OPT_NAME, "volume name",
	  build_snap_create },
	{ "snapshot", "list", "snapshot.remote_list", 0, 0, OPT_FROM | OPT_VOLUME | OPT_SINCE, NULL,
	  build_remote_list },
	{ "snapshot", "list", "snapshot.list", 0, 1, 0, NULL, build_snap_list },
	{ "snapshot", "show", "snapshot.show", 1, 1, 0, "VOL@SNAP", build_snap },
	{ "snapshot", "delete", "snapshot.remote_delete", 0, 0, OPT_FROM, NULL,
	  build_remote_delete },
	{ "snapshot", "delete", "snapshot.delete", 1, 1, 0, "VOL@SNAP", build_snap },
	{ "snapshot", "diff", "snapshot.diff", 1, 2, 0, "VOL@SNAP", build_diff },
	{ "snapshot", "export", "snapshot.export", 1, 1, OPT_TO | OPT_STORAGE_CLASS, "VOL@SNAP",
	  build_export },
	{ "snapshot", "verify", "snapshot.verify", 1, 1, 0, "URL#ID", build_ref },
	{ "clone", NULL, "volume.clone", 2, 2, 0, "VOL@SNAP and NEWVOL", build_clone },
	{ "store", "stats", "store.stats", 0, 0, 0, NULL, build_none },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

/* "create, list, show, ..." for a group. */
static const char *verbs_of(const char *group)
{
	static char buf[128];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t k = 0; k < NCMDS; k++)
		if (strcmp(cmds[k].group, group) == 0 && cmds[k].verb &&
		    !(k > 0 && cmds[k - 1].verb && strcmp(cmds[k - 1].verb, cmds[k].verb) == 0))
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
						len ? ", " : "", cmds[k].verb);
	return buf;
}

/* Find the command, check its arguments and options, fill @params. */
static const struct cmd *parse_command(struct cli *cli, json_t *params)
{
	static const struct {
		unsigned bit;
		const char *name;
	} opt_names[] = {
		{ OPT_SIZE, "--size" },
		{ OPT_FORCE, "--force" },
		{ OPT_NAME, "--name" },
		{ OPT_RECURSIVE, "--recursive" },
		{ OPT_ENCRYPT, "--encrypt, --no-encrypt or --customer-key" },
		{ OPT_KEY_FILE, "--key-file" },
		{ OPT_NEW_MASTER, "--new-master-key-file or --new-key-provider" },
		{ OPT_TO, "--to" },
		{ OPT_STORAGE_CLASS, "--storage-class" },
		{ OPT_FROM, "--from" },
		{ OPT_VOLUME, "--volume" },
		{ OPT_SINCE, "--since" },
		{ OPT_WAIT, "--wait" },
	};
	const char *group = cli->args[0], *verb = cli->nargs > 1 ? cli->args[1] : NULL;
	const struct cmd *c = NULL;
	char label[64];
	unsigned given = 0;
	int first, n;

	for (size_t k = 0; k < NCMDS && !c; k++)
		if (strcmp(cmds[k].group, group) == 0 && !cmds[k].verb)
			c = &cmds[k];
	if (!c) {
		bool known = false;

		for (size_t k = 0; k < NCMDS && !c; k++) {
			if (strcmp(cmds[k].group, group) != 0)
				continue;
			known = true;
			/* The --from variant only when --from is given. */
			if (verb && strcmp(cmds[k].verb, verb) == 0 &&
			    (!(cmds[k].opts & OPT_FROM) || cli->from))
				c = &cmds[k];
		}
		if (!known)
			usage_error("unknown command '%s'", printable(group));
		if (!verb)
			usage_error("missing %s command (%s)", group, verbs_of(group));
		if (!c)
			usage_error("unknown %s command '%s'", group, printable(verb));
	}
	first = c->verb ? 2 : 1;
	n = cli->nargs - first;
	snprintf(label, sizeof(label), "%s%s%s", c->group, c->verb ? " " : "",
		 c->verb ? c->verb : "");
	if (n < c->min_args && strcmp(c->arg_name, "volume name") == 0)
		usage_error("%s: missing volume name", label);
	if (n < c->min_args)
		usage_error("%s: missing %s", label, c->arg_name);
	if (n > c->max_args)
		usage_error("%s: unexpected argument '%s'", label,
			    printable(cli->args[first + c->max_args]));
	given |= cli->size ? OPT_SIZE : 0;
	given |= cli->force ? OPT_FORCE : 0;
	given |= cli->name ? OPT_NAME : 0;
	given |= cli->recursive ? OPT_RECURSIVE : 0;
	given |= cli->encrypt || cli->no_encrypt || cli->customer_key ? OPT_ENCRYPT : 0;
	given |= cli->key_file ? OPT_KEY_FILE : 0;
	given |= cli->new_mk_file || cli->new_provider ? OPT_NEW_MASTER : 0;
	given |= cli->to ? OPT_TO : 0;
	given |= cli->storage_class ? OPT_STORAGE_CLASS : 0;
	given |= cli->from ? OPT_FROM : 0;
	given |= cli->volume ? OPT_VOLUME : 0;
	given |= cli->since ? OPT_SINCE : 0;
	given |= cli->wait ? OPT_WAIT : 0;
	for (size_t k = 0; k < sizeof(opt_names) / sizeof(opt_names[0]); k++)
		if ((given & opt_names[k].bit) && !(c->opts & opt_names[k].bit))
			usage_error("%s: %s does not apply", label, opt_names[k].name);
	c->build(cli, cli->args + first, n, params);
	return c;
}

static void print_result(const struct cli *cli, const char *method, json_t *params,
			 json_t *result)
{
	const char *name = get_str(result, "name");
	char a[32];

	if (cli->json) {
		json_dumpf(result, stdout, JSON_INDENT(2));
		putchar('\n');
	} else if (strcmp(method, "volume.list") == 0) {
		print_volume_list(result);
	} else if (strcmp(method, "volume.show") == 0) {
		print_volume(result);
	} else if (strcmp(method, "volume.create") == 0) {
		printf("created volume '%s' (%s)%s%s%s\n", name,
		       human_size(get_u64(result, "size"), a, sizeof(a)),
		       json_is_true(json_object_get(result, "encrypted")) ? ", encrypted with a " : "",
		       json_is_true(json_object_get(result, "encrypted")) ? get_str(result, "key") : "",
		       json_is_true(json_object_get(result, "encrypted")) ? " key" : "");
	} else if (strcmp(method, "volume.unlock") == 0) {
		printf("unlocked volume '%s'\n", name);
	} else if (strcmp(method, "volume.lock") == 0) {
		printf("locked volume '%s'\n", name);
	} else if (strcmp(method, "key.rotate") == 0) {
		printf("rotated the master key: %" PRIu64 " volume key%s re-wrapped\n",
		       get_u64(result, "volumes"), get_u64(result, "volumes") == 1 ? "" : "s");
	} else if (strcmp(method, "volume.resize") == 0) {
		printf("resized volume '%s' to %s\n", name,
		       human_size(get_u64(result, "size"), a, sizeof(a)));
	} else if (strcmp(method, "volume.delete") == 0 && get_u64(result, "snapshots") &&
		   json_is_true(json_object_get(params, "recursive"))) {
		printf("deleted volume '%s' and its %" PRIu64 " snapshot%s\n", name,
		       get_u64(result, "snapshots"), get_u64(result, "snapshots") == 1 ? "" : "s");
	} else if (strcmp(method, "volume.delete") == 0) {
		printf("deleted volume '%s'\n", name);
	} else if (strcmp(method, "volume.flatten") == 0) {
		printf("flattened volume '%s'\n", name);
	} else if (strcmp(method, "volume.clone") == 0) {
		printf("created volume '%s' as a clone of '%s@%s'\n", name,
		       get_str(params, "volume"), get_str(params, "snapshot"));
	} else if (strcmp(method, "snapshot.create") == 0) {
		printf("created snapshot '%s@%s'\n", get_str(result, "volume"), name);
	} else if (strcmp(method, "snapshot.delete") == 0) {
		printf("deleted snapshot '%s@%s'\n", get_str(result, "volume"), name);
	} else if (strcmp(method, "snapshot.list") == 0) {
		print_snapshot_list(result);
	} else if (strcmp(method, "snapshot.show") == 0) {
		print_snapshot(result);
	} else if (strcmp(method, "snapshot.diff") == 0) {
		print_diff(result);
	} else if (strcmp(method, "store.stats") == 0) {
		print_stats(result);
	} else if (strcmp(method, "snapshot.export") == 0) {
		printf("%s\n", get_str(result, "ref"));
	} else if (strcmp(method, "snapshot.remote_list") == 0) {
		print_remote_list(result);
	} else if (strcmp(method, "snapshot.verify") == 0) {
		print_verify(result);
	} else if (strcmp(method, "snapshot.remote_delete") == 0) {
		printf("deleted %s (%" PRIu64 " chunk%s deleted, %" PRIu64
		       " kept for other snapshots)\n", get_str(result, "ref"),
		       get_u64(result, "chunks_deleted"),
		       get_u64(result, "chunks_deleted") == 1 ? "" : "s",
		       get_u64(result, "chunks_kept"));
	} else if (strcmp(method, "volume.restore") == 0 && cli->wait) {
		printf("created volume '%s' (%s) from %s: fully local\n", name,
		       human_size(get_u64(result, "size"), a, sizeof(a)), get_str(params, "ref"));
	} else if (strcmp(method, "volume.restore") == 0) {
		printf("created volume '%s' (%s) from %s: it fills from the object tier in the background (ballast volume wait %s)\n",
		       name, human_size(get_u64(result, "size"), a, sizeof(a)),
		       get_str(params, "ref"), name);
	} else if (strcmp(method, "volume.wait") == 0) {
		json_t *h = json_object_get(result, "hydration");

		if (json_is_object(h))
			printf("volume '%s' is fully local (%" PRIu64 " chunks, %s fetched)\n", name,
			       get_u64(h, "chunks_total"),
			       human_size(get_u64(h, "bytes_fetched"), a, sizeof(a)));
		else
			printf("volume '%s' is fully local\n", name);
	}
}

/* ---- object tier: credentials, progress, long calls ---- */

/* The CLI's AWS_* settings, as the "creds" of an object-tier request. */
static void add_creds(json_t *params)
{
	static const struct {
		const char *env, *alt, *key;
	} vars[] = {
		{ "AWS_ACCESS_KEY_ID", NULL, "access_key" },
		{ "AWS_SECRET_ACCESS_KEY", NULL, "secret_key" },
		{ "AWS_SESSION_TOKEN", NULL, "session_token" },
		{ "AWS_REGION", "AWS_DEFAULT_REGION", "region" },
		{ "AWS_ENDPOINT_URL", NULL, "endpoint" },
	};
	json_t *creds = json_object();

	for (size_t k = 0; creds && k < sizeof(vars) / sizeof(vars[0]); k++) {
		const char *v = getenv(vars[k].env);

		if ((!v || !*v) && vars[k].alt)
			v = getenv(vars[k].alt);
		if (v && *v)
			set_str(creds, vars[k].key, v);
	}
	if (json_object_size(creds))
		json_object_set_new(params, "creds", creds);
	else
		json_decref(creds);
}

static bool method_in(const char *method, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(method, *list) == 0)
			return true;
	return false;
}

static const char *const tier_methods[] = { "snapshot.export", "snapshot.verify",
					    "snapshot.remote_list", "snapshot.remote_delete",
					    "volume.restore", NULL };
/* Run as long as they take (the daemon's job; Ctrl-C cancels it). */
static const char *const long_methods[] = { "snapshot.export", "snapshot.verify",
					    "snapshot.remote_list", "snapshot.remote_delete",
					    "volume.wait", NULL };
static const char *const progress_methods[] = { "snapshot.export", "snapshot.verify",
						"volume.wait", NULL };

/* The one-line progress bar on a terminal. */
struct bar {
	bool drawn;
	double t0;		/* first report */
	uint64_t done0;
};

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "[#########           ]  45%  1.2/2.7 GiB  85.3 MiB/s  ETA 0:18" */
static void bar_update(void *arg, uint64_t done, uint64_t total)
{
	struct bar *b = arg;
	double t = mono_s(), unit, rate = 0;
	char hashes[21], eta[32] = "--:--";
	bool gib = total >= (UINT64_C(1) << 30);
	unsigned pct;

	if (!b->drawn) {
		b->t0 = t;
		b->done0 = done;
	}
	if (done > total)
		done = total;
	pct = total ? (unsigned)(done * 100.0 / (double)total) : 0;
	memset(hashes, ' ', 20);
	memset(hashes, '#', pct / 5);
	hashes[20] = '\0';
	if (t - b->t0 >= 0.5 && done > b->done0)
		rate = (double)(done - b->done0) / (t - b->t0);
	if (rate > 0 && total > done) {
		unsigned long left = (unsigned long)((double)(total - done) / rate);

		if (left >= 3600)
			snprintf(eta, sizeof(eta), "%lu:%02lu:%02lu", left / 3600, left / 60 % 60,
				 left % 60);
		else
			snprintf(eta, sizeof(eta), "%lu:%02lu", left / 60, left % 60);
	} else if (total && done == total) {
		snprintf(eta, sizeof(eta), "0:00");
	}
	unit = gib ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
	printf("\r[%s] %3u%%  %.1f/%.1f %s  %.1f MiB/s  ETA %-8s", hashes, pct,
	       (double)done / unit, (double)total / unit, gib ? "GiB" : "MiB",
	       rate / (1024.0 * 1024), eta);
	fflush(stdout);
	b->drawn = true;
}

/*
 * One call; with @progress, draw the bar from the daemon's notifications
 * and end its line before anything else is printed.
 */
static int call(const struct cli *cli, const char *method, json_t *params, bool progress,
		json_t **result, char *err, size_t errlen)
{
	struct bal_cli_rpc_opts o = { .timeout = BAL_CLI_RPC_TIMEOUT };
	struct bar bar = { 0 };
	int rc;

	if (method_in(method, long_methods))
		o.timeout = 0;
	if (progress && method_in(method, progress_methods)) {
		json_object_set_new(params, "progress", json_true());
		o.progress = bar_update;
		o.arg = &bar;
	}
	rc = bal_cli_rpc_call_opts(cli->control, method, params, &o, result, err, errlen);
	if (bar.drawn) {
		putchar('\n');
		fflush(stdout);
	}
	return rc;
}

/* volume create --from --wait: wait for the restore, then show the volume. */
static int restore_wait(const struct cli *cli, const char *name, bool progress,
			json_t **result, char *err, size_t errlen)
{
	json_t *p = json_pack("{s:s}", "name", name), *r = NULL;
	int rc;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = call(cli, "volume.wait", p, progress, &r, err, errlen);
	json_decref(r);
	r = NULL;
	json_object_del(p, "progress");
	if (rc == 0)
		rc = call(cli, "volume.show", p, false, &r, err, errlen);
	json_decref(p);
	if (rc == 0) {
		json_decref(*result);
		*result = r;
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	json_t *params, *result = NULL;
	const struct cmd *c;
	char err[600];
	int rc, exit_code = 0;
	bool progress;

	parse_args(&cli, argc, argv);
	if (cli.nargs == 0)
		usage_error("missing command");
	if (strcmp(cli.args[0], "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	params = json_object();
	if (!params) {
		fputs("ballast: out of memory\n", stderr);
		return 1;
	}
	pending_params = params;
	c = parse_command(&cli, params);
	if (cli.control && !*cli.control)
		usage_error("--control needs a path");
	if (!cli.control)
		cli.control = getenv("BALLAST_SOCKET");
	if (!cli.control || !*cli.control)
		cli.control = "./ballast-data/ballast.sock";
	if (method_in(c->method, tier_methods))
		add_creds(params);
	/* Progress only for a person: not into a pipe, not with --json. */
	progress = !cli.json && isatty(STDOUT_FILENO);
	rc = call(&cli, c->method, params, progress, &result, err, sizeof(err));
	if (rc == 0 && strcmp(c->method, "volume.restore") == 0 && cli.wait)
		rc = restore_wait(&cli, get_str(params, "name"), progress, &result, err,
				  sizeof(err));
	if (rc < 0) {
		json_decref(params);
		json_decref(result);
		fprintf(stderr, "ballast: %s\n", err);
		return 1;
	}
	print_result(&cli, c->method, params, result);
	/* A verified snapshot with problems is a failure, also with --json. */
	if (strcmp(c->method, "snapshot.verify") == 0 &&
	    !json_is_true(json_object_get(result, "ok")))
		exit_code = 1;
	json_decref(params);
	json_decref(result);
	if (fflush(stdout) != 0) {
		perror("ballast: stdout");
		return 1;
	}
	return exit_code;
}
