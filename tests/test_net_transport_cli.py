#!/usr/bin/python3
"""The authentication and limit options of `petal server` / `petal client`
reach the transport (issue 7), end to end with real processes on 127.0.0.1:

(1) A server with mutual TLS and a token (certificates and token made by
    Petal's generator, as the launcher does): two Petal clients (token from a
    file, token from PETAL_AUTH_TOKEN) complete a round; a client with a wrong
    token and one without a client certificate are refused (logged by the
    server, the wrong-token client exits with an error naming the refusal);
    the token never appears in the logs.
(2) --handshake-timeout cuts a silent connection; --max-total-buffer ends a
    stream whose message would pass the server-wide receive cap; the good
    clients' round completes.
"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

PEER = os.path.join(L.BUILD, "tests", "test_net_transport_peer")


def petal_client(port, d, name, i, extra, env=None):
    e = dict(os.environ)
    e.pop("PETAL_AUTH_TOKEN", None)
    e.update(env or {})
    log = open(os.path.join(d, name + ".log"), "wb")
    p = subprocess.Popen([L.PETAL, "client", "--server", "127.0.0.1:%d" % port, "--model",
                          L.TINY_MODEL, "--dataset", "fashion-mnist", "--partition",
                          "%d/2" % i, "--limit", "400", "--eval-limit", "100",
                          "--connect-timeout", "30"] + extra,
                         stdout=log, stderr=subprocess.STDOUT, env=e)
    p.logpath = log.name
    return p


def text(p):
    return open(p.logpath, errors="replace").read()


def round_done(srv, out, tag, results=2):
    rc = srv.wait(90)
    ev = L.events(os.path.join(out, "events.jsonl"))
    rnd = [e for e in ev if e["event"] == "round"]
    L.check(tag + "_round_completes", rc == 0 and len(rnd) == 1 and rnd[0]["results"] == results,
            (rc, rnd, srv.output()[-2000:]))
    return srv.output()


def auth_run(d, run):
    f = {k: os.path.join(run, k) for k in ("ca.pem", "server.pem", "server.key", "client.pem",
                                           "client.key", "token")}
    token = open(f["token"]).read().strip()
    out = os.path.join(d, "auth")
    env = dict(os.environ)
    srv, port = L.start_server(
        ["--rounds", "1", "--model", L.TINY_MODEL, "--min-available-clients", "2",
         "--min-fit-clients", "2", "--fraction-evaluate", "0", "--wait-clients", "60",
         "--round-timeout", "60", "--no-checkpoint", "--out", out,
         "--tls-cert", f["server.pem"], "--tls-key", f["server.key"],
         "--tls-client-ca", f["ca.pem"], "--auth-token-file", f["token"]], d, "auth_server")
    del env
    tls = ["--tls-ca", f["ca.pem"], "--server-name", "localhost"]
    mine = ["--tls-cert", f["client.pem"], "--tls-key", f["client.key"]]
    # intruders first, so they are refused while the round waits for clients
    wrong = petal_client(port, d, "wrong", 0, tls + mine,
                         {"PETAL_AUTH_TOKEN": "x" * 20 + token[20:-1] + "Q"})
    nocert = petal_client(port, d, "nocert", 1, tls + ["--auth-token-file", f["token"]])
    rc_wrong, rc_nocert = wrong.wait(60), nocert.wait(60)
    good = [petal_client(port, d, "good0", 0, tls + mine + ["--auth-token-file", f["token"]]),
            petal_client(port, d, "good1", 1, tls + mine, {"PETAL_AUTH_TOKEN": token})]
    log = round_done(srv, out, "auth")
    rcs = [p.wait(60) for p in good]
    L.check("auth_good_clients_exit_0", rcs == [0, 0],
            (rcs, [text(p)[-800:] for p in good]))
    L.check("auth_wrong_token_client_fails", rc_wrong not in (0, None) and
            "refused this client" in text(wrong), (rc_wrong, text(wrong)[-800:]))
    L.check("auth_no_cert_client_fails", rc_nocert not in (0, None), (rc_nocert,
                                                                       text(nocert)[-800:]))
    L.check("auth_refusals_logged", "refused: wrong authorization token" in log and
            "peer did not return a certificate" in log, log[-2000:])
    logs = log + "".join(text(p) for p in good + [wrong, nocert])
    L.check("auth_token_not_logged", token not in logs and token[20:-1] not in logs)


def limits_run(d):
    out = os.path.join(d, "lim")
    srv, port = L.start_server(
        ["--rounds", "1", "--model", L.TINY_MODEL, "--min-available-clients", "2",
         "--min-fit-clients", "2", "--fraction-evaluate", "0", "--wait-clients", "60",
         "--round-timeout", "60", "--no-checkpoint", "--out", out,
         "--handshake-timeout", "0.5", "--max-total-buffer", "300000",
         "--max-header-bytes", "8192", "--max-client-buffer", "400000"], d, "lim_server")
    # a silent connection is cut after the handshake timeout
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.time()
    closed = False
    try:
        while not closed:  # the server's SETTINGS come first, then EOF
            closed = s.recv(4096) == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    dt = time.time() - t0
    s.close()
    L.check("lim_silent_connection_cut", closed and 0.3 < dt < 5, (closed, dt))
    # a message over the server-wide receive cap ends that stream
    res = []

    def big():
        ch = L.channel(port)
        try:
            call = ch.stream_stream("/flwr.proto.FlowerService/Join",
                                    request_serializer=None, response_deserializer=None)
            for _ in call(iter([b"\x00" * 1_000_000]), timeout=20):
                pass
            res.append("no error")
        except grpc.RpcError as e:
            res.append(e.code())
        finally:
            ch.close()
    t = threading.Thread(target=big, daemon=True)
    t.start()
    t.join(25)
    L.check("lim_total_buffer_enforced", res == [grpc.StatusCode.RESOURCE_EXHAUSTED], res)
    cs = [petal_client(port, d, "lim%d" % i, i, []) for i in range(2)]
    log = round_done(srv, out, "lim")
    rcs = [p.wait(60) for p in cs]
    L.check("lim_good_clients_exit_0", rcs == [0, 0], rcs)
    L.check("lim_reasons_logged", "no HTTP/2 preface within 0.5 s" in log and
            "receive buffer cap of 300000" in log, log[-2000:])


def main():
    np.seterr(all="ignore")
    with L.tmpdir() as d:
        run = os.path.join(d, "run")
        r = subprocess.run([PEER, "certs", run], stdout=subprocess.PIPE, text=True)
        if r.returncode:
            L.check("certs", False, r.stdout)
            return 1
        auth_run(d, run)
        limits_run(d)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
