"""Single-gate mixture-of-experts estimators."""

from ._classifier import MixtureOfExpertsClassifier
from ._regressor import MixtureOfExpertsRegressor

__all__ = ["MixtureOfExpertsClassifier", "MixtureOfExpertsRegressor"]
