#!/usr/bin/env python3
"""A small HTTP/1.1 server for tests: serves a binary cache directory, with injectable faults.

Python stdlib only. Keep-alive, GET/HEAD, single "Range: bytes=N-" / "bytes=N-M" requests (206).

Faults are rules, tried in order; the first whose "path" (a regex searched in the request path)
matches and whose "times" budget is not used up applies (times: how many matching requests get
the fault; omitted or -1 = always). Actions (one per rule):
  {"status": 500}                          answer with that status (and "retry_after": S header,
                                           "location": URL header)
  {"truncate": N}                          send the full Content-Length header but only N body
                                           bytes (from the requested offset), then close
  {"stall": N, "stall_s": S}               send N body bytes, then stall S seconds, then close
  {"corrupt": OFFSET}                      flip the byte at file offset OFFSET
  {"ignore_range": true}                   answer 200 with the whole file to Range requests
  {"drop": true}                           close the connection without any response
  {"delay_s": S}                           wait S seconds, then serve normally
Control: PUT /_faults with a JSON list replaces the rules; GET /_log returns the request log as
JSON [{"method","path","range","status","fault","s3"}]; DELETE /_log clears it.

S3 mode (s3={"bucket","region","access_key","secret_key"[,"session_token"]}): the cache is served
path-style under /BUCKET/ as an S3-compatible server does, and every cache request must carry a
valid AWS Signature Version 4 (header form), checked here independently of any client: the
credential's key id, date and region, every x-amz-* header and Host signed, x-amz-date within
15 minutes, x-amz-content-sha256 present, the session token when one is configured, and the
signature recomputed from the canonical request (path segments and query URI-encoded and sorted
as S3 does). A request that fails gets the status S3 gives its error code (403 for a wrong
signature or key, 400 for a wrong region or token) with an XML <Error><Code>, and its log entry's
"s3" field names the code ("ok" when accepted).

Run: fault_server.py --root DIR [--port 0] [--faults FILE.json] [--s3 JSON]; prints "PORT <n>"
when ready. As a module: FaultServer(root, faults, s3=None) context manager with .url,
.set_faults(), .log().
"""
import argparse
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request


def _sha256_hex(data):
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


# The HTTP status real S3 answers each error code with.
S3_ERROR_STATUS = {"AccessDenied": 403, "InvalidAccessKeyId": 403, "SignatureDoesNotMatch": 403,
                   "RequestTimeTooSkewed": 403, "AuthorizationHeaderMalformed": 400,
                   "InvalidToken": 400, "InvalidRequest": 400, "NoSuchBucket": 404}


def _uri_encode(s, keep_slash):
    return urllib.parse.quote(s, safe="-_.~" + ("/" if keep_slash else ""))


def _canonical_uri(path):
    # S3: each segment decoded, then URI-encoded once (RFC 3986 unreserved characters kept).
    return "/".join(_uri_encode(urllib.parse.unquote(seg), False) for seg in path.split("/"))


def _canonical_query(query):
    pairs = []
    for q in query.split("&") if query else []:
        k, _, v = q.partition("=")
        pairs.append((_uri_encode(urllib.parse.unquote_plus(k), False),
                      _uri_encode(urllib.parse.unquote_plus(v), False)))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, ?"
                      r"SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})")


def sigv4_error(s3, method, raw_path, headers):
    """None when the request is signed as S3 wants (see the module docstring), else S3's error
    code. headers: an email.message.Message (case-insensitive get, get_all, keys())."""
    m = _AUTH_RE.fullmatch(headers.get("Authorization", ""))
    if not m:
        return "AccessDenied"
    key_id, day, region, signed, signature = m.groups()
    if key_id != s3["access_key"]:
        return "InvalidAccessKeyId"
    if region != s3["region"]:
        return "AuthorizationHeaderMalformed"
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return "AccessDenied"
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if not amz_date.startswith(day) or abs((now - when).total_seconds()) > 900:
        return "RequestTimeTooSkewed"
    signed_names = signed.split(";")
    present = {k.lower() for k in headers.keys()}
    if any((h.startswith("x-amz-") or h == "host") and h not in signed_names for h in present):
        return "AccessDenied"
    if any(h not in present for h in signed_names):
        return "AccessDenied"
    payload = headers.get("x-amz-content-sha256")
    if payload not in (_sha256_hex(""), "UNSIGNED-PAYLOAD"):
        return "InvalidRequest"
    if s3.get("session_token") and headers.get("x-amz-security-token") != s3["session_token"]:
        return "InvalidToken"
    path, _, query = raw_path.partition("?")
    canonical_headers = "".join(
        "%s:%s\n" % (h, ",".join(" ".join(v.split()) for v in headers.get_all(h, [])))
        for h in signed_names)
    canonical = "\n".join([method, _canonical_uri(path), _canonical_query(query),
                           canonical_headers, signed, payload])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256_hex(canonical)])
    key = _hmac(("AWS4" + s3["secret_key"]).encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, signature) else "SignatureDoesNotMatch"


class _State:
    def __init__(self, root, faults, s3=None):
        self.root = os.path.abspath(root)
        self.s3 = s3
        self.lock = threading.Lock()
        self.rules = []
        self.log = []
        self.set_faults(faults or [])

    def set_faults(self, faults):
        with self.lock:
            self.rules = [dict(r, _used=0) for r in faults]

    def take_rule(self, path):
        with self.lock:
            for r in self.rules:
                if not re.search(r.get("path", ""), path):
                    continue
                times = r.get("times", -1)
                if times >= 0 and r["_used"] >= times:
                    continue
                r["_used"] += 1
                return {k: v for k, v in r.items() if k != "_used"}
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nls-fault-server/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _record(self, status, fault=None, s3=None):
        with self.server.state.lock:
            self.server.state.log.append({
                "method": self.command, "path": self.path,
                "range": self.headers.get("Range"), "status": status,
                "fault": fault, "s3": s3})

    def _send_simple(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self):
        if self.path != "/_faults":
            return self._send_simple(405)
        n = int(self.headers.get("Content-Length", "0"))
        self.server.state.set_faults(json.loads(self.rfile.read(n) or b"[]"))
        self._send_simple(204)

    def do_DELETE(self):
        if self.path != "/_log":
            return self._send_simple(405)
        with self.server.state.lock:
            self.server.state.log.clear()
        self._send_simple(204)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        state = self.server.state
        if self.path == "/_log":
            with state.lock:
                body = json.dumps(state.log).encode()
            return self._send_simple(200, body, {"Content-Type": "application/json"})
        path = self.path.split("?", 1)[0]
        s3 = None
        if state.s3 is not None:
            s3 = sigv4_error(state.s3, self.command, self.path, self.headers) or "ok"
            prefix = "/" + state.s3["bucket"] + "/"
            if s3 == "ok" and not path.startswith(prefix):
                s3 = "NoSuchBucket"
            if s3 != "ok":
                status = S3_ERROR_STATUS[s3]
                self._record(status, None, s3)
                body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                        "<Message>rejected by the test server</Message></Error>" % s3).encode()
                return self._send_simple(status, body, {"Content-Type": "application/xml"})
            path = path[len(prefix) - 1:]
        rule = state.take_rule(path)
        fault = json.dumps(rule, sort_keys=True) if rule else None
        if rule and "delay_s" in rule:
            time.sleep(rule["delay_s"])
        if rule and rule.get("drop"):
            self._record(0, fault, s3)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if rule and "status" in rule:
            headers = {}
            if "retry_after" in rule:
                headers["Retry-After"] = str(rule["retry_after"])
            if "location" in rule:
                headers["Location"] = rule["location"]
            self._record(rule["status"], fault, s3)
            return self._send_simple(rule["status"], b"injected fault\n", headers)
        fs_path = os.path.normpath(os.path.join(state.root, path.lstrip("/")))
        if not fs_path.startswith(state.root) or not os.path.isfile(fs_path):
            self._record(404, fault, s3)
            return self._send_simple(404, b"not found\n")
        with open(fs_path, "rb") as f:
            data = f.read()
        if rule and "corrupt" in rule and rule["corrupt"] < len(data):
            i = rule["corrupt"]
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng and not (rule and rule.get("ignore_range")):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m or int(m.group(1)) >= len(data):
                self._record(416, fault, s3)
                return self._send_simple(416, b"", {"Content-Range": "bytes */%d" % len(data)})
            start = int(m.group(1))
            if m.group(2):
                end = min(len(data), int(m.group(2)) + 1)
            status = 206
        self._record(status, fault, s3)
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        body = data[start:end]
        try:
            if rule and "truncate" in rule:
                self.wfile.write(body[:rule["truncate"]])
                self.wfile.flush()
                self.close_connection = True
                return
            if rule and "stall" in rule:
                self.wfile.write(body[:rule["stall"]])
                self.wfile.flush()
                time.sleep(rule.get("stall_s", 30))
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultServer:
    """Context manager: FaultServer(root, faults=[...], s3=None) serving on 127.0.0.1:<free
    port> (s3: see the module docstring)."""

    def __init__(self, root, faults=None, port=0, s3=None):
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.state = _State(root, faults, s3)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set_faults(self, faults):
        self.server.state.set_faults(faults)

    def log(self):
        with self.server.state.lock:
            return list(self.server.state.log)

    def clear_log(self):
        with self.server.state.lock:
            self.server.state.log.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--faults", help="JSON file with a list of rules")
    ap.add_argument("--s3", help="JSON object: serve as an S3 bucket (see above)")
    args = ap.parse_args()
    faults = None
    if args.faults:
        with open(args.faults) as f:
            faults = json.load(f)
    srv = FaultServer(args.root, faults, args.port, json.loads(args.s3) if args.s3 else None)
    print("PORT %d" % srv.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    srv.close()


if __name__ == "__main__":
    main()
