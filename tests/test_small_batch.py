"""CPU predictions take a NumPy path where it knows the module; it must agree with
PyTorch, and a row's prediction must be the same bits in any batch and any thread
count on both paths."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe._small_batch import (
    SMALL_BATCH_MAX_ROWS,
    SmallBatchMixture,
    SmallBatchMultiGate,
)
from skmoe.nn import MixtureOfExperts, MultiGateMixtureOfExperts

ROUTINGS = [
    {},
    {"top_k": 1},
    {"top_k": 2},
    {"top_k": 5},  # every expert: dense
    {"gating": "noisy", "top_k": 2},
    {"gating": "noisy", "top_k": 5},  # noisy keeps its top-k path even at k = n
    {"gating": "switch"},
]


@pytest.mark.parametrize("routing", ROUTINGS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("hidden", [(), (6,), (7, 4)], ids=str)
@pytest.mark.parametrize("n_rows", [1, 3, SMALL_BATCH_MAX_ROWS])
def test_numpy_forward_matches_the_torch_module(routing, activation, hidden, n_rows):
    torch.manual_seed(0)
    module = MixtureOfExperts(
        4,
        3,
        n_experts=5,
        expert_hidden_layer_sizes=hidden,
        activation=activation,
        **routing,
    )
    module = module.double().eval()
    with torch.no_grad():  # spread the router so that the chosen experts vary by row
        module.gate.router.weight.mul_(5.0)
    x = np.random.default_rng(1).normal(size=(n_rows, 4)) * 3
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(SmallBatchMixture(module)(x), expected, rtol=1e-10)


def _torch_path(fitted):
    """A stand-in for ``fitted._inference_module`` that offers no NumPy model."""
    return lambda: (
        *fitted._inference_cache.get(fitted.module_, fitted.device_)[:2],
        None,
    )


def _fitted(estimator, y_kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    if y_kind == "classes":
        y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    elif y_kind == "two outputs":
        y = np.column_stack([X[:, 0] > 0, X[:, 2] > 0.5]).astype(int)
    else:
        y = X @ rng.normal(size=(5, 2))
    return estimator.fit(X, y), X


@pytest.mark.parametrize(
    ("estimator", "y_kind"),
    [
        (MixtureOfExpertsClassifier(top_k=2, n_experts=4, max_iter=20), "classes"),
        (MixtureOfExpertsClassifier(max_iter=20), "two outputs"),
        (MixtureOfExpertsRegressor(gating="switch", max_iter=20), "values"),
    ],
    ids=["classifier top-2", "two-output classifier", "switch regressor"],
)
def test_small_batches_predict_as_the_torch_path_does(estimator, y_kind, monkeypatch):
    estimator.set_params(random_state=0, device="cpu")
    fitted, X = _fitted(estimator, y_kind)
    assert fitted._inference_module()[2] is not None
    for n_rows in (1, 2, SMALL_BATCH_MAX_ROWS):
        rows = X[:n_rows]
        numpy_path = fitted.predict(rows)
        numpy_raw = fitted._raw_output(rows)
        with monkeypatch.context() as torch_only:
            torch_only.setattr(fitted, "_inference_module", _torch_path(fitted))
            torch_path = fitted.predict(rows)
            torch_raw = fitted._raw_output(rows)
        if numpy_path.dtype.kind == "f":
            np.testing.assert_allclose(numpy_path, torch_path, rtol=1e-10)
        else:
            np.testing.assert_array_equal(numpy_path, torch_path)
        np.testing.assert_allclose(numpy_raw, torch_raw, rtol=1e-10, atol=1e-12)
    # a row predicts the same bits alone as inside a large batch
    np.testing.assert_array_equal(fitted._raw_output(X[:1]), fitted._raw_output(X)[:1])
    np.testing.assert_array_equal(fitted.predict(X[:1]), fitted.predict(X)[:1])


def test_small_batch_path_survives_pickling_and_skips_sparse_input():
    fitted, X = _fitted(
        MixtureOfExpertsClassifier(max_iter=5, random_state=0), "classes"
    )
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored._inference_cache.predictor is None  # derived, not pickled
    assert restored._inference_module()[2] is not None
    np.testing.assert_array_equal(restored.predict(X[:3]), fitted.predict(X[:3]))
    np.testing.assert_array_equal(
        fitted.predict(sp.csr_matrix(X[:3])), fitted.predict(X[:3])
    )


MULTI_GATE = [
    {"architecture": "mmoe"},
    {"architecture": "mmoe", "top_k": 2, "gating": "noisy"},
    {"architecture": "mmoe", "top_k": 1},
    {"architecture": "omoe", "top_k": 3},
    {"architecture": "cgc", "n_task_experts": 2, "gating": "switch"},
    {"architecture": "ple", "n_levels": 3, "n_task_experts": 2},
    {"architecture": "ple", "n_levels": 2, "top_k": 2},
    {"architecture": "shared_bottom"},
]


@pytest.mark.parametrize("params", MULTI_GATE, ids=str)
@pytest.mark.parametrize("activation", ["relu", "logistic"])
@pytest.mark.parametrize("towers", [(), (5,)], ids=str)
@pytest.mark.parametrize("n_rows", [1, SMALL_BATCH_MAX_ROWS])
def test_numpy_forward_matches_the_multi_gate_module(
    params, activation, towers, n_rows
):
    torch.manual_seed(0)
    module = MultiGateMixtureOfExperts(
        4,
        [1, 3, 2],
        n_shared_experts=4,
        expert_hidden_layer_sizes=(6, 5),
        tower_hidden_layer_sizes=towers,
        activation=activation,
        **params,
    )
    module = module.double().eval()
    with torch.no_grad():  # spread the routers so that the chosen experts vary by row
        for name, parameter in module.named_parameters():
            if "router.weight" in name:
                parameter.mul_(5.0)
    x = np.random.default_rng(1).normal(size=(n_rows, 4)) * 3
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(SmallBatchMultiGate(module)(x), expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("estimator", "y_kind"),
    [
        (MultiGateMoEClassifier(architecture="ple", max_iter=10), "two outputs"),
        (MultiGateMoERegressor(top_k=2, max_iter=10), "values"),
    ],
    ids=["ple classifier", "top-2 mmoe regressor"],
)
def test_multi_gate_small_batches_predict_as_the_torch_path_does(
    estimator, y_kind, monkeypatch
):
    estimator.set_params(random_state=0, device="cpu")
    fitted, X = _fitted(estimator, y_kind)
    assert isinstance(fitted._inference_module()[2], SmallBatchMultiGate)
    rows = X[:SMALL_BATCH_MAX_ROWS]
    numpy_raw = fitted._raw_output(rows)
    with monkeypatch.context() as torch_only:
        torch_only.setattr(fitted, "_inference_module", _torch_path(fitted))
        torch_raw = fitted._raw_output(rows)
    np.testing.assert_allclose(numpy_raw, torch_raw, rtol=1e-10, atol=1e-12)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.predict(X[:2]), fitted.predict(X[:2]))


@pytest.mark.parametrize(
    "estimator",
    [
        MixtureOfExpertsRegressor(activation="identity", max_iter=3),
        MultiGateMoERegressor(activation="identity", max_iter=3),
    ],
    ids=["single gate", "multi-gate"],
)
def test_identity_activation_models_pickle(estimator):
    fitted, X = _fitted(estimator.set_params(random_state=0), "values")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.predict(X), fitted.predict(X))


@pytest.mark.parametrize("n_rows", [1, 40])  # the NumPy path and the torch path
def test_predict_follows_edits_to_module_after_fit(n_rows):
    fitted, X = _fitted(
        MixtureOfExpertsRegressor(max_iter=5, random_state=0, device="cpu"), "values"
    )
    rows = X[:n_rows]
    before = fitted.predict(rows)
    with torch.no_grad():  # an in-place edit: every expert's last bias moves by 1
        fitted.module_.experts.biases[-1].add_(1.0)
    shifted = fitted.predict(rows)
    np.testing.assert_allclose(shifted, before + fitted._scaler.scale, rtol=1e-6)
    # a replaced parameter, and weights loaded back
    original = {k: v.clone() for k, v in fitted.module_.state_dict().items()}
    bias = fitted.module_.gate.router.bias
    favoured = bias.detach().clone()
    favoured[0] += 5.0  # the gate now favours expert 0
    fitted.module_.gate.router.bias = torch.nn.Parameter(favoured)
    assert not np.allclose(fitted.predict(rows), shifted)
    fitted.module_.gate.router.bias = bias
    fitted.module_.load_state_dict(original)
    np.testing.assert_allclose(fitted.predict(rows), shifted, rtol=1e-12)
    # predicting again with nothing changed reuses what was derived
    cache = fitted._inference_cache.predictor
    fitted.predict(rows)
    assert fitted._inference_cache.predictor is cache
