#!/usr/bin/python3
"""test_report.py - 'petal report' on a synthetic results tree.

The tree is written through the results writer API (test_report_fixture),
plus one run written here by hand with hostile names. Checks every output
file, parses metrics.csv with Python's csv module, checks summary.json, the
HTML's self-containment and escaping, error messages for bad input, and
renders report.html in headless Chromium (screenshot + SVG elements counted
in the dumped DOM). Chromium missing -> that part is SKIPped with the reason.
"""
import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

BUILD = os.environ.get("BUILD", "build")
PETAL = os.path.join(BUILD, "petal")
FIXTURE = os.path.join(BUILD, "tests", "test_report_fixture")
COLUMNS = ["strategy", "n_clients", "backend", "client", "metric", "value", "timestamp", "round"]

failures = 0


def check(name, cond, detail=""):
    global failures
    if cond:
        print(f"PASS: test_report/{name}")
    else:
        failures += 1
        print(f"FAIL: test_report/{name} {detail}")
    sys.stdout.flush()
    return cond


def petal(*args):
    return subprocess.run([PETAL, *args], capture_output=True, text=True, timeout=120)


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium(args, html, timeout=90):
    udd = tempfile.mkdtemp(prefix="pt_chromium_")
    try:
        cmd = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--user-data-dir=" + udd, *args, "file://" + os.path.abspath(html)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(udd, ignore_errors=True)


def png_info(path):
    """(width, height, distinct byte values in the decompressed image data)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, w, h, idat = 8, 0, 0, b""
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    return w, h, len(set(raw[: 4 << 20]))


def hostile_run(out):
    """A run written by hand: names needing HTML escaping and CSV quoting."""
    d = os.path.join(out, "openblas", "weird", "2")
    os.makedirs(d)
    lines = [
        {"ts": 1.7e9, "source": "server", "event": "run_start", "strategy": 'Fed<b>&"x,y',
         "n_clients": 2, "backend": "openblas", "model": "m<script>", "dataset": "d", "rounds": 2,
         "config": {}},
        {"ts": 1.7e9 + 1, "source": "server", "event": "round", "round": 1, "round_time": 2.0,
         "accuracy_centralized": 0.5, "loss_centralized": 1.0},
        {"ts": 1.7e9 + 2, "source": "server", "event": "round", "round": 2, "round_time": 2.5,
         "accuracy_centralized": None, "loss_centralized": "not a number"},
        {"ts": 1.7e9 + 3, "source": "server", "event": "run_end", "total_time": 4.5, "rounds": 2,
         "status": "ok", "reason": None},
    ]
    with open(os.path.join(d, "events.jsonl"), "w") as f:
        for o in lines:
            f.write(json.dumps(o) + "\n")
        f.write("[1, 2]\n")        # valid JSON, not an object
        f.write("\n")              # blank lines are ignored


def main():
    if not os.access(PETAL, os.X_OK) or not os.access(FIXTURE, os.X_OK):
        print(f"FAIL: test_report/binaries missing ({PETAL}, {FIXTURE}); run make first")
        return 1
    tmp = tempfile.mkdtemp(prefix="pt_report_")
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    out = os.path.join(tmp, "results")
    r = subprocess.run([FIXTURE, out], capture_output=True, text=True)
    if not check("fixture", r.returncode == 0, r.stderr):
        return 1
    hostile_run(out)
    r = petal("report", out)
    check("report_exit_0", r.returncode == 0, r.stderr)
    for name in ("metrics.csv", "summary.json", "report.html"):
        check(f"file_{name}", os.path.getsize(os.path.join(out, name)) > 0)
    for sub in ("openblas/FedAvg/2", "openblas/FedAdam/2", "reference/FedAvgM/3"):
        files = set(os.listdir(os.path.join(out, sub)))
        want = {"events.jsonl", "server_log.log", "client_0_log.log", "client_1_log.log"}
        check(f"run_files_{sub.replace('/', '_')}", want <= files, str(files))

    # ---- metrics.csv ----
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        rows = list(csv.reader(f))
    check("csv_header", rows[0] == COLUMNS, str(rows[0]))
    body = [dict(zip(COLUMNS, r)) for r in rows[1:]]
    check("csv_row_width", all(len(r) == 8 for r in rows), "")
    strategies = {r["strategy"] for r in body}
    check("csv_strategies", strategies == {"FedAvg", "FedAdam", "FedAvgM", 'Fed<b>&"x,y'},
          str(strategies))

    def value(strategy, client, metric, rnd):
        v = [float(r["value"]) for r in body if r["strategy"] == strategy and r["client"] == client
             and r["metric"] == metric and r["round"] == rnd]
        return v[0] if len(v) == 1 else (None if not v else v)

    check("csv_fedavg_acc", abs(value("FedAvg", "server", "accuracy_centralized", "3") - 0.84) < 1e-9)
    check("csv_round0", abs(value("FedAvg", "server", "loss_centralized", "0") - 2.302) < 1e-9)
    check("csv_fedadam_blowup", value("FedAdam", "server", "loss_centralized", "3") == 1e9)
    check("csv_missing_eval_has_no_row",
          value("FedAdam", "server", "accuracy_centralized", "2") is None)
    check("csv_client_cpu", value("FedAvgM", "client_2", "fit_cpu_process_percent", "1") == 170.0)
    check("csv_client_eval_time", abs(value("FedAvg", "client_1", "evaluate_time", "2") - 0.6) < 1e-9)
    check("csv_n_clients", {r["n_clients"] for r in body if r["strategy"] == "FedAvgM"} == {"3"})
    check("csv_backend", {r["backend"] for r in body if r["strategy"] == "FedAvgM"} == {"reference"})
    ts_ok = all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["timestamp"]) for r in body)
    check("csv_timestamps_iso8601", ts_ok)
    check("csv_round_column", all(r["round"] == "" or r["round"].isdigit() for r in body))
    check("csv_total_time_no_round",
          any(r["metric"] == "total_time" and r["round"] == "" for r in body))

    # ---- summary.json ----
    with open(os.path.join(out, "summary.json")) as f:
        summ = json.load(f)
    runs = {r["strategy"]: r for r in summ["runs"]}
    check("summary_runs", len(summ["runs"]) == 4, str(len(summ["runs"])))
    check("summary_malformed", summ["malformed_lines"] == 2, str(summ["malformed_lines"]))
    fa = runs["FedAvg"]
    check("summary_fedavg", abs(fa["final_accuracy"] - 0.84) < 1e-9 and fa["best_round"] == 3
          and fa["rounds_completed"] == 3 and fa["clients"] == 2
          and abs(fa["mean_round_time"] - 6.5) < 1e-9 and fa["status"] == "ok", str(fa))
    fd = runs["FedAdam"]
    check("summary_fedadam", fd["failures"] == 1 and fd["final_loss"] == 1e9, str(fd))
    fm = runs["FedAvgM"]
    check("summary_incomplete", fm["status"] == "incomplete" and fm["rounds_completed"] == 2
          and fm["rounds_requested"] == 4 and fm["total_time"] is None, str(fm))
    check("summary_config", fa["config"]["note"] == 'quotes " and, commas')

    # ---- report.html ----
    with open(os.path.join(out, "report.html")) as f:
        html = f.read()
    check("html_no_script", "<script" not in html.lower())
    external = re.findall(r"""(?:src|href)\s*=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)""",
                          html)
    check("html_nothing_fetched", not external, str(external[:5]))
    check("html_escaped", "Fed&lt;b&gt;&amp;&quot;x,y" in html and "<b>" not in html
          and "m&lt;script&gt;" in html)
    n_svg = html.count("<svg")
    check("html_svg_count", n_svg == 9, str(n_svg))
    check("html_log_scale", "log scale" in html)
    for title in ("Summary", "Centralised accuracy", "Centralised loss", "Round time",
                  "Client CPU during fit", "Client evaluate time", "Clients"):
        check("html_section_" + title.replace(" ", "_"), f"<h2>{title}</h2>" in html)

    # ---- bad input ----
    r = petal("report", os.path.join(tmp, "nope"))
    check("err_missing_dir", r.returncode == 1 and "No such file" in r.stderr, r.stderr)
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    r = petal("report", empty)
    check("err_no_events_file", r.returncode == 1 and "no events.jsonl" in r.stderr, r.stderr)
    junk = os.path.join(tmp, "junk")
    os.makedirs(junk)
    with open(os.path.join(junk, "events.jsonl"), "w") as f:
        f.write("not json\n{\"half\":\n")
    r = petal("report", junk)
    check("err_no_events", r.returncode == 1 and "no events" in r.stderr, r.stderr)
    r = petal("report")
    check("err_usage", r.returncode == 2 and "missing results directory" in r.stderr, r.stderr)
    r = petal("report", "--log-loss", "maybe", out)
    check("err_bad_option", r.returncode == 2 and "--log-loss" in r.stderr, r.stderr)
    r = petal("report", "--log-loss", "off", out)
    with open(os.path.join(out, "report.html")) as f:
        check("log_loss_off", r.returncode == 0 and "log scale" not in f.read())

    # ---- headless Chromium ----
    if not chromium_binary():
        print("SKIP: test_report/chromium_render chromium not installed "
              "(Debian package 'chromium', listed in scripts/deps/report.txt)")
        return 0 if failures == 0 else 1
    html_path = os.path.join(out, "report.html")
    petal("report", out)
    shot = os.path.join(tmp, "shot.png")
    r = chromium(["--window-size=1280,2400", "--screenshot=" + shot], html_path)
    ok = r.returncode == 0 and os.path.exists(shot)
    if check("chromium_screenshot", ok, r.stderr[-2000:]):
        info = png_info(shot)
        check("chromium_screenshot_png", info is not None and info[0] == 1280 and info[1] == 2400
              and info[2] > 50, str(info))
    r = chromium(["--dump-dom"], html_path)
    dom = r.stdout
    n_svg = len(re.findall(r"<svg\b", dom))
    n_lines = len(re.findall(r"<polyline\b|<path\b", dom))
    n_bars = len(re.findall(r'<rect class="bar"', dom))
    n_pts = len(re.findall(r"<circle\b", dom))
    print(f"dom: {n_svg} svg, {n_lines} polylines/paths, {n_bars} bars, {n_pts} points")
    check("chromium_dom_svg", r.returncode == 0 and n_svg == 9, f"{n_svg} svg")
    check("chromium_dom_lines", n_lines >= 12, f"{n_lines} polylines")
    # round time: 3 + 3 + 2 + 2 rounds; client charts: 4 x (2 + 2 + 3 clients)
    check("chromium_dom_bars", n_bars == 10 + 4 * 7, f"{n_bars} bars")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
