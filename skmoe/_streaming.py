"""Data larger than memory: ``partial_fit`` over chunks, for several epochs."""

from collections.abc import Sequence

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils import check_random_state


def fit_chunks(
    estimator, chunks_factory, *, n_epochs=1, classes=None, shuffle=True, mix=2,
    random_state=None,
):  # fmt: skip
    """Train ``estimator`` with ``partial_fit`` on chunks of rows, epoch after epoch.

    Only ``mix`` chunks are in memory at a time, so the data may be far larger than
    memory: a memory-mapped array read in slices, a parquet file read one row group
    at a time, the blocks of a dask array.

    Parameters
    ----------
    estimator : skmoe estimator
        Trained in place through its ``partial_fit``; fitted already or not.
    chunks_factory : callable
        Called once per epoch with no argument; returns an iterable of chunks. A
        chunk is ``(X, y)`` or ``(X, y, sample_weight)``, or a callable with no
        argument that loads one (so that a list of loaders can be reordered without
        reading anything).
    n_epochs : int, default=1
        Passes over the chunks.
    classes : array-like or list of arrays, default=None
        All classes of each output (classifiers). When ``None`` on an unfitted
        classifier, one extra pass over the chunks collects them.
    shuffle : bool, default=True
        When the factory returns a sequence (a list of chunks or of loaders), visit
        it in a new random order each epoch; and have each ``partial_fit`` call see
        the rows of ``mix`` chunks together (the estimator shuffles its batches
        across them when its own ``shuffle`` is on).
    mix : int, default=2
        With ``shuffle``, how many consecutive chunks each ``partial_fit`` call
        receives at once: rows of different chunks share batches, at the cost of
        holding that many chunks in memory.
    random_state : int, RandomState instance or None, default=None
        Seeds the order of the chunks.

    Returns
    -------
    estimator : skmoe estimator
        The estimator, trained.

    Raises
    ------
    ValueError
        When a chunk's width differs from the first one's, or a classifier meets a
        label outside ``classes`` (``partial_fit``'s checks), or ``n_epochs`` or
        ``mix`` is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MixtureOfExpertsRegressor, fit_chunks
    >>> X = np.random.default_rng(0).normal(size=(600, 3))
    >>> y = X[:, 0] - X[:, 1]
    >>> chunks = lambda: [(X[i : i + 200], y[i : i + 200]) for i in range(0, 600, 200)]
    >>> model = fit_chunks(
    ...     MixtureOfExpertsRegressor(random_state=0), chunks, n_epochs=3,
    ...     random_state=0,
    ... )
    >>> model.n_iter_
    6
    """
    for name, value in (("n_epochs", n_epochs), ("mix", mix)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"fit_chunks: {name} must be an int, got {value!r}.")
        if value < 1:
            raise ValueError(f"fit_chunks: {name} must be at least 1, got {value!r}.")
    rng = check_random_state(random_state)
    fitted = hasattr(estimator, "module_")
    if is_classifier(estimator) and classes is None and not fitted:
        classes = _collect_classes(chunks_factory)
    for _ in range(n_epochs):
        chunks = chunks_factory()
        if shuffle and isinstance(chunks, Sequence):
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        for parts in _grouped(chunks, mix if shuffle else 1):
            X, y, weight = _concatenate(parts)
            kwargs = {} if weight is None else {"sample_weight": weight}
            if is_classifier(estimator) and not hasattr(estimator, "module_"):
                kwargs["classes"] = classes
            estimator.partial_fit(X, y, **kwargs)
    return estimator


def _load(chunk):
    chunk = chunk() if callable(chunk) else chunk
    if not isinstance(chunk, tuple) or len(chunk) not in (2, 3):
        raise ValueError(
            "fit_chunks: each chunk must be a tuple (X, y) or (X, y, sample_weight), "
            f"or a callable returning one; got {type(chunk).__name__}."
        )
    return chunk if len(chunk) == 3 else (*chunk, None)


def _grouped(chunks, size):
    """Loaded chunks, ``size`` at a time."""
    group = []
    for chunk in chunks:
        group.append(_load(chunk))
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _concatenate(parts):
    if len(parts) == 1:
        return parts[0]
    widths = {np.shape(X)[1:] for X, _, _ in parts}
    if len(widths) > 1:
        raise ValueError(
            f"fit_chunks: chunks have different numbers of columns ({sorted(widths)}); "
            "every chunk must have the columns the estimator was fitted on."
        )
    X = _stack([X for X, _, _ in parts])
    y = _stack([y for _, y, _ in parts])
    weights = [w for _, _, w in parts]
    if all(w is None for w in weights):
        return X, y, None
    weights = [
        np.ones(np.shape(y_)[0]) if w is None else np.asarray(w)
        for (_, y_, _), w in zip(parts, weights, strict=True)
    ]
    return X, y, np.concatenate(weights)


def _stack(arrays):
    first = arrays[0]
    if hasattr(first, "iloc"):  # pandas: keep the column names
        import pandas as pd

        return pd.concat(arrays, ignore_index=True)
    if hasattr(first, "tocsr"):
        import scipy.sparse as sp

        return sp.vstack(arrays, format="csr")
    return np.concatenate([np.asarray(a) for a in arrays])


def _collect_classes(chunks_factory):
    """Every output's classes, from one pass over the chunks' targets."""
    found = None
    for chunk in chunks_factory():
        y = np.asarray(_load(chunk)[1])
        y2d = y.reshape(len(y), -1)
        labels = [np.unique(y2d[:, j]) for j in range(y2d.shape[1])]
        found = (
            labels
            if found is None
            else [np.union1d(a, b) for a, b in zip(found, labels, strict=True)]
        )
    if found is None:
        raise ValueError("fit_chunks: chunks_factory returned no chunk.")
    return found[0] if len(found) == 1 else found
