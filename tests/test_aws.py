#!/bin/sh
# -*- python -*-
# test_aws.py - start s3rver, moto (signature checking on) and a scripted
# HTTP server on 127.0.0.1, then run build/tests/test_aws against them.
''':'
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import botocore' 2>/dev/null; then
        exec "$py" "$0" "$@"
    fi
done
echo "SKIP: test_aws no python3 with botocore"
exit 0
'''
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))
import emu  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
EXE = os.path.join(os.path.dirname(HERE), BUILD, "tests", "test_aws")

OK_XML = (b'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
          b'<requestId>req-ok</requestId><regionInfo><item><regionName>us-east-1</regionName>'
          b'<regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint></item></regionInfo>'
          b'</DescribeRegionsResponse>')


def ec2_err(code, msg, rid):
    return ('<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code>'
            '<Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>'
            % (code, msg, rid)).encode()


def scripted(mode, state=None):
    state = state if state is not None else {"n": 0}

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            state["n"] += 1
            if mode in ("slow", "stall"):
                # an object download: 256 KiB at ~128 KiB/s (2 s, slower than the
                # client's 1 s whole-call limit), or 1 KiB then nothing for 5 s
                size = 256 << 10
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("ETag", '"x"')
                self.end_headers()
                chunk = b"p" * 8192
                if mode == "stall":
                    self.wfile.write(chunk[:1024])
                    self.wfile.flush()
                    time.sleep(5)
                    return
                for _ in range(size // len(chunk)):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(len(chunk) / float(128 << 10))
                return
            # S3 ListObjectsV2 replies a broken endpoint might give
            if mode == "s3loop":  # truncated forever with the same token
                body = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
                        b'<IsTruncated>true</IsTruncated><NextContinuationToken>same-token'
                        b'</NextContinuationToken><Contents><Key>k%d</Key><Size>1</Size>'
                        b'</Contents></ListBucketResult>' % state["n"])
            else:  # s3root: a well-formed document that is not a listing
                body = b'<?xml version="1.0"?><SomethingElse><x>1</x></SomethingElse>'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state["n"] += 1
            if "Authorization" not in self.headers:
                st, body = 400, ec2_err("MissingAuthenticationToken", "no auth", "req-x")
            elif mode == "throttle":
                st, body = ((503, ec2_err("RequestLimitExceeded", "Request limit exceeded.",
                                          "req-thr")) if state["n"] <= 2 else (200, OK_XML))
            elif mode == "fail500":
                st, body = 500, ec2_err("InternalError", "An internal error occurred.", "req-500")
            elif mode == "expired":
                st, body = 400, ec2_err("ExpiredToken", "The security token included in the "
                                        "request is expired", "req-exp")
            elif mode == "rotate":  # only the fresh credentials are still valid
                fresh = "Credential=AKIDFRESH/" in self.headers["Authorization"]
                st, body = (200, OK_XML) if fresh else (400, ec2_err(
                    "ExpiredToken", "The security token included in the request is expired",
                    "req-rot"))
            else:  # huge
                st, body = 200, OK_XML + b" " * (1 << 20)
            self.send_response(st)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1]


PETAL = os.environ.get("PETAL_BIN") or os.path.join(os.path.dirname(HERE), BUILD, "petal")


def cli_checks(expired_ep, expired_state, moto):
    """`petal launch` stops before creating anything when the credentials are bad."""
    import tempfile
    failed = 0
    d = tempfile.mkdtemp(prefix="petal-awscli-")
    tar = os.path.join(d, "src.tar.gz")   # read (checked for secrets) before any call
    with tarfile.open(tar, "w:gz") as t:
        info = tarfile.TarInfo("petal/README.md")
        info.size = 5
        t.addfile(info, io.BytesIO(b"petal"))
    base = [PETAL, "launch", "--n-client-instances", "1", "--dist-tarball", tar, "--state-dir", d,
            "--env-file", ""]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=d, AWS_ACCESS_KEY_ID="ASIAEXPIREDEXAMPLE", AWS_SECRET_ACCESS_KEY="oldsecret",
               AWS_SESSION_TOKEN="oldtoken")
    before = expired_state["n"]
    p = subprocess.run(base + ["--endpoint-url", expired_ep], env=env, capture_output=True,
                       text=True, timeout=120)
    ok = (p.returncode == 1 and "ExpiredToken" in p.stderr and "Refresh" in p.stderr and
          expired_state["n"] - before == 1 and "oldsecret" not in p.stderr)
    print("%s: test_aws/cli_expired_token_stops_before_creating%s" % (
        "PASS" if ok else "FAIL", "" if ok else " rc=%d requests=%d %s" % (
            p.returncode, expired_state["n"] - before, p.stderr[-400:])))
    failed += not ok
    if moto is not None:
        env.update(AWS_ACCESS_KEY_ID=moto.creds["ak"], AWS_SECRET_ACCESS_KEY="wrong-secret")
        env.pop("AWS_SESSION_TOKEN")
        p = subprocess.run(base + ["--endpoint-url", moto.endpoint], env=env, capture_output=True,
                           text=True, timeout=120)
        good = emu.cl(moto.endpoint, "ec2", moto.creds["ak"], moto.creds["sk"])
        groups = [g["GroupName"] for g in good.describe_security_groups()["SecurityGroups"]
                  if g["GroupName"].startswith("petal-")]
        ok = p.returncode == 1 and "AuthFailure" in p.stderr and not groups
        print("%s: test_aws/cli_bad_secret_moto_nothing_created%s" % (
            "PASS" if ok else "FAIL", "" if ok else " rc=%d %s %s" % (
                p.returncode, groups, p.stderr[-400:])))
        failed += not ok
        # Learner Lab style session credentials and a long run: warned before anything;
        # S3 unreachable here, so the run stops at the bucket and cleans up
        env.update(AWS_ACCESS_KEY_ID=moto.creds["session_ak"],
                   AWS_SECRET_ACCESS_KEY=moto.creds["session_sk"],
                   AWS_SESSION_TOKEN=moto.creds["session_token"])
        p = subprocess.run(base + ["--endpoint-url", moto.endpoint, "--s3-endpoint",
                                   "http://127.0.0.1:1", "--timeout", "20000"],
                           env=env, capture_output=True, text=True, timeout=180)
        ok = (p.returncode == 1 and "presigned URLs die with the session" in p.stderr and
              "--instance-profile" in p.stderr and moto.creds["session_sk"] not in p.stderr and
              moto.creds["session_token"] not in p.stderr)
        print("%s: test_aws/cli_session_outlived_warning%s" % (
            "PASS" if ok else "FAIL", "" if ok else " rc=%d %s" % (p.returncode, p.stderr[-600:])))
        failed += not ok
    return failed


def main():
    env = dict(os.environ)
    select = ["http_"]
    procs = []
    servers = []
    states = {}
    for mode in ("throttle", "fail500", "expired", "huge", "s3loop", "s3root", "slow", "stall",
                 "rotate"):
        states[mode] = {"n": 0}
        srv, ep = scripted(mode, states[mode])
        servers.append(srv)
        env["PL_T_" + mode.upper()] = ep
    try:
        if emu.have_s3rver():
            s3 = emu.start_s3rver()
            procs.append(s3)
            env["PL_T_S3RVER"] = s3.endpoint
            select.append("s3rver_")
        else:
            print("SKIP: test_aws/s3rver @20minutes/s3rver not installed (run scripts/deps.sh)")
        if emu.have_moto():
            m = emu.start_moto(auth=True)
            procs.append(m)
            env.update(PL_T_MOTO=m.endpoint, PL_T_MOTO_AK=m.creds["ak"],
                       PL_T_MOTO_SK=m.creds["sk"], PL_T_MOTO_SAK=m.creds["session_ak"],
                       PL_T_MOTO_SSK=m.creds["session_sk"],
                       PL_T_MOTO_STOKEN=m.creds["session_token"])
            select.append("moto_")
        else:
            m = None
            print("SKIP: test_aws/moto moto is not installed for %s" % sys.executable)
        sys.stdout.flush()
        rc = subprocess.run([EXE] + select, env=env).returncode
        if os.access(PETAL, os.X_OK):
            rc |= cli_checks(env["PL_T_EXPIRED"], states["expired"], m)
        else:
            print("FAIL: test_aws/cli petal binary %s missing" % PETAL)
            rc = 1
    finally:
        for p in procs:
            p.stop()
        for s in servers:
            s.shutdown()
    return rc


sys.exit(main())
