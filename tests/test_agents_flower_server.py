#!/usr/bin/python3
"""test_agents_flower_server.py - a Python servicer playing Flower's server
(python3-grpcio, stubs from net/proto/transport.proto) drives `petal client`
through GetParameters -> GetProperties -> Fit (epochs 0: bit-exact echo) ->
Fit (NaN: refused, the client stays) -> Fit (float64 tensors, converted) -> Fit (real training) -> Evaluate ->
ReconnectIns, over h2c and TLS. The client is started before the server
listens (retry with backoff). Checks every reply and that the client
half-closes after its DisconnectRes and exits 0."""
import os
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import test_agents_lib as L  # noqa: E402
from test_agents_lib import grpc, pb, pbg  # noqa: E402

LIMIT = 240  # training examples before partitioning (2 parts)


def finite(arrays):
    """The arrays with their NaN and infinities replaced by 1.5."""
    out = []
    for a in arrays:
        b = a.copy()
        f = b.reshape(-1)
        f[~np.isfinite(f)] = 1.5
        out.append(b)
    return out


class Servicer(pbg.FlowerServiceServicer):
    def __init__(self):
        self.sessions = 0
        self.second = []          # replies of the second session
        self.second_clean = False
        self.replies = []
        self.ended = threading.Event()
        self.stream_end_clean = False
        self.error = None
        self.refused = None

    def Join(self, request_iterator, context):
        self.sessions += 1
        if self.sessions == 2:  # the client came back after ReconnectIns(seconds=1)
            yield from self.second_session(request_iterator)
            return
        try:
            sm = pb.ServerMessage()
            sm.get_parameters_ins.SetInParent()
            yield sm
            self.replies.append(next(request_iterator))

            sm = pb.ServerMessage()
            sm.get_properties_ins.config["detail"].string = "all"
            yield sm
            self.replies.append(next(request_iterator))

            # -0.0, denormals: echoed bit-exactly
            self.sent_special = finite(L.special_arrays(7))
            sm = pb.ServerMessage()
            sm.fit_ins.parameters.CopyFrom(L.params(self.sent_special))
            sm.fit_ins.config["epochs"].sint64 = 0
            yield sm
            self.replies.append(next(request_iterator))

            # NaN and infinities: refused with a failure status, the client stays
            sm = pb.ServerMessage()
            sm.fit_ins.parameters.CopyFrom(L.params(L.special_arrays(7)))
            sm.fit_ins.config["epochs"].sint64 = 0
            yield sm
            self.refused = next(request_iterator)

            rng = np.random.default_rng(3)
            self.sent_f8 = [rng.standard_normal(s) * 0.1 for s in L.TINY_SHAPES]
            sm = pb.ServerMessage()
            sm.fit_ins.parameters.CopyFrom(L.params(self.sent_f8))
            sm.fit_ins.config["epochs"].sint64 = 0
            yield sm
            self.replies.append(next(request_iterator))

            self.sent_train = [a.astype(np.float32) for a in self.sent_f8]
            sm = pb.ServerMessage()
            sm.fit_ins.parameters.CopyFrom(L.params(self.sent_train))
            sm.fit_ins.config["epochs"].sint64 = 2
            sm.fit_ins.config["batch_size"].sint64 = 16
            sm.fit_ins.config["lr"].double = 0.01
            sm.fit_ins.config["proximal_mu"].double = 0.1
            yield sm
            self.replies.append(next(request_iterator))

            trained = [L.load(t) for t in self.replies[-1].fit_res.parameters.tensors]
            sm = pb.ServerMessage()
            sm.evaluate_ins.parameters.CopyFrom(L.params(trained))
            yield sm
            self.replies.append(next(request_iterator))

            sm = pb.ServerMessage()
            sm.reconnect_ins.seconds = 1
            self.t_reconnect = time.time()
            yield sm
            self.replies.append(next(request_iterator))
            try:
                next(request_iterator)
            except StopIteration:
                self.stream_end_clean = True
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.ended.set()

    def second_session(self, request_iterator):
        try:
            self.t_second = time.time()
            sm = pb.ServerMessage()
            sm.get_parameters_ins.SetInParent()
            yield sm
            self.second.append(next(request_iterator))
            sm = pb.ServerMessage()
            sm.reconnect_ins.SetInParent()
            yield sm
            self.second.append(next(request_iterator))
            try:
                next(request_iterator)
            except StopIteration:
                self.second_clean = True
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            self.ended.set()


def run(tag, ca=None, creds=None):
    with L.tmpdir() as d:
        port = L.free_port()
        out = os.path.join(d, "out")
        args = ["client", "--server", "127.0.0.1:%d" % port, "--model", L.TINY_MODEL,
                "--dataset", "fashion-mnist", "--partition", "1/2", "--limit", str(LIMIT),
                "--eval-limit", "100", "--connect-timeout", "30", "--id", "py" + tag,
                "--out", out]
        if ca:
            args += ["--tls-ca", ca]
        cl = L.Proc(args, d, "client")
        time.sleep(0.7)  # the client starts first and must retry
        svc = Servicer()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=L.GRPC_OPTS)
        pbg.add_FlowerServiceServicer_to_server(svc, server)
        addr = "127.0.0.1:%d" % port
        if creds:
            server.add_secure_port(addr, creds)
        else:
            server.add_insecure_port(addr)
        server.start()
        svc.ended.wait(120)
        rc = cl.wait(60)
        server.stop(grace=1)
        log = cl.output()
        L.check("%s_client_exit_0" % tag, rc == 0, "rc=%s\n%s" % (rc, log[-2000:]))
        L.check("%s_servicer_ok" % tag, svc.error is None and len(svc.replies) == 7,
                "%r, %d replies" % (svc.error, len(svc.replies)))
        if len(svc.replies) < 7:
            return
        r = svc.replies
        gp = r[0]
        ok = gp.HasField("get_parameters_res") and gp.get_parameters_res.status.code == pb.OK
        shapes = [L.load(t).shape for t in gp.get_parameters_res.parameters.tensors]
        exact = all(L.npy(L.load(t)) == t for t in gp.get_parameters_res.parameters.tensors)
        L.check("%s_get_parameters" % tag, ok and shapes == L.TINY_SHAPES and exact and
                gp.get_parameters_res.parameters.tensor_type == "numpy.ndarray", shapes)
        props = r[1].get_properties_res
        L.check("%s_get_properties" % tag, r[1].HasField("get_properties_res") and
                props.properties["client_id"].string == "py" + tag and
                props.properties["train_examples"].sint64 == LIMIT // 2, props)
        echo = r[2].fit_res
        want = [L.npy(a) for a in svc.sent_special]
        L.check("%s_fit_echo_bit_exact" % tag, r[2].HasField("fit_res") and
                list(echo.parameters.tensors) == want and echo.num_examples == LIMIT // 2 and
                echo.status.code == pb.OK and echo.status.message == "Success")
        ref = svc.refused.fit_res if svc.refused is not None else None
        L.check("%s_fit_nan_refused" % tag, ref is not None and
                ref.status.code == pb.FIT_NOT_IMPLEMENTED and
                "not finite" in ref.status.message and len(ref.parameters.tensors) == 0 and
                ref.num_examples == 0, ref)
        conv = [L.load(t) for t in r[3].fit_res.parameters.tensors]
        L.check("%s_fit_f8_converted" % tag, all(
            c.dtype == np.float32 and np.array_equal(c, a.astype(np.float32))
            for c, a in zip(conv, svc.sent_f8)) and len(conv) == 4)
        tr = r[4].fit_res
        new = [L.load(t) for t in tr.parameters.tensors]
        changed = any(not np.array_equal(x, y) for x, y in zip(new, svc.sent_train))
        L.check("%s_fit_trains" % tag, r[4].HasField("fit_res") and changed and
                all(np.isfinite(x).all() for x in new) and tr.num_examples == LIMIT // 2 and
                0 <= tr.metrics["accuracy"].double <= 1 and tr.metrics["loss"].double > 0,
                tr.metrics)
        ev = r[5].evaluate_res
        L.check("%s_evaluate" % tag, r[5].HasField("evaluate_res") and ev.num_examples == 50 and
                ev.loss > 0 and np.isfinite(ev.loss) and
                0 <= ev.metrics["accuracy"].double <= 1, ev)
        L.check("%s_disconnect_res_and_half_close" % tag,
                r[6].HasField("disconnect_res") and
                r[6].disconnect_res.reason == pb.RECONNECT and svc.stream_end_clean, r[6])
        L.check("%s_reconnects_after_seconds" % tag, svc.sessions == 2 and
                svc.t_second - svc.t_reconnect >= 0.9 and len(svc.second) == 2 and
                svc.second[0].HasField("get_parameters_res") and
                list(svc.second[0].get_parameters_res.parameters.tensors) ==
                list(r[4].fit_res.parameters.tensors) and
                svc.second[1].disconnect_res.reason == pb.ACK and svc.second_clean,
                (svc.sessions, svc.second))
        clog = open(os.path.join(out, "client_py%s_log.log" % tag)).read()
        L.check("%s_client_log" % tag, "Disconnect and shut down" in clog and
                " flwr " in clog, clog[-800:])
        evs = [e["event"] for e in L.events(os.path.join(out, "events.jsonl"))]
        L.check("%s_client_events" % tag, evs.count("fit") == 3 and evs.count("evaluate") == 1
                and evs[0] == "client_start" and evs[-1] == "client_end", evs)


def main():
    run("h2c")
    with L.tmpdir() as d:
        c = L.make_certs(d)
        creds = grpc.ssl_server_credentials(
            [(open(c["server.key"], "rb").read(), open(c["server.pem"], "rb").read())])
        run("tls", ca=c["ca.pem"], creds=creds)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
