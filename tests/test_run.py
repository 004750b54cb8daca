#!/usr/bin/python3
"""test_run.py - 'petal run' process management and option checking.

Uses stand-in agents (tests/test_run_agent.py via petal run's PETAL_RUN_AGENT
hook) so that what is tested here is petal run itself: the command lines it
builds, the results tree and report, progress output (plain in a pipe, a
status line on a TTY), exit codes, failing and hanging servers, Ctrl-C
stopping every child. The real federation is tests/test_run_e2e.py.
"""
import csv
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import shutil

BUILD = os.environ.get("BUILD", "build")
PETAL = os.path.abspath(os.path.join(BUILD, "petal"))
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_run_agent.py")
failures = 0


def check(name, cond, detail=""):
    global failures
    if cond:
        print(f"PASS: test_run/{name}")
    else:
        failures += 1
        print(f"FAIL: test_run/{name} {detail}")
    sys.stdout.flush()
    return cond


def petal_run(args, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([PETAL, "run", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def fake(mode="ok", pids=None):
    e = {"PETAL_RUN_AGENT": AGENT, "PT_FAKE_MODE": mode}
    if pids:
        e["PT_FAKE_PIDS"] = pids
    return e


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_options(tmp):
    r = petal_run(["--dry-run", "--strategy", "fedavg", "--strategy", "FedAdam", "--clients", "3",
                   "--rounds", "4", "--out", tmp + "/o", "--seed", "7", "--server-momentum",
                   "0.9", "--limit", "100"])
    lines = r.stdout.strip().split("\n")
    check("dry_run_exit", r.returncode == 0, r.stderr)
    check("dry_run_lines", len(lines) == 8, str(lines))
    srv = lines[0].split()
    check("dry_run_server", srv[:2] == ["petal", "server"] and "--rounds" in srv
          and srv[srv.index("--rounds") + 1] == "4"
          and srv[srv.index("--strategy") + 1] == "FedAvg"  # canonical spelling
          and srv[srv.index("--out") + 1] == tmp + "/o/openblas/FedAvg/3"
          and srv[srv.index("--strategy-opt") + 1] == "server_momentum=0.9"
          and srv[srv.index("--expected-clients") + 1] == "3"
          and srv[srv.index("--min-available-clients") + 1] == "3"
          and srv[srv.index("--address") + 1].startswith("127.0.0.1:"), lines[0])
    cl = lines[3].split()
    check("dry_run_client", cl[:2] == ["petal", "client"]
          and cl[cl.index("--partition") + 1] == "2/3" and cl[cl.index("--id") + 1] == "2"
          and cl[cl.index("--server") + 1] == srv[srv.index("--address") + 1]
          and cl[cl.index("--limit") + 1] == "300" and cl[cl.index("--seed") + 1] == "7",
          lines[3])
    check("dry_run_second_strategy", "FedAdam/3" in lines[4], lines[4])
    # Flower's defaults, spelled as petal server spells the flag
    r = petal_run(["--dry-run", "--strategy", "FedAdam", "--flower-defaults"])
    srv = r.stdout.split("\n")[0].split()
    check("dry_run_flower_defaults", r.returncode == 0 and "--strategy-opt" in srv
          and srv[srv.index("--strategy-opt") + 1] == "defaults=flower", r.stdout + r.stderr)

    bad = [
        (["--strategy", "FedNope"], "unknown strategy 'FedNope'"),
        (["--strategy", "FedAvg,FedAvg"], "listed twice"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--partition", "zipf"], "unknown partition scheme"),
        (["--clients", "0"], "--clients"),
        (["--clients", "200", "--val-split", "0.999"], "--val-split"),
        (["--rounds", "x"], "--rounds"),
        (["--backend", "cuda"], "--backend"),
        (["--lr", "0"], "--lr"),
        (["--bogus-flag", "1"], "unknown option '--bogus-flag'"),
        (["--server-momentum", "abc"], "server-momentum"),
        (["--strategy", "FedProx"], "proximal_mu"),
        (["--dataset", "/nonexistent/folder"], "No such file"),
        (["--dataset", "folder:/nonexistent/images"], "/nonexistent/images: No such file"),
        (["stray"], "unexpected argument"),
    ]
    for args, msg in bad:
        r = petal_run(["--dry-run", *args])
        check("bad_" + "_".join(a.strip("-") for a in args)[:40].replace("/", "_"),
              r.returncode == 2 and msg in r.stderr, f"rc={r.returncode} {r.stderr!r}")
    # a port in use
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    r = petal_run(["--port", str(port), "--strategy", "FedAvg", "--out", tmp + "/p"])
    s.close()
    check("port_in_use", r.returncode == 2 and f"port {port} on 127.0.0.1 is already in use"
          in r.stderr, r.stderr)
    r = petal_run(["--help"])
    check("help", r.returncode == 0 and "--n-client-instances" in r.stdout)


def test_fake_federation(tmp):
    out = os.path.join(tmp, "fake")
    t0 = time.time()
    r = petal_run(["--strategy", "FedAvg,FedAdam", "--clients", "2", "--rounds", "2", "--out",
                   out, "--timeout", "60"], fake())
    check("fake_exit_0", r.returncode == 0, r.stderr[-3000:])
    for s in ("FedAvg", "FedAdam"):
        d = os.path.join(out, "openblas", s, "2")
        files = set(os.listdir(d)) if os.path.isdir(d) else set()
        want = {"events.jsonl", "server_log.log", "client_0_log.log", "client_1_log.log",
                "server_stderr.log", "client_0_stderr.log", "client_1_stderr.log"}
        check(f"fake_tree_{s}", want <= files, str(files))
    for name in ("metrics.csv", "summary.json", "report.html"):
        check(f"fake_{name}", os.path.exists(os.path.join(out, name)))
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    check("fake_csv", {r["strategy"] for r in rows} == {"FedAvg", "FedAdam"}
          and any(r["metric"] == "accuracy_centralized" and r["round"] == "2" for r in rows))
    # plain progress lines in a pipe, no terminal control sequences
    check("fake_progress_plain", "FedAvg round 1/2: centralised accuracy 60.00%" in r.stderr
          and "\033[" not in r.stderr, r.stderr[-2000:])
    check("fake_summary_stdout", "FedAvg" in r.stdout and "70.00%" in r.stdout, r.stdout)
    check("fake_fast", time.time() - t0 < 60)
    # a second run into the same tree replaces the first (no duplicated events)
    r = petal_run(["--strategy", "FedAvg", "--clients", "2", "--rounds", "1", "--out", out],
                  fake())
    with open(os.path.join(out, "openblas", "FedAvg", "2", "events.jsonl")) as f:
        starts = sum(1 for l in f if '"run_start"' in l)
    check("rerun_replaces", r.returncode == 0 and starts == 1, str(starts))


def test_failures(tmp):
    out = os.path.join(tmp, "fail")
    r = petal_run(["--strategy", "FedAvg,FedAdam", "--rounds", "1", "--out", out], fake("fail"))
    check("server_fail_exit_1", r.returncode == 1, r.stderr)
    check("server_fail_reason", "the server failed (exit status 3)" in r.stderr
          and "cannot load dataset 'nowhere'" in r.stderr, r.stderr)
    check("server_fail_both_tried", "FedAdam (2/2)" in r.stderr, r.stderr)

    out = os.path.join(tmp, "cfail")
    r = petal_run(["--strategy", "FedAvg", "--rounds", "1", "--out", out, "--timeout", "5"],
                  fake("client_fail"))
    check("client_fail_reported", r.returncode == 1 and "client_1 failed (exit status 4)" in r.stderr
          and "partition 1/2 is empty" in r.stderr, r.stderr)

    out = os.path.join(tmp, "hang")
    pids = os.path.join(tmp, "hang.pids")
    t0 = time.time()
    r = petal_run(["--strategy", "FedAvg", "--rounds", "1", "--out", out, "--timeout", "2"],
                  fake("hang", pids))
    check("timeout_stops", r.returncode == 1 and "timeout after 2 s" in r.stderr
          and time.time() - t0 < 15, r.stderr)
    time.sleep(0.2)
    with open(pids) as f:
        ps = [int(x) for x in f.read().split()]
    check("timeout_children_gone", len(ps) == 3 and not any(alive(p) for p in ps), str(ps))


def test_interrupt(tmp):
    out = os.path.join(tmp, "int")
    pids = os.path.join(tmp, "int.pids")
    env = dict(os.environ)
    env.update(fake("hang", pids))
    p = subprocess.Popen([PETAL, "run", "--strategy", "FedAvg,FedAdam", "--rounds", "2", "--out",
                          out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ev = os.path.join(out, "openblas", "FedAvg", "2", "events.jsonl")
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(ev) and "client_start" in open(ev).read():
            break
        time.sleep(0.1)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    try:
        so, se = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
    check("interrupt_exit_130", p.returncode == 130, f"rc={p.returncode} {se[-2000:]}")
    check("interrupt_message", "interrupted" in se, se[-2000:])
    with open(pids) as f:
        ps = [int(x) for x in f.read().split()]
    check("interrupt_children_gone", len(ps) == 3 and not any(alive(x) for x in ps), str(ps))
    check("interrupt_keeps_results", os.path.exists(ev) and
          os.path.exists(os.path.join(out, "report.html")), str(os.listdir(out)))
    check("interrupt_no_second_strategy", not os.path.exists(os.path.join(out, "openblas",
                                                                          "FedAdam")))


def test_tty(tmp):
    out = os.path.join(tmp, "tty")
    env = dict(os.environ)
    env.update(fake())
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(PETAL, [PETAL, "run", "--strategy", "FedAvg", "--rounds", "3", "--out", out],
                  env)
    data = b""
    deadline = time.time() + 60
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    _, st = os.waitpid(pid, 0)
    text = data.decode(errors="replace")
    check("tty_exit_0", os.waitstatus_to_exitcode(st) == 0, text[-1500:])
    check("tty_status_line", "\r\033[K[1/1 FedAvg] round" in text and "clients " in text
          and "elapsed" in text and "ETA" in text, repr(text[-1500:]))


def main():
    if not os.access(PETAL, os.X_OK):
        print(f"FAIL: test_run/petal binary missing ({PETAL})")
        return 1
    tmp = tempfile.mkdtemp(prefix="pt_run_")
    try:
        test_options(tmp)
        test_fake_federation(tmp)
        test_failures(tmp)
        test_interrupt(tmp)
        test_tty(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
