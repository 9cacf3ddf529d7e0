"""Soak: an executor's life compressed into NLS_SOAK_SECONDS (default 45, as in the test suite).
Longer by hand, as root from the source tree (ctest's 900 s timeout does not apply then):
  PYTHONPATH=tests/lib NLS_BINARY=$PWD/build/fuse/nix-lazy-store NLS_SOAK_SECONDS=3600 \
      python3 tests/integration/test_soak.py

A real mount at /nix/store (private mount namespace) of a Nix-built closure plus 40 small paths,
served by nginx on loopback, with a --cache-size of half the NARs, so paths are evicted and fetched
again all the time. Four worker processes in the namespace loop until the deadline over random
operations: stat/readlink/list/hash an entry of a store path and compare it with the host's
/nix/store, run programs (ELF interpreter and libraries from the mount), look up store paths that
exist nowhere (ENOENT), list the store. Meanwhile the test
  - stops the cache server for 3 s (at 20 % of the time) and starts it again on the same port,
  - SIGKILLs the daemon (at 45 %) and mounts the same cache again,
  - samples the daemon's memory (VmRSS), descriptors and threads and the cache's size each second.

It fails when:
  - any operation ever returns wrong bytes or metadata (at any time, chaos or not);
  - an operation fails outside the chaos windows (server down until 10 s after it is back;
    daemon killed until 2 s after the new mount is up);
  - a worker completes fewer than 20 operations (the daemon stopped serving);
  - the second daemon's RSS grows by more than max(16 MiB, 25 %) between the first and the last
    quarter of its samples (not judged for an AddressSanitizer build, whose quarantine holds
    freed memory; LeakSanitizer's report at exit counts instead), its descriptors exceed the chunk descriptor bound (4096) + 128, or
    its threads grow by more than 4;
  - the cache is not back within its budget (+25 %) 45 s after the workers stop (the kernel
    holds every path's entries, so eviction goes through probes, at most one per path per 30 s;
    during the run the cache may exceed the budget, and the summary says by how much), the
    daemon does not stop cleanly on SIGTERM, or `nix-lazy-store fsck` finds damage;
  - the daemon's log mentions a sanitizer report.
A summary line gives operations, bytes read, evictions, downloads, the resource ranges and the
largest cache size seen.
"""

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

import nlstest
from nlstest import check

import mountlib

SECONDS = float(os.environ.get("NLS_SOAK_SECONDS", "45"))
WORKERS = 4

# Runs in the namespace: random operations until the deadline; prints JSON stats. Compares with
# mountlib's walk entries of the host store (same `entry` semantics).
WORKER = mountlib.WALK_SCRIPT.split("WITH_DATA = sys.argv[1]")[0] + r'''
import random, subprocess, time
WITH_DATA = True
cfg = json.load(open(sys.argv[1]))
rnd = random.Random(cfg["seed"])
host, programs, missing, names = cfg["host"], cfg["programs"], cfg["missing"], set(cfg["names"])
keys = sorted(host)
stats = {"ops": 0, "bytes": 0, "wrong": [], "errors": []}
def failed(what, p, e):
    stats["errors"].append([time.time(), what, p, str(e)])
while time.time() < cfg["deadline"]:
    r = rnd.random()
    stats["ops"] += 1
    if r < 0.7:
        p = rnd.choice(keys)
        try:
            got = entry(p)  # lstat errors come back as {"error": errno}; the rest raise
        except OSError as e:
            failed("entry", p, e.errno)
            continue
        if "error" in got:
            failed("entry", p, got["error"])
        elif got != host[p]:
            stats["wrong"].append([time.time(), p, str(got)[:300], str(host[p])[:300]])
        else:
            stats["bytes"] += got.get("size", 0)
    elif r < 0.85:
        argv, want = rnd.choice(programs)
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            failed("run", argv[0], e)
            continue
        if cp.returncode != 0:
            failed("run", argv[0], "exit %d: %s" % (cp.returncode, cp.stderr[-200:]))
        elif cp.stdout != want:
            stats["wrong"].append([time.time(), argv[0], cp.stdout[:300], want[:300]])
    elif r < 0.95:
        p = rnd.choice(missing)
        try:
            os.lstat(p)
            stats["wrong"].append([time.time(), p, "exists", "ENOENT"])
        except FileNotFoundError:
            pass
        except OSError as e:
            failed("missing", p, e.errno)
    else:
        try:
            extra = set(os.listdir("/nix/store")) - names
        except OSError as e:
            failed("list", "/nix/store", e.errno)
            continue
        # While the daemon is down the host's own /nix/store shows through: judged by the windows.
        if extra:
            failed("list", "/nix/store", "names outside the cache: %s" % sorted(extra)[:3])
json.dump(stats, sys.stdout)
'''


class Sampler(threading.Thread):
    """Samples the daemon (VmRSS, descriptors, threads) and the cache size once a second."""

    def __init__(self, ns):
        super().__init__(daemon=True)
        self.ns, self.pid, self.samples, self.stopped = ns, None, [], threading.Event()

    def run(self):
        while not self.stopped.wait(1.0):
            pid = self.pid
            if pid is None:
                continue
            try:
                with open("/proc/%d/status" % pid) as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
                rss = int(status["VmRSS"].split()[0]) * 1024
                threads = int(status["Threads"])
                fds = len(os.listdir("/proc/%d/fd" % pid))
                cached = int(mountlib.xattrs_ns(self.ns).get(
                    "user.nix-lazy-store.bytes_cached", "0"))
            except (OSError, KeyError, ValueError, nlstest.CommandError):
                continue
            self.samples.append({"t": time.time(), "pid": pid, "rss": rss, "fds": fds,
                                 "threads": threads, "cached": cached})


def daemon_pid(ls):
    """The pid of the nix-lazy-store process (LazyStore.proc may be nsenter)."""
    for _ in range(50):
        out = subprocess.run(["pgrep", "-P", str(ls.proc.pid)], capture_output=True,
                             text=True).stdout.split()
        for pid in [ls.proc.pid] + [int(p) for p in out]:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if b"nix-lazy-store" in f.read().split(b"\0")[0]:
                        return pid
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError("no nix-lazy-store process under %d" % ls.proc.pid)


def test_soak():
    nlstest.require_root()
    c = nlstest.build_closure("soak")
    paths = sorted(set(c["closure"]) | set(mountlib.build_unique_paths("soak", 40)))
    host = mountlib.walk_host(paths)
    data_file = c["data"] + "/share/words.txt"
    programs = [[[c["hello"] + "/bin/hello"]], [[c["hello"] + "/bin/hello", data_file]],
                [[c["tool"] + "/bin/nls-tool"]]]
    for prog in programs:
        prog.append(nlstest.run(prog[0]).stdout)
    missing = ["/nix/store/%s-soak-missing-%d" % (
        "".join(random.Random(i).choice("0123456789abcdfghijklmnpqrsvwxyz") for _ in range(32)), i)
        for i in range(20)]
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, paths)
        nar_bytes = sum(int(nlstest.read_narinfo(cache, p)["NarSize"]) for p in paths)
        budget = max(2 << 20, nar_bytes // 2)
        cache_dir = os.path.join(d, "cache")
        args = ["--cache-size", str(budget)]
        start = time.time()
        deadline = start + SECONDS
        cfg = {"host": host, "programs": programs, "missing": missing, "deadline": deadline,
               "names": [os.path.basename(p) for p in paths]}
        windows = []  # (from, to): failures tolerated
        web = nlstest.Nginx(cache)
        port = web.port
        with nlstest.MountNamespace() as ns:
            ls = nlstest.LazyStore(ns, substituters=[web.url], cache_dir=cache_dir,
                                   trusted_keys=[pub], extra_args=args)
            sampler = Sampler(ns)
            sampler.pid = daemon_pid(ls)
            sampler.start()
            workers = []
            for i in range(WORKERS):
                cfg_file = os.path.join(d, "worker-%d.json" % i)
                with open(cfg_file, "w") as f:
                    json.dump(dict(cfg, seed=i), f)
                script = os.path.join(d, "worker.py")
                with open(script, "w") as f:
                    f.write(WORKER)
                workers.append(ns.popen(["python3", script, cfg_file], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
            # Chaos 1: the cache server goes away for 3 s.
            time.sleep(max(0.0, start + 0.2 * SECONDS - time.time()))
            down = time.time()
            web.stop()
            time.sleep(3)
            web = nlstest.Nginx(cache, port=port)
            windows.append((down, time.time() + 10))
            # Chaos 2: the daemon is killed and the same cache mounted again.
            time.sleep(max(0.0, start + 0.45 * SECONDS - time.time()))
            killed = time.time()
            sampler.pid = None
            ls.kill()
            ns.run(["umount", "-l", "/nix/store"], check=False)
            ls = nlstest.LazyStore(ns, substituters=[web.url], cache_dir=cache_dir,
                                   trusted_keys=[pub], extra_args=args)
            restarted = time.time()
            sampler.pid = daemon_pid(ls)
            with open("/proc/%d/maps" % sampler.pid) as f:
                sanitized = "libasan" in f.read()
            windows.append((killed, restarted + 2))
            outs = [w.communicate(timeout=SECONDS + 300) for w in workers]
            sampler.stopped.set()
            sampler.join()
            check(all(w.returncode == 0 for w in workers),
                  "the workers ran to the deadline (%s)" % [o[1][-300:] for o in outs
                                                            if o[1]])
            stats = [json.loads(o[0]) for o in outs]
            x = mountlib.xattrs_ns(ns)
            t_idle = time.time()
            settled = mountlib.wait_until(
                lambda: int(mountlib.xattrs_ns(ns)["user.nix-lazy-store.bytes_cached"])
                <= budget * 1.25, 45)
            t_settled = time.time() - t_idle
            cached_end = mountlib.xattrs_ns(ns)["user.nix-lazy-store.bytes_cached"]
            log = ls.log()
            rc = ls.stop()
        web.stop()
        fsck = nlstest.run([nlstest.find_binary(), "fsck", "--cache-dir", cache_dir], check=False)

    wrong = sum((s["wrong"] for s in stats), [])
    check(not wrong, "no operation ever returned wrong bytes or metadata (%s)" % wrong[:3])
    outside = [e for s in stats for e in s["errors"]
               if not any(a <= e[0] <= b for a, b in windows)]
    check(not outside, "no operation failed outside the chaos windows (%d did: %s)"
          % (len(outside), outside[:3]))
    ops = [s["ops"] for s in stats]
    check(min(ops) >= 20, "every worker kept being served (%s operations)" % ops)
    later = [s for s in sampler.samples if s["t"] > restarted + 0.2 * (deadline - restarted)]
    check(len(later) >= 8, "the second daemon was sampled (%d samples)" % len(later))
    q = max(1, len(later) // 4)
    first = statistics.median(s["rss"] for s in later[:q])
    last = statistics.median(s["rss"] for s in later[-q:])
    if sanitized:
        # AddressSanitizer keeps freed memory in quarantine (up to 256 MiB): RSS says nothing
        # there, and LeakSanitizer reports leaks at exit instead (checked in the log below).
        print("RSS %.1f -> %.1f MiB: not judged, the daemon is an AddressSanitizer build"
              % (first / 2**20, last / 2**20))
    else:
        check(last - first <= max(16 << 20, first // 4), "the daemon's memory stays flat: RSS "
              "%.1f -> %.1f MiB" % (first / 2**20, last / 2**20))
    check(max(s["fds"] for s in later) <= 4096 + 128,
          "descriptors stay bounded (at most %d)" % max(s["fds"] for s in later))
    check(max(s["threads"] for s in later[-q:]) <= max(s["threads"] for s in later[:q]) + 4,
          "threads do not pile up (%d -> %d)" % (later[0]["threads"], later[-1]["threads"]))
    check(settled, "the cache is back within its budget of %d bytes (+25 %%) %.1f s after the "
          "workers stopped (%s bytes; during the run at most %d)"
          % (budget, t_settled, cached_end, max(s["cached"] for s in sampler.samples)))
    check(int(x["user.nix-lazy-store.evictions"]) > 0,
          "paths were evicted and fetched again (%s evictions)"
          % x["user.nix-lazy-store.evictions"])
    check(rc == 0, "the daemon stopped cleanly on SIGTERM (exit %s)" % rc)
    check(fsck.returncode == 0, "fsck of the cache is clean:\n" + fsck.stdout + fsck.stderr)
    check("Sanitizer" not in log and "runtime error" not in log,
          "no sanitizer report in the daemon's log")
    print("soak: %.0f s, %d workers, %d operations, %.1f MiB read, %d failures inside the "
          "chaos windows, evictions %s, downloads %s, RSS %.1f-%.1f MiB, fds <= %d, threads "
          "%d-%d, cache at most %.1f MiB (budget %.1f MiB)"
          % (SECONDS, WORKERS, sum(ops), sum(s["bytes"] for s in stats) / 2**20,
                     sum(len(s["errors"]) for s in stats), x["user.nix-lazy-store.evictions"],
                     x.get("user.nix-lazy-store.nar_downloads", "?"),
                     min(s["rss"] for s in later) / 2**20, max(s["rss"] for s in later) / 2**20,
                     max(s["fds"] for s in later), min(s["threads"] for s in later),
                     max(s["threads"] for s in later),
                     max(s["cached"] for s in sampler.samples) / 2**20, budget / 2**20),
          flush=True)


if __name__ == "__main__":
    nlstest.run_tests()
