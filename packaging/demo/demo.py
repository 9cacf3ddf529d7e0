#!/usr/bin/env python3
"""The nix-lazy-store demo (run it through packaging/demo/run.sh, which installs and builds first).

1. builds a small real closure with Nix (glibc, zlib, libgreet, hello, dash, data, a script),
2. signs it into a zstd binary cache with `nix copy` and serves that with nginx on 127.0.0.1,
3. mounts nix-lazy-store at /nix/store inside a private mount namespace (the host's /nix/store is
   not touched), with its chunk cache under /var/tmp/nix-lazy-store-demo,
4. runs /nix/store/...-hello/bin/hello and a #!/nix/store/...-dash/bin/sh script from the mount,
5. prints what was fetched (nginx's log, the daemon's status) and cleans up.

Usage: demo.py --binary PATH [--workdir /var/tmp/nix-lazy-store-demo] [--keep]"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "lib"))
import nlstest as t  # noqa: E402


def step(msg):
    print("\n\033[1m==> %s\033[0m" % msg if sys.stdout.isatty() else "\n==> %s" % msg,
          flush=True)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=None, help="nix-lazy-store (default: NLS_BINARY or build)")
    ap.add_argument("--workdir", default="/var/tmp/nix-lazy-store-demo")
    ap.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    args = ap.parse_args()
    t.require_root()
    binary = os.path.abspath(args.binary or t.find_binary())
    work = args.workdir
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    cache_dir = os.path.join(work, "binary-cache")   # what the Nix server publishes
    lazy_cache = os.path.join(work, "lazy-cache")    # nix-lazy-store's local chunk cache
    conf = os.path.join(work, "nix.conf")            # empty: ignore the host's /etc/nix/nix.conf
    open(conf, "w").close()

    step("Building the demo closure with Nix (nix-build, real store paths in the host's store)")
    c = t.build_closure("demo")
    for k in ("hello", "greet", "zlib", "glibc", "dash", "tool", "data"):
        size = int(t.run(["du", "-sb", c[k]]).stdout.split()[0])
        print("  %-6s %s  (%s)" % (k, c[k], human(size)))
    host_hello = t.run([c["hello"] + "/bin/hello"]).stdout

    step("Signing and copying it into a zstd binary cache (nix copy --to file://...)")
    sec, pub = t.make_key(os.path.join(work, "keys"), "nix-lazy-store-demo-1")
    t.fill_cache(cache_dir, c["all"], compression="zstd", secret_key=sec)
    print("  cache:  %s (%d narinfos)" % (cache_dir, len([f for f in os.listdir(cache_dir)
                                                           if f.endswith(".narinfo")])))
    print("  key:    " + pub)

    with t.Nginx(cache_dir) as nginx, t.MountNamespace() as ns:
        step("Serving it with nginx at %s; mounting nix-lazy-store at /nix/store in a private "
             "mount namespace" % nginx.url)
        argv_extra = ["--nix-conf", conf, "--log-level", "info"]
        with t.LazyStore(ns, binary, substituters=[nginx.url], trusted_keys=[pub],
                         cache_dir=lazy_cache, extra_args=argv_extra) as store:
            print("  " + " ".join(store.argv))
            mounts = [m for m in ns.mounts() if m[1] == "/nix/store"]
            print("  inside the namespace: %s on /nix/store type %s" % (mounts[-1][0],
                                                                       mounts[-1][2]))
            host = [ln.split()[2] for ln in open("/proc/self/mounts")
                    if ln.split()[1] == "/nix/store"]
            print("  on the host: /nix/store is %s (untouched)" % (
                "a mount of type " + host[-1] if host else "a plain directory"))
            nginx.clear_log()

            step("Running %s/bin/hello from the lazy /nix/store" % c["hello"])
            t0 = time.monotonic()
            out = ns.run([c["hello"] + "/bin/hello"]).stdout
            first = time.monotonic() - t0
            print("  " + out.strip())
            print("  (first run: %.2f s, output %s the run from the host's store)"
                  % (first, "identical to" if out == host_hello else "DIFFERENT FROM"))
            if out != host_hello:
                raise SystemExit("demo failed: outputs differ")
            fetched = nginx.entries()
            t0 = time.monotonic()
            ns.run([c["hello"] + "/bin/hello"])
            second = time.monotonic() - t0
            again = nginx.entries()[len(fetched):]
            print("  (second run: %.3f s, %d new requests: served from the local cache)"
                  % (second, len(again)))

            step("Running %s/bin/nls-tool (#!%s/bin/sh) from the lazy /nix/store"
                 % (c["tool"], c["dash"]))
            before = len(nginx.entries())
            for line in ns.run([c["tool"] + "/bin/nls-tool"]).stdout.splitlines():
                print("  " + line)
            fetched += nginx.entries()[before:]

            step("What was fetched from the binary cache (nginx access log)")
            total = 0
            for e in fetched:
                total += e["bytes"]
                print("  %s %-60s %d %10s" % (e["method"], e["uri"], e["status"],
                                              human(e["bytes"])))
            narinfos = [e for e in fetched if e["uri"].endswith(".narinfo")]
            print("  %d requests, %d narinfos, %s transferred" % (len(fetched), len(narinfos),
                                                                 human(total)))
            proof = [os.path.basename(p) for p in (c["hello"], c["glibc"], c["zlib"],
                                                   c["greet"])
                     if "/%s.narinfo" % t.hash_part(p) in [e["uri"] for e in fetched]]
            print("  fetched through the mount: " + ", ".join(proof))
            if len(proof) != 4:
                raise SystemExit("demo failed: hello's closure was not fetched through the mount")

            step("nix-lazy-store status /nix/store")
            st = ns.run([binary, "status", "/nix/store"], check=False)
            print(("  " + st.stdout.strip().replace("\n", "\n  ")) if st.returncode == 0 else
                  "  (status unavailable: exit %d: %s)" % (st.returncode, st.stderr.strip()))
            used = int(t.run(["du", "-sb", lazy_cache]).stdout.split()[0])
            print("  local chunk cache %s: %s" % (lazy_cache, human(used)))

            step("Unmounting (SIGTERM to the daemon)")
            rc = store.stop()
            print("  daemon exited with status %d; /nix/store mounted in the namespace: %s"
                  % (rc, ns.is_mounted("/nix/store", "fuse")))
            log = store.log().strip().splitlines()
            print("  last daemon log lines:")
            for line in log[-8:]:
                print("    " + line)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        print("\nDemo finished; removed %s." % work)
    else:
        print("\nDemo finished; kept %s." % work)


if __name__ == "__main__":
    main()
