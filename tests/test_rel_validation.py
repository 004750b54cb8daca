#!/usr/bin/python3
"""test_rel_validation.py - update validation (issue 7).

Two good Flower-protocol clients (Debian's python3-grpcio) return constant
weights 1.0 (num_examples 10) and 3.0 (30); one bad client per kind returns
NaN, +Inf, too few tensors, too many tensors, a wrong shape, int64 ('<i8')
and uint8 ('|u1') tensors, num_examples 0, -5, 2^41 and 5000 (over
--max-examples 1000). Every bad update is rejected with a logged reason
naming the client, counted as a failure and never aggregated: the new global
(--save-weights) is exactly the weighted average of the good ones, 2.5.
A second run sends a message over --max-message (the transport limit set
from the server's CLI): that client fails, the others complete."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402
import numpy as np  # noqa: E402

pb = L.pb


def fit_fn(kind):
    def fit(arrays, cfg):
        good = [np.full(a.shape, 1.0, np.float32) for a in arrays]
        n = 10
        if kind == "good3":
            good = [np.full(a.shape, 3.0, np.float32) for a in arrays]
            n = 30
        elif kind == "nan":
            good[2].reshape(-1)[17] = np.nan
        elif kind == "inf":
            good[3].reshape(-1)[0] = np.inf
        elif kind == "few":
            good = good[:-1]
        elif kind == "many":
            good = good + [np.zeros(3, np.float32)]
        elif kind == "shape":
            good[2] = good[2].reshape(10, 676)
        elif kind == "i8":
            good[1] = np.ones(good[1].shape, np.int64)
        elif kind == "u1":
            good[0] = np.ones(good[0].shape, np.uint8)
        elif kind == "n0":
            n = 0
        elif kind == "nneg":
            n = -5
        elif kind == "nhuge":
            n = 1 << 41
        elif kind == "ncap":
            n = 5000
        return good, n, {}
    return fit


def evaluate(arrays, cfg):
    return 0.5, 10, {}


BAD = {"nan": "non-finite", "inf": "non-finite", "few": "3 tensors", "many": "5 tensors",
       "shape": "shape (10, 676), the model's (676, 10)", "i8": "int64", "u1": "'|u1'",
       "n0": "num_examples 0 is not positive",
       "nneg": "num_examples -5", "nhuge": "num_examples 2199023255552",
       "ncap": "num_examples 5000 is above the limit"}


def run(d, kinds, extra, name):
    w = os.path.join(d, name + ".npz")
    out = os.path.join(d, name)
    n = len(kinds)
    srv, port = L.start_server(
        ["--rounds", "1", "--model", L.TINY_MODEL, "--min-available-clients", str(n),
         "--min-fit-clients", str(n), "--fraction-evaluate", "0", "--wait-clients", "60",
         "--round-timeout", "30", "--save-weights", w, "--out", out, "--no-checkpoint",
         "--strategy-opt", "accumulator=double"] + extra,
        d, name)
    cs = {k: L.NumpyClient(port, fit_fn(k), evaluate) for k in kinds}
    for c in cs.values():
        c.start()
    rc = srv.wait(60)
    for c in cs.values():
        c.done.wait(20)
    log = srv.output()
    ev = L.events(os.path.join(out, "events.jsonl"))
    return rc, log, ev, w, cs


def main():
    with L.tmpdir() as d:
        kinds = ["good1", "good3"] + list(BAD)
        rc, log, ev, w, cs = run(d, kinds, ["--max-examples", "1000"], "val")
        L.check("validation_server_exit_0", rc == 0, log[-3000:])
        rnd = [e for e in ev if e["event"] == "round"]
        L.check("validation_counts", len(rnd) == 1 and rnd[0]["results"] == 2 and
                rnd[0]["failures"] == len(BAD), rnd)
        fails = [e for e in ev if e["event"] == "failure"]
        L.check("validation_failure_events", len(fails) == len(BAD) and
                all(e["client"].startswith("ipv4:127.0.0.1:") and e["phase"] == "fit"
                    for e in fails), fails)
        rejected = [ln for ln in log.splitlines() if "rejected:" in ln]
        for kind, why in BAD.items():
            L.check("validation_reason_" + kind, any(why in ln for ln in rejected),
                    "want %r in\n%s" % (why, "\n".join(rejected)))
        L.check("validation_names_client", len(rejected) == len(BAD) and all(
            "update of client ipv4:127.0.0.1:" in ln for ln in rejected), "\n".join(rejected))
        if os.path.exists(w):
            z = np.load(w)
            arrs = [z["arr_%d" % i] for i in range(len(z.files))]
            L.check("validation_aggregate_is_good_average",
                    len(arrs) == 4 and all(np.all(a == np.float32(2.5)) for a in arrs),
                    [np.unique(a)[:5] for a in arrs])
        else:
            L.check("validation_aggregate_is_good_average", False, "no weights saved")
        # the clients whose update was rejected stay connected and get the goodbye
        L.check("validation_rejected_clients_stay", all(
            c.reconnect is not None for k, c in cs.items() if k not in ("few", "many")),
            {k: (c.reconnect is not None, str(c.error)[:80]) for k, c in cs.items()})

        # the same with --ordered-aggregation (updates folded at the round's end)
        rc, log, ev, w, cs = run(d, kinds, ["--max-examples", "1000", "--ordered-aggregation"],
                                 "ord")
        rnd = [e for e in ev if e["event"] == "round"]
        z = np.load(w) if os.path.exists(w) else None
        L.check("ordered_validation", rc == 0 and len(rnd) == 1 and rnd[0]["results"] == 2 and
                rnd[0]["failures"] == len(BAD) and z is not None and
                all(np.all(z[k] == np.float32(2.5)) for k in z.files) and
                sum("rejected:" in ln for ln in log.splitlines()) == len(BAD), (rnd, log[-1500:]))
        for c in cs.values():
            c.done.wait(20)

        # evaluate results: NaN loss, negative or absurd num_examples are rejected too
        def ev_bad(kind):
            def f(arrays, cfg):
                return {"nan": (float("nan"), 10, {}), "neg": (0.5, -3, {}),
                        "huge": (0.5, 1 << 41, {})}.get(kind, (0.25, 10, {}))
            return f
        out3 = os.path.join(d, "ev")
        srv, port = L.start_server(
            ["--rounds", "1", "--model", L.TINY_MODEL, "--min-available-clients", "4",
             "--min-fit-clients", "4", "--min-evaluate-clients", "4", "--wait-clients", "60",
             "--round-timeout", "30", "--out", out3, "--no-checkpoint", "--strategy-opt",
             "accumulator=double"], d, "ev")
        cs = [L.NumpyClient(port, fit_fn("good1"), ev_bad(k)) for k in ("ok", "nan", "neg",
                                                                          "huge")]
        for c in cs:
            c.start()
        rc = srv.wait(60)
        ev = L.events(os.path.join(out3, "events.jsonl"))
        rnd = [e for e in ev if e["event"] == "round"]
        efails = [e for e in ev if e["event"] == "failure" and e["phase"] == "evaluate"]
        L.check("eval_validation", rc == 0 and len(rnd) == 1 and rnd[0]["eval_results"] == 1 and
                rnd[0]["eval_failures"] == 3 and rnd[0]["loss_distributed"] == 0.25 and
                len(efails) == 3, (rnd, efails))
        for c in cs:
            c.done.wait(20)

        # over --max-message: the transport refuses that client's message
        def big(arrays, cfg):
            return [a + np.float32(1) for a in arrays] + [np.zeros(40000, np.float32)], 10, {}
        srv_args = ["--max-message", "100000"]
        w2 = os.path.join(d, "lim2.npz")
        out2 = os.path.join(d, "lim2")
        srv, port = L.start_server(
            ["--rounds", "1", "--model", L.TINY_MODEL, "--min-available-clients", "3",
             "--min-fit-clients", "3", "--fraction-evaluate", "0", "--wait-clients", "60",
             "--round-timeout", "30", "--save-weights", w2, "--out", out2,
             "--no-checkpoint", "--strategy-opt", "accumulator=double"] + srv_args, d, "lim2")
        cs = [L.NumpyClient(port, fit_fn("good1"), evaluate),
              L.NumpyClient(port, fit_fn("good3"), evaluate),
              L.NumpyClient(port, big, evaluate)]
        for c in cs:
            c.start()
        rc = srv.wait(60)
        log = srv.output()
        ev = L.events(os.path.join(out2, "events.jsonl"))
        rnd = [e for e in ev if e["event"] == "round"]
        L.check("limit_round_completes", rc == 0 and len(rnd) == 1 and
                rnd[0]["results"] == 2 and rnd[0]["failures"] == 1, (rnd, log[-2000:]))
        L.check("limit_reason_logged", "limit" in " ".join(
            ln for ln in log.splitlines() if "failed" in ln), log[-2000:])
        if os.path.exists(w2):
            z = np.load(w2)
            L.check("limit_aggregate_is_good_average", all(
                np.all(z[k] == np.float32(2.5)) for k in z.files),
                [np.unique(z[k])[:4] for k in z.files])
        for c in cs:
            c.done.wait(20)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
