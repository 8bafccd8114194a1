"""TrainingCurveDisplay: what a fitted estimator recorded at each epoch."""

import numpy as np

from ._common import import_pyplot, task_names, unwrap


def usage_entropy(usage):
    """Entropy of expert usage over ``log(n_experts)``: 1 is even use, 0 collapse.

    Parameters
    ----------
    usage : ndarray of shape (..., n_experts)
        Mean gate weights, summing to one over the last axis.

    Returns
    -------
    ndarray of shape (...)

    Examples
    --------
    >>> import numpy as np
    >>> usage_entropy(np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]]))
    array([1., 0.])
    """
    usage = np.asarray(usage, dtype=float)
    n_experts = usage.shape[-1]
    if n_experts < 2:
        return np.ones(usage.shape[:-1])
    logs = np.log(np.where(usage > 0, usage, 1.0))
    return np.abs((usage * logs).sum(axis=-1)) / np.log(n_experts)


class TrainingCurveDisplay:
    """Per-epoch training loss, validation score and expert-usage entropy.

    The loss is the training objective as the engine minimises it: the task loss
    plus the weighted balancing losses (skmoe does not record the balancing terms
    apart). The usage entropy (normalised, 1 = every expert used equally, 0 = one
    expert takes everything) shows a gate collapsing. Use :meth:`from_estimator`.

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Training loss per epoch.
    validation_scores : array-like of shape (n_epochs,) or None, default=None
        Validation score per epoch (early stopping).
    usage_entropy : array-like of shape (n_epochs,) or (n_epochs, n_tasks) or None, \
default=None
        Normalised entropy of the expert usage per epoch (and task).
    task_names : list of str or None, default=None
        Labels of the tasks of a 2-D ``usage_entropy``.

    Attributes
    ----------
    axes_ : ndarray of matplotlib Axes
        One panel per recorded quantity.
    ax_ : matplotlib Axes
        The first panel (the loss).
    figure_ : matplotlib Figure
        Figure containing the panels.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.inspection import TrainingCurveDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(max_iter=15, early_stopping=True,
    ...                                  random_state=0).fit(X, y)
    >>> display = TrainingCurveDisplay.from_estimator(clf)
    >>> len(display.axes_), len(display.loss_curve) == clf.n_iter_
    (3, True)
    """

    def __init__(
        self, loss_curve, *, validation_scores=None, usage_entropy=None, task_names=None
    ):
        self.loss_curve = np.asarray(loss_curve, dtype=float)
        self.validation_scores = (
            None if validation_scores is None else np.asarray(validation_scores, float)
        )
        self.usage_entropy = (
            None if usage_entropy is None else np.asarray(usage_entropy, float)
        )
        self.task_names = task_names

    @classmethod
    def from_estimator(cls, estimator, *, task_names=None, axes=None):
        """Plot what a fitted estimator recorded during training.

        Parameters
        ----------
        estimator : skmoe estimator or Pipeline ending in one
            Fitted estimator.
        task_names : list of str or None, default=None
            Labels of the tasks of a multi-gate estimator.
        axes : sequence of matplotlib Axes or None, default=None
            One Axes per panel (loss, validation score if recorded, usage entropy);
            ``None`` makes a new figure.

        Returns
        -------
        TrainingCurveDisplay
        """
        model, _ = unwrap(estimator, None, cls.__name__)
        curve = getattr(model, "expert_usage_curve_", None)
        entropy = None if not curve else usage_entropy(np.asarray(curve))
        display = cls(
            model.loss_curve_,
            validation_scores=model.validation_scores_,
            usage_entropy=entropy,
            task_names=task_names,
        )
        return display.plot(axes=axes)

    def plot(self, *, axes=None):
        """Draw one panel per recorded quantity, sharing the epoch axis.

        Parameters
        ----------
        axes : sequence of matplotlib Axes or None, default=None
            One Axes per panel; ``None`` makes a new figure.

        Returns
        -------
        TrainingCurveDisplay
            ``self``, with ``axes_``, ``ax_`` and ``figure_`` set.
        """
        panels = [("training loss", self.loss_curve)]
        if self.validation_scores is not None:
            panels.append(("validation score", self.validation_scores))
        if self.usage_entropy is not None:
            panels.append(("usage entropy", self.usage_entropy))
        if axes is None:
            _, axes = import_pyplot().subplots(
                len(panels), 1, sharex=True, squeeze=False
            )
            axes = axes[:, 0]
        elif len(axes) != len(panels):
            raise ValueError(
                f"TrainingCurveDisplay.plot needs {len(panels)} axes (one per panel: "
                f"{', '.join(name for name, _ in panels)}); got {len(axes)}."
            )
        self.axes_ = np.asarray(axes, dtype=object)
        self.ax_ = self.axes_[0]
        self.figure_ = self.ax_.figure
        n_epochs = len(self.loss_curve)
        for ax, (name, values) in zip(self.axes_, panels, strict=True):
            # A curve recorded only over the last fit calls ends at the last epoch.
            epochs = np.arange(n_epochs - len(values), n_epochs) + 1
            if values.ndim == 2:
                names = task_names(values.shape[1], self.task_names)
                for t in range(values.shape[1]):
                    ax.plot(epochs, values[:, t], label=names[t])
                ax.legend()
            else:
                ax.plot(epochs, values)
            ax.set_ylabel(name)
        self.axes_[-1].set_xlabel("epoch")
        return self
