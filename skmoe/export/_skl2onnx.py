"""skl2onnx converters for the skmoe estimators.

Registering them (:func:`register_converters`) lets ``skl2onnx.to_onnx`` convert a
skmoe estimator on its own or as the last step of a scikit-learn ``Pipeline``, into one
graph. Classifiers output ``label`` and ``probabilities`` tensors (as skl2onnx's
classifiers with ``zipmap=False``), one ``probabilities_<j>`` per output for several
outputs; regressors output ``variable`` of shape ``(rows, n_outputs)``, mapped back from
the standardised scale the model was trained on.
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
from ..multigate import MultiGateMoEClassifier, MultiGateMoERegressor
from ._graph import (
    MIN_OPSET,
    GraphBuilder,
    check_exportable,
    emit_input_encoder,
    emit_module,
)

SUPPORTED = (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)


def check_estimator_exportable(estimator):
    """Refuse estimators (and modules) the converters do not know, with a TypeError."""
    if type(estimator) not in SUPPORTED:
        names = ", ".join(cls.__name__ for cls in SUPPORTED)
        raise TypeError(
            f"ONNX export supports {names}; got {type(estimator).__name__}."
        )
    check_exportable(estimator.module_)


def _class_arrays(estimator):
    classes = estimator.classes_
    return list(classes) if isinstance(classes, list) else [classes]


def _label_kind(estimator):
    kinds = {np.asarray(c).dtype.kind for c in _class_arrays(estimator)}
    kinds = {"i" if k in "iub" else "U" if k in "USO" else k for k in kinds}
    if len(kinds) != 1 or not kinds <= {"i", "U", "f"}:
        raise TypeError(
            f"ONNX export needs the class labels of {type(estimator).__name__} to be "
            "all integers, all strings or all floats; got a mixture."
        )
    return kinds.pop()


def _float_type(variable):
    return (
        DoubleTensorType
        if isinstance(variable.type, DoubleTensorType)
        else (FloatTensorType)
    )


def _parser(scope, model, inputs, custom_parsers=None):
    """Declare the outputs: label and probabilities, or the regression values."""
    operator = scope.declare_local_operator(_alias(type(model)), model)
    operator.inputs = inputs
    float_type = _float_type(inputs[0])
    if is_classifier(model):
        kind = _label_kind(model)
        label_type = {"i": Int64TensorType, "U": StringTensorType}.get(kind, float_type)
        operator.outputs.append(scope.declare_local_variable("label", label_type()))
        n_outputs = len(_class_arrays(model))
        names = (
            ["probabilities"]
            if n_outputs == 1
            else [f"probabilities_{j}" for j in range(n_outputs)]
        )
        for name in names:
            operator.outputs.append(scope.declare_local_variable(name, float_type()))
    else:
        operator.outputs.append(scope.declare_local_variable("variable", float_type()))
    return list(operator.outputs)


def _shape_calculator(operator):
    estimator = operator.raw_operator
    check_estimator_exportable(estimator)
    x_type = operator.inputs[0].type
    n_rows = x_type.shape[0] if x_type.shape else None
    width = x_type.shape[1] if x_type.shape and len(x_type.shape) > 1 else None
    if isinstance(width, int) and width != estimator.n_features_in_:
        raise ValueError(
            f"{type(estimator).__name__} was fitted on {estimator.n_features_in_} "
            f"features, but the ONNX input has {width} columns."
        )
    outputs = operator.outputs
    if is_classifier(estimator):
        classes = _class_arrays(estimator)
        one_d = not isinstance(estimator.classes_, list)
        outputs[0].type.shape = [n_rows] if one_d else [n_rows, len(classes)]
        for output, c in zip(outputs[1:], classes, strict=True):
            output.type.shape = [n_rows, len(c)]
    else:
        outputs[0].type.shape = [n_rows, estimator.n_outputs_]


def _converter(scope, operator, container):
    estimator = operator.raw_operator
    opset = container.target_opset
    if opset < MIN_OPSET:
        raise ValueError(
            f"ONNX export of {type(estimator).__name__} needs target_opset >= "
            f"{MIN_OPSET}, got {opset}."
        )
    float_type = _float_type(operator.inputs[0])
    dtype = np.float64 if float_type is DoubleTensorType else np.float32
    g = GraphBuilder(scope, container, dtype)
    x = operator.inputs[0].full_name
    if not isinstance(operator.inputs[0].type, (FloatTensorType, DoubleTensorType)):
        x = g.op("Cast", [x], to=1)  # TensorProto.FLOAT
    x = emit_input_encoder(g, x, estimator._input_encoder)
    raw = emit_module(g, x, estimator.module_)
    outputs = [v.full_name for v in operator.outputs]
    if not is_classifier(estimator):
        scaler = estimator._scaler
        scaled = g.op("Mul", [raw, g.const(scaler.scale, "target_scale")])
        g.op("Add", [scaled, g.const(scaler.mean, "target_mean")], outputs=outputs)
        return
    classes = _class_arrays(estimator)
    kind = _label_kind(estimator)
    labels, start = [], 0
    for j, c in enumerate(classes):
        logits = raw
        if len(classes) > 1:
            end = start + len(c)
            logits = g.op(
                "Slice",
                [raw, g.ints([start], "start"), g.ints([end], "end"), g.ints([1])],
            )
            start = end
        g.op("Softmax", [logits], axis=1, outputs=[outputs[1 + j]])
        code = g.op("ArgMax", [logits], axis=1, keepdims=0)
        values = np.asarray(c).astype(np.int64) if kind == "i" else np.asarray(c)
        labels.append(g.op("Gather", [g.const(values, "classes"), code], axis=0))
    if not isinstance(estimator.classes_, list):
        g.op("Identity", labels, outputs=[outputs[0]])
    else:
        axis1 = g.ints([1])
        columns = [g.op("Unsqueeze", [label, axis1]) for label in labels]
        g.op("Concat", columns, axis=1, outputs=[outputs[0]])


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
        )
