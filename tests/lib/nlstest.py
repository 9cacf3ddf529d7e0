"""nlstest: shared fixtures for nix-lazy-store's integration tests, demo and benchmarks.

Python 3 standard library only. Everything here is real: Debian's nix-bin (2.8) builds store paths
into the machine's /nix/store (as root, no daemon), `nix copy` fills file:// binary caches, Debian's
nginx serves them on 127.0.0.1, and nix-lazy-store is mounted at /nix/store only inside a private
mount namespace (`unshare -m`), so the test process and every nix command keep seeing the host's
real /nix/store. Needs root, nix-bin, nginx-light, util-linux, fuse3, patchelf, gcc, openssl
(all in packaging/install-deps.sh).

Importing this module sets NIX_CONFIG (appending to any existing value) so that nix works here:
`sandbox = false`, `build-users-group =` (no nixbld group) and `substituters =` (no network).

API (others code against this; keep it source-compatible)
-----------------------------------------------------------
Closures (tests/lib/nix/*.nix; idempotent: the same arguments give the same store paths and nix
does not rebuild valid paths; results are also memoised per process):

  build_closure(name="demo") -> dict
      Builds tests/lib/nix/closure.nix with tag=name (different names give disjoint store paths).
      Keys -> store paths: "glibc" (Debian's ld.so/libc/libm/... copied), "zlib" (libz, RPATH ->
      glibc), "greet" (libgreet.so compiled here -> glibc), "hello" (bin/hello: ELF interpreter and
      RPATH in glibc/zlib/greet; `hello` prints a greeting, `hello FILE...` prints
      "<size> <crc32-hex> <FILE>" per file), "dash" (Debian's dash patched to glibc; bin/sh),
      "data" (files: etc/config, share/{empty,words.txt,blob.bin (>3 MiB incompressible),
      exact-64k.bin,words-link,config-link}, bin/run-me (executable), bin/hello (symlink into
      hello), deep/a/b/c/d/e/f/g/leaf.txt, names/ (space, UTF-8, a-b, a.b), wide/ (300 files),
      empty-dir/, dir-link, dangling), "tool" (bin/nls-tool: a #!${dash}/bin/sh script reading
      data with hello), "all" (symlinks to all of the above).
      Plus "closure": sorted list of every store path in the closure of "all".
      The expected output of a program is whatever it prints when run from the host's store.

  build_big_closure(name="big", total_mb=300, parts=6) -> dict
      tests/lib/nix/big.nix: "part-0".."part-<parts-1>" (about total_mb/parts MiB each: host
      shared libraries + generated files), "hello" (the small fixture program, tag=name), "env"
      (bin/hello -> hello, part-<i> -> part paths), "closure" (sorted list, closure of env),
      "program" = env + "/bin/hello", "small_file" = part-0 + "/share/small.txt".
      A lazy mount running `program small_file` needs only the hello closure and one small file.

  closure_of(paths) -> sorted list of store paths (nix-store -qR)
  references_of(path) -> sorted list of store paths (nix-store -q --references)

Binary caches:
  make_key(dirpath, name="test-cache-1") -> (secret_key_file, public_key_string)
  fill_cache(cache_dir, paths, compression="zstd", secret_key=None, listing=True, priority=None)
      -> cache_dir.  `nix copy --to file://cache_dir?...` of the closure of paths; narinfos are
      signed when secret_key (a file from make_key) is given; priority rewrites nix-cache-info.
  signed_cache(dirpath, paths, name="bc") -> (cache_dir, secret_key_file, public_key_string)
      make_key in dirpath/keys-<name>, then fill_cache(dirpath/<name>, paths) signed with it.
  read_narinfo(cache_dir, store_path) -> dict   (parse_narinfo(text) -> dict; "Sig" and
      "References" are lists; "References" holds base names as in the file)
  narinfo_file(cache_dir, store_path) -> path of <hashpart>.narinfo
  nar_file(cache_dir, store_path) -> path of the (compressed) NAR file named by the narinfo URL
  hash_part(store_path) -> the 32-character hash part
  nar_hash(path) -> "sha256:<nix32>" of the NAR serialisation (nix-hash --type sha256 --base32),
      directly comparable with a narinfo's NarHash
  nar_dump(path) -> bytes (nix-store --dump)

Processes and places:
  run(cmd, check=True, input=None, env=None, cwd=None, timeout=600, capture=True)
      -> CompletedProcess (text).  On failure raises CommandError whose message has the command,
      exit status, stdout and stderr (and prints them).
  find_built(subdir, name, first=()) -> path of a built tool ($NLS_BUILD_DIR, then build*/)
  free_port() -> int (a currently free TCP port on 127.0.0.1)
  tmpdir(prefix="nls-test-", base=None) -> context manager yielding a fresh directory, removed
      on exit (unmounts nothing: use MountNamespace for mounts)
  delete_from_local_store(paths) -> list of deleted paths (referrers first; paths still alive,
      e.g. referenced by a path that is not deleted or in use, are skipped)

  class Nginx(root_dir, port=0, extra_config="", tls=False, http2=False, server_config="")
      Context manager. Debian's nginx, private prefix/config in a temp dir, `daemon off`, listening
      on 127.0.0.1:port (port 0 = a free one), serving root_dir (GET/HEAD only).
      .url ("http://127.0.0.1:PORT" or "https://127.0.0.1:PORT"), .port, .ca_file (tls=True:
      a CA certificate that signed the server certificate for IP 127.0.0.1 and localhost),
      .requests(at_least=0, timeout=5) -> list of request URIs in order (e.g. "/nix-cache-info",
      "/<hash>.narinfo", "/nar/<...>.nar.zst"; nginx logs a request after answering it, so
      at_least=N waits until N are logged), .entries() -> list of dicts {method, uri, status, bytes, protocol,
      range}, .clear_log(), .error_log() -> str, .stop().  extra_config goes into the http{}
      block, server_config into the server{} block (e.g. "limit_rate 1m;" or a location).

  class MountNamespace()
      Context manager. A private mount namespace held by `unshare -m --propagation private --
      sleep infinity`. .pid (holder), .run(argv, **kw) -> CompletedProcess (like run(), argv run
      via `nsenter -t PID -m --`), .popen(argv, **kw) -> Popen (same; kw passed to Popen),
      .mounts() -> list of (source, mountpoint, fstype, options) inside the namespace,
      .is_mounted(path, fstype_prefix="") -> bool, .close().  On exit every process in the
      namespace is killed, /nix/store is lazily unmounted inside it and the holder is killed.

  class LazyStore(ns, binary=None, substituters=(), cache_dir=None, trusted_keys=(),
                  extra_args=(), mountpoint="/nix/store", log_level=None, timeout=20, env=None)
      Starts `nix-lazy-store mount --foreground [--substituter U]... [--trusted-public-key K]...
      [--cache-dir D] [--log-level L] EXTRA... MOUNTPOINT` inside ns (binary: argument, else env
      NLS_BINARY, else build*/fuse/nix-lazy-store in the source tree; env: variables added to this
      process's environment for the daemon, a value of None removes one) and waits until a fuse mount
      is at mountpoint in the namespace (fails with the daemon's log after `timeout` s or when the
      daemon exits). .log() -> daemon stderr so far, .proc (Popen), .stop(timeout=20) (SIGTERM,
      wait, returns exit status), .kill() (SIGKILL, wait), .is_mounted(); also a context manager.

Test scripts:
  check(cond, what) prints "ok: what" or raises AssertionError("FAILED: what").
  run_tests(namespace=None) runs every function named test_* of the calling module (in source
      order), printing PASS/FAIL with tracebacks and a summary, then exits 0 or 1. Use it as
      `if __name__ == "__main__": nlstest.run_tests()`.
  require_root() fails (never skips) when not root.
"""

import contextlib
import functools
import glob
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
NIX_DIR = os.path.join(HERE, "nix")
SOURCE_DIR = os.environ.get("NLS_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
STORE_DIR = "/nix/store"

_NIX_SETTINGS = "sandbox = false\nbuild-users-group =\nsubstituters =\n"
if _NIX_SETTINGS not in os.environ.get("NIX_CONFIG", ""):
    os.environ["NIX_CONFIG"] = os.environ.get("NIX_CONFIG", "") + "\n" + _NIX_SETTINGS
os.environ.setdefault("HOME", "/root")


# ----------------------------------------------------------------------------------------------
# Running commands


class CommandError(RuntimeError):
    """A command failed; the message holds the command, status, stdout and stderr."""

    def __init__(self, cmd, returncode, stdout, stderr, note=""):
        self.cmd, self.returncode, self.stdout, self.stderr = cmd, returncode, stdout, stderr
        msg = "command failed (%s): %s%s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            "exit status %s" % returncode if returncode is not None else "timeout",
            " ".join(str(c) for c in cmd), (" (%s)" % note) if note else "",
            _tail(stdout), _tail(stderr))
        super().__init__(msg)


def _tail(s, limit=20000):
    if s is None:
        return ""
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    return s if len(s) <= limit else "[... %d bytes cut ...]\n" % (len(s) - limit) + s[-limit:]


def run(cmd, check=True, input=None, env=None, cwd=None, timeout=600, capture=True):
    """subprocess.run(text=True) with useful failures: raises CommandError (printed too)."""
    cmd = [str(c) for c in cmd]
    try:
        cp = subprocess.run(cmd, input=input, env=env, cwd=cwd, timeout=timeout, text=True,
                            stdin=None if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    except subprocess.TimeoutExpired as e:
        err = CommandError(cmd, None, e.stdout, e.stderr, "timed out after %ss" % timeout)
        print(err, file=sys.stderr, flush=True)
        raise err from None
    except FileNotFoundError as e:
        raise CommandError(cmd, None, "", str(e), "program not found") from None
    if check and cp.returncode != 0:
        err = CommandError(cmd, cp.returncode, cp.stdout, cp.stderr)
        print(err, file=sys.stderr, flush=True)
        raise err
    return cp


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tmpdir(prefix="nls-test-", base=None):
    """A fresh directory, removed (recursively) on exit."""
    d = tempfile.mkdtemp(prefix=prefix, dir=base)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Closures


def _nix_build(expr_file, attrs, args):
    cmd = ["nix-build", "--option", "sandbox", "false", "--no-out-link", expr_file]
    for k, v in args.items():
        cmd += ["--argstr", k, str(v)]
    for a in attrs:
        cmd += ["-A", a]
    out = run(cmd, timeout=1800).stdout.split()
    if len(out) != len(attrs):
        raise RuntimeError("nix-build %s printed %d paths for attributes %s: %s"
                           % (expr_file, len(out), attrs, out))
    return dict(zip(attrs, out))


def closure_of(paths):
    """Sorted store paths of the closure of paths (nix-store -qR)."""
    if isinstance(paths, str):
        paths = [paths]
    return sorted(set(run(["nix-store", "-qR"] + list(paths)).stdout.split()))


def references_of(path):
    return sorted(run(["nix-store", "-q", "--references", path]).stdout.split())


_SMALL_ATTRS = ["glibc", "zlib", "greet", "hello", "dash", "data", "tool", "all"]


@functools.lru_cache(maxsize=None)
def _build_closure(name):
    res = _nix_build(os.path.join(NIX_DIR, "closure.nix"), _SMALL_ATTRS, {"tag": name})
    res["closure"] = closure_of(res["all"])
    return res


def build_closure(name="demo"):
    """Build the small real closure (see module docstring); returns {key: store path, "closure":
    [...]}. Paths are built again when they were deleted from the host store."""
    res = _build_closure(name)
    if not all(os.path.exists(p) for p in res["closure"]):
        _build_closure.cache_clear()
        res = _build_closure(name)
    return {k: (list(v) if isinstance(v, list) else v) for k, v in res.items()}


@functools.lru_cache(maxsize=None)
def _build_big_closure(name, total_mb, parts):
    attrs = ["env", "hello"] + ["part-%d" % i for i in range(parts)]
    res = _nix_build(os.path.join(NIX_DIR, "big.nix"), attrs,
                     {"tag": name, "totalMB": total_mb, "parts": parts})
    res["closure"] = closure_of(res["env"])
    res["program"] = res["env"] + "/bin/hello"
    res["small_file"] = res["part-0"] + "/share/small.txt"
    return res


def build_big_closure(name="big", total_mb=300, parts=6):
    """Build the benchmark closure (see module docstring). total_mb/parts MiB per part."""
    res = _build_big_closure(name, int(total_mb), int(parts))
    if not all(os.path.exists(p) for p in res["closure"]):
        _build_big_closure.cache_clear()
        res = _build_big_closure(name, int(total_mb), int(parts))
    return {k: (list(v) if isinstance(v, list) else v) for k, v in res.items()}


def delete_from_local_store(paths):
    """Delete paths from the host store (nix-store --delete), referrers first. Paths that are
    still alive (referenced by a valid path outside the set, a GC root or a running process) are
    skipped. Returns the deleted paths."""
    remaining = [p for p in dict.fromkeys(paths) if os.path.lexists(p)]
    deleted = []
    progress = True
    while remaining and progress:
        progress = False
        for p in list(remaining):
            cp = run(["nix-store", "--delete", p], check=False)
            if cp.returncode == 0 and not os.path.lexists(p):
                deleted.append(p)
                remaining.remove(p)
                progress = True
    return deleted


# ----------------------------------------------------------------------------------------------
# Binary caches


def hash_part(store_path):
    base = os.path.basename(store_path.rstrip("/"))
    if len(base) < 33 or base[32] != "-":
        raise ValueError("not a store path: %r" % store_path)
    return base[:32]


def nar_hash(path):
    """NAR hash of a path as narinfo writes it: "sha256:<nix32>"."""
    return "sha256:" + run(["nix-hash", "--type", "sha256", "--base32", path]).stdout.strip()


def nar_dump(path):
    """The NAR serialisation of path (nix-store --dump) as bytes."""
    return subprocess.run(["nix-store", "--dump", path], check=True, stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL).stdout


def make_key(dirpath, name="test-cache-1"):
    """Generate a binary cache signing key pair in dirpath. Returns (secret_key_file,
    public_key_string) where the public key is "<name>:<base64>"."""
    os.makedirs(dirpath, exist_ok=True)
    sec = os.path.join(dirpath, name + ".sec")
    pub = os.path.join(dirpath, name + ".pub")
    run(["nix-store", "--generate-binary-cache-key", name, sec, pub])
    with open(pub) as f:
        return sec, f.read().strip()


def fill_cache(cache_dir, paths, compression="zstd", secret_key=None, listing=True,
               priority=None):
    """nix copy the closure of paths into the file:// binary cache cache_dir (created if needed).
    Signs narinfos with secret_key (a secret key file) when given. priority: rewrite the
    Priority line of nix-cache-info. Returns cache_dir."""
    if isinstance(paths, str):
        paths = [paths]
    cache_dir = os.path.abspath(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)
    url = "file://%s?compression=%s&write-nar-listing=%s" % (
        cache_dir, compression, "true" if listing else "false")
    if secret_key:
        url += "&secret-key=" + os.path.abspath(secret_key)
    run(["nix", "--extra-experimental-features", "nix-command", "copy", "--to", url]
        + list(paths), timeout=1800)
    if priority is not None:
        info = os.path.join(cache_dir, "nix-cache-info")
        with open(info) as f:
            lines = [ln for ln in f.read().splitlines() if ln and not ln.startswith("Priority:")]
        lines.append("Priority: %d" % int(priority))
        with open(info, "w") as f:
            f.write("\n".join(lines) + "\n")
    return cache_dir


def signed_cache(dirpath, paths, name="bc"):
    """A signed file:// binary cache of the closure of paths: a key pair from make_key in
    dirpath/keys-<name>, the cache from fill_cache in dirpath/<name>. Returns (cache_dir,
    secret_key_file, public_key_string)."""
    sec, pub = make_key(os.path.join(dirpath, "keys-" + name))
    return fill_cache(os.path.join(dirpath, name), paths, secret_key=sec), sec, pub


def parse_narinfo(text):
    """Parse narinfo text into a dict; "Sig" is a list, "References" a list of base names."""
    d = {"Sig": [], "References": []}
    for line in text.splitlines():
        if not line:
            continue
        k, sep, v = line.partition(": ")
        if not sep:
            raise ValueError("bad narinfo line %r" % line)
        if k == "Sig":
            d["Sig"].append(v)
        elif k == "References":
            d["References"] = v.split()
        else:
            d[k] = v
    return d


def narinfo_file(cache_dir, store_path):
    return os.path.join(cache_dir, hash_part(store_path) + ".narinfo")


def read_narinfo(cache_dir, store_path):
    with open(narinfo_file(cache_dir, store_path)) as f:
        return parse_narinfo(f.read())


def nar_file(cache_dir, store_path):
    return os.path.join(cache_dir, read_narinfo(cache_dir, store_path)["URL"])


# ----------------------------------------------------------------------------------------------
# nginx


def _make_tls_cert(d):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI)."""
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.crt"))
    ext = os.path.join(d, "server.ext")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
         "-subj", "/CN=nix-lazy-store test CA", "-keyout", ca_key, "-out", ca_crt])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=127.0.0.1",
         "-keyout", key, "-out", csr])
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", crt])
    return ca_crt, crt, key


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
  default_type application/octet-stream;
  types {{ text/x-nix-narinfo narinfo; text/plain nix-cache-info; }}
  log_format nls '$request_method $request_uri $status $body_bytes_sent $server_protocol '
                 '"$http_range"';
  access_log {prefix}/access.log nls;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  keepalive_requests 100000;
  server_tokens off;
{extra_config}
  server {{
    listen 127.0.0.1:{port}{listen_opts};
    server_name localhost 127.0.0.1;
{tls_config}
    root {root};
    autoindex off;
    location / {{
      limit_except GET {{ deny all; }}
    }}
{server_config}
  }}
}}
"""


class Nginx:
    """Debian's nginx serving root_dir on 127.0.0.1 (see module docstring)."""

    def __init__(self, root_dir, port=0, extra_config="", tls=False, http2=False,
                 server_config="", start=True):
        self.root_dir = os.path.abspath(root_dir)
        self.tls, self.http2 = tls, http2
        self.extra_config, self.server_config = extra_config, server_config
        self.fixed_port = port
        self.port = None
        self.proc = None
        self.ca_file = None
        self.prefix = tempfile.mkdtemp(prefix="nls-nginx-")
        for sub in ("tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            os.makedirs(os.path.join(self.prefix, sub), exist_ok=True)
        if tls:
            self.ca_file, self._crt, self._key = _make_tls_cert(self.prefix)
        if start:
            self.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def _write_conf(self, port):
        opts = (" ssl" if self.tls else "") + (" http2" if self.http2 else "")
        tls_conf = ""
        if self.tls:
            tls_conf = "    ssl_certificate %s;\n    ssl_certificate_key %s;\n" % (
                self._crt, self._key)
        conf = _NGINX_CONF.format(prefix=self.prefix, port=port, listen_opts=opts,
                                  tls_config=tls_conf, root=self.root_dir,
                                  extra_config=self.extra_config,
                                  server_config=self.server_config)
        path = os.path.join(self.prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return path

    def start(self):
        if not os.path.isdir(self.root_dir):
            raise RuntimeError("nginx root %s is not a directory" % self.root_dir)
        last_err = ""
        for _attempt in range(5):
            port = self.fixed_port or free_port()
            conf = self._write_conf(port)
            run(["nginx", "-t", "-q", "-p", self.prefix, "-c", conf])
            errlog = open(os.path.join(self.prefix, "stderr.log"), "ab")
            self.proc = subprocess.Popen(["nginx", "-p", self.prefix, "-c", conf],
                                         stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog)
            errlog.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        self.port = port
                        return self
                except OSError:
                    time.sleep(0.05)
            last_err = self.error_log()
            self._terminate()
            if self.fixed_port or "Address already in use" not in last_err:
                break
        raise RuntimeError("nginx did not start serving %s:\n%s" % (self.root_dir, last_err))

    def _terminate(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self):
        self._terminate()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def error_log(self):
        out = []
        for n in ("stderr.log", "error.log"):
            p = os.path.join(self.prefix, n)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f.read())
        return "\n".join(out)

    def entries(self):
        """Access log entries: dicts with method, uri, status, bytes, protocol, range."""
        p = os.path.join(self.prefix, "access.log")
        if not os.path.exists(p):
            return []
        res = []
        with open(p, errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 5)
                if len(parts) < 6:
                    continue
                rng = parts[5].strip('"')
                res.append({"method": parts[0], "uri": parts[1], "status": int(parts[2]),
                            "bytes": int(parts[3]), "protocol": parts[4],
                            "range": None if rng in ("", "-") else rng})
        return res

    def requests(self, at_least=0, timeout=5):
        """Request URIs (path + query) in the order nginx logged them. nginx logs a request
        after answering it, so a client may see the answer first: with at_least=N, wait (up to
        `timeout` s) until N requests are logged."""
        deadline = time.monotonic() + timeout
        while True:
            uris = [e["uri"] for e in self.entries()]
            if len(uris) >= at_least or time.monotonic() > deadline:
                return uris
            time.sleep(0.01)

    def clear_log(self):
        p = os.path.join(self.prefix, "access.log")
        if os.path.exists(p):
            with open(p, "w"):
                pass


# ----------------------------------------------------------------------------------------------
# Mount namespaces and the lazy store


def _ns_id(pid):
    try:
        return os.readlink("/proc/%s/ns/mnt" % pid)
    except OSError:
        return None


class MountNamespace:
    """A private mount namespace held by a sleeping process (see module docstring)."""

    def __init__(self):
        # A fresh machine has no /nix/store before the first nix-build; the mount point must exist.
        os.makedirs(STORE_DIR, mode=0o1775, exist_ok=True)
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.holder.pid
        mine = _ns_id("self")
        deadline = time.monotonic() + 10
        while True:
            if self.holder.poll() is not None:
                raise RuntimeError("unshare -m failed (exit %s): %s" % (
                    self.holder.returncode, self.holder.stderr.read().decode(errors="replace")))
            ns = _ns_id(self.pid)
            # Wait for unshare to have unshared and exec'd sleep (so /proc/PID/mounts is final).
            if ns and ns != mine and _comm(self.pid) == "sleep":
                self.ns = ns
                break
            if time.monotonic() > deadline:
                self.holder.kill()
                raise RuntimeError("unshare -m did not create a mount namespace within 10 s")
            time.sleep(0.01)
        self._procs = []
        self.closed = False

    def _argv(self, argv):
        return ["nsenter", "-t", str(self.pid), "-m", "--"] + [str(a) for a in argv]

    def run(self, argv, **kw):
        """Like run(), inside the namespace."""
        return run(self._argv(argv), **kw)

    def popen(self, argv, **kw):
        """subprocess.Popen inside the namespace (killed on close())."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self._argv(argv), **kw)
        self._procs.append(p)
        return p

    def mounts(self):
        """(source, mountpoint, fstype, options) of every mount in the namespace."""
        with open("/proc/%d/mounts" % self.pid) as f:
            return [tuple(line.split()[:4]) for line in f if line.strip()]

    def is_mounted(self, path, fstype_prefix=""):
        return any(m[1] == path and m[2].startswith(fstype_prefix) for m in self.mounts())

    def pids(self):
        """Processes (other than the holder) in this mount namespace."""
        res = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != self.pid and _ns_id(d) == self.ns:
                res.append(int(d))
        return res

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        if self.holder.poll() is None:
            for _ in range(8):
                mounted = [m for m in self.mounts() if m[1] == STORE_DIR]
                if not mounted:
                    break
                run(self._argv(["umount", "-l", STORE_DIR]), check=False)
            self.holder.kill()
        self.holder.wait()
        if self.holder.stderr:
            self.holder.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _comm(pid):
    try:
        with open("/proc/%s/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def find_built(subdir, name, first=()):
    """Path of a program the build made (a test tool or benchmark): the candidates in `first`
    (explicit paths, empty ones skipped), then $NLS_BUILD_DIR/<subdir>/<name> (ctest sets it),
    then build*/<subdir>/<name> and build*/*/<subdir>/<name> under the source tree. Raises
    RuntimeError saying where it looked."""
    cands = [c for c in first if c]
    if os.environ.get("NLS_BUILD_DIR"):
        cands.append(os.path.join(os.environ["NLS_BUILD_DIR"], subdir, name))
    for pattern in (("build*", subdir, name), ("build*", "*", subdir, name)):
        cands += sorted(glob.glob(os.path.join(SOURCE_DIR, *pattern)))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    raise RuntimeError("%s not found (build its target, or set NLS_BUILD_DIR); looked at %s" %
                       (name, cands))


def find_binary():
    """NLS_BINARY, else the newest build*/fuse/nix-lazy-store under the source tree."""
    b = os.environ.get("NLS_BINARY")
    if b:
        return b
    cands = []
    for d in os.listdir(SOURCE_DIR):
        p = os.path.join(SOURCE_DIR, d, "fuse", "nix-lazy-store")
        if d.startswith("build") and os.path.exists(p):
            cands.append((os.path.getmtime(p), p))
    if not cands:
        raise RuntimeError("nix-lazy-store binary not found: set NLS_BINARY or build it "
                           "(cmake -S %s -B build && ninja -C build)" % SOURCE_DIR)
    return max(cands)[1]


class LazyStore:
    """nix-lazy-store mounted inside a MountNamespace (see module docstring)."""

    def __init__(self, ns, binary=None, substituters=(), cache_dir=None, trusted_keys=(),
                 extra_args=(), mountpoint=STORE_DIR, log_level=None, timeout=20, env=None):
        self.ns = ns
        self.binary = binary or find_binary()
        self.mountpoint = mountpoint
        if isinstance(substituters, str):
            substituters = [substituters]
        if isinstance(trusted_keys, str):
            trusted_keys = [trusted_keys]
        argv = [self.binary, "mount", "--foreground"]
        for s in substituters:
            argv += ["--substituter", s]
        for k in trusted_keys:
            argv += ["--trusted-public-key", k]
        if cache_dir:
            argv += ["--cache-dir", cache_dir]
        if log_level:
            argv += ["--log-level", log_level]
        argv += [str(a) for a in extra_args]
        argv.append(mountpoint)
        self.argv = argv
        fd, self.log_path = tempfile.mkstemp(prefix="nls-daemon-", suffix=".log")
        # Readiness as systemd sees it: the daemon sends READY=1 to $NOTIFY_SOCKET once mounted
        # (no polling delay in timings); /proc/PID/mounts is still what decides.
        notify_dir = tempfile.mkdtemp(prefix="nls-notify-")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            notify.bind(os.path.join(notify_dir, "notify"))
            daemon_env = dict(os.environ, NOTIFY_SOCKET=os.path.join(notify_dir, "notify"))
            for k, v in (env or {}).items():
                if v is None:
                    daemon_env.pop(k, None)
                else:
                    daemon_env[k] = v
            with os.fdopen(fd, "wb") as logf:
                self.proc = ns.popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=daemon_env)
            self._wait_mounted(argv, timeout, notify)
        finally:
            notify.close()
            shutil.rmtree(notify_dir, ignore_errors=True)

    def _wait_mounted(self, argv, timeout, notify):
        mountpoint = self.mountpoint
        deadline = time.monotonic() + timeout
        notify.settimeout(0.05)
        while not self.is_mounted():
            if self.proc.poll() is not None:
                raise RuntimeError("nix-lazy-store exited with status %s before mounting %s\n"
                                   "command: %s\n--- log ---\n%s" % (
                                       self.proc.returncode, mountpoint, " ".join(argv),
                                       self.log()))
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("nix-lazy-store did not mount %s within %s s\ncommand: %s\n"
                                   "--- log ---\n%s" % (mountpoint, timeout, " ".join(argv),
                                                        self.log()))
            try:
                notify.recv(4096)
            except socket.timeout:
                pass

    def is_mounted(self):
        return self.ns.is_mounted(self.mountpoint, "fuse")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=20):
        """SIGTERM the daemon and wait; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("nix-lazy-store did not exit within %s s of SIGTERM\n"
                                   "--- log ---\n%s" % (timeout, self.log()))
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.stop()
        if self.ns.is_mounted(self.mountpoint):
            self.ns.run(["umount", "-l", self.mountpoint], check=False)


# ----------------------------------------------------------------------------------------------
# Test scripts


def check(cond, what):
    """Print "ok: what", or raise AssertionError("FAILED: what")."""
    if not cond:
        raise AssertionError("FAILED: " + what)
    print("ok: " + what, flush=True)


def require_root():
    if os.geteuid() != 0:
        raise SystemExit("FAIL: integration tests need root (FUSE mounts, nix as root)")


def run_tests(namespace=None):
    """Run the caller's test_* functions in source order; exit 0 if all passed, else 1."""
    if namespace is None:
        namespace = inspect.currentframe().f_back.f_globals
    tests = [(inspect.getsourcelines(f)[1], n, f) for n, f in namespace.items()
             if n.startswith("test_") and callable(f)]
    tests.sort()
    if not tests:
        print("FAIL: no test_* functions found", flush=True)
        sys.exit(1)
    failed = []
    for _, name, fn in tests:
        print("=== %s" % name, flush=True)
        t0 = time.monotonic()
        try:
            fn()
        except BaseException as e:  # noqa: B902 -- report everything, including SystemExit
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc()
            sys.stdout.flush()
            print("FAIL %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
            failed.append(name)
        else:
            print("PASS %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
    print("%d passed, %d failed%s" % (len(tests) - len(failed), len(failed),
                                      (": " + ", ".join(failed)) if failed else ""), flush=True)
    sys.exit(1 if failed else 0)
