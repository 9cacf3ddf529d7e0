#!/usr/bin/env python3
"""Formats benchmark: NAR parsing + SHA-256, and zstd/xz decoding, against baselines.

  python3 bench/formats_bench.py [--build-dir DIR] [--work DIR] [--size-mb 300] [--xz-size-mb 24]
                                 [--runs 5]

1. Generates a deterministic NAR of --size-mb MiB (nar_bench gen: ~4500 files of mixed sizes).
2. NarParser + SHA-256 vs OpenSSL SHA-256 alone over the same in-memory bytes, fed in 1 MiB
   pieces (nar_bench parse; median of --runs interleaved runs). Target: ratio <= 1.25.
3. zstd -3 of that NAR; `nar_bench decompress zstd F >/dev/null` vs `zstd -d -c F >/dev/null`.
4. xz -3 -T1 (one block, as Nix writes) of a smaller NAR (--xz-size-mb: xz compression is too
   slow on 2 shared cores for 300 MiB); `nar_bench decompress xz` vs `xz -d -c`.
   Decoders: median wall time of --runs interleaved runs (A B A B ...). Target: ratio <= 1.1.
Prints a table (wall-clock medians, and CPU user+sys medians for information) and exits 1 if a
target is missed. Inputs are kept in --work and reused when present.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import nlstest  # noqa: E402


def find_bench(build_dir):
    first = [os.path.join(build_dir, "bench", "nar_bench")] if build_dir else []
    try:
        return nlstest.find_built("bench", "nar_bench", first)
    except RuntimeError as e:
        sys.exit("%s; or use --build-dir" % e)


def timed(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (wall seconds, child CPU user+sys seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def ensure(path, make):
    if not os.path.exists(path):
        tmp = path + ".tmp"
        make(tmp)
        os.rename(tmp, path)
    return path


def compare(name, ours_cmd, base_cmd, runs):
    ours, base = [], []
    for _ in range(runs):  # interleaved A B A B ...
        ours.append(timed(ours_cmd))
        base.append(timed(base_cmd))
    o = statistics.median(w for w, _ in ours)
    b = statistics.median(w for w, _ in base)
    oc = statistics.median(c for _, c in ours)
    bc = statistics.median(c for _, c in base)
    return {"name": name, "ours": o, "base": b, "ratio": o / b, "ours_cpu": oc, "base_cpu": bc,
            "cpu_ratio": oc / bc}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir")
    ap.add_argument("--work", default="/tmp/nls-formats-bench")
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--xz-size-mb", type=int, default=24)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bench = find_bench(args.build_dir)
    os.makedirs(args.work, exist_ok=True)
    t_start = time.monotonic()

    nar = ensure(os.path.join(args.work, "bench-%d.nar" % args.size_mb),
                 lambda out: subprocess.run([bench, "gen", out, str(args.size_mb), "1"],
                                            check=True, stdout=subprocess.DEVNULL))
    zst = ensure(nar + ".zst", lambda out: subprocess.run(
        ["zstd", "-q", "-3", "-f", nar, "-o", out], check=True))
    xz_nar = ensure(os.path.join(args.work, "bench-%d.nar" % args.xz_size_mb),
                    lambda out: subprocess.run([bench, "gen", out, str(args.xz_size_mb), "2"],
                                               check=True, stdout=subprocess.DEVNULL))

    def make_xz(out):
        with open(out, "wb") as f:
            subprocess.run(["xz", "-3", "-T1", "-c", xz_nar], check=True, stdout=f)
    xz = ensure(xz_nar + ".xz", make_xz)

    rows = []
    cp = subprocess.run([bench, "parse", nar, str(args.runs)], check=True,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    kv = cp.stdout.split()
    vals = dict(zip(kv[0::2], map(float, kv[1::2])))
    rows.append({"name": "NAR parse+SHA-256 vs SHA-256 (%d MiB)" % round(vals["mb"]),
                 "ours": vals["parse_s"], "base": vals["sha256_s"], "ratio": vals["ratio"],
                 "ours_cpu": vals["parse_cpu_s"], "base_cpu": vals["sha256_cpu_s"],
                 "cpu_ratio": vals["cpu_ratio"], "target": 1.25})
    r = compare("zstd decode vs zstd -d (%d MiB)" % args.size_mb,
                [bench, "decompress", "zstd", zst], ["zstd", "-q", "-d", "-c", zst], args.runs)
    r["target"] = 1.1
    rows.append(r)
    r = compare("xz decode vs xz -d (%d MiB)" % args.xz_size_mb,
                [bench, "decompress", "xz", xz], ["xz", "-d", "-c", xz], args.runs)
    r["target"] = 1.1
    rows.append(r)

    print("%-44s %9s %9s %7s %7s | %9s %9s %7s" % ("benchmark", "ours s", "base s", "ratio",
                                                  "target", "ours cpu", "base cpu", "cpu r"))
    failed = []
    for r in rows:
        ok = r["ratio"] <= r["target"]
        if not ok:
            failed.append(r["name"])
        print("%-44s %9.3f %9.3f %7.3f %7s | %9.3f %9.3f %7.3f %s" % (
            r["name"], r["ours"], r["base"], r["ratio"], "<=%.2f" % r["target"], r["ours_cpu"],
            r["base_cpu"], r["cpu_ratio"], "ok" if ok else "MISSED"))
    print("(wall-clock medians of %d interleaved runs; ratio = ours / baseline; total %.0f s)"
          % (args.runs, time.monotonic() - t_start))
    if failed:
        print("targets missed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
