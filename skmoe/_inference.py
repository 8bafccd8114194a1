"""What prediction needs from a fitted module, derived on demand from ``module_``.

On the CPU the estimators predict in float64: float32 matrix products round
differently for different batch shapes, which would make a row's prediction depend
on the rows beside it. ``module_`` (float32, what training updates) stays the one
source of truth; its float64 copy and the NumPy small-batch model are derived from it
at the first prediction that needs them and derived again whenever ``module_``
changed since: a parameter or buffer edited in place (each tensor's version counter
moves), replaced, or a submodule swapped. Nothing derived is pickled or saved.

A CPU prediction is a pure function of the fitted model and the row: the same bits
whatever the thread count, the machine's load and the other rows of the call.

- Where the NumPy model exists it predicts every row count (:mod:`skmoe._small_batch`
  computes each row on its own), in chunks of :data:`NUMPY_CHUNK_ROWS` rows.
- Otherwise the float64 torch copy predicts, in blocks of :data:`BLOCK_ROWS` rows,
  under :class:`RowwiseProducts`: its matrix products (``nn.Linear``, the expert
  banks' ``baddbmm``, the numerical embeddings' ``einsum``) become one NumPy
  vector-matrix product per row, and its softmaxes and sums add their terms one
  slice at a time. A BLAS product rounds a row differently for different batch
  heights and thread counts, and for some widths by whether the row sits at an even
  or odd place in the batch; torch picks some softmax and reduction kernels by the
  row count. Top-k dispatch is off in the float64 copy (each expert's rows would
  depend on the other rows).

Either way the blocks are independent, so several run at once on a pool of Python
threads (``n_threads`` of them; ``"auto"`` counts the idle cores): that changes how
soon a prediction is ready, never what it is.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch
from torch.overrides import TorchFunctionMode

from ._engine.threads import torch_threads
from ._input import check_float32_range
from ._small_batch import small_batch_model
from .nn.embeddings import float64_copy

BLOCK_ROWS = 1024
"""Rows the float64 torch copy predicts at once (any count gives the same bits)."""

NUMPY_CHUNK_ROWS = 256
"""Rows the NumPy model evaluates at once (any count gives the same bits)."""


class WeightsWatch:
    """Tells, in a few microseconds, whether a module's tensors changed.

    It records every submodule, parameter and buffer with its version counter and
    storage; :meth:`unchanged` compares them with the module's present state.

    Parameters
    ----------
    module : torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(2, 1)
    >>> watch = WeightsWatch(layer)
    >>> watch.unchanged()
    True
    >>> with torch.no_grad():
    ...     _ = layer.weight.mul_(2.0)
    >>> watch.unchanged()
    False
    """

    def __init__(self, module):
        self.places, self.tensors = [], []
        for owner in module.modules():
            for store in (owner._modules, owner._parameters, owner._buffers):
                for name, value in store.items():
                    self.places.append((store, name, value))
                    if isinstance(value, torch.Tensor):
                        self.tensors.append(value)
        self.stamps = [_stamp(t) for t in self.tensors]

    def unchanged(self):
        """Whether every recorded tensor and submodule is still in place, unedited."""
        for store, name, value in self.places:
            if store.get(name) is not value:
                return False
        return [_stamp(t) for t in self.tensors] == self.stamps


def _stamp(value):
    """A tensor's version counter and storage address.

    A tensor without a version counter (some torch builds' special tensors) gets a
    fresh object, never equal to the last one: whatever holds it is always rebuilt.
    """
    version = getattr(value, "_version", None)
    if version is None:
        return object()
    return version, value.data_ptr()


class InferenceCache:
    """The float64 predictor and small-batch model of an estimator's ``module_``.

    Built by :meth:`get` when first needed and rebuilt when ``module_`` changed
    (see :class:`WeightsWatch`); on CUDA the module predicts itself in float32.
    """

    def __init__(self):
        self.source = self.watch = self.predictor = self.small_batch = None

    def get(self, module, device):
        """``(module, dtype, small_batch_model_or_None)`` to predict with."""
        if device.type != "cpu":
            return module, torch.float32, None
        if self.source is not module or not self.watch.unchanged():
            predictor = float64_copy(module)
            for sub in predictor.modules():
                if hasattr(sub, "min_dispatch_savings"):
                    # Dispatch multiplies each expert's rows by its own product,
                    # whose height depends on the other rows of the block.
                    sub.min_dispatch_savings = float("inf")
            self.small_batch = small_batch_model(predictor)
            self.predictor, self.source = predictor, module
            self.watch = WeightsWatch(module)
        return self.predictor, torch.float64, self.small_batch


def _dense_rows(X, start, stop):
    part = X[start:stop]
    check_float32_range(part)
    if sp.issparse(part):
        part = part.toarray()
    # One layout for every call: a product's rounding may follow the strides.
    return np.ascontiguousarray(part, dtype=np.float64)


def _run_blocks(n_rows, block_rows, compute, n_workers):
    """``compute(start, stop)`` over consecutive blocks of rows, into one array;
    ``n_workers`` is an int or a callable returning one (asked only when there is
    more than one block)."""
    starts = list(range(0, n_rows, block_rows))
    first = compute(0, min(block_rows, n_rows))
    if len(starts) == 1:
        return first
    result = np.empty((n_rows, *first.shape[1:]), dtype=first.dtype)
    result[: first.shape[0]] = first

    def fill(start):
        stop = min(start + block_rows, n_rows)
        result[start:stop] = compute(start, stop)

    if callable(n_workers):
        n_workers = n_workers()
    n_workers = min(n_workers, len(starts) - 1)
    if n_workers <= 1:
        for start in starts[1:]:
            fill(start)
    else:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(fill, starts[1:]))
    return result


def predict_numpy(model, X, n_workers):
    """The NumPy model's outputs for validated rows ``X`` (ndarray or sparse)."""
    return _run_blocks(
        X.shape[0],
        NUMPY_CHUNK_ROWS,
        lambda start, stop: model(_dense_rows(X, start, stop)),
        n_workers,
    )


def _rowwise_matmul(a, b):
    """``a @ b`` for ``a`` of shape ``(..., n, k)`` and ``b`` of ``(..., k, m)``, as
    one NumPy vector-matrix product per row of ``a``: each row's arithmetic is the
    same call whatever the other rows and their number."""
    a, b = a.detach().numpy(), b.detach().numpy()
    return torch.from_numpy(np.matmul(a[..., None, :], b[..., None, :, :])[..., 0, :])


def _sum_along(x, dim, keepdim=False):
    """``x.sum(dim)`` added one slice at a time, the same order for every row."""
    total = x.narrow(dim, 0, 1).clone()
    for j in range(1, x.shape[dim]):
        total += x.narrow(dim, j, 1)
    return total if keepdim else total.squeeze(dim)


def _softmax(x, dim, log=False):
    z = x - x.amax(dim=dim, keepdim=True)
    e = z.exp()
    total = _sum_along(e, dim, keepdim=True)
    return z - total.log() if log else e / total


_SOFTMAX = {
    torch.softmax: False,
    torch.nn.functional.softmax: False,
    torch.Tensor.softmax: False,
    torch.log_softmax: True,
    torch.nn.functional.log_softmax: True,
    torch.Tensor.log_softmax: True,
}
_SUMS = (torch.sum, torch.Tensor.sum)
_PER_FEATURE = {"nfk,fkd->nfd", "nft,ftd->nfd"}


def _einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if equation.replace(" ", "") not in _PER_FEATURE:
        raise NotImplementedError(f"einsum {equation!r}")
    z, weight = operands  # (n, f, k) and (f, k, d): one product per feature
    return _rowwise_matmul(z.transpose(0, 1), weight).transpose(0, 1)


class RowwiseProducts(TorchFunctionMode):
    """Inside this mode, the matrix products skmoe's modules run at inference
    (``F.linear``, ``baddbmm``, ``bmm``, ``matmul``/``@``, ``mm`` and the per-feature
    ``einsum`` of the numerical embeddings) are one vector-matrix product per row,
    and softmaxes and sums over one dimension add their terms in order, so that a
    row's result does not depend on the other rows, their number or the threads.
    CPU float64 tensors only (the float64 predictor's).

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(3, 2).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> with RowwiseProducts():
    ...     alone, together = layer(x[:1]), layer(x)
    >>> torch.equal(alone[0], together[0])
    True
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            out = _rowwise_matmul(x, weight.t())
            return out if bias is None else out + bias
        if func is torch.baddbmm and not kwargs and len(args) == 3:
            bias, x, weight = args
            return bias + _rowwise_matmul(x, weight)
        if (
            func in (torch.bmm, torch.matmul, torch.mm, torch.Tensor.__matmul__)
            and not kwargs
            and args[0].ndim >= 2
            and args[1].ndim >= 2
        ):
            return _rowwise_matmul(args[0], args[1])
        if func is torch.einsum:
            return _einsum(*args)
        if func in _SOFTMAX:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if isinstance(dim, int):
                return _softmax(args[0], dim, log=_SOFTMAX[func])
        if func in _SUMS and len(args) == 2 and not kwargs and isinstance(args[1], int):
            return _sum_along(args[0], args[1])
        if func in _SUMS and (len(args) == 1 and set(kwargs) <= {"dim", "keepdim"}):
            dim = kwargs.get("dim")
            if isinstance(dim, int):
                return _sum_along(args[0], dim, kwargs.get("keepdim", False))
        return func(*args, **kwargs)


def predict_blocks(module, X, n_workers, fn=None):
    """``module(x)`` (or ``fn(module, x)``) over blocks of :data:`BLOCK_ROWS`
    float64 rows of ``X`` under :class:`RowwiseProducts`, as a float64 ndarray."""

    def compute(start, stop):
        with torch.no_grad(), RowwiseProducts():
            x = torch.from_numpy(_dense_rows(X, start, stop))
            out = module(x) if fn is None else fn(module, x)
        return out.double().numpy()

    if module.training:
        module.eval()
    with torch_threads(1):
        return _run_blocks(X.shape[0], BLOCK_ROWS, compute, n_workers)
