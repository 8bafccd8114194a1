"""The routing rules of each gating type, written once as data.

A :class:`RoutingSpec` says how a gate turns router logits into each row's experts
and combination weights: whether learned noise is added to the scores it chooses by,
whether the router input is jittered, how many experts it may keep, and whether
keeping every expert is computed as dense routing. :class:`~skmoe.nn.Gate` (the
reference forward pass), the fused training pass (:mod:`skmoe.nn.fused`), the
engine's autograd-free step and the estimators' small-batch predictor all read these
fields through the helpers below; none restates a rule.

The fast paths run only for the specs in :data:`FAST_SPECS`, each proven equal to
autograd of the reference pass in float64 (``tests/test_fused.py`` runs over every
registered spec). Any other spec, and any subclass of :class:`~skmoe.nn.Gate` or
:class:`~skmoe.nn.ExpertBank`, trains through the reference pass and autograd.

Adding a gating type that combines these rules is one entry in :data:`SPECS` (and
:data:`FAST_SPECS`) plus its test; see ``docs/design.md``.
"""

from dataclasses import dataclass

from .rowwise import top_k_rows


@dataclass(frozen=True)
class RoutingSpec:
    """The rules of one gating type.

    Attributes
    ----------
    name : str
        The ``gating`` value that selects it.
    noisy_scores : bool
        In training mode, with ``top_k`` set, choose experts by the logits plus
        learned Gaussian noise (Shazeer et al. 2017): ``logits + N(0, 1) *
        softplus(noise(x))``; the kept weights are the softmax of the chosen
        scores. No noise at inference.
    input_jitter : float
        In training mode, multiply the router input by ``U(1 - j, 1 + j)`` (Switch
        Transformer); ``0`` for none.
    max_top_k : int or None
        The most experts a row may keep (``top_k=None`` then means this many);
        ``None`` for no limit.
    all_kept_is_dense : bool
        Whether ``top_k == n_experts`` is computed as dense routing (true unless
        noise could change the weights).

    Examples
    --------
    >>> SPECS["switch"].max_top_k, SPECS["noisy"].all_kept_is_dense
    (1, False)
    """

    name: str
    noisy_scores: bool = False
    input_jitter: float = 0.0
    max_top_k: int | None = None
    all_kept_is_dense: bool = True

    def resolve_top_k(self, top_k, n_experts):
        """The ``top_k`` a gate stores, after this spec's limit; raises on bad ones.

        Examples
        --------
        >>> SPECS["switch"].resolve_top_k(None, 4), SPECS["softmax"].resolve_top_k(2, 4)
        (1, 2)
        """
        if self.max_top_k is not None:
            if top_k is not None and top_k > self.max_top_k:
                most = (
                    "one expert" if self.max_top_k == 1 else f"{self.max_top_k} experts"
                )
                raise ValueError(
                    f"gating={self.name!r} routes each row to at most {most}; got "
                    f"top_k={top_k}. Use top_k=None or top_k<={self.max_top_k}."
                )
            top_k = self.max_top_k if top_k is None else top_k
        if top_k is not None and not 1 <= top_k <= n_experts:
            raise ValueError(
                f"top_k must be between 1 and n_experts={n_experts}, got {top_k}."
            )
        return None if top_k is None else int(top_k)

    def kept(self, top_k, n_experts):
        """Experts each row keeps, or ``None`` where routing is computed densely.

        Examples
        --------
        >>> SPECS["softmax"].kept(4, 4), SPECS["noisy"].kept(4, 4)
        (None, 4)
        """
        if top_k is None or (top_k == n_experts and self.all_kept_is_dense):
            return None
        return top_k


SPECS = {
    spec.name: spec
    for spec in (
        RoutingSpec("softmax"),
        RoutingSpec("noisy", noisy_scores=True, all_kept_is_dense=False),
        RoutingSpec("switch", input_jitter=1e-2, max_top_k=1),
    )
}
"""Every registered gating type, by ``gating`` name."""

FAST_SPECS = frozenset(SPECS.values())
"""The specs the fused pass, the autograd-free step and the NumPy predictor serve."""

GATINGS = tuple(SPECS)


def is_proven(spec):
    """Whether the fast paths serve ``spec`` (it is in :data:`FAST_SPECS`).

    Examples
    --------
    >>> is_proven(SPECS["noisy"]), is_proven(RoutingSpec("untested"))
    (True, False)
    """
    return spec in FAST_SPECS


def get_spec(gating):
    """The :class:`RoutingSpec` named ``gating``, or ``gating`` if it is one.

    Examples
    --------
    >>> get_spec("noisy").noisy_scores
    True
    """
    if isinstance(gating, RoutingSpec):
        return gating
    if gating not in SPECS:
        raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}.")
    return SPECS[gating]


def choose(scores, k):
    """Each row's ``k`` best experts by ``scores``, best first: ``(values, indices)``.

    Examples
    --------
    >>> import torch
    >>> choose(torch.tensor([[0.1, 0.7, 0.2]]), 2)[1].tolist()
    [[1, 2]]
    """
    if k == 1:
        return scores.max(dim=1, keepdim=True)
    return top_k_rows(scores, k)
