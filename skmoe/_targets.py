"""Target encoding shared by the estimators: class labels per output, scaled targets."""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from ._engine.objectives import MISSING_CLASS


def as_2d_target(y):
    """``y`` as an array of shape (n_samples, n_outputs) and whether it was 1-D."""
    y = np.asarray(y)
    if y.ndim == 1:
        return y.reshape(-1, 1), True
    if y.ndim != 2:
        raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y.shape}.")
    return y, False


def missing_mask(y2d):
    """Where ``y2d`` holds a missing label: NaN, or ``None`` in an object array."""
    if y2d.dtype.kind == "f":
        return np.isnan(y2d)
    if y2d.dtype.kind == "O":
        return np.frompyfunc(
            lambda v: v is None or (isinstance(v, float) and v != v), 1, 1
        )(y2d).astype(bool)
    return np.zeros(y2d.shape, dtype=bool)


class LabelCodes:
    """Sorted classes for each output and the codes ``0 .. n_classes - 1`` of labels."""

    def __init__(self, classes):
        self.classes = [np.asarray(c) for c in classes]

    @classmethod
    def from_targets(cls, y2d, missing=None):
        """Learn each column's classes; every column needs two or more.

        ``missing`` marks entries to leave out (missing labels).
        """
        if missing is None:
            check_classification_targets(y2d if y2d.shape[1] > 1 else y2d.ravel())
        classes = []
        for j in range(y2d.shape[1]):
            column = y2d[:, j] if missing is None else y2d[~missing[:, j], j]
            if missing is not None:
                if column.shape[0] == 0:
                    raise ValueError(f"Every label of output {j} is missing.")
                check_classification_targets(_uniform_dtype(column))
            found = np.unique(_uniform_dtype(column))
            if found.shape[0] < 2:
                where = "" if y2d.shape[1] == 1 else f" in output {j}"
                raise ValueError(
                    "The classifier needs samples of at least 2 classes"
                    f"{where}, but the data contains only one class: {found[0]!r}."
                )
            classes.append(found)
        return cls(classes)

    @classmethod
    def from_user(cls, classes, n_outputs):
        """Classes given to ``partial_fit``: one array per output (a list for many)."""
        if n_outputs == 1 and not _is_list_of_arrays(classes):
            classes = [classes]
        if len(classes) != n_outputs:
            raise ValueError(
                f"classes has {len(classes)} entries but y has {n_outputs} outputs; "
                "pass one array of classes per output."
            )
        out = []
        for j, c in enumerate(classes):
            c = np.unique(np.asarray(c))
            if c.shape[0] < 2:
                raise ValueError(
                    f"classes for output {j} must hold at least 2 classes, got {c!r}."
                )
            out.append(c)
        return cls(out)

    def n_classes(self):
        return [c.shape[0] for c in self.classes]

    def encode(self, y2d, missing=None):
        """Integer codes for ``y2d``; unknown labels are a ``ValueError``.

        Entries flagged in ``missing`` get the code ``MISSING_CLASS``.
        """
        if missing is None:
            check_classification_targets(y2d if y2d.shape[1] > 1 else y2d.ravel())
        if y2d.shape[1] != len(self.classes):
            raise ValueError(
                f"y has {y2d.shape[1]} outputs but the estimator was fitted with "
                f"{len(self.classes)}."
            )
        codes = np.full(y2d.shape, MISSING_CLASS, dtype=np.int64)
        for j, classes in enumerate(self.classes):
            rows = slice(None) if missing is None else ~missing[:, j]
            column = _uniform_dtype(y2d[rows, j])
            unknown = ~np.isin(column, classes)
            if unknown.any():
                raise ValueError(
                    "y contains labels not seen in classes: "
                    f"{np.unique(column[unknown])!r} (known: {classes!r})."
                )
            codes[rows, j] = np.searchsorted(classes, column)
        return codes

    def decode(self, codes):
        columns = [self.classes[j][codes[:, j]] for j in range(codes.shape[1])]
        if len(columns) == 1:
            return columns[0]
        return np.column_stack(columns)


def local_classes(y2d):
    """The labels present in each column of ``y2d`` (missing labels left out), which
    may be fewer than two: one shard's share of a data-parallel fit's classes."""
    missing = missing_mask(y2d)
    return [
        np.unique(_uniform_dtype(y2d[~missing[:, j], j])) for j in range(y2d.shape[1])
    ]


def _uniform_dtype(column):
    """An object column of only numbers or only strings as a plain array."""
    if column.dtype.kind != "O" or column.shape[0] == 0:
        return column
    try:
        return np.asarray(column.tolist())
    except (TypeError, ValueError):
        return column


def _is_list_of_arrays(classes):
    return (
        isinstance(classes, (list, tuple))
        and all(np.ndim(c) == 1 for c in classes)
        and len(classes) > 0
        and not np.isscalar(classes[0])
    )


class TargetScaler:
    """Standardise regression targets per output; a constant output keeps scale 1.

    NaN targets (missing values) are left out of the statistics and stay NaN.
    """

    def __init__(self, y2d, sample_weight):
        self._set(*self.moments(y2d, sample_weight))

    def _set(self, n_present, w_total, mean, sum_squares):
        if not (n_present > 0).all():
            empty = np.flatnonzero(~(n_present > 0))
            raise ValueError(f"Every target of output(s) {empty.tolist()} is missing.")
        self.mean = mean
        scale = np.sqrt(sum_squares / np.maximum(w_total, np.finfo(float).tiny))
        self.scale = np.where(scale > 0, scale, 1.0)

    @staticmethod
    def moments(y2d, sample_weight):
        """Per output: the number and total weight of the present targets, their
        weighted mean and weighted sum of squared deviations from it.
        ``sample_weight`` is one weight per row, or per row and output."""
        present = ~np.isnan(y2d)
        if sample_weight.ndim == 1:
            sample_weight = sample_weight[:, None]
        w = sample_weight * present
        w_total = w.sum(axis=0)
        filled = np.where(present, y2d, 0.0)
        mean = (filled * w).sum(axis=0) / np.maximum(w_total, np.finfo(float).tiny)
        sum_squares = (np.where(present, y2d - mean, 0.0) ** 2 * w).sum(axis=0)
        return present.sum(axis=0), w_total, mean, sum_squares

    @classmethod
    def from_moments(cls, parts):
        """The scaler of the union of several parts' targets, from their
        :meth:`moments` (Chan et al.'s pairwise combination)."""
        n_present, w_total, mean, sum_squares = parts[0]
        for n, w, m, s in parts[1:]:
            n_present = n_present + n
            total = w_total + w
            delta = m - mean
            share = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
            mean = mean + delta * share
            sum_squares = sum_squares + s + delta**2 * w_total * share
            w_total = total
        scaler = cls.__new__(cls)
        scaler._set(n_present, w_total, mean, sum_squares)
        return scaler

    def transform(self, y2d):
        return (y2d - self.mean) / self.scale

    def inverse(self, z):
        return z * self.scale + self.mean
