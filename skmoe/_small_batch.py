"""NumPy evaluation of skmoe's modules, for predictions on a handful of rows.

Predicting one row through PyTorch costs more per-operation overhead (dispatch,
autograd bookkeeping, tensor creation) than arithmetic, which made a one-row
``predict`` slower than ``MLPClassifier``'s, whose forward pass is plain NumPy. For
batches of at most :data:`SMALL_BATCH_MAX_ROWS` rows the estimators evaluate the
same float64 weights here instead. This is the inference-mode forward pass of
:class:`skmoe.nn.MixtureOfExperts` and :class:`skmoe.nn.MultiGateMixtureOfExperts`
(no noise, no jitter), and ``tests/test_small_batch.py`` checks it against the
PyTorch modules for every routing scheme, activation and architecture.

Every operation here computes each row on its own, in an order that does not depend
on the other rows: matrix products are stacked vector-matrix products, one per row
(:func:`_rows_matmul`), and sums over experts or classes add their terms one column
at a time. A row's output is then the same bits whichever rows it is evaluated with,
in whatever chunks: a BLAS matrix product of many rows rounds a row differently for
different batch heights.
"""

import numpy as np

from .nn import ExpertBank, Gate, MixtureOfExperts, MultiGateMixtureOfExperts
from .nn.routing import is_proven
from .nn.thresholds import SMALL_BATCH_MAX_ROWS  # noqa: F401  (re-exported)


def _relu(h):
    return np.maximum(h, 0.0, out=h)


def _logistic(h):
    # exp(-|h|) never overflows; this is 1 / (1 + exp(-h)) for either sign of h.
    e = np.exp(-np.abs(h))
    return np.where(h >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_ACTIVATIONS = {
    "relu": _relu,
    "tanh": np.tanh,
    "logistic": _logistic,
    "identity": lambda h: h,
}


def _rows_matmul(x, weight):
    """``x @ weight`` computed row by row: ``x`` is ``(..., n_rows, in)`` and
    ``weight`` ``(..., in, out)``; each row is its own vector-matrix product, whose
    rounding does not depend on how many rows are stacked beside it."""
    return np.matmul(x[..., None, :], weight[..., None, :, :])[..., 0, :]


def _column_sum(z):
    """``z.sum(axis=1, keepdims=True)`` added left to right, the same order for
    every row (NumPy's own reduction may pair the terms differently)."""
    total = z[:, :1].copy()
    for j in range(1, z.shape[1]):
        total += z[:, j : j + 1]
    return total


def softmax_rows(z):
    """Softmax of each row of a float64 ``(n, width)`` array, computed row by row
    (the same bits for a row whichever rows come with it); ``z`` is not changed."""
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= _column_sum(z)
    return z


def _array(tensor):
    return tensor.detach().cpu().double().numpy()


def _mix(weights, expert_out, index=None):
    """``(n, e)`` weights times ``(e, n, out)`` expert outputs (``expert_out[index]``
    when an index is given), summed over experts in their order: a row's zero
    weights add exact zeros, so its sum is the same whichever experts are present."""
    index = range(weights.shape[1]) if index is None else index
    out = weights[:, :1] * expert_out[index[0]]
    term = np.empty_like(out)
    for e in range(1, weights.shape[1]):
        out += np.multiply(weights[:, e : e + 1], expert_out[index[e]], out=term)
    return out


class _Gate:
    """A :class:`skmoe.nn.Gate` in eval mode."""

    def __init__(self, gate):
        self.n_experts = gate.n_experts
        self.top_k = gate.kept  # the routing spec's rule, as the gate reads it
        self.weight = _array(gate.router.weight).T.copy()
        self.bias = _array(gate.router.bias)

    def route(self, x):
        """``(experts, weights)``: the experts any row uses (``slice(None)`` for
        all) and each row's weights over them, ``(n_rows, n_used)``."""
        logits = _rows_matmul(x, self.weight) + self.bias
        if self.top_k is None:
            return slice(None), softmax_rows(logits)
        # Exactly tied logits may be broken differently from torch.topk; the
        # prediction is then as valid, though it may differ from the PyTorch path.
        if self.top_k == 1:
            chosen = logits.argmax(axis=1)[:, None]
        else:
            chosen = np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k]
        if x.shape[0] == 1:  # one row: its experts are already distinct
            experts = np.sort(chosen[0])  # in order, as np.unique gives them
            position = np.argsort(np.argsort(chosen[0]))[None]
        else:
            experts, position = np.unique(chosen, return_inverse=True)
            position = position.reshape(chosen.shape)
        if self.top_k == 1:
            top_weights = np.ones_like(logits[:, :1])
        else:
            top_weights = softmax_rows(np.take_along_axis(logits, chosen, axis=1))
        weights = np.zeros((x.shape[0], len(experts)))
        np.put_along_axis(weights, position, top_weights, axis=1)
        return experts, weights

    def dense_weights(self, x):
        """Each row's weights over all the gate's experts, ``(n_rows, n_experts)``."""
        experts, weights = self.route(x)
        if isinstance(experts, slice):
            return weights
        full = np.zeros((x.shape[0], self.n_experts))
        full[:, experts] = weights
        return full


class _Bank:
    """A :class:`skmoe.nn.ExpertBank`: expert ``experts[i]`` runs on ``x[i]``."""

    def __init__(self, bank):
        self.weights = [_array(w) for w in bank.weights]
        self.biases = [_array(b) for b in bank.biases]
        self.activation = _ACTIVATIONS[bank.activation]

    def __call__(self, x, experts=slice(None)):
        """``x`` is ``(n_rows, in)`` for every expert, or ``(n_used, n_rows, in)``."""
        h = _rows_matmul(x, self.weights[0][experts]) + self.biases[0][experts][:, None]
        for weight, bias in zip(self.weights[1:], self.biases[1:], strict=True):
            h = self.activation(h)
            h = _rows_matmul(h, weight[experts]) + bias[experts][:, None]
        return h


class SmallBatchMixture:
    """:class:`skmoe.nn.MixtureOfExperts` in eval mode, in NumPy float64.

    Parameters
    ----------
    module : skmoe.nn.MixtureOfExperts
        The layer to copy the weights of (any dtype and device).
    """

    def __init__(self, module):
        self.gate = _Gate(module.gate)
        self.experts = _Bank(module.experts)

    def __call__(self, X):
        """Outputs ``(n_rows, out_features)`` for float64 rows ``(n_rows, in)``."""
        experts, weights = self.gate.route(X)
        if isinstance(experts, slice) or X.shape[0] == 1:
            return _mix(weights, self.experts(X, experts))
        # Each used expert runs on the rows routed to it only; a row's terms are
        # still added in the experts' order, to the same bits as the full mix.
        out = None
        for j, expert in enumerate(experts):
            rows = np.flatnonzero(weights[:, j])
            h = self.experts(X[rows], [expert])[0]
            if out is None:
                out = np.zeros((X.shape[0], h.shape[1]))
            out[rows] += weights[rows, j : j + 1] * h
        return out


class SmallBatchMultiGate:
    """:class:`skmoe.nn.MultiGateMixtureOfExperts` in eval mode, in NumPy float64.

    Parameters
    ----------
    module : skmoe.nn.MultiGateMixtureOfExperts
        The model to copy the weights of (any dtype and device).
    """

    def __init__(self, module):
        self.task_out_features = list(module.task_out_features)
        self.n_tasks = module.n_tasks
        self.levels = [_Level(level) for level in module.levels]
        self.towers = _Bank(module.towers)

    def __call__(self, X):
        """Concatenated task outputs ``(n_rows, sum(task_out_features))``."""
        tasks, shared = None, X
        for level in self.levels:
            tasks, shared = level(X if tasks is None else tasks, shared, self.n_tasks)
        out = self.towers(tasks)
        return np.concatenate(
            [out[t, :, :n] for t, n in enumerate(self.task_out_features)], axis=1
        )


class _Level:
    """One extraction level of a multi-gate model (``_ExtractionLevel``)."""

    def __init__(self, level):
        self.experts = _Bank(level.experts)
        self.group = level.group.cpu().numpy()
        self.choices = level.choices.cpu().numpy()
        self.task_gates = (
            None if level.task_gates is None else [_Gate(g) for g in level.task_gates]
        )
        self.shared_gate = (
            None if level.shared_gate is None else _Gate(level.shared_gate)
        )

    def __call__(self, task_inputs, shared_input, n_tasks):
        first = task_inputs.ndim == 2
        if first:
            h = self.experts(task_inputs)
        else:
            inputs = np.concatenate([shared_input[None], task_inputs])
            h = self.experts(inputs[self.group])
        h = self.experts.activation(h)  # (n_experts, n_rows, width)
        if self.task_gates is None:
            return np.broadcast_to(h, (n_tasks, *h.shape[1:])), None
        mixtures = []
        for t, gate in enumerate(self.task_gates):
            weights = gate.dense_weights(task_inputs if first else task_inputs[t])
            mixtures.append(_mix(weights, h, self.choices[t]))
        if len(mixtures) < n_tasks:  # one gate: every task reads its mixture
            mixtures = mixtures * n_tasks
        shared = None
        if self.shared_gate is not None:
            gate_input = task_inputs if first else shared_input
            shared = _mix(self.shared_gate.dense_weights(gate_input), h)
        return np.stack(mixtures), shared


def small_batch_model(module):
    """The NumPy evaluator of ``module``, or ``None`` for modules it does not know.

    Only the exact classes it mirrors, with plain gates of a routing spec in
    :data:`skmoe.nn.routing.FAST_SPECS` and plain expert banks, are evaluated here;
    a subclass of any of them predicts through its own torch forward pass.
    """
    if type(module) is MixtureOfExperts:
        model = SmallBatchMixture
    elif type(module) is MultiGateMixtureOfExperts:
        model = SmallBatchMultiGate
    else:
        return None
    for sub in module.modules():
        if isinstance(sub, Gate) and (type(sub) is not Gate or not is_proven(sub.spec)):
            return None
        if isinstance(sub, ExpertBank) and type(sub) is not ExpertBank:
            return None
    return model(module)
