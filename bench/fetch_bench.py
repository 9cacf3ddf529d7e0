#!/usr/bin/env python3
"""Fetching benchmark: cold fetch of a ~300 MB closure from nginx on loopback.

Contenders, interleaved (A B C A B C ...), each run cold (fresh output directory, fresh Nix
narinfo disk cache):
  fetch_tool  tests/tools/fetch_tool --closure: our Fetcher (narinfo lookups, signature checks,
              streamed download -> decompression -> NAR parser -> files written to disk,
              NarHash/FileHash verified), up to --jobs NAR downloads in parallel.
  nix copy    nix copy --from http://nginx --to 'local?root=DIR' (Nix 2.8: the same work plus
              registering the paths in a SQLite database).
  curl        one curl process downloading the same narinfo and NAR files (keep-alive) to
              /dev/null: the transfer floor, no decompression, no verification, no writes.
For each compression (zstd, xz) it reports the median wall time of >= 3 runs, MB/s (NarSize of
the closure / wall time), CPU seconds (user+sys) and peak RSS of the contender's process (from
wait4), and the ratio fetch_tool / nix copy (target <= 1.0).

Usage: bench/fetch_bench.py [--runs N] [--total-mb MB] [--parts N] [--jobs N]
                            [--compressions zstd,xz] [--fetch-tool PATH] [--markdown FILE]
Needs root, nix-bin, nginx, curl (tests/lib/nlstest.py fixtures).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import nlstest as t  # noqa: E402


def find_fetch_tool(explicit):
    try:
        return t.find_built("tests", "fetch_tool", [explicit, os.environ.get("NLS_FETCH_TOOL", "")])
    except RuntimeError as e:
        sys.exit("%s; or pass --fetch-tool" % e)


def timed(cmd, env=None):
    """Runs cmd; returns (wall s, cpu s, max RSS KiB) of that process (wait4)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out, err = b"", b""
    # Drain pipes without waiting on the process (wait4 below reaps it).
    import threading
    bufs = {}

    def drain(name, f):
        bufs[name] = f.read()
    th = [threading.Thread(target=drain, args=(n, f)) for n, f in (("o", p.stdout),
                                                                     ("e", p.stderr))]
    for x in th:
        x.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    for x in th:
        x.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = bufs.get("o", b""), bufs.get("e", b"")
    if p.returncode != 0:
        raise t.CommandError(cmd, p.returncode, out, err)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--total-mb", type=int, default=300)
    ap.add_argument("--parts", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--compressions", default="zstd,xz")
    ap.add_argument("--fetch-tool", default="")
    ap.add_argument("--markdown", default="", help="also write the result table to this file")
    args = ap.parse_args()
    t.require_root()
    tool = find_fetch_tool(args.fetch_tool)
    closure = t.build_big_closure("big", args.total_mb, args.parts)
    paths = closure["closure"]
    nar_mb = sum(int(t.run(["nix-store", "-q", "--size", p]).stdout) for p in paths) / 1e6
    work = tempfile.mkdtemp(prefix="nls-fetch-bench-", dir="/var/tmp")
    results = {}
    try:
        sec, pub = t.make_key(os.path.join(work, "keys"), "bench-1")
        for comp in args.compressions.split(","):
            cache = os.path.join(work, "cache-" + comp)
            print("filling %s cache (%d paths, %.0f MB of NAR)..." % (comp, len(paths), nar_mb),
                  flush=True)
            t.fill_cache(cache, closure["env"], comp, sec, listing=False)
            files = ["nix-cache-info"]
            for p in paths:
                files += [os.path.basename(t.narinfo_file(cache, p)),
                          t.read_narinfo(cache, p)["URL"]]
            file_mb = sum(os.path.getsize(os.path.join(cache, f)) for f in files) / 1e6
            with t.Nginx(cache) as ng:
                def run_ours():
                    out = os.path.join(work, "out")
                    shutil.rmtree(out, ignore_errors=True)
                    r = timed([tool, "--substituter", ng.url, "--trusted-public-key", pub,
                               "--closure", "--jobs", str(args.jobs), "--log-level", "warn",
                               closure["env"], out])
                    shutil.rmtree(out, ignore_errors=True)
                    return r

                def run_nix():
                    root = os.path.join(work, "nixroot")
                    xdg = os.path.join(work, "xdg")
                    for d in (root, xdg):
                        subprocess.run(["chmod", "-R", "u+w", d], stderr=subprocess.DEVNULL)
                        shutil.rmtree(d, ignore_errors=True)
                    os.makedirs(xdg)
                    env = dict(os.environ, XDG_CACHE_HOME=xdg)
                    r = timed(["nix", "--extra-experimental-features", "nix-command", "copy",
                               "--option", "trusted-public-keys", pub, "--from", ng.url,
                               "--to", "local?root=" + root, closure["env"]], env=env)
                    subprocess.run(["chmod", "-R", "u+w", root], stderr=subprocess.DEVNULL)
                    shutil.rmtree(root, ignore_errors=True)
                    return r

                def run_curl():
                    cmd = ["curl", "-sSf"]
                    for f in files:
                        cmd += ["-o", "/dev/null", ng.url + "/" + f]
                    return timed(cmd)

                contenders = [("fetch_tool", run_ours), ("nix copy", run_nix), ("curl", run_curl)]
                samples = {n: [] for n, _ in contenders}
                for i in range(args.runs):
                    for name, fn in contenders:
                        w, c, rss = fn()
                        samples[name].append((w, c, rss))
                        print("  %s run %d %-10s wall %6.2f s  cpu %6.2f s  rss %7d KiB"
                              % (comp, i + 1, name, w, c, rss), flush=True)
                results[comp] = {"samples": samples, "file_mb": file_mb}
    finally:
        subprocess.run(["chmod", "-R", "u+w", work], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)

    lines = ["Closure: %d store paths, %.0f MB of NAR (build_big_closure(total_mb=%d, parts=%d))."
             % (len(paths), nar_mb, args.total_mb, args.parts), "",
             "| compression | contender | wall s (median of %d) | MB/s (NAR) | CPU s | peak RSS MiB |"
             % args.runs,
             "|---|---|---|---|---|---|"]
    for comp, r in results.items():
        med = {}
        for name, s in r["samples"].items():
            w = statistics.median(x[0] for x in s)
            c = statistics.median(x[1] for x in s)
            rss = max(x[2] for x in s) / 1024
            med[name] = w
            lines.append("| %s (%.0f MB files) | %s | %.2f | %.0f | %.2f | %.0f |"
                         % (comp, r["file_mb"], name, w, nar_mb / w, c, rss))
        lines.append("| %s | **fetch_tool / nix copy** | **%.2fx** | | | |"
                     % (comp, med["fetch_tool"] / med["nix copy"]))
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print(json.dumps({c: {n: s for n, s in r["samples"].items()} for c, r in results.items()}))


if __name__ == "__main__":
    main()
