"""Does a data-parallel fit reach the score of the same fit in one process?

4,000 training rows of ``make_friedman1`` (10 features, noise 1.0; 1,000 more rows
held out) fitted by :class:`~skmoe.MixtureOfExpertsRegressor` once in one process
and once under ``torchrun`` with 2 and with 4 gloo ranks on the CPU, each rank
holding every ``world``-th row (rank ``r`` the rows ``r, r + world, ...``). Every
run scores R² on the held-out rows; the script prints one line per setting and seed.

Run: ``python benchmarks/data_parallel.py`` (``--max-iter 15`` for the short fit,
``--seeds 0 1 2``, ``--worlds 2 4``). The ranks run one torch thread each.
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 4000, 1000


def make_data():
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=N_TRAIN + N_TEST, noise=1.0, random_state=0)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def estimator(max_iter, seed):
    from skmoe import MixtureOfExpertsRegressor

    params = dict(n_experts=4, random_state=seed, device="cpu", n_threads=1)
    if max_iter is not None:
        params["max_iter"] = max_iter
    return MixtureOfExpertsRegressor(**params)


def fit_and_score(max_iter, seed, rank=0, world=1):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, y, X_test, y_test = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = estimator(max_iter, seed).fit(X[rank::world], y[rank::world])
    return {"r2": model.score(X_test, y_test), "n_iter": model.n_iter_}


def _rank_main(out, max_iter, seeds):
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))
    rank, world = dist.get_rank(), dist.get_world_size()
    results = [fit_and_score(max_iter, seed, rank, world) for seed in seeds]
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(results))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(world, max_iter, seeds):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={world}",
            "--nnodes=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
            __file__,
            "--rank-worker",
            str(out),
            "--max-iter",
            str(max_iter or 0),
            "--seeds",
            *map(str, seeds),
        ]
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=0, help="0: the default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rank-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    max_iter = args.max_iter or None
    if args.rank_worker:
        import torch

        torch.set_num_threads(1)
        _rank_main(args.rank_worker, max_iter, args.seeds)
        return
    label = f"max_iter={max_iter or 'default'}"
    single = [fit_and_score(max_iter, seed) for seed in args.seeds]
    rows = {1: single}
    for world in args.worlds:
        rows[world] = run_ranks(world, max_iter, args.seeds)
    for world, results in rows.items():
        r2 = [r["r2"] for r in results]
        print(
            f"{label} ranks={world}: R2 "
            + " ".join(f"{v:.4f}" for v in r2)
            + f" (mean {np.mean(r2):.4f}); epochs "
            + " ".join(str(r["n_iter"]) for r in results),
            flush=True,
        )


if __name__ == "__main__":
    main()
