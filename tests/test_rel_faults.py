#!/usr/bin/python3
"""test_rel_faults.py - client faults (issue 7).

One `petal server` (3 rounds, --round-timeout 4, accept_failures) with two
real `petal client` processes training on a Fashion-MNIST subset and four
misbehaving Flower-protocol clients (Debian's python3-grpcio):
  hang     never answers its first FitIns (the round timeout fires),
  killed   a separate process SIGKILLed while "fitting" (then restarted),
  garbage  answers its first FitIns with bytes that are no ClientMessage,
  leaver   answers, then drops its connection between rounds.
Round 1 completes with the well-behaved ones; each failure is logged with
its reason and client; every faulty client rejoins (a new stream, or a new
process) and is counted in rounds 2 and 3; every process exits 0.
Then: a client that never comes back -> the server waits --wait-clients,
says so, stops with exit status 3 and keeps the results so far
(checkpoint, --save-weights); SIGINT mid-round: exit status 130, results
kept, clients told goodbye."""
import os
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402
import grpc  # noqa: E402
import queue  # noqa: E402

pb = L.pb
FMNIST = "/usr/share/datasets/fashion-mnist"


def serve_once(port, mode, marker=None, log=None):
    """One Join stream. Returns "bye" (ReconnectIns handled) or "again"
    (stream over for another reason: reconnect)."""
    ch = L.channel(port)
    q = queue.Queue()

    def reqs():
        while True:
            m = q.get()
            if m is None:
                return
            yield m
    join = ch.stream_stream("/flwr.proto.FlowerService/Join",
                            request_serializer=lambda b: b,
                            response_deserializer=pb.ServerMessage.FromString)
    call = join(reqs())
    try:
        for sm in call:
            kind = sm.WhichOneof("msg")
            if log is not None:
                log.append((mode, kind))
            if kind == "fit_ins":
                if mode == "hang":
                    continue  # never answer; the server's deadline ends the stream
                if mode == "killme":
                    open(marker, "w").close()
                    time.sleep(3600)
                if mode == "garbage":
                    q.put(b"\xff\xff\xff\xffnot a ClientMessage")
                    continue
                r = pb.ClientMessage()
                r.fit_res.status.message = "Success"
                r.fit_res.parameters.CopyFrom(sm.fit_ins.parameters)  # unchanged weights
                r.fit_res.num_examples = 10
                q.put(r.SerializeToString())
                if mode == "leave":
                    time.sleep(0.3)
                    call.cancel()
                    return "again"
            elif kind == "evaluate_ins":
                r = pb.ClientMessage()
                r.evaluate_res.loss = 1.0
                r.evaluate_res.num_examples = 10
                q.put(r.SerializeToString())
            elif kind == "reconnect_ins":
                r = pb.ClientMessage()
                r.disconnect_res.reason = pb.ACK
                q.put(r.SerializeToString())
                q.put(None)
                for _ in call:
                    pass
                return "bye"
        return "again"
    except grpc.RpcError:
        return "again"
    finally:
        q.put(None)
        ch.close()


def flower_client(port, modes, log=None, marker=None, deadline=90):
    """Serve streams: modes[i] for the i-th, "good" after; until ReconnectIns."""
    t0 = time.time()
    i = 0
    while time.time() - t0 < deadline:
        mode = modes[i] if i < len(modes) else "good"
        i += 1
        if serve_once(port, mode, marker, log) == "bye":
            return True
        time.sleep(0.2)
    return False


class Flower(threading.Thread):
    def __init__(self, port, modes):
        super().__init__(daemon=True)
        self.port, self.modes, self.log, self.ok = port, modes, [], None

    def run(self):
        self.ok = flower_client(self.port, self.modes, self.log)


def child(port, mode, marker, d, name):
    return subprocess.Popen(["/usr/bin/python3", os.path.abspath(__file__), "--client",
                             str(port), mode, marker],
                            stdout=open(os.path.join(d, name + ".log"), "wb"),
                            stderr=subprocess.STDOUT)


def petal_clients(port, d, n=2):
    return [L.Proc(["client", "--server", "127.0.0.1:%d" % port, "--model", L.TINY_MODEL,
                    "--dataset", "fashion-mnist", "--partition", "%d/%d" % (i, n),
                    "--limit", "400", "--eval-limit", "100", "--connect-timeout", "30"],
                   d, "petal%d" % i) for i in range(n)]


def fault_round(d):
    out = os.path.join(d, "out")
    srv, port = L.start_server(
        ["--rounds", "3", "--model", L.TINY_MODEL, "--min-available-clients", "6",
         "--min-fit-clients", "6", "--fraction-evaluate", "0", "--round-timeout", "4",
         "--wait-clients", "60", "--accept-failures", "--out", out], d)
    marker = os.path.join(d, "fitting")
    flows = {m: Flower(port, [m]) for m in ("hang", "garbage", "leave")}
    for f in flows.values():
        f.start()
    killed = child(port, "killme", marker, d, "killed")
    petals = petal_clients(port, d)
    t0 = time.time()
    while not os.path.exists(marker) and time.time() - t0 < 60:
        time.sleep(0.02)
    L.check("faults_killme_was_fitting", os.path.exists(marker))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    os.unlink(marker) if os.path.exists(marker) else None
    restarted = child(port, "good", marker, d, "restarted")
    rc = srv.wait(120)
    log = srv.output()
    L.check("faults_server_exit_0", rc == 0, "rc=%s\n%s" % (rc, log[-3000:]))
    prc = [p.wait(60) for p in petals]
    L.check("faults_petal_clients_exit_0", prc == [0, 0],
            "\n".join(p.output()[-800:] for p in petals))
    L.check("faults_restarted_process_exit_0", restarted.wait(30) == 0,
            open(os.path.join(d, "restarted.log")).read()[-800:])
    for m, f in flows.items():
        f.join(30)
        L.check("faults_%s_client_rejoined" % m, f.ok is True, f.log)
    ev = L.events(os.path.join(out, "events.jsonl"))
    rounds = {e["round"]: e for e in ev if e.get("source") == "server" and e["event"] == "round"}
    r1 = rounds.get(1, {})
    L.check("faults_round1_completes_with_the_others",
            r1.get("results") == 3 and r1.get("failures") == 3, r1)
    L.check("faults_rejoined_in_later_rounds",
            all(rounds.get(r, {}).get("results") == 6 and rounds.get(r, {}).get("failures") == 0
                for r in (2, 3)), [rounds.get(r) for r in (2, 3)])
    fails = [e for e in ev if e["event"] == "failure" and e.get("round") == 1]
    reasons = " | ".join(str(e.get("reason", e.get("error", e))) for e in fails)
    L.check("faults_failure_events", len(fails) == 3 and all(e.get("client") for e in fails),
            fails)
    L.check("faults_reason_timeout", "Timeout of 4sec was exceeded" in reasons, reasons)
    L.check("faults_reason_garbage", "bad ClientMessage" in reasons, reasons)
    L.check("faults_reason_killed", "disconnected" in reasons, reasons)
    L.check("faults_logged_with_client", log.count("fit_round 1: client ipv4:127.0.0.1:") == 3,
            log[-3000:])
    for p in petals:
        p.kill()
    srv.kill()


def never_returns(d):
    """A client leaves for good after its first fit: the server waits
    --wait-clients, then stops with status 3 and keeps the results so far."""
    ck = os.path.join(d, "ck")
    w = os.path.join(d, "w.npz")
    srv, port = L.start_server(
        ["--rounds", "3", "--model", L.TINY_MODEL, "--min-available-clients", "2",
         "--min-fit-clients", "2", "--fraction-evaluate", "0", "--wait-clients", "2",
         "--checkpoint-dir", ck, "--save-weights", w], d, "srv_wait")
    stay = Flower(port, [])
    stay.start()
    gone = threading.Thread(target=lambda: serve_once(port, "leave"), daemon=True)
    gone.start()
    t0 = time.time()
    rc = srv.wait(60)
    took = time.time() - t0
    log = srv.output()
    L.check("wait_exit_status_3", rc == 3, "rc=%s\n%s" % (rc, log[-2000:]))
    L.check("wait_clear_message", "only 1 of the 2 required clients connected within 2 s"
            in log and "--wait-clients" in log, log[-1500:])
    L.check("wait_bounded", took < 30, took)
    r = -1
    try:
        with open(os.path.join(ck, "checkpoint.ptck"), "rb") as f:
            r = struct.unpack("<I", f.read(20)[16:20])[0]
    except OSError:
        pass
    L.check("wait_checkpoint_kept", r >= 1 and
            "the run can continue from round %d" % (r + 1) in log, (r, log[-800:]))
    L.check("wait_weights_saved", os.path.exists(w) and "--resume" in log, log[-800:])
    stay.join(15)
    srv.kill()


def interrupted(d):
    """SIGINT during a round: the server says goodbye to the clients, keeps
    the results so far and exits with status 130."""
    ck = os.path.join(d, "ck_int")
    w = os.path.join(d, "w_int.npz")
    srv, port = L.start_server(
        ["--rounds", "5", "--model", L.TINY_MODEL, "--min-available-clients", "2",
         "--min-fit-clients", "2", "--fraction-evaluate", "0", "--wait-clients", "30",
         "--checkpoint-dir", ck, "--save-weights", w], d, "srv_int")

    def slow(arrays, cfg):
        time.sleep(0.5)
        return arrays, 10, {}
    cs = [L.NumpyClient(port, slow, None) for _ in range(2)]
    for c in cs:
        c.start()
    t0 = time.time()
    while "fit_round 2: strategy sampled" not in srv.output() and time.time() - t0 < 30:
        time.sleep(0.02)
    srv.p.send_signal(signal.SIGINT)
    rc = srv.wait(30)
    log = srv.output()
    L.check("sigint_exit_130", rc == 130, "rc=%s\n%s" % (rc, log[-1500:]))
    L.check("sigint_results_kept", os.path.exists(w) and
            os.path.exists(os.path.join(ck, "checkpoint.ptck")) and
            "the run can continue from round 2" in log, log[-1500:])
    for c in cs:
        c.done.wait(10)
    L.check("sigint_clients_told_goodbye", all(c.reconnect is not None for c in cs),
            [str(c.error)[:100] for c in cs])
    srv.kill()


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        ok = flower_client(int(sys.argv[2]), [sys.argv[3]], marker=sys.argv[4])
        return 0 if ok else 1
    if not os.path.exists(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")):
        print("SKIP: faults Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 0
    with L.tmpdir() as d:
        fault_round(d)
        never_returns(d)
        interrupted(d)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
