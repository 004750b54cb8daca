#!/usr/bin/python3
"""test_report_growth.py - `petal report` costs what its input holds (issue
19): time against distinct clients, and against rounds logged out of order,
as ratios within one run (4x the input: linear is 4, n log n a bit more; the
quadratic reader it replaced took 16x)."""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402


def events(path, clients, rounds):
    with open(path, "w") as f:
        f.write(json.dumps({"ts": 1, "source": "server", "event": "run_start",
                            "strategy": "FedAvg", "backend": "openblas", "n_clients": clients,
                            "rounds": rounds}) + "\n")
        for r in range(rounds, 0, -1):  # newest first: the worst order for insertion
            f.write(json.dumps({"ts": 2 + r, "source": "server", "event": "round", "round": r,
                                "accuracy_centralized": 0.5, "round_time": 1.0}) + "\n")
        for i in range(clients):
            for ev in ("fit", "evaluate"):
                f.write(json.dumps({"ts": 3, "source": "client_%d" % i, "event": ev,
                                    "round": 1, "wall_time": 0.5, "cpu_process_percent": 90,
                                    "examples": 10, "peak_rss_bytes": 1e8}) + "\n")


def cost(d, clients, rounds):
    run = os.path.join(d, "c%d_r%d" % (clients, rounds), "openblas", "FedAvg", "1")
    os.makedirs(run)
    events(os.path.join(run, "events.jsonl"), clients, rounds)
    best = None
    for _ in range(2):  # best of two: the machine is shared
        t0 = time.perf_counter()
        r = subprocess.run([L.PETAL, "report", os.path.dirname(os.path.dirname(
            os.path.dirname(run)))], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t = time.perf_counter() - t0
        if r.returncode:
            return None, r.stdout.decode(errors="replace")
        best = t if best is None else min(best, t)
    return best, ""


def main():
    with tempfile.TemporaryDirectory(prefix="petal-rg-") as d:
        t1, e1 = cost(d, 5000, 10)
        t4, e4 = cost(d, 20000, 10)
        L.check("report_runs", t1 is not None and t4 is not None, e1 + e4)
        if t1 and t4:
            print("  petal report: %.3f s for 5,000 distinct clients, %.3f s for 20,000 "
                  "(ratio %.2f for 4x)" % (t1, t4, t4 / t1))
            L.check("report_linear_in_clients", t4 / t1 < 7.0, "ratio %.2f" % (t4 / t1))
        r1, e1 = cost(d, 10, 5000)
        r4, e4 = cost(d, 10, 20000)
        L.check("report_runs_rounds", r1 is not None and r4 is not None, e1 + e4)
        if r1 and r4:
            print("  petal report: %.3f s for 5,000 rounds logged newest first, %.3f s for "
                  "20,000 (ratio %.2f for 4x)" % (r1, r4, r4 / r1))
            L.check("report_linear_in_rounds", r4 / r1 < 7.0, "ratio %.2f" % (r4 / r1))
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
