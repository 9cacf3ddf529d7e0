"""A binary cache behind HTTP basic authentication (nginx auth_basic), as sites protect their
caches: credentials come from nix.conf's `netrc-file`, as with Nix. Real mount at /nix/store in a
private mount namespace."""

import errno
import os
import subprocess

import nlstest
from nlstest import check

import mountlib


def write_conf(d, name, cache_url, pub, netrc_text):
    netrc = os.path.join(d, name + ".netrc")
    with open(netrc, "w") as f:
        f.write(netrc_text)
    os.chmod(netrc, 0o600)
    conf = os.path.join(d, name + ".conf")
    with open(conf, "w") as f:
        f.write("substituters = %s\ntrusted-public-keys = %s\nnetrc-file = %s\n" %
                (cache_url, pub, netrc))
    return conf


def test_netrc_credentials_from_nix_conf():
    nlstest.require_root()
    c = nlstest.build_closure("auth")
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, [c["hello"]])
        hashed = subprocess.run(["openssl", "passwd", "-apr1", "s3cret"], check=True,
                                capture_output=True, text=True).stdout.strip()
        htpasswd = os.path.join(d, "htpasswd")
        with open(htpasswd, "w") as f:
            f.write("builder:%s\n" % hashed)
        os.chmod(d, 0o755)
        os.chmod(htpasswd, 0o644)
        auth = 'auth_basic "nix cache"; auth_basic_user_file %s;' % htpasswd
        with nlstest.Nginx(cache, server_config=auth) as web:
            good = write_conf(d, "good", web.url, pub,
                              "machine 127.0.0.1 login builder password s3cret\n")
            bad = write_conf(d, "bad", web.url, pub,
                             "machine 127.0.0.1 login builder password wrong\n")
            with nlstest.MountNamespace() as ns:
                with nlstest.LazyStore(ns, cache_dir=os.path.join(d, "cache-bad"),
                                       extra_args=["--nix-conf", bad]) as ls:
                    err = mountlib.stat_errno_ns(ns, c["hello"])
                    check(err in (errno.EIO, errno.ENOENT),
                          "wrong credentials: the path is not served (errno %s)" % err)
                    check("401" in ls.log(), "the log says the server answered 401")
                    ls.stop()
                statuses = [e["status"] for e in web.entries()]
                check("401" in [str(s) for s in statuses], "nginx refused the wrong password")
                web.clear_log()
                with nlstest.LazyStore(ns, cache_dir=os.path.join(d, "cache-good"),
                                       extra_args=["--nix-conf", good]):
                    cp = ns.run([c["hello"] + "/bin/hello"])
                    check("Hello" in cp.stdout, "with netrc credentials the closure runs")
                ok = [e for e in web.entries() if str(e["status"]) == "200"]
                check(any(e["uri"].startswith("/nar/") for e in ok),
                      "the NARs were downloaded with authentication")


if __name__ == "__main__":
    nlstest.run_tests()
