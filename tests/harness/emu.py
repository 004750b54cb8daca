"""emu.py - start the offline AWS emulators for the launcher tests, on 127.0.0.1 only.

  s3rver : @20minutes/s3rver (tests/node_modules, installed by scripts/deps.sh),
           strict SigV4 header + presign checks. Keys S3RVER/S3RVER (+ extra keys).
  moto   : moto's server (this interpreter must have moto);
           auth=True turns on signature checking (INITIAL_NO_AUTH_ACTION_COUNT)
           and bootstraps an IAM user + key, LabRole, LabInstanceProfile.

Two things real AWS does that the emulators lack are added on their side:
  session expiry - neither emulator lets a session token expire. With
           expired_file, a request whose session token (header or presigned
           X-Amz-Security-Token) is listed in that file (one per line, read on
           every request) gets AWS's own answer: S3 400 ExpiredToken, EC2 400
           RequestExpired, STS 403 ExpiredToken, SSM 400 ExpiredTokenException.
           expire_token(path, token) appends to it.
  audit    - with audit_dir, s3rver copies every object it stores (at creation,
           before any delete) into audit_dir, so a test can read every byte that
           ever reached the bucket.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ.pop("http_proxy", None)
os.environ.pop("HTTP_PROXY", None)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def free_port_range(n):
    """n consecutive free ports below Linux's ephemeral range (32768+), so
    outgoing connections of other tests cannot take them meanwhile."""
    import random
    for _ in range(200):
        base = random.randrange(20000, 32000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("0.0.0.0", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no %d consecutive free ports" % n)


def wait_http(url, timeout=30.0, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except urllib.error.HTTPError:
            return True
        except Exception:
            time.sleep(0.2)
    return False


def have_moto():
    try:
        import moto  # noqa: F401
        return True
    except Exception:
        return False


def have_s3rver():
    return (shutil.which("node") is not None and
            os.path.exists(os.path.join(TESTS, "node_modules", "@20minutes", "s3rver",
                                        "package.json")))


class Proc:
    def __init__(self, proc, endpoint, tmp=None):
        self.proc, self.endpoint, self.tmp = proc, endpoint, tmp

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


S3RVER_JS = r"""
const S3rver = require("@20minutes/s3rver");
const fs = require("fs"), path = require("path");
for (const kp of (process.env.S3_EXTRA_KEYS || "").split(" ").filter((x) => x)) {
  const i = kp.indexOf(":");
  require("@20minutes/s3rver/lib/models/account").DUMMY_ACCOUNT.createKeyPair(
    kp.slice(0, i), kp.slice(i + 1));
}
const s3 = new S3rver({address: "127.0.0.1", port: 0, directory: process.env.S3DATA, silent: true});
if (process.env.S3_EXPIRED_FILE) {
  // a session that ended: AWS answers 400 ExpiredToken (checked before anything else)
  s3.middleware.unshift(async (ctx, next) => {
    let expired = [];
    try { expired = fs.readFileSync(process.env.S3_EXPIRED_FILE, "utf8").split("\n"); } catch (e) {}
    const tok = ctx.get("x-amz-security-token") || ctx.query["X-Amz-Security-Token"] || "";
    if (tok && expired.includes(tok)) {
      ctx.status = 400;
      ctx.type = "application/xml";
      ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ExpiredToken</Code>' +
        '<Message>The provided token has expired.</Message><RequestId>EXPIRED1</RequestId></Error>';
      return;
    }
    await next();
  });
}
if (process.env.S3_AUDIT_DIR) {
  let n = 0;
  s3.on("event", (ev) => {
    for (const rec of ev.Records || []) {
      if (!rec.eventName.startsWith("ObjectCreated")) continue;
      const b = rec.s3.bucket.name, k = decodeURIComponent(rec.s3.object.key.replace(/\+/g, " "));
      const src = s3.store.getResourcePath(b, k, "object");
      const dst = path.join(process.env.S3_AUDIT_DIR, (++n) + "-" + b + "-" + k.replace(/\//g, "!"));
      try { fs.copyFileSync(src, dst); } catch (e) { fs.writeFileSync(dst + ".MISSING", String(e)); }
    }
  });
}
s3.run().then(({port}) => { console.log("listening " + port); })
  .catch((e) => { console.error(e); process.exit(1); });
"""


def expire_token(path, token):
    """the session of `token` ends (both emulators read `path` on every request)"""
    with open(path, "a") as f:
        f.write(token + "\n")


def start_s3rver(extra_key=None, extra_keys=(), expired_file=None, audit_dir=None):
    """extra_key(s): (access key, secret) pairs accepted besides S3RVER/S3RVER."""
    tmp = tempfile.mkdtemp(prefix="petal-s3rver-")
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    env = dict(os.environ, S3DATA=data, NODE_PATH=os.path.join(TESTS, "node_modules"))
    keys = ([extra_key] if extra_key else []) + list(extra_keys)
    for ak, sk in keys:
        assert ":" not in ak and " " not in ak + sk
    env["S3_EXTRA_KEYS"] = " ".join("%s:%s" % k for k in keys)
    if expired_file:
        env["S3_EXPIRED_FILE"] = expired_file
    if audit_dir:
        env["S3_AUDIT_DIR"] = audit_dir
    p = subprocess.Popen(["node", "--openssl-legacy-provider", "-e", S3RVER_JS], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, cwd=TESTS)
    line = p.stdout.readline()
    if not line.startswith("listening "):
        err = p.stderr.read() if p.poll() is not None else ""
        Proc(p, None, tmp).stop()
        raise RuntimeError("s3rver did not start: %r %s" % (line, err[-500:]))
    port = int(line.split()[1])
    return Proc(p, "http://127.0.0.1:%d" % port, tmp)


MOTO_GATE = r"""
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
expired_file, port = sys.argv[1], int(sys.argv[2])
ERR = {  # service (from the SigV4 scope) -> AWS's answer to an expired session token
    "ec2": ("400 Bad Request", "text/xml", "<Response><Errors><Error><Code>RequestExpired</Code>"
            "<Message>Request has expired.</Message></Error></Errors>"
            "<RequestID>expired-1</RequestID></Response>"),
    "sts": ("403 Forbidden", "text/xml", "<ErrorResponse><Error><Type>Sender</Type><Code>"
            "ExpiredToken</Code><Message>The security token included in the request is expired"
            "</Message></Error><RequestId>expired-1</RequestId></ErrorResponse>"),
    "ssm": ("400 Bad Request", "application/x-amz-json-1.1",
            '{"__type":"ExpiredTokenException","message":"The security token included in the '
            'request is expired"}'),
}
def gate(app):
    def wrapped(environ, start_response):
        tok = environ.get("HTTP_X_AMZ_SECURITY_TOKEN", "")
        try:
            expired = open(expired_file).read().split("\n")
        except OSError:
            expired = []
        if tok and tok in expired:
            auth = environ.get("HTTP_AUTHORIZATION", "")
            svc = auth.split("Credential=")[-1].split("/")[3] if "Credential=" in auth else "ec2"
            st, ct, body = ERR.get(svc, ERR["ec2"])
            start_response(st, [("Content-Type", ct), ("Content-Length", str(len(body)))])
            return [body.encode()]
        return app(environ, start_response)
    return wrapped
run_simple("127.0.0.1", port, gate(DomainDispatcherApplication(create_backend_app)),
           threaded=True)
"""


def start_moto(auth=False, expired_file=None):
    port = free_port()
    env = dict(os.environ)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    log = tempfile.TemporaryFile()
    if expired_file:
        cmd = [sys.executable, "-c", MOTO_GATE, expired_file, str(port)]
    else:
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    ep = "http://127.0.0.1:%d" % port
    if not wait_http(ep + "/moto-api/", 60, p):
        Proc(p, None).stop()
        log.seek(0)
        raise RuntimeError("moto did not start: %s" % log.read()[-500:])
    m = Proc(p, ep)
    m.creds = {"ak": "AKIDMOTOTEST", "sk": "motosecret"}
    if auth:
        m.creds = bootstrap_auth(ep)
    else:
        cl(ep, "iam").create_instance_profile(InstanceProfileName="LabInstanceProfile")
    return m


def cl(ep, svc, ak="AKIDBOOT", sk="boot", tok=None):
    import botocore.session
    from botocore.config import Config
    s = botocore.session.get_session()
    return s.create_client(svc, region_name="us-east-1", endpoint_url=ep, aws_access_key_id=ak,
                           aws_secret_access_key=sk, aws_session_token=tok,
                           config=Config(retries={"max_attempts": 1},
                                         s3={"addressing_style": "path"}))


ALLOW = json.dumps({"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def bootstrap_auth(ep):
    iam = cl(ep, "iam")
    iam.create_user(UserName="launcher")
    k = iam.create_access_key(UserName="launcher")["AccessKey"]
    iam.put_user_policy(UserName="launcher", PolicyName="all", PolicyDocument=ALLOW)
    iam.create_role(RoleName="LabRole", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
    ak, sk = k["AccessKeyId"], k["SecretAccessKey"]
    iam2 = cl(ep, "iam", ak, sk)
    iam2.put_role_policy(RoleName="LabRole", PolicyName="all", PolicyDocument=ALLOW)
    iam2.create_instance_profile(InstanceProfileName="LabInstanceProfile")
    iam2.add_role_to_instance_profile(InstanceProfileName="LabInstanceProfile",
                                      RoleName="LabRole")
    c = cl(ep, "sts", ak, sk).assume_role(
        RoleArn="arn:aws:iam::123456789012:role/LabRole",
        RoleSessionName="petal-test")["Credentials"]
    return {"ak": ak, "sk": sk, "session_ak": c["AccessKeyId"],
            "session_sk": c["SecretAccessKey"], "session_token": c["SessionToken"]}
