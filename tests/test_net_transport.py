#!/usr/bin/python3
"""Interop tests of Petal's gRPC transport against Debian's python3-grpcio.

(1) Python clients <-> Petal server (build/tests/test_net_transport_peer server):
    many messages both ways incl. 30 MB and empty ones, sha256-compared, several
    concurrent clients, an error status, a client cancel (Flower's goodbye).
(2) Python server <-> Petal client (the peer's client mode prints PASS/FAIL).
(3) Both over TLS with a CA + server certificate made here with openssl.
Generic raw-bytes handlers: no generated stubs.
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
MAXLEN = 536_870_912
OPTS = [("grpc.max_send_message_length", MAXLEN), ("grpc.max_receive_message_length", MAXLEN)]
failures = 0


def report(name, ok, why=""):
    global failures
    print(("PASS: " if ok else "FAIL: ") + name + ("" if ok else " -- " + str(why)), flush=True)
    if not ok:
        failures += 1


def payload(n, seed):
    if n == 0:
        return b""
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (n // 32 + 1))[:n]


class PetalServer:
    def __init__(self, *extra):
        self.p = subprocess.Popen([PEER, "server", *extra], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError("peer server did not start: " + line)
        self.port = int(line.split()[1])
        self.lines = []
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.append(line.strip())

    def stop(self):
        self.p.stdin.close()
        rc = self.p.wait(timeout=20)
        self.t.join(timeout=5)
        return rc


class Conversation:
    """One Join stream driven message by message."""

    def __init__(self, channel):
        self.q = queue.Queue()
        call = channel.stream_stream(PATH, request_serializer=None, response_deserializer=None)
        self.responses = call(iter(self.q.get, None))

    def ask(self, msg):
        self.q.put(msg)
        return next(self.responses)

    def close(self):
        self.q.put(None)


def channel_for(port, ca=None):
    if ca:
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.secure_channel("localhost:%d" % port, creds, options=OPTS)
    return grpc.insecure_channel("127.0.0.1:%d" % port, options=OPTS)


def client_session(port, seed, sizes, ca=None):
    ch = channel_for(port, ca)
    try:
        conv = Conversation(ch)
        for i, n in enumerate(sizes):
            data = payload(n, seed * 100 + i)
            back = conv.ask(data)
            if hashlib.sha256(back).digest() != hashlib.sha256(data).digest():
                return "echo of %d bytes differs (%d back)" % (n, len(back))
        conv.close()
        # after our half-close the server ends the stream with OK
        rest = list(conv.responses)
        if rest:
            return "unexpected extra messages"
        return None
    except grpc.RpcError as e:
        return "rpc error %s %s" % (e.code(), e.details())
    finally:
        ch.close()


def test_python_clients(tag, extra=(), ca=None):
    srv = PetalServer(*extra)
    try:
        big = [0, 1, 100, 30_000_000, 0, 65536, 5]
        err = client_session(srv.port, 1, big, ca)
        report("py_client_to_petal_server_%s" % tag, err is None, err)

        with futures.ThreadPoolExecutor(max_workers=6) as ex:
            small = [0, 10, 1000, 100_000, 1_000_003, 3]
            errs = list(ex.map(lambda s: client_session(srv.port, s, small, ca), range(2, 8)))
        bad = [e for e in errs if e]
        report("py_concurrent_clients_%s" % tag, not bad, bad)

        # garbage instead of a TLS handshake / h2 preface: that connection is dropped
        import socket
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as so:
            so.sendall(b"\x16\x03\x01\x00\x05garbage" if ca else b"GARBAGE * HTTP/1.1\r\n\r\n")
            try:
                closed = so.recv(4096) is not None
                while so.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                closed = True
        err = client_session(srv.port, 11, [3, 0, 100_000], ca)
        report("py_garbage_connection_dropped_%s" % tag, closed and err is None, err)

        # several Join streams on ONE connection: each is its own client
        ch = channel_for(srv.port, ca)
        convs = [Conversation(ch) for _ in range(3)]
        ok = True
        for rnd in range(3):
            for i, cv in enumerate(convs):
                data = payload(200_000 + i, 50 + rnd * 10 + i)
                if cv.ask(data) != data:
                    ok = False
        for cv in convs:
            cv.close()
            ok = ok and not list(cv.responses)
        ch.close()
        report("py_streams_on_one_connection_%s" % tag, ok, "echo mismatch")

        # error status from the server, percent-encoded message
        ch = channel_for(srv.port, ca)
        conv = Conversation(ch)
        try:
            conv.ask("CMD:end:8:over 100% ü".encode())
            report("py_error_status_%s" % tag, False, "no error")
        except grpc.RpcError as e:
            ok = e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and e.details() == "over 100% ü"
            report("py_error_status_%s" % tag, ok, "%s %r" % (e.code(), e.details()))
        ch.close()

        # Flower's goodbye: the client cancels its stream; the server logs no error
        ch = channel_for(srv.port, ca)
        conv = Conversation(ch)
        conv.ask(b"ping")
        conv.responses.cancel()
        ch.close()
        import time
        for _ in range(100):
            if any(" cancelled " in ln for ln in srv.lines):
                break
            time.sleep(0.05)
        report("py_cancel_is_goodbye_%s" % tag, any(" cancelled " in ln for ln in srv.lines),
               srv.lines[-5:])

        # wrong path -> UNIMPLEMENTED, server keeps serving
        ch = channel_for(srv.port, ca)
        try:
            ch.unary_unary("/flwr.proto.FlowerService/Nope", request_serializer=None,
                           response_deserializer=None)(b"x", timeout=10)
            report("py_wrong_path_unimplemented_%s" % tag, False, "no error")
        except grpc.RpcError as e:
            report("py_wrong_path_unimplemented_%s" % tag,
                   e.code() == grpc.StatusCode.UNIMPLEMENTED, e.code())
        ch.close()
        err = client_session(srv.port, 9, [5, 0, 7], ca)
        report("py_server_still_serves_%s" % tag, err is None, err)
    finally:
        rc = srv.stop()
        report("petal_server_exit_%s" % tag, rc == 0, "exit %s" % rc)


def join_handler(request_iterator, context):
    yield b"hello"
    for m in request_iterator:
        if m.startswith(b"CMD:abort"):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "bye 100% \u00fc\n")
        yield m


def test_petal_client(tag, creds=None, ca_path=None, server_name="localhost"):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTS)
    handler = grpc.method_handlers_generic_handler(
        "flwr.proto.FlowerService", {"Join": grpc.stream_stream_rpc_method_handler(join_handler)})
    server.add_generic_rpc_handlers((handler,))
    if creds:
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        cmd = [PEER, "client", "127.0.0.1:%d" % port]
        if ca_path:
            cmd += ["--tls-ca", ca_path]
            if server_name:
                cmd += ["--server-name", server_name]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=300)
        sys.stdout.write(r.stdout)
        sys.stdout.flush()
        global failures
        if r.returncode != 0 and "FAIL:" not in r.stdout:
            report("petal_client_%s" % tag, False, "exit %d" % r.returncode)
        failures += r.stdout.count("FAIL:")
    finally:
        server.stop(grace=1)


def make_certs(d):
    def run(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=Petal Test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key")}


def main():
    if not os.access(PEER, os.X_OK):
        print("FAIL: test_net_transport_py -- %s not built" % PEER)
        return 1
    test_python_clients("h2c")
    test_petal_client("h2c")
    with tempfile.TemporaryDirectory() as d:
        c = make_certs(d)
        ca = open(c["ca.pem"], "rb").read()
        test_python_clients("tls", ("--tls", c["server.pem"], c["server.key"]), ca)
        creds = grpc.ssl_server_credentials(
            [(open(c["server.key"], "rb").read(), open(c["server.pem"], "rb").read())])
        test_petal_client("tls", creds, c["ca.pem"])
        # no server name: the certificate's IP SAN 127.0.0.1 is checked
        test_petal_client("tls_ip_san", creds, c["ca.pem"], server_name=None)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
