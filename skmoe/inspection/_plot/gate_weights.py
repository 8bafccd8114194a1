"""GateWeightsDisplay: each row's gate weights, rows grouped by class or target."""

import numpy as np
from sklearn.base import is_classifier

from ._common import axes, expert_names, is_multigate, unwrap


class GateWeightsDisplay:
    """Heat map of gate weights: rows by experts, rows grouped.

    Rows are sorted by group (a class, or a quantile bin of a regression target), so
    that experts specialising on a group show as a block. Use :meth:`from_estimator`.

    Parameters
    ----------
    weights : ndarray of shape (n_rows, n_experts)
        Gate weights of each row (one task's, for multi-gate models).
    groups : array-like of shape (n_rows,)
        Group label of each row; rows are drawn sorted by it.
    expert_names : list of str or None, default=None
        Labels of the experts; ``None`` numbers them.
    group_title : str, default="group"
        Label of the grouping axis.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the heat map.
    figure_ : matplotlib Figure
        Figure containing the axes.
    image_ : matplotlib AxesImage
        The heat map.

    See Also
    --------
    ExpertUsageDisplay : The weights averaged over rows.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.inspection import GateWeightsDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(n_experts=3, max_iter=20,
    ...                                  random_state=0).fit(X, y)
    >>> display = GateWeightsDisplay.from_estimator(clf, X, y)
    >>> display.weights.shape
    (150, 3)
    """

    def __init__(self, weights, groups, *, expert_names=None, group_title="group"):
        self.weights = np.asarray(weights, dtype=float)
        self.groups = np.asarray(groups)
        self.expert_names = expert_names
        self.group_title = group_title

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y=None,
        *,
        task=0,
        n_quantiles=4,
        max_rows=1000,
        expert_names=None,
        ax=None,
    ):
        """Plot the gate weights of a fitted estimator on ``X``.

        Parameters
        ----------
        estimator : skmoe estimator or Pipeline ending in one
            Fitted estimator with a gate.
        X : array-like of shape (n_samples, n_features)
            Rows to show.
        y : array-like of shape (n_samples,) or (n_samples, n_tasks) or None, \
default=None
            Targets to group the rows by; ``None`` groups by the predictions.
        task : int, default=0
            For multi-gate estimators, the task whose gate (and target) to show.
        n_quantiles : int, default=4
            Regression targets are grouped into this many quantile bins.
        max_rows : int, default=1000
            At most this many rows are drawn (evenly spaced after sorting).
        expert_names : list of str or None, default=None
            Labels of the experts.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.

        Returns
        -------
        GateWeightsDisplay
        """
        model, Xt = unwrap(estimator, X, cls.__name__, gated=True)
        weights = model.gate_weights(Xt)
        if y is None:
            y = estimator.predict(X)
        y = np.asarray(y)
        if is_multigate(model):
            weights = weights[:, task]
            if y.ndim == 2:
                y = y[:, task]
        elif y.ndim == 2:
            y = y[:, 0]
        if is_classifier(model):
            groups, title = y, "class"
        else:
            edges = np.quantile(y, np.linspace(0, 1, n_quantiles + 1)[1:-1])
            bins = np.digitize(y, edges)
            groups, title = bins, f"target quantile (of {n_quantiles})"
        order = np.argsort(groups, kind="stable")
        if len(order) > max_rows:
            order = order[np.linspace(0, len(order) - 1, max_rows).astype(int)]
        display = cls(
            weights[order], groups[order], expert_names=expert_names, group_title=title
        )
        return display.plot(ax=ax)

    def plot(self, *, ax=None, cmap="viridis"):
        """Draw the heat map.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.
        cmap : str, default="viridis"
            Colour map of the weights.

        Returns
        -------
        GateWeightsDisplay
            ``self``, with ``ax_``, ``figure_`` and ``image_`` set.
        """
        self.figure_, self.ax_ = axes(ax)
        order = np.argsort(self.groups, kind="stable")
        weights, groups = self.weights[order], self.groups[order]
        self.image_ = self.ax_.imshow(
            weights, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=1
        )
        self.figure_.colorbar(self.image_, ax=self.ax_, label="gate weight")
        n_experts = weights.shape[1]
        self.ax_.set_xticks(
            np.arange(n_experts), expert_names(n_experts, self.expert_names)
        )
        self.ax_.set_xlabel("expert")
        labels, starts = np.unique(groups, return_index=True)
        ends = np.append(starts[1:], len(groups))
        for start in starts[1:]:
            self.ax_.axhline(start - 0.5, color="white", linewidth=1)
        self.ax_.set_yticks((starts + ends - 1) / 2, [str(v) for v in labels])
        self.ax_.set_ylabel(self.group_title)
        return self
