"""The multi-gate module's autograd-free training step against autograd.

``MultiGateMixtureOfExperts.training_step`` must give the loss, every parameter's
gradient, the usage statistics and the random draws of ``loss = task(model(x)) +
auxiliary_loss(model); loss.backward()``: checked in float64 for every architecture,
routing and activation, with and without tower layers and sample weights, and for
PLE of two and three levels. The estimators must take that step, and a fit through
it must agree with a fit through autograd.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from skmoe import MultiGateMoE, MultiGateMoEClassifier, MultiGateMoERegressor
from skmoe._engine import (
    Batches,
    DenseRows,
    MeanSquaredError,
    MultiOutputCrossEntropy,
    make_optimizer,
    run_epoch,
)
from skmoe._engine.multitask import (
    FixedTaskWeights,
    GradNormWeights,
    MixedTaskObjective,
    UncertaintyWeights,
)
from skmoe._engine.trainer import task_loss_and_grad
from skmoe.nn import ExpertBank, Gate, MultiGateMixtureOfExperts, auxiliary_loss
from skmoe.nn.routing import SPECS, RoutingSpec

ARCHITECTURES = [
    dict(architecture="mmoe"),
    dict(architecture="omoe"),
    dict(architecture="cgc"),
    dict(architecture="ple", n_levels=2),
    dict(architecture="ple", n_levels=3),
    dict(architecture="shared_bottom"),
]
ROUTINGS = [
    dict(top_k=None),
    dict(top_k=1),
    dict(top_k=2),
    dict(top_k=2, gating="noisy"),
    dict(top_k=1, gating="noisy"),
    dict(gating="switch"),
]
assert {r.get("gating", "softmax") for r in ROUTINGS} == set(SPECS)
ACTIVATIONS = ["relu", "tanh", "logistic", "identity"]
# Two shapes of model: linear towers over tasks of different widths, unweighted
# rows; towers with a hidden layer over three tasks of one width, weighted rows.
SHAPES = [
    dict(task_out_features=[1, 3], tower_hidden_layer_sizes=(), weighted=False),
    dict(task_out_features=[2, 2, 2], tower_hidden_layer_sizes=(6,), weighted=True),
]


def _model(architecture, routing, activation, shape, seed=0, **extra):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return (
            MultiGateMixtureOfExperts(
                5,
                shape["task_out_features"],
                n_shared_experts=3,
                n_task_experts=2,
                expert_hidden_layer_sizes=(7, 4),
                tower_hidden_layer_sizes=shape["tower_hidden_layer_sizes"],
                activation=activation,
                load_balancing_coef=0.2,
                router_z_loss_coef=0.05,
                **architecture,
                **routing,
                **extra,
            )
            .double()
            .train()
        )


def _squared_error(y, w):
    """A task loss with its closed-form gradient: the weighted mean half squared
    error per row."""
    scale = torch.full_like(y[:, 0], 1.0 / len(y)) if w is None else w / w.sum()

    def loss_and_grad(out):
        residual = out - y
        return 0.5 * (residual.square().sum(1) @ scale), residual * scale[:, None]

    return loss_and_grad


def _check_step(architecture, routing, activation, shape, n_rows=40):
    gen = torch.Generator().manual_seed(1)
    width = sum(shape["task_out_features"])
    x = torch.randn(n_rows, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(n_rows, width, generator=gen, dtype=torch.float64)
    w = torch.rand(n_rows, generator=gen, dtype=torch.float64)
    w = w if shape["weighted"] else None

    reference = _model(architecture, routing, activation, shape)
    reference.fused_training = False
    with torch.random.fork_rng():
        torch.manual_seed(5)
        task, _ = _squared_error(y, w)(reference(x, sample_weight=w))
        expected = task + auxiliary_loss(reference)
        expected.backward()
        draw_after_reference = torch.rand(3)

    model = _model(architecture, routing, activation, shape)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        loss = model.training_step(x, _squared_error(y, w), w)
        draw_after_step = torch.rand(3)

    assert loss is not None
    torch.testing.assert_close(loss, expected.detach())
    for (name, p), q in zip(
        model.named_parameters(), reference.parameters(), strict=True
    ):
        if q.grad is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    torch.testing.assert_close(model.expert_usage(), reference.expert_usage())
    torch.testing.assert_close(model.usage_rows, reference.usage_rows)
    # The same random numbers were drawn: the generator ends in the same state.
    torch.testing.assert_close(draw_after_step, draw_after_reference)
    assert model.aux_loss is None


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("routing", ROUTINGS, ids=str)
@pytest.mark.parametrize("architecture", ARCHITECTURES[:-1], ids=str)
def test_training_step_equals_autograd(architecture, routing, activation):
    for shape in SHAPES:
        _check_step(architecture, routing, activation, shape)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_shared_bottom_training_step_equals_autograd(activation):
    for shape in SHAPES:
        _check_step(ARCHITECTURES[-1], {}, activation, shape)


def test_training_step_without_balancing_losses():
    shape = SHAPES[1]
    for coefs in [(0.0, 0.0), (0.3, 0.0), (0.0, 0.1)]:
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(30, 5, generator=gen, dtype=torch.float64)
        y = torch.randn(30, 6, generator=gen, dtype=torch.float64)
        losses, grads = [], []
        for fast in (True, False):
            model = _model(ARCHITECTURES[3], dict(top_k=2), "tanh", shape)
            model.load_balancing_coef, model.router_z_loss_coef = coefs
            if fast:
                loss = model.training_step(x, _squared_error(y, None))
            else:
                task, _ = _squared_error(y, None)(model(x))
                loss = task + auxiliary_loss(model)
                loss.backward()
            losses.append(loss.detach())
            grads.append([p.grad for p in model.parameters()])
        torch.testing.assert_close(losses[0], losses[1])
        for fast_grad, autograd_grad in zip(*grads, strict=True):
            torch.testing.assert_close(fast_grad, autograd_grad)


def test_training_step_in_float32_agrees_with_autograd():
    shape = SHAPES[0]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 5, generator=gen)
    y = torch.randn(64, 4, generator=gen)
    models = [
        _model(ARCHITECTURES[3], dict(top_k=2), "relu", shape).float() for _ in range(2)
    ]
    loss = models[0].training_step(x, _squared_error(y, None))
    task, _ = _squared_error(y, None)(models[1](x))
    expected = task + auxiliary_loss(models[1])
    expected.backward()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-4, atol=1e-5)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)


class _Subclass(MultiGateMixtureOfExperts):
    pass


class _DoubledBank(ExpertBank):
    def forward(self, x, experts=None):
        return 2.0 * super().forward(x, experts)


def test_training_step_applies_only_where_its_gradients_are_exact():
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    loss_and_grad = _squared_error(y, None)

    def plain(**params):
        return MultiGateMixtureOfExperts(5, [1, 2], architecture="ple", **params)

    assert plain().training_step(x, loss_and_grad) is not None
    assert _Subclass(5, [1, 2]).training_step(x, loss_and_grad) is None
    model = plain()
    model.fused_training = False
    assert not model.uses_fast_path()
    assert model.training_step(x, loss_and_grad) is None
    frozen = plain()
    frozen.levels[1].task_gates[0].router.weight.requires_grad_(False)
    assert frozen.training_step(x, loss_and_grad) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert plain().training_step(x, loss_and_grad) is None

    def never(out):
        raise AssertionError("an empty batch computes nothing")

    assert plain().training_step(x[:0], never) is None
    # A gating spec not proven on the fast paths, a subclass of the gate or of an
    # expert bank: forward() and autograd.
    model = plain(top_k=2)
    model.levels[0].shared_gate = Gate(5, 5, top_k=2, gating=RoutingSpec("new"))
    assert model.training_step(x, loss_and_grad) is None
    model = plain()
    model.levels[1].task_gates[1] = type("OwnGate", (Gate,), {})(32, 3)
    assert model.training_step(x, loss_and_grad) is None
    model = plain()
    model.towers = _DoubledBank(2, 32, 2)
    assert model.training_step(x, loss_and_grad) is None
    model = plain()
    model.levels[0].experts = _DoubledBank(5, 5, 32)
    assert model.training_step(x, loss_and_grad) is None


def _record_steps(monkeypatch):
    """A list that gets, at every ``training_step`` call, whether it took the step."""
    calls = []
    original = MultiGateMixtureOfExperts.training_step

    def spy(self, *args):
        loss = original(self, *args)
        calls.append(loss is not None)
        return loss

    monkeypatch.setattr(MultiGateMixtureOfExperts, "training_step", spy)
    return calls


def _two_binary_tasks(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    Y = np.column_stack([X[:, 0] + X[:, 1] > 0, X[:, 2] * X[:, 3] > 0]).astype(int)
    return X, Y


FIT = dict(max_iter=4, batch_size=64, random_state=0, device="cpu", tol=0.0)


@pytest.mark.parametrize(
    "params",
    [
        dict(architecture="mmoe"),
        dict(architecture="ple", top_k=2, n_levels=3, activation="tanh"),
        dict(architecture="shared_bottom", tower_hidden_layer_sizes=(8,)),
    ],
    ids=str,
)
def test_classifier_fits_through_the_step_and_agrees_with_autograd(params, monkeypatch):
    X, Y = _two_binary_tasks()
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(X))
    calls = _record_steps(monkeypatch)
    fast = MultiGateMoEClassifier(**params, **FIT).fit(X, Y, sample_weight=w)
    assert calls and all(calls)  # every step, none through autograd
    again = MultiGateMoEClassifier(**params, **FIT).fit(X, Y, sample_weight=w)
    assert again.loss_curve_ == fast.loss_curve_
    for p, q in zip(fast.module_.parameters(), again.module_.parameters(), strict=True):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(again.expert_usage_, fast.expert_usage_)

    calls.clear()
    monkeypatch.setattr(MultiGateMixtureOfExperts, "fused_training", False)
    slow = MultiGateMoEClassifier(**params, **FIT).fit(X, Y, sample_weight=w)
    assert not any(calls)
    np.testing.assert_allclose(fast.loss_curve_, slow.loss_curve_, rtol=1e-4)
    for p, q in zip(fast.module_.parameters(), slow.module_.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        fast.predict_proba(X)[0], slow.predict_proba(X)[0], atol=1e-3
    )
    np.testing.assert_allclose(fast.expert_usage_, slow.expert_usage_, atol=1e-4)


def test_regressor_fits_through_the_step(monkeypatch):
    X, Y = _two_binary_tasks()
    Y = Y + np.random.default_rng(2).normal(scale=0.1, size=Y.shape)
    calls = _record_steps(monkeypatch)
    reg = MultiGateMoERegressor(architecture="cgc", gating="switch", **FIT).fit(X, Y)
    assert calls and all(calls)
    assert np.isfinite(reg.loss_curve_).all()


def test_an_epoch_of_the_step_equals_autograds_epoch():
    """The engine's epoch through the step matches its epoch through autograd."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=gen)
    y = torch.randint(0, 2, (300, 2), generator=gen)
    data = Batches(DenseRows(x), y, torch.ones(300))
    objective = MultiOutputCrossEntropy([2, 2])

    def train(fast):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            module = MultiGateMixtureOfExperts(
                5, [2, 2], architecture="cgc", top_k=2, gating="noisy"
            )
        module.fused_training = fast
        optimizer = make_optimizer(module, 1e-2, 1e-4, torch.device("cpu"))
        with torch.random.fork_rng():
            torch.manual_seed(7)
            losses = [
                float(
                    run_epoch(
                        module,
                        objective,
                        optimizer,
                        data,
                        64,
                        torch.Generator().manual_seed(1),
                    )
                )
                for _ in range(3)
            ]
        return losses, module

    fast_losses, fast_module = train(True)
    slow_losses, slow_module = train(False)
    assert fast_losses == pytest.approx(slow_losses, rel=1e-4)
    for p, q in zip(fast_module.parameters(), slow_module.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)


def test_task_loss_and_grad_of_the_engine_fits_the_step():
    """The engine's closed-form classification gradient through the step equals
    autograd of the engine's task loss."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(50, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (50, 2), generator=gen)
    w = torch.rand(50, generator=gen, dtype=torch.float64)
    objective = MultiOutputCrossEntropy([3, 3])
    models = [
        MultiGateMixtureOfExperts(5, [3, 3], top_k=2).double().train() for _ in range(2)
    ]
    models[1].load_state_dict(models[0].state_dict())
    loss = models[0].training_step(x, task_loss_and_grad(objective, y, w, w.sum()), w)
    out = models[1](x, sample_weight=w)
    expected = (objective.row_loss(out, y) * w).sum() / w.sum()
    expected = expected + auxiliary_loss(models[1])
    expected.backward()
    torch.testing.assert_close(loss, expected.detach())
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


@pytest.mark.parametrize("task_weights", [None, [0.5, 2.0, 1.5]])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixed_task_closed_form_gradient_equals_autograd(task_weights, dtype):
    objective = MixedTaskObjective(
        [
            MultiOutputCrossEntropy([3]),
            MeanSquaredError(1),
            MultiOutputCrossEntropy([2]),
        ],
        weighting=FixedTaskWeights(task_weights),
    )
    gen = torch.Generator().manual_seed(6)
    out = torch.randn(40, 6, generator=gen, dtype=torch.float64).to(dtype)
    targets = torch.stack(
        [
            torch.randint(0, 3, (40,), generator=gen).double(),
            torch.randn(40, generator=gen, dtype=torch.float64),
            torch.randint(0, 2, (40,), generator=gen).double(),
        ],
        dim=1,
    ).to(dtype)
    targets[::4, 0] = torch.nan  # missing labels
    targets[1::5, 1] = torch.nan
    out.requires_grad_(True)
    (expected,) = torch.autograd.grad(objective.row_loss(out, targets).sum(), out)
    torch.testing.assert_close(objective.row_grad(out.detach(), targets), expected)


def test_mixed_task_gradient_is_left_to_autograd_where_it_has_no_closed_form():
    tasks = [MultiOutputCrossEntropy([2]), MultiOutputCrossEntropy([2])]
    assert MixedTaskObjective(tasks).row_grad is not None
    assert MixedTaskObjective(tasks, chains={1: [0]}).row_grad is None
    weighting = UncertaintyWeights(2)
    assert MixedTaskObjective(tasks, weighting=weighting).row_grad is None
    weighting = GradNormWeights(2)
    assert MixedTaskObjective(tasks, weighting=weighting).row_grad is None


def test_mixed_task_model_fits_through_the_step(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = pd.DataFrame(
        {
            "click": (X[:, 0] > 0).astype(int),
            "colour": np.array(["red", "green", "blue"])[
                np.digitize(X[:, 1], [-0.5, 0.5])
            ],
            "price": X[:, 3] + 0.1 * rng.normal(size=300),
        }
    )
    calls = _record_steps(monkeypatch)
    params = dict(architecture="cgc", task_weights=[1.0, 0.5, 2.0], **FIT)
    fast = MultiGateMoE(**params).fit(X, y)
    assert calls and all(calls)
    monkeypatch.setattr(MultiGateMixtureOfExperts, "fused_training", False)
    slow = MultiGateMoE(**params).fit(X, y)
    np.testing.assert_allclose(fast.loss_curve_, slow.loss_curve_, rtol=1e-4)
    pd.testing.assert_frame_equal(fast.predict(X), slow.predict(X))
