#!/bin/sh
# -*- python -*-
# test_sigv4_botocore.py - the C signer matches botocore byte for byte on the
# project's own EC2, S3 and SSM requests (captured by `test_sigv4 --emit`,
# which signs them at a fixed time without sending anything).
# Runs under whichever interpreter has botocore: the PATH python3 (pip
# botocore) or Debian's /usr/bin/python3 with python3-botocore.
''':'
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import botocore' 2>/dev/null; then
        exec "$py" "$0" "$@"
    fi
done
echo "SKIP: test_sigv4_botocore no python3 with botocore (apt-get install python3-botocore)"
exit 0
'''
import base64
import datetime as real_dt
import json
import os
import subprocess
import sys
import types
import urllib.parse

import botocore
import botocore.auth as bauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BUILD = os.environ.get("BUILD", "build")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def freeze(ts):
    fixed = real_dt.datetime.strptime(ts, "%Y%m%dT%H%M%SZ")

    class Frozen(real_dt.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

        @classmethod
        def now(cls, tz=None):
            return fixed if tz is None else fixed.replace(tzinfo=real_dt.timezone.utc)

    bauth.datetime = types.SimpleNamespace(datetime=Frozen, timezone=real_dt.timezone,
                                           timedelta=real_dt.timedelta)
    if hasattr(bauth, "get_current_datetime"):
        bauth.get_current_datetime = (
            lambda remove_tzinfo=True: fixed if remove_tzinfo
            else fixed.replace(tzinfo=real_dt.timezone.utc))


def check_raw(rec):
    """Sign exactly the headers the C code sends (minus Authorization)."""
    hdrs = {k: v for k, v in rec["headers"] if k.lower() != "authorization"}
    body = base64.b64decode(rec["body_b64"])
    req = AWSRequest(method=rec["method"], url=rec["url"], headers=hdrs, data=body)
    cls = bauth.S3SigV4Auth if rec["service"] == "s3" else bauth.SigV4Auth
    auth = cls(Credentials(rec["access_key"], rec["secret_key"], rec.get("token")),
               rec["service"], rec["region"])
    req.context["timestamp"] = rec["timestamp"]
    creq = auth.canonical_request(req)
    sts = auth.string_to_sign(req, creq)
    sig = auth.signature(sts, req)
    problems = []
    if creq != rec["canonical_request"]:
        problems.append("canonical request differs:\n--- botocore\n%s\n--- C\n%s" %
                        (creq, rec["canonical_request"]))
    if sig != rec["signature"]:
        problems.append("signature %s (botocore) != %s (C)" % (sig, rec["signature"]))
    authz = dict((k.lower(), v) for k, v in rec["headers"])["authorization"]
    if not authz.endswith("Signature=" + sig):
        problems.append("Authorization header does not carry botocore's signature")
    return problems


def check_presign(rec):
    u = urllib.parse.urlsplit(rec["url"])
    c_params = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    c_sig = dict(c_params)["X-Amz-Signature"]
    base = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, "", ""))
    freeze(rec["timestamp"])
    req = AWSRequest(method=rec["method"], url=base, headers={}, data=b"")
    auth = bauth.S3SigV4QueryAuth(
        Credentials(rec["access_key"], rec["secret_key"], rec.get("token")),
        "s3", rec["region"], expires=rec["expires"])
    auth.add_auth(req)
    b = urllib.parse.urlsplit(req.url)
    b_params = urllib.parse.parse_qsl(b.query, keep_blank_values=True)
    problems = []
    if sorted(b_params) != sorted(c_params):
        problems.append("query differs:\n botocore %s\n C        %s" %
                        (sorted(b_params), sorted(c_params)))
    if b.path != u.path:
        problems.append("path %s (botocore) != %s (C)" % (b.path, u.path))
    if dict(b_params).get("X-Amz-Signature") != c_sig:
        problems.append("presigned signature differs")
    return problems


def main():
    exe = os.path.join(ROOT, BUILD, "tests", "test_sigv4")
    if not os.path.exists(exe):
        exe = os.path.join(BUILD, "tests", "test_sigv4")
    out = subprocess.run([exe, "--emit"], check=True, capture_output=True, text=True).stdout
    recs = [json.loads(l) for l in out.splitlines() if l.strip()]
    failed = 0
    counts = {}
    for i, rec in enumerate(recs):
        probs = check_raw(rec) if rec["mode"] == "raw" else check_presign(rec)
        what = "%s %s %s%s" % (rec["service"], rec["method"], rec["mode"],
                               " +token" if rec.get("token") else "")
        counts[rec["service"]] = counts.get(rec["service"], 0) + 1
        if probs:
            failed += 1
            print("FAIL: test_sigv4_botocore/%d %s %s" % (i, what, rec["url"][:80]))
            for p in probs:
                print("  " + p.replace("\n", "\n  "))
    if len(recs) < 40 or not counts.get("ec2") or not counts.get("s3") or not counts.get("ssm"):
        print("FAIL: test_sigv4_botocore/coverage only %d requests %s" % (len(recs), counts))
        return 1
    if not failed:
        print("PASS: test_sigv4_botocore/byte_for_byte %d requests %s (botocore %s, %s)" %
              (len(recs), counts, botocore.__version__, sys.executable))
    return 1 if failed else 0


sys.exit(main())
