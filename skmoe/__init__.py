"""skmoe: scikit-learn compatible Mixture-of-Experts estimators backed by PyTorch."""

from .mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from .multigate import MultiGateMoEClassifier, MultiGateMoERegressor

__version__ = "0.1.0.dev0"

__all__ = [
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressor",
    "MultiGateMoEClassifier",
    "MultiGateMoERegressor",
    "__version__",
]
