"""Softmax and cross-entropy across each row, fast for narrow rows on a CPU.

Routers have a handful of experts and classifiers a handful of classes, so their
softmax runs over a last dimension of 2 to 15 values. On a CPU, torch's kernel for
the last dimension is vectorised along that dimension and falls back to a scalar loop
when it is narrower than one vector register (16 floats with AVX-512; in float64 the
kernel is slow up to a few dozen columns). The same softmax taken over the first
dimension of the transposed view, which torch vectorises across the rows instead, is
several times faster for narrow rows (figures in ``docs/performance.md``; the
crossovers in :mod:`skmoe.nn.thresholds`).

These helpers take the faster route for the shape at hand. Either way the result has
the usual shape and the same values up to rounding.
"""

import torch
from torch.nn import functional as F

from .thresholds import (
    CROSS_ENTROPY_MIN_ROWS,
    CROSS_ENTROPY_MIN_WIDTH,
    NARROW_FLOAT32_WIDTH,
    NARROW_FLOAT64_WIDTH,
    SOFTMAX_MIN_ROWS,
    TOPK_ROUNDS_MIN_COLUMNS_PER_K,
)

_NARROW_WIDTH = {
    torch.float32: NARROW_FLOAT32_WIDTH,
    torch.float64: NARROW_FLOAT64_WIDTH,
}


def _transposed_is_faster(x, min_rows, min_width=1):
    if x.ndim != 2 or x.device.type != "cpu":
        return False
    narrow = _NARROW_WIDTH.get(x.dtype)  # measured for float32 and float64 only
    if narrow is None:
        return False
    rows, width = x.shape
    return rows >= min_rows and min_width <= width < narrow


def softmax_rows(x):
    """Softmax across each row of a ``(batch, width)`` tensor.

    Parameters
    ----------
    x : torch.Tensor of shape (batch, width)

    Returns
    -------
    torch.Tensor of shape (batch, width)
        Each row sums to one. Where the transposed route is taken this is a
        transposed view of a contiguous ``(width, batch)`` tensor.

    Examples
    --------
    >>> import torch
    >>> p = softmax_rows(torch.zeros(3, 4))
    >>> p.shape, p.sum(1).tolist()
    (torch.Size([3, 4]), [1.0, 1.0, 1.0])
    """
    return _along_rows(torch.softmax, x)


def _along_rows(fn, x):
    """``fn(x, dim=-1)``, taken over the transposed view where that is faster."""
    if _transposed_is_faster(x, SOFTMAX_MIN_ROWS):
        return fn(x.t(), dim=0).t()
    return fn(x, dim=-1)


def log_softmax_rows(x):
    """Log-softmax across each row, by the faster route as :func:`softmax_rows` is.

    The result may likewise be a transposed view.

    Examples
    --------
    >>> import torch
    >>> log_softmax_rows(torch.zeros(1, 2)).exp().tolist()
    [[0.5, 0.5]]
    """
    return _along_rows(torch.log_softmax, x)


def cross_entropy_rows(logits, targets, ignore_index=-100):
    """Softmax cross-entropy of each row, unreduced.

    Parameters
    ----------
    logits : torch.Tensor of shape (batch, n_classes)
    targets : torch.Tensor of shape (batch,)
        Class codes; rows equal to ``ignore_index`` get a loss of zero.
    ignore_index : int, default=-100

    Returns
    -------
    torch.Tensor of shape (batch,)

    Examples
    --------
    >>> import torch
    >>> loss = cross_entropy_rows(torch.zeros(2, 4), torch.tensor([0, 3]))
    >>> [round(v, 4) for v in loss.tolist()]
    [1.3863, 1.3863]
    """
    if _transposed_is_faster(logits, CROSS_ENTROPY_MIN_ROWS, CROSS_ENTROPY_MIN_WIDTH):
        # (1, classes, batch): the class dimension is not the last one.
        return F.cross_entropy(
            logits.t().unsqueeze(0),
            targets.unsqueeze(0),
            ignore_index=ignore_index,
            reduction="none",
        ).squeeze(0)
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="none")


def top_k_rows(x, k):
    """The ``k`` largest values of each row and their columns, largest first.

    Equal to ``x.topk(k, dim=1)`` (ties aside). On a CPU, torch's ``topk`` runs a
    branchy partial sort per row; for a few picks among many columns, ``k`` rounds of
    ``max`` (each masking the column just taken) are faster, from
    :data:`~skmoe.nn.thresholds.TOPK_ROUNDS_MIN_COLUMNS_PER_K` columns per pick
    (figures in ``docs/performance.md``).

    Parameters
    ----------
    x : torch.Tensor of shape (batch, width)
    k : int

    Returns
    -------
    values : torch.Tensor of shape (batch, k)
    indices : torch.Tensor of shape (batch, k)

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.0, 0.2, 0.4, 0.8, 0.6, 0.7, 0.5, 0.2]])
    >>> values, indices = top_k_rows(x, 2)
    >>> indices.tolist()
    [[1, 7]]
    """
    rounds = (
        x.device.type == "cpu"
        and x.ndim == 2
        and k > 1
        and x.shape[1] >= TOPK_ROUNDS_MIN_COLUMNS_PER_K * k
    )
    if not rounds:
        return x.topk(k, dim=1)
    values, indices = [], []
    rest = x
    for j in range(k):
        value, index = rest.max(dim=1, keepdim=True)
        values.append(value)
        indices.append(index)
        if j + 1 < k:  # mask the column taken: out of place first, x is the caller's
            fill = rest.scatter_ if j else rest.scatter
            rest = fill(1, index, float("-inf"))
    return torch.cat(values, dim=1), torch.cat(indices, dim=1)
