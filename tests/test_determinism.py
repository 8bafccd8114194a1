"""A CPU prediction is a pure function of the fitted model and the row: the same bits
for any ``n_threads``, any load on the machine and any other rows in the call; a
seeded fit is the same bits whatever else runs on the machine."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

import skmoe._engine.threads as threads
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

N_ROWS = 300  # several NumPy chunks and torch blocks


def _data(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 6))
    signal = X[:, 0] + np.sin(2 * X[:, 1]) - X[:, 2] * X[:, 3]
    if kind == "regression":
        y = signal
    elif kind == "classes":
        y = np.digitize(signal, [-0.5, 0.5])
    elif kind == "tasks":
        y = np.column_stack([signal, X[:, 4] - signal])
    else:  # two classification tasks
        y = np.column_stack([signal > 0, X[:, 4] > 0]).astype(int)
    return X, y


ESTIMATORS = {
    "single-gate regressor": (MixtureOfExpertsRegressor(n_experts=4), "regression"),
    "single-gate top-2 classifier": (
        MixtureOfExpertsClassifier(n_experts=5, top_k=2),
        "classes",
    ),
    "single-gate top-3 regressor": (
        MixtureOfExpertsRegressor(n_experts=6, top_k=3),
        "regression",
    ),
    "multi-gate regressor": (MultiGateMoERegressor(n_experts=4), "tasks"),
    "multi-gate ple classifier": (
        MultiGateMoEClassifier(architecture="ple", n_task_experts=2),
        "task classes",
    ),
    "periodic embedding (torch only)": (
        MixtureOfExpertsRegressor(n_experts=4, num_embedding="periodic"),
        "regression",
    ),
}


def _fit(name):
    estimator, kind = ESTIMATORS[name]
    X, y = _data(kind)
    estimator = estimator.set_params(max_iter=5, random_state=0, device="cpu")
    return estimator.fit(X, y), X, y


def _outputs(estimator, X, y):
    """Every prediction method's output on ``X``, by name."""
    out = {
        "predict": estimator.predict(X),
        "gate_weights": estimator.gate_weights(X),
        "apply": estimator.apply(X),
    }
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(X)
        for i, p in enumerate(proba if isinstance(proba, list) else [proba]):
            out[f"predict_proba[{i}]"] = p
    if y is not None:
        out["score"] = np.array(estimator.score(X, y))
    return out


def _assert_same_bits(got, expected, rows=slice(None)):
    for name, value in expected.items():
        if name == "score":
            continue
        np.testing.assert_array_equal(got[name], value[rows], err_msg=name)


@pytest.fixture(params=["numpy", "torch"])
def path(request):
    return request.param


def _on_path(estimator, path, monkeypatch):
    """Predict through ``path``; the torch path by hiding the NumPy model."""
    has_numpy = estimator._inference_module()[2] is not None
    if path == "numpy" and not has_numpy:
        pytest.skip("this model has no NumPy evaluator")
    if path == "torch" and has_numpy:
        cached = estimator._inference_cache
        monkeypatch.setattr(
            estimator,
            "_inference_module",
            lambda: (*cached.get(estimator.module_, estimator.device_)[:2], None),
        )
    return estimator


@pytest.fixture
def busy_machine(monkeypatch):
    """Simulate a 4-core machine on which ``others`` threads of other processes run."""

    def set_load(others):
        monkeypatch.setattr(threads, "usable_cores", lambda: 4)
        monkeypatch.setattr(threads, "other_runnable", lambda: others)

    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield set_load
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_predictions_are_the_same_bits_for_any_thread_count_and_load(
    name, path, monkeypatch, busy_machine
):
    estimator, X, y = _fit(name)
    estimator = _on_path(estimator, path, monkeypatch)
    X, y = np.concatenate([X] * 4), np.concatenate([y] * 4)  # blocks for 4 workers
    estimator.set_params(n_threads=1)
    expected = _outputs(estimator, X, y)
    for n_threads, others in [(2, 0), (4, 0), (None, 0), ("auto", 0), ("auto", 3)]:
        busy_machine(others)
        estimator.set_params(n_threads=n_threads)
        got = _outputs(estimator, X, y)
        _assert_same_bits(got, expected)
        assert got["score"] == expected["score"], (n_threads, others)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_a_rows_prediction_does_not_depend_on_the_other_rows(name, path, monkeypatch):
    estimator, X, _ = _fit(name)
    estimator = _on_path(estimator, path, monkeypatch)
    expected = _outputs(estimator, X, None)
    rng = np.random.default_rng(1)
    for i in (0, 17, N_ROWS - 1):  # alone
        _assert_same_bits(_outputs(estimator, X[i : i + 1], None), expected, [i])
    shuffled = rng.permutation(N_ROWS)
    _assert_same_bits(_outputs(estimator, X[shuffled], None), expected, shuffled)
    for size in (2, 5, 16, 17, 129):
        rows = rng.choice(N_ROWS, size=size, replace=False)
        _assert_same_bits(_outputs(estimator, X[rows], None), expected, rows)
    # inside a batch far larger than any chunk or block
    order = rng.permutation(4 * N_ROWS)
    big = np.concatenate([X] * 4)[order]
    _assert_same_bits(_outputs(estimator, big, None), expected, order % N_ROWS)


FIT_UNDER_LOAD = {
    # 1 and 2 torch threads fit this one to different bits (a 1,000-row batch
    # through 8 experts: torch splits its reductions between threads).
    "single-gate top-2 of 8": MixtureOfExpertsRegressor(
        n_experts=8, top_k=2, batch_size=1000, max_iter=3
    ),
    "multi-gate regressor": MultiGateMoERegressor(n_experts=4, max_iter=3),
}


@pytest.mark.parametrize("name", list(FIT_UNDER_LOAD))
def test_a_seeded_fit_is_the_same_bits_whatever_the_load(name, busy_machine):
    """n_threads="auto" must not let the machine's load choose how a fit computes."""
    import skmoe._engine.trainer as trainer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 20))
    y = X[:, 0] + np.sin(X[:, 1])
    if name.startswith("multi"):
        y = np.column_stack([y, X[:, 2] - y])
    fitted, seen = [], []
    original = trainer.run_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    trainer.run_epoch = spy
    try:
        for others in (0, 3):  # a free 4-core machine, then 3 cores busy
            busy_machine(others)
            estimator = clone(FIT_UNDER_LOAD[name]).set_params(random_state=0)
            fitted.append(estimator.fit(X, y))
    finally:
        trainer.run_epoch = original
    first, second = fitted
    for a, b in zip(
        first.module_.parameters(), second.module_.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    assert len(set(seen)) == 1  # the same thread count, idle or busy


def test_a_frame_with_categorical_columns_predicts_each_row_alone_the_same_bits():
    """Embedded models (categorical columns) have no NumPy evaluator: torch path."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=N_ROWS),
            "z": rng.normal(size=N_ROWS),
            "city": pd.Categorical(rng.choice(list("abcdefg"), size=N_ROWS)),
        }
    )
    y = frame["x"] + (frame["city"] == "a") - 0.5 * frame["z"]
    model = MixtureOfExpertsRegressor(n_experts=3, max_iter=3, random_state=0)
    model.fit(frame, y)
    assert model._inference_module()[2] is None
    expected = _outputs(model.set_params(n_threads=1), frame, None)
    model.set_params(n_threads=2)
    _assert_same_bits(_outputs(model, frame, None), expected)
    order = rng.permutation(N_ROWS)
    _assert_same_bits(_outputs(model, frame.iloc[order], None), expected, order)
    for i in (0, 7, N_ROWS - 1):
        _assert_same_bits(_outputs(model, frame.iloc[i : i + 1], None), expected, [i])
