#!/usr/bin/python3
"""test_fifo_options.py - every path a user gives a petal command may be a
FIFO (or another special file): the command must refuse it at once, naming
what it is, never block on it (issue 19). One case per path option of
petal server, client, run, report and launch, plus FIFOs inside the output
and dataset folders the commands write or read."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402

LIMIT_S = 20


def run(name, args, d, env=None, want="FIFO"):
    t0 = time.time()
    e = dict(os.environ)
    e.pop("PETAL_AUTH_TOKEN", None)
    e.update(env or {})
    try:
        r = subprocess.run([L.PETAL] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=LIMIT_S, cwd=d, env=e, stdin=subprocess.DEVNULL)
        rc, out = r.returncode, r.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as x:
        rc, out = "blocked", (x.stdout or b"").decode(errors="replace")
    secs = time.time() - t0
    L.check("fifo_" + name, rc not in (0, "blocked") and want in out,
            "rc=%s after %.1f s: %s" % (rc, secs, out[-800:]))


def main():
    with L.tmpdir() as d:
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        certs = L.make_certs(d)
        model = os.path.join(d, "m.json")
        with open(model, "w") as f:
            f.write(L.TINY_MODEL)
        tok = os.path.join(d, "token")
        with open(tok, "w") as f:
            f.write("0123456789abcdef0123\n")
        srv = ["server", "--address", "127.0.0.1:0", "--rounds", "1", "--wait-clients", "1",
               "--model", model, "--no-checkpoint"]
        run("server_model", ["server", "--address", "127.0.0.1:0", "--model", fifo], d)
        run("server_dataset", srv + ["--dataset", fifo], d)
        for scheme in ("folder", "fashion-mnist", "idx", "cifar10"):
            run("server_dataset_" + scheme, srv + ["--dataset", scheme + ":" + fifo], d)
        run("server_tls_cert", srv + ["--tls-cert", fifo, "--tls-key", certs["server.key"]], d)
        run("server_tls_key", srv + ["--tls-cert", certs["server.pem"], "--tls-key", fifo], d)
        run("server_tls_client_ca", srv + ["--tls-cert", certs["server.pem"], "--tls-key",
                                           certs["server.key"], "--tls-client-ca", fifo], d)
        run("server_auth_token_file", srv + ["--auth-token-file", fifo], d)
        run("server_resume", srv[:-1] + ["--resume", fifo], d)
        run("server_checkpoint_dir", srv[:-1] + ["--checkpoint-dir", fifo], d)
        run("server_save_weights", srv + ["--save-weights", fifo], d)
        run("server_port_file", srv + ["--port-file", fifo], d)
        run("server_out", srv + ["--out", fifo], d)
        for inner in ("server_log.log", "events.jsonl"):
            o = os.path.join(d, "out_" + inner)
            os.makedirs(o)
            os.mkfifo(os.path.join(o, inner))
            run("server_out_" + inner, srv + ["--out", o], d)
        # a checkpoint directory holding a FIFO where the checkpoint is
        ck = os.path.join(d, "ck")
        os.makedirs(ck)
        os.mkfifo(os.path.join(ck, "checkpoint.ptck"))
        run("server_resume_dir", srv[:-1] + ["--resume", ck], d)
        # IDX and CIFAR-10 folders with a FIFO for a file
        idx = os.path.join(d, "idxdir")
        os.makedirs(idx)
        for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                  "t10k-labels-idx1-ubyte"):
            os.mkfifo(os.path.join(idx, n))
        run("server_dataset_idx_files", srv + ["--dataset", "idx:" + idx], d)
        cif = os.path.join(d, "cifdir")
        os.makedirs(cif)
        os.mkfifo(os.path.join(cif, "test_batch.bin"))
        os.mkfifo(os.path.join(cif, "batches.meta.txt"))
        run("server_dataset_cifar_files", srv + ["--dataset", "cifar10:" + cif], d)

        cl = ["client", "--server", "127.0.0.1:9", "--connect-timeout", "1", "--model", model]
        run("client_model", ["client", "--server", "127.0.0.1:9", "--model", fifo], d)
        run("client_dataset", cl + ["--dataset", fifo], d)
        run("client_tls_ca", cl + ["--tls-ca", fifo], d)
        run("client_tls_cert", cl + ["--tls-cert", fifo, "--tls-key", certs["server.key"]], d)
        run("client_tls_key", cl + ["--tls-cert", certs["server.pem"], "--tls-key", fifo], d)
        run("client_auth_token_file", cl + ["--auth-token-file", fifo], d)
        run("client_out", cl + ["--out", fifo], d)
        oc = os.path.join(d, "out_client")
        os.makedirs(oc)
        os.mkfifo(os.path.join(oc, "client_0_log.log"))
        run("client_out_log", cl + ["--out", oc], d)

        run("run_model", ["run", "--model", fifo, "--out", os.path.join(d, "r1")], d)
        run("run_dataset", ["run", "--dataset", fifo, "--out", os.path.join(d, "r2")], d)
        run("run_out", ["run", "--out", fifo], d)

        run("report_dir", ["report", fifo], d)
        rep = os.path.join(d, "rep")
        os.makedirs(rep)
        os.mkfifo(os.path.join(rep, "events.jsonl"))
        run("report_events", ["report", rep], d)
        rep2 = os.path.join(d, "rep2")
        os.makedirs(rep2)
        with open(os.path.join(rep2, "events.jsonl"), "w") as f:
            f.write('{"ts": 1, "source": "server", "event": "run_start", "strategy": "FedAvg",'
                    ' "rounds": 1}\n')
        os.mkfifo(os.path.join(rep2, "report.html"))
        run("report_output", ["report", rep2], d)

        la = ["launch", "--dry-run", "--n-client-instances", "1", "--endpoint-url",
              "http://127.0.0.1:9"]
        envf = os.path.join(d, "e.env")
        with open(envf, "w") as f:
            f.write("AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=secret\n"
                    "AWS_DEFAULT_REGION=us-east-1\n")
        run("launch_env_file", la + ["--env-file", fifo], d)
        la += ["--env-file", envf]
        run("launch_model", la + ["--model", fifo], d)
        run("launch_dataset", la + ["--dataset", fifo], d)
        run("launch_dist_tarball", la + ["--dist-tarball", fifo], d)
        run("launch_out", la + ["--out", fifo], d)
        run("launch_state_dir", la + ["--state-dir", fifo], d)
        run("launch_agent_binary", la + ["--agent-binary", fifo], d)
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
