"""Expert merging: similar experts become one."""

import copy

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering

from ..inspection._importance import check_gated
from ..nn import MixtureOfExperts
from ..nn.embeddings import mixture_of
from ..nn.experts import ACTIVATIONS
from ..nn.subset import keep_experts
from ._prune import DEFAULT_FINE_TUNE_ALPHA, DEFAULT_FINE_TUNE_ITER
from ._subset import (
    check_fine_tune_iter,
    check_fraction,
    check_n_experts,
    fine_tune,
    regroup_usage,
    with_module,
)


def merge_experts(
    estimator,
    X,
    y=None,
    *,
    n_experts,
    fine_tune_iter=DEFAULT_FINE_TUNE_ITER,
    fine_tune_experts=True,
    fine_tune_alpha=DEFAULT_FINE_TUNE_ALPHA,
):
    """A new fitted estimator whose experts are merged clusters of the original's.

    1. Every (shared) expert is run on ``X``; experts whose outputs are close
       (average-linkage clustering of the outputs) form ``n_experts`` clusters.
    2. Each cluster becomes one expert: its members' hidden units are matched to
       those of the cluster's most used member by the correlation of their
       activations on ``X`` (an assignment problem per layer), then the weights are
       averaged, weighted by how much gate weight each member receives on ``X``.
    3. Each gate routes to a cluster as to its most used member, with the bias
       raised so that the merged expert receives about the gate weight its
       members shared on ``X``.

    4. Up to ``fine_tune_iter`` epochs on ``X`` then retrain the merged model, as
       :func:`skmoe.prune_experts` does, on an even mix of the labels ``y`` and the
       original model's outputs (on the original's outputs alone without ``y``).

    Merging alone lost 13 points of test accuracy on digits (8 experts merged into
    4, mean of 3 seeds), the default fine-tuning 1 point; ``docs/compression.md``
    has the measurements.

    Parameters
    ----------
    estimator : fitted skmoe estimator
        A single-gate estimator or a one-level multi-gate one (``"mmoe"``,
        ``"omoe"``, ``"cgc"``: shared experts are merged, task experts kept). Not
        modified.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Rows to compare the experts on.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        Targets of ``X`` for fine-tuning; ``None`` fine-tunes on the original
        model's outputs alone.
    n_experts : int
        Experts after merging, from 1 to the model's number of (shared) experts.
    fine_tune_iter : int, default=100
        Most epochs of retraining after merging; ``0`` keeps the merged weights as
        they are. Training stops earlier when the estimator's own rule (``tol``,
        ``n_iter_no_change``) says it has converged.
    fine_tune_experts : bool, default=True
        Whether fine-tuning also trains the merged experts (otherwise only the gates
        and towers).
    fine_tune_alpha : float in [0, 1], default=0.5
        Weight of the labels ``y`` in the fine-tuning targets, the rest being the
        original model's predictions (regressors) or class probabilities
        (classifiers), as in :func:`skmoe.prune_experts`; ignored without ``y``.

    Returns
    -------
    merged : estimator of the same class
        Fitted, with ``n_experts`` experts; ``expert_clusters_`` holds the original
        experts each merged one came from.

    Raises
    ------
    ValueError
        If ``n_experts`` is out of range, the model has no gate or several levels,
        ``X`` has the wrong width, or ``fine_tune_iter`` or ``fine_tune_alpha`` is
        out of range.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> import skmoe
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = skmoe.MixtureOfExpertsRegressor(n_experts=6, max_iter=50,
    ...                                       random_state=0).fit(X, y)
    >>> merged = skmoe.merge_experts(reg, X, y, n_experts=3, fine_tune_iter=10)
    >>> merged.n_experts, len(merged.expert_clusters_)
    (3, 3)
    """
    available = check_gated(estimator, "merge_experts")
    n_experts = check_n_experts(n_experts, available, "merge_experts")
    fine_tune_iter = check_fine_tune_iter(fine_tune_iter, "merge_experts")
    check_fraction(fine_tune_alpha, "fine_tune_alpha", "merge_experts", closed=True)
    if y is None:  # no labels: the merged model learns the original's outputs
        fine_tune_alpha = 0.0
    module = copy.deepcopy(estimator.module_).cpu().double().eval()
    mixture = mixture_of(module)
    if not isinstance(mixture, MixtureOfExperts) and mixture.n_levels > 1:
        raise ValueError(
            "merge_experts merges the experts of one level; this model has "
            f"{mixture.n_levels} (architecture='ple'). Use prune_experts instead."
        )
    rows = estimator._validate_X(X)
    rows = torch.as_tensor(np.asarray(rows.toarray() if sp.issparse(rows) else rows))
    rows = rows.double()
    if mixture is not module:  # the experts read the embedded columns
        with torch.no_grad():
            rows = module.embedding(rows)
    if isinstance(mixture, MixtureOfExperts):
        bank, gates = mixture.experts, [mixture.gate]
    else:
        level = mixture.levels[0]
        bank, gates = level.experts, list(level.task_gates)
    with torch.no_grad():
        outputs = bank.forward_shared(rows)[:available]
        usage = np.mean(
            [g(rows).dense_weights().numpy()[:, :available].sum(0) for g in gates],
            axis=0,
        )
        clusters = _cluster(outputs.numpy(), n_experts)
        merged = keep_experts(module, [c[0] for c in clusters])
        small = mixture_of(merged)
        single = isinstance(small, MixtureOfExperts)
        target = small.experts if single else small.levels[0].experts
        _merge_bank(bank, target, clusters, usage, rows)
        small_gates = [small.gate] if single else list(small.levels[0].task_gates)
        for gate, small in zip(gates, small_gates, strict=True):
            _merge_gate(gate, small, clusters, rows)
    new = with_module(estimator, merged, n_experts)
    new.expert_clusters_ = [list(c) for c in clusters]
    new.expert_usage_ = regroup_usage(estimator, clusters)
    return fine_tune(
        new,
        X,
        y,
        fine_tune_iter,
        experts=fine_tune_experts,
        teacher=estimator,
        alpha=fine_tune_alpha,
    )


def _cluster(outputs, n_clusters):
    """Clusters of experts (lists of indices, most used first is not implied)."""
    n = outputs.shape[0]
    if n_clusters == n:
        return [[e] for e in range(n)]
    flat = outputs.reshape(n, -1)
    if n_clusters == 1:
        labels = np.zeros(n, dtype=int)
    else:
        labels = AgglomerativeClustering(
            n_clusters=n_clusters, linkage="average"
        ).fit_predict(flat)
    return [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]


def _merge_bank(bank, target, clusters, usage, rows):
    """Write each cluster's usage-weighted, unit-aligned average into ``target``."""
    n_layers = len(bank.weights)
    for c, members in enumerate(clusters):
        anchor = max(members, key=lambda e: usage[e])
        weights = [[w[e].clone() for w in bank.weights] for e in members]
        biases = [[b[e].clone() for b in bank.biases] for e in members]
        for i, e in enumerate(members):
            if e == anchor:
                continue
            for layer in range(n_layers - 1):  # align each hidden layer's units
                h_anchor = _activations(bank, anchor, rows, layer + 1, None, None)
                h_member = _activations(bank, e, rows, layer + 1, weights[i], biases[i])
                order = _match(h_anchor, h_member)
                weights[i][layer] = weights[i][layer][:, order]
                biases[i][layer] = biases[i][layer][order]
                weights[i][layer + 1] = weights[i][layer + 1][order, :]
        share = torch.tensor([usage[e] for e in members], dtype=torch.float64)
        share = (
            share / share.sum()
            if share.sum() > 0
            else torch.full_like(share, 1 / len(members))
        )
        for layer in range(n_layers):
            target.weights[layer][c] = sum(
                s * w[layer] for s, w in zip(share, weights, strict=True)
            )
            target.biases[layer][c] = sum(
                s * b[layer] for s, b in zip(share, biases, strict=True)
            )


def _activations(bank, e, rows, depth, weights, biases):
    act = ACTIVATIONS[bank.activation]
    weights = weights or [w[e] for w in bank.weights]
    biases = biases or [b[e] for b in bank.biases]
    h = rows
    for layer in range(depth):
        h = act(h @ weights[layer] + biases[layer])
    return h


def _match(anchor, member):
    """The permutation of ``member``'s units that best matches ``anchor``'s."""
    a = (anchor - anchor.mean(0)) / (anchor.std(0) + 1e-12)
    m = (member - member.mean(0)) / (member.std(0) + 1e-12)
    corr = (a.T @ m).numpy() / max(anchor.shape[0], 1)
    _, order = linear_sum_assignment(-corr)
    return torch.as_tensor(order)


def _merge_gate(gate, small, clusters, rows):
    """Each cluster routes as its most used member, with the members' gate mass.

    The cluster's row is its most used member's, its bias raised by the log of the
    ratio of the members' summed gate mass on ``rows`` to that member's (so that
    under dense routing the merged expert receives about the weight its members
    shared).
    """
    mass = gate(rows).dense_weights().sum(0)
    for c, members in enumerate(clusters):
        anchor = max(members, key=lambda e: float(mass[e]))
        lift = torch.log(mass[members].sum() / mass[anchor]) if mass[anchor] > 0 else 0
        small.router.weight[c] = gate.router.weight[anchor]
        small.router.bias[c] = gate.router.bias[anchor] + lift
        if gate.noise is not None:
            small.noise.weight[c] = gate.noise.weight[anchor]
            small.noise.bias[c] = gate.noise.bias[anchor]
