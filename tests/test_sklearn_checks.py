"""scikit-learn's own conformance checks over every estimator configuration."""

import pytest
from _conformance import expected_failed_checks
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_param_validation,
    check_regressor_multioutput,
    parametrize_with_checks,
)

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

# Small, fast settings: the checks fit dozens of models on tiny data sets.
FAST = dict(
    max_iter=60,
    learning_rate_init=1e-2,
    random_state=0,
    device="cpu",
    expert_hidden_layer_sizes=(16,),
)

ESTIMATORS = [
    MixtureOfExpertsClassifier(**FAST),
    MixtureOfExpertsClassifier(n_experts=4, top_k=2, **FAST),
    MixtureOfExpertsClassifier(n_experts=3, top_k=1, gating="noisy", **FAST),
    MixtureOfExpertsClassifier(n_experts=3, gating="switch", **FAST),
    MixtureOfExpertsRegressor(**FAST),
    MixtureOfExpertsRegressor(n_experts=4, top_k=2, **FAST),
    MixtureOfExpertsRegressor(n_experts=3, gating="switch", **FAST),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "estimator",
    [MixtureOfExpertsClassifier(**FAST), MixtureOfExpertsRegressor(**FAST)],
    ids=["classifier", "regressor"],
)
def test_named_checks(estimator):
    name = type(estimator).__name__
    check_dataframe_column_names_consistency(name, estimator)
    check_param_validation(name, estimator)


def test_regressor_multioutput_check():
    est = MixtureOfExpertsRegressor(**FAST)
    check_regressor_multioutput(type(est).__name__, est)
