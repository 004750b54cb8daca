#!/usr/bin/python3
"""torch_baseline.py - same-run PyTorch baseline for `make bench-nn`.

Builds seed-cnn or fmnist-cnn in PyTorch ('valid' convolutions, the same layer
sizes as libpetal-nn's presets; channels_last memory format by default, i.e.
NHWC like Petal and PyTorch's fastest here: seed-cnn trains ~1.6x faster than
with NCHW on 1 thread), trains it with Adam (Keras defaults) and
softmax cross-entropy on synthetic data, and measures training and inference
images/s at the given batch size and thread count: one warm-up pass, then the
best of REPS repetitions (as bench_nn does).

usage: torch_baseline.py MODEL BATCH THREADS TRAIN_BATCHES INFER_BATCHES REPS [nhwc|nchw]
       torch_baseline.py --serve MODEL BATCH THREADS TRAIN_BATCHES INFER_BATCHES [nhwc|nchw]

Prints one line:
  torch model=M batch=B threads=T train_ips=X infer_ips=Y malloc=SETTING format=F
or, when PyTorch cannot be used:
  torch unavailable: REASON
(exit status 0 on success, 2 when unavailable, 1 on bad arguments).

With --serve (what bench_nn uses, so that its repetitions and PyTorch's
alternate and meet the same load on a shared machine): after the warm-up it
prints "ready", then answers each line read from stdin: "train" runs
TRAIN_BATCHES training steps and prints "train_s=SECONDS", "infer" runs
INFER_BATCHES inference batches and prints "infer_s=SECONDS"; "quit" or end
of input ends it.

bench_nn runs it with glibc allocations retained (MALLOC_MMAP_MAX_=0 and a huge
MALLOC_TRIM_THRESHOLD_), PyTorch's best on these VMs (docs/anchors.md).
"""
import os
import sys
import time


def build(torch, model):
    nn = torch.nn
    if model == "seed-cnn":
        shape = (3, 256, 256)
        layers = [nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Flatten(), nn.Linear(64 * 30 * 30, 128), nn.ReLU(), nn.Linear(128, 10)]
    elif model == "fmnist-cnn":
        shape = (1, 28, 28)
        layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10)]
    else:
        return None, None
    return nn.Sequential(*layers), shape


def main(argv):
    serve = len(argv) > 1 and argv[1] == "--serve"
    if serve:  # same arguments with REPS = 1 (unused)
        argv = argv[:1] + argv[2:7] + ["1"] + argv[7:]
    if len(argv) not in (7, 8) or (len(argv) == 8 and argv[7] not in ("nhwc", "nchw")):
        print("usage: torch_baseline.py MODEL BATCH THREADS TRAIN_BATCHES INFER_BATCHES REPS "
              "[nhwc|nchw]", file=sys.stderr)
        return 1
    model = argv[1]
    fmt = argv[7] if len(argv) == 8 else "nhwc"
    try:
        batch, threads, ntrain, ninfer, reps = (int(a) for a in argv[2:7])
    except ValueError:
        print("torch_baseline: BATCH THREADS TRAIN_BATCHES INFER_BATCHES REPS must be integers",
              file=sys.stderr)
        return 1
    if min(batch, threads, ntrain, ninfer, reps) < 1:
        print("torch_baseline: numeric arguments must be >= 1", file=sys.stderr)
        return 1
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install
        print("torch unavailable: cannot import torch (%s)" % e)
        return 2
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    net, shape = build(torch, model)
    if net is None:
        print("torch_baseline: unknown model %r (seed-cnn, fmnist-cnn)" % model, file=sys.stderr)
        return 1
    if fmt == "nhwc":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    # two distinct batches, reused (as bench_nn)
    xs = [torch.rand((batch,) + shape) for _ in range(2)]
    if fmt == "nhwc":
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    ys = [torch.arange(batch) % 10 for _ in range(2)]

    def train(n):
        net.train()
        for i in range(n):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xs[i % 2]), ys[i % 2])
            loss.backward()
            opt.step()

    def infer(n):
        net.eval()
        with torch.no_grad():
            for i in range(n):
                torch.softmax(net(xs[i % 2]), dim=1)

    train(2)  # warm-up: first touch, oneDNN primitive creation
    infer(2)
    if serve:
        print("ready", flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            if cmd not in ("train", "infer"):
                print("torch_baseline: unknown command %r" % cmd, file=sys.stderr)
                return 1
            t0 = time.perf_counter()
            (train if cmd == "train" else infer)(ntrain if cmd == "train" else ninfer)
            print("%s_s=%.9f" % (cmd, time.perf_counter() - t0), flush=True)
        return 0
    tt = ti = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        train(ntrain)
        tt = min(tt, time.perf_counter() - t0)
        t0 = time.perf_counter()
        infer(ninfer)
        ti = min(ti, time.perf_counter() - t0)
    retained = os.environ.get("MALLOC_MMAP_MAX_") == "0"
    print("torch model=%s batch=%d threads=%d train_ips=%.2f infer_ips=%.2f malloc=%s format=%s"
          % (model, batch, threads, ntrain * batch / tt, ninfer * batch / ti,
             "retained" if retained else "default", fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
