"""NumPy evaluation of a single-gate mixture, for predictions on a handful of rows.

Predicting one row through PyTorch costs some 50-60 µs of per-operation overhead
(dispatch, autograd bookkeeping, tensor creation) for a few microseconds of arithmetic,
which made a one-row ``predict`` slower than ``MLPClassifier``'s, whose forward pass is
plain NumPy. For batches of at most :data:`SMALL_BATCH_MAX_ROWS` rows the estimators
evaluate the same float64 weights here instead. It is the inference-mode forward pass
of :class:`skmoe.nn.MixtureOfExperts` (no noise, no jitter), and
``tests/test_small_batch.py`` checks it against the PyTorch module for every routing
scheme and activation.
"""

import numpy as np

from .nn import MixtureOfExperts

# Up to this many rows NumPy was faster than PyTorch in every configuration measured
# (one thread; 16 rows: 8 experts top-1 51 µs against 83 µs, 64 experts top-2 133
# against 257 µs); at 32 rows PyTorch wins with 64 experts (207 against 302 µs).
SMALL_BATCH_MAX_ROWS = 16


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


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class SmallBatchMixture:
    """The eval-mode forward pass of a ``MixtureOfExperts`` layer, in NumPy float64.

    Parameters
    ----------
    module : skmoe.nn.MixtureOfExperts
        The layer to copy the weights of (any dtype and device).
    """

    def __init__(self, module):
        gate, bank = module.gate, module.experts
        self.n_experts = gate.n_experts
        dense = gate.top_k is None or (
            gate.top_k == gate.n_experts and gate.gating != "noisy"
        )
        self.top_k = None if dense else gate.top_k
        self.router_weight = _array(gate.router.weight).T.copy()
        self.router_bias = _array(gate.router.bias)
        self.weights = [_array(w) for w in bank.weights]
        self.biases = [_array(b) for b in bank.biases]
        self.activation = _ACTIVATIONS[bank.activation]

    @classmethod
    def supports(cls, module):
        """Whether ``module`` is a layer this class can evaluate."""
        return type(module) is MixtureOfExperts

    def __call__(self, X):
        """Outputs ``(n_rows, out_features)`` for float64 rows ``(n_rows, in)``."""
        logits = X @ self.router_weight + self.router_bias
        if self.top_k is None:
            experts = slice(None)  # every expert, without copying the weights
            weights = _softmax(logits)
        else:
            # Ties go to the lower expert index, as far as a stable sort decides.
            if self.top_k == 1:
                chosen = logits.argmax(axis=1)[:, None]
            else:
                chosen = np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k]
            if X.shape[0] == 1:  # one row: its experts are already distinct
                experts, position = chosen[0], np.arange(self.top_k)[None]
            else:
                experts, position = np.unique(chosen, return_inverse=True)
                position = position.reshape(chosen.shape)
            if self.top_k == 1:
                top_weights = np.ones_like(logits[:, :1])
            else:
                top_weights = _softmax(np.take_along_axis(logits, chosen, axis=1))
            weights = np.zeros((X.shape[0], experts.size))
            np.put_along_axis(weights, position, top_weights, axis=1)
        out = self._experts(X, experts)  # (n_used, n_rows, out)
        return np.einsum("ne,eno->no", weights, out)

    def _experts(self, X, experts):
        h = np.matmul(X, self.weights[0][experts]) + self.biases[0][experts][:, None]
        for weight, bias in zip(self.weights[1:], self.biases[1:], strict=True):
            h = self.activation(h)
            h = np.matmul(h, weight[experts]) + bias[experts][:, None]
        return h


def _array(tensor):
    return tensor.detach().cpu().double().numpy()
