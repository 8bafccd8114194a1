"""A mixture restricted to some of its experts, without retraining.

:func:`keep_experts` slices the expert bank and the gates' rows of a trained module.
A softmax over a subset of the router's logits is the full softmax renormalised over
the kept experts, so the restricted module routes each row among the kept experts as
the original gate would have, had the others been masked out. Expert importance
(coalitions of experts) and expert pruning both build on it.
"""

import copy

import torch
from torch import nn

from .embeddings import EmbeddedModel
from .layer import MixtureOfExperts
from .multigate import MultiGateMixtureOfExperts


def keep_experts(module, experts):
    """A copy of ``module`` that has only the given experts.

    Parameters
    ----------
    module : MixtureOfExperts or MultiGateMixtureOfExperts
        The trained module; it is not modified.
    experts : sequence of int
        Distinct indices of the experts to keep, in the order they will have. For a
        :class:`MultiGateMixtureOfExperts` these are shared experts (positions below
        ``n_shared_experts``, the same positions at every level); task-specific
        experts are always kept. An empty list keeps none: the mixture is then
        zero (the towers of a multi-gate model still run), which is the value of
        the empty coalition in expert importance.

    Returns
    -------
    MixtureOfExperts or MultiGateMixtureOfExperts
        A new module of the same class with ``len(experts)`` (shared) experts, the
        gates' rows of the kept experts, and ``top_k`` clipped to the experts a
        gate now chooses from. Built exactly as the class builds a module of that
        size, so its ``state_dict`` loads into a fresh module of that size.

    Examples
    --------
    >>> import torch
    >>> layer = MixtureOfExperts(3, 2, n_experts=4, top_k=2).eval()
    >>> small = keep_experts(layer, [0, 2])
    >>> small.n_experts, small.gate.top_k
    (2, 2)
    >>> x = torch.randn(5, 3)
    >>> probs = layer.gate(x).probs[:, [0, 2]]
    >>> torch.allclose(small.gate(x).probs, probs / probs.sum(1, keepdim=True))
    True
    """
    if isinstance(module, EmbeddedModel):  # the feature embedding stays as it is
        return EmbeddedModel(
            copy.deepcopy(module.embedding), keep_experts(module.body, experts)
        )
    if not isinstance(module, (MixtureOfExperts, MultiGateMixtureOfExperts)):
        raise TypeError(
            "keep_experts takes a MixtureOfExperts or a MultiGateMixtureOfExperts, "
            f"got {type(module).__name__}."
        )
    experts = [int(e) for e in experts]
    n_choices = (
        module.n_experts
        if isinstance(module, MixtureOfExperts)
        else module.n_shared_experts
    )
    if len(set(experts)) != len(experts):
        raise ValueError(f"experts must be distinct indices; got {experts}.")
    if experts and (min(experts) < 0 or max(experts) >= n_choices):
        raise ValueError(f"expert indices must lie in [0, {n_choices}); got {experts}.")
    new = copy.deepcopy(module)
    if isinstance(module, MixtureOfExperts):
        _slice_mixture(new, experts)
    else:
        _slice_multigate(new, experts)
    return new


def _index(rows, like):
    return torch.as_tensor(rows, dtype=torch.long, device=like.device)


def _slice_parameter(param, rows):
    return nn.Parameter(
        param.detach().index_select(0, _index(rows, param)).clone(),
        requires_grad=param.requires_grad,
    )


def _slice_linear(linear, rows):
    linear.weight = _slice_parameter(linear.weight, rows)
    linear.bias = _slice_parameter(linear.bias, rows)
    linear.out_features = len(rows)


def _slice_gate(gate, rows):
    _slice_linear(gate.router, rows)
    if gate.noise is not None:
        _slice_linear(gate.noise, rows)
    gate.n_experts = len(rows)
    if gate.top_k is not None:
        gate.top_k = min(gate.top_k, len(rows)) or None


def _slice_bank(bank, rows):
    for params in (bank.weights, bank.biases):
        for i, param in enumerate(params):
            params[i] = _slice_parameter(param, rows)
    bank.n_experts = len(rows)


def _slice_mixture(layer, experts):
    _slice_gate(layer.gate, experts)
    _slice_bank(layer.experts, experts)
    layer.usage_sum = layer.usage_sum[_index(experts, layer.usage_sum)].clone()


def _slice_multigate(model, shared):
    n_shared = model.n_shared_experts
    own = list(range(n_shared, model.n_experts))  # task experts, all kept
    for level in model.levels:
        _slice_level(level, shared, own)
    model.n_shared_experts = len(shared)
    model.n_experts = len(shared) + len(own)
    columns = _index(shared + own, model.usage_sum)
    model.usage_sum = model.usage_sum.index_select(1, columns).clone()


def _slice_level(level, shared, own):
    n_shared = level.n_shared
    _slice_bank(level.experts, shared + own)
    level.n_shared = len(shared)
    level.n_experts = len(shared) + len(own)
    level.group = level.group[_index(shared + own, level.group)].clone()
    choices = [
        list(range(len(shared)))
        + list(
            range(len(shared) + t * level.n_task, len(shared) + (t + 1) * level.n_task)
        )
        for t in range(level.n_tasks)
    ]
    level.choices = torch.tensor(choices, dtype=torch.long, device=level.choices.device)
    if level.task_gates is not None:
        # A task gate's rows: the shared experts first, then the task's own.
        task_rows = shared + list(range(n_shared, n_shared + level.n_task))
        for gate in level.task_gates:
            _slice_gate(gate, task_rows)
    if level.shared_gate is not None:
        _slice_gate(level.shared_gate, shared + own)
