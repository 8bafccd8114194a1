"""The estimators' fitted input encoder: raw columns to the matrix the network reads.

:class:`InputEncoder` is fitted on the first call to ``fit`` (or ``partial_fit``) and
turns any later ``X`` into a float matrix laid out as ``[numerical | missing
indicators | categorical codes]``, the layout that
:class:`skmoe.nn.embeddings.FeatureEmbedding` reads:

- numerical columns are scaled robustly (median, interquartile range) and, where
  their training values have outliers (``"auto"``) or always (``"robust"``), clipped
  smoothly into about ``(-3, 3)`` with ``x / sqrt(1 + (x / 3)^2)`` (as in RealMLP,
  Holzmüller et al. 2024), or left as they are (``None``); a NaN becomes ``0`` (the
  median) and, in columns that had NaN in training, sets that column's missing
  indicator;
- categorical columns become integer codes ``1..k`` in the order of their sorted
  categories; ``0`` is the reserved slot for missing values and categories unseen in
  training.

Sparse input is passed on as it is (no scaling, no categorical columns): its zeros
stay zeros and it is never densified whole.

Its state is plain numbers, strings and lists (:meth:`InputEncoder.to_json`), which
:mod:`skmoe.persistence` stores as JSON.
"""

import copy
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array

# A categorical column with more categories than this is refused: one-hot or target
# encode it, or pass it as numerical.
MAX_CATEGORIES = 1000
N_BINS = 16
_CLIP = 3.0
# With input_scaling="auto", a column is clipped when one of its training values lies
# further than this many robust standard deviations (IQR / 1.349) from its median: a
# Gaussian column reaches it with probability 2e-9 a row, so it stays linear.
OUTLIER_Z = 6.0
# Scaled values are clipped to this before the smooth clip, here and in ONNX graphs.
Z_LIMIT = 1e6
_BLOCK_ROWS = 65_536
# In a data-parallel fit, each process adds at most this many rows to the sample that
# the scaling statistics and bins are computed on.
SHARED_SAMPLE_ROWS = 20_000


INPUT_PARAMETERS_DOC = """\
    num_embedding : {"periodic", "piecewise_linear"} or None, default=None
        Embedding of each numerical feature before the network (Gorishniy et al.,
        NeurIPS 2022). ``"periodic"``: sines and cosines of learned frequencies, then
        a linear layer and ReLU per feature. ``"piecewise_linear"``: a
        piecewise-linear encoding over 16 quantile bins of the training data, then a
        linear layer and ReLU per feature. ``None`` feeds the (scaled) features
        directly. Needs dense ``X``.
    categorical_features : "from_dtype", array-like of int, str or bool, or None, \
default="from_dtype"
        Categorical columns, each given a learned embedding, as in
        ``HistGradientBoostingClassifier``: ``"from_dtype"`` takes a DataFrame's
        ``category``, ``object`` and string columns (none for arrays); else column
        indices, column names (DataFrame input) or a boolean mask; ``None`` for
        none. Categories are learned in ``fit`` (the first call of ``partial_fit``);
        missing values and categories unseen in training share a reserved slot. A
        column may have at most 1000 categories (more is a ``ValueError``).
        Categorical features need dense ``X``.
    input_scaling : {"auto", "robust"} or None, default="auto"
        ``"auto"`` and ``"robust"`` centre each numerical feature on its median and
        divide it by its interquartile range over 1.349 (the standard deviation
        where that is zero), so unscaled columns can go straight into ``fit``.
        ``"robust"`` then clips every feature smoothly into about (-3, 3) with
        ``z / sqrt(1 + (z/3)^2)``. ``"auto"`` clips only the features with outliers:
        those with a training value more than 6 of these units from the median
        (heavy tails, rare extreme values); the others, such as Gaussian or bounded
        features, stay linear, as after a ``StandardScaler``, where the clip would
        bend them (values outside the training range then pass on linearly too).
        ``None`` uses the features as given (for features already scaled
        beforehand). ONNX export and data-parallel fits support all three; in a
        data-parallel fit the statistics and the choice of clipped features come
        from every rank's rows. Sparse ``X`` is never scaled (its zeros stay
        zeros). NaN in a numerical feature is always allowed in dense ``X``: it
        reads as the median when scaled and as 0 without, and columns that had NaN
        in training get a missing-value indicator (all-NaN columns carry only their
        indicator). Statistics come from ``fit`` (the first call of
        ``partial_fit``).
"""


def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "iloc")


def _missing(values):
    """Boolean mask of missing entries (None, NaN, pandas.NA) in an object array."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is there whenever X is a frame
        return np.array([v is None or v != v for v in values], dtype=bool)
    return np.asarray(pd.isna(values), dtype=bool)


def _plain(value):
    """A category as a JSON-friendly Python scalar."""
    return value.item() if isinstance(value, np.generic) else value


class InputEncoder:
    """Fitted mapping of raw ``X`` to the network's input matrix.

    Parameters
    ----------
    estimator_name : str
        Named in error messages.
    categorical_features : "from_dtype", array-like of int, str or bool, or None
        Which columns are categorical, as in ``HistGradientBoostingClassifier``.
    input_scaling : {"auto", "robust", None}
        Scaling of the numerical columns.
    num_embedding : {None, "periodic", "piecewise_linear"}
        Whether piecewise-linear bins are needed.
    """

    def __init__(
        self, estimator_name, categorical_features, input_scaling, num_embedding
    ):
        self.estimator_name = estimator_name
        self.categorical_features = categorical_features
        self.input_scaling = input_scaling
        self.num_embedding = num_embedding

    # -- fitting ----------------------------------------------------------------------
    def _categorical_mask(self, X, n_features):
        spec = self.categorical_features
        name = self.estimator_name
        frame = _is_dataframe(X)
        if spec is None:
            return np.zeros(n_features, dtype=bool)
        if isinstance(spec, str):  # "from_dtype": the parameter's only string
            if not frame:
                return np.zeros(n_features, dtype=bool)
            return np.array(
                [getattr(d, "kind", "O") not in "biufc" for d in X.dtypes], dtype=bool
            )
        spec = list(np.asarray(spec, dtype=object).ravel())
        if not spec:
            return np.zeros(n_features, dtype=bool)
        if all(isinstance(s, (bool, np.bool_)) for s in spec):
            if len(spec) != n_features:
                raise ValueError(
                    f"{name}: categorical_features as a boolean mask needs one entry "
                    f"per feature ({n_features}), got {len(spec)}."
                )
            return np.array(spec, dtype=bool)
        mask = np.zeros(n_features, dtype=bool)
        if all(isinstance(s, str) for s in spec):
            if not frame:
                raise ValueError(
                    f"{name}: categorical_features names columns ({spec!r}) but X "
                    "has no column names; pass a DataFrame or use column indices."
                )
            columns = [str(c) for c in X.columns]
            for s in spec:
                if s not in columns:
                    raise ValueError(
                        f"{name}: categorical feature {s!r} is not a column of X."
                    )
                mask[columns.index(s)] = True
            return mask
        for s in spec:
            if isinstance(s, (bool, np.bool_)) or not isinstance(
                s, (Integral, np.integer)
            ):
                raise ValueError(
                    f"{name}: categorical_features must be 'from_dtype', a boolean "
                    "mask, column indices or column names; got "
                    f"{self.categorical_features!r}."
                )
            if not -n_features <= s < n_features:
                raise ValueError(
                    f"{name}: categorical feature index {s} is out of range for "
                    f"{n_features} features."
                )
            mask[s] = True
        return mask

    def fit_transform(self, X, sample_weight=None):
        """Fit the encoder on raw ``X`` and return the encoded training matrix.

        Quantiles are weighted by ``sample_weight``, so that a row of weight ``k``
        counts as ``k`` repeated rows; weights that are not one non-negative finite
        number per row are ignored here (the estimator refuses them itself).
        """
        if not sp.issparse(X) and not _is_dataframe(X):
            X = check_array(
                X,
                dtype=None,
                ensure_all_finite=False,
                input_name="X",
                estimator=self.estimator_name,
            )
        n_features = X.shape[1]
        if sp.issparse(X):
            mask = self._categorical_mask(X, n_features)
            if mask.any():
                raise ValueError(
                    f"{self.estimator_name}: categorical features need dense input; "
                    "X is a sparse matrix."
                )
            if self.num_embedding is not None:
                raise ValueError(
                    f"{self.estimator_name}: num_embedding={self.num_embedding!r} "
                    "needs dense input; X is a sparse matrix. Use num_embedding=None "
                    "with sparse data."
                )
            self.sparse = True
            self.categorical_mask = mask
            return self._numeric(X, sparse=True)
        self.sparse = False
        self.categorical_mask = self._categorical_mask(X, n_features)
        numerical, categorical = self._split(X)
        weights = usable_weights(sample_weight, X.shape[0])
        self._fit_numerical(numerical, weights)
        self.categories = []
        for j, column in enumerate(categorical):
            values = column[~_missing(column) & (weights > 0)]
            categories = sorted({_plain(v) for v in values}, key=_sort_key)
            if len(categories) > MAX_CATEGORIES:
                raise ValueError(
                    f"{self.estimator_name}: categorical feature "
                    f"{self._categorical_name(X, j)!r} has {len(categories)} "
                    f"categories, more than the {MAX_CATEGORIES} supported; group "
                    "rare categories, encode it yourself, or treat it as numerical."
                )
            self.categories.append(categories)
        return self._encode(numerical, categorical)

    def fit_transform_shared(self, X, sample_weight, exchange):
        """Fit the encoder on data spread over several processes; encode local ``X``.

        ``exchange(summary)`` hands this process's summary to every process and
        returns all of them (rank 0's first). The scaling statistics and bins come
        from the union of every process's sample of at most
        :data:`SHARED_SAMPLE_ROWS` rows, which is every row when the shards are that
        small (then the encoder is the one a single process fits on all rows); the
        categories and missing-value columns from every row of every shard.
        """
        local = copy.copy(self)
        local.fit_transform(X, sample_weight)  # checks X; local categories
        if local.sparse:
            self.__dict__.update(local.__dict__)
            exchange(None)
            return self.transform(X)
        n_rows = X.shape[0]
        rows = np.arange(n_rows)
        if n_rows > SHARED_SAMPLE_ROWS:
            rng = np.random.default_rng(0)
            rows = np.sort(rng.choice(n_rows, SHARED_SAMPLE_ROWS, replace=False))
        sample = X.iloc[rows] if _is_dataframe(X) else np.asarray(X)[rows]
        weights = usable_weights(sample_weight, n_rows)[rows]
        summaries = exchange((sample, weights, local.categories, local.has_missing))
        if _is_dataframe(X):
            import pandas as pd

            merged = pd.concat([s[0] for s in summaries], ignore_index=True)
        else:
            merged = np.concatenate([s[0] for s in summaries])
        self.fit_transform(merged, np.concatenate([s[1] for s in summaries]))
        self.categories = [
            sorted({v for s in summaries for v in s[2][j]}, key=_sort_key)
            for j in range(len(local.categories))
        ]
        self.has_missing = [
            any(s[3][j] for s in summaries) for j in range(len(local.has_missing))
        ]
        return self.transform(X)

    def _categorical_name(self, X, j):
        index = np.flatnonzero(self.categorical_mask)[j]
        return str(X.columns[index]) if _is_dataframe(X) else int(index)

    def _fit_numerical(self, numerical, weights):
        n = numerical.shape[1]
        # Rows of zero weight count as absent, here as in the quantiles.
        self.has_missing = np.isnan(numerical[weights > 0]).any(axis=0).tolist()
        center, scale = np.zeros(n), np.ones(n)
        clip = [None] * n
        if self.input_scaling is not None:
            for j, column in enumerate(numerical.T):
                q25, median, q75 = _weighted_quantiles(
                    column, weights, (0.25, 0.5, 0.75)
                )
                spread = (q75 - q25) / 1.349
                if not spread > 0:
                    spread = _weighted_std(column, weights)
                center[j] = median if np.isfinite(median) else 0.0
                scale[j] = spread if np.isfinite(spread) and spread > 0 else 1.0
                if self.input_scaling == "robust" or _has_outliers(
                    column, weights, center[j], scale[j]
                ):
                    clip[j] = _CLIP
        self.center = center.tolist()
        self.scale = scale.tolist()
        self.clip = clip
        self.bins = None
        if self.num_embedding == "piecewise_linear":
            quantiles = np.linspace(0.0, 1.0, N_BINS + 1)
            self.bins = []
            for column in self._scale(numerical).T:
                edges = np.unique(_weighted_quantiles(column, weights, quantiles))
                edges = edges[np.isfinite(edges)]
                if len(edges) < 2:
                    low = float(edges[0]) if len(edges) else 0.0
                    edges = [low - 1.0, low + 1.0]
                self.bins.append([float(e) for e in edges])

    # -- transforming -----------------------------------------------------------------
    def _numeric(self, X, sparse=False):
        if not sparse and plain_float_rows(X):
            # What check_array would return, without its per-call cost.
            X = X.astype(np.float64, copy=False)
            if not np.isinf(X).any():
                return X
        return check_array(
            X,
            input_name="X",
            estimator=self.estimator_name,
            accept_sparse="csr" if sparse else False,
            dtype=(np.float64, np.float32) if sparse else np.float64,
            ensure_all_finite=True if sparse else "allow-nan",
            ensure_min_features=0 if not sparse else 1,
        )

    def _split(self, X):
        mask = self.categorical_mask
        if not mask.any():
            return self._numeric(X), []
        if _is_dataframe(X):
            numerical = self._numeric(X.iloc[:, np.flatnonzero(~mask)])
            categorical = [
                np.asarray(X.iloc[:, j].to_numpy(dtype=object), dtype=object)
                for j in np.flatnonzero(mask)
            ]
            return numerical, categorical
        X = check_array(
            X, dtype=None, ensure_all_finite=False, estimator=self.estimator_name
        )
        numerical = self._numeric(X[:, ~mask])
        categorical = [X[:, j].astype(object) for j in np.flatnonzero(mask)]
        return numerical, categorical

    def clip_limits(self):
        """Each numerical column's clip ``c`` in ``z / sqrt(1 + (z/c)^2)``, a float
        array: ``3`` where the column is clipped, ``inf`` where it stays linear
        (``z / inf`` is 0, so the same formula leaves it unchanged)."""
        clip = getattr(self, "clip", None)
        if clip is None:  # unpickled from before per-column clips: all were clipped
            return np.full(len(self.center), _CLIP)
        return np.array([np.inf if c is None else c for c in clip], dtype=float)

    def _scale(self, numerical):
        """The scaled and smoothly clipped columns: a new array (``numerical`` itself
        without scaling), computed in blocks of rows so that the temporaries stay
        small next to the result."""
        if self.input_scaling is None:
            return numerical
        z = numerical - np.asarray(self.center)
        z /= np.asarray(self.scale)
        # Beyond 1e6 the clip's value is within 1e-11 of +-3 (and (z/3)^2 cannot
        # overflow); the ONNX graph does the same.
        np.clip(z, -Z_LIMIT, Z_LIMIT, out=z)
        limits = self.clip_limits()
        if np.isinf(limits).all():
            return z
        for start in range(0, z.shape[0], _BLOCK_ROWS):
            block = z[start : start + _BLOCK_ROWS]
            root = block / limits
            np.square(root, out=root)
            root += 1.0
            np.sqrt(root, out=root)
            block /= root  # z / sqrt(1 + (z/c)^2)
        return z

    def _encode(self, numerical, categorical):
        scaled = self._scale(numerical)
        missing = np.isnan(scaled)
        indicators = np.flatnonzero(self.has_missing)
        if missing.any():
            if scaled is numerical:
                scaled = scaled.copy()  # never write into the caller's array
            scaled[missing] = 0.0
        if not indicators.size and not categorical:
            return scaled if scaled is not numerical else scaled.copy()
        columns = [scaled]
        if indicators.size:
            columns.append(missing[:, indicators].astype(np.float64))
        for values, categories in zip(categorical, self.categories, strict=True):
            index = {c: i + 1 for i, c in enumerate(categories)}
            codes = np.zeros(len(values))
            present = ~_missing(values)
            codes[present] = [index.get(_plain(v), 0) for v in values[present]]
            columns.append(codes[:, None])
        return np.hstack(columns)

    def transform(self, X):
        """Encode raw ``X`` (same columns as in fit) with the fitted state."""
        if sp.issparse(X):
            if not self.sparse and (
                self.categorical_mask.any() or self.num_embedding is not None
            ):
                raise ValueError(
                    f"{self.estimator_name} was fitted with categorical features or "
                    "numerical embeddings; it needs dense X."
                )
            X = self._numeric(X, sparse=True)
            if self.sparse or (
                self.input_scaling is None and not any(self.has_missing)
            ):
                return X  # nothing to change: the zeros stay implicit
            X = X.toarray()
        elif self.sparse:
            return self._numeric(X, sparse=True)
        numerical, categorical = self._split(X)
        return self._encode(numerical, categorical)

    # -- the module's layout ----------------------------------------------------------
    @property
    def n_columns(self):
        """Width of the encoded matrix."""
        return self.n_numerical + self.n_indicators + len(self.cardinalities)

    @property
    def n_numerical(self):
        return int((~self.categorical_mask).sum())

    @property
    def n_indicators(self):
        return 0 if self.sparse else int(sum(self.has_missing))

    @property
    def cardinalities(self):
        return [] if self.sparse else [len(c) for c in self.categories]

    def needs_embedding(self):
        """Whether the network needs a :class:`FeatureEmbedding` in front."""
        return bool(self.cardinalities) or self.num_embedding is not None

    # -- persistence ---------------------------------------------------------------
    _STATE = ("sparse", "has_missing", "center", "scale", "clip", "bins", "categories")

    def to_json(self):
        """The fitted state as JSON-friendly values."""
        state = {"categorical_mask": self.categorical_mask.tolist()}
        for key in self._STATE:
            state[key] = getattr(self, key, None)
        return state

    @classmethod
    def from_json(cls, state, estimator):
        """Rebuild a fitted encoder for ``estimator`` from :meth:`to_json`'s state."""
        encoder = cls(
            type(estimator).__name__,
            estimator.categorical_features,
            estimator.input_scaling,
            estimator.num_embedding,
        )
        mask = np.asarray(state["categorical_mask"], dtype=bool)
        if mask.shape != (estimator.n_features_in_,):
            raise ValueError("the categorical mask does not match n_features_in_")
        encoder.categorical_mask = mask
        encoder.sparse = bool(state["sparse"])
        if not encoder.sparse:
            n_num = int((~mask).sum())
            for key in ("has_missing", "center", "scale"):
                if len(state[key]) != n_num:
                    raise ValueError(f"the input encoder's {key} has the wrong length")
            encoder.has_missing = [bool(v) for v in state["has_missing"]]
            encoder.center = [float(v) for v in state["center"]]
            encoder.scale = [float(v) for v in state["scale"]]
            encoder.clip = _clip_from_json(state.get("clip"), n_num, encoder)
            bins = state["bins"]
            encoder.bins = (
                None if bins is None else [[float(b) for b in e] for e in bins]
            )
            categories = state["categories"]
            if len(categories) != int(mask.sum()):
                raise ValueError("the input encoder's categories do not match the mask")
            for values in categories:
                for value in values:
                    if not isinstance(value, (str, int, float, bool)):
                        raise TypeError("categories may only be strings and numbers")
            encoder.categories = [list(c) for c in categories]
        return encoder

    @classmethod
    def identity(cls, estimator):
        """A fitted encoder that passes dense numerical ``X`` on unchanged."""
        encoder = cls(type(estimator).__name__, None, None, None)
        n = estimator.n_features_in_
        encoder.categorical_mask = np.zeros(n, dtype=bool)
        encoder.sparse = False
        encoder.has_missing = [False] * n
        encoder.center, encoder.scale = [0.0] * n, [1.0] * n
        encoder.clip = [None] * n
        encoder.bins, encoder.categories = None, []
        return encoder


def plain_float_rows(X):
    """Whether ``X`` is a 2-D float ndarray with rows and columns, which scikit-learn's
    ``check_array`` would take as it is (up to a float64 cast and, where asked, the
    check for infinity): a single row is then validated without its per-call cost."""
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype.kind == "f"
        and X.shape[0] > 0
        and X.shape[1] > 0
    )


def usable_weights(sample_weight, n_rows):
    if sample_weight is None:
        return np.ones(n_rows)
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        return np.ones(n_rows)
    if weights.ndim == 0:
        weights = np.full(n_rows, float(weights))
    if (
        weights.shape != (n_rows,)
        or not np.isfinite(weights).all()
        or (weights < 0).any()
    ):
        return np.ones(n_rows)
    return weights


def _weighted_quantiles(column, weights, quantiles):
    """Each quantile: the smallest value whose cumulative weight reaches it (a row of
    weight ``k`` counts as ``k`` rows; NaN and zero-weight rows are left out)."""
    keep = ~np.isnan(column) & (weights > 0)
    values, weights = column[keep], weights[keep]
    if not values.size:
        return np.full(len(quantiles), np.nan)
    if (weights == 1.0).all():
        # Unit weights: the cumulative weight of the i-th smallest value is exactly
        # i + 1, so the sought positions are known and a partial sort finds the same
        # values as the full one (several times faster on large columns).
        n = len(values)
        target = np.asarray(quantiles, dtype=np.float64) * float(n)
        index = np.clip(np.ceil(target).astype(np.intp) - 1, 0, n - 1)
        return np.partition(values, index)[index]
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weights[order])
    index = np.searchsorted(cumulative, np.asarray(quantiles) * cumulative[-1])
    return values[np.minimum(index, len(values) - 1)]


def _has_outliers(column, weights, center, scale):
    """Whether a training value of ``column`` (NaN and zero-weight rows left out)
    lies more than :data:`OUTLIER_Z` scaled units from ``center``."""
    keep = ~np.isnan(column) & (weights > 0)
    if not keep.any():
        return False
    return bool(np.abs(column[keep] - center).max() > OUTLIER_Z * scale)


def _clip_from_json(clip, n_numerical, encoder):
    """The per-column clips of a saved encoder; files written before they were saved
    (every column clipped under ``"robust"``) get what that version did."""
    if clip is None:
        value = None if encoder.input_scaling is None else _CLIP
        return [value] * n_numerical
    if len(clip) != n_numerical:
        raise ValueError("the input encoder's clip has the wrong length")
    if any(c is not None and c != _CLIP for c in clip):
        raise ValueError(f"the input encoder's clips must be {_CLIP} or null")
    return [None if c is None else _CLIP for c in clip]


def _weighted_std(column, weights):
    keep = ~np.isnan(column) & (weights > 0)
    if not keep.any():
        return np.nan
    values, weights = column[keep], weights[keep]
    mean = np.average(values, weights=weights)
    return float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))


def _sort_key(value):
    return (type(value).__name__, value)
