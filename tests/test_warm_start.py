"""warm_start and partial_fit continue the fitted network, and refuse when told to
continue a network the parameters no longer describe."""

import numpy as np
import pytest

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

FAST = dict(max_iter=3, random_state=0, device="cpu")
rng = np.random.default_rng(0)
X = rng.normal(size=(80, 4))
Y_CLS = np.where(X[:, 0] > 0, "a", "b")
Y_REG = X[:, 1] * 2.0
Y_TASKS = np.column_stack([Y_REG, X[:, 2]])

SINGLE = [(MixtureOfExpertsClassifier, Y_CLS), (MixtureOfExpertsRegressor, Y_REG)]
MULTI = [
    (MultiGateMoEClassifier, np.column_stack([Y_CLS, Y_CLS[::-1]])),
    (MultiGateMoERegressor, Y_TASKS),
]
SHAPING = [
    ("n_experts", 6),
    ("top_k", 2),
    ("gating", "noisy"),
    ("expert_hidden_layer_sizes", (8, 8)),
    ("activation", "tanh"),
]
MULTI_SHAPING = [
    ("architecture", "cgc"),
    ("n_task_experts", 2),
    ("n_levels", 3),
    ("tower_hidden_layer_sizes", (4,)),
]
CASES = [
    (E, y, name, value)
    for E, y in SINGLE + MULTI
    for name, value in SHAPING + (MULTI_SHAPING if (E, y) in MULTI else [])
]
IDS = [f"{E.__name__}-{name}" for E, _, name, _ in CASES]


@pytest.mark.parametrize("Estimator, y, name, value", CASES, ids=IDS)
def test_changed_network_parameter_is_refused_and_nothing_changes(
    Estimator, y, name, value, tmp_path
):
    params = {**FAST, "warm_start": True}
    if Estimator in (MultiGateMoEClassifier, MultiGateMoERegressor):
        params["architecture"] = "ple" if name == "n_levels" else "mmoe"
    est = Estimator(**params).fit(X, y)
    before = est.predict(X)
    n_iter = est.n_iter_
    est.set_params(**{name: value})
    with pytest.raises(ValueError, match=rf"{Estimator.__name__}: {name} changed"):
        est.fit(X, y)
    with pytest.raises(ValueError, match=rf"{name} changed"):
        est.partial_fit(X, y)
    assert est.n_iter_ == n_iter
    np.testing.assert_array_equal(est.predict(X), before)
    # save refuses too rather than write a file whose parameters and weights disagree
    path = tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match=rf"{name} changed"):
        skmoe.save(est, path)
    assert not path.exists()
    # without warm_start the parameter is honoured: a new network is built
    est.set_params(warm_start=False).fit(X, y)
    assert est.get_params()[name] == value
    skmoe.save(est, path)
    np.testing.assert_array_equal(skmoe.load(path).predict(X), est.predict(X))


@pytest.mark.parametrize("Estimator, y", SINGLE + MULTI, ids=lambda v: str(v)[:30])
def test_warm_start_with_unchanged_network_continues(Estimator, y, tmp_path):
    est = Estimator(warm_start=True, **FAST).fit(X, y)
    weights = [p.detach().clone() for p in est.module_.parameters()]
    # parameters that do not shape the network may change between warm fits
    est.set_params(learning_rate_init=1e-2, max_iter=2, alpha=1e-3, batch_size=16)
    est.fit(X, y)
    assert est.n_iter_ == FAST["max_iter"] + 2
    assert len(est.loss_curve_) == est.n_iter_
    assert any(
        not np.array_equal(a, b.detach())
        for a, b in zip(weights, est.module_.parameters(), strict=True)
    )
    skmoe.save(est, tmp_path / "m.safetensors")
    loaded = skmoe.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


def test_equivalent_spellings_of_a_size_are_not_a_change():
    est = MixtureOfExpertsRegressor(expert_hidden_layer_sizes=(8,), **FAST)
    est.set_params(warm_start=True).fit(X, Y_REG)
    est.set_params(expert_hidden_layer_sizes=[8]).fit(X, Y_REG)
    est.set_params(expert_hidden_layer_sizes=np.array([8])).fit(X, Y_REG)
    assert est.n_iter_ == 3 * FAST["max_iter"]


def test_partial_fit_refuses_different_classes_like_sgd():
    clf = MixtureOfExpertsClassifier(**FAST)
    clf.partial_fit(X, Y_CLS, classes=["a", "b"])
    clf.partial_fit(X, Y_CLS, classes=np.array(["b", "a"]))  # same set, any order
    clf.partial_fit(X, Y_CLS)
    with pytest.raises(ValueError, match=r"Classifier\.partial_fit: cl"):
        clf.partial_fit(X, Y_CLS, classes=["a", "b", "c"])
    assert clf.n_iter_ == 3
    # after fit, as SGDClassifier: classes= must match the fitted classes_
    clf = MixtureOfExpertsClassifier(**FAST).fit(X, Y_CLS)
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, Y_CLS, classes=["a", "z"])
    multi = MultiGateMoEClassifier(**FAST)
    y2 = np.column_stack([Y_CLS, Y_CLS[::-1]])
    multi.partial_fit(X, y2, classes=[["a", "b"], ["a", "b"]])
    with pytest.raises(ValueError, match="not the same"):
        multi.partial_fit(X, y2, classes=[["a", "b"], ["a", "b", "c"]])
