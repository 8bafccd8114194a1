"""Feature embeddings for tabular inputs: numerical, categorical and missing values.

The numerical embeddings follow Gorishniy, Rubachev and Babenko, "On Embeddings for
Numerical Features in Tabular Deep Learning" (NeurIPS 2022): each feature is mapped
to its own small vector before the network sees it, either through periodic
functions of learned frequencies (:class:`PeriodicEmbedding`, the paper's PLR) or
through a piecewise-linear encoding over bins taken from the training data
(:class:`PiecewiseLinearEmbedding`, the paper's PLE followed by a linear layer and a
ReLU). :class:`FeatureEmbedding` puts them together with learned embeddings of
categorical codes and passes missing-value indicators through, and
:class:`EmbeddedModel` runs a mixture of experts on top of it.

The input of :class:`FeatureEmbedding` is one float tensor laid out as
``[numerical | passthrough | categorical codes]``; the codes are integers stored as
floats, ``0`` being the reserved slot for categories unseen in training or missing.
"""

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from .thresholds import SPARSE_EMBEDDING_ROWS


def _embedding_init_(weight, bias, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    nn.init.uniform_(bias, -bound, bound)


class PeriodicEmbedding(nn.Module):
    """Periodic embedding of each numerical feature (PLR, Gorishniy et al. 2022).

    Feature ``j`` becomes ``relu(W_j [cos(2 pi c_j x_j), sin(2 pi c_j x_j)] + b_j)``
    with ``n_frequencies`` learned frequencies ``c_j`` drawn from ``N(0, sigma^2)``.

    Parameters
    ----------
    n_features : int
        Number of numerical features.
    d_embedding : int, default=8
        Size of each feature's embedding.
    n_frequencies : int, default=16
        Number of frequencies per feature.
    sigma : float, default=0.1
        Standard deviation of the initial frequencies; the input is expected to be
        scaled to a unit range.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn.embeddings import PeriodicEmbedding
    >>> emb = PeriodicEmbedding(3, d_embedding=4)
    >>> emb(torch.randn(5, 3)).shape
    torch.Size([5, 12])
    """

    def __init__(self, n_features, d_embedding=8, n_frequencies=16, sigma=0.1):
        super().__init__()
        self.n_features = int(n_features)
        self.d_embedding = int(d_embedding)
        self.frequencies = nn.Parameter(torch.empty(n_features, n_frequencies))
        self.weight = nn.Parameter(
            torch.empty(n_features, 2 * n_frequencies, d_embedding)
        )
        self.bias = nn.Parameter(torch.empty(n_features, d_embedding))
        nn.init.normal_(self.frequencies, 0.0, sigma)
        _embedding_init_(self.weight, self.bias, 2 * n_frequencies)

    @property
    def out_features(self):
        return self.n_features * self.d_embedding

    def forward(self, x):
        """Embed ``x`` of shape ``(batch, n_features)`` to ``(batch, out_features)``."""
        z = (2 * math.pi) * x.unsqueeze(-1) * self.frequencies
        z = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
        out = torch.einsum("nfk,fkd->nfd", z, self.weight) + self.bias
        return torch.relu(out).flatten(1)


class PiecewiseLinearEmbedding(nn.Module):
    """Piecewise-linear encoding over fixed bins, then a per-feature linear layer.

    For bin ``t`` with edges ``[b_(t-1), b_t)`` the encoding is ``0`` left of the
    bin, ``1`` right of it and linear in between; the first bin is open to the left
    and the last one to the right, so values beyond the training range extrapolate
    linearly (PLE, Gorishniy et al. 2022). Each feature's encoding then goes through
    its own linear layer and a ReLU.

    Parameters
    ----------
    bins : sequence of sequences of float
        Sorted bin edges of each feature, at least two per feature (one bin); taken
        from quantiles of the training data by the estimators.
    d_embedding : int, default=8
        Size of each feature's embedding.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn.embeddings import PiecewiseLinearEmbedding
    >>> emb = PiecewiseLinearEmbedding([[0.0, 0.5, 1.0], [-1.0, 1.0]], d_embedding=4)
    >>> emb(torch.rand(5, 2)).shape
    torch.Size([5, 8])
    >>> emb.encode(torch.tensor([[0.25, 0.0]]))
    tensor([[[0.5000, 0.0000],
             [0.5000, 0.0000]]])
    """

    def __init__(self, bins, d_embedding=8):
        super().__init__()
        bins = [[float(b) for b in edges] for edges in bins]
        if not bins or any(len(edges) < 2 for edges in bins):
            raise ValueError("every feature needs at least two bin edges")
        self.n_features = len(bins)
        self.d_embedding = int(d_embedding)
        n_bins = max(len(edges) - 1 for edges in bins)
        left = torch.zeros(self.n_features, n_bins)
        width = torch.ones(self.n_features, n_bins)
        # Per bin: 0 = inner, 1 = open to the left, 2 = open to the right,
        # 3 = open on both sides (a feature with one bin), -1 = padding.
        kind = torch.full((self.n_features, n_bins), -1.0)
        for j, edges in enumerate(bins):
            t = len(edges) - 1
            e = torch.tensor(edges)
            left[j, :t] = e[:-1]
            width[j, :t] = (e[1:] - e[:-1]).clamp(min=1e-12)
            kind[j, :t] = 0.0
            kind[j, 0] = 1.0
            kind[j, t - 1] = 3.0 if t == 1 else 2.0
        self.register_buffer("left", left)
        self.register_buffer("width", width)
        self.register_buffer("kind", kind)
        self.weight = nn.Parameter(torch.empty(self.n_features, n_bins, d_embedding))
        self.bias = nn.Parameter(torch.empty(self.n_features, d_embedding))
        _embedding_init_(self.weight, self.bias, n_bins)

    @property
    def out_features(self):
        return self.n_features * self.d_embedding

    def encode(self, x):
        """The piecewise-linear encoding ``(batch, n_features, n_bins)`` of ``x``."""
        r = (x.unsqueeze(-1) - self.left) / self.width
        low = torch.where((self.kind == 1) | (self.kind == 3), r, r.clamp(min=0))
        high = torch.where((self.kind == 2) | (self.kind == 3), low, low.clamp(max=1))
        return torch.where(self.kind >= 0, high, torch.zeros_like(high))

    def forward(self, x):
        """Embed ``x`` of shape ``(batch, n_features)`` to ``(batch, out_features)``."""
        out = torch.einsum("nft,ftd->nfd", self.encode(x), self.weight) + self.bias
        return torch.relu(out).flatten(1)


def categorical_embedding_size(n_categories):
    """Embedding width for a feature with ``n_categories`` categories (at most 16).

    Examples
    --------
    >>> from skmoe.nn.embeddings import categorical_embedding_size
    >>> categorical_embedding_size(2), categorical_embedding_size(1000)
    (2, 16)
    """
    return int(min(16, max(1, round(1.6 * n_categories**0.56))))


class FeatureEmbedding(nn.Module):
    """Numerical, passthrough and categorical columns to one flat representation.

    Parameters
    ----------
    n_numerical : int
        Leading columns that are numerical features.
    n_passthrough : int, default=0
        Following columns passed on unchanged (missing-value indicators).
    cardinalities : sequence of int, default=()
        Number of categories of each trailing categorical column; its codes run
        from ``0`` (unseen or missing) to the cardinality.
    num_embedding : {None, "periodic", "piecewise_linear"}, default=None
        How numerical columns are embedded; ``None`` passes them on unchanged.
    bins : sequence of sequences of float or None, default=None
        Bin edges per numerical feature, for ``"piecewise_linear"``.
    d_embedding : int, default=8
        Size of each numerical feature's embedding.
    categorical_dims : sequence of int or None, default=None
        Width of each categorical column's embedding; ``None`` uses
        :func:`categorical_embedding_size` of each cardinality.
    bag_sizes : sequence of int or None, default=None
        For each categorical column, ``None`` when it holds one code per row, or
        the number of columns its bag spans: a list-valued column's codes, padded
        with ``-1``, whose embeddings are averaged (an embedding bag with mean
        pooling). ``None`` for all of them when not given.
    sparse : bool, default=True
        Tables of at least
        :data:`~skmoe.nn.thresholds.SPARSE_EMBEDDING_ROWS` rows produce sparse
        gradients (``nn.Embedding(sparse=True)``), for an optimiser that updates
        only the rows a batch read (``torch.optim.SparseAdam``); ``False`` keeps
        every table dense.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn.embeddings import FeatureEmbedding
    >>> emb = FeatureEmbedding(2, n_passthrough=1, cardinalities=[3],
    ...                        num_embedding="periodic", d_embedding=4)
    >>> x = torch.tensor([[0.1, -0.3, 1.0, 2.0], [0.0, 0.2, 0.0, 0.0]])
    >>> emb(x).shape, emb.out_features
    (torch.Size([2, 12]), 12)
    """

    def __init__(
        self,
        n_numerical,
        n_passthrough=0,
        cardinalities=(),
        num_embedding=None,
        bins=None,
        d_embedding=8,
        categorical_dims=None,
        bag_sizes=None,
        sparse=True,
    ):
        super().__init__()
        self.n_numerical = int(n_numerical)
        self.n_passthrough = int(n_passthrough)
        self.cardinalities = [int(c) for c in cardinalities]
        if num_embedding is None or self.n_numerical == 0:
            self.numerical = None
            numerical_out = self.n_numerical
        elif num_embedding == "periodic":
            self.numerical = PeriodicEmbedding(self.n_numerical, d_embedding)
            numerical_out = self.numerical.out_features
        elif num_embedding == "piecewise_linear":
            if bins is None or len(bins) != self.n_numerical:
                raise ValueError("piecewise_linear needs bins for every feature")
            self.numerical = PiecewiseLinearEmbedding(bins, d_embedding)
            numerical_out = self.numerical.out_features
        else:
            raise ValueError(f"unknown num_embedding {num_embedding!r}")
        if categorical_dims is None:
            categorical_dims = [
                categorical_embedding_size(c) for c in self.cardinalities
            ]
        if len(categorical_dims) != len(self.cardinalities):
            raise ValueError("categorical_dims needs one width per categorical column")
        if bag_sizes is None:
            bag_sizes = [None] * len(self.cardinalities)
        if len(bag_sizes) != len(self.cardinalities):
            raise ValueError("bag_sizes needs one entry per categorical column")
        self.bag_sizes = [None if b is None else int(b) for b in bag_sizes]
        self.categorical = nn.ModuleList(
            nn.Embedding(
                c + 1, int(d), sparse=bool(sparse) and c + 1 >= SPARSE_EMBEDDING_ROWS
            )
            for c, d in zip(self.cardinalities, categorical_dims, strict=True)
        )
        self.out_features = (
            numerical_out
            + self.n_passthrough
            + sum(e.embedding_dim for e in self.categorical)
        )

    def forward(self, x):
        """Embed ``x`` of shape ``(batch, n_columns)``."""
        n_num, n_pass = self.n_numerical, self.n_passthrough
        numerical = x[:, :n_num]
        parts = [numerical if self.numerical is None else self.numerical(numerical)]
        if n_pass:
            parts.append(x[:, n_num : n_num + n_pass])
        start = n_num + n_pass
        for table, size in zip(self.categorical, self.bag_sizes, strict=True):
            if size is None:
                parts.append(table(x[:, start].long()).to(x.dtype))
                start += 1
                continue
            codes = x[:, start : start + size]
            start += size
            present = (codes >= 0).to(x.dtype)
            vectors = table(codes.clamp(min=0).long()).to(x.dtype)
            vectors = vectors * present.unsqueeze(-1)
            count = present.sum(dim=1, keepdim=True).clamp(min=1.0)
            parts.append(vectors.sum(dim=1) / count)
        return torch.cat(parts, dim=1)


class EmbeddedModel(nn.Module):
    """A :class:`FeatureEmbedding` followed by a (multi-gate) mixture of experts.

    Forwards :meth:`gate_weights`, :meth:`reset_usage` and :meth:`expert_usage` to
    the mixture, so that it can stand wherever the mixture stood.

    Parameters
    ----------
    embedding : FeatureEmbedding
        Maps the raw columns to the mixture's input.
    body : MixtureOfExperts or MultiGateMixtureOfExperts
        The mixture, with ``in_features == embedding.out_features``.

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import MixtureOfExperts
    >>> from skmoe.nn.embeddings import EmbeddedModel, FeatureEmbedding
    >>> emb = FeatureEmbedding(1, cardinalities=[4])
    >>> model = EmbeddedModel(emb, MixtureOfExperts(emb.out_features, 2))
    >>> x = torch.tensor([[0.5, 3.0], [-1.0, 0.0]])
    >>> model(x).shape, model.gate_weights(x).shape
    (torch.Size([2, 2]), torch.Size([2, 4]))
    """

    def __init__(self, embedding, body):
        super().__init__()
        self.embedding = embedding
        self.body = body

    def forward(self, x, sample_weight=None):
        """The mixture's output on the embedded ``x``.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, n_columns)
        sample_weight : torch.Tensor of shape (batch,) or None, default=None
            Row weights of the mixture's balancing statistics in training mode
            (see :meth:`MixtureOfExperts.forward <skmoe.nn.MixtureOfExperts.forward>`).

        Returns
        -------
        torch.Tensor
        """
        if sample_weight is None:
            return self.body(self.embedding(x))
        return self.body(self.embedding(x), sample_weight=sample_weight)

    def gate_weights(self, x):
        """The mixture's gate weights on the embedded ``x``."""
        return self.body.gate_weights(self.embedding(x))

    def reset_usage(self):
        """Zero the mixture's expert-usage accumulators."""
        self.body.reset_usage()

    def expert_usage(self):
        """The mixture's expert usage since :meth:`reset_usage`."""
        return self.body.expert_usage()


def mixture_of(module):
    """The mixture in ``module``: its body when it is an :class:`EmbeddedModel`,
    else ``module`` itself."""
    return module.body if isinstance(module, EmbeddedModel) else module


class SharedTable(nn.Module):
    """An embedding lookup reading another module's table without owning it.

    The table is held as a plain attribute, neither parameter nor buffer, so that
    converting the module holding it (``.double()``, ``.to()``) leaves the table as
    it is: a float64 copy of a model can read the float32 tables of the original
    (a lookup only moves values, so the float64 result is exact) instead of holding
    a second, twice as large copy of each.

    Parameters
    ----------
    table : torch.Tensor of shape (n_rows, dim)

    Examples
    --------
    >>> import torch
    >>> table = torch.arange(6.0).reshape(3, 2)
    >>> SharedTable(table).double()(torch.tensor([2, 0]))
    tensor([[4., 5.],
            [0., 1.]])
    """

    def __init__(self, table):
        super().__init__()
        self.__dict__["table"] = table

    @property
    def num_embeddings(self):
        return self.table.shape[0]

    @property
    def embedding_dim(self):
        return self.table.shape[1]

    def forward(self, codes):
        """The rows ``codes`` of the table."""
        return F.embedding(codes, self.table)


def float64_copy(module):
    """A float64 copy of ``module`` in evaluation mode whose embedding tables read
    ``module``'s own tables (see :class:`SharedTable`).

    Examples
    --------
    >>> import torch
    >>> from skmoe.nn import MixtureOfExperts
    >>> emb = FeatureEmbedding(1, cardinalities=[4])
    >>> model = EmbeddedModel(emb, MixtureOfExperts(emb.out_features, 2))
    >>> copy64 = float64_copy(model)
    >>> copy64.embedding.categorical[0].table is emb.categorical[0].weight.data
    False
    >>> copy64.embedding.categorical[0].table.data_ptr() == (
    ...     emb.categorical[0].weight.data_ptr())
    True
    """
    memo = {}
    for owner in module.modules():
        if isinstance(owner, FeatureEmbedding):
            for table in owner.categorical:
                memo[id(table)] = SharedTable(table.weight.detach())
    return copy.deepcopy(module, memo).double().eval()
