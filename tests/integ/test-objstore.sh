#!/bin/bash
# SPDX-License-Identifier: MIT
# The object store client against S3: build/tests/test_objstore's suite runs
# against s3rver behind the strict SigV4-verifying proxy (helpers/s3.sh),
# first clean, then with injected 500s, 503s and dropped connections; the
# aws CLI must see and fetch an object the suite put; wrong credentials must
# fail fast with -EACCES.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/s3.sh"

UNIT=$TOP/$BUILD/tests/test_objstore
[ -x "$UNIT" ] || fail "$UNIT not built (make units)"

s3_start
export BAL_TEST_S3_URL=s3://$S3_BUCKET/objtest

note "suite without faults"
"$UNIT" >"$T/clean.log" 2>&1 || { cat "$T/clean.log"; _s3_fail "test_objstore failed against $BAL_TEST_S3_URL"; }
grep -q "suite on s3://$S3_BUCKET/objtest" "$T/clean.log" || { cat "$T/clean.log"; fail "the S3 suite did not run"; }
rej=$(s3_stat rejected_signature)
[ "$rej" = 0 ] || { s3_stats; _s3_fail "the proxy rejected $rej signatures"; }
[ "$(s3_stat requests)" -gt 500 ] || { s3_stats; fail "too few requests reached the proxy"; }
grep -q "retries 0 " "$T/clean.log" || { cat "$T/clean.log"; fail "retries without faults"; }

note "suite with faults (10% 500, 10% 503, 5% dropped)"
s3_reset_stats
s3_faults 0.1 0.1 0.05
"$UNIT" >"$T/faults.log" 2>&1 || { tail -n 30 "$T/faults.log"; s3_stats; _s3_fail "test_objstore failed under faults"; }
s3_faults 0 0 0
grep "suite on s3\|retries" "$T/faults.log"
stats=$(s3_stats)
note "proxy: $stats"
[ "$(s3_stat rejected_signature)" = 0 ] || _s3_fail "signatures rejected under faults: $stats"
for c in injected_500 injected_503 dropped; do
	[ "$(s3_stat "$c")" -gt 0 ] || fail "the proxy injected no $c: $stats"
done
grep -Eq "retries [1-9]" "$T/faults.log" || fail "no retries counted under faults"

note "aws CLI sees and fetches what the suite put"
s3_aws s3 ls "s3://$S3_BUCKET/objtest/keep/" >"$T/ls.out" || fail "aws s3 ls failed"
grep -q "hello.txt" "$T/ls.out" || { cat "$T/ls.out"; fail "aws s3 ls does not show keep/hello.txt"; }
s3_aws s3 cp "s3://$S3_BUCKET/objtest/keep/hello.txt" "$T/hello.txt" >/dev/null || fail "aws s3 cp failed"
[ "$(cat "$T/hello.txt")" = "hello from the ballast object store test" ] || fail "aws s3 cp fetched other bytes"

note "wrong secret key: -EACCES at once, no retry"
start=$(date +%s)
AWS_SECRET_ACCESS_KEY=wrong-secret-key "$UNIT" --expect-denied >"$T/denied.log" 2>&1 ||
	{ cat "$T/denied.log"; fail "wrong credentials did not fail cleanly with -EACCES"; }
[ $(( $(date +%s) - start )) -le 5 ] || fail "wrong credentials took too long"
grep "put with wrong credentials" "$T/denied.log"
grep -q "wrong-secret-key" "$T/denied.log" && fail "the secret key appears in the output"
[ "$(s3_stat rejected_signature)" -ge 1 ] || fail "the proxy saw no bad signature"
echo "test-objstore: ok"
