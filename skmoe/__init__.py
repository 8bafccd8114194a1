"""skmoe: scikit-learn compatible Mixture-of-Experts estimators backed by PyTorch."""

__version__ = "0.1.0.dev0"

from ._streaming import fit_chunks
from .compress import distill, merge_experts, prune_experts
from .export import to_onnx
from .mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from .multigate import MultiGateMoE, MultiGateMoEClassifier, MultiGateMoERegressor
from .persistence import load, save

__all__ = [
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressor",
    "MultiGateMoE",
    "MultiGateMoEClassifier",
    "MultiGateMoERegressor",
    "__version__",
    "distill",
    "fit_chunks",
    "load",
    "merge_experts",
    "prune_experts",
    "save",
    "to_onnx",
]
