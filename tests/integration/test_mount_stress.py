"""Stress and failure tests of the mount: concurrent cold readers over nginx (one download per
path), SIGKILL of the daemon mid-download and remount on the same cache (then fsck is clean),
eviction under a small --cache-size or below the free-space floor, lookups while a slow download
holds the root, a path fetched again with other contents, and the prefetch / gc / fsck
subcommands."""

import collections
import contextlib
import errno
import hashlib
import json
import os
import re
import subprocess
import time

import nlstest
from nlstest import check

import mountlib

CLOSURE = None


def setup_module():
    global CLOSURE
    nlstest.require_root()
    CLOSURE = nlstest.build_closure("stress")


def nar_gets(nginx):
    return collections.Counter(e["uri"] for e in nginx.entries()
                               if e["method"] == "GET" and e["uri"].startswith("/nar/"))


def test_concurrent_cold_readers_one_download_per_path():
    setup_module()
    c = CLOSURE
    host = mountlib.walk_host(c["closure"])
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, c["closure"])
        with nlstest.Nginx(cache) as nginx, nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=[nginx.url], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub]):
            procs = [ns.popen(["python3", mountlib.walk_script(), "data"] + c["closure"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(24)]
            outs = [p.communicate(timeout=300) for p in procs]
            codes = [p.returncode for p in procs]
            check(codes == [0] * 24, "24 concurrent cold readers finished (%s)" % codes)
            results = [o[0] for o in outs]
            check(len(set(results)) == 1, "all 24 readers got identical bytes and metadata")
            import json
            diffs = mountlib.compare_walks(host, json.loads(results[0]))
            check(not diffs, "and they match the host store (%s)" % "; ".join(diffs[:3]))
            gets = nar_gets(nginx)
            check(len(gets) == len(c["closure"]) and set(gets.values()) == {1},
                  "one NAR download per path (%d paths, counts %s)" % (
                      len(c["closure"]), sorted(gets.values())))


def test_sigkill_mid_download_then_remount_and_fsck():
    setup_module()
    c = CLOSURE
    binary = nlstest.find_binary()
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, c["closure"])
        cache_dir = os.path.join(d, "cache")
        with nlstest.Nginx(cache, server_config="limit_rate 300k;") as slow, \
                nlstest.MountNamespace() as ns:
            ls = nlstest.LazyStore(ns, substituters=[slow.url], cache_dir=cache_dir,
                                   trusted_keys=[pub],
                                   extra_args=["--no-prefetch-references"])
            reader = ns.popen(["cat", c["data"] + "/share/blob.bin"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
            busy = mountlib.wait_until(lambda: downloading(ns), 20)
            check(busy, "a throttled NAR download is in flight")
            time.sleep(1.5)
            ls.kill()
            rc = reader.wait(30)  # raises if the reader hangs on the dead mount
            check(rc != 0, "the reader of the killed daemon's mount failed (rc %d), not hung" % rc)
            ns.run(["umount", "-l", "/nix/store"], check=False)
            check(not ns.is_mounted("/nix/store"), "the dead mount is gone")
            with nlstest.Nginx(cache) as fast, nlstest.LazyStore(
                    ns, substituters=[fast.url], cache_dir=cache_dir, trusted_keys=[pub]) as ls2:
                mounted = mountlib.walk_ns(ns, c["closure"])
                diffs = mountlib.compare_walks(mountlib.walk_host(c["closure"]), mounted)
                check(not diffs, "after SIGKILL and remount on the same cache everything reads "
                      "correctly (%s)" % "; ".join(diffs[:3]))
                for p in c["closure"]:
                    check(mountlib.nar_sha256_ns(ns, p) ==
                          nlstest.read_narinfo(cache, p)["NarHash"],
                          "NAR hash of %s" % os.path.basename(p))
                check(ls2.stop() == 0, "clean stop")
        cp = nlstest.run([binary, "fsck", "--cache-dir", cache_dir], check=False)
        check(cp.returncode == 0, "fsck of the cache is clean afterwards:\n" + cp.stdout +
              cp.stderr)


@contextlib.contextmanager
def mount_with_budget(size, extra_args=()):
    """(closure, host walk, namespace, LazyStore): the stress closure from a file:// cache,
    mounted with --cache-size SIZE (none if SIZE is None) and extra_args."""
    setup_module()
    c = CLOSURE
    host = mountlib.walk_host(c["closure"])
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, c["closure"])
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                trusted_keys=[pub],
                extra_args=(["--cache-size", size] if size else []) + list(extra_args)) as ls:
            yield c, host, ns, ls


def downloading(ns):
    """Whether the mount in `ns` has a NAR download in flight (its status xattr)."""
    return mountlib.xattrs_ns(ns).get("user.nix-lazy-store.downloads_in_flight", "0") != "0"


def hold_open(ns, path):
    """A process in the namespace that opens `path`, reads a little and waits; on a line on its
    stdin it reads the whole file and prints its SHA-256."""
    return ns.popen(
        ["python3", "-c", "import sys,hashlib\nf=open(sys.argv[1],'rb')\nf.read(10)\n"
         "sys.stdin.readline()\nf.seek(0)\nprint(hashlib.sha256(f.read()).hexdigest())",
         path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_eviction_with_small_cache_keeps_files_readable():
    with mount_with_budget("6M") as (c, host, ns, ls):
        for round_ in range(2):
            mounted = mountlib.walk_ns(ns, c["closure"])
            diffs = mountlib.compare_walks(host, mounted)
            check(not diffs, "round %d: every file reads correctly under a 6 MiB cache (%s)"
                  % (round_, "; ".join(diffs[:3])))
        x = mountlib.xattrs_ns(ns)
        check(int(x["user.nix-lazy-store.evictions"]) > 0,
              "paths were evicted (%s)" % x["user.nix-lazy-store.evictions"])
        # Paths the kernel still held were not evicted under it: their root entries were
        # dropped (probes), and what no process used went at the next eviction.
        check(int(x["user.nix-lazy-store.eviction_probes"]) > 0,
              "eviction probed paths the kernel held (%s)"
              % x["user.nix-lazy-store.eviction_probes"])
        check(mountlib.wait_until(lambda: int(mountlib.xattrs_ns(ns)[
            "user.nix-lazy-store.bytes_cached"]) <= 6 * 1024 * 1024 * 1.2, 10),
            "the cache stays near its budget (%s bytes)"
            % mountlib.xattrs_ns(ns)["user.nix-lazy-store.bytes_cached"])
        # A budget no longer costs a round trip per open: the kernel skips OPEN/RELEASE.
        check(int(x["user.nix-lazy-store.open_requests"]) <= 4,
              "opens do not reach the daemon under a budget (%s OPEN requests)"
              % x["user.nix-lazy-store.open_requests"])
        cp = ns.run([c["hello"] + "/bin/hello"])
        check("Hello" in cp.stdout, "hello still runs after evictions")
        # A file kept open across evictions stays readable.
        script = ("import sys,hashlib\nf=open(sys.argv[1],'rb')\na=f.read(4096)\n"
                  "import subprocess\nsubprocess.run(['python3',sys.argv[2],'data']+sys.argv[3:],"
                  "stdout=subprocess.DEVNULL,check=True)\nf.seek(0)\n"
                  "print(hashlib.sha256(f.read()).hexdigest())")
        blob = c["data"] + "/share/blob.bin"
        cp = ns.run(["python3", "-c", script, blob, mountlib.walk_script()] + c["closure"])
        check(cp.stdout.strip() == host[blob]["sha256"],
              "a file open while other paths churn through the cache reads correctly")
        check("%s was evicted while in use" % c["data"] not in ls.log(),
              "and its path was not evicted while the file was open")
        check("ERROR" not in ls.log(), "no errors logged")


def test_concurrent_walkers_under_a_tiny_budget():
    """Four walkers at once, three rounds, a 3 MiB budget (less than the closure) and a file held
    open: eviction, probes and re-fetches race with lookups and reads; every byte must be right."""
    with mount_with_budget("3M") as (c, host, ns, ls):
        blob = c["data"] + "/share/blob.bin"
        holder = hold_open(ns, blob)
        # And one process listing the root all the while (the kernel caches that listing;
        # every commit and eviction changes it): no listing may repeat a name.
        lister = ns.popen(
            ["python3", "-c", "import os,sys,threading\nstop=[]\n"
             "threading.Thread(target=lambda: stop.append(sys.stdin.readline()), daemon=True)"
             ".start()\nimport time\nn=dup=0\nnames=set()\nwhile not stop:\n"
             "    l=os.listdir('/nix/store')\n    n+=1\n    dup+=len(l)-len(set(l))\n"
             "    names.update(l)\n    time.sleep(0.001)\nprint(n, dup, *sorted(names))"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for round_ in range(3):
            procs = [ns.popen(["python3", mountlib.walk_script(), "data"] + c["closure"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(4)]
            outs = [p.communicate(timeout=300) for p in procs]
            check([p.returncode for p in procs] == [0] * 4,
                  "round %d: the four walkers finished" % round_)
            diffs = [mountlib.compare_walks(host, json.loads(o[0])) for o in outs]
            check(not any(diffs), "round %d: every walker read every file correctly (%s)"
                  % (round_, "; ".join(sum(diffs, [])[:3])))
        out = holder.communicate("\n", timeout=60)[0]
        check(out.strip() == host[blob]["sha256"], "the file held open reads correctly")
        listings, dups, *names = lister.communicate("\n", timeout=60)[0].split()
        closure = set(os.path.basename(p) for p in c["closure"])
        check(int(listings) > 0 and dups == "0" and set(names) <= closure,
              "%s listings of the root meanwhile: no name repeated (%s), only closure paths (%s)"
              % (listings, dups, sorted(set(names) - closure)))
        x = mountlib.xattrs_ns(ns)
        # Everything is in use most of the time here, so what eviction did is mostly probes.
        check(int(x["user.nix-lazy-store.eviction_probes"]) > 0,
              "eviction probed paths in use (%s; %s evicted)"
              % (x["user.nix-lazy-store.eviction_probes"],
                 x["user.nix-lazy-store.evictions"]))
        check(x["user.nix-lazy-store.errors"] == "0", "no errors counted")
        check("ERROR" not in ls.log(), "no errors logged")


def test_free_space_floor_evicts_even_paths_in_use():
    """--min-free-space larger than the disk: every commit evicts everything else, paths in use
    included; readers fetch them again and get the right bytes."""
    with mount_with_budget(None, ["--min-free-space", "100000T"]) as (c, host, ns, ls):
        blob = c["data"] + "/share/blob.bin"
        holder = hold_open(ns, blob)
        mounted = mountlib.walk_ns(ns, c["closure"])
        diffs = mountlib.compare_walks(host, mounted)
        check(not diffs, "every file reads correctly (%s)" % "; ".join(diffs[:3]))
        # Read the held file (fetched again if it was evicted), then list the root: the kernel
        # keeps that listing, and the eviction below must reach it.
        ns.run(["sh", "-c", "cat %s > /dev/null" % blob])
        before = ns.run(["ls", "/nix/store"]).stdout.split()
        check(os.path.basename(c["data"]) in before, "the held file's path is listed")
        # One more fetch (hello was evicted by the later ones): its commit evicts the rest.
        ns.run([c["hello"] + "/bin/hello"])
        cached = ns.run(["ls", "/nix/store"]).stdout.split()
        check(os.path.basename(c["data"]) not in cached,
              "the held file's path was evicted although in use (cached: %s)" % cached)
        out = holder.communicate("\n", timeout=60)[0]
        check(out.strip() == host[blob]["sha256"], "the file held open still reads correctly")
        check("ERROR" not in ls.log(), "no errors logged")


def test_probes_do_not_stall_lookups_behind_a_slow_fetch():
    """A root LOOKUP holds the root directory's lock (shared) while its fetch runs, and the
    kernel takes that lock exclusively to drop an entry. An eviction probe sent then would wait
    for the slow fetch, and every new lookup in the root would wait behind it. So while a slow
    download runs and an over-budget commit wants to probe a path in use, a cold lookup of
    another path must still be answered at once."""
    setup_module()
    c = CLOSURE
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, c["closure"])
        # 200 KB/s: the 3.4 MB download takes about 17 s, room for a loaded machine's set-up.
        with nlstest.Nginx(cache, server_config="limit_rate 200k;") as slow, \
                nlstest.MountNamespace() as ns, nlstest.LazyStore(
                    ns, substituters=[slow.url], cache_dir=os.path.join(d, "cache"),
                    trusted_keys=[pub],
                    extra_args=["--cache-size", "4K", "--no-prefetch-references"]) as ls:
            ns.run(["stat", c["tool"], c["hello"]])  # small paths, now held by the kernel
            blob = c["data"] + "/share/blob.bin"
            reader = ns.popen(["sha256sum", blob], stdout=subprocess.PIPE, text=True)
            busy = mountlib.wait_until(lambda: downloading(ns), 20)
            check(busy, "a throttled 3.4 MB download is in flight (about 17 s at 200 KB/s)")
            # Its commit puts the cache over budget with hello held: eviction wants to probe it.
            t0 = time.monotonic()
            ns.run(["stat", c["greet"]], timeout=60)
            took_greet = time.monotonic() - t0
            time.sleep(0.3)  # the invalidation thread has taken the probe
            t0 = time.monotonic()
            ns.run(["stat", c["dash"]], timeout=60)
            took = time.monotonic() - t0
            still = reader.poll() is None
            check(still, "the slow download was still running when the lookup came back (the "
                  "lookups took %.2f s and %.2f s; the reader %s)" % (
                      took_greet, took, "exited %s" % reader.returncode
                      if reader.returncode is not None else "runs"))
            check(took < 4, "a cold lookup during the slow download took %.2f s" % took)
            out = reader.communicate(timeout=120)[0]
            check(reader.returncode == 0 and out.split()[0] == mountlib.walk_host([c["data"]])[
                blob]["sha256"], "the slowly fetched file reads correctly")
            check("ERROR" not in ls.log(), "no errors logged")


def test_refetch_with_other_contents_fails_old_users_then_serves_new():
    """A path evicted while in use (below the free-space floor) and fetched again from a cache
    that now has other contents for it (a substituter that built it differently: the same store
    path, another NarHash) is never served through the inodes the kernel got for the old
    contents: a file opened before reads EIO, not the new bytes, and new lookups fail while the
    old inodes live; once they are forgotten the path is served with its new contents."""
    setup_module()
    x = mountlib.build_unique_path("contents")
    old = open(x, "rb").read()
    new = old.upper()
    check(len(new) == len(old) and new != old, "a file path (%r) and other bytes for it" % old)
    with nlstest.tmpdir() as d:
        cache = nlstest.fill_cache(os.path.join(d, "bc"), [x, CLOSURE["tool"]], compression="none")
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + cache], cache_dir=os.path.join(d, "cache"),
                extra_args=["--no-require-sigs", "--no-prefetch-references",
                            "--min-free-space", "100000T"]) as ls:
            holder = ns.popen(
                ["python3", "-c", "import os,sys,time\nf=os.open(sys.argv[1],os.O_RDONLY)\n"
                 "print(os.pread(f,100,0).hex(),flush=True)\nsys.stdin.readline()\n"
                 "for _ in range(3):\n    try:\n        print(os.pread(f,100,0).hex())\n"
                 "    except OSError as e:\n        print(e.errno)\n    time.sleep(0.2)\n", x],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            check(holder.stdout.readline().strip() == old.hex(), "the file reads, held open")
            # The cache now has other contents for the same store path.
            nar = nlstest.nar_file(cache, x)
            with open(nar, "rb") as f:
                data = f.read()
            check(data.count(old) == 1, "the NAR holds the file's bytes once")
            with open(nar, "wb") as f:
                f.write(data.replace(old, new))
            digest = hashlib.sha256(data.replace(old, new)).hexdigest()
            b32 = nlstest.run(["nix-hash", "--type", "sha256", "--to-base32", digest]).stdout.strip()
            info = nlstest.narinfo_file(cache, x)
            with open(info) as f:
                text = f.read()
            text = re.sub(r"(?m)^(NarHash|FileHash): sha256:\S+$", r"\1: sha256:" + b32, text)
            with open(info, "w") as f:
                f.write(text)
            # Another fetch: below the floor, its commit evicts the path in use.
            ns.run(["stat", CLOSURE["tool"]])
            time.sleep(0.5)
            codes = [ns.run(["cat", x], check=False).returncode for _ in range(2)]
            check(codes[-1] != 0 and "still uses the copy it had before" in ls.log(),
                  "while the old inode lives, a new lookup fails (%s)" % codes)
            attempts = holder.communicate("\n", timeout=60)[0].split()
            check(new.hex() not in attempts and old.hex() not in attempts and
                  all(a == str(errno.EIO) for a in attempts),
                  "reads of the file opened before fail with EIO (%s)" % attempts)
            check("other contents" in ls.log(), "the log says why")
            # The kernel forgets the old inodes once nothing uses them: then the new contents.
            got = []

            def reads_new():
                cp = ns.run(["cat", x], check=False, capture=True)
                got.append(cp.stdout)
                return cp.returncode == 0
            check(mountlib.wait_until(reads_new, 10), "the path reads again (%s)" % got[-1:])
            check(got[-1].encode() == new, "with its new contents")
            check(ns.run(["cat", x]).stdout.encode() == new, "and again")


def test_prefetch_gc_fsck_commands():
    setup_module()
    c = CLOSURE
    binary = nlstest.find_binary()
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, c["closure"])
        cache_dir = os.path.join(d, "cache")
        prefetch = [binary, "prefetch", "--substituter", "file://" + cache,
                    "--trusted-public-key", pub, "--cache-dir", cache_dir]
        cp = nlstest.run(prefetch + [c["hello"]])
        want = len(nlstest.closure_of(c["hello"]))
        check("%d paths in closure: %d fetched" % (want, want) in cp.stdout,
              "prefetch fetches the closure of hello: " + cp.stdout.strip())
        cp = nlstest.run(prefetch + [c["hello"]])
        check("%d already cached" % want in cp.stdout, "a second prefetch fetches nothing")
        cp = nlstest.run(prefetch + ["/nix/store/" + "2" * 32 + "-absent"], check=False)
        check(cp.returncode == 1 and "1 failed" in cp.stdout, "prefetch of an absent path fails")
        # Offline: a substituter that does not exist; the prefetched closure still serves.
        with nlstest.MountNamespace() as ns, nlstest.LazyStore(
                ns, substituters=["file://" + os.path.join(d, "nothing")], cache_dir=cache_dir,
                trusted_keys=[pub]):
            cp = ns.run([c["hello"] + "/bin/hello"])
            check("Hello" in cp.stdout, "the prefetched closure runs with no substituter")
        cp = nlstest.run([binary, "gc", "--cache-dir", cache_dir, "--max-size", "0"])
        check("-> 0 paths" in cp.stdout, "gc --max-size 0 empties the cache: " + cp.stdout.strip())
        cp = nlstest.run([binary, "fsck", "--cache-dir", cache_dir], check=False)
        check(cp.returncode == 0, "fsck after gc is clean: " + cp.stdout.strip())
        cp = nlstest.run([binary, "gc", "--cache-dir", cache_dir], check=False)
        check(cp.returncode == 2 and "--max-size" in cp.stderr, "gc without --max-size: exit 2")


if __name__ == "__main__":
    nlstest.run_tests()
