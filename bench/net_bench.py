#!/usr/bin/env python3
"""Network filesystem benchmark of nix-lazy-store (see docs/benchmarks.md, "Network filesystems").

Compares a lazy /nix/store fetched over HTTP from a binary cache against a /nix/store exported
by a file server, across an emulated network with a fixed round-trip time (RTT):

  lazy    nix-lazy-store (NLS_BINARY) mounted at /nix/store; nginx serves a signed zstd binary
          cache filled by `nix copy`; every run starts with an empty cache directory.
  sshfs   sshfs 3.7 mounting the host's /nix/store read-only from an sshd, with the kernel
          caching options an operator would use for an immutable store (KERNEL_CACHE_OPTS).
  dir     (only with --contender-dir DIR) an already-mounted directory holding the same store
          paths, e.g. a kernel NFS mount of the Nix server's /nix/store, bind-mounted at
          /nix/store. It uses its own network: the emulated RTT does not apply to it.

Network: two network namespaces (server, client) joined by a veth pair (10.231.0.1 server,
10.231.0.2 client); nothing listens outside them. Latency: bench/packet_delay holds every packet
leaving or entering the client's veth for a fixed time (NFQUEUE, fail closed); the hold time is
calibrated with `ping -U` (median RTT) before each RTT's runs; a background `ping -U` (10/s)
measures the RTT during the runs (the delayer's wake-up latency depends on the traffic, so this
is the RTT reported) and the delayer counts the packets of every measurement (the monitor's
pings taken out): a check of how many round trips each contender needed.
Servers (nginx, sshd) run in the server namespace; every mount is made from the client namespace
inside a private mount namespace (the host's /nix/store is never touched).

Workloads (each run: fresh mount and page cache dropped before the cold ones; contenders
interleaved, their order alternating run by run; medians of --runs runs):
  walk-cold   lstat + open + read of every file of a 3000-file store path (fs_bench's walker,
              timed inside the walking process): a compile-like metadata workload.
  walk-warm   the same walk again on the same mount (kernel caches warm).
  walk-par    (opt-in) the cold walk by 8 threads on a fresh mount, as a parallel build opens
              files: a file server overlaps the round trips of concurrent requests.
  cold-start  run the small closure's program (build_closure()["hello"]/bin/hello: ld.so, libc,
              libz, libgreet from 4 store paths) on a fresh mount, timed inside a process in the
              mount namespace around fork+exec+exit.
  big-start   (opt-in, --workloads ...,big-start) fs_bench's cold-start program: `hello FILE` where
              FILE is a small file of a 57 MiB store path of build_big_closure("bench"): the
              lazy store fetches that path's whole NAR, a file server only the file.
  mount       (information) time from starting the mount command to the mount being usable.

Run as root from the source tree, after building nix-lazy-store and packet_delay:
  NLS_BINARY=$PWD/build/fuse/nix-lazy-store python3 bench/net_bench.py \
      [--rtt-ms 0.5,5] [--runs 5] [--workloads walk,cold-start[,big-start]]
      [--contender-dir DIR] [--rate 1gbit] [--delayer PATH]
Everything (namespaces, daemons, mounts) is torn down at exit, also on Ctrl-C or failure.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
sys.path.insert(0, HERE)
import nlstest  # noqa: E402
import fs_bench  # noqa: E402  (many_files_path, WALK, drop_caches)

SERVER_ADDR, CLIENT_ADDR = "10.231.0.1", "10.231.0.2"
HTTP_PORT, SSH_PORT = 80, 22
QUEUE = 7
# One-way hold of the first calibration step: about RTT/2 - 150 us here
# (/work/shared/reference/benchmarking-here.md); calibration corrects it.
HOLD_OVERHEAD_US = 150

# sshfs options for an immutable store: read-only, file contents kept in the page cache across
# opens (kernel_cache), kernel dentries/attributes and sshfs's own directory cache kept for an hour,
# absolute symlinks (/nix/store/...) passed through unchanged, no FLUSH on closing read-only files,
# AES-GCM (AES-NI) as cipher.
KERNEL_CACHE_OPTS = ("ro,kernel_cache,entry_timeout=3600,attr_timeout=3600,dir_cache=yes,"
                     "dcache_timeout=3600,no_contain_symlinks,no_rofd_flush")

TIMER = r'''
import json, subprocess, sys, time
t0 = time.perf_counter()
cp = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
secs = time.perf_counter() - t0
print(json.dumps({"secs": secs, "rc": cp.returncode, "out": cp.stdout.decode(errors="replace"),
                  "err": cp.stderr.decode(errors="replace")}))
'''

# The cold walk by several threads at once (as a parallel build opens files): the entries are
# listed first (os.walk), then thread k handles entries k, k+N, ... (lstat, open, read).
PAR_WALK = r'''
import os, sys, threading, time
root, nthreads = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
entries = []
for dp, dns, fns in os.walk(root):
    entries += [os.path.join(dp, n) for n in fns + dns]
counts = []
def work(k):
    n = 0
    for p in entries[k::nthreads]:
        os.lstat(p)
        if os.path.isfile(p) and not os.path.islink(p):
            fd = os.open(p, os.O_RDONLY)
            while os.read(fd, 1 << 20):
                pass
            os.close(fd)
        n += 1
    counts.append(n)
ts = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
[t.start() for t in ts]
[t.join() for t in ts]
print("%.6f %d" % (time.perf_counter() - t0, sum(counts)))
'''
PAR_THREADS = 8

WORKLOADS = ["walk-cold", "walk-warm", "walk-par", "cold-start", "big-start", "mount"]
DESCRIPTION = {
    "walk-cold": "lstat+open+read 3000 files, cold",
    "walk-warm": "same walk again, warm mount",
    "walk-par": "the cold walk by 8 threads",
    "cold-start": "run hello (4-path closure), cold",
    "big-start": "read 1 small file of a 57 MiB path, cold",
    "mount": "mount until usable (info)",
}


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# Network: two namespaces, a veth pair, the delayer


class Network:
    """Server and client network namespaces joined by a veth pair; NFQUEUE rules on the client
    side feed the delayer (fail closed: without a running delayer no packet passes)."""

    def __init__(self, delayer, log_dir, rate=None):
        self.delayer_bin = delayer
        tag = os.getpid()
        self.srv, self.cli = "nlsb-srv-%d" % tag, "nlsb-cli-%d" % tag
        self.created = []
        self.procs = []
        self.delayer = None
        self.hold_us = None
        self.log_dir = log_dir  # for the RTT monitor's output
        try:
            for ns in (self.srv, self.cli):
                nlstest.run(["ip", "netns", "add", ns])
                self.created.append(ns)
            nlstest.run(["ip", "-n", self.srv, "link", "add", "veth-s", "type", "veth", "peer",
                         "name", "veth-c", "netns", self.cli])
            for ns, dev, addr in ((self.srv, "veth-s", SERVER_ADDR),
                                  (self.cli, "veth-c", CLIENT_ADDR)):
                nlstest.run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev])
                nlstest.run(["ip", "-n", ns, "link", "set", "lo", "up"])
                nlstest.run(["ip", "-n", ns, "link", "set", dev, "up"])
                if rate:
                    nlstest.run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev,
                                 "root", "tbf", "rate", rate, "burst", "128kb", "latency",
                                 "20ms"])
            for chain, flag in (("OUTPUT", "-o"), ("INPUT", "-i")):
                nlstest.run(["ip", "netns", "exec", self.cli, "iptables-legacy", "-A", chain,
                             flag, "veth-c", "-j", "NFQUEUE", "--queue-num", str(QUEUE)])
            # Fail closed: with no delayer bound to the queue, nothing may pass.
            cp = self.run(self.cli, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1",
                                     SERVER_ADDR], check=False)
            if " 0 received" not in cp.stdout:
                raise RuntimeError("packets passed the NFQUEUE rules without a delayer (the "
                                   "link would not be delayed):\n" + cp.stdout + cp.stderr)
        except BaseException:
            self.close()
            raise

    def exec_argv(self, ns, argv):
        return ["ip", "netns", "exec", ns] + [str(a) for a in argv]

    def popen(self, ns, argv, logfile):
        """A long-running process in namespace ns, stdout+stderr to logfile; stopped by close()."""
        with open(logfile, "ab") as f:
            p = subprocess.Popen(self.exec_argv(ns, argv), stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def run(self, ns, argv, **kw):
        return nlstest.run(self.exec_argv(ns, argv), **kw)

    def wait_port(self, ns, addr, port, proc, what, timeout=10):
        code = ("import socket,sys,time\nd=time.monotonic()+%d\nwhile True:\n try:\n"
                "  socket.create_connection((%r,%d),1).close(); break\n except OSError:\n"
                "  if time.monotonic()>d: sys.exit(1)\n  time.sleep(0.02)\n"
                % (timeout, addr, port))
        cp = self.run(ns, ["python3", "-c", code], check=False, timeout=timeout + 30)
        if cp.returncode != 0 or proc.poll() is not None:
            raise RuntimeError("%s did not listen on %s:%d in namespace %s" % (what, addr, port,
                                                                              ns))

    # The delayer ---------------------------------------------------------------------------

    def start_delayer(self, hold_us):
        self.stop_delayer()
        p = subprocess.Popen(self.exec_argv(self.cli, [self.delayer_bin, "--queue", QUEUE,
                                                       "--delay-us", hold_us]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        if not line.startswith("ready"):
            p.kill()
            _, err = p.communicate()
            raise RuntimeError("packet_delay did not start (%s): %s%s" % (
                " ".join(p.args), line, err))
        self.delayer, self.hold_us = p, hold_us
        try:
            self.packets()
        except RuntimeError:
            raise RuntimeError("%s does not answer SIGUSR1 with its packet count: an older "
                               "build? Rebuild the packet_delay target or pass --delayer" %
                               self.delayer_bin) from None

    def packets(self):
        """(packets the delayer has held so far, GSO packets counted once; wall-clock time)."""
        self.delayer.send_signal(signal.SIGUSR1)
        line = self.delayer.stdout.readline()
        if not line.startswith("packets "):
            raise RuntimeError("packet_delay answered %r to SIGUSR1 (exit status %s)" % (
                line, self.delayer.poll()))
        return int(line.split()[1]), time.time()

    def start_monitor(self, interval=0.1):
        """A background `ping -U -D` over the delayed link while the workloads run: the RTT
        the workloads actually saw (the delayer's wake-up latency depends on the traffic)."""
        self.monitor_file = os.path.join(self.log_dir, "monitor-ping.log")
        with open(self.monitor_file, "w") as f:
            self.monitor = subprocess.Popen(
                self.exec_argv(self.cli, ["ping", "-U", "-D", "-n", "-i", interval, "-W", "2",
                                          SERVER_ADDR]),
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(self.monitor)

    def stop_monitor(self):
        """Stops the monitor; returns [(reply time, RTT ms)]."""
        self.monitor.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.monitor.wait(10)
        res = []
        with open(self.monitor_file) as f:
            for line in f:
                toks = line.split()
                if toks and toks[0].startswith("[") and any(t.startswith("time=") for t in toks):
                    rtt = [float(t[5:]) for t in toks if t.startswith("time=")][0]
                    res.append((float(toks[0].strip("[]")), rtt))
        return res

    def stop_delayer(self):
        """Stops the delayer; returns its statistics line (packets, lateness)."""
        p, self.delayer = self.delayer, None
        if p is None:
            return ""
        if p.poll() is None:
            p.terminate()
        try:
            _, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        return (err or "").strip()

    def ping_rtts(self, count=100):
        """RTTs in ms measured with `ping -U` (user-to-user: ping's own timestamps are taken
        before the INPUT hook and would show half of the inbound delay)."""
        cp = self.run(self.cli, ["ping", "-U", "-n", "-c", count, "-i", "0.005", "-W", "2",
                                 SERVER_ADDR], check=False, timeout=120)
        rtts = [float(tok[5:]) for tok in cp.stdout.split() if tok.startswith("time=")]
        if len(rtts) < count * 0.9:
            raise RuntimeError("ping over the delayed link lost packets (%d of %d answered):\n%s"
                               % (len(rtts), count, cp.stdout + cp.stderr))
        return rtts

    def calibrate(self, target_ms, steps=4):
        """Starts the delayer with a hold time that gives a median ping -U RTT near target_ms.
        Returns the RTTs measured with the final hold time."""
        hold = max(0, int(target_ms * 500 - HOLD_OVERHEAD_US))
        for step in range(steps):
            self.start_delayer(hold)
            rtts = self.ping_rtts()
            med = statistics.median(rtts)
            log("  calibration %d: hold %d us one way -> ping -U RTT median %.3f ms "
                "(min %.3f, max %.3f)" % (step + 1, hold, med, min(rtts), max(rtts)))
            err_ms = target_ms - med
            if abs(err_ms) <= max(0.05, 0.05 * target_ms) or step == steps - 1:
                return rtts
            new = max(0, hold + int(err_ms * 500))
            if new == hold:
                return rtts
            hold = new
        return rtts

    def close(self):
        self.stop_delayer()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        for ns in reversed(self.created):
            # Whatever still runs in the namespace was started by this benchmark.
            cp = nlstest.run(["ip", "netns", "pids", ns], check=False)
            for pid in cp.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            nlstest.run(["ip", "netns", "del", ns], check=False)
        self.created = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ClientMountNamespace(nlstest.MountNamespace):
    """A private mount namespace whose commands run in the client network namespace."""

    def __init__(self, net_ns):
        self.net_path = "/run/netns/" + net_ns
        super().__init__()

    def _argv(self, argv):
        return (["nsenter", "-t", str(self.pid), "-m", "--net=" + self.net_path, "--"]
                + [str(a) for a in argv])


# ----------------------------------------------------------------------------------------------
# Servers (server namespace)


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  default_type application/octet-stream;
  types {{ text/x-nix-narinfo narinfo; text/plain nix-cache-info; }}
  log_format nls '$request_method $request_uri $status $body_bytes_sent';
  access_log {prefix}/access.log nls;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000;
  server {{
    listen {addr}:{port};
    root {root};
    location / {{ limit_except GET {{ deny all; }} }}
  }}
}}
"""


def start_nginx(net, d, cache_dir):
    prefix = os.path.join(d, "nginx")
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(prefix=prefix, addr=SERVER_ADDR, port=HTTP_PORT,
                                  root=cache_dir))
    net.run(net.srv, ["nginx", "-t", "-q", "-p", prefix, "-c", conf])
    p = net.popen(net.srv, ["nginx", "-p", prefix, "-c", conf], os.path.join(prefix, "out.log"))
    net.wait_port(net.srv, SERVER_ADDR, HTTP_PORT, p, "nginx")
    return "http://%s:%d" % (SERVER_ADDR, HTTP_PORT), os.path.join(prefix, "access.log")


def start_sshd(net, d):
    """sshd on SERVER_ADDR:22 in the server namespace, key auth only; returns the client key.
    SFTP is served in-process (internal-sftp): an external sftp-server would be started through
    root's login shell, whose start-up files then count in every mount."""
    sd = os.path.join(d, "ssh")
    os.makedirs(sd, mode=0o700, exist_ok=True)
    host_key, client_key = os.path.join(sd, "host_ed25519"), os.path.join(sd, "id_ed25519")
    for k in (host_key, client_key):
        nlstest.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nls-net-bench",
                     "-f", k])
    shutil.copy(client_key + ".pub", os.path.join(sd, "authorized_keys"))
    conf = os.path.join(sd, "sshd_config")
    with open(conf, "w") as f:
        f.write("Port %d\nListenAddress %s\nHostKey %s\nPidFile %s\nAuthorizedKeysFile %s\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
                "X11Forwarding no\nAllowTcpForwarding no\nSubsystem sftp %s\n"
                % (SSH_PORT, SERVER_ADDR, host_key, os.path.join(sd, "sshd.pid"),
                   os.path.join(sd, "authorized_keys"), "internal-sftp"))
    # Privilege separation directory that Debian's sshd insists on.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    p = net.popen(net.srv, ["/usr/sbin/sshd", "-D", "-e", "-f", conf],
                  os.path.join(sd, "sshd.log"))
    net.wait_port(net.srv, SERVER_ADDR, SSH_PORT, p, "sshd")
    return client_key


# ----------------------------------------------------------------------------------------------
# Contenders: each .mount() is a context manager yielding a mount namespace with the store at
# /nix/store, fresh (empty cache / new mount), and records how long mounting took.


class Lazy:
    name = "lazy"

    def __init__(self, net, d, url, pub, access_log, extra_args=()):
        self.net, self.d, self.url, self.pub = net, d, url, pub
        self.access_log, self.extra_args = access_log, list(extra_args)
        self.n = 0
        self.requests = []  # HTTP requests per mount

    @contextlib.contextmanager
    def mount(self):
        self.n += 1
        cache_dir = os.path.join(self.d, "lazy-cache-%d" % self.n)
        before = _count_lines(self.access_log)
        try:
            with ClientMountNamespace(self.net.cli) as ns:
                t0 = time.perf_counter()
                with nlstest.LazyStore(ns, substituters=[self.url], cache_dir=cache_dir,
                                       trusted_keys=[self.pub], extra_args=self.extra_args):
                    wait_usable(ns)
                    self.mount_secs = time.perf_counter() - t0
                    yield ns
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
            self.requests.append(_count_lines(self.access_log) - before)


class Sshfs:
    name = "sshfs"

    def __init__(self, net, d, client_key, options=KERNEL_CACHE_OPTS):
        self.net, self.d, self.key, self.options = net, d, client_key, options

    def argv(self):
        return ["sshfs", "-f", "root@%s:%s" % (SERVER_ADDR, nlstest.STORE_DIR),
                nlstest.STORE_DIR, "-p", str(SSH_PORT),
                "-o", self.options,
                "-o", "IdentityFile=" + self.key, "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", "Ciphers=aes128-gcm@openssh.com", "-o", "Compression=no"]

    @contextlib.contextmanager
    def mount(self):
        logf = os.path.join(self.d, "sshfs.log")
        with ClientMountNamespace(self.net.cli) as ns:
            t0 = time.perf_counter()
            with open(logf, "ab") as f:
                p = ns.popen(self.argv(), stdout=f, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 30
            while not ns.is_mounted(nlstest.STORE_DIR, "fuse.sshfs"):
                if p.poll() is not None or time.monotonic() > deadline:
                    with open(logf, errors="replace") as f:
                        raise RuntimeError("sshfs did not mount (exit %s): %s\n%s" % (
                            p.poll(), " ".join(self.argv()), f.read()[-4000:]))
                time.sleep(0.002)
            wait_usable(ns)
            self.mount_secs = time.perf_counter() - t0
            try:
                yield ns
            finally:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)


class Dir:
    name = "dir"

    def __init__(self, path):
        self.path = os.path.realpath(path)

    @contextlib.contextmanager
    def mount(self):
        with nlstest.MountNamespace() as ns:
            t0 = time.perf_counter()
            ns.run(["mount", "--bind", self.path, nlstest.STORE_DIR])
            wait_usable(ns)
            self.mount_secs = time.perf_counter() - t0
            yield ns


def wait_usable(ns):
    """Returns once the file system answers a stat of its root. sshfs shows up in the mount table
    before its SSH session exists; the session belongs to mounting, not to the first workload."""
    ns.run(["stat", "-c", "%i", nlstest.STORE_DIR + "/"])


def _count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------------------------------------
# Workloads


def timed_walk(ns, script, root):
    secs, n = ns.run(["python3", script, "serial", root], timeout=3600).stdout.split()
    return float(secs), int(n)


def timed_program(ns, timer, argv):
    res = json.loads(ns.run(["python3", timer] + list(argv), timeout=600).stdout)
    if res["rc"] != 0:
        raise RuntimeError("%s failed in the mount namespace (exit %s): %s" % (
            " ".join(argv), res["rc"], res["err"]))
    return res["secs"], res["out"]


def run_rtt(net, contenders, runs, walk, timer, walk_fixture, programs, par_walk=None):
    """Runs every workload `runs` times per contender. Returns ({workload: {name: [secs]}},
    {workload: {name: [packets through the delayer]}}). walk_fixture: None or (store path,
    expected entry count); programs: [(workload, argv, expected stdout)]; par_walk: None or
    (PAR_WALK script, store path, expected entry count)."""
    res, pkts = {}, {}

    def add(w, name, secs, mark0, mark1):
        res.setdefault(w, {c.name: [] for c in contenders})[name].append(secs)
        # [raw packet count, window start, window end]: the monitor's pings are taken out later.
        pkts.setdefault(w, {c.name: [] for c in contenders})[name].append(
            [mark1[0] - mark0[0], mark0[1], mark1[1]])

    for i in range(runs):
        order = contenders if i % 2 == 0 else list(reversed(contenders))
        for c in order if walk_fixture else []:
            files_path, expected_n = walk_fixture
            fs_bench.drop_caches()
            p0 = net.packets()
            with c.mount() as ns:
                p1 = net.packets()
                cold, n = timed_walk(ns, walk, files_path)
                p2 = net.packets()
                warm, n2 = timed_walk(ns, walk, files_path)
                p3 = net.packets()
            if n != expected_n or n2 != expected_n:
                raise RuntimeError("%s: the walk saw %d/%d entries, the host store %d" % (
                    c.name, n, n2, expected_n))
            add("mount", c.name, c.mount_secs, p0, p1)
            add("walk-cold", c.name, cold, p1, p2)
            add("walk-warm", c.name, warm, p2, p3)
            log("  run %d %-5s walk-cold %8.3f s  walk-warm %8.3f s  (mount %.3f s; packets %d "
                "/ %d / %d)" % (i + 1, c.name, cold, warm, c.mount_secs, p2[0] - p1[0],
                                p3[0] - p2[0], p1[0] - p0[0]))
        for c in order if par_walk else []:
            script, files_path, expected_n = par_walk
            fs_bench.drop_caches()
            with c.mount() as ns:
                p0 = net.packets()
                secs, n = map(float, ns.run(["python3", script, files_path, PAR_THREADS],
                                            timeout=3600).stdout.split())
                p1 = net.packets()
            if int(n) != expected_n:
                raise RuntimeError("%s: the parallel walk saw %d entries, the host store %d" % (
                    c.name, n, expected_n))
            add("walk-par", c.name, secs, p0, p1)
            log("  run %d %-5s walk-par   %7.3f s  (%d packets)" % (i + 1, c.name, secs,
                                                                  p1[0] - p0[0]))
        for w, program, expected_out in programs:
            for c in order:
                fs_bench.drop_caches()
                with c.mount() as ns:
                    p0 = net.packets()
                    secs, out = timed_program(ns, timer, program)
                    p1 = net.packets()
                if out != expected_out:
                    raise RuntimeError("%s: %s printed %r, from the host store %r" % (
                        c.name, " ".join(program), out, expected_out))
                add(w, c.name, secs, p0, p1)
                log("  run %d %-5s %-10s %7.3f s  (%d packets)" % (i + 1, c.name, w, secs,
                                                                  p1[0] - p0[0]))
    return res, pkts


# ----------------------------------------------------------------------------------------------
# Report


def subtract_monitor(packets, replies):
    """Turns [raw count, t0, t1] into packet counts without the monitor's pings (2 packets
    per reply received in the window)."""
    for per_name in packets.values():
        for lst in per_name.values():
            for i, (raw, t0, t1) in enumerate(lst):
                lst[i] = max(0, raw - 2 * sum(1 for t, _ in replies if t0 <= t <= t1))


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def report(results, names, header):
    """Prints the per-RTT tables, plain and as Markdown (for docs/benchmarks.md)."""
    others = [n for n in names if n != "sshfs"]
    netted = [n for n in names if n != "dir"]  # contenders whose traffic crosses the delayer
    log("")
    log(header)
    md = ["| RTT (ping -U median during the runs) | workload | "
          + " | ".join("%s s" % n for n in names) + " | " + " | ".join("%s / sshfs" % n for n in others) + " | "
          + " | ".join("%s packets" % n for n in netted) + " |",
          "|---|---|" + "---:|" * (len(names) + len(others) + len(netted))]
    for rtt in results:
        r = results[rtt]
        log("RTT target %.2f ms, ping -U median %.3f ms at calibration, %.3f ms during the "
            "runs, %.3f ms after" % (rtt, r["rtt_before"], r["rtt_during"], r["rtt_after"]))
        for w in [w for w in WORKLOADS if w in r["times"]]:
            meds = {n: median(r["times"][w][n]) for n in names}
            ratios = {n: meds[n] / meds["sshfs"] if meds["sshfs"] else float("inf")
                      for n in others}
            pk = {n: median(r["packets"][w][n]) for n in netted}
            log("  %-10s %s   %s   packets %s" % (
                w, "  ".join("%s %8.3f s" % (n, meds[n]) for n in names),
                "  ".join("%s/sshfs %7.3f" % (n, ratios[n]) for n in others),
                " ".join("%s %d" % (n, pk[n]) for n in netted)))
            for n in names:
                log("             %-5s runs: %s" % (n, " ".join(
                    "%.3f" % x for x in r["times"][w][n])))
            md.append("| %.2f ms (%.2f) | %s | %s | %s | %s |" % (
                rtt, r["rtt_during"], DESCRIPTION[w],
                " | ".join("%.3f" % meds[n] for n in names),
                " | ".join("**%.3f**" % ratios[n] if w != "mount" else "%.3f" % ratios[n]
                           for n in others),
                " | ".join("%d" % pk[n] for n in netted)))
        if r.get("requests"):
            log("  lazy: HTTP requests per mount: %s" % " ".join(map(str, r["requests"])))
        log("  delayer: %s" % r["delayer"])
    log("")
    log("(packets: median number of packets through the delayer during the measurement, both "
        "directions, a GSO packet counted once; the dir contender does not use the link)")
    log("\n".join(md))


def git_commit():
    cp = nlstest.run(["git", "-C", nlstest.SOURCE_DIR, "rev-parse", "--short", "HEAD"],
                     check=False)
    dirty = nlstest.run(["git", "-C", nlstest.SOURCE_DIR, "status", "--porcelain",
                         "--untracked-files=no"], check=False).stdout.strip()
    return cp.stdout.strip() + (" (tree has local changes)" if dirty else "")


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rtt-ms", default="0.5,5",
                    help="comma-separated round-trip times to emulate (default 0.5,5)")
    ap.add_argument("--runs", type=int, default=5, help="runs per contender (default 5)")
    ap.add_argument("--contender-dir", default=None,
                    help="an already-mounted directory with the same store paths (e.g. a kernel "
                         "NFS mount of the server's /nix/store), bind-mounted at /nix/store")
    ap.add_argument("--rate", default=None,
                    help="also limit the link's bandwidth with tbf (e.g. 1gbit; default none)")
    ap.add_argument("--delayer", default=None, help="path of packet_delay (default: built)")
    ap.add_argument("--workloads", default="walk,cold-start",
                    help="walk (walk-cold + walk-warm), walk-par (opt-in: the cold walk by 8 "
                         "threads), cold-start, big-start (opt-in: builds and copies "
                         "fs_bench's 300 MiB closure); default walk,cold-start")
    ap.add_argument("--sshfs-options", default=KERNEL_CACHE_OPTS)
    ap.add_argument("--lazy-args", default="",
                    help="extra arguments for nix-lazy-store mount (space-separated)")
    args = ap.parse_args()
    nlstest.require_root()
    if args.contender_dir and not os.path.isdir(args.contender_dir):
        ap.error("--contender-dir %s is not a directory" % args.contender_dir)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.runs < 3:
        log("note: --runs %d is for trying the script out; quote medians of >= 3 runs" %
            args.runs)
    rtts = [float(x) for x in args.rtt_ms.split(",") if x.strip()]
    binary = nlstest.find_binary()
    # The packet_delay of the build that made the binary first (other build directories may hold
    # an older one).
    delayer = nlstest.find_built("bench", "packet_delay", first=[
        args.delayer, os.path.join(os.path.dirname(os.path.dirname(binary)), "bench",
                                   "packet_delay")])
    if not os.path.isabs(binary):
        raise SystemExit("NLS_BINARY must be an absolute path (got %s)" % binary)
    for tool in ("sshfs", "iptables-legacy", "ping", "nginx", "ip"):
        if not shutil.which(tool):
            raise SystemExit("%s not found: run packaging/install-deps.sh" % tool)
    # The daemon's curl must talk to the namespace's address directly.
    for v in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(v, None)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Also when started in the background by a script (SIGINT ignored there): Ctrl-C and
    # `kill -INT` unwind through the same clean-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.time()
    header = ("nix-lazy-store net_bench: %s, commit %s, binary %s, %d runs, RTTs %s ms, "
              "load average %s" % (time.strftime("%Y-%m-%d %H:%M"), git_commit(), binary,
                                   args.runs, args.rtt_ms, " ".join(
                                       "%.2f" % x for x in os.getloadavg())))
    log(header)

    which = set(args.workloads.split(","))
    known = {"walk", "walk-par", "cold-start", "big-start"}
    if which - known:
        ap.error("unknown workloads %s" % ",".join(sorted(which - known)))
    c = nlstest.build_closure("netbench")
    roots, programs, walk_fixture = [], [], None
    if which & {"walk", "walk-par"}:
        files_path = fs_bench.many_files_path()
        expected_n = int(nlstest.run(["python3", "-c", fs_bench.WALK, "serial", files_path])
                         .stdout.split()[1])
        walk_fixture = (files_path, expected_n)
        roots.append(files_path)
    if "cold-start" in which:
        program = [c["hello"] + "/bin/hello"]
        programs.append(("cold-start", program, nlstest.run(program).stdout))
        roots.append(c["hello"])
    if "big-start" in which:
        # The fs_bench closure: `program small_file` needs the hello closure and one small file
        # of a 57 MiB store path (whole-NAR fetch for the lazy store).
        big = nlstest.build_big_closure("bench", total_mb=300, parts=6)
        program = [big["program"], big["small_file"]]
        programs.append(("big-start", program, nlstest.run(program).stdout))
        roots.append(big["env"])
    results = {}
    with nlstest.tmpdir("nls-netbench-") as d:
        os.chmod(d, 0o700)
        key, pub = nlstest.make_key(os.path.join(d, "keys"))
        cache = nlstest.fill_cache(os.path.join(d, "binary-cache"), roots, secret_key=key)
        walk = fs_bench.walk_script(d)
        par_walk = None
        if "walk-par" in which:
            par_walk = os.path.join(d, "par_walk.py")
            with open(par_walk, "w") as f:
                f.write(PAR_WALK)
        timer = os.path.join(d, "timer.py")
        with open(timer, "w") as f:
            f.write(TIMER)
        with Network(delayer, d, args.rate) as net:
            url, access_log = start_nginx(net, d, cache)
            client_key = start_sshd(net, d)
            lazy = Lazy(net, d, url, pub, access_log, args.lazy_args.split())
            contenders = [lazy, Sshfs(net, d, client_key, args.sshfs_options)]
            if args.contender_dir:
                contenders.append(Dir(args.contender_dir))
            for rtt in rtts:
                log("RTT %.2f ms:" % rtt)
                before = net.calibrate(rtt)
                lazy.requests = []
                net.start_monitor()
                times, packets = run_rtt(net, contenders, args.runs, walk, timer,
                                         walk_fixture if "walk" in which else None, programs,
                                         par_walk and (par_walk,) + walk_fixture)
                during = net.stop_monitor()
                after = net.ping_rtts()
                subtract_monitor(packets, during)
                during_rtts = [r for _, r in during] or [float("nan")]
                log("  RTT during the runs (ping -U every 0.1 s, %d replies): median %.3f ms, "
                    "p10 %.3f, p90 %.3f; after the runs: median %.3f ms" % (
                        len(during_rtts), statistics.median(during_rtts),
                        quantile(during_rtts, 0.1), quantile(during_rtts, 0.9),
                        statistics.median(after)))
                results[rtt] = {"times": times, "packets": packets,
                                "rtt_during": statistics.median(during_rtts),
                                "rtt_before": statistics.median(before),
                                "rtt_after": statistics.median(after),
                                "requests": list(lazy.requests),
                                "delayer": net.stop_delayer()}
    report(results, [x.name for x in contenders], header)
    log("total %.0f s" % (time.time() - started))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        # The with-blocks have torn everything down by now.
        print("net_bench: interrupted (%s); namespaces, daemons and mounts removed" % (
            str(e) or "SIGINT"), file=sys.stderr)
        sys.exit(130)
