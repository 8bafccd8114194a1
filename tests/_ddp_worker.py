"""One rank of the data-parallel tests, launched by ``torchrun`` from
``tests/test_distributed.py``; writes what it fitted (or the errors it met) under
the directory given as its argument.

``batch_size`` is the global batch: each step takes from every rank its share of
the step's rows. Every rank builds the same data and keeps its own shard: with
``BLOCK`` rows per rank and step, rank ``r`` holds the blocks ``r, r + world,
r + 2 world, ...``, so that without shuffling its ``j``-th batch and the other
ranks' ``j``-th batches make up rows ``[j * BATCH, (j + 1) * BATCH)`` of the whole
data: the ``j``-th batch of a single-process fit with the same ``batch_size =
BATCH``. :func:`uneven_shard` gives the ranks unequal shares of every step instead.
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

WORLD = 2
BLOCK = 16
N_BLOCKS = 8
BATCH = WORLD * BLOCK  # the global batch
ENGINE_SPLITS = (90, 117)  # rank 0's rows of the engine fits' 120


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


def id_frame():
    """make_data's rows with an id column whose ids each occur twice, in two blocks
    that go to different ranks (so min_frequency=2 keeps them only when every
    rank's counts are added up), ids seen once, and a list-valued column."""
    import pandas as pd

    X = make_data()[0]
    n = X.shape[0]
    ids = (np.arange(n) % BLOCK).astype(object)  # id i in every block
    ids[np.arange(n) // BLOCK >= 2] = [f"once{i}" for i in range(n - 2 * BLOCK)]
    tags = [["a", "b"][: i % 3] for i in range(n)]
    return pd.DataFrame(
        {"x": X[:, 0], "id": pd.Series(ids, dtype=object).astype(str), "tags": tags}
    )


def shard(n_rows, rank, world):
    """The rows of ``rank``'s shard, in order."""
    blocks = np.arange(n_rows) // BLOCK
    return np.flatnonzero(blocks % world == rank)


def uneven_shard(n_rows, n_first, rank):
    """Rank ``rank``'s rows (of two ranks) when rank 0 holds ``n_first`` of the
    ``n_rows`` rows, laid out as a data-parallel epoch interleaves the ranks' rows:
    rank ``r``'s ``i``-th row of ``n_r`` at ``(2 i + 1) / (2 n_r)`` of the way, ties
    in rank order. Without shuffling, the two ranks' ``j``-th batches then make up
    the ``j``-th batch of a single process on all the rows."""
    from fractions import Fraction

    sizes = (n_first, n_rows - n_first)
    places = sorted(
        (Fraction(2 * i + 1, 2 * n), r) for r, n in enumerate(sizes) for i in range(n)
    )
    owner = np.array([r for _, r in places])
    return np.flatnonzero(owner == rank)


def engine_data():
    """120 float64 rows of 6 features, two regression targets and row weights."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(120, 6, generator=gen, dtype=torch.float64)
    y = torch.stack([x[:, 0] - 2 * x[:, 1], x[:, 2] * x[:, 3]], dim=1)
    w = 0.2 + 2 * torch.rand(120, generator=gen, dtype=torch.float64)
    return x, y, w


def engine_modules():
    """Name -> float64 module factory for the engine-level fits: top-2 routing of
    four experts with both balancing losses, through the written-out step and
    through autograd (``DistributedDataParallel``), single- and multi-gate."""
    from skmoe.nn import MixtureOfExperts, MultiGateMixtureOfExperts

    def single(fused):
        def make():
            module = MixtureOfExperts(
                6, 2, n_experts=4, top_k=2, expert_hidden_layer_sizes=(8,),
                load_balancing_coef=0.3, router_z_loss_coef=0.05,
            )  # fmt: skip
            module.fused_training = fused
            return module.double()

        return make

    def multi():
        return MultiGateMixtureOfExperts(
            6, [1, 1], n_shared_experts=4, expert_hidden_layer_sizes=(8,), top_k=2,
            load_balancing_coef=0.3, router_z_loss_coef=0.05,
        ).double()  # fmt: skip

    return {
        "engine_fused": single(True),
        "engine_autograd": single(False),
        "engine_multigate": multi,
    }


def engine_fit(name, rows=None, parallel=None):
    """The float64 module ``name`` after six unshuffled epochs of global batch 32
    on ``rows`` of :func:`engine_data` (all of them by default); its parameters and
    loss curve."""
    from skmoe._engine import (
        Batches,
        DenseRows,
        MeanSquaredError,
        TrainingConfig,
        TrainingHistory,
        make_optimizer,
        train,
    )

    x, y, w = engine_data()
    if rows is not None:
        x, y, w = x[rows], y[rows], w[rows]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = engine_modules()[name]()
    optimizer = make_optimizer(module, 1e-2, 1e-3, torch.device("cpu"))
    data = Batches(DenseRows(x), y, w)
    if parallel is not None:
        parallel.set_rows(data)
    config = TrainingConfig(max_epochs=6, batch_size=32, shuffle=False)
    history = train(
        module, MeanSquaredError(2), optimizer, data, config, TrainingHistory(), 0,
        parallel=parallel,
    )  # fmt: skip
    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    return params, history.loss_curve


def optimizer_steps(estimator):
    """How many steps the estimator's optimiser took."""
    states = estimator._optimizer.state.values()
    return int(max(float(state["step"]) for state in states))


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
        batch_size=BATCH,
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


def sample_weights(n_rows):
    """Row weights between 0.2 and 2.2."""
    return 0.2 + 2.0 * np.random.default_rng(1).random(n_rows)


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
        report[name] = {
            "n_iter": estimator.n_iter_,
            "loss": estimator.loss_curve_,
            "steps": optimizer_steps(estimator),
            "batch_size": estimator.batch_size_,
        }
        fitted[name] = estimator

    # Rank 0 holds three quarters of every step's rows, and the rows are weighted.
    factory, _ = cases()["top2_regressor"]
    weights = sample_weights(X.shape[0])
    mine = uneven_shard(X.shape[0], 3 * X.shape[0] // 4, rank)
    uneven = factory().set_params(alpha=1e-3)
    uneven.fit(X[mine], targets[1][mine], sample_weight=weights[mine])
    _save_params(uneven, out / f"uneven_weighted_rank{rank}.npz")
    report["uneven_weighted"] = {"loss": uneven.loss_curve_}

    # Two partial_fit passes over each rank's blocks.
    partial = cases()["single_regressor"][0]()
    for _ in range(2):
        partial.partial_fit(X[rows], targets[1][rows])
    _save_params(partial, out / f"partial_rank{rank}.npz")
    report["partial"] = {"loss": partial.loss_curve_}

    # The engine in float64, rank 0 with three quarters of every step's rows.
    from skmoe._engine.distributed import data_parallel_group

    # With 117 rows on rank 0, rank 1 has no row in the third step.
    for name in engine_modules():
        for n_first in ENGINE_SPLITS:
            mine = uneven_shard(120, n_first, rank)
            params, curve = engine_fit(name, mine, data_parallel_group())
            np.savez(out / f"{name}_{n_first}_rank{rank}.npz", **params)
            report[f"{name}_{n_first}"] = {"loss": curve}

    # Rank 1 holds 3 rows, none of the second step's: it takes part with an empty
    # batch.
    for name in ("top1_classifier", "multi_top2_regressor"):
        factory, target = cases()[name]
        mine = uneven_shard(X.shape[0], X.shape[0] - 3, rank)
        tiny = factory().fit(X[mine], targets[target - 1][mine])
        _save_params(tiny, out / f"tiny_{name}_rank{rank}.npz")
        report[f"tiny_{name}"] = {"loss": tiny.loss_curve_}

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

    # Vocabularies with infrequent categories and a list column: the counts of
    # every rank's rows decide, as in a single process that holds them all.
    ids = id_frame()
    vocabulary = MixtureOfExpertsRegressor(
        min_frequency=2, max_iter=1, random_state=0, device="cpu"
    ).fit(ids.iloc[rows], targets[1][rows])
    report["vocabulary_encoder"] = vocabulary._input_encoder.to_json()

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
        "batch_smaller_than_ranks": lambda: MixtureOfExpertsClassifier(
            max_iter=1, batch_size=1
        ).fit(X[rows], targets[0][rows]),
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
