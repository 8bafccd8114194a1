"""Routing and balancing as seen through the estimators."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

FAST = dict(max_iter=15, random_state=0, device="cpu", learning_rate_init=1e-2)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=300, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return X, y


@pytest.mark.parametrize(
    "params, k",
    [
        (dict(n_experts=6, top_k=2), 2),
        (dict(n_experts=6, top_k=3), 3),
        (dict(n_experts=5, top_k=1), 1),
        (dict(n_experts=5, top_k=2, gating="noisy"), 2),
        (dict(n_experts=5, gating="switch"), 1),
        (dict(n_experts=5), 5),
    ],
)
def test_gate_weights_have_exactly_k_nonzeros_and_sum_to_one(data, params, k):
    X, y = data
    clf = MixtureOfExpertsClassifier(**params, **FAST).fit(X, y)
    weights = clf.gate_weights(X)
    assert weights.shape == (X.shape[0], params["n_experts"])
    np.testing.assert_array_equal((weights > 0).sum(axis=1), k)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    assert clf.expert_usage_.shape == (params["n_experts"],)
    assert clf.expert_usage_.sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("gating, top_k", [("noisy", 2), ("switch", None)])
def test_noisy_routing_predicts_deterministically(data, gating, top_k):
    X, y = data
    clf = MixtureOfExpertsClassifier(n_experts=4, top_k=top_k, gating=gating, **FAST)
    clf.fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(clf.gate_weights(X), clf.gate_weights(X))


def test_top_k_equal_to_n_experts_is_dense(data):
    X, y = data
    dense = MixtureOfExpertsClassifier(n_experts=3, **FAST).fit(X, y)
    full = MixtureOfExpertsClassifier(n_experts=3, top_k=3, **FAST).fit(X, y)
    np.testing.assert_allclose(dense.predict_proba(X), full.predict_proba(X))


def _collapsing_regression(seed=0):
    """Rows share a large offset in one feature, so the gate's first favourite wins
    every row unless something pushes back."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1500, 8))
    X[:, 0] += 5.0
    return X, X @ rng.normal(size=8)


def test_load_balancing_loss_evens_out_a_collapsing_gate():
    X, y = _collapsing_regression()
    usage = {}
    for coef in (0.0, 1.0):
        usage[coef] = [
            MixtureOfExpertsRegressor(
                n_experts=4,
                top_k=1,
                load_balancing_coef=coef,
                router_z_loss_coef=0.0,
                max_iter=30,
                input_scaling=None,  # scaling would remove the shared offset
                learning_rate="constant",
                random_state=seed,
                device="cpu",
            )
            .fit(X, y)
            .expert_usage_.max()
            for seed in range(3)
        ]
    # Without balancing most seeds put most rows on one expert; with it, none do.
    assert np.mean(usage[0.0]) > 0.7
    assert max(usage[1.0]) < 0.4


def test_z_loss_keeps_router_logits_small():
    X, y = _collapsing_regression(1)
    norms = {}
    for coef in (0.0, 1.0):
        reg = MixtureOfExpertsRegressor(
            n_experts=4,
            top_k=2,
            load_balancing_coef=0.0,
            router_z_loss_coef=coef,
            max_iter=10,
            random_state=0,
            device="cpu",
        ).fit(X, y)
        norms[coef] = float(reg.module_.gate.router.weight.detach().norm())
    assert norms[1.0] < norms[0.0]
