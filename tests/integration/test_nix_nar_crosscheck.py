#!/usr/bin/env python3
"""Cross-checks nls's NAR parser, listings and decompressors against real Nix (nix-bin 2.8).

- Trees with empty dirs/files, executables, symlinks (to dirs, dangling, absolute), 40-deep
  nesting, a 3000-file directory, UTF-8 and spaces in names: `nix-store --dump DIR` parsed by
  nar_tool gives the tree a Python walk of DIR gives, and the hash `nix-hash --base32` gives.
- A sparse file over 4 GiB, streamed from `nix-store --dump` through a pipe (nothing stored).
- Binary caches filled by `nix copy` (xz, zstd, bzip2, none; write-nar-listing=true): every
  nar/* file decompresses and parses to the narinfo's NarHash/NarSize, and the listing we build
  equals the .ls file Nix wrote; corrupt or mismatching input is refused.
Needs root and nix; finds nar_tool under $NLS_BUILD_DIR (tests/nar_tool).
"""

import hashlib
import json
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import nlstest  # noqa: E402
from nlstest import check, run  # noqa: E402


def nar_tool():
    return nlstest.find_built("tests", "nar_tool")


NAR_TOOL = nar_tool()


def walk_lines(root):
    """The tree of root as nar_tool hash prints it (bytes lines), from the file system."""
    out = []

    def visit(path, disp):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            out.append(b"D\t" + disp)
            for name in sorted(os.listdir(os.fsencode(path))):
                visit(os.path.join(os.fsencode(path), name), disp + b"/" + name)
        elif stat.S_ISLNK(st.st_mode):
            out.append(b"L\t" + disp + b"\t" + os.readlink(os.fsencode(path)))
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
            x = b"x" if st.st_mode & stat.S_IXUSR else b"-"
            out.append(b"F\t" + x + b"\t" + str(st.st_size).encode() + b"\t"
                       + h.hexdigest().encode() + b"\t" + disp)
    visit(os.fsencode(root), b".")
    return out


def dump_and_parse(path, extra_args=()):
    """Streams `nix-store --dump path` into `nar_tool hash -`; returns (hash, size, lines)."""
    dump = subprocess.Popen(["nix-store", "--dump", path], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    tool = subprocess.run([NAR_TOOL, "hash"] + list(extra_args) + ["-"], stdin=dump.stdout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dump.stdout.close()
    check(dump.wait() == 0, "nix-store --dump %s succeeded" % path)
    if tool.returncode != 0:
        raise AssertionError("nar_tool failed on the dump of %s: %s" % (path, tool.stderr))
    lines = tool.stdout.split(b"\n")
    assert lines[0].startswith(b"hash ") and lines[1].startswith(b"size "), lines[:2]
    return (lines[0][5:].decode(), int(lines[1][5:]), [ln for ln in lines[2:] if ln])


def nix_hash(path):
    return run(["nix-hash", "--type", "sha256", "--base32", path]).stdout.strip()


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_tree(d):
    write(os.path.join(d, "empty-file"), b"")
    os.makedirs(os.path.join(d, "empty-dir"))
    write(os.path.join(d, "bin", "run"), b"#!/bin/sh\necho hi\n", 0o755)
    write(os.path.join(d, "bin", "exec-empty"), b"", 0o700)
    write(os.path.join(d, "bin", "not-exec"), b"x" * 9, 0o640)
    os.symlink("bin", os.path.join(d, "link-to-dir"))
    os.symlink("does/not/exist", os.path.join(d, "dangling"))
    os.symlink("/etc/hostname", os.path.join(d, "absolute"))
    # Per-name ordering: "a" (with child "b") before "a-b", "a.b"; byte order of UTF-8.
    write(os.path.join(d, "a", "b"), b"in a")
    write(os.path.join(d, "a-b"), b"dash")
    write(os.path.join(d, "a.b"), b"dot")
    write(os.path.join(d, "names", "with space"), b"space")
    write(os.path.join(d, "names", "été ünïcødé"), "utf8 ✓".encode())
    write(os.path.join(d, "names", "Zebra"), b"upper")
    write(os.path.join(d, "names", "zebra"), b"lower")
    deep = d
    for i in range(40):
        deep = os.path.join(deep, "d%d" % i)
    write(os.path.join(deep, "leaf"), b"deep leaf")
    wide = os.path.join(d, "wide")
    os.makedirs(wide)
    for i in range(3000):
        with open(os.path.join(wide, "f%05d" % ((i * 7919) % 3000)), "wb") as f:
            f.write(b"%d\n" % i * (i % 5))
    write(os.path.join(d, "blob"), bytes(range(256)) * 4099 + b"tail")


def test_tree_matches_nix():
    nlstest.require_root()
    with nlstest.tmpdir() as t:
        d = os.path.join(t, "tree")
        make_tree(d)
        h, size, lines = dump_and_parse(d)
        check(h == nix_hash(d), "NAR hash of the tree equals nix-hash (%s)" % h)
        nar = nlstest.nar_dump(d)
        check(size == len(nar), "NarSize %d equals the dump's length" % size)
        expected = walk_lines(d)
        check(lines == expected, "parsed tree equals the Python walk (%d nodes)" % len(expected))
        check(any(b"/d39\t" in ln or ln.endswith(b"/d39") for ln in lines), "40-deep nesting")
        # The same NAR fed in 1-byte reads and as a file.
        nar_file = os.path.join(t, "tree.nar")
        with open(nar_file, "wb") as f:
            f.write(nar)
        cp = subprocess.run([NAR_TOOL, "hash", "--expect-size", str(len(nar)), "--expect-hash",
                             "sha256:" + h, nar_file], stdout=subprocess.PIPE)
        check(cp.returncode == 0 and cp.stdout.split(b"\n")[2:-1] == expected,
              "nar_tool hash FILE with --expect-size/--expect-hash agrees")


def test_single_files_and_symlink_roots():
    nlstest.require_root()
    with nlstest.tmpdir() as t:
        f = os.path.join(t, "hello")
        write(f, b"hello\n")
        nar = nlstest.nar_dump(f)
        check(len(nar) == 120, "nix-store --dump of a 6-byte file is 120 bytes")
        h, size, lines = dump_and_parse(f)
        check(h == nix_hash(f) and size == 120, "one-file NAR hash matches nix-hash (%s)" % h)
        check(h == "04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
              "one-file NAR hash equals the unit test's vector")
        os.chmod(f, 0o755)
        h2, _, lines2 = dump_and_parse(f)
        check(h2 == nix_hash(f) and lines2[0].startswith(b"F\tx\t6\t"), "executable root file")
        link = os.path.join(t, "link")
        os.symlink("/nix/store/some-target", link)
        h3, _, lines3 = dump_and_parse(link)
        check(h3 == nix_hash(link) and lines3 == [b"L\t.\t/nix/store/some-target"],
              "symlink root")


def test_rejects_damaged_dumps():
    nlstest.require_root()
    with nlstest.tmpdir() as t:
        d = os.path.join(t, "tree")
        write(os.path.join(d, "x"), b"content")
        nar = nlstest.nar_dump(d)
        cases = {
            "trailing": (nar + b"\0" * 8, "data after the end of the NAR"),
            "truncated": (nar[:-8], "truncated NAR"),
            "bad magic": (b"\x0d" + b"\0" * 7 + b"nix-archive-2\0\0\0" + nar[24:], "bad magic"),
        }
        for name, (data, reason) in cases.items():
            cp = subprocess.run([NAR_TOOL, "hash", "-"], input=data, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
            check(cp.returncode == 2 and reason.encode() in cp.stderr,
                  "%s NAR refused: %s" % (name, cp.stderr.decode().strip()))
        cp = subprocess.run([NAR_TOOL, "hash", "--expect-hash", "sha256:" + "0" * 52, "-"],
                            input=nar, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(cp.returncode == 2 and b"NarHash mismatch" in cp.stderr, "wrong NarHash refused")


def test_file_over_4gib_streamed():
    nlstest.require_root()
    with nlstest.tmpdir() as t:
        d = os.path.join(t, "big")
        os.makedirs(d)
        size = (4 << 30) + 12345
        with open(os.path.join(d, "sparse"), "wb") as f:
            f.truncate(size)
            f.seek(size - 5)
            f.write(b"tail!")
        write(os.path.join(d, "small"), b"small")
        h, nar_size, lines = dump_and_parse(d)
        check(nar_size > size, "NarSize %d > 4 GiB" % nar_size)
        check(h == nix_hash(d), "NAR hash of a >4 GiB file equals nix-hash (%s)" % h)
        check(lines == walk_lines(d), "tree with a >4 GiB file equals the Python walk")


def normalized(node):
    """A .ls node with Nix's defaults made explicit (missing executable = false)."""
    if node["type"] == "regular":
        return {"type": "regular", "size": node["size"],
                "executable": bool(node.get("executable", False)),
                "narOffset": node.get("narOffset")}
    if node["type"] == "directory":
        return {"type": "directory",
                "entries": {k: normalized(v) for k, v in node["entries"].items()}}
    return {"type": "symlink", "target": node["target"]}


def test_binary_cache_nars_and_listings():
    nlstest.require_root()
    closure = nlstest.build_closure("demo")
    paths = [closure["data"], closure["hello"]]
    all_paths = nlstest.closure_of(paths)
    for method in ["xz", "zstd", "bzip2", "none"]:
        with nlstest.tmpdir() as t:
            cache = nlstest.fill_cache(os.path.join(t, "cache"), paths, compression=method,
                                       listing=True)
            for p in all_paths:
                info = nlstest.read_narinfo(cache, p)
                comp = info.get("Compression", "bzip2")
                check(comp == method, "%s: narinfo Compression %s" % (p, comp))
                nar = nlstest.nar_file(cache, p)
                cp = subprocess.run(
                    [NAR_TOOL, "hash", "--decompress", comp, "--expect-size", info["NarSize"],
                     "--expect-hash", info["NarHash"], nar],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                check(cp.returncode == 0,
                      "%s (%s): NAR decompresses and parses to NarHash/NarSize %s" %
                      (os.path.basename(p), method, cp.stderr.decode().strip()))
                ls = os.path.join(cache, nlstest.hash_part(p) + ".ls")
                check(os.path.exists(ls), "%s has a .ls listing" % p)
                cp = subprocess.run([NAR_TOOL, "check-listing", "--decompress", comp, ls, nar],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                check(cp.returncode == 0, "%s (%s): .ls equals our listing %s" %
                      (os.path.basename(p), method, cp.stderr.decode().strip()))
                ours = json.loads(run([NAR_TOOL, "listing", "--decompress", comp, nar]).stdout)
                with open(ls, "rb") as f:
                    theirs = json.loads(f.read())
                check(ours["version"] == theirs["version"] == 1 and
                      normalized(ours["root"]) == normalized(theirs["root"]),
                      "%s (%s): listing JSON trees equal" % (os.path.basename(p), method))
            # Decompression by nar_tool equals the reference tool's; damage is refused.
            data_nar = nlstest.nar_file(cache, closure["data"])
            with open(data_nar, "rb") as f:
                packed = f.read()
            ours = subprocess.run([NAR_TOOL, "decompress", method], input=packed,
                                  stdout=subprocess.PIPE, check=True).stdout
            check(ours == nlstest.nar_dump(closure["data"]),
                  "%s: nar_tool decompress gives nix-store --dump's bytes" % method)
            if method != "none":
                for what, bad in [("truncated", packed[:len(packed) * 2 // 3]),
                                  ("corrupt", packed[:len(packed) // 2] +
                                   bytes([packed[len(packed) // 2] ^ 0x40]) +
                                   packed[len(packed) // 2 + 1:])]:
                    cp = subprocess.run([NAR_TOOL, "hash", "--decompress", method, "--expect-hash",
                                         info_hash(cache, closure["data"]), "-"], input=bad,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    check(cp.returncode == 2, "%s %s NAR refused: %s" %
                          (what, method, cp.stderr.decode().strip()))
    cp = subprocess.run([NAR_TOOL, "decompress", "br"], input=b"x", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    check(cp.returncode == 2 and b"'br'" in cp.stderr, "unknown method br refused by name")


def info_hash(cache, p):
    return nlstest.read_narinfo(cache, p)["NarHash"]


if __name__ == "__main__":
    nlstest.run_tests()
