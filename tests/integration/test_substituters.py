#!/usr/bin/env python3
"""The Fetcher against real binary caches (filled by `nix copy`), nginx, squid and injected faults.

Driven through tests/tools/fetch_tool (found as $NLS_FETCH_TOOL, $NLS_BUILD_DIR/tests/fetch_tool or
build*/tests/fetch_tool). Every fetched tree is compared with the original store path (diff -r
without following symlinks, and the NAR hash of the copy, which covers contents, executable bits
and symlink targets). Faults come from tests/lib/fault_server.py; each must give its documented
outcome: the right exit status (0 ok, 3 not found / rejected narinfo, 4 integrity or format
error, 5 transient), nothing left in the output directory on failure, and a log line naming the
store path (or hash), the substituter and the cause."""
import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import nlstest as t  # noqa: E402
from fault_server import FaultServer  # noqa: E402

TAG = "substituters"
WORK = tempfile.mkdtemp(prefix="nls-subst-test-")
atexit.register(shutil.rmtree, WORK, True)


def fetch_tool():
    return t.find_built("tests", "fetch_tool", [os.environ.get("NLS_FETCH_TOOL", "")])


@functools.lru_cache(maxsize=None)
def setup():
    """Closure, keys and caches (built once per run)."""
    c = t.build_closure(TAG)
    sec, pub = t.make_key(os.path.join(WORK, "keys"), "subst-test-1")
    other_sec, other_pub = t.make_key(os.path.join(WORK, "keys"), "other-key-1")
    caches = {}
    for comp in ("zstd", "xz", "none"):
        caches[comp] = t.fill_cache(os.path.join(WORK, "cache-" + comp), c["all"], comp, sec,
                                    listing=True, priority=50)
    caches["unsigned"] = t.fill_cache(os.path.join(WORK, "cache-unsigned"), c["all"], "zstd",
                                      None, listing=False, priority=50)
    caches["other-key"] = t.fill_cache(os.path.join(WORK, "cache-other"), c["all"], "zstd",
                                       other_sec, priority=50)
    # A preferred cache (Priority 10) holding only the hello closure.
    caches["preferred"] = t.fill_cache(os.path.join(WORK, "cache-preferred"), c["hello"], "zstd",
                                       sec, priority=10)
    return {"closure": c, "pub": pub, "other_pub": other_pub, "caches": caches}


def fetch(subs, paths, outdir, keys=None, extra=(), env=None, closure=False, timeout=300):
    s = setup()
    cmd = [fetch_tool()]
    for u in subs:
        cmd += ["--substituter", u]
    for k in (keys if keys is not None else [s["pub"]]):
        cmd += ["--trusted-public-key", k]
    cmd += list(extra)
    if closure:
        cmd.append("--closure")
    cmd += list(paths) + [outdir]
    start = time.monotonic()
    cp = t.run(cmd, check=False, env=env, timeout=timeout)
    cp.elapsed = time.monotonic() - start
    return cp


def same_tree(orig, copy):
    t.run(["diff", "-r", "--no-dereference", orig, copy])
    t.check(t.nar_hash(copy) == t.nar_hash(orig),
            "%s: NAR hash of the fetched tree equals the original's" % os.path.basename(orig))


def fresh(name):
    d = os.path.join(WORK, "out", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    return d


def copy_cache(src, name):
    dst = os.path.join(WORK, name)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def rewrite_narinfo(cache_dir, store_path, fn):
    p = t.narinfo_file(cache_dir, store_path)
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(fn(text))


# ----------------------------------------------------------------------------------------------


def test_closure_over_nginx_each_compression():
    s = setup()
    c = s["closure"]
    for comp in ("zstd", "xz", "none"):
        conn_log = os.path.join(WORK, "connections-%s.log" % comp)
        extra = ('log_format nlsconn "$connection $request_uri";\n'
                 '  access_log %s nlsconn;' % conn_log)
        with t.Nginx(s["caches"][comp], extra_config=extra) as ng:
            out = fresh("nginx-" + comp)
            cp = fetch([ng.url], [c["all"]], out, closure=True, extra=["--stats", "--jobs", "4"])
            t.check(cp.returncode == 0, "%s: closure fetched (exit %d): %s" % (
                comp, cp.returncode, cp.stderr[-2000:]))
            for p in c["closure"]:
                same_tree(p, os.path.join(out, os.path.basename(p)))
            # nginx logs a request after answering it: wait for all of them (info + 2 per path).
            reqs = ng.requests(at_least=1 + 2 * len(c["closure"]))
            t.check(reqs.count("/nix-cache-info") == 1, "%s: nix-cache-info read once" % comp)
            nars = [r for r in reqs if r.startswith("/nar/")]
            t.check(len(nars) == len(c["closure"]), "%s: one NAR request per path" % comp)
            with open(conn_log) as f:
                conns = {line.split()[0] for line in f if line.strip()}
            t.check(len(conns) <= 5, "%s: keep-alive: %d requests over %d connections (jobs 4)"
                    % (comp, len(reqs), len(conns)))
            stats = json.loads(cp.stdout.strip().splitlines()[-1])
            t.check(stats["paths"] == len(c["closure"]) and stats["errors"] == 0,
                    "%s: stats %s" % (comp, stats))


def test_file_url_single_path():
    s = setup()
    c = s["closure"]
    out = fresh("file-single")
    cp = fetch(["file://" + s["caches"]["xz"]], [t.hash_part(c["data"])], out)
    t.check(cp.returncode == 0, "file:// fetch of data by hash part: " + cp.stderr[-2000:])
    t.check(("fetched " + c["data"]) in cp.stdout, "prints the fetched path")
    same_tree(c["data"], out)


def test_https_with_ca_file_and_http2():
    s = setup()
    c = s["closure"]
    with t.Nginx(s["caches"]["zstd"], tls=True, http2=True) as ng:
        out = fresh("https-untrusted")
        cp = fetch([ng.url], [c["hello"]], out)
        t.check(cp.returncode == 5, "TLS verification is on: unknown CA refused (exit %d)"
                % cp.returncode)
        t.check("certificate" in cp.stderr.lower(), "log says why (certificate)")
        t.check(not os.path.exists(out), "nothing written")
        conf = os.path.join(WORK, "tls-nix.conf")
        with open(conf, "w") as f:
            f.write("ssl-cert-file = %s\nsubstituters = %s\ntrusted-public-keys = %s\n"
                    % (ng.ca_file, ng.url, s["pub"]))
        out = fresh("https")
        cp = fetch([], [c["hello"]], out, keys=[], extra=["--nix-conf", conf])
        t.check(cp.returncode == 0, "https with ssl-cert-file from nix.conf: " + cp.stderr[-2000:])
        same_tree(c["hello"], out)
        t.check(any(e["protocol"] == "HTTP/2.0" for e in ng.entries()), "HTTP/2 was used")


def test_preferred_substituter_lacking_paths():
    s = setup()
    c = s["closure"]
    with t.Nginx(s["caches"]["zstd"]) as full, t.Nginx(s["caches"]["preferred"]) as pref:
        out = fresh("priority")
        # The full cache is listed first but has the worse priority (50 > 10).
        cp = fetch([full.url, pref.url], [c["all"]], out, closure=True)
        t.check(cp.returncode == 0, "closure fetched from two caches: " + cp.stderr[-2000:])
        for p in c["closure"]:
            same_tree(p, os.path.join(out, os.path.basename(p)))
        in_pref = set(t.closure_of(c["hello"]))
        missing = [p for p in c["closure"] if p not in in_pref]
        # Logged after answering: wait for a narinfo per path (+ NARs) and for the other NARs.
        pref_reqs = pref.requests(at_least=len(c["closure"]) + len(in_pref))
        pref_nars = [r for r in pref_reqs if r.startswith("/nar/")]
        full_nars = [r for r in full.requests(at_least=2 * len(missing)) if r.startswith("/nar/")]
        t.check(len(pref_nars) == len(in_pref), "the preferred cache served its %d paths"
                % len(in_pref))
        t.check(len(full_nars) == len(c["closure"]) - len(in_pref),
                "the other cache served only the rest")
        for p in missing:
            t.check("/%s.narinfo" % t.hash_part(p) in pref_reqs,
                    "the preferred cache was asked first for " + os.path.basename(p))


def test_signatures():
    s = setup()
    c = s["closure"]
    caches = s["caches"]
    out = fresh("unsigned")
    cp = fetch(["file://" + caches["unsigned"]], [c["hello"]], out)
    t.check(cp.returncode == 3, "unsigned narinfo rejected as absent (exit %d)" % cp.returncode)
    t.check(re.search(r"WARN: ignoring %s from file://\S+: no valid signature" % re.escape(
        c["hello"]), cp.stderr), "warning names path and substituter: " + cp.stderr[-1000:])
    t.check(not os.path.exists(out), "nothing written")
    cp = fetch(["file://" + caches["unsigned"]], [c["hello"]], out, extra=["--no-require-sigs"])
    t.check(cp.returncode == 0, "--no-require-sigs accepts it")
    same_tree(c["hello"], out)

    out = fresh("wrong-key")
    cp = fetch(["file://" + caches["other-key"]], [c["hello"]], out)
    t.check(cp.returncode == 3 and "signed by: other-key-1" in cp.stderr,
            "signature by an untrusted key rejected, log names the key")
    cp = fetch(["file://" + caches["other-key"]], [c["hello"]], out, keys=[s["other_pub"]])
    t.check(cp.returncode == 0, "accepted once that key is trusted")

    bad = copy_cache(caches["zstd"], "cache-badsig")

    def flip_sig(text):
        def repl(m):
            sig = m.group(2)
            ch = "A" if sig[10] != "A" else "B"
            return m.group(1) + sig[:10] + ch + sig[11:]
        return re.sub(r"(Sig: [^:]+:)(\S+)", repl, text)
    rewrite_narinfo(bad, c["hello"], flip_sig)
    out = fresh("bad-sig")
    cp = fetch(["file://" + bad], [c["hello"]], out)
    t.check(cp.returncode == 3 and "no valid signature" in cp.stderr,
            "a corrupted signature is rejected")
    t.check(not os.path.exists(out), "nothing written")


def test_fault_connection_refused():
    s = setup()
    c = s["closure"]
    dead = "http://127.0.0.1:%d" % t.free_port()
    out = fresh("refused")
    cp = fetch([dead], [c["hello"]], out, extra=["--attempts", "2"])
    t.check(cp.returncode == 5, "connection refused is transient (exit %d)" % cp.returncode)
    t.check(dead in cp.stderr and ("Connection refused" in cp.stderr
                                   or "Couldn't connect" in cp.stderr),
            "log names the substituter and the cause")
    with t.Nginx(s["caches"]["zstd"]) as ng:
        cp = fetch([dead + "?priority=1", ng.url], [c["hello"]], out, extra=["--attempts", "2"])
        t.check(cp.returncode == 0, "the next substituter is tried: " + cp.stderr[-1500:])
        same_tree(c["hello"], out)


def test_fault_server_errors_then_success():
    s = setup()
    c = s["closure"]
    faults = [{"path": r"\.narinfo$", "status": 500, "times": 2},
              {"path": "^/nar/", "status": 503, "times": 1}]
    with FaultServer(s["caches"]["xz"], faults) as fs:
        out = fresh("500")
        cp = fetch([fs.url], [c["hello"]], out)
        t.check(cp.returncode == 0, "500/503 then success: " + cp.stderr[-1500:])
        same_tree(c["hello"], out)
        t.check(cp.stderr.count("retrying") == 3, "three retries logged")
        t.check("HTTP 500" in cp.stderr and "HTTP 503" in cp.stderr, "causes logged")


def test_fault_retry_after():
    s = setup()
    c = s["closure"]
    faults = [{"path": r"\.narinfo$", "status": 429, "retry_after": 2, "times": 1}]
    with FaultServer(s["caches"]["zstd"], faults) as fs:
        out = fresh("429")
        cp = fetch([fs.url], [c["hello"]], out)
        t.check(cp.returncode == 0, "429 then success")
        t.check(cp.elapsed >= 2.0, "Retry-After: 2 honoured (%.2f s)" % cp.elapsed)
        t.check(re.search(r"HTTP 429.*retrying in 2\d\d\d ms", cp.stderr), "logged with the delay")


def test_fault_truncated_body_resumes():
    s = setup()
    c = s["closure"]
    nar = t.nar_file(s["caches"]["none"], c["data"])
    size = os.path.getsize(nar)
    faults = [{"path": "^/nar/", "truncate": size // 3, "times": 1}]
    with FaultServer(s["caches"]["none"], faults) as fs:
        out = fresh("truncated")
        cp = fetch([fs.url], [c["data"]], out)
        t.check(cp.returncode == 0, "truncated body then resumed: " + cp.stderr[-1500:])
        same_tree(c["data"], out)
        ranges = [e["range"] for e in fs.log() if e["path"].startswith("/nar/")]
        t.check(ranges == [None, "bytes=%d-" % (size // 3)],
                "second request resumes at the offset reached: %s" % ranges)


def test_fault_stalled_body():
    s = setup()
    c = s["closure"]
    faults = [{"path": "^/nar/", "stall": 20000, "stall_s": 30, "times": 1}]
    with FaultServer(s["caches"]["zstd"], faults) as fs:
        out = fresh("stall")
        cp = fetch([fs.url], [c["data"]], out, extra=["--stalled-timeout", "1"])
        t.check(cp.returncode == 0, "stalled transfer retried: " + cp.stderr[-1500:])
        t.check(cp.elapsed < 15, "the stall was cut short (%.1f s)" % cp.elapsed)
        t.check("stalled" in cp.stderr, "log says the transfer stalled")
        same_tree(c["data"], out)


def test_fault_corrupted_nar():
    s = setup()
    c = s["closure"]
    for comp in ("zstd", "none"):
        faults = [{"path": "^/nar/", "corrupt": 5000}]
        with FaultServer(s["caches"][comp], faults) as fs:
            out = fresh("corrupt-" + comp)
            cp = fetch([fs.url], [c["data"]], out)
            t.check(cp.returncode == 4, "%s: corrupted NAR refused (exit %d)" % (
                comp, cp.returncode))
            t.check(re.search(r"ERROR: fetching %s from %s failed: .*(mismatch|corrupt)" % (
                re.escape(c["data"]), re.escape(fs.url)), cp.stderr),
                "%s: error names path, substituter and cause: %s" % (comp, cp.stderr[-800:]))
            t.check(not os.path.exists(out), "%s: nothing accepted" % comp)


def test_nar_not_matching_narhash():
    s = setup()
    c = s["closure"]
    bad = copy_cache(s["caches"]["zstd"], "cache-badhash")
    other = t.read_narinfo(bad, c["zlib"])["NarHash"]
    expected = t.read_narinfo(bad, c["hello"])["NarHash"]
    rewrite_narinfo(bad, c["hello"],
                    lambda text: re.sub(r"NarHash: \S+", "NarHash: " + other, text))
    out = fresh("badhash")
    cp = fetch(["file://" + bad], [c["hello"]], out, extra=["--no-require-sigs"])
    t.check(cp.returncode == 4, "NarHash mismatch refused (exit %d)" % cp.returncode)
    t.check("NarHash mismatch" in cp.stderr and other in cp.stderr and expected in cp.stderr,
            "both hashes in the error")
    t.check(c["hello"] in cp.stderr and "file://" + bad in cp.stderr,
            "path and substituter in the error")
    t.check(not os.path.exists(out), "nothing accepted")
    cp = fetch(["file://" + bad], [c["hello"]], out)
    t.check(cp.returncode == 3, "with signatures required the tampered narinfo is not even used")


def test_narinfo_for_another_hash():
    s = setup()
    c = s["closure"]
    bad = copy_cache(s["caches"]["zstd"], "cache-otherhash")
    shutil.copy(t.narinfo_file(bad, c["zlib"]), t.narinfo_file(bad, c["hello"]))
    out = fresh("otherhash")
    cp = fetch(["file://" + bad], [c["hello"]], out)
    t.check(cp.returncode == 3, "narinfo for another hash treated as absent (exit %d)"
            % cp.returncode)
    t.check(re.search(r"ignoring store path hash %s from file://\S+: invalid narinfo" %
                      t.hash_part(c["hello"]), cp.stderr), "log names hash and cause")


def test_missing_nix_cache_info_over_http():
    s = setup()
    c = s["closure"]
    faults = [{"path": "^/nix-cache-info$", "status": 404}]
    with FaultServer(s["caches"]["zstd"], faults) as fs:
        cp = fetch([fs.url], [c["hello"]], fresh("nocacheinfo"))
        t.check(cp.returncode == 3, "not a binary cache: nothing found")
        t.check("disabled: not a binary cache" in cp.stderr, "logged")
        t.check(not any(e["path"].endswith(".narinfo") for e in fs.log()),
                "no narinfo asked from a disabled substituter")


def _squid(port, d):
    os.chmod(d, 0o777)
    conf = os.path.join(d, "squid.conf")
    with open(conf, "w") as f:
        f.write("""http_port 127.0.0.1:%d
visible_hostname nls-test
acl loop src 127.0.0.0/8
http_access allow loop
http_access deny all
cache deny all
cache_mem 0 MB
access_log stdio:%s/access.log
cache_log %s/cache.log
pid_filename %s/squid.pid
coredump_dir %s
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
""" % (port, d, d, d, d))
    proc = subprocess.Popen(["squid", "-N", "-f", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "w"))
    deadline = time.monotonic() + 30
    import socket
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    log = ""
    for n in ("stderr", "cache.log"):
        p = os.path.join(d, n)
        if os.path.exists(p):
            log += open(p, errors="replace").read()
    raise RuntimeError("squid did not start:\n" + log)


def test_http_proxy_through_squid():
    s = setup()
    c = s["closure"]
    # squid drops to user "proxy": its directory must be reachable (WORK is 0700).
    d = tempfile.mkdtemp(prefix="nls-squid-")
    atexit.register(shutil.rmtree, d, True)
    port = t.free_port()
    proc = _squid(port, d)
    try:
        with t.Nginx(s["caches"]["zstd"]) as ng:
            env = dict(os.environ, http_proxy="http://127.0.0.1:%d" % port)
            env.pop("no_proxy", None)
            env.pop("NO_PROXY", None)
            out = fresh("proxy")
            cp = fetch([ng.url], [c["hello"]], out, env=env)
            t.check(cp.returncode == 0, "fetched through squid: " + cp.stderr[-1500:])
            same_tree(c["hello"], out)
            time.sleep(1)  # squid writes its access log lazily
            log = open(os.path.join(d, "access.log")).read()
            t.check("%s/nix-cache-info" % ng.url in log and ".narinfo" in log and "/nar/" in log,
                    "squid's access log shows the requests")
            before = len(log.splitlines())
            env["no_proxy"] = "127.0.0.1"
            out = fresh("noproxy")
            cp = fetch([ng.url], [c["hello"]], out, env=env)
            t.check(cp.returncode == 0, "fetched with no_proxy")
            time.sleep(1)
            after = len(open(os.path.join(d, "access.log")).read().splitlines())
            t.check(after == before, "no_proxy bypasses squid")
        with t.Nginx(s["caches"]["zstd"], tls=True) as ng:
            env = dict(os.environ, https_proxy="http://127.0.0.1:%d" % port)
            env.pop("no_proxy", None)
            env.pop("NO_PROXY", None)
            conf = os.path.join(WORK, "proxy-tls-nix.conf")
            with open(conf, "w") as f:
                f.write("ssl-cert-file = %s\n" % ng.ca_file)
            out = fresh("proxy-tls")
            cp = fetch([ng.url], [c["hello"]], out, env=env, extra=["--nix-conf", conf])
            t.check(cp.returncode == 0, "https fetched through squid (CONNECT): "
                    + cp.stderr[-1500:])
            same_tree(c["hello"], out)
            time.sleep(1)
            log = open(os.path.join(d, "access.log")).read()
            t.check("CONNECT 127.0.0.1:%d" % ng.port in log, "squid saw the CONNECT")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    t.require_root()
    t.run_tests()
