"""What every Display shares: lazy matplotlib, accepted estimators, axes, names."""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..._optional import import_optional


def import_pyplot():
    """``matplotlib.pyplot``, or an ImportError naming the extra to install."""
    return import_optional("matplotlib.pyplot", extra="plot", feature="Plotting")


def axes(ax):
    """``(figure, ax)``: the given axes, or new ones."""
    if ax is None:
        _, ax = import_pyplot().subplots()
    else:
        import_pyplot()
    return ax.figure, ax


def grouped_bars(ax, values, *, errors=None, names=None, groups=None, horizontal=False):
    """One bar per item, side by side for each group (task); a legend for groups.

    ``values`` (and ``errors``) are ``(n_items, n_groups)``; ``groups`` labels the
    columns (``None``: one unlabelled group).
    """
    n_items, n_groups = values.shape
    positions = np.arange(n_items)
    size = 0.8 / n_groups
    draw = ax.barh if horizontal else ax.bar
    for j in range(n_groups):
        extra = (
            {} if errors is None else {"xerr" if horizontal else "yerr": errors[:, j]}
        )
        draw(
            positions + (j - (n_groups - 1) / 2) * size,
            values[:, j],
            size,
            label=None if groups is None else groups[j],
            **extra,
        )
    set_ticks = ax.set_yticks if horizontal else ax.set_xticks
    set_ticks(positions, expert_names(n_items, names))
    if groups is not None:
        ax.legend()


def _skmoe_estimators():
    from ... import (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
    )

    return (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
    )


def unwrap(estimator, X, display, gated=False):
    """The fitted skmoe estimator (the last step of a Pipeline) and ``X`` as it sees it.

    Raises a TypeError naming what ``display`` accepts for anything else, and for
    a model without a gate when ``gated`` is required.
    """
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    accepted = _skmoe_estimators()
    if not isinstance(final, accepted):
        names = ", ".join(cls.__name__ for cls in accepted)
        raise TypeError(
            f"{display}.from_estimator accepts a fitted skmoe estimator ({names}) or a "
            f"Pipeline ending in one; got {type(final).__name__}."
        )
    check_is_fitted(final)
    if gated and getattr(final, "architecture", None) == "shared_bottom":
        raise TypeError(
            f"{display}.from_estimator needs a model with gates; "
            "architecture='shared_bottom' has none."
        )
    if X is not None and isinstance(estimator, Pipeline):
        X = estimator[:-1].transform(X)
    return final, X


def is_multigate(estimator):
    return hasattr(estimator, "architecture")


def task_names(n_tasks, names=None):
    return list(names) if names is not None else [f"task {t}" for t in range(n_tasks)]


def expert_names(n_experts, names=None):
    return list(names) if names is not None else [f"{e}" for e in range(n_experts)]
