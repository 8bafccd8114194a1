"""The training loop: epochs of index-sliced batches, Adam, balancing losses,
stopping rules, best-weight restoration and divergence detection.

It knows modules, tensors and objectives, not estimators: the estimator layer hands it
row sources and a configuration and reads back a :class:`TrainingHistory`.
"""

import contextlib
import inspect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..nn.layer import collect_aux_losses
from .progress import EpochProgress
from .seeding import permutation_generator


class TrainingDivergedError(ValueError):
    """Raised when the training loss stops being finite."""


@dataclass
class TrainingConfig:
    """What one call to :func:`train` does."""

    max_epochs: int
    batch_size: int
    tol: float = 1e-4
    n_iter_no_change: int = 10
    early_stopping: bool = False
    shuffle: bool = True
    verbose: int = 0
    # ``score(outputs, targets, weights)`` in place of the objective's validation score.
    validation_score: Callable | None = None
    # Adam's step size: ``learning_rate_init`` throughout ("constant"), or decayed
    # from it towards zero along half a cosine over ``max_epochs`` epochs ("cosine").
    # ``None`` leaves the optimizer's step size as it is.
    learning_rate: float | None = None
    learning_rate_schedule: str = "constant"


@dataclass
class TrainingHistory:
    """Curves and stopping state, carried across calls for warm starts.

    Attributes mirror ``MLPClassifier``'s: ``loss_curve``, ``validation_scores``,
    ``best_loss``, ``best_validation_score`` and the no-improvement counter.
    """

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    no_improvement_count: int = 0
    n_iter: int = 0
    converged: bool = False


@dataclass
class Batches:
    """Rows, targets and sample weights that share a row order.

    ``uniform_weights`` (computed when not given) says every row weighs the same, so
    a batch's loss is a plain mean and the weights need not be gathered.
    ``task_weights`` ``(n_rows, n_tasks)``, where given, weighs each task's loss
    row by row relative to the row's weight (the objective's ``row_loss`` takes
    them as ``task_weights``); such a fit steps through autograd.
    """

    rows: object
    targets: torch.Tensor
    weights: torch.Tensor
    uniform_weights: bool | None = None
    task_weights: torch.Tensor | None = None

    def __post_init__(self):
        if self.uniform_weights is None:
            w = self.weights
            self.uniform_weights = bool(w.numel() == 0 or (w == w[0]).all())

    def __len__(self):
        return len(self.rows)


def run_epoch(
    module,
    objective,
    optimizer,
    data,
    batch_size,
    generator,
    shuffle=True,
    parallel=None,
):
    """One pass over ``data``; returns the weighted mean loss as a 0-d tensor.

    The loss stays on the device until the caller reads it, so there is no host
    synchronisation per batch. ``parallel`` (a
    :class:`~skmoe._engine.distributed.DataParallel`) makes the pass one rank's part
    of a data-parallel epoch: ``batch_size`` is then the global batch, every rank
    takes the same number of steps, a single process's number on the rows of all
    ranks, each with its share of the step's rows
    (:meth:`~skmoe._engine.distributed.DataParallel.step_bounds`), and each rank's
    loss is scaled so that the gradients averaged over the ranks are those of the
    global batch's weighted mean loss; the returned loss is then this rank's part of
    the epoch's loss, whose mean over the ranks is the epoch's loss.
    """
    module.train()
    n_rows = len(data)
    device = data.targets.device
    if shuffle:
        order = torch.randperm(n_rows, generator=generator).to(device)
    else:
        order = torch.arange(n_rows, device=device)
    forward = module
    uniform = data.uniform_weights
    if parallel is None:
        cuts = [*range(0, n_rows, batch_size), n_rows]
        divisors = None
    else:
        bounds = parallel.step_bounds(batch_size)
        cuts = bounds[parallel.rank]
        uniform = parallel.uniform_weights
        ordered = None if uniform else data.weights.index_select(0, order)
        divisors = parallel.step_divisors(bounds, ordered, data.weights)
        divisors = divisors.clamp(min=torch.finfo(divisors.dtype).tiny)
    total = torch.zeros((), dtype=data.weights.dtype, device=device)
    tiny = torch.finfo(data.weights.dtype).tiny
    # The layers that store a balancing loss, found once rather than by walking
    # every submodule at every step.
    holders = [sub for sub in module.modules() if "aux_loss" in sub.__dict__]
    # The module's own written-out step, where it has one and the objective's
    # gradient has a closed form; else autograd (through DistributedDataParallel in
    # a data-parallel fit, wrapped at the first autograd step).
    fast_step = getattr(module, "training_step", None)
    if getattr(objective, "row_grad", None) is None or data.task_weights is not None:
        fast_step = None
    weighs_rows = accepts_sample_weight(module)
    if parallel is not None:
        params = list(module.parameters())
    for step, (start, stop) in enumerate(itertools.pairwise(cuts)):
        index = order[start:stop]
        x = data.rows.take(index)
        y = data.targets.index_select(0, index)
        w = None
        if uniform:
            batch_weight = index.shape[0]
        else:
            w = data.weights.index_select(0, index)
            batch_weight = w.sum()
        # What the batch's summed loss is divided by: its weight, or in a
        # data-parallel fit the global batch's weight over the number of ranks.
        divisor = None if divisors is None else divisors[step]
        loss = None
        if fast_step is not None:
            if divisor is not None:
                w_total = divisor
            else:
                w_total = batch_weight if w is None else batch_weight.clamp(min=tiny)
            grads = task_loss_and_grad(
                objective, y, w, w_total, by_rows=divisor is None
            )
            loss = fast_step(x, grads, w)
            if loss is None:  # the module has no written-out step: autograd
                fast_step = None
            elif parallel is not None:  # no autograd, so no DDP hooks: reduce here
                parallel.average_gradients(params)
        if loss is None:
            if parallel is not None and forward is module:
                forward = parallel.forward_module(module)
            out = forward(x, sample_weight=w) if weighs_rows else forward(x)
            if data.task_weights is None:
                row_loss = objective.row_loss(out, y)
            else:
                task_weights = data.task_weights.index_select(0, index)
                row_loss = objective.row_loss(out, y, task_weights=task_weights)
            if divisor is not None:
                summed = row_loss.sum() if w is None else (row_loss * w).sum()
                task = summed / divisor
            elif w is None:
                task = row_loss.mean()
            else:
                task = (row_loss * w).sum() / batch_weight.clamp(min=tiny)
            aux = collect_aux_losses(holders)
            loss = task if aux is None else task + aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        if divisor is not None:  # this rank's part of the step's mean loss
            total.add_(loss.detach() * divisor)
        elif uniform:
            total.add_(loss.detach(), alpha=batch_weight)
        else:
            total.addcmul_(loss.detach(), batch_weight)
    if divisors is not None:
        return total / divisors.sum().clamp(min=tiny)
    if uniform:
        return total / max(n_rows, 1)
    return total / data.weights.sum().clamp(min=tiny)


def task_loss_and_grad(objective, targets, weights, batch_weight, by_rows=True):
    """The ``loss_and_grad`` callable a module's ``training_step`` takes.

    It maps a batch's outputs to the sample-weighted mean of ``objective.row_loss``
    and that mean's gradient, from ``objective.row_grad``: the summed (weighted) row
    losses divided by ``batch_weight``, or, for unweighted rows with ``by_rows``, by
    the batch's number of rows (a plain mean).
    """

    def loss_and_grad(out):
        row_loss = objective.row_loss(out, targets)
        row_grad = objective.row_grad(out, targets)
        if weights is None:
            if by_rows:
                return row_loss.mean(), row_grad.div_(out.shape[0])
            return row_loss.sum() / batch_weight, row_grad.div_(batch_weight)
        scale = weights / batch_weight
        return torch.dot(row_loss, scale), row_grad.mul_(scale.unsqueeze(1))

    return loss_and_grad


def accepts_sample_weight(module):
    """Whether ``module``'s forward takes ``sample_weight`` for its balancing losses."""
    try:
        return "sample_weight" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def evaluate(module, objective, data, batch_size, score=None):
    """Validation score of ``module`` on ``data`` (higher is better): ``score(outputs,
    targets, weights)``, by default the objective's own."""
    module.eval()
    outputs = torch.cat(
        [
            module(
                data.rows.take(
                    torch.arange(
                        s, min(s + batch_size, len(data)), device=data.targets.device
                    )
                )
            )
            for s in range(0, len(data), batch_size)
        ]
    )
    score = objective.score if score is None else score
    return float(score(outputs, data.targets, data.weights))


def train(
    module,
    objective,
    optimizer,
    train_data,
    config,
    history,
    seed,
    valid_data=None,
    callbacks=(),
    parallel=None,
):
    """Train ``module`` for up to ``config.max_epochs`` epochs.

    Stops early, as ``MLPClassifier`` does, once the training loss (or, with
    ``early_stopping``, the validation score) has not improved by ``tol`` for
    ``n_iter_no_change`` consecutive epochs; with early stopping the best weights are
    restored. Each callback's ``on_epoch_begin(epoch)`` and
    ``on_epoch_end(epoch, history)`` are called around each epoch. With
    ``parallel`` (a :class:`~skmoe._engine.distributed.DataParallel`), each rank
    trains on its own rows, the balancing losses are computed from the statistics of
    the global batch, and the losses, validation scores and usage statistics are
    reduced over the ranks, so that all of them stop at the same epoch.

    Raises
    ------
    TrainingDivergedError
        If an epoch's loss is not finite; the weights from before that epoch are
        restored first. The optimizer's moments are then unreliable: build a new one
        before training further.
    """
    generator = permutation_generator(seed)
    if parallel is not None:  # each rank shuffles its rows in its own order
        generator = parallel.own_generator(generator)
    best_state = None
    if config.early_stopping and valid_data is None:
        raise ValueError("early_stopping needs validation data.")
    balancing = contextlib.nullcontext()
    if parallel is not None:  # balancing statistics averaged over the ranks
        balancing = parallel.balancing_statistics(module)
    with balancing, EpochProgress(config.max_epochs, config.verbose) as progress:
        for i in range(config.max_epochs):
            _set_step_size(optimizer, config, i)
            epoch = history.n_iter + 1
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            before = _snapshot(module)
            loss = float(
                run_epoch(
                    module,
                    objective,
                    optimizer,
                    train_data,
                    config.batch_size,
                    generator,
                    config.shuffle,
                    parallel,
                )
            )
            if parallel is not None:  # the mean of the ranks' parts
                loss = parallel.weighted_mean(loss, 1.0)
                parallel.sum_usage(module)
            if not math.isfinite(loss):
                module.load_state_dict(before)
                raise TrainingDivergedError(
                    f"Training diverged at epoch {epoch}: the loss became {loss}. The "
                    "weights from before that epoch were kept. Try a smaller "
                    "learning_rate_init, scale the features, or raise alpha."
                )
            history.n_iter = epoch
            history.loss_curve.append(loss)
            stop = _update_stopping(
                module, objective, history, config, loss, valid_data, parallel
            )
            if stop == "improved":
                best_state = _snapshot(module)
            progress.update(history)
            for callback in callbacks:
                callback.on_epoch_end(epoch, history)
            if history.no_improvement_count > config.n_iter_no_change:
                history.converged = True
                break
    if config.early_stopping and best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


def _set_step_size(optimizer, config, i):
    """Set the step size of the ``i``-th epoch of this call (see TrainingConfig)."""
    if config.learning_rate is None:
        return
    lr = config.learning_rate
    if config.learning_rate_schedule == "cosine":
        lr *= 0.5 * (1.0 + math.cos(math.pi * i / config.max_epochs))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _snapshot(module):
    """A detached copy of the module's weights and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _update_stopping(module, objective, history, config, loss, valid_data, parallel):
    if config.early_stopping:
        score = evaluate(
            module,
            objective,
            valid_data,
            max(config.batch_size, 4096),
            config.validation_score,
        )
        if parallel is not None:
            score = parallel.weighted_mean(score, valid_data.weights.sum())
        history.validation_scores.append(score)
        improved = score > history.best_validation_score
        if score < history.best_validation_score + config.tol:
            history.no_improvement_count += 1
        else:
            history.no_improvement_count = 0
        if improved:
            history.best_validation_score = score
            return "improved"
        return None
    if loss > history.best_loss - config.tol:
        history.no_improvement_count += 1
    else:
        history.no_improvement_count = 0
    if loss < history.best_loss:
        history.best_loss = loss
    return None


@torch.no_grad()
def infer(module, chunks, n_rows, fn=None):
    """Run ``module`` in eval mode over an iterable of input tensors.

    ``fn(module, x)`` replaces the plain forward pass when given (for example to
    read gate weights). Each chunk's output is copied into one CPU tensor of
    ``n_rows`` rows, allocated once: no list of chunk outputs and no final
    concatenation, which would double the peak memory (and fragment the heap).
    """
    if module.training:  # eval() walks every submodule: skip it when already set
        module.eval()
    result = None
    start = 0
    for x in chunks:
        out = module(x) if fn is None else fn(module, x)
        if result is None:
            result = torch.empty((n_rows, *out.shape[1:]), dtype=out.dtype)
        result[start : start + out.shape[0]].copy_(out)
        start += out.shape[0]
    if result is None:
        raise ValueError("infer needs at least one chunk of rows.")
    return result
