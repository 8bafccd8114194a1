"""ExpertImportanceDisplay: what each expert is worth, from an importance Bunch."""

import numpy as np

from ._common import axes, grouped_bars, task_names, unwrap

_KEYS = ("importances_mean", "importances_std")


class ExpertImportanceDisplay:
    """Horizontal bars of each expert's importance with its standard deviation.

    Reads results shaped like :func:`sklearn.inspection.permutation_importance`'s
    (``importances_mean``, ``importances_std``), as
    ``skmoe.inspection.expert_importance`` returns. Use :meth:`from_result` or
    :meth:`from_estimator`.

    Parameters
    ----------
    importances_mean : ndarray of shape (n_experts,) or (n_experts, n_tasks)
        Importance of each expert (per task for multi-gate models).
    importances_std : ndarray of the same shape or None, default=None
        Their standard deviations, drawn as error bars.
    expert_names : list of str or None, default=None
        Labels of the experts; ``None`` numbers them.
    task_names : list of str or None, default=None
        Labels of the tasks (2-D importances); ``None`` numbers them.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the bars.
    figure_ : matplotlib Figure
        Figure containing the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn.utils import Bunch
    >>> from skmoe.inspection import ExpertImportanceDisplay
    >>> result = Bunch(importances_mean=np.array([0.3, 0.1, 0.05]),
    ...                importances_std=np.zeros(3),
    ...                importances=np.array([[0.3], [0.1], [0.05]]))
    >>> display = ExpertImportanceDisplay.from_result(result)
    >>> len(display.ax_.patches)
    3
    """

    def __init__(
        self,
        importances_mean,
        importances_std=None,
        *,
        expert_names=None,
        task_names=None,
    ):
        self.importances_mean = np.asarray(importances_mean, dtype=float)
        self.importances_std = (
            None if importances_std is None else np.asarray(importances_std, float)
        )
        self.expert_names = expert_names
        self.task_names = task_names

    @classmethod
    def from_result(cls, result, *, expert_names=None, task_names=None, ax=None):
        """Plot an importance result.

        Parameters
        ----------
        result : Bunch or dict
            With ``importances_mean`` and ``importances_std`` as
            :func:`sklearn.inspection.permutation_importance` returns them.
        expert_names : list of str or None, default=None
            Labels of the experts.
        task_names : list of str or None, default=None
            Labels of the tasks.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.

        Returns
        -------
        ExpertImportanceDisplay
        """
        missing = [key for key in _KEYS if key not in result]
        if missing:
            raise TypeError(
                "ExpertImportanceDisplay.from_result accepts a Bunch shaped like "
                "permutation_importance's (importances_mean, importances_std); "
                f"missing {missing}."
            )
        mean = np.asarray(result["importances_mean"], dtype=float)
        std = np.asarray(result["importances_std"], dtype=float)
        if mean.ndim not in (1, 2) or std.shape != mean.shape:
            raise ValueError(
                "importances_mean must be 1-D or 2-D and importances_std of the same "
                f"shape; got {mean.shape} and {std.shape}."
            )
        display = cls(mean, std, expert_names=expert_names, task_names=task_names)
        return display.plot(ax=ax)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        method="shapley",
        expert_names=None,
        task_names=None,
        ax=None,
        **kwargs,
    ):
        """Compute ``skmoe.inspection.expert_importance`` and plot it.

        Parameters
        ----------
        estimator : skmoe estimator or Pipeline ending in one
            Fitted estimator with a gate.
        X : array-like of shape (n_samples, n_features)
            Rows to score on.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their targets.
        method : str, default="shapley"
            The importance measure (see ``expert_importance``).
        expert_names : list of str or None, default=None
            Labels of the experts.
        task_names : list of str or None, default=None
            Labels of the tasks.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.
        **kwargs : dict
            Passed on to ``expert_importance``.

        Returns
        -------
        ExpertImportanceDisplay
        """
        model, Xt = unwrap(estimator, X, cls.__name__, gated=True)
        try:
            from .._importance import expert_importance
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "ExpertImportanceDisplay.from_estimator needs "
                "skmoe.inspection.expert_importance, which this skmoe lacks; compute "
                "a permutation_importance-shaped Bunch and use from_result."
            ) from exc
        result = expert_importance(model, Xt, y, method=method, **kwargs)
        return cls.from_result(
            result, expert_names=expert_names, task_names=task_names, ax=ax
        )

    def plot(self, *, ax=None):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` makes a new figure.

        Returns
        -------
        ExpertImportanceDisplay
            ``self``, with ``ax_`` and ``figure_`` set.
        """
        self.figure_, self.ax_ = axes(ax)
        mean = self.importances_mean.reshape(len(self.importances_mean), -1)
        std = None
        if self.importances_std is not None:
            std = self.importances_std.reshape(mean.shape)
        n_tasks = mean.shape[1]
        grouped_bars(
            self.ax_,
            mean,
            errors=std,
            names=self.expert_names,
            groups=None if n_tasks == 1 else task_names(n_tasks, self.task_names),
            horizontal=True,
        )
        self.ax_.axvline(0, color="grey", linewidth=1)
        self.ax_.set_ylabel("expert")
        self.ax_.set_xlabel("importance")
        return self
