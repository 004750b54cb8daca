"""test_agents_lib.py - shared helpers for the agent tests (not a test itself):
the petal binary, Python stubs generated from net/proto/transport.proto,
a tiny model, NPY helpers, TLS certificates, processes and a Flower-like
NumPy client over Debian's python3-grpcio."""
import io
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(BUILD, "gen", "py"))
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
import grpc  # noqa: E402
import numpy as np  # noqa: E402
import transport_pb2 as pb  # noqa: E402
import transport_pb2_grpc as pbg  # noqa: E402

PETAL = os.path.abspath(os.path.join(BUILD, "petal"))
MAX_MSG = 536870912
GRPC_OPTS = [("grpc.max_send_message_length", MAX_MSG),
             ("grpc.max_receive_message_length", MAX_MSG)]

# A small CNN so the tests run fast: weights (3,3,1,4) (4,) (676,10) (10,).
TINY_MODEL = ('{"input_shape": [28, 28, 1], "layers": ['
              '{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},'
              '{"type": "MaxPool2D", "pool_size": 2}, {"type": "Flatten"},'
              '{"type": "Dense", "units": 10, "activation": "softmax"}]}')
TINY_SHAPES = [(3, 3, 1, 4), (4,), (676, 10), (10,)]

failures = 0


def check(name, ok, detail=""):
    global failures
    if ok:
        print("PASS: " + name, flush=True)
    else:
        failures += 1
        print("FAIL: " + name + ((" -- " + str(detail)) if detail else ""), flush=True)
    return ok


def npy(a):
    b = io.BytesIO()
    np.save(b, a, allow_pickle=False)
    return b.getvalue()


def load(b):
    return np.load(io.BytesIO(b), allow_pickle=False)


def params(arrays):
    return pb.Parameters(tensors=[npy(a) for a in arrays], tensor_type="numpy.ndarray")


def special_arrays(seed=0):
    """float32 arrays of the tiny model's shapes with NaN payloads, -0.0,
    denormals and infinities mixed in (bit-exactness, not training)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in TINY_SHAPES:
        a = rng.standard_normal(s).astype(np.float32)
        flat = a.reshape(-1).view(np.uint32)
        specials = np.array([0x7fc01234, 0x80000000, 0x00000001, 0x7f800000, 0xff800000],
                            np.uint32)
        flat[:min(len(specials), flat.size)] = specials[:flat.size]
        out.append(a)
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def make_certs(d):
    def run(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=Petal Agents Test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key")}


class Proc:
    """A petal subprocess with its output in a file."""

    def __init__(self, args, logdir, name):
        self.name = name
        self.log = os.path.join(logdir, name + ".log")
        self.f = open(self.log, "wb")
        self.p = subprocess.Popen([PETAL] + args, stdout=self.f, stderr=subprocess.STDOUT)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return "timeout"

    def output(self):
        self.f.flush()
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.f.close()


def start_server(args, logdir, name="server", timeout=30):
    """Start `petal server` on 127.0.0.1:0; returns (Proc, port)."""
    pf = os.path.join(logdir, name + ".port")
    if os.path.exists(pf):
        os.unlink(pf)
    p = Proc(["server", "--address", "127.0.0.1:0", "--port-file", pf] + args, logdir, name)
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(pf):
            txt = open(pf).read().strip()
            if txt:
                return p, int(txt)
        if p.p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("petal server did not start: " + p.output()[-2000:])


def channel(port, ca=None):
    target = "127.0.0.1:%d" % port
    if ca:
        creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
        return grpc.secure_channel(target, creds, options=GRPC_OPTS)
    return grpc.insecure_channel(target, options=GRPC_OPTS)


class NumpyClient(threading.Thread):
    """Plays flwr's start_numpy_client over grpc-bidi: waits for the server,
    answers each instruction with exactly one reply (tensors via np.save).
    fit(arrays, config) -> (arrays, num_examples, metrics);
    evaluate(arrays, config) -> (loss, num_examples, metrics).
    goodbye: "halfclose" (DisconnectRes then END_STREAM, like the C++ SDK)
    or "cancel" (DisconnectRes queued, then the channel closed at once, like
    flwr 1.6's Python client)."""

    def __init__(self, port, fit, evaluate, ca=None, goodbye="halfclose", raw_fit=None,
                 get_parameters=None):
        super().__init__(daemon=True)
        self.get_parameters = get_parameters
        self.port, self.fit_fn, self.eval_fn, self.ca = port, fit, evaluate, ca
        self.goodbye, self.raw_fit = goodbye, raw_fit
        self.received = []      # (kind, message) in order
        self.error = None
        self.reconnect = None   # the ReconnectIns received
        self.done = threading.Event()

    def run(self):
        ch = channel(self.port, self.ca)
        q = queue.Queue()

        def reqs():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m
        try:
            if self.raw_fit is not None:
                join = ch.stream_stream("/flwr.proto.FlowerService/Join",
                                        request_serializer=lambda b: b,
                                        response_deserializer=pb.ServerMessage.FromString)
            else:
                join = pbg.FlowerServiceStub(ch).Join
            call = join(reqs())
            for sm in call:
                kind = sm.WhichOneof("msg")
                self.received.append((kind, sm))
                if kind == "fit_ins":
                    arrays = [load(t) for t in sm.fit_ins.parameters.tensors]
                    if self.raw_fit is not None:
                        q.put(self.raw_fit(arrays, sm.fit_ins.config))
                        continue
                    new, n, metrics = self.fit_fn(arrays, sm.fit_ins.config)
                    r = pb.ClientMessage()
                    r.fit_res.status.message = "Success"
                    r.fit_res.parameters.CopyFrom(params(new))
                    r.fit_res.num_examples = n
                    for k, v in metrics.items():
                        r.fit_res.metrics[k].double = v
                    q.put(r)
                elif kind == "evaluate_ins":
                    arrays = [load(t) for t in sm.evaluate_ins.parameters.tensors]
                    loss, n, metrics = self.eval_fn(arrays, sm.evaluate_ins.config)
                    r = pb.ClientMessage()
                    r.evaluate_res.status.message = "Success"
                    r.evaluate_res.loss = loss
                    r.evaluate_res.num_examples = n
                    for k, v in metrics.items():
                        r.evaluate_res.metrics[k].double = v
                    q.put(r)
                elif kind == "reconnect_ins":
                    self.reconnect = sm.reconnect_ins
                    r = pb.ClientMessage()
                    r.disconnect_res.reason = pb.RECONNECT
                    q.put(r if self.raw_fit is None else r.SerializeToString())
                    if self.goodbye == "cancel":
                        call.cancel()
                        break
                    q.put(None)
                elif kind == "get_parameters_ins" and self.get_parameters:
                    r = pb.ClientMessage()
                    r.get_parameters_res.status.message = "Success"
                    r.get_parameters_res.parameters.CopyFrom(params(self.get_parameters()))
                    q.put(r)
                else:
                    r = pb.ClientMessage()
                    r.get_parameters_res.status.code = pb.GET_PARAMETERS_NOT_IMPLEMENTED
                    q.put(r)
        except grpc.RpcError as e:
            if not (self.goodbye == "cancel" and self.reconnect is not None):
                self.error = e
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            q.put(None)
            ch.close()
            self.done.set()


def events(path):
    import json
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def tmpdir():
    return tempfile.TemporaryDirectory(prefix="petal-agents-")
