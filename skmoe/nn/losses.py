"""Balancing losses that keep a router from collapsing onto a few experts."""

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable


def load_balancing_loss(routing, sample_weight=None):
    """Switch Transformer load-balancing loss ``n_experts * sum_i f_i * P_i``.

    ``f_i`` is the fraction of routing slots sent to expert ``i`` (the arg-max expert
    for dense routing) and ``P_i`` the mean router probability of expert ``i``. The loss
    is 1 when both are uniform and grows as routing concentrates; only ``P_i`` carries a
    gradient. With ``sample_weight`` both are weighted means over the rows, so a row
    of weight 2 counts as that row twice.

    Parameters
    ----------
    routing : Routing
        Output of :class:`~skmoe.nn.Gate`.
    sample_weight : torch.Tensor of shape (batch,) or None, default=None
        Row weights; ``None`` weighs every row the same.

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
        chosen = probs.argmax(dim=1, keepdim=True)
    share = _shares(sample_weight, probs)
    counts = pair_counts(chosen, n_experts, share)
    # n_experts * sum_i f_i * P_i: f_i = counts_i / k, P_i the weighted mean probability
    return (n_experts / chosen.shape[1]) * torch.dot(counts, share @ probs)


def router_z_loss(routing, sample_weight=None):
    """ST-MoE router z-loss: the mean squared log-sum-exp of the router logits.

    It keeps logits small, which keeps the softmax away from saturation.

    Parameters
    ----------
    routing : Routing
        Output of :class:`~skmoe.nn.Gate`.
    sample_weight : torch.Tensor of shape (batch,) or None, default=None
        Row weights of the mean; ``None`` weighs every row the same.

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
    lse = torch.logsumexp(routing.logits, dim=-1)
    return torch.dot(_shares(sample_weight, lse), lse.square())


def _shares(sample_weight, like):
    """Each row's share of the batch's weight, in the dtype of ``like``."""
    n_rows = like.shape[0]
    if sample_weight is None:
        return like.new_full((n_rows,), 1.0 / max(n_rows, 1))
    return row_shares(sample_weight.to(like.dtype))


def row_shares(sample_weight):
    """``sample_weight / sample_weight.sum()``, or ``None`` for ``None``.

    What the balancing statistics weigh each row by; a batch of zero weight gives
    zeros rather than NaN.

    Examples
    --------
    >>> import torch
    >>> row_shares(torch.tensor([1.0, 3.0])).tolist()
    [0.25, 0.75]
    """
    if sample_weight is None:
        return None
    total = sample_weight.sum().clamp(min=torch.finfo(sample_weight.dtype).tiny)
    return sample_weight / total


class _BalancingLoss(torch.autograd.Function):
    """Both balancing losses as one autograd node, with hand-written gradients.

    Spelled out with tensor operations the two losses record about a dozen autograd
    nodes per step; this node computes their value from the router's logits and
    probabilities and their gradients in closed form. With ``s_r`` each row's share
    of the batch's weight (``1 / batch`` unweighted) and ``c`` the per-expert sums of
    the shares of the (row, choice) pairs sent to it:

    * ``d/d probs[r]`` of ``balance_scale * c . (s @ probs)`` is
      ``balance_scale * c * s_r``;
    * ``d/d logits[r]`` of ``z_coef * sum_r s_r lse_r**2`` is
      ``2 * z_coef * s_r * lse_r * probs[r]``, because the gradient of the
      log-sum-exp is the softmax.

    The log-sum-exp itself is ``max(logits) - log(max(probs))``, exact because
    ``probs`` is the softmax of ``logits``; the same ``max`` gives the arg-max expert
    that dense routing counts. With a ``reducer`` the statistics are those of every
    shard's batch together (see :func:`_shard_balancing_value`).
    """

    @staticmethod
    def forward(
        ctx, logits, probs, indices, balancing_coef, z_coef, sample_weight, reducer
    ):
        top_logit, top = logits.max(dim=1, keepdim=True)
        chosen = top if indices is None else indices
        share = row_shares(sample_weight)
        counts = None
        if balancing_coef:
            counts = pair_counts(chosen, probs.shape[1], share)
        loss, terms = _balancing_value(
            probs,
            top_logit,
            top,
            counts,
            chosen.shape[1],
            balancing_coef,
            z_coef,
            share,
            reducer,
            sample_weight,
        )
        ctx.save_for_backward(probs, *terms.tensors)
        ctx.scales = terms.scales
        ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        probs, *tensors = ctx.saved_tensors
        terms = BalancingTerms(tuple(tensors), ctx.scales)
        grad_probs_row, grad_logits = _balancing_grads(probs, terms, grad)
        if grad_logits is not None and ctx.needs_input_grad[0]:
            grad_logits = grad_logits.to(ctx.logits_dtype)
        else:
            grad_logits = None
        grad_probs = None
        if grad_probs_row is not None and ctx.needs_input_grad[1]:
            grad_probs = grad_probs_row.expand_as(probs)
        return grad_logits, grad_probs, None, None, None, None, None


def pair_counts(chosen, n_experts, share=None):
    """(Row, choice) pairs sent to each expert; with ``share``, their summed shares.

    Examples
    --------
    >>> import torch
    >>> pair_counts(torch.tensor([[0], [2], [2]]), 3).tolist()
    [1, 0, 2]
    """
    flat = chosen.reshape(-1)
    if share is None:
        return torch.bincount(flat, minlength=n_experts)
    per_pair = share.unsqueeze(1).expand(chosen.shape).reshape(-1)
    return share.new_zeros(n_experts).index_add_(0, flat, per_pair)


class BalancingTerms(NamedTuple):
    """What the balancing losses' gradients are computed from.

    ``tensors`` holds the expert counts (or ``None`` without the load-balancing
    loss), each row's log-sum-exp (or ``None`` without the z-loss), both at least
    float32, and the rows' shares of the batch weight (``None`` when unweighted);
    ``scales`` the two losses' weights as applied.
    """

    tensors: tuple
    scales: tuple


def _balancing_value(
    probs,
    top_logit,
    top,
    counts,
    k,
    lb_coef,
    z_coef,
    share=None,
    reducer=None,
    sample_weight=None,
):
    """Both weighted balancing losses, and the terms their gradients need.

    ``counts`` are the (row, choice) pairs sent to each expert (with ``share``, the
    sums of their rows' shares, :func:`pair_counts`), ``k`` the choices per row;
    ``top_logit`` and ``top`` each row's largest logit and its expert; ``share``
    each row's share of the batch weight, ``None`` for equal weights (then
    ``sample_weight``, the rows' weights, is ``None`` too). With a ``reducer``, the
    statistics are those of every shard's batch (:func:`_shard_balancing_value`).
    """
    if reducer is not None and (lb_coef or z_coef):
        coefs = (lb_coef, z_coef)
        return _shard_balancing_value(
            probs, top_logit, top, counts, k, coefs, share, sample_weight, reducer
        )
    acc = torch.promote_types(probs.dtype, torch.float32)
    n_rows, n_experts = probs.shape
    if share is not None:
        share = share.to(acc)
    loss = lse = None
    balance_scale = z_scale = 0.0
    if lb_coef:
        counts = counts.to(acc)
        if share is None:
            balance_scale = lb_coef * n_experts / (k * max(n_rows, 1))
            mean_probs = probs.mean(0, dtype=acc)
        else:
            balance_scale = lb_coef * n_experts / k
            mean_probs = share @ probs.to(acc)
        loss = torch.dot(counts, mean_probs).mul_(balance_scale)
    else:
        counts = None
    if z_coef:
        lse = top_logit.to(acc) - probs.gather(1, top).to(acc).log_()
        flat = lse.view(-1)
        if share is None:
            z_scale = z_coef / max(n_rows, 1)
            z = torch.dot(flat, flat)  # the sum of squares
        else:
            z_scale = z_coef
            z = torch.dot(flat * share, flat)
        loss = z.mul_(z_scale) if loss is None else loss.add_(z, alpha=z_scale)
    return loss, BalancingTerms((counts, lse, share), (balance_scale, z_scale))


def _shard_balancing_value(
    probs, top_logit, top, counts, k, coefs, share, sample_weight, reducer
):
    """:func:`_balancing_value` for one shard of a batch split over several ranks.

    Each shard's statistics (the fraction of pairs sent to each expert, the mean
    router probability, the mean squared log-sum-exp) are scaled by its weight ``T``
    (its rows, or its summed row weights) and averaged over the shards by
    ``reducer`` in one call, together with ``T``: their ratio is the statistic of
    the union of the batches. The loss is the union's, on every shard. Each row's
    gradient is ``world_size`` times its part of the union's gradient (its share of
    the union's weight is ``w / (world_size * mean(T))``), so that the shards'
    gradients averaged, as data-parallel training averages them, are the union's:
    the terms carry ``T / mean(T)`` for that.
    """
    lb_coef, z_coef = coefs
    acc = torch.promote_types(probs.dtype, torch.float32)
    n_rows, n_experts = probs.shape
    if share is not None:
        share = share.to(acc)
    # Unweighted: sums over the rows; weighted: means weighted by ``share``.
    parts = []
    if lb_coef:
        parts.append(counts.to(acc))
        if share is None:
            parts.append(probs.sum(0, dtype=acc))
        else:
            parts.append(share @ probs.to(acc))
    lse = None
    if z_coef:
        lse = top_logit.to(acc) - probs.gather(1, top).to(acc).log_()
        flat = lse.view(-1)
        row_flat = flat if share is None else flat * share
        parts.append(torch.dot(row_flat, flat).reshape(1))
    if share is None:
        total = n_rows
        parts.append(probs.new_full((1,), n_rows, dtype=acc))
        local = torch.cat(parts)
    else:
        total = sample_weight.sum().to(acc).reshape(1)
        parts.append(total.new_ones(1))
        local = torch.cat(parts).mul_(total)  # each statistic times the weight
    reduced = reducer(local)
    mean_total = reduced[-1:].clamp(min=torch.finfo(acc).tiny)
    stats = reduced / mean_total  # the union's statistics
    ratio = total / mean_total
    loss = None
    balance_scale = z_scale = 0.0
    fractions = None
    if lb_coef:
        fractions, mean_probs = stats[:n_experts], stats[n_experts : 2 * n_experts]
        balance_scale = lb_coef * n_experts / k
        loss = torch.dot(fractions, mean_probs).mul_(balance_scale)
        fractions = fractions * ratio  # what each row's gradient is scaled by
    if z_coef:
        z_scale = z_coef if share is not None else z_coef / max(n_rows, 1)
        z = stats[-2] * z_coef
        loss = z if loss is None else loss.add_(z)
        lse = lse * ratio
    return loss, BalancingTerms((fractions, lse, share), (balance_scale, z_scale))


def _balancing_grads(probs, terms, grad):
    """The gradient reaching ``probs`` (one row shared by every row when unweighted,
    else one per row) and the z-loss's gradient of the logits (in the accumulation
    dtype), from the balancing loss's gradient ``grad``; each ``None`` where its
    loss is off.
    """
    (counts, lse, share), (balance_scale, z_scale) = terms
    grad_probs_row = grad_logits = None
    if counts is not None:
        if share is None:
            grad_probs_row = (balance_scale / max(probs.shape[0], 1)) * grad * counts
        else:
            grad_probs_row = (balance_scale * grad) * share.unsqueeze(1) * counts
        grad_probs_row = grad_probs_row.to(probs.dtype)
    if lse is not None:
        if share is not None:
            lse = lse * share.unsqueeze(1)
        grad_logits = (2.0 * z_scale * grad) * lse * probs
    return grad_probs_row, grad_logits


def balancing_loss(
    routing,
    load_balancing_coef=0.01,
    router_z_loss_coef=0.001,
    sample_weight=None,
    reducer=None,
):
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
    sample_weight : torch.Tensor of shape (batch,) or None, default=None
        Row weights of both losses' statistics (see :func:`load_balancing_loss`).
    reducer : callable or None, default=None
        For data-parallel training, where each rank holds a shard of the batch:
        ``reducer(t)`` returns the mean over the ranks of a 1-d float tensor ``t``
        (``all_reduce`` then divide by the world size; it may reduce in place).
        The statistics, and so the loss, are then those of the union of the
        shards' batches, and each rank's gradient is ``world_size`` times its rows'
        part of the union's gradient: averaged over the ranks, as
        :class:`~torch.nn.parallel.DistributedDataParallel` averages gradients,
        they are the gradient of a single process on the union. It is called once
        per call, so every rank must call this function the same number of
        times (also with an empty shard). ``None`` uses this batch alone.

    Returns
    -------
    torch.Tensor or None
        A scalar; ``None`` when both weights are zero, or the batch is empty and
        there is no ``reducer``.

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

    A reducer that averages over two shards, here both the same batch, gives the
    loss of their union, which is this batch's:

    >>> union = balancing_loss(routing, 0.01, 0.001, reducer=lambda t: (t + t) / 2)
    >>> bool(torch.isclose(union, fused))
    True
    """
    if not load_balancing_coef and not router_z_loss_coef:
        return None
    if routing.probs.shape[0] == 0 and reducer is None:  # nothing to balance
        return None
    return _BalancingLoss.apply(
        routing.logits,
        routing.probs,
        routing.indices,
        float(load_balancing_coef),
        float(router_z_loss_coef),
        sample_weight,
        reducer,
    )
