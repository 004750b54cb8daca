#!/usr/bin/python3
"""test_rel_limits.py - the server's resource limits set from its command line
reach the transport (issue 7): --max-connections refuses the connection over
the limit, --max-header-list drops a client whose request headers are too
large; in both cases the well-behaved clients complete the round.
(--max-message and --max-examples: tests/test_rel_validation.py.)"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402
import numpy as np  # noqa: E402
import grpc  # noqa: E402

# one TCP connection per channel (grpc would share one between channels)
L.GRPC_OPTS = L.GRPC_OPTS + [("grpc.use_local_subchannel_pool", 1)]
pb, pbg = L.pb, L.pbg


def fit_slow(arrays, cfg):
    time.sleep(1.5)  # the round stays open while the extra connections arrive
    return [np.full(a.shape, 1.0, np.float32) for a in arrays], 10, {}


def fit_fast(arrays, cfg):
    return [np.full(a.shape, 3.0, np.float32) for a in arrays], 10, {}


def evaluate(arrays, cfg):
    return 0.5, 10, {}


def server(d, name, extra):
    out = os.path.join(d, name)
    srv, port = L.start_server(
        ["--rounds", "1", "--model", L.TINY_MODEL, "--min-available-clients", "2",
         "--min-fit-clients", "2", "--fraction-evaluate", "0", "--wait-clients", "30",
         "--round-timeout", "30", "--no-checkpoint", "--out", out] + extra, d, name)
    return srv, port, out


def round_ok(srv, out, tag):
    rc = srv.wait(60)
    ev = L.events(os.path.join(out, "events.jsonl"))
    rnd = [e for e in ev if e["event"] == "round"]
    L.check(tag + "_others_complete", rc == 0 and len(rnd) == 1 and rnd[0]["results"] == 2 and
            rnd[0]["failures"] == 0, (rc, rnd, srv.output()[-1500:]))
    return srv.output()


def wait_joined(srv, n, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if "fit_round 1: strategy sampled %d" % n in srv.output():
            return True
        time.sleep(0.05)
    return False


def main():
    with L.tmpdir() as d:
        # --max-connections 2: a third connection is refused
        srv, port, out = server(d, "conn", ["--max-connections", "2"])
        cs = [L.NumpyClient(port, fit_slow, evaluate), L.NumpyClient(port, fit_fast, evaluate)]
        for c in cs:
            c.start()
        L.check("conn_round_started", wait_joined(srv, 2), srv.output()[-1500:])
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        got, closed = b"", False
        t0 = time.time()
        try:
            while time.time() - t0 < 5:
                b = s.recv(4096)
                if not b:
                    closed = True
                    break
                got += b
        except (socket.timeout, ConnectionResetError):
            closed = True
        s.close()
        L.check("conn_over_limit_refused", closed, got[:64])
        log = round_ok(srv, out, "conn")
        L.check("conn_refusal_logged", "connection refused: too many connections" in log,
                log[-1500:])
        for c in cs:
            c.done.wait(10)

        # --max-header-list 2048: a client with 4 KB of metadata is dropped
        srv, port, out = server(d, "hdr", ["--max-header-list", "2048"])
        cs = [L.NumpyClient(port, fit_slow, evaluate), L.NumpyClient(port, fit_fast, evaluate)]
        for c in cs:
            c.start()
        L.check("hdr_round_started", wait_joined(srv, 2), srv.output()[-1500:])
        err = []

        def big_headers():
            ch = L.channel(port)
            try:
                call = pbg.FlowerServiceStub(ch).Join(iter(()), metadata=[("x-pad", "a" * 4000)],
                                                      timeout=10)
                for _ in call:
                    pass
                err.append("no error")
            except grpc.RpcError as e:
                err.append(e.code())
            finally:
                ch.close()
        t = threading.Thread(target=big_headers, daemon=True)
        t.start()
        t.join(15)
        L.check("hdr_over_limit_fails", err and err[0] != "no error", err)
        log = round_ok(srv, out, "hdr")
        L.check("hdr_reason_logged", "header list over the limit of 2048" in log, log[-1500:])
        for c in cs:
            c.done.wait(10)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
