#!/usr/bin/python3
"""gen_corpus_h2_client.py - seeds of the h2_client fuzz target (what a server
sends to a pnet_client, in steps joined by FZ_SEP; tests/fuzz/fuzz_h2_client.c).

    /usr/bin/python3 tests/fuzz/gen_corpus_h2_client.py [BUILD]

Writes tests/fuzz/corpus/h2_client/ (committed; rerun only to change seeds).
Frames are built by tests/h2_hostile.py; messages with the protobuf stubs of
BUILD/gen/py (make build/gen/py/transport_pb2.py). Files named min-* are kept.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
os.environ["BUILD"] = os.path.join(ROOT, BUILD)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import numpy as np  # noqa: E402

from h2_hostile import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, RST,  # noqa: E402
                        SETTINGS, WINDOW, CONT, ACK, frame, grpc, hpack, msg_frame,
                        response_headers, settings, smsg, trailers)

SEP = b"\n@@@@\n"
OUT = os.path.join(HERE, "corpus", "h2_client")
SHAPES = [(2, 2, 1, 2), (2,), (8, 3), (3,)]  # fuzz_h2_client.c's model


def put(name, *steps):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(SEP.join(steps))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if not f.startswith("min-"):
            os.unlink(os.path.join(OUT, f))
    pre = settings() + frame(SETTINGS, ACK, 0) + frame(WINDOW, 0, 0, struct.pack(">I", 1 << 20))
    hdr = response_headers()
    small = [np.ones(s, np.float32) for s in SHAPES]
    fit = msg_frame(smsg("fit", arrays=small, epochs=1, batch_size=8, server_round=1))
    ev = msg_frame(smsg("evaluate", arrays=small))
    bye = msg_frame(smsg("reconnect"))
    put("session", pre + hdr, msg_frame(smsg("get_parameters")), fit, ev,
        msg_frame(smsg("get_properties")), bye)
    put("session_then_trailers_ok", pre + hdr, fit, trailers(0))
    put("error_trailers", pre + hdr, trailers(13, "boom"))
    put("trailers_only", pre + frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack(
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "16")])))
    put("http_500", pre + response_headers(status="500", ctype="text/html"))
    put("http_404_end", pre + response_headers(status="404", ctype="text/html", end=True))
    put("end_stream_no_trailers", pre + hdr, frame(DATA, END_STREAM, 1, b""))
    put("end_inside_message", pre + hdr, frame(DATA, END_STREAM, 1, grpc(b"\x1a\x00")[:3]))
    put("goaway", pre + hdr, frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0) + b"bye"))
    put("goaway_error", pre + hdr, frame(GOAWAY, 0, 0, struct.pack(">II", 0, 11)))
    put("rst_stream", pre + hdr, frame(RST, 0, 1, struct.pack(">I", 8)))
    put("ping_window", pre + hdr, frame(PING, 0, 0, b"12345678") +
        frame(WINDOW, 0, 1, struct.pack(">I", 1000)), fit)
    m = grpc(smsg("fit", arrays=small, epochs=0))
    put("split_message", pre + hdr, frame(DATA, 0, 1, m[:3]), frame(DATA, 0, 1, m[3:100]),
        frame(DATA, 0, 1, m[100:]))
    put("padded_data", pre + hdr, frame(DATA, 0x8, 1, bytes([4]) + grpc(smsg("get_properties")) +
                                        b"\0" * 4))
    hb = hpack([(":status", "200"), ("content-type", "application/grpc")])
    put("continuation", pre + frame(HEADERS, 0, 1, hb[:10]) + frame(CONT, END_HEADERS, 1, hb[10:]),
        bye)
    put("queue_ahead", pre + hdr, fit + msg_frame(smsg("get_properties")) * 6)
    put("huge_announce", pre + hdr, frame(DATA, 0, 1, b"\0" + struct.pack(">I", 1 << 30)))
    put("compressed", pre + hdr, frame(DATA, 0, 1, b"\x01" + struct.pack(">I", 2) + b"\x1a\x00"))
    put("zero_window", settings(window=0) + frame(SETTINGS, ACK, 0) + hdr,
        msg_frame(smsg("get_parameters")))
    put("bad_max_frame", settings(frame=1))
    put("nan_fit", pre + hdr, msg_frame(smsg("fit", arrays=[np.full(s, np.nan, np.float32)
                                                            for s in SHAPES])))
    put("reconnect_seconds", pre + hdr, msg_frame(smsg("reconnect", seconds=5)))
    put("data_stream0", pre + frame(DATA, 0, 0, b"xx"))
    put("unknown_member", pre + hdr, msg_frame(b"\x3a\x00"))


if __name__ == "__main__":
    main()
