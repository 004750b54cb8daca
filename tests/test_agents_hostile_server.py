#!/usr/bin/python3
"""test_agents_hostile_server.py - `petal client` against hostile servers.

Servers built by hand from HTTP/2 frames (struct, HPACK literals) on
127.0.0.1, each playing one broken or malicious behaviour: the end of the
call in every form (END_STREAM with and without trailers, error trailers,
non-200 :status, GOAWAY from the server, nghttp2's own GOAWAY on a protocol
error), silent / SETTINGS-only / dripping / stalled servers, a zero
flow-control window, a server that stops reading, messages sent ahead
(queue floods), accept-and-drop reconnect loops, huge ReconnectIns waits,
epochs and batches, NaN and mismatched parameters, a NaN server_round.

In every case the client ends within its documented bound (the clocks are
set short: --keepalive 1 --keepalive-timeout 1 --transfer-timeout 1), or
answers with a failure status and goes on where that is the documented
behaviour; its peak RSS stays within the honest run's plus a small
multiple of the model (VmHWM, polled); and a second client in the same
state ends within 2 s of SIGTERM. Cases run a few at a time (each has its own port)."""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import test_agents_lib as L  # noqa: E402
from h2_hostile import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, PUSH,  # noqa: E402
                        SETTINGS, WINDOW, Conn, frame, hpack, msg_frame, response_headers,
                        settings, smsg, trailers)
from test_agents_lib import pb  # noqa: E402

SANITIZED = "san" in os.environ.get("BUILD", "build")
SLACK = 3.0 if SANITIZED else 1.5      # process start, scheduling
TERM_BOUND = 2.0                       # SIGTERM -> exit, whatever the client is doing
CLOCKS = ["--keepalive", "1", "--keepalive-timeout", "1", "--transfer-timeout", "1"]
TINY_BYTES = 4 * sum(int(np.prod(s)) for s in L.TINY_SHAPES)
# a model whose GetParametersRes (12.8 MB) does not fit in socket buffers
BIG_MODEL = ('{"input_shape": [28, 28, 1], "layers": [{"type": "Flatten"},'
             '{"type": "Dense", "units": 4096, "activation": "relu"},'
             '{"type": "Dense", "units": 10, "activation": "softmax"}]}')
BIG_BYTES = 4 * (784 * 4096 + 4096 + 4096 * 10 + 10)

# ---- the suite ----------------------------------------------------------------------
IMGS = None


def make_images(d):
    """A tiny image-folder dataset: 2 classes x 12 random 28x28 PNGs."""
    def png(path, seed):
        rng = np.random.default_rng(seed)
        rows = b"".join(b"\x00" + rng.integers(0, 256, 28, dtype=np.uint8).tobytes()
                        for _ in range(28))

        def chunk(t, data):
            return struct.pack(">I", len(data)) + t + data + \
                struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" +
                    chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)) +
                    chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    root = os.path.join(d, "imgs")
    for ci, c in enumerate(("a", "b")):
        os.makedirs(os.path.join(root, c))
        for i in range(12):
            png(os.path.join(root, c, "%d.png" % i), ci * 100 + i)
    return root


class Run:
    """One petal client process against one fake server."""

    def __init__(self, d, name, extra, model=L.TINY_MODEL, clocks=CLOCKS):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.log = os.path.join(d, name + ".log")
        args = [L.PETAL, "client", "--server", "127.0.0.1:%d" % self.port, "--model", model,
                "--dataset", "folder:" + IMGS, "--connect-timeout", "10", "--seed", "3",
                "--threads", "1", "--log-level", "debug"] + clocks + extra
        env = dict(os.environ)
        if SANITIZED:  # a small quarantine: peak RSS then measures the client, not ASan
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8"
        with open(self.log, "wb") as f:
            self.p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env)
        self.rc = None
        self.wait_lock = threading.Lock()
        self.maxrss = 0
        self.t_exit = None
        self.accepts = []
        # peak RSS: the kernel's high-water mark of the exec'd process (wait4's
        # ru_maxrss would count the forking Python process too)
        threading.Thread(target=self.watch_rss, daemon=True).start()

    def watch_rss(self):
        path = "/proc/%d/status" % self.p.pid
        while self.rc is None:
            try:
                with open(path) as f:
                    for ln in f:
                        if ln.startswith("VmHWM:"):
                            self.maxrss = max(self.maxrss, int(ln.split()[1]) * 1024)
                            break
            except (OSError, ValueError):
                return
            time.sleep(0.005)

    def accept(self, timeout=20):
        self.lsock.settimeout(timeout)
        s, _ = self.lsock.accept()
        self.accepts.append(time.time())
        return s

    def poll(self):
        with self.wait_lock:  # the scenario thread polls too
            if self.rc is None:
                pid, status = os.waitpid(self.p.pid, os.WNOHANG)
                if pid:
                    self.t_exit = time.time()
                    self.rc = os.waitstatus_to_exitcode(status)
                    self.p.returncode = self.rc
            return self.rc

    def wait(self, timeout):
        end = time.time() + timeout
        while self.poll() is None and time.time() < end:
            time.sleep(0.01)
        if self.rc is None:
            self.p.kill()
            while self.poll() is None:
                time.sleep(0.01)
            self.rc = "timeout"
        return self.rc

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self):
        self.lsock.close()


class Case:
    """name; scenario(run, state) drives the fake server (state.checks: named
    (ok, detail) results; state.set() marks the state of interest); expect: 'ok'
    (exit 0) or 'fail' (non-zero) and a text the output must hold; bound: seconds
    from the first accept to the exit. normal: run it with the short clocks and
    check the end; term: run it again with the default clocks (the state lasts)
    and SIGTERM the client 0.3 s into the state."""

    def __init__(self, name, scenario, expect, text, bound, extra=(), model=L.TINY_MODEL,
                 model_bytes=TINY_BYTES, term=False, normal=True):
        self.name, self.scenario, self.expect, self.text = name, scenario, expect, text
        self.bound, self.extra, self.model = bound, list(extra), model
        self.model_bytes, self.term, self.normal = model_bytes, term, normal


class State:
    def __init__(self, sigterm):
        self.ev = threading.Event()
        self.checks = {}
        self.sigterm = sigterm  # checks made after set() do not apply then

    def set(self):
        self.ev.set()


def run_case(d, case, sigterm):
    tag = case.name + ("_sigterm" if sigterm else "")
    r = Run(d, tag, case.extra, case.model, clocks=[] if sigterm else CLOCKS)
    st = State(sigterm)
    err = []

    def drive():
        try:
            case.scenario(r, st)
        except Exception as e:  # noqa: BLE001
            err.append(repr(e))
        finally:
            st.set()
    th = threading.Thread(target=drive, daemon=True)
    th.start()
    res = {"tag": tag, "case": case}
    if sigterm:
        st.ev.wait(30)
        time.sleep(0.3)
        if r.poll() is None:
            t0 = time.time()
            r.p.send_signal(signal.SIGTERM)
            r.wait(TERM_BOUND + 5)
            res["term_time"] = (r.t_exit or time.time()) - t0
        else:
            res["term_time"] = None  # ended before the signal (a bug for a sigterm case)
    else:
        r.wait(case.bound + SLACK + 15)
    th.join(5)
    res.update(rc=r.rc, maxrss=r.maxrss, out=r.output(), err=err, checks=st.checks,
               accepts=list(r.accepts), t_exit=r.t_exit)
    r.close()
    return res


# ---- scenarios ------------------------------------------------------------------------
def accept_conn(r, polite=True, credit=True, mute=False):
    return Conn(r.accept(), polite=polite, credit=credit, mute=mute)


def end_no_trailers(r, st):
    c = accept_conn(r)
    c.open()
    st.set()
    time.sleep(0.5)  # the client waits for instructions
    c.send(frame(DATA, END_STREAM, 1, b""))
    c.closed.wait(10)


def end_error_trailers(r, st):
    c = accept_conn(r)
    c.open()
    st.set()
    time.sleep(0.5)
    c.send(trailers(13, "boom%20here"))
    c.closed.wait(10)


def end_trailers_only_unauth(r, st):
    c = accept_conn(r)
    c.joined.wait(10)
    st.set()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack(
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "16"),
         ("grpc-message", "who are you")])))
    c.closed.wait(10)


def http_status(code, end):
    def sc(r, st):
        c = accept_conn(r)
        c.joined.wait(10)
        c.send(response_headers(status=str(code), ctype="text/html", end=end))
        st.set()
        c.closed.wait(10)
    return sc


def not_grpc_ctype(r, st):
    c = accept_conn(r)
    c.joined.wait(10)
    c.send(response_headers(ctype="text/html"))
    st.set()
    c.closed.wait(10)


def goaway_from_server(r, st):
    c = accept_conn(r)
    c.open()
    st.set()
    time.sleep(0.3)
    c.send(frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0) + b"shutting down"))
    c.closed.wait(10)  # stays open, acks PINGs: only the GOAWAY ends the call


def protocol_error(payload_fn):
    def sc(r, st):
        c = accept_conn(r)
        c.open()
        st.set()
        time.sleep(0.3)
        c.send(payload_fn())
        c.closed.wait(10)
    return sc


def silent(r, st):
    c = accept_conn(r, polite=False, mute=True)
    c.joined.wait(10)
    st.set()
    c.closed.wait(15)


def settings_only(r, st):
    c = accept_conn(r, polite=False)
    c.joined.wait(10)
    st.set()
    c.closed.wait(15)


def drip_message(r, st):
    """A message of 1000 bytes announced, then one byte every 0.3 s (PINGs acked)."""
    c = accept_conn(r)
    c.open()
    body = smsg("get_properties") + b"\x00" * 0
    c.send(frame(DATA, 0, 1, b"\x00" + struct.pack(">I", 1000)))
    st.set()
    for _ in range(100):
        if not c.send(frame(DATA, 0, 1, b"\x00")) or c.closed.is_set():
            break
        time.sleep(0.3)
    del body


def drip_frame(r, st):
    """A SETTINGS frame of 20 entries, one byte every 0.3 s: no PING can be acked
    in the middle of a frame."""
    c = accept_conn(r, polite=False)
    c.open()
    st.set()
    b = frame(SETTINGS, 0, 0, struct.pack(">HI", 1, 4096) * 20)
    for i in range(len(b)):
        if not c.send(b[i:i + 1]) or c.closed.is_set():
            break
        time.sleep(0.3)


def stalled(r, st):
    """100 kB announced, 50 kB sent, then nothing more (PINGs still acked)."""
    c = accept_conn(r)
    c.open()
    c.send(frame(DATA, 0, 1, b"\x00" + struct.pack(">I", 100000) + b"\x00" * 50000))
    st.set()
    c.closed.wait(15)


def huge_announce(r, st):
    """A 500 MB message announced: over the client's model-sized cap at once."""
    c = accept_conn(r)
    c.open()
    c.send(frame(DATA, 0, 1, b"\x00" + struct.pack(">I", 500 << 20) + b"\x00" * 16000))
    st.set()
    c.closed.wait(10)


def zero_window(r, st):
    """The client must answer GetParametersIns but the window stays 0 (PINGs acked)."""
    c = accept_conn(r, credit=False)
    c.open(window=0)
    c.send(msg_frame(smsg("get_parameters")))
    time.sleep(0.3)
    st.set()  # blocked sending
    c.closed.wait(15)


def stops_reading(r, st):
    """GetParametersIns to a 12.8 MB model, then the server reads nothing more."""
    c = accept_conn(r)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.open()
    c.stop_reading()
    c.send(msg_frame(smsg("get_parameters")))
    time.sleep(0.5)
    st.set()
    end = time.time() + 20
    while r.poll() is None and time.time() < end and not c.closed.is_set():
        time.sleep(0.05)
    c.closed.set()


def queue_flood(r, st):
    """A FitIns and 10,000 GetPropertiesIns right behind it (no replies awaited)."""
    c = accept_conn(r)
    c.open()
    gp = msg_frame(smsg("get_properties"))
    c.send(msg_frame(smsg("fit", epochs=3, batch_size=4)) + gp * 10000)
    st.set()
    c.closed.wait(10)


def queue_flood_big(r, st):
    """A FitIns and 10 GetPropertiesIns of 1 MB each (config strings)."""
    c = accept_conn(r)
    c.open()
    m = pb.ServerMessage()
    m.get_properties_ins.config["pad"].string = "x" * (1 << 20)
    big = msg_frame(m.SerializeToString())
    c.send(msg_frame(smsg("fit", epochs=3, batch_size=4)) + big * 10)
    st.set()
    c.closed.wait(10)


def queue_within_limit(r, st):
    """Three instructions back to back (within --max-queue 4): answered in order."""
    c = accept_conn(r)
    c.open()
    c.send(msg_frame(smsg("fit", epochs=1, batch_size=8)) + msg_frame(smsg("get_properties")) +
           msg_frame(smsg("evaluate")))
    a = [c.reply(i) for i in range(3)]
    st.checks["answered_in_order"] = (
        a[0] is not None and a[0].HasField("fit_res") and a[0].fit_res.status.code == 0 and
        a[1] is not None and a[1].HasField("get_properties_res") and
        a[2] is not None and a[2].HasField("evaluate_res"), a)
    st.set()
    time.sleep(0.6)
    c.send(msg_frame(smsg("reconnect")))
    c.closed.wait(10)


def accept_drop(r, st):
    """Accept and close every connection: --rejoin 5 with backoff."""
    st.set()
    end = time.time() + 12
    while time.time() < end and r.poll() is None:
        try:
            s = r.accept(timeout=0.5)
        except socket.timeout:
            continue
        s.close()
    if st.sigterm:
        return
    t = r.accepts
    gaps = [b - a for a, b in zip(t, t[1:])]
    st.checks["backoff_grows"] = (len(t) >= 3 and all(b > a for a, b in zip(gaps, gaps[1:])),
                                  gaps)
    st.checks["few_connections"] = (len(t) <= 6, len(t))


def goaway_drop(r, st):
    """Every connection: SETTINGS, GOAWAY and close (a reconnect loop)."""
    st.set()
    end = time.time() + 12
    while time.time() < end and r.poll() is None:
        try:
            s = r.accept(timeout=0.5)
        except socket.timeout:
            continue
        try:
            s.recv(4096)
            s.sendall(settings() + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
        except OSError:
            pass
        s.close()
    if not st.sigterm:
        st.checks["few_connections"] = (len(r.accepts) <= 6, len(r.accepts))


def answers(instructions, expect):
    """Send each instruction, check each reply with expect[i](reply) -> bool, then
    ReconnectIns: the client stays after every refusal and exits 0."""
    def sc(r, st):
        c = accept_conn(r)
        c.open()
        ok = []
        for i, ins in enumerate(instructions):
            c.send(msg_frame(ins))
            rep = c.reply(i)
            good = rep is not None and expect[i](rep)
            ok.append(good)
            if not good:
                st.checks["reply_%d" % i] = (False, rep)
        st.checks["answered_and_stayed"] = (all(ok), ok)
        st.set()  # waiting for the next instruction after the refusals
        time.sleep(0.6)
        c.send(msg_frame(smsg("reconnect")))
        c.closed.wait(10)
    return sc


def refused(kind, words):
    def f(rep):
        res = getattr(rep, kind + "_res")
        return rep.HasField(kind + "_res") and res.status.code != 0 and \
            all(w in res.status.message for w in words)
    return f


def fit_ok(rep):
    return rep.HasField("fit_res") and rep.fit_res.status.code == 0 and \
        len(rep.fit_res.parameters.tensors) == 4


def huge_reconnect(r, st):
    c = accept_conn(r)
    c.open()
    c.send(msg_frame(smsg("reconnect", seconds=1 << 62)))
    rep = c.reply(0)
    st.checks["disconnect_res"] = (rep is not None and rep.HasField("disconnect_res"), rep)
    st.set()
    c.closed.wait(10)


def reconnect_wait_sigterm(r, st):
    """ReconnectIns(30 s) within the limit: the client waits (SIGTERM state)."""
    c = accept_conn(r)
    c.open()
    c.send(msg_frame(smsg("reconnect", seconds=30)))
    c.reply(0)
    st.set()
    c.closed.wait(10)


def no_server(r, st):
    """Nothing listens: the client retries with backoff (SIGTERM state)."""
    r.lsock.close()
    st.set()
    end = time.time() + 15
    while r.poll() is None and time.time() < end:
        time.sleep(0.05)


def tls_stall(r, st):
    """TCP accepted, the TLS ClientHello never answered (SIGTERM state)."""
    s = r.accept()
    st.set()
    end = time.time() + 15
    while r.poll() is None and time.time() < end:
        time.sleep(0.05)
    s.close()


def honest(r, st):
    c = accept_conn(r)
    c.open()
    c.send(msg_frame(smsg("get_parameters")))
    a = c.reply(0)
    c.send(msg_frame(smsg("fit", epochs=1, batch_size=8, server_round=1)))
    b = c.reply(1)
    c.send(msg_frame(smsg("evaluate", server_round=1)))
    e = c.reply(2)
    st.checks["replies_ok"] = (a is not None and b is not None and fit_ok(b) and
                               e is not None and e.evaluate_res.status.code == 0, (a, b, e))
    st.set()
    time.sleep(2.5)  # idle: keepalive PINGs (acked) must not end a live server's call
    c.send(msg_frame(smsg("reconnect")))
    c.closed.wait(10)


def ping_policing(r, st):
    """A live server that says nothing (PINGs acked): at most 3 keepalive PINGs
    in a quiet spell (grpc-core GOAWAYs a client on its 3rd early one), then
    again after the server sent data; the call goes on."""
    c = accept_conn(r)
    c.open()
    time.sleep(4.0)
    first = len([f for f in c.client_sent(PING) if not f[1] & 1])
    c.send(msg_frame(smsg("get_properties")))
    rep = c.reply(0)
    time.sleep(3.0)
    second = len([f for f in c.client_sent(PING) if not f[1] & 1]) - first
    st.checks["three_pings_per_quiet_spell"] = (first == 3 and second == 3 and rep is not None,
                                                (first, second))
    st.set()
    c.send(msg_frame(smsg("reconnect")))
    c.closed.wait(10)


def train_sigterm(r, st):
    """SIGTERM while training (many epochs)."""
    c = accept_conn(r)
    c.open()
    c.send(msg_frame(smsg("fit", epochs=100, batch_size=1)))
    time.sleep(0.5)
    st.set()
    c.closed.wait(15)


HEAVY_MODEL = ('{"input_shape": [28, 28, 1], "layers": ['
               '{"type": "Conv2D", "filters": 128, "kernel_size": 3, "activation": "relu"},'
               '{"type": "Conv2D", "filters": 256, "kernel_size": 3, "activation": "relu"},'
               '{"type": "Conv2D", "filters": 256, "kernel_size": 3, "activation": "relu"},'
               '{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}')


def train_long_batch(r, st):
    """SIGTERM inside one long training batch (18 images through 2 wide convs):
    the batch cannot watch the stop flag, the watchdog ends the process."""
    c = accept_conn(r)
    c.open()
    c.send(msg_frame(smsg("get_parameters")))
    rep = c.reply(0)
    arrays = [L.load(t) for t in rep.get_parameters_res.parameters.tensors] if rep else None
    c.send(msg_frame(smsg("fit", arrays=arrays, epochs=50, batch_size=32)))
    time.sleep(0.3)
    st.set()
    c.closed.wait(30)


def nan_arrays():
    a = [np.ones(s, np.float32) for s in L.TINY_SHAPES]
    a[2].reshape(-1)[17] = np.nan
    return a


def wrong_shapes():
    return [np.ones(s, np.float32) for s in L.TINY_SHAPES[:3]] + [np.ones((11,), np.float32)]


def build_cases():
    B = 1.0 + SLACK  # "ends at once"
    ka = 2.0 + SLACK  # keepalive 1 s + timeout 1 s
    cases = [
        Case("honest", honest, "ok", "Disconnect and shut down", 4.0 + SLACK + 3, term=True),
        Case("end_stream_without_trailers", end_no_trailers, "fail",
             "without a grpc-status", 0.5 + B),
        Case("end_stream_error_trailers", end_error_trailers, "fail",
             "grpc-status 13: boom here", 0.5 + B),
        Case("trailers_only_unauthenticated", end_trailers_only_unauth, "fail",
             "grpc-status 16: who are you (check --auth-token-file", B),
        Case("http_500_headers", http_status(500, False), "fail", "HTTP status 500", B),
        Case("http_404_end_stream", http_status(404, True), "fail",
             "grpc-status 12: HTTP status 404", B),
        Case("content_type_not_grpc", not_grpc_ctype, "fail", "not application/grpc", B),
        Case("goaway_from_server", goaway_from_server, "fail",
             "the server sent GOAWAY (NO_ERROR: shutting down)", 0.3 + B),
        Case("goaway_by_nghttp2_bad_max_frame_size",
             protocol_error(lambda: settings(frame=1)), "fail", "broke HTTP/2", 0.3 + B),
        Case("goaway_by_nghttp2_window_overflow",
             protocol_error(lambda: frame(WINDOW, 0, 0, struct.pack(">I", 0x7fffffff))),
             "fail", "broke HTTP/2", 0.3 + B),
        Case("goaway_by_nghttp2_push_promise",
             protocol_error(lambda: frame(PUSH, END_HEADERS, 1, struct.pack(">I", 2) +
                                          hpack([(":method", "GET")]))),
             "fail", "broke HTTP/2", 0.3 + B),
        Case("goaway_by_nghttp2_bad_hpack_index",
             protocol_error(lambda: frame(HEADERS, END_HEADERS, 1, b"\xff\xff\x7f")),
             "fail", "broke HTTP/2", 0.3 + B),
        Case("goaway_by_nghttp2_data_on_stream_0",
             protocol_error(lambda: frame(DATA, 0, 0, b"xx")), "fail", "broke HTTP/2", 0.3 + B),
        Case("keepalive_within_ping_policing", ping_policing, "ok", "Disconnect and shut down",
             7.0 + SLACK + 2, extra=["--keepalive", "0.5"]),
        Case("silent_server", silent, "fail", "did not answer a keepalive PING", ka, term=True),
        Case("settings_only_server", settings_only, "fail", "did not answer a keepalive PING", ka,
             term=True),
        Case("dripping_message", drip_message, "fail", "too slow", 1.0 + 1.0 + B, term=True),
        Case("dripping_frame", drip_frame, "fail", "did not answer a keepalive PING", ka, term=True),
        Case("stalled_message", stalled, "fail", "stalled: no data for 1 s", 1.0 + B, term=True),
        Case("huge_message_announced", huge_announce, "fail", "over the limit", B),
        Case("zero_window", zero_window, "fail", "no progress for 1 s", 0.3 + 1.0 + B, term=True),
        Case("server_stops_reading", stops_reading, "fail", "", 2.0 + B, model=BIG_MODEL,
             model_bytes=BIG_BYTES, term=True),
        Case("queue_flood", queue_flood, "fail", "over the queue limit of 4 messages", B),
        Case("queue_flood_1mb_messages", queue_flood_big, "fail", "over the queue limit", B),
        Case("queue_within_limit", queue_within_limit, "ok", "Disconnect and shut down",
             5.0 + SLACK),
        Case("reconnect_loop_accept_drop", accept_drop, "fail", "was not back within --rejoin 5",
             5.0 + SLACK, extra=["--rejoin", "5"], term=True),
        Case("reconnect_loop_goaway", goaway_drop, "fail", "was not back within --rejoin 5",
             5.0 + SLACK, extra=["--rejoin", "5"]),
        Case("huge_reconnect_wait", huge_reconnect, "fail",
             "over this client's limit of 600 s (--max-reconnect-wait)", B),
        Case("reconnect_wait", reconnect_wait_sigterm, "fail", "", 30 + B, term=True,
             normal=False),
        Case("connect_retry", no_server, "fail", "", 10 + B, term=True, normal=False),
        Case("tls_handshake_stall", tls_stall, "fail", "", 10 + B, extra=["--tls"], term=True,
             normal=False),
        Case("huge_epochs_batches", answers(
            [smsg("fit", epochs=100000), smsg("fit", batch_size=1 << 20),
             smsg("evaluate", batch_size=1 << 20), smsg("fit", epochs=2, batch_size=1 << 20)],
            [refused("fit", ["'epochs' = 100000", "limit of 100 (--max-epochs)"]),
             refused("fit", ["'batch_size' = 1048576", "limit of 512 (--max-batch)"]),
             refused("evaluate", ["'batch_size' = 1048576", "(--max-batch)"]),
             refused("fit", ["--max-batch"])]),
             "ok", "Disconnect and shut down", 3.0 + SLACK + 3),
        Case("nan_and_mismatched_parameters", answers(
            [smsg("fit", arrays=nan_arrays(), epochs=1), smsg("fit", arrays=nan_arrays(),
                                                              epochs=0),
             smsg("evaluate", arrays=nan_arrays()), smsg("fit", arrays=wrong_shapes()),
             smsg("fit", epochs=1, batch_size=8)],
            [refused("fit", ["tensor 2", "not finite (NaN)"]),
             refused("fit", ["not finite"]), refused("evaluate", ["not finite"]),
             refused("fit", ["tensor 3: shape (11,), expected (10,)"]), fit_ok]),
            "ok", "Disconnect and shut down", 3.0 + SLACK + 3, term=True),
        Case("server_round_nan_and_huge", answers(
            [smsg("fit", server_round=float("nan")), smsg("evaluate", server_round=1e300),
             smsg("fit", server_round=-5), smsg("fit", epochs=0, server_round=7)],
            [refused("fit", ["'server_round'"]), refused("evaluate", ["'server_round'"]),
             refused("fit", ["'server_round'"]), fit_ok]),
            "ok", "Disconnect and shut down", 3.0 + SLACK + 3),
        Case("diverging_training", answers(
            [smsg("fit", epochs=1, batch_size=4,
                  arrays=[np.full(s, 3e38, np.float32) for s in L.TINY_SHAPES])],
            [refused("fit", ["diverged"])]),
            "ok", "Disconnect and shut down", 5.0 + SLACK + 3),
        Case("training", train_sigterm, "fail", "", 60, term=True, normal=False),
        Case("training_long_batch", train_long_batch, "fail", "", 60, model=HEAVY_MODEL,
             model_bytes=4 * (128 * 9 + 128 + 128 * 9 * 256 + 256 + 256 * 9 * 256 + 256 +
                              22 * 22 * 256 * 10 + 10), term=True, normal=False),
    ]
    return cases


def check_case(res, base_rss):
    case, tag = res["case"], res["tag"]
    out = res["out"]
    tail = out[-1500:]
    last = [ln for ln in out.splitlines() if ln.startswith("petal client:")]
    took = (res["t_exit"] - res["accepts"][0]) if res["accepts"] and res["t_exit"] else None
    print("# %s: rc %s, %s s, peak %.1f MB: %s" % (
        tag, res["rc"], "%.2f" % took if took is not None else "-", res["maxrss"] / 1e6,
        last[-1][len("petal client: "):] if last else "-"), flush=True)
    if res["err"]:
        L.check(tag + "_scenario", False, res["err"])
    bad = [w for w in ("runtime error", "AddressSanitizer", "LeakSanitizer") if w in out]
    L.check(tag + "_sanitizer_clean", not bad, "%s\n%s" % (bad, tail))
    for k, (ok, detail) in sorted(res["checks"].items()):
        L.check("%s_%s" % (tag, k), ok, detail)
    if tag.endswith("_sigterm"):
        t = res.get("term_time")
        L.check(tag + "_ends_within_2s", t is not None and t <= TERM_BOUND and
                res["rc"] not in (0, "timeout"), "term_time=%s rc=%s\n%s" % (t, res["rc"], tail))
        return
    rc = res["rc"]
    want_ok = case.expect == "ok"
    L.check(tag + "_ends", rc != "timeout" and (rc == 0) == want_ok, "rc=%s\n%s" % (rc, tail))
    L.check(tag + "_within_bound", took is not None and took <= case.bound,
            "took %s s, bound %s s" % (took, case.bound))
    if case.text:
        L.check(tag + "_says_why", case.text in out, "want %r\n%s" % (case.text, tail))
    # the transport holds at most the queue (max_message bytes), one message
    # arriving and one being answered: 3 x max_message, max_message being
    # 2 x the model + 4 MiB by default; plus 8 MiB of slack
    max_message = 2 * case.model_bytes + (4 << 20)
    limit = base_rss + 3 * max_message + (8 << 20)
    L.check(tag + "_memory_bounded", res["maxrss"] <= limit,
            "peak %.1f MB > %.1f MB" % (res["maxrss"] / 1e6, limit / 1e6))


def main():
    global IMGS
    with tempfile.TemporaryDirectory(prefix="petal-hostile-") as d:
        IMGS = make_images(d)
        cases = build_cases()
        base = run_case(d, cases[0], False)
        base_rss = base["maxrss"]
        print("honest client peak RSS %.1f MB" % (base_rss / 1e6), flush=True)
        jobs = [(c, False) for c in cases[1:] if c.normal] + [(c, True) for c in cases if c.term]
        with ThreadPoolExecutor(max_workers=4) as ex:
            results = list(ex.map(lambda cj: run_case(d, cj[0], cj[1]), jobs))
        check_case(base, base_rss)
        for res in results:
            check_case(res, base_rss)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
