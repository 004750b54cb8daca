#!/usr/bin/python3
"""test_strat_numpy.py - strategies/ against numpy.

Every strategy runs for several rounds in C (tests/test_strat_driver, which
feeds the client updates as unaligned views, batched on odd rounds) and in an
independent numpy reimplementation of Flower 1.6's server-side formulas
(float32 ndarrays like Flower: FedAvg's weighted sum, FedAvgM's momentum,
FedOpt's m/v state, coordinate-wise median and trimmed mean, Krum scores,
Bulyan, q-FFL, fault-tolerant completion rates, server-side fixed clipping).
The global model after every round, and whether it was updated, must agree.

Needs Debian's python3-numpy (/usr/bin/python3); prints SKIP without it.
"""
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("SKIP: test_strat_numpy numpy is not installed (apt-get install python3-numpy)")
    sys.exit(0)

BUILD = os.environ.get("BUILD", "build")
DRIVER = os.path.join(BUILD, "tests", "test_strat_driver")


# ---- numpy reference (Flower 1.6 semantics, float32 arrays) -------------------

def weighted_avg(results):
    """sum_k n_k * w_k / sum_k n_k, layer by layer, as a float32 array.

    Flower sums the float32 products in float32; Petal sums in double rounded
    to 48 bits (default), in double, or folds float32 deltas from the global,
    all far closer to the exact average. The reference is the correctly rounded
    average (float64, then float32), so that rounding differences in the
    average cannot flip FedYogi's sign(v - delta^2) on near-ties and hide or
    fake formula differences."""
    total = sum(n for _, n in results)
    out = []
    for i in range(len(results[0][0])):
        acc = np.zeros(results[0][0][i].shape, dtype=np.float64)
        for w, n in results:
            acc += w[i].astype(np.float64) * n
        out.append((acc / total).astype(np.float32))
    return out


def coord_median(results):
    return [np.median(np.asarray([w[i] for w, _ in results]), axis=0)
            for i in range(len(results[0][0]))]


def coord_trimmed(results, beta):
    out = []
    n = len(results)
    cut = int(beta * n)
    for i in range(len(results[0][0])):
        stack = np.sort(np.asarray([w[i] for w, _ in results]), axis=0)
        out.append(np.mean(stack[cut:n - cut], axis=0))
    return out


def flat(w):
    return np.concatenate([x.ravel() for x in w])


def sq_dists(ws):
    f = [flat(w) for w in ws]
    d = np.zeros((len(f), len(f)))
    for i in range(len(f)):
        for j in range(len(f)):
            d[i, j] = float(np.linalg.norm(f[i] - f[j])) ** 2
    return d


def krum_scores(ws, f):
    d = sq_dists(ws)
    c = max(1, len(ws) - f - 2)
    return [float(np.sum(np.sort(row)[1:c + 1])) for row in d]


def krum(results, f, keep):
    scores = krum_scores([w for w, _ in results], f)
    if keep > 0:
        keep = min(keep, len(results))
        order = sorted(range(len(scores)), key=lambda i: scores[i])[:keep]
        return weighted_avg([results[i] for i in order])
    return results[int(np.argmin(scores))][0]


def bulyan(results, f):
    n = len(results)
    if n < 4 * f + 3:
        raise ValueError("n < 4f+3")
    theta, beta = n - 2 * f, n - 4 * f
    remaining = list(results)
    chosen = []
    for _ in range(theta):
        scores = krum_scores([w for w, _ in remaining], f)
        chosen.append(remaining.pop(int(np.argmin(scores))))
    med = coord_median(chosen)
    out = []
    for i in range(len(med)):
        stack = np.asarray([w[i] for w, _ in chosen])
        dist = np.abs(stack - med[i])
        idx = np.argsort(dist, axis=0, kind="stable")[:beta]
        out.append(np.mean(np.take_along_axis(stack, idx, axis=0), axis=0))
    return out


class Ref:
    """One strategy's server-side state across rounds."""

    def __init__(self, name, opts, init):
        self.name, self.o = name, opts
        self.dp = name.startswith("DPFixedClipping(")
        self.inner = name[len("DPFixedClipping("):-1] if self.dp else name
        self.prev = [x.copy() for x in init]   # FedAvgM's initial_parameters
        self.x = [x.copy() for x in init]      # FedOpt's current_weights
        self.m = self.v = self.mom = None

    def opt(self, key, default):
        return float(self.o.get(key, default))

    def fit(self, rnd, glob, results, nfail, loss):
        o = self.o
        if not results:
            return None
        if self.dp:
            if nfail:
                return None
            clipped = []
            c = self.opt("clipping_norm", 0)
            for w, n in results:
                upd = [a - b for a, b in zip(w, glob)]
                norm = float(np.sqrt(sum(float(np.linalg.norm(u.ravel())) ** 2 for u in upd)))
                scale = min(1.0, c / norm) if norm > 0 else 1.0
                upd = [u * np.float32(scale) for u in upd]
                clipped.append(([b + u for b, u in zip(glob, upd)], n))
            results = clipped
        k = self.inner
        if k == "FaultTolerantFedAvg":
            if len(results) / (len(results) + nfail) < self.opt("min_completion_rate_fit", 0.5):
                return None
        elif not int(o.get("accept_failures", 1)) and nfail:
            return None
        if k in ("FedAvg", "FedProx", "FaultTolerantFedAvg"):
            return weighted_avg(results)
        if k == "FedAvgM":
            avg = weighted_avg(results)
            lr, mu = self.opt("server_learning_rate", 1.0), self.opt("server_momentum", 0.0)
            if mu == 0.0 and lr == 1.0:
                return avg
            grad = [p - a for p, a in zip(self.prev, avg)]
            if mu > 0.0:
                self.mom = (grad if self.mom is None
                            else [mu * v + g for v, g in zip(self.mom, grad)])
                grad = self.mom
            new = [p - lr * g for p, g in zip(self.prev, grad)]
            self.prev = new
            return new
        if k in ("FedAdagrad", "FedAdam", "FedYogi"):
            avg = weighted_avg(results)
            petal = o.get("defaults", "petal") == "petal"
            dflt = {"FedAdagrad": (0.01 if petal else 0.1, 1e-9 if not petal else 1e-3, 0.0, 0.0),
                    "FedAdam": (0.01 if petal else 0.1, 1e-9 if not petal else 1e-3, 0.9, 0.99),
                    "FedYogi": (0.01, 1e-3, 0.9, 0.99)}[k]
            eta, tau = self.opt("eta", dflt[0]), self.opt("tau", dflt[1])
            b1, b2 = (0.0, 0.0) if k == "FedAdagrad" else (self.opt("beta_1", dflt[2]),
                                                            self.opt("beta_2", dflt[3]))
            delta = [a - x for a, x in zip(avg, self.x)]
            if self.m is None:
                self.m = [np.zeros_like(d) for d in delta]
                self.v = [np.zeros_like(d) for d in delta]
            self.m = [np.multiply(b1, m) + (1 - b1) * d for m, d in zip(self.m, delta)]
            if k == "FedAdagrad":
                self.v = [v + np.multiply(d, d) for v, d in zip(self.v, delta)]
            elif k == "FedAdam":
                self.v = [b2 * v + (1 - b2) * np.multiply(d, d) for v, d in zip(self.v, delta)]
            else:
                self.v = [v - (1.0 - b2) * np.multiply(d, d) * np.sign(v - np.multiply(d, d))
                          for v, d in zip(self.v, delta)]
            self.x = [x + eta * m / (np.sqrt(v) + tau) for x, m, v in zip(self.x, self.m, self.v)]
            return self.x
        if k == "FedMedian":
            return coord_median(results)
        if k == "FedTrimmedAvg":
            return coord_trimmed(results, self.opt("trim_beta", 0.2))
        if k in ("Krum", "MultiKrum"):
            return krum(results, int(o.get("num_malicious_clients", 0)),
                        int(o.get("num_clients_to_keep", 0)))
        if k == "Bulyan":
            return bulyan(results, int(o.get("num_malicious_clients", 0)))
        if k == "QFedAvg":
            q, lr = self.opt("q_param", 0.2), self.opt("qffl_learning_rate", 0.1)
            deltas, hs = [], []
            for w, _ in results:
                grads = [np.multiply(a - b, 1.0 / lr) for a, b in zip(glob, w)]
                deltas.append([np.float_power(loss + 1e-10, q) * g for g in grads])
                sq = np.sum(np.square(np.concatenate([g.ravel() for g in grads])))
                hs.append(q * np.float_power(loss + 1e-10, q - 1) * sq
                          + (1.0 / lr) * np.float_power(loss + 1e-10, q))
            den = np.sum(np.asarray(hs))
            upd = [sum(d[i] * 1.0 / den for d in deltas) for i in range(len(glob))]
            return [a - b for a, b in zip(glob, upd)]
        raise KeyError(k)


# ---- driver I/O ------------------------------------------------------------------

def write_input(path, shapes, init, rounds):
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(shapes)))
        for s in shapes:
            f.write(struct.pack("<i", len(s)))
            for d in s:
                f.write(struct.pack("<q", d))
        f.write(flat(init).astype("<f4").tobytes())
        f.write(struct.pack("<i", 1) + b"\0")  # one pad byte: updates are misaligned
        f.write(struct.pack("<i", len(rounds)))
        for results, nfail, loss in rounds:
            f.write(struct.pack("<iid", len(results), nfail, loss))
            for w, n in results:
                f.write(struct.pack("<q", n))
                f.write(flat(w).astype("<f4").tobytes())


def read_output(path, total, nrounds):
    out = []
    with open(path, "rb") as f:
        for _ in range(nrounds):
            rc, upd = struct.unpack("<ii", f.read(8))
            out.append((rc, upd, np.frombuffer(f.read(4 * total), dtype="<f4")))
    return out


def unflat(v, shapes):
    res, off = [], 0
    for s in shapes:
        n = int(np.prod(s)) if s else 1
        res.append(v[off:off + n].reshape(s).astype(np.float32))
        off += n
    return res


# ---- cases ---------------------------------------------------------------------------

SMALL = [(3, 4), (4,), (2, 2, 3)]
BIG = [(500, 600), (600,)]


def run_case(label, name, opts, shapes=SMALL, nclients=5, nrounds=4, fails=None, seed=0,
             outliers=0, scale=0.05, losses=None, rtol=2e-5, atol=2e-6):
    rng = np.random.default_rng(seed)
    init = [rng.normal(0, 0.5, s).astype(np.float32) for s in shapes]
    ref = Ref(name, opts, init)
    glob = [x.copy() for x in init]
    rounds, expect = [], []
    for r in range(nrounds):
        nf = fails[r] if fails else 0
        nc = nclients if not isinstance(nclients, list) else nclients[r]
        results = []
        for c in range(nc):
            sc = scale * (20 if c < outliers else 1)
            w = [(g + rng.normal(0.01 * (r + 1), sc, g.shape)).astype(np.float32) for g in glob]
            results.append((w, int(rng.integers(1, 200))))
        loss = float(losses[r]) if losses else -1.0
        rounds.append((results, nf, loss))
        new = ref.fit(r + 1, glob, results, nf, loss)
        if new is not None:
            glob = [np.asarray(x, dtype=np.float32) for x in new]
        expect.append((new is not None, [x.copy() for x in glob]))
    total = sum(int(np.prod(s)) for s in shapes)
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        write_input(fin, shapes, init, rounds)
        args = [DRIVER, name, fin, fout] + ["%s=%s" % kv for kv in opts.items()]
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            print("  driver failed (%d): %s" % (p.returncode, p.stderr.strip()))
            print("FAIL: %s" % label)
            return False
        got = read_output(fout, total, nrounds)
    ok = True
    for r, ((rc, upd, g), (eupd, eg)) in enumerate(zip(got, expect)):
        ef = flat(eg)
        if rc != 0 or bool(upd) != eupd:
            print("  round %d: rc %d updated %d, numpy updated %d" % (r + 1, rc, upd, eupd))
            ok = False
        elif not np.allclose(g, ef, rtol=rtol, atol=atol):
            i = int(np.argmax(np.abs(g - ef)))
            print("  round %d: max diff %.3g at %d (C %.9g numpy %.9g)"
                  % (r + 1, float(np.abs(g - ef)[i]), i, g[i], ef[i]))
            ok = False
    print("%s: %s" % ("PASS" if ok else "FAIL", label))
    return ok


def main():
    if not os.access(DRIVER, os.X_OK):
        print("FAIL: test_strat_numpy driver %s not built" % DRIVER)
        return 1
    dp = {"noise_multiplier": 0, "clipping_norm": 0.25, "num_sampled_clients": 5}
    cases = [
        ("fedavg", "FedAvg", {}),
        ("fedavg_big_threads", "FedAvg", {"threads": 2}, dict(shapes=BIG, nclients=4, nrounds=2)),
        ("fedprox", "FedProx", {"proximal_mu": 0.1}),
        ("fedavgm_momentum", "FedAvgM", {"server_momentum": 0.9}),
        ("fedavgm_lr_only", "FedAvgM", {"server_learning_rate": 0.5}),
        ("fedavgm_both", "FedAvgM", {"server_learning_rate": 0.7, "server_momentum": 0.5}),
        ("fedavgm_plain", "FedAvgM", {}),
        ("fedadagrad_petal", "FedAdagrad", {}),
        ("fedadagrad_flower", "FedAdagrad", {"defaults": "flower"}),
        ("fedadam_petal", "FedAdam", {}),
        # Flower's tau = 1e-9 makes the step ~eta*m/sqrt(v): a 1-ulp change of
        # the average moves the result by up to ~eta*ulp/|delta|, so the
        # float-delta accumulator (off by one ulp in ~1.5% of the floats) gets
        # a tolerance of a few such steps
        ("fedadam_flower", "FedAdam", {"defaults": "flower"}),
        ("fedadam_flower_delta", "FedAdam", {"defaults": "flower", "accumulator": "float-delta"},
         dict(atol=2e-5)),
        ("fedadam_custom", "FedAdam", {"eta": 0.05, "beta_1": 0.5, "beta_2": 0.9, "tau": 0.01}),
        ("fedyogi", "FedYogi", {}),
        ("fedyogi_big", "FedYogi", {"eta": 0.03}, dict(shapes=BIG, nclients=3, nrounds=3)),
        ("fedmedian_odd", "FedMedian", {}),
        ("fedmedian_even", "FedMedian", {}, dict(nclients=4)),
        ("fedtrimmedavg", "FedTrimmedAvg", {}, dict(nclients=10)),
        ("fedtrimmedavg_beta3", "FedTrimmedAvg", {"trim_beta": 0.3}, dict(nclients=7)),
        ("krum", "Krum", {"num_malicious_clients": 1}, dict(nclients=6, outliers=1)),
        ("krum_f0", "Krum", {}, dict(nclients=4, outliers=1)),
        ("multikrum", "MultiKrum", {"num_malicious_clients": 1, "num_clients_to_keep": 3},
         dict(nclients=6, outliers=2)),
        ("bulyan_f1", "Bulyan", {"num_malicious_clients": 1}, dict(nclients=7, outliers=1)),
        ("bulyan_f2", "Bulyan", {"num_malicious_clients": 2}, dict(nclients=12, outliers=2)),
        ("bulyan_f0", "Bulyan", {}, dict(nclients=5)),
        ("qfedavg", "QFedAvg", {}, dict(losses=[2.3, 1.1, 0.7, 0.5])),
        ("qfedavg_q1", "QFedAvg", {"q_param": 1.0, "qffl_learning_rate": 0.05},
         dict(losses=[2.3, 1.1, 0.7, 0.5])),
        ("faulttolerant", "FaultTolerantFedAvg", {},
         dict(nclients=[3, 1, 2, 2], fails=[1, 3, 0, 2])),
        ("accept_failures_false", "FedAvg", {"accept_failures": 0}, dict(fails=[0, 1, 0, 0])),
        ("accept_failures_true", "FedAdam", {}, dict(fails=[0, 1, 0, 2])),
        ("dp_fedavg", "DPFixedClipping(FedAvg)", dp, dict(outliers=2, fails=[0, 0, 1, 0])),
        ("dp_fedadam", "DPFixedClipping(FedAdam)", dp, dict(outliers=1)),
        ("dp_fedmedian", "DPFixedClipping(FedMedian)", dp, dict(outliers=2)),
        ("dp_qfedavg", "DPFixedClipping(QFedAvg)", dp,
         dict(outliers=2, losses=[1.0, 0.9, 0.8, 0.7])),
        # the cases above use the default double48 accumulator; the others
        # (accumulator=double, float-delta) against the same references
        ("delta_fedavg", "FedAvg", {"accumulator": "float-delta"}, dict(nclients=9)),
        ("delta_fedavg_big", "FedAvg", {"accumulator": "float-delta", "threads": 2},
         dict(shapes=BIG, nclients=6, nrounds=2)),
        ("delta_fedavgm", "FedAvgM", {"accumulator": "float-delta", "server_momentum": 0.9}),
        ("delta_fedadam", "FedAdam", {"accumulator": "float-delta"}),
        ("delta_qfedavg", "QFedAvg", {"accumulator": "float-delta"},
         dict(losses=[2.3, 1.1, 0.7, 0.5])),
        ("delta_dp_fedavg", "DPFixedClipping(FedAvg)", dict(dp, accumulator="float-delta"),
         dict(outliers=2)),
        ("double_fedavg", "FedAvg", {"accumulator": "double"}, dict(nclients=9)),
        ("double_fedavg_big", "FedAvg", {"accumulator": "double", "threads": 2},
         dict(shapes=BIG, nclients=6, nrounds=2)),
        ("double_fedavgm", "FedAvgM", {"accumulator": "double", "server_momentum": 0.9}),
        ("double_fedadam", "FedAdam", {"accumulator": "double"}),
        ("double_fedyogi", "FedYogi", {"accumulator": "double"}),
        ("double_qfedavg", "QFedAvg", {"accumulator": "double"},
         dict(losses=[2.3, 1.1, 0.7, 0.5])),
        ("double_dp_fedavg", "DPFixedClipping(FedAvg)", dict(dp, accumulator="double"),
         dict(outliers=2)),
    ]
    fails = 0
    for i, c in enumerate(cases):
        label, name, opts = c[:3]
        kw = c[3] if len(c) > 3 else {}
        if not run_case("test_strat_numpy/" + label, name, opts, seed=100 + i, **kw):
            fails += 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
