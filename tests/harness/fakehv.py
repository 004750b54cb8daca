"""fakehv.py - a fake EC2 hypervisor for the launch rehearsals (127.0.0.1 only).

It polls moto for running instances; for each new one it reads the user-data
(DescribeInstanceAttribute), serves that instance's IMDSv2 on its own loopback
port (token, instance-id, ami-launch-index, local-ipv4 = 127.0.0.1, optional
role credentials) and runs the user-data as a local process group with
PETAL_IMDS_ENDPOINT / PETAL_WORK_DIR / PETAL_SERVER_IP_OVERRIDE set (the last
plays the VPC: private IPs are reachable on loopback). When moto says an
instance is shutting down, terminated or stopped, its processes are killed.
crash(instance_id) simulates an instance dying (SIGKILL + TerminateInstances).

The instances' PATH starts with stubs: `shutdown` records its arguments in
<workdir>/shutdown.calls, and `shutdown -h now` ends the instance the way
InstanceInitiatedShutdownBehavior=terminate does (TerminateInstances once the
script has exited); `apt-get`/`apt` refuse (a rehearsal never installs packages
on this machine: scripts/deps.sh runs for real and must find everything
installed; a missing package fails the rehearsal loudly instead).
"""
import base64
import http.server
import json
import os
import secrets
import signal
import subprocess
import threading
import time


class _Imds:
    def __init__(self, inst, user_data, role_creds):
        token = secrets.token_hex(16)
        meta = {"instance-id": inst["InstanceId"],
                "ami-launch-index": str(inst.get("AmiLaunchIndex", 0)),
                "local-ipv4": "127.0.0.1", "instance-type": inst.get("InstanceType", ""),
                "placement/region": "us-east-1"}
        if role_creds:
            meta["iam/security-credentials/"] = "LabRole"
            meta["iam/security-credentials/LabRole"] = json.dumps(dict(
                Code="Success", Type="AWS-HMAC", AccessKeyId=role_creds[0],
                SecretAccessKey=role_creds[1], Token=role_creds[2] if len(role_creds) > 2 else "",
                Expiration=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))))
        self.requests = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, st, body=b""):
                if isinstance(body, str):
                    body = body.encode()
                self.send_response(st)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                outer.requests += 1
                if self.path != "/latest/api/token":
                    return self.reply(404)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self.reply(400)
                self.reply(200, token)

            def do_GET(self):
                outer.requests += 1
                if self.headers.get("X-aws-ec2-metadata-token") != token:
                    return self.reply(401)  # IMDSv2 only
                if self.path == "/latest/user-data":
                    return self.reply(200, user_data)
                p = self.path[len("/latest/meta-data/"):] if self.path.startswith(
                    "/latest/meta-data/") else None
                if p is None or p not in meta:
                    return self.reply(404)
                self.reply(200, meta[p])

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.endpoint = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class FakeHypervisor(threading.Thread):
    def __init__(self, ec2, workroot, role_creds=None, extra_env=None, poll=0.5,
                 hold_clients=None, run_id=None):
        """hold_clients: a threading.Event; client instances boot only once it is set.
        run_id: only the instances tagged petal:run-id=run_id (rehearsals side by side)."""
        super().__init__(daemon=True)
        self.run_id = run_id
        self.ec2, self.workroot, self.role_creds = ec2, workroot, role_creds
        self.hold_clients = hold_clients
        self.extra_env = extra_env or {}
        self.poll = poll
        self.instances = {}   # id -> dict(proc, imds, workdir, user_data, index, role)
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.errors = []
        stub = os.path.join(workroot, "stub-bin")
        os.makedirs(stub, exist_ok=True)
        # never let a rehearsal reach the real shutdown or install packages here
        stubs = {
            "shutdown": '#!/bin/sh\necho "$*" >>"$PETAL_WORK_DIR/shutdown.calls"\n'
                        'echo "fakehv: shutdown $*"\n',
            "apt-get": '#!/bin/sh\necho "fakehv: apt-get $* refused: a rehearsal never installs '
                       'packages on this machine" >&2\nexit 100\n',
        }
        stubs["apt"] = stubs["apt-get"]
        for name in ("poweroff", "halt", "reboot"):
            stubs[name] = '#!/bin/sh\necho "fakehv: $0 $* ignored"\n'
        for name, body in stubs.items():
            with open(os.path.join(stub, name), "w") as f:
                f.write(body)
            os.chmod(os.path.join(stub, name), 0o755)
        self.stub = stub

    def _describe(self):
        out = []
        flt = [{"Name": "tag:petal:run-id", "Values": [self.run_id]}] if self.run_id else []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=flt):
            for r in page["Reservations"]:
                out.extend(r["Instances"])
        return out

    def _start(self, inst):
        iid = inst["InstanceId"]
        ud = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        raw = base64.b64decode(ud.get("UserData", {}).get("Value", "") or "")
        role = "server" if b"PETAL_ROLE='server'" in raw else "client"
        if role == "client" and self.hold_clients is not None and not self.hold_clients.is_set():
            return  # held back (the instance "boots" at a later poll)
        work = os.path.join(self.workroot, iid)
        os.makedirs(work, exist_ok=True)
        path = os.path.join(work, "user-data")
        with open(path, "wb") as f:
            f.write(raw)
        imds = _Imds(inst, raw, self.role_creds)
        # an instance's environment is a fresh machine's, not this test's (no BUILD,
        # MAKEFLAGS, SANITIZE...): only the basics and OpenBLAS's settings pass
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ") or
               k.startswith(("OPENBLAS_", "ASAN_", "UBSAN_", "LSAN_"))}
        env.update(HOME=work)
        env.update(self.extra_env)
        env.update(PETAL_IMDS_ENDPOINT=imds.endpoint, PETAL_WORK_DIR=work,
                   PETAL_SERVER_IP_OVERRIDE="127.0.0.1", NO_PROXY="127.0.0.1,localhost",
                   PATH=self.stub + os.pathsep + env.get("PATH", ""))
        log = open(os.path.join(work, "console.log"), "wb")
        proc = subprocess.Popen(["sh", path], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.instances[iid] = dict(proc=proc, imds=imds, workdir=work, user_data=raw,
                                   index=inst.get("AmiLaunchIndex", 0), role=role, log=log)

    def _kill(self, iid, sig=signal.SIGKILL):
        it = self.instances.get(iid)
        if not it or it.get("killed"):
            return
        it["killed"] = True
        if it["proc"].poll() is None:
            try:
                os.killpg(it["proc"].pid, sig)
            except ProcessLookupError:
                pass
            try:
                it["proc"].wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(it["proc"].pid, signal.SIGKILL)
                it["proc"].wait()
        it["imds"].close()
        it["log"].close()

    def shutdown_calls(self, iid):
        it = self.instances.get(iid)
        try:
            return open(os.path.join(it["workdir"], "shutdown.calls")).read().splitlines()
        except (OSError, TypeError):
            return []

    def _self_shutdowns(self):
        """`shutdown -h now` inside an instance: terminate on shutdown"""
        for iid, it in list(self.instances.items()):
            if it.get("killed") or it.get("shut") or it["proc"].poll() is None:
                continue
            if any(c.startswith("-h now") for c in self.shutdown_calls(iid)):
                it["shut"] = True
                self.ec2.terminate_instances(InstanceIds=[iid])

    def run(self):
        while not self.halt.is_set():
            try:
                with self.lock:
                    self._self_shutdowns()
                for inst in self._describe():
                    iid, st = inst["InstanceId"], inst["State"]["Name"]
                    with self.lock:
                        if st == "running" and iid not in self.instances:
                            self._start(inst)
                        elif st in ("shutting-down", "terminated", "stopping", "stopped"):
                            self._kill(iid)
            except Exception as e:  # noqa: BLE001 - keep the hypervisor alive, report later
                self.errors.append(repr(e))
            self.halt.wait(self.poll)

    def find(self, role, index=None):
        with self.lock:
            for iid, it in self.instances.items():
                if it["role"] == role and (index is None or it["index"] == index):
                    return iid, it
        return None, None

    def crash(self, iid):
        """The instance dies: its processes vanish and EC2 reports it terminated."""
        with self.lock:
            self._kill(iid)
        self.ec2.terminate_instances(InstanceIds=[iid])

    def stop(self):
        self.halt.set()
        self.join(10)
        with self.lock:
            for iid in list(self.instances):
                self._kill(iid)
