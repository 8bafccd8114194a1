"""Balancing losses over a batch split into shards, as in a data-parallel fit.

A reducer that averages each shard's balancing statistics over the shards must make
the shards' losses the whole batch's, and their gradients, averaged over the shards
as data-parallel training averages them, the whole batch's gradients: for the
autograd path, the fused node, the autograd-free ``training_step`` and the
multi-gate module. The shards are simulated in one process, in float64: a first
pass records each shard's statistics, a second one hands each shard the mean of its
own and the other's.
"""

import pytest
import torch

from skmoe.nn import Gate, MixtureOfExperts, MultiGateMixtureOfExperts, auxiliary_loss
from skmoe.nn.losses import balancing_loss

SHARDS = (slice(0, 13), slice(13, 20))  # unequal, as a shard's last batch may be


def _linear_task(direction, weights, mean_total):
    """A task loss ``sum_r w_r (out_r . direction_r) / mean_total`` and its gradient:
    each shard's part of the whole batch's weighted mean, times the number of
    shards (``mean_total`` is the mean over the shards of their total weight)."""

    def loss_and_grad(out):
        grad = direction * weights.unsqueeze(1) / mean_total
        return (out * grad).sum(), grad

    return loss_and_grad


def _sharded(step, n_rows, sample_weight, reduce=True):
    """Each shard's ``step(rows, weights, mean_total, reducer)``, the reducer
    averaging the shard's statistics with the other shard's (the ``c``-th call with
    the other shard's ``c``-th: one per gate)."""
    w = (
        torch.ones(n_rows, dtype=torch.float64)
        if sample_weight is None
        else sample_weight
    )
    mean_total = sum(w[rows].sum() for rows in SHARDS) / len(SHARDS)
    recorded = [[] for _ in SHARDS]
    if reduce:
        for calls, rows in zip(recorded, SHARDS, strict=True):
            step(rows, w[rows], mean_total, lambda s, c=calls: c.append(s.clone()) or s)
        assert all(len(calls) == len(recorded[0]) > 0 for calls in recorded)
    results = []
    for i, rows in enumerate(SHARDS):
        reducer = None
        if reduce:
            others = [calls for j, calls in enumerate(recorded) if j != i]
            done = []

            def reducer(stats, others=others, done=done):
                c = len(done)
                done.append(c)
                return (stats + sum(calls[c] for calls in others)) / len(SHARDS)

        results.append(step(rows, w[rows], mean_total, reducer))
    return results


def _assert_shards_average_to(results, expected):
    """The shards' losses and gradients, averaged, equal ``expected``'s."""
    losses, grads = zip(*results, strict=True)
    torch.testing.assert_close(sum(losses) / len(losses), expected[0])
    assert all(g.keys() == expected[1].keys() for g in grads)
    for name, want in expected[1].items():
        mean = sum(g[name] for g in grads) / len(grads)
        torch.testing.assert_close(mean, want, msg=name)


def _layer(routing, layout):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = MixtureOfExperts(
            5,
            3,
            n_experts=4,
            expert_hidden_layer_sizes=(7,),
            load_balancing_coef=0.3,
            router_z_loss_coef=0.05,
            **routing,
        ).double()
        layer.gate.router.bias.data[2] += 1.5  # crowd an expert: uneven shards
    layer.min_dispatch_savings = 10**9 if layout == "dense" else 0
    return layer.train()


def _data(weighted):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    direction = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    w = torch.rand(20, generator=gen, dtype=torch.float64) + 0.1 if weighted else None
    return x, direction, w


def _step_of(module, path, x, direction, weighted):
    """One training step of ``module`` (single- or multi-gate) on some rows, by
    ``path``: ``"training_step"``, or a forward pass and autograd, through the fused
    mixture (``"fused"``) or not (``"autograd"``)."""

    def step(rows, w, mean_total, reducer):
        module.balancing_reducer = reducer
        module.zero_grad(set_to_none=True)
        task = _linear_task(direction[rows], w, mean_total)
        sample_weight = w if weighted else None
        if path == "training_step":
            loss = module.training_step(x[rows], task, sample_weight)
            assert loss is not None
        else:
            module.fused_training = path == "fused"
            out = module(x[rows], sample_weight=sample_weight)
            loss = task(out)[0] + auxiliary_loss(module)
            loss.backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters()}
        return loss.detach(), grads

    return step


@pytest.mark.parametrize("path", ["autograd", "fused", "training_step"])
@pytest.mark.parametrize(
    "routing", [dict(top_k=None), dict(top_k=1), dict(top_k=2), dict(top_k=4)]
)
@pytest.mark.parametrize("layout", ["dense", "dispatch"])
@pytest.mark.parametrize("weighted", [False, True])
def test_shards_with_a_reducer_compute_the_whole_batchs_loss_and_gradients(
    path, routing, layout, weighted
):
    x, direction, w = _data(weighted)
    layer = _layer(routing, layout)
    step = _step_of(layer, path, x, direction, weighted)
    everything = slice(None)
    full_weight = torch.ones(20, dtype=torch.float64) if w is None else w
    expected = step(everything, full_weight, full_weight.sum(), None)
    _assert_shards_average_to(_sharded(step, 20, w), expected)


def test_without_a_reducer_each_shard_balances_its_own_batch():
    """The check above can fail: shards on their own give other gradients."""
    x, direction, _ = _data(False)
    layer = _layer(dict(top_k=1), "dispatch")
    step = _step_of(layer, "fused", x, direction, False)
    expected = step(slice(None), torch.ones(20, dtype=torch.float64), 20.0, None)
    with pytest.raises(AssertionError):
        _assert_shards_average_to(_sharded(step, 20, None, reduce=False), expected)


@pytest.mark.parametrize("path", ["autograd", "training_step"])
@pytest.mark.parametrize("architecture", ["mmoe", "ple"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_multi_gate_module_balances_over_the_shards(architecture, weighted, path):
    x, direction, w = _data(weighted)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MultiGateMixtureOfExperts(
            5,
            [1, 2],
            architecture=architecture,
            n_shared_experts=3,
            expert_hidden_layer_sizes=(6,),
            top_k=2,
            load_balancing_coef=0.3,
            router_z_loss_coef=0.05,
        ).double()
    step = _step_of(model.train(), path, x, direction, weighted)
    full_weight = torch.ones(20, dtype=torch.float64) if w is None else w
    expected = step(slice(None), full_weight, full_weight.sum(), None)
    _assert_shards_average_to(_sharded(step, 20, w), expected)


def test_an_empty_shard_still_takes_part_in_the_reduction():
    """A shard without rows calls the reducer too (no rank may skip a collective);
    the other shard's gradient then carries the whole batch's."""
    gate = Gate(5, 4, top_k=2).double()
    x = torch.randn(10, 5, dtype=torch.float64)
    calls = []

    def run(rows, reducer):
        gate.zero_grad(set_to_none=True)
        loss = balancing_loss(gate(rows), 0.3, 0.05, reducer=reducer)
        loss.backward()
        grad = gate.router.weight.grad
        return loss.detach(), torch.zeros_like(
            gate.router.weight
        ) if grad is None else grad

    expected_loss, expected_grad = run(x, None)
    full_stats = []
    run(x, lambda s: full_stats.append(s.clone()) or s)
    empty_stats = []
    run(x[:0], lambda s: empty_stats.append(s.clone()) or s)
    both = [full_stats[0], empty_stats[0]]

    def mean(stats):
        calls.append(stats.shape)
        return sum(both) / 2

    loss_full, grad_full = run(x, mean)
    loss_empty, grad_empty = run(x[:0], mean)
    assert len(calls) == 2
    torch.testing.assert_close(loss_full, expected_loss)
    torch.testing.assert_close(loss_empty, expected_loss)
    torch.testing.assert_close((grad_full + grad_empty) / 2, expected_grad)
