"""The walkthrough of docs/design.md, followed step by step.

Adding a gating type: a spec in ``skmoe/nn/routing.py`` (here registered for the
test's duration) and this test, which runs it through every path. Adding an
objective: a class with ``row_loss`` (and, for the fast step, ``row_grad``), checked
against autograd.
"""

import numpy as np
import pytest
import torch
from test_fused import _layer, _pass

from skmoe._engine import Batches, DenseRows, make_optimizer, run_epoch
from skmoe._engine.objectives import Objective
from skmoe._engine.trainer import task_loss_and_grad
from skmoe._small_batch import small_batch_model
from skmoe.nn import Gate, MixtureOfExperts, auxiliary_loss, routing

# Step 1: the spec. Noisy scores and switch's jitter, one expert per row.
NOISY_SWITCH = routing.RoutingSpec(
    "noisy_switch",
    noisy_scores=True,
    input_jitter=1e-2,
    max_top_k=1,
    all_kept_is_dense=False,
)


@pytest.fixture
def registered(monkeypatch):
    """Step 2: register it, and list it among the specs the fast paths serve."""
    monkeypatch.setitem(routing.SPECS, NOISY_SWITCH.name, NOISY_SWITCH)
    monkeypatch.setattr(routing, "FAST_SPECS", routing.FAST_SPECS | {NOISY_SWITCH})


def test_an_unregistered_spec_trains_through_autograd():
    layer = MixtureOfExperts(5, 3, n_experts=4, gating=NOISY_SWITCH)
    assert not layer.uses_fast_path()
    assert small_batch_model(layer.double().eval()) is None


@pytest.mark.parametrize("layout", ["dense", "dispatch"])
def test_step_3_the_fast_paths_equal_autograd_on_the_new_spec(registered, layout):
    layer = _layer(dict(gating="noisy_switch"), layout=layout)
    assert layer.gate.spec is NOISY_SWITCH and layer.uses_fast_path()
    x = torch.randn(60, 5, dtype=torch.float64)
    w = torch.rand(60, dtype=torch.float64)
    fused = _pass(layer, x, fused=True, sample_weight=w)
    composed = _pass(layer, x, fused=False, sample_weight=w)
    for a, b in zip(fused[:4], composed[:4], strict=True):
        torch.testing.assert_close(a, b)
    for name, grad in composed[4].items():
        if grad is None:  # the noise of top-1 routing only chooses
            assert fused[4][name] is None, name
        else:
            torch.testing.assert_close(fused[4][name], grad, msg=name)


def test_step_4_inference_reads_the_same_spec(registered):
    torch.manual_seed(0)
    layer = MixtureOfExperts(5, 3, n_experts=4, gating="noisy_switch").double().eval()
    x = torch.randn(7, 5, dtype=torch.float64)
    weights = layer.gate_weights(x)
    assert ((weights > 0).sum(1) == 1).all()
    with torch.no_grad():
        expected = layer(x).numpy()
    model = small_batch_model(layer)
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="at most one expert"):
        Gate(5, 4, top_k=2, gating="noisy_switch")


class _Huber(Objective):
    """Adding an objective: one ``row_loss``, a closed-form ``row_grad``, a score."""

    def __init__(self, n_outputs, delta=1.0):
        self.n_outputs, self.delta = n_outputs, delta

    def row_loss(self, outputs, targets):
        return torch.nn.functional.huber_loss(
            outputs, targets, reduction="none", delta=self.delta
        ).mean(1)

    def row_grad(self, outputs, targets):
        diff = (outputs - targets).clamp(-self.delta, self.delta)
        return diff / self.n_outputs

    def score(self, outputs, targets, weights):
        return -float(self.row_loss(outputs, targets).mean())


def test_a_new_objective_trains_with_autograds_gradients():
    objective = _Huber(3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 5, generator=gen, dtype=torch.float64)
    y = 2.0 * torch.randn(50, 3, generator=gen, dtype=torch.float64)
    out = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(objective.row_loss(out, y).sum(), out)
    torch.testing.assert_close(objective.row_grad(out.detach(), y), expected)

    def layer():
        torch.manual_seed(0)
        return MixtureOfExperts(5, 3, n_experts=4, top_k=2).double().train()

    reference, fast = layer(), layer()
    torch.manual_seed(1)
    loss = objective.row_loss(reference(x), y).mean() + auxiliary_loss(reference)
    loss.backward()
    torch.manual_seed(1)
    fast_loss = fast.training_step(x, task_loss_and_grad(objective, y, None, 50))
    torch.testing.assert_close(fast_loss, loss.detach())
    for p, q in zip(fast.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    # and the engine trains with it
    data = Batches(DenseRows(x), y, torch.ones(50, dtype=torch.float64))
    optimizer = make_optimizer(fast, 1e-2, 0.0, torch.device("cpu"))
    first = float(run_epoch(fast, objective, optimizer, data, 25, None, False))
    for _ in range(20):
        last = float(run_epoch(fast, objective, optimizer, data, 25, None, False))
    assert last < first
