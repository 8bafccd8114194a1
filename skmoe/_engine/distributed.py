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
* each epoch every rank takes the same number of steps: a shorter shard cycles through
  its rows again, as ``torch.utils.data.DistributedSampler`` pads.

The balancing losses' statistics (the fraction of rows routed to each expert, the
mean router probability, the router z-loss's mean) are averaged over the ranks at
every step, in one ``all_reduce`` per gate (:meth:`DataParallel.balancing_statistics`
installs the reducer on the layers), so the balancing losses and their gradients are
those of the global batch, as in a single process.
"""

import contextlib
import inspect

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

    def set_rows(self, n_rows):
        """Gather each rank's number of training rows; return the smallest."""
        sizes = [None] * self.world_size
        dist.all_gather_object(sizes, int(n_rows))
        self.rows_per_rank = sizes
        return min(sizes)

    def global_batch_weight(self, batch_size, sample_weight):
        """The expected weight of a global batch: every rank's batch of
        ``batch_size`` rows times the mean row weight over all ranks."""
        mean = self.weighted_mean(sample_weight.mean(), sample_weight.shape[0])
        return batch_size * self.world_size * mean

    # -- every step --------------------------------------------------------------------
    def epoch_order(self, order):
        """``order`` cycled to the largest shard's length, so every rank takes the
        same number of steps."""
        target = max(self.rows_per_rank)
        n = order.shape[0]
        if n == target:
            return order
        repeats = -(-target // n)
        return order.repeat(repeats)[:target]

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
