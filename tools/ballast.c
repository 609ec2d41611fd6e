/* SPDX-License-Identifier: MIT */
/*
 * `ballast`: the command-line client of ballastd's control socket.
 *
 * It parses the command line, checks names and sizes itself (so a typo
 * never reaches the daemon), sends one JSON-RPC request (tools/cli_rpc.c)
 * and prints the result for a person, or as one JSON document with --json.
 * Exit codes: 0 success, 1 the daemon refused or could not be reached,
 * 2 the command line is wrong (nothing was sent).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "tools/cli_rpc.h"

/* The daemon's limits on volume sizes, repeated so typos fail early. */
#define VOL_ALIGN 512u
#define VOL_SIZE_MAX (UINT64_C(1) << 60)

#define EXIT_USAGE 2

struct cli {
	const char *control;
	bool json;
	bool force;
	const char *size;	/* --size as given */
	const char *args[8];	/* positional arguments */
	int nargs;
};

static const char usage_text[] =
	"usage: ballast [--control PATH] [--json] COMMAND\n"
	"\n"
	"commands:\n"
	"  volume create NAME --size SIZE      create a thin volume\n"
	"  volume list                         list volumes\n"
	"  volume show NAME                    show one volume\n"
	"  volume resize NAME --size SIZE [--force]\n"
	"                                      grow or (with --force) shrink a volume\n"
	"  volume delete NAME [--force]        delete a volume (--force: even while connected)\n"
	"  help                                this text\n"
	"\n"
	"options (anywhere on the line):\n"
	"  --control PATH   control socket (default: $BALLAST_SOCKET, then\n"
	"                   ./ballast-data/ballast.sock)\n"
	"  --json           print the result as one JSON document\n"
	"  -h, --help       this text\n"
	"\n"
	"SIZE is bytes or a number with a K, M, G, T or P suffix (powers of 1024),\n"
	"a multiple of 512.  NAME is 1 to 64 characters from A-Z a-z 0-9 . _ -,\n"
	"not starting with '.' or '-'.\n"
	"Exit status: 0 success, 1 error, 2 invalid command line.\n";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

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

static void print_list(json_t *result)
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

static void print_show(json_t *v)
{
	char a[32];

	printf("name:        %s\n", get_str(v, "name"));
	printf("id:          %" PRIu64 "\n", get_u64(v, "id"));
	printf("size:        %s (%" PRIu64 " bytes)\n", human_size(get_u64(v, "size"), a, sizeof(a)),
	       get_u64(v, "size"));
	printf("allocated:   %s (%" PRIu64 " bytes)\n",
	       human_size(get_u64(v, "allocated"), a, sizeof(a)), get_u64(v, "allocated"));
	printf("created:     %s\n", get_str(v, "created_at"));
	printf("connections: %" PRIu64 "\n", get_u64(v, "connections"));
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
		} else if (strcmp(a, "--control") == 0 || strcmp(a, "--size") == 0) {
			if (i + 1 >= argc)
				usage_error("option %s needs a value", a);
			*(a[2] == 'c' ? &cli->control : &cli->size) = argv[++i];
		} else if (strncmp(a, "--control=", 10) == 0) {
			cli->control = a + 10;
		} else if (strncmp(a, "--size=", 7) == 0) {
			cli->size = a + 7;
		} else {
			usage_error("unknown option '%s'", printable(a));
		}
	}
}

/* Check the words and options of a volume command; returns its method. */
static const char *volume_method(struct cli *cli, json_t *params)
{
	static const struct {
		const char *cmd;
		bool has_name, has_size, has_force;
	} cmds[] = {
		{ "create", true, true, false },  { "list", false, false, false },
		{ "show", true, false, false },   { "resize", true, true, true },
		{ "delete", true, false, true },
	};
	static char method[32];
	const char *cmd = cli->nargs > 1 ? cli->args[1] : NULL;
	size_t k;

	if (!cmd)
		usage_error("missing volume command (create, list, show, resize, delete)");
	for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]) && strcmp(cmds[k].cmd, cmd) != 0; k++)
		;
	if (k == sizeof(cmds) / sizeof(cmds[0]))
		usage_error("unknown volume command '%s'", printable(cmd));
	if (cmds[k].has_name && cli->nargs < 3)
		usage_error("volume %s: missing volume name", cmd);
	if (cli->nargs > (cmds[k].has_name ? 3 : 2))
		usage_error("volume %s: unexpected argument '%s'", cmd,
			    printable(cli->args[cmds[k].has_name ? 3 : 2]));
	if (cli->size && !cmds[k].has_size)
		usage_error("volume %s: --size does not apply", cmd);
	if (cli->force && !cmds[k].has_force)
		usage_error("volume %s: --force does not apply", cmd);
	if (cmds[k].has_name)
		json_object_set_new(params, "name", json_string(check_name(cli->args[2])));
	if (cmds[k].has_size)
		json_object_set_new(params, "size", json_integer((json_int_t)check_size(cli->size)));
	if (cmds[k].has_force)
		json_object_set_new(params, "force", json_boolean(cli->force));
	snprintf(method, sizeof(method), "volume.%s", cmd);
	return method;
}

static void print_result(const struct cli *cli, const char *method, json_t *result)
{
	char a[32];

	if (cli->json) {
		json_dumpf(result, stdout, JSON_INDENT(2));
		putchar('\n');
	} else if (strcmp(method, "volume.list") == 0) {
		print_list(result);
	} else if (strcmp(method, "volume.show") == 0) {
		print_show(result);
	} else if (strcmp(method, "volume.create") == 0) {
		printf("created volume '%s' (%s)\n", get_str(result, "name"),
		       human_size(get_u64(result, "size"), a, sizeof(a)));
	} else if (strcmp(method, "volume.resize") == 0) {
		printf("resized volume '%s' to %s\n", get_str(result, "name"),
		       human_size(get_u64(result, "size"), a, sizeof(a)));
	} else if (strcmp(method, "volume.delete") == 0) {
		printf("deleted volume '%s'\n", get_str(result, "name"));
	}
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	json_t *params, *result = NULL;
	const char *method;
	char err[600];
	int rc;

	parse_args(&cli, argc, argv);
	if (cli.nargs == 0)
		usage_error("missing command");
	if (strcmp(cli.args[0], "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cli.args[0], "volume") != 0)
		usage_error("unknown command '%s'", printable(cli.args[0]));
	if (cli.control && !*cli.control)
		usage_error("--control needs a path");
	if (!cli.control)
		cli.control = getenv("BALLAST_SOCKET");
	if (!cli.control || !*cli.control)
		cli.control = "./ballast-data/ballast.sock";
	params = json_object();
	if (!params) {
		fputs("ballast: out of memory\n", stderr);
		return 1;
	}
	method = volume_method(&cli, params);
	rc = bal_cli_rpc_call(cli.control, method, params, &result, err, sizeof(err));
	json_decref(params);
	if (rc < 0) {
		fprintf(stderr, "ballast: %s\n", err);
		return 1;
	}
	print_result(&cli, method, result);
	json_decref(result);
	if (fflush(stdout) != 0) {
		perror("ballast: stdout");
		return 1;
	}
	return 0;
}
