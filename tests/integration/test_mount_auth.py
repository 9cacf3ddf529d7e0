"""Binary caches that want credentials, as sites protect their caches. Real mount at /nix/store in
a private mount namespace.

- HTTP basic authentication (nginx auth_basic): credentials from nix.conf's `netrc-file`, as with
  Nix.
- A private S3 bucket (`s3://BUCKET?endpoint=...` in nix.conf): tests/lib/fault_server.py in S3
  mode serves the `nix copy` output path-style and checks every request's AWS Signature Version 4
  itself; credentials from an AWS shared credentials file, as on a node with a mounted Secret."""

import errno
import os
import subprocess
import sys

import nlstest
from nlstest import check

import mountlib

sys.path.insert(0, os.path.dirname(os.path.abspath(nlstest.__file__)))
from fault_server import FaultServer  # noqa: E402


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


def test_private_s3_bucket_with_signed_requests():
    nlstest.require_root()
    c = nlstest.build_closure("auth")
    bucket = {"bucket": "nix-cache", "region": "eu-test-1", "access_key": "AKIDNLSTEST",
              "secret_key": "s3cret/key+1", "session_token": "session-token-1"}
    with nlstest.tmpdir() as d:
        cache, _, pub = nlstest.signed_cache(d, [c["hello"]])
        creds = os.path.join(d, "aws-credentials")
        with open(creds, "w") as f:
            f.write("[default]\naws_access_key_id = AKIDNLSTEST\naws_secret_access_key = wrong\n"
                    "aws_session_token = session-token-1\n"
                    "[builders]\naws_access_key_id = AKIDNLSTEST\n"
                    "aws_secret_access_key = s3cret/key+1\naws_session_token = session-token-1\n")
        with FaultServer(cache, s3=bucket) as s3, nlstest.MountNamespace() as ns:
            url = "s3://nix-cache?endpoint=127.0.0.1:%d&scheme=http&region=eu-test-1" % s3.port
            env = {"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_ACCESS_KEY_ID": None,
                   "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None}
            for profile, works in (("", False), ("&profile=builders", True)):
                conf = os.path.join(d, "nix%s.conf" % profile.replace("&", "-"))
                with open(conf, "w") as f:
                    f.write("substituters = %s%s\ntrusted-public-keys = %s\n" % (url, profile, pub))
                s3.clear_log()
                with nlstest.LazyStore(ns, cache_dir=os.path.join(d, "cache" + profile), env=env,
                                       extra_args=["--nix-conf", conf]) as ls:
                    verdicts = None
                    if works:
                        cp = ns.run([c["hello"] + "/bin/hello"])
                        check("Hello" in cp.stdout, "signed with profile 'builders', the closure "
                              "is fetched from the bucket and runs")
                        verdicts = {e["s3"] for e in s3.log()}
                        check(verdicts == {"ok"}, "the bucket accepted every request's signature "
                              "(%s)" % sorted(verdicts))
                        check(any(e["path"].startswith("/nix-cache/nar/") and e["status"] == 200
                                  for e in s3.log()), "the NARs came from the bucket")
                        check("profile builders" not in ls.log() and
                              "[builders]" in ls.log(), "the log names the credentials' source")
                    else:
                        err = mountlib.stat_errno_ns(ns, c["hello"])
                        check(err in (errno.EIO, errno.ENOENT), "the default profile's wrong "
                              "secret: the path is not served (errno %s)" % err)
                        verdicts = {e["s3"] for e in s3.log()}
                        check("SignatureDoesNotMatch" in verdicts, "the bucket refused the "
                              "signature (%s)" % sorted(verdicts))
                        check("SignatureDoesNotMatch" in ls.log(),
                              "the daemon's log names S3's answer")


if __name__ == "__main__":
    nlstest.run_tests()
