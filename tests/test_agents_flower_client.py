#!/usr/bin/python3
"""test_agents_flower_client.py - Python clients playing Flower's NumPy
client (python3-grpcio, stubs from net/proto/transport.proto, tensors via
numpy's own np.save) join `petal server` for 2 rounds, over h2c and TLS.
Checks: FitIns/EvaluateIns tensors are exactly np.save's bytes; what the
clients return comes back bit-exactly in the next instructions (FedAvg of
identical updates, one client sending float64); the final ReconnectIns has
seconds unset; both goodbye styles (half-close, cancel) are accepted; the
server's history and events are right; the server exits 0."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import test_agents_lib as L  # noqa: E402


def run(tag, ca=None, cert=None, key=None):
    with L.tmpdir() as d:
        out = os.path.join(d, "out")
        args = ["--rounds", "2", "--model", L.TINY_MODEL, "--min-fit-clients", "2",
                "--min-available-clients", "2", "--min-evaluate-clients", "2",
                "--wait-clients", "60", "--round-timeout", "60", "--out", out,
                "--epochs", "3", "--batch-size", "16", "--lr", "0.01"]
        if cert:
            args += ["--tls-cert", cert, "--tls-key", key]
        srv, port = L.start_server(args, d)
        returned = {}

        def fit_a(arrays, cfg):
            new = [(a * np.float32(0.5) + np.float32(0.25)).astype(np.float32) for a in arrays]
            returned.setdefault("a", []).append(new)
            return new, 100, {"train_loss": 0.5}

        def fit_b(arrays, cfg):  # same values, sent as float64 (like DP strategies do)
            new = [(a * np.float32(0.5) + np.float32(0.25)).astype(np.float32).astype(np.float64)
                   for a in arrays]
            return new, 300, {"train_loss": 1.5}

        def ev_a(arrays, cfg):
            return 0.5, 100, {"accuracy": 0.25}

        def ev_b(arrays, cfg):
            return 1.5, 300, {"accuracy": 0.75}

        a = L.NumpyClient(port, fit_a, ev_a, ca=ca, goodbye="halfclose")
        b = L.NumpyClient(port, fit_b, ev_b, ca=ca, goodbye="cancel")
        a.start()
        b.start()
        a.done.wait(120)
        b.done.wait(120)
        rc = srv.wait(60)
        log = srv.output()
        L.check("%s_server_exit_0" % tag, rc == 0, "rc=%s\n%s" % (rc, log[-3000:]))
        L.check("%s_clients_ok" % tag, a.error is None and b.error is None,
                "%r %r" % (a.error, b.error))
        kinds = [k for k, _ in a.received]
        L.check("%s_sequence" % tag, kinds == ["fit_ins", "evaluate_ins"] * 2 + ["reconnect_ins"],
                kinds)
        L.check("%s_reconnect_seconds_unset" % tag,
                a.reconnect is not None and a.reconnect.seconds == 0 and
                a.received[-1][1].SerializeToString() == b"\x0a\x00", a.reconnect)
        # every tensor the server sent is exactly what np.save writes
        exact = True
        for _, m in a.received[:-1]:
            p = m.fit_ins.parameters if m.HasField("fit_ins") else m.evaluate_ins.parameters
            exact &= p.tensor_type == "numpy.ndarray" and len(p.tensors) == len(L.TINY_SHAPES)
            for t in p.tensors:
                arr = L.load(t)
                exact &= arr.dtype == np.float32 and L.npy(arr) == t
        L.check("%s_server_tensors_are_np_save_bytes" % tag, exact)
        fit_cfg = a.received[0][1].fit_ins.config
        L.check("%s_fit_config" % tag,
                fit_cfg["epochs"].sint64 == 3 and fit_cfg["batch_size"].sint64 == 16 and
                fit_cfg["server_round"].sint64 == 1 and
                abs(fit_cfg["lr"].double - 0.01) < 1e-15, fit_cfg)
        # round 1's update comes back bit-exactly as the global of the evaluate and of round 2
        if len(a.received) >= 3 and returned.get("a"):
            want = [L.npy(x) for x in returned["a"][0]]
            ev = list(a.received[1][1].evaluate_ins.parameters.tensors)
            fit2 = list(a.received[2][1].fit_ins.parameters.tensors)
            L.check("%s_round_trip_bit_exact" % tag, ev == want and fit2 == want)
        else:
            L.check("%s_round_trip_bit_exact" % tag, False, "missing messages")
        slog = open(os.path.join(out, "server_log.log")).read()
        L.check("%s_log_lines" % tag,
                "fit_round 1 received 2 results and 0 failures" in slog and
                "app_fit: losses_distributed [(1, 1.25), (2, 1.25)]" in slog and
                "FL finished in" in slog and
                "metrics_distributed {'accuracy': [(1, 0.625), (2, 0.625)]}" in slog,
                slog[-1500:])
        ev = [e for e in L.events(os.path.join(out, "events.jsonl")) if e["event"] == "round"]
        ok = len(ev) == 2 and all(e["results"] == 2 and e["failures"] == 0 and
                                  e["clients_sampled"] == 2 and
                                  abs(e["loss_distributed"] - 1.25) < 1e-12 and
                                  e["bytes_sent"] > 0 and e["bytes_received"] > 0 for e in ev)
        L.check("%s_round_events" % tag, ok, ev)
        srv.kill()


def run_init_from_client(tag, shapes, expect_ok):
    """--init-from-client: one client's GetParametersRes becomes the global."""
    with L.tmpdir() as d:
        out = os.path.join(d, "out")
        srv, port = L.start_server(
            ["--rounds", "1", "--model", L.TINY_MODEL, "--init-from-client",
             "--min-fit-clients", "2", "--min-available-clients", "2", "--fraction-evaluate", "0",
             "--wait-clients", "60", "--round-timeout", "60", "--out", out], d)
        rng = np.random.default_rng(11)
        init = [rng.standard_normal(s).astype(np.float32) for s in shapes]

        def fit(arrays, cfg):
            return arrays, 10, {}

        def ev(arrays, cfg):
            return 1.0, 10, {}
        cs = [L.NumpyClient(port, fit, ev, get_parameters=lambda: init) for _ in range(2)]
        for c in cs:
            c.start()
        for c in cs:
            c.done.wait(60)
        rc = srv.wait(60)
        slog = open(os.path.join(out, "server_log.log")).read()
        asked = [c for c in cs if c.received and c.received[0][0] == "get_parameters_ins"]
        if expect_ok:
            fits = [m for c in cs for k, m in c.received if k == "fit_ins"]
            want = [L.npy(a) for a in init]
            L.check("%s_server_exit_0" % tag, rc == 0, srv.output()[-2000:])
            L.check("%s_one_client_asked" % tag, len(asked) == 1, [c.received for c in cs])
            L.check("%s_global_is_clients_parameters" % tag, len(fits) == 2 and all(
                list(m.fit_ins.parameters.tensors) == want for m in fits))
            L.check("%s_log" % tag, "Requesting initial parameters from one random client" in slog
                    and "Received initial parameters from one random client" in slog, slog[-800:])
        else:
            L.check("%s_server_exit_1_clear_error" % tag, rc == 1 and
                    "do not fit the server's model" in srv.output() and
                    "tensor 2" in srv.output(), srv.output()[-1500:])
            L.check("%s_clients_told_to_leave" % tag, all(
                c.reconnect is not None and c.error is None for c in cs),
                [(c.error, c.reconnect) for c in cs])
        srv.kill()


def main():
    run_init_from_client("init_from_client", L.TINY_SHAPES, True)
    run_init_from_client("init_from_client_mismatch",
                         L.TINY_SHAPES[:2] + [(675, 10)] + L.TINY_SHAPES[3:], False)
    run("h2c")
    with L.tmpdir() as d:
        c = L.make_certs(d)
        run("tls", ca=c["ca.pem"], cert=c["server.pem"], key=c["server.key"])
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
