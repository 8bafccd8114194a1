"""Knowledge distillation: a smaller model fitted on a fitted model's outputs."""

from numbers import Real

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from ..mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from ..multigate import MultiGateMoEClassifier, MultiGateMoERegressor
from ..nn.embeddings import mixture_of

_SKMOE = (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
# Soft targets below this share of a row's weight are left out of the fit: they
# would multiply the rows to train on for a negligible part of the loss.
_MIN_SOFT_WEIGHT = 1e-3


def default_student(teacher):
    """A dense skmoe model (one expert) with as many active weights as the teacher.

    One expert whose first hidden layer is as wide as the teacher's active experts'
    together: ``top_k`` of them for a single-gate model, every expert (shared and
    task-specific) for a multi-gate one, which evaluates them all for every row.
    """
    params = teacher.get_params(deep=False)
    sizes = list(teacher._hidden_sizes())
    if isinstance(teacher, (MultiGateMoEClassifier, MultiGateMoERegressor)):
        active = mixture_of(teacher.module_).n_experts if teacher._gated() else 1
        params.update(architecture="shared_bottom", top_k=None)
    else:
        active = teacher.top_k or teacher.n_experts
        params.update(top_k=None)
    if sizes:
        sizes[0] *= active
    params.update(n_experts=1, expert_hidden_layer_sizes=tuple(sizes))
    return type(teacher)(**params)


def distill(teacher, X, y=None, *, student=None, alpha=0.5, max_iter=None):
    """Fit a student model on a fitted teacher's outputs.

    The student learns the teacher's predictions (regressors) or class
    probabilities (classifiers: a soft-label cross-entropy, fitted as one weighted
    row per class a row gives noticeable probability), mixed with the true labels
    when ``y`` is given: the target is ``alpha * y + (1 - alpha) * teacher``.
    Multi-output classifiers learn the teacher's predicted labels.

    Parameters
    ----------
    teacher : fitted skmoe estimator
        Not modified.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Rows to distil on (the teacher's training rows, or any unlabelled rows).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        True targets to mix in; ``None`` fits the teacher's outputs alone.
    student : skmoe estimator or None, default=None
        The model to fit (cloned; the object passed stays unfitted). ``None``: the
        teacher's class with one expert (``n_experts=1``, dense) whose first hidden
        layer is as wide as the teacher's active experts together (a multi-gate
        teacher gets a ``"shared_bottom"`` student), with the teacher's other
        parameters. It must be a classifier for a classifier teacher and a regressor
        for a regressor teacher.
    alpha : float in [0, 1], default=0.5
        Weight of the true labels when ``y`` is given.
    max_iter : int or None, default=None
        Epochs of the student; ``None`` keeps its own ``max_iter``.

    Returns
    -------
    student : fitted skmoe estimator

    Raises
    ------
    ValueError
        If the student is not a skmoe estimator of the teacher's kind, ``alpha``
        is outside [0, 1], or ``X`` has the wrong width.
    sklearn.exceptions.NotFittedError
        If the teacher is not fitted.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> import skmoe
    >>> X, y = load_iris(return_X_y=True)
    >>> teacher = skmoe.MixtureOfExpertsClassifier(n_experts=4, top_k=2,
    ...                                            max_iter=100,
    ...                                            random_state=0).fit(X, y)
    >>> student = skmoe.distill(teacher, X, y)
    >>> student.n_experts, student.expert_hidden_layer_sizes
    (1, (128,))
    >>> bool(student.score(X, y) > 0.9)
    True
    """
    if not isinstance(teacher, _SKMOE):
        raise ValueError(
            f"distill: the teacher must be a fitted skmoe estimator, got "
            f"{type(teacher).__name__}."
        )
    check_is_fitted(teacher)
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 <= alpha <= 1:
        raise ValueError(f"distill: alpha must be a number in [0, 1], got {alpha!r}.")
    if student is None:
        student = default_student(teacher)
    elif not isinstance(student, _SKMOE) or is_classifier(student) != is_classifier(
        teacher
    ):
        kind = "classifier" if is_classifier(teacher) else "regressor"
        raise ValueError(
            f"distill: the student must be a skmoe {kind}, like the teacher "
            f"{type(teacher).__name__}; got {type(student).__name__}."
        )
    student = clone(student)
    if max_iter is not None:
        student.set_params(max_iter=max_iter)
    X_fit, y_fit, weights = distillation_data(teacher, X, y, alpha)
    return student.fit(X_fit, y_fit, sample_weight=weights)


def distillation_data(teacher, X, y, alpha):
    """Rows, targets and sample weights (or ``None``) whose fit is a fit of
    ``alpha * y + (1 - alpha) * teacher``'s outputs; ``y=None``: the outputs alone.

    A regressor's targets are mixed; a classifier's probabilities become one
    weighted row per class a row gives noticeable probability (``_soft_labels``).
    """
    if y is not None:
        y = np.asarray(y)
    if is_classifier(teacher):
        return _soft_labels(teacher, X, y, alpha)
    predicted = teacher.predict(X)
    if y is None:
        return X, predicted, None
    return X, alpha * y.reshape(predicted.shape) + (1 - alpha) * predicted, None


def _soft_labels(teacher, X, y, alpha):
    """Rows, labels and weights whose weighted cross-entropy is the soft-label one."""
    n = teacher._validate_X(X).shape[0]
    label_weight = 0.0 if y is None else alpha
    if teacher.n_outputs_ == 1:
        proba = teacher.predict_proba(X)
        if isinstance(proba, list):
            proba = proba[0]
        classes = np.asarray(teacher._label_codes.classes[0])
        weights = (1 - label_weight) * proba
        if y is not None:
            truth = y.reshape(n, -1)[:, 0]
            weights = weights + label_weight * (truth[:, None] == classes[None, :])
        rows, columns = np.nonzero(weights >= _MIN_SOFT_WEIGHT)
        kept = weights[rows, columns]
        kept = kept / np.bincount(rows, weights=kept, minlength=n)[rows]
        labels = classes[columns]
        if not teacher._y_was_1d:
            labels = labels.reshape(-1, 1)
        return _safe_indexing(X, rows), labels, kept
    predicted = teacher.predict(X)
    if y is None:
        return X, predicted, np.ones(n)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    labels = np.concatenate([predicted, y.reshape(predicted.shape)])
    weights = np.concatenate([np.full(n, 1 - alpha), np.full(n, alpha)])
    keep = weights > 0
    return _safe_indexing(X, rows[keep]), labels[keep], weights[keep]
