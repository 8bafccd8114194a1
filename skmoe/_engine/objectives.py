"""Per-row training losses and validation scores for the output heads.

An objective turns the model's raw outputs ``(batch, n_outputs_total)`` and the targets
into one loss per row (weighted and averaged by the engine), and scores a validation
set (higher is better), all in torch. The protocol is :class:`Objective`; see
``docs/design.md`` for adding one.
"""

import torch

from ..nn.rowwise import cross_entropy_rows, softmax_rows

MISSING_CLASS = -1


def _weights(output_weights, n_outputs, like):
    if output_weights is None:
        return like.new_ones(n_outputs)
    return torch.as_tensor(output_weights, dtype=like.dtype, device=like.device)


class Objective:
    """What the engine needs from an objective.

    ``row_loss`` is the one definition of the loss; everything else follows it:

    * ``n_outputs``: the width of the model's raw output.
    * ``row_loss(outputs, targets)``: each row's loss, shape ``(batch,)``, from
      differentiable torch operations. Autograd trains through it; the engine
      averages it with the sample weights.
    * ``row_grad(outputs, targets)``: the gradient of ``row_loss(outputs,
      targets).sum()`` with respect to ``outputs``, in closed form; ``row_grad =
      None`` where there is none (then every step goes through autograd). It lets a
      module's ``training_step`` skip autograd; ``tests/test_fused.py`` checks it
      against autograd of ``row_loss`` in float64 and float32 for every objective
      and routing.
    * ``score(outputs, targets, weights)``: a validation score, higher is better.
    """

    n_outputs: int

    def row_loss(self, outputs, targets):
        """Each row's loss, ``(batch,)``."""
        raise NotImplementedError

    # Objectives without a closed-form gradient leave this None.
    row_grad = None

    def score(self, outputs, targets, weights):
        """A validation score of ``outputs``; higher is better."""
        raise NotImplementedError


class MultiOutputCrossEntropy(Objective):
    """Softmax cross-entropy summed over outputs, each with its own number of classes.

    Targets are ``(batch, n_outputs)`` integer class codes; ``MISSING_CLASS`` (-1) marks
    a missing label, which adds nothing to that output's loss. ``output_weights``
    scales each output's term. With ``label_smoothing`` ``e``, each present label's
    target is ``1 - e`` on its class plus ``e / n_classes`` on every class. The
    validation score is the mean accuracy over the labels present, as
    ``MLPClassifier`` reports for one output.
    """

    def __init__(self, n_classes, output_weights=None, label_smoothing=0.0):
        self.n_classes = [int(n) for n in n_classes]
        self.output_weights = output_weights
        self.label_smoothing = float(label_smoothing)

    def _smoothed(self, chunk, target, term):
        """``term`` (each row's cross-entropy) with the smoothing part mixed in."""
        e = self.label_smoothing
        uniform = torch.logsumexp(chunk, 1) - chunk.mean(1)  # CE against 1/n_classes
        present = (target != MISSING_CLASS).to(chunk.dtype)
        return (1.0 - e) * term + e * uniform * present

    @property
    def n_outputs(self):
        """Width of the raw model output: one logit per class per output."""
        return sum(self.n_classes)

    def split(self, logits):
        return torch.split(logits, self.n_classes, dim=1)

    def row_loss(self, logits, targets, task_weights=None):
        """Each row's loss; ``task_weights`` ``(batch, n_outputs)``, where given,
        weighs each output's term row by row."""
        smooth = self.label_smoothing > 0
        plain = self.output_weights is None and task_weights is None
        if len(self.n_classes) == 1 and plain and not smooth:
            # The common case, in the fewest autograd nodes: no split, no weighting.
            return cross_entropy_rows(logits, targets[:, 0], MISSING_CLASS)
        weights = _weights(self.output_weights, len(self.n_classes), logits)
        loss = None
        for j, chunk in enumerate(self.split(logits)):
            term = cross_entropy_rows(chunk, targets[:, j], MISSING_CLASS)
            if smooth:
                term = self._smoothed(chunk, targets[:, j], term)
            term = term * weights[j]
            if task_weights is not None:
                term = term * task_weights[:, j]
            loss = term if loss is None else loss + term
        return loss

    def row_grad(self, logits, targets):
        """The gradient of :meth:`row_loss` in closed form.

        For each output, ``softmax(logits) - onehot(target)`` (zero for a missing
        label; the one-hot smoothed by ``label_smoothing``), scaled by the output's
        weight.
        """
        e = self.label_smoothing
        weights = None
        if self.output_weights is not None:
            weights = _weights(self.output_weights, len(self.n_classes), logits)
        chunks = [logits] if len(self.n_classes) == 1 else self.split(logits)
        grads = []
        for j, chunk in enumerate(chunks):
            target = targets[:, j : j + 1]
            present = (target != MISSING_CLASS).to(chunk.dtype)
            grad = softmax_rows(chunk)
            if e > 0:
                grad.sub_(e / chunk.shape[1])
            grad = grad.scatter_add(1, target.clamp(min=0), -(1.0 - e) * present)
            grad.mul_(present)
            if weights is not None:
                grad.mul_(weights[j])
            grads.append(grad)
        return grads[0] if len(grads) == 1 else torch.cat(grads, dim=1)

    def score(self, logits, targets, weights):
        present = (targets != MISSING_CLASS).to(weights.dtype)
        correct = torch.stack(
            [
                chunk.argmax(1) == targets[:, j]
                for j, chunk in enumerate(self.split(logits))
            ],
            dim=1,
        ).to(weights.dtype)
        w = weights.unsqueeze(1) * present
        return float((correct * w).sum() / w.sum().clamp(min=1e-12))


class MeanSquaredError(Objective):
    """Half squared error averaged over outputs; validation score is R² (uniform).

    NaN targets are missing values: they add nothing to the loss and are left out of
    the score. ``output_weights`` scales each output's term.
    """

    def __init__(self, n_outputs, output_weights=None):
        self.n_outputs = int(n_outputs)
        self.output_weights = output_weights

    def row_loss(self, outputs, targets, task_weights=None):
        """Each row's loss; ``task_weights`` ``(batch, n_outputs)``, where given,
        weighs each output's term row by row."""
        present = ~torch.isnan(targets)
        diff = torch.where(present, outputs - targets.nan_to_num(), 0.0)
        weights = _weights(self.output_weights, self.n_outputs, outputs)
        squared = diff.square() * weights
        if task_weights is not None:
            squared = squared * task_weights
        return 0.5 * squared.mean(1)

    def row_grad(self, outputs, targets):
        """The gradient of :meth:`row_loss`: the weighted residual over n_outputs."""
        present = ~torch.isnan(targets)
        diff = torch.where(present, outputs - targets.nan_to_num(), 0.0)
        weights = _weights(self.output_weights, self.n_outputs, outputs)
        return diff.mul_(weights).div_(self.n_outputs)

    def score(self, outputs, targets, weights):
        present = ~torch.isnan(targets)
        t = targets.nan_to_num()
        w = weights.unsqueeze(1) * present
        total = w.sum(0).clamp(min=1e-12)
        mean = (t * w).sum(0) / total
        residual = ((t - outputs).square() * w).sum(0)
        spread = ((t - mean).square() * w).sum(0)
        r2 = torch.where(spread > 0, 1 - residual / spread.clamp(min=1e-12), 0.0)
        return float(r2.mean())
