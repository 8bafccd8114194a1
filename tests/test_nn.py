"""The pure-PyTorch layer: expert bank, gates, balancing losses and the MoE layer."""

import pytest
import torch

from skmoe.nn import (
    ExpertBank,
    Gate,
    MixtureOfExperts,
    auxiliary_loss,
    load_balancing_loss,
    router_z_loss,
)


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
def test_sparse_dispatch_equals_masked_dense_mixture(top_k):
    layer = MixtureOfExperts(
        6, 3, n_experts=5, top_k=top_k, expert_hidden_layer_sizes=(8,)
    )
    x = torch.randn(40, 6)
    out = layer(x)
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


def test_large_batches_dispatch_and_small_ones_compute_densely(monkeypatch):
    calls = []
    original = MixtureOfExperts._dispatch

    def spy(self, x, routing):
        calls.append(x.shape[0])
        return original(self, x, routing)

    monkeypatch.setattr(MixtureOfExperts, "_dispatch", spy)
    layer = MixtureOfExperts(4, 2, n_experts=8, top_k=2)  # saves 6 rows per row
    small, large = torch.randn(10, 4), torch.randn(500, 4)
    dense_small = layer(small)
    assert calls == []
    dense_large = layer(large)
    assert calls == [500]
    layer.min_dispatch_savings = 0
    torch.testing.assert_close(layer(small), dense_small)
    layer.min_dispatch_savings = 10**9
    torch.testing.assert_close(layer(large), dense_large)
