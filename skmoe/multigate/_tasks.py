"""The tasks of a mixed-type ``y``: their names, types, encodings and chains."""

import numpy as np
from sklearn.utils.multiclass import type_of_target

from .._fitted_state import array_from_json, array_to_json
from .._targets import LabelCodes, TargetScaler, _uniform_dtype, missing_mask

TASK_TYPES = ("binary", "multiclass", "regression")
_AUTO_TYPES = {
    "binary": "binary",
    "multiclass": "multiclass",
    "continuous": "regression",
}


def split_columns(y):
    """``y`` as task names, a list of 1-D columns and the missing-label mask.

    Returns ``(names, columns, missing, kind)`` where ``kind`` is ``"frame"`` for a
    pandas DataFrame, ``"1d"`` for a 1-D array and ``"array"`` for a 2-D one.
    """
    if hasattr(y, "columns") and hasattr(y, "iloc"):
        names = list(y.columns)
        if len(set(names)) != len(names):
            raise ValueError(f"y has duplicate column names {names}; name each task.")
        columns = [y[name].to_numpy() for name in names]
        missing = np.column_stack([y[name].isna().to_numpy() for name in names])
        return names, columns, missing.reshape(len(y), len(names)), "frame"
    y = np.asarray(y)
    if y.ndim == 1:
        y, kind = y.reshape(-1, 1), "1d"
    elif y.ndim == 2:
        kind = "array"
    else:
        raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y.shape}.")
    columns = [y[:, j] for j in range(y.shape[1])]
    return list(range(y.shape[1])), columns, missing_mask(y), kind


def _present(column, missing, name):
    present = _uniform_dtype(column[~missing])
    if present.shape[0] == 0:
        raise ValueError(f"Every label of task {name!r} is missing.")
    if present.dtype.kind == "f" and not np.isfinite(present).all():
        raise ValueError(
            f"Input y contains infinity in task {name!r}; use NaN for a missing label."
        )
    return present


def _task_type(requested, present, name):
    try:
        values = np.unique(present)
    except TypeError:
        raise ValueError(
            f"Task {name!r} mixes labels of different types (for example strings "
            "and numbers); give each task labels of one type."
        ) from None
    if values.shape[0] < 2:
        raise ValueError(
            f"Task {name!r} has one value only ({values[0].item()!r}): one class, or a "
            "constant target; a task needs at least two different labels."
        )
    found = type_of_target(present)
    numeric = present.dtype.kind in "biuf"
    if requested == "auto":
        if found not in _AUTO_TYPES:
            raise ValueError(
                f"Cannot infer the type of task {name!r} (its labels look "
                f"{found!r}); pass task_types."
            )
        return _AUTO_TYPES[found]
    if requested == "regression" and not numeric:
        raise ValueError(
            f"task_types says task {name!r} is 'regression' but its labels are not "
            f"numbers (for example {values[0]!r})."
        )
    if requested == "binary" and values.shape[0] != 2:
        raise ValueError(
            f"task_types says task {name!r} is 'binary' but it has "
            f"{values.shape[0]} different labels; use 'multiclass'."
        )
    if requested == "multiclass" and found == "continuous":
        raise ValueError(
            f"task_types says task {name!r} is 'multiclass' but its labels are "
            "continuous numbers; use 'regression'."
        )
    return requested


def _requested_types(task_types, names):
    if isinstance(task_types, str):
        if task_types != "auto" and task_types not in TASK_TYPES:
            raise ValueError(
                f"task_types must be 'auto', one of {TASK_TYPES}, a list or a dict; "
                f"got {task_types!r}."
            )
        return [task_types] * len(names)
    if isinstance(task_types, dict):
        unknown = [k for k in task_types if k not in names]
        if unknown:
            raise ValueError(
                f"task_types names task(s) {unknown} that are not columns of y "
                f"(tasks: {names})."
            )
        requested = [task_types.get(name, "auto") for name in names]
    else:
        requested = list(task_types)
        if len(requested) != len(names):
            raise ValueError(
                f"task_types has {len(requested)} entries but y has {len(names)} "
                "tasks; give one type per task."
            )
    for name, kind in zip(names, requested, strict=True):
        if kind != "auto" and kind not in TASK_TYPES:
            raise ValueError(
                f"task_types gives task {name!r} the type {kind!r}; choose one of "
                f"{('auto', *TASK_TYPES)}."
            )
    return requested


class Tasks:
    """The fitted description of the tasks: names, types, classes and scaling."""

    def __init__(self, names, types, encoders, kind):
        self.names = list(names)
        self.types = list(types)
        # A LabelCodes (one output) per classification task, a TargetScaler per
        # regression task.
        self.encoders = list(encoders)
        self.kind = kind

    @classmethod
    def learn(cls, y, task_types, sample_weight, classes=None):
        names, columns, missing, kind = split_columns(y)
        requested = _requested_types(task_types, names)
        classes = dict(classes or {})
        types, encoders = [], []
        for t, name in enumerate(names):
            present = _present(columns[t], missing[:, t], name)
            if name in classes and requested[t] == "auto":
                given = np.unique(np.asarray(classes[name]))
                requested[t] = "binary" if given.shape[0] == 2 else "multiclass"
            kind_t = _task_type(requested[t], present, name)
            types.append(kind_t)
            if kind_t == "regression":
                values = np.where(missing[:, t], np.nan, columns[t]).astype(np.float64)
                weights = (
                    sample_weight if sample_weight.ndim == 1 else sample_weight[:, t]
                )
                encoders.append(TargetScaler(values.reshape(-1, 1), weights))
            elif name in classes:
                encoders.append(LabelCodes.from_user([classes[name]], 1))
            else:
                encoders.append(LabelCodes([np.unique(present)]))
        unknown = [k for k in classes if k not in names]
        if unknown:
            raise ValueError(f"classes names task(s) {unknown} that are not in y.")
        return cls(names, types, encoders, kind)

    def is_classification(self, t):
        return self.types[t] != "regression"

    def widths(self):
        return [
            self.encoders[t].n_classes()[0] if self.is_classification(t) else 1
            for t in range(len(self.names))
        ]

    def index(self, name):
        return self.names.index(name)

    def encode(self, y, allow_missing, lenient=()):
        """Targets ``(n, n_tasks)`` float: class codes or standardised values, NaN
        where a label is missing (allowed in the tasks ``lenient`` always)."""
        names, columns, missing, _ = split_columns(y)
        if names != self.names and len(names) != len(self.names):
            raise ValueError(
                f"y has {len(names)} tasks but the estimator was fitted with "
                f"{len(self.names)}."
            )
        if self.kind == "frame" and names != self.names:
            raise ValueError(
                f"y's columns {names} differ from the tasks seen in fit {self.names}."
            )
        strict = np.ones(len(names), dtype=bool)
        strict[list(lenient)] = False
        if not allow_missing and missing[:, strict].any():
            task = self.names[int(np.flatnonzero((missing & strict).any(axis=0))[0])]
            raise ValueError(
                f"Input y contains NaN (a missing label in task {task!r}); set "
                "allow_missing_labels=True to train each task on its labelled rows."
            )
        targets = np.full((len(missing), len(names)), np.nan, dtype=np.float32)
        for t, name in enumerate(self.names):
            rows = ~missing[:, t]
            if not rows.any():
                continue
            column = _present(columns[t], missing[:, t], name)
            if self.is_classification(t):
                try:
                    codes = self.encoders[t].encode(column.reshape(-1, 1))
                except ValueError as exc:
                    raise ValueError(f"Task {name!r}: {exc}") from None
                targets[rows, t] = codes[:, 0]
            else:
                if column.dtype.kind not in "biuf":
                    raise ValueError(
                        f"Task {name!r} is a regression task but y holds labels that "
                        "are not numbers."
                    )
                scaled = self.encoders[t].transform(column.astype(np.float64))
                targets[rows, t] = scaled.reshape(-1)
        return targets


def chain_ancestors(task_chain, tasks):
    """``{child index: [ancestor indices, nearest first]}`` of ``task_chain``."""
    if not task_chain:
        return {}
    if not isinstance(task_chain, dict):
        raise ValueError(
            "task_chain must be a dict from a task to the task it follows, such as "
            f"{{'conversion': 'click'}}; got {task_chain!r}."
        )
    for child, parent in task_chain.items():
        for name in (child, parent):
            if name not in tasks.names:
                raise ValueError(
                    f"task_chain names task {name!r}, which is not a task of y "
                    f"(tasks: {tasks.names})."
                )
            if tasks.types[tasks.index(name)] != "binary":
                raise ValueError(
                    f"task_chain links task {name!r} of type "
                    f"{tasks.types[tasks.index(name)]!r}; chained tasks must be "
                    "binary (the parent's larger label is its positive class)."
                )
    chains = {}
    for child in task_chain:
        path, node = [child], task_chain[child]
        while True:
            if node in path:
                cycle = [*path[path.index(node) :], node]
                raise ValueError(
                    "task_chain has a cycle: "
                    + " -> ".join(repr(n) for n in cycle)
                    + "; a chain must end at a task that follows no other."
                )
            path.append(node)
            if node not in task_chain:
                break
            node = task_chain[node]
        chains[tasks.index(child)] = [tasks.index(n) for n in path[1:]]
    return chains


def tasks_to_json(tasks):
    """``tasks`` as JSON-ready values for :mod:`skmoe.persistence`."""
    for name in tasks.names:
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise TypeError(f"cannot save the task name {name!r}")
    encoders = []
    for t, encoder in enumerate(tasks.encoders):
        if tasks.is_classification(t):
            encoders.append({"classes": array_to_json(encoder.classes[0])})
        else:
            encoders.append(
                {"mean": float(encoder.mean[0]), "scale": float(encoder.scale[0])}
            )
    return {
        "names": tasks.names,
        "types": tasks.types,
        "kind": tasks.kind,
        "encoders": encoders,
    }


def tasks_from_json(document):
    """The :class:`Tasks` that :func:`tasks_to_json` described; raise on bad ones."""
    names, types = list(document["names"]), list(document["types"])
    if len(names) != len(types) or any(k not in TASK_TYPES for k in types):
        raise ValueError("the file's task types are invalid")
    if document["kind"] not in ("frame", "array", "1d"):
        raise ValueError("the file's target kind is invalid")
    encoders = []
    for kind, entry in zip(types, document["encoders"], strict=True):
        if kind == "regression":
            scaler = TargetScaler.__new__(TargetScaler)
            scaler.mean = np.array([float(entry["mean"])])
            scaler.scale = np.array([float(entry["scale"])])
            encoders.append(scaler)
        else:
            classes = array_from_json(entry["classes"])
            if len(classes) < 2:
                raise ValueError("a task in the file has fewer than two classes")
            encoders.append(LabelCodes([classes]))
    return Tasks(names, types, encoders, document["kind"])
