"""The mixture-of-experts layer: a gate, a bank of experts and their combination."""

from typing import NamedTuple

import torch
from torch import nn

from .experts import ExpertBank, mix_experts
from .gates import Gate
from .losses import balancing_loss

# Dispatching pays off once it saves this many expert-row evaluations (measured with
# benchmarks/speed.py on a CPU: 8 experts of 64 units, top-2, batch 256 saves 1536).
DISPATCH_MIN_SAVED_ROWS = 1024
# An overflow buffer for crowded experts pays off once it saves this many padded slots
# (same benchmark: 64 experts, top-2, 9% faster epochs; 16 and 32 experts, level).
TIER_MIN_SAVED_SLOTS = 512


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
        n_rows, k = routing.indices.shape
        n_experts = self.n_experts
        device = x.device
        # Assignment a = row * k + j sends row a // k to expert flat_expert[a].
        flat_expert = routing.indices.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)  # assignments by expert
        expert_sorted = flat_expert.index_select(0, order)
        counts = torch.bincount(flat_expert, minlength=n_experts)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(order.numel(), device=device).sub_(
            starts.index_select(0, expert_sorted)
        )
        tiers = capacity_tiers(counts.tolist(), self.min_tier_savings)
        capacity = tiers.capacity
        slot_sorted = torch.add(position, expert_sorted, alpha=capacity)
        n_slots = n_experts * capacity
        if tiers.overflow_experts:
            # Rows beyond the capacity go to an overflow buffer shared by the few
            # experts that receive them, so rare crowded experts do not pad every
            # other expert's block.
            overflow = torch.tensor(tiers.overflow_experts, device=device)
            rank = torch.full((n_experts,), -1, dtype=order.dtype, device=device)
            rank[overflow] = torch.arange(len(tiers.overflow_experts), device=device)
            overflow_slot = (
                n_slots
                + rank[expert_sorted] * tiers.overflow_capacity
                + (position - capacity)
            )
            slot_sorted = torch.where(position < capacity, slot_sorted, overflow_slot)
            n_slots += overflow.numel() * tiers.overflow_capacity
        # Which row fills each buffer slot; unused slots read row 0, and since their
        # outputs are never picked they get no gradient.
        source = torch.zeros(n_slots, dtype=order.dtype, device=device)
        row_sorted = order if k == 1 else torch.div(order, k, rounding_mode="floor")
        source.index_copy_(0, slot_sorted, row_sorted)
        # The slot of each assignment, in the rows' own order.
        slot = torch.empty_like(order).index_copy_(0, order, slot_sorted)
        rows = x.index_select(0, source)
        main = n_experts * capacity
        width = x.shape[1]
        blocks = []
        if capacity:
            blocks.append(self.experts(rows[:main].view(n_experts, capacity, width)))
        if tiers.overflow_experts:
            extra = rows[main:].view(-1, tiers.overflow_capacity, width)
            blocks.append(self.experts(extra, overflow))
        expert_out = [b.reshape(-1, b.shape[-1]) for b in blocks]
        expert_out = expert_out[0] if len(blocks) == 1 else torch.cat(expert_out)
        picked = expert_out.index_select(0, slot)
        if k == 1:
            return picked * routing.weights
        picked = picked.view(n_rows, k, -1)
        return (picked * routing.weights.unsqueeze(-1)).sum(1)

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


class CapacityTiers(NamedTuple):
    """How dispatched rows are laid out: a block per expert, plus an overflow.

    Every expert gets ``capacity`` slots; the experts listed in ``overflow_experts``
    get ``overflow_capacity`` more each, in a second buffer.
    """

    capacity: int
    overflow_experts: tuple
    overflow_capacity: int


def capacity_tiers(counts, min_savings=TIER_MIN_SAVED_SLOTS):
    """Choose the buffer layout that pads the fewest slots for these expert loads.

    One block per expert of the largest load pads every expert to the busiest one's
    size. With an overflow buffer, every expert's block holds ``capacity`` rows and
    the few busier experts put the rest in blocks of their own. The capacity that
    minimises the total number of slots is taken, provided it saves at least
    ``min_savings`` slots (the overflow costs a few more operations).

    Parameters
    ----------
    counts : list of int
        Rows routed to each expert.
    min_savings : int
        Slots the overflow buffer must save to be used.

    Returns
    -------
    CapacityTiers

    Examples
    --------
    >>> capacity_tiers([40, 3, 2, 5, 4, 1, 2, 3], min_savings=64)
    CapacityTiers(capacity=5, overflow_experts=(0,), overflow_capacity=35)
    >>> capacity_tiers([4, 3, 5, 4], min_savings=64)
    CapacityTiers(capacity=5, overflow_experts=(), overflow_capacity=0)
    """
    n_experts = len(counts)
    loads = sorted(counts, reverse=True)
    largest = loads[0]
    best_slots, best_capacity = n_experts * largest, largest
    for n_busier in range(1, n_experts):
        capacity = loads[n_busier]
        if capacity == loads[n_busier - 1]:
            continue  # ties: the busier experts start further down
        slots = n_experts * capacity + n_busier * (largest - capacity)
        if slots < best_slots:
            best_slots, best_capacity = slots, capacity
    if n_experts * largest - best_slots < max(min_savings, 1):
        return CapacityTiers(largest, (), 0)
    busier = tuple(e for e, count in enumerate(counts) if count > best_capacity)
    return CapacityTiers(best_capacity, busier, largest - best_capacity)
