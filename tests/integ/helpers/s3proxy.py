#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Verifying, fault-injecting reverse proxy in front of a test S3 server.

The test S3 server (s3rver) accepts any Signature V4, so the integration
tests put this proxy in front of it.  Every request is checked as AWS S3
checks it before it is forwarded:

  - Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/s3/aws4_request,
    SignedHeaders=..., Signature=... with the configured access key id and
    region; host, x-amz-date and x-amz-content-sha256 signed, and every
    x-amz-* header present signed too;
  - x-amz-date within 15 minutes of now, its day equal to the credential's;
  - x-amz-content-sha256 equal to the SHA-256 of the body received (or
    UNSIGNED-PAYLOAD), Content-MD5 equal to the body's MD5 when present;
  - the signature recomputed from the raw request: canonical URI = each path
    segment percent-decoded then encoded again (RFC 3986 unreserved set kept,
    no dot-segment normalisation, no double encoding), canonical query =
    parameters decoded, encoded again and sorted by name then value,
    canonical headers = lowercased names, trimmed values with runs of spaces
    collapsed, sorted.

A refused request gets an S3-style XML error (SignatureDoesNotMatch carries
the canonical request and string to sign, as AWS does) and is counted.

Requests that pass may be answered with an injected fault: 500 InternalError
with probability p500, 503 SlowDown with p503, a dropped connection with
pdrop (half before forwarding, half after forwarding with the response cut
short).  The decisions come from a seeded RNG.

Control, answered by the proxy itself, without auth, to loopback peers only:
  GET  /__proxy/stats    counters as JSON
  GET  /__proxy/faults   current fault rates as JSON
  POST /__proxy/faults   {"p500": P, "p503": P, "pdrop": P[, "seed": N]}
                         (restarts the RNG from the seed, default --seed)
  POST /__proxy/reset    zero the counters

Usage: s3proxy.py --upstream HOST:PORT --access-key AKID --secret-key SECRET
                  [--region us-east-1] [--port 0] [--seed N]
                  [--p500 P] [--p503 P] [--pdrop P] [--verbose]
The first line on stdout is the port bound on 127.0.0.1.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import random
import re
import socket
import sys
import threading
import urllib.parse
from xml.sax.saxutils import escape

MAX_HEAD = 64 * 1024
MAX_BODY = 1 << 30
IDLE_TIMEOUT = 120
SKEW = datetime.timedelta(minutes=15)
UPSTREAM_KEY = "S3RVER"          # the one key id s3rver knows
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
       "te", "trailer", "transfer-encoding", "upgrade", "expect"}
REASONS = {100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 411: "Length Required",
           413: "Payload Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 502: "Bad Gateway",
           503: "Service Unavailable"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Refused(Exception):
    """A request refused with an S3 error."""

    def __init__(self, status, code, message, extra=None, close=False):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra or {}
        self.close = close


class Proxy:
    def __init__(self, args):
        self.a = args
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.faults = {"p500": args.p500, "p503": args.p503, "pdrop": args.pdrop}
        self.reset()
        self.req_ids = 0

    def reset(self):
        with self.lock:
            self.stats = {"requests": 0, "by_method": {}, "rejected_signature": 0,
                          "rejected": {}, "injected_500": 0, "injected_503": 0,
                          "dropped": 0, "dropped_before": 0, "dropped_after": 0,
                          "forwarded": 0, "upstream_errors": 0}

    def count(self, key, sub=None):
        with self.lock:
            if sub is None:
                self.stats[key] += 1
            else:
                d = self.stats[key]
                d[sub] = d.get(sub, 0) + 1

    def pick_fault(self):
        with self.lock:
            f = self.faults
            if not any(f.values()):
                return None
            r = self.rng.random()
            if r < f["p500"]:
                return "500"
            r -= f["p500"]
            if r < f["p503"]:
                return "503"
            r -= f["p503"]
            if r < f["pdrop"]:
                return "drop-before" if self.rng.random() < 0.5 else "drop-after"
            return None


def log(msg):
    sys.stderr.write("s3proxy: %s\n" % msg)
    sys.stderr.flush()


def aws_quote(s):
    """Percent-encode all but RFC 3986 unreserved characters, uppercase hex."""
    return urllib.parse.quote(s, safe="-_.~")


def canonical_uri(path):
    if not path:
        return "/"
    return "/".join(aws_quote(urllib.parse.unquote(seg)) for seg in path.split("/"))


def canonical_query(query):
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if part == "":
            continue
        name, _, value = part.partition("=")
        pairs.append((aws_quote(urllib.parse.unquote(name)),
                      aws_quote(urllib.parse.unquote(value))))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def trimall(v):
    return re.sub(r"\s+", " ", v.strip())


def hmac256(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def parse_authorization(value):
    algo, _, rest = value.strip().partition(" ")
    if algo != "AWS4-HMAC-SHA256":
        raise Refused(400, "InvalidArgument",
                      "Unsupported Authorization Type", {"ArgumentName": "Authorization"})
    comps = {}
    for item in rest.split(","):
        k, sep, v = item.strip().partition("=")
        if not sep:
            continue
        comps[k] = v
    for k in ("Credential", "SignedHeaders", "Signature"):
        if k not in comps:
            raise Refused(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; missing %s." % k)
    scope = comps["Credential"].split("/")
    if len(scope) != 5:
        raise Refused(400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the Credential is mal-formed.")
    return scope, comps["SignedHeaders"], comps["Signature"]


class Request:
    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version = method, target, version
        self.headers = headers      # list of (name, value) as received
        self.body = b""

    def get_all(self, name):
        return [v for k, v in self.headers if k.lower() == name]

    def get(self, name):
        vals = self.get_all(name)
        return vals[0] if vals else None

    def keep_alive(self):
        conn = (self.get("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


def verify_signature(p, req):
    """Check everything that does not depend on the body; raise Refused."""
    auth = req.get("authorization")
    if auth is None:
        raise Refused(403, "AccessDenied", "Access Denied")
    if len(req.get_all("authorization")) != 1:
        raise Refused(400, "InvalidArgument", "Only one Authorization header is allowed")
    scope, signed_str, signature = parse_authorization(auth)
    akid, day, region, service, term = scope
    if akid != p.a.access_key:
        raise Refused(403, "InvalidAccessKeyId",
                      "The AWS Access Key Id you provided does not exist in our records.",
                      {"AWSAccessKeyId": akid})
    if service != "s3" or term != "aws4_request":
        raise Refused(400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; incorrect service or terminator.")
    if region != p.a.region:
        raise Refused(400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the region '%s' is wrong; "
                      "expecting '%s'" % (region, p.a.region), {"Region": p.a.region})
    amzdate = req.get("x-amz-date")
    if amzdate is None:
        raise Refused(403, "AccessDenied",
                      "AWS authentication requires a valid Date or x-amz-date header")
    try:
        when = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Refused(403, "AccessDenied",
                      "AWS authentication requires a valid Date or x-amz-date header")
    now = datetime.datetime.now(datetime.timezone.utc)
    if abs(now - when) > SKEW:
        raise Refused(403, "RequestTimeTooSkewed",
                      "The difference between the request time and the current time is too large.",
                      {"RequestTime": amzdate, "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
    if day != amzdate[:8]:
        raise Refused(403, "SignatureDoesNotMatch",
                      "Credential should be scoped to a valid date: '%s' != '%s'" % (day, amzdate[:8]))
    payload = req.get("x-amz-content-sha256")
    if payload is None:
        raise Refused(400, "InvalidRequest", "Missing required header for this request: "
                      "x-amz-content-sha256")
    if payload != "UNSIGNED-PAYLOAD" and not HEX64.match(payload):
        raise Refused(400, "InvalidArgument",
                      "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value.",
                      {"ArgumentName": "x-amz-content-sha256", "ArgumentValue": payload})
    signed = signed_str.split(";")
    for need in ("host", "x-amz-date", "x-amz-content-sha256"):
        if need not in signed:
            raise Refused(403, "AccessDenied",
                          "Header %s must be signed" % need)
    present = {k.lower() for k, _ in req.headers}
    unsigned = sorted(h for h in present if h.startswith("x-amz-") and h not in signed)
    if unsigned:
        raise Refused(403, "AccessDenied",
                      "There were headers present in the request which were not signed",
                      {"HeadersNotSigned": ", ".join(unsigned)})
    path, _, query = req.target.partition("?")
    if not path.startswith("/"):
        raise Refused(400, "InvalidURI", "Couldn't parse the specified URI.")
    canon_headers = []
    for name in sorted(signed):
        vals = req.get_all(name)
        if not vals:
            raise Refused(403, "SignatureDoesNotMatch",
                          "Signed header %s is missing from the request" % name)
        canon_headers.append("%s:%s\n" % (name, ",".join(trimall(v) for v in vals)))
    canonical = "\n".join([req.method, canonical_uri(path), canonical_query(query),
                           "".join(canon_headers), ";".join(sorted(signed)), payload])
    cscope = "/".join(scope[1:])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, cscope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = hmac256(("AWS4" + p.a.secret_key).encode(), day)
    for part in (region, service, term):
        k = hmac256(k, part)
    want = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, signature):
        log("signature mismatch for %s %s\n--- canonical request\n%s\n--- string to sign\n%s"
            % (req.method, req.target, canonical, to_sign))
        raise Refused(403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature "
                      "you provided. Check your key and signing method.",
                      {"AWSAccessKeyId": akid, "StringToSign": to_sign,
                       "SignatureProvided": signature, "CanonicalRequest": canonical})


def verify_body(req):
    payload = req.get("x-amz-content-sha256")
    if payload != "UNSIGNED-PAYLOAD":
        got = hashlib.sha256(req.body).hexdigest()
        if got != payload:
            raise Refused(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what "
                          "was computed.",
                          {"ClientComputedContentSHA256": payload,
                           "S3ComputedContentSHA256": got})
    md5 = req.get("content-md5")
    if md5 is not None:
        got = base64.b64encode(hashlib.md5(req.body).digest()).decode()
        if got != md5.strip():
            raise Refused(400, "BadDigest",
                          "The Content-MD5 you specified did not match what we received.")


def xml_error(code, message, resource, extra):
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
             "<Code>%s</Code>" % code, "<Message>%s</Message>" % escape(message),
             "<Resource>%s</Resource>" % escape(resource)]
    for k, v in extra.items():
        parts.append("<%s>%s</%s>" % (k, escape(str(v)), k))
    parts.append("<RequestId>s3proxy</RequestId></Error>")
    return "".join(parts).encode()


def response_bytes(status, headers, body, keep, head=False):
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    lines.append("Connection: %s" % ("keep-alive" if keep else "close"))
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head else out + body


class Conn:
    """One client connection: a loop of requests."""

    def __init__(self, proxy, sock, peer):
        self.p, self.sock, self.peer = proxy, sock, peer
        self.buf = b""
        self.linger = False     # unread input may remain: drain before close
        sock.settimeout(IDLE_TIMEOUT)

    def recv_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise Refused(400, "RequestHeaderSectionTooLarge",
                              "Your request header section exceeds the maximum allowed size.",
                              close=True)
            data = self.sock.recv(65536)
            if not data:
                if self.buf.strip():
                    raise ConnectionError("client closed mid-header")
                return None
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def recv_exact(self, n):
        chunks, have = [self.buf[:n]], len(self.buf[:n])
        self.buf = self.buf[n:]
        while have < n:
            data = self.sock.recv(min(1 << 20, n - have))
            if not data:
                raise ConnectionError("client closed mid-body")
            chunks.append(data)
            have += len(data)
        return b"".join(chunks)

    def send_error(self, req, err, keep):
        body = xml_error(err.code, err.message, req.target if req else "", err.extra)
        hdrs = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                ("x-amz-request-id", "s3proxy")]
        self.sock.sendall(response_bytes(err.status, hdrs, body, keep,
                                         req is not None and req.method == "HEAD"))

    def parse(self, head):
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Refused(400, "BadRequest", "Malformed request line", close=True)
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or name != name.strip() or not name:
                raise Refused(400, "BadRequest", "Malformed header line", close=True)
            headers.append((name, value.strip(" \t")))
        return Request(parts[0], parts[1], parts[2], headers)

    def serve(self):
        try:
            while self.one():
                pass
            if self.linger:
                self.lingering_close()
        except (ConnectionError, socket.timeout, OSError):
            pass
        except Exception as e:      # a bug here must not go unnoticed
            log("internal error on a connection from %s: %r" % (self.peer, e))
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def lingering_close(self):
        """Close after an answer sent before the body was read: a plain
        close with unread input would reset the connection and could
        destroy the answer before the client reads it."""
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(2)
        for _ in range(4096):
            if not self.sock.recv(65536):
                break

    def one(self):
        """Serve one request; False when the connection is to be closed."""
        req = None
        try:
            head = self.recv_head()
            if head is None:
                return False
            req = self.parse(head)
        except Refused as e:
            self.send_error(req, e, False)
            return False
        if req.target.startswith("/__proxy/"):
            return self.control(req)
        p = self.p
        p.count("requests")
        p.count("by_method", req.method)
        keep = req.keep_alive()
        if req.get("transfer-encoding") is not None:
            p.count("rejected", "NotImplemented")
            self.send_error(req, Refused(501, "NotImplemented",
                                         "A header you provided implies functionality that "
                                         "is not implemented", {"Header": "Transfer-Encoding"}),
                            False)
            self.linger = True
            return False
        clen = self.content_length(req)
        if clen is None:
            return False
        expect = (req.get("expect") or "").lower() == "100-continue"
        try:
            if expect:
                # As S3 does: refuse before the body is sent when the
                # headers alone fail.
                verify_signature(p, req)
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                req.body = self.recv_exact(clen)
            else:
                req.body = self.recv_exact(clen)
                verify_signature(p, req)
            verify_body(req)
        except Refused as e:
            p.count("rejected_signature")
            p.count("rejected", e.code)
            log("refused %s %s: %s %s" % (req.method, req.target, e.code, e.message))
            # Unread body after a refused Expect: the connection cannot go on.
            ok = keep and not expect and not e.close
            self.send_error(req, e, ok)
            self.linger = not ok
            return ok
        fault = p.pick_fault()
        if fault == "500":
            p.count("injected_500")
            self.send_error(req, Refused(500, "InternalError",
                                         "We encountered an internal error. Please try again."),
                            keep)
            return keep
        if fault == "503":
            p.count("injected_503")
            self.send_error(req, Refused(503, "SlowDown",
                                         "Please reduce your request rate."), keep)
            return keep
        if fault == "drop-before":
            p.count("dropped")
            p.count("dropped_before")
            return False
        resp = self.forward(req)
        if resp is None:
            p.count("upstream_errors")
            self.send_error(req, Refused(502, "BadGateway", "upstream failed"), False)
            return False
        p.count("forwarded")
        status, hdrs, body = resp
        if p.a.verbose:
            ph = req.get("x-amz-content-sha256") or ""
            log("%s %s -> %d (%d bytes in, payload %s)%s" % (
                req.method, req.target, status, len(req.body),
                ph if not HEX64.match(ph) else "sha256",
                " [drop-after]" if fault else ""))
        out = response_bytes(status, hdrs, body, keep, req.method == "HEAD")
        if fault == "drop-after":
            p.count("dropped")
            p.count("dropped_after")
            self.sock.sendall(out[:max(1, len(out) // 2)])
            return False
        self.sock.sendall(out)
        return keep

    def content_length(self, req):
        """The body's length, or None after refusing the request."""
        value = req.get("content-length")
        err = None
        if value is None:
            if req.method in ("PUT", "POST"):
                err = Refused(411, "MissingContentLength",
                              "You must provide the Content-Length HTTP header.")
            value = "0"
        if err is None and (not value.isdigit() or len(req.get_all("content-length")) > 1):
            err = Refused(400, "BadRequest", "Bad Content-Length")
        if err is None and int(value) > MAX_BODY:
            err = Refused(400, "EntityTooLarge",
                          "Your proposed upload exceeds the maximum allowed size")
        if err is None:
            return int(value)
        self.p.count("rejected", err.code)
        self.send_error(req, err, False)
        self.linger = True
        return None

    def forward(self, req):
        up = http.client.HTTPConnection(self.p.a.upstream_host, self.p.a.upstream_port,
                                        timeout=60)
        try:
            hdrs = {}
            for k, v in req.headers:
                lk = k.lower()
                if lk in HOP or lk == "content-length":
                    continue
                if lk == "authorization":
                    v = re.sub(r"Credential=[^/,]*/", "Credential=%s/" % UPSTREAM_KEY, v)
                hdrs[k] = v if k not in hdrs else hdrs[k] + "," + v
            if req.body or req.method in ("PUT", "POST"):
                hdrs["Content-Length"] = str(len(req.body))
            up.request(req.method, req.target, body=req.body or None, headers=hdrs)
            r = up.getresponse()
            body = r.read()
            out = []
            has_len = False
            for k, v in r.getheaders():
                lk = k.lower()
                if lk in HOP:
                    continue
                if lk == "content-length":
                    has_len = True
                    if req.method != "HEAD":
                        v = str(len(body))
                out.append((k, v))
            if not has_len and req.method != "HEAD" and r.status not in (204, 304):
                out.append(("Content-Length", str(len(body))))
            return r.status, out, body
        except (OSError, http.client.HTTPException) as e:
            log("upstream error for %s %s: %s" % (req.method, req.target, e))
            return None
        finally:
            up.close()

    def control(self, req):
        p = self.p
        clen = req.get("content-length") or "0"
        if not clen.isdigit() or int(clen) > (1 << 20):
            self.send_error(req, Refused(400, "BadRequest", "Bad Content-Length"), False)
            self.linger = True
            return False
        clen = int(clen)
        if (req.get("expect") or "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.recv_exact(clen) if clen else b""
        keep = req.keep_alive()
        if not self.peer[0].startswith("127."):
            self.send_error(req, Refused(403, "AccessDenied", "control is loopback only"), False)
            return False
        status, out = 200, None
        path = req.target.split("?")[0]
        try:
            if path == "/__proxy/stats" and req.method == "GET":
                with p.lock:
                    out = json.loads(json.dumps(p.stats))
            elif path == "/__proxy/faults" and req.method in ("GET", "POST"):
                if req.method == "POST":
                    new = json.loads(body.decode() or "{}")
                    with p.lock:
                        for k in ("p500", "p503", "pdrop"):
                            if k in new:
                                v = float(new[k])
                                if not 0.0 <= v <= 1.0:
                                    raise ValueError("%s out of range" % k)
                                p.faults[k] = v
                        if sum(p.faults.values()) > 1.0:
                            raise ValueError("fault probabilities add up to more than 1")
                        # A fresh sequence each time: the faults a serial
                        # client meets depend only on the seed.
                        p.rng.seed(int(new.get("seed", p.a.seed)))
                    log("faults now %s" % p.faults)
                with p.lock:
                    out = dict(p.faults)
            elif path == "/__proxy/reset" and req.method == "POST":
                p.reset()
                out = {"reset": True}
            else:
                status, out = 404, {"error": "no such control endpoint"}
        except (ValueError, TypeError, AttributeError) as e:
            status, out = 400, {"error": str(e)}
        data = (json.dumps(out, sort_keys=True) + "\n").encode()
        self.sock.sendall(response_bytes(status, [("Content-Type", "application/json"),
                                                  ("Content-Length", str(len(data)))],
                                         data, keep))
        return keep


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--p500", type=float, default=0.0)
    ap.add_argument("--p503", type=float, default=0.0)
    ap.add_argument("--pdrop", type=float, default=0.0)
    ap.add_argument("--verbose", action="store_true", help="log every forwarded request")
    a = ap.parse_args()
    host, _, port = a.upstream.rpartition(":")
    a.upstream_host, a.upstream_port = host or "127.0.0.1", int(port)
    proxy = Proxy(a)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(64)
    print(ls.getsockname()[1], flush=True)
    log("listening on 127.0.0.1:%d, upstream %s" % (ls.getsockname()[1], a.upstream))
    while True:
        sock, peer = ls.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=Conn(proxy, sock, peer).serve, daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
