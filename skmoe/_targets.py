"""Target encoding shared by the estimators: class labels per output, scaled targets."""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets


def as_2d_target(y):
    """``y`` as an array of shape (n_samples, n_outputs) and whether it was 1-D."""
    y = np.asarray(y)
    if y.ndim == 1:
        return y.reshape(-1, 1), True
    if y.ndim != 2:
        raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y.shape}.")
    return y, False


class LabelCodes:
    """Sorted classes for each output and the codes ``0 .. n_classes - 1`` of labels."""

    def __init__(self, classes):
        self.classes = [np.asarray(c) for c in classes]

    @classmethod
    def from_targets(cls, y2d):
        """Learn each column's classes; every column needs two or more."""
        check_classification_targets(y2d if y2d.shape[1] > 1 else y2d.ravel())
        classes = []
        for j in range(y2d.shape[1]):
            found = np.unique(y2d[:, j])
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

    def encode(self, y2d):
        """Integer codes for ``y2d``; unknown labels are a ``ValueError``."""
        check_classification_targets(y2d if y2d.shape[1] > 1 else y2d.ravel())
        if y2d.shape[1] != len(self.classes):
            raise ValueError(
                f"y has {y2d.shape[1]} outputs but the estimator was fitted with "
                f"{len(self.classes)}."
            )
        codes = np.empty(y2d.shape, dtype=np.int64)
        for j, classes in enumerate(self.classes):
            column = y2d[:, j]
            unknown = ~np.isin(column, classes)
            if unknown.any():
                raise ValueError(
                    "y contains labels not seen in classes: "
                    f"{np.unique(column[unknown])!r} (known: {classes!r})."
                )
            codes[:, j] = np.searchsorted(classes, column)
        return codes

    def decode(self, codes):
        columns = [self.classes[j][codes[:, j]] for j in range(codes.shape[1])]
        if len(columns) == 1:
            return columns[0]
        return np.column_stack(columns)


def _is_list_of_arrays(classes):
    return (
        isinstance(classes, (list, tuple))
        and all(np.ndim(c) == 1 for c in classes)
        and len(classes) > 0
        and not np.isscalar(classes[0])
    )


class TargetScaler:
    """Standardise regression targets per output; a constant output keeps scale 1."""

    def __init__(self, y2d, sample_weight):
        self.mean = np.average(y2d, axis=0, weights=sample_weight)
        var = np.average((y2d - self.mean) ** 2, axis=0, weights=sample_weight)
        scale = np.sqrt(var)
        self.scale = np.where(scale > 0, scale, 1.0)

    def transform(self, y2d):
        return (y2d - self.mean) / self.scale

    def inverse(self, z):
        return z * self.scale + self.mean
