"""Faults of the machine and the network under a real mount at /nix/store (inside a private mount
namespace): a full cache disk and a binary cache server that goes down and comes back. Each must
give a clean error to the caller (EIO), a log line naming the store path and the cause, nothing
corrupt in the cache, and a daemon that keeps serving."""

import errno
import os
import time

import nlstest
from nlstest import check

import mountlib

CLOSURE = None


def setup_module():
    global CLOSURE
    nlstest.require_root()
    CLOSURE = nlstest.build_closure("faults")


def disk_used(ns, path):
    """Bytes in use on the file system holding `path`, seen from inside the namespace."""
    cp = ns.run(["df", "--output=used", "-B1", path])
    return int(cp.stdout.split()[-1])


def test_disk_full_gives_eio_keeps_cache_clean_and_serving():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, sec, pub = nlstest.signed_cache(d, [c["hello"], c["data"]])
        cache_dir = os.path.join(d, "cache")
        os.makedirs(cache_dir)
        with nlstest.MountNamespace() as ns:
            # The hello closure (~3.4 MB) fits in 5 MiB; the data path (a >3 MiB incompressible
            # file) does not fit beside it.
            ns.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", cache_dir])
            with nlstest.Nginx(cache) as web, nlstest.LazyStore(
                    ns, substituters=[web.url], cache_dir=cache_dir, trusted_keys=[pub]) as ls:
                cp = ns.run([c["hello"] + "/bin/hello"])
                check("Hello" in cp.stdout, "the hello closure is served from a small cache disk")
                mountlib.wait_until(lambda: mountlib.xattrs_ns(ns)[
                    "user.nix-lazy-store.fetches_in_flight"] == "0", 10)
                used_before = disk_used(ns, cache_dir)

                check(mountlib.stat_errno_ns(ns, c["data"]) == errno.EIO,
                      "a path that does not fit on the cache disk gives EIO")
                log = ls.log()
                line = [l for l in log.splitlines() if os.path.basename(c["data"]) in l
                        and "space" in l.lower()]
                check(line, "a log line names the path and the cause (no space): %s" %
                      (line[:1] or log[-2000:]))
                listing = ns.run(["ls", "/nix/store"]).stdout.split()
                check(os.path.basename(c["data"]) not in listing, "the path is not cached")
                used_after = disk_used(ns, cache_dir)
                check(used_after <= used_before + 256 * 1024,
                      "the failed fetch left no data behind (%d -> %d bytes used)" %
                      (used_before, used_after))

                cp = ns.run([c["hello"] + "/bin/hello"])
                check("Hello" in cp.stdout, "cached paths keep being served")
                late = mountlib.build_unique_path("disk-full-%d-%d" % (os.getpid(),
                                                                        time.time_ns()))
                nlstest.fill_cache(cache, [late], secret_key=sec)
                cp = ns.run(["cat", late])
                with open(late) as f:
                    check(cp.stdout == f.read(), "a new small path is still fetched and served")
                check(mountlib.stat_errno_ns(ns, c["data"]) == errno.EIO,
                      "the path that does not fit fails again, cleanly")
                ls.stop()
            cp = ns.run([nlstest.find_binary(), "fsck", "--cache-dir", cache_dir], check=False)
            check(cp.returncode == 0, "fsck finds the cache consistent after disk-full failures"
                  " (exit %d): %s" % (cp.returncode, cp.stdout + cp.stderr))


def test_server_down_is_eio_and_recovers_when_it_returns():
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, [c["hello"], c["tool"]])
        port = nlstest.free_port()
        with nlstest.MountNamespace() as ns:
            web = nlstest.Nginx(cache, port=port)
            with web, nlstest.LazyStore(
                    ns, substituters=[web.url], cache_dir=os.path.join(d, "cache"),
                    trusted_keys=[pub], extra_args=["--no-prefetch-references"]) as ls:
                cp = ns.run([c["hello"] + "/bin/hello"])
                check("Hello" in cp.stdout, "served while the server is up")
                web.stop()
                t0 = time.monotonic()
                err = mountlib.stat_errno_ns(ns, c["tool"])
                check(err == errno.EIO,
                      "with the server down a new path gives EIO, not ENOENT (got %s)" % err)
                check(time.monotonic() - t0 < 30, "the failure comes after bounded retries")
                log = ls.log()
                line = [l for l in log.splitlines() if os.path.basename(c["tool"]) in l
                        and web.url in l]
                check(line, "a log line names the path and the substituter: %s" %
                      (line[:1] or log[-2000:]))
                cp = ns.run([c["hello"] + "/bin/hello"])
                check("Hello" in cp.stdout, "cached paths keep being served while it is down")
                with nlstest.Nginx(cache, port=port):
                    ok = mountlib.wait_until(
                        lambda: mountlib.stat_errno_ns(ns, c["tool"]) == 0, 90, 1)
                    check(ok, "once the server is back the path is served (failures are not"
                          " remembered as absent)")
                    cp = ns.run(["cat", c["tool"] + "/bin/nls-tool"])
                    with open(c["tool"] + "/bin/nls-tool") as f:
                        check(cp.stdout == f.read(), "and its contents are right")


if __name__ == "__main__":
    nlstest.run_tests()
