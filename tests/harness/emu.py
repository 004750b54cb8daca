"""emu.py - start the offline AWS emulators for the launcher tests, on 127.0.0.1 only.

  s3rver : @20minutes/s3rver (tests/node_modules, installed by scripts/deps.sh),
           strict SigV4 header + presign checks. Keys S3RVER/S3RVER.
  moto   : `python3 -m moto.server` (this interpreter must have moto);
           auth=True turns on signature checking (INITIAL_NO_AUTH_ACTION_COUNT)
           and bootstraps an IAM user + key, LabRole, LabInstanceProfile.
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
if (process.env.S3_EXTRA_KEY) {
  const [ak, sk] = process.env.S3_EXTRA_KEY.split(":");
  require("@20minutes/s3rver/lib/models/account").DUMMY_ACCOUNT.createKeyPair(ak, sk);
}
new S3rver({address: "127.0.0.1", port: 0, directory: process.env.S3DATA, silent: true})
  .run().then(({port}) => { console.log("listening " + port); })
  .catch((e) => { console.error(e); process.exit(1); });
"""


def start_s3rver(extra_key=None):
    """extra_key: (access key, secret) accepted besides S3RVER/S3RVER."""
    tmp = tempfile.mkdtemp(prefix="petal-s3rver-")
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    env = dict(os.environ, S3DATA=data, NODE_PATH=os.path.join(TESTS, "node_modules"))
    if extra_key:
        env["S3_EXTRA_KEY"] = "%s:%s" % extra_key
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


def start_moto(auth=False):
    port = free_port()
    env = dict(os.environ)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    log = tempfile.TemporaryFile()
    p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         env=env, stdout=log, stderr=log, start_new_session=True)
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
