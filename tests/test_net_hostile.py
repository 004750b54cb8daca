#!/usr/bin/python3
"""test_net_hostile.py - hostile HTTP/2 peers against the real `petal server`
(issue 11), frames built by hand on 127.0.0.1 (Debian's python3-hyperframe
and python3-hpack).

One server runs one round per case with two honest Flower-protocol clients
(Debian's python3-grpcio): their FitRes waits until the case is over, so
every attack lands while the server is inside a round, and after every case
the round must complete with both honest results (the server survived and
still serves). Under `make SANITIZE=address,undefined test` the server is the
ASan+UBSan build: a memory error kills it and fails the case.

Cases: DATA over and under content-length; RST_STREAM and GOAWAY right after
and inside (mid-message) large DATA frames; reads of 256 KiB and more (the
direct-receive path); many streams per connection (refused and Join streams);
idle and half-open connections (no Join stream within the handshake
timeout); SETTINGS, PING, HEADERS (rapid reset) and CONTINUATION floods;
slow-loris; per-address connection cap; trailers over the header limit; a
frame over the advertised maximum frame size; refused-stream log flooding.
"""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import test_agents_lib as L  # noqa: E402

from hpack import Encoder  # noqa: E402
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame,  # noqa: E402
                              HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
JOIN = "/flwr.proto.FlowerService/Join"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 3, 4, 6, 7, 8, 9
PROTOCOL_ERROR, FRAME_SIZE_ERROR, CANCEL, ENHANCE_YOUR_CALM, REFUSED_STREAM = 1, 6, 8, 11, 7
HANDSHAKE_TIMEOUT = 1.0     # --handshake-timeout of the server under test
PER_ADDR = 6                # --max-conn-per-addr
MAX_MESSAGE = 10_000_000    # --max-message


def fhdr(length, ftype, flags, sid):
    """A raw 9-byte frame header (for frames whose payload we send in parts)."""
    return struct.pack(">I", length)[1:] + bytes([ftype, flags]) + struct.pack(">I", sid)


def grpc_prefix(n):
    return b"\x00" + struct.pack(">I", n)


class H2:
    """A raw HTTP/2 client connection: send frames, read what comes back."""

    def __init__(self, port, preface=True, ack=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.enc = Encoder()
        self.buf = b""
        self.frames = []        # (type, flags, sid, payload)
        self.closed = False
        self.port = port
        if preface:
            self.send(PREFACE + SettingsFrame(0).serialize())
            if ack:  # wait for the server's SETTINGS and acknowledge them
                self.wait_for(lambda f: f[0] == SETTINGS and not f[1] & 1, 5)
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())

    def send(self, b):
        try:
            self.s.sendall(b)
            return True
        except OSError:
            self.closed = True
            return False

    def headers(self, sid, path=JOIN, extra=(), end_stream=False, ctype="application/grpc"):
        h = [(":method", "POST"), (":scheme", "http"), (":path", path),
             (":authority", "127.0.0.1:%d" % self.port), ("content-type", ctype),
             ("te", "trailers")] + list(extra)
        f = HeadersFrame(sid, self.enc.encode(h), flags=["END_HEADERS"] +
                         (["END_STREAM"] if end_stream else []))
        return f.serialize()

    def _parse(self):
        while len(self.buf) >= 9:
            ln = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + ln:
                break
            t, fl = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
            self.frames.append((t, fl, sid, self.buf[9:9 + ln]))
            self.buf = self.buf[9 + ln:]

    def pump(self, timeout):
        """Read for up to timeout seconds or until the server closes."""
        end = time.time() + timeout
        while not self.closed and time.time() < end:
            self.s.settimeout(max(0.01, min(0.2, end - time.time())))
            try:
                b = self.s.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                break
            if not b:
                self.closed = True
                break
            self.buf += b
            self._parse()
        return self.closed

    def wait_for(self, pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if any(pred(f) for f in self.frames):
                return True
            if self.closed:
                return False
            self.pump(min(0.1, end - time.time()))
        return any(pred(f) for f in self.frames)

    def goaway(self):
        """The error code of the server's GOAWAY, or None."""
        for t, _, _, p in self.frames:
            if t == GOAWAY and len(p) >= 8:
                return int.from_bytes(p[4:8], "big")
        return None

    def rst(self, sid):
        for t, _, s, p in self.frames:
            if t == RST_STREAM and s == sid:
                return int.from_bytes(p[:4], "big")
        return None

    def stream_status(self, sid):
        """grpc-status from the server's trailers on sid (headers only), or None."""
        from hpack import Decoder
        d = Decoder()
        st = None
        for t, fl, s, p in self.frames:
            if t == HEADERS:
                try:
                    hs = d.decode(p)
                except Exception:  # noqa: BLE001
                    return st
                if s == sid:
                    for k, v in hs:
                        if k in ("grpc-status", b"grpc-status"):
                            st = int(v)
        return st

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---- the cases ------------------------------------------------------------------
# Each returns (ok, detail); the server's round must complete afterwards.

def ends_calm(c, timeout=3):
    """The server closes the connection with GOAWAY ENHANCE_YOUR_CALM."""
    closed = c.pump(timeout)
    g = c.goaway()
    c.close()
    return closed and g == ENHANCE_YOUR_CALM, "closed=%s goaway=%s" % (closed, g)


def case_data_over_content_length(port, srv):
    """DATA beyond content-length inside a big frame, then RST_STREAM and more
    frames: nghttp2 drops the rest of the frame without callbacks; the server
    must not read the following frames into the stream's message buffer (the
    heap use-after-free of issue 11 item 1)."""
    c = H2(port)
    body = c.headers(1, extra=[("content-length", "100000")])
    first = grpc_prefix(8_000_000) + b"\x01" * (90_000 - 5)
    body += DataFrame(1, first).serialize()
    big = 1_000_000  # under the server's 1 MiB frame limit
    tail = RstStreamFrame(1, error_code=CANCEL).serialize()
    tail += b"".join(PingFrame(0, opaque_data=struct.pack(">Q", i)).serialize()
                     for i in range(20))
    ok = c.send(body + fhdr(big, DATA, 0, 1) + b"\x02" * big + tail)
    # the connection is still served: the PINGs after the reset are answered
    acks = c.wait_for(lambda f: f[0] == PING and f[1] & 1 and f[3] == struct.pack(">Q", 19), 5)
    c.close()
    return ok and acks, "PING ACKs %s, goaway %s" % (acks, c.goaway())


def case_data_under_content_length(port, srv):
    c = H2(port)
    c.send(c.headers(1, extra=[("content-length", "1000")]) +
           DataFrame(1, grpc_prefix(5) + b"hello", flags=["END_STREAM"]).serialize())
    c.wait_for(lambda f: f[0] == RST_STREAM and f[2] == 1, 3)
    got = c.rst(1)
    c.close()
    return got == PROTOCOL_ERROR, "rst=%s" % got


def big_stream(c, sid, announce, frames, frame_len):
    """A Join stream carrying frames DATA frames of frame_len bytes of one
    announced gRPC message (announce bytes)."""
    b = c.headers(sid)
    b += fhdr(frame_len, DATA, 0, sid) + grpc_prefix(announce) + b"\x03" * (frame_len - 5)
    for _ in range(frames - 1):
        b += fhdr(frame_len, DATA, 0, sid) + b"\x04" * frame_len
    return b


def case_rst_after_large_data(port, srv):
    c = H2(port)
    ok = c.send(big_stream(c, 1, 6_000_000, 3, 900_000) +
                RstStreamFrame(1, error_code=CANCEL).serialize() +
                PingFrame(0, opaque_data=b"12345678").serialize())
    ok = ok and c.wait_for(lambda f: f[0] == PING and f[1] & 1, 5)  # still served
    c.close()
    return ok, "no PING ACK after the reset"


def case_rst_inside_large_data(port, srv):
    """RST_STREAM between the DATA frames of one gRPC message (mid-message),
    and a DATA frame cut short by RST bytes (the peer lies about the length:
    the RST becomes payload, then the connection ends mid-frame)."""
    c = H2(port)
    ok = c.send(big_stream(c, 1, 6_000_000, 2, 700_000) +
                RstStreamFrame(1, error_code=PROTOCOL_ERROR).serialize() +
                big_stream(c, 3, 6_000_000, 1, 500_000) +
                fhdr(1_000_000, DATA, 0, 3) + b"\x05" * 300_000 +
                RstStreamFrame(3, error_code=CANCEL).serialize())
    c.pump(0.5)
    c.close()
    return ok, ""


def case_goaway_after_large_data(port, srv):
    c = H2(port)
    c.send(big_stream(c, 1, 6_000_000, 4, 1_000_000) +
           GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())
    closed = c.pump(3)
    c.close()
    c2 = H2(port)
    c2.send(big_stream(c2, 1, 6_000_000, 1, 800_000) +
            GoAwayFrame(0, last_stream_id=0, error_code=PROTOCOL_ERROR).serialize() +
            fhdr(800_000, DATA, 0, 1) + b"\x06" * 400_000)
    c2.s.shutdown(socket.SHUT_WR)
    closed2 = c2.pump(3)
    c2.close()
    return closed and closed2, "closed after GOAWAY: %s %s" % (closed, closed2)


def case_large_reads(port, srv):
    """A whole 3 MB message in DATA frames of 256 KiB to 1 MiB (read straight
    into the message buffer), the connection still answers; then a message
    announcing more than --max-message: its stream ends RESOURCE_EXHAUSTED."""
    c = H2(port)
    n = 3_000_000
    msg = grpc_prefix(n) + (bytes(range(256)) * (n // 256 + 1))[:n]
    b = c.headers(1)
    off = 0
    for k in (262_144, 400_000, 1_048_576, 1_000_000, len(msg) - 2_710_720):
        b += DataFrame(1, msg[off:off + k]).serialize()
        off += k
    assert off == len(msg)
    ok = c.send(b + PingFrame(0, opaque_data=b"bigreads").serialize())
    ok = ok and c.wait_for(lambda f: f[0] == PING and f[1] & 1 and f[3] == b"bigreads", 5)
    c.send(c.headers(3) + DataFrame(3, grpc_prefix(MAX_MESSAGE + 1) + b"\x00" * 300_000)
           .serialize())
    c.wait_for(lambda f: f[0] == HEADERS and f[2] == 3 and f[1] & 1, 5)
    st = c.stream_status(3)
    c.close()
    return ok and st == 8, "PING answered %s, grpc-status %s" % (ok, st)


def case_frame_over_max_size(port, srv):
    c = H2(port)
    c.send(c.headers(1) + fhdr(4_000_000, DATA, 0, 1) + b"\x07" * 4_000_000)
    c.pump(3)
    g = c.goaway()
    c.close()
    return g == FRAME_SIZE_ERROR, "goaway %s" % g


def case_many_streams(port, srv):
    """Refused streams (wrong path) close the connection after a few, with one
    log line for them; Join streams per connection are bounded."""
    before = srv.output()
    c = H2(port)
    b = b""
    for i in range(200):
        b += c.headers(1 + 2 * i, path="/flwr.proto.FlowerService/Nope", end_stream=True)
    c.send(b)
    closed = c.pump(3)
    g = c.goaway()
    c.close()
    new = srv.output()[len(before):]
    lines = [ln for ln in new.splitlines() if "Nope" in ln or "refused" in ln]
    # Join streams beyond --max-streams-per-conn (default 32) are refused, so a
    # connection opening 100 of them is refused 68 times: closed at the 10th
    before = srv.output()
    c2 = H2(port)
    c2.send(b"".join(c2.headers(1 + 2 * i) for i in range(100)))
    closed2 = c2.pump(3)
    g2 = c2.goaway()
    refused = [s for s in range(1, 201, 2) if c2.stream_status(s) == 8]
    c2.close()
    new = srv.output()[len(before):]
    lines2 = [ln for ln in new.splitlines() if "Join streams on one connection" in ln]
    ok = closed and g == ENHANCE_YOUR_CALM and 1 <= len(lines) <= 3 and \
        closed2 and g2 == ENHANCE_YOUR_CALM and len(refused) >= 1 and 1 <= len(lines2) <= 2
    return ok, "wrong path: closed=%s goaway=%s log lines=%d; joins: closed=%s goaway=%s " \
        "refused=%d log lines=%d\n%s" % (closed, g, len(lines), closed2, g2, len(refused),
                                        len(lines2), "\n".join(lines[:6] + lines2[:4]))


def case_idle_connections(port, srv):
    """A TCP connection that never speaks, one that sends only the preface and
    SETTINGS (half-open HTTP/2), one that half-closes after the preface: all
    closed after the handshake timeout; their slots come back."""
    a = socket.create_connection(("127.0.0.1", port))
    b = H2(port)
    c = H2(port, ack=False)
    c.s.shutdown(socket.SHUT_WR)
    t0 = time.time()
    res = []
    for conn in (a, b.s, c.s):
        conn.settimeout(HANDSHAKE_TIMEOUT * 3 + 2)
        try:
            while conn.recv(65536):
                pass
            res.append(time.time() - t0)
        except (socket.timeout, ConnectionResetError):
            res.append(None if isinstance(sys.exc_info()[1], socket.timeout) else
                       time.time() - t0)
        conn.close()
    ok = all(r is not None and r < HANDSHAKE_TIMEOUT * 3 + 1 for r in res)
    return ok, "closed after %s s" % res


def case_settings_flood(port, srv):
    c = H2(port)
    c.send(SettingsFrame(0, settings={4: 65535}).serialize() * 20000)
    return ends_calm(c)


def case_ping_flood(port, srv):
    """PINGs as fast as we can, never reading the ACKs."""
    c = H2(port)
    blob = PingFrame(0, opaque_data=b"p" * 8).serialize() * 5000
    c.s.settimeout(3)
    try:
        for _ in range(40):
            c.s.sendall(blob)
    except OSError:
        pass
    return ends_calm(c)


def case_headers_rapid_reset(port, srv):
    """Open a Join stream and reset it at once, thousands of times."""
    c = H2(port)
    b = b""
    for i in range(5000):
        sid = 1 + 2 * i
        b += c.headers(sid) + RstStreamFrame(sid, error_code=CANCEL).serialize()
    c.send(b)
    return ends_calm(c)


def case_continuation_flood(port, srv):
    """A header block that never ends: CONTINUATION frames forever."""
    c = H2(port)
    hb = c.enc.encode([(":method", "POST"), (":path", JOIN)])
    c.send(HeadersFrame(1, hb).serialize())
    junk = ContinuationFrame(1, b"\x40\x01a\x01b" * 1000).serialize()
    for _ in range(200):
        if not c.send(junk):
            break
    return ends_calm(c)


def case_trailers_over_limit(port, srv):
    c = H2(port)
    c.send(c.headers(1) + DataFrame(1, grpc_prefix(0)).serialize())
    trailers = [("x-pad-%d" % i, "v" * 1000) for i in range(40)]
    c.send(HeadersFrame(1, c.enc.encode(trailers), flags=["END_HEADERS",
                                                           "END_STREAM"]).serialize())
    closed = c.pump(3)
    g = c.goaway()
    r = c.rst(1)
    c.close()
    return (closed and g is not None) or r is not None, "closed=%s goaway=%s rst=%s" % (
        closed, g, r)


def case_slowloris(port, srv):
    """The preface and a Join request, one byte every 50 ms: the connection is
    cut at the handshake timeout, not when the request is finally complete."""
    s = socket.create_connection(("127.0.0.1", port))
    c = H2.__new__(H2)
    c.port, c.enc = port, Encoder()
    msg = PREFACE + SettingsFrame(0).serialize() + c.headers(1)
    t0 = time.time()
    cut = None
    for i in range(len(msg)):
        try:
            s.send(msg[i:i + 1])
        except OSError:
            cut = time.time() - t0
            break
        time.sleep(0.05)
        s.settimeout(0.0)
        try:
            if s.recv(65536) == b"":
                cut = time.time() - t0
                break
        except (BlockingIOError, socket.timeout):
            pass
        except OSError:
            cut = time.time() - t0
            break
    s.close()
    return cut is not None and cut < HANDSHAKE_TIMEOUT * 3 + 1, "cut after %s s" % cut


def case_per_address_cap(port, srv):
    """More connections from one address than --max-conn-per-addr: the extra
    ones are refused at once (GOAWAY or close), one log line for all."""
    before = srv.output()
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(PER_ADDR + 10)]
    closed = 0
    for s in conns:
        s.settimeout(0.3)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    closed += 1
                    break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed += 1
    for s in conns:
        s.close()
    new = srv.output()[len(before):]
    lines = [ln for ln in new.splitlines() if "per address" in ln]
    # the honest clients' connection counts too: at least 10 extra are refused
    return closed >= 10 and 1 <= len(lines) <= 3, "closed %d of %d, %d log lines" % (
        closed, len(conns), len(lines))


CASES = [case_data_over_content_length, case_data_under_content_length,
         case_rst_after_large_data, case_rst_inside_large_data, case_goaway_after_large_data,
         case_large_reads, case_frame_over_max_size, case_many_streams, case_idle_connections,
         case_settings_flood, case_ping_flood, case_headers_rapid_reset,
         case_continuation_flood, case_trailers_over_limit, case_slowloris,
         case_per_address_cap]


def main():
    only = os.environ.get("HOSTILE_CASES")
    cases = [c for c in CASES if not only or any(k in c.__name__ for k in only.split(","))]
    n = len(cases)
    gates = [threading.Event() for _ in range(n + 1)]

    def fit(arrays, cfg):
        r = cfg["server_round"].sint64 if "server_round" in cfg else 0
        gates[min(max(r, 1), n) - 1].wait(120)
        return [a + np.float32(1) for a in arrays], 10, {}

    def ev(arrays, cfg):
        return 0.5, 10, {}

    with L.tmpdir() as d:
        out = os.path.join(d, "out")
        srv, port = L.start_server(
            ["--rounds", str(n), "--model", L.TINY_MODEL, "--min-fit-clients", "2",
             "--min-available-clients", "2", "--fraction-evaluate", "0",
             "--wait-clients", "60", "--round-timeout", "120", "--no-checkpoint",
             "--handshake-timeout", str(HANDSHAKE_TIMEOUT),
             "--max-conn-per-addr", str(PER_ADDR), "--max-message", str(MAX_MESSAGE),
             "--out", out], d)
        honest = [L.NumpyClient(port, fit, ev) for _ in range(2)]
        for h in honest:
            h.start()
        for i, case in enumerate(cases):
            name = case.__name__[5:]
            rnd = i + 1
            t0 = time.time()
            while "fit_round %d: strategy sampled" % rnd not in srv.output() and \
                    time.time() - t0 < 30 and srv.p.poll() is None:
                time.sleep(0.05)
            try:
                ok, detail = case(port, srv)
            except Exception as e:  # noqa: BLE001
                ok, detail = False, "exception %r" % e
            L.check(name, ok, detail)
            time.sleep(0.3)  # let the server drop the case's connections
            gates[i].set()
            want = "fit_round %d received 2 results and 0 failures" % rnd
            t0 = time.time()
            while want not in srv.output() and time.time() - t0 < 30 and srv.p.poll() is None:
                time.sleep(0.05)
            L.check("round_after_" + name, want in srv.output(),
                    "server exit %s\n%s" % (srv.p.poll(), srv.output()[-3000:]))
            if srv.p.poll() is not None:
                break
        for g in gates:
            g.set()
        rc = srv.wait(60)
        L.check("server_exit_0", rc == 0, "rc=%s\n%s" % (rc, srv.output()[-3000:]))
        for h in honest:
            h.done.wait(10)
            L.check("honest_client_done", h.error is None and h.reconnect is not None, h.error)
        srv.kill()
        hostile_replies(d)
    return 1 if L.failures else 0


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def hostile_replies(d):
    """Credentialed clients with hostile replies, next to two honest ones: a
    FitRes of 2 million empty tensor entries (4 MB; the model has 4 tensors)
    is rejected without growing the server by more than a few times its wire
    size (it used to cost 16 bytes per entry), and a failure status whose
    message carries a newline and terminal escapes reaches the log escaped."""
    out = os.path.join(d, "replies")
    srv, port = L.start_server(
        ["--rounds", "1", "--model", L.TINY_MODEL, "--min-fit-clients", "4",
         "--min-available-clients", "4", "--fraction-evaluate", "0", "--wait-clients", "60",
         "--round-timeout", "60", "--no-checkpoint", "--out", out], d, "replies")
    n = 2_000_000
    entries = b"\x0a\x00" * n

    def varint(v):
        b = b""
        while v >= 0x80:
            b += bytes([v & 0x7f | 0x80])
            v >>= 7
        return b + bytes([v])
    params = b"\x12" + varint(len(entries)) + entries
    fit = params + b"\x18\x0a"
    amplifier = b"\x22" + varint(len(fit)) + fit
    hwm = {}

    def amp_fit(arrays, cfg):
        hwm["before"] = vm_hwm_kib(srv.p.pid)
        return amplifier

    def liar_fit(arrays, cfg):
        m = L.pb.ClientMessage()
        m.fit_res.status.code = 3
        m.fit_res.status.message = "boom\nINFO petal fake line \x1b[31mred\x1b[0m"
        return m.SerializeToString()

    def fit(arrays, cfg):
        time.sleep(1.5)  # the server lives on after the hostile replies: its peak is read
        return [a + np.float32(1) for a in arrays], 10, {}

    def ev(arrays, cfg):
        return 0.5, 10, {}
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set() and srv.p.poll() is None:
            peak[0] = max(peak[0], vm_hwm_kib(srv.p.pid))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cs = [L.NumpyClient(port, fit, ev), L.NumpyClient(port, fit, ev),
          L.NumpyClient(port, None, ev, raw_fit=amp_fit),
          L.NumpyClient(port, None, ev, raw_fit=liar_fit)]
    for c in cs:
        c.start()
    for c in cs:
        c.done.wait(60)
    rc = srv.wait(60)
    stop.set()
    sampler.join(5)
    after = peak[0]
    log = srv.output()
    rnd = [e for e in L.events(os.path.join(out, "events.jsonl")) if e["event"] == "round"]
    L.check("replies_round_completes", rc == 0 and len(rnd) == 1 and rnd[0]["results"] == 2 and
            rnd[0]["failures"] == 2, (rc, rnd, log[-2000:]))
    L.check("tensor_amplification_rejected",
            "%d tensors, more than the 4 expected" % n in log, log[-2000:])
    grow = (after - hwm.get("before", after)) * 1024
    print("  server peak grew %.1f MB for a %.1f MB FitRes of %d empty tensors" % (
        grow / 1e6, len(amplifier) / 1e6, n))
    # the message buffer grows by doubling; under ASan the freed smaller ones stay in
    # its quarantine (the unbounded decode used to add 32 MB on top: 9x)
    asan = b"__asan_init" in open(L.PETAL, "rb").read()
    L.check("tensor_amplification_memory_bounded",
            "before" in hwm and grow < (7 if asan else 4) * len(amplifier),
            "peak grew %d bytes for %d wire bytes" % (grow, len(amplifier)))
    L.check("status_message_escaped", "boom\\nINFO petal fake line \\x1b[31mred" in log and
            "\x1b" not in log and "\nINFO petal fake" not in log,
            [ln for ln in log.splitlines() if "boom" in ln][:3])
    srv.kill()


if __name__ == "__main__":
    sys.exit(main())
