"""Balancing losses that keep a router from collapsing onto a few experts."""

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable


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


class _BalancingLoss(torch.autograd.Function):
    """Both balancing losses as one autograd node, with hand-written gradients.

    Spelled out with tensor operations the two losses record about a dozen autograd
    nodes per step; this node computes their value from the router's logits and
    probabilities and their gradients in closed form:

    * ``d/d probs`` of ``balance_scale * counts . probs.mean(0)`` is
      ``balance_scale * counts / batch`` on every row;
    * ``d/d logits`` of ``z_scale * sum(lse**2)`` is ``2 * z_scale * lse * probs``,
      because the gradient of the log-sum-exp is the softmax.

    The log-sum-exp itself is ``max(logits) - log(max(probs))``, exact because
    ``probs`` is the softmax of ``logits``; the same ``max`` gives the arg-max expert
    that dense routing counts.
    """

    @staticmethod
    def forward(ctx, logits, probs, indices, balancing_coef, z_coef):
        top_logit, top = logits.max(dim=1, keepdim=True)
        chosen = top if indices is None else indices
        counts = None
        if balancing_coef:
            counts = torch.bincount(chosen.reshape(-1), minlength=probs.shape[1])
        loss, terms = _balancing_value(
            probs, top_logit, top, counts, chosen.numel(), balancing_coef, z_coef
        )
        ctx.save_for_backward(probs, *terms.tensors)
        ctx.scales = terms.scales
        ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        probs, counts, lse = ctx.saved_tensors
        terms = BalancingTerms((counts, lse), ctx.scales)
        grad_probs_row, grad_logits = _balancing_grads(probs, terms, grad)
        if grad_logits is not None and ctx.needs_input_grad[0]:
            grad_logits = grad_logits.to(ctx.logits_dtype)
        else:
            grad_logits = None
        grad_probs = None
        if grad_probs_row is not None and ctx.needs_input_grad[1]:
            grad_probs = grad_probs_row.expand_as(probs)
        return grad_logits, grad_probs, None, None, None


class BalancingTerms(NamedTuple):
    """What the balancing losses' gradients are computed from.

    ``tensors`` holds the expert counts (or ``None`` without the load-balancing
    loss) and each row's log-sum-exp (or ``None`` without the z-loss), both at
    least float32; ``scales`` the two losses' weights as applied.
    """

    tensors: tuple
    scales: tuple


def _balancing_value(probs, top_logit, top, counts, n_choices, lb_coef, z_coef):
    """Both weighted balancing losses, and the terms their gradients need.

    ``counts`` are the (row, choice) pairs sent to each expert, ``n_choices`` their
    total; ``top_logit`` and ``top`` each row's largest logit and its expert.
    """
    acc = torch.promote_types(probs.dtype, torch.float32)
    n_rows, n_experts = probs.shape
    loss = lse = None
    balance_scale = z_scale = 0.0
    if lb_coef:
        counts = counts.to(acc)
        balance_scale = lb_coef * n_experts / n_choices
        loss = torch.dot(counts, probs.mean(0, dtype=acc)).mul_(balance_scale)
    else:
        counts = None
    if z_coef:
        z_scale = z_coef / max(n_rows, 1)
        lse = top_logit.to(acc) - probs.gather(1, top).to(acc).log_()
        flat = lse.view(-1)
        z = torch.dot(flat, flat)  # the sum of squares
        loss = z.mul_(z_scale) if loss is None else loss.add_(z, alpha=z_scale)
    return loss, BalancingTerms((counts, lse), (balance_scale, z_scale))


def _balancing_grads(probs, terms, grad):
    """The gradient reaching ``probs`` (one row, the same for every row) and the
    z-loss's gradient of the logits (in the accumulation dtype), from the
    balancing loss's gradient ``grad``; each ``None`` where its loss is off.
    """
    (counts, lse), (balance_scale, z_scale) = terms
    grad_probs_row = grad_logits = None
    if counts is not None:
        grad_probs_row = (balance_scale / probs.shape[0]) * grad * counts
        grad_probs_row = grad_probs_row.to(probs.dtype)
    if lse is not None:
        grad_logits = (2.0 * z_scale * grad) * lse * probs
    return grad_probs_row, grad_logits


def balancing_loss(routing, load_balancing_coef=0.01, router_z_loss_coef=0.001):
    """Weighted sum of both balancing losses, computed as one autograd node.

    Equal (up to rounding) to ``load_balancing_coef * load_balancing_loss(routing) +
    router_z_loss_coef * router_z_loss(routing)``, with the same (first-order)
    gradients, at a fraction of the per-step cost: the mixture layers use it at every
    training step. It relies on ``routing.probs`` being the softmax of
    ``routing.logits``, as :class:`~skmoe.nn.Gate` produces them. The result is at
    least float32, whatever the routing's dtype.

    Parameters
    ----------
    routing : Routing
        Output of :class:`~skmoe.nn.Gate`.
    load_balancing_coef : float, default=0.01
        Weight of :func:`load_balancing_loss`.
    router_z_loss_coef : float, default=0.001
        Weight of :func:`router_z_loss`.

    Returns
    -------
    torch.Tensor or None
        A scalar; ``None`` when both weights are zero or the batch is empty.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import Gate
    >>> routing = Gate(3, 4, top_k=2)(torch.randn(8, 3))
    >>> fused = balancing_loss(routing, 0.01, 0.001)
    >>> spelled_out = 0.01 * load_balancing_loss(routing) + 0.001 * router_z_loss(
    ...     routing
    ... )
    >>> bool(torch.isclose(fused, spelled_out))
    True
    """
    if not load_balancing_coef and not router_z_loss_coef:
        return None
    if routing.probs.shape[0] == 0:  # no rows, nothing to balance
        return None
    return _BalancingLoss.apply(
        routing.logits,
        routing.probs,
        routing.indices,
        float(load_balancing_coef),
        float(router_z_loss_coef),
    )
