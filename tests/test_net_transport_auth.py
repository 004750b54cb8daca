#!/usr/bin/python3
"""Interop of Petal's client authentication with Debian's python3-grpcio.

Certificates and the token are made by Petal's own generator
(pnet_tls_make_run_dir, through `test_net_transport_peer certs DIR`), as the
launcher makes them for a run; grpcio must accept them.

(1) Python clients -> Petal server with mutual TLS + token required: a client
    with the run's client certificate and `authorization: Bearer <token>`
    metadata exchanges messages; a wrong or missing token gets
    UNAUTHENTICATED; no client certificate, or one from another CA, is refused
    in the handshake; the good client is unaffected throughout.
(2) Petal client -> Python grpcio server requiring client certificates and
    checking the token metadata: the peer's client checks pass.
"""
import hashlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
import grpc  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
PEER = os.path.join(BUILD, "tests", "test_net_transport_peer")
PATH = "/flwr.proto.FlowerService/Join"
MAXLEN = 64 << 20
OPTS = [("grpc.max_send_message_length", MAXLEN), ("grpc.max_receive_message_length", MAXLEN),
        ("grpc.use_local_subchannel_pool", 1)]
failures = 0


def report(name, ok, why=""):
    global failures
    print(("PASS: " if ok else "FAIL: ") + name + ("" if ok else " -- " + str(why)), flush=True)
    if not ok:
        failures += 1


def read(p):
    with open(p, "rb") as f:
        return f.read()


class PetalServer:
    def __init__(self, *extra):
        self.p = subprocess.Popen([PEER, "server", *extra], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError("peer server did not start: " + line)
        self.port = int(line.split()[1])
        self.lines, self.errs = [], []
        self.t = threading.Thread(target=self._pump, args=(self.p.stdout, self.lines),
                                  daemon=True)
        self.t2 = threading.Thread(target=self._pump, args=(self.p.stderr, self.errs),
                                   daemon=True)
        self.t.start()
        self.t2.start()

    @staticmethod
    def _pump(f, out):
        for line in f:
            out.append(line.strip())

    def stop(self):
        self.p.stdin.close()
        rc = self.p.wait(timeout=20)
        self.t.join(timeout=5)
        self.t2.join(timeout=5)
        return rc


def channel(port, ca, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    return grpc.secure_channel("localhost:%d" % port, creds, options=OPTS)


def session(port, ca, cert, key, token, sizes, seed):
    """Echo messages on one Join stream; None on success, else (code, text)."""
    ch = channel(port, ca, cert, key)
    q = queue.Queue()
    try:
        md = [("authorization", "Bearer " + token)] if token else None
        call = ch.stream_stream(PATH, request_serializer=None, response_deserializer=None)
        resp = call(iter(q.get, None), metadata=md, timeout=30)
        for i, n in enumerate(sizes):
            data = (hashlib.sha256(b"%d" % (seed * 10 + i)).digest() * (n // 32 + 1))[:n]
            q.put(data)
            if next(resp) != data:
                return ("MISMATCH", "echo of %d bytes differs" % n)
        q.put(None)
        if list(resp):
            return ("EXTRA", "unexpected messages")
        return None
    except grpc.RpcError as e:
        return (e.code(), e.details())
    finally:
        q.put(None)
        ch.close()


def test_python_clients(run, other):
    ca = read(os.path.join(run, "ca.pem"))
    cert = read(os.path.join(run, "client.pem"))
    key = read(os.path.join(run, "client.key"))
    token = read(os.path.join(run, "token")).decode().strip()
    srv = PetalServer("--tls", os.path.join(run, "server.pem"), os.path.join(run, "server.key"),
                      "--tls-client-ca", os.path.join(run, "ca.pem"),
                      "--auth-token-file", os.path.join(run, "token"))
    try:
        # a good client holds its stream open across all the refusals
        hold_q = queue.Queue()
        ch = channel(srv.port, ca, cert, key)
        call = ch.stream_stream(PATH, request_serializer=None, response_deserializer=None)
        resp = call(iter(hold_q.get, None), metadata=[("authorization", "Bearer " + token)],
                    timeout=60)
        hold_q.put(b"first")
        first_ok = next(resp) == b"first"

        err = session(srv.port, ca, cert, key, token, [0, 10, 1_000_000, 5], 1)
        report("py_mtls_token_client_joins", err is None, err)

        err = session(srv.port, ca, cert, key, token[:-1] + ("0" if token[-1] != "0" else "1"),
                      [10], 2)
        report("py_wrong_token_unauthenticated",
               err is not None and err[0] == grpc.StatusCode.UNAUTHENTICATED, err)
        err = session(srv.port, ca, cert, key, None, [10], 3)
        report("py_missing_token_unauthenticated",
               err is not None and err[0] == grpc.StatusCode.UNAUTHENTICATED, err)
        err = session(srv.port, ca, None, None, token, [10], 4)
        report("py_no_client_cert_refused",
               err is not None and err[0] == grpc.StatusCode.UNAVAILABLE, err)
        err = session(srv.port, ca, read(os.path.join(other, "client.pem")),
                      read(os.path.join(other, "client.key")), token, [10], 5)
        report("py_other_ca_client_cert_refused",
               err is not None and err[0] == grpc.StatusCode.UNAVAILABLE, err)

        hold_q.put(b"second")
        second_ok = next(resp) == b"second"
        hold_q.put(None)
        rest = list(resp)
        ch.close()
        report("py_good_client_unaffected", first_ok and second_ok and not rest,
               (first_ok, second_ok, rest))
    finally:
        rc = srv.stop()
        report("petal_auth_server_exit", rc == 0, "exit %s" % rc)
    log = "\n".join(srv.errs)
    report("refusals_logged",
           "refused: wrong authorization token" in log and "refused: no authorization token" in log
           and "peer did not return a certificate" in log and "certificate verify failed" in log
           and token not in log, log[-2000:])


def test_petal_client(run):
    token = read(os.path.join(run, "token")).decode().strip()
    seen = []

    def join_handler(request_iterator, context):
        md = dict(context.invocation_metadata())
        seen.append(md.get("authorization") == "Bearer " + token)
        if md.get("authorization") != "Bearer " + token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        yield b"hello"
        for m in request_iterator:
            if m.startswith(b"CMD:abort"):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "bye 100% \u00fc\n")
            yield m

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTS)
    handler = grpc.method_handlers_generic_handler(
        "flwr.proto.FlowerService", {"Join": grpc.stream_stream_rpc_method_handler(join_handler)})
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(read(os.path.join(run, "server.key")), read(os.path.join(run, "server.pem")))],
        root_certificates=read(os.path.join(run, "ca.pem")), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    global failures
    try:
        cmd = [PEER, "client", "127.0.0.1:%d" % port, "--tls-ca", os.path.join(run, "ca.pem"),
               "--server-name", "localhost", "--tls-cert", os.path.join(run, "client.pem"),
               "--tls-key", os.path.join(run, "client.key"),
               "--auth-token-file", os.path.join(run, "token")]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=300)
        sys.stdout.write(r.stdout)
        sys.stdout.flush()
        if r.returncode != 0 and "FAIL:" not in r.stdout:
            report("petal_client_mtls_token", False, "exit %d" % r.returncode)
        failures += r.stdout.count("FAIL:")
        report("py_server_saw_token", len(seen) > 0 and all(seen), seen)
    finally:
        server.stop(grace=1)


def main():
    if not os.access(PEER, os.X_OK):
        print("FAIL: test_net_transport_auth_py -- %s not built" % PEER)
        return 1
    with tempfile.TemporaryDirectory() as d:
        run, other = os.path.join(d, "run"), os.path.join(d, "other")
        for p in (run, other):
            r = subprocess.run([PEER, "certs", p], stdout=subprocess.PIPE, text=True)
            if r.returncode != 0:
                report("petal_certs", False, r.stdout)
                return 1
        test_python_clients(run, other)
        test_petal_client(run)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
