"""Helpers shared by the test_mount*.py integration tests (walks, hashes, small derivations)."""

import hashlib
import json
import os
import stat
import sys
import tempfile
import time

import nlstest

# A script run inside the mount namespace (python3 from the host's /usr): prints, as JSON, every
# entry under the given paths with lstat data, symlink targets, directory listings and file
# content hashes. Errors are recorded per path, not raised.
WALK_SCRIPT = r'''
import hashlib, json, os, stat, sys
out = {}
def entry(p):
    try:
        st = os.lstat(p)
    except OSError as e:
        return {"error": e.errno}
    d = {"mode": st.st_mode, "size": st.st_size, "nlink": st.st_nlink, "uid": st.st_uid,
         "gid": st.st_gid, "mtime": int(st.st_mtime)}
    if stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(p)
    elif stat.S_ISDIR(st.st_mode):
        del d["size"]  # a directory's size is the file system's business
        d["list"] = sorted(os.listdir(p))
    elif stat.S_ISREG(st.st_mode) and WITH_DATA:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        d["sha256"] = h.hexdigest()
    return d
WITH_DATA = sys.argv[1] == "data"
for root in sys.argv[2:]:
    out[root] = entry(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for dp, dns, fns in os.walk(root):
            for n in dns + fns:
                p = os.path.join(dp, n)
                out[p] = entry(p)
json.dump(out, sys.stdout, sort_keys=True)
'''

_script_path = None


def walk_script():
    global _script_path
    if _script_path is None:
        fd, _script_path = tempfile.mkstemp(prefix="nls-walk-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(WALK_SCRIPT)
    return _script_path


def walk_host(paths, data=True):
    cp = nlstest.run([sys.executable, walk_script(), "data" if data else "meta"] + list(paths))
    return json.loads(cp.stdout)


def walk_ns(ns, paths, data=True, **kw):
    cp = ns.run(["python3", walk_script(), "data" if data else "meta"] + list(paths), **kw)
    return json.loads(cp.stdout)


def compare_walks(host, mounted):
    """List of differences (host store vs mount), empty when equal. mtime must be 1 on both."""
    diffs = []
    for p in sorted(set(host) | set(mounted)):
        if p not in host or p not in mounted:
            diffs.append("%s only %s" % (p, "in the mount" if p in mounted else "on the host"))
        elif host[p] != mounted[p]:
            keys = sorted(k for k in set(host[p]) | set(mounted[p])
                          if host[p].get(k) != mounted[p].get(k))
            diffs.append("%s: %s" % (p, ", ".join("%s host %.80r mount %.80r" % (
                k, host[p].get(k), mounted[p].get(k)) for k in keys)))
    return diffs


def stat_errno_ns(ns, path):
    """errno of lstat(path) inside ns (0 when it exists)."""
    cp = ns.run(["python3", "-c",
                 "import os,sys\ntry:\n os.lstat(sys.argv[1]); print(0)\n"
                 "except OSError as e: print(e.errno)", path], check=False)
    return int(cp.stdout.strip() or -1)


def nar_sha256_ns(ns, path):
    """sha256 (nix32, as narinfo NarHash) of `nix-store --dump path` run inside ns."""
    cp = ns.run(["bash", "-o", "pipefail", "-c", "nix-store --dump \"$1\" | sha256sum",
                 "sh", path])
    hexdigest = cp.stdout.split()[0]
    b32 = nlstest.run(["nix-hash", "--type", "sha256", "--to-base32", hexdigest]).stdout.strip()
    return "sha256:" + b32


def build_unique_paths(tag, count):
    """`count` tiny fresh store paths (files), built now by real Nix. Returns their store
    paths."""
    expr = ('builtins.genList (i: builtins.derivation { name = "nls-late-%s-${toString i}"; '
            'system = builtins.currentSystem; builder = "/bin/sh"; '
            'args = [ "-c" "echo %s ${toString i} > $out" ]; }) %d' % (tag, tag, count))
    cp = nlstest.run(["nix-build", "--no-out-link", "--option", "sandbox", "false", "-E", expr])
    paths = cp.stdout.strip().splitlines()[-count:]
    assert len(paths) == count and all(p.startswith("/nix/store/") for p in paths), paths
    return paths


def build_unique_path(tag):
    """A tiny fresh store path (a file), built now by real Nix. Returns its store path."""
    return build_unique_paths(tag, 1)[0]


def wait_until(cond, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def xattrs_ns(ns, path="/nix/store"):
    cp = ns.run(["python3", "-c",
                 "import os,sys,json\np=sys.argv[1]\n"
                 "print(json.dumps({n: os.getxattr(p, n).decode() for n in os.listxattr(p)}))",
                 path])
    return json.loads(cp.stdout)
