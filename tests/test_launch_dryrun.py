#!/usr/bin/python3
"""test_launch_dryrun.py - `petal launch --dry-run` for 9 instances (8 clients) and 4
strategies: prints the plan, both manifests and both user-data scripts, calls nothing
(every endpoint points at a closed loopback port), leaks no credential, and each
user-data script is valid sh under 16 KB. Also: the Learner Lab limit is checked
before any call."""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PETAL = os.environ.get("PETAL_BIN") or os.path.join(ROOT, os.environ.get("BUILD", "build"), "petal")
SECRET = "RealSecretKeyDoNotLeak/abc+def"
# as long as a Learner Lab session token (they run to ~1000 characters): the dry run signs
# its placeholder URLs with a token of the same length, so the user-data sizes are real
TOKEN = "RealSessionTokenDoNotLeakFQoGZXIvYXdz" + "IQoJb3JpZ2luX2VjEB" * 60
AKID = "ASIAREALKEYEXAMPLE42"
failed = 0


def check(name, cond, detail=""):
    global failed
    print("%s: test_launch_dryrun/%s%s" % ("PASS" if cond else "FAIL", name,
                                           "" if cond else " " + detail))
    if not cond:
        failed += 1


def on_debian12():
    try:
        rel = open("/etc/os-release").read()
    except OSError:
        return False
    return "ID=debian\n" in rel and 'VERSION_ID="12"' in rel and os.uname().machine == "x86_64"


def main():
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_SESSION_TOKEN=TOKEN, AWS_LAB_SECRET_ACCESS_KEY=SECRET, HOME=tempfile.mkdtemp())
    base = [PETAL, "launch", "--dry-run", "--endpoint-url", "http://127.0.0.1:1"]
    p = subprocess.run(base + ["--n-client-instances", "8", "--num-rounds", "5",
                               "--strategy", "FedAvg,FedAvgM", "--strategy", "FedAdagrad,FedAdam",
                               "--model", "cnn", "--dataset", "fashion-mnist"],
                       env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout
    check("exit_status", p.returncode == 0, "rc=%d %s" % (p.returncode, p.stderr[-300:]))
    for bad, what in ((SECRET, "secret key"), (TOKEN, "session token"), (AKID, "access key id"),
                      ("aws_secret_access_key", "secret name"), ("SECRET_ACCESS_KEY", "env name")):
        check("no_" + what.replace(" ", "_"), bad not in out and bad not in p.stderr)
    check("plan", "9 of at most 9" in out and "FedAdam (port 8083)" in out, out[:400])
    check("plan_names_credential_source", "credentials: found in the environment" in out)
    # manifests: JSON, every URL presigned, every result object has a PUT URL
    parts = re.split(r"^---- (.*) ----$", out, flags=re.M)
    sec = dict(zip(parts[1::2], parts[2::2]))
    man = {k.split()[0]: v for k, v in sec.items() if "manifest" in k}
    uds = {k.split()[0]: v.lstrip("\n") for k, v in sec.items() if "user-data" in k}
    ok = True
    try:
        ms = json.loads(man["server"])
        mc = json.loads(man["client"])
        ok = (len(mc["agents"]) == 8 and all(len(a["runs"]) == 4 for a in mc["agents"])
              and len(ms["agents"]) == 1 and mc["server_ip"])
        for a in mc["agents"] + ms["agents"]:
            for r in a["runs"]:
                for f in ("log", "events"):
                    ok = ok and "X-Amz-Signature=" in r[f] and r[f].startswith("http://127.0.0.1:1/")
            ok = ok and "X-Amz-Signature=" in a["agent_log"]
        ok = ok and mc["agents"][7]["runs"][3]["argv"][:5] == [
            "client", "--server", "{server_ip}:8083", "--partition", "7/8"]
    except Exception as e:  # noqa: BLE001
        ok = False
        print("  manifest: %r" % e)
    check("manifests", ok)
    # per-run authentication (default): each role's manifest carries presigned GET URLs for
    # the CA, its own certificate and key, and the token -- never the material itself
    ok = True
    try:
        for role, m in (("server", ms), ("client", mc)):
            au = m["auth"]
            ok = ok and au["server_name"] == "petal-server"
            for f, key in (("ca", "auth/ca.pem"), ("cert", "auth/%s.pem" % role),
                           ("key", "auth/%s.key" % role), ("token", "auth/token")):
                u = au[f]
                ok = ok and u.startswith("http://127.0.0.1:1/") and "/" + key + "?" in u and \
                    "X-Amz-Signature=" in u
            other = "client" if role == "server" else "server"
            ok = ok and ("auth/%s.key" % other) not in man[role]
        sa = ms["agents"][0]["runs"][0]["argv"]
        ca = mc["agents"][3]["runs"][1]["argv"]
        ok = ok and all(x in sa for x in ("--tls-cert", "--tls-key", "--tls-client-ca",
                                          "--auth-token-file"))
        ok = ok and all(x in ca for x in ("--tls-ca", "--tls-cert", "--tls-key",
                                          "--auth-token-file"))
        ok = ok and ca[ca.index("--server-name") + 1] == "petal-server"
    except Exception as e:  # noqa: BLE001
        ok = False
        print("  auth manifest: %r" % e)
    check("auth_urls_only", ok)
    check("no_key_material", "-----BEGIN" not in out and "PRIVATE KEY" not in out)
    check("plan_names_authentication", "authentication   TLS with a per-run CA" in out)
    # what a user decides on: cost, timeline, what builds where, the deadline
    check("plan_cost", re.search(r"cost +\$1\.134 per hour for the 9 instances \(r5\.large "
                                 r"\$0\.1260/h each", out) is not None, out[:2500])
    check("plan_timeline", re.search(r"timeline +launch -> round 1 in about \d+ min", out) and
          "server build: make -j2 build/petal" in out, out[:2500])
    check("plan_build_once", "builds petal once" in out and "runtime packages only" in out)
    check("plan_deadline", re.search(r"deadline +the instances terminate themselves 3\.0 h", out)
          is not None, out[:2500])
    p4 = subprocess.run(base + ["--n-client-instances", "2"], env=env, capture_output=True,
                        text=True, timeout=60)
    check("plan_defaults_as_petal_run", "model            fmnist-cnn" in p4.stdout and
          "dataset          fashion-mnist" in p4.stdout, p4.stdout[:1200])
    try:
        sa = ms["agents"][0]["runs"][0]["argv"]
        ca = mc["agents"][0]["runs"][0]["argv"]
        ok = (sa[sa.index("--dataset") + 1] == "fashion-mnist" and
              sa[sa.index("--model") + 1] == "cnn" and "--epochs" in sa and
              ca[ca.index("--limit") + 1] == str(4000 * 8) and "--id" in ca)
    except (ValueError, KeyError, NameError) as e:
        ok = False
        print("  argv: %r" % e)
    check("agents_get_petal_run_defaults", ok)
    # --no-auth: no auth section, no TLS arguments, the plan says so
    p2 = subprocess.run(base + ["--n-client-instances", "2", "--no-auth"], env=env,
                        capture_output=True, text=True, timeout=60)
    check("no_auth", p2.returncode == 0 and '"auth"' not in p2.stdout and
          "--tls" not in p2.stdout and "authentication   none (--no-auth)" in p2.stdout,
          p2.stderr[-300:])
    # --instance-profile (role uploads), --build local, --keep-on-failure, a server type
    p3 = subprocess.run(base + ["--n-client-instances", "8", "--instance-profile",
                                "LabInstanceProfile", "--build", "local", "--keep-on-failure",
                                "--server-instance-type", "t3.large"],
                        env=env, capture_output=True, text=True, timeout=60)
    parts3 = re.split(r"^---- (.*) ----$", p3.stdout, flags=re.M)
    sec3 = dict(zip(parts3[1::2], parts3[2::2]))
    local_ok = p3.returncode == 0 if on_debian12() else p3.returncode == 2
    check("build_local", local_ok and (not on_debian12() or
          "runs the uploaded --agent-binary" in p3.stdout), (p3.returncode, p3.stderr[-300:]))
    if p3.returncode == 0:
        check("keep_on_failure_plan", "failed ones stay up (--keep-on-failure)" in p3.stdout)
        check("server_type_plan", "server           1 x t3.large" in p3.stdout and
              "r5.large $0.1260/h, server t3.large" in p3.stdout, p3.stdout[:1500])
        for k, v in sec3.items():
            if "user-data" in k:
                uds[k.split()[0] + "-role"] = v.lstrip("\n")
    for role in [r for r in uds]:
        ud = uds.get(role, "")
        size = len(ud.encode())
        check("user_data_%s_under_16KB" % role, 0 < size < 16384, "size %d" % size)
        check("user_data_%s_one_url" % role, ud.count("X-Amz-Signature=") == 1)
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
            f.write(ud)
        check("user_data_%s_sh_syntax" % role,
              subprocess.run(["sh", "-n", f.name]).returncode == 0)
        os.unlink(f.name)
    # limits are checked before any call: 9 clients + 1 server (an empty
    # placeholder tarball: a device such as /dev/null is refused as a path)
    with tempfile.NamedTemporaryFile(suffix=".tar.gz", delete=False) as f:
        placeholder = f.name
    p = subprocess.run([PETAL, "launch", "--n-client-instances", "9", "--endpoint-url",
                        "http://127.0.0.1:1", "--dist-tarball", placeholder],
                       env=env, capture_output=True, text=True, timeout=60)
    os.unlink(placeholder)
    check("learner_lab_limit", p.returncode == 2 and "at most 9" in p.stderr, p.stderr[-300:])
    p = subprocess.run([PETAL, "launch", "--num-rounds", "3"], env=env, capture_output=True,
                       text=True, timeout=60)
    check("n_client_instances_required", p.returncode == 2 and
          "--n-client-instances is required" in p.stderr, p.stderr[-200:])
    p = subprocess.run([PETAL, "launch", "--n-client-instances", "x"], env=env,
                       capture_output=True, text=True, timeout=60)
    check("bad_number", p.returncode == 2 and "--n-client-instances" in p.stderr)
    # missing credentials are reported before anything is created
    env2 = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "src.tar.gz"), "wb") as f:
        f.write(b"x")
    p = subprocess.run([PETAL, "launch", "--n-client-instances", "1", "--endpoint-url",
                        "http://127.0.0.1:1", "--dist-tarball", os.path.join(d, "src.tar.gz"),
                        "--env-file", "",
                        "--state-dir", d], env=dict(env2, HOME=d), capture_output=True, text=True,
                       timeout=60, cwd=d)
    check("no_credentials", p.returncode == 1 and "no AWS credentials" in p.stderr,
          p.stderr[-300:])
    return 1 if failed else 0


sys.exit(main())
