#!/usr/bin/env python3
"""Self-test of the shared fixtures in tests/lib/nlstest.py (run by ctest, label integration).

Checks that the fixtures are what the other integration tests, the demo and the benchmarks rely
on: real closures with real references that run from the host store, signed zstd caches whose NARs
match `nix-store --dump`, nginx serving and logging requests (HTTP/1.1, HTTP/2, TLS), mount
namespaces that really isolate /nix/store, and LazyStore mounting nix-lazy-store."""
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import nlstest as t  # noqa: E402

TAG = "fixtures-selftest"


def test_closure_builds_with_real_references():
    c = t.build_closure(TAG)
    for k in ("glibc", "zlib", "greet", "hello", "dash", "data", "tool", "all"):
        t.check(c[k].startswith("/nix/store/") and c[k].endswith("-" + k)
                and os.path.isdir(c[k]), "%s is a built store path: %s" % (k, c[k]))
    expect = {"glibc": [], "zlib": ["glibc"], "greet": ["glibc"],
              "hello": ["glibc", "greet", "zlib"], "dash": ["glibc"], "data": ["hello"],
              "tool": ["dash", "data", "hello"]}
    for k, refs in expect.items():
        got = t.references_of(c[k])
        t.check(got == sorted(c[r] for r in refs),
                "Nix found the references of %s by scanning: %s" % (k, [os.path.basename(g)
                                                                         for g in got]))
    t.check(c["closure"] == sorted(c[k] for k in expect.keys() | {"all"}),
            "closure lists all 8 paths")
    other = t.build_closure(TAG + "-other")
    t.check(not set(other["closure"]) & set(c["closure"]), "another tag gives disjoint paths")


def test_build_is_idempotent():
    c1 = t.build_closure(TAG)
    t._build_closure.cache_clear()
    cp = t.run(["nix-build", "--no-out-link", os.path.join(t.NIX_DIR, "closure.nix"),
                "--argstr", "tag", TAG, "-A", "all"])
    t.check(cp.stdout.strip() == c1["all"], "same expression gives the same path")
    t.check("building" not in cp.stderr, "nix did not rebuild valid paths")


def test_programs_run_from_host_store():
    c = t.build_closure(TAG)
    env = dict(os.environ, LD_DEBUG="libs")
    cp = t.run([c["hello"] + "/bin/hello"], env=env)
    t.check(cp.stdout.startswith("Hello from nix-lazy-store! greetings from libgreet; zlib "),
            "hello prints its greeting: " + cp.stdout.strip())
    for lib in (c["glibc"] + "/lib/libc.so.6", c["glibc"] + "/lib/libm.so.6",
                c["zlib"] + "/lib/libz.so.1", c["greet"] + "/lib/libgreet.so"):
        t.check("calling init: " + lib in cp.stderr, "hello loads " + lib)
    t.check("/lib/x86_64-linux-gnu/" not in cp.stderr, "hello loads nothing from the host's /lib")
    blob = c["data"] + "/share/blob.bin"
    out = t.run([c["hello"] + "/bin/hello", blob]).stdout.split()
    t.check(out[0] == str(os.path.getsize(blob)) and len(out[1]) == 8,
            "hello FILE prints size and crc32")
    cp = t.run([c["tool"] + "/bin/nls-tool"])
    with open(c["tool"] + "/bin/nls-tool") as f:
        t.check(f.readline().strip() == "#!%s/bin/sh" % c["dash"], "nls-tool runs under dash")
    t.check("config: name = nls-data-%s" % TAG in cp.stdout and blob in cp.stdout,
            "nls-tool reads data and runs hello")
    d = c["data"]
    t.check(os.readlink(d + "/bin/hello") == c["hello"] + "/bin/hello", "data links into hello")
    t.check(os.path.islink(d + "/dangling") and not os.path.exists(d + "/dangling"),
            "data has a dangling symlink")
    t.check(len(os.listdir(d + "/wide")) == 300 and os.listdir(d + "/empty-dir") == [],
            "data has a wide and an empty directory")
    t.check(os.access(d + "/bin/run-me", os.X_OK) and os.path.getsize(d + "/share/empty") == 0,
            "data has executable and empty files")


def test_closure_alone_is_enough():
    """Inside a namespace whose /nix/store holds only the closure, the programs still run."""
    c = t.build_closure(TAG)
    with t.tmpdir() as stage, t.MountNamespace() as ns:
        t.run(["cp", "-a"] + c["closure"] + [stage])
        ns.run(["mount", "-t", "tmpfs", "nls-fixture", "/nix/store"])
        ns.run(["sh", "-c", 'cp -a "$0"/* /nix/store/', stage])
        listed = ns.run(["ls", "/nix/store"]).stdout.split()
        t.check(sorted("/nix/store/" + x for x in listed) == c["closure"],
                "namespace /nix/store holds exactly the closure")
        host = t.run([c["tool"] + "/bin/nls-tool"]).stdout
        inside = ns.run([c["tool"] + "/bin/nls-tool"]).stdout
        t.check(inside == host, "nls-tool gives the same output from the closure alone")


def test_cache_filled_and_signed():
    c = t.build_closure(TAG)
    with t.tmpdir() as d:
        sec, pub = t.make_key(d, "fixture-key-1")
        t.check(pub.startswith("fixture-key-1:") and len(pub) == len("fixture-key-1:") + 44,
                "make_key gives a public key string " + pub)
        cache = t.fill_cache(os.path.join(d, "cache"), [c["tool"], c["all"]], secret_key=sec,
                             priority=7)
        with open(os.path.join(cache, "nix-cache-info")) as f:
            info = f.read().splitlines()
        t.check("StoreDir: /nix/store" in info and "Priority: 7" in info,
                "nix-cache-info has StoreDir and the Priority we set: %s" % info)
        for p in c["closure"]:
            ni = t.read_narinfo(cache, p)
            t.check(ni["StorePath"] == p and ni["Compression"] == "zstd", "narinfo of " + p)
            t.check(len(ni["Sig"]) == 1 and ni["Sig"][0].startswith("fixture-key-1:"),
                    "narinfo is signed by our key")
            t.check(ni["NarHash"] == t.nar_hash(p), "NarHash equals nix-hash of the path")
            t.check(os.path.exists(os.path.join(cache, t.hash_part(p) + ".ls")),
                    "listing written")
            nar = subprocess.run(["zstd", "-dc", t.nar_file(cache, p)], check=True,
                                 stdout=subprocess.PIPE).stdout
            t.check(nar == t.nar_dump(p) and len(nar) == int(ni["NarSize"]),
                    "decompressed NAR equals nix-store --dump")
        # The signature really verifies with Nix's own checker.
        cp = t.run(["nix", "--extra-experimental-features", "nix-command", "store", "verify",
                    "--store", "file://" + cache, "--trusted-public-keys", pub, c["hello"]],
                   check=False)
        t.check(cp.returncode == 0, "nix store verify accepts the signature: " + cp.stderr)
        cp = t.run(["nix", "--extra-experimental-features", "nix-command", "store", "verify",
                    "--store", "file://" + cache, "--trusted-public-keys",
                    "other:" + pub.split(":")[1][::-1], c["hello"]], check=False)
        t.check(cp.returncode != 0, "nix store verify rejects it with another key")
        unsigned = t.fill_cache(os.path.join(d, "plain"), c["hello"], compression="xz",
                                listing=False)
        ni = t.read_narinfo(unsigned, c["hello"])
        t.check(ni["Sig"] == [] and ni["Compression"] == "xz" and ni["URL"].endswith(".nar.xz"),
                "unsigned xz cache without listing")
        t.check(not os.path.exists(os.path.join(unsigned, t.hash_part(c["hello"]) + ".ls")),
                "no listing when listing=False")


def _get(url, **kw):
    try:
        with urllib.request.urlopen(url, timeout=10, **kw) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_nginx_serves_and_counts():
    c = t.build_closure(TAG)
    with t.tmpdir() as d:
        cache = t.fill_cache(os.path.join(d, "cache"), c["hello"])
        hp = t.hash_part(c["hello"])
        with t.Nginx(cache) as n:
            t.check(n.url == "http://127.0.0.1:%d" % n.port, "url " + n.url)
            status, body = _get(n.url + "/%s.narinfo" % hp)
            t.check(status == 200 and body.decode().startswith("StorePath: " + c["hello"]),
                    "nginx serves the narinfo")
            ni = t.read_narinfo(cache, c["hello"])
            status, body = _get(n.url + "/" + ni["URL"])
            t.check(status == 200 and len(body) == int(ni["FileSize"]), "nginx serves the NAR")
            status, _ = _get(n.url + "/%s.narinfo" % ("0" * 32))
            t.check(status == 404, "missing narinfo gives 404")
            req = urllib.request.Request(n.url + "/nix-cache-info", data=b"x", method="POST")
            status, _ = _get(req)
            t.check(status == 403, "POST is refused (read-only)")
            logged = n.requests(at_least=4)
            t.check(logged == ["/%s.narinfo" % hp, "/" + ni["URL"],
                               "/%s.narinfo" % ("0" * 32), "/nix-cache-info"],
                    "requests() lists the requests in order: %s" % logged)
            e = n.entries()
            t.check([x["status"] for x in e] == [200, 200, 404, 403], "statuses logged")
            n.clear_log()
            t.check(n.requests() == [], "clear_log empties the log")
        t.check(n.proc is None, "nginx stopped")
        with t.Nginx(cache, tls=True, http2=True, server_config="limit_rate 1m;") as n:
            t.check(n.url.startswith("https://127.0.0.1:"), "TLS url " + n.url)
            ctx = ssl.create_default_context(cafile=n.ca_file)
            status, _ = _get(n.url + "/nix-cache-info", context=ctx)
            t.check(status == 200, "HTTPS works with the CA file")
            try:
                _get(n.url + "/nix-cache-info", context=ssl.create_default_context())
                ok = False
            except urllib.error.URLError as e:
                ok = "CERTIFICATE_VERIFY_FAILED" in str(e)
            t.check(ok, "HTTPS without the CA file fails verification")
            cp = t.run(["curl", "-sS", "--http2", "--cacert", n.ca_file, "-o", "/dev/null",
                        "-w", "%{http_version}", n.url + "/nix-cache-info"])
            t.check(cp.stdout == "2", "HTTP/2 over TLS (curl says %s)" % cp.stdout)


def test_mount_namespace_isolates():
    with t.MountNamespace() as ns:
        # The host's /nix/store is the same directory afterwards (other tests running at the
        # same time may add or delete store paths in it, so its listing is not compared).
        before = os.stat("/nix/store")
        ns.run(["mount", "-t", "tmpfs", "nls-isolation", "/nix/store"])
        ns.run(["touch", "/nix/store/only-inside"])
        t.check(ns.is_mounted("/nix/store", "tmpfs"), "tmpfs at /nix/store inside")
        t.check(ns.run(["ls", "/nix/store"]).stdout.split() == ["only-inside"],
                "inside sees only the tmpfs")
        host_mounts = open("/proc/self/mounts").read()
        t.check("nls-isolation" not in host_mounts, "host does not see the tmpfs mount")
        after = os.stat("/nix/store")
        t.check((after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
                and not os.path.exists("/nix/store/only-inside"),
                "host /nix/store unchanged")
        sleeper = ns.popen(["sleep", "1000"])
        helper = ns.popen(["sh", "-c", "sleep 1000 & wait"])
        pid = ns.pid
    t.check(sleeper.poll() is not None and helper.poll() is not None,
            "processes started in the namespace are gone after close")
    t.check(not os.path.exists("/proc/%d" % pid), "holder is gone")
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and t._ns_id(p) == ns.ns]
    t.check(leftovers == [], "no process left in the namespace")


def test_delete_from_local_store():
    c = t.build_closure(TAG + "-delete")
    deleted = t.delete_from_local_store([c["data"], c["tool"], c["all"]])
    t.check(sorted(deleted) == sorted([c["data"], c["tool"], c["all"]]),
            "data, tool, all deleted (referrers first)")
    t.check(not os.path.exists(c["data"]) and os.path.exists(c["hello"]), "hello kept")
    deleted = t.delete_from_local_store([c["glibc"]])
    t.check(deleted == [] and os.path.exists(c["glibc"]), "glibc is alive (referenced): skipped")
    again = t.build_closure(TAG + "-delete")
    t.check(again == c and os.path.exists(c["data"]), "build_closure rebuilds deleted paths")


def test_big_closure_small_variant():
    b = t.build_big_closure(TAG + "-big", total_mb=12, parts=2)
    t.check(len([k for k in b if k.startswith("part-")]) == 2, "two parts")
    size = int(t.run(["du", "-sb"] + [b["part-0"], b["part-1"]]).stdout.split()[0])
    t.check(5 * 2**20 < size < 9 * 2**20, "part-0 is about 6 MiB (%d bytes)" % size)
    out = t.run([b["program"], b["small_file"]]).stdout
    t.check(b["small_file"] in out, "program reads the small file: " + out.strip())
    t.check(set(t.closure_of(b["hello"])) < set(b["closure"]), "hello closure inside")


def test_lazy_store_fixture():
    """LazyStore mounts the real binary at /nix/store in a namespace and runs hello through it."""
    binary = t.find_binary()
    c = t.build_closure(TAG)
    with t.tmpdir() as d:
        sec, pub = t.make_key(d)
        cache = t.fill_cache(os.path.join(d, "cache"), c["all"], secret_key=sec)
        host_out = t.run([c["hello"] + "/bin/hello"]).stdout
        with t.Nginx(cache) as n, t.MountNamespace() as ns:
            with t.LazyStore(ns, binary, substituters=[n.url], trusted_keys=[pub],
                             cache_dir=os.path.join(d, "lazy-cache"),
                             extra_args=["--nix-conf", "/dev/null"]) as store:
                t.check(ns.is_mounted("/nix/store", "fuse"), "fuse mount at /nix/store inside")
                t.check("fuse" not in [m[2][:4] for m in _host_mounts() if m[1] == "/nix/store"],
                        "no fuse mount at the host's /nix/store")
                out = ns.run([c["hello"] + "/bin/hello"]).stdout
                t.check(out == host_out, "hello runs from the lazy store: " + out.strip())
                got = n.requests(at_least=8)  # a narinfo and a NAR for each of the four
                for p in (c["hello"], c["glibc"], c["zlib"], c["greet"]):
                    t.check("/%s.narinfo" % t.hash_part(p) in got, "fetched narinfo of " + p)
                rc = store.stop()
                t.check(rc == 0, "daemon exits 0 on SIGTERM (log:\n%s)" % store.log())
            t.check(not ns.is_mounted("/nix/store", "fuse"), "unmounted after stop")


def _host_mounts():
    with open("/proc/self/mounts") as f:
        return [line.split() for line in f]


if __name__ == "__main__":
    t.require_root()
    if not shutil.which("nix-build"):
        sys.exit("FAIL: nix-build missing (run packaging/install-deps.sh)")
    t.run_tests()
