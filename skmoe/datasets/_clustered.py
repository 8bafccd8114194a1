"""Data from latent clusters, each with a non-linear function of its own."""

import numpy as np
from sklearn.utils import check_random_state

_N_WAVES = 3


def _clustered(n_samples, n_features, n_clusters, cluster_std, center_box, rng):
    """Rows around ``n_clusters`` centres and each cluster's own function of them."""
    for name, value in (
        ("n_samples", n_samples),
        ("n_features", n_features),
        ("n_clusters", n_clusters),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}.")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if not cluster_std > 0:
        raise ValueError(f"cluster_std must be positive, got {cluster_std!r}.")
    centers = rng.uniform(-center_box, center_box, size=(n_clusters, n_features))
    clusters = rng.randint(n_clusters, size=n_samples)
    offsets = rng.normal(scale=cluster_std, size=(n_samples, n_features))
    X = centers[clusters] + offsets
    # Cluster k: sum_j a_kj * sin(w_kj . (x - c_k) + b_kj), a smooth function that
    # differs from cluster to cluster in direction, frequency, phase and sign.
    directions = rng.normal(size=(n_clusters, _N_WAVES, n_features))
    directions /= np.sqrt(n_features) * cluster_std
    phases = rng.uniform(0, 2 * np.pi, size=(n_clusters, _N_WAVES))
    amplitudes = rng.normal(size=(n_clusters, _N_WAVES))
    waves = np.einsum("nwf,nf->nw", directions[clusters], offsets) + phases[clusters]
    f = (amplitudes[clusters] * np.sin(waves)).sum(axis=1)
    return X, f, clusters


def make_clustered_regression(
    n_samples=1000,
    n_features=5,
    n_clusters=4,
    noise=0.1,
    cluster_std=1.0,
    center_box=6.0,
    return_clusters=False,
    random_state=None,
):
    """A regression target made of one non-linear function per latent cluster.

    Rows are drawn around ``n_clusters`` centres (Gaussian blobs, as
    :func:`sklearn.datasets.make_blobs`); in cluster ``k`` the target is
    ``sum_j a_kj * sin(w_kj . (x - c_k) + b_kj)`` (three random waves of the
    cluster's own directions, frequencies, phases and amplitudes) plus Gaussian noise.
    A mixture of experts can give each cluster an expert and learn the clusters in
    its gate, which one network must approximate with a single function.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of rows.
    n_features : int, default=5
        Number of features.
    n_clusters : int, default=4
        Number of latent clusters.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise on the target.
    cluster_std : float, default=1.0
        Standard deviation of each cluster around its centre.
    center_box : float, default=6.0
        Centres are drawn uniformly from ``[-center_box, center_box]`` per feature.
    return_clusters : bool, default=False
        Whether to also return each row's cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds everything.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    clusters : ndarray of shape (n_samples,)
        Each row's latent cluster; only with ``return_clusters=True``.

    Examples
    --------
    >>> from skmoe.datasets import make_clustered_regression
    >>> X, y, clusters = make_clustered_regression(
    ...     n_samples=200, n_clusters=3, return_clusters=True, random_state=0)
    >>> X.shape, y.shape, sorted(set(clusters.tolist()))
    ((200, 5), (200,), [0, 1, 2])
    """
    rng = check_random_state(random_state)
    X, f, clusters = _clustered(
        n_samples, n_features, n_clusters, cluster_std, center_box, rng
    )
    y = f + rng.normal(scale=noise, size=n_samples)
    return (X, y, clusters) if return_clusters else (X, y)


def make_clustered_classification(
    n_samples=1000,
    n_features=5,
    n_clusters=4,
    n_classes=2,
    cluster_std=1.0,
    center_box=6.0,
    return_clusters=False,
    random_state=None,
):
    """Classes cut from one non-linear function per latent cluster.

    The rows and per-cluster functions of :func:`make_clustered_regression`; in each
    cluster the function's quantiles cut the rows into ``n_classes`` equally
    frequent classes, so every cluster has its own non-linear class boundaries.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of rows.
    n_features : int, default=5
        Number of features.
    n_clusters : int, default=4
        Number of latent clusters.
    n_classes : int, default=2
        Number of classes.
    cluster_std : float, default=1.0
        Standard deviation of each cluster around its centre.
    center_box : float, default=6.0
        Centres are drawn uniformly from ``[-center_box, center_box]`` per feature.
    return_clusters : bool, default=False
        Whether to also return each row's cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds everything.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Integer classes ``0 .. n_classes - 1``.
    clusters : ndarray of shape (n_samples,)
        Each row's latent cluster; only with ``return_clusters=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.datasets import make_clustered_classification
    >>> X, y = make_clustered_classification(n_samples=300, n_classes=3,
    ...                                      random_state=0)
    >>> X.shape, np.bincount(y).tolist()
    ((300, 5), [99, 99, 102])
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {n_classes!r}.")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}.")
    rng = check_random_state(random_state)
    X, f, clusters = _clustered(
        n_samples, n_features, n_clusters, cluster_std, center_box, rng
    )
    y = np.zeros(n_samples, dtype=np.int64)
    for k in np.unique(clusters):
        rows = clusters == k
        cuts = np.quantile(f[rows], np.arange(1, n_classes) / n_classes)
        y[rows] = np.searchsorted(cuts, f[rows], side="right")
    return (X, y, clusters) if return_clusters else (X, y)
