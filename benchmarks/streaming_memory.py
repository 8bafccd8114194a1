"""Peak memory of training on a memory-mapped array larger than a memory budget.

Writes a float32 ``.npy`` file of ``--megabytes`` MB, maps it, and trains a
:class:`~skmoe.MixtureOfExpertsRegressor` on it with :func:`skmoe.fit_chunks`
(``--chunk-rows`` rows a chunk, two chunks a ``partial_fit`` call), in a child
process of its own, and reports how far the process's memory grew during training:

* the peak of its anonymous resident memory (``RssAnon`` in ``/proc/self/status``,
  sampled every 5 ms): what the process itself allocated, numpy and torch alike;
  the mapped file's pages are not counted, since the kernel can drop them at will;
* the peak of what ``tracemalloc`` saw allocated (numpy's arrays among it);
* ``ru_maxrss``, which does count the mapped pages that were read, for reference.

The budget is a quarter of the data: the run fails (exit code 1) when the growth
passes it.

Run: ``flock /tmp/skmoe-bench.lock python benchmarks/streaming_memory.py``
(``--quick`` for a small file).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

N_FEATURES = 64


def _rss_anon_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class PeakSampler(threading.Thread):
    """Samples ``RssAnon`` until stopped; keeps the largest value."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = _rss_anon_kb()
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, _rss_anon_kb())
            time.sleep(0.005)

    def stop(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, _rss_anon_kb())


def write_data(path, n_rows, seed=0):
    """A float32 (n_rows, N_FEATURES) memory-mapped file and its targets, written
    a block at a time so that writing it stays within the budget too."""
    X = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(n_rows, N_FEATURES)
    )
    y = np.empty(n_rows)
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=N_FEATURES)
    for start in range(0, n_rows, 50_000):
        block = rng.normal(size=(min(50_000, n_rows - start), N_FEATURES))
        X[start : start + len(block)] = block
        y[start : start + len(block)] = block @ coef + np.tanh(block[:, 0])
    X.flush()
    del X
    return y


def measure(path, targets_path, chunk_rows, n_epochs):
    """In this process: train on the mapped file, print the memory figures."""
    import torch

    from skmoe import MixtureOfExpertsRegressor, fit_chunks

    torch.set_num_threads(1)
    X = np.load(path, mmap_mode="r")
    y = np.load(targets_path, mmap_mode="r")
    n_rows = X.shape[0]

    def chunks():
        return [
            (X[i : i + chunk_rows], y[i : i + chunk_rows])
            for i in range(0, n_rows, chunk_rows)
        ]

    model = MixtureOfExpertsRegressor(
        n_experts=4,
        top_k=2,
        expert_hidden_layer_sizes=(16,),
        batch_size=512,
        random_state=0,
        device="cpu",
    )
    # A first call on a few rows builds the module and the optimizer: their few
    # kilobytes are the model, not the data.
    model.partial_fit(X[:512], y[:512])
    tracemalloc.start()
    sampler = PeakSampler()
    before = sampler.peak
    sampler.start()
    started = time.perf_counter()
    fit_chunks(model, chunks, n_epochs=n_epochs, random_state=0)
    seconds = time.perf_counter() - started
    sampler.stop()
    _, traced_peak = tracemalloc.get_traced_memory()
    data_mb = (X.nbytes + y.nbytes) / 2**20
    growth_mb = (sampler.peak - before) / 1024
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"data {data_mb:.0f} MB ({n_rows} rows x {N_FEATURES} float32 + targets), "
        f"chunks of {chunk_rows} rows, {n_epochs} epoch(s) in {seconds:.1f} s; "
        f"peak growth of anonymous memory {growth_mb:.1f} MB "
        f"({growth_mb / data_mb:.1%} of the data); tracemalloc peak "
        f"{traced_peak / 2**20:.1f} MB; ru_maxrss {maxrss_mb:.0f} MB "
        f"(counts the mapped pages read); train R2 on the last chunk "
        f"{model.score(X[-chunk_rows:], y[-chunk_rows:]):.3f}"
    )
    return growth_mb < data_mb / 4


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=512)
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="48 MB, 1,000-row chunks")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.megabytes, args.chunk_rows = 48, 1_000
    if args.child:
        ok = measure(*args.child, args.chunk_rows, args.epochs)
        return 0 if ok else 1
    if not Path("/proc/self/status").exists():
        print("streaming_memory.py needs Linux's /proc to read memory figures.")
        return 0
    n_rows = int(args.megabytes * 2**20 / (4 * N_FEATURES))
    with tempfile.TemporaryDirectory() as tmp:
        path, targets_path = os.path.join(tmp, "X.npy"), os.path.join(tmp, "y.npy")
        np.save(targets_path, write_data(path, n_rows))
        # A fresh process, so that writing the file does not count.
        return subprocess.call(
            [
                sys.executable,
                __file__,
                "--child",
                path,
                targets_path,
                "--chunk-rows",
                str(args.chunk_rows),
                "--epochs",
                str(args.epochs),
            ]
        )


if __name__ == "__main__":
    sys.exit(main())
