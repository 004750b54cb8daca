#!/usr/bin/python3
"""test_exit_status.py - success means the work was done (issue 19): every
run that cannot do what was asked, or whose requested output was not
written, ends non-zero with the reason; options that make a run a no-op are
refused before any work."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402
import numpy as np  # noqa: E402
import transport_pb2 as pb  # noqa: E402


def petal(args, d, timeout=60):
    r = subprocess.run([L.PETAL] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, cwd=d)
    return r.returncode, r.stdout.decode(errors="replace")


def model(d):
    m = os.path.join(d, "m.json")
    with open(m, "w") as f:
        f.write(L.TINY_MODEL)
    return m


def one_client_server(d, name, extra):
    return L.start_server(["--rounds", "1", "--model", model(d), "--min-fit-clients", "1",
                           "--min-available-clients", "1", "--min-evaluate-clients", "1",
                           "--wait-clients", "30", "--round-timeout", "30"] + extra, d, name)


def good_client(port):
    c = L.NumpyClient(port, lambda a, cfg: ([x + 0.01 for x in a], 10, {}),
                      lambda a, cfg: (0.5, 10, {"accuracy": 0.5}))
    c.start()
    return c


def main():
    with L.tmpdir() as d:
        # --save-weights whose directory cannot hold it: refused before the run
        blocker = os.path.join(d, "a-file")
        open(blocker, "w").close()
        rc, out = petal(["server", "--address", "127.0.0.1:0", "--save-weights",
                         os.path.join(blocker, "w.npz")], d)
        L.check("exit_save_weights_unwritable_refused_at_start",
                rc == 2 and "--save-weights" in out and "is not a directory" in out, out[-500:])
        # ... and gone by the end of the run: the run ends non-zero, saying so
        wd = os.path.join(d, "weights")
        os.makedirs(wd)
        srv, port = one_client_server(d, "srv_sw", ["--save-weights", os.path.join(wd, "w.npz"),
                                                     "--no-checkpoint"])
        os.rmdir(wd)
        c = good_client(port)
        rc = srv.wait(120)
        c.done.wait(30)
        L.check("exit_save_weights_failed_at_end", rc == 1 and "--save-weights" in srv.output()
                and "FL finished" in srv.output(), "rc=%s\n%s" % (rc, srv.output()[-800:]))
        srv.kill()

        # --epochs 0 trains nothing: refused, with the real bounds
        rc, out = petal(["server", "--epochs", "0"], d)
        L.check("exit_epochs_0_refused", rc == 2 and "--epochs: '0' is not an integer in "
                "[1, 100000]" in out, out[-300:])
        # fraction_fit 0 and min_fit_clients 0: no client would ever train
        rc, out = petal(["server", "--fraction-fit", "0", "--min-fit-clients", "0",
                         "--min-available-clients", "1"], d)
        L.check("exit_no_fit_clients_refused", rc == 2 and "every round would do nothing" in out,
                out[-300:])

        # a checkpoint of round 1 resumed with --rounds 1: nothing left to run
        ck = os.path.join(d, "ck")
        srv, port = one_client_server(d, "srv_ck", ["--checkpoint-dir", ck])
        c = good_client(port)
        rc = srv.wait(120)
        c.done.wait(30)
        L.check("exit_checkpoint_run_ok", rc == 0, srv.output()[-800:])
        srv.kill()
        rc, out = petal(["server", "--address", "127.0.0.1:0", "--model", model(d),
                         "--resume", ck, "--rounds", "1", "--wait-clients", "1"], d)
        L.check("exit_resume_beyond_rounds", rc == 2 and "checkpoint in %s is of round 1 and "
                "--rounds is 1: nothing is left to run" % ck in out, out[-500:])

        # every fit fails: no round produced new parameters -> non-zero
        def raw_fit(arrays, config):
            r = pb.ClientMessage()
            r.fit_res.status.code = pb.FIT_NOT_IMPLEMENTED
            r.fit_res.status.message = "cannot train"
            return r.SerializeToString()
        srv, port = one_client_server(d, "srv_nofit", ["--no-checkpoint", "--fraction-evaluate",
                                                       "0", "--min-evaluate-clients", "0"])
        fc = L.NumpyClient(port, None, lambda a, cfg: (0.5, 10, {"accuracy": 0.5}),
                           raw_fit=raw_fit)
        fc.start()
        rc = srv.wait(120)
        L.check("exit_no_round_updated", rc == 1 and "none of the 1 rounds produced new "
                "parameters" in srv.output(), "rc=%s\n%s" % (rc, srv.output()[-800:]))
        srv.kill()

        # petal run with an --out it cannot create: refused at once
        rc, out = petal(["run", "--out", os.path.join(blocker, "results")], d)
        L.check("exit_run_out_uncreatable", rc == 2 and "--out" in out and
                "strategies completed" not in out, out[-500:])
        rc, out = petal(["run", "--epochs", "0"], d)
        L.check("exit_run_epochs_0", rc == 2 and "[1, 100000]" in out, out[-300:])
        # messages state the real bounds (issue 19.7)
        for args, want in ((["run", "--lr", "1e4"], "--lr must be a number in [1e-12, 1000]"),
                           (["run", "--seed", "4294967296"],
                            "--seed must be an integer in [0, 4294967295]"),
                           (["server", "--seed", "4294967296"],
                            "--seed: '4294967296' is not an integer in [0, 4294967295]"),
                           (["client", "--val-split", "1"],
                            "--val-split: '1' is not a number in [0, 0.99]")):
            rc, out = petal(args, d)
            L.check("exit_bounds_%s_%s" % (args[0], args[1].strip("-")), rc == 2 and want in out,
                    out[-300:])
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
