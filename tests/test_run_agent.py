#!/usr/bin/python3
"""test_run_agent.py - stand-in for 'petal server' / 'petal client' used by
tests/test_run.py through petal run's PETAL_RUN_AGENT hook, to test process
management (start, progress, exit codes, Ctrl-C, timeouts) independently of
the real agents. It writes the same events.jsonl schema as core/results.c.

usage: test_run_agent.py server|client [petal's server/client options]
Environment: PT_FAKE_MODE = ok (default) | hang (server never finishes) |
fail (server exits 3 after run_start) | client_fail (client 1 exits 4);
PT_FAKE_PIDS = file to which each process appends its pid.
"""
import json
import os
import sys
import time


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        if i + 1 < len(args):
            return args[i + 1]
    return default


def emit(out, source, event, **fields):
    line = json.dumps({"ts": time.time(), "source": source, "event": event, **fields}) + "\n"
    fd = os.open(os.path.join(out, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)


def log(out, source, msg):
    t = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ",%03d" % int(t % 1 * 1000)
    with open(os.path.join(out, source + "_log.log"), "a") as f:
        f.write(f"INFO flwr {stamp} | test_run_agent.py:1 | {msg}\n")
    print(msg, file=sys.stderr, flush=True)


def events(out):
    try:
        with open(os.path.join(out, "events.jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []


def server(args, mode):
    out, rounds = opt(args, "--out"), int(opt(args, "--rounds", "2"))
    n = int(opt(args, "--min-available-clients", "2"))
    strategy = opt(args, "--strategy")
    os.makedirs(out, exist_ok=True)
    emit(out, "server", "run_start", strategy=strategy, n_clients=n,
         backend=opt(args, "--backend"), model=opt(args, "--model"),
         dataset=opt(args, "--dataset"), rounds=rounds, address=opt(args, "--address"),
         config={"lr": float(opt(args, "--lr", "0.01"))})
    log(out, "server", f"Starting fake server {strategy}")
    if mode == "fail":
        print("fake server: cannot load dataset 'nowhere': No such file", file=sys.stderr)
        sys.exit(3)
    emit(out, "server", "round0", round=0, loss_centralized=2.3, accuracy_centralized=0.1,
         evaluate_time=0.05)
    t_start = time.time()
    for k in range(1, rounds + 1):
        t0 = time.time()
        # wait until every client has reported its fit and evaluate for round k
        while True:
            ev = events(out)
            fits = {e["source"] for e in ev if e["event"] == "fit" and e.get("round") == k}
            evals = {e["source"] for e in ev if e["event"] == "evaluate" and e.get("round") == k}
            if len(fits) >= n and len(evals) >= n and mode != "hang":
                break
            time.sleep(0.05)
        emit(out, "server", "round", round=k, fit_time=0.2, evaluate_time=0.1,
             round_time=time.time() - t0, loss_centralized=1.0 / k,
             accuracy_centralized=0.5 + 0.1 * k, loss_distributed=1.1 / k,
             accuracy_distributed=0.45 + 0.1 * k, bytes_sent=1000, bytes_received=1000,
             clients_sampled=n, results=n, failures=0, eval_results=n, eval_failures=0)
    emit(out, "server", "run_end", total_time=time.time() - t_start, rounds=rounds, status="ok",
         reason=None)
    log(out, "server", "FL finished")


def client(args, mode):
    out, cid = opt(args, "--out"), opt(args, "--id")
    src = "client_" + cid
    os.makedirs(out, exist_ok=True)
    emit(out, src, "client_start", client=cid, partition=opt(args, "--partition"),
         train_examples=100, val_examples=25, backend=opt(args, "--backend"),
         model=opt(args, "--model"), dataset=opt(args, "--dataset"))
    log(out, src, f"fake client {cid} started")
    if mode == "client_fail" and cid == "1":
        print("fake client: partition 1/2 is empty", file=sys.stderr)
        sys.exit(4)
    k = 1
    while True:
        ev = events(out)
        if any(e["event"] == "run_end" for e in ev):
            return
        done = max([e["round"] for e in ev if e["event"] == "round"] + [0])
        if done + 1 == k:
            for name in ("fit", "evaluate"):
                time.sleep(0.1)
                emit(out, src, name, round=k, wall_time=0.1, cpu_process_percent=99.0,
                     cpu_system_percent=60.0, examples=100, peak_rss_bytes=50 << 20,
                     loss=0.5, accuracy=0.8)
            k += 1
        time.sleep(0.05)


def main():
    args = sys.argv[1:]
    mode = os.environ.get("PT_FAKE_MODE", "ok")
    pids = os.environ.get("PT_FAKE_PIDS")
    if pids:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
    if args and args[0] == "server":
        server(args[1:], mode)
    elif args and args[0] == "client":
        client(args[1:], mode)
    else:
        print("usage: test_run_agent.py server|client ...", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
