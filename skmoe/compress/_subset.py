"""A fitted estimator that keeps some of another's experts, and brief retraining."""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples

from .._engine.trainer import _snapshot
from .._inference import InferenceCache
from ..nn.embeddings import mixture_of
from ..nn.subset import keep_experts
from ._distill import distillation_data

# Fitted state that belongs to the original module and must not be shared.
_MODULE_STATE = ("module_", "_inference_cache", "_optimizer")


def check_n_experts(n_experts, available, caller):
    """``n_experts`` must be an int in ``[1, available]``."""
    if (
        isinstance(n_experts, bool)
        or not isinstance(n_experts, Integral)
        or not 1 <= n_experts <= available
    ):
        raise ValueError(
            f"{caller}: n_experts must be an int from 1 to the model's {available} "
            f"experts, got {n_experts!r}."
        )
    return int(n_experts)


def with_module(estimator, module, n_experts):
    """A new fitted estimator of ``estimator``'s class holding ``module``.

    ``module`` has ``n_experts`` (shared) experts. The copy is built as ``fit`` would
    build a model of that size, then given ``module``'s weights, so that every
    prediction path, :func:`skmoe.save` and :func:`skmoe.load` treat it as any other
    fitted estimator. ``estimator`` is not modified.
    """
    new = object.__new__(type(estimator))
    state = {k: v for k, v in estimator.__dict__.items() if k not in _MODULE_STATE}
    new.__dict__.update(copy.deepcopy(state))
    top_k = estimator.top_k
    new.n_experts = n_experts
    if top_k is not None:
        choices = new._gate_choices()
        new.top_k = min(top_k, choices) if choices is not None else top_k
    with torch.random.fork_rng(devices=[]):  # building draws initial weights
        shell = new._build_model(new._objective(), new._hidden_sizes())
    shell.load_state_dict(module.state_dict())
    new.module_ = shell.to(estimator.device_).eval()
    new._inference_cache = InferenceCache()
    new.top_k_ = new._effective_top_k()
    new._fitted_network = new._network_signature()
    return new


def with_experts(estimator, experts):
    """A new fitted estimator that keeps only ``experts`` of ``estimator``'s."""
    experts = [int(e) for e in experts]
    new = with_module(estimator, keep_experts(estimator.module_, experts), len(experts))
    new.expert_usage_ = regroup_usage(estimator, [[e] for e in experts])
    return new


def regroup_usage(estimator, groups):
    """``expert_usage_`` of a model whose (shared) expert ``i`` is ``groups[i]``'s
    experts of ``estimator`` together; task experts stay as they are."""
    usage = estimator.expert_usage_
    if usage is None:
        return None
    usage = np.asarray(usage, dtype=np.float64)
    columns = [usage[..., group].sum(axis=-1) for group in groups]
    if usage.ndim == 2:  # multi-gate: shared experts first, then the tasks' own
        n_shared = mixture_of(estimator.module_).n_shared_experts
        columns += [usage[:, e] for e in range(n_shared, usage.shape[1])]
    kept = np.stack(columns, axis=-1)
    total = kept.sum(axis=-1, keepdims=True)
    return np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)


def fine_tune(
    estimator,
    X,
    y,
    n_iter,
    experts=False,
    *,
    teacher=None,
    alpha=1.0,
    validation_fraction=None,
    score=None,
    learning_rate=None,
):
    """Retrain ``estimator``'s gates (and towers; ``experts=True``: everything) in
    place for up to ``n_iter`` epochs on ``X, y``, starting from its current weights.

    ``alpha < 1`` trains on ``alpha * y + (1 - alpha) * teacher``'s outputs (the
    targets :func:`skmoe.distill` fits). With ``validation_fraction``, that share of
    the rows is held out (stratified for a classifier where possible); after every
    epoch ``score(estimator, X_valid, y_valid)`` is taken, training stops after the
    estimator's ``n_iter_no_change`` epochs without a ``tol`` improvement, and the
    weights of the best epoch (the starting weights included) are kept.
    ``learning_rate`` replaces ``learning_rate_init`` while fine-tuning.
    """
    if n_iter == 0:
        return estimator
    frozen = []
    if not experts:
        for name, param in estimator.module_.named_parameters():
            if _is_expert(name) and param.requires_grad:
                param.requires_grad_(False)
                frozen.append(param)
    params = {
        k: getattr(estimator, k)
        for k in ("warm_start", "max_iter", "learning_rate_init")
    }
    if learning_rate is not None:
        estimator.set_params(learning_rate_init=learning_rate)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if validation_fraction is None:
                X_fit, y_fit, weights = _targets(teacher, X, y, alpha)
                estimator.set_params(warm_start=True, max_iter=int(n_iter))
                estimator.fit(X_fit, y_fit, sample_weight=weights)
            else:
                _fit_with_validation(
                    estimator, X, y, n_iter, teacher, alpha, validation_fraction, score
                )
    finally:
        estimator.set_params(**params)
        for param in frozen:
            param.requires_grad_(True)
        estimator.__dict__.pop("_optimizer", None)
    return estimator


def _targets(teacher, X, y, alpha):
    if alpha == 1:
        return X, y, None
    return distillation_data(teacher, X, y, alpha)


def _fit_with_validation(estimator, X, y, n_iter, teacher, alpha, fraction, score):
    """Epochs of ``partial_fit`` (one optimizer throughout), early-stopped on a
    held-out share of ``X, y``; the best epoch's weights are restored."""
    y = np.asarray(y) if not hasattr(y, "iloc") else y.to_numpy()
    rows = np.arange(_num_samples(X))
    seed = estimator._next_seed(False)  # the estimator's own seed sequence
    stratify = y if is_classifier(estimator) and y.ndim == 1 else None
    try:
        train, valid = train_test_split(
            rows, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError:  # a class too small to stratify on
        train, valid = train_test_split(rows, test_size=fraction, random_state=seed)
    X_valid, y_valid = _safe_indexing(X, valid), y[valid]
    X_fit, y_fit, weights = _targets(teacher, _safe_indexing(X, train), y[train], alpha)
    best_score = score(estimator, X_valid, y_valid)
    best_state = _snapshot(estimator.module_)
    waited = 0
    for _ in range(n_iter):
        estimator.partial_fit(X_fit, y_fit, sample_weight=weights)
        current = score(estimator, X_valid, y_valid)
        waited = waited + 1 if current < best_score + estimator.tol else 0
        if current >= best_score:  # a tie: the later weights, trained longer
            best_score, best_state = current, _snapshot(estimator.module_)
        if waited > estimator.n_iter_no_change:  # as the estimator's own rule
            break
    estimator.module_.load_state_dict(best_state)
    estimator._inference_cache = InferenceCache()


def _is_expert(name):
    return name.startswith("experts.") or ".experts." in name


def check_fine_tune_iter(fine_tune_iter, caller):
    if (
        isinstance(fine_tune_iter, bool)
        or not isinstance(fine_tune_iter, Integral)
        or fine_tune_iter < 0
    ):
        raise ValueError(
            f"{caller}: fine_tune_iter must be a non-negative int, got "
            f"{fine_tune_iter!r}."
        )
    return int(fine_tune_iter)


def check_fraction(value, name, caller, closed):
    """``value`` must be a number in ``[0, 1]`` (``closed``) or ``(0, 1)``."""
    number = isinstance(value, Real) and not isinstance(value, bool)
    if not number or not (0 <= value <= 1 if closed else 0 < value < 1):
        bounds = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(
            f"{caller}: {name} must be a number in {bounds}, got {value!r}."
        )
