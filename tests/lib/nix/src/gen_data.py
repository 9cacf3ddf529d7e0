"""Writes the `data` fixture tree into $out (deterministic: same tag -> same bytes).

Run by the data derivation's builder with /usr/bin/python3. Covers what a NAR can hold: regular
files (empty, small, large and incompressible, executable), nested and empty directories, a wide
directory, relative / absolute / dangling symlinks and a symlink into another store path."""
import os
import random
import sys

out, tag, hello = os.environ["out"], os.environ["tag"], os.environ["hello"]
rng = random.Random("nls-data-" + tag)

def write(rel, data, mode=0o644):
    p = os.path.join(out, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)

words = ["nix", "store", "lazy", "fuse", "chunk", "cache", "narinfo", "closure", "build",
         "executor", "bazel", "remote", "hash", "signature", "mount", "kernel"]
write("etc/config", ("name = nls-data-%s\ngreeting = hello\nlevel = 3\n" % tag).encode())
write("share/empty", b"")
write("share/words.txt", " ".join(rng.choice(words) for _ in range(20000)).encode() + b"\n")
write("share/blob.bin", rng.randbytes(3 * 1024 * 1024 + 12345))  # incompressible, > 3 MiB
write("share/exact-64k.bin", rng.randbytes(65536))
write("bin/run-me", b"#!/bin/sh\necho run-me ran\n", 0o755)
write("deep/a/b/c/d/e/f/g/leaf.txt", b"deep leaf\n")
write("names/with space.txt", b"space\n")
with open(os.path.join(os.fsencode(out), b"names/\xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9.txt"), "wb") as f:
    f.write(b"unicode (UTF-8 name)\n")
write("names/a-b", b"dash\n")
write("names/a.b", b"dot\n")
for i in range(300):
    write("wide/file-%03d.txt" % i, ("file %d of the wide directory\n" % i).encode() * (i % 7 + 1))
os.makedirs(os.path.join(out, "empty-dir"))
os.symlink("words.txt", os.path.join(out, "share/words-link"))
os.symlink("../etc/config", os.path.join(out, "share/config-link"))
os.symlink("deep/a/b", os.path.join(out, "dir-link"))
os.symlink("does/not/exist", os.path.join(out, "dangling"))
os.symlink(hello + "/bin/hello", os.path.join(out, "bin/hello"))
sys.exit(0)
