"""Expert pruning: keep the experts that matter, route among them."""

from numbers import Real

from sklearn.utils import check_random_state

from ..inspection._importance import (
    DEFAULT_PERMUTATIONS,
    MAX_EXACT_EXPERTS,
    CoalitionGame,
)
from ._subset import (
    check_fine_tune_iter,
    check_fraction,
    check_n_experts,
    fine_tune,
    with_experts,
)

PRUNING_METHODS = ("greedy", "shapley", "shapley_backward", "usage", "random")
DEFAULT_FINE_TUNE_ITER = 100
DEFAULT_FINE_TUNE_ALPHA = 0.5
DEFAULT_VALIDATION_FRACTION = None


def prune_experts(
    estimator,
    X,
    y,
    *,
    n_experts,
    method="greedy",
    fine_tune_iter=DEFAULT_FINE_TUNE_ITER,
    fine_tune_experts=True,
    fine_tune_alpha=DEFAULT_FINE_TUNE_ALPHA,
    validation_fraction=DEFAULT_VALIDATION_FRACTION,
    fine_tune_learning_rate=None,
    scoring=None,
    random_state=None,
):
    """A new fitted estimator that keeps ``n_experts`` of ``estimator``'s experts.

    The kept experts keep their weights; every gate keeps its rows for them and
    renormalises over them (``top_k`` is clipped to the experts left), so without
    fine-tuning a row is routed as the original gate would have routed it with the
    other experts masked out. Up to ``fine_tune_iter`` epochs on ``X`` then retrain
    the pruned model (with ``fine_tune_experts=False`` only the gates and a
    multi-gate model's towers), starting from those weights, on the original
    model's outputs (``fine_tune_alpha=0``), the labels ``y`` (``1``) or a mix: the
    kept experts learn to cover the rows the removed ones served.

    The defaults (greedy choice, then the whole pruned model fitted to an even mix
    of the labels and the original model's outputs until its training loss stops
    improving, at most 100 epochs) lost the least score in
    ``benchmarks/compress.py``; ``docs/compression.md`` has the measurements.

    Parameters
    ----------
    estimator : fitted skmoe estimator
        Single-gate or multi-gate (gated architecture); not modified. For multi-gate
        models the shared experts are pruned (the same positions at every level of
        ``"ple"``); each task's own experts are kept.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Rows the experts are chosen on and fine-tuning trains on (a validation set
        chooses more honestly than the training set).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Their targets.
    n_experts : int
        Experts to keep, from 1 to the model's number of (shared) experts.
    method : {"greedy", "shapley", "shapley_backward", "usage", "random"}, \
default="greedy"
        How to choose them:

        - ``"greedy"``: backward elimination, each step masking the expert whose
          removal costs the least score on ``X, y``.
        - ``"shapley"``: the experts of highest Shapley value (see
          :func:`skmoe.inspection.expert_importance`).
        - ``"shapley_backward"``: backward elimination of the expert with the lowest
          Shapley value in the game of the experts still kept, recomputed each step.
        - ``"usage"``: the experts of highest mean gate weight on ``X``.
        - ``"random"``: a random choice (a baseline).

        ``docs/compression.md`` compares them; the default is what won there.
    fine_tune_iter : int, default=100
        Most epochs of retraining after pruning; ``0`` keeps the weights as they
        are. Training stops earlier when the estimator's own rule (``tol``,
        ``n_iter_no_change``) says it has converged.
    fine_tune_experts : bool, default=True
        Whether fine-tuning also trains the kept experts (otherwise only the gates
        and towers).
    fine_tune_alpha : float in [0, 1], default=0.5
        Weight of the labels ``y`` in the fine-tuning targets, the rest being the
        original model's predictions (regressors) or class probabilities
        (classifiers), as ``alpha`` in :func:`skmoe.distill`. ``0`` fits the pruned
        model to the original one (prune, then distil); ``1`` to the labels alone.
    validation_fraction : float in (0, 1) or None, default=None
        Share of ``X, y`` held out from fine-tuning (stratified for a classifier
        where it can be) to stop it early: after each epoch the pruned model is
        scored on those rows (``scoring``, true labels), training stops after
        ``n_iter_no_change`` epochs without a ``tol`` improvement, and the best
        epoch's weights are kept, the pruned weights before fine-tuning included.
        ``None`` fine-tunes on every row.
    fine_tune_learning_rate : float or None, default=None
        Adam learning rate while fine-tuning; ``None`` keeps the estimator's
        ``learning_rate_init``.
    scoring : str, callable or None, default=None
        The score the experts are chosen by, as in ``expert_importance``; for
        multi-gate models the tasks' scores are averaged.
    random_state : int, RandomState instance or None, default=None
        Seeds ``"random"`` and sampled Shapley values (more than 10 experts).
        Fine-tuning continues the estimator's own seed sequence, as a warm-started
        ``fit`` does.

    Returns
    -------
    pruned : estimator of the same class
        Fitted, with ``n_experts`` set to the experts kept; the attribute
        ``kept_experts_`` holds their indices in the original model.

    Raises
    ------
    ValueError
        If ``n_experts`` is below 1 or above the model's, the method is unknown,
        ``X`` has the wrong width or the model has no gate.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> import skmoe
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = skmoe.MixtureOfExpertsClassifier(n_experts=4, top_k=2, max_iter=50,
    ...                                        random_state=0).fit(X, y)
    >>> small = skmoe.prune_experts(clf, X, y, n_experts=2, fine_tune_iter=0)
    >>> small.n_experts, small.gate_weights(X[:1]).shape
    (2, (1, 2))
    >>> bool(small.score(X, y) > 0.8)
    True
    """
    game = CoalitionGame(estimator, X, y, scoring=scoring, caller="prune_experts")
    n_experts = check_n_experts(n_experts, game.n_experts, "prune_experts")
    if method not in PRUNING_METHODS:
        raise ValueError(
            f"prune_experts: method must be one of {PRUNING_METHODS}, got {method!r}."
        )
    fine_tune_iter = check_fine_tune_iter(fine_tune_iter, "prune_experts")
    check_fraction(fine_tune_alpha, "fine_tune_alpha", "prune_experts", closed=True)
    if validation_fraction is not None:
        check_fraction(
            validation_fraction, "validation_fraction", "prune_experts", closed=False
        )
    if fine_tune_learning_rate is not None and not (
        isinstance(fine_tune_learning_rate, Real)
        and not isinstance(fine_tune_learning_rate, bool)
        and fine_tune_learning_rate > 0
    ):
        raise ValueError(
            "prune_experts: fine_tune_learning_rate must be a positive number or "
            f"None, got {fine_tune_learning_rate!r}."
        )
    rng = check_random_state(random_state)
    kept = choose_experts(game, n_experts, method, rng)
    pruned = with_experts(estimator, kept)
    fine_tune(
        pruned,
        X,
        y,
        fine_tune_iter,
        experts=fine_tune_experts,
        teacher=estimator,
        alpha=fine_tune_alpha,
        validation_fraction=validation_fraction,
        score=game.score,
        learning_rate=fine_tune_learning_rate,
    )
    pruned.kept_experts_ = list(kept)
    return pruned


def choose_experts(game, n_experts, method, rng):
    """Indices of the ``n_experts`` experts ``method`` keeps, in increasing order."""
    everyone = list(range(game.n_experts))
    if method == "random":
        return sorted(rng.choice(game.n_experts, n_experts, replace=False).tolist())
    if method == "usage":
        return _top(game.usage().mean(axis=1), everyone, n_experts)
    if method == "shapley":
        return _top(_shapley(game, everyone, rng), everyone, n_experts)
    kept = everyone
    while len(kept) > n_experts:
        if method == "greedy":
            # The score left after removing each expert: drop the least missed.
            left = [game.value([e for e in kept if e != drop]).mean() for drop in kept]
            drop = kept[max(range(len(kept)), key=left.__getitem__)]
        else:  # shapley_backward
            values = _shapley(game, kept, rng)
            drop = kept[min(range(len(kept)), key=values.__getitem__)]
        kept = [e for e in kept if e != drop]
    return kept


def _shapley(game, players, rng):
    """Shapley values of ``players`` (their game; the others masked), task mean."""
    if len(players) <= MAX_EXACT_EXPERTS:
        values = game.shapley_exact(players)
    else:
        values = game.shapley_sampled(DEFAULT_PERMUTATIONS, rng, players).mean(axis=2)
    return values.mean(axis=1).tolist()


def _top(values, experts, n):
    order = sorted(range(len(experts)), key=lambda i: -values[i])
    return sorted(experts[i] for i in order[:n])
