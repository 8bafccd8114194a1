"""The inference pass of skmoe's modules written as ONNX nodes.

Every routing scheme is exported through its dense-equivalent computation: every
expert runs on every row, and sparse routing (top-k, noisy top-k, switch) becomes a
``TopK`` over the router logits whose renormalised weights are scattered into a dense
``(rows, n_experts)`` weight matrix, zero for the experts a row does not use. The graph
therefore has fixed shapes and no data-dependent branch, at the cost of computing the
unused experts. Noise and jitter are training-only and absent, as in ``predict``.

The input encoder (:func:`emit_input_encoder`: scaling, NaN, missing-value
indicators, categorical codes looked up from the raw values) and the feature
embedding in front of the mixture (:func:`emit_feature_embedding`: periodic and
piecewise-linear numerical embeddings, categorical embedding tables) are written the
same way, so the graph starts from the columns the estimator was fitted on.

The structure is read from the modules' public attributes (gates, expert banks,
levels, towers, embeddings); a module this file does not know is refused by
:func:`check_exportable` rather than exported wrongly.
"""

import numpy as np
from onnx import TensorProto, numpy_helper
from torch import nn

from .._preprocessing import Z_LIMIT
from ..nn import ExpertBank, Gate, MixtureOfExperts, MultiGateMixtureOfExperts
from ..nn.embeddings import (
    EmbeddedModel,
    FeatureEmbedding,
    PeriodicEmbedding,
    PiecewiseLinearEmbedding,
)
from ..nn.multigate import _ExtractionLevel

_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}
_GATINGS = ("softmax", "noisy", "switch")
MIN_OPSET = 13  # axes as inputs of ReduceSum, Unsqueeze and Slice


class GraphBuilder:
    """Adds constants and nodes to a graph that skl2onnx is assembling.

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        Hands out unique names.
    container : skl2onnx.common._container.ModelComponentContainer
        Receives the nodes and initialisers.
    dtype : numpy dtype
        ``float32`` or ``float64``: the precision of the exported computation.
    """

    def __init__(self, scope, container, dtype):
        self.scope = scope
        self.container = container
        self.dtype = np.dtype(dtype)
        # The ONNX element type of the graph's floats, for Cast.
        self.onnx_float = (
            TensorProto.DOUBLE if self.dtype == np.float64 else TensorProto.FLOAT
        )

    def const(self, value, hint, dtype=None):
        """An initialiser holding ``value`` (floats cast to the graph's dtype)."""
        value = np.asarray(value)
        name = self.scope.get_unique_variable_name(hint)
        if value.dtype.kind in "USO":
            strings = [str(v) for v in value.ravel()]
            self.container.add_initializer(
                name, TensorProto.STRING, list(value.shape), strings
            )
            return name
        if dtype is None:
            dtype = self.dtype if value.dtype.kind == "f" else value.dtype
        tensor = numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype))
        self.container.add_initializer(name, None, None, tensor)
        return name

    def ints(self, values, hint="axes"):
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def op(self, op_type, inputs, hint=None, n_outputs=1, outputs=None, **attrs):
        """Add one node; returns its output name (a list for several outputs)."""
        if outputs is None:
            hint = hint or op_type.lower()
            outputs = [
                self.scope.get_unique_variable_name(hint) for _ in range(n_outputs)
            ]
        self.container.add_node(
            op_type,
            list(inputs),
            list(outputs),
            name=self.scope.get_unique_operator_name(op_type),
            **attrs,
        )
        return outputs[0] if len(outputs) == 1 else outputs


# The children each known module may have; anything else (an input embedding, a
# new routing part) is a structure this file does not export.
_CHILDREN = {
    MixtureOfExperts: {"gate", "experts"},
    MultiGateMixtureOfExperts: {"levels", "towers"},
    _ExtractionLevel: {"experts", "task_gates", "shared_gate"},
    Gate: {"router", "noise"},
    ExpertBank: {"weights", "biases"},
    EmbeddedModel: {"embedding", "body"},
    FeatureEmbedding: {"numerical", "categorical"},
    PeriodicEmbedding: set(),
    PiecewiseLinearEmbedding: set(),
    nn.Embedding: set(),
}


def check_exportable(module):
    """Refuse modules whose structure the exporter does not know.

    Parameters
    ----------
    module : torch.nn.Module
        A fitted estimator's ``module_``.

    Raises
    ------
    TypeError
        Naming the part that cannot be exported.
    """
    if type(module) is EmbeddedModel:
        _check_known(module)
        _check_embedding(module.embedding)
        module = module.body
    if type(module) is MixtureOfExperts:
        _check_known(module)
        _check_gate(module.gate)
        _check_bank(module.experts)
        return
    if type(module) is not MultiGateMixtureOfExperts:
        _refuse(module)
    _check_known(module)
    for level in module.levels:
        if type(level) is not _ExtractionLevel:
            _refuse(level)
        _check_known(level)
        _check_bank(level.experts)
        for gate in [*(level.task_gates or []), level.shared_gate]:
            if gate is not None:
                _check_gate(gate)
    _check_bank(module.towers)


def _refuse(part, detail=""):
    raise TypeError(
        f"ONNX export does not support a module of type {type(part).__name__}"
        f"{detail}; it exports skmoe.nn.MixtureOfExperts and "
        "skmoe.nn.MultiGateMixtureOfExperts built of Gate and ExpertBank parts, "
        "behind an optional skmoe.nn.embeddings.FeatureEmbedding."
    )


def _check_known(module):
    unknown = {name for name, _ in module.named_children()} - _CHILDREN[type(module)]
    if unknown:
        _refuse(module, f" with the parts {sorted(unknown)}")


def _check_embedding(embedding):
    if type(embedding) is not FeatureEmbedding:
        _refuse(embedding)
    _check_known(embedding)
    if embedding.numerical is not None and type(embedding.numerical) not in (
        PeriodicEmbedding,
        PiecewiseLinearEmbedding,
    ):
        _refuse(embedding.numerical)
    for table in embedding.categorical:
        if type(table) is not nn.Embedding or table.max_norm is not None:
            _refuse(table)
        _check_known(table)


def _check_gate(gate):
    if type(gate) is not Gate or getattr(gate, "gating", None) not in _GATINGS:
        _refuse(gate)
    _check_known(gate)


def _check_bank(bank):
    if type(bank) is not ExpertBank or getattr(bank, "activation", None) not in (
        _ACTIVATIONS
    ):
        _refuse(bank)
    _check_known(bank)


def _weights(parameter):
    return parameter.detach().cpu().double().numpy()


def _activation(g, h, name):
    op_type = _ACTIVATIONS[name]
    return h if op_type is None else g.op(op_type, [h])


def emit_bank(g, x, bank, hint="expert"):
    """``(n_experts, rows, out)``: expert ``e`` on ``x`` (2-D) or on ``x[e]`` (3-D)."""
    h = x
    layers = list(zip(bank.weights, bank.biases, strict=True))
    for i, (weight, bias) in enumerate(layers):
        if i:
            h = _activation(g, h, bank.activation)
        w = g.const(_weights(weight), f"{hint}_w{i}")
        b = g.const(_weights(bias)[:, None, :], f"{hint}_b{i}")
        h = g.op("Add", [g.op("MatMul", [x if i == 0 else h, w]), b])
    return h


def emit_gate(g, x, gate):
    """Each row's combination weights over the gate's experts, ``(rows, n_experts)``."""
    w = g.const(_weights(gate.router.weight).T, "router_w")
    b = g.const(_weights(gate.router.bias), "router_b")
    logits = g.op("Add", [g.op("MatMul", [x, w]), b], hint="logits")
    k = gate.top_k
    if k is None or k >= gate.n_experts:
        return g.op("Softmax", [logits], axis=1)
    values, indices = g.op(
        "TopK", [logits, g.ints([k], "k")], n_outputs=2, axis=1, largest=1, sorted=1
    )
    top = g.op("Softmax", [values], axis=1)  # exactly 1 for top-1 (switch)
    zeros = g.op(
        "ConstantOfShape",
        [g.op("Shape", [logits])],
        value=numpy_helper.from_array(np.zeros(1, dtype=g.dtype)),
    )
    return g.op("ScatterElements", [zeros, indices, top], axis=1, hint="gate_weights")


def emit_mix(g, weights, expert_out):
    """``(rows, E)`` weights times ``(E, rows, out)`` outputs, summed over experts."""
    w = g.op("Unsqueeze", [g.op("Transpose", [weights], perm=[1, 0]), g.ints([2])])
    return g.op("ReduceSum", [g.op("Mul", [expert_out, w]), g.ints([0])], keepdims=0)


def _take(g, x, index):
    """``x[index]`` along the first axis.

    A gather of a one-element index and a squeeze, not a gather of a scalar: skl2onnx's
    optimiser merges initialisers of equal bytes whatever their shapes, which would
    turn a scalar index into a one-element vector.
    """
    picked = g.op("Gather", [x, g.ints([index], "index")], axis=0)
    return g.op("Squeeze", [picked, g.ints([0])])


def emit_mixture(g, x, module):
    """The output ``(rows, out_features)`` of a :class:`skmoe.nn.MixtureOfExperts`."""
    return emit_mix(g, emit_gate(g, x, module.gate), emit_bank(g, x, module.experts))


def emit_multigate(g, x, module):
    """Concatenated task outputs of a :class:`skmoe.nn.MultiGateMixtureOfExperts`."""
    tasks, shared = x, x
    for i, level in enumerate(module.levels):
        tasks, shared = _emit_level(g, tasks, shared, level, first=i == 0)
    out = emit_bank(g, tasks, module.towers, hint="tower")
    columns = []
    for t, width in enumerate(module.task_out_features):
        task_out = _take(g, out, t)
        columns.append(
            g.op(
                "Slice",
                [task_out, g.ints([0], "start"), g.ints([width], "end"), g.ints([1])],
            )
        )
    return columns[0] if len(columns) == 1 else g.op("Concat", columns, axis=1)


def _emit_level(g, task_inputs, shared_input, level, first):
    """One extraction level: ``(tasks (T, rows, width), shared or None)``.

    At the first level ``task_inputs`` is the input ``(rows, in)``; after it, each
    task's input ``(T, rows, in)``.
    """
    if first:
        h = emit_bank(g, task_inputs, level.experts)
    else:
        stacked = g.op(
            "Concat",
            [g.op("Unsqueeze", [shared_input, g.ints([0])]), task_inputs],
            axis=0,
        )
        group = g.ints(level.group.cpu().numpy(), "group")
        h = emit_bank(g, g.op("Gather", [stacked, group], axis=0), level.experts)
    h = _activation(g, h, level.experts.activation)
    if level.task_gates is None:  # one shared network read by every task
        return g.op("Tile", [h, g.ints([level.n_tasks, 1, 1], "repeats")]), None
    mixtures = []
    for t, gate in enumerate(level.task_gates):
        gate_input = task_inputs if first else _take(g, task_inputs, t)
        choices = g.ints(level.choices[t].cpu().numpy(), "choices")
        chosen = g.op("Gather", [h, choices], axis=0)
        mixtures.append(emit_mix(g, emit_gate(g, gate_input, gate), chosen))
    if len(mixtures) < level.n_tasks:  # one gate: every task reads its mixture
        mixtures = mixtures * level.n_tasks
    axis0 = g.ints([0])
    tasks = g.op("Concat", [g.op("Unsqueeze", [m, axis0]) for m in mixtures], axis=0)
    shared = None
    if level.shared_gate is not None:
        gate_input = task_inputs if first else shared_input
        shared = emit_mix(g, emit_gate(g, gate_input, level.shared_gate), h)
    return tasks, shared


def _columns(g, x, start, stop):
    """``x[:, start:stop]``."""
    return g.op(
        "Slice", [x, g.ints([start], "start"), g.ints([stop], "end"), g.ints([1])]
    )


def _per_feature_linear(g, z, weight, bias):
    """``relu(einsum("nfk,fkd->nfd", z, weight) + bias)`` flattened to ``(n, f*d)``."""
    by_feature = g.op("Transpose", [z], perm=[1, 0, 2])  # (f, n, k)
    out = g.op("MatMul", [by_feature, g.const(_weights(weight), "embedding_w")])
    out = g.op("Transpose", [out], perm=[1, 0, 2])  # (n, f, d)
    out = g.op("Add", [out, g.const(_weights(bias), "embedding_b")])
    return g.op("Flatten", [g.op("Relu", [out])], axis=1)


def emit_periodic(g, x, embedding):
    """:class:`PeriodicEmbedding` of the numerical columns ``x``."""
    z = g.op("Unsqueeze", [x, g.ints([2])])
    z = g.op("Mul", [z, g.const(2 * np.pi, "two_pi")])
    z = g.op("Mul", [z, g.const(_weights(embedding.frequencies), "frequencies")])
    z = g.op("Concat", [g.op("Cos", [z]), g.op("Sin", [z])], axis=2)
    return _per_feature_linear(g, z, embedding.weight, embedding.bias)


def emit_piecewise_linear(g, x, embedding):
    """:class:`PiecewiseLinearEmbedding` of the numerical columns ``x``.

    The bins' kinds are constants, so the open-ended bins become bounds of
    ``-inf``/``+inf`` in a ``Max``/``Min`` and the padding bins a zero factor.
    """
    kind = embedding.kind.detach().cpu().numpy()
    low = np.where((kind == 1) | (kind == 3), -np.inf, 0.0)
    high = np.where((kind == 2) | (kind == 3), np.inf, 1.0)
    r = g.op("Unsqueeze", [x, g.ints([2])])
    r = g.op("Sub", [r, g.const(_weights(embedding.left), "left")])
    r = g.op("Div", [r, g.const(_weights(embedding.width), "width")])
    r = g.op("Min", [g.op("Max", [r, g.const(low, "low")]), g.const(high, "high")])
    r = g.op("Mul", [r, g.const((kind >= 0).astype(np.float64), "bins_used")])
    return _per_feature_linear(g, r, embedding.weight, embedding.bias)


def emit_feature_embedding(g, x, embedding):
    """:class:`FeatureEmbedding` of the encoded matrix ``[numerical | passthrough |
    categorical codes]``: the mixture's input."""
    n_num, n_pass = embedding.n_numerical, embedding.n_passthrough
    parts = []
    if n_num:
        numerical = _columns(g, x, 0, n_num)
        if isinstance(embedding.numerical, PeriodicEmbedding):
            numerical = emit_periodic(g, numerical, embedding.numerical)
        elif isinstance(embedding.numerical, PiecewiseLinearEmbedding):
            numerical = emit_piecewise_linear(g, numerical, embedding.numerical)
        parts.append(numerical)
    if n_pass:
        parts.append(_columns(g, x, n_num, n_num + n_pass))
    for i, table in enumerate(embedding.categorical):
        start = n_num + n_pass + i
        codes = g.op("Cast", [_columns(g, x, start, start + 1)], to=TensorProto.INT64)
        codes = g.op("Squeeze", [codes, g.ints([1])])
        table = g.const(_weights(table.weight), "categorical_embedding")
        parts.append(g.op("Gather", [table, codes], axis=0))
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=1)


def emit_module(g, x, module):
    """The raw output of a fitted estimator's ``module_`` for the encoded input
    ``x``."""
    check_exportable(module)
    if type(module) is EmbeddedModel:
        x = emit_feature_embedding(g, x, module.embedding)
        module = module.body
    if type(module) is MixtureOfExperts:
        return emit_mixture(g, x, module)
    return emit_multigate(g, x, module)


def emit_category_codes(g, column, table):
    """The codes ``(rows, 1)`` (as floats) of one categorical input column.

    Parameters
    ----------
    g : GraphBuilder
    column : str
        ``(rows, 1)`` strings (a ``LabelEncoder`` lookup) or numbers (compared
        exactly, in float64, with each category).
    table : skmoe._preprocessing.CategoryCodes
        The encoder's codes for this column; every value not in ``table.values``
        (unseen, missing, NaN) gets ``table.reserved``.
    """
    strings = all(isinstance(v, str) for v in table.values)
    if not table.values:
        reserved = np.full(1, table.reserved, dtype=g.dtype)
        return g.op(
            "ConstantOfShape",
            [g.op("Shape", [column])],
            value=numpy_helper.from_array(reserved),
        )
    if strings:
        codes = g.op(
            "LabelEncoder",
            [column],
            op_domain="ai.onnx.ml",
            op_version=2,
            keys_strings=list(table.values),
            values_int64s=[int(c) for c in table.codes],
            default_int64=int(table.reserved),
        )
        return g.op("Cast", [codes], to=g.onnx_float)
    values = np.asarray(table.values, dtype=np.float64)[None, :]
    x = g.op("Cast", [column], to=TensorProto.DOUBLE)
    match = g.op("Equal", [x, numpy_const(g, values, "categories")])
    match = g.op("Cast", [match], to=TensorProto.DOUBLE)
    # At most one category matches; none gives 0, so add the reserved code there.
    codes = np.asarray(table.codes, dtype=np.float64) - table.reserved
    code = g.op("MatMul", [match, numpy_const(g, codes[:, None], "codes")])
    code = g.op("Add", [code, numpy_const(g, np.float64(table.reserved), "reserved")])
    return g.op("Cast", [code], to=g.onnx_float)


def numpy_const(g, value, hint):
    """An initialiser of ``value`` in its own dtype (not the graph's)."""
    value = np.asarray(value)
    return g.const(value, hint, dtype=value.dtype)


def emit_input_encoder(g, x, encoder, codes=()):
    """The encoded matrix ``[numerical | missing indicators | categorical codes]``
    that the network reads, as :class:`skmoe._preprocessing.InputEncoder` builds it:
    robust scaling, smooth clipping, NaN to 0 and missing-value indicators of the
    numerical columns ``x`` (``None`` when there are none), then the ``codes``
    (see :func:`emit_category_codes`).
    """
    codes = list(codes)
    if x is None:
        return codes[0] if len(codes) == 1 else g.op("Concat", codes, axis=1)
    x = _emit_numerical(g, x, encoder)
    return g.op("Concat", [x, *codes], axis=1) if codes else x


def _emit_numerical(g, x, encoder):
    """Scaled numerical columns, NaN as 0, then the missing-value indicators."""
    if encoder.sparse:  # sparse input is used as it is (NaN is refused there)
        return x
    missing = g.op("IsNaN", [x])
    if encoder.input_scaling is not None:
        z = g.op("Sub", [x, g.const(encoder.center, "input_center")])
        z = g.op("Div", [z, g.const(encoder.scale, "input_scale")])
        z = g.op("Clip", [z, g.const(-Z_LIMIT, "low"), g.const(Z_LIMIT, "high")])
        limits = encoder.clip_limits()
        if np.isinf(limits).all():
            x = z  # no column is clipped
        else:
            # z / sqrt(1 + (z / c)^2), c per column; c = inf leaves the column as it is
            third = g.op("Div", [z, g.const(limits, "input_clip")])
            one = g.const(1.0, "one")
            root = g.op("Sqrt", [g.op("Add", [one, g.op("Mul", [third, third])])])
            x = g.op("Div", [z, root])
    # A NaN reads as 0 (the median under robust scaling), in every column: also in
    # those that had no NaN in training and so have no indicator.
    x = g.op("Where", [missing, g.const(np.zeros(1), "zero"), x])
    indicators = np.flatnonzero(encoder.has_missing)
    if not indicators.size:
        return x
    flags = g.op("Gather", [missing, g.ints(indicators, "indicators")], axis=1)
    flags = g.op("Cast", [flags], to=g.onnx_float)
    return g.op("Concat", [x, flags], axis=1)
