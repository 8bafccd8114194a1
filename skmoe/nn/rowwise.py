"""Softmax and cross-entropy across each row, fast for narrow rows on a CPU.

Routers have a handful of experts and classifiers a handful of classes, so their
softmax runs over a last dimension of 2 to 15 values. On a CPU, torch's kernel for
the last dimension is vectorised along that dimension and falls back to a scalar loop
when it is narrower than one vector register (16 floats with AVX-512; in float64 the
kernel is slow up to a few dozen columns). The same softmax taken over the first
dimension of the transposed view, which torch vectorises across the rows instead, was
measured on the benchmark machine (one thread, float32) at:

* 256 x 8: 28 µs direct, 6 µs transposed; 4096 x 8: 445 µs against 48 µs;
* 256 x 2: 3x faster transposed; 256 x 16 and wider: the direct kernel wins;
* 8 rows or fewer: the direct kernel wins (the transposed route costs a few more
  calls); cross-entropy gains less and only from about 128 rows and 4 classes.

These helpers take the faster route for the shape at hand. Either way the result has
the usual shape and the same values up to rounding.
"""

import torch
from torch.nn import functional as F

# Measured crossovers (see the module docstring).
NARROW_FLOAT32_WIDTH = 16
NARROW_FLOAT64_WIDTH = 48
SOFTMAX_MIN_ROWS = 64
CROSS_ENTROPY_MIN_ROWS = 128
CROSS_ENTROPY_MIN_WIDTH = 4
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
