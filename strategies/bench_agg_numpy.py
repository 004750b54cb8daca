#!/usr/bin/python3
"""bench_agg_numpy.py - numpy side of `make bench-agg`.

usage: bench_agg_numpy.py FILE NCLIENTS SIZE,SIZE,... REPS

FILE holds NCLIENTS float32 updates back to back, each split into layers of
the given sizes. Times (best of REPS) Flower 1.6's FedAvg aggregate(): every
layer multiplied by num_examples, summed with functools.reduce(np.add), divided
by the total; and numpy's weighted average np.average(stack, axis=0, weights=n); and
the fastest plain-numpy weighted average, np.tensordot of the float32
weights with the stacked updates (BLAS sgemv, float32 sums). Prints GB/s of update
bytes for each (the same metric as the C fold).
"""
import sys
import time
from functools import reduce

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not installed")
    sys.exit(0)


def flower_aggregate(results):
    total = sum(n for _, n in results)
    weighted = [[layer * n for layer in w] for w, n in results]
    return [reduce(np.add, layers) / total for layers in zip(*weighted)]


def main():
    path, k = sys.argv[1], int(sys.argv[2])
    sizes = [int(x) for x in sys.argv[3].split(",")]
    reps = int(sys.argv[4])
    total = sum(sizes)
    data = np.fromfile(path, dtype=np.float32).reshape(k, total)
    nums = [100 + i for i in range(k)]
    results = []
    for c in range(k):
        off, layers = 0, []
        for n in sizes:
            layers.append(data[c, off:off + n])
            off += n
        results.append((layers, nums[c]))
    nbytes = k * total * 4
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        flower_aggregate(results)
        best = min(best, time.perf_counter() - t0)
    print("flower_aggregate_gbps %.4f" % (nbytes / best / 1e9))
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        np.average(data, axis=0, weights=nums)
        best = min(best, time.perf_counter() - t0)
    print("np_average_gbps %.4f" % (nbytes / best / 1e9))
    w = (np.asarray(nums, dtype=np.float32) / np.float32(sum(nums))).astype(np.float32)
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        np.tensordot(w, data, axes=1)
        best = min(best, time.perf_counter() - t0)
    print("tensordot_gbps %.4f" % (nbytes / best / 1e9))


if __name__ == "__main__":
    main()
