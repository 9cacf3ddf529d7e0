#!/usr/bin/env python3
"""A small HTTP/1.1 server for tests: serves a binary cache directory, with injectable faults.

Python stdlib only. Keep-alive, GET/HEAD, single "Range: bytes=N-" / "bytes=N-M" requests (206).

Faults are rules, tried in order; the first whose "path" (a regex searched in the request path)
matches and whose "times" budget is not used up applies (times: how many matching requests get
the fault; omitted or -1 = always). Actions (one per rule):
  {"status": 500}                          answer with that status (and "retry_after": S header)
  {"truncate": N}                          send the full Content-Length header but only N body
                                           bytes (from the requested offset), then close
  {"stall": N, "stall_s": S}               send N body bytes, then stall S seconds, then close
  {"corrupt": OFFSET}                      flip the byte at file offset OFFSET
  {"ignore_range": true}                   answer 200 with the whole file to Range requests
  {"drop": true}                           close the connection without any response
  {"delay_s": S}                           wait S seconds, then serve normally
Control: PUT /_faults with a JSON list replaces the rules; GET /_log returns the request log as
JSON [{"method","path","range","status","fault"}]; DELETE /_log clears it.

Run: fault_server.py --root DIR [--port 0] [--faults FILE.json]; prints "PORT <n>" when ready.
As a module: FaultServer(root, faults) context manager with .url, .set_faults(), .log().
"""
import argparse
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.request


class _State:
    def __init__(self, root, faults):
        self.root = os.path.abspath(root)
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

    def _record(self, status, fault=None):
        with self.server.state.lock:
            self.server.state.log.append({
                "method": self.command, "path": self.path,
                "range": self.headers.get("Range"), "status": status,
                "fault": fault})

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
        rule = state.take_rule(path)
        fault = json.dumps(rule, sort_keys=True) if rule else None
        if rule and "delay_s" in rule:
            time.sleep(rule["delay_s"])
        if rule and rule.get("drop"):
            self._record(0, fault)
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
            self._record(rule["status"], fault)
            return self._send_simple(rule["status"], b"injected fault\n", headers)
        fs_path = os.path.normpath(os.path.join(state.root, path.lstrip("/")))
        if not fs_path.startswith(state.root) or not os.path.isfile(fs_path):
            self._record(404, fault)
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
                self._record(416, fault)
                return self._send_simple(416, b"", {"Content-Range": "bytes */%d" % len(data)})
            start = int(m.group(1))
            if m.group(2):
                end = min(len(data), int(m.group(2)) + 1)
            status = 206
        self._record(status, fault)
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
    """Context manager: FaultServer(root, faults=[...]) serving on 127.0.0.1:<free port>."""

    def __init__(self, root, faults=None, port=0):
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.state = _State(root, faults)
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
    args = ap.parse_args()
    faults = None
    if args.faults:
        with open(args.faults) as f:
            faults = json.load(f)
    srv = FaultServer(args.root, faults, args.port)
    print("PORT %d" % srv.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    srv.close()


if __name__ == "__main__":
    main()
