"""Property-based tests: whatever arrays reach fit and predict, the answer is a result
or a ValueError/TypeError, never a torch error, and results are finite."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ACCEPTED = (ValueError, TypeError)

dtypes = st.sampled_from(
    [np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8, np.bool_]
)


@st.composite
def feature_arrays(draw, min_rows=0):
    dtype = draw(dtypes)
    rows = draw(st.integers(min_rows, 25))
    cols = draw(st.integers(0, 5))
    ndim = draw(st.sampled_from([2, 2, 2, 1, 3]))
    shape = {1: (rows,), 2: (rows, cols), 3: (rows, cols, 2)}[ndim]
    if np.dtype(dtype).kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=16)
        if draw(st.booleans()):
            elements = st.floats(-1e3, 1e3, width=16)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def targets(draw, n_rows, kind):
    n_outputs = draw(st.sampled_from([None, 1, 2]))
    shape = (n_rows,) if n_outputs is None else (n_rows, n_outputs)
    if kind == "classification":
        labels = draw(
            st.sampled_from([["a", "b"], [0, 1, 2], [True, False], [1.5, 2.5]])
        )
        return draw(
            hnp.arrays(
                np.asarray(labels).dtype, shape, elements=st.sampled_from(labels)
            )
        )
    return draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e3, 1e3)))


def _fit_predict(Estimator, kind, data):
    X = data.draw(feature_arrays(min_rows=1), label="X")
    n_rows = X.shape[0]
    y = data.draw(targets(n_rows, kind), label="y")
    X_new = data.draw(feature_arrays(), label="X_new")
    est = Estimator(max_iter=2, random_state=0, device="cpu", batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
        except ACCEPTED:
            return
        try:
            prediction = est.predict(X_new)
        except ACCEPTED:
            return
    assert prediction.shape[0] == X_new.shape[0]
    if kind == "regression":
        assert np.isfinite(prediction).all()
    weights = est.gate_weights(X_new)
    assert np.isfinite(weights).all()


@pytest.mark.parametrize(
    "Estimator, kind",
    [
        (MixtureOfExpertsClassifier, "classification"),
        (MixtureOfExpertsRegressor, "regression"),
        (MultiGateMoEClassifier, "classification"),
        (MultiGateMoERegressor, "regression"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
@SETTINGS
@given(data=st.data())
def test_fit_and_predict_answer_with_results_or_clear_errors(Estimator, kind, data):
    _fit_predict(Estimator, kind, data)


@SETTINGS
@given(
    weights=hnp.arrays(
        np.float64, st.integers(0, 12), elements=st.floats(allow_nan=True, width=32)
    )
)
def test_any_sample_weight_is_used_or_refused(weights):
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10) % 2
    est = MixtureOfExpertsClassifier(max_iter=1, random_state=0, device="cpu")
    try:
        est.fit(X, y, sample_weight=weights)
    except ACCEPTED:
        return
    assert weights.shape == (10,)
    assert np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0
    assert np.isfinite(est.predict_proba(X)).all()
