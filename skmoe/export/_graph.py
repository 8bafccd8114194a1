"""The inference pass of skmoe's modules written as ONNX nodes.

Every routing scheme is exported through its dense-equivalent computation: every
expert runs on every row, and sparse routing (top-k, noisy top-k, switch) becomes a
``TopK`` over the router logits whose renormalised weights are scattered into a dense
``(rows, n_experts)`` weight matrix, zero for the experts a row does not use. The graph
therefore has fixed shapes and no data-dependent branch, at the cost of computing the
unused experts. Noise and jitter are training-only and absent, as in ``predict``.

The structure is read from the modules' public attributes (gates, expert banks,
levels, towers); a module this file does not know is refused by
:func:`check_exportable` rather than exported wrongly.
"""

import numpy as np
from onnx import TensorProto, numpy_helper

from .._preprocessing import Z_LIMIT
from ..nn import ExpertBank, Gate, MixtureOfExperts, MultiGateMixtureOfExperts
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
        "skmoe.nn.MultiGateMixtureOfExperts built of Gate and ExpertBank parts."
    )


def _check_known(module):
    unknown = {name for name, _ in module.named_children()} - _CHILDREN[type(module)]
    if unknown:
        _refuse(module, f" with the parts {sorted(unknown)}")


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


def emit_module(g, x, module):
    """The raw output of a fitted estimator's ``module_`` for input ``x``."""
    check_exportable(module)
    if type(module) is MixtureOfExperts:
        return emit_mixture(g, x, module)
    return emit_multigate(g, x, module)


def emit_input_encoder(g, x, encoder):
    """The input encoder's numerical part: robust scaling, the smooth clip of the
    columns the encoder clips, NaN to 0 and missing-value indicators, as
    :class:`skmoe._preprocessing.InputEncoder` does.

    Categorical columns and numerical embeddings make the module an
    ``EmbeddedModel``, which :func:`check_exportable` refuses before this runs.
    """
    indicators = np.flatnonzero(getattr(encoder, "has_missing", None) or [])
    scaling = encoder.input_scaling is not None and not encoder.sparse
    if not scaling and not indicators.size:
        return x
    missing = g.op("IsNaN", [x]) if indicators.size else None
    if scaling:
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
    if missing is None:
        return x
    x = g.op("Where", [missing, g.const(np.zeros(1), "zero"), x])
    flags = g.op("Gather", [missing, g.ints(indicators, "indicators")], axis=1)
    flags = g.op("Cast", [flags], to=g.onnx_float)
    return g.op("Concat", [x, flags], axis=1)
