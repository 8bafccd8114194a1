"""Balancing losses that keep a router from collapsing onto a few experts."""

import torch


def load_balancing_loss(routing):
    """Switch Transformer load-balancing loss ``n_experts * sum_i f_i * P_i``.

    ``f_i`` is the fraction of routing slots sent to expert ``i`` (the arg-max expert
    for dense routing) and ``P_i`` the mean router probability of expert ``i``. The loss
    is 1 when both are uniform and grows as routing concentrates; only ``P_i`` carries a
    gradient.

    Parameters
    ----------
    routing : Routing
        Output of :class:`~skmoe.nn.Gate`.

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import Gate
    >>> routing = Gate(3, 4, top_k=1)(torch.randn(8, 3))
    >>> bool(load_balancing_loss(routing) >= 0)
    True
    """
    probs = routing.probs
    n_experts = probs.shape[1]
    chosen = routing.indices
    if chosen is None:
        chosen = probs.argmax(dim=1)
    counts = torch.bincount(chosen.reshape(-1), minlength=n_experts).to(probs.dtype)
    # n_experts * sum_i f_i * P_i with f_i = counts_i / n_slots, P_i = mean probability
    return (n_experts / chosen.numel()) * torch.dot(counts, probs.mean(0))


def router_z_loss(routing):
    """ST-MoE router z-loss: the mean squared log-sum-exp of the router logits.

    It keeps logits small, which keeps the softmax away from saturation.

    Parameters
    ----------
    routing : Routing
        Output of :class:`~skmoe.nn.Gate`.

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import Gate
    >>> routing = Gate(3, 4)(torch.randn(8, 3))
    >>> router_z_loss(routing).ndim
    0
    """
    return torch.logsumexp(routing.logits, dim=-1).square().mean()
