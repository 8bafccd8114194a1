"""skl2onnx converters for the skmoe estimators.

Registering them (:func:`register_converters`) lets ``skl2onnx.to_onnx`` convert a
skmoe estimator on its own or as the last step of a scikit-learn ``Pipeline``, into one
graph. Classifiers output ``label`` and ``probabilities`` tensors (skl2onnx's
``zipmap=False``; the options ``zipmap`` and ``nocl`` work as for skl2onnx's own
classifiers), one ``probabilities_<j>`` per output for several outputs; regressors
output ``variable`` of shape ``(rows, n_outputs)``, mapped back from the standardised
scale the model was trained on; :class:`~skmoe.MultiGateMoE` outputs
``label_<task>`` and ``probabilities_<task>`` per classification task and
``variable_<task>`` per regression task.

The estimator reads either one numerical input of all its columns, or one input per
column (as skl2onnx declares a DataFrame's columns): categorical columns are then
strings or numbers, mapped to the input encoder's codes inside the graph.
"""

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.base import is_classifier

from ..mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from ..multigate import MultiGateMoE, MultiGateMoEClassifier, MultiGateMoERegressor
from ._graph import (
    MIN_OPSET,
    GraphBuilder,
    check_exportable,
    emit_category_codes,
    emit_input_encoder,
    emit_module,
)

SUPPORTED = (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
    MultiGateMoE,
)
CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False]}


def check_estimator_exportable(estimator):
    """Refuse what the converters cannot export, naming the public parameter (or
    the estimator type) that prevents it."""
    if type(estimator) not in SUPPORTED:
        names = ", ".join(cls.__name__ for cls in SUPPORTED)
        raise TypeError(
            f"ONNX export supports {names}; got {type(estimator).__name__}."
        )
    encoder = estimator._input_encoder
    columns = np.flatnonzero(encoder.categorical_mask)
    for j, buckets, length in zip(
        columns, encoder.hash_buckets, encoder.list_lengths, strict=True
    ):
        name = column_name(estimator, j)
        if buckets is not None:
            raise TypeError(
                f"ONNX export of {type(estimator).__name__}: categorical feature "
                f"{name!r} is hashed (categorical_hash_buckets), which the graph "
                "cannot compute; fit without hashing that column to export, or "
                "hash it yourself into integer codes before fit."
            )
        if length is not None:
            raise TypeError(
                f"ONNX export of {type(estimator).__name__}: categorical feature "
                f"{name!r} is list-valued (list cells or list_separators), which "
                "has no ONNX input type here; encode it into columns before fit "
                "(for instance a multi-hot encoding) to export."
            )
    for table in encoder.category_codes():
        kinds = {isinstance(v, str) for v in table.values}
        if len(kinds) > 1:
            raise TypeError(
                f"ONNX export of {type(estimator).__name__}: categorical feature "
                f"{column_name(estimator, table.column)!r} (categorical_features) "
                "has both string and number categories, but an ONNX input has one "
                "type. Convert that column to strings before fit, or leave it out "
                "of categorical_features."
            )
    check_exportable(estimator.module_)


def column_name(estimator, j):
    """The name of input column ``j``: the DataFrame's column name, else ``x<j>``."""
    names = getattr(estimator, "feature_names_in_", None)
    return str(names[j]) if names is not None else f"x{j}"


def categorical_input_type(table):
    """The ONNX tensor type of a categorical column's input: strings for string
    categories, float64 for numbers (exact, and NaN can mark a missing value)."""
    if table.values and all(isinstance(v, str) for v in table.values):
        return StringTensorType
    return DoubleTensorType


def _class_arrays(estimator):
    classes = estimator.classes_
    if isinstance(classes, dict):  # MultiGateMoE: the classification tasks
        return list(classes.values())
    return list(classes) if isinstance(classes, list) else [classes]


def _label_kind(classes, estimator):
    kinds = {np.asarray(c).dtype.kind for c in classes}
    if "O" in kinds:  # labels held as Python objects: the kinds of the values
        kinds = {
            "U" if isinstance(v, str) else np.asarray(v).dtype.kind
            for c in classes
            for v in np.asarray(c).ravel()
        }
    kinds = {"i" if k in "iub" else "U" if k in "US" else k for k in kinds}
    if kinds == {"f"} and all(
        np.all(np.mod(np.asarray(c, dtype=np.float64), 1) == 0) for c in classes
    ):
        kinds = {"i"}  # whole numbers: int64 labels, as skl2onnx's classifiers give
    if len(kinds) != 1 or not kinds <= {"i", "U", "f"}:
        raise TypeError(
            f"ONNX export needs the class labels of {type(estimator).__name__} to be "
            "all integers, all strings or all floats; got a mixture."
        )
    return kinds.pop()


def _graph_float_type(inputs):
    """Float64 when every float input is float64, else float32."""
    floats = [
        v.type
        for v in inputs
        if isinstance(v.type, (FloatTensorType, DoubleTensorType))
    ]
    if floats and all(isinstance(t, DoubleTensorType) for t in floats):
        return DoubleTensorType
    return FloatTensorType


def _options(scope, model):
    """The options ``zipmap`` and ``nocl`` as skl2onnx's classifiers take them:
    ``zipmap`` defaults to True, as there (``skmoe.to_onnx`` sets it to False)."""
    if not isinstance(model, _CLASSIFIERS):
        return {"zipmap": False, "nocl": False}
    return scope.get_options(model, dict(zipmap=True, nocl=False))


def _outputs(model, nocl=False):
    """``(name, kind, index)`` of each output: kind ``"label"``,
    ``"probabilities"`` or ``"variable"``; ``index`` the output (or task)."""
    if isinstance(model, MultiGateMoE):
        outputs = []
        for t, name in enumerate(model.task_names_):
            if model._tasks.is_classification(t):
                outputs.append((f"label_{name}", "label", t))
                outputs.append((f"probabilities_{name}", "probabilities", t))
            else:
                outputs.append((f"variable_{name}", "variable", t))
        return outputs
    if not is_classifier(model):
        return [("variable", "variable", None)]
    n_outputs = len(_class_arrays(model))
    if n_outputs == 1:
        return [("label", "label", None), ("probabilities", "probabilities", 0)]
    return [("label", "label", None)] + [
        (f"probabilities_{j}", "probabilities", j) for j in range(n_outputs)
    ]


def _label_type(model, classes, float_type, options):
    if options["nocl"]:
        return Int64TensorType
    kind = _label_kind(classes, model)
    return {"i": Int64TensorType, "U": StringTensorType}.get(kind, float_type)


def _parser(scope, model, inputs, custom_parsers=None):
    """Declare the outputs; with ``zipmap``, hand the probabilities to skl2onnx's
    ZipMap as skl2onnx's own classifiers do."""
    operator = scope.declare_local_operator(_alias(type(model)), model)
    operator.inputs = inputs
    float_type = _graph_float_type(inputs)
    options = _options(scope, model)
    for name, kind, index in _outputs(model):
        if kind == "label":
            classes = (
                [model.classes_[model.task_names_[index]]]
                if isinstance(model, MultiGateMoE)
                else _class_arrays(model)
            )
            var_type = _label_type(model, classes, float_type, options)
        else:
            var_type = float_type
        operator.outputs.append(scope.declare_local_variable(name, var_type()))
    if not isinstance(model, _CLASSIFIERS):
        return list(operator.outputs)
    if isinstance(model.classes_, list):
        # Several outputs: tensors, as skl2onnx's MultiOutputClassifier gives.
        if options["zipmap"] == "columns":
            raise ValueError(
                "The option zipmap='columns' needs a classifier with one output; "
                f"this {type(model).__name__} has {len(model.classes_)}. Its label "
                "and per-output probabilities are tensors."
            )
        return list(operator.outputs)
    if options["zipmap"] is False:
        return list(operator.outputs)
    from skl2onnx._parse import _apply_zipmap

    return list(
        _apply_zipmap(
            options["zipmap"],
            scope,
            model,
            operator.outputs[1].type,
            list(operator.outputs),
        )
    )


def _shape_calculator(operator):
    estimator = operator.raw_operator
    check_estimator_exportable(estimator)
    inputs = operator.inputs
    n_features = estimator.n_features_in_
    name = type(estimator).__name__
    if len(inputs) == 1:
        shape = inputs[0].type.shape or []
        width = shape[1] if len(shape) > 1 else None
        if isinstance(width, int) and width != n_features:
            raise ValueError(
                f"{name} was fitted on {n_features} features, but the ONNX input "
                f"has {width} columns."
            )
    elif len(inputs) != n_features:
        raise ValueError(
            f"{name} was fitted on {n_features} features; give it one ONNX input "
            f"of all of them or one per column, not {len(inputs)} inputs."
        )
    x_type = inputs[0].type
    n_rows = x_type.shape[0] if x_type.shape else None
    float_type = _graph_float_type(inputs)
    for output, (_, kind, index) in zip(
        operator.outputs, _outputs(estimator), strict=True
    ):
        if kind == "label":
            several = isinstance(estimator.classes_, list)
            output.type.shape = (
                [n_rows, len(estimator.classes_)] if several else [n_rows]
            )
        elif kind == "probabilities":
            classes = (
                estimator.classes_[estimator.task_names_[index]]
                if isinstance(estimator, MultiGateMoE)
                else _class_arrays(estimator)[index]
            )
            output.type.shape = [n_rows, len(classes)]
        elif isinstance(estimator, MultiGateMoE):
            output.type.shape = [n_rows, 1]
        else:
            output.type.shape = [n_rows, estimator.n_outputs_]
        if isinstance(output.type, (FloatTensorType, DoubleTensorType)):
            # The inputs' types are final only now (a Pipeline step's may change
            # after parsing): the float outputs follow them.
            output.type = float_type(output.type.shape)


def _cast(g, variable, float_type):
    """An input as the graph's floats."""
    if isinstance(variable.type, float_type):
        return variable.full_name
    if isinstance(variable.type, StringTensorType):
        raise TypeError(
            f"The ONNX input {variable.onnx_name!r} holds strings, but it feeds a "
            "numerical column of the skmoe estimator."
        )
    return g.op("Cast", [variable.full_name], to=g.onnx_float)


def emit_encoded_input(g, inputs, estimator, float_type):
    """The encoded matrix the network reads, from one input of every column or one
    input per column."""
    encoder = estimator._input_encoder
    tables = encoder.category_codes()
    categorical = {t.column for t in tables}
    numerical = [j for j in range(estimator.n_features_in_) if j not in categorical]
    if len(inputs) == 1:
        x = inputs[0]
        columns = [
            g.op("Gather", [x.full_name, g.ints([t.column], "column")], axis=1)
            for t in tables
        ]
        if not numerical:
            num = None
        elif not tables:
            num = _cast(g, x, float_type)
        else:
            num = _cast(g, x, float_type)
            num = g.op("Gather", [num, g.ints(numerical, "numerical")], axis=1)
    else:
        columns = [inputs[t.column].full_name for t in tables]
        parts = [_cast(g, inputs[j], float_type) for j in numerical]
        num = (
            None
            if not parts
            else parts[0]
            if len(parts) == 1
            else g.op("Concat", parts, axis=1)
        )
    codes = [
        emit_category_codes(g, column, table)
        for column, table in zip(columns, tables, strict=True)
    ]
    return emit_input_encoder(g, num, encoder, codes)


def _converter(scope, operator, container):
    estimator = operator.raw_operator
    opset = container.target_opset
    if opset < MIN_OPSET:
        raise ValueError(
            f"ONNX export of {type(estimator).__name__} needs target_opset >= "
            f"{MIN_OPSET}, got {opset}."
        )
    float_type = _graph_float_type(operator.inputs)
    dtype = np.float64 if float_type is DoubleTensorType else np.float32
    g = GraphBuilder(scope, container, dtype)
    x = emit_encoded_input(g, operator.inputs, estimator, float_type)
    raw = emit_module(g, x, estimator.module_)
    options = _options(scope, estimator)
    outputs = [v.full_name for v in operator.outputs]
    if isinstance(estimator, MultiGateMoE):
        _emit_tasks(g, raw, estimator, outputs, options["nocl"])
    elif not is_classifier(estimator):
        _emit_values(g, raw, estimator._scaler, outputs[0])
    else:
        classes = _class_arrays(estimator)
        widths = [len(c) for c in classes]
        labels = []
        for j, logits in enumerate(_split(g, raw, widths)):
            labels.append(
                _emit_class(
                    g,
                    logits,
                    classes[j],
                    outputs[1 + j],
                    options["nocl"],
                )
            )
        if not isinstance(estimator.classes_, list):
            g.op("Identity", labels, outputs=[outputs[0]])
        else:
            axis1 = g.ints([1])
            columns = [g.op("Unsqueeze", [label, axis1]) for label in labels]
            g.op("Concat", columns, axis=1, outputs=[outputs[0]])


def _split(g, raw, widths):
    """The column blocks of ``raw`` of the given widths."""
    if len(widths) == 1:
        return [raw]
    blocks, start = [], 0
    for width in widths:
        end = start + width
        blocks.append(
            g.op(
                "Slice",
                [raw, g.ints([start], "start"), g.ints([end], "end"), g.ints([1])],
            )
        )
        start = end
    return blocks


def _emit_values(g, raw, scaler, output):
    """Regression values on the scale of ``y``."""
    scaled = g.op("Mul", [raw, g.const(scaler.scale, "target_scale")])
    g.op("Add", [scaled, g.const(scaler.mean, "target_mean")], outputs=[output])


def _emit_class(g, logits, classes, probabilities, nocl, label=None):
    """Softmax probabilities into ``probabilities``; returns the labels (``label``
    when given): the most probable class, or its index with ``nocl``."""
    g.op("Softmax", [logits], axis=1, outputs=[probabilities])
    code = g.op("ArgMax", [logits], axis=1, keepdims=0)
    if nocl:
        if label is not None:
            return g.op("Identity", [code], outputs=[label])
        return code
    values = np.asarray(classes)
    kind = _label_kind([values], None)
    if kind == "i":
        values = values.astype(np.int64)
    elif kind == "U":
        values = values.astype(str)
    outputs = None if label is None else [label]
    return g.op("Gather", [g.const(values, "classes"), code], axis=0, outputs=outputs)


def _emit_tasks(g, raw, estimator, outputs, nocl):
    """Each task of a :class:`MultiGateMoE`: label and probabilities, or values."""
    tasks = estimator._tasks
    blocks = _split(g, raw, tasks.widths())
    names = iter(outputs)
    for t, block in enumerate(blocks):
        if tasks.is_classification(t):
            label, probabilities = next(names), next(names)
            classes = tasks.encoders[t].classes[0]
            _emit_class(g, block, classes, probabilities, nocl, label=label)
        else:
            _emit_values(g, block, tasks.encoders[t], next(names))


def _alias(cls):
    return f"Skmoe{cls.__name__}"


def register_converters():
    """Register the converters of :data:`SUPPORTED` with skl2onnx."""
    for cls in SUPPORTED:
        update_registered_converter(
            cls,
            _alias(cls),
            _shape_calculator,
            _converter,
            overwrite=True,
            parser=_parser,
            options=CLASSIFIER_OPTIONS if issubclass(cls, _CLASSIFIERS) else None,
        )


_CLASSIFIERS = (MixtureOfExpertsClassifier, MultiGateMoEClassifier)
