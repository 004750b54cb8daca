#!/usr/bin/python3
"""test_agents_cli.py - `petal server` / `petal client` options: --help, and
clear errors (exit 2 for bad usage, 1 for runtime failures) naming the
problem: bad values, unknown options/strategies/models, missing datasets, a
port in use, too few clients within --wait-clients, an unreachable server,
the client's limits, --require-tls and the warning for a token over h2c."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agents_lib as L  # noqa: E402


def petal(*args, timeout=60):
    r = subprocess.run([L.PETAL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def expect(name, args, rc, text, stream="err"):
    got, out, err = petal(*args)
    s = err if stream == "err" else out
    L.check(name, got == rc and text in s, "rc=%d (want %d), %s: %s" % (got, rc, stream,
                                                                          (out + err)[-600:]))


def main():
    m = ["--model", L.TINY_MODEL]
    expect("server_help", ["server", "--help"], 0, "usage: petal server", "out")
    expect("client_help", ["client", "--help"], 0, "usage: petal client", "out")
    expect("server_rounds_zero", ["server", "--rounds", "0"], 2, "--rounds")
    expect("server_rounds_text", ["server", "--rounds", "three"], 2, "'three' is not an integer")
    expect("server_unknown_option", ["server", "--bogus"], 2, "unknown option '--bogus'")
    expect("server_missing_value", ["server", "--rounds"], 2, "needs a value")
    expect("server_tls_pair", ["server", "--tls-cert", "x.pem"], 2, "--tls-key")
    expect("server_fraction_range", ["server", "--fraction-fit", "2"], 2, "fraction")
    expect("server_bad_backend", ["server", "--backend", "cuda"], 2, "unknown backend 'cuda'")
    expect("server_unknown_strategy", ["server", "--strategy", "FedNope"] + m, 2, "FedNope")
    expect("server_fedprox_needs_mu", ["server", "--strategy", "FedProx"] + m, 2, "proximal_mu")
    expect("server_bad_model", ["server", "--model", "/nonexistent/model.json"], 2, "model")
    expect("server_missing_dataset", ["server", "--dataset", "folder:/nonexistent/imgs",
                                      "--address", "127.0.0.1:0"] + m, 2, "dataset")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    expect("server_port_in_use", ["server", "--address", "127.0.0.1:%d" % port] + m, 1, "in use")
    s.close()
    expect("server_wait_clients_timeout",
           ["server", "--address", "127.0.0.1:0", "--wait-clients", "1",
            "--min-available-clients", "2"] + m, 3,
           "only 0 of the 2 required clients connected within 1 s")
    expect("client_bad_partition", ["client", "--partition", "3/2"], 2, "--partition")
    expect("client_partition_format", ["client", "--partition", "3"], 2, "i/N")
    expect("client_bad_partitioner", ["client", "--partitioner", "zipf:2"], 2, "partitioner")
    expect("client_bad_id", ["client", "--id", "a b"], 2, "--id")
    expect("client_bad_limit", ["client", "--limit", "-5"], 2, "--limit")
    expect("client_unknown_option", ["client", "--servr", "x"], 2, "unknown option")
    expect("client_bad_dataset", ["client", "--dataset", "folder:/nonexistent/imgs"] + m, 2,
           "dataset")
    expect("client_unreachable_server",
           ["client", "--server", "127.0.0.1:%d" % L.free_port(), "--connect-timeout", "1",
            "--limit", "100", "--eval-limit", "50"] + m, 1, "cannot join")
    # the owner's limits and transport security (issue 20, issue 11 items 13-14)
    expect("client_max_epochs_range", ["client", "--max-epochs", "0"], 2, "--max-epochs")
    expect("client_max_batch_text", ["client", "--max-batch", "big"], 2, "--max-batch")
    expect("client_max_message_small", ["client", "--max-message", "10"], 2, "--max-message")
    expect("client_keepalive_negative", ["client", "--keepalive", "-1"], 2, "--keepalive")
    expect("client_require_tls", ["client", "--require-tls", "--server", "127.0.0.1:1"] + m,
           2, "--require-tls: the connection to 127.0.0.1:1 would be cleartext h2c")
    with L.tmpdir() as d:
        tok = os.path.join(d, "token")
        with open(tok, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        expect("client_token_over_h2c_warns",
               ["client", "--server", "127.0.0.1:%d" % L.free_port(), "--connect-timeout", "0.1",
                "--auth-token-file", tok, "--limit", "100", "--eval-limit", "50"] + m, 1,
               "the auth token goes to 127.0.0.1")
    return 1 if L.failures else 0


if __name__ == "__main__":
    sys.exit(main())
