"""The synthetic two-task regression of the MMoE paper, of tunable task correlation."""

import numpy as np
from sklearn.utils import check_random_state


def make_mmoe_synthetic(
    n_samples=10_000,
    n_features=100,
    correlation=0.5,
    scale=1.0,
    n_sines=10,
    noise=0.1,
    random_state=None,
):
    """Two regression tasks whose relatedness is set by ``correlation``.

    Section 3.2 of Ma et al., "Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts" (KDD 2018):

    1. draw orthonormal ``u1, u2`` in ``R^n_features``;
    2. ``w1 = scale * u1`` and
       ``w2 = scale * (correlation * u1 + sqrt(1 - correlation**2) * u2)``, so the
       cosine similarity of ``w1`` and ``w2`` is ``correlation``;
    3. draw ``x`` with i.i.d. standard normal entries;
    4. ``y_k = w_k @ x + sum_i sin(alpha_i * w_k @ x + beta_i) + eps_k``.

    The paper leaves ``scale``, the number of sines ``m``, ``alpha``, ``beta`` and the
    noise scale open. skmoe uses ``scale=1``, ``m=10``, ``alpha_i`` and ``beta_i``
    drawn once from a standard normal (shared by both tasks, as in the paper) and
    Gaussian noise of standard deviation 0.1 (variance 0.01). Larger ``alpha`` makes
    the sines wigglier and the tasks harder to share; with ``correlation=1`` the two
    tasks differ only by their noise.

    Parameters
    ----------
    n_samples : int, default=10_000
        Number of rows.
    n_features : int, default=100
        Input dimension ``d`` (the paper uses 100).
    correlation : float, default=0.5
        Cosine similarity ``p`` of the tasks' weight vectors, in ``[-1, 1]``.
    scale : float, default=1.0
        The constant ``c``.
    n_sines : int, default=10
        The number of sine terms ``m``.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise of each label.
    random_state : int, RandomState instance or None, default=None
        Seeds the task definition (``u1, u2, alpha, beta``) and the samples. Draw
        train and test rows from one call and split them, so both share one task
        definition.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    Y : ndarray of shape (n_samples, 2)
        The two tasks' labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.datasets import make_mmoe_synthetic
    >>> X, Y = make_mmoe_synthetic(n_samples=5000, correlation=0.9, random_state=0)
    >>> X.shape, Y.shape
    ((5000, 100), (5000, 2))
    >>> bool(np.corrcoef(Y.T)[0, 1] > 0.5)
    True
    """
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must lie in [-1, 1], got {correlation}.")
    if n_features < 2:
        raise ValueError(f"n_features must be at least 2, got {n_features}.")
    if n_samples < 1 or n_sines < 0 or noise < 0:
        raise ValueError(
            "n_samples must be positive and n_sines and noise non-negative; got "
            f"n_samples={n_samples}, n_sines={n_sines}, noise={noise}."
        )
    rng = check_random_state(random_state)
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    alpha = rng.standard_normal(n_sines)
    beta = rng.standard_normal(n_sines)
    X = rng.standard_normal((n_samples, n_features))
    columns = []
    for w in (w1, w2):
        z = X @ w
        sines = np.sin(np.outer(z, alpha) + beta).sum(axis=1)
        columns.append(z + sines + noise * rng.standard_normal(n_samples))
    return X, np.column_stack(columns)
