"""skmoe: scikit-learn compatible Mixture-of-Experts estimators backed by PyTorch."""

__version__ = "0.1.0.dev0"

from ._streaming import fit_chunks
from .mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from .multigate import MultiGateMoEClassifier, MultiGateMoERegressor
from .persistence import load, save

__all__ = [
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressor",
    "MultiGateMoEClassifier",
    "MultiGateMoERegressor",
    "__version__",
    "fit_chunks",
    "load",
    "save",
]
