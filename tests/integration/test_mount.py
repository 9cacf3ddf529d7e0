"""End-to-end tests of `nix-lazy-store mount` at /nix/store inside private mount namespaces:
programs run from the lazy store, NAR hashes and metadata match the host store, late pushes
appear, tampered and unsigned caches expose nothing, nix.conf configures a mount, and the
figures are readable through status, xattrs and Prometheus metrics."""

import errno
import os
import shutil
import subprocess
import time
import urllib.request

import nlstest
from nlstest import check

import mountlib

CLOSURE = None
KEYS = None


def setup_module():
    global CLOSURE
    nlstest.require_root()
    CLOSURE = nlstest.build_closure("mount")


def test_program_runs_and_contents_match():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, CLOSURE["closure"])
        expected_hello = nlstest.run([c["hello"] + "/bin/hello"]).stdout
        expected_tool = nlstest.run([c["tool"] + "/bin/nls-tool"], check=False)
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub]) as ls:
            cp = ns.run([c["hello"] + "/bin/hello"])
            check(cp.stdout == expected_hello,
                  "hello runs from the lazy store (interpreter + libraries found) and prints "
                  "the same as on the host")
            cp = ns.run([c["tool"] + "/bin/nls-tool"], check=False)
            check((cp.returncode, cp.stdout) == (expected_tool.returncode, expected_tool.stdout),
                  "the #! script tool runs through dash from the lazy store, same output")
            for p in c["closure"]:
                info = nlstest.read_narinfo(cache, p)
                got = mountlib.nar_sha256_ns(ns, p)
                check(got == info["NarHash"],
                      "nix-store --dump of mounted %s hashes to its NarHash" % os.path.basename(p))
            host = mountlib.walk_host(c["closure"])
            mounted = mountlib.walk_ns(ns, c["closure"])
            diffs = mountlib.compare_walks(host, mounted)
            check(not diffs, "lstat/readdir/readlink/contents of %d entries match the host store"
                  " (%s)" % (len(host), "; ".join(diffs[:5])))
            # Root listing shows the cached paths.
            listing = ns.run(["ls", "/nix/store"]).stdout.split()
            check(set(os.path.basename(p) for p in c["closure"]) <= set(listing),
                  "readdir of the mount root lists the cached paths")
            # Names that are not store paths fail at once, without the network.
            for bad in ["foo", "0" * 32, ".links", "x" * 32 + "-y"]:
                check(mountlib.stat_errno_ns(ns, "/nix/store/" + bad) == errno.ENOENT,
                      "lookup of %r in the root is ENOENT" % bad)
            wrong = "/nix/store/%s-not-its-name" % nlstest.hash_part(c["hello"])
            check(mountlib.stat_errno_ns(ns, wrong) == errno.ENOENT,
                  "a known hash with another name is ENOENT")
            cp = ns.run(["sh", "-c", "echo x > %s/new" % c["data"]], check=False)
            check(cp.returncode != 0, "the mount is read-only")
            check(ls.stop() == 0, "SIGTERM unmounts cleanly with exit status 0")
            check(not ns.is_mounted("/nix/store"), "nothing is mounted after SIGTERM")


def test_late_push_appears_within_negative_ttl():
    setup_module()
    with nlstest.tmpdir() as d:
        cache, sec, pub = nlstest.signed_cache(d, [CLOSURE["hello"]])
        late = mountlib.build_unique_path("%d-%d" % (os.getpid(), time.time_ns()))
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub], extra_args=["--negative-ttl", "2"]):
            check(mountlib.stat_errno_ns(ns, late) == errno.ENOENT,
                  "a path not yet pushed is ENOENT")
            nlstest.fill_cache(cache, [late], secret_key=sec)
            t0 = time.monotonic()
            ok = mountlib.wait_until(lambda: mountlib.stat_errno_ns(ns, late) == 0, 6, 0.1)
            took = time.monotonic() - t0
            check(ok and took <= 2 + 1.5,
                  "after nix copy the same lookup succeeds within the negative TTL (%.2f s)" % took)
            cp = ns.run(["cat", late])
            with open(late) as f:
                check(cp.stdout == f.read(), "the late path's contents match")


def test_root_listing_follows_fetches():
    """Directory opens do not reach the daemon, so the kernel keeps the root's listing too:
    every fetch must reach it (through the root's mtime)."""
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, sec, pub = nlstest.signed_cache(d, c["closure"])
        # Enough paths that listing the root takes several READDIRPLUS requests (offsets).
        many = mountlib.build_unique_paths("list-%d-%d" % (os.getpid(), time.time_ns()), 250)
        nlstest.fill_cache(cache, many, secret_key=sec)
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub], extra_args=["--no-prefetch-references"]):
            def listing():
                return set(ns.run(["ls", "-a", "/nix/store"]).stdout.split()) - {".", ".."}

            def mtime_ns():
                return int(ns.run(["python3", "-c", "import os\n"
                                   "print(os.stat('/nix/store').st_mtime_ns)"]).stdout)

            check(listing() == set(), "the root of an empty cache lists nothing")
            seen, mtime = set(), mtime_ns()
            for p in [c["data"], c["hello"], c["glibc"]]:
                check(mountlib.stat_errno_ns(ns, p) == 0, "%s is served" % os.path.basename(p))
                seen.add(os.path.basename(p))
                got = listing()
                check(got == seen, "then the root lists exactly the cached paths (%s)"
                      % sorted(got))
                now = mtime_ns()
                check(now > mtime, "and the root's mtime moved on (%d > %d)" % (now, mtime))
                mtime = now
            ns.run(["stat"] + many)
            seen |= set(os.path.basename(p) for p in many)
            got = listing()
            check(got == seen, "after %d more lookups the root lists all %d paths (%d listed)"
                  % (len(many), len(seen), len(got)))
            walked = mountlib.walk_ns(ns, [c["data"], c["hello"], c["glibc"]])
            check(len(walked) > 3, "a walk of the three paths opens their directories (%d "
                  "entries)" % len(walked))
            x = mountlib.xattrs_ns(ns)
            check(int(x["user.nix-lazy-store.opendir_requests"]) <= 1,
                  "directory opens do not reach the daemon (%s OPENDIR requests)"
                  % x["user.nix-lazy-store.opendir_requests"])
        # The tiny paths are not kept in the host's store (one call: nothing refers to them).
        nlstest.run(["nix-store", "--delete"] + many, check=False)


def test_tampered_nar_is_eio_and_not_cached():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, CLOSURE["closure"])
        nar = nlstest.nar_file(cache, c["data"])
        good = nar + ".good"
        shutil.copyfile(nar, good)
        # Decompress, flip one byte of file contents, recompress: the NAR parses but its hash
        # is wrong (and so is the FileHash).
        raw = subprocess.run(["zstd", "-dc", nar], check=True, stdout=subprocess.PIPE).stdout
        pos = raw.find(b"Hello")
        if pos < 0:
            pos = len(raw) // 2
        bad = raw[:pos] + bytes([raw[pos] ^ 0x20]) + raw[pos + 1:]
        subprocess.run(["zstd", "-q", "-f", "-o", nar], input=bad, check=True)
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub]) as ls:
            check(mountlib.stat_errno_ns(ns, c["data"]) == errno.EIO,
                  "a NAR whose hash does not match gives EIO")
            check(os.path.basename(c["data"]) in ls.log() and "file://" + cache in ls.log(),
                  "the log line names the path and the substituter")
            listing = ns.run(["ls", "/nix/store"]).stdout.split()
            check(os.path.basename(c["data"]) not in listing, "the tampered path is not cached")
            x = mountlib.xattrs_ns(ns)
            check(int(x["user.nix-lazy-store.errors"]) > 0, "the error is counted")
            shutil.copyfile(good, nar)
            check(mountlib.stat_errno_ns(ns, c["data"]) == 0,
                  "once the binary cache is repaired the path is served (errors not remembered)")
            check(mountlib.nar_sha256_ns(ns, c["data"]) ==
                  nlstest.read_narinfo(cache, c["data"])["NarHash"], "and its NAR hash is right")


def test_unsigned_cache_exposes_nothing_without_no_require_sigs():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache = nlstest.fill_cache(os.path.join(d, "unsigned"), [c["hello"]])
        _, other_pub = nlstest.make_key(os.path.join(d, "other"), name="other-key-1")
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache1"),
                trusted_keys=[other_pub]) as ls:
            for p in [c["hello"], c["glibc"]]:
                check(mountlib.stat_errno_ns(ns, p) == errno.ENOENT,
                      "unsigned %s is ENOENT when signatures are required" % os.path.basename(p))
            check(ns.run(["ls", "/nix/store"]).stdout.split() == [], "nothing is cached")
            ls.stop()
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache2"),
                extra_args=["--no-require-sigs"]):
            cp = ns.run([c["hello"] + "/bin/hello"])
            check("Hello" in cp.stdout, "with --no-require-sigs the unsigned closure runs")


def test_nix_conf_alone_configures_a_mount():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, [c["hello"]])
        conf = os.path.join(d, "nix.conf")
        with open(conf, "w") as f:
            f.write("# test configuration\nsubstituters = file://%s\n"
                    "trusted-public-keys = %s\nrequire-sigs = true\n" % (cache, pub))
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, cache_dir=os.path.join(d, "cache"), extra_args=["--nix-conf", conf]) as ls:
            cp = ns.run([c["hello"] + "/bin/hello"])
            check("Hello" in cp.stdout, "a mount configured only by --nix-conf serves paths")
            check(conf in ls.log(), "the log names the nix.conf used")


def daemon_rchar(store):
    """Bytes the daemon has read with read-type system calls (/proc/PID/io)."""
    with open("/proc/%d/io" % store.proc.pid) as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_status_xattrs_and_metrics():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, CLOSURE["closure"])
        port = nlstest.free_port()
        binary = nlstest.find_binary()
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub], extra_args=["--metrics-listen", "127.0.0.1:%d" % port]) as ls:
            ns.run([c["hello"] + "/bin/hello"])
            ns.run(["cat", c["data"] + "/share/words.txt"])
            blob = c["data"] + "/share/blob.bin"  # > 3 MiB, written by this daemon: spliced
            size = int(ns.run(["stat", "-c", "%s", blob]).stdout)
            # Background prefetches (file:// reads) would count in the daemon's rchar below.
            mountlib.wait_until(lambda: mountlib.xattrs_ns(ns)[
                "user.nix-lazy-store.fetches_in_flight"] == "0", 10)
            before = mountlib.xattrs_ns(ns)
            rchar_before = daemon_rchar(ls)
            ns.run(["sh", "-c", "cat %s > /dev/null" % blob])
            rchar = daemon_rchar(ls) - rchar_before
            missing = "/nix/store/" + "1" * 32 + "-absent"
            mountlib.stat_errno_ns(ns, missing)
            # Let background prefetches settle.
            mountlib.wait_until(lambda: mountlib.xattrs_ns(ns)[
                "user.nix-lazy-store.fetches_in_flight"] == "0", 10)
            x = mountlib.xattrs_ns(ns)
            names = [n[len("user.nix-lazy-store."):] for n in x]
            for want in ["paths_cached", "bytes_cached", "hits", "misses", "downloads_in_flight",
                         "bytes_fetched", "evictions", "errors"]:
                check(want in names, "xattr user.nix-lazy-store.%s is listed" % want)
            cached = len(ns.run(["ls", "/nix/store"]).stdout.split())
            check(int(x["user.nix-lazy-store.paths_cached"]) == cached >= 5,
                  "paths_cached (%s) equals the root listing (%d)" % (
                      x["user.nix-lazy-store.paths_cached"], cached))
            check(int(x["user.nix-lazy-store.bytes_fetched"]) > 0, "bytes_fetched > 0")
            spliced = int(x["user.nix-lazy-store.read_bytes_spliced"]) - int(
                before["user.nix-lazy-store.read_bytes_spliced"])
            read = int(x["user.nix-lazy-store.read_bytes"]) - int(
                before["user.nix-lazy-store.read_bytes"])
            # (a last piece under two pages is copied, not spliced)
            check(size - 8192 <= spliced <= read,
                  "reading the %d-byte blob was spliced from chunk files (%d of %d bytes read)"
                  % (size, spliced, read))
            # libfuse copies what it cannot splice (pread into a buffer): the daemon's own reads
            # (rchar) show it. A pipe too small for 1 MiB replies once made most reads copies.
            check(rchar < size // 8,
                  "libfuse spliced those replies: the daemon read %d bytes itself for a %d-byte "
                  "file" % (rchar, size))
            check(int(x["user.nix-lazy-store.not_found"]) >= 1, "the absent path is counted")
            cp = ns.run([binary, "status", "/nix/store"])
            check("paths_cached: %d" % cached in cp.stdout, "`status` shows paths_cached")
            cp = ns.run([binary, "status", "--json", "/nix/store"])
            check('"paths_cached": %d' % cached in cp.stdout, "`status --json` too")
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read()
            text = body.decode()
            check("nix_lazy_store_paths_cached %d" % cached in text,
                  "Prometheus metrics show the same paths_cached")
            check("# TYPE nix_lazy_store_hits_total counter" in text, "counters are typed")
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/other" % port, timeout=5)
                check(False, "other URLs are 404")
            except urllib.error.HTTPError as e:
                check(e.code == 404, "other URLs are 404")
            cp = nlstest.run([binary, "status", d], check=False)
            check(cp.returncode == 1 and "not a nix-lazy-store mount" in cp.stderr,
                  "status of a plain directory fails clearly")


def test_detached_mount_and_errors():
    setup_module()
    c = CLOSURE
    binary = nlstest.find_binary()
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, [c["hello"]])
        with nlstest.MountNamespace() as ns:
            cp = ns.run([binary, "mount", "--substituter", "file://" + cache,
                         "--trusted-public-key", pub, "--cache-dir", os.path.join(d, "cache"),
                         "--log-file", os.path.join(d, "daemon.log"), "/nix/store"],
                        timeout=30)
            check(cp.returncode == 0 and ns.is_mounted("/nix/store", "fuse"),
                  "without --foreground, mount returns once the mount is ready")
            cp = ns.run([c["hello"] + "/bin/hello"])
            check("Hello" in cp.stdout, "the detached daemon serves")
            cp = ns.run([binary, "mount", "--substituter", "file://" + cache,
                         "--trusted-public-key", pub, "--cache-dir", os.path.join(d, "cache"),
                         os.path.join(d, "keys-bc")], check=False, timeout=30)
            check(cp.returncode != 0 and "lock" in (cp.stderr + cp.stdout).lower(),
                  "a second mount on the same cache directory fails non-zero, naming the lock")
            cp = ns.run([binary, "mount", "--substituter", "file://" + cache, "--no-require-sigs",
                         "--cache-dir", os.path.join(d, "c2"), os.path.join(d, "nonexistent")],
                        check=False)
            check(cp.returncode == 1 and "not a directory" in cp.stderr,
                  "a missing mount point fails with exit 1")
            pids = [p for p in ns.pids() if nlstest._comm(p) == "nix-lazy-store"]
            for p in pids:
                os.kill(p, 15)
            check(mountlib.wait_until(lambda: not ns.is_mounted("/nix/store"), 10),
                  "SIGTERM unmounts the detached daemon")
    cp = nlstest.run([binary, "mount", "--bogus", "/x"], check=False)
    check(cp.returncode == 2 and "--bogus" in cp.stderr, "unknown option: exit 2, named")
    cp = nlstest.run([binary, "mount", "/x"], check=False)
    check(cp.returncode == 2 and "substituter" in cp.stderr,
          "no substituter configured: exit 2, says so")
    cp = nlstest.run([binary, "mount", "--help"], check=False)
    check(cp.returncode == 0 and "--negative-ttl" in cp.stdout, "mount --help")


if __name__ == "__main__":
    nlstest.run_tests()
