"""JSON forms of the fitted state the estimators hand to :mod:`skmoe.persistence`.

Each estimator says what it fitted through one method pair,
``_fitted_state()`` / ``_restore_fitted_state(state)`` (``skmoe/_base.py``, with the
target handling's part in ``_classification.py`` and ``_regression.py``); these
helpers turn the values into JSON and back, accepting only plain numbers, strings and
arrays of them.
"""

import math

import numpy as np

from ._engine import TrainingHistory

HISTORY_FIELDS = (
    "loss_curve",
    "validation_scores",
    "best_loss",
    "best_validation_score",
    "no_improvement_count",
    "n_iter",
    "converged",
)


def finite_or_none(value):
    """``value``, or ``None`` for an infinite one (JSON has no infinity)."""
    return value if value is None or math.isfinite(value) else None


def array_to_json(array):
    """A numeric or string array as ``{"dtype", "values"}``."""
    array = np.asarray(array)
    if array.dtype.kind not in "biufUO":
        raise TypeError(f"cannot save an array of dtype {array.dtype}")
    return {"dtype": array.dtype.str, "values": array.tolist()}


def array_from_json(entry):
    """The array :func:`array_to_json` wrote; object arrays hold strings and numbers."""
    dtype = np.dtype(entry["dtype"])
    if dtype.kind not in "biufUO":
        raise TypeError(f"unsupported dtype {dtype} in the file")
    values = entry["values"]
    if dtype.kind == "O":
        for value in values:
            if not isinstance(value, (str, int, float, bool)):
                raise TypeError("object arrays may only hold strings and numbers")
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    return np.asarray(values, dtype=dtype)


def history_to_json(history):
    """The engine's :class:`~skmoe._engine.TrainingHistory` as a dict."""
    state = {name: getattr(history, name) for name in HISTORY_FIELDS}
    state["loss_curve"] = list(history.loss_curve)
    state["validation_scores"] = list(history.validation_scores)
    state["best_loss"] = finite_or_none(history.best_loss)
    state["best_validation_score"] = finite_or_none(history.best_validation_score)
    state["no_improvement_count"] = int(history.no_improvement_count)
    state["n_iter"] = int(history.n_iter)
    state["converged"] = bool(history.converged)
    return state


def history_from_json(state):
    """The :class:`~skmoe._engine.TrainingHistory` :func:`history_to_json` wrote."""
    history = TrainingHistory(**{k: state[k] for k in HISTORY_FIELDS})
    if history.best_loss is None:
        history.best_loss = math.inf
    if history.best_validation_score is None:
        history.best_validation_score = -math.inf
    return history
