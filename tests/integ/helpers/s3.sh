# SPDX-License-Identifier: MIT
# S3 endpoint for integration tests: s3rver behind tests/integ/helpers/s3proxy.py,
# which verifies Signature V4 strictly and injects faults.  Source it after
# tests/integ/lib.sh.
#
#   s3_start [BUCKET]        start both, create BUCKET (default $S3_BUCKET or
#                            ballast-test) through the proxy with the aws CLI
#   s3_faults P500 P503 PDROP [SEED]   fault probabilities from now on (0..1
#                            each); the RNG restarts from SEED (default
#                            $S3_PROXY_SEED or 1), so a serial client meets the
#                            same faults every run
#   s3_stats                 print the proxy's counters (JSON)
#   s3_stat KEY              print one counter (requests, rejected_signature,
#                            injected_500, injected_503, dropped, forwarded, ...)
#   s3_reset_stats           zero the counters
#   s3_aws ARGS...           the aws CLI against the proxy
#   s3_stop                  stop both (also done at exit)
#
# After s3_start: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
# AWS_ENDPOINT_URL (http://127.0.0.1:PROXYPORT), S3_BUCKET, S3_PROXY_PORT,
# S3RVER_PORT, S3_URL (s3://$S3_BUCKET) are exported.  Proxy log:
# $T/s3proxy.log (a refused signature logs its canonical request there).

S3_DEPS=${S3_DEPS:-$TOP/tests/.deps}
S3RVER_BIN=${S3RVER_BIN:-$S3_DEPS/node_modules/.bin/s3rver}
S3_PROXY_PY=$TOP/tests/integ/helpers/s3proxy.py
S3RVER_PID=
S3_PROXY_PID=
S3_PROXY_PORT=
S3RVER_PORT=

# awscli: no config files, no instance metadata, no pager, no network.
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=$T/aws-config-none
export AWS_SHARED_CREDENTIALS_FILE=$T/aws-credentials-none
export AWS_PAGER=""
export AWS_CLI_AUTO_PROMPT=off
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN \
	AWS_CA_BUNDLE AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE 2>/dev/null || true

_s3_fail() {
	for f in "$T/s3rver.log" "$T/s3proxy.log"; do
		[ -s "$f" ] && { echo "--- $(basename "$f") (tail)" >&2; tail -n 20 "$f" >&2; }
	done
	fail "$@"
}

_s3_wait_http() { # url pid what
	for _ in $(seq 1 200); do
		curl -s -o /dev/null --max-time 2 "$1" && return 0
		kill -0 "$2" 2>/dev/null || _s3_fail "$3 exited during start-up"
		sleep 0.1
	done
	_s3_fail "$3 did not answer on $1 within 20 s"
}

s3_start() {
	S3_BUCKET=${1:-${S3_BUCKET:-ballast-test}}
	if [ ! -x "$S3RVER_BIN" ]; then
		note "s3rver missing: running tools/deps.sh"
		sh "$TOP/tools/deps.sh" >&2 || true
	fi
	[ -x "$S3RVER_BIN" ] || fail "s3rver not installed at $S3RVER_BIN (needs npm: npm install --prefix $S3_DEPS s3rver@3)"
	command -v node >/dev/null || fail "node not found: s3rver cannot run"
	command -v aws >/dev/null || fail "aws CLI not found (Debian package awscli)"
	command -v curl >/dev/null || fail "curl not found"

	mkdir -p "$T/s3rver"
	S3RVER_PORT=$(free_port)
	# s3rver 3 makes list continuation tokens with DES, which node 20's
	# OpenSSL 3 offers only through its legacy provider.
	NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--openssl-legacy-provider" \
		"$S3RVER_BIN" -d "$T/s3rver" -a 127.0.0.1 -p "$S3RVER_PORT" --silent \
		>"$T/s3rver.log" 2>&1 &
	S3RVER_PID=$!
	on_exit s3_stop
	_s3_wait_http "http://127.0.0.1:$S3RVER_PORT/" "$S3RVER_PID" s3rver

	export AWS_ACCESS_KEY_ID=${S3_TEST_ACCESS_KEY:-BALLASTTESTKEY000001}
	export AWS_SECRET_ACCESS_KEY=${S3_TEST_SECRET_KEY:-ballast/test/secret+key0123456789abcdefgh}
	export AWS_REGION=${S3_TEST_REGION:-us-east-1}
	export AWS_DEFAULT_REGION=$AWS_REGION

	: >"$T/s3proxy.port"
	/usr/bin/python3 "$S3_PROXY_PY" --upstream "127.0.0.1:$S3RVER_PORT" \
		--access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
		--region "$AWS_REGION" --seed "${S3_PROXY_SEED:-1}" --verbose \
		>"$T/s3proxy.port" 2>"$T/s3proxy.log" &
	S3_PROXY_PID=$!
	for _ in $(seq 1 200); do
		S3_PROXY_PORT=$(head -n 1 "$T/s3proxy.port")
		[ -n "$S3_PROXY_PORT" ] && break
		kill -0 "$S3_PROXY_PID" 2>/dev/null || _s3_fail "s3proxy exited during start-up"
		sleep 0.05
	done
	[ -n "$S3_PROXY_PORT" ] || _s3_fail "s3proxy printed no port within 10 s"
	_s3_wait_http "http://127.0.0.1:$S3_PROXY_PORT/__proxy/stats" "$S3_PROXY_PID" s3proxy

	export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PROXY_PORT
	export S3_BUCKET S3_PROXY_PORT S3RVER_PORT S3_URL=s3://$S3_BUCKET
	s3_aws s3 mb "s3://$S3_BUCKET" >/dev/null ||
		_s3_fail "aws s3 mb s3://$S3_BUCKET through the proxy failed"
	note "s3: bucket $S3_BUCKET at $AWS_ENDPOINT_URL (s3rver on $S3RVER_PORT)"
}

s3_aws() { aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }

_s3_ctl() { # method path [json]
	curl -fsS --max-time 10 -X "$1" ${3:+--data "$3"} \
		"http://127.0.0.1:$S3_PROXY_PORT/__proxy/$2"
}

s3_faults() {
	[ $# -eq 3 ] || [ $# -eq 4 ] || fail "usage: s3_faults P500 P503 PDROP [SEED]"
	_s3_ctl POST faults "{\"p500\": $1, \"p503\": $2, \"pdrop\": $3, \"seed\": ${4:-${S3_PROXY_SEED:-1}}}" >/dev/null ||
		fail "s3_faults $*: the proxy refused"
}

s3_stats() { _s3_ctl GET stats || fail "s3_stats: proxy did not answer"; }

s3_stat() {
	s3_stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"
}

s3_reset_stats() { _s3_ctl POST reset >/dev/null || fail "s3_reset_stats: proxy did not answer"; }

_s3_kill() { # pid
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

s3_stop() {
	_s3_kill "$S3_PROXY_PID"
	S3_PROXY_PID=
	_s3_kill "$S3RVER_PID"
	S3RVER_PID=
}
