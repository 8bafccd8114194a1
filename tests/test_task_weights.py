"""Per-task sample weights of multi-task fits: a 2-D ``sample_weight`` or a dict
by task."""

import numpy as np
import pandas as pd
import pytest

from skmoe import MultiGateMoE, MultiGateMoEClassifier, MultiGateMoERegressor

FAST = dict(max_iter=8, random_state=0, device="cpu", learning_rate_init=1e-2)


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.column_stack([X[:, 0] + 0.1 * X[:, 1], X[:, 1] - X[:, 2]])
    return X, y


def test_identical_task_columns_equal_a_row_weight():
    X, y = _data()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    one = MultiGateMoERegressor(**FAST).fit(X, y, sample_weight=w)
    two = MultiGateMoERegressor(**FAST).fit(X, y, sample_weight=np.c_[w, w])
    np.testing.assert_allclose(two.predict(X), one.predict(X), rtol=0, atol=1e-5)


@pytest.mark.parametrize("Estimator", [MultiGateMoERegressor, MultiGateMoEClassifier])
def test_a_zero_task_weight_takes_the_row_out_of_that_task_s_loss(Estimator):
    """Labels of a task on rows where it weighs 0 have no influence at all: the
    conversion task's loss only on clicked rows."""
    X, y = _data()
    if Estimator is MultiGateMoEClassifier:
        y = (y > 0).astype(int)
    clicked = X[:, 3] > 0
    weights = np.column_stack([np.ones(len(X)), clicked.astype(float)])
    scrambled = y.copy()
    scrambled[~clicked, 1] = (
        y[~clicked, 1][::-1]
        if Estimator is MultiGateMoERegressor
        else 1 - y[~clicked, 1]
    )
    a = Estimator(**FAST).fit(X, y, sample_weight=weights)
    b = Estimator(**FAST).fit(X, scrambled, sample_weight=weights)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = Estimator(**FAST).fit(X, scrambled)  # unweighted, the labels do count
    assert not np.array_equal(c.predict(X), a.predict(X))


def test_weighing_a_task_up_fits_it_better():
    X, y = _data()
    even = MultiGateMoERegressor(**FAST).fit(X, y)
    up = MultiGateMoERegressor(**FAST).fit(
        X, y, sample_weight=np.c_[np.ones(len(X)), np.full(len(X), 8.0)]
    )

    def error(model, t):
        return np.mean((model.predict(X)[:, t] - y[:, t]) ** 2)

    assert error(up, 1) < error(even, 1)


def test_a_dict_by_task_name_equals_the_matrix():
    X, y = _data()
    frame_y = pd.DataFrame({"click": (y[:, 0] > 0).astype(int), "watch": y[:, 1]})
    clicked = frame_y["click"].to_numpy().astype(float)
    by_name = MultiGateMoE(**FAST).fit(X, frame_y, sample_weight={"watch": clicked})
    matrix = MultiGateMoE(**FAST).fit(
        X, frame_y, sample_weight=np.c_[np.ones(len(X)), clicked]
    )
    pd.testing.assert_frame_equal(by_name.predict(X), matrix.predict(X))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones((240, 3)), r"one column per task, shape \(240, 2\)"),
        ({"nope": np.ones(240)}, "names the task 'nope'"),
        ({0: np.ones(10)}, r"sample_weight\[0\] has shape \(10,\)"),
        (-np.ones((240, 2)), "finite, non-negative"),
    ],
)
def test_bad_task_weights_are_refused_by_name(weights, message):
    X, y = _data()
    with pytest.raises(ValueError, match=message) as info:
        MultiGateMoERegressor(**FAST).fit(X, y, sample_weight=weights)
    assert "MultiGateMoERegressor" in str(info.value)


def test_single_gate_estimators_still_take_one_weight_per_row():
    from skmoe import MixtureOfExpertsRegressor

    X, y = _data()
    with pytest.raises(ValueError, match="1D"):
        MixtureOfExpertsRegressor(**FAST).fit(X, y, sample_weight=np.ones((240, 2)))
