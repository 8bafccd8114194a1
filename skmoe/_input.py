"""Feature matrices (numpy, pandas, scipy sparse) to torch tensors on a device.

Training data is moved to the device once (sparse data stays sparse there); inference
converts one chunk of rows at a time so memory stays bounded for any number of rows.
"""

import numpy as np
import scipy.sparse as sp
import torch

from ._engine import DenseRows, SparseRows

INFERENCE_CHUNK_ROWS = 4096


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(X):
    """Refuse finite values that float32, the dtype skmoe computes in, cannot hold."""
    values = X.data if sp.issparse(X) else X
    if values.dtype == np.float64 and values.size:
        # Two reductions rather than np.abs(values).max(): no temporary copy of X.
        largest = max(-float(values.min()), float(values.max()))
        if largest > FLOAT32_MAX:
            raise ValueError(
                f"Input X contains a value too large for float32 ({largest:.3g}; "
                f"the largest is {FLOAT32_MAX:.3g}), which skmoe trains in. Scale the "
                "features, for example with a StandardScaler."
            )


def to_rows(X, device):
    """Wrap a validated ``X`` (ndarray or CSR matrix) as an engine row source."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        return SparseRows(
            torch.as_tensor(X.indptr.astype(np.int64), device=device),
            torch.as_tensor(X.indices.astype(np.int64), device=device),
            torch.tensor(X.data, dtype=torch.float32, device=device),
            X.shape[1],
        )
    return DenseRows(torch.tensor(X, dtype=torch.float32, device=device))


def iter_chunks(X, device, dtype=torch.float32, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Yield ``dtype`` tensors of at most ``chunk_rows`` rows of ``X`` on ``device``."""
    for start in range(0, X.shape[0], chunk_rows):
        part = X[start : start + chunk_rows]
        check_float32_range(part)
        if sp.issparse(part):
            part = part.toarray()
        yield torch.tensor(part, dtype=dtype, device=device)
