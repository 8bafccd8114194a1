"""Displays for fitted skmoe estimators (matplotlib, imported when plotting)."""

from .expert_importance import ExpertImportanceDisplay
from .expert_usage import ExpertUsageDisplay
from .gate_weights import GateWeightsDisplay
from .training_curve import TrainingCurveDisplay

__all__ = [
    "ExpertImportanceDisplay",
    "ExpertUsageDisplay",
    "GateWeightsDisplay",
    "TrainingCurveDisplay",
]
