"""Gating networks: map each input row to weights over the experts.

Four routing schemes share one module, each stated as a
:class:`~skmoe.nn.routing.RoutingSpec`:

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

from .routing import GATINGS, choose, get_spec
from .rowwise import softmax_rows

__all__ = ["GATINGS", "Gate", "GateScores", "Routing"]


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


class GateScores(NamedTuple):
    """:meth:`Gate.score_inputs`: the scores and what their gradients need.

    Attributes
    ----------
    logits : torch.Tensor of shape (batch, n_experts)
    scores : torch.Tensor of shape (batch, n_experts) or None
        Noisy scores to choose by; ``None`` where the logits are the scores.
    router_input : torch.Tensor of shape (batch, in_features)
        The (jittered) input of the router.
    noise : tuple or None
        For noisy scores, the rows, the noise layer's output before the softplus
        and the Gaussian draws.
    jitter : torch.Tensor of shape (batch, in_features) or None
        The factors the input was jittered by; ``None`` without jitter.
    """

    logits: torch.Tensor
    scores: torch.Tensor | None
    router_input: torch.Tensor
    noise: tuple | None
    jitter: torch.Tensor | None = None


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
    gating : {"softmax", "noisy", "switch"} or RoutingSpec, default="softmax"
        Routing scheme; see the module docstring and :mod:`skmoe.nn.routing`.

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
        spec = get_spec(gating)
        self.spec = spec
        self.n_experts = int(n_experts)
        self.top_k = spec.resolve_top_k(top_k, self.n_experts)
        self.gating = spec.name
        self.router = nn.Linear(in_features, n_experts)
        self.noise = nn.Linear(in_features, n_experts) if spec.noisy_scores else None
        if self.noise is not None:
            # Start with little noise; the scale is learned.
            nn.init.zeros_(self.noise.weight)
            nn.init.constant_(self.noise.bias, -2.0)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "spec" not in self.__dict__:  # pickled before routing specs existed
            self.spec = get_spec(self.gating)

    @property
    def kept(self):
        """Experts each row keeps, or ``None`` where routing is computed densely."""
        return self.spec.kept(self.top_k, self.n_experts)

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
        return self.score_inputs(x)[:2]

    def score_inputs(self, x):
        """:meth:`scores`, plus the tensors :meth:`scores_backward` needs.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)

        Returns
        -------
        GateScores
        """
        spec = self.spec
        router_input, jitter = x, None
        if spec.input_jitter and self.training:
            j = spec.input_jitter
            jitter = torch.empty_like(x).uniform_(1 - j, 1 + j)
            router_input = x * jitter
        logits = self.router(router_input)
        if self.noise is not None and self.training and self.top_k is not None:
            pre = self.noise(x)
            noise = torch.randn_like(logits)
            scores = logits + noise * F.softplus(pre)
            return GateScores(logits, scores, router_input, (x, pre, noise), jitter)
        return GateScores(logits, None, router_input, None, jitter)

    def scores_backward(self, saved, grad_logits, grad_scores):
        """Gradients of the gate's parameters from those of its logits and scores.

        Parameters
        ----------
        saved : GateScores
            From :meth:`score_inputs`.
        grad_logits : torch.Tensor of shape (batch, n_experts)
        grad_scores : torch.Tensor of shape (batch, n_experts) or None

        Returns
        -------
        list of (torch.nn.Parameter, torch.Tensor or None)
            Each parameter with its gradient; ``None`` where it got none (the noise
            of top-1 routing, which only chooses).

        Examples
        --------
        >>> import torch
        >>> gate = Gate(3, 4, top_k=2, gating="noisy").train()
        >>> with torch.no_grad():
        ...     saved = gate.score_inputs(torch.randn(5, 3))
        ...     grads = gate.scores_backward(
        ...         saved, torch.ones_like(saved.logits), torch.ones_like(saved.scores)
        ...     )
        >>> [tuple(g.shape) for _, g in grads]
        [(4, 3), (4,), (4, 3), (4,)]
        """
        router = self.router
        if grad_scores is not None:
            grad_logits = grad_logits + grad_scores  # the scores add noise to logits
        grads = [
            (router.weight, grad_logits.t().mm(saved.router_input)),
            (router.bias, grad_logits.sum(0)),
        ]
        if saved.noise is not None:
            x = saved.noise[0]
            if grad_scores is None:
                grads += [(self.noise.weight, None), (self.noise.bias, None)]
            else:
                grad_pre = _noise_grad(saved, grad_scores)
                grads += [
                    (self.noise.weight, grad_pre.t().mm(x)),
                    (self.noise.bias, grad_pre.sum(0)),
                ]
        return grads

    def input_backward(self, saved, grad_logits, grad_scores):
        """The gradient of the gate's input from those of its logits and scores.

        Parameters
        ----------
        saved : GateScores
            From :meth:`score_inputs`.
        grad_logits : torch.Tensor of shape (batch, n_experts)
        grad_scores : torch.Tensor of shape (batch, n_experts) or None

        Returns
        -------
        torch.Tensor of shape (batch, in_features)

        Examples
        --------
        >>> import torch
        >>> gate = Gate(3, 4, top_k=1, gating="switch").train()
        >>> with torch.no_grad():
        ...     saved = gate.score_inputs(torch.randn(5, 3))
        ...     grad = gate.input_backward(saved, torch.ones_like(saved.logits), None)
        >>> grad.shape
        torch.Size([5, 3])
        """
        if grad_scores is not None:
            grad_logits = grad_logits + grad_scores
        grad = grad_logits.mm(self.router.weight)
        if saved.jitter is not None:  # the router read x * jitter
            grad = grad.mul_(saved.jitter)
        if saved.noise is not None and grad_scores is not None:
            grad = grad.addmm_(_noise_grad(saved, grad_scores), self.noise.weight)
        return grad

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
        k = self.kept
        if k is None:
            return Routing(logits, probs, None, probs)
        top_scores, indices = choose(logits if scores is None else scores, k)
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


def _noise_grad(saved, grad_scores):
    """Gradient of the noise layer's output before the softplus."""
    _, pre, noise = saved.noise
    return torch.ops.aten.softplus_backward(grad_scores * noise, pre, 1, 20)
