#!/usr/bin/python3
"""test_agents_badinput.py - bad input never takes `petal server` down.
Against one server round: a TCP peer sending garbage bytes, an HTTP/2 peer
sending a truncated gRPC frame, and Join clients answering FitIns with an
undecodable protobuf, a FitRes whose NPY header is broken, a message over
the server's --max-message, and one too late for --round-timeout. Each
offending stream gets an error status (or its connection is closed) with a
logged reason; the two well-behaved clients' round completes, and the
server ends normally (exit 0) with 2 results and 4 failures recorded."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import test_agents_lib as L  # noqa: E402
from test_agents_lib import grpc, pb  # noqa: E402


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def drain(sock, timeout=5):
    """Read until the peer closes; returns (bytes read, closed?)."""
    sock.settimeout(timeout)
    got = b""
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            b = sock.recv(65536)
            if not b:
                return got, True
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    return got, False


def garbage_peer(port, result):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\x16\x03\x01 this is not HTTP/2 at all \xff\xfe\x00" * 20)
    got, closed = drain(s)
    result["garbage"] = closed
    s.close()


def truncated_frame_peer(port, result):
    s = socket.create_connection(("127.0.0.1", port))
    hdrs = b"".join(hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", "/flwr.proto.FlowerService/Join"),
        (":authority", "127.0.0.1:%d" % port), ("content-type", "application/grpc"),
        ("te", "trailers")])
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") +
              frame(1, 0x4, 1, hdrs) +
              frame(0, 0x1, 1, b"\x00\x00\x00\x00\x64" + b"abc"))  # 100 announced, 3 sent
    got, closed = drain(s, 3)
    # the stream must be answered with an error: RST_STREAM (type 3), GOAWAY (7),
    # or trailers carrying a non-zero grpc-status; or the connection closed
    types, off = set(), 0
    while off + 9 <= len(got):
        ln = int.from_bytes(got[off:off + 3], "big")
        types.add(got[off + 3])
        off += 9 + ln
    result["truncated"] = closed or 3 in types or 7 in types or 1 in types
    s.close()


def main():
    with L.tmpdir() as d:
        out = os.path.join(d, "out")
        srv, port = L.start_server(
            ["--rounds", "1", "--model", L.TINY_MODEL, "--min-fit-clients", "2",
             "--min-available-clients", "6", "--fraction-evaluate", "0", "--wait-clients", "60",
             "--round-timeout", "3", "--max-message", "1000000", "--out", out], d)
        res = {}
        for fn in (garbage_peer, truncated_frame_peer):
            t = threading.Thread(target=fn, args=(port, res))
            t.start()
            t.join(10)
        L.check("garbage_connection_closed", res.get("garbage") is True)
        L.check("truncated_frame_answered", res.get("truncated") is True)

        def good_fit(arrays, cfg):
            return [a + np.float32(1) for a in arrays], 10, {}

        def slow_fit(arrays, cfg):
            time.sleep(5)
            return arrays, 10, {}

        def ev(arrays, cfg):
            return 1.0, 10, {}

        def undecodable(arrays, cfg):
            return b"\x22\xff\xff\xff\x7f\x0a"  # FitRes claiming 268 MB

        def bad_npy(arrays, cfg):
            m = pb.ClientMessage()
            t = [L.npy(a) for a in arrays]
            t[0] = b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',}" + t[0][26:]
            m.fit_res.parameters.tensors.extend(t)
            m.fit_res.num_examples = 10
            return m.SerializeToString()

        def too_big(arrays, cfg):
            m = pb.ClientMessage()
            m.fit_res.parameters.tensors.append(L.npy(np.zeros(600000, np.float32)))
            m.fit_res.num_examples = 10
            return m.SerializeToString()

        good = [L.NumpyClient(port, good_fit, ev) for _ in range(2)]
        bad = {"undecodable": L.NumpyClient(port, None, ev, raw_fit=undecodable),
               "bad_npy": L.NumpyClient(port, None, ev, raw_fit=bad_npy),
               "over_limit": L.NumpyClient(port, None, ev, raw_fit=too_big),
               "late": L.NumpyClient(port, slow_fit, ev)}
        for c in good + list(bad.values()):
            c.start()
        for c in good + list(bad.values()):
            c.done.wait(60)
        rc = srv.wait(60)
        log = srv.output()
        L.check("server_survives_exit_0", rc == 0, "rc=%s\n%s" % (rc, log[-3000:]))
        for i, c in enumerate(good):
            L.check("good_client%d_completes" % i, c.error is None and c.reconnect is not None,
                    c.error)

        def code(c):
            return c.error.code() if isinstance(c.error, grpc.RpcError) else None
        L.check("undecodable_gets_error_status",
                code(bad["undecodable"]) == grpc.StatusCode.INVALID_ARGUMENT,
                bad["undecodable"].error)
        L.check("bad_npy_gets_error_status",
                code(bad["bad_npy"]) == grpc.StatusCode.INVALID_ARGUMENT, bad["bad_npy"].error)
        L.check("over_limit_stream_ended", code(bad["over_limit"]) is not None and
                bad["over_limit"].reconnect is None, bad["over_limit"].error)
        L.check("late_gets_deadline_exceeded",
                code(bad["late"]) == grpc.StatusCode.DEADLINE_EXCEEDED and
                "Timeout of 3sec was exceeded." in bad["late"].error.details(),
                bad["late"].error)
        slog = open(os.path.join(out, "server_log.log")).read()
        L.check("reasons_logged", "bad ClientMessage: undecodable protobuf" in slog and
                "bad FitRes parameters: tensor 0: npy" in slog and
                "Timeout of 3sec was exceeded." in slog and
                "fit_round 1 received 2 results and 4 failures" in slog, slog[-3000:])
        rounds = [e for e in L.events(os.path.join(out, "events.jsonl"))
                  if e["event"] == "round"]
        L.check("round_completes_with_good_results", len(rounds) == 1 and
                rounds[0]["results"] == 2 and rounds[0]["failures"] == 4 and
                rounds[0]["clients_sampled"] == 6, rounds)
        fails = [e for e in L.events(os.path.join(out, "events.jsonl"))
                 if e["event"] == "failure"]
        L.check("failure_events", len(fails) == 4 and all(e["reason"] for e in fails), fails)
        srv.kill()
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
