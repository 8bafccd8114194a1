"""ExpertUsageDisplay: the share of the rows' gate weight each expert receives."""

import numpy as np

from ._common import axes, grouped_bars, task_names, unwrap


class ExpertUsageDisplay:
    """Bar chart of expert usage: the mean gate weight per expert (per task).

    With ``top_k=1`` (and switch routing) this is the share of rows sent to each
    expert. Use :meth:`from_estimator` to build one from a fitted model.

    Parameters
    ----------
    usage : ndarray of shape (n_experts,) or (n_tasks, n_experts)
        Mean gate weight of each expert; one row per task for multi-gate models.
    expert_names : list of str or None, default=None
        Labels of the experts; ``None`` numbers them.
    task_names : list of str or None, default=None
        Labels of the tasks (2-D ``usage``); ``None`` numbers them.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the bars.
    figure_ : matplotlib Figure
        Figure containing the axes.

    See Also
    --------
    GateWeightsDisplay : The weights of individual rows.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.inspection import ExpertUsageDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(n_experts=4, top_k=1, max_iter=20,
    ...                                  random_state=0).fit(X, y)
    >>> display = ExpertUsageDisplay.from_estimator(clf, X)
    >>> display.usage.shape, round(float(display.usage.sum()), 6)
    ((4,), 1.0)
    """

    def __init__(self, usage, *, expert_names=None, task_names=None):
        self.usage = np.asarray(usage, dtype=float)
        self.expert_names = expert_names
        self.task_names = task_names

    @classmethod
    def from_estimator(
        cls, estimator, X=None, *, expert_names=None, task_names=None, ax=None
    ):
        """Plot a fitted estimator's expert usage.

        Parameters
        ----------
        estimator : skmoe estimator or Pipeline ending in one
            Fitted single- or multi-gate estimator.
        X : array-like of shape (n_samples, n_features) or None, default=None
            Rows to measure the usage on (the mean of :meth:`gate_weights`); ``None``
            shows ``expert_usage_``, the usage during the last training epoch.
        expert_names : list of str or None, default=None
            Labels of the experts.
        task_names : list of str or None, default=None
            Labels of the tasks of a multi-gate estimator.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.

        Returns
        -------
        ExpertUsageDisplay
        """
        model, X = unwrap(estimator, X, cls.__name__)
        if X is None:
            usage = np.asarray(model.expert_usage_)
        else:
            weights = model.gate_weights(X)
            usage = weights.mean(axis=0)
        return cls(usage, expert_names=expert_names, task_names=task_names).plot(ax=ax)

    def plot(self, *, ax=None):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.

        Returns
        -------
        ExpertUsageDisplay
            ``self``, with ``ax_`` and ``figure_`` set.
        """
        self.figure_, self.ax_ = axes(ax)
        usage = np.atleast_2d(self.usage)  # (n_tasks, n_experts)
        n_tasks, n_experts = usage.shape
        groups = None if self.usage.ndim == 1 else task_names(n_tasks, self.task_names)
        grouped_bars(self.ax_, usage.T, names=self.expert_names, groups=groups)
        self.ax_.axhline(1.0 / n_experts, color="grey", linestyle=":", linewidth=1)
        self.ax_.set_xlabel("expert")
        self.ax_.set_ylabel("mean gate weight")
        return self
