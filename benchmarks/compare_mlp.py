"""Mixture of experts against scikit-learn's MLP on the data sets scikit-learn bundles.

Every model sits in ``make_pipeline(StandardScaler(), model)`` and is fitted on the
same stratified 75/25 train/test splits, one per seed, with ``random_state=seed`` for
the model too. The script prints one markdown table with the mean ± standard deviation
over the seeds of the test score (accuracy for classifiers, R² for regressors) and of
the wall-clock fit time, and the mean number of epochs trained (``n_iter_``).

Models (all other parameters are the estimators' defaults):

* ``MLPClassifier`` / ``MLPRegressor``: scikit-learn's defaults, one hidden layer of
  100 units;
* ``MoE (defaults)``: ``MixtureOfExpertsClassifier()`` or
  ``MixtureOfExpertsRegressor()``, 4 experts of one hidden layer of 64 units, dense
  softmax gate;
* ``MoE top_k=2``: each row uses its two best experts only;
* ``MoE switch``: ``gating="switch"``, one expert per row.

On ``load_diabetes`` a further row, ``MLPRegressor (scaled y)``, wraps the MLP in a
``TransformedTargetRegressor`` that standardises the target, because
``MixtureOfExpertsRegressor`` standardises targets internally and ``MLPRegressor`` does
not. The diabetes split is not stratified (the target is continuous).

Both libraries run with ``--threads`` CPU threads (default 1: ``torch.set_num_threads``
for skmoe, ``threadpoolctl`` for the BLAS under scikit-learn), which keeps timings
stable on a small or shared machine. skmoe keeps its default ``device="auto"``, so it
trains on a GPU when torch sees one; the header line says which. One untimed fit of
each model comes first, so that no timing includes one-off start-up costs.

Usage::

    python benchmarks/compare_mlp.py            # full run, 5 seeds
    python benchmarks/compare_mlp.py --quick    # tiny run: 2 seeds, 5 epochs
"""

import argparse
import platform
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
from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

DATASETS = {
    "digits": (load_digits, "classification"),
    "breast_cancer": (load_breast_cancer, "classification"),
    "wine": (load_wine, "classification"),
    "diabetes": (load_diabetes, "regression"),
}


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny run: 2 seeds, at most 5 epochs"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="number of splits (default 5)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per library (default 1)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    seeds = range(2 if args.quick else args.seeds)
    max_iter = 5 if args.quick else None
    torch.set_num_threads(args.threads)

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, skmoe {skmoe.__version__}; "
        f"skmoe device: {'cuda' if torch.cuda.is_available() else 'cpu'}; "
        f"{args.threads} thread(s), {len(seeds)} seeds"
        + (", max_iter=5 (quick)" if args.quick else "")
    )
    print()
    print(
        "| data set | model | test score (mean ± std) | fit time, s (mean ± std) "
        "| epochs |"
    )
    print("| --- | --- | --- | --- | --- |")
    start = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        for name, (loader, task) in DATASETS.items():
            X, y = loader(return_X_y=True)
            metric = "accuracy" if task == "classification" else "R²"
            label = f"{name} ({X.shape[0]}x{X.shape[1]}, {metric})"
            candidates = models(task)
            for factory in candidates.values():  # untimed warm-up fits
                evaluate(factory, X[:150], y[:150], task, range(1), 1)
            for model_name, factory in candidates.items():
                scores, times, epochs = evaluate(factory, X, y, task, seeds, max_iter)
                print(
                    f"| {label} | {model_name} | {scores.mean():.3f} ± "
                    f"{scores.std():.3f} | {times.mean():.2f} ± {times.std():.2f} "
                    f"| {'-' if np.isnan(epochs) else f'{epochs:.0f}'} |",
                    flush=True,
                )
    print()
    print(f"total time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
