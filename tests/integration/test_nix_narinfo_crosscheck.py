#!/usr/bin/env python3
"""Cross-check nls_fetch's narinfo parsing, writing and signature checks against real Nix.

Builds three small store paths with real Nix (one references another, one references itself and
both others), copies them into a file:// binary cache signed with a key from
`nix-store --generate-binary-cache-key`, then runs tests/tools/narinfo_check over every narinfo
Nix wrote and compares with what Nix itself says:
  * the signature verifies with the public key, and our own Ed25519 signature of our
    fingerprint is byte-identical to Nix's (Ed25519 is deterministic);
  * NarHash/NarSize equal `nix-store --dump PATH | sha256sum` / its length and
    `nix-hash --type sha256 --base32 PATH`;
  * References equal `nix-store -q --references PATH`, and every field equals
    `nix path-info --json --store file://...` (Nix's own reading of the narinfo);
  * ToString() reproduces Nix's file byte for byte.
Then checks that tampered narinfos, a wrong key and a wrong key name are rejected.

Needs root and Debian's nix-bin (no daemon). Env: NLS_BUILD_DIR (set by ctest) or
NLS_NARINFO_CHECK (path of the checker binary).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

NIX = ["nix", "--extra-experimental-features", "nix-command"]
NIX_BUILD_OPTS = ["--option", "sandbox", "false", "--option", "build-users-group", ""]


def find_checker():
    explicit = os.environ.get("NLS_NARINFO_CHECK")
    if explicit:
        return explicit
    build = os.environ.get("NLS_BUILD_DIR")
    if not build:
        raise RuntimeError("set NLS_BUILD_DIR (ctest does) or NLS_NARINFO_CHECK")
    for candidate in ("tests/narinfo_check", "narinfo_check", "tests/tools/narinfo_check"):
        path = os.path.join(build, candidate)
        if os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"narinfo_check not built in {build} (ninja narinfo_check)")


def run(cmd, **kw):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if res.returncode != 0:
        raise AssertionError(
            f"{cmd!r} failed ({res.returncode}):\n{res.stderr.decode(errors='replace')}")
    return res.stdout


EXPR = r"""
let
  mk = name: script: builtins.derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
  dep = mk "nls-xcheck-dep" "echo hello > $out";
  top = mk "nls-xcheck-top" ''
    /bin/mkdir $out
    echo ${dep} > $out/ref
    echo $out > $out/self
    /bin/ln -s ref $out/link
    printf '#!/bin/sh\necho hi\n' > $out/run
    /bin/chmod +x $out/run
  '';
  multi = mk "nls-xcheck-multi" ''
    /bin/mkdir -p $out/a/b
    echo ${top} ${dep} > $out/a/b/refs
    /bin/dd if=/dev/zero of=$out/a/zeros bs=1024 count=70 2>/dev/null
  '';
in [ dep top multi ]
"""


class NarinfoCrossCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.checker = find_checker()
        cls.tmp = tempfile.mkdtemp(prefix="nls-narinfo-xcheck-")
        try:
            cls._prepare()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def _prepare(cls):
        t = cls.tmp
        cls.sec = os.path.join(t, "key.sec")
        cls.pub_file = os.path.join(t, "key.pub")
        run(["nix-store", "--generate-binary-cache-key", "nls-xcheck-1", cls.sec, cls.pub_file])
        with open(cls.pub_file) as f:
            cls.pub = f.read().strip()
        # A second key with the same name: its signatures must not verify against ours.
        run(["nix-store", "--generate-binary-cache-key", "nls-xcheck-1",
             os.path.join(t, "other.sec"), os.path.join(t, "other.pub")])
        with open(os.path.join(t, "other.pub")) as f:
            cls.other_pub = f.read().strip()

        expr = os.path.join(t, "paths.nix")
        with open(expr, "w") as f:
            f.write(EXPR)
        out = run(["nix-build", *NIX_BUILD_OPTS, "--no-out-link", expr]).decode()
        cls.paths = [line for line in out.split("\n") if line.startswith("/nix/store/")]
        assert len(cls.paths) == 3, out

        cls.cache = os.path.join(t, "cache")
        run([*NIX, "copy", "--to",
             f"file://{cls.cache}?secret-key={cls.sec}&compression=zstd", *cls.paths])
        cls.narinfos = sorted(
            os.path.join(cls.cache, n) for n in os.listdir(cls.cache) if n.endswith(".narinfo"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, *args, expect_rc=None):
        res = subprocess.run([self.checker, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        if expect_rc is not None:
            self.assertEqual(res.returncode, expect_rc, res.stdout + res.stderr)
        return [json.loads(line) for line in res.stdout.decode().splitlines()]

    def test_every_narinfo_matches_nix(self):
        self.assertEqual(len(self.narinfos), 3, os.listdir(self.cache))
        results = self.check("--key", self.pub, "--secret-key-file", self.sec, *self.narinfos,
                             expect_rc=0)
        by_path = {r["store_path"]: r for r in results}
        self.assertEqual(sorted(by_path), sorted(self.paths))

        nix_info = {i["path"]: i for i in json.loads(run(
            [*NIX, "path-info", "--json", "--store", f"file://{self.cache}", *self.paths]))}

        for path in self.paths:
            with self.subTest(path=path):
                r = by_path[path]
                self.assertTrue(r["ok"], r)
                self.assertTrue(r["verified"], r)
                self.assertTrue(r["rewrite_identical"], r)
                self.assertTrue(r["roundtrip_equal"], r)
                self.assertEqual(len(r["sigs"]), 1)
                self.assertEqual(r["our_sig"], r["sigs"][0])

                # NarHash / NarSize against the NAR Nix serialises from the store.
                nar = run(["nix-store", "--dump", path])
                self.assertEqual(r["nar_size"], len(nar))
                self.assertEqual(r["nar_hash_base16"], hashlib.sha256(nar).hexdigest())
                nix32 = run(["nix-hash", "--type", "sha256", "--base32", path]).decode().strip()
                self.assertEqual(r["nar_hash"], "sha256:" + nix32)

                # References against the local store's database.
                refs = run(["nix-store", "-q", "--references", path]).decode().split()
                self.assertEqual(sorted(r["references"]), sorted(os.path.basename(p) for p in refs))

                # Every field against Nix's own reading of the narinfo.
                n = nix_info[path]
                self.assertEqual(r["nar_hash_sri"], n["narHash"])
                self.assertEqual(r["nar_size"], n["narSize"])
                self.assertEqual(sorted("/nix/store/" + x for x in r["references"]),
                                 sorted(n["references"]))
                self.assertEqual("/nix/store/" + r["deriver"], n["deriver"])
                self.assertEqual(r["sigs"], n["signatures"])
                self.assertEqual(r["url"], n["url"])
                self.assertEqual(r["file_hash_sri"], n["downloadHash"])
                self.assertEqual(r["file_size"], n["downloadSize"])
                self.assertEqual(r["compression"], "zstd")
                self.assertTrue(os.path.isfile(os.path.join(self.cache, r["url"])))

        # The reference structure we built: dep has none, top refers to dep and itself,
        # multi to dep and top.
        dep, top, multi = self.paths
        base = os.path.basename
        self.assertEqual(by_path[dep]["references"], [])
        self.assertEqual(sorted(by_path[top]["references"]), sorted([base(dep), base(top)]))
        self.assertEqual(sorted(by_path[multi]["references"]), sorted([base(dep), base(top)]))
        # The fingerprint lists full reference paths, sorted.
        fp = by_path[multi]["fingerprint"].split(";")
        self.assertEqual(fp[4], ",".join(sorted([dep, top])))

    def test_cache_info(self):
        [r] = self.check(os.path.join(self.cache, "nix-cache-info"), expect_rc=0)
        self.assertEqual(r["store_dir"], "/nix/store")

    def test_wrong_key_fails(self):
        for r in self.check("--key", self.other_pub, *self.narinfos, expect_rc=1):
            self.assertFalse(r["verified"], r)
        renamed = "nls-xcheck-2:" + self.pub.split(":", 1)[1]
        for r in self.check("--key", renamed, *self.narinfos, expect_rc=1):
            self.assertFalse(r["verified"], r)
        # One good key among several suffices.
        for r in self.check("--key", self.other_pub, "--key", renamed, "--key", self.pub,
                            *self.narinfos, expect_rc=0):
            self.assertTrue(r["verified"], r)

    def tampered(self, name, text):
        d = os.path.join(self.tmp, "tampered-" + name)
        os.makedirs(d, exist_ok=True)
        # Keep the <hashpart>.narinfo name so the hash-part check applies.
        path = os.path.join(d, os.path.basename(self.narinfos_by_refs()))
        with open(path, "w") as f:
            f.write(text)
        return path

    def narinfos_by_refs(self):
        # The narinfo of the path with the most references.
        best = None
        for p in self.narinfos:
            with open(p) as f:
                refs = [l for l in f if l.startswith("References:")][0].split()[1:]
            if best is None or len(refs) > best[0]:
                best = (len(refs), p)
        return best[1]

    def test_tampered_signed_fields_fail(self):
        with open(self.narinfos_by_refs()) as f:
            original = f.read()
        lines = original.splitlines(keepends=True)

        def edit(key, fn):
            return "".join(fn(l) if l.startswith(key + ": ") else l for l in lines)

        def bump_size(l):
            return "NarSize: %d\n" % (int(l.split()[1]) + 1)

        def flip_hash(l):
            h = l.rstrip("\n")
            return h[:-1] + ("0" if h[-1] != "0" else "1") + "\n"

        def drop_first_ref(l):
            return "References: " + " ".join(l.split()[2:]) + "\n"

        cases = {
            "narsize": edit("NarSize", bump_size),
            "narhash": edit("NarHash", flip_hash),
            "reference": edit("References", drop_first_ref),
            "nosig": "".join(l for l in lines if not l.startswith("Sig: ")),
        }
        for name, text in cases.items():
            with self.subTest(case=name):
                self.assertNotEqual(text, original)
                [r] = self.check("--key", self.pub, self.tampered(name, text), expect_rc=1)
                self.assertTrue("error" in r or not r["verified"], r)
        # Unsigned fields may change.
        text = edit("URL", lambda l: "URL: nar/elsewhere.nar.zst\n")
        [r] = self.check("--key", self.pub, self.tampered("url", text), expect_rc=0)
        self.assertTrue(r["verified"], r)

    def test_malformed_narinfo_errors_name_file_and_line(self):
        with open(self.narinfos_by_refs()) as f:
            original = f.read()
        cases = {
            "no-final-newline": (original.rstrip("\n"), "does not end with a newline"),
            "bad-narsize": (original.replace("NarSize: ", "NarSize: x"), "invalid NarSize"),
            "no-space": (original.replace("URL: ", "URL:"), "no space after ':'"),
            "other-path": (original.replace("StorePath: /nix/store/", "StorePath: /nix/store/0", 1)
                           .replace("-nls-xcheck", "nls-xcheck", 1), "StorePath"),
        }
        for name, (text, reason) in cases.items():
            with self.subTest(case=name):
                path = self.tampered(name, text)
                [r] = self.check("--key", self.pub, path, expect_rc=1)
                self.assertIn(path, r["error"])
                self.assertRegex(r["error"], r" line \d+")
                self.assertIn(reason, r["error"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
