"""What every Display shares: lazy matplotlib, accepted estimators, axes, names."""

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

PLOT_EXTRA = 'plotting needs matplotlib: pip install "skmoe[plot]"'


def import_pyplot():
    """``matplotlib.pyplot``, or an ImportError naming the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"{PLOT_EXTRA} ({exc}).") from exc
    return plt


def axes(ax):
    """``(figure, ax)``: the given axes, or new ones."""
    if ax is None:
        _, ax = import_pyplot().subplots()
    else:
        import_pyplot()
    return ax.figure, ax


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
