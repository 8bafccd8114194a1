"""skmoe inside scikit-learn's model-selection tools, the way the README uses it."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.lognormal(10, 0.5, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    y = np.where((df["age"] > 40) ^ (df["plan"] == "pro"), "churn", "stay")
    return df, y


def _pipeline(estimator):
    preprocess = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            # Sparse one-hot output goes straight into the estimator.
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ],
        sparse_threshold=1.0,
    )
    return make_pipeline(preprocess, estimator)


def test_grid_search_in_parallel_over_experts_and_top_k():
    df, y = _frame()
    search = GridSearchCV(
        _pipeline(
            MixtureOfExpertsClassifier(
                max_iter=15, learning_rate_init=1e-2, random_state=0, device="cpu"
            )
        ),
        {
            "mixtureofexpertsclassifier__n_experts": [2, 4],
            "mixtureofexpertsclassifier__top_k": [None, 1],
        },
        cv=3,
        n_jobs=2,
    )
    search.fit(df, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_score_ > 0.8
    best = search.best_estimator_[-1]
    assert (
        best.n_experts == search.best_params_["mixtureofexpertsclassifier__n_experts"]
    )
    assert set(search.predict(df.head())) <= {"churn", "stay"}


def test_parallel_and_serial_searches_agree():
    df, y = _frame(n=150, seed=1)
    est = _pipeline(
        MixtureOfExpertsClassifier(max_iter=5, random_state=0, device="cpu")
    )
    grid = {"mixtureofexpertsclassifier__top_k": [None, 2]}
    serial = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(df, y)
    parallel = GridSearchCV(clone(est), grid, cv=2, n_jobs=2).fit(df, y)
    np.testing.assert_array_equal(
        serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"]
    )


@pytest.mark.parametrize("Estimator", [MixtureOfExpertsRegressor])
def test_cross_val_score_regressor(Estimator):
    df, _ = _frame(n=200)
    target = df["income"].to_numpy() / 1e4 + (df["plan"] == "pro")
    scores = cross_val_score(
        _pipeline(Estimator(max_iter=30, learning_rate_init=1e-2, random_state=0)),
        df,
        target,
        cv=3,
    )
    assert scores.mean() > 0.5
