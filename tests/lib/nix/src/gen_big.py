"""Writes one part of the `big` fixture closure into $out (benchmarks: a large closure of which a
small program reads little). Size target $sizeMB; about 60% copies of the host's shared libraries
(/usr/lib/x86_64-linux-gnu/*.so*, the files with index % nparts == part, in sorted order), the rest
generated files (many small text files, some multi-MiB binary files). Deterministic per host."""
import glob
import os
import random
import shutil

out = os.environ["out"]
part, nparts = int(os.environ["part"]), int(os.environ["nparts"])
target = int(os.environ["sizeMB"]) * 1024 * 1024
rng = random.Random("nls-big-%s-%d" % (os.environ["tag"], part))
total = 0

libs = sorted(p for p in glob.glob("/usr/lib/x86_64-linux-gnu/*.so*")
              if os.path.isfile(p) and not os.path.islink(p))
os.makedirs(os.path.join(out, "lib"))
for i, src in enumerate(libs):
    if i % nparts != part:
        continue
    size = os.path.getsize(src)
    if size > 64 * 1024 * 1024 or total + size > target * 0.6:
        continue
    shutil.copyfile(src, os.path.join(out, "lib", os.path.basename(src)))
    total += size

words = [("w%04d" % i).encode() for i in range(4096)]
n = 0
while total < target:
    n += 1
    d = os.path.join(out, "share", "g%02d" % (n % 37))
    os.makedirs(d, exist_ok=True)
    if n % 50 == 0:
        size = rng.randrange(1, 8) * 1024 * 1024
        data = rng.randbytes(size)
    else:
        k = rng.randrange(16, 8192)
        data = b" ".join(rng.choice(words) for _ in range(k)) + b"\n"
    with open(os.path.join(d, "f%05d.dat" % n), "wb") as f:
        f.write(data)
    total += len(data)
with open(os.path.join(out, "share", "small.txt"), "w") as f:
    f.write("the small file the benchmark program reads (part %d)\n" % part)
