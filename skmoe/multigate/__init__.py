"""Multi-gate (multi-task) mixture-of-experts estimators: MMoE, CGC, PLE."""

from ._classifier import MultiGateMoEClassifier
from ._mixed import MultiGateMoE
from ._regressor import MultiGateMoERegressor

__all__ = ["MultiGateMoE", "MultiGateMoEClassifier", "MultiGateMoERegressor"]
