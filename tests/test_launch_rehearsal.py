#!/bin/sh
# -*- python -*-
# test_launch_rehearsal.py - `petal launch` end to end, offline: moto plays EC2 and SSM,
# s3rver plays S3 (strict SigV4), tests/harness/fakehv.py plays the hypervisor (runs
# each instance's user-data locally with IMDSv2 on loopback). Rehearsals:
#   full     - the whole lifecycle succeeds with per-run mutual TLS + token; results tree +
#              report; nothing left behind; no key or token in any text, file or log; while
#              the clients are held back, rogue clients (CA only; client cert, no token) are
#              refused and the server logs both refusals
#   role     - instance-profile uploads, local model and dataset artifacts (stand-in agents)
#   kill     - one client instance dies mid-run: clear failure, full clean-up
#   sigint   - SIGINT to the launcher mid-run (--no-auth): clean-up, exit status 130
#   keep     - --keep leaves instances and the certificate directory; --cleanup removes them
# The agents are the real `petal server` / `petal client`; while those report "not
# implemented", the rehearsals run with tests/harness/standin_agent.sh (SKIP printed).
''':'
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import moto, botocore' 2>/dev/null; then
        exec "$py" "$0" "$@"
    fi
done
echo "SKIP: test_launch_rehearsal no python3 with moto (the image's python3 has moto 5.2.1)"
exit 0
'''
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "harness"))
import emu  # noqa: E402
import fakehv  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
PETAL = os.environ.get("PETAL_BIN") or os.path.join(ROOT, BUILD, "petal")
# accepted by s3rver; must never leak. Made per run: a secret written in this file
# would be in the source tarball, which the launcher (rightly) refuses to upload
AK, SK = "AKIDREHEARSAL", "rs/" + secrets.token_urlsafe(24)
AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# small, fast federations for the real agents
REAL_SERVER_ARGS = os.environ.get("PETAL_REHEARSAL_SERVER_ARGS", "--eval-limit 300 --threads 1")
REAL_CLIENT_ARGS = os.environ.get("PETAL_REHEARSAL_CLIENT_ARGS",
                                  "--limit 600 --eval-limit 100 --threads 1")
failed = 0


def check(name, cond, detail=""):
    global failed
    print("%s: test_launch_rehearsal/%s%s" % ("PASS" if cond else "FAIL", name,
                                              "" if cond else "  " + str(detail)[-1500:]))
    sys.stdout.flush()
    if not cond:
        failed += 1
    return cond


def agents_ready():
    try:
        p = subprocess.run([PETAL, "server", "--help"], capture_output=True, text=True,
                           timeout=20)
    except OSError as e:
        return False, str(e)
    txt = p.stdout + p.stderr
    if p.returncode != 0 or "not implemented" in txt:
        return False, "petal server reports: %s" % txt.strip()[:120]
    return True, ""


class Env:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="petal-rehearsal-")
        self.s3 = emu.start_s3rver(extra_key=(AK, SK))
        self.moto = emu.start_moto(auth=False)
        self.ec2 = emu.cl(self.moto.endpoint, "ec2")
        self.s3c = emu.cl(self.s3.endpoint, "s3", AK, SK)
        # the source tarball, as `make dist` builds it
        dist = os.path.join(self.tmp, "dist")
        subprocess.run(["make", "-s", "-C", ROOT, "dist", "BUILD=" + dist], check=True,
                       stdout=subprocess.DEVNULL)
        self.tarball = os.path.join(dist, "petal-src.tar.gz")

    def close(self):
        self.s3.stop()
        self.moto.stop()
        if os.environ.get("PETAL_REHEARSAL_KEEP"):
            print("  kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def real_args(real):
    if not real:
        return []
    extra = ["--dataset", "fashion-mnist"]
    if REAL_SERVER_ARGS:
        extra += ["--server-args", REAL_SERVER_ARGS]
    if REAL_CLIENT_ARGS:
        extra += ["--client-args", REAL_CLIENT_ARGS]
    return extra


def launch_cmd(env, name, agent, port, strategies, extra=(), rounds=1):
    out = os.path.join(env.tmp, name, "results")
    state = os.path.join(env.tmp, name, "state")
    cmd = [PETAL, "launch", "--n-client-instances", "2", "--num-rounds", str(rounds),
           "--strategy", ",".join(strategies), "--endpoint-url", env.moto.endpoint,
           "--s3-endpoint", env.s3.endpoint, "--ami-parameter", AL2023,
           "--instance-profile", "LabInstanceProfile" if "--role" in extra else "",
           "--dist-tarball", env.tarball, "--agent-binary", agent, "--port", str(port),
           "--poll-interval", "0.5", "--boot-timeout", "60", "--timeout", "240",
           "--out", out, "--state-dir", state, "--key-name", "vockey"]
    if "--role" not in extra:
        i = cmd.index("--instance-profile")
        del cmd[i:i + 2]
    cmd += [x for x in extra if x != "--role"]
    return cmd, out, state


def run_env(env, hv_root):
    e = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, HOME=hv_root,
             NO_PROXY="127.0.0.1")
    e.pop("AWS_SESSION_TOKEN", None)
    e.pop("AWS_PROFILE", None)
    return e


def leftovers(env, run_id):
    """instances not terminated, groups and buckets of this run"""
    live = []
    for page in env.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:petal:run-id", "Values": [run_id]}]):
        for r in page["Reservations"]:
            live += [i["InstanceId"] for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    groups = [g["GroupId"] for g in env.ec2.describe_security_groups()["SecurityGroups"]
              if g["GroupName"] == "petal-" + run_id]
    buckets = [b["Name"] for b in env.s3c.list_buckets().get("Buckets", [])
               if b["Name"].startswith("petal-" + run_id.lower())]
    return live, groups, buckets


def run_id_of(state_dir):
    files = glob.glob(os.path.join(state_dir, "*.json"))
    if len(files) != 1:
        return None, None
    with open(files[0]) as f:
        st = json.load(f)
    return st["run_id"], st


def no_secret_anywhere(hv):
    bad = []
    for iid, it in hv.instances.items():
        if SK.encode() in it["user_data"]:
            bad.append(iid + " user-data")
        if len(it["user_data"]) >= 16384:
            bad.append(iid + " user-data too big")
        for fn in ("manifest.json", "manifest.sh"):
            p = os.path.join(it["workdir"], fn)
            if os.path.exists(p) and SK.encode() in open(p, "rb").read():
                bad.append(iid + " " + fn)
    return bad


def mode_of(path):
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def rogue_clients(env, hv, state, port, p):
    """While the first strategy's server waits for its (held back) clients: a client with
    the run's CA but no certificate and no token, and one with the run's client certificate
    but no token, must both be refused. Also checks the local 0700 certificate directory."""
    def server_listening():
        iid, it = hv.find("server")
        if not it:
            return None
        try:
            txt = open(os.path.join(it["workdir"], "agent.log")).read()
        except OSError:
            return None
        return it if "strategy " in txt and "SSL is enabled" in txt else None
    it = wait_for(lambda: p.poll() is not None or server_listening(), 120)
    if not check("auth_server_listening", it is not None and it is not True and
                 p.poll() is None, p.poll()):
        return
    run_id, _ = run_id_of(state)
    adir = os.path.join(state, "%s.auth" % run_id)
    check("auth_local_dir_0700", mode_of(adir) == 0o700 and
          all(mode_of(os.path.join(adir, f)) == 0o600 for f in
              ("ca.key", "server.key", "client.key", "token")), (adir, mode_of(adir)))
    agent_auth = os.path.join(it["workdir"], "auth")
    check("auth_agent_dir_0700", mode_of(agent_auth) == 0o700 and
          mode_of(os.path.join(agent_auth, "key.pem")) == 0o600 and
          mode_of(os.path.join(agent_auth, "token")) == 0o600, mode_of(agent_auth))
    renv = {k: v for k, v in os.environ.items() if k != "PETAL_AUTH_TOKEN"}
    base = [PETAL, "client", "--server", "127.0.0.1:%d" % port, "--tls-ca",
            os.path.join(agent_auth, "ca.pem"), "--server-name", "petal-server",
            "--connect-timeout", "20", "--dataset", "fashion-mnist", "--limit", "50",
            "--eval-limit", "20", "--threads", "1"]
    rogues = {
        "no_cert_no_token": [],
        "cert_no_token": ["--tls-cert", os.path.join(adir, "client.pem"),
                          "--tls-key", os.path.join(adir, "client.key")],
    }
    for name, extra in rogues.items():
        q = subprocess.run(base + extra + ["--out", os.path.join(env.tmp, "rogue-" + name)],
                           env=renv, capture_output=True, text=True, timeout=60)
        check("rogue_%s_refused" % name, q.returncode != 0 and
              ("refused" in q.stderr or "TLS" in q.stderr), (q.returncode, q.stderr[-400:]))
    check("rogue_token_refusal_named", "refused this client" in q.stderr and
          "authentication token" in q.stderr, q.stderr[-400:])


def rehearsal_full(env, agent, port, strategies, real, role_mode=False):
    name = "full-role" if role_mode else "full"
    hv_root = os.path.join(env.tmp, name + "-hv")
    os.makedirs(hv_root)
    rogue = real and not role_mode
    hold = threading.Event() if rogue else None
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, role_creds=(AK, SK) if role_mode else None,
                               extra_env={"STANDIN_SECONDS": "1", "STANDIN_EXPECT_AUTH": "1"},
                               hold_clients=hold)
    hv.start()
    extra = (["--role"] if role_mode else []) + real_args(real)
    if role_mode:
        # local model file and dataset folder travel as artifacts
        art = os.path.join(env.tmp, "artifacts")
        os.makedirs(os.path.join(art, "imgs", "class_a"))
        with open(os.path.join(art, "imgs", "class_a", "x.txt"), "w") as f:
            f.write("not an image\n")
        with open(os.path.join(art, "model.json"), "w") as f:
            f.write('{"layers": []}\n')
        extra += ["--model", os.path.join(art, "model.json"),
                  "--dataset", os.path.join(art, "imgs")]
    cmd, out, state = launch_cmd(env, name, agent, port, strategies, extra)
    t0 = time.time()
    p = subprocess.Popen(cmd, env=run_env(env, hv_root), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if rogue:
        try:
            rogue_clients(env, hv, state, port, p)
        finally:
            hold.set()
    try:
        so, se = p.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
    secs = time.time() - t0
    hv.stop()
    tag = name
    ok = check(tag + "_exit_0", p.returncode == 0, se)
    run_id, st = run_id_of(state)
    check(tag + "_state_file", st is not None and st["status"] == "cleaned", st)
    if not run_id:
        return
    for s in strategies:
        d = os.path.join(out, "openblas", s, "2")
        files = sorted(os.listdir(d)) if os.path.isdir(d) else []
        want = ["client_0_log.log", "client_1_log.log", "events.jsonl", "server_log.log"]
        check(tag + "_tree_" + s, all(w in files for w in want), (d, files))
        ev = os.path.join(d, "events.jsonl")
        if os.path.exists(ev):
            lines = [json.loads(l) for l in open(ev) if l.strip()]
            srcs = {l.get("source") for l in lines}
            check(tag + "_events_" + s, {"server", "client_0", "client_1"} <= srcs and
                  [l["ts"] for l in lines] == sorted(l["ts"] for l in lines), srcs)
    if ok and real:
        check(tag + "_report_html", os.path.exists(os.path.join(out, "report.html")))
    check(tag + "_agent_logs", len(glob.glob(os.path.join(out, "agents", run_id, "*.log"))) == 3)
    live, groups, buckets = leftovers(env, run_id)
    check(tag + "_nothing_left", not live and not groups and not buckets, (live, groups, buckets))
    check(tag + "_no_secret_to_instances", not no_secret_anywhere(hv), no_secret_anywhere(hv))
    check(tag + "_imdsv2_used", all(it["imds"].requests >= 4 for it in hv.instances.values()) and
          len(hv.instances) == 3, {k: v["imds"].requests for k, v in hv.instances.items()})
    check(tag + "_hypervisor_ok", not hv.errors, hv.errors)
    check(tag + "_auth_local_dir_removed", not os.path.exists(
        os.path.join(state, run_id + ".auth")), os.listdir(state))
    leaks = auth_leaks(hv, [so, se], [state, out])
    check(tag + "_no_key_or_token_leaked", leaks == [], leaks)
    if rogue:
        slog = os.path.join(out, "agents", run_id, "server.log")
        txt = open(slog).read() if os.path.exists(slog) else ""
        check("rogue_refusals_logged", "TLS handshake failed" in txt and
              "refused: no authorization token" in txt, txt[-1200:])
    print("  %s rehearsal: %.1f s, launcher stderr tail:\n    %s" % (
        name, secs, "\n    ".join(se.strip().splitlines()[-4:])))


def auth_leaks(hv, texts, dirs):
    """the run's token and private keys (as the agents received them) in any text, any file
    of the given directories, the user-data or the manifests?"""
    secrets_ = []
    for it in hv.instances.values():
        for fn in ("token", "key.pem"):
            path = os.path.join(it["workdir"], "auth", fn)
            if os.path.exists(path):
                body = open(path).read()
                if fn == "token":
                    secrets_.append(body.strip())
                else:  # the base64 lines of the PEM
                    secrets_ += [l for l in body.splitlines() if l and not l.startswith("-----")]
    if not secrets_:
        return ["no auth material found on the instances"]
    bad = []
    for i, t in enumerate(texts):
        bad += ["text %d" % i for sec in secrets_ if sec in (t or "")]
    files = []
    for d in dirs:
        for root, _, names in os.walk(d):
            files += [os.path.join(root, n) for n in names]
    for it in hv.instances.values():
        files += [os.path.join(it["workdir"], n) for n in
                  ("user-data", "manifest.json", "manifest.sh", "agent.log", "console.log")]
    for f in files:
        try:
            data = open(f, "rb").read().decode("utf-8", "replace")
        except OSError:
            continue
        bad += [f for sec in secrets_ if sec in data]
    return sorted(set(bad))


def wait_for(cond, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        r = cond()
        if r:
            return r
        time.sleep(0.2)
    return None


def agent_started(it):
    """the agent has been running its first strategy for a second"""
    try:
        txt = open(os.path.join(it["workdir"], "agent.log")).read()
    except OSError:
        return False
    if "strategy" not in txt:
        it.pop("seen", None)
        return False
    it.setdefault("seen", time.time())
    return time.time() - it["seen"] > 1.5


def rehearsal_kill(env, agent, port, strategies, real):
    hv_root = os.path.join(env.tmp, "kill-hv")
    os.makedirs(hv_root)
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "30"})
    hv.start()
    cmd, out, state = launch_cmd(env, "kill", agent, port, strategies, real_args(real),
                                 rounds=40 if real else 1)
    p = subprocess.Popen(cmd, env=run_env(env, hv_root), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    def victim():
        iid, it = hv.find("client", 1)
        return iid if it and agent_started(it) else None
    iid = wait_for(victim, 120)
    check("kill_client_started", iid is not None)
    if iid:
        hv.crash(iid)
    try:
        so, se = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
    hv.stop()
    check("kill_exit_1", p.returncode == 1, se)
    print("  kill rehearsal, launcher stderr (last lines):\n    " +
          "\n    ".join(se.strip().splitlines()[-6:]))
    check("kill_clear_message", iid is not None and iid in se and "client_1" in se and
          ("terminated" in se or "shutting-down" in se) and "before its results arrived" in se,
          se)
    run_id, st = run_id_of(state)
    if run_id:
        live, groups, buckets = leftovers(env, run_id)
        check("kill_full_cleanup", not live and not groups and not buckets, (live, groups, buckets))
        check("kill_state_file", st["status"] == "cleaned", st)


def rehearsal_sigint(env, agent, port, strategies, real):
    hv_root = os.path.join(env.tmp, "sigint-hv")
    os.makedirs(hv_root)
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "30"})
    hv.start()
    # --no-auth here: the agents run without TLS, certificates and token
    cmd, out, state = launch_cmd(env, "sigint", agent, port, strategies,
                                 real_args(real) + ["--no-auth"], rounds=40 if real else 1)
    p = subprocess.Popen(cmd, env=run_env(env, hv_root), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    def started():
        iid, it = hv.find("client", 1)
        return it is not None and agent_started(it)
    check("sigint_agents_started", wait_for(started, 120) is not None)
    p.send_signal(signal.SIGINT)
    try:
        so, se = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
    hv.stop()
    check("sigint_exit_130", p.returncode == 130, se)
    check("sigint_message", "interrupted" in se, se)
    iid, it = hv.find("server")
    try:
        m = json.load(open(os.path.join(it["workdir"], "manifest.json")))
        argv = m["agents"][0]["runs"][0]["argv"]
        ok = "auth" not in m and not any(a.startswith("--tls") for a in argv)
    except (OSError, TypeError, KeyError, ValueError) as e:
        ok, argv = False, e
    check("sigint_no_auth_manifest", ok, argv)
    run_id, st = run_id_of(state)
    if run_id:
        live, groups, buckets = leftovers(env, run_id)
        check("sigint_full_cleanup", not live and not groups and not buckets,
              (live, groups, buckets))


def rehearsal_keep_cleanup(env, agent, port, real):
    """--keep leaves the instances up; --cleanup RUN_ID finds them by tag (no state file)"""
    hv_root = os.path.join(env.tmp, "keep-hv")
    os.makedirs(hv_root)
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "1"})
    hv.start()
    cmd, out, state = launch_cmd(env, "keep", agent, port, ["FedAvg"], real_args(real) + ["--keep"])
    p = subprocess.run(cmd, env=run_env(env, hv_root), capture_output=True, text=True, timeout=300)
    check("keep_exit_0", p.returncode == 0, p.stderr)
    run_id, st = run_id_of(state)
    if not run_id:
        hv.stop()
        return
    live, groups, buckets = leftovers(env, run_id)
    check("keep_instances_left_up", len(live) == 3 and len(groups) == 1 and not buckets,
          (live, groups, buckets))
    check("keep_tells_how_to_clean", "--cleanup " + run_id in p.stderr, p.stderr[-500:])
    adir = os.path.join(state, run_id + ".auth")
    check("keep_auth_dir_kept", mode_of(adir) == 0o700 and
          os.path.exists(os.path.join(adir, "token")), adir)
    os.remove(os.path.join(state, run_id + ".json"))
    c = subprocess.run([PETAL, "launch", "--cleanup", run_id, "--endpoint-url", env.moto.endpoint,
                        "--s3-endpoint", env.s3.endpoint, "--state-dir", state,
                        "--poll-interval", "0.5"],
                       env=run_env(env, hv_root), capture_output=True, text=True, timeout=300)
    hv.stop()
    check("cleanup_exit_0", c.returncode == 0, c.stderr)
    live, groups, buckets = leftovers(env, run_id)
    check("cleanup_removed_everything", not live and not groups and not buckets,
          (live, groups, buckets))
    check("cleanup_removed_auth_dir", not os.path.exists(adir), os.listdir(state))


def main():
    if not emu.have_s3rver():
        print("SKIP: test_launch_rehearsal @20minutes/s3rver not installed (scripts/deps.sh)")
        return 0
    if not os.access(PETAL, os.X_OK):
        print("FAIL: test_launch_rehearsal/petal_binary %s missing" % PETAL)
        return 1
    real, why = agents_ready()
    standin = os.path.join(HERE, "harness", "standin_agent.sh")
    env = Env()
    try:
        only = os.environ.get("PETAL_REHEARSAL_ONLY", "full,role,kill,sigint,keep").split(",")
        base = emu.free_port_range(2)
        if "full" not in only:
            pass
        elif real:
            rehearsal_full(env, PETAL, base, ["FedAvg", "FedAdam"], True)
        else:
            print("SKIP: test_launch_rehearsal/full_real_agents %s; rehearsing with "
                  "tests/harness/standin_agent.sh instead" % why)
            rehearsal_full(env, standin, base, ["FedAvg", "FedAdam"], False)
        if "role" in only:
            rehearsal_full(env, standin, emu.free_port_range(1), ["FedAvg"], False, role_mode=True)
        agent = PETAL if real else standin
        if "kill" in only:
            rehearsal_kill(env, agent, emu.free_port_range(1), ["FedAvg"], real)
        if "sigint" in only:
            rehearsal_sigint(env, agent, emu.free_port_range(1), ["FedAvg"], real)
        if "keep" in only:
            rehearsal_keep_cleanup(env, standin, emu.free_port_range(1), False)
    finally:
        env.close()
    return 1 if failed else 0


sys.exit(main())
