"""One rank of the data-parallel tests, launched by ``torchrun`` from
``tests/test_distributed.py``; writes what it fitted (or the errors it met) under
the directory given as its argument.

Every rank builds the same data and keeps its own shard: with ``block`` rows per
batch and rank, rank ``r`` holds the blocks ``r, r + world, r + 2 world, ...``, so
that without shuffling its ``j``-th batch and the other ranks' ``j``-th batches make
up rows ``[j * world * block, (j + 1) * world * block)`` of the whole data: the
``j``-th batch of a single-process fit with a global batch of ``world * block``.
"""

import datetime
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

BLOCK = 16
N_BLOCKS = 8


def make_data(n_features=5, seed=0):
    """The whole data, as every rank and the single-process reference see it."""
    rng = np.random.default_rng(seed)
    n = BLOCK * N_BLOCKS
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    y_class = np.where(X[:, 0] + X[:, 1] ** 2 > 0.8, "yes", "no")
    y_reg = 3.0 * X[:, 0] - X[:, 2] + rng.normal(scale=0.1, size=n) + 10.0
    y_multi = np.column_stack([y_reg, 2.0 * X[:, 1] - 5.0])
    return X, y_class, y_reg, y_multi


def tabular_frame():
    """make_data's rows as a DataFrame with unscaled and missing numbers and a
    category that only the last block's rows (on the last rank) have."""
    import pandas as pd

    X = make_data()[0]
    frame = pd.DataFrame({"a": X[:, 0] * 1000.0 + 50.0, "b": X[:, 1]})
    frame.loc[::5, "b"] = np.nan
    colour = np.where(X[:, 2] > 0, "red", "blue").astype(object)
    colour[-BLOCK:] = "green"
    frame["colour"] = pd.Categorical(colour)
    return frame


def shard(n_rows, rank, world):
    """The rows of ``rank``'s shard, in order."""
    blocks = np.arange(n_rows) // BLOCK
    return np.flatnonzero(blocks % world == rank)


def cases():
    """Name -> (estimator factory, target index into make_data's targets)."""
    from skmoe import (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
    )

    common = dict(
        n_experts=3,
        expert_hidden_layer_sizes=(8,),
        max_iter=4,
        shuffle=False,
        batch_size=BLOCK,
        learning_rate_init=1e-2,
        random_state=0,
        device="cpu",
        # The balancing statistics are averaged over the ranks: the balancing
        # losses are those of the global batch.
        load_balancing_coef=0.1,
    )
    # Sparse routing without noise: no random draws, so a single process on the
    # global batch routes every row as the ranks do.
    top_k = dict(common, n_experts=4, load_balancing_coef=0.3)
    return {
        "single_classifier": (lambda: MixtureOfExpertsClassifier(**common), 1),
        "single_regressor": (
            lambda: MixtureOfExpertsRegressor(**{**common, "alpha": 1e-3}),
            2,
        ),
        "multi_regressor": (lambda: MultiGateMoERegressor(**common), 3),
        "multi_classifier": (lambda: MultiGateMoEClassifier(**common), 1),
        "top1_classifier": (lambda: MixtureOfExpertsClassifier(**top_k, top_k=1), 1),
        "top2_regressor": (lambda: MixtureOfExpertsRegressor(**top_k, top_k=2), 2),
        "multi_top2_regressor": (lambda: MultiGateMoERegressor(**top_k, top_k=2), 3),
    }


def _save_params(estimator, path):
    state = {k: v.detach().numpy() for k, v in estimator.module_.state_dict().items()}
    np.savez(path, **state)


def main(out):
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    import skmoe
    from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

    X, *targets = make_data()
    rows = shard(X.shape[0], rank, world)
    report = {}
    fitted = {}
    for name, (factory, target) in cases().items():
        y = targets[target - 1]
        estimator = factory().fit(X[rows], y[rows])
        _save_params(estimator, out / f"{name}_rank{rank}.npz")
        report[name] = {"n_iter": estimator.n_iter_, "loss": estimator.loss_curve_}
        fitted[name] = estimator

    # Sparse routing, shuffling and early stopping: the ranks still agree.
    noisy = MixtureOfExpertsClassifier(
        n_experts=4, top_k=2, gating="noisy", early_stopping=True,
        validation_fraction=0.25, n_iter_no_change=2, max_iter=30,
        random_state=None, device="cpu",
    ).fit(X[rows], targets[0][rows])  # fmt: skip
    _save_params(noisy, out / f"sparse_rank{rank}.npz")
    report["sparse"] = {
        "n_iter": noisy.n_iter_,
        "scores": noisy.validation_scores_,
        "usage": noisy.expert_usage_.tolist(),
    }

    # A DataFrame with a category only rank 1 holds, NaN, unscaled columns and
    # piecewise-linear bins: every rank fits the encoder of all the rows.
    frame = tabular_frame()
    tabular = MixtureOfExpertsRegressor(
        num_embedding="piecewise_linear", max_iter=3, random_state=0, device="cpu"
    ).fit(frame.iloc[rows], targets[1][rows])
    _save_params(tabular, out / f"tabular_rank{rank}.npz")
    report["tabular"] = {"n_iter": tabular.n_iter_, "loss": tabular.loss_curve_}
    report["tabular_encoder"] = tabular._input_encoder.to_json()

    # Bad input: every rank must raise, none may wait.
    errors = {}
    # Rank 1 holds a label outside the classes given to partial_fit.
    relabelled = np.where(targets[0][rows] == "yes", "yes", "maybe" if rank else "no")
    bad_inputs = {
        "n_features": lambda: MixtureOfExpertsClassifier(max_iter=1).fit(
            X[rows][:, : 5 - rank], targets[0][rows]
        ),
        "params": lambda: MixtureOfExpertsClassifier(
            n_experts=2 + rank, max_iter=1
        ).fit(X[rows], targets[0][rows]),
        "empty_rank": lambda: MixtureOfExpertsClassifier(max_iter=1).fit(
            X[rows][: 0 if rank == 1 else None], targets[0][rows][: 0 if rank else None]
        ),
        "shard_too_small_to_split": lambda: MixtureOfExpertsClassifier(
            max_iter=1, early_stopping=True
        ).fit(X[rows][: 2 if rank else None], targets[0][rows][: 2 if rank else None]),
        "new_label_on_rank": lambda: MixtureOfExpertsClassifier(max_iter=1).partial_fit(
            X[rows], relabelled, classes=["no", "yes"]
        ),
    }
    for name, call in bad_inputs.items():
        try:
            call()
        except ValueError as exc:
            errors[name] = str(exc)
        except Exception:
            errors[name] = "NOT A ValueError: " + traceback.format_exc()
    report["errors"] = errors
    dist.barrier()
    dist.destroy_process_group()

    # Afterwards, an ordinary fitted estimator: predicts, saves and loads.
    estimator = fitted["single_classifier"]
    path = out / f"model_rank{rank}.skmoe"
    skmoe.save(estimator, path)
    loaded = skmoe.load(path)
    report["reloaded_equal"] = bool(
        (loaded.predict_proba(X) == estimator.predict_proba(X)).all()
    )
    report["predict"] = estimator.predict(X[:5]).tolist()
    (out / f"report_rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
    os._exit(0)
