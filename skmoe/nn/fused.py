"""A mixture layer's training step from router logits to output, as one autograd node.

Composed of tensor operations, a mixture layer's training forward pass records some
thirty autograd nodes: the routing softmax and top-k, the straight-through weight, the
balancing losses, the dispatch gathers, every expert layer and activation, and the
weighted sum. At tabular batch sizes each node's bookkeeping costs about as much as
its arithmetic, and running so many different code paths per step is itself slow.
:func:`fused_mixture` computes the same values, and the same first-order gradients,
in one node whose backward pass is written out:

* the experts' gradients are the batched products' adjoints and the activations'
  derivatives taken from their saved outputs; the dispatch's scatter into the expert
  buffers and gather out of them are each other's adjoints (every slot holds at most
  one (row, choice) pair, so copies suffice);
* the routing gradient is the softmax's Jacobian applied to the gradients reaching
  the router probabilities: from the straight-through weight of top-1 routing, from
  the dense weights, and from the load-balancing loss (``scale * counts / batch`` on
  every row); top-k weights pass theirs through their own softmax to the chosen
  scores;
* the router z-loss adds ``2 * scale * lse * probs`` to the logits' gradient, the
  log-sum-exp being ``max(logits) - log(max(probs))``.

Equality with the composed layer, in values and gradients, is tested for every
routing, activation and depth; its speed is in ``docs/performance.md``. Its larger
use is :meth:`MixtureOfExperts.training_step
<skmoe.nn.MixtureOfExperts.training_step>`, which calls :func:`mixture_forward` and
:func:`mixture_backward` directly, with no graph at all.

The backward pass is not itself differentiable (it says so rather than return a wrong
second derivative): set ``fused_training = False`` on a layer for double backward.
"""

import torch

from .dispatch import plan_dispatch
from .experts import ACTIVATIONS_IN_PLACE, mix_choices, mix_experts
from .losses import (  # the balancing loss's maths
    _balancing_grads,
    _balancing_value,
    pair_counts,
    row_shares,
)
from .routing import choose
from .rowwise import softmax_rows


def _relu_grad(grad, output):
    return torch.ops.aten.threshold_backward(grad, output, 0)


def _identity_grad(grad, output):
    return grad


# Derivative of each activation from its output, as torch's own backward kernels.
ACTIVATION_GRADS = {
    "relu": _relu_grad,
    "tanh": torch.ops.aten.tanh_backward,
    "logistic": torch.ops.aten.sigmoid_backward,
    "identity": _identity_grad,
}


def fused_mixture(layer, x, logits, scores=None, sample_weight=None):
    """A :class:`~skmoe.nn.MixtureOfExperts` training forward pass in one node.

    Parameters
    ----------
    layer : MixtureOfExperts
        Supplies the experts, ``top_k``, the balancing weights and the dispatch
        thresholds.
    x : torch.Tensor of shape (batch, in_features)
        The rows.
    logits : torch.Tensor of shape (batch, n_experts)
        Router logits (:meth:`~skmoe.nn.Gate.scores`).
    scores : torch.Tensor of shape (batch, n_experts) or None, default=None
        Noisy scores to choose the experts by; ``None`` chooses by ``logits``.
    sample_weight : torch.Tensor of shape (batch,) or None, default=None
        Row weights of the balancing statistics.

    Returns
    -------
    out : torch.Tensor of shape (batch, out_features)
    aux_loss : torch.Tensor
        The weighted balancing losses (a scalar, at least float32).
    load : torch.Tensor of shape (n_experts,)
        The combination weight each expert received over the batch (no gradient).

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import MixtureOfExperts
    >>> layer = MixtureOfExperts(4, 2, n_experts=3, top_k=1).train()
    >>> x = torch.randn(6, 4)
    >>> out, aux, load = fused_mixture(layer, x, layer.gate.router(x))
    >>> out.shape, aux.ndim, float(load.sum())
    (torch.Size([6, 2]), 0, 6.0)
    """
    config = mixture_config(layer)
    bank = layer.experts
    reducer = layer.balancing_reducer
    return _FusedMixture.apply(
        x, logits, scores, sample_weight, reducer, config, *bank.weights, *bank.biases
    )


def mixture_config(layer):
    """The settings of ``layer`` that :func:`mixture_forward` needs, as a tuple.

    The experts kept per row come from the gate's routing spec, as in the gate's
    own forward pass.
    """
    return (
        layer.gate.kept,
        float(layer.load_balancing_coef),
        float(layer.router_z_loss_coef),
        layer.experts.activation,
        layer.min_dispatch_savings,
        layer.min_tier_savings,
    )


class MixtureState:
    """What :func:`mixture_backward` needs from :func:`mixture_forward`."""

    __slots__ = (
        "blocks",
        "config",
        "mix_weights",
        "params",
        "picked",
        "plan",
        "routed",
    )


class Routed:
    """One gate's routing of a batch, computed without autograd by :func:`route`.

    Attributes
    ----------
    k : int or None
        Experts kept per row; ``None`` for dense routing.
    probs : torch.Tensor of shape (batch, n_experts)
        Softmax of the logits.
    indices : torch.Tensor of shape (batch, k) or None
        Chosen experts per row, best first; ``None`` for dense routing.
    weights : torch.Tensor of shape (batch, k), (batch, n_experts) or None
        Kept weights (all of ``probs`` when dense); ``None`` for top-1, whose
        straight-through weight is exactly 1.
    top_logit, top : torch.Tensor of shape (batch, 1)
        Each row's largest logit and its expert (for the z-loss).
    chosen : torch.Tensor of shape (batch, k) or (batch, 1)
        The experts the load-balancing loss counts (the arg-max when dense).
    balance : BalancingTerms or None
        Set by :func:`routing_losses`, for :func:`routing_backward`.
    """

    __slots__ = (
        "balance",
        "chosen",
        "indices",
        "k",
        "probs",
        "top",
        "top_logit",
        "weights",
    )

    def dense_weights(self):
        """Combination weights over all experts, ``(batch, n_experts)``."""
        if self.k is None:
            return self.weights
        if self.k == 1:
            ones = self.probs.new_ones(()).expand(self.probs.shape[0], 1)
            return torch.zeros_like(self.probs).scatter(1, self.indices, ones)
        return torch.zeros_like(self.probs).scatter(1, self.indices, self.weights)


def route(logits, scores, k):
    """Probabilities, choices and weights of one gate's routing, as the gate's own.

    Parameters
    ----------
    logits : torch.Tensor of shape (batch, n_experts)
    scores : torch.Tensor of shape (batch, n_experts) or None
        Noisy scores to choose by; ``None`` chooses by ``logits``.
    k : int or None
        Experts kept per row (:attr:`Gate.kept <skmoe.nn.Gate.kept>`).

    Returns
    -------
    Routed

    Examples
    --------
    >>> import torch
    >>> routed = route(torch.tensor([[0.0, 2.0, 1.0]]), None, 2)
    >>> routed.indices.tolist(), routed.dense_weights().sum().item()
    ([[1, 2]], 1.0)
    """
    routed = Routed()
    routed.k, routed.balance = k, None
    routed.probs = probs = softmax_rows(logits)
    if k is None:
        routed.top_logit, routed.top = logits.max(dim=1, keepdim=True)
        routed.indices, routed.weights, routed.chosen = None, probs, routed.top
        return routed
    top_scores, indices = choose(logits if scores is None else scores, k)
    # Top-1: the straight-through weight is exactly 1, ``weights`` stays None.
    routed.weights = None if k == 1 else softmax_rows(top_scores)
    if scores is None:  # sorted: the first choice is the arg-max
        routed.top_logit, routed.top = top_scores[:, :1], indices[:, :1]
    else:
        routed.top_logit, routed.top = logits.max(dim=1, keepdim=True)
    routed.indices = routed.chosen = indices
    return routed


def routing_losses(routed, counts, lb_coef, z_coef, sample_weight=None, reducer=None):
    """The weighted balancing losses of a routing (``None`` when both are off).

    ``counts`` are the (row, choice) pairs sent to each expert where they are
    already counted (``None`` otherwise); with ``sample_weight`` they are counted
    again, each pair by its row's share of the batch. ``reducer`` averages the
    batch statistics over data-parallel ranks (see
    :func:`~skmoe.nn.losses.balancing_loss`). Stores the terms
    :func:`routing_backward` needs in ``routed.balance``.
    """
    share = row_shares(sample_weight)
    if lb_coef and (counts is None or share is not None):
        counts = pair_counts(routed.chosen, routed.probs.shape[1], share)
    aux, routed.balance = _balancing_value(
        routed.probs,
        routed.top_logit,
        routed.top,
        counts,
        routed.chosen.shape[1],
        lb_coef,
        z_coef,
        share,
        reducer,
        sample_weight,
    )
    return aux


def routing_backward(routed, grad_w, grad_aux, scores_given=False):
    """Gradients of the logits and the choosing scores of a routing.

    Parameters
    ----------
    routed : Routed
        From :func:`route` (and :func:`routing_losses`, for the balancing terms).
    grad_w : torch.Tensor
        Gradient of the kept weights, ``(batch, k)``; of all weights,
        ``(batch, n_experts)``, for dense routing; of the straight-through weight
        for top-1.
    grad_aux : torch.Tensor
        A scalar: the gradient reaching the balancing loss.
    scores_given : bool, default=False
        Whether the experts were chosen by separate scores (their gradient is then
        returned apart from the logits').

    Returns
    -------
    grad_logits, grad_scores : torch.Tensor or None
    """
    probs, weights, k = routed.probs, routed.weights, routed.k
    grad_probs = grad_scores = None
    if k is None:
        grad_probs = grad_w
    elif k == 1:
        grad_probs = torch.zeros_like(probs).scatter_(1, routed.indices, grad_w)
    else:
        dot = (grad_w * weights).sum(1, keepdim=True)
        grad_top = weights * (grad_w - dot)
        grad_scores = torch.zeros_like(probs).scatter_(1, routed.indices, grad_top)
    row = z_grad = None
    if routed.balance is not None:
        row, z_grad = _balancing_grads(probs, routed.balance, grad_aux)
    if row is not None:
        grad_probs = row.expand_as(probs) if grad_probs is None else grad_probs + row
    if grad_probs is not None:
        dot = (grad_probs * probs).sum(1, keepdim=True)
        grad_logits = probs * (grad_probs - dot)
    else:
        grad_logits = torch.zeros_like(probs)
    if z_grad is not None:
        grad_logits = grad_logits.add_(z_grad.to(probs.dtype))
    if grad_scores is not None and not scores_given:
        grad_logits = grad_logits.add_(grad_scores)  # chosen by the logits
        grad_scores = None
    return grad_logits, grad_scores


def mixture_forward(
    x, logits, scores, config, params, sample_weight=None, reducer=None
):
    """Routing, balancing losses, dispatch, experts and mixing, without autograd.

    Parameters
    ----------
    x : torch.Tensor of shape (batch, in_features)
    logits : torch.Tensor of shape (batch, n_experts)
    scores : torch.Tensor of shape (batch, n_experts) or None
    config : tuple
        From :func:`mixture_config`.
    params : sequence of torch.Tensor
        The expert bank's weights, then its biases.
    sample_weight : torch.Tensor of shape (batch,) or None, default=None
        Row weights of the balancing statistics.
    reducer : callable or None, default=None
        Averages the balancing statistics over the ranks of a data-parallel fit
        (see :func:`~skmoe.nn.balancing_loss`).

    Returns
    -------
    out, aux_loss, load : torch.Tensor
        As :func:`fused_mixture` returns them.
    state : MixtureState
        For :func:`mixture_backward`.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import MixtureOfExperts
    >>> layer = MixtureOfExperts(4, 2, n_experts=3, top_k=2).train()
    >>> x = torch.randn(6, 4)
    >>> params = (*layer.experts.weights, *layer.experts.biases)
    >>> with torch.no_grad():
    ...     logits = layer.gate.router(x)
    ...     out, aux, load, state = mixture_forward(
    ...         x, logits, None, mixture_config(layer), params
    ...     )
    ...     grads = mixture_backward(state, torch.ones_like(out), torch.ones(()))
    >>> grads[1].shape, len(grads[3]) == len(params)
    (torch.Size([6, 3]), True)
    """
    k, lb_coef, z_coef, activation, min_dispatch, min_tiers = config
    n_rows, n_experts = logits.shape
    routed = route(logits, scores, k)
    probs, indices, weights = routed.probs, routed.indices, routed.weights
    dispatch = k is not None and n_rows * (n_experts - k) >= min_dispatch
    plan = plan_dispatch(indices, n_experts, min_tiers) if dispatch else None
    mix_weights = weights
    if k is not None and plan is None:
        mix_weights = routed.dense_weights()
    out, blocks, picked = _run_experts(x, mix_weights, plan, activation, params)

    # Pairs per expert: the dispatch counted them; the balancing loss and top-1
    # usage need them otherwise. Weighted rows count by their share of the batch.
    counts = plan.counts if plan is not None else None
    if counts is None and ((lb_coef and sample_weight is None) or k == 1):
        counts = pair_counts(routed.chosen, n_experts)
    aux = routing_losses(routed, counts, lb_coef, z_coef, sample_weight, reducer)
    if aux is None:
        aux = logits.new_zeros(
            (), dtype=torch.promote_types(probs.dtype, torch.float32)
        )

    # The combination weight each expert received, for the usage statistics.
    if k is None:
        load = probs.sum(0)
    elif k == 1:
        load = counts.to(probs.dtype)
    else:
        load = probs.new_zeros(n_experts).index_add_(
            0, indices.reshape(-1), weights.reshape(-1)
        )

    state = MixtureState()
    state.config, state.plan, state.blocks, state.params = config, plan, blocks, params
    state.routed, state.mix_weights, state.picked = routed, mix_weights, picked
    return out, aux, load, state


def mixture_backward(state, grad_out, grad_aux, need_x=False, scores_given=False):
    """Gradients of :func:`mixture_forward`'s inputs.

    Parameters
    ----------
    state : MixtureState
    grad_out : torch.Tensor of shape (batch, out_features)
    grad_aux : torch.Tensor
        A scalar: the gradient reaching the balancing loss.
    need_x : bool, default=False
        Whether to compute the input's gradient.
    scores_given : bool, default=False
        Whether the experts were chosen by separate ``scores`` (their gradient is
        then returned apart from the logits').

    Returns
    -------
    grad_x, grad_logits, grad_scores : torch.Tensor or None
    param_grads : tuple of torch.Tensor
        In the order of ``params``.
    """
    routed = state.routed
    grad_x, grad_mix, param_grads = _experts_backward(state, grad_out, need_x)
    grad_w = grad_mix
    if routed.k is not None and state.plan is None:
        grad_w = grad_mix.gather(1, routed.indices)
    grad_logits, grad_scores = routing_backward(routed, grad_w, grad_aux, scores_given)
    return grad_x, grad_logits, grad_scores, param_grads


class _FusedMixture(torch.autograd.Function):
    """:func:`mixture_forward` and :func:`mixture_backward` as an autograd node."""

    @staticmethod
    def forward(ctx, x, logits, scores, sample_weight, reducer, config, *params):
        out, aux, load, state = mixture_forward(
            x, logits, scores, config, params, sample_weight, reducer
        )
        ctx.mark_non_differentiable(load)
        # The rows, the parameters and the unmixed expert outputs (for top-1, the
        # output itself) go through save_for_backward: an in-place change to any of
        # them before backward is caught, and the node keeps no reference cycle
        # through its own output.
        picked, state.picked = state.picked, None
        ctx.state, ctx.scores_given = state, scores is not None
        ctx.save_for_backward(x, picked, *params)
        return out, aux, load

    @staticmethod
    def backward(ctx, grad_out, grad_aux, _grad_load):
        if torch.is_grad_enabled():  # backward(create_graph=True)
            raise RuntimeError(
                "The fused training pass of MixtureOfExperts has no second "
                "derivative. Set fused_training = False on the layer to build the "
                "pass from tensor operations, which double backward can follow."
            )
        state = ctx.state
        _, state.picked, *_ = ctx.saved_tensors  # checks nothing was modified
        try:
            grad_x, grad_logits, grad_scores, param_grads = mixture_backward(
                state,
                grad_out,
                grad_aux,
                need_x=ctx.needs_input_grad[0],
                scores_given=ctx.scores_given,
            )
        finally:
            state.picked = None
        return (grad_x, grad_logits, grad_scores, None, None, None, *param_grads)


def _run_experts(x, weights, plan, activation, params):
    """Expert outputs mixed by ``weights`` (``None``: top-1, all ones).

    Returns the output, each block's layer inputs ``(acts, experts)`` and the
    unmixed expert outputs the mixing gradient needs.
    """
    if plan is None:
        inputs = [(x.expand(params[0].shape[0], *x.shape), None)]
    else:
        inputs = plan.split(plan.fill(x))
    blocks, outs = [], []
    for block_in, experts in inputs:
        h, acts = bank_forward(block_in, params, activation, experts)
        blocks.append((acts, experts))
        outs.append(h)
    if plan is None:
        picked = outs[0]  # (n_experts, batch, out)
        return mix_experts(weights, picked), blocks, picked
    picked = plan.collect(outs)  # (batch * k, out)
    if weights is None:
        return picked, blocks, picked
    return mix_choices(weights, picked), blocks, picked


def bank_forward(inputs, params, activation, experts=None):
    """An expert bank's layers on ``inputs``, without autograd.

    Parameters
    ----------
    inputs : torch.Tensor of shape (n, rows, in_features)
        Expert ``e``'s rows at ``inputs[e]`` (``inputs[i]`` for ``experts[i]``).
    params : sequence of torch.Tensor
        The bank's weights, then its biases.
    activation : str
        The bank's activation (between layers; none after the last).
    experts : torch.Tensor of shape (n,) or None, default=None
        The experts to run; ``None`` for all.

    Returns
    -------
    out : torch.Tensor of shape (n, rows, out_features)
    acts : list of torch.Tensor
        Each layer's input, for :func:`bank_backward`.
    """
    n_layers = len(params) // 2
    ws = _chosen(params[:n_layers], experts)
    bs = _chosen(params[n_layers:], experts)
    act = ACTIVATIONS_IN_PLACE[activation]
    acts = [inputs]
    h = torch.baddbmm(bs[0].unsqueeze(1), inputs, ws[0])
    for w, b in zip(ws[1:], bs[1:], strict=True):
        h = act(h)
        acts.append(h)
        h = torch.baddbmm(b.unsqueeze(1), h, w)
    return h, acts


def bank_backward(
    acts, params, activation, grad, experts=None, totals=None, need_input=True
):
    """Gradients of :func:`bank_forward`'s parameters and of its input.

    Parameters
    ----------
    acts : list of torch.Tensor
        From :func:`bank_forward`.
    params : sequence of torch.Tensor
        The bank's weights, then its biases.
    activation : str
    grad : torch.Tensor of shape (n, rows, out_features)
        Gradient of the output.
    experts : torch.Tensor of shape (n,) or None, default=None
        As given to :func:`bank_forward`.
    totals : list or None, default=None
        Running parameter gradients of the whole bank (``None`` entries where
        none yet), added to in place; ``None`` starts a new list.

    Returns
    -------
    param_grads : list of torch.Tensor
        ``totals``, in the order of ``params``.
    grad_input : torch.Tensor of shape (n, rows, in_features)
    """
    n_layers = len(params) // 2
    layer_w = params[:n_layers]
    if totals is None:
        totals = [None] * (2 * n_layers)
    ws = _chosen(layer_w, experts)
    activation_grad = ACTIVATION_GRADS[activation]
    g = grad
    for layer in reversed(range(n_layers)):
        like = layer_w[layer]
        gw = torch.bmm(acts[layer].transpose(1, 2), g)
        totals[layer] = _accumulate(totals[layer], gw, experts, like)
        bias = n_layers + layer
        totals[bias] = _accumulate(totals[bias], g.sum(1), experts, like)
        if layer > 0:
            g = activation_grad(torch.bmm(g, ws[layer].transpose(1, 2)), acts[layer])
    if not need_input:
        return totals, None
    return totals, torch.bmm(g, ws[0].transpose(1, 2))


def mix_backward(weights, expert_out, grad):
    """Gradients of :func:`~skmoe.nn.experts.mix_experts`'s weights and outputs.

    Parameters
    ----------
    weights : torch.Tensor of shape (batch, n_experts)
    expert_out : torch.Tensor of shape (n_experts, batch, out_features)
    grad : torch.Tensor of shape (batch, out_features)
        Gradient of the mixture.

    Returns
    -------
    grad_weights : torch.Tensor of shape (batch, n_experts)
    grad_expert_out : torch.Tensor of shape (n_experts, batch, out_features)
    """
    g = grad.unsqueeze(0)
    return (expert_out * g).sum(-1).t(), g * weights.t().unsqueeze(-1)


def _experts_backward(state, grad_out, need_x):
    """Gradients of the input, the mixing weights and the expert parameters."""
    params, weights, picked = state.params, state.mix_weights, state.picked
    plan = state.plan
    if plan is None:
        grad_mix, block_grad = mix_backward(weights, picked, grad_out)
        block_grads = [block_grad]
    else:
        if weights is None:  # top-1: every weight is 1
            grad_picked = grad_out
            grad_mix = (grad_out * picked).sum(1, keepdim=True)
        else:
            n_rows, k = weights.shape
            g = grad_out.unsqueeze(1)
            grad_picked = (g * weights.unsqueeze(-1)).reshape(n_rows * k, -1)
            grad_mix = (g * picked.view(n_rows, k, -1)).sum(-1)
        grad_flat = grad_out.new_zeros(plan.n_slots, grad_out.shape[1])
        grad_flat.index_copy_(0, plan.slot, grad_picked)
        block_grads = [block for block, _ in plan.split(grad_flat)]
    activation = state.config[3]
    totals = None
    input_grads = []
    for (acts, experts), g in zip(state.blocks, block_grads, strict=True):
        totals, grad_in = bank_backward(
            acts, params, activation, g, experts, totals, need_x
        )
        input_grads.append(grad_in)
    grad_x = None
    if need_x:
        if plan is None:
            grad_x = input_grads[0].sum(0)
        else:
            per_choice = plan.collect(input_grads)  # (batch * k, in)
            grad_x = per_choice.view(grad_out.shape[0], -1, per_choice.shape[1]).sum(1)
    return grad_x, grad_mix, tuple(totals)


def _chosen(tensors, experts):
    if experts is None:
        return tensors
    return [t.index_select(0, experts) for t in tensors]


def _accumulate(total, grad, experts, like):
    """Add a block's parameter gradient to the running total of the whole bank."""
    if experts is None:
        return grad if total is None else total.add_(grad)
    if total is None:
        total = grad.new_zeros((like.shape[0], *grad.shape[1:]))
    return total.index_add_(0, experts, grad)
