"""Pure PyTorch building blocks of skmoe.

Nothing here imports scikit-learn or numpy: the modules drop into any PyTorch training
loop, skorch included (add :func:`auxiliary_loss` to the loss).
"""

from .experts import ExpertBank
from .gates import Gate, Routing
from .layer import MixtureOfExperts, auxiliary_loss
from .losses import balancing_loss, load_balancing_loss, router_z_loss
from .multigate import MultiGateMixtureOfExperts
from .subset import keep_experts

__all__ = [
    "ExpertBank",
    "Gate",
    "MixtureOfExperts",
    "MultiGateMixtureOfExperts",
    "Routing",
    "auxiliary_loss",
    "balancing_loss",
    "keep_experts",
    "load_balancing_loss",
    "router_z_loss",
]
