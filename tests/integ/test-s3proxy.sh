#!/bin/bash
# SPDX-License-Identifier: MIT
# The S3 test harness itself: s3rver behind the verifying, fault-injecting
# proxy (helpers/s3proxy.py, helpers/s3.sh).  The aws CLI and curl's SigV4
# pass the verifier; wrong secrets, wrong keys, bodies that do not match
# x-amz-content-sha256 and other malformed requests are refused and counted;
# injected faults show in the counters and the CLI's retries get through.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/s3.sh"

s3_start
B=$S3_BUCKET

# --- copies up and down, byte-equal
head -c 1234 /dev/urandom >"$T/small"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$T/big"
s3_aws s3 cp --only-show-errors "$T/small" "s3://$B/dir/small" || fail "upload small"
s3_aws s3 cp --only-show-errors "$T/big" "s3://$B/dir/big" || fail "upload 5 MiB"
s3_aws s3 cp --only-show-errors "s3://$B/dir/small" "$T/small.back" || fail "download small"
s3_aws s3 cp --only-show-errors "s3://$B/dir/big" "$T/big.back" || fail "download 5 MiB"
cmp "$T/small" "$T/small.back" || fail "small object differs after the round trip"
cmp "$T/big" "$T/big.back" || fail "5 MiB object differs after the round trip"
s3_aws s3 ls "s3://$B/dir/" >"$T/ls" || fail "aws s3 ls"
grep -Eq ' 1234 small$' "$T/ls" || { cat "$T/ls"; fail "ls does not list small"; }
grep -Eq ' 5242880 big$' "$T/ls" || { cat "$T/ls"; fail "ls does not list big"; }
# Parallel requests (the CLI uses several threads), DeleteObjects (POST ?delete
# with Content-MD5).
mkdir -p "$T/tree"
for i in 1 2 3 4 5 6 7 8; do head -c $((i * 70000)) /dev/urandom >"$T/tree/t$i"; done
s3_aws s3 cp --only-show-errors --recursive "$T/tree" "s3://$B/tree/" || fail "recursive upload"
s3_aws s3 cp --only-show-errors --recursive "s3://$B/tree/" "$T/tree.back" || fail "recursive download"
diff -r "$T/tree" "$T/tree.back" || fail "recursive copy differs"
s3_aws s3 rm --only-show-errors --recursive "s3://$B/tree/" || fail "recursive rm"
[ -z "$(s3_aws s3 ls "s3://$B/tree/")" ] || fail "objects left after recursive rm"
note "aws s3 cp/ls round trip ok (${SECONDS}s)"

# --- multipart upload (POST ?uploads, PUT ?partNumber&uploadId, POST ?uploadId)
printf '[default]\ns3 =\n  multipart_threshold = 2MB\n  multipart_chunksize = 2MB\n' >"$T/aws-multipart.cfg"
AWS_CONFIG_FILE=$T/aws-multipart.cfg s3_aws s3 cp --only-show-errors "$T/big" "s3://$B/dir/multi" ||
	fail "multipart upload"
s3_aws s3api head-object --bucket "$B" --key dir/multi >"$T/head" || fail "head-object"
grep -q '"ContentLength": 5242880' "$T/head" || { cat "$T/head"; fail "multipart object has the wrong size"; }
s3_aws s3 cp --only-show-errors "s3://$B/dir/multi" "$T/multi.back" || fail "download multipart"
cmp "$T/big" "$T/multi.back" || fail "multipart object differs"
s3_aws s3 rm --only-show-errors "s3://$B/dir/multi" || fail "aws s3 rm"
[ "$(s3_stat rejected_signature)" -eq 0 ] || { s3_stats; fail "aws CLI requests were refused"; }
note "multipart upload and rm ok (${SECONDS}s)"

# --- curl's SigV4 (the library the daemon uses): canonical query, HEAD, storage class
E=$(printf '' | sha256sum | cut -d' ' -f1)
H=$(sha256sum <"$T/small" | cut -d' ' -f1)
C=(curl -sS --max-time 20 --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
code=$("${C[@]}" -o "$T/curl.out" -w '%{http_code}' -X PUT -H "x-amz-content-sha256: $H" \
	-H "x-amz-storage-class: STANDARD_IA" --data-binary @"$T/small" "$AWS_ENDPOINT_URL/$B/curl/obj-1.bin")
[ "$code" = 200 ] || { cat "$T/curl.out"; fail "curl PUT: $code"; }
code=$("${C[@]}" -o "$T/curl.out" -w '%{http_code}' -H "x-amz-content-sha256: $E" \
	"$AWS_ENDPOINT_URL/$B?delimiter=%2F&list-type=2&prefix=curl%2F")
[ "$code" = 200 ] && grep -q '<Key>curl/obj-1.bin</Key>' "$T/curl.out" ||
	{ cat "$T/curl.out"; fail "curl ListObjectsV2: $code"; }
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -I -H "x-amz-content-sha256: $E" "$AWS_ENDPOINT_URL/$B/curl/obj-1.bin")
[ "$code" = 200 ] || fail "curl HEAD: $code"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -I -H "x-amz-content-sha256: $E" "$AWS_ENDPOINT_URL/$B/curl/none")
[ "$code" = 404 ] || fail "curl HEAD of a missing key: $code"
# A body that does not match its x-amz-content-sha256, correctly signed.
code=$("${C[@]}" -o "$T/curl.out" -w '%{http_code}' -X PUT -H "x-amz-content-sha256: $H" \
	--data-binary "not the body that was hashed" "$AWS_ENDPOINT_URL/$B/curl/bad")
[ "$code" = 400 ] && grep -q XAmzContentSHA256Mismatch "$T/curl.out" ||
	{ cat "$T/curl.out"; fail "curl PUT with a mismatched body: $code"; }
# Uploads as the daemon sends them (CURLOPT_UPLOAD: Expect: 100-continue).
head -c 300000 /dev/urandom >"$T/mid"
HM=$(sha256sum <"$T/mid" | cut -d' ' -f1)
code=$("${C[@]}" -o "$T/curl.out" -w '%{http_code}' -T "$T/mid" -H "x-amz-content-sha256: $HM" \
	"$AWS_ENDPOINT_URL/$B/curl/mid")
[ "$code" = 200 ] || { cat "$T/curl.out"; fail "curl upload: $code"; }
code=$("${C[@]}" -o "$T/mid.back" -w '%{http_code}' -H "x-amz-content-sha256: $E" "$AWS_ENDPOINT_URL/$B/curl/mid")
[ "$code" = 200 ] && cmp "$T/mid" "$T/mid.back" || fail "curl GET of the upload: $code"
# A wrong secret: refused before the body is sent, a clean 403, no reset.
code=$(curl -sS --max-time 20 --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:wrong" \
	-o "$T/curl.out" -w '%{http_code}' -T "$T/mid" -H "x-amz-content-sha256: $HM" \
	"$AWS_ENDPOINT_URL/$B/curl/mid2") || fail "curl PUT with a wrong secret: transport error"
[ "$code" = 403 ] && grep -q SignatureDoesNotMatch "$T/curl.out" ||
	{ cat "$T/curl.out"; fail "curl PUT with a wrong secret: $code"; }
[ "$(s3_stat rejected_signature)" -eq 2 ] || { s3_stats; fail "refusals not counted"; }
note "curl SigV4 ok; mismatched body and wrong secret refused (${SECONDS}s)"

# --- hand-signed requests: the verifier's rules one by one
cat >"$T/sign.py" <<'EOF'
import datetime, hashlib, hmac, os, socket, sys, urllib.parse

AK, SK, REGION = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_REGION"]
PORT, B = int(os.environ["S3_PROXY_PORT"]), os.environ["S3_BUCKET"]
HOST = "127.0.0.1:%d" % PORT

def q(s):
    return urllib.parse.quote(s, safe="-_.~")

def request(method, path, query="", body=b"", headers=None, payload=None, ak=AK, sk=SK,
            when=None, unsigned=(), skip_sign=(), tamper=False, expect=False, auth=True):
    """Send one signed request; returns (status, response body)."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amzdate, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    payload = payload if payload is not None else hashlib.sha256(body).hexdigest()
    hdrs = {"host": HOST, "x-amz-date": amzdate, "x-amz-content-sha256": payload}
    hdrs.update(headers or {})
    signed = sorted(h for h in hdrs if h not in skip_sign)
    pairs = []
    for part in filter(None, query.split("&")):
        n, _, v = part.partition("=")
        pairs.append((q(urllib.parse.unquote(n)), q(urllib.parse.unquote(v))))
    cq = "&".join("%s=%s" % p for p in sorted(pairs))
    curi = "/".join(q(urllib.parse.unquote(s)) for s in path.split("/"))
    ch = "".join("%s:%s\n" % (h, " ".join(hdrs[h].split())) for h in signed)
    creq = "\n".join([method, curi, cq, ch, ";".join(signed), payload])
    scope = "%s/%s/s3/aws4_request" % (day, REGION)
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for m in (day, REGION, "s3", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if tamper:
        sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    if auth:
        hdrs["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            ak, scope, ";".join(signed), sig)
    hdrs.update(dict(unsigned))
    hdrs["content-length"] = str(len(body))
    if expect:
        hdrs["expect"] = "100-continue"
    target = path + ("?" + query if query else "")
    head = "%s %s HTTP/1.1\r\n" % (method, target) + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
    f = s.makefile("rb")
    s.sendall(head.encode())
    if expect:
        status = int(f.readline().split()[1])
        if status == 100:
            f.readline()
            s.sendall(body)
        else:
            return status, read_rest(f, method)
    else:
        s.sendall(body)
    status = int(f.readline().split()[1])
    return status, read_rest(f, method)

def read_rest(f, method):
    n = 0
    for line in iter(f.readline, b"\r\n"):
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            n = int(v)
    return b"" if method == "HEAD" else f.read(n)

fails = 0
def expect(name, got, status, code=None):
    global fails
    st, body = got
    ok = st == status and (code is None or ("<Code>%s</Code>" % code).encode() in body)
    print("%s %s: %d%s" % ("ok  " if ok else "FAIL", name, st, "" if ok else " " + body.decode()[:600]))
    fails += not ok

data = os.urandom(3000)
key = "/%s/hand/a b+c~d!e" % B
path = "/".join(q(s) for s in key.split("/"))
expect("PUT key with reserved characters", request("PUT", path, body=data,
       headers={"x-amz-meta-note": "  two   spaces  "}), 200)
st, got = request("GET", path)
expect("GET it back", (st, b""), 200)
if got != data:
    print("FAIL GET returned other bytes"); fails += 1
expect("list, query unsorted and partly unencoded", request(
       "GET", "/" + B, "prefix=hand/&list-type=2&delimiter=/&max-keys=10"), 200)
expect("PUT with Expect: 100-continue", request("PUT", path, body=data, expect=True), 200)
expect("UNSIGNED-PAYLOAD", request("PUT", path, body=data, payload="UNSIGNED-PAYLOAD"), 200)
expect("body differs from x-amz-content-sha256", request(
       "PUT", path, body=data, payload=hashlib.sha256(b"other").hexdigest()), 400, "XAmzContentSHA256Mismatch")
expect("body differs, Expect: 100-continue", request(
       "PUT", path, body=data, payload=hashlib.sha256(b"other").hexdigest(), expect=True),
       400, "XAmzContentSHA256Mismatch")
expect("wrong secret", request("GET", path, sk="wrong"), 403, "SignatureDoesNotMatch")
expect("wrong secret, Expect: 100-continue", request("PUT", path, body=data, sk="wrong", expect=True),
       403, "SignatureDoesNotMatch")
expect("tampered signature", request("GET", path, tamper=True), 403, "SignatureDoesNotMatch")
expect("wrong access key id", request("GET", path, ak="AKIAOTHER"), 403, "InvalidAccessKeyId")
expect("date 20 minutes old", request("GET", path, when=datetime.datetime.now(
       datetime.timezone.utc) - datetime.timedelta(minutes=20)), 403, "RequestTimeTooSkewed")
expect("unsigned x-amz-* header", request("GET", path, unsigned=[("x-amz-meta-x", "1")]), 403, "AccessDenied")
expect("x-amz-content-sha256 not signed", request("GET", path, skip_sign=("x-amz-content-sha256",)),
       403, "AccessDenied")
expect("host not signed", request("GET", path, skip_sign=("host",)), 403, "AccessDenied")
expect("no Authorization", request("GET", path, auth=False), 403, "AccessDenied")
expect("bad x-amz-content-sha256", request("GET", path, payload="xyz"), 400, "InvalidArgument")
expect("DELETE", request("DELETE", path), 204)
sys.exit(1 if fails else 0)
EOF
/usr/bin/python3 "$T/sign.py" || { tail -n 40 "$T/s3proxy.log"; fail "hand-signed requests"; }
s3_reset_stats

# --- the aws CLI with a wrong secret is refused and counted
if AWS_SECRET_ACCESS_KEY=wrong-secret s3_aws s3 ls "s3://$B/" >"$T/wrong.out" 2>&1; then
	fail "aws with a wrong secret was let in"
fi
grep -q SignatureDoesNotMatch "$T/wrong.out" || { cat "$T/wrong.out"; fail "wrong secret: no SignatureDoesNotMatch"; }
[ "$(s3_stat rejected_signature)" -ge 1 ] || { s3_stats; fail "wrong secret not counted"; }
[ "$(s3_stat forwarded)" -eq 0 ] || { s3_stats; fail "a refused request was forwarded"; }
note "wrong secret refused (${SECONDS}s)"

# --- faults: the CLI's retries get through, the counters show the faults.
# Single-request operations (put-object, get-object, list): with 80 % of
# requests failing, up to 4 attempts by the CLI times 12 runs.
s3_reset_stats
s3_faults 0.3 0.3 0.2
export AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=4
retry() { # what cmd...
	local what=$1 i
	shift
	for i in $(seq 1 12); do
		"$@" >>"$T/faults.out" 2>&1 && return 0
		note "$what: run $i failed (injected faults)"
	done
	return 1
}
for i in 1 2 3; do
	retry "put $i" s3_aws s3api put-object --bucket "$B" --key "faults/f$i" --body "$T/small" ||
		fail "put $i under faults"
	rm -f "$T/f$i.back"
	retry "get $i" s3_aws s3api get-object --bucket "$B" --key "faults/f$i" "$T/f$i.back" ||
		fail "get $i under faults"
	cmp "$T/small" "$T/f$i.back" || fail "object $i corrupted under faults"
done
retry "list" s3_aws s3 ls "s3://$B/faults/" || fail "ls under faults"
s3_stats | tee "$T/faults.json"
for k in injected_500 injected_503 dropped forwarded; do
	[ "$(s3_stat $k)" -gt 0 ] || fail "no $k under faults"
done
[ "$(s3_stat rejected_signature)" -eq 0 ] || fail "retried requests were refused"

# --- faults off: everything works at the first attempt
s3_faults 0 0 0
s3_reset_stats
export AWS_MAX_ATTEMPTS=1
s3_aws s3 cp --only-show-errors "$T/big" "s3://$B/after/big" || fail "upload with faults off"
s3_aws s3 cp --only-show-errors "s3://$B/after/big" "$T/after.back" || fail "download with faults off"
cmp "$T/big" "$T/after.back" || fail "object differs with faults off"
s3_stats
for k in injected_500 injected_503 dropped rejected_signature; do
	[ "$(s3_stat $k)" -eq 0 ] || fail "$k is not 0 with faults off"
done
s3_stop
note "test-s3proxy passed (${SECONDS}s)"
