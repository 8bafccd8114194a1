"""Looking inside fitted skmoe estimators: what each expert is worth, model size."""

from ._importance import expert_importance
from ._size import model_size

__all__ = ["expert_importance", "model_size"]
