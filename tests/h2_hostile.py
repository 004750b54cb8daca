"""h2_hostile.py - an HTTP/2 server side built by hand, for tests that play a
broken or malicious gRPC server (not a test itself): frames (struct), HPACK
literals without indexing or Huffman, Flower ServerMessages, and Conn, one
accepted connection whose reader thread parses the client's frames (ACKs its
SETTINGS, and PINGs when polite; returns flow-control credit; reassembles its
gRPC messages into ClientMessages)."""
import select
import struct
import threading
import time

import numpy as np

import test_agents_lib as L
from test_agents_lib import pb

# ---- HTTP/2 by hand ---------------------------------------------------------------
DATA, HEADERS, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = 0, 1, 3, 4, 5, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_int(v, prefix_bits, first=0):
    cap = (1 << prefix_bits) - 1
    if v < cap:
        return bytes([first | v])
    out = [first | cap]
    v -= cap
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack(fields):
    """Literal header fields without indexing, new names, no Huffman."""
    out = b""
    for n, v in fields:
        n, v = n.encode(), v.encode()
        out += b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v
    return out


def settings(**kw):
    ids = {"window": 4, "frame": 5, "streams": 3, "header_list": 6}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in kw.items()))


def response_headers(status="200", ctype="application/grpc", end=False):
    f = [(":status", status)] + ([("content-type", ctype)] if ctype else [])
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), 1, hpack(f))


def trailers(status, message=None):
    f = [("grpc-status", str(status))] + ([("grpc-message", message)] if message else [])
    return frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack(f))


def grpc(body):
    return b"\x00" + struct.pack(">I", len(body)) + body


def smsg(kind, **cfg):
    """A ServerMessage: kind in fit/evaluate/get_parameters/get_properties/reconnect."""
    m = pb.ServerMessage()
    if kind == "reconnect":
        m.reconnect_ins.seconds = cfg.pop("seconds", 0)
        m.reconnect_ins.SetInParent()
    elif kind == "get_parameters":
        m.get_parameters_ins.SetInParent()
    elif kind == "get_properties":
        m.get_properties_ins.SetInParent()
    else:
        ins = m.fit_ins if kind == "fit" else m.evaluate_ins
        arrays = cfg.pop("arrays", None)
        if arrays is None:
            rng = np.random.default_rng(1)
            arrays = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in L.TINY_SHAPES]
        ins.parameters.CopyFrom(L.params(arrays))
        for k, v in cfg.items():
            if isinstance(v, float):
                ins.config[k].double = v
            else:
                ins.config[k].sint64 = v
    return m.SerializeToString()


CLIENT_MAX_FRAME = 1 << 20  # the SETTINGS_MAX_FRAME_SIZE petal's client announces


def msg_frame(body, end=False):
    """One gRPC message as DATA frames no larger than the client accepts."""
    b = grpc(body)
    parts = [b[i:i + CLIENT_MAX_FRAME] for i in range(0, len(b), CLIENT_MAX_FRAME)] or [b""]
    return b"".join(frame(DATA, END_STREAM if end and i == len(parts) - 1 else 0, 1, p)
                    for i, p in enumerate(parts))


class Conn:
    """One accepted connection: a reader thread that parses the client's
    frames (ACKs SETTINGS and, when polite, PINGs; returns flow-control
    credit; reassembles the client's gRPC messages), and send helpers."""

    def __init__(self, sock, polite=True, credit=True, mute=False):
        self.s = sock
        self.polite, self.credit, self.mute = polite, credit, mute
        self.lock = threading.Lock()
        self.replies = []               # ClientMessages, in order
        self.got = threading.Condition()
        self.joined = threading.Event()  # the client's HEADERS arrived
        self.closed = threading.Event()
        self.reading = True
        self.client_frames = []          # (type, flags, sid, payload[:64])
        if not mute:  # the server's connection preface: a SETTINGS frame
            self.send(settings())
        threading.Thread(target=self.reader, daemon=True).start()

    def send(self, b):
        with self.lock:
            try:
                self.s.sendall(b)
                return True
            except OSError:
                return False

    def stop_reading(self):
        self.reading = False

    def reader(self):
        raw = b""
        pre = False
        msg = b""
        try:
            while True:
                if not self.reading:
                    time.sleep(0.05)
                    if self.closed.is_set():
                        return
                    continue
                r, _, _ = select.select([self.s], [], [], 0.05)
                if not r:
                    continue
                b = self.s.recv(1 << 16)
                if not b:
                    break
                raw += b
                if not pre:
                    if len(raw) < 24:
                        continue
                    raw, pre = raw[24:], True
                while len(raw) >= 9:
                    n = int.from_bytes(raw[:3], "big")
                    if len(raw) < 9 + n:
                        break
                    t, fl, sid = raw[3], raw[4], int.from_bytes(raw[5:9], "big") & 0x7fffffff
                    p, raw = raw[9:9 + n], raw[9 + n:]
                    self.client_frames.append((t, fl, sid, p[:64]))
                    if t == SETTINGS and not fl & ACK and not self.mute:
                        self.send(frame(SETTINGS, ACK, 0))
                    elif t == PING and not fl & ACK and self.polite:
                        self.send(frame(PING, ACK, 0, p))
                    elif t == HEADERS and sid == 1:
                        self.joined.set()
                    elif t == DATA and sid == 1:
                        if self.credit and n:
                            self.send(frame(WINDOW, 0, 0, struct.pack(">I", n)) +
                                      frame(WINDOW, 0, 1, struct.pack(">I", n)))
                        msg += p
                        while len(msg) >= 5 and len(msg) >= 5 + int.from_bytes(msg[1:5], "big"):
                            k = int.from_bytes(msg[1:5], "big")
                            cm = pb.ClientMessage()
                            cm.ParseFromString(msg[5:5 + k])
                            msg = msg[5 + k:]
                            with self.got:
                                self.replies.append(cm)
                                self.got.notify_all()
        except OSError:
            pass
        finally:
            self.closed.set()
            with self.got:
                self.got.notify_all()

    def reply(self, i, timeout=10):
        """The i-th ClientMessage (0-based), or None."""
        end = time.time() + timeout
        with self.got:
            while len(self.replies) <= i and not self.closed.is_set() and time.time() < end:
                self.got.wait(0.05)
            return self.replies[i] if len(self.replies) > i else None

    def client_sent(self, ftype):
        return [f for f in self.client_frames if f[0] == ftype]

    def open(self, window=None):
        """SETTINGS (and connection credit), the response headers."""
        self.joined.wait(10)
        b = b"" if window is None else settings(window=window)
        if window != 0:
            b += frame(WINDOW, 0, 0, struct.pack(">I", 1 << 30))
        self.send(b + response_headers())
