"""Per-row training losses and validation scores for the output heads.

An objective turns the model's raw outputs ``(batch, n_outputs_total)`` and the targets
into one loss per row (weighted and averaged by the engine), and scores a validation
set (higher is better), all in torch.
"""

import torch
from torch.nn import functional as F


class MultiOutputCrossEntropy:
    """Softmax cross-entropy summed over outputs, each with its own number of classes.

    Targets are ``(batch, n_outputs)`` integer class codes. The validation score is
    the mean accuracy over outputs, as ``MLPClassifier`` reports for one output.
    """

    def __init__(self, n_classes):
        self.n_classes = [int(n) for n in n_classes]

    @property
    def n_outputs(self):
        """Width of the raw model output: one logit per class per output."""
        return sum(self.n_classes)

    def split(self, logits):
        return torch.split(logits, self.n_classes, dim=1)

    def row_loss(self, logits, targets):
        loss = None
        for j, chunk in enumerate(self.split(logits)):
            term = F.cross_entropy(chunk, targets[:, j], reduction="none")
            loss = term if loss is None else loss + term
        return loss

    def score(self, logits, targets, weights):
        correct = torch.stack(
            [
                chunk.argmax(1) == targets[:, j]
                for j, chunk in enumerate(self.split(logits))
            ],
            dim=1,
        ).to(weights.dtype)
        return float((correct.mean(1) * weights).sum() / weights.sum())


class MeanSquaredError:
    """Half squared error averaged over outputs; validation score is R² (uniform)."""

    def __init__(self, n_outputs):
        self.n_outputs = int(n_outputs)

    def row_loss(self, outputs, targets):
        return 0.5 * (outputs - targets).square().mean(1)

    def score(self, outputs, targets, weights):
        w = weights.unsqueeze(1)
        total = w.sum()
        mean = (targets * w).sum(0) / total
        residual = ((targets - outputs).square() * w).sum(0)
        spread = ((targets - mean).square() * w).sum(0)
        r2 = torch.where(spread > 0, 1 - residual / spread.clamp(min=1e-12), 0.0)
        return float(r2.mean())
