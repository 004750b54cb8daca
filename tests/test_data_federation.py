#!/usr/bin/python3
"""test_data_federation.py - a federation agrees on its data (issue 19).

Image folders on 127.0.0.1: a server evaluating on its folder (classes a, b,
c) and Petal clients whose folders differ:
  - A holds only classes b and c (non-IID): its labels follow the server's,
    and the files of A's training split that the server holds out (Keras'
    shuffle cuts A's smaller list differently) are left out;
  - D holds the server's folder: nothing to adopt, nothing left out;
  - B holds the server's folder with another --val-split/--seed: refused,
    the message names both settings;
  - C holds a class the server does not know: refused, naming it.
With A and D the server's accuracy must reach what aligned labels give.
The same folder through `petal run` (non-IID shards) agrees and completes."""
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"a": (220, 30, 30), "b": (30, 220, 30), "c": (30, 30, 220), "d": (220, 220, 30)}
PER_CLASS = 24
MODEL = ('{"input_shape": [8, 8, 3], "layers": [{"type": "Flatten"},'
         '{"type": "Dense", "units": 4, "activation": "softmax"}]}')


def png(path, rgb, seed):
    """An 8x8 RGB PNG of one colour with a little noise."""
    rng = np.random.RandomState(seed)
    px = np.clip(np.array(rgb)[None, None, :] + rng.randint(-20, 21, (8, 8, 3)), 0, 255)
    raw = b"".join(b"\x00" + bytes(px[y].astype(np.uint8).reshape(-1)) for y in range(8))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_folder(root, classes, src=None):
    """classes of PER_CLASS images; with src, copies of src's files (same names)."""
    for c in classes:
        os.makedirs(os.path.join(root, c))
        for i in range(PER_CLASS):
            name = "%s%02d.png" % (c, i)
            if src and os.path.exists(os.path.join(src, c, name)):
                shutil.copy(os.path.join(src, c, name), os.path.join(root, c, name))
            else:
                png(os.path.join(root, c, name), COLORS[c], hash((c, i)) & 0xffff)


def keras_split(classes, val_split, seed):
    """(training files, held-out files) as image_dataset_from_directory cuts
    a flat folder: classes sorted, files sorted, RandomState(seed).shuffle,
    the last int(val_split * n) held out."""
    files = ["%s/%s%02d.png" % (c, c, i) for c in sorted(classes) for i in range(PER_CLASS)]
    idx = np.arange(len(files))
    np.random.RandomState(seed).shuffle(idx)
    nval = int(val_split * len(files))
    order = [files[i] for i in idx]
    return order[:len(files) - nval], order[len(files) - nval:]


def server(d, data, out, extra):
    return L.start_server(["--rounds", "3", "--model", os.path.join(d, "m.json"),
                           "--dataset", "folder:" + data, "--val-split", "0.25", "--seed", "1337",
                           "--epochs", "4", "--batch-size", "8", "--lr", "0.05",
                           "--wait-clients", "60", "--round-timeout", "120",
                           "--out", out] + extra, d, name=os.path.basename(out))


def client(d, port, data, name, out, extra=()):
    return L.Proc(["client", "--server", "127.0.0.1:%d" % port,
                   "--model", os.path.join(d, "m.json"), "--dataset", "folder:" + data,
                   "--id", name, "--out", out, "--connect-timeout", "60"] + list(extra),
                  d, name)


def contract_events(out, name):
    return [e for e in L.events(os.path.join(out, "events.jsonl"))
            if e.get("event") == "data_contract" and e.get("source") == "client_" + name]


def federation(d, data):
    """Server + A (lacks class a) + D (the server's folder)."""
    fa = os.path.join(d, "clientA")
    make_folder(fa, ["b", "c"], src=data)
    out = os.path.join(d, "fed")
    srv, port = server(d, data, out, ["--min-fit-clients", "2", "--min-available-clients", "2",
                                      "--min-evaluate-clients", "2"])
    a = client(d, port, fa, "A", out)
    dd = client(d, port, data, "D", out)
    ra, rd, rs = a.wait(300), dd.wait(300), srv.wait(120)
    L.check("datafed_server_exit_0", rs == 0, srv.output()[-2000:])
    L.check("datafed_clients_exit_0", ra == 0 and rd == 0,
            "A %s D %s\n%s\n%s" % (ra, rd, a.output()[-1500:], dd.output()[-1500:]))
    ev = L.events(os.path.join(out, "events.jsonl"))
    rounds = [e for e in ev if e["event"] == "round"]
    acc = rounds[-1]["accuracy_centralized"] if rounds else None
    # misaligned labels (b -> 0, c -> 1 on A) cap the accuracy far below this
    L.check("datafed_accuracy_aligned", acc is not None and acc >= 0.95,
            [e.get("accuracy_centralized") for e in rounds])
    print("  centralised accuracy per round: %s" % [e.get("accuracy_centralized") for e in rounds])
    # A: labels aligned, the server's held-out files left out of its training
    a_train, _ = keras_split(["b", "c"], 0.25, 1337)
    _, srv_held = keras_split(["a", "b", "c"], 0.25, 1337)
    overlap = set(a_train) & set(srv_held)
    ca = contract_events(out, "A")
    L.check("datafed_A_contract", len(ca) == 1 and ca[0]["classes"] == 3, ca)
    excl = ca[0]["heldout_excluded"] if ca else -1
    L.check("datafed_A_leaves_out_server_heldout",
            len(overlap) > 0 and len(overlap) <= excl <= len(overlap) + 1,
            "left out %s, overlap %d" % (excl, len(overlap)))
    fits = [e for e in ev if e["event"] == "fit" and e["source"] == "client_A"]
    L.check("datafed_A_trains_on_the_rest", fits and all(
        f["examples"] == len(a_train) - excl for f in fits),
        [f.get("examples") for f in fits])
    L.check("datafed_A_log_says_aligned",
            "labels follow the server's 3 classes (this client holds 2 of them: non-IID, "
            "aligned)" in a.output() and "training images left out" in a.output(),
            a.output()[-1500:])
    cd = contract_events(out, "D")
    L.check("datafed_D_nothing_left_out", len(cd) == 1 and cd[0]["heldout_excluded"] == 0, cd)
    print("  client A: %d training files, %d in the server's held-out split, %d left out"
          % (len(a_train), len(overlap), excl))
    for p in (a, dd, srv):
        p.kill()


def refused(d, data, name, folder, extra, want, at_server):
    """A client that must be refused: non-zero exit, the reason in its output
    and in the server's log."""
    out = os.path.join(d, "ref" + name)
    srv, port = server(d, data, out, ["--min-fit-clients", "1", "--min-available-clients", "1",
                                      "--min-evaluate-clients", "1", "--rounds", "1",
                                      "--wait-clients", "3"])
    c = client(d, port, folder, name, out, extra)
    rc = c.wait(120)
    srv.wait(60)
    L.check("datafed_%s_refused" % name, rc not in (0, "timeout") and want in c.output(),
            "rc=%s\n%s" % (rc, c.output()[-1500:]))
    slog = open(os.path.join(out, "server_log.log")).read()
    L.check("datafed_%s_reason_at_server" % name, at_server in slog, slog[-1500:])
    for p in (c, srv):
        p.kill()


def flower_client(d, data):
    """A Flower-like client (grpcio, the NumPy client loop) ignores the keys it
    does not use: the round completes; it saw the contract in the config."""
    out = os.path.join(d, "flower")
    srv, port = server(d, data, out, ["--min-fit-clients", "1", "--min-available-clients", "1",
                                      "--min-evaluate-clients", "1", "--rounds", "1"])
    seen = {}

    def fit(arrays, config):
        seen["fit"] = sorted(config.keys())
        return arrays, 10, {}

    def evaluate(arrays, config):
        seen["evaluate"] = sorted(config.keys())
        return 0.5, 10, {"accuracy": 0.5}
    fc = L.NumpyClient(port, fit, evaluate)
    fc.start()
    rc = srv.wait(120)
    fc.done.wait(30)
    L.check("datafed_flower_client_round_completes", rc == 0 and fc.error is None,
            "rc=%s err=%s\n%s" % (rc, fc.error, srv.output()[-1500:]))
    L.check("datafed_flower_client_sees_contract",
            {"petal.classes", "petal.split", "petal.heldout"} <= set(seen.get("fit", [])) and
            {"petal.classes", "petal.split"} <= set(seen.get("evaluate", [])) and
            "petal.heldout" not in seen.get("evaluate", []), seen)
    srv.kill()


def decoder_caps(d, data):
    """--max-image-pixels reaches the loader: 8x8 images over a cap of 50
    pixels are skipped, named with the reason."""
    r = subprocess.run([L.PETAL, "client", "--server", "127.0.0.1:9", "--connect-timeout", "1",
                        "--model", os.path.join(d, "m.json"), "--dataset", "folder:" + data,
                        "--max-image-pixels", "50"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace")
    L.check("datafed_max_image_pixels", r.returncode != 0 and
            "header declares 8x8 = 64 pixels, more than the 50 allowed (--max-image-pixels)"
            in out and "could be decoded" in out, out[-1500:])


def through_run(d, data):
    out = os.path.join(d, "run")
    r = subprocess.run([L.PETAL, "run", "--clients", "2", "--rounds", "2", "--strategy", "FedAvg",
                        "--model", os.path.join(d, "m.json"), "--dataset", "folder:" + data,
                        "--partition", "shards:1", "--epochs", "4", "--batch-size", "8",
                        "--lr", "0.05", "--limit", "0", "--client-eval-limit", "0",
                        "--out", out, "--no-report", "--timeout", "300"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400)
    txt = r.stdout.decode(errors="replace")
    L.check("datafed_run_exit_0", r.returncode == 0, txt[-2000:])
    run_dir = os.path.join(out, "openblas", "FedAvg", "2")
    ev = L.events(os.path.join(run_dir, "events.jsonl"))
    cs = [e for e in ev if e.get("event") == "data_contract"]
    L.check("datafed_run_clients_agree", len(cs) == 2 and all(
        e["classes"] == 3 and e["heldout_excluded"] == 0 for e in cs), cs)


def main():
    with L.tmpdir() as d:
        with open(os.path.join(d, "m.json"), "w") as f:
            f.write(MODEL)
        data = os.path.join(d, "server")
        make_folder(data, ["a", "b", "c"])
        federation(d, data)
        fc = os.path.join(d, "clientC")
        make_folder(fc, ["a", "b", "d"], src=data)
        refused(d, data, "B", data, ["--val-split", "0.5", "--seed", "7"],
                "the server holds out 0.25 of its images with seed 1337, this client 0.5 with "
                "seed 7: 12 of its 36 training images are in the server's held-out split; "
                "start it with --val-split 0.25 --seed 1337",
                "the server holds out 0.25 of its images with seed 1337, this client 0.5 with "
                "seed 7")
        refused(d, data, "C", fc, [], "this client's class 'd' is not one of the server's "
                                     "classes (a, b, c)",
                "this client's class 'd' is not one of the server's classes (a, b, c)")
        flower_client(d, data)
        decoder_caps(d, data)
        through_run(d, data)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
