"""Multi-gate (multi-task) mixture-of-experts estimators: MMoE, CGC, PLE."""

from ._classifier import MultiGateMoEClassifier
from ._regressor import MultiGateMoERegressor

__all__ = ["MultiGateMoEClassifier", "MultiGateMoERegressor"]
