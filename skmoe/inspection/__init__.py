"""Looking inside fitted skmoe estimators: plots in scikit-learn's Display API."""

from ._plot import (
    ExpertImportanceDisplay,
    ExpertUsageDisplay,
    GateWeightsDisplay,
    TrainingCurveDisplay,
)

__all__ = [
    "ExpertImportanceDisplay",
    "ExpertUsageDisplay",
    "GateWeightsDisplay",
    "TrainingCurveDisplay",
]
