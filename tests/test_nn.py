"""The pure-PyTorch layer: expert bank, gates, balancing losses and the MoE layer."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skmoe.nn import (
    ExpertBank,
    Gate,
    MixtureOfExperts,
    Routing,
    auxiliary_loss,
    balancing_loss,
    load_balancing_loss,
    router_z_loss,
)
from skmoe.nn.dispatch import capacity_tiers
from skmoe.nn.experts import mix_experts
from skmoe.nn.rowwise import (
    cross_entropy_rows,
    log_softmax_rows,
    softmax_rows,
    top_k_rows,
)
from skmoe.nn.thresholds import DISPATCH_MIN_SAVED_ROWS


@pytest.fixture(autouse=True)
def _seed():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def test_expert_bank_matches_independent_mlps():
    bank = ExpertBank(3, in_features=5, out_features=2, hidden_layer_sizes=(7, 4))
    x = torch.randn(6, 5)
    out = bank.forward_shared(x)
    assert out.shape == (3, 6, 2)
    for e in range(3):
        h = x
        for layer, (w, b) in enumerate(zip(bank.weights, bank.biases, strict=True)):
            h = h @ w[e] + b[e]
            if layer < len(bank.weights) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[e], h)
    # The grouped form computes expert e on its own rows.
    grouped = bank(x.expand(3, 6, 5))
    torch.testing.assert_close(grouped, out)


def test_expert_bank_has_two_tensors_per_layer_whatever_the_expert_count():
    small = ExpertBank(2, 4, 1, hidden_layer_sizes=(8,))
    large = ExpertBank(64, 4, 1, hidden_layer_sizes=(8,))
    assert len(list(small.parameters())) == len(list(large.parameters())) == 4


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("gating", ["softmax", "noisy"])
def test_top_k_gate_keeps_exactly_k_experts(k, gating):
    gate = Gate(4, 5, top_k=k, gating=gating).train()
    weights = gate(torch.randn(32, 4)).dense_weights()
    assert ((weights > 0).sum(1) == k).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(32))


def test_dense_gate_uses_every_expert():
    weights = Gate(4, 5)(torch.randn(10, 4)).dense_weights()
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(10))


def test_switch_gate_routes_to_one_expert_and_rejects_larger_k():
    gate = Gate(4, 6, gating="switch")
    weights = gate(torch.randn(16, 4)).dense_weights()
    assert ((weights > 0).sum(1) == 1).all()
    with pytest.raises(ValueError, match="one expert"):
        Gate(4, 6, top_k=2, gating="switch")


@pytest.mark.parametrize("gating", ["noisy", "switch"])
def test_noise_only_while_training(gating):
    gate = Gate(4, 6, top_k=2 if gating == "noisy" else None, gating=gating)
    if gate.noise is not None:
        with torch.no_grad():
            gate.noise.bias.fill_(3.0)  # plenty of noise
    x = torch.randn(64, 4)
    gate.eval()
    first = gate(x)
    again = gate(x)
    assert torch.equal(first.logits, again.logits)
    assert torch.equal(first.dense_weights(), again.dense_weights())
    gate.train()
    one, two = gate(x), gate(x)
    if gating == "noisy":  # noise is added to the scores that pick the experts
        assert not torch.equal(one.dense_weights(), two.dense_weights())
    else:  # switch jitters the router input
        assert not torch.equal(one.logits, two.logits)


def test_top1_weight_is_one_but_the_router_still_gets_a_gradient():
    gate = Gate(4, 3, top_k=1)
    x = torch.randn(8, 4)
    y_expert = torch.randn(8, 3)  # pretend expert outputs, one per expert
    routing = gate(x)
    torch.testing.assert_close(routing.weights, torch.ones(8, 1))
    mixed = (routing.dense_weights() * y_expert).sum()
    mixed.backward()
    assert gate.router.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_sparse_dispatch_equals_masked_dense_mixture(top_k, monkeypatch):
    import skmoe.nn.layer

    dispatched = []
    original = skmoe.nn.layer.plan_dispatch

    def spy(indices, *args):
        dispatched.append(indices.shape[0])
        return original(indices, *args)

    monkeypatch.setattr(skmoe.nn.layer, "plan_dispatch", spy)
    layer = MixtureOfExperts(
        6, 3, n_experts=5, top_k=top_k, expert_hidden_layer_sizes=(8,)
    ).eval()
    # Enough rows that dispatch saves DISPATCH_MIN_SAVED_ROWS expert evaluations:
    # the sparse path computes ``out``, the dense product the reference.
    n_rows = -(-DISPATCH_MIN_SAVED_ROWS // (5 - top_k))
    x = torch.randn(n_rows, 6)
    out = layer(x)
    assert dispatched == [n_rows]
    weights = layer.gate_weights(x)
    dense = torch.einsum("be,ebo->bo", weights, layer.experts.forward_shared(x))
    torch.testing.assert_close(out, dense)


def test_sparse_dispatch_gradients_match_dense_computation():
    layer = MixtureOfExperts(6, 2, n_experts=4, top_k=2, min_dispatch_savings=0)
    x = torch.randn(20, 6)
    layer(x).square().sum().backward()
    sparse_grads = [p.grad.clone() for p in layer.experts.parameters()]
    layer.zero_grad()
    weights = layer.gate_weights(x)
    torch.einsum(
        "be,ebo->bo", weights, layer.experts.forward_shared(x)
    ).square().sum().backward()
    for sparse, dense in zip(sparse_grads, layer.experts.parameters(), strict=True):
        torch.testing.assert_close(sparse, dense.grad)


def test_balancing_losses_have_gradients_and_minimum_at_uniform_routing():
    gate = Gate(4, 4, top_k=1)
    routing = gate(torch.randn(64, 4))
    loss = load_balancing_loss(routing) + router_z_loss(routing)
    loss.backward()
    assert gate.router.weight.grad.abs().sum() > 0
    # Perfectly uniform probabilities and assignments give exactly 1.
    uniform = routing._replace(
        probs=torch.full((8, 4), 0.25), indices=torch.arange(8).remainder(4)[:, None]
    )
    assert float(load_balancing_loss(uniform)) == pytest.approx(1.0)
    collapsed = routing._replace(
        probs=torch.tensor([[1.0, 0, 0, 0]]).repeat(8, 1),
        indices=torch.zeros(8, 1, dtype=torch.long),
    )
    assert float(load_balancing_loss(collapsed)) == pytest.approx(4.0)


def test_layer_stores_aux_loss_only_in_training_and_records_usage():
    layer = MixtureOfExperts(3, 2, n_experts=4, top_k=2)
    model = torch.nn.Sequential(layer)
    model.train()(torch.randn(10, 3))
    aux = auxiliary_loss(model)
    assert aux.requires_grad and float(aux.detach()) > 0
    assert layer.aux_loss is None  # collected once, then released
    usage = layer.expert_usage()
    assert float(usage.sum()) == pytest.approx(1.0)
    layer.reset_usage()
    model.eval()(torch.randn(10, 3))
    assert layer.aux_loss is None
    assert float(layer.expert_usage().sum()) == 0.0
    assert float(auxiliary_loss(model)) == 0.0


def test_invalid_layer_arguments_are_value_errors():
    with pytest.raises(ValueError, match="top_k"):
        Gate(3, 2, top_k=3)
    with pytest.raises(ValueError, match="gating"):
        Gate(3, 2, gating="hash")
    with pytest.raises(ValueError, match="activation"):
        ExpertBank(2, 3, 1, activation="swish")


@pytest.mark.parametrize("training", [False, True])
def test_large_batches_dispatch_and_small_ones_compute_densely(monkeypatch, training):
    import skmoe.nn.fused
    import skmoe.nn.layer

    calls = []
    original = skmoe.nn.layer.plan_dispatch

    def spy(indices, *args):
        calls.append(indices.shape[0])
        return original(indices, *args)

    monkeypatch.setattr(skmoe.nn.layer, "plan_dispatch", spy)
    monkeypatch.setattr(skmoe.nn.fused, "plan_dispatch", spy)
    torch.manual_seed(0)
    layer = MixtureOfExperts(4, 2, n_experts=8, top_k=2).train(training)
    small, large = torch.randn(10, 4), torch.randn(500, 4)
    dense_small = layer(small)
    assert calls == []
    dense_large = layer(large)
    assert calls == [500]
    layer.min_dispatch_savings = 0
    torch.testing.assert_close(layer(small), dense_small)
    layer.min_dispatch_savings = 10**9
    torch.testing.assert_close(layer(large), dense_large)


GATE_SETTINGS = [
    {},
    {"top_k": 2},
    {"top_k": 1},
    {"gating": "noisy", "top_k": 2},
    {"gating": "switch"},
]


@pytest.mark.parametrize("gate_params", GATE_SETTINGS, ids=str)
@pytest.mark.parametrize("coefs", [(0.01, 0.001), (0.7, 0.0), (0.0, 0.3)], ids=str)
def test_fused_balancing_loss_equals_the_spelled_out_losses(gate_params, coefs):
    gate = Gate(5, 6, **gate_params).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    balance, z = coefs

    def loss_and_grads(fused):
        with torch.random.fork_rng():  # the same noise and jitter for both
            torch.manual_seed(1)
            routing = gate(x)
        if fused:
            loss = balancing_loss(routing, balance, z)
        else:
            loss = balance * load_balancing_loss(routing) + z * router_z_loss(routing)
        params = list(gate.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(params, grads, strict=True)
        ]
        return loss.detach(), grads

    fused_loss, fused_grads = loss_and_grads(True)
    loss, grads = loss_and_grads(False)
    torch.testing.assert_close(fused_loss, loss)
    assert any(g.abs().sum() > 0 for g in grads)
    for got, expected in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_fused_balancing_loss_passes_gradcheck_and_is_none_without_weights():
    logits = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    indices = torch.tensor([[0], [1], [1], [3], [0], [1], [2]])

    def loss(logits):
        probs = torch.softmax(logits, dim=1)
        routing = Routing(logits, probs, indices, torch.ones(7, 1))
        return balancing_loss(routing, 0.5, 0.2)

    assert torch.autograd.gradcheck(loss, (logits,))
    routing = Gate(3, 4)(torch.randn(5, 3))
    assert balancing_loss(routing, 0.0, 0.0) is None


@pytest.mark.parametrize(
    ("shape", "k"),
    [((5, 4), 2), ((256, 8), 3), ((256, 16), 2), ((100, 64), 2), ((40, 64), 8)],
)
def test_top_k_rows_matches_topk_in_values_indices_and_gradients(shape, k):
    x = torch.randn(*shape, dtype=torch.float64)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    (values, indices), (expected, expected_indices) = top_k_rows(a, k), b.topk(k, 1)
    torch.testing.assert_close(values, expected)
    assert torch.equal(indices, expected_indices)
    weights = torch.randn_like(values)
    (values * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.equal(a.detach(), x)  # the caller's tensor is left alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",
    [(1, 3), (8, 8), (200, 2), (256, 8), (300, 15), (256, 16), (64, 40), (130, 64)],
)
def test_row_wise_softmax_and_cross_entropy_match_torch(shape, dtype):
    logits = torch.randn(*shape, dtype=dtype) * 3
    targets = torch.randint(0, shape[1], (shape[0],))
    targets[::3] = -1  # ignored rows
    for ours, theirs in [
        (softmax_rows, lambda t: torch.softmax(t, dim=1)),
        (log_softmax_rows, lambda t: torch.log_softmax(t, dim=1)),
        (
            lambda t: cross_entropy_rows(t, targets, -1),
            lambda t: torch.nn.functional.cross_entropy(
                t, targets, ignore_index=-1, reduction="none"
            ),
        ),
    ]:
        a = logits.clone().requires_grad_()
        b = logits.clone().requires_grad_()
        out_a, out_b = ours(a), theirs(b)
        assert out_a.shape == out_b.shape
        torch.testing.assert_close(out_a, out_b)
        weights = torch.randn_like(out_b)
        (out_a * weights).sum().backward()
        (out_b * weights).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)


def test_mix_experts_is_each_rows_weighted_sum_of_expert_outputs():
    weights = torch.softmax(torch.randn(6, 3), dim=1)
    expert_out = torch.randn(3, 6, 5)
    expected = torch.einsum("be,ebo->bo", weights, expert_out)
    torch.testing.assert_close(mix_experts(weights, expert_out), expected)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_dispatch_with_an_overflow_buffer_matches_dense_computation(top_k):
    layer = MixtureOfExperts(
        5, 3, n_experts=8, top_k=top_k, expert_hidden_layer_sizes=(7,)
    ).double()
    with torch.no_grad():  # crowd experts 2 and 5, so an overflow buffer pays off
        layer.gate.router.bias.copy_(torch.tensor([0, 0, 4.0, 0, 0, 3.0, 0, 0]))
    x = torch.randn(60, 5, dtype=torch.float64)
    counts = torch.bincount(layer.gate(x).indices.reshape(-1), minlength=8).tolist()
    tiers = capacity_tiers(counts, min_savings=0)
    assert tiers.overflow_experts  # the layout under test is really used
    assert tiers.capacity < max(counts)

    def output_and_grads(dispatch):
        layer.zero_grad()
        layer.min_dispatch_savings = 0 if dispatch else 10**9
        layer.min_tier_savings = 0
        out = layer(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), [p.grad.clone() for p in layer.parameters()]

    sparse_out, sparse_grads = output_and_grads(True)
    dense_out, dense_grads = output_and_grads(False)
    torch.testing.assert_close(sparse_out, dense_out)
    for sparse, dense in zip(sparse_grads, dense_grads, strict=True):
        torch.testing.assert_close(sparse, dense)


@pytest.mark.parametrize(
    ("counts", "expected_slots"),
    [([9, 1, 1, 1], 12), ([3, 3, 3, 3], 12), ([50, 40, 2, 1, 0, 3, 2, 2], 118)],
)
def test_capacity_tiers_pad_the_fewest_slots(counts, expected_slots):
    tiers = capacity_tiers(counts, min_savings=0)
    slots = len(counts) * tiers.capacity + len(tiers.overflow_experts) * (
        tiers.overflow_capacity
    )
    assert slots == expected_slots
    # every row has a slot: the capacity plus the overflow covers each expert's load
    for e, count in enumerate(counts):
        room = tiers.capacity + (
            tiers.overflow_capacity if e in tiers.overflow_experts else 0
        )
        assert count <= room
    # a saving below the threshold keeps the single block
    assert not capacity_tiers(counts, min_savings=10**6).overflow_experts


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(0, 300), min_size=1, max_size=64).filter(any),
    min_savings=st.sampled_from([0, 1, 64, 512]),
)
def test_capacity_tiers_fit_every_row_in_the_fewest_slots(counts, min_savings):
    tiers = capacity_tiers(counts, min_savings=min_savings)
    overflow = set(tiers.overflow_experts)
    for e, count in enumerate(counts):
        room = tiers.capacity + (tiers.overflow_capacity if e in overflow else 0)
        assert count <= room
    n, largest = len(counts), max(counts)
    slots = n * tiers.capacity + len(overflow) * tiers.overflow_capacity
    # brute force over every capacity of the main blocks
    best = min(
        n * c + sum(count > c for count in counts) * (largest - c)
        for c in range(largest + 1)
    )
    if n * largest - best >= max(min_savings, 1):
        assert slots == best
    else:
        assert (slots, overflow) == (n * largest, set())


def test_fused_z_loss_does_not_overflow_in_half_precision():
    logits = torch.randn(4096, 8, dtype=torch.float64) * 4 + 30
    probs = torch.softmax(logits, dim=1)
    half = Routing(logits.half(), probs.half(), None, probs.half())
    fused = balancing_loss(half, 0.0, 0.001)
    expected = 0.001 * router_z_loss(Routing(logits, probs, None, probs))
    assert fused.dtype == torch.float32
    assert torch.isfinite(fused)
    torch.testing.assert_close(fused.double(), expected, rtol=2e-3, atol=0)


@pytest.mark.parametrize("top_k", [None, 2])
def test_training_step_runs_under_cpu_bfloat16_autocast(top_k):
    layer = MixtureOfExperts(6, 3, n_experts=8, top_k=top_k, min_dispatch_savings=0)
    x = torch.randn(64, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        loss = out.float().square().mean() + auxiliary_loss(layer)
    loss.backward()
    assert torch.isfinite(loss)
    assert layer.usage_sum.dtype == torch.float32
    assert float(layer.expert_usage().sum()) == pytest.approx(1.0, abs=1e-2)


def test_an_empty_batch_gives_an_empty_output_on_every_path():
    layer = MixtureOfExperts(4, 2, n_experts=4, top_k=2, min_dispatch_savings=0)
    assert layer(torch.randn(0, 4)).shape == (0, 2)
