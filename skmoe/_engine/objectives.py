"""Per-row training losses and validation scores for the output heads.

An objective turns the model's raw outputs ``(batch, n_outputs_total)`` and the targets
into one loss per row (weighted and averaged by the engine), and scores a validation
set (higher is better), all in torch.
"""

import torch

from ..nn.rowwise import cross_entropy_rows, log_softmax_rows

MISSING_CLASS = -1


def _weights(output_weights, n_outputs, like):
    if output_weights is None:
        return like.new_ones(n_outputs)
    return torch.as_tensor(output_weights, dtype=like.dtype, device=like.device)


class MultiOutputCrossEntropy:
    """Softmax cross-entropy summed over outputs, each with its own number of classes.

    Targets are ``(batch, n_outputs)`` integer class codes; ``MISSING_CLASS`` (-1) marks
    a missing label, which adds nothing to that output's loss. ``output_weights``
    scales each output's term. The validation score is the mean accuracy over the
    labels present, as ``MLPClassifier`` reports for one output.
    """

    def __init__(self, n_classes, output_weights=None):
        self.n_classes = [int(n) for n in n_classes]
        self.output_weights = output_weights

    @property
    def n_outputs(self):
        """Width of the raw model output: one logit per class per output."""
        return sum(self.n_classes)

    def split(self, logits):
        return torch.split(logits, self.n_classes, dim=1)

    def row_loss(self, logits, targets):
        if len(self.n_classes) == 1 and self.output_weights is None:
            # The common case, in the fewest autograd nodes: no split, no weighting.
            return cross_entropy_rows(logits, targets[:, 0], MISSING_CLASS)
        weights = _weights(self.output_weights, len(self.n_classes), logits)
        loss = None
        for j, chunk in enumerate(self.split(logits)):
            term = cross_entropy_rows(chunk, targets[:, j], MISSING_CLASS)
            term = term * weights[j]
            loss = term if loss is None else loss + term
        return loss

    def row_loss_and_grad(self, logits, targets):
        """:meth:`row_loss` and its gradient with respect to ``logits``, in closed form.

        The gradient of a row's cross-entropy is ``softmax(logits) - onehot(target)``
        (zero for a missing label), scaled by the output's weight.
        """
        weights = None
        if self.output_weights is not None:
            weights = _weights(self.output_weights, len(self.n_classes), logits)
        chunks = [logits] if len(self.n_classes) == 1 else self.split(logits)
        loss, grads = None, []
        for j, chunk in enumerate(chunks):
            target = targets[:, j : j + 1]
            present = (target != MISSING_CLASS).to(chunk.dtype)
            target = target.clamp(min=0)
            log_probs = log_softmax_rows(chunk)
            term = log_probs.gather(1, target).mul_(present).neg_().view(-1)
            grad = log_probs.exp().scatter_add_(1, target, present.neg())
            grad.mul_(present)
            if weights is not None:
                term, grad = term * weights[j], grad.mul_(weights[j])
            loss = term if loss is None else loss + term
            grads.append(grad)
        return loss, grads[0] if len(grads) == 1 else torch.cat(grads, dim=1)

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


class MeanSquaredError:
    """Half squared error averaged over outputs; validation score is R² (uniform).

    NaN targets are missing values: they add nothing to the loss and are left out of
    the score. ``output_weights`` scales each output's term.
    """

    def __init__(self, n_outputs, output_weights=None):
        self.n_outputs = int(n_outputs)
        self.output_weights = output_weights

    def row_loss(self, outputs, targets):
        present = ~torch.isnan(targets)
        diff = torch.where(present, outputs - targets.nan_to_num(), 0.0)
        weights = _weights(self.output_weights, self.n_outputs, outputs)
        return 0.5 * (diff.square() * weights).mean(1)

    def row_loss_and_grad(self, outputs, targets):
        """:meth:`row_loss` and its gradient with respect to ``outputs``."""
        present = ~torch.isnan(targets)
        diff = torch.where(present, outputs - targets.nan_to_num(), 0.0)
        weighted = diff * _weights(self.output_weights, self.n_outputs, outputs)
        loss = 0.5 * (weighted * diff).mean(1)
        return loss, weighted.div_(self.n_outputs)

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
