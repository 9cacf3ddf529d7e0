#!/usr/bin/env python3
"""Drives bench/cache_bench (the chunk cache benchmarks) and prints a Markdown summary.

Usage: bench/cache_bench.py --binary BUILD/bench/cache_bench [--work DIR] [--runs N] [--quick]
Exits 1 when a target is missed (warm read ratio < 0.9, metadata load >= 100 ms).

Measures, each against a baseline in the same run:
  * warm read throughput through StoreCache::Read vs reading the same files from the local file
    system (ext4 here) with the same 128 KiB requests; interleaved A/B, median of N (>= 5) runs;
  * PathMeta::Load time of a 50 000-file store path (median of 11);
  * StoreCache::Open (start-up) time of a cache of 256 000 chunks, for information (no target);
  * chunking: dedup of two versions of a toolchain for fixed-size and content-defined chunks
    (bytes of version B already stored by version A) and the chunk+hash CPU throughput.
Data sets are the machine's own files (Debian 12): two JDKs, two libLLVM versions, Python's
stdlib. Missing ones are skipped with a note.
"""
import argparse
import json
import os
import subprocess
import sys

READ_SETS = ["/usr/lib/python3.11", "/usr/lib/jvm/temurin-25-jdk-amd64"]
DEDUP_PAIRS = [
    ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/temurin-25-jdk-amd64"),
    ("/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1", "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1"),
]
EDIT_SETS = ["/usr/lib/jvm/java-17-openjdk-amd64"]


def run(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def mb(n):
    return f"{n / 1e6:.0f} MB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work", default="/var/tmp/nls-cache-bench")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="skip the dedup measurements")
    a = ap.parse_args()
    if a.runs < 5:
        sys.exit("--runs must be >= 5")
    os.makedirs(a.work, exist_ok=True)
    missed = []

    print("### Warm reads: StoreCache::Read vs the local file system\n")
    print("| data set | files | bytes | ext4 open+pread MB/s | ext4 pread, pre-opened MB/s | "
          "cache MB/s | ratio vs open+pread | ratio vs pre-opened | "
          "first read after start (re-hash) MB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for src in READ_SETS:
        if not os.path.isdir(src):
            print(f"| {src} | missing | | | | | | | |")
            continue
        (r,) = run(a.binary, "read", src, a.work, str(a.runs))
        print(f"| {src} | {r['files']} | {mb(r['bytes'])} | {r['ext4_MBps']:.0f} | "
              f"{r['ext4_preopened_MBps']:.0f} | {r['cache_MBps']:.0f} | {r['ratio']:.2f} | "
              f"{r['ratio_preopened']:.2f} | {r['first_read_verify_MBps']:.0f} |")
        if r["ratio"] < 0.9:
            missed.append(f"warm read ratio {r['ratio']:.2f} < 0.9 on {src}")

    (m,) = run(a.binary, "meta", a.work, "50000")
    print(f"\n### Metadata load\n\n{m['nodes']} nodes, {mb(m['bytes'])} file: "
          f"PathMeta::Load (read + checks) median {m['load_ms_median']:.1f} ms, "
          f"max {m['load_ms_max']:.1f} ms (11 runs)\n")
    if m["load_ms_median"] >= 100:
        missed.append(f"metadata load {m['load_ms_median']:.1f} ms >= 100 ms")

    (o,) = run(a.binary, "open", a.work, "250")
    cold = (f", {o['open_s_cold']:.2f} s after dropping it" if o["open_s_cold"] is not None
            else " (not root: no run with the page cache dropped)")
    print(f"### Start-up\n\nStoreCache::Open of a cache of {o['paths']} paths, {o['chunks']} "
          f"chunks: median {o['open_s_warm_median']:.2f} s with a warm page cache{cold} "
          f"(information, no target)\n")

    if not a.quick:
        dedup(a)
    if missed:
        print("\nTARGETS MISSED: " + "; ".join(missed))
        sys.exit(1)
    print("\nAll targets met (warm read ratio >= 0.9 vs open+pread, metadata load < 100 ms).")


def dedup(a):
    print("### Chunking: dedup between two versions, CPU cost\n")
    print("| A | B | strategy | B bytes already stored by A | dedup ratio (A+B) | "
          "avg chunk | chunk+hash MB/s |")
    print("|---|---|---|---|---|---|---|")
    jobs = [("dedup", x, y) for x, y in DEDUP_PAIRS] + [("dedup-edit", x) for x in EDIT_SETS]
    for job in jobs:
        if not all(os.path.exists(p) for p in job[1:]):
            print(f"| {' '.join(job[1:])} | missing | | | | | |")
            continue
        for r in run(a.binary, *job):
            print(f"| {r['a']} | {r['b']} | {r['strategy']} | {r['b_shared_with_a'] * 100:.1f}% | "
                  f"{r['dedup_ratio']:.3f} | {r['avg_chunk'] / 1024:.0f} KiB | "
                  f"{r['chunk_hash_MBps']:.0f} |")


if __name__ == "__main__":
    main()
