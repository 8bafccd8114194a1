"""Data-parallel training across the ranks of a ``torch.distributed`` process group.

When a fit runs inside an initialised process group of two or more ranks (as under
``torchrun``), each rank passes its own shard of the rows. :class:`DataParallel` is the
glue the trainer and the estimators call at a handful of points:

* before training, every rank's facts (number of features, parameters, row counts,
  target summaries) or its validation error are gathered, so that a disagreement or a
  bad shard raises the same ``ValueError`` on every rank instead of leaving the others
  waiting in a collective;
* during training, autograd steps run through
  :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU),
  which averages the gradients; the closed-form step, which bypasses autograd and so
  DDP's hooks, averages its gradients with one ``all_reduce`` of a flat buffer;
* every epoch, the training loss, the validation score and the expert-usage
  statistics are reduced, so every rank takes the same stopping decision and reports
  the same curves;
* ``batch_size`` is the global batch: an epoch has the steps of a single process on
  the rows of all ranks, and each step takes from every rank its share of the step's
  rows (:meth:`DataParallel.step_bounds`), so every row is used once an epoch
  whatever the ranks' row counts; each rank divides its batch's summed loss by the
  global batch's weight over the number of ranks
  (:meth:`DataParallel.step_divisors`), so that the averaged gradients are those of
  the global batch's weighted mean loss. More ranks, the same steps, the same model.

The balancing losses' statistics (the fraction of rows routed to each expert, the
mean router probability, the router z-loss's mean) are averaged over the ranks at
every step, in one ``all_reduce`` per gate (:meth:`DataParallel.balancing_statistics`
installs the reducer on the layers), so the balancing losses and their gradients are
those of the global batch, as in a single process.
"""

import contextlib
import inspect
from fractions import Fraction

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

# Usage buffers are per rank until the epoch's reduction: not synchronised at every
# forward pass (they are all zero when DDP is built, so the sync at init is harmless).
_LOCAL_BUFFERS = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def interleaved_counts(rows, end):
    """How many of each rank's rows are among the first ``end`` rows of all.

    The rows of every rank are interleaved in proportion to their numbers: rank
    ``r``'s ``i``-th row of ``rows[r]`` sits at ``(2 i + 1) / (2 rows[r])``, ties in
    rank order. The counts sum to ``end`` exactly and grow with it, and each is
    within one row of ``end * rows[r] / sum(rows)``.

    Examples
    --------
    >>> [interleaved_counts([9, 3], end) for end in (4, 8, 12)]
    [[3, 1], [6, 2], [9, 3]]
    >>> [interleaved_counts([117, 3], end) for end in (32, 64, 96)]
    [[31, 1], [62, 2], [94, 2]]
    """
    total = sum(rows)
    # Every row at or before end / total: within half a row per rank of ``end``.
    counts = [min(n, (2 * end * n + total) // (2 * total)) for n in rows]
    excess = sum(counts) - end
    while excess < 0:  # take the earliest row not yet counted
        ranks = [r for r, n in enumerate(rows) if counts[r] < n]
        r = min(ranks, key=lambda r: (Fraction(2 * counts[r] + 1, 2 * rows[r]), r))
        counts[r] += 1
        excess += 1
    while excess > 0:  # give back the latest row counted
        ranks = [r for r in range(len(rows)) if counts[r] > 0]
        r = max(ranks, key=lambda r: (Fraction(2 * counts[r] - 1, 2 * rows[r]), r))
        counts[r] -= 1
        excess -= 1
    return counts


class RanksDisagreeError(ValueError):
    """Raised on every rank when a rank failed or the ranks disagree."""


@contextlib.contextmanager
def ranks_agree(parallel, what):
    """Run the block on every rank; if it fails on any, raise on every one.

    ``parallel`` is a :class:`DataParallel` or ``None`` (then the block just runs).
    """
    if parallel is None:
        yield
        return
    try:
        yield
    except Exception as exc:
        parallel.fail(exc, what)
        raise
    parallel.agree({}, None, what)


def data_parallel_group():
    """A :class:`DataParallel` for the current process group, or ``None``.

    ``None`` when ``torch.distributed`` is unavailable, not initialised, or has a
    single rank: the fit is then an ordinary one.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if dist.get_world_size() < 2:
        return None
    return DataParallel()


class DataParallel:
    """Collective operations of one data-parallel fit over the default group."""

    def __init__(self):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.rows_per_rank = None
        self._bounds = {}
        self._wrapped = None
        # nccl reduces CUDA tensors only; gloo takes CPU tensors.
        if dist.get_backend() == "nccl":
            self._device = torch.device("cuda", torch.cuda.current_device())
        else:
            self._device = torch.device("cpu")

    # -- before training ---------------------------------------------------------------
    def agree(self, facts, error, what):
        """Gather every rank's ``facts`` (or its ``error``) and check they agree.

        Parameters
        ----------
        facts : dict or None
            Picklable facts that must be equal on every rank; keys starting with
            ``"local_"`` may differ and are only gathered.
        error : Exception or None
            The error this rank met while validating its shard.
        what : str
            The call being made, for messages (``"MixtureOfExpertsClassifier.fit"``).

        Returns
        -------
        list of dict
            Every rank's facts, by rank.

        Raises
        ------
        ValueError
            On every rank, when any rank failed or the ranks disagree.
        """
        message = None if error is None else f"{type(error).__name__}: {error}"
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, (message, facts))
        failures = [
            f"rank {rank}: {msg}" for rank, (msg, _) in enumerate(gathered) if msg
        ]
        if failures:
            raise RanksDisagreeError(
                f"{what} in a process group of {self.world_size} ranks failed on "
                + "; ".join(failures)
            ) from error
        all_facts = [f for _, f in gathered]
        first = all_facts[0]
        for rank, facts in enumerate(all_facts[1:], start=1):
            for key, value in first.items():
                if key.startswith("local_") or facts.get(key) == value:
                    continue
                other = facts.get(key)
                if isinstance(value, dict) and isinstance(other, dict):
                    # Name the entries that differ, not the whole dictionary.
                    key = ", ".join(k for k in value if value[k] != other.get(k))
                    value = {k: v for k, v in value.items() if other.get(k) != v}
                    other = {k: other.get(k) for k in value}
                raise RanksDisagreeError(
                    f"{what} in a process group: the ranks disagree on {key} (rank 0: "
                    f"{value!r}, rank {rank}: {other!r}). Every rank must build the "
                    "same estimator and pass rows with the same columns."
                )
        return all_facts

    def check_rows(self, n_rows, what):
        """Refuse an empty shard with a message that says so (on this rank; the
        others learn of it from :meth:`fail`)."""
        if n_rows == 0:
            raise ValueError(
                f"{what} in a process group: rank {self.rank} passed no rows. Give "
                "every rank a shard of at least one row."
            )

    def check_batch_size(self, batch_size, name):
        """Refuse a global batch with fewer rows than there are ranks."""
        if batch_size != "auto" and batch_size < self.world_size:
            raise ValueError(
                f"{name}: batch_size={batch_size} is the global batch of a "
                f"data-parallel fit over {self.world_size} ranks; give it at least "
                f"one row per rank (batch_size >= {self.world_size})."
            )

    def fail(self, error, what):
        """Share this rank's ``error`` at the next :meth:`agree` the other ranks
        reach, so that they raise too; then raise a ``ValueError`` naming the rank."""
        if isinstance(error, RanksDisagreeError):
            return  # raised by a collective: every rank knows already
        self.agree(None, error, what)

    def broadcast(self, value):
        """Rank 0's ``value`` (a picklable object), on every rank."""
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def set_rows(self, train_data):
        """Gather each rank's number of training rows and whether its rows weigh
        alike; return the number of training rows of all ranks together.

        The rows weigh alike over the whole fit (:attr:`uniform_weights`) when every
        rank's rows weigh the same one value: the steps' batches are then counted in
        rows, as a single process counts them.
        """
        weights = train_data.weights
        same = None
        if train_data.uniform_weights:
            same = float(weights[0]) if weights.numel() else None
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, (len(train_data), same))
        self.rows_per_rank = [n for n, _ in gathered]
        self._bounds = {}
        values = {value for n, value in gathered if n}
        self.uniform_weights = len(values) == 1 and None not in values
        return sum(self.rows_per_rank)

    def global_batch_weight(self, batch_size, sample_weight):
        """The expected weight of a global batch: ``batch_size`` rows times the
        mean row weight over all ranks."""
        mean = self.weighted_mean(sample_weight.mean(), sample_weight.shape[0])
        return batch_size * mean

    def own_generator(self, generator):
        """A generator of this rank's own, seeded from ``generator`` (seeded alike
        on every rank): the ranks shuffle their rows independently, so that a
        step's rows are as random a draw of all the rows as a single process's."""
        seeds = torch.randint(2**62, (self.world_size,), generator=generator)
        own = torch.Generator()
        own.manual_seed(int(seeds[self.rank]))
        return own

    # -- every epoch's steps -----------------------------------------------------------
    def step_bounds(self, batch_size):
        """Where every rank's epoch order is cut into its batches, one per step.

        ``batch_size`` is the global batch. The ranks' rows are interleaved in
        proportion to their numbers, rank ``r``'s ``i``-th row (of ``n_r``) taking
        its place at ``(i + 1/2) / n_r`` of the way through the epoch (ties in rank
        order); that global order of all ``n`` rows is cut as a single process cuts
        its rows: ``ceil(n / batch_size)`` steps of ``batch_size`` rows, the last
        one what is left. Each rank's ``j``-th batch is then its rows among the
        global step's: every row is used once an epoch, every step's batch has the
        single process's size, each rank's share of it is its share of the rows to
        within one row, and a rank with few rows has an empty batch at some steps.
        Exact integer arithmetic: every rank computes every rank's cuts alike.

        Returns
        -------
        list of list of int
            By rank, the ``ceil(n / batch_size) + 1`` positions in its epoch order
            where its batches begin (and the last one ends).
        """
        if batch_size not in self._bounds:
            total = sum(self.rows_per_rank)
            ends = [*range(0, total, batch_size), total]
            per_end = [interleaved_counts(self.rows_per_rank, end) for end in ends]
            self._bounds[batch_size] = [list(c) for c in zip(*per_end, strict=True)]
        return self._bounds[batch_size]

    def step_divisors(self, bounds, weights, like):
        """Each step's global batch weight divided by the number of ranks.

        A rank divides its batch's summed (weighted) loss by this, so that the
        gradients averaged over the ranks are those of the global batch's weighted
        mean loss, however a step's rows are spread over the ranks. ``bounds`` are
        every rank's :meth:`step_bounds`; ``weights`` this rank's row weights in its
        epoch order, or ``None`` when the rows weigh alike (the divisors are then
        counted in rows, from ``bounds``, with no communication). The result is a
        1-d tensor of ``like``'s dtype and device, one entry per step.
        """
        if weights is None:
            rows = torch.tensor(bounds, dtype=torch.float64).diff(dim=1).sum(0)
            return rows.div_(self.world_size).to(like.device, like.dtype)
        mine = bounds[self.rank]
        sizes = torch.tensor(mine).diff()
        step = torch.repeat_interleave(torch.arange(sizes.shape[0]), sizes)
        sums = torch.zeros(sizes.shape[0], dtype=torch.float64)
        sums.index_add_(0, step, weights.detach().cpu().double())
        sums = sums.to(self._device)
        dist.all_reduce(sums)
        return sums.div_(self.world_size).to(like.device, like.dtype)

    def forward_module(self, module):
        """``module`` wrapped in ``DistributedDataParallel`` (built once per fit)."""
        if self._wrapped is None or self._wrapped.module is not module:
            device = next(module.parameters()).device
            device_ids = [device] if device.type == "cuda" else None
            self._wrapped = DistributedDataParallel(
                module, device_ids=device_ids, **_LOCAL_BUFFERS
            )
        return self._wrapped

    def mean_over_ranks(self, tensor):
        """The mean of every rank's ``tensor`` (1-d, float), in one ``all_reduce``;
        the balancing losses' reducer (see :func:`skmoe.nn.balancing_loss`)."""
        reduced = tensor.to(self._device)
        dist.all_reduce(reduced)
        return reduced.div_(self.world_size).to(tensor.device)

    @contextlib.contextmanager
    def balancing_statistics(self, module):
        """Within the block, the layers of ``module`` average their balancing
        statistics over the ranks; afterwards they balance their own batches again
        (and keep no reference to the process group, so they pickle)."""
        layers = [
            sub for sub in module.modules() if hasattr(type(sub), "balancing_reducer")
        ]
        for layer in layers:
            layer.balancing_reducer = self.mean_over_ranks
        try:
            yield
        finally:
            for layer in layers:
                layer.__dict__.pop("balancing_reducer", None)

    def average_gradients(self, params):
        """Average ``.grad`` of ``params`` over the ranks, in one ``all_reduce``."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    # -- every epoch -------------------------------------------------------------------
    def weighted_mean(self, value, weight):
        """The mean of every rank's ``value``, weighted by its ``weight``."""
        pair = torch.tensor(
            [float(value) * float(weight), float(weight)],
            dtype=torch.float64,
            device=self._device,
        )
        dist.all_reduce(pair)
        return float(pair[0] / pair[1].clamp(min=torch.finfo(pair.dtype).tiny))

    def sum_usage(self, module):
        """Sum every layer's expert-usage accumulators over the ranks."""
        for sub in module.modules():
            for name in ("usage_sum", "usage_rows"):
                buffer = getattr(sub, name, None)
                if isinstance(buffer, torch.Tensor):
                    dist.all_reduce(buffer)
