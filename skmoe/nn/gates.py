"""Gating networks: map each input row to weights over the experts.

Four routing schemes share one module:

* dense softmax (``top_k=None``, ``gating="softmax"``), the classic mixture of experts;
* top-k softmax (``top_k=k``): keep the k largest probabilities and renormalise;
* noisy top-k (``gating="noisy"``, Shazeer et al. 2017): learned Gaussian noise on the
  logits while training, none at inference, then top-k;
* switch (``gating="switch"``, Fedus et al. 2022): top-1 routing with multiplicative
  jitter on the router input while training.

With one expert kept per row the renormalised weight is exactly 1 and carries no
gradient, so the router would only learn from the balancing losses. skmoe uses a
straight-through weight ``(p - stop_gradient(p)) + 1`` there: its value is exactly 1
(rows still sum to one) and its gradient is that of the router probability ``p``,
which is the gradient the Switch Transformer obtains by scaling the expert output by
``p``.
"""

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .rowwise import softmax_rows, top_k_rows

GATINGS = ("softmax", "noisy", "switch")
SWITCH_JITTER = 1e-2


class Routing(NamedTuple):
    """The result of a gate for a batch.

    Attributes
    ----------
    logits : torch.Tensor of shape (batch, n_experts)
        Router logits before noise (used by the z-loss).
    probs : torch.Tensor of shape (batch, n_experts)
        Softmax of the logits (used by the load-balancing loss).
    indices : torch.Tensor of shape (batch, k) or None
        Chosen experts per row; ``None`` for dense routing.
    weights : torch.Tensor of shape (batch, k) or (batch, n_experts)
        Combination weights of the chosen experts (all experts when dense); each row
        sums to one.

    On the CPU, ``probs`` and ``weights`` may be transposed views (see
    :func:`skmoe.nn.rowwise.softmax_rows`): use ``reshape``, not ``view``, on them.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    indices: torch.Tensor | None
    weights: torch.Tensor

    def dense_weights(self):
        """Combination weights scattered to ``(batch, n_experts)``."""
        if self.indices is None:
            return self.weights
        return torch.zeros_like(self.probs).scatter(1, self.indices, self.weights)


class Gate(nn.Module):
    """Linear router with dense, top-k, noisy top-k or switch routing.

    Parameters
    ----------
    in_features : int
        Width of the input.
    n_experts : int
        Number of experts to route between.
    top_k : int or None, default=None
        ``None`` routes every row to all experts; ``k`` keeps the k largest weights per
        row. ``gating="switch"`` always keeps one.
    gating : {"softmax", "noisy", "switch"}, default="softmax"
        Routing scheme; see the module docstring.

    Examples
    --------
    >>> import torch
    >>> gate = Gate(in_features=3, n_experts=4, top_k=2)
    >>> routing = gate(torch.randn(5, 3))
    >>> routing.indices.shape, routing.weights.sum(1).allclose(torch.ones(5))
    (torch.Size([5, 2]), True)
    """

    def __init__(self, in_features, n_experts, top_k=None, gating="softmax"):
        super().__init__()
        if gating not in GATINGS:
            raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}.")
        if gating == "switch":
            if top_k not in (None, 1):
                raise ValueError(
                    f"gating='switch' routes each row to one expert; got top_k={top_k}."
                    " Use top_k=None or top_k=1."
                )
            top_k = 1
        if top_k is not None and not 1 <= top_k <= n_experts:
            raise ValueError(
                f"top_k must be between 1 and n_experts={n_experts}, got {top_k}."
            )
        self.n_experts = int(n_experts)
        self.top_k = None if top_k is None else int(top_k)
        self.gating = gating
        self.router = nn.Linear(in_features, n_experts)
        self.noise = nn.Linear(in_features, n_experts) if gating == "noisy" else None
        if self.noise is not None:
            # Start with little noise; the scale is learned.
            nn.init.zeros_(self.noise.weight)
            nn.init.constant_(self.noise.bias, -2.0)

    def scores(self, x):
        """Router logits and the scores the experts are chosen by.

        The scores are the logits, plus learned Gaussian noise for noisy top-k
        routing in training mode. Switch routing jitters the input in training.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)

        Returns
        -------
        logits : torch.Tensor of shape (batch, n_experts)
        scores : torch.Tensor of shape (batch, n_experts) or None
            ``None`` where the scores are the logits.

        Examples
        --------
        >>> import torch
        >>> gate = Gate(3, 4, top_k=2, gating="noisy")
        >>> logits, scores = gate.train().scores(torch.randn(5, 3))
        >>> logits.shape, scores.shape
        (torch.Size([5, 4]), torch.Size([5, 4]))
        >>> gate.eval().scores(torch.randn(5, 3))[1] is None
        True
        """
        logits, scores, _ = self._scores_and_inputs(x)
        return logits, scores

    def _scores_and_inputs(self, x):
        """:meth:`scores`, plus the tensors their gradients are computed from.

        The third value, ``(router_input, noise_inputs)``, is what
        :func:`skmoe.nn.fused.gate_scores_backward` needs: the (jittered) router
        input, and for noisy scores the rows, the noise layer's output before the
        softplus and the Gaussian draws.
        """
        router_input = x
        if self.gating == "switch" and self.training:
            jitter = torch.empty_like(x).uniform_(1 - SWITCH_JITTER, 1 + SWITCH_JITTER)
            router_input = x * jitter
        logits = self.router(router_input)
        if self.noise is not None and self.training and self.top_k is not None:
            pre = self.noise(x)
            noise = torch.randn_like(logits)
            scores = logits + noise * F.softplus(pre)
            return logits, scores, (router_input, (x, pre, noise))
        return logits, None, (router_input, None)

    def forward(self, x):
        """Route a batch.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)

        Returns
        -------
        Routing
        """
        logits, scores = self.scores(x)
        probs = softmax_rows(logits)
        k = self.top_k
        if k is None or (k == self.n_experts and self.gating != "noisy"):
            return Routing(logits, probs, None, probs)
        if scores is None:
            scores = logits
        if k == 1:
            top_scores, indices = scores.max(dim=-1, keepdim=True)
        else:
            top_scores, indices = top_k_rows(scores, k)
        if k == 1 and not torch.is_grad_enabled():
            weights = torch.ones_like(top_scores)  # the value the estimator below has
        elif k == 1:
            p = probs.gather(1, indices)
            weights = (p - p.detach()) + 1.0  # exactly 1, with p's gradient
        else:
            weights = softmax_rows(top_scores)
        return Routing(logits, probs, indices, weights)

    def extra_repr(self):
        return f"top_k={self.top_k}, gating={self.gating!r}"
