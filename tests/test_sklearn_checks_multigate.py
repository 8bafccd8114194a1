"""scikit-learn's conformance checks over the multi-gate estimators."""

import pytest
from _conformance import run_check
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_param_validation,
    check_regressor_multioutput,
    parametrize_with_checks,
)

from skmoe import MultiGateMoE, MultiGateMoEClassifier, MultiGateMoERegressor

FAST = dict(
    max_iter=60,
    learning_rate_init=1e-2,
    random_state=0,
    device="cpu",
    expert_hidden_layer_sizes=(16,),
    tower_hidden_layer_sizes=(8,),
)

ESTIMATORS = [
    MultiGateMoEClassifier(**FAST),
    MultiGateMoEClassifier(architecture="ple", top_k=2, **FAST),
    MultiGateMoEClassifier(architecture="shared_bottom", **FAST),
    MultiGateMoERegressor(**FAST),
    MultiGateMoERegressor(architecture="cgc", top_k=1, **FAST),
    MultiGateMoERegressor(architecture="ple", **FAST),
    MultiGateMoERegressor(architecture="shared_bottom", **FAST),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    run_check(estimator, check)


@parametrize_with_checks(
    [
        MultiGateMoE(**FAST),
        MultiGateMoE(architecture="ple", top_k=2, task_weights="uncertainty", **FAST),
    ],
)
def test_sklearn_compatible_mixed(estimator, check):
    run_check(estimator, check)


@pytest.mark.parametrize(
    "estimator",
    [
        MultiGateMoEClassifier(**FAST),
        MultiGateMoERegressor(**FAST),
        MultiGateMoE(**FAST),
    ],
    ids=["classifier", "regressor", "mixed"],
)
def test_named_checks(estimator):
    name = type(estimator).__name__
    check_dataframe_column_names_consistency(name, estimator)
    check_param_validation(name, estimator)


@pytest.mark.parametrize("architecture", ["mmoe", "cgc", "ple", "shared_bottom"])
def test_regressor_multioutput_check(architecture):
    est = MultiGateMoERegressor(architecture=architecture, **FAST)
    check_regressor_multioutput(type(est).__name__, est)
