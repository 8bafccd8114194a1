"""skmoe: scikit-learn compatible Mixture-of-Experts estimators backed by PyTorch."""

__version__ = "0.1.0.dev0"

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
    "load",
    "save",
]
