#!/usr/bin/python3
"""test_federation.py - a local federation on 127.0.0.1: one `petal server`
and three `petal client` processes, FedAvg, 3 rounds of fmnist-cnn on a small
Fashion-MNIST subset (Debian's dataset-fashion-mnist). Checks that every
process exits 0, that the centralised loss falls, and the results files."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def main():
    if not os.path.exists(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")):
        print("SKIP: federation Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 0
    with L.tmpdir() as d:
        out = os.path.join(d, "out")
        srv, port = L.start_server(
            ["--rounds", "3", "--strategy", "FedAvg", "--model", "fmnist-cnn",
             "--dataset", "fashion-mnist", "--eval-limit", "1000", "--min-fit-clients", "3",
             "--min-available-clients", "3", "--min-evaluate-clients", "3",
             "--epochs", "1", "--batch-size", "32", "--lr", "0.001", "--wait-clients", "120",
             "--round-timeout", "300", "--out", out, "--expected-clients", "3"], d)
        clients = [L.Proc(["client", "--server", "127.0.0.1:%d" % port, "--model", "fmnist-cnn",
                           "--dataset", "fashion-mnist", "--partition", "%d/3" % i,
                           "--limit", "1200", "--eval-limit", "300", "--out", out,
                           "--connect-timeout", "60"], d, "client%d" % i) for i in range(3)]
        rcs = [c.wait(600) for c in clients]
        rc = srv.wait(120)
        L.check("federation_server_exit_0", rc == 0, "rc=%s\n%s" % (rc, srv.output()[-3000:]))
        for i, (c, r) in enumerate(zip(clients, rcs)):
            L.check("federation_client%d_exit_0" % i, r == 0, "rc=%s\n%s" % (r, c.output()[-2000:]))
        ev = L.events(os.path.join(out, "events.jsonl"))
        r0 = [e for e in ev if e["event"] == "round0"]
        rounds = [e for e in ev if e["event"] == "round"]
        losses = [r0[0]["loss_centralized"]] if r0 else []
        losses += [e["loss_centralized"] for e in rounds]
        L.check("federation_three_rounds", len(rounds) == 3 and all(
            e["results"] == 3 and e["failures"] == 0 for e in rounds), rounds)
        L.check("federation_loss_falls", len(losses) == 4 and losses[3] < losses[1] < losses[0],
                losses)
        L.check("federation_accuracy_rises", len(rounds) == 3 and
                rounds[-1]["accuracy_centralized"] > r0[0]["accuracy_centralized"] + 0.2,
                [e.get("accuracy_centralized") for e in r0 + rounds])
        fits = [e for e in ev if e["event"] == "fit"]
        L.check("federation_client_measurements", len(fits) == 9 and all(
            e["wall_time"] > 0 and e["examples"] == 400 and e["peak_rss_bytes"] > 0 and
            e["cpu_process_percent"] is not None for e in fits), fits[:2])
        files = sorted(os.listdir(out))
        L.check("federation_files", files == ["checkpoint", "client_0_log.log",
                                              "client_1_log.log", "client_2_log.log",
                                              "events.jsonl", "server_log.log"], files)
        print("  centralised losses: %s" % ["%.4f" % x for x in losses])
        for c in clients:
            c.kill()
        srv.kill()
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
