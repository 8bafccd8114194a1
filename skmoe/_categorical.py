"""Vocabularies of categorical columns: counting, choosing, hashing and encoding.

A categorical column of any cardinality becomes integer codes that index the rows of
its embedding table:

- ``0`` is the reserved row: missing values and categories unseen in training;
- ``1..k`` are the kept categories, in sorted order;
- ``k + 1`` is the "infrequent" row, present only when some categories were seen
  fewer than ``min_frequency`` times or fell beyond ``max_categories`` (the meaning
  of these two parameters in scikit-learn's ``OneHotEncoder``).

A hashed column maps each value to one of ``n_buckets`` rows, ``1..n_buckets``, by a
hash of a canonical byte form of the value (BLAKE2b), the same in every process and on
every platform, so that a vocabulary that keeps growing needs no first pass; missing
values keep the reserved row ``0``.

Everything here is vectorised: values are counted with ``pandas.factorize`` and looked
up with a hash index (``pandas.Index.get_indexer``), and Python runs once per distinct
value at most (to sort and to hash), never once per row.
"""

import hashlib
from numbers import Integral, Real

import numpy as np
import pandas as pd

# Codes travel to the network as float32: integers above 2**24 would be rounded.
MAX_EMBEDDING_ROWS = 2**24


def is_categorical_dtype(values):
    """Whether ``values`` is a pandas Series or array of pandas' ``category`` dtype."""
    return isinstance(getattr(values, "dtype", None), pd.CategoricalDtype)


def count_categories(values, weights):
    """The distinct non-missing values of a column and their summed row weights.

    Rows of zero weight count as absent.

    Returns
    -------
    uniques : ndarray of object
    counts : ndarray of float64
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    keep = (codes >= 0) & (weights > 0)
    counts = np.bincount(codes[keep], weights=weights[keep], minlength=len(uniques))
    seen = counts > 0
    return uniques[seen], counts[seen]


def merge_counts(parts):
    """Add up several ``(uniques, counts)`` pairs (from shards of one column)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.empty(0, dtype=object), np.empty(0)
    uniques = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    codes, merged = pd.factorize(uniques)
    totals = np.bincount(codes, weights=counts, minlength=len(merged))
    return np.asarray(merged, dtype=object), totals


def sorted_order(uniques):
    """The permutation that sorts distinct values: numbers numerically, strings
    lexicographically, a mix by type name and then value."""
    kind = pd.api.types.infer_dtype(uniques, skipna=False)
    if kind == "string":
        return np.argsort(uniques.astype(str), kind="stable")
    if kind in ("integer", "floating", "mixed-integer-float", "boolean", "decimal"):
        try:
            return np.argsort(uniques.astype(np.float64), kind="stable")
        except (TypeError, ValueError, OverflowError):
            pass
    keys = [(type(v).__name__, v) for v in uniques.tolist()]
    return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.intp)


def choose_categories(uniques, counts, min_frequency=None, max_categories=None):
    """Split a column's counted values into kept and infrequent categories.

    Parameters
    ----------
    uniques, counts : ndarray
        From :func:`count_categories` or :func:`merge_counts`.
    min_frequency : int, float or None
        Categories counted less than this (an int: rows; a float in (0, 1): a
        fraction of the column's total weight) are infrequent.
    max_categories : int or None
        At most this many output categories, the infrequent one included: the most
        frequent are kept (ties by sorted order).

    Returns
    -------
    kept : list
        Kept categories in sorted order (codes ``1..len(kept)``).
    infrequent : list
        Infrequent categories in sorted order (all of them share code
        ``len(kept) + 1``).
    """
    order = sorted_order(uniques)
    uniques, counts = uniques[order], counts[order]
    frequent = np.ones(len(uniques), dtype=bool)
    if min_frequency is not None:
        threshold = (
            min_frequency
            if isinstance(min_frequency, Integral)
            else min_frequency * counts.sum()
        )
        frequent &= counts >= threshold
    if max_categories is not None and frequent.sum() > max_categories:
        # One output is the infrequent row itself.
        n_keep = max_categories - 1
        candidates = np.flatnonzero(frequent)
        ranked = candidates[np.argsort(-counts[candidates], kind="stable")]
        frequent[:] = False
        frequent[ranked[:n_keep]] = True
    kept = [_plain(v) for v in uniques[frequent].tolist()]
    infrequent = [_plain(v) for v in uniques[~frequent].tolist()]
    return kept, infrequent


def _plain(value):
    """A category as a JSON-friendly Python scalar."""
    return value.item() if isinstance(value, np.generic) else value


class CategoryLookup:
    """Codes of a column's values under a fitted vocabulary (see the module doc).

    Parameters
    ----------
    kept, infrequent : list
        From :func:`choose_categories`.
    """

    def __init__(self, kept, infrequent):
        self.n_kept = len(kept)
        self.has_infrequent = bool(infrequent)
        # The index takes the dtype of the categories (int64, str, ...) so that a
        # column of that dtype is looked up without boxing each value.
        self._index = pd.Index(list(kept) + list(infrequent))

    @property
    def n_rows(self):
        """Rows of the column's embedding table, the reserved row included."""
        return self.n_kept + self.has_infrequent + 1

    def codes(self, values):
        """Integer codes (int64) of ``values``, an array or a pandas Series."""
        if not isinstance(values, pd.Series) and not is_categorical_dtype(values):
            values = pd.Series(np.asarray(values, dtype=object))
        return codes_by_distinct_value(values, self._distinct_codes)

    def _distinct_codes(self, uniques):
        position = self._index.get_indexer(uniques).astype(np.int64)
        codes = position + 1
        codes[position < 0] = 0
        if self.has_infrequent:
            codes[position >= self.n_kept] = self.n_kept + 1
        return codes


def codes_by_distinct_value(values, codes_of):
    """``codes_of(uniques)`` spread back over the rows of ``values``, missing rows
    coded ``0``: each distinct value is coded once (a category column's codes are
    taken as they are, its categories being its distinct values)."""
    rows, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.append(codes_of(uniques), 0).astype(np.int64)
    return codes[rows]  # a missing row's -1 takes the appended 0


def _canonical_bytes(value):
    """A byte form of a category that equal categories share in every process:
    ``1``, ``1.0`` and ``True`` alike (they are one category for a dict as well)."""
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (Integral, np.integer)):
        return b"i" + str(int(value)).encode()
    if isinstance(value, (Real, np.floating)):
        value = float(value)
        if value.is_integer():
            return b"i" + str(int(value)).encode()
        return b"f" + repr(value).encode()
    if isinstance(value, bytes):
        return b"b" + value
    return b"s" + str(value).encode("utf-8", "surrogatepass")


def stable_hash(value):
    """A 64-bit hash of a category, the same in every process and on every platform
    (unlike Python's ``hash``, which is salted per process).

    Examples
    --------
    >>> from skmoe._categorical import stable_hash
    >>> stable_hash("user_42") % 1000, stable_hash(3) == stable_hash(3.0)
    (446, True)
    """
    digest = hashlib.blake2b(_canonical_bytes(value), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class HashedLookup:
    """Codes ``1..n_buckets`` of a column's values by :func:`stable_hash`; missing
    values get ``0``.

    Parameters
    ----------
    n_buckets : int
        Rows of the table besides the reserved one.
    """

    def __init__(self, n_buckets):
        self.n_buckets = int(n_buckets)

    @property
    def n_rows(self):
        """Rows of the column's embedding table, the reserved row included."""
        return self.n_buckets + 1

    def codes(self, values):
        """Integer codes (int64) of ``values``, an array or a pandas Series."""
        return codes_by_distinct_value(values, self._distinct_codes)

    def _distinct_codes(self, uniques):
        return np.fromiter(
            (stable_hash(v) % self.n_buckets + 1 for v in np.asarray(uniques).tolist()),
            dtype=np.int64,
            count=len(uniques),
        )


LIST_TYPES = (list, tuple, set, frozenset, np.ndarray)


def list_cells(values, column, estimator_name, separator=None):
    """A list-valued column's cells as a pandas Series of lists (missing cells as
    missing), splitting strings at ``separator`` where it is given.

    Raises a ``ValueError`` naming ``column`` when list cells and scalar cells mix
    (or, with a separator, when a cell is not a string).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    series = series.reset_index(drop=True).astype(object)
    present = series.notna()  # a list cell, even an empty one, is present
    if separator is not None:
        strings = series[present].map(lambda v: isinstance(v, str))
        if not strings.all():
            raise ValueError(
                f"{estimator_name}: column {column!r} is split at {separator!r}, so "
                "its cells must be strings or missing; found "
                f"{type(series[present][~strings].iloc[0]).__name__}."
            )
        cells = series.str.split(separator, regex=False)
        # An empty string is an empty list, not a list of one empty category.
        return cells.map(lambda cell: [] if cell == [""] else cell, na_action="ignore")
    lists = series[present].map(lambda v: isinstance(v, LIST_TYPES))
    if not lists.all():
        raise ValueError(
            f"{estimator_name}: column {column!r} mixes list cells and scalar cells "
            f"(such as {series[present][~lists].iloc[0]!r}); make every cell a list "
            "(an empty one for none) or every cell a scalar."
        )
    return series


def has_list_cells(values):
    """Whether any cell of an object column is a list, tuple, set or array."""
    dtype = getattr(values, "dtype", None)
    if not isinstance(dtype, np.dtype) or dtype.kind != "O":
        return False  # pandas' string and category dtypes cannot hold lists
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in ("mixed", "mixed-integer", "unknown-array"):
        return False  # strings, numbers, ...: a scan in C said so
    cells = values.tolist() if hasattr(values, "tolist") else list(values)
    return any(isinstance(v, LIST_TYPES) for v in cells)


def explode(cells):
    """The elements of list cells in row order, and each row's number of entries
    among them: an empty or missing cell gives one missing entry.

    Returns
    -------
    elements : pandas Series of object
    entries : ndarray of int64, one per row (``>= 1``)
    """
    lengths = cells.map(len, na_action="ignore").fillna(0).to_numpy(np.int64)
    elements = cells.explode().reset_index(drop=True)
    entries = np.maximum(lengths, 1)
    return elements, entries


def pack_bags(codes, entries, length):
    """Element codes into a ``(n_rows, length)`` float matrix, padded with ``-1``.

    A row keeps its first ``length`` entries, then sorts their codes, so that a
    bag's mean is summed in one order whatever the order of its cell (a set's
    order changes from one process to the next).
    """
    n = len(entries)
    starts = np.cumsum(entries) - entries
    slots = np.arange(len(codes)) - np.repeat(starts, entries)
    rows = np.repeat(np.arange(n), entries)
    keep = slots < length
    rows, codes = rows[keep], codes[keep]
    order = np.lexsort((codes, rows))
    rows, codes = rows[order], codes[order]
    kept = np.minimum(entries, length)
    slots = np.arange(len(codes)) - np.repeat(np.cumsum(kept) - kept, kept)
    out = np.full((n, length), -1.0)
    out[rows, slots] = codes
    return out
