"""Fit time of skmoe at 1, 2, all and "auto" threads, idle and beside a busy process.

    python benchmarks/threads.py          # 10k x 20, 3 epochs, 3 rounds (minutes)
    python benchmarks/threads.py --quick  # tiny, to keep the script working

The model is ``MixtureOfExpertsClassifier`` with its defaults (4 dense experts of 64
units, ``batch_size="auto"``, i.e. 200 rows) and a fixed number of epochs. Each round
times every thread count in turn, so a slow spell of a shared machine hits all of them;
the table gives the median of the rounds and each time as a multiple of the fastest
in the same condition. "Under load" starts one extra Python process that spins on a
core for the whole measurement, as a second job on a laptop or a grid worker would.
Nothing here is a test: no time is ever asserted.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skmoe import MixtureOfExpertsClassifier
from skmoe._engine.threads import resolve_fit_threads

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def make_data(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    y = (X @ rng.normal(size=(n_features, 3))).argmax(1)
    return X, y


def fit_time(X, y, n_threads, epochs, seed):
    est = MixtureOfExpertsClassifier(
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        random_state=seed,
        device="cpu",
        n_threads=n_threads,
    )
    start = time.perf_counter()
    est.fit(X, y)
    return time.perf_counter() - start


def measure(X, y, counts, epochs, rounds, chosen):
    """Median fit time per thread count; ``chosen`` collects what "auto" picked."""
    times = {n: [] for n in counts}
    for seed in range(rounds):
        for n in counts:
            if n == "auto":
                chosen.append(resolve_fit_threads("auto"))
            times[n].append(fit_time(X, y, n, epochs, seed))
    return {n: statistics.median(t) for n, t in times.items()}


def busy_process():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.rounds = 400, 1, 1
    X, y = make_data(args.rows, 20)
    n_cpus = os.cpu_count() or 1
    counts = [*sorted({1, 2, n_cpus}), "auto"]
    fit_time(X[:400], y[:400], 1, 1, 0)  # warm up torch before timing
    print(
        f"{args.rows} x 20, 3 classes, {args.epochs} epochs, batch 200, "
        f"{os.cpu_count()} CPUs, median of {args.rounds} rounds; "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    chosen = {"idle": [], "one busy process": []}
    results = {"idle": measure(X, y, counts, args.epochs, args.rounds, chosen["idle"])}
    busy = busy_process()
    try:
        time.sleep(0.5)
        results["one busy process"] = measure(
            X, y, counts, args.epochs, args.rounds, chosen["one busy process"]
        )
    finally:
        busy.kill()
        busy.wait()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    print("| condition | n_threads | fit time (s) | x fastest in condition |")
    print("| --- | --- | --- | --- |")
    for condition, times in results.items():
        best = min(times.values())
        for n, t in times.items():
            if n == "auto":
                label = f"auto (chose {', '.join(map(str, chosen[condition]))})"
            else:
                label = f"{n} (all)" if n == n_cpus else str(n)
            print(f"| {condition} | {label} | {t:.2f} | {t / best:.2f} |")


if __name__ == "__main__":
    main()
