"""The fused training pass and the layer's autograd-free step against autograd.

Every written-out gradient is checked against autograd's gradient of the composed
layer (``fused_training = False``), in float64, for each registered routing spec,
activation, depth and dispatch layout, with and without sample weights, and against
finite differences with ``gradcheck``. Each objective's closed-form gradient is
checked against autograd of its own ``row_loss`` in float64 and float32.
"""

import copy
import gc
import itertools
import weakref

import pytest
import torch

from skmoe._engine import (
    Batches,
    DenseRows,
    MeanSquaredError,
    MultiOutputCrossEntropy,
    make_optimizer,
    run_epoch,
)
from skmoe._engine.trainer import task_loss_and_grad
from skmoe.nn import ExpertBank, Gate, MixtureOfExperts, auxiliary_loss
from skmoe.nn.fused import fused_mixture
from skmoe.nn.routing import FAST_SPECS, SPECS, RoutingSpec

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
# Every registered gating type is served by the fast paths and so is covered here.
assert {r.get("gating", "softmax") for r in ROUTINGS} == set(SPECS)
assert set(SPECS.values()) == FAST_SPECS
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


def _pass(layer, x, fused, seed=1, sample_weight=None):
    """Output, balancing loss, usage and every gradient of one training pass."""
    layer.fused_training = fused
    layer.zero_grad(set_to_none=True)
    layer.reset_usage()
    x = x.clone().requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # noisy and switch gates draw the same numbers
        out = layer(x, sample_weight=sample_weight)
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
    # Row weights (one of them zero) weigh the balancing statistics in both passes.
    w = torch.rand(n_rows, dtype=torch.float64) if n_rows > 9 else None
    if w is not None:
        w[0] = 0.0
    fused = _pass(layer, x, fused=True, sample_weight=w)
    composed = _pass(layer, x, fused=False, sample_weight=w)
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
    "cross-entropy, smoothed": lambda: MultiOutputCrossEntropy(
        [3], label_smoothing=0.1
    ),
    "cross-entropy, 2 outputs, weighted, smoothed": lambda: MultiOutputCrossEntropy(
        [2, 3], output_weights=[0.5, 2.0], label_smoothing=0.2
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
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_closed_form_objective_gradient_equals_autograd(objective_name, dtype):
    objective = OBJECTIVES[objective_name]()
    gen = torch.Generator().manual_seed(4)
    out = torch.randn(50, objective.n_outputs, generator=gen, dtype=torch.float64)
    y = _targets(objective_name, 50, gen)
    out = out.to(dtype).requires_grad_(True)
    y = y.to(dtype) if y.is_floating_point() else y
    (expected,) = torch.autograd.grad(objective.row_loss(out, y).sum(), out)
    torch.testing.assert_close(objective.row_grad(out.detach(), y), expected)


@pytest.mark.parametrize("objective_name", list(OBJECTIVES))
@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_training_step_equals_autograd(objective_name, routing, weighted, dtype):
    objective = OBJECTIVES[objective_name]()
    out_width = objective.n_outputs
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(120, 5, generator=gen, dtype=torch.float64).to(dtype)
    y = _targets(objective_name, 120, gen)
    y = y.to(dtype) if y.is_floating_point() else y
    w = torch.rand(120, generator=gen, dtype=torch.float64) if weighted else None
    w = None if w is None else w.to(dtype)

    def layer():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return (
                MixtureOfExperts(
                    5, out_width, n_experts=4, min_dispatch_savings=0, **routing
                )
                .to(dtype)
                .train()
            )

    reference = layer()
    reference.fused_training = False
    with torch.random.fork_rng():
        torch.manual_seed(5)
        row_loss = objective.row_loss(reference(x, sample_weight=w), y)
    task = row_loss.mean() if w is None else (row_loss * w).sum() / w.sum()
    expected_loss = task + auxiliary_loss(reference)
    expected_loss.backward()

    module = layer()
    with torch.random.fork_rng():
        torch.manual_seed(5)
        total = 120 if w is None else w.sum()
        loss = module.training_step(x, task_loss_and_grad(objective, y, w, total), w)
    tolerance = {} if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, expected_loss.detach(), **tolerance)
    for (name, p), q in zip(
        module.named_parameters(), reference.parameters(), strict=True
    ):
        if q.grad is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, q.grad, msg=name, **tolerance)
    torch.testing.assert_close(
        module.expert_usage(), reference.expert_usage(), **tolerance
    )


class _Subclass(MixtureOfExperts):
    pass


class _CosineGate(Gate):
    """A new scoring rule: cosine similarity between the row and each expert's
    router weight, times a learned temperature."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature = torch.nn.Parameter(torch.tensor(3.0))

    def score_inputs(self, x):
        saved = super().score_inputs(x)
        w = torch.nn.functional.normalize(self.router.weight, dim=1)
        logits = torch.nn.functional.normalize(x, dim=1) @ w.t() * self.temperature
        return saved._replace(logits=logits)


class _DoubledBank(ExpertBank):
    def forward(self, x, experts=None):
        return 2.0 * super().forward(x, experts)


def _square_loss(y):
    def loss_and_grad(out):
        return 0.5 * (out - y).square().sum() / len(y), (out - y) / len(y)

    return loss_and_grad


def test_training_step_applies_only_where_its_gradients_are_exact():
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    plain = MixtureOfExperts(5, 3, n_experts=4).train()
    assert plain.training_step(x, _square_loss(y)) is not None
    assert _Subclass(5, 3, n_experts=4).training_step(x, _square_loss(y)) is None
    plain.fused_training = False
    assert plain.training_step(x, _square_loss(y)) is None
    frozen = MixtureOfExperts(5, 3, n_experts=4)
    frozen.gate.router.weight.requires_grad_(False)
    assert frozen.training_step(x, _square_loss(y)) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer = MixtureOfExperts(5, 3, n_experts=4)
        assert layer.training_step(x, _square_loss(y)) is None
    # A gating spec not proven on the fast paths, a subclass of the gate or of the
    # expert bank: reference pass and autograd.
    layer = MixtureOfExperts(5, 3, n_experts=4, top_k=2)
    layer.gate = Gate(5, 4, top_k=2, gating=RoutingSpec("unproven"))
    assert not layer.uses_fast_path()
    layer.gate = _CosineGate(5, 4, top_k=2)
    assert not layer.uses_fast_path()
    assert layer.training_step(x, _square_loss(y)) is None
    layer = MixtureOfExperts(5, 3, n_experts=4, top_k=2)
    layer.experts = _DoubledBank(4, 5, 3, hidden_layer_sizes=(32,))
    assert not layer.uses_fast_path()


def _by_hand(layer, x, top_k):
    """The layer's output composed from the cosine gate's rule, with no skmoe pass."""
    logits = layer.gate.score_inputs(x).logits
    if top_k is None:
        weights = torch.softmax(logits, dim=1)
    else:
        top, chosen = logits.topk(top_k, dim=1)
        weights = torch.zeros_like(logits).scatter(1, chosen, torch.softmax(top, 1))
    expert_out = layer.experts.forward_shared(x)  # (n_experts, batch, out)
    return torch.einsum("ne,eno->no", weights, expert_out)


@pytest.mark.parametrize("top_k", [None, 2])
def test_a_gate_with_its_own_scoring_rule_trains_with_autograds_gradients(top_k):
    torch.manual_seed(0)
    layer = MixtureOfExperts(
        5, 3, n_experts=4, top_k=top_k, load_balancing_coef=0, router_z_loss_coef=0
    )
    layer.gate = _CosineGate(5, 4, top_k=top_k)
    layer.double()
    x = torch.randn(40, 5, dtype=torch.float64)
    y = torch.randn(40, 3, dtype=torch.float64)
    data = Batches(DenseRows(x), y, torch.ones(40, dtype=torch.float64))
    optimizer = make_optimizer(layer, 1e-2, 0.0, torch.device("cpu"))

    def epoch():
        return float(
            run_epoch(layer, MeanSquaredError(3), optimizer, data, 40, None, False)
        )

    # One batch an epoch: after it, each .grad is the gradient at the weights the
    # epoch started from; it equals autograd's of the rule composed by hand.
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    first = epoch()
    reference = copy.deepcopy(layer)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            p.copy_(before[name])
    loss = 0.5 * (_by_hand(reference, x, top_k) - y).square().mean()
    expected = torch.autograd.grad(
        loss, list(reference.parameters()), allow_unused=True
    )
    for (name, p), want in zip(layer.named_parameters(), expected, strict=True):
        if want is None:  # the router's bias: the cosine rule ignores it
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, want, msg=name)
    assert layer.gate.temperature.grad.abs() > 0
    for _ in range(30):
        last = epoch()
    assert last < 0.9 * first  # and it trains


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
    original = MixtureOfExperts.training_step

    def spy(self, *args):
        loss = original(self, *args)
        calls.append(loss is not None)
        return loss

    monkeypatch.setattr(MixtureOfExperts, "training_step", spy)
    fast_losses, fast_module = train(True)
    slow_losses, slow_module = train(False)
    assert calls == [True] * 15 + [False] * 3  # 5 batches an epoch; one try each
    assert fast_losses == pytest.approx(slow_losses, rel=1e-4)
    for p, q in zip(fast_module.parameters(), slow_module.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
