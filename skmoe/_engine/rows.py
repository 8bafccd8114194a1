"""Row sources the engine draws batches from, by index, without per-row collation."""

import torch


class DenseRows:
    """A dense ``(n_rows, n_features)`` tensor; batches are ``index_select`` calls."""

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return self.values.shape[0]

    def take(self, index):
        return self.values.index_select(0, index)


class SparseRows:
    """A CSR matrix kept as three tensors; each batch is densified on its own.

    Parameters
    ----------
    crow, col, values : torch.Tensor
        CSR row pointers, column indices and values, on the training device.
    n_features : int
        Number of columns.
    """

    def __init__(self, crow, col, values, n_features):
        self.crow = crow
        self.col = col
        self.values = values
        self.n_features = int(n_features)

    def __len__(self):
        return self.crow.shape[0] - 1

    def take(self, index):
        starts = self.crow.index_select(0, index)
        lengths = self.crow.index_select(0, index + 1) - starts
        out = self.values.new_zeros(index.shape[0], self.n_features)
        n_stored = int(lengths.sum())
        if n_stored == 0:
            return out
        batch_rows = torch.repeat_interleave(
            torch.arange(index.shape[0], device=index.device), lengths
        )
        first_in_batch = torch.cumsum(lengths, 0) - lengths
        within_row = (
            torch.arange(n_stored, device=index.device) - first_in_batch[batch_rows]
        )
        source = starts[batch_rows] + within_row
        out.index_put_(
            (batch_rows, self.col.index_select(0, source)),
            self.values.index_select(0, source),
            accumulate=True,
        )
        return out
