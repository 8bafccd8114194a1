"""Where the rows of a batch go: the expert buffers of top-k dispatch.

Each (row, choice) pair is given a slot in an ``(n_experts, capacity, features)``
buffer, plus an overflow buffer for the few crowded experts when that pads fewer
slots. The plan is computed once per batch and used by both the forward pass and its
gradients.
"""

from typing import NamedTuple

import torch

from .thresholds import TIER_MIN_SAVED_SLOTS


class DispatchPlan(NamedTuple):
    """Where each (row, choice) pair goes in the expert buffers.

    Slots ``[0, n_experts * capacity)`` form one block of ``capacity`` rows per
    expert; the slots after them form one block of ``overflow_capacity`` rows per
    expert listed in ``overflow_experts``.

    Attributes
    ----------
    slot : torch.Tensor of shape (n_rows * k,)
        The slot of each row's ``j``-th choice, at position ``row * k + j``.
    counts : torch.Tensor of shape (n_experts,)
        Pairs sent to each expert.
    capacity : int
        Rows per expert in the main block.
    overflow_experts : torch.Tensor of shape (n_overflow,) or None
        Experts with a block in the overflow buffer.
    overflow_capacity : int
        Rows per expert in the overflow buffer.
    n_slots : int
        Slots in both buffers; those no pair fills hold zeros.
    """

    slot: torch.Tensor
    counts: torch.Tensor
    capacity: int
    overflow_experts: torch.Tensor | None
    overflow_capacity: int
    n_slots: int

    def fill(self, x):
        """The ``(n_slots, features)`` buffer of each pair's row (zeros elsewhere).

        Parameters
        ----------
        x : torch.Tensor of shape (n_rows, features)

        Returns
        -------
        torch.Tensor of shape (n_slots, features)
        """
        k = self.slot.shape[0] // max(x.shape[0], 1)
        if k > 1:  # one copy of each row per choice, in the order of ``slot``
            x = x.unsqueeze(1).expand(-1, k, -1).reshape(-1, x.shape[1])
        return x.new_zeros(self.n_slots, x.shape[1]).index_copy(0, self.slot, x)

    def split(self, flat):
        """Views of an ``(n_slots, width)`` tensor as the buffers' blocks.

        Returns
        -------
        list of (torch.Tensor, torch.Tensor or None)
            The main block ``(n_experts, capacity, width)`` with ``None`` (every
            expert), then, with an overflow buffer, its block
            ``(n_overflow, overflow_capacity, width)`` with ``overflow_experts``.
        """
        n_experts, width = self.counts.numel(), flat.shape[1]
        main = n_experts * self.capacity
        blocks = [(flat[:main].view(n_experts, self.capacity, width), None)]
        if self.overflow_experts is not None:
            extra = flat[main:].view(-1, self.overflow_capacity, width)
            blocks.append((extra, self.overflow_experts))
        return blocks

    def collect(self, blocks):
        """Each pair's row of the blocks' outputs, in the order of ``slot``.

        Parameters
        ----------
        blocks : list of torch.Tensor
            Per-block outputs, shaped as :meth:`split` returns the blocks.

        Returns
        -------
        torch.Tensor of shape (n_rows * k, width)
        """
        flat = [b.reshape(-1, b.shape[-1]) for b in blocks]
        flat = flat[0] if len(flat) == 1 else torch.cat(flat)
        return flat.index_select(0, self.slot)


def plan_dispatch(indices, n_experts, min_tier_savings=TIER_MIN_SAVED_SLOTS):
    """Assign each row's chosen experts to buffer slots.

    Parameters
    ----------
    indices : torch.Tensor of shape (n_rows, k)
        Each row's chosen experts.
    n_experts : int
        Number of experts.
    min_tier_savings : int, default=512
        Padded slots an overflow buffer must save to be used (see
        :func:`capacity_tiers`).

    Returns
    -------
    DispatchPlan

    Examples
    --------
    >>> import torch
    >>> plan = plan_dispatch(torch.tensor([[1], [0], [1]]), n_experts=2)
    >>> plan.capacity, plan.slot.tolist(), plan.counts.tolist()
    (2, [2, 0, 3], [1, 2])
    >>> rows = plan.fill(torch.tensor([[10.0], [20.0], [30.0]]))
    >>> rows.view(-1).tolist()
    [20.0, 0.0, 10.0, 30.0]
    >>> plan.collect([block for block, _ in plan.split(rows)]).view(-1).tolist()
    [10.0, 20.0, 30.0]
    """
    device = indices.device
    # Assignment a = row * k + j sends row a // k to expert flat_expert[a].
    flat_expert = indices.reshape(-1)
    order = torch.argsort(flat_expert, stable=True)  # assignments by expert
    expert_sorted = flat_expert.index_select(0, order)
    counts = torch.bincount(flat_expert, minlength=n_experts)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(order.numel(), device=device).sub_(
        starts.index_select(0, expert_sorted)
    )
    # The one host-device synchronisation of a step: the buffers' shapes depend on
    # how many rows each expert receives. Without it the capacity would have to be
    # fixed in advance, either dropping the rows beyond it (skmoe drops none) or
    # padding every expert to the whole batch, which computes as much as dense routing.
    tiers = capacity_tiers(counts.tolist(), min_tier_savings)
    capacity = tiers.capacity
    slot_sorted = torch.add(position, expert_sorted, alpha=capacity)
    n_slots = n_experts * capacity
    overflow = None
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
    # The slot of each assignment, in the rows' own order.
    slot = torch.empty_like(order).index_copy_(0, order, slot_sorted)
    return DispatchPlan(
        slot, counts, capacity, overflow, tiers.overflow_capacity, n_slots
    )


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
    largest = max(counts)
    if n_experts * largest - sum(counts) < max(min_savings, 1):
        # Even a layout without any padding would not save enough.
        return CapacityTiers(largest, (), 0)
    loads = sorted(counts, reverse=True)
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
