"""Every bad input gets a ValueError or TypeError that names the problem, and a fitted
estimator stays usable afterwards."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

FAST = dict(max_iter=3, random_state=0, device="cpu")
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 4))
Y_CLS = np.where(X[:, 0] > 0, "a", "b")
Y_REG = X[:, 1] * 2.0
Y_TASKS = np.column_stack([Y_REG, X[:, 2]])


def fitted(Estimator, y):
    return Estimator(**FAST).fit(X, y)


ESTIMATORS = [
    (MixtureOfExpertsClassifier, Y_CLS),
    (MixtureOfExpertsRegressor, Y_REG),
    (MultiGateMoEClassifier, np.column_stack([Y_CLS, Y_CLS[::-1]])),
    (MultiGateMoERegressor, Y_TASKS),
]
IDS = [E.__name__ for E, _ in ESTIMATORS]

with_inf = X.copy()
with_inf[5, 2] = np.inf
with_nan = X.copy()
with_nan[3, 1] = np.nan
huge = X.copy()
huge[0, 0] = 1e300

BAD_X = [
    ("inf", with_inf, ValueError, "Input X contains infinity"),
    # One row, and float32: the paths that skip scikit-learn's generic checks.
    ("inf, one row", with_inf[5:6], ValueError, "Input X contains infinity"),
    ("inf, float32", with_inf.astype(np.float32), ValueError, "contains infinity"),
    ("strings", X.astype(str).astype(object) + "x", ValueError, "could not convert"),
    ("complex", X + 1j, ValueError, "Complex data not supported"),
    ("empty", X[:0], ValueError, "0 sample"),
    ("no features", X[:, :0], ValueError, "0 feature"),
    ("1-D", X[:, 0], ValueError, "Expected 2D array"),
    ("3-D", X[:, :, None], ValueError, "dim 3"),
]


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("name, bad, error, message", BAD_X, ids=[b[0] for b in BAD_X])
def test_bad_X_at_fit_and_predict(Estimator, y, name, bad, error, message):
    est = fitted(Estimator, y)
    before = est.predict(X)
    with pytest.raises(error, match=message):
        est.predict(bad)
    n = bad.shape[0] if bad.ndim else 0
    with pytest.raises(error, match=message):
        est.fit(bad, y[:n] if n and n <= len(y) else y)
    np.testing.assert_array_equal(est.predict(X), before)


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
def test_too_large_for_float32_without_scaling(Estimator, y):
    est = Estimator(input_scaling=None, **FAST).fit(X, y)
    before = est.predict(X)
    for call in (lambda: est.predict(huge), lambda: est.fit(huge, y)):
        with pytest.raises(ValueError, match="too large for float32"):
            call()
    np.testing.assert_array_equal(est.predict(X), before)


def test_robust_scaling_takes_huge_values():
    est = MixtureOfExpertsRegressor(input_scaling="robust", **FAST).fit(huge, Y_REG)
    encoded = est._input_encoder.transform(huge)
    # Smooth clipping: a value far beyond the rest reads as about +3, not inf or 0.
    assert 2.99 < encoded[0, 0] <= 3.0
    assert np.isfinite(est.predict(huge)).all()


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
def test_wrong_number_of_features_and_renamed_columns(Estimator, y):
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = Estimator(**FAST).fit(frame, y)
    before = est.predict(frame)
    with (
        pytest.warns(UserWarning, match="does not have valid feature names"),
        pytest.raises(ValueError, match="X has 3 features, but"),
    ):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame.rename(columns={"a": "z"}))
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame[["b", "a", "c", "d"]])
    np.testing.assert_array_equal(est.predict(frame), before)


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
def test_failed_refit_on_other_data_leaves_the_fitted_model_intact(Estimator, y):
    est = fitted(Estimator, y)
    before = est.predict(X)
    shape = (30, *np.shape(y)[1:])
    classifier = Estimator in (MixtureOfExpertsClassifier, MultiGateMoEClassifier)
    bad_targets = np.zeros(shape) if classifier else np.full(shape, np.nan)
    with pytest.raises(ValueError):
        est.fit(X[:30, :3], bad_targets)  # three features, and unusable targets
    assert est.n_features_in_ == 4
    np.testing.assert_array_equal(est.predict(X), before)


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
def test_inconsistent_lengths(Estimator, y):
    est = fitted(Estimator, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])


def test_nan_in_y():
    y = Y_REG.copy()
    y[4] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        MixtureOfExpertsRegressor(**FAST).fit(X, y)
    labels = Y_CLS.astype(object)
    labels[2] = None
    with pytest.raises(ValueError, match="missing"):
        MixtureOfExpertsClassifier(**FAST).fit(X, labels)
    labels = np.where(X[:, 0] > 0, 1.0, 0.0)
    labels[0] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        MixtureOfExpertsClassifier(**FAST).fit(X, labels)
    with pytest.raises(ValueError, match="y contains missing labels") as info:
        MultiGateMoERegressor(**FAST).fit(X, np.column_stack([y, Y_REG]))
    assert "MultiGateMoERegressor" in str(info.value)
    assert "allow_missing_labels=True" in str(info.value)


def test_classifier_targets():
    est = fitted(MixtureOfExpertsClassifier, Y_CLS)
    before = est.predict_proba(X)
    with pytest.raises(ValueError, match="only one class"):
        est.fit(X, np.full(len(X), "a"))
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, Y_REG)
    np.testing.assert_array_equal(est.predict_proba(X), before)
    with pytest.raises(ValueError, match="only one class"):
        MultiGateMoEClassifier(**FAST).fit(X, np.column_stack([Y_CLS, ["a"] * 60]))


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize(
    "weights, message",
    [
        (-np.ones(60), "Negative values"),
        (np.r_[np.nan, np.ones(59)], "NaN"),
        (np.zeros(60), "at least one non-zero"),
        (np.ones(59), r"sample_weight.shape == \(59,\), expected \(60,\)"),
        # Multi-task estimators take one column per task; three fit no y here.
        (np.ones((60, 3)), r"1D array or scalar|one column per task"),
    ],
    ids=["negative", "nan", "all-zero", "wrong-length", "2-D"],
)
def test_bad_sample_weight(Estimator, y, weights, message):
    est = fitted(Estimator, y)
    before = est.predict(X)
    with pytest.raises(ValueError, match=message):
        est.fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(est.predict(X), before)


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"n_experts": 0}, ValueError, "n_experts"),
        ({"n_experts": True}, TypeError, "n_experts"),
        ({"n_experts": 2.5}, TypeError, "n_experts"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"learning_rate_init": -0.1}, ValueError, "learning_rate_init"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"batch_size": "big"}, ValueError, "batch_size"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ({"gating": "hash"}, ValueError, "gating"),
        ({"gating": "switch", "top_k": 2}, ValueError, "switch"),
        ({"expert_hidden_layer_sizes": (8, -1)}, ValueError, "positive"),
        ({"expert_hidden_layer_sizes": ("8",)}, TypeError, "tuple of ints"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"device": 3}, ValueError, "device"),
    ],
)
def test_invalid_parameters(Estimator, y, params, error, message):
    est = fitted(Estimator, y)
    before = est.predict(X)
    est.set_params(**params)
    with pytest.raises(error, match=message):
        est.fit(X, y)
    np.testing.assert_array_equal(est.predict(X), before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
def test_unavailable_device(Estimator, y):
    with pytest.raises(ValueError, match="CUDA is not available"):
        Estimator(**{**FAST, "device": "cuda:0"}).fit(X, y)


def test_multigate_task_count_must_not_change_between_partial_fits():
    reg = MultiGateMoERegressor(**FAST).partial_fit(X, Y_TASKS)
    with pytest.raises(
        ValueError, match="y has 3 outputs but the estimator was fitted"
    ):
        reg.partial_fit(X, np.column_stack([Y_TASKS, Y_REG]))
    clf = MultiGateMoEClassifier(**FAST)
    two = np.column_stack([Y_CLS, Y_CLS])
    clf.partial_fit(X, two, classes=[["a", "b"], ["a", "b"]])
    with pytest.raises(ValueError, match="outputs"):
        clf.partial_fit(X, Y_CLS[:, None])
    with pytest.raises(ValueError, match="classes has 1 entries but y has 2"):
        MultiGateMoEClassifier(**FAST).partial_fit(X, two, classes=[["a", "b"]])


def test_sparse_matrix_with_nan_and_wrong_width():
    est = fitted(MixtureOfExpertsRegressor, Y_REG)
    bad = sp.csr_matrix(with_nan)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="X has 3 features"):
        est.predict(sp.csr_matrix(X[:, :3]))


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    for Estimator, _ in ESTIMATORS:
        with pytest.raises(NotFittedError):
            Estimator().predict(X)
        with pytest.raises(NotFittedError):
            Estimator().gate_weights(X)
