"""The fused training pass and the engine's closed-form step against autograd.

Every written-out gradient is checked against autograd's gradient of the composed
layer (``fused_training = False``), in float64, for each routing, activation, depth and
dispatch layout, and against finite differences with ``gradcheck``.
"""

import gc
import itertools
import weakref

import pytest
import torch

import skmoe._engine.trainer
from skmoe._engine import (
    Batches,
    DenseRows,
    MeanSquaredError,
    MultiOutputCrossEntropy,
    make_optimizer,
    run_epoch,
)
from skmoe._engine.closed_form import closed_form_step
from skmoe.nn import MixtureOfExperts, auxiliary_loss
from skmoe.nn.fused import fused_mixture

ROUTINGS = [
    dict(top_k=None),
    dict(top_k=1),
    dict(top_k=2),
    dict(top_k=3),
    dict(top_k=2, gating="noisy"),
    dict(top_k=1, gating="noisy"),
    dict(gating="switch"),
    dict(top_k=4),  # every expert kept: dense routing
]
LAYOUTS = ["dense", "dispatch", "overflow"]


def _layer(routing, activation="relu", hidden=(7,), layout="dispatch", seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = MixtureOfExperts(
            5,
            3,
            n_experts=4,
            expert_hidden_layer_sizes=hidden,
            activation=activation,
            load_balancing_coef=0.3,
            router_z_loss_coef=0.05,
            **routing,
        ).double()
        # Crowd expert 2, so that the overflow layout is really used.
        layer.gate.router.bias.data[2] += 1.5
    layer.min_dispatch_savings = 10**9 if layout == "dense" else 0
    layer.min_tier_savings = 0 if layout == "overflow" else 10**9
    return layer.train()


def _pass(layer, x, fused, seed=1):
    """Output, balancing loss, usage and every gradient of one training pass."""
    layer.fused_training = fused
    layer.zero_grad(set_to_none=True)
    layer.reset_usage()
    x = x.clone().requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # noisy and switch gates draw the same numbers
        out = layer(x)
    aux = auxiliary_loss(layer)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    ((out * weights).sum() + 3.0 * aux).backward()
    grads = {n: p.grad for n, p in layer.named_parameters()}
    return out.detach(), aux.detach(), layer.expert_usage(), x.grad, grads


@pytest.mark.parametrize(
    ("routing", "layout", "n_rows"),
    [
        (r, lay, n)
        for r, lay, n in itertools.product(ROUTINGS, LAYOUTS, [9, 150])
        if not (lay == "overflow" and n == 9)
    ],
)
def test_fused_pass_equals_autograd_of_the_composed_layer(routing, layout, n_rows):
    layer = _layer(routing, layout=layout)
    x = torch.randn(n_rows, 5, dtype=torch.float64)
    fused = _pass(layer, x, fused=True)
    composed = _pass(layer, x, fused=False)
    for a, b in zip(fused[:4], composed[:4], strict=True):
        torch.testing.assert_close(a, b)
    assert fused[4].keys() == composed[4].keys()
    for name, grad in composed[4].items():
        if grad is None:  # e.g. the noise of top-1 routing only chooses
            assert fused[4][name] is None, name
        else:
            torch.testing.assert_close(fused[4][name], grad, msg=name)


@pytest.mark.parametrize(
    ("activation", "hidden"),
    list(itertools.product(["relu", "tanh", "logistic", "identity"], [(), (6, 4)])),
)
def test_fused_pass_handles_every_activation_and_depth(activation, hidden):
    for routing in (dict(top_k=None), dict(top_k=2)):
        layer = _layer(routing, activation=activation, hidden=hidden)
        x = torch.randn(70, 5, dtype=torch.float64)
        fused, composed = _pass(layer, x, True), _pass(layer, x, False)
        torch.testing.assert_close(fused[0], composed[0])
        torch.testing.assert_close(fused[3], composed[3])
        for name, grad in composed[4].items():
            torch.testing.assert_close(fused[4][name], grad, msg=name)


@pytest.mark.parametrize("routing", [dict(top_k=None), dict(top_k=2), dict(top_k=1)])
def test_fused_pass_passes_gradcheck(routing):
    layer = _layer(routing, hidden=(4,))
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    logits = layer.gate.router(x).detach()
    if routing["top_k"] == 1:
        # The straight-through weight is 1 whatever the logits: its gradient is an
        # estimator, not a derivative, so only the rows are checked.
        def fn(x):
            return fused_mixture(layer, x, logits)[:2]

        assert torch.autograd.gradcheck(fn, (x,))
        return
    logits.requires_grad_(True)

    def fn(x, logits):
        return fused_mixture(layer, x, logits)[:2]

    # Random logits are far from ties, so small steps never change the choice.
    assert torch.autograd.gradcheck(fn, (x, logits))


def test_fused_pass_refuses_double_backward_and_composed_one_allows_it():
    layer = _layer(dict(top_k=2))
    x = torch.randn(20, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no second derivative.*fused_training"):
        torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    layer(x).sum().backward()  # a first derivative is fine
    layer.fused_training = False
    (grad,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    grad.sum().backward()  # the composed layer differentiates twice


def test_fused_pass_catches_parameters_changed_before_backward():
    layer = _layer(dict(top_k=2))
    out = layer(torch.randn(20, 5, dtype=torch.float64))
    with torch.no_grad():
        layer.experts.weights[0].add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("top_k", [1, 2])
def test_fused_pass_frees_its_graph_without_the_garbage_collector(top_k):
    gc.disable()
    try:
        layer = _layer(dict(top_k=top_k))
        out = layer(torch.randn(64, 5, dtype=torch.float64))
        (out.sum() + auxiliary_loss(layer)).backward()
        ref = weakref.ref(out)
        del out
        assert ref() is None  # no reference cycle through the node's own output
    finally:
        gc.enable()


@pytest.mark.parametrize("routing", [dict(gating="switch"), dict(top_k=2)])
def test_fused_pass_catches_rows_changed_before_backward(routing):
    layer = _layer(routing, layout="dense")
    x = torch.randn(16, 5, dtype=torch.float64)
    loss = layer(x).sum() + auxiliary_loss(layer)
    x.mul_(100.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# -- the engine's closed-form step ---------------------------------------------------
OBJECTIVES = {
    "cross-entropy": lambda: MultiOutputCrossEntropy([3]),
    "cross-entropy, 2 outputs, weighted": lambda: MultiOutputCrossEntropy(
        [2, 3], output_weights=[0.5, 2.0]
    ),
    "squared error": lambda: MeanSquaredError(3),
    "squared error, weighted": lambda: MeanSquaredError(3, output_weights=[1, 0, 3]),
}


def _targets(name, n_rows, gen):
    if name.startswith("cross-entropy, 2"):
        y = torch.stack(
            [
                torch.randint(0, 2, (n_rows,), generator=gen),
                torch.randint(0, 3, (n_rows,), generator=gen),
            ],
            dim=1,
        )
        y[::5, 1] = -1  # missing labels
        return y
    if name.startswith("cross-entropy"):
        return torch.randint(0, 3, (n_rows, 1), generator=gen)
    y = torch.randn(n_rows, 3, generator=gen, dtype=torch.float64)
    y[::4, 0] = float("nan")  # missing values
    return y


@pytest.mark.parametrize("objective_name", list(OBJECTIVES))
@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("weighted", [False, True])
def test_closed_form_step_equals_autograd(objective_name, routing, weighted):
    objective = OBJECTIVES[objective_name]()
    out_width = objective.n_outputs
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(120, 5, generator=gen, dtype=torch.float64)
    y = _targets(objective_name, 120, gen)
    w = torch.rand(120, generator=gen, dtype=torch.float64) if weighted else None

    def layer():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return (
                MixtureOfExperts(
                    5, out_width, n_experts=4, min_dispatch_savings=0, **routing
                )
                .double()
                .train()
            )

    reference = layer()
    reference.fused_training = False
    with torch.random.fork_rng():
        torch.manual_seed(5)
        row_loss = objective.row_loss(reference(x), y)
    task = row_loss.mean() if w is None else (row_loss * w).sum() / w.sum()
    expected_loss = task + auxiliary_loss(reference)
    expected_loss.backward()

    module = layer()
    step = closed_form_step(module, objective)
    assert step is not None
    with torch.random.fork_rng():
        torch.manual_seed(5)
        loss = step(x, y, w, 120 if w is None else w.sum())
    torch.testing.assert_close(loss, expected_loss.detach())
    for (name, p), q in zip(
        module.named_parameters(), reference.parameters(), strict=True
    ):
        if q.grad is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    torch.testing.assert_close(module.expert_usage(), reference.expert_usage())


class _Subclass(MixtureOfExperts):
    pass


def test_closed_form_step_applies_only_where_its_gradients_are_exact():
    objective = MultiOutputCrossEntropy([3])
    plain = MixtureOfExperts(5, 3, n_experts=4)
    assert closed_form_step(plain, objective) is not None
    assert closed_form_step(_Subclass(5, 3, n_experts=4), objective) is None
    assert closed_form_step(torch.nn.Sequential(plain), objective) is None
    plain.fused_training = False
    assert closed_form_step(plain, objective) is None
    frozen = MixtureOfExperts(5, 3, n_experts=4)
    frozen.gate.router.weight.requires_grad_(False)
    assert closed_form_step(frozen, objective) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert closed_form_step(MixtureOfExperts(5, 3, n_experts=4), objective) is None


def test_an_epoch_takes_the_same_path_as_autograd(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=gen)
    y = torch.randint(0, 3, (300, 1), generator=gen)
    data = Batches(DenseRows(x), y, torch.ones(300))
    objective = MultiOutputCrossEntropy([3])

    def train(fast):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            module = MixtureOfExperts(5, 3, n_experts=4, top_k=2)
        module.fused_training = fast  # False: neither fused nor closed form
        optimizer = make_optimizer(module, 1e-2, 1e-4, torch.device("cpu"))
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

    calls = []
    original = skmoe._engine.trainer.closed_form_step

    def spy(module, objective):
        step = original(module, objective)
        calls.append(step is not None)
        return step

    monkeypatch.setattr(skmoe._engine.trainer, "closed_form_step", spy)
    fast_losses, fast_module = train(True)
    slow_losses, slow_module = train(False)
    assert calls == [True] * 3 + [False] * 3
    assert fast_losses == pytest.approx(slow_losses, rel=1e-4)
    for p, q in zip(fast_module.parameters(), slow_module.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
