"""The mixture-of-experts layer: a gate, a bank of experts and their combination."""

import torch
from torch import nn

from .dispatch import TIER_MIN_SAVED_SLOTS, plan_dispatch
from .experts import ExpertBank, mix_choices, mix_experts
from .fused import fused_mixture
from .gates import Gate
from .losses import balancing_loss

# Dispatching pays off once it saves this many expert-row evaluations (measured with
# benchmarks/speed.py on a CPU: 8 experts of 64 units, top-2, batch 256 saves 1536).
DISPATCH_MIN_SAVED_ROWS = 1024


class MixtureOfExperts(nn.Module):
    """Gate plus expert bank; each row's output is the gate-weighted sum of experts.

    With ``top_k=None`` every expert runs on every row. With ``top_k=k`` the rows are
    dispatched, in one vectorised gather, into an ``(n_experts, capacity, features)``
    buffer holding only the chosen (row, expert) pairs, so the expert compute grows with
    ``k`` rather than ``n_experts``. No row is ever dropped: each expert's block holds
    as many rows as the batch sends it, padded to a common capacity; when a few
    experts are much busier than the rest, their surplus rows go to an overflow buffer
    of their own (see :func:`capacity_tiers`) rather than padding every expert's
    block to the busiest one's size. For small batches, where the
    dispatch's fixed cost exceeds what it saves, every expert is computed and the
    unchosen ones get weight zero, which gives the same result.

    In training mode, with gradients on, the pass from router logits to output is
    one autograd node with written-out gradients (:func:`skmoe.nn.fused.fused_mixture`),
    equal in values and first derivatives to the same pass composed of tensor
    operations, and as fast or faster (an epoch of top-2 routing over 64 experts took
    0.92 of the time); set the attribute ``fused_training = False`` for the composed
    pass, which double backward can follow.

    In training mode the forward pass stores the weighted balancing loss in
    ``aux_loss``; add it to the task loss (:func:`skmoe.nn.auxiliary_loss` collects it
    from a whole model). The layer also accumulates, without synchronising the device,
    the gate weight each expert received (see :meth:`expert_usage`).

    Parameters
    ----------
    in_features : int
        Width of the input.
    out_features : int
        Width of the output.
    n_experts : int, default=4
        Number of experts.
    top_k : int or None, default=None
        Experts kept per row; ``None`` for dense routing.
    expert_hidden_layer_sizes : tuple of int, default=(32,)
        Hidden widths of each expert MLP.
    gating : {"softmax", "noisy", "switch"}, default="softmax"
        Routing scheme (see :class:`~skmoe.nn.Gate`).
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Expert non-linearity.
    load_balancing_coef : float, default=0.01
        Weight of :func:`~skmoe.nn.load_balancing_loss` in ``aux_loss``.
    router_z_loss_coef : float, default=0.001
        Weight of :func:`~skmoe.nn.router_z_loss` in ``aux_loss``.
    min_dispatch_savings : int, default=1024
        With ``top_k``, rows are dispatched only when that saves at least this many
        expert-row evaluations (``batch * (n_experts - k)``); smaller batches compute
        every expert, which is faster there and gives the same result. ``0`` always
        dispatches.

    Examples
    --------
    >>> import torch
    >>> layer = MixtureOfExperts(in_features=5, out_features=3, n_experts=8, top_k=2)
    >>> y = layer(torch.randn(16, 5))
    >>> y.shape, layer.aux_loss.ndim
    (torch.Size([16, 3]), 0)
    """

    # Padded slots an overflow buffer must save to be used (see capacity_tiers); a
    # class attribute, so that layers pickled before it existed still dispatch.
    min_tier_savings = TIER_MIN_SAVED_SLOTS
    # Train through skmoe.nn.fused's single autograd node (same values and
    # gradients); False composes the pass from tensor operations, which allows
    # double backward.
    fused_training = True

    def __init__(
        self,
        in_features,
        out_features,
        n_experts=4,
        top_k=None,
        expert_hidden_layer_sizes=(32,),
        gating="softmax",
        activation="relu",
        load_balancing_coef=0.01,
        router_z_loss_coef=0.001,
        min_dispatch_savings=DISPATCH_MIN_SAVED_ROWS,
    ):
        super().__init__()
        self.min_dispatch_savings = int(min_dispatch_savings)
        self.gate = Gate(in_features, n_experts, top_k=top_k, gating=gating)
        self.experts = ExpertBank(
            n_experts,
            in_features,
            out_features,
            hidden_layer_sizes=expert_hidden_layer_sizes,
            activation=activation,
        )
        self.load_balancing_coef = float(load_balancing_coef)
        self.router_z_loss_coef = float(router_z_loss_coef)
        self.aux_loss = None
        self.register_buffer("usage_sum", torch.zeros(n_experts), persistent=False)
        self.register_buffer("usage_rows", torch.zeros(()), persistent=False)

    @property
    def n_experts(self):
        return self.gate.n_experts

    def forward(self, x):
        """Mix the experts' outputs for a batch of shape ``(batch, in_features)``."""
        if self.training and self.fused_training and _fusable(x):
            return self._fused_forward(x)
        routing = self.gate(x)
        if (
            routing.indices is None
            or x.shape[0] == 0
            or self._dense_is_cheaper(x.shape[0], routing)
        ):
            expert_out = self.experts.forward_shared(x)
            out = mix_experts(routing.dense_weights(), expert_out)
        else:
            out = self._dispatch(x, routing)
        if self.training:
            # Plain attribute writes straight to __dict__: nn.Module.__setattr__ costs
            # microseconds per call, paid at every training step.
            self.__dict__["aux_loss"] = balancing_loss(
                routing, self.load_balancing_coef, self.router_z_loss_coef
            )
            self._record_usage(routing, x.shape[0])
        else:
            self.__dict__["aux_loss"] = None
        return out

    def _fused_forward(self, x):
        """The training pass as one autograd node (see :mod:`skmoe.nn.fused`)."""
        out, aux, load = fused_mixture(self, x, *self.gate.scores(x))
        balancing = self.load_balancing_coef or self.router_z_loss_coef
        self.__dict__["aux_loss"] = aux if balancing else None
        self._add_usage(load, x.shape[0])
        return out

    def _add_usage(self, load, n_rows):
        """Add a batch's per-expert combination weight to the usage statistics."""
        self.usage_sum.add_(load.to(self.usage_sum.dtype))
        self.usage_rows.add_(n_rows)

    def _dense_is_cheaper(self, n_rows, routing):
        """Whether computing every expert beats dispatching the chosen ones.

        Dispatch saves ``n_rows * (n_experts - k)`` expert evaluations but costs a
        fixed handful of sorting and gathering operations; below
        ``min_dispatch_savings`` saved rows the dense product wins. Both paths
        give the same outputs and gradients: unchosen experts have weight zero.
        """
        k = routing.indices.shape[1]
        return n_rows * (self.n_experts - k) < self.min_dispatch_savings

    def _record_usage(self, routing, n_rows):
        # add_ rather than +=: augmented assignment to a buffer goes through
        # nn.Module.__setattr__, which costs more than the addition.
        weights = routing.weights.detach().to(self.usage_sum.dtype)  # autocast
        if routing.indices is None:
            self.usage_sum.add_(weights.sum(0))
        else:
            self.usage_sum.index_add_(
                0, routing.indices.reshape(-1), weights.reshape(-1)
            )
        self.usage_rows.add_(n_rows)

    def _dispatch(self, x, routing):
        plan = plan_dispatch(routing.indices, self.n_experts, self.min_tier_savings)
        outs = [
            self.experts(rows, experts) for rows, experts in plan.split(plan.fill(x))
        ]
        return mix_choices(routing.weights, plan.collect(outs))

    def gate_weights(self, x):
        """Combination weights ``(batch, n_experts)``; rows sum to one.

        Computed as in the module's current mode (call ``eval()`` first for
        deterministic inference weights).
        """
        return self.gate(x).dense_weights()

    def reset_usage(self):
        """Zero the expert-usage accumulators."""
        self.usage_sum.zero_()
        self.usage_rows.zero_()

    def expert_usage(self):
        """Mean gate weight of each expert over the rows seen since :meth:`reset_usage`.

        Returns
        -------
        torch.Tensor of shape (n_experts,)
            Sums to one once any row was seen; all zeros before.
        """
        return self.usage_sum / self.usage_rows.clamp(min=1)


def _fusable(x):
    """Whether the fused training pass applies: grad on, a batch, no autocast."""
    if not torch.is_grad_enabled() or x.ndim != 2 or x.shape[0] == 0:
        return False
    device_type = x.device.type
    return device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(
        device_type
    )


def auxiliary_loss(module):
    """Sum the balancing losses stored by the mixture layers inside ``module``.

    Every submodule with a non-``None`` ``aux_loss`` attribute counts:
    :class:`MixtureOfExperts` and :class:`MultiGateMixtureOfExperts` store theirs there.

    Call it after a training-mode forward pass and add the result to the task loss.
    Each layer's stored loss is released as it is collected, so the module keeps no
    autograd graph alive between steps (and stays picklable and copyable).
    This is all a plain PyTorch loop, or a skorch ``NeuralNet.get_loss`` override,
    needs to train the layers with their balancing terms.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.Tensor
        A scalar (zero when no layer stored a loss).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(MixtureOfExperts(4, 2, n_experts=3))
    >>> model.train()(torch.randn(6, 4)).shape
    torch.Size([6, 2])
    >>> bool(auxiliary_loss(model) > 0)
    True
    >>> model[0].aux_loss is None
    True
    """
    total = collect_aux_losses(module.modules())
    if total is None:
        param = next(module.parameters(), None)
        device = param.device if param is not None else None
        return torch.zeros((), device=device)
    return total


def collect_aux_losses(modules):
    """Sum and release the balancing losses stored by ``modules``.

    The loop behind :func:`auxiliary_loss`, for callers that find the layers once and
    collect at every step (the training engine does).

    Parameters
    ----------
    modules : iterable of torch.nn.Module

    Returns
    -------
    torch.Tensor or None
        The sum; ``None`` when no module stored a loss.

    Examples
    --------
    >>> import torch
    >>> layer = MixtureOfExperts(4, 2, n_experts=3)
    >>> _ = layer.train()(torch.randn(6, 4))
    >>> collect_aux_losses([layer]).ndim, collect_aux_losses([layer])
    (0, None)
    """
    total = None
    for sub in modules:
        stored = sub.__dict__.get("aux_loss")  # a plain dict lookup, once per module
        if stored is not None:
            total = stored if total is None else total + stored
            sub.__dict__["aux_loss"] = None
    return total
