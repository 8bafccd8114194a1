"""Fit time of the estimators with each way of running torch's Adam, side by side.

    python benchmarks/adam_variants.py            # a few minutes
    python benchmarks/adam_variants.py --quick    # tiny, to keep the script working

The engine builds its optimiser with ``skmoe._engine.make_optimizer``; this script
swaps in versions building the same parameter groups into ``torch.optim.Adam`` with
other options, and times whole ``fit`` calls, one thread, in interleaved rounds (every
variant once per round and seed, in a rotating order), so that a slow spell of a
shared machine hits all variants alike. It prints, per configuration and variant, the
median and quartiles over rounds and seeds of the fit time (wall clock and process
CPU time) relative to the shipped optimiser's in the same round. "fused" builds what
is shipped on a CPU, so its ratio shows the noise. Nothing here is a test.

Configurations: ``MixtureOfExpertsClassifier`` with its defaults (4 experts of 64
units, batch 200) and ``benchmarks/speed.py``'s section 1 (dense, 8 experts of 64
units, batch 256), both with a fixed number of epochs so that every variant does the
same number of steps.
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from sklearn.exceptions import ConvergenceWarning

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's skmoe, and speed.py
from speed import make_data  # noqa: E402

import skmoe._base as skmoe_base  # noqa: E402
from skmoe import MixtureOfExpertsClassifier  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def _variant(**options):
    """A ``make_optimizer`` building the same groups into Adam with ``options``."""

    def make(module, learning_rate, weight_decay, device):
        shipped = SHIPPED(module, learning_rate, weight_decay, device)
        groups = [
            {"params": g["params"], "weight_decay": g["weight_decay"]}
            for g in shipped.param_groups
        ]
        return torch.optim.Adam(groups, lr=learning_rate, **options)

    return make


SHIPPED = skmoe_base.make_optimizer
VARIANTS = {
    "shipped": SHIPPED,
    "for-loop": _variant(foreach=False),
    "foreach": _variant(foreach=True),
    "fused": _variant(fused=True),
}


def fit_time(make, X, y, seed, params):
    skmoe_base.make_optimizer = make
    try:
        est = MixtureOfExpertsClassifier(random_state=seed, **params)
        wall, cpu = time.perf_counter(), time.process_time()
        est.fit(X, y)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        optimizer = est._optimizer
        kind = "fused" if optimizer.defaults["fused"] else "foreach"
        if not (optimizer.defaults["fused"] or optimizer.defaults["foreach"]):
            kind = "for-loop"
        return wall, cpu, kind
    finally:
        skmoe_base.make_optimizer = SHIPPED


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, epochs = (2_000, 2) if args.quick else (args.rows, args.epochs)
    fixed = dict(max_iter=epochs, tol=0.0, n_iter_no_change=10**6, device="cpu")
    configs = {
        "defaults (4x64, batch 200)": dict(fixed),
        "speed.py section 1 (8x64, batch 256)": dict(
            fixed, n_experts=8, expert_hidden_layer_sizes=(64,), batch_size=256
        ),
    }
    names = list(VARIANTS)
    print(f"torch {torch.__version__}, {rows} x 32 rows, {epochs} epochs, 1 thread")
    for label, params in configs.items():
        X, y = make_data(rows, 32)
        fit_time(SHIPPED, X, y, 0, params)  # warm up
        times = {name: [] for name in names}
        ratios = {name: [] for name in names}
        kinds = {}
        for r in range(1 if args.quick else args.rounds):
            for seed in range(1 if args.quick else args.seeds):
                shift = (r * args.seeds + seed) % len(names)
                t = {}
                for name in names[shift:] + names[:shift]:
                    *t[name], kinds[name] = fit_time(VARIANTS[name], X, y, seed, params)
                for name in names:
                    times[name].append(t[name])
                    ratios[name].append(
                        [a / b for a, b in zip(t[name], t[names[0]], strict=True)]
                    )
        print(f"\n{label}")
        print(
            "| variant | Adam | median fit s (wall, CPU) "
            "| ratio to shipped, wall: median (quartiles) | CPU: median (quartiles) |"
        )
        print("|---|---|---|---|---|")
        for name in names:
            wall, cpu = zip(*times[name], strict=True)
            cells = []
            for rs in zip(*ratios[name], strict=True):
                q = statistics.quantiles(rs, n=4) if len(rs) > 1 else [rs[0]] * 3
                cells.append(f"{q[1]:.3f} ({q[0]:.3f}-{q[2]:.3f})")
            print(
                f"| {name} | {kinds[name]} | {statistics.median(wall):.2f}, "
                f"{statistics.median(cpu):.2f} | {cells[0]} | {cells[1]} |"
            )


if __name__ == "__main__":
    main()
