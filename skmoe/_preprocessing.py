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
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array

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
        missing values and categories unseen in training share a reserved row of
        the column's embedding table, so predicting on unseen ids never raises.
        Columns of any cardinality (user or item ids with millions of values)
        are encoded vectorised. Categorical features need dense ``X``.
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
    min_frequency : int, float or None, default=None
        As in ``OneHotEncoder``: categories seen fewer than ``min_frequency``
        times (an int; a float in (0, 1) is a fraction of the rows, both counted
        with ``sample_weight``) share one "infrequent" row of the column's
        embedding table. ``None``: every category seen in training gets its own row.
    max_categories : int or None, default=None
        As in ``OneHotEncoder``: at most this many rows per categorical column
        besides the reserved one, the infrequent row included; the most frequent
        categories keep their own rows.
    categorical_hash_buckets : int, dict or None, default=None
        Hash a categorical column's values into this many rows instead of learning
        its vocabulary (for vocabularies that are unbounded or still growing, as
        in streaming or ``partial_fit``): an int for every categorical column, or a
        dict from column name (or index) to bucket count. The hash (BLAKE2b of the
        value) is the same in every process and on every platform; distinct values
        may share a row (with ``n`` distinct values in ``b`` buckets, about
        ``n / (2 b)`` of them collide when ``n`` is much smaller than ``b``).
    categorical_embedding_dim : int, dict or None, default=None
        Width of each categorical column's embedding: an int for every column, or a
        dict from column name (or index) to width. ``None`` (or a column the dict
        does not name) uses ``min(16, round(1.6 * n ** 0.56))`` for a table of
        ``n`` rows.
    list_separators : dict or None, default=None
        String columns whose cells are lists joined by a separator, as a dict from
        column name (or index) to separator, such as ``{"genres": "|"}``. A column
        whose cells are lists, tuples, sets or arrays is list-valued without
        being named here. A list-valued column is an embedding bag: its categories
        share one vocabulary (``min_frequency``, ``max_categories`` and hashing
        apply to them) and a row reads the mean of its categories' embeddings,
        the same as the row's multi-hot encoding, normalised, times the table. An
        empty list or a missing cell reads the reserved row; lists longer than
        the longest seen in training keep their first elements. A column that
        mixes list cells and scalar cells is a ``ValueError``.
"""


class CategoryCodes(NamedTuple):
    """One categorical column's encoding (see :meth:`InputEncoder.category_codes`)."""

    column: int
    values: list
    codes: list
    reserved: int


def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "iloc")


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
        self,
        estimator_name,
        categorical_features,
        input_scaling,
        num_embedding,
        min_frequency=None,
        max_categories=None,
        categorical_hash_buckets=None,
        list_separators=None,
    ):
        self.estimator_name = estimator_name
        self.categorical_features = categorical_features
        self.input_scaling = input_scaling
        self.num_embedding = num_embedding
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.categorical_hash_buckets = categorical_hash_buckets
        self.list_separators = list_separators

    @classmethod
    def for_estimator(cls, estimator):
        """An unfitted encoder configured by ``estimator``'s parameters."""
        return cls(
            type(estimator).__name__,
            estimator.categorical_features,
            estimator.input_scaling,
            estimator.num_embedding,
            getattr(estimator, "min_frequency", None),
            getattr(estimator, "max_categories", None),
            getattr(estimator, "categorical_hash_buckets", None),
            getattr(estimator, "list_separators", None),
        )

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
            self.categories, self.infrequent, self.hash_buckets = [], [], []
            self.categorical_names, self.list_lengths = [], []
            return self._numeric(X, sparse=True)
        self.sparse = False
        self.categorical_mask = self._categorical_mask(X, n_features)
        numerical, categorical = self._split(X)
        weights = usable_weights(sample_weight, X.shape[0])
        self._fit_numerical(numerical, weights)
        self._fit_categorical(X, categorical, weights)
        return self._encode(numerical, categorical)

    def _fit_categorical(self, X, categorical, weights, counted=None):
        """Choose each categorical column's vocabulary (or its hash buckets).

        ``counted``, where given, holds each column's :meth:`count_categories` over
        all the data (every shard of a data-parallel fit) instead of
        ``categorical``'s.
        """
        from . import _categorical

        names = [self._categorical_name(X, j) for j in range(len(categorical))]
        self.categorical_names = names
        self.hash_buckets = self._per_column(
            self.categorical_hash_buckets, names, "categorical_hash_buckets"
        )
        if counted is None:
            counted = self._count_columns(categorical, weights)
        self.list_lengths = [length for _, _, length in counted]
        self.categories, self.infrequent = [], []
        for j, (uniques, counts, _) in enumerate(counted):
            if self.hash_buckets[j] is not None:
                self.categories.append(None)
                self.infrequent.append(None)
                continue
            kept, infrequent = _categorical.choose_categories(
                uniques, counts, self.min_frequency, self.max_categories
            )
            if len(kept) + 2 > _categorical.MAX_EMBEDDING_ROWS:
                raise ValueError(
                    f"{self.estimator_name}: categorical feature {names[j]!r} has "
                    f"{len(kept)} categories, more than an embedding table of "
                    f"{_categorical.MAX_EMBEDDING_ROWS} rows holds; set min_frequency "
                    "or max_categories, or hash it with categorical_hash_buckets."
                )
            self.categories.append(kept)
            self.infrequent.append(infrequent)
        self._lookups = None

    def separators(self):
        """Each categorical column's list separator (``None`` where not split)."""
        return self._per_column(
            self.list_separators, self.categorical_names, "list_separators"
        )

    def _column_values(self, j, column):
        """A categorical column's values for its lookup, and, for a list column,
        each row's number of entries among them (``None`` for a scalar column)."""
        if self.list_lengths[j] is None:
            return column, None
        return self._column_values_of(
            column, self.separators()[j], self.categorical_names[j]
        )

    def _column_values_of(self, column, separator, name):
        from . import _categorical

        cells = _categorical.list_cells(column, name, self.estimator_name, separator)
        return _categorical.explode(cells)

    def _per_column(self, spec, names, parameter):
        """``spec`` (None, an int for every column, or a dict by column name or
        index) as one value per categorical column."""
        if not isinstance(spec, dict):
            return [spec] * len(names)
        indices = np.flatnonzero(self.categorical_mask).tolist()
        known = {}
        for j, (name, index) in enumerate(zip(names, indices, strict=True)):
            known[name] = j
            known.setdefault(index, j)
        values = [None] * len(names)
        for key, value in spec.items():
            if key not in known:
                raise ValueError(
                    f"{self.estimator_name}: {parameter} names {key!r}, which is not "
                    f"a categorical column; the categorical columns are {names!r}."
                )
            values[known[key]] = value
        return values

    def embedding_dims(self, spec):
        """Each categorical column's embedding width: ``spec`` (an int for every
        column, or a dict by column name or index) where it says, else
        :func:`skmoe.nn.embeddings.categorical_embedding_size` of the column's
        table."""
        from .nn.embeddings import categorical_embedding_size

        chosen = self._per_column(
            spec, self.categorical_names, "categorical_embedding_dim"
        )
        return [
            int(dim) if dim is not None else categorical_embedding_size(cardinality)
            for dim, cardinality in zip(chosen, self.cardinalities, strict=True)
        ]

    def count_categories(self, X, sample_weight=None):
        """What a shard contributes to the vocabulary of a data-parallel fit: see
        :meth:`_count_columns`."""
        _, categorical = self._split(X)
        return self._count_columns(
            categorical, usable_weights(sample_weight, X.shape[0])
        )

    def _count_columns(self, categorical, weights):
        """Per categorical column, ``(uniques, counts, list_length)``: its distinct
        values (a list column's elements) and their summed row weights (``None``
        for hashed columns), and the slots of its bag, its longest list (at least
        one), or ``None`` for a column of scalar cells."""
        from . import _categorical

        counted = []
        for column, separator, name, buckets in zip(
            categorical,
            self.separators(),
            self.categorical_names,
            self.hash_buckets,
            strict=True,
        ):
            values, entries, length = column, None, None
            if separator is not None or _categorical.has_list_cells(column):
                values, entries = self._column_values_of(column, separator, name)
                length = int(entries.max(initial=1))
            if buckets is not None:
                counted.append((None, None, length))
                continue
            element_weights = weights if entries is None else weights.repeat(entries)
            uniques, counts = _categorical.count_categories(values, element_weights)
            counted.append((uniques, counts, length))
        return counted

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
        counts = local.count_categories(X, sample_weight)
        summaries = exchange((sample, weights, counts, local.has_missing))
        if _is_dataframe(X):
            import pandas as pd

            merged = pd.concat([s[0] for s in summaries], ignore_index=True)
        else:
            merged = np.concatenate([s[0] for s in summaries])
        self.fit_transform(merged, np.concatenate([s[1] for s in summaries]))
        from ._categorical import merge_counts

        counted = []
        for j in range(len(counts)):
            parts = [s[2][j] for s in summaries]
            lengths = [p[2] for p in parts if p[2] is not None]
            length = max(lengths) if lengths else None
            if parts[0][0] is None:  # hashed: no vocabulary to agree on
                counted.append((None, None, length))
            else:
                counted.append((*merge_counts([p[:2] for p in parts]), length))
        self._fit_categorical(merged, [None] * len(counted), None, counted)
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
        """The numerical columns as a float64 array (possibly of no columns) and the
        categorical ones as a list of pandas Series (frames) or object arrays."""
        mask = self.categorical_mask
        if not mask.any():
            return self._numeric(X), []
        if not _is_dataframe(X):
            X = check_array(
                X, dtype=None, ensure_all_finite=False, estimator=self.estimator_name
            )
        if mask.all():
            numerical = np.empty((X.shape[0], 0))
        elif _is_dataframe(X):
            numerical = self._numeric(X.iloc[:, np.flatnonzero(~mask)])
        else:
            numerical = self._numeric(X[:, ~mask])
        if _is_dataframe(X):
            categorical = [X.iloc[:, j] for j in np.flatnonzero(mask)]
        else:
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
        from ._categorical import pack_bags

        for j, (column, lookup) in enumerate(
            zip(categorical, self.lookups(), strict=True)
        ):
            values, entries = self._column_values(j, column)
            try:
                codes = lookup.codes(values)
            except TypeError as error:  # an unhashable cell: a list in a scalar column
                raise ValueError(
                    f"{self.estimator_name}: categorical column "
                    f"{self.categorical_names[j]!r} was fitted on scalar cells; it "
                    f"cannot take list cells ({error})."
                ) from None
            if entries is None:
                columns.append(codes.astype(np.float64)[:, None])
            else:
                columns.append(pack_bags(codes, entries, self.list_lengths[j]))
        return np.hstack(columns)

    def lookups(self):
        """Each categorical column's fitted code lookup (built once, then kept)."""
        if getattr(self, "_lookups", None) is None:
            from ._categorical import CategoryLookup, HashedLookup

            self._lookups = [
                HashedLookup(buckets)
                if buckets is not None
                else CategoryLookup(kept, infrequent or [])
                for kept, infrequent, buckets in zip(
                    self.categories, self.infrequent, self.hash_buckets, strict=True
                )
            ]
        return self._lookups

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_lookups", None)  # rebuilt from the categories on first use
        return state

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
        return (
            self.n_numerical
            + self.n_indicators
            + sum(1 if length is None else length for length in self.bag_sizes)
        )

    @property
    def bag_sizes(self):
        """Slots of each list column's bag, ``None`` for each scalar column."""
        return [] if self.sparse else list(self.list_lengths)

    @property
    def n_numerical(self):
        return int((~self.categorical_mask).sum())

    @property
    def n_indicators(self):
        return 0 if self.sparse else int(sum(self.has_missing))

    @property
    def cardinalities(self):
        """Each categorical column's largest code (its table has one more row)."""
        return [] if self.sparse else [lookup.n_rows - 1 for lookup in self.lookups()]

    def needs_embedding(self):
        """Whether the network needs a :class:`FeatureEmbedding` in front."""
        return bool(self.cardinalities) or self.num_embedding is not None

    def category_codes(self):
        """How each categorical column's raw values become codes, for code outside
        this class (ONNX export) that must encode exactly as :meth:`transform`.

        Returns
        -------
        list of CategoryCodes
            One per categorical column, in the order of the encoded matrix: the
            column's position in ``X``, the raw values that have a code of their own,
            those codes, and the reserved code that every other value (unseen,
            missing) gets.
        """
        if self.sparse:
            return []
        if any(b is not None for b in self.hash_buckets) or any(
            n is not None for n in self.list_lengths
        ):
            raise ValueError("hashed and list-valued columns have no code table")
        positions = np.flatnonzero(self.categorical_mask)
        tables = []
        for j, kept, infrequent in zip(
            positions, self.categories, self.infrequent, strict=True
        ):
            codes = list(range(1, len(kept) + 1))
            codes += [len(kept) + 1] * len(infrequent)  # the shared infrequent row
            tables.append(
                CategoryCodes(int(j), list(kept) + list(infrequent), codes, 0)
            )
        return tables

    # -- persistence ---------------------------------------------------------------
    _STATE = (
        "sparse",
        "has_missing",
        "center",
        "scale",
        "clip",
        "bins",
        "categories",
        "infrequent",
        "hash_buckets",
        "list_lengths",
    )

    def to_json(self):
        """The fitted state as JSON-friendly values."""
        state = {"categorical_mask": self.categorical_mask.tolist()}
        for key in self._STATE:
            state[key] = getattr(self, key, None)
        return state

    @classmethod
    def from_json(cls, state, estimator):
        """Rebuild a fitted encoder for ``estimator`` from :meth:`to_json`'s state."""
        encoder = cls.for_estimator(estimator)
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
            n_categorical = int(mask.sum())
            # Files written before infrequent categories and hashing carry neither.
            columns = {
                "categories": state["categories"],
                "infrequent": state.get("infrequent") or [[]] * n_categorical,
                "hash_buckets": state.get("hash_buckets") or [None] * n_categorical,
                "list_lengths": state.get("list_lengths") or [None] * n_categorical,
            }
            for key, values in columns.items():
                if len(values) != n_categorical:
                    raise ValueError(f"the input encoder's {key} do not match the mask")
            for key in ("hash_buckets", "list_lengths"):
                for count in columns[key]:
                    if count is not None and (
                        isinstance(count, bool)
                        or not isinstance(count, int)
                        or count < 1
                    ):
                        raise TypeError(f"{key} must be positive integers or null")
            encoder.hash_buckets = list(columns["hash_buckets"])
            encoder.list_lengths = list(columns["list_lengths"])
            names = getattr(estimator, "feature_names_in_", None)
            encoder.categorical_names = [
                int(i) if names is None else str(names[i]) for i in np.flatnonzero(mask)
            ]
            for key in ("categories", "infrequent"):
                checked = []
                for values, buckets in zip(
                    columns[key], encoder.hash_buckets, strict=True
                ):
                    if buckets is not None:
                        checked.append(None)
                        continue
                    if not isinstance(values, list) or not all(
                        isinstance(value, (str, int, float, bool)) for value in values
                    ):
                        raise TypeError("categories may only be strings and numbers")
                    checked.append(list(values))
                setattr(encoder, key, checked)
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
        encoder.infrequent, encoder.hash_buckets = [], []
        encoder.categorical_names, encoder.list_lengths = [], []
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
