"""Looking inside fitted skmoe estimators: what each expert is worth, model size, and
plots in scikit-learn's Display API."""

from ._importance import expert_importance
from ._plot import (
    ExpertImportanceDisplay,
    ExpertUsageDisplay,
    GateWeightsDisplay,
    TrainingCurveDisplay,
)
from ._size import model_size

__all__ = [
    "ExpertImportanceDisplay",
    "ExpertUsageDisplay",
    "GateWeightsDisplay",
    "TrainingCurveDisplay",
    "expert_importance",
    "model_size",
]
