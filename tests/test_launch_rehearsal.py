#!/bin/sh
# -*- python -*-
# test_launch_rehearsal.py - `petal launch` end to end, offline: moto plays EC2, SSM and
# STS, s3rver plays S3 (strict SigV4), tests/harness/fakehv.py plays the hypervisor (runs
# each instance's user-data locally with IMDSv2 on loopback). The on-instance path is the
# real one: the user-data downloads the source tarball `make dist` made, runs deps.sh
# (build profile on the server, runtime on the clients: here everything is installed, so
# it only checks) and `make build/petal` on the server, shares the binary through S3 and
# starts the real `petal server` / `petal client`. Rehearsals:
#   full      presigned uploads, the server builds from the tarball, mutual TLS + token
#             (rogue clients refused), results + report + measured timeline, nothing left
#   role      instance-profile uploads (curl --aws-sigv4 from the first stage), the
#             launcher's own binary for every instance (--agent-binary)
#   buildfail a tarball that does not compile: the launcher shows the failure and the
#             log's tail within one poll, in both upload modes; the server shuts itself down
#   secrets   .env, labsuser.pem, .aws/credentials in the tree: none of their bytes in any
#             object s3rver ever stored; a tracked key or a tarball with .env is refused
#             before anything is created; local model and dataset artifacts; --subnet-id
#   expiry    the session token expires mid-run (emulator side): the launcher says so,
#             reads the fresh credentials the user pastes into .env, finishes and cleans up
#   kill      one client instance dies mid-run: clear failure, full clean-up
#   sigint    SIGINT to the launcher mid-run (--no-auth): clean-up, exit status 130
#   keep      --keep leaves instances; the run id cannot be reused until --cleanup removes
#             them; then it can (no IdempotentParameterMismatch)
#   abandoned the launcher is killed mid-run: --status and --collect see the run, then
#             --cleanup collects the results before it deletes anything
#   lab       Learner Lab caller identity: instance sizes and running instances checked
#             before anything is created
#   hup       on a terminal: the live per-agent display; the terminal closes (SIGHUP):
#             clean-up as after Ctrl-C
#   keepfail  --keep-on-failure leaves the failed instance up; --cleanup removes it
# The stand-in agent (tests/harness/standin_agent.sh, uploaded as the binary) keeps the
# rehearsals that test the launcher rather than the agents fast.
''':'
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import moto, botocore' 2>/dev/null; then
        exec "$py" "$0" "$@"
    fi
done
echo "SKIP: test_launch_rehearsal no python3 with moto (the image's python3 has moto 5.2.1)"
exit 0
'''
import concurrent.futures
import glob
import gzip
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
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
STANDIN = os.path.join(HERE, "harness", "standin_agent.sh")
# accepted by s3rver; must never leak. Made per run: a secret written in this file
# would be in the source tarball, which the launcher (rightly) refuses to upload
AK, SK = "AKIDREHEARSAL", "rs/" + secrets.token_urlsafe(24)
AK2, SK2 = "AKIDFRESH", "fr/" + secrets.token_urlsafe(24)
AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# small, fast federations for the real agents
REAL_SERVER_ARGS = os.environ.get("PETAL_REHEARSAL_SERVER_ARGS", "--eval-limit 300 --threads 1")
REAL_CLIENT_ARGS = os.environ.get("PETAL_REHEARSAL_CLIENT_ARGS",
                                  "--limit 600 --eval-limit 100 --threads 1")
POLL = 0.5      # the launcher's poll where it is measured (buildfail) ...
POLL_IDLE = 1.0  # ... and elsewhere (a dozen rehearsals share the emulators)
failed = 0


LOCK = threading.Lock()


def check(name, cond, detail=""):
    global failed
    with LOCK:
        print("%s: test_launch_rehearsal/%s%s" % ("PASS" if cond else "FAIL", name,
                                                  "" if cond else "  " + str(detail)[-1500:]))
        sys.stdout.flush()
        if not cond:
            failed += 1
    return cond


def say(msg):
    with LOCK:
        print(msg)
        sys.stdout.flush()


class Env:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="petal-rehearsal-")
        self.expired = os.path.join(self.tmp, "expired-tokens")
        open(self.expired, "w").close()
        self.audit = os.path.join(self.tmp, "s3-audit")
        os.mkdir(self.audit)
        self.s3 = emu.start_s3rver(extra_keys=[(AK, SK), (AK2, SK2)], expired_file=self.expired,
                                   audit_dir=self.audit)
        self.moto = emu.start_moto(auth=False, expired_file=self.expired)
        self.ec2 = emu.cl(self.moto.endpoint, "ec2")
        self.s3c = emu.cl(self.s3.endpoint, "s3", AK, SK)
        # the source tarball, as `make dist` builds it
        dist = os.path.join(self.tmp, "dist")
        subprocess.run(["make", "-s", "-C", ROOT, "dist", "BUILD=" + dist], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.tarball = os.path.join(dist, "petal-src.tar.gz")

    def close(self):
        self.s3.stop()
        self.moto.stop()
        if os.environ.get("PETAL_REHEARSAL_KEEP"):
            print("  kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def rid_of(name):
    """a run id per rehearsal: each hypervisor boots its own run's instances only"""
    return "%s-%s" % (name.replace("_", "-")[:20], secrets.token_hex(3))


def launch_cmd(env, name, port, strategies, extra=(), rounds=1, agent=STANDIN, tarball=None,
               rid=None, poll=POLL_IDLE):
    """the launcher's command line; agent=None: the server builds from the tarball"""
    out = os.path.join(env.tmp, name, "results")
    state = os.path.join(env.tmp, name, "state")
    cmd = [PETAL, "launch", "--n-client-instances", "2", "--num-rounds", str(rounds),
           "--strategy", ",".join(strategies), "--endpoint-url", env.moto.endpoint,
           "--s3-endpoint", env.s3.endpoint, "--ami-parameter", AL2023,
           "--dist-tarball", tarball or env.tarball, "--port", str(port),
           "--poll-interval", str(poll), "--heartbeat", "1", "--boot-timeout", "60",
           "--timeout", "300", "--out", out, "--state-dir", state, "--key-name", "vockey"]
    if agent:
        cmd += ["--agent-binary", agent]
    if rid:
        cmd += ["--run-id", rid]
    return cmd + list(extra), out, state


def run_env(hv_root, **kw):
    e = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, HOME=hv_root,
             NO_PROXY="127.0.0.1")
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        e.pop(k, None)
    e.update(kw)
    return e


def real_args():
    return ["--server-args", REAL_SERVER_ARGS, "--client-args", REAL_CLIENT_ARGS]


class Launcher:
    """a launcher process whose stderr lines are read (with arrival times) as they come"""
    def __init__(self, cmd, env, cwd=None):
        self.t0 = time.time()
        self.p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = []   # (time, line)
        self.so = ""
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.to = threading.Thread(target=self._read_out, daemon=True)
        self.to.start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append((time.time(), line))

    def _read_out(self):
        self.so = self.p.stdout.read()

    @property
    def se(self):
        return "".join(l for _, l in self.lines)

    def wait_line(self, pattern, timeout):
        t_end = time.time() + timeout
        while time.time() < t_end:
            for t, l in self.lines:
                if re.search(pattern, l):
                    return t
            if self.p.poll() is not None and not self.t.is_alive():
                return None
            time.sleep(0.1)
        return None

    def wait(self, timeout):
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(5)
        self.to.join(5)
        self.secs = time.time() - self.t0
        return self.p.returncode


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


def no_secret_anywhere(hv, secret=SK):
    bad = []
    for iid, it in hv.instances.items():
        if secret.encode() in it["user_data"]:
            bad.append(iid + " user-data")
        if len(it["user_data"]) >= 16384:
            bad.append(iid + " user-data too big")
        for fn in ("manifest.json", "manifest.sh", "agent.log", "console.log"):
            p = os.path.join(it["workdir"], fn)
            if os.path.exists(p) and secret.encode() in open(p, "rb").read():
                bad.append(iid + " " + fn)
    return bad


def mode_of(path):
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def wait_for(cond, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        r = cond()
        if r:
            return r
        time.sleep(0.2)
    return None


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def agent_started(it):
    """the agent has been running its first strategy for a second"""
    txt = read(os.path.join(it["workdir"], "agent.log"))
    if "strategy" not in txt:
        it.pop("seen", None)
        return False
    it.setdefault("seen", time.time())
    return time.time() - it["seen"] > 1.5


def check_clean(tag, env, state, want_status="cleaned"):
    run_id, st = run_id_of(state)
    check(tag + "_state_file", st is not None and st["status"] == want_status, st)
    if run_id:
        live, groups, buckets = leftovers(env, run_id)
        check(tag + "_nothing_left", not live and not groups and not buckets,
              (live, groups, buckets))
    return run_id


def check_tree(tag, out, strategies):
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


# ---- full: the real on-instance path ------------------------------------------------
def rogue_clients(env, hv, state, port, la):
    """While the first strategy's server waits for its (held back) clients: a client with
    the run's CA but no certificate and no token, and one with the run's client certificate
    but no token, must both be refused. Also checks the local 0700 certificate directory."""
    def server_listening():
        iid, it = hv.find("server")
        if not it:
            return None
        txt = read(os.path.join(it["workdir"], "agent.log"))
        return it if "strategy " in txt and "SSL is enabled" in txt else None
    it = wait_for(lambda: la.p.poll() is not None or server_listening(), 240)
    env.hold_from = time.time()
    if not check("auth_server_listening", it is not None and it is not True and
                 la.p.poll() is None, (la.p.poll(), la.se[-800:])):
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
        bad += [f for sec in secrets_ if sec in read(f)]
    return sorted(set(bad))


def sha256(path):
    import hashlib
    try:
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError:
        return None


def rehearsal_full(env, port):
    strategies = ["FedAvg", "FedAdam"]
    hv_root = os.path.join(env.tmp, "full-hv")
    os.makedirs(hv_root)
    hold = threading.Event()
    rid = rid_of("full")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, hold_clients=hold, run_id=rid)
    hv.start()
    # the clients are held back until the server (which builds first) has met the rogues:
    # a longer --boot-timeout, or the launcher rightly reports them as silent instances
    cmd, out, state = launch_cmd(env, "full", port, strategies,
                                 real_args() + ["--dataset", "fashion-mnist",
                                                "--boot-timeout", "400"], agent=None, rid=rid)
    la = Launcher(cmd, run_env(hv_root))
    env.hold_from = None
    try:
        rogue_clients(env, hv, state, port, la)
    finally:
        hold.set()
    held = time.time() - env.hold_from if env.hold_from else 0
    rc = la.wait(600)
    hv.stop()
    tag = "full"
    check(tag + "_exit_0", rc == 0, la.se)
    run_id = check_clean(tag, env, state)
    if not run_id:
        return
    check_tree(tag, out, strategies)
    check(tag + "_report_html", os.path.exists(os.path.join(out, "report.html")))
    agents_dir = os.path.join(out, "agents", run_id)
    check(tag + "_agent_logs", len(glob.glob(os.path.join(agents_dir, "*.log"))) == 3 and
          len(glob.glob(os.path.join(agents_dir, "*.status"))) == 3, os.listdir(agents_dir)
          if os.path.isdir(agents_dir) else agents_dir)
    # the real on-instance path: deps.sh (build profile on the server, runtime on the
    # clients), make on the server, the clients run the server's binary from S3
    sid, sit = hv.find("server")
    slog = read(os.path.join(sit["workdir"], "agent.log")) if sit else ""
    check(tag + "_server_deps_build", "deps (build):" in slog and "stage packages" in slog, slog[-600:])
    built = os.path.join(sit["workdir"], "src", "build", "petal") if sit else ""
    check(tag + "_server_built_petal", "stage build" in slog and os.access(built, os.X_OK) and
          "stage share" in slog, slog[-600:])
    for i in (0, 1):
        cid, cit = hv.find("client", i)
        clog = read(os.path.join(cit["workdir"], "agent.log")) if cit else ""
        check(tag + "_client%d_runtime_and_shared_binary" % i,
              "deps (runtime):" in clog and "stage binary" in clog and "stage build" not in clog
              and sha256(os.path.join(cit["workdir"], "petal.bin")) == sha256(built), clog[-600:])
    # the per-boot guard armed with the absolute deadline; the agents' own shutdown at the end
    for iid, it in hv.instances.items():
        calls = hv.shutdown_calls(iid)
        guard = [c for c in calls if re.match(r"-h \+\d+ ", c)]
        mins = int(guard[0].split()[1][1:]) if guard else -1
        want = (300 + 2 * 400 + 1800) / 60.0   # --timeout + 2 x --boot-timeout + 30 min
        check(tag + "_guard_%s" % it["role"] + ("" if it["role"] == "server" else str(it["index"])),
              want - 3 <= mins <= want + 1 and "-h now" in " ".join(calls[-1:])
              and os.path.exists(os.path.join(it["workdir"], "guard.sh")), calls)
    check(tag + "_no_secret_to_instances", not no_secret_anywhere(hv), no_secret_anywhere(hv))
    check(tag + "_imdsv2_used", all(it["imds"].requests >= 4 for it in hv.instances.values()) and
          len(hv.instances) == 3, {k: v["imds"].requests for k, v in hv.instances.items()})
    check(tag + "_hypervisor_ok", not hv.errors, hv.errors)
    check(tag + "_auth_local_dir_removed", not os.path.exists(
        os.path.join(state, run_id + ".auth")), os.listdir(state))
    leaks = auth_leaks(hv, [la.so, la.se], [state, out])
    check(tag + "_no_key_or_token_leaked", leaks == [], leaks)
    slog2 = read(os.path.join(agents_dir, "server.log"))
    check("rogue_refusals_logged", "TLS handshake failed" in slog2 and
          "refused: no authorization token" in slog2, slog2[-1200:])
    # the measured timeline, launch -> round 1 per phase
    tl = {}
    try:
        tl = json.load(open(os.path.join(agents_dir, "timeline.json")))
    except (OSError, ValueError):
        pass
    phases = {p["phase"]: p["seconds"] for p in tl.get("phases", [])}
    check(tag + "_timeline", tl.get("launch_to_round1", -1) > 0 and
          {"provision", "boot", "setup", "packages", "build", "share", "round1"} <= set(phases),
          tl)
    lines = ["  full rehearsal: %.1f s; measured launch -> round 1: %.1f s" % (
        la.secs, tl.get("launch_to_round1", -1))]
    for p in tl.get("phases", []):
        lines.append("    %-10s %6.1f s  %s%s" % (p["phase"], p["seconds"], p["what"],
                                         " (%.1f s of it: clients held back for the rogue "
                                         "clients)" % held if p["phase"] == "share" else ""))
    say("\n".join(lines))


# ---- role: instance-profile uploads, the launcher's binary ------------------------------
def rehearsal_role(env, port):
    hv_root = os.path.join(env.tmp, "role-hv")
    os.makedirs(hv_root)
    rid = rid_of("role")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, role_creds=(AK, SK), run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "role", port, ["FedAvg"],
                                 real_args() + ["--instance-profile", "LabInstanceProfile"],
                                 agent=PETAL, rid=rid)
    la = Launcher(cmd, run_env(hv_root))
    rc = la.wait(300)
    hv.stop()
    check("role_exit_0", rc == 0, la.se)
    run_id = check_clean("role", env, state)
    if run_id:
        check_tree("role", out, ["FedAvg"])
    iid, it = hv.find("client", 0)
    m = {}
    try:
        m = json.load(open(os.path.join(it["workdir"], "manifest.json")))
    except (OSError, TypeError, ValueError):
        pass
    puts = [r["log"] for a in m.get("agents", []) for r in a["runs"]] + \
        [a["status"] for a in m.get("agents", [])]
    check("role_manifest_keys_not_urls", m.get("upload", {}).get("mode") == "role" and puts and
          all(not p.startswith("http") for p in puts) and m.get("build") == "none", m)
    clog = read(os.path.join(it["workdir"], "agent.log")) if it else ""
    check("role_launcher_binary_used", "stage binary" in clog and "stage build" not in clog and
          sha256(os.path.join(it["workdir"], "petal.bin")) == sha256(PETAL), clog[-500:])
    check("role_no_secret_to_instances", not no_secret_anywhere(hv), no_secret_anywhere(hv))
    # the clients start with the server, not after its status checks
    boots = []
    for a in ("server", "client_0", "client_1"):
        try:
            boots.append(json.load(open(os.path.join(out, "agents", rid, a + ".status")))
                         ["phases"]["boot"])
        except (OSError, ValueError, KeyError):
            pass
    check("role_clients_start_with_server", len(boots) == 3 and max(boots) - min(boots) <= 3,
          boots)


# ---- buildfail: visible within one poll, both upload modes ------------------------------
def broken_tarball(env):
    bad = os.path.join(env.tmp, "broken-src.tar.gz")
    if os.path.exists(bad):
        return bad
    with tarfile.open(env.tarball) as src, tarfile.open(bad, "w:gz") as dst:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() else None
            data = f.read() if f else None
            if m.name == "petal/core/main.c":
                data += b"\n#error rehearsal: this tarball does not compile\n"
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return bad


def rehearsal_buildfail(env, port, role):
    tag = "buildfail_" + ("role" if role else "presigned")
    hv_root = os.path.join(env.tmp, tag + "-hv")
    os.makedirs(hv_root)
    rid = rid_of(tag)
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, role_creds=(AK, SK) if role else None,
                               run_id=rid)
    hv.start()
    extra = ["--instance-profile", "LabInstanceProfile"] if role else []
    cmd, out, state = launch_cmd(env, tag, port, ["FedAvg"], extra, agent=None,
                                 tarball=broken_tarball(env), rid=rid, poll=POLL)
    la = Launcher(cmd, run_env(hv_root))
    t_fail = la.wait_line(r"failed at stage 'build'", 240)
    rc = la.wait(240)
    hv.stop()
    check(tag + "_exit_1", rc == 1, la.se[-2000:])
    # when did the server's final status reach S3? (s3rver's audit copy is made on arrival)
    run_id = run_id_of(state)[0] or "?"
    st = {}
    try:
        st = json.load(open(os.path.join(out, "agents", run_id, "server.status")))
    except (OSError, TypeError, ValueError):
        pass
    ups = sorted(glob.glob(os.path.join(env.audit, "*-petal-%s-agents!server.status" % run_id)),
                 key=lambda f: int(os.path.basename(f).split("-")[0]))
    t_up = os.path.getmtime(ups[-1]) if ups else None
    lag = (t_fail - t_up) if t_fail and t_up else None
    check(tag + "_seen_within_one_poll", lag is not None and lag <= POLL + 1.0,
          "lag %s s (poll %.1f s), status %s" % (lag, POLL, st))
    check(tag + "_log_tail_shown", "rehearsal: this tarball does not compile" in la.se and
          "| " in la.se, la.se[-1500:])
    check(tag + "_stage_and_exit", st.get("state") == "failed" and st.get("stage") == "build" and
          st.get("exit") == 16, st)
    sid, sit = hv.find("server")
    check(tag + "_server_shut_itself_down", sit is not None and
          "-h now" in " ".join(hv.shutdown_calls(sid)), hv.shutdown_calls(sid) if sid else None)
    check_clean(tag, env, state)
    say("  %s: failure shown %.2f s after the status upload (poll %.1f s)" % (
        tag, lag if lag is not None else -1, POLL))


# ---- secrets: none of their bytes reach S3 ----------------------------------------------
def planted_tree(env):
    """a copy of the source tree as a git checkout, with the user's secrets planted"""
    tree = os.path.join(env.tmp, "tree")
    os.makedirs(tree)
    with tarfile.open(env.tarball) as t:
        t.extractall(tree)
    tree = os.path.join(tree, "petal")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", tree]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "tree"], check=True)
    marks = {".env": "ENVMARK" + secrets.token_hex(8),
             "labsuser.pem": "PEMMARK" + secrets.token_hex(8),
             ".aws/credentials": "CREDMARK" + secrets.token_hex(8)}
    os.makedirs(os.path.join(tree, ".aws"))
    with open(os.path.join(tree, ".env"), "w") as f:  # the README's Learner Lab advice
        f.write("# %s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (marks[".env"], AK, SK))
    with open(os.path.join(tree, "labsuser.pem"), "w") as f:
        f.write("-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----\n" %
                marks["labsuser.pem"])
    with open(os.path.join(tree, ".aws", "credentials"), "w") as f:
        f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n# %s\n" % (
            AK, SK, marks[".aws/credentials"]))
    return tree, git, marks


def stored_bytes(audit):
    """every object s3rver stored, decompressed (and unpacked) where it is gzip"""
    blobs = {}
    for fn in sorted(os.listdir(audit)):
        data = open(os.path.join(audit, fn), "rb").read()
        blobs[fn] = data
        if data[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(data)
                blobs[fn + "(gunzip)"] = raw
                with tarfile.open(fileobj=io.BytesIO(raw)) as t:
                    blobs[fn + "(members)"] = "\n".join(t.getnames()).encode()
            except (OSError, tarfile.TarError, EOFError):
                pass
    return blobs


def rehearsal_secrets(env, port):
    tree, git, marks = planted_tree(env)
    dist = os.path.join(env.tmp, "secrets-dist", "petal-src.tar.gz")
    p = subprocess.run(["make", "-s", "-C", tree, "dist", "BUILD=" + os.path.dirname(dist)],
                       capture_output=True, text=True)
    check("secrets_dist_packed", p.returncode == 0 and os.path.exists(dist), p.stderr[-500:])
    names = tarfile.open(dist).getnames() if os.path.exists(dist) else []
    check("secrets_dist_members", names and not any(
        n.endswith(("/.env", "/labsuser.pem", "/credentials")) for n in names), names[:5])
    # a run from that tree, credentials from its .env (cwd), local model and dataset folder
    hv_root = os.path.join(env.tmp, "secrets-hv")
    os.makedirs(hv_root)
    art = os.path.join(env.tmp, "artifacts")
    os.makedirs(os.path.join(art, "imgs", "class_a"))
    with open(os.path.join(art, "imgs", "class_a", "x.txt"), "w") as f:
        f.write("not an image\n")
    with open(os.path.join(art, "model.json"), "w") as f:
        f.write('{"layers": []}\n')
    subnet = env.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    before = set(os.listdir(env.audit))
    rid = rid_of("secrets")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "secrets", port, ["FedAvg"],
                                 ["--model", os.path.join(art, "model.json"), "--dataset",
                                  "folder:" + os.path.join(art, "imgs"), "--subnet-id", subnet],
                                 tarball=dist, rid=rid)
    e = run_env(hv_root)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        e.pop(k)
    la = Launcher(cmd, e, cwd=tree)
    rc = la.wait(300)
    hv.stop()
    check("secrets_run_exit_0", rc == 0, la.se[-1500:])  # its only credentials: the tree's .env
    run_id = check_clean("secrets", env, state)
    new = sorted(set(os.listdir(env.audit)) - before)
    blobs = stored_bytes(env.audit)
    mine = {k: v for k, v in blobs.items() if k.split("(")[0] in new}
    leaks = [(k, what) for k, v in mine.items()
             for what, m in list(marks.items()) + [("secret key", SK)] if m.encode() in v]
    check("secrets_no_byte_in_any_object", len(new) >= 10 and not leaks,
          "%d objects, leaks %s" % (len(new), leaks))
    check("secrets_every_object_read", any("artifacts!petal-src.tar.gz" in k for k in mine) and
          any("(members)" in k for k in mine), sorted(mine)[:8])
    if run_id:
        iid = hv.find("server")[0]
        sub = env.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        check("secrets_subnet_used", sub.get("SubnetId") == subnet, sub.get("SubnetId"))
    # a tracked key: make dist refuses, naming it
    subprocess.run(git + ["add", "-f", "labsuser.pem"], check=True)
    p = subprocess.run(["make", "-s", "-C", tree, "dist", "BUILD=" + env.tmp + "/secrets-dist2"],
                       capture_output=True, text=True)
    check("secrets_tracked_key_refused", p.returncode != 0 and "labsuser.pem" in p.stderr,
          p.stderr[-400:])
    subprocess.run(git + ["rm", "-q", "--cached", "labsuser.pem"], check=True)
    # a hand-made tarball with .env: refused before anything is created
    badtgz = os.path.join(env.tmp, "with-env.tar.gz")
    with tarfile.open(badtgz, "w:gz") as t:
        t.add(os.path.join(tree, "Makefile"), "petal/Makefile")
        t.add(os.path.join(tree, ".env"), "petal/.env")
    rid2 = rid_of("secrets-bad")
    cmd, out, state = launch_cmd(env, "secrets-bad", port, ["FedAvg"], tarball=badtgz, rid=rid2)
    p = subprocess.run(cmd, env=run_env(hv_root), capture_output=True, text=True, timeout=120)
    check("secrets_tarball_with_env_refused", p.returncode != 0 and "petal/.env" in p.stderr and
          "credential" in p.stderr and leftovers(env, rid2) == ([], [], []),
          (p.stderr[-500:], leftovers(env, rid2)))


# ---- expiry: the session ends mid-run ---------------------------------------------------
def rehearsal_expiry(env, port):
    tok1, tok2 = "tokA" + secrets.token_hex(12), "tokB" + secrets.token_hex(12)
    cwd = os.path.join(env.tmp, "expiry-cwd")
    os.makedirs(cwd)
    dotenv = os.path.join(cwd, ".env")
    with open(dotenv, "w") as f:
        f.write("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_SESSION_TOKEN=%s\n" %
                (AK, SK, tok1))
    hv_root = os.path.join(env.tmp, "expiry-hv")
    os.makedirs(hv_root)
    rid = rid_of("expiry")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, role_creds=(AK, SK),
                               extra_env={"STANDIN_SECONDS": "8"}, run_id=rid)
    hv.start()
    # a strategy name with parentheses: role-mode keys are percent-encoded for the signature
    strat = "DPFixedClipping(FedAvg)"
    cmd, out, state = launch_cmd(env, "expiry", port, [strat],
                                 ["--instance-profile", "LabInstanceProfile"], rid=rid)
    e = run_env(hv_root)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        e.pop(k)
    la = Launcher(cmd, e, cwd=cwd)

    def started():
        iid, it = hv.find("client", 1)
        return it is not None and agent_started(it)
    check("expiry_agents_started", wait_for(started, 120) is not None, la.se[-500:])
    emu.expire_token(env.expired, tok1)
    t_told = la.wait_line(r"rejected the credentials", 30)
    check("expiry_told", t_told is not None and "paste fresh ones" in la.se.lower(), la.se[-800:])
    with open(dotenv, "w") as f:   # the user pastes the new session's credentials
        f.write("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_SESSION_TOKEN=%s\n" %
                (AK2, SK2, tok2))
    rc = la.wait(240)
    hv.stop()
    check("expiry_exit_0", rc == 0, la.se[-1500:])
    check("expiry_fresh_read", "fresh credentials read from .env" in la.se, la.se[-800:])
    run_id = check_clean("expiry", env, state)
    if run_id:
        check_tree("expiry", out, [strat])


# ---- kill, sigint, keep ------------------------------------------------------------------
def rehearsal_kill(env, port):
    hv_root = os.path.join(env.tmp, "kill-hv")
    os.makedirs(hv_root)
    rid = rid_of("kill")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "30"}, run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "kill", port, ["FedAvg"], rid=rid)
    la = Launcher(cmd, run_env(hv_root))

    def victim():
        iid, it = hv.find("client", 1)
        return iid if it and agent_started(it) else None
    iid = wait_for(victim, 120)
    check("kill_client_started", iid is not None)
    if iid:
        hv.crash(iid)
    rc = la.wait(240)
    hv.stop()
    se = la.se
    check("kill_exit_1", rc == 1, se)
    check("kill_quiet_in_pipes", "[1/8]" not in se and "result files," not in se, se[:600])
    check("kill_clear_message", iid is not None and iid in se and "client_1" in se and
          ("terminated" in se or "shutting-down" in se) and "before its results arrived" in se,
          se)
    check_clean("kill", env, state)


def rehearsal_sigint(env, port):
    hv_root = os.path.join(env.tmp, "sigint-hv")
    os.makedirs(hv_root)
    rid = rid_of("sigint")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "30"}, run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "sigint", port, ["FedAvg"], ["--no-auth"], rid=rid)
    la = Launcher(cmd, run_env(hv_root))

    def started():
        iid, it = hv.find("client", 1)
        return it is not None and agent_started(it)
    check("sigint_agents_started", wait_for(started, 120) is not None)
    la.p.send_signal(signal.SIGINT)
    rc = la.wait(240)
    hv.stop()
    check("sigint_exit_130", rc == 130, la.se)
    check("sigint_message", "interrupted" in la.se, la.se)
    iid, it = hv.find("server")
    try:
        m = json.load(open(os.path.join(it["workdir"], "manifest.json")))
        argv = m["agents"][0]["runs"][0]["argv"]
        ok = "auth" not in m and not any(a.startswith("--tls") for a in argv)
    except (OSError, TypeError, KeyError, ValueError) as e:
        ok, argv = False, e
    check("sigint_no_auth_manifest", ok, argv)
    check_clean("sigint", env, state, want_status="cleaned")


def rehearsal_keep_cleanup(env, port):
    """--keep leaves the instances up; the run id is taken until --cleanup RUN_ID (found by
    tag, no state file) removes everything; then the same run id launches again"""
    hv_root = os.path.join(env.tmp, "keep-hv")
    os.makedirs(hv_root)
    rid = rid_of("keep")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "keep", port, ["FedAvg"], ["--keep"], rid=rid)
    p = subprocess.run(cmd, env=run_env(hv_root), capture_output=True, text=True, timeout=300)
    check("keep_exit_0", p.returncode == 0, p.stderr)
    live, groups, buckets = leftovers(env, rid)
    check("keep_instances_left_up", len(live) == 3 and len(groups) == 1 and not buckets,
          (live, groups, buckets))
    check("keep_tells_how_to_clean", "--cleanup " + rid in p.stderr, p.stderr[-500:])
    adir = os.path.join(state, rid + ".auth")
    check("keep_auth_dir_kept", mode_of(adir) == 0o700 and
          os.path.exists(os.path.join(adir, "token")), adir)
    q = subprocess.run(cmd, env=run_env(hv_root), capture_output=True, text=True, timeout=120)
    check("keep_run_id_taken", q.returncode != 0 and "--cleanup " + rid in q.stderr,
          q.stderr[-400:])
    os.remove(os.path.join(state, rid + ".json"))
    c = subprocess.run([PETAL, "launch", "--cleanup", rid, "--endpoint-url", env.moto.endpoint,
                        "--s3-endpoint", env.s3.endpoint, "--state-dir", state,
                        "--out", out],
                       env=run_env(hv_root), capture_output=True, text=True, timeout=300)
    check("cleanup_exit_0", c.returncode == 0, c.stderr)
    live, groups, buckets = leftovers(env, rid)
    check("cleanup_removed_everything", not live and not groups and not buckets,
          (live, groups, buckets))
    check("cleanup_removed_auth_dir", not os.path.exists(adir), os.listdir(state))
    # the same run id again: a new launch (new idempotency tokens) that works
    cmd2 = [x for x in cmd if x != "--keep"]
    r = subprocess.run(cmd2, env=run_env(hv_root), capture_output=True, text=True, timeout=300)
    hv.stop()
    check("keep_run_id_reused", r.returncode == 0 and "IdempotentParameterMismatch" not in
          r.stderr, r.stderr[-800:])
    live, groups, buckets = leftovers(env, rid)
    check("keep_reuse_nothing_left", not live and not groups and not buckets,
          (live, groups, buckets))


def rehearsal_hup(env, port):
    """on a terminal: the live display; the terminal closes (SIGHUP, writes fail): the
    launcher cleans up like after Ctrl-C"""
    import pty
    hv_root = os.path.join(env.tmp, "hup-hv")
    os.makedirs(hv_root)
    rid = rid_of("hup")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "30"}, run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "hup", port, ["FedAvg"], rid=rid)
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, env=run_env(hv_root), stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = []

    def reader():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                return
            if not b:
                return
            seen.append(b.decode("utf-8", "replace"))
    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def started():
        iid, it = hv.find("client", 1)
        return it is not None and agent_started(it)
    check("hup_agents_started", wait_for(started, 120) is not None)
    time.sleep(1.5)   # a redraw or two of the live display
    shown = "".join(seen)
    check("hup_live_display", "[5/8] agents" in shown and re.search(
        r"server +i-[0-9a-f]+ +FedAvg 1/1: waiting for clients", shown) and
        re.search(r"client_1 +i-[0-9a-f]+ +FedAvg 1/1: joining", shown) and
        "result files, 0/1 strategies complete" in shown and "\033[" in shown, shown[-1500:])
    os.close(master)              # the terminal is gone ...
    p.send_signal(signal.SIGHUP)  # ... and the kernel says so
    try:
        rc = p.wait(240)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    hv.stop()
    check("hup_exit_130", rc == 130, rc)
    check_clean("hup", env, state)


def rehearsal_keep_on_failure(env, port):
    """--keep-on-failure: the failed agent's instance stays up (the launcher terminates
    nothing); --cleanup removes what is left later"""
    hv_root = os.path.join(env.tmp, "keepfail-hv")
    os.makedirs(hv_root)
    rid = rid_of("keepfail")
    # the server fails (a client's quick failure would be retried: it may be early)
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_FAIL": "server"},
                               run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "keepfail", port, ["FedAvg"], ["--keep-on-failure"],
                                 rid=rid)
    p = subprocess.run(cmd, env=run_env(hv_root), capture_output=True, text=True, timeout=300)
    check("keepfail_exit_1", p.returncode == 1 and "agent server" in p.stderr and
          "failing as asked" in p.stderr, p.stderr[-800:])
    iid, it = hv.find("server")
    check("keepfail_failed_instance_kept", iid in leftovers(env, rid)[0] and
          not any(c.startswith("-h now") for c in hv.shutdown_calls(iid)) and
          "--keep-on-failure" in p.stderr, (hv.shutdown_calls(iid), p.stderr[-400:]))
    _, st = run_id_of(state)
    check("keepfail_state_kept", st and st["status"] == "kept", st)
    c = subprocess.run([PETAL, "launch", "--cleanup", rid, "--endpoint-url", env.moto.endpoint,
                        "--s3-endpoint", env.s3.endpoint, "--state-dir", state, "--out", out],
                       env=run_env(hv_root), capture_output=True, text=True, timeout=300)
    hv.stop()
    check("keepfail_cleanup", c.returncode == 0, c.stderr[-500:])
    check_clean("keepfail", env, state)


# ---- abandoned: the launcher dies; --status, --collect, --cleanup ------------------------
def rehearsal_abandoned(env, port):
    hv_root = os.path.join(env.tmp, "abandoned-hv")
    os.makedirs(hv_root)
    rid = rid_of("abandoned")
    hv = fakehv.FakeHypervisor(env.ec2, hv_root, extra_env={"STANDIN_SECONDS": "2"}, run_id=rid)
    hv.start()
    cmd, out, state = launch_cmd(env, "abandoned", port, ["FedAvg", "FedAdam"], rid=rid)
    la = Launcher(cmd, run_env(hv_root))
    key = "results/openblas/FedAvg/2/server_log.log"

    def first_result():
        try:
            env.s3c.head_object(Bucket="petal-" + rid, Key=key)
            return True
        except Exception:  # noqa: BLE001 - not there yet
            return False
    check("abandoned_first_result", wait_for(first_result, 120) is not None, la.se[-500:])
    la.p.send_signal(signal.SIGKILL)   # the laptop died: no clean-up at all
    la.wait(30)
    base = ["--endpoint-url", env.moto.endpoint, "--s3-endpoint", env.s3.endpoint,
            "--state-dir", state]
    s = subprocess.run([PETAL, "launch", "--status", rid] + base, env=run_env(hv_root),
                       capture_output=True, text=True, timeout=60)
    check("abandoned_status", s.returncode == 0 and "server" in s.stdout and "client_1" in s.stdout
          and "result files:" in s.stdout and "instance i-" in s.stdout, s.stdout + s.stderr)
    out2 = os.path.join(env.tmp, "abandoned", "collected")
    c = subprocess.run([PETAL, "launch", "--collect", rid, "--out", out2] + base,
                       env=run_env(hv_root), capture_output=True, text=True, timeout=120)
    check("abandoned_collect", c.returncode == 0 and
          os.path.exists(os.path.join(out2, "openblas", "FedAvg", "2", "server_log.log")) and
          leftovers(env, rid)[2], c.stderr[-500:])
    c = subprocess.run([PETAL, "launch", "--cleanup", rid, "--out", out] + base,
                       env=run_env(hv_root), capture_output=True, text=True, timeout=300)
    hv.stop()
    check("abandoned_cleanup_keeps_results", c.returncode == 0 and
          os.path.exists(os.path.join(out, "openblas", "FedAvg", "2", "server_log.log")) and
          "saved under" in c.stderr, c.stderr[-800:])
    live, groups, buckets = leftovers(env, rid)
    check("abandoned_nothing_left", not live and not groups and not buckets,
          (live, groups, buckets))


# ---- lab: Learner Lab limits from the caller identity -------------------------------------
def rehearsal_lab(env, port):
    iam = emu.cl(env.moto.endpoint, "iam")
    iam.create_role(RoleName="voclabs", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
    c = emu.cl(env.moto.endpoint, "sts").assume_role(
        RoleArn="arn:aws:iam::123456789012:role/voclabs",
        RoleSessionName="user1234567=Student")["Credentials"]
    e = run_env(env.tmp, AWS_ACCESS_KEY_ID=c["AccessKeyId"],
                AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"], AWS_SESSION_TOKEN=c["SessionToken"])
    rid, rid2 = rid_of("lab"), rid_of("lab2")
    cmd, out, state = launch_cmd(env, "lab", port, ["FedAvg"], ["--instance-type", "m5.xlarge"],
                                 rid=rid)
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=60)
    check("lab_size_refused", p.returncode == 2 and "Learner Lab" in p.stderr and
          "m5.xlarge" in p.stderr, p.stderr[-400:])
    ami = env.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    others = env.ec2.run_instances(ImageId=ami, MinCount=7, MaxCount=7,
                                   InstanceType="t3.micro")["Instances"]
    cmd, out, state = launch_cmd(env, "lab2", port, ["FedAvg"], rid=rid2)
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=60)
    env.ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in others])
    check("lab_running_instances_counted", p.returncode == 2 and "already running" in p.stderr
          and "allows 9" in p.stderr, p.stderr[-400:])
    check("lab_nothing_created", leftovers(env, rid) == ([], [], []) and
          leftovers(env, rid2) == ([], [], []), (leftovers(env, rid), leftovers(env, rid2)))


def main():
    if not emu.have_s3rver():
        print("SKIP: test_launch_rehearsal @20minutes/s3rver not installed (scripts/deps.sh)")
        return 0
    if not os.access(PETAL, os.X_OK):
        print("FAIL: test_launch_rehearsal/petal_binary %s missing" % PETAL)
        return 1
    env = Env()
    t0 = time.time()
    try:
        only = os.environ.get("PETAL_REHEARSAL_ONLY", "full,role,buildfail,secrets,expiry,kill,"
                              "sigint,keep,abandoned,lab,hup,keepfail").split(",")
        # the "within one poll" measurements first, on a quiet machine
        if "buildfail" in only:
            rehearsal_buildfail(env, emu.free_port_range(1), role=False)
            rehearsal_buildfail(env, emu.free_port_range(1), role=True)
        # then the rest side by side (each hypervisor boots only its own run's instances):
        # most of a rehearsal is waiting, the full one's build is the critical path
        steps = [("full", rehearsal_full), ("role", rehearsal_role),
                 ("secrets", rehearsal_secrets), ("expiry", rehearsal_expiry),
                 ("kill", rehearsal_kill), ("sigint", rehearsal_sigint),
                 ("keep", rehearsal_keep_cleanup), ("abandoned", rehearsal_abandoned),
                 ("lab", rehearsal_lab), ("hup", rehearsal_hup),
                 ("keepfail", rehearsal_keep_on_failure)]

        def one(name, fn):
            t1 = time.time()
            try:
                fn(env, emu.free_port_range(2))
            except Exception as e:  # noqa: BLE001 - a crashed rehearsal is a failure
                check(name + "_ran", False, repr(e))
            say("  %s rehearsal: %.0f s" % (name, time.time() - t1))
        workers = int(os.environ.get("PETAL_REHEARSAL_JOBS", "4"))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for f in [pool.submit(one, n, fn) for n, fn in steps if n in only]:
                f.result()
    finally:
        env.close()
    say("  rehearsals: %.0f s in all" % (time.time() - t0))
    return 1 if failed else 0


sys.exit(main())
