"""How big a fitted model is, and how much of it each row uses."""

from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ..nn import MixtureOfExperts
from ..nn.embeddings import mixture_of

COMPONENTS = ("experts", "gates", "towers", "embeddings", "other")


def _component(name):
    """The component a parameter of a skmoe module belongs to, by its name."""
    parts = name.split(".")
    if "experts" in parts:
        return "experts"
    if "gate" in parts or "task_gates" in parts or "shared_gate" in parts:
        return "gates"
    if "towers" in parts:
        return "towers"
    if any("embed" in part for part in parts):
        return "embeddings"
    return "other"


def model_size(estimator):
    """Parameters, memory and arithmetic of a fitted skmoe estimator.

    Parameters
    ----------
    estimator : fitted skmoe estimator

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        total_params : int
            Every parameter of the model.
        active_params : int
            Parameters one row's prediction uses: all gates, towers and embeddings,
            and with ``top_k=k`` only ``k`` of a single-gate model's experts.
            Multi-gate models evaluate every expert for every row.
        params : dict
            Parameters per component: ``experts``, ``gates``, ``towers``,
            ``embeddings`` and ``other``.
        bytes : dict
            Bytes of each component's weights as stored in ``module_``.
        total_bytes : int
            Their sum.
        flops_per_row : int
            Floating-point operations of one row's prediction in the linear layers
            (a multiply and an add per active weight, an add per active bias).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.inspection import model_size
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(n_experts=8, top_k=2, max_iter=5,
    ...                                  random_state=0).fit(X, y)
    >>> size = model_size(clf)
    >>> size.params["experts"], size.params["gates"]
    (4120, 40)
    >>> size.active_params  # 2 of the 8 experts, and the gate
    1070
    """
    check_is_fitted(estimator)
    module = estimator.module_
    params = dict.fromkeys(COMPONENTS, 0)
    nbytes = dict.fromkeys(COMPONENTS, 0)
    active = 0
    flops = 0
    share = 1.0
    mixture = mixture_of(module)
    if isinstance(mixture, MixtureOfExperts) and mixture.gate.top_k is not None:
        share = mixture.gate.top_k / mixture.n_experts
    for name, param in module.named_parameters():
        part = _component(name)
        params[part] += param.numel()
        nbytes[part] += param.numel() * param.element_size()
        used = param.numel() * (share if part == "experts" else 1.0)
        active += used
        is_bias = name.endswith("bias") or ".biases." in name
        flops += used if is_bias else 2 * used
    return Bunch(
        total_params=sum(params.values()),
        active_params=round(active),
        params=params,
        bytes=nbytes,
        total_bytes=sum(nbytes.values()),
        flops_per_row=round(flops),
    )
