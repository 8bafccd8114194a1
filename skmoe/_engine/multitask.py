"""The objective of a model whose tasks differ in type, and the ways to weigh tasks.

:class:`MixedTaskObjective` composes one single-task objective per task (a
:class:`~skmoe._engine.objectives.MultiOutputCrossEntropy` of one output for a
classification task, a :class:`~skmoe._engine.objectives.MeanSquaredError` of one
output for a regression task): each task's loss and score has one definition, there.
What the composition adds is the order of the tasks' columns, the ESMM chains and the
task weighting.

Targets are one float tensor ``(batch, n_tasks)``: class codes of a classification task
as floats, standardised values of a regression task, NaN for a missing label.
"""

import torch
from torch import nn

from .objectives import MISSING_CLASS, MultiOutputCrossEntropy

GRADNORM_ALPHA = 1.5


def _codes(column):
    """Float class codes with NaN as missing -> int64 codes with MISSING_CLASS."""
    return column.nan_to_num(MISSING_CLASS).long()


def _positive_log_prob(chunk):
    """log p(positive class) of a binary task's two logits."""
    return torch.log_softmax(chunk, dim=1)[:, 1]


class MixedTaskObjective:
    """Per-task objectives side by side, with task weights and ESMM chains.

    Parameters
    ----------
    tasks : list
        One single-output objective per task, in the order of the model's towers.
    chains : dict of int to list of int, default=None
        For each chained (binary) task, its ancestors, nearest first. A chained task's
        tower models ``p(task | parent positive)``; its loss is the cross-entropy of the
        product of its and its ancestors' positive probabilities against "every one of
        them positive", over all rows (Ma et al., SIGIR 2018).
    weighting : FixedTaskWeights, UncertaintyWeights or GradNormWeights, default=None
        Combines the per-task row losses; ``None`` sums them.
    """

    def __init__(self, tasks, chains=None, weighting=None):
        self.tasks = list(tasks)
        self.chains = dict(chains or {})
        self.weighting = weighting if weighting is not None else FixedTaskWeights(None)
        self.task_widths = [task.n_outputs for task in self.tasks]
        if self.chains or not isinstance(self.weighting, FixedTaskWeights):
            # A chained task's loss and a learned weighting have no closed-form
            # gradient here: the engine trains through autograd.
            self.row_grad = None

    @property
    def n_outputs(self):
        """Width of the raw model output: the tasks' widths side by side."""
        return sum(self.task_widths)

    def split(self, outputs):
        return torch.split(outputs, self.task_widths, dim=1)

    def _is_classification(self, t):
        return isinstance(self.tasks[t], MultiOutputCrossEntropy)

    def task_row_losses(self, outputs, targets):
        """Each task's loss per row, ``(batch, n_tasks)``; zero where unlabelled."""
        chunks = self.split(outputs)
        columns = []
        for t, task in enumerate(self.tasks):
            if t in self.chains:
                columns.append(self._chained_loss(chunks, targets, t))
                continue
            target = targets[:, t : t + 1]
            if self._is_classification(t):
                target = _codes(target)
            columns.append(task.row_loss(chunks[t], target))
        return torch.stack(columns, dim=1)

    def _chained_loss(self, chunks, targets, t):
        members = [t, *self.chains[t]]
        log_p = sum(_positive_log_prob(chunks[m]) for m in members)
        labels = targets[:, members]
        negative = (labels == 0).any(dim=1)
        known = negative | ~torch.isnan(labels).any(dim=1)
        joint = (~negative).to(log_p.dtype)
        # log(1 - p) from log p without cancellation: log(-expm1(log p)).
        log_not = torch.log(-torch.expm1(log_p.clamp(max=-1e-7)))
        loss = -(joint * log_p + (1 - joint) * log_not)
        return torch.where(known, loss, torch.zeros_like(loss))

    def row_loss(self, outputs, targets, task_weights=None):
        """Each row's loss: the tasks' row losses, each times the row's weight for
        that task where ``task_weights`` ``(batch, n_tasks)`` is given, combined
        by the task weighting."""
        losses = self.task_row_losses(outputs, targets)
        if task_weights is not None:
            losses = losses * task_weights
        return self.weighting.combine(losses)

    def row_grad(self, outputs, targets):
        """The gradient of :meth:`row_loss` in closed form, with fixed task weights
        and no chains (``row_grad`` is ``None`` otherwise): each task's own
        ``row_grad`` times its weight."""
        weights = self.weighting.weights
        grads = []
        chunks = self.split(outputs)
        for t, (task, chunk) in enumerate(zip(self.tasks, chunks, strict=True)):
            target = targets[:, t : t + 1]
            if self._is_classification(t):
                target = _codes(target)
            grad = task.row_grad(chunk, target)
            grads.append(grad if weights is None else grad.mul_(weights[t]))
        return torch.cat(grads, dim=1)

    def _score_targets(self, targets, t):
        """Task ``t``'s validation labels; a chained task is scored where its
        parent is positive, as its prediction is conditional on that."""
        target = targets[:, t : t + 1]
        if t in self.chains:
            parent = targets[:, self.chains[t][0] : self.chains[t][0] + 1]
            target = torch.where(parent == 1, target, torch.nan)
        return _codes(target) if self._is_classification(t) else target

    def task_scores(self, outputs, targets, weights):
        """Each task's validation score: accuracy or R², as the task's objective."""
        chunks = self.split(outputs)
        return [
            task.score(chunks[t], self._score_targets(targets, t), weights)
            for t, task in enumerate(self.tasks)
        ]

    def score(self, outputs, targets, weights):
        scores = self.task_scores(outputs, targets, weights)
        return float(sum(scores) / len(scores))


class FixedTaskWeights:
    """Fixed task weights: the loss is ``sum_t w_t L_t`` (``w = 1`` when ``None``)."""

    def __init__(self, weights):
        self.weights = None if weights is None else [float(w) for w in weights]

    def combine(self, losses):
        if self.weights is None:
            return losses.sum(1)
        return losses @ losses.new_tensor(self.weights)

    def current(self, n_tasks):
        """The weights in use, a list of floats."""
        return [1.0] * n_tasks if self.weights is None else list(self.weights)

    def state(self):
        """What a saved model keeps of the weighting, a list of floats."""
        return []

    def load_state(self, values):
        """Restore :meth:`state`."""


class UncertaintyWeights(nn.Module):
    """Learned homoscedastic uncertainty per task (Kendall et al., CVPR 2018).

    With ``s_t = log sigma_t^2`` learned along the network, the loss is
    ``sum_t exp(-s_t) L_t + s_t / 2``: a classification task's cross-entropy and a
    regression task's half squared error (on the standardised scale) are the
    likelihoods of the paper's equations 7 and 10. The task weight is ``exp(-s_t)``.
    """

    def __init__(self, n_tasks):
        super().__init__()
        self.log_variance = nn.Parameter(torch.zeros(n_tasks))

    def combine(self, losses):
        s = self.log_variance.to(losses.dtype)
        return losses @ torch.exp(-s) + 0.5 * s.sum()

    def current(self, n_tasks):
        return torch.exp(-self.log_variance.detach()).cpu().double().tolist()

    def state(self):
        return self.log_variance.detach().cpu().double().tolist()

    def load_state(self, values):
        with torch.no_grad():
            self.log_variance.copy_(torch.as_tensor(values, dtype=torch.float32))


class GradNormWeights:
    """Task weights that balance gradient norms (Chen et al., ICML 2018).

    At every training step, ``g_t`` is the norm of the gradient of task ``t``'s
    batch loss with respect to ``shared`` (the last shared expert layer) and ``r_t``
    the task's loss relative to its first batch, over the mean of those ratios. The
    weights move, by their own Adam step of size ``learning_rate``, to reduce
    ``sum_t |w_t g_t - mean(w g) r_t ** alpha|`` (the target held constant, as in the
    paper), and are renormalised to sum to the number of tasks. A task that trains
    slower than the others gains weight. The statistics use the batch's unweighted
    mean losses.
    """

    def __init__(self, n_tasks, learning_rate=1e-3, alpha=GRADNORM_ALPHA):
        self.weights = torch.ones(n_tasks)
        self.initial_losses = torch.full((n_tasks,), torch.nan)
        self.learning_rate = float(learning_rate)
        self.alpha = float(alpha)
        self.shared = None

    def bind(self, shared):
        """Measure gradient norms at the parameter ``shared`` (a fresh Adam)."""
        self.shared = shared
        self.weights = nn.Parameter(self.weights.detach().to(shared.device))
        self.initial_losses = self.initial_losses.to(shared.device)
        self._optimizer = torch.optim.Adam([self.weights], lr=self.learning_rate)

    def __getstate__(self):
        # The bound parameter belongs to the model; fit binds it again.
        state = dict(self.__dict__)
        state["shared"] = None
        state.pop("_optimizer", None)
        state["weights"] = self.weights.detach().clone()
        return state

    def combine(self, losses):
        if self.shared is not None and losses.requires_grad:
            self._update(losses)
        return losses @ self.weights.detach().to(losses.dtype)

    def _update(self, losses):
        batch = losses.mean(0)
        norms = []
        for t in range(batch.shape[0]):
            grad = None
            if batch[t].requires_grad:
                (grad,) = torch.autograd.grad(
                    batch[t], self.shared, retain_graph=True, allow_unused=True
                )
            norms.append(
                batch.new_zeros(()) if grad is None else torch.linalg.vector_norm(grad)
            )
        norms = torch.stack(norms).detach().to(self.weights.dtype)
        batch = batch.detach().to(self.weights.dtype)
        unset = torch.isnan(self.initial_losses)
        if unset.any():
            self.initial_losses = torch.where(unset, batch, self.initial_losses)
        ratio = batch / self.initial_losses.clamp(min=1e-12)
        relative = ratio / ratio.mean().clamp(min=1e-12)
        weighted_norms = self.weights.detach() * norms
        target = weighted_norms.mean() * relative.pow(self.alpha)
        # d/dw_t |w_t g_t - target_t| = sign(w_t g_t - target_t) g_t
        self.weights.grad = torch.sign(weighted_norms - target) * norms
        self._optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(self.weights.shape[0] / self.weights.sum())

    def current(self, n_tasks):
        return self.weights.detach().cpu().double().tolist()

    def state(self):
        return self.current(None)

    def load_state(self, values):
        self.weights = torch.as_tensor(values, dtype=torch.float32)
