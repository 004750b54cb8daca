#!/usr/bin/python3
"""test_rel_hostile_client.py - what a credentialed client can do to a round
of `petal server` under its defaults (no --max-examples, no --max-metric-keys,
no --round-timeout value but auto's floor lowered so the test is quick):

  greedy     claims 2,000,000 examples (over the default cap of 1,000,000)
             with weights +100: rejected, the client stays connected;
  many_keys  sends 1,025 metric keys (default cap 1,024): stream refused;
  long_key   sends a 257-byte metric key (default cap 256): stream refused;
  silent     never answers its FitIns: the auto round timeout (10 x the
             slowest reply, at least MIN) ends it; the round does not wait.

The two honest clients' round completes: the new global is exactly the
average of their updates (init + 1), as if the others had not been there."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import test_agents_lib as L  # noqa: E402
from test_agents_lib import grpc  # noqa: E402

SLOW = 0.4  # honest fit time (s): auto gives the others 10 x this, at least MIN
MIN = 1.0


def main():
    with L.tmpdir() as d:
        out = os.path.join(d, "out")
        weights = os.path.join(d, "w.npz")
        srv, port = L.start_server(
            ["--rounds", "1", "--model", L.TINY_MODEL, "--min-fit-clients", "6",
             "--min-available-clients", "6", "--fraction-evaluate", "0", "--wait-clients", "60",
             "--round-timeout", "auto:%g" % MIN, "--save-weights", weights, "--no-checkpoint",
             "--out", out], d)
        seen = {}

        def honest(arrays, cfg):
            seen["init"] = [a.copy() for a in arrays]
            time.sleep(SLOW)
            return [a + np.float32(1) for a in arrays], 10, {"accuracy": 0.5}

        def greedy(arrays, cfg):
            return [a + np.float32(100) for a in arrays], 2000000, {}

        def many_keys(arrays, cfg):
            return arrays, 10, {"k%d" % i: float(i) for i in range(1025)}

        def long_key(arrays, cfg):
            return arrays, 10, {"x" * 257: 1.0}

        t_fit = {}
        release = threading.Event()

        def silent(arrays, cfg):
            t_fit["silent"] = time.time()
            release.wait(60)  # answers only after the server is done
            return arrays, 10, {}

        def ev(arrays, cfg):
            return 1.0, 10, {}

        good = [L.NumpyClient(port, honest, ev) for _ in range(2)]
        bad = {"greedy": L.NumpyClient(port, greedy, ev),
               "many_keys": L.NumpyClient(port, many_keys, ev),
               "long_key": L.NumpyClient(port, long_key, ev),
               "silent": L.NumpyClient(port, silent, ev)}
        for c in good + list(bad.values()):
            c.start()
        for c in good + [bad["greedy"], bad["many_keys"], bad["long_key"]]:
            c.done.wait(60)
        rc = srv.wait(60)
        t_end = time.time()
        release.set()
        bad["silent"].done.wait(10)
        log = srv.output()
        L.check("server_exit_0", rc == 0, "rc=%s\n%s" % (rc, log[-3000:]))
        for i, c in enumerate(good):
            L.check("honest%d_completes" % i, c.error is None and c.reconnect is not None,
                    c.error)

        def code(c):
            return c.error.code() if isinstance(c.error, grpc.RpcError) else None
        L.check("greedy_stays_connected", bad["greedy"].error is None and
                bad["greedy"].reconnect is not None, bad["greedy"].error)
        for k in ("many_keys", "long_key"):
            L.check(k + "_refused", code(bad[k]) == grpc.StatusCode.INVALID_ARGUMENT, bad[k].error)
        L.check("silent_deadline_exceeded",
                code(bad["silent"]) == grpc.StatusCode.DEADLINE_EXCEEDED and
                "--round-timeout auto" in bad["silent"].error.details(), bad["silent"].error)
        # auto: 10 x the slowest honest reply (~SLOW), not the floor (MIN)
        waited = t_end - t_fit.get("silent", t_end)
        L.check("silent_cut_after_10x_slowest", 10 * SLOW * 0.9 < waited < 10 * SLOW + 20,
                "waited %.1f s" % waited)
        slog = open(os.path.join(out, "server_log.log")).read()
        L.check("reasons_logged",
                "FitRes num_examples 2000000 is above the limit (--max-examples)" in slog and
                "more than 1024 distinct map keys" in slog and
                "map key of 257 bytes, over the limit of 256" in slog and
                "--max-metric-keys" in slog and
                "fit_round 1 received 2 results and 4 failures" in slog, slog[-4000:])
        L.check("auto_timeout_announced", "round_timeout=auto" in slog and
                "round timeout auto: a client gets 10 x the slowest reply" in slog, slog[:3000])
        w = np.load(weights)
        got = [w[k] for k in sorted(w.files, key=lambda s: int(s.split("_")[-1]))]
        want = [a + np.float32(1) for a in seen.get("init", [])]
        L.check("global_is_the_honest_average", len(got) == len(want) and
                all(np.array_equal(g, x) for g, x in zip(got, want)),
                [float(np.abs(g - x).max()) for g, x in zip(got, want)])
        rounds = [e for e in L.events(os.path.join(out, "events.jsonl")) if e["event"] == "round"]
        L.check("round_recorded", len(rounds) == 1 and rounds[0]["results"] == 2 and
                rounds[0]["failures"] == 4, rounds)
        srv.kill()
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
