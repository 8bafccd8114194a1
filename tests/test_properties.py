"""Property-based tests: whatever arrays reach fit and predict, the answer is a result
or a ValueError/TypeError, never a torch error, and results are finite; valid arrays
always fit, and a fitted model predicts any rows of its width."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
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
def targets(draw, n_rows, kind, valid=False):
    """``y`` for ``n_rows`` rows; ``valid``: every output has two classes at least
    (classification) or finite values (regression)."""
    n_outputs = draw(st.sampled_from([None, 1, 2]))
    shape = (n_rows,) if n_outputs is None else (n_rows, n_outputs)
    if kind == "classification":
        choices = [["a", "b"], [0, 1, 2], [True, False]]
        if not valid:  # float labels are continuous targets to scikit-learn
            choices.append([1.5, 2.5])
        labels = draw(st.sampled_from(choices))
        y = draw(
            hnp.arrays(
                np.asarray(labels).dtype, shape, elements=st.sampled_from(labels)
            )
        )
        if valid:
            y[:2] = np.asarray(labels[:2]).reshape((2,) + (1,) * (y.ndim - 1))
        return y
    return draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e3, 1e3)))


@st.composite
def valid_features(draw, min_rows=2):
    """A 2-D array ``fit`` must accept: finite numbers, a column or more."""
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.uint8]))
    rows, cols = draw(st.integers(min_rows, 25)), draw(st.integers(1, 5))
    elements = st.floats(-1e3, 1e3, width=32) if np.dtype(dtype).kind == "f" else None
    return draw(hnp.arrays(dtype, (rows, cols), elements=elements))


def _rows_like(data, X, label):
    """Rows of ``X``'s width (as ``predict`` needs), of any dtype and values."""
    dtype = data.draw(dtypes, label=f"{label} dtype")
    rows = data.draw(st.integers(1, 25), label=f"{label} rows")  # 0: a ValueError
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=False, width=16)
    return data.draw(hnp.arrays(dtype, (rows, X.shape[1]), elements=elements), label)


def _check_predictions(est, kind, X_new):
    prediction = est.predict(X_new)
    assert prediction.shape[0] == X_new.shape[0]
    if kind == "regression":
        assert np.isfinite(prediction).all()
    weights = est.gate_weights(X_new)
    assert weights.shape[0] == X_new.shape[0]
    assert np.isfinite(weights).all()


ESTIMATORS = pytest.mark.parametrize(
    "Estimator, kind",
    [
        (MixtureOfExpertsClassifier, "classification"),
        (MixtureOfExpertsRegressor, "regression"),
        (MultiGateMoEClassifier, "classification"),
        (MultiGateMoERegressor, "regression"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)


def _small(Estimator):
    return Estimator(max_iter=2, random_state=0, device="cpu", batch_size=8)


@ESTIMATORS
@SETTINGS
@given(data=st.data())
def test_fit_and_predict_answer_with_results_or_clear_errors(Estimator, kind, data):
    X = data.draw(feature_arrays(min_rows=1), label="X")
    y = data.draw(targets(X.shape[0], kind), label="y")
    est = _small(Estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
        except ACCEPTED:
            event("fit refused the data")  # --hypothesis-show-statistics counts
            return
        event("fitted and predicted")
        X_new = _rows_like(data, X, "X_new")  # NaN is valid input; inf is not
        _check_predictions(est, kind, X_new)


@ESTIMATORS
@SETTINGS
@given(data=st.data())
def test_fit_succeeds_on_valid_input(Estimator, kind, data):
    X = data.draw(valid_features(), label="X")
    y = data.draw(targets(X.shape[0], kind, valid=True), label="y")
    est = _small(Estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)  # no error is acceptable here
        assert est.n_features_in_ == X.shape[1]
        _check_predictions(est, kind, _rows_like(data, X, "X_new"))


@SETTINGS
@given(data=st.data())
def test_any_sample_weight_is_used_or_refused(data):
    n_rows = data.draw(st.integers(2, 12), label="rows")
    length = data.draw(st.sampled_from([n_rows, n_rows, st.integers(0, 14)]))
    if not isinstance(length, int):
        length = data.draw(length, label="weights length")
    weights = data.draw(
        hnp.arrays(
            np.float64,
            length,
            elements=st.one_of(
                st.floats(allow_nan=True, width=32), st.floats(0, 10, width=32)
            ),
        ),
        label="weights",
    )
    X = np.arange(2.0 * n_rows).reshape(n_rows, 2)
    y = np.arange(n_rows) % 2
    est = MixtureOfExpertsClassifier(max_iter=1, random_state=0, device="cpu")
    valid = (
        weights.shape == (n_rows,)
        and np.isfinite(weights).all()
        and (weights >= 0).all()
        and weights.sum() > 0
    )
    if not valid:
        # scikit-learn's own messages; an empty array is refused as any empty input
        with pytest.raises(ValueError, match=r"(?i)sample.?weight|with 0 sample"):
            est.fit(X, y, sample_weight=weights)
        return
    est.fit(X, y, sample_weight=weights)
    assert np.isfinite(est.predict_proba(X)).all()
