"""What each expert is worth to the score: Shapley values, ablation and usage."""

import copy
import itertools
import math
from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.metrics import check_scoring, get_scorer
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_is_fitted

from .._engine import torch_threads
from ..nn import MixtureOfExperts
from ..nn.embeddings import mixture_of
from ..nn.subset import keep_experts

METHODS = ("shapley", "ablation", "usage")
# Exact Shapley values visit every coalition: 2 ** 10 = 1024 evaluations.
MAX_EXACT_EXPERTS = 10
DEFAULT_PERMUTATIONS = 50


def check_gated(estimator, caller):
    """Refuse what has no experts to weigh; return the number of (shared) experts."""
    from .. import (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
    )

    known = (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
    )
    if not isinstance(estimator, known):
        raise TypeError(
            f"{caller} takes a fitted skmoe estimator "
            f"({', '.join(c.__name__ for c in known)}); got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    module = mixture_of(estimator.module_)
    if isinstance(module, MixtureOfExperts):
        return module.n_experts
    if module.architecture == "shared_bottom":
        raise ValueError(
            f"{caller}: architecture='shared_bottom' has no gate and no experts to "
            "weigh; use a gated architecture (mmoe, omoe, cgc, ple)."
        )
    return module.n_shared_experts


class CoalitionGame:
    """Scores of an estimator restricted to coalitions of its experts.

    A coalition keeps some experts and masks the others; each gate is renormalised
    over the experts it keeps (:func:`skmoe.nn.subset.keep_experts`) and nothing is
    refitted. The value of a coalition is its score on ``X, y``, one per task for a
    multi-gate model. Values are cached, so every coalition is evaluated once.

    Parameters
    ----------
    estimator : fitted skmoe estimator
    X, y : the rows and targets to score on.
    scoring : str, callable or None
        As in :func:`sklearn.inspection.permutation_importance`; ``None`` uses the
        estimator's ``score`` (per task for a multi-gate model).
    """

    def __init__(self, estimator, X, y, scoring=None, caller="expert_importance"):
        self.n_experts = check_gated(estimator, caller)
        self.estimator = estimator
        self.multi_task = not isinstance(
            mixture_of(estimator.module_), MixtureOfExperts
        )
        X_valid = estimator._validate_X(X)
        if sp.issparse(X_valid):
            X_valid = X_valid.toarray()
        self.X, self.y = X, np.asarray(y) if not hasattr(y, "iloc") else y.to_numpy()
        self._rows = torch.as_tensor(np.asarray(X_valid, dtype=np.float64))
        self._module = copy.deepcopy(estimator.module_).cpu().double().eval()
        self._scorers = self._make_scorers(scoring)
        self._cache = {}

    @property
    def n_values(self):
        """How many values a coalition has: the tasks of a multi-gate model, or 1."""
        return len(self._scorers)

    def _make_scorers(self, scoring):
        if not self.multi_task:
            return [check_scoring(self.estimator, scoring=scoring)]
        n_tasks = mixture_of(self.estimator.module_).n_tasks
        return [
            _task_scorer(self.estimator, t, scoring, self.y.ndim == 1)
            for t in range(n_tasks)
        ]

    def score(self, estimator, X, y):
        """``estimator``'s score on ``X, y`` as this game scores (task mean)."""
        return float(np.mean([scorer(estimator, X, y) for scorer in self._scorers]))

    def raw_output(self, experts):
        """The module's output with only ``experts``, as ``_raw_output`` returns it."""
        module = keep_experts(self._module, sorted(experts))
        with torch.no_grad(), torch_threads(self.estimator.n_threads):
            return module(self._rows).numpy()

    def value(self, experts):
        """Scores of the coalition ``experts``, an array of :attr:`n_values`."""
        key = frozenset(int(e) for e in experts)
        if key not in self._cache:
            raw = self.raw_output(key)
            view = self.estimator._reading_outputs(lambda X, raw=raw: raw)
            self._cache[key] = np.array(
                [scorer(view, self.X, self.y) for scorer in self._scorers], dtype=float
            )
        return self._cache[key]

    def full(self):
        return self.value(range(self.n_experts))

    def empty(self):
        return self.value(())

    def shapley_exact(self, players=None):
        """Exact Shapley values ``(n_players, n_values)`` of the game over ``players``.

        Other experts outside ``players`` stay masked, so this is the game of the
        coalition ``players``.
        """
        players = list(range(self.n_experts)) if players is None else list(players)
        n = len(players)
        weights = [
            math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
            for s in range(n)
        ]
        values = np.zeros((n, self.n_values))
        for i, player in enumerate(players):
            others = players[:i] + players[i + 1 :]
            for size in range(n):
                for coalition in itertools.combinations(others, size):
                    gain = self.value((*coalition, player)) - self.value(coalition)
                    values[i] += weights[size] * gain
        return values

    def shapley_sampled(self, n_permutations, rng, players=None):
        """Marginal contributions ``(n_players, n_values, n_permutations)`` along
        random orders of ``players``; their mean over permutations estimates the
        Shapley values, and each permutation's contributions add up exactly to
        ``value(players) - value(())``."""
        players = list(range(self.n_experts)) if players is None else list(players)
        out = np.zeros((len(players), self.n_values, n_permutations))
        for p in range(n_permutations):
            order = rng.permutation(len(players))
            coalition = []
            previous = self.value(coalition)
            for i in order:
                coalition.append(players[i])
                current = self.value(coalition)
                out[i, :, p] = current - previous
                previous = current
        return out

    def ablation(self):
        """Score lost when each expert alone is masked, ``(n_experts, n_values)``."""
        everyone = list(range(self.n_experts))
        full = self.full()
        return np.array(
            [full - self.value(everyone[:e] + everyone[e + 1 :]) for e in everyone]
        )

    def usage(self):
        """Mean gate weight of each expert on ``X``, ``(n_experts, n_values)``."""
        with torch.no_grad():
            weights = self._module.gate_weights(self._rows).numpy()
        if not self.multi_task:
            return weights.mean(axis=0)[:, None]
        return weights.mean(axis=0)[:, : self.n_experts].T  # shared experts


def _task_scorer(estimator, task, scoring, y_is_1d):
    """A scorer of one task of a multi-gate estimator."""
    kind = _TaskClassifier if is_classifier(estimator) else _TaskRegressor
    if scoring is None:
        scorer = _score_method
    else:
        scorer = get_scorer(scoring) if isinstance(scoring, str) else scoring

    def score(view, X, y):
        return scorer(kind(view, task), X, y if y_is_1d else y[:, task])

    return score


def _score_method(estimator, X, y):
    return estimator.score(X, y)


class _Task(BaseEstimator):
    """One task of a multi-gate estimator, seen as a single-output estimator."""

    def __init__(self, model, task):
        self.model = model
        self.task = task

    def __sklearn_is_fitted__(self):
        return True

    def predict(self, X):
        return np.asarray(self.model.predict(X))[:, self.task]


class _TaskClassifier(ClassifierMixin, _Task):
    @property
    def classes_(self):
        return self.model.classes_[self.task]

    def predict_proba(self, X):
        return self.model.predict_proba(X)[self.task]


class _TaskRegressor(RegressorMixin, _Task):
    pass


def expert_importance(
    estimator,
    X,
    y,
    *,
    method="shapley",
    n_permutations=None,
    scoring=None,
    random_state=None,
):
    """How much each expert contributes to an estimator's score.

    A coalition of experts is evaluated by masking the other experts and
    renormalising every gate over the remaining ones, without refitting; its value
    is the score on ``X, y``. Three measures:

    - ``"shapley"``: each expert's Shapley value in that game, its mean marginal
      contribution over all orders in which the experts could be added. The values
      add up to ``full_score - baseline_score`` (the efficiency property). Exact
      (every coalition is evaluated) for at most 10 experts unless
      ``n_permutations`` is given; otherwise estimated from ``n_permutations``
      random orders, each of whose contributions add up exactly to the same total.
    - ``"ablation"``: the score lost when the expert alone is masked.
    - ``"usage"``: the mean gate weight the expert gets on ``X`` (not a score).

    Usage is not value: a rarely used expert can carry a hard minority region and a
    popular one can be redundant.

    Parameters
    ----------
    estimator : fitted skmoe estimator
        A single-gate or multi-gate (gated architecture) estimator. For multi-gate
        models the shared experts are weighed (the same positions at every level of
        ``"ple"``), with one value per task.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Rows to score on (held-out rows give the honest picture).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Their targets.
    method : {"shapley", "ablation", "usage"}, default="shapley"
        The measure, see above.
    n_permutations : int or None, default=None
        ``None``: exact Shapley values up to 10 experts, 50 sampled orders beyond.
        An int: that many sampled orders, whatever the number of experts.
    scoring : str, callable or None, default=None
        A scikit-learn scorer name or callable; ``None`` uses the estimator's
        ``score`` (for multi-gate models, the score of each task's column).
    random_state : int, RandomState instance or None, default=None
        Draws the sampled orders.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        Shaped like :func:`sklearn.inspection.permutation_importance`'s:

        importances_mean : ndarray of shape (n_experts,) or (n_experts, n_tasks)
            The measure of each expert (and task, for multi-gate models).
        importances_std : ndarray of the same shape
            Standard deviation over sampled orders (zero when exact or not sampled).
        importances : ndarray of shape (n_experts, n_repeats)
            Each sampled order's marginal contributions (one column when not
            sampled); ``(n_experts, n_tasks, n_repeats)`` for multi-gate models.
        full_score : float or ndarray of shape (n_tasks,)
            Score with every expert.
        baseline_score : float or ndarray of shape (n_tasks,)
            Score with no expert (the mixture is zero: a regressor predicts the
            training mean, a classifier equal probabilities).

    Raises
    ------
    ValueError
        For an unknown method, a ``shared_bottom`` model, or ``X`` of the wrong
        width.
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.inspection import expert_importance
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(n_experts=3, max_iter=30,
    ...                                  random_state=0).fit(X, y)
    >>> result = expert_importance(clf, X, y)
    >>> result.importances_mean.shape
    (3,)
    >>> total = result.full_score - result.baseline_score
    >>> bool(abs(result.importances_mean.sum() - total) < 1e-12)
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if n_permutations is not None and (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, Integral)
        or n_permutations < 1
    ):
        raise ValueError(
            f"n_permutations must be a positive int or None, got {n_permutations!r}."
        )
    game = CoalitionGame(estimator, X, y, scoring=scoring)
    full, empty = game.full(), game.empty()
    if method == "shapley":
        exact = n_permutations is None and game.n_experts <= MAX_EXACT_EXPERTS
        if exact:
            importances = game.shapley_exact()[:, :, None]
        else:
            rng = check_random_state(random_state)
            importances = game.shapley_sampled(
                n_permutations or DEFAULT_PERMUTATIONS, rng
            )
    elif method == "ablation":
        importances = game.ablation()[:, :, None]
    else:
        importances = game.usage()[:, :, None]
    mean = importances.mean(axis=2)
    std = importances.std(axis=2)
    if not game.multi_task:
        importances, mean, std = importances[:, 0], mean[:, 0], std[:, 0]
        full, empty = float(full[0]), float(empty[0])
    return Bunch(
        importances_mean=mean,
        importances_std=std,
        importances=importances,
        full_score=full,
        baseline_score=empty,
    )
