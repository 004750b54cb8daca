#!/usr/bin/python3
"""test_run_e2e.py - 'petal run' end to end with the real agents: 2 clients,
2 strategies, 2 rounds of fmnist-cnn on a small Fashion-MNIST subset over real
sockets on 127.0.0.1. Checks every expected file, the Flower log format,
metrics.csv (Python csv module, exact columns), summary.json, and that
report.html renders in headless Chromium with its charts present (screenshot
taken, SVG elements counted in the dumped DOM).
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_report import chromium, chromium_binary, png_info  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
PETAL = os.path.abspath(os.path.join(BUILD, "petal"))
COLUMNS = ["strategy", "n_clients", "backend", "client", "metric", "value", "timestamp", "round"]
STRATEGIES = ["FedAvg", "FedAdam"]
failures = 0


def check(name, cond, detail=""):
    global failures
    if cond:
        print(f"PASS: test_run_e2e/{name}")
    else:
        failures += 1
        print(f"FAIL: test_run_e2e/{name} {detail}")
    sys.stdout.flush()
    return cond


def main():
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        print("SKIP: test_run_e2e Debian package dataset-fashion-mnist is not installed")
        return 0
    tmp = tempfile.mkdtemp(prefix="pt_e2e_")
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    out = os.path.join(tmp, "results")
    args = [PETAL, "run", "--clients", "2", "--rounds", "2", "--strategy", ",".join(STRATEGIES),
            "--limit", "300", "--eval-limit", "500", "--client-eval-limit", "200", "--seed", "3",
            "--out", out, "--timeout", "300"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=900)
    print(r.stderr[-3000:])
    if not check("exit_0", r.returncode == 0, f"rc={r.returncode}"):
        return 1
    for s in STRATEGIES:
        d = os.path.join(out, "openblas", s, "2")
        files = set(os.listdir(d)) if os.path.isdir(d) else set()
        want = {"events.jsonl", "server_log.log", "client_0_log.log", "client_1_log.log"}
        check(f"files_{s}", want <= files, str(files))
        with open(os.path.join(d, "server_log.log")) as f:
            first = f.readline()
        check(f"flower_log_format_{s}", re.match(
            r"^(INFO|DEBUG|WARNING|ERROR) flwr \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \| [\w.]+:\d+ \| ",
            first) is not None, first)
    for name in ("metrics.csv", "summary.json", "report.html"):
        check(f"file_{name}", os.path.getsize(os.path.join(out, name)) > 0)

    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        rows = list(csv.reader(f))
    check("csv_columns", rows[0] == COLUMNS, str(rows[0]))
    body = [dict(zip(COLUMNS, x)) for x in rows[1:]]
    check("csv_rows_complete", all(len(x) == 8 for x in rows))
    for s in STRATEGIES:
        acc = {x["round"]: float(x["value"]) for x in body if x["strategy"] == s
               and x["client"] == "server" and x["metric"] == "accuracy_centralized"}
        check(f"csv_accuracy_rounds_{s}", set(acc) == {"0", "1", "2"}, str(acc))
        if s == "FedAvg" and len(acc) == 3:
            check("fedavg_learns", acc["2"] > acc["0"] + 0.2, str(acc))
        for c in ("client_0", "client_1"):
            ms = {x["metric"] for x in body if x["strategy"] == s and x["client"] == c}
            check(f"csv_client_metrics_{s}_{c}",
                  {"fit_time", "fit_cpu_process_percent", "fit_cpu_system_percent",
                   "evaluate_time", "evaluate_cpu_process_percent", "fit_peak_rss_bytes"} <= ms,
                  str(ms))
        check(f"csv_n_clients_backend_{s}",
              {(x["n_clients"], x["backend"]) for x in body if x["strategy"] == s}
              == {("2", "openblas")})
    with open(os.path.join(out, "summary.json")) as f:
        summ = json.load(f)
    runs = {x["strategy"]: x for x in summ["runs"]}
    for s in STRATEGIES:
        x = runs.get(s, {})
        check(f"summary_{s}", x.get("status") == "ok" and x.get("rounds_completed") == 2
              and x.get("clients") == 2 and x.get("final_accuracy") is not None
              and x.get("mean_round_time", 0) > 0, str(x))
    print("figures: " + ", ".join(f"{s}: final accuracy {runs[s]['final_accuracy']:.4f}, "
                                  f"{runs[s]['mean_round_time']:.2f} s/round"
                                  for s in STRATEGIES if s in runs))

    # an impossible partition: the clients' error reaches the user quickly
    r = subprocess.run([PETAL, "run", "--strategy", "FedAvg", "--partition", "shards:50000",
                        "--limit", "10", "--rounds", "1", "--out", os.path.join(tmp, "imp"),
                        "--timeout", "120"], capture_output=True, text=True, timeout=300)
    check("impossible_partition", r.returncode == 1 and "every client failed" in r.stderr
          and "100000 shards but only 20 training examples" in r.stderr, r.stderr[-2000:])

    html = os.path.join(out, "report.html")
    if not chromium_binary():
        print("SKIP: test_run_e2e/chromium_render chromium not installed "
              "(Debian package 'chromium', listed in scripts/deps/report.txt)")
        return 0 if failures == 0 else 1
    shot = os.path.join(tmp, "shot.png")
    r = chromium(["--window-size=1280,2000", "--screenshot=" + shot], html)
    info = png_info(shot) if os.path.exists(shot) else None
    check("chromium_screenshot", info is not None and info[:2] == (1280, 2000) and info[2] > 50,
          f"{info} {r.stderr[-1000:]}")
    r = chromium(["--dump-dom"], html)
    n_svg = len(re.findall(r"<svg\b", r.stdout))
    n_lines = len(re.findall(r"<polyline\b", r.stdout))
    n_bars = len(re.findall(r'<rect class="bar"', r.stdout))
    print(f"dom: {n_svg} svg, {n_lines} polylines, {n_bars} bars")
    # accuracy, loss, distributed accuracy and loss, round time, 4 client charts
    check("chromium_dom_svg", n_svg == 9, str(n_svg))
    check("chromium_dom_lines", n_lines >= 8, str(n_lines))    # 4 line charts x 2 strategies
    check("chromium_dom_bars", n_bars == 4 + 4 * 4, str(n_bars))  # 2x2 round bars + 4x(2x2)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
